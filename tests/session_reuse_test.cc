// KV reuse across turns on all four tiny fixture models (sliding windows of 6-8 positions, so
// every reply longer than a few tokens leaves the rings' reach): the conversation's token stream
// is what the next turn builds on, so an ordinary next turn processes only its new tokens, and
// a turn whose thought the template drops is re-processed from that thought on, never further
// back. Every prompt's logits equal a fresh forward pass over the same ids.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>

#include "api/session_impl.h"
#include "base/json.h"
#include "gemma4/model.h"
#include "gemma4/session.h"
#include "sanitizers.h"
#include "tiny_models.h"

namespace gemma4 {
namespace {

using testing::LoadTiny;

std::vector<int32_t> Ids(const Model& model, const std::string& text) {
  return model.tokenizer()->Encode(text);
}

ToolRegistry WeatherTools() {
  ToolRegistry tools;
  EXPECT_TRUE(tools
                  .Register("get_weather", "Weather for a city",
                            R"({"type": "object", "properties": {
                                 "city": {"type": "string"},
                                 "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                               "required": ["city", "unit"]})",
                            [](const std::string&) -> StatusOr<std::string> {
                              return std::string(R"({"temp": 18, "sky": "clear"})");
                            })
                  .ok());
  return tools;
}

enum class Kind { kPlain, kThinking, kTools };
const char* KindName(Kind k) {
  return k == Kind::kPlain ? "plain" : k == Kind::kThinking ? "thinking" : "tools";
}

// `n` ordinary (non-special) ids.
std::vector<int32_t> Words(const Model& model, size_t n, int turn) {
  std::string text;
  while (true) {
    text += "Turn " + std::to_string(turn) + " says once upon a time, the end. ";
    std::vector<int32_t> ids = Ids(model, text);
    if (ids.size() >= n) return std::vector<int32_t>(ids.begin(), ids.begin() + n);
  }
}

// The model's turn, scripted: [thought] [tool call, arguments in unsorted key order] answer.
std::vector<int32_t> TurnScript(const Model& model, Kind kind, size_t n, int turn) {
  std::vector<int32_t> script;
  auto add = [&](const std::vector<int32_t>& ids) {
    script.insert(script.end(), ids.begin(), ids.end());
  };
  if (kind == Kind::kThinking) {
    script.push_back(100);  // <|channel>
    add(Ids(model, "thought\n"));
    add(Words(model, n, turn + 100));
    script.push_back(101);  // <channel|>
  }
  if (kind == Kind::kTools) {
    script.push_back(48);  // <|tool_call>
    add(Ids(model, "call:get_weather{unit:<|\"|>celsius<|\"|>,city:<|\"|>Paris<|\"|>}"));
    script.push_back(49);  // <tool_call|>
    script.push_back(50);  // <|tool_response>: the round ends
  }
  add(Words(model, n, turn));
  return script;
}

struct Totals {
  int64_t processed = 0;  // prompt tokens of turns 2 and 3
  int64_t context = 0;    // their prompts' sizes
};

// Three turns; checks every turn's reuse bound and its prompt logits against a fresh pass.
void RunConversation(const std::shared_ptr<const Model>& model, Kind kind, size_t n,
                     Totals* totals) {
  SCOPED_TRACE(std::string(KindName(kind)) + " reply " + std::to_string(n));
  SessionOptions so;
  so.system_prompt = "Be brief.";
  if (kind == Kind::kTools) so.tools = std::make_shared<ToolRegistry>(WeatherTools());
  auto s = Session::Create(model, so);
  ASSERT_TRUE(s.ok());
  GenerateOptions o;
  o.max_tokens = static_cast<int>(2 * n + 100);
  o.stop_on_repetition = false;
  o.constrain_tool_calls = false;  // the script is the model
  o.thinking = kind == Kind::kThinking;
  for (int turn = 0; turn < 3; ++turn) {
    const std::vector<int32_t> before = (*s)->context_token_ids();
    const Turn* last = (*s)->history().empty() ? nullptr : &(*s)->history().back();
    int64_t expected_reused = static_cast<int64_t>(before.size());
    if (last != nullptr && last->role == Role::kModel && !last->thought_spans.empty()) {
      // The thought is dropped: back to where it began in the previous model turn.
      expected_reused = static_cast<int64_t>(before.size() - last->tokens.size()) +
                        last->thought_spans.front().first;
    }
    const std::vector<int32_t> script = TurnScript(*model, kind, n, turn);
    std::vector<float> first_logits;
    SessionAccess::SetLogitsHook(**s, [&](std::vector<float>* logits, size_t step) {
      if (step == 0) first_logits = *logits;
      const int32_t want = step < script.size() ? script[step] : 106;
      std::fill(logits->begin(), logits->end(), -1e9f);
      (*logits)[want] = 0;
    });
    auto r = (*s)->Send("Question " + std::to_string(turn) + ": how is the weather?", o);
    SessionAccess::SetLogitsHook(**s, nullptr);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->stop_reason, StopReason::kEndOfTurn);
    if (kind == Kind::kTools) {
      EXPECT_EQ(r->tool_calls.size(), 1u);
    }
    const std::vector<int32_t>& after = (*s)->context_token_ids();
    const int64_t prompt_size = r->reused_tokens + r->prompt_tokens;
    ASSERT_LE(prompt_size, static_cast<int64_t>(after.size()));
    if (turn > 0) {
      EXPECT_EQ(r->reused_tokens, expected_reused) << "turn " << turn;
      totals->processed += r->prompt_tokens;
      totals->context += prompt_size;
    }
    // The reused part is what the cache held.
    ASSERT_LE(static_cast<size_t>(r->reused_tokens), before.size());
    EXPECT_TRUE(std::equal(before.begin(), before.begin() + r->reused_tokens, after.begin()));
    // The prompt's last logits equal a fresh pass over the same ids.
    std::vector<int32_t> prompt(after.begin(), after.begin() + prompt_size);
    auto fresh = model->Logits(prompt);
    ASSERT_TRUE(fresh.ok()) << fresh.status().message();
    const int vocab = model->info().vocab_size;
    ASSERT_EQ(first_logits.size(), static_cast<size_t>(vocab));
    const float* row = fresh->data() + (prompt.size() - 1) * vocab;
    float worst = 0;
    for (int v = 0; v < vocab; ++v) worst = std::max(worst, std::fabs(row[v] - first_logits[v]));
    EXPECT_LE(worst, 1e-4f) << "turn " << turn;
    EXPECT_EQ(std::max_element(row, row + vocab) - row,
              std::max_element(first_logits.begin(), first_logits.end()) - first_logits.begin());
  }
}

// The position of the first turn after the system turn (the second <|turn>).
int64_t SystemEnd(const std::vector<int32_t>& ids) {
  for (size_t i = 2; i < ids.size(); ++i) {
    if (ids[i] == 105) return static_cast<int64_t>(i);
  }
  return -1;
}

// A document in the system prompt is reused by every question, whether the conversation goes
// back to it (Rewind, as example_docqa does) or old exchanges are dropped to make room.
TEST(SessionReuseSystemTest, RewindAndDroppedTurnsReuseTheSystemPrompt) {
  auto model = LoadTiny("tiny-e2b");
  ASSERT_NE(model, nullptr);
  std::string document = "Answer from this document:\n";
  for (int i = 0; i < 20; ++i) document += "Fact " + std::to_string(i) + " is true. ";
  for (ContextPolicy policy : {ContextPolicy::kError, ContextPolicy::kDropOldTurns}) {
    SessionOptions so;
    so.system_prompt = document;
    so.context_policy = policy;
    if (policy == ContextPolicy::kDropOldTurns) {
      so.max_context = static_cast<int64_t>(Ids(*model, document).size()) + 230;
    }
    auto s = Session::Create(model, so);
    ASSERT_TRUE(s.ok());
    GenerateOptions o;
    o.max_tokens = 200;
    o.stop_on_repetition = false;
    int64_t system_end = -1;
    for (int q = 0; q < 4; ++q) {
      const std::vector<int32_t> script = Words(*model, 60, q);
      std::vector<float> first_logits;
      SessionAccess::SetLogitsHook(**s, [&](std::vector<float>* logits, size_t step) {
        if (step == 0) first_logits = *logits;
        std::fill(logits->begin(), logits->end(), -1e9f);
        (*logits)[step < script.size() ? script[step] : 106] = 0;
      });
      auto r = (*s)->Send("Question " + std::to_string(q) + "?", o);
      ASSERT_TRUE(r.ok()) << r.status().message();
      const std::vector<int32_t>& ids = (*s)->context_token_ids();
      if (q == 0) {
        system_end = SystemEnd(ids);
        ASSERT_GT(system_end, 100);
      } else {
        // At least the whole system turn is reused (the rings alone reach 16 positions back).
        EXPECT_GE(r->reused_tokens, system_end) << "question " << q;
      }
      if (policy == ContextPolicy::kError) {
        ASSERT_TRUE((*s)->Rewind(1).ok());
      }
      const int64_t prompt_size = r->reused_tokens + r->prompt_tokens;
      std::vector<int32_t> prompt(ids.begin(), ids.begin() + prompt_size);
      auto fresh = model->Logits(prompt);
      ASSERT_TRUE(fresh.ok());
      const int vocab = model->info().vocab_size;
      const float* row = fresh->data() + (prompt.size() - 1) * vocab;
      float worst = 0;
      for (int v = 0; v < vocab; ++v) worst = std::max(worst, std::fabs(row[v] - first_logits[v]));
      EXPECT_LE(worst, 1e-4f);
    }
    if (policy == ContextPolicy::kDropOldTurns) {
      EXPECT_LT((*s)->history().size(), 9u);  // exchanges were dropped
    }
  }
}

class SessionReuseTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SessionReuseTest, NextTurnsProcessOnlyNewTokens) {
  auto model = LoadTiny(GetParam());
  ASSERT_NE(model, nullptr);
  for (Kind kind : {Kind::kPlain, Kind::kThinking, Kind::kTools}) {
    for (size_t n : {size_t{1}, size_t{40}, size_t{500}}) {
      // 500-token replies with thinking: a 500-token thought and a 500-token answer (the
      // case that needs the rewind point); plain and tool replies take the same path at 40.
      if (kind != Kind::kThinking && n == 500) continue;
      // Sanitizer builds run the 500-token case on one variant only: it is the same code path
      // for all four, and under ASan it alone would take minutes. Plain builds (the README's
      // test command) run every variant.
      if (testing::kSanitizedBuild && n == 500 && GetParam() != "tiny-e2b") continue;
      Totals totals;
      RunConversation(model, kind, n, &totals);
      std::printf("reuse %s %s reply %zu: turns 2-3 processed %lld of %lld prompt tokens\n",
                  GetParam().c_str(), KindName(kind), n, static_cast<long long>(totals.processed),
                  static_cast<long long>(totals.context));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, SessionReuseTest,
                         ::testing::Values("tiny-e2b", "tiny-e4b", "tiny-26b-a4b", "tiny-31b"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace gemma4
