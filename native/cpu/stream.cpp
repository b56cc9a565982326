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

CpuStream::CpuStream(QueueBounds bounds)
    : state_(std::make_shared<State>(bounds)), worker_([state = state_] { run(state); }) {}

void CpuStream::enqueue(std::function<void()> task, size_t bytes) {
  State& s = *state_;
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    // The worker itself never waits for room (it is what makes room).
    if (std::this_thread::get_id() != worker_.get_id())
      s.space.wait(lock, [&] {
        return s.stopping || (s.queue.size() < s.bounds.maxOps && (s.queue.empty() || s.pendingBytes + bytes <= s.bounds.maxBytes));
      });
    if (s.stopping) throwError("the CPU device was shut down");
    s.queue.push_back({std::move(task), bytes});
    s.pendingBytes += bytes;
  }
  s.wake.notify_one();
}

std::shared_ptr<Fence> CpuStream::fence() {
  auto done = std::make_shared<std::promise<std::optional<Error>>>();
  auto fence = std::make_shared<CpuFence>(done->get_future().share());
  enqueue([state = state_.get(), done] {  // runs on the worker, which holds the state
    std::lock_guard<std::mutex> lock(state->mutex);
    done->set_value(state->error);
  });
  return fence;
}

void CpuStream::run(const std::shared_ptr<State>& state) {
  State& s = *state;
  for (;;) {
    std::function<void()> task;
    size_t bytes;
    {
      std::unique_lock<std::mutex> lock(s.mutex);
      s.wake.wait(lock, [&] { return s.stopping || !s.queue.empty(); });
      if (s.queue.empty()) return;  // stopping, and all queued work has run
      task = std::move(s.queue.front().task);
      bytes = s.queue.front().bytes;
      s.queue.pop_front();
    }
    try {
      task();
    } catch (...) {
      // Its kind and code are kept (an allocation that failed in a task reads ERR_BSSN_OUT_OF_MEMORY).
      const Error e = currentError();
      std::lock_guard<std::mutex> lock(s.mutex);
      if (!s.error) s.error.emplace(e.kind(), std::string("CPU stream task failed: ") + e.what(), e.code());
    }
    // Let go of the buffers the task held before waiting for the next. If they were the device's last reference,
    // the device and this stream are gone from here on (stop() detached this thread); the state is still ours.
    task = nullptr;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.pendingBytes -= bytes;
    }
    s.space.notify_all();
  }
}

void CpuStream::stop() {
  // Work still queued at teardown is dropped: its results have nobody to go to. A dropped fence breaks its
  // promise, so a thread waiting on it wakes with an error instead of hanging.
  State& s = *state_;
  std::deque<Item> dropped;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.stopping = true;
    dropped.swap(s.queue);
    for (const Item& item : dropped) s.pendingBytes -= item.bytes;  // the running task's bytes come off when it ends
  }
  dropped.clear();
  s.wake.notify_one();
  s.space.notify_all();
  if (!worker_.joinable()) return;
  // Called on the worker itself when a task of its own released the device's last reference: it cannot join
  // itself, so it is detached, and ends by itself (the queue is empty and stopped) on the state it shares.
  if (worker_.get_id() == std::this_thread::get_id())
    worker_.detach();
  else
    worker_.join();
}

}  // namespace bssn
