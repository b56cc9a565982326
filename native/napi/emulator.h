// `binding.emulator`, present only in the emulated build (BSSN_CUDA=EMULATED): fault injection, statistics and
// the emulator's self-test probes, for the tests.
#pragma once
#include <napi.h>

namespace bssn::napi {

#if defined(BSSN_CUDA_EMULATED)
Napi::Object defineEmulator(Napi::Env env);
#endif

}  // namespace bssn::napi
