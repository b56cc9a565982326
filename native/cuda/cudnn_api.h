// The cuDNN entry points bssn uses so far, declared here so the addon compiles without cuDNN headers. Checked
// against the real cudnn.h by test/gpu/check_declarations.cpp on a GPU host.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

struct cudnnContext;  // as cudnn.h names it, so the handle type is the real one

namespace bssn::cudnn {

using Handle = cudnnContext*;
using Status = int;  // cudnnStatus_t
constexpr Status kSuccess = 0;  // CUDNN_STATUS_SUCCESS

using GetVersionFn = size_t (*)();                        // cudnnGetVersion
using GetErrorStringFn = const char* (*)(Status);         // cudnnGetErrorString
using CreateFn = Status (*)(Handle*);                     // cudnnCreate
using DestroyFn = Status (*)(Handle);                     // cudnnDestroy
using SetStreamFn = Status (*)(Handle, cudaStream_t);     // cudnnSetStream

}  // namespace bssn::cudnn
