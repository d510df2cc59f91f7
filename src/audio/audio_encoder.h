// Gemma 4's audio tower (Gemma4AudioModel, E2B/E4B) and its projector into the language model
// (embed_audio), as transformers 5.17 computes them in float32: two stride-2 3x3 convolutions
// with channel LayerNorm and ReLU, an input projection, conformer layers (half-step feed
// forwards, chunked local self-attention with relative position bias and a logit softcap, a
// light causal depthwise convolution), output_proj, then RMSNorm (no weight) and a linear
// projection to the text hidden size.
//
// One Encode call takes the features of one clip of at most 30 s (the feature extractor's
// max_length); callers split longer audio into 30 s pieces and encode each piece separately.
#ifndef GEMMA4_SRC_AUDIO_AUDIO_ENCODER_H_
#define GEMMA4_SRC_AUDIO_AUDIO_ENCODER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "audio/audio_features.h"
#include "base/tensor.h"
#include "formats/mmproj.h"
#include "gemma4/status.h"
#include "model/config.h"
#include "model/model.h"
#include "model/tower_reader.h"
#include "runtime/thread_pool.h"

namespace gemma4::audio {

// How the chunked attention applies its mask.
enum class AudioMaskMode {
  // The mask as the tower intends it (and as transformers applies it with sdpa/flash/flex): a
  // query attends to valid frames 0..context_left-2 steps back (and context_right ahead).
  kIntended,
  // transformers 5.17 with attn_implementation="eager" (huggingface/transformers#48818): the
  // eager float mask is applied through logical_not(), which inverts it. Allowed positions get
  // the invalid logit and the others (including padding frames inside the sequence) stay.
  // Only for comparing against eager reference outputs.
  kHfEagerInverted,
};

struct AudioLayerWeights {
  struct FeedForward {
    std::vector<float> pre_norm, post_norm;  // [H]
    ClippableLinear ffw1;                    // [4H, H]
    ClippableLinear ffw2;                    // [H, 4H]
  };
  FeedForward ff1, ff2;
  std::vector<float> norm_pre_attn, norm_post_attn, norm_out;  // [H]
  ClippableLinear q_proj, k_proj, v_proj, post;                // [H, H]
  TensorView relative_k_proj;                                  // [H, H]
  std::vector<float> per_dim_softplus;                         // [hd]: softplus(per_dim_scale)
  std::vector<float> lconv_pre_norm, conv_norm;                // [H]
  ClippableLinear linear_start;                                // [2H, H]
  ClippableLinear linear_end;                                  // [H, H]
  std::vector<float> depthwise;                                // [H, kernel]
  std::vector<float> rel_keys;  // [P, H]: relative_k_proj(position table)
};

class AudioEncoder {
 public:
  // The audio tower of a Hugging Face Gemma4ForConditionalGeneration checkpoint
  // (model.audio_tower.*, model.embed_audio.*) with its config.json audio_config and the feature
  // extractor settings beside it (processor_config.json / preprocessor_config.json).
  // FailedPrecondition for a checkpoint without audio_config, NotFound when its weights are
  // missing, Unimplemented for GGUF models (their audio tower is in the mmproj: LoadMmproj).
  // `pool`, when given, packs the 16-bit weight panels at load (not kept).
  static StatusOr<std::unique_ptr<AudioEncoder>> Load(const LoadedModel& model,
                                                      ThreadPool* pool = nullptr);
  // The audio tower of a llama.cpp mmproj GGUF (projector type gemma4a, as llama.cpp's
  // converter writes it: a.* and mm.a.input_projection tensors, clamp scalars as 1-element
  // tensors, per_dim_scale stored softplus-applied, the depthwise convolution as [H, kernel])
  // for a text model of hidden size `text_hidden`. The dimensions come from the metadata and
  // the tensor shapes; what the format does not carry (chunk size, context, logit cap, residual
  // weight, gradient clipping, rms_norm_eps) takes Gemma4AudioConfig's defaults, which every
  // released tower uses, and the feature extractor its defaults with the file's mel bins.
  // NotFound when the file has no audio tower (a vision-only mmproj), InvalidArgument when its
  // projector does not output `text_hidden` values.
  static StatusOr<std::unique_ptr<AudioEncoder>> LoadMmproj(const std::string& path,
                                                            int text_hidden,
                                                            ThreadPool* pool = nullptr);

  const AudioConfig& config() const { return config_; }
  const FeatureConfig& feature_config() const { return features_; }
  int text_hidden_size() const { return text_hidden_; }

  void set_mask_mode(AudioMaskMode mode) { mask_mode_ = mode; }
  AudioMaskMode mask_mode() const { return mask_mode_; }

  // Soft tokens of one clip: *soft_tokens = [n_valid, text hidden], row-major, where n_valid is
  // the number of valid frames after the 4x subsampling (AudioSoftTokenCount of the clip).
  // Features of more than 30 s (3000 frames at the default settings) are refused. A non-null
  // `cancel` is read before each conformer layer: once it holds true the call stops there and
  // returns CancelledError (Session::Cancel during a clip's encoding).
  Status Encode(const AudioFeatures& features, ThreadPool* pool, std::vector<float>* soft_tokens,
                const std::atomic<bool>* cancel = nullptr) const;
  // The bytes of each huge-page buffer (runtime/huge_pages.h HugePageVector) Encode holds at
  // its peak, the conformer layers, for `positions` positions after the subsampling under
  // `config`: the residual and ConformerScratch. (The subsampling's buffers are freed before.)
  // The memory plan rounds each as the allocator does. Kept beside Encode: a buffer added there
  // belongs here too.
  static std::vector<uint64_t> HugePageBuffers(const AudioConfig& config, int64_t positions);

 private:
  AudioEncoder() = default;
  // Shared by both loaders, after config_, features_ and text_hidden_ are set: `find` maps a
  // Hugging Face tensor name to the stored tensor. `per_dim_applied`: per_dim_scale holds
  // softplus(per_dim_scale) (mmproj files) rather than the raw parameter.
  ThreadPool* load_pool_ = nullptr;  // only while loading (LoadTensors)
  Status LoadTensors(const std::function<const TensorView*(const std::string&)>& find,
                     const std::string& source, bool per_dim_applied);

  AudioConfig config_;
  FeatureConfig features_;
  AudioMaskMode mask_mode_ = AudioMaskMode::kIntended;
  int text_hidden_ = 0;
  int64_t freq_out_ = 0;        // mel bins after the two convolutions
  std::vector<float> conv0_;    // [C0, 9]
  std::vector<float> norm0_;    // [C0]
  ClippableLinear conv1_;       // [C1, C0 * 9], never clipped
  std::vector<float> norm1_;    // [C1]
  ClippableLinear input_proj_;  // [H, freq_out * C1], never clipped
  std::vector<AudioLayerWeights> layers_;
  ClippableLinear output_proj_;                // [O, H], never clipped
  std::vector<float> output_bias_;             // [O]
  ClippableLinear projection_;                 // [text H, O], never clipped
  std::unique_ptr<mmproj::TowerFile> mmproj_;  // the mapping the views point into (mmproj only)
  const Checkpoint* checkpoint_ = nullptr;     // the checkpoint the views point into (if any)
};

// One audio tensor to write: its Hugging Face shape (scalars: {}) and a function filling all
// its values in that layout (raw per_dim_scale, depthwise convolution [H, 1, kernel]).
struct AudioTensor {
  std::vector<int64_t> shape;
  std::function<void(float* values)> fill;
};
// The tensor of a Hugging Face name (model.audio_tower.*, model.embed_audio.*), or nullopt when
// the tower has none (clamp bounds without use_clipped_linears).
using AudioTensorSource = std::function<std::optional<AudioTensor>(const std::string& hf_name)>;

// Writes an audio tower as a llama.cpp mmproj GGUF (projector gemma4a, the names, layouts and
// transforms llama.cpp's converter writes): matrices in `matrix_type` (F32, F16, BF16 or Q8_0;
// Q8_0 rows not a multiple of 32 fall back to F16, as in the converter), the subsampling
// convolutions and input projection, the depthwise convolution, vectors and clamp scalars F32.
// InvalidArgument for a tower whose settings the format cannot carry (non-default chunking,
// context, logit cap, residual weight, gradient clipping, invalid logit or rms_norm_eps).
//
// With `add_to` set (an existing mmproj, e.g. one WriteVisionMmproj wrote, or the same path),
// the file written holds that file's metadata and tensors plus the audio tower, like the
// converter's combined E2B/E4B files (clip.has_vision_encoder and clip.has_audio_encoder); an
// audio tower already in it is replaced. The file is written beside `path` and renamed over it.
Status WriteAudioMmproj(const AudioConfig& config, int num_mel_bins, int text_hidden,
                        const AudioTensorSource& source, DType matrix_type, const std::string& path,
                        ThreadPool* pool, const std::string& add_to = "");
// The tower of a Hugging Face checkpoint.
Status WriteAudioMmproj(const LoadedModel& model, DType matrix_type, const std::string& path,
                        ThreadPool* pool, const std::string& add_to = "");

// Random weights for a tower of this configuration (benchmarks at the released shapes, e.g.
// `gemma4 synth --mmproj`): uniform values scaled by 1/sqrt(fan-in), norms around 1, wide clip
// bounds; deterministic in `seed`.
AudioTensorSource SyntheticAudioTensors(const AudioConfig& config, int num_mel_bins,
                                        int text_hidden, uint64_t seed);

// A whole clip of 16 kHz mono samples (any length): split into 30 s pieces (the feature
// extractor's limit), each turned into features and encoded in order. `pieces` receives one
// [rows, text hidden] block per piece that yields soft tokens (a tail of <= 160 samples gives
// none); each piece is placed as its own <|audio> ... <audio|> run.
// `cancel` as in AudioEncoder::Encode (also read between pieces).
Status EncodeClip(const AudioEncoder& encoder, const float* samples, int64_t n, ThreadPool* pool,
                  std::vector<std::vector<float>>* pieces,
                  const std::atomic<bool>* cancel = nullptr);

}  // namespace gemma4::audio

#endif  // GEMMA4_SRC_AUDIO_AUDIO_ENCODER_H_
