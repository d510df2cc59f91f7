// Token sampling: greedy, temperature, top-k, top-p, min-p, penalties, logit bias, seeded RNG,
// and a guard against degenerate repetition loops. Standard library only.
#ifndef GEMMA4_SAMPLER_H_
#define GEMMA4_SAMPLER_H_

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "gemma4/status.h"

namespace gemma4 {

struct SamplerOptions {
  // temperature <= 0 means greedy (argmax; ties go to the lowest id). Tiny temperatures (down to
  // the smallest float) are sampled without overflow: the best logits share the draw.
  float temperature = 1.0f;
  int top_k = 0;       // 0 = off
  float top_p = 1.0f;  // 1 = off; keeps the smallest set whose probability mass >= top_p
  float min_p = 0.0f;  // 0 = off; drops tokens with p < min_p * p_max
  // Penalties over the last `penalty_last_n` tokens of the history (0 = whole history).
  // repetition_penalty follows the CTRL / transformers rule: a positive logit is divided by it,
  // a negative one multiplied. frequency/presence follow the OpenAI rule:
  // logit -= frequency_penalty * count + presence_penalty * (count > 0).
  float repetition_penalty = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  int penalty_last_n = 256;
  // Added to the raw logits before anything else; -inf (or a very negative value) bans a token.
  std::vector<std::pair<int32_t, float>> logit_bias;
  uint64_t seed = 0;  // same seed + same logits + same history => same tokens
};

// Checks ranges (temperature >= 0, top_p in (0, 1], min_p in [0, 1], penalties >= 0 where
// meaningful, repetition_penalty > 0, bias ids >= 0). The message names the bad field.
Status ValidateSamplerOptions(const SamplerOptions& options);

class Sampler {
 public:
  explicit Sampler(SamplerOptions options = {});

  // Picks the next token from `logits` (one float per vocabulary entry; modified in place).
  // `history` is every token already in the context, used by the penalties.
  // Entries of `allowed` (if non-empty; same size as logits) that are false are never picked;
  // if nothing is allowed the result is -1.
  int32_t Sample(std::span<float> logits, std::span<const int32_t> history,
                 const std::vector<bool>& allowed = {});

  const SamplerOptions& options() const { return options_; }
  void Reseed(uint64_t seed);

 private:
  SamplerOptions options_;
  uint64_t rng_state_[4];
  std::vector<std::pair<float, int32_t>> scratch_;
  std::vector<double> probs_;  // the candidates' probabilities, kept between calls
  uint64_t NextRandom();
};

// Checks rows of `vocab_size` logits for NaN and infinity (one pass, cheap next to the LM head
// that produced them). The DataLoss error names the position of the first bad row
// (first_position + row) and the token. Sampler::Sample itself treats NaN as -inf.
Status CheckLogitsFinite(std::span<const float> logits, int64_t vocab_size, int64_t first_position);

// Detects degenerate loops in generated text: the tail of the token history repeating the same
// period (1..max_period tokens) at least `min_repeats` times, e.g. "is is is is ..." or a
// repeated sentence. Cheap enough to call after every token.
struct RepetitionGuardOptions {
  int max_period = 64;
  int min_repeats = 8;  // for periods of 1-2 tokens: the run must cover >= min_tokens
  int min_tokens = 32;  // total repeated span before the guard fires
};
bool IsDegenerateRepetition(std::span<const int32_t> generated,
                            const RepetitionGuardOptions& options = {});

}  // namespace gemma4

#endif  // GEMMA4_SAMPLER_H_
