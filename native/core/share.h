// Tensors shared across worker threads and processes (tensor.share() / Tensor.open() in JS).
//
// Every shared buffer has a control page in a memfd that the exporter and every importer map. It says whether the
// exporter's tensor is still alive, counts the exporter's publications (share() calls) for ordering, and names the
// exporting process's liveness page: a robust mutex that a keeper thread of that process holds for the process's
// life, so that when the process ends the kernel marks the mutex's owner dead and importers learn of it without a
// system call (one mutex per process: the kernel marks at most 2048 robust mutexes per exiting thread). On the CPU
// the data lives in the same memfd, after the control page, so another process maps it without a copy; on CUDA
// the page holds the IPC handles.
//
// In the exporter's process (worker threads) an importer holds the exporter's Buffer itself (reference-counted);
// in another process it maps the memory. Either way the memory is freed once, when its last holder lets go.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "core/device.h"

namespace bssn {

enum class ShareStatus : uint32_t { Live = 0, Revoked = 1, OwnerExited = 2 };

class Liveness;

// One mapping, in this process, of a shared region: the control page and (CPU) the data after it.
class ShareRegion {
 public:
  static constexpr size_t kControlBytes = 4096;
  static constexpr size_t kHandleBytes = 64;  // cudaIpcMemHandle_t and cudaIpcEventHandle_t are 64 bytes

  // A new region (the exporter): `dataBytes` of data after the control page when `withData`. Throws Error.
  static std::shared_ptr<ShareRegion> create(size_t dataBytes, bool withData, DeviceKind kind, int deviceIndex);
  // Another process's region, reached through /proc/<pid>/fd/<fd>, checked against `secret`. Throws Error saying
  // whether the exporter has exited or the descriptor is stale or forged.
  static std::shared_ptr<ShareRegion> open(pid_t pid, int fd, const uint64_t secret[2], size_t dataBytes, bool withData);
  ~ShareRegion();
  ShareRegion(const ShareRegion&) = delete;
  ShareRegion& operator=(const ShareRegion&) = delete;

  int fd() const { return fd_; }
  void* data() const { return withData_ ? static_cast<char*>(base_) + kControlBytes : nullptr; }
  size_t dataBytes() const { return dataBytes_; }
  const uint64_t* secret() const;
  DeviceKind kind() const;
  int deviceIndex() const;

  // The exporter's side.
  void revoke() noexcept;                        // the exporter's tensor is gone: later uses by importers fail
  uint32_t publish() noexcept;                   // a new publication number (the stream marks it complete later)
  void complete(uint32_t publication) noexcept;  // the exporter's stream reached `publication`
  void markMoved() noexcept;                     // the buffer's move to shared memory ran (or never will)

  // Everyone's side.
  ShareStatus status() noexcept;
  // What the control page says, without asking whether the exporting process still lives.
  ShareStatus recordedStatus() const noexcept;
  uint32_t requested() const noexcept;
  // Whether `publication` was handed out by the exporter (a descriptor's number is not covered by its secret).
  bool issued(uint32_t publication) const noexcept;
  // Waits until the exporter's stream has reached `publication`, or the exporter is gone (and, in its own
  // process, the buffer's move has run: until then a reader could see memory the move is about to free). Off the
  // JS thread. `cancelled` (polled) ends the wait early: the waiting stream is being stopped.
  void waitCompleted(uint32_t publication, const std::function<bool()>& cancelled = nullptr) noexcept;

  // Processes holding the memory open (CUDA: the exporter frees it only when none is left). Throws Error when
  // too many processes hold it.
  void addImporter();
  void removeImporter() noexcept;
  int liveImporters() noexcept;  // those whose process still runs

  unsigned char* ipcMemHandle();
  unsigned char* ipcEventHandle();
  // Set by a CUDA exporter that could not make IPC handles: why other processes cannot open it.
  std::string ipcError() const;
  void setIpcError(const std::string& message);
  // This process's backend state for the region (CUDA exporter: its publication event).
  std::shared_ptr<void> local;

 private:
  ShareRegion() = default;
  struct Control* control() const { return static_cast<Control*>(base_); }

  int fd_ = -1;
  void* base_ = nullptr;
  size_t mapBytes_ = 0;
  size_t dataBytes_ = 0;
  bool withData_ = false;
  std::shared_ptr<Liveness> liveness_;  // the exporting process's liveness page (importers in other processes)
};

// The exporter's record of a shared buffer (one per buffer, whichever view shared it).
struct ShareExport {
  uint64_t id = 0;  // this process's registry key
  std::shared_ptr<ShareRegion> region;
  std::weak_ptr<Buffer> buffer;
  std::mutex mutex;
  int exportingTensors = 0;  // tensors of the exporter that called share(); the last one's release revokes
};

// What a descriptor carries to reach a shared buffer (encoded as an opaque token in JS).
struct ShareToken {
  pid_t pid = 0;
  int fd = -1;
  uint64_t id = 0;
  uint64_t secret[2] = {0, 0};
  uint64_t bytes = 0;
  DeviceKind kind = DeviceKind::Cpu;
  int deviceIndex = 0;

  std::string encode() const;
  // Throws TypeError for a malformed token.
  static ShareToken decode(const std::string& text);
};

// The importer's record: the region (for the status and ordering) and the publication it has waited for.
struct ShareImport {
  std::shared_ptr<ShareRegion> region;
  std::shared_ptr<void> deviceState;  // backend-specific (CUDA: the event publications are recorded on)
  std::atomic<uint32_t> seen{0};
};

// The process-wide registry of exports, for importers in this process (worker threads).
void registerExport(const std::shared_ptr<ShareExport>& e);
std::shared_ptr<ShareExport> findExport(uint64_t id);
uint64_t nextExportId();

// Throws the error an importer gets when the exporter's tensor is gone: on use (`what` names the tensor) or open.
[[noreturn]] void throwShareGone(ShareStatus status, const char* what);
[[noreturn]] void throwCannotOpen(ShareStatus status);

// The process is exiting: streams waiting for other processes' publications stop waiting (their reads then see
// whatever the memory holds), so that the exit does not wait for a slow exporter.
void cancelShareWaits() noexcept;

}  // namespace bssn
