// libnccl_emu: the NCCL entry points bssn loads (native/cuda/nccl_api.h), with NCCL's names, result codes and
// semantics, for CI without GPUs. Ranks are processes that exchange through a memfd-backed shared region: the
// unique id names it (/proc/<creator pid>/fd/<fd>, with a secret in the memfd's name, as the emulator's CUDA IPC
// does). Collectives are stream work (bssnEmuEnqueue), so they run in stream order and graph capture records them.
// All-reduce sums the ranks' slots in rank order 0..n-1, so every rank gets the same bits on every run. A dead
// peer (gone, a zombie, its pid reused) or an aborted one fails the collective: ncclCommGetAsyncError then says
// ncclRemoteError. Nothing waits without waking every 100 ms to check.
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bssn_emulator.h"

#define NCCL_EMU_API extern "C" __attribute__((visibility("default")))

namespace {

// ncclResult_t, ncclDataType_t, ncclRedOp_t (nccl.h)
constexpr int kSuccess = 0, kUnhandledCudaError = 1, kSystemError = 2, kInvalidArgument = 4, kInvalidUsage = 5,
              kRemoteError = 6;
constexpr int kFloat32 = 7, kSum = 0, kAvg = 4;
constexpr int kVersion = 22105;  // reported as NCCL 2.21.5, a release with every entry point used

constexpr uint32_t kMagic = 0x6c63636e;  // "nccl"
constexpr int kMaxRanks = 16;
constexpr size_t kChunkBytes = size_t(1) << 20;  // each rank's staging slot: a collective moves this much per step
constexpr std::chrono::milliseconds kPoll{100};  // futex waits wake this often to check peers and aborts

// One rank's words in the shared region. Sequence numbers count steps (one chunk of one collective) and wrap.
struct alignas(64) RankSlot {
  std::atomic<int32_t> pid;        // 0 until the rank joins
  std::atomic<uint32_t> posted;    // futex: the last step whose data this rank put in its slot
  std::atomic<uint32_t> consumed;  // futex: the last step this rank finished reading every slot of
  std::atomic<uint32_t> aborted;   // the rank called ncclCommAbort: its peers fail rather than wait
  uint64_t startTime;              // /proc/<pid>/stat's start time: a reused pid is another process
};
struct Region {
  uint32_t magic;
  uint64_t secret;
  std::atomic<int32_t> nranks;  // set by the first rank to join; the others must agree
  std::atomic<uint32_t> joined;  // futex: ranks joined so far
  RankSlot ranks[kMaxRanks];
};
constexpr size_t kSlotsOffset = (sizeof(Region) + 4095) / 4096 * 4096;
constexpr size_t kRegionBytes = kSlotsOffset + kMaxRanks * kChunkBytes;  // sparse: only touched pages are backed
static_assert(std::atomic<uint32_t>::is_always_lock_free, "futex words are plain 32-bit integers");

// What an ncclUniqueId holds.
struct Id {
  uint32_t magic;
  int32_t pid, fd;
  uint32_t unused;
  uint64_t secret;
};
static_assert(sizeof(Id) <= 128, "NCCL_UNIQUE_ID_BYTES is 128");

std::string memfdName(uint64_t secret) {
  char name[64];
  std::snprintf(name, sizeof name, "bssn-emu-nccl-%016llx", static_cast<unsigned long long>(secret));
  return name;
}

bool isMemfd(const std::string& path, const std::string& name) {
  char link[128] = {};
  const ssize_t n = readlink(path.c_str(), link, sizeof link - 1);
  const std::string expected = "/memfd:" + name;
  return n > 0 && std::strncmp(link, expected.c_str(), expected.size()) == 0 &&
         (link[expected.size()] == 0 || link[expected.size()] == ' ');
}

// A process's start time (field 22 of /proc/<pid>/stat), 0 when it is gone or a zombie (kill(pid, 0) still
// succeeds on a zombie: a killed child not yet reaped must count as dead).
uint64_t startTime(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return 0;
  const size_t close = stat.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string state;
  fields >> state;
  if (state == "Z" || state == "X") return 0;
  std::string skip;
  for (int field = 4; field < 22; ++field) fields >> skip;
  uint64_t start = 0;
  fields >> start;
  return start;
}

void futexWait(std::atomic<uint32_t>& word, uint32_t seen) {
  const timespec timeout{0, long(std::chrono::nanoseconds(kPoll).count())};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT, seen, &timeout, nullptr, 0);
}
void futexWake(std::atomic<uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}
bool reached(uint32_t value, uint32_t step) { return int32_t(value - step) >= 0; }

// The unique ids this process created: it keeps their memfds open for the other ranks to open (one descriptor
// per id for the process's life, as an id may be handed out at any time).
std::mutex createdMutex;
std::vector<Id> created;

// A communicator's state: shared by the handle and by the stream work still queued, so that ncclCommAbort and
// ncclCommDestroy never unmap memory a collective is using.
struct State {
  Region* region = nullptr;
  char* slots = nullptr;
  int rank = 0, nranks = 0;
  std::atomic<bool> aborted{false};
  std::atomic<int> asyncError{kSuccess};
  uint32_t step = 0;  // the last step run (stream work of one communicator runs in order, as NCCL requires)
  ~State() {
    if (region) munmap(region, kRegionBytes);
  }
  float* slot(int r) const { return reinterpret_cast<float*>(slots + size_t(r) * kChunkBytes); }
};

// Bytes moved, for the emulator's cost counting (bssnNcclEmuBytes).
std::atomic<int64_t> allReducedBytes{0}, broadcastBytes{0};

void wakeAll(State& s) {
  for (int r = 0; r < s.nranks; ++r) {
    futexWake(s.region->ranks[r].posted);
    futexWake(s.region->ranks[r].consumed);
  }
}

// A failed communicator: the async error set, and the rank marked aborted so that the peers waiting on it fail
// too (a rank whose collective failed never posts again).
bool fail(State& s) {
  s.asyncError.store(kRemoteError);
  s.region->ranks[s.rank].aborted.store(1);
  wakeAll(s);
  return false;
}

// Test switches, read once: BSSN_NCCL_EMU_PEER_CHECK=0 waits for a dead or aborted peer forever, as NCCL over NVLink
// or shared memory does (only the caller's timeout and abort end it); BSSN_NCCL_EMU_DELAY_MS=N starts every
// collective N ms late (a slow interconnect: work that does not wait for a collective reads unreduced values).
bool peerCheck() {
  static const bool on = [] {
    const char* v = std::getenv("BSSN_NCCL_EMU_PEER_CHECK");
    return !(v && std::string(v) == "0");
  }();
  return on;
}
int delayMs() {
  static const int ms = [] {
    const char* v = std::getenv("BSSN_NCCL_EMU_DELAY_MS");
    return v ? std::max(0, std::atoi(v)) : 0;
  }();
  return ms;
}

// Waits until done() holds; false (the communicator failed) when the peer it waits on died or aborted, or this
// communicator was aborted. done() names that peer and its futex word. Only that peer: one that finished the
// collective and exited is no failure.
template <typename Done>
bool waitFor(State& s, Done done) {
  auto last = std::chrono::steady_clock::now() - kPoll;
  for (;;) {
    int waitingOn = -1;
    uint32_t seen = 0;
    std::atomic<uint32_t>* word = nullptr;
    if (done(&waitingOn, &word, &seen)) return true;
    if (s.aborted.load()) return fail(s);
    const auto now = std::chrono::steady_clock::now();
    if (peerCheck() && now - last >= kPoll && waitingOn >= 0 && waitingOn != s.rank) {
      last = now;
      const RankSlot& peer = s.region->ranks[waitingOn];
      const int pid = peer.pid.load();
      if (peer.aborted.load() || (pid > 0 && startTime(pid) != peer.startTime)) {
        std::fprintf(stderr, "bssn emulated NCCL: rank %d (pid %d) %s; rank %d's collective fails\n", waitingOn, pid,
                     peer.aborted.load() ? "failed or aborted" : "died", s.rank);
        return fail(s);
      }
    }
    if (word) futexWait(*word, seen);
  }
}

// One step of a collective: every rank waits until all have read the previous step's slots, puts its part in its
// slot (post), waits for every rank's part, reads (take), and marks the step read.
template <typename Post, typename Take>
bool step(State& s, Post post, Take take) {
  Region& g = *s.region;
  const uint32_t previous = s.step, current = s.step + 1;
  const auto all = [&](std::atomic<uint32_t> RankSlot::*field, uint32_t target) {
    return [&, field, target](int* waitingOn, std::atomic<uint32_t>** word, uint32_t* seen) {
      for (int r = 0; r < s.nranks; ++r) {
        const uint32_t v = (g.ranks[r].*field).load(std::memory_order_acquire);
        if (!reached(v, target)) {
          *waitingOn = r;
          *word = &(g.ranks[r].*field);
          *seen = v;
          return false;
        }
      }
      return true;
    };
  };
  if (!waitFor(s, all(&RankSlot::consumed, previous))) return false;
  post();
  g.ranks[s.rank].posted.store(current, std::memory_order_release);
  futexWake(g.ranks[s.rank].posted);
  if (!waitFor(s, all(&RankSlot::posted, current))) return false;
  take();
  s.step = current;
  g.ranks[s.rank].consumed.store(current, std::memory_order_release);
  futexWake(g.ranks[s.rank].consumed);
  return true;
}

bool deviceRanges(const char* call, const void* send, const void* recv, size_t bytes) {
  for (const void* p : {send, recv}) {
    if (bytes == 0 || bssnEmuIsDeviceRange(p, bytes)) continue;
    char message[200];
    std::snprintf(message, sizeof message, "%s: [%p, +%zu bytes) is not device memory (an illegal address on a GPU)", call, p, bytes);
    bssnEmuFault(cudaErrorIllegalAddress, message);
    return false;
  }
  return true;
}

struct Collective {
  std::shared_ptr<State> state;
  bool allReduce;
  const float* send;
  float* recv;
  size_t count;
  int op, root;
  cudaStream_t stream;
};

void run(const Collective& c) {
  State& s = *c.state;
  if (s.asyncError.load() != kSuccess) return;  // a failed communicator moves nothing more
  if (delayMs() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delayMs()));
  const size_t bytes = c.count * sizeof(float);
  // A broadcast's send buffer matters on the root only (NCCL ignores it elsewhere).
  const float* source = c.allReduce || s.rank == c.root ? c.send : c.recv;
  if (!deviceRanges(c.allReduce ? "ncclAllReduce" : "ncclBroadcast", source, c.recv, bytes)) {
    fail(s);  // the peers must not wait for this rank
    s.asyncError.store(kUnhandledCudaError);
    return;
  }
  const size_t perChunk = kChunkBytes / sizeof(float);
  for (size_t offset = 0; offset < c.count || (offset == 0 && c.count == 0); offset += perChunk) {
    const size_t n = std::min(perChunk, c.count - offset);
    const bool ok = c.allReduce
        ? step(s, [&] { std::memcpy(s.slot(s.rank), c.send + offset, n * sizeof(float)); },
               [&] {
                 // Rank order, in float as a GPU sums: bit-identical on every rank. Average: the sum over n.
                 float* out = c.recv + offset;
                 for (size_t i = 0; i < n; ++i) {
                   float sum = s.slot(0)[i];
                   for (int r = 1; r < s.nranks; ++r) sum += s.slot(r)[i];
                   out[i] = c.op == kAvg ? sum / float(s.nranks) : sum;
                 }
               })
        : step(s, [&] { if (s.rank == c.root) std::memcpy(s.slot(s.rank), c.send + offset, n * sizeof(float)); },
               [&] { if (s.rank != c.root || c.recv != c.send) std::memcpy(c.recv + offset, s.slot(c.root), n * sizeof(float)); });
    if (!ok) return;
    if (c.count == 0) break;
  }
  (c.allReduce ? allReducedBytes : broadcastBytes).fetch_add(int64_t(bytes));
}

// ncclGroupStart/End: calls between them are collected on this thread and enqueued at the outermost End.
thread_local int groupDepth = 0;
thread_local std::vector<Collective> grouped;

int enqueue(Collective c) {
  if (groupDepth > 0) {
    grouped.push_back(std::move(c));
    return kSuccess;
  }
  const cudaStream_t stream = c.stream;
  const cudaError_t st = bssn::emu::enqueue(stream, [c = std::move(c)] { run(c); });
  return st == cudaSuccess ? kSuccess : kUnhandledCudaError;
}

}  // namespace

struct ncclComm {
  std::shared_ptr<State> state;
};
struct ncclUniqueId {  // nccl.h's, passed by value
  char internal[128];
};

namespace {
int collective(bool allReduce, const void* send, void* recv, size_t count, int type, int op, int root, ncclComm* comm,
               cudaStream_t stream) {
  if (!comm || !comm->state) return kInvalidArgument;
  if (type != kFloat32 || (allReduce && op != kSum && op != kAvg)) return kInvalidArgument;  // the emulator's subset
  if (!allReduce && (root < 0 || root >= comm->state->nranks)) return kInvalidArgument;
  if (!recv || (allReduce && !send) || (!allReduce && comm->state->rank == root && !send)) return kInvalidArgument;
  if (comm->state->aborted.load()) return kInvalidUsage;
  return enqueue({comm->state, allReduce, static_cast<const float*>(send), static_cast<float*>(recv), count, op, root, stream});
}
}  // namespace

NCCL_EMU_API int ncclGetVersion(int* version) {
  if (!version) return kInvalidArgument;
  *version = kVersion;
  return kSuccess;
}

NCCL_EMU_API int ncclGetUniqueId(ncclUniqueId* id_) {
  char* out = id_ ? id_->internal : nullptr;
  if (!out) return kInvalidArgument;
  static std::mt19937_64 random{(uint64_t(std::random_device{}()) << 32) ^ std::random_device{}()};
  std::lock_guard<std::mutex> lock(createdMutex);
  Id id{kMagic, int32_t(getpid()), -1, 0, random() ^ uint64_t(getpid()) * 0x9E3779B97F4A7C15ull};
  id.fd = int(syscall(SYS_memfd_create, memfdName(id.secret).c_str(), 1u /* MFD_CLOEXEC */));
  if (id.fd < 0) return kSystemError;
  if (ftruncate(id.fd, off_t(kRegionBytes)) != 0) {
    close(id.fd);
    return kSystemError;
  }
  created.push_back(id);
  std::memset(out, 0, 128);
  std::memcpy(out, &id, sizeof id);
  return kSuccess;
}

namespace {

// Maps the region an id names: this process's own memfd, or the creator's through /proc, checked by the secret.
Region* mapRegion(const Id& id) {
  if (id.magic != kMagic || id.pid <= 0 || id.fd < 0) return nullptr;
  const std::string name = memfdName(id.secret);
  const std::string path = "/proc/" + std::to_string(id.pid) + "/fd/" + std::to_string(id.fd);
  if (!isMemfd(path, name)) return nullptr;  // before opening: a forged id must not open some device
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return nullptr;
  void* p = MAP_FAILED;
  if (isMemfd("/proc/self/fd/" + std::to_string(fd), name) && uint64_t(lseek(fd, 0, SEEK_END)) == kRegionBytes)
    p = mmap(nullptr, kRegionBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  return p == MAP_FAILED ? nullptr : static_cast<Region*>(p);
}

int initRank(ncclComm** out, int nranks, const char* rawId, int rank) {
  if (!out) return kInvalidArgument;
  *out = nullptr;
  if (nranks < 1 || nranks > kMaxRanks || rank < 0 || rank >= nranks) return kInvalidArgument;
  Id id;
  std::memcpy(&id, rawId, sizeof id);
  auto s = std::make_shared<State>();
  s->region = mapRegion(id);
  if (!s->region) return kInvalidArgument;  // not an id from ncclGetUniqueId, or its creator is gone
  s->slots = reinterpret_cast<char*>(s->region) + kSlotsOffset;
  s->rank = rank;
  s->nranks = nranks;
  Region& g = *s->region;
  uint32_t zero = 0;
  // The first to arrive writes the header (a fresh memfd reads as zeros); the others check it.
  if (__atomic_compare_exchange_n(&g.magic, &zero, kMagic, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) g.secret = id.secret;
  int32_t expected = 0;
  if (!g.nranks.compare_exchange_strong(expected, nranks) && expected != nranks) return kInvalidUsage;  // ranks disagree
  RankSlot& me = g.ranks[rank];
  int32_t none = 0;
  // Claimed with -1 first, so that peers read the start time only once the pid says it is written.
  if (!me.pid.compare_exchange_strong(none, -1)) return kInvalidUsage;  // the rank was taken
  me.startTime = startTime(getpid());
  me.pid.store(int32_t(getpid()));
  g.joined.fetch_add(1);
  futexWake(g.joined);
  // NCCL's init is collective: it returns once every rank has joined (its peers are then checked while waiting).
  const char* limit = std::getenv("BSSN_NCCL_EMU_INIT_TIMEOUT_S");  // bounded, unlike NCCL: CI must not hang
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(limit ? std::atoi(limit) : 120);
  for (;;) {
    const uint32_t joined = g.joined.load();
    if (joined >= uint32_t(nranks)) break;
    for (int r = 0; r < nranks; ++r) {
      const int pid = g.ranks[r].pid.load();
      if (r != rank && pid > 0 && startTime(pid) != g.ranks[r].startTime) return kRemoteError;
    }
    if (std::chrono::steady_clock::now() > deadline) return kRemoteError;
    futexWait(g.joined, joined);
  }
  *out = new ncclComm{std::move(s)};
  return kSuccess;
}

}  // namespace

struct ncclConfig_t;  // read only by NCCL itself; the emulator's init is the same blocking or not

NCCL_EMU_API int ncclCommInitRank(ncclComm** comm, int nranks, ncclUniqueId id, int rank) {
  return initRank(comm, nranks, id.internal, rank);
}

// A non-blocking communicator (config->blocking = 0) may complete its init before returning, as here: its async
// error then reads ncclSuccess at once.
NCCL_EMU_API int ncclCommInitRankConfig(ncclComm** comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t*) {
  return initRank(comm, nranks, id.internal, rank);
}

NCCL_EMU_API int ncclAllReduce(const void* send, void* recv, size_t count, int type, int op, ncclComm* comm, cudaStream_t stream) {
  return collective(true, send, recv, count, type, op, 0, comm, stream);
}

NCCL_EMU_API int ncclBroadcast(const void* send, void* recv, size_t count, int type, int root, ncclComm* comm, cudaStream_t stream) {
  return collective(false, send, recv, count, type, kSum, root, comm, stream);
}

NCCL_EMU_API int ncclGroupStart() {
  ++groupDepth;
  return kSuccess;
}

NCCL_EMU_API int ncclGroupEnd() {
  if (groupDepth == 0) return kInvalidUsage;
  if (--groupDepth > 0) return kSuccess;
  std::vector<Collective> calls;
  calls.swap(grouped);
  int result = kSuccess;
  for (Collective& c : calls)
    if (const int r = enqueue(std::move(c)); r != kSuccess && result == kSuccess) result = r;
  return result;
}

NCCL_EMU_API int ncclCommGetAsyncError(ncclComm* comm, int* error) {
  if (!comm || !comm->state || !error) return kInvalidArgument;
  *error = comm->state->asyncError.load();
  return kSuccess;
}

// Marks the rank aborted in the region (its peers' waits fail), wakes this rank's own waits, and frees the handle;
// the state goes with the last queued collective holding it.
NCCL_EMU_API int ncclCommAbort(ncclComm* comm) {
  if (!comm) return kSuccess;  // NCCL: aborting a null communicator is a no-op
  if (State* s = comm->state.get()) {
    s->aborted.store(true);
    s->region->ranks[s->rank].aborted.store(1);
    wakeAll(*s);
  }
  delete comm;
  return kSuccess;
}

NCCL_EMU_API int ncclCommDestroy(ncclComm* comm) {
  if (!comm) return kInvalidArgument;
  delete comm;
  return kSuccess;
}

NCCL_EMU_API const char* ncclGetErrorString(int result) {
  switch (result) {
    case kSuccess: return "no error";
    case kUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case kSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case 3: return "internal error - please report this issue to the NCCL developers";
    case kInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case kInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case kRemoteError: return "remote process exited or there was a network error";
    case 7: return "NCCL operation in progress";
    default: return "unknown result code";
  }
}

// Not NCCL's: bytes all-reduced and broadcast by this process's collectives so far (the emulator's cost counting).
NCCL_EMU_API void bssnNcclEmuBytes(int64_t* allReduced, int64_t* broadcast) {
  if (allReduced) *allReduced = allReducedBytes.load();
  if (broadcast) *broadcast = broadcastBytes.load();
}
