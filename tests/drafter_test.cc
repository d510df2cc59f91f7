// Assistant drafters (model/drafter.h) against transformers' Gemma4AssistantForCausalLM on the
// tiny fixtures (tools/reference/make_assistant_fixtures.py), and speculative decoding
// (model/speculative.h): greedy output identical with and without drafting, and sampled output
// distributed as the target's (chi-square).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "api/memory_plan.h"
#include "api/session_impl.h"
#include "formats/mapped_file.h"
#include "gemma4/model.h"
#include "gemma4/session.h"
#include "model/drafter.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/speculative.h"
#include "reference_fixture.h"
#include "sanitizers.h"

namespace gemma4 {
namespace {

using testing::IntArray;
using testing::ModelDir;

// The targets with a drafter fixture.
const char* const kTargets[] = {"tiny-e2b", "tiny-26b-a4b"};

// Same bound as golden_test's full-model logits (measured here: see the EXPECT below's
// message); a wrong mask, position or missing op moves drafter logits by 0.1 or more.
constexpr float kTolerance = 1e-3f;

struct Pair {
  std::unique_ptr<LoadedModel> target;
  std::unique_ptr<Drafter> drafter;
};

Pair LoadPair(const std::string& variant) {
  Pair p;
  auto t = LoadedModel::Load(ModelDir(variant) + "/gemma4_text");
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  if (t.ok()) p.target = std::move(*t);
  auto d = Drafter::Load(ModelDir(variant) + "/assistant");
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  if (d.ok()) p.drafter = std::move(*d);
  return p;
}

json::Value ReadJson(const std::string& path) {
  auto text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << path;
  auto v = json::Parse(text.ok() ? *text : "{}", path);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  return v.ok() ? *v : json::Value();
}

std::vector<float> ReadFloats(const std::string& path) {
  auto bytes = ReadFileToString(path);
  EXPECT_TRUE(bytes.ok()) << path;
  std::vector<float> out(bytes.ok() ? bytes->size() / 4 : 0);
  if (!out.empty()) std::memcpy(out.data(), bytes->data(), out.size() * 4);
  return out;
}

// Checks k drafting steps against transformers' logits for every recorded case.
void CheckDraftLogits(const std::string& variant, const std::string& drafter_path,
                      std::optional<KvType> kv_type, float tolerance) {
  auto target = LoadedModel::Load(ModelDir(variant) + "/gemma4_text");
  ASSERT_TRUE(target.ok()) << target.status().ToString();
  auto drafter = Drafter::Load(drafter_path);
  ASSERT_TRUE(drafter.ok()) << drafter.status().ToString();
  ASSERT_TRUE((*drafter)->CheckCompatible((*target)->config()).ok());
  const json::Value ref = ReadJson(ModelDir(variant) + "/assistant_reference.json");
  const json::Value base = ReadJson(ModelDir(variant) + "/reference.json");
  std::vector<int32_t> full = IntArray(*base.Find("prompts")->as_array()[0].Find("ids"));
  const std::vector<int32_t> greedy = IntArray(*base.Find("prompts")->as_array()[0].Find("greedy"));
  full.insert(full.end(), greedy.begin(), greedy.end());
  const int V = (*target)->config().vocab_size, H = (*target)->config().hidden_size;
  ThreadPool pool(1);
  float worst = 0;
  for (const json::Value& cs : ref.Find("cases")->as_array()) {
    int64_t position = 0, token = 0;
    cs.Find("position")->GetInt64(&position);
    cs.Find("token")->GetInt64(&token);
    ASSERT_EQ(full[position], token);
    const std::vector<int32_t> drafted = IntArray(*cs.Find("drafted"));
    const std::vector<float> want =
        ReadFloats(ModelDir(variant) + "/" + cs.Find("logits")->as_string());
    ASSERT_EQ(want.size(), drafted.size() * V);
    InferenceState state(**target, &pool, DefaultMaxChunk(), kv_type);
    std::vector<float> hidden, logits;
    state.set_hidden_output(&hidden);
    ASSERT_TRUE(state.Forward(full.data(), position, LogitsMode::kLast, &logits).ok());
    ASSERT_EQ(static_cast<int>(hidden.size()), H);
    std::vector<float> h = hidden;
    int32_t last = static_cast<int32_t>(token);
    for (size_t step = 0; step < drafted.size(); ++step) {
      ASSERT_TRUE((*drafter)->Step(**target, state, last, position, &h, &logits, &pool).ok());
      float err = 0;
      for (int j = 0; j < V; ++j) err = std::max(err, std::fabs(logits[j] - want[step * V + j]));
      worst = std::max(worst, err);
      EXPECT_LE(err, tolerance) << variant << " position " << position << " step " << step;
      int32_t best = 0;
      for (int j = 1; j < V; ++j) best = logits[j] > logits[best] ? j : best;
      EXPECT_EQ(best, drafted[step]) << variant << " position " << position << " step " << step;
      last = best;
    }
  }
  std::printf("%s drafter logits: max |diff| vs transformers %.3g\n", variant.c_str(), worst);
}

TEST(Drafter, LoadsAndChecksCompatibility) {
  Pair p = LoadPair("tiny-e2b");
  ASSERT_TRUE(p.target && p.drafter);
  EXPECT_TRUE(p.drafter->config().ordered_embeddings);
  EXPECT_EQ(p.drafter->config().backbone_hidden_size, 64);
  EXPECT_TRUE(p.drafter->CheckCompatible(p.target->config()).ok());
  // The 26B-A4B-shaped drafter expects other head dims and a hidden size of 64 with 2 KV
  // heads on sliding layers; the E2B-shaped target has 1.
  auto other = Drafter::Load(ModelDir("tiny-26b-a4b") + "/assistant");
  ASSERT_TRUE(other.ok());
  const Status s = (*other)->CheckCompatible(p.target->config());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("KV heads"), std::string::npos) << s.message();
  // A target checkpoint is not a drafter.
  EXPECT_FALSE(Drafter::Load(ModelDir("tiny-e2b") + "/gemma4_text").ok());
}

// GGUF drafters as tools/reference/make_assistant_gguf.py writes them (llama.cpp's converter's
// names and keys; the E2B-shaped one keeps its centroid head).
TEST(Drafter, GgufMatchesTransformersLogits) {
  for (const char* v : kTargets) {
    CheckDraftLogits(v, ModelDir(v) + "/assistant.gguf", KvType::kF32, kTolerance);
  }
}

TEST(Drafter, MatchesTransformersLogits) {
  for (const char* v : kTargets)
    CheckDraftLogits(v, ModelDir(v) + "/assistant", KvType::kF32, kTolerance);
}

// The drafter reads f16 and block-quantized target caches (widened or dequantized rows). The
// bounds are the caches' own rounding (measured: f16 6.6e-3, q8_0 0.17 on logits of magnitude
// ~10; the drafted argmax tokens still all equal transformers'), while a misread row or head
// moves these logits by 1 or more.
TEST(Drafter, ReadsF16AndQuantizedCaches) {
  for (const char* v : kTargets) {
    CheckDraftLogits(v, ModelDir(v) + "/assistant", KvType::kF16, 2e-2f);
    CheckDraftLogits(v, ModelDir(v) + "/assistant", KvType::kQ8_0, 0.25f);
  }
}

// Greedy decoding through SpeculativeGenerate, with and without a drafter.
std::vector<int32_t> Greedy(const Pair& p, const Drafter* drafter, std::span<const int32_t> prompt,
                            int k, int max_tokens, SpeculativeStats* stats) {
  ThreadPool pool(1);
  InferenceState state(*p.target, &pool);
  SpeculativeOptions o;
  o.draft_tokens = k;
  o.max_tokens = max_tokens;
  auto out = SpeculativeGenerate(*p.target, drafter, &state, prompt, o, &pool, stats);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out.ok() ? *out : std::vector<int32_t>{};
}

TEST(Speculative, GreedyIdenticalWithAndWithoutDrafting) {
  for (const char* v : kTargets) {
    Pair p = LoadPair(v);
    ASSERT_TRUE(p.target && p.drafter);
    const testing::ReferenceFixture ref = testing::LoadReferenceFixture(v);
    for (const testing::ReferencePrompt& prompt : ref.prompts) {
      const int n = static_cast<int>(prompt.greedy.size());
      SpeculativeStats plain_stats;
      const std::vector<int32_t> plain = Greedy(p, nullptr, prompt.ids, 0, n, &plain_stats);
      EXPECT_EQ(plain, prompt.greedy) << v << ": plain greedy is transformers' greedy";
      EXPECT_EQ(plain_stats.target_forwards, n - 1);
      for (int k : {1, 3, 8}) {
        SpeculativeStats stats;
        EXPECT_EQ(Greedy(p, p.drafter.get(), prompt.ids, k, n, &stats), plain) << v << " k " << k;
        EXPECT_GT(stats.drafted, 0);
      }
      // Scripted drafts: the drafter is made to propose the true continuation except at every
      // third draft, so rounds end in full acceptance, partial acceptance and rejection, and
      // the kept cache positions of accepted drafts carry the rest of the generation.
      std::vector<int32_t> truth(prompt.ids.begin(), prompt.ids.end());
      truth.insert(truth.end(), plain.begin(), plain.end());
      for (int k : {2, 4}) {
        int calls = 0;
        SpeculativeStats stats;
        ThreadPool pool(1);
        InferenceState state(*p.target, &pool);
        SpeculativeOptions o;
        o.draft_tokens = k;
        o.max_tokens = n;
        o.draft_hook = [&](int64_t position, int index, int32_t, std::vector<float>* logits) {
          const size_t at = static_cast<size_t>(position) + 1 + index;
          const int32_t good = at < truth.size() ? truth[at] : 0;
          std::fill(logits->begin(), logits->end(), 0.0f);
          (*logits)[++calls % 3 == 0 ? (good + 1) % logits->size() : good] = 10.0f;
        };
        auto out =
            SpeculativeGenerate(*p.target, p.drafter.get(), &state, prompt.ids, o, &pool, &stats);
        ASSERT_TRUE(out.ok()) << out.status().ToString();
        EXPECT_EQ(*out, plain) << v << " scripted k " << k;
        EXPECT_GT(stats.accepted, 0) << v << " k " << k;
        EXPECT_LT(stats.accepted, stats.drafted) << v << " k " << k;
        EXPECT_LT(stats.target_forwards, n - 1) << v << " k " << k << ": drafting saved forwards";
      }
    }
  }
}

// Sessions with a drafter (ModelOptions::draft_model_path): the same reply, token for token, as
// without, greedy and sampled (the session's sampler still picks every token from the model's
// logits); scripted drafts make rounds end in full, partial and no acceptance.
TEST(Speculative, SessionRepliesUnchangedByDrafting) {
  ModelOptions plain_options;
  plain_options.tokenizer_path = std::string(GEMMA4_FIXTURES_DIR) + "/chat/tiny_tokenizer";
  plain_options.threads = 1;
  ModelOptions draft_options = plain_options;
  draft_options.draft_model_path = ModelDir("tiny-e2b") + "/assistant";
  draft_options.draft_tokens = 3;
  auto plain_model = Model::Load(ModelDir("tiny-e2b") + "/gemma4", plain_options);
  ASSERT_TRUE(plain_model.ok()) << plain_model.status().ToString();
  auto draft_model = Model::Load(ModelDir("tiny-e2b") + "/gemma4", draft_options);
  ASSERT_TRUE(draft_model.ok()) << draft_model.status().ToString();
  for (const bool sample : {false, true}) {
    GenerateOptions options;
    options.max_tokens = 24;
    options.stop_on_repetition = false;
    SamplerOptions sampler;
    sampler.temperature = sample ? 1.0f : 0.0f;
    sampler.top_k = 8;
    sampler.seed = 11;
    options.sampler = sampler;
    auto run = [&](const std::shared_ptr<const Model>& model, bool script,
                   const std::vector<int32_t>& truth, std::vector<int32_t>* context, Reply* reply) {
      auto session = Session::Create(model, {});
      ASSERT_TRUE(session.ok()) << session.status().ToString();
      int calls = 0;
      if (script) {
        SessionAccess::SetDraftHook(
            **session, [&](int64_t position, int index, std::vector<float>* logits) {
              const size_t at = static_cast<size_t>(position) + 1 + index;
              const int32_t good = at < truth.size() ? truth[at] : 0;
              std::fill(logits->begin(), logits->end(), 0.0f);
              (*logits)[++calls % 3 == 0 ? (good + 1) % logits->size() : good] = 10.0f;
            });
      }
      auto r = (*session)->Send("Hi there, tell me more", options);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      *reply = *r;
      *context = (*session)->context_token_ids();
      // The session goes on from the reply: a second turn works on the cache drafting left.
      auto again = (*session)->Send("And then?", options);
      ASSERT_TRUE(again.ok()) << again.status().ToString();
      reply->text += "|" + again->text;
    };
    Reply plain_reply, random_reply, scripted_reply;
    std::vector<int32_t> truth, context;
    run(*plain_model, false, {}, &truth, &plain_reply);
    run(*draft_model, false, {}, &context, &random_reply);
    EXPECT_EQ(random_reply.text, plain_reply.text) << "sample " << sample;
    EXPECT_EQ(context, truth);
    EXPECT_GT(random_reply.drafted_tokens, 0);
    run(*draft_model, true, truth, &context, &scripted_reply);
    EXPECT_EQ(scripted_reply.text, plain_reply.text) << "sample " << sample;
    EXPECT_EQ(context, truth);
    EXPECT_GT(scripted_reply.accepted_draft_tokens, 0) << "sample " << sample;
    EXPECT_LT(scripted_reply.accepted_draft_tokens, scripted_reply.drafted_tokens);
  }
}

// Chi-square upper critical value at significance 1e-3 (Wilson-Hilferty).
double ChiSquareCritical(int df) {
  const double z = 3.0902, a = 2.0 / (9.0 * df);
  return df * std::pow(1 - a + z * std::sqrt(a), 3);
}

// Pearson's statistic of `counts` against probabilities `expected` (cells with expected
// count < 5 pooled), and its degrees of freedom.
std::pair<double, int> ChiSquare(const std::map<std::pair<int, int>, int>& counts,
                                 const std::map<std::pair<int, int>, double>& expected, int n) {
  double stat = 0, pooled_e = 0, pooled_o = 0;
  int cells = 0;
  for (const auto& [cell, prob] : expected) {
    const double e = prob * n;
    const auto it = counts.find(cell);
    const double o = it == counts.end() ? 0 : it->second;
    if (e < 5) {
      pooled_e += e;
      pooled_o += o;
      continue;
    }
    stat += (o - e) * (o - e) / e;
    ++cells;
  }
  // Observations outside every expected cell count against the pool.
  int outside = 0;
  for (const auto& [cell, c] : counts) {
    if (!expected.count(cell)) outside += c;
  }
  pooled_o += outside;
  if (pooled_e > 0) {
    stat += (pooled_o - pooled_e) * (pooled_o - pooled_e) / std::max(pooled_e, 1e-9);
    ++cells;
  }
  return {stat, cells - 1};
}

TEST(Speculative, SamplingKeepsTheTargetDistribution) {
  Pair p = LoadPair("tiny-e2b");
  ASSERT_TRUE(p.target && p.drafter);
  const std::vector<int32_t> prompt = {2, 384, 353, 219, 207};
  SpeculativeOptions o;
  o.temperature = 1.0f;
  o.top_k = 6;
  o.draft_tokens = 1;
  o.max_tokens = 3;
  ThreadPool pool(1);
  const int V = p.target->config().vocab_size;
  // Exact joint law of the first two tokens: p(t1) p(t2 | t1).
  InferenceState base(*p.target, &pool);
  std::vector<float> logits, p1, p2;
  ASSERT_TRUE(base.Forward(prompt.data(), prompt.size(), LogitsMode::kLast, &logits).ok());
  TokenDistribution(logits, o, &p1);
  std::map<std::pair<int, int>, double> exact, draft_law;
  std::map<int, std::vector<float>> rows;  // target logits after prompt + t1
  std::mt19937 noise_rng(7);
  std::normal_distribution<float> noise(0.0f, 4.0f);
  std::map<int, std::vector<float>> draft_rows;  // what the scripted drafter proposes from
  for (int t1 = 0; t1 < V; ++t1) {
    if (p1[t1] <= 0) continue;
    InferenceState s(*p.target, &pool);
    ASSERT_TRUE(s.CopyStateFrom(base).ok());
    ASSERT_TRUE(s.Forward(&t1, 1, LogitsMode::kLast, &logits).ok());
    rows[t1] = logits;
    TokenDistribution(logits, o, &p2);
    // The drafter's logits: the target's plus noise, so q overlaps p without equalling it
    // (a random-weight drafter's q would share no support with p).
    std::vector<float> d = logits, q;
    for (float& x : d) x += noise(noise_rng);
    draft_rows[t1] = d;
    TokenDistribution(d, o, &q);
    for (int t2 = 0; t2 < V; ++t2) {
      if (p2[t2] > 0) exact[{t1, t2}] = p1[t1] * p2[t2];
      if (q[t2] > 0) draft_law[{t1, t2}] = p1[t1] * q[t2];
    }
  }
  o.draft_hook = [&](int64_t, int, int32_t from, std::vector<float>* l) {
    *l = draft_rows.at(from);
  };
  // Sanitizer builds: the same check with less power (at 600 samples the drafter's own law
  // still scores 708 on 7 df, far past the critical value).
  const int n = testing::kSanitizedBuild ? 600 : 2000;
  std::map<std::pair<int, int>, int> counts;
  SpeculativeStats stats;
  for (int i = 0; i < n; ++i) {
    o.seed = 1000 + i;
    InferenceState s(*p.target, &pool);
    auto out = SpeculativeGenerate(*p.target, p.drafter.get(), &s, prompt, o, &pool, &stats);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    ASSERT_GE(out->size(), 2u);
    ++counts[{(*out)[0], (*out)[1]}];
  }
  // Both acceptance and rejection happened (the residual distribution was used).
  EXPECT_GT(stats.accepted, stats.drafted / 10);
  EXPECT_LT(stats.accepted, stats.drafted);
  const auto [stat, df] = ChiSquare(counts, exact, n);
  std::printf("chi-square %.1f on %d df (critical %.1f); acceptance %.3f\n", stat, df,
              ChiSquareCritical(df), double(stats.accepted) / stats.drafted);
  EXPECT_LT(stat, ChiSquareCritical(df)) << "speculative samples do not follow the target";
  // The test can tell the laws apart: the drafter's own law fails it.
  const auto [wrong, wrong_df] = ChiSquare(counts, draft_law, n);
  std::printf("drafter law: chi-square %.1f on %d df\n", wrong, wrong_df);
  EXPECT_GT(wrong, ChiSquareCritical(wrong_df)) << "the test cannot distinguish q from p";
}

TEST(Speculative, RejectsBadOptions) {
  Pair p = LoadPair("tiny-e2b");
  ASSERT_TRUE(p.target && p.drafter);
  ThreadPool pool(1);
  // A round needs a forward step of draft_tokens + 2 positions: a 16-position state allows 14.
  InferenceState state(*p.target, &pool, /*max_chunk=*/16);
  SpeculativeOptions o;
  o.draft_tokens = 15;
  const std::vector<int32_t> prompt = {2, 5, 6};
  EXPECT_EQ(
      SpeculativeGenerate(*p.target, p.drafter.get(), &state, prompt, o, &pool).status().code(),
      StatusCode::kInvalidArgument);
  o.draft_tokens = 2;
  o.top_p = 0;
  EXPECT_EQ(
      SpeculativeGenerate(*p.target, p.drafter.get(), &state, prompt, o, &pool).status().code(),
      StatusCode::kInvalidArgument);
}

// The memory plan counts a drafter: the same bytes from the headers and from the loaded model,
// added to the total, about the size of its weight file (the tiny drafter's buffers are small).
TEST(Speculative, MemoryPlanCountsTheDrafter) {
  ModelOptions plain;
  plain.tokenizer_path = std::string(GEMMA4_FIXTURES_DIR) + "/chat/tiny_tokenizer";
  plain.threads = 1;
  ModelOptions drafting = plain;
  drafting.draft_model_path = ModelDir("tiny-e2b") + "/assistant";
  const std::string path = ModelDir("tiny-e2b") + "/gemma4";
  auto without = Model::PlanMemory(path, plain, 256);
  auto with = Model::PlanMemory(path, drafting, 256);
  ASSERT_TRUE(without.ok() && with.ok()) << with.status().ToString();
  EXPECT_EQ(without->drafter, 0u);
  const uint64_t file =
      std::filesystem::file_size(drafting.draft_model_path + "/model.safetensors");
  EXPECT_GT(with->drafter, file * 9 / 10);
  EXPECT_LT(with->drafter, file * 2);
  EXPECT_EQ(with->total, without->total + with->drafter);
  auto model = Model::Load(path, drafting);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto loaded = (*model)->PlanMemory(256);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->drafter, with->drafter);
  EXPECT_EQ(loaded->total, with->total);
  // A memory cap counts the drafter: a limit the plain model's one-token plan fits but not
  // with the drafter refuses the load; one that holds both loads it, and the plan agrees.
  // (The plain plan with 128-token steps, the smallest a capped load falls back to.)
  auto plain_inputs = GatherPlanInputs(path, plain);
  ASSERT_TRUE(plain_inputs.ok()) << plain_inputs.status().ToString();
  plain_inputs->max_chunk = kSmallestDefaultMaxChunk;
  const MemoryPlan one_plain = ComputeMemoryPlan(*plain_inputs, 1);
  auto one_drafting = Model::PlanMemory(path, drafting, 1);
  ASSERT_TRUE(one_drafting.ok());
  ModelOptions capped = drafting;
  capped.memory_limit_bytes = one_plain.total + one_drafting->drafter / 2;
  auto refused = Model::Load(path, capped);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted) << refused.status().ToString();
  capped.memory_limit_bytes = one_drafting->total;
  auto fits = Model::Load(path, capped);
  ASSERT_TRUE(fits.ok()) << fits.status().ToString();
  // Its plan at 256 tokens counts the drafter, with the forward steps such a session takes
  // under the cap (128 tokens where only those fit), as the file's plan with that cap does.
  auto fits_plan = (*fits)->PlanMemory(256);
  auto capped_plan = Model::PlanMemory(path, capped, 256);
  ASSERT_TRUE(fits_plan.ok() && capped_plan.ok());
  EXPECT_EQ(fits_plan->drafter, with->drafter);
  EXPECT_EQ(fits_plan->total, capped_plan->total);
  EXPECT_EQ(fits_plan->step_tokens, capped_plan->step_tokens);
  if (fits_plan->step_tokens == with->step_tokens) {
    EXPECT_EQ(fits_plan->total, with->total);
  }
  drafting.draft_model_path = "/nonexistent/assistant";
  EXPECT_FALSE(Model::PlanMemory(path, drafting, 256).ok());
}

}  // namespace
}  // namespace gemma4
