// Turns native failures into JS exceptions: bssn::Error keeps its kind (Error, TypeError, RangeError) and code,
// std::bad_alloc becomes ERR_BSSN_OUT_OF_MEMORY, anything else an Error with its message (ERR_BSSN_FAILED).
// Nothing escapes as a C++ exception into Node, and a promise rejects with the error a synchronous call would throw.
#pragma once
#include <napi.h>

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
  } catch (...) {
    throw toJsError(env, currentError());
  }
}

// For calls that return a promise: runs `body` (which returns the promise), and turns a failure before the promise
// exists (a disposed tensor, a share that is gone, a device already faulted, an allocation) into a rejected promise
// with the same error, never a synchronous throw.
template <typename Body>
Napi::Value guardPromise(Napi::Env env, Body&& body) {
  Napi::Value error;
  try {
    return body();
  } catch (const Napi::Error& e) {
    error = e.Value();
  } catch (...) {
    error = toJsError(env, currentError()).Value();
  }
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(error);
  return deferred.Promise();
}

}  // namespace bssn::napi
