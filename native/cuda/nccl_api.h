// The NCCL entry points bssn uses for data-parallel training, declared here so the addon compiles without nccl.h
// and loads without NCCL installed. Every declaration is checked against the real nccl.h by
// check_nccl_declarations.cpp on a GPU host (test/gpu/nccl_declarations.test.ts).
#pragma once
#include <climits>
#include <cstddef>

#include <cuda_runtime_api.h>

struct ncclComm;  // as nccl.h names it, so the communicator type is the real one

namespace bssn::nccl {

using Comm = ncclComm*;
using Result = int;  // ncclResult_t
constexpr Result kSuccess = 0;             // ncclSuccess
constexpr Result kInProgress = 7;          // ncclInProgress: a non-blocking communicator's call still running
constexpr int kFloat32 = 7;                // ncclFloat32 (ncclDataType_t)
constexpr int kSum = 0;                    // ncclSum (ncclRedOp_t)
constexpr int kAvg = 4;                    // ncclAvg, NCCL 2.10+
constexpr size_t kUniqueIdBytes = 128;     // NCCL_UNIQUE_ID_BYTES: what the rendezvous hands to every rank

struct UniqueId {  // ncclUniqueId, passed by value
  char internal[kUniqueIdBytes];
};

// ncclConfig_t as of NCCL 2.14, the first release with it. NCCL reads `size` and `version` and takes the fields
// a newer header adds as unset, so this prefix stays valid.
constexpr unsigned kConfigMagic = 0xcafebeef;  // NCCL_CONFIG_INITIALIZER's magic
constexpr unsigned kConfigVersion = 21400;     // NCCL_VERSION(2, 14, 0)
constexpr int kConfigUndefInt = INT_MIN;       // NCCL_CONFIG_UNDEF_INT
struct Config {
  size_t size = sizeof(Config);
  unsigned int magic = kConfigMagic;
  unsigned int version = kConfigVersion;
  int blocking = kConfigUndefInt;  // 0: calls return ncclInProgress, so a hung collective can be aborted
  int cgaClusterSize = kConfigUndefInt;
  int minCTAs = kConfigUndefInt;
  int maxCTAs = kConfigUndefInt;
  const char* netName = nullptr;  // NCCL_CONFIG_UNDEF_PTR
};

using GetVersionFn = Result (*)(int*);                                            // ncclGetVersion
using GetUniqueIdFn = Result (*)(UniqueId*);                                      // ncclGetUniqueId
using CommInitRankFn = Result (*)(Comm*, int, UniqueId, int);                     // ncclCommInitRank
using CommInitRankConfigFn = Result (*)(Comm*, int, UniqueId, int, Config*);      // ncclCommInitRankConfig
using AllReduceFn = Result (*)(const void*, void*, size_t, int, int, Comm, cudaStream_t);  // ncclAllReduce
using BroadcastFn = Result (*)(const void*, void*, size_t, int, int, Comm, cudaStream_t);  // ncclBroadcast
using GroupStartFn = Result (*)();                                                // ncclGroupStart
using GroupEndFn = Result (*)();                                                  // ncclGroupEnd
using CommGetAsyncErrorFn = Result (*)(Comm, Result*);                            // ncclCommGetAsyncError
using CommAbortFn = Result (*)(Comm);                                             // ncclCommAbort
using CommDestroyFn = Result (*)(Comm);                                           // ncclCommDestroy
using GetErrorStringFn = const char* (*)(Result);                                 // ncclGetErrorString

}  // namespace bssn::nccl
