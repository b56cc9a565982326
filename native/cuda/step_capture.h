// Whole training steps captured into one CUDA graph (as torch.cuda.graph): the JS code of a step runs once between
// CudaDevice::beginCapture and endCapture, its ops are recorded on the device's stream instead of run, and each
// replay re-runs all of them in one cudaGraphLaunch on the same memory.
//
// Memory: a graph's kernels name the addresses they saw at capture, so every buffer allocated during a capture comes
// from a pool private to it (cuda/caching_allocator.h: cudaMalloc, which a Relaxed capture permits and which records
// no graph node), reused only within the capture, and freed when the graph and every buffer from it are gone.
// Buffers of the ordinary pool freed during the capture may still be read by the graph: they go back to the cache
// only when the graph goes.
#pragma once
#include <cuda_runtime_api.h>

#include <memory>
#include <mutex>
#include <vector>

#include "core/device.h"

namespace bssn::cuda {

class CudaDevice;
class PrivatePool;

// What a captured graph keeps for as long as it lives.
class CaptureResources {
 public:
  CaptureResources(std::shared_ptr<CudaDevice> device, std::shared_ptr<PrivatePool> pool)
      : device_(std::move(device)), pool_(std::move(pool)) {}
  ~CaptureResources();
  const PrivatePool* pool() const { return pool_.get(); }
  void setPool(std::shared_ptr<PrivatePool> pool) { pool_ = std::move(pool); }
  // Takes over what `other` holds (another graph, released while this one is being captured: freeing it now would
  // synchronize or free inside the capture).
  void adopt(CaptureResources& other);
  // An ordinary-pool block freed during the capture (any thread).
  void deferFree(void* data) {
    std::lock_guard<std::mutex> lock(mutex_);
    deferred_.push_back(data);
  }
  // Host memory of an upload made during the capture: its memcpy node reads it at every replay.
  void* hostConstant(size_t bytes);
  // Device memory holding `bytes` of `src`, written now, once: a constant of the graph (a normalization's pointer
  // table) that nothing else ever writes, so replays need no copy.
  void* deviceConstant(const void* src, size_t bytes);

 private:
  std::shared_ptr<CudaDevice> device_;
  std::shared_ptr<PrivatePool> pool_;
  std::mutex mutex_;
  std::vector<void*> deferred_, host_, constants_;
  std::vector<std::shared_ptr<PrivatePool>> adopted_;
};

// State of the capture in progress.
struct StepCapture {
  std::shared_ptr<CaptureResources> resources;
};

// One captured step: replay() enqueues it on the device's stream.
class CudaCapturedWork : public CapturedWork {
 public:
  CudaCapturedWork(std::shared_ptr<CudaDevice> device, cudaGraphExec_t exec, std::shared_ptr<CaptureResources> resources)
      : device_(std::move(device)), exec_(exec), resources_(std::move(resources)) {}
  ~CudaCapturedWork() override;
  void replay() override;

 private:
  std::shared_ptr<CudaDevice> device_;
  cudaGraphExec_t exec_;
  std::shared_ptr<CaptureResources> resources_;
};

}  // namespace bssn::cuda
