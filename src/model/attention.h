// The LM's attention core over the KV cache: softmax-weighted value sums of a block of query
// tokens and heads against pieces of a layer's cached keys, merged by log-sum-exp rescaling.
// InferenceState::Attention (attention.cc) drives it: projections, q/k norms, RoPE, cache
// writes, and the work split over the thread pool.
#ifndef GEMMA4_SRC_MODEL_ATTENTION_H_
#define GEMMA4_SRC_MODEL_ATTENTION_H_

#include <cstdint>
#include <vector>

#include "model/kv_cache.h"

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
  std::vector<float> scores, tile, out, max, sum, merged, merged_max, merged_sum;
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

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_ATTENTION_H_
