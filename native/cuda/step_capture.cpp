#include "cuda/step_capture.h"

#include <string>

#include "cuda/check.h"
#include "cuda/cuda_device.h"

namespace bssn::cuda {

CapturePool::~CapturePool() {
  // The graph is gone: its last replay may still run, so the device memory is freed in stream order after it
  // (cudaFree waits for the device), and the host constants once it has run.
  cudaSetDevice(device_->index());
  for (void* p : blocks_) cudaFree(p);
  for (void* p : deferred_) cudaFreeAsync(p, device_->stream());
  if (!host_.empty()) cudaStreamSynchronize(device_->stream());
  for (void* p : host_) cudaFreeHost(p);
  cudaGetLastError();  // nobody to report to from a destructor
}

void* CapturePool::allocate(size_t bytes) {
  void* p = nullptr;
  BSSN_CUDA_TRY_DETAIL(cudaMalloc(&p, bytes), "requested " + std::to_string(bytes) + " bytes for a captured step");
  std::lock_guard<std::mutex> lock(mutex_);
  blocks_.push_back(p);
  return p;
}

void* CapturePool::hostConstant(size_t bytes) {
  void* p = nullptr;
  BSSN_CUDA_TRY(cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
  std::lock_guard<std::mutex> lock(mutex_);
  host_.push_back(p);
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
  capture->pool = std::make_shared<CapturePool>(std::static_pointer_cast<CudaDevice>(shared_from_this()));
  // Relaxed: the capture's own cudaMalloc and cudaHostAlloc calls are allowed (they record no node).
  std::lock_guard<std::mutex> lock(captureMutex_);
  BSSN_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
  capturePool_ = capture->pool;
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
    capturePool_.reset();
  }
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
  return std::make_shared<CudaCapturedWork>(std::static_pointer_cast<CudaDevice>(shared_from_this()), exec, std::move(capture->pool));
}

}  // namespace bssn::cuda
