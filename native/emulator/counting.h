// Counting what a GPU would pay (README.md, "Counting what a GPU would pay"): the executor and the runtime report
// kernels, blocks, graph replays, synchronizations, allocations and copies here while counting is on; every global
// access of an instrumented kernel arrives through the __asan_*_noabort callbacks of counting.cpp.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "bssn_emulator.h"
#include "cuda_runtime.h"

namespace bssn::emu::cost {

// The one check an instrumented access makes while counting is off.
extern std::atomic<bool> enabled;
inline bool on() { return enabled.load(std::memory_order_relaxed); }

// Host-side events, counted only while counting is on.
struct HostCounts {
  std::atomic<int64_t> synchronizations{0}, deviceAllocations{0}, pinnedAllocations{0}, bytesToDevice{0}, bytesToHost{0},
      bytesDeviceToDevice{0};
};
HostCounts& host();
inline void count(std::atomic<int64_t> HostCounts::*field, int64_t n = 1) {
  if (on()) (host().*field) += n;
}

// One kernel run being counted (nullptr when counting is off at its start).
struct Launch;
Launch* beginLaunch(const char* name, dim3 grid, dim3 block);
void endLaunch(Launch* launch);

// Held by each OS thread while it executes blocks of `launch` (its counts merge into the launch at the end).
class WorkerScope {
 public:
  explicit WorkerScope(Launch* launch);
  ~WorkerScope();
  WorkerScope(const WorkerScope&) = delete;
  WorkerScope& operator=(const WorkerScope&) = delete;

 private:
  Launch* launch_;
};
// Around each block a worker runs: its warp-wide accesses are grouped per block.
void blockBegin(unsigned threads);
void blockEnd();
// Around a cooperative grid, whose blocks' threads interleave on one OS thread: counted as one block of all their
// threads (a thread's index in the grid, so warps stay apart where blocks are whole warps), `blocks` blocks.
void gridBegin(unsigned threadsPerBlock, unsigned blocks);
void gridEnd(unsigned blocks);

// Held on the stream's thread while a graph replay runs its `nodes` kernels: they are tagged with the replay.
class ReplayScope {
 public:
  explicit ReplayScope(size_t nodes);
  ~ReplayScope();
  ReplayScope(const ReplayScope&) = delete;
  ReplayScope& operator=(const ReplayScope&) = delete;
};

}  // namespace bssn::emu::cost
