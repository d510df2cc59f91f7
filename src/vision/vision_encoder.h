// Gemma 4's vision tower (Gemma4VisionModel) and its projector into the language model
// (embed_vision), as transformers 5.17 computes them in float32: patch embedding with 2-D
// position tables, a bidirectional ViT with axial 2-D RoPE and optionally clipped linears,
// 3x3 average pooling by patch position, sqrt(hidden) scaling, optional standardization, then
// RMSNorm (no weight) and a linear projection to the text hidden size.
#ifndef GEMMA4_SRC_VISION_VISION_ENCODER_H_
#define GEMMA4_SRC_VISION_VISION_ENCODER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/tensor.h"
#include "formats/mmproj.h"
#include "gemma4/status.h"
#include "model/config.h"
#include "model/model.h"
#include "model/tower_reader.h"
#include "runtime/thread_pool.h"
#include "vision/image_preprocess.h"

namespace gemma4::vision {

struct VisionLayerWeights {
  std::vector<float> input_norm, post_attention_norm, pre_ffn_norm, post_ffn_norm;  // [Hv]
  std::vector<float> q_norm, k_norm;                                                // [hd]
  ClippableLinear q_proj, k_proj, v_proj;  // [heads * hd, Hv]
  ClippableLinear o_proj;                  // [Hv, heads * hd]
  ClippableLinear gate_proj, up_proj;      // [I, Hv]
  ClippableLinear down_proj;               // [Hv, I]
};

class VisionEncoder {
 public:
  // The vision tower of a Hugging Face Gemma4ForConditionalGeneration checkpoint
  // (model.vision_tower.*, model.embed_vision.*) with its config.json vision_config and the
  // image processor settings beside it. NotFound names what is missing for a text-only
  // checkpoint.
  // `pool`, when given, packs the 16-bit weight panels at load (not kept).
  static StatusOr<std::unique_ptr<VisionEncoder>> Load(const LoadedModel& model,
                                                       ThreadPool* pool = nullptr);
  // The vision tower of a llama.cpp mmproj GGUF (projector type gemma4v, as llama.cpp's
  // converter writes it: v.* tensors, mm.input_projection, clamp scalars as 1-element
  // tensors, the patch embedding as a [Hv, 3, p, p] convolution) for a text model of hidden
  // size `text_hidden`. NotFound when the file has no vision tower.
  static StatusOr<std::unique_ptr<VisionEncoder>> LoadMmproj(const std::string& path,
                                                             int text_hidden,
                                                             ThreadPool* pool = nullptr);

  const VisionConfig& config() const { return config_; }
  int text_hidden_size() const { return text_hidden_; }

  // Soft tokens of one image: out = [patches / pooling^2, text hidden], row-major. A non-null
  // `cancel` is read before each encoder layer: once it holds true the call stops there and
  // returns CancelledError (Session::Cancel during an image's encoding).
  Status Encode(const ImagePatches& image, ThreadPool* pool, std::vector<float>* out,
                const std::atomic<bool>* cancel = nullptr) const;
  // The bytes of each huge-page buffer (runtime/huge_pages.h HugePageVector) Encode holds at
  // its peak, the pooling step, for an image of `patches` patches under `config`: the ones it
  // declares (the residual, the RoPE tables, normed, q, k, v, the attention output, tmp, the MLP
  // slices, pooled) and ops::DenseAttention's packed keys and values. The memory plan rounds
  // each as the allocator does. Kept beside Encode: a buffer added there belongs here too.
  static std::vector<uint64_t> HugePageBuffers(const VisionConfig& config, int64_t patches);

 private:
  VisionEncoder() = default;
  // Shared by both loaders: `find` maps a Hugging Face tensor name to the stored tensor.
  ThreadPool* load_pool_ = nullptr;  // only while loading (LoadTensors)
  Status LoadTensors(const std::function<const TensorView*(const std::string&)>& find,
                     const std::string& source);

  VisionConfig config_;
  int text_hidden_ = 0;
  // [Hv, 3 * patch^2], never clipped; an mmproj's conv patch embedding is held only as its
  // packed f32 panels (reordered to the patches' (row, column, channel) order)
  ClippableLinear input_proj_;
  std::vector<float> position_table_;  // [2, position_embedding_size, Hv]
  std::vector<VisionLayerWeights> layers_;
  std::vector<float> std_bias_, std_scale_;    // [Hv] when standardize
  ClippableLinear projection_;                 // [H, Hv], never clipped
  std::vector<float> inv_freq_;                // [head_dim / 4]
  std::unique_ptr<mmproj::TowerFile> mmproj_;  // the mapping the views point into (mmproj only)
  const Checkpoint* checkpoint_ = nullptr;     // the checkpoint the views point into (if any)
};

// One vision tensor to write: its Hugging Face shape (scalars: {}) and a function filling all
// its values in that layout.
struct VisionTensor {
  std::vector<int64_t> shape;
  std::function<void(float* values)> fill;
};
// The tensor of a Hugging Face name (model.vision_tower.*, model.embed_vision.*), or nullopt
// when the tower has none (optional clamp bounds, std buffers).
using VisionTensorSource = std::function<std::optional<VisionTensor>(const std::string& hf_name)>;

// Writes a vision tower as a llama.cpp mmproj GGUF (projector gemma4v, the names and layouts
// llama.cpp's converter writes): matrices in `matrix_type` (F32, F16, BF16 or Q8_0: never
// below 8 bits), the patch embedding, position table and vectors F32. Rows are converted on
// `pool`.
Status WriteVisionMmproj(const VisionConfig& config, int text_hidden,
                         const VisionTensorSource& source, DType matrix_type,
                         const std::string& path, ThreadPool* pool);
// The tower of a Hugging Face checkpoint (`gemma4 quantize`).
Status WriteVisionMmproj(const LoadedModel& model, DType matrix_type, const std::string& path,
                         ThreadPool* pool);
// Random weights with the released shapes (benchmarks, memory tests): matrices uniform with
// variance 1/fan_in, norms near 1, clamp bounds +-10, std buffers near 0 / 1.
VisionTensorSource SyntheticVisionTensors(const VisionConfig& config, int text_hidden,
                                          uint64_t seed);
// The released towers: "e2b"/"e4b" (768 wide, 16 layers, clipped linears) and
// "26b-a4b"/"31b" (1152 wide, 27 layers, head_dim 72, standardize).
StatusOr<VisionConfig> ReleasedVisionConfig(const std::string& variant);

}  // namespace gemma4::vision

#endif  // GEMMA4_SRC_VISION_VISION_ENCODER_H_
