#include "core/device.h"

#include <cstdlib>
#include <cstring>

namespace bssn {

Buffer::~Buffer() {
  if (data_) device_->freeRaw(data_, bytes_);
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
  auto buffer = std::make_shared<Buffer>(shared_from_this(), data, bytes);
  const int64_t now = allocatedBytes_ += int64_t(bytes);
  ++liveBuffers_;
  int64_t peak = peakBytes_.load();
  while (now > peak && !peakBytes_.compare_exchange_weak(peak, now)) {
  }
  return buffer;
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
