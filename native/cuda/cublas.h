// cuBLAS, loaded on first use. One handle per CUDA device, bound to the device's stream, TF32 off.
#pragma once
#include <memory>
#include <string>

#include "cuda/cublas_api.h"
#include "core/library.h"

namespace bssn::cuda {

struct CublasApi {
  cublas::CreateFn create;
  cublas::DestroyFn destroy;
  cublas::SetStreamFn setStream;
  cublas::GetVersionFn getVersion;
  cublas::SetMathModeFn setMathMode;
  cublas::SetWorkspaceFn setWorkspace;
  cublas::GetStatusStringFn statusString;
  cublas::GetPropertyFn getProperty;
  cublas::SgemmFn sgemm;
};

// The process-wide cuBLAS library: throws Error naming what could not be loaded.
const CublasApi& cublasApi();
// "cublasSgemm_v2: CUBLAS_STATUS_... " with the library's own description of `status`.
[[noreturn]] void throwCublas(const char* call, cublas::Status status);

}  // namespace bssn::cuda
