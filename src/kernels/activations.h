// Activations quantized for the integer kernels (the other operand of every dot product over
// block-quantized weights).
#ifndef GEMMA4_SRC_KERNELS_ACTIVATIONS_H_
#define GEMMA4_SRC_KERNELS_ACTIVATIONS_H_

#include <cstdint>
#include <vector>

#include "quant/quant.h"
#include "runtime/huge_pages.h"

namespace gemma4::kernels {

// Activations quantized for the integer kernels: per block of 32, an f32 scale, 32 int8 values
// and their sum (used to fold Q4_0's -8 offset into one multiply).
struct QuantizedActivations {
  int64_t rows = 0;
  int64_t cols = 0;         // multiple of 32
  PageVector<int8_t> q;     // [rows, cols]
  PageVector<float> scale;  // [rows, cols / 32]
  PageVector<int32_t> sum;  // [rows, cols / 32]
  // For Q4_0 weights, whose values are nibble - 8: 8 * sum * scale per block, so a block's
  // contribution is d_w * (scale * dot(nibbles, q) - offset).
  PageVector<float> offset;  // [rows, cols / 32]
  // Sums of each 16 values (|sum| <= 2032), for Q6_K weights (values stored + 32, one scale
  // per 16 values): filled by FillSums16, only for matmuls over Q6_K, Q3_K, Q2_K and (the
  // panels' per-16 offsets) IQ2_XS and IQ2_S.
  PageVector<int16_t> sum16;  // [rows, cols / 16]
  // Token-interleaved copy for the AVX-512 16-row GEMMs over Q4_0x16 / Q8_0x16 weights, filled
  // by InterleaveToken: tokens in groups of G = interleave_group, and per group and block the G
  // tokens' 32 values side by side ([ceil(rows / G), cols / 32, G, 32]), their scales and -8 *
  // sum ([ceil(rows / G), cols / 32, G]). The kernel then addresses 8 tokens' data from one
  // pointer with constant offsets (eight pointers per array had spilled), and starts each
  // block's int32 sums at the offset instead of subtracting it. G is 8, or 1 for a single row
  // (decode): its blocks then lie contiguous, 32 bytes apart instead of 256, so a wide matrix's
  // pass touches 4x fewer lines of activations, which stay in L1 beside the weight stream.
  int64_t interleave_group = 8;
  PageVector<int8_t> q8;            // token t, block b: 32 values at 32 * Slot(t, b)
  PageVector<float> scale8;         // scale8[Slot(t, b)]
  PageVector<int32_t> neg_offset8;  // -8 * sum, at Slot(t, b)
  // The rows rounded to bf16 instead, for the AMX kernels (KernelTable::tiles_q4_0x16 ...),
  // filled by KernelTable::bf16_tile_row after ResizeBf16Tiles: per tile of 16 tokens and
  // block of 32 values, the 16 tokens' 32 values (one tile of 1 KiB):
  // [ceil(rows / 16), cols / 32, 16, 32]. The last tile's rows past `rows` are never written
  // (the kernels compute them and drop the results).
  bool has_bf16 = false;
  PageVector<uint16_t> bf16;
  uint16_t* bf16_row(int64_t t) {
    return bf16.data() + ((t / 16) * (cols / quant::kBlock) * 16 + t % 16) * quant::kBlock;
  }
  // Sets the shape, growing (never shrinking) the buffers so scratch can be reused. The
  // interleaved copy is dropped (interleave_group 0) until ResizeInterleaved lays it out again,
  // and the bf16 rows (has_bf16 false) until ResizeBf16.
  void Resize(int64_t rows, int64_t cols);
  // Sizes bf16 for rows x cols (after Resize) and sets has_bf16.
  void ResizeBf16();
  const int8_t* q_row(int64_t r) const { return q.data() + r * cols; }
  const float* scale_row(int64_t r) const { return scale.data() + r * (cols / quant::kBlock); }
  const int32_t* sum_row(int64_t r) const { return sum.data() + r * (cols / quant::kBlock); }
  const float* offset_row(int64_t r) const { return offset.data() + r * (cols / quant::kBlock); }
  const int16_t* sum16_row(int64_t r) const { return sum16.data() + r * (cols / 16); }
  int64_t Slot(int64_t t, int64_t b) const {
    const int64_t g = interleave_group;
    return ((t / g) * (cols / quant::kBlock) + b) * g + t % g;
  }
  // Computes sum16 from q (after the rows are quantized).
  void FillSums16();
  // Sizes the interleaved copy for rows x cols (after Resize) and sets interleave_group, then
  // InterleaveToken(t) copies token t's quantized row into it. group: 1 or 8 (any other
  // value: 8); 0 picks 1 for a single row and 8 otherwise. Groups of 1 (each token's blocks
  // contiguous) are for consumers that read one token at a time (decode's experts, one token
  // each): with 8, one token's blocks lie 256 bytes apart and a pass over a weight group touches
  // 8x the activation lines. The slots past the last row of the last group are never written
  // (kernels compute them and drop the results).
  void ResizeInterleaved(int group = 0);
  void InterleaveToken(int64_t t);
  // The same from a row quantized elsewhere (QuantizeActivationBlocks' q, scale and sum of
  // token t), for callers that need only the interleaved copy.
  void InterleaveRow(int64_t t, const int8_t* row_q, const float* row_scale,
                     const int32_t* row_sum);
};

// x: [rows, cols] f32 -> out (round to nearest even, symmetric, scale = max|x| / 127 per
// block; sum16 and the interleaved copy filled too), with the scalar reference below.
void QuantizeActivations(const float* x, int64_t rows, int64_t cols, QuantizedActivations* out);
// One row: nblocks blocks of 32 values into q, scale, sum and offset (see the struct).
void QuantizeActivationBlocks(const float* x, int64_t nblocks, int8_t* q, float* scale,
                              int32_t* sum, float* offset);

}  // namespace gemma4::kernels

#endif  // GEMMA4_SRC_KERNELS_ACTIVATIONS_H_
