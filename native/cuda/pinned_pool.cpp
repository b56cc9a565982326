#include "cuda/pinned_pool.h"

#include "cuda/check.h"

namespace bssn::cuda {

namespace {
void destroy(PinnedBlock& b) noexcept {
  if (b.done) cudaEventDestroy(b.done);
  if (b.host) cudaFreeHost(b.host);
}
}  // namespace

PinnedPool::~PinnedPool() {
  for (auto& b : free_) destroy(*b);
}

std::unique_ptr<PinnedBlock> PinnedPool::acquire(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < free_.size(); ++i) {
      if (free_[i]->bytes < bytes) continue;
      const cudaError_t done = cudaEventQuery(free_[i]->done);
      // "Not ready" is a status: it must never surface later as the next launch's error.
      if (done == cudaErrorNotReady && cudaPeekAtLastError() == cudaErrorNotReady) cudaGetLastError();
      if (done == cudaSuccess) {
        std::unique_ptr<PinnedBlock> b = std::move(free_[i]);
        free_.erase(free_.begin() + long(i));
        return b;
      }
    }
  }
  auto b = std::make_unique<PinnedBlock>();
  // Round up so blocks are reusable for similar sizes.
  b->bytes = bytes <= 4096 ? 4096 : (bytes + 65535) / 65536 * 65536;
  BSSN_CUDA_TRY_DETAIL(cudaHostAlloc(&b->host, b->bytes, cudaHostAllocDefault), "pinned staging of " + std::to_string(b->bytes) + " bytes");
  const cudaError_t st = cudaEventCreateWithFlags(&b->done, cudaEventDisableTiming | cudaEventBlockingSync);
  if (st != cudaSuccess) {
    destroy(*b);
    throwStatus("cudaEventCreateWithFlags", st, "", __FILE__, __LINE__);
  }
  return b;
}

void PinnedPool::release(std::unique_ptr<PinnedBlock> block) noexcept {
  if (!block) return;
  if (block->bytes > kMaxPooledBytes) {
    // Freeing pinned memory synchronizes the device: only large blocks pay that, and only off the hot path.
    cudaEventSynchronize(block->done);
    destroy(*block);
    return;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  free_.push_back(std::move(block));
}

}  // namespace bssn::cuda
