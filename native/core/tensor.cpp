#include "core/tensor.h"

namespace bssn {

std::shared_ptr<Tensor> Tensor::create(const DevicePtr& device, const Shape& shape, DType dtype) {
  const int64_t numel = checkedNumel(shape);
  BufferPtr buffer = device->allocate(size_t(numel) * dtypeSize(dtype));
  device->tensorCreated();
  return std::shared_ptr<Tensor>(new Tensor(device, std::move(buffer), shape, numel, dtype));
}

std::shared_ptr<Tensor> Tensor::view(const Shape& shape) const {
  const int64_t numel = checkedNumel(shape);
  if (numel != numel_)
    throwRangeError("cannot view a tensor of shape " + shapeToString(shape_) + " (" + std::to_string(numel_) + " elements) as " +
                    shapeToString(shape) + " (" + std::to_string(numel) + " elements)");
  device_->tensorCreated();
  return std::shared_ptr<Tensor>(new Tensor(device_, buffer(), shape, numel, dtype_));
}

const BufferPtr& Tensor::buffer(const char* what) const {
  if (!buffer_) throwError(std::string(what) + " was disposed", ErrorCode::Disposed);
  return buffer_;
}

void Tensor::release() {
  if (!buffer_) return;
  buffer_.reset();
  device_->tensorReleased();
}

}  // namespace bssn
