#include "cuda/nccl.h"

#include <mutex>

#include "core/error.h"
#include "core/library.h"

namespace bssn::cuda {

const NcclApi& ncclApi() {
  static std::once_flag once;
  static NcclApi api;
  static std::string failure;
  std::call_once(once, [] {
    try {
      // By soname only (libnccl.so.2 is NCCL's ABI since 2.0): PyTorch's nvidia-nccl wheel and NVIDIA's packages
      // both install it; a folder elsewhere goes on LD_LIBRARY_PATH, or the file in BSSN_NCCL_PATH.
#if defined(BSSN_CUDA_EMULATED)
      // The emulated NCCL (native/emulator/nccl.cpp), built beside the emulated addon.
      static const SharedLibrary lib("NCCL", SharedLibrary::overridable("BSSN_NCCL_PATH", {SharedLibrary::besideAddon("libnccl_emu.so")}));
#else
      static const SharedLibrary lib(
          "NCCL", SharedLibrary::overridable("BSSN_NCCL_PATH", {"libnccl.so.2"}),
          "Install NCCL 2 (NVIDIA's libnccl2 package, or PyTorch's nvidia-nccl wheel) and put its folder on LD_LIBRARY_PATH.");
#endif
      api.getVersion = lib.function<nccl::GetVersionFn>("ncclGetVersion");
      api.getUniqueId = lib.function<nccl::GetUniqueIdFn>("ncclGetUniqueId");
      api.commInitRank = lib.function<nccl::CommInitRankFn>("ncclCommInitRank");
      api.commInitRankConfig = lib.function<nccl::CommInitRankConfigFn>("ncclCommInitRankConfig");
      api.allReduce = lib.function<nccl::AllReduceFn>("ncclAllReduce");
      api.broadcast = lib.function<nccl::BroadcastFn>("ncclBroadcast");
      api.groupStart = lib.function<nccl::GroupStartFn>("ncclGroupStart");
      api.groupEnd = lib.function<nccl::GroupEndFn>("ncclGroupEnd");
      api.commGetAsyncError = lib.function<nccl::CommGetAsyncErrorFn>("ncclCommGetAsyncError");
      api.commAbort = lib.function<nccl::CommAbortFn>("ncclCommAbort");
      api.commDestroy = lib.function<nccl::CommDestroyFn>("ncclCommDestroy");
      api.errorString = lib.function<nccl::GetErrorStringFn>("ncclGetErrorString");
#if defined(BSSN_CUDA_EMULATED)
      api.emulatedBytes = lib.function<void (*)(int64_t*, int64_t*)>("bssnNcclEmuBytes");
#endif
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  if (!failure.empty()) throwError(failure, ErrorCode::LibraryMissing);
  return api;
}

void throwNccl(const char* call, nccl::Result result) {
  const char* what = ncclApi().errorString ? ncclApi().errorString(result) : nullptr;
  throwError(std::string(call) + ": " + (what ? what : "NCCL error") + " (ncclResult_t " + std::to_string(result) + ")");
}

LibraryStatus ncclStatus() {
  LibraryStatus s;
  try {
    int code = 0;
    const nccl::Result r = ncclApi().getVersion(&code);
    if (r != nccl::kSuccess) throwNccl("ncclGetVersion", r);
    s.version = ncclVersionString(code);
    s.loaded = true;
  } catch (const std::exception& e) {
    s.error = e.what();
  }
  return s;
}

std::string ncclVersionString(int code) {
  const int major = code >= 10000 ? code / 10000 : code / 1000;
  const int minor = code >= 10000 ? code / 100 % 100 : code / 100 % 10;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(code % 100);
}

}  // namespace bssn::cuda
