// A layer's sigma slots, as every normalization kernel writes them (normalize.cuh: kSigmaSlots).
#pragma once
#include "cuda/common.cuh"
#include "cuda/normalize.cuh"

namespace bssn::cuda {

// The divisor of W_hat: sigma1, or in bsn/bssn mode the mean of both directions' sigmas.
__device__ __forceinline__ double layerDivisor(double s1, double s2, int bidirectional) { return bidirectional ? 0.5 * (s1 + s2) : s1; }

// sigma1, sigma2 (0 outside bsn/bssn), the divisor as floats, a step counted in the non-finite slot where sigma is
// NaN, and the divisor at full range.
__device__ __forceinline__ void writeSigmas(float* sigmas, double* divisors, int layer, double s1, double s2, int bidirectional) {
  const double divisor = layerDivisor(s1, s2, bidirectional);
  float* out = sigmas + layer * kSigmaSlots;
  out[0] = float(s1);
  out[1] = bidirectional ? float(s2) : 0.0f;
  out[2] = float(divisor);
  if (s1 != s1) ++reinterpret_cast<unsigned*>(out)[kNonFiniteSigmaSlot];  // NaN
  divisors[layer] = divisor;
}

}  // namespace bssn::cuda
