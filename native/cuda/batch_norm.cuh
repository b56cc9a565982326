// Batch normalization: one block per channel, so the statistics and gradient sums are deterministic.
#pragma once
#include <cuda_runtime.h>

#include "core/ops.h"

namespace bssn::cuda {

void launchBatchNorm(const BatchNormArgs& args, cudaStream_t stream);
void launchBatchNormBackward(const BatchNormBackwardArgs& args, cudaStream_t stream);

}  // namespace bssn::cuda
