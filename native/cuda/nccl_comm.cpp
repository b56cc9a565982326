#include "cuda/nccl_comm.h"

#include <chrono>
#include <string>
#include <thread>

#include "core/error.h"
#include "cuda/check.h"
#include "cuda/cuda_device.h"
#include "cuda/nccl.h"

namespace bssn::cuda {

namespace {

void check(const char* call, nccl::Result r) {
  if (r != nccl::kSuccess) throwNccl(call, r);
}

CudaDevice& cudaOf(const DevicePtr& device) {
  if (!device || device->kind() != DeviceKind::Cuda) throwError("NCCL collectives need a CUDA device");
  return static_cast<CudaDevice&>(*device);
}

}  // namespace

Communicator::Communicator(DevicePtr device, const nccl::UniqueId& id, int nranks, int rank)
    : device_(std::move(device)), cuda_(cudaOf(device_)), rank_(rank), nranks_(nranks) {
  BSSN_CUDA_TRY(cudaSetDevice(cuda_.index()));
  BSSN_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  try {
    BSSN_CUDA_TRY(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    BSSN_CUDA_TRY(cudaEventCreateWithFlags(&joined_, cudaEventDisableTiming));
    check("ncclCommInitRank", ncclApi().commInitRank(&comm_, nranks, id, rank));
  } catch (...) {
    if (ready_) cudaEventDestroy(ready_);
    if (joined_) cudaEventDestroy(joined_);
    cudaStreamDestroy(stream_);
    throw;
  }
}

Communicator::~Communicator() {
  // Abort, not destroy: ncclCommDestroy first waits for the work issued, which never ends when a peer died (and a
  // finalizer must not hang the process). ProcessGroup.destroy() aborts too.
  if (comm_) ncclApi().commAbort(comm_);
  // The buffers still held go back to the allocator in the device stream's order: that stream waits for this one
  // first. Work still queued on the stream finishes first (CUDA destroys a busy stream once it is idle).
  if (overlappedPending_) cudaStreamWaitEvent(cuda_.stream(), joined_, 0);
  cudaEventDestroy(ready_);
  cudaEventDestroy(joined_);
  for (const InFlight& f : inFlight_) cudaEventDestroy(f.done);
  for (cudaEvent_t e : spare_) cudaEventDestroy(e);
  cudaStreamDestroy(stream_);
}

nccl::Comm Communicator::live() const {
  if (!comm_) throwError("the NCCL communicator was aborted (a collective failed or timed out, or abort() was called)", ErrorCode::Collective);
  return comm_;
}

void Communicator::markEnqueued(cudaStream_t stream, std::vector<BufferPtr> held) {
  cudaEvent_t e = nullptr;
  if (spare_.empty()) {
    BSSN_CUDA_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  } else {
    e = spare_.back();
    spare_.pop_back();
  }
  const cudaError_t st = cudaEventRecord(e, stream);
  if (st != cudaSuccess) {
    spare_.push_back(e);
    BSSN_CUDA_TRY(st);
  }
  inFlight_.push_back({e, std::move(held)});
  if (stream == stream_) BSSN_CUDA_TRY(cudaEventRecord(joined_, stream_));
}

void Communicator::allReduce(const std::vector<std::pair<BufferPtr, size_t>>& buffers, int op, bool overlapped) {
  const nccl::Comm comm = live();
  const cudaStream_t stream = overlapped ? stream_ : cuda_.stream();
  if (overlapped) {
    // The bucket's gradients are the device stream's work so far: the collective starts after it, nothing later.
    BSSN_CUDA_TRY(cudaEventRecord(ready_, cuda_.stream()));
    BSSN_CUDA_TRY(cudaStreamWaitEvent(stream_, ready_, 0));
  }
  const NcclApi& api = ncclApi();
  const bool group = buffers.size() > 1;
  if (group) check("ncclGroupStart", api.groupStart());
  nccl::Result first = nccl::kSuccess;
  std::vector<BufferPtr> held;
  held.reserve(buffers.size());
  for (const auto& [buffer, count] : buffers) {
    held.push_back(buffer);
    float* data = buffer->f32();
    first = api.allReduce(data, data, count, nccl::kFloat32, op, comm, stream);
    if (first != nccl::kSuccess) break;
  }
  if (group) {
    const nccl::Result ended = api.groupEnd();  // always, so the thread's group depth stays balanced
    if (first == nccl::kSuccess) first = ended;
  }
  if (first != nccl::kSuccess) throwNccl(group ? "ncclAllReduce (grouped)" : "ncclAllReduce", first);
  markEnqueued(stream, std::move(held));
  overlappedPending_ = overlappedPending_ || overlapped;
}

void Communicator::broadcast(const BufferPtr& buffer, size_t count, int root) {
  float* data = buffer->f32();
  check("ncclBroadcast", ncclApi().broadcast(data, data, count, nccl::kFloat32, root, live(), cuda_.stream()));
  markEnqueued(cuda_.stream(), {buffer});
}

void Communicator::join() {
  live();
  if (!overlappedPending_) return;
  BSSN_CUDA_TRY(cudaStreamWaitEvent(cuda_.stream(), joined_, 0));
  overlappedPending_ = false;
}

size_t Communicator::poll() {
  const nccl::Comm comm = live();
  nccl::Result async = nccl::kSuccess;
  check("ncclCommGetAsyncError", ncclApi().commGetAsyncError(comm, &async));
  if (async != nccl::kSuccess && async != nccl::kInProgress) {
    const char* what = ncclApi().errorString(async);
    abort();
    throwError(std::string("an NCCL collective failed: ") + (what ? what : "NCCL error") + " (ncclResult_t " + std::to_string(async) +
                   "); the communicator was aborted",
               ErrorCode::Collective);
  }
  // Counted from the oldest: one that finished before an older one (on the other stream) counts when that one does.
  size_t completed = 0;
  while (!inFlight_.empty()) {
    const cudaError_t st = cudaEventQuery(inFlight_.front().done);
    if (st == cudaErrorNotReady) break;
    if (st != cudaSuccess) BSSN_CUDA_TRY(st);
    spare_.push_back(inFlight_.front().done);
    inFlight_.pop_front();
    completed++;
  }
  return completed;
}

void Communicator::wait(int64_t timeoutMs) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  while (poll(), !inFlight_.empty()) {
    if (std::chrono::steady_clock::now() > deadline) {
      abort();
      throwError("an NCCL collective did not finish within " + std::to_string(timeoutMs) + " ms; the communicator was aborted",
                 ErrorCode::Collective);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void Communicator::abort() {
  if (!comm_) return;
  const nccl::Comm comm = comm_;
  comm_ = nullptr;
  ncclApi().commAbort(comm);
}

}  // namespace bssn::cuda
