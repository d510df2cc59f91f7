// KV cache types and the attention core's key pieces: the byte count of every cache type, the
// log-sum-exp merge of attention pieces against the unsplit softmax, and the same bits for
// prefill and decode, and for any thread count, however the keys are cut.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "base/json.h"
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

// Attention cut into pieces of 1, 7 and 64 keys and merged gives the unsplit softmax's logits
// up to f32 rounding; a merge that dropped a piece's rescaling or weight would be off by whole
// units.
TEST(KvCacheTest, AttentionPiecesMergeToTheUnsplitSoftmax) {
  auto model = SyntheticModel();
  ASSERT_NE(model, nullptr);
  ThreadPool pool(2);
  const std::vector<int32_t> ids = Ids(200);
  std::vector<float> whole, pieces;
  InferenceState reference(*model, &pool, 16, KvType::kF32);
  ASSERT_TRUE(reference.Forward(ids.data(), ids.size(), LogitsMode::kAll, &whole).ok());
  for (int64_t split : {1, 7, 64}) {
    InferenceState state(*model, &pool, 16, KvType::kF32);
    state.set_attention_split(split);
    ASSERT_TRUE(state.Forward(ids.data(), ids.size(), LogitsMode::kAll, &pieces).ok());
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

// The pieces depend only on each query's key range: prefill in chunks of 16 and 5, decode one
// token at a time (where the pieces are the work items and a second pass merges them), on 1
// and 3 threads, give the same bits, for an f32 and a q8_0 cache.
TEST(KvCacheTest, PrefillAndDecodeGiveTheSameBitsWithPieces) {
  auto model = SyntheticModel();
  ASSERT_NE(model, nullptr);
  const std::vector<int32_t> ids = Ids(60);
  for (KvType type : {KvType::kF32, KvType::kQ8_0}) {
    std::vector<float> prefill;
    {
      ThreadPool pool(3);
      InferenceState state(*model, &pool, 16, type);
      state.set_attention_split(7);
      ASSERT_TRUE(state.Forward(ids.data(), ids.size(), LogitsMode::kAll, &prefill).ok());
    }
    const int64_t V = model->config().vocab_size;
    for (auto [threads, chunk] :
         {std::pair{3, int64_t{5}}, std::pair{1, int64_t{1}}, std::pair{3, int64_t{1}}}) {
      {
        ThreadPool pool(threads);
        InferenceState state(*model, &pool, chunk, type);
        state.set_attention_split(7);
        std::vector<float> logits, all;
        for (size_t t = 0; t < ids.size(); t += chunk) {
          const int64_t n = std::min<int64_t>(chunk, ids.size() - t);
          ASSERT_TRUE(state.Forward(ids.data() + t, n, LogitsMode::kAll, &logits).ok());
          all.insert(all.end(), logits.begin(), logits.end());
        }
        ASSERT_EQ(all.size(), ids.size() * V);
        EXPECT_EQ(all, prefill) << KvTypeName(type) << " threads " << threads << " chunk " << chunk;
      }
    }
  }
}

}  // namespace
}  // namespace gemma4
