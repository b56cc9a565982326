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
      static const SharedLibrary lib(
          "cuDNN", SharedLibrary::candidates({"libcudnn.so.9", "libcudnn.so"}, {"CUDNN_LIBRARY_DIR", "CUDA_PATH/lib64"},
                                             {"/usr/lib/x86_64-linux-gnu", "/usr/local/cuda/lib64"}));
      api.getVersion = lib.function<cudnn::GetVersionFn>("cudnnGetVersion");
      api.errorString = lib.function<cudnn::GetErrorStringFn>("cudnnGetErrorString");
      api.create = lib.function<cudnn::CreateFn>("cudnnCreate");
      api.destroy = lib.function<cudnn::DestroyFn>("cudnnDestroy");
      api.setStream = lib.function<cudnn::SetStreamFn>("cudnnSetStream");
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  if (!failure.empty()) throwError(failure);
  return api;
}

void throwCudnn(const char* call, cudnn::Status status) {
  const char* what = cudnnApi().errorString ? cudnnApi().errorString(status) : nullptr;
  throwError(std::string(call) + ": " + (what ? what : "cuDNN error") + " (cudnnStatus_t " + std::to_string(status) + ")");
}

}  // namespace bssn::cuda
