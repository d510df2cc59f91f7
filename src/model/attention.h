// The LM's attention core over the KV cache: softmax-weighted value sums of a block of query
// tokens and heads against pieces of a layer's cached keys, merged by log-sum-exp rescaling.
// InferenceState::Attention (attention.cc) drives it: projections, q/k norms, RoPE, cache
// writes, and the work split over the thread pool.
#ifndef GEMMA4_SRC_MODEL_ATTENTION_H_
#define GEMMA4_SRC_MODEL_ATTENTION_H_

#include <cstdint>
#include <vector>

#include "model/kv_cache.h"
#include "runtime/huge_pages.h"

namespace gemma4 {

// Keys (or values) of one layer's cache as attention reads them: rows [k, k + n) of KV head g
// as f32 or f16 rows in place, or dequantized into a scratch tile.
struct KeyRows {
  const KvCache* cache;
  int layer;         // the layer whose cache holds the rows (kv_source)
  int64_t kv_dim;    // values per position (all KV heads)
  int64_t head_dim;  // values per head
  bool values;       // V rows, else K
};

// Per-thread buffers of the attention core.
struct AttentionScratch {
  PageVector<float> scores, tile, out, max, sum, merged, merged_max, merged_sum;
  std::vector<int64_t> lo, hi;
};

// For nt tokens (query rows q + i * ldq_token, nq heads of head_dim values each) of KV head
// g: softmax over each token's keys [lo[i], hi[i]] (none when lo > hi), out [nt, nq, hd] the
// weighted value sums, max and sum [nt, nq] each row's largest score and exp-sum.
void AttendPiece(const KeyRows& keys, const KeyRows& values, int64_t g, const float* q,
                 int64_t ldq_token, int nq, int nt, const int64_t* lo, const int64_t* hi,
                 float* out, float* max, float* sum, AttentionScratch* scratch);

// Log-sum-exp merge of one piece (max, sum, normalized out [hd]) into the running state;
// first starts it. FinishSplit writes merged / merged_sum.
void MergeSplit(int64_t hd, float max, float sum, const float* out, bool first, float* merged_max,
                float* merged_sum, float* merged);
void FinishSplit(int64_t hd, float merged_sum, const float* merged, float* out);

// Prefill's attention (several query tokens) as blocked matrix products. Keys go in blocks of
// kAttentionBlockKeys at absolute multiples of it; each block is read once per work item
// (widened or dequantized to f32) and packed for the float GEMM micro-kernel, and all query
// rows of the item (tokens x the heads sharing the KV head) take their scores against it as
// one product, then an online softmax (each block's softmax merged into the row's running
// max and exp-sum by log-sum-exp rescaling, as MergeSplit) and the weighted values as a
// second product. Every row's bits depend only on its key range (the GEMM sums each output in
// one fused multiply-add chain whatever the tile), so any thread count and any chunking into
// steps of at least kAttentionBlockedMinTokens give the same result; decode keeps the split
// over pieces, which rounds differently.
inline constexpr int64_t kAttentionBlockKeys = 128;
// Fewest tokens of one forward step that take the blocked path. Smaller steps (decode, and a
// drafter's verify step of at most 14 drafts + 1 tokens) take decode's split path, so that a
// verify step gives exactly the bits of decoding its tokens one at a time (greedy output with
// drafting identical to without).
inline constexpr int64_t kAttentionBlockedMinTokens = 16;
// Most query tokens of one blocked work item (x the heads of a KV head: the rows that share
// each packed key block).
inline constexpr int64_t kAttentionBlockTokens = 32;

struct BlockedAttentionScratch {
  PageVector<float> q_packed, rows, k_packed, v_packed, scores, probs, out, max, sum;
  std::vector<uint8_t> started;
  std::vector<uint8_t> tile_written;  // per query tile: its rows of `out` hold sums
};

// The same contract as AttendPiece over all of each token's keys [lo[i], hi[i]] (any length),
// writing the normalized result of token i, head h to out + i * ldo_token + h * hd (zero for
// a token without keys).
void AttendBlocked(const KeyRows& keys, const KeyRows& values, int64_t g, const float* q,
                   int64_t ldq_token, int nq, int nt, const int64_t* lo, const int64_t* hi,
                   float* out, int64_t ldo_token, BlockedAttentionScratch* scratch);

// Per-thread bytes of BlockedAttentionScratch for nt tokens x nq heads of head_dim values (the
// memory plan).
int64_t BlockedAttentionScratchBytes(int64_t nt, int64_t nq, int64_t head_dim);

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_ATTENTION_H_
