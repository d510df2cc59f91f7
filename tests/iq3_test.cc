// IQ3_XXS and IQ3_S, llama.cpp's 3-bit codebook formats (its IQ3_XXS, IQ3_XS, IQ3_S and IQ3_M
// mixes hold them; IQ2_S / IQ2_M mixes hold IQ3_S too): read from GGUF files and computed on as
// stored (row dots). The values are checked against ggml's dequantize_row_iq3_xxs / _s written
// out here (with the grid tables of quant/iq_grids.h), on random blocks and on every matrix of
// tests/fixtures/llama_cpp_gguf/tiny-wide-iq3_{s,xxs}.gguf (llama-quantize de3ff81, --pure) as
// the forward pass reads them; the forward pass's logits against llama.cpp's. The kernels are
// checked against the scalar reference in kernels_test.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "base/half.h"
#include "formats/gguf.h"
#include "llama_cpp_file_values.h"
#include "model/model.h"
#include "quant/iq_grids.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return half::F16ToF32(h);
}

// ggml's dequantize_row_iq3_xxs: per 32 values a u32 (after the 64 index bytes) of four 7-bit
// sign indices and a 4-bit scale ls, db = d (0.5 + ls) 0.5; per 8 values two grid entries of 4
// magnitudes (index bytes 2l, 2l + 1) and the sign byte of index l (bit j: value j negative).
std::vector<float> GgmlDequantizeIQ3_XXS(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out(nblocks * 256);
  float* y = out.data();
  for (int64_t i = 0; i < nblocks; ++i, blocks += 98) {
    const float d = Half(blocks);
    const uint8_t* qs = blocks + 2;
    for (int ib32 = 0; ib32 < 8; ++ib32, qs += 8) {
      uint32_t aux32;
      std::memcpy(&aux32, blocks + 66 + 4 * ib32, 4);
      const float db = d * (0.5f + static_cast<float>(aux32 >> 28)) * 0.5f;
      for (int l = 0; l < 4; ++l, y += 8) {
        const uint8_t signs = quant::kIQSignBits[(aux32 >> (7 * l)) & 127];
        const uint32_t grid1 = quant::kIQ3XXSGrid[qs[2 * l]],
                       grid2 = quant::kIQ3XXSGrid[qs[2 * l + 1]];
        for (int j = 0; j < 4; ++j) {
          y[j] = db * static_cast<float>((grid1 >> (8 * j)) & 0xFF) * (signs >> j & 1 ? -1.f : 1.f);
          y[j + 4] = db * static_cast<float>((grid2 >> (8 * j)) & 0xFF) *
                     (signs >> (j + 4) & 1 ? -1.f : 1.f);
        }
      }
    }
  }
  return out;
}

// ggml's dequantize_row_iq3_s: per 64 values one scale byte (low nibble for the first 32, high
// for the second), db = d (1 + 2 s); per 8 values two 9-bit grid indices (bytes of qs, their
// ninth bits bits 2l and 2l + 1 of the 32 values' qh byte) and one explicit sign byte.
std::vector<float> GgmlDequantizeIQ3_S(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out(nblocks * 256);
  float* y = out.data();
  for (int64_t i = 0; i < nblocks; ++i, blocks += 110) {
    const float d = Half(blocks);
    const uint8_t* qs = blocks + 2;
    const uint8_t* qh = blocks + 66;
    const uint8_t* signs = blocks + 74;
    for (int ib32 = 0; ib32 < 8; ++ib32, qs += 8, signs += 4) {
      const int s = (blocks[106 + ib32 / 2] >> (4 * (ib32 % 2))) & 0xF;
      const float db = d * static_cast<float>(1 + 2 * s);
      for (int l = 0; l < 4; ++l, y += 8) {
        const uint32_t grid1 = quant::kIQ3SGrid[qs[2 * l] | ((qh[ib32] << (8 - 2 * l)) & 256)];
        const uint32_t grid2 = quant::kIQ3SGrid[qs[2 * l + 1] | ((qh[ib32] << (7 - 2 * l)) & 256)];
        for (int j = 0; j < 4; ++j) {
          y[j] =
              db * static_cast<float>((grid1 >> (8 * j)) & 0xFF) * (signs[l] >> j & 1 ? -1.f : 1.f);
          y[j + 4] = db * static_cast<float>((grid2 >> (8 * j)) & 0xFF) *
                     (signs[l] >> (j + 4) & 1 ? -1.f : 1.f);
        }
      }
    }
  }
  return out;
}

// Random blocks with finite d of both signs (random bytes may spell inf or NaN); block 0 has
// every other byte 0xFF (last grid entries, every sign, scale 15), block 1 every byte 0.
std::vector<uint8_t> RandomBlocks(int block_bytes, int nblocks, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> blocks(static_cast<size_t>(block_bytes) * nblocks);
  for (auto& byte : blocks) byte = static_cast<uint8_t>(rng());
  std::memset(blocks.data(), 0xFF, block_bytes);
  std::memset(blocks.data() + block_bytes, 0x00, block_bytes);
  for (int b = 0; b < nblocks; ++b) {
    const uint16_t d = half::F32ToF16(0.001f * static_cast<float>(b + 1) * (b % 3 ? 1 : -1));
    std::memcpy(blocks.data() + static_cast<size_t>(block_bytes) * b, &d, 2);
  }
  return blocks;
}

TEST(IQ3Test, DequantizationIsGgmlFormula) {
  constexpr int kBlocks = 40;
  const std::vector<uint8_t> xxs = RandomBlocks(98, kBlocks, 31);
  const std::vector<float> want_xxs = GgmlDequantizeIQ3_XXS(xxs.data(), kBlocks);
  std::vector<float> got(want_xxs.size());
  quant::DequantizeRow(DType::kIQ3_XXS, xxs.data(), kBlocks * 256, got.data());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want_xxs[i]) << "IQ3_XXS " << i;
  const std::vector<uint8_t> s = RandomBlocks(110, kBlocks, 32);
  const std::vector<float> want_s = GgmlDequantizeIQ3_S(s.data(), kBlocks);
  quant::DequantizeRow(DType::kIQ3_S, s.data(), kBlocks * 256, got.data());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want_s[i]) << "IQ3_S " << i;
}

// The sign table's eighth bit makes the count of negative values even (ggml's ksigns_iq2xs),
// and the grids hold only their formats' levels.
TEST(IQ3Test, TablesHoldTheFormatsLevels) {
  for (int s = 0; s < 128; ++s) {
    EXPECT_EQ(quant::kIQSignBits[s] & 127, s);
    EXPECT_EQ(__builtin_popcount(quant::kIQSignBits[s]) % 2, 0) << s;
  }
  for (uint32_t entry : quant::kIQ3XXSGrid) {
    for (int j = 0; j < 4; ++j) {
      const int v = (entry >> (8 * j)) & 0xFF;
      EXPECT_TRUE((v % 8 == 4 && v <= 52) || v == 62) << std::hex << entry;
    }
  }
  for (uint32_t entry : quant::kIQ3SGrid) {
    for (int j = 0; j < 4; ++j) {
      const int v = (entry >> (8 * j)) & 0xFF;
      EXPECT_TRUE(v % 2 == 1 && v <= 15) << std::hex << entry;
    }
  }
  // A few entries as ggml lists them (first, last, and one with a ninth index bit).
  EXPECT_EQ(quant::kIQ3XXSGrid[0], 0x04040404u);
  EXPECT_EQ(quant::kIQ3XXSGrid[5], 0x04040c3eu);
  EXPECT_EQ(quant::kIQ3SGrid[0], 0x01010101u);
  EXPECT_EQ(quant::kIQ3SGrid[3], 0x0101010bu);
  EXPECT_EQ(quant::kIQ3SGrid[511], 0x0f0f0101u);
}

TEST(IQ3Test, GgufTypesAreRead) {
  DType t = DType::kF32;
  ASSERT_TRUE(gguf::GgmlTypeToDType(18, &t));
  EXPECT_EQ(t, DType::kIQ3_XXS);
  ASSERT_TRUE(gguf::GgmlTypeToDType(21, &t));
  EXPECT_EQ(t, DType::kIQ3_S);
  EXPECT_EQ(BlockElements(DType::kIQ3_XXS), 256);
  EXPECT_EQ(BlockBytes(DType::kIQ3_XXS), 98u);
  EXPECT_EQ(BlockBytes(DType::kIQ3_S), 110u);
  EXPECT_TRUE(IsComputeType(DType::kIQ3_S));
  EXPECT_STREQ(DTypeName(DType::kIQ3_XXS), "IQ3_XXS");
}

// Every matrix of llama.cpp's --pure IQ3_S and IQ3_XXS files (the 3-layer Gemma 4 with E2B's
// parts, widths 256 and 512: tools/reference/make_wide_tiny_gguf.py) as the forward pass reads
// it equals ggml's formula on the file's bytes.
TEST(IQ3Test, LlamaCppFilesLoadWithTheFileValues) {
  std::map<DType, int> checked = testing::ExpectForwardPassReadsFileValues(
      testing::LlamaCppFixture("tiny-wide-iq3_s.gguf"),
      {{DType::kIQ3_S,
        [](const uint8_t* d, int64_t n) { return GgmlDequantizeIQ3_S(d, n / 256); }}});
  // token_embd (the tied LM head), blk.0 and blk.1's nine matrices each and blk.2's seven
  // (KV-shared: no k or v); the PLE table is IQ3_S too but gathered row by row.
  EXPECT_EQ(checked[DType::kIQ3_S], 26);
  EXPECT_EQ(checked.size(), 1u);
  checked = testing::ExpectForwardPassReadsFileValues(
      testing::LlamaCppFixture("tiny-wide-iq3_xxs.gguf"),
      {{DType::kIQ3_XXS,
        [](const uint8_t* d, int64_t n) { return GgmlDequantizeIQ3_XXS(d, n / 256); }}});
  EXPECT_EQ(checked[DType::kIQ3_XXS], 26);
  EXPECT_EQ(checked.size(), 1u);
  auto model = LoadedModel::Load(testing::LlamaCppFixture("tiny-wide-iq3_s.gguf"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->weights().layers[0].q_proj.dtype, DType::kIQ3_S);  // row dots, as stored
}

// The forward pass on each file against llama.cpp's logits on it (libllama de3ff81, one batch,
// llama_get_logits_ith for every position; [8, 512]): 0.28-0.54 per row here, from llama.cpp's
// activations rounded to 8 bits per 256 values against ours per 32 (on the IQ3_S file
// dequantized to f32 by gguf-py the two agree within 0.012).
TEST(IQ3Test, LogitsAgreeWithLlamaCpp) {
  testing::ExpectLogitsNearLlamaCpp(
      testing::LlamaCppFixture("tiny-wide-iq3_s.gguf"), {2, 10, 20, 30, 40, 50, 60, 70},
      testing::LlamaCppFixture("tiny-wide-iq3_s.llama_logits.f32"), 0.75f);
  testing::ExpectLogitsNearLlamaCpp(
      testing::LlamaCppFixture("tiny-wide-iq3_xxs.gguf"), {2, 10, 20, 30, 40, 50, 60, 70},
      testing::LlamaCppFixture("tiny-wide-iq3_xxs.llama_logits.f32"), 0.75f);
}

}  // namespace
}  // namespace gemma4
