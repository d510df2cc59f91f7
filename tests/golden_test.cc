// Golden tests: gemma4's float32 forward pass against logits recorded with Hugging Face
// transformers (tools/reference/make_fixtures.py) on tiny random-weight checkpoints of every
// Gemma 4 family, in both checkpoint layouts: full pass, chunked prefill (1 = token-by-token
// decode, 3, 7) and greedy generation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/json.h"
#include "formats/mapped_file.h"
#include "model/forward.h"
#include "model/model.h"
#include "reference_fixture.h"

namespace gemma4 {
namespace {

// Largest |logit - reference| accepted. Logits are softcapped to (-30, 30) and average 6 in
// magnitude here. Both sides compute in float32 from identical (bf16/f16/f32-exact) weights and
// differ only in summation order (GEMM blocking, cascade sums) and 1-ulp libm differences in
// pow/sin/cos/tanh, amplified by depth and attention. Measured (these tests print every value):
// tiny-26b-a4b <= 2.1e-5, tiny-31b <= 1.2e-5, tiny-e2b <= 1.6e-4, tiny-e4b <= 4.1e-4 (one
// position of 37; most positions stay below 5e-5). Dropping a single layer_scalar moves logits
// by 7 to 23, so 1e-3 is far below the error of any missing or misordered op.
constexpr float kTolerance = 1e-3f;
// With an f16 KV cache (F16KvCacheStaysCloseToFloat32), measured: tiny-31b <= 6.2e-3,
// tiny-26b-a4b <= 1.3e-2, tiny-e2b <= 0.13, tiny-e4b <= 0.26. The tiny E-models amplify any
// perturbation most (their float32 error above is also 10-40x the others'); a dropped op moves
// logits by 7 or more, and a cache read with the wrong layout or type gives noise of 10+.
constexpr float kF16KvTolerance = 0.5f;
// Chunked against unchunked, both with the f16 cache: every cached value is rounded to f16 on
// its own, but float summation order differs between step sizes, and where a value lies near an
// f16 rounding boundary that 1e-7 difference flips its rounding by a whole f16 step (2^-11
// relative), which the model then amplifies like any other rounding of the cache. The tiny
// models are chaotic, so one early flip can move the logits about as far as all the cache's
// rounding does: measured on AVX-512, chunk-vs-full over the full run's error against float32
// 0.16-0.43 on tiny-e2b/e4b, and 0.98 (0.0749 against 0.0768, tiny-e4b prompt 0) after the GeLU
// was rewritten with exp instead of tanh, a ulp-level change. So a chunked f16 run is held to the
// same bound as the unchunked one, against transformers' float32 logits; a chunking or
// ring-buffer fault reads wrong rows and moves logits by 1 or more (10+ for a wrong layout).

using testing::ModelDir;
using Prompt = testing::ReferencePrompt;
using Fixture = testing::ReferenceFixture;

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

struct Case {
  std::string variant;
  std::string layout;
};

class GoldenTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    fixture_ = testing::LoadReferenceFixture(GetParam().variant);
    auto model = LoadedModel::Load(ModelDir(GetParam().variant) + "/" + GetParam().layout);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    model_ = std::move(model).value();
    ASSERT_EQ(model_->config().vocab_size, fixture_.vocab);
  }

  // Runs the prompt in chunks of `chunk` (0: all at once) and returns all logits.
  std::vector<float> Run(const Prompt& p, int64_t chunk, ThreadPool* pool, int64_t max_chunk,
                         KvType kv_type = KvType::kF32) {
    InferenceState state(*model_, pool, max_chunk, kv_type);
    const int64_t n = static_cast<int64_t>(p.ids.size());
    if (chunk == 0) chunk = n;
    std::vector<float> all, part;
    for (int64_t done = 0; done < n; done += chunk) {
      const int64_t len = std::min(chunk, n - done);
      Status s = state.Forward(p.ids.data() + done, len, LogitsMode::kAll, &part);
      EXPECT_TRUE(s.ok()) << s.ToString();
      all.insert(all.end(), part.begin(), part.end());
    }
    return all;
  }

  void Report(const char* mode, size_t prompt, float err) {
    std::printf("max error %s/%s prompt %zu %s: %.3g\n", GetParam().variant.c_str(),
                GetParam().layout.c_str(), prompt, mode, err);
  }

  Fixture fixture_;
  std::unique_ptr<LoadedModel> model_;
};

TEST_P(GoldenTest, FullPassMatchesTransformers) {
  for (size_t i = 0; i < fixture_.prompts.size(); ++i) {
    const float err =
        MaxAbsDiff(Run(fixture_.prompts[i], 0, nullptr, 256), fixture_.prompts[i].logits);
    Report("full", i, err);
    EXPECT_LE(err, kTolerance) << "prompt " << i;
  }
}

TEST_P(GoldenTest, ChunkedPrefillMatchesFullPass) {
  ThreadPool pool(2);
  // Steps of 16 tokens or more (32, and the whole prompt: 0) take prefill's paths on the pool:
  // the blocked attention and each layer's tail split by tokens (the CI's TSan build runs
  // this test); shorter ones take decode's.
  for (int64_t chunk : {1, 3, 7, 32, 0}) {
    for (size_t i = 0; i < fixture_.prompts.size(); ++i) {
      const float err =
          MaxAbsDiff(Run(fixture_.prompts[i], chunk, &pool, 256), fixture_.prompts[i].logits);
      Report(("chunk" + std::to_string(chunk)).c_str(), i, err);
      EXPECT_LE(err, kTolerance) << "chunk " << chunk << " prompt " << i;
    }
  }
}

TEST_P(GoldenTest, SmallInternalChunksMatch) {
  // An internal step smaller than the sliding window and than the prompt exercises the ring
  // buffer wrap-around in every mode.
  const float err = MaxAbsDiff(Run(fixture_.prompts[1], 0, nullptr, 5), fixture_.prompts[1].logits);
  Report("max_chunk5", 1, err);
  EXPECT_LE(err, kTolerance);
}

// The f16 KV cache (the default for quantized weights). Each cached row is rounded once, on its
// own, so chunking and the ring buffer change nothing beyond float summation order; against
// transformers' float32 logits the rounding of keys and values (relative 2^-11) shows.
TEST_P(GoldenTest, F16KvCacheStaysCloseToFloat32) {
  ThreadPool pool(2);
  for (size_t i = 0; i < fixture_.prompts.size(); ++i) {
    const std::vector<float> full = Run(fixture_.prompts[i], 0, nullptr, 256, KvType::kF16);
    const float err = MaxAbsDiff(full, fixture_.prompts[i].logits);
    Report("f16-kv", i, err);
    EXPECT_LE(err, kF16KvTolerance) << "prompt " << i;
    for (int64_t chunk : {1, 7}) {
      const std::vector<float> chunked = Run(fixture_.prompts[i], chunk, &pool, 5, KvType::kF16);
      Report(("f16-kv chunk" + std::to_string(chunk) + " vs full").c_str(), i,
             MaxAbsDiff(chunked, full));
      const float chunk_err = MaxAbsDiff(chunked, fixture_.prompts[i].logits);
      Report(("f16-kv chunk" + std::to_string(chunk)).c_str(), i, chunk_err);
      EXPECT_LE(chunk_err, kF16KvTolerance) << "f16 chunk " << chunk << " prompt " << i;
    }
  }
}

TEST_P(GoldenTest, GreedyGenerationMatchesTransformers) {
  for (const Prompt& p : fixture_.prompts) {
    InferenceState state(*model_, nullptr);
    std::vector<float> logits;
    std::vector<int32_t> next = p.ids, out;
    for (size_t step = 0; step < p.greedy.size(); ++step) {
      ASSERT_TRUE(state.Forward(next.data(), next.size(), LogitsMode::kLast, &logits).ok());
      int32_t best = 0;
      for (int32_t v = 1; v < static_cast<int32_t>(logits.size()); ++v) {
        if (logits[v] > logits[best]) best = v;
      }
      out.push_back(best);
      next.assign(1, best);
    }
    EXPECT_EQ(out, p.greedy);
  }
}

// GGUF files made by llama.cpp's converter from the same checkpoints (see
// tests/fixtures/llama_cpp_gguf/README.md): the GGUF loader maps them onto the same model, so
// the same tolerance holds.
TEST(LlamaCppGgufTest, ConverterOutputMatchesTransformers) {
  for (const char* variant : {"tiny-e4b", "tiny-26b-a4b"}) {
    const Fixture fixture = testing::LoadReferenceFixture(variant);
    auto model = LoadedModel::Load(std::string(GEMMA4_FIXTURES_DIR) + "/llama_cpp_gguf/" + variant +
                                   ".gguf");
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    for (size_t i = 0; i < fixture.prompts.size(); ++i) {
      InferenceState state(**model, nullptr);
      std::vector<float> logits;
      const auto& ids = fixture.prompts[i].ids;
      ASSERT_TRUE(state.Forward(ids.data(), ids.size(), LogitsMode::kAll, &logits).ok());
      const float err = MaxAbsDiff(logits, fixture.prompts[i].logits);
      std::printf("max error %s llama.cpp GGUF prompt %zu: %.3g\n", variant, i, err);
      EXPECT_LE(err, kTolerance) << variant << " prompt " << i;
    }
  }
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (const char* v : testing::kVariants) {
    for (const char* l : testing::kLayouts) cases.push_back({v, l});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenTest, ::testing::ValuesIn(AllCases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string name = info.param.variant + "_" + info.param.layout;
                           for (char& c : name) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace gemma4
