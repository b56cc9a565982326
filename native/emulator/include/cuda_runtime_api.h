// The emulated CUDA runtime's host API: the subset of cuda_runtime_api.h that bssn calls, with the real names,
// enum values and signatures, so native/cuda compiles unchanged with g++ against libcudart_emu (see
// native/emulator/README.md). Never on the include path of a real CUDA build.
#pragma once
#include <cstddef>
#include <cstdint>

#define BSSN_CUDA_EMULATED 1
#define CUDART_VERSION 13000

#if defined(_WIN32)
#define BSSN_EMU_API
#else
#define BSSN_EMU_API __attribute__((visibility("default")))
#endif

// The values of the real cudaError_t for the codes the emulator can return.
enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInsufficientDriver = 35,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorDeviceUninitialized = 201,  // "invalid device context": also an IPC handle opened by its own process
  cudaErrorMapBufferObjectFailed = 205,
  cudaErrorNoKernelImageForDevice = 209,
  cudaErrorECCUncorrectable = 214,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalState = 401,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchTimeout = 702,
  cudaErrorAssert = 710,
  cudaErrorHardwareStackError = 714,
  cudaErrorIllegalInstruction = 715,
  cudaErrorMisalignedAddress = 716,
  cudaErrorInvalidAddressSpace = 717,
  cudaErrorInvalidPc = 718,
  cudaErrorLaunchFailure = 719,
  cudaErrorCooperativeLaunchTooLarge = 720,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureMerge = 902,
  cudaErrorStreamCaptureUnmatched = 903,
  cudaErrorStreamCaptureUnjoined = 904,
  cudaErrorStreamCaptureIsolation = 905,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorCapturedEvent = 907,
  cudaErrorStreamCaptureWrongThread = 908,
  cudaErrorUnknown = 999,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMaxThreadsPerMultiProcessor = 39,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerMultiprocessor = 81,
  cudaDevAttrCooperativeLaunch = 95,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
  cudaDevAttrMaxBlocksPerMultiprocessor = 106,
  cudaDevAttrReservedSharedMemoryPerBlock = 111,
  cudaDevAttrMemoryPoolsSupported = 115,
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

enum cudaMemPoolAttr {
  cudaMemPoolReuseFollowEventDependencies = 1,
  cudaMemPoolReuseAllowOpportunistic = 2,
  cudaMemPoolReuseAllowInternalDependencies = 3,
  cudaMemPoolAttrReleaseThreshold = 4,
  cudaMemPoolAttrReservedMemCurrent = 5,
  cudaMemPoolAttrReservedMemHigh = 6,
  cudaMemPoolAttrUsedMemCurrent = 7,
  cudaMemPoolAttrUsedMemHigh = 8,
};

// Stream capture (CUDA graphs): see native/emulator/README.md for what the emulator captures.
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};

enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaEventInterprocess 0x04
#define cudaIpcMemLazyEnablePeerAccess 0x01
#define cudaHostAllocDefault 0x00

typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
typedef struct CUmemPoolHandle_st* cudaMemPool_t;
typedef struct CUgraph_st* cudaGraph_t;
typedef struct CUgraphExec_st* cudaGraphExec_t;
typedef struct CUgraphNode_st* cudaGraphNode_t;  // never handed out by the emulator
typedef struct cudaGraphEdgeData_st cudaGraphEdgeData;

// The legacy default stream by name (0 means it too); the emulator has no per-thread default stream.
#define cudaStreamLegacy ((cudaStream_t)0x1)

// Opaque to callers; what the emulator puts inside is in runtime.cpp (IpcHandle).
#define CUDA_IPC_HANDLE_SIZE 64
typedef struct cudaIpcMemHandle_st {
  char reserved[CUDA_IPC_HANDLE_SIZE];
} cudaIpcMemHandle_t;
typedef struct cudaIpcEventHandle_st {
  char reserved[CUDA_IPC_HANDLE_SIZE];
} cudaIpcEventHandle_t;

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major;
  int minor;
  int multiProcessorCount;
  int memoryPoolsSupported;
  // An H100's residency limits (what cooperative launches and the occupancy calculator are checked against).
  size_t sharedMemPerMultiprocessor;
  size_t sharedMemPerBlockOptin;
  size_t reservedSharedMemPerBlock;
  int maxThreadsPerMultiProcessor;
  int maxBlocksPerMultiProcessor;
  int cooperativeLaunch;
};

struct cudaFuncAttributes {
  size_t sharedSizeBytes;
  size_t constSizeBytes;
  size_t localSizeBytes;
  int maxThreadsPerBlock;
  int numRegs;
  int ptxVersion;
  int binaryVersion;
};

extern "C" {
BSSN_EMU_API const char* cudaGetErrorString(cudaError_t error);
BSSN_EMU_API const char* cudaGetErrorName(cudaError_t error);
BSSN_EMU_API cudaError_t cudaGetLastError(void);
BSSN_EMU_API cudaError_t cudaPeekAtLastError(void);

BSSN_EMU_API cudaError_t cudaGetDeviceCount(int* count);
BSSN_EMU_API cudaError_t cudaSetDevice(int device);
BSSN_EMU_API cudaError_t cudaGetDevice(int* device);
BSSN_EMU_API cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
BSSN_EMU_API cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device);
BSSN_EMU_API cudaError_t cudaDeviceSynchronize(void);
BSSN_EMU_API cudaError_t cudaRuntimeGetVersion(int* version);
BSSN_EMU_API cudaError_t cudaDriverGetVersion(int* version);

BSSN_EMU_API cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device);
BSSN_EMU_API cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void* value);
BSSN_EMU_API cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void* value);
BSSN_EMU_API cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t minBytesToKeep);

BSSN_EMU_API cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags);
BSSN_EMU_API cudaError_t cudaStreamDestroy(cudaStream_t stream);
BSSN_EMU_API cudaError_t cudaStreamSynchronize(cudaStream_t stream);
BSSN_EMU_API cudaError_t cudaStreamQuery(cudaStream_t stream);
BSSN_EMU_API cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags);

// Stream capture into graphs of kernel nodes, and their replay (native/emulator/README.md, "CUDA graphs").
BSSN_EMU_API cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode);
BSSN_EMU_API cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* pGraph);
BSSN_EMU_API cudaError_t cudaStreamIsCapturing(cudaStream_t stream, enum cudaStreamCaptureStatus* pCaptureStatus);
// id_out: the capture's unique id; the graph, dependency and edge outputs must be null (the emulator has no node
// handles): cudaErrorInvalidValue otherwise.
BSSN_EMU_API cudaError_t cudaStreamGetCaptureInfo(cudaStream_t stream, enum cudaStreamCaptureStatus* captureStatus_out,
                                                  unsigned long long* id_out = 0, cudaGraph_t* graph_out = 0,
                                                  const cudaGraphNode_t** dependencies_out = 0,
                                                  const cudaGraphEdgeData** edgeData_out = 0, size_t* numDependencies_out = 0);
BSSN_EMU_API cudaError_t cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode* mode);
BSSN_EMU_API cudaError_t cudaGraphInstantiate(cudaGraphExec_t* pGraphExec, cudaGraph_t graph, unsigned long long flags = 0);
BSSN_EMU_API cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream);
BSSN_EMU_API cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec);
BSSN_EMU_API cudaError_t cudaGraphDestroy(cudaGraph_t graph);

BSSN_EMU_API cudaError_t cudaEventCreate(cudaEvent_t* event);
BSSN_EMU_API cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags);
BSSN_EMU_API cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
BSSN_EMU_API cudaError_t cudaEventQuery(cudaEvent_t event);
BSSN_EMU_API cudaError_t cudaEventSynchronize(cudaEvent_t event);
BSSN_EMU_API cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
BSSN_EMU_API cudaError_t cudaEventDestroy(cudaEvent_t event);

BSSN_EMU_API cudaError_t cudaMalloc(void** ptr, size_t bytes);
BSSN_EMU_API cudaError_t cudaFree(void* ptr);
BSSN_EMU_API cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t stream);
BSSN_EMU_API cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream);
BSSN_EMU_API cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int flags);
BSSN_EMU_API cudaError_t cudaFreeHost(void* ptr);
BSSN_EMU_API cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t stream);
BSSN_EMU_API cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, enum cudaMemcpyKind kind);
BSSN_EMU_API cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream);

// Interprocess communication (Linux, between processes of one user): see native/emulator/README.md.
BSSN_EMU_API cudaError_t cudaIpcGetEventHandle(cudaIpcEventHandle_t* handle, cudaEvent_t event);
BSSN_EMU_API cudaError_t cudaIpcOpenEventHandle(cudaEvent_t* event, cudaIpcEventHandle_t handle);
BSSN_EMU_API cudaError_t cudaIpcGetMemHandle(cudaIpcMemHandle_t* handle, void* devPtr);
BSSN_EMU_API cudaError_t cudaIpcOpenMemHandle(void** devPtr, cudaIpcMemHandle_t handle, unsigned int flags);
BSSN_EMU_API cudaError_t cudaIpcCloseMemHandle(void* devPtr);

// Emulator-internal: attributes of a kernel by its address (the templates below are what callers use).
BSSN_EMU_API cudaError_t bssnEmuFuncGetAttributes(cudaFuncAttributes* attributes, const void* entry);
BSSN_EMU_API cudaError_t bssnEmuFuncSetAttribute(const void* entry, enum cudaFuncAttribute attr, int value);
BSSN_EMU_API cudaError_t bssnEmuOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks, const void* entry, int blockSize,
                                                                         size_t dynamicSMemSize);
}

template <typename T>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attributes, T* entry) {
  return bssnEmuFuncGetAttributes(attributes, reinterpret_cast<const void*>(entry));
}
// cudaFuncAttributeMaxDynamicSharedMemorySize: the kernel's dynamic shared memory may exceed 48 KiB up to this
// (at most sharedMemPerBlockOptin), as on sm_70+.
template <typename T>
inline cudaError_t cudaFuncSetAttribute(T* entry, enum cudaFuncAttribute attr, int value) {
  return bssnEmuFuncSetAttribute(reinterpret_cast<const void*>(entry), attr, value);
}
// Blocks of `entry` an SM holds at once, from the threads and the shared memory (registers are not modelled).
template <typename T>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks, T* entry, int blockSize, size_t dynamicSMemSize) {
  return bssnEmuOccupancyMaxActiveBlocksPerMultiprocessor(numBlocks, reinterpret_cast<const void*>(entry), blockSize, dynamicSMemSize);
}
