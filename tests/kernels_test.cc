// Kernels (kernels/): every ISA's kernel against the scalar reference on random data with odd
// block counts and 1..4 tokens; repacked layouts against the plain rows; activation
// quantization.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "kernels/kernels.h"
#include "kernels/pack/pack.h"
#include "kernels/ref/reference_dots.h"
#include "ops/ops.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

std::vector<float> RandomVector(int64_t n, std::mt19937* rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(*rng);
  return v;
}

// ngroups 16-row groups of random rows (weights ~ N(0, 0.05)) in a plain block format, and
// their x16 repacking (group g's rows at g * 16 * row_bytes in both).
struct X16Weights {
  uint64_t row_bytes;
  std::vector<uint8_t> plain, packed;
};

X16Weights RandomX16Weights(DType plain,
                            void (*repack)(const uint8_t*, uint64_t, int64_t, uint8_t*),
                            int64_t nblocks, int ngroups, std::mt19937* rng) {
  const int64_t k = nblocks * 32;
  X16Weights w{RowBytes(plain, k), {}, {}};
  w.plain.resize(ngroups * 16 * w.row_bytes);
  w.packed.resize(w.plain.size());
  for (int r = 0; r < 16 * ngroups; ++r) {
    uint8_t* dst = w.plain.data() + r * w.row_bytes;
    if (plain == DType::kIQ4_NL || plain == DType::kMXFP4) {
      // No quantizer of ours: random nibbles; IQ4_NL's f16 scales of both signs, MXFP4's E8M0
      // bytes around 2^-7 and, in one block of five, the denormal encodings 0 and 1.
      std::uniform_int_distribution<int> byte(0, 255);
      for (uint64_t i = 0; i < w.row_bytes; ++i) dst[i] = static_cast<uint8_t>(byte(*rng));
      for (int64_t b = 0; b < nblocks; ++b) {
        if (plain == DType::kMXFP4) {
          dst[b * quant::kMXFP4BlockBytes] =
              static_cast<uint8_t>(b % 5 == 4 ? byte(*rng) % 2 : 117 + byte(*rng) % 8);
          continue;
        }
        const uint16_t d = half::F32ToF16(0.0004f * static_cast<float>(byte(*rng) % 9 - 4));
        std::memcpy(dst + b * quant::kIQ4_NLBlockBytes, &d, 2);
      }
      continue;
    }
    const auto row = RandomVector(k, rng, 0.05f);
    quant::QuantizeRow(plain, row.data(), k, dst);
  }
  for (int g = 0; g < ngroups; ++g) {
    repack(w.plain.data() + g * 16 * w.row_bytes, w.row_bytes, nblocks,
           w.packed.data() + g * 16 * w.row_bytes);
  }
  return w;
}

struct KernelCase {
  kernels::Isa isa;
  const char* name;
};

class KernelTest : public ::testing::TestWithParam<KernelCase> {};

TEST_P(KernelTest, MatchesReferenceOnRandomData) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  const kernels::KernelTable& ref = kernels::ReferenceTable();
  std::mt19937 rng(42);
  for (int64_t nblocks : {1, 2, 3, 5, 7, 16, 48, 67}) {
    const int64_t k = nblocks * 32;
    const int64_t tokens = 5;
    const auto x = RandomVector(tokens * k, &rng);
    kernels::QuantizedActivations acts;
    kernels::QuantizeActivations(x.data(), tokens, k, &acts);
    const auto w = RandomVector(k, &rng, 0.05f);
    for (DType type : {DType::kQ8_0, DType::kQ4_0}) {
      std::vector<uint8_t> row(RowBytes(type, k));
      quant::QuantizeRow(type, w.data(), k, row.data());
      const kernels::RowDotFn fn = type == DType::kQ8_0 ? table.dot_q8_0 : table.dot_q4_0;
      const kernels::RowDotFn ref_fn = type == DType::kQ8_0 ? ref.dot_q8_0 : ref.dot_q4_0;
      for (int ntok = 1; ntok <= 4; ++ntok) {
        for (int64_t first = 0; first + ntok <= tokens; ++first) {
          float got[4], want[4];
          fn(row.data(), nblocks, acts, first, ntok, got);
          ref_fn(row.data(), nblocks, acts, first, ntok, want);
          for (int i = 0; i < ntok; ++i) {
            // Integer block sums are exact; only the float accumulation order of the
            // per-block products differs: a few ulps of the sum of |terms|.
            float mag = 0;
            for (int64_t j = 0; j < k; ++j) mag += std::fabs(w[j] * x[(first + i) * k + j]);
            EXPECT_NEAR(got[i], want[i], 1e-5f * mag + 1e-6f)
                << DTypeName(type) << " nblocks " << nblocks << " ntok " << ntok;
          }
        }
      }
    }
  }
}

TEST_P(KernelTest, RepackedQ4_0MatchesPlainQ4_0) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  std::mt19937 rng(11);
  // Block counts with and without a plain tail (nblocks % 4 != 0), e.g. 22 for width 704.
  for (int64_t nblocks : {1, 3, 4, 5, 8, 22, 48}) {
    const int64_t k = nblocks * 32, tokens = 6;
    const auto x = RandomVector(tokens * k, &rng);
    kernels::QuantizedActivations acts;
    kernels::QuantizeActivations(x.data(), tokens, k, &acts);
    const auto w = RandomVector(k, &rng, 0.05f);
    std::vector<uint8_t> plain(RowBytes(DType::kQ4_0, k)), packed(plain.size());
    quant::QuantizeRow(DType::kQ4_0, w.data(), k, plain.data());
    kernels::pack::RepackRowQ4_0(plain.data(), nblocks, packed.data());
    // Dequantization of the repacked row is exact.
    std::vector<float> d1(k), d2(k);
    quant::DequantizeRow(DType::kQ4_0, plain.data(), k, d1.data());
    kernels::pack::DequantizeRow(DType::kQ4_0R, packed.data(), k, d2.data());
    EXPECT_EQ(d1, d2) << nblocks;
    if (table.gemm_q4_0r != nullptr) {
      // Two-row tile: a second row with other values, right after the first.
      std::vector<uint8_t> plain2(plain.size()), rows(2 * plain.size());
      const auto w2 = RandomVector(k, &rng, 0.05f);
      quant::QuantizeRow(DType::kQ4_0, w2.data(), k, plain2.data());
      std::copy(packed.begin(), packed.end(), rows.begin());
      kernels::pack::RepackRowQ4_0(plain2.data(), nblocks, rows.data() + plain.size());
      for (int nrows = 1; nrows <= 2; ++nrows) {
        for (int ntok = 1; ntok <= 4; ++ntok) {
          float got[8], want[4];
          table.gemm_q4_0r(rows.data(), plain.size(), nrows, nblocks, acts, 2, ntok, got, 4);
          for (int r = 0; r < nrows; ++r) {
            kernels::ReferenceTable().dot_q4_0(r == 0 ? plain.data() : plain2.data(), nblocks, acts,
                                               2, ntok, want);
            for (int i = 0; i < ntok; ++i) {
              EXPECT_NEAR(got[r * 4 + i], want[i], 1e-4f * (1 + std::fabs(want[i])))
                  << "tile row " << r << " token " << i << " nblocks " << nblocks;
            }
          }
        }
      }
    }
    for (int ntok = 1; ntok <= 4; ++ntok) {
      float got[4], want[4];
      table.dot_q4_0r(packed.data(), nblocks, acts, 1, ntok, got);
      kernels::ReferenceTable().dot_q4_0(plain.data(), nblocks, acts, 1, ntok, want);
      for (int i = 0; i < ntok; ++i) {
        float mag = 0;
        for (int64_t j = 0; j < k; ++j) mag += std::fabs(d1[j] * x[(1 + i) * k + j]);
        EXPECT_NEAR(got[i], want[i], 1e-5f * mag + 1e-6f) << nblocks << " " << ntok;
      }
    }
  }
}

TEST_P(KernelTest, Q6_KMatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  std::mt19937 rng(12);
  for (int64_t superblocks : {1, 2, 6}) {
    const int64_t k = superblocks * 256, nblocks = k / 32, tokens = 5;
    const auto x = RandomVector(tokens * k, &rng);
    kernels::QuantizedActivations acts;
    kernels::QuantizeActivations(x.data(), tokens, k, &acts);
    const auto w = RandomVector(k, &rng, 0.05f);
    std::vector<uint8_t> row(RowBytes(DType::kQ6_K, k));
    quant::QuantizeRowQ6_K(w.data(), k, row.data());
    std::vector<float> deq(k);
    quant::DequantizeRow(DType::kQ6_K, row.data(), k, deq.data());
    for (int ntok = 1; ntok <= 4; ++ntok) {
      float got[4], want[4];
      table.dot_q6_k(row.data(), nblocks, acts, 1, ntok, got);
      kernels::ReferenceTable().dot_q6_k(row.data(), nblocks, acts, 1, ntok, want);
      for (int i = 0; i < ntok; ++i) {
        double exact = 0, mag = 0;
        for (int64_t j = 0; j < k; ++j) {
          const int64_t blk = j / 32;
          const double aj = acts.q_row(1 + i)[j] * double{acts.scale_row(1 + i)[blk]};
          exact += deq[j] * aj;
          mag += std::fabs(deq[j] * aj);
        }
        EXPECT_NEAR(got[i], want[i], 1e-5 * mag + 1e-6) << superblocks << " " << ntok;
        // The reference equals the exact dot of dequantized weights and activations.
        EXPECT_NEAR(want[i], exact, 1e-5 * mag + 1e-6);
      }
    }
  }
  // Extremes of the integer paths: every 6-bit value 63, scales -128 and 127, activations
  // +-127 (int16 pair sums at 2 * 63 * 127, scaled sums at 2 * 16002 * 128).
  for (int sign : {1, -1}) {
    const int64_t k = 512, nblocks = k / 32;
    std::vector<uint8_t> row(RowBytes(DType::kQ6_K, k), 0xFF);
    for (int64_t sb = 0; sb < k / 256; ++sb) {
      for (int j = 0; j < 16; ++j) row[sb * 210 + 192 + j] = j % 2 ? 0x80 : 0x7F;
      const uint16_t d = half::F32ToF16(0.01f);
      std::memcpy(row.data() + sb * 210 + 208, &d, 2);
    }
    std::vector<float> x(2 * k, static_cast<float>(sign));
    for (int64_t j = k; j < 2 * k; j += 3) x[j] = -x[j];
    kernels::QuantizedActivations acts;
    kernels::QuantizeActivations(x.data(), 2, k, &acts);
    float got[2], want[2];
    table.dot_q6_k(row.data(), nblocks, acts, 0, 2, got);
    kernels::ReferenceTable().dot_q6_k(row.data(), nblocks, acts, 0, 2, want);
    for (int i = 0; i < 2; ++i) EXPECT_NEAR(got[i], want[i], 1e-5 * std::fabs(want[i]) + 1e-3);
  }
}

// The ISA's row dot (`dot`, a KernelTable member) on `row` against the reference table's, and
// the reference against the row dequantized by quant::DequantizeRow (ggml's formula) times the
// activations in double, for 1-4 tokens from token 1 of `acts`.
void ExpectRowDotMatchesReference(const kernels::KernelTable& table,
                                  kernels::RowDotFn kernels::KernelTable::*dot, DType type,
                                  const std::vector<uint8_t>& row, int64_t k,
                                  const kernels::QuantizedActivations& acts,
                                  const std::string& what) {
  std::vector<float> deq(k);
  quant::DequantizeRow(type, row.data(), k, deq.data());
  for (int ntok = 1; ntok <= 4; ++ntok) {
    float got[4], want[4];
    (table.*dot)(row.data(), k / 32, acts, 1, ntok, got);
    (kernels::ReferenceTable().*dot)(row.data(), k / 32, acts, 1, ntok, want);
    for (int i = 0; i < ntok; ++i) {
      double exact = 0, mag = 0;
      for (int64_t j = 0; j < k; ++j) {
        const double aj = acts.q_row(1 + i)[j] * double{acts.scale_row(1 + i)[j / 32]};
        exact += deq[j] * aj;
        mag += std::fabs(deq[j] * aj);
      }
      EXPECT_NEAR(got[i], want[i], 1e-5 * mag + 1e-6) << what << ", " << ntok << " tokens";
      EXPECT_NEAR(want[i], exact, 1e-5 * mag + 1e-6) << what << ", " << ntok << " tokens";
    }
  }
}

// A Q4_K or Q5_K row (`block_bytes` 144 or 176; both start with f16 d and dmin) with random
// values and 6-bit scales/mins, and small positive d/dmin (the quantizer is not needed to test
// the kernel).
std::vector<uint8_t> RandomKQuantRow(int block_bytes, int64_t superblocks, std::mt19937* rng) {
  std::vector<uint8_t> row(superblocks * block_bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : row) b = static_cast<uint8_t>(byte(*rng));
  for (int64_t s = 0; s < superblocks; ++s) {
    const uint16_t d = half::F32ToF16(0.001f * (1 + byte(*rng) % 7));
    const uint16_t dmin = half::F32ToF16(0.002f * (1 + byte(*rng) % 5));
    std::memcpy(row.data() + s * block_bytes, &d, 2);
    std::memcpy(row.data() + s * block_bytes + 2, &dmin, 2);
  }
  return row;
}

TEST_P(KernelTest, Q4_KMatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  std::mt19937 rng(13);
  for (int64_t superblocks : {1, 2, 6}) {
    const int64_t k = superblocks * 256, tokens = 5;
    const auto x = RandomVector(tokens * k, &rng);
    kernels::QuantizedActivations acts;
    kernels::QuantizeActivations(x.data(), tokens, k, &acts);
    const auto row = RandomKQuantRow(quant::kQ4_KBlockBytes, superblocks, &rng);
    ExpectRowDotMatchesReference(table, &kernels::KernelTable::dot_q4_k, DType::kQ4_K, row, k, acts,
                                 "Q4_K, " + std::to_string(superblocks) + " blocks");
  }
}

// Q5_K likewise, on rows whose fifth bits are random, all clear and all set.
TEST_P(KernelTest, Q5_KMatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  ASSERT_NE(table.dot_q5_k, nullptr);
  std::mt19937 rng(17);
  for (int64_t superblocks : {1, 3, 6}) {
    for (int fifth : {0, 1, 2}) {  // qh random, all clear, all set
      const int64_t k = superblocks * 256, tokens = 5;
      const auto x = RandomVector(tokens * k, &rng);
      kernels::QuantizedActivations acts;
      kernels::QuantizeActivations(x.data(), tokens, k, &acts);
      auto row = RandomKQuantRow(quant::kQ5_KBlockBytes, superblocks, &rng);
      if (fifth > 0) {
        for (int64_t s = 0; s < superblocks; ++s) {
          std::memset(row.data() + s * quant::kQ5_KBlockBytes + quant::kQ5_KHigh,
                      fifth == 1 ? 0x00 : 0xFF, 32);
        }
      }
      ExpectRowDotMatchesReference(table, &kernels::KernelTable::dot_q5_k, DType::kQ5_K, row, k,
                                   acts,
                                   "Q5_K, " + std::to_string(superblocks) + " blocks, " +
                                       "fifth bits " + std::to_string(fifth));
    }
  }
}

// A Q2_K row of random bytes (values, 4-bit scales and mins) with small positive d and dmin at
// bytes 80 and 82 of each block.
std::vector<uint8_t> RandomQ2_KRow(int64_t superblocks, std::mt19937* rng) {
  std::vector<uint8_t> row(superblocks * quant::kQ2_KBlockBytes);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : row) b = static_cast<uint8_t>(byte(*rng));
  for (int64_t s = 0; s < superblocks; ++s) {
    const uint16_t d = half::F32ToF16(0.002f * (1 + byte(*rng) % 7));
    const uint16_t dmin = half::F32ToF16(0.001f * (1 + byte(*rng) % 5));
    std::memcpy(row.data() + s * quant::kQ2_KBlockBytes + quant::kQ2_KD, &d, 2);
    std::memcpy(row.data() + s * quant::kQ2_KBlockBytes + quant::kQ2_KD + 2, &dmin, 2);
  }
  return row;
}

// The ISA's Q2_K row dot against the reference's, and the reference against the dequantized row
// (ggml's formula) times the activations in double, on odd super-block counts: random bytes,
// then every scale and min 15 (scale bytes 0xFF), every scale and min 0, every value 3 (with
// random scales), and every byte 0xFF (the largest products and mins at once).
TEST_P(KernelTest, Q2_KMatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  ASSERT_NE(table.dot_q2_k, nullptr);
  std::mt19937 rng(41);
  const char* kCases[] = {"random", "scales 0xFF", "scales 0", "values 3", "all 0xFF"};
  for (int64_t superblocks : {1, 3, 5}) {
    for (int c = 0; c < 5; ++c) {
      const int64_t k = superblocks * 256, tokens = 5;
      const auto x = RandomVector(tokens * k, &rng);
      kernels::QuantizedActivations acts;
      kernels::QuantizeActivations(x.data(), tokens, k, &acts);
      auto row = RandomQ2_KRow(superblocks, &rng);
      for (int64_t s = 0; s < superblocks; ++s) {
        uint8_t* block = row.data() + s * quant::kQ2_KBlockBytes;
        if (c == 1 || c == 4) std::memset(block, 0xFF, 16);
        if (c == 2) std::memset(block, 0x00, 16);
        if (c == 3 || c == 4) std::memset(block + quant::kQ2_KValues, 0xFF, 64);
      }
      ExpectRowDotMatchesReference(
          table, &kernels::KernelTable::dot_q2_k, DType::kQ2_K, row, k, acts,
          "Q2_K, " + std::to_string(superblocks) + " blocks, " + kCases[c]);
    }
  }
}

// The ISA's IQ3_XXS and IQ3_S row dots against the reference's, and the reference against the
// dequantized row (ggml's formula) times the activations in double, on odd block counts: random
// bytes, every byte 0xFF (the last grid entries, every sign negative, scale 15) and every byte 0
// (grid entry 0, no signs, scale 0); d small and of both signs.
TEST_P(KernelTest, IQ3MatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  std::mt19937 rng(43);
  const char* kCases[] = {"random", "all 0xFF", "all 0"};
  const std::pair<DType, kernels::RowDotFn kernels::KernelTable::*> kTypes[] = {
      {DType::kIQ3_XXS, &kernels::KernelTable::dot_iq3_xxs},
      {DType::kIQ3_S, &kernels::KernelTable::dot_iq3_s}};
  for (const auto& [type, dot] : kTypes) {
    ASSERT_NE(table.*dot, nullptr);
    for (int64_t superblocks : {1, 3, 5}) {
      for (int c = 0; c < 3; ++c) {
        const int64_t k = superblocks * 256, tokens = 5;
        const auto x = RandomVector(tokens * k, &rng);
        kernels::QuantizedActivations acts;
        kernels::QuantizeActivations(x.data(), tokens, k, &acts);
        const size_t block_bytes = BlockBytes(type);
        std::vector<uint8_t> row(superblocks * block_bytes);
        std::uniform_int_distribution<int> byte(0, 255);
        for (auto& b : row) b = static_cast<uint8_t>(c == 0 ? byte(rng) : c == 1 ? 0xFF : 0);
        for (int64_t s = 0; s < superblocks; ++s) {
          const uint16_t d = half::F32ToF16(0.0005f * (1 + byte(rng) % 7) * (s % 2 ? -1 : 1));
          std::memcpy(row.data() + s * block_bytes, &d, 2);
        }
        ExpectRowDotMatchesReference(table, dot, type, row, k, acts,
                                     std::string(DTypeName(type)) + ", " +
                                         std::to_string(superblocks) + " blocks, " + kCases[c]);
      }
    }
  }
}

// The prefill tile of the codebook formats (where the ISA has one) against the reference row
// dots, for every tile width 1..16 and from an odd first token.
TEST_P(KernelTest, CodebookTileMatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  if (table.dot_codebook_tile == nullptr) GTEST_SKIP() << "no codebook tile kernel";
  std::mt19937 rng(47);
  for (DType type :
       {DType::kIQ2_XXS, DType::kIQ2_XS, DType::kIQ2_S, DType::kIQ3_XXS, DType::kIQ3_S}) {
    const int64_t superblocks = 3, k = superblocks * 256, tokens = 19;
    const auto x = RandomVector(tokens * k, &rng);
    kernels::QuantizedActivations acts;
    kernels::QuantizeActivations(x.data(), tokens, k, &acts);
    const size_t block_bytes = BlockBytes(type);
    std::vector<uint8_t> row(superblocks * block_bytes);
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto& b : row) b = static_cast<uint8_t>(byte(rng));
    for (int64_t s = 0; s < superblocks; ++s) {
      const uint16_t d = half::F32ToF16(0.0005f * (1 + byte(rng) % 7) * (s % 2 ? -1 : 1));
      std::memcpy(row.data() + s * block_bytes, &d, 2);
    }
    std::vector<float> deq(k);
    quant::DequantizeRow(type, row.data(), k, deq.data());
    for (int ntok = 1; ntok <= 16; ++ntok) {
      float got[16];
      table.dot_codebook_tile(type, row.data(), k / 32, acts, 3, ntok, got);
      for (int i = 0; i < ntok; ++i) {
        const float want = kernels::DotCodebookReference(type, row.data(), acts.q_row(3 + i),
                                                         acts.scale_row(3 + i), k / 32);
        double mag = 0;
        for (int64_t j = 0; j < k; ++j) {
          mag += std::fabs(deq[j] * acts.q_row(3 + i)[j] * double{acts.scale_row(3 + i)[j / 32]});
        }
        EXPECT_NEAR(got[i], want, 1e-5 * mag + 1e-6)
            << DTypeName(type) << ", " << ntok << " tokens, token " << i;
      }
    }
  }
}

// Sets a 1-bit codebook block's d (f16 bits): IQ1_S's leading f16, or IQ1_M's spread over the
// top nibbles of its four u16 scales at 48 (nibble k of d in scales[k]).
void SetIQ1D(DType type, uint8_t* block, uint16_t d) {
  if (type == DType::kIQ1_S) {
    std::memcpy(block, &d, 2);
    return;
  }
  for (int k = 0; k < 4; ++k) {
    uint16_t sc;
    std::memcpy(&sc, block + quant::kIQ1_MScales + 2 * k, 2);
    sc = static_cast<uint16_t>((sc & 0x0FFF) | (((d >> (4 * k)) & 0xF) << 12));
    std::memcpy(block + quant::kIQ1_MScales + 2 * k, &sc, 2);
  }
}

// The prefill panels of the codebook formats (where the ISA has them) against the reference row
// dots: 16 and 11 rows (a partial last group), 21 tokens (pieces of 8 and a remainder), rows of
// 9 x 256 values (two column panels of 64 and 8 blocks, the second added onto the first), out
// with a row stride wider than the group; the entries past nrows stay untouched.
TEST_P(KernelTest, CodebookPanelsMatchReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  if (table.gemm_codebook_x16 == nullptr) GTEST_SKIP() << "no codebook panel kernel";
  std::mt19937 rng(53);
  const int64_t superblocks = 9, k = superblocks * 256, tokens = 21, ldo = 20;
  const auto x = RandomVector(tokens * k, &rng);
  kernels::QuantizedActivations acts;
  kernels::QuantizeActivations(x.data(), tokens, k, &acts);
  int taken = 0, taken_one_bit = 0;
  for (DType type : {DType::kIQ2_XXS, DType::kIQ2_XS, DType::kIQ2_S, DType::kIQ3_XXS, DType::kIQ3_S,
                     DType::kIQ1_S, DType::kIQ1_M}) {
    if (!table.gemm_codebook_x16_takes(type)) continue;  // those go through the tiles
    ++(IsOneBitCodebookType(type) ? taken_one_bit : taken);
    const uint64_t row_bytes = RowBytes(type, k);
    for (int nrows : {16, 11}) {
      std::vector<uint8_t> rows(nrows * row_bytes);
      std::uniform_int_distribution<int> byte(0, 255);
      for (auto& b : rows) b = static_cast<uint8_t>(byte(rng));
      for (int64_t b = 0; b < nrows * superblocks; ++b) {
        const uint16_t d = half::F32ToF16(0.0005f * (1 + byte(rng) % 7) * (b % 2 ? -1 : 1));
        if (IsOneBitCodebookType(type)) {
          SetIQ1D(type, rows.data() + b * BlockBytes(type), d);  // IQ1_M's: in its scales
        } else {
          std::memcpy(rows.data() + b * BlockBytes(type), &d, 2);
        }
      }
      std::vector<float> out(tokens * ldo, 1234.5f);
      table.gemm_codebook_x16(type, rows.data(), row_bytes, nrows, k / 32, acts, tokens, out.data(),
                              ldo);
      for (int r = 0; r < nrows; ++r) {
        std::vector<float> deq(k);
        quant::DequantizeRow(type, rows.data() + r * row_bytes, k, deq.data());
        for (int64_t t = 0; t < tokens; ++t) {
          const float want = kernels::DotCodebookReference(
              type, rows.data() + r * row_bytes, acts.q_row(t), acts.scale_row(t), k / 32);
          double mag = 0;
          for (int64_t j = 0; j < k; ++j) {
            mag += std::fabs(deq[j] * acts.q_row(t)[j] * double{acts.scale_row(t)[j / 32]});
          }
          EXPECT_NEAR(out[t * ldo + r], want, 1e-5 * mag + 1e-6)
              << DTypeName(type) << ", " << nrows << " rows, row " << r << ", token " << t;
        }
      }
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t r = nrows; r < ldo; ++r) ASSERT_EQ(out[t * ldo + r], 1234.5f);
      }
    }
  }
  EXPECT_EQ(taken, 5);          // every codebook format goes through the panels
  EXPECT_EQ(taken_one_bit, 2);  // and the 1-bit ones, on AVX-512 and AVX2 alike
}

// The ISA's IQ2_XXS / IQ2_XS / IQ2_S row dots against the reference's (DotCodebookReference),
// and the reference against the dequantized row times the activations in double, on odd block
// counts and 1-4 tokens: random bytes, then per block every 4-bit scale 15, every sign bit set
// (sign indices 127, IQ2_S's sign bytes 0xFF), every grid index the largest (IQ2_XXS 255,
// IQ2_XS 511, IQ2_S 1023) and the smallest (0), and every byte 0xFF but d (all at once).
void MakeExtremeIQ2Block(DType type, int variant, uint8_t* block) {
  enum { kRandom, kScales15, kSignsSet, kMaxIndex, kMinIndex, kAll0xFF };
  if (variant == kAll0xFF) {
    std::memset(block + 2, 0xFF, BlockBytes(type) - 2);
    return;
  }
  for (int ib = 0; ib < 8; ++ib) {
    if (type == DType::kIQ2_XXS) {  // sub-block ib at 2 + 8 ib: 4 index bytes, u32 signs | s
      uint8_t* sub = block + 2 + 8 * ib;
      uint32_t aux;
      std::memcpy(&aux, sub + 4, 4);
      if (variant == kScales15) aux |= 0xF0000000u;
      if (variant == kSignsSet) aux |= 0x0FFFFFFFu;
      std::memcpy(sub + 4, &aux, 4);
      if (variant == kMaxIndex || variant == kMinIndex) {
        std::memset(sub, variant == kMaxIndex ? 0xFF : 0x00, 4);
      }
    } else if (type == DType::kIQ2_XS) {  // u16 (9-bit index, 7-bit signs) at 2 + 2 i
      if (variant == kScales15) block[quant::kIQ2_XSScales + ib] = 0xFF;
      for (int l = 0; l < 4; ++l) {
        uint16_t v;
        std::memcpy(&v, block + 2 + 2 * (4 * ib + l), 2);
        if (variant == kSignsSet) v |= 0xFE00;
        if (variant == kMaxIndex) v |= 0x01FF;
        if (variant == kMinIndex) v &= 0xFE00;
        std::memcpy(block + 2 + 2 * (4 * ib + l), &v, 2);
      }
    } else {  // IQ2_S: index low bytes at 2, signs at 34, index high bits at 66, scales at 74
      if (variant == kScales15) block[quant::kIQ2_SScales + ib] = 0xFF;
      if (variant == kSignsSet) std::memset(block + quant::kIQ2_SSigns + 4 * ib, 0xFF, 4);
      if (variant == kMaxIndex || variant == kMinIndex) {
        const uint8_t fill = variant == kMaxIndex ? 0xFF : 0x00;
        std::memset(block + 2 + 4 * ib, fill, 4);
        block[quant::kIQ2_SHigh + ib] = fill;
      }
    }
  }
}

TEST_P(KernelTest, IQ2MatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  const struct {
    DType type;
    kernels::RowDotFn kernels::KernelTable::*dot;
  } kFormats[] = {{DType::kIQ2_XXS, &kernels::KernelTable::dot_iq2_xxs},
                  {DType::kIQ2_XS, &kernels::KernelTable::dot_iq2_xs},
                  {DType::kIQ2_S, &kernels::KernelTable::dot_iq2_s}};
  const char* kVariants[] = {"random",    "scales 15", "signs set",
                             "max index", "min index", "all 0xFF"};
  std::mt19937 rng(43);
  std::uniform_int_distribution<int> byte(0, 255);
  for (const auto& f : kFormats) {
    ASSERT_NE(table.*f.dot, nullptr);
    const int64_t block_bytes = static_cast<int64_t>(BlockBytes(f.type));
    for (int64_t superblocks : {1, 3, 5}) {
      for (int variant = 0; variant < 6; ++variant) {
        const int64_t k = superblocks * 256, tokens = 5;
        const auto x = RandomVector(tokens * k, &rng);
        kernels::QuantizedActivations acts;
        kernels::QuantizeActivations(x.data(), tokens, k, &acts);
        std::vector<uint8_t> row(superblocks * block_bytes);
        for (auto& b : row) b = static_cast<uint8_t>(byte(rng));
        for (int64_t s = 0; s < superblocks; ++s) {
          uint8_t* block = row.data() + s * block_bytes;
          const uint16_t d = half::F32ToF16(0.001f * (1 + byte(rng) % 7));
          std::memcpy(block, &d, 2);
          MakeExtremeIQ2Block(f.type, variant, block);
        }
        ExpectRowDotMatchesReference(table, f.dot, f.type, row, k, acts,
                                     std::string(DTypeName(f.type)) + ", " +
                                         std::to_string(superblocks) + " blocks, " +
                                         kVariants[variant]);
      }
    }
  }
}

// The ISA's IQ1_S / IQ1_M row dots against the reference's, and the reference against the
// dequantized row times the activations in double, on odd block counts and 1-4 tokens: random
// bytes, every byte 0xFF (grid entry 2047, every shift -1/8, every scale 7) and every byte 0
// (entry 0, shifts +1/8, scales 0), each with a random d of either sign.
TEST_P(KernelTest, IQ1MatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  const std::pair<DType, kernels::RowDotFn kernels::KernelTable::*> kFormats[] = {
      {DType::kIQ1_S, &kernels::KernelTable::dot_iq1_s},
      {DType::kIQ1_M, &kernels::KernelTable::dot_iq1_m}};
  const char* kCases[] = {"random", "all 0xFF", "all 0"};
  std::mt19937 rng(59);
  std::uniform_int_distribution<int> byte(0, 255);
  for (const auto& [type, dot] : kFormats) {
    ASSERT_NE(table.*dot, nullptr);
    const int64_t block_bytes = static_cast<int64_t>(BlockBytes(type));
    for (int64_t superblocks : {1, 3, 5}) {
      for (int c = 0; c < 3; ++c) {
        const int64_t k = superblocks * 256, tokens = 5;
        const auto x = RandomVector(tokens * k, &rng);
        kernels::QuantizedActivations acts;
        kernels::QuantizeActivations(x.data(), tokens, k, &acts);
        std::vector<uint8_t> row(superblocks * block_bytes);
        for (auto& b : row) b = static_cast<uint8_t>(c == 0 ? byte(rng) : c == 1 ? 0xFF : 0);
        for (int64_t s = 0; s < superblocks; ++s) {
          SetIQ1D(type, row.data() + s * block_bytes,
                  half::F32ToF16(0.002f * (1 + byte(rng) % 7) * (s % 2 ? -1 : 1)));
        }
        ExpectRowDotMatchesReference(table, dot, type, row, k, acts,
                                     std::string(DTypeName(type)) + ", " +
                                         std::to_string(superblocks) + " blocks, " + kCases[c]);
      }
    }
  }
}

// The codebook tile on IQ1 rows (AVX-512: its wide kernel; elsewhere the row dots) against the
// reference row dots, for every tile width 1..16 from an odd first token, on random rows and
// rows of every byte 0xFF.
TEST_P(KernelTest, IQ1TileMatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  if (table.dot_codebook_tile == nullptr) GTEST_SKIP() << "no codebook tile kernel";
  std::mt19937 rng(67);
  std::uniform_int_distribution<int> byte(0, 255);
  for (DType type : {DType::kIQ1_S, DType::kIQ1_M}) {
    for (int c = 0; c < 2; ++c) {
      const int64_t superblocks = 3, k = superblocks * 256, tokens = 19;
      const auto x = RandomVector(tokens * k, &rng);
      kernels::QuantizedActivations acts;
      kernels::QuantizeActivations(x.data(), tokens, k, &acts);
      const int64_t block_bytes = static_cast<int64_t>(BlockBytes(type));
      std::vector<uint8_t> row(superblocks * block_bytes);
      for (auto& b : row) b = static_cast<uint8_t>(c == 0 ? byte(rng) : 0xFF);
      for (int64_t s = 0; s < superblocks; ++s) {
        SetIQ1D(type, row.data() + s * block_bytes,
                half::F32ToF16(0.002f * (1 + byte(rng) % 7) * (s % 2 ? -1 : 1)));
      }
      std::vector<float> deq(k);
      quant::DequantizeRow(type, row.data(), k, deq.data());
      for (int ntok = 1; ntok <= 16; ++ntok) {
        float got[16];
        table.dot_codebook_tile(type, row.data(), k / 32, acts, 3, ntok, got);
        for (int i = 0; i < ntok; ++i) {
          const float want = kernels::DotCodebookReference(type, row.data(), acts.q_row(3 + i),
                                                           acts.scale_row(3 + i), k / 32);
          double mag = 0;
          for (int64_t j = 0; j < k; ++j) {
            mag += std::fabs(deq[j] * acts.q_row(3 + i)[j] * double{acts.scale_row(3 + i)[j / 32]});
          }
          EXPECT_NEAR(got[i], want, 1e-5 * mag + 1e-6)
              << DTypeName(type) << ", case " << c << ", " << ntok << " tokens, token " << i;
        }
      }
    }
  }
}

// The ISA's Q5_1 and Q4_1 row dots against the reference's, and the reference against the
// dequantized row (ggml's formula) times the activations in double; odd block counts (a lone
// last block), Q5_1's fifth bits random, all clear and all set, negative and positive mins.
TEST_P(KernelTest, Q5_1AndQ4_1MatchReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  ASSERT_NE(table.dot_q5_1, nullptr);
  ASSERT_NE(table.dot_q4_1, nullptr);
  std::mt19937 rng(19);
  std::uniform_int_distribution<int> byte(0, 255);
  for (DType type : {DType::kQ5_1, DType::kQ4_1}) {
    const bool q5 = type == DType::kQ5_1;
    const int64_t block_bytes = static_cast<int64_t>(BlockBytes(type));
    for (int64_t nblocks : {1, 2, 3, 7, 22, 66}) {
      for (int fifth : {0, 1, 2}) {  // Q5_1's qh random, all clear, all set
        if (!q5 && fifth > 0) continue;
        const int64_t k = nblocks * 32, tokens = 5;
        const auto x = RandomVector(tokens * k, &rng);
        kernels::QuantizedActivations acts;
        kernels::QuantizeActivations(x.data(), tokens, k, &acts);
        std::vector<uint8_t> row(nblocks * block_bytes);
        for (auto& b : row) b = static_cast<uint8_t>(byte(rng));
        for (int64_t b = 0; b < nblocks; ++b) {
          uint8_t* block = row.data() + b * block_bytes;
          const uint16_t d = half::F32ToF16(0.001f * (1 + byte(rng) % 7));
          const uint16_t m = half::F32ToF16(0.004f * (byte(rng) % 9 - 4));
          std::memcpy(block, &d, 2);
          std::memcpy(block + 2, &m, 2);
          if (fifth > 0) std::memset(block + 4, fifth == 1 ? 0x00 : 0xFF, 4);
        }
        ExpectRowDotMatchesReference(
            table, q5 ? &kernels::KernelTable::dot_q5_1 : &kernels::KernelTable::dot_q4_1, type,
            row, k, acts,
            std::string(DTypeName(type)) + ", " + std::to_string(nblocks) + " blocks, " +
                "fifth bits " + std::to_string(fifth));
      }
    }
  }
}

// The ISA's IQ4_XS row dot against the reference's, and the reference against the dequantized
// row (ggml's formula) times the activations in double; scales random, all 0 and all 63 (the
// largest sub-block scales of both signs), for 1-4 tokens.
TEST_P(KernelTest, IQ4_XSMatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  ASSERT_NE(table.dot_iq4_xs, nullptr);
  std::mt19937 rng(23);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int64_t superblocks : {1, 3, 6}) {
    for (int scales : {0, 1, 2}) {  // random, all 0, all 63
      const int64_t k = superblocks * 256, tokens = 5;
      const auto x = RandomVector(tokens * k, &rng);
      kernels::QuantizedActivations acts;
      kernels::QuantizeActivations(x.data(), tokens, k, &acts);
      std::vector<uint8_t> row(superblocks * quant::kIQ4_XSBlockBytes);
      for (auto& b : row) b = static_cast<uint8_t>(byte(rng));
      for (int64_t s = 0; s < superblocks; ++s) {
        uint8_t* block = row.data() + s * quant::kIQ4_XSBlockBytes;
        const uint16_t d = half::F32ToF16(0.0005f * (1 + byte(rng) % 7));
        std::memcpy(block, &d, 2);
        if (scales > 0) std::memset(block + 2, scales == 1 ? 0x00 : 0xFF, 6);
      }
      ExpectRowDotMatchesReference(table, &kernels::KernelTable::dot_iq4_xs, DType::kIQ4_XS, row, k,
                                   acts,
                                   "IQ4_XS, " + std::to_string(superblocks) + " blocks, " +
                                       "scales " + std::to_string(scales));
    }
  }
}

// The ISA's IQ4_NL row dot against the reference's, and the reference against the dequantized
// row (ggml's formula) times the activations in double; odd block counts (AVX-512's lone last
// block), scales of both signs, and rows of nibbles all 0 / all 15 (levels -127 / 113).
TEST_P(KernelTest, IQ4_NLMatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  ASSERT_NE(table.dot_iq4_nl, nullptr);
  std::mt19937 rng(37);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int64_t nblocks : {1, 2, 3, 7, 22, 23}) {
    for (int fill : {-1, 0x00, 0xFF}) {
      const int64_t k = nblocks * 32, tokens = 5;
      const auto x = RandomVector(tokens * k, &rng);
      kernels::QuantizedActivations acts;
      kernels::QuantizeActivations(x.data(), tokens, k, &acts);
      std::vector<uint8_t> row(nblocks * quant::kIQ4_NLBlockBytes);
      for (auto& b : row) b = static_cast<uint8_t>(fill < 0 ? byte(rng) : fill);
      for (int64_t b = 0; b < nblocks; ++b) {
        const uint16_t d = half::F32ToF16(0.0005f * static_cast<float>(byte(rng) % 9 - 4));
        std::memcpy(row.data() + b * quant::kIQ4_NLBlockBytes, &d, 2);
      }
      ExpectRowDotMatchesReference(
          table, &kernels::KernelTable::dot_iq4_nl, DType::kIQ4_NL, row, k, acts,
          "IQ4_NL, " + std::to_string(nblocks) + " blocks, fill " + std::to_string(fill));
    }
  }
}

// The ISA's MXFP4 row dot likewise: odd block counts, E8M0 scales from the denormal encodings 0
// and 1 to 2^0, rows of nibbles all 7 / all 15 (levels 12 / -12).
TEST_P(KernelTest, MXFP4MatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  ASSERT_NE(table.dot_mxfp4, nullptr);
  std::mt19937 rng(41);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int64_t nblocks : {1, 2, 3, 7, 22, 23}) {
    for (int fill : {-1, 0x77, 0xFF}) {
      const int64_t k = nblocks * 32, tokens = 5;
      const auto x = RandomVector(tokens * k, &rng);
      kernels::QuantizedActivations acts;
      kernels::QuantizeActivations(x.data(), tokens, k, &acts);
      std::vector<uint8_t> row(nblocks * quant::kMXFP4BlockBytes);
      for (auto& b : row) b = static_cast<uint8_t>(fill < 0 ? byte(rng) : fill);
      for (int64_t b = 0; b < nblocks; ++b) {
        row[b * quant::kMXFP4BlockBytes] =
            static_cast<uint8_t>(b % 6 == 5 ? b % 2 : 118 + byte(rng) % 11);
      }
      ExpectRowDotMatchesReference(
          table, &kernels::KernelTable::dot_mxfp4, DType::kMXFP4, row, k, acts,
          "MXFP4, " + std::to_string(nblocks) + " blocks, fill " + std::to_string(fill));
    }
  }
}

// The ISA's Q3_K row dot against the reference's, and the reference against the dequantized
// row (ggml's formula) times the activations in double: random bytes, then every hmask bit
// clear (all values - 4 .. - 1) and set (0 .. 3), and the 12 scale bytes all 0 (every scale
// -32) and all 0xFF (every scale 31), for 1, 3 and 5 blocks and 1-4 tokens.
TEST_P(KernelTest, Q3_KMatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  ASSERT_NE(table.dot_q3_k, nullptr);
  std::mt19937 rng(29);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int64_t superblocks : {1, 3, 5}) {
    for (int variant : {0, 1, 2, 3, 4}) {  // random, hmask clear / set, scales 0x00 / 0xFF
      const int64_t k = superblocks * 256, tokens = 5;
      const auto x = RandomVector(tokens * k, &rng);
      kernels::QuantizedActivations acts;
      kernels::QuantizeActivations(x.data(), tokens, k, &acts);
      std::vector<uint8_t> row(superblocks * quant::kQ3_KBlockBytes);
      for (auto& b : row) b = static_cast<uint8_t>(byte(rng));
      for (int64_t s = 0; s < superblocks; ++s) {
        uint8_t* block = row.data() + s * quant::kQ3_KBlockBytes;
        const uint16_t d = half::F32ToF16(0.0005f * (1 + byte(rng) % 7));
        std::memcpy(block + quant::kQ3_KD, &d, 2);
        if (variant == 1 || variant == 2) std::memset(block, variant == 1 ? 0x00 : 0xFF, 32);
        if (variant >= 3) std::memset(block + quant::kQ3_KScales, variant == 3 ? 0x00 : 0xFF, 12);
      }
      ExpectRowDotMatchesReference(
          table, &kernels::KernelTable::dot_q3_k, DType::kQ3_K, row, k, acts,
          "Q3_K, " + std::to_string(superblocks) + " blocks, variant " + std::to_string(variant));
    }
  }
}

TEST_P(KernelTest, ActivationQuantizationIsIdenticalToReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  std::mt19937 rng(9);
  // 16 blocks at a time where the ISA batches them, with the rest one by one.
  for (int64_t nblocks : {1, 2, 7, 16, 17, 48, 50}) {
    auto x = RandomVector(nblocks * 32 + 1, &rng, 3.0f);
    x[5] = 0.5f * 3.0f;  // values landing on exact .5 steps are rare; include zeros too
    for (int i = 32; i < 64 && i < static_cast<int>(x.size()); ++i) x[i] = 0.0f;
    std::vector<int8_t> q1(nblocks * 32), q2(nblocks * 32);
    std::vector<float> s1(nblocks), s2(nblocks), o1(nblocks), o2(nblocks);
    std::vector<int32_t> m1(nblocks), m2(nblocks);
    table.quantize_blocks(x.data() + 1, nblocks, q1.data(), s1.data(), m1.data(), o1.data());
    kernels::QuantizeActivationBlocks(x.data() + 1, nblocks, q2.data(), s2.data(), m2.data(),
                                      o2.data());
    EXPECT_EQ(q1, q2);
    EXPECT_EQ(s1, s2);
    EXPECT_EQ(m1, m2);
    EXPECT_EQ(o1, o2);
  }
}

TEST_P(KernelTest, RepackedQ8_0MatchesPlainQ8_0) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  std::mt19937 rng(15);
  for (int64_t nblocks : {1, 3, 4, 5, 8, 22, 48}) {
    const int64_t k = nblocks * 32, tokens = 6;
    const auto x = RandomVector(tokens * k, &rng);
    kernels::QuantizedActivations acts;
    kernels::QuantizeActivations(x.data(), tokens, k, &acts);
    std::vector<uint8_t> plain[2], packed(RowBytes(DType::kQ8_0, k) * 2);
    for (int r = 0; r < 2; ++r) {
      const auto w = RandomVector(k, &rng, 0.05f);
      plain[r].resize(RowBytes(DType::kQ8_0, k));
      quant::QuantizeRow(DType::kQ8_0, w.data(), k, plain[r].data());
      kernels::pack::RepackRowQ8_0(plain[r].data(), nblocks, packed.data() + r * plain[r].size());
    }
    std::vector<float> d1(k), d2(k);
    quant::DequantizeRow(DType::kQ8_0, plain[0].data(), k, d1.data());
    kernels::pack::DequantizeRow(DType::kQ8_0R, packed.data(), k, d2.data());
    EXPECT_EQ(d1, d2) << nblocks;
    for (int ntok = 1; ntok <= 4; ++ntok) {
      float want[2][4];
      for (int r = 0; r < 2; ++r) {
        kernels::ReferenceTable().dot_q8_0(plain[r].data(), nblocks, acts, 1, ntok, want[r]);
      }
      float got[8];
      table.dot_q8_0r(packed.data(), nblocks, acts, 1, ntok, got);
      for (int i = 0; i < ntok; ++i) {
        EXPECT_NEAR(got[i], want[0][i], 1e-4f * (1 + std::fabs(want[0][i]))) << nblocks;
      }
      if (table.gemm_q8_0r != nullptr) {
        table.gemm_q8_0r(packed.data(), plain[0].size(), 2, nblocks, acts, 1, ntok, got, 4);
        for (int r = 0; r < 2; ++r) {
          for (int i = 0; i < ntok; ++i) {
            EXPECT_NEAR(got[r * 4 + i], want[r][i], 1e-4f * (1 + std::fabs(want[r][i])))
                << "tile row " << r << " nblocks " << nblocks;
          }
        }
      }
    }
  }
}

TEST_P(KernelTest, InterleavedX16MatchesPlainRows) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  struct Format {
    DType plain;
    decltype(table.gemm_q4_0x16) gemm;
    void (*repack)(const uint8_t*, uint64_t, int64_t, uint8_t*);
    void (*dequantize)(const uint8_t*, int64_t, int, float*);
    kernels::RowDotFn reference;
  };
  const Format formats[] = {
      {DType::kQ4_0, table.gemm_q4_0x16, kernels::pack::RepackGroupQ4_0x16,
       kernels::pack::DequantizeQ4_0x16Row, kernels::ReferenceTable().dot_q4_0},
      {DType::kQ8_0, table.gemm_q8_0x16, kernels::pack::RepackGroupQ8_0x16,
       kernels::pack::DequantizeQ8_0x16Row, kernels::ReferenceTable().dot_q8_0},
      {DType::kIQ4_NL, table.gemm_iq4_nlx16, kernels::pack::RepackGroupQ4_0x16,
       kernels::pack::DequantizeIQ4_NLx16Row, kernels::ReferenceTable().dot_iq4_nl},
      {DType::kMXFP4, table.gemm_mxfp4x16, kernels::pack::RepackGroupMXFP4x16,
       kernels::pack::DequantizeMXFP4x16Row, kernels::ReferenceTable().dot_mxfp4}};
  std::mt19937 rng(17);
  for (const Format& f : formats) {
    if (f.gemm == nullptr) continue;  // this ISA keeps the per-row formats
    for (int64_t nblocks : {1, 2, 3, 7, 48}) {
      const int64_t k = nblocks * 32, tokens = 18;
      const auto x = RandomVector(tokens * k, &rng);
      kernels::QuantizedActivations acts;
      kernels::QuantizeActivations(x.data(), tokens, k, &acts);
      const X16Weights weights = RandomX16Weights(f.plain, f.repack, nblocks, 1, &rng);
      const uint64_t row_bytes = weights.row_bytes;
      const std::vector<uint8_t>& plain = weights.plain;
      const std::vector<uint8_t>& group = weights.packed;
      for (int r = 0; r < 16; ++r) {
        std::vector<float> d1(k), d2(k);
        quant::DequantizeRow(f.plain, plain.data() + r * row_bytes, k, d1.data());
        f.dequantize(group.data(), nblocks, r, d2.data());
        ASSERT_EQ(d1, d2) << DTypeName(f.plain) << " row " << r;
      }
      // Token counts within one register block and across several (callers pass up to 16).
      for (int ntok : {1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17}) {
        float got[17 * 16];
        f.gemm(group.data(), nblocks, acts, 1, ntok, got, 16);
        for (int r = 0; r < 16; ++r) {
          float want[17];
          for (int t = 0; t < ntok; ++t) {
            f.reference(plain.data() + r * row_bytes, nblocks, acts, 1 + t, 1, want + t);
          }
          for (int t = 0; t < ntok; ++t) {
            EXPECT_NEAR(got[t * 16 + r], want[t], 1e-4f * (1 + std::fabs(want[t])))
                << DTypeName(f.plain) << " row " << r << " token " << t << " nblocks " << nblocks;
          }
        }
      }
      // A single row (decode) is interleaved in groups of one, its blocks contiguous: the
      // kernel gives the same bits for it as for the same token among 18.
      kernels::QuantizedActivations one;
      kernels::QuantizeActivations(x.data() + k, 1, k, &one);
      ASSERT_EQ(one.interleave_group, 1);
      ASSERT_EQ(acts.interleave_group, 8);
      float single[16], among[16];
      f.gemm(group.data(), nblocks, one, 0, 1, single, 16);
      f.gemm(group.data(), nblocks, acts, 1, 1, among, 16);
      for (int r = 0; r < 16; ++r) {
        EXPECT_EQ(single[r], among[r])
            << DTypeName(f.plain) << " row " << r << " nblocks " << nblocks;
      }
      // All 18 tokens in groups of one (decode's experts, a token each): the same bits for
      // every token, one at a time or several in a call.
      kernels::QuantizedActivations each = acts;
      each.ResizeInterleaved(1);
      ASSERT_EQ(each.interleave_group, 1);
      for (int64_t t = 0; t < tokens; ++t) each.InterleaveToken(t);
      float by_one[18 * 16], by_eight[18 * 16];
      f.gemm(group.data(), nblocks, each, 0, static_cast<int>(tokens), by_one, 16);
      f.gemm(group.data(), nblocks, acts, 0, 16, by_eight, 16);
      f.gemm(group.data(), nblocks, acts, 16, 2, by_eight + 16 * 16, 16);
      ASSERT_EQ(0, std::memcmp(by_one, by_eight, sizeof(by_one)))
          << DTypeName(f.plain) << " nblocks " << nblocks;
    }
  }
}

// The two-group prefill kernels (gemm_q4_0x16_pair, gemm_q8_0x16_pair, gemm_iq4_nlx16_pair,
// gemm_mxfp4x16_pair) give exactly what the
// one-group kernel gives for each of the two groups, and match the scalar row reference, for
// odd block counts, token counts and first tokens (pieces split at groups of 8 and of 4), with
// the activations interleaved in groups of 8 tokens and of 1 (the pair kernel must not read
// a token's neighbours at group-of-8 offsets in a copy laid out one token at a time).
TEST_P(KernelTest, InterleavedX16PairMatchesSingleGroups) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  struct Format {
    DType plain;
    decltype(table.gemm_q4_0x16) single, pair;
    void (*repack)(const uint8_t*, uint64_t, int64_t, uint8_t*);
    kernels::RowDotFn reference;
  };
  const Format formats[] = {
      {DType::kQ4_0, table.gemm_q4_0x16, table.gemm_q4_0x16_pair, kernels::pack::RepackGroupQ4_0x16,
       kernels::ReferenceTable().dot_q4_0},
      {DType::kQ8_0, table.gemm_q8_0x16, table.gemm_q8_0x16_pair, kernels::pack::RepackGroupQ8_0x16,
       kernels::ReferenceTable().dot_q8_0},
      {DType::kIQ4_NL, table.gemm_iq4_nlx16, table.gemm_iq4_nlx16_pair,
       kernels::pack::RepackGroupQ4_0x16, kernels::ReferenceTable().dot_iq4_nl},
      {DType::kMXFP4, table.gemm_mxfp4x16, table.gemm_mxfp4x16_pair,
       kernels::pack::RepackGroupMXFP4x16, kernels::ReferenceTable().dot_mxfp4}};
  std::mt19937 rng(29);
  for (const Format& f : formats) {
    if (f.pair == nullptr) continue;  // optional
    ASSERT_NE(f.single, nullptr);
    for (int64_t nblocks : {1, 2, 3, 7, 13}) {
      const int64_t k = nblocks * 32, tokens = 23;
      const auto x = RandomVector(tokens * k, &rng);
      const X16Weights weights = RandomX16Weights(f.plain, f.repack, nblocks, 2, &rng);
      const uint64_t row_bytes = weights.row_bytes;
      const std::vector<uint8_t>& plain = weights.plain;
      const std::vector<uint8_t>& groups = weights.packed;
      for (int interleave_group : {8, 1}) {
        kernels::QuantizedActivations acts;
        kernels::QuantizeActivations(x.data(), tokens, k, &acts);
        acts.ResizeInterleaved(interleave_group);
        for (int64_t t = 0; t < tokens; ++t) acts.InterleaveToken(t);
        ASSERT_EQ(acts.interleave_group, interleave_group);
        for (int first : {0, 1, 3, 5}) {
          for (int ntok : {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17}) {
            constexpr int64_t ldo = 35;  // odd, wider than the 32 rows
            std::vector<float> got(17 * ldo, -1.0f), want(17 * ldo, -1.0f);
            f.pair(groups.data(), nblocks, acts, first, ntok, got.data(), ldo);
            for (int g = 0; g < 2; ++g) {
              f.single(groups.data() + g * 16 * row_bytes, nblocks, acts, first, ntok,
                       want.data() + 16 * g, ldo);
            }
            ASSERT_EQ(got, want) << DTypeName(f.plain) << " nblocks " << nblocks << " first "
                                 << first << " ntok " << ntok << " interleave group "
                                 << interleave_group;
            for (int r = 0; r < 32; ++r) {
              for (int t = 0; t < ntok; ++t) {
                float ref;
                f.reference(plain.data() + r * row_bytes, nblocks, acts, first + t, 1, &ref);
                EXPECT_NEAR(got[t * ldo + r], ref, 1e-4f * (1 + std::fabs(ref)))
                    << DTypeName(f.plain) << " row " << r << " token " << t << " interleave group "
                    << interleave_group;
              }
            }
          }
        }
      }
    }
  }
}

// A 16-row K-quant format (Q2_Kx16, Q3_Kx16, Q4_Kx16, Q5_Kx16, Q6_Kx16, IQ4_XSx16; and Q4_1x16
// and Q5_1x16, their 32-value blocks in groups of eight): repacking keeps every value (dequantized
// rows equal), the scalar 16-row reference is the plain-row reference bit for bit, and the ISA
// kernel matches it for token counts within and across register blocks. Random bytes cover every
// scale / min / value (and every int8 Q6_K scale); the last case sets every byte to 0xFF (largest
// values, and for Q2_K / Q4_K / Q5_K the largest scales and mins; Q6_K scales then -1 and -128;
// Q3_K with its hmask cleared: values -1 and scales 31) against activations of one sign per token:
// the kernels' largest int16 sums.
struct KQuantX16 {
  DType plain;
  decltype(kernels::KernelTable::gemm_q4_kx16) gemm;
  void (*repack)(const uint8_t*, uint64_t, int64_t, uint8_t*);
  void (*dequantize)(const uint8_t*, int64_t, int, float*);
  // 16 rows of the group against activation row t of acts.
  std::function<void(const uint8_t*, const kernels::QuantizedActivations&, int64_t, int64_t,
                     float*)>
      reference;
};

void ExpectKQuantX16MatchesPlainRows(const KQuantX16& f, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  const uint64_t block_bytes = BlockBytes(f.plain);
  for (int64_t superblocks : {1, 2, 5, -1}) {
    const bool extreme = superblocks < 0;
    if (extreme) superblocks = 2;
    const int64_t k = superblocks * 256, nblocks = k / 32, tokens = 18;
    const uint64_t row_bytes = RowBytes(f.plain, k);
    std::vector<uint8_t> plain(16 * row_bytes), group(16 * row_bytes);
    for (uint8_t& b : plain) b = extreme ? 0xFF : static_cast<uint8_t>(byte(rng));
    const bool affine = f.plain == DType::kQ4_1 || f.plain == DType::kQ5_1;
    for (int r = 0; affine && r < 16; ++r) {  // 32-value blocks: each its d, m
      for (int64_t blk = 0; blk < nblocks; ++blk) {
        uint8_t* block = plain.data() + r * row_bytes + blk * block_bytes;
        const uint16_t d = half::F32ToF16(0.001f * (1 + byte(rng) % 7));
        const uint16_t m = half::F32ToF16(0.004f * (byte(rng) % 9 - 4));
        std::memcpy(block, &d, 2);
        std::memcpy(block + 2, &m, 2);
      }
    }
    for (int r = 0; !affine && r < 16; ++r) {
      for (int64_t s = 0; s < superblocks; ++s) {
        uint8_t* block = plain.data() + r * row_bytes + s * block_bytes;
        const uint16_t d = half::F32ToF16(0.001f * (1 + byte(rng) % 7));
        const uint16_t dmin = half::F32ToF16(0.002f * (1 + byte(rng) % 5));
        if (f.plain == DType::kIQ4_XS) {
          const uint16_t small = half::F32ToF16(0.0003f * (1 + byte(rng) % 7));
          std::memcpy(block, &small, 2);  // the scales (extreme: all 63) stay as drawn
        } else if (f.plain == DType::kQ2_K) {
          std::memcpy(block + quant::kQ2_KD, &d, 2);
          std::memcpy(block + quant::kQ2_KD + 2, &dmin, 2);
        } else if (f.plain == DType::kQ4_K || f.plain == DType::kQ5_K) {
          std::memcpy(block, &d, 2);
          std::memcpy(block + 2, &dmin, 2);
        } else if (f.plain == DType::kQ3_K) {
          std::memcpy(block + quant::kQ3_KD, &d, 2);
          if (extreme) std::memset(block, 0x00, 32);  // every value - 4 .. - 1, scales all 31
        } else {
          std::memcpy(block + 208, &d, 2);
          if (extreme) block[192 + r % 16] = 0x80;  // one -128 scale per row
        }
      }
    }
    std::vector<float> x = RandomVector(tokens * k, &rng);
    if (extreme) {
      for (size_t i = 0; i < x.size(); ++i) x[i] = (i / k) % 2 == 0 ? 1.0f : -1.0f;
    }
    kernels::QuantizedActivations acts;
    kernels::QuantizeActivations(x.data(), tokens, k, &acts);
    f.repack(plain.data(), row_bytes, superblocks, group.data());
    for (int r = 0; r < 16; ++r) {
      std::vector<float> d1(k), d2(k);
      quant::DequantizeRow(f.plain, plain.data() + r * row_bytes, k, d1.data());
      f.dequantize(group.data(), superblocks, r, d2.data());
      ASSERT_EQ(d1, d2) << DTypeName(f.plain) << " row " << r;
    }
    const kernels::RowDotFn row_reference =
        f.plain == DType::kQ4_K     ? kernels::ReferenceTable().dot_q4_k
        : f.plain == DType::kQ5_K   ? kernels::ReferenceTable().dot_q5_k
        : f.plain == DType::kIQ4_XS ? kernels::ReferenceTable().dot_iq4_xs
        : f.plain == DType::kQ3_K   ? kernels::ReferenceTable().dot_q3_k
        : f.plain == DType::kQ4_1   ? kernels::ReferenceTable().dot_q4_1
        : f.plain == DType::kQ5_1   ? kernels::ReferenceTable().dot_q5_1
        : f.plain == DType::kQ2_K   ? kernels::ReferenceTable().dot_q2_k
                                    : kernels::ReferenceTable().dot_q6_k;
    for (int ntok : {1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17}) {
      float got[17 * 16];
      f.gemm(group.data(), nblocks, acts, 1, ntok, got, 16);
      for (int t = 0; t < ntok; ++t) {
        float rows[16];
        f.reference(group.data(), acts, 1 + t, nblocks, rows);
        for (int r = 0; r < 16; ++r) {
          float want;
          row_reference(plain.data() + r * row_bytes, nblocks, acts, 1 + t, 1, &want);
          ASSERT_EQ(rows[r], want) << DTypeName(f.plain) << " row " << r << " token " << t;
          double mag = 0;
          std::vector<float> deq(k);
          quant::DequantizeRow(f.plain, plain.data() + r * row_bytes, k, deq.data());
          for (int64_t j = 0; j < k; ++j) {
            mag += std::fabs(deq[j] * acts.q_row(1 + t)[j] * double{acts.scale_row(1 + t)[j / 32]});
          }
          EXPECT_NEAR(got[t * 16 + r], want, 1e-5 * mag + 1e-6)
              << DTypeName(f.plain) << " row " << r << " token " << t << " of " << ntok
              << " superblocks " << superblocks << (extreme ? " (extreme)" : "");
        }
      }
    }
  }
}

TEST_P(KernelTest, InterleavedKQuantsX16MatchPlainRows) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  if (table.gemm_q4_kx16 == nullptr && table.gemm_q5_kx16 == nullptr &&
      table.gemm_q6_kx16 == nullptr && table.gemm_iq4_xsx16 == nullptr &&
      table.gemm_q3_kx16 == nullptr && table.gemm_q4_1x16 == nullptr &&
      table.gemm_q2_kx16 == nullptr && table.gemm_q5_1x16 == nullptr) {
    GTEST_SKIP() << "no 16-row K-quant kernels";
  }
  if (table.gemm_q4_kx16 != nullptr) {
    ExpectKQuantX16MatchesPlainRows(
        {DType::kQ4_K, table.gemm_q4_kx16, kernels::pack::RepackGroupQ4_Kx16,
         kernels::pack::DequantizeQ4_Kx16Row,
         [](const uint8_t* g, const kernels::QuantizedActivations& a, int64_t t, int64_t nb,
            float* out) {
           kernels::GemmQ4_Kx16Reference(g, a.q_row(t), a.scale_row(t), a.sum_row(t), nb, out);
         }},
        23);
  }
  if (table.gemm_iq4_xsx16 != nullptr) {
    ExpectKQuantX16MatchesPlainRows(
        {DType::kIQ4_XS, table.gemm_iq4_xsx16, kernels::pack::RepackGroupIQ4_XSx16,
         kernels::pack::DequantizeIQ4_XSx16Row,
         [](const uint8_t* g, const kernels::QuantizedActivations& a, int64_t t, int64_t nb,
            float* out) {
           kernels::GemmIQ4_XSx16Reference(g, a.q_row(t), a.scale_row(t), nb, out);
         }},
        37);
  }
  if (table.gemm_q5_kx16 != nullptr) {
    ExpectKQuantX16MatchesPlainRows(
        {DType::kQ5_K, table.gemm_q5_kx16, kernels::pack::RepackGroupQ5_Kx16,
         kernels::pack::DequantizeQ5_Kx16Row,
         [](const uint8_t* g, const kernels::QuantizedActivations& a, int64_t t, int64_t nb,
            float* out) {
           kernels::GemmQ5_Kx16Reference(g, a.q_row(t), a.scale_row(t), a.sum_row(t), nb, out);
         }},
        31);
  }
  if (table.gemm_q4_1x16 != nullptr) {  // superblocks of 256 values: 8 Q4_1 blocks each
    ExpectKQuantX16MatchesPlainRows(
        {DType::kQ4_1, table.gemm_q4_1x16,
         [](const uint8_t* src, uint64_t row_bytes, int64_t nsuper, uint8_t* dst) {
           kernels::pack::RepackGroupQ4_1x16(src, row_bytes, 8 * nsuper, dst);
         },
         [](const uint8_t* group, int64_t nsuper, int row, float* out) {
           kernels::pack::DequantizeQ4_1x16Row(group, 8 * nsuper, row, out);
         },
         [](const uint8_t* g, const kernels::QuantizedActivations& a, int64_t t, int64_t nb,
            float* out) {
           kernels::GemmQ4_1x16Reference(g, a.q_row(t), a.scale_row(t), a.sum_row(t), nb, out);
         }},
        43);
  }
  if (table.gemm_q5_1x16 != nullptr) {  // likewise 8 Q5_1 blocks per superblock
    ExpectKQuantX16MatchesPlainRows(
        {DType::kQ5_1, table.gemm_q5_1x16,
         [](const uint8_t* src, uint64_t row_bytes, int64_t nsuper, uint8_t* dst) {
           kernels::pack::RepackGroupQ5_1x16(src, row_bytes, 8 * nsuper, dst);
         },
         [](const uint8_t* group, int64_t nsuper, int row, float* out) {
           kernels::pack::DequantizeQ5_1x16Row(group, 8 * nsuper, row, out);
         },
         [](const uint8_t* g, const kernels::QuantizedActivations& a, int64_t t, int64_t nb,
            float* out) {
           kernels::GemmQ5_1x16Reference(g, a.q_row(t), a.scale_row(t), a.sum_row(t), nb, out);
         }},
        47);
  }
  if (table.gemm_q3_kx16 != nullptr) {
    ExpectKQuantX16MatchesPlainRows(
        {DType::kQ3_K, table.gemm_q3_kx16, kernels::pack::RepackGroupQ3_Kx16,
         kernels::pack::DequantizeQ3_Kx16Row,
         [](const uint8_t* g, const kernels::QuantizedActivations& a, int64_t t, int64_t nb,
            float* out) { kernels::GemmQ3_Kx16Reference(g, a.q_row(t), a.scale_row(t), nb, out); }},
        41);
  }
  if (table.gemm_q2_kx16 != nullptr) {
    ExpectKQuantX16MatchesPlainRows(
        {DType::kQ2_K, table.gemm_q2_kx16, kernels::pack::RepackGroupQ2_Kx16,
         kernels::pack::DequantizeQ2_Kx16Row,
         [](const uint8_t* g, const kernels::QuantizedActivations& a, int64_t t, int64_t nb,
            float* out) {
           kernels::GemmQ2_Kx16Reference(g, a.q_row(t), a.scale_row(t), a.sum16_row(t), nb, out);
         }},
        43);
  }
  if (table.gemm_q6_kx16 != nullptr) {
    ExpectKQuantX16MatchesPlainRows(
        {DType::kQ6_K, table.gemm_q6_kx16, kernels::pack::RepackGroupQ6_Kx16,
         kernels::pack::DequantizeQ6_Kx16Row,
         [](const uint8_t* g, const kernels::QuantizedActivations& a, int64_t t, int64_t nb,
            float* out) { kernels::GemmQ6_Kx16Reference(g, a.q_row(t), a.scale_row(t), nb, out); }},
        29);
  }
}

// Runs a 16-row kernel on 16 plain rows (repacked with `repack`) against the reference row
// dot `reference`, for 4 tokens of activations x.
void ExpectGroupMatchesReference(decltype(kernels::KernelTable::gemm_q4_0x16) gemm,
                                 void (*repack)(const uint8_t*, uint64_t, int64_t, uint8_t*),
                                 kernels::RowDotFn reference, const std::vector<uint8_t>& plain,
                                 uint64_t row_bytes, int64_t nblocks, const std::vector<float>& x,
                                 const std::string& what) {
  std::vector<uint8_t> group(plain.size());
  repack(plain.data(), row_bytes, nblocks, group.data());
  kernels::QuantizedActivations acts;
  kernels::QuantizeActivations(x.data(), 4, nblocks * 32, &acts);
  float got[4 * 16];
  gemm(group.data(), nblocks, acts, 0, 4, got, 16);
  for (int r = 0; r < 16; ++r) {
    float want[4];
    reference(plain.data() + r * row_bytes, nblocks, acts, 0, 4, want);
    for (int t = 0; t < 4; ++t) {
      EXPECT_NEAR(got[t * 16 + r], want[t], 1e-5f * (1 + std::fabs(want[t])))
          << what << " row " << r << " token " << t;
    }
  }
}

// bf16 as VCVTNE2PS2BF16 rounds: nearest even, subnormal inputs as (signed) zero.
uint16_t Bf16OfActivation(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7F800000) == 0) bits &= 0x80000000;
  float flushed;
  std::memcpy(&flushed, &bits, 4);
  return half::F32ToBf16(flushed);
}

// The AMX table's kernels, on CPUs with AMX (skipped elsewhere); `amx` is that table and
// `vnni` the one below it, which has none of the tile kernels.
class AmxKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kernels::CpuSupports(kernels::Isa::kAvx512Amx)) GTEST_SKIP() << "CPU lacks AMX";
  }
  const kernels::KernelTable& amx = kernels::TableFor(kernels::Isa::kAvx512Amx);
  const kernels::KernelTable& vnni = kernels::TableFor(kernels::Isa::kAvx512Vnni);
};

// The AMX table's activation rows: each value rounded to nearest even (ties both ways, values
// that round up into the next binade, subnormals, infinities), block b of 32 at + 512 b.
TEST_F(AmxKernelTest, Bf16RowsRoundToNearestEven) {
  ASSERT_NE(amx.bf16_tile_row, nullptr);
  ASSERT_EQ(vnni.bf16_tile_row, nullptr);
  std::mt19937 rng(71);
  const int64_t nblocks = 5;
  std::vector<float> x = RandomVector(nblocks * 32, &rng, 3.0f);
  const uint32_t specials[] = {0x3F808000u, 0x3F818000u, 0x3F80C000u, 0xBF808000u,
                               0x7F7FFFFFu, 0x00000001u, 0x807FFFFFu, 0x00800000u,
                               0x7F800000u, 0xFF800000u, 0x477FFF80u, 0x3F7FFFFFu};
  for (size_t i = 0; i < std::size(specials); ++i) std::memcpy(&x[7 * i], &specials[i], 4);
  std::vector<uint16_t> out(nblocks * 512, 0xABCD);
  amx.bf16_tile_row(x.data(), nblocks, out.data());
  for (int64_t b = 0; b < nblocks; ++b) {
    for (int i = 0; i < 512; ++i) {
      const uint16_t want = i < 32 ? Bf16OfActivation(x[32 * b + i]) : 0xABCD;  // rest untouched
      ASSERT_EQ(out[512 * b + i], want) << "block " << b << " value " << i;
    }
  }
}

// The AMX tile kernels against the exact sums of their bf16 operands: every weight dequantized
// (pack's dequantizers: the values the kernels round) and rounded to bf16, every activation
// rounded to bf16, products summed in double. The kernels sum in f32 (one rounding a block at
// most per sum): tolerance (nblocks + 8) 2^-23 sum |w a|, where a weight or activation read from
// the wrong place errs by about sum |w a| / sqrt(k). Q4_0, Q8_0, Q4_K (random bytes, and every
// byte 0xFF: the largest values, scales and mins) and Q6_K (quantized random rows, and every
// byte 0xFF but d); block counts within one 64-block chunk,
// at its edge and across it; the product in one call and in calls over ranges of blocks added
// up (accumulate); token ranges inside and across tiles and past the 17 tiles of one pass; one
// and two groups. And the point of it: closer to the exact product of the f32 activations and
// weights than the VNNI kernels with their int8 activations (random data: all-0xFF weights
// times +-1 are exact in int8 and err by the bf16 rounding of one repeated weight).
TEST_F(AmxKernelTest, TilesMatchBf16Reference) {
  // The memory plan counts each thread's dequantized chunk (2 groups x 64 blocks x 1 KiB) and
  // its tiles' sums (33 tiles x 2 groups x 1 KiB).
  EXPECT_EQ(amx.thread_scratch_bytes, (128 + 66) * 1024);
  EXPECT_EQ(vnni.thread_scratch_bytes, 0);
  EXPECT_EQ(vnni.tiles_q4_0x16, nullptr);
  std::mt19937 rng(61);
  std::uniform_int_distribution<int> byte(0, 255);
  struct Case {
    DType plain;
    int64_t nblocks;
    bool extreme;
  };
  std::vector<Case> cases;
  for (int64_t nb : {1, 3, 63, 64, 65, 130}) {
    cases.push_back({DType::kQ4_0, nb, false});
    cases.push_back({DType::kQ8_0, nb, false});
  }
  for (int64_t superblocks : {1, 8, 9, 17}) {
    cases.push_back({DType::kQ4_K, 8 * superblocks, false});
    cases.push_back({DType::kQ6_K, 8 * superblocks, false});
  }
  cases.push_back({DType::kQ4_K, 16, true});
  cases.push_back({DType::kQ6_K, 16, true});
  for (const Case& c : cases) {
    // A call takes up to 33 tiles of 16 tokens a pass: 560 tokens make two passes (up to 65
    // blocks; the wider cases keep to one, for the test's time).
    const int64_t k = c.nblocks * 32, tokens = c.nblocks <= 65 ? 560 : 290;
    const std::string what = std::string(DTypeName(c.plain)) + " nblocks " +
                             std::to_string(c.nblocks) + (c.extreme ? " (all 0xFF)" : "");
    SCOPED_TRACE(what);
    const uint64_t row_bytes = RowBytes(c.plain, k);
    std::vector<uint8_t> plain(32 * row_bytes), groups(32 * row_bytes);
    kernels::GemmX16TilesFn tiles = nullptr;
    kernels::GemmX16Fn vnni_gemm = nullptr;
    void (*repack)(const uint8_t*, uint64_t, int64_t, uint8_t*) = nullptr;  // K-quants only
    void (*dequantize)(const uint8_t*, int64_t, int, float*) = nullptr;
    std::vector<float> w(32 * k);  // the dequantized rows
    if (c.plain == DType::kQ4_K) {
      for (uint8_t& b : plain) b = c.extreme ? 0xFF : static_cast<uint8_t>(byte(rng));
      for (int r = 0; r < 32; ++r) {
        for (int64_t sb = 0; sb < c.nblocks / 8; ++sb) {
          uint8_t* block = plain.data() + r * row_bytes + sb * quant::kQ4_KBlockBytes;
          const uint16_t d = half::F32ToF16(0.001f * (1 + byte(rng) % 7));
          const uint16_t dmin = half::F32ToF16(0.002f * (1 + byte(rng) % 5));
          std::memcpy(block, &d, 2);
          std::memcpy(block + 2, &dmin, 2);
        }
      }
      repack = kernels::pack::RepackGroupQ4_Kx16;
      dequantize = kernels::pack::DequantizeQ4_Kx16Row;
      tiles = amx.tiles_q4_kx16;
      vnni_gemm = vnni.gemm_q4_kx16;
    } else if (c.plain == DType::kQ6_K) {
      for (int r = 0; r < 32; ++r) {
        if (c.extreme) {  // every byte 0xFF but d: values 31, scales -1
          std::fill_n(plain.data() + r * row_bytes, row_bytes, uint8_t{0xFF});
          for (int64_t sb = 0; sb < c.nblocks / 8; ++sb) {
            const uint16_t d = half::F32ToF16(0.01f);
            std::memcpy(plain.data() + r * row_bytes + sb * quant::kQ6_KBlockBytes + 208, &d, 2);
          }
        } else {
          quant::QuantizeRow(DType::kQ6_K, RandomVector(k, &rng, 0.05f).data(), k,
                             plain.data() + r * row_bytes);
        }
      }
      repack = kernels::pack::RepackGroupQ6_Kx16;
      dequantize = kernels::pack::DequantizeQ6_Kx16Row;
      tiles = amx.tiles_q6_kx16;
      vnni_gemm = vnni.gemm_q6_kx16;
    } else {
      const bool q4 = c.plain == DType::kQ4_0;
      const X16Weights weights = RandomX16Weights(
          c.plain, q4 ? kernels::pack::RepackGroupQ4_0x16 : kernels::pack::RepackGroupQ8_0x16,
          c.nblocks, 2, &rng);
      plain = weights.plain;
      groups = weights.packed;
      dequantize = q4 ? kernels::pack::DequantizeQ4_0x16Row : kernels::pack::DequantizeQ8_0x16Row;
      tiles = q4 ? amx.tiles_q4_0x16 : amx.tiles_q8_0x16;
      vnni_gemm = q4 ? vnni.gemm_q4_0x16 : vnni.gemm_q8_0x16;
    }
    // The K-quants' plain rows repacked here (units: 256-value superblocks), every format's
    // groups dequantized: the values the kernels round.
    const int64_t units = repack != nullptr ? c.nblocks / 8 : c.nblocks;
    for (int g = 0; g < 2; ++g) {
      if (repack != nullptr) {
        repack(plain.data() + g * 16 * row_bytes, row_bytes, units,
               groups.data() + g * 16 * row_bytes);
      }
      for (int r = 0; r < 16; ++r) {
        dequantize(groups.data() + g * 16 * row_bytes, units, r, w.data() + (16 * g + r) * k);
      }
    }
    ASSERT_NE(tiles, nullptr);
    std::vector<float> x = RandomVector(tokens * k, &rng);
    if (c.extreme) {
      for (size_t i = 0; i < x.size(); ++i) x[i] = (i / k) % 2 == 0 ? 1.0f : -1.0f;
    }
    kernels::QuantizedActivations acts;
    kernels::QuantizeActivations(x.data(), tokens, k, &acts);
    kernels::QuantizedActivations rows = acts;  // int8 rows and groups of 8 for the VNNI kernels
    acts.ResizeBf16();
    ASSERT_TRUE(acts.has_bf16);
    for (int64_t t = 0; t < tokens; ++t)
      amx.bf16_tile_row(x.data() + t * k, c.nblocks, acts.bf16_row(t));
    // want[t][r] and its tolerance, from the bf16 operands.
    std::vector<double> want(tokens * 32), tolerance(tokens * 32);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int r = 0; r < 32; ++r) {
        double sum = 0, magnitude = 0;
        for (int64_t i = 0; i < k; ++i) {
          const double p = static_cast<double>(half::Bf16ToF32(half::F32ToBf16(w[r * k + i]))) *
                           half::Bf16ToF32(Bf16OfActivation(x[t * k + i]));
          sum += p;
          magnitude += std::fabs(p);
        }
        want[t * 32 + r] = sum;
        tolerance[t * 32 + r] = (c.nblocks + 8) * std::ldexp(magnitude, -23);
      }
    }
    struct Range {
      int first, ntok;
    };
    for (const Range rg :
         {Range{0, 16}, Range{16, 32}, Range{3, 1}, Range{5, 20}, Range{15, 2}, Range{31, 6},
          Range{0, 290}, Range{7, 280}, Range{0, 560}, Range{7, 550}}) {
      if (rg.first + rg.ntok > tokens) continue;
      for (int ngroups : {2, 1}) {
        for (bool split : {false, true}) {
          constexpr int64_t ldo = 35;  // odd, wider than the 32 rows
          std::vector<float> got(tokens * ldo, -1.0f);
          if (split) {  // blocks [0, 8) then [8, 64) then the rest, 8-aligned (Q4_K)
            const int64_t cuts[] = {0, std::min<int64_t>(8, c.nblocks),
                                    std::min<int64_t>(64, c.nblocks), c.nblocks};
            for (int p = 0; p < 3; ++p) {
              if (cuts[p] == cuts[p + 1]) continue;
              for (int g = 0; g < 2; g += ngroups) {
                tiles(groups.data() + g * 16 * row_bytes, ngroups, c.nblocks, cuts[p], cuts[p + 1],
                      acts, rg.first, rg.ntok, got.data() + 16 * g, ldo, p > 0);
              }
            }
          } else {
            for (int g = 0; g < 2; g += ngroups) {
              tiles(groups.data() + g * 16 * row_bytes, ngroups, c.nblocks, 0, c.nblocks, acts,
                    rg.first, rg.ntok, got.data() + 16 * g, ldo, false);
            }
          }
          for (int i = 0; i < rg.ntok; ++i) {
            const int64_t t = rg.first + i;
            for (int r = 0; r < 32; ++r) {
              ASSERT_NEAR(got[i * ldo + r], want[t * 32 + r], tolerance[t * 32 + r])
                  << "token " << t << " row " << r << " first " << rg.first << " ntok " << rg.ntok
                  << " groups " << ngroups << (split ? " split" : "");
            }
            for (int r = 32; r < ldo; ++r) ASSERT_EQ(got[i * ldo + r], -1.0f) << "column " << r;
          }
          // Nothing written past the range's rows.
          for (int64_t i = rg.ntok * ldo; i < tokens * ldo; ++i) ASSERT_EQ(got[i], -1.0f) << i;
        }
      }
    }
    // Accuracy against the exact product of the f32 weights and activations: the bf16 tiles'
    // error against that of the VNNI kernel's int8 activations, over the first 64 tokens.
    std::vector<float> amx_out(64 * 32), vnni_out(64 * 32);
    for (int g = 0; g < 2; ++g) {
      tiles(groups.data() + g * 16 * row_bytes, 1, c.nblocks, 0, c.nblocks, acts, 0, 64,
            amx_out.data() + 16 * g, 32, false);
      for (int t = 0; t < 64; t += 16) {
        vnni_gemm(groups.data() + g * 16 * row_bytes, c.nblocks, rows, t, 16,
                  vnni_out.data() + t * 32 + 16 * g, 32);
      }
    }
    if (c.extreme) continue;  // +-1 activations: int8 blocks hold them exactly
    double amx_error = 0, vnni_error = 0;
    for (int t = 0; t < 64; ++t) {
      for (int r = 0; r < 32; ++r) {
        double exact = 0;
        for (int64_t i = 0; i < k; ++i) exact += static_cast<double>(w[r * k + i]) * x[t * k + i];
        amx_error += std::fabs(amx_out[t * 32 + r] - exact);
        vnni_error += std::fabs(vnni_out[t * 32 + r] - exact);
      }
    }
    // Measured: 0.42-0.46 of the VNNI kernels' error in every case.
    EXPECT_LT(amx_error, 0.6 * vnni_error)
        << "bf16 tiles " << amx_error << ", int8 VNNI " << vnni_error;
  }
}

// KernelTable::bf16_split_tiles: three bf16 parts that add up to each value exactly (random
// values over 2^-60 .. 2^60 with full 24-bit significands, bf16 ties, the largest float below
// bf16's overflow, zeros; subnormal parts flush: values from 2^-100 up keep every bit), in the
// B-tile layout (row i, dword t: values 2i, 2i + 1 of token t), tokens past ntok zero; an
// infinite value is its hi part alone.
TEST_F(AmxKernelTest, Bf16SplitAddsUpExactly) {
  ASSERT_NE(amx.bf16_split_tiles, nullptr);
  ASSERT_EQ(vnni.bf16_split_tiles, nullptr);
  std::mt19937 rng(81);
  std::uniform_int_distribution<uint32_t> mantissa(0, (1u << 23) - 1);
  std::uniform_int_distribution<int> exponent(-60, 60);
  const int64_t nblocks = 3, ldx = nblocks * 32 + 5;
  for (int ntok : {16, 11, 1}) {
    std::vector<float> x(16 * ldx);
    for (float& v : x) {
      const uint32_t bits =
          (rng() & 0x80000000u) | static_cast<uint32_t>(127 + exponent(rng)) << 23 | mantissa(rng);
      std::memcpy(&v, &bits, 4);
    }
    const uint32_t specials[] = {0x3F808000u, 0x3F818000u, 0x3F80C000u, 0xBF808000u, 0x00000000u,
                                 0x80000000u, 0x7F7F7FFFu, 0x0D800001u, 0x3F7FFFFFu, 0x7F800000u};
    for (size_t i = 0; i < std::size(specials); ++i) std::memcpy(&x[9 * i + 1], &specials[i], 4);
    std::vector<uint16_t> out(nblocks * 3 * 512, 0xABCD);
    amx.bf16_split_tiles(x.data(), ldx, ntok, nblocks, out.data());
    for (int64_t b = 0; b < nblocks; ++b) {
      for (int t = 0; t < 16; ++t) {
        for (int v = 0; v < 32; ++v) {
          // Value v of token t: row v / 2, dword t, half v % 2 of each part's tile.
          float part[3];
          for (int p = 0; p < 3; ++p) {
            part[p] = half::Bf16ToF32(out[(3 * b + p) * 512 + (v / 2) * 32 + 2 * t + v % 2]);
          }
          const float want = t < ntok ? x[t * ldx + 32 * b + v] : 0.0f;
          if (std::isinf(want)) {
            ASSERT_EQ(part[0], want);
            ASSERT_EQ(part[1], 0.0f);
            ASSERT_EQ(part[2], 0.0f);
            continue;
          }
          ASSERT_EQ(static_cast<double>(part[0]) + part[1] + part[2], want)
              << "ntok " << ntok << " block " << b << " token " << t << " value " << v;
          ASSERT_EQ(part[0], half::Bf16ToF32(half::F32ToBf16(want)));  // hi: x rounded
        }
      }
    }
  }
}

// KernelTable::tiles_bf16 (weights 16 or 32 rows of odd widths, row stride past the row;
// blocks 1 .. 70, ranges of them added up with `accumulate`; tokens inside, across and after
// tiles, with split tiles from token 0). Exact: rows with one nonzero weight, a power of two,
// give x 2^e exactly (each part's product exact, the other products zero) and `accumulate`
// adds it to the preset output in one f32 rounding: a lost part, a misplaced value or a
// mis-transposed sum fails bit equality. Random rows: within the f32 summation bound
// (3 k + 2) 2^-24 sum |w x| of the double sums.
TEST_F(AmxKernelTest, Bf16RowsTilesAreExactProductsSummedInF32) {
  ASSERT_NE(amx.tiles_bf16, nullptr);
  ASSERT_EQ(vnni.tiles_bf16, nullptr);
  std::mt19937 rng(83);
  std::uniform_int_distribution<int> pick(0, 1 << 20);
  for (int64_t nblocks : {1, 3, 48, 70}) {
    const int64_t k = 32 * nblocks, ldw = k + 3, s = 53;
    const std::vector<float> x = RandomVector(s * k, &rng, 4.0f);
    std::vector<uint16_t> split((s + 15) / 16 * nblocks * 3 * 512);
    for (int64_t tile = 0; tile * 16 < s; ++tile) {
      amx.bf16_split_tiles(x.data() + tile * 16 * k, k,
                           static_cast<int>(std::min<int64_t>(16, s - tile * 16)), nblocks,
                           split.data() + tile * nblocks * 3 * 512);
    }
    for (bool exact : {true, false}) {
      for (int ngroups : {1, 2}) {
        const int rows = 16 * ngroups;
        std::vector<kernels::Bf16> w(rows * ldw);
        std::vector<int64_t> at(rows);
        std::vector<float> wf(rows * k, 0.0f);
        for (int r = 0; r < rows; ++r) {
          at[r] = pick(rng) % k;
          for (int64_t i = 0; i < k; ++i) {
            float v =
                exact ? (i == at[r] ? std::ldexp(pick(rng) % 2 ? 1.0f : -1.0f, pick(rng) % 7 - 3)
                                    : 0.0f)
                      : half::Bf16ToF32(
                            half::F32ToBf16(static_cast<float>(pick(rng)) / (1 << 19) - 1.0f));
            w[r * ldw + i].bits = half::F32ToBf16(v);
            wf[r * k + i] = v;
          }
        }
        // Tokens [token, token + ntok), blocks in one call or in ranges of 7 added up.
        const struct {
          int64_t token;
          int ntok;
          bool ranges;
        } calls[] = {{0, 53, false}, {16, 17, true}, {32, 1, false}, {48, 5, true}, {0, 16, true}};
        for (const auto& call : calls) {
          const int64_t ldo = rows + 2;
          std::vector<float> preset = RandomVector(call.ntok * ldo, &rng);
          std::vector<float> y = preset;
          const bool accumulate_first = exact;  // exact rows: onto the preset values
          const int64_t step = call.ranges ? 7 : nblocks;
          for (int64_t b0 = 0; b0 < nblocks; b0 += step) {
            amx.tiles_bf16(w.data(), ldw, ngroups, b0, std::min(nblocks, b0 + step), split.data(),
                           nblocks, call.token, call.ntok, y.data(), ldo,
                           b0 > 0 || accumulate_first);
          }
          for (int t = 0; t < call.ntok; ++t) {
            const float* xt = x.data() + (call.token + t) * k;
            for (int64_t r = 0; r < ldo; ++r) {
              const float got = y[t * ldo + r];
              if (r >= rows) {
                ASSERT_EQ(got, preset[t * ldo + r]) << "wrote past the rows";
                continue;
              }
              if (exact) {
                ASSERT_EQ(got, preset[t * ldo + r] + xt[at[r]] * wf[r * k + at[r]])
                    << "nblocks " << nblocks << " groups " << ngroups << " token " << call.token + t
                    << " row " << r;
                continue;
              }
              double want = 0, magnitude = 0;
              for (int64_t i = 0; i < k; ++i) {
                const double p = static_cast<double>(wf[r * k + i]) * xt[i];
                want += p;
                magnitude += std::fabs(p);
              }
              ASSERT_NEAR(got, want, (3 * k + 2) * std::ldexp(magnitude, -24))
                  << "nblocks " << nblocks << " groups " << ngroups << " token " << call.token + t
                  << " row " << r;
            }
          }
        }
      }
    }
  }
}

// The largest integer sums a kernel can meet: every nibble 15 (or 0) against activations all
// +127 or all -127. Kernels that sum products in 16-bit lanes before widening must not
// saturate here.
TEST_P(KernelTest, InterleavedX16ExtremeValues) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  if (table.gemm_q4_0x16 == nullptr) GTEST_SKIP() << "no Q4_0x16 kernel";
  for (int64_t nblocks : {1, 5}) {
    const int64_t k = nblocks * 32;
    const uint64_t row_bytes = RowBytes(DType::kQ4_0, k);
    std::vector<uint8_t> plain(16 * row_bytes);
    for (int r = 0; r < 16; ++r) {
      for (int64_t b = 0; b < nblocks; ++b) {
        uint8_t* block = plain.data() + r * row_bytes + b * quant::kQ4_0BlockBytes;
        const uint16_t one_f16 = 0x3C00;
        std::memcpy(block, &one_f16, 2);
        // Rows alternate all-15 and all-0 nibbles (values +7 and -8); one row mixes both.
        const uint8_t fill = r == 5 ? 0xF0 : (r % 2 == 0 ? 0xFF : 0x00);
        std::memset(block + 2, fill, 16);
      }
    }
    for (float sign : {1.0f, -1.0f}) {
      std::vector<float> x(4 * k, sign);
      x[3] = -sign;  // one opposite value in the first token
      ExpectGroupMatchesReference(table.gemm_q4_0x16, kernels::pack::RepackGroupQ4_0x16,
                                  kernels::ReferenceTable().dot_q4_0, plain, row_bytes, nblocks, x,
                                  "Q4_0 sign " + std::to_string(sign));
    }
  }
}

// Q8_0x16 likewise: weights -128 and 127 (the int8 extremes) against activations +-127.
TEST_P(KernelTest, InterleavedQ8X16ExtremeValues) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  if (table.gemm_q8_0x16 == nullptr) GTEST_SKIP() << "no Q8_0x16 kernel";
  for (int64_t nblocks : {1, 3}) {
    const int64_t k = nblocks * 32;
    const uint64_t row_bytes = RowBytes(DType::kQ8_0, k);
    std::vector<uint8_t> plain(16 * row_bytes);
    for (int r = 0; r < 16; ++r) {
      for (int64_t b = 0; b < nblocks; ++b) {
        uint8_t* block = plain.data() + r * row_bytes + b * quant::kQ8_0BlockBytes;
        const uint16_t one_f16 = 0x3C00;
        std::memcpy(block, &one_f16, 2);
        for (int i = 0; i < 32; ++i) {
          const int8_t v = r % 3 == 0 ? -128 : (r % 3 == 1 ? 127 : (i % 2 ? -128 : 127));
          std::memcpy(block + 2 + i, &v, 1);
        }
      }
    }
    for (float sign : {1.0f, -1.0f}) {
      std::vector<float> x(4 * k, sign);
      for (int64_t i = k; i < 2 * k; i += 2) x[i] = -sign;  // token 1 alternates
      ExpectGroupMatchesReference(table.gemm_q8_0x16, kernels::pack::RepackGroupQ8_0x16,
                                  kernels::ReferenceTable().dot_q8_0, plain, row_bytes, nblocks, x,
                                  "Q8_0 sign " + std::to_string(sign));
    }
  }
}

// IQ4_NLx16 likewise: nibbles 0 and 15 (levels -127 and 113, the largest sizes of both signs)
// against activations +-127: the AVX2 kernel's int16 pair sums reach 2 * 127 * 127.
TEST_P(KernelTest, InterleavedIQ4_NLX16ExtremeValues) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  if (table.gemm_iq4_nlx16 == nullptr) GTEST_SKIP() << "no IQ4_NLx16 kernel";
  for (int64_t nblocks : {1, 4}) {
    const int64_t k = nblocks * 32;
    const uint64_t row_bytes = RowBytes(DType::kIQ4_NL, k);
    std::vector<uint8_t> plain(16 * row_bytes);
    for (int r = 0; r < 16; ++r) {
      for (int64_t b = 0; b < nblocks; ++b) {
        uint8_t* block = plain.data() + r * row_bytes + b * quant::kIQ4_NLBlockBytes;
        const uint16_t one_f16 = 0x3C00;
        std::memcpy(block, &one_f16, 2);
        const uint8_t fill = r == 7 ? 0xF0 : (r % 2 == 0 ? 0x00 : 0xFF);
        std::memset(block + 2, fill, 16);
      }
    }
    for (float sign : {1.0f, -1.0f}) {
      std::vector<float> x(4 * k, sign);
      x[5] = -sign;
      ExpectGroupMatchesReference(table.gemm_iq4_nlx16, kernels::pack::RepackGroupQ4_0x16,
                                  kernels::ReferenceTable().dot_iq4_nl, plain, row_bytes, nblocks,
                                  x, "IQ4_NL sign " + std::to_string(sign));
    }
  }
}

// MXFP4x16 likewise: nibbles 7 and 15 (levels 12 and -12) and the zero levels (0 and 8) against
// activations +-127, with scales 2^-1 .. 2^2 (row 3's denormal scale is below this check's
// tolerance; MXFP4X16ScalesAreExact below holds the scales themselves).
TEST_P(KernelTest, InterleavedMXFP4X16ExtremeValues) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  if (table.gemm_mxfp4x16 == nullptr) GTEST_SKIP() << "no MXFP4x16 kernel";
  for (int64_t nblocks : {1, 4}) {
    const int64_t k = nblocks * 32;
    const uint64_t row_bytes = RowBytes(DType::kMXFP4, k);
    std::vector<uint8_t> plain(16 * row_bytes);
    for (int r = 0; r < 16; ++r) {
      for (int64_t b = 0; b < nblocks; ++b) {
        uint8_t* block = plain.data() + r * row_bytes + b * quant::kMXFP4BlockBytes;
        block[0] = static_cast<uint8_t>(r == 3 ? 1 : 127 + (r + b) % 4);
        const uint8_t fill = r == 9 ? 0x80 : (r % 2 == 0 ? 0x77 : 0xFF);
        std::memset(block + 1, fill, 16);
      }
    }
    for (float sign : {1.0f, -1.0f}) {
      std::vector<float> x(4 * k, sign);
      x[2] = -sign;
      ExpectGroupMatchesReference(table.gemm_mxfp4x16, kernels::pack::RepackGroupMXFP4x16,
                                  kernels::ReferenceTable().dot_mxfp4, plain, row_bytes, nblocks, x,
                                  "MXFP4 sign " + std::to_string(sign));
    }
  }
}

// The 16-row MXFP4 kernels' E8M0 scales, exactly: one block, each row its own scale byte among
// the edges (the denormal encodings 0 and 1, the smallest normal 2, 2^0 at 128, 2^126 at 254) and
// random nibbles, 1-5 tokens. With one block the kernels' sum is one multiply of the exact
// integer dot by scale x activation scale, as the reference's, so the results must be equal.
TEST_P(KernelTest, MXFP4X16ScalesAreExact) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  if (table.gemm_mxfp4x16 == nullptr) GTEST_SKIP() << "no MXFP4x16 kernel";
  constexpr uint8_t kScales[16] = {0,   1,   2,   3,   100, 126, 127, 128,
                                   129, 150, 200, 250, 253, 254, 1,   0};
  std::mt19937 rng(83);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> plain(16 * quant::kMXFP4BlockBytes), group(plain.size());
  for (int r = 0; r < 16; ++r) {
    uint8_t* block = plain.data() + r * quant::kMXFP4BlockBytes;
    block[0] = kScales[r];
    for (int i = 1; i < quant::kMXFP4BlockBytes; ++i) block[i] = static_cast<uint8_t>(byte(rng));
  }
  kernels::pack::RepackGroupMXFP4x16(plain.data(), quant::kMXFP4BlockBytes, 1, group.data());
  const auto x = RandomVector(5 * 32, &rng);
  kernels::QuantizedActivations acts;
  kernels::QuantizeActivations(x.data(), 5, 32, &acts);
  for (int ntok = 1; ntok <= 5; ++ntok) {
    float got[5 * 16];
    table.gemm_mxfp4x16(group.data(), 1, acts, 0, ntok, got, 16);
    for (int r = 0; r < 16; ++r) {
      for (int t = 0; t < ntok; ++t) {
        float want;
        kernels::ReferenceTable().dot_mxfp4(plain.data() + r * quant::kMXFP4BlockBytes, 1, acts, t,
                                            1, &want);
        EXPECT_EQ(got[t * 16 + r], want) << "scale byte " << int{kScales[r]} << " token " << t;
      }
    }
  }
}

// Blocked attention kernels against the per-dot reference: odd query counts, key counts and
// head widths (tails of every blocking), row strides wider than the rows.
TEST_P(KernelTest, AttentionKernelsMatchReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  const kernels::KernelTable& ref = kernels::ReferenceTable();
  std::mt19937 rng(23);
  for (int nq : {1, 2, 3, 4, 5, 6, 8, 9, 13, 24}) {
    for (int64_t nk : {1, 2, 3, 7, 64}) {
      for (int64_t d : {1, 7, 8, 33, 72, 256}) {
        const int64_t ldq = d + 3, ldk = d + 5, ldsc = nk + 2, ldo = d + 1;
        const auto q = RandomVector(nq * ldq, &rng), k = RandomVector(nk * ldk, &rng);
        std::vector<float> s1(nq * ldsc, -7.0f), s2 = s1;
        table.attention_scores_f32(q.data(), ldq, nq, k.data(), ldk, nk, d, s1.data(), ldsc);
        ref.attention_scores_f32(q.data(), ldq, nq, k.data(), ldk, nk, d, s2.data(), ldsc);
        for (int h = 0; h < nq; ++h) {
          for (int64_t j = 0; j < ldsc; ++j) {
            double mag = 0;
            for (int64_t i = 0; j < nk && i < d; ++i)
              mag += std::fabs(q[h * ldq + i] * k[j * ldk + i]);
            EXPECT_NEAR(s1[h * ldsc + j], s2[h * ldsc + j], 4e-7 * mag * std::log2(d + 1.0) + 1e-30)
                << "nq " << nq << " nk " << nk << " d " << d << " h " << h << " j " << j;
          }
        }
        const auto p = RandomVector(nq * ldsc, &rng), v = RandomVector(nk * ldk, &rng);
        std::vector<float> o1 = RandomVector(nq * ldo, &rng), o2 = o1;
        table.attention_values_f32(p.data(), ldsc, nq, v.data(), ldk, nk, d, o1.data(), ldo);
        ref.attention_values_f32(p.data(), ldsc, nq, v.data(), ldk, nk, d, o2.data(), ldo);
        for (int h = 0; h < nq; ++h) {
          for (int64_t i = 0; i < ldo; ++i) {
            double mag = std::fabs(o2[h * ldo + i]);
            for (int64_t j = 0; i < d && j < nk; ++j)
              mag += std::fabs(p[h * ldsc + j] * v[j * ldk + i]);
            EXPECT_NEAR(o1[h * ldo + i], o2[h * ldo + i], 4e-7 * mag * std::log2(nk + 2.0))
                << "nq " << nq << " nk " << nk << " d " << d << " h " << h << " i " << i;
          }
        }
      }
    }
  }
  for (int64_t n : {1, 7, 8, 9, 1000}) {
    auto x = RandomVector(n, &rng, 60.0f);
    auto y = x;
    table.softcap_f32(x.data(), n, 30.0f);
    ref.softcap_f32(y.data(), n, 30.0f);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(x[i], y[i], 4e-6f * 30.0f) << i;
  }
}

// Decode's float matmuls (a few tokens against weight rows, each row read front to back):
// bit for bit the sums of the attention-score kernel (batch invariance: prefill computes float
// matmuls with that one), close to the per-dot reference for f32 rows, and for f16 / bf16
// rows bit for bit the sums of the f32 kernel over the exactly widened rows; odd token counts, row
// counts and widths (every tail of the unrolled loop), row strides wider than the rows, outputs
// strided.
TEST_P(KernelTest, MatVecKernelsMatchReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  const kernels::KernelTable& ref = kernels::ReferenceTable();
  std::mt19937 rng(31);
  for (int nx : {1, 2, 3, 4, 5, 9}) {
    for (int64_t nrows : {1, 2, 3, 7, 64}) {
      for (int64_t d : {1, 7, 8, 15, 16, 17, 31, 33, 64, 65, 256, 257, 511, 512, 513}) {
        const int64_t ldx = d + 3, ldw = d + 5, ldy = nrows + 2;
        const std::string where = "nx " + std::to_string(nx) + " nrows " + std::to_string(nrows) +
                                  " d " + std::to_string(d);
        const auto x = RandomVector(nx * ldx, &rng);
        const auto w = RandomVector(nrows * ldw, &rng, 4.0f);
        std::vector<float> y(nx * ldy, -7.0f), yref = y;
        table.matvec_f32(x.data(), ldx, nx, w.data(), ldw, nrows, d, y.data(), ldy);
        ref.matvec_f32(x.data(), ldx, nx, w.data(), ldw, nrows, d, yref.data(), ldy);
        std::vector<float> yscores(nx * ldy, -7.0f);
        table.attention_scores_f32(x.data(), ldx, nx, w.data(), ldw, nrows, d, yscores.data(), ldy);
        ASSERT_EQ(y, yscores) << where;
        for (int t = 0; t < nx; ++t) {
          for (int64_t r = 0; r < ldy; ++r) {
            double mag = 0;
            for (int64_t i = 0; r < nrows && i < d; ++i)
              mag += std::fabs(x[t * ldx + i] * w[r * ldw + i]);
            EXPECT_NEAR(y[t * ldy + r], yref[t * ldy + r], 4e-7 * mag * std::log2(d + 1.0) + 1e-30)
                << where << " t " << t << " r " << r;
          }
        }
        // f16 rows and bf16 rows (the top halves of the f32 values), against the f32 kernel
        // over their widened values.
        std::vector<uint16_t> wh(w.size());
        std::vector<kernels::Bf16> wb(w.size());
        std::vector<float> wh32(w.size()), wb32(w.size());
        for (size_t i = 0; i < w.size(); ++i) {
          wh[i] = half::F32ToF16(w[i]);
          wh32[i] = half::F16ToF32(wh[i]);
          uint32_t bits;
          std::memcpy(&bits, &w[i], 4);
          wb[i].bits = static_cast<uint16_t>(bits >> 16);
          bits &= 0xFFFF0000u;
          std::memcpy(&wb32[i], &bits, 4);
        }
        std::vector<float> y16(nx * ldy, -7.0f), y32 = y16, y16ref = y16;
        table.matvec_f16(x.data(), ldx, nx, wh.data(), ldw, nrows, d, y16.data(), ldy);
        table.matvec_f32(x.data(), ldx, nx, wh32.data(), ldw, nrows, d, y32.data(), ldy);
        ASSERT_EQ(y16, y32) << "f16 " << where;
        ref.matvec_f16(x.data(), ldx, nx, wh.data(), ldw, nrows, d, y16ref.data(), ldy);
        for (int t = 0; t < nx; ++t) {
          for (int64_t r = 0; r < ldy; ++r) {
            double mag = 0;
            for (int64_t i = 0; r < nrows && i < d; ++i)
              mag += std::fabs(x[t * ldx + i] * wh32[r * ldw + i]);
            EXPECT_NEAR(y16[t * ldy + r], y16ref[t * ldy + r],
                        4e-7 * mag * std::log2(d + 1.0) + 1e-30)
                << "f16 " << where << " t " << t << " r " << r;
          }
        }
        std::vector<float> yb(nx * ldy, -7.0f), yb32 = yb;
        table.matvec_bf16(x.data(), ldx, nx, wb.data(), ldw, nrows, d, yb.data(), ldy);
        table.matvec_f32(x.data(), ldx, nx, wb32.data(), ldw, nrows, d, yb32.data(), ldy);
        ASSERT_EQ(yb, yb32) << "bf16 " << where;
        ref.matvec_bf16(x.data(), ldx, nx, wb.data(), ldw, nrows, d, yb.data(), ldy);
        ref.matvec_f32(x.data(), ldx, nx, wb32.data(), ldw, nrows, d, yb32.data(), ldy);
        ASSERT_EQ(yb, yb32) << "reference bf16 " << where;
      }
    }
  }
}

// Prefill's float matmuls through the scores kernel (many tokens, long rows: AVX-512 runs them
// in spans of the rows with the accumulators kept between spans, and reduces four tokens' four
// sums at once): every output bit for bit the one-token, one-row product (matvec), for f32 and
// bf16 rows; token counts past the 6-token blocks, row counts past the 32-row groups and the
// 4-row blocks, widths inside, at and past one span, strided rows and outputs.
TEST_P(KernelTest, ScoresOfManyTokensMatchOneByOne) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  std::mt19937 rng(37);
  for (int nq : {12, 13, 17, 64}) {
    for (int64_t nk : {1, 3, 4, 7, 32, 37, 70}) {
      for (int64_t d : {16, 256, 272, 512, 800, 1000, 1536}) {
        const int64_t ldq = d + 3, ldk = d + 5, ldsc = nk + 2;
        const std::string where =
            "nq " + std::to_string(nq) + " nk " + std::to_string(nk) + " d " + std::to_string(d);
        const auto q = RandomVector(nq * ldq, &rng);
        const auto kraw = RandomVector(nk * ldk, &rng, 4.0f);
        std::vector<kernels::Bf16> kb(kraw.size());
        for (size_t i = 0; i < kb.size(); ++i) {
          uint32_t bits;
          std::memcpy(&bits, &kraw[i], 4);
          kb[i].bits = static_cast<uint16_t>(bits >> 16);
        }
        std::vector<float> s(nq * ldsc, -7.0f), one = s, sb = s, oneb = s;
        table.attention_scores_f32(q.data(), ldq, nq, kraw.data(), ldk, nk, d, s.data(), ldsc);
        table.attention_scores_bf16(q.data(), ldq, nq, kb.data(), ldk, nk, d, sb.data(), ldsc);
        for (int h = 0; h < nq; ++h) {
          table.matvec_f32(q.data() + h * ldq, ldq, 1, kraw.data(), ldk, nk, d,
                           one.data() + h * ldsc, ldsc);
          table.matvec_bf16(q.data() + h * ldq, ldq, 1, kb.data(), ldk, nk, d,
                            oneb.data() + h * ldsc, ldsc);
        }
        ASSERT_EQ(s, one) << where;
        ASSERT_EQ(sb, oneb) << "bf16 " << where;
      }
    }
  }
}

// f16 keys and values: the same sums as the f32 kernels over the exactly widened rows (bit for
// bit, since half to float is exact and the summation order is shared), and close to the
// scalar f16 reference.
TEST_P(KernelTest, AttentionKernelsOverF16MatchF32) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  const kernels::KernelTable& ref = kernels::ReferenceTable();
  std::mt19937 rng(29);
  auto to_half = [](const std::vector<float>& x) {
    std::vector<uint16_t> h(x.size());
    for (size_t i = 0; i < x.size(); ++i) h[i] = half::F32ToF16(x[i]);
    return h;
  };
  auto widen = [](const std::vector<uint16_t>& h) {
    std::vector<float> x(h.size());
    for (size_t i = 0; i < h.size(); ++i) x[i] = half::F16ToF32(h[i]);
    return x;
  };
  for (int nq : {1, 2, 3, 4, 5, 8, 9}) {
    for (int64_t nk : {1, 2, 3, 7, 64}) {
      for (int64_t d : {1, 7, 8, 15, 16, 17, 33, 256}) {
        const int64_t ldq = d + 3, ldk = d + 5, ldsc = nk + 2, ldo = d + 1;
        const auto q = RandomVector(nq * ldq, &rng);
        const auto k16 = to_half(RandomVector(nk * ldk, &rng, 4.0f));
        const auto k32 = widen(k16);
        std::vector<float> s16(nq * ldsc, -7.0f), s32 = s16, sref = s16;
        table.attention_scores_f16(q.data(), ldq, nq, k16.data(), ldk, nk, d, s16.data(), ldsc);
        table.attention_scores_f32(q.data(), ldq, nq, k32.data(), ldk, nk, d, s32.data(), ldsc);
        ref.attention_scores_f16(q.data(), ldq, nq, k16.data(), ldk, nk, d, sref.data(), ldsc);
        for (int h = 0; h < nq; ++h) {
          for (int64_t j = 0; j < ldsc; ++j) {
            ASSERT_EQ(s16[h * ldsc + j], s32[h * ldsc + j])
                << "nq " << nq << " nk " << nk << " d " << d << " h " << h << " j " << j;
            double mag = 0;
            for (int64_t i = 0; j < nk && i < d; ++i)
              mag += std::fabs(q[h * ldq + i] * k32[j * ldk + i]);
            EXPECT_NEAR(s16[h * ldsc + j], sref[h * ldsc + j],
                        4e-7 * mag * std::log2(d + 1.0) + 1e-30);
          }
        }
        // BF16 rows (prefill's BF16 matmuls) likewise: the f32 kernel's bits over the widened
        // rows, and close to the scalar BF16 reference.
        std::vector<kernels::Bf16> kb(nk * ldk);
        std::vector<float> kb32(kb.size());
        const auto kraw = RandomVector(nk * ldk, &rng, 4.0f);
        for (size_t i = 0; i < kb.size(); ++i) {
          uint32_t bits;
          std::memcpy(&bits, &kraw[i], 4);
          kb[i].bits = static_cast<uint16_t>(bits >> 16);
          bits &= 0xFFFF0000u;
          std::memcpy(&kb32[i], &bits, 4);
        }
        std::vector<float> sb(nq * ldsc, -7.0f), sb32 = sb, sbref = sb;
        table.attention_scores_bf16(q.data(), ldq, nq, kb.data(), ldk, nk, d, sb.data(), ldsc);
        table.attention_scores_f32(q.data(), ldq, nq, kb32.data(), ldk, nk, d, sb32.data(), ldsc);
        ref.attention_scores_bf16(q.data(), ldq, nq, kb.data(), ldk, nk, d, sbref.data(), ldsc);
        ASSERT_EQ(sb, sb32) << "bf16 nq " << nq << " nk " << nk << " d " << d;
        for (int h = 0; h < nq; ++h) {
          for (int64_t j = 0; j < nk; ++j) {
            double mag = 0;
            for (int64_t i = 0; i < d; ++i) mag += std::fabs(q[h * ldq + i] * kb32[j * ldk + i]);
            EXPECT_NEAR(sb[h * ldsc + j], sbref[h * ldsc + j],
                        4e-7 * mag * std::log2(d + 1.0) + 1e-30);
          }
        }
        const auto p = RandomVector(nq * ldsc, &rng);
        const auto v16 = to_half(RandomVector(nk * ldk, &rng, 4.0f));
        const auto v32 = widen(v16);
        const std::vector<float> o0 = RandomVector(nq * ldo, &rng);
        std::vector<float> o16 = o0, o32 = o0, oref = o0;
        table.attention_values_f16(p.data(), ldsc, nq, v16.data(), ldk, nk, d, o16.data(), ldo);
        table.attention_values_f32(p.data(), ldsc, nq, v32.data(), ldk, nk, d, o32.data(), ldo);
        ref.attention_values_f16(p.data(), ldsc, nq, v16.data(), ldk, nk, d, oref.data(), ldo);
        for (int h = 0; h < nq; ++h) {
          for (int64_t i = 0; i < ldo; ++i) {
            ASSERT_EQ(o16[h * ldo + i], o32[h * ldo + i])
                << "nq " << nq << " nk " << nk << " d " << d << " h " << h << " i " << i;
            double mag = std::fabs(o0[h * ldo + i]);
            for (int64_t j = 0; i < d && j < nk; ++j)
              mag += std::fabs(p[h * ldsc + j] * v32[j * ldk + i]);
            EXPECT_NEAR(o16[h * ldo + i], oref[h * ldo + i], 4e-7 * mag * std::log2(nk + 2.0));
          }
        }
      }
    }
  }
}

// Quantized KV cache rows: every ISA's dequantization gives the reference's bits (d * q in one
// rounding) and quant::DequantizeRow's values, on odd block counts and unaligned addresses, with
// extreme block values (-128 and 127 in Q8_0, every nibble in Q4_0) and scales (0, subnormal,
// the largest half).
TEST_P(KernelTest, KvDequantizationMatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  const kernels::KernelTable& ref = kernels::ReferenceTable();
  std::mt19937 rng(31);
  std::uniform_int_distribution<int> byte(0, 255);
  for (DType type : {DType::kQ8_0, DType::kQ4_0}) {
    const int block_bytes = type == DType::kQ8_0 ? quant::kQ8_0BlockBytes : quant::kQ4_0BlockBytes;
    auto fn = type == DType::kQ8_0 ? table.dequantize_q8_0 : table.dequantize_q4_0;
    auto ref_fn = type == DType::kQ8_0 ? ref.dequantize_q8_0 : ref.dequantize_q4_0;
    for (int64_t nblocks : {1, 2, 3, 7, 8, 16, 17}) {
      for (int misalign : {0, 1, 3}) {
        std::vector<uint8_t> storage(nblocks * block_bytes + misalign);
        uint8_t* blocks = storage.data() + misalign;
        for (int64_t i = 0; i < nblocks * block_bytes; ++i) blocks[i] = byte(rng);
        const uint16_t scales[] = {0x3C00, 0x0000, 0x0001, 0x7BFF, 0xB555};
        for (int64_t b = 0; b < nblocks; ++b) {
          uint8_t* block = blocks + b * block_bytes;
          // Scales: random normal halves, and the special ones in turn.
          const uint16_t d =
              b % 3 == 0 ? scales[b / 3 % 5] : static_cast<uint16_t>(0x2000 + byte(rng) * 64);
          std::memcpy(block, &d, 2);
          if (b == 1) std::memset(block + 2, type == DType::kQ8_0 ? 0x80 : 0x0F, block_bytes - 2);
          if (b == 2) std::memset(block + 2, type == DType::kQ8_0 ? 0x7F : 0xF0, block_bytes - 2);
        }
        std::vector<float> got(nblocks * 32 + 1, -1.0f), want(nblocks * 32 + 1, -1.0f),
            row(nblocks * 32);
        fn(blocks, nblocks, got.data());
        ref_fn(blocks, nblocks, want.data());
        quant::DequantizeRow(type, blocks, nblocks * 32, row.data());
        for (int64_t i = 0; i < nblocks * 32; ++i) {
          ASSERT_EQ(std::memcmp(&got[i], &want[i], 4), 0)
              << DTypeName(type) << " blocks " << nblocks << " value " << i << ": " << got[i]
              << " vs " << want[i];
          ASSERT_EQ(want[i], row[i]) << DTypeName(type) << " value " << i;
        }
        EXPECT_EQ(got[nblocks * 32], -1.0f) << "wrote past the row";
      }
    }
  }
}

TEST_P(KernelTest, FloatKernelsMatchReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  const kernels::KernelTable& ref = kernels::ReferenceTable();
  std::mt19937 rng(5);
  for (int64_t n : {1, 3, 7, 8, 15, 16, 17, 31, 63, 64, 65, 255, 1000}) {
    const auto a = RandomVector(n + 1, &rng), b = RandomVector(n + 1, &rng);
    // Offset by one element so loads are unaligned.
    double mag = 0;
    for (int64_t i = 0; i < n; ++i) mag += std::fabs(double{a[i + 1]} * b[i + 1]);
    EXPECT_NEAR(table.dot_f32(a.data() + 1, b.data() + 1, n),
                ref.dot_f32(a.data() + 1, b.data() + 1, n), 4e-7 * mag * std::log2(n + 1.0))
        << n;
    std::vector<float> y1(b.begin() + 1, b.end()), y2 = y1;
    table.axpy_f32(0.37f, a.data() + 1, y1.data(), n);
    ref.axpy_f32(0.37f, a.data() + 1, y2.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y1[i], y2[i], 1e-6f * (1 + std::fabs(y2[i])));
    std::vector<float> g1(n), g2(n);
    table.gelu_mul_f32(a.data() + 1, b.data() + 1, g1.data(), n);
    ref.gelu_mul_f32(a.data() + 1, b.data() + 1, g2.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(g1[i], g2[i], 4e-6f * (1 + std::fabs(g2[i])));
    // GeLU over about [-40, 40], past where tanh saturates on both sides, alone and gated.
    std::vector<float> wide_g(n + 1);
    for (int64_t i = 0; i <= n; ++i) wide_g[i] = a[i] * 12.0f;
    for (const float* m : {static_cast<const float*>(nullptr), b.data() + 1}) {
      table.gelu_mul_f32(wide_g.data() + 1, m, g1.data(), n);
      ref.gelu_mul_f32(wide_g.data() + 1, m, g2.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_NEAR(g1[i], g2[i], 4e-6f * (1 + std::fabs(g2[i])))
            << "gelu_mul n=" << n << " i=" << i << " x=" << wide_g[i + 1];
      }
    }
    // SiLU and GLU (m * sigmoid(x)) over a wide range: exp(-x) overflows below -88 and
    // vanishes above 88, so the ends test the saturated results (0 and m).
    std::vector<float> wide_x(n + 1);
    for (int64_t i = 0; i <= n; ++i) wide_x[i] = a[i] * 120.0f;
    for (const float* m : {static_cast<const float*>(nullptr), b.data() + 1}) {
      std::vector<float> s1(n), s2(n);
      table.sigmoid_mul_f32(wide_x.data() + 1, m, s1.data(), n);
      ref.sigmoid_mul_f32(wide_x.data() + 1, m, s2.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_NEAR(s1[i], s2[i], 4e-6f * (1 + std::fabs(s2[i])))
            << "sigmoid_mul n=" << n << " i=" << i << " x=" << wide_x[i + 1];
      }
    }
    // Softmax and the sum of squares (RMSNorm): ISA kernels vs the double-accumulating
    // reference. xsimd's exp is within a few ulp of std::exp.
    std::vector<float> s1(a.begin() + 1, a.end()), s2 = s1;
    for (float& v : s1) v *= 8.0f;
    for (float& v : s2) v *= 8.0f;
    table.softmax_f32(s1.data(), n);
    ref.softmax_f32(s2.data(), n);
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(s1[i], s2[i], 2e-6f * (1 + s2[i])) << "softmax n=" << n << " i=" << i;
      total += s1[i];
    }
    EXPECT_NEAR(total, 1.0, 1e-5);
    const double sq_ref = ref.sum_squares_f32(a.data() + 1, n);
    EXPECT_NEAR(table.sum_squares_f32(a.data() + 1, n), sq_ref, 1e-6 * sq_ref + 1e-12) << n;
    std::vector<uint8_t> half(2 * n + 1);
    for (auto& byte : half) byte = static_cast<uint8_t>(rng());
    std::vector<float> f1(n), f2(n);
    for (auto conv : {&kernels::KernelTable::bf16_to_f32, &kernels::KernelTable::f16_to_f32}) {
      (table.*conv)(half.data() + 1, n, f1.data());
      (ref.*conv)(half.data() + 1, n, f2.data());
      for (int64_t i = 0; i < n; ++i) {
        if (std::isnan(f2[i])) {
          EXPECT_TRUE(std::isnan(f1[i]));
        } else {
          EXPECT_EQ(f1[i], f2[i]) << i;  // conversions are exact
        }
      }
    }
    // f32 to f16 (the f16 KV cache's writes): the reference's bits, rounding ties to even,
    // over magnitudes from f16's subnormals (2^-24) past its overflow (65520 rounds to inf),
    // with exact ties, zeros of both signs, infinities and a NaN among them.
    std::vector<float> wide(n + 1);
    std::uniform_real_distribution<float> exponent(-30.0f, 18.0f);
    for (int64_t i = 0; i <= n; ++i) wide[i] = a[i] * std::exp2(exponent(rng));
    const float specials[] = {0.0f,      -0.0f,     65504.0f,    65520.0f,        -65519.0f,
                              INFINITY,  -INFINITY, NAN,         1.0f + 0x1p-11f, 0x1p-25f,
                              -0x3p-25f, 0x1p-14f,  0x1.ff8p-15f};
    for (int64_t i = 0; i < n && i < static_cast<int64_t>(std::size(specials)); ++i) {
      wide[1 + i * 7 % n] = specials[i];
    }
    std::vector<uint16_t> h1(n), h2(n);
    table.f32_to_f16(wide.data() + 1, n, h1.data());
    ref.f32_to_f16(wide.data() + 1, n, h2.data());
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(wide[i + 1])) {
        EXPECT_EQ(h1[i] & 0x7C00, 0x7C00) << i;
        EXPECT_NE(h1[i] & 0x03FF, 0) << i;
      } else {
        EXPECT_EQ(h1[i], h2[i]) << "f32_to_f16 n=" << n << " x=" << wide[i + 1];
      }
    }
  }
}

// The float GEMM micro-kernel over packed tiles: every output the fused multiply-add chain in k
// order (the reference's bits), for every token count of a tile, full and partial panels, k
// tails of every unrolling, strided outputs (nothing past ncols or ntok written), packed from
// unaligned rows; k split in two calls (the second accumulating) gives the same bits.
TEST_P(KernelTest, GemmPackedIsTheFmaChain) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  const int mr = table.gemm_f32_mr, nr = table.gemm_f32_nr;
  ASSERT_GT(mr, 0);
  ASSERT_GT(nr, 0);
  ASSERT_NE(table.gemm_f32_packed, nullptr);
  std::mt19937 rng(41);
  for (int64_t k : {1, 2, 7, 16, 33, 100, 257}) {
    for (int ntok = 1; ntok <= mr; ++ntok) {
      for (int ncols : {1, 3, nr - 1, nr}) {
        if (ncols < 1) continue;
        const int64_t ldx = k + 3, ldw = k + 1, ldy = ncols + 2;
        // Rows start one float past an aligned buffer start.
        const auto x_storage = RandomVector(mr * ldx + 1, &rng);
        const auto w_storage = RandomVector(nr * ldw + 1, &rng);
        const float* x = x_storage.data() + 1;
        const float* w = w_storage.data() + 1;
        std::vector<float> xp_storage(k * mr + 16), wp_storage(k * nr + 16);
        auto align64 = [](std::vector<float>& v) {
          const uintptr_t a = reinterpret_cast<uintptr_t>(v.data());
          return v.data() + ((64 - a % 64) % 64) / sizeof(float);
        };
        float* xp = align64(xp_storage);
        float* wp = align64(wp_storage);
        kernels::PackGemmTokens(x, ldx, ntok, k, mr, xp);
        kernels::PackGemmPanel(w, ldw, ncols, k, nr, wp);
        std::vector<float> y(mr * ldy, -7.0f);
        table.gemm_f32_packed(xp, wp, k, ntok, ncols, y.data(), ldy, false);
        // k blocked: the first kh values, then the rest accumulated onto them.
        const int64_t kh = k / 2;
        std::vector<float> y_split(mr * ldy, -7.0f);
        table.gemm_f32_packed(xp, wp, kh, ntok, ncols, y_split.data(), ldy, false);
        table.gemm_f32_packed(xp + kh * mr, wp + kh * nr, k - kh, ntok, ncols, y_split.data(), ldy,
                              true);
        ASSERT_EQ(0, std::memcmp(y.data(), y_split.data(), y.size() * sizeof(float)))
            << GetParam().name << " k " << k << " ntok " << ntok << " ncols " << ncols;
        for (int t = 0; t < mr; ++t) {
          for (int64_t j = 0; j < ldy; ++j) {
            float expected = -7.0f;
            if (t < ntok && j < ncols) {
              expected = 0.0f;
              for (int64_t i = 0; i < k; ++i) {
                expected = std::fma(x[t * ldx + i], w[j * ldw + i], expected);
              }
            }
            ASSERT_EQ(y[t * ldy + j], expected) << GetParam().name << " k " << k << " ntok " << ntok
                                                << " ncols " << ncols << " t " << t << " j " << j;
          }
        }
      }
    }
  }
}

// gemm_f16_packed / gemm_bf16_packed: 16-bit panels (PackGemmPanel16 from rows one value past
// an aligned start) widened in registers give the f32 kernel's bits on the widened panel, the
// fused multiply-add chain in k order, for every token count of a tile, full and partial
// panels, k tails, strided outputs and a k split in two calls; values include f16 subnormals,
// signed zeros and large magnitudes.
TEST_P(KernelTest, GemmPacked16IsTheFmaChainOnWidenedWeights) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  const int mr = table.gemm_f32_mr, nr = table.gemm_f32_nr;
  ASSERT_NE(table.gemm_f16_packed, nullptr);
  ASSERT_NE(table.gemm_bf16_packed, nullptr);
  std::mt19937 rng(43);
  for (const bool bf16 : {false, true}) {
    const auto gemm = bf16 ? table.gemm_bf16_packed : table.gemm_f16_packed;
    auto widen = [bf16](uint16_t h) { return bf16 ? half::Bf16ToF32(h) : half::F16ToF32(h); };
    for (int64_t k : {1, 2, 7, 16, 33, 100, 257}) {
      for (int ntok = 1; ntok <= mr; ++ntok) {
        for (int ncols : {1, 3, nr - 1, nr}) {
          if (ncols < 1) continue;
          const int64_t ldx = k + 3, ldw = k + 1, ldy = ncols + 2;
          const auto x_storage = RandomVector(mr * ldx + 1, &rng);
          const float* x = x_storage.data() + 1;
          std::vector<uint16_t> w_storage(nr * ldw + 1);
          for (size_t i = 0; i < w_storage.size(); ++i) {
            const float f = RandomVector(1, &rng)[0];
            switch (i % 7) {
              case 0:  // an f16 subnormal (a tiny bf16)
                w_storage[i] = bf16 ? half::F32ToBf16(f * 1e-30f) : static_cast<uint16_t>(i % 1023);
                break;
              case 1:
                w_storage[i] = 0x8000;  // -0
                break;
              case 2:
                w_storage[i] = bf16 ? half::F32ToBf16(f * 1e20f) : half::F32ToF16(f * 6e4f);
                break;
              default:
                w_storage[i] = bf16 ? half::F32ToBf16(f) : half::F32ToF16(f);
            }
          }
          const uint16_t* w = w_storage.data() + 1;
          std::vector<float> xp_storage(k * mr + 16);
          std::vector<uint16_t> wp_storage(k * nr + 32);
          const uintptr_t ax = reinterpret_cast<uintptr_t>(xp_storage.data());
          float* xp = xp_storage.data() + ((64 - ax % 64) % 64) / sizeof(float);
          const uintptr_t aw = reinterpret_cast<uintptr_t>(wp_storage.data());
          uint16_t* wp = wp_storage.data() + ((64 - aw % 64) % 64) / sizeof(uint16_t);
          kernels::PackGemmTokens(x, ldx, ntok, k, mr, xp);
          kernels::PackGemmPanel16(w, ldw, ncols, k, nr, wp);
          for (int64_t i = 0; i < k; ++i) {
            for (int j = ncols; j < nr; ++j) ASSERT_EQ(wp[i * nr + j], 0) << "padding";
          }
          std::vector<float> y(mr * ldy, -7.0f);
          gemm(xp, wp, k, ntok, ncols, y.data(), ldy, false);
          const int64_t kh = k / 2;
          std::vector<float> y_split(mr * ldy, -7.0f);
          gemm(xp, wp, kh, ntok, ncols, y_split.data(), ldy, false);
          gemm(xp + kh * mr, wp + kh * nr, k - kh, ntok, ncols, y_split.data(), ldy, true);
          ASSERT_EQ(0, std::memcmp(y.data(), y_split.data(), y.size() * sizeof(float)))
              << GetParam().name << " bf16 " << bf16 << " k " << k << " ntok " << ntok;
          for (int t = 0; t < mr; ++t) {
            for (int64_t j = 0; j < ldy; ++j) {
              float expected = -7.0f;
              if (t < ntok && j < ncols) {
                expected = 0.0f;
                for (int64_t i = 0; i < k; ++i) {
                  expected = std::fma(x[t * ldx + i], widen(w[j * ldw + i]), expected);
                }
              }
              ASSERT_EQ(std::memcmp(&y[t * ldy + j], &expected, sizeof(float)), 0)
                  << GetParam().name << " bf16 " << bf16 << " k " << k << " ntok " << ntok
                  << " ncols " << ncols << " t " << t << " j " << j << ": " << y[t * ldy + j]
                  << " vs " << expected;
            }
          }
        }
      }
    }
  }
}

// The column softmax numerators (the vision attention's transposed scores) against the
// double-summing reference: odd row counts (the 64-row runs and their tails), widths below,
// at and past a vector (the scalar column tail), a row stride past the width (left untouched),
// and columns whose values fall more than 87 below their max (denormal exps, std::exp's path).
TEST_P(KernelTest, ExpColumnsMatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  const kernels::KernelTable& ref = kernels::ReferenceTable();
  ASSERT_NE(table.exp_columns_f32, nullptr);
  std::mt19937 rng(43);
  for (int64_t rows : {1, 2, 13, 64, 65, 200}) {
    for (int width : {1, 5, 12, 16, 31, 32, 37}) {
      const int64_t ld = width + 3;
      std::vector<float> s1 = RandomVector(rows * ld, &rng);
      for (int64_t r = 0; r < rows; ++r) {
        for (int c = 0; c < width; ++c) s1[r * ld + c] *= (c % 3 == 2 ? 60.0f : 8.0f);
      }
      std::vector<float> s2 = s1, sums1(width, -1.0f), sums2(width, -2.0f);
      table.exp_columns_f32(s1.data(), rows, width, ld, sums1.data());
      ref.exp_columns_f32(s2.data(), rows, width, ld, sums2.data());
      for (int c = 0; c < width; ++c) {
        EXPECT_NEAR(sums1[c], sums2[c], 2e-6f * sums2[c]) << "rows " << rows << " column " << c;
        EXPECT_GE(sums2[c], 1.0f) << "the max's exp is 1";
      }
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < ld; ++c) {
          const float got = s1[r * ld + c], want = s2[r * ld + c];
          if (c >= width) {
            ASSERT_EQ(got, want) << "wrote past the width: row " << r << " column " << c;
          } else {
            ASSERT_NEAR(got, want, 2e-6f * want + 1e-38f)
                << GetParam().name << " rows " << rows << " width " << width << " row " << r
                << " column " << c;
          }
        }
      }
    }
  }
}

// exp_columns_f32 over a wide block gives each column the bits of calls over 16-column slices
// of the same columns (the ISA kernels walk two vectors side by side where the width allows, one
// otherwise, and the scalar reference past the last vector).
TEST_P(KernelTest, ExpColumnsBitsDoNotDependOnWidth) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  std::mt19937 rng(44);
  for (int64_t rows : {1, 3, 64, 130}) {
    for (int width : {8, 16, 24, 32, 40, 48, 70}) {
      const int64_t ld = width + 5;
      std::vector<float> whole = RandomVector(rows * ld, &rng);
      for (float& x : whole) x *= 9.0f;
      std::vector<float> sliced = whole, sums_whole(width), sums_sliced(width);
      table.exp_columns_f32(whole.data(), rows, width, ld, sums_whole.data());
      // Slices of 16 columns: whole vectors on every ISA (4, 8 or 16 lanes).
      for (int c0 = 0; c0 < width; c0 += 16) {
        table.exp_columns_f32(sliced.data() + c0, rows, std::min(16, width - c0), ld,
                              sums_sliced.data() + c0);
      }
      ASSERT_EQ(0, std::memcmp(whole.data(), sliced.data(), whole.size() * sizeof(float)))
          << GetParam().name << " rows " << rows << " width " << width;
      ASSERT_EQ(0, std::memcmp(sums_whole.data(), sums_sliced.data(), width * sizeof(float)))
          << GetParam().name << " rows " << rows << " width " << width;
    }
  }
}

// The exp inside the ISA's SiLU/GLU, softmax and column softmax at the edges of its range: NaN
// stays NaN, infinities and |x| past the overflow and underflow points (AVX-512's clamped
// exp, whose 2^n scaling also rounds denormal results) give the reference's 0, m or inf, and the
// denormal range matches std::exp to the last denormal step. 37 values: two vectors and a tail.
TEST_P(KernelTest, ExpEdgesMatchReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  const kernels::KernelTable& ref = kernels::ReferenceTable();
  const float inf = std::numeric_limits<float>::infinity();
  const float edges[] = {std::nanf(""), inf,     -inf,   88.7f,   -88.7f,  89.5f,  -89.5f,
                         103.9f,        -103.9f, 104.5f, -104.5f, 1e30f,   -1e30f, 0.0f,
                         -0.0f,         87.0f,   -87.0f, -95.0f,  -100.0f, 20.0f,  -20.0f};
  std::vector<float> x(37);
  for (size_t i = 0; i < x.size(); ++i) x[i] = edges[i % std::size(edges)];
  const std::vector<float> m(x.size(), 1.5f);
  // Equal (infinities), both NaN, or within `abs` plus 4e-6 relative.
  auto same = [](float got, float want, float abs) {
    if (std::isnan(want)) return std::isnan(got);
    return got == want || std::fabs(got - want) <= 4e-6f * std::fabs(want) + abs;
  };
  const int64_t n = static_cast<int64_t>(x.size());
  for (const float* mult : {static_cast<const float*>(nullptr), m.data()}) {
    std::vector<float> got(n), want(n);
    table.sigmoid_mul_f32(x.data(), mult, got.data(), n);
    ref.sigmoid_mul_f32(x.data(), mult, want.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      // The SiLU tolerance of FloatKernelsMatchReference (4e-6 * (1 + |want|)): xsimd's exp
      // overflows a little below 88.72, so AVX2 gives -0 where the reference has -2.7e-37.
      EXPECT_TRUE(same(got[i], want[i], 4e-6f))
          << "sigmoid_mul x=" << x[i] << " got " << got[i] << " want " << want[i];
    }
  }
  // Columns whose max is 0 and whose other rows hold the edges (NaN and inf left out: a
  // column's max would be NaN or inf), so exp(x - 0) runs over the whole range.
  const int width = 17;
  const int64_t rows = 9;
  std::vector<float> s1(rows * width);
  for (int64_t r = 0; r < rows; ++r) {
    for (int c = 0; c < width; ++c) {
      const float e = edges[3 + (r * width + c) % (std::size(edges) - 3)];
      s1[r * width + c] = r == 0 ? 0.0f : -std::fabs(e);
    }
  }
  std::vector<float> s2 = s1, sums1(width), sums2(width);
  table.exp_columns_f32(s1.data(), rows, width, width, sums1.data());
  ref.exp_columns_f32(s2.data(), rows, width, width, sums2.data());
  for (int64_t i = 0; i < rows * width; ++i) {
    EXPECT_TRUE(same(s1[i], s2[i], 1.5e-45f))
        << "exp_columns " << i << " got " << s1[i] << " want " << s2[i];
  }
  for (int c = 0; c < width; ++c) EXPECT_TRUE(same(sums1[c], sums2[c], 0.0f)) << c;
}

// The ISA's token packing puts the reference's values in the reference's places (zero past
// ntok), for odd k (vector body and tails), every token count and strided, unaligned rows.
TEST_P(KernelTest, PackGemmTokensMatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  ASSERT_NE(table.pack_gemm_tokens, nullptr);
  std::mt19937 rng(43);
  for (int mr : {table.gemm_f32_mr, 3, 16, 17}) {
    for (int64_t k : {1, 15, 16, 17, 37, 70}) {
      for (int ntok = 1; ntok <= mr; ++ntok) {
        const int64_t ldx = k + 5;
        const auto x_storage = RandomVector(mr * ldx + 1, &rng);
        const float* x = x_storage.data() + 1;
        std::vector<float> got(k * mr + 1, -3.0f), want(k * mr + 1, -3.0f);
        table.pack_gemm_tokens(x, ldx, ntok, k, mr, got.data());
        kernels::PackGemmTokens(x, ldx, ntok, k, mr, want.data());
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << GetParam().name << " mr " << mr << " k " << k << " ntok " << ntok;
      }
    }
  }
}

// Likewise the panel packing: every row count of a panel, panel widths the ISA vectorizes and
// others, odd k, strided unaligned rows.
TEST_P(KernelTest, PackGemmPanelMatchesReference) {
  if (!kernels::CpuSupports(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << GetParam().name;
  const kernels::KernelTable& table = kernels::TableFor(GetParam().isa);
  ASSERT_NE(table.pack_gemm_panel, nullptr);
  std::mt19937 rng(47);
  for (int nr : {table.gemm_f32_nr, 8, 16, 32, 12}) {
    for (int64_t k : {1, 15, 16, 17, 37, 70}) {
      for (int nrows = 1; nrows <= nr; ++nrows) {
        const int64_t ldw = k + 3;
        const auto w_storage = RandomVector(nr * ldw + 1, &rng);
        const float* w = w_storage.data() + 1;
        std::vector<float> got(k * nr + 1, -3.0f), want(k * nr + 1, -3.0f);
        table.pack_gemm_panel(w, ldw, nrows, k, nr, got.data());
        kernels::PackGemmPanel(w, ldw, nrows, k, nr, want.data());
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << GetParam().name << " nr " << nr << " k " << k << " nrows " << nrows;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, KernelTest,
                         ::testing::Values(KernelCase{kernels::Isa::kReference, "ref"},
                                           KernelCase{kernels::Isa::kAvx2, "avx2"},
                                           KernelCase{kernels::Isa::kAvx512Vnni, "avx512vnni"},
                                           KernelCase{kernels::Isa::kAvx512Vbmi, "avx512vbmi"},
                                           KernelCase{kernels::Isa::kAvx512Amx, "avx512amx"},
                                           KernelCase{kernels::Isa::kNeonDotprod, "neon"}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(QuantizedMatMulTest, CloseToFloatMatMul) {
  // y = x W^T with W quantized: the integer path must agree with the float path on the
  // dequantized weights up to the activation quantization error (int8, ~0.4% per block).
  std::mt19937 rng(3);
  const int64_t n = 37, k = 256, s = 6;
  const auto w = RandomVector(n * k, &rng, 0.1f);
  const auto x = RandomVector(s * k, &rng);
  ThreadPool pool(2);
  for (DType type : {DType::kQ8_0, DType::kQ4_0, DType::kQ6_K, DType::kQ4_K}) {
    std::vector<uint8_t> bytes(n * RowBytes(type, k));
    for (int64_t r = 0; r < n; ++r) {
      quant::QuantizeRow(type, w.data() + r * k, k, bytes.data() + r * RowBytes(type, k));
    }
    TensorView t;
    t.dtype = type;
    t.shape = {n, k};
    t.data = bytes.data();
    t.nbytes = bytes.size();
    std::vector<float> deq(n * k), y(s * n), want(s * n);
    for (int64_t r = 0; r < n; ++r) ops::ToF32(t, r * k, k, deq.data() + r * k);
    ops::MatMul(t, x.data(), s, y.data(), &pool);
    for (int64_t i = 0; i < s; ++i) {
      for (int64_t r = 0; r < n; ++r) {
        double acc = 0, mag = 0;
        for (int64_t j = 0; j < k; ++j) {
          acc += double{deq[r * k + j]} * x[i * k + j];
          mag += std::fabs(double{deq[r * k + j]} * x[i * k + j]);
        }
        EXPECT_NEAR(y[i * n + r], acc, 0.01 * mag) << DTypeName(type);
      }
    }
  }
}

// ops::MatMul over every codebook format at every token count it routes differently (row dots
// for 1-4 tokens, the tiles for 5-15, the 16-row panels from 16, with a row group's tail and a
// panel's column tail), against the reference dot of the activations it quantizes: catches a
// path that reads activation data the quantization step did not fill (IQ2_XS / IQ2_S panels
// need the per-16 sums).
TEST(QuantizedMatMulTest, CodebookFormatsMatchReferenceAtEveryTokenCount) {
  std::mt19937 rng(59);
  const int64_t n = 37, k = 9 * 256;
  ThreadPool pool(2);
  // The five grid formats and IQ1_S / IQ1_M: 16-row panels from 16 tokens on AVX-512 and AVX2,
  // tiles or row dots below that and on NEON.
  for (DType type : {DType::kIQ2_XXS, DType::kIQ2_XS, DType::kIQ2_S, DType::kIQ3_XXS, DType::kIQ3_S,
                     DType::kIQ1_S, DType::kIQ1_M}) {
    const uint64_t row_bytes = RowBytes(type, k);
    std::vector<uint8_t> bytes(n * row_bytes);
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
    for (int64_t b = 0; b < n * 9; ++b) {
      const uint16_t d = half::F32ToF16(0.0005f * (1 + byte(rng) % 7) * (b % 2 ? -1 : 1));
      if (IsOneBitCodebookType(type)) {
        SetIQ1D(type, bytes.data() + b * BlockBytes(type), d);  // IQ1_M's: in its scales
      } else {
        std::memcpy(bytes.data() + b * BlockBytes(type), &d, 2);
      }
    }
    TensorView t;
    t.dtype = type;
    t.shape = {n, k};
    t.data = bytes.data();
    t.nbytes = bytes.size();
    std::vector<float> deq(n * k);
    for (int64_t r = 0; r < n; ++r)
      quant::DequantizeRow(type, bytes.data() + r * row_bytes, k, deq.data() + r * k);
    for (int64_t s : {1, 4, 5, 15, 16, 17, 40}) {
      const auto x = RandomVector(s * k, &rng);
      kernels::QuantizedActivations acts;
      kernels::QuantizeActivations(x.data(), s, k, &acts);
      std::vector<float> y(s * n, NAN);
      ops::MatMul(t, x.data(), s, y.data(), &pool);
      for (int64_t i = 0; i < s; ++i) {
        for (int64_t r = 0; r < n; ++r) {
          const float want = kernels::DotCodebookReference(
              type, bytes.data() + r * row_bytes, acts.q_row(i), acts.scale_row(i), k / 32);
          double mag = 0;
          for (int64_t j = 0; j < k; ++j) {
            mag += std::fabs(deq[r * k + j] * acts.q_row(i)[j] * double{acts.scale_row(i)[j / 32]});
          }
          ASSERT_NEAR(y[i * n + r], want, 1e-5 * mag + 1e-6)
              << DTypeName(type) << ", " << s << " tokens, token " << i << ", row " << r;
        }
      }
    }
  }
}

}  // namespace
}  // namespace gemma4
