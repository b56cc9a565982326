// TF32 as tensor cores see fp32 inputs: the 8-bit exponent kept, the mantissa rounded from 23 to 10 bits (to
// nearest, ties to even), so the emulated cuBLAS and cuDNN lose what a GPU's TF32 math loses.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace bssn::emu {

inline float roundToTf32(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u) return v;  // infinity and NaN pass unchanged (the mask could turn NaN to inf)
  u += 0x0fffu + ((u >> 13) & 1u);                  // half of the dropped 13 bits, plus one when the kept part is odd
  u &= ~uint32_t(0x1fff);
  std::memcpy(&v, &u, sizeof v);
  return v;
}

// NVIDIA_TF32_OVERRIDE=0 forbids TF32 in every library whatever the math mode, as the real ones honour it.
inline bool tf32Overridden() {
  const char* v = std::getenv("NVIDIA_TF32_OVERRIDE");
  return v && std::strcmp(v, "0") == 0;
}

}  // namespace bssn::emu
