#include "emulator/probes.h"

#include <cstring>
#include <stdexcept>

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
  else throw std::invalid_argument("unknown probe " + which);
  // A fast failure may already be the context's sticky error when the launch is checked: the same report.
  const cudaError_t launch = cudaGetLastError();
  if (launch != cudaSuccess && launch != cudaErrorLaunchFailure) return std::string("launch: ") + cudaGetErrorString(launch);
  const cudaError_t st = cudaDeviceSynchronize();
  return std::string(cudaGetErrorName(st)) + ": " + cudaGetErrorString(st);
}

}  // namespace bssn::emu::probes
