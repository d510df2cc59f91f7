// Q5_0, the type llama.cpp's quantizer falls back to from Q4_K where rows are not a multiple of
// 256 (26B-A4B's down projections in its Q4_K_M): read from GGUF files and converted to Q5_1 at
// load time (m = -16 d: 24 bytes a block; Q8_0's 34 would add half again to those matrices). The
// conversion is checked value for value against ggml's Q5_0 formula written out here, on random
// blocks (every fifth-bit pattern among them) and on every Q5_0 matrix of
// tests/fixtures/llama_cpp_gguf/tiny-26b-a4b-q5_0.gguf (llama-quantize de3ff81, Q5_0, from
// tiny-26b-a4b.gguf) as the forward pass reads it; a file whose scale Q5_1 cannot hold is
// refused naming the tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <filesystem>
#include <fstream>

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

TEST(Q5_0Test, ConversionToQ5_1KeepsEveryValue) {
  std::mt19937 rng(7);
  std::vector<uint8_t> q5(22 * 64);
  for (auto& byte : q5) byte = static_cast<uint8_t>(rng());
  for (int b = 0; b < 64; ++b) {
    // Finite scales of every magnitude f16 has, up to the largest whose 16 d is finite (4094),
    // subnormals and zeros included.
    const float magnitudes[] = {0.0f, 6e-8f, 3e-5f, 0.001f, 0.37f, 1.0f, 255.5f, 4094.0f};
    const uint16_t d = half::F32ToF16(magnitudes[b % 8] * (b % 3 ? -1.0f : 1.0f));
    std::memcpy(q5.data() + 22 * b, &d, 2);
  }
  std::memset(q5.data() + 2, 0xFF, 4);    // block 0: every fifth bit set
  std::memset(q5.data() + 22 + 2, 0, 4);  // block 1: none
  std::vector<uint8_t> q51(24 * 64);
  ASSERT_TRUE(quant::ConvertRowQ5_0ToQ5_1(q5.data(), 64, q51.data()));
  std::vector<float> want = DequantizeQ5_0(q5.data(), 64), got(64 * 32);
  quant::DequantizeRow(DType::kQ5_1, q51.data(), 64 * 32, got.data());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << i;
  // |d| = 4096: 16 d = 65536 is past f16's largest finite value, so no Q5_1 block holds it.
  const uint16_t too_large = half::F32ToF16(-4096.0f);
  std::memcpy(q5.data() + 22 * 5, &too_large, 2);
  EXPECT_FALSE(quant::ConvertRowQ5_0ToQ5_1(q5.data(), 64, q51.data()));
  // Non-finite scales stay non-finite (as the Q5_0 values are), not an error.
  const uint16_t nan = 0x7E00;
  std::memcpy(q5.data() + 22 * 5, &nan, 2);
  EXPECT_TRUE(quant::ConvertRowQ5_0ToQ5_1(q5.data(), 64, q51.data()));
}

TEST(Q5_0Test, ScaleBeyondQ5_1IsRefusedNamingTheTensor) {
  const std::string source = testing::LlamaCppFixture("tiny-26b-a4b-q5_0.gguf");
  auto file = gguf::File::Open(source);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const TensorView* target = nullptr;
  for (const TensorView& t : (*file)->tensors()) {
    if (t.dtype == DType::kQ5_0 && t.name == "blk.2.attn_q.weight") target = &t;
  }
  ASSERT_NE(target, nullptr);
  const uint64_t offset = target->file_offset + 22 * 7;  // block 7's d
  const std::string name = target->name;
  file->reset();
  const std::string path =
      (std::filesystem::temp_directory_path() / "gemma4_q5_0_large_scale.gguf").string();
  std::filesystem::copy_file(source, path, std::filesystem::copy_options::overwrite_existing);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    const uint16_t d = half::F32ToF16(5000.0f);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(reinterpret_cast<const char*>(&d), 2);
  }
  auto model = LoadedModel::Load(path);
  std::filesystem::remove(path);
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("'" + name + "'"), std::string::npos)
      << model.status().ToString();
  EXPECT_NE(model.status().message().find("beyond f16's range"), std::string::npos)
      << model.status().ToString();
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
    // Converted at load to Q5_1 (its 16-row layout where the kernels have one), not Q8_0.
    EXPECT_TRUE(lw.q_proj.dtype == DType::kQ5_1 || lw.q_proj.dtype == DType::kQ5_1x16)
        << DTypeName(lw.q_proj.dtype);
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
