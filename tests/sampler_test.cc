#include "gemma4/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

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

}  // namespace
}  // namespace gemma4
