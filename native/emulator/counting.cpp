// Counting what a GPU would pay, from the accesses kernels really make. The kernel translation units of the
// emulated build are compiled with g++'s -fsanitize=thread instrumentation (no runtime linked), so every load, store
// and atomic calls one of the __tsan_* callbacks at the end of this file with its address; the callback's return
// address is the access site. While counting is off a callback is one relaxed load. While it is on, an access
// counts when a GPU thread runs on the calling OS thread (not host code of the .cu files) and its address is inside
// a device allocation (not shared memory, fiber stacks or the emulator's own state).
//
// Warp-wide accesses: the lanes of a block's fibers run one after another, so the 32 lanes of a warp at "the same
// load" are the accesses with the same site and the same occurrence count of that site in each lane (the k-th pass
// of every lane through a loop's load is one warp-wide access, as on a SIMT machine). Each such group touches a set
// of 32-byte sectors: 4 for a coalesced fp32 access, 32 for a scattered one; their sum over a launch is its total
// sectors (L2 traffic). Distinct sectors (DRAM traffic if every re-read hits L2) come from a bitmap per allocation
// and direction, made on the first access of a launch. Blocks run on several workers: each keeps its own counts
// and merges them into the launch when it is done with it.
#include "counting.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime.h"

namespace bssn::emu::cost {

std::atomic<bool> enabled{false};

HostCounts& host() {
  static HostCounts* h = new HostCounts();
  return *h;
}

namespace {

constexpr unsigned kSectorShift = 5;  // 32-byte sectors
constexpr unsigned kLoad = 0, kStore = 1;

// A device allocation as the launch saw it when it began, with its distinct-sector bitmaps (made on first touch).
struct Range {
  uintptr_t base = 0, end = 0;
  std::atomic<std::atomic<uint64_t>*> bits[2] = {};
  ~Range() {
    delete[] bits[0].load();
    delete[] bits[1].load();
  }
  std::atomic<uint64_t>* bitmap(unsigned direction) {
    std::atomic<uint64_t>* b = bits[direction].load(std::memory_order_acquire);
    if (b) return b;
    const size_t sectors = ((end - base) >> kSectorShift) + 2;
    auto* fresh = new std::atomic<uint64_t>[sectors / 64 + 1]();
    if (bits[direction].compare_exchange_strong(b, fresh, std::memory_order_acq_rel)) return fresh;
    delete[] fresh;
    return b;
  }
};

struct AccessCounts {
  int64_t warpAccesses = 0, sectors = 0, distinct = 0, bytes = 0;
  void add(const AccessCounts& o) {
    warpAccesses += o.warpAccesses, sectors += o.sectors, distinct += o.distinct, bytes += o.bytes;
  }
};

BssnEmuAccessCost toApi(const AccessCounts& c) { return {c.warpAccesses, c.sectors, c.distinct, c.bytes}; }

struct LaunchRecord {
  std::string kernel;
  int64_t replay;
  dim3 grid, block;
  int64_t blocks, maxThreadAccesses;
  AccessCounts access[2];
};

// What counting has gathered since it was started.
struct Totals {
  std::mutex mutex;
  int64_t launches = 0, graphLaunches = 0, graphNodes = 0, blocks = 0, maxThreadAccesses = 0, replays = 0;
  AccessCounts access[2];
  std::vector<LaunchRecord> log;  // capped at kMaxLog; the totals stay exact
};
constexpr size_t kMaxLog = 1 << 16;
Totals& totals() {
  static Totals* t = new Totals();
  return *t;
}

thread_local int64_t currentReplay = 0;  // on a stream's thread, while a graph replay runs

struct PairHash {
  size_t operator()(const std::pair<uint64_t, uint64_t>& k) const {
    uint64_t h = k.first * 0x9E3779B97F4A7C15ull ^ (k.second + 0x632BE59BD9B4E019ull + (k.first << 6));
    return size_t(h ^ (h >> 29));
  }
};

}  // namespace

struct Launch {
  std::string kernel;
  dim3 grid, block;
  int64_t replay = 0;
  std::vector<std::unique_ptr<Range>> ranges;  // by base
  std::mutex mutex;
  int64_t blocks = 0, maxThreadAccesses = 0;
  AccessCounts access[2];

  Range* find(uintptr_t p) {
    auto it = std::upper_bound(ranges.begin(), ranges.end(), p, [](uintptr_t a, const std::unique_ptr<Range>& r) { return a < r->base; });
    if (it == ranges.begin()) return nullptr;
    Range* r = (--it)->get();
    return p < r->end ? r : nullptr;
  }
};

namespace {

// One OS thread's share of the launch it is executing.
struct Worker {
  Launch* launch = nullptr;
  Range* last = nullptr;  // the allocation of the previous access: most accesses hit it again
  AccessCounts access[2];
  int64_t blocks = 0, maxThreadAccesses = 0;
  uint64_t blockStride = 0;  // in a cooperative grid: threads per block (thread indices are the grid's)
  // This block's: accesses per thread, occurrences per (thread, site), and the sectors of each warp-wide access
  // keyed by (occurrence << 6 | warp << 1 | direction, site).
  std::vector<int64_t> threadAccesses;
  std::unordered_map<std::pair<uint64_t, uint64_t>, uint32_t, PairHash> occurrences;
  std::unordered_map<std::pair<uint64_t, uint64_t>, std::vector<uint64_t>, PairHash> groups;
};
thread_local Worker worker;

__attribute__((noinline)) void record(uintptr_t p, size_t bytes, unsigned direction, uintptr_t site) {
  Worker& w = worker;
  const ThreadState* s = current;
  if (!w.launch || !s || bytes == 0) return;
  Range* r = w.last;
  if (!r || p < r->base || p >= r->end) {
    r = w.launch->find(p);
    if (!r) return;  // not device memory
    w.last = r;
  }
  uint64_t t = s->thread.x + uint64_t(s->blockDims.x) * (s->thread.y + uint64_t(s->blockDims.y) * s->thread.z);
  if (w.blockStride) t += w.blockStride * (s->block.x + uint64_t(s->gridDims.x) * (s->block.y + uint64_t(s->gridDims.y) * s->block.z));
  if (t >= w.threadAccesses.size()) return;
  ++w.threadAccesses[t];
  w.access[direction].bytes += int64_t(bytes);
  const uint64_t occurrence = w.occurrences[{t, site}]++;
  std::vector<uint64_t>& group = w.groups[{occurrence << 6 | (t >> 5) << 1 | direction, site}];
  std::atomic<uint64_t>* bits = r->bitmap(direction);
  const uint64_t first = p >> kSectorShift, base = r->base >> kSectorShift;
  // An access running past its allocation counts up to the allocation's end (the bitmap's extent).
  const uint64_t last = std::min<uint64_t>((p + bytes - 1) >> kSectorShift, (r->end - 1) >> kSectorShift);
  for (uint64_t sector = first; sector <= last; ++sector) {
    if (std::find(group.begin(), group.end(), sector) == group.end()) group.push_back(sector);
    const uint64_t i = sector - base, bit = uint64_t(1) << (i % 64);
    if (!(bits[i / 64].fetch_or(bit, std::memory_order_relaxed) & bit)) ++w.access[direction].distinct;
  }
}

}  // namespace

Launch* beginLaunch(const char* name, dim3 grid, dim3 block) {
  if (!on()) return nullptr;
  auto* launch = new Launch();
  launch->kernel = name;
  launch->grid = grid, launch->block = block;
  launch->replay = currentReplay;
  std::vector<std::pair<uintptr_t, size_t>> ranges;
  deviceRanges(ranges);
  for (const auto& [base, bytes] : ranges) {
    launch->ranges.push_back(std::make_unique<Range>());
    launch->ranges.back()->base = base, launch->ranges.back()->end = base + bytes;
  }
  return launch;
}

void endLaunch(Launch* launch) {
  if (!launch) return;
  Totals& t = totals();
  {
    std::lock_guard<std::mutex> lock(t.mutex);
    t.launches++;
    if (launch->replay) t.graphNodes++;
    t.blocks += launch->blocks;
    t.maxThreadAccesses = std::max(t.maxThreadAccesses, launch->maxThreadAccesses);
    for (unsigned d : {kLoad, kStore}) t.access[d].add(launch->access[d]);
    if (t.log.size() < kMaxLog)
      t.log.push_back({launch->kernel, launch->replay, launch->grid, launch->block, launch->blocks, launch->maxThreadAccesses,
                       {launch->access[0], launch->access[1]}});
  }
  delete launch;
}

WorkerScope::WorkerScope(Launch* launch) : launch_(launch) {
  if (!launch) return;
  worker.launch = launch;
  worker.last = nullptr;
}

WorkerScope::~WorkerScope() {
  if (!launch_) return;
  Worker& w = worker;
  {
    std::lock_guard<std::mutex> lock(launch_->mutex);
    for (unsigned d : {kLoad, kStore}) launch_->access[d].add(w.access[d]);
    launch_->blocks += w.blocks;
    launch_->maxThreadAccesses = std::max(launch_->maxThreadAccesses, w.maxThreadAccesses);
  }
  w.access[0] = w.access[1] = {};
  w.blocks = w.maxThreadAccesses = 0;
  w.launch = nullptr;
  w.last = nullptr;
}

void blockBegin(unsigned threads) {
  if (worker.launch) worker.threadAccesses.assign(threads, 0);
}

void blockEnd() {
  Worker& w = worker;
  if (!w.launch) return;
  for (const auto& [key, sectors] : w.groups) {
    AccessCounts& c = w.access[key.first & 1];
    c.warpAccesses++;
    c.sectors += int64_t(sectors.size());
  }
  for (int64_t n : w.threadAccesses) w.maxThreadAccesses = std::max(w.maxThreadAccesses, n);
  w.blocks++;
  // A map that grew large for one block would make every later clear() pay for its buckets.
  if (w.groups.size() > 4096) decltype(w.groups)().swap(w.groups);
  else w.groups.clear();
  if (w.occurrences.size() > 4096) decltype(w.occurrences)().swap(w.occurrences);
  else w.occurrences.clear();
}

void gridBegin(unsigned threadsPerBlock, unsigned blocks) {
  if (!worker.launch) return;
  worker.threadAccesses.assign(size_t(threadsPerBlock) * blocks, 0);
  worker.blockStride = threadsPerBlock;
}

void gridEnd(unsigned blocks) {
  if (!worker.launch) return;
  blockEnd();
  worker.blocks += int64_t(blocks) - 1;
  worker.blockStride = 0;
}

ReplayScope::ReplayScope(size_t nodes) {
  if (!on()) return;
  Totals& t = totals();
  std::lock_guard<std::mutex> lock(t.mutex);
  t.graphLaunches++;
  currentReplay = ++t.replays;
  (void)nodes;  // the nodes count as they run (graphNodes), so a replay a fault stops counts what ran
}

ReplayScope::~ReplayScope() { currentReplay = 0; }

}  // namespace bssn::emu::cost

using namespace bssn::emu;

extern "C" {

int bssnEmuCountingAvailable(void) { return BSSN_EMU_COUNTING; }

void bssnEmuCountingStart(void) {
  drainDevice();  // what was enqueued before runs uncounted
  cost::Totals& t = cost::totals();
  {
    std::lock_guard<std::mutex> lock(t.mutex);
    t.launches = t.graphLaunches = t.graphNodes = t.blocks = t.maxThreadAccesses = t.replays = 0;
    t.access[0] = t.access[1] = {};
    t.log.clear();
  }
  cost::HostCounts& h = cost::host();
  for (auto field : {&cost::HostCounts::synchronizations, &cost::HostCounts::deviceAllocations, &cost::HostCounts::pinnedAllocations,
                     &cost::HostCounts::bytesToDevice, &cost::HostCounts::bytesToHost, &cost::HostCounts::bytesDeviceToDevice})
    (h.*field) = 0;
  cost::enabled = BSSN_EMU_COUNTING != 0;
}

void bssnEmuCountingStop(BssnEmuCost* out) {
  // The work enqueued while counting runs to its end, counted; this wait itself is no synchronization of the code's.
  drainDevice();
  cost::enabled = false;
  if (!out) return;
  cost::Totals& t = cost::totals();
  const cost::HostCounts& h = cost::host();
  std::lock_guard<std::mutex> lock(t.mutex);
  *out = {t.launches, t.graphLaunches, t.graphNodes, t.blocks, cost::toApi(t.access[0]), cost::toApi(t.access[1]), t.maxThreadAccesses,
          h.synchronizations.load(), h.deviceAllocations.load(), h.pinnedAllocations.load(), h.bytesToDevice.load(), h.bytesToHost.load(),
          h.bytesDeviceToDevice.load()};
}

size_t bssnEmuLaunchCosts(BssnEmuLaunchCost* out, size_t capacity) {
  cost::Totals& t = cost::totals();
  std::lock_guard<std::mutex> lock(t.mutex);
  for (size_t i = 0; i < t.log.size() && i < capacity; ++i) {
    const cost::LaunchRecord& r = t.log[i];
    out[i] = {r.kernel.c_str(), r.replay, {r.grid.x, r.grid.y, r.grid.z}, {r.block.x, r.block.y, r.block.z}, r.blocks,
              cost::toApi(r.access[0]), cost::toApi(r.access[1]), r.maxThreadAccesses};
  }
  return t.log.size();
}

}  // extern "C"

#if BSSN_EMU_COUNTING
// The instrumentation's entry points: g++ -fsanitize=thread with function entry and exit left out calls these for
// every load, store and atomic of the kernel translation units (ThreadSanitizer's rather than AddressSanitizer's
// callbacks because g++'s ASan drops the check of a store dominated by a load of the same address, so
// `x[i] += v` would count no store). The atomics must also do their operation: sequentially consistent, whatever
// order was asked (never weaker). An atomic read-modify-write counts as a load and a store. The ASan build does not
// compile these: counting is off there.
namespace {
inline void countAccess(uintptr_t p, size_t n, unsigned direction, void* site) {
  if (cost::on()) cost::record(p, n, direction, uintptr_t(site));
}
}  // namespace

#define BSSN_EMU_ACCESS(n)                                                                                                \
  extern "C" BSSN_EMU_API void __tsan_read##n(void* p) { countAccess(uintptr_t(p), n, cost::kLoad, __builtin_return_address(0)); }  \
  extern "C" BSSN_EMU_API void __tsan_write##n(void* p) { countAccess(uintptr_t(p), n, cost::kStore, __builtin_return_address(0)); } \
  extern "C" BSSN_EMU_API void __tsan_unaligned_read##n(void* p) { countAccess(uintptr_t(p), n, cost::kLoad, __builtin_return_address(0)); } \
  extern "C" BSSN_EMU_API void __tsan_unaligned_write##n(void* p) { countAccess(uintptr_t(p), n, cost::kStore, __builtin_return_address(0)); }
BSSN_EMU_ACCESS(1)
BSSN_EMU_ACCESS(2)
BSSN_EMU_ACCESS(4)
BSSN_EMU_ACCESS(8)
BSSN_EMU_ACCESS(16)

#define BSSN_EMU_RMW(bits, type, op, builtin)                                                                     \
  extern "C" BSSN_EMU_API type __tsan_atomic##bits##_##op(volatile type* a, type v, int) {                        \
    countAccess(uintptr_t(a), sizeof(type), cost::kLoad, __builtin_return_address(0));                                 \
    countAccess(uintptr_t(a), sizeof(type), cost::kStore, __builtin_return_address(0));                                \
    return builtin(a, v, __ATOMIC_SEQ_CST);                                                                         \
  }
#define BSSN_EMU_ATOMICS(bits, type)                                                                                \
  extern "C" BSSN_EMU_API type __tsan_atomic##bits##_load(const volatile type* a, int) {                           \
    countAccess(uintptr_t(a), sizeof(type), cost::kLoad, __builtin_return_address(0));                                  \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                                     \
  }                                                                                                                  \
  extern "C" BSSN_EMU_API void __tsan_atomic##bits##_store(volatile type* a, type v, int) {                        \
    countAccess(uintptr_t(a), sizeof(type), cost::kStore, __builtin_return_address(0));                                 \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                                        \
  }                                                                                                                  \
  BSSN_EMU_RMW(bits, type, exchange, __atomic_exchange_n)                                                           \
  BSSN_EMU_RMW(bits, type, fetch_add, __atomic_fetch_add)                                                           \
  BSSN_EMU_RMW(bits, type, fetch_sub, __atomic_fetch_sub)                                                           \
  BSSN_EMU_RMW(bits, type, fetch_and, __atomic_fetch_and)                                                           \
  BSSN_EMU_RMW(bits, type, fetch_or, __atomic_fetch_or)                                                             \
  BSSN_EMU_RMW(bits, type, fetch_xor, __atomic_fetch_xor)                                                           \
  BSSN_EMU_RMW(bits, type, fetch_nand, __atomic_fetch_nand)                                                         \
  extern "C" BSSN_EMU_API int __tsan_atomic##bits##_compare_exchange_strong(volatile type* a, type* expected, type v, int, int) { \
    countAccess(uintptr_t(a), sizeof(type), cost::kLoad, __builtin_return_address(0));                                  \
    countAccess(uintptr_t(a), sizeof(type), cost::kStore, __builtin_return_address(0));                                 \
    return __atomic_compare_exchange_n(a, expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                  \
  }                                                                                                                  \
  extern "C" BSSN_EMU_API int __tsan_atomic##bits##_compare_exchange_weak(volatile type* a, type* expected, type v, int, int) { \
    countAccess(uintptr_t(a), sizeof(type), cost::kLoad, __builtin_return_address(0));                                  \
    countAccess(uintptr_t(a), sizeof(type), cost::kStore, __builtin_return_address(0));                                 \
    return __atomic_compare_exchange_n(a, expected, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                   \
  }                                                                                                                  \
  extern "C" BSSN_EMU_API type __tsan_atomic##bits##_compare_exchange_val(volatile type* a, type expected, type v, int, int) { \
    countAccess(uintptr_t(a), sizeof(type), cost::kLoad, __builtin_return_address(0));                                  \
    countAccess(uintptr_t(a), sizeof(type), cost::kStore, __builtin_return_address(0));                                 \
    __atomic_compare_exchange_n(a, &expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                         \
    return expected;                                                                                                 \
  }
BSSN_EMU_ATOMICS(8, int8_t)
BSSN_EMU_ATOMICS(16, int16_t)
BSSN_EMU_ATOMICS(32, int32_t)
BSSN_EMU_ATOMICS(64, int64_t)

extern "C" {
BSSN_EMU_API void __tsan_read_range(void* p, unsigned long n) { countAccess(uintptr_t(p), n, cost::kLoad, __builtin_return_address(0)); }
BSSN_EMU_API void __tsan_write_range(void* p, unsigned long n) { countAccess(uintptr_t(p), n, cost::kStore, __builtin_return_address(0)); }
BSSN_EMU_API void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
BSSN_EMU_API void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
// A constructor of each instrumented translation unit calls it; virtual calls report their vtable pointer.
BSSN_EMU_API void __tsan_init(void) {}
BSSN_EMU_API void __tsan_vptr_read(void**) {}
BSSN_EMU_API void __tsan_vptr_update(void**, void*) {}
BSSN_EMU_API void __tsan_func_entry(void*) {}
BSSN_EMU_API void __tsan_func_exit(void) {}
}
#endif
