// Compiled on a GPU host (test/gpu/declarations.test.ts) against the real cuBLAS and cuDNN headers: every entry
// point bssn declares for run-time loading must match the real one in arity, return type and parameter ABI,
// and every constant must equal the real enumerator. Not part of the addon's build (CI has no such headers).
#include <cublas_v2.h>
#include <cudnn.h>
#include <library_types.h>

#include <cstddef>
#include <type_traits>

#include "abi_match.h"
#include "cuda/cublas_api.h"
#include "cuda/cudnn_api.h"

// cuBLAS
static_assert(std::is_same_v<bssn::cublas::Handle, cublasHandle_t>, "cublasHandle_t");
static_assert(sizeof(cublasStatus_t) == sizeof(bssn::cublas::Status), "cublasStatus_t");
static_assert(matches<bssn::cublas::CreateFn>(&cublasCreate_v2), "cublasCreate_v2");
static_assert(matches<bssn::cublas::DestroyFn>(&cublasDestroy_v2), "cublasDestroy_v2");
static_assert(matches<bssn::cublas::SetStreamFn>(&cublasSetStream_v2), "cublasSetStream_v2");
static_assert(matches<bssn::cublas::GetVersionFn>(&cublasGetVersion_v2), "cublasGetVersion_v2");
static_assert(matches<bssn::cublas::SetMathModeFn>(&cublasSetMathMode), "cublasSetMathMode");
static_assert(matches<bssn::cublas::SetWorkspaceFn>(&cublasSetWorkspace_v2), "cublasSetWorkspace_v2");
static_assert(matches<bssn::cublas::GetStatusStringFn>(&cublasGetStatusString), "cublasGetStatusString");
static_assert(matches<bssn::cublas::GetPropertyFn>(&cublasGetProperty), "cublasGetProperty");
static_assert(matches<bssn::cublas::SgemmFn>(&cublasSgemm_v2), "cublasSgemm_v2");
static_assert(bssn::cublas::kSuccess == CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS");
static_assert(bssn::cublas::kOpN == CUBLAS_OP_N && bssn::cublas::kOpT == CUBLAS_OP_T, "cublasOperation_t");
static_assert(bssn::cublas::kDefaultMath == CUBLAS_DEFAULT_MATH && bssn::cublas::kPedanticMath == CUBLAS_PEDANTIC_MATH, "cublasMath_t");
static_assert(bssn::cublas::kTf32TensorOpMath == CUBLAS_TF32_TENSOR_OP_MATH, "CUBLAS_TF32_TENSOR_OP_MATH");
static_assert(bssn::cublas::kMajorVersion == MAJOR_VERSION && bssn::cublas::kMinorVersion == MINOR_VERSION &&
                  bssn::cublas::kPatchLevel == PATCH_LEVEL,
              "libraryPropertyType");

// cuDNN
static_assert(std::is_same_v<bssn::cudnn::Handle, cudnnHandle_t>, "cudnnHandle_t");
static_assert(sizeof(cudnnStatus_t) == sizeof(bssn::cudnn::Status), "cudnnStatus_t");
static_assert(matches<bssn::cudnn::GetVersionFn>(&cudnnGetVersion), "cudnnGetVersion");
static_assert(matches<bssn::cudnn::GetErrorStringFn>(&cudnnGetErrorString), "cudnnGetErrorString");
static_assert(matches<bssn::cudnn::CreateFn>(&cudnnCreate), "cudnnCreate");
static_assert(matches<bssn::cudnn::DestroyFn>(&cudnnDestroy), "cudnnDestroy");
static_assert(matches<bssn::cudnn::SetStreamFn>(&cudnnSetStream), "cudnnSetStream");
static_assert(bssn::cudnn::kSuccess == CUDNN_STATUS_SUCCESS, "CUDNN_STATUS_SUCCESS");

// cuDNN convolutions
static_assert(std::is_same_v<bssn::cudnn::TensorDesc, cudnnTensorDescriptor_t>, "cudnnTensorDescriptor_t");
static_assert(std::is_same_v<bssn::cudnn::FilterDesc, cudnnFilterDescriptor_t>, "cudnnFilterDescriptor_t");
static_assert(std::is_same_v<bssn::cudnn::ConvDesc, cudnnConvolutionDescriptor_t>, "cudnnConvolutionDescriptor_t");
static_assert(bssn::cudnn::kTensorNCHW == CUDNN_TENSOR_NCHW, "CUDNN_TENSOR_NCHW");
static_assert(bssn::cudnn::kDataFloat == CUDNN_DATA_FLOAT, "CUDNN_DATA_FLOAT");
static_assert(bssn::cudnn::kCrossCorrelation == CUDNN_CROSS_CORRELATION, "CUDNN_CROSS_CORRELATION");
static_assert(bssn::cudnn::kFmaMath == CUDNN_FMA_MATH, "CUDNN_FMA_MATH");
static_assert(bssn::cudnn::kDefaultMath == CUDNN_DEFAULT_MATH && bssn::cudnn::kTensorOpMath == CUDNN_TENSOR_OP_MATH, "cudnnMathType_t");
static_assert(bssn::cudnn::kDeterministic == CUDNN_DETERMINISTIC, "CUDNN_DETERMINISTIC");
#define BSSN_SAME_FIELD(T, ours, theirs) \
  static_assert(offsetof(bssn::cudnn::AlgoPerf, ours) == offsetof(T, theirs) && sizeof(bssn::cudnn::AlgoPerf::ours) == sizeof(T::theirs), #T "." #theirs)
#define BSSN_SAME_PERF(T)                         \
  static_assert(sizeof(bssn::cudnn::AlgoPerf) == sizeof(T), #T); \
  BSSN_SAME_FIELD(T, algo, algo);                 \
  BSSN_SAME_FIELD(T, status, status);             \
  BSSN_SAME_FIELD(T, time, time);                 \
  BSSN_SAME_FIELD(T, memory, memory);             \
  BSSN_SAME_FIELD(T, determinism, determinism);   \
  BSSN_SAME_FIELD(T, mathType, mathType)
BSSN_SAME_PERF(cudnnConvolutionFwdAlgoPerf_t);
BSSN_SAME_PERF(cudnnConvolutionBwdDataAlgoPerf_t);
BSSN_SAME_PERF(cudnnConvolutionBwdFilterAlgoPerf_t);
static_assert(matches<bssn::cudnn::CreateTensorDescFn>(&cudnnCreateTensorDescriptor), "cudnnCreateTensorDescriptor");
static_assert(matches<bssn::cudnn::SetTensor4dFn>(&cudnnSetTensor4dDescriptor), "cudnnSetTensor4dDescriptor");
static_assert(matches<bssn::cudnn::DestroyTensorDescFn>(&cudnnDestroyTensorDescriptor), "cudnnDestroyTensorDescriptor");
static_assert(matches<bssn::cudnn::CreateFilterDescFn>(&cudnnCreateFilterDescriptor), "cudnnCreateFilterDescriptor");
static_assert(matches<bssn::cudnn::SetFilter4dFn>(&cudnnSetFilter4dDescriptor), "cudnnSetFilter4dDescriptor");
static_assert(matches<bssn::cudnn::DestroyFilterDescFn>(&cudnnDestroyFilterDescriptor), "cudnnDestroyFilterDescriptor");
static_assert(matches<bssn::cudnn::CreateConvDescFn>(&cudnnCreateConvolutionDescriptor), "cudnnCreateConvolutionDescriptor");
static_assert(matches<bssn::cudnn::SetConv2dFn>(&cudnnSetConvolution2dDescriptor), "cudnnSetConvolution2dDescriptor");
static_assert(matches<bssn::cudnn::SetConvMathTypeFn>(&cudnnSetConvolutionMathType), "cudnnSetConvolutionMathType");
static_assert(matches<bssn::cudnn::DestroyConvDescFn>(&cudnnDestroyConvolutionDescriptor), "cudnnDestroyConvolutionDescriptor");
static_assert(matches<bssn::cudnn::GetFwdAlgoFn>(&cudnnGetConvolutionForwardAlgorithm_v7), "cudnnGetConvolutionForwardAlgorithm_v7");
static_assert(matches<bssn::cudnn::GetFwdWorkspaceFn>(&cudnnGetConvolutionForwardWorkspaceSize), "cudnnGetConvolutionForwardWorkspaceSize");
static_assert(matches<bssn::cudnn::ConvFwdFn>(&cudnnConvolutionForward), "cudnnConvolutionForward");
static_assert(matches<bssn::cudnn::GetBwdDataAlgoFn>(&cudnnGetConvolutionBackwardDataAlgorithm_v7), "cudnnGetConvolutionBackwardDataAlgorithm_v7");
static_assert(matches<bssn::cudnn::GetBwdDataWorkspaceFn>(&cudnnGetConvolutionBackwardDataWorkspaceSize), "cudnnGetConvolutionBackwardDataWorkspaceSize");
static_assert(matches<bssn::cudnn::ConvBwdDataFn>(&cudnnConvolutionBackwardData), "cudnnConvolutionBackwardData");
static_assert(matches<bssn::cudnn::GetBwdFilterAlgoFn>(&cudnnGetConvolutionBackwardFilterAlgorithm_v7), "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
static_assert(matches<bssn::cudnn::GetBwdFilterWorkspaceFn>(&cudnnGetConvolutionBackwardFilterWorkspaceSize), "cudnnGetConvolutionBackwardFilterWorkspaceSize");
static_assert(matches<bssn::cudnn::ConvBwdFilterFn>(&cudnnConvolutionBackwardFilter), "cudnnConvolutionBackwardFilter");
