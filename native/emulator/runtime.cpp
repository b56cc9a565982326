// libcudart_emu's host runtime: one emulated device whose memory is host memory, streams that run their work on
// their own threads in order, events with timing, stream-ordered allocation, pinned host memory, and the CUDA
// error model (a per-thread last error; sticky faults that end the context), CUDA IPC between processes, and stream
// capture into CUDA graphs (kernels, copies, memsets, child graphs, library calls). See README.md beside this file.
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define BSSN_EMU_ASAN 1
#else
#define BSSN_EMU_ASAN 0
#endif

#include "counting.h"
#include "runtime.h"

using namespace bssn::emu;

namespace bssn::emu {

namespace {

thread_local cudaError_t lastError = cudaSuccess;

std::mutex stickyMutex;
std::atomic<int> sticky{cudaSuccess};
std::string stickyText;  // written once, before `sticky` is published

cudaError_t fail(cudaError_t error) {
  lastError = error;
  return error;
}

// Every entry point starts here: after a sticky fault, nothing works any more.
#define BSSN_EMU_ENTER()                                             \
  do {                                                               \
    const cudaError_t sticky_ = stickyError();                       \
    if (sticky_ != cudaSuccess) return fail(sticky_);                \
  } while (0)

// Returns a failed check's error from the calling entry point (kept as the last error, never sticky).
#define BSSN_EMU_CHECK(expr)                               \
  do {                                                     \
    const cudaError_t check_ = (expr);                     \
    if (check_ != cudaSuccess) return fail(check_);        \
  } while (0)

// The card whose residency limits the emulator checks: an H100 (SXM), 132 SMs.
constexpr int kMultiprocessors = 132;
constexpr size_t kSharedPerSM = 233472, kSharedPerBlockOptin = 232448, kReservedSharedPerBlock = 1024;

// Kernels' cudaFuncAttributeMaxDynamicSharedMemorySize, by entry address (48 KiB where never set).
std::mutex functionsMutex;
std::map<const void*, size_t>& maxDynamicShared() {
  static auto* m = new std::map<const void*, size_t>();
  return *m;
}
size_t dynamicSharedLimit(const void* entry) {
  std::lock_guard<std::mutex> lock(functionsMutex);
  const auto it = maxDynamicShared().find(entry);
  return it == maxDynamicShared().end() ? size_t(48u << 10) : it->second;
}

// Blocks of `threads` threads and `sharedBytes` dynamic shared memory one SM holds at once, as the occupancy
// calculator says for an H100: 2048 threads in whole warps, 32 blocks, and 228 KiB of shared memory with 1 KiB
// reserved per block, in 128-byte units. Registers and static shared memory are not modelled.
int residentBlocks(unsigned threads, size_t sharedBytes) {
  if (threads == 0 || threads > 1024) return 0;
  const unsigned warps = (threads + 31) / 32;
  const size_t perBlock = (sharedBytes + kReservedSharedPerBlock + 127) / 128 * 128;
  return int(std::min<size_t>({32, 64 / warps, kSharedPerSM / perBlock}));
}

int64_t envBytes(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoll(v, nullptr, 10) : fallback;
}

struct Allocation {
  size_t bytes;
  bool device;
  bool freeing = false;  // cudaFreeAsync was called: no new work may use it, work already enqueued still may
  // cudaMalloc memory is a shared mapping of a memfd, so that cudaIpcGetMemHandle can export it; pool memory
  // (cudaMallocAsync) is heap memory and is not exportable, as in CUDA.
  bool mapped = false;  // a mapping (mapShared), not heap memory
  int fd = -1;          // the memfd of this process's own cudaMalloc memory (what other processes open)
  uint64_t secret = 0;  // in the memfd's name: proves that a handle still names this memfd
  int imports = 0;      // > 0: another process's allocation, opened here this many times (cudaIpcOpenMemHandle)
};

// Every device and pinned allocation, by address: copies are checked against it as a GPU's MMU would.
class Memory {
 public:
  std::mutex mutex;
  std::map<uintptr_t, Allocation> live;
  int64_t deviceBytes = 0;  // returns to the pool when a free runs in stream order
  int64_t capacity = envBytes("BSSN_EMU_DEVICE_MEMORY", int64_t(16) << 30);
  std::atomic<int64_t> failAllocationIn{0};
  std::atomic<int64_t> failAllocationsAfter{0};  // failures still to come right after the failAllocationIn-th

  // The allocation holding [p, p + bytes), if any.
  const Allocation* find(const void* p, size_t bytes, uintptr_t* start = nullptr) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    auto it = live.upper_bound(a);
    if (it == live.begin()) return nullptr;
    --it;
    if (a + bytes > it->first + it->second.bytes || a < it->first) return nullptr;
    if (start) *start = it->first;
    return &it->second;
  }
};
Memory& memory() {
  static Memory* m = new Memory();  // never destroyed: streams may free into it during exit
  return *m;
}

std::atomic<int64_t> failLaunchIn{0};
std::atomic<int64_t> refuseCooperativeIn{0};  // bssnEmuRefuseCooperative

void* alignedAlloc(size_t bytes) {
  void* p = nullptr;
  // 256-byte alignment, as cudaMalloc guarantees (vectorized kernels rely on it).
  if (posix_memalign(&p, 256, bytes ? bytes : 1) != 0) return nullptr;
  return p;
}

// ---- shared memory for IPC: memfds that other processes open through /proc/<pid>/fd/<fd>

size_t pageBytes() {
  static const size_t page = size_t(sysconf(_SC_PAGESIZE));
  return page;
}
size_t mappedBytes(size_t bytes) { return (bytes + pageBytes() - 1) / pageBytes() * pageBytes(); }

// Maps the first `bytes` (rounded up to pages) of the memfd `fd`, shared and page-aligned, behind an inaccessible
// guard page (an underflow faults instead of writing into a neighbour); nullptr on failure.
void* mapShared(int fd, size_t bytes) {
  const size_t length = mappedBytes(bytes), page = pageBytes();
  void* reserved = mmap(nullptr, length + page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserved == MAP_FAILED) return nullptr;
  char* p = static_cast<char*>(reserved) + page;
  if (mmap(p, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
    munmap(reserved, length + page);
    return nullptr;
  }
#if BSSN_EMU_ASAN
  __asan_poison_memory_region(p + bytes, length - bytes);  // the rest of the last page: an overrun is reported
#endif
  return p;
}

void unmapShared(void* p, size_t bytes) {
  const size_t length = mappedBytes(bytes), page = pageBytes();
#if BSSN_EMU_ASAN
  __asan_unpoison_memory_region(p, length);  // shadow outlives munmap (see fiber.cpp)
#endif
  munmap(static_cast<char*>(p) - page, length + page);
}

uint64_t newSecret() {
  static std::mutex mutex;
  static std::mt19937_64 random{(uint64_t(std::random_device{}()) << 32) ^ std::random_device{}()};
  std::lock_guard<std::mutex> lock(mutex);
  // With the pid: a child forked without exec continues the same sequence.
  return random() ^ uint64_t(getpid()) * 0x9E3779B97F4A7C15ull;
}

std::string memfdName(const char* kind, uint64_t secret) {
  char name[64];
  std::snprintf(name, sizeof name, "bssn-emu-%s-%016llx", kind, static_cast<unsigned long long>(secret));
  return name;
}

// A new memfd of `bytes` (zeros) mapped with mapShared; nullptr when none can be had (e.g. out of descriptors).
void* createShared(const char* kind, size_t bytes, int* fd, uint64_t* secret) {
  *secret = newSecret();
  // The system call, not glibc's memfd_create wrapper (glibc 2.27+): the portable build needs no newer glibc.
  *fd = int(syscall(SYS_memfd_create, memfdName(kind, *secret).c_str(), 1u /* MFD_CLOEXEC */));
  if (*fd < 0) return nullptr;
  void* p = ftruncate(*fd, off_t(mappedBytes(bytes))) == 0 ? mapShared(*fd, bytes) : nullptr;
  if (!p) {
    close(*fd);
    *fd = -1;
  }
  return p;
}

// What a cudaIpcMemHandle_t or cudaIpcEventHandle_t holds: where another process finds the exporter's memfd
// (/proc/<pid>/fd/<fd>), and the secret in its name, so that a stale handle (the fd closed or reused, the
// process gone and its pid reused) or a forged one is refused rather than mapping some other file.
enum : uint32_t { kIpcMemory = 0x6d6e7362, kIpcEvent = 0x656e7362 };
struct IpcHandle {
  uint32_t kind;
  int32_t pid, fd;
  uint32_t unused;
  uint64_t secret;
  uint64_t bytes;  // memory: the allocation's size
};
static_assert(sizeof(IpcHandle) <= CUDA_IPC_HANDLE_SIZE, "an IPC handle has 64 bytes");

template <typename Handle>
void pack(Handle* out, const IpcHandle& h) {
  std::memset(out, 0, sizeof *out);
  std::memcpy(out->reserved, &h, sizeof h);
}
template <typename Handle>
IpcHandle unpack(const Handle& in) {
  IpcHandle h;
  std::memcpy(&h, in.reserved, sizeof h);
  return h;
}

// Whether the /proc/.../fd/N link `path` is the memfd named `name`.
bool isMemfd(const std::string& path, const std::string& name) {
  char link[128] = {};
  const ssize_t n = readlink(path.c_str(), link, sizeof link - 1);
  const std::string expected = "/memfd:" + name;  // then " (deleted)"
  return n > 0 && std::strncmp(link, expected.c_str(), expected.size()) == 0 &&
         (link[expected.size()] == 0 || link[expected.size()] == ' ');
}

// Opens the memfd a handle names, checked to be the one exported with `bytes` (rounded up to pages).
cudaError_t openExported(const IpcHandle& h, uint32_t kind, size_t bytes, int* fd) {
  *fd = -1;
  if (h.kind != kind || h.pid <= 0 || h.fd < 0) return cudaErrorInvalidValue;
  // CUDA refuses a handle in the process that exported it (cudaErrorDeviceUninitialized, "invalid device context").
  if (h.pid == getpid()) return cudaErrorDeviceUninitialized;
  const std::string path = "/proc/" + std::to_string(h.pid) + "/fd/" + std::to_string(h.fd);
  const std::string name = memfdName(kind == kIpcMemory ? "mem" : "event", h.secret);
  // Checked before opening (a forged handle must not open a device or a terminal), and again after, on what was
  // opened: the descriptor may have been closed and reused in between. The exporter gone, freed: not there.
  if (!isMemfd(path, name)) return cudaErrorInvalidResourceHandle;
  *fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (*fd < 0) return cudaErrorInvalidResourceHandle;
  // Its size by lseek, not fstat (a glibc 2.33 symbol).
  if (isMemfd("/proc/self/fd/" + std::to_string(*fd), name) && uint64_t(lseek(*fd, 0, SEEK_END)) == mappedBytes(bytes))
    return cudaSuccess;
  close(*fd);
  *fd = -1;
  return cudaErrorInvalidResourceHandle;
}

// Device memory: from a memfd when `shareable` (cudaMalloc), else from the heap (the pool of cudaMallocAsync).
cudaError_t allocateDevice(void** ptr, size_t bytes, bool shareable) {
  if (!ptr) return fail(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  Memory& m = memory();
  if (m.failAllocationIn.load() > 0 && m.failAllocationIn.fetch_sub(1) == 1) {
    if (m.failAllocationsAfter.load() > 0 && m.failAllocationsAfter.fetch_sub(1) > 0) m.failAllocationIn.store(1);
    return fail(cudaErrorMemoryAllocation);
  }
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    if (m.deviceBytes + int64_t(bytes) > m.capacity) return fail(cudaErrorMemoryAllocation);
    m.deviceBytes += int64_t(bytes);
  }
  Allocation a{bytes, true};
  void* p = shareable ? createShared("mem", bytes, &a.fd, &a.secret) : nullptr;
  a.mapped = p != nullptr;
  // Without a memfd (none to be had: out of descriptors), heap memory, which cudaIpcGetMemHandle refuses.
  if (!p) p = alignedAlloc(bytes);
  std::lock_guard<std::mutex> lock(m.mutex);
  if (!p) {
    m.deviceBytes -= int64_t(bytes);
    return fail(cudaErrorMemoryAllocation);
  }
  // Fresh device memory holds whatever was there before: never zeros.
  std::memset(p, 0xFF, bytes);
  m.live[reinterpret_cast<uintptr_t>(p)] = a;
  *ptr = p;
  cost::count(&cost::HostCounts::deviceAllocations);
  return cudaSuccess;
}

// Marks a device allocation as being freed (later calls may not use it) and returns its size; 0 if it is not a
// live device allocation (never allocated, or freed already).
size_t beginFree(void* ptr) {
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  auto it = m.live.find(reinterpret_cast<uintptr_t>(ptr));
  // Not another process's memory either: that goes with cudaIpcCloseMemHandle.
  if (it == m.live.end() || !it->second.device || it->second.freeing || it->second.imports) return 0;
  it->second.freeing = true;
  return it->second.bytes;
}

// The free itself, in stream order: from here on, work that touches the memory touches freed memory.
void releaseDevice(void* ptr) {
  Allocation a;
  {
    std::lock_guard<std::mutex> lock(memory().mutex);
    auto it = memory().live.find(reinterpret_cast<uintptr_t>(ptr));
    a = it->second;
    memory().live.erase(it);
    memory().deviceBytes -= int64_t(a.bytes);
  }
  if (!a.mapped) {
    std::free(ptr);
    return;
  }
  // Other processes that opened it keep their own mappings of the memfd: the memory lives on there.
  unmapShared(ptr, a.bytes);
  if (a.fd >= 0) close(a.fd);
}

// Every live stream, for the calls that synchronize the whole device.
std::mutex streamsMutex;
std::vector<CUstream_st*>& streams() {
  static auto* all = new std::vector<CUstream_st*>();
  return *all;
}

CUstream_st& defaultStream() {
  static CUstream_st* s = new CUstream_st();
  return *s;
}

void synchronizeDevice() {
  std::vector<CUstream_st*> all;
  {
    std::lock_guard<std::mutex> lock(streamsMutex);
    all = streams();
  }
  // Not under streamsMutex: a stream being destroyed meanwhile stays listed (and alive) until it has drained.
  for (CUstream_st* s : all) s->synchronize();
}
bool isLegacy(cudaStream_t s) { return !s || s == cudaStreamLegacy; }
CUstream_st& streamOf(cudaStream_t s) { return isLegacy(s) ? defaultStream() : *s; }

int deviceCount() {
  // BSSN_EMU_DEVICES=0 emulates a machine whose driver sees no GPU.
  return int(envBytes("BSSN_EMU_DEVICES", 1));
}

// ---- stream capture (CUDA graphs): what a capturing stream has recorded, and the checks other calls make

// A captured node. A kernel launch: the body holds the launch's arguments as bound at capture, and runs again at
// every replay (kernels only read their parameters, so one body serves every replay, however many are in flight).
// Any other node (a copy, a memset, an emulated cuBLAS or cuDNN call) is `work`, its pointers and scalars as at
// capture, run again at every replay; it has no kernel name.
struct GraphNode {
  std::string kernel;
  dim3 grid, block;
  size_t sharedBytes;
  std::shared_ptr<KernelBody> body;
  size_t sharedLimit = 48u << 10;  // static + dynamic shared bytes a block may use (runGrid)
  bool cooperative = false;        // every block resident at once (cudaLaunchCooperativeKernel)
  std::shared_ptr<const std::function<void()>> work;
  // A copy's bytes and the count they go to at each replay (none for host to host), as an eager copy's.
  std::atomic<int64_t> cost::HostCounts::*copied = nullptr;
  size_t bytes = 0;
};

// A node of other work than a kernel.
GraphNode workNode(std::function<void()> work, std::atomic<int64_t> cost::HostCounts::*copied = nullptr, size_t bytes = 0) {
  GraphNode node{};
  node.work = std::make_shared<const std::function<void()>>(std::move(work));
  node.copied = copied;
  node.bytes = bytes;
  return node;
}

struct Capture {
  cudaStreamCaptureMode mode;
  std::thread::id thread;  // that began it: only it may end a Global or ThreadLocal capture
  bool blocking;           // a stream that synchronizes with the legacy stream (not cudaStreamNonBlocking)
  bool invalidated = false;
  std::vector<GraphNode> nodes;
  unsigned long long id = 0;  // unique per capture (cudaStreamGetCaptureInfo)
};

std::mutex captureMutex;
std::map<cudaStream_t, Capture>& captures() {  // under captureMutex
  static auto* all = new std::map<cudaStream_t, Capture>();
  return *all;
}
std::atomic<int> capturingStreams{0};  // captures().size(): every call checks it, and locks only while some capture
// The calling thread's interaction with captures (cudaThreadExchangeStreamCaptureMode), Global by default.
thread_local cudaStreamCaptureMode threadCaptureMode = cudaStreamCaptureModeGlobal;

// Work enqueued on `stream` that the emulator does not capture (README.md, "CUDA graphs"): refused while the
// stream captures, and on the legacy stream while a blocking stream captures (that would make the legacy stream
// depend on the capture, as CUDA refuses too). Either invalidates the capture; one invalidated already answers so.
cudaError_t captureConflict(cudaStream_t stream) {
  if (capturingStreams.load() == 0) return cudaSuccess;
  std::lock_guard<std::mutex> lock(captureMutex);
  cudaError_t st = cudaSuccess;
  if (isLegacy(stream)) {
    for (auto& [s, c] : captures())
      if (c.blocking) c.invalidated = true, st = cudaErrorStreamCaptureImplicit;
    return st;
  }
  auto it = captures().find(stream);
  if (it == captures().end()) return cudaSuccess;
  if (it->second.invalidated) return cudaErrorStreamCaptureInvalidated;
  it->second.invalidated = true;
  return cudaErrorStreamCaptureUnsupported;
}

// Work other than a kernel enqueued on `stream`, which CUDA captures as a node (a copy, a memset, a child graph, a
// library's kernels): appended to the stream's capture (*recorded set) if it captures; otherwise as
// captureConflict, on the legacy stream while a blocking stream captures.
cudaError_t captureNodes(cudaStream_t stream, const std::vector<GraphNode>& nodes, bool* recorded) {
  *recorded = false;
  if (capturingStreams.load() == 0) return cudaSuccess;
  if (isLegacy(stream)) return captureConflict(stream);
  std::lock_guard<std::mutex> lock(captureMutex);
  auto it = captures().find(stream);
  if (it == captures().end()) return cudaSuccess;
  if (it->second.invalidated) return cudaErrorStreamCaptureInvalidated;
  it->second.nodes.insert(it->second.nodes.end(), nodes.begin(), nodes.end());
  *recorded = true;
  return cudaSuccess;
}

// A potentially unsafe call (allocation, free, synchronous copy, synchronization): as in CUDA 13, refused while the
// calling thread has a capture that is not Relaxed, or, the thread's own mode being Global (the default), while any
// thread has a Global capture; the captures that forbid it are invalidated. A graph cannot contain such a call, so
// code that makes one in the middle of a capture is wrong on a GPU: here it fails in CI too.
cudaError_t refuseUnsafe() {
  if (capturingStreams.load() == 0 || threadCaptureMode == cudaStreamCaptureModeRelaxed) return cudaSuccess;
  std::lock_guard<std::mutex> lock(captureMutex);
  const std::thread::id self = std::this_thread::get_id();
  cudaError_t st = cudaSuccess;
  for (auto& [s, c] : captures()) {
    const bool own = c.thread == self && c.mode != cudaStreamCaptureModeRelaxed;
    const bool global = threadCaptureMode == cudaStreamCaptureModeGlobal && c.mode == cudaStreamCaptureModeGlobal;
    if (own || global) c.invalidated = true, st = cudaErrorStreamCaptureUnsupported;
  }
  return st;
}

}  // namespace

cudaError_t stickyError() { return cudaError_t(sticky.load(std::memory_order_acquire)); }

namespace {
// What a synchronizing call returns once its wait is over: the context's fault, if the work faulted.
cudaError_t afterWait() { return stickyError() == cudaSuccess ? cudaSuccess : fail(stickyError()); }
}  // namespace

void setSticky(cudaError_t error, const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(stickyMutex);
    if (sticky.load() != cudaSuccess) return;  // the first fault is the one reported
    stickyText = std::string(cudaGetErrorString(error)) + " [emulator: " + message + "]";
    sticky.store(error, std::memory_order_release);
  }
  std::fprintf(stderr, "bssn CUDA emulator: %s\n", message.c_str());
}

Stats& stats() {
  static Stats* s = new Stats();
  return *s;
}

void deviceRanges(std::vector<std::pair<uintptr_t, size_t>>& out) {
  std::lock_guard<std::mutex> lock(memory().mutex);
  for (const auto& [base, a] : memory().live)
    if (a.device) out.emplace_back(base, a.bytes);
}

void drainDevice() { synchronizeDevice(); }

}  // namespace bssn::emu

// ---- streams

CUstream_st::CUstream_st() : thread_([this] { loop(); }) {
  std::lock_guard<std::mutex> lock(streamsMutex);
  streams().push_back(this);
}

CUstream_st::~CUstream_st() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  // Listed until drained: a device-wide synchronization meanwhile must wait for this stream's work too.
  std::lock_guard<std::mutex> lock(streamsMutex);
  streams().erase(std::remove(streams().begin(), streams().end(), this), streams().end());
}

void CUstream_st::enqueue(std::function<void()> work) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(work));
    ++enqueued_;
  }
  wake_.notify_one();
}

void CUstream_st::synchronize() {
  std::unique_lock<std::mutex> lock(mutex_);
  const uint64_t ticket = enqueued_;
  progressed_.wait(lock, [&] { return completed_ >= ticket; });
}

bool CUstream_st::idle() {
  std::lock_guard<std::mutex> lock(mutex_);
  return completed_ == enqueued_;
}

void CUstream_st::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and drained
    std::function<void()> work = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    work();
    work = nullptr;  // release captured state before reporting progress
    lock.lock();
    ++completed_;
    progressed_.notify_all();
  }
}

// ---- events

namespace {
double nowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// An interprocess event's generations, in a memfd page that every process using the event maps: a record in one
// process and a wait in another meet there. A fresh memfd reads as zeros: never recorded.
struct SharedEventPage {
  std::atomic<uint64_t> recorded, completed;
  std::atomic<uint32_t> wakeups;  // the futex word: bumped at every completion
};
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free,
              "atomics shared between processes must be lock-free");

// A futex shared between processes (no FUTEX_PRIVATE_FLAG): keyed by the page, not by this process's address.
uint32_t* futexWord(std::atomic<uint32_t>& word) { return reinterpret_cast<uint32_t*>(&word); }

struct EventState {
  std::mutex mutex;
  std::condition_variable done;
  uint64_t recorded = 0, completed = 0;  // generations: a record is complete when completed >= its number
  double ms = 0;                         // host steady-clock time at completion
  SharedEventPage* shared = nullptr;     // an interprocess event's generations (then the two above are unused)
  int fd = -1;                           // the exporter's memfd of that page (what handles name)
  uint64_t secret = 0;

  ~EventState() {
    if (shared) unmapShared(shared, sizeof(SharedEventPage));
    if (fd >= 0) close(fd);
  }
  uint64_t record() {
    if (shared) return shared->recorded.fetch_add(1) + 1;
    std::lock_guard<std::mutex> lock(mutex);
    return ++recorded;
  }
  // The latest record's generation (0: never recorded).
  uint64_t latest() {
    if (shared) return shared->recorded.load();
    std::lock_guard<std::mutex> lock(mutex);
    return recorded;
  }
  bool reached(uint64_t generation) {
    if (shared) return shared->completed.load() >= generation;
    std::lock_guard<std::mutex> lock(mutex);
    return completed >= generation;
  }
  void complete(uint64_t generation) {
    if (shared) {
      uint64_t c = shared->completed.load();
      while (c < generation && !shared->completed.compare_exchange_weak(c, generation)) {
      }
      shared->wakeups.fetch_add(1);
      syscall(SYS_futex, futexWord(shared->wakeups), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
      return;
    }
    std::lock_guard<std::mutex> lock(mutex);
    if (generation > completed) {
      completed = generation;
      ms = nowMs();
    }
    done.notify_all();
  }
  void wait(uint64_t generation) {
    if (shared) {
      for (;;) {
        const uint32_t seen = shared->wakeups.load();
        if (shared->completed.load() >= generation) return;
        // Sleeps only while no completion has come since `seen` (else returns at once and looks again).
        syscall(SYS_futex, futexWord(shared->wakeups), FUTEX_WAIT, seen, nullptr, nullptr, 0);
      }
    }
    std::unique_lock<std::mutex> lock(mutex);
    done.wait(lock, [&] { return completed >= generation; });
  }
};
}  // namespace

struct CUevent_st {
  unsigned flags = 0;
  std::shared_ptr<EventState> state = std::make_shared<EventState>();
};

struct CUmemPoolHandle_st {
  uint64_t releaseThreshold = 0;
};

// A captured graph: its kernel launches in capture order.
struct CUgraph_st {
  std::vector<GraphNode> nodes;
};

namespace {
// What an executable graph's replays run. Shared by the handle and every replay enqueued, so that it lives until
// the last has run. Replays of one executable run one at a time, in the order of their cudaGraphLaunch calls,
// even on different streams (CUDA's rule).
struct ExecutableGraph {
  explicit ExecutableGraph(std::vector<GraphNode> n) : nodes(std::move(n)) {}
  const std::vector<GraphNode> nodes;
  std::mutex launching;
  uint64_t launched = 0;  // tickets, taken at cudaGraphLaunch (under `launching`)
  std::mutex mutex;
  std::condition_variable turn;
  uint64_t finished = 0;

  template <typename Body>
  void run(uint64_t ticket, Body&& body) {
    {
      std::unique_lock<std::mutex> lock(mutex);
      turn.wait(lock, [&] { return finished == ticket; });
    }
    body();
    std::lock_guard<std::mutex> lock(mutex);
    ++finished;
    turn.notify_all();
  }
};

std::mutex graphsMutex;
// The live handles: a destroyed or never-created one is refused (cudaErrorInvalidValue), not undefined behaviour.
std::set<const CUgraph_st*>& liveGraphs() {
  static auto* all = new std::set<const CUgraph_st*>();
  return *all;
}
std::set<const CUgraphExec_st*>& liveExecs() {
  static auto* all = new std::set<const CUgraphExec_st*>();
  return *all;
}
}  // namespace

struct CUgraphExec_st {
  std::shared_ptr<ExecutableGraph> graph;
};

extern "C" {

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
#define BSSN_EMU_NAME(e) \
  case e:                \
    return #e;
    BSSN_EMU_NAME(cudaSuccess)
    BSSN_EMU_NAME(cudaErrorInvalidValue)
    BSSN_EMU_NAME(cudaErrorMemoryAllocation)
    BSSN_EMU_NAME(cudaErrorInitializationError)
    BSSN_EMU_NAME(cudaErrorInvalidConfiguration)
    BSSN_EMU_NAME(cudaErrorInvalidMemcpyDirection)
    BSSN_EMU_NAME(cudaErrorInsufficientDriver)
    BSSN_EMU_NAME(cudaErrorInvalidDeviceFunction)
    BSSN_EMU_NAME(cudaErrorNoDevice)
    BSSN_EMU_NAME(cudaErrorInvalidDevice)
    BSSN_EMU_NAME(cudaErrorDeviceUninitialized)
    BSSN_EMU_NAME(cudaErrorMapBufferObjectFailed)
    BSSN_EMU_NAME(cudaErrorNoKernelImageForDevice)
    BSSN_EMU_NAME(cudaErrorECCUncorrectable)
    BSSN_EMU_NAME(cudaErrorInvalidResourceHandle)
    BSSN_EMU_NAME(cudaErrorIllegalState)
    BSSN_EMU_NAME(cudaErrorNotReady)
    BSSN_EMU_NAME(cudaErrorIllegalAddress)
    BSSN_EMU_NAME(cudaErrorLaunchOutOfResources)
    BSSN_EMU_NAME(cudaErrorLaunchTimeout)
    BSSN_EMU_NAME(cudaErrorAssert)
    BSSN_EMU_NAME(cudaErrorHardwareStackError)
    BSSN_EMU_NAME(cudaErrorIllegalInstruction)
    BSSN_EMU_NAME(cudaErrorMisalignedAddress)
    BSSN_EMU_NAME(cudaErrorInvalidAddressSpace)
    BSSN_EMU_NAME(cudaErrorInvalidPc)
    BSSN_EMU_NAME(cudaErrorLaunchFailure)
    BSSN_EMU_NAME(cudaErrorCooperativeLaunchTooLarge)
    BSSN_EMU_NAME(cudaErrorNotSupported)
    BSSN_EMU_NAME(cudaErrorStreamCaptureUnsupported)
    BSSN_EMU_NAME(cudaErrorStreamCaptureInvalidated)
    BSSN_EMU_NAME(cudaErrorStreamCaptureMerge)
    BSSN_EMU_NAME(cudaErrorStreamCaptureUnmatched)
    BSSN_EMU_NAME(cudaErrorStreamCaptureUnjoined)
    BSSN_EMU_NAME(cudaErrorStreamCaptureIsolation)
    BSSN_EMU_NAME(cudaErrorStreamCaptureImplicit)
    BSSN_EMU_NAME(cudaErrorCapturedEvent)
    BSSN_EMU_NAME(cudaErrorStreamCaptureWrongThread)
    BSSN_EMU_NAME(cudaErrorUnknown)
#undef BSSN_EMU_NAME
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  // The context's fault carries the emulator's explanation (which kernel, block and threads).
  if (error != cudaSuccess && error == stickyError()) return stickyText.c_str();
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorDeviceUninitialized: return "invalid device context";
    case cudaErrorMapBufferObjectFailed: return "mapping of buffer object failed";
    case cudaErrorNoKernelImageForDevice: return "no kernel image is available for execution on the device";
    case cudaErrorECCUncorrectable: return "uncorrectable ECC error encountered";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchTimeout: return "the launch timed out and was terminated";
    case cudaErrorAssert: return "device-side assert triggered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorCooperativeLaunchTooLarge: return "too many blocks in cooperative launch";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureMerge: return "operation would result in a merge of separate capture sequences";
    case cudaErrorStreamCaptureUnmatched: return "capture was not ended in the same stream as it began";
    case cudaErrorStreamCaptureUnjoined: return "capturing stream has unjoined work";
    case cudaErrorStreamCaptureIsolation: return "dependency created on uncaptured work in another stream";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorCapturedEvent: return "operation not permitted on an event last recorded in a capturing stream";
    case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
    default: return "unknown error";
  }
}

cudaError_t cudaGetLastError(void) {
  const cudaError_t s = stickyError();
  if (s != cudaSuccess) return s;
  const cudaError_t e = lastError;
  lastError = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) {
  const cudaError_t s = stickyError();
  return s != cudaSuccess ? s : lastError;
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return fail(cudaErrorInvalidValue);
  *count = 0;
  if (deviceCount() <= 0) return fail(cudaErrorNoDevice);
  *count = deviceCount();
  return cudaSuccess;
}

static thread_local int currentDevice = 0;

cudaError_t cudaSetDevice(int device) {
  BSSN_EMU_ENTER();
  if (device < 0 || device >= deviceCount()) return fail(cudaErrorInvalidDevice);
  currentDevice = device;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (!device) return fail(cudaErrorInvalidValue);
  *device = currentDevice;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  BSSN_EMU_ENTER();
  if (!prop) return fail(cudaErrorInvalidValue);
  if (device < 0 || device >= deviceCount()) return fail(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof(*prop));
  std::snprintf(prop->name, sizeof(prop->name), "bssn emulated CUDA device (runs on the CPU)");
  prop->totalGlobalMem = size_t(memory().capacity);
  prop->sharedMemPerBlock = 48 << 10;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024, prop->maxThreadsDim[1] = 1024, prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647, prop->maxGridSize[1] = 65535, prop->maxGridSize[2] = 65535;
  prop->major = 9, prop->minor = 0;
  // An H100's: what cooperative launches and the occupancy calculator are checked against (the blocks of an
  // ordinary grid still run on the executor's workers, one per core).
  prop->multiProcessorCount = kMultiprocessors;
  prop->memoryPoolsSupported = 1;
  prop->sharedMemPerMultiprocessor = kSharedPerSM;
  prop->sharedMemPerBlockOptin = kSharedPerBlockOptin;
  prop->reservedSharedMemPerBlock = kReservedSharedPerBlock;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->maxBlocksPerMultiProcessor = 32;
  prop->cooperativeLaunch = 1;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device) {
  BSSN_EMU_ENTER();
  if (!value) return fail(cudaErrorInvalidValue);
  cudaDeviceProp p;
  const cudaError_t st = cudaGetDeviceProperties(&p, device);
  if (st != cudaSuccess) return st;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = int(p.sharedMemPerBlock); break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMemoryPoolsSupported: *value = 1; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = int(p.sharedMemPerMultiprocessor); break;
    case cudaDevAttrCooperativeLaunch: *value = p.cooperativeLaunch; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = int(p.sharedMemPerBlockOptin); break;
    case cudaDevAttrMaxBlocksPerMultiprocessor: *value = p.maxBlocksPerMultiProcessor; break;
    case cudaDevAttrReservedSharedMemoryPerBlock: *value = int(p.reservedSharedMemPerBlock); break;
    default: return fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
  BSSN_EMU_ENTER();
  BSSN_EMU_CHECK(refuseUnsafe());
  cost::count(&cost::HostCounts::synchronizations);
  synchronizeDevice();
  return afterWait();
}

cudaError_t cudaRuntimeGetVersion(int* version) {
  if (!version) return fail(cudaErrorInvalidValue);
  *version = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* version) {
  if (!version) return fail(cudaErrorInvalidValue);
  *version = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  BSSN_EMU_ENTER();
  if (!pool) return fail(cudaErrorInvalidValue);
  if (device < 0 || device >= deviceCount()) return fail(cudaErrorInvalidDevice);
  static CUmemPoolHandle_st* defaultPool = new CUmemPoolHandle_st();
  *pool = defaultPool;
  return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void* value) {
  BSSN_EMU_ENTER();
  BSSN_EMU_CHECK(refuseUnsafe());  // as the driver's pool attribute calls are under capture
  if (!pool || !value) return fail(cudaErrorInvalidValue);
  if (attr != cudaMemPoolAttrReleaseThreshold) return fail(cudaErrorNotSupported);
  pool->releaseThreshold = *static_cast<uint64_t*>(value);
  return cudaSuccess;
}

cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void* value) {
  BSSN_EMU_ENTER();
  BSSN_EMU_CHECK(refuseUnsafe());  // as the driver's pool attribute calls are under capture
  if (!pool || !value) return fail(cudaErrorInvalidValue);
  if (attr == cudaMemPoolAttrReleaseThreshold) {
    *static_cast<uint64_t*>(value) = pool->releaseThreshold;
  } else if (attr == cudaMemPoolAttrUsedMemCurrent || attr == cudaMemPoolAttrReservedMemCurrent) {
    std::lock_guard<std::mutex> lock(memory().mutex);
    *static_cast<uint64_t*>(value) = uint64_t(memory().deviceBytes);
  } else {
    return fail(cudaErrorNotSupported);
  }
  return cudaSuccess;
}

cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t minBytesToKeep) {
  BSSN_EMU_ENTER();
  BSSN_EMU_CHECK(refuseUnsafe());  // as the driver's pool attribute calls are under capture
  (void)minBytesToKeep;  // the emulated pool returns freed memory at once: nothing is kept to trim
  if (!pool) return fail(cudaErrorInvalidValue);
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  BSSN_EMU_ENTER();
  if (!stream || flags > cudaStreamNonBlocking) return fail(cudaErrorInvalidValue);
  *stream = new CUstream_st();
  (*stream)->flags = flags;
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (isLegacy(stream)) return fail(cudaErrorInvalidResourceHandle);
  {
    // A capture still open on it ends with it, its graph discarded.
    std::lock_guard<std::mutex> lock(captureMutex);
    if (captures().erase(stream)) capturingStreams--;
  }
  delete stream;  // lets its queued work finish first, as CUDA does
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  BSSN_EMU_ENTER();
  BSSN_EMU_CHECK(refuseUnsafe());
  BSSN_EMU_CHECK(captureConflict(stream));  // a capturing stream has nothing to wait for: its work is not enqueued
  cost::count(&cost::HostCounts::synchronizations);
  streamOf(stream).synchronize();
  return afterWait();
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  BSSN_EMU_ENTER();
  BSSN_EMU_CHECK(captureConflict(stream));
  return streamOf(stream).idle() ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  BSSN_EMU_ENTER();
  if (!event || (flags & ~unsigned(cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess)))
    return fail(cudaErrorInvalidValue);
  // As in CUDA, an interprocess event cannot keep time.
  if ((flags & cudaEventInterprocess) && !(flags & cudaEventDisableTiming)) return fail(cudaErrorInvalidValue);
  auto created = std::make_unique<CUevent_st>();
  created->flags = flags;
  if (flags & cudaEventInterprocess) {
    EventState& s = *created->state;
    s.shared = static_cast<SharedEventPage*>(createShared("event", sizeof(SharedEventPage), &s.fd, &s.secret));
    if (!s.shared) return fail(cudaErrorMemoryAllocation);
  }
  *event = created.release();
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  BSSN_EMU_ENTER();
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  // In a capture CUDA marks a fork or join point (an event record node with cudaEventRecordExternal); the emulator
  // captures one stream, without either, and refuses it.
  BSSN_EMU_CHECK(captureConflict(stream));
  std::shared_ptr<EventState> state = event->state;
  const uint64_t generation = state->record();
  // Completes in stream order even after a fault, so that nobody waits forever; the waiter sees the fault.
  streamOf(stream).enqueue([state, generation] { state->complete(generation); });
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  BSSN_EMU_ENTER();
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  return event->state->reached(event->state->latest()) ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  BSSN_EMU_ENTER();
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  cost::count(&cost::HostCounts::synchronizations);
  event->state->wait(event->state->latest());
  return afterWait();
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  BSSN_EMU_ENTER();
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  if (flags != 0) return fail(cudaErrorInvalidValue);
  BSSN_EMU_CHECK(captureConflict(stream));  // CUDA would capture a dependency; the emulator does not
  std::shared_ptr<EventState> state = event->state;
  // The record to wait for is the latest as of this call; an event never recorded has nothing to wait for.
  const uint64_t generation = state->latest();
  if (generation == 0 || state->reached(generation)) return cudaSuccess;
  // The stream's thread waits there, so its later work runs after the record (on whatever stream or process).
  streamOf(stream).enqueue([state, generation] { state->wait(generation); });
  return cudaSuccess;
}

// When a recorded event completed (host milliseconds): never recorded is an invalid handle, pending is NotReady (a
// status, not an error to keep as the last error).
static cudaError_t completionTime(const CUevent_st& event, double* ms) {
  std::lock_guard<std::mutex> lock(event.state->mutex);
  if (event.state->recorded == 0) return fail(cudaErrorInvalidResourceHandle);
  if (event.state->completed < event.state->recorded) return cudaErrorNotReady;
  *ms = event.state->ms;
  return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  BSSN_EMU_ENTER();
  if (!ms || !start || !end) return fail(cudaErrorInvalidResourceHandle);
  if ((start->flags | end->flags) & cudaEventDisableTiming) return fail(cudaErrorInvalidResourceHandle);
  double a, b;
  if (const cudaError_t st = completionTime(*start, &a); st != cudaSuccess) return st;
  if (const cudaError_t st = completionTime(*end, &b); st != cudaSuccess) return st;
  *ms = float(b - a);
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  delete event;  // a pending record or wait keeps the state (and an interprocess event's page) alive until it is done
  return cudaSuccess;
}

cudaError_t cudaIpcGetEventHandle(cudaIpcEventHandle_t* handle, cudaEvent_t event) {
  BSSN_EMU_ENTER();
  if (!handle) return fail(cudaErrorInvalidValue);
  // Only an interprocess event of this process (an opened one is not exported again).
  if (!event || event->state->fd < 0) return fail(cudaErrorInvalidResourceHandle);
  pack(handle, {kIpcEvent, int32_t(getpid()), event->state->fd, 0, event->state->secret, 0});
  return cudaSuccess;
}

cudaError_t cudaIpcOpenEventHandle(cudaEvent_t* event, cudaIpcEventHandle_t handle) {
  BSSN_EMU_ENTER();
  if (!event) return fail(cudaErrorInvalidValue);
  *event = nullptr;
  int fd = -1;
  if (const cudaError_t st = openExported(unpack(handle), kIpcEvent, sizeof(SharedEventPage), &fd); st != cudaSuccess)
    return fail(st);
  void* page = mapShared(fd, sizeof(SharedEventPage));
  close(fd);  // the mapping keeps the page
  if (!page) return fail(cudaErrorMapBufferObjectFailed);
  *event = new CUevent_st();
  (*event)->flags = cudaEventDisableTiming | cudaEventInterprocess;
  (*event)->state->shared = static_cast<SharedEventPage*>(page);
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  BSSN_EMU_ENTER();
  BSSN_EMU_CHECK(refuseUnsafe());
  return allocateDevice(ptr, bytes, true);
}

cudaError_t cudaFree(void* ptr) {
  BSSN_EMU_ENTER();
  BSSN_EMU_CHECK(refuseUnsafe());
  if (!ptr) return cudaSuccess;
  const size_t bytes = beginFree(ptr);
  if (!bytes) return fail(cudaErrorInvalidValue);
  // cudaFree synchronizes with the device: every stream's earlier work may still use the memory.
  cost::count(&cost::HostCounts::synchronizations);
  synchronizeDevice();
  releaseDevice(ptr);
  return cudaSuccess;
}

cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t stream) {
  BSSN_EMU_ENTER();
  // CUDA would capture an allocation node; the emulator does not. Otherwise the memory is usable in stream order
  // at once: nothing of the stream's may use it before.
  BSSN_EMU_CHECK(captureConflict(stream));
  return allocateDevice(ptr, bytes, false);
}

cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream) {
  BSSN_EMU_ENTER();
  BSSN_EMU_CHECK(captureConflict(stream));  // CUDA would capture a free node; the emulator does not
  if (!ptr) return cudaSuccess;
  if (!beginFree(ptr)) return fail(cudaErrorInvalidValue);
  // The memory goes back when the stream reaches this point; a kernel enqueued later that still uses it reads
  // freed memory (AddressSanitizer reports it).
  streamOf(stream).enqueue([ptr] { releaseDevice(ptr); });
  return cudaSuccess;
}

cudaError_t cudaIpcGetMemHandle(cudaIpcMemHandle_t* handle, void* devPtr) {
  BSSN_EMU_ENTER();
  if (!handle || !devPtr) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(memory().mutex);
  const Allocation* a = memory().find(devPtr, 1);
  // cudaMalloc memory only: not pool memory (not exportable in CUDA either), nor another process's.
  if (!a || !a->device || a->freeing || a->fd < 0) return fail(cudaErrorInvalidValue);
  // The handle names the whole allocation: an importer gets its base, as from CUDA.
  pack(handle, {kIpcMemory, int32_t(getpid()), a->fd, 0, a->secret, a->bytes});
  return cudaSuccess;
}

cudaError_t cudaIpcOpenMemHandle(void** devPtr, cudaIpcMemHandle_t handle, unsigned int flags) {
  BSSN_EMU_ENTER();
  if (!devPtr || (flags & ~unsigned(cudaIpcMemLazyEnablePeerAccess))) return fail(cudaErrorInvalidValue);
  BSSN_EMU_CHECK(refuseUnsafe());  // maps memory, as cudaMalloc does
  *devPtr = nullptr;
  const IpcHandle h = unpack(handle);
  if (h.kind != kIpcMemory || h.bytes == 0) return fail(cudaErrorInvalidValue);
  Memory& m = memory();
  // One open at a time: two threads opening the same handle get the same mapping.
  static std::mutex opening;
  std::lock_guard<std::mutex> serial(opening);
  {
    // Opened here already: CUDA counts the opens and returns the same pointer.
    std::lock_guard<std::mutex> lock(m.mutex);
    for (auto& [address, a] : m.live) {
      if (a.imports > 0 && !a.freeing && a.secret == h.secret && a.bytes == h.bytes) {
        ++a.imports;
        *devPtr = reinterpret_cast<void*>(address);
        return cudaSuccess;
      }
    }
  }
  int fd = -1;
  if (const cudaError_t st = openExported(h, kIpcMemory, h.bytes, &fd); st != cudaSuccess) return fail(st);
  void* p = mapShared(fd, h.bytes);
  close(fd);  // the mapping keeps the memory, even after the exporter's cudaFree or exit
  if (!p) return fail(cudaErrorMapBufferObjectFailed);
  Allocation a{h.bytes, true};
  a.mapped = true;
  a.secret = h.secret;
  a.imports = 1;
  std::lock_guard<std::mutex> lock(m.mutex);
  m.live[reinterpret_cast<uintptr_t>(p)] = a;
  m.deviceBytes += int64_t(h.bytes);
  *devPtr = p;
  return cudaSuccess;
}

cudaError_t cudaIpcCloseMemHandle(void* devPtr) {
  BSSN_EMU_ENTER();
  BSSN_EMU_CHECK(refuseUnsafe());  // synchronizes the device, as cudaFree does
  {
    std::lock_guard<std::mutex> lock(memory().mutex);
    auto it = memory().live.find(reinterpret_cast<uintptr_t>(devPtr));
    if (it == memory().live.end() || it->second.imports == 0 || it->second.freeing) return fail(cudaErrorInvalidValue);
    if (--it->second.imports > 0) return cudaSuccess;
    it->second.freeing = true;
  }
  // As cudaFree: work already enqueued on any stream may still use the mapping.
  synchronizeDevice();
  releaseDevice(devPtr);
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int flags) {
  BSSN_EMU_ENTER();
  BSSN_EMU_CHECK(refuseUnsafe());
  if (!ptr || flags != cudaHostAllocDefault) return fail(cudaErrorInvalidValue);
  void* p = alignedAlloc(bytes);
  if (!p) return fail(cudaErrorMemoryAllocation);
  std::memset(p, 0xFF, bytes);
  std::lock_guard<std::mutex> lock(memory().mutex);
  memory().live[reinterpret_cast<uintptr_t>(p)] = {bytes ? bytes : 1, false};
  *ptr = p;
  cost::count(&cost::HostCounts::pinnedAllocations);
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
  BSSN_EMU_ENTER();
  BSSN_EMU_CHECK(refuseUnsafe());
  if (!ptr) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(memory().mutex);
    auto it = memory().live.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == memory().live.end() || it->second.device) return fail(cudaErrorInvalidValue);
    memory().live.erase(it);
  }
  cost::count(&cost::HostCounts::synchronizations);
  synchronizeDevice();  // cudaFreeHost synchronizes with the device
  std::free(ptr);
  return cudaSuccess;
}

}  // extern "C"

namespace {

enum class Space { None, Device, Pinned };

// Where [p, p + bytes) lives, for a call being made now (memory being freed is no longer addressable by new
// work), or, with `inStreamOrder`, for work running on a stream now (it still is until its free runs).
Space spaceOf(const void* p, size_t bytes, bool inStreamOrder = false) {
  std::lock_guard<std::mutex> lock(memory().mutex);
  const Allocation* a = memory().find(p, bytes);
  if (!a || (a->freeing && !inStreamOrder)) return Space::None;
  return a->device ? Space::Device : Space::Pinned;
}

// At a replay: whether a copy or memset node's range is still memory (it may have been freed since the capture);
// otherwise the fault a GPU would take.
bool stillMapped(const char* node, const void* p, size_t bytes) {
  if (spaceOf(p, bytes, true) != Space::None) return true;
  char message[160];
  std::snprintf(message, sizeof message, "graph %s node: [%p, +%zu bytes) is no longer allocated", node, p, bytes);
  setSticky(cudaErrorIllegalAddress, message);
  return false;
}

}  // namespace

extern "C" {

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t stream) {
  BSSN_EMU_ENTER();
  if (bytes == 0) return cudaSuccess;
  if (!dst || !src) return fail(cudaErrorInvalidValue);
  const Space d = spaceOf(dst, bytes), s = spaceOf(src, bytes);
  const bool dstDevice = d == Space::Device, srcDevice = s == Space::Device;
  if (kind == cudaMemcpyDefault) kind = dstDevice ? (srcDevice ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                                  : (srcDevice ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  // The direction must match where the pointers live (and the whole range must be inside one allocation).
  const bool wantDst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool wantSrc = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return fail(cudaErrorInvalidMemcpyDirection);
  if (wantDst != dstDevice || wantSrc != srcDevice) return fail(cudaErrorInvalidValue);
  using Count = std::atomic<int64_t> cost::HostCounts::*;
  const Count copied = dstDevice != srcDevice ? (dstDevice ? &cost::HostCounts::bytesToDevice : &cost::HostCounts::bytesToHost)
                       : dstDevice            ? &cost::HostCounts::bytesDeviceToDevice
                                              : nullptr;
  if ((!dstDevice && d != Space::Pinned) || (!srcDevice && s != Space::Pinned)) {
    // Pageable memory is staged at the call or copied synchronously (below), which no replay can repeat: refused
    // in a capture (bssn stages through pinned memory).
    BSSN_EMU_CHECK(captureConflict(stream));
  } else {
    // Device or pinned memory on both sides: a capture records a copy node, which reads and writes the pointers
    // at each replay, as a GPU's.
    bool recorded = false;
    BSSN_EMU_CHECK(captureNodes(stream, {workNode([dst, src, bytes] {
      if (stillMapped("copy", dst, bytes) && stillMapped("copy", src, bytes)) std::memcpy(dst, src, bytes);
    }, copied, bytes)}, &recorded));
    if (recorded) return cudaSuccess;
  }
  // Into pageable memory the copy is synchronous (below): unsafe during a capture, as cudaMemcpy.
  if (!dstDevice && d != Space::Pinned) BSSN_EMU_CHECK(refuseUnsafe());
  if (copied) cost::count(copied, int64_t(bytes));
  CUstream_st& st = streamOf(stream);
  if (!srcDevice && s != Space::Pinned) {
    // Pageable source: staged before the call returns, so the caller may reuse it at once (CUDA's behaviour).
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes);
    st.enqueue([dst, staged] {
      if (stickyError() == cudaSuccess) std::memcpy(dst, staged->data(), staged->size());
    });
    return cudaSuccess;
  }
  st.enqueue([dst, src, bytes] {
    if (stickyError() == cudaSuccess) std::memcpy(dst, src, bytes);
  });
  if (!dstDevice && d != Space::Pinned) {  // into pageable memory: synchronous, as in CUDA
    cost::count(&cost::HostCounts::synchronizations);
    st.synchronize();
    return afterWait();
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, enum cudaMemcpyKind kind) {
  BSSN_EMU_ENTER();
  BSSN_EMU_CHECK(refuseUnsafe());
  const cudaError_t st = cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
  if (st != cudaSuccess) return st;
  // Into pageable memory cudaMemcpyAsync waited (and counted) already; one blocking copy is one synchronization.
  if (bytes && spaceOf(dst, bytes) == Space::None && spaceOf(src, bytes) != Space::None) return cudaSuccess;
  cost::count(&cost::HostCounts::synchronizations);
  defaultStream().synchronize();
  return afterWait();
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  BSSN_EMU_ENTER();
  if (bytes == 0) return cudaSuccess;
  if (spaceOf(ptr, bytes) != Space::Device) return fail(cudaErrorInvalidValue);
  bool recorded = false;  // a capture records a memset node
  BSSN_EMU_CHECK(captureNodes(stream, {workNode([ptr, value, bytes] {
    if (stillMapped("memset", ptr, bytes)) std::memset(ptr, value, bytes);
  })}, &recorded));
  if (recorded) return cudaSuccess;
  streamOf(stream).enqueue([ptr, value, bytes] {
    if (stickyError() == cudaSuccess) std::memset(ptr, value, bytes);
  });
  return cudaSuccess;
}

cudaError_t bssnEmuFuncGetAttributes(cudaFuncAttributes* attributes, const void* entry) {
  BSSN_EMU_ENTER();
  if (!attributes || !entry) return fail(cudaErrorInvalidDeviceFunction);
  std::memset(attributes, 0, sizeof(*attributes));
  attributes->maxThreadsPerBlock = 1024;
  attributes->ptxVersion = 90;
  attributes->binaryVersion = 90;
  return cudaSuccess;
}

cudaError_t bssnEmuFuncSetAttribute(const void* entry, enum cudaFuncAttribute attr, int value) {
  BSSN_EMU_ENTER();
  if (!entry) return fail(cudaErrorInvalidDeviceFunction);
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || size_t(value) > kSharedPerBlockOptin)
    return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(functionsMutex);
  maxDynamicShared()[entry] = size_t(value);
  return cudaSuccess;
}

cudaError_t bssnEmuOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks, const void* entry, int blockSize, size_t dynamicSMemSize) {
  BSSN_EMU_ENTER();
  if (!numBlocks || blockSize <= 0) return fail(cudaErrorInvalidValue);
  if (!entry) return fail(cudaErrorInvalidDeviceFunction);
  *numBlocks = dynamicSMemSize > dynamicSharedLimit(entry) ? 0 : residentBlocks(unsigned(blockSize), dynamicSMemSize);
  return cudaSuccess;
}

namespace {
bool validLaunch(const void* entry, dim3 grid, dim3 block, size_t sharedBytes) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0) return false;
  if (block.x > 1024 || block.y > 1024 || block.z > 64 || threads > 1024) return false;
  if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) return false;
  return sharedBytes <= dynamicSharedLimit(entry);
}

// The static + dynamic shared bytes a block of `entry` may use: 48 KiB, or with the opt-in attribute the rest of
// the 227 KiB beside its dynamic maximum (the static part is known only when the kernel runs).
size_t sharedLimitOf(const void* entry, size_t sharedBytes) {
  const size_t optIn = dynamicSharedLimit(entry);
  return optIn > (48u << 10) ? kSharedPerBlockOptin - optIn + sharedBytes : size_t(48u << 10);
}
}  // namespace

}  // extern "C"

namespace {

// A kernel launch, as counted: the statistics, and whether fault injection picks it (at launch, as a GPU's fault
// comes from that launch).
bool countLaunch(const std::string& kernel) {
  stats().launches++;
  {
    std::lock_guard<std::mutex> lock(stats().mutex);
    stats().perKernel[kernel]++;
  }
  return failLaunchIn.load() > 0 && failLaunchIn.fetch_sub(1) == 1;
}

// Runs one launch or other node on its stream's thread; false when it did not run (the context has a fault, or
// gets one now).
bool runLaunch(const GraphNode& launch, bool injectFault) {
  if (stickyError() != cudaSuccess) return false;
  if (launch.work) {
    (*launch.work)();
    return stickyError() == cudaSuccess;
  }
  if (injectFault) {
    setSticky(cudaErrorLaunchFailure, "kernel " + launch.kernel + " faulted (injected by bssnEmuFailLaunch)");
    return false;
  }
  runGrid(launch.kernel.c_str(), launch.grid, launch.block, launch.sharedBytes, *launch.body, launch.sharedLimit, launch.cooperative);
  return stickyError() == cudaSuccess;
}

// A launch, ordinary or cooperative: checked, then captured or enqueued.
cudaError_t launchGrid(const char* name, const void* entry, dim3 grid, dim3 block, size_t sharedBytes, cudaStream_t stream,
                       KernelBody* body, bool cooperative) {
  GraphNode launch{name, grid, block, sharedBytes, std::shared_ptr<KernelBody>(body)};
  BSSN_EMU_ENTER();
  launch.sharedLimit = sharedLimitOf(entry, sharedBytes);
  launch.cooperative = cooperative;
  // Launch errors are reported by the launch (cudaGetLastError), not by the stream, and are not sticky.
  const bool valid = validLaunch(entry, grid, block, sharedBytes);
  // A cooperative grid must be resident at once: every SM holding as many blocks as its threads and shared
  // memory allow. CUDA checks the configuration first.
  const cudaError_t invalid = !valid ? cudaErrorInvalidConfiguration
                              : cooperative && uint64_t(grid.x) * grid.y * grid.z >
                                                   uint64_t(kMultiprocessors) * residentBlocks(block.x * block.y * block.z, sharedBytes)
                                  ? cudaErrorCooperativeLaunchTooLarge
                              // A card that holds fewer blocks at run time than its plan expected (MPS, green
                              // contexts, another process's work): injected by bssnEmuRefuseCooperative.
                              : cooperative && refuseCooperativeIn.load() > 0 && refuseCooperativeIn.fetch_sub(1) > 0
                                  ? cudaErrorCooperativeLaunchTooLarge
                                  : cudaSuccess;
  if (isLegacy(stream)) {
    BSSN_EMU_CHECK(captureConflict(stream));  // while a blocking stream captures
  } else if (capturingStreams.load() != 0) {
    std::lock_guard<std::mutex> lock(captureMutex);
    if (auto it = captures().find(stream); it != captures().end()) {
      Capture& c = it->second;
      if (c.invalidated) return fail(cudaErrorStreamCaptureInvalidated);
      // A launch that fails invalidates the capture, as in CUDA; it returns its own error.
      if (invalid != cudaSuccess) c.invalidated = true;
      else c.nodes.push_back(std::move(launch));  // recorded, not run, and not counted: a replay is the launch
      return invalid == cudaSuccess ? cudaSuccess : fail(invalid);
    }
  }
  if (invalid != cudaSuccess) return fail(invalid);
  const bool injectFault = countLaunch(launch.kernel);
  streamOf(stream).enqueue([launch = std::move(launch), injectFault] { runLaunch(launch, injectFault); });
  return cudaSuccess;
}

}  // namespace

extern "C" {

cudaError_t bssnEmuLaunch(const char* name, const void* entry, dim3 grid, dim3 block, size_t sharedBytes, cudaStream_t stream,
                          KernelBody* body) {
  return launchGrid(name, entry, grid, block, sharedBytes, stream, body, false);
}

cudaError_t bssnEmuLaunchCooperative(const char* name, const void* entry, dim3 grid, dim3 block, size_t sharedBytes, cudaStream_t stream,
                                     KernelBody* body) {
  return launchGrid(name, entry, grid, block, sharedBytes, stream, body, true);
}

// ---- stream capture and graphs

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode) {
  BSSN_EMU_ENTER();
  if (mode < cudaStreamCaptureModeGlobal || mode > cudaStreamCaptureModeRelaxed) return fail(cudaErrorInvalidValue);
  // The legacy stream synchronizes with every blocking stream: CUDA cannot capture it.
  if (isLegacy(stream)) return fail(cudaErrorStreamCaptureUnsupported);
  std::lock_guard<std::mutex> lock(captureMutex);
  const bool blocking = !(stream->flags & cudaStreamNonBlocking);
  static unsigned long long lastId = 0;  // under captureMutex
  if (!captures().try_emplace(stream, Capture{mode, std::this_thread::get_id(), blocking, false, {}, lastId + 1}).second)
    return fail(cudaErrorIllegalState);  // capturing already (or invalidated, not yet ended)
  ++lastId;
  capturingStreams++;
  stats().captures++;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* pGraph) {
  BSSN_EMU_ENTER();
  if (!pGraph) return fail(cudaErrorInvalidValue);
  // Test hook: holds every capture open this long, so that a test can land other threads' work inside one.
  if (const char* hold = std::getenv("BSSN_EMU_CAPTURE_HOLD_MS"); hold && *hold)
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(hold)));
  std::vector<GraphNode> nodes;
  {
    std::lock_guard<std::mutex> lock(captureMutex);
    auto it = isLegacy(stream) ? captures().end() : captures().find(stream);
    if (it == captures().end()) return fail(cudaErrorIllegalState);
    if (it->second.mode != cudaStreamCaptureModeRelaxed && it->second.thread != std::this_thread::get_id())
      return fail(cudaErrorStreamCaptureWrongThread);  // and the capture goes on
    const bool invalidated = it->second.invalidated;
    nodes = std::move(it->second.nodes);
    captures().erase(it);
    capturingStreams--;
    if (invalidated) {
      *pGraph = nullptr;
      return fail(cudaErrorStreamCaptureInvalidated);
    }
  }
  *pGraph = new CUgraph_st{std::move(nodes)};
  std::lock_guard<std::mutex> lock(graphsMutex);
  liveGraphs().insert(*pGraph);
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, enum cudaStreamCaptureStatus* pCaptureStatus) {
  BSSN_EMU_ENTER();
  if (!pCaptureStatus) return fail(cudaErrorInvalidValue);
  *pCaptureStatus = cudaStreamCaptureStatusNone;
  std::lock_guard<std::mutex> lock(captureMutex);
  for (const auto& [s, c] : captures()) {
    // Asking about the legacy stream while a blocking stream captures is refused, not an invalidation.
    if (isLegacy(stream) && c.blocking) return fail(cudaErrorStreamCaptureImplicit);
    if (s == stream) *pCaptureStatus = c.invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  }
  return cudaSuccess;
}

cudaError_t cudaStreamGetCaptureInfo(cudaStream_t stream, enum cudaStreamCaptureStatus* captureStatus_out, unsigned long long* id_out,
                                     cudaGraph_t* graph_out, const cudaGraphNode_t** dependencies_out,
                                     const cudaGraphEdgeData** edgeData_out, size_t* numDependencies_out) {
  BSSN_EMU_ENTER();
  // The graph under construction and its dependency set have no handles here (nodes are not exposed): asking for
  // them is refused rather than answered wrongly.
  if (!captureStatus_out || graph_out || dependencies_out || edgeData_out || numDependencies_out) return fail(cudaErrorInvalidValue);
  *captureStatus_out = cudaStreamCaptureStatusNone;
  std::lock_guard<std::mutex> lock(captureMutex);
  for (const auto& [s, c] : captures()) {
    if (isLegacy(stream) && c.blocking) return fail(cudaErrorStreamCaptureImplicit);  // as cudaStreamIsCapturing
    if (s == stream) {
      *captureStatus_out = c.invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
      if (id_out) *id_out = c.id;
    }
  }
  return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode* mode) {
  if (!mode || *mode < cudaStreamCaptureModeGlobal || *mode > cudaStreamCaptureModeRelaxed) return fail(cudaErrorInvalidValue);
  std::swap(*mode, threadCaptureMode);
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* pGraphExec, cudaGraph_t graph, unsigned long long flags) {
  BSSN_EMU_ENTER();
  // No instantiation flag applies to a graph of kernel nodes launched from the host.
  if (!pGraphExec || flags != 0) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(graphsMutex);
  if (!liveGraphs().count(graph)) return fail(cudaErrorInvalidValue);
  // A copy of the nodes: the graph may be destroyed at once, the executable stays.
  *pGraphExec = new CUgraphExec_st{std::make_shared<ExecutableGraph>(graph->nodes)};
  liveExecs().insert(*pGraphExec);
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream) {
  BSSN_EMU_ENTER();
  std::shared_ptr<ExecutableGraph> exec;
  {
    std::lock_guard<std::mutex> lock(graphsMutex);
    if (!liveExecs().count(graphExec)) return fail(cudaErrorInvalidValue);
    exec = graphExec->graph;
  }
  // Into a capture: a child graph node, a copy of the executable's nodes (CUDA copies the child graph too), run in
  // place at each replay of the parent and counted with it.
  bool recorded = false;
  BSSN_EMU_CHECK(captureNodes(stream, exec->nodes, &recorded));
  if (recorded) return cudaSuccess;
  stats().graphLaunches++;
  // Each kernel node is a launch: counted, and picked for an injected fault or not, now; a copy node counts its
  // bytes, as the eager copy.
  std::vector<bool> faults;
  for (const GraphNode& node : exec->nodes) {
    faults.push_back(!node.work && countLaunch(node.kernel));
    if (node.copied) cost::count(node.copied, int64_t(node.bytes));
  }
  // The ticket and the enqueue together: two threads launching it on one stream enqueue in ticket order.
  std::lock_guard<std::mutex> lock(exec->launching);
  const uint64_t ticket = exec->launched++;
  // One unit of stream work, so that nothing of the stream's runs between the nodes; the unit holds the
  // executable, which may be destroyed before it runs.
  streamOf(stream).enqueue([exec, faults, ticket] {
    exec->run(ticket, [&] {
      const cost::ReplayScope replay(exec->nodes.size());
      for (size_t i = 0; i < exec->nodes.size(); ++i)
        if (!runLaunch(exec->nodes[i], faults[i])) return;  // a fault stops the later nodes
    });
  });
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
  {
    std::lock_guard<std::mutex> lock(graphsMutex);
    if (!liveExecs().erase(graphExec)) return fail(cudaErrorInvalidValue);
  }
  delete graphExec;  // replays still enqueued keep what they run: CUDA frees an executable in flight when it is done
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  {
    std::lock_guard<std::mutex> lock(graphsMutex);
    if (!liveGraphs().erase(graph)) return fail(cudaErrorInvalidValue);
  }
  delete graph;
  return cudaSuccess;
}

cudaError_t bssnEmuEnqueue(cudaStream_t stream, void (*fn)(void*), void (*drop)(void*), void* data) {
  // The arguments live until the last run: the eager one, or the graph's last replay.
  const std::shared_ptr<void> box(data, [drop](void* p) {
    if (drop) drop(p);
  });
  cudaError_t s = stickyError();
  // Host work (the emulated cuBLAS and cuDNN): a capture records it as a node, as CUDA records the kernels their
  // CUDA versions launch; each replay runs it again with the arguments of the call.
  bool recorded = false;
  if (s == cudaSuccess) s = captureNodes(stream, {workNode([fn, box] { fn(box.get()); })}, &recorded);
  if (s != cudaSuccess) return fail(s);
  if (recorded) return cudaSuccess;
  streamOf(stream).enqueue([fn, box] {
    if (stickyError() == cudaSuccess) fn(box.get());
  });
  return cudaSuccess;
}

int bssnEmuIsDeviceRange(const void* p, size_t bytes) { return spaceOf(p, bytes ? bytes : 1, true) == Space::Device; }

void bssnEmuFault(cudaError_t error, const char* message) { setSticky(error, message ? message : "fault"); }

void bssnEmuFailAllocation(int64_t n) { bssnEmuFailAllocations(n, 1); }

void bssnEmuFailAllocations(int64_t n, int64_t count) {
  memory().failAllocationsAfter.store(count > 1 ? count - 1 : 0);
  memory().failAllocationIn.store(n);
}

void bssnEmuFailLaunch(int64_t n) { failLaunchIn.store(n); }
void bssnEmuRefuseCooperative(int64_t n) { refuseCooperativeIn.store(n); }

void bssnEmuStats(BssnEmuStats* out) {
  out->launches = stats().launches.load();
  out->blocks = stats().blocks.load();
  out->threads = stats().threads.load();
  out->graphLaunches = stats().graphLaunches.load();
  out->captures = stats().captures.load();
  std::lock_guard<std::mutex> lock(memory().mutex);
  out->deviceBytes = memory().deviceBytes;
  out->deviceAllocations = 0;
  out->hostPinnedAllocations = 0;
  for (const auto& [address, a] : memory().live) (a.device ? out->deviceAllocations : out->hostPinnedAllocations)++;
}

size_t bssnEmuKernelLaunches(const char** names, int64_t* counts, size_t capacity) {
  std::lock_guard<std::mutex> lock(stats().mutex);
  size_t i = 0;
  for (const auto& [name, count] : stats().perKernel) {
    if (i < capacity) names[i] = name.c_str(), counts[i] = count;  // map nodes are stable: names stay valid
    ++i;
  }
  return i;
}

const char* bssnEmuStickyMessage(void) { return stickyError() == cudaSuccess ? "" : stickyText.c_str(); }

}  // extern "C"
