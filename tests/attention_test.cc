// The blocked prefill attention (AttendBlocked) against a double-precision softmax reference
// over the same cached rows, at odd sizes (token and head counts, key ranges that start and end
// inside key blocks, empty ranges), for every KV cache type; against the split path
// (AttendPiece) on the same rows; and the same bits for a row whatever tokens share its item.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "base/half.h"
#include "model/attention.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "ops/ops.h"
#include "quant/quant.h"
#include "synthetic_config.h"

namespace gemma4 {
namespace {

struct Fixture {
  ModelConfig config;
  int layer = -1;  // a global layer with its own cache
  int64_t hd = 0, kv_dim = 0;
};

Fixture MakeFixture(int num_kv_heads) {
  testing::SyntheticE2b s;
  s.num_attention_heads = 3 * num_kv_heads;  // three query heads per KV head (odd)
  s.num_key_value_heads = num_kv_heads;
  s.global_head_dim = 96;  // not a multiple of the AVX-512 GEMM panel (32 x 3)
  auto config = testing::SyntheticConfig(s);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  Fixture f;
  f.config = *config;
  for (int i = 0; i < f.config.num_layers; ++i) {
    const LayerConfig& lc = f.config.layers[i];
    if (!lc.sliding && !lc.kv_shared) {
      f.layer = i;
      f.hd = lc.head_dim;
      f.kv_dim = int64_t{lc.num_kv_heads} * lc.head_dim;
      break;
    }
  }
  EXPECT_GE(f.layer, 0);
  return f;
}

// Fills positions [0, n) of the layer's keys and values with random rows (stored in the
// cache's type) and returns them as the cache holds them, widened to f32: [n, kv_dim] each.
void FillCache(const Fixture& f, KvCache* cache, int64_t n, std::vector<float>* keys,
               std::vector<float>* values) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  keys->assign(n * f.kv_dim, 0.0f);
  values->assign(n * f.kv_dim, 0.0f);
  std::vector<float> row(f.kv_dim);
  for (int which = 0; which < 2; ++which) {
    std::vector<float>& stored = which == 0 ? *keys : *values;
    for (int64_t p = 0; p < n; ++p) {
      // Keys scaled up so that softmax weights vary over orders of magnitude.
      for (float& x : row) x = dist(rng) * (which == 0 ? 0.6f : 1.0f);
      float* widened = stored.data() + p * f.kv_dim;
      switch (cache->type()) {
        case KvType::kF32: {
          float* dst = which == 0 ? cache->K<float>(f.layer, p) : cache->V<float>(f.layer, p);
          std::copy(row.begin(), row.end(), dst);
          std::copy(row.begin(), row.end(), widened);
          break;
        }
        case KvType::kF16: {
          uint16_t* dst =
              which == 0 ? cache->K<uint16_t>(f.layer, p) : cache->V<uint16_t>(f.layer, p);
          for (int64_t j = 0; j < f.kv_dim; ++j) {
            dst[j] = half::F32ToF16(row[j]);
            widened[j] = half::F16ToF32(dst[j]);
          }
          break;
        }
        case KvType::kQ8_0:
        case KvType::kQ4_0: {
          uint8_t* dst = which == 0 ? cache->K<uint8_t>(f.layer, p) : cache->V<uint8_t>(f.layer, p);
          const bool q8 = cache->type() == KvType::kQ8_0;
          quant::QuantizeRow(q8 ? DType::kQ8_0 : DType::kQ4_0, row.data(), f.kv_dim, dst);
          (q8 ? ops::DequantizeQ8_0 : ops::DequantizeQ4_0)(dst, f.kv_dim / 32, widened);
          break;
        }
      }
    }
  }
}

// out[i, h] = sum_j softmax_j(q_i,h . k_j) v_j over j in [lo[i], hi[i]] of KV head g, in double.
std::vector<double> Reference(const Fixture& f, const std::vector<float>& keys,
                              const std::vector<float>& values, int64_t g, const float* q,
                              int64_t ldq, int nq, int nt, const int64_t* lo, const int64_t* hi) {
  const int64_t hd = f.hd;
  std::vector<double> out(int64_t{nt} * nq * hd, 0.0);
  for (int i = 0; i < nt; ++i) {
    if (lo[i] > hi[i]) continue;
    for (int h = 0; h < nq; ++h) {
      const float* qr = q + i * ldq + h * hd;
      std::vector<double> s;
      for (int64_t j = lo[i]; j <= hi[i]; ++j) {
        double dot = 0;
        for (int64_t x = 0; x < hd; ++x) dot += double{qr[x]} * keys[j * f.kv_dim + g * hd + x];
        s.push_back(dot);
      }
      const double m = *std::max_element(s.begin(), s.end());
      double l = 0;
      for (double& x : s) l += (x = std::exp(x - m));
      double* o = out.data() + (int64_t{i} * nq + h) * hd;
      for (int64_t j = lo[i]; j <= hi[i]; ++j) {
        const double w = s[j - lo[i]] / l;
        for (int64_t x = 0; x < hd; ++x) o[x] += w * values[j * f.kv_dim + g * hd + x];
      }
    }
  }
  return out;
}

std::vector<float> RandomQueries(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> q(n);
  for (float& x : q) x = dist(rng);
  return q;
}

TEST(AttentionTest, BlockedMatchesTheReferenceAtOddSizesForEveryCacheType) {
  for (int num_kv : {1, 2}) {
    const Fixture f = MakeFixture(num_kv);
    const int nq = static_cast<int>(f.config.num_heads / num_kv);
    for (KvType type : {KvType::kF32, KvType::kF16, KvType::kQ8_0, KvType::kQ4_0}) {
      const int64_t n_keys = 3 * kAttentionBlockKeys + 37;
      KvCache cache(f.config, 16, type);
      ASSERT_TRUE(cache.Reserve(n_keys).ok());
      std::vector<float> keys, values;
      FillCache(f, &cache, n_keys, &keys, &values);
      // Seven tokens: causal ranges from 0, a range inside one block, one crossing two block
      // edges mid-block, an empty one, a single key, one ending at the last key.
      const int nt = 7;
      const int64_t lo[nt] = {0, 5, 130, 40, 200, 77, 0};
      const int64_t hi[nt] = {n_keys - 9, 100,       2 * kAttentionBlockKeys + 3, 39, 200,
                              300,        n_keys - 1};
      const int64_t ldq = f.config.num_heads * f.hd;
      const std::vector<float> q = RandomQueries(nt * ldq, 3);
      for (int64_t g = 0; g < num_kv; ++g) {
        const KeyRows k_rows{&cache, f.layer, f.kv_dim, f.hd, false};
        const KeyRows v_rows{&cache, f.layer, f.kv_dim, f.hd, true};
        std::vector<float> out(nt * ldq, -1.0f);
        BlockedAttentionScratch scratch;
        AttendBlocked(k_rows, v_rows, g, q.data() + g * nq * f.hd, ldq, nq, nt, lo, hi,
                      out.data() + g * nq * f.hd, ldq, &scratch);
        const std::vector<double> want =
            Reference(f, keys, values, g, q.data() + g * nq * f.hd, ldq, nq, nt, lo, hi);
        double worst = 0;
        for (int i = 0; i < nt; ++i) {
          for (int64_t x = 0; x < nq * f.hd; ++x) {
            const double got = out[i * ldq + g * nq * f.hd + x];
            worst = std::max(worst, std::fabs(got - want[i * nq * f.hd + x]));
          }
        }
        // Outputs are averages of values of size ~1: f32 rounding over a few hundred keys.
        EXPECT_LT(worst, 2e-5) << KvTypeName(type) << " kv heads " << num_kv << " g " << g;
        // The empty range gives zeros.
        for (int64_t x = 0; x < nq * f.hd; ++x) EXPECT_EQ(out[3 * ldq + g * nq * f.hd + x], 0.0f);
      }
    }
  }
}

// The split path (one piece over each whole range) and the blocked path agree to f32 rounding
// on the same cache; and a row gives the same bits alone as among other tokens (chunking and
// threads change which rows share an item).
TEST(AttentionTest, BlockedAgreesWithPiecesAndIsTheSameForAnyItem) {
  const Fixture f = MakeFixture(1);
  const int nq = static_cast<int>(f.config.num_heads);
  const int64_t n_keys = 2 * kAttentionBlockKeys + 11;
  KvCache cache(f.config, 16, KvType::kF16);
  ASSERT_TRUE(cache.Reserve(n_keys).ok());
  std::vector<float> keys, values;
  FillCache(f, &cache, n_keys, &keys, &values);
  const int nt = 5;
  const int64_t lo[nt] = {0, 3, 0, 129, 1};
  const int64_t hi[nt] = {n_keys - 1, 250, 17, 130, n_keys - 2};
  const int64_t ldq = nq * f.hd;
  const std::vector<float> q = RandomQueries(nt * ldq, 8);
  const KeyRows k_rows{&cache, f.layer, f.kv_dim, f.hd, false};
  const KeyRows v_rows{&cache, f.layer, f.kv_dim, f.hd, true};
  std::vector<float> blocked(nt * ldq), piece(nt * ldq), max(nt * nq), sum(nt * nq);
  BlockedAttentionScratch scratch;
  AttendBlocked(k_rows, v_rows, 0, q.data(), ldq, nq, nt, lo, hi, blocked.data(), ldq, &scratch);
  AttentionScratch piece_scratch;
  AttendPiece(k_rows, v_rows, 0, q.data(), ldq, nq, nt, lo, hi, piece.data(), max.data(),
              sum.data(), &piece_scratch);
  double worst = 0;
  for (size_t i = 0; i < blocked.size(); ++i) {
    worst = std::max(worst, double{std::fabs(blocked[i] - piece[i])});
  }
  EXPECT_LT(worst, 1e-5);
  EXPECT_NE(blocked, piece) << "the two paths should round differently somewhere";
  for (int i = 0; i < nt; ++i) {
    std::vector<float> alone(ldq);
    AttendBlocked(k_rows, v_rows, 0, q.data() + i * ldq, ldq, nq, 1, lo + i, hi + i, alone.data(),
                  ldq, &scratch);
    EXPECT_TRUE(std::equal(alone.begin(), alone.end(), blocked.begin() + i * ldq)) << "token " << i;
  }
}

}  // namespace
}  // namespace gemma4
