// The loaded model: configuration, the memory-mapped checkpoint and typed views of every text
// weight, validated against the configuration. Immutable after Load; any number of
// InferenceStates may run over one LoadedModel concurrently.
#ifndef GEMMA4_SRC_MODEL_MODEL_H_
#define GEMMA4_SRC_MODEL_MODEL_H_

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/tensor.h"
#include "formats/checkpoint.h"
#include "formats/gguf.h"
#include "gemma4/status.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "runtime/thread_pool.h"

namespace gemma4 {

// Small, precision-sensitive tensors (norms, scales) are kept as f32 vectors; large matrices
// stay typed views into the mapping.
struct LayerWeights {
  std::vector<float> input_norm, post_attention_norm;  // [H]
  std::vector<float> pre_ffn_norm, post_ffn_norm;      // [H]
  TensorView q_proj;                                   // [nH*hd, H]
  TensorView k_proj, v_proj;                           // [nKV*hd, H]; v absent if K=V
  TensorView o_proj;                                   // [H, nH*hd]
  std::vector<float> q_norm, k_norm;                   // [hd]
  TensorView gate_proj, up_proj;                       // [I, H]
  TensorView down_proj;                                // [H, I]
  // MoE (26B-A4B): router and experts beside the dense MLP.
  TensorView router_proj;               // [E, H]
  std::vector<float> router_scale;      // [H]
  std::vector<float> per_expert_scale;  // [E]
  TensorView experts_gate_up;           // [E, 2*Ie, H]
  // Ollama's blobs store the expert gate and up projections apart; then experts_gate_up is
  // empty and these hold them.
  TensorView experts_gate;                                              // [E, Ie, H]
  TensorView experts_up;                                                // [E, Ie, H]
  TensorView experts_down;                                              // [E, H, Ie]
  std::vector<float> pre_ffn_norm_2, post_ffn_norm_1, post_ffn_norm_2;  // [H]
  // Per-Layer Embeddings.
  TensorView ple_gate;               // [P, H]
  TensorView ple_projection;         // [H, P]
  std::vector<float> post_ple_norm;  // [H]
  float layer_scalar = 1.0f;
};

struct ModelWeights {
  TensorView embed;                        // [V, H]
  TensorView lm_head;                      // [V, H]: embed itself unless untied
  TensorView ple_embed;                    // [V_ple, L*P]
  TensorView ple_model_projection;         // [L*P, H]
  std::vector<float> ple_projection_norm;  // [P]
  std::vector<float> final_norm;           // [H]
  std::vector<LayerWeights> layers;
};

// A text weight the model needs: Hugging Face name without the model prefix, row-major shape.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  bool optional = false;  // layer_scalar (absent means 1)
};
// Every text weight of a model with this configuration, in load order.
// split_expert_gate_up: the MoE expert gate and up projections as two tensors (Ollama's
// GGUFs) instead of Hugging Face's fused gate_up_proj.
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config,
                                        bool split_expert_gate_up = false);

// What loading a model's text weights keeps resident, known from the files' headers alone
// (LoadedModel::PlanWeights reads no weight).
struct WeightPlan {
  ModelConfig config;
  std::string source_path;
  std::string text_prefix;  // as LoadedModel::text_prefix
  bool gguf = false;
  int64_t num_parameters = 0;  // as LoadedModel::num_parameters
  uint64_t weight_bytes = 0;   // as LoadedModel::weight_bytes
  // Matrices copied into the anonymous arena at load (repacked for the integer kernels, or
  // moved beside them): the arena's size, rounded as the kernel maps it (2 MiB pages where
  // transparent huge pages are on).
  uint64_t repacked = 0;
  // Matrices read in place from the file mapping by the forward pass (float models, or
  // quantized types without repacked kernels): resident once touched, and a forward pass
  // touches all of them (MoE experts: as routed, so at most this).
  uint64_t mapped = 0;
  // Norms, scales and scalars widened to f32 on the heap.
  uint64_t converted = 0;
  // The widest K (columns) of the BF16 matrices the forward pass multiplies (mapped or moved
  // into the arena: a BF16 checkpoint's every matrix, a GGUF file's BF16 per-layer-input
  // matrices), and of the per-layer-input gate and projection alone; 0: none is BF16. Prefill
  // splits the activations of BF16 matrices into bf16 parts where the CPU has bf16 tiles
  // (ops::MatMul), in buffers sized by K (ForwardScratchBytes).
  int64_t bf16_k = 0, bf16_ple_k = 0;
  // The per-layer-embedding table, read one row per token with pread: page cache, never
  // this process's resident set (reported, not counted).
  uint64_t ple_table = 0;
  // LoadedModel::DefaultKvType of the loaded model.
  KvType default_kv_type = KvType::kF32;
  // A checkpoint's own towers (GGUF towers are planned from the file by the caller): tensor
  // bytes, and the widths for the activation estimate.
  uint64_t vision_tower = 0, audio_tower = 0;
  int64_t vision_hidden = 0, vision_ffn = 0, vision_head_dim = 0, audio_hidden = 0;
};

class LoadedModel {
 public:
  // The plan of Load(path) on this machine (the kernels available decide which matrices are
  // repacked), from the headers: no weight is read.
  static StatusOr<WeightPlan> PlanWeights(const std::string& path);
  // path: checkpoint directory, .safetensors file, safetensors index, or .gguf file.
  // progress (may be empty) gets the fraction of layers loaded; returning false cancels.
  // pool (may be null) repacks quantized matrices in parallel; it is not kept.
  static StatusOr<std::unique_ptr<LoadedModel>> Load(const std::string& path,
                                                     std::function<bool(float)> progress = nullptr,
                                                     ThreadPool* pool = nullptr);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  // Where the text weights live: "model.language_model." / "model." in safetensors
  // checkpoints, "" in GGUF files (names are mapped, see gguf_model.h).
  const std::string& text_prefix() const { return prefix_; }
  bool is_gguf() const { return gguf_ != nullptr; }
  // The GGUF file or checkpoint directory the model was loaded from.
  const std::string& source_path() const;
  // Whether a GGUF model file holds a tensor of this (stored) name, e.g. the inline towers of
  // an Ollama blob.
  bool HasGgufTensor(const std::string& name) const {
    return gguf_ != nullptr && gguf_tensors_.count(name) > 0;
  }
  // The Hugging Face checkpoint the model came from (its encoders load from it too); null for
  // a GGUF file.
  const Checkpoint* checkpoint() const { return checkpoint_.get(); }
  // Parameters and bytes of the text weights the forward pass uses.
  int64_t num_parameters() const { return num_parameters_; }
  uint64_t weight_bytes() const { return weight_bytes_; }
  float embed_scale() const { return embed_scale_; }
  // The text weights as stored, by Hugging Face name (without prefix), in load order.
  const std::vector<std::pair<std::string, TensorView>>& tensors() const { return tensors_; }
  // The matrices every generated token reads whole: the LM head (tied embedding), the PLE model
  // projection and each layer's dense matrices (MoE experts, of which a token reads only the
  // top k, excluded).
  std::vector<const TensorView*> PerTokenMatrices() const;
  // Weight bytes one generated token reads: PerTokenMatrices, top-k of the experts, and one row
  // each of the embedding and PLE tables. KV cache excluded.
  uint64_t DecodeBytesPerToken() const;
  // The KV cache type when none is asked for: f16 where the layers' matrices are
  // block-quantized (their rounding dwarfs the cache's), f32 for float weights, whose forward
  // pass stays exact.
  KvType DefaultKvType() const;
  // A hash of every text tensor's name, type, shape and sampled data (see model.cc), computed
  // at load: saved session states record it and are refused by a model with other weights.
  uint64_t weights_fingerprint() const { return weights_fingerprint_; }
  // DataLoss when a mapped weight file shrank or was modified since load (a forward pass would
  // die of SIGBUS or compute with other weights). Each forward pass checks first.
  Status CheckFilesUnchanged() const {
    return gguf_ != nullptr ? gguf_->CheckUnchanged() : checkpoint_->CheckFilesUnchanged();
  }

 private:
  LoadedModel() = default;
  Status LoadWeights(ThreadPool* pool);
  // The tensor holding the text weight with Hugging Face name `hf_name` (without prefix).
  const TensorView* FindWeight(const std::string& hf_name) const;
  // The name a text weight (Hugging Face name without the model prefix) is stored under.
  std::string StoredName(const std::string& hf_name) const;

  static StatusOr<std::unique_ptr<LoadedModel>> Open(const std::string& path, WeightPlan* plan_only,
                                                     ThreadPool* pool,
                                                     std::function<bool(float)> progress);

  std::function<bool(float)> progress_;  // during Load only
  // Set by PlanWeights: LoadWeights validates and places every tensor, fills this and stops
  // before reading any weight.
  WeightPlan* plan_only_ = nullptr;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<gguf::File> gguf_;
  std::unordered_map<std::string, const TensorView*> gguf_tensors_;
  std::vector<std::pair<std::string, TensorView>> tensors_;
  // Load-time repacked copies of Q4_0 matrices (DType::kQ4_0R); the views in weights_ point
  // here and the file pages they came from are released.
  std::unique_ptr<AnonymousMemory> repacked_;  // every repacked matrix, 64-byte aligned
  ModelConfig config_;
  ModelWeights weights_;
  std::string prefix_;
  int64_t num_parameters_ = 0;
  uint64_t weight_bytes_ = 0;
  float embed_scale_ = 1.0f;
  uint64_t weights_fingerprint_ = 0;
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_MODEL_H_
