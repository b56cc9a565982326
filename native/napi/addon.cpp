#include "napi/addon.h"

#include "cpu/blas.h"
#include "cpu/cpu_device.h"
#include "napi/convert.h"
#include "napi/device_handle.h"
#include "napi/emulator.h"
#include "napi/errors.h"
#include "napi/external.h"
#include "napi/normalizer_handle.h"
#include "napi/ops.h"
#include "napi/tensor_handle.h"
#ifndef BSSN_WITH_CUDA
#define BSSN_WITH_CUDA 0
#endif
#if BSSN_WITH_CUDA
#include "cuda/cuda_device.h"
#endif

namespace bssn::napi {

Addon::Addon(Napi::Env env, Napi::Object exports) {
  tensorConstructor = Napi::Persistent(TensorHandle::define(env));
  deviceConstructor = Napi::Persistent(DeviceHandle::define(env));
  Napi::Function normalizer = NormalizerHandle::define(env);
  normalizerConstructor = Napi::Persistent(normalizer);
  DefineAddon(exports, {InstanceMethod<&Addon::Cpu>("cpu"), InstanceMethod<&Addon::Cuda>("cuda"),
                        InstanceMethod<&Addon::CudaStatus>("cudaStatus"), InstanceMethod<&Addon::Libraries>("libraries")});
  exports.Set("NormalizerHandle", normalizer);
  exports.Set("ops", defineOps(env));
  exports.Set("builtWithCuda", Napi::Boolean::New(env, BSSN_WITH_CUDA != 0));
  // setCpuBlas(false) makes the CPU backend use its reference loops (process-wide): tests compare the two paths.
  exports.Set("setCpuBlas", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                if (!info[0].IsBoolean()) throw Napi::TypeError::New(info.Env(), "expected a boolean");
                cpu::setBlasEnabled(info[0].As<Napi::Boolean>());
                return Napi::Boolean::New(info.Env(), cpu::blasEnabled());
              }));
#if defined(BSSN_CUDA_EMULATED)
  exports.Set("emulator", defineEmulator(env));
#endif
}

Addon::~Addon() {
  // Environment teardown: let queued work finish and stop the streams. Buffers that outlive this keep
  // their device object alive and free through it.
  if (cpu_) cpu_->shutdown();
  for (auto& entry : cuda_) entry.second->shutdown();
}

Napi::Object Addon::wrapTensor(Napi::Env env, TensorPtr tensor) {
  return tensorConstructor.New({makeExternal(env, &tensor)});
}

Napi::Object Addon::wrapDevice(Napi::Env env, DevicePtr device) {
  return deviceConstructor.New({makeExternal(env, &device)});
}

Napi::Value Addon::Cpu(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    if (!cpu_) cpu_ = CpuDevice::create();
    return wrapDevice(info.Env(), cpu_);
  });
}

Napi::Value Addon::Cuda(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const int index = int(toInteger(info[0], "CUDA device index", 0, 1023));
#if BSSN_WITH_CUDA
    auto found = cuda_.find(index);
    if (found == cuda_.end()) found = cuda_.emplace(index, cuda::openDevice(index)).first;  // throws with the call and cause
    return wrapDevice(info.Env(), found->second);
#else
    (void)index;
    throwError("bssn was built without the CUDA backend (nvcc was not found at install time, or BSSN_CUDA=OFF); "
               "reinstall with nvcc on PATH, or with BSSN_CUDA=ON to make a missing nvcc an error");
#endif
  });
}

// { available, reason, deviceCount }: why Device.auto() would fall back to the CPU.
Napi::Value Addon::CudaStatus(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = Napi::Object::New(info.Env());
#if BSSN_WITH_CUDA
    const cuda::Availability a = cuda::availability();
    o.Set("available", a.deviceCount > 0);
    o.Set("deviceCount", a.deviceCount);
    o.Set("reason", a.reason);
#else
    o.Set("available", false);
    o.Set("deviceCount", 0);
    o.Set("reason", "bssn was built without the CUDA backend (nvcc was not found at install time, or BSSN_CUDA=OFF)");
#endif
    return o;
  });
}

// { cublas: { loaded, version?, error? }, cudnn: { ... } }: whether the optional CUDA libraries load.
Napi::Value Addon::Libraries(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
#if BSSN_WITH_CUDA
    const std::pair<const char*, cuda::LibraryStatus> libs[] = {{"cublas", cuda::cublasStatus()}, {"cudnn", cuda::cudnnStatus()}};
    for (const auto& [name, status] : libs) {
      Napi::Object s = Napi::Object::New(env);
      s.Set("loaded", status.loaded);
      if (status.loaded) s.Set("version", status.version); else s.Set("error", status.error);
      o.Set(name, s);
    }
#else
    for (const char* name : {"cublas", "cudnn"}) {
      Napi::Object s = Napi::Object::New(env);
      s.Set("loaded", false);
      s.Set("error", "bssn was built without the CUDA backend");
      o.Set(name, s);
    }
#endif
    return o;
  });
}

}  // namespace bssn::napi

using bssn::napi::Addon;
NODE_API_ADDON(Addon)
