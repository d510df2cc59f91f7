// Q4_1, llama.cpp's affine 4-bit type (x = d * q + m per 32 values; its Q4_1 files, and the
// first layers' ffn_down in imatrix Q4_0 files): read from GGUF files and computed on as stored
// (row dots, Q5_1's without the fifth bit) or interleaved by 16 rows (Q4_1x16). The values are
// checked against ggml's dequantize_row_q4_1 written out here, on random blocks and on every
// Q4_1 matrix of tests/fixtures/llama_cpp_gguf/tiny-wide-q4_1.gguf (llama-quantize de3ff81,
// Q4_1) as the forward pass reads it; the kernels against the scalar reference in kernels_test;
// the logits against llama.cpp's on that file.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "base/half.h"
#include "kernels/kernels.h"
#include "llama_cpp_file_values.h"
#include "model/model.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

// ggml's dequantize_row_q4_1 as ggml writes it: byte j holds element j in its low nibble and
// element j + 16 in its high nibble.
std::vector<float> GgmlDequantizeQ4_1(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out(nblocks * 32);
  for (int64_t i = 0; i < nblocks; ++i, blocks += 20) {
    uint16_t d16, m16;
    std::memcpy(&d16, blocks, 2);
    std::memcpy(&m16, blocks + 2, 2);
    const float d = half::F16ToF32(d16), m = half::F16ToF32(m16);
    const uint8_t* qs = blocks + 4;
    for (int j = 0; j < 16; ++j) {
      const int x0 = qs[j] & 0x0F;
      const int x1 = qs[j] >> 4;
      out[i * 32 + j] = x0 * d + m;
      out[i * 32 + j + 16] = x1 * d + m;
    }
  }
  return out;
}

TEST(Q4_1Test, DequantizationIsGgmlFormula) {
  std::mt19937 rng(41);
  constexpr int kBlocks = 64;
  std::vector<uint8_t> q4(20 * kBlocks);
  for (auto& byte : q4) byte = static_cast<uint8_t>(rng());
  for (int b = 0; b < kBlocks; ++b) {  // finite d and m (random bytes may spell inf or NaN)
    const uint16_t d = half::F32ToF16(0.001f * static_cast<float>(b + 1));
    const uint16_t m = half::F32ToF16(-0.01f * static_cast<float>(b % 7) * (b % 2 ? -1 : 1));
    std::memcpy(q4.data() + 20 * b, &d, 2);
    std::memcpy(q4.data() + 20 * b + 2, &m, 2);
  }
  const std::vector<float> want = GgmlDequantizeQ4_1(q4.data(), kBlocks);
  std::vector<float> got(want.size());
  quant::DequantizeRow(DType::kQ4_1, q4.data(), static_cast<int64_t>(want.size()), got.data());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << i;
  DType t = DType::kF32;
  ASSERT_TRUE(gguf::GgmlTypeToDType(3, &t));
  EXPECT_EQ(t, DType::kQ4_1);
  EXPECT_EQ(RowBytes(DType::kQ4_1, 256), 8u * 20u);
  EXPECT_TRUE(IsComputeType(DType::kQ4_1));
}

TEST(Q4_1Test, LlamaCppFileLoadsWithTheFileValues) {
  std::map<DType, int> checked = testing::ExpectForwardPassReadsFileValues(
      testing::LlamaCppFixture("tiny-wide-q4_1.gguf"),
      {{DType::kQ4_1, [](const uint8_t* d, int64_t n) { return GgmlDequantizeQ4_1(d, n / 32); }}});
  // The file's 25 Q4_1 matrices: all nine of blk.0 and blk.1, the seven of blk.2 (KV-shared:
  // no k, v); the embeddings are Q6_K.
  EXPECT_EQ(checked[DType::kQ4_1], 25);
  // Where the ISA has the 16-row kernel, the 512-row gate projection is interleaved.
  auto model = LoadedModel::Load(testing::LlamaCppFixture("tiny-wide-q4_1.gguf"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->weights().layers[0].gate_proj.dtype,
            kernels::BestTable().gemm_q4_1x16 != nullptr ? DType::kQ4_1x16 : DType::kQ4_1);
}

// llama.cpp's logits on the same file (libllama de3ff81, one batch, every position; committed
// as tiny-wide-q4_1.llama_logits.f32, [8, 512]). Both quantize activations to 8 bits (llama.cpp
// per 32 values as Q8_1, gemma4 per 32 with its own rounding), so the rows differ by rounding:
// measured 0.20-0.40 on every ISA table; the bound is the K-quant tests' 0.75 and the greedy
// tokens must agree.
TEST(Q4_1Test, LogitsAgreeWithLlamaCpp) {
  testing::ExpectLogitsNearLlamaCpp(
      testing::LlamaCppFixture("tiny-wide-q4_1.gguf"), {2, 10, 20, 30, 40, 50, 60, 70},
      testing::LlamaCppFixture("tiny-wide-q4_1.llama_logits.f32"), 0.75f);
}

}  // namespace
}  // namespace gemma4
