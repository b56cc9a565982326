#include "cpu/allocator.h"

#include <sys/mman.h>

#include <cstdlib>

namespace bssn::cpu {

namespace {
// From here on blocks come from mmap: page-aligned, and released to the OS at once when freed.
constexpr size_t kMapThreshold = size_t(256) << 10;
}  // namespace

CachingAllocator::CachingAllocator(size_t maxCachedBytes) : maxCached_(maxCachedBytes) {}

CachingAllocator::~CachingAllocator() { emptyCache(); }

size_t CachingAllocator::roundUp(size_t bytes) {
  if (bytes <= 256) return 256;
  size_t power = 1;
  while (power * 2 < bytes) power *= 2;  // power < bytes <= 2 * power
  const size_t step = power / 4;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::systemAllocate(size_t bytes) {
  if (bytes >= kMapThreshold) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  return std::aligned_alloc(64, bytes);  // classes below the threshold are multiples of 64
}

void CachingAllocator::systemFree(void* p, size_t bytes) noexcept {
  if (bytes >= kMapThreshold)
    munmap(p, bytes);
  else
    std::free(p);
}

void* CachingAllocator::allocate(size_t bytes) {
  const size_t size = roundUp(bytes);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_ -= size;
      return p;
    }
  }
  void* p = systemAllocate(size);
  if (!p) {
    emptyCache();  // the cache may hold what the system lacks: give it back and try once more
    p = systemAllocate(size);
    if (!p) return nullptr;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  reserved_ += int64_t(size);
  return p;
}

void CachingAllocator::release(void* p, size_t bytes) noexcept {
  if (!p) return;
  const size_t size = roundUp(bytes);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_ + size <= maxCached_) {
      try {
        free_[size].push_back(p);
        cached_ += size;
        return;
      } catch (...) {
        // no memory for the bookkeeping: free it instead
      }
    }
    reserved_ -= int64_t(size);
  }
  systemFree(p, size);
}

void CachingAllocator::emptyCache() noexcept {
  std::map<size_t, std::vector<void*>> blocks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    blocks.swap(free_);
    reserved_ -= int64_t(cached_);
    cached_ = 0;
  }
  for (auto& [size, list] : blocks)
    for (void* p : list) systemFree(p, size);
}

int64_t CachingAllocator::reservedBytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return reserved_;
}

}  // namespace bssn::cpu
