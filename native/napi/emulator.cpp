#include "napi/emulator.h"

#if defined(BSSN_CUDA_EMULATED)
#include <bssn_emulator.h>

#include <algorithm>
#include <vector>

#include "cuda/common.cuh"
#include "emulator/probes.h"
#include "napi/convert.h"
#include "napi/errors.h"

namespace bssn::napi {

namespace {

Napi::Array toArray(Napi::Env env, const std::vector<double>& values) {
  Napi::Array a = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) a.Set(uint32_t(i), values[i]);
  return a;
}

template <typename Body>
Napi::Function fn(Napi::Env env, const char* name, Body body) {
  return Napi::Function::New(env, [body](const Napi::CallbackInfo& info) -> Napi::Value { return guard(info.Env(), [&] { return body(info); }); },
                             name);
}

}  // namespace

Napi::Object defineEmulator(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  // failAllocation(n) / failLaunch(n): the n-th device allocation / kernel launch from now fails (0: off).
  o.Set("failAllocation", fn(env, "failAllocation", [](const Napi::CallbackInfo& info) -> Napi::Value {
          bssnEmuFailAllocation(toInteger(info[0], "allocation count", 0, 1000000000));
          return info.Env().Undefined();
        }));
  o.Set("failLaunch", fn(env, "failLaunch", [](const Napi::CallbackInfo& info) -> Napi::Value {
          bssnEmuFailLaunch(toInteger(info[0], "launch count", 0, 1000000000));
          return info.Env().Undefined();
        }));
  // setMaxGridBlocks(n): caps grid-stride launches at n blocks (so their loops wrap); returns the old cap.
  o.Set("setMaxGridBlocks", fn(env, "setMaxGridBlocks", [](const Napi::CallbackInfo& info) -> Napi::Value {
          const unsigned old = cuda::maxGridBlocks();
          cuda::maxGridBlocks() = unsigned(toInteger(info[0], "block count", 1, 65535 * 16));
          return Napi::Number::New(info.Env(), old);
        }));
  o.Set("stats", fn(env, "stats", [](const Napi::CallbackInfo& info) -> Napi::Value {
          BssnEmuStats s{};
          bssnEmuStats(&s);
          Napi::Object r = Napi::Object::New(info.Env());
          r.Set("launches", double(s.launches));
          r.Set("blocks", double(s.blocks));
          r.Set("threads", double(s.threads));
          r.Set("deviceBytes", double(s.deviceBytes));
          r.Set("deviceAllocations", double(s.deviceAllocations));
          r.Set("hostPinnedAllocations", double(s.hostPinnedAllocations));
          r.Set("stickyFault", bssnEmuStickyMessage());
          std::vector<const char*> names(256);
          std::vector<int64_t> counts(256);
          const size_t n = std::min(bssnEmuKernelLaunches(names.data(), counts.data(), names.size()), names.size());
          Napi::Object perKernel = Napi::Object::New(info.Env());
          for (size_t i = 0; i < n; ++i) perKernel.Set(names[i], double(counts[i]));
          r.Set("kernelLaunches", perKernel);
          return r;
        }));
  Napi::Object probes = Napi::Object::New(env);
  probes.Set("blockSums", fn(env, "blockSums", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toArray(info.Env(), emu::probes::blockSums());
             }));
  probes.Set("broadcastWithoutBarrier", fn(env, "broadcastWithoutBarrier", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return Napi::Number::New(info.Env(), emu::probes::broadcastWithoutBarrier());
             }));
  probes.Set("exitedLanes", fn(env, "exitedLanes", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toArray(info.Env(), emu::probes::exitedLanes());
             }));
  probes.Set("warpOps", fn(env, "warpOps", [](const Napi::CallbackInfo& info) -> Napi::Value {
               const auto rows = emu::probes::warpOps();
               Napi::Array a = Napi::Array::New(info.Env(), rows.size());
               for (size_t i = 0; i < rows.size(); ++i) a.Set(uint32_t(i), toArray(info.Env(), rows[i]));
               return a;
             }));
  probes.Set("atomicsAndDynamicShared", fn(env, "atomicsAndDynamicShared", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toArray(info.Env(), emu::probes::atomicsAndDynamicShared());
             }));
  probes.Set("launchLimits", fn(env, "launchLimits", [](const Napi::CallbackInfo& info) -> Napi::Value {
               Napi::Object r = Napi::Object::New(info.Env());
               for (const auto& [what, error] : emu::probes::launchLimits()) r.Set(what, error);
               return r;
             }));
  probes.Set("staleRead", fn(env, "staleRead", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toArray(info.Env(), emu::probes::staleRead());
             }));
  probes.Set("fatal", fn(env, "fatal", [](const Napi::CallbackInfo& info) -> Napi::Value {
               if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "expected the probe's name");
               return Napi::String::New(info.Env(), emu::probes::fatal(info[0].As<Napi::String>()));
             }));
  o.Set("probes", probes);
  return o;
}

}  // namespace bssn::napi
#endif
