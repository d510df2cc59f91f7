// Typed, non-owning views of weight tensors as they lie in a mapped file. Kernels dispatch on
// the element type, so quantized block formats slot in beside the float types.
#ifndef GEMMA4_SRC_BASE_TENSOR_H_
#define GEMMA4_SRC_BASE_TENSOR_H_

#include <cstdint>
#include <string>
#include <vector>

namespace gemma4 {

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  // Present in safetensors files but not usable as weights (yet): recognised so a file that
  // holds them still opens, and a model that needs one fails with a clear message.
  kF64,
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kBool,
  kF8E4M3,
  kF8E5M2,
  // llama.cpp block-quantized formats (exact ggml layouts, see src/quant/quant.h): a row is a
  // sequence of blocks, each holding a scale and BlockElements(t) quantized values.
  kQ8_0,
  kQ4_0,
  kQ4_K,
  kQ6_K,
  // Q4_0 repacked at load time for the integer kernels (never in files): per group of four
  // blocks, 4 f16 scales then 64 bytes whose low nibbles are the 64 values of blocks 0-1 and
  // high nibbles those of blocks 2-3, in order; a row's last nblocks % 4 blocks stay plain Q4_0.
  kQ4_0R,
  // Q8_0 repacked likewise: per group of four blocks, 4 f16 scales then the 128 values + 128
  // as unsigned bytes; a row's last nblocks % 4 blocks stay plain Q8_0.
  kQ8_0R,
  // Q4_0 interleaved across groups of 16 rows at load time, for the AVX-512 GEMM: per group and
  // block, the 16 rows' f16 scales, then 256 bytes in which each 64-byte run holds four
  // consecutive values of all 16 rows (row-major, 4 bytes a row) for two 4-value chunks, one
  // in the low and one in the high nibbles. One vpdpbusd then serves 16 rows, and the int32
  // sums of a whole block are scaled once. Rows must be a multiple of 16.
  kQ4_0x16,
  // Q8_0 interleaved likewise: per group and block, 16 f16 scales, then 512 bytes: for each
  // 4-value chunk, 16 rows x 4 values + 128 as unsigned bytes.
  kQ8_0x16,
  // Q4_K interleaved across groups of 16 rows (AVX2 / AVX-512 GEMM): per group and 256-value
  // block, 2304 bytes (16 x 144): the 16 rows' f16 d and dmin, their 6-bit scales and mins
  // regrouped by sub-block, then per 32-value sub-block 256 bytes laid out as Q4_0x16's data
  // (see kernels::pack::RepackGroupQ4_Kx16). Rows must be a multiple of 16.
  kQ4_Kx16,
  // Q6_K interleaved likewise: per group and 256-value block, 3360 bytes (16 x 210): the 16
  // rows' f16 d, their 16 int8 scales regrouped by sub-block, then per 32-value sub-block the
  // low nibbles laid out as Q4_0x16's data and two 64-byte areas of top bits (see
  // kernels::pack::RepackGroupQ6_Kx16). Rows must be a multiple of 16.
  kQ6_Kx16,
  // Q5_0 as llama.cpp writes it ({ f16 d; uint8 qh[4]; uint8 qs[16]; }, x = d * (q - 16) with
  // q's fifth bit in qh): its quantizer's fallback from Q4_K for rows that are not a multiple of
  // 256 (26B-A4B's down projections). Read from files only, and converted to Q5_1 at load time
  // (quant::ConvertRowQ5_0ToQ5_1: the same d and bits with m = -16 d, so the same values in 24
  // bytes a block; Q8_0, 34 bytes, would add half again to those matrices).
  kQ5_0,
  // Q5_K as llama.cpp writes it ({ f16 d; f16 dmin; uint8 scales[12]; uint8 qh[32]; uint8
  // qs[128]; }, 256 values in 8 sub-blocks of 32, x = d * sc * q - dmin * m with q in [0, 31]:
  // Q4_K's scales and nibbles plus a fifth bit, bit j of qh[l] for element 32 j + l). Its Q5_K_M,
  // Q5_K_S, Q4_K_S, Q3_K_M and IQ4_XS mixes hold it. Computed on as stored (row dots) or as
  // kQ5_Kx16 where the ISA has 16-row kernels.
  kQ5_K,
  // Q5_K interleaved across groups of 16 rows like Q4_Kx16: per group and 256-value block, 2816
  // bytes (16 x 176): Q4_Kx16's 256-byte head (d, dmin, scales and mins), then per 32-value
  // sub-block 320 bytes: Q4_0x16's nibble layout and 64 bytes of fifth bits (see
  // kernels::pack::RepackGroupQ5_Kx16). Rows must be a multiple of 16.
  kQ5_Kx16,
  // Q5_1 as llama.cpp writes it ({ f16 d; f16 m; uint8 qh[4]; uint8 qs[16]; }, x = d * q + m
  // with q in [0, 31], the nibbles as Q4_0's and the fifth bit of element j bit j of qh): its
  // quantizer's fallback from Q5_K for rows that are not a multiple of 256 (26B-A4B's down
  // projections in its Q5_K_M and Q5_K_S; Q4_K_S and IQ4_XS hold a few). Computed on as stored
  // (row dots: d * sum(q a) + m * sum(a) per block) or as kQ5_1x16 where the ISA has 16-row
  // kernels.
  kQ5_1,
  // IQ4_NL as llama.cpp writes it ({ f16 d; uint8 qs[16]; }, x = d * kIQ4NLValues[nibble], the
  // nibbles as Q4_0's): its quantizer's fallback from IQ4_XS for rows that are not a multiple of
  // 256 (26B-A4B's expert down projections in its IQ mixes, 704 values a row). Computed on as
  // stored (row dots) or as kIQ4_NLx16 where the ISA has 16-row kernels.
  kIQ4_NL,
  // IQ4_XS as llama.cpp writes it ({ f16 d; uint16 scales_h; uint8 scales_l[4]; uint8
  // qs[128]; }, 256 values in 8 sub-blocks of 32: x = d * (ls - 32) * kIQ4NLValues[nibble] with
  // a 6-bit ls per sub-block, the nibbles of sub-block j as Q4_0's at qs + 16 j). Computed on as
  // stored (row dots) or as kIQ4_XSx16 where the ISA has 16-row kernels.
  kIQ4_XS,
  // IQ4_XS interleaved across groups of 16 rows (AVX2 / AVX-512 GEMM): per group and 256-value
  // block, 2176 bytes (16 x 136): the 16 rows' f16 d, their 6-bit sub-block scales regrouped by
  // sub-block (4 low bits in 64 bytes, 2 high bits in 32), then per 32-value sub-block 256
  // bytes of nibbles laid out as Q4_0x16's data (see kernels::pack::RepackGroupIQ4_XSx16).
  // Rows must be a multiple of 16.
  kIQ4_XSx16,
  // Q3_K as llama.cpp writes it ({ uint8 hmask[32]; uint8 qs[64]; uint8 scales[12]; f16 d; },
  // 256 values in 16 sub-blocks of 16, x = d * (s - 32) * q with a 6-bit s per sub-block and q
  // in [-4, 3]: two low bits in qs, and 4 taken off unless the value's hmask bit is set; see
  // quant/quant.h). Its Q3_K_S, Q3_K_M, Q3_K_L and Q2_K mixes hold it. Computed on as stored
  // (row dots) or as kQ3_Kx16 where the ISA has 16-row kernels.
  kQ3_K,
  // Q3_K interleaved across groups of 16 rows (AVX2 / AVX-512 GEMM): per group and 256-value
  // block, 1760 bytes (16 x 110): the 16 rows' f16 d, their 6-bit scales regrouped by
  // sub-block (4 low bits in 128 bytes, 2 high bits in 64), then per 32-value sub-block 192
  // bytes: the values' low two bits in Q6_Kx16's top-bit layout and their hmask bits in
  // Q5_Kx16's fifth-bit layout (see kernels::pack::RepackGroupQ3_Kx16). Rows must be a
  // multiple of 16.
  kQ3_Kx16,
  // Q4_1 as llama.cpp writes it ({ f16 d; f16 m; uint8 qs[16]; }, x = d * q + m with q the
  // nibbles, laid out as Q4_0's): its Q4_1 files and the first layers' ffn_down in a Q4_0 file
  // made with an importance matrix. Computed on as stored (row dots: d * sum(q a) + m * sum(a)
  // per block, Q5_1's without the fifth bit) or as kQ4_1x16 where the ISA has 16-row kernels.
  kQ4_1,
  // Q4_1 interleaved across groups of 16 rows (AVX2 / AVX-512 GEMM): per group and block, 320
  // bytes (16 x 20): the 16 rows' f16 d, their f16 m, then the nibbles laid out as Q4_0x16's
  // data. Rows must be a multiple of 16.
  kQ4_1x16,
  // Q5_1 interleaved likewise: per group and block, 384 bytes (16 x 24): Q4_1x16's d, m and
  // nibbles, then 64 bytes of fifth bits laid out as Q5_Kx16's (byte 4 r + i holds at bit ch the
  // fifth bit of value 4 ch + i of row r). Rows must be a multiple of 16.
  kQ5_1x16,
  // Q2_K as llama.cpp writes it ({ uint8 scales[16]; uint8 qs[64]; f16 d; f16 dmin; }, 84
  // bytes: 256 values in 16 sub-blocks of 16, x = d * (scales[k] & 0xF) * q - dmin *
  // (scales[k] >> 4) in sub-block k with q in [0, 3]; element 128 h + 32 j + l holds bits 2j,
  // 2j + 1 of qs[32 h + l] for l < 32). Its Q2_K and Q2_K_S mixes hold it. Computed on as
  // stored (row dots) or as kQ2_Kx16 where the ISA has 16-row kernels.
  kQ2_K,
  // Q2_K interleaved across groups of 16 rows (AVX2 / AVX-512 GEMM): per group and 256-value
  // block, 1344 bytes (16 x 84): the 16 rows' f16 d and dmin, their scale bytes regrouped by
  // sub-block (256 bytes), then per 32-value sub-block 128 bytes of 2-bit values, four to a
  // byte, a 4-value chunk of the 16 rows per 64-byte area and bit pair (see
  // kernels::pack::RepackGroupQ2_Kx16). Rows must be a multiple of 16.
  kQ2_Kx16,
  // llama.cpp's codebook ("IQ") formats, 256 values a block in 8 sub-blocks of 32, each weight
  // a magnitude from a fixed grid (quant/iq_grids.h; 8 or 4 consecutive weights share a grid
  // entry) times a sign, scaled by the f16 d and an odd sub-block multiplier (2 s + 1, s 4 bits):
  //   IQ2_XXS { f16 d; uint16 qs[32]; } (66 bytes): per sub-block 8 bytes, four 8-bit
  //     kIQ2XXSGrid indices, then a u32 of four 7-bit sign indices (kIQSignBits) and s in bits
  //     28-31; x = d (2 s + 1) / 8 * grid * sign.
  //   IQ2_XS { f16 d; uint16 qs[32]; uint8 scales[8]; } (74 bytes): per 8 weights a u16 of a
  //     9-bit kIQ2XSGrid index and a 7-bit sign index; one 4-bit s per 16 weights; x as IQ2_XXS.
  //   IQ2_S { f16 d; uint8 qs[32]; uint8 signs[32]; uint8 qh[8]; uint8 scales[8]; } (82 bytes):
  //     10-bit kIQ2SGrid indices (8 low bits in qs, 2 high in qh), 8 explicit sign bits per 8
  //     weights; one 4-bit s per 16 weights; x as IQ2_XXS.
  //   IQ3_XXS { f16 d; uint8 qs[64]; uint8 scales_and_signs[32]; } (98 bytes): 8-bit
  //     kIQ3XXSGrid indices per 4 weights; per sub-block a u32 of four 7-bit sign indices and s
  //     in bits 28-31; x = d (2 s + 1) / 4 * grid * sign.
  //   IQ3_S { f16 d; uint8 qs[64]; uint8 qh[8]; uint8 signs[32]; uint8 scales[4]; } (110
  //     bytes): 9-bit kIQ3SGrid indices per 4 weights, explicit signs; x = d (2 s + 1) * grid *
  //     sign.
  // Their IQ2_XXS / IQ2_XS / IQ2_S / IQ2_M / IQ3_XXS / IQ3_XS / IQ3_S / IQ3_M mixes hold them
  // (see quant/quant.h for the exact bits). Computed on as stored (row dots).
  kIQ2_XXS,
  kIQ2_XS,
  kIQ2_S,
  kIQ3_XXS,
  kIQ3_S,
  // llama.cpp's 1-bit codebook formats (its IQ1_S / IQ1_M mixes, unsloth's UD-IQ1_S / UD-IQ1_M),
  // 256 values a block in 8 sub-blocks of 32, each four groups of 8 weights sharing one 11-bit
  // index into quant::kIQ1SGrid (8 values g in {-1, 0, +1}), shifted by a delta of +-1/8 and
  // scaled: x = d (2 s + 1) (g + delta), s 3 bits.
  //   IQ1_S { f16 d; uint8 qs[32]; uint16 qh[8]; } (50 bytes): group l of sub-block ib has
  //     index qs[4 ib + l] | ((qh[ib] >> 3 l) & 7) << 8; s = (qh[ib] >> 12) & 7 and delta =
  //     bit 15 of qh[ib] ? -1/8 : +1/8, one each per 32 values.
  //   IQ1_M { uint8 qs[32]; uint8 qh[16]; uint16 scales[4]; } (56 bytes): group l's index
  //     qs[4 ib + l] | (qh[2 ib + l / 2] >> 4 (l % 2) & 7) << 8, its delta's sign bit 3 of that
  //     nibble (one delta per 8 values); a 3-bit s per 16 values (scales[ib / 2] bits 6 (ib % 2)
  //     + 3 h, h the half), and the f16 d spread over the top nibbles of scales[0..3].
  // As 8 (g + delta) = 8 g +- 1 is an integer in [-9, 9], both compute as int8 codebook values
  // with unit 1/8 (quant::UnpackCodebookBlock). Computed on as stored (row dots; for prefill
  // the AVX-512 and AVX2 16-row codebook panels).
  kIQ1_S,
  kIQ1_M,
  // MXFP4 as llama.cpp writes it ({ uint8 e; uint8 qs[16]; }, x = 2^(e - 128) *
  // kMXFP4Values[nibble], the nibbles as Q4_0's): the OCP microscaling 4-bit float, its
  // MXFP4_MOE mix's expert matrices (Q8_0 elsewhere). Computed on as stored (row dots) or as
  // kMXFP4x16 where the ISA has 16-row kernels.
  kMXFP4,
  // MXFP4 interleaved across groups of 16 rows (AVX2 / AVX-512 GEMM): per group and block, 272
  // bytes (16 x 17): the 16 rows' E8M0 scale bytes, then 256 bytes of nibbles laid out as
  // Q4_0x16's data (see kernels::pack::RepackGroupMXFP4x16). Rows must be a multiple of 16.
  kMXFP4x16,
  // IQ4_NL interleaved across groups of 16 rows (AVX2 / AVX-512 GEMM): per group and block, 288
  // bytes (16 x 18), laid out as Q4_0x16's (the 16 rows' f16 d, then 256 bytes of nibbles; see
  // kernels::pack::RepackGroupQ4_0x16), each nibble an index into kIQ4NLValues instead of a
  // value + 8. Rows must be a multiple of 16.
  kIQ4_NLx16,
};

const char* DTypeName(DType t);
// Bytes per element of an unblocked type (1 for block types: use RowBytes).
size_t DTypeSize(DType t);
// Elements per block (1 for unblocked types) and bytes per block.
int64_t BlockElements(DType t);
size_t BlockBytes(DType t);
bool IsBlockType(DType t);
// The load-time layouts that interleave 16 rows (kQ4_0x16, kQ4_1x16, kQ5_1x16, kQ8_0x16,
// kQ2_Kx16, kQ3_Kx16, kQ4_Kx16, kQ5_Kx16, kQ6_Kx16, kIQ4_XSx16, kIQ4_NLx16, kMXFP4x16).
bool IsInterleavedX16(DType t);
// llama.cpp's grid formats (kIQ2_XXS, kIQ2_XS, kIQ2_S, kIQ3_XXS, kIQ3_S).
bool IsCodebookType(DType t);
// llama.cpp's 1-bit grid formats (kIQ1_S, kIQ1_M): their own row dots; the codebook tiles
// (KernelTable::dot_codebook_tile) and 16-row panels (gemm_codebook_x16) take them too.
bool IsOneBitCodebookType(DType t);
// Bytes of one row of `cols` elements; cols must be a multiple of BlockElements(t).
uint64_t RowBytes(DType t, int64_t cols);
// Whether matmul/gather kernels accept this type.
bool IsComputeType(DType t);
// File types a model's matrices are converted from when it loads, exactly (no kernels of their
// own): kQ5_0 to Q5_1 (ConvertedType).
bool ConvertedAtLoad(DType t);
DType ConvertedType(DType t);

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside a mapping; not necessarily aligned
  uint64_t nbytes = 0;
  std::string file;  // for error messages
  uint64_t file_offset = 0;
  int fd = -1;  // the file's descriptor while the model lives (for pread), or -1

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  // Treats the tensor as a matrix [rows, cols] with cols = last dim.
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }
  std::string ShapeString() const;
  // Rows [first, first + count) of the matrix view, as a 2-D tensor.
  TensorView RowSlice(int64_t first, int64_t count) const;
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_BASE_TENSOR_H_
