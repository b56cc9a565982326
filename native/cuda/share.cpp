// Sharing CUDA tensors across threads and processes. Memory from the stream-ordered pool cannot be exported with
// CUDA IPC, so a tensor's first share() moves it to its own cudaMalloc allocation (one device copy, in stream
// order). Publications are an interprocess event recorded on the exporter's stream; importers make their stream
// wait for it. Freeing shared memory synchronizes the device (cudaFree does; importers on other streams of this
// process may still read it until then), and waits until no other process has it open.
#include <cstring>

#include "core/share.h"
#include "cuda/check.h"
#include "cuda/cuda_device.h"

namespace bssn::cuda {

namespace {

// The event publications are recorded on (the exporter's) or waited for (an importer's opened IPC event).
struct PublicationEvent {
  PublicationEvent(const PublicationEvent&) = delete;
  PublicationEvent(int device, cudaEvent_t event) : device(device), event(event) {}
  ~PublicationEvent() {
    cudaSetDevice(device);
    if (event) cudaEventDestroy(event);
    cudaGetLastError();
  }
  int device;
  cudaEvent_t event;
};

// The exporter's shareable allocation: owned by the buffer once it has moved there.
struct SharedAllocation {
  SharedAllocation(std::shared_ptr<CudaDevice> device, void* data, std::shared_ptr<ShareRegion> region)
      : device(std::move(device)), data(data), region(std::move(region)) {}
  SharedAllocation(const SharedAllocation&) = delete;
  std::shared_ptr<CudaDevice> device;
  void* data;
  std::shared_ptr<ShareRegion> region;
  ~SharedAllocation() { device->freeShared(data, region); }
};

// This process's registration as an importer: made before the memory is opened (and the exporter's status checked
// after it), so the exporter never frees memory that an importer is about to open.
struct ImporterMark {
  explicit ImporterMark(std::shared_ptr<ShareRegion> r) : region(std::move(r)) { region->addImporter(); }
  ImporterMark(const ImporterMark&) = delete;
  ~ImporterMark() { region->removeImporter(); }
  std::shared_ptr<ShareRegion> region;
};

// An importer's mapping of another process's allocation.
struct IpcMapping {
  IpcMapping(const IpcMapping&) = delete;
  IpcMapping(std::shared_ptr<CudaDevice> device, void* data, std::shared_ptr<ImporterMark> mark)
      : device(std::move(device)), data(data), mark(std::move(mark)) {}
  ~IpcMapping() {
    // The last holder let go; kernels this process queued on it must finish before the mapping goes.
    cudaSetDevice(device->index());
    cudaDeviceSynchronize();
    cudaIpcCloseMemHandle(data);
    cudaGetLastError();
  }
  std::shared_ptr<CudaDevice> device;
  void* data;
  std::shared_ptr<ImporterMark> mark;  // after the close (members go after the destructor's body)
};

cudaEvent_t eventOf(const std::shared_ptr<void>& state) {
  return state ? static_cast<PublicationEvent*>(state.get())->event : nullptr;
}

}  // namespace

std::shared_ptr<ShareRegion> CudaDevice::createShareRegion(size_t bytes) {
  return ShareRegion::create(bytes, false, DeviceKind::Cuda, index_);
}

void CudaDevice::moveToShared(const BufferPtr& buffer, const std::shared_ptr<ShareRegion>& region) {
  enter();
  refuseInCapture("sharing a tensor");
  const size_t bytes = buffer->bytes();
  const std::string detail = "shareable memory of " + std::to_string(bytes) + " bytes on " + name_;
  void* data = nullptr;
  cudaError_t st = cudaMalloc(&data, bytes ? bytes : 4);
  if (st == cudaErrorMemoryAllocation) {
    // The allocator and the pool keep freed memory (release threshold: never); give it back and try once more.
    cudaGetLastError();
    releaseCached();
    st = cudaMalloc(&data, bytes ? bytes : 4);
  }
  if (st != cudaSuccess) {
    cudaGetLastError();
    throwStatus("cudaMalloc", st, detail, __FILE__, __LINE__);
  }
  auto self = std::static_pointer_cast<CudaDevice>(shared_from_this());
  auto storage = std::make_shared<SharedAllocation>(self, data, region);
  if (bytes) BSSN_CUDA_TRY(cudaMemcpyAsync(data, buffer->data(), bytes, cudaMemcpyDeviceToDevice, stream_));

  // Other processes need IPC handles; without them (a platform without IPC) threads of this process can still share.
  std::string ipcError;
  cudaEvent_t event = nullptr;
  st = cudaEventCreateWithFlags(&event, cudaEventInterprocess | cudaEventDisableTiming);
  if (st == cudaSuccess) {
    cudaIpcEventHandle_t handle;
    st = cudaIpcGetEventHandle(&handle, event);
    if (st == cudaSuccess) std::memcpy(region->ipcEventHandle(), &handle, sizeof handle);
    else ipcError = "cudaIpcGetEventHandle: " + describeStatus(st);
  } else {
    ipcError = "cudaEventCreateWithFlags(cudaEventInterprocess): " + describeStatus(st);
    cudaGetLastError();
    BSSN_CUDA_TRY(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  }
  auto publication = std::make_shared<PublicationEvent>(index_, event);
  if (ipcError.empty()) {
    cudaIpcMemHandle_t handle;
    st = cudaIpcGetMemHandle(&handle, data);
    if (st == cudaSuccess) std::memcpy(region->ipcMemHandle(), &handle, sizeof handle);
    else ipcError = "cudaIpcGetMemHandle: " + describeStatus(st);
  }
  cudaGetLastError();
  if (!ipcError.empty()) region->setIpcError(ipcError);
  region->local = publication;
  // Work queued before this point used the old memory; it goes back to the pool after the copy has run.
  freeRaw(buffer->moveTo(data, storage), bytes);
  region->markMoved();  // importers read the pointer when they enqueue, after this
}

uint32_t CudaDevice::publish(const std::shared_ptr<ShareRegion>& region) {
  enter();
  // Recorded before the number is handed out: an importer that sees the number waits for this record or a later one.
  BSSN_CUDA_TRY(cudaEventRecord(eventOf(region->local), stream_));
  return region->publish();
}

void CudaDevice::waitForPublication(ShareImport& import, uint32_t) {
  enter();
  // The event's latest record is at least the publication asked for (records come before numbers).
  if (cudaEvent_t event = eventOf(import.deviceState)) BSSN_CUDA_TRY(cudaStreamWaitEvent(stream_, event, 0));
}

BufferPtr CudaDevice::openShared(ShareImport& import) {
  enter();
  const std::shared_ptr<ShareRegion>& region = import.region;
  const std::string why = region->ipcError();
  if (!why.empty()) throwError("cannot open the shared CUDA tensor in this process: its exporter could not make IPC handles (" + why + ")");
  auto mark = std::make_shared<ImporterMark>(region);
  if (const ShareStatus status = region->status(); status != ShareStatus::Live) throwCannotOpen(status);
  cudaIpcEventHandle_t eventHandle;
  std::memcpy(&eventHandle, region->ipcEventHandle(), sizeof eventHandle);
  cudaEvent_t event = nullptr;
  BSSN_CUDA_TRY(cudaIpcOpenEventHandle(&event, eventHandle));
  auto publication = std::make_shared<PublicationEvent>(index_, event);
  cudaIpcMemHandle_t memHandle;
  std::memcpy(&memHandle, region->ipcMemHandle(), sizeof memHandle);
  void* data = nullptr;
  BSSN_CUDA_TRY_DETAIL(cudaIpcOpenMemHandle(&data, memHandle, cudaIpcMemLazyEnablePeerAccess),
                       "a shared tensor of " + std::to_string(region->dataBytes()) + " bytes");
  auto mapping = std::make_shared<IpcMapping>(std::static_pointer_cast<CudaDevice>(shared_from_this()), data, std::move(mark));
  import.deviceState = publication;
  return adoptExternal(data, region->dataBytes(), mapping);
}

void CudaDevice::freeShared(void* data, const std::shared_ptr<ShareRegion>& region) noexcept {
  {
    std::lock_guard<std::mutex> lock(sharedMutex_);
    sharedFrees_.emplace_back(data, region);
    sharedFreesPending_.store(true, std::memory_order_relaxed);
  }
  sweepSharedFrees();
}

void CudaDevice::sweepSharedFrees() noexcept {
  // Every call enters here: without shared memory waiting to be freed, no lock is taken.
  if (!sharedFreesPending_.load(std::memory_order_relaxed)) return;
  std::vector<void*> ready;
  {
    std::lock_guard<std::mutex> lock(sharedMutex_);
    for (auto it = sharedFrees_.begin(); it != sharedFrees_.end();) {
      if (it->second->liveImporters() > 0) {
        ++it;
        continue;
      }
      ready.push_back(it->first);
      it = sharedFrees_.erase(it);
    }
    sharedFreesPending_.store(!sharedFrees_.empty(), std::memory_order_relaxed);
  }
  if (ready.empty()) return;
  cudaSetDevice(index_);
  // Other streams of this process (worker threads' devices) may still read it: wait for the whole device.
  cudaDeviceSynchronize();
  for (void* data : ready) {
    const cudaError_t st = cudaFree(data);
    if (st != cudaSuccess) noteFailure(st, "cudaFree (shared memory): " + describeStatus(st));
  }
  cudaGetLastError();
}

}  // namespace bssn::cuda
