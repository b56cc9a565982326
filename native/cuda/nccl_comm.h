// One rank's NCCL communicator, as DDP's ProcessGroupNCCL holds it: the communicator, the device whose stream the
// training work runs on, and a stream of its own on which gradient all-reduces overlap the rest of backward. Events
// order the two streams; the host never waits on either here except in wait() (tools and tests).
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "core/device.h"
#include "cuda/nccl_api.h"

namespace bssn::cuda {

class CudaDevice;

class Communicator {
 public:
  // ncclCommInitRank on `device`: returns once every rank has joined (NCCL's own bound, or the emulator's).
  Communicator(DevicePtr device, const nccl::UniqueId& id, int nranks, int rank);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int nranks() const { return nranks_; }
  const DevicePtr& device() const { return device_; }
  bool aborted() const { return comm_ == nullptr; }

  // Each buffer reduced in place (op: nccl::kSum or nccl::kAvg), all of them as one NCCL group. `overlapped`: on the
  // communicator's stream, after the work the device's stream holds now (a gradient bucket, once its gradients are
  // computed), so the device's stream goes on meanwhile; join() orders it back. Otherwise on the device's stream.
  // The buffers are held until the collective completes: one freed meanwhile (a gradient disposed before join())
  // would otherwise go back to the allocator, which reuses memory in the device stream's order, not this stream's.
  void allReduce(const std::vector<std::pair<BufferPtr, size_t>>& buffers, int op, bool overlapped);
  // `root`'s buffer into every rank's, in place, on the device's stream.
  void broadcast(const BufferPtr& buffer, size_t count, int root);
  // The device's stream waits (on the device) for the overlapped collectives enqueued so far.
  void join();
  // How many of the collectives enqueued so far completed since the last poll (they complete in enqueue order: the
  // caller keeps their enqueue times, so a timeout counts from the oldest one still running, not from the first of
  // a run that always has one in flight). A failed collective (NCCL's asynchronous error: a peer died, a network
  // fault) aborts the communicator and throws ERR_BSSN_COLLECTIVE_FAILED.
  size_t poll();
  // Blocks until every collective enqueued so far completed, at most timeoutMs (then aborts and throws
  // ERR_BSSN_COLLECTIVE_FAILED).
  void wait(int64_t timeoutMs);
  // ncclCommAbort: work in flight on this communicator ends; every later call throws ERR_BSSN_COLLECTIVE_FAILED.
  void abort();

 private:
  nccl::Comm live() const;  // throws once aborted
  void markEnqueued(cudaStream_t stream, std::vector<BufferPtr> held);

  DevicePtr device_;
  CudaDevice& cuda_;
  int rank_, nranks_;
  nccl::Comm comm_ = nullptr;
  cudaStream_t stream_ = nullptr;  // the overlapped collectives'
  cudaEvent_t ready_ = nullptr;     // recorded on the device's stream: what an overlapped collective waits for
  cudaEvent_t joined_ = nullptr;    // recorded after the latest overlapped collective, on this communicator's stream
  bool overlappedPending_ = false;  // an overlapped collective not yet joined
  struct InFlight {
    cudaEvent_t done;              // recorded after the collective
    std::vector<BufferPtr> held;  // its buffers, until `done`
  };
  std::deque<InFlight> inFlight_;    // oldest first
  std::vector<cudaEvent_t> spare_;   // completed ones, for reuse
};

}  // namespace bssn::cuda
