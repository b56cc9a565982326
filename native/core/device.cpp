#include "core/device.h"

#include <cstdlib>
#include <cstring>

namespace bssn {

Buffer::~Buffer() {
  // Memory with its own owner (storage_) goes with it; the rest back to the device's allocator.
  if (!storage_)
    if (void* data = data_.load()) device_->freeRaw(data, bytes_);
  device_->allocatedBytes_ -= int64_t(bytes_);
  --device_->liveBuffers_;
}

namespace {
bool poisonAllocations() {
  static const bool on = [] {
    const char* v = std::getenv("BSSN_POISON_ALLOCATIONS");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}
}  // namespace

BufferPtr Device::allocate(size_t bytes) {
  // Zero-byte tensors still get a distinct (one-element) allocation so every buffer has a valid pointer.
  void* data = allocateRaw(bytes == 0 ? 4 : bytes);
  if (poisonAllocations() && bytes > 0) {
    try {
      poisonRaw(data, bytes);
    } catch (...) {
      freeRaw(data, bytes);
      throw;
    }
  }
  return counted(std::make_shared<Buffer>(shared_from_this(), data, bytes));
}

void* Buffer::moveTo(void* data, std::shared_ptr<void> storage) {
  storage_ = std::move(storage);
  return data_.exchange(data, std::memory_order_acq_rel);
}

BufferPtr Device::adoptExternal(void* data, size_t bytes, std::shared_ptr<void> storage) {
  return counted(std::make_shared<Buffer>(shared_from_this(), data, bytes, std::move(storage)));
}

// Every buffer is counted here and uncounted by ~Buffer.
BufferPtr Device::counted(BufferPtr buffer) {
  const int64_t now = allocatedBytes_ += int64_t(buffer->bytes());
  ++liveBuffers_;
  int64_t peak = peakBytes_.load();
  while (now > peak && !peakBytes_.compare_exchange_weak(peak, now)) {
  }
  return buffer;
}

void Device::beginCapture() {
  throw Error(ErrorKind::Error, "capturing work into a graph needs a CUDA device, not " + name(), ErrorCode::Capture);
}

std::shared_ptr<CapturedWork> Device::endCapture() {
  throw Error(ErrorKind::Error, "no capture is in progress on " + name(), ErrorCode::Capture);
}

MemoryStats Device::memoryStats() const {
  MemoryStats s;
  s.allocatedBytes = allocatedBytes_.load();
  s.reservedBytes = reservedBytes();
  s.peakBytes = peakBytes_.load();
  s.liveBuffers = liveBuffers_.load();
  s.liveTensors = liveTensors_.load();
  return s;
}

}  // namespace bssn
