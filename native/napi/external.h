// Passing native objects into wrapped-class constructors: a type-tagged External pointing at a value that
// lives for the duration of the synchronous New() call. JS cannot forge one, so `new TensorHandle()` from
// user code is refused.
#pragma once
#include <napi.h>

#include "core/error.h"
#include "napi/type_tag.h"

namespace bssn::napi {

constexpr napi_type_tag kExternalTag = {0x94e1d7c03b5a28f6ull, 0x0c6b3f8ed2a41795ull};

template <typename T>
Napi::External<T> makeExternal(Napi::Env env, T* value) {
  Napi::External<T> ext = Napi::External<T>::New(env, value);
  tagObject(env, ext, kExternalTag);
  return ext;
}

template <typename T>
T& fromExternal(const Napi::CallbackInfo& info, const char* className) {
  if (info.Length() != 1 || !info[0].IsExternal() || !hasTag(info.Env(), info[0], kExternalTag))
    throwTypeError(std::string(className) + " cannot be constructed directly");
  return *info[0].As<Napi::External<T>>().Data();
}

}  // namespace bssn::napi
