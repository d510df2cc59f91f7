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
#include <iterator>
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

// The largest of p[0, n) (no NaN among them), through 16 independent running maxima that the
// compiler keeps in vector registers (a single running max is a serial chain it may not
// reorder).
float MaxOf(const float* p, int32_t n) {
  float lanes[16];
  std::fill(std::begin(lanes), std::end(lanes), kNegInf);
  int32_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) lanes[j] = lanes[j] < p[i + j] ? p[i + j] : lanes[j];
  }
  for (; i < n; ++i) lanes[0] = lanes[0] < p[i] ? p[i] : lanes[0];
  return *std::max_element(std::begin(lanes), std::end(lanes));
}

// Logits a top-k scan looks at together (one MaxOf).
constexpr int32_t kBlock = 64;

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
  for (float& l : logits) l = l != l ? kNegInf : l;  // NaN: -inf (a select, vectorized)
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
  // The best logit and its lowest id, in two passes the compiler vectorizes (a max, then the
  // first index holding it; -inf entries are never candidates).
  const float max_value = MaxOf(logits.data(), n);
  if (max_value == kNegInf) return -1;
  int32_t best = 0;
  while (logits[best] != max_value) ++best;
  if (options_.temperature <= 0.0f || logits[best] == std::numeric_limits<float>::infinity()) {
    return best;
  }
  // Candidates (logit / T, id), ordered by that key, best first, lowest id on ties. Scaling in
  // float is kept where it is finite (it defines the seeded draws); otherwise candidates keep
  // their raw logits (the same order) and are scaled in double below.
  const float inv_t = 1.0f / options_.temperature;
  const bool scale_in_float = std::isfinite(logits[best] * inv_t);
  const float candidate_scale = scale_in_float ? inv_t : 1.0f;
  const float max_logit = logits[best] * candidate_scale;
  auto probability = [&](float key) {  // relative to the best candidate's, which is 1
    return scale_in_float ? std::exp(static_cast<double>(key - max_logit))
                          : std::exp((static_cast<double>(key) - max_logit) /
                                     static_cast<double>(options_.temperature));
  };
  auto by_logit = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  int32_t candidates = 0;
  for (int32_t i = 0; i < n; ++i) candidates += logits[i] != kNegInf ? 1 : 0;
  // The best k candidates, in order, into scratch_: through a heap of k with its worst on top,
  // one comparison for most of the vocabulary instead of sorting it (the same k in the same
  // order as a sort). Once the heap is full, a block whose largest logit does not beat its
  // worst is skipped whole (ids ascend, so a tie with the worst loses too).
  auto select_best = [&](size_t k) {
    scratch_.clear();
    for (int32_t i = 0; i < n; ++i) {
      if (i % kBlock == 0 && scratch_.size() == k && n - i >= kBlock &&
          MaxOf(logits.data() + i, kBlock) * candidate_scale <= scratch_.front().first) {
        i += kBlock - 1;
        continue;
      }
      if (logits[i] == kNegInf) continue;
      const std::pair<float, int32_t> c(logits[i] * candidate_scale, i);
      if (scratch_.size() < k) {
        scratch_.push_back(c);
        std::push_heap(scratch_.begin(), scratch_.end(), by_logit);
      } else if (by_logit(c, scratch_.front())) {
        std::pop_heap(scratch_.begin(), scratch_.end(), by_logit);
        scratch_.back() = c;
        std::push_heap(scratch_.begin(), scratch_.end(), by_logit);
      }
    }
    std::sort_heap(scratch_.begin(), scratch_.end(), by_logit);
  };
  scratch_.clear();
  const bool top_k = options_.top_k > 0 && options_.top_k < candidates;
  if (top_k) {
    select_best(static_cast<size_t>(options_.top_k));
  } else if (options_.top_p < 1.0f) {
    // The nucleus is a prefix of the ordered candidates: the best 256 first (select_best),
    // then, while their mass is short of top_p of the total, the best m of all of them
    // (nth_element) sorted, m growing 8x (every candidate at worst).
    double total = 0;
    for (int32_t i = 0; i < n; ++i) {
      if (logits[i] != kNegInf) total += probability(logits[i] * candidate_scale);
    }
    const size_t all = static_cast<size_t>(candidates);
    size_t m = std::min<size_t>(256, all), sorted = 0, cut = all;
    double mass = 0;
    select_best(m);
    while (cut == all) {
      for (; sorted < m && cut == all; ++sorted) {
        mass += probability(scratch_[sorted].first) / total;
        if (mass >= options_.top_p) cut = sorted + 1;
      }
      if (cut < all || m == all) break;
      if (scratch_.size() < all) {  // every candidate, the best `sorted` of them first (in order)
        for (int32_t i = 0; i < n; ++i) {
          const float key = logits[i] * candidate_scale;
          if (logits[i] != kNegInf && by_logit(scratch_[sorted - 1], {key, i})) {
            scratch_.emplace_back(key, i);
          }
        }
      }
      m = std::min(m * 8, all);
      if (m < all) {
        std::nth_element(scratch_.begin() + sorted, scratch_.begin() + m, scratch_.end(), by_logit);
      }
      std::sort(scratch_.begin() + sorted, scratch_.begin() + m, by_logit);
    }
    scratch_.resize(cut);
  } else if (options_.min_p > 0.0f) {
    // Only what min-p keeps (a probability of at least min_p times the best's), sorted.
    const double threshold = static_cast<double>(options_.min_p);
    for (int32_t i = 0; i < n; ++i) {
      if (logits[i] == kNegInf) continue;
      const float key = logits[i] * candidate_scale;
      if (probability(key) >= threshold) scratch_.emplace_back(key, i);
    }
    std::sort(scratch_.begin(), scratch_.end(), by_logit);
  } else {
    for (int32_t i = 0; i < n; ++i) {
      if (logits[i] != kNegInf) scratch_.emplace_back(logits[i] * candidate_scale, i);
    }
  }
  probs_.resize(scratch_.size());
  for (size_t i = 0; i < scratch_.size(); ++i) probs_[i] = probability(scratch_[i].first);
  if (top_k && options_.top_p < 1.0f) {
    // Top-p within the top k: the smallest prefix with top_p of their mass.
    double total = 0;
    for (double p : probs_) total += p;
    double mass = 0;
    size_t cut = probs_.size();
    for (size_t i = 0; i < probs_.size(); ++i) {
      mass += probs_[i] / total;
      if (mass >= options_.top_p) {
        cut = i + 1;
        break;
      }
    }
    probs_.resize(cut);
    scratch_.resize(cut);
  }
  if (options_.min_p > 0.0f) {
    // probs_[0] is the most likely token (sorted above).
    const double threshold = options_.min_p * probs_[0];
    size_t cut = 1;
    while (cut < probs_.size() && probs_[cut] >= threshold) ++cut;
    probs_.resize(cut);
    scratch_.resize(cut);
  }
  double total = 0;
  for (double p : probs_) total += p;
  // 53 random bits -> uniform in [0, total).
  const double u = static_cast<double>(NextRandom() >> 11) * 0x1.0p-53 * total;
  double acc = 0;
  for (size_t i = 0; i < probs_.size(); ++i) {
    acc += probs_[i];
    if (u < acc) return scratch_[i].second;
  }
  return scratch_[probs_.size() - 1].second;
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
