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
// maskWithoutSelf, barrierInOneWarp, or a cooperative one of launchFatalCooperative) and returns what the next synchronization reports. Leaves the context with
// a sticky fault: only for a process of its own.
std::string fatal(const std::string& which);

// ---- stream capture and graphs (see README.md, "CUDA graphs")

// What a graph probe saw: each call's status (its cudaGetErrorName) or a message, and the values it read, by name.
struct Report {
  std::vector<std::pair<std::string, std::string>> statuses;
  std::vector<std::pair<std::string, std::vector<double>>> values;
};
// Captures on a fresh stream (capture `mode`: 0 Global, 1 ThreadLocal, 2 Relaxed) the four launches out = in,
// out = out * s[0] + s[1], out = out * s[2] + s[3], acc += out (and ++count), with the scalars bound at capture
// from a vector destroyed right after; reads the outputs after the capture (nothing may have run), launches the
// graph `replays` times (count after each) and reads them again. Values: capture's statistics, before/after.
Report graphReplay(const std::vector<float>& input, const std::vector<float>& scalars, int replays, int mode);
// Begins a capture (`mode`) on a stream, launches a kernel, makes the call `op` (see probes.cu), launches again, ends
// the capture (the graph is destroyed unlaunched), then launches out = in * 2 + 1 on the same stream as plain work:
// its result and every status.
Report captureError(const std::string& op, int mode, const std::vector<float>& input);
// Cooperative launches (probes_cooperative.cu): the device's residency attributes, the opt-in for dynamic shared
// memory, the occupancy calculator, the grids a cooperative launch refuses and takes, and an exchange between
// blocks across grid barriers (with the launch helper, cudaLaunchCooperativeKernel, a graph's replays, and without
// its barrier): statuses, and values (attributes, occupancies, wrong results per run).
Report cooperative();
// Launches the cooperative `which` of fatal() (gridMissingArrival, gridSyncNotCooperative, gridSyncBesideBarrier);
// false for another name.
bool launchFatalCooperative(const std::string& which, float* out);
// Misuse of the capture and graph calls (begin twice, end when not capturing, null handles, ...): their statuses.
Report captureMisuse();
// Begins a capture (`mode`) on this thread and ends it from another thread, then from this one.
Report endFromOtherThread(int mode);
// While this thread captures (`mode`), another thread (its own capture mode `otherMode`) allocates, frees,
// synchronizes, queries and waits on events and launches on its own stream: every status, and the capture's.
Report otherThreadDuringCapture(int mode, int otherMode);
// `rounds` captures (`mode`) and replays on this thread while another thread records, launches and waits on
// events of its own stream: errors on either side, and the last replay's output for `input`.
Report captureWhileOthersWait(const std::vector<float>& input, int rounds, int mode);
// A gate kernel holds stream A; a graph is captured on B, instantiated, its graph destroyed, launched on A, its
// executable destroyed at once, and launched again on B (which must wait for A's replay); then the gate opens.
Report graphLifetime(const std::vector<float>& input, const std::vector<float>& scalars);
// The graphReplay graph launched `replays` times after bssnEmuFailLaunch(failAt): what synchronization reports and
// the outputs, read directly from the emulated device memory (the context is dead). Only for a process of its own.
Report graphFault(const std::vector<float>& input, const std::vector<float>& scalars, int replays, int failAt);

// A training step's kinds of work on one stream (probes_capture.cu): upload from pinned memory, kernel, device
// copy, memset, kernel, cuBLAS sgemm, cuDNN convolution, a child graph's cudaGraphLaunch, download to pinned
// memory; run directly once per input (inputs: whole steps of 128 floats, each written into the pinned upload
// buffer before its step), then captured (`mode`) and replayed once per input from the same start (`init`: the
// gemm's weight, its accumulator and the filter; outputs poisoned). scalars: the two affine kernels' and the
// gemm's alpha and beta. Values: prefix "direct.", "afterCapture." and "replay." for the downloads and buffers,
// ".stats" [launches, graphLaunches], ".cost" [launches, graphLaunches, graphNodes, bytes to device, to host,
// device to device] where counting is available; the capture's info and statuses.
Report capturedStep(const std::vector<float>& inputs, const std::vector<float>& init, const std::vector<float>& scalars, int mode);
// A captured device copy replayed after cudaFree of its destination: what synchronization reports, with the sticky
// message. Leaves the context with a sticky fault: only for a process of its own.
std::string copyNodeAfterFree();

// ---- counting (README.md, "Counting what a GPU would pay"); run them between bssnEmuCountingStart and Stop.

// Runs the planted kernel `which` on `input` (n floats) and returns its output: copy (out = in, coalesced),
// strided (out[i] = in[8 i], n / 8 outputs), readTwice (out[i] = 2 in[i] + in[n - 1 - i]), copy4 (a float4 copy),
// sharedOnly (4 blocks of 256 threads that touch only shared memory; no output), serialSum (one thread sums the
// input). Around it: two cudaMalloc, a blocking upload and download of the floats, two cudaFree.
std::vector<double> costKernel(const std::string& which, const std::vector<float>& input);
// Host calls of known cost, on a stream of its own: cudaHostAlloc and cudaMallocAsync of `bytes`, an asynchronous
// upload and download of them, stream, event and device synchronize (cudaFreeAsync between), cudaFreeHost.
void costHostCalls(size_t bytes);

}  // namespace bssn::emu::probes
