// Gemma 4 text-decoder configuration, read from a Hugging Face config.json (model_type
// "gemma4" with a nested text_config, or "gemma4_text"), and expanded into a per-layer table
// so the forward pass is table-driven: every layer knows its attention type, head dim, KV
// heads, KV source, MLP width and RoPE frequencies.
#ifndef GEMMA4_SRC_MODEL_CONFIG_H_
#define GEMMA4_SRC_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/json.h"
#include "gemma4/status.h"

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
  // [head_dim / 2] each pair's frequency divisor: RoPE scaling's factor (1 without it) for the
  // rotated pairs, >= 1e29 for the unrotated ones; what llama.cpp's rope_freqs tensor holds.
  std::vector<float> rope_pair_factors;
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
  // Multimodal placeholder ids (Gemma4Config's top level; the released values by default):
  // <|image>, <image|>, <|image|>, <|video|>, <|audio>, <audio|>, <|audio|>.
  int boi_token_id = 255999;
  int eoi_token_id = 258882;
  int image_token_id = 258880;
  int video_token_id = 258884;
  int boa_token_id = 256000;
  int eoa_token_id = 258883;
  int audio_token_id = 258881;
  // use_bidirectional_attention == "vision" (26B/31B): during prefill, the soft tokens of one
  // image (or video frame) see each other on sliding layers; full layers stay causal.
  bool bidirectional_vision = false;
  // The LM head is the embedding (every released model). Untied: its own lm_head.weight
  // [V, H] (GGUF: output.weight).
  bool tie_word_embeddings = true;

  int first_kv_shared_layer() const { return num_layers - num_kv_shared_layers; }
  // The id whose embedding (and per-layer input) a token takes when no encoder output fills
  // its position. Gemma4ForConditionalGeneration replaces every image, video and audio
  // placeholder id with the pad id before its embedding lookups (the encoder rows then
  // overwrite the filled ones), so a placeholder the model generated, or one in a prompt given
  // without media, embeds as pad; a text-only Gemma4ForCausalLM checkpoint embeds it as it is.
  // GGUF files embed every id as it is, as llama.cpp does: their placeholder ids are found by
  // token text in the vocabulary, which need not be the ids the checkpoint's config named.
  // Set once when the config is read (model_type "gemma4"): the forward pass asks per token.
  bool placeholders_embed_as_pad = false;
  int32_t TextEmbeddingId(int32_t id) const {
    return placeholders_embed_as_pad &&
                   (id == image_token_id || id == video_token_id || id == audio_token_id)
               ? pad_token_id
               : id;
  }
};

// Sets layer->rope_theta, inv_freq and rotated_pairs as transformers computes them in f32:
// inv_freq[i] = (1 / theta^(f32(2i) / denom)) / factor_i for the first `pairs` pairs and 0
// (unrotated) beyond. factors (one per pair, may be null: all 1) divide each pair's frequency
// as llama.cpp's rope_freqs does; a factor >= 1e29 marks a pair as unrotated.
void SetRopeFrequencies(float theta, int pairs, float denom, const float* factors,
                        LayerConfig* layer);

// Parses config.json text. `source` names the file in error messages.
StatusOr<ModelConfig> ParseModelConfig(const json::Value& root, const std::string& source);

// Refuses a configuration the forward pass cannot run sensibly, naming the field: dimensions
// below 1, odd head dims, KV heads that do not divide the heads, a KV-shared layer whose head
// dims differ from its source, rms_norm_eps outside (0, 1], final_logit_softcapping that is not
// 0 or a finite positive number up to 1e6, non-finite RoPE values. ParseModelConfig applies it;
// loaders that build a ModelConfig another way (GGUF metadata) call it themselves.
Status ValidateModelConfig(const ModelConfig& config, const std::string& where);

// Takes the stop tokens (eos_token_id) from a generation_config.json, as transformers'
// generate() does; a null value leaves the config's own.
Status ApplyGenerationConfig(const json::Value& generation_config, const std::string& source,
                             ModelConfig* config);

// Gemma4VisionConfig (config.json's vision_config) and the image processor settings.
struct VisionConfig {
  int hidden_size = 768;
  int intermediate_size = 3072;
  int num_layers = 16;
  int num_heads = 12;
  int num_kv_heads = 12;
  int head_dim = 64;
  int patch_size = 16;
  int pooling_kernel_size = 3;
  int position_embedding_size = 10240;
  float rope_theta = 100.0f;
  float rms_norm_eps = 1e-6f;
  bool use_clipped_linears = false;
  bool standardize = false;
  // Image processor: soft tokens per image unless a request says otherwise (70, 140, 280, 560
  // or 1120), from processor_config.json / preprocessor_config.json.
  int default_max_soft_tokens = 280;
  // Video frames (Gemma4VideoProcessor): soft tokens per frame and the most frames a video
  // is sampled to.
  int default_video_soft_tokens = 70;
  int max_video_frames = 32;
};

// Parses config.json's vision_config (an object). `where` names it in error messages.
StatusOr<VisionConfig> ParseVisionConfig(const json::Value& vision_config,
                                         const std::string& where);
// Applies an image processor configuration: processor_config.json (transformers 5 nests it
// under "image_processor") or a flat preprocessor_config.json.
Status ApplyImageProcessorConfig(const json::Value& processor_config, const std::string& source,
                                 VisionConfig* config);
// The soft-token budgets Gemma 4's image processor accepts.
bool IsSupportedSoftTokenBudget(int max_soft_tokens);

// Gemma4AudioConfig (config.json's audio_config), with transformers' defaults.
struct AudioConfig {
  int hidden_size = 1024;
  int num_layers = 12;
  int num_heads = 8;
  int subsampling_channels[2] = {128, 32};
  int conv_kernel_size = 5;
  float residual_weight = 0.5f;
  int attention_chunk_size = 12;
  int attention_context_left = 13;
  int attention_context_right = 0;
  float attention_logit_cap = 50.0f;
  float attention_invalid_logits_value = -1.0e9f;
  bool use_clipped_linears = true;
  float rms_norm_eps = 1e-6f;
  float gradient_clipping = 1e10f;
  int output_proj_dims = 1536;
  // hidden_act: only "silu" is supported.
  int head_dim() const { return hidden_size / num_heads; }
};

// Parses config.json's audio_config (an object). `where` names it in error messages.
StatusOr<AudioConfig> ParseAudioConfig(const json::Value& audio_config, const std::string& where);

// "E2B-like" name for known released dimensions, else "custom".
std::string GuessVariant(const ModelConfig& c);

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_CONFIG_H_
