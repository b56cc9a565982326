#include "cuda/step_capture.h"

#include <string>

#include "cuda/caching_allocator.h"
#include "cuda/check.h"
#include "cuda/cuda_device.h"

namespace bssn::cuda {

CaptureResources::~CaptureResources() {
  if (device_->capture_ && device_->capture_->resources.get() != this) {
    device_->capture_->resources->adopt(*this);  // a capture is under way: everything waits for its graph
    return;
  }
  // The graph is gone, but its last replay may still run: what it read goes back after it (stream order for the
  // cache's blocks; a wait for the device before host memory and constants are freed).
  cudaSetDevice(device_->index());
  for (void* p : deferred_) device_->releaseDeferred(p);
  if (!host_.empty() || !constants_.empty()) cudaStreamSynchronize(device_->stream());
  for (void* p : host_) cudaFreeHost(p);
  for (void* p : constants_) cudaFree(p);
  cudaGetLastError();  // nobody to report to from a destructor
}

void CaptureResources::adopt(CaptureResources& other) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::lock_guard<std::mutex> theirs(other.mutex_);
  for (auto* list : {&other.deferred_, &other.host_, &other.constants_}) {
    auto& mine = list == &other.deferred_ ? deferred_ : list == &other.host_ ? host_ : constants_;
    mine.insert(mine.end(), list->begin(), list->end());
    list->clear();
  }
  adopted_.push_back(std::move(other.pool_));
  for (auto& pool : other.adopted_) adopted_.push_back(std::move(pool));
  other.adopted_.clear();
}

void* CaptureResources::hostConstant(size_t bytes) {
  void* p = nullptr;
  BSSN_CUDA_TRY(cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
  std::lock_guard<std::mutex> lock(mutex_);
  host_.push_back(p);
  return p;
}

void* CaptureResources::deviceConstant(const void* src, size_t bytes) {
  void* p = nullptr;
  BSSN_CUDA_TRY_DETAIL(cudaMalloc(&p, bytes), "a table of " + std::to_string(bytes) + " bytes for a captured step");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    constants_.push_back(p);
  }
  // A synchronous copy off the capturing stream (allowed in a Relaxed capture): fresh memory no work has touched.
  BSSN_CUDA_TRY(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice));
  return p;
}

CudaCapturedWork::~CudaCapturedWork() {
  // CUDA frees an executable graph that is still running once it completes.
  cudaSetDevice(device_->index());
  cudaGraphExecDestroy(exec_);
}

void CudaCapturedWork::replay() {
  device_->enter();
  if (device_->capturing()) throw Error(ErrorKind::Error, "a captured step cannot be replayed inside another capture", ErrorCode::Capture);
  const cudaError_t st = cudaGraphLaunch(exec_, device_->stream());
  if (st == cudaSuccess) return;
  device_->noteFailure(st, std::string("cudaGraphLaunch: ") + describeStatus(st));
  throwStatus("cudaGraphLaunch", st, "a captured step on " + device_->name(), __FILE__, __LINE__);
}

void* CudaDevice::captureConstant(const void* src, size_t bytes) {
  if (!capture_) throw Error(ErrorKind::Error, "no capture is in progress on " + name_, ErrorCode::Capture);
  return capture_->resources->deviceConstant(src, bytes);
}

void CudaDevice::releaseDeferred(void* data) noexcept { allocator_->free(data); }

void CudaDevice::refuseInCapture(const char* what) const {
  if (capture_)
    throw Error(ErrorKind::Error,
                std::string(what) + " is not possible while a step is being captured into a CUDA graph (its replays would not repeat it)",
                ErrorCode::Capture);
}

void CudaDevice::beginCapture() {
  enter();
  if (capture_) throw Error(ErrorKind::Error, "a capture is already in progress on " + name_, ErrorCode::Capture);
  if (kernelTiming()) throw Error(ErrorKind::Error, "kernel timing is on: turn it off before capturing a step", ErrorCode::Capture);
  auto capture = std::make_unique<StepCapture>();
  capture->resources = std::make_shared<CaptureResources>(std::static_pointer_cast<CudaDevice>(shared_from_this()), nullptr);
  capture->resources->setPool(allocator_->beginPrivatePool());  // last: nothing can throw between it and the capture's end
  // Relaxed: the capture's own cudaMalloc and cudaHostAlloc calls are allowed (they record no node).
  std::lock_guard<std::mutex> lock(captureMutex_);
  const cudaError_t began = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed);
  if (began != cudaSuccess) {
    allocator_->endPrivatePool();
    throwStatus("cudaStreamBeginCapture", began, "on " + name_, __FILE__, __LINE__);
  }
  captureResources_ = capture->resources;
  capture_ = std::move(capture);
}

std::shared_ptr<CapturedWork> CudaDevice::endCapture() {
  if (!capture_) throw Error(ErrorKind::Error, "no capture is in progress on " + name_, ErrorCode::Capture);
  std::unique_ptr<StepCapture> capture = std::move(capture_);
  cudaSetDevice(index_);
  cudaGraph_t graph = nullptr;
  cudaError_t ended;
  {
    std::lock_guard<std::mutex> lock(captureMutex_);
    ended = cudaStreamEndCapture(stream_, &graph);
    captureResources_.reset();
  }
  allocator_->endPrivatePool();
  if (ended != cudaSuccess || !graph) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw Error(ErrorKind::Error,
                "the step could not be captured: " + describeStatus(ended) +
                    " (an op that cannot be recorded ran during the capture: a host read, a synchronization or a failed launch)",
                ErrorCode::Capture);
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);  // the executable is a copy
  if (instantiated != cudaSuccess) throwStatus("cudaGraphInstantiate", instantiated, "a captured step on " + name_, __FILE__, __LINE__);
  return std::make_shared<CudaCapturedWork>(std::static_pointer_cast<CudaDevice>(shared_from_this()), exec, std::move(capture->resources));
}

}  // namespace bssn::cuda
