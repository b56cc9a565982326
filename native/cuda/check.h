// CUDA status checks for host code: a failed call becomes a bssn::Error naming the call, the cause, and where
// it was made. Never aborts.
#pragma once
#include <cuda_runtime_api.h>

#include <string>

#include "core/error.h"

namespace bssn::cuda {

inline std::string describeStatus(cudaError_t status) {
  return std::string(cudaGetErrorString(status)) + " (" + cudaGetErrorName(status) + ")";
}

// Errors after which the CUDA context cannot be used again (the device must be considered lost).
inline bool isSticky(cudaError_t status) {
  switch (status) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
      return true;
    default:
      return false;
  }
}

[[noreturn]] inline void throwStatus(const char* call, cudaError_t status, const std::string& detail, const char* file, int line) {
  // A failed call also sets the thread's last error; clear it, or the next launch check would report it again.
  cudaGetLastError();
  std::string message = std::string(call) + ": " + describeStatus(status);
  if (!detail.empty()) message += " (" + detail + ")";
  message += " at " + std::string(file) + ":" + std::to_string(line);
  throwError(message, status == cudaErrorMemoryAllocation ? ErrorCode::OutOfMemory
                      : isSticky(status)                  ? ErrorCode::DeviceFault
                                                          : ErrorCode::Default);
}

}  // namespace bssn::cuda

// BSSN_CUDA_TRY(cudaMalloc(&p, n)) or BSSN_CUDA_TRY_DETAIL(cudaMalloc(&p, n), "requested N bytes").
#define BSSN_CUDA_TRY_DETAIL(expr, detail)                                                   \
  do {                                                                                       \
    const cudaError_t bssn_status_ = (expr);                                                 \
    if (bssn_status_ != cudaSuccess) {                                                       \
      std::string bssn_call_ = #expr;                                                        \
      bssn_call_ = bssn_call_.substr(0, bssn_call_.find('('));                                \
      ::bssn::cuda::throwStatus(bssn_call_.c_str(), bssn_status_, (detail), __FILE__, __LINE__); \
    }                                                                                        \
  } while (0)
#define BSSN_CUDA_TRY(expr) BSSN_CUDA_TRY_DETAIL(expr, std::string())
