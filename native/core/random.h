// Counter-based normal random numbers: value i of stream (seed) depends on (seed, i) only, so any backend
// (and any thread) produces the same numbers without sharing generator state.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define BSSN_HD __host__ __device__ __forceinline__
#else
#define BSSN_HD inline
#endif

namespace bssn {

BSSN_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Derives an independent stream seed, e.g. for layer j's vector k.
BSSN_HD uint64_t deriveSeed(uint64_t seed, uint64_t stream) { return splitmix64(seed ^ splitmix64(stream + 0x51ED27ull)); }

// Uniform sample number `index` of stream `seed` in [0, 1) (24 bits, exact in float).
BSSN_HD float uniformAt(uint64_t seed, uint64_t index) {
  return float(splitmix64(seed + splitmix64(index) + 0x2545F4914F6CDD1Dull) >> 40) * (1.0f / 16777216.0f);
}

// Standard normal sample number `index` of stream `seed` (Box-Muller in double precision).
BSSN_HD float normalAt(uint64_t seed, uint64_t index) {
  const uint64_t bits = splitmix64(seed + splitmix64(index));
  // Two 26-bit uniforms; u1 in (0, 1] so the log is finite.
  const double u1 = (double((bits >> 38) & 0x3FFFFFFu) + 1.0) * (1.0 / 67108864.0);
  const double u2 = double((bits >> 6) & 0x3FFFFFFu) * (1.0 / 67108864.0);
  return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

}  // namespace bssn
