// The few cuBLAS entry points bssn uses, declared here so the addon compiles without cuBLAS headers. Every
// declaration is checked against the real cublas_v2.h by check_declarations.cpp on a GPU host
// (test/gpu/declarations.test.ts).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

struct cublasContext;  // as cublas_api.h names it, so the handle type is the real one

namespace bssn::cublas {

using Handle = cublasContext*;
using Status = int;  // cublasStatus_t
constexpr Status kSuccess = 0;             // CUBLAS_STATUS_SUCCESS
constexpr int kOpN = 0;                    // CUBLAS_OP_N
constexpr int kOpT = 1;                    // CUBLAS_OP_T
constexpr int kDefaultMath = 0;            // CUBLAS_DEFAULT_MATH: full fp32, no TF32
constexpr int kPedanticMath = 2;           // CUBLAS_PEDANTIC_MATH
constexpr int kTf32TensorOpMath = 3;       // CUBLAS_TF32_TENSOR_OP_MATH: fp32 routines may round inputs to TF32

using CreateFn = Status (*)(Handle*);                                // cublasCreate_v2
using DestroyFn = Status (*)(Handle);                                // cublasDestroy_v2
using SetStreamFn = Status (*)(Handle, cudaStream_t);                // cublasSetStream_v2
using GetVersionFn = Status (*)(Handle, int*);                       // cublasGetVersion_v2
using SetMathModeFn = Status (*)(Handle, int);                       // cublasSetMathMode
using SetWorkspaceFn = Status (*)(Handle, void*, size_t);            // cublasSetWorkspace_v2
using GetStatusStringFn = const char* (*)(Status);                   // cublasGetStatusString
using GetPropertyFn = Status (*)(int, int*);                        // cublasGetProperty (libraryPropertyType)
constexpr int kMajorVersion = 0, kMinorVersion = 1, kPatchLevel = 2;  // MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL
using SgemmFn = Status (*)(Handle, int, int, int, int, int, const float*, const float*, int, const float*, int,
                           const float*, float*, int);               // cublasSgemm_v2

}  // namespace bssn::cublas
