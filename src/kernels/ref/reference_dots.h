// Scalar reference dot products of block-quantized weight rows (ggml and repacked layouts) with
// quantized activation rows: the reference table's kernels and what every ISA's integer
// kernels are tested against.
#ifndef GEMMA4_SRC_KERNELS_REF_REFERENCE_DOTS_H_
#define GEMMA4_SRC_KERNELS_REF_REFERENCE_DOTS_H_

#include <cstdint>

#include "base/tensor.h"

namespace gemma4::kernels {

// Scalar reference dot products of one weight row with one activation row (nblocks blocks).
float DotQ8_0Reference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks);
float DotQ4_0Reference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int32_t* a_sum, int64_t nblocks);
// nblocks: 32-value activation blocks (8 per Q4_K block); a_sum: per-block sums of a.
float DotQ4_KReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int32_t* a_sum, int64_t nblocks);
// Q5_1: per block a_scale (d sum(q a) + m sum(a)); a_sum: per-block sums of a.
float DotQ5_1Reference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int32_t* a_sum, int64_t nblocks);
// Q4_1 likewise (four-bit values).
float DotQ4_1Reference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int32_t* a_sum, int64_t nblocks);
// IQ4_XS: per 32-value sub-block j, a_scale d (ls_j - 32) sum(kIQ4NLValues[nibble] a).
float DotIQ4_XSReference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks);
// IQ4_NL: per block, a_scale d sum(kIQ4NLValues[nibble] a) (Q8_0's sums with looked-up values).
float DotIQ4_NLReference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks);
// MXFP4: per block, a_scale 2^(e - 128) sum(kMXFP4Values[nibble] a) (IQ4_NL's sums, another
// table and scale).
float DotMXFP4Reference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks);
// Likewise for Q5_K (the same sums as Q4_K's, with five-bit values).
float DotQ5_KReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int32_t* a_sum, int64_t nblocks);
// Q2_K: per 32-value activation block b (Q2_K sub-blocks k = 2 b and 2 b + 1 of 16 values),
// the integers S = sc_2b dot_2b + sc_2b+1 dot_2b+1 (dot_k: the values of sub-block k times the
// activations) and M = m_2b sum16_2b + m_2b+1 sum16_2b+1 (a_sum16: the activations' per-16
// sums), then total += a_scale_b (d S - dmin M) in block order: what the SIMD kernels compute,
// up to the order of the f32 sums.
float DotQ2_KReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int16_t* a_sum16, int64_t nblocks);
// The codebook formats (DType::kIQ2_XXS, kIQ2_XS, kIQ2_S, kIQ3_XXS, kIQ3_S, kIQ1_S, kIQ1_M;
// `type` one of them): per 32-value activation block b (the format's sub-block b % 8 of block b /
// 8), the integer S = m_2b dot_2b + m_2b+1 dot_2b+1 (m: the odd multipliers of its two halves of
// 16, dot: their signed grid values times the activations), then total += a_scale_b ((d unit) S) in
// block order (d unit: quant::CodebookD times quant::CodebookUnit, exact; IQ1's values are 8 g +-
// 1, its delta folded in): what the SIMD kernels compute, up to the order of the f32 sums.
float DotCodebookReference(DType type, const uint8_t* w, const int8_t* a, const float* a_scale,
                           int64_t nblocks);
// nblocks: 32-value activation blocks (a multiple of 8; each Q6_K block spans eight).
float DotQ6_KReference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks);
// Likewise for Q3_K (the same sums as Q6_K's, with values in [-4, 3] and 6-bit scales).
float DotQ3_KReference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks);
float DotQ8_0RReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                        const int32_t* a_sum, int64_t nblocks);
float DotQ4_0RReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                        const int32_t* a_sum, int64_t nblocks);

// Scalar reference: rows 0..15 of a Q4_Kx16 group times activation row `a` (nblocks blocks of
// 32), out[r]; the same sums in the same order as DotQ4_KReference on the plain rows.
void GemmQ4_Kx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          const int32_t* a_sum, int64_t nblocks, float* out);
// Scalar reference: rows 0..15 of a Q5_Kx16 group; the same sums in the same order as
// DotQ5_KReference on the plain rows.
void GemmQ5_Kx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          const int32_t* a_sum, int64_t nblocks, float* out);
// Scalar reference: rows 0..15 of an IQ4_XSx16 group; the same sums in the same order as
// DotIQ4_XSReference on the plain rows.
void GemmIQ4_XSx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                            int64_t nblocks, float* out);
// Scalar reference: rows 0..15 of a Q2_Kx16 group; the same sums in the same order as
// DotQ2_KReference on the plain rows.
void GemmQ2_Kx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          const int16_t* a_sum16, int64_t nblocks, float* out);
// Scalar reference: rows 0..15 of a Q6_Kx16 group times activation row `a`; the same sums in
// the same order as DotQ6_KReference on the plain rows.
void GemmQ6_Kx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          int64_t nblocks, float* out);
// Scalar reference: rows 0..15 of a Q4_1x16 group; the same sums in the same order as
// DotQ4_1Reference on the plain rows.
void GemmQ4_1x16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          const int32_t* a_sum, int64_t nblocks, float* out);
// Likewise for Q5_1x16 (DotQ5_1Reference's sums).
void GemmQ5_1x16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          const int32_t* a_sum, int64_t nblocks, float* out);
// Scalar reference: rows 0..15 of a Q3_Kx16 group; the same sums in the same order as
// DotQ3_KReference on the plain rows.
void GemmQ3_Kx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          int64_t nblocks, float* out);

}  // namespace gemma4::kernels

#endif  // GEMMA4_SRC_KERNELS_REF_REFERENCE_DOTS_H_
