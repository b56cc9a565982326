// Kernels that probe the emulator itself (emulated build only): each one is right or deliberately wrong in a way
// a GPU would punish, so the tests can show the emulator catches it. Host functions run synchronously.
#pragma once
#include <string>
#include <vector>

namespace bssn::emu::probes {

// The sum of 1..256 by a 256-thread block reduction: {with its barrier, then two blocks with the barrier left out}.
std::vector<double> blockSums();
// Threads whose writer (thread 0) ran without the barrier before their read: how many read a wrong value.
double broadcastWithoutBarrier();
// A warp whose upper 16 lanes exited: the rest's full-mask shuffle and ballot, lanes 0..15 then 16..31.
std::vector<double> exitedLanes();
// Each warp collective on known lanes: for each op a row of 64 results (two warps); see probes.cu for the inputs.
std::vector<std::vector<double>> warpOps();
// 1024 threads in 8 blocks atomically add 1 to a float and a double; a block reverses 300 floats through dynamic
// shared memory: {float total, double total, reversed[0], reversed[299]}.
std::vector<double> atomicsAndDynamicShared();
// Launches a GPU refuses: {what, the cudaGetLastError name} for each.
std::vector<std::pair<std::string, std::string>> launchLimits();
// Reads a pinned download before and after waiting for its event, while a gate kernel holds the stream:
// {value before waiting, value after}.
std::vector<double> staleRead();
// Runs a kernel that breaks the execution model (`which`: divergentBarrier, missingLane, maskMismatch,
// maskWithoutSelf, barrierInOneWarp) and returns what the next synchronization reports. Leaves the context with
// a sticky fault: only for a process of its own.
std::string fatal(const std::string& which);

}  // namespace bssn::emu::probes
