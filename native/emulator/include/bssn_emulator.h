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
// fails). While the context has a sticky fault, fn is skipped and only drop runs. On a capturing stream the call is
// recorded as a graph node: fn(data) runs at each replay, and drop(data) once the last graph holding it is gone.
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
// The same, and the count - 1 allocations after it fail too (an allocator's retry after returning its cache).
BSSN_EMU_API void bssnEmuFailAllocations(int64_t n, int64_t count);
// The n-th kernel launch from now faults on the device with the sticky cudaErrorLaunchFailure. A graph's kernel
// nodes count as launches, decided at cudaGraphLaunch; a kernel captured into a graph is not a launch.
BSSN_EMU_API void bssnEmuFailLaunch(int64_t n);
// The next n cooperative launches are refused with cudaErrorCooperativeLaunchTooLarge (not sticky), as a card that
// holds fewer blocks resident at run time than when the launch was planned refuses them (0: off).
BSSN_EMU_API void bssnEmuRefuseCooperative(int64_t n);

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

// ---- Counting what a GPU would pay (README.md): measured from the global accesses kernels really make.
// Global accesses of one direction (loads or stores) by the kernels counted.
struct BssnEmuAccessCost {
  int64_t warpAccesses;     // warp-wide accesses: a warp's lanes at the same load or store (site and occurrence)
  int64_t sectors;          // the 32-byte sectors each warp-wide access touches, summed (L2 traffic)
  int64_t distinctSectors;  // sectors touched at least once by a launch (DRAM traffic if re-reads hit L2), summed over launches
  int64_t bytes;            // bytes the lanes asked for: sectors * 128 / bytes is 4 for coalesced fp32 or float4 accesses
};
struct BssnEmuLaunchCost {
  const char* kernel;  // valid until the next bssnEmuCountingStart
  int64_t replay;      // the graph replay that ran it (1, 2, ... since the start), 0 for a plain launch
  uint32_t grid[3], block[3];
  int64_t blocks;
  BssnEmuAccessCost loads, stores;
  int64_t maxThreadAccesses;  // the most global loads and stores made by one thread of the launch
};
struct BssnEmuCost {
  int64_t launches;       // kernels run (graph nodes included)
  int64_t graphLaunches;  // graph replays run
  int64_t graphNodes;     // kernels run by those replays
  int64_t blocks;
  BssnEmuAccessCost loads, stores;  // summed over the launches
  int64_t maxThreadAccesses;        // the most of any launch
  int64_t synchronizations;   // host waits on the device: stream, device and event synchronize, blocking copies, cudaFree(Host)
  int64_t deviceAllocations;  // cudaMalloc, cudaMallocAsync
  int64_t pinnedAllocations;  // cudaHostAlloc
  int64_t bytesToDevice, bytesToHost, bytesDeviceToDevice;  // copied by cudaMemcpy(Async)
};
// 1 where the kernels are instrumented (the emulated build), 0 where they cannot be (the AddressSanitizer build).
BSSN_EMU_API int bssnEmuCountingAvailable(void);
// Waits for the work already enqueued (uncounted), clears every count and starts counting: kernels that run from
// now on, and host calls made from now on.
BSSN_EMU_API void bssnEmuCountingStart(void);
// Waits for every stream's work to finish (counted; the wait itself is not), stops counting and fills `totals`.
BSSN_EMU_API void bssnEmuCountingStop(BssnEmuCost* totals);
// Each counted launch in the order they ended (up to 65536 are kept): fills up to `capacity`, returns how many.
BSSN_EMU_API size_t bssnEmuLaunchCosts(BssnEmuLaunchCost* out, size_t capacity);
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
