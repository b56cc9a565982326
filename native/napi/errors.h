// Turns native failures into JS exceptions: bssn::Error keeps its kind (Error, TypeError, RangeError),
// anything else becomes an Error with its message. Nothing escapes as a C++ exception into Node.
#pragma once
#include <napi.h>

#include <new>

#include "core/error.h"

namespace bssn::napi {

inline Napi::Error toJsError(Napi::Env env, const bssn::Error& e) {
  Napi::Error error = e.kind() == ErrorKind::TypeError    ? Napi::TypeError::New(env, e.what())
                      : e.kind() == ErrorKind::RangeError ? Napi::RangeError::New(env, e.what())
                                                          : Napi::Error::New(env, e.what());
  error.Set("code", Napi::String::New(env, codeName(e.kind(), e.code())));
  return error;
}

// Runs `body`, rethrowing native exceptions as JS exceptions.
template <typename Body>
auto guard(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const bssn::Error& e) {
    throw toJsError(env, e);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "out of host memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

}  // namespace bssn::napi
