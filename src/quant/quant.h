// llama.cpp-compatible block quantization formats (exact ggml byte layouts, so GGUF files move
// both ways) and the activation format the integer matmul kernels consume.
//
//   Q8_0: 32 values, { f16 d; int8 q[32]; }            x = d * q
//   Q4_0: 32 values, { f16 d; uint8 q[16]; }           x = d * (nibble - 8); byte j holds
//         element j in its low nibble and element j + 16 in its high nibble
//   Q4_K: 256 values in 8 sub-blocks of 32 with 6-bit scales and mins (dequantize only)
//   Q6_K: 256 values in 16 sub-blocks of 16 with int8 scales (dequantize only)
#ifndef GEMMA4_SRC_QUANT_QUANT_H_
#define GEMMA4_SRC_QUANT_QUANT_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/tensor.h"

namespace gemma4::quant {

// Constants are plain constexpr (one copy per unit), not inline variables: the ISA units are
// compiled with -fno-weak, which cannot share an inline variable.
constexpr int kQ8_0BlockBytes = 34;
constexpr int kQ4_0BlockBytes = 18;
constexpr int kBlock = 32;

// Row conversions; n must be a multiple of the type's block size.
void QuantizeRowQ8_0(const float* x, int64_t n, uint8_t* out);
void QuantizeRowQ4_0(const float* x, int64_t n, uint8_t* out);
// ggml's reference Q4_K quantizer (quantize_row_q4_K_ref); n a multiple of 256.
void QuantizeRowQ4_K(const float* x, int64_t n, uint8_t* out);
// ggml's reference Q6_K quantizer (quantize_row_q6_K_ref); n a multiple of 256.
void QuantizeRowQ6_K(const float* x, int64_t n, uint8_t* out);
// Any supported type (float or block) to f32; `first` and `count` in elements, block-aligned.
void DequantizeRow(DType type, const uint8_t* row, int64_t count, float* out);
// Quantizes a row of a float matrix into `type` (Q8_0, Q4_0, Q4_K, Q6_K, F16, BF16 or F32).
void QuantizeRow(DType type, const float* x, int64_t n, uint8_t* out);

// Q4_0 -> Q4_0R (see DType::kQ4_0R) for one row of nblocks blocks; same byte count.
void RepackRowQ4_0(const uint8_t* src, int64_t nblocks, uint8_t* dst);

// Q8_0 -> Q8_0R (see DType::kQ8_0R) for one row of nblocks blocks; same byte count.
void RepackRowQ8_0(const uint8_t* src, int64_t nblocks, uint8_t* dst);

// 16 rows of plain Q4_0 (row r at src + r * src_row_bytes) -> one Q4_0x16 group (see
// DType::kQ4_0x16), 16 * 18 * nblocks bytes.
void RepackGroupQ4_0x16(const uint8_t* src, uint64_t src_row_bytes, int64_t nblocks, uint8_t* dst);
// 16 rows of plain Q8_0 -> one Q8_0x16 group (see DType::kQ8_0x16), 16 * 34 * nblocks bytes.
void RepackGroupQ8_0x16(const uint8_t* src, uint64_t src_row_bytes, int64_t nblocks, uint8_t* dst);
// Signed value of element j of row `row` in one Q8_0x16 block (544 bytes).
int Q8_0x16Value(const uint8_t* block, int row, int j);
// Row `row` (0..15) of a Q8_0x16 group as f32.
void DequantizeQ8_0x16Row(const uint8_t* group, int64_t nblocks, int row, float* out);
// Signed value (nibble - 8) of element j of row `row` in one Q4_0x16 block (288 bytes).
int Q4_0x16Value(const uint8_t* block, int row, int j);
// Row `row` (0..15) of a Q4_0x16 group as f32.
void DequantizeQ4_0x16Row(const uint8_t* group, int64_t nblocks, int row, float* out);

// Q4_Kx16 (see DType::kQ4_Kx16): 16 rows of Q4_K interleaved per 256-value block, 2304 bytes
// (16 x 144). Byte offsets inside one such block:
constexpr int kQ4_KBlockBytes = 144;
constexpr int kQ4_Kx16BlockBytes = 16 * kQ4_KBlockBytes;
constexpr int kQ4_Kx16Dmin = 32;      // 16 f16 dmin after the 16 f16 d at 0
constexpr int kQ4_Kx16ScaleLow = 64;  // 64 bytes: low 4 bits of the 128 scales
constexpr int kQ4_Kx16MinLow = 128;   // 64 bytes: low 4 bits of the 128 mins
constexpr int kQ4_Kx16High = 192;     // 64 bytes: high 2 bits of both
constexpr int kQ4_Kx16Data = 256;     // 8 sub-blocks x 256 bytes (Q4_0x16 data layout)
// 16 rows of plain Q4_K (row r at src + r * src_row_bytes) -> one Q4_Kx16 group, nsuper blocks
// of 256 values.
void RepackGroupQ4_Kx16(const uint8_t* src, uint64_t src_row_bytes, int64_t nsuper, uint8_t* dst);
// The 6-bit scale and min of sub-block j (0..7) of row `row` in one Q4_Kx16 block.
void Q4_Kx16ScaleMin(const uint8_t* block, int row, int j, uint8_t* scale, uint8_t* min);
// Nibble (0..15) of element e (0..255) of row `row` in one Q4_Kx16 block.
int Q4_Kx16Value(const uint8_t* block, int row, int e);
// Row `row` (0..15) of a Q4_Kx16 group as f32.
void DequantizeQ4_Kx16Row(const uint8_t* group, int64_t nsuper, int row, float* out);
// Scalar reference: rows 0..15 of a Q4_Kx16 group times activation row `a` (nblocks blocks of
// 32), out[r]; the same sums in the same order as DotQ4_KReference on the plain rows.
void GemmQ4_Kx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          const int32_t* a_sum, int64_t nblocks, float* out);

// Q6_Kx16 (see DType::kQ6_Kx16): 16 rows of Q6_K interleaved per 256-value block, 3360 bytes
// (16 x 210). Byte offsets inside one such block:
constexpr int kQ6_KBlockBytes = 210;
constexpr int kQ6_Kx16BlockBytes = 16 * kQ6_KBlockBytes;
constexpr int kQ6_Kx16Scales = 32;          // int8 scale k (0..15) of row r at 32 + 16 k + r
constexpr int kQ6_Kx16Data = 288;           // 8 sub-blocks x 384 bytes
constexpr int kQ6_Kx16SubBlockBytes = 384;  // 256 (low nibbles) + 128 (top two bits)
// 16 rows of plain Q6_K -> one Q6_Kx16 group, nsuper blocks of 256 values.
void RepackGroupQ6_Kx16(const uint8_t* src, uint64_t src_row_bytes, int64_t nsuper, uint8_t* dst);
// Unsigned 6-bit value (0..63, the weight is d * scale * (value - 32)) of element e (0..255)
// of row `row` in one Q6_Kx16 block.
int Q6_Kx16Value(const uint8_t* block, int row, int e);
// Row `row` (0..15) of a Q6_Kx16 group as f32.
void DequantizeQ6_Kx16Row(const uint8_t* group, int64_t nsuper, int row, float* out);
// Scalar reference: rows 0..15 of a Q6_Kx16 group times activation row `a`; the same sums in
// the same order as DotQ6_KReference on the plain rows.
void GemmQ6_Kx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          int64_t nblocks, float* out);

// Activations quantized for the integer kernels: per block of 32, an f32 scale, 32 int8 values
// and their sum (used to fold Q4_0's -8 offset into one multiply).
struct QuantizedActivations {
  int64_t rows = 0;
  int64_t cols = 0;          // multiple of 32
  std::vector<int8_t> q;     // [rows, cols]
  std::vector<float> scale;  // [rows, cols / 32]
  std::vector<int32_t> sum;  // [rows, cols / 32]
  // For Q4_0 weights, whose values are nibble - 8: 8 * sum * scale per block, so a block's
  // contribution is d_w * (scale * dot(nibbles, q) - offset).
  std::vector<float> offset;  // [rows, cols / 32]
  // Sums of each 16 values (|sum| <= 2032), for Q6_K weights (values stored + 32, one scale
  // per 16 values): filled by FillSums16, only for matmuls over Q6_K.
  std::vector<int16_t> sum16;  // [rows, cols / 16]
  // Sets the shape, growing (never shrinking) the buffers so scratch can be reused.
  void Resize(int64_t rows, int64_t cols);
  const int8_t* q_row(int64_t r) const { return q.data() + r * cols; }
  const float* scale_row(int64_t r) const { return scale.data() + r * (cols / kBlock); }
  const int32_t* sum_row(int64_t r) const { return sum.data() + r * (cols / kBlock); }
  const float* offset_row(int64_t r) const { return offset.data() + r * (cols / kBlock); }
  const int16_t* sum16_row(int64_t r) const { return sum16.data() + r * (cols / 16); }
  // Computes sum16 from q (after the rows are quantized).
  void FillSums16();
};

// x: [rows, cols] f32 -> out (round to nearest even, symmetric, scale = max|x| / 127 per
// block; sum16 filled too), with the scalar reference below.
void QuantizeActivations(const float* x, int64_t rows, int64_t cols, QuantizedActivations* out);
// One row: nblocks blocks of 32 values into q, scale, sum and offset (see the struct).
void QuantizeActivationBlocks(const float* x, int64_t nblocks, int8_t* q, float* scale,
                              int32_t* sum, float* offset);

// Scalar reference dot products of one weight row with one activation row (nblocks blocks).
float DotQ8_0Reference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks);
float DotQ4_0Reference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int32_t* a_sum, int64_t nblocks);
// The eight 6-bit scales and mins of a Q4_K block (its 12 packed bytes).
void Q4_KScales(const uint8_t* packed, uint8_t* scales, uint8_t* mins);
// nblocks: 32-value activation blocks (8 per Q4_K block); a_sum: per-block sums of a.
float DotQ4_KReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int32_t* a_sum, int64_t nblocks);
// The 256 signed values (q - 32, in [-32, 31]) of one Q6_K block, in element order.
void UnpackQ6_K(const uint8_t* block, int8_t* q);
// nblocks: 32-value activation blocks (a multiple of 8; each Q6_K block spans eight).
float DotQ6_KReference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks);
float DotQ8_0RReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                        const int32_t* a_sum, int64_t nblocks);
float DotQ4_0RReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                        const int32_t* a_sum, int64_t nblocks);

}  // namespace gemma4::quant

#endif  // GEMMA4_SRC_QUANT_QUANT_H_
