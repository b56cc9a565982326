// A tensor: a shape and dtype over a device buffer. Its storage is opaque to JS; dispose() lets go of the
// buffer at once (queued work that reads it keeps it until that work has run).
#pragma once
#include <memory>
#include <string>

#include "core/device.h"
#include "core/shape.h"
#include "core/share.h"

namespace bssn {

class Tensor {
 public:
  // Allocates a tensor of `shape` on `device`; its contents are undefined until written.
  static std::shared_ptr<Tensor> create(const DevicePtr& device, const Shape& shape, DType dtype = DType::Float32);
  // Another tensor over the same memory with another shape of as many elements (a reshape view). The memory
  // lives while any view of it does; disposing one view leaves the others intact.
  std::shared_ptr<Tensor> view(const Shape& shape) const;
  ~Tensor() { release(); }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  const Shape& shape() const { return shape_; }
  int64_t numel() const { return numel_; }
  DType dtype() const { return dtype_; }
  size_t bytes() const { return size_t(numel_) * dtypeSize(dtype_); }
  const DevicePtr& device() const { return device_; }

  bool disposed() const { return !buffer_; }
  // The storage; throws Error if the tensor was disposed. `what` names the tensor in the message.
  const BufferPtr& buffer(const char* what = "tensor") const;

  // Tensors owned by another object (a BSSN's outputs) refuse a dispose from their user.
  const std::string& owner() const { return owner_; }
  void setOwner(std::string owner) { owner_ = std::move(owner); }

  void release();

  // Sharing (core/share.h). share(): the first call moves the buffer to shareable memory (one copy, in stream
  // order); each call is a publication marking the writes enqueued so far. Returns the token a descriptor carries
  // and sets *publication.
  std::string share(uint32_t* publication);
  // A tensor over the memory `token` names, on `device` (the exporter's device kind and index), with `shape`. Its
  // first use waits for `publication`; later uses wait for the exporter's latest one.
  static std::shared_ptr<Tensor> open(const DevicePtr& device, const std::string& token, const Shape& shape, uint32_t publication);
  bool opened() const { return import_ != nullptr; }

 private:
  Tensor(DevicePtr device, BufferPtr buffer, Shape shape, int64_t numel, DType dtype)
      : device_(std::move(device)), buffer_(std::move(buffer)), shape_(std::move(shape)), numel_(numel), dtype_(dtype) {}

  DevicePtr device_;
  BufferPtr buffer_;
  Shape shape_;
  int64_t numel_;
  DType dtype_;
  std::string owner_;
  std::shared_ptr<ShareExport> exporting_;  // set once this tensor called share()
  std::shared_ptr<ShareImport> import_;     // set on a tensor made by open()

  void checkImport(const char* what) const;
};

using TensorPtr = std::shared_ptr<Tensor>;

}  // namespace bssn
