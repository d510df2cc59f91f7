// Speculative decoding with a Gemma 4 assistant drafter (model/drafter.h): the drafter proposes
// k tokens from the target's last hidden state, the target checks them all in one batched
// forward over [pending, d_1 .. d_k], and the cache positions of rejected drafts are rolled
// back (InferenceState::Truncate).
//
// Acceptance is standard speculative sampling (Leviathan et al. 2023, Chen et al. 2023), so the
// output has exactly the target's distribution: d_i is drawn from the drafter's distribution
// q_i, accepted with probability min(1, p_i(d_i) / q_i(d_i)); the first rejection draws from
// norm(max(0, p_i - q_i)) instead, and when all k are accepted a bonus token is drawn from
// p_{k+1}. p and q are the same transform (temperature, top-k, top-p) of the target's and the
// drafter's logits. Greedy decoding (temperature <= 0) makes p and q one-hot at the argmax
// (lowest id on ties): drafts are accepted while they equal the target's argmax, and the output
// is token for token the target's greedy output.
#ifndef GEMMA4_SRC_MODEL_SPECULATIVE_H_
#define GEMMA4_SRC_MODEL_SPECULATIVE_H_

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "gemma4/status.h"
#include "model/drafter.h"
#include "model/forward.h"
#include "model/model.h"

namespace gemma4 {

struct SpeculativeOptions {
  int draft_tokens = 4;  // k per round; 0 (or no drafter): plain decoding, one token a forward
  int max_tokens = 128;
  std::vector<int32_t> stop_ids;  // generation ends after one of these (it is output)
  // The token distribution: temperature <= 0 is greedy.
  float temperature = 0.0f;
  int top_k = 0;       // 0: off
  float top_p = 1.0f;  // 1: off
  uint64_t seed = 0;
  // Tests: rewrites the drafter's logits before draft `index` of a round is drawn (to script
  // acceptances on random-weight models). position: where the round's first token (the one
  // drafted from) sits; the draft would go to position + 1 + index. from_token: the token the
  // draft follows.
  std::function<void(int64_t position, int index, int32_t from_token, std::vector<float>* logits)>
      draft_hook;
};

struct SpeculativeStats {
  int64_t target_forwards = 0;  // decode forwards of the target (verify batches or single steps)
  int64_t drafted = 0;          // draft tokens proposed
  int64_t accepted = 0;         // of which the target kept
};

// The distribution SpeculativeOptions describe over `logits` ([V]): one-hot at the argmax for
// temperature <= 0; else softmax(logits / T) restricted to the top_k largest and then to the
// smallest prefix (by probability) holding top_p of the mass, renormalized. probs gets [V].
void TokenDistribution(std::span<const float> logits, const SpeculativeOptions& options,
                       std::vector<float>* probs);

// Runs `prompt` through `state` (which must be empty) and generates up to max_tokens tokens
// after it, drafting with `drafter` (null: plain decoding). on_token (may be empty) sees each
// token as it is final; returning false stops. Every option is checked first; k + 2 must not
// exceed state->max_chunk() (the verify batch is one chunk, and a rollback stays within what
// the sliding-window rings hold).
StatusOr<std::vector<int32_t>> SpeculativeGenerate(
    const LoadedModel& target, const Drafter* drafter, InferenceState* state,
    std::span<const int32_t> prompt, const SpeculativeOptions& options, ThreadPool* pool,
    SpeculativeStats* stats = nullptr, std::function<bool(int32_t)> on_token = {});

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_SPECULATIVE_H_
