#include "model/gguf_model.h"

#include <cmath>
#include <cstring>

namespace gemma4 {
namespace {

constexpr char kArch[] = "gemma4";
// Our own key: all stop tokens (GGUF's tokenizer.ggml.eos_token_id holds one). llama.cpp
// ignores keys it does not know.
constexpr char kEosIdsKey[] = "gemma4.generation.eos_token_ids";
// Ours (llama.cpp has no key for it): use_bidirectional_attention == "vision".
constexpr char kBidirectionalVisionKey[] = "gemma4.attention.bidirectional_vision";

std::string Key(const char* suffix) { return std::string(kArch) + "." + suffix; }

class MetaReader {
 public:
  explicit MetaReader(const gguf::File& f) : f_(f) {}

  Status Int(const std::string& key, int64_t* out, bool required) const {
    const gguf::Value* v = f_.Find(key);
    if (v == nullptr) {
      return required ? InvalidArgumentError(f_.path() + ": missing metadata key '" + key + "'")
                      : OkStatus();
    }
    if (!v->IsInteger()) {
      return InvalidArgumentError(f_.path() + ": metadata key '" + key + "' is not an integer");
    }
    *out = v->i;
    return OkStatus();
  }

  Status Float(const std::string& key, float* out, bool required) const {
    const gguf::Value* v = f_.Find(key);
    if (v == nullptr) {
      return required ? InvalidArgumentError(f_.path() + ": missing metadata key '" + key + "'")
                      : OkStatus();
    }
    if (!v->IsFloat() && !v->IsInteger()) {
      return InvalidArgumentError(f_.path() + ": metadata key '" + key + "' is not a number");
    }
    *out = v->IsFloat() ? static_cast<float>(v->f) : static_cast<float>(v->i);
    return OkStatus();
  }

  // A per-layer value: a scalar broadcast to every layer or an array of exactly n entries.
  Status PerLayer(const std::string& key, int64_t n, std::vector<int64_t>* out,
                  bool required) const {
    const gguf::Value* v = f_.Find(key);
    if (v == nullptr) {
      return required ? InvalidArgumentError(f_.path() + ": missing metadata key '" + key + "'")
                      : OkStatus();
    }
    if (v->type == gguf::ValueType::kArray) {
      if (static_cast<int64_t>(v->array.size()) != n) {
        return InvalidArgumentError(f_.path() + ": metadata array '" + key + "' has " +
                                    std::to_string(v->array.size()) + " entries for " +
                                    std::to_string(n) + " layers");
      }
      out->clear();
      for (const gguf::Value& e : v->array) {
        if (!e.IsInteger()) {
          return InvalidArgumentError(f_.path() + ": metadata array '" + key +
                                      "' holds non-integers");
        }
        out->push_back(e.i);
      }
      return OkStatus();
    }
    if (!v->IsInteger()) {
      return InvalidArgumentError(f_.path() + ": metadata key '" + key + "' is not an integer");
    }
    out->assign(n, v->i);
    return OkStatus();
  }

 private:
  const gguf::File& f_;
};

const TensorView* FindTensor(const gguf::File& f, const std::string& name) {
  for (const TensorView& t : f.tensors()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Status CheckRange(const gguf::File& f, const char* what, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return InvalidArgumentError(f.path() + ": " + what + " = " + std::to_string(v) +
                                " is out of range [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
  }
  return OkStatus();
}

}  // namespace

StatusOr<ModelConfig> ConfigFromGguf(const gguf::File& f) { return ConfigFromGguf(f, kArch); }

StatusOr<ModelConfig> ConfigFromGguf(const gguf::File& f, const std::string& arch_name) {
  auto Key = [&](const char* suffix) { return arch_name + "." + suffix; };
  const gguf::Value* arch = f.Find("general.architecture");
  if (arch == nullptr || arch->type != gguf::ValueType::kString) {
    return InvalidArgumentError(f.path() + ": missing general.architecture");
  }
  if (arch->s != arch_name) {
    return InvalidArgumentError(f.path() + ": architecture '" + arch->s +
                                "' is not a Gemma 4 model (expected '" + arch_name + "')");
  }
  MetaReader m(f);
  ModelConfig c;
  c.model_type = "gguf";
  int64_t layers = 0, hidden = 0, heads = 0, head_dim = 0, head_dim_swa = 0, window = 0;
  int64_t shared = 0, ple = 0, context = 131072;
  GEMMA4_RETURN_IF_ERROR(m.Int(Key("block_count"), &layers, true));
  GEMMA4_RETURN_IF_ERROR(CheckRange(f, "block_count", layers, 1, 1024));
  GEMMA4_RETURN_IF_ERROR(m.Int(Key("embedding_length"), &hidden, true));
  GEMMA4_RETURN_IF_ERROR(CheckRange(f, "embedding_length", hidden, 1, 1 << 20));
  GEMMA4_RETURN_IF_ERROR(m.Int(Key("attention.head_count"), &heads, true));
  GEMMA4_RETURN_IF_ERROR(CheckRange(f, "attention.head_count", heads, 1, 4096));
  GEMMA4_RETURN_IF_ERROR(m.Int(Key("attention.key_length"), &head_dim, true));
  GEMMA4_RETURN_IF_ERROR(m.Int(Key("attention.key_length_swa"), &head_dim_swa, true));
  GEMMA4_RETURN_IF_ERROR(CheckRange(f, "attention.key_length", head_dim, 2, 1 << 16));
  GEMMA4_RETURN_IF_ERROR(CheckRange(f, "attention.key_length_swa", head_dim_swa, 2, 1 << 16));
  GEMMA4_RETURN_IF_ERROR(m.Int(Key("attention.sliding_window"), &window, true));
  GEMMA4_RETURN_IF_ERROR(CheckRange(f, "attention.sliding_window", window, 1, 1 << 30));
  GEMMA4_RETURN_IF_ERROR(m.Int(Key("attention.shared_kv_layers"), &shared, false));
  // Bounded before the int arithmetic on it below (a fuzzed file's -2^31 overflowed there).
  GEMMA4_RETURN_IF_ERROR(CheckRange(f, "attention.shared_kv_layers", shared, 0, 1 << 16));
  // An assistant drafter shares every layer with its target; its decoder reads as one without
  // sharing (the drafter marks the layers itself).
  if (arch_name != kArch) shared = 0;
  GEMMA4_RETURN_IF_ERROR(m.Int(Key("embedding_length_per_layer_input"), &ple, false));
  GEMMA4_RETURN_IF_ERROR(CheckRange(f, "embedding_length_per_layer_input", ple, 0, 1 << 16));
  GEMMA4_RETURN_IF_ERROR(m.Int(Key("context_length"), &context, false));
  GEMMA4_RETURN_IF_ERROR(CheckRange(f, "context_length", context, 1, int64_t{1} << 30));
  c.num_layers = static_cast<int>(layers);
  c.hidden_size = static_cast<int>(hidden);
  c.num_heads = static_cast<int>(heads);
  c.sliding_window = static_cast<int>(window);
  c.num_kv_shared_layers = static_cast<int>(shared);
  c.ple_dim = static_cast<int>(ple);
  c.max_position_embeddings = context;
  GEMMA4_RETURN_IF_ERROR(m.Float(Key("attention.layer_norm_rms_epsilon"), &c.rms_norm_eps, true));
  GEMMA4_RETURN_IF_ERROR(m.Float(Key("final_logit_softcapping"), &c.final_logit_softcap, false));
  float theta = 1000000.0f, theta_swa = 10000.0f;
  GEMMA4_RETURN_IF_ERROR(m.Float(Key("rope.freq_base"), &theta, false));
  GEMMA4_RETURN_IF_ERROR(m.Float(Key("rope.freq_base_swa"), &theta_swa, false));
  int64_t rope_dims_swa = head_dim_swa;
  GEMMA4_RETURN_IF_ERROR(m.Int(Key("rope.dimension_count_swa"), &rope_dims_swa, false));
  if (rope_dims_swa != head_dim_swa) {
    return UnimplementedError(f.path() +
                              ": partial RoPE on sliding layers (rope.dimension_count_swa " +
                              std::to_string(rope_dims_swa) + " != head dim " +
                              std::to_string(head_dim_swa) + ") is not supported");
  }

  // Per-layer: attention type (true = sliding), KV heads, MLP width.
  const gguf::Value* pattern = f.Find(Key("attention.sliding_window_pattern"));
  if (pattern == nullptr || pattern->type != gguf::ValueType::kArray ||
      static_cast<int64_t>(pattern->array.size()) != layers) {
    return InvalidArgumentError(f.path() + ": '" + Key("attention.sliding_window_pattern") +
                                "' must be an array with one entry per layer");
  }
  std::vector<int64_t> kv_heads, ffn;
  GEMMA4_RETURN_IF_ERROR(m.PerLayer(Key("attention.head_count_kv"), layers, &kv_heads, false));
  if (kv_heads.empty()) kv_heads.assign(layers, heads);
  GEMMA4_RETURN_IF_ERROR(m.PerLayer(Key("feed_forward_length"), layers, &ffn, true));

  // Vocabulary size from the embedding (the converter trims it to the tokenizer's size).
  const TensorView* embed = FindTensor(f, "token_embd.weight");
  if (embed == nullptr || embed->shape.size() != 2) {
    return InvalidArgumentError(f.path() + ": missing 2-D tensor 'token_embd.weight'");
  }
  c.vocab_size = static_cast<int>(embed->shape[0]);
  // llama.cpp's converters write output.weight only for an untied LM head.
  c.tie_word_embeddings = FindTensor(f, "output.weight") == nullptr;
  if (c.ple_dim > 0) {
    const TensorView* ple_table = FindTensor(f, "per_layer_token_embd.weight");
    if (ple_table == nullptr || ple_table->shape.size() != 2) {
      return InvalidArgumentError(f.path() + ": missing 2-D tensor 'per_layer_token_embd.weight'");
    }
    c.ple_vocab_size = static_cast<int>(ple_table->shape[0]);
  }
  int64_t experts = 0;
  GEMMA4_RETURN_IF_ERROR(m.Int(Key("expert_count"), &experts, false));
  if (experts > 0) {
    int64_t used = 0, width = 0;
    GEMMA4_RETURN_IF_ERROR(m.Int(Key("expert_used_count"), &used, true));
    GEMMA4_RETURN_IF_ERROR(CheckRange(f, "expert_used_count", used, 1, experts));
    GEMMA4_RETURN_IF_ERROR(m.Int(Key("expert_feed_forward_length"), &width, true));
    GEMMA4_RETURN_IF_ERROR(CheckRange(f, "expert_feed_forward_length", width, 1, 1 << 20));
    c.moe = true;
    c.num_experts = static_cast<int>(experts);
    c.top_k_experts = static_cast<int>(used);
    c.moe_width = static_cast<int>(width);
  }
  // Proportional RoPE on global layers comes as per-pair frequency divisors (1 = rotate,
  // 1e30 = leave alone); no tensor means every pair rotates.
  const TensorView* rope_freqs = FindTensor(f, "rope_freqs.weight");
  std::vector<float> factors;
  if (rope_freqs != nullptr) {
    if (rope_freqs->dtype != DType::kF32 || rope_freqs->numel() != head_dim / 2) {
      return InvalidArgumentError(f.path() + ": rope_freqs.weight must be F32 with " +
                                  std::to_string(head_dim / 2) + " entries");
    }
    factors.resize(head_dim / 2);
    std::memcpy(factors.data(), rope_freqs->data, factors.size() * sizeof(float));
  }

  c.layers.resize(c.num_layers);
  const int first_shared = c.num_layers - c.num_kv_shared_layers;
  if (c.num_kv_shared_layers < 0 || first_shared < 1) {
    return InvalidArgumentError(f.path() + ": attention.shared_kv_layers leaves no KV layer");
  }
  for (int i = 0; i < c.num_layers; ++i) {
    LayerConfig& l = c.layers[i];
    l.sliding = pattern->array[i].i != 0;
    l.head_dim = static_cast<int>(l.sliding ? head_dim_swa : head_dim);
    GEMMA4_RETURN_IF_ERROR(CheckRange(f, "attention.head_count_kv", kv_heads[i], 1, heads));
    GEMMA4_RETURN_IF_ERROR(CheckRange(f, "feed_forward_length", ffn[i], 1, 1 << 24));
    l.num_kv_heads = static_cast<int>(kv_heads[i]);
    if (c.num_heads % l.num_kv_heads != 0) {
      return InvalidArgumentError(f.path() + ": layer " + std::to_string(i) + ": " +
                                  std::to_string(heads) + " heads are not a multiple of " +
                                  std::to_string(l.num_kv_heads) + " KV heads");
    }
    l.mlp_width = static_cast<int>(ffn[i]);
    l.kv_shared = c.num_kv_shared_layers > 0 && i >= first_shared;
    l.kv_source = i;
    if (l.kv_shared) {
      l.kv_source = -1;
      for (int j = first_shared - 1; j >= 0; --j) {
        if (c.layers[j].sliding == l.sliding) {
          l.kv_source = j;
          break;
        }
      }
      if (l.kv_source < 0) {
        return InvalidArgumentError(f.path() + ": KV-shared layer " + std::to_string(i) +
                                    " has no earlier layer of its type");
      }
    }
    // K=V: a global layer that computes KV but has no V projection.
    const std::string v_name = "blk." + std::to_string(i) + ".attn_v.weight";
    l.k_eq_v = !l.sliding && !l.kv_shared && FindTensor(f, v_name) == nullptr;
    // RoPE: theta^(-2i/d) per pair, divided by the pair's factor on global layers.
    SetRopeFrequencies(l.sliding ? theta_swa : theta, l.head_dim / 2,
                       static_cast<float>(l.head_dim),
                       !l.sliding && !factors.empty() ? factors.data() : nullptr, &l);
  }
  c.intermediate_size = c.layers[0].mlp_width;
  if (const gguf::Value* eos = f.Find(kEosIdsKey);
      eos != nullptr && eos->type == gguf::ValueType::kArray) {
    for (const gguf::Value& e : eos->array) c.eos_token_ids.push_back(static_cast<int>(e.i));
  } else if (const gguf::Value* e = f.Find("tokenizer.ggml.eos_token_id");
             e != nullptr && e->IsInteger()) {
    c.eos_token_ids.push_back(static_cast<int>(e->i));
  }
  if (const gguf::Value* b = f.Find("tokenizer.ggml.bos_token_id");
      b != nullptr && b->IsInteger()) {
    c.bos_token_id = static_cast<int>(b->i);
  }
  c.variant = GuessVariant(c);
  // Multimodal placeholder ids: GGUF files carry no such keys; the vocabulary has the tokens.
  if (const gguf::Value* tokens = f.Find("tokenizer.ggml.tokens");
      tokens != nullptr && tokens->type == gguf::ValueType::kArray &&
      tokens->element_type == gguf::ValueType::kString) {
    const std::pair<const char*, int*> kMedia[] = {
        {"<|image>", &c.boi_token_id},    {"<image|>", &c.eoi_token_id},
        {"<|image|>", &c.image_token_id}, {"<|video|>", &c.video_token_id},
        {"<|audio>", &c.boa_token_id},    {"<audio|>", &c.eoa_token_id},
        {"<|audio|>", &c.audio_token_id}};
    for (size_t id = 0; id < tokens->array.size(); ++id) {
      for (const auto& [text, field] : kMedia) {
        if (tokens->array[id].s == text) *field = static_cast<int>(id);
      }
    }
  }
  // Bidirectional attention within an image on sliding layers (transformers'
  // use_bidirectional_attention = "vision"): our own key where gemma4 quantize wrote the file;
  // llama.cpp's converter has none, and of the released models the ones without Per-Layer
  // Embeddings (26B/31B) attend so.
  c.bidirectional_vision = c.ple_dim == 0;
  if (const gguf::Value* bidi = f.Find(kBidirectionalVisionKey); bidi != nullptr) {
    if (bidi->type != gguf::ValueType::kBool) {
      return InvalidArgumentError(f.path() + ": metadata key '" + kBidirectionalVisionKey +
                                  "' is not a bool");
    }
    c.bidirectional_vision = bidi->i != 0;
  }
  GEMMA4_RETURN_IF_ERROR(ValidateModelConfig(c, f.path()));
  return c;
}

std::string GgufTensorName(const std::string& hf) {
  static const std::pair<const char*, const char*> kGlobal[] = {
      {"embed_tokens.weight", "token_embd.weight"},
      {"lm_head.weight", "output.weight"},
      {"norm.weight", "output_norm.weight"},
      {"embed_tokens_per_layer.weight", "per_layer_token_embd.weight"},
      {"per_layer_model_projection.weight", "per_layer_model_proj.weight"},
      {"per_layer_projection_norm.weight", "per_layer_proj_norm.weight"},
  };
  static const std::pair<const char*, const char*> kLayer[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "post_attention_norm.weight"},
      {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
      {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
      {"layer_scalar", "layer_output_scale.weight"},
      {"per_layer_input_gate.weight", "inp_gate.weight"},
      {"per_layer_projection.weight", "proj.weight"},
      {"post_per_layer_input_norm.weight", "post_norm.weight"},
      {"router.proj.weight", "ffn_gate_inp.weight"},
      {"router.scale", "ffn_gate_inp.scale"},
      {"router.per_expert_scale", "ffn_down_exps.scale"},
      {"experts.gate_up_proj", "ffn_gate_up_exps.weight"},
      {"experts.gate_proj", "ffn_gate_exps.weight"},  // Ollama: gate and up apart
      {"experts.up_proj", "ffn_up_exps.weight"},
      {"experts.down_proj", "ffn_down_exps.weight"},
      {"pre_feedforward_layernorm_2.weight", "pre_ffw_norm_2.weight"},
      {"post_feedforward_layernorm_1.weight", "post_ffw_norm_1.weight"},
      {"post_feedforward_layernorm_2.weight", "post_ffw_norm_2.weight"},
  };
  for (const auto& [from, to] : kGlobal) {
    if (hf == from) return to;
  }
  if (hf.rfind("layers.", 0) != 0) return "";
  const size_t dot = hf.find('.', 7);
  if (dot == std::string::npos) return "";
  const std::string index = hf.substr(7, dot - 7);
  const std::string rest = hf.substr(dot + 1);
  for (const auto& [from, to] : kLayer) {
    if (rest == from) return "blk." + index + "." + to;
  }
  return "";
}

StatusOr<std::vector<float>> RopeFreqFactors(const ModelConfig& c) {
  const std::vector<float>* global = nullptr;
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const LayerConfig& l = c.layers[i];
    if (l.sliding) {
      for (int p = 0; p < l.rotated_pairs; ++p) {
        if (l.rope_pair_factors[p] != 1.0f) {
          return UnimplementedError(
              "layer " + std::to_string(i) + ": RoPE scaling (factor " +
              std::to_string(l.rope_pair_factors[p]) +
              ") on a sliding-window layer has no form in llama.cpp's gemma4 GGUF layout "
              "(rope_freqs applies to the global layers only)");
        }
      }
      continue;
    }
    if (global == nullptr) {
      global = &l.rope_pair_factors;
    } else if (*global != l.rope_pair_factors) {
      return UnimplementedError("layer " + std::to_string(i) +
                                ": global layers with different RoPE frequency divisors have no "
                                "form in llama.cpp's gemma4 GGUF layout (one rope_freqs)");
    }
  }
  return global != nullptr ? *global : std::vector<float>{};
}

void SetGgufMetadata(const ModelConfig& c, gguf::Writer* w) {
  using gguf::Value;
  using gguf::ValueType;
  auto u32 = [](int64_t v) { return Value::Int(ValueType::kUint32, v); };
  const LayerConfig* global = nullptr;
  const LayerConfig* sliding = nullptr;
  for (const LayerConfig& l : c.layers) {
    if (!l.sliding && global == nullptr) global = &l;
    if (l.sliding && sliding == nullptr) sliding = &l;
  }
  if (sliding == nullptr) sliding = global;
  w->Set("general.architecture", Value::String(kArch));
  w->Set("general.type", Value::String("model"));
  w->Set(Key("block_count"), u32(c.num_layers));
  w->Set(Key("context_length"), u32(c.max_position_embeddings));
  w->Set(Key("embedding_length"), u32(c.hidden_size));
  bool uniform_ffn = true, uniform_kv = true;
  for (const LayerConfig& l : c.layers) {
    uniform_ffn = uniform_ffn && l.mlp_width == c.layers[0].mlp_width;
    uniform_kv = uniform_kv && l.num_kv_heads == c.layers[0].num_kv_heads;
  }
  std::vector<Value> ffn, kv, pattern;
  for (const LayerConfig& l : c.layers) {
    ffn.push_back(Value::Int(ValueType::kInt32, l.mlp_width));
    kv.push_back(Value::Int(ValueType::kInt32, l.num_kv_heads));
    pattern.push_back(Value::Bool(l.sliding));
  }
  w->Set(Key("feed_forward_length"),
         uniform_ffn ? u32(c.layers[0].mlp_width) : Value::Array(ValueType::kInt32, ffn));
  w->Set(Key("attention.head_count"), u32(c.num_heads));
  w->Set(Key("attention.head_count_kv"),
         uniform_kv ? u32(c.layers[0].num_kv_heads) : Value::Array(ValueType::kInt32, kv));
  w->Set(Key("attention.key_length"), u32(global->head_dim));
  w->Set(Key("attention.value_length"), u32(global->head_dim));
  w->Set(Key("attention.key_length_swa"), u32(sliding->head_dim));
  w->Set(Key("attention.value_length_swa"), u32(sliding->head_dim));
  w->Set(Key("attention.layer_norm_rms_epsilon"), Value::Float32(c.rms_norm_eps));
  w->Set(Key("attention.sliding_window"), u32(c.sliding_window));
  w->Set(Key("attention.sliding_window_pattern"), Value::Array(ValueType::kBool, pattern));
  w->Set(Key("attention.shared_kv_layers"), u32(c.num_kv_shared_layers));
  w->Set(Key("rope.freq_base"), Value::Float32(global->rope_theta));
  w->Set(Key("rope.freq_base_swa"), Value::Float32(sliding->rope_theta));
  w->Set(Key("rope.dimension_count"), u32(global->head_dim));
  w->Set(Key("rope.dimension_count_swa"), u32(sliding->head_dim));
  w->Set(Key("embedding_length_per_layer_input"), u32(c.ple_dim));
  w->Set(kBidirectionalVisionKey, Value::Bool(c.bidirectional_vision));
  if (c.final_logit_softcap > 0) {
    w->Set(Key("final_logit_softcapping"), Value::Float32(c.final_logit_softcap));
  }
  if (c.moe) {
    w->Set(Key("expert_count"), u32(c.num_experts));
    w->Set(Key("expert_used_count"), u32(c.top_k_experts));
    w->Set(Key("expert_feed_forward_length"), u32(c.moe_width));
  }
  std::vector<Value> eos;
  for (int id : c.eos_token_ids) eos.push_back(Value::Int(ValueType::kInt32, id));
  if (!eos.empty()) w->Set(kEosIdsKey, Value::Array(ValueType::kInt32, eos));
}

}  // namespace gemma4
