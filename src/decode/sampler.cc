// Sampling pipeline, in this order:
//   1. logit_bias added to the raw logits (NaN logits count as -inf)
//   2. the `allowed` mask (grammar constraints) sets banned tokens to -inf
//   3. repetition (CTRL rule), frequency and presence penalties over the last penalty_last_n
//      history tokens
//   4. temperature <= 0: argmax, lowest id on ties
//   5. otherwise logits / temperature, top-k, softmax, top-p, min-p, renormalize, and one draw
//      from xoshiro256** seeded with splitmix64(seed). When logit / temperature overflows a
//      float (temperature 1e-38), the probabilities come from (logit - max) / temperature in
//      double instead, which stays finite: ties with the best logit share the draw, the rest
//      get probability 0.
#include "gemma4/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>

namespace gemma4 {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

uint64_t SplitMix64(uint64_t* x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Status ValidateSamplerOptions(const SamplerOptions& o) {
  auto bad = [](const std::string& field, float v, const char* rule) {
    return InvalidArgumentError("SamplerOptions." + field + " = " + std::to_string(v) + ": " +
                                rule);
  };
  if (!(o.temperature >= 0.0f) || !std::isfinite(o.temperature)) {
    return bad("temperature", o.temperature, "must be a finite number >= 0");
  }
  if (o.top_k < 0) return bad("top_k", static_cast<float>(o.top_k), "must be >= 0");
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) return bad("top_p", o.top_p, "must be in (0, 1]");
  if (!(o.min_p >= 0.0f && o.min_p <= 1.0f)) return bad("min_p", o.min_p, "must be in [0, 1]");
  if (!(o.repetition_penalty > 0.0f) || !std::isfinite(o.repetition_penalty)) {
    return bad("repetition_penalty", o.repetition_penalty, "must be a finite number > 0");
  }
  if (!std::isfinite(o.frequency_penalty)) {
    return bad("frequency_penalty", o.frequency_penalty, "must be finite");
  }
  if (!std::isfinite(o.presence_penalty)) {
    return bad("presence_penalty", o.presence_penalty, "must be finite");
  }
  if (o.penalty_last_n < 0) {
    return bad("penalty_last_n", static_cast<float>(o.penalty_last_n), "must be >= 0");
  }
  for (const auto& [id, bias] : o.logit_bias) {
    if (id < 0) return bad("logit_bias id", static_cast<float>(id), "must be >= 0");
    if (std::isnan(bias)) return bad("logit_bias value", bias, "must not be NaN");
  }
  return OkStatus();
}

Sampler::Sampler(SamplerOptions options) : options_(std::move(options)) { Reseed(options_.seed); }

void Sampler::Reseed(uint64_t seed) {
  uint64_t x = seed;
  for (uint64_t& s : rng_state_) s = SplitMix64(&x);
}

uint64_t Sampler::NextRandom() {
  uint64_t* s = rng_state_;
  const uint64_t result = Rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = Rotl(s[3], 45);
  return result;
}

int32_t Sampler::Sample(std::span<float> logits, std::span<const int32_t> history,
                        const std::vector<bool>& allowed) {
  const int32_t n = static_cast<int32_t>(logits.size());
  if (n == 0) return -1;
  for (float& l : logits) {
    if (std::isnan(l)) l = kNegInf;
  }
  for (const auto& [id, bias] : options_.logit_bias) {
    if (id >= 0 && id < n) logits[id] += bias;
  }
  if (!allowed.empty()) {
    for (int32_t i = 0; i < n; ++i) {
      if (static_cast<size_t>(i) >= allowed.size() || !allowed[i]) logits[i] = kNegInf;
    }
  }
  const bool penalize = options_.repetition_penalty != 1.0f || options_.frequency_penalty != 0.0f ||
                        options_.presence_penalty != 0.0f;
  if (penalize && !history.empty()) {
    size_t first = 0;
    if (options_.penalty_last_n > 0 &&
        history.size() > static_cast<size_t>(options_.penalty_last_n)) {
      first = history.size() - options_.penalty_last_n;
    }
    std::unordered_map<int32_t, int> counts;
    for (size_t i = first; i < history.size(); ++i) {
      if (history[i] >= 0 && history[i] < n) ++counts[history[i]];
    }
    for (const auto& [id, count] : counts) {
      float& l = logits[id];
      if (l == kNegInf) continue;
      if (options_.repetition_penalty != 1.0f) {
        l = l > 0 ? l / options_.repetition_penalty : l * options_.repetition_penalty;
      }
      l -= options_.frequency_penalty * static_cast<float>(count) + options_.presence_penalty;
    }
  }
  int32_t best = -1;
  for (int32_t i = 0; i < n; ++i) {
    if (logits[i] == kNegInf) continue;
    if (best < 0 || logits[i] > logits[best]) best = i;
  }
  if (best < 0) return -1;
  if (options_.temperature <= 0.0f || logits[best] == std::numeric_limits<float>::infinity()) {
    return best;
  }
  // Candidates (logit / T, id), best first after partial sorting. Scaling in float is kept
  // where it is finite (it defines the seeded draws); otherwise candidates keep their raw logits
  // (the same order) and are scaled in double below.
  scratch_.clear();
  const float inv_t = 1.0f / options_.temperature;
  const bool scale_in_float = std::isfinite(logits[best] * inv_t);
  const float candidate_scale = scale_in_float ? inv_t : 1.0f;
  for (int32_t i = 0; i < n; ++i) {
    if (logits[i] != kNegInf) scratch_.emplace_back(logits[i] * candidate_scale, i);
  }
  auto by_logit = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  size_t keep = scratch_.size();
  if (options_.top_k > 0 && static_cast<size_t>(options_.top_k) < keep) {
    keep = options_.top_k;
    std::partial_sort(scratch_.begin(), scratch_.begin() + keep, scratch_.end(), by_logit);
    scratch_.resize(keep);
  } else if (options_.top_p < 1.0f || options_.min_p > 0.0f) {
    std::sort(scratch_.begin(), scratch_.end(), by_logit);
  }
  const float max_logit = logits[best] * candidate_scale;
  double total = 0;
  std::vector<double> probs(scratch_.size());
  for (size_t i = 0; i < scratch_.size(); ++i) {
    probs[i] = scale_in_float ? std::exp(static_cast<double>(scratch_[i].first - max_logit))
                              : std::exp((static_cast<double>(scratch_[i].first) - max_logit) /
                                         static_cast<double>(options_.temperature));
    total += probs[i];
  }
  if (options_.top_p < 1.0f) {
    double mass = 0;
    size_t cut = probs.size();
    for (size_t i = 0; i < probs.size(); ++i) {
      mass += probs[i] / total;
      if (mass >= options_.top_p) {
        cut = i + 1;
        break;
      }
    }
    probs.resize(cut);
    scratch_.resize(cut);
  }
  if (options_.min_p > 0.0f) {
    // probs[0] is the most likely token (sorted above).
    const double threshold = options_.min_p * probs[0];
    size_t cut = 1;
    while (cut < probs.size() && probs[cut] >= threshold) ++cut;
    probs.resize(cut);
    scratch_.resize(cut);
  }
  total = 0;
  for (double p : probs) total += p;
  // 53 random bits -> uniform in [0, total).
  const double u = static_cast<double>(NextRandom() >> 11) * 0x1.0p-53 * total;
  double acc = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    acc += probs[i];
    if (u < acc) return scratch_[i].second;
  }
  return scratch_[probs.size() - 1].second;
}

bool IsDegenerateRepetition(std::span<const int32_t> generated,
                            const RepetitionGuardOptions& options) {
  const size_t n = generated.size();
  const size_t min_tokens = static_cast<size_t>(std::max(1, options.min_tokens));
  if (n < min_tokens) return false;
  for (int period = 1; period <= options.max_period; ++period) {
    const size_t p = static_cast<size_t>(period);
    if (2 * p > n) break;
    // Length of the tail that repeats with this period.
    size_t run = p;
    while (run < n && generated[n - 1 - run] == generated[n - 1 - run + p]) ++run;
    const size_t repeats = run / p;
    // Short periods ("is is is") need min_repeats copies; long ones (a repeated sentence)
    // three, and in both cases the repeated span must be at least min_tokens long.
    const size_t needed = period <= 4 ? static_cast<size_t>(std::max(2, options.min_repeats)) : 3;
    if (repeats >= needed && run >= min_tokens) return true;
  }
  return false;
}

}  // namespace gemma4
