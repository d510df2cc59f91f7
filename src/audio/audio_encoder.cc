#include "audio/audio_encoder.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <new>

#include "io/mapped_file.h"
#include "model/checkpoint.h"
#include "ops/ops.h"
#include "util/json.h"

namespace gemma4::audio {

namespace {

constexpr char kTower[] = "model.audio_tower.";
constexpr char kProjector[] = "model.embed_audio.embedding_projection.weight";

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// Conv2d(kernel 3, stride 2, padding 1) output length.
int64_t ConvOut(int64_t n) { return (n - 1) / 2 + 1; }

float Silu(float x) { return x / (1.0f + std::exp(-x)); }
float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// F.softplus (beta 1, threshold 20).
float Softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

// nn.LayerNorm over the last `n` values without bias, in place, then ReLU.
void LayerNormRelu(float* x, int64_t n, const float* weight, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const double mean = sum / static_cast<double>(n);
  double sq = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = x[i] - mean;
    sq += d * d;
  }
  const float var = static_cast<float>(sq / static_cast<double>(n));
  const float rstd = 1.0f / std::sqrt(var + eps);
  const float m = static_cast<float>(mean);
  for (int64_t i = 0; i < n; ++i) {
    const float y = (x[i] - m) * rstd * weight[i];
    x[i] = y > 0.0f ? y : 0.0f;
  }
}

// Gemma4AudioFeedForward, in place on x [S, H].
void FeedForward(const AudioLayerWeights::FeedForward& w, const AudioConfig& c, int64_t S,
                 std::vector<float>& x, std::vector<float>& normed, std::vector<float>& wide,
                 std::vector<float>& tmp, ThreadPool* pool) {
  const int64_t H = c.hidden_size;
  const float gc = c.gradient_clipping;
  for (int64_t t = 0; t < S; ++t) {
    float* n = normed.data() + t * H;
    std::copy_n(x.data() + t * H, H, n);
    ClampInPlace(n, H, -gc, gc);
    ops::RmsNorm(n, w.pre_norm.data(), H, c.rms_norm_eps, n);
  }
  ApplyClippableLinear(w.ffw1, normed.data(), S, H, wide.data(), pool);
  for (int64_t i = 0; i < S * 4 * H; ++i) wide[i] = Silu(wide[i]);
  ApplyClippableLinear(w.ffw2, wide.data(), S, 4 * H, tmp.data(), pool);
  const float scale = c.residual_weight;
  for (int64_t t = 0; t < S; ++t) {
    float* h = tmp.data() + t * H;
    ClampInPlace(h, H, -gc, gc);
    ops::RmsNorm(h, w.post_norm.data(), H, c.rms_norm_eps, h);
    float* r = x.data() + t * H;
    for (int64_t j = 0; j < H; ++j) r[j] = h[j] * scale + r[j];
  }
}

}  // namespace

StatusOr<std::unique_ptr<AudioEncoder>> AudioEncoder::Load(const LoadedModel& model) {
  const Checkpoint* ckpt = model.checkpoint();
  if (ckpt == nullptr) {
    return UnimplementedError(
        "this model was loaded from a GGUF file, which holds no audio tower; audio needs the "
        "Hugging Face checkpoint (llama.cpp mmproj audio is not supported yet)");
  }
  const json::Value* ac = ckpt->config_json().Find("audio_config");
  if (ac == nullptr || ac->is_null()) {
    return FailedPreconditionError(ckpt->config_path() +
                                   ": this checkpoint has no audio_config (a model without an "
                                   "audio tower); it cannot take audio");
  }
  auto enc = std::unique_ptr<AudioEncoder>(new AudioEncoder());
  try {
    GEMMA4_ASSIGN_OR_RETURN(enc->config_,
                            ParseAudioConfig(*ac, ckpt->config_path() + ": audio_config"));
    // Feature extractor settings beside config.json, when present.
    const std::string dir = DirOf(ckpt->config_path());
    for (const char* name : {"processor_config.json", "preprocessor_config.json"}) {
      const std::string path = dir + "/" + name;
      if (!IsFile(path)) continue;
      GEMMA4_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
      GEMMA4_ASSIGN_OR_RETURN(json::Value pc, json::Parse(text, path));
      const bool nested = pc.Find("feature_extractor") != nullptr;
      const bool flat =
          pc.Find("feature_size") != nullptr || pc.Find("feature_extractor_type") != nullptr;
      if (!nested && !flat) continue;  // an image-only processor file
      GEMMA4_RETURN_IF_ERROR(ApplyFeatureExtractorConfig(pc, path, &enc->features_));
      break;
    }
    const AudioConfig& c = enc->config_;
    enc->text_hidden_ = model.config().hidden_size;
    const int64_t H = c.hidden_size, hd = c.head_dim(), K = c.conv_kernel_size;
    const int64_t C0 = c.subsampling_channels[0], C1 = c.subsampling_channels[1];
    const int64_t O = c.output_proj_dims;
    if (H % 2 != 0) {
      return InvalidArgumentError(ckpt->config_path() +
                                  ": audio_config.hidden_size must be even (sin/cos positions)");
    }
    enc->freq_out_ = ConvOut(ConvOut(enc->features_.feature_size));
    if (enc->freq_out_ != C0 / 4) {
      return InvalidArgumentError(
          ckpt->config_path() + ": the audio tower's input projection takes " +
          std::to_string(C0 / 4) + " frequency rows (subsampling_conv_channels[0] / 4) but " +
          std::to_string(enc->features_.feature_size) + " mel bins give " +
          std::to_string(enc->freq_out_));
    }
    TowerReader r(*ckpt, "audio");
    const std::string sub = std::string(kTower) + "subsample_conv_projection.";
    if (ckpt->Find(sub + "layer0.conv.weight") == nullptr) {
      return NotFoundError(ckpt->path() +
                           ": no audio tower weights (model.audio_tower.*) in this checkpoint");
    }
    GEMMA4_RETURN_IF_ERROR(r.Vector(sub + "layer0.conv.weight", {C0, 1, 3, 3}, &enc->conv0_));
    GEMMA4_RETURN_IF_ERROR(r.Vector(sub + "layer0.norm.weight", {C0}, &enc->norm0_));
    GEMMA4_ASSIGN_OR_RETURN(enc->conv1_,
                            r.Matrix(sub + "layer1.conv.weight", C1, C0 * 9, {C1, C0, 3, 3}));
    GEMMA4_RETURN_IF_ERROR(r.Vector(sub + "layer1.norm.weight", {C1}, &enc->norm1_));
    GEMMA4_ASSIGN_OR_RETURN(enc->input_proj_,
                            r.Matrix(sub + "input_proj_linear.weight", H, (C0 / 4) * C1));

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
    enc->layers_.resize(c.num_layers);
    ThreadPool one(1);
    for (int i = 0; i < c.num_layers; ++i) {
      const std::string p = std::string(kTower) + "layers." + std::to_string(i) + ".";
      AudioLayerWeights& lw = enc->layers_[i];
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
      for (float& v : lw.per_dim_softplus) v = Softplus(v);
      lw.rel_keys.resize(P * H);
      ops::MatMul(lw.relative_k_proj, pos_table.data(), P, lw.rel_keys.data(), &one);
      const std::string l = p + "lconv1d.";
      GEMMA4_RETURN_IF_ERROR(r.Vector(l + "pre_layer_norm.weight", {H}, &lw.lconv_pre_norm));
      GEMMA4_RETURN_IF_ERROR(r.Vector(l + "conv_norm.weight", {H}, &lw.conv_norm));
      GEMMA4_RETURN_IF_ERROR(r.Linear(l + "linear_start", 2 * H, H, clip, &lw.linear_start));
      GEMMA4_RETURN_IF_ERROR(r.Linear(l + "linear_end", H, H, clip, &lw.linear_end));
      GEMMA4_RETURN_IF_ERROR(r.Vector(l + "depthwise_conv1d.weight", {H, 1, K}, &lw.depthwise));
    }
    GEMMA4_ASSIGN_OR_RETURN(enc->output_proj_,
                            r.Matrix(std::string(kTower) + "output_proj.weight", O, H));
    GEMMA4_RETURN_IF_ERROR(
        r.Vector(std::string(kTower) + "output_proj.bias", {O}, &enc->output_bias_));
    GEMMA4_ASSIGN_OR_RETURN(enc->projection_, r.Matrix(kProjector, enc->text_hidden_, O));
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory loading the audio tower");
  }
  return enc;
}

Status AudioEncoder::Encode(const AudioFeatures& features, ThreadPool* pool,
                            std::vector<float>* soft_tokens) const {
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
  try {
    // ---- Subsampling layer 0: mask rows, Conv2d(1 -> C0), LayerNorm, ReLU. Layout [t][f][c].
    const int64_t T1 = ConvOut(T), F1 = ConvOut(F);
    std::vector<float> y0(T1 * F1 * C0);
    pool->ParallelFor(T1, 4, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
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
          float* out = y0.data() + (t * F1 + f) * C0;
          for (int64_t ch = 0; ch < C0; ++ch) {
            const float* w = conv0_.data() + ch * 9;
            float s = 0.0f;
            for (int k = 0; k < 9; ++k) s += w[k] * patch[k];
            out[ch] = s;
          }
          LayerNormRelu(out, C0, norm0_.data(), eps);
        }
      }
    });
    std::vector<uint8_t> mask1(T1);
    for (int64_t t = 0; t < T1; ++t) mask1[t] = features.mask[2 * t];

    // ---- Layer 1: mask rows, Conv2d(C0 -> C1) as patches [rows, C0 * 9] x conv1^T.
    const int64_t T2 = ConvOut(T1), F2 = ConvOut(F1);
    std::vector<float> y1(T2 * F2 * C1);
    constexpr int64_t kRowsPerPass = 8;  // output time steps per im2col pass
    std::vector<float> patches(std::min(T2, kRowsPerPass) * F2 * C0 * 9);
    for (int64_t t0 = 0; t0 < T2; t0 += kRowsPerPass) {
      const int64_t nt = std::min(kRowsPerPass, T2 - t0);
      pool->ParallelFor(nt * F2, 8, [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; ++item) {
          const int64_t t = t0 + item / F2, f = item % F2;
          float* row = patches.data() + item * C0 * 9;
          for (int kt = 0; kt < 3; ++kt) {
            for (int kf = 0; kf < 3; ++kf) {
              const int64_t ti = 2 * t - 1 + kt, fi = 2 * f - 1 + kf;
              const bool in = ti >= 0 && ti < T1 && fi >= 0 && fi < F1;
              const float m = in && mask1[ti] ? 1.0f : 0.0f;
              const float* src = in ? y0.data() + (ti * F1 + fi) * C0 : nullptr;
              for (int64_t ci = 0; ci < C0; ++ci) {
                row[ci * 9 + kt * 3 + kf] = in ? src[ci] * m : 0.0f;
              }
            }
          }
        }
      });
      float* out = y1.data() + t0 * F2 * C1;
      ops::MatMul(conv1_, patches.data(), nt * F2, out, pool);
      for (int64_t i = 0; i < nt * F2; ++i) LayerNormRelu(out + i * C1, C1, norm1_.data(), eps);
    }
    y0 = std::vector<float>();
    patches = std::vector<float>();
    std::vector<uint8_t> valid(T2);
    for (int64_t t = 0; t < T2; ++t) valid[t] = mask1[2 * t];

    // ---- Input projection: [T2, F2 * C1] (frequency-major, channels inner) -> [T2, H].
    const int64_t S = T2;
    std::vector<float> x(S * H);
    ops::MatMul(input_proj_, y1.data(), S, x.data(), pool);
    y1 = std::vector<float>();

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

    std::vector<float> normed(S * H), q(S * H), k(S * H), v(S * H), attn(S * H), tmp(S * H),
        in_copy(S * H), wide(S * 4 * H);
    for (const AudioLayerWeights& lw : layers_) {
      FeedForward(lw.ff1, c, S, x, normed, wide, tmp, pool);

      // Attention block: clamp + norm_pre_attn, chunked attention, clamp + norm_post_attn.
      for (int64_t t = 0; t < S; ++t) {
        float* n = normed.data() + t * H;
        std::copy_n(x.data() + t * H, H, n);
        ClampInPlace(n, H, -gc, gc);
        ops::RmsNorm(n, lw.norm_pre_attn.data(), H, eps, n);
      }
      auto project = [&](const ClippableLinear& l, float* y) {
        std::copy(normed.begin(), normed.end(), in_copy.begin());
        ApplyClippableLinear(l, in_copy.data(), S, H, y, pool);
      };
      project(lw.q_proj, q.data());
      project(lw.k_proj, k.data());
      project(lw.v_proj, v.data());
      for (int64_t t = 0; t < S; ++t) {
        for (int64_t h = 0; h < nh; ++h) {
          float* qh = q.data() + t * H + h * hd;
          for (int64_t d = 0; d < hd; ++d) qh[d] = qh[d] * q_scale * lw.per_dim_softplus[d];
        }
        float* kt = k.data() + t * H;
        for (int64_t j = 0; j < H; ++j) kt[j] = kt[j] * k_scale;
      }
      // One item: a block of `chunk` queries and one head.
      pool->ParallelFor(nb * nh, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> bd(chunk * P), logits(C);
        for (int64_t item = begin; item < end; ++item) {
          const int64_t b = item / nh, h = item % nh;
          const int64_t q0 = b * chunk;
          // matrix_bd before the shift: q_i . rel_key[p] for the block's queries.
          for (int64_t i = 0; i < chunk; ++i) {
            const int64_t qi = q0 + i;
            for (int64_t p = 0; p < P; ++p) {
              bd[i * P + p] = qi < S ? ops::Dot(q.data() + qi * H + h * hd,
                                                lw.rel_keys.data() + p * H + h * hd, hd)
                                     : 0.0f;
            }
          }
          for (int64_t i = 0; i < chunk && q0 + i < S; ++i) {
            const int64_t qi = q0 + i;
            const float* qv = q.data() + qi * H + h * hd;
            for (int64_t j = 0; j < C; ++j) {
              const int64_t kv = q0 - past + j;
              const float ac =
                  kv >= 0 && kv < S ? ops::Dot(qv, k.data() + kv * H + h * hd, hd) : 0.0f;
              // _rel_shift: row i of the shifted [chunk, C] is the flat [chunk, C + 1]-padded
              // matrix read from i * C.
              const int64_t flat = i * C + j, r = flat / (C + 1), col = flat % (C + 1);
              const float rel = col < P ? bd[r * P + col] : 0.0f;
              float logit = ac + rel;
              logit = logit / cap;
              logit = std::tanh(logit);
              logit = logit * cap;
              logits[j] = masked(qi, kv) ? invalid : logit;
            }
            ops::Softmax(logits.data(), C);
            float* o = attn.data() + qi * H + h * hd;
            std::fill(o, o + hd, 0.0f);
            for (int64_t j = 0; j < C; ++j) {
              const int64_t kv = q0 - past + j;
              if (kv < 0 || kv >= S) continue;  // zero padding
              const float p = logits[j];
              const float* vv = v.data() + kv * H + h * hd;
              for (int64_t d = 0; d < hd; ++d) o[d] += p * vv[d];
            }
          }
        }
      });
      ApplyClippableLinear(lw.post, attn.data(), S, H, tmp.data(), pool);
      for (int64_t t = 0; t < S; ++t) {
        float* h = tmp.data() + t * H;
        ClampInPlace(h, H, -gc, gc);
        ops::RmsNorm(h, lw.norm_post_attn.data(), H, eps, h);
        float* r = x.data() + t * H;
        for (int64_t j = 0; j < H; ++j) r[j] = h[j] + r[j];
      }

      // Light conv: norm, linear_start, GLU, causal depthwise conv, clamp, norm, SiLU,
      // linear_end, residual.
      for (int64_t t = 0; t < S; ++t) {
        ops::RmsNorm(x.data() + t * H, lw.lconv_pre_norm.data(), H, eps, normed.data() + t * H);
      }
      ApplyClippableLinear(lw.linear_start, normed.data(), S, H, wide.data(), pool);
      for (int64_t t = 0; t < S; ++t) {
        const float* in = wide.data() + t * 2 * H;
        float* g = attn.data() + t * H;
        for (int64_t j = 0; j < H; ++j) g[j] = in[j] * Sigmoid(in[H + j]);
      }
      for (int64_t t = 0; t < S; ++t) {
        float* out = tmp.data() + t * H;
        for (int64_t j = 0; j < H; ++j) {
          const float* w = lw.depthwise.data() + j * K;
          float s = 0.0f;
          for (int64_t kk = 0; kk < K; ++kk) {
            const int64_t ti = t - (K - 1) + kk;
            if (ti >= 0) s += w[kk] * attn[ti * H + j];
          }
          out[j] = s;
        }
        ClampInPlace(out, H, -gc, gc);
        ops::RmsNorm(out, lw.conv_norm.data(), H, eps, out);
        for (int64_t j = 0; j < H; ++j) out[j] = Silu(out[j]);
      }
      ApplyClippableLinear(lw.linear_end, tmp.data(), S, H, normed.data(), pool);
      for (int64_t i = 0; i < S * H; ++i) x[i] = normed[i] + x[i];

      FeedForward(lw.ff2, c, S, x, normed, wide, tmp, pool);
      for (int64_t t = 0; t < S; ++t) {
        float* r = x.data() + t * H;
        ClampInPlace(r, H, -gc, gc);
        ops::RmsNorm(r, lw.norm_out.data(), H, eps, r);
      }
    }

    // ---- Valid rows only, output_proj (+ bias), embed_audio.
    int64_t n_valid = 0;
    for (int64_t t = 0; t < S; ++t) {
      if (!valid[t]) continue;
      if (n_valid != t) std::copy_n(x.data() + t * H, H, x.data() + n_valid * H);
      ++n_valid;
    }
    std::vector<float> out(n_valid * O);
    ops::MatMul(output_proj_, x.data(), n_valid, out.data(), pool);
    for (int64_t t = 0; t < n_valid; ++t) {
      float* row = out.data() + t * O;
      for (int64_t j = 0; j < O; ++j) row[j] = row[j] + output_bias_[j];
      ops::RmsNorm(row, nullptr, O, eps, row);
    }
    soft_tokens->resize(n_valid * text_hidden_);
    ops::MatMul(projection_, out.data(), n_valid, soft_tokens->data(), pool);
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory encoding " + std::to_string(T) + " audio frames");
  }
  return OkStatus();
}

Status EncodeClip(const AudioEncoder& encoder, const float* samples, int64_t n, ThreadPool* pool,
                  std::vector<std::vector<float>>* pieces) {
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
    GEMMA4_RETURN_IF_ERROR(encoder.Encode(features, pool, &soft));
    pieces->push_back(std::move(soft));
  }
  return OkStatus();
}

}  // namespace gemma4::audio
