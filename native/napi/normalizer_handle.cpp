#include "napi/normalizer_handle.h"

#include <string>

#include "napi/addon.h"
#include "napi/convert.h"
#include "napi/errors.h"
#include "napi/readback.h"
#include "napi/tensor_handle.h"
#include "napi/type_tag.h"

namespace bssn::napi {

namespace {

Mode parseMode(Napi::Value value) {
  if (!value.IsString()) throwTypeError("expected mode to be 'sn', 'ssn', 'bsn' or 'bssn', got " + describe(value));
  const std::string m = value.As<Napi::String>().Utf8Value();
  if (m == "sn") return Mode::SN;
  if (m == "ssn") return Mode::SSN;
  if (m == "bsn") return Mode::BSN;
  if (m == "bssn") return Mode::BSSN;
  throwRangeError("expected mode to be 'sn', 'ssn', 'bsn' or 'bssn', got '" + m + "'");
}

}  // namespace

// Like a plain JS method: tests count native calls per forward and backward by spying on them.
constexpr auto kReplaceable = static_cast<napi_property_attributes>(napi_writable | napi_configurable);

Napi::Function NormalizerHandle::define(Napi::Env env) {
  return DefineClass(
      env, "NormalizerHandle",
      {InstanceMethod<&NormalizerHandle::Size>("size"), InstanceMethod<&NormalizerHandle::Outputs>("outputs"),
       InstanceMethod<&NormalizerHandle::Forward>("forward", kReplaceable), InstanceMethod<&NormalizerHandle::Sigmas>("sigmas"),
       InstanceMethod<&NormalizerHandle::StateSizes>("stateSizes"), InstanceMethod<&NormalizerHandle::GetState>("getState"),
       InstanceMethod<&NormalizerHandle::SetState>("setState"), InstanceMethod<&NormalizerHandle::AdoptState>("adoptState"),
       InstanceMethod<&NormalizerHandle::Backward>("backward", kReplaceable), InstanceMethod<&NormalizerHandle::GradOutputs>("gradOutputs"),
       InstanceMethod<&NormalizerHandle::Dispose>("dispose")});
}

// new NormalizerHandle(weights, { mode, scale, eps, warmupIterations, seed, dims })
NormalizerHandle::NormalizerHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NormalizerHandle>(info) {
  guard(info.Env(), [&] {
    tagObject(info.Env(), info.This().As<Napi::Object>(), kTypeTag);
    std::vector<TensorPtr> weights = toTensors(info[0], "weights");
    if (!info[1].IsObject()) throwTypeError("expected an options object, got " + describe(info[1]));
    Napi::Object o = info[1].As<Napi::Object>();
    NormalizerOptions options;
    options.params.mode = parseMode(o.Get("mode"));
    options.params.scale = float(toNumber(o.Get("scale"), "scale"));
    options.params.eps = float(toNumber(o.Get("eps"), "eps"));
    options.warmupIterations = int(toInteger(o.Get("warmupIterations"), "warmupIterations", 0, 1000000));
    options.seed = toSeed(o.Get("seed"), "seed");
    Napi::Value dims = o.Get("dims");
    if (!dims.IsArray()) throwTypeError("expected dims to be an array of integers, got " + describe(dims));
    for (uint32_t i = 0; i < dims.As<Napi::Array>().Length(); ++i)
      options.dims.push_back(int(toInteger(dims.As<Napi::Array>().Get(i), "dims[i]", -8, 7)));
    normalizer_ = std::make_unique<Normalizer>(std::move(weights), options);
  });
}

Normalizer& NormalizerHandle::normalizer() const {
  if (!normalizer_ || normalizer_->disposed()) throwError("BSSN was disposed", ErrorCode::Disposed);
  return *normalizer_;
}

Napi::Value NormalizerHandle::Size(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<NormalizerHandle>(info, "NormalizerHandle");
    return Napi::Number::New(info.Env(), double(normalizer().size()));
  });
}

Napi::Value NormalizerHandle::Outputs(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<NormalizerHandle>(info, "NormalizerHandle");
    const auto& outs = normalizer().outputs();
    Napi::Array arr = Napi::Array::New(info.Env(), outs.size());
    for (size_t i = 0; i < outs.size(); ++i) arr.Set(uint32_t(i), Addon::of(info.Env()).wrapTensor(info.Env(), outs[i]));
    return arr;
  });
}

// forward(iterations, outputs | null, writeOutputs, { scale, eps }?): the last replaces scale and eps for this call.
Napi::Value NormalizerHandle::Forward(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<NormalizerHandle>(info, "NormalizerHandle");
    const int iterations = int(toInteger(info[0], "iterations", 0, 1000000));
    const bool write = info[2].ToBoolean();
    CallParams call;
    const bool hasCall = info.Length() > 3 && !info[3].IsUndefined();
    if (hasCall) {
      if (!info[3].IsObject()) throwTypeError("expected call options { scale, eps }, got " + describe(info[3]));
      Napi::Object o = info[3].As<Napi::Object>();
      call.scale = float(toNumber(o.Get("scale"), "scale"));
      call.eps = float(toNumber(o.Get("eps"), "eps"));
    }
    if (info[1].IsNull() || info[1].IsUndefined()) {
      normalizer().forward(iterations, nullptr, write, hasCall ? &call : nullptr);
    } else {
      std::vector<TensorPtr> outs = toTensors(info[1], "outputs");
      normalizer().forward(iterations, &outs, write, hasCall ? &call : nullptr);
    }
    return info.Env().Undefined();
  });
}

Napi::Value NormalizerHandle::Sigmas(const Napi::CallbackInfo& info) {
  return guardPromise(info.Env(), [&]() -> Napi::Value {
    checkThis<NormalizerHandle>(info, "NormalizerHandle");
    auto host = std::make_shared<std::vector<float>>();
    auto fence = normalizer().readSigmas(host);
    return ReadbackWorker::floats(info.Env(), std::move(fence), host, info.This());
  });
}

Napi::Value NormalizerHandle::StateSizes(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<NormalizerHandle>(info, "NormalizerHandle");
    const LayerStateSizes s = normalizer().stateSizes(size_t(toInteger(info[0], "layer index", 0, 1 << 30)));
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("u1", double(s.u1));
    o.Set("v1", double(s.v1));
    o.Set("u2", double(s.u2));
    o.Set("v2", double(s.v2));
    return o;
  });
}

Napi::Value NormalizerHandle::GetState(const Napi::CallbackInfo& info) {
  return guardPromise(info.Env(), [&]() -> Napi::Value {
    checkThis<NormalizerHandle>(info, "NormalizerHandle");
    auto host = std::make_shared<std::vector<float>>();
    auto fence = normalizer().readState(size_t(toInteger(info[0], "layer index", 0, 1 << 30)), host);
    return ReadbackWorker::floats(info.Env(), std::move(fence), host, info.This());
  });
}

// setState(layer, which: 0 u, 1 v, 2 u2, 3 v2, values: Float32Array)
Napi::Value NormalizerHandle::SetState(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<NormalizerHandle>(info, "NormalizerHandle");
    const size_t layer = size_t(toInteger(info[0], "layer index", 0, 1 << 30));
    const int which = int(toInteger(info[1], "state vector index", 0, 3));
    Napi::Float32Array values = toFloat32Array(info[2], "state vector");
    normalizer().writeStateVector(layer, which, values.Data(), values.ElementLength());
    return info.Env().Undefined();
  });
}

// adoptState(layer, other: NormalizerHandle, otherLayer)
Napi::Value NormalizerHandle::AdoptState(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<NormalizerHandle>(info, "NormalizerHandle");
    const size_t layer = size_t(toInteger(info[0], "layer index", 0, 1 << 30));
    NormalizerHandle* other = unwrapTagged<NormalizerHandle>(info[1], "a NormalizerHandle");
    normalizer().adoptState(layer, other->normalizer(), size_t(toInteger(info[2], "other layer index", 0, 1 << 30)));
    return info.Env().Undefined();
  });
}

// backward(grads, outputs | null)
Napi::Value NormalizerHandle::Backward(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<NormalizerHandle>(info, "NormalizerHandle");
    std::vector<TensorPtr> grads = toTensors(info[0], "gradients");
    if (info[1].IsNull() || info[1].IsUndefined()) {
      normalizer().backward(grads, nullptr);
    } else {
      std::vector<TensorPtr> outs = toTensors(info[1], "outputs");
      normalizer().backward(grads, &outs);
    }
    return info.Env().Undefined();
  });
}

Napi::Value NormalizerHandle::GradOutputs(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<NormalizerHandle>(info, "NormalizerHandle");
    const auto& grads = normalizer().gradOutputs();
    Napi::Array arr = Napi::Array::New(info.Env(), grads.size());
    for (size_t i = 0; i < grads.size(); ++i) arr.Set(uint32_t(i), Addon::of(info.Env()).wrapTensor(info.Env(), grads[i]));
    return arr;
  });
}

Napi::Value NormalizerHandle::Dispose(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<NormalizerHandle>(info, "NormalizerHandle");
    if (normalizer_) normalizer_->dispose();
    return info.Env().Undefined();
  });
}

}  // namespace bssn::napi
