// Page-locked host blocks for copies between host and device. Pageable copies can make cudaMemcpyAsync wait
// for the stream (blocking the JS thread); staging through pinned memory keeps every copy asynchronous.
// A block is reused once the event recorded after its last copy has completed.
#pragma once
#include <cuda_runtime_api.h>

#include <memory>
#include <mutex>
#include <vector>

namespace bssn::cuda {

struct PinnedBlock {
  void* host = nullptr;
  size_t bytes = 0;
  cudaEvent_t done = nullptr;  // recorded after the block's last copy
};

class PinnedPool {
 public:
  // Blocks larger than this are freed after use instead of kept.
  static constexpr size_t kMaxPooledBytes = size_t(64) << 20;

  ~PinnedPool();
  // A block of at least `bytes` whose previous copy has completed (allocated if none is free). Throws Error.
  std::unique_ptr<PinnedBlock> acquire(size_t bytes);
  // Returns a block after its copy has been enqueued and `done` recorded (or after the copy has finished).
  void release(std::unique_ptr<PinnedBlock> block) noexcept;

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<PinnedBlock>> free_;
};

}  // namespace bssn::cuda
