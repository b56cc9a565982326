// The backend-neutral device interface. A device owns one stream: every operation is enqueued on it in call
// order and returns at once; results reach the host through fences that are waited on off the JS thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "core/error.h"
#include "core/ops.h"

namespace bssn {

enum class DeviceKind { Cpu, Cuda };

struct MemoryStats {
  int64_t allocatedBytes = 0;  // bytes held by live buffers (tensors, normalizer state, queued work)
  int64_t reservedBytes = 0;   // bytes held from the system: allocated plus the allocator's cache
  int64_t peakBytes = 0;       // high-water mark of allocatedBytes
  int64_t liveBuffers = 0;
  int64_t liveTensors = 0;     // tensors created and not yet disposed
};

class Device;
struct NormalizeJob;
class ShareRegion;
struct ShareExport;
struct ShareImport;

// Device memory. Tensors, normalizers and enqueued work share ownership, so a dispose never frees memory an
// enqueued operation still reads: the memory goes back when the last holder lets go (stream-ordered free).
class Buffer {
 public:
  Buffer(std::shared_ptr<Device> device, void* data, size_t bytes) : device_(std::move(device)), data_(data), bytes_(bytes) {}
  // Memory that is not the device allocator's (a shared region, another process's memory): `storage` owns it, and
  // the device lets go of it once the work queued on its stream has run.
  Buffer(std::shared_ptr<Device> device, void* data, size_t bytes, std::shared_ptr<void> storage)
      : device_(std::move(device)), data_(data), bytes_(bytes), storage_(std::move(storage)) {}
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_.load(std::memory_order_acquire); }
  float* f32() const { return static_cast<float*>(data()); }
  size_t bytes() const { return bytes_; }
  Device& device() const { return *device_; }

  // Moves the buffer to `data`, owned by `storage` (a tensor's first share()); every view sees the move. Called
  // in stream order by the device; returns the allocator memory it held, for the device to free.
  void* moveTo(void* data, std::shared_ptr<void> storage);
  // Set when the buffer has been shared (core/share.h); guarded by the export's creation in share.cpp.
  std::shared_ptr<ShareExport> shared;

 private:
  std::shared_ptr<Device> device_;
  std::atomic<void*> data_;
  size_t bytes_;
  std::shared_ptr<void> storage_;
};

// What a device reports about itself (device.info() in JS): name/value pairs, numbers or text.
using DeviceInfo = std::vector<std::pair<std::string, std::variant<double, std::string>>>;

// Marks a point in a device's stream. wait() blocks until the work enqueued before it has run and throws the
// stream's error if it failed; it is called from worker threads, never from the JS thread.
class Fence {
 public:
  virtual ~Fence() = default;
  virtual void wait() = 0;
};

// A sequence of the device's work recorded once and replayed (a CUDA graph): replay() enqueues all of it again, on
// the same memory, in one launch.
class CapturedWork {
 public:
  virtual ~CapturedWork() = default;
  virtual void replay() = 0;
};

// A device: memory, one stream, and the ops (core/ops.h) every backend implements.
class Device : public std::enable_shared_from_this<Device>, public Ops {
 public:
  virtual ~Device() = default;

  virtual DeviceKind kind() const = 0;
  virtual int index() const { return 0; }
  virtual std::string name() const = 0;
  virtual DeviceInfo info() = 0;

  // Memory. allocate() throws Error on failure; the free happens when the Buffer is destroyed.
  BufferPtr allocate(size_t bytes);
  MemoryStats memoryStats() const;
  // Returns the allocator's cached free blocks to the system (PyTorch's empty_cache).
  virtual void emptyCache() {}
  void tensorCreated() { ++liveTensors_; }
  void tensorReleased() { --liveTensors_; }

  // Stream operations: enqueued in call order, return at once.
  // upload: `src` is copied before the call returns, so the caller may free it at once.
  virtual void upload(const BufferPtr& dst, size_t dstOffset, const void* src, size_t bytes) = 0;
  virtual void copy(const BufferPtr& dst, size_t dstOffset, const BufferPtr& src, size_t srcOffset, size_t bytes) = 0;
  virtual void fill(const BufferPtr& dst, size_t count, float value) = 0;
  // dst[i] = std * (standard normal sample i of stream `seed`, core/random.h): identical on every backend.
  virtual void randn(const BufferPtr& dst, size_t count, uint64_t seed, float std) = 0;
  // randn with the seed read on the device, from the uint64 `table[index]` at run time: a captured graph's replays
  // draw new noise from the seeds copied into the table before each replay.
  virtual void randnFromTable(const BufferPtr& dst, size_t count, const BufferPtr& table, size_t index, float std) = 0;
  // dst[i] = low + (high - low) * (uniform sample i of stream `seed` in [0, 1)), identical on every backend.
  virtual void rand(const BufferPtr& dst, size_t count, uint64_t seed, float low, float high) = 0;
  virtual void normalize(const NormalizeJob& job) = 0;
  // dL/dW into job.outputs from dL/dW_hat in job.grads, with u, v and the divisors of the last forward as
  // constants (PyTorch's semantics): dW = (c/s) G - (c/s^2) <G, W> ds/dW.
  virtual void normalizeBackward(const NormalizeJob& job) = 0;
  // download: `bytes` from `src` into `host`, which the device holds until the copy is made. A caller that never
  // waits on the fence (a worker thread torn down between the enqueue and its promise) then leaves nothing
  // writing into memory it has freed.
  virtual std::shared_ptr<Fence> download(const BufferPtr& src, size_t srcOffset, std::shared_ptr<void> host, size_t bytes) = 0;
  virtual std::shared_ptr<Fence> fence() = 0;
  // When the stream reaches this point, *ms is set to milliseconds since the device was opened (CUDA: from
  // events, so it measures device time); valid once the fence has been waited on.
  virtual std::shared_ptr<Fence> timestamp(std::shared_ptr<double> ms) = 0;

  // Capture (CUDA only; others throw ERR_BSSN_CAPTURE): between begin and end, the stream's work is recorded, not
  // run; memory allocated meanwhile comes from a pool private to the capture, kept while its work or buffers live.
  // A host read, a synchronization or an upload of caller data inside a capture throws ERR_BSSN_CAPTURE.
  virtual void beginCapture();
  virtual std::shared_ptr<CapturedWork> endCapture();
  virtual bool capturing() const { return false; }

  // Stops the stream at environment teardown; later calls throw.
  virtual void shutdown() {}

  // Whether TF32 tensor-core math (inputs rounded to a 10-bit mantissa) may be used, as PyTorch's
  // torch.backends.cudnn.allow_tf32 (default on) and torch.backends.cuda.matmul.allow_tf32 (default off). CUDA
  // applies it to cuDNN and cuBLAS; the CPU computes in fp32 and only records it.
  struct Tf32 {
    bool conv = true;
    bool matmul = false;
  };
  virtual void setTf32(Tf32 t) { tf32_ = t; }
  Tf32 tf32() const { return tf32_; }

  // Per-kernel device times, for benchmarks: while on, each normalization kernel launch (CPU: each normalization
  // task) is timed on the device; takeKernelTimes() returns a fence whose wait() moves what was recorded since the
  // last call into *out.
  struct KernelTime {
    std::string name;
    double ms;
  };
  void setKernelTiming(bool on) { kernelTiming_ = on; }
  bool kernelTiming() const { return kernelTiming_; }
  virtual std::shared_ptr<Fence> takeKernelTimes(std::shared_ptr<std::vector<KernelTime>> out) = 0;

  // Sharing across threads and processes (core/share.h).
  // A new region that other processes can map, for a buffer of `bytes` of this device.
  virtual std::shared_ptr<ShareRegion> createShareRegion(size_t bytes) = 0;
  // Moves `buffer` to shareable memory (its first share()): the copy and the move happen in stream order.
  virtual void moveToShared(const BufferPtr& buffer, const std::shared_ptr<ShareRegion>& region) = 0;
  // A new publication of `region`: importers that wait for it see the work enqueued here so far.
  virtual uint32_t publish(const std::shared_ptr<ShareRegion>& region) = 0;
  // This stream's later work waits until the exporter's stream has reached `publication`.
  virtual void waitForPublication(ShareImport& import, uint32_t publication) = 0;
  // Another process's shared memory as a buffer of this device; sets what later waits need in `import`.
  virtual BufferPtr openShared(ShareImport& import) = 0;

 protected:
  friend class Buffer;
  virtual void* allocateRaw(size_t bytes) = 0;  // throws Error naming the call and the cause
  // Bytes held from the system (the allocator's cache included); by default what is allocated.
  virtual int64_t reservedBytes() const { return allocatedBytes_.load(); }
  int64_t allocatedBytes() const { return allocatedBytes_.load(); }
  virtual void freeRaw(void* data, size_t bytes) noexcept = 0;
  // Counts memory that came from elsewhere (another process's shared tensor) as a buffer of this device.
  BufferPtr adoptExternal(void* data, size_t bytes, std::shared_ptr<void> storage);

 private:
  BufferPtr counted(BufferPtr buffer);

 protected:
  // Fills fresh memory with NaN bytes (0xFF), in stream order. Used when BSSN_POISON_ALLOCATIONS=1 (the
  // tests set it), so an op that fails to write its whole output is caught.
  virtual void poisonRaw(void* data, size_t bytes) = 0;

 private:
  std::atomic<int64_t> allocatedBytes_{0};
  std::atomic<int64_t> peakBytes_{0};
  std::atomic<int64_t> liveBuffers_{0};
  std::atomic<int64_t> liveTensors_{0};
  bool kernelTiming_ = false;  // set and read on the JS thread
  Tf32 tf32_;                  // set and read on the JS thread
};

using DevicePtr = std::shared_ptr<Device>;

}  // namespace bssn
