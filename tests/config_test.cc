// Model configurations that the forward pass cannot run sensibly are refused when they are
// read, naming the field (they used to load and print NaN-derived garbage with exit 0), and
// non-finite logits at run time are an error naming the position.
#include "model/config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "base/json.h"
#include "formats/mapped_file.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/thread_pool.h"

namespace gemma4 {
namespace {

const std::string kConfig =
    std::string(GEMMA4_FIXTURES_DIR) + "/models/tiny-e2b/gemma4_text/config.json";

json::Value LoadConfig() {
  auto text = ReadFileToString(kConfig);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  auto root = json::Parse(text.ok() ? *text : "{}", kConfig);
  EXPECT_TRUE(root.ok()) << root.status().ToString();
  return root.ok() ? *root : json::Value();
}

// Sets `key` (top level of a gemma4_text config) to the JSON literal `value`.
json::Value With(const std::string& key, const std::string& value) {
  json::Value root = LoadConfig();
  auto parsed = json::Parse(value);
  EXPECT_TRUE(parsed.ok()) << value;
  for (auto& [k, v] : root.mutable_object()) {
    if (k == key) {
      v = *parsed;
      return root;
    }
  }
  root.mutable_object().emplace_back(key, *parsed);
  return root;
}

TEST(ConfigTest, FixtureIsValid) {
  auto c = ParseModelConfig(LoadConfig(), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(ValidateModelConfig(*c, "config.json").ok());
}

TEST(ConfigTest, AbsurdValuesAreRefusedWithTheFieldName) {
  const struct {
    const char* key;
    const char* value;
    const char* expect;
  } cases[] = {
      {"rms_norm_eps", "-1", "rms_norm_eps = -1 must be in (0, 1]"},
      {"rms_norm_eps", "0", "rms_norm_eps = 0 must be in (0, 1]"},
      {"rms_norm_eps", "2.5", "rms_norm_eps = 2.5 must be in (0, 1]"},
      {"rms_norm_eps", "1e300", "'rms_norm_eps' = 1e+300 is not a finite float32"},
      {"final_logit_softcapping", "1e300", "'final_logit_softcapping' = 1e+300 is not a finite"},
      {"final_logit_softcapping", "1e30", "final_logit_softcapping = 1e+30 must be 0"},
      {"final_logit_softcapping", "-30", "final_logit_softcapping = -30 must be 0"},
      {"head_dim", "0", "'head_dim' = 0 is out of range"},
      {"head_dim", "-8", "'head_dim' = -8 is out of range"},
      {"head_dim", "7", "head_dim must be even"},
      {"hidden_size", "0", "'hidden_size' = 0 is out of range"},
      {"vocab_size", "-5", "'vocab_size' = -5 is out of range"},
      {"num_key_value_heads", "0", "'num_key_value_heads' = 0 is out of range"},
      {"num_key_value_heads", "3", "is not a multiple of its KV heads"},
  };
  for (const auto& t : cases) {
    auto c = ParseModelConfig(With(t.key, t.value), "config.json");
    ASSERT_FALSE(c.ok()) << t.key << " = " << t.value;
    EXPECT_NE(c.status().message().find(t.expect), std::string::npos)
        << t.key << " = " << t.value << ": " << c.status().message();
  }
}

// What JSON cannot spell (NaN, a mismatched KV-shared layer) can come from other sources
// (GGUF metadata), which validate the config they build.
TEST(ConfigTest, ValidationCatchesNonFiniteAndMismatchedValues) {
  auto parsed = ParseModelConfig(LoadConfig(), "config.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  auto expect_refused = [](const ModelConfig& c, const std::string& expect) {
    const Status s = ValidateModelConfig(c, "model.gguf");
    ASSERT_FALSE(s.ok()) << expect;
    EXPECT_NE(s.message().find("model.gguf: " + expect), std::string::npos) << s.message();
  };
  ModelConfig c = *parsed;
  c.rms_norm_eps = nan;
  expect_refused(c, "rms_norm_eps = nan");
  c = *parsed;
  c.final_logit_softcap = inf;
  expect_refused(c, "final_logit_softcapping = inf");
  c = *parsed;
  c.final_logit_softcap = nan;
  expect_refused(c, "final_logit_softcapping = nan");
  c = *parsed;
  c.vocab_size = 0;
  expect_refused(c, "vocab_size = 0");
  c = *parsed;
  c.layers[0].rope_theta = nan;
  expect_refused(c, "layer 0 rope_theta = nan");
  c = *parsed;
  c.layers[1].inv_freq[0] = inf;
  expect_refused(c, "layer 1 RoPE frequency = inf");
  c = *parsed;
  c.layers[0].num_kv_heads = 0;
  expect_refused(c, "layer 0 num_key_value_heads = 0");
  c = *parsed;
  c.layers[2].head_dim = 0;
  expect_refused(c, "layer 2 head_dim = 0");
  c = *parsed;
  int shared = -1;
  for (int i = 0; i < c.num_layers; ++i) {
    if (c.layers[i].kv_shared) shared = i;
  }
  ASSERT_GE(shared, 0) << "the tiny E2B has KV-shared layers";
  c.layers[shared].head_dim += 2;
  expect_refused(c, "layer " + std::to_string(shared) + " head_dim");
}

// A NaN in the (tied) embedding makes that token's logit NaN at every position. It must be
// refused at load or be an error naming the position, never logits handed back as output.
TEST(ConfigTest, NonFiniteLogitsAreAnErrorNamingThePosition) {
  namespace fs = std::filesystem;
  const fs::path source = fs::path(kConfig).parent_path();
  const fs::path dir = fs::path(::testing::TempDir()) / "nan_embedding";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* name : {"config.json", "generation_config.json", "model.safetensors"}) {
    fs::copy_file(source / name, dir / name);
  }
  // model.embed_tokens.weight is the first tensor: BF16 [512, 64]. Row 7, column 0 = NaN.
  const std::string weights = (dir / "model.safetensors").string();
  std::fstream f(weights, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good());
  uint64_t header = 0;
  f.read(reinterpret_cast<char*>(&header), sizeof(header));
  std::string json(header, '\0');
  f.read(json.data(), static_cast<std::streamsize>(header));
  auto root = json::Parse(json);
  ASSERT_TRUE(root.ok());
  const json::Value* embed = root->Find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  ASSERT_EQ(embed->Find("dtype")->as_string(), "BF16");
  int64_t begin = 0;
  ASSERT_TRUE(embed->Find("data_offsets")->as_array()[0].GetInt64(&begin));
  const uint16_t nan_bf16 = 0x7FC0;
  f.seekp(static_cast<std::streamoff>(8 + header + begin + (7 * 64) * 2));
  f.write(reinterpret_cast<const char*>(&nan_bf16), sizeof(nan_bf16));
  f.close();

  auto model = LoadedModel::Load(dir.string());
  if (!model.ok()) {
    EXPECT_NE(model.status().message().find("embed_tokens"), std::string::npos)
        << model.status().ToString();
    return;
  }
  ThreadPool pool(1);
  InferenceState state(**model, &pool);
  const std::vector<int32_t> ids = {2, 10, 20};
  std::vector<float> logits;
  const Status s = state.Forward(ids.data(), 3, LogitsMode::kAll, &logits);
  ASSERT_FALSE(s.ok()) << "NaN logits were returned as output";
  EXPECT_NE(s.message().find("logits at position 0 are not finite (token 7: NaN)"),
            std::string::npos)
      << s.ToString();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace gemma4
