// Argument conversion with TypeError/RangeError messages that say what was expected and what came.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/shape.h"

namespace bssn::napi {

std::string describe(Napi::Value value);
Shape toShape(Napi::Value value, const char* what);
Napi::Array fromShape(Napi::Env env, const Shape& shape);
double toNumber(Napi::Value value, const char* what);
int64_t toInteger(Napi::Value value, const char* what, int64_t min, int64_t max);
uint64_t toSeed(Napi::Value value, const char* what);
Napi::Float32Array toFloat32Array(Napi::Value value, const char* what);
Napi::Float32Array copyToJs(Napi::Env env, const std::vector<float>& host);

}  // namespace bssn::napi
