// Q2_K, llama.cpp's 2-bit K-quant (its Q2_K and Q2_K_S mixes hold it): read from GGUF files and
// computed on as stored (plain rows) or interleaved by 16 rows (Q2_Kx16). The values are checked
// against ggml's dequantize_row_q2_K written out here, on random blocks and on every Q2_K
// matrix of tests/fixtures/llama_cpp_gguf/tiny-wide-q2_k.gguf (llama-quantize de3ff81, --pure
// Q2_K) as the forward pass reads them; the 16-row layout's accessors against the plain rows;
// the forward pass's logits against llama.cpp's. The kernels are checked against the scalar
// reference in kernels_test.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "base/half.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "kernels/pack/pack.h"
#include "llama_cpp_file_values.h"
#include "model/model.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

// ggml's dequantize_row_q2_K as ggml writes it: per 128 values, 32 bytes of qs whose bit pairs
// (shift 0, 2, 4, 6) give four runs of 32 values, each run two 16-value sub-blocks (bytes 0-15
// and 16-31) with their own scale byte (scale low nibble, min high nibble), taken in order.
std::vector<float> GgmlDequantizeQ2_K(const uint8_t* blocks, int64_t nblocks) {
  std::vector<float> out(nblocks * 256);
  float* y = out.data();
  for (int64_t i = 0; i < nblocks; ++i, blocks += 84) {
    uint16_t d16, m16;
    std::memcpy(&d16, blocks + 80, 2);
    std::memcpy(&m16, blocks + 82, 2);
    const float d = half::F16ToF32(d16), min = half::F16ToF32(m16);
    const uint8_t* scales = blocks;
    const uint8_t* q = blocks + 16;
    int is = 0;
    for (int n = 0; n < 256; n += 128) {
      int shift = 0;
      for (int j = 0; j < 4; ++j) {
        uint8_t sc = scales[is++];
        float dl = d * (sc & 0xF), ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<int8_t>((q[l] >> shift) & 3) - ml;
        sc = scales[is++];
        dl = d * (sc & 0xF);
        ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) {
          *y++ = dl * static_cast<int8_t>((q[l + 16] >> shift) & 3) - ml;
        }
        shift += 2;
      }
      q += 32;
    }
  }
  return out;
}

// Random Q2_K blocks with finite d and dmin (random bytes may spell inf or NaN) of both signs;
// block 0 has every value 3 and every scale byte 0xFF, block 1 every value 0 and scale byte 0.
std::vector<uint8_t> RandomQ2_KBlocks(int nblocks, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> q2(84 * nblocks);
  for (auto& byte : q2) byte = static_cast<uint8_t>(rng());
  for (int b = 0; b < nblocks; ++b) {
    const uint16_t d = half::F32ToF16(0.001f * static_cast<float>(b + 1) * (b % 3 ? 1 : -1));
    const uint16_t dmin = half::F32ToF16(0.0007f * static_cast<float>(b % 5) * (b % 2 ? -1 : 1));
    std::memcpy(q2.data() + 84 * b + 80, &d, 2);
    std::memcpy(q2.data() + 84 * b + 82, &dmin, 2);
  }
  std::memset(q2.data(), 0xFF, 80);
  std::memset(q2.data() + 84, 0x00, 80);
  return q2;
}

TEST(Q2_KTest, DequantizationIsGgmlFormula) {
  constexpr int kBlocks = 40;
  const std::vector<uint8_t> q2 = RandomQ2_KBlocks(kBlocks, 22);
  const std::vector<float> want = GgmlDequantizeQ2_K(q2.data(), kBlocks);
  std::vector<float> got(want.size());
  quant::DequantizeRow(DType::kQ2_K, q2.data(), static_cast<int64_t>(want.size()), got.data());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << i;
}

TEST(Q2_KTest, GgufTypeIsRead) {
  DType t = DType::kF32;
  ASSERT_TRUE(gguf::GgmlTypeToDType(10, &t));
  EXPECT_EQ(t, DType::kQ2_K);
  EXPECT_EQ(BlockElements(DType::kQ2_K), 256);
  EXPECT_EQ(BlockBytes(DType::kQ2_K), 84u);
  EXPECT_EQ(RowBytes(DType::kQ2_Kx16, 512), 168u);  // interleaving keeps the bytes
  EXPECT_TRUE(IsComputeType(DType::kQ2_K));
  EXPECT_TRUE(IsInterleavedX16(DType::kQ2_Kx16));
}

// 16 rows of random blocks (3 per row) interleaved: every row dequantizes to ggml's values, and
// the accessors (Q2_Kx16Value, Q2_Kx16ScaleMin) give each element's value and its sub-block's
// scale and min as the plain block stores them.
TEST(Q2_KTest, InterleavedRowsKeepTheValues) {
  constexpr int kSuper = 3;
  const std::vector<uint8_t> plain = RandomQ2_KBlocks(16 * kSuper, 23);
  const uint64_t row_bytes = 84 * kSuper;
  std::vector<uint8_t> group(plain.size());
  kernels::pack::RepackGroupQ2_Kx16(plain.data(), row_bytes, kSuper, group.data());
  for (int r = 0; r < 16; ++r) {
    const std::vector<float> want = GgmlDequantizeQ2_K(plain.data() + r * row_bytes, kSuper);
    std::vector<float> got(want.size());
    kernels::pack::DequantizeQ2_Kx16Row(group.data(), kSuper, r, got.data());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "row " << r << " " << i;
    for (int sb = 0; sb < kSuper; ++sb) {
      const uint8_t* block = plain.data() + r * row_bytes + 84 * sb;
      const uint8_t* packed = group.data() + sb * kernels::pack::kQ2_Kx16BlockBytes;
      for (int e = 0; e < 256; ++e) {
        const int want_value = (block[16 + 32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
        ASSERT_EQ(kernels::pack::Q2_Kx16Value(packed, r, e), want_value)
            << "row " << r << " block " << sb << " element " << e;
      }
      for (int k = 0; k < 16; ++k) {
        uint8_t sc, m;
        kernels::pack::Q2_Kx16ScaleMin(packed, r, k, &sc, &m);
        EXPECT_EQ(sc, block[k] & 0xF) << "row " << r << " block " << sb << " sub-block " << k;
        EXPECT_EQ(m, block[k] >> 4) << "row " << r << " block " << sb << " sub-block " << k;
      }
    }
  }
}

// Q2_K matrices are interleaved (Q2_Kx16) where the table has the 16-row kernel and a matrix's
// rows are a multiple of 16, and stay plain otherwise (row dots).
TEST(Q2_KTest, InterleavedWhereTheTableHasTheKernel) {
  kernels::KernelTable table = kernels::ReferenceTable();
  ASSERT_NE(table.gemm_q2_kx16, nullptr);
  EXPECT_EQ(kernels::pack::PackedLayout(table, DType::kQ2_K, 32), DType::kQ2_Kx16);
  EXPECT_EQ(kernels::pack::PackedLayout(table, DType::kQ2_K, 24), DType::kQ2_K);
  table.gemm_q2_kx16 = nullptr;
  EXPECT_EQ(kernels::pack::PackedLayout(table, DType::kQ2_K, 32), DType::kQ2_K);
}

// Every matrix of llama.cpp's --pure Q2_K file (the 3-layer Gemma 4 with E2B's parts, widths 256
// and 512: tools/reference/make_wide_tiny_gguf.py) as the forward pass reads it (interleaved
// where the ISA has a 16-row kernel) equals ggml's formula on the file's bytes.
TEST(Q2_KTest, LlamaCppFileLoadsWithTheFileValues) {
  std::map<DType, int> checked = testing::ExpectForwardPassReadsFileValues(
      testing::LlamaCppFixture("tiny-wide-q2_k.gguf"),
      {{DType::kQ2_K, [](const uint8_t* d, int64_t n) { return GgmlDequantizeQ2_K(d, n / 256); }}});
  // token_embd (the tied LM head), blk.0 and blk.1's nine matrices each and blk.2's seven
  // (KV-shared: no k or v). The PLE table is Q2_K too but gathered row by row, not a matrix the
  // kernels read; per_layer_model_proj stays F32.
  EXPECT_EQ(checked[DType::kQ2_K], 26);
  EXPECT_EQ(checked.size(), 1u);
  // ... in the layout the best table picks (interleaved on AVX2 and AVX-512).
  auto model = LoadedModel::Load(testing::LlamaCppFixture("tiny-wide-q2_k.gguf"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const DType layout = kernels::pack::PackedLayout(kernels::BestTable(), DType::kQ2_K, 16);
  EXPECT_EQ((*model)->weights().layers[0].q_proj.dtype, layout);
  EXPECT_EQ((*model)->weights().embed.dtype, layout);
}

// The forward pass on the Q2_K file against llama.cpp's logits on it (libllama de3ff81, one
// batch, llama_get_logits_ith for every position; committed as tiny-wide-q2_k.llama_logits.f32,
// [8, 512]).
TEST(Q2_KTest, LogitsAgreeWithLlamaCpp) {
  testing::ExpectLogitsNearLlamaCpp(
      testing::LlamaCppFixture("tiny-wide-q2_k.gguf"), {2, 10, 20, 30, 40, 50, 60, 70},
      testing::LlamaCppFixture("tiny-wide-q2_k.llama_logits.f32"), 0.75f);
}

}  // namespace
}  // namespace gemma4
