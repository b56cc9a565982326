// Per-environment state (each worker_thread gets its own): the wrapped classes' constructors and the devices
// opened in this environment. Its destructor, run at environment teardown, stops the devices' streams.
#pragma once
#include <napi.h>

#include <map>
#include <memory>

#include "core/device.h"
#include "core/tensor.h"

namespace bssn::napi {

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports);
  ~Addon();

  static Addon& of(Napi::Env env) { return *env.GetInstanceData<Addon>(); }

  Napi::Object wrapTensor(Napi::Env env, TensorPtr tensor);
  Napi::Object wrapDevice(Napi::Env env, DevicePtr device);

  Napi::FunctionReference tensorConstructor;
  Napi::FunctionReference deviceConstructor;
  Napi::FunctionReference normalizerConstructor;

 private:
  Napi::Value Cpu(const Napi::CallbackInfo& info);
  Napi::Value Cuda(const Napi::CallbackInfo& info);
  Napi::Value CudaStatus(const Napi::CallbackInfo& info);
  Napi::Value Libraries(const Napi::CallbackInfo& info);
  Napi::Value BuildInfo(const Napi::CallbackInfo& info);
  Napi::Value CudaHost(const Napi::CallbackInfo& info);

  DevicePtr cpu_;
  std::map<int, DevicePtr> cuda_;
};

}  // namespace bssn::napi
