#include "napi/emulator.h"

#if defined(BSSN_CUDA_EMULATED)
#include <bssn_emulator.h>

#include <algorithm>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/cuda_device.h"
#include "emulator/probes.h"
#include "napi/convert.h"
#include "napi/device_handle.h"
#include "napi/errors.h"
#include "napi/type_tag.h"

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

// A graph probe's report as {statuses: {name: status or message}, values: {name: number[]}}.
Napi::Object toObject(Napi::Env env, const emu::probes::Report& report) {
  Napi::Object statuses = Napi::Object::New(env), values = Napi::Object::New(env);
  for (const auto& [name, status] : report.statuses) statuses.Set(name, status);
  for (const auto& [name, v] : report.values) values.Set(name, toArray(env, v));
  Napi::Object r = Napi::Object::New(env);
  r.Set("statuses", statuses);
  r.Set("values", values);
  return r;
}

std::vector<float> toFloats(Napi::Value value, const char* what) {
  if (value.IsArray()) {
    Napi::Array a = value.As<Napi::Array>();
    std::vector<float> out(a.Length());
    for (uint32_t i = 0; i < a.Length(); ++i) out[i] = float(toNumber(a.Get(i), what));
    return out;
  }
  Napi::Float32Array a = toFloat32Array(value, what);
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

Napi::Object toObject(Napi::Env env, const BssnEmuAccessCost& c) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("warpAccesses", double(c.warpAccesses));
  r.Set("sectors", double(c.sectors));
  r.Set("distinctSectors", double(c.distinctSectors));
  r.Set("bytes", double(c.bytes));
  return r;
}

Napi::Array toArray(Napi::Env env, const uint32_t (&v)[3]) { return toArray(env, std::vector<double>{double(v[0]), double(v[1]), double(v[2])}); }

// What counting gathered (bssn_emulator.h, BssnEmuCost), with each launch's share in `kernels`.
Napi::Object costReport(Napi::Env env, const BssnEmuCost& c) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("launches", double(c.launches));
  r.Set("graphLaunches", double(c.graphLaunches));
  r.Set("graphNodes", double(c.graphNodes));
  r.Set("blocks", double(c.blocks));
  r.Set("loads", toObject(env, c.loads));
  r.Set("stores", toObject(env, c.stores));
  r.Set("maxThreadAccesses", double(c.maxThreadAccesses));
  r.Set("synchronizations", double(c.synchronizations));
  r.Set("deviceAllocations", double(c.deviceAllocations));
  r.Set("pinnedAllocations", double(c.pinnedAllocations));
  r.Set("bytesToDevice", double(c.bytesToDevice));
  r.Set("bytesToHost", double(c.bytesToHost));
  r.Set("bytesDeviceToDevice", double(c.bytesDeviceToDevice));
  std::vector<BssnEmuLaunchCost> launches(bssnEmuLaunchCosts(nullptr, 0));
  launches.resize(std::min(launches.size(), bssnEmuLaunchCosts(launches.data(), launches.size())));
  Napi::Array kernels = Napi::Array::New(env, launches.size());
  for (size_t i = 0; i < launches.size(); ++i) {
    const BssnEmuLaunchCost& l = launches[i];
    Napi::Object k = Napi::Object::New(env);
    k.Set("kernel", l.kernel);
    k.Set("replay", double(l.replay));
    k.Set("grid", toArray(env, l.grid));
    k.Set("block", toArray(env, l.block));
    k.Set("blocks", double(l.blocks));
    k.Set("loads", toObject(env, l.loads));
    k.Set("stores", toObject(env, l.stores));
    k.Set("maxThreadAccesses", double(l.maxThreadAccesses));
    kernels.Set(uint32_t(i), k);
  }
  r.Set("kernels", kernels);
  return r;
}

int toMode(Napi::Value value) { return int(toInteger(value, "capture mode", 0, 2)); }

std::string toName(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "expected the probe's name");
  return info[0].As<Napi::String>();
}

// The caching allocator's private pools (cuda/caching_allocator.h), for tests: begin(device) makes a new pool the
// JS thread's allocation pool and returns a holder, end(device) ends it, release(holder) lets go of it (the pool's
// memory goes once its buffers have gone too), reservedBytes(holder) is what it holds; cachedBytes(device) is the
// general cache's free blocks.
cuda::CudaDevice& cudaDeviceOf(Napi::Value value) {
  const DevicePtr& device = unwrapTagged<DeviceHandle>(value, "a device handle")->device();
  if (device->kind() != DeviceKind::Cuda) throwTypeError("expected a CUDA device handle");
  return static_cast<cuda::CudaDevice&>(*device);
}
using PoolHolder = std::shared_ptr<cuda::PrivatePool>;
PoolHolder& poolOf(Napi::Value value) {
  if (!value.IsExternal()) throwTypeError("expected a private pool holder");
  return *value.As<Napi::External<PoolHolder>>().Data();
}
Napi::Object privatePoolBindings(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("begin", fn(env, "begin", [](const Napi::CallbackInfo& info) -> Napi::Value {
          auto* holder = new PoolHolder(cudaDeviceOf(info[0]).beginPrivatePool());
          return Napi::External<PoolHolder>::New(info.Env(), holder, [](Napi::Env, PoolHolder* h) { delete h; });
        }));
  o.Set("end", fn(env, "end", [](const Napi::CallbackInfo& info) -> Napi::Value {
          cudaDeviceOf(info[0]).endPrivatePool();
          return info.Env().Undefined();
        }));
  o.Set("release", fn(env, "release", [](const Napi::CallbackInfo& info) -> Napi::Value {
          poolOf(info[0]).reset();
          return info.Env().Undefined();
        }));
  o.Set("reservedBytes", fn(env, "reservedBytes", [](const Napi::CallbackInfo& info) -> Napi::Value {
          const PoolHolder& pool = poolOf(info[0]);
          return Napi::Number::New(info.Env(), pool ? double(pool->reservedBytes()) : 0.0);
        }));
  o.Set("cachedBytes", fn(env, "cachedBytes", [](const Napi::CallbackInfo& info) -> Napi::Value {
          return Napi::Number::New(info.Env(), double(cudaDeviceOf(info[0]).cachedBytes()));
        }));
  // capture(device, withPool): captures (relaxed) a buffer allocated, filled with 1 and freed, then one allocated and
  // filled with 3; with the pool, launches the graph and reads the second buffer. The emulator refuses
  // cudaMallocAsync in a capture (CUDA would record an allocation node): {outcome: "ok" or the error, values}.
  o.Set("capture", fn(env, "capture", [](const Napi::CallbackInfo& info) -> Napi::Value {
          cuda::CudaDevice& d = cudaDeviceOf(info[0]);
          const bool withPool = info[1].ToBoolean();
          constexpr size_t n = 1000;
          std::string outcome = "ok";
          PoolHolder pool = withPool ? d.beginPrivatePool() : nullptr;
          const cudaStream_t s = d.stream();
          if (cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed) != cudaSuccess) throwError("cudaStreamBeginCapture failed");
          BufferPtr kept;
          try {
            {
              BufferPtr scratch = d.allocate(n * sizeof(float));
              d.fill(scratch, n, 1.0f);
            }
            kept = d.allocate(n * sizeof(float));
            d.fill(kept, n, 3.0f);
          } catch (const std::exception& e) {
            outcome = e.what();
          }
          if (withPool) d.endPrivatePool();
          cudaGraph_t graph = nullptr;
          const cudaError_t ended = cudaStreamEndCapture(s, &graph);
          cudaGetLastError();
          std::vector<double> values;
          if (ended == cudaSuccess && graph && outcome == "ok") {
            cudaGraphExec_t exec = nullptr;
            std::vector<float> host(n, 0.0f);
            if (cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess || cudaGraphLaunch(exec, s) != cudaSuccess ||
                cudaStreamSynchronize(s) != cudaSuccess || cudaMemcpy(host.data(), kept->data(), n * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess)
              outcome = "the graph failed";
            values.assign(host.begin(), host.end());
            if (exec) cudaGraphExecDestroy(exec);
          } else if (outcome == "ok") {
            outcome = "cudaStreamEndCapture failed";
          }
          if (graph) cudaGraphDestroy(graph);
          Napi::Object r = Napi::Object::New(info.Env());
          r.Set("outcome", outcome);
          r.Set("values", toArray(info.Env(), values));
          return r;
        }));
  return o;
}

}  // namespace

Napi::Object defineEmulator(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("privatePool", privatePoolBindings(env));
  // failAllocation(n, count = 1) / failLaunch(n): the n-th device allocation (and the count - 1 after it) / kernel
  // launch from now fails (0: off).
  o.Set("failAllocation", fn(env, "failAllocation", [](const Napi::CallbackInfo& info) -> Napi::Value {
          const int64_t count = info[1].IsUndefined() ? 1 : toInteger(info[1], "failure count", 1, 1000000000);
          bssnEmuFailAllocations(toInteger(info[0], "allocation count", 0, 1000000000), count);
          return info.Env().Undefined();
        }));
  o.Set("failLaunch", fn(env, "failLaunch", [](const Napi::CallbackInfo& info) -> Napi::Value {
          bssnEmuFailLaunch(toInteger(info[0], "launch count", 0, 1000000000));
          return info.Env().Undefined();
        }));
  // refuseCooperative(n): the next n cooperative launches are refused as too large (0: off).
  o.Set("refuseCooperative", fn(env, "refuseCooperative", [](const Napi::CallbackInfo& info) -> Napi::Value {
          bssnEmuRefuseCooperative(toInteger(info[0], "launch count", 0, 1000000000));
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
          r.Set("graphLaunches", double(s.graphLaunches));
          r.Set("captures", double(s.captures));
          r.Set("stickyFault", bssnEmuStickyMessage());
          std::vector<const char*> names(256);
          std::vector<int64_t> counts(256);
          const size_t n = std::min(bssnEmuKernelLaunches(names.data(), counts.data(), names.size()), names.size());
          Napi::Object perKernel = Napi::Object::New(info.Env());
          for (size_t i = 0; i < n; ++i) perKernel.Set(names[i], double(counts[i]));
          r.Set("kernelLaunches", perKernel);
          return r;
        }));
  // Counting what a GPU would pay (native/emulator/README.md): available, start(), stop() -> the counts.
  Napi::Object cost = Napi::Object::New(env);
  cost.Set("available", Napi::Boolean::New(env, bssnEmuCountingAvailable() != 0));
  cost.Set("start", fn(env, "start", [](const Napi::CallbackInfo& info) -> Napi::Value {
             bssnEmuCountingStart();
             return info.Env().Undefined();
           }));
  cost.Set("stop", fn(env, "stop", [](const Napi::CallbackInfo& info) -> Napi::Value {
             BssnEmuCost c{};
             bssnEmuCountingStop(&c);
             return costReport(info.Env(), c);
           }));
  o.Set("cost", cost);
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
  // Stream capture and graphs (native/emulator/probes.h says what each does); modes: 0 Global, 1 ThreadLocal, 2 Relaxed.
  probes.Set("graphReplay", fn(env, "graphReplay", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toObject(info.Env(), emu::probes::graphReplay(toFloats(info[0], "input"), toFloats(info[1], "scalars"),
                                                                    int(toInteger(info[2], "replays", 0, 1000)), toMode(info[3])));
             }));
  probes.Set("captureError", fn(env, "captureError", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toObject(info.Env(), emu::probes::captureError(toName(info), toMode(info[1]), toFloats(info[2], "input")));
             }));
  probes.Set("captureMisuse", fn(env, "captureMisuse", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toObject(info.Env(), emu::probes::captureMisuse());
             }));
  probes.Set("endFromOtherThread", fn(env, "endFromOtherThread", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toObject(info.Env(), emu::probes::endFromOtherThread(toMode(info[0])));
             }));
  probes.Set("otherThreadDuringCapture", fn(env, "otherThreadDuringCapture", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toObject(info.Env(), emu::probes::otherThreadDuringCapture(toMode(info[0]), toMode(info[1])));
             }));
  probes.Set("captureWhileOthersWait", fn(env, "captureWhileOthersWait", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toObject(info.Env(), emu::probes::captureWhileOthersWait(toFloats(info[0], "input"),
                                                                               int(toInteger(info[1], "rounds", 1, 100000)), toMode(info[2])));
             }));
  probes.Set("graphLifetime", fn(env, "graphLifetime", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toObject(info.Env(), emu::probes::graphLifetime(toFloats(info[0], "input"), toFloats(info[1], "scalars")));
             }));
  probes.Set("graphFault", fn(env, "graphFault", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toObject(info.Env(), emu::probes::graphFault(toFloats(info[0], "input"), toFloats(info[1], "scalars"),
                                                                   int(toInteger(info[2], "replays", 1, 1000)),
                                                                   int(toInteger(info[3], "launch count", 1, 1000000))));
             }));
  probes.Set("capturedStep", fn(env, "capturedStep", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toObject(info.Env(), emu::probes::capturedStep(toFloats(info[0], "inputs"), toFloats(info[1], "init"),
                                                                     toFloats(info[2], "scalars"), toMode(info[3])));
             }));
  probes.Set("copyNodeAfterFree", fn(env, "copyNodeAfterFree", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return Napi::String::New(info.Env(), emu::probes::copyNodeAfterFree());
             }));
  probes.Set("cooperative", fn(env, "cooperative", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toObject(info.Env(), emu::probes::cooperative());
             }));
  probes.Set("costKernel", fn(env, "costKernel", [](const Napi::CallbackInfo& info) -> Napi::Value {
               return toArray(info.Env(), emu::probes::costKernel(toName(info), toFloats(info[1], "input")));
             }));
  probes.Set("costHostCalls", fn(env, "costHostCalls", [](const Napi::CallbackInfo& info) -> Napi::Value {
               emu::probes::costHostCalls(size_t(toInteger(info[0], "bytes", 1, 1 << 30)));
               return info.Env().Undefined();
             }));
  o.Set("probes", probes);
  return o;
}

}  // namespace bssn::napi
#endif
