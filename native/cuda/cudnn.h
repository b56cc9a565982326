// cuDNN, loaded on first use (process-wide).
#pragma once
#include "cuda/cudnn_api.h"
#include "core/library.h"

namespace bssn::cuda {

struct CudnnApi {
  cudnn::GetVersionFn getVersion;
  cudnn::GetErrorStringFn errorString;
  cudnn::CreateFn create;
  cudnn::DestroyFn destroy;
  cudnn::SetStreamFn setStream;
  cudnn::CreateTensorDescFn createTensorDesc;
  cudnn::SetTensor4dFn setTensor4d;
  cudnn::DestroyTensorDescFn destroyTensorDesc;
  cudnn::CreateFilterDescFn createFilterDesc;
  cudnn::SetFilter4dFn setFilter4d;
  cudnn::DestroyFilterDescFn destroyFilterDesc;
  cudnn::CreateConvDescFn createConvDesc;
  cudnn::SetConv2dFn setConv2d;
  cudnn::SetConvMathTypeFn setConvMathType;
  cudnn::DestroyConvDescFn destroyConvDesc;
  cudnn::GetFwdAlgoFn getFwdAlgo;
  cudnn::GetFwdWorkspaceFn getFwdWorkspace;
  cudnn::ConvFwdFn convFwd;
  cudnn::GetBwdDataAlgoFn getBwdDataAlgo;
  cudnn::GetBwdDataWorkspaceFn getBwdDataWorkspace;
  cudnn::ConvBwdDataFn convBwdData;
  cudnn::GetBwdFilterAlgoFn getBwdFilterAlgo;
  cudnn::GetBwdFilterWorkspaceFn getBwdFilterWorkspace;
  cudnn::ConvBwdFilterFn convBwdFilter;
};

// Throws Error naming what could not be loaded.
const CudnnApi& cudnnApi();
[[noreturn]] void throwCudnn(const char* call, cudnn::Status status);

}  // namespace bssn::cuda
