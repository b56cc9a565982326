#include "napi/nccl.h"

#if BSSN_WITH_CUDA
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "cuda/cuda_device.h"
#include "cuda/nccl.h"
#include "napi/convert.h"
#include "napi/device_handle.h"
#include "napi/errors.h"
#include "napi/tensor_handle.h"
#include "napi/type_tag.h"

namespace bssn::napi {

namespace {

// A communicator and the device whose stream its collectives run on. Freed by abort() or by the GC (destroy).
struct CommBox {
  nccl::Comm comm = nullptr;
  DevicePtr device;
  int rank = 0, nranks = 0;
};

constexpr napi_type_tag kCommTag = {0x5a0c2e9f7b314d86ull, 0x1f6e83c4d2a9b057ull};

CommBox& commOf(Napi::Value value) {
  if (!value.IsExternal() || !hasTag(value.Env(), value, kCommTag)) throwTypeError("expected an NCCL communicator");
  CommBox& box = *value.As<Napi::External<CommBox>>().Data();
  if (!box.comm) throwError("the NCCL communicator was aborted", ErrorCode::Collective);
  return box;
}

cuda::CudaDevice& cudaOf(const DevicePtr& device) {
  if (device->kind() != DeviceKind::Cuda) throwTypeError("NCCL collectives need a CUDA device");
  return static_cast<cuda::CudaDevice&>(*device);
}

void check(const char* call, nccl::Result r) {
  if (r != nccl::kSuccess) cuda::throwNccl(call, r);
}

// A float32 tensor on the communicator's device.
float* tensorData(const CommBox& box, Napi::Value value, size_t* count) {
  const TensorPtr& t = unwrapTagged<TensorHandle>(value, "a bssn tensor handle")->tensor();
  if (t->dtype() != DType::Float32) throwTypeError("NCCL collectives take float32 tensors");
  if (t->device() != box.device) throwTypeError("the tensor is not on the communicator's device");
  *count = size_t(t->numel());
  return t->buffer()->f32();
}

void abortComm(CommBox& box) {
  if (!box.comm) return;
  const nccl::Comm comm = box.comm;
  box.comm = nullptr;
  cuda::ncclApi().commAbort(comm);
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
  // init(device, id, nranks, rank): blocks until every rank has joined; returns the communicator.
  o.Set("init", fn(env, "init", [](const Napi::CallbackInfo& info) -> Napi::Value {
          const DevicePtr& device = unwrapTagged<DeviceHandle>(info[0], "a device handle")->device();
          cuda::CudaDevice& d = cudaOf(device);
          if (!info[1].IsBuffer() || info[1].As<Napi::Buffer<char>>().Length() != nccl::kUniqueIdBytes)
            throwTypeError("expected the NCCL unique id: a Buffer of 128 bytes from uniqueId()");
          nccl::UniqueId id;
          std::memcpy(id.internal, info[1].As<Napi::Buffer<char>>().Data(), nccl::kUniqueIdBytes);
          const int nranks = int(toInteger(info[2], "the number of ranks", 1, 1 << 16));
          const int rank = int(toInteger(info[3], "the rank", 0, nranks - 1));
          cudaSetDevice(d.index());
          auto* box = new CommBox{nullptr, device, rank, nranks};
          const nccl::Result r = cuda::ncclApi().commInitRank(&box->comm, nranks, id, rank);
          if (r != nccl::kSuccess) {
            delete box;
            cuda::throwNccl("ncclCommInitRank", r);
          }
          Napi::External<CommBox> ext = Napi::External<CommBox>::New(info.Env(), box, [](Napi::Env, CommBox* b) {
            if (b->comm) cuda::ncclApi().commDestroy(b->comm);
            delete b;
          });
          tagObject(info.Env(), ext, kCommTag);
          return ext;
        }));
  // allReduce(comm, tensor or tensors, op: 'sum' | 'avg'): in place, enqueued on the device's stream; an array
  // goes as one NCCL group (ncclGroupStart/End), as a gradient bucket's tensors would.
  o.Set("allReduce", fn(env, "allReduce", [](const Napi::CallbackInfo& info) -> Napi::Value {
          CommBox& box = commOf(info[0]);
          const std::string op = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
          if (op != "sum" && op != "avg") throwTypeError("expected the reduction: 'sum' or 'avg'");
          std::vector<std::pair<float*, size_t>> buffers;
          if (info[1].IsArray()) {
            Napi::Array a = info[1].As<Napi::Array>();
            for (uint32_t i = 0; i < a.Length(); ++i) {
              size_t count = 0;
              float* data = tensorData(box, a.Get(i), &count);
              buffers.emplace_back(data, count);
            }
          } else {
            size_t count = 0;
            float* data = tensorData(box, info[1], &count);
            buffers.emplace_back(data, count);
          }
          const cuda::NcclApi& api = cuda::ncclApi();
          const bool group = info[1].IsArray();
          if (group) check("ncclGroupStart", api.groupStart());
          nccl::Result first = nccl::kSuccess;
          for (const auto& [data, count] : buffers) {
            const nccl::Result r = api.allReduce(data, data, count, nccl::kFloat32, op == "sum" ? nccl::kSum : nccl::kAvg, box.comm,
                                                 cudaOf(box.device).stream());
            if (r != nccl::kSuccess) {
              first = r;
              break;
            }
          }
          if (group) {
            const nccl::Result ended = api.groupEnd();  // always, so the thread's group depth stays balanced
            if (first == nccl::kSuccess && ended != nccl::kSuccess) cuda::throwNccl("ncclGroupEnd", ended);
          }
          if (first != nccl::kSuccess) cuda::throwNccl("ncclAllReduce", first);
          return info.Env().Undefined();
        }));
  // broadcast(comm, tensor, root): root's tensor into every rank's, in place, on the device's stream.
  o.Set("broadcast", fn(env, "broadcast", [](const Napi::CallbackInfo& info) -> Napi::Value {
          CommBox& box = commOf(info[0]);
          size_t count = 0;
          float* data = tensorData(box, info[1], &count);
          const int root = int(toInteger(info[2], "the root rank", 0, box.nranks - 1));
          check("ncclBroadcast", cuda::ncclApi().broadcast(data, data, count, nccl::kFloat32, root, box.comm, cudaOf(box.device).stream()));
          return info.Env().Undefined();
        }));
  // wait(comm, timeoutMs): waits for the device's stream, polling the communicator's async error. A failed
  // collective (a peer died) or the timeout aborts the communicator and throws ERR_BSSN_COLLECTIVE_FAILED: the
  // survivors end with an error rather than hang, as NCCL's own watchdogs do.
  o.Set("wait", fn(env, "wait", [](const Napi::CallbackInfo& info) -> Napi::Value {
          CommBox& box = commOf(info[0]);
          const int64_t timeoutMs = toInteger(info[1], "the timeout in ms", 1, int64_t(1) << 40);
          const cudaStream_t stream = cudaOf(box.device).stream();
          const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
          for (;;) {
            nccl::Result async = nccl::kSuccess;
            check("ncclCommGetAsyncError", cuda::ncclApi().commGetAsyncError(box.comm, &async));
            if (async != nccl::kSuccess && async != nccl::kInProgress) {
              const char* what = cuda::ncclApi().errorString(async);
              abortComm(box);
              throwError(std::string("an NCCL collective failed: ") + (what ? what : "NCCL error") + " (ncclResult_t " + std::to_string(async) +
                             "); the communicator was aborted",
                         ErrorCode::Collective);
            }
            const cudaError_t st = cudaStreamQuery(stream);
            if (st == cudaSuccess) break;
            if (st != cudaErrorNotReady) {
              cudaGetLastError();
              throwError(std::string("the stream of an NCCL collective failed: ") + cudaGetErrorString(st), ErrorCode::DeviceFault);
            }
            if (std::chrono::steady_clock::now() > deadline) {
              abortComm(box);
              throwError("an NCCL collective did not finish within " + std::to_string(timeoutMs) + " ms; the communicator was aborted",
                         ErrorCode::Collective);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
          return info.Env().Undefined();
        }));
  // abort(comm): ncclCommAbort; later calls on it throw.
  o.Set("abort", fn(env, "abort", [](const Napi::CallbackInfo& info) -> Napi::Value {
          if (!info[0].IsExternal() || !hasTag(info.Env(), info[0], kCommTag)) throwTypeError("expected an NCCL communicator");
          abortComm(*info[0].As<Napi::External<CommBox>>().Data());
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
