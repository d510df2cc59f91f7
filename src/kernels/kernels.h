// Compute kernels (f32 and integer dot products, GEMM tiles over float and block-quantized
// weights, attention pieces, activations, f16/bf16 widening): one table per ISA, each in its own
// translation unit compiled with that ISA's flags, plus the scalar reference; chosen once.
#ifndef GEMMA4_SRC_KERNELS_KERNELS_H_
#define GEMMA4_SRC_KERNELS_KERNELS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/tensor.h"
#include "kernels/activations.h"

namespace gemma4::kernels {

// A bfloat16 value (the high 16 bits of an f32), as a type distinct from f16's uint16_t.
struct Bf16 {
  uint16_t bits;
};

// Dot products of one quantized weight row (nblocks blocks of 32) with activation rows
// token .. token + ntok - 1 (1 <= ntok <= 4) of `a`; out[i] receives the result for token + i.
using RowDotFn = void (*)(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a,
                          int64_t token, int ntok, float* out);

// Prefill tile over repacked rows: rows w and w + row_bytes (nrows 1 or 2) times tokens
// token .. token + ntok - 1 (ntok <= 4) into out[r * ldo + t].
using GemmTileFn = void (*)(const uint8_t* w, uint64_t row_bytes, int nrows, int64_t nblocks,
                            const QuantizedActivations& a, int64_t token, int ntok, float* out,
                            int64_t ldo);

// One group of 16 interleaved rows (DType::kQ4_0x16 and the other x16 layouts) times tokens
// token .. token + ntok - 1 (any ntok >= 1) into out[t * ldo + r], r < 16.
using GemmX16Fn = void (*)(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                           int64_t token, int ntok, float* out, int64_t ldo);

// Groups [groups, groups + ngroups) (ngroups 1 or 2; a group's bytes: nblocks blocks) of an x16
// matrix over blocks [b0, b1) of its rows (b1 - b0 and b0 multiples of 8, or b1 = nblocks),
// times tokens token .. token + ntok - 1 of activations in bf16 tiles (QuantizedActivations::
// bf16), into out[t * ldo + r], r < 16 * ngroups; with `accumulate` the sums are added to out's
// values, so calls over consecutive ranges of blocks make the whole product (k blocking). Each
// weight is dequantized once a call to bf16 and serves every tile of 16 of the call's tokens
// (callers pass up to 512); the products are summed in f32.
using GemmX16TilesFn = void (*)(const uint8_t* groups, int ngroups, int64_t nblocks, int64_t b0,
                                int64_t b1, const QuantizedActivations& a, int64_t token, int ntok,
                                float* out, int64_t ldo, bool accumulate);

// Prefill over BF16 weight rows, with every product exact: groups [w, w + 16 ngroups rows)
// (ngroups 1 or 2; row r at w + r * ldw) over blocks [b0, b1) of 32 values, times tokens
// token .. token + ntok - 1 (token a multiple of 16) of activations split by bf16_split_tiles
// (`split`: the tiles of every 16 tokens from token 0, nblocks blocks each), into out[t * ldo +
// r], r < 16 * ngroups; with `accumulate` the sums are added to out's values (k blocking). Each
// f32 activation is the exact sum of three bf16 values, so each product of a bf16 weight with
// one of them is exact and only the f32 sums round (in another order than the f32 kernels).
using Bf16RowsTilesFn = void (*)(const Bf16* w, int64_t ldw, int ngroups, int64_t b0, int64_t b1,
                                 const uint16_t* split, int64_t nblocks, int64_t token, int ntok,
                                 float* out, int64_t ldo, bool accumulate);

struct KernelTable {
  const char* isa;
  RowDotFn dot_q8_0;
  RowDotFn dot_q4_0;
  RowDotFn dot_q4_0r;   // repacked Q4_0 (DType::kQ4_0R)
  RowDotFn dot_q6_k;    // nblocks counts 32-value blocks (8 per Q6_K block); needs sum16
  RowDotFn dot_q4_k;    // likewise (8 per Q4_K block)
  RowDotFn dot_q5_k;    // likewise (8 per Q5_K block)
  RowDotFn dot_q5_1;    // Q5_1 (DType::kQ5_1)
  RowDotFn dot_iq4_xs;  // IQ4_XS (DType::kIQ4_XS), plain rows only (8 blocks per IQ4_XS block)
  RowDotFn dot_iq4_nl;  // IQ4_NL (DType::kIQ4_NL), plain rows
  RowDotFn dot_mxfp4;   // MXFP4 (DType::kMXFP4), plain rows
  RowDotFn dot_q3_k;    // Q3_K (8 blocks per Q3_K block); needs sum16
  RowDotFn dot_q4_1;    // Q4_1 (DType::kQ4_1)
  RowDotFn dot_q2_k;    // Q2_K (DType::kQ2_K), 8 blocks per Q2_K block; needs sum16
  // The codebook formats (DType::kIQ2_XXS ... kIQ3_S), 8 blocks per 256-value block.
  RowDotFn dot_iq2_xxs;
  RowDotFn dot_iq2_xs;
  RowDotFn dot_iq2_s;
  RowDotFn dot_iq3_xxs;
  RowDotFn dot_iq3_s;
  // The 1-bit codebook formats (DType::kIQ1_S, kIQ1_M), 8 blocks per 256-value block; their
  // +-1/8 shifts are folded into the int8 values (8 g +- 1), so no activation sums are needed.
  RowDotFn dot_iq1_s;
  RowDotFn dot_iq1_m;
  // One grid-format row (`type`: kIQ2_XXS ... kIQ3_S, kIQ1_S, kIQ1_M) times tokens token ..
  // token + ntok - 1 (1 <= ntok <= 16) into out[i], for prefill: each sub-block's grid entries
  // are decoded once for the whole tile rather than once per 4 tokens where the ISA has such a
  // kernel for the type (else its row dots, 4 tokens a call). Null: the row dots above.
  void (*dot_codebook_tile)(DType type, const uint8_t* w, int64_t nblocks,
                            const QuantizedActivations& a, int64_t token, int ntok, float* out);
  // Prefill over up to 16 codebook rows (`type`; row r at rows + r * row_bytes, nrows <= 16)
  // times tokens 0 .. ntok - 1 (any count) into out[t * ldo + r]: the rows are decoded once a
  // call (in chunks of columns, into thread_local scratch counted in thread_scratch_bytes) to
  // signed bytes interleaved by 16 rows, so each token's products are vpdpbusd over 16 rows
  // at a time. Only for types gemm_codebook_x16_takes accepts (the others: dot_codebook_tile).
  void (*gemm_codebook_x16)(DType type, const uint8_t* rows, uint64_t row_bytes, int nrows,
                            int64_t nblocks, const QuantizedActivations& a, int64_t ntok,
                            float* out, int64_t ldo);
  bool (*gemm_codebook_x16_takes)(DType type);
  GemmTileFn gemm_q4_0r;  // optional (null: dot_q4_0r per row)
  // Repacked Q8_0 (DType::kQ8_0R). Tables without a fast kernel leave gemm_q8_0r null, and
  // models loaded with them keep plain Q8_0.
  RowDotFn dot_q8_0r;
  GemmTileFn gemm_q8_0r;
  // Q4_0x16 (DType::kQ4_0x16): one group of 16 rows times tokens token .. token + ntok - 1
  // (any ntok >= 1; callers pass up to 16, one token tile, so a kernel can reuse each unpacked
  // weight block for as many tokens as its registers hold) into out[t * ldo + r]. Null where
  // the ISA has no such kernel; models then use Q4_0R.
  GemmX16Fn gemm_q4_0x16;
  // Q8_0x16 (DType::kQ8_0x16) likewise; null: Q8_0R or plain Q8_0.
  GemmX16Fn gemm_q8_0x16;
  // Two adjacent groups (32 rows: group, then group + 16 row lengths) of Q4_0x16 / Q8_0x16
  // times tokens token .. token + ntok - 1 into out[t * ldo + r], r < 32, for prefill: the same
  // results as two gemm_q4_0x16 / gemm_q8_0x16 calls, bit for bit. Optional (null: per group).
  GemmX16Fn gemm_q4_0x16_pair;
  GemmX16Fn gemm_q8_0x16_pair;
  // Whether gemm_q4_0x16, gemm_q8_0x16, gemm_iq4_nlx16 and gemm_mxfp4x16 read the
  // token-interleaved copy of the activations (QuantizedActivations::q8, scale8, neg_offset8)
  // rather than their rows.
  bool x16_reads_interleaved = false;
  // Bytes of thread_local scratch each thread that runs these kernels keeps for the life of the
  // thread (AMX: a chunk of weights dequantized to bf16 and the tiles' sums), for the memory
  // plan.
  int64_t thread_scratch_bytes = 0;
  // Q4_Kx16 (DType::kQ4_Kx16) likewise (nblocks counts 32-value blocks, 8 per Q4_K block);
  // null: plain Q4_K.
  GemmX16Fn gemm_q4_kx16;
  // Q6_Kx16 (DType::kQ6_Kx16) likewise; needs sum16; null: plain Q6_K.
  GemmX16Fn gemm_q6_kx16;
  // Q5_Kx16 (DType::kQ5_Kx16) likewise; null: plain Q5_K.
  GemmX16Fn gemm_q5_kx16;
  // IQ4_XSx16 (DType::kIQ4_XSx16) likewise; null: plain IQ4_XS.
  GemmX16Fn gemm_iq4_xsx16;
  // Q3_Kx16 (DType::kQ3_Kx16) likewise; needs sum16; null: plain Q3_K.
  GemmX16Fn gemm_q3_kx16;
  // Q4_1x16 (DType::kQ4_1x16) likewise (nblocks counts Q4_1 blocks); null: plain Q4_1.
  GemmX16Fn gemm_q4_1x16;
  // Q5_1x16 (DType::kQ5_1x16) likewise (nblocks counts Q5_1 blocks); null: plain Q5_1.
  GemmX16Fn gemm_q5_1x16;
  // Q2_Kx16 (DType::kQ2_Kx16) likewise; needs sum16; null: plain Q2_K.
  GemmX16Fn gemm_q2_kx16;
  // IQ4_NLx16 (DType::kIQ4_NLx16) likewise (nblocks counts IQ4_NL blocks); null: plain IQ4_NL.
  // It reads the token-interleaved copy where x16_reads_interleaved is set, as gemm_q4_0x16
  // does, and has a pair kernel like it (optional).
  GemmX16Fn gemm_iq4_nlx16;
  GemmX16Fn gemm_iq4_nlx16_pair;
  // MXFP4x16 (DType::kMXFP4x16) likewise, interleaved reads and an optional pair kernel as
  // gemm_iq4_nlx16's; null: plain MXFP4.
  GemmX16Fn gemm_mxfp4x16;
  GemmX16Fn gemm_mxfp4x16_pair;
  // One activation row to int8 blocks (same results as QuantizeActivationBlocks).
  void (*quantize_blocks)(const float* x, int64_t nblocks, int8_t* q, float* scale, int32_t* sum,
                          float* offset);
  float (*dot_f32)(const float* a, const float* b, int64_t n);
  void (*axpy_f32)(float a, const float* x, float* y, int64_t n);  // y += a * x
  // out = gelu_tanh(g) * u elementwise (u null: gelu_tanh(g)); out may alias g.
  void (*gelu_mul_f32)(const float* g, const float* u, float* out, int64_t n);
  // out = m * sigmoid(x) elementwise, computed as m / (1 + exp(-x)); m null: m = x (SiLU). out
  // may alias x or m. The audio tower's SiLU and GLU.
  void (*sigmoid_mul_f32)(const float* x, const float* m, float* out, int64_t n);
  // In place: x = exp(x - max) / sum (the sum accumulated in double by the reference).
  void (*softmax_f32)(float* x, int64_t n);
  // Softmax numerators down the columns of a [rows, width] block with row stride ld (rows >= 1):
  // per column c, m = the column's max, s[r * ld + c] = exp(s[r * ld + c] - m), and sums[c] = the
  // column's sum of them (accumulated in double by the reference). The vision attention's
  // transposed scores (one column per query), whose caller divides by the sums afterwards.
  void (*exp_columns_f32)(float* s, int64_t rows, int width, int64_t ld, float* sums);
  // Attention: scores[h * ldsc + j] = dot(q + h * ldq, k + j * ldk) over d values, for nq
  // query rows and nk key rows.
  void (*attention_scores_f32)(const float* q, int64_t ldq, int nq, const float* k, int64_t ldk,
                               int64_t nk, int64_t d, float* scores, int64_t ldsc);
  // out[h * ldo + i] += sum_j p[h * ldp + j] * v[j * ldv + i], for h < nq, i < d, j < nk.
  void (*attention_values_f32)(const float* p, int64_t ldp, int nq, const float* v, int64_t ldv,
                               int64_t nk, int64_t d, float* out, int64_t ldo);
  // The same over f16 keys / values (IEEE half bits), converted exactly to f32 on load.
  void (*attention_scores_f16)(const float* q, int64_t ldq, int nq, const uint16_t* k, int64_t ldk,
                               int64_t nk, int64_t d, float* scores, int64_t ldsc);
  // Scores over BF16 rows (prefill's BF16 matmuls), widened exactly on load.
  void (*attention_scores_bf16)(const float* q, int64_t ldq, int nq, const Bf16* k, int64_t ldk,
                                int64_t nk, int64_t d, float* scores, int64_t ldsc);
  void (*attention_values_f16)(const float* p, int64_t ldp, int nq, const uint16_t* v, int64_t ldv,
                               int64_t nk, int64_t d, float* out, int64_t ldo);
  // Float matmuls of a few tokens (decode) against weight rows: y[t * ldy + r] = dot(x + t *
  // ldx, w + r * ldw) over d values, for t < nx and r < nrows; each row read once, in order
  // (the same sums as attention_scores, in another order).
  void (*matvec_f32)(const float* x, int64_t ldx, int nx, const float* w, int64_t ldw,
                     int64_t nrows, int64_t d, float* y, int64_t ldy);
  void (*matvec_f16)(const float* x, int64_t ldx, int nx, const uint16_t* w, int64_t ldw,
                     int64_t nrows, int64_t d, float* y, int64_t ldy);
  void (*matvec_bf16)(const float* x, int64_t ldx, int nx, const Bf16* w, int64_t ldw,
                      int64_t nrows, int64_t d, float* y, int64_t ldy);
  // Quantized KV cache rows to f32: nblocks blocks of 32 values (Q8_0: 34 bytes, Q4_0: 18, in
  // ggml's layout) into out[0, 32 * nblocks), each value d * q in one rounding (exact on
  // every ISA).
  void (*dequantize_q8_0)(const uint8_t* blocks, int64_t nblocks, float* out);
  void (*dequantize_q4_0)(const uint8_t* blocks, int64_t nblocks, float* out);
  // In place: x = tanh(x / cap) * cap.
  void (*softcap_f32)(float* x, int64_t n, float cap);
  // sum of x[i]^2 (RMSNorm's mean square; the reference accumulates in double).
  double (*sum_squares_f32)(const float* x, int64_t n);
  // 16-bit float rows (unaligned bytes) to f32.
  void (*bf16_to_f32)(const uint8_t* src, int64_t n, float* dst);
  void (*f16_to_f32)(const uint8_t* src, int64_t n, float* dst);
  // f32 to IEEE half, rounding to nearest even (half::F32ToF16's bits; NaN stays a NaN): the
  // f16 KV cache's writes.
  void (*f32_to_f16)(const float* src, int64_t n, uint16_t* dst);
  // Float GEMM micro-kernel over packed operands (prefill of float weights): a tile of
  // gemm_f32_mr tokens packed k-major (xp[i * mr + t], PackGemmTokens) times a panel of
  // gemm_f32_nr weight rows packed k-major (wp[i * nr + j], PackGemmPanel), both 64-byte
  // aligned: y[t * ldy + j] = sum over i < k of xp[i * mr + t] * wp[i * nr + j] for t < ntok
  // (<= mr) and j < ncols (<= nr). Each sum is one fused multiply-add after another in i order,
  // so every ISA gives the reference's bits whatever its tile shape. With `accumulate` each sum
  // starts from y[t * ldy + j] instead of 0: calls over consecutive ranges of k (k blocking)
  // give the bits of one call over all of k.
  int gemm_f32_mr;
  int gemm_f32_nr;
  void (*gemm_f32_packed)(const float* xp, const float* wp, int64_t k, int ntok, int ncols,
                          float* y, int64_t ldy, bool accumulate);
  // gemm_f32_packed with the weight panel held as 16-bit floats, wp[i * nr + j] IEEE half
  // (_f16) or bfloat16 (_bf16), packed by PackGemmPanel16 (the towers' weights, packed once at
  // load: half the bytes of f32 panels, nothing widened per matmul). Every weight widens
  // exactly to f32 in registers, so the bits are gemm_f32_packed's on the widened panel.
  void (*gemm_f16_packed)(const float* xp, const uint16_t* wp, int64_t k, int ntok, int ncols,
                          float* y, int64_t ldy, bool accumulate);
  void (*gemm_bf16_packed)(const float* xp, const uint16_t* wp, int64_t k, int ntok, int ncols,
                           float* y, int64_t ldy, bool accumulate);
  // PackGemmTokens (below) for this ISA: the same values in the same places, faster (the
  // attention of the vision tower packs every query tile's probabilities, [mr, n] -> [n, mr]).
  void (*pack_gemm_tokens)(const float* x, int64_t ldx, int ntok, int64_t k, int mr, float* out);
  // PackGemmPanel likewise (the towers' weights, widened to f32, packed once per matmul).
  void (*pack_gemm_panel)(const float* w, int64_t ldw, int nrows, int64_t k, int nr, float* out);
  // Prefill over x16 weights from activations rounded to bf16 (AMX-BF16; null elsewhere, and
  // the x16 kernels above run instead): see GemmX16TilesFn. Used for runs of at least 16 tokens
  // whose activations were written by bf16_tile_row into QuantizedActivations::bf16.
  GemmX16TilesFn tiles_q4_0x16 = nullptr;
  GemmX16TilesFn tiles_q8_0x16 = nullptr;
  GemmX16TilesFn tiles_q4_kx16 = nullptr;
  GemmX16TilesFn tiles_q6_kx16 = nullptr;
  // One activation row (nblocks blocks of 32 f32) rounded to bf16 (nearest even; subnormals
  // count as zero) into the tile layout: block b's 32 values at dst + 512 b
  // (QuantizedActivations::bf16_row).
  void (*bf16_tile_row)(const float* x, int64_t nblocks, uint16_t* dst) = nullptr;
  // Prefill over BF16 rows (AMX-BF16; null elsewhere): see Bf16RowsTilesFn.
  Bf16RowsTilesFn tiles_bf16 = nullptr;
  // Tokens x [ntok <= 16 rows, 32 nblocks] (row t at x + t * ldx) as three bf16 parts whose sum
  // is each value exactly (hi = bf16(x), mid = bf16(x - hi), lo = x - hi - mid; subnormal
  // parts count as zero, and an infinite x has zero mid and lo), in the B-tile layout
  // TDPBF16PS reads: part p of block b is the 1 KiB tile at dst + (3 b + p) * 512 whose row i
  // holds, in dword t, values 2i and 2i + 1 of token t (zero for t >= ntok).
  void (*bf16_split_tiles)(const float* x, int64_t ldx, int ntok, int64_t nblocks,
                           uint16_t* dst) = nullptr;
};

// Packing for gemm_f32_packed. Tokens: out[i * mr + t] = x[t * ldx + i] for i < k, t < ntok;
// zero for ntok <= t < mr. Panel: out[i * nr + j] = w[j * ldw + i] for j < nrows; zero for
// nrows <= j < nr.
void PackGemmTokens(const float* x, int64_t ldx, int ntok, int64_t k, int mr, float* out);
void PackGemmPanel(const float* w, int64_t ldw, int nrows, int64_t k, int nr, float* out);
// PackGemmPanel's layout for 16-bit values, moved as they are (no conversion): out[i * nr + j] =
// w[j * ldw + i] for j < nrows; zero for nrows <= j < nr (load time only: no ISA versions).
void PackGemmPanel16(const uint16_t* w, int64_t ldw, int nrows, int64_t k, int nr, uint16_t* out);

enum class Isa { kReference, kAvx2, kAvx512Vnni, kAvx512Vbmi, kAvx512Amx, kNeonDotprod };

// Whether this CPU can run `isa` (always true for kReference).
bool CpuSupports(Isa isa);
// The table of `isa`; callers check CpuSupports first.
const KernelTable& TableFor(Isa isa);
// The best table for this CPU. The environment variable GEMMA4_ISA (ref, avx2, avx512vnni,
// avx512) can force a lower one for debugging (avx512vnni: VNNI without VBMI or AMX; avx512:
// without AMX).
const KernelTable& BestTable();

const KernelTable& ReferenceTable();
const KernelTable& Avx2Table();
const KernelTable& Avx512VnniTable();
// The VNNI table with the codebook formats' grid lookups in VBMI permutes (no gathers).
const KernelTable& Avx512VbmiTable();
// The VBMI table (VNNI where the CPU lacks VBMI) with AMX prefill kernels.
const KernelTable& Avx512AmxTable();
const KernelTable& NeonDotprodTable();

// Whether decode's weight streams are prefetched into L2 (Intel) rather than non-temporally
// (AMD and others); see simd::PrefetchDecodeStream. From the CPUID vendor, read once.
bool DecodeStreamToL2();

// gelu with tanh approximation (gelu_pytorch_tanh) for one value: the scalar reference of
// gelu_mul_f32.
float GeluTanh(float x);

}  // namespace gemma4::kernels

#endif  // GEMMA4_SRC_KERNELS_KERNELS_H_
