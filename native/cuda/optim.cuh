// Multi-tensor optimizer updates: up to 64 tensors per launch (Adam adds one launch for its device step count), state in device memory.
#pragma once
#include <cuda_runtime.h>

#include "core/ops.h"

namespace bssn::cuda {

void launchAdam(const AdamArgs& args, cudaStream_t stream);
void launchSgd(const SgdArgs& args, cudaStream_t stream);

}  // namespace bssn::cuda
