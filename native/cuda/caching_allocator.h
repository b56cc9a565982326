// The CUDA backend's caching allocator, as PyTorch's: requests are rounded to size classes, freed blocks are kept by
// class and handed out again, and the system allocator (cudaMallocAsync, or cudaMalloc) is called only when no cached
// block fits. A training loop's steady state then allocates nothing. A device runs all its work on one stream and
// its buffers are freed once no enqueued op holds them, so a block freed and reused is used in stream order: reuse
// needs no event. Memory used off that stream is never the cache's (shared tensors have their own cudaMalloc memory,
// readbacks stage through pinned blocks or finish with a synchronous copy before their staging buffer goes).
//
// Private pools serve captured graphs (torch.cuda.graph's pool): while one is active on a thread, that thread's
// allocations come from it and its blocks freed go back to it, so a capture reuses memory within itself; nothing
// outside it ever gets its memory. Its memory comes from cudaMalloc (no allocation node in a capture; capture in
// cudaStreamCaptureModeRelaxed) and is freed when the last holder lets go: the graph, and each live block.
#pragma once
#include <cuda_runtime_api.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bssn::cuda {

// What the pools of one device share; outlives the allocator while a private pool lives.
struct AllocatorShared {
  int device = 0;
  std::atomic<int64_t> reserved{0};         // bytes of the general pool held from the system
  std::atomic<int64_t> privateReserved{0};  // bytes of the live private pools
};

class PrivatePool {
 public:
  explicit PrivatePool(std::shared_ptr<AllocatorShared> shared) : shared_(std::move(shared)) {}
  // Frees its segments with cudaFree (which waits for the device): no block of it is in use by then.
  ~PrivatePool();
  PrivatePool(const PrivatePool&) = delete;
  PrivatePool& operator=(const PrivatePool&) = delete;
  // Bytes this pool holds from the system.
  int64_t reservedBytes() const { return reserved_.load(); }

 private:
  friend class CachingAllocator;
  std::shared_ptr<AllocatorShared> shared_;
  std::map<size_t, std::vector<void*>> free_;  // by size class; guarded by the allocator's mutex
  std::vector<void*> segments_;               // guarded by the allocator's mutex
  std::atomic<int64_t> reserved_{0};
};

class CachingAllocator {
 public:
  // `allocate`/`release` get and return the general pool's segments (stream-ordered calls on the device's stream).
  // Without `keepFreed` (BSSN_CUDA_CACHING=0) a freed general block goes back to the system at once.
  CachingAllocator(int device, bool keepFreed, std::function<cudaError_t(void**, size_t)> allocate, std::function<cudaError_t(void*)> release);
  ~CachingAllocator();  // returns the general pool's cached blocks; private pools go with their last holder
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A block of at least `bytes`: from the active private pool of this thread, else the general cache, else the
  // system; on out-of-memory the general cache is returned to the system and the allocation tried once more.
  cudaError_t allocate(void** out, size_t bytes);
  // Back to the pool it came from. Any thread.
  void free(void* p) noexcept;
  // Whether `p` is a live block of `pool`. Any thread.
  bool inPool(void* p, const PrivatePool* pool) const noexcept;
  // Returns the general pool's cached blocks to the system; the first failed release's status.
  cudaError_t emptyCache() noexcept;
  // Bytes held from the system: blocks in use and cached, private pools included.
  int64_t reservedBytes() const { return shared_->reserved.load() + shared_->privateReserved.load(); }
  int64_t cachedBytes() const;

  // Makes `pool` (a new one when null) the calling thread's allocation pool until endPrivatePool(); nests.
  std::shared_ptr<PrivatePool> beginPrivatePool(std::shared_ptr<PrivatePool> pool = nullptr);
  void endPrivatePool();

  // The size class of a request: 512-byte granules up to 1 MiB, 4 classes per power of two above (at most 25%).
  static size_t roundUp(size_t bytes);

 private:
  struct Live {
    size_t size;                        // its size class
    std::shared_ptr<PrivatePool> pool;  // null: the general pool
  };
  cudaError_t allocatePrivate(void** out, size_t size, const std::shared_ptr<PrivatePool>& pool);

  std::shared_ptr<AllocatorShared> shared_;
  const bool keep_;
  std::function<cudaError_t(void**, size_t)> systemAllocate_;
  std::function<cudaError_t(void*)> systemRelease_;
  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;  // the general pool's cached blocks, by size class
  int64_t cached_ = 0;
  std::unordered_map<void*, Live> live_;  // every block handed out
  // Active private pools, innermost last, with the thread each serves.
  std::vector<std::pair<std::thread::id, std::shared_ptr<PrivatePool>>> active_;
};

}  // namespace bssn::cuda
