// The discriminator's hinge loss over scores whose first `split` are real and the rest fake (a D run once on real
// and fake concatenated, or each part alone with split = n or 0):
//   out[0] = float(scaleReal * sum_{i < split} relu(1 - x[i])) + float(scaleFake * sum_{i >= split} relu(1 + x[i]))
// and its gradient, one launch each (the unfused chain is eight launches forward and eight backward).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace bssn::cuda {

// One block: deterministic (a loss's scores, small).
void launchHinge(const float* x, size_t n, size_t split, float scaleReal, float scaleFake, float* out, cudaStream_t stream);
void launchHingeBackward(const float* x, const float* g, size_t n, size_t split, float scaleReal, float scaleFake, float* dx,
                         cudaStream_t stream);

}  // namespace bssn::cuda
