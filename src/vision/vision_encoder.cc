#include "vision/vision_encoder.h"

#include <algorithm>
#include <cmath>
#include <limits>
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
#include "runtime/thread_scratch.h"

namespace gemma4::vision {

namespace {

constexpr char kTower[] = "model.vision_tower.";
constexpr char kProjector[] = "model.embed_vision.embedding_projection.weight";

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

StatusOr<std::unique_ptr<VisionEncoder>> VisionEncoder::Load(const LoadedModel& model,
                                                             ThreadPool* pool) {
  const Checkpoint* ckpt = model.checkpoint();
  if (ckpt == nullptr && model.HasGgufTensor(mmproj::MarkerTensor(mmproj::Tower::kVision))) {
    // An Ollama blob: the tower is inline, stored as in an mmproj.
    return LoadMmproj(model.source_path(), model.config().hidden_size, pool);
  }
  if (ckpt == nullptr) {
    return UnimplementedError(
        "this model was loaded from a GGUF file, which holds no vision tower; give the "
        "llama.cpp mmproj file of the same model (--mmproj, ModelOptions::mmproj_path)");
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
  for (const std::string& path : ProcessorConfigFiles(*ckpt)) {
    GEMMA4_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    GEMMA4_ASSIGN_OR_RETURN(json::Value pc, json::Parse(text, path));
    if (path.ends_with("/processor_config.json") && pc.Find("image_processor") == nullptr) {
      continue;  // a processor without an image part
    }
    GEMMA4_RETURN_IF_ERROR(ApplyImageProcessorConfig(pc, path, &enc->config_));
    break;
  }
  enc->text_hidden_ = model.config().hidden_size;
  enc->load_pool_ = pool;
  GEMMA4_RETURN_IF_ERROR(
      enc->LoadTensors([ckpt](const std::string& name) { return ckpt->Find(name); }, ckpt->path()));
  enc->checkpoint_ = ckpt;
  return enc;
}

Status VisionEncoder::LoadTensors(const std::function<const TensorView*(const std::string&)>& find,
                                  const std::string& source) {
  const VisionConfig& c = config_;
  const int64_t Hv = c.hidden_size, hd = c.head_dim, I = c.intermediate_size;
  const int64_t q_dim = int64_t{c.num_heads} * hd, kv_dim = int64_t{c.num_kv_heads} * hd;
  const int64_t patch_dim = int64_t{c.patch_size} * c.patch_size * 3;
  TowerReader r(find, source, "vision");
  ThreadPool* const pool = std::exchange(load_pool_, nullptr);  // not kept past loading
  r.UsePool(pool);
  if (find(std::string(kTower) + "patch_embedder.input_proj.weight") == nullptr) {
    return NotFoundError(source + ": no vision tower weights in this file");
  }
  const std::string pe = std::string(kTower) + "patch_embedder.";
  const TensorView* patch = find(pe + "input_proj.weight");
  if (patch->shape == std::vector<int64_t>{Hv, 3, c.patch_size, c.patch_size}) {
    // llama.cpp stores the patch embedding as a convolution, values in (channel, row, column)
    // order; the patches here are (row, column, channel).
    if (IsBlockType(patch->dtype) || !IsComputeType(patch->dtype)) {
      return UnimplementedError(patch->file + ": patch embedding '" + patch->name +
                                "' must be F32, F16 or BF16");
    }
    std::vector<float> conv(patch->numel());
    ops::ToF32(*patch, 0, patch->numel(), conv.data());
    std::vector<float> reordered(conv.size());
    const int64_t p = c.patch_size;
    for (int64_t o = 0; o < Hv; ++o) {
      for (int64_t ch = 0; ch < 3; ++ch) {
        for (int64_t y = 0; y < p; ++y) {
          for (int64_t x = 0; x < p; ++x) {
            reordered[o * patch_dim + (y * p + x) * 3 + ch] = conv[((o * 3 + ch) * p + y) * p + x];
          }
        }
      }
    }
    TensorView& w = input_proj_.weight;
    w = *patch;
    w.dtype = DType::kF32;
    w.shape = {Hv, patch_dim};
    w.data = reinterpret_cast<const uint8_t*>(reordered.data());
    w.nbytes = reordered.size() * sizeof(float);
    w.fd = -1;
    // Packed once into f32 panels (the reordered copy's bytes), which every encode multiplies;
    // the view keeps the shape and type only (the copy is freed: the packed weights serve).
    auto packed = std::make_shared<ops::PackedGemmWeights>();
    ops::PackGemmWeights(w, packed.get(), pool);
    input_proj_.packed = std::move(packed);
    input_proj_.clipped = false;
    w.data = nullptr;
    w.nbytes = 0;
  } else {
    GEMMA4_RETURN_IF_ERROR(r.PackedMatrix(pe + "input_proj.weight", Hv, patch_dim, &input_proj_));
  }
  GEMMA4_RETURN_IF_ERROR(r.Vector(pe + "position_embedding_table",
                                  {2, c.position_embedding_size, Hv}, &position_table_));
  layers_.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = std::string(kTower) + "encoder.layers." + std::to_string(i) + ".";
    VisionLayerWeights& lw = layers_[i];
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
    GEMMA4_RETURN_IF_ERROR(r.Vector(std::string(kTower) + "std_bias", {Hv}, &std_bias_));
    GEMMA4_RETURN_IF_ERROR(r.Vector(std::string(kTower) + "std_scale", {Hv}, &std_scale_));
  }
  GEMMA4_RETURN_IF_ERROR(r.PackedMatrix(kProjector, text_hidden_, Hv, &projection_));
  // Axial RoPE: inv_freq[i] = 1 / theta^(f32(2i) / (hd / 2)) for i < hd / 4, in f32 as
  // torch computes `1.0 / (base ** (arange(0, spatial, 2, float) / spatial))`.
  const int spatial = c.head_dim / 2;
  inv_freq_.resize(spatial / 2);
  for (int i = 0; i < spatial / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(spatial);
    const float power = std::pow(c.rope_theta, exponent);
    inv_freq_[i] = 1.0f / power;
  }
  return OkStatus();
}

StatusOr<std::unique_ptr<VisionEncoder>> VisionEncoder::LoadMmproj(const std::string& path,
                                                                   int text_hidden,
                                                                   ThreadPool* pool) {
  auto enc = std::unique_ptr<VisionEncoder>(new VisionEncoder());
  enc->load_pool_ = pool;
  GEMMA4_ASSIGN_OR_RETURN(enc->mmproj_, mmproj::TowerFile::Open(path, mmproj::Tower::kVision));
  mmproj::TowerFile& file = *enc->mmproj_;
  const gguf::File& f = file.gguf();
  // An Ollama blob holds the text model too; its vision settings are gemma4.vision.* and the
  // projector's width is the text model's embedding_length.
  const bool ollama = file.ollama();
  auto u32 = [&](const std::string& key, int* out, bool required) {
    return TowerMetadataInt(file, key, out, required, 1 << 20);
  };
  VisionConfig& c = enc->config_;
  GEMMA4_RETURN_IF_ERROR(u32(file.Key("embedding_length"), &c.hidden_size, true));
  GEMMA4_RETURN_IF_ERROR(u32(file.Key("feed_forward_length"), &c.intermediate_size, true));
  GEMMA4_RETURN_IF_ERROR(u32(file.Key("block_count"), &c.num_layers, true));
  GEMMA4_RETURN_IF_ERROR(u32(file.Key("attention.head_count"), &c.num_heads, true));
  c.num_kv_heads = c.num_heads;
  GEMMA4_RETURN_IF_ERROR(u32(file.Key("attention.head_count_kv"), &c.num_kv_heads, false));
  c.head_dim = c.hidden_size / c.num_heads;
  GEMMA4_RETURN_IF_ERROR(u32(file.Key("attention.head_dim"), &c.head_dim, false));
  GEMMA4_RETURN_IF_ERROR(u32(file.Key("patch_size"), &c.patch_size, true));
  GEMMA4_RETURN_IF_ERROR(u32(file.Key("projector.scale_factor"), &c.pooling_kernel_size, false));
  if (ollama) {
    int channels = 3;
    GEMMA4_RETURN_IF_ERROR(u32(file.Key("num_channels"), &channels, false));
    if (channels != 3) {
      return InvalidArgumentError(path + ": gemma4.vision.num_channels is " +
                                  std::to_string(channels) + "; Gemma 4 sees RGB (3)");
    }
  }
  GEMMA4_RETURN_IF_ERROR(CheckTowerProjection(file, text_hidden, "vision"));
  if (const gguf::Value* eps = f.Find(file.Key("attention.layer_norm_epsilon"));
      eps != nullptr && eps->IsFloat()) {
    c.rms_norm_eps = static_cast<float>(eps->f);
  }
  if (const gguf::Value* theta = f.Find(file.Key("rope_theta")); theta != nullptr) {
    if (!theta->IsFloat() || !(theta->f > 0) || !std::isfinite(theta->f)) {
      return InvalidArgumentError(path + ": " + file.Key("rope_theta") +
                                  " must be a positive number");
    }
    c.rope_theta = static_cast<float>(theta->f);
  }
  if (c.num_heads % c.num_kv_heads != 0 || c.head_dim % 4 != 0 || !(c.rms_norm_eps > 0)) {
    return InvalidArgumentError(path + ": inconsistent vision attention metadata");
  }
  GEMMA4_RETURN_IF_ERROR(file.UnpackClampData(c.num_layers));
  auto find = [&file](const std::string& hf) { return file.Find(hf); };
  if (const TensorView* pos = find(std::string(kTower) + "patch_embedder.position_embedding_table");
      pos != nullptr && pos->shape.size() == 3) {
    c.position_embedding_size = static_cast<int>(pos->shape[1]);
  }
  c.use_clipped_linears =
      find(std::string(kTower) + "encoder.layers.0.self_attn.q_proj.input_min") != nullptr;
  c.standardize = find(std::string(kTower) + "std_bias") != nullptr;
  enc->text_hidden_ = text_hidden;
  GEMMA4_RETURN_IF_ERROR(enc->LoadTensors(find, path));
  return enc;
}

namespace {

// Float weights packed once for several slices of tokens (ops::PackGemmWeights); block-quantized
// ones stay as they are (their products are the integer kernels').
void PackIfFloat(const ClippableLinear& l, ops::PackedGemmWeights* w, ThreadPool* pool) {
  if (l.packed == nullptr && !IsBlockType(l.weight.dtype)) ops::PackGemmWeights(l.weight, w, pool);
}

// Calls row(t) for every t < rows on the pool's threads (ForEachTowerRow, 16 rows an item).
template <class F>
void ForEachRow(ThreadPool* pool, int64_t rows, F&& row) {
  ForEachTowerRow(pool, rows, 16, std::forward<F>(row));
}

// Patches per MLP slice: [rows, I] gate/up slices bound the scratch; whole token tiles (252 rows
// on AVX-512, 18 tiles of 14), since a slice's last partial tile runs the kernel at a fraction
// of its rate.
int64_t MlpRows() {
  const int64_t tile = ops::GemmTokenTile();
  return std::max<int64_t>(tile, 256 / tile * tile);
}

// torch.clamp over [rows, width] on the pool's threads.
void ClampRows(float* x, int64_t rows, int64_t width, float lo, float hi, ThreadPool* pool) {
  ForEachRow(pool, rows, [&](int64_t t) { ClampInPlace(x + t * width, width, lo, hi); });
}

// torch.clamp(x, lo, hi) copied into out (max then min, NaN kept): the clamp and the copy of
// a shared input in one pass.
void CopyClamped(const float* x, int64_t n, float lo, float hi, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = std::min(std::max(x[i], lo), hi);
}

// l's product with the weights PackIfFloat packed (block-quantized weights: the integer
// kernels), without its clamps: the callers' row passes apply them.
void Gemm(const ClippableLinear& l, const ops::PackedGemmWeights& w, const float* x, int64_t s,
          float* y, ThreadPool* pool) {
  if (IsBlockType(l.weight.dtype)) {
    ops::MatMulGemm(l.weight, x, s, y, pool);
  } else if (l.packed != nullptr) {
    ops::MatMulGemm(*l.packed, x, s, y, pool);  // packed at load
  } else {
    ops::MatMulGemm(w, x, s, y, pool);
  }
}

}  // namespace

std::vector<uint64_t> VisionEncoder::HugePageBuffers(const VisionConfig& c, int64_t N) {
  const int64_t Hv = c.hidden_size, hd = c.head_dim, I = c.intermediate_size;
  const int64_t q_dim = int64_t{c.num_heads} * hd, kv_dim = int64_t{c.num_kv_heads} * hd;
  const int64_t rows = std::min(N, MlpRows()), k = c.pooling_kernel_size;
  // ops::DenseAttention's packed keys and values (ops.cc: each calling thread's scratch, kept
  // between calls): [kv heads, keys rounded up to the token tile mr, hd] and [kv heads, hd in
  // tiles of <= mr, N, mr], 16 floats of alignment room each.
  const int64_t mr = ops::GemmTokenTile();
  const int64_t keys = (N + mr - 1) / mr * mr, dim_tiles = (hd + mr - 1) / mr;
  std::vector<uint64_t> bytes;
  auto add = [&](int64_t floats) { bytes.push_back(static_cast<uint64_t>(floats) * 4); };
  add(N * Hv);            // x, the residual
  add(N * 2 * (hd / 4));  // cos_t
  add(N * 2 * (hd / 4));  // sin_t
  for (int64_t width : {Hv, q_dim, kv_dim, kv_dim, q_dim, Hv}) {
    add(N * width);  // normed, q, kk, v, attn, tmp
  }
  add(rows * I);                                  // gate
  add(rows * I);                                  // up
  add(c.use_clipped_linears ? rows * Hv : 0);     // up_in
  add(N / (k * k) * Hv);                          // pooled
  add(c.num_kv_heads * keys * hd + 16);           // DenseAttention's packed keys
  add(c.num_kv_heads * dim_tiles * N * mr + 16);  // and values
  return bytes;
}

Status VisionEncoder::Encode(const ImagePatches& image, ThreadPool* pool, std::vector<float>* out,
                             const std::atomic<bool>* cancel) const {
  GEMMA4_RETURN_IF_ERROR(CheckTowerWeightsUnchanged(mmproj_.get(), checkpoint_));
  const VisionConfig& c = config_;
  const int64_t N = image.num_patches();
  const int64_t Hv = c.hidden_size, hd = c.head_dim, I = c.intermediate_size;
  const int64_t n_heads = c.num_heads, n_kv = c.num_kv_heads;
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
  PhaseProfile prof("vision encode");
  try {
    // Patch embedding: input_proj(2 * (pixels - 0.5)) + (table[0][x] + table[1][y]).
    const int64_t patch_values = static_cast<int64_t>(c.patch_size) * c.patch_size * 3;
    HugePageVector<float> centered(image.pixels.size());
    ForEachRow(pool, N, [&](int64_t p) {
      const float* px = image.pixels.data() + p * patch_values;
      float* row = centered.data() + p * patch_values;
      for (int64_t i = 0; i < patch_values; ++i) row[i] = (px[i] - 0.5f) * 2.0f;
    });
    HugePageVector<float> x(N * Hv);
    TowerGemm(input_proj_, centered.data(), N, x.data(), pool);
    centered = HugePageVector<float>();
    const int64_t P = c.position_embedding_size;
    // cos/sin per patch: [N, hd / 2] as (x freqs, y freqs); each axis' part of a head is
    // hd / 2 values rotated by rotate-half with hd / 4 frequencies.
    const int quarter = static_cast<int>(hd / 4);
    HugePageVector<float> cos_t(N * 2 * quarter), sin_t(N * 2 * quarter);
    ForEachRow(pool, N, [&](int64_t p) {
      const int64_t px = p % image.patches_w, py = p / image.patches_w;
      const float* ex = position_table_.data() + px * Hv;
      const float* ey = position_table_.data() + (P + py) * Hv;
      float* row = x.data() + p * Hv;
      for (int64_t j = 0; j < Hv; ++j) row[j] += ex[j] + ey[j];
      const float pos[2] = {static_cast<float>(px), static_cast<float>(py)};
      for (int axis = 0; axis < 2; ++axis) {
        for (int i = 0; i < quarter; ++i) {
          const float angle = pos[axis] * inv_freq_[i];
          cos_t[(p * 2 + axis) * quarter + i] = std::cos(angle);
          sin_t[(p * 2 + axis) * quarter + i] = std::sin(angle);
        }
      }
    });
    prof.Mark("patch_embed");

    // The memory plan sizes these buffers through HugePageBuffers: keep it in step.
    HugePageVector<float> normed(N * Hv), q(N * q_dim), kk(N * kv_dim), v(N * kv_dim),
        attn(N * q_dim), tmp(N * Hv);
    const int64_t mlp_rows = MlpRows();
    HugePageVector<float> gate(std::min(N, mlp_rows) * I), up(std::min(N, mlp_rows) * I);
    HugePageVector<float> up_in(c.use_clipped_linears ? std::min(N, mlp_rows) * Hv : 0);
    ops::PackedGemmWeights gate_w, up_w, down_w;
    for (const VisionLayerWeights& lw : layers_) {
      if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
        return CancelledError("cancelled in the vision tower before layer " +
                              std::to_string(&lw - layers_.data() + 1) + " of " +
                              std::to_string(layers_.size()));
      }
      ForEachRow(pool, N, [&](int64_t t) {
        ops::RmsNorm(x.data() + t * Hv, lw.input_norm.data(), Hv, eps, normed.data() + t * Hv);
      });
      prof.Mark("norms");
      // q, k and v clamp the shared input to their own bounds: each clipped one reads its own
      // clamped copy. Their output clamps run in the norm/RoPE pass below.
      auto project = [&](const ClippableLinear& l, float* y) {
        if (l.clipped) {
          ForEachRow(pool, N, [&](int64_t t) {
            CopyClamped(normed.data() + t * Hv, Hv, l.input_min, l.input_max, tmp.data() + t * Hv);
          });
          TowerGemm(l, tmp.data(), N, y, pool);
        } else {
          TowerGemm(l, normed.data(), N, y, pool);
        }
      };
      project(lw.q_proj, q.data());
      project(lw.k_proj, kk.data());
      project(lw.v_proj, v.data());
      prof.Mark("qkv_gemm");
      pool->ParallelFor(N, 16, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          const float* ct = cos_t.data() + t * 2 * quarter;
          const float* st = sin_t.data() + t * 2 * quarter;
          lw.q_proj.ClampOutput(q.data() + t * q_dim, q_dim);
          lw.k_proj.ClampOutput(kk.data() + t * kv_dim, kv_dim);
          lw.v_proj.ClampOutput(v.data() + t * kv_dim, kv_dim);
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
      prof.Mark("qkv_norm_rope");
      // Bidirectional attention over every patch, scale 1.0, softmax in f32.
      ops::DenseAttention(q.data(), q_dim, kk.data(), kv_dim, v.data(), kv_dim, N,
                          static_cast<int>(n_heads), static_cast<int>(n_kv), static_cast<int>(hd),
                          attn.data(), q_dim, pool);
      prof.Mark("attention");
      if (lw.o_proj.clipped) {
        ClampRows(attn.data(), N, q_dim, lw.o_proj.input_min, lw.o_proj.input_max, pool);
      }
      TowerGemm(lw.o_proj, attn.data(), N, tmp.data(), pool);
      prof.Mark("o_gemm");
      ForEachRow(pool, N, [&](int64_t t) {
        float* h = tmp.data() + t * Hv;
        lw.o_proj.ClampOutput(h, Hv);
        ops::RmsNorm(h, lw.post_attention_norm.data(), Hv, eps, h);
        for (int64_t j = 0; j < Hv; ++j) x[t * Hv + j] += h[j];
        ops::RmsNorm(x.data() + t * Hv, lw.pre_ffn_norm.data(), Hv, eps, normed.data() + t * Hv);
      });
      prof.Mark("norms");
      // The MLP's weights are packed once per layer and serve every slice of patches.
      PackIfFloat(lw.gate_proj, &gate_w, pool);
      PackIfFloat(lw.up_proj, &up_w, pool);
      PackIfFloat(lw.down_proj, &down_w, pool);
      prof.Mark("mlp_pack");
      for (int64_t t0 = 0; t0 < N; t0 += mlp_rows) {
        const int64_t n = std::min(mlp_rows, N - t0);
        float* in = normed.data() + t0 * Hv;
        // gate and up clamp the same input to their own bounds (up from a clamped copy); the
        // output clamps, GELU and down's input clamp run in one pass per row, down's output
        // clamp in the norm pass after the loop.
        const bool clipped = lw.gate_proj.clipped || lw.up_proj.clipped;
        if (clipped) {
          ForEachRow(pool, n, [&](int64_t t) {
            float* row = in + t * Hv;
            const ClippableLinear& u = lw.up_proj;
            if (u.clipped) {
              CopyClamped(row, Hv, u.input_min, u.input_max, up_in.data() + t * Hv);
            } else {
              std::copy_n(row, Hv, up_in.data() + t * Hv);
            }
            const ClippableLinear& g = lw.gate_proj;
            g.ClampInput(row, Hv);
          });
        }
        Gemm(lw.gate_proj, gate_w, in, n, gate.data(), pool);
        Gemm(lw.up_proj, up_w, clipped ? up_in.data() : in, n, up.data(), pool);
        prof.Mark("mlp_gemm");
        ForEachRow(pool, n, [&](int64_t t) {
          float* g = gate.data() + t * I;
          float* u = up.data() + t * I;
          lw.gate_proj.ClampOutput(g, I);
          lw.up_proj.ClampOutput(u, I);
          ops::GeluMul(g, u, g, I);
          const ClippableLinear& d = lw.down_proj;
          d.ClampInput(g, I);
        });
        prof.Mark("mlp_gelu");
        Gemm(lw.down_proj, down_w, gate.data(), n, tmp.data() + t0 * Hv, pool);
        prof.Mark("mlp_gemm");
      }
      ForEachRow(pool, N, [&](int64_t t) {
        float* h = tmp.data() + t * Hv;
        lw.down_proj.ClampOutput(h, Hv);
        ops::RmsNorm(h, lw.post_ffn_norm.data(), Hv, eps, h);
        for (int64_t j = 0; j < Hv; ++j) x[t * Hv + j] += h[j];
      });
      prof.Mark("norms");
    }

    // Pooling: the mean of each k x k window of patches (each value * f32(1 / k^2), summed in
    // patch order), slot = x / k + (W / k) * (y / k), then * f32(sqrt(Hv)). One item per output
    // slot, its k x k patches visited in patch (row-major) order.
    const int64_t pw = image.patches_w / k, ph = image.patches_h / k, M = pw * ph;
    const float weight = 1.0f / static_cast<float>(k * k);
    const float root = static_cast<float>(std::sqrt(static_cast<double>(Hv)));
    HugePageVector<float> pooled(M * Hv, 0.0f);
    ForEachRow(pool, M, [&](int64_t m) {
      const int64_t sx = m % pw, sy = m / pw;
      float* row = pooled.data() + m * Hv;
      for (int64_t dy = 0; dy < k; ++dy) {
        for (int64_t dx = 0; dx < k; ++dx) {
          const float* src = x.data() + ((sy * k + dy) * image.patches_w + sx * k + dx) * Hv;
          for (int64_t j = 0; j < Hv; ++j) row[j] += src[j] * weight;
        }
      }
      for (int64_t j = 0; j < Hv; ++j) row[j] *= root;
      if (c.standardize) {
        for (int64_t j = 0; j < Hv; ++j) row[j] = (row[j] - std_bias_[j]) * std_scale_[j];
      }
      // embed_vision: RMSNorm without weight, then the projection.
      ops::RmsNorm(row, nullptr, Hv, eps, row);
    });
    prof.Mark("pool");
    out->resize(M * text_hidden_);
    TowerGemm(projection_, pooled.data(), M, out->data(), pool);
    prof.Mark("projector");
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory encoding an image of " + std::to_string(N) +
                                  " patches");
  }
  return OkStatus();
}

}  // namespace gemma4::vision

namespace gemma4::vision {

Status WriteVisionMmproj(const VisionConfig& c, int text_hidden, const VisionTensorSource& source,
                         DType matrix_type, const std::string& path, ThreadPool* pool) {
  if (matrix_type != DType::kF32 && matrix_type != DType::kF16 && matrix_type != DType::kBF16 &&
      matrix_type != DType::kQ8_0) {
    return InvalidArgumentError(
        "mmproj matrices must be f32, f16, bf16 or q8_0 (the towers are never stored below 8 "
        "bits)");
  }
  gguf::Writer w;
  using gguf::Value;
  using gguf::ValueType;
  w.Set("general.architecture", Value::String("clip"));
  w.Set("general.type", Value::String("mmproj"));
  w.Set("general.file_type", Value::Int(ValueType::kUint32, matrix_type == DType::kF32    ? 0
                                                            : matrix_type == DType::kF16  ? 1
                                                            : matrix_type == DType::kBF16 ? 32
                                                                                          : 7));
  w.Set("clip.has_vision_encoder", Value::Bool(true));
  w.Set("clip.vision.projection_dim", Value::Int(ValueType::kUint32, text_hidden));
  w.Set("clip.vision.image_size", Value::Int(ValueType::kUint32, 224));  // unused (as llama.cpp)
  w.Set("clip.vision.patch_size", Value::Int(ValueType::kUint32, c.patch_size));
  // A pooling kernel other than the released 3 (which llama.cpp's converter leaves unsaid and
  // LoadMmproj assumes), read back by LoadMmproj; without it a tower that pools 2x2 or 4x4 was
  // loaded as 3x3 (the sweep of tools/reference/make_config_sweep.py).
  if (c.pooling_kernel_size != 3) {
    w.Set("clip.vision.projector.scale_factor",
          Value::Int(ValueType::kUint32, c.pooling_kernel_size));
  }
  // Likewise the 2-D RoPE base where it is not the released 100 (ours; llama.cpp assumes 100).
  if (c.rope_theta != 100.0f) w.Set("clip.vision.rope_theta", Value::Float32(c.rope_theta));
  w.Set("clip.vision.embedding_length", Value::Int(ValueType::kUint32, c.hidden_size));
  w.Set("clip.vision.feed_forward_length", Value::Int(ValueType::kUint32, c.intermediate_size));
  w.Set("clip.vision.block_count", Value::Int(ValueType::kUint32, c.num_layers));
  w.Set("clip.vision.attention.head_count", Value::Int(ValueType::kUint32, c.num_heads));
  if (c.num_kv_heads != c.num_heads) {
    w.Set("clip.vision.attention.head_count_kv", Value::Int(ValueType::kUint32, c.num_kv_heads));
  }
  if (c.head_dim * c.num_heads != c.hidden_size) {
    w.Set("clip.vision.attention.head_dim", Value::Int(ValueType::kUint32, c.head_dim));
  }
  std::vector<Value> mean(3, Value::Float32(0.0f)), stdv(3, Value::Float32(1.0f));
  w.Set("clip.vision.image_mean", Value::Array(ValueType::kFloat32, mean));
  w.Set("clip.vision.image_std", Value::Array(ValueType::kFloat32, stdv));
  w.Set("clip.vision.projector_type", Value::String("gemma4v"));
  w.Set("clip.vision.attention.layer_norm_epsilon", Value::Float32(c.rms_norm_eps));
  struct Planned {
    std::string name;
    DType type;
    std::vector<int64_t> shape;  // as written
    VisionTensor tensor;
    bool conv = false;  // the patch embedding, reordered to [Hv, 3, p, p]
  };
  std::vector<Planned> plan;
  std::vector<std::string> names;
  const std::string tower = kTower;
  for (const char* fixed : {"patch_embedder.input_proj.weight",
                            "patch_embedder.position_embedding_table", "std_bias", "std_scale"}) {
    names.push_back(tower + fixed);
  }
  static const char* const kLeaves[] = {
      "input_layernorm.weight",           "post_attention_layernorm.weight",
      "pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight",
      "self_attn.q_norm.weight",          "self_attn.k_norm.weight"};
  static const char* const kLinears[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                         "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                         "mlp.down_proj"};
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = tower + "encoder.layers." + std::to_string(i) + ".";
    for (const char* leaf : kLeaves) names.push_back(p + leaf);
    for (const char* lin : kLinears) {
      names.push_back(p + lin + ".linear.weight");
      for (const char* b : {".input_min", ".input_max", ".output_min", ".output_max"}) {
        names.push_back(p + lin + b);
      }
    }
  }
  names.push_back(kProjector);
  for (const std::string& hf : names) {
    std::optional<VisionTensor> t = source(hf);
    if (!t.has_value()) continue;  // clamp bounds and std buffers are optional
    Planned pl;
    pl.name = mmproj::LlamaCppName(mmproj::Tower::kVision, hf);
    if (pl.name.empty()) return InternalError("no mmproj name for '" + hf + "'");
    pl.shape = t->shape.empty() ? std::vector<int64_t>{1} : t->shape;  // scalars: 1 element
    pl.tensor = std::move(*t);
    const bool matrix = pl.shape.size() == 2 && hf.find("position_embedding") == std::string::npos;
    pl.type = !matrix                                                    ? DType::kF32
              : matrix_type == DType::kQ8_0 && pl.shape.back() % 32 != 0 ? DType::kF16
                                                                         : matrix_type;
    if (hf == tower + "patch_embedder.input_proj.weight") {
      pl.conv = true;
      pl.type = DType::kF32;  // f16 overflows here on real images (llama.cpp #24146)
      pl.shape = {c.hidden_size, 3, c.patch_size, c.patch_size};
    }
    plan.push_back(std::move(pl));
  }
  for (const Planned& p : plan) w.AddTensor(p.name, p.type, p.shape);
  return w.Write(path, [&](size_t i, std::vector<uint8_t>* bytes) -> Status {
    const Planned& p = plan[i];
    int64_t numel = 1;
    for (int64_t d : p.shape) numel *= d;
    std::vector<float> values;
    try {
      values.resize(numel);
    } catch (const std::bad_alloc&) {
      return ResourceExhaustedError("out of memory converting '" + p.name + "'");
    }
    p.tensor.fill(values.data());
    if (p.conv) {
      // [Hv, (row, column, channel)] -> [Hv, channel, row, column].
      const int64_t ps = c.patch_size, dim = ps * ps * 3;
      std::vector<float> conv(values.size());
      for (int64_t o = 0; o < c.hidden_size; ++o) {
        for (int64_t ch = 0; ch < 3; ++ch) {
          for (int64_t y = 0; y < ps; ++y) {
            for (int64_t x = 0; x < ps; ++x) {
              conv[((o * 3 + ch) * ps + y) * ps + x] = values[o * dim + (y * ps + x) * 3 + ch];
            }
          }
        }
      }
      values.swap(conv);
    }
    const int64_t cols = p.shape.back(), rows = numel / cols;
    const uint64_t row_bytes = RowBytes(p.type, cols);
    try {
      bytes->resize(rows * row_bytes);
    } catch (const std::bad_alloc&) {
      return ResourceExhaustedError("out of memory converting '" + p.name + "'");
    }
    pool->ParallelFor(rows, 64, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        quant::QuantizeRow(p.type, values.data() + r * cols, cols, bytes->data() + r * row_bytes);
      }
    });
    return OkStatus();
  });
}

Status WriteVisionMmproj(const LoadedModel& model, DType matrix_type, const std::string& path,
                         ThreadPool* pool) {
  GEMMA4_ASSIGN_OR_RETURN(std::unique_ptr<VisionEncoder> enc, VisionEncoder::Load(model));
  const Checkpoint& ckpt = *model.checkpoint();
  auto source = [&ckpt](const std::string& hf) -> std::optional<VisionTensor> {
    const TensorView* t = ckpt.Find(hf);
    if (t == nullptr) return std::nullopt;
    const TensorView view = *t;
    return VisionTensor{view.shape, [view](float* out) { ops::ToF32(view, 0, view.numel(), out); }};
  };
  return WriteVisionMmproj(enc->config(), model.config().hidden_size, source, matrix_type, path,
                           pool);
}

VisionTensorSource SyntheticVisionTensors(const VisionConfig& c, int text_hidden, uint64_t seed) {
  return [c, text_hidden, seed](const std::string& hf) -> std::optional<VisionTensor> {
    const std::string tower = kTower;
    const int64_t Hv = c.hidden_size, hd = c.head_dim, I = c.intermediate_size;
    const int64_t q_dim = int64_t{c.num_heads} * hd, kv_dim = int64_t{c.num_kv_heads} * hd;
    auto ends = [&](const char* suffix) {
      const std::string s = suffix;
      return hf.size() >= s.size() && hf.compare(hf.size() - s.size(), s.size(), s) == 0;
    };
    std::vector<int64_t> shape;
    float center = 0, scale = 0;
    if (hf == tower + "patch_embedder.input_proj.weight") {
      shape = {Hv, int64_t{c.patch_size} * c.patch_size * 3};
    } else if (hf == tower + "patch_embedder.position_embedding_table") {
      shape = {2, c.position_embedding_size, Hv};
      scale = 0.05f;
    } else if (hf == tower + "std_bias" || hf == tower + "std_scale") {
      if (!c.standardize) return std::nullopt;
      shape = {Hv};
      center = hf == tower + "std_scale" ? 1.0f : 0.0f;
      scale = 0.1f;
    } else if (hf == std::string(kProjector)) {
      shape = {text_hidden, Hv};
    } else if (ends("norm.weight") || ends("layernorm.weight")) {
      shape = {ends("q_norm.weight") || ends("k_norm.weight") ? hd : Hv};
      center = 1.0f;
      scale = 0.1f;
    } else if (ends("_min") || ends("_max")) {
      if (!c.use_clipped_linears) return std::nullopt;
      return VisionTensor{
          {}, [hf](float* out) { out[0] = hf.find("_min") != std::string::npos ? -10.0f : 10.0f; }};
    } else if (ends("q_proj.linear.weight")) {
      shape = {q_dim, Hv};
    } else if (ends("k_proj.linear.weight") || ends("v_proj.linear.weight")) {
      shape = {kv_dim, Hv};
    } else if (ends("o_proj.linear.weight")) {
      shape = {Hv, q_dim};
    } else if (ends("gate_proj.linear.weight") || ends("up_proj.linear.weight")) {
      shape = {I, Hv};
    } else if (ends("down_proj.linear.weight")) {
      shape = {Hv, I};
    } else {
      return std::nullopt;
    }
    if (scale == 0) scale = 1.7320508f / std::sqrt(static_cast<float>(shape.back()));
    const uint64_t tensor_seed = seed * 1000003ull + std::hash<std::string>()(hf);
    return VisionTensor{shape, [shape, center, scale, tensor_seed](float* out) {
                          int64_t n = 1;
                          for (int64_t d : shape) n *= d;
                          uint64_t x = tensor_seed | 1;
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

StatusOr<VisionConfig> ReleasedVisionConfig(const std::string& variant) {
  VisionConfig c;
  if (variant == "e2b" || variant == "e4b") {
    c.hidden_size = 768;
    c.intermediate_size = 3072;
    c.num_layers = 16;
    c.num_heads = c.num_kv_heads = 12;
    c.head_dim = 64;
    c.use_clipped_linears = true;
  } else if (variant == "26b-a4b" || variant == "31b") {
    c.hidden_size = 1152;
    c.intermediate_size = 4304;
    c.num_layers = 27;
    c.num_heads = c.num_kv_heads = 16;
    c.head_dim = 72;
    c.standardize = true;
  } else {
    return InvalidArgumentError("no released vision tower for variant '" + variant + "'");
  }
  return c;
}

}  // namespace gemma4::vision
