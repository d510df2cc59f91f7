// Gemma 4 text-decoder configuration, read from a Hugging Face config.json (model_type
// "gemma4" with a nested text_config, or "gemma4_text"), and expanded into a per-layer table
// so the forward pass is table-driven: every layer knows its attention type, head dim, KV
// heads, KV source, MLP width and RoPE frequencies.
#ifndef GEMMA4_SRC_MODEL_CONFIG_H_
#define GEMMA4_SRC_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "gemma4/status.h"
#include "util/json.h"

namespace gemma4 {

struct LayerConfig {
  bool sliding = true;  // sliding_attention (windowed) vs full_attention (global)
  int head_dim = 0;     // q, k, v and o per-head width
  int num_kv_heads = 0;
  bool k_eq_v = false;     // global layer without v_proj: V = v_norm(raw k_proj output)
  bool kv_shared = false;  // reads the KV cache of kv_source instead of computing its own
  int kv_source = 0;       // == own index unless kv_shared
  int mlp_width = 0;       // dense GeGLU width (2x on KV-shared layers with double-wide MLP)
  float rope_theta = 0;
  // inv_freq[i] for i < head_dim/2 (f32, as transformers computes it); 0 for the pairs that
  // proportional RoPE leaves unrotated. Dims (i, i + head_dim/2) rotate together.
  std::vector<float> inv_freq;
  int rotated_pairs = 0;  // leading non-zero entries of inv_freq
};

struct ModelConfig {
  std::string model_type;  // "gemma4" or "gemma4_text" (layout of the checkpoint)
  std::string variant;     // "e2b", "e4b", "26b-a4b", "31b" when the dims match a release
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int sliding_window = 0;  // W: keys visible to a sliding layer, the current one included
  float rms_norm_eps = 1e-6f;
  float final_logit_softcap = 0;  // 0: none
  // Per-Layer Embeddings; ple_dim == 0 disables them.
  int ple_dim = 0;
  int ple_vocab_size = 0;
  // MoE beside the dense MLP (26B-A4B).
  bool moe = false;
  int num_experts = 0;
  int top_k_experts = 0;
  int moe_width = 0;
  int num_kv_shared_layers = 0;
  bool double_wide_mlp = false;
  int bos_token_id = 2;
  int pad_token_id = 0;
  std::vector<int> eos_token_ids;
  // Sampling defaults from generation_config.json; Gemma 4's recommended values when absent.
  bool has_generation_config = false;
  bool do_sample = true;
  float temperature = 1.0f;
  float top_p = 0.95f;
  int top_k = 64;
  int64_t max_position_embeddings = 0;
  std::vector<LayerConfig> layers;

  int first_kv_shared_layer() const { return num_layers - num_kv_shared_layers; }
};

// Sets layer->rope_theta, inv_freq and rotated_pairs as transformers computes them in f32:
// inv_freq[i] = (1 / theta^(f32(2i) / denom)) / factor_i for the first `pairs` pairs and 0
// (unrotated) beyond. factors (one per pair, may be null: all 1) divide each pair's frequency
// as llama.cpp's rope_freqs does; a factor >= 1e29 marks a pair as unrotated.
void SetRopeFrequencies(float theta, int pairs, float denom, const float* factors,
                        LayerConfig* layer);

// Parses config.json text. `source` names the file in error messages.
StatusOr<ModelConfig> ParseModelConfig(const json::Value& root, const std::string& source);

// Takes the stop tokens (eos_token_id) from a generation_config.json, as transformers'
// generate() does; a null value leaves the config's own.
Status ApplyGenerationConfig(const json::Value& generation_config, const std::string& source,
                             ModelConfig* config);

// "E2B-like" name for known released dimensions, else "custom".
std::string GuessVariant(const ModelConfig& c);

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_CONFIG_H_
