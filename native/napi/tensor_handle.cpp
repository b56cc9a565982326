#include "napi/tensor_handle.h"

#include "napi/addon.h"
#include "napi/convert.h"
#include "napi/errors.h"
#include "napi/external.h"
#include "napi/readback.h"
#include "napi/type_tag.h"

namespace bssn::napi {

Napi::Function TensorHandle::define(Napi::Env env) {
  return DefineClass(env, "TensorHandle",
                     {InstanceMethod<&TensorHandle::Shape>("shape"), InstanceMethod<&TensorHandle::Disposed>("disposed"),
                      InstanceMethod<&TensorHandle::Dispose>("dispose"), InstanceMethod<&TensorHandle::ToArray>("toArray"),
                      InstanceMethod<&TensorHandle::Clone>("clone"), InstanceMethod<&TensorHandle::CopyFrom>("copyFrom"),
                      InstanceMethod<&TensorHandle::Reshape>("reshape"), InstanceMethod<&TensorHandle::Share>("share"),
                      InstanceMethod<&TensorHandle::Opened>("opened"), InstanceMethod<&TensorHandle::Write>("write")});
}

TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {
  guard(info.Env(), [&] {
    tensor_ = fromExternal<TensorPtr>(info, "TensorHandle");
    tagObject(info.Env(), info.This().As<Napi::Object>(), kTypeTag);
    // Owned tensors (a BSSN's outputs) live as long as their owner, not this handle: not reported here.
    if (tensor_->owner().empty()) {
      reportedBytes_ = int64_t(tensor_->bytes());
      Napi::MemoryManagement::AdjustExternalMemory(info.Env(), reportedBytes_);
    }
  });
}

TensorHandle::~TensorHandle() {
  // Finalizer fallback for tensors JS forgot to dispose. Owned tensors belong to their owner.
  if (tensor_ && tensor_->owner().empty()) tensor_->release();
  // The raw call: during environment teardown it may fail, and a destructor must not throw.
  int64_t ignored;
  if (reportedBytes_) napi_adjust_external_memory(Env(), -reportedBytes_, &ignored);
}

void TensorHandle::reportReleased(Napi::Env env) {
  if (!reportedBytes_) return;
  Napi::MemoryManagement::AdjustExternalMemory(env, -reportedBytes_);
  reportedBytes_ = 0;
}

Napi::Value TensorHandle::Shape(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<TensorHandle>(info, "TensorHandle");
    return fromShape(info.Env(), tensor_->shape());
  });
}

Napi::Value TensorHandle::Disposed(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<TensorHandle>(info, "TensorHandle");
    return Napi::Boolean::New(info.Env(), tensor_->disposed());
  });
}

Napi::Value TensorHandle::Dispose(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<TensorHandle>(info, "TensorHandle");
    // A tensor owned by a BSSN is freed with it: disposing it is a no-op (false), never an error, so `using` and
    // cleanup code that dispose everything they were handed do not throw.
    if (!tensor_->owner().empty() && !tensor_->disposed()) return Napi::Boolean::New(info.Env(), false);
    tensor_->release();
    reportReleased(info.Env());
    return Napi::Boolean::New(info.Env(), true);
  });
}

Napi::Value TensorHandle::ToArray(const Napi::CallbackInfo& info) {
  return guardPromise(info.Env(), [&]() -> Napi::Value {
    checkThis<TensorHandle>(info, "TensorHandle");
    const BufferPtr& buffer = tensor_->buffer();
    auto host = std::make_shared<std::vector<float>>(size_t(tensor_->numel()));
    auto fence = host->empty() ? tensor_->device()->fence()
                               : tensor_->device()->download(buffer, 0, std::shared_ptr<void>(host, host->data()), host->size() * sizeof(float));
    return ReadbackWorker::floats(info.Env(), std::move(fence), host, info.This());
  });
}

Napi::Value TensorHandle::Clone(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<TensorHandle>(info, "TensorHandle");
    const BufferPtr& source = tensor_->buffer();
    TensorPtr copy = Tensor::create(tensor_->device(), tensor_->shape(), tensor_->dtype());
    tensor_->device()->copy(copy->buffer(), 0, source, 0, tensor_->bytes());
    return Addon::of(info.Env()).wrapTensor(info.Env(), std::move(copy));
  });
}

// copyFrom(source): this tensor's memory takes the source's values, in stream order (same device and shape).
Napi::Value TensorHandle::CopyFrom(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<TensorHandle>(info, "TensorHandle");
    const TensorPtr& source = unwrapTagged<TensorHandle>(info[0], "a bssn tensor handle")->tensor();
    if (source->device() != tensor_->device()) throwTypeError("copyFrom: the source is on another device");
    if (source->shape() != tensor_->shape())
      throwRangeError("copyFrom: expected a source of shape " + shapeToString(tensor_->shape()) + ", got " + shapeToString(source->shape()));
    tensor_->device()->copy(tensor_->buffer(), 0, source->buffer("source tensor"), 0, tensor_->bytes());
    return info.This();
  });
}

// write(data): overwrites the tensor with host data (one host-to-device copy, in stream order; no allocation).
Napi::Value TensorHandle::Write(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<TensorHandle>(info, "TensorHandle");
    Napi::Float32Array data = toFloat32Array(info[0], "data");
    if (int64_t(data.ElementLength()) != tensor_->numel())
      throwRangeError("write: expected " + std::to_string(tensor_->numel()) + " values, got " + std::to_string(data.ElementLength()));
    const DevicePtr& device = tensor_->device();
    if (device->capturing())
      throw Error(ErrorKind::Error, "write: host data written inside a captured step would be the same at every replay: write before it",
                  ErrorCode::Capture);
    device->upload(tensor_->buffer(), 0, data.Data(), tensor_->bytes());
    return info.This();
  });
}

Napi::Value TensorHandle::Reshape(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<TensorHandle>(info, "TensorHandle");
    return Addon::of(info.Env()).wrapTensor(info.Env(), tensor_->view(toShape(info[0], "shape")));
  });
}

// share() -> { token, publication }: see core/share.h.
Napi::Value TensorHandle::Share(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<TensorHandle>(info, "TensorHandle");
    uint32_t publication = 0;
    const std::string token = tensor_->share(&publication);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("token", token);
    o.Set("publication", double(publication));
    return o;
  });
}

Napi::Value TensorHandle::Opened(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<TensorHandle>(info, "TensorHandle");
    return Napi::Boolean::New(info.Env(), tensor_->opened());
  });
}

std::vector<TensorPtr> toTensors(Napi::Value value, const char* what) {
  if (!value.IsArray()) throwTypeError(std::string("expected ") + what + " to be an array of tensors, got " + describe(value));
  Napi::Array arr = value.As<Napi::Array>();
  std::vector<TensorPtr> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const std::string name = std::string(what) + "[" + std::to_string(i) + "]";
    out.push_back(unwrapTagged<TensorHandle>(arr.Get(i), (name + " to be a bssn tensor handle").c_str())->tensor());
  }
  return out;
}

}  // namespace bssn::napi
