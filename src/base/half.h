// IEEE binary16 (f16) and bfloat16 (bf16) <-> f32 for single values: the one scalar conversion
// that weights, KV codecs, quantization scales and reference kernels share. Vectorised row
// conversions live in the kernel tables (kernels::KernelTable::f16_to_f32, bf16_to_f32) and
// produce the same bits.
#ifndef GEMMA4_SRC_BASE_HALF_H_
#define GEMMA4_SRC_BASE_HALF_H_

#include <cstdint>
#include <cstring>

namespace gemma4::half {

// bf16 is the top half of an f32: widening is exact.
inline float Bf16ToF32(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
// Exact (every f16 is an f32), subnormals included; NaN payloads are kept.
float F16ToF32(uint16_t h);
// Round to nearest, ties to even (ggml's reference conversion); overflow becomes inf, NaN stays
// NaN.
uint16_t F32ToF16(float f);
// Round to nearest, ties to even; NaN stays NaN (quiet bit set).
uint16_t F32ToBf16(float f);

}  // namespace gemma4::half

#endif  // GEMMA4_SRC_BASE_HALF_H_
