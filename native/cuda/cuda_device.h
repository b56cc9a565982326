// The CUDA backend: one non-blocking stream per device, a caching allocator over stream-ordered allocations from
// the device's memory pool (creating and disposing tensors never synchronizes), pinned staging for host copies,
// and a sticky error that marks the device unusable after a fault.
#pragma once
#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "cuda/caching_allocator.h"
#include "cuda/cublas_api.h"
#include "cuda/cudnn_api.h"
#include "cuda/pinned_pool.h"

namespace bssn::cuda {

class LaunchGraphs;

struct Availability {
  int deviceCount = 0;
  std::string reason;  // why there is none, when deviceCount == 0
};

Availability availability();

// Whether cuBLAS and cuDNN load (no GPU needed): {library, version or error}.
struct LibraryStatus {
  bool loaded = false;
  std::string version;  // "major.minor.patch"
  std::string error;
};
LibraryStatus cublasStatus();
LibraryStatus cudnnStatus();
// Opens CUDA device `index`; throws Error naming the failing call (no device, no driver, no kernel image).
DevicePtr openDevice(int index);

class CudaDevice : public Device {
 public:
  explicit CudaDevice(int index);
  ~CudaDevice() override;

  DeviceKind kind() const override { return DeviceKind::Cuda; }
  int index() const override { return index_; }
  std::string name() const override { return name_; }
  DeviceInfo info() override;
  // Library handles bound to this device's stream, created on first use; throw Error naming a missing library.
  cublas::Handle cublasHandle();
  cudnn::Handle cudnnHandle();
  // Sets cuBLAS's math mode now (when its handle exists) and the convolutions' from their next call.
  void setTf32(Tf32 t) override;

  void upload(const BufferPtr& dst, size_t dstOffset, const void* src, size_t bytes) override;
  void copy(const BufferPtr& dst, size_t dstOffset, const BufferPtr& src, size_t srcOffset, size_t bytes) override;
  void fill(const BufferPtr& dst, size_t count, float value) override;
  void randn(const BufferPtr& dst, size_t count, uint64_t seed, float std) override;
  void randnFromTable(const BufferPtr& dst, size_t count, const BufferPtr& table, size_t index, float std) override;
  void rand(const BufferPtr& dst, size_t count, uint64_t seed, float low, float high) override;
  void normalize(const NormalizeJob& job) override;
  void normalizeBackward(const NormalizeJob& job) override;
  void unary(UnaryOp op, float param, const BufferPtr& x, const BufferPtr& y, size_t n) override;
  void unaryBackward(UnaryOp op, float param, const BufferPtr& x, const BufferPtr& y, const BufferPtr& dy, const BufferPtr& dx,
                     size_t n) override;
  void binary(BinaryOp op, const BufferPtr& a, const BufferPtr& b, const BufferPtr& out, size_t n) override;
  void addBias(const BufferPtr& x, const BufferPtr& bias, const BufferPtr& out, size_t outer, size_t channels, size_t inner) override;
  void sumToBias(const BufferPtr& dy, const BufferPtr& db, size_t outer, size_t channels, size_t inner) override;
  void biasActivation(UnaryOp op, float param, const BufferPtr& x, const BufferPtr& bias, const BufferPtr& y, size_t outer, size_t channels,
                      size_t inner) override;
  void biasActivationBackward(UnaryOp op, float param, const BufferPtr& y, const BufferPtr& dy, const BufferPtr& dx, const BufferPtr& db,
                              bool accumulate, size_t outer, size_t channels, size_t inner) override;
  void sum(const BufferPtr& x, size_t n, const BufferPtr& out, float scale) override;
  void hinge(const BufferPtr& x, size_t n, size_t split, float scaleReal, float scaleFake, const BufferPtr& out) override;
  void hingeBackward(const BufferPtr& x, const BufferPtr& g, size_t n, size_t split, float scaleReal, float scaleFake,
                     const BufferPtr& dx) override;
  void broadcast(const BufferPtr& scalar, const BufferPtr& out, size_t n, float scale) override;
  void gemm(const GemmArgs& args) override;
  void adam(const AdamArgs& args) override;
  void sgd(const SgdArgs& args) override;
  void conv2dForward(const Conv2dArgs& args) override;
  void conv2dBackwardData(const Conv2dArgs& args) override;
  void conv2dBackwardFilter(const Conv2dArgs& args) override;
  void batchNorm(const BatchNormArgs& args) override;
  void batchNormBackward(const BatchNormBackwardArgs& args) override;
  std::shared_ptr<Fence> download(const BufferPtr& src, size_t srcOffset, std::shared_ptr<void> host, size_t bytes) override;
  std::shared_ptr<Fence> fence() override;
  std::shared_ptr<Fence> timestamp(std::shared_ptr<double> ms) override;
  void shutdown() override;
  void emptyCache() override;
  // Sharing (cuda/share.cpp): plain cudaMalloc memory exported with CUDA IPC; publications are IPC events.
  std::shared_ptr<ShareRegion> createShareRegion(size_t bytes) override;
  void moveToShared(const BufferPtr& buffer, const std::shared_ptr<ShareRegion>& region) override;
  uint32_t publish(const std::shared_ptr<ShareRegion>& region) override;
  void waitForPublication(ShareImport& import, uint32_t publication) override;
  BufferPtr openShared(ShareImport& import) override;
  std::shared_ptr<Fence> takeKernelTimes(std::shared_ptr<std::vector<KernelTime>> out) override;
  struct TimedLaunch {
    const char* name;
    cudaEvent_t start, end;
  };
  // Frees shareable memory once no other process has it open (else at a later call, or never before exit).
  void freeShared(void* data, const std::shared_ptr<ShareRegion>& region) noexcept;

  cudaStream_t stream() const { return stream_; }
  int multiprocessors() const { return multiprocessors_; }
  PinnedPool& pinned() { return pinned_; }
  // Runs `launch`, bracketed by timing events when kernel timing is on.
  template <typename Launch>
  void timed(const char* name, Launch&& launch) {
    if (!kernelTiming()) return launch();
    const cudaEvent_t start = recordEvent(cudaEventDefault);
    try {
      launch();
      timedLaunches_.push_back({name, start, recordEvent(cudaEventDefault)});
    } catch (...) {
      cudaEventDestroy(start);
      throw;
    }
  }
  // Runs the kernels `launches` enqueues: replayed from the graph captured for `key` (the launch arguments' bytes;
  // captured now on first use), or launched one by one when graphs are off or kernels are being timed.
  void launchSequence(LaunchGraphs& graphs, const void* key, size_t keyBytes, const std::function<void()>& launches);
  // Whole-step capture (cuda/step_capture.cpp).
  void beginCapture() override;
  std::shared_ptr<CapturedWork> endCapture() override;
  bool capturing() const override { return capture_ != nullptr; }
  // Throws ERR_BSSN_CAPTURE naming `what` while a capture is in progress (a host read, a synchronization...).
  void refuseInCapture(const char* what) const;
  // The device address of `bytes` of `src`, constant for the graph being captured (cuda/step_capture.h).
  void* captureConstant(const void* src, size_t bytes);
  // A block whose free a capture deferred goes back to the cache.
  void releaseDeferred(void* data) noexcept;
  // Records a failure seen off the JS thread (a fence); sticky ones make every later call throw.
  void noteFailure(cudaError_t status, const std::string& message);
  // A pool private to a graph captured on this thread (cuda/caching_allocator.h): until endPrivatePool(), this
  // thread's allocations come from `pool` (a new one when null). The caller, then the graph, holds it; so does each
  // buffer allocated from it. Capture in cudaStreamCaptureModeRelaxed: the pool's memory comes from cudaMalloc.
  std::shared_ptr<PrivatePool> beginPrivatePool(std::shared_ptr<PrivatePool> pool = nullptr);
  void endPrivatePool();
  // Bytes of freed blocks the caching allocator keeps for reuse (0 with BSSN_CUDA_CACHING=0).
  int64_t cachedBytes() const;

 protected:
  void* allocateRaw(size_t bytes) override;
  void freeRaw(void* data, size_t bytes) noexcept override;
  void poisonRaw(void* data, size_t bytes) override;
  int64_t reservedBytes() const override;

 private:
  // Makes this device current on the calling thread and throws if an earlier fault made it unusable.
  void enter();
  // After launches: turns a launch error into an exception (and a sticky fault into an unusable device).
  void checkLaunch(const char* what);
  // A new event recorded on the stream (the caller destroys it). Throws Error.
  cudaEvent_t recordEvent(unsigned flags);
  // Frees the shareable memory whose importers have all closed it.
  void sweepSharedFrees() noexcept;
  // Gives the allocator's and the pool's free memory back, before retrying an allocation made outside them.
  void releaseCached() noexcept;

  int index_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  // Timestamps are measured from the latest anchor (cuda_device.cpp: TimeAnchor), first the device's opening.
  std::shared_ptr<class TimeAnchor> anchor_;
  std::chrono::steady_clock::time_point anchorHostTime_;
  bool graphs_ = true;  // replay launch sequences from CUDA graphs (BSSN_CUDA_GRAPHS=0: kernel by kernel)
  // Held while the JS thread captures on stream_, and by frees from any thread: a buffer whose last reference goes on
  // another thread (a read's staging buffer, a shared tensor) must not enqueue its free into the capture.
  std::mutex captureMutex_;
  bool usePool_ = false;
  cudaMemPool_t pool_ = nullptr;  // the device's default pool, when usePool_
  // Every buffer's memory; with BSSN_CUDA_CACHING=0 it keeps no freed block (each free goes back at once).
  std::unique_ptr<CachingAllocator> allocator_;
  int computeMajor_ = 0, computeMinor_ = 0, multiprocessors_ = 0;
  size_t totalMemory_ = 0;
  cublas::Handle cublas_ = nullptr;
  void* cublasWorkspace_ = nullptr;  // set on cublas_, freed after it
  cudnn::Handle cudnn_ = nullptr;
  std::unique_ptr<class ConvCache> conv_;  // per-shape cuDNN plans, created on the first convolution
  ConvCache& conv();
  PinnedPool pinned_;
  std::mutex faultMutex_;
  std::string fault_;  // non-empty once a sticky error happened
  bool shutDown_ = false;
  std::vector<TimedLaunch> timedLaunches_;  // since the last takeKernelTimes (JS thread only)
  std::unique_ptr<struct StepCapture> capture_;  // while beginCapture..endCapture (JS thread only)
  // The capture's resources, for frees from any thread (under captureMutex_): the graph may read what they free.
  std::shared_ptr<class CaptureResources> captureResources_;
  friend class CudaCapturedWork;
  friend class CaptureResources;
  std::mutex sharedMutex_;
  std::vector<std::pair<void*, std::shared_ptr<ShareRegion>>> sharedFrees_;  // waiting for importers to close
  std::atomic<bool> sharedFreesPending_{false};  // sharedFrees_ is not empty (read without the lock)
};

}  // namespace bssn::cuda
