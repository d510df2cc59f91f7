// Load-time repacking of ggml blocks (quant/) into the layouts the kernels read, and reading
// them back: Q4_0R / Q8_0R (four blocks' scales, then their values, per 64-byte load) and the
// 16-row interleaved Q4_0x16, Q4_1x16, Q8_0x16, Q2_Kx16, Q3_Kx16, Q4_Kx16, Q5_Kx16, Q6_Kx16,
// IQ4_XSx16 (see DType in base/tensor.h).
// PackedLayout picks the layout per matrix from the kernel table's entries; the model loader
// (model/model.cc) repacks into it.
#ifndef GEMMA4_SRC_KERNELS_PACK_PACK_H_
#define GEMMA4_SRC_KERNELS_PACK_PACK_H_

#include <cstdint>

#include "base/tensor.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

namespace gemma4::kernels::pack {

// The layout a weight matrix stored as `stored` is repacked into at load for `table`'s
// kernels, or `stored` itself when it stays in its file format. Q4_0 always repacks (Q4_0R,
// four blocks per 64-byte load); Q8_0 where the table has a repacked Q8_0 kernel. Where the
// table has the 16-row kernels (AVX2, AVX-512 VNNI) and `rows_per_matrix` (rows of one matrix;
// of one expert for stacked experts) is a multiple of 16, Q4_0 / Q8_0 / Q2_K / Q4_K / Q5_K /
// Q6_K / IQ4_XS interleave 16 rows (the 256-value types only then; else they stay plain), so
// one weight load serves 16 rows for a whole tile of tokens.
DType PackedLayout(const KernelTable& table, DType stored, int64_t rows_per_matrix);

// Any block or float type to f32, the repacked row types Q4_0R and Q8_0R included (the 16-row
// types: Dequantize*x16Row); `count` in elements, block-aligned.
void DequantizeRow(DType type, const uint8_t* row, int64_t count, float* out);
// Unsigned nibble (0..15) of element e (0..127) of a Q4_0R group's 64 data bytes.
int Q4_0RNibble(const uint8_t* data, int e);

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
// Row `row`'s scale in one block of a 16-row layout that starts with the 16 rows' f16 d
// (Q4_0x16, Q8_0x16, IQ4_NLx16), and in one MXFP4x16 block (its E8M0 byte, as
// quant::E8M0ToF32Half).
float X16F16Scale(const uint8_t* block, int row);
float MXFP4x16Scale(const uint8_t* block, int row);
// Signed value (nibble - 8) of element j of row `row` in one Q4_0x16 block (288 bytes).
int Q4_0x16Value(const uint8_t* block, int row, int j);
// Row `row` (0..15) of a Q4_0x16 group as f32.
void DequantizeQ4_0x16Row(const uint8_t* group, int64_t nblocks, int row, float* out);
// IQ4_NLx16 (see DType::kIQ4_NLx16): 16 rows of IQ4_NL go through RepackGroupQ4_0x16 as they
// are (same block shape; the nibbles are level indices). The level (quant::kIQ4NLValues) of
// element j of row `row` in one such block (288 bytes).
int IQ4_NLx16Value(const uint8_t* block, int row, int j);
// Row `row` (0..15) of an IQ4_NLx16 group as f32.
void DequantizeIQ4_NLx16Row(const uint8_t* group, int64_t nblocks, int row, float* out);
// MXFP4x16 (see DType::kMXFP4x16): per block the 16 rows' E8M0 bytes, then their nibbles at
// kMXFP4x16Data in Q4_0x16's data layout; 16 * 17 * nblocks bytes.
constexpr int kMXFP4x16Data = 16;
void RepackGroupMXFP4x16(const uint8_t* src, uint64_t src_row_bytes, int64_t nblocks, uint8_t* dst);
// The level (quant::kMXFP4Values) of element j of row `row` in one MXFP4x16 block (272 bytes).
int MXFP4x16Value(const uint8_t* block, int row, int j);
// Row `row` (0..15) of an MXFP4x16 group as f32.
void DequantizeMXFP4x16Row(const uint8_t* group, int64_t nblocks, int row, float* out);

// Q4_Kx16 (see DType::kQ4_Kx16): 16 rows of Q4_K interleaved per 256-value block, 2304 bytes
// (16 x 144). Byte offsets inside one such block:
constexpr int kQ4_Kx16BlockBytes = 16 * quant::kQ4_KBlockBytes;
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

// Q5_Kx16 (see DType::kQ5_Kx16): 16 rows of Q5_K interleaved per 256-value block, 2816 bytes
// (16 x 176): Q4_Kx16's first 256 bytes (d, dmin, scales and mins at the same offsets), then 8
// sub-blocks of 320 bytes: 256 bytes of low nibbles in the Q4_0x16 layout, then 64 bytes of
// fifth bits: byte 4 r + i holds at bit ch the fifth bit of value 4 ch + i of row r (chunk ch,
// the vector Q4_0x16's loader makes ch-th), so one shift and mask per chunk places them.
constexpr int kQ5_Kx16BlockBytes = 16 * quant::kQ5_KBlockBytes;
constexpr int kQ5_Kx16Data = 256;
constexpr int kQ5_Kx16SubBlockBytes = 320;
constexpr int kQ5_Kx16FifthBits = 256;  // within a sub-block
// 16 rows of plain Q5_K -> one Q5_Kx16 group, nsuper blocks of 256 values.
void RepackGroupQ5_Kx16(const uint8_t* src, uint64_t src_row_bytes, int64_t nsuper, uint8_t* dst);
// Value (0..31) of element e (0..255) of row `row` in one Q5_Kx16 block; its scale and min are
// Q4_Kx16ScaleMin's.
int Q5_Kx16Value(const uint8_t* block, int row, int e);
// Row `row` (0..15) of a Q5_Kx16 group as f32.
void DequantizeQ5_Kx16Row(const uint8_t* group, int64_t nsuper, int row, float* out);

// IQ4_XSx16 (see DType::kIQ4_XSx16): 16 rows of IQ4_XS interleaved per 256-value block, 2176
// bytes (16 x 136). The 6-bit scale of sub-block j of row r (entry e = 16 j + r) keeps its low 4
// bits in byte e % 64 of the low area (low nibble for e < 64, high nibble otherwise) and its top
// 2 bits at bits 2 (e / 32) of byte e % 32 of the high area.
constexpr int kIQ4_XSx16BlockBytes = 16 * quant::kIQ4_XSBlockBytes;
constexpr int kIQ4_XSx16ScaleLow = 32;  // after the 16 f16 d
constexpr int kIQ4_XSx16ScaleHigh = 96;
constexpr int kIQ4_XSx16Data = 128;  // 8 sub-blocks x 256 bytes (Q4_0x16 data layout)
// 16 rows of plain IQ4_XS -> one IQ4_XSx16 group, nsuper blocks of 256 values.
void RepackGroupIQ4_XSx16(const uint8_t* src, uint64_t src_row_bytes, int64_t nsuper, uint8_t* dst);
// The 6-bit scale (ls, the weight's factor is d (ls - 32)) of sub-block j of row `row`.
int IQ4_XSx16Scale(const uint8_t* block, int row, int j);
// Nibble (0..15, the level's index) of element e (0..255) of row `row` in one IQ4_XSx16 block.
int IQ4_XSx16Nibble(const uint8_t* block, int row, int e);
// Row `row` (0..15) of an IQ4_XSx16 group as f32.
void DequantizeIQ4_XSx16Row(const uint8_t* group, int64_t nsuper, int row, float* out);

// Q2_Kx16 (see DType::kQ2_Kx16): 16 rows of Q2_K interleaved per 256-value block, 1344 bytes
// (16 x 84). Byte offsets inside one such block: 16 f16 d at 0, 16 f16 dmin at 32, then the
// file's scale bytes (scale in the low nibble, min in the high one) of sub-block k (16 values,
// 0..15) of row r at kQ2_Kx16Scales + 16 k + r, then 8 sub-blocks j of 32 values (Q2_K
// sub-blocks 2 j and 2 j + 1), 128 bytes each: two 64-byte areas p = 0, 1 whose byte 4 r + i
// holds at bits 2 s .. 2 s + 1 value 4 (4 p + s) + i of row r (s = 0..3). Chunk ch = 4 p + s
// (values 4 ch .. 4 ch + 3) of the 16 rows is then one shift and mask of area p: a dword per
// row, as vpdpbusd takes it; area 0 holds the values of scale 2 j, area 1 those of 2 j + 1.
constexpr int kQ2_Kx16BlockBytes = 16 * quant::kQ2_KBlockBytes;
constexpr int kQ2_Kx16Dmin = 32;
constexpr int kQ2_Kx16Scales = 64;
constexpr int kQ2_Kx16Data = 320;
constexpr int kQ2_Kx16SubBlockBytes = 128;
// 16 rows of plain Q2_K (row r at src + r * src_row_bytes) -> one Q2_Kx16 group, nsuper blocks
// of 256 values.
void RepackGroupQ2_Kx16(const uint8_t* src, uint64_t src_row_bytes, int64_t nsuper, uint8_t* dst);
// The 4-bit scale and min of sub-block k (0..15, 16 values each) of row `row` in one Q2_Kx16
// block.
void Q2_Kx16ScaleMin(const uint8_t* block, int row, int k, uint8_t* scale, uint8_t* min);
// Value (0..3) of element e (0..255) of row `row` in one Q2_Kx16 block.
int Q2_Kx16Value(const uint8_t* block, int row, int e);
// Row `row` (0..15) of a Q2_Kx16 group as f32.
void DequantizeQ2_Kx16Row(const uint8_t* group, int64_t nsuper, int row, float* out);

// Q6_Kx16 (see DType::kQ6_Kx16): 16 rows of Q6_K interleaved per 256-value block, 3360 bytes
// (16 x 210). Byte offsets inside one such block:
constexpr int kQ6_Kx16BlockBytes = 16 * quant::kQ6_KBlockBytes;
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

// Q4_1x16 (see DType::kQ4_1x16): per block 16 f16 d, 16 f16 m, then 256 bytes of nibbles in the
// Q4_0x16 data layout.
constexpr int kQ4_1x16BlockBytes = 16 * quant::kQ4_1BlockBytes;
constexpr int kQ4_1x16Min = 32;
constexpr int kQ4_1x16Data = 64;
// 16 rows of plain Q4_1 -> one Q4_1x16 group, nblocks blocks of 32 values.
void RepackGroupQ4_1x16(const uint8_t* src, uint64_t src_row_bytes, int64_t nblocks, uint8_t* dst);
// Nibble (0..15) of element j (0..31) of row `row` in one Q4_1x16 block.
int Q4_1x16Value(const uint8_t* block, int row, int j);
// Row `row` (0..15) of a Q4_1x16 group as f32.
void DequantizeQ4_1x16Row(const uint8_t* group, int64_t nblocks, int row, float* out);
// Q5_1x16 (see DType::kQ5_1x16): Q4_1x16's block, then the fifth bits at kQ5_1x16FifthBits
// (Q5_Kx16's layout: the 320 bytes from kQ4_1x16Data are one Q5_Kx16 sub-block's).
constexpr int kQ5_1x16BlockBytes = 16 * quant::kQ5_1BlockBytes;
constexpr int kQ5_1x16FifthBits = kQ4_1x16Data + 256;
// 16 rows of plain Q5_1 -> one Q5_1x16 group, nblocks blocks of 32 values.
void RepackGroupQ5_1x16(const uint8_t* src, uint64_t src_row_bytes, int64_t nblocks, uint8_t* dst);
// Value (0..31) of element j (0..31) of row `row` in one Q5_1x16 block.
int Q5_1x16Value(const uint8_t* block, int row, int j);
// Row `row` (0..15) of a Q5_1x16 group as f32.
void DequantizeQ5_1x16Row(const uint8_t* group, int64_t nblocks, int row, float* out);

// Q3_Kx16 (see DType::kQ3_Kx16): 16 rows of Q3_K interleaved per 256-value block, 1760 bytes
// (16 x 110). The 6-bit scale k (0..15) of row r (entry e = 16 k + r) keeps its low 4 bits in
// byte e % 128 of the low area (low nibble for e < 128, high nibble otherwise) and its top 2
// bits at bits 2 (e / 64) of byte e % 64 of the high area, so sub-block j's two scales (entries
// 32 j .. 32 j + 31) are one 32-byte load from each. Sub-block j's 192 data bytes: two 64-byte
// areas of low bit pairs (area p, byte 4 r + i: value 4 (4 p + s) + i of row r at bits 2 s ..
// 2 s + 1, as Q6_Kx16's top bits), then 64 bytes of hmask bits (byte 4 r + i: value 4 ch + i at
// bit ch, as Q5_Kx16's fifth bits). A value is stored unsigned: low bits + 4 * hmask bit, in
// [0, 7], the weight d * (scale - 32) * (value - 4).
constexpr int kQ3_Kx16BlockBytes = 16 * quant::kQ3_KBlockBytes;
constexpr int kQ3_Kx16ScaleLow = 32;  // after the 16 f16 d
constexpr int kQ3_Kx16ScaleHigh = 160;
constexpr int kQ3_Kx16Data = 224;           // 8 sub-blocks x 192 bytes
constexpr int kQ3_Kx16SubBlockBytes = 192;  // 128 (low bit pairs) + 64 (hmask bits)
constexpr int kQ3_Kx16HighBits = 128;       // within a sub-block
// 16 rows of plain Q3_K -> one Q3_Kx16 group, nsuper blocks of 256 values.
void RepackGroupQ3_Kx16(const uint8_t* src, uint64_t src_row_bytes, int64_t nsuper, uint8_t* dst);
// The 6-bit scale (0..63, the weight's factor is d (scale - 32)) k of row `row`.
int Q3_Kx16Scale(const uint8_t* block, int row, int k);
// Unsigned value (0..7, the weight's is value - 4) of element e (0..255) of row `row`.
int Q3_Kx16Value(const uint8_t* block, int row, int e);
// Row `row` (0..15) of a Q3_Kx16 group as f32.
void DequantizeQ3_Kx16Row(const uint8_t* group, int64_t nsuper, int row, float* out);

}  // namespace gemma4::kernels::pack

#endif  // GEMMA4_SRC_KERNELS_PACK_PACK_H_
