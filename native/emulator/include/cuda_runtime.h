// The emulated CUDA device side: kernels written for nvcc compile with g++ as ordinary C++ and run on the CPU
// under libcudart_emu (native/emulator/README.md explains the execution model). Only on the include path of the
// emulated build.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda_runtime_api.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
// Plain static shared memory: per OS thread, and an OS thread runs one block at a time, so each block has its
// own; but it is neither poisoned per block nor bounds-checked: bssn's kernels use BSSN_SHARED instead.
#define __shared__ static thread_local

struct uint3 {
  unsigned int x, y, z;
};

namespace bssn::emu {

// What a kernel thread sees; the executor points `current` at the running thread's state before resuming it.
struct ThreadState {
  uint3 thread;
  uint3 block;
  dim3 blockDims;
  dim3 gridDims;
  void* dynamicShared;  // this block's `extern __shared__` memory (poisoned when the block starts)
};
extern BSSN_EMU_API thread_local const ThreadState* current;

// A launched kernel with its arguments bound; run() executes the kernel body as the current thread.
class KernelBody {
 public:
  virtual ~KernelBody() = default;
  virtual void run() = 0;
};

}  // namespace bssn::emu

extern "C" {
// Validates the configuration as a GPU would (sets the last error and returns it when invalid), then enqueues the
// grid on `stream`. Takes ownership of `body`.
BSSN_EMU_API cudaError_t bssnEmuLaunch(const char* name, const void* entry, dim3 grid, dim3 block, size_t sharedBytes,
                                       cudaStream_t stream, bssn::emu::KernelBody* body);
// A cooperative launch (cudaLaunchCooperativeKernel): every block of the grid is resident at once, so that
// bssnEmuGridSync can hold them all. Refused with cudaErrorCooperativeLaunchTooLarge when the card could not hold
// the grid resident (multiProcessorCount times the occupancy of one SM). Returns the launch's error.
BSSN_EMU_API cudaError_t bssnEmuLaunchCooperative(const char* name, const void* entry, dim3 grid, dim3 block, size_t sharedBytes,
                                                  cudaStream_t stream, bssn::emu::KernelBody* body);
BSSN_EMU_API void bssnEmuSyncThreads(void);
// cooperative_groups::this_grid().sync(): every thread of every block of a cooperative grid must arrive.
BSSN_EMU_API void bssnEmuGridSync(void);
// The running block's shared array declared at `key` (BSSN_SHARED): the same memory for every thread of the
// block, fresh and NaN-filled for each block.
BSSN_EMU_API void* bssnEmuSharedArray(const void* key, size_t bytes, size_t align);
// Warp collectives: the lanes named in `mask` must all arrive at the same collective with the same mask.
// op: 0 shfl (arg = source lane), 1 shfl_up, 2 shfl_down, 3 shfl_xor, 4 ballot (value = predicate), 5 syncwarp.
BSSN_EMU_API uint64_t bssnEmuWarpCollective(unsigned int mask, int op, uint64_t value, int arg, int width);
}

namespace bssn::emu {

template <typename... Params>
class BoundKernel final : public KernelBody {
 public:
  template <typename... Args>
  explicit BoundKernel(void (*kernel)(Params...), Args&&... args) : kernel_(kernel), params_(std::forward<Args>(args)...) {}
  // Each thread gets its own copy of the parameters, as kernel parameters are per thread on a GPU.
  void run() override { std::apply([this](const auto&... p) { kernel_(p...); }, params_); }

 private:
  void (*kernel_)(Params...);
  std::tuple<std::decay_t<Params>...> params_;
};

// Launches `kernel` with `args` bound through `launcher` (bssnEmuLaunch or bssnEmuLaunchCooperative).
template <typename... Params, typename... Args>
cudaError_t launchWith(decltype(&bssnEmuLaunch) launcher, const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                       size_t sharedBytes, cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong number of arguments");
  return launcher(name, reinterpret_cast<const void*>(kernel), grid, block, sharedBytes, stream,
                  new BoundKernel<Params...>(kernel, std::forward<Args>(args)...));
}
template <typename... Params, typename... Args>
cudaError_t launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t sharedBytes, cudaStream_t stream,
                   Args&&... args) {
  return launchWith(&bssnEmuLaunch, name, kernel, grid, block, sharedBytes, stream, std::forward<Args>(args)...);
}
template <typename... Params, typename... Args>
cudaError_t launchCooperative(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t sharedBytes, cudaStream_t stream,
                              Args&&... args) {
  return launchWith(&bssnEmuLaunchCooperative, name, kernel, grid, block, sharedBytes, stream, std::forward<Args>(args)...);
}

template <typename... Params, size_t... I>
cudaError_t launchCooperativeFromPointers(void (*kernel)(Params...), dim3 grid, dim3 block, void** args, size_t sharedBytes,
                                          cudaStream_t stream, std::index_sequence<I...>) {
  return launchCooperative("(cudaLaunchCooperativeKernel)", kernel, grid, block, sharedBytes, stream,
                           *static_cast<std::decay_t<Params>*>(args[I])...);
}

template <typename T>
inline uint64_t toBits(T value) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp shuffles move at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  return bits;
}
template <typename T>
inline T fromBits(uint64_t bits) {
  T value;
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

template <typename T>
inline T atomicAddBits(T* address, T value) {
  using Bits = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
  Bits* word = reinterpret_cast<Bits*>(address);
  Bits expected = __atomic_load_n(word, __ATOMIC_RELAXED);
  for (;;) {
    T old;
    std::memcpy(&old, &expected, sizeof(T));
    const T sum = old + value;
    Bits desired;
    std::memcpy(&desired, &sum, sizeof(T));
    if (__atomic_compare_exchange_n(word, &expected, desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return old;
  }
}

}  // namespace bssn::emu

// The runtime's typed cudaLaunchCooperativeKernel: args[i] points at the i-th parameter, as with nvcc.
template <typename... Params>
inline cudaError_t cudaLaunchCooperativeKernel(void (*kernel)(Params...), dim3 grid, dim3 block, void** args, size_t sharedBytes,
                                               cudaStream_t stream) {
  return bssn::emu::launchCooperativeFromPointers(kernel, grid, block, args, sharedBytes, stream, std::index_sequence_for<Params...>{});
}

#define threadIdx (::bssn::emu::current->thread)
#define blockIdx (::bssn::emu::current->block)
#define blockDim (::bssn::emu::current->blockDims)
#define gridDim (::bssn::emu::current->gridDims)
constexpr int warpSize = 32;

inline void __syncthreads() { bssnEmuSyncThreads(); }
inline void __syncwarp(unsigned int mask = 0xffffffffu) { bssnEmuWarpCollective(mask, 5, 0, 0, 32); }

template <typename T>
inline T __shfl_sync(unsigned int mask, T var, int srcLane, int width = warpSize) {
  return bssn::emu::fromBits<T>(bssnEmuWarpCollective(mask, 0, bssn::emu::toBits(var), srcLane, width));
}
template <typename T>
inline T __shfl_up_sync(unsigned int mask, T var, unsigned int delta, int width = warpSize) {
  return bssn::emu::fromBits<T>(bssnEmuWarpCollective(mask, 1, bssn::emu::toBits(var), int(delta), width));
}
template <typename T>
inline T __shfl_down_sync(unsigned int mask, T var, unsigned int delta, int width = warpSize) {
  return bssn::emu::fromBits<T>(bssnEmuWarpCollective(mask, 2, bssn::emu::toBits(var), int(delta), width));
}
template <typename T>
inline T __shfl_xor_sync(unsigned int mask, T var, int laneMask, int width = warpSize) {
  return bssn::emu::fromBits<T>(bssnEmuWarpCollective(mask, 3, bssn::emu::toBits(var), laneMask, width));
}
inline unsigned int __ballot_sync(unsigned int mask, int predicate) {
  return unsigned(bssnEmuWarpCollective(mask, 4, predicate ? 1 : 0, 0, 32));
}
inline int __all_sync(unsigned int mask, int predicate) { return __ballot_sync(mask, predicate) == mask; }
inline int __any_sync(unsigned int mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }

inline float atomicAdd(float* address, float value) { return bssn::emu::atomicAddBits(address, value); }
inline double atomicAdd(double* address, double value) { return bssn::emu::atomicAddBits(address, value); }
inline int atomicAdd(int* address, int value) { return __atomic_fetch_add(address, value, __ATOMIC_RELAXED); }
inline unsigned int atomicAdd(unsigned int* address, unsigned int value) { return __atomic_fetch_add(address, value, __ATOMIC_RELAXED); }
inline unsigned long long atomicAdd(unsigned long long* address, unsigned long long value) {
  return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
// The high 32 bits of the 64-bit product (integer intrinsics).
inline unsigned int __umulhi(unsigned int a, unsigned int b) { return unsigned((uint64_t(a) * b) >> 32); }

// CUDA's vector type for 16-byte loads and stores (kernels use it where pointers are 16-byte aligned).
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

template <typename T>
inline T __ldg(const T* p) { return *p; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float x, float y) { return x / y; }
using std::exp;
using std::fmax;
using std::fmin;
using std::log;
using std::sqrt;
using std::tanh;
