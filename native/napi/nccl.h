// `binding.nccl` (CUDA builds): the collectives on tensors, over whichever NCCL loads (libnccl.so.2, or the
// emulated one in the emulated build). Internal: the building block of initDistributed(), not a public API.
#pragma once
#include <napi.h>

namespace bssn::napi {

#if BSSN_WITH_CUDA
Napi::Object defineNccl(Napi::Env env);
#endif

}  // namespace bssn::napi
