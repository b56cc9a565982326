// binding.ops: the training-stack ops over tensor handles. Each function checks devices, liveness and sizes
// (TypeError/RangeError), then enqueues the op; outputs are tensors the caller allocated.
#pragma once
#include <napi.h>

namespace bssn::napi {

Napi::Object defineOps(Napi::Env env);

}  // namespace bssn::napi
