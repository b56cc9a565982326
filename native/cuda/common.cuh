// Device-side helpers shared by the CUDA ops.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace bssn::cuda {

constexpr int kWarp = 32;

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

inline unsigned gridFor(int64_t items, int threads, unsigned cap = 65535u * 16u) {
  const int64_t blocks = (items + threads - 1) / threads;
  return unsigned(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace bssn::cuda
