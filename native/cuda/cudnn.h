// cuDNN, loaded on first use (process-wide).
#pragma once
#include "cuda/cudnn_api.h"
#include "cuda/library.h"

namespace bssn::cuda {

struct CudnnApi {
  cudnn::GetVersionFn getVersion;
  cudnn::GetErrorStringFn errorString;
  cudnn::CreateFn create;
  cudnn::DestroyFn destroy;
  cudnn::SetStreamFn setStream;
};

// Throws Error naming what could not be loaded.
const CudnnApi& cudnnApi();
[[noreturn]] void throwCudnn(const char* call, cudnn::Status status);

}  // namespace bssn::cuda
