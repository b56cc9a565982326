// Probes of cooperative launches and the grid barrier (native/emulator/README.md, "Cooperative launches").
#include <stdexcept>
#include <string>
#include <vector>

#include "bssn_emulator.h"
#include "cuda/common.cuh"
#include "emulator/probes.h"

namespace bssn::emu::probes {

namespace {

void check(cudaError_t st, const char* what) {
  if (st != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(st));
}

// Opt-in dynamic shared memory of the exchange kernel: more than the 48 KiB a block has without it.
constexpr size_t kExchangeShared = 100000;
constexpr int kKeptAt = 20000;  // a float index past 48 KiB

// Each round every thread publishes its value and takes the one of a thread `round + 1` blocks on (double-buffered
// in `data`): right only if every block's write happened before every read, i.e. with the grid barrier between.
// The thread's starting value is kept in the block's shared memory, past 48 KiB, across all the barriers.
__global__ void exchangeKernel(float* data, float* out, int rounds, int barrier) {
  BSSN_DYNAMIC_SHARED(float, kept);
  const int n = int(gridDim.x * blockDim.x), id = int(blockIdx.x * blockDim.x + threadIdx.x);
  kept[kKeptAt + threadIdx.x] = float(id + 1);
  float value = float(id + 1);
  for (int r = 0; r < rounds; ++r) {
    float* buffer = data + (r % 2) * n;
    buffer[id] = value;
    if (barrier) cuda::gridSync();
    value = buffer[(id + int(blockDim.x) * (r + 1) + 1) % n];
  }
  __syncthreads();
  out[id] = value * 1024.0f + kept[kKeptAt + threadIdx.x];
}

// The exchange on the host.
std::vector<float> expectedExchange(int blocks, int threads, int rounds) {
  const int n = blocks * threads;
  std::vector<float> value(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) value[size_t(i)] = float(i + 1);
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < n; ++i) next[size_t(i)] = value[size_t((i + threads * (r + 1) + 1) % n)];
    value.swap(next);
  }
  for (int i = 0; i < n; ++i) value[size_t(i)] = value[size_t(i)] * 1024.0f + float(i + 1);
  return value;
}

__global__ void gridBarrierKernel(int) { cuda::gridSync(); }

// Block 2 leaves before the grid barrier: the others wait for it for ever on a GPU.
__global__ void gridMissingArrivalKernel(float* out) {
  if (blockIdx.x == 2) return;
  out[threadIdx.x] = 1.0f;
  cuda::gridSync();
}

// grid.sync() in a grid launched the ordinary way (undefined on a GPU).
__global__ void gridSyncNotCooperativeKernel(float* out) {
  out[threadIdx.x] = 1.0f;
  cuda::gridSync();
}

// Warp 0 waits at __syncthreads, warp 1 at the grid barrier: neither can complete.
__global__ void gridSyncBesideBarrierKernel(float* out) {
  if (threadIdx.x < 32) __syncthreads();
  else cuda::gridSync();
  out[threadIdx.x] = 1.0f;
}

template <typename T>
T* deviceArray(size_t n) {
  void* p = nullptr;
  check(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
  return static_cast<T*>(p);
}

// Threads of the exchange whose result is wrong.
double wrongExchanges(const float* out, int blocks, int threads, int rounds) {
  std::vector<float> got(size_t(blocks * threads));
  check(cudaMemcpy(got.data(), out, got.size() * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
  const std::vector<float> want = expectedExchange(blocks, threads, rounds);
  double wrong = 0;
  for (size_t i = 0; i < got.size(); ++i) wrong += got[i] == want[i] ? 0 : 1;
  return wrong;
}

}  // namespace

Report cooperative() {
  Report report;
  const auto status = [&](const std::string& what, cudaError_t st) { report.statuses.emplace_back(what, cudaGetErrorName(st)); };
  const auto value = [&](const std::string& what, double v) { report.values.emplace_back(what, std::vector<double>{v}); };

  const std::pair<const char*, cudaDeviceAttr> attributes[] = {
      {"multiProcessorCount", cudaDevAttrMultiProcessorCount},
      {"cooperativeLaunch", cudaDevAttrCooperativeLaunch},
      {"maxSharedMemoryPerMultiprocessor", cudaDevAttrMaxSharedMemoryPerMultiprocessor},
      {"maxSharedMemoryPerBlockOptin", cudaDevAttrMaxSharedMemoryPerBlockOptin},
      {"reservedSharedMemoryPerBlock", cudaDevAttrReservedSharedMemoryPerBlock},
      {"maxThreadsPerMultiProcessor", cudaDevAttrMaxThreadsPerMultiProcessor},
      {"maxBlocksPerMultiprocessor", cudaDevAttrMaxBlocksPerMultiprocessor}};
  for (const auto& [name, attribute] : attributes) {
    int v = -1;
    check(cudaDeviceGetAttribute(&v, attribute, 0), name);
    value(name, v);
  }

  constexpr int blocks = 8, threads = 64, rounds = 5;
  float* data = deviceArray<float>(2 * blocks * threads);
  float* out = deviceArray<float>(blocks * threads);

  status("set 232449 bytes", cudaFuncSetAttribute(gridBarrierKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 232449));
  // Ordinary launches past 48 KiB: refused before the opt-in (48 KiB, the default: the probe may run again),
  // allowed after.
  check(cudaFuncSetAttribute(exchangeKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 48 << 10), "cudaFuncSetAttribute");
  BSSN_LAUNCH(exchangeKernel, 1, 32, kExchangeShared, nullptr, data, out, 0, 0);
  status("100000 bytes before the opt-in", cudaGetLastError());
  status("opt in 100000 bytes", cudaFuncSetAttribute(exchangeKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kExchangeShared)));
  status("opt in 232448 bytes", cudaFuncSetAttribute(gridBarrierKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 232448));

  // Occupancy: threads in warps of 2048 per SM, at most 32 blocks, shared memory with 1 KiB reserved per block.
  const struct {
    const char* what;
    int threads;
    size_t shared;
  } occupancy[] = {{"64 threads", 64, 0},           {"256 threads", 256, 0},          {"1024 threads", 1024, 0},
                   {"32 threads, 115712 B", 32, 115712}, {"32 threads, 115713 B", 32, 115713}, {"32 threads, 232448 B", 32, 232448}};
  for (const auto& o : occupancy) {
    int blocks = -1;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, gridBarrierKernel, o.threads, o.shared), "cudaOccupancy");
    value(std::string("occupancy ") + o.what, blocks);
  }
  int beyond = -1;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&beyond, exchangeKernel, 32, kExchangeShared + 1), "cudaOccupancy");
  value("occupancy beyond the opt-in", beyond);

  // What a cooperative launch refuses, and the largest grids it takes (132 SMs x blocks per SM).
  status("cooperative 133 blocks of 232448 B",
         BSSN_LAUNCH_COOPERATIVE(gridBarrierKernel, 133, 32, size_t(232448), nullptr, 0));
  status("cudaGetLastError after it", cudaGetLastError());
  status("cooperative 265 blocks of 1024 threads", BSSN_LAUNCH_COOPERATIVE(gridBarrierKernel, 265, 1024, 0, nullptr, 0));
  status("cooperative 1025 threads", BSSN_LAUNCH_COOPERATIVE(gridBarrierKernel, 1, 1025, 0, nullptr, 0));
  cudaGetLastError();
  status("cooperative 132 blocks of 232448 B", BSSN_LAUNCH_COOPERATIVE(gridBarrierKernel, 132, 32, size_t(232448), nullptr, 0));
  status("cooperative 264 blocks of 115712 B", BSSN_LAUNCH_COOPERATIVE(gridBarrierKernel, 264, 32, size_t(115712), nullptr, 0));
  status("synchronize", cudaDeviceSynchronize());

  // Ordering across the barrier: the launch helper, cudaLaunchCooperativeKernel, a captured graph's replays, and
  // the same kernel without its barrier.
  status("exchange (helper)",
         BSSN_LAUNCH_COOPERATIVE(exchangeKernel, blocks, threads, kExchangeShared, nullptr, data, out, rounds, 1));
  status("exchange synchronize", cudaDeviceSynchronize());
  value("wrong (helper)", wrongExchanges(out, blocks, threads, rounds));

  check(cudaMemsetAsync(out, 0xFF, blocks * threads * sizeof(float), nullptr), "cudaMemsetAsync");
  int roundsArg = rounds, barrierArg = 1;
  void* args[] = {&data, &out, &roundsArg, &barrierArg};
  status("exchange (cudaLaunchCooperativeKernel)",
         cudaLaunchCooperativeKernel(exchangeKernel, dim3(blocks), dim3(threads), args, kExchangeShared, nullptr));
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  value("wrong (cudaLaunchCooperativeKernel)", wrongExchanges(out, blocks, threads, rounds));

  cudaStream_t stream = nullptr;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "cudaStreamBeginCapture");
  status("exchange captured", BSSN_LAUNCH_COOPERATIVE(exchangeKernel, blocks, threads, kExchangeShared, stream, data, out, rounds, 1));
  status("too large captured", BSSN_LAUNCH_COOPERATIVE(gridBarrierKernel, 133, 32, size_t(232448), stream, 0));
  cudaGraph_t graph = nullptr;
  status("end capture after a refused launch", cudaStreamEndCapture(stream, &graph));
  cudaGetLastError();  // the refusals are launch errors, left for cudaGetLastError: cleared, as a caller would
  check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "cudaStreamBeginCapture");
  check(BSSN_LAUNCH_COOPERATIVE(exchangeKernel, blocks, threads, kExchangeShared, stream, data, out, rounds, 1), "capture");
  check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
  for (int replay = 0; replay < 2; ++replay) {
    check(cudaMemsetAsync(out, 0xFF, blocks * threads * sizeof(float), stream), "cudaMemsetAsync");
    check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    value("wrong (graph replay " + std::to_string(replay) + ")", wrongExchanges(out, blocks, threads, rounds));
  }
  check(cudaGraphExecDestroy(exec), "cudaGraphExecDestroy");
  check(cudaGraphDestroy(graph), "cudaGraphDestroy");
  check(cudaStreamDestroy(stream), "cudaStreamDestroy");

  float* fresh = deviceArray<float>(2 * blocks * threads);  // NaN: what a read before its write sees
  status("exchange without the barrier",
         BSSN_LAUNCH_COOPERATIVE(exchangeKernel, blocks, threads, kExchangeShared, nullptr, fresh, out, rounds, 0));
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  value("wrong (no barrier)", wrongExchanges(out, blocks, threads, rounds));
  for (void* p : {static_cast<void*>(data), static_cast<void*>(out), static_cast<void*>(fresh)}) check(cudaFree(p), "cudaFree");
  status("last error at the end", cudaGetLastError());
  return report;
}

bool launchFatalCooperative(const std::string& which, float* out) {
  if (which == "gridMissingArrival") BSSN_LAUNCH_COOPERATIVE(gridMissingArrivalKernel, 4, 64, 0, nullptr, out);
  else if (which == "gridSyncNotCooperative") BSSN_LAUNCH(gridSyncNotCooperativeKernel, 2, 64, 0, nullptr, out);
  else if (which == "gridSyncBesideBarrier") BSSN_LAUNCH_COOPERATIVE(gridSyncBesideBarrierKernel, 2, 64, 0, nullptr, out);
  else return false;
  return true;
}

}  // namespace bssn::emu::probes
