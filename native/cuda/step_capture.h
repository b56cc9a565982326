// Whole training steps captured into one CUDA graph (as torch.cuda.graph): the JS code of a step runs once between
// CudaDevice::beginCapture and endCapture, its ops are recorded on the device's stream instead of run, and each
// replay re-runs all of them in one cudaGraphLaunch on the same memory.
//
// Memory: a graph's kernels name the addresses they saw at capture, so every buffer allocated during a capture
// comes from a pool private to it (plain cudaMalloc, which a Relaxed capture permits and which records no graph
// node), never reused by anything else, and freed only when the graph and every buffer from it are gone. Buffers
// freed during the capture that the graph may still read are kept as long as the graph, too.
#pragma once
#include <cuda_runtime_api.h>

#include <memory>
#include <mutex>
#include <vector>

#include "core/device.h"

namespace bssn::cuda {

class CudaDevice;

// The memory a capture allocated, and the memory it saw freed: released when its last holder (the graph, or a
// buffer allocated from it) lets go.
class CapturePool {
 public:
  CapturePool(std::shared_ptr<CudaDevice> device) : device_(std::move(device)) {}
  ~CapturePool();
  void* allocate(size_t bytes);
  // A free during the capture of memory from the device's ordinary pool: kept until this pool goes.
  void deferFree(void* data) {
    std::lock_guard<std::mutex> lock(mutex_);
    deferred_.push_back(data);
  }
  // Host memory of an upload made during the capture: its memcpy node reads it at every replay.
  void* hostConstant(size_t bytes);

 private:
  std::shared_ptr<CudaDevice> device_;
  std::mutex mutex_;
  std::vector<void*> blocks_, deferred_, host_;
};

// State of the capture in progress.
struct StepCapture {
  std::shared_ptr<CapturePool> pool;
};

// One captured step: replay() enqueues it on the device's stream.
class CudaCapturedWork : public CapturedWork {
 public:
  CudaCapturedWork(std::shared_ptr<CudaDevice> device, cudaGraphExec_t exec, std::shared_ptr<CapturePool> pool)
      : device_(std::move(device)), exec_(exec), pool_(std::move(pool)) {}
  ~CudaCapturedWork() override;
  void replay() override;

 private:
  std::shared_ptr<CudaDevice> device_;
  cudaGraphExec_t exec_;
  std::shared_ptr<CapturePool> pool_;
};

}  // namespace bssn::cuda
