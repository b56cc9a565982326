// A layer's bias add fused with its activation: one launch forward, one backward that also sums the bias gradient.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "core/ops.h"

namespace bssn::cuda {

// y[o, c, i] = f(x[o, c, i] + bias[c]) over [outer, channels, inner].
void launchBiasActivation(UnaryOp op, float param, const float* x, const float* bias, float* y, size_t outer, size_t channels,
                          size_t inner, cudaStream_t stream);
// dx = dy * f'(.) from y, and db[c] (+)= the sum of dx over outer and inner, one block per channel in sumToBias's order
// (so db is bit for bit its sum of the unfused dx). dx may be null; db null launches the plain elementwise backward.
void launchBiasActivationBackward(UnaryOp op, float param, const float* y, const float* dy, float* dx, float* db, bool accumulate,
                                  size_t outer, size_t channels, size_t inner, cudaStream_t stream);

}  // namespace bssn::cuda
