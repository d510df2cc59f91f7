// Synthetic Gemma 4 text configurations for tests that write their own random-weight models
// (kv_cache_test, quant_accuracy_test, memory_plan_test): E2B's layout (sliding and global
// layers, KV sharing, per-layer inputs) at the widths a test picks, written as the config.json
// a checkpoint carries and read by the real parser, so every derived field is the loader's.
#ifndef GEMMA4_TESTS_SYNTHETIC_CONFIG_H_
#define GEMMA4_TESTS_SYNTHETIC_CONFIG_H_

#include <string>
#include <vector>

#include "base/json.h"
#include "gemma4/status.h"
#include "model/config.h"

namespace gemma4::testing {

// The config.json fields of a synthetic text model; the defaults are kv_cache_test's toy E2B
// (head_dim 64 and 128 so q8_0/q4_0 blocks of 32 fit, sliding window 16 so that rings wrap).
// A field below 0 is left out of the file (the parser's default applies).
struct SyntheticE2b {
  int vocab_size = 512;
  int hidden_size = 128;
  int intermediate_size = 256;
  int num_attention_heads = 4;
  int num_key_value_heads = 1;
  int num_global_key_value_heads = -1;
  int head_dim = 64;
  int global_head_dim = 128;
  int sliding_window = 16;
  int hidden_size_per_layer_input = 64;
  int vocab_size_per_layer_input = 512;
  int num_kv_shared_layers = 2;
  int max_position_embeddings = -1;
  bool use_double_wide_mlp = false;
  std::vector<std::string> layer_types = {"sliding_attention", "sliding_attention",
                                          "full_attention", "sliding_attention", "full_attention"};
};

// The config.json text (num_hidden_layers = layer_types.size(), final_logit_softcapping 30).
inline std::string SyntheticConfigJson(const SyntheticE2b& s) {
  std::string j = "{\"model_type\": \"gemma4_text\"";
  auto add = [&j](const char* key, int value) {
    if (value >= 0) j += std::string(", \"") + key + "\": " + std::to_string(value);
  };
  add("vocab_size", s.vocab_size);
  add("hidden_size", s.hidden_size);
  add("intermediate_size", s.intermediate_size);
  add("num_hidden_layers", static_cast<int>(s.layer_types.size()));
  add("num_attention_heads", s.num_attention_heads);
  add("num_key_value_heads", s.num_key_value_heads);
  add("num_global_key_value_heads", s.num_global_key_value_heads);
  add("head_dim", s.head_dim);
  add("global_head_dim", s.global_head_dim);
  add("sliding_window", s.sliding_window);
  add("hidden_size_per_layer_input", s.hidden_size_per_layer_input);
  add("vocab_size_per_layer_input", s.vocab_size_per_layer_input);
  add("num_kv_shared_layers", s.num_kv_shared_layers);
  add("max_position_embeddings", s.max_position_embeddings);
  if (s.use_double_wide_mlp) j += ", \"use_double_wide_mlp\": true";
  j += ", \"final_logit_softcapping\": 30.0, \"layer_types\": [";
  for (size_t i = 0; i < s.layer_types.size(); ++i) {
    j += (i ? ", \"" : "\"") + s.layer_types[i] + "\"";
  }
  return j + "]}";
}

inline StatusOr<ModelConfig> SyntheticConfig(const SyntheticE2b& s,
                                             const std::string& source = "synthetic") {
  GEMMA4_ASSIGN_OR_RETURN(const json::Value root, json::Parse(SyntheticConfigJson(s), source));
  return ParseModelConfig(root, source);
}

}  // namespace gemma4::testing

#endif  // GEMMA4_TESTS_SYNTHETIC_CONFIG_H_
