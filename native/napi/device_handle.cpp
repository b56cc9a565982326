#include "napi/device_handle.h"

#include <cmath>

#include "core/tensor.h"
#include "napi/addon.h"
#include "napi/convert.h"
#include "napi/errors.h"
#include "napi/external.h"
#include "napi/readback.h"
#include "napi/type_tag.h"

namespace bssn::napi {

Napi::Function DeviceHandle::define(Napi::Env env) {
  return DefineClass(env, "DeviceHandle",
                     {InstanceMethod<&DeviceHandle::Kind>("kind"), InstanceMethod<&DeviceHandle::Name>("name"),
                      InstanceMethod<&DeviceHandle::Index>("index"), InstanceMethod<&DeviceHandle::Info>("info"),
                      InstanceMethod<&DeviceHandle::MemoryStats>("memoryStats"),
                      InstanceMethod<&DeviceHandle::Synchronize>("synchronize"),
                      InstanceMethod<&DeviceHandle::EmptyCache>("emptyCache"),
                      InstanceMethod<&DeviceHandle::Timestamp>("timestamp"),
                      InstanceMethod<&DeviceHandle::FromData>("fromData"), InstanceMethod<&DeviceHandle::Zeros>("zeros"),
                      InstanceMethod<&DeviceHandle::Empty>("empty"),
                      InstanceMethod<&DeviceHandle::Randn>("randn"), InstanceMethod<&DeviceHandle::Rand>("rand"),
                      InstanceMethod<&DeviceHandle::Open>("open"), InstanceMethod<&DeviceHandle::ProfileKernels>("profileKernels"),
                      InstanceMethod<&DeviceHandle::KernelTimes>("kernelTimes"),
                      InstanceMethod<&DeviceHandle::BeginCapture>("beginCapture"),
                      InstanceMethod<&DeviceHandle::EndCapture>("endCapture"), InstanceMethod<&DeviceHandle::Replay>("replay"),
                      InstanceMethod<&DeviceHandle::ReleaseCapture>("releaseCapture"),
                      InstanceMethod<&DeviceHandle::Tf32>("tf32"),
                      InstanceMethod<&DeviceHandle::SetTf32>("setTf32")});
}

DeviceHandle::DeviceHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceHandle>(info) {
  guard(info.Env(), [&] {
    device_ = fromExternal<DevicePtr>(info, "DeviceHandle");
    tagObject(info.Env(), info.This().As<Napi::Object>(), kTypeTag);
  });
}

Napi::Value DeviceHandle::Kind(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    return Napi::String::New(info.Env(), device_->kind() == DeviceKind::Cuda ? "cuda" : "cpu");
  });
}

Napi::Value DeviceHandle::Name(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    return Napi::String::New(info.Env(), device_->name());
  });
}

Napi::Value DeviceHandle::Index(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    return Napi::Number::New(info.Env(), device_->index());
  });
}

Napi::Value DeviceHandle::Info(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    Napi::Object o = Napi::Object::New(info.Env());
    for (const auto& [key, value] : device_->info()) {
      if (const double* number = std::get_if<double>(&value))
        o.Set(key, *number);
      else
        o.Set(key, std::get<std::string>(value));
    }
    return o;
  });
}

Napi::Value DeviceHandle::MemoryStats(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    const bssn::MemoryStats s = device_->memoryStats();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("allocatedBytes", double(s.allocatedBytes));
    o.Set("reservedBytes", double(s.reservedBytes));
    o.Set("peakBytes", double(s.peakBytes));
    o.Set("liveBuffers", double(s.liveBuffers));
    o.Set("liveTensors", double(s.liveTensors));
    return o;
  });
}

Napi::Value DeviceHandle::EmptyCache(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    device_->emptyCache();
    return info.Env().Undefined();
  });
}

Napi::Value DeviceHandle::Synchronize(const Napi::CallbackInfo& info) {
  return guardPromise(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    return ReadbackWorker::start(info.Env(), device_->fence(), [](Napi::Env env) { return env.Undefined(); }, {info.This()});
  });
}

Napi::Value DeviceHandle::Timestamp(const Napi::CallbackInfo& info) {
  return guardPromise(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    auto ms = std::make_shared<double>(0);
    return ReadbackWorker::start(info.Env(), device_->timestamp(ms), [ms](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *ms); },
                                 {info.This()});
  });
}

Napi::Value DeviceHandle::FromData(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    if (device_->capturing())
      throw Error(ErrorKind::Error,
                  "a tensor made from host data inside a captured step would hold the same values at every replay: copy "
                  "new data into a tensor made before the capture instead",
                  ErrorCode::Capture);
    Napi::Float32Array data = toFloat32Array(info[0], "data");
    const Shape shape = toShape(info[1], "shape");
    const int64_t numel = checkedNumel(shape);
    if (int64_t(data.ElementLength()) != numel)
      throwRangeError("expected " + std::to_string(numel) + " values for shape " + shapeToString(shape) + ", got " +
                      std::to_string(data.ElementLength()));
    TensorPtr t = Tensor::create(device_, shape);
    if (numel > 0) device_->upload(t->buffer(), 0, data.Data(), t->bytes());
    return Addon::of(info.Env()).wrapTensor(info.Env(), std::move(t));
  });
}

Napi::Value DeviceHandle::Zeros(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    TensorPtr t = Tensor::create(device_, toShape(info[0], "shape"));
    // An optional fill value: a constant made on the device (one fill launch, no upload from the host).
    const float value = info.Length() > 1 && !info[1].IsUndefined() ? float(toNumber(info[1], "value")) : 0.0f;
    device_->fill(t->buffer(), size_t(t->numel()), value);
    return Addon::of(info.Env()).wrapTensor(info.Env(), std::move(t));
  });
}

// A tensor whose contents are undefined: for outputs an op overwrites entirely.
Napi::Value DeviceHandle::Empty(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    return Addon::of(info.Env()).wrapTensor(info.Env(), Tensor::create(device_, toShape(info[0], "shape")));
  });
}

Napi::Value DeviceHandle::Randn(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    const Shape shape = toShape(info[0], "shape");
    const uint64_t seed = toSeed(info[1], "seed");
    const double std = toNumber(info[2], "std");
    if (!std::isfinite(std)) throwRangeError("expected std to be finite");
    TensorPtr t = Tensor::create(device_, shape);
    device_->randn(t->buffer(), size_t(t->numel()), seed, float(std));
    return Addon::of(info.Env()).wrapTensor(info.Env(), std::move(t));
  });
}

// rand(shape, seed, low, high)
Napi::Value DeviceHandle::Rand(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    const Shape shape = toShape(info[0], "shape");
    const uint64_t seed = toSeed(info[1], "seed");
    const double low = toNumber(info[2], "low"), high = toNumber(info[3], "high");
    if (!std::isfinite(low) || !std::isfinite(high) || !(low <= high)) throwRangeError("expected finite low <= high");
    TensorPtr t = Tensor::create(device_, shape);
    device_->rand(t->buffer(), size_t(t->numel()), seed, float(low), float(high));
    return Addon::of(info.Env()).wrapTensor(info.Env(), std::move(t));
  });
}

// open(token, shape, publication): a tensor over another thread's or process's shared memory (core/share.h).
Napi::Value DeviceHandle::Open(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    if (!info[0].IsString()) throwTypeError("expected the descriptor's handle to be a string");
    const Shape shape = toShape(info[1], "shape");
    const auto publication = uint32_t(toInteger(info[2], "publication", 0, 4294967295LL));
    return Addon::of(info.Env()).wrapTensor(info.Env(), Tensor::open(device_, info[0].As<Napi::String>().Utf8Value(), shape, publication));
  });
}

// profileKernels(on): times each normalization kernel from now on (benchmarks).
Napi::Value DeviceHandle::ProfileKernels(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    if (!info[0].IsBoolean()) throwTypeError("expected a boolean");
    device_->setKernelTiming(info[0].As<Napi::Boolean>());
    return info.Env().Undefined();
  });
}

// tf32() -> { conv, matmul }: whether TF32 tensor-core math is allowed (see Device::Tf32).
Napi::Value DeviceHandle::Tf32(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    const Device::Tf32 t = device_->tf32();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("conv", t.conv);
    o.Set("matmul", t.matmul);
    return o;
  });
}

// setTf32(conv, matmul)
Napi::Value DeviceHandle::SetTf32(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    if (!info[0].IsBoolean() || !info[1].IsBoolean()) throwTypeError("expected two booleans");
    device_->setTf32({info[0].As<Napi::Boolean>().Value(), info[1].As<Napi::Boolean>().Value()});
    return info.Env().Undefined();
  });
}

// kernelTimes() -> Promise<{ kernel, ms }[]>: the kernels timed since the last call, in launch order.
Napi::Value DeviceHandle::KernelTimes(const Napi::CallbackInfo& info) {
  return guardPromise(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    auto times = std::make_shared<std::vector<Device::KernelTime>>();
    return ReadbackWorker::start(
        info.Env(), device_->takeKernelTimes(times),
        [times](Napi::Env env) -> Napi::Value {
          Napi::Array list = Napi::Array::New(env, times->size());
          for (size_t i = 0; i < times->size(); ++i) {
            Napi::Object o = Napi::Object::New(env);
            o.Set("kernel", (*times)[i].name);
            o.Set("ms", (*times)[i].ms);
            list.Set(uint32_t(i), o);
          }
          return list;
        },
        {info.This()});
  });
}

// beginCapture(): the device's work is recorded from here on, not run (CUDA only).
Napi::Value DeviceHandle::BeginCapture(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    device_->beginCapture();
    return info.Env().Undefined();
  });
}

// endCapture(): the id of the graph of what was recorded since beginCapture().
Napi::Value DeviceHandle::EndCapture(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    std::shared_ptr<CapturedWork> work = device_->endCapture();
    const uint32_t id = nextCapture_++;
    captured_.emplace(id, std::move(work));
    return Napi::Number::New(info.Env(), id);
  });
}

// replay(id): enqueues the captured work again.
Napi::Value DeviceHandle::Replay(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    const auto it = captured_.find(uint32_t(toInteger(info[0], "capture id", 0, UINT32_MAX)));
    if (it == captured_.end()) throw Error(ErrorKind::Error, "this captured step was released", ErrorCode::Disposed);
    it->second->replay();
    return info.Env().Undefined();
  });
}

// releaseCapture(id): frees the graph (its memory once no buffer from it is left). Releasing twice is allowed.
Napi::Value DeviceHandle::ReleaseCapture(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    checkThis<DeviceHandle>(info, "DeviceHandle");
    captured_.erase(uint32_t(toInteger(info[0], "capture id", 0, UINT32_MAX)));
    return info.Env().Undefined();
  });
}

}  // namespace bssn::napi
