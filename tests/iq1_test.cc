// IQ1_S and IQ1_M, llama.cpp's 1-bit codebook formats (its IQ1_S / IQ1_M mixes and unsloth's
// UD-IQ1_S / UD-IQ1_M files hold them): read from GGUF files and computed on as stored (row
// dots). The values are checked against ggml's dequantize_row_iq1_s / _m written out here (with
// gemma4's copy of the grid, read as int8 bytes, and the float deltas +-0.125 rather than the
// integers 8 g +- 1 that gemma4 computes on), on random and extreme blocks and on every IQ1 matrix
// of tests/fixtures/llama_cpp_gguf/tiny-wide-iq1_{s,m}.gguf as the forward pass reads them; the
// forward pass's logits against llama.cpp's. The row dots are checked against the scalar
// reference in kernels_test.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "formats/gguf.h"
#include "kernels/activations.h"
#include "kernels/kernels.h"
#include "kernels/pack/pack.h"
#include "llama_cpp_file_values.h"
#include "model/model.h"
#include "quant/iq_grids.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

constexpr float kDelta = 0.125f;  // ggml's IQ1S_DELTA and IQ1M_DELTA

// Value j (0..7) of a grid entry: byte j of the little-endian u64 as int8 (-1, 0 or +1).
float GridValue(uint64_t entry, int j) {
  return static_cast<float>(static_cast<int8_t>((entry >> (8 * j)) & 0xFF));
}

uint16_t U16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// ggml's dequantize_row_iq1_s: f16 d, qs[32] at 2, u16 qh[8] at 34; per 32 values dl = d (2 ((qh
// >> 12) & 7) + 1), delta -0.125 if bit 15 else +0.125, group l's index qs[l] | ((qh >> 3 l) &
// 7) << 8; y = dl (grid + delta).
std::vector<float> GgmlDequantizeIQ1_S(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out(nblocks * 256);
  float* y = out.data();
  for (int64_t i = 0; i < nblocks; ++i, blocks += 50) {
    const float d = half::F16ToF32(U16(blocks));
    const uint8_t* qs = blocks + 2;
    for (int ib = 0; ib < 8; ++ib, qs += 4) {
      const uint16_t qh = U16(blocks + 34 + 2 * ib);
      const float dl = d * static_cast<float>(2 * ((qh >> 12) & 7) + 1);
      const float delta = qh & 0x8000 ? -kDelta : kDelta;
      for (int l = 0; l < 4; ++l) {
        const uint64_t grid = quant::kIQ1SGrid[qs[l] | (((qh >> (3 * l)) & 7) << 8)];
        for (int j = 0; j < 8; ++j) *y++ = dl * (GridValue(grid, j) + delta);
      }
    }
  }
  return out;
}

// ggml's dequantize_row_iq1_m: qs[32] at 0, qh[16] at 32, u16 sc[4] at 48; d is the f16
// (sc[0] >> 12) | ((sc[1] >> 8) & 0xf0) | ((sc[2] >> 4) & 0xf00) | (sc[3] & 0xf000); per 32
// values dl1 / dl2 = d (2 ((sc[ib / 2] >> (6 (ib % 2) + 0 / 3)) & 7) + 1) for its halves; group
// l's index qs[l] | (qh[l / 2] nibble l % 2 & 7) << 8, its delta's sign bit 3 of that nibble.
std::vector<float> GgmlDequantizeIQ1_M(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out(nblocks * 256);
  float* y = out.data();
  for (int64_t i = 0; i < nblocks; ++i, blocks += 56) {
    uint16_t sc[4];
    std::memcpy(sc, blocks + 48, 8);
    const uint16_t d_bits = static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                                  ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    const float d = half::F16ToF32(d_bits);
    const uint8_t* qs = blocks;
    const uint8_t* qh = blocks + 32;
    for (int ib = 0; ib < 8; ++ib, qs += 4, qh += 2) {
      const float dl1 = d * static_cast<float>(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 0)) & 7) + 1);
      const float dl2 = d * static_cast<float>(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1);
      const int idx[4] = {qs[0] | ((qh[0] << 8) & 0x700), qs[1] | ((qh[0] << 4) & 0x700),
                          qs[2] | ((qh[1] << 8) & 0x700), qs[3] | ((qh[1] << 4) & 0x700)};
      const float delta[4] = {qh[0] & 0x08 ? -kDelta : kDelta, qh[0] & 0x80 ? -kDelta : kDelta,
                              qh[1] & 0x08 ? -kDelta : kDelta, qh[1] & 0x80 ? -kDelta : kDelta};
      for (int l = 0; l < 4; ++l) {
        const uint64_t grid = quant::kIQ1SGrid[idx[l]];
        for (int j = 0; j < 8; ++j) *y++ = (l < 2 ? dl1 : dl2) * (GridValue(grid, j) + delta[l]);
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
    {DType::kIQ1_S, 19, 50, GgmlDequantizeIQ1_S, "tiny-wide-iq1_s"},
    {DType::kIQ1_M, 29, 56, GgmlDequantizeIQ1_M, "tiny-wide-iq1_m"},
};

// Random blocks with finite d of both signs (random bytes may spell inf or NaN); block 0 has
// every other byte 0xFF (grid entry 2047, every delta negative, every scale 7), block 1 every
// one 0 (entry 0, deltas positive, scales 0).
std::vector<uint8_t> RandomBlocks(const Format& f, int nblocks, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> blocks(f.block_bytes * nblocks);
  for (auto& byte : blocks) byte = static_cast<uint8_t>(rng());
  std::memset(blocks.data(), 0xFF, f.block_bytes);
  std::memset(blocks.data() + f.block_bytes, 0x00, f.block_bytes);
  for (int b = 0; b < nblocks; ++b) {
    const uint16_t d = half::F32ToF16(0.001f * static_cast<float>(b + 1) * (b % 3 ? 1 : -1));
    uint8_t* block = blocks.data() + f.block_bytes * b;
    if (f.type == DType::kIQ1_S) {
      std::memcpy(block, &d, 2);
    } else {  // nibble k of d in the top nibble of u16 scales[k] at 48
      for (int k = 0; k < 4; ++k) {
        uint16_t sc = U16(block + 48 + 2 * k);
        sc = static_cast<uint16_t>((sc & 0x0FFF) | (((d >> (4 * k)) & 0xF) << 12));
        std::memcpy(block + 48 + 2 * k, &sc, 2);
      }
    }
  }
  return blocks;
}

TEST(IQ1Test, GridIsSignedOnes) {
  for (uint64_t entry : quant::kIQ1SGrid) {
    for (int j = 0; j < 8; ++j) {
      const uint8_t b = static_cast<uint8_t>(entry >> (8 * j));
      EXPECT_TRUE(b == 0xFF || b == 0x00 || b == 0x01) << std::hex << entry;
    }
  }
  EXPECT_EQ(quant::kIQ1SGrid[0], 0xffffffffffffffffull);  // ggml's first and last entries
  EXPECT_EQ(quant::kIQ1SGrid[1], 0xffffffffffffff01ull);
  EXPECT_EQ(quant::kIQ1SGrid[2047], 0x0101010101010101ull);
}

TEST(IQ1Test, DequantizationIsGgmlFormula) {
  constexpr int kBlocks = 40;
  for (const Format& f : kFormats) {
    const std::vector<uint8_t> blocks = RandomBlocks(f, kBlocks, 37);
    const std::vector<float> want = f.ggml(blocks.data(), kBlocks);
    std::vector<float> got(want.size());
    quant::DequantizeRow(f.type, blocks.data(), static_cast<int64_t>(want.size()), got.data());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << DTypeName(f.type) << i;
  }
}

TEST(IQ1Test, GgufTypesAreRead) {
  for (const Format& f : kFormats) {
    DType t = DType::kF32;
    ASSERT_TRUE(gguf::GgmlTypeToDType(f.ggml_type, &t)) << f.ggml_type;
    EXPECT_EQ(t, f.type);
    EXPECT_EQ(BlockElements(f.type), 256);
    EXPECT_EQ(BlockBytes(f.type), f.block_bytes);
    EXPECT_TRUE(IsComputeType(f.type));
    EXPECT_TRUE(IsOneBitCodebookType(f.type));
    EXPECT_FALSE(IsCodebookType(f.type));  // no codebook tiles or panels
    EXPECT_FALSE(IsInterleavedX16(f.type));
  }
}

// Every matrix of llama.cpp's --pure file (the 3-layer Gemma 4 with E2B's parts, widths 256 and
// 512: tools/reference/make_wide_tiny_gguf.py) as the forward pass reads it equals ggml's formula
// on the file's bytes: the file's 25 IQ1 tensors (blk.0 and blk.1's nine matrices each, blk.2's
// seven). The embeddings are Q6_K as in the IQ2 files; per_layer_model_proj stays F32. The rows
// stay as stored (no 16-row layout).
TEST(IQ1Test, LlamaCppFilesLoadWithTheFileValues) {
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

// Every ISA's row dot on every IQ1 matrix of the files (real llama-quantize rows, not random
// bytes) against the scalar reference, four random tokens: exact up to the f32 summation order.
TEST(IQ1Test, RowDotsMatchReferenceOnFileMatrices) {
  std::mt19937 rng(61);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const Format& f : kFormats) {
    auto model = LoadedModel::Load(testing::LlamaCppFixture(std::string(f.fixture) + ".gguf"));
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    int matrices = 0;
    for (const LayerWeights& layer : (*model)->weights().layers) {
      for (const TensorView* t :
           {&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj, &layer.gate_proj,
            &layer.up_proj, &layer.down_proj, &layer.ple_gate, &layer.ple_projection}) {
        if (t->data == nullptr || t->dtype != f.type) continue;
        ++matrices;
        const int64_t k = t->cols();
        std::vector<float> x(4 * k);
        for (float& v : x) v = normal(rng);
        kernels::QuantizedActivations acts;
        kernels::QuantizeActivations(x.data(), 4, k, &acts);
        const auto dot = f.type == DType::kIQ1_S ? &kernels::KernelTable::dot_iq1_s
                                                 : &kernels::KernelTable::dot_iq1_m;
        for (kernels::Isa isa : {kernels::Isa::kAvx2, kernels::Isa::kAvx512Vnni,
                                 kernels::Isa::kAvx512Vbmi, kernels::Isa::kNeonDotprod}) {
          if (!kernels::CpuSupports(isa)) continue;
          const kernels::KernelTable& table = kernels::TableFor(isa);
          for (int64_t r = 0; r < t->rows(); ++r) {
            const uint8_t* row = t->data + r * RowBytes(f.type, k);
            float got[4], want[4];
            (table.*dot)(row, k / 32, acts, 0, 4, got);
            (kernels::ReferenceTable().*dot)(row, k / 32, acts, 0, 4, want);
            std::vector<float> deq(k);
            quant::DequantizeRow(f.type, row, k, deq.data());
            for (int i = 0; i < 4; ++i) {
              double mag = 0;  // the sum of |products|, the scale of the f32 rounding
              for (int64_t j = 0; j < k; ++j) {
                mag += std::fabs(deq[j] * acts.q_row(i)[j] * double{acts.scale_row(i)[j / 32]});
              }
              ASSERT_NEAR(got[i], want[i], 1e-5 * mag + 1e-6)
                  << f.fixture << " " << table.isa << " row " << r << " token " << i;
            }
          }
        }
      }
    }
    EXPECT_EQ(matrices, 25) << f.fixture;
  }
}

// The forward pass on each file against llama.cpp's logits on it (libllama de3ff81, one batch,
// llama_get_logits_ith for every position; committed as <fixture>.llama_logits.f32, [8, 512]).
TEST(IQ1Test, LogitsAgreeWithLlamaCpp) {
  for (const Format& f : kFormats) {
    SCOPED_TRACE(f.fixture);
    testing::ExpectLogitsNearLlamaCpp(
        testing::LlamaCppFixture(std::string(f.fixture) + ".gguf"), {2, 10, 20, 30, 40, 50, 60, 70},
        testing::LlamaCppFixture(std::string(f.fixture) + ".llama_logits.f32"), 0.75f);
  }
}

}  // namespace
}  // namespace gemma4
