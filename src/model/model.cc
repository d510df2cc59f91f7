#include "model/model.h"

#include <cmath>

#include "ops/ops.h"

namespace gemma4 {
namespace {

class WeightLoader {
 public:
  WeightLoader(const Checkpoint& ckpt, std::string prefix, int64_t* params, uint64_t* bytes)
      : ckpt_(ckpt), prefix_(std::move(prefix)), params_(params), bytes_(bytes) {}

  // A required matrix/tensor of exactly `shape`.
  Status Tensor(const std::string& name, std::vector<int64_t> shape, TensorView* out) {
    const std::string full = prefix_ + name;
    const TensorView* t = ckpt_.Find(full);
    TensorView expected;
    expected.shape = shape;
    if (t == nullptr) {
      return NotFoundError(ckpt_.path() + ": missing tensor '" + full + "' (expected shape " +
                           expected.ShapeString() + ")");
    }
    if (t->shape != shape) {
      return InvalidArgumentError(t->file + ": tensor '" + full + "' has shape " +
                                  t->ShapeString() + ", expected " + expected.ShapeString());
    }
    if (!IsComputeType(t->dtype)) {
      return UnimplementedError(t->file + ": tensor '" + full + "' has dtype " +
                                DTypeName(t->dtype) + "; weights must be F32, F16 or BF16");
    }
    *out = *t;
    *params_ += t->numel();
    *bytes_ += t->nbytes;
    return OkStatus();
  }

  // A small vector converted to f32 (norm weights, scales).
  Status Vector(const std::string& name, int64_t n, std::vector<float>* out) {
    TensorView t;
    GEMMA4_RETURN_IF_ERROR(Tensor(name, {n}, &t));
    out->resize(n);
    ops::ToF32(t, 0, n, out->data());
    return OkStatus();
  }

  bool Has(const std::string& name) const { return ckpt_.Find(prefix_ + name) != nullptr; }

 private:
  const Checkpoint& ckpt_;
  std::string prefix_;
  int64_t* params_;
  uint64_t* bytes_;
};

}  // namespace

StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& path) {
  auto model = std::unique_ptr<Model>(new Model());
  GEMMA4_ASSIGN_OR_RETURN(model->checkpoint_, Checkpoint::Open(path));
  GEMMA4_ASSIGN_OR_RETURN(model->config_, ParseModelConfig(model->checkpoint_->config_json(),
                                                           model->checkpoint_->config_path()));
  GEMMA4_RETURN_IF_ERROR(ApplyGenerationConfig(model->checkpoint_->generation_config_json(),
                                               "generation_config.json", &model->config_));
  GEMMA4_RETURN_IF_ERROR(model->LoadWeights());
  return model;
}

Status Model::LoadWeights() {
  const ModelConfig& c = config_;
  // Text weights live under model.language_model. (Gemma4ForConditionalGeneration) or model.
  // (Gemma4ForCausalLM); decide by where the embedding is.
  if (checkpoint_->Find("model.language_model.embed_tokens.weight") != nullptr) {
    prefix_ = "model.language_model.";
  } else if (checkpoint_->Find("model.embed_tokens.weight") != nullptr) {
    prefix_ = "model.";
  } else {
    return NotFoundError(checkpoint_->path() +
                         ": missing tensor 'model.language_model.embed_tokens.weight' (or "
                         "'model.embed_tokens.weight' for a text-only checkpoint)");
  }
  WeightLoader w(*checkpoint_, prefix_, &num_parameters_, &weight_bytes_);
  const int64_t H = c.hidden_size, L = c.num_layers, P = c.ple_dim;
  GEMMA4_RETURN_IF_ERROR(w.Tensor("embed_tokens.weight", {c.vocab_size, H}, &weights_.embed));
  GEMMA4_RETURN_IF_ERROR(w.Vector("norm.weight", H, &weights_.final_norm));
  if (P > 0) {
    GEMMA4_RETURN_IF_ERROR(
        w.Tensor("embed_tokens_per_layer.weight", {c.ple_vocab_size, L * P}, &weights_.ple_embed));
    GEMMA4_RETURN_IF_ERROR(
        w.Tensor("per_layer_model_projection.weight", {L * P, H}, &weights_.ple_model_projection));
    GEMMA4_RETURN_IF_ERROR(
        w.Vector("per_layer_projection_norm.weight", P, &weights_.ple_projection_norm));
  }
  weights_.layers.resize(L);
  for (int i = 0; i < L; ++i) {
    const LayerConfig& lc = c.layers[i];
    LayerWeights& lw = weights_.layers[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    const int64_t hd = lc.head_dim, q_dim = int64_t{c.num_heads} * hd,
                  kv_dim = int64_t{lc.num_kv_heads} * hd;
    GEMMA4_RETURN_IF_ERROR(w.Vector(p + "input_layernorm.weight", H, &lw.input_norm));
    GEMMA4_RETURN_IF_ERROR(
        w.Vector(p + "post_attention_layernorm.weight", H, &lw.post_attention_norm));
    GEMMA4_RETURN_IF_ERROR(w.Vector(p + "pre_feedforward_layernorm.weight", H, &lw.pre_ffn_norm));
    GEMMA4_RETURN_IF_ERROR(w.Vector(p + "post_feedforward_layernorm.weight", H, &lw.post_ffn_norm));
    GEMMA4_RETURN_IF_ERROR(w.Tensor(p + "self_attn.q_proj.weight", {q_dim, H}, &lw.q_proj));
    GEMMA4_RETURN_IF_ERROR(w.Vector(p + "self_attn.q_norm.weight", hd, &lw.q_norm));
    GEMMA4_RETURN_IF_ERROR(w.Tensor(p + "self_attn.o_proj.weight", {H, q_dim}, &lw.o_proj));
    // KV-shared layers read their source's cache; transformers ignores their k/v weights.
    if (!lc.kv_shared) {
      GEMMA4_RETURN_IF_ERROR(w.Tensor(p + "self_attn.k_proj.weight", {kv_dim, H}, &lw.k_proj));
      GEMMA4_RETURN_IF_ERROR(w.Vector(p + "self_attn.k_norm.weight", hd, &lw.k_norm));
      if (!lc.k_eq_v) {
        GEMMA4_RETURN_IF_ERROR(w.Tensor(p + "self_attn.v_proj.weight", {kv_dim, H}, &lw.v_proj));
      }
    }
    const int64_t I = lc.mlp_width;
    GEMMA4_RETURN_IF_ERROR(w.Tensor(p + "mlp.gate_proj.weight", {I, H}, &lw.gate_proj));
    GEMMA4_RETURN_IF_ERROR(w.Tensor(p + "mlp.up_proj.weight", {I, H}, &lw.up_proj));
    GEMMA4_RETURN_IF_ERROR(w.Tensor(p + "mlp.down_proj.weight", {H, I}, &lw.down_proj));
    if (c.moe) {
      const int64_t E = c.num_experts, Ie = c.moe_width;
      GEMMA4_RETURN_IF_ERROR(w.Tensor(p + "router.proj.weight", {E, H}, &lw.router_proj));
      GEMMA4_RETURN_IF_ERROR(w.Vector(p + "router.scale", H, &lw.router_scale));
      GEMMA4_RETURN_IF_ERROR(w.Vector(p + "router.per_expert_scale", E, &lw.per_expert_scale));
      GEMMA4_RETURN_IF_ERROR(
          w.Tensor(p + "experts.gate_up_proj", {E, 2 * Ie, H}, &lw.experts_gate_up));
      GEMMA4_RETURN_IF_ERROR(w.Tensor(p + "experts.down_proj", {E, H, Ie}, &lw.experts_down));
      GEMMA4_RETURN_IF_ERROR(
          w.Vector(p + "pre_feedforward_layernorm_2.weight", H, &lw.pre_ffn_norm_2));
      GEMMA4_RETURN_IF_ERROR(
          w.Vector(p + "post_feedforward_layernorm_1.weight", H, &lw.post_ffn_norm_1));
      GEMMA4_RETURN_IF_ERROR(
          w.Vector(p + "post_feedforward_layernorm_2.weight", H, &lw.post_ffn_norm_2));
    }
    if (P > 0) {
      GEMMA4_RETURN_IF_ERROR(w.Tensor(p + "per_layer_input_gate.weight", {P, H}, &lw.ple_gate));
      GEMMA4_RETURN_IF_ERROR(
          w.Tensor(p + "per_layer_projection.weight", {H, P}, &lw.ple_projection));
      GEMMA4_RETURN_IF_ERROR(
          w.Vector(p + "post_per_layer_input_norm.weight", H, &lw.post_ple_norm));
    }
    // layer_scalar is a persistent buffer of shape [1]; absent means 1.
    if (w.Has(p + "layer_scalar")) {
      std::vector<float> s;
      GEMMA4_RETURN_IF_ERROR(w.Vector(p + "layer_scalar", 1, &s));
      lw.layer_scalar = s[0];
    }
  }
  // torch.tensor(sqrt(H)) is a float32 buffer: the double sqrt rounded to f32.
  embed_scale_ = static_cast<float>(std::sqrt(static_cast<double>(H)));
  return OkStatus();
}

uint64_t Model::DecodeBytesPerToken() const {
  const ModelConfig& c = config_;
  const ModelWeights& w = weights_;
  auto row_bytes = [](const TensorView& t) { return t.data ? RowBytes(t.dtype, t.cols()) : 0; };
  uint64_t total =
      w.embed.nbytes + row_bytes(w.embed) + row_bytes(w.ple_embed) + w.ple_model_projection.nbytes;
  for (const LayerWeights& l : w.layers) {
    for (const TensorView* t :
         {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj,
          &l.router_proj, &l.ple_gate, &l.ple_projection}) {
      total += t->nbytes;
    }
    if (c.moe) {
      total += (l.experts_gate_up.nbytes + l.experts_down.nbytes) * c.top_k_experts / c.num_experts;
    }
  }
  return total;
}

}  // namespace gemma4
