#include "vision/vision_encoder.h"

#include <sys/stat.h>
#include <algorithm>
#include <cmath>
#include <limits>
#include <new>

#include "io/mapped_file.h"
#include "model/checkpoint.h"
#include "ops/ops.h"
#include "util/json.h"

namespace gemma4::vision {

namespace {

constexpr char kTower[] = "model.vision_tower.";
constexpr char kProjector[] = "model.embed_vision.embedding_projection.weight";

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

class TowerReader {
 public:
  explicit TowerReader(const Checkpoint& ckpt) : ckpt_(ckpt) {}

  StatusOr<TensorView> Matrix(const std::string& name, int64_t rows, int64_t cols) const {
    GEMMA4_ASSIGN_OR_RETURN(TensorView t, Find(name));
    if (t.shape != std::vector<int64_t>{rows, cols}) {
      return InvalidArgumentError(t.file + ": tensor '" + name + "' has shape " + t.ShapeString() +
                                  ", expected [" + std::to_string(rows) + ", " +
                                  std::to_string(cols) + "]");
    }
    if (!IsComputeType(t.dtype) || (IsBlockType(t.dtype) && cols % 32 != 0)) {
      return UnimplementedError(t.file + ": tensor '" + name + "' has dtype " + DTypeName(t.dtype) +
                                ", which the vision tower cannot multiply");
    }
    return t;
  }

  // A float tensor of `count` values widened to f32.
  Status Vector(const std::string& name, const std::vector<int64_t>& shape,
                std::vector<float>* out) const {
    GEMMA4_ASSIGN_OR_RETURN(TensorView t, Find(name));
    if (t.shape != shape) {
      TensorView want;
      want.shape = shape;
      return InvalidArgumentError(t.file + ": tensor '" + name + "' has shape " + t.ShapeString() +
                                  ", expected " + want.ShapeString());
    }
    if (IsBlockType(t.dtype) || !IsComputeType(t.dtype)) {
      return UnimplementedError(t.file + ": tensor '" + name + "' must be F32, F16 or BF16, not " +
                                DTypeName(t.dtype));
    }
    out->resize(t.numel());
    ops::ToF32(t, 0, t.numel(), out->data());
    return OkStatus();
  }

  Status Scalar(const std::string& name, float* out) const {
    GEMMA4_ASSIGN_OR_RETURN(TensorView t, Find(name));
    if (t.numel() != 1 || IsBlockType(t.dtype) || !IsComputeType(t.dtype)) {
      return InvalidArgumentError(t.file + ": tensor '" + name + "' must be one float, got " +
                                  DTypeName(t.dtype) + " " + t.ShapeString());
    }
    ops::ToF32(t, 0, 1, out);
    return OkStatus();
  }

  Status Linear(const std::string& name, int64_t rows, int64_t cols, bool clipped,
                ClippedLinear* out) const {
    GEMMA4_ASSIGN_OR_RETURN(out->weight, Matrix(name + ".linear.weight", rows, cols));
    out->clipped = clipped;
    if (clipped) {
      GEMMA4_RETURN_IF_ERROR(Scalar(name + ".input_min", &out->input_min));
      GEMMA4_RETURN_IF_ERROR(Scalar(name + ".input_max", &out->input_max));
      GEMMA4_RETURN_IF_ERROR(Scalar(name + ".output_min", &out->output_min));
      GEMMA4_RETURN_IF_ERROR(Scalar(name + ".output_max", &out->output_max));
    }
    return OkStatus();
  }

 private:
  StatusOr<TensorView> Find(const std::string& name) const {
    const TensorView* t = ckpt_.Find(name);
    if (t == nullptr) {
      return NotFoundError(ckpt_.path() + ": missing vision tensor '" + name + "'");
    }
    return *t;
  }
  const Checkpoint& ckpt_;
};

// torch.clamp(x, lo, hi): max then min, NaN kept.
void Clamp(float* x, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::min(std::max(x[i], lo), hi);
}

// y[s, out] = clip_out(W clip_in(x)); x is clamped in place when the layer clips.
void ApplyLinear(const ClippedLinear& l, float* x, int64_t s, int64_t in_dim, float* y,
                 ThreadPool* pool) {
  if (l.clipped) Clamp(x, s * in_dim, l.input_min, l.input_max);
  ops::MatMul(l.weight, x, s, y, pool);
  if (l.clipped) Clamp(y, s * l.weight.shape[0], l.output_min, l.output_max);
}

// Rotate-half RoPE over one contiguous part of `width` values with cos/sin of width / 2
// frequencies (the part's angles repeat over its two halves).
void RotateHalf(float* x, int width, const float* cos_t, const float* sin_t) {
  const int half = width / 2;
  for (int i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos_t[i] + (-b) * sin_t[i];
    x[i + half] = b * cos_t[i] + a * sin_t[i];
  }
}

}  // namespace

StatusOr<std::unique_ptr<VisionEncoder>> VisionEncoder::Load(const LoadedModel& model) {
  const Checkpoint* ckpt = model.checkpoint();
  if (ckpt == nullptr) {
    return UnimplementedError(
        "this model was loaded from a GGUF file, which holds no vision tower; give the "
        "llama.cpp mmproj file of the same model (mmproj files are not supported yet)");
  }
  const json::Value* vc = ckpt->config_json().Find("vision_config");
  if (vc == nullptr || vc->is_null()) {
    return FailedPreconditionError(ckpt->config_path() +
                                   ": this checkpoint has no vision_config (a text-only "
                                   "model); it cannot take images");
  }
  auto enc = std::unique_ptr<VisionEncoder>(new VisionEncoder());
  GEMMA4_ASSIGN_OR_RETURN(enc->config_,
                          ParseVisionConfig(*vc, ckpt->config_path() + ": vision_config"));
  // Image processor settings beside config.json, when present.
  const std::string dir = DirOf(ckpt->config_path());
  for (const char* name : {"processor_config.json", "preprocessor_config.json"}) {
    const std::string path = dir + "/" + name;
    if (!IsFile(path)) continue;
    GEMMA4_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    GEMMA4_ASSIGN_OR_RETURN(json::Value pc, json::Parse(text, path));
    if (std::string(name) == "processor_config.json" && pc.Find("image_processor") == nullptr) {
      continue;  // a processor without an image part
    }
    GEMMA4_RETURN_IF_ERROR(ApplyImageProcessorConfig(pc, path, &enc->config_));
    break;
  }
  const VisionConfig& c = enc->config_;
  enc->text_hidden_ = model.config().hidden_size;
  const int64_t Hv = c.hidden_size, hd = c.head_dim, I = c.intermediate_size;
  const int64_t q_dim = int64_t{c.num_heads} * hd, kv_dim = int64_t{c.num_kv_heads} * hd;
  const int64_t patch_dim = int64_t{c.patch_size} * c.patch_size * 3;
  TowerReader r(*ckpt);
  if (ckpt->Find(std::string(kTower) + "patch_embedder.input_proj.weight") == nullptr) {
    return NotFoundError(ckpt->path() +
                         ": no vision tower weights (model.vision_tower.*) in this checkpoint");
  }
  const std::string pe = std::string(kTower) + "patch_embedder.";
  GEMMA4_ASSIGN_OR_RETURN(enc->input_proj_, r.Matrix(pe + "input_proj.weight", Hv, patch_dim));
  GEMMA4_RETURN_IF_ERROR(r.Vector(pe + "position_embedding_table",
                                  {2, c.position_embedding_size, Hv}, &enc->position_table_));
  enc->layers_.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = std::string(kTower) + "encoder.layers." + std::to_string(i) + ".";
    VisionLayerWeights& lw = enc->layers_[i];
    GEMMA4_RETURN_IF_ERROR(r.Vector(p + "input_layernorm.weight", {Hv}, &lw.input_norm));
    GEMMA4_RETURN_IF_ERROR(
        r.Vector(p + "post_attention_layernorm.weight", {Hv}, &lw.post_attention_norm));
    GEMMA4_RETURN_IF_ERROR(
        r.Vector(p + "pre_feedforward_layernorm.weight", {Hv}, &lw.pre_ffn_norm));
    GEMMA4_RETURN_IF_ERROR(
        r.Vector(p + "post_feedforward_layernorm.weight", {Hv}, &lw.post_ffn_norm));
    GEMMA4_RETURN_IF_ERROR(r.Vector(p + "self_attn.q_norm.weight", {hd}, &lw.q_norm));
    GEMMA4_RETURN_IF_ERROR(r.Vector(p + "self_attn.k_norm.weight", {hd}, &lw.k_norm));
    const bool clip = c.use_clipped_linears;
    GEMMA4_RETURN_IF_ERROR(r.Linear(p + "self_attn.q_proj", q_dim, Hv, clip, &lw.q_proj));
    GEMMA4_RETURN_IF_ERROR(r.Linear(p + "self_attn.k_proj", kv_dim, Hv, clip, &lw.k_proj));
    GEMMA4_RETURN_IF_ERROR(r.Linear(p + "self_attn.v_proj", kv_dim, Hv, clip, &lw.v_proj));
    GEMMA4_RETURN_IF_ERROR(r.Linear(p + "self_attn.o_proj", Hv, q_dim, clip, &lw.o_proj));
    GEMMA4_RETURN_IF_ERROR(r.Linear(p + "mlp.gate_proj", I, Hv, clip, &lw.gate_proj));
    GEMMA4_RETURN_IF_ERROR(r.Linear(p + "mlp.up_proj", I, Hv, clip, &lw.up_proj));
    GEMMA4_RETURN_IF_ERROR(r.Linear(p + "mlp.down_proj", Hv, I, clip, &lw.down_proj));
  }
  if (c.standardize) {
    GEMMA4_RETURN_IF_ERROR(r.Vector(std::string(kTower) + "std_bias", {Hv}, &enc->std_bias_));
    GEMMA4_RETURN_IF_ERROR(r.Vector(std::string(kTower) + "std_scale", {Hv}, &enc->std_scale_));
  }
  GEMMA4_ASSIGN_OR_RETURN(enc->projection_, r.Matrix(kProjector, enc->text_hidden_, Hv));
  // Axial RoPE: inv_freq[i] = 1 / theta^(f32(2i) / (hd / 2)) for i < hd / 4, in f32 as
  // torch computes `1.0 / (base ** (arange(0, spatial, 2, float) / spatial))`.
  const int spatial = c.head_dim / 2;
  enc->inv_freq_.resize(spatial / 2);
  for (int i = 0; i < spatial / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(spatial);
    const float power = std::pow(c.rope_theta, exponent);
    enc->inv_freq_[i] = 1.0f / power;
  }
  return enc;
}

Status VisionEncoder::Encode(const ImagePatches& image, ThreadPool* pool,
                             std::vector<float>* out) const {
  const VisionConfig& c = config_;
  const int64_t N = image.num_patches();
  const int64_t Hv = c.hidden_size, hd = c.head_dim, I = c.intermediate_size;
  const int64_t n_heads = c.num_heads, n_kv = c.num_kv_heads, n_rep = n_heads / n_kv;
  const int64_t q_dim = n_heads * hd, kv_dim = n_kv * hd;
  const int k = c.pooling_kernel_size;
  const float eps = c.rms_norm_eps;
  if (image.patch_size != c.patch_size ||
      image.pixels.size() != static_cast<size_t>(N) * c.patch_size * c.patch_size * 3) {
    return InvalidArgumentError("image patches of size " + std::to_string(image.patch_size) +
                                " do not fit the vision tower's " + std::to_string(c.patch_size));
  }
  if (N <= 0 || image.patches_h % k != 0 || image.patches_w % k != 0) {
    return InvalidArgumentError("an image of " + std::to_string(image.patches_w) + "x" +
                                std::to_string(image.patches_h) +
                                " patches is not a whole number of " + std::to_string(k) + "x" +
                                std::to_string(k) + " pooling windows");
  }
  if (image.patches_w > c.position_embedding_size || image.patches_h > c.position_embedding_size) {
    return InvalidArgumentError("an image of " + std::to_string(image.patches_w) + "x" +
                                std::to_string(image.patches_h) +
                                " patches exceeds the position table (" +
                                std::to_string(c.position_embedding_size) + " per axis)");
  }
  std::unique_ptr<ThreadPool> own_pool;
  if (pool == nullptr) {
    own_pool = std::make_unique<ThreadPool>(1);
    pool = own_pool.get();
  }
  try {
    // Patch embedding: input_proj(2 * (pixels - 0.5)) + (table[0][x] + table[1][y]).
    std::vector<float> centered(image.pixels.size());
    for (size_t i = 0; i < centered.size(); ++i) centered[i] = (image.pixels[i] - 0.5f) * 2.0f;
    std::vector<float> x(N * Hv);
    ops::MatMul(input_proj_, centered.data(), N, x.data(), pool);
    centered = std::vector<float>();
    const int64_t P = c.position_embedding_size;
    for (int64_t p = 0; p < N; ++p) {
      const int64_t px = p % image.patches_w, py = p / image.patches_w;
      const float* ex = position_table_.data() + px * Hv;
      const float* ey = position_table_.data() + (P + py) * Hv;
      float* row = x.data() + p * Hv;
      for (int64_t j = 0; j < Hv; ++j) row[j] += ex[j] + ey[j];
    }

    // cos/sin per patch: [N, hd / 2] as (x freqs, y freqs); each axis' part of a head is
    // hd / 2 values rotated by rotate-half with hd / 4 frequencies.
    const int quarter = static_cast<int>(hd / 4);
    std::vector<float> cos_t(N * 2 * quarter), sin_t(N * 2 * quarter);
    for (int64_t p = 0; p < N; ++p) {
      const float pos[2] = {static_cast<float>(p % image.patches_w),
                            static_cast<float>(p / image.patches_w)};
      for (int axis = 0; axis < 2; ++axis) {
        for (int i = 0; i < quarter; ++i) {
          const float angle = pos[axis] * inv_freq_[i];
          cos_t[(p * 2 + axis) * quarter + i] = std::cos(angle);
          sin_t[(p * 2 + axis) * quarter + i] = std::sin(angle);
        }
      }
    }

    std::vector<float> normed(N * Hv), q(N * q_dim), kk(N * kv_dim), v(N * kv_dim), attn(N * q_dim),
        tmp(N * Hv);
    constexpr int64_t kMlpRows = 256;  // [rows, I] gate/up slices bound the scratch
    std::vector<float> gate(std::min(N, kMlpRows) * I), up(std::min(N, kMlpRows) * I);
    std::vector<float> up_in(c.use_clipped_linears ? std::min(N, kMlpRows) * Hv : 0);
    for (const VisionLayerWeights& lw : layers_) {
      for (int64_t t = 0; t < N; ++t) {
        ops::RmsNorm(x.data() + t * Hv, lw.input_norm.data(), Hv, eps, normed.data() + t * Hv);
      }
      // Clamping the shared input in place is safe: q, k and v clamp it to their own bounds,
      // so each needs its own copy when clipping.
      auto project = [&](const ClippedLinear& l, float* y) {
        if (l.clipped) {
          tmp.assign(normed.begin(), normed.end());
          ApplyLinear(l, tmp.data(), N, Hv, y, pool);
        } else {
          ops::MatMul(l.weight, normed.data(), N, y, pool);
        }
      };
      project(lw.q_proj, q.data());
      project(lw.k_proj, kk.data());
      project(lw.v_proj, v.data());
      pool->ParallelFor(N, 16, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          const float* ct = cos_t.data() + t * 2 * quarter;
          const float* st = sin_t.data() + t * 2 * quarter;
          for (int64_t h = 0; h < n_heads; ++h) {
            float* qh = q.data() + t * q_dim + h * hd;
            ops::RmsNorm(qh, lw.q_norm.data(), hd, eps, qh);
            RotateHalf(qh, static_cast<int>(hd / 2), ct, st);
            RotateHalf(qh + hd / 2, static_cast<int>(hd / 2), ct + quarter, st + quarter);
          }
          for (int64_t g = 0; g < n_kv; ++g) {
            float* kh = kk.data() + t * kv_dim + g * hd;
            ops::RmsNorm(kh, lw.k_norm.data(), hd, eps, kh);
            RotateHalf(kh, static_cast<int>(hd / 2), ct, st);
            RotateHalf(kh + hd / 2, static_cast<int>(hd / 2), ct + quarter, st + quarter);
            float* vh = v.data() + t * kv_dim + g * hd;
            ops::RmsNorm(vh, nullptr, hd, eps, vh);
          }
        }
      });
      // Bidirectional attention over every patch, scale 1.0, softmax in f32. One item: a
      // patch and a KV head with its n_rep query heads.
      pool->ParallelFor(N * n_kv, 1, [&](int64_t begin, int64_t end) {
        thread_local std::vector<float> scores;
        scores.resize(n_rep * N);
        for (int64_t item = begin; item < end; ++item) {
          const int64_t t = item / n_kv, g = item % n_kv;
          const float* qh = q.data() + t * q_dim + g * n_rep * hd;
          ops::AttentionScores(qh, hd, static_cast<int>(n_rep), kk.data() + g * hd, kv_dim, N, hd,
                               scores.data(), N);
          for (int64_t h = 0; h < n_rep; ++h) ops::Softmax(scores.data() + h * N, N);
          float* o = attn.data() + t * q_dim + g * n_rep * hd;
          std::fill(o, o + n_rep * hd, 0.0f);
          ops::AttentionValues(scores.data(), N, static_cast<int>(n_rep), v.data() + g * hd, kv_dim,
                               N, hd, o, hd);
        }
      });
      ApplyLinear(lw.o_proj, attn.data(), N, q_dim, tmp.data(), pool);
      for (int64_t t = 0; t < N; ++t) {
        float* h = tmp.data() + t * Hv;
        ops::RmsNorm(h, lw.post_attention_norm.data(), Hv, eps, h);
        for (int64_t j = 0; j < Hv; ++j) x[t * Hv + j] += h[j];
        ops::RmsNorm(x.data() + t * Hv, lw.pre_ffn_norm.data(), Hv, eps, normed.data() + t * Hv);
      }
      for (int64_t t0 = 0; t0 < N; t0 += kMlpRows) {
        const int64_t n = std::min(kMlpRows, N - t0);
        float* in = normed.data() + t0 * Hv;
        if (lw.gate_proj.clipped) {
          // gate and up clamp the same input to their own bounds.
          std::copy_n(in, n * Hv, up_in.data());
          ApplyLinear(lw.gate_proj, in, n, Hv, gate.data(), pool);
          ApplyLinear(lw.up_proj, up_in.data(), n, Hv, up.data(), pool);
        } else {
          ops::MatMul(lw.gate_proj.weight, in, n, gate.data(), pool);
          ops::MatMul(lw.up_proj.weight, in, n, up.data(), pool);
        }
        ops::GeluMul(gate.data(), up.data(), gate.data(), n * I, pool);
        ApplyLinear(lw.down_proj, gate.data(), n, I, tmp.data() + t0 * Hv, pool);
      }
      for (int64_t t = 0; t < N; ++t) {
        float* h = tmp.data() + t * Hv;
        ops::RmsNorm(h, lw.post_ffn_norm.data(), Hv, eps, h);
        for (int64_t j = 0; j < Hv; ++j) x[t * Hv + j] += h[j];
      }
    }

    // Pooling: the mean of each k x k window of patches (each value * f32(1 / k^2), summed in
    // patch order), slot = x / k + (W / k) * (y / k), then * f32(sqrt(Hv)).
    const int64_t pw = image.patches_w / k, ph = image.patches_h / k, M = pw * ph;
    const float weight = 1.0f / static_cast<float>(k * k);
    const float root = static_cast<float>(std::sqrt(static_cast<double>(Hv)));
    std::vector<float> pooled(M * Hv, 0.0f);
    for (int64_t p = 0; p < N; ++p) {
      const int64_t px = p % image.patches_w, py = p / image.patches_w;
      float* dst = pooled.data() + ((py / k) * pw + px / k) * Hv;
      const float* src = x.data() + p * Hv;
      for (int64_t j = 0; j < Hv; ++j) dst[j] += src[j] * weight;
    }
    for (int64_t m = 0; m < M; ++m) {
      float* row = pooled.data() + m * Hv;
      for (int64_t j = 0; j < Hv; ++j) row[j] *= root;
      if (c.standardize) {
        for (int64_t j = 0; j < Hv; ++j) row[j] = (row[j] - std_bias_[j]) * std_scale_[j];
      }
      // embed_vision: RMSNorm without weight, then the projection.
      ops::RmsNorm(row, nullptr, Hv, eps, row);
    }
    out->resize(M * text_hidden_);
    ops::MatMul(projection_, pooled.data(), M, out->data(), pool);
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory encoding an image of " + std::to_string(N) +
                                  " patches");
  }
  return OkStatus();
}

}  // namespace gemma4::vision
