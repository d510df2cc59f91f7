// Unit tests of the float32 reference operators (src/ops/ops.h) against plain double-precision
// references written here, on random data of odd sizes.
//
// Tolerances are derived from the float32 machine epsilon kEps = FLT_EPSILON = 2^-23 (one ulp
// at 1.0; the unit roundoff of a correctly rounded float op is kEps / 2). Each bound is stated
// next to the check that uses it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "base/half.h"
#include "base/tensor.h"
#include "kernels/kernels.h"
#include "kernels/pack/pack.h"
#include "ops/ops.h"
#include "quant/quant.h"
#include "runtime/thread_pool.h"

namespace gemma4 {
namespace {

constexpr double kEps = FLT_EPSILON;

const int64_t kOddSizes[] = {1, 3, 7, 8, 9, 17, 31, 64, 257};

std::vector<float> RandomFloats(int64_t n, std::mt19937* rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(*rng);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Reference decoders of the 16-bit float formats, written from the IEEE / bfloat16 definitions
// in double precision (no bit tricks shared with the implementation).

double RefF16(uint16_t h) {
  const int sign = (h >> 15) & 1;
  const int exp = (h >> 10) & 0x1F;
  const int mant = h & 0x3FF;
  double v;
  if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), -24);  // subnormal: mant * 2^-14 / 2^10
  } else if (exp == 31) {
    v = mant == 0 ? std::numeric_limits<double>::infinity()
                  : std::numeric_limits<double>::quiet_NaN();
  } else {
    v = std::ldexp(static_cast<double>(1024 + mant), exp - 15 - 10);
  }
  return sign ? -v : v;
}

double RefBf16(uint16_t h) {
  const int sign = (h >> 15) & 1;
  const int exp = (h >> 7) & 0xFF;
  const int mant = h & 0x7F;
  double v;
  if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), -126 - 7);
  } else if (exp == 255) {
    v = mant == 0 ? std::numeric_limits<double>::infinity()
                  : std::numeric_limits<double>::quiet_NaN();
  } else {
    v = std::ldexp(static_cast<double>(128 + mant), exp - 127 - 7);
  }
  return sign ? -v : v;
}

// Every f16 / bf16 value is exactly representable in f32, so the decoders must be exact.
void ExpectExactDecode(float got, double want, uint32_t bits) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << "bits 0x" << std::hex << bits;
    return;
  }
  EXPECT_EQ(static_cast<double>(got), want) << "bits 0x" << std::hex << bits;
  EXPECT_EQ(std::signbit(got), std::signbit(want)) << "bits 0x" << std::hex << bits;
}

TEST(OpsF16ToF32, ExhaustiveMatchesReferenceDecoder) {
  for (uint32_t b = 0; b < 65536; ++b) {
    ExpectExactDecode(half::F16ToF32(static_cast<uint16_t>(b)), RefF16(static_cast<uint16_t>(b)),
                      b);
  }
}

TEST(OpsF16ToF32, SpecialValues) {
  EXPECT_EQ(half::F16ToF32(0x3C00), 1.0f);
  EXPECT_EQ(half::F16ToF32(0xC000), -2.0f);
  EXPECT_EQ(half::F16ToF32(0x7BFF), 65504.0f);                  // largest finite
  EXPECT_EQ(half::F16ToF32(0x0400), std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(half::F16ToF32(0x0001), std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(half::F16ToF32(0x03FF), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(half::F16ToF32(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(half::F16ToF32(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::signbit(half::F16ToF32(0x8000)));
  EXPECT_EQ(half::F16ToF32(0x8000), 0.0f);
  EXPECT_TRUE(std::isnan(half::F16ToF32(0x7E00)));
  EXPECT_TRUE(std::isnan(half::F16ToF32(0xFC01)));
}

TEST(OpsBf16ToF32, ExhaustiveMatchesReferenceDecoder) {
  for (uint32_t b = 0; b < 65536; ++b) {
    ExpectExactDecode(half::Bf16ToF32(static_cast<uint16_t>(b)), RefBf16(static_cast<uint16_t>(b)),
                      b);
  }
  EXPECT_EQ(half::Bf16ToF32(0x3F80), 1.0f);
  EXPECT_EQ(half::Bf16ToF32(0xC040), -3.0f);
}

// ---------------------------------------------------------------------------------------------
// Weight tensors over our own byte buffers.

uint16_t RandomF16Bits(std::mt19937* rng) {
  // Finite values of moderate magnitude, including subnormals (exponent field 0): |v| < 4.
  std::uniform_int_distribution<int> exp_dist(0, 16), mant_dist(0, 1023), sign_dist(0, 1);
  return static_cast<uint16_t>((sign_dist(*rng) << 15) | (exp_dist(*rng) << 10) | mant_dist(*rng));
}

struct Weights {
  std::vector<uint8_t> buffer;
  TensorView view;
  std::vector<double> decoded;  // [rows, cols], exact values of the stored elements
  std::vector<float> decoded_f32;
};

// Builds a [rows, cols] tensor of `dtype` at byte `offset` inside its buffer (offset 1 gives an
// F32 tensor that is not 4-byte aligned).
Weights MakeWeights(DType dtype, int64_t rows, int64_t cols, size_t offset, std::mt19937* rng) {
  Weights w;
  const int64_t n = rows * cols;
  const size_t elem = dtype == DType::kF32 ? 4 : 2;
  w.buffer.assign(offset + n * elem + 8, 0xAB);
  uint8_t* base = w.buffer.data() + offset;
  w.decoded.resize(n);
  w.decoded_f32.resize(n);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == DType::kF32) {
      const float v = dist(*rng);
      std::memcpy(base + 4 * i, &v, 4);
      w.decoded[i] = v;
    } else if (dtype == DType::kBF16) {
      const float v = dist(*rng);
      uint32_t bits;
      std::memcpy(&bits, &v, 4);
      const uint16_t h = static_cast<uint16_t>(bits >> 16);
      std::memcpy(base + 2 * i, &h, 2);
      w.decoded[i] = RefBf16(h);
    } else {
      const uint16_t h = RandomF16Bits(rng);
      std::memcpy(base + 2 * i, &h, 2);
      w.decoded[i] = RefF16(h);
    }
    w.decoded_f32[i] = static_cast<float>(w.decoded[i]);
  }
  w.view.name = "test.weight";
  w.view.dtype = dtype;
  w.view.shape = {rows, cols};
  w.view.data = base;
  w.view.nbytes = n * elem;
  w.view.file = "memory";
  return w;
}

const char* Name(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    default:
      return "?";
  }
}

// Forward error bound of a float32 dot product of length n accumulated as Dot does (eight lane
// partial sums, the tail folded into lane 0, then a three-level pairwise combine): every
// product and every addition rounds once, and no term passes through more than
// n/8 + 8 (lane chain incl. tail) + 3 (combine) + 1 (product) roundings, so
// |dot - exact| <= (n/8 + 12) * kEps * sum |a_i b_i|.
double DotBound(int64_t n, double sum_abs) {
  return (static_cast<double>(n) / 8 + 12) * kEps * sum_abs;
}

TEST(OpsDot, MatchesDoubleReference) {
  std::mt19937 rng(1);
  for (int64_t n : {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 64, 257, 1000, 4099}) {
    const std::vector<float> a = RandomFloats(n, &rng), b = RandomFloats(n, &rng);
    double ref = 0, sum_abs = 0;
    for (int64_t i = 0; i < n; ++i) {
      ref += static_cast<double>(a[i]) * b[i];
      sum_abs += std::fabs(static_cast<double>(a[i]) * b[i]);
    }
    const float got = ops::Dot(a.data(), b.data(), n);
    EXPECT_NEAR(got, ref, DotBound(n, sum_abs)) << "n=" << n;
  }
}

TEST(OpsDot, ExactOnSmallIntegers) {
  // Small integers: every product and partial sum is exact in float32.
  for (int64_t n : {1, 3, 7, 17, 31, 64, 257}) {
    std::vector<float> a(n), b(n);
    double ref = 0;
    for (int64_t i = 0; i < n; ++i) {
      a[i] = static_cast<float>(i % 7 - 3);
      b[i] = static_cast<float>(i % 5 - 2);
      ref += static_cast<double>(a[i]) * b[i];
    }
    EXPECT_EQ(ops::Dot(a.data(), b.data(), n), ref) << "n=" << n;
  }
}

// Row n of w dotted with x_row in double on the exact weight values, and sum |w x|.
struct ExactDot {
  double sum = 0, magnitude = 0;
};
ExactDot RowDot(const Weights& w, int64_t n, const float* x_row) {
  const int64_t k = w.view.cols();
  ExactDot d;
  for (int64_t i = 0; i < k; ++i) {
    const double p = w.decoded[n * k + i] * x_row[i];
    d.sum += p;
    d.magnitude += std::fabs(p);
  }
  return d;
}

// MatMul reference: y[t, n] = sum_k x[t, k] * W[n, k] in double on the exact weight values.
void CheckMatMul(const Weights& w, const std::vector<float>& x, int64_t s,
                 const std::vector<float>& y) {
  const int64_t n_out = w.view.rows(), k = w.view.cols();
  for (int64_t t = 0; t < s; ++t) {
    for (int64_t n = 0; n < n_out; ++n) {
      const ExactDot ref = RowDot(w, n, x.data() + t * k);
      ASSERT_NEAR(y[t * n_out + n], ref.sum, DotBound(k, ref.magnitude))
          << Name(w.view.dtype) << " N=" << n_out << " K=" << k << " s=" << s << " t=" << t
          << " n=" << n;
      // Since the weights decode exactly, each output is the one-row, one-token product of the
      // decoded row, whatever the token count, row blocking and thread count (batch invariance).
      float single;
      ops::AttentionScores(x.data() + t * k, k, 1, w.decoded_f32.data() + n * k, k, 1, k, &single,
                           1);
      ASSERT_EQ(y[t * n_out + n], single);
    }
  }
}

struct MatMulCase {
  DType dtype;
  size_t offset;
};

TEST(OpsMatMul, MatchesReferenceForEveryDtypeAndThreadCount) {
  std::mt19937 rng(2);
  const MatMulCase cases[] = {{DType::kF32, 0},  {DType::kF32, 1},  {DType::kF32, 2},
                              {DType::kBF16, 0}, {DType::kBF16, 1}, {DType::kF16, 0},
                              {DType::kF16, 3}};
  ThreadPool pool1(1), pool2(2), pool3(3);
  ThreadPool* pools[] = {&pool1, &pool2, &pool3};
  const int64_t sizes[][2] = {{1, 1},   {3, 7},    {17, 1},  {7, 17},   {31, 64},
                              {64, 31}, {33, 257}, {257, 9}, {100, 100}};
  for (const MatMulCase& c : cases) {
    for (const auto& nk : sizes) {
      const Weights w = MakeWeights(c.dtype, nk[0], nk[1], c.offset, &rng);
      // 1-4 tokens: decode's matvec kernels; 5 and more: prefill's blocked kernel (6 tokens x
      // 4 rows per register block on AVX-512, 4 x 2 elsewhere), with token and row tails.
      for (int64_t s : {1, 2, 3, 4, 5, 6, 7, 13}) {
        const std::vector<float> x = RandomFloats(s * nk[1], &rng);
        std::vector<float> y_serial(s * nk[0], NAN);
        ops::MatMul(w.view, x.data(), s, y_serial.data(), nullptr);
        CheckMatMul(w, x, s, y_serial);
        if (HasFatalFailure()) return;
        // Every thread count computes each output with the same Dot: bit-identical.
        for (ThreadPool* pool : pools) {
          std::vector<float> y(s * nk[0], NAN);
          ops::MatMul(w.view, x.data(), s, y.data(), pool);
          ASSERT_EQ(0, std::memcmp(y.data(), y_serial.data(), y.size() * sizeof(float)))
              << Name(c.dtype) << " offset " << c.offset << " N=" << nk[0] << " K=" << nk[1]
              << " s=" << s << " threads=" << pool->num_threads();
        }
      }
    }
  }
}

TEST(OpsMatMul, RowSliceGivesTheSameRows) {
  std::mt19937 rng(3);
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    const int64_t rows = 37, cols = 19, s = 3;
    const Weights w = MakeWeights(dtype, rows, cols, 1, &rng);
    const std::vector<float> x = RandomFloats(s * cols, &rng);
    std::vector<float> full(s * rows);
    ops::MatMul(w.view, x.data(), s, full.data(), nullptr);
    for (int64_t first : {0, 5, 35}) {
      for (int64_t count : {1, 2}) {
        const TensorView slice = w.view.RowSlice(first, count);
        std::vector<float> part(s * count);
        ThreadPool pool(2);
        ops::MatMul(slice, x.data(), s, part.data(), &pool);
        for (int64_t t = 0; t < s; ++t) {
          for (int64_t n = 0; n < count; ++n) {
            EXPECT_EQ(part[t * count + n], full[t * rows + first + n]) << Name(dtype);
          }
        }
      }
    }
  }
}

// Stacked experts [experts * rows, k] quantized to `plain` (Q8_0, Q4_0, Q4_K or Q6_K), then
// interleaved in groups of 16 rows when `interleave` names a 16-row layout.
struct StackedWeights {
  std::vector<uint8_t> bytes;
  TensorView view;
};
StackedWeights MakeStackedWeights(DType plain, DType interleave, int64_t total_rows, int64_t k,
                                  std::mt19937* rng) {
  const uint64_t row_bytes = RowBytes(plain, k);
  std::vector<uint8_t> rows(total_rows * row_bytes);
  for (int64_t r = 0; r < total_rows; ++r) {
    quant::QuantizeRow(plain, RandomFloats(k, rng).data(), k, rows.data() + r * row_bytes);
  }
  StackedWeights w;
  w.view.dtype = plain;
  if (interleave != plain) {
    w.bytes.resize(rows.size());
    const uint64_t group_bytes = 16 * row_bytes;
    for (int64_t g = 0; g < total_rows / 16; ++g) {
      const uint8_t* src = rows.data() + g * group_bytes;
      uint8_t* dst = w.bytes.data() + g * group_bytes;
      if (interleave == DType::kQ4_0x16) {
        kernels::pack::RepackGroupQ4_0x16(src, row_bytes, k / 32, dst);
      } else if (interleave == DType::kQ8_0x16) {
        kernels::pack::RepackGroupQ8_0x16(src, row_bytes, k / 32, dst);
      } else if (interleave == DType::kQ4_Kx16) {
        kernels::pack::RepackGroupQ4_Kx16(src, row_bytes, k / 256, dst);
      } else {
        kernels::pack::RepackGroupQ6_Kx16(src, row_bytes, k / 256, dst);
      }
    }
    w.view.dtype = interleave;
  } else {
    w.bytes = std::move(rows);
  }
  w.view.shape = {total_rows, k};
  w.view.data = w.bytes.data();
  w.view.nbytes = w.bytes.size();
  return w;
}

// MoE experts as one grouped matmul: every output bit-identical to MatMul of its expert's row
// slice with its tokens (in pieces under 16 tokens), for groups of 1, 2, 3, 16, 17 and 33 tokens
// (token tiles of 16 and their tails), every interleaved layout, a plain layout (one MatMul per
// group), and any pool.
TEST(OpsMatMulGrouped, EachGroupAsItsOwnMatMul) {
  std::mt19937 rng(11);
  const struct {
    DType plain, layout;
    int64_t k;
  } cases[] = {{DType::kQ4_0, DType::kQ4_0x16, 96},  {DType::kQ8_0, DType::kQ8_0x16, 64},
               {DType::kQ4_K, DType::kQ4_Kx16, 256}, {DType::kQ6_K, DType::kQ6_Kx16, 512},
               {DType::kQ8_0, DType::kQ8_0, 64},     {DType::kQ4_K, DType::kQ4_K, 256}};
  const int64_t experts = 7, rows = 32;
  // (expert, tokens) in increasing expert order, as the MoE layer routes them; expert 3 and 5
  // get none.
  const int64_t routed[][2] = {{0, 2}, {1, 17}, {2, 1}, {4, 33}, {6, 3}};
  std::vector<ops::MatMulGroup> groups;
  int64_t total = 0;
  for (const auto& [expert, tokens] : routed) {
    groups.push_back({expert * rows, total, tokens});
    total += tokens;
  }
  ThreadPool pool1(1), pool2(2), pool3(3);
  for (const auto& c : cases) {
    const StackedWeights w = MakeStackedWeights(c.plain, c.layout, experts * rows, c.k, &rng);
    const std::vector<float> x = RandomFloats(total * c.k, &rng);
    // Each group's MatMul in pieces of at most 8 tokens: the int8 kernels' results, which are
    // the same for any piece of tokens. (Where the table has bf16 tile kernels (AMX), MatMul of
    // 16 tokens or more rounds the activations to bf16 instead; the experts' few tokens each
    // keep the int8 kernels.)
    std::vector<float> expected(total * rows, NAN);
    for (const ops::MatMulGroup& g : groups) {
      for (int64_t t = 0; t < g.tokens; t += 8) {
        ops::MatMul(w.view.RowSlice(g.first_row, rows), x.data() + (g.first_token + t) * c.k,
                    std::min<int64_t>(8, g.tokens - t),
                    expected.data() + (g.first_token + t) * rows, nullptr);
      }
    }
    for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool1, &pool2, &pool3}) {
      std::vector<float> y(total * rows, NAN);
      ops::MatMulGrouped(w.view, rows, groups.data(), static_cast<int64_t>(groups.size()), x.data(),
                         y.data(), pool);
      ASSERT_EQ(0, std::memcmp(y.data(), expected.data(), y.size() * sizeof(float)))
          << DTypeName(c.layout) << " threads " << (pool ? pool->num_threads() : 0);
    }
    // One token on each of several experts: a decode step.
    std::vector<ops::MatMulGroup> step;
    for (int64_t e : {1, 4, 6}) step.push_back({e * rows, static_cast<int64_t>(step.size()), 1});
    std::vector<float> one(3 * rows, NAN), each(3 * rows, NAN);
    ops::MatMulGrouped(w.view, rows, step.data(), 3, x.data(), one.data(), &pool2);
    for (const ops::MatMulGroup& g : step) {
      ops::MatMul(w.view.RowSlice(g.first_row, rows), x.data() + g.first_token * c.k, 1,
                  each.data() + g.first_token * rows, nullptr);
    }
    ASSERT_EQ(0, std::memcmp(one.data(), each.data(), one.size() * sizeof(float)))
        << DTypeName(c.layout);
  }
}

// Where the table has bf16 tile kernels (AMX), MatMul of 16 tokens or more over x16 weights
// rounds the activations and the dequantized weights to bf16 and sums in f32: each output
// within (blocks + 8) 2^-23 sum |w a| of the exact sum of those bf16 products (the matrix in
// segments of 64 blocks over two 256-token blocks: K = 4160 makes three segments, added up),
// with the same bits for any pool. Three 16-row groups: a pair and an odd one.
TEST(OpsMatMulTiles, Bf16TilesForRunsOf16TokensOrMore) {
  const kernels::KernelTable& table = kernels::BestTable();
  if (table.tiles_q4_0x16 == nullptr) GTEST_SKIP() << "no bf16 tile kernels on this CPU";
  std::mt19937 rng(13);
  const struct {
    DType plain, layout;
    int64_t k;
  } cases[] = {{DType::kQ4_0, DType::kQ4_0x16, 4160},
               {DType::kQ8_0, DType::kQ8_0x16, 96},
               {DType::kQ4_K, DType::kQ4_Kx16, 2304},
               {DType::kQ6_K, DType::kQ6_Kx16, 512}};
  const int64_t rows = 48, s = 290;
  ThreadPool pool3(3);
  for (const auto& c : cases) {
    const StackedWeights w = MakeStackedWeights(c.plain, c.layout, rows, c.k, &rng);
    const std::vector<float> x = RandomFloats(s * c.k, &rng);
    std::vector<float> wf(rows * c.k);
    for (int64_t r = 0; r < rows; ++r) ops::ToF32(w.view, r * c.k, c.k, wf.data() + r * c.k);
    std::vector<float> y(s * rows, NAN), y3(s * rows, NAN);
    ops::MatMul(w.view, x.data(), s, y.data(), nullptr);
    ops::MatMul(w.view, x.data(), s, y3.data(), &pool3);
    ASSERT_EQ(0, std::memcmp(y.data(), y3.data(), y.size() * sizeof(float))) << DTypeName(c.layout);
    for (int64_t t = 0; t < s; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        double want = 0, magnitude = 0;
        for (int64_t i = 0; i < c.k; ++i) {
          uint32_t bits;
          std::memcpy(&bits, &x[t * c.k + i], 4);
          const float a = (bits & 0x7F800000) == 0 ? 0.0f : x[t * c.k + i];  // as VCVTNE2PS2BF16
          const double p = static_cast<double>(half::Bf16ToF32(half::F32ToBf16(wf[r * c.k + i]))) *
                           half::Bf16ToF32(half::F32ToBf16(a));
          want += p;
          magnitude += std::fabs(p);
        }
        ASSERT_NEAR(y[t * rows + r], want, (c.k / 32 + 8) * std::ldexp(magnitude, -23))
            << DTypeName(c.layout) << " token " << t << " row " << r;
      }
    }
  }
}

// Where the table has bf16 tile kernels (AMX), MatMul of 16 tokens or more over BF16 rows
// (rows a multiple of 16, K of 32) splits each activation into three bf16 parts and sums the
// exact products in f32 on the tiles: within the f32 summation bound of the double sums, the
// same bits for any pool, and (the effect of the path) not the bits of the f32 kernels, which
// fewer tokens still take. K = 2240 makes two 64-block segments; 48 rows a pair of groups and
// an odd one; 150 tokens two 128-token blocks. 40 rows (not a multiple of 16) keep the f32
// kernels at every token count.
TEST(OpsMatMulTiles, Bf16RowsOnTilesForRunsOf16TokensOrMore) {
  const kernels::KernelTable& table = kernels::BestTable();
  if (table.tiles_bf16 == nullptr) GTEST_SKIP() << "no bf16 tile kernels on this CPU";
  std::mt19937 rng(17);
  ThreadPool pool3(3);
  for (int64_t rows : {48, 40}) {
    const int64_t k = 2240;
    const Weights w = MakeWeights(DType::kBF16, rows, k, 0, &rng);
    for (int64_t s : {150, 16}) {
      const std::vector<float> x = RandomFloats(s * k, &rng);
      std::vector<float> y(s * rows, NAN), y3(s * rows, NAN), f32_kernels(s * rows, NAN);
      ops::MatMul(w.view, x.data(), s, y.data(), nullptr);
      ops::MatMul(w.view, x.data(), s, y3.data(), &pool3);
      ASSERT_EQ(0, std::memcmp(y.data(), y3.data(), y.size() * sizeof(float))) << rows;
      for (int64_t t = 0; t < s; t += 4) {  // four tokens at a time: the f32 kernels
        ops::MatMul(w.view, x.data() + t * k, std::min<int64_t>(4, s - t),
                    f32_kernels.data() + t * rows, nullptr);
      }
      int64_t differ = 0;
      for (int64_t t = 0; t < s; ++t) {
        for (int64_t n = 0; n < rows; ++n) {
          const ExactDot want = RowDot(w, n, x.data() + t * k);
          ASSERT_NEAR(y[t * rows + n], want.sum, (3 * k + 2) * std::ldexp(want.magnitude, -24))
              << "rows " << rows << " s " << s << " token " << t << " row " << n;
          differ += y[t * rows + n] != f32_kernels[t * rows + n];
        }
      }
      if (rows % 16 == 0) {
        EXPECT_GT(differ, s * rows / 4) << "s " << s << ": the f32 kernels' sums, not the tiles'";
      } else {
        EXPECT_EQ(differ, 0) << "40 rows: the f32 kernels at every token count";
      }
    }
  }
}

// MatMul's run_tokens: pieces of a run (5, 16 and 19 of 40 tokens) computed apart give the
// bits of the whole run's call, over BF16 rows and Q4_0x16 groups alike, where the table has
// tile kernels (each token's outputs do not depend on its neighbours there). Without it the
// 5-token piece takes the f32 / int8 kernels: other bits.
TEST(OpsMatMulTiles, PiecesOfARunGiveTheRunsBits) {
  const kernels::KernelTable& table = kernels::BestTable();
  if (table.tiles_bf16 == nullptr) GTEST_SKIP() << "no bf16 tile kernels on this CPU";
  std::mt19937 rng(19);
  const int64_t rows = 48, k = 2240, s = 40;
  const Weights bf16 = MakeWeights(DType::kBF16, rows, k, 0, &rng);
  const StackedWeights q4 = MakeStackedWeights(DType::kQ4_0, DType::kQ4_0x16, rows, k, &rng);
  const std::vector<float> x = RandomFloats(s * k, &rng);
  for (const TensorView* w : {&bf16.view, &q4.view}) {
    std::vector<float> whole(s * rows), pieces(s * rows), alone(5 * rows);
    ops::MatMul(*w, x.data(), s, whole.data(), nullptr);
    for (const auto& [first, count] : {std::pair{0, 5}, std::pair{5, 16}, std::pair{21, 19}}) {
      ops::MatMul(*w, x.data() + first * k, count, pieces.data() + first * rows, nullptr, s);
    }
    EXPECT_EQ(0, std::memcmp(whole.data(), pieces.data(), whole.size() * sizeof(float)))
        << DTypeName(w->dtype);
    ops::MatMul(*w, x.data(), 5, alone.data(), nullptr);
    EXPECT_NE(0, std::memcmp(whole.data(), alone.data(), alone.size() * sizeof(float)))
        << DTypeName(w->dtype) << ": 5 tokens alone take the other kernels";
  }
}

// Prefill steps of any size (up to 512 tokens a call, the k blocking of the tile kernels fixed)
// give a token the same bits: calls of 16, 128, 300 and 556 tokens against one of 600, which
// the kernels cut into two passes of up to 33 token tiles. K of 70 blocks: three segments.
TEST(OpsMatMulTiles, EveryCallSizeGivesATokenTheSameBits) {
  const kernels::KernelTable& table = kernels::BestTable();
  if (table.tiles_q4_0x16 == nullptr) GTEST_SKIP() << "no bf16 tile kernels on this CPU";
  std::mt19937 rng(23);
  const int64_t rows = 80, k = 2240, s = 600;
  const StackedWeights q4 = MakeStackedWeights(DType::kQ4_0, DType::kQ4_0x16, rows, k, &rng);
  const std::vector<float> x = RandomFloats(s * k, &rng);
  ThreadPool pool(2);
  std::vector<float> whole(s * rows);
  ops::MatMul(q4.view, x.data(), s, whole.data(), &pool);
  for (const int64_t count : {16, 128, 300, 556}) {
    std::vector<float> pieces(s * rows);
    for (int64_t first = 0; first < s; first += count) {
      const int64_t n = std::max<int64_t>(16, std::min(count, s - first));  // runs of 16 or more
      const int64_t start = std::min(first, s - n);
      ops::MatMul(q4.view, x.data() + start * k, n, pieces.data() + start * rows, &pool);
    }
    EXPECT_EQ(0, std::memcmp(whole.data(), pieces.data(), whole.size() * sizeof(float)))
        << "calls of " << count << " tokens";
  }
}

// The towers' GEMM: each output is one chain of fused multiply-adds over k in order on the exact
// weight values (so the same bits on every ISA and tile shape), whatever the token count, the
// thread count and the position of the token in its tile, for odd shapes (token, row and k tails
// of every tile size), unaligned F32 / F16 weights and an unaligned x.
TEST(OpsMatMulGemm, FmaChainInKOrderForEveryDtypeShapeAndThreadCount) {
  std::mt19937 rng(5);
  const MatMulCase cases[] = {{DType::kF32, 0},  {DType::kF32, 1},  {DType::kF32, 2},
                              {DType::kBF16, 0}, {DType::kBF16, 1}, {DType::kF16, 0},
                              {DType::kF16, 3}};
  ThreadPool pool1(1), pool2(2), pool3(3);
  ThreadPool* pools[] = {&pool1, &pool2, &pool3};
  const int64_t sizes[][2] = {{1, 1},   {3, 7},    {17, 1},  {33, 257}, {31, 64},
                              {64, 31}, {65, 100}, {100, 3}, {257, 9}};
  for (const MatMulCase& c : cases) {
    for (const auto& nk : sizes) {
      const int64_t n_out = nk[0], k = nk[1];
      const Weights w = MakeWeights(c.dtype, n_out, k, c.offset, &rng);
      for (int64_t s : {1, 2, 3, 5, 13, 14, 15, 29, 31}) {
        // x one float past an aligned start.
        std::vector<float> x_storage = RandomFloats(s * k + 1, &rng);
        const float* x = x_storage.data() + 1;
        std::vector<float> y_serial(s * n_out, NAN);
        ops::MatMulGemm(w.view, x, s, y_serial.data(), nullptr);
        for (int64_t t = 0; t < s; ++t) {
          for (int64_t n = 0; n < n_out; ++n) {
            float chain = 0.0f;
            double ref = 0, sum_abs = 0;
            for (int64_t i = 0; i < k; ++i) {
              chain = std::fma(x[t * k + i], w.decoded_f32[n * k + i], chain);
              ref += w.decoded[n * k + i] * x[t * k + i];
              sum_abs += std::fabs(w.decoded[n * k + i] * x[t * k + i]);
            }
            ASSERT_EQ(y_serial[t * n_out + n], chain)
                << Name(c.dtype) << " offset " << c.offset << " N=" << n_out << " K=" << k
                << " s=" << s << " t=" << t << " n=" << n;
            // A chain of k roundings: |y - exact| <= k * eps * sum |x_i w_i|.
            ASSERT_NEAR(y_serial[t * n_out + n], ref, static_cast<double>(k) * kEps * sum_abs);
          }
        }
        for (ThreadPool* pool : pools) {
          std::vector<float> y(s * n_out, NAN);
          ops::MatMulGemm(w.view, x, s, y.data(), pool);
          ASSERT_EQ(0, std::memcmp(y.data(), y_serial.data(), y.size() * sizeof(float)))
              << Name(c.dtype) << " offset " << c.offset << " N=" << n_out << " K=" << k
              << " s=" << s << " threads=" << pool->num_threads();
        }
        // 16-bit weights packed as they are (the towers' load-time panels): the same bits.
        if (c.dtype != DType::kF32 && c.offset % 2 == 0) {
          ops::PackedGemmWeights packed;
          ASSERT_TRUE(ops::PackGemmWeights16(w.view, &packed, s % 2 == 0 ? &pool2 : nullptr).ok());
          EXPECT_EQ(packed.PanelBytes(), ops::PackedGemm16Bytes(n_out, k));
          for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
            std::vector<float> y(s * n_out, NAN);
            ops::MatMulGemm(packed, x, s, y.data(), pool);
            ASSERT_EQ(0, std::memcmp(y.data(), y_serial.data(), y.size() * sizeof(float)))
                << "16-bit panels " << Name(c.dtype) << " N=" << n_out << " K=" << k << " s=" << s;
          }
        }
      }
    }
  }
}

// PackGemmWeights16 takes 16-bit float matrices only, and says which tensor it refused.
TEST(OpsMatMulGemm, PackGemmWeights16RefusesOtherTypes) {
  std::mt19937 rng(8);
  Weights w = MakeWeights(DType::kF32, 4, 8, 0, &rng);
  w.view.name = "a.blk.0.ffn_up.weight";
  ops::PackedGemmWeights packed;
  const Status st = ops::PackGemmWeights16(w.view, &packed, nullptr);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("a.blk.0.ffn_up.weight"), std::string::npos) << st.message();
  EXPECT_EQ(packed.panels16, nullptr);
}

// Weights packed once (PackGemmWeights) give MatMulGemm's bits for every slice of tokens.
TEST(OpsMatMulGemm, PackedWeightsGiveTheSameBitsPerSlice) {
  std::mt19937 rng(6);
  const Weights w = MakeWeights(DType::kF16, 45, 37, 1, &rng);
  const int64_t s = 31;
  std::vector<float> x = RandomFloats(s * 37, &rng);
  ThreadPool pool(2);
  std::vector<float> whole(s * 45), sliced(s * 45);
  ops::MatMulGemm(w.view, x.data(), s, whole.data(), &pool);
  ops::PackedGemmWeights packed;
  ops::PackGemmWeights(w.view, &packed, &pool);
  for (int64_t t0 = 0; t0 < s; t0 += 9) {
    ops::MatMulGemm(packed, x.data() + t0 * 37, std::min<int64_t>(9, s - t0),
                    sliced.data() + t0 * 45, nullptr);
  }
  EXPECT_EQ(0, std::memcmp(whole.data(), sliced.data(), whole.size() * sizeof(float)));
}

// The vision tower's attention against a double-precision softmax attention, for odd token
// counts and head widths (tile, panel and packing tails), grouped KV heads and strided rows;
// the same bits whatever the thread count.
TEST(OpsDenseAttention, MatchesSoftmaxAttentionForOddShapesAndThreadCounts) {
  std::mt19937 rng(7);
  ThreadPool pool1(1), pool2(2), pool3(3);
  struct Shape {
    int64_t n;
    int heads, kv_heads, hd;
  };
  for (const Shape& sh : {Shape{1, 1, 1, 8}, Shape{13, 2, 1, 17}, Shape{47, 4, 2, 33},
                          Shape{70, 3, 3, 72}, Shape{100, 2, 2, 64}}) {
    const int64_t ldq = sh.heads * sh.hd + 3, ldkv = sh.kv_heads * sh.hd + 1,
                  ldo = sh.heads * sh.hd + 2;
    const std::vector<float> q = RandomFloats(sh.n * ldq, &rng),
                             k = RandomFloats(sh.n * ldkv, &rng),
                             v = RandomFloats(sh.n * ldkv, &rng);
    std::vector<float> serial(sh.n * ldo, -5.0f);
    ops::DenseAttention(q.data(), ldq, k.data(), ldkv, v.data(), ldkv, sh.n, sh.heads, sh.kv_heads,
                        sh.hd, serial.data(), ldo, nullptr);
    const int rep = sh.heads / sh.kv_heads;
    for (int64_t t = 0; t < sh.n; ++t) {
      for (int h = 0; h < sh.heads; ++h) {
        const int g = h / rep;
        std::vector<double> p(sh.n);
        double max = -1e300, sum = 0;
        for (int64_t j = 0; j < sh.n; ++j) {
          double dot = 0;
          for (int i = 0; i < sh.hd; ++i) {
            dot += double{q[t * ldq + h * sh.hd + i]} * k[j * ldkv + g * sh.hd + i];
          }
          p[j] = dot;
          max = std::max(max, dot);
        }
        for (double& e : p) sum += (e = std::exp(e - max));
        for (int i = 0; i < sh.hd; ++i) {
          double want = 0;
          for (int64_t j = 0; j < sh.n; ++j) want += p[j] / sum * v[j * ldkv + g * sh.hd + i];
          ASSERT_NEAR(serial[t * ldo + h * sh.hd + i], want, 2e-5)
              << "n " << sh.n << " t " << t << " h " << h << " i " << i;
        }
      }
      for (int64_t i = sh.heads * sh.hd; i < ldo; ++i) ASSERT_EQ(serial[t * ldo + i], -5.0f);
    }
    for (ThreadPool* pool : {&pool1, &pool2, &pool3}) {
      std::vector<float> out(sh.n * ldo, -5.0f);
      ops::DenseAttention(q.data(), ldq, k.data(), ldkv, v.data(), ldkv, sh.n, sh.heads,
                          sh.kv_heads, sh.hd, out.data(), ldo, pool);
      ASSERT_EQ(0, std::memcmp(out.data(), serial.data(), out.size() * sizeof(float)))
          << "n " << sh.n << " threads " << pool->num_threads();
    }
  }
}

TEST(OpsToF32, ConvertsRangesOfEveryDtype) {
  std::mt19937 rng(4);
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (size_t offset : {0, 1}) {
      const Weights w = MakeWeights(dtype, 5, 13, offset, &rng);
      for (int64_t first : {0, 1, 12, 40}) {
        for (int64_t count : {0, 1, 7, 25}) {
          std::vector<float> out(count + 1, 123.0f);
          ops::ToF32(w.view, first, count, out.data());
          for (int64_t i = 0; i < count; ++i) EXPECT_EQ(out[i], w.decoded[first + i]);
          EXPECT_EQ(out[count], 123.0f) << "wrote past the end";
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// RmsNorm. The implementation sums squares in double, then performs (cast to float, + eps, sqrt,
// 1/x, x * inv, * weight): at most six float roundings of kEps / 2 each, so the relative error
// of each output is below 3 kEps (plus double summation error, negligible). Bound: 4 kEps |ref|.

void CheckRmsNorm(const std::vector<float>& x, const float* weight, float eps,
                  const std::vector<float>& out) {
  const int64_t n = static_cast<int64_t>(x.size());
  double ss = 0;
  for (float v : x) ss += static_cast<double>(v) * v;
  const double inv = 1.0 / std::sqrt(ss / n + eps);
  for (int64_t i = 0; i < n; ++i) {
    const double ref = x[i] * inv * (weight ? weight[i] : 1.0);
    ASSERT_NEAR(out[i], ref, 4 * kEps * std::fabs(ref) + 1e-30) << "n=" << n << " i=" << i;
  }
}

TEST(OpsRmsNorm, WithAndWithoutWeight) {
  std::mt19937 rng(5);
  for (int64_t n : kOddSizes) {
    for (float scale : {1e-3f, 1.0f, 300.0f}) {
      for (float eps : {1e-6f, 1e-2f}) {
        const std::vector<float> x = RandomFloats(n, &rng, -scale, scale);
        const std::vector<float> w = RandomFloats(n, &rng, -2.0f, 2.0f);
        std::vector<float> out(n);
        ops::RmsNorm(x.data(), nullptr, n, eps, out.data());
        CheckRmsNorm(x, nullptr, eps, out);
        std::vector<float> out_w(n);
        ops::RmsNorm(x.data(), w.data(), n, eps, out_w.data());
        CheckRmsNorm(x, w.data(), eps, out_w);
        // In place gives the same bits.
        std::vector<float> in_place = x;
        ops::RmsNorm(in_place.data(), w.data(), n, eps, in_place.data());
        EXPECT_EQ(0, std::memcmp(in_place.data(), out_w.data(), n * sizeof(float)));
      }
    }
  }
}

TEST(OpsRmsNorm, ZeroInputGivesZero) {
  std::vector<float> x(17, 0.0f), out(17, 1.0f);
  ops::RmsNorm(x.data(), nullptr, 17, 1e-6f, out.data());
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

// ---------------------------------------------------------------------------------------------
// Softmax. With d_i = x_i - max, the float path rounds d_i (relative kEps / 2, i.e. absolute
// |d_i| kEps / 2 in the exponent, hence relative |d_i| kEps / 2 in exp(d_i)), rounds expf
// (< 1 ulp = kEps), sums in double and divides (two more roundings). So
// |p_i - ref_i| <= ref_i (|d_i| + sum_j ref_j |d_j| + 4) kEps, plus the absolute rounding of
// exp results that land among the float subnormals (2^-149 each).

void CheckSoftmax(const std::vector<float>& in) {
  const int64_t n = static_cast<int64_t>(in.size());
  std::vector<float> got = in;
  ops::Softmax(got.data(), n);
  double mx = -INFINITY;
  for (float v : in) mx = std::max(mx, static_cast<double>(v));
  std::vector<double> ref(n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += (ref[i] = std::exp(in[i] - mx));
  double weighted_d = 0;
  for (int64_t i = 0; i < n; ++i) {
    ref[i] /= sum;
    if (ref[i] > 0) weighted_d += ref[i] * std::fabs(in[i] - mx);
  }
  double got_sum = 0, bound_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = std::fabs(in[i] - mx);
    const double bound =
        ref[i] * (std::min(d, 200.0) + weighted_d + 4) * kEps + 4 * std::ldexp(1.0, -149);
    ASSERT_NEAR(got[i], ref[i], bound) << "n=" << n << " i=" << i << " x=" << in[i];
    ASSERT_GE(got[i], 0.0f);
    got_sum += got[i];
    bound_sum += bound;
  }
  EXPECT_NEAR(got_sum, 1.0, bound_sum + 1e-12) << "n=" << n;
}

TEST(OpsSoftmax, MatchesReferenceAndSumsToOne) {
  std::mt19937 rng(6);
  for (int64_t n : kOddSizes) {
    for (float scale : {0.1f, 1.0f, 10.0f, 50.0f}) {
      CheckSoftmax(RandomFloats(n, &rng, -scale, scale));
      if (HasFatalFailure()) return;
    }
  }
}

TEST(OpsSoftmax, LargeMagnitudeInputs) {
  std::mt19937 rng(7);
  for (int64_t n : kOddSizes) {
    for (float offset : {1e4f, -1e4f, 1e20f, -1e30f, 3e38f}) {
      std::vector<float> x = RandomFloats(n, &rng, -20.0f, 20.0f);
      for (float& v : x) v += offset;  // the spread collapses when |offset| >> 20
      CheckSoftmax(x);
      if (HasFatalFailure()) return;
    }
    // Huge spread: only the maximum survives.
    std::vector<float> x = RandomFloats(n, &rng, -1e30f, 1e30f);
    x[n / 2] = 3e38f;
    if (n > 1) x[0] = -3e38f;
    std::vector<float> got = x;
    ops::Softmax(got.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(got[i], i == n / 2 ? 1.0f : 0.0f) << "n=" << n;
  }
}

TEST(OpsSoftmax, EqualInputsAndMaskedEntries) {
  for (int64_t n : kOddSizes) {
    std::vector<float> x(n, 4.5f);
    ops::Softmax(x.data(), n);
    for (float v : x) EXPECT_EQ(v, 1.0f / static_cast<float>(n));
    // -inf (masked) entries get exactly 0 and do not disturb the others.
    std::vector<float> m(n + 2, -INFINITY);
    for (int64_t i = 0; i < n; ++i) m[i + 1] = 4.5f;
    ops::Softmax(m.data(), n + 2);
    EXPECT_EQ(m.front(), 0.0f);
    EXPECT_EQ(m.back(), 0.0f);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(m[i + 1], 1.0f / static_cast<float>(n));
  }
}

// ---------------------------------------------------------------------------------------------
// GeluTanh against 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) in double. The float path
// computes the tanh argument with relative error ~4 kEps; its effect on tanh is damped by
// sech^2(u) |u| <= 0.45, and tanhf adds < 1 ulp (<= kEps) absolute. Where tanh -> -1 the sum
// 1 + tanh cancels, so the error is absolute in that factor: |g - ref| <= 0.5 |x| (kEps + 4 *
// 0.45 kEps) + 3 kEps |ref| (final products), bounded by (2 |x| + 4 |ref|) kEps. The constant
// 0.044715 is rounded to float on both sides, as PyTorch does.

double RefGelu(double x) {
  const double beta = std::sqrt(2.0 / M_PI);
  const double kappa = static_cast<double>(0.044715f);
  return 0.5 * x * (1.0 + std::tanh(beta * (x + kappa * x * x * x)));
}

TEST(OpsGeluTanh, MatchesFormulaInDouble) {
  std::vector<float> xs;
  for (int i = -1200; i <= 1200; ++i) xs.push_back(static_cast<float>(i) / 100.0f);
  std::mt19937 rng(8);
  for (float v : RandomFloats(2000, &rng, -30.0f, 30.0f)) xs.push_back(v);
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-6f, -1e-6f, 100.0f, -100.0f, 1e10f, -1e10f,
                  1e20f, -1e20f, 3e38f, -3e38f}) {
    xs.push_back(v);
  }
  for (float x : xs) {
    const double ref = RefGelu(x);
    const float got = kernels::GeluTanh(x);
    ASSERT_NEAR(got, ref, (2 * std::fabs(x) + 4 * std::fabs(ref)) * kEps) << "x=" << x;
  }
  EXPECT_EQ(kernels::GeluTanh(0.0f), 0.0f);
  EXPECT_EQ(kernels::GeluTanh(1e20f), 1e20f);
  EXPECT_EQ(kernels::GeluTanh(-1e20f), 0.0f);
}

// The pool version splits into whole 64-value runs, the last piece keeping the tail: every
// value must take the path it takes in one call, whatever the thread count (sizes around the
// 2 x 16 Ki-value threshold, with and without a tail, with and without u).
TEST(OpsGeluMul, PoolSplitIsBitIdentical) {
  std::mt19937 rng(9);
  ThreadPool pool2(2), pool3(3);
  // Bitwise (memcmp on an empty vector's null data() is undefined).
  auto same_bits = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() &&
           (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  };
  for (int64_t n : {int64_t{0}, int64_t{5}, int64_t{32767}, int64_t{32768}, int64_t{32769},
                    int64_t{100003}, int64_t{32 * 6144}, int64_t{32 * 6144 + 7}}) {
    const std::vector<float> g = RandomFloats(n, &rng, -6.0f, 6.0f), u = RandomFloats(n, &rng);
    for (bool with_u : {true, false}) {
      std::vector<float> serial(n), out(n);
      ops::GeluMul(g.data(), with_u ? u.data() : nullptr, serial.data(), n);
      for (ThreadPool* pool : {&pool2, &pool3}) {
        std::fill(out.begin(), out.end(), NAN);
        ops::GeluMul(g.data(), with_u ? u.data() : nullptr, out.data(), n, pool);
        ASSERT_TRUE(same_bits(out, serial))
            << "n=" << n << " u=" << with_u << " threads=" << pool->num_threads();
      }
      // In place (out aliasing g), as the MLP calls it.
      std::vector<float> in_place = g;
      ops::GeluMul(in_place.data(), with_u ? u.data() : nullptr, in_place.data(), n, &pool3);
      ASSERT_TRUE(same_bits(in_place, serial)) << "n=" << n;
    }
  }
}

// MatMulGeluMul activates each token's row right before quantizing it: the same bits as
// GeluMul then MatMul, for plain and 16-row interleaved block weights (the interleaved ones
// only where this CPU's kernels use them), float weights, odd token counts and thread counts.
TEST(OpsMatMulGeluMul, SameBitsAsGeluMulThenMatMul) {
  std::mt19937 rng(23);
  const kernels::KernelTable& table = kernels::BestTable();
  ThreadPool pool2(2), pool3(3);
  const int64_t rows = 48, k = 96;  // 3 groups of 16 rows, 3 blocks
  struct Case {
    DType stored, used;
  };
  std::vector<Case> cases = {{DType::kQ4_0, DType::kQ4_0}, {DType::kQ8_0, DType::kQ8_0}};
  if (table.gemm_q4_0x16 != nullptr) cases.push_back({DType::kQ4_0, DType::kQ4_0x16});
  if (table.gemm_q8_0x16 != nullptr) cases.push_back({DType::kQ8_0, DType::kQ8_0x16});
  for (const Case& c : cases) {
    const uint64_t row_bytes = RowBytes(c.stored, k);
    std::vector<uint8_t> plain(rows * row_bytes), bytes(rows * row_bytes);
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<float> wr = RandomFloats(k, &rng);
      quant::QuantizeRow(c.stored, wr.data(), k, plain.data() + r * row_bytes);
    }
    bytes = plain;
    if (c.used != c.stored) {
      const auto repack = c.used == DType::kQ4_0x16 ? kernels::pack::RepackGroupQ4_0x16
                                                    : kernels::pack::RepackGroupQ8_0x16;
      for (int64_t r = 0; r < rows; r += 16) {
        repack(plain.data() + r * row_bytes, row_bytes, k / 32, bytes.data() + r * row_bytes);
      }
    }
    TensorView w;
    w.name = "test.down";
    w.dtype = c.used;
    w.shape = {rows, k};
    w.data = bytes.data();
    w.nbytes = bytes.size();
    w.file = "memory";
    for (int64_t s : {1, 5, 8, 13, 21}) {
      const std::vector<float> g = RandomFloats(s * k, &rng, -4.0f, 4.0f);
      const std::vector<float> u = RandomFloats(s * k, &rng);
      std::vector<float> activated(s * k), want(s * rows);
      ops::GeluMul(g.data(), u.data(), activated.data(), s * k);
      ops::MatMul(w, activated.data(), s, want.data(), nullptr);
      for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
        std::vector<float> gate = g, got(s * rows, NAN);
        ops::MatMulGeluMul(w, gate.data(), u.data(), s, got.data(), pool);
        const int threads = pool != nullptr ? pool->num_threads() : 1;
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << DTypeName(c.used) << " s=" << s << " threads=" << threads;
        ASSERT_EQ(0, std::memcmp(gate.data(), activated.data(), gate.size() * sizeof(float)))
            << DTypeName(c.used) << " s=" << s << " threads=" << threads << ": g not activated";
      }
    }
  }
  // Float weights: GeluMul on the pool, then MatMul.
  const Weights w = MakeWeights(DType::kBF16, 33, 64, 0, &rng);
  const int64_t s = 7;
  const std::vector<float> g = RandomFloats(s * 64, &rng, -4.0f, 4.0f),
                           u = RandomFloats(s * 64, &rng);
  std::vector<float> activated(s * 64), want(s * 33), gate = g, got(s * 33);
  ops::GeluMul(g.data(), u.data(), activated.data(), s * 64);
  ops::MatMul(w.view, activated.data(), s, want.data(), nullptr);
  ops::MatMulGeluMul(w.view, gate.data(), u.data(), s, got.data(), &pool2);
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
}

// ---------------------------------------------------------------------------------------------
// ApplyRope. The angle inv_freq[i] * position is a float32 product (as in transformers' f32
// rotary embedding), so the reference rounds it to float too, then takes cos/sin in double.
// cosf/sinf add < 1 ulp, each output is two products and a sum: |err| <= 4 kEps (|a| + |b|).

TEST(OpsApplyRope, MatchesReference) {
  std::mt19937 rng(9);
  for (int head_dim : {2, 8, 34, 64, 256}) {
    const int half = head_dim / 2;
    std::vector<float> inv_freq(half);
    for (int i = 0; i < half; ++i) {
      inv_freq[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / head_dim));
    }
    for (int rotated : {half, half / 2, half > 1 ? 1 : 0, 0}) {
      for (int64_t pos : {0, 1, 2, 7, 100, 4097, 131071}) {
        const std::vector<float> x = RandomFloats(head_dim, &rng, -3.0f, 3.0f);
        std::vector<float> got = x;
        ops::ApplyRope(got.data(), head_dim, inv_freq.data(), rotated, pos);
        for (int i = 0; i < half; ++i) {
          const double a = x[i], b = x[i + half];
          if (i >= rotated || pos == 0) {
            // Untouched (rotated_pairs < half) or identity (position 0): exact same bits.
            EXPECT_EQ(0, std::memcmp(&got[i], &x[i], 4)) << head_dim << " " << rotated << " " << i;
            EXPECT_EQ(0, std::memcmp(&got[i + half], &x[i + half], 4));
            continue;
          }
          const double angle = static_cast<float>(inv_freq[i] * static_cast<float>(pos));
          const double c = std::cos(angle), s = std::sin(angle);
          const double tol = 4 * kEps * (std::fabs(a) + std::fabs(b));
          EXPECT_NEAR(got[i], a * c - b * s, tol) << "pos " << pos << " i " << i;
          EXPECT_NEAR(got[i + half], b * c + a * s, tol) << "pos " << pos << " i " << i;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// TensorView::RowSlice

TEST(TensorViewTest, RowSlice) {
  std::vector<uint8_t> buf(4 * 5 * 7);
  TensorView t;
  t.name = "w";
  t.dtype = DType::kF32;
  t.shape = {5, 7};
  t.data = buf.data();
  t.nbytes = buf.size();
  t.file = "f.safetensors";
  t.file_offset = 1000;
  EXPECT_EQ(t.rows(), 5);
  EXPECT_EQ(t.cols(), 7);
  TensorView s = t.RowSlice(2, 3);
  EXPECT_EQ(s.name, "w");
  EXPECT_EQ(s.dtype, DType::kF32);
  EXPECT_EQ(s.shape, (std::vector<int64_t>{3, 7}));
  EXPECT_EQ(s.data, buf.data() + 2 * 7 * 4);
  EXPECT_EQ(s.nbytes, 3u * 7 * 4);
  EXPECT_EQ(s.file, "f.safetensors");
  EXPECT_EQ(s.file_offset, 1000u + 2 * 7 * 4);
  EXPECT_EQ(s.rows(), 3);
  EXPECT_EQ(s.numel(), 21);

  // A 3-D tensor is sliced along its flattened rows; 2-byte types use 2-byte rows.
  TensorView b;
  b.dtype = DType::kBF16;
  b.shape = {2, 3, 4};
  b.data = buf.data() + 1;
  b.nbytes = 2 * 24;
  EXPECT_EQ(b.rows(), 6);
  EXPECT_EQ(b.cols(), 4);
  TensorView bs = b.RowSlice(1, 4);
  EXPECT_EQ(bs.shape, (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(bs.data, buf.data() + 1 + 8);
  EXPECT_EQ(bs.nbytes, 32u);
  EXPECT_EQ(bs.file_offset, 8u);

  // Empty slice at the end and the whole tensor.
  TensorView e = t.RowSlice(5, 0);
  EXPECT_EQ(e.nbytes, 0u);
  EXPECT_EQ(e.rows(), 0);
  TensorView all = t.RowSlice(0, 5);
  EXPECT_EQ(all.data, t.data);
  EXPECT_EQ(all.nbytes, t.nbytes);
}

TEST(OpsTest, RopeTableIsBitIdenticalToApplyRope) {
  std::vector<float> inv(64);
  for (int i = 0; i < 64; ++i) inv[i] = std::pow(10000.0f, -static_cast<float>(2 * i) / 128.0f);
  for (int64_t position : {0, 1, 37, 4095, 131071}) {
    for (int pairs : {64, 16, 0}) {
      std::vector<float> a(128), c(pairs), sn(pairs);
      for (int i = 0; i < 128; ++i) a[i] = std::sin(0.1f * i + position);
      std::vector<float> b = a;
      ops::ApplyRope(a.data(), 128, inv.data(), pairs, position);
      ops::RopeTable(inv.data(), pairs, position, c.data(), sn.data());
      ops::ApplyRopeTable(b.data(), 128, c.data(), sn.data(), pairs);
      EXPECT_EQ(a, b) << position << " " << pairs;
    }
  }
}

}  // namespace
}  // namespace gemma4
