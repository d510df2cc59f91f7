#include "model/drafter.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "base/half.h"
#include "model/gguf_model.h"
#include "ops/ops.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

Status ReadInt(const json::Value& root, const char* key, int* out, const std::string& where) {
  const json::Value* v = root.Find(key);
  if (v == nullptr || v->is_null()) return OkStatus();  // keep the default
  int64_t i = 0;
  if (!v->GetInt64(&i) || i < 0 || i > (1 << 30)) {
    return InvalidArgumentError(where + ": '" + key + "' is not a non-negative integer");
  }
  *out = static_cast<int>(i);
  return OkStatus();
}

// Marks every layer as reading the target's cache.
void ShareAllLayers(ModelConfig* c) {
  for (int i = 0; i < c->num_layers; ++i) {
    c->layers[i].kv_shared = true;
    c->layers[i].kv_source = -1;
  }
}

StatusOr<DrafterConfig> ParseDrafterConfig(const json::Value& root, const std::string& source) {
  const json::Value* type = root.Find("model_type");
  if (type == nullptr || !type->is_string() || type->as_string() != "gemma4_assistant") {
    return InvalidArgumentError(source +
                                ": not a Gemma 4 assistant drafter (model_type must be "
                                "'gemma4_assistant')");
  }
  const json::Value* tc = root.Find("text_config");
  if (tc == nullptr || !tc->is_object()) {
    return InvalidArgumentError(source + ": text_config is missing or not an object");
  }
  // The decoder is a Gemma 4 text decoder whose layers all share the target's KV: parse it as
  // one without sharing (num_kv_shared_layers 0) and mark the layers afterwards.
  json::Value text = *tc;
  auto& obj = text.mutable_object();
  bool have_type = false, have_shared = false;
  for (auto& [k, v] : obj) {
    if (k == "model_type") v = json::Value::String("gemma4_text"), have_type = true;
    if (k == "num_kv_shared_layers") v = json::Value::Integer(0), have_shared = true;
  }
  // No per-layer embeddings: their table size (0 in drafters) is irrelevant.
  std::erase_if(obj, [](const auto& kv) { return kv.first == "vocab_size_per_layer_input"; });
  if (!have_type) obj.emplace_back("model_type", json::Value::String("gemma4_text"));
  if (!have_shared) obj.emplace_back("num_kv_shared_layers", json::Value::Integer(0));
  DrafterConfig c;
  GEMMA4_ASSIGN_OR_RETURN(c.text, ParseModelConfig(text, source + ": text_config"));
  if (c.text.ple_dim != 0 || c.text.moe || c.text.double_wide_mlp) {
    return InvalidArgumentError(source +
                                ": a drafter has no per-layer embeddings, MoE block or "
                                "double-wide MLP");
  }
  ShareAllLayers(&c.text);
  c.backbone_hidden_size = 1536;  // transformers' default
  GEMMA4_RETURN_IF_ERROR(ReadInt(root, "backbone_hidden_size", &c.backbone_hidden_size, source));
  if (const json::Value* o = root.Find("use_ordered_embeddings"); o != nullptr && o->is_bool()) {
    c.ordered_embeddings = o->as_bool();
  }
  c.num_centroids = 2048;
  c.centroid_top_k = 32;
  GEMMA4_RETURN_IF_ERROR(ReadInt(root, "num_centroids", &c.num_centroids, source));
  GEMMA4_RETURN_IF_ERROR(ReadInt(root, "centroid_intermediate_top_k", &c.centroid_top_k, source));
  if (c.backbone_hidden_size < 1) {
    return InvalidArgumentError(source + ": backbone_hidden_size must be positive");
  }
  if (c.ordered_embeddings && (c.num_centroids < 1 || c.text.vocab_size % c.num_centroids != 0 ||
                               c.centroid_top_k < 1 || c.centroid_top_k > c.num_centroids)) {
    return InvalidArgumentError(source +
                                ": num_centroids must divide vocab_size and "
                                "centroid_intermediate_top_k lie in [1, num_centroids]");
  }
  return c;
}

constexpr char kGgufArch[] = "gemma4-assistant";

// Hugging Face name (as in the drafter's safetensors) -> GGUF name as llama.cpp's converter
// writes it ("" if none).
std::string DrafterGgufName(const std::string& hf) {
  if (hf == "pre_projection.weight") return "nextn.pre_projection.weight";
  if (hf == "post_projection.weight") return "nextn.post_projection.weight";
  if (hf == "masked_embedding.centroids.weight") return "masked_embd_centroids.weight";
  if (hf == "masked_embedding.token_ordering") return "masked_embd_ordering";
  if (hf.rfind("model.", 0) == 0) return GgufTensorName(hf.substr(6));
  return "";
}

}  // namespace

StatusOr<std::unique_ptr<Drafter>> Drafter::Load(const std::string& path) {
  auto d = std::unique_ptr<Drafter>(new Drafter());
  const bool is_gguf = path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
  if (is_gguf) {
    GEMMA4_ASSIGN_OR_RETURN(d->gguf_, gguf::File::Open(path));
    const gguf::Value* arch = d->gguf_->Find("general.architecture");
    if (arch == nullptr || arch->type != gguf::ValueType::kString || arch->s != kGgufArch) {
      return InvalidArgumentError(path + ": not a Gemma 4 assistant drafter (architecture '" +
                                  std::string(kGgufArch) + "' expected)");
    }
    GEMMA4_ASSIGN_OR_RETURN(d->config_.text, ConfigFromGguf(*d->gguf_, kGgufArch));
    ShareAllLayers(&d->config_.text);
    const gguf::Value* out = d->gguf_->Find(std::string(kGgufArch) + ".embedding_length_out");
    if (out == nullptr || !out->IsInteger() || out->i < 1 || out->i > (1 << 20)) {
      return InvalidArgumentError(path + ": missing or bad '" + std::string(kGgufArch) +
                                  ".embedding_length_out' (the target's hidden size)");
    }
    d->config_.backbone_hidden_size = static_cast<int>(out->i);
  } else {
    GEMMA4_ASSIGN_OR_RETURN(d->checkpoint_, Checkpoint::Open(path));
    GEMMA4_ASSIGN_OR_RETURN(d->config_, ParseDrafterConfig(d->checkpoint_->config_json(),
                                                           d->checkpoint_->config_path()));
  }
  GEMMA4_RETURN_IF_ERROR(d->LoadTensors());
  return d;
}

uint64_t Drafter::ResidentBytes() const {
  const ModelConfig& c = config_.text;
  uint64_t floats = final_norm_.size();
  int64_t widest = 0;
  for (int i = 0; i < c.num_layers; ++i) {
    const DrafterLayerWeights& lw = layers_[i];
    floats += lw.input_norm.size() + lw.post_attention_norm.size() + lw.pre_ffn_norm.size() +
              lw.post_ffn_norm.size() + lw.q_norm.size();
    widest = std::max<int64_t>(
        {widest, c.layers[i].mlp_width, int64_t{c.num_heads} * c.layers[i].head_dim});
  }
  // One step: logits [V], centroid scores [C], the selected clusters' rows, and the vectors
  // Step sizes by D, 2B and the widest of the MLP and the query (a few of each).
  const int64_t D = c.hidden_size, B = config_.backbone_hidden_size;
  floats += c.vocab_size + config_.num_centroids + 2 * B + 6 * D + 4 * widest;
  if (config_.ordered_embeddings && config_.num_centroids > 0) {
    floats += int64_t{config_.centroid_top_k} * (c.vocab_size / config_.num_centroids) * 2;
  }
  return weight_bytes_ + floats * sizeof(float) + token_ordering_.size() * sizeof(int32_t);
}

Status Drafter::LoadTensors() {
  const ModelConfig& c = config_.text;
  const int64_t D = c.hidden_size, B = config_.backbone_hidden_size, V = c.vocab_size;
  const std::string where = gguf_ ? gguf_->path() : checkpoint_->path();
  auto find = [&](const std::string& hf) -> const TensorView* {
    if (checkpoint_) return checkpoint_->Find(hf);
    const std::string name = DrafterGgufName(hf);
    for (const TensorView& t : gguf_->tensors()) {
      if (t.name == name) return &t;
    }
    return nullptr;
  };
  auto matrix = [&](const std::string& hf, std::vector<int64_t> shape, TensorView* out) -> Status {
    const TensorView* t = find(hf);
    if (t == nullptr) return NotFoundError(where + ": missing drafter tensor '" + hf + "'");
    if (t->shape != shape) {
      std::string want = "[";
      for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
      return InvalidArgumentError(where + ": drafter tensor '" + hf + "' has shape " +
                                  t->ShapeString() + ", expected " + want + "]");
    }
    if (!IsComputeType(t->dtype)) {
      return UnimplementedError(where + ": drafter tensor '" + hf + "' has type " +
                                DTypeName(t->dtype) + ", which matmuls do not take");
    }
    *out = *t;
    weight_bytes_ += t->nbytes;
    return OkStatus();
  };
  auto vector = [&](const std::string& hf, int64_t n, std::vector<float>* out) -> Status {
    TensorView t;
    GEMMA4_RETURN_IF_ERROR(matrix(hf, {n}, &t));
    if (IsBlockType(t.dtype)) {
      return InvalidArgumentError(where + ": '" + hf + "' must be a float tensor");
    }
    out->resize(n);
    ops::ToF32(t, 0, n, out->data());
    return OkStatus();
  };
  GEMMA4_RETURN_IF_ERROR(matrix("model.embed_tokens.weight", {V, D}, &embed_));
  GEMMA4_RETURN_IF_ERROR(vector("model.norm.weight", D, &final_norm_));
  GEMMA4_RETURN_IF_ERROR(matrix("pre_projection.weight", {D, 2 * B}, &pre_projection_));
  GEMMA4_RETURN_IF_ERROR(matrix("post_projection.weight", {B, D}, &post_projection_));
  layers_.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerConfig& lc = c.layers[i];
    DrafterLayerWeights& lw = layers_[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const int64_t q_dim = int64_t{c.num_heads} * lc.head_dim;
    GEMMA4_RETURN_IF_ERROR(vector(p + "input_layernorm.weight", D, &lw.input_norm));
    GEMMA4_RETURN_IF_ERROR(
        vector(p + "post_attention_layernorm.weight", D, &lw.post_attention_norm));
    GEMMA4_RETURN_IF_ERROR(vector(p + "pre_feedforward_layernorm.weight", D, &lw.pre_ffn_norm));
    GEMMA4_RETURN_IF_ERROR(vector(p + "post_feedforward_layernorm.weight", D, &lw.post_ffn_norm));
    GEMMA4_RETURN_IF_ERROR(vector(p + "self_attn.q_norm.weight", lc.head_dim, &lw.q_norm));
    GEMMA4_RETURN_IF_ERROR(matrix(p + "self_attn.q_proj.weight", {q_dim, D}, &lw.q_proj));
    GEMMA4_RETURN_IF_ERROR(matrix(p + "self_attn.o_proj.weight", {D, q_dim}, &lw.o_proj));
    GEMMA4_RETURN_IF_ERROR(matrix(p + "mlp.gate_proj.weight", {lc.mlp_width, D}, &lw.gate_proj));
    GEMMA4_RETURN_IF_ERROR(matrix(p + "mlp.up_proj.weight", {lc.mlp_width, D}, &lw.up_proj));
    GEMMA4_RETURN_IF_ERROR(matrix(p + "mlp.down_proj.weight", {D, lc.mlp_width}, &lw.down_proj));
    if (find(p + "layer_scalar") != nullptr) {
      std::vector<float> s;
      GEMMA4_RETURN_IF_ERROR(vector(p + "layer_scalar", 1, &s));
      lw.layer_scalar = s[0];
    }
  }
  // The centroid head (E2B/E4B drafters). llama.cpp's converter drops these tensors; a GGUF
  // drafter then uses the dense head.
  const TensorView* ordering = find("masked_embedding.token_ordering");
  if (checkpoint_ == nullptr) config_.ordered_embeddings = ordering != nullptr;
  if (config_.ordered_embeddings) {
    if (ordering == nullptr) {
      return NotFoundError(where + ": use_ordered_embeddings but no token_ordering tensor");
    }
    if (gguf_) {
      const TensorView* cent = find("masked_embedding.centroids.weight");
      if (cent == nullptr || cent->shape.size() != 2) {
        return NotFoundError(where + ": token ordering without centroids");
      }
      config_.num_centroids = static_cast<int>(cent->shape[0]);
      if (const gguf::Value* k = gguf_->Find(std::string(kGgufArch) + ".centroid_top_k");
          k != nullptr && k->IsInteger()) {
        config_.centroid_top_k = static_cast<int>(k->i);
      } else {
        config_.centroid_top_k = std::min(32, config_.num_centroids);
      }
    }
    GEMMA4_RETURN_IF_ERROR(
        matrix("masked_embedding.centroids.weight", {config_.num_centroids, D}, &centroids_));
    if (ordering->shape != std::vector<int64_t>{V} ||
        (ordering->dtype != DType::kI64 && ordering->dtype != DType::kI32)) {
      return InvalidArgumentError(where + ": token_ordering must be an integer vector of " +
                                  std::to_string(V) + " ids");
    }
    token_ordering_.resize(V);
    std::vector<uint8_t> seen(V, 0);
    for (int64_t i = 0; i < V; ++i) {
      int64_t id = 0;
      if (ordering->dtype == DType::kI64) {
        std::memcpy(&id, ordering->data + 8 * i, 8);
      } else {
        int32_t v32;
        std::memcpy(&v32, ordering->data + 4 * i, 4);
        id = v32;
      }
      if (id < 0 || id >= V || seen[id]) {
        return InvalidArgumentError(where + ": token_ordering is not a permutation of [0, " +
                                    std::to_string(V) + ")");
      }
      seen[id] = 1;
      token_ordering_[i] = static_cast<int32_t>(id);
    }
  }
  return OkStatus();
}

int Drafter::TargetSourceLayer(const ModelConfig& target, bool sliding) {
  // transformers: the last layer of the type before the KV-shared ones (store_full_length_kv).
  for (int i = target.first_kv_shared_layer() - 1; i >= 0; --i) {
    if (target.layers[i].sliding == sliding) return i;
  }
  return -1;
}

Status Drafter::CheckCompatible(const ModelConfig& target) const {
  const ModelConfig& c = config_.text;
  if (config_.backbone_hidden_size != target.hidden_size) {
    return FailedPreconditionError("the drafter was trained for a target of hidden size " +
                                   std::to_string(config_.backbone_hidden_size) +
                                   ", the model has " + std::to_string(target.hidden_size));
  }
  if (c.vocab_size != target.vocab_size) {
    return FailedPreconditionError("the drafter's vocabulary (" + std::to_string(c.vocab_size) +
                                   ") differs from the model's (" +
                                   std::to_string(target.vocab_size) + ")");
  }
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerConfig& lc = c.layers[i];
    const int src = TargetSourceLayer(target, lc.sliding);
    const char* type = lc.sliding ? "sliding" : "full";
    if (src < 0) {
      return FailedPreconditionError("drafter layer " + std::to_string(i) + " reads a " + type +
                                     " attention layer, which the model does not have");
    }
    const LayerConfig& tl = target.layers[src];
    if (tl.head_dim != lc.head_dim || tl.num_kv_heads != lc.num_kv_heads) {
      return FailedPreconditionError(
          "drafter layer " + std::to_string(i) + " (" + type + ") expects head dim " +
          std::to_string(lc.head_dim) + " and " + std::to_string(lc.num_kv_heads) +
          " KV heads; the model's layer " + std::to_string(src) + " has " +
          std::to_string(tl.head_dim) + " and " + std::to_string(tl.num_kv_heads));
    }
    if (lc.sliding && c.sliding_window != target.sliding_window) {
      return FailedPreconditionError("drafter sliding window " + std::to_string(c.sliding_window) +
                                     " != the model's " + std::to_string(target.sliding_window));
    }
  }
  return OkStatus();
}

Status Drafter::Step(const LoadedModel& target, const InferenceState& target_state, int32_t token,
                     int64_t position, std::vector<float>* h, std::vector<float>* logits,
                     ThreadPool* pool) const {
  const ModelConfig& c = config_.text;
  const ModelConfig& tc = target.config();
  const int64_t D = c.hidden_size, B = config_.backbone_hidden_size, V = c.vocab_size;
  if (static_cast<int64_t>(h->size()) != B) {
    return InvalidArgumentError("drafter step: h has " + std::to_string(h->size()) +
                                " values, expected " + std::to_string(B));
  }
  if (token < 0 || token >= V) {
    return InvalidArgumentError("drafter step: token " + std::to_string(token) +
                                " outside the vocabulary");
  }
  if (position < 1 || position > target_state.position()) {
    return InvalidArgumentError("drafter step at position " + std::to_string(position) +
                                ": the model's cache must hold positions [0, position) (it "
                                "holds " +
                                std::to_string(target_state.position()) + ")");
  }
  const float eps = c.rms_norm_eps;
  // Input: concat(target_embed(token) * scale, h) [2B] -> pre_projection -> x [D].
  std::vector<float> in(2 * B), x(D), normed(D), tmp(D);
  ops::ToF32(target.weights().embed, int64_t{token} * B, B, in.data());
  for (int64_t j = 0; j < B; ++j) in[j] *= target.embed_scale();
  std::copy(h->begin(), h->end(), in.begin() + B);
  ops::MatMul(pre_projection_, in.data(), 1, x.data(), pool);

  const KvCache& cache = target_state.kv_cache();
  std::vector<float> q, attn, gate, up, scores, cos_t, sin_t, tile;
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerConfig& lc = c.layers[l];
    const DrafterLayerWeights& lw = layers_[l];
    const int src = TargetSourceLayer(tc, lc.sliding);
    const int64_t hd = lc.head_dim, n_heads = c.num_heads, n_kv = lc.num_kv_heads;
    const int64_t q_dim = n_heads * hd, kv_dim = n_kv * hd, n_rep = n_heads / n_kv;
    ops::RmsNorm(x.data(), lw.input_norm.data(), D, eps, normed.data());
    q.resize(q_dim);
    attn.assign(q_dim, 0.0f);
    ops::MatMul(lw.q_proj, normed.data(), 1, q.data(), pool);
    cos_t.resize(lc.rotated_pairs);
    sin_t.resize(lc.rotated_pairs);
    ops::RopeTable(lc.inv_freq.data(), lc.rotated_pairs, position, cos_t.data(), sin_t.data());
    for (int64_t hh = 0; hh < n_heads; ++hh) {
      float* qh = q.data() + hh * hd;
      ops::RmsNorm(qh, lw.q_norm.data(), hd, eps, qh);
      ops::ApplyRopeTable(qh, hd, cos_t.data(), sin_t.data(), lc.rotated_pairs);
    }
    // Keys [lo, position): all on full layers; the last W + 1 on sliding layers
    // (transformers' bidirectional window |q - k| <= W, flipped to look back from the end).
    const int64_t hi = position - 1;
    const int64_t lo =
        lc.sliding ? std::max<int64_t>(0, hi - static_cast<int64_t>(c.sliding_window)) : 0;
    const int64_t nk = hi - lo + 1;
    scores.resize(n_rep * nk);
    // Rows [k, k + n) of KV head g's keys (or values) as f32 rows (pointer, row stride):
    // straight from an f32 cache, widened or dequantized into `tile` otherwise.
    auto rows = [&](bool values, int64_t g, int64_t k,
                    int64_t n) -> std::pair<const float*, int64_t> {
      switch (cache.type()) {
        case KvType::kF32:
          return {(values ? cache.V<float>(src, k) : cache.K<float>(src, k)) + g * hd, kv_dim};
        case KvType::kF16: {
          const uint16_t* r =
              (values ? cache.V<uint16_t>(src, k) : cache.K<uint16_t>(src, k)) + g * hd;
          tile.resize(n * hd);
          for (int64_t i = 0; i < n; ++i) {
            for (int64_t j = 0; j < hd; ++j) tile[i * hd + j] = half::F16ToF32(r[i * kv_dim + j]);
          }
          return {tile.data(), hd};
        }
        case KvType::kQ8_0:
        case KvType::kQ4_0: {
          const int64_t head_bytes = static_cast<int64_t>(KvRowBytes(cache.type(), hd));
          const int64_t row_bytes = cache.row_bytes(src);
          const uint8_t* r =
              (values ? cache.V<uint8_t>(src, k) : cache.K<uint8_t>(src, k)) + g * head_bytes;
          auto dequantize =
              cache.type() == KvType::kQ8_0 ? ops::DequantizeQ8_0 : ops::DequantizeQ4_0;
          tile.resize(n * hd);
          for (int64_t i = 0; i < n; ++i)
            dequantize(r + i * row_bytes, hd / 32, tile.data() + i * hd);
          return {tile.data(), hd};
        }
      }
      return {nullptr, 0};
    };
    for (int64_t g = 0; g < n_kv; ++g) {
      const float* qg = q.data() + g * n_rep * hd;
      float* og = attn.data() + g * n_rep * hd;
      for (int64_t k = lo; k <= hi;) {
        const int64_t run = std::min(hi + 1 - k, cache.ContiguousRun(src, k));
        const auto [kr, ld] = rows(false, g, k, run);
        ops::AttentionScores(qg, hd, static_cast<int>(n_rep), kr, ld, run, hd,
                             scores.data() + (k - lo), nk);
        k += run;
      }
      for (int64_t r = 0; r < n_rep; ++r) ops::Softmax(scores.data() + r * nk, nk);
      for (int64_t k = lo; k <= hi;) {
        const int64_t run = std::min(hi + 1 - k, cache.ContiguousRun(src, k));
        const auto [vr, ld] = rows(true, g, k, run);
        ops::AttentionValues(scores.data() + (k - lo), nk, static_cast<int>(n_rep), vr, ld, run, hd,
                             og, hd);
        k += run;
      }
    }
    ops::MatMul(lw.o_proj, attn.data(), 1, tmp.data(), pool);
    ops::RmsNorm(tmp.data(), lw.post_attention_norm.data(), D, eps, tmp.data());
    for (int64_t j = 0; j < D; ++j) x[j] += tmp[j];
    // GeGLU MLP with sandwich norms.
    ops::RmsNorm(x.data(), lw.pre_ffn_norm.data(), D, eps, normed.data());
    gate.resize(lc.mlp_width);
    up.resize(lc.mlp_width);
    ops::MatMul(lw.gate_proj, normed.data(), 1, gate.data(), pool);
    ops::MatMul(lw.up_proj, normed.data(), 1, up.data(), pool);
    ops::GeluMul(gate.data(), up.data(), gate.data(), lc.mlp_width);
    ops::MatMul(lw.down_proj, gate.data(), 1, tmp.data(), pool);
    ops::RmsNorm(tmp.data(), lw.post_ffn_norm.data(), D, eps, tmp.data());
    for (int64_t j = 0; j < D; ++j) x[j] += tmp[j];
    if (lw.layer_scalar != 1.0f) {
      for (int64_t j = 0; j < D; ++j) x[j] *= lw.layer_scalar;
    }
  }
  ops::RmsNorm(x.data(), final_norm_.data(), D, eps, normed.data());
  ops::MatMul(post_projection_, normed.data(), 1, h->data(), pool);
  logits->resize(V);
  if (!config_.ordered_embeddings) {
    ops::MatMul(embed_, normed.data(), 1, logits->data(), pool);
    return OkStatus();
  }
  // Centroid head: the top centroid_top_k clusters' tokens get their logit, the rest
  // min(computed) - 1 (transformers' Gemma4AssistantMaskedEmbedder).
  const int C = config_.num_centroids, K = config_.centroid_top_k;
  const int64_t per = V / C;
  std::vector<float> cl(C);
  ops::MatMul(centroids_, normed.data(), 1, cl.data(), pool);
  std::vector<int> order(C);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + K, order.end(),
                    [&](int a, int b) { return cl[a] > cl[b] || (cl[a] == cl[b] && a < b); });
  std::vector<float> row(D);
  std::vector<float> sel(K * per);
  float lowest = INFINITY;
  for (int i = 0; i < K; ++i) {
    for (int64_t j = 0; j < per; ++j) {
      const int32_t id = token_ordering_[order[i] * per + j];
      ops::ToF32(embed_, int64_t{id} * D, D, row.data());
      const float v = ops::Dot(row.data(), normed.data(), D);
      sel[i * per + j] = v;
      lowest = std::min(lowest, v);
    }
  }
  std::fill(logits->begin(), logits->end(), lowest - 1.0f);
  for (int i = 0; i < K; ++i) {
    for (int64_t j = 0; j < per; ++j)
      (*logits)[token_ordering_[order[i] * per + j]] = sel[i * per + j];
  }
  return OkStatus();
}

}  // namespace gemma4
