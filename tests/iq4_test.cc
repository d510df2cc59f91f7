// IQ4_XS and IQ4_NL, llama.cpp's non-linear 4-bit types (its IQ4_XS mix, a common download of
// the larger models, holds both: IQ4_NL where rows are not a multiple of 256). IQ4_XS is
// computed on as stored (row dots) or as IQ4_XSx16, IQ4_NL likewise (row dots, or IQ4_NLx16:
// Q4_0x16's layout with level indices for nibbles). The values are checked against
// ggml's dequantize_row_iq4_xs / _iq4_nl written out here, on random blocks and on every matrix
// of two llama-quantize files as the forward pass reads them
// (tests/fixtures/llama_cpp_gguf/tiny-wide-iq4_xs.gguf from tiny-wide-f32.gguf, and
// tiny-26b-a4b-iq4_nl.gguf from tiny-26b-a4b.gguf), and the logits against llama.cpp's.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "base/half.h"
#include "kernels/kernels.h"
#include "llama_cpp_file_values.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

// ggml-common.h's kvalues_iq4nl, copied here so the test does not read the table it checks.
constexpr int8_t kLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                1,    13,   25,  38,  53,  69,  89,  113};

std::vector<float> GgmlDequantizeIQ4_NL(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out(nblocks * 32);
  float* y = out.data();
  for (int64_t i = 0; i < nblocks; ++i, blocks += 18, y += 32) {
    uint16_t d16;
    std::memcpy(&d16, blocks, 2);
    const float d = half::F16ToF32(d16);
    const uint8_t* qs = blocks + 2;
    for (int j = 0; j < 16; ++j) {
      y[j + 0] = d * kLevels[qs[j] & 0xf];
      y[j + 16] = d * kLevels[qs[j] >> 4];
    }
  }
  return out;
}

// dequantize_row_iq4_xs: { f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]; }.
std::vector<float> GgmlDequantizeIQ4_XS(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out(nblocks * 256);
  float* y = out.data();
  for (int64_t i = 0; i < nblocks; ++i, blocks += 136) {
    uint16_t d16, scales_h;
    std::memcpy(&d16, blocks, 2);
    std::memcpy(&scales_h, blocks + 2, 2);
    const uint8_t* scales_l = blocks + 4;
    const uint8_t* qs = blocks + 8;
    const float d = half::F16ToF32(d16);
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((scales_h >> 2 * ib) & 3) << 4);
      const float dl = d * (ls - 32);
      for (int j = 0; j < 16; ++j) {
        y[j + 0] = dl * kLevels[qs[j] & 0xf];
        y[j + 16] = dl * kLevels[qs[j] >> 4];
      }
      y += 32;
      qs += 16;
    }
  }
  return out;
}

TEST(IQ4Test, DequantizationIsGgmlFormula) {
  std::mt19937 rng(44);
  constexpr int kSuper = 12;
  std::vector<uint8_t> xs(136 * kSuper), nl(18 * 8 * kSuper);
  for (auto& byte : xs) byte = static_cast<uint8_t>(rng());
  for (auto& byte : nl) byte = static_cast<uint8_t>(rng());
  for (int b = 0; b < kSuper; ++b) {  // finite scales (random bytes may spell inf or NaN)
    const uint16_t d = half::F32ToF16(0.0003f * static_cast<float>(b + 1) * (b % 2 ? -1 : 1));
    std::memcpy(xs.data() + 136 * b, &d, 2);
  }
  for (int b = 0; b < 8 * kSuper; ++b) {
    const uint16_t d = half::F32ToF16(0.0002f * static_cast<float>(b % 9 + 1));
    std::memcpy(nl.data() + 18 * b, &d, 2);
  }
  std::memset(xs.data() + 2, 0xFF, 6);  // block 0: every scale 63 (ls - 32 = 31)
  std::memset(xs.data() + 138, 0, 6);   // block 1: every scale 0 (ls - 32 = -32)
  const std::vector<float> want_xs = GgmlDequantizeIQ4_XS(xs.data(), kSuper);
  const std::vector<float> want_nl = GgmlDequantizeIQ4_NL(nl.data(), 8 * kSuper);
  std::vector<float> got(want_xs.size());
  quant::DequantizeRow(DType::kIQ4_XS, xs.data(), 256 * kSuper, got.data());
  for (size_t i = 0; i < want_xs.size(); ++i) ASSERT_EQ(got[i], want_xs[i]) << "IQ4_XS " << i;
  quant::DequantizeRow(DType::kIQ4_NL, nl.data(), 256 * kSuper, got.data());
  for (size_t i = 0; i < want_nl.size(); ++i) ASSERT_EQ(got[i], want_nl[i]) << "IQ4_NL " << i;
  DType t = DType::kF32;
  ASSERT_TRUE(gguf::GgmlTypeToDType(23, &t));
  EXPECT_EQ(t, DType::kIQ4_XS);
  ASSERT_TRUE(gguf::GgmlTypeToDType(20, &t));
  EXPECT_EQ(t, DType::kIQ4_NL);
}

TEST(IQ4Test, IQ4_XSFileLoadsWithTheFileValues) {
  std::map<DType, int> checked = testing::ExpectForwardPassReadsFileValues(
      testing::LlamaCppFixture("tiny-wide-iq4_xs.gguf"),
      {{DType::kIQ4_XS,
        [](const uint8_t* d, int64_t n) { return GgmlDequantizeIQ4_XS(d, n / 256); }}});
  // Every one of the file's 25 IQ4_XS tensors (all matrices but the two Q6_K embeddings and the
  // F32 per_layer_model_proj).
  EXPECT_EQ(checked[DType::kIQ4_XS], 25);
}

TEST(IQ4Test, IQ4_NLFileLoadsWithTheFileValues) {
  std::map<DType, int> checked = testing::ExpectForwardPassReadsFileValues(
      testing::LlamaCppFixture("tiny-26b-a4b-iq4_nl.gguf"),
      {{DType::kIQ4_NL,
        [](const uint8_t* d, int64_t n) { return GgmlDequantizeIQ4_NL(d, n / 32); }}});
  // The file's 24 IQ4_NL tensors (attn_q, ffn_gate, ffn_up, ffn_gate_up_exps of the 6 layers;
  // llama.cpp made attn_output Q5_1, and Q5_K in the one layer whose rows are 256 long).
  EXPECT_EQ(checked[DType::kIQ4_NL], 24);
  // Kept at IQ4_NL's 18 bytes a block (not converted to Q8_0's 34): interleaved by 16 rows where
  // the ISA has the kernel and the rows allow (q_proj's 128, the experts' stacked 2 x 24 per
  // expert), as stored otherwise (the dense MLP's 40 rows: row dots), so both paths run here.
  auto model = LoadedModel::Load(testing::LlamaCppFixture("tiny-26b-a4b-iq4_nl.gguf"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const DType x16 =
      kernels::BestTable().gemm_iq4_nlx16 != nullptr ? DType::kIQ4_NLx16 : DType::kIQ4_NL;
  for (const LayerWeights& lw : (*model)->weights().layers) {
    EXPECT_EQ(lw.q_proj.dtype, x16) << DTypeName(lw.q_proj.dtype);
    EXPECT_EQ(lw.experts_gate_up.dtype, x16) << DTypeName(lw.experts_gate_up.dtype);
    EXPECT_EQ(lw.gate_proj.dtype, DType::kIQ4_NL) << DTypeName(lw.gate_proj.dtype);
  }
}

// llama.cpp's logits on the same files (libllama de3ff81, one batch, every position). Both
// quantize activations to 8 bits (llama.cpp per 256 values for IQ4_XS, per 32 for IQ4_NL;
// gemma4 per 32), which moves the rows by rounding: measured 0.30-0.40 (IQ4_XS) and 0.21-0.48
// (IQ4_NL). The greedy tokens must agree.
TEST(IQ4Test, LogitsAgreeWithLlamaCpp) {
  testing::ExpectLogitsNearLlamaCpp(
      testing::LlamaCppFixture("tiny-wide-iq4_xs.gguf"), {2, 10, 20, 30, 40, 50, 60, 70},
      testing::LlamaCppFixture("tiny-wide-iq4_xs.llama_logits.f32"), 0.75f);
  testing::ExpectLogitsNearLlamaCpp(
      testing::LlamaCppFixture("tiny-26b-a4b-iq4_nl.gguf"),
      {2, 17, 33, 45, 100, 7, 250, 31, 64, 12, 99, 300, 5, 18},
      testing::LlamaCppFixture("tiny-26b-a4b-iq4_nl.llama_logits.f32"), 0.75f);
}

}  // namespace
}  // namespace gemma4
