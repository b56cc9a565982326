#include "core/share.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>

namespace bssn {

// The control page. Plain atomics and a process-shared robust mutex: every holder maps the same page.
struct Control {
  uint64_t magic;
  uint64_t secret[2];
  uint64_t dataBytes;
  uint32_t kind;
  int32_t deviceIndex;
  std::atomic<uint32_t> status;     // ShareStatus
  std::atomic<uint32_t> requested;  // publications handed out by the exporter's share() calls
  std::atomic<uint32_t> completed;  // the last publication the exporter's stream reached (a futex word)
  std::atomic<int32_t> importers;
  pthread_mutex_t owner;            // locked by the exporter's thread for the export's life
  unsigned char ipcMem[ShareRegion::kHandleBytes];
  unsigned char ipcEvent[ShareRegion::kHandleBytes];
  char ipcError[512];
};
static_assert(sizeof(Control) <= ShareRegion::kControlBytes, "the control block must fit its page");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "shared atomics must be lock-free");

namespace {

constexpr uint64_t kMagic = 0x3152485353534231ull;  // "1BSSSHR1": the layout's version

std::string errnoText(int error) { return std::strerror(error); }

// Not the glibc wrappers: the portable build must not need glibc 2.25/2.27 symbols.
int memfdCreate(const char* name) { return int(syscall(SYS_memfd_create, name, unsigned(MFD_CLOEXEC))); }

void randomBytes(void* out, size_t n) {
  auto* p = static_cast<unsigned char*>(out);
  while (n > 0) {
    const long got = syscall(SYS_getrandom, p, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throwError("getrandom failed: " + errnoText(errno));
    }
    p += got;
    n -= size_t(got);
  }
}

size_t pageRound(size_t bytes) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page * page;
}

long futex(std::atomic<uint32_t>* word, int op, uint32_t value, const timespec* timeout) {
  // Not FUTEX_PRIVATE: the word is in memory shared with other processes.
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, value, timeout, nullptr, 0);
}

// Publication numbers wrap; a is at or after b when the difference, read as signed, is not negative.
bool reached(uint32_t a, uint32_t b) { return int32_t(a - b) >= 0; }

constexpr const char* kMemfdName = "bssn-shared-tensor";

// Whether the /proc/<pid>/fd/<n> link `path` is a bssn shared-tensor memfd; errno says why not (EINVAL: another file).
bool isShareMemfd(const std::string& path) {
  char link[128] = {};
  errno = 0;
  const ssize_t n = readlink(path.c_str(), link, sizeof link - 1);
  if (n <= 0) return false;
  const std::string expected = std::string("/memfd:") + kMemfdName;  // then " (deleted)"
  if (std::strncmp(link, expected.c_str(), expected.size()) == 0 && (link[expected.size()] == 0 || link[expected.size()] == ' ')) return true;
  errno = EINVAL;
  return false;
}

}  // namespace

std::shared_ptr<ShareRegion> ShareRegion::create(size_t dataBytes, bool withData, DeviceKind kind, int deviceIndex) {
  std::shared_ptr<ShareRegion> r(new ShareRegion());
  r->fd_ = memfdCreate(kMemfdName);
  if (r->fd_ < 0) throwError("memfd_create failed: " + errnoText(errno) + " (sharing tensors needs Linux 3.17 or later)");
  r->withData_ = withData;
  r->dataBytes_ = dataBytes;
  r->mapBytes_ = kControlBytes + (withData ? pageRound(dataBytes) : 0);
  if (ftruncate(r->fd_, off_t(r->mapBytes_)) != 0)
    throwError("ftruncate of a " + std::to_string(r->mapBytes_) + "-byte shared region failed: " + errnoText(errno), ErrorCode::OutOfMemory);
  void* base = mmap(nullptr, r->mapBytes_, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd_, 0);
  if (base == MAP_FAILED) throwError("mmap of a shared region failed: " + errnoText(errno), ErrorCode::OutOfMemory);
  r->base_ = base;
  Control* c = new (base) Control();
  randomBytes(c->secret, sizeof c->secret);
  c->dataBytes = dataBytes;
  c->kind = uint32_t(kind);
  c->deviceIndex = deviceIndex;
  c->status.store(uint32_t(ShareStatus::Live));
  c->requested.store(0);
  c->completed.store(0);
  c->importers.store(0);
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  const int st = pthread_mutex_init(&c->owner, &attr);
  pthread_mutexattr_destroy(&attr);
  if (st != 0) throwError("pthread_mutex_init (a process-shared robust mutex) failed: " + errnoText(st));
  std::atomic_thread_fence(std::memory_order_release);
  c->magic = kMagic;  // last: an importer that sees it sees an initialised page
  return r;
}

std::shared_ptr<ShareRegion> ShareRegion::open(pid_t pid, int fd, const uint64_t secret[2], size_t dataBytes, bool withData) {
  const std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  std::shared_ptr<ShareRegion> r(new ShareRegion());
  // A forged descriptor may name any open file of any process: only a bssn memfd is opened (checked before, so a
  // terminal or device is never opened, and after, on what was opened, since the number may be reused meanwhile).
  int error = isShareMemfd(path) ? 0 : errno != 0 ? errno : EINVAL;
  if (error == 0) {
    r->fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (r->fd_ < 0) error = errno;
    else if (!isShareMemfd("/proc/self/fd/" + std::to_string(r->fd_))) error = EINVAL;
  }
  if (error != 0) {
    if (error == EINVAL)
      throwTypeError("cannot open the shared tensor: the descriptor does not name shared tensor memory (stale or forged)");
    if (error == ENOENT && kill(pid, 0) != 0)
      throwError("cannot open the shared tensor: its exporting process " + std::to_string(pid) + " has exited", ErrorCode::ShareGone);
    if (error == ENOENT)
      throwError("cannot open the shared tensor: the descriptor is stale (process " + std::to_string(pid) + " no longer shares it)",
                 ErrorCode::ShareGone);
    throwError("cannot open the shared tensor through " + path + ": " + errnoText(error) +
               (error == EACCES || error == EPERM ? " (the exporting process must run as the same user)" : ""));
  }
  r->withData_ = withData;
  r->dataBytes_ = dataBytes;
  r->mapBytes_ = kControlBytes + (withData ? pageRound(dataBytes) : 0);
  // The size by lseek, not fstat: fstat is a glibc 2.33 symbol, newer than the prebuilt binary may need.
  const off_t size = lseek(r->fd_, 0, SEEK_END);
  if (size < 0 || size_t(size) != r->mapBytes_)
    throwTypeError("cannot open the shared tensor: the descriptor does not match the memory it names (stale or forged)");
  void* base = mmap(nullptr, r->mapBytes_, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd_, 0);
  if (base == MAP_FAILED) throwError("mmap of a shared tensor failed: " + errnoText(errno), ErrorCode::OutOfMemory);
  r->base_ = base;
  const Control* c = r->control();
  if (c->magic != kMagic || std::memcmp(c->secret, secret, sizeof c->secret) != 0 || c->dataBytes != dataBytes)
    throwTypeError("cannot open the shared tensor: the descriptor does not match the memory it names (stale or forged)");
  return r;
}

ShareRegion::~ShareRegion() {
  // A mutex still locked by its owner sits on that thread's robust list: unmapping it would stop the kernel's walk
  // of the list at exit. revoke() unlocks it on the owner's thread; if it ran elsewhere, the page stays mapped.
  const bool pinned = ownerLocked_;
  if (base_ && !pinned) munmap(base_, mapBytes_);
  if (fd_ >= 0) close(fd_);
}

const uint64_t* ShareRegion::secret() const { return control()->secret; }
DeviceKind ShareRegion::kind() const { return DeviceKind(control()->kind); }
int ShareRegion::deviceIndex() const { return control()->deviceIndex; }

void ShareRegion::lockOwner() {
  if (ownerLocked_) return;
  const int st = pthread_mutex_lock(&control()->owner);
  if (st != 0) throwError("locking a shared tensor's owner mutex failed: " + errnoText(st));
  ownerLocked_ = true;
  ownerThread_ = std::this_thread::get_id();
}

void ShareRegion::revoke() noexcept {
  uint32_t live = uint32_t(ShareStatus::Live);
  control()->status.compare_exchange_strong(live, uint32_t(ShareStatus::Revoked));
  futex(&control()->completed, FUTEX_WAKE, INT_MAX, nullptr);  // waiters stop waiting for a gone exporter
  if (ownerLocked_ && ownerThread_ == std::this_thread::get_id() && pthread_mutex_unlock(&control()->owner) == 0)
    ownerLocked_ = false;
}

uint32_t ShareRegion::publish() noexcept { return control()->requested.fetch_add(1, std::memory_order_acq_rel) + 1; }

void ShareRegion::complete(uint32_t publication) noexcept {
  std::atomic<uint32_t>& done = control()->completed;
  uint32_t now = done.load(std::memory_order_acquire);
  while (!reached(now, publication) && !done.compare_exchange_weak(now, publication, std::memory_order_acq_rel)) {
  }
  futex(&done, FUTEX_WAKE, INT_MAX, nullptr);
}

ShareStatus ShareRegion::status() noexcept {
  Control* c = control();
  const auto s = ShareStatus(c->status.load(std::memory_order_acquire));
  if (s != ShareStatus::Live) return s;
  // The exporter's thread holds the mutex while it lives; only a dead owner lets anybody else take it.
  const int st = pthread_mutex_trylock(&c->owner);
  if (st == EBUSY || st == EDEADLK) return ShareStatus::Live;
  if (st == EOWNERDEAD) {
    uint32_t live = uint32_t(ShareStatus::Live);
    c->status.compare_exchange_strong(live, uint32_t(ShareStatus::OwnerExited));
    pthread_mutex_consistent(&c->owner);
    pthread_mutex_unlock(&c->owner);
    futex(&c->completed, FUTEX_WAKE, INT_MAX, nullptr);
    return ShareStatus(c->status.load());
  }
  if (st == 0) pthread_mutex_unlock(&c->owner);
  // Free (or unusable): the exporter revoked meanwhile, or another importer saw it exit first.
  const auto now = ShareStatus(c->status.load(std::memory_order_acquire));
  return now == ShareStatus::Live ? ShareStatus::OwnerExited : now;
}

ShareStatus ShareRegion::recordedStatus() const noexcept { return ShareStatus(control()->status.load(std::memory_order_acquire)); }

uint32_t ShareRegion::requested() const noexcept { return control()->requested.load(std::memory_order_acquire); }

void ShareRegion::waitCompleted(uint32_t publication) noexcept {
  std::atomic<uint32_t>& done = control()->completed;
  for (;;) {
    const uint32_t now = done.load(std::memory_order_acquire);
    if (reached(now, publication) || status() != ShareStatus::Live) return;
    // Short timeouts: an exporter that dies without waking us is noticed through status().
    const timespec timeout{0, 20 * 1000 * 1000};
    futex(&done, FUTEX_WAIT, now, &timeout);
  }
}

std::atomic<int32_t>& ShareRegion::importers() { return control()->importers; }
unsigned char* ShareRegion::ipcMemHandle() { return control()->ipcMem; }
unsigned char* ShareRegion::ipcEventHandle() { return control()->ipcEvent; }
std::string ShareRegion::ipcError() const { return std::string(control()->ipcError, strnlen(control()->ipcError, sizeof control()->ipcError)); }
void ShareRegion::setIpcError(const std::string& message) {
  std::snprintf(control()->ipcError, sizeof control()->ipcError, "%s", message.c_str());
}

// Token: "bssn1.<pid>.<fd>.<id>.<secret hi>.<secret lo>.<bytes>.<kind>.<index>", numbers in hex.
std::string ShareToken::encode() const {
  char text[256];
  std::snprintf(text, sizeof text, "bssn1.%x.%x.%llx.%016llx.%016llx.%llx.%s.%x", unsigned(pid), unsigned(fd), (unsigned long long)id,
                (unsigned long long)secret[0], (unsigned long long)secret[1], (unsigned long long)bytes,
                kind == DeviceKind::Cuda ? "cuda" : "cpu", unsigned(deviceIndex));
  return text;
}

ShareToken ShareToken::decode(const std::string& text) {
  ShareToken t;
  unsigned pid = 0, fd = 0, index = 0;
  unsigned long long id = 0, s0 = 0, s1 = 0, bytes = 0;
  char kind[8] = {0};
  int consumed = 0;
  const int n = std::sscanf(text.c_str(), "bssn1.%x.%x.%llx.%16llx.%16llx.%llx.%4[a-z].%x%n", &pid, &fd, &id, &s0, &s1, &bytes, kind,
                            &index, &consumed);
  const std::string k = kind;
  if (n != 8 || size_t(consumed) != text.size() || (k != "cpu" && k != "cuda") || pid == 0 || pid > INT_MAX || fd > INT_MAX ||
      index > 1023)
    throwTypeError("expected a shared tensor descriptor made by tensor.share(): its handle is malformed");
  t.pid = pid_t(pid);
  t.fd = int(fd);
  t.id = id;
  t.secret[0] = s0;
  t.secret[1] = s1;
  t.bytes = bytes;
  t.kind = k == "cuda" ? DeviceKind::Cuda : DeviceKind::Cpu;
  t.deviceIndex = int(index);
  return t;
}

namespace {
std::mutex registryMutex;
std::map<uint64_t, std::weak_ptr<ShareExport>>& registry() {
  static auto* exports = new std::map<uint64_t, std::weak_ptr<ShareExport>>();  // never destroyed: used at exit
  return *exports;
}
std::atomic<uint64_t> lastExportId{0};
}  // namespace

uint64_t nextExportId() { return ++lastExportId; }

void registerExport(const std::shared_ptr<ShareExport>& e) {
  std::lock_guard<std::mutex> lock(registryMutex);
  for (auto it = registry().begin(); it != registry().end();) it = it->second.expired() ? registry().erase(it) : std::next(it);
  registry()[e->id] = e;
}

std::shared_ptr<ShareExport> findExport(uint64_t id) {
  std::lock_guard<std::mutex> lock(registryMutex);
  auto it = registry().find(id);
  return it == registry().end() ? nullptr : it->second.lock();
}

void throwShareGone(ShareStatus status, const char* what) {
  throwError(std::string(what) + (status == ShareStatus::Revoked ? " is a shared tensor whose owner disposed it"
                                                                  : " is a shared tensor whose owner (thread or process) has exited"),
             ErrorCode::ShareGone);
}

}  // namespace bssn
