#include "model/config.h"

#include <cmath>
#include <cstdio>
#include <limits>

namespace gemma4 {
namespace {

// Bounds on config values. The per-layer tables (inv_freq) take layers x head_dim/2 floats, so
// these keep a hostile config.json from demanding gigabytes; released models are far below.
constexpr int64_t kMaxConfigInt = int64_t{1} << 30;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeadDim = 16384;

class Reader {
 public:
  Reader(const json::Value& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  Status Int(const char* key, int* out, bool required, int64_t min_value = 0,
             int64_t max_value = kMaxConfigInt) const {
    const json::Value* v = obj_.Find(key);
    if (v == nullptr || v->is_null()) {
      if (required) return InvalidArgumentError(where_ + ": missing required field '" + key + "'");
      return OkStatus();
    }
    int64_t i = 0;
    if (!v->GetInt64(&i)) {
      return InvalidArgumentError(where_ + ": field '" + key + "' must be an integer, got " +
                                  v->Serialize());
    }
    if (i < min_value || i > max_value) {
      return InvalidArgumentError(where_ + ": field '" + key + "' = " + std::to_string(i) +
                                  " is out of range [" + std::to_string(min_value) + ", " +
                                  std::to_string(max_value) + "]");
    }
    *out = static_cast<int>(i);
    return OkStatus();
  }

  Status Float(const char* key, float* out, bool required) const {
    const json::Value* v = obj_.Find(key);
    if (v == nullptr || v->is_null()) {
      if (required) return InvalidArgumentError(where_ + ": missing required field '" + key + "'");
      return OkStatus();
    }
    if (!v->is_number()) {
      return InvalidArgumentError(where_ + ": field '" + key + "' must be a number");
    }
    const double d = v->as_number();
    // 1e300 would become +inf as a float32 (and NaN in the forward pass).
    if (!std::isfinite(d) || std::fabs(d) > std::numeric_limits<float>::max()) {
      return InvalidArgumentError(where_ + ": field '" + key + "' = " + v->Serialize() +
                                  " is not a finite float32");
    }
    *out = static_cast<float>(d);
    return OkStatus();
  }

  Status Bool(const char* key, bool* out) const {
    const json::Value* v = obj_.Find(key);
    if (v == nullptr || v->is_null()) return OkStatus();
    if (!v->is_bool()) return InvalidArgumentError(where_ + ": field '" + key + "' must be a bool");
    *out = v->as_bool();
    return OkStatus();
  }

 private:
  const json::Value& obj_;
  std::string where_;
};

struct RopeParams {
  std::string type = "default";
  float theta = 10000.0f;
  float partial_rotary_factor = 1.0f;
  float factor = 1.0f;
};

Status ReadRope(const json::Value* all, const char* layer_type, const std::string& where,
                RopeParams* out) {
  if (all == nullptr || all->is_null()) return OkStatus();  // defaults already set
  const json::Value* p = all->Find(layer_type);
  if (p == nullptr) {
    return InvalidArgumentError(where + ": rope_parameters has no entry for '" + layer_type + "'");
  }
  if (!p->is_object()) return InvalidArgumentError(where + ": rope_parameters entry not an object");
  // An entry stands alone: what it leaves out takes transformers' defaults for every rope type
  // (type "default", partial_rotary_factor 1, factor 1), not the released full-attention preset
  // that applies when rope_parameters is absent. Only the base keeps the layer type's default
  // (transformers fills a missing rope_theta from the config's default_theta per layer type).
  out->type = "default";
  out->partial_rotary_factor = 1.0f;
  out->factor = 1.0f;
  if (const json::Value* t = p->Find("rope_type"); t != nullptr && t->is_string()) {
    out->type = t->as_string();
  }
  Reader r(*p, where + ": rope_parameters." + layer_type);
  GEMMA4_RETURN_IF_ERROR(r.Float("rope_theta", &out->theta, false));
  GEMMA4_RETURN_IF_ERROR(r.Float("partial_rotary_factor", &out->partial_rotary_factor, false));
  GEMMA4_RETURN_IF_ERROR(r.Float("factor", &out->factor, false));
  if (out->type != "default" && out->type != "proportional" && out->type != "linear") {
    return UnimplementedError(where + ": rope_type '" + out->type + "' for " + layer_type +
                              " layers is not supported (default, linear, proportional are)");
  }
  if (!(out->theta > 0) || !(out->factor > 0) || !(out->partial_rotary_factor > 0) ||
      out->partial_rotary_factor > 1) {
    return InvalidArgumentError(where + ": invalid rope_parameters for " + layer_type);
  }
  return OkStatus();
}

// inv_freq exactly as transformers builds it in float32:
//   default:      1 / theta^(f32(2i) / dim), i < dim/2, dim = head_dim * partial_rotary_factor
//   proportional: the same with the exponent's denominator the FULL head_dim, for the first
//                 int(p * head_dim // 2) pairs; the remaining pairs get 0 (not rotated).
// Both are then divided by `factor`.
Status ComputeInvFreq(const RopeParams& rope, int head_dim, const std::string& where,
                      LayerConfig* layer) {
  const int half = head_dim / 2;
  int pairs = 0;
  float denom = 0;
  if (rope.type == "proportional") {
    pairs = static_cast<int>(
        std::floor(static_cast<double>(rope.partial_rotary_factor) * head_dim / 2));
    denom = static_cast<float>(head_dim);
  } else {
    const int dim = static_cast<int>(head_dim * static_cast<double>(rope.partial_rotary_factor));
    if (dim != head_dim) {
      return UnimplementedError(where + ": partial_rotary_factor < 1 with rope_type '" + rope.type +
                                "' is not supported");
    }
    pairs = half;
    denom = static_cast<float>(dim);
  }
  const std::vector<float> factors(pairs, rope.factor);
  SetRopeFrequencies(rope.theta, pairs, denom, factors.data(), layer);
  return OkStatus();
}

Status ReadTokenIds(const json::Value& v, const std::string& where, std::vector<int>* out) {
  out->clear();
  int64_t id = 0;
  if (v.is_array()) {
    for (const json::Value& e : v.as_array()) {
      if (!e.GetInt64(&id) || id < 0 || id > INT32_MAX) {
        return InvalidArgumentError(where + ": token ids must be non-negative integers");
      }
      out->push_back(static_cast<int>(id));
    }
  } else if (v.GetInt64(&id) && id >= 0 && id <= INT32_MAX) {
    out->push_back(static_cast<int>(id));
  } else if (!v.is_null()) {
    return InvalidArgumentError(where + ": token ids must be non-negative integers");
  }
  return OkStatus();
}

}  // namespace

void SetRopeFrequencies(float theta, int pairs, float denom, const float* factors,
                        LayerConfig* layer) {
  layer->rope_theta = theta;
  layer->inv_freq.assign(layer->head_dim / 2, 0.0f);
  layer->rope_pair_factors.assign(layer->head_dim / 2, 1e30f);
  layer->rotated_pairs = 0;
  for (int i = 0; i < pairs && i < layer->head_dim / 2; ++i) {
    const float factor = factors != nullptr ? factors[i] : 1.0f;
    if (factor >= 1e29f) continue;  // unrotated
    layer->rope_pair_factors[i] = factor;
    const float exponent = static_cast<float>(2 * i) / denom;
    layer->inv_freq[i] = (1.0f / std::pow(theta, exponent)) / factor;
    layer->rotated_pairs = i + 1;
  }
}

StatusOr<ModelConfig> ParseModelConfig(const json::Value& root, const std::string& source) {
  if (!root.is_object()) return InvalidArgumentError(source + ": not a JSON object");
  ModelConfig c;
  const json::Value* text = &root;
  std::string where = source;
  const json::Value* model_type = root.Find("model_type");
  c.model_type = model_type != nullptr ? model_type->as_string() : "";
  if (const json::Value* tc = root.Find("text_config"); tc != nullptr && !tc->is_null()) {
    if (!tc->is_object()) return InvalidArgumentError(source + ": text_config is not an object");
    text = tc;
    where = source + ": text_config";
    if (c.model_type.empty()) c.model_type = "gemma4";
  }
  if (c.model_type != "gemma4" && c.model_type != "gemma4_text") {
    return InvalidArgumentError(source + ": model_type '" + c.model_type +
                                "' is not a Gemma 4 model (expected gemma4 or gemma4_text)");
  }
  c.placeholders_embed_as_pad = c.model_type == "gemma4";
  Reader r(*text, where);
  int head_dim = 0, global_head_dim = 512, num_kv_heads = 0, num_global_kv_heads = -1;
  bool k_eq_v = false;
  GEMMA4_RETURN_IF_ERROR(r.Int("vocab_size", &c.vocab_size, true, 1));
  GEMMA4_RETURN_IF_ERROR(r.Int("hidden_size", &c.hidden_size, true, 1));
  // Half the usual bound: KV-shared layers with use_double_wide_mlp use twice the width.
  GEMMA4_RETURN_IF_ERROR(
      r.Int("intermediate_size", &c.intermediate_size, true, 1, kMaxConfigInt / 2));
  GEMMA4_RETURN_IF_ERROR(r.Int("num_hidden_layers", &c.num_layers, true, 1, kMaxLayers));
  GEMMA4_RETURN_IF_ERROR(r.Int("num_attention_heads", &c.num_heads, true, 1));
  GEMMA4_RETURN_IF_ERROR(r.Int("num_key_value_heads", &num_kv_heads, true, 1));
  GEMMA4_RETURN_IF_ERROR(r.Int("head_dim", &head_dim, true, 2, kMaxHeadDim));
  GEMMA4_RETURN_IF_ERROR(r.Int("global_head_dim", &global_head_dim, false, 2, kMaxHeadDim));
  GEMMA4_RETURN_IF_ERROR(r.Int("num_global_key_value_heads", &num_global_kv_heads, false, 1));
  GEMMA4_RETURN_IF_ERROR(r.Bool("attention_k_eq_v", &k_eq_v));
  c.sliding_window = 512;
  GEMMA4_RETURN_IF_ERROR(r.Int("sliding_window", &c.sliding_window, false, 1));
  GEMMA4_RETURN_IF_ERROR(r.Float("rms_norm_eps", &c.rms_norm_eps, false));
  GEMMA4_RETURN_IF_ERROR(r.Float("final_logit_softcapping", &c.final_logit_softcap, false));
  c.ple_dim = 256;
  c.ple_vocab_size = 262144;
  GEMMA4_RETURN_IF_ERROR(r.Int("hidden_size_per_layer_input", &c.ple_dim, false, 0));
  GEMMA4_RETURN_IF_ERROR(r.Int("vocab_size_per_layer_input", &c.ple_vocab_size, false, 1));
  GEMMA4_RETURN_IF_ERROR(r.Bool("enable_moe_block", &c.moe));
  GEMMA4_RETURN_IF_ERROR(r.Int("num_kv_shared_layers", &c.num_kv_shared_layers, false, 0));
  GEMMA4_RETURN_IF_ERROR(r.Bool("use_double_wide_mlp", &c.double_wide_mlp));
  GEMMA4_RETURN_IF_ERROR(r.Int("bos_token_id", &c.bos_token_id, false, 0));
  GEMMA4_RETURN_IF_ERROR(r.Int("pad_token_id", &c.pad_token_id, false, 0));
  int max_pos = 131072;
  GEMMA4_RETURN_IF_ERROR(r.Int("max_position_embeddings", &max_pos, false, 1));
  c.max_position_embeddings = max_pos;
  if (c.moe) {
    GEMMA4_RETURN_IF_ERROR(r.Int("num_experts", &c.num_experts, true, 1));
    GEMMA4_RETURN_IF_ERROR(r.Int("top_k_experts", &c.top_k_experts, true, 1));
    GEMMA4_RETURN_IF_ERROR(r.Int("moe_intermediate_size", &c.moe_width, true, 1));
    if (c.top_k_experts > c.num_experts) {
      return InvalidArgumentError(where + ": top_k_experts " + std::to_string(c.top_k_experts) +
                                  " exceeds num_experts " + std::to_string(c.num_experts));
    }
  }
  if (const json::Value* act = text->Find("hidden_activation");
      act != nullptr && act->is_string() && act->as_string() != "gelu_pytorch_tanh") {
    return UnimplementedError(where + ": hidden_activation '" + act->as_string() +
                              "' is not supported (Gemma 4 uses gelu_pytorch_tanh)");
  }
  // transformers ties the LM head by the top-level config: a Gemma4ForConditionalGeneration
  // checkpoint's own tie_word_embeddings (true unless it says otherwise; its text_config's flag
  // is not read, and such a model saves no lm_head.weight), a Gemma4ForCausalLM checkpoint's
  // text config, which is the top level there.
  GEMMA4_RETURN_IF_ERROR(Reader(root, source).Bool("tie_word_embeddings", &c.tie_word_embeddings));
  if (const json::Value* bidi = text->Find("use_bidirectional_attention");
      bidi != nullptr && bidi->is_string()) {
    if (bidi->as_string() == "all") {
      return UnimplementedError(where +
                                ": use_bidirectional_attention 'all' (encoder use) is not "
                                "supported");
    }
    c.bidirectional_vision = bidi->as_string() == "vision";
  }
  if (text != &root) {
    // Placeholder ids live at the top level of a gemma4 config.
    Reader top(root, source);
    GEMMA4_RETURN_IF_ERROR(top.Int("boi_token_id", &c.boi_token_id, false, 0));
    GEMMA4_RETURN_IF_ERROR(top.Int("eoi_token_id", &c.eoi_token_id, false, 0));
    GEMMA4_RETURN_IF_ERROR(top.Int("image_token_id", &c.image_token_id, false, 0));
    GEMMA4_RETURN_IF_ERROR(top.Int("video_token_id", &c.video_token_id, false, 0));
    GEMMA4_RETURN_IF_ERROR(top.Int("boa_token_id", &c.boa_token_id, false, 0));
    GEMMA4_RETURN_IF_ERROR(top.Int("eoa_token_index", &c.eoa_token_id, false, 0));
    GEMMA4_RETURN_IF_ERROR(top.Int("audio_token_id", &c.audio_token_id, false, 0));
  }
  if (const json::Value* eos = text->Find("eos_token_id"); eos != nullptr) {
    GEMMA4_RETURN_IF_ERROR(ReadTokenIds(*eos, where + ": eos_token_id", &c.eos_token_ids));
  }

  // Layer types: the explicit list, else the default 5:1 pattern; the last layer is global.
  std::vector<bool> sliding(c.num_layers);
  if (const json::Value* lt = text->Find("layer_types"); lt != nullptr && !lt->is_null()) {
    if (!lt->is_array() || static_cast<int>(lt->as_array().size()) != c.num_layers) {
      return InvalidArgumentError(where + ": layer_types must list one type per layer (" +
                                  std::to_string(c.num_layers) + ")");
    }
    for (int i = 0; i < c.num_layers; ++i) {
      const std::string& t = lt->as_array()[i].as_string();
      if (t == "sliding_attention") {
        sliding[i] = true;
      } else if (t == "full_attention") {
        sliding[i] = false;
      } else {
        return InvalidArgumentError(where + ": layer_types[" + std::to_string(i) + "] = '" + t +
                                    "' is not sliding_attention or full_attention");
      }
    }
  } else {
    for (int i = 0; i < c.num_layers; ++i) sliding[i] = (i + 1) % 6 != 0;
  }
  sliding[c.num_layers - 1] = false;

  // Per-layer overrides: transformers >= 5.x writes per_layer_config {"<layer>": {head_dim,
  // num_key_value_heads}}; older configs have global_head_dim / num_global_key_value_heads.
  std::vector<int> layer_head_dim(c.num_layers), layer_kv_heads(c.num_layers);
  const json::Value* per_layer = text->Find("per_layer_config");
  if (per_layer != nullptr && !per_layer->is_null() && !per_layer->is_object()) {
    return InvalidArgumentError(where + ": per_layer_config is not an object");
  }
  const bool has_per_layer = per_layer != nullptr && per_layer->is_object();
  for (int i = 0; i < c.num_layers; ++i) {
    layer_head_dim[i] = head_dim;
    layer_kv_heads[i] = num_kv_heads;
    if (!has_per_layer && !sliding[i]) {
      layer_head_dim[i] = global_head_dim;
      if (k_eq_v && num_global_kv_heads > 0) layer_kv_heads[i] = num_global_kv_heads;
    }
  }
  if (has_per_layer) {
    for (const auto& [key, overrides] : per_layer->as_object()) {
      char* end = nullptr;
      const long idx = std::strtol(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || idx < 0 || idx >= c.num_layers) {
        return InvalidArgumentError(where + ": per_layer_config key '" + key +
                                    "' is not a layer index below " + std::to_string(c.num_layers));
      }
      if (!overrides.is_object()) {
        return InvalidArgumentError(where + ": per_layer_config['" + key + "'] is not an object");
      }
      Reader lr(overrides, where + ": per_layer_config['" + key + "']");
      GEMMA4_RETURN_IF_ERROR(lr.Int("head_dim", &layer_head_dim[idx], false, 2, kMaxHeadDim));
      GEMMA4_RETURN_IF_ERROR(lr.Int("num_key_value_heads", &layer_kv_heads[idx], false, 1));
    }
  }

  RopeParams rope_sliding, rope_full;
  rope_full.type = "proportional";
  rope_full.theta = 1000000.0f;
  rope_full.partial_rotary_factor = 0.25f;
  const json::Value* rope = text->Find("rope_parameters");
  GEMMA4_RETURN_IF_ERROR(ReadRope(rope, "sliding_attention", where, &rope_sliding));
  GEMMA4_RETURN_IF_ERROR(ReadRope(rope, "full_attention", where, &rope_full));

  if (c.num_kv_shared_layers >= c.num_layers) {
    return InvalidArgumentError(where + ": num_kv_shared_layers " +
                                std::to_string(c.num_kv_shared_layers) +
                                " leaves no layer to compute KV");
  }
  c.layers.resize(c.num_layers);
  const int first_shared = c.first_kv_shared_layer();
  for (int i = 0; i < c.num_layers; ++i) {
    LayerConfig& l = c.layers[i];
    const std::string lwhere = where + ": layer " + std::to_string(i);
    l.sliding = sliding[i];
    l.head_dim = layer_head_dim[i];
    l.num_kv_heads = layer_kv_heads[i];
    l.k_eq_v = k_eq_v && !l.sliding;
    if (l.head_dim % 2 != 0) return InvalidArgumentError(lwhere + ": head_dim must be even");
    if (c.num_heads % l.num_kv_heads != 0) {
      return InvalidArgumentError(lwhere + ": num_attention_heads " + std::to_string(c.num_heads) +
                                  " is not a multiple of its KV heads " +
                                  std::to_string(l.num_kv_heads));
    }
    l.kv_shared = c.num_kv_shared_layers > 0 && i >= first_shared;
    l.kv_source = i;
    if (l.kv_shared) {
      // The source is the last non-shared layer of the same attention type.
      l.kv_source = -1;
      for (int j = first_shared - 1; j >= 0; --j) {
        if (sliding[j] == l.sliding) {
          l.kv_source = j;
          break;
        }
      }
      if (l.kv_source < 0) {
        return InvalidArgumentError(lwhere + ": KV-shared layer has no earlier non-shared " +
                                    (l.sliding ? "sliding" : "full") + " layer to read from");
      }
      const LayerConfig& src = c.layers[l.kv_source];
      if (src.head_dim != l.head_dim || src.num_kv_heads != l.num_kv_heads) {
        return InvalidArgumentError(lwhere +
                                    ": KV-shared layer's head_dim/KV heads differ from "
                                    "its source layer " +
                                    std::to_string(l.kv_source));
      }
    }
    l.mlp_width = c.intermediate_size * (c.double_wide_mlp && l.kv_shared ? 2 : 1);
    GEMMA4_RETURN_IF_ERROR(
        ComputeInvFreq(l.sliding ? rope_sliding : rope_full, l.head_dim, lwhere, &l));
  }
  // A PLE table smaller than the vocabulary is allowed, as in transformers; ids it lacks are
  // rejected when they are run (InferenceState::Forward).
  c.variant = GuessVariant(c);
  GEMMA4_RETURN_IF_ERROR(ValidateModelConfig(c, where));
  return c;
}

Status ValidateModelConfig(const ModelConfig& c, const std::string& where) {
  auto bad = [&](const std::string& field, const std::string& value, const char* rule) {
    return InvalidArgumentError(where + ": " + field + " = " + value + " " + rule);
  };
  auto text = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", v);
    return std::string(buf);
  };
  const std::pair<const char*, int64_t> positive[] = {
      {"vocab_size", c.vocab_size},         {"hidden_size", c.hidden_size},
      {"num_hidden_layers", c.num_layers},  {"num_attention_heads", c.num_heads},
      {"sliding_window", c.sliding_window}, {"max_position_embeddings", c.max_position_embeddings}};
  for (const auto& [field, value] : positive) {
    if (value < 1) return bad(field, std::to_string(value), "must be at least 1");
  }
  // eps is added to a mean of squares before the inverse square root: <= 0 gives NaN or
  // infinity for small activations, and a large one flattens every norm.
  if (!std::isfinite(c.rms_norm_eps) || !(c.rms_norm_eps > 0) || c.rms_norm_eps > 1) {
    return bad("rms_norm_eps", text(c.rms_norm_eps), "must be in (0, 1]");
  }
  if (!std::isfinite(c.final_logit_softcap) || c.final_logit_softcap < 0 ||
      c.final_logit_softcap > 1e6f) {
    return bad("final_logit_softcapping", text(c.final_logit_softcap),
               "must be 0 (none) or a positive number up to 1e6");
  }
  if (c.ple_dim < 0) return bad("hidden_size_per_layer_input", std::to_string(c.ple_dim), "< 0");
  if (c.ple_dim > 0 && c.ple_vocab_size < 1) {
    return bad("vocab_size_per_layer_input", std::to_string(c.ple_vocab_size),
               "must be at least 1");
  }
  if (c.moe && (c.num_experts < 1 || c.top_k_experts < 1 || c.top_k_experts > c.num_experts ||
                c.moe_width < 1)) {
    return InvalidArgumentError(where + ": num_experts " + std::to_string(c.num_experts) +
                                ", top_k_experts " + std::to_string(c.top_k_experts) +
                                ", moe_intermediate_size " + std::to_string(c.moe_width) +
                                " must be positive with top_k_experts <= num_experts");
  }
  if (static_cast<int>(c.layers.size()) != c.num_layers) {
    return InvalidArgumentError(where + ": " + std::to_string(c.layers.size()) +
                                " layer entries for num_hidden_layers " +
                                std::to_string(c.num_layers));
  }
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerConfig& l = c.layers[i];
    const std::string layer = "layer " + std::to_string(i) + " ";
    if (l.head_dim < 2 || l.head_dim % 2 != 0) {
      return bad(layer + "head_dim", std::to_string(l.head_dim), "must be even and at least 2");
    }
    if (l.num_kv_heads < 1 || c.num_heads % l.num_kv_heads != 0) {
      return bad(layer + "num_key_value_heads", std::to_string(l.num_kv_heads),
                 "must divide num_attention_heads");
    }
    if (l.mlp_width < 1)
      return bad(layer + "intermediate_size", std::to_string(l.mlp_width), "< 1");
    if (!std::isfinite(l.rope_theta) || !(l.rope_theta > 0)) {
      return bad(layer + "rope_theta", text(l.rope_theta), "must be a finite number > 0");
    }
    for (float f : l.inv_freq) {
      if (!std::isfinite(f)) return bad(layer + "RoPE frequency", text(f), "is not finite");
    }
    if (l.kv_source < 0 || l.kv_source > i) {
      return bad(layer + "KV source", std::to_string(l.kv_source), "is not an earlier layer");
    }
    const LayerConfig& source = c.layers[l.kv_source];
    if (source.head_dim != l.head_dim || source.num_kv_heads != l.num_kv_heads) {
      return InvalidArgumentError(
          where + ": " + layer + "head_dim " + std::to_string(l.head_dim) + " / KV heads " +
          std::to_string(l.num_kv_heads) + " differ from its KV source layer " +
          std::to_string(l.kv_source) + "'s " + std::to_string(source.head_dim) + " / " +
          std::to_string(source.num_kv_heads));
    }
  }
  return OkStatus();
}

Status ApplyGenerationConfig(const json::Value& generation_config, const std::string& source,
                             ModelConfig* config) {
  if (generation_config.is_null()) return OkStatus();
  if (!generation_config.is_object()) return InvalidArgumentError(source + ": not a JSON object");
  if (const json::Value* eos = generation_config.Find("eos_token_id"); eos != nullptr) {
    GEMMA4_RETURN_IF_ERROR(ReadTokenIds(*eos, source + ": eos_token_id", &config->eos_token_ids));
  }
  config->has_generation_config = true;
  config->do_sample = false;  // transformers: greedy unless do_sample is set
  auto number = [&](const char* key, float lo, float hi, float* out) -> Status {
    const json::Value* v = generation_config.Find(key);
    if (v == nullptr || v->is_null()) return OkStatus();
    if (!v->is_number() || v->as_number() < lo || v->as_number() > hi) {
      return InvalidArgumentError(source + ": " + key + " must be a number in [" +
                                  std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    *out = static_cast<float>(v->as_number());
    return OkStatus();
  };
  GEMMA4_RETURN_IF_ERROR(number("temperature", 0.0f, 100.0f, &config->temperature));
  GEMMA4_RETURN_IF_ERROR(number("top_p", 0.0f, 1.0f, &config->top_p));
  float top_k = static_cast<float>(config->top_k);
  GEMMA4_RETURN_IF_ERROR(number("top_k", 0.0f, 1e9f, &top_k));
  config->top_k = static_cast<int>(top_k);
  if (const json::Value* v = generation_config.Find("do_sample"); v != nullptr && v->is_bool()) {
    config->do_sample = v->as_bool();
  }
  return OkStatus();
}

bool IsSupportedSoftTokenBudget(int max_soft_tokens) {
  return max_soft_tokens == 70 || max_soft_tokens == 140 || max_soft_tokens == 280 ||
         max_soft_tokens == 560 || max_soft_tokens == 1120;
}

StatusOr<VisionConfig> ParseVisionConfig(const json::Value& vision_config,
                                         const std::string& where) {
  if (!vision_config.is_object()) return InvalidArgumentError(where + ": not a JSON object");
  VisionConfig v;
  Reader r(vision_config, where);
  GEMMA4_RETURN_IF_ERROR(r.Int("hidden_size", &v.hidden_size, false, 1, 1 << 16));
  GEMMA4_RETURN_IF_ERROR(r.Int("intermediate_size", &v.intermediate_size, false, 1, 1 << 18));
  GEMMA4_RETURN_IF_ERROR(r.Int("num_hidden_layers", &v.num_layers, false, 1, kMaxLayers));
  GEMMA4_RETURN_IF_ERROR(r.Int("num_attention_heads", &v.num_heads, false, 1, 1024));
  GEMMA4_RETURN_IF_ERROR(r.Int("num_key_value_heads", &v.num_kv_heads, false, 1, 1024));
  v.head_dim = v.hidden_size / v.num_heads;
  GEMMA4_RETURN_IF_ERROR(r.Int("head_dim", &v.head_dim, false, 4, kMaxHeadDim));
  GEMMA4_RETURN_IF_ERROR(r.Int("patch_size", &v.patch_size, false, 1, 1024));
  GEMMA4_RETURN_IF_ERROR(r.Int("pooling_kernel_size", &v.pooling_kernel_size, false, 1, 64));
  GEMMA4_RETURN_IF_ERROR(
      r.Int("position_embedding_size", &v.position_embedding_size, false, 1, 1 << 20));
  GEMMA4_RETURN_IF_ERROR(r.Float("rms_norm_eps", &v.rms_norm_eps, false));
  GEMMA4_RETURN_IF_ERROR(r.Bool("use_clipped_linears", &v.use_clipped_linears));
  GEMMA4_RETURN_IF_ERROR(r.Bool("standardize", &v.standardize));
  if (const json::Value* rope = vision_config.Find("rope_parameters");
      rope != nullptr && rope->is_object()) {
    Reader rr(*rope, where + ": rope_parameters");
    GEMMA4_RETURN_IF_ERROR(rr.Float("rope_theta", &v.rope_theta, false));
    if (const json::Value* t = rope->Find("rope_type");
        t != nullptr && t->is_string() && t->as_string() != "axial") {
      return UnimplementedError(where + ": rope_type '" + t->as_string() +
                                "' is not supported (the vision tower uses axial 2-D RoPE)");
    }
  }
  if (const json::Value* act = vision_config.Find("hidden_activation");
      act != nullptr && act->is_string() && act->as_string() != "gelu_pytorch_tanh") {
    return UnimplementedError(where + ": hidden_activation '" + act->as_string() +
                              "' is not supported (gelu_pytorch_tanh)");
  }
  if (v.num_heads % v.num_kv_heads != 0) {
    return InvalidArgumentError(where + ": num_attention_heads " + std::to_string(v.num_heads) +
                                " is not a multiple of num_key_value_heads " +
                                std::to_string(v.num_kv_heads));
  }
  if (v.head_dim % 4 != 0) {
    return InvalidArgumentError(where + ": head_dim " + std::to_string(v.head_dim) +
                                " must be a multiple of 4 (two rotated halves for x and y)");
  }
  if (!(v.rms_norm_eps > 0) || !(v.rope_theta > 0) || !std::isfinite(v.rope_theta)) {
    return InvalidArgumentError(where + ": rms_norm_eps and rope_theta must be positive");
  }
  return v;
}

StatusOr<AudioConfig> ParseAudioConfig(const json::Value& audio_config, const std::string& where) {
  if (!audio_config.is_object()) return InvalidArgumentError(where + ": not a JSON object");
  AudioConfig a;
  Reader r(audio_config, where);
  GEMMA4_RETURN_IF_ERROR(r.Int("hidden_size", &a.hidden_size, false, 1, 1 << 16));
  GEMMA4_RETURN_IF_ERROR(r.Int("num_hidden_layers", &a.num_layers, false, 1, kMaxLayers));
  GEMMA4_RETURN_IF_ERROR(r.Int("num_attention_heads", &a.num_heads, false, 1, 1024));
  GEMMA4_RETURN_IF_ERROR(r.Int("conv_kernel_size", &a.conv_kernel_size, false, 1, 1024));
  GEMMA4_RETURN_IF_ERROR(r.Float("residual_weight", &a.residual_weight, false));
  GEMMA4_RETURN_IF_ERROR(r.Int("attention_chunk_size", &a.attention_chunk_size, false, 1, 4096));
  GEMMA4_RETURN_IF_ERROR(
      r.Int("attention_context_left", &a.attention_context_left, false, 1, 4096));
  GEMMA4_RETURN_IF_ERROR(
      r.Int("attention_context_right", &a.attention_context_right, false, 0, 4096));
  GEMMA4_RETURN_IF_ERROR(r.Float("attention_logit_cap", &a.attention_logit_cap, false));
  GEMMA4_RETURN_IF_ERROR(
      r.Float("attention_invalid_logits_value", &a.attention_invalid_logits_value, false));
  GEMMA4_RETURN_IF_ERROR(r.Bool("use_clipped_linears", &a.use_clipped_linears));
  GEMMA4_RETURN_IF_ERROR(r.Float("rms_norm_eps", &a.rms_norm_eps, false));
  GEMMA4_RETURN_IF_ERROR(r.Float("gradient_clipping", &a.gradient_clipping, false));
  GEMMA4_RETURN_IF_ERROR(r.Int("output_proj_dims", &a.output_proj_dims, false, 1, 1 << 16));
  if (const json::Value* ch = audio_config.Find("subsampling_conv_channels");
      ch != nullptr && !ch->is_null()) {
    if (!ch->is_array() || ch->as_array().size() != 2) {
      return InvalidArgumentError(where + ": subsampling_conv_channels must be a list of two ints");
    }
    for (int i = 0; i < 2; ++i) {
      int64_t v = 0;
      if (!ch->as_array()[i].GetInt64(&v) || v < 1 || v > (1 << 16)) {
        return InvalidArgumentError(where + ": subsampling_conv_channels[" + std::to_string(i) +
                                    "] must be an integer in [1, 65536]");
      }
      a.subsampling_channels[i] = static_cast<int>(v);
    }
  }
  if (const json::Value* act = audio_config.Find("hidden_act");
      act != nullptr && !act->is_null() && (!act->is_string() || act->as_string() != "silu")) {
    return UnimplementedError(where + ": hidden_act " + act->Serialize() +
                              " is not supported (silu)");
  }
  if (a.hidden_size % a.num_heads != 0) {
    return InvalidArgumentError(where + ": hidden_size " + std::to_string(a.hidden_size) +
                                " is not a multiple of num_attention_heads " +
                                std::to_string(a.num_heads));
  }
  if (a.subsampling_channels[0] % 4 != 0) {
    return InvalidArgumentError(where + ": subsampling_conv_channels[0] must be a multiple of 4");
  }
  if (!(a.rms_norm_eps > 0) || !(a.attention_logit_cap > 0) ||
      !std::isfinite(a.attention_logit_cap) || !(a.gradient_clipping > 0) ||
      !std::isfinite(a.residual_weight) || !std::isfinite(a.attention_invalid_logits_value)) {
    return InvalidArgumentError(where +
                                ": rms_norm_eps, attention_logit_cap and gradient_clipping must "
                                "be positive, residual_weight and the invalid logit finite");
  }
  return a;
}

Status ApplyImageProcessorConfig(const json::Value& processor_config, const std::string& source,
                                 VisionConfig* config) {
  if (!processor_config.is_object()) return InvalidArgumentError(source + ": not a JSON object");
  const json::Value* p = &processor_config;
  std::string where = source;
  if (const json::Value* nested = processor_config.Find("image_processor");
      nested != nullptr && nested->is_object()) {
    p = nested;
    where += ": image_processor";
  }
  Reader r(*p, where);
  int max_soft_tokens = config->default_max_soft_tokens, patch = config->patch_size,
      pooling = config->pooling_kernel_size;
  GEMMA4_RETURN_IF_ERROR(r.Int("max_soft_tokens", &max_soft_tokens, false, 1));
  GEMMA4_RETURN_IF_ERROR(r.Int("patch_size", &patch, false, 1));
  GEMMA4_RETURN_IF_ERROR(r.Int("pooling_kernel_size", &pooling, false, 1));
  if (!IsSupportedSoftTokenBudget(max_soft_tokens)) {
    return InvalidArgumentError(where + ": max_soft_tokens " + std::to_string(max_soft_tokens) +
                                " is not one of 70, 140, 280, 560, 1120");
  }
  if (patch != config->patch_size || pooling != config->pooling_kernel_size) {
    return InvalidArgumentError(
        where + ": patch_size " + std::to_string(patch) + " / pooling_kernel_size " +
        std::to_string(pooling) + " differ from the vision tower's " +
        std::to_string(config->patch_size) + " / " + std::to_string(config->pooling_kernel_size));
  }
  if (const json::Value* f = p->Find("do_normalize"); f != nullptr && f->as_bool()) {
    return UnimplementedError(where + ": do_normalize true is not Gemma 4's preprocessing");
  }
  config->default_max_soft_tokens = max_soft_tokens;
  // transformers 5 nests the video processor beside the image processor.
  if (const json::Value* video = processor_config.Find("video_processor");
      video != nullptr && video->is_object()) {
    Reader v(*video, source + ": video_processor");
    int tokens = config->default_video_soft_tokens, frames = config->max_video_frames;
    GEMMA4_RETURN_IF_ERROR(v.Int("max_soft_tokens", &tokens, false, 1));
    GEMMA4_RETURN_IF_ERROR(v.Int("num_frames", &frames, false, 1, 4096));
    if (!IsSupportedSoftTokenBudget(tokens)) {
      return InvalidArgumentError(source + ": video_processor max_soft_tokens " +
                                  std::to_string(tokens) +
                                  " is not one of 70, 140, 280, 560, 1120");
    }
    config->default_video_soft_tokens = tokens;
    config->max_video_frames = frames;
  }
  return OkStatus();
}

std::string GuessVariant(const ModelConfig& c) {
  if (c.hidden_size == 1536 && c.num_layers == 35) return "e2b";
  if (c.hidden_size == 2560 && c.num_layers == 42) return "e4b";
  if (c.hidden_size == 2816 && c.num_layers == 30 && c.moe) return "26b-a4b";
  if (c.hidden_size == 5376 && c.num_layers == 60) return "31b";
  return "custom";
}

}  // namespace gemma4
