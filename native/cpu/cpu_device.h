// The CPU backend: host memory and one worker-thread stream, so even large CPU work never blocks JS.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/device.h"
#include "cpu/allocator.h"
#include "cpu/stream.h"

namespace bssn {

class CpuDevice : public Device {
 public:
  static std::shared_ptr<CpuDevice> create() { return std::shared_ptr<CpuDevice>(new CpuDevice()); }
  // The stream stops first: work still running must not find the members declared after it destroyed.
  ~CpuDevice() override { stream_.stop(); }

  DeviceKind kind() const override { return DeviceKind::Cpu; }
  std::string name() const override { return "CPU"; }
  DeviceInfo info() override;

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
  std::shared_ptr<Fence> fence() override { return stream_.fence(); }
  std::shared_ptr<Fence> timestamp(std::shared_ptr<double> ms) override;
  void shutdown() override { stream_.stop(); }
  void emptyCache() override { allocator_.emptyCache(); }
  std::shared_ptr<ShareRegion> createShareRegion(size_t bytes) override;
  void moveToShared(const BufferPtr& buffer, const std::shared_ptr<ShareRegion>& region) override;
  uint32_t publish(const std::shared_ptr<ShareRegion>& region) override;
  void waitForPublication(ShareImport& import, uint32_t publication) override;
  BufferPtr openShared(ShareImport& import) override;
  std::shared_ptr<Fence> takeKernelTimes(std::shared_ptr<std::vector<KernelTime>> out) override;

 protected:
  void* allocateRaw(size_t bytes) override;
  int64_t reservedBytes() const override { return allocator_.reservedBytes(); }
  void freeRaw(void* data, size_t bytes) noexcept override;
  void poisonRaw(void* data, size_t bytes) override;

 private:
  CpuDevice();
  const std::chrono::steady_clock::time_point epoch_ = std::chrono::steady_clock::now();
  cpu::CachingAllocator allocator_;  // before the stream: queued work frees into it until the stream stops
  CpuStream stream_;
  std::mutex timesMutex_;
  std::vector<KernelTime> times_;  // recorded on the stream while kernel timing is on
  // Enqueues `task`, timed under `name` when kernel timing is on.
  void enqueueTimed(const char* name, std::function<void()> task, size_t bytes);
};

}  // namespace bssn
