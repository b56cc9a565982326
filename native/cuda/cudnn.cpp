#include "cuda/cudnn.h"

#include <mutex>
#include <string>

#include "core/error.h"

namespace bssn::cuda {

const CudnnApi& cudnnApi() {
  static std::once_flag once;
  static CudnnApi api;
  static std::string failure;
  std::call_once(once, [] {
    try {
#if defined(BSSN_CUDA_EMULATED)
      static const SharedLibrary lib("cuDNN", SharedLibrary::overridable("BSSN_CUDNN_PATH", {SharedLibrary::besideAddon("libcudnn_emu.so")}));
#else
      static const SharedLibrary lib(
          "cuDNN", SharedLibrary::overridable("BSSN_CUDNN_PATH",
                                              SharedLibrary::candidates({"libcudnn.so.9", "libcudnn.so"}, {"CUDNN_LIBRARY_DIR", "CUDA_PATH/lib64"},
                                                                        {"/usr/lib/x86_64-linux-gnu", "/usr/local/cuda/lib64"})));
#endif
      api.getVersion = lib.function<cudnn::GetVersionFn>("cudnnGetVersion");
      api.errorString = lib.function<cudnn::GetErrorStringFn>("cudnnGetErrorString");
      api.create = lib.function<cudnn::CreateFn>("cudnnCreate");
      api.destroy = lib.function<cudnn::DestroyFn>("cudnnDestroy");
      api.setStream = lib.function<cudnn::SetStreamFn>("cudnnSetStream");
      api.createTensorDesc = lib.function<cudnn::CreateTensorDescFn>("cudnnCreateTensorDescriptor");
      api.setTensor4d = lib.function<cudnn::SetTensor4dFn>("cudnnSetTensor4dDescriptor");
      api.destroyTensorDesc = lib.function<cudnn::DestroyTensorDescFn>("cudnnDestroyTensorDescriptor");
      api.createFilterDesc = lib.function<cudnn::CreateFilterDescFn>("cudnnCreateFilterDescriptor");
      api.setFilter4d = lib.function<cudnn::SetFilter4dFn>("cudnnSetFilter4dDescriptor");
      api.destroyFilterDesc = lib.function<cudnn::DestroyFilterDescFn>("cudnnDestroyFilterDescriptor");
      api.createConvDesc = lib.function<cudnn::CreateConvDescFn>("cudnnCreateConvolutionDescriptor");
      api.setConv2d = lib.function<cudnn::SetConv2dFn>("cudnnSetConvolution2dDescriptor");
      api.setConvMathType = lib.function<cudnn::SetConvMathTypeFn>("cudnnSetConvolutionMathType");
      api.destroyConvDesc = lib.function<cudnn::DestroyConvDescFn>("cudnnDestroyConvolutionDescriptor");
      api.getFwdAlgo = lib.function<cudnn::GetFwdAlgoFn>("cudnnGetConvolutionForwardAlgorithm_v7");
      api.getFwdWorkspace = lib.function<cudnn::GetFwdWorkspaceFn>("cudnnGetConvolutionForwardWorkspaceSize");
      api.convFwd = lib.function<cudnn::ConvFwdFn>("cudnnConvolutionForward");
      api.getBwdDataAlgo = lib.function<cudnn::GetBwdDataAlgoFn>("cudnnGetConvolutionBackwardDataAlgorithm_v7");
      api.getBwdDataWorkspace = lib.function<cudnn::GetBwdDataWorkspaceFn>("cudnnGetConvolutionBackwardDataWorkspaceSize");
      api.convBwdData = lib.function<cudnn::ConvBwdDataFn>("cudnnConvolutionBackwardData");
      api.getBwdFilterAlgo = lib.function<cudnn::GetBwdFilterAlgoFn>("cudnnGetConvolutionBackwardFilterAlgorithm_v7");
      api.getBwdFilterWorkspace = lib.function<cudnn::GetBwdFilterWorkspaceFn>("cudnnGetConvolutionBackwardFilterWorkspaceSize");
      api.convBwdFilter = lib.function<cudnn::ConvBwdFilterFn>("cudnnConvolutionBackwardFilter");
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  if (!failure.empty()) throwError(failure, ErrorCode::LibraryMissing);
  return api;
}

void throwCudnn(const char* call, cudnn::Status status) {
  const char* what = cudnnApi().errorString ? cudnnApi().errorString(status) : nullptr;
  throwError(std::string(call) + ": " + (what ? what : "cuDNN error") + " (cudnnStatus_t " + std::to_string(status) + ")");
}

}  // namespace bssn::cuda
