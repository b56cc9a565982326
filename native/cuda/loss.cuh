// The hinge terms of the GAN losses: out[0] = scale * sum(relu(1 + sign * x)) and its gradient, one launch each
// (the unfused chain is four launches forward and four backward per term).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace bssn::cuda {

// One block: deterministic (a loss's scores, small).
void launchHingeSum(const float* x, size_t n, float sign, float scale, float* out, cudaStream_t stream);
// dx[i] = g[0] * scale * sign where 1 + sign * x[i] > 0, else 0.
void launchHingeSumBackward(const float* x, const float* g, size_t n, float sign, float scale, float* dx, cudaStream_t stream);

}  // namespace bssn::cuda
