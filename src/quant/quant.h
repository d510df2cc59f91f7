// llama.cpp-compatible block quantization formats (exact ggml byte layouts, so GGUF files move
// both ways): quantize and dequantize rows. The layouts the kernels repack them into at load time
// live in kernels/pack/, the activation format of the integer kernels in kernels/activations.h.
//
//   Q8_0: 32 values, { f16 d; int8 q[32]; }            x = d * q
//   Q4_0: 32 values, { f16 d; uint8 q[16]; }           x = d * (nibble - 8); byte j holds
//         element j in its low nibble and element j + 16 in its high nibble
//   Q4_K: 256 values in 8 sub-blocks of 32 with 6-bit scales and mins (dequantize only)
//   Q6_K: 256 values in 16 sub-blocks of 16 with int8 scales (dequantize only)
//   Q5_0: 32 values, { f16 d; uint8 qh[4]; uint8 q[16]; }   x = d * (q - 16), q's low nibble as
//         in Q4_0 and its fifth bit bit j of qh (element j) (read only, converted to Q5_1)
//   Q4_1: 32 values, { f16 d; f16 m; uint8 q[16]; }   x = d * nibble + m, nibbles as in Q4_0
//         (read only)
//   Q5_1: 32 values, { f16 d; f16 m; uint8 qh[4]; uint8 q[16]; }   x = d * q + m, q as in
//         Q5_0 (read only)
//   IQ4_NL: 32 values, { f16 d; uint8 q[16]; }   x = d * kIQ4NLValues[nibble], nibbles as in
//         Q4_0 (read only)
//   MXFP4: 32 values, { uint8 e; uint8 q[16]; }   x = 2^(e - 128) * kMXFP4Values[nibble] (the
//         E2M1 values doubled, so the E8M0 scale 2^(e - 127) is halved), nibbles as in Q4_0
//         (read only)
//   IQ4_XS: 256 values, { f16 d; uint16 scales_h; uint8 scales_l[4]; uint8 q[128]; }
//         x = d * (ls_j - 32) * kIQ4NLValues[nibble] in sub-block j of 32 (ls_j: 4 bits of
//         scales_l, 2 of scales_h), nibbles as in Q4_0 at q + 16 j (read only)
//   Q5_K: 256 values, { f16 d; f16 dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]; }
//         x = d * sc_j * q - dmin * m_j (sub-block j of 32; scales and mins as in Q4_K), q's
//         low nibble as in Q4_K and its fifth bit bit j of qh[l] (element 32 j + l) (read only)
//   Q3_K: 256 values, { uint8 hmask[32]; uint8 qs[64]; uint8 scales[12]; f16 d; }
//         x = d * (s_k - 32) * q in sub-block k of 16 (s_k: 6 bits, see Q3_KScales), q in
//         [-4, 3]: element 32 g + l (group g = 0..7, l = 0..31) has low bits
//         (qs[32 (g / 4) + l] >> 2 (g % 4)) & 3, minus 4 unless bit g of hmask[l] is set
//         (read only)
//   Q2_K: 256 values, { uint8 scales[16]; uint8 qs[64]; f16 d; f16 dmin; }
//         x = d * (scales[k] & 0xF) * q - dmin * (scales[k] >> 4) in sub-block k of 16
//         (elements 16 k .. 16 k + 15), q in [0, 3]: element 128 h + 32 j + l (h < 2, j < 4,
//         l < 32) is bits 2 j .. 2 j + 1 of qs[32 h + l] (read only)
#ifndef GEMMA4_SRC_QUANT_QUANT_H_
#define GEMMA4_SRC_QUANT_QUANT_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/tensor.h"

namespace gemma4::quant {

// A little-endian u16 at any alignment (block headers' f16 scales).
inline uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Constants are plain constexpr (one copy per unit), not inline variables: the ISA units are
// compiled with -fno-weak, which cannot share an inline variable.
constexpr int kQ8_0BlockBytes = 34;
constexpr int kQ4_0BlockBytes = 18;
constexpr int kBlock = 32;

constexpr int kQ4_KBlockBytes = 144;  // 256 values
constexpr int kQ6_KBlockBytes = 210;  // 256 values
constexpr int kQ5_0BlockBytes = 22;
constexpr int kQ5_1BlockBytes = 24;
constexpr int kQ4_1BlockBytes = 20;
constexpr int kIQ4_NLBlockBytes = 18;
constexpr int kIQ4_XSBlockBytes = 136;  // 256 values
// ggml's kvalues_iq4nl: the 16 levels of IQ4_NL and IQ4_XS nibbles.
constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};
// MXFP4 (OCP microscaling FP4, as ggml stores it): an E8M0 scale byte and 16 bytes of E2M1
// nibbles; ggml's kvalues_mxfp4 hold the E2M1 values times 2 as int8.
constexpr int kMXFP4BlockBytes = 17;
constexpr int8_t kMXFP4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
constexpr int kQ5_KBlockBytes = 176;  // 256 values
constexpr int kQ5_KHigh = 16;         // qh: 32 bytes of fifth bits
constexpr int kQ5_KLow = 48;          // qs: 128 bytes of nibbles, as Q4_K's at 16
constexpr int kQ3_KBlockBytes = 110;  // 256 values
constexpr int kQ3_KLow = 32;          // qs: 64 bytes of 2-bit values after hmask's 32 bytes
constexpr int kQ3_KScales = 96;       // 12 bytes of 6-bit scales
constexpr int kQ3_KD = 108;           // f16 d
constexpr int kQ2_KBlockBytes = 84;   // 256 values
constexpr int kQ2_KValues = 16;       // qs: 64 bytes of 2-bit values after the 16 scale bytes
constexpr int kQ2_KD = 80;            // f16 d, then f16 dmin at 82
// The codebook formats (see DType::kIQ2_XXS and quant/iq_grids.h); f16 d first in each.
constexpr int kIQ2_XXSBlockBytes = 66;  // u16 qs[32] at 2
constexpr int kIQ2_XSBlockBytes = 74;   // u16 qs[32] at 2, scales[8] at 66
constexpr int kIQ2_XSScales = 66;
constexpr int kIQ2_SBlockBytes = 82;  // index low bytes [32] at 2, signs [32] at 34, qh[8] at 66,
constexpr int kIQ2_SSigns = 34;       // scales[8] at 74
constexpr int kIQ2_SHigh = 66;
constexpr int kIQ2_SScales = 74;
constexpr int kIQ3_XXSBlockBytes = 98;  // grid indices [64] at 2, u32 signs and scale [8] at 66
constexpr int kIQ3_XXSSigns = 66;
constexpr int kIQ3_SBlockBytes = 110;  // index low bytes [64] at 2, qh[8] at 66, signs [32] at
constexpr int kIQ3_SHigh = 66;         // 74, scales[4] at 106
constexpr int kIQ3_SSigns = 74;
constexpr int kIQ3_SScales = 106;
constexpr int kIQ1_SBlockBytes = 50;  // f16 d, index low bytes [32] at 2, u16 qh[8] at 34
constexpr int kIQ1_SHigh = 34;
constexpr int kIQ1_MBlockBytes = 56;  // index low bytes [32] at 0, qh[16] at 32, u16 scales[4]
constexpr int kIQ1_MHigh = 32;        // at 48 (their top nibbles: the f16 d)
constexpr int kIQ1_MScales = 48;

// Row conversions; n must be a multiple of the type's block size.
void QuantizeRowQ8_0(const float* x, int64_t n, uint8_t* out);
void QuantizeRowQ4_0(const float* x, int64_t n, uint8_t* out);
// ggml's reference Q4_K quantizer (quantize_row_q4_K_ref); n a multiple of 256.
void QuantizeRowQ4_K(const float* x, int64_t n, uint8_t* out);
// ggml's reference Q6_K quantizer (quantize_row_q6_K_ref); n a multiple of 256.
void QuantizeRowQ6_K(const float* x, int64_t n, uint8_t* out);
// `nblocks` Q5_0 blocks as the same values in Q8_0 blocks (same d, q - 16 as int8): exact.
void ConvertRowQ5_0ToQ8_0(const uint8_t* src, int64_t nblocks, uint8_t* dst);
// `nblocks` Q5_0 blocks as the same values in Q5_1 blocks: the same d, qh and qs, and m = -16 d
// (x = d q + m = d (q - 16); multiplying an f16 by 16 only moves its exponent, so m is exact).
// Returns false, with dst partly written, where some block's finite |16 d| exceeds f16's range
// (|d| > 4094: weights beyond 65504, which no quantizer writes).
bool ConvertRowQ5_0ToQ5_1(const uint8_t* src, int64_t nblocks, uint8_t* dst);
// An MXFP4 block's E8M0 scale e as ggml's GGML_E8M0_TO_FP32_HALF: 2^(e - 128) exactly (e < 2:
// f32 denormals), the half that kMXFP4Values' doubled levels need.
float E8M0ToF32Half(uint8_t e);
// The eight 6-bit scales (ls, before - 32) of an IQ4_XS block.
void IQ4_XSScales(const uint8_t* block, uint8_t* scales);
// Any ggml or float type to f32 (repacked types: kernels::pack::DequantizeRow); `first` and `count`
// in elements, block-aligned.
void DequantizeRow(DType type, const uint8_t* row, int64_t count, float* out);
// Quantizes a row of a float matrix into `type` (Q8_0, Q4_0, Q4_K, Q6_K, F16, BF16 or F32).
void QuantizeRow(DType type, const float* x, int64_t n, uint8_t* out);

// The eight 6-bit scales and mins of a Q4_K block (its 12 packed bytes).
void Q4_KScales(const uint8_t* packed, uint8_t* scales, uint8_t* mins);
// The 32 values (q in [0, 31]) of one Q5_1 block, in element order.
void UnpackQ5_1(const uint8_t* block, uint8_t* q);
// The 32 values (q in [0, 15]) of one Q4_1 block, in element order.
void UnpackQ4_1(const uint8_t* block, uint8_t* q);
// The 256 values (q in [0, 31]) of one Q5_K block, in element order.
void UnpackQ5_K(const uint8_t* block, uint8_t* q);
// The 16 signed sub-block scales (s_k - 32, in [-32, 31]) of a Q3_K block (its 12 packed bytes:
// the low 4 bits of scale k in byte k % 8, low nibble for k < 8; its top 2 bits at bits
// 2 (k / 4) of byte 8 + k % 4).
void Q3_KScales(const uint8_t* packed, int8_t* scales);
// The 256 signed values (in [-4, 3]) of one Q3_K block, in element order.
void UnpackQ3_K(const uint8_t* block, int8_t* q);
// The 256 values (q in [0, 3]) of one Q2_K block, in element order.
void UnpackQ2_K(const uint8_t* block, uint8_t* q);
// One codebook-format block (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M): its 256
// weights as signed grid values q (|q| <= 62, grid magnitude times sign; IQ1: 8 g +- 1, in
// [-9, 9] and never 0) in element order, and the odd multipliers m (2 s + 1, 1..31) of its 16
// sub-blocks of 16 (formats with one s per 32 repeat it), so that x = CodebookD(type, block) *
// CodebookUnit(type) * m[e / 16] * q[e] exactly.
void UnpackCodebookBlock(DType type, const uint8_t* block, int8_t* q, uint8_t* m);
// 1/8 (IQ2_*, IQ1_*), 1/4 (IQ3_XXS) or 1 (IQ3_S).
float CodebookUnit(DType type);
// A codebook block's d: the f16 at byte 0, or IQ1_M's assembled from the top nibbles of its four
// u16 scales (IQ1_MScaleBits: bits 0-3 from scales[0], 4-7 from scales[1], ...).
float CodebookD(DType type, const uint8_t* block);
// Inline: the kernels' IQ1_M row dots read it once a block.
inline uint16_t IQ1_MScaleBits(const uint8_t* block) {
  uint16_t sc[4];
  std::memcpy(sc, block + kIQ1_MScales, 8);
  return static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) |
                               (sc[3] & 0xF000));
}
// The 256 signed values (q - 32, in [-32, 31]) of one Q6_K block, in element order.
void UnpackQ6_K(const uint8_t* block, int8_t* q);

}  // namespace gemma4::quant

#endif  // GEMMA4_SRC_QUANT_QUANT_H_
