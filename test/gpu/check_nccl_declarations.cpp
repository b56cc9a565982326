// Compiled on a GPU host (test/gpu/nccl_declarations.test.ts) against the real nccl.h (PyTorch's nvidia-nccl
// package ships it): every NCCL entry point bssn declares for run-time loading must match the real one, every
// constant the real enumerator, and our ncclConfig_t prefix the real layout. Not part of the addon's build.
#include <nccl.h>

#include <cstddef>
#include <type_traits>

#include "abi_match.h"
#include "cuda/nccl_api.h"

namespace n = bssn::nccl;

static_assert(std::is_same_v<n::Comm, ncclComm_t>, "ncclComm_t");
static_assert(sizeof(ncclResult_t) == sizeof(n::Result), "ncclResult_t");
static_assert(sizeof(ncclDataType_t) == sizeof(int) && sizeof(ncclRedOp_t) == sizeof(int), "ncclDataType_t, ncclRedOp_t");
static_assert(n::kSuccess == ncclSuccess && n::kInProgress == ncclInProgress, "ncclResult_t values");
static_assert(n::kFloat32 == ncclFloat32, "ncclFloat32");
static_assert(n::kSum == ncclSum && n::kAvg == ncclAvg, "ncclSum, ncclAvg");
static_assert(n::kUniqueIdBytes == NCCL_UNIQUE_ID_BYTES && sizeof(n::UniqueId) == sizeof(ncclUniqueId), "ncclUniqueId");

// ncclConfig_t: our struct is the 2.14 prefix of the real one, field by field.
static_assert(n::kConfigMagic == NCCL_API_MAGIC, "NCCL_API_MAGIC");
static_assert(n::kConfigVersion == NCCL_VERSION(2, 14, 0), "NCCL_VERSION(2, 14, 0)");
static_assert(n::kConfigUndefInt == NCCL_CONFIG_UNDEF_INT, "NCCL_CONFIG_UNDEF_INT");
static_assert(sizeof(n::Config) <= sizeof(ncclConfig_t), "ncclConfig_t");
#define BSSN_SAME_FIELD(f) \
  static_assert(offsetof(n::Config, f) == offsetof(ncclConfig_t, f) && sizeof(n::Config::f) == sizeof(ncclConfig_t::f), "ncclConfig_t." #f)
BSSN_SAME_FIELD(size);
BSSN_SAME_FIELD(magic);
BSSN_SAME_FIELD(version);
BSSN_SAME_FIELD(blocking);
BSSN_SAME_FIELD(cgaClusterSize);
BSSN_SAME_FIELD(minCTAs);
BSSN_SAME_FIELD(maxCTAs);
BSSN_SAME_FIELD(netName);

static_assert(matches<n::GetVersionFn>(&ncclGetVersion), "ncclGetVersion");
static_assert(matches<n::GetUniqueIdFn>(&ncclGetUniqueId), "ncclGetUniqueId");
static_assert(matches<n::CommInitRankFn>(&ncclCommInitRank), "ncclCommInitRank");
// Our Config is a prefix of ncclConfig_t (checked above), so the pointer parameter differs in type only.
static_assert(std::is_same_v<n::CommInitRankConfigFn, n::Result (*)(n::Comm*, int, n::UniqueId, int, n::Config*)> &&
                  matches<n::Result (*)(n::Comm*, int, n::UniqueId, int, ncclConfig_t*)>(&ncclCommInitRankConfig),
              "ncclCommInitRankConfig");
static_assert(matches<n::AllReduceFn>(&ncclAllReduce), "ncclAllReduce");
static_assert(matches<n::BroadcastFn>(&ncclBroadcast), "ncclBroadcast");
static_assert(matches<n::GroupStartFn>(&ncclGroupStart), "ncclGroupStart");
static_assert(matches<n::GroupEndFn>(&ncclGroupEnd), "ncclGroupEnd");
static_assert(matches<n::CommGetAsyncErrorFn>(&ncclCommGetAsyncError), "ncclCommGetAsyncError");
static_assert(matches<n::CommAbortFn>(&ncclCommAbort), "ncclCommAbort");
static_assert(matches<n::CommDestroyFn>(&ncclCommDestroy), "ncclCommDestroy");
static_assert(matches<n::GetErrorStringFn>(&ncclGetErrorString), "ncclGetErrorString");
