// JS handle of a device: creates tensors, reports memory, and synchronizes without blocking the event loop.
#pragma once
#include <napi.h>

#include <cstdint>
#include <map>
#include <memory>

#include "core/device.h"

namespace bssn::napi {

class DeviceHandle : public Napi::ObjectWrap<DeviceHandle> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x8f3a1c2e5b7d4e01ull, 0xa6c9d2b4e8f01357ull};
  static Napi::Function define(Napi::Env env);

  explicit DeviceHandle(const Napi::CallbackInfo& info);
  const DevicePtr& device() const { return device_; }

 private:
  Napi::Value Kind(const Napi::CallbackInfo& info);
  Napi::Value Name(const Napi::CallbackInfo& info);
  Napi::Value Index(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value MemoryStats(const Napi::CallbackInfo& info);
  Napi::Value EmptyCache(const Napi::CallbackInfo& info);
  Napi::Value Synchronize(const Napi::CallbackInfo& info);
  Napi::Value Timestamp(const Napi::CallbackInfo& info);
  Napi::Value FromData(const Napi::CallbackInfo& info);
  Napi::Value Zeros(const Napi::CallbackInfo& info);
  Napi::Value Empty(const Napi::CallbackInfo& info);
  Napi::Value Randn(const Napi::CallbackInfo& info);
  Napi::Value Rand(const Napi::CallbackInfo& info);
  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value ProfileKernels(const Napi::CallbackInfo& info);
  Napi::Value KernelTimes(const Napi::CallbackInfo& info);
  Napi::Value BeginCapture(const Napi::CallbackInfo& info);
  Napi::Value EndCapture(const Napi::CallbackInfo& info);
  Napi::Value Replay(const Napi::CallbackInfo& info);
  Napi::Value ReleaseCapture(const Napi::CallbackInfo& info);
  Napi::Value Tf32(const Napi::CallbackInfo& info);
  Napi::Value SetTf32(const Napi::CallbackInfo& info);

  DevicePtr device_;
  // Captured steps by id (JS holds the ids; releaseCapture, or this handle's end, frees them).
  std::map<uint32_t, std::shared_ptr<CapturedWork>> captured_;
  uint32_t nextCapture_ = 1;
};

}  // namespace bssn::napi
