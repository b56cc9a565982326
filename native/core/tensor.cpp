#include "core/tensor.h"

namespace bssn {

std::shared_ptr<Tensor> Tensor::create(const DevicePtr& device, const Shape& shape, DType dtype) {
  const int64_t numel = checkedNumel(shape);
  BufferPtr buffer = device->allocate(size_t(numel) * dtypeSize(dtype));
  device->tensorCreated();
  return std::shared_ptr<Tensor>(new Tensor(device, std::move(buffer), shape, numel, dtype));
}

const BufferPtr& Tensor::buffer(const char* what) const {
  if (!buffer_) throwError(std::string(what) + " was disposed");
  return buffer_;
}

void Tensor::release() {
  if (!buffer_) return;
  buffer_.reset();
  device_->tensorReleased();
}

}  // namespace bssn
