#include "cuda/cublas.h"

#include <mutex>

#include "core/error.h"

namespace bssn::cuda {

const CublasApi& cublasApi() {
  static std::once_flag once;
  static CublasApi api;
  static std::string failure;
  std::call_once(once, [] {
    try {
#if defined(BSSN_CUDA_EMULATED)
      // The emulated build loads the emulated cuBLAS beside it (never a real one: there is no GPU behind it).
      static const SharedLibrary lib("cuBLAS", SharedLibrary::overridable("BSSN_CUBLAS_PATH", {SharedLibrary::besideAddon("libcublas_emu.so")}));
#else
      static const SharedLibrary lib(
          "cuBLAS", SharedLibrary::overridable("BSSN_CUBLAS_PATH",
                                               SharedLibrary::candidates({"libcublas.so.13", "libcublas.so.12", "libcublas.so"},
                                                                         {"CUDA_PATH/lib64"}, {"/usr/local/cuda/lib64"})));
#endif
      api.create = lib.function<cublas::CreateFn>("cublasCreate_v2");
      api.destroy = lib.function<cublas::DestroyFn>("cublasDestroy_v2");
      api.setStream = lib.function<cublas::SetStreamFn>("cublasSetStream_v2");
      api.getVersion = lib.function<cublas::GetVersionFn>("cublasGetVersion_v2");
      api.setMathMode = lib.function<cublas::SetMathModeFn>("cublasSetMathMode");
      api.setWorkspace = lib.function<cublas::SetWorkspaceFn>("cublasSetWorkspace_v2");
      api.statusString = lib.function<cublas::GetStatusStringFn>("cublasGetStatusString");
      api.getProperty = lib.function<cublas::GetPropertyFn>("cublasGetProperty");
      api.sgemm = lib.function<cublas::SgemmFn>("cublasSgemm_v2");
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  if (!failure.empty()) throwError(failure, ErrorCode::LibraryMissing);
  return api;
}

void throwCublas(const char* call, cublas::Status status) {
  const char* what = cublasApi().statusString ? cublasApi().statusString(status) : nullptr;
  throwError(std::string(call) + ": " + (what ? what : "cuBLAS error") + " (cublasStatus_t " + std::to_string(status) + ")");
}

}  // namespace bssn::cuda
