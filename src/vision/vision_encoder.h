// Gemma 4's vision tower (Gemma4VisionModel) and its projector into the language model
// (embed_vision), as transformers 5.17 computes them in float32: patch embedding with 2-D
// position tables, a bidirectional ViT with axial 2-D RoPE and optionally clipped linears,
// 3x3 average pooling by patch position, sqrt(hidden) scaling, optional standardization, then
// RMSNorm (no weight) and a linear projection to the text hidden size.
#ifndef GEMMA4_SRC_VISION_VISION_ENCODER_H_
#define GEMMA4_SRC_VISION_VISION_ENCODER_H_

#include <memory>
#include <string>
#include <vector>

#include "gemma4/status.h"
#include "model/config.h"
#include "model/model.h"
#include "model/tensor.h"
#include "runtime/thread_pool.h"
#include "vision/image_preprocess.h"

namespace gemma4::vision {

// A linear layer whose input and output may be clamped to learned bounds
// (Gemma4ClippableLinear; the bounds are +-inf when use_clipped_linears is off).
struct ClippedLinear {
  TensorView weight;  // [out, in]
  bool clipped = false;
  float input_min = 0, input_max = 0, output_min = 0, output_max = 0;
};

struct VisionLayerWeights {
  std::vector<float> input_norm, post_attention_norm, pre_ffn_norm, post_ffn_norm;  // [Hv]
  std::vector<float> q_norm, k_norm;                                                // [hd]
  ClippedLinear q_proj, k_proj, v_proj;  // [heads * hd, Hv]
  ClippedLinear o_proj;                  // [Hv, heads * hd]
  ClippedLinear gate_proj, up_proj;      // [I, Hv]
  ClippedLinear down_proj;               // [Hv, I]
};

class VisionEncoder {
 public:
  // The vision tower of a Hugging Face Gemma4ForConditionalGeneration checkpoint
  // (model.vision_tower.*, model.embed_vision.*) with its config.json vision_config and the
  // image processor settings beside it. NotFound names what is missing for a text-only
  // checkpoint.
  static StatusOr<std::unique_ptr<VisionEncoder>> Load(const LoadedModel& model);

  const VisionConfig& config() const { return config_; }
  int text_hidden_size() const { return text_hidden_; }

  // Soft tokens of one image: out = [patches / pooling^2, text hidden], row-major.
  Status Encode(const ImagePatches& image, ThreadPool* pool, std::vector<float>* out) const;

 private:
  VisionEncoder() = default;

  VisionConfig config_;
  int text_hidden_ = 0;
  TensorView input_proj_;              // [Hv, 3 * patch^2]
  std::vector<float> position_table_;  // [2, position_embedding_size, Hv]
  std::vector<VisionLayerWeights> layers_;
  std::vector<float> std_bias_, std_scale_;  // [Hv] when standardize
  TensorView projection_;                    // [H, Hv]
  std::vector<float> inv_freq_;              // [head_dim / 4]
};

}  // namespace gemma4::vision

#endif  // GEMMA4_SRC_VISION_VISION_ENCODER_H_
