// Session: the chat loop on the tiny random-weight fixture models (E2B: small template, sliding
// windows of 6-8 tokens; 31B: large template) with a tokenizer whose ids fit their 512-entry
// vocabularies. Scripted logits (SessionAccess::SetLogitsHook) stand in for a trained model where
// the test needs specific output (thinking, tool calls); constrained decoding is checked on the
// raw random model.
#include "gemma4/session.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

#include "api/session_impl.h"
#include "base/json.h"
#include "chat/chat_template.h"
#include "gemma4/model.h"
#include "sanitizers.h"
#include "tiny_models.h"

namespace gemma4 {
namespace {

using testing::LoadTiny;
using testing::TinyE2b;
using testing::TinyModelOptions;

const std::string kFixtures = GEMMA4_FIXTURES_DIR;

// Greedy decoding that never ends the turn by itself (random weights would stop anywhere).
GenerateOptions Greedy(int max_tokens) {
  GenerateOptions o;
  o.max_tokens = max_tokens;
  SamplerOptions s;
  s.temperature = 0;
  for (int32_t stop : {1, 106, 50, 48, 100}) s.logit_bias.emplace_back(stop, -INFINITY);
  o.sampler = s;
  o.stop_on_repetition = false;
  return o;
}

// Options for a scripted turn: no bans (the script ends with <turn|>), no repetition guard.
GenerateOptions Scripted() {
  GenerateOptions o;
  o.max_tokens = 400;
  o.stop_on_repetition = false;
  return o;
}

// Forces `script` token by token, then <turn|>.
std::function<void(std::vector<float>*, size_t)> Script(std::vector<int32_t> script) {
  return [script](std::vector<float>* logits, size_t step) {
    const int32_t want = step < script.size() ? script[step] : 106;
    std::fill(logits->begin(), logits->end(), -1e9f);
    (*logits)[want] = 0;
  };
}

SessionOptions WithSystem(std::string system) {
  SessionOptions o;
  o.system_prompt = std::move(system);
  return o;
}
SessionOptions WithTools(std::shared_ptr<const ToolRegistry> tools) {
  SessionOptions o;
  o.tools = std::move(tools);
  return o;
}
SessionOptions WithContext(int64_t max_context, ContextPolicy policy = ContextPolicy::kError) {
  SessionOptions o;
  o.max_context = max_context;
  o.context_policy = policy;
  return o;
}

std::vector<int32_t> Ids(const Model& model, const std::string& text) {
  return model.tokenizer()->Encode(text);
}

TEST(SessionTest, GreedyRepliesAreDeterministicAndStream) {
  auto model = TinyE2b();
  ASSERT_NE(model, nullptr);
  auto a = Session::Create(model);
  auto b = Session::Create(model);
  ASSERT_TRUE(a.ok() && b.ok());
  GenerateOptions o = Greedy(12);
  std::string streamed;
  o.on_text = [&](StreamKind kind, std::string_view t) {
    EXPECT_EQ(kind, StreamKind::kText);
    streamed += t;
    return true;
  };
  auto ra = (*a)->Send("Hello there", o);
  ASSERT_TRUE(ra.ok()) << ra.status().message();
  o.on_text = nullptr;
  auto rb = (*b)->Send("Hello there", o);
  ASSERT_TRUE(rb.ok());
  EXPECT_EQ(ra->text, rb->text);
  EXPECT_EQ(streamed, ra->text);
  EXPECT_EQ(ra->generated_tokens, 12);
  EXPECT_EQ(ra->stop_reason, StopReason::kMaxTokens);
  EXPECT_EQ((*a)->history().size(), 2u);
  EXPECT_EQ((*a)->history()[1].text, ra->text);
}

// The second turn reuses the KV cache and gives exactly what a fresh forward pass over the
// rendered prompt gives (sliding windows of 6-8 tokens are crossed many times).
TEST(SessionTest, SecondTurnReusesCacheAndMatchesFreshComputation) {
  auto model = TinyE2b();
  ASSERT_NE(model, nullptr);
  auto s = Session::Create(model, WithSystem("Be brief."));
  ASSERT_TRUE(s.ok());
  // A scripted first answer (a random model's text may start with a space, which the template
  // trims, so its cache entries could not be reused), then free greedy decoding.
  SessionAccess::SetLogitsHook(**s, Script(Ids(*model, "It is sunny today.")));
  auto r1 = (*s)->Send("First question about the weather", Scripted());
  SessionAccess::SetLogitsHook(**s, nullptr);
  ASSERT_TRUE(r1.ok()) << r1.status().message();
  const int64_t after_first = (*s)->context_tokens();
  auto r2 = (*s)->Send("Second question", Greedy(6));
  ASSERT_TRUE(r2.ok());
  // Everything up to the end of the first answer is reused (the answer's own ids are spliced
  // into the re-rendered prompt); only "<turn|>\n<|turn>user\nSecond question..." is new.
  EXPECT_EQ(r2->reused_tokens, after_first);
  // Fresh: render the history up to the second user turn and run it from scratch.
  std::vector<json::Value> messages;
  for (size_t i = 0; i + 1 < (*s)->history().size(); ++i) {
    const Turn& t = (*s)->history()[i];
    json::Value::Object m;
    m.emplace_back("role", json::Value::String(t.role == Role::kSystem ? "system"
                                               : t.role == Role::kUser ? "user"
                                                                       : "assistant"));
    m.emplace_back("content", json::Value::String(t.text));
    messages.push_back(json::Value::MakeObject(std::move(m)));
  }
  auto text = chat::RenderChat(messages, {}, {});
  ASSERT_TRUE(text.ok());
  std::vector<int32_t> prompt = Ids(*model, text->Text());
  EXPECT_EQ(static_cast<size_t>(r2->reused_tokens + r2->prompt_tokens), prompt.size());
  std::string fresh_text;
  for (int step = 0; step < 6; ++step) {
    auto logits = model->Logits(prompt);
    ASSERT_TRUE(logits.ok());
    const int vocab = model->info().vocab_size;
    const float* last = logits->data() + (prompt.size() - 1) * vocab;
    int32_t best = -1;
    for (int32_t v = 0; v < vocab; ++v) {
      if (v == 1 || v == 106 || v == 50 || v == 48 || v == 100) continue;
      if (best < 0 || last[v] > last[best]) best = v;
    }
    prompt.push_back(best);
    fresh_text += model->tokenizer()->TokenBytes(best);
  }
  EXPECT_EQ(r2->text, fresh_text);
}

TEST(SessionTest, ThinkingAndAnswerArriveSeparately) {
  auto model = TinyE2b();
  auto s = Session::Create(model);
  ASSERT_TRUE(s.ok());
  std::vector<int32_t> script = {100};  // <|channel>
  for (int32_t id : Ids(*model, "thought\nLet me see")) script.push_back(id);
  script.push_back(101);  // <channel|>
  for (int32_t id : Ids(*model, "The answer")) script.push_back(id);
  SessionAccess::SetLogitsHook(**s, Script(script));
  GenerateOptions o;
  o.thinking = true;
  std::string thought, text;
  o.on_text = [&](StreamKind k, std::string_view t) {
    (k == StreamKind::kThought ? thought : text) += t;
    return true;
  };
  auto r = (*s)->Send("Question?", o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->thought, "Let me see");
  EXPECT_EQ(r->text, "The answer");
  EXPECT_EQ(thought, "Let me see");
  EXPECT_EQ(text, "The answer");
  EXPECT_EQ(r->stop_reason, StopReason::kEndOfTurn);
  // The next prompt strips the thought: the turn is re-rendered without it.
  SessionAccess::SetLogitsHook(**s, Script({}));
  auto r2 = (*s)->Send("Next", o);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ((*s)->history()[1].thought, "Let me see");
}

TEST(SessionTest, ThinkingBudgetClosesTheThought) {
  auto model = TinyE2b();
  auto s = Session::Create(model);
  ASSERT_TRUE(s.ok());
  // The script thinks forever; the budget forces <channel|> after 5 thought tokens.
  SessionAccess::SetLogitsHook(**s, [](std::vector<float>* logits, size_t step) {
    std::fill(logits->begin(), logits->end(), -1e9f);
    (*logits)[step == 0 ? 100 : 60] = 0;  // <|channel>, then one text token forever
  });
  GenerateOptions o;
  o.thinking = true;
  o.thinking_budget = 5;
  o.max_tokens = 12;
  o.stop_on_repetition = false;
  auto r = (*s)->Send("Think", o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const std::string piece = model->tokenizer()->TokenBytes(60);
  ASSERT_FALSE(piece.empty());
  std::string five;
  for (int i = 0; i < 4; ++i) five += piece;  // 4 text tokens + the forced close = 5
  five += piece;  // exactly the budget: 5 thought tokens, then the forced <channel|>
  EXPECT_EQ(r->thought, five);
  EXPECT_FALSE(r->text.empty());  // after the forced close the answer continues
}

ToolRegistry WeatherTools(std::atomic<int>* calls) {
  ToolRegistry tools;
  EXPECT_TRUE(tools
                  .Register("get_weather", "Weather for a city",
                            R"({"type": "object", "properties": {
                                 "city": {"type": "string", "maxLength": 20},
                                 "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                                 "days": {"type": "integer"}},
                               "required": ["city", "unit"]})",
                            [calls](const std::string& args) -> StatusOr<std::string> {
                              ++*calls;
                              auto v = json::Parse(args);
                              if (!v.ok()) return v.status();
                              return std::string(R"({"temp": 18, "sky": "clear"})");
                            })
                  .ok());
  return tools;
}

// With constraints on, a random-weight model forced to open a tool call still produces a call
// that parses and matches the schema, the tool runs, and its result is fed back.
TEST(SessionTest, ConstrainedToolCallsFromRandomModelAreValid) {
  auto model = TinyE2b();
  std::atomic<int> calls{0};
  auto tools = std::make_shared<ToolRegistry>(WeatherTools(&calls));
  // Six sampled calls; sanitizer builds take two (55 s under ASan for six).
  const uint64_t seeds = testing::kSanitizedBuild ? 2 : 6;
  for (uint64_t seed = 0; seed < seeds; ++seed) {
    auto s = Session::Create(model, WithTools(tools));
    ASSERT_TRUE(s.ok());
    // Force <|tool_call> first; the arguments are sampled freely under the grammar.
    SessionAccess::SetLogitsHook(**s, [](std::vector<float>* logits, size_t step) {
      if (step == 0) {
        std::fill(logits->begin(), logits->end(), -1e9f);
        (*logits)[48] = 0;
      }
    });
    GenerateOptions o;
    SamplerOptions sampler;
    sampler.temperature = 1.0f;
    sampler.seed = seed;
    o.sampler = sampler;
    o.max_tokens = 1000;
    o.max_tool_steps = 1;
    o.max_calls_per_round = 2;
    o.stop_on_repetition = false;
    auto r = (*s)->Send("Weather in Paris?", o);
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_GE(r->tool_calls.size(), 1u) << "seed " << seed;
    ASSERT_GE(r->tool_results.size(), 1u)
        << "seed " << seed << " stop " << static_cast<int>(r->stop_reason) << " calls "
        << r->tool_calls.size() << " " << r->tool_calls[0].name << r->tool_calls[0].arguments_json
        << " text " << r->text;
    const ToolCall& call = r->tool_calls[0];
    EXPECT_EQ(call.name, "get_weather");
    auto args = json::Parse(call.arguments_json);
    ASSERT_TRUE(args.ok()) << call.arguments_json;
    ASSERT_TRUE(args->is_object());
    const json::Value* city = args->Find("city");
    const json::Value* unit = args->Find("unit");
    ASSERT_NE(city, nullptr) << call.arguments_json;
    EXPECT_TRUE(city->is_string());
    ASSERT_NE(unit, nullptr);
    EXPECT_TRUE(unit->as_string() == "celsius" || unit->as_string() == "fahrenheit");
    if (const json::Value* days = args->Find("days")) {
      int64_t d;
      EXPECT_TRUE(days->GetInt64(&d)) << call.arguments_json;
    }
    ASSERT_GE(r->tool_results.size(), 1u);
    EXPECT_FALSE(r->tool_results[0].is_error) << r->tool_results[0].response_json;
  }
  EXPECT_GE(calls.load(), static_cast<int>(seeds));
}

TEST(SessionTest, ToolCallRoundTripContinuesTheTurn) {
  auto model = TinyE2b();
  std::atomic<int> calls{0};
  auto tools = std::make_shared<ToolRegistry>(WeatherTools(&calls));
  auto s = Session::Create(model, WithTools(tools));
  ASSERT_TRUE(s.ok());
  // Scripted: a call, then <|tool_response> (stop), then after the response an answer.
  const std::string call = "call:get_weather{city:<|\"|>Paris<|\"|>,unit:<|\"|>celsius<|\"|>}";
  std::vector<int32_t> script = {48};
  for (int32_t id : Ids(*model, call)) script.push_back(id);
  script.push_back(49);
  script.push_back(50);
  for (int32_t id : Ids(*model, "It is 18")) script.push_back(id);
  SessionAccess::SetLogitsHook(**s, Script(script));
  GenerateOptions o;
  o.constrain_tool_calls = false;  // the script is the model; the parser is under test
  std::vector<std::string> seen;
  o.on_tool_call = [&](const ToolCall& c) { seen.push_back(c.name + c.arguments_json); };
  auto r = (*s)->Send("Weather?", o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], R"(get_weather{"city":"Paris","unit":"celsius"})");
  ASSERT_EQ(r->tool_results.size(), 1u);
  EXPECT_EQ(r->tool_results[0].response_json, R"({"temp":18,"sky":"clear"})");
  EXPECT_EQ(r->text, "It is 18");
  EXPECT_EQ(calls.load(), 1);
  // The rendered history has the call and response inside the model turn.
  const Turn& t = (*s)->history().back();
  EXPECT_EQ(t.tool_calls.size(), 1u);
  EXPECT_EQ(t.tool_results.size(), 1u);
  // Without execute_tools the turn stops at the call and continues with the caller's result.
  auto s2 = Session::Create(model, WithTools(tools));
  ASSERT_TRUE(s2.ok());
  SessionAccess::SetLogitsHook(**s2, Script(script));
  o.execute_tools = false;
  auto r2 = (*s2)->Send("Weather?", o);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->stop_reason, StopReason::kToolCall);
  // The hook counts steps per reply: after the results it must produce the answer.
  std::vector<int32_t> rest;
  for (int32_t id : Ids(*model, "It is 18")) rest.push_back(id);
  SessionAccess::SetLogitsHook(**s2, Script(rest));
  auto r3 = (*s2)->SubmitToolResults({{"get_weather", R"({"temp": 18})", false}}, o);
  ASSERT_TRUE(r3.ok()) << r3.status().message();
  EXPECT_EQ(r3->text, "It is 18");
  EXPECT_EQ(calls.load(), 1);
}

TEST(SessionTest, JsonSchemaAnswerFromRandomModelParses) {
  auto model = TinyE2b();
  const std::string schema = R"({"type": "object", "properties": {
      "name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"},
      "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "maxItems": 3}},
      "required": ["name", "age", "tags"]})";
  for (uint64_t seed = 0; seed < 4; ++seed) {
    auto s = Session::Create(model);
    ASSERT_TRUE(s.ok());
    GenerateOptions o;
    o.json_schema = schema;
    SamplerOptions sampler;
    sampler.seed = seed;
    o.sampler = sampler;
    o.max_tokens = 600;
    o.stop_on_repetition = false;
    auto r = (*s)->Send("Describe a person as JSON", o);
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_EQ(r->stop_reason, StopReason::kEndOfTurn) << r->text;
    auto v = json::Parse(r->text);
    ASSERT_TRUE(v.ok()) << r->text;
    ASSERT_NE(v->Find("name"), nullptr);
    EXPECT_TRUE(v->Find("name")->is_string());
    int64_t age;
    ASSERT_NE(v->Find("age"), nullptr);
    EXPECT_TRUE(v->Find("age")->GetInt64(&age));
    ASSERT_NE(v->Find("tags"), nullptr);
    EXPECT_LE(v->Find("tags")->as_array().size(), 3u);
  }
}

TEST(SessionTest, CancelFromAnotherThread) {
  auto model = TinyE2b();
  auto s = Session::Create(model);
  ASSERT_TRUE(s.ok());
  GenerateOptions o = Greedy(100000);
  std::atomic<int> tokens{0};
  o.on_token = [&](int32_t) {
    ++tokens;
    return true;
  };
  std::thread canceller([&] {
    while (tokens.load() < 5) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    (*s)->Cancel();
  });
  auto r = (*s)->Send("Go on forever", o);
  canceller.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled);
  EXPECT_GE(tokens.load(), 5);
  EXPECT_LT(tokens.load(), 1000);
  // The session is still usable.
  auto r2 = (*s)->Send("Again", Greedy(3));
  EXPECT_TRUE(r2.ok()) << r2.status().message();
}

// Cancel() reaches a prompt between two layers of a forward step (16-token steps here, tiny-e2b
// has 10 layers): the whole steps before it stay in the cache, and the next Send reuses them and
// answers as a session never cancelled. The rows the stopped step overwrote in the sliding rings
// (window 8: a ring of 23 rows) are never read afterwards: not by a prompt that diverges just
// before the stopped step (a rewind that reach allowed before), and not after a save/restore.
TEST(SessionTest, CancelStopsAPromptStepBetweenLayers) {
  auto model = TinyE2b();
  ASSERT_NE(model, nullptr);
  const std::string question =
      "Tell me a long story about the lighthouse keeper who counted every wave that broke on "
      "the rocks below his window, and about the night the sea went quiet and he heard the "
      "ships singing to each other far out beyond the reef where nobody had ever sailed";
  const std::string other = "What is the capital of France?";
  // The reply's text says little here (tiny-e2b repeats a pair of letters whatever it read):
  // the logits before its first token are compared instead. Different step boundaries change
  // them by float rounding only (< 1e-3, as in golden_test); a stale ring row by units.
  constexpr float kTolerance = 1e-3f;
  auto max_diff = [](const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    float m = a.size() == b.size() ? 0.f : INFINITY;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
  };
  struct Turn {
    StatusOr<Reply> reply = InternalError("not sent");
    std::vector<float> first_logits;  // before the reply's first token
  };
  auto send = [](Session& session, const std::string& text) {
    Turn t;
    SessionAccess::SetLogitsHook(session, [&t](std::vector<float>* logits, size_t step) {
      if (step == 0) t.first_logits = *logits;
    });
    t.reply = session.Send(text, Greedy(4));
    SessionAccess::SetLogitsHook(session, nullptr);
    return t;
  };
  // A session after a first turn, which then sends `text` with Cancel() at the stop check
  // `cancel_at` (0: never): check k is before layer (k - 1) % 10 of step (k - 1) / 10 + 1.
  struct Run {
    std::unique_ptr<Session> session;
    Turn turn;
  };
  auto run = [&](const std::string& text, int cancel_at) {
    Run r;
    auto created = Session::Create(model);
    EXPECT_TRUE(created.ok());
    r.session = std::move(created).value();
    SessionAccess::UseStep(*r.session, 16);
    EXPECT_TRUE(r.session->Send("Hi", Greedy(3)).ok());
    int asked = 0;
    Session* session = r.session.get();
    SessionAccess::SetStopCheckHook(*session, [&asked, cancel_at, session] {
      if (++asked == cancel_at) session->Cancel();
    });
    r.turn = send(*session, text);
    SessionAccess::SetStopCheckHook(*session, nullptr);
    return r;
  };
  Run reference = run(question, 0), reference_other = run(other, 0);
  ASSERT_TRUE(reference.turn.reply.ok() && reference_other.turn.reply.ok());
  const int64_t reused = reference.turn.reply->reused_tokens;
  ASSERT_GT(reference.turn.reply->prompt_tokens, 48);

  // Step 3, before layer 3: two whole steps (32 positions) stay.
  Run cancelled = run(question, 24);
  ASSERT_EQ(cancelled.turn.reply.status().code(), StatusCode::kCancelled);
  EXPECT_NE(cancelled.turn.reply.status().message().find("32 of"), std::string::npos)
      << cancelled.turn.reply.status().message();
  EXPECT_EQ(SessionAccess::Context(*cancelled.session).position(), reused + 32);
  Turn again = send(*cancelled.session, question);
  ASSERT_TRUE(again.reply.ok()) << again.reply.status().message();
  EXPECT_EQ(again.reply->reused_tokens, reused + 32);
  EXPECT_EQ(again.reply->text, reference.turn.reply->text);
  EXPECT_LE(max_diff(again.first_logits, reference.turn.first_logits), kTolerance);

  // Step 2, before layer 9: the step overwrote the rows that the window of the new turn's first
  // positions reads. A turn that diverges there must not reuse them, nor may a restored state.
  Run early = run(question, 20);
  ASSERT_EQ(early.turn.reply.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(SessionAccess::Context(*early.session).rewind_floor(), reused + 16);
  auto saved = early.session->SaveState();
  ASSERT_TRUE(saved.ok()) << saved.status().message();
  Turn diverged = send(*early.session, other);
  ASSERT_TRUE(diverged.reply.ok()) << diverged.reply.status().message();
  EXPECT_LE(max_diff(diverged.first_logits, reference_other.turn.first_logits), kTolerance);
  auto restored = Session::Restore(model, *saved);
  ASSERT_TRUE(restored.ok()) << restored.status().message();
  EXPECT_EQ(SessionAccess::Context(**restored).rewind_floor(), reused + 16);
  Turn restored_diverged = send(**restored, other);
  ASSERT_TRUE(restored_diverged.reply.ok()) << restored_diverged.reply.status().message();
  EXPECT_LE(max_diff(restored_diverged.first_logits, reference_other.turn.first_logits),
            kTolerance);
}

TEST(SessionTest, ForkRewindSaveRestoreGiveIdenticalContinuations) {
  auto model = TinyE2b();
  auto s = Session::Create(model, WithSystem("System."));
  ASSERT_TRUE(s.ok());
  std::string story;
  for (int i = 0; i < 12; ++i) story += "Once upon a time. ";
  story += "The end.";
  const std::vector<int32_t> story_ids = Ids(*model, story);
  ASSERT_GT(story_ids.size(), 150u);
  SessionAccess::SetLogitsHook(**s, Script(story_ids));
  ASSERT_TRUE((*s)->Send("Tell me a long story", Scripted()).ok());
  SessionAccess::SetLogitsHook(**s, nullptr);
  auto saved = (*s)->SaveState();
  ASSERT_TRUE(saved.ok());
  auto fork = (*s)->Fork();
  ASSERT_TRUE(fork.ok());
  auto expected = (*s)->Send("Continue", Greedy(8));
  ASSERT_TRUE(expected.ok());
  auto forked = (*fork)->Send("Continue", Greedy(8));
  ASSERT_TRUE(forked.ok());
  EXPECT_EQ(forked->text, expected->text);
  auto restored = Session::Restore(model, *saved);
  ASSERT_TRUE(restored.ok()) << restored.status().message();
  EXPECT_EQ((*restored)->history().size(), 3u);
  auto again = (*restored)->Send("Continue", Greedy(8));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->text, expected->text);
  // The saved cache is reused entirely: the model turn's recorded ids are saved with it.
  EXPECT_EQ(again->reused_tokens, expected->reused_tokens);
  EXPECT_GT(again->reused_tokens, 150);
  // Rewind past the 150-token answer (beyond what the sliding windows keep): recomputed, same.
  ASSERT_TRUE((*s)->Rewind(1).ok());
  SessionAccess::SetLogitsHook(**s, Script(story_ids));
  auto redo = (*s)->Send("Tell me a long story", Scripted());
  ASSERT_TRUE(redo.ok());
  EXPECT_EQ(redo->text, story);
  SessionAccess::SetLogitsHook(**s, nullptr);
  auto redo2 = (*s)->Send("Continue", Greedy(8));
  ASSERT_TRUE(redo2.ok());
  EXPECT_EQ(redo2->text, expected->text);
  // Corrupt states are rejected, never crash.
  std::string bad = *saved;
  bad[0] = 'X';
  EXPECT_FALSE(Session::Restore(model, bad).ok());
  for (size_t cut : {size_t{10}, saved->size() / 2, saved->size() - 1}) {
    EXPECT_FALSE(Session::Restore(model, saved->substr(0, cut)).ok()) << cut;
  }
}

// f16, q8_0 and q4_0 KV caches: saved states (G4SESS02, the cache's bytes in its own type)
// restore into sessions of the same cache type (identical continuation) and are refused, with
// the reason, by a model whose sessions use another type.
TEST(SessionTest, F16AndQuantizedCacheStatesRestoreOnlyIntoSessionsOfTheirType) {
  for (auto [type, name] :
       {std::pair{KvCacheType::kF16, "f16"}, std::pair{KvCacheType::kQ8_0, "q8_0"},
        std::pair{KvCacheType::kQ4_0, "q4_0"}}) {
    SCOPED_TRACE(name);
    ModelOptions options = TinyModelOptions();
    options.kv_cache_type = type;
    auto loaded = Model::Load(kFixtures + "/models/tiny-e2b/gemma4", options);
    ASSERT_TRUE(loaded.ok()) << loaded.status().message();
    const std::shared_ptr<const Model> model = *loaded;
    EXPECT_EQ(model->info().kv_cache_type, name);
    EXPECT_EQ(TinyE2b()->info().kv_cache_type, "f32");  // kAuto on float weights
    auto s = Session::Create(model);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->Send("Hello there", Greedy(6)).ok());
    auto saved = (*s)->SaveState();
    ASSERT_TRUE(saved.ok());
    auto expected = (*s)->Send("Continue", Greedy(8));
    ASSERT_TRUE(expected.ok());
    auto restored = Session::Restore(model, *saved);
    ASSERT_TRUE(restored.ok()) << restored.status().message();
    auto again = (*restored)->Send("Continue", Greedy(8));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->text, expected->text);
    EXPECT_GT(again->reused_tokens, 0);
    auto mismatched = Session::Restore(TinyE2b(), *saved);
    ASSERT_FALSE(mismatched.ok());
    EXPECT_EQ(mismatched.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(mismatched.status().message().find(std::string(name) + " KV cache"),
              std::string::npos)
        << mismatched.status().message();
  }
}

// The block types need head_dim % 32 == 0: tiny-e4b (head_dim 16) refuses q8_0 when a session
// first runs, naming the head_dim, instead of storing blocks across heads.
TEST(SessionTest, QuantizedCacheNeedsHeadDimMultipleOf32) {
  ModelOptions options = TinyModelOptions(/*threads=*/1);
  options.kv_cache_type = KvCacheType::kQ8_0;
  auto loaded = Model::Load(kFixtures + "/models/tiny-e4b/gemma4", options);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  auto s = Session::Create(*loaded);
  Status status = s.ok() ? (*s)->Send("Hello", Greedy(2)).status() : s.status();
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.message();
  EXPECT_NE(status.message().find("head_dim 16"), std::string::npos) << status.message();
}

TEST(SessionTest, ContextFullIsAClearStatusOrDropsOldTurns) {
  auto model = TinyE2b();
  auto s = Session::Create(model, WithContext(60));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->Send("one", Greedy(20)).ok());
  auto r = (*s)->Send("two two two two two two two two two two two two two two", Greedy(20));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("context"), std::string::npos);
  EXPECT_EQ((*s)->history().size(), 2u);
  auto d = Session::Create(model, WithContext(60, ContextPolicy::kDropOldTurns));
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE((*d)->Send("one", Greedy(30)).ok());
  std::string eight = "two";
  for (int i = 0; i < 12; ++i) eight += " two";  // 39 tokens: fits alone, not with turn 1
  auto r2 = (*d)->Send(eight, Greedy(5));
  ASSERT_TRUE(r2.ok()) << r2.status().message();
  EXPECT_EQ((*d)->history().front().text, eight);
}

TEST(SessionTest, SessionsShareAModelAcrossThreads) {
  auto model = TinyE2b();
  std::vector<std::string> sequential;
  for (int i = 0; i < 3; ++i) {
    auto s = Session::Create(model);
    auto r = (*s)->Send("Prompt " + std::to_string(i), Greedy(8));
    ASSERT_TRUE(r.ok());
    sequential.push_back(r->text);
  }
  std::vector<std::string> parallel(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      auto s = Session::Create(model);
      auto r = (*s)->Send("Prompt " + std::to_string(i), Greedy(8));
      if (r.ok()) parallel[i] = r->text;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(parallel, sequential);
}

TEST(SessionTest, LargeTemplateModel) {
  auto model = LoadTiny("tiny-31b");
  ASSERT_NE(model, nullptr);
  EXPECT_TRUE(model->info().large_chat_template);
  auto s = Session::Create(model);
  ASSERT_TRUE(s.ok());
  auto r1 = (*s)->Send("Hi", Greedy(5));
  ASSERT_TRUE(r1.ok()) << r1.status().message();
  auto r2 = (*s)->Send("Again", Greedy(5));
  ASSERT_TRUE(r2.ok());
  EXPECT_GT(r2->reused_tokens, 5);
}

TEST(SessionTest, BadArgumentsAreStatuses) {
  auto model = TinyE2b();
  EXPECT_FALSE(Session::Create(nullptr).ok());
  EXPECT_FALSE(Session::Create(model, WithContext(-1)).ok());
  auto s = Session::Create(model);
  ASSERT_TRUE(s.ok());
  GenerateOptions o;
  o.max_tokens = 0;
  EXPECT_EQ((*s)->Send("x", o).status().code(), StatusCode::kInvalidArgument);
  SamplerOptions bad;
  bad.top_p = 2;
  o.max_tokens = 4;
  o.sampler = bad;
  EXPECT_EQ((*s)->Send("x", o).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*s)->SubmitToolResults({}).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE((*s)->Rewind(5).ok());
  ToolRegistry tools;
  EXPECT_FALSE(
      tools
          .Register("bad name", "", "",
                    [](const std::string&) { return StatusOr<std::string>(std::string("x")); })
          .ok());
  EXPECT_FALSE(
      tools
          .Register("t", "", "{not json",
                    [](const std::string&) { return StatusOr<std::string>(std::string("x")); })
          .ok());
  EXPECT_FALSE(Model::Load("/nonexistent").ok());
  ModelOptions cancel;
  cancel.progress = [](float) { return false; };
  auto cancelled = Model::Load(kFixtures + "/models/tiny-e2b/gemma4", cancel);
  EXPECT_EQ(cancelled.status().code(), StatusCode::kCancelled);
  // Progress advances per layer; cancelling half way stops the load there.
  std::vector<float> seen;
  ModelOptions halfway;
  halfway.tokenizer_path = kFixtures + "/chat/tiny_tokenizer";
  halfway.progress = [&seen](float f) {
    seen.push_back(f);
    return f < 0.5f;
  };
  auto stopped = Model::Load(kFixtures + "/models/tiny-e2b/gemma4", halfway);
  EXPECT_EQ(stopped.status().code(), StatusCode::kCancelled);
  EXPECT_NE(stopped.status().message().find("after layer"), std::string::npos)
      << stopped.status().message();
  ASSERT_GE(seen.size(), 4u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
}

}  // namespace
}  // namespace gemma4
