// Kernel sequences replayed from CUDA graphs. A small network's forward is 4-5 short kernels, so launch overhead,
// not bandwidth, sets its time: captured once, the sequence costs one cudaGraphLaunch per call. The kernels read
// everything that changes between calls (weights, state, output pointers) through device memory, so a graph stays
// valid as long as the launch arguments are the same bytes, which is the cache key.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <vector>

#include "cuda/check.h"

namespace bssn::cuda {

class LaunchGraphs {
 public:
  explicit LaunchGraphs(int device) : device_(device) {}
  LaunchGraphs(const LaunchGraphs&) = delete;
  LaunchGraphs& operator=(const LaunchGraphs&) = delete;
  // CUDA frees an executable graph that is still running once it completes.
  ~LaunchGraphs();

  // The graph captured for `key` (the launch arguments' bytes), or null; a hit makes it the most recently used.
  cudaGraphExec_t find(const void* key, size_t bytes);
  // Keeps `exec` for `key`; beyond kMaxGraphs the least recently used goes. A batch needs few: forward and
  // scale-only in training and eval, and the backward.
  void add(const void* key, size_t bytes, cudaGraphExec_t exec);
  static constexpr size_t kMaxGraphs = 8;

 private:
  struct Entry {
    std::vector<unsigned char> key;
    cudaGraphExec_t exec;
  };
  int device_;
  std::vector<Entry> entries_;
};

// Captures the kernels that `launches` enqueues on `stream` into an executable graph. The capture is thread-local:
// other threads' CUDA calls go on, while this thread may only launch kernels until it ends (no allocation, copy or
// synchronization). Returns null when a launch failed (the caller then launches directly, and its launch check
// reports the error as it would without graphs); throws bssn::Error naming the graph call that failed otherwise.
template <typename Launches>
cudaGraphExec_t captureGraph(cudaStream_t stream, Launches&& launches) {
  BSSN_CUDA_TRY(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t graph = nullptr;
  try {
    launches();
  } catch (...) {
    if (cudaStreamEndCapture(stream, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
    throw;
  }
  // Before ending: a failed end sets the last error too, and must be reported as itself, not as a launch's.
  const cudaError_t launched = cudaPeekAtLastError();
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  if (launched != cudaSuccess) {  // a launch failed (and may have invalidated the capture)
    if (ended == cudaSuccess && graph) cudaGraphDestroy(graph);
    cudaGetLastError();  // the caller launches directly, which reports the launch's own error
    return nullptr;
  }
  if (ended != cudaSuccess) throwStatus("cudaStreamEndCapture", ended, "", __FILE__, __LINE__);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);  // the executable is a copy
  if (instantiated != cudaSuccess) throwStatus("cudaGraphInstantiate", instantiated, "", __FILE__, __LINE__);
  return exec;
}

}  // namespace bssn::cuda
