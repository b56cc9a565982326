#include "core/tensor.h"

#include <unistd.h>

#include <cstring>

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
  auto view = std::shared_ptr<Tensor>(new Tensor(device_, buffer(), shape, numel, dtype_));
  view->import_ = import_;  // a view of an opened tensor checks its owner as the tensor does
  return view;
}

const BufferPtr& Tensor::buffer(const char* what) const {
  if (!buffer_) throwError(std::string(what) + " was disposed", ErrorCode::Disposed);
  if (import_) checkImport(what);
  return buffer_;
}

// Every use of an opened tensor: refused once its owner is gone; ordered after the owner's latest publication.
void Tensor::checkImport(const char* what) const {
  const ShareStatus status = import_->region->status();
  if (status != ShareStatus::Live) throwShareGone(status, what);
  const uint32_t latest = import_->region->requested();
  if (latest != import_->seen.load(std::memory_order_acquire)) {
    device_->waitForPublication(*import_, latest);
    import_->seen.store(latest, std::memory_order_release);
  }
}

void Tensor::release() {
  if (!buffer_) return;
  if (exporting_) {
    std::lock_guard<std::mutex> lock(exporting_->mutex);
    if (--exporting_->exportingTensors == 0) exporting_->region->revoke();
    exporting_.reset();
  }
  buffer_.reset();
  device_->tensorReleased();
}

namespace {
std::mutex shareMutex;  // the creation of a buffer's export
}

std::string Tensor::share(uint32_t* publication) {
  const BufferPtr& buf = buffer();
  if (import_) throwTypeError("this tensor was opened from a shared descriptor: pass that descriptor on instead of sharing it again");
  if (!owner_.empty()) throwTypeError("a " + owner_ + " output cannot be shared (the " + owner_ + " owns it): share a clone()");
  std::shared_ptr<ShareExport> e;
  {
    std::lock_guard<std::mutex> lock(shareMutex);
    e = buf->shared;
    if (!e) {
      e = std::make_shared<ShareExport>();
      e->id = nextExportId();
      e->region = device_->createShareRegion(bytes());
      e->buffer = buf;
      device_->moveToShared(buf, e->region);
      buf->shared = e;
      registerExport(e);
    }
  }
  {
    std::lock_guard<std::mutex> lock(e->mutex);
    if (!exporting_) {
      if (e->region->recordedStatus() != ShareStatus::Live)
        throwError("this memory was shared before by a tensor that has since been disposed; share a clone() of it", ErrorCode::ShareGone);
      ++e->exportingTensors;
      exporting_ = e;
    }
  }
  *publication = device_->publish(e->region);
  ShareToken token;
  token.pid = getpid();
  token.fd = e->region->fd();
  token.id = e->id;
  std::memcpy(token.secret, e->region->secret(), sizeof token.secret);
  token.bytes = bytes();
  token.kind = device_->kind();
  token.deviceIndex = device_->index();
  return token.encode();
}

std::shared_ptr<Tensor> Tensor::open(const DevicePtr& device, const std::string& text, const Shape& shape, uint32_t publication) {
  const ShareToken token = ShareToken::decode(text);
  const int64_t numel = checkedNumel(shape);
  if (uint64_t(numel) * dtypeSize(DType::Float32) != token.bytes)
    throwTypeError("the shared tensor descriptor's shape " + shapeToString(shape) + " does not match its memory (" +
                   std::to_string(token.bytes) + " bytes)");
  const char* kindName = token.kind == DeviceKind::Cuda ? "cuda" : "cpu";
  if (token.kind != device->kind() || token.deviceIndex != device->index())
    throwTypeError(std::string("the shared tensor lives on ") + kindName + (token.kind == DeviceKind::Cuda ? ":" + std::to_string(token.deviceIndex) : "") +
                   ": open it on that device (got " + device->name() + ")");
  auto import = std::make_shared<ShareImport>();
  BufferPtr buffer;
  if (token.pid == getpid()) {
    // Another thread of this process: the exporter's buffer itself, reference-counted.
    std::shared_ptr<ShareExport> e = findExport(token.id);
    if (e && std::memcmp(e->region->secret(), token.secret, sizeof token.secret) != 0) e.reset();
    if (e) buffer = e->buffer.lock();
    if (!buffer) throwError("cannot open the shared tensor: the descriptor is stale (its tensor is gone) or forged", ErrorCode::ShareGone);
    // The secret covers the memory, not the other fields: they must be the export's own.
    if (token.bytes != buffer->bytes() || token.kind != e->region->kind() || token.deviceIndex != e->region->deviceIndex())
      throwTypeError("cannot open the shared tensor: the descriptor does not match the memory it names (forged)");
    import->region = e->region;
    import->deviceState = e->region->local;
  } else {
    import->region = ShareRegion::open(token.pid, token.fd, token.secret, token.bytes, token.kind == DeviceKind::Cpu);
    if (import->region->kind() != token.kind || import->region->deviceIndex() != token.deviceIndex)
      throwTypeError("cannot open the shared tensor: the descriptor does not match the memory it names (stale or forged)");
  }
  if (!import->region->issued(publication))
    throwTypeError("cannot open the shared tensor: the descriptor's publication " + std::to_string(publication) +
                   " was never issued by its owner (forged)");
  const ShareStatus status = import->region->status();
  if (status != ShareStatus::Live) throwCannotOpen(status);
  if (!buffer) buffer = device->openShared(*import);
  device->waitForPublication(*import, publication);
  import->seen.store(publication);
  device->tensorCreated();
  auto tensor = std::shared_ptr<Tensor>(new Tensor(device, std::move(buffer), shape, numel, DType::Float32));
  tensor->import_ = std::move(import);
  return tensor;
}

}  // namespace bssn
