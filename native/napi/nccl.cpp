#include "napi/nccl.h"

#if BSSN_WITH_CUDA
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "cuda/cuda_device.h"
#include "cuda/nccl.h"
#include "cuda/nccl_comm.h"
#include "napi/convert.h"
#include "napi/device_handle.h"
#include "napi/errors.h"
#include "napi/tensor_handle.h"
#include "napi/type_tag.h"

namespace bssn::napi {

namespace {

// A communicator (native/cuda/nccl_comm.h), freed by the GC; abort() ends it earlier.
struct CommBox {
  std::unique_ptr<cuda::Communicator> comm;
};

constexpr napi_type_tag kCommTag = {0x5a0c2e9f7b314d86ull, 0x1f6e83c4d2a9b057ull};

cuda::Communicator& commOf(Napi::Value value) {
  if (!value.IsExternal() || !hasTag(value.Env(), value, kCommTag)) throwTypeError("expected an NCCL communicator");
  return *value.As<Napi::External<CommBox>>().Data()->comm;
}

cuda::CudaDevice& cudaOf(const DevicePtr& device) {
  if (device->kind() != DeviceKind::Cuda) throwTypeError("NCCL collectives need a CUDA device");
  return static_cast<cuda::CudaDevice&>(*device);
}

void check(const char* call, nccl::Result r) {
  if (r != nccl::kSuccess) cuda::throwNccl(call, r);
}

// A float32 tensor on the communicator's device: its buffer and element count.
std::pair<BufferPtr, size_t> tensorData(const cuda::Communicator& comm, Napi::Value value) {
  const TensorPtr& t = unwrapTagged<TensorHandle>(value, "a bssn tensor handle")->tensor();
  if (t->dtype() != DType::Float32) throwTypeError("NCCL collectives take float32 tensors");
  if (t->device() != comm.device()) throwTypeError("the tensor is not on the communicator's device");
  return {t->buffer(), size_t(t->numel())};
}

template <typename Body>
Napi::Function fn(Napi::Env env, const char* name, Body body) {
  return Napi::Function::New(env, [body](const Napi::CallbackInfo& info) -> Napi::Value { return guard(info.Env(), [&] { return body(info); }); },
                             name);
}

}  // namespace

Napi::Object defineNccl(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  // uniqueId(): the 128 bytes every rank passes to init (what the rendezvous hands out), as a Buffer.
  o.Set("uniqueId", fn(env, "uniqueId", [](const Napi::CallbackInfo& info) -> Napi::Value {
          nccl::UniqueId id{};
          check("ncclGetUniqueId", cuda::ncclApi().getUniqueId(&id));
          return Napi::Buffer<char>::Copy(info.Env(), id.internal, nccl::kUniqueIdBytes);
        }));
  // version(): NCCL's version code (loads NCCL: a missing library fails here, with how to install it).
  o.Set("version", fn(env, "version", [](const Napi::CallbackInfo& info) -> Napi::Value {
          int code = 0;
          check("ncclGetVersion", cuda::ncclApi().getVersion(&code));
          return Napi::Number::New(info.Env(), code);
        }));
  // init(device, id, nranks, rank): blocks until every rank has joined; returns the communicator.
  o.Set("init", fn(env, "init", [](const Napi::CallbackInfo& info) -> Napi::Value {
          const DevicePtr& device = unwrapTagged<DeviceHandle>(info[0], "a device handle")->device();
          cudaOf(device);
          if (!info[1].IsBuffer() || info[1].As<Napi::Buffer<char>>().Length() != nccl::kUniqueIdBytes)
            throwTypeError("expected the NCCL unique id: a Buffer of 128 bytes from uniqueId()");
          nccl::UniqueId id;
          std::memcpy(id.internal, info[1].As<Napi::Buffer<char>>().Data(), nccl::kUniqueIdBytes);
          const int nranks = int(toInteger(info[2], "the number of ranks", 1, 1 << 16));
          const int rank = int(toInteger(info[3], "the rank", 0, nranks - 1));
          auto* box = new CommBox{std::make_unique<cuda::Communicator>(device, id, nranks, rank)};
          Napi::External<CommBox> ext = Napi::External<CommBox>::New(info.Env(), box, [](Napi::Env, CommBox* b) { delete b; });
          tagObject(info.Env(), ext, kCommTag);
          return ext;
        }));
  // allReduce(comm, tensor or tensors, op: 'sum' | 'avg', overlapped = false): in place, one NCCL group for an
  // array (a gradient bucket). Overlapped: on the communicator's stream after the device stream's work so far
  // (join() orders it back); otherwise on the device's stream.
  o.Set("allReduce", fn(env, "allReduce", [](const Napi::CallbackInfo& info) -> Napi::Value {
          cuda::Communicator& comm = commOf(info[0]);
          const std::string op = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
          if (op != "sum" && op != "avg") throwTypeError("expected the reduction: 'sum' or 'avg'");
          std::vector<std::pair<BufferPtr, size_t>> buffers;
          if (info[1].IsArray()) {
            Napi::Array a = info[1].As<Napi::Array>();
            for (uint32_t i = 0; i < a.Length(); ++i) buffers.push_back(tensorData(comm, a.Get(i)));
          } else {
            buffers.push_back(tensorData(comm, info[1]));
          }
          const bool overlapped = info.Length() > 3 && info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
          comm.allReduce(buffers, op == "sum" ? nccl::kSum : nccl::kAvg, overlapped);
          return info.Env().Undefined();
        }));
  // join(comm): the device's stream waits (on the device) for the overlapped all-reduces enqueued so far.
  o.Set("join", fn(env, "join", [](const Napi::CallbackInfo& info) -> Napi::Value {
          commOf(info[0]).join();
          return info.Env().Undefined();
        }));
  // poll(comm): how many of the collectives enqueued so far completed since the last poll (in enqueue order), without
  // waiting. A failed collective (a peer died) aborts the communicator and throws ERR_BSSN_COLLECTIVE_FAILED: the JS
  // watchdog calls it.
  o.Set("poll", fn(env, "poll", [](const Napi::CallbackInfo& info) -> Napi::Value {
          return Napi::Number::New(info.Env(), double(commOf(info[0]).poll()));
        }));
  // broadcast(comm, tensor, root): root's tensor into every rank's, in place, on the device's stream.
  o.Set("broadcast", fn(env, "broadcast", [](const Napi::CallbackInfo& info) -> Napi::Value {
          cuda::Communicator& comm = commOf(info[0]);
          const auto [buffer, count] = tensorData(comm, info[1]);
          comm.broadcast(buffer, count, int(toInteger(info[2], "the root rank", 0, comm.nranks() - 1)));
          return info.Env().Undefined();
        }));
  // wait(comm, timeoutMs): blocks until every collective enqueued so far completed (tools and test fixtures; the
  // library polls instead). A failed collective or the timeout aborts the communicator and throws
  // ERR_BSSN_COLLECTIVE_FAILED: the survivors end with an error rather than hang, as NCCL's own watchdogs do.
  o.Set("wait", fn(env, "wait", [](const Napi::CallbackInfo& info) -> Napi::Value {
          commOf(info[0]).wait(toInteger(info[1], "the timeout in ms", 1, int64_t(1) << 40));
          return info.Env().Undefined();
        }));
  // abort(comm): ncclCommAbort; later calls on it throw.
  o.Set("abort", fn(env, "abort", [](const Napi::CallbackInfo& info) -> Napi::Value {
          commOf(info[0]).abort();
          return info.Env().Undefined();
        }));
#if defined(BSSN_CUDA_EMULATED)
  // emulatedBytes(): {allReduced, broadcast}, the bytes this process's collectives moved (the emulator's counting).
  o.Set("emulatedBytes", fn(env, "emulatedBytes", [](const Napi::CallbackInfo& info) -> Napi::Value {
          int64_t allReduced = 0, broadcast = 0;
          cuda::ncclApi().emulatedBytes(&allReduced, &broadcast);
          Napi::Object r = Napi::Object::New(info.Env());
          r.Set("allReduced", double(allReduced));
          r.Set("broadcast", double(broadcast));
          return r;
        }));
  // captureProbe(device, elements, replays): a 1-rank all-reduce captured into a CUDA graph, then replayed:
  // {atCapture, perReplay: number[]}, the bytes all-reduced by the capture and after each replay (a captured
  // collective moves nothing until the graph runs, then moves its bytes at every replay).
  o.Set("captureProbe", fn(env, "captureProbe", [](const Napi::CallbackInfo& info) -> Napi::Value {
          cuda::CudaDevice& d = cudaOf(unwrapTagged<DeviceHandle>(info[0], "a device handle")->device());
          const size_t elements = size_t(toInteger(info[1], "elements", 1, 1 << 24));
          const int replays = int(toInteger(info[2], "replays", 1, 100));
          const cuda::NcclApi& api = cuda::ncclApi();
          nccl::UniqueId id{};
          check("ncclGetUniqueId", api.getUniqueId(&id));
          nccl::Comm comm = nullptr;
          check("ncclCommInitRank", api.commInitRank(&comm, 1, id, 0));
          const BufferPtr buffer = d.allocate(elements * sizeof(float));
          const cudaStream_t s = d.stream();
          const auto bytes = [&] {
            if (cudaStreamSynchronize(s) != cudaSuccess) throwError("the probe's stream failed", ErrorCode::DeviceFault);
            int64_t allReduced = 0;
            api.emulatedBytes(&allReduced, nullptr);
            return double(allReduced);
          };
          const double before = bytes();
          cudaGraph_t graph = nullptr;
          cudaGraphExec_t exec = nullptr;
          if (cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed) != cudaSuccess) throwError("cudaStreamBeginCapture failed");
          const nccl::Result r = api.allReduce(buffer->data(), buffer->data(), elements, nccl::kFloat32, nccl::kSum, comm, s);
          if (cudaStreamEndCapture(s, &graph) != cudaSuccess || r != nccl::kSuccess) throwError("capturing ncclAllReduce failed");
          Napi::Object out = Napi::Object::New(info.Env());
          out.Set("atCapture", bytes() - before);
          Napi::Array perReplay = Napi::Array::New(info.Env());
          const bool instantiated = cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
          for (int i = 0; instantiated && i < replays; ++i) {
            if (cudaGraphLaunch(exec, s) != cudaSuccess) break;
            perReplay.Set(uint32_t(i), bytes() - before);
          }
          if (exec) cudaGraphExecDestroy(exec);
          cudaGraphDestroy(graph);
          api.commDestroy(comm);
          out.Set("perReplay", perReplay);
          return out;
        }));
#endif
  return o;
}

}  // namespace bssn::napi
#endif
