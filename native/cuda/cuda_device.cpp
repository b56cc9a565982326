#include "cuda/cuda_device.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "core/normalize_plan.h"
#include "cuda/batch_norm.cuh"
#include "cuda/bias_activation.cuh"
#include "cuda/check.h"
#include "cuda/conv.h"
#include "cuda/cublas.h"
#include "cuda/cudnn.h"
#include "cuda/elementwise.cuh"
#include "cuda/fill.cuh"
#include "cuda/graph.h"
#include "cuda/loss.cuh"
#include "cuda/normalize_plan.h"
#include "cuda/optim.cuh"
#include "cuda/step_capture.h"

namespace bssn::cuda {

// Device time of a point in the stream, in milliseconds since the device was opened. cudaEventElapsedTime gives a
// float: measured from the opening alone, a minute in its resolution would be about 4 us. So times are measured from
// the latest anchor, an earlier timestamp's event at most about a second older (float resolution there: 0.06 us),
// whose own time is its parent anchor's plus the elapsed time between them, in double.
class TimeAnchor {
 public:
  TimeAnchor(int device, cudaEvent_t event, std::shared_ptr<TimeAnchor> parent)
      : device_(device), event_(event), parent_(std::move(parent)), known_(!parent_) {}
  ~TimeAnchor() {
    cudaSetDevice(device_);
    cudaEventDestroy(event_);
  }
  cudaEvent_t event() const { return event_; }
  // Its time since the device was opened; its event (and its parents') must have completed.
  double milliseconds() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!known_) {
      ms_ = parent_->milliseconds() + elapsed(parent_->event_, event_);
      known_ = true;
      parent_.reset();  // the chain is not kept once the time is known
    }
    return ms_;
  }
  static double elapsed(cudaEvent_t from, cudaEvent_t to) {
    float ms = 0;
    const cudaError_t st = cudaEventElapsedTime(&ms, from, to);
    if (st != cudaSuccess) throwStatus("cudaEventElapsedTime", st, "", __FILE__, __LINE__);
    return ms;
  }

 private:
  int device_;
  cudaEvent_t event_;
  std::shared_ptr<TimeAnchor> parent_;
  bool known_;
  double ms_ = 0;
  std::mutex mutex_;
};

namespace {

// Waits for an event on a worker thread, then copies the pinned block to the caller's memory.
class CudaFence : public Fence {
 public:
  CudaFence(std::shared_ptr<CudaDevice> device, cudaEvent_t event, std::unique_ptr<PinnedBlock> block, std::shared_ptr<void> host, size_t bytes)
      : device_(std::move(device)), event_(event), block_(std::move(block)), host_(std::move(host)), bytes_(bytes) {}
  ~CudaFence() override {
    if (block_) device_->pinned().release(std::move(block_));
    if (event_) cudaEventDestroy(event_);
  }

  void wait() override {
    if (!block_ && !event_) return;  // already waited
    const cudaEvent_t event = block_ ? block_->done : event_;
    // A worker thread: without this, the runtime would use (and create a context on) device 0.
    cudaSetDevice(device_->index());
    const cudaError_t st = cudaEventSynchronize(event);
    if (st != cudaSuccess) {
      const std::string message = "cudaEventSynchronize: " + describeStatus(st) + " (an earlier operation on " + device_->name() + " failed)";
      device_->noteFailure(st, message);
      throwError(message, isSticky(st) ? ErrorCode::DeviceFault : ErrorCode::Default);
    }
    if (block_ && bytes_) std::memcpy(host_.get(), block_->host, bytes_);
    // Back to the pool here, on the waiting thread: freeing a large pinned block synchronizes the device,
    // which must never happen on the JS thread (where the fence is destroyed).
    if (block_) device_->pinned().release(std::move(block_));
  }

 private:
  std::shared_ptr<CudaDevice> device_;
  cudaEvent_t event_;
  std::unique_ptr<PinnedBlock> block_;
  std::shared_ptr<void> host_;
  size_t bytes_;
};

// A read larger than the pinned pool's blocks: the source was copied (in stream order) to a device buffer of its
// own, and the copy to the caller's pageable memory happens here, on the waiting thread, so that no large pinned
// block is allocated, or freed with a device-wide synchronization, on the JS thread.
class LargeReadFence : public Fence {
 public:
  LargeReadFence(std::shared_ptr<CudaDevice> device, cudaEvent_t event, BufferPtr staged, std::shared_ptr<void> host, size_t bytes)
      : device_(std::move(device)), event_(event), staged_(std::move(staged)), host_(std::move(host)), bytes_(bytes) {}
  ~LargeReadFence() override {
    if (event_) cudaEventDestroy(event_);
  }

  void wait() override {
    if (!staged_) return;  // already waited
    cudaSetDevice(device_->index());
    cudaError_t st = cudaEventSynchronize(event_);
    const char* call = "cudaEventSynchronize";
    if (st == cudaSuccess) {
      call = "cudaMemcpy";
      st = cudaMemcpy(host_.get(), staged_->data(), bytes_, cudaMemcpyDeviceToHost);
    }
    staged_.reset();  // back to the pool, in stream order
    if (st != cudaSuccess) {
      const std::string message = std::string(call) + ": " + describeStatus(st) + " (reading " + std::to_string(bytes_) + " bytes from " +
                                  device_->name() + ")";
      device_->noteFailure(st, message);
      throwError(message, isSticky(st) ? ErrorCode::DeviceFault : ErrorCode::Default);
    }
  }

 private:
  std::shared_ptr<CudaDevice> device_;
  cudaEvent_t event_;
  BufferPtr staged_;
  std::shared_ptr<void> host_;
  size_t bytes_;
};

class TimestampFence : public Fence {
 public:
  TimestampFence(std::shared_ptr<CudaDevice> device, std::shared_ptr<TimeAnchor> anchor, cudaEvent_t event, std::shared_ptr<double> ms)
      : device_(std::move(device)), anchor_(std::move(anchor)), event_(event), ms_(std::move(ms)) {}
  ~TimestampFence() override {
    if (event_) cudaEventDestroy(event_);
  }

  void wait() override {
    cudaSetDevice(device_->index());  // a worker thread (see CudaFence::wait)
    const cudaEvent_t point = event_ ? event_ : anchor_->event();
    const cudaError_t st = cudaEventSynchronize(point);
    try {
      if (st != cudaSuccess) throwStatus("cudaEventSynchronize", st, "", __FILE__, __LINE__);
      *ms_ = anchor_->milliseconds() + (event_ ? TimeAnchor::elapsed(anchor_->event(), event_) : 0.0);
    } catch (const Error& e) {
      const cudaError_t last = st != cudaSuccess ? st : cudaGetLastError();
      device_->noteFailure(last, e.what());
      throw;
    }
  }

 private:
  std::shared_ptr<CudaDevice> device_;
  std::shared_ptr<TimeAnchor> anchor_;
  cudaEvent_t event_;  // null when this timestamp is itself the anchor
  std::shared_ptr<double> ms_;
};

}  // namespace

Availability availability() {
  Availability a;
  const cudaError_t st = cudaGetDeviceCount(&a.deviceCount);
  if (st != cudaSuccess) {
    a.deviceCount = 0;
    // Without a driver at all, the runtime says "driver version is insufficient": say what is really missing.
    int driver = -1;
    if ((st == cudaErrorInsufficientDriver || st == cudaErrorNoDevice) && cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0)
      a.reason = "no NVIDIA driver found (libcuda.so.1 is not installed or not on the loader's path; " + describeStatus(st) + ")";
    else
      a.reason = "cudaGetDeviceCount: " + describeStatus(st);
    cudaGetLastError();  // not sticky: clear it
  } else if (a.deviceCount == 0) {
    a.reason = "no CUDA device found";
  }
  return a;
}

LibraryStatus cublasStatus() {
  LibraryStatus s;
  try {
    const CublasApi& api = cublasApi();
    int v[3] = {0, 0, 0};
    const int which[3] = {cublas::kMajorVersion, cublas::kMinorVersion, cublas::kPatchLevel};
    for (int i = 0; i < 3; ++i) {
      const cublas::Status st = api.getProperty(which[i], &v[i]);
      if (st != cublas::kSuccess) throwCublas("cublasGetProperty", st);
    }
    s.version = std::to_string(v[0]) + "." + std::to_string(v[1]) + "." + std::to_string(v[2]);
    s.loaded = true;
  } catch (const std::exception& e) {
    s.error = e.what();
  }
  return s;
}

LibraryStatus cudnnStatus() {
  LibraryStatus s;
  try {
    const size_t v = cudnnApi().getVersion();  // major * 10000 + minor * 100 + patch since cuDNN 9
    s.version = std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
    s.loaded = true;
  } catch (const std::exception& e) {
    s.error = e.what();
  }
  return s;
}

DevicePtr openDevice(int index) {
  const Availability a = availability();
  if (a.deviceCount == 0) throwError("CUDA is not usable: " + a.reason, ErrorCode::CudaUnavailable);
  if (index >= a.deviceCount)
    throwRangeError("CUDA device index " + std::to_string(index) + " is out of range (" + std::to_string(a.deviceCount) + " device(s))");
  return std::make_shared<CudaDevice>(index);
}

CudaDevice::CudaDevice(int index) : index_(index) {
  BSSN_CUDA_TRY(cudaSetDevice(index));
  cudaDeviceProp prop;
  BSSN_CUDA_TRY(cudaGetDeviceProperties(&prop, index));
  name_ = std::string(prop.name) + " (cuda:" + std::to_string(index) + ")";
  computeMajor_ = prop.major;
  computeMinor_ = prop.minor;
  multiprocessors_ = prop.multiProcessorCount;
  totalMemory_ = prop.totalGlobalMem;
  if (const char* graphs = std::getenv("BSSN_CUDA_GRAPHS"); graphs && std::strcmp(graphs, "0") == 0) graphs_ = false;
  const cudaError_t image = probeKernelImage();
  if (image != cudaSuccess)
    throwError("bssn's CUDA kernels cannot run on " + name_ + " (compute capability " + std::to_string(prop.major) + "." +
               std::to_string(prop.minor) + "): " + describeStatus(image) + "; rebuild with BSSN_CUDA_ARCHITECTURES including it");
  int pools = 0;
  BSSN_CUDA_TRY(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, index));
  usePool_ = pools != 0;
  if (usePool_) {
    // Keep freed memory in the pool: later allocations reuse it without synchronizing.
    BSSN_CUDA_TRY(cudaDeviceGetDefaultMemPool(&pool_, index));
    uint64_t threshold = std::numeric_limits<uint64_t>::max();
    BSSN_CUDA_TRY(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &threshold));
  }
  BSSN_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  const char* caching = std::getenv("BSSN_CUDA_CACHING");
  allocator_ = std::make_unique<CachingAllocator>(
      index, !(caching && std::strcmp(caching, "0") == 0),
      [this](void** p, size_t bytes) { return usePool_ ? cudaMallocAsync(p, bytes, stream_) : cudaMalloc(p, bytes); },
      [this](void* p) {
        // Any thread: a free must not be enqueued into a capture under way on the JS thread.
        std::lock_guard<std::mutex> lock(captureMutex_);
        const cudaError_t st = usePool_ ? cudaFreeAsync(p, stream_) : cudaFree(p);
        if (st != cudaSuccess) noteFailure(st, std::string(usePool_ ? "cudaFreeAsync: " : "cudaFree: ") + describeStatus(st));
        return st;
      });
  cudaEvent_t epoch = nullptr;
  BSSN_CUDA_TRY(cudaEventCreateWithFlags(&epoch, cudaEventBlockingSync));
  anchor_ = std::make_shared<TimeAnchor>(index_, epoch, nullptr);
  anchorHostTime_ = std::chrono::steady_clock::now();
  BSSN_CUDA_TRY(cudaEventRecord(epoch, stream_));
}

CudaDevice::~CudaDevice() {
  for (const TimedLaunch& l : timedLaunches_) {
    cudaEventDestroy(l.start);
    cudaEventDestroy(l.end);
  }
  conv_.reset();  // its descriptors go before the cuDNN handle
  if (cublas_) cublasApi().destroy(cublas_);
  if (cudnn_) cudnnApi().destroy(cudnn_);
  if (stream_) {
    cudaSetDevice(index_);
    allocator_.reset();  // its cached blocks' frees go on the stream, before it goes
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  if (cublasWorkspace_) cudaFree(cublasWorkspace_);  // after the stream's last gemm has run
}

cublas::Handle CudaDevice::cublasHandle() {
  enter();
  if (!cublas_) {
    const CublasApi& api = cublasApi();
    cublas::Handle handle = nullptr;
    cublas::Status st = api.create(&handle);
    // cuBLAS allocates its workspace with cudaMalloc, outside our allocator and pool, which keep freed memory
    // (release threshold: never): give their free memory back and try once more before failing.
    if (st != cublas::kSuccess) {
      releaseCached();
      st = api.create(&handle);
    }
    if (st != cublas::kSuccess) throwCublas("cublasCreate_v2", st);
    const char* failed = "cublasSetStream_v2";
    st = api.setStream(handle, stream_);
    // Full fp32 unless the device allows TF32 for matrix products (off by default, as in PyTorch).
    if (st == cublas::kSuccess) {
      failed = "cublasSetMathMode";
      st = api.setMathMode(handle, tf32().matmul ? cublas::kTf32TensorOpMath : cublas::kDefaultMath);
    }
    // A workspace of our own (after setStream, which resets it): cuBLAS then allocates nothing in a captured step,
    // whose graph replays with this memory (the device outlives its graphs). NVIDIA's recommended size per arch.
    if (st == cublas::kSuccess) {
      failed = "cublasSetWorkspace_v2";
      const size_t bytes = computeMajor_ >= 9 ? (32u << 20) : (4u << 20);
      if (cudaMalloc(&cublasWorkspace_, bytes) != cudaSuccess) {
        cudaGetLastError();
        cublasWorkspace_ = nullptr;  // cuBLAS's own pool then, as before (captures may fail: out of memory anyway)
      } else {
        st = api.setWorkspace(handle, cublasWorkspace_, bytes);
      }
    }
    if (st != cublas::kSuccess) {
      api.destroy(handle);
      if (cublasWorkspace_) cudaFree(cublasWorkspace_);
      cublasWorkspace_ = nullptr;
      throwCublas(failed, st);
    }
    cublas_ = handle;
  }
  return cublas_;
}

void CudaDevice::setTf32(Tf32 t) {
  if (cublas_ && t.matmul != tf32().matmul) {
    const cublas::Status st = cublasApi().setMathMode(cublas_, t.matmul ? cublas::kTf32TensorOpMath : cublas::kDefaultMath);
    if (st != cublas::kSuccess) throwCublas("cublasSetMathMode", st);
  }
  Device::setTf32(t);  // ConvCache reads it per call
}

cudnn::Handle CudaDevice::cudnnHandle() {
  enter();
  if (!cudnn_) {
    const CudnnApi& api = cudnnApi();
    cudnn::Handle handle = nullptr;
    cudnn::Status st = api.create(&handle);
    if (st != cudnn::kSuccess) {  // as for cuBLAS
      releaseCached();
      st = api.create(&handle);
    }
    if (st != cudnn::kSuccess) throwCudnn("cudnnCreate", st);
    st = api.setStream(handle, stream_);
    if (st != cudnn::kSuccess) {
      api.destroy(handle);
      throwCudnn("cudnnSetStream", st);
    }
    cudnn_ = handle;
  }
  return cudnn_;
}

DeviceInfo CudaDevice::info() {
  DeviceInfo out = {{"kind", std::string("cuda")},
                    {"name", name_},
                    {"index", double(index_)},
                    {"computeCapability", std::to_string(computeMajor_) + "." + std::to_string(computeMinor_)},
                    {"multiprocessors", double(multiprocessors_)},
                    {"totalMemoryBytes", double(totalMemory_)},
                    {"streamOrderedAllocator", usePool_ ? 1.0 : 0.0}};
#if defined(BSSN_CUDA_EMULATED)
  // Said plainly, so that nobody mistakes its results or timings for a GPU's (the benchmarks refuse it).
  out.push_back({"emulated", std::string("yes: bssn's CUDA emulator runs the CUDA backend's kernels on the CPU, for tests; "
                                         "timings are not GPU figures")});
#endif
  int runtime = 0, driver = 0;
  if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) out.push_back({"cudaRuntimeVersion", double(runtime)});
  if (cudaDriverGetVersion(&driver) == cudaSuccess) out.push_back({"cudaDriverVersion", double(driver)});
  cudaGetLastError();
  const LibraryStatus blas = cublasStatus();
  if (blas.loaded) out.push_back({"cublasVersion", blas.version}); else out.push_back({"cublasError", blas.error});
  const LibraryStatus dnn = cudnnStatus();
  if (dnn.loaded) out.push_back({"cudnnVersion", dnn.version}); else out.push_back({"cudnnError", dnn.error});
  return out;
}

void CudaDevice::shutdown() {
  // Environment teardown: let queued work finish. The stream stays for buffers freed later.
  shutDown_ = true;
  cudaSetDevice(index_);
  cudaStreamSynchronize(stream_);
}

void CudaDevice::emptyCache() {
  enter();
  refuseInCapture("emptying the memory cache");
  // The allocator's cached blocks go back to the pool, then what the pool holds beyond the live allocations to the
  // system (frees still queued on the stream stay pooled).
  const cudaError_t st = allocator_->emptyCache();
  if (st != cudaSuccess) throwStatus(usePool_ ? "cudaFreeAsync" : "cudaFree", st, "emptying the cache of " + name_, __FILE__, __LINE__);
  if (usePool_) BSSN_CUDA_TRY(cudaMemPoolTrimTo(pool_, 0));
}

void CudaDevice::releaseCached() noexcept {
  allocator_->emptyCache();
  if (usePool_ && cudaMemPoolTrimTo(pool_, 0) != cudaSuccess) cudaGetLastError();
}

// What the allocator holds: blocks in use and cached, private pools included (not what the CUDA pool keeps of
// blocks it was given back, which emptyCache trims).
int64_t CudaDevice::reservedBytes() const { return allocator_->reservedBytes(); }

int64_t CudaDevice::cachedBytes() const { return allocator_->cachedBytes(); }

std::shared_ptr<PrivatePool> CudaDevice::beginPrivatePool(std::shared_ptr<PrivatePool> pool) {
  enter();
  return allocator_->beginPrivatePool(std::move(pool));
}

void CudaDevice::endPrivatePool() { allocator_->endPrivatePool(); }

void CudaDevice::noteFailure(cudaError_t status, const std::string& message) {
  if (!isSticky(status)) return;
  std::lock_guard<std::mutex> lock(faultMutex_);
  if (fault_.empty()) fault_ = message;
}

void CudaDevice::enter() {
  {
    std::lock_guard<std::mutex> lock(faultMutex_);
    if (!fault_.empty())
      throwError(name_ + " is unusable after an earlier error: " + fault_ + "; restart the process to use it again", ErrorCode::DeviceFault);
  }
  if (shutDown_) throwError(name_ + " was shut down");
  const cudaError_t st = cudaSetDevice(index_);
  if (st == cudaSuccess) {
    if (!capture_) sweepSharedFrees();  // its device synchronization would break a capture under way
    return;
  }
  // A sticky fault surfaces at whichever call comes next, this one included: from here on the device is unusable.
  const std::string message = std::string("cudaSetDevice: ") + describeStatus(st);
  noteFailure(st, message);
  if (isSticky(st))
    throwError(name_ + " is unusable after an earlier error: " + message + "; restart the process to use it again", ErrorCode::DeviceFault);
  throwStatus("cudaSetDevice", st, "", __FILE__, __LINE__);
}

void CudaDevice::checkLaunch(const char* what) {
  const cudaError_t st = cudaGetLastError();
  if (st == cudaSuccess) return;
  const std::string message = std::string(what) + " kernel launch: " + describeStatus(st) + " on " + name_;
  noteFailure(st, message);
  throwError(message, isSticky(st) ? ErrorCode::DeviceFault : ErrorCode::Default);
}

void* CudaDevice::allocateRaw(size_t bytes) {
  enter();
  void* p = nullptr;
  const cudaError_t st = allocator_->allocate(&p, bytes);
  if (st != cudaSuccess) {
    cudaGetLastError();
    throwStatus(usePool_ ? "cudaMallocAsync" : "cudaMalloc", st, "requested " + std::to_string(bytes) + " bytes on " + name_, __FILE__, __LINE__);
  }
  return p;
}

void CudaDevice::freeRaw(void* data, size_t) noexcept {
  // Back to the allocator's cache: the device's later work, all on its stream, runs after the work already
  // enqueued, so the block is reused in stream order.
  cudaSetDevice(index_);
  {
    std::lock_guard<std::mutex> lock(captureMutex_);
    // A step is being captured: its graph may read any memory but its own pool's (an ordinary block, another graph's).
    if (captureResources_ && !allocator_->inPool(data, captureResources_->pool())) {
      try {
        captureResources_->deferFree(data);
        return;
      } catch (...) {
        // out of host memory for the list: back to the cache after all
      }
    }
  }
  allocator_->free(data);
}

void CudaDevice::poisonRaw(void* data, size_t bytes) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  BSSN_CUDA_TRY(cudaStreamIsCapturing(stream_, &capture));
  if (capture == cudaStreamCaptureStatusNone) {
    BSSN_CUDA_TRY(cudaMemsetAsync(data, 0xFF, bytes, stream_));
    return;
  }
  // A private pool's buffer in a capture: NaN by a kernel node, which the emulator captures (it has no memset nodes).
  launchFill(static_cast<float*>(data), bytes / sizeof(float), std::numeric_limits<float>::quiet_NaN(), stream_);
  checkLaunch("poison");
}

void CudaDevice::upload(const BufferPtr& dst, size_t dstOffset, const void* src, size_t bytes) {
  enter();
  if (bytes == 0) return;
  char* target = static_cast<char*>(dst->data()) + dstOffset;
  if (capture_) {
    // Inside a captured step (a normalization's pointer tables, say): the bytes are a constant of the graph, in
    // host memory it keeps, which its memcpy node reads at every replay.
    void* constant = capture_->resources->hostConstant(bytes);
    std::memcpy(constant, src, bytes);
    BSSN_CUDA_TRY(cudaMemcpyAsync(target, constant, bytes, cudaMemcpyHostToDevice, stream_));
    return;
  }
  if (bytes > PinnedPool::kMaxPooledBytes) {
    // Large uploads copy from pageable memory directly (the driver may wait for the stream).
    BSSN_CUDA_TRY(cudaMemcpyAsync(target, src, bytes, cudaMemcpyHostToDevice, stream_));
    return;
  }
  std::unique_ptr<PinnedBlock> block = pinned_.acquire(bytes);
  std::memcpy(block->host, src, bytes);
  cudaError_t st = cudaMemcpyAsync(target, block->host, bytes, cudaMemcpyHostToDevice, stream_);
  if (st == cudaSuccess && (st = cudaEventRecord(block->done, stream_)) != cudaSuccess)
    cudaStreamSynchronize(stream_);  // the copy was queued but its event was not: the block is reused only after it
  pinned_.release(std::move(block));
  if (st != cudaSuccess) throwStatus("cudaMemcpyAsync", st, "upload of " + std::to_string(bytes) + " bytes", __FILE__, __LINE__);
}

void CudaDevice::copy(const BufferPtr& dst, size_t dstOffset, const BufferPtr& src, size_t srcOffset, size_t bytes) {
  enter();
  if (bytes == 0) return;
  BSSN_CUDA_TRY(cudaMemcpyAsync(static_cast<char*>(dst->data()) + dstOffset, static_cast<const char*>(src->data()) + srcOffset,
                                bytes, cudaMemcpyDeviceToDevice, stream_));
}

void CudaDevice::fill(const BufferPtr& dst, size_t count, float value) {
  enter();
  launchFill(dst->f32(), count, value, stream_);
  checkLaunch("fill");
}

void CudaDevice::randn(const BufferPtr& dst, size_t count, uint64_t seed, float std) {
  enter();
  launchRandn(dst->f32(), count, seed, std, stream_);
  checkLaunch("randn");
}

void CudaDevice::randnFromTable(const BufferPtr& dst, size_t count, const BufferPtr& table, size_t index, float std) {
  enter();
  launchRandnFromTable(dst->f32(), count, static_cast<const uint64_t*>(table->data()) + index, std, stream_);
  checkLaunch("randnFromTable");
}

void CudaDevice::rand(const BufferPtr& dst, size_t count, uint64_t seed, float low, float high) {
  enter();
  launchRand(dst->f32(), count, seed, low, high, stream_);
  checkLaunch("rand");
}

std::shared_ptr<Fence> CudaDevice::download(const BufferPtr& src, size_t srcOffset, std::shared_ptr<void> host, size_t bytes) {
  enter();
  refuseInCapture("reading a tensor to the host");
  auto self = std::static_pointer_cast<CudaDevice>(shared_from_this());
  if (bytes > PinnedPool::kMaxPooledBytes) {
    BufferPtr staged = allocate(bytes);
    BSSN_CUDA_TRY(cudaMemcpyAsync(staged->data(), static_cast<const char*>(src->data()) + srcOffset, bytes, cudaMemcpyDeviceToDevice, stream_));
    return std::make_shared<LargeReadFence>(self, recordEvent(cudaEventDisableTiming | cudaEventBlockingSync), std::move(staged), std::move(host), bytes);
  }
  std::unique_ptr<PinnedBlock> block = pinned_.acquire(bytes);
  cudaError_t st = cudaMemcpyAsync(block->host, static_cast<const char*>(src->data()) + srcOffset, bytes, cudaMemcpyDeviceToHost, stream_);
  if (st == cudaSuccess && (st = cudaEventRecord(block->done, stream_)) != cudaSuccess)
    cudaStreamSynchronize(stream_);  // the copy was queued but its event was not: the block is reused only after it
  if (st != cudaSuccess) {
    pinned_.release(std::move(block));
    throwStatus("cudaMemcpyAsync", st, "download of " + std::to_string(bytes) + " bytes", __FILE__, __LINE__);
  }
  return std::make_shared<CudaFence>(self, nullptr, std::move(block), std::move(host), bytes);
}

namespace {
// Waits for the timed launches' end events on a worker thread and hands over their elapsed times.
class KernelTimesFence : public Fence {
 public:
  KernelTimesFence(std::shared_ptr<CudaDevice> device, std::vector<CudaDevice::TimedLaunch> launches,
                   std::shared_ptr<std::vector<Device::KernelTime>> out)
      : device_(std::move(device)), launches_(std::move(launches)), out_(std::move(out)) {}
  ~KernelTimesFence() override {
    cudaSetDevice(device_->index());
    for (const auto& l : launches_) {
      cudaEventDestroy(l.start);
      cudaEventDestroy(l.end);
    }
  }
  void wait() override {
    cudaSetDevice(device_->index());
    for (const auto& l : launches_) {
      float ms = 0;
      cudaError_t st = cudaEventSynchronize(l.end);
      if (st == cudaSuccess) st = cudaEventElapsedTime(&ms, l.start, l.end);
      if (st != cudaSuccess) throwStatus("cudaEventElapsedTime", st, std::string("timing ") + l.name, __FILE__, __LINE__);
      out_->push_back({l.name, ms});
    }
  }

 private:
  std::shared_ptr<CudaDevice> device_;
  std::vector<CudaDevice::TimedLaunch> launches_;
  std::shared_ptr<std::vector<Device::KernelTime>> out_;
};
}  // namespace

std::shared_ptr<Fence> CudaDevice::takeKernelTimes(std::shared_ptr<std::vector<KernelTime>> out) {
  enter();
  std::vector<TimedLaunch> launches;
  launches.swap(timedLaunches_);
  return std::make_shared<KernelTimesFence>(std::static_pointer_cast<CudaDevice>(shared_from_this()), std::move(launches), std::move(out));
}

cudaEvent_t CudaDevice::recordEvent(unsigned flags) {
  cudaEvent_t event;
  BSSN_CUDA_TRY(cudaEventCreateWithFlags(&event, flags));
  const cudaError_t st = cudaEventRecord(event, stream_);
  if (st != cudaSuccess) {
    cudaEventDestroy(event);
    throwStatus("cudaEventRecord", st, "", __FILE__, __LINE__);
  }
  return event;
}

std::shared_ptr<Fence> CudaDevice::fence() {
  enter();
  refuseInCapture("waiting for the device");
  auto self = std::static_pointer_cast<CudaDevice>(shared_from_this());
  return std::make_shared<CudaFence>(self, recordEvent(cudaEventDisableTiming | cudaEventBlockingSync), nullptr, nullptr, 0);
}

std::shared_ptr<Fence> CudaDevice::timestamp(std::shared_ptr<double> ms) {
  enter();
  refuseInCapture("a timestamp");
  const cudaEvent_t event = recordEvent(cudaEventBlockingSync);
  auto self = std::static_pointer_cast<CudaDevice>(shared_from_this());
  // A second after the anchor, this timestamp becomes the next one (it keeps its parent until its time is known).
  const auto now = std::chrono::steady_clock::now();
  if (now - anchorHostTime_ > std::chrono::seconds(1)) {
    anchor_ = std::make_shared<TimeAnchor>(index_, event, anchor_);
    anchorHostTime_ = now;
    return std::make_shared<TimestampFence>(self, anchor_, nullptr, std::move(ms));
  }
  return std::make_shared<TimestampFence>(self, anchor_, event, std::move(ms));
}

void CudaDevice::launchSequence(LaunchGraphs& graphs, const void* key, size_t keyBytes, const std::function<void()>& launches) {
  // Timing brackets each kernel with events; a step being captured records the kernels themselves.
  if (!graphs_ || kernelTiming() || capture_) return launches();
  cudaGraphExec_t exec = graphs.find(key, keyBytes);
  if (!exec) {
    {
      std::lock_guard<std::mutex> lock(captureMutex_);
      exec = captureGraph(stream_, launches);
    }
    if (!exec) return launches();  // a launch failed: again, directly, for the caller's launch check to report
    graphs.add(key, keyBytes, exec);
  }
  const cudaError_t st = cudaGraphLaunch(exec, stream_);
  if (st == cudaSuccess) return;
  noteFailure(st, std::string("cudaGraphLaunch: ") + describeStatus(st));
  throwStatus("cudaGraphLaunch", st, "on " + name_, __FILE__, __LINE__);
}

void CudaDevice::normalize(const NormalizeJob& job) {
  enter();
  normalizeBatch(*this, job);
  checkLaunch("normalize");
}

void CudaDevice::normalizeBackward(const NormalizeJob& job) {
  enter();
  normalizeBackwardBatch(*this, job);
  checkLaunch("normalize backward");
}

// Training-stack ops: the buffers' memory returns to the pool only after these run (stream-ordered frees).
static const float* f32(const BufferPtr& b) { return b ? b->f32() : nullptr; }

void CudaDevice::unary(UnaryOp op, float p, const BufferPtr& x, const BufferPtr& y, size_t n) {
  enter();
  launchUnary(op, p, x->f32(), y->f32(), n, stream_);
  checkLaunch("unary");
}

void CudaDevice::unaryBackward(UnaryOp op, float p, const BufferPtr& x, const BufferPtr& y, const BufferPtr& dy, const BufferPtr& dx, size_t n) {
  enter();
  launchUnaryBackward(op, p, f32(x), f32(y), dy->f32(), dx->f32(), n, stream_);
  checkLaunch("unary backward");
}

void CudaDevice::binary(BinaryOp op, const BufferPtr& a, const BufferPtr& b, const BufferPtr& out, size_t n) {
  enter();
  launchBinary(op, a->f32(), b->f32(), out->f32(), n, stream_);
  checkLaunch("binary");
}

void CudaDevice::addBias(const BufferPtr& x, const BufferPtr& bias, const BufferPtr& out, size_t outer, size_t channels, size_t inner) {
  enter();
  launchAddBias(x->f32(), bias->f32(), out->f32(), outer, channels, inner, stream_);
  checkLaunch("addBias");
}

void CudaDevice::sumToBias(const BufferPtr& dy, const BufferPtr& db, size_t outer, size_t channels, size_t inner) {
  enter();
  launchSumToBias(dy->f32(), db->f32(), outer, channels, inner, stream_);
  checkLaunch("sumToBias");
}

void CudaDevice::biasActivation(UnaryOp op, float p, const BufferPtr& x, const BufferPtr& bias, const BufferPtr& y, size_t outer,
                                size_t channels, size_t inner) {
  enter();
  launchBiasActivation(op, p, x->f32(), bias->f32(), y->f32(), outer, channels, inner, stream_);
  checkLaunch("biasActivation");
}

void CudaDevice::biasActivationBackward(UnaryOp op, float p, const BufferPtr& y, const BufferPtr& dy, const BufferPtr& dx,
                                        const BufferPtr& db, bool accumulate, size_t outer, size_t channels, size_t inner) {
  enter();
  launchBiasActivationBackward(op, p, y->f32(), dy->f32(), dx ? dx->f32() : nullptr, db ? db->f32() : nullptr, accumulate, outer,
                               channels, inner, stream_);
  checkLaunch("biasActivationBackward");
}

void CudaDevice::sum(const BufferPtr& x, size_t n, const BufferPtr& out, float scale) {
  enter();
  launchSum(x->f32(), n, out->f32(), scale, stream_);
  checkLaunch("sum");
}

void CudaDevice::hinge(const BufferPtr& x, size_t n, size_t split, float scaleReal, float scaleFake, const BufferPtr& out) {
  enter();
  launchHinge(x->f32(), n, split, scaleReal, scaleFake, out->f32(), stream_);
  checkLaunch("hinge");
}

void CudaDevice::hingeBackward(const BufferPtr& x, const BufferPtr& g, size_t n, size_t split, float scaleReal, float scaleFake,
                               const BufferPtr& dx) {
  enter();
  launchHingeBackward(x->f32(), g->f32(), n, split, scaleReal, scaleFake, dx->f32(), stream_);
  checkLaunch("hingeBackward");
}

void CudaDevice::broadcast(const BufferPtr& scalar, const BufferPtr& out, size_t n, float scale) {
  enter();
  launchBroadcast(scalar->f32(), out->f32(), n, scale, stream_);
  checkLaunch("broadcast");
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS gets B first, with the dimensions swapped.
void CudaDevice::gemm(const GemmArgs& g) {
  cublas::Handle handle = cublasHandle();  // enter()s, and throws naming cuBLAS when it cannot be loaded
  if (g.m > INT32_MAX || g.n > INT32_MAX || g.k > INT32_MAX) throwRangeError("gemm dimensions exceed cuBLAS's 32-bit limits");
  const int m = int(g.m), n = int(g.n), k = int(g.k);
  const int lda = g.transA ? m : k;
  const int ldb = g.transB ? k : n;
  const cublas::Status st = cublasApi().sgemm(handle, g.transB ? cublas::kOpT : cublas::kOpN, g.transA ? cublas::kOpT : cublas::kOpN,
                                              n, m, k, &g.alpha, g.b->f32(), ldb, g.a->f32(), lda, &g.beta, g.c->f32(), n);
  if (st != cublas::kSuccess) throwCublas("cublasSgemm_v2", st);
  checkLaunch("gemm");
}

void CudaDevice::adam(const AdamArgs& args) {
  enter();
  launchAdam(args, stream_);
  checkLaunch("adam");
}

void CudaDevice::sgd(const SgdArgs& args) {
  enter();
  launchSgd(args, stream_);
  checkLaunch("sgd");
}

ConvCache& CudaDevice::conv() {
  if (!conv_) conv_ = std::make_unique<ConvCache>(*this);
  return *conv_;
}

void CudaDevice::conv2dForward(const Conv2dArgs& args) {
  enter();
  conv().forward(args);
  checkLaunch("cudnnConvolutionForward");
}

void CudaDevice::conv2dBackwardData(const Conv2dArgs& args) {
  enter();
  conv().backwardData(args);
  checkLaunch("cudnnConvolutionBackwardData");
}

void CudaDevice::conv2dBackwardFilter(const Conv2dArgs& args) {
  enter();
  conv().backwardFilter(args);
  checkLaunch("cudnnConvolutionBackwardFilter");
}

void CudaDevice::batchNorm(const BatchNormArgs& args) {
  enter();
  launchBatchNorm(args, stream_);
  checkLaunch("batchNorm");
}

void CudaDevice::batchNormBackward(const BatchNormBackwardArgs& args) {
  enter();
  launchBatchNormBackward(args, stream_);
  checkLaunch("batchNorm backward");
}

}  // namespace bssn::cuda
