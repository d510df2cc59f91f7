#include "gemma4/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <span>
#include <utility>
#include <vector>

namespace gemma4 {
namespace {

SamplerOptions Temp(float t, uint64_t seed = 1) {
  SamplerOptions o;
  o.temperature = t;
  o.top_p = 1.0f;
  o.seed = seed;
  return o;
}

TEST(SamplerTest, GreedyPicksArgmaxLowestIdOnTies) {
  Sampler s(Temp(0));
  std::vector<float> l = {1, 3, 2, 3};
  EXPECT_EQ(s.Sample(l, {}), 1);
  SamplerOptions k1 = Temp(1);
  k1.top_k = 1;
  Sampler top1(k1);
  std::vector<float> l2 = {0.5f, 0.1f, 2.0f, -1.0f};
  EXPECT_EQ(top1.Sample(l2, {}), 2);
}

// 20000 draws from softmax([0, 1, 2, 0.5]): each frequency within 5 standard deviations
// (sqrt(p(1-p)/N) <= 0.0035) of its probability.
TEST(SamplerTest, TemperatureSamplingFollowsSoftmax) {
  const std::vector<float> base = {0, 1, 2, 0.5f};
  for (float t : {1.0f, 0.5f}) {
    Sampler s(Temp(t, 7));
    std::vector<int> counts(4);
    const int draws = 20000;
    for (int i = 0; i < draws; ++i) {
      std::vector<float> l = base;
      ++counts[s.Sample(l, {})];
    }
    double z = 0;
    for (float v : base) z += std::exp(v / t);
    for (int k = 0; k < 4; ++k) {
      const double p = std::exp(base[k] / t) / z;
      const double sd = std::sqrt(p * (1 - p) / draws);
      EXPECT_NEAR(counts[k] / double(draws), p, 5 * sd + 1e-9) << "t=" << t << " k=" << k;
    }
  }
}

TEST(SamplerTest, TopPAndMinPExcludeTheTail) {
  // probabilities ~ 0.64, 0.24, 0.09, 0.03
  const std::vector<float> base = {3, 2, 1, -0.1f};
  SamplerOptions o = Temp(1, 3);
  o.top_p = 0.8f;  // keeps the first two (0.64 < 0.8 <= 0.88)
  Sampler p(o);
  SamplerOptions m = Temp(1, 3);
  m.min_p = 0.2f;  // keeps p >= 0.128: the first two
  Sampler mp(m);
  std::vector<int> seen_p(4), seen_m(4);
  for (int i = 0; i < 5000; ++i) {
    std::vector<float> l = base;
    ++seen_p[p.Sample(l, {})];
    l = base;
    ++seen_m[mp.Sample(l, {})];
  }
  EXPECT_GT(seen_p[0], 0);
  EXPECT_GT(seen_p[1], 0);
  EXPECT_EQ(seen_p[2] + seen_p[3], 0);
  EXPECT_GT(seen_m[1], 0);
  EXPECT_EQ(seen_m[2] + seen_m[3], 0);
}

TEST(SamplerTest, PenaltiesFollowTheDocumentedRules) {
  SamplerOptions o = Temp(0);
  o.repetition_penalty = 2.0f;
  o.frequency_penalty = 0.5f;
  o.presence_penalty = 0.25f;
  Sampler s(o);
  std::vector<float> l = {4.0f, -1.0f, 3.0f, 1.0f};
  const std::vector<int32_t> history = {0, 0, 1, 7, -3};  // out-of-range ids ignored
  s.Sample(l, history);
  // id 0: 4/2 - 0.5*2 - 0.25 = 0.75; id 1: -1*2 - 0.5 - 0.25 = -2.75
  EXPECT_FLOAT_EQ(l[0], 0.75f);
  EXPECT_FLOAT_EQ(l[1], -2.75f);
  EXPECT_FLOAT_EQ(l[2], 3.0f);
  SamplerOptions last = Temp(0);
  last.presence_penalty = 10;
  last.penalty_last_n = 1;
  Sampler only_last(last);
  std::vector<float> l2 = {5, 4, 0};
  EXPECT_EQ(only_last.Sample(l2, std::vector<int32_t>{1, 0}), 1);  // only id 0 penalized
}

TEST(SamplerTest, BiasAndAllowedMask) {
  SamplerOptions o = Temp(0);
  o.logit_bias = {{0, -INFINITY}, {2, 0.5f}, {99, 1.0f}};
  Sampler s(o);
  std::vector<float> l = {10, 1, 1};
  EXPECT_EQ(s.Sample(l, {}), 2);
  Sampler free(Temp(1));
  std::vector<float> l2 = {10, 1, 1};
  EXPECT_EQ(free.Sample(l2, {}, {false, true, false}), 1);
  std::vector<float> l3 = {10, 1, 1};
  EXPECT_EQ(free.Sample(l3, {}, {false, false, false}), -1);
  std::vector<float> empty;
  EXPECT_EQ(free.Sample(empty, {}), -1);
}

TEST(SamplerTest, NanAndInfinity) {
  Sampler s(Temp(1));
  std::vector<float> l = {NAN, 1, NAN};
  EXPECT_EQ(s.Sample(l, {}), 1);
  std::vector<float> all = {NAN, -INFINITY};
  EXPECT_EQ(s.Sample(all, {}), -1);
  std::vector<float> inf = {0, INFINITY, 1};
  EXPECT_EQ(s.Sample(inf, {}), 1);
}

TEST(SamplerTest, SeedDeterminism) {
  std::mt19937 gen(5);
  std::normal_distribution<float> d;
  std::vector<float> base(1000);
  for (float& v : base) v = d(gen);
  auto run = [&](uint64_t seed) {
    SamplerOptions o = Temp(1, seed);
    o.top_k = 50;
    o.top_p = 0.95f;
    Sampler s(o);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) {
      std::vector<float> l = base;
      out.push_back(s.Sample(l, {}));
    }
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(SamplerTest, ValidationNamesTheField) {
  struct Case {
    SamplerOptions o;
    const char* field;
  };
  std::vector<Case> cases(8);
  cases[0].o.temperature = -1;
  cases[0].field = "temperature";
  cases[1].o.top_p = 0;
  cases[1].field = "top_p";
  cases[2].o.top_p = 1.5f;
  cases[2].field = "top_p";
  cases[3].o.min_p = 2;
  cases[3].field = "min_p";
  cases[4].o.repetition_penalty = 0;
  cases[4].field = "repetition_penalty";
  cases[5].o.top_k = -2;
  cases[5].field = "top_k";
  cases[6].o.penalty_last_n = -1;
  cases[6].field = "penalty_last_n";
  cases[7].o.logit_bias = {{-1, 0}};
  cases[7].field = "logit_bias";
  for (const Case& c : cases) {
    Status s = ValidateSamplerOptions(c.o);
    ASSERT_FALSE(s.ok()) << c.field;
    EXPECT_NE(s.message().find(c.field), std::string::npos) << s.message();
  }
  EXPECT_TRUE(ValidateSamplerOptions(SamplerOptions{}).ok());
}

TEST(SamplerTest, RepetitionGuard) {
  std::vector<int32_t> is(40, 17);
  EXPECT_TRUE(IsDegenerateRepetition(is));
  std::vector<int32_t> sentence;
  for (int r = 0; r < 6; ++r) {
    for (int32_t t : {5, 9, 11, 3, 8, 2, 40}) sentence.push_back(t);
  }
  EXPECT_TRUE(IsDegenerateRepetition(sentence));
  std::mt19937 gen(1);
  std::vector<int32_t> random(500);
  for (int32_t& t : random) t = static_cast<int32_t>(gen() % 1000);
  EXPECT_FALSE(IsDegenerateRepetition(random));
  EXPECT_FALSE(IsDegenerateRepetition(std::vector<int32_t>(10, 4)));  // too short
  std::vector<int32_t> prefix_then_loop = random;
  for (int i = 0; i < 40; ++i) prefix_then_loop.push_back(i % 2 ? 7 : 8);
  EXPECT_TRUE(IsDegenerateRepetition(prefix_then_loop));
}

// Temperatures so small that logit / temperature overflows a float gave NaN probabilities (and
// then always the last candidate). The draw is now the best logit, or one of the tied best.
TEST(SamplerTest, TinyTemperaturesAreStable) {
  for (float temperature : {1e-38f, 1e-45f, 1e-30f}) {
    for (uint64_t seed = 0; seed < 50; ++seed) {
      SamplerOptions o = Temp(temperature, seed);
      Sampler s(o);
      std::vector<float> l = {1, 3, 2, -50};
      EXPECT_EQ(s.Sample(l, {}), 1) << "temperature " << temperature << " seed " << seed;
      o.top_k = 3;
      o.top_p = 0.5f;
      o.min_p = 0.1f;
      Sampler filtered(o);
      std::vector<float> l2 = {1, 3, 2, -50};
      EXPECT_EQ(filtered.Sample(l2, {}), 1) << "temperature " << temperature;
    }
  }
  // Tied best logits share the draw.
  std::set<int32_t> seen;
  for (uint64_t seed = 0; seed < 64; ++seed) {
    Sampler s(Temp(1e-38f, seed));
    std::vector<float> l = {5, 0, 5, 4.9999995f};
    seen.insert(s.Sample(l, {}));
  }
  EXPECT_EQ(seen, (std::set<int32_t>{0, 2}));
}

TEST(SamplerTest, CheckLogitsFiniteNamesThePosition) {
  std::vector<float> logits(3 * 5, 0.5f);
  EXPECT_TRUE(CheckLogitsFinite(logits, 5, 10).ok());
  logits[5 + 3] = NAN;
  Status s = CheckLogitsFinite(logits, 5, 10);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("position 11 are not finite (token 3: NaN)"), std::string::npos)
      << s.message();
  logits[5 + 3] = 0;
  logits[2 * 5] = -INFINITY;
  s = CheckLogitsFinite(logits, 5, 0);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("position 2 are not finite (token 0: -inf)"), std::string::npos)
      << s.message();
  logits[2 * 5] = 3.4e38f;  // large but finite
  EXPECT_TRUE(CheckLogitsFinite(logits, 5, 0).ok());
}

// The sampling pipeline as first written (sorting every candidate for top-p and min-p,
// partial_sort for top-k), kept as the reference the faster selection is held to: the same
// ids for the same seed.
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Xoshiro {  // xoshiro256** seeded with splitmix64, as Sampler documents
  explicit Xoshiro(uint64_t seed) {
    uint64_t x = seed;
    for (uint64_t& v : s) {
      uint64_t z = (x += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      v = z ^ (z >> 31);
    }
  }
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t Next() {
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
  uint64_t s[4];
};

// (From the argmax on: the bias, mask and penalties before it are unchanged and not exercised.)
int32_t ReferenceSample(const SamplerOptions& options_, Xoshiro& rng, std::span<float> logits) {
  std::vector<std::pair<float, int32_t>> scratch_;
  const int32_t n = static_cast<int32_t>(logits.size());
  if (n == 0) return -1;
  for (float& l : logits) {
    if (std::isnan(l)) l = kNegInf;
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
  const double u = static_cast<double>(rng.Next() >> 11) * 0x1.0p-53 * total;
  double acc = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    acc += probs[i];
    if (u < acc) return scratch_[i].second;
  }
  return scratch_[probs.size() - 1].second;
}

// Random logits (normal, of several spreads; some -inf and NaN; ties from rounding to a grid) of
// odd vocabulary sizes, every combination of temperature, top-k, top-p and min-p, 12 seeded draws
// each: the sampler picks what the reference picks.
TEST(SamplerTest, MatchesTheReferencePipeline) {
  std::mt19937 rng(11);
  int cases = 0;
  for (const int vocab : {1, 7, 300, 5003, 262144}) {
    for (const float spread : {0.3f, 3.0f, 12.0f}) {
      std::normal_distribution<float> normal(0.0f, spread);
      std::vector<float> base(vocab);
      for (float& v : base) v = normal(rng);
      for (int i = 0; i < vocab; i += 7) base[i] = std::round(base[i] * 4) / 4;  // ties
      for (int i = 3; i < vocab; i += 11) base[i] = kNegInf;
      for (int i = 5; i < vocab; i += 13) base[i] = std::numeric_limits<float>::quiet_NaN();
      for (const float temperature : {0.0f, 0.4f, 1.0f, 1.7f, 1e-38f}) {
        for (const int top_k : {0, 1, 5, 64, 400}) {
          for (const float top_p : {1.0f, 0.95f, 0.5f}) {
            for (const float min_p : {0.0f, 0.05f, 0.5f}) {
              if (vocab == 262144 && (top_k % 5 != 4 || spread != 3.0f)) continue;  // (time)
              SamplerOptions o;
              o.temperature = temperature;
              o.top_k = top_k;
              o.top_p = top_p;
              o.min_p = min_p;
              o.seed = static_cast<uint64_t>(cases);
              Sampler sampler(o);
              Xoshiro reference_rng(o.seed);
              // Twelve draws follow the generator's sequence; at the full vocabulary, where each
              // reference draw sorts 262144 values, three.
              const int draws = vocab == 262144 ? 3 : 12;
              for (int draw = 0; draw < draws; ++draw) {
                std::vector<float> a = base, b = base;
                const int32_t got = sampler.Sample(a, {});
                const int32_t want = ReferenceSample(o, reference_rng, b);
                ASSERT_EQ(got, want) << "vocab " << vocab << " spread " << spread << " T "
                                     << temperature << " top_k " << top_k << " top_p " << top_p
                                     << " min_p " << min_p << " draw " << draw;
              }
              ++cases;
            }
          }
        }
      }
    }
  }
  EXPECT_GT(cases, 2000);
}

}  // namespace
}  // namespace gemma4
