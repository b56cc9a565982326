// n / d for 32-bit n < 2^31 by a multiply and a shift (Granlund-Montgomery, as ggml-cuda's fastdiv): 64-bit
// division is a long instruction sequence on the GPU, too slow for per-element index decoding. The host makes the
// constants (makeFastDiv); kernels divide with fastDiv (common.cuh).
#pragma once
#include <cstdint>

namespace bssn::cuda {

struct FastDiv {
  uint32_t mul, shift;
};

inline FastDiv makeFastDiv(uint32_t d) {
  uint32_t shift = 0;
  while (shift < 32 && (uint64_t(1) << shift) < d) ++shift;
  return FastDiv{uint32_t((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d) / d + 1), shift};
}

}  // namespace bssn::cuda
