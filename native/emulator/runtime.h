// Internals of libcudart_emu shared by its parts: the context's errors, streams and statistics.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bssn_emulator.h"
#include "cuda_runtime.h"

namespace bssn::emu {

// The context's sticky error: once set, every runtime call returns it (as on a GPU after a fault).
cudaError_t stickyError();
void setSticky(cudaError_t error, const std::string& message);

struct Stats {
  std::atomic<int64_t> launches{0}, blocks{0}, threads{0}, graphLaunches{0}, captures{0};
  std::mutex mutex;
  std::map<std::string, int64_t> perKernel;  // launches by kernel name
};
Stats& stats();

// Runs the grid of one launch on the calling (stream) thread, spreading blocks over the executor's workers.
// A kernel that breaks the execution model (a barrier or warp collective not every thread reaches) becomes the
// sticky cudaErrorLaunchFailure with a message naming the kernel, block and threads. sharedLimit: the static plus
// dynamic shared bytes a block may use. A cooperative grid has every block resident at once (grid.sync()).
void runGrid(const char* name, dim3 grid, dim3 block, size_t sharedBytes, KernelBody& body, size_t sharedLimit, bool cooperative);

// Every live device allocation as (base, bytes), for counting (counting.cpp).
void deviceRanges(std::vector<std::pair<uintptr_t, size_t>>& out);
// Waits until every stream has run the work enqueued so far (cudaDeviceSynchronize without its checks).
void drainDevice();

}  // namespace bssn::emu

// An emulated stream: its own thread runs the enqueued work in order, asynchronously to the caller.
struct CUstream_st {
  CUstream_st();
  ~CUstream_st();  // drains the queue
  void enqueue(std::function<void()> work);
  // Waits for the work enqueued before the call (not for what other threads enqueue meanwhile).
  void synchronize();
  bool idle();
  unsigned flags = cudaStreamDefault;  // cudaStreamNonBlocking: no implicit synchronization with the legacy stream

 private:
  void loop();
  std::mutex mutex_;
  std::condition_variable wake_, progressed_;
  std::deque<std::function<void()>> queue_;
  uint64_t enqueued_ = 0, completed_ = 0;  // tickets
  bool stop_ = false;
  std::thread thread_;
};
