// The CPU backend's caching allocator: freed blocks are kept by size class and reused, as PyTorch's caching
// allocators do, so a training loop's steady state allocates nothing from the C library. Without it, glibc kept
// freed buffers (allocated on the JS thread, freed on the stream's) and a 2 MB model's run grew to gigabytes.
// Large blocks are mapped from the OS directly, so a block released beyond the cache's bound returns at once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

namespace bssn::cpu {

class CachingAllocator {
 public:
  // `maxCachedBytes`: freed blocks beyond this go back to the OS (BSSN_CPU_CACHE_BYTES, default 1 GiB).
  explicit CachingAllocator(size_t maxCachedBytes);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A 64-byte aligned block of at least `bytes`; nullptr when the system has no memory left.
  void* allocate(size_t bytes);
  // `bytes` as given to allocate(). Thread-safe: blocks are freed on the JS thread or the stream's.
  void release(void* p, size_t bytes) noexcept;
  // Returns every cached block to the OS.
  void emptyCache() noexcept;
  // Bytes held from the system: blocks in use plus cached ones.
  int64_t reservedBytes() const;

  // The size class of a request: 4 classes per power of two (at most 25% rounding).
  static size_t roundUp(size_t bytes);

 private:
  static void* systemAllocate(size_t bytes);
  static void systemFree(void* p, size_t bytes) noexcept;

  const size_t maxCached_;
  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;  // by size class
  size_t cached_ = 0;
  int64_t reserved_ = 0;
};

}  // namespace bssn::cpu
