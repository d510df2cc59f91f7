// ggml block formats (quant/): round trips and nibble order; the scalar half conversions.
#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

std::vector<float> RandomVector(int64_t n, std::mt19937* rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(*rng);
  return v;
}

TEST(HalfTest, RoundTripsEveryFiniteHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = half::F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half::F16ToF32(half::F32ToF16(f))));
      continue;
    }
    EXPECT_EQ(half::F32ToF16(f), h) << h;
  }
}

// _MM_FROUND_TO_NEAREST_INT: round to nearest even, like ggml's reference conversion.
__attribute__((target("f16c"))) uint16_t HardwareHalf(float f) {
  return static_cast<uint16_t>(
      _mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0));
}

TEST(HalfTest, MatchesHardwareConversionOnRandomFloats) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C";
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    uint32_t b = bits(rng);
    float f;
    std::memcpy(&f, &b, 4);
    if (std::isnan(f)) continue;
    ASSERT_EQ(half::F32ToF16(f), HardwareHalf(f)) << f;
  }
}

TEST(QuantTest, Q8_0RoundTripErrorIsWithinHalfAStep) {
  std::mt19937 rng(1);
  const auto x = RandomVector(32 * 9, &rng, 3.0f);
  std::vector<uint8_t> q(9 * quant::kQ8_0BlockBytes);
  quant::QuantizeRowQ8_0(x.data(), x.size(), q.data());
  std::vector<float> y(x.size());
  quant::DequantizeRow(DType::kQ8_0, q.data(), x.size(), y.data());
  for (int b = 0; b < 9; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
    const float step = amax / 127.0f;
    for (int i = 0; i < 32; ++i) {
      // Half a step, plus the f16 rounding of the scale (2^-11 relative) times 127 steps.
      EXPECT_NEAR(y[b * 32 + i], x[b * 32 + i], 0.5f * step + amax * 0.001f);
    }
  }
}

TEST(QuantTest, Q4_0RoundTripAndNibbleOrder) {
  // Element j lives in the low nibble of byte j, element j + 16 in the high nibble.
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i - 16);  // max |x| = 16 at i = 0
  std::vector<uint8_t> q(quant::kQ4_0BlockBytes);
  quant::QuantizeRowQ4_0(x.data(), 32, q.data());
  EXPECT_EQ(half::F16ToF32(static_cast<uint16_t>(q[0] | (q[1] << 8))), 2.0f);  // -16 / -8
  EXPECT_EQ(q[2] & 0xF, 0);  // x[0] = -16 -> -8 -> nibble 0
  EXPECT_EQ(q[2] >> 4, 8);   // x[16] = 0 -> nibble 8
  std::vector<float> y(32);
  quant::DequantizeRow(DType::kQ4_0, q.data(), 32, y.data());
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(y[i], x[i], 1.0f + 1e-6f) << i;  // step 2
}

TEST(QuantTest, Q6_KRoundTripAndUnpack) {
  std::mt19937 rng(4);
  const auto x = RandomVector(256 * 3, &rng, 0.7f);
  std::vector<uint8_t> q(3 * 210);
  quant::QuantizeRowQ6_K(x.data(), x.size(), q.data());
  std::vector<float> y(x.size());
  quant::DequantizeRow(DType::kQ6_K, q.data(), x.size(), y.data());
  for (int b = 0; b < 3; ++b) {
    float amax = 0;
    for (int i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(x[b * 256 + i]));
    // 6-bit values with int8 sub-block scales: error within a step of the largest sub-block.
    for (int i = 0; i < 256; ++i) EXPECT_NEAR(y[b * 256 + i], x[b * 256 + i], amax / 31.0f);
    int8_t vals[256];
    quant::UnpackQ6_K(q.data() + b * 210, vals);
    const float d =
        half::F16ToF32(static_cast<uint16_t>(q[b * 210 + 208] | (q[b * 210 + 209] << 8)));
    const int8_t* sc = reinterpret_cast<const int8_t*>(q.data() + b * 210 + 192);
    for (int i = 0; i < 256; ++i) EXPECT_EQ(y[b * 256 + i], d * sc[i / 16] * vals[i]) << i;
  }
  // An all-zero block stays zero.
  std::vector<float> zeros(256, 0.0f), back(256, 1.0f);
  quant::QuantizeRowQ6_K(zeros.data(), 256, q.data());
  quant::DequantizeRow(DType::kQ6_K, q.data(), 256, back.data());
  for (float v : back) EXPECT_EQ(v, 0.0f);
}

TEST(QuantTest, Q4_KRoundTrip) {
  std::mt19937 rng(6);
  const auto x = RandomVector(256 * 3, &rng, 0.7f);
  std::vector<uint8_t> q(3 * 144);
  quant::QuantizeRowQ4_K(x.data(), x.size(), q.data());
  std::vector<float> y(x.size());
  quant::DequantizeRow(DType::kQ4_K, q.data(), x.size(), y.data());
  for (int j = 0; j < 3 * 8; ++j) {  // per 32-value sub-block: within a 4-bit step of its range
    float lo = 0, hi = 0;
    for (int i = 0; i < 32; ++i) {
      lo = std::min(lo, x[32 * j + i]);
      hi = std::max(hi, x[32 * j + i]);
    }
    for (int i = 0; i < 32; ++i) EXPECT_NEAR(y[32 * j + i], x[32 * j + i], (hi - lo) / 15.0f);
  }
}

}  // namespace
}  // namespace gemma4
