// What InferenceState::Forward refuses before it touches the cache: ids outside the vocabulary,
// and ids inside it that the per-layer embedding table has no row for (a checkpoint whose
// vocab_size_per_layer_input is below vocab_size). transformers 5.17 raises on the latter too
// ("IndexError: index out of range in self", recorded on the device by
// tools/reference/check_ple_vocab.py; its get_per_layer_inputs indexes embed_tokens_per_layer
// with the ids as they are), so there is no reference value to compute instead.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/forward.h"
#include "model/gguf_export.h"
#include "model/model.h"
#include "synthetic_config.h"

namespace gemma4 {
namespace {

constexpr int kVocab = 512;
constexpr int kPleVocab = 384;  // rows 0..383 of the per-layer table; ids 384..511 have none

class ForwardInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::SyntheticE2b shape;
    shape.vocab_size = kVocab;
    shape.vocab_size_per_layer_input = kPleVocab;
    auto config = testing::SyntheticConfig(shape);
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    ASSERT_EQ(config->ple_vocab_size, kPleVocab);
    const std::string path = "/tmp/gemma4_forward_input_test_" + std::to_string(getpid()) + ".gguf";
    gguf::Writer writer;
    ThreadPool pool(2);
    Status written = WriteGgufModel(*config, SyntheticTensors(*config, 5), *ParseRecipe("f32"),
                                    &writer, path, &pool);
    ASSERT_TRUE(written.ok()) << written.ToString();
    auto model = LoadedModel::Load(path);
    std::remove(path.c_str());
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    model_ = std::move(model).value();
    ASSERT_EQ(model_->config().ple_vocab_size, kPleVocab);  // kept through the GGUF
  }

  // Forward over `ids` on a state that already holds two tokens; the status, and whether the
  // state is where it was (position and the next step's logits) after a refusal.
  Status RunAfterTwo(const std::vector<int32_t>& ids, bool* state_unchanged) {
    InferenceState state(*model_, nullptr);
    const int32_t prefix[2] = {2, 17};
    std::vector<float> logits;
    EXPECT_TRUE(state.Forward(prefix, 2, LogitsMode::kLast, &logits).ok());
    Status s =
        state.Forward(ids.data(), static_cast<int64_t>(ids.size()), LogitsMode::kLast, &logits);
    if (!s.ok()) {
      const int32_t next = 40;
      std::vector<float> after, fresh;
      EXPECT_TRUE(state.Forward(&next, 1, LogitsMode::kLast, &after).ok());
      InferenceState clean(*model_, nullptr);
      const int32_t three[3] = {2, 17, 40};
      EXPECT_TRUE(clean.Forward(three, 3, LogitsMode::kLast, &fresh).ok());
      *state_unchanged = state.position() == 3 && after == fresh;
    }
    return s;
  }

  std::unique_ptr<LoadedModel> model_;
};

TEST_F(ForwardInputTest, IdsWithARowInEveryTableRun) {
  bool unchanged = false;
  EXPECT_TRUE(RunAfterTwo({0, 5, kPleVocab - 1, 100}, &unchanged).ok());
}

TEST_F(ForwardInputTest, IdPastThePerLayerTableIsRefusedNamingTheTable) {
  for (int32_t id : {kPleVocab, kPleVocab + 1, kVocab - 1}) {
    bool unchanged = false;
    Status s = RunAfterTwo({5, id, 7}, &unchanged);
    ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << id;
    EXPECT_NE(s.message().find("token id " + std::to_string(id) + " at index 1"), std::string::npos)
        << s.message();
    EXPECT_NE(s.message().find("vocab_size_per_layer_input " + std::to_string(kPleVocab)),
              std::string::npos)
        << s.message();
    EXPECT_TRUE(unchanged) << id;
  }
}

TEST_F(ForwardInputTest, IdOutsideTheVocabularyIsRefused) {
  for (int32_t id : {-1, kVocab, kVocab + 1000}) {
    bool unchanged = false;
    Status s = RunAfterTwo({id}, &unchanged);
    ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << id;
    EXPECT_NE(s.message().find("outside the vocabulary [0, " + std::to_string(kVocab) + ")"),
              std::string::npos)
        << s.message();
    EXPECT_TRUE(unchanged) << id;
  }
}

}  // namespace
}  // namespace gemma4
