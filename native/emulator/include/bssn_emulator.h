// The emulator's own API, beside the CUDA runtime it emulates: what the emulated cuBLAS and cuDNN use to run
// their work on an emulated stream, and the fault injection the tests use. Exported by libcudart_emu.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "cuda_runtime_api.h"

extern "C" {
// Runs fn(data) on `stream`'s thread, in stream order; `drop(data)` runs afterwards (or at once if the call
// fails). While the context has a sticky fault, fn is skipped and only drop runs.
BSSN_EMU_API cudaError_t bssnEmuEnqueue(cudaStream_t stream, void (*fn)(void*), void (*drop)(void*), void* data);
// Whether [p, p + bytes) lies inside one live device allocation (what a GPU may address), for work running on a
// stream now: memory whose cudaFreeAsync is enqueued after this work still counts.
BSSN_EMU_API int bssnEmuIsDeviceRange(const void* p, size_t bytes);
// Called from stream work that found an illegal access or similar: makes `error` the context's sticky error,
// with `message` shown by cudaGetErrorString and printed to stderr.
BSSN_EMU_API void bssnEmuFault(cudaError_t error, const char* message);

// Fault injection (the counters count from the call on; 0 turns a fault off).
// The n-th device allocation (cudaMalloc, cudaMallocAsync) from now fails with cudaErrorMemoryAllocation.
BSSN_EMU_API void bssnEmuFailAllocation(int64_t n);
// The n-th kernel launch from now faults on the device with the sticky cudaErrorLaunchFailure. A graph's kernel
// nodes count as launches, decided at cudaGraphLaunch; a kernel captured into a graph is not a launch.
BSSN_EMU_API void bssnEmuFailLaunch(int64_t n);

struct BssnEmuStats {
  int64_t launches;        // kernels launched (a graph's kernel nodes count at each cudaGraphLaunch)
  int64_t blocks;          // blocks executed
  int64_t threads;         // threads executed
  int64_t deviceBytes;     // device memory in use
  int64_t deviceAllocations;
  int64_t hostPinnedAllocations;
  int64_t graphLaunches;  // cudaGraphLaunch calls that enqueued a graph
  int64_t captures;       // cudaStreamBeginCapture calls that began a capture
};
BSSN_EMU_API void bssnEmuStats(BssnEmuStats* out);
// Launch counts by kernel name (graph nodes included, as in `launches`): fills up to `capacity` entries, returns how many kernels were launched.
BSSN_EMU_API size_t bssnEmuKernelLaunches(const char** names, int64_t* counts, size_t capacity);
// The context's sticky fault message, empty when none.
BSSN_EMU_API const char* bssnEmuStickyMessage(void);
}

namespace bssn::emu {

// Enqueues a callable on an emulated stream (boxes it for bssnEmuEnqueue).
template <typename F>
cudaError_t enqueue(cudaStream_t stream, F&& f) {
  using Box = std::decay_t<F>;
  return bssnEmuEnqueue(
      stream, [](void* p) { (*static_cast<Box*>(p))(); }, [](void* p) { delete static_cast<Box*>(p); },
      new Box(std::forward<F>(f)));
}

}  // namespace bssn::emu
