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
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <thread>
#include <vector>

namespace bssn {

// The control page. Plain atomics: every holder maps the same page.
constexpr int kImporterSlots = 64;
struct Control {
  uint64_t magic;
  uint64_t secret[2];
  uint64_t dataBytes;
  uint32_t kind;
  int32_t deviceIndex;
  std::atomic<uint32_t> status;     // ShareStatus
  std::atomic<uint64_t> requested;  // share() calls so far (64 bits: which 32-bit numbers were issued is known after they wrap)
  std::atomic<uint32_t> completed;  // the last publication the exporter's stream reached (a futex word)
  std::atomic<uint32_t> moved;      // 1 once the buffer's move to this memory has run (or will never run)
  int32_t ownerPid;                 // the exporting process and its liveness page (Liveness)
  int32_t livenessFd;
  uint64_t livenessSecret;
  std::atomic<int32_t> importerPid[kImporterSlots];  // processes holding the memory open, and how many times
  std::atomic<int32_t> importerCount[kImporterSlots];
  unsigned char ipcMem[ShareRegion::kHandleBytes];
  unsigned char ipcEvent[ShareRegion::kHandleBytes];
  char ipcError[512];
};
static_assert(sizeof(Control) <= ShareRegion::kControlBytes, "the control block must fit its page");
static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free, "shared atomics must be lock-free");

namespace {

constexpr uint64_t kMagic = 0x3352485353534231ull;  // "1BSSSHR3": the layout's version
constexpr uint64_t kLivenessMagic = 0x3156494c53534231ull;
constexpr const char* kMemfdName = "bssn-shared-tensor";
constexpr const char* kLivenessName = "bssn-liveness";

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

// The mapping of a region: the control page, then (CPU) at least one data page, so that a zero-element tensor's
// pointer still points into it. The exporter and every importer compute the same size.
size_t regionBytes(size_t dataBytes, bool withData) {
  return ShareRegion::kControlBytes + (withData ? pageRound(dataBytes > 0 ? dataBytes : 1) : 0);
}

long futex(std::atomic<uint32_t>* word, int op, uint32_t value, const timespec* timeout) {
  // Not FUTEX_PRIVATE: the word is in memory shared with other processes.
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, value, timeout, nullptr, 0);
}

// Set when the process exits (process.exit: cancelShareWaits()): waits for another process's publications end then.
// Otherwise the exit would wait for them (Node joins its thread pool, where reads wait for a stream that waits here)
// until the exporter got there.
std::atomic<bool> processExiting{false};

// Publication numbers wrap; a is at or after b when the difference, read as signed, is not negative.
bool reached(uint32_t a, uint32_t b) { return int32_t(a - b) >= 0; }

// A memfd of `bytes` with its memory reserved (fallocate), so that a shortage is an error here rather than a
// SIGBUS at the first touch. Returns the fd; throws Error.
int createMemfd(const char* name, size_t bytes) {
  const int fd = memfdCreate(name);
  if (fd < 0) {
    const int error = errno;
    throwError("memfd_create failed: " + errnoText(error) + (error == ENOSYS ? " (sharing tensors needs Linux 3.17 or later)" : ""));
  }
  if (ftruncate(fd, off_t(bytes)) != 0) {
    const int error = errno;
    close(fd);
    throwError("ftruncate of a " + std::to_string(bytes) + "-byte shared region failed: " + errnoText(error), ErrorCode::OutOfMemory);
  }
  if (syscall(SYS_fallocate, fd, 0, off_t(0), off_t(bytes)) != 0 && errno != EOPNOTSUPP && errno != ENOSYS) {
    const int error = errno;
    close(fd);
    throwError("cannot reserve " + std::to_string(bytes) + " bytes of shared memory: " + errnoText(error), ErrorCode::OutOfMemory);
  }
  return fd;
}

// Whether the /proc/<pid>/fd/<n> link `path` is the memfd called `name`; errno says why not (EINVAL: another file).
bool isMemfd(const std::string& path, const std::string& name) {
  char link[160] = {};
  errno = 0;
  const ssize_t n = readlink(path.c_str(), link, sizeof link - 1);
  if (n <= 0) return false;
  const std::string expected = "/memfd:" + name;  // then " (deleted)"
  if (std::strncmp(link, expected.c_str(), expected.size()) == 0 && (link[expected.size()] == 0 || link[expected.size()] == ' ')) return true;
  errno = EINVAL;
  return false;
}

// Opens another process's memfd called `name` through /proc/<pid>/fd/<fd>: checked before opening (a forged
// descriptor must never open a terminal, pipe or device) and after, on what was opened (the number may be reused
// meanwhile). Returns the fd, or -1 with errno (EINVAL: not that memfd).
int openMemfd(pid_t pid, int fd, const std::string& name) {
  const std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  if (!isMemfd(path, name)) {
    if (errno == 0) errno = EINVAL;
    return -1;
  }
  const int opened = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (opened < 0) return -1;
  if (!isMemfd("/proc/self/fd/" + std::to_string(opened), name)) {
    close(opened);
    errno = EINVAL;
    return -1;
  }
  return opened;
}

// Maps `bytes` of a memfd whose size must be exactly that (lseek, not fstat: fstat is a glibc 2.33 symbol).
void* mapMemfd(int fd, size_t bytes) {
  const off_t size = lseek(fd, 0, SEEK_END);
  if (size < 0 || size_t(size) != bytes) return nullptr;
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return base == MAP_FAILED ? nullptr : base;
}

}  // namespace

// A process's liveness page: a process-shared robust mutex that a keeper thread locks for the process's whole
// life. Other processes map the page; pthread_mutex_trylock answers EBUSY while the process lives and EOWNERDEAD
// (then 0) once it has ended, with no system call while it lives.
class Liveness {
 public:
  struct Page {
    uint64_t magic;
    uint64_t secret;
    pthread_mutex_t keeper;
  };

  // This process's page, with its keeper thread (started on first use, locked before this returns).
  static Liveness& self() {
    static Liveness* mine = [] {
      auto* l = new Liveness();  // never destroyed: the keeper holds it until the process ends
      randomBytes(&l->secret_, sizeof l->secret_);
      l->fd_ = createMemfd((std::string(kLivenessName) + "-" + hex(l->secret_)).c_str(), kPageBytes);
      l->page_ = static_cast<Page*>(mapMemfd(l->fd_, kPageBytes));
      if (!l->page_) throwError("mmap of the liveness page failed: " + errnoText(errno));
      l->page_->magic = kLivenessMagic;
      l->page_->secret = l->secret_;
      pthread_mutexattr_t attr;
      pthread_mutexattr_init(&attr);
      pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
      pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
      const int st = pthread_mutex_init(&l->page_->keeper, &attr);
      pthread_mutexattr_destroy(&attr);
      if (st != 0) throwError("pthread_mutex_init (a process-shared robust mutex) failed: " + errnoText(st));
      static std::atomic<uint32_t> locked{0};  // static: the keeper still touches it after this returns
      std::thread([page = l->page_] {
        pthread_mutex_lock(&page->keeper);
        locked.store(1);
        futex(&locked, FUTEX_WAKE, INT_MAX, nullptr);
        std::atomic<uint32_t> never{0};
        for (;;) futex(&never, FUTEX_WAIT, 0, nullptr);  // until the process ends
      }).detach();
      while (locked.load() == 0) futex(&locked, FUTEX_WAIT, 0, nullptr);
      return l;
    }();
    return *mine;
  }

  // Another process's page. Throws Error (ShareGone when that process has exited).
  static std::shared_ptr<Liveness> open(pid_t pid, int fd, uint64_t secret) {
    auto l = std::make_shared<Liveness>();
    const int opened = openMemfd(pid, fd, std::string(kLivenessName) + "-" + hex(secret));
    if (opened < 0) throwError("cannot open the shared tensor: its exporting process " + std::to_string(pid) + " has exited", ErrorCode::ShareGone);
    l->page_ = static_cast<Page*>(mapMemfd(opened, kPageBytes));
    close(opened);  // the mapping keeps the page
    if (!l->page_ || l->page_->magic != kLivenessMagic || l->page_->secret != secret)
      throwError("cannot open the shared tensor: its exporting process " + std::to_string(pid) + " has exited", ErrorCode::ShareGone);
    l->mapped_ = true;
    return l;
  }

  Liveness() = default;
  ~Liveness() {
    if (mapped_) munmap(page_, kPageBytes);
  }

  bool alive() {
    const int st = pthread_mutex_trylock(&page_->keeper);
    if (st == EBUSY) return true;
    if (st == EOWNERDEAD) pthread_mutex_consistent(&page_->keeper);
    if (st == EOWNERDEAD || st == 0) pthread_mutex_unlock(&page_->keeper);
    return false;
  }
  int fd() const { return fd_; }
  uint64_t secret() const { return secret_; }

 private:
  static constexpr size_t kPageBytes = 4096;
  static std::string hex(uint64_t v) {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(v));
    return text;
  }
  Page* page_ = nullptr;
  int fd_ = -1;
  uint64_t secret_ = 0;
  bool mapped_ = false;
};

std::shared_ptr<ShareRegion> ShareRegion::create(size_t dataBytes, bool withData, DeviceKind kind, int deviceIndex) {
  Liveness& liveness = Liveness::self();
  std::shared_ptr<ShareRegion> r(new ShareRegion());
  r->withData_ = withData;
  r->dataBytes_ = dataBytes;
  r->mapBytes_ = regionBytes(dataBytes, withData);
  r->fd_ = createMemfd(kMemfdName, r->mapBytes_);
  r->base_ = mapMemfd(r->fd_, r->mapBytes_);
  if (!r->base_) throwError("mmap of a shared region failed: " + errnoText(errno), ErrorCode::OutOfMemory);
  Control* c = new (r->base_) Control();
  randomBytes(c->secret, sizeof c->secret);
  c->dataBytes = dataBytes;
  c->kind = uint32_t(kind);
  c->deviceIndex = deviceIndex;
  c->status.store(uint32_t(ShareStatus::Live));
  c->requested.store(0);
  c->completed.store(0);
  c->moved.store(0);
  c->ownerPid = int32_t(getpid());
  c->livenessFd = liveness.fd();
  c->livenessSecret = liveness.secret();
  for (int i = 0; i < kImporterSlots; ++i) {
    c->importerPid[i].store(0);
    c->importerCount[i].store(0);
  }
  std::atomic_thread_fence(std::memory_order_release);
  c->magic = kMagic;  // last: an importer that sees it sees an initialised page
  return r;
}

std::shared_ptr<ShareRegion> ShareRegion::open(pid_t pid, int fd, const uint64_t secret[2], size_t dataBytes, bool withData) {
  std::shared_ptr<ShareRegion> r(new ShareRegion());
  const int opened = openMemfd(pid, fd, kMemfdName);
  if (opened < 0) {
    const int error = errno;
    if (error == ENOENT && kill(pid, 0) != 0)
      throwError("cannot open the shared tensor: its exporting process " + std::to_string(pid) + " has exited", ErrorCode::ShareGone);
    if (error == ENOENT || error == EINVAL)
      throwError("cannot open the shared tensor: the descriptor is stale (process " + std::to_string(pid) +
                     " no longer shares that memory) or forged",
                 ErrorCode::ShareGone);
    throwError("cannot open the shared tensor of process " + std::to_string(pid) + ": " + errnoText(error) +
               (error == EACCES || error == EPERM ? " (the exporting process must run as the same user)" : ""));
  }
  r->withData_ = withData;
  r->dataBytes_ = dataBytes;
  r->mapBytes_ = regionBytes(dataBytes, withData);
  r->base_ = mapMemfd(opened, r->mapBytes_);
  close(opened);  // the mapping keeps the memory; only the exporter's descriptor must stay open
  const Control* c = r->base_ ? r->control() : nullptr;
  if (!c || c->magic != kMagic || std::memcmp(c->secret, secret, sizeof c->secret) != 0 || c->dataBytes != dataBytes)
    throwError("cannot open the shared tensor: the descriptor is stale (process " + std::to_string(pid) +
                   " no longer shares that memory) or forged",
               ErrorCode::ShareGone);
  r->liveness_ = Liveness::open(c->ownerPid, c->livenessFd, c->livenessSecret);
  return r;
}

ShareRegion::~ShareRegion() {
  if (base_) munmap(base_, mapBytes_);
  if (fd_ >= 0) close(fd_);
}

const uint64_t* ShareRegion::secret() const { return control()->secret; }
DeviceKind ShareRegion::kind() const { return DeviceKind(control()->kind); }
int ShareRegion::deviceIndex() const { return control()->deviceIndex; }

void ShareRegion::revoke() noexcept {
  uint32_t live = uint32_t(ShareStatus::Live);
  control()->status.compare_exchange_strong(live, uint32_t(ShareStatus::Revoked));
  futex(&control()->completed, FUTEX_WAKE, INT_MAX, nullptr);  // waiters stop waiting for a gone exporter
}

uint32_t ShareRegion::publish() noexcept { return uint32_t(control()->requested.fetch_add(1, std::memory_order_acq_rel) + 1); }

void ShareRegion::complete(uint32_t publication) noexcept {
  std::atomic<uint32_t>& done = control()->completed;
  uint32_t now = done.load(std::memory_order_acquire);
  while (!reached(now, publication) && !done.compare_exchange_weak(now, publication, std::memory_order_acq_rel)) {
  }
  futex(&done, FUTEX_WAKE, INT_MAX, nullptr);
}

void ShareRegion::markMoved() noexcept {
  control()->moved.store(1, std::memory_order_release);
  futex(&control()->completed, FUTEX_WAKE, INT_MAX, nullptr);
}

ShareStatus ShareRegion::status() noexcept {
  Control* c = control();
  const auto s = ShareStatus(c->status.load(std::memory_order_acquire));
  // In the exporting process the exporter is alive by definition; elsewhere its keeper thread says so.
  if (s != ShareStatus::Live || !liveness_ || liveness_->alive()) return s;
  uint32_t live = uint32_t(ShareStatus::Live);
  c->status.compare_exchange_strong(live, uint32_t(ShareStatus::OwnerExited));
  futex(&c->completed, FUTEX_WAKE, INT_MAX, nullptr);
  return ShareStatus(c->status.load());
}

ShareStatus ShareRegion::recordedStatus() const noexcept { return ShareStatus(control()->status.load(std::memory_order_acquire)); }

uint32_t ShareRegion::requested() const noexcept { return uint32_t(control()->requested.load(std::memory_order_acquire)); }

bool ShareRegion::issued(uint32_t publication) const noexcept {
  const uint64_t count = control()->requested.load(std::memory_order_acquire);
  // Until the numbers wrap, exactly 0 (before any share(): waits for nothing) to `count` were issued; comparing
  // wrapped numbers instead took 2^32 - 1 for one issued before 0. After, every number was, and those up to 2^31
  // behind the latest are the ones that compare as reached.
  if (count <= UINT32_MAX) return publication <= count;
  return reached(uint32_t(count), publication);
}

void ShareRegion::waitCompleted(uint32_t publication, const std::function<bool()>& cancelled) noexcept {
  std::atomic<uint32_t>& done = control()->completed;
  for (;;) {
    const uint32_t now = done.load(std::memory_order_acquire);
    if (reached(now, publication)) return;
    const ShareStatus s = status();
    // A dead exporting process frees nothing more; a revoked export may still have its move queued, which frees
    // the memory a reader would otherwise read: wait for the move (it runs, or is dropped, with the stream).
    if (s == ShareStatus::OwnerExited || (s == ShareStatus::Revoked && control()->moved.load(std::memory_order_acquire))) return;
    if ((cancelled && cancelled()) || processExiting.load()) return;
    // Short timeouts: an exporter that dies without waking us is noticed through status().
    const timespec timeout{0, 20 * 1000 * 1000};
    futex(&done, FUTEX_WAIT, now, &timeout);
  }
}

void ShareRegion::addImporter() {
  Control* c = control();
  const int32_t me = int32_t(getpid());
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < kImporterSlots; ++i) {
      int32_t holder = c->importerPid[i].load();
      // This process's slot (pass 0), else a free one (pass 1).
      if (holder == me || (pass == 1 && holder == 0 && c->importerPid[i].compare_exchange_strong(holder, me))) {
        c->importerCount[i].fetch_add(1);
        return;
      }
    }
  }
  throwError("cannot open the shared tensor: " + std::to_string(kImporterSlots) + " other processes hold it open already");
}

void ShareRegion::removeImporter() noexcept {
  Control* c = control();
  const int32_t me = int32_t(getpid());
  for (int i = 0; i < kImporterSlots; ++i) {
    if (c->importerPid[i].load() != me) continue;
    if (c->importerCount[i].fetch_sub(1) == 1) c->importerPid[i].store(0);
    return;
  }
}

int ShareRegion::liveImporters() noexcept {
  Control* c = control();
  int live = 0;
  for (int i = 0; i < kImporterSlots; ++i) {
    const int32_t pid = c->importerPid[i].load();
    // A process that ended without closing (a crash, process.exit) holds nothing any more.
    if (pid != 0 && c->importerCount[i].load() > 0 && (kill(pid, 0) == 0 || errno == EPERM)) ++live;
  }
  return live;
}

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

namespace {
// A field of lowercase hex digits (no sign, prefix or blanks) of at most `digits` digits.
bool parseHex(const std::string& field, size_t digits, uint64_t* out) {
  if (field.empty() || field.size() > digits) return false;
  uint64_t v = 0;
  for (char ch : field) {
    if (ch >= '0' && ch <= '9') v = v * 16 + uint64_t(ch - '0');
    else if (ch >= 'a' && ch <= 'f') v = v * 16 + uint64_t(ch - 'a' + 10);
    else return false;
  }
  *out = v;
  return true;
}
}  // namespace

ShareToken ShareToken::decode(const std::string& text) {
  std::vector<std::string> fields;
  size_t start = 0;
  for (size_t dot; (dot = text.find('.', start)) != std::string::npos; start = dot + 1) fields.push_back(text.substr(start, dot - start));
  fields.push_back(text.substr(start));
  uint64_t pid = 0, fd = 0, id = 0, s0 = 0, s1 = 0, bytes = 0, index = 0;
  const bool ok = fields.size() == 9 && fields[0] == "bssn1" && parseHex(fields[1], 8, &pid) && parseHex(fields[2], 8, &fd) &&
                  parseHex(fields[3], 16, &id) && fields[4].size() == 16 && parseHex(fields[4], 16, &s0) && fields[5].size() == 16 &&
                  parseHex(fields[5], 16, &s1) && parseHex(fields[6], 16, &bytes) && (fields[7] == "cpu" || fields[7] == "cuda") &&
                  parseHex(fields[8], 3, &index);
  if (!ok || pid == 0 || pid > INT_MAX || fd > INT_MAX || index > 1023)
    throwTypeError("expected a shared tensor descriptor made by tensor.share(): its handle is malformed");
  ShareToken t;
  t.pid = pid_t(pid);
  t.fd = int(fd);
  t.id = id;
  t.secret[0] = s0;
  t.secret[1] = s1;
  t.bytes = bytes;
  t.kind = fields[7] == "cuda" ? DeviceKind::Cuda : DeviceKind::Cpu;
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
                                                                  : " is a shared tensor whose owner's process has exited"),
             ErrorCode::ShareGone);
}

void throwCannotOpen(ShareStatus status) {
  throwError(std::string("cannot open the shared tensor: ") +
                 (status == ShareStatus::Revoked ? "its owner disposed it" : "its owner's process has exited"),
             ErrorCode::ShareGone);
}

void cancelShareWaits() noexcept {
  processExiting.store(true);
}

}  // namespace bssn
