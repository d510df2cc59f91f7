// IQ2_XXS, IQ2_XS and IQ2_S, llama.cpp's 2-bit codebook formats (its IQ2_XXS, IQ2_XS, IQ2_S and
// IQ2_M mixes hold them): read from GGUF files and computed on as stored (row dots). The values
// are checked against ggml's dequantize_row_iq2_xxs / _xs / _s written out here (with gemma4's
// copies of the grids, and the sign parity computed here rather than read from kIQSignBits), on
// random and extreme blocks and on every IQ2 matrix of tests/fixtures/llama_cpp_gguf/
// tiny-wide-iq2_{xxs,xs,s}.gguf as the forward pass reads them; the forward pass's logits
// against llama.cpp's. The row dots are checked against the scalar reference in kernels_test.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "kernels/pack/pack.h"
#include "llama_cpp_file_values.h"
#include "model/model.h"
#include "quant/iq_grids.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

// ggml's ksigns_iq2xs: the 7 stored sign bits of 8 weights and, as bit 7, the one that makes
// their count even.
uint8_t GgmlSigns(int seven_bits) {
  return static_cast<uint8_t>(seven_bits |
                              ((std::popcount(static_cast<unsigned>(seven_bits)) & 1) << 7));
}

// Magnitude of weight j (0..7) of a grid entry: byte j of the little-endian u64.
float GridByte(uint64_t entry, int j) { return static_cast<float>((entry >> (8 * j)) & 0xFF); }

uint16_t Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

// ggml's dequantize_row_iq2_xxs: per 32 values 8 bytes (as two u32: aux0 = four grid indices,
// aux1 = four 7-bit sign indices and the 4-bit scale at bits 28-31), db = d (0.5 + s) / 4.
std::vector<float> GgmlDequantizeIQ2_XXS(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out(nblocks * 256);
  float* y = out.data();
  for (int64_t i = 0; i < nblocks; ++i, blocks += 66) {
    const float d = half::F16ToF32(Half(blocks));
    for (int ib = 0; ib < 8; ++ib) {
      uint32_t aux[2];
      std::memcpy(aux, blocks + 2 + 8 * ib, 8);
      const float db = d * (0.5f + static_cast<float>(aux[1] >> 28)) * 0.25f;
      for (int l = 0; l < 4; ++l) {
        const uint64_t grid = quant::kIQ2XXSGrid[(aux[0] >> (8 * l)) & 0xFF];
        const uint8_t signs = GgmlSigns((aux[1] >> (7 * l)) & 127);
        for (int j = 0; j < 8; ++j) *y++ = db * GridByte(grid, j) * (signs >> j & 1 ? -1.f : 1.f);
      }
    }
  }
  return out;
}

// ggml's dequantize_row_iq2_xs: u16 qs[32] (9-bit grid index, 7-bit sign index) at byte 2,
// scales[8] at 66 (low nibble: groups 0-1 of the sub-block, high nibble: groups 2-3).
std::vector<float> GgmlDequantizeIQ2_XS(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out(nblocks * 256);
  float* y = out.data();
  for (int64_t i = 0; i < nblocks; ++i, blocks += 74) {
    const float d = half::F16ToF32(Half(blocks));
    for (int ib = 0; ib < 8; ++ib) {
      const uint8_t sc = blocks[66 + ib];
      const float db[2] = {d * (0.5f + static_cast<float>(sc & 0xF)) * 0.25f,
                           d * (0.5f + static_cast<float>(sc >> 4)) * 0.25f};
      for (int l = 0; l < 4; ++l) {
        const uint16_t q = Half(blocks + 2 + 2 * (4 * ib + l));
        const uint64_t grid = quant::kIQ2XSGrid[q & 511];
        const uint8_t signs = GgmlSigns(q >> 9);
        for (int j = 0; j < 8; ++j) {
          *y++ = db[l / 2] * GridByte(grid, j) * (signs >> j & 1 ? -1.f : 1.f);
        }
      }
    }
  }
  return out;
}

// ggml's dequantize_row_iq2_s: qs[64] at byte 2 (32 grid index low bytes, then 32 sign bytes),
// qh[8] at 66 (bits 8-9 of group l's index at bits 2l, 2l+1), scales[8] at 74.
std::vector<float> GgmlDequantizeIQ2_S(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out(nblocks * 256);
  float* y = out.data();
  for (int64_t i = 0; i < nblocks; ++i, blocks += 82) {
    const float d = half::F16ToF32(Half(blocks));
    const uint8_t* qs = blocks + 2;
    const uint8_t* signs = blocks + 2 + 32;
    const uint8_t* qh = blocks + 66;
    for (int ib = 0; ib < 8; ++ib, qs += 4, signs += 4) {
      const uint8_t sc = blocks[74 + ib];
      const float db[2] = {d * (0.5f + static_cast<float>(sc & 0xF)) * 0.25f,
                           d * (0.5f + static_cast<float>(sc >> 4)) * 0.25f};
      for (int l = 0; l < 4; ++l) {
        const uint64_t grid = quant::kIQ2SGrid[qs[l] | ((qh[ib] << (8 - 2 * l)) & 0x300)];
        for (int j = 0; j < 8; ++j) {
          *y++ = db[l / 2] * GridByte(grid, j) * (signs[l] >> j & 1 ? -1.f : 1.f);
        }
      }
    }
  }
  return out;
}

struct Format {
  DType type;
  uint32_t ggml_type;
  size_t block_bytes;
  std::vector<float> (*ggml)(const uint8_t*, int64_t);
  const char* fixture;  // tests/fixtures/llama_cpp_gguf/<fixture>.gguf
};

const Format kFormats[] = {
    {DType::kIQ2_XXS, 16, 66, GgmlDequantizeIQ2_XXS, "tiny-wide-iq2_xxs"},
    {DType::kIQ2_XS, 17, 74, GgmlDequantizeIQ2_XS, "tiny-wide-iq2_xs"},
    {DType::kIQ2_S, 22, 82, GgmlDequantizeIQ2_S, "tiny-wide-iq2_s"},
};

// Random blocks with finite d of both signs (random bytes may spell inf or NaN); block 0 has
// every byte after d 0xFF (largest indices, scales 15, every sign bit set), block 1 every one 0.
std::vector<uint8_t> RandomBlocks(const Format& f, int nblocks, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> blocks(f.block_bytes * nblocks);
  for (auto& byte : blocks) byte = static_cast<uint8_t>(rng());
  std::memset(blocks.data() + 2, 0xFF, f.block_bytes - 2);
  std::memset(blocks.data() + f.block_bytes + 2, 0x00, f.block_bytes - 2);
  for (int b = 0; b < nblocks; ++b) {
    const uint16_t d = half::F32ToF16(0.001f * static_cast<float>(b + 1) * (b % 3 ? 1 : -1));
    std::memcpy(blocks.data() + f.block_bytes * b, &d, 2);
  }
  return blocks;
}

TEST(IQ2Test, SignTableIsGgmls) {
  for (int i = 0; i < 128; ++i) EXPECT_EQ(quant::kIQSignBits[i], GgmlSigns(i)) << i;
}

TEST(IQ2Test, DequantizationIsGgmlFormula) {
  constexpr int kBlocks = 40;
  for (const Format& f : kFormats) {
    const std::vector<uint8_t> blocks = RandomBlocks(f, kBlocks, 31);
    const std::vector<float> want = f.ggml(blocks.data(), kBlocks);
    std::vector<float> got(want.size());
    quant::DequantizeRow(f.type, blocks.data(), static_cast<int64_t>(want.size()), got.data());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << DTypeName(f.type) << i;
  }
}

TEST(IQ2Test, GgufTypesAreRead) {
  for (const Format& f : kFormats) {
    DType t = DType::kF32;
    ASSERT_TRUE(gguf::GgmlTypeToDType(f.ggml_type, &t)) << f.ggml_type;
    EXPECT_EQ(t, f.type);
    EXPECT_EQ(BlockElements(f.type), 256);
    EXPECT_EQ(BlockBytes(f.type), f.block_bytes);
    EXPECT_TRUE(IsComputeType(f.type));
    EXPECT_TRUE(IsCodebookType(f.type));
    EXPECT_FALSE(IsInterleavedX16(f.type));
  }
}

// Every matrix of llama.cpp's --pure file (the 3-layer Gemma 4 with E2B's parts, widths 256
// and 512: tools/reference/make_wide_tiny_gguf.py) as the forward pass reads it equals ggml's
// formula on the file's bytes: blk.0 and blk.1's nine matrices each and blk.2's seven
// (KV-shared: no k or v), the file's 25 IQ2 tensors. token_embd and the PLE table are Q6_K
// (llama-imatrix collects no importance data for the embeddings, and llama-quantize needs it for
// IQ2); per_layer_model_proj stays F32. The rows stay as stored (no 16-row layout).
TEST(IQ2Test, LlamaCppFilesLoadWithTheFileValues) {
  for (const Format& f : kFormats) {
    const std::string path = testing::LlamaCppFixture(std::string(f.fixture) + ".gguf");
    std::map<DType, int> checked = testing::ExpectForwardPassReadsFileValues(
        path, {{f.type, [&f](const uint8_t* d, int64_t n) { return f.ggml(d, n / 256); }}});
    EXPECT_EQ(checked[f.type], 25) << f.fixture;
    EXPECT_EQ(checked.size(), 1u) << f.fixture;
    auto model = LoadedModel::Load(path);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    EXPECT_EQ((*model)->weights().layers[0].q_proj.dtype, f.type) << f.fixture;
    EXPECT_EQ(kernels::pack::PackedLayout(kernels::BestTable(), f.type, 16), f.type);
  }
}

// The forward pass on each file against llama.cpp's logits on it (libllama de3ff81, one batch,
// llama_get_logits_ith for every position; committed as <fixture>.llama_logits.f32, [8, 512]).
TEST(IQ2Test, LogitsAgreeWithLlamaCpp) {
  for (const Format& f : kFormats) {
    SCOPED_TRACE(f.fixture);
    testing::ExpectLogitsNearLlamaCpp(
        testing::LlamaCppFixture(std::string(f.fixture) + ".gguf"), {2, 10, 20, 30, 40, 50, 60, 70},
        testing::LlamaCppFixture(std::string(f.fixture) + ".llama_logits.f32"), 0.75f);
  }
}

}  // namespace
}  // namespace gemma4
