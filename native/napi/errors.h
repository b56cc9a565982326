// Turns native failures into JS exceptions: bssn::Error keeps its kind (Error, TypeError, RangeError),
// anything else becomes an Error with its message. Nothing escapes as a C++ exception into Node.
#pragma once
#include <napi.h>

#include <new>

#include "core/error.h"

namespace bssn::napi {

inline Napi::Error toJsError(Napi::Env env, const bssn::Error& e) {
  switch (e.kind()) {
    case ErrorKind::TypeError: return Napi::TypeError::New(env, e.what());
    case ErrorKind::RangeError: return Napi::RangeError::New(env, e.what());
    default: return Napi::Error::New(env, e.what());
  }
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
