#include "cpu/stream.h"

#include <cstdlib>
#include <future>
#include <optional>

namespace bssn {

namespace {

class CpuFence : public Fence {
 public:
  explicit CpuFence(std::shared_future<std::optional<Error>> done) : done_(std::move(done)) {}
  void wait() override {
    std::optional<Error> error;
    try {
      error = done_.get();
    } catch (const std::future_error&) {
      throwError("the CPU device was shut down before this operation ran");
    }
    if (error) throw *error;
  }

 private:
  std::shared_future<std::optional<Error>> done_;
};

}  // namespace

QueueBounds QueueBounds::fromEnvironment() {
  QueueBounds b;
  const auto read = [](const char* name, size_t fallback) {
    const char* v = std::getenv(name);
    const long long n = v && *v ? std::atoll(v) : 0;
    return n > 0 ? size_t(n) : fallback;
  };
  b.maxOps = read("BSSN_CPU_QUEUE_OPS", b.maxOps);
  b.maxBytes = read("BSSN_CPU_QUEUE_BYTES", b.maxBytes);
  return b;
}

CpuStream::CpuStream(QueueBounds bounds) : bounds_(bounds), worker_([this] { run(); }) {}

void CpuStream::enqueue(std::function<void()> task, size_t bytes) {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    // The worker itself never waits for room (it is what makes room).
    if (std::this_thread::get_id() != worker_.get_id())
      space_.wait(lock, [&] {
        return stopping_ || (queue_.size() < bounds_.maxOps && (queue_.empty() || pendingBytes_ + bytes <= bounds_.maxBytes));
      });
    if (stopping_) throwError("the CPU device was shut down");
    queue_.push_back({std::move(task), bytes});
    pendingBytes_ += bytes;
  }
  wake_.notify_one();
}

std::shared_ptr<Fence> CpuStream::fence() {
  auto done = std::make_shared<std::promise<std::optional<Error>>>();
  auto fence = std::make_shared<CpuFence>(done->get_future().share());
  enqueue([this, done] {
    std::lock_guard<std::mutex> lock(mutex_);
    done->set_value(error_);
  });
  return fence;
}

void CpuStream::run() {
  for (;;) {
    std::function<void()> task;
    size_t bytes;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and all queued work has run
      task = std::move(queue_.front().task);
      bytes = queue_.front().bytes;
      queue_.pop_front();
    }
    try {
      task();
    } catch (...) {
      // Its kind and code are kept (an allocation that failed in a task reads ERR_BSSN_OUT_OF_MEMORY).
      const Error e = currentError();
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_.emplace(e.kind(), std::string("CPU stream task failed: ") + e.what(), e.code());
    }
    task = nullptr;  // let go of the buffers the task held before waiting for the next
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pendingBytes_ -= bytes;
    }
    space_.notify_all();
  }
}

void CpuStream::stop() {
  // Work still queued at teardown is dropped: its results have nobody to go to. A dropped fence breaks its
  // promise, so a thread waiting on it wakes with an error instead of hanging.
  std::deque<Item> dropped;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    dropped.swap(queue_);
    pendingBytes_ = 0;
  }
  dropped.clear();
  wake_.notify_one();
  space_.notify_all();
  if (!worker_.joinable()) return;
  // The device is only destroyed from its own worker if its last holder was a queued task; the worker then
  // finishes by itself (the queue is empty), so it is left to end rather than joined with itself.
  if (worker_.get_id() == std::this_thread::get_id())
    worker_.detach();
  else
    worker_.join();
}

}  // namespace bssn
