// KV cache types and the attention core's key pieces: the byte count of every cache type, the
// log-sum-exp merge of decode's attention pieces against the unsplit softmax, and the same bits
// for any chunking and thread count within each attention path (blocked prefill, split decode).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "base/json.h"
#include "model/attention.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/gguf_export.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "synthetic_config.h"

namespace gemma4 {
namespace {

// E2B's layout at toy widths: sliding and global layers (head_dim 64 and 128, blocks of 32
// fit), KV sharing, per-layer inputs; sliding window 16 so that rings wrap.
ModelConfig SyntheticConfig() {
  auto config = testing::SyntheticConfig(testing::SyntheticE2b());
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return *config;
}

std::unique_ptr<LoadedModel> SyntheticModel() {
  const ModelConfig config = SyntheticConfig();
  const std::string path = "/tmp/gemma4_kv_cache_test_" + std::to_string(getpid()) + ".gguf";
  gguf::Writer writer;
  ThreadPool pool(2);
  Status written = WriteGgufModel(config, SyntheticTensors(config, 11), *ParseRecipe("f32"),
                                  &writer, path, &pool);
  EXPECT_TRUE(written.ok()) << written.ToString();
  auto model = LoadedModel::Load(path);
  std::remove(path.c_str());
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  return model.ok() ? std::move(*model) : nullptr;
}

std::vector<int32_t> Ids(int n) {
  std::vector<int32_t> ids;
  for (int t = 0; t < n; ++t) ids.push_back((t * 37 + 11) % 512);
  return ids;
}

TEST(KvCacheTest, BytesOfEveryTypeMatchTheCache) {
  const ModelConfig config = SyntheticConfig();
  for (KvType type : {KvType::kF32, KvType::kF16, KvType::kQ8_0, KvType::kQ4_0}) {
    for (int64_t tokens : {1, 17, 300}) {
      KvCache cache(config, /*max_chunk=*/16, type);
      ASSERT_TRUE(cache.Reserve(tokens).ok());
      EXPECT_EQ(cache.bytes(), KvCacheBytes(config, type, tokens, 16))
          << KvTypeName(type) << " at " << tokens;
    }
  }
  // Per position and layer: 128 values of keys and of values (global layers) in each type.
  EXPECT_EQ(KvRowBytes(KvType::kF32, 128), 512u);
  EXPECT_EQ(KvRowBytes(KvType::kF16, 128), 256u);
  EXPECT_EQ(KvRowBytes(KvType::kQ8_0, 128), 4u * 34);
  EXPECT_EQ(KvRowBytes(KvType::kQ4_0, 128), 4u * 18);
  const uint64_t global_rows =
      KvCacheBytes(config, KvType::kQ8_0, 1001, 16) - KvCacheBytes(config, KvType::kQ8_0, 1000, 16);
  EXPECT_EQ(global_rows, 2u * 4 * 34);  // one global layer owns a cache (the other shares it)
  for (const char* name : {"f32", "f16", "q8_0", "q4_0"}) {
    ASSERT_TRUE(ParseKvType(name).has_value()) << name;
    EXPECT_STREQ(KvTypeName(*ParseKvType(name)), name);
  }
  EXPECT_FALSE(ParseKvType("q4_1").has_value());
}

// A rewind point's snapshot holds each ring's slots up to its position (all of a wrapped
// ring): a short conversation's points copy a few rows. RestoreRings writes those rows back
// and leaves the later slots (never read before a step rewrites them) as they are.
TEST(KvCacheTest, RingSnapshotsHoldRowsUpToThePosition) {
  const ModelConfig config = SyntheticConfig();
  constexpr int64_t kStep = 16;
  const int64_t ring = config.sliding_window - 1 + kStep;
  KvCache cache(config, kStep, KvType::kF32);
  ASSERT_TRUE(cache.Reserve(1).ok());
  int ring_layer = -1;
  for (int layer = 0; layer < config.num_layers && ring_layer < 0; ++layer) {
    if (config.layers[layer].sliding && !config.layers[layer].kv_shared) ring_layer = layer;
  }
  ASSERT_GE(ring_layer, 0);
  const int64_t row = cache.row_bytes(ring_layer);
  const int64_t row_floats = row / 4;
  for (int64_t p = 0; p < ring; ++p) {  // slot p: p + 1 everywhere
    std::fill_n(cache.K<float>(ring_layer, p), row_floats, static_cast<float>(p + 1));
  }
  for (const int64_t end : {int64_t{0}, int64_t{5}, ring, 3 * ring}) {
    SCOPED_TRACE("end " + std::to_string(end));
    KvCache::RingSnapshot snapshot;
    ASSERT_TRUE(cache.SaveRings(end, &snapshot).ok());
    EXPECT_EQ(static_cast<int64_t>(snapshot.k[ring_layer].size()), std::min(end, ring) * row);
    EXPECT_EQ(snapshot.k[ring_layer].size(), snapshot.v[ring_layer].size());
  }
  KvCache::RingSnapshot first_five;
  ASSERT_TRUE(cache.SaveRings(5, &first_five).ok());
  for (int64_t p = 0; p < ring; ++p) {
    std::fill_n(cache.K<float>(ring_layer, p), row_floats, -1.0f);
  }
  cache.RestoreRings(first_five);
  EXPECT_EQ(cache.K<float>(ring_layer, 4)[row_floats - 1], 5.0f);
  EXPECT_EQ(cache.K<float>(ring_layer, 5)[0], -1.0f);
}

// Decode's attention cut into pieces of 1, 7 and 64 keys and merged gives the unsplit
// softmax's logits up to f32 rounding; a merge that dropped a piece's rescaling or weight would
// be off by whole units. (The blocked prefill path ignores the split.)
TEST(KvCacheTest, AttentionPiecesMergeToTheUnsplitSoftmax) {
  auto model = SyntheticModel();
  ASSERT_NE(model, nullptr);
  ThreadPool pool(2);
  const std::vector<int32_t> ids = Ids(100);
  auto decode = [&](int64_t split) {
    InferenceState state(*model, &pool, 1, KvType::kF32);
    if (split > 0) state.set_attention_split(split);
    std::vector<float> logits, all;
    for (int32_t id : ids) {
      EXPECT_TRUE(state.Forward(&id, 1, LogitsMode::kAll, &logits).ok());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    return all;
  };
  const std::vector<float> whole = decode(0);
  for (int64_t split : {1, 7, 64}) {
    const std::vector<float> pieces = decode(split);
    ASSERT_EQ(pieces.size(), whole.size());
    double max_diff = 0, max_abs = 0;
    for (size_t i = 0; i < whole.size(); ++i) {
      max_diff = std::max(max_diff, double{std::fabs(pieces[i] - whole[i])});
      max_abs = std::max(max_abs, double{std::fabs(whole[i])});
    }
    std::printf("split %lld: max |logit difference| %.3g (largest logit %.3g)\n",
                static_cast<long long>(split), max_diff, max_abs);
    EXPECT_LT(max_diff, 4e-6 * max_abs) << "split " << split;
    EXPECT_NE(pieces, whole) << "split " << split << " should round differently somewhere";
  }
}

// Each query's result depends only on its key range: prefill steps of 16 and 32 tokens (the
// blocked path) on 3 and 1 threads give the same bits; so do steps of 5 tokens and decode one
// token at a time (the split path, pieces as work items merged in a second pass at depth) on 1
// and 3 threads, for an f32 and a q8_0 cache. The two paths sum in different orders: with the
// f32 cache they agree to f32 rounding (a quantized cache can turn such a difference into a
// rounding step of a later layer's cached value).
TEST(KvCacheTest, EachAttentionPathGivesTheSameBitsForAnySplit) {
  static_assert(kAttentionBlockedMinTokens == 16, "the steps below straddle the two paths");
  auto model = SyntheticModel();
  ASSERT_NE(model, nullptr);
  const std::vector<int32_t> ids = Ids(64);
  const int64_t V = model->config().vocab_size;
  auto run = [&](int threads, int64_t chunk, KvType type) {
    ThreadPool pool(threads);
    InferenceState state(*model, &pool, chunk, type);
    state.set_attention_split(7);
    std::vector<float> logits, all;
    for (size_t t = 0; t < ids.size(); t += chunk) {
      const int64_t n = std::min<int64_t>(chunk, ids.size() - t);
      EXPECT_TRUE(state.Forward(ids.data() + t, n, LogitsMode::kAll, &logits).ok());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    EXPECT_EQ(all.size(), ids.size() * V);
    return all;
  };
  for (KvType type : {KvType::kF32, KvType::kQ8_0}) {
    const std::vector<float> blocked = run(3, 16, type);
    EXPECT_EQ(run(1, 32, type), blocked) << KvTypeName(type) << " steps of 32";
    const std::vector<float> split = run(1, 1, type);
    EXPECT_EQ(run(3, 1, type), split) << KvTypeName(type) << " decode on 3 threads";
    EXPECT_EQ(run(3, 5, type), split) << KvTypeName(type) << " steps of 5";
    if (type == KvType::kF32) {
      double max_diff = 0, max_abs = 0;
      for (size_t i = 0; i < split.size(); ++i) {
        max_diff = std::max(max_diff, double{std::fabs(split[i] - blocked[i])});
        max_abs = std::max(max_abs, double{std::fabs(blocked[i])});
      }
      std::printf("split vs blocked: max |logit difference| %.3g (largest logit %.3g)\n", max_diff,
                  max_abs);
      EXPECT_LT(max_diff, 4e-6 * max_abs);
      EXPECT_NE(split, blocked) << "the paths should round differently somewhere";
    }
  }
}

}  // namespace
}  // namespace gemma4
