// Device-side helpers shared by the CUDA ops.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>
#if !defined(BSSN_CUDA_EMULATED)
#include <cooperative_groups.h>
#endif

#include "cuda/fast_div.h"

namespace bssn::cuda {

constexpr int kWarp = 32;

// Every kernel launches through BSSN_LAUNCH(kernel, grid, block, sharedBytes, stream, args...): with nvcc it is
// `kernel<<<grid, block, sharedBytes, stream>>>(args...)`; in the emulated build (g++, native/emulator) the same
// source runs on the CPU under the emulator's launcher, which checks the configuration as a GPU does and names
// the kernel in its reports. Check for launch errors afterwards with cudaGetLastError, as after <<<...>>>.
template <typename... Params, typename... Args>
inline void launchKernel(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t sharedBytes, cudaStream_t stream,
                         Args&&... args) {
#if defined(BSSN_CUDA_EMULATED)
  ::bssn::emu::launch(name, kernel, grid, block, sharedBytes, stream, std::forward<Args>(args)...);
#else
  (void)name;
  kernel<<<grid, block, sharedBytes, stream>>>(std::forward<Args>(args)...);
#endif
}
#define BSSN_LAUNCH(kernel, grid, block, sharedBytes, stream, ...) \
  ::bssn::cuda::launchKernel(#kernel, kernel, grid, block, sharedBytes, stream, __VA_ARGS__)

// A cooperative launch (every block resident at once, so that gridSync() may hold them all): with nvcc
// cudaLaunchCooperativeKernel with the arguments converted to the kernel's parameter types; on the emulator its
// cooperative launcher (native/emulator/README.md). Returns the launch's error (also left for cudaGetLastError):
// cudaErrorCooperativeLaunchTooLarge when the card cannot hold the grid resident.
template <typename... Params, typename... Args>
inline cudaError_t launchCooperativeKernel(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t sharedBytes,
                                           cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong number of arguments");
#if defined(BSSN_CUDA_EMULATED)
  return ::bssn::emu::launchCooperative(name, kernel, grid, block, sharedBytes, stream, std::forward<Args>(args)...);
#else
  (void)name;
  std::tuple<std::decay_t<Params>...> values(std::forward<Args>(args)...);
  return std::apply(
      [&](auto&... v) {
        void* pointers[] = {static_cast<void*>(&v)...};
        return cudaLaunchCooperativeKernel(kernel, grid, block, pointers, sharedBytes, stream);
      },
      values);
#endif
}
#define BSSN_LAUNCH_COOPERATIVE(kernel, grid, block, sharedBytes, stream, ...) \
  ::bssn::cuda::launchCooperativeKernel(#kernel, kernel, grid, block, sharedBytes, stream, __VA_ARGS__)

// The grid-wide barrier of a cooperative launch: every thread of every block arrives before any goes on, and
// global memory written before it is visible after it. nvcc compiles cooperative_groups' grid sync without -rdc
// (CUDA 11 and later).
__device__ __forceinline__ void gridSync() {
#if defined(BSSN_CUDA_EMULATED)
  bssnEmuGridSync();
#else
  cooperative_groups::this_grid().sync();
#endif
}

// A block's `__shared__ type name[count]`, used as a `type*` (write it instead of `__shared__`). In the emulated
// build each block gets it fresh, filled with NaN bytes so a read before any write shows, and sized exactly so
// AddressSanitizer sees an overrun.
#if defined(BSSN_CUDA_EMULATED)
#define BSSN_SHARED(type, name, count)    \
  static const char name##SharedKey = 0; \
  type* name = static_cast<type*>(bssnEmuSharedArray(&name##SharedKey, sizeof(type) * size_t(count), alignof(type)))
#else
#define BSSN_SHARED(type, name, count) __shared__ type name[count]
#endif

// A kernel's `extern __shared__` memory (the launch's sharedBytes), as a `type*` named `name`.
#if defined(BSSN_CUDA_EMULATED)
#define BSSN_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::bssn::emu::current->dynamicShared)
#else
#define BSSN_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

__device__ __forceinline__ double warpSum(double x) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) x += __shfl_down_sync(0xffffffffu, x, offset);
  return x;
}

// Sum over the block; the result is valid in thread 0. `shared` holds one double per warp.
__device__ __forceinline__ double blockSum(double x, double* shared) {
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  x = warpSum(x);
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  const int warps = (blockDim.x + kWarp - 1) / kWarp;
  x = threadIdx.x < warps ? shared[threadIdx.x] : 0.0;
  if (warp == 0) x = warpSum(x);
  __syncthreads();  // `shared` may be reused right after
  return x;
}

// The largest |x| over the block, in thread 0 (`shared`: one float per warp). fmax drops NaN: a non-finite weight
// shows in the products' norms instead.
__device__ __forceinline__ float blockMaxAbs(float m, float* shared) {
  for (int off = kWarp / 2; off > 0; off /= 2) m = fmax(m, __shfl_down_sync(0xffffffffu, m, off));
  if (threadIdx.x % kWarp == 0) shared[threadIdx.x / kWarp] = m;
  __syncthreads();
  if (threadIdx.x == 0)
    for (int w = 1; w < int(blockDim.x + kWarp - 1) / kWarp; ++w) m = fmax(m, shared[w]);
  __syncthreads();  // `shared` may be reused right after
  return m;
}

// Sum over the block of f(k) for k < n, returned to every thread. `partial` holds one double per warp.
template <typename F>
__device__ double blockTotal(int64_t n, F f, double* partial, double* broadcast) {
  double acc = 0;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) acc += f(k);
  acc = blockSum(acc, partial);
  if (threadIdx.x == 0) *broadcast = acc;
  __syncthreads();
  const double total = *broadcast;
  __syncthreads();
  return total;
}

// Index of the last entry of the ascending `begins[0..n)` that is <= item (entry 0 is 0).
template <typename Get>
__device__ __forceinline__ int findSegment(int n, int64_t item, Get begin) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (begin(mid) <= item) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// n / d for n < 2^31 (fast_div.h).
__device__ __forceinline__ uint32_t fastDiv(uint32_t n, FastDiv d) { return (__umulhi(n, d.mul) + n) >> d.shift; }

// Upper bound on the blocks of a grid-stride launch. The emulated suite lowers it so that every grid-stride loop
// wraps at least once (setMaxGridBlocks is only exposed there).
inline unsigned& maxGridBlocks() {
  static unsigned cap = 65535u * 16u;
  return cap;
}

inline unsigned gridFor(int64_t items, int threads) {
  const int64_t cap = maxGridBlocks();
  const int64_t blocks = (items + threads - 1) / threads;
  return unsigned(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace bssn::cuda
