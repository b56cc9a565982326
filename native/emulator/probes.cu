#include "emulator/probes.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "bssn_emulator.h"
#include "cuda/common.cuh"

namespace bssn::emu::probes {

namespace {

using cuda::blockSum;
using cuda::kWarp;

void check(cudaError_t st, const char* what) {
  if (st != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(st));
}

template <typename T>
T* deviceArray(size_t n) {
  void* p = nullptr;
  check(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
  return static_cast<T*>(p);
}

template <typename T>
std::vector<T> download(const T* p, size_t n) {
  std::vector<T> out(n);
  check(cudaMemcpy(out.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  return out;
}

__global__ void blockSumKernel(double* out) {
  BSSN_SHARED(double, partial, 256 / 32);
  const double total = blockSum(double(threadIdx.x + 1), partial);
  if (threadIdx.x == 0) out[0] = total;
}

// blockSum with its first barrier left out: warp 0 reads the other warps' partials before they are written.
__global__ void blockSumNoBarrierKernel(double* out) {
  BSSN_SHARED(double, partial, 256 / 32);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  double x = cuda::warpSum(double(threadIdx.x + 1));
  if (lane == 0) partial[warp] = x;
  x = threadIdx.x < blockDim.x / kWarp ? partial[threadIdx.x] : 0.0;
  if (warp == 0) x = cuda::warpSum(x);
  if (threadIdx.x == 0) out[blockIdx.x] = x;
}

// Thread 0 computes a value for the block and the others read it, with the barrier between left out.
__global__ void broadcastNoBarrierKernel(float* out) {
  BSSN_SHARED(float, value, 1);
  if (threadIdx.x == 0) *value = 7.0f + float(blockIdx.x);
  out[blockIdx.x * blockDim.x + threadIdx.x] = *value;
}

// Lanes 16..31 exit first; the rest shuffle and vote with a full mask, which waits only for lanes still running.
__global__ void exitedLanesKernel(double* out) {
  const int lane = threadIdx.x % 32;
  if (lane >= 16) return;
  out[lane] = __shfl_xor_sync(0xffffffffu, 100.0 + lane, 1);
  out[16 + lane] = double(__ballot_sync(0xffffffffu, 1));
}

// Rows: shfl(src 5), shfl width 8 (src 3), up 2, down 3, xor 1, xor 16 width 16, ballot(lane odd) for lane values
// 100 + thread index.
__global__ void warpOpsKernel(double* out) {
  const int t = threadIdx.x, lane = t % 32, n = blockDim.x;
  const float v = 100.0f + float(t);
  out[0 * n + t] = __shfl_sync(0xffffffffu, v, 5);
  out[1 * n + t] = __shfl_sync(0xffffffffu, v, 3, 8);
  out[2 * n + t] = __shfl_up_sync(0xffffffffu, v, 2);
  out[3 * n + t] = __shfl_down_sync(0xffffffffu, v, 3);
  out[4 * n + t] = __shfl_xor_sync(0xffffffffu, v, 1);
  out[5 * n + t] = __shfl_xor_sync(0xffffffffu, v, 16, 16);
  out[6 * n + t] = double(__ballot_sync(0xffffffffu, lane % 2));
}

__global__ void atomicsKernel(float* f, double* d) {
  atomicAdd(f, 1.0f);
  atomicAdd(d, 1.0);
}

__global__ void reverseKernel(const float* in, float* out, int n) {
  BSSN_DYNAMIC_SHARED(float, staging);
  for (int i = threadIdx.x; i < n; i += blockDim.x) staging[i] = in[i];
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = staging[n - 1 - i];
}

__global__ void emptyKernel(int) {}

// Holds the stream until the host opens the gate (host memory is addressable in the emulator, by design here).
__global__ void gateKernel(const int* gate, float* out) {
  while (!__atomic_load_n(gate, __ATOMIC_ACQUIRE)) {
  }
  out[0] = 42.0f;
}

__global__ void divergentBarrierKernel(float* out) {
  if (threadIdx.x < 128) __syncthreads();
  out[threadIdx.x] = 1.0f;
}

__global__ void missingLaneKernel(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x % 32 != 31) v = __shfl_down_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

__global__ void maskMismatchKernel(float* out) {
  const int lane = threadIdx.x % 32;
  float v = float(threadIdx.x);
  v = lane < 16 ? __shfl_down_sync(0x0000ffffu, v, 1) : __shfl_down_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

__global__ void maskWithoutSelfKernel(float* out) {
  out[threadIdx.x] = __shfl_sync(0x1u, float(threadIdx.x), 0);
}

// A barrier only warp 0 reaches, while the other warps wait at a later one.
__global__ void barrierInOneWarpKernel(float* out) {
  if (threadIdx.x < 32) out[threadIdx.x] = 0.0f;
  else __syncthreads();
  out[threadIdx.x] = 2.0f;
}

// The graph probes' kernels: distinct names, so that per-kernel launch counts and fault messages tell them apart.
__global__ void graphCopyKernel(float* out, const float* in, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = in[i];
}

__global__ void graphAffineKernel(float* out, float a, float b, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = out[i] * a + b;
}

__global__ void graphAccumulateKernel(float* acc, const float* out, int* count, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) acc[i] += out[i];
  if (i == 0) atomicAdd(count, 1);
}

}  // namespace

std::vector<double> blockSums() {
  double* out = deviceArray<double>(3);
  BSSN_LAUNCH(blockSumKernel, 1, 256, 0, nullptr, out);
  // Two blocks: one runs lowest thread first, the other highest first.
  BSSN_LAUNCH(blockSumNoBarrierKernel, 2, 256, 0, nullptr, out + 1);
  check(cudaGetLastError(), "launch");
  std::vector<double> sums = download(out, 3);
  check(cudaFree(out), "cudaFree");
  return sums;
}

double broadcastWithoutBarrier() {
  constexpr int blocks = 4, threads = 256;
  float* out = deviceArray<float>(blocks * threads);
  BSSN_LAUNCH(broadcastNoBarrierKernel, blocks, threads, 0, nullptr, out);
  check(cudaGetLastError(), "launch");
  const std::vector<float> values = download(out, blocks * threads);
  check(cudaFree(out), "cudaFree");
  int wrong = 0;
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) wrong += values[size_t(b * threads + t)] != 7.0f + float(b);
  return wrong;
}

std::vector<double> exitedLanes() {
  double* out = deviceArray<double>(32);
  BSSN_LAUNCH(exitedLanesKernel, 1, 32, 0, nullptr, out);
  check(cudaGetLastError(), "launch");
  std::vector<double> values = download(out, 32);
  check(cudaFree(out), "cudaFree");
  return values;
}

std::vector<std::vector<double>> warpOps() {
  constexpr int n = 64, rows = 7;
  double* out = deviceArray<double>(n * rows);
  BSSN_LAUNCH(warpOpsKernel, 1, n, 0, nullptr, out);
  check(cudaGetLastError(), "launch");
  const std::vector<double> flat = download(out, n * rows);
  check(cudaFree(out), "cudaFree");
  std::vector<std::vector<double>> result;
  for (int r = 0; r < rows; ++r) result.emplace_back(flat.begin() + r * n, flat.begin() + (r + 1) * n);
  return result;
}

std::vector<double> atomicsAndDynamicShared() {
  float* f = deviceArray<float>(1);
  double* d = deviceArray<double>(1);
  check(cudaMemsetAsync(f, 0, sizeof(float), nullptr), "cudaMemsetAsync");
  check(cudaMemsetAsync(d, 0, sizeof(double), nullptr), "cudaMemsetAsync");
  BSSN_LAUNCH(atomicsKernel, 8, 128, 0, nullptr, f, d);
  constexpr int count = 300;
  std::vector<float> host(count);
  for (int i = 0; i < count; ++i) host[size_t(i)] = float(i);
  float* in = deviceArray<float>(count);
  float* out = deviceArray<float>(count);
  check(cudaMemcpy(in, host.data(), sizeof(float) * count, cudaMemcpyHostToDevice), "cudaMemcpy");
  BSSN_LAUNCH(reverseKernel, 1, 128, sizeof(float) * count, nullptr, in, out, count);
  check(cudaGetLastError(), "launch");
  const std::vector<float> reversed = download(out, count);
  const double result[] = {double(download(f, 1)[0]), download(d, 1)[0], double(reversed[0]), double(reversed[count - 1])};
  for (void* p : {static_cast<void*>(f), static_cast<void*>(d), static_cast<void*>(in), static_cast<void*>(out)}) check(cudaFree(p), "cudaFree");
  return {std::begin(result), std::end(result)};
}

std::vector<std::pair<std::string, std::string>> launchLimits() {
  struct Case {
    const char* what;
    dim3 grid, block;
    size_t shared;
  };
  const Case cases[] = {{"1025 threads per block", 1, 1025, 0},          {"block (32, 32, 2)", 1, dim3(32, 32, 2), 0},
                        {"block.z = 65", 1, dim3(1, 1, 65), 0},          {"grid.y = 65536", dim3(1, 65536), 32, 0},
                        {"grid.z = 65536", dim3(1, 1, 65536), 32, 0},    {"49152 + 1 bytes of shared memory", 1, 32, 49153},
                        {"an empty grid", dim3(0), 32, 0},               {"1024 threads, 48 KiB shared (allowed)", 1, 1024, 49152}};
  std::vector<std::pair<std::string, std::string>> out;
  for (const Case& c : cases) {
    BSSN_LAUNCH(emptyKernel, c.grid, c.block, c.shared, nullptr, 0);
    out.emplace_back(c.what, cudaGetErrorName(cudaGetLastError()));
  }
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  return out;
}

std::vector<double> staleRead() {
  cudaStream_t stream;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  float* value = deviceArray<float>(1);
  void* pinned = nullptr;
  check(cudaHostAlloc(&pinned, sizeof(float), cudaHostAllocDefault), "cudaHostAlloc");
  *static_cast<float*>(pinned) = -1.0f;
  cudaEvent_t done;
  check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  static int gate;
  __atomic_store_n(&gate, 0, __ATOMIC_RELEASE);
  BSSN_LAUNCH(gateKernel, 1, 1, 0, stream, &gate, value);
  check(cudaMemcpyAsync(pinned, value, sizeof(float), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
  check(cudaEventRecord(done, stream), "cudaEventRecord");
  const double before = *static_cast<volatile float*>(pinned);  // the bug the probe stands for: no wait
  __atomic_store_n(&gate, 1, __ATOMIC_RELEASE);
  check(cudaEventSynchronize(done), "cudaEventSynchronize");
  const double after = *static_cast<volatile float*>(pinned);
  cudaEventDestroy(done);
  cudaFreeHost(pinned);
  cudaFree(value);
  cudaStreamDestroy(stream);
  return {before, after};
}

std::string fatal(const std::string& which) {
  float* out = deviceArray<float>(256);
  if (which == "divergentBarrier") BSSN_LAUNCH(divergentBarrierKernel, 2, 256, 0, nullptr, out);
  else if (which == "missingLane") BSSN_LAUNCH(missingLaneKernel, 1, 64, 0, nullptr, out);
  else if (which == "maskMismatch") BSSN_LAUNCH(maskMismatchKernel, 1, 32, 0, nullptr, out);
  else if (which == "maskWithoutSelf") BSSN_LAUNCH(maskWithoutSelfKernel, 1, 32, 0, nullptr, out);
  else if (which == "barrierInOneWarp") BSSN_LAUNCH(barrierInOneWarpKernel, 1, 64, 0, nullptr, out);
  else if (!launchFatalCooperative(which, out)) throw std::invalid_argument("unknown probe " + which);
  // A fast failure may already be the context's sticky error when the launch is checked: the same report.
  const cudaError_t launch = cudaGetLastError();
  if (launch != cudaSuccess && launch != cudaErrorLaunchFailure) return std::string("launch: ") + cudaGetErrorString(launch);
  const cudaError_t st = cudaDeviceSynchronize();
  return std::string(cudaGetErrorName(st)) + ": " + cudaGetErrorString(st);
}

}  // namespace bssn::emu::probes

// ---- stream capture and graphs

namespace bssn::emu::probes {

namespace {

constexpr int kBlock = 128;
unsigned blocksFor(int n) { return unsigned((n + kBlock - 1) / kBlock); }

struct Recorder {
  Report report;
  cudaError_t status(const std::string& what, cudaError_t st) {
    report.statuses.emplace_back(what, cudaGetErrorName(st));
    return st;
  }
  void message(const std::string& what, const std::string& text) { report.statuses.emplace_back(what, text); }
  template <typename T>
  void value(const std::string& what, const std::vector<T>& v) {
    report.values.emplace_back(what, std::vector<double>(v.begin(), v.end()));
  }
  void value(const std::string& what, double v) { report.values.emplace_back(what, std::vector<double>{v}); }
};

cudaStream_t newStream(unsigned flags = cudaStreamNonBlocking) {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, flags), "cudaStreamCreateWithFlags");
  return s;
}

double captureStatus(cudaStream_t s) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(s, &status), "cudaStreamIsCapturing");
  return status;
}

// The probe graph's buffers: `in` uploaded, `out` left as allocated (NaN), `acc` and `count` zeroed.
struct Buffers {
  explicit Buffers(const std::vector<float>& input) : n(int(input.size())) {
    in = deviceArray<float>(input.size());
    out = deviceArray<float>(input.size());
    acc = deviceArray<float>(input.size());
    count = deviceArray<int>(1);
    check(cudaMemcpy(in, input.data(), input.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
    check(cudaMemsetAsync(acc, 0, input.size() * sizeof(float), nullptr), "cudaMemsetAsync");
    check(cudaMemsetAsync(count, 0, sizeof(int), nullptr), "cudaMemsetAsync");
    check(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize");
  }
  // Freed by the caller (release()), except after a fault, when nothing can be freed any more.
  void release() {
    for (void* p : {static_cast<void*>(in), static_cast<void*>(out), static_cast<void*>(acc), static_cast<void*>(count)})
      check(cudaFree(p), "cudaFree");
  }
  void read(Recorder& rec, const std::string& suffix = "") const {
    rec.value("out" + suffix, download(out, size_t(n)));
    rec.value("acc" + suffix, download(acc, size_t(n)));
    rec.value("count" + suffix, download(count, 1));
  }
  int n;
  float *in, *out, *acc;
  int* count;
};

// The probe graph's four launches on `stream`: out = in; out = out * s0 + s1; out = out * s2 + s3; acc += out.
void launchSequence(cudaStream_t stream, const Buffers& b, const std::vector<float>& s, Recorder& rec) {
  BSSN_LAUNCH(graphCopyKernel, blocksFor(b.n), kBlock, 0, stream, b.out, b.in, b.n);
  rec.status("launch copy", cudaGetLastError());
  BSSN_LAUNCH(graphAffineKernel, blocksFor(b.n), kBlock, 0, stream, b.out, s.at(0), s.at(1), b.n);
  rec.status("launch affine 1", cudaGetLastError());
  BSSN_LAUNCH(graphAffineKernel, blocksFor(b.n), kBlock, 0, stream, b.out, s.at(2), s.at(3), b.n);
  rec.status("launch affine 2", cudaGetLastError());
  BSSN_LAUNCH(graphAccumulateKernel, blocksFor(b.n), kBlock, 0, stream, b.acc, b.out, b.count, b.n);
  rec.status("launch accumulate", cudaGetLastError());
}

// Captures launchSequence on `stream` (ThreadLocal) and instantiates it; the graph itself is destroyed at once.
cudaGraphExec_t captureSequence(cudaStream_t stream, const Buffers& b, const std::vector<float>& s, Recorder& rec) {
  check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  launchSequence(stream, b, s, rec);
  cudaGraph_t graph = nullptr;
  check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
  check(cudaGraphDestroy(graph), "cudaGraphDestroy");
  return exec;
}

std::vector<double> statsNow() {
  BssnEmuStats s{};
  bssnEmuStats(&s);
  return {double(s.launches), double(s.graphLaunches), double(s.blocks), double(s.threads)};
}
std::vector<double> minus(std::vector<double> a, const std::vector<double>& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] -= b[i];
  return a;
}

}  // namespace

Report graphReplay(const std::vector<float>& input, const std::vector<float>& scalars, int replays, int mode) {
  Recorder rec;
  Buffers b(input);
  cudaStream_t s = newStream();
  const std::vector<double> before = statsNow();
  rec.status("begin", cudaStreamBeginCapture(s, cudaStreamCaptureMode(mode)));
  rec.value("captureStatus", captureStatus(s));
  {
    // Destroyed right after the capture: the graph must hold its own copies of the arguments.
    std::vector<float> bound(scalars);
    launchSequence(s, b, bound, rec);
    std::fill(bound.begin(), bound.end(), std::nanf(""));
  }
  cudaGraph_t graph = nullptr;
  rec.status("end", cudaStreamEndCapture(s, &graph));
  rec.value("captureStatusAfterEnd", captureStatus(s));
  const std::vector<double> captured = statsNow();
  rec.value("statsDuringCapture", minus(captured, before));
  rec.status("syncAfterCapture", cudaStreamSynchronize(s));
  b.read(rec, "AfterCapture");
  cudaGraphExec_t exec = nullptr;
  rec.status("instantiate", cudaGraphInstantiate(&exec, graph, 0));
  rec.status("graphDestroy", cudaGraphDestroy(graph));  // the executable is a copy
  std::vector<double> counts;
  for (int r = 0; r < replays; ++r) {
    rec.status("graphLaunch " + std::to_string(r), cudaGraphLaunch(exec, s));
    rec.status("sync " + std::to_string(r), cudaStreamSynchronize(s));
    counts.push_back(download(b.count, 1)[0]);
  }
  rec.value("countAfterEach", counts);
  b.read(rec);
  rec.status("execDestroy", cudaGraphExecDestroy(exec));
  rec.value("statsDuringReplays", minus(statsNow(), captured));
  b.release();
  check(cudaStreamDestroy(s), "cudaStreamDestroy");
  return rec.report;
}

Report captureError(const std::string& op, int mode, const std::vector<float>& input) {
  Recorder rec;
  const size_t n = input.size(), bytes = n * sizeof(float);
  // The legacy stream conflicts with captures of blocking streams only.
  const bool blocking = op == "legacyLaunch" || op == "legacyIsCapturing";
  cudaStream_t s = newStream(blocking ? cudaStreamDefault : cudaStreamNonBlocking), other = newStream();
  float* buf = deviceArray<float>(n);
  check(cudaMemcpy(buf, input.data(), bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
  float* spare = deviceArray<float>(n);
  void* pinned = nullptr;
  check(cudaHostAlloc(&pinned, bytes, cudaHostAllocDefault), "cudaHostAlloc");
  cudaEvent_t event = nullptr;
  check(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  check(cudaEventRecord(event, other), "cudaEventRecord");
  check(cudaEventSynchronize(event), "cudaEventSynchronize");
  // The event completes inside the stream's work item, a moment before the stream counts it done: without this, a
  // query of `other` (streamQueryOther) could still answer cudaErrorNotReady (seen once under AddressSanitizer).
  check(cudaStreamSynchronize(other), "cudaStreamSynchronize");
  // An executable to launch into the capture (made on another stream before it begins).
  check(cudaStreamBeginCapture(other, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  BSSN_LAUNCH(graphAffineKernel, blocksFor(int(n)), kBlock, 0, other, spare, 1.0f, 0.0f, int(n));
  cudaGraph_t graph = nullptr;
  check(cudaStreamEndCapture(other, &graph), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
  check(cudaGraphDestroy(graph), "cudaGraphDestroy");
  std::vector<float> host(n);
  void* extra = nullptr;      // device memory the op allocated
  void* extraHost = nullptr;  // pinned memory the op allocated
  int dropped = 0;

  rec.status("begin", cudaStreamBeginCapture(s, cudaStreamCaptureMode(mode)));
  BSSN_LAUNCH(graphAffineKernel, blocksFor(int(n)), kBlock, 0, s, buf, 3.0f, 5.0f, int(n));
  rec.status("launchBefore", cudaGetLastError());
  const int grid = int(blocksFor(int(n)));
  const cudaError_t st = [&]() -> cudaError_t {
    // Work on the capturing stream that is not a kernel.
    if (op == "memcpyAsync") return cudaMemcpyAsync(buf, pinned, bytes, cudaMemcpyHostToDevice, s);
    if (op == "memcpyAsyncPageableSource") return cudaMemcpyAsync(buf, host.data(), bytes, cudaMemcpyHostToDevice, s);
    if (op == "memsetAsync") return cudaMemsetAsync(buf, 0, bytes, s);
    if (op == "eventRecord") return cudaEventRecord(event, s);
    if (op == "streamWaitEvent") return cudaStreamWaitEvent(s, event, 0);
    if (op == "enqueue") return bssnEmuEnqueue(s, [](void*) {}, [](void* p) { ++*static_cast<int*>(p); }, &dropped);
    if (op == "mallocAsync") return cudaMallocAsync(&extra, 256, s);
    if (op == "freeAsync") return cudaFreeAsync(spare, s);
    if (op == "graphLaunch") return cudaGraphLaunch(exec, s);
    if (op == "streamSynchronize") return cudaStreamSynchronize(s);
    if (op == "streamQuery") return cudaStreamQuery(s);
    if (op == "invalidLaunch") {
      BSSN_LAUNCH(graphAffineKernel, 1, 2048, 0, s, buf, 1.0f, 1.0f, int(n));
      return cudaPeekAtLastError();
    }
    // Unsafe calls of the capturing thread.
    if (op == "malloc") return cudaMalloc(&extra, 256);
    if (op == "free") return cudaFree(spare);
    if (op == "hostAlloc") return cudaHostAlloc(&extraHost, 256, cudaHostAllocDefault);
    if (op == "freeHost") return cudaFreeHost(pinned);
    if (op == "memcpy") return cudaMemcpy(host.data(), spare, bytes, cudaMemcpyDeviceToHost);
    if (op == "memcpyAsyncPageable") return cudaMemcpyAsync(host.data(), spare, bytes, cudaMemcpyDeviceToHost, other);
    if (op == "deviceSynchronize") return cudaDeviceSynchronize();
    if (op == "streamSynchronizeOther") return cudaStreamSynchronize(other);
    // The legacy stream while a blocking stream captures.
    if (op == "legacyLaunch") {
      BSSN_LAUNCH(graphAffineKernel, grid, kBlock, 0, nullptr, spare, 1.0f, 0.0f, int(n));
      return cudaPeekAtLastError();
    }
    if (op == "legacyIsCapturing") {
      cudaStreamCaptureStatus status;
      return cudaStreamIsCapturing(cudaStreamLegacy, &status);
    }
    // Allowed: asynchronous work on other streams, event waits, queries of other streams.
    if (op == "otherStreamWork") {
      BSSN_LAUNCH(graphAffineKernel, grid, kBlock, 0, other, spare, 1.0f, 0.0f, int(n));
      if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
      if (const cudaError_t e = cudaMemcpyAsync(spare, pinned, bytes, cudaMemcpyHostToDevice, other); e != cudaSuccess) return e;
      if (const cudaError_t e = cudaMallocAsync(&extra, 256, other); e != cudaSuccess) return e;
      return cudaGraphLaunch(exec, other);
    }
    if (op == "eventQuery") return cudaEventQuery(event);
    if (op == "eventSynchronize") return cudaEventSynchronize(event);
    if (op == "streamQueryOther") return cudaStreamQuery(other);  // idle: its work was waited for
    throw std::invalid_argument("unknown capture probe " + op);
  }();
  rec.status("op", st);
  rec.status("opLastError", cudaGetLastError());
  rec.value("captureStatus", captureStatus(s));
  BSSN_LAUNCH(graphAffineKernel, grid, kBlock, 0, s, buf, 3.0f, 5.0f, int(n));
  rec.status("launchAfter", cudaGetLastError());
  graph = reinterpret_cast<cudaGraph_t>(&rec);  // EndCapture must overwrite it, with null if the capture failed
  rec.status("end", cudaStreamEndCapture(s, &graph));
  rec.value("graphNull", graph == nullptr);
  if (graph && graph != reinterpret_cast<cudaGraph_t>(&rec)) check(cudaGraphDestroy(graph), "cudaGraphDestroy");
  rec.value("captureStatusAfterEnd", captureStatus(s));
  rec.status("lastErrorAfterEnd", cudaGetLastError());
  rec.status("lastErrorCleared", cudaGetLastError());  // capture errors are not sticky
  // Plain work on the same stream works again, and the captured launches never ran.
  BSSN_LAUNCH(graphAffineKernel, grid, kBlock, 0, s, buf, 2.0f, 1.0f, int(n));
  rec.status("plainLaunch", cudaGetLastError());
  rec.status("plainSync", cudaStreamSynchronize(s));
  rec.value("plain", download(buf, n));
  rec.value("dropped", dropped);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  check(cudaGraphExecDestroy(exec), "cudaGraphExecDestroy");
  if (extra) check(cudaFree(extra), "cudaFree");
  if (extraHost) check(cudaFreeHost(extraHost), "cudaFreeHost");
  if ((op != "free" && op != "freeAsync") || st != cudaSuccess) check(cudaFree(spare), "cudaFree");
  if (op != "freeHost" || st != cudaSuccess) check(cudaFreeHost(pinned), "cudaFreeHost");
  check(cudaFree(buf), "cudaFree");
  check(cudaEventDestroy(event), "cudaEventDestroy");
  check(cudaStreamDestroy(s), "cudaStreamDestroy");
  check(cudaStreamDestroy(other), "cudaStreamDestroy");
  return rec.report;
}

Report captureMisuse() {
  Recorder rec;
  cudaStream_t s = newStream();
  float* buf = deviceArray<float>(kBlock);
  check(cudaMemsetAsync(buf, 0, kBlock * sizeof(float), s), "cudaMemsetAsync");
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr, other = nullptr;
  rec.status("beginNull", cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal));
  rec.status("beginLegacy", cudaStreamBeginCapture(cudaStreamLegacy, cudaStreamCaptureModeGlobal));
  rec.status("beginBadMode", cudaStreamBeginCapture(s, cudaStreamCaptureMode(3)));
  rec.status("endNotCapturing", cudaStreamEndCapture(s, &graph));
  rec.status("endLegacy", cudaStreamEndCapture(nullptr, &graph));
  rec.status("begin", cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  rec.status("beginTwice", cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  rec.value("captureStatusAfterBeginTwice", captureStatus(s));
  rec.status("isCapturingNullStatus", cudaStreamIsCapturing(s, nullptr));
  cudaGetLastError();  // the refusals above stay the last error until read: read before a launch is checked
  BSSN_LAUNCH(graphAffineKernel, 1, kBlock, 0, s, buf, 2.0f, 1.0f, kBlock);
  rec.status("launch", cudaGetLastError());
  rec.status("endNullGraph", cudaStreamEndCapture(s, nullptr));
  rec.value("captureStatusAfterEndNullGraph", captureStatus(s));
  rec.status("end", cudaStreamEndCapture(s, &graph));
  rec.status("instantiateFlags", cudaGraphInstantiate(&exec, graph, 1));
  rec.status("instantiateNullGraph", cudaGraphInstantiate(&exec, nullptr, 0));
  rec.status("instantiateNullExec", cudaGraphInstantiate(nullptr, graph, 0));
  rec.status("instantiate", cudaGraphInstantiate(&exec, graph, 0));
  rec.status("graphDestroy", cudaGraphDestroy(graph));
  rec.status("graphDestroyAgain", cudaGraphDestroy(graph));
  rec.status("instantiateDestroyedGraph", cudaGraphInstantiate(&other, graph, 0));
  rec.status("graphDestroyNull", cudaGraphDestroy(nullptr));
  rec.status("graphLaunchNull", cudaGraphLaunch(nullptr, s));
  rec.status("graphLaunch", cudaGraphLaunch(exec, s));
  rec.status("sync", cudaStreamSynchronize(s));
  rec.value("out", download(buf, kBlock));  // the node ran once: 0 * 2 + 1
  rec.status("execDestroy", cudaGraphExecDestroy(exec));
  rec.status("execDestroyAgain", cudaGraphExecDestroy(exec));
  rec.status("graphLaunchDestroyed", cudaGraphLaunch(exec, s));
  rec.status("execDestroyNull", cudaGraphExecDestroy(nullptr));
  // An empty capture is an empty graph, and launching it runs nothing.
  rec.status("beginEmpty", cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
  rec.status("endEmpty", cudaStreamEndCapture(s, &graph));
  rec.status("instantiateEmpty", cudaGraphInstantiate(&exec, graph, 0));
  rec.status("graphLaunchEmpty", cudaGraphLaunch(exec, s));
  rec.status("syncEmpty", cudaStreamSynchronize(s));
  check(cudaGraphExecDestroy(exec), "cudaGraphExecDestroy");
  check(cudaGraphDestroy(graph), "cudaGraphDestroy");
  rec.status("exchangeModeNull", cudaThreadExchangeStreamCaptureMode(nullptr));
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  rec.status("exchangeMode", cudaThreadExchangeStreamCaptureMode(&mode));
  rec.value("previousMode", mode);
  rec.status("exchangeModeBack", cudaThreadExchangeStreamCaptureMode(&mode));
  rec.value("restoredFrom", mode);
  cudaStreamCaptureStatus legacy = cudaStreamCaptureStatusActive;
  rec.status("isCapturingLegacy", cudaStreamIsCapturing(cudaStreamLegacy, &legacy));
  rec.value("legacyStatus", legacy);
  rec.status("lastError", cudaGetLastError());
  rec.status("lastErrorCleared", cudaGetLastError());
  check(cudaFree(buf), "cudaFree");
  check(cudaStreamDestroy(s), "cudaStreamDestroy");
  return rec.report;
}

Report endFromOtherThread(int mode) {
  Recorder rec;
  cudaStream_t s = newStream();
  float* buf = deviceArray<float>(kBlock);
  rec.status("begin", cudaStreamBeginCapture(s, cudaStreamCaptureMode(mode)));
  BSSN_LAUNCH(graphAffineKernel, 1, kBlock, 0, s, buf, 1.0f, 0.0f, kBlock);
  rec.status("launch", cudaGetLastError());
  cudaGraph_t graph = nullptr;
  std::thread([&] {
    rec.status("endOtherThread", cudaStreamEndCapture(s, &graph));
    rec.status("lastErrorOtherThread", cudaGetLastError());
  }).join();
  rec.value("captureStatusAfterOther", captureStatus(s));
  rec.status("endOwnThread", cudaStreamEndCapture(s, &graph));
  rec.status("lastError", cudaGetLastError());  // the other thread's error is that thread's last error, not ours
  rec.value("graphNull", graph == nullptr);
  if (graph) check(cudaGraphDestroy(graph), "cudaGraphDestroy");
  check(cudaFree(buf), "cudaFree");
  check(cudaStreamDestroy(s), "cudaStreamDestroy");
  return rec.report;
}

Report otherThreadDuringCapture(int mode, int otherMode) {
  Recorder rec;
  cudaStream_t s = newStream(), other = newStream();
  float* buf = deviceArray<float>(kBlock);
  float* spare = deviceArray<float>(kBlock);
  cudaEvent_t event = nullptr;
  check(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  rec.status("begin", cudaStreamBeginCapture(s, cudaStreamCaptureMode(mode)));
  BSSN_LAUNCH(graphAffineKernel, 1, kBlock, 0, s, buf, 1.0f, 0.0f, kBlock);
  rec.status("launch", cudaGetLastError());
  std::thread([&] {
    cudaStreamCaptureMode m = cudaStreamCaptureMode(otherMode);
    rec.status("exchangeMode", cudaThreadExchangeStreamCaptureMode(&m));
    void* p = nullptr;
    rec.status("malloc", cudaMalloc(&p, 256));
    rec.status("free", cudaFree(p));
    cudaGetLastError();  // the refusals above stay the last error until read: read before a launch is checked
    BSSN_LAUNCH(graphAffineKernel, 1, kBlock, 0, other, spare, 1.0f, 0.0f, kBlock);
    rec.status("launchOther", cudaGetLastError());
    rec.status("eventRecord", cudaEventRecord(event, other));
    rec.status("eventSynchronize", cudaEventSynchronize(event));
    rec.status("eventQuery", cudaEventQuery(event));
    rec.status("streamSynchronize", cudaStreamSynchronize(other));
    rec.status("deviceSynchronize", cudaDeviceSynchronize());
  }).join();
  rec.value("captureStatus", captureStatus(s));
  cudaGraph_t graph = nullptr;
  rec.status("end", cudaStreamEndCapture(s, &graph));
  if (graph) check(cudaGraphDestroy(graph), "cudaGraphDestroy");
  cudaGetLastError();
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  check(cudaEventDestroy(event), "cudaEventDestroy");
  for (float* p : {buf, spare}) check(cudaFree(p), "cudaFree");
  for (cudaStream_t st : {s, other}) check(cudaStreamDestroy(st), "cudaStreamDestroy");
  return rec.report;
}

Report captureWhileOthersWait(const std::vector<float>& input, int rounds, int mode) {
  Recorder rec;
  Buffers b(input);
  float* spare = deviceArray<float>(input.size());
  cudaStream_t s = newStream(), other = newStream();
  std::atomic<bool> stop{false};
  std::atomic<int> otherErrors{0}, otherRounds{0};
  // A fence-waiting thread: records events on its own stream and waits for them, as bssn's fence waits do.
  std::thread waiter([&] {
    cudaEvent_t event = nullptr;
    if (cudaEventCreateWithFlags(&event, cudaEventDisableTiming) != cudaSuccess) ++otherErrors;
    while (!stop.load()) {
      BSSN_LAUNCH(graphAffineKernel, blocksFor(b.n), kBlock, 0, other, spare, 1.0f, 0.0f, b.n);
      if (cudaGetLastError() != cudaSuccess) ++otherErrors;
      if (cudaEventRecord(event, other) != cudaSuccess) ++otherErrors;
      cudaError_t q;
      while ((q = cudaEventQuery(event)) == cudaErrorNotReady) std::this_thread::yield();
      if (q != cudaSuccess || cudaEventSynchronize(event) != cudaSuccess) ++otherErrors;
      ++otherRounds;
    }
    cudaEventDestroy(event);
  });
  while (otherRounds.load() == 0) std::this_thread::yield();
  int mainErrors = 0;
  const std::vector<float> scalars{1.5f, -0.25f, 0.5f, 2.0f};
  for (int r = 0; r < rounds; ++r) {
    Recorder launches;
    mainErrors += cudaStreamBeginCapture(s, cudaStreamCaptureMode(mode)) != cudaSuccess;
    launchSequence(s, b, scalars, launches);
    cudaGraph_t graph = nullptr;
    mainErrors += cudaStreamEndCapture(s, &graph) != cudaSuccess;
    cudaGraphExec_t exec = nullptr;
    mainErrors += cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess;
    mainErrors += cudaGraphDestroy(graph) != cudaSuccess;
    mainErrors += cudaGraphLaunch(exec, s) != cudaSuccess;
    mainErrors += cudaGraphExecDestroy(exec) != cudaSuccess;  // while the replay may still run
    for (const auto& [what, status] : launches.report.statuses) mainErrors += status != "cudaSuccess";
  }
  rec.status("sync", cudaStreamSynchronize(s));
  stop.store(true);
  waiter.join();
  rec.value("mainErrors", mainErrors);
  rec.value("otherErrors", otherErrors.load());
  rec.value("otherRounds", otherRounds.load());
  b.read(rec);
  check(cudaFree(spare), "cudaFree");
  b.release();
  for (cudaStream_t st : {s, other}) check(cudaStreamDestroy(st), "cudaStreamDestroy");
  return rec.report;
}

Report graphLifetime(const std::vector<float>& input, const std::vector<float>& scalars) {
  Recorder rec;
  Buffers b(input);
  cudaStream_t a = newStream(), s = newStream();
  float* gateOut = deviceArray<float>(1);
  static int gate;
  __atomic_store_n(&gate, 0, __ATOMIC_RELEASE);
  BSSN_LAUNCH(gateKernel, 1, 1, 0, a, &gate, gateOut);
  cudaGraphExec_t exec = captureSequence(s, b, scalars, rec);
  rec.status("graphLaunchGated", cudaGraphLaunch(exec, a));
  rec.status("graphLaunchOther", cudaGraphLaunch(exec, s));  // runs after the gated replay: one at a time, in order
  rec.status("execDestroy", cudaGraphExecDestroy(exec));     // both replays still to run
  cudaEvent_t done = nullptr;
  check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  rec.status("eventRecord", cudaEventRecord(done, s));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  rec.status("queryWhileGated", cudaEventQuery(done));
  rec.value("countWhileGated", download(b.count, 1));
  __atomic_store_n(&gate, 1, __ATOMIC_RELEASE);
  rec.status("syncGated", cudaStreamSynchronize(a));
  rec.status("syncOther", cudaStreamSynchronize(s));
  b.read(rec);
  check(cudaEventDestroy(done), "cudaEventDestroy");
  check(cudaFree(gateOut), "cudaFree");
  b.release();
  for (cudaStream_t st : {a, s}) check(cudaStreamDestroy(st), "cudaStreamDestroy");
  return rec.report;
}

Report graphFault(const std::vector<float>& input, const std::vector<float>& scalars, int replays, int failAt) {
  Recorder rec;
  Buffers b(input);
  cudaStream_t s = newStream();
  cudaGraphExec_t exec = captureSequence(s, b, scalars, rec);
  bssnEmuFailLaunch(failAt);
  for (int r = 0; r < replays; ++r) rec.status("graphLaunch " + std::to_string(r), cudaGraphLaunch(exec, s));
  const cudaError_t st = cudaStreamSynchronize(s);
  rec.message("sync", std::string(cudaGetErrorName(st)) + ": " + cudaGetErrorString(st));
  rec.status("graphLaunchAfterFault", cudaGraphLaunch(exec, s));
  // The context is dead, so no copy works any more: the emulated device memory is read directly.
  const auto direct = [](const auto* p, size_t n) { return std::vector<double>(p, p + n); };
  rec.value("out", direct(b.out, size_t(b.n)));
  rec.value("acc", direct(b.acc, size_t(b.n)));
  rec.value("count", direct(b.count, 1));
  return rec.report;  // nothing can be freed after the fault: the process ends
}

}  // namespace bssn::emu::probes

// ---- counting (README.md, "Counting what a GPU would pay"): planted kernels whose global traffic is known

namespace bssn::emu::probes {

namespace {

__global__ void costCopyKernel(float* out, const float* in, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = in[i];
}

// Lane i reads in[8 i]: every lane of a warp in a sector of its own.
__global__ void costStridedKernel(float* out, const float* in, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = in[size_t(i) * 8];
}

// Reads its input twice (forwards, then mirrored), so twice the sectors of a copy and the same distinct ones.
__global__ void costReadTwiceKernel(float* out, const float* in, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = 2.0f * in[i] + in[n - 1 - i];
}

__global__ void costCopy4Kernel(float4* out, const float4* in, int n4) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n4) out[i] = in[i];
}

// Reverses a tile through shared memory and keeps the result there: no global access at all.
__global__ void costSharedOnlyKernel(int n) {
  BSSN_SHARED(float, tile, 256);
  BSSN_SHARED(float, result, 256);
  const int t = int(threadIdx.x);
  tile[t] = float(t * n);
  __syncthreads();
  result[t] = tile[blockDim.x - 1 - t];
}

// One thread walks the whole input: n dependent loads and one store by a single thread.
__global__ void costSerialSumKernel(float* out, const float* in, int n) {
  if (threadIdx.x != 0) return;
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += in[i];
  out[0] = float(sum);
}

}  // namespace

std::vector<double> costKernel(const std::string& which, const std::vector<float>& input) {
  const int n = int(input.size());
  size_t outputs = size_t(n);
  if (which == "strided") outputs = size_t(n) / 8;
  else if (which == "serialSum") outputs = 1;
  else if (which == "sharedOnly") outputs = 0;
  else if (which != "copy" && which != "readTwice" && which != "copy4") throw std::invalid_argument("unknown cost probe " + which);
  if (which == "copy4" && n % 4) throw std::invalid_argument("copy4 needs a multiple of 4 values");
  float* in = deviceArray<float>(size_t(n));
  float* out = deviceArray<float>(outputs ? outputs : 1);  // fresh device memory holds NaN bytes: a missed write shows
  check(cudaMemcpy(in, input.data(), size_t(n) * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  const int threads = 256, m = int(outputs ? outputs : 1);
  const unsigned blocks = unsigned((m + threads - 1) / threads);
  if (which == "copy") BSSN_LAUNCH(costCopyKernel, blocks, threads, 0, nullptr, out, in, n);
  if (which == "strided") BSSN_LAUNCH(costStridedKernel, blocks, threads, 0, nullptr, out, in, m);
  if (which == "readTwice") BSSN_LAUNCH(costReadTwiceKernel, blocks, threads, 0, nullptr, out, in, n);
  if (which == "copy4")
    BSSN_LAUNCH(costCopy4Kernel, unsigned((n / 4 + threads - 1) / threads), threads, 0, nullptr, reinterpret_cast<float4*>(out),
                reinterpret_cast<const float4*>(in), n / 4);
  if (which == "sharedOnly") BSSN_LAUNCH(costSharedOnlyKernel, 4u, threads, 0, nullptr, n);
  if (which == "serialSum") BSSN_LAUNCH(costSerialSumKernel, 1u, 64, 0, nullptr, out, in, n);
  check(cudaGetLastError(), "launch");
  std::vector<float> result = outputs ? download(out, outputs) : std::vector<float>();
  check(cudaFree(in), "cudaFree");
  check(cudaFree(out), "cudaFree");
  return std::vector<double>(result.begin(), result.end());
}

void costHostCalls(size_t bytes) {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  void *pinned = nullptr, *device = nullptr;
  check(cudaHostAlloc(&pinned, bytes, cudaHostAllocDefault), "cudaHostAlloc");
  check(cudaMallocAsync(&device, bytes, s), "cudaMallocAsync");
  std::memset(pinned, 1, bytes);
  check(cudaMemcpyAsync(device, pinned, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(pinned, device, bytes, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  cudaEvent_t e = nullptr;
  check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  check(cudaEventRecord(e, s), "cudaEventRecord");
  check(cudaEventSynchronize(e), "cudaEventSynchronize");
  check(cudaEventDestroy(e), "cudaEventDestroy");
  check(cudaFreeAsync(device, s), "cudaFreeAsync");
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  check(cudaFreeHost(pinned), "cudaFreeHost");
  check(cudaStreamDestroy(s), "cudaStreamDestroy");
}

}  // namespace bssn::emu::probes
