// An in-order work queue run by one worker thread: the CPU backend's stream. Ops enqueue closures and
// return at once; a failed task makes the stream's error sticky, reported by every later fence.
// The queue is bounded, as a GPU's launch queue is: an enqueue beyond `maxOps` queued ops, or beyond `maxBytes`
// of buffers referenced by queued ops, waits until the stream has drained below the bound. Without it, a loop
// that never reads results queues work (and the memory it keeps alive) without limit.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/device.h"
#include "core/error.h"

namespace bssn {

struct QueueBounds {
  size_t maxOps = 64;                   // BSSN_CPU_QUEUE_OPS
  size_t maxBytes = size_t(256) << 20;  // BSSN_CPU_QUEUE_BYTES
  static QueueBounds fromEnvironment();
};

class CpuStream {
 public:
  explicit CpuStream(QueueBounds bounds = QueueBounds::fromEnvironment());
  ~CpuStream() { stop(); }

  // `bytes`: the size of the buffers `task` references (what its place in the queue keeps alive).
  void enqueue(std::function<void()> task, size_t bytes = 0);
  std::shared_ptr<Fence> fence();
  // Drops queued work, waits for the running task, and ends the worker. Later enqueues throw.
  void stop();
  // Whether stop() has been called (a long-running task may give up early).
  bool stopping() {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->stopping;
  }

 private:
  struct Item {
    std::function<void()> task;
    size_t bytes;
  };
  // The queue and its locks, shared with the worker thread: a task that drops the device's last reference destroys
  // this object on the worker itself, which then still reads the state to find the queue stopped and end.
  struct State {
    explicit State(QueueBounds b) : bounds(b) {}
    const QueueBounds bounds;
    std::mutex mutex;
    std::condition_variable wake, space;
    std::deque<Item> queue;
    size_t pendingBytes = 0;
    bool stopping = false;
    std::optional<Error> error;  // first failure (its kind and code kept), guarded by mutex
  };
  static void run(const std::shared_ptr<State>& state);

  std::shared_ptr<State> state_;
  std::thread worker_;
};

}  // namespace bssn
