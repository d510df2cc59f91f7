#include "audio/audio_encoder.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <new>
#include <utility>

#include "base/json.h"
#include "formats/checkpoint.h"
#include "formats/gguf.h"
#include "formats/mapped_file.h"
#include "formats/mmproj.h"
#include "model/tower_reader.h"
#include "ops/ops.h"
#include "quant/quant.h"
#include "runtime/huge_pages.h"
#include "runtime/phase_profile.h"

namespace gemma4::audio {

namespace {

constexpr char kTower[] = "model.audio_tower.";
constexpr char kProjector[] = "model.embed_audio.embedding_projection.weight";

// Conv2d(kernel 3, stride 2, padding 1) output length.
int64_t ConvOut(int64_t n) { return (n - 1) / 2 + 1; }

// F.softplus (beta 1, threshold 20).
float Softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

// nn.LayerNorm over the last `n` values without bias, in place, then ReLU. The sums run in
// double over four interleaved partial sums: one chain of n dependent double adds (128
// channels, 96000 times for the layer-0 rows of a 30 s clip) was most of the subsampling's
// layer-0 time, and the order of a double sum of floats only moves the last bits of a double.
void LayerNormRelu(float* x, int64_t n, const float* weight, float eps) {
  double part[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t i4 = 0;
  for (; i4 + 4 <= n; i4 += 4) {
    for (int j = 0; j < 4; ++j) part[j] += x[i4 + j];
  }
  for (int64_t i = i4; i < n; ++i) part[0] += x[i];
  const double mean = ((part[0] + part[1]) + (part[2] + part[3])) / static_cast<double>(n);
  double sq_part[4] = {0.0, 0.0, 0.0, 0.0};
  for (int64_t i = 0; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; ++j) {
      const double d = x[i + j] - mean;
      sq_part[j] += d * d;
    }
  }
  for (int64_t i = i4; i < n; ++i) {
    const double d = x[i] - mean;
    sq_part[0] += d * d;
  }
  const double sq = (sq_part[0] + sq_part[1]) + (sq_part[2] + sq_part[3]);
  const float var = static_cast<float>(sq / static_cast<double>(n));
  const float rstd = 1.0f / std::sqrt(var + eps);
  const float m = static_cast<float>(mean);
  for (int64_t i = 0; i < n; ++i) {
    const float y = (x[i] - m) * rstd * weight[i];
    x[i] = y > 0.0f ? y : 0.0f;
  }
}

// Calls row(t) for every t < rows on the pool's threads (ForEachTowerRow, 8 rows an item).
template <class F>
void ForEachRow(ThreadPool* pool, int64_t rows, F&& row) {
  ForEachTowerRow(pool, rows, 8, std::forward<F>(row));
}

// out = clamp(x, -gc, gc) (the conformer's gradient clipping, a no-op in inference unless a
// value exceeds 1e10).
void CopyClamped(const float* x, int64_t n, float gc, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = std::min(std::max(x[i], -gc), gc);
}

// SiLU as torch computes it, x / (1 + exp(-x)) (vectorised).
void SiluInPlace(float* x, int64_t n) { ops::SigmoidMul(x, nullptr, x, n); }

// The encoder's working buffers, [S, H] each unless noted. The memory plan sizes them (with the
// residual x) through AudioEncoder::HugePageBuffers: keep it in step.
struct ConformerScratch {
  HugePageVector<float> normed, q, k, v, attn, tmp, in_copy;
  HugePageVector<float> wide;  // [S, 4H]
};

// Gemma4AudioFeedForward, in place on x [S, H]: clamp, pre-norm, ffw1, SiLU, ffw2, clamp,
// post-norm, x += residual_weight * result. The row passes run on every thread.
void FeedForward(const AudioLayerWeights::FeedForward& w, const AudioConfig& c, int64_t S,
                 HugePageVector<float>& x, ConformerScratch& s, ThreadPool* pool,
                 PhaseProfile& prof) {
  const int64_t H = c.hidden_size;
  const float gc = c.gradient_clipping, eps = c.rms_norm_eps;
  ForEachRow(pool, S, [&](int64_t t) {
    float* n = s.normed.data() + t * H;
    CopyClamped(x.data() + t * H, H, gc, n);
    ops::RmsNorm(n, w.pre_norm.data(), H, eps, n);
    w.ffw1.ClampInput(n, H);
  });
  prof.Mark("ffn.norm");
  TowerGemm(w.ffw1, s.normed.data(), S, s.wide.data(), pool);
  prof.Mark("ffn.gemm");
  ForEachRow(pool, S, [&](int64_t t) {
    float* h = s.wide.data() + t * 4 * H;
    w.ffw1.ClampOutput(h, 4 * H);
    SiluInPlace(h, 4 * H);
    w.ffw2.ClampInput(h, 4 * H);
  });
  prof.Mark("ffn.silu");
  TowerGemm(w.ffw2, s.wide.data(), S, s.tmp.data(), pool);
  prof.Mark("ffn.gemm");
  const float scale = c.residual_weight;
  ForEachRow(pool, S, [&](int64_t t) {
    float* h = s.tmp.data() + t * H;
    w.ffw2.ClampOutput(h, H);
    ClampInPlace(h, H, -gc, gc);
    ops::RmsNorm(h, w.post_norm.data(), H, eps, h);
    float* r = x.data() + t * H;
    for (int64_t j = 0; j < H; ++j) r[j] = h[j] * scale + r[j];
  });
  prof.Mark("ffn.norm");
}

}  // namespace

std::vector<uint64_t> AudioEncoder::HugePageBuffers(const AudioConfig& c, int64_t positions) {
  const uint64_t row = static_cast<uint64_t>(positions) * c.hidden_size * sizeof(float);
  // x, then ConformerScratch: normed, q, k, v, attn, tmp, in_copy and wide [S, 4H].
  return {row, row, row, row, row, row, row, row, 4 * row};
}

StatusOr<std::unique_ptr<AudioEncoder>> AudioEncoder::Load(const LoadedModel& model,
                                                           ThreadPool* pool) {
  const Checkpoint* ckpt = model.checkpoint();
  if (ckpt == nullptr && model.HasGgufTensor(mmproj::MarkerTensor(mmproj::Tower::kAudio))) {
    // An Ollama blob: the tower is inline, stored as in an mmproj.
    return LoadMmproj(model.source_path(), model.config().hidden_size, pool);
  }
  if (ckpt == nullptr) {
    return UnimplementedError(
        "this model was loaded from a GGUF file, which holds no audio tower; give the llama.cpp "
        "mmproj file of the same model (AudioEncoder::LoadMmproj)");
  }
  const json::Value* ac = ckpt->config_json().Find("audio_config");
  if (ac == nullptr || ac->is_null()) {
    return FailedPreconditionError(ckpt->config_path() +
                                   ": this checkpoint has no audio_config (a model without an "
                                   "audio tower); it cannot take audio");
  }
  auto enc = std::unique_ptr<AudioEncoder>(new AudioEncoder());
  GEMMA4_ASSIGN_OR_RETURN(enc->config_,
                          ParseAudioConfig(*ac, ckpt->config_path() + ": audio_config"));
  // Feature extractor settings beside config.json, when present.
  for (const std::string& path : ProcessorConfigFiles(*ckpt)) {
    GEMMA4_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    GEMMA4_ASSIGN_OR_RETURN(json::Value pc, json::Parse(text, path));
    const bool nested = pc.Find("feature_extractor") != nullptr;
    const bool flat =
        pc.Find("feature_size") != nullptr || pc.Find("feature_extractor_type") != nullptr;
    if (!nested && !flat) continue;  // an image-only processor file
    GEMMA4_RETURN_IF_ERROR(ApplyFeatureExtractorConfig(pc, path, &enc->features_));
    break;
  }
  enc->text_hidden_ = model.config().hidden_size;
  enc->load_pool_ = pool;
  GEMMA4_RETURN_IF_ERROR(enc->LoadTensors(
      [ckpt](const std::string& name) { return ckpt->Find(name); }, ckpt->path(), false));
  enc->checkpoint_ = ckpt;
  return enc;
}

Status AudioEncoder::LoadTensors(const std::function<const TensorView*(const std::string&)>& find,
                                 const std::string& source, bool per_dim_applied) {
  try {
    const AudioConfig& c = config_;
    const int64_t H = c.hidden_size, hd = c.head_dim(), K = c.conv_kernel_size;
    const int64_t C0 = c.subsampling_channels[0], C1 = c.subsampling_channels[1];
    const int64_t O = c.output_proj_dims;
    if (H % 2 != 0) {
      return InvalidArgumentError(source +
                                  ": the audio tower's hidden size must be even (sin/cos "
                                  "positions)");
    }
    freq_out_ = ConvOut(ConvOut(features_.feature_size));
    if (freq_out_ != C0 / 4) {
      return InvalidArgumentError(
          source + ": the audio tower's input projection takes " + std::to_string(C0 / 4) +
          " frequency rows (subsampling_conv_channels[0] / 4) but " +
          std::to_string(features_.feature_size) + " mel bins give " + std::to_string(freq_out_));
    }
    TowerReader r(find, source, "audio");
    r.UsePool(std::exchange(load_pool_, nullptr));  // not kept past loading
    const std::string sub = std::string(kTower) + "subsample_conv_projection.";
    if (find(sub + "layer0.conv.weight") == nullptr) {
      return NotFoundError(source + ": no audio tower weights (model.audio_tower.*) in this file");
    }
    GEMMA4_RETURN_IF_ERROR(r.Vector(sub + "layer0.conv.weight", {C0, 1, 3, 3}, &conv0_));
    GEMMA4_RETURN_IF_ERROR(r.Vector(sub + "layer0.norm.weight", {C0}, &norm0_));
    GEMMA4_RETURN_IF_ERROR(
        r.PackedMatrix(sub + "layer1.conv.weight", C1, C0 * 9, &conv1_, {C1, C0, 3, 3}));
    GEMMA4_RETURN_IF_ERROR(r.Vector(sub + "layer1.norm.weight", {C1}, &norm1_));
    GEMMA4_RETURN_IF_ERROR(
        r.PackedMatrix(sub + "input_proj_linear.weight", H, (C0 / 4) * C1, &input_proj_));

    // Relative position table (Gemma4AudioRelPositionalEncoding) in f32: positions C/2 .. 0,
    // [sin(pos * inv_timescale) ..., cos(...) ...].
    const int64_t C =
        int64_t{c.attention_chunk_size} + c.attention_context_left - 1 + c.attention_context_right;
    const int64_t P = C / 2 + 1, half = H / 2;
    const double log_inc = std::log(10000.0) / static_cast<double>(std::max<int64_t>(half - 1, 1));
    const float neg_inc = static_cast<float>(-log_inc);
    std::vector<float> pos_table(P * H);
    for (int64_t p = 0; p < P; ++p) {
      const float pos = static_cast<float>(C / 2 - p);
      for (int64_t i = 0; i < half; ++i) {
        const float inv = std::exp(static_cast<float>(i) * neg_inc);
        const float t = pos * inv;
        pos_table[p * H + i] = std::sin(t);
        pos_table[p * H + half + i] = std::cos(t);
      }
    }

    const bool clip = c.use_clipped_linears;
    layers_.resize(c.num_layers);
    ThreadPool one(1);
    for (int i = 0; i < c.num_layers; ++i) {
      const std::string p = std::string(kTower) + "layers." + std::to_string(i) + ".";
      AudioLayerWeights& lw = layers_[i];
      for (int f = 0; f < 2; ++f) {
        const std::string q = p + (f == 0 ? "feed_forward1." : "feed_forward2.");
        AudioLayerWeights::FeedForward& ff = f == 0 ? lw.ff1 : lw.ff2;
        GEMMA4_RETURN_IF_ERROR(r.Vector(q + "pre_layer_norm.weight", {H}, &ff.pre_norm));
        GEMMA4_RETURN_IF_ERROR(r.Vector(q + "post_layer_norm.weight", {H}, &ff.post_norm));
        GEMMA4_RETURN_IF_ERROR(r.Linear(q + "ffw_layer_1", 4 * H, H, clip, &ff.ffw1));
        GEMMA4_RETURN_IF_ERROR(r.Linear(q + "ffw_layer_2", H, 4 * H, clip, &ff.ffw2));
      }
      GEMMA4_RETURN_IF_ERROR(r.Vector(p + "norm_pre_attn.weight", {H}, &lw.norm_pre_attn));
      GEMMA4_RETURN_IF_ERROR(r.Vector(p + "norm_post_attn.weight", {H}, &lw.norm_post_attn));
      GEMMA4_RETURN_IF_ERROR(r.Vector(p + "norm_out.weight", {H}, &lw.norm_out));
      const std::string a = p + "self_attn.";
      GEMMA4_RETURN_IF_ERROR(r.Linear(a + "q_proj", H, H, clip, &lw.q_proj));
      GEMMA4_RETURN_IF_ERROR(r.Linear(a + "k_proj", H, H, clip, &lw.k_proj));
      GEMMA4_RETURN_IF_ERROR(r.Linear(a + "v_proj", H, H, clip, &lw.v_proj));
      GEMMA4_RETURN_IF_ERROR(r.Linear(a + "post", H, H, clip, &lw.post));
      GEMMA4_ASSIGN_OR_RETURN(lw.relative_k_proj, r.Matrix(a + "relative_k_proj.weight", H, H));
      GEMMA4_RETURN_IF_ERROR(r.Vector(a + "per_dim_scale", {hd}, &lw.per_dim_softplus));
      if (!per_dim_applied) {
        for (float& v : lw.per_dim_softplus) v = Softplus(v);
      }
      lw.rel_keys.resize(P * H);
      ops::MatMulGemm(lw.relative_k_proj, pos_table.data(), P, lw.rel_keys.data(), &one);
      const std::string l = p + "lconv1d.";
      GEMMA4_RETURN_IF_ERROR(r.Vector(l + "pre_layer_norm.weight", {H}, &lw.lconv_pre_norm));
      GEMMA4_RETURN_IF_ERROR(r.Vector(l + "conv_norm.weight", {H}, &lw.conv_norm));
      GEMMA4_RETURN_IF_ERROR(r.Linear(l + "linear_start", 2 * H, H, clip, &lw.linear_start));
      GEMMA4_RETURN_IF_ERROR(r.Linear(l + "linear_end", H, H, clip, &lw.linear_end));
      // [H, 1, K] in checkpoints; llama.cpp's converter drops the middle dimension.
      const std::string dw = l + "depthwise_conv1d.weight";
      const TensorView* dw_view = find(dw);
      const bool flat = dw_view != nullptr && dw_view->shape.size() == 2;
      GEMMA4_RETURN_IF_ERROR(r.Vector(
          dw, flat ? std::vector<int64_t>{H, K} : std::vector<int64_t>{H, 1, K}, &lw.depthwise));
    }
    GEMMA4_RETURN_IF_ERROR(
        r.PackedMatrix(std::string(kTower) + "output_proj.weight", O, H, &output_proj_));
    GEMMA4_RETURN_IF_ERROR(r.Vector(std::string(kTower) + "output_proj.bias", {O}, &output_bias_));
    GEMMA4_RETURN_IF_ERROR(r.PackedMatrix(kProjector, text_hidden_, O, &projection_));
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory loading the audio tower");
  }
  return OkStatus();
}

StatusOr<std::unique_ptr<AudioEncoder>> AudioEncoder::LoadMmproj(const std::string& path,
                                                                 int text_hidden,
                                                                 ThreadPool* pool) {
  auto enc = std::unique_ptr<AudioEncoder>(new AudioEncoder());
  enc->load_pool_ = pool;
  GEMMA4_ASSIGN_OR_RETURN(enc->mmproj_, mmproj::TowerFile::Open(path, mmproj::Tower::kAudio));
  const mmproj::TowerFile& file = *enc->mmproj_;
  // An Ollama blob holds the text model too; its audio settings are gemma4.audio.*, the
  // projector's width is the text model's embedding_length, and five tensor names differ.
  auto u32 = [&](const std::string& key, int* out, bool required, int max) {
    return TowerMetadataInt(file, key, out, required, max);
  };
  AudioConfig& c = enc->config_;  // what the file does not carry keeps the defaults
  GEMMA4_RETURN_IF_ERROR(u32(file.Key("embedding_length"), &c.hidden_size, true, 1 << 16));
  GEMMA4_RETURN_IF_ERROR(u32(file.Key("block_count"), &c.num_layers, true, 1024));
  GEMMA4_RETURN_IF_ERROR(u32(file.Key("attention.head_count"), &c.num_heads, true, 1024));
  int ffn = 4 * c.hidden_size;
  GEMMA4_RETURN_IF_ERROR(u32(file.Key("feed_forward_length"), &ffn, false, 1 << 20));
  if (ffn != 4 * c.hidden_size) {
    return InvalidArgumentError(path + ": " + file.Key("feed_forward_length") + " " +
                                std::to_string(ffn) + " is not 4 x embedding_length " +
                                std::to_string(c.hidden_size));
  }
  GEMMA4_RETURN_IF_ERROR(CheckTowerProjection(file, text_hidden, "audio"));
  // Under llama.cpp's key in either layout (Ollama blobs as tools/reference/
  // make_ollama_fixtures.py writes them carry none: the feature extractor's default, 128).
  GEMMA4_RETURN_IF_ERROR(u32("clip.audio.num_mel_bins", &enc->features_.feature_size, false, 4096));
  // clip.audio.attention.layer_norm_epsilon is not read: files converted before llama.cpp
  // PR #23815 carry 1e-5, and clip.cpp uses 1e-6, the value of every Gemma 4 audio tower.
  if (c.hidden_size % c.num_heads != 0) {
    return InvalidArgumentError(path + ": audio embedding_length " + std::to_string(c.hidden_size) +
                                " is not a multiple of head_count " + std::to_string(c.num_heads));
  }
  auto find = [&file](const std::string& hf) { return file.Find(hf); };
  // Dimensions the metadata lacks, from the tensor shapes.
  const std::string tower = kTower;
  auto dim = [&](const std::string& hf, size_t rank, size_t axis, int* out) {
    const TensorView* t = find(hf);
    if (t != nullptr && t->shape.size() == rank && t->shape[axis] > 0 &&
        t->shape[axis] <= (1 << 16)) {
      *out = static_cast<int>(t->shape[axis]);
    }
  };
  dim(tower + "subsample_conv_projection.layer0.conv.weight", 4, 0, &c.subsampling_channels[0]);
  dim(tower + "subsample_conv_projection.layer1.conv.weight", 4, 0, &c.subsampling_channels[1]);
  dim(tower + "output_proj.weight", 2, 0, &c.output_proj_dims);
  dim(tower + "layers.0.lconv1d.depthwise_conv1d.weight", 2, 1, &c.conv_kernel_size);
  c.use_clipped_linears = find(tower + "layers.0.self_attn.q_proj.input_min") != nullptr;
  if (c.subsampling_channels[0] % 4 != 0) {
    return InvalidArgumentError(path + ": a.conv1d.0 has " +
                                std::to_string(c.subsampling_channels[0]) +
                                " channels, not a multiple of 4");
  }
  enc->text_hidden_ = text_hidden;
  GEMMA4_RETURN_IF_ERROR(enc->LoadTensors(find, path, true));
  return enc;
}

Status AudioEncoder::Encode(const AudioFeatures& features, ThreadPool* pool,
                            std::vector<float>* soft_tokens,
                            const std::atomic<bool>* cancel) const {
  GEMMA4_RETURN_IF_ERROR(CheckTowerWeightsUnchanged(mmproj_.get(), checkpoint_));
  const AudioConfig& c = config_;
  const int64_t T = features.num_frames, F = features.feature_size;
  if (F != features_.feature_size) {
    return InvalidArgumentError("audio features have " + std::to_string(F) +
                                " mel bins; the audio tower takes " +
                                std::to_string(features_.feature_size));
  }
  if (T <= 0 || features.features.size() != static_cast<size_t>(T * F) ||
      features.mask.size() != static_cast<size_t>(T)) {
    return InvalidArgumentError("audio features are empty or inconsistent (" + std::to_string(T) +
                                " frames)");
  }
  // The frames of max_length samples (30 s): one call encodes at most one extractor chunk.
  {
    const FeatureConfig& fc = features_;
    const int64_t mult = fc.pad_to_multiple_of;
    const int64_t padded = (fc.max_length + mult - 1) / mult * mult + fc.frame_length() / 2;
    const int64_t max_frames = (padded - fc.frame_length() - 1) / fc.hop_length() + 1;
    if (T > max_frames) {
      return InvalidArgumentError("audio features of " + std::to_string(T) +
                                  " frames exceed one 30 s clip (" + std::to_string(max_frames) +
                                  " frames); split the audio into 30 s pieces");
    }
  }
  int64_t valid_in = 0;
  for (int64_t t = 0; t < T; ++t) valid_in += features.mask[t] != 0;
  if (valid_in == 0) return InvalidArgumentError("audio features have no valid frame");
  for (float v : features.features) {
    if (!std::isfinite(v)) return InvalidArgumentError("audio features hold a non-finite value");
  }
  std::unique_ptr<ThreadPool> own_pool;
  if (pool == nullptr) {
    own_pool = std::make_unique<ThreadPool>(1);
    pool = own_pool.get();
  }
  const int64_t H = c.hidden_size, nh = c.num_heads, hd = c.head_dim();
  const int64_t C0 = c.subsampling_channels[0], C1 = c.subsampling_channels[1];
  const int64_t O = c.output_proj_dims, K = c.conv_kernel_size;
  const float eps = c.rms_norm_eps, gc = c.gradient_clipping;
  PhaseProfile prof("audio encode");
  try {
    // ---- Subsampling: layer 0 (mask rows, Conv2d(1 -> C0), LayerNorm, ReLU; layout [t][f][c])
    // then layer 1 (mask rows, Conv2d(C0 -> C1) as patches [rows, C0 * 9] x conv1^T,
    // LayerNorm, ReLU), a pass of kRowsPerPass layer-1 time steps at a time: each pass computes
    // the layer-0 rows it reads (2 t - 1 .. 2 t + 1) into a window instead of all T1 rows (48 MB
    // of fresh pages at 30 s).
    const int64_t T1 = ConvOut(T), F1 = ConvOut(F);
    const int64_t T2 = ConvOut(T1), F2 = ConvOut(F1);
    constexpr int64_t kRowsPerPass = 64;  // layer-1 time steps per pass
    const int64_t window_rows = 2 * std::min(T2, kRowsPerPass) + 1;
    HugePageVector<float> y0(window_rows * F1 * C0);
    std::vector<float> conv0_t(9 * C0);  // [9, C0]: the channels of one tap side by side
    for (int64_t ch = 0; ch < C0; ++ch) {
      for (int kk = 0; kk < 9; ++kk) conv0_t[kk * C0 + ch] = conv0_[ch * 9 + kk];
    }
    // Layer-0 rows [first, last) into the window, row `first - offset` onward.
    auto layer0 = [&](int64_t first, int64_t last, int64_t offset) {
      pool->ParallelFor(last - first, 2, [&](int64_t begin, int64_t end) {
        for (int64_t t = first + begin; t < first + end; ++t) {
          for (int64_t f = 0; f < F1; ++f) {
            float patch[9];
            for (int kt = 0; kt < 3; ++kt) {
              for (int kf = 0; kf < 3; ++kf) {
                const int64_t ti = 2 * t - 1 + kt, fi = 2 * f - 1 + kf;
                float v = 0.0f;
                if (ti >= 0 && ti < T && fi >= 0 && fi < F) {
                  v = features.features[ti * F + fi] * (features.mask[ti] ? 1.0f : 0.0f);
                }
                patch[kt * 3 + kf] = v;
              }
            }
            // out[ch] = sum over taps of w[ch, tap] * patch[tap], in tap order from 0 (the
            // channels vectorised).
            float* out = y0.data() + ((t - offset) * F1 + f) * C0;
            std::fill(out, out + C0, 0.0f);
            for (int kk = 0; kk < 9; ++kk) {
              const float* w = conv0_t.data() + kk * C0;
              const float pk = patch[kk];
              for (int64_t ch = 0; ch < C0; ++ch) out[ch] += w[ch] * pk;
            }
            LayerNormRelu(out, C0, norm0_.data(), eps);
          }
        }
      });
    };
    std::vector<uint8_t> mask1(T1);
    for (int64_t t = 0; t < T1; ++t) mask1[t] = features.mask[2 * t];
    HugePageVector<float> y1(T2 * F2 * C1);
    HugePageVector<float> patches(std::min(T2, kRowsPerPass) * F2 * C0 * 9);
    for (int64_t t0 = 0; t0 < T2; t0 += kRowsPerPass) {
      const int64_t nt = std::min(kRowsPerPass, T2 - t0);
      const int64_t offset = 2 * t0 - 1;  // the window's row 0 is layer-0 row 2 t0 - 1
      layer0(std::max<int64_t>(0, offset), std::min(T1, 2 * (t0 + nt - 1) + 2), offset);
      prof.Mark("subsample.conv0");
      pool->ParallelFor(nt * F2, 8, [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; ++item) {
          const int64_t t = t0 + item / F2, f = item % F2;
          float* row = patches.data() + item * C0 * 9;
          for (int kt = 0; kt < 3; ++kt) {
            for (int kf = 0; kf < 3; ++kf) {
              const int64_t ti = 2 * t - 1 + kt, fi = 2 * f - 1 + kf;
              const bool in = ti >= 0 && ti < T1 && fi >= 0 && fi < F1;
              const float m = in && mask1[ti] ? 1.0f : 0.0f;
              const float* src = in ? y0.data() + ((ti - offset) * F1 + fi) * C0 : nullptr;
              for (int64_t ci = 0; ci < C0; ++ci) {
                row[ci * 9 + kt * 3 + kf] = in ? src[ci] * m : 0.0f;
              }
            }
          }
        }
      });
      float* out = y1.data() + t0 * F2 * C1;
      TowerGemm(conv1_, patches.data(), nt * F2, out, pool);
      pool->ParallelFor(nt * F2, 64, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) LayerNormRelu(out + i * C1, C1, norm1_.data(), eps);
      });
      prof.Mark("subsample.conv1");
    }
    y0 = HugePageVector<float>();
    patches = HugePageVector<float>();
    std::vector<uint8_t> valid(T2);
    for (int64_t t = 0; t < T2; ++t) valid[t] = mask1[2 * t];

    // ---- Input projection: [T2, F2 * C1] (frequency-major, channels inner) -> [T2, H].
    const int64_t S = T2;
    HugePageVector<float> x(S * H);
    TowerGemm(input_proj_, y1.data(), S, x.data(), pool);
    y1 = HugePageVector<float>();
    prof.Mark("input_proj");

    // ---- Conformer layers.
    const int64_t chunk = c.attention_chunk_size, past = c.attention_context_left - 1,
                  future = c.attention_context_right;
    const int64_t C = chunk + past + future, P = C / 2 + 1;
    const int64_t nb = (S + chunk - 1) / chunk;
    const float q_scale =
        static_cast<float>(std::pow(static_cast<double>(hd), -0.5) / std::log(2.0));
    const float k_scale = static_cast<float>(std::log(1.0 + std::exp(1.0)) / std::log(2.0));
    const float cap = c.attention_logit_cap, invalid = c.attention_invalid_logits_value;
    const bool inverted = mask_mode_ == AudioMaskMode::kHfEagerInverted;
    // sliding_window_mask_function((context_left - 1, context_right)) and the padding mask.
    auto allowed = [&](int64_t q, int64_t kv) {
      if (kv < 0 || kv >= S || !valid[kv]) return false;
      const int64_t dist = q - kv;
      return (dist >= 0 && dist < past) || (dist < 0 && -dist < future);
    };
    auto masked = [&](int64_t q, int64_t kv) {
      if (!inverted) return !allowed(q, kv);
      // The eager float mask (0 = allowed or padding, finfo.min = disallowed) through
      // logical_not(): positions holding 0 are filled.
      return kv < 0 || kv >= S || allowed(q, kv);
    };

    ConformerScratch sc;
    for (HugePageVector<float>* buffer :
         {&sc.normed, &sc.q, &sc.k, &sc.v, &sc.attn, &sc.tmp, &sc.in_copy}) {
      buffer->resize(S * H);
    }
    sc.wide.resize(S * 4 * H);
    std::vector<float> depthwise_t(K * H);  // the layer's depthwise kernel as [K, H]
    for (const AudioLayerWeights& lw : layers_) {
      if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
        return CancelledError("cancelled in the audio tower before layer " +
                              std::to_string(&lw - layers_.data() + 1) + " of " +
                              std::to_string(layers_.size()));
      }
      FeedForward(lw.ff1, c, S, x, sc, pool, prof);

      // Attention block: clamp + norm_pre_attn, q/k/v (each clamping the normed rows to its own
      // bounds: separate copies when clipping), chunked attention, clamp + norm_post_attn.
      const bool clip = lw.q_proj.clipped || lw.k_proj.clipped || lw.v_proj.clipped;
      float* const q_in = clip ? sc.attn.data() : sc.normed.data();
      float* const k_in = clip ? sc.tmp.data() : sc.normed.data();
      float* const v_in = clip ? sc.in_copy.data() : sc.normed.data();
      ForEachRow(pool, S, [&](int64_t t) {
        float* n = sc.normed.data() + t * H;
        CopyClamped(x.data() + t * H, H, gc, n);
        ops::RmsNorm(n, lw.norm_pre_attn.data(), H, eps, n);
        if (!clip) return;
        std::copy_n(n, H, q_in + t * H);
        std::copy_n(n, H, k_in + t * H);
        std::copy_n(n, H, v_in + t * H);
        lw.q_proj.ClampInput(q_in + t * H, H);
        lw.k_proj.ClampInput(k_in + t * H, H);
        lw.v_proj.ClampInput(v_in + t * H, H);
      });
      prof.Mark("attn.norm");
      TowerGemm(lw.q_proj, q_in, S, sc.q.data(), pool);
      TowerGemm(lw.k_proj, k_in, S, sc.k.data(), pool);
      TowerGemm(lw.v_proj, v_in, S, sc.v.data(), pool);
      prof.Mark("attn.qkv_gemm");
      ForEachRow(pool, S, [&](int64_t t) {
        float* qt = sc.q.data() + t * H;
        float* kt = sc.k.data() + t * H;
        lw.q_proj.ClampOutput(qt, H);
        lw.k_proj.ClampOutput(kt, H);
        lw.v_proj.ClampOutput(sc.v.data() + t * H, H);
        for (int64_t h = 0; h < nh; ++h) {
          float* qh = qt + h * hd;
          for (int64_t d = 0; d < hd; ++d) qh[d] = qh[d] * q_scale * lw.per_dim_softplus[d];
        }
        for (int64_t j = 0; j < H; ++j) kt[j] = kt[j] * k_scale;
      });
      prof.Mark("attn.scale");
      const float* const q = sc.q.data();
      const float* const k = sc.k.data();
      const float* const v = sc.v.data();
      // One item: a block of `chunk` queries and one head. The output rows are clamped to the
      // post projection's input bounds here (elementwise, so per head).
      pool->ParallelFor(nb * nh, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> bd(chunk * P), ac(chunk * C), logits(C);
        for (int64_t item = begin; item < end; ++item) {
          const int64_t b = item / nh, h = item % nh;
          const int64_t q0 = b * chunk, nq = std::min(chunk, S - q0);
          // The block's context: keys q0 - past .. q0 + chunk + future - 1, of which kv0 .. kv1
          // - 1 exist (the others are zero padding, masked).
          const int64_t kv0 = std::max<int64_t>(0, q0 - past);
          const int64_t kv1 = std::min(S, q0 - past + C);
          // matrix_bd before the shift: q_i . rel_key[p] for the block's queries ([chunk, P],
          // rows past the sequence zero), and matrix_ac: q_i . k_j over the context ([chunk,
          // C], padding keys zero).
          std::fill(bd.begin(), bd.end(), 0.0f);
          std::fill(ac.begin(), ac.end(), 0.0f);
          ops::AttentionScores(q + q0 * H + h * hd, H, static_cast<int>(nq),
                               lw.rel_keys.data() + h * hd, H, P, hd, bd.data(), P);
          if (kv1 > kv0) {
            ops::AttentionScores(q + q0 * H + h * hd, H, static_cast<int>(nq), k + kv0 * H + h * hd,
                                 H, kv1 - kv0, hd, ac.data() + (kv0 - (q0 - past)), C);
          }
          for (int64_t i = 0; i < nq; ++i) {
            const int64_t qi = q0 + i;
            for (int64_t j = 0; j < C; ++j) {
              // _rel_shift: row i of the shifted [chunk, C] is the flat [chunk, C + 1]-padded
              // matrix read from i * C.
              const int64_t flat = i * C + j, r = flat / (C + 1), col = flat % (C + 1);
              const float rel = col < P ? bd[r * P + col] : 0.0f;
              logits[j] = ac[i * C + j] + rel;
            }
            ops::Softcap(logits.data(), C, cap);  // tanh(logit / cap) * cap
            for (int64_t j = 0; j < C; ++j) {
              if (masked(qi, q0 - past + j)) logits[j] = invalid;
            }
            ops::Softmax(logits.data(), C);
            float* o = sc.attn.data() + qi * H + h * hd;
            std::fill(o, o + hd, 0.0f);
            if (kv1 > kv0) {
              ops::AttentionValues(logits.data() + (kv0 - (q0 - past)), C, 1, v + kv0 * H + h * hd,
                                   H, kv1 - kv0, hd, o, hd);
            }
            lw.post.ClampInput(o, hd);
          }
        }
      });
      prof.Mark("attn.local");
      TowerGemm(lw.post, sc.attn.data(), S, sc.tmp.data(), pool);
      prof.Mark("attn.post_gemm");
      // Residual, then the light conv's pre-norm and linear_start's input clamp.
      ForEachRow(pool, S, [&](int64_t t) {
        float* h = sc.tmp.data() + t * H;
        lw.post.ClampOutput(h, H);
        ClampInPlace(h, H, -gc, gc);
        ops::RmsNorm(h, lw.norm_post_attn.data(), H, eps, h);
        float* r = x.data() + t * H;
        for (int64_t j = 0; j < H; ++j) r[j] = h[j] + r[j];
        float* n = sc.normed.data() + t * H;
        ops::RmsNorm(r, lw.lconv_pre_norm.data(), H, eps, n);
        lw.linear_start.ClampInput(n, H);
      });
      prof.Mark("attn.norm");

      // Light conv: linear_start, GLU, causal depthwise conv, clamp, norm, SiLU, linear_end,
      // residual.
      TowerGemm(lw.linear_start, sc.normed.data(), S, sc.wide.data(), pool);
      prof.Mark("lconv.gemm");
      ForEachRow(pool, S, [&](int64_t t) {
        float* in = sc.wide.data() + t * 2 * H;
        lw.linear_start.ClampOutput(in, 2 * H);
        float* g = sc.attn.data() + t * H;
        ops::SigmoidMul(in + H, in, g, H);  // GLU: a * sigmoid(b) for [a, b] = in
      });
      for (int64_t j = 0; j < H; ++j) {
        for (int64_t kk = 0; kk < K; ++kk) depthwise_t[kk * H + j] = lw.depthwise[j * K + kk];
      }
      ForEachRow(pool, S, [&](int64_t t) {
        // out[j] = sum over kk of w[j, kk] * glu[t - (K - 1) + kk, j] (in kk order, from 0).
        float* out = sc.tmp.data() + t * H;
        std::fill(out, out + H, 0.0f);
        for (int64_t kk = 0; kk < K; ++kk) {
          const int64_t ti = t - (K - 1) + kk;
          if (ti < 0) continue;
          const float* w = depthwise_t.data() + kk * H;
          const float* a = sc.attn.data() + ti * H;
          for (int64_t j = 0; j < H; ++j) out[j] += w[j] * a[j];
        }
        ClampInPlace(out, H, -gc, gc);
        ops::RmsNorm(out, lw.conv_norm.data(), H, eps, out);
        SiluInPlace(out, H);
        lw.linear_end.ClampInput(out, H);
      });
      prof.Mark("lconv.glu_conv_norm");
      TowerGemm(lw.linear_end, sc.tmp.data(), S, sc.normed.data(), pool);
      prof.Mark("lconv.gemm");
      ForEachRow(pool, S, [&](int64_t t) {
        float* h = sc.normed.data() + t * H;
        lw.linear_end.ClampOutput(h, H);
        float* r = x.data() + t * H;
        for (int64_t j = 0; j < H; ++j) r[j] = h[j] + r[j];
      });
      prof.Mark("lconv.glu_conv_norm");

      FeedForward(lw.ff2, c, S, x, sc, pool, prof);
      ForEachRow(pool, S, [&](int64_t t) {
        float* r = x.data() + t * H;
        ClampInPlace(r, H, -gc, gc);
        ops::RmsNorm(r, lw.norm_out.data(), H, eps, r);
      });
      prof.Mark("norm_out");
    }

    // ---- Valid rows only, output_proj (+ bias), embed_audio.
    int64_t n_valid = 0;
    for (int64_t t = 0; t < S; ++t) {
      if (!valid[t]) continue;
      if (n_valid != t) std::copy_n(x.data() + t * H, H, x.data() + n_valid * H);
      ++n_valid;
    }
    std::vector<float> out(n_valid * O);
    TowerGemm(output_proj_, x.data(), n_valid, out.data(), pool);
    ForEachRow(pool, n_valid, [&](int64_t t) {
      float* row = out.data() + t * O;
      for (int64_t j = 0; j < O; ++j) row[j] = row[j] + output_bias_[j];
      ops::RmsNorm(row, nullptr, O, eps, row);
    });
    soft_tokens->resize(n_valid * text_hidden_);
    TowerGemm(projection_, out.data(), n_valid, soft_tokens->data(), pool);
    prof.Mark("output_proj");
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory encoding " + std::to_string(T) + " audio frames");
  }
  return OkStatus();
}

Status EncodeClip(const AudioEncoder& encoder, const float* samples, int64_t n, ThreadPool* pool,
                  std::vector<std::vector<float>>* pieces, const std::atomic<bool>* cancel) {
  if (n <= 0) return InvalidArgumentError("empty audio clip");
  const FeatureConfig& fc = encoder.feature_config();
  const int64_t piece = fc.max_length > 0 ? fc.max_length : int64_t{480000};
  pieces->clear();
  for (int64_t begin = 0; begin < n; begin += piece) {
    const int64_t len = std::min(piece, n - begin);
    if (AudioSoftTokenCount(len, fc) == 0) {
      if (begin == 0) {
        return InvalidArgumentError("audio clip of " + std::to_string(n) +
                                    " samples is too short for one soft token");
      }
      break;  // a tail shorter than one frame adds nothing
    }
    GEMMA4_ASSIGN_OR_RETURN(AudioFeatures features, ComputeLogMel(samples + begin, len, fc));
    std::vector<float> soft;
    GEMMA4_RETURN_IF_ERROR(encoder.Encode(features, pool, &soft, cancel));
    pieces->push_back(std::move(soft));
  }
  return OkStatus();
}

namespace {

// ggml file type of an mmproj whose matrices are `t` (general.file_type).
int FileType(DType t) {
  return t == DType::kF32 ? 0 : t == DType::kF16 ? 1 : t == DType::kBF16 ? 32 : 7;
}

// The settings an mmproj cannot carry: llama.cpp's converter writes none of them and both
// readers use Gemma4AudioConfig's defaults. "" when `c` uses the defaults.
std::string UncarriedSettings(const AudioConfig& c) {
  const AudioConfig d;
  std::string out;
  auto add = [&out](bool differs, const char* name) {
    if (!differs) return;
    out += out.empty() ? "" : ", ";
    out += name;
  };
  add(c.attention_chunk_size != d.attention_chunk_size, "attention_chunk_size");
  add(c.attention_context_left != d.attention_context_left, "attention_context_left");
  add(c.attention_context_right != d.attention_context_right, "attention_context_right");
  add(c.attention_logit_cap != d.attention_logit_cap, "attention_logit_cap");
  add(c.attention_invalid_logits_value != d.attention_invalid_logits_value,
      "attention_invalid_logits_value");
  add(c.residual_weight != d.residual_weight, "residual_weight");
  add(c.gradient_clipping != d.gradient_clipping, "gradient_clipping");
  add(c.rms_norm_eps != d.rms_norm_eps, "rms_norm_eps");
  return out;
}

}  // namespace

Status WriteAudioMmproj(const AudioConfig& c, int num_mel_bins, int text_hidden,
                        const AudioTensorSource& source, DType matrix_type, const std::string& path,
                        ThreadPool* pool, const std::string& add_to) {
  if (matrix_type != DType::kF32 && matrix_type != DType::kF16 && matrix_type != DType::kBF16 &&
      matrix_type != DType::kQ8_0) {
    return InvalidArgumentError(
        "mmproj matrices must be f32, f16, bf16 or q8_0 (the towers are never stored below 8 "
        "bits)");
  }
  if (const std::string uncarried = UncarriedSettings(c); !uncarried.empty()) {
    return InvalidArgumentError(
        "this audio tower's " + uncarried +
        " differ from Gemma4AudioConfig's defaults, which a llama.cpp mmproj cannot carry "
        "(its readers assume the defaults)");
  }
  gguf::Writer w;
  using gguf::Value;
  using gguf::ValueType;
  // A base file to extend (a vision mmproj): its metadata and tensors first.
  std::unique_ptr<gguf::File> base;
  std::vector<const TensorView*> kept;
  if (!add_to.empty()) {
    GEMMA4_ASSIGN_OR_RETURN(base, gguf::File::Open(add_to));
    const gguf::Value* arch = base->Find("general.architecture");
    if (arch == nullptr || arch->type != ValueType::kString || arch->s != "clip") {
      return InvalidArgumentError(add_to + ": not an mmproj (general.architecture is not 'clip')");
    }
    if (const gguf::Value* dim = base->Find("clip.vision.projection_dim");
        dim != nullptr && dim->IsInteger() && dim->i != text_hidden) {
      return InvalidArgumentError(add_to + ": its vision projector outputs " +
                                  std::to_string(dim->i) +
                                  " values per soft token, the audio projector " +
                                  std::to_string(text_hidden) + " (an mmproj of another model?)");
    }
    auto skip = [](const std::string& key) {
      // Replaced below; alignment is the writer's own; the single-modality projector key
      // would override clip.audio.projector_type in llama.cpp (moved to the vision key).
      return key == "general.alignment" || key == "clip.has_audio_encoder" ||
             key == "clip.projector_type" || key.rfind("clip.audio.", 0) == 0;
    };
    for (const bool general : {true, false}) {
      for (const auto& [key, value] : base->metadata()) {
        if ((key.rfind("general.", 0) == 0) != general || skip(key)) continue;
        w.Set(key, value);
      }
    }
    if (const gguf::Value* legacy = base->Find("clip.projector_type");
        legacy != nullptr && base->Find("clip.vision.projector_type") == nullptr) {
      w.Set("clip.vision.projector_type", *legacy);
    }
    for (const TensorView& t : base->tensors()) {
      if (t.name.rfind("a.", 0) == 0 || t.name.rfind("mm.a.", 0) == 0) continue;
      kept.push_back(&t);
    }
  } else {
    w.Set("general.architecture", Value::String("clip"));
    w.Set("general.type", Value::String("mmproj"));
    w.Set("general.file_type", Value::Int(ValueType::kUint32, FileType(matrix_type)));
  }
  w.Set("clip.has_audio_encoder", Value::Bool(true));
  w.Set("clip.audio.projection_dim", Value::Int(ValueType::kUint32, text_hidden));
  w.Set("clip.audio.embedding_length", Value::Int(ValueType::kUint32, c.hidden_size));
  w.Set("clip.audio.feed_forward_length", Value::Int(ValueType::kUint32, 4 * c.hidden_size));
  w.Set("clip.audio.block_count", Value::Int(ValueType::kUint32, c.num_layers));
  w.Set("clip.audio.attention.head_count", Value::Int(ValueType::kUint32, c.num_heads));
  w.Set("clip.audio.projector_type", Value::String("gemma4a"));
  w.Set("clip.audio.num_mel_bins", Value::Int(ValueType::kUint32, num_mel_bins));
  w.Set("clip.audio.attention.layer_norm_epsilon", Value::Float32(c.rms_norm_eps));

  struct Planned {
    std::string name;
    DType type;
    std::vector<int64_t> shape;  // as written
    AudioTensor tensor;
    bool softplus = false;  // per_dim_scale
  };
  std::vector<Planned> plan;
  const std::string tower = kTower;
  std::vector<std::string> names;
  const std::string sub = tower + "subsample_conv_projection.";
  for (const char* leaf : {"layer0.conv.weight", "layer0.norm.weight", "layer1.conv.weight",
                           "layer1.norm.weight", "input_proj_linear.weight"}) {
    names.push_back(sub + leaf);
  }
  static const char* const kLeaves[] = {"feed_forward1.pre_layer_norm.weight",
                                        "feed_forward1.post_layer_norm.weight",
                                        "feed_forward2.pre_layer_norm.weight",
                                        "feed_forward2.post_layer_norm.weight",
                                        "norm_pre_attn.weight",
                                        "norm_post_attn.weight",
                                        "norm_out.weight",
                                        "self_attn.relative_k_proj.weight",
                                        "self_attn.per_dim_scale",
                                        "lconv1d.pre_layer_norm.weight",
                                        "lconv1d.conv_norm.weight",
                                        "lconv1d.depthwise_conv1d.weight"};
  static const char* const kLinears[] = {"feed_forward1.ffw_layer_1", "feed_forward1.ffw_layer_2",
                                         "feed_forward2.ffw_layer_1", "feed_forward2.ffw_layer_2",
                                         "self_attn.q_proj",          "self_attn.k_proj",
                                         "self_attn.v_proj",          "self_attn.post",
                                         "lconv1d.linear_start",      "lconv1d.linear_end"};
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = tower + "layers." + std::to_string(i) + ".";
    for (const char* leaf : kLeaves) names.push_back(p + leaf);
    for (const char* lin : kLinears) {
      names.push_back(p + lin + ".linear.weight");
      for (const char* b : {".input_min", ".input_max", ".output_min", ".output_max"}) {
        names.push_back(p + lin + b);
      }
    }
  }
  names.push_back(tower + "output_proj.weight");
  names.push_back(tower + "output_proj.bias");
  names.push_back(kProjector);
  for (const std::string& hf : names) {
    std::optional<AudioTensor> t = source(hf);
    if (!t.has_value()) {
      const bool bound = hf.size() > 4 && (hf.compare(hf.size() - 4, 4, "_min") == 0 ||
                                           hf.compare(hf.size() - 4, 4, "_max") == 0);
      if (bound) continue;  // clamp bounds exist only with use_clipped_linears
      return NotFoundError("missing audio tensor '" + hf + "'");
    }
    Planned pl;
    pl.name = mmproj::LlamaCppName(mmproj::Tower::kAudio, hf);
    if (pl.name.empty()) return InternalError("no mmproj name for '" + hf + "'");
    pl.shape = t->shape.empty() ? std::vector<int64_t>{1} : t->shape;  // scalars: 1 element
    const bool depthwise = hf.find("depthwise_conv1d") != std::string::npos;
    if (depthwise) {
      if (pl.shape.size() != 3 || pl.shape[1] != 1) {
        return InvalidArgumentError("audio tensor '" + hf + "' is not a [C, 1, K] convolution");
      }
      pl.shape = {pl.shape[0], pl.shape[2]};
    }
    pl.softplus = hf.size() >= 13 && hf.compare(hf.size() - 13, 13, "per_dim_scale") == 0;
    pl.tensor = std::move(*t);
    // As the converter: convolutions (and the whole subsampling block, whose names contain
    // "_conv") F32, vectors and scalars F32, other matrices in the file's type, with Q8_0
    // falling back to F16 for rows not a multiple of its 32-value blocks.
    const bool matrix = pl.shape.size() == 2 && !depthwise && hf.rfind(sub, 0) != 0;
    pl.type = !matrix                                                    ? DType::kF32
              : matrix_type == DType::kQ8_0 && pl.shape.back() % 32 != 0 ? DType::kF16
                                                                         : matrix_type;
    plan.push_back(std::move(pl));
  }
  for (const TensorView* t : kept) w.AddTensor(t->name, t->dtype, t->shape);
  for (const Planned& p : plan) w.AddTensor(p.name, p.type, p.shape);
  auto produce = [&](size_t i, std::vector<uint8_t>* bytes) -> Status {
    if (i < kept.size()) {
      const TensorView& t = *kept[i];
      try {
        bytes->assign(t.data, t.data + t.nbytes);
      } catch (const std::bad_alloc&) {
        return ResourceExhaustedError("out of memory copying '" + t.name + "'");
      }
      return OkStatus();
    }
    const Planned& p = plan[i - kept.size()];
    int64_t numel = 1;
    for (int64_t d : p.shape) numel *= d;
    std::vector<float> values;
    const int64_t cols = p.shape.back(), rows = numel / cols;
    const uint64_t row_bytes = RowBytes(p.type, cols);
    try {
      values.resize(numel);
      bytes->resize(rows * row_bytes);
    } catch (const std::bad_alloc&) {
      return ResourceExhaustedError("out of memory converting '" + p.name + "'");
    }
    p.tensor.fill(values.data());
    if (p.softplus) {
      for (float& v : values) v = Softplus(v);
    }
    pool->ParallelFor(rows, 64, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        quant::QuantizeRow(p.type, values.data() + r * cols, cols, bytes->data() + r * row_bytes);
      }
    });
    return OkStatus();
  };
  if (base == nullptr) return w.Write(path, produce);
  // Written beside `path` and renamed over it: `path` may be the file extended.
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  Status s = w.Write(tmp, produce);
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    s = InvalidArgumentError(path + ": cannot replace the file");
  }
  if (!s.ok()) std::remove(tmp.c_str());
  return s;
}

AudioTensorSource SyntheticAudioTensors(const AudioConfig& c, int num_mel_bins, int text_hidden,
                                        uint64_t seed) {
  return [c, num_mel_bins, text_hidden, seed](const std::string& hf) -> std::optional<AudioTensor> {
    const std::string tower = kTower, sub = tower + "subsample_conv_projection.";
    const int64_t H = c.hidden_size, C0 = c.subsampling_channels[0], C1 = c.subsampling_channels[1],
                  O = c.output_proj_dims;
    // Two stride-2 convolutions (kernel 3, padding 1) over the mel bins.
    const int64_t freq = ConvOut(ConvOut(num_mel_bins));
    auto ends = [&](const char* suffix) { return hf.ends_with(suffix); };
    std::vector<int64_t> shape;
    float center = 0, scale = 0;
    if (hf == sub + "layer0.conv.weight") {
      shape = {C0, 1, 3, 3};
    } else if (hf == sub + "layer1.conv.weight") {
      shape = {C1, C0, 3, 3};
    } else if (hf == sub + "layer0.norm.weight" || hf == sub + "layer1.norm.weight") {
      shape = {hf == sub + "layer0.norm.weight" ? C0 : C1};
      center = 1.0f;
      scale = 0.1f;
    } else if (hf == sub + "input_proj_linear.weight") {
      shape = {H, freq * C1};
    } else if (hf == tower + "output_proj.weight") {
      shape = {O, H};
    } else if (hf == tower + "output_proj.bias") {
      shape = {O};
      scale = 0.02f;
    } else if (hf == std::string(kProjector)) {
      shape = {text_hidden, O};
    } else if (ends("_min") || ends("_max")) {
      if (!c.use_clipped_linears) return std::nullopt;
      return AudioTensor{
          {}, [hf](float* out) { out[0] = hf.find("_min") != std::string::npos ? -10.0f : 10.0f; }};
    } else if (ends("norm.weight") || ends("norm_pre_attn.weight") ||
               ends("norm_post_attn.weight") || ends("norm_out.weight")) {
      shape = {H};
      center = 1.0f;
      scale = 0.1f;
    } else if (ends("per_dim_scale")) {
      shape = {c.head_dim()};
      scale = 0.1f;
    } else if (ends("depthwise_conv1d.weight")) {
      shape = {H, 1, c.conv_kernel_size};
    } else if (ends("ffw_layer_1.linear.weight")) {
      shape = {4 * H, H};
    } else if (ends("ffw_layer_2.linear.weight")) {
      shape = {H, 4 * H};
    } else if (ends("linear_start.linear.weight")) {
      shape = {2 * H, H};
    } else if (ends("relative_k_proj.weight") || ends(".linear.weight")) {
      shape = {H, H};
    } else {
      return std::nullopt;
    }
    int64_t fan_in = 1;
    for (size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
    if (scale == 0)
      scale = 1.7320508f / std::sqrt(static_cast<float>(std::max<int64_t>(fan_in, 1)));
    const uint64_t tensor_seed = seed * 1000003ull + std::hash<std::string>()(hf);
    return AudioTensor{shape, [shape, center, scale, tensor_seed](float* out) {
                         int64_t n = 1;
                         for (int64_t d : shape) n *= d;
                         uint64_t x = tensor_seed | 1;  // xorshift64
                         for (int64_t i = 0; i < n; ++i) {
                           x ^= x << 13;
                           x ^= x >> 7;
                           x ^= x << 17;
                           const float u = static_cast<float>(x >> 40) / 16777216.0f * 2 - 1;
                           out[i] = center + u * scale;
                         }
                       }};
  };
}

Status WriteAudioMmproj(const LoadedModel& model, DType matrix_type, const std::string& path,
                        ThreadPool* pool, const std::string& add_to) {
  GEMMA4_ASSIGN_OR_RETURN(std::unique_ptr<AudioEncoder> enc, AudioEncoder::Load(model));
  const Checkpoint& ckpt = *model.checkpoint();
  auto source = [&ckpt](const std::string& hf) -> std::optional<AudioTensor> {
    const TensorView* t = ckpt.Find(hf);
    if (t == nullptr) return std::nullopt;
    const TensorView view = *t;
    return AudioTensor{view.shape, [view](float* out) { ops::ToF32(view, 0, view.numel(), out); }};
  };
  return WriteAudioMmproj(enc->config(), enc->feature_config().feature_size,
                          model.config().hidden_size, source, matrix_type, path, pool, add_to);
}

}  // namespace gemma4::audio
