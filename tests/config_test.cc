// Model configurations that the forward pass cannot run sensibly are refused when they are
// read, naming the field (they used to load and print NaN-derived garbage with exit 0), and
// non-finite logits at run time are an error naming the position.
#include "model/config.h"

#include <gtest/gtest.h>

#include <algorithm>
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
#include "model/gguf_export.h"
#include "model/model.h"
#include "runtime/thread_pool.h"

namespace gemma4 {
namespace {

const std::string kConfig =
    std::string(GEMMA4_FIXTURES_DIR) + "/models/tiny-e2b/gemma4_text/config.json";

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// Every position's logits of `ids` from the model at `path` (a checkpoint or GGUF).
void AllLogits(const std::string& path, const std::vector<int32_t>& ids,
               std::vector<float>* logits) {
  auto model = LoadedModel::Load(path);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ThreadPool pool(1);
  InferenceState state(**model, &pool);
  ASSERT_TRUE(
      state.Forward(ids.data(), static_cast<int64_t>(ids.size()), LogitsMode::kAll, logits).ok());
}

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

// Each rope_parameters entry stands alone, with transformers' defaults for what it leaves out
// (partial_rotary_factor 1, factor 1, rope_type "default"): a full-attention entry of type
// "default" or "linear" rotates every pair of the global head, and a "proportional" entry
// without partial_rotary_factor rotates them all too. The released preset (proportional, 0.25)
// applies only where rope_parameters is absent. Before, an entry inherited the preset's 0.25
// and a "default" full-attention entry was refused as unsupported.
TEST(ConfigTest, RopeEntriesTakeTransformersDefaultsForWhatTheyLeaveOut) {
  const int full = 4;  // tiny-e2b: layers 4 and 9 are full attention, head_dim 64 there
  const struct {
    const char* full_entry;
    int rotated_pairs;
    float theta;
    float first_inv_freq_times;  // inv_freq[1] * this = theta^(-2/64)
  } cases[] = {
      {R"({"rope_type": "default", "rope_theta": 1000000.0})", 32, 1e6f, 1.0f},
      {R"({"rope_type": "linear", "rope_theta": 1000000.0, "factor": 4.0})", 32, 1e6f, 4.0f},
      {R"({"rope_type": "proportional", "rope_theta": 10000.0})", 32, 1e4f, 1.0f},
      {R"({"rope_type": "proportional", "rope_theta": 10000.0, "factor": 2.0,
           "partial_rotary_factor": 0.5})",
       16, 1e4f, 2.0f},
  };
  for (const auto& c : cases) {
    const std::string rope = std::string(R"({"sliding_attention": {"rope_type": "default",
        "rope_theta": 10000.0}, "full_attention": )") +
                             c.full_entry + "}";
    auto config = ParseModelConfig(With("rope_parameters", rope), "config.json");
    ASSERT_TRUE(config.ok()) << c.full_entry << ": " << config.status().ToString();
    const LayerConfig& layer = config->layers[full];
    ASSERT_EQ(layer.head_dim, 64);
    EXPECT_EQ(layer.rotated_pairs, c.rotated_pairs) << c.full_entry;
    EXPECT_EQ(layer.rope_theta, c.theta) << c.full_entry;
    const float expected = 1.0f / std::pow(c.theta, 2.0f / 64.0f);
    EXPECT_NEAR(layer.inv_freq[1] * c.first_inv_freq_times, expected, expected * 1e-6f)
        << c.full_entry;
  }
  // Without rope_parameters: the released preset (proportional, a quarter of the pairs).
  json::Value root = LoadConfig();
  auto& fields = root.mutable_object();
  for (auto it = fields.begin(); it != fields.end(); ++it) {
    if (it->first == "rope_parameters") {
      fields.erase(it);
      break;
    }
  }
  auto preset = ParseModelConfig(root, "config.json");
  ASSERT_TRUE(preset.ok()) << preset.status().ToString();
  EXPECT_EQ(preset->layers[full].rotated_pairs, 8);
  EXPECT_EQ(preset->layers[0].rotated_pairs, 16);
}

// RoPE scaling reaches GGUF files as llama.cpp's rope_freqs divisors (global layers), so an
// exported model computes what its checkpoint does; scaling on sliding-window layers, which
// the layout cannot hold, is refused instead of written without it. Found by
// tools/reference/make_config_sweep.py: proportional RoPE with a factor was exported as if it
// had none (logits 6-38 off).
TEST(ConfigTest, RopeScalingSurvivesGgufOrIsRefused) {
  namespace fs = std::filesystem;
  const fs::path source = fs::path(kConfig).parent_path();
  const fs::path dir = fs::path(::testing::TempDir()) / "rope_scaling";
  ThreadPool pool(1);
  // Past the sliding window of 8, so the global layers' positions matter.
  const std::vector<int32_t> ids = {2, 10, 20, 300, 511, 7, 9, 11, 13, 17, 19, 23, 29};
  auto logits_of = [&](const std::string& path, std::vector<float>* logits) {
    AllLogits(path, ids, logits);
  };
  const char* kSliding = R"("sliding_attention": {"rope_type": "default", "rope_theta": 10000.0})";
  const struct {
    std::string rope;
    bool exportable;
  } cases[] = {
      {std::string("{") + kSliding + R"(, "full_attention": {"rope_type": "proportional",
           "rope_theta": 1000000.0, "partial_rotary_factor": 0.25, "factor": 8.0}})",
       true},
      {std::string("{") + kSliding + R"(, "full_attention": {"rope_type": "linear",
           "rope_theta": 10000.0, "factor": 2.0}})",
       true},
      {R"({"sliding_attention": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
           "full_attention": {"rope_type": "proportional", "rope_theta": 1000000.0,
           "partial_rotary_factor": 0.25}})",
       false},
  };
  std::vector<float> unscaled;
  logits_of(source.string(), &unscaled);
  for (const auto& c : cases) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* name : {"generation_config.json", "model.safetensors"}) {
      fs::copy_file(source / name, dir / name);
    }
    std::ofstream(dir / "config.json") << With("rope_parameters", c.rope).Serialize();
    auto model = LoadedModel::Load(dir.string());
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    std::vector<float> scaled;
    logits_of(dir.string(), &scaled);
    EXPECT_GT(MaxAbsDiff(scaled, unscaled), 1e-3) << c.rope << ": the scaling changed nothing";
    gguf::Writer writer;
    const std::string gguf_path = (dir / "scaled.gguf").string();
    const Status written = WriteGgufModel((*model)->config(), ModelTensors(**model), Recipe::kF32,
                                          &writer, gguf_path, &pool);
    if (!c.exportable) {
      EXPECT_EQ(written.code(), StatusCode::kUnimplemented) << written.ToString();
      EXPECT_NE(written.message().find("sliding-window layer"), std::string::npos);
      continue;
    }
    ASSERT_TRUE(written.ok()) << written.ToString();
    std::vector<float> from_gguf;
    logits_of(gguf_path, &from_gguf);
    EXPECT_LE(MaxAbsDiff(from_gguf, scaled), 1e-5) << c.rope;
  }
  fs::remove_all(dir);
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

// An untied LM head (lm_head.weight beside the model; GGUF output.weight) gives the logits
// while the embedding keeps giving the inputs. Built from tiny-e2b's text checkpoint with
// lm_head row r = embedding row (7r + 3) mod V, so the untied model's logits are the tied
// model's, columns permuted: a loader that ignored lm_head (or fed the inputs from it) fails.
// Before, any checkpoint whose config said tie_word_embeddings false was refused.
TEST(ConfigTest, UntiedLmHeadGivesTheLogits) {
  namespace fs = std::filesystem;
  const fs::path source = fs::path(kConfig).parent_path();
  const fs::path dir = fs::path(::testing::TempDir()) / "untied_lm_head";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* name : {"generation_config.json", "model.safetensors"}) {
    fs::copy_file(source / name, dir / name);
  }
  // The embedding's bytes (BF16 [512, 64]) from the shard's header.
  std::ifstream shard(source / "model.safetensors", std::ios::binary);
  uint64_t header_size = 0;
  shard.read(reinterpret_cast<char*>(&header_size), sizeof(header_size));
  std::string header_text(header_size, '\0');
  shard.read(header_text.data(), static_cast<std::streamsize>(header_size));
  auto header = json::Parse(header_text);
  ASSERT_TRUE(header.ok());
  const json::Value* embed = header->Find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  ASSERT_EQ(embed->Find("dtype")->as_string(), "BF16");
  int64_t begin = 0, end = 0;
  ASSERT_TRUE(embed->Find("data_offsets")->as_array()[0].GetInt64(&begin));
  ASSERT_TRUE(embed->Find("data_offsets")->as_array()[1].GetInt64(&end));
  const int64_t vocab = 512, row_bytes = 64 * 2;
  ASSERT_EQ(end - begin, vocab * row_bytes);
  std::string rows(static_cast<size_t>(end - begin), '\0');
  shard.seekg(static_cast<std::streamoff>(8 + header_size + begin));
  shard.read(rows.data(), static_cast<std::streamsize>(rows.size()));
  auto source_row = [&](int64_t r) { return (7 * r + 3) % vocab; };
  std::string head(rows.size(), '\0');
  for (int64_t r = 0; r < vocab; ++r) {
    std::memcpy(head.data() + r * row_bytes, rows.data() + source_row(r) * row_bytes, row_bytes);
  }
  std::string head_header =
      R"({"lm_head.weight":{"dtype":"BF16","shape":[512,64],"data_offsets":[0,)" +
      std::to_string(head.size()) + "]}}";
  while (head_header.size() % 8 != 0) head_header += ' ';
  {
    std::ofstream out(dir / "head.safetensors", std::ios::binary);
    const uint64_t n = head_header.size();
    out.write(reinterpret_cast<const char*>(&n), sizeof(n));
    out << head_header << head;
  }
  std::string index = R"({"weight_map": {"lm_head.weight": "head.safetensors")";
  for (const auto& [name, value] : header->as_object()) {
    if (name != "__metadata__") index += ", \"" + name + "\": \"model.safetensors\"";
  }
  index += "}}";
  std::ofstream(dir / "model.safetensors.index.json") << index;
  json::Value config = With("tie_word_embeddings", "false");
  std::ofstream(dir / "config.json") << config.Serialize();

  ThreadPool pool(1);
  auto logits_of = [](const std::string& path, std::vector<float>* logits) {
    AllLogits(path, {2, 10, 20, 300, 511}, logits);
  };
  std::vector<float> tied, untied, untied_gguf;
  logits_of(source.string(), &tied);
  logits_of(dir.string(), &untied);
  ASSERT_EQ(tied.size(), untied.size());
  for (size_t t = 0; t < tied.size() / vocab; ++t) {
    for (int64_t r = 0; r < vocab; ++r) {
      ASSERT_NEAR(untied[t * vocab + r], tied[t * vocab + source_row(r)], 1e-5)
          << "position " << t << ", id " << r;
    }
  }
  // Through GGUF (f32): the head becomes output.weight and comes back untied.
  auto model = LoadedModel::Load(dir.string());
  ASSERT_TRUE(model.ok());
  EXPECT_FALSE((*model)->config().tie_word_embeddings);
  gguf::Writer writer;
  const std::string gguf_path = (dir / "untied.gguf").string();
  ASSERT_TRUE(WriteGgufModel((*model)->config(), ModelTensors(**model), Recipe::kF32, &writer,
                             gguf_path, &pool)
                  .ok());
  logits_of(gguf_path, &untied_gguf);
  ASSERT_EQ(untied_gguf.size(), untied.size());
  for (size_t i = 0; i < untied.size(); ++i) ASSERT_NEAR(untied_gguf[i], untied[i], 1e-5) << i;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace gemma4
