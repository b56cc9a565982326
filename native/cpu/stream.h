// An in-order work queue run by one worker thread: the CPU backend's stream. Ops enqueue closures and
// return at once; a failed task makes the stream's error sticky, reported by every later fence.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/device.h"

namespace bssn {

class CpuStream {
 public:
  CpuStream();
  ~CpuStream() { stop(); }

  void enqueue(std::function<void()> task);
  std::shared_ptr<Fence> fence();
  // Drops queued work, waits for the running task, and ends the worker. Later enqueues throw.
  void stop();

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::string error_;  // first failure, guarded by mutex_
  std::thread worker_;
};

}  // namespace bssn
