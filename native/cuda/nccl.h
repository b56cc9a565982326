// NCCL, loaded on first use from libnccl.so.2 (or BSSN_NCCL_PATH), as cuBLAS and cuDNN are: the addon builds and
// runs without it; only data-parallel training needs it.
#pragma once
#include <cstdint>
#include <string>

#include "cuda/cuda_device.h"
#include "cuda/nccl_api.h"

namespace bssn::cuda {

struct NcclApi {
  nccl::GetVersionFn getVersion;
  nccl::GetUniqueIdFn getUniqueId;
  nccl::CommInitRankFn commInitRank;
  nccl::CommInitRankConfigFn commInitRankConfig;
  nccl::AllReduceFn allReduce;
  nccl::BroadcastFn broadcast;
  nccl::GroupStartFn groupStart;
  nccl::GroupEndFn groupEnd;
  nccl::CommGetAsyncErrorFn commGetAsyncError;
  nccl::CommAbortFn commAbort;
  nccl::CommDestroyFn commDestroy;
  nccl::GetErrorStringFn errorString;
#if defined(BSSN_CUDA_EMULATED)
  void (*emulatedBytes)(int64_t* allReduced, int64_t* broadcast);  // the emulated NCCL's counters (bssnNcclEmuBytes)
#endif
};

// The process-wide NCCL: throws Error (ERR_BSSN_LIBRARY_MISSING) naming what could not be loaded.
const NcclApi& ncclApi();
// "ncclAllReduce: <NCCL's description> (ncclResult_t N)", code ERR_BSSN_FAILED.
[[noreturn]] void throwNccl(const char* call, nccl::Result result);
// "2.21.5" from ncclGetVersion's code (major * 10000 + minor * 100 + patch since 2.9, major * 1000 before).
std::string ncclVersionString(int code);
// Whether NCCL loads, with its version (for `bssn doctor`; no GPU needed).
LibraryStatus ncclStatus();

}  // namespace bssn::cuda
