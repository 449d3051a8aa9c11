#pragma once
// IEEE 754 binary16 ("float16", numpy's float16, HDF5's 2-byte float) as its 16 bits, converted
// from float32 with round-to-nearest-even, as numpy and PyTorch do: embeddings are stored in it.
#include <cstdint>
#include <cstring>

namespace hpcscreen {

inline constexpr float half_max = 65504.0f;  // larger magnitudes round to infinity

inline std::uint16_t float_to_half(float value) {
  std::uint32_t f = 0;
  std::memcpy(&f, &value, sizeof f);
  const auto sign = static_cast<std::uint16_t>((f >> 16) & 0x8000u);
  const std::uint32_t abs = f & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf stays inf, NaN stays a (quiet) NaN
    return static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x0200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (abs < 0x38800000u) {  // below the smallest normal half (2^-14): a subnormal or zero
    if (abs < 0x33000000u) return sign;  // at most half the smallest subnormal (2^-25): zero
    const std::uint32_t mantissa = (abs & 0x007fffffu) | 0x00800000u;
    // value = mantissa * 2^(e - 150) and the subnormal half's unit is 2^-24: mantissa >> (126 - e).
    const int shift = 126 - static_cast<int>(abs >> 23);
    const std::uint32_t kept = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1);
    const std::uint32_t rounded =
        kept + ((rest > halfway || (rest == halfway && (kept & 1u))) ? 1u : 0u);
    return static_cast<std::uint16_t>(sign | rounded);
  }
  // Normal: rebias the exponent (127 → 15) and round the 23-bit mantissa to 10 bits.
  const std::uint32_t rebased = abs - 0x38000000u;  // (127 - 15) << 23
  const std::uint32_t kept = rebased >> 13;
  const std::uint32_t rest = rebased & 0x1fffu;
  const std::uint32_t rounded =
      kept + ((rest > 0x1000u || (rest == 0x1000u && (kept & 1u))) ? 1u : 0u);
  return static_cast<std::uint16_t>(sign | rounded);  // a carry into the exponent is correct
}

inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  std::uint32_t f = 0;
  if (exponent == 0x1fu) {
    f = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    f = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    f = sign;
  } else {  // subnormal: normalize
    int e = 113;
    while (!(mantissa & 0x400u)) {
      mantissa <<= 1;
      --e;
    }
    f = sign | (static_cast<std::uint32_t>(e) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float out = 0;
  std::memcpy(&out, &f, sizeof out);
  return out;
}

}  // namespace hpcscreen
