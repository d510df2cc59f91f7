#include "kernels/activations.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace gemma4::kernels {

using quant::kBlock;

void QuantizeActivationBlocks(const float* x, int64_t nblocks, int8_t* q, float* scale,
                              int32_t* sum, float* offset) {
  for (int64_t b = 0; b < nblocks; ++b, x += kBlock, q += kBlock) {
    float amax = 0;
    for (int i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    int32_t s = 0;
    for (int i = 0; i < kBlock; ++i) {
      q[i] = static_cast<int8_t>(std::nearbyint(x[i] * id));  // ties to even, as SIMD rounds
      s += q[i];
    }
    scale[b] = d;
    sum[b] = s;
    offset[b] = 8.0f * static_cast<float>(s) * d;
  }
}

void QuantizedActivations::Resize(int64_t new_rows, int64_t new_cols) {
  rows = new_rows;
  cols = new_cols;
  interleave_group = 0;
  has_bf16 = false;
  const int64_t nb = rows * (cols / kBlock);
  if (static_cast<int64_t>(q.size()) < rows * cols) q.resize(rows * cols);
  if (static_cast<int64_t>(scale.size()) < nb) {
    scale.resize(nb);
    sum.resize(nb);
    offset.resize(nb);
  }
}

void QuantizedActivations::FillSums16() {
  if (static_cast<int64_t>(sum16.size()) < rows * (cols / 16)) sum16.resize(rows * (cols / 16));
  for (int64_t i = 0; i < rows * (cols / 16); ++i) {
    int32_t s = 0;
    for (int j = 0; j < 16; ++j) s += q[i * 16 + j];
    sum16[i] = static_cast<int16_t>(s);
  }
}

void QuantizedActivations::ResizeInterleaved(int group) {
  interleave_group = group == 1 || (group == 0 && rows == 1) ? 1 : 8;
  const int64_t g = interleave_group;
  const int64_t slots = (rows + g - 1) / g * g * (cols / kBlock);
  if (static_cast<int64_t>(scale8.size()) < slots) {
    q8.resize(slots * kBlock);
    scale8.resize(slots);
    neg_offset8.resize(slots);
  }
}

void QuantizedActivations::ResizeBf16() {
  has_bf16 = true;
  const int64_t values = (rows + 15) / 16 * 16 * cols;
  if (static_cast<int64_t>(bf16.size()) < values) bf16.resize(values);
}

void QuantizedActivations::InterleaveToken(int64_t t) {
  InterleaveRow(t, q_row(t), scale_row(t), sum_row(t));
}

void QuantizedActivations::InterleaveRow(int64_t t, const int8_t* row_q, const float* row_scale,
                                         const int32_t* row_sum) {
  const int64_t nb = cols / kBlock;
  // Token t's block b sits at slot Slot(t, 0) + G b: one block of the group's G tokens apart.
  const int64_t first = Slot(t, 0), g = interleave_group;
  int8_t* dst_q = q8.data() + first * kBlock;
  float* dst_scale = scale8.data() + first;
  int32_t* dst_offset = neg_offset8.data() + first;
  for (int64_t b = 0; b < nb; ++b) {
    std::memcpy(dst_q + b * g * kBlock, row_q + b * kBlock, kBlock);
    dst_scale[b * g] = row_scale[b];
    dst_offset[b * g] = -8 * row_sum[b];
  }
}

void QuantizeActivations(const float* x, int64_t rows, int64_t cols, QuantizedActivations* out) {
  out->Resize(rows, cols);
  const int64_t nb = cols / kBlock;
  for (int64_t r = 0; r < rows; ++r) {
    QuantizeActivationBlocks(x + r * cols, nb, out->q.data() + r * cols, out->scale.data() + r * nb,
                             out->sum.data() + r * nb, out->offset.data() + r * nb);
  }
  out->FillSums16();
  out->ResizeInterleaved();
  for (int64_t r = 0; r < rows; ++r) out->InterleaveToken(r);
}

}  // namespace gemma4::kernels
