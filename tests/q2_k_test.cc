// Q2_K, llama.cpp's 2-bit K-quant (its Q2_K and Q2_K_S mixes hold it): read from GGUF files and
// computed on as stored (row dots). The values are checked against ggml's dequantize_row_q2_K
// written out here on random blocks; the kernels against the scalar reference in kernels_test.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "base/half.h"
#include "formats/gguf.h"
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
  EXPECT_TRUE(IsComputeType(DType::kQ2_K));
}

}  // namespace
}  // namespace gemma4
