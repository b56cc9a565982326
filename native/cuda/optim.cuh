// Fused optimizer updates: one launch per parameter tensor, state in device memory.
#pragma once
#include <cuda_runtime.h>

#include "core/ops.h"

namespace bssn::cuda {

void launchAdam(const AdamArgs& args, cudaStream_t stream);
void launchSgd(const SgdArgs& args, cudaStream_t stream);

}  // namespace bssn::cuda
