// Type tags for every wrapped class (napi_type_tag_object), so a handle of the wrong kind, or a method
// borrowed onto a foreign object, throws a TypeError instead of reinterpreting a pointer.
#pragma once
#include <napi.h>

#include "core/error.h"

namespace bssn::napi {

inline void tagObject(Napi::Env env, napi_value obj, const napi_type_tag& tag) {
  napi_status status = napi_type_tag_object(env, obj, &tag);
  if (status != napi_ok) throw Napi::Error::New(env, "napi_type_tag_object failed");
}

inline bool hasTag(Napi::Env env, Napi::Value value, const napi_type_tag& tag) {
  if (!value.IsObject() && !value.IsExternal()) return false;
  bool result = false;
  return napi_check_object_type_tag(env, value, &tag, &result) == napi_ok && result;
}

// Unwraps `value` as T (an ObjectWrap carrying T::kTypeTag), or throws TypeError naming what was expected.
template <typename T>
T* unwrapTagged(Napi::Value value, const char* expected) {
  if (!hasTag(value.Env(), value, T::kTypeTag)) throwTypeError(std::string("expected ") + expected);
  return T::Unwrap(value.As<Napi::Object>());
}

// First line of every instance method: `this` must be an instance of the method's own class.
template <typename T>
void checkThis(const Napi::CallbackInfo& info, const char* className) {
  if (!hasTag(info.Env(), info.This(), T::kTypeTag))
    throwTypeError(std::string(className) + " method called on an object that is not a " + className);
}

}  // namespace bssn::napi
