// The emulator's execution model: a grid's blocks are spread over worker OS threads; within a block, every GPU
// thread is a fiber, and the fibers of a block take turns on one OS thread.
//
// Why fibers and not OS threads: a block is up to 1024 threads and the suite launches about 10^8 of them, so
// creating and waking OS threads would cost minutes, while a fiber switch costs nanoseconds. Fibers still
// interleave for real at every __syncthreads and warp collective, and the order is adversarial on purpose: a
// thread runs as far as it can before the next one starts. So a value written before a missing barrier is read
// by threads that have not been written for yet (stale or poisoned shared memory, a wrong result), a barrier or
// collective that some thread never reaches is seen (nothing left to run) and reported with the kernel's name
// instead of hanging, and results do not depend on OS scheduling. The order alternates between blocks and between
// launches (lowest thread first, then highest first), so a missing barrier shows whichever side writes: a
// thread-0 broadcast read by the others as much as partials that thread 0 gathers.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "counting.h"
#include "fiber.h"
#include "runtime.h"

namespace bssn::emu {

thread_local const ThreadState* current = nullptr;

namespace {

enum class Wait { Ready, Barrier, Warp, Done, Grid };
const char* kCollectiveNames[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync", "__ballot_sync",
                                  "__syncwarp"};

struct GpuThread {
  ThreadState state;
  Context context;
  FiberStack* stack = nullptr;
  Wait wait = Wait::Ready;
  // The warp collective this thread waits at.
  unsigned mask = 0;
  int op = 0, arg = 0, width = 32;
  uint64_t value = 0, result = 0;
};

std::string dims(uint3 v) { return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")"; }

std::string hexMask(unsigned m) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%08x", m);
  return text;
}

// One per OS thread that executes blocks: its fibers' stacks, the block in flight, and where to switch back to.
class BlockRunner {
 public:
  // Runs one block; returns an error message, or "" when it completed.
  std::string run(const char* name, uint3 blockIndex, dim3 grid, dim3 block, size_t sharedBytes, KernelBody& body, bool reversed,
                  size_t sharedLimit) {
    begin(name, blockIndex, grid, block, sharedBytes, body, reversed, false, sharedLimit);
    advance();
    if (error_.empty() && done_ < int(threads_.size())) error_ = diagnoseStall();
    return end();
  }

  // A block in three steps, so that a cooperative grid can hold all of its blocks at once: begin() makes its
  // threads, advance() runs them until none can go on (finished, or waiting at a barrier or the grid barrier),
  // end() abandons what is left and returns the error.
  void begin(const char* name, uint3 blockIndex, dim3 grid, dim3 block, size_t sharedBytes, KernelBody& body, bool reversed,
             bool cooperative, size_t sharedLimit) {
    name_ = name;
    sharedLimit_ = sharedLimit;
    blockIndex_ = blockIndex;
    cooperative_ = cooperative;
    body_ = &body;
    error_.clear();
    const int n = int(block.x * block.y * block.z);
    threads_.resize(size_t(n));
    // Dynamic shared memory: exactly the launch's size (so AddressSanitizer sees an overrun), starting as NaN
    // bytes like poisoned device memory, so a read before a write shows.
    if (sharedBytes != dynamicSharedBytes_) {
      dynamicShared_.reset(sharedBytes ? new char[sharedBytes] : nullptr);
      dynamicSharedBytes_ = sharedBytes;
    }
    if (sharedBytes) std::memset(dynamicShared_.get(), 0xFF, sharedBytes);
    reversed_ = reversed;
    shared_.clear();
    sharedBytes_ = 0;
    ready_.clear();
    for (int i = 0; i < n; ++i) {
      GpuThread& t = threads_[size_t(i)];
      t.state.thread = {unsigned(i) % block.x, unsigned(i) / block.x % block.y, unsigned(i) / (block.x * block.y)};
      t.state.block = blockIndex;
      t.state.blockDims = block;
      t.state.gridDims = grid;
      t.state.dynamicShared = dynamicShared_.get();
      t.wait = Wait::Ready;
      t.stack = nullptr;
      t.context.fakeStack = nullptr;  // a new thread: AddressSanitizer must not resume its predecessor's fake stack
      ready_.push_back(reversed ? n - 1 - i : i);
    }
    done_ = atBarrier_ = atGrid_ = 0;
  }

  void advance() {
    BlockRunner* const outer = active;
    active = this;
    initThreadContext(scheduler_);
    const int n = int(threads_.size());
    int& done = done_;
    int& atBarrier = atBarrier_;
    while (!ready_.empty() && error_.empty()) {
      const int i = ready_.front();
      ready_.pop_front();
      GpuThread& t = threads_[size_t(i)];
      if (!t.stack) {
        t.stack = acquireStack();
        prepare(t.context, *t.stack, &entry);
      }
      t.wait = Wait::Ready;
      running_ = i;
      current = &t.state;
      switchTo(scheduler_, t.context);
      current = nullptr;
      switch (t.wait) {
        case Wait::Done:
          ++done;
          if (!t.stack->intact() && error_.empty()) error_ = where(i) + " overflowed its fiber stack";
          releaseStack(t.stack);
          t.stack = nullptr;
          // A collective waits only for lanes that have not exited: this one's exit may complete it.
          for (int l = i / 32 * 32; l < std::min(n, i / 32 * 32 + 32) && error_.empty(); ++l)
            if (threads_[size_t(l)].wait == Wait::Warp && (threads_[size_t(l)].mask >> (l % 32) & 1u)) {
              arriveAtCollective(l);
              break;
            }
          break;
        case Wait::Barrier:
          if (++atBarrier == n) {  // every thread of the block is here: all go on, in this block's order
            atBarrier = 0;
            for (int k = 0; k < n; ++k) ready_.push_back(reversed_ ? n - 1 - k : k);
          }
          break;
        case Wait::Warp:
          arriveAtCollective(i);
          break;
        case Wait::Grid:
          ++atGrid_;
          break;
        case Wait::Ready:
          break;
      }
    }
    active = outer;
  }

  int threadCount() const { return int(threads_.size()); }
  int exited() const { return done_; }
  bool finished() const { return done_ == threadCount(); }
  // Every thread that has not exited waits at the grid barrier.
  bool atGridBarrier() const { return atGrid_ > 0 && atGrid_ + done_ == threadCount(); }
  bool failed() const { return !error_.empty(); }
  void fail(std::string message) { error_ = std::move(message); }
  std::string stall() const { return diagnoseStall(); }
  std::string firstExited() const {
    for (const GpuThread& t : threads_)
      if (t.wait == Wait::Done) return dims(t.state.thread);
    return "";
  }
  // The grid barrier released: this block's threads go on, in its order.
  void releaseGrid() {
    const int n = threadCount();
    atGrid_ = 0;
    for (int k = 0; k < n; ++k) {
      const int i = reversed_ ? n - 1 - k : k;
      if (threads_[size_t(i)].wait == Wait::Grid) ready_.push_back(i);
    }
  }

  std::string end() {
    const int n = threadCount();
    // Fibers left suspended by an error are abandoned; their stacks are reused (prepare() resets them).
    for (GpuThread& t : threads_)
      if (t.stack) {
        t.stack->abandoned = true;
        releaseStack(t.stack);
        t.stack = nullptr;
      }
    stats().blocks++;
    stats().threads += n;
    if (!error_.empty()) error_ = "kernel " + std::string(name_) + ", block " + dims(blockIndex_) + ": " + error_;
    return error_;
  }

  // Called on a GPU thread's fiber.
  void barrier() {
    GpuThread& t = threads_[size_t(running_)];
    t.wait = Wait::Barrier;
    switchTo(t.context, scheduler_);
  }

  void gridBarrier() {
    GpuThread& t = threads_[size_t(running_)];
    if (!cooperative_) {
      // On a GPU, grid.sync() in a grid not launched cooperatively is undefined (it may hang or trap).
      if (error_.empty()) error_ = "grid.sync() in a kernel not launched with cudaLaunchCooperativeKernel (" + where(running_) + ")";
      t.wait = Wait::Ready;  // nothing resumes it: the error ends the block
    } else {
      t.wait = Wait::Grid;
    }
    switchTo(t.context, scheduler_);
  }

  void* sharedArray(const void* key, size_t bytes, size_t align) {
    for (const SharedArray& a : shared_)
      if (a.key == key) return a.memory.get();
    sharedBytes_ += bytes;
    if ((sharedBytes_ > (48u << 10) || sharedBytes_ + dynamicSharedBytes_ > sharedLimit_) && error_.empty())
      error_ = "shared memory of " + std::to_string(sharedBytes_) + " static + " + std::to_string(dynamicSharedBytes_) +
               " dynamic bytes exceeds the " + std::to_string(sharedLimit_) + " bytes this block may use (static at most 48 KiB)";
    // new[] of exactly `bytes`: AddressSanitizer's redzones border it. Alignment up to 16 comes with operator new.
    (void)align;
    shared_.push_back({key, std::unique_ptr<char[]>(new char[bytes ? bytes : 1])});
    std::memset(shared_.back().memory.get(), 0xFF, bytes);
    return shared_.back().memory.get();
  }

  uint64_t collective(unsigned mask, int op, uint64_t value, int arg, int width) {
    GpuThread& t = threads_[size_t(running_)];
    t.wait = Wait::Warp;
    t.mask = mask, t.op = op, t.value = value, t.arg = arg, t.width = width;
    switchTo(t.context, scheduler_);
    return t.result;
  }

 private:
  static void entry() {
    BlockRunner& self = running();
    GpuThread& t = self.threads_[size_t(self.running_)];
    fiberStarted(t.context);
    try {
      self.body_->run();
    } catch (const std::exception& e) {
      if (self.error_.empty()) self.error_ = std::string("kernel code threw: ") + e.what();
    } catch (...) {
      if (self.error_.empty()) self.error_ = "kernel code threw";
    }
    // Re-read: the vector is not resized while a block runs, but be explicit about which thread ends.
    GpuThread& me = self.threads_[size_t(self.running_)];
    me.wait = Wait::Done;
    finalSwitch(me.context, self.scheduler_);
  }

  std::string where(int i) const { return "thread " + dims(threads_[size_t(i)].state.thread); }

  // A lane arrived at a warp collective: complete the collective when every lane its mask names is there.
  void arriveAtCollective(int i) {
    const GpuThread& t = threads_[size_t(i)];
    const int warpBase = i / 32 * 32, lane = i % 32;
    const std::string what = kCollectiveNames[t.op];
    if (!(t.mask >> lane & 1u)) {
      error_ = what + " called by lane " + std::to_string(lane) + " (" + where(i) + ") with mask " + hexMask(t.mask) +
               ", which does not name the calling lane";
      return;
    }
    if (t.width < 1 || t.width > 32 || (t.width & (t.width - 1))) {
      error_ = what + " with width " + std::to_string(t.width) + ": must be a power of 2 up to 32";
      return;
    }
    // Lanes that exited, or that the block does not have, are not waited for (PTX's *.sync semantics); reading
    // their value is what is undefined (checked below).
    const int warpThreads = std::min(32, int(threads_.size()) - warpBase);
    const auto present = [&](int l) { return l < warpThreads && threads_[size_t(warpBase + l)].wait != Wait::Done; };
    for (int l = 0; l < 32; ++l) {
      if (!(t.mask >> l & 1u) || !present(l)) continue;
      const GpuThread& o = threads_[size_t(warpBase + l)];
      if (o.wait != Wait::Warp) return;  // not all there yet
      if (o.mask != t.mask || o.op != t.op || o.width != t.width) {
        error_ = "warp collectives disagree: lane " + std::to_string(lane) + " is at " + what + " with mask " + hexMask(t.mask) +
                 ", lane " + std::to_string(l) + " at " + kCollectiveNames[o.op] + " with mask " + hexMask(o.mask);
        return;
      }
    }
    uint64_t ballot = 0;
    for (int l = 0; l < 32; ++l)
      if (t.mask >> l & 1u && present(l) && threads_[size_t(warpBase + l)].value) ballot |= uint64_t(1) << l;
    for (int l = 0; l < 32; ++l) {
      if (!(t.mask >> l & 1u) || !present(l)) continue;
      GpuThread& o = threads_[size_t(warpBase + l)];
      const int segment = l - l % t.width;
      int source = l;
      switch (t.op) {
        case 0: source = segment + (o.arg & (t.width - 1)); break;
        case 1: source = l - o.arg >= segment ? l - o.arg : l; break;
        case 2: source = l + o.arg < segment + t.width ? l + o.arg : l; break;
        case 3: source = (l ^ o.arg) < segment + t.width ? (l ^ o.arg) : l; break;
        default: break;
      }
      if (t.op <= 3 && (source < 0 || source >= 32 || !(t.mask >> source & 1u) || !present(source))) {
        error_ = what + ": lane " + std::to_string(l) + " reads lane " + std::to_string(source) +
                 (source >= 0 && source < 32 && (t.mask >> source & 1u) ? ", which has exited" : ", which is not in mask " + hexMask(t.mask)) +
                 " (its value is undefined on a GPU)";
        return;
      }
      o.result = t.op == 4 ? ballot : t.op == 5 ? 0 : threads_[size_t(warpBase + source)].value;
    }
    for (int l = 0; l < 32; ++l)
      if (t.mask >> l & 1u && present(l)) {
        threads_[size_t(warpBase + l)].wait = Wait::Ready;
        ready_.push_back(warpBase + l);
      }
  }

  // Nothing can run, yet some threads have not finished: say who waits for whom.
  std::string diagnoseStall() const {
    const int n = threadCount(), done = done_, atBarrier = atBarrier_;
    for (int i = 0; i < n; ++i) {
      const GpuThread& t = threads_[size_t(i)];
      if (t.wait != Wait::Warp) continue;
      const int warpBase = i / 32 * 32;
      std::string missing;
      for (int l = 0; l < 32; ++l) {
        if (!(t.mask >> l & 1u)) continue;
        const GpuThread& o = threads_[size_t(warpBase + l)];
        if (o.wait == Wait::Warp || o.wait == Wait::Done) continue;
        if (!missing.empty()) missing += ", ";
        missing += std::to_string(l) + " (at __syncthreads)";
      }
      return std::string(kCollectiveNames[t.op]) + " with mask " + hexMask(t.mask) + " in warp " + std::to_string(i / 32) +
             ": lanes named in the mask never arrived: " + missing;
    }
    std::string exited;
    int listed = 0;
    for (int i = 0; i < n; ++i)
      if (threads_[size_t(i)].wait == Wait::Done && listed++ < 4) exited += (exited.empty() ? "" : ", ") + dims(threads_[size_t(i)].state.thread);
    if (listed > 4) exited += " and " + std::to_string(listed - 4) + " more";
    return "__syncthreads() reached by " + std::to_string(atBarrier) + " of " + std::to_string(n) + " threads; " +
           (atGrid_ ? std::to_string(atGrid_) + " wait at grid.sync(); " : "") + std::to_string(done) +
           " exited without reaching it (threadIdx " + exited + ")";
  }

  FiberStack* acquireStack() {
    if (freeStacks_.empty()) {
      stacks_.push_back(std::make_unique<FiberStack>());
      return stacks_.back().get();
    }
    FiberStack* s = freeStacks_.back();
    freeStacks_.pop_back();
    return s;
  }
  void releaseStack(FiberStack* s) { freeStacks_.push_back(s); }

 public:
  static BlockRunner& runner() {
    static thread_local BlockRunner r;
    return r;
  }
  // The block whose threads run on this OS thread now (a cooperative grid's blocks take turns on one).
  static BlockRunner& running() { return active ? *active : runner(); }

 private:
  static thread_local BlockRunner* active;

 private:
  const char* name_ = "";
  KernelBody* body_ = nullptr;
  std::string error_;
  std::vector<GpuThread> threads_;
  std::deque<int> ready_;
  std::unique_ptr<char[]> dynamicShared_;
  size_t dynamicSharedBytes_ = 0;
  struct SharedArray {
    const void* key;
    std::unique_ptr<char[]> memory;
  };
  std::vector<SharedArray> shared_;  // this block's BSSN_SHARED arrays
  size_t sharedBytes_ = 0;
  size_t sharedLimit_ = 48u << 10;  // static + dynamic shared bytes allowed (more with the opt-in attribute)
  bool reversed_ = false;
  std::vector<std::unique_ptr<FiberStack>> stacks_;
  std::vector<FiberStack*> freeStacks_;
  Context scheduler_;
  int running_ = 0;
  uint3 blockIndex_{0, 0, 0};
  bool cooperative_ = false;
  int done_ = 0, atBarrier_ = 0, atGrid_ = 0;  // threads exited, at __syncthreads, at grid.sync()
};

thread_local BlockRunner* BlockRunner::active = nullptr;

// The blocks of one grid, claimed by whoever is free: the stream's thread and the pool's workers.
struct GridJob {
  const char* name;
  dim3 grid, block;
  size_t sharedBytes, sharedLimit;
  KernelBody* body;
  uint64_t total;
  uint64_t launch;  // alternates the thread order between launches too (single-block kernels get both)
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;
  std::string error;
  cost::Launch* counted = nullptr;  // while counting is on

  void work() {
    BlockRunner& runner = BlockRunner::runner();
    const cost::WorkerScope counting(counted);
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) return;
      const uint64_t b = next.fetch_add(1);
      if (b >= total) return;
      const uint3 index{unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / (uint64_t(grid.x) * grid.y))};
      cost::blockBegin(block.x * block.y * block.z);
      std::string message = runner.run(name, index, grid, block, sharedBytes, *body, ((b + launch) & 1) != 0, sharedLimit);
      cost::blockEnd();
      if (!message.empty()) {
        std::lock_guard<std::mutex> lock(mutex);
        if (error.empty()) error = std::move(message);
        failed = true;
      }
    }
  }
};

// Worker threads shared by every stream; one grid uses them at a time (others run on their stream's thread).
class Pool {
 public:
  Pool() {
    unsigned n = std::thread::hardware_concurrency();
    if (const char* v = std::getenv("BSSN_EMU_WORKERS")) n = unsigned(std::atoi(v)) + 1;
    for (unsigned i = 1; i < n && i < 16; ++i) std::thread([this] { loop(); }).detach();  // live until exit
    workers_ = n > 1 ? std::min(n - 1, 15u) : 0;
  }

  void run(GridJob& job) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock() || workers_ == 0 || job.total < 4) {
      job.work();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      ++generation_;
      active_ = workers_;
    }
    wake_.notify_all();
    job.work();
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [this] { return active_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      GridJob* job = job_;
      lock.unlock();
      job->work();
      lock.lock();
      if (--active_ == 0) finished_.notify_all();
    }
  }

  std::mutex busy_, mutex_;
  std::condition_variable wake_, finished_;
  GridJob* job_ = nullptr;
  uint64_t generation_ = 0;
  unsigned active_ = 0, workers_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: its threads run until the process exits
  return *p;
}

}  // namespace

std::atomic<uint64_t> gridLaunches{0};

// A cooperative grid: every block resident at once, all on the calling OS thread. Each round runs every block
// until none of its threads can go on; when every thread of every block waits at grid.sync(), all are released
// (each block in its order). Blocks take turns in an order that alternates between launches, like threads, so a
// missing grid barrier shows whichever block writes first. A grid barrier some thread never reaches (it exited, or
// waits at __syncthreads) is reported instead of hanging.
std::string runCooperative(const char* name, dim3 grid, dim3 block, size_t sharedBytes, size_t sharedLimit, KernelBody& body,
                           uint64_t launch) {
  // Runners are kept per OS thread across launches, with their fiber stacks.
  static thread_local std::vector<std::unique_ptr<BlockRunner>> runners;
  const size_t total = size_t(grid.x) * grid.y * grid.z;
  while (runners.size() < total) runners.push_back(std::make_unique<BlockRunner>());
  const bool backwards = (launch & 1) != 0;
  const auto at = [&](size_t k) -> BlockRunner& { return *runners[backwards ? total - 1 - k : k]; };
  for (size_t b = 0; b < total; ++b) {
    const uint3 index{unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / (uint64_t(grid.x) * grid.y))};
    runners[b]->begin(name, index, grid, block, sharedBytes, body, ((b + launch) & 1) != 0, true, sharedLimit);
  }
  BlockRunner* failed = nullptr;
  for (;;) {
    for (size_t k = 0; k < total && !failed; ++k) {
      at(k).advance();
      if (at(k).failed()) failed = &at(k);
    }
    if (failed) break;
    size_t finished = 0, waiting = 0;
    BlockRunner* exited = nullptr;
    for (size_t k = 0; k < total; ++k) {
      BlockRunner& r = at(k);
      if (r.finished()) ++finished;
      else if (r.atGridBarrier()) ++waiting;
      else {  // stalled at __syncthreads or a warp collective
        r.fail(r.stall());
        failed = &r;
        break;
      }
      if (r.exited() && !exited) exited = &r;
    }
    if (failed || finished == total) break;
    if (exited) {
      const size_t threads = total * size_t(exited->threadCount());
      size_t gone = 0;
      for (size_t k = 0; k < total; ++k) gone += size_t(at(k).exited());
      exited->fail("grid.sync() reached by " + std::to_string(threads - gone) + " of " + std::to_string(threads) + " threads of the grid; " +
                   std::to_string(gone) + " exited without reaching it (this block's threadIdx " + exited->firstExited() + " first)");
      failed = exited;
      break;
    }
    for (size_t k = 0; k < total; ++k) at(k).releaseGrid();
  }
  std::string error;
  for (size_t b = 0; b < total; ++b) {
    std::string message = runners[b]->end();
    if (runners[b].get() == failed) error = std::move(message);
  }
  return error;
}

void runGrid(const char* name, dim3 grid, dim3 block, size_t sharedBytes, KernelBody& body, size_t sharedLimit, bool cooperative) {
  const uint64_t launch = gridLaunches++;
  if (cooperative) {
    // Counted as one grid-wide block: its blocks' threads interleave on this OS thread.
    cost::Launch* counted = cost::beginLaunch(name, grid, block);
    std::string error;
    {
      const cost::WorkerScope counting(counted);
      cost::gridBegin(block.x * block.y * block.z, grid.x * grid.y * grid.z);
      error = runCooperative(name, grid, block, sharedBytes, sharedLimit, body, launch);
      cost::gridEnd(grid.x * grid.y * grid.z);
    }
    cost::endLaunch(counted);
    if (!error.empty()) setSticky(cudaErrorLaunchFailure, error);
    return;
  }
  GridJob job;
  job.name = name;
  job.grid = grid, job.block = block, job.sharedBytes = sharedBytes, job.sharedLimit = sharedLimit, job.body = &body;
  job.total = uint64_t(grid.x) * grid.y * grid.z;
  job.launch = launch;
  job.counted = cost::beginLaunch(name, grid, block);
  pool().run(job);
  cost::endLaunch(job.counted);
  if (job.failed) setSticky(cudaErrorLaunchFailure, job.error);
}

}  // namespace bssn::emu

extern "C" {

void bssnEmuSyncThreads(void) { bssn::emu::BlockRunner::running().barrier(); }

void bssnEmuGridSync(void) { bssn::emu::BlockRunner::running().gridBarrier(); }

void* bssnEmuSharedArray(const void* key, size_t bytes, size_t align) {
  return bssn::emu::BlockRunner::running().sharedArray(key, bytes, align);
}

uint64_t bssnEmuWarpCollective(unsigned int mask, int op, uint64_t value, int arg, int width) {
  return bssn::emu::BlockRunner::running().collective(mask, op, value, arg, width);
}

}  // extern "C"
