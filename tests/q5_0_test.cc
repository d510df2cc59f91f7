// Q5_0, the type llama.cpp's quantizer falls back to from Q4_K where rows are not a multiple of
// 256 (26B-A4B's down projections in its Q4_K_M): read from GGUF files and converted to Q8_0 at
// load time. The conversion is checked value for value against ggml's Q5_0 formula written out
// here, on random blocks (every fifth-bit pattern among them) and on every Q5_0 matrix of
// tests/fixtures/llama_cpp_gguf/tiny-26b-a4b-q5_0.gguf (llama-quantize de3ff81, Q5_0, from
// tiny-26b-a4b.gguf) as the forward pass reads it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "formats/gguf.h"
#include "llama_cpp_file_values.h"
#include "model/forward.h"
#include "model/model.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

// ggml's dequantize_row_q5_0, element by element: x = d * (q - 16), q = low nibble of byte j
// (element j) or its high nibble (element j + 16), fifth bit from bit j (j + 16) of qh.
std::vector<float> DequantizeQ5_0(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out;
  for (int64_t b = 0; b < nblocks; ++b, blocks += 22) {
    uint16_t d16;
    std::memcpy(&d16, blocks, 2);
    const float d = half::F16ToF32(d16);
    uint32_t qh;
    std::memcpy(&qh, blocks + 2, 4);
    float values[32];
    for (int j = 0; j < 16; ++j) {
      const uint8_t byte = blocks[6 + j];
      const int q0 = (byte & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
      const int q1 = (byte >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      values[j] = static_cast<float>(q0 - 16) * d;
      values[j + 16] = static_cast<float>(q1 - 16) * d;
    }
    out.insert(out.end(), values, values + 32);
  }
  return out;
}

TEST(Q5_0Test, ConversionToQ8_0KeepsEveryValue) {
  std::mt19937 rng(5);
  std::vector<uint8_t> q5(22 * 64);
  for (auto& byte : q5) byte = static_cast<uint8_t>(rng());
  for (int b = 0; b < 64; ++b) {  // finite scales (random bytes may spell inf or NaN)
    const uint16_t d = half::F32ToF16(0.001f * static_cast<float>(b + 1) * (b % 2 ? -1 : 1));
    std::memcpy(q5.data() + 22 * b, &d, 2);
  }
  std::memset(q5.data() + 2, 0xFF, 4);    // block 0: every fifth bit set
  std::memset(q5.data() + 22 + 2, 0, 4);  // block 1: none
  std::vector<uint8_t> q8(34 * 64);
  quant::ConvertRowQ5_0ToQ8_0(q5.data(), 64, q8.data());
  std::vector<float> want = DequantizeQ5_0(q5.data(), 64), got(64 * 32), via_type(64 * 32);
  quant::DequantizeRow(DType::kQ8_0, q8.data(), 64 * 32, got.data());
  quant::DequantizeRow(DType::kQ5_0, q5.data(), 64 * 32, via_type.data());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i], want[i]) << i;
    ASSERT_EQ(via_type[i], want[i]) << i;
  }
}

TEST(Q5_0Test, LlamaCppFileLoadsWithTheFileValues) {
  const std::string path = testing::LlamaCppFixture("tiny-26b-a4b-q5_0.gguf");
  // The matrices the forward pass reads (weights(), converted and repacked), against the
  // file's Q5_0 bytes through the formula above.
  std::map<DType, int> checked = testing::ExpectForwardPassReadsFileValues(
      path,
      {{DType::kQ5_0, [](const uint8_t* d, int64_t n) { return DequantizeQ5_0(d, n / 32); }}});
  // The file's 30 Q5_0 tensors (attn_q, attn_output, ffn_gate, ffn_up, ffn_gate_up_exps of each
  // of the 6 layers; the rest are llama.cpp's F16/Q8_0 fallbacks), every one converted.
  EXPECT_EQ(checked[DType::kQ5_0], 30);
  auto model = LoadedModel::Load(path);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  for (const LayerWeights& lw : (*model)->weights().layers) {
    EXPECT_NE(lw.q_proj.dtype, DType::kQ5_0);  // converted at load
  }
  // The forward pass runs on the converted matrices and picks llama.cpp's greedy tokens for
  // these ids on this file (llama_get_logits_ith, one batch). This tiny model echoes its input
  // with margins of 5.6-10, so this holds the plumbing only: with the conversion broken (q - 15)
  // the tokens stayed the same; the value check above is what holds the conversion.
  const std::vector<int32_t> ids = {2, 17, 33, 45, 100, 7, 250, 31, 64, 12, 99, 300, 5, 18};
  const std::vector<int32_t> llama_cpp_argmax = ids;
  InferenceState state(**model, nullptr);
  std::vector<float> logits;
  ASSERT_TRUE(state.Forward(ids.data(), ids.size(), LogitsMode::kAll, &logits).ok());
  const int64_t vocab = (*model)->config().vocab_size;
  for (size_t t = 0; t < ids.size(); ++t) {
    const float* row = logits.data() + t * vocab;
    EXPECT_EQ(std::max_element(row, row + vocab) - row, llama_cpp_argmax[t]) << t;
  }
}

}  // namespace
}  // namespace gemma4
