// Q5_K, llama.cpp's 5-bit K-quant (its Q5_K_M, Q5_K_S, Q4_K_S, Q3_K_M and IQ4_XS mixes hold
// it): read from GGUF files and computed on as stored (plain rows) or interleaved by 16 rows
// (Q5_Kx16). The values are checked against ggml's dequantize_row_q5_K written out here, on
// random blocks and on every Q5_K matrix of tests/fixtures/llama_cpp_gguf/tiny-wide-q5_k_m.gguf
// (llama-quantize de3ff81, Q5_K_M) as the forward pass reads them; the kernels are checked
// against the scalar reference in kernels_test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "formats/gguf.h"
#include "llama_cpp_file_values.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

// ggml's get_scale_min_k4 and dequantize_row_q5_K, as ggml writes them: per 64 values, two
// sub-blocks whose nibbles share 32 bytes of ql, fifth bits from qh under masks u1 and u2 that
// move up two bits every 64 values.
void GgmlScaleMin(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

std::vector<float> GgmlDequantizeQ5_K(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out(nblocks * 256);
  float* y = out.data();
  for (int64_t i = 0; i < nblocks; ++i, blocks += 176) {
    uint16_t d16, m16;
    std::memcpy(&d16, blocks, 2);
    std::memcpy(&m16, blocks + 2, 2);
    const float d = half::F16ToF32(d16), min = half::F16ToF32(m16);
    const uint8_t* scales = blocks + 4;
    const uint8_t* qh = blocks + 16;
    const uint8_t* ql = blocks + 48;
    int is = 0;
    uint8_t sc, m, u1 = 1, u2 = 2;
    for (int j = 0; j < 256; j += 64) {
      GgmlScaleMin(is + 0, scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      GgmlScaleMin(is + 1, scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
  return out;
}

TEST(Q5_KTest, DequantizationIsGgmlFormula) {
  std::mt19937 rng(55);
  constexpr int kBlocks = 40;
  std::vector<uint8_t> q5(176 * kBlocks);
  for (auto& byte : q5) byte = static_cast<uint8_t>(rng());
  for (int b = 0; b < kBlocks; ++b) {  // finite d and dmin (random bytes may spell inf or NaN)
    const uint16_t d = half::F32ToF16(0.001f * static_cast<float>(b + 1));
    const uint16_t dmin = half::F32ToF16(0.0007f * static_cast<float>(b % 5) * (b % 2 ? -1 : 1));
    std::memcpy(q5.data() + 176 * b, &d, 2);
    std::memcpy(q5.data() + 176 * b + 2, &dmin, 2);
  }
  std::memset(q5.data() + 16, 0xFF, 32);        // block 0: every fifth bit set
  std::memset(q5.data() + 176 + 16, 0x00, 32);  // block 1: none
  const std::vector<float> want = GgmlDequantizeQ5_K(q5.data(), kBlocks);
  std::vector<float> got(want.size());
  quant::DequantizeRow(DType::kQ5_K, q5.data(), static_cast<int64_t>(want.size()), got.data());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << i;
}

TEST(Q5_KTest, GgufTypeIsRead) {
  DType t = DType::kF32;
  ASSERT_TRUE(gguf::GgmlTypeToDType(13, &t));
  EXPECT_EQ(t, DType::kQ5_K);
  EXPECT_EQ(BlockElements(DType::kQ5_K), 256);
  EXPECT_EQ(BlockBytes(DType::kQ5_K), 176u);
  EXPECT_EQ(RowBytes(DType::kQ5_Kx16, 512), 352u);  // interleaving keeps the bytes
  EXPECT_TRUE(IsComputeType(DType::kQ5_K));
}

// ggml's dequantize_row_q6_K likewise (the fixture's embeddings and its Q5_K_M "more bits"
// layers are Q6_K).
std::vector<float> GgmlDequantizeQ6_K(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out(nblocks * 256);
  float* y = out.data();
  for (int64_t i = 0; i < nblocks; ++i, blocks += 210) {
    const uint8_t* ql = blocks;
    const uint8_t* qh = blocks + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(blocks + 192);
    uint16_t d16;
    std::memcpy(&d16, blocks + 208, 2);
    const float d = half::F16ToF32(d16);
    for (int n = 0; n < 256; n += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int8_t q1 = static_cast<int8_t>((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int8_t q2 = static_cast<int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int8_t q3 = static_cast<int8_t>((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int8_t q4 = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
  return out;
}

// Every Q5_K and Q6_K matrix of llama.cpp's Q5_K_M file (a 3-layer Gemma 4 with E2B's parts,
// widths 256 and 512: tools/reference/make_wide_tiny_gguf.py) as the forward pass reads it
// (interleaved where the ISA has a 16-row kernel) equals ggml's formula on the file's bytes.
TEST(Q5_KTest, LlamaCppFileLoadsWithTheFileValues) {
  std::map<DType, int> checked = testing::ExpectForwardPassReadsFileValues(
      testing::LlamaCppFixture("tiny-wide-q5_k_m.gguf"),
      {{DType::kQ5_K, [](const uint8_t* d, int64_t n) { return GgmlDequantizeQ5_K(d, n / 256); }},
       {DType::kQ6_K, [](const uint8_t* d, int64_t n) { return GgmlDequantizeQ6_K(d, n / 256); }}});
  // The file's 23 Q5_K matrices (blk.0: all nine; blk.1: all but attn_v; blk.2, KV-shared: q,
  // output, gate, up and the two PLE ones) and 3 of its Q6_K (token_embd, blk.1.attn_v,
  // blk.2.ffn_down; the PLE table is gathered row by row, not a matrix the kernels read).
  EXPECT_EQ(checked[DType::kQ5_K], 23);
  EXPECT_EQ(checked[DType::kQ6_K], 3);
}

// The forward pass on the Q5_K_M file against llama.cpp's logits on it (libllama de3ff81, one
// batch, llama_get_logits_ith for every position; committed as
// tiny-wide-q5_k_m.llama_logits.f32, [8, 512]). Both quantize activations to 8 bits (llama.cpp
// per 256 values, Q8_K; gemma4 per 32), which alone moves each program's logits by 0.14-0.45
// from the dequantized weights in f32 on this model, so the bound is 0.75 and the greedy tokens
// must agree. Measured: 0.29-0.50 per row. With the fifth bits dropped in quant::UnpackQ5_K
// (which the repacking uses), rows differed by 13-17 (the greedy tokens still agreed: this tiny
// model's margins are 6-14).
TEST(Q5_KTest, LogitsAgreeWithLlamaCpp) {
  testing::ExpectLogitsNearLlamaCpp(
      testing::LlamaCppFixture("tiny-wide-q5_k_m.gguf"), {2, 10, 20, 30, 40, 50, 60, 70},
      testing::LlamaCppFixture("tiny-wide-q5_k_m.llama_logits.f32"), 0.75f);
}

}  // namespace
}  // namespace gemma4
