// Gemma 4 assistant drafters (Gemma4AssistantForCausalLM, the "-assistant" checkpoints; GGUF
// architecture "gemma4-assistant"), which draft tokens for speculative decoding.
//
// A drafter has no KV cache of its own: every layer is KV-shared with the target. Its queries
// attend to the keys/values of the target's last non-shared layer of the same attention type,
// as they lie in the target's cache. One drafting step at position P (the position of the
// token drafted from, not yet in the target's cache) takes
//   x = pre_projection(concat(target_embed(token) * target_embed_scale, h))   [B + B -> D]
// where h [B] is the target's final-normed hidden state at P - 1 (first step) or the previous
// step's output, runs the decoder layers at the constant position P against target keys
// [0, P) (full layers) or the last W + 1 of them (sliding layers, W = sliding_window, as
// transformers' flipped bidirectional window mask keeps), then
//   logits = lm_head(norm(x)) (tied embedding, no soft-capping; or the centroid-masked head)
//   h'     = post_projection(norm(x))                                         [D -> B]
// This is transformers' SinglePositionMultiTokenCandidateGenerator step.
#ifndef GEMMA4_SRC_MODEL_DRAFTER_H_
#define GEMMA4_SRC_MODEL_DRAFTER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/tensor.h"
#include "formats/checkpoint.h"
#include "formats/gguf.h"
#include "gemma4/status.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/model.h"

namespace gemma4 {

struct DrafterConfig {
  // The drafter's decoder (hidden size D). Every layer reads the target's cache: kv_shared is
  // set on all of them and kv_source is unused.
  ModelConfig text;
  int backbone_hidden_size = 0;  // B: the target's hidden size
  // E2B/E4B drafters: logits only for the tokens of the top centroid_top_k of num_centroids
  // clusters, the rest at (smallest computed logit - 1).
  bool ordered_embeddings = false;
  int num_centroids = 0;
  int centroid_top_k = 0;
};

struct DrafterLayerWeights {
  std::vector<float> input_norm, post_attention_norm, pre_ffn_norm, post_ffn_norm;  // [D]
  std::vector<float> q_norm;                                                        // [hd]
  TensorView q_proj;                                                                // [nH*hd, D]
  TensorView o_proj;                                                                // [D, nH*hd]
  TensorView gate_proj, up_proj;                                                    // [I, D]
  TensorView down_proj;                                                             // [D, I]
  float layer_scalar = 1.0f;
};

class Drafter {
 public:
  // path: a Hugging Face checkpoint directory (config.json + safetensors) or a GGUF file as
  // llama.cpp's converter writes it (architecture "gemma4-assistant").
  static StatusOr<std::unique_ptr<Drafter>> Load(const std::string& path);

  const DrafterConfig& config() const { return config_; }
  // FailedPrecondition naming the mismatch unless this drafter can read `target`'s cache:
  // backbone size == target hidden size, same vocabulary, and for each attention type the
  // drafter uses, a non-shared target layer of that type with the same head dim and KV heads.
  Status CheckCompatible(const ModelConfig& target) const;

  // One drafting step (see the file comment). `target_state` holds the target's cache for
  // positions [0, position) (it may hold more; they are not read). h: [B] in, the next step's
  // h out. logits: [V].
  Status Step(const LoadedModel& target, const InferenceState& target_state, int32_t token,
              int64_t position, std::vector<float>* h, std::vector<float>* logits,
              ThreadPool* pool) const;

  // Bytes of the drafter's weights.
  uint64_t weight_bytes() const { return weight_bytes_; }
  // What the drafter keeps resident while drafting (the memory plan's `drafter` item): its
  // mapped weights counted whole (each step reads every matrix but the embedding rows it
  // selects), the norms widened to f32, the token ordering, and one step's buffers (the
  // logits [V], the centroid scores [C] and the rows and vectors of width D, B and the MLP).
  uint64_t ResidentBytes() const;

 private:
  Drafter() = default;
  Status LoadTensors();
  // The target layer whose cache a drafter layer of this type reads, or -1.
  static int TargetSourceLayer(const ModelConfig& target, bool sliding);

  DrafterConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<gguf::File> gguf_;
  std::vector<DrafterLayerWeights> layers_;
  TensorView embed_;                     // [V, D] tied LM head
  TensorView pre_projection_;            // [D, 2B]
  TensorView post_projection_;           // [B, D]
  TensorView centroids_;                 // [C, D] (ordered embeddings)
  std::vector<int32_t> token_ordering_;  // [V]: cluster c holds ids [c*V/C, (c+1)*V/C) of it
  std::vector<float> final_norm_;        // [D]
  uint64_t weight_bytes_ = 0;
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_DRAFTER_H_
