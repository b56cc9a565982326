// JS handle of a core::Normalizer (the native half of the BSSN class): one native call per forward.
#pragma once
#include <napi.h>

#include <memory>

#include "core/normalizer.h"

namespace bssn::napi {

class NormalizerHandle : public Napi::ObjectWrap<NormalizerHandle> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x5c0b8e2f7a1d9364ull, 0xe3a7f19c42b6d085ull};
  static Napi::Function define(Napi::Env env);

  explicit NormalizerHandle(const Napi::CallbackInfo& info);

 private:
  Normalizer& normalizer() const;
  Napi::Value Size(const Napi::CallbackInfo& info);
  Napi::Value Outputs(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Sigmas(const Napi::CallbackInfo& info);
  Napi::Value StateSizes(const Napi::CallbackInfo& info);
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value SetState(const Napi::CallbackInfo& info);
  Napi::Value AdoptState(const Napi::CallbackInfo& info);
  Napi::Value Backward(const Napi::CallbackInfo& info);
  Napi::Value GradOutputs(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  std::unique_ptr<Normalizer> normalizer_;
};

}  // namespace bssn::napi
