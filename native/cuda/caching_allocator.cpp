#include "cuda/caching_allocator.h"

namespace bssn::cuda {

PrivatePool::~PrivatePool() {
  if (segments_.empty()) return;
  cudaSetDevice(shared_->device);
  for (void* p : segments_) {
    // cudaFree waits for the device: the graph's last replay may still be running.
    if (cudaFree(p) != cudaSuccess) cudaGetLastError();  // nobody to report to from a destructor
  }
  shared_->privateReserved -= reserved_.load();
}

CachingAllocator::CachingAllocator(int device, bool keepFreed, std::function<cudaError_t(void**, size_t)> allocate,
                                   std::function<cudaError_t(void*)> release)
    : shared_(std::make_shared<AllocatorShared>()), keep_(keepFreed), systemAllocate_(std::move(allocate)), systemRelease_(std::move(release)) {
  shared_->device = device;
}

CachingAllocator::~CachingAllocator() { emptyCache(); }

size_t CachingAllocator::roundUp(size_t bytes) {
  constexpr size_t kGranule = 512, kSmall = size_t(1) << 20;
  if (bytes <= kSmall) return bytes <= kGranule ? kGranule : (bytes + kGranule - 1) / kGranule * kGranule;
  size_t power = kSmall;
  while (power * 2 < bytes) power *= 2;  // power < bytes <= 2 * power
  const size_t step = power / 4;         // a multiple of the granule
  return (bytes + step - 1) / step * step;
}

cudaError_t CachingAllocator::allocate(void** out, size_t bytes) {
  const size_t size = roundUp(bytes);
  std::shared_ptr<PrivatePool> pool;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::thread::id self = std::this_thread::get_id();
    for (auto it = active_.rbegin(); it != active_.rend(); ++it)
      if (it->first == self) {
        pool = it->second;
        break;
      }
    if (!pool) {
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= int64_t(size);
        live_.emplace(p, Live{size, nullptr});
        *out = p;
        return cudaSuccess;
      }
    }
  }
  if (pool) return allocatePrivate(out, size, pool);
  void* p = nullptr;
  cudaError_t st = systemAllocate_(&p, size);
  if (st == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // the retry's status is the one that counts
    emptyCache();        // the cache may hold what the system lacks
    st = systemAllocate_(&p, size);
  }
  if (st != cudaSuccess) return st;
  shared_->reserved += int64_t(size);
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    live_.emplace(p, Live{size, nullptr});
  } catch (...) {
    systemRelease_(p);
    shared_->reserved -= int64_t(size);
    return cudaErrorMemoryAllocation;
  }
  *out = p;
  return cudaSuccess;
}

cudaError_t CachingAllocator::allocatePrivate(void** out, size_t size, const std::shared_ptr<PrivatePool>& pool) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pool->free_.find(size);
    if (it != pool->free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      live_.emplace(p, Live{size, pool});
      *out = p;
      return cudaSuccess;
    }
  }
  // cudaMalloc enqueues nothing on the stream, so a (relaxed) capture records no allocation node. The general
  // cache is not given back on failure here: releasing it would enqueue frees into the capture.
  void* p = nullptr;
  const cudaError_t st = cudaMalloc(&p, size);
  if (st != cudaSuccess) return st;
  shared_->privateReserved += int64_t(size);
  pool->reserved_ += int64_t(size);
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    pool->segments_.push_back(p);
    live_.emplace(p, Live{size, pool});
  } catch (...) {
    cudaFree(p);
    shared_->privateReserved -= int64_t(size);
    pool->reserved_ -= int64_t(size);
    return cudaErrorMemoryAllocation;
  }
  *out = p;
  return cudaSuccess;
}

bool CachingAllocator::inPool(void* p, const PrivatePool* pool) const noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = live_.find(p);
  return it != live_.end() && it->second.pool.get() == pool;
}

void CachingAllocator::free(void* p) noexcept {
  if (!p) return;
  std::shared_ptr<PrivatePool> pool;  // dropped after the lock: the last holder's drop frees the pool's memory
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) return;  // not ours (never happens: every buffer's memory came from allocate)
    const size_t size = it->second.size;
    pool = std::move(it->second.pool);
    live_.erase(it);
    try {
      if (pool) {
        pool->free_[size].push_back(p);
        return;
      }
      if (keep_) {
        free_[size].push_back(p);
        cached_ += int64_t(size);
        return;
      }
    } catch (...) {
      // no memory for the bookkeeping: a general block goes back to the system; a private one stays its pool's
      if (pool) return;
    }
    shared_->reserved -= int64_t(size);
  }
  if (systemRelease_(p) != cudaSuccess) cudaGetLastError();
}

cudaError_t CachingAllocator::emptyCache() noexcept {
  std::map<size_t, std::vector<void*>> blocks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    blocks.swap(free_);
    cached_ = 0;
  }
  cudaError_t first = cudaSuccess;
  for (auto& [size, list] : blocks)
    for (void* p : list) {
      const cudaError_t st = systemRelease_(p);
      if (st != cudaSuccess && first == cudaSuccess) first = st;
      shared_->reserved -= int64_t(size);
    }
  if (first != cudaSuccess) cudaGetLastError();
  return first;
}

int64_t CachingAllocator::cachedBytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cached_;
}

std::shared_ptr<PrivatePool> CachingAllocator::beginPrivatePool(std::shared_ptr<PrivatePool> pool) {
  if (!pool) pool = std::make_shared<PrivatePool>(shared_);
  std::lock_guard<std::mutex> lock(mutex_);
  active_.emplace_back(std::this_thread::get_id(), pool);
  return pool;
}

void CachingAllocator::endPrivatePool() {
  std::shared_ptr<PrivatePool> ended;  // dropped after the lock
  std::lock_guard<std::mutex> lock(mutex_);
  const std::thread::id self = std::this_thread::get_id();
  for (auto it = active_.rbegin(); it != active_.rend(); ++it)
    if (it->first == self) {
      ended = std::move(it->second);
      active_.erase(std::next(it).base());
      break;
    }
}

}  // namespace bssn::cuda
