// The Gemma 4 text forward pass over a chunk of tokens, with the per-sequence state it needs
// (KV cache, position, scratch). One InferenceState per sequence; many may share a LoadedModel.
#ifndef GEMMA4_SRC_MODEL_FORWARD_H_
#define GEMMA4_SRC_MODEL_FORWARD_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "gemma4/status.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "ops/ops.h"
#include "runtime/huge_pages.h"
#include "runtime/thread_pool.h"

namespace gemma4 {

enum class LogitsMode { kNone, kLast, kAll };

// Tokens per internal forward step unless asked otherwise (see InferenceState): this CPU's
// ops::PrefillStepTokens(), 128 or 512. Prefill reads every weight matrix once per step, so the
// step sets how often a prompt streams the weights from memory: measured on E2B Q4_0 pp512 (2
// threads, Zen 5, AVX-512 VNNI), 64-token steps ran 10-14% faster than 16-token ones (the
// weights read 8 times per 512-token prompt instead of 32), and 128-token steps (with MLP
// slices of 128) 3.4% faster than 64 (median of 6 alternating pairs, 187.8 -> 194.2 t/s), 256
// no faster than 128. Where the matmuls dequantize each weight block once a call (AMX tiles),
// 512-token steps with 512-token MLP slices were faster than 128-token ones in 12 of 13
// alternating pairs (Xeon, 2 threads; median ratios 1.27 and 1.05 in two runs). Scratch and
// the sliding-window rings grow with it (E2B: ~230 KiB of scratch per token, about 29 MiB at
// 128 and 115 MiB at 512; see ForwardScratchBytes).
int64_t DefaultMaxChunk();
// The smallest DefaultMaxChunk() of any CPU.
inline constexpr int64_t kSmallestDefaultMaxChunk = ops::kSmallestPrefillStepTokens;

// The dense MLP runs a step in slices of at most this many tokens: the [tokens, width] gate
// and up activations are a step's largest scratch (E2B's wide layers: 48 KiB per token for
// each), and each slice streams the MLP weights once, so it matches the default step.
int64_t MlpSliceTokens();
// Steps of at least this many tokens run each layer's token-wise tail (residuals, the
// Per-Layer Embedding block) split by tokens over the pool; smaller ones (decode) split each
// matmul's rows instead, so every thread streams a share of the weights.
inline constexpr int64_t kTokenSplitMinTokens = 16;

// Drafted tokens a speculative round may verify (the user-facing bound of
// ModelOptions/GenerateOptions.draft_tokens and the C ABI's, 1..14). A round verifies the
// drafts and the token before them in one forward step and may rewind them all, so a state
// drafting k tokens needs max_chunk >= k + 2.
inline constexpr int kMaxDraftTokens = 14;
static_assert(kMaxDraftTokens + 2 <= kSmallestDefaultMaxChunk);

// Decode's attention (one token; prefill takes the blocked path in model/attention.h): keys
// per piece (a query's keys are cut at multiples of it and the pieces merged; sliding windows
// of 512 fit one piece), keys per tile (one tile of a quantized cache is dequantized once for
// every head of a work item: 32 x 512 f32 = 64 KiB), and the most tokens of one work item.
inline constexpr int64_t kAttentionSplit = 1024;
inline constexpr int64_t kAttentionKeyTile = 32;
inline constexpr int64_t kAttentionTokenBlock = 16;

// Wall time of each phase of the forward pass, summed over calls (`gemma4 bench --profile`):
// where a step's time goes beyond the matmuls, on machines where no profiler runs. Beside it
// the CPU time all of the process's threads spent in the phase: on a shared machine the wall
// time includes the other tenants' turns, the CPU time (pool threads' short spins included)
// does not, so it is what kernel rates are held against.
struct ForwardProfile {
  enum Phase {
    kEmbed,           // token embeddings and the per-layer inputs (PLE rows, projection)
    kAttnProjection,  // q/k/v/o matmuls
    kAttnCore,        // q/k norms, RoPE, cache writes, scores, softmax, weighted values
    kMlpMatMul,       // gate/up/down matmuls
    kMlpActivation,   // GeLU(gate) * up
    kMoe,             // router and experts
    kPleBlock,        // per-layer-input gate, GeLU, projection
    kNormResidual,    // RMS norms, residual adds, layer scalars
    kHead,            // final norm, LM head, soft-capping
    kPhases
  };
  double seconds[kPhases] = {};
  double cpu_seconds[kPhases] = {};
  static const char* Name(int phase);
};

// One forward call's input: a token id per position, where some positions take an encoder's
// output row (an image, audio or video soft token) instead of the token's embedding.
struct ForwardInput {
  const int32_t* ids = nullptr;  // [n]; at embedded positions the placeholder id (unused)
  int64_t n = 0;
  // embedded[i] != 0: position i's input is the next row of `embeddings` ([rows, hidden],
  // rows in position order), not scaled by sqrt(hidden), and its per-layer input uses the pad
  // id, as transformers does. Null: every position is a token.
  const uint8_t* embedded = nullptr;
  const float* embeddings = nullptr;
  // Bidirectional block of each position, or -1 (null: none). On models with
  // bidirectional_vision, consecutive positions with the same id >= 0 (the soft tokens of one
  // image or video frame) also see each other's later keys on sliding layers; full layers
  // stay causal. A block must lie inside one Forward call and fit in max_chunk positions.
  const int32_t* block = nullptr;
  // Asked before each layer of each step (may be empty: never stops). Once it returns true the
  // call stops there with CancelledError: position() stays after the last whole step, and the
  // step's partial cache writes cost only rewind reach (see rewind_floor). A session's Cancel()
  // reaches a prompt through it within one layer rather than one step (512 tokens on AMX
  // machines: seconds on E2B, tens of seconds on 31B).
  std::function<bool()> stop;
};

class InferenceState {
 public:
  // pool may be null (single-threaded). max_chunk bounds the tokens processed in one internal
  // step (longer inputs are split); it sizes the sliding-window ring buffers and the scratch.
  // kv_type unset: model.DefaultKvType().
  InferenceState(const LoadedModel& model, ThreadPool* pool, int64_t max_chunk = DefaultMaxChunk(),
                 std::optional<KvType> kv_type = std::nullopt);

  // Appends `n` tokens at positions [position(), position() + n) and runs them through the
  // model. logits receives [n, vocab] (kAll), [vocab] (kLast) or nothing (kNone).
  Status Forward(const int32_t* ids, int64_t n, LogitsMode mode, std::vector<float>* logits);
  // The same with embedded positions and bidirectional blocks (see ForwardInput).
  Status Forward(const ForwardInput& input, LogitsMode mode, std::vector<float>* logits);

  int64_t position() const { return position_; }

  // Forgets positions [new_position, position()). Possible while every sliding-window layer
  // still holds the W - 1 positions before new_position, i.e. down to rewind_floor();
  // otherwise FailedPrecondition (the caller recomputes from a prefix). Also possible back to
  // a rewind point, however far: see SetRewindPoint.
  Status Truncate(int64_t new_position);
  bool CanTruncateTo(int64_t new_position) const;
  // The lowest position Truncate reaches without a rewind point. The rings hold W - 1 +
  // max_chunk rows, so a step of s tokens at p overwrites the rows of positions up to
  // p + s - 1 - (W - 1 + max_chunk), and positions below p + s - max_chunk lose part of their
  // window. The floor only rises: with every step (finished, cancelled or failed once it has
  // written a layer) and when a rewind point is restored (to the floor it had). Truncates do
  // not lower it: the rows a later step overwrote stay overwritten.
  int64_t rewind_floor() const { return rewind_floor_; }
  // Remembers the sliding-window rings at position() in `slot` so that a later Truncate may
  // return exactly here (a conversation keeps the end of its system prompt, and the start of
  // a model turn whose thought the next prompt drops). A Truncate below a point forgets it.
  static constexpr int kRewindSlots = 2;
  Status SetRewindPoint(int slot);
  int64_t rewind_point(int slot) const { return rewind_points_[slot]; }  // -1: none
  // Bytes the rewind points' ring copies hold (the memory plan's kv_rewind at most).
  uint64_t rewind_bytes() const;
  // The latest rewind point at or before `position`, or -1.
  int64_t LatestRewindPoint(int64_t position) const;
  // Copies the KV cache and position of `other` (same model, max_chunk and KV type).
  Status CopyStateFrom(const InferenceState& other);
  // Position + KV cache as bytes (in kv_type()), and back. The restored state rewinds down to
  // `rewind_floor` (clamped to [0, position]; the saving state's rewind_floor()). ring_rows:
  // the saving state's saved_ring_rows(), or -1 for whole rings (states saved before the rings
  // were cut at the position; KvCache::RestoreState).
  void AppendState(std::string* out) const;
  int64_t saved_ring_rows() const { return cache_.SavedRingRows(position_); }
  Status RestoreState(int64_t position, int64_t rewind_floor, int64_t ring_rows,
                      std::string_view bytes, size_t* offset);
  int64_t max_chunk() const { return cache_.max_chunk(); }
  KvType kv_type() const { return cache_.type(); }
  const KvCache& kv_cache() const { return cache_; }
  // Keys per attention piece (see Attention); results depend on it only through rounding.
  // Tests set small values to merge many pieces at short contexts.
  void set_attention_split(int64_t keys) { attention_split_ = std::max<int64_t>(1, keys); }
  // Phase timings accumulate into *profile (null: none, the default, which costs nothing).
  void set_profile(ForwardProfile* profile) { profile_ = profile; }
  // When set, every Forward call that computes logits also appends the final-normed hidden
  // state (the LM head's input, [rows, hidden]) of each row it computes logits for: what an
  // assistant drafter conditions on. Null (the default): not kept.
  void set_hidden_output(std::vector<float>* rows) { hidden_out_ = rows; }

 private:
  // logits: null, or [s, vocab] (all_rows) or [vocab] for the chunk's last token.
  // Positions [offset, offset + s) of `input`; embeddings points at the chunk's first row.
  Status ForwardChunk(const ForwardInput& input, int64_t offset, int64_t s, const float* embeddings,
                      float* logits, bool all_rows);
  // The attention block of one layer (attention.cc): out [s, hidden] = o_proj(attention).
  // input makes token t's normed row (ops::MakeRow; into normed_, made once per token).
  void Attention(int layer, int64_t s, const ops::MakeRow& input, float* out);
  // The end of layer `layer` for tokens [begin, end): the feed-forward output in tmp_ normed and
  // added to x_, the Per-Layer Embedding block, the layer scalar. pool: splits each matmul's
  // rows (decode), or null on a thread that owns these tokens (prefill's token split; the
  // profile then times the caller's whole job). run_tokens: the step's token count, which
  // chooses the matmuls' kernels (ops::MatMul), so a token split gives the step's bits.
  void LayerTail(const LayerWeights& lw, int layer, int64_t begin, int64_t end, int64_t run_tokens,
                 ThreadPool* pool);
  void DenseMlp(const LayerWeights& lw, int width, int64_t s, const ops::MakeRow& in, float* out);
  void Moe(const LayerWeights& lw, int64_t s, const float* residual, float* out);
  Status PerLayerInputs(const int32_t* ids, int64_t s);
  // Row `id` of the PLE table as f32 (bytes: the row as stored, when read from the file).
  // Thread-safe: PerLayerInputs reads the chunk's rows on the pool.
  Status ReadPleRow(int32_t id, std::vector<uint8_t>* bytes, float* out) const;
  // Asks the kernel to start reading the PLE table rows of a prompt's tokens from the file
  // (advice only: nothing if the table is in memory or the platform has no readahead advice).
  void ReadAheadPleRows(const ForwardInput& input) const;

  const LoadedModel& model_;
  const ModelConfig& config_;
  std::unique_ptr<ThreadPool> owned_pool_;  // when the caller passes no pool
  ThreadPool* pool_;
  KvCache cache_;
  int64_t position_ = 0;
  int64_t rewind_floor_ = 0;  // see rewind_floor()
  int64_t rewind_points_[kRewindSlots] = {-1, -1};
  int64_t rewind_floors_[kRewindSlots] = {0, 0};  // rewind_floor_ when each point was set
  KvCache::RingSnapshot rewind_rings_[kRewindSlots];
  // Scratch, sized for one chunk.
  // Scratch, mapped straight from the kernel (runtime/huge_pages.h PageVector: resident as
  // written, returned when freed), sized for one chunk.
  PageVector<float> x_, normed_, tmp_, tmp2_, q_, k_, v_, attn_, gate_, up_;
  PageVector<float> ple_inputs_;  // [S, L, P]
  // Decode's attention pieces: [s, heads, pieces, head_dim] partial sums, [s, heads, pieces]
  // their maxima and exp-sums.
  PageVector<float> split_out_, split_max_, split_sum_;
  int64_t attention_split_ = kAttentionSplit;
  // Moe's: the router's input [S, H] and logits [S, experts], the experts' normed input
  // [S, H], and per (token, expert) pair its input row (then output) [pairs, H], gate and up
  // products [pairs, 2, moe width] and activation [pairs, moe width].
  PageVector<float> moe_z_, moe_router_logits_, moe_xin_, moe_xe_, moe_gate_up_, moe_act_;
  PageVector<float> rope_cos_, rope_sin_;  // [S, rotated pairs] of the current layer
  std::vector<int32_t> ple_ids_;           // [S] the chunk's ids, pad at embedded positions
  // [S] last key position each query of the chunk sees on sliding layers: its own position,
  // or the end of its bidirectional block.
  std::vector<int64_t> sliding_key_end_;
  ForwardProfile* profile_ = nullptr;
  std::vector<float>* hidden_out_ = nullptr;
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_FORWARD_H_
