#include "model/forward.h"

#include <ctime>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "model/logits_check.h"
#include "model/phase_timer.h"
#include "ops/ops.h"
#include "runtime/denormals.h"
#include "runtime/thread_scratch.h"

namespace gemma4 {

const char* ForwardProfile::Name(int phase) {
  static constexpr const char* kNames[kPhases] = {"embeddings + per-layer inputs",
                                                  "attention q/k/v/o matmuls",
                                                  "attention core",
                                                  "MLP matmuls",
                                                  "MLP activation",
                                                  "MoE",
                                                  "per-layer-input block",
                                                  "norms + residuals",
                                                  "LM head"};
  return phase >= 0 && phase < kPhases ? kNames[phase] : "?";
}

int64_t DefaultMaxChunk() { return ops::PrefillStepTokens(); }
int64_t MlpSliceTokens() { return ops::PrefillStepTokens(); }

InferenceState::InferenceState(const LoadedModel& model, ThreadPool* pool, int64_t max_chunk,
                               std::optional<KvType> kv_type)
    : model_(model),
      config_(model.config()),
      owned_pool_(pool == nullptr ? std::make_unique<ThreadPool>(1) : nullptr),
      pool_(pool != nullptr ? pool : owned_pool_.get()),
      cache_(model.config(), std::max<int64_t>(1, max_chunk),
             kv_type.value_or(model.DefaultKvType())) {}

bool InferenceState::CanTruncateTo(int64_t new_position) const {
  return new_position >= 0 && new_position <= position_ &&
         (new_position >= rewind_floor_ ||
          std::find(std::begin(rewind_points_), std::end(rewind_points_), new_position) !=
              std::end(rewind_points_));
}

Status InferenceState::SetRewindPoint(int slot) {
  if (slot < 0 || slot >= kRewindSlots) return InvalidArgumentError("bad rewind slot");
  rewind_points_[slot] = -1;
  GEMMA4_RETURN_IF_ERROR(cache_.SaveRings(position_, &rewind_rings_[slot]));
  rewind_points_[slot] = position_;
  rewind_floors_[slot] = rewind_floor_;
  return OkStatus();
}

uint64_t InferenceState::rewind_bytes() const {
  uint64_t bytes = 0;
  for (const KvCache::RingSnapshot& rings : rewind_rings_) {
    for (const auto* parts : {&rings.k, &rings.v}) {
      for (const std::vector<uint8_t>& part : *parts) bytes += part.size();
    }
  }
  return bytes;
}

int64_t InferenceState::LatestRewindPoint(int64_t position) const {
  int64_t best = -1;
  for (int64_t p : rewind_points_) {
    if (p >= 0 && p <= position && p <= position_) best = std::max(best, p);
  }
  return best;
}

Status InferenceState::Truncate(int64_t new_position) {
  if (!CanTruncateTo(new_position)) {
    return FailedPreconditionError("cannot rewind the KV cache from " + std::to_string(position_) +
                                   " to " + std::to_string(new_position) +
                                   ": the sliding-window layers no longer hold those positions");
  }
  if (new_position < rewind_floor_) {  // a rewind point (CanTruncateTo): its rings come back
    for (int slot = 0; slot < kRewindSlots; ++slot) {
      if (new_position == rewind_points_[slot]) {
        cache_.RestoreRings(rewind_rings_[slot]);
        rewind_floor_ = rewind_floors_[slot];
        break;
      }
    }
  }
  for (int64_t& p : rewind_points_) {
    if (new_position < p) p = -1;
  }
  position_ = new_position;
  return OkStatus();
}

Status InferenceState::CopyStateFrom(const InferenceState& other) {
  if (&other.model_ != &model_ || other.cache_.max_chunk() != cache_.max_chunk() ||
      other.cache_.type() != cache_.type()) {
    return InvalidArgumentError(
        "CopyStateFrom: states of different models, chunk sizes or KV cache types");
  }
  try {
    cache_ = other.cache_;
    for (int slot = 0; slot < kRewindSlots; ++slot) {
      rewind_rings_[slot] = other.rewind_rings_[slot];
      rewind_points_[slot] = other.rewind_points_[slot];
      rewind_floors_[slot] = other.rewind_floors_[slot];
    }
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory copying the KV cache");
  }
  position_ = other.position_;
  rewind_floor_ = other.rewind_floor_;
  return OkStatus();
}

void InferenceState::AppendState(std::string* out) const { cache_.AppendState(position_, out); }

Status InferenceState::RestoreState(int64_t position, int64_t rewind_floor, int64_t ring_rows,
                                    std::string_view bytes, size_t* offset) {
  if (position < 0 || position > cache_.max_context()) {
    return DataLossError("session state: position " + std::to_string(position) + " out of range");
  }
  GEMMA4_RETURN_IF_ERROR(cache_.RestoreState(position, ring_rows, bytes, offset));
  position_ = position;
  rewind_floor_ = std::clamp<int64_t>(rewind_floor, 0, position);
  for (int64_t& p : rewind_points_) p = -1;
  return OkStatus();
}

Status InferenceState::Forward(const int32_t* ids, int64_t n, LogitsMode mode,
                               std::vector<float>* logits) {
  ForwardInput input;
  input.ids = ids;
  input.n = n;
  return Forward(input, mode, logits);
}

Status InferenceState::Forward(const ForwardInput& input, LogitsMode mode,
                               std::vector<float>* logits) {
  const int64_t n = input.n;
  const int32_t* ids = input.ids;
  if (n <= 0) return InvalidArgumentError("Forward needs at least one token");
  if (ids == nullptr) return InvalidArgumentError("Forward: no token ids");
  if (input.embedded != nullptr && input.embeddings == nullptr) {
    return InvalidArgumentError("Forward: embedded positions without embeddings");
  }
  for (int64_t i = 0; i < n; ++i) {
    if (input.embedded != nullptr && input.embedded[i] != 0) continue;
    if (ids[i] < 0 || ids[i] >= config_.vocab_size) {
      return InvalidArgumentError("token id " + std::to_string(ids[i]) + " at index " +
                                  std::to_string(i) + " is outside the vocabulary [0, " +
                                  std::to_string(config_.vocab_size) + ")");
    }
    if (config_.ple_dim > 0 && ids[i] >= config_.ple_vocab_size) {
      return InvalidArgumentError("token id " + std::to_string(ids[i]) + " at index " +
                                  std::to_string(i) +
                                  " has no row in the per-layer embedding "
                                  "table (vocab_size_per_layer_input " +
                                  std::to_string(config_.ple_vocab_size) + ")");
    }
  }
  const bool blocks = input.block != nullptr && config_.bidirectional_vision;
  GEMMA4_RETURN_IF_ERROR(model_.CheckFilesUnchanged());  // weights are read from the mappings
  GEMMA4_RETURN_IF_ERROR(cache_.Reserve(position_ + n));
  const ScopedDenormalsAreZero denormals_are_zero;  // the pool's workers run in the same mode
  // Prompts only: decode and draft verification (up to 9 tokens) read their few rows at once,
  // with nothing to overlap (the advice costs about 1.7 us a row here, cached or not).
  if (n >= kTokenSplitMinTokens) ReadAheadPleRows(input);
  const int64_t V = config_.vocab_size, H = config_.hidden_size;
  try {
    if (logits != nullptr) {
      logits->assign(mode == LogitsMode::kAll ? n * V : (mode == LogitsMode::kLast ? V : 0), 0.f);
    }
    const float* embeddings = input.embeddings;
    for (int64_t done = 0; done < n;) {
      int64_t s = std::min(cache_.max_chunk(), n - done);
      // A chunk never cuts a bidirectional block: it ends before the block instead, and a
      // block longer than a chunk cannot be attended to as one.
      if (blocks && done + s < n && input.block[done + s - 1] >= 0 &&
          input.block[done + s - 1] == input.block[done + s]) {
        int64_t start = done + s - 1;
        while (start > done && input.block[start - 1] == input.block[done + s]) --start;
        if (start == done) {
          int64_t end = done + s;
          while (end < n && input.block[end] == input.block[done]) ++end;
          return InvalidArgumentError("a bidirectional image block of " +
                                      std::to_string(end - done) +
                                      " positions does not fit in one forward chunk of " +
                                      std::to_string(cache_.max_chunk()) +
                                      " (create the inference state with a larger max_chunk)");
        }
        s = start - done;
      }
      const bool last_chunk = done + s == n;
      float* out = nullptr;
      if (logits != nullptr && mode == LogitsMode::kAll) {
        out = logits->data() + done * V;
      } else if (logits != nullptr && mode == LogitsMode::kLast && last_chunk) {
        out = logits->data();
      }
      GEMMA4_RETURN_IF_ERROR(
          ForwardChunk(input, done, s, embeddings, out, mode == LogitsMode::kAll));
      if (input.embedded != nullptr) {
        for (int64_t t = done; t < done + s; ++t) {
          if (input.embedded[t] != 0) embeddings += H;
        }
      }
      done += s;
    }
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory in the forward pass");
  }
  return OkStatus();
}

Status InferenceState::ForwardChunk(const ForwardInput& input, int64_t offset, int64_t s,
                                    const float* embeddings, float* logits, bool all_rows) {
  const int32_t* ids = input.ids + offset;
  const uint8_t* embedded = input.embedded != nullptr ? input.embedded + offset : nullptr;
  const ModelWeights& w = model_.weights();
  const int64_t H = config_.hidden_size;
  const float eps = config_.rms_norm_eps;
  x_.resize(s * H);
  normed_.resize(s * H);
  tmp_.resize(s * H);
  tmp2_.resize(s * H);

  {
    PhaseTimer timer(profile_, ForwardProfile::kEmbed);
    // Token embeddings scaled by f32(sqrt(H)); encoder rows as given. Per-layer inputs take
    // the pad id at encoder positions.
    const float embed_scale = model_.embed_scale();
    ple_ids_.resize(s);
    for (int64_t t = 0; t < s; ++t) {
      float* row = x_.data() + t * H;
      if (embedded != nullptr && embedded[t] != 0) {
        std::copy_n(embeddings, H, row);
        embeddings += H;
        ple_ids_[t] = config_.pad_token_id;
        continue;
      }
      const int32_t id = config_.TextEmbeddingId(ids[t]);
      ops::ToF32(w.embed, int64_t{id} * H, H, row);
      for (int64_t j = 0; j < H; ++j) row[j] *= embed_scale;
      ple_ids_[t] = id;
    }
    if (config_.ple_dim > 0) GEMMA4_RETURN_IF_ERROR(PerLayerInputs(ple_ids_.data(), s));
    // Sliding layers: a query sees keys up to its own position, or to the end of its
    // bidirectional block (which lies inside this chunk).
    sliding_key_end_.resize(s);
    const int32_t* block =
        input.block != nullptr && config_.bidirectional_vision ? input.block + offset : nullptr;
    for (int64_t t = 0; t < s;) {
      int64_t end = t + 1;
      if (block != nullptr && block[t] >= 0) {
        while (end < s && block[end] == block[t]) ++end;
      }
      for (int64_t u = t; u < end; ++u) {
        sliding_key_end_[u] = position_ + (block != nullptr && block[t] >= 0 ? end - 1 : u);
      }
      t = end;
    }
  }

  for (int i = 0; i < config_.num_layers; ++i) {
    if (input.stop && input.stop()) {
      return CancelledError("forward step of " + std::to_string(s) + " tokens at position " +
                            std::to_string(position_) + " stopped before layer " +
                            std::to_string(i) + " of " + std::to_string(config_.num_layers));
    }
    // From here the step writes the cache: the rings lose the rows of the positions a full
    // ring back, whether or not the step finishes (see rewind_floor).
    if (i == 0) rewind_floor_ = std::max(rewind_floor_, position_ + s - cache_.max_chunk());
    const LayerWeights& lw = w.layers[i];
    float* x = x_.data();
    // Attention block: x = x + post_attention_norm(attn(input_norm(x))). The input norm of
    // each token is made inside the q/k/v projections' quantization (ops::MatMulSharedRows:
    // on the pool, no pass of its own; its time counts as the projections').
    Attention(
        i, s,
        [&](int64_t t, float* row) { ops::RmsNorm(x + t * H, lw.input_norm.data(), H, eps, row); },
        tmp_.data());
    // Feed-forward block: dense GeGLU, plus the MoE branch beside it on MoE models. The
    // attention output's norm and residual and the pre-FFN norm of each token run inside the
    // gate/up projections' quantization (as above; their time counts as the MLP's), except on
    // MoE models, whose branch reads the updated x of every token.
    auto attention_residual = [&, x](int64_t t) {
      float* h = tmp_.data() + t * H;
      ops::RmsNorm(h, lw.post_attention_norm.data(), H, eps, h);
      for (int64_t j = 0; j < H; ++j) x[t * H + j] += h[j];
    };
    auto ffn_rows = [&, x](int64_t t, float* row) {
      if (!config_.moe) attention_residual(t);
      ops::RmsNorm(x + t * H, lw.pre_ffn_norm.data(), H, eps, row);
    };
    if (config_.moe) {
      PhaseTimer timer(profile_, ForwardProfile::kNormResidual);
      for (int64_t t = 0; t < s; ++t) attention_residual(t);
    }
    DenseMlp(lw, config_.layers[i].mlp_width, s, ffn_rows, tmp_.data());
    if (config_.moe) {
      PhaseTimer timer(profile_, ForwardProfile::kMoe);
      for (int64_t t = 0; t < s; ++t) {
        float* h = tmp_.data() + t * H;
        ops::RmsNorm(h, lw.post_ffn_norm_1.data(), H, eps, h);
      }
      Moe(lw, s, x, tmp2_.data());
      for (int64_t j = 0; j < s * H; ++j) tmp_[j] += tmp2_[j];
    }
    // The feed-forward residual, the Per-Layer Embedding block x += norm(proj(gelu(gate(x)) *
    // ple_i)) and the layer scalar, all token by token.
    if (s >= kTokenSplitMinTokens) {
      // Prefill: one pool job split by tokens, each thread running every step for its own
      // tokens (the BF16 gate [P, H] and projection [H, P], 0.8 MB each on E2B, read by both
      // threads from cache): no serial pass and one handoff instead of four. The matmuls give
      // each token the same bits whatever the tokens beside it, and choose their kernels by the
      // whole step's s (ops::MatMul's run_tokens), so the split changes nothing.
      PhaseTimer timer(profile_, ForwardProfile::kPleBlock);
      if (static_cast<int64_t>(gate_.size()) < s * config_.ple_dim)
        gate_.resize(s * config_.ple_dim);
      pool_->ParallelFor(
          s, kTokenSplitMinTokens / 2,
          [&](int64_t begin, int64_t end) { LayerTail(lw, i, begin, end, s, nullptr); }, 1);
    } else {
      LayerTail(lw, i, 0, s, s, pool_);  // decode: the matrices' rows split over the pool
    }
  }
  position_ += s;

  if (logits == nullptr) return OkStatus();
  PhaseTimer timer(profile_, ForwardProfile::kHead);
  // Final norm, tied LM head (the unscaled embedding), softcap tanh(l / cap) * cap. Rows:
  // all of the chunk, or only its last token.
  const int64_t first_row = all_rows ? 0 : s - 1, rows = s - first_row;
  for (int64_t t = 0; t < rows; ++t) {
    ops::RmsNorm(x_.data() + (first_row + t) * H, w.final_norm.data(), H, eps,
                 normed_.data() + t * H);
  }
  if (hidden_out_ != nullptr) {
    hidden_out_->insert(hidden_out_->end(), normed_.begin(), normed_.begin() + rows * H);
  }
  ops::MatMul(w.lm_head, normed_.data(), rows, logits, pool_);
  const float cap = config_.final_logit_softcap;
  if (cap > 0) {
    const int64_t n = rows * config_.vocab_size;
    // Parallel in slices of the vocabulary (262144 tanh per token).
    pool_->ParallelFor(n, 16384, [&](int64_t begin, int64_t end) {
      ops::Softcap(logits + begin, end - begin, cap);
    });
  }
  // NaN or infinite logits (non-finite weights, an overflow) are an error naming the position,
  // never output: one pass over the rows, cheap next to the LM head.
  return CheckLogitsFinite(std::span<const float>(logits, rows * config_.vocab_size),
                           config_.vocab_size, position_ - rows);
}

void InferenceState::LayerTail(const LayerWeights& lw, int layer, int64_t begin, int64_t end,
                               int64_t run_tokens, ThreadPool* pool) {
  const int64_t H = config_.hidden_size, n = end - begin;
  const float eps = config_.rms_norm_eps;
  float* const x = x_.data();
  {
    PhaseTimer timer(pool != nullptr ? profile_ : nullptr, ForwardProfile::kNormResidual);
    for (int64_t t = begin; t < end; ++t) {
      float* h = tmp_.data() + t * H;
      ops::RmsNorm(h, lw.post_ffn_norm.data(), H, eps, h);
      for (int64_t j = 0; j < H; ++j) x[t * H + j] += h[j];
    }
  }
  if (config_.ple_dim > 0) {
    PhaseTimer timer(pool != nullptr ? profile_ : nullptr, ForwardProfile::kPleBlock);
    const int64_t P = config_.ple_dim, L = config_.num_layers;
    if (pool != nullptr && static_cast<int64_t>(gate_.size()) < end * P) gate_.resize(end * P);
    float* const gate = gate_.data() + begin * P;  // [n, P]
    ops::MatMul(lw.ple_gate, x + begin * H, n, gate, pool, run_tokens);
    for (int64_t t = begin; t < end; ++t) {
      const float* ple = ple_inputs_.data() + (t * L + layer) * P;
      float* g = gate_.data() + t * P;
      ops::GeluMul(g, ple, g, P);
    }
    ops::MatMul(lw.ple_projection, gate, n, tmp_.data() + begin * H, pool, run_tokens);  // [n, H]
    for (int64_t t = begin; t < end; ++t) {
      float* h = tmp_.data() + t * H;
      ops::RmsNorm(h, lw.post_ple_norm.data(), H, eps, h);
      for (int64_t j = 0; j < H; ++j) x[t * H + j] += h[j];
    }
  }
  PhaseTimer timer(pool != nullptr ? profile_ : nullptr, ForwardProfile::kNormResidual);
  for (int64_t j = begin * H; j < end * H; ++j) x[j] *= lw.layer_scalar;
}

void InferenceState::DenseMlp(const LayerWeights& lw, int width, int64_t s, const ops::MakeRow& in,
                              float* out) {
  // In slices of at most MlpSliceTokens() tokens (the gate and up activations are the largest
  // scratch of a step). Every token's result is independent of the slicing.
  const int64_t mlp_tokens = MlpSliceTokens();
  const int64_t H = config_.hidden_size;
  gate_.resize(std::min(s, mlp_tokens) * width);
  up_.resize(std::min(s, mlp_tokens) * width);
  for (int64_t t0 = 0; t0 < s; t0 += mlp_tokens) {
    const int64_t n = std::min(mlp_tokens, s - t0);
    {
      PhaseTimer timer(profile_, ForwardProfile::kMlpMatMul);
      // The input rows made and quantized once for both, in one parallel job
      // (ops::MatMulSharedRows); normed_ holds them.
      const TensorView* w[2] = {&lw.gate_proj, &lw.up_proj};
      float* y[2] = {gate_.data(), up_.data()};
      ops::MatMulSharedRows(
          w, y, 2, n, [&](int64_t t, float* row) { in(t0 + t, row); }, normed_.data() + t0 * H,
          pool_);
    }
    // gelu(gate) * up, token by token inside the down projection's activation quantization
    // (its time counts as the MLP matmuls'; the "MLP activation" phase now reads 0 here).
    PhaseTimer timer(profile_, ForwardProfile::kMlpMatMul);
    ops::MatMulGeluMul(lw.down_proj, gate_.data(), up_.data(), n, out + t0 * H, pool_);
  }
}

}  // namespace gemma4
