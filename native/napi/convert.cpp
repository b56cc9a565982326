#include "napi/convert.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace bssn::napi {

std::string describe(Napi::Value value) {
  switch (value.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "the number " + value.ToString().Utf8Value();
    case napi_string: return "a string";
    case napi_bigint: return "a bigint";
    case napi_function: return "a function";
    default:
      if (value.IsArray()) return "an array";
      if (value.IsTypedArray()) return "a typed array";
      return "an object";
  }
}

Shape toShape(Napi::Value value, const char* what) {
  if (!value.IsArray()) throwTypeError(std::string("expected ") + what + " to be an array of integers, got " + describe(value));
  Napi::Array arr = value.As<Napi::Array>();
  Shape shape;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value d = arr.Get(i);
    if (!d.IsNumber()) throwTypeError(std::string("expected ") + what + " to hold integers, got " + describe(d) + " at index " + std::to_string(i));
    const double x = d.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(x) || x != std::floor(x) || x < 0 || x > double(kMaxElements))
      throwRangeError(std::string("expected ") + what + " to hold non-negative integers, got " + d.ToString().Utf8Value() + " at index " + std::to_string(i));
    shape.push_back(int64_t(x));
  }
  return shape;
}

Napi::Array fromShape(Napi::Env env, const Shape& shape) {
  Napi::Array arr = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i) arr.Set(uint32_t(i), Napi::Number::New(env, double(shape[i])));
  return arr;
}

double toNumber(Napi::Value value, const char* what) {
  if (!value.IsNumber()) throwTypeError(std::string("expected ") + what + " to be a number, got " + describe(value));
  return value.As<Napi::Number>().DoubleValue();
}

int64_t toInteger(Napi::Value value, const char* what, int64_t min, int64_t max) {
  const double x = toNumber(value, what);
  if (!std::isfinite(x) || x != std::floor(x) || x < double(min) || x > double(max))
    throwRangeError(std::string("expected ") + what + " to be an integer in " + std::to_string(min) + ".." + std::to_string(max) +
                    ", got " + value.ToString().Utf8Value());
  return int64_t(x);
}

uint64_t toSeed(Napi::Value value, const char* what) {
  return uint64_t(toInteger(value, what, 0, (int64_t(1) << 53) - 1));
}

Napi::Float32Array toFloat32Array(Napi::Value value, const char* what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throwTypeError(std::string("expected ") + what + " to be a Float32Array, got " + describe(value));
  return value.As<Napi::Float32Array>();
}

Napi::Float32Array copyToJs(Napi::Env env, const std::vector<float>& host) {
  Napi::Float32Array out;
  try {
    out = Napi::Float32Array::New(env, host.size());
  } catch (const Napi::Error&) {  // V8 could not allocate the ArrayBuffer (a RangeError without a code)
    throwError("cannot allocate a Float32Array of " + std::to_string(host.size()) + " values: out of memory", ErrorCode::OutOfMemory);
  }
  if (!host.empty()) std::memcpy(out.Data(), host.data(), host.size() * sizeof(float));
  return out;
}

}  // namespace bssn::napi
