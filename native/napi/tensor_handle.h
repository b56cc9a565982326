// JS handle of a tensor. Explicit dispose() frees at once; the finalizer frees what JS forgot. Device bytes
// are reported to V8 so the GC feels their pressure.
#pragma once
#include <napi.h>

#include <vector>

#include "core/tensor.h"

namespace bssn::napi {

class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x2d7e9b41c6a85f03ull, 0x71f4e0b3a9d2c658ull};
  static Napi::Function define(Napi::Env env);

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;
  const TensorPtr& tensor() const { return tensor_; }

 private:
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value ToArray(const Napi::CallbackInfo& info);
  Napi::Value Clone(const Napi::CallbackInfo& info);
  Napi::Value CopyFrom(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value Reshape(const Napi::CallbackInfo& info);
  Napi::Value Share(const Napi::CallbackInfo& info);
  Napi::Value Opened(const Napi::CallbackInfo& info);

  void reportReleased(Napi::Env env);

  TensorPtr tensor_;
  int64_t reportedBytes_ = 0;
};

// The tensors of a JS array of tensor handles; `what` names the array in errors.
std::vector<TensorPtr> toTensors(Napi::Value value, const char* what);

}  // namespace bssn::napi
