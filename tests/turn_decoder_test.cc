// TurnDecoder (src/decode/turn_decoder.h) alone, with no model: scripted logits choose each
// token, and the test checks what the decoder makes of the turn (states, thought and text
// pieces, tool calls, rounds) and the tokens it forces (thinking budget, required call, a
// complete JSON answer), with the tiny fixture tokenizer's Gemma 4 control ids.
#include "decode/turn_decoder.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/json.h"
#include "gemma4/tokenizer.h"

namespace gemma4 {
namespace {

std::shared_ptr<const Tokenizer> TinyTokenizer() {
  auto t = Tokenizer::Load(std::string(GEMMA4_FIXTURES_DIR) + "/chat/tiny_tokenizer");
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? *t : nullptr;
}

// The bytes each id decodes to, as the session's vocabulary tries hold them.
std::vector<std::string> VocabTexts(const Tokenizer& tok, bool with_tool_markers) {
  std::vector<std::string> texts(tok.vocab_size());
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (tok.IsSpecial(id)) {
      const std::string s = tok.TokenString(id);
      if (with_tool_markers && (s == "<|\"|>" || s == "<tool_call|>")) texts[id] = s;
      continue;
    }
    texts[id] = tok.TokenBytes(id);
  }
  return texts;
}

class TurnDecoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tok_ = TinyTokenizer();
    ASSERT_NE(tok_, nullptr);
    control_.channel_open = tok_->TokenId("<|channel>");
    control_.channel_close = tok_->TokenId("<channel|>");
    control_.tool_call_open = tok_->TokenId("<|tool_call>");
    control_.tool_call_close = tok_->TokenId("<tool_call|>");
    control_.tool_response_open = tok_->TokenId("<|tool_response>");
    control_.turn_close = tok_->TokenId("<turn|>");
    control_.stop_ids = {tok_->TokenId("<eos>")};
    ASSERT_GE(control_.channel_open, 0);
    ASSERT_GE(control_.tool_call_close, 0);
    ASSERT_GE(control_.turn_close, 0);
    tool_vocab_ = std::make_unique<chat::VocabIndex>(VocabTexts(*tok_, true));
    text_vocab_ = std::make_unique<chat::VocabIndex>(VocabTexts(*tok_, false));
  }

  TurnDecoderOptions Options() {
    TurnDecoderOptions o;
    o.sampler.temperature = 0;  // greedy: the scripted token wins
    o.tool_vocab = [this]() -> const chat::VocabIndex& { return *tool_vocab_; };
    o.text_vocab = [this]() -> const chat::VocabIndex& { return *text_vocab_; };
    return o;
  }

  std::unique_ptr<TurnDecoder> Make(TurnDecoderOptions o) {
    auto d = TurnDecoder::Create(tok_, control_, std::move(o));
    EXPECT_TRUE(d.ok()) << d.status().ToString();
    return d.ok() ? std::move(*d) : nullptr;
  }

  std::vector<int32_t> Ids(const std::string& text) const { return tok_->Encode(text); }

  // Runs the decoder on logits peaked at script[i] (flat past the script's end) until the turn
  // ends or `max_steps`; returns the steps and the chosen ids.
  struct Run {
    std::vector<int32_t> chosen;
    std::vector<TurnStep> steps;
    std::string text, thought;
    bool ended = false;
  };
  Run Drive(TurnDecoder& d, const std::vector<int32_t>& script, size_t max_steps = 64) {
    Run run;
    std::vector<int32_t> context = {2};
    for (size_t i = 0; i < max_steps; ++i) {
      std::vector<float> logits(static_cast<size_t>(tok_->vocab_size()), 0.0f);
      if (i < script.size()) logits[static_cast<size_t>(script[i])] = 10.0f;
      auto next = d.Choose(logits, context);
      EXPECT_TRUE(next.ok()) << next.status().ToString();
      if (!next.ok()) break;
      run.chosen.push_back(*next);
      context.push_back(*next);
      TurnStep step = d.Accept(*next);
      run.text += step.text;
      run.thought += step.thought;
      run.steps.push_back(step);
      if (step.kind == TurnStep::Kind::kEndOfTurn || step.kind == TurnStep::Kind::kRoundEnd) {
        run.ended = true;
        break;
      }
    }
    run.text += d.FlushText();
    return run;
  }

  std::vector<int32_t> Concat(std::initializer_list<std::vector<int32_t>> parts) {
    std::vector<int32_t> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
  }

  std::shared_ptr<const Tokenizer> tok_;
  TurnControlTokens control_;
  std::unique_ptr<chat::VocabIndex> tool_vocab_, text_vocab_;
};

TEST_F(TurnDecoderTest, AnswerEndsAtTheStopToken) {
  auto d = Make(Options());
  ASSERT_NE(d, nullptr);
  const Run run = Drive(*d, Concat({Ids("Hello there"), {control_.turn_close}}));
  ASSERT_TRUE(run.ended);
  EXPECT_EQ(run.text, "Hello there");
  EXPECT_EQ(run.steps.back().kind, TurnStep::Kind::kEndOfTurn);
  EXPECT_FALSE(run.steps.back().answer_token);
  EXPECT_TRUE(run.steps.front().answer_token);
  EXPECT_EQ(d->generated(), run.chosen.size());
  // The generation_config eos ends the turn as <turn|> does.
  auto d2 = Make(Options());
  const Run eos = Drive(*d2, Concat({Ids("Hi"), control_.stop_ids}));
  EXPECT_TRUE(eos.ended);
  EXPECT_EQ(eos.text, "Hi");
}

TEST_F(TurnDecoderTest, ThoughtChannelIsSplitFromTheAnswer) {
  TurnDecoderOptions o = Options();
  o.thinking = true;
  auto d = Make(o);
  ASSERT_NE(d, nullptr);
  const std::vector<int32_t> script = Concat({{control_.channel_open},
                                              Ids("thought\nlet me see"),
                                              {control_.channel_close},
                                              Ids("Yes"),
                                              {control_.turn_close}});
  const Run run = Drive(*d, script);
  ASSERT_TRUE(run.ended);
  EXPECT_EQ(run.chosen, script);
  EXPECT_EQ(run.thought, "let me see");  // the "thought\n" header is not part of it
  EXPECT_EQ(run.text, "Yes");
  EXPECT_EQ(run.steps.front().kind, TurnStep::Kind::kThoughtOpened);
  size_t closed = 0;
  for (const TurnStep& s : run.steps) closed += s.kind == TurnStep::Kind::kThoughtClosed;
  EXPECT_EQ(closed, 1u);
  EXPECT_EQ(d->state(), TurnDecoder::State::kText);
}

TEST_F(TurnDecoderTest, ThinkingBudgetForcesTheChannelClosed) {
  TurnDecoderOptions o = Options();
  o.thinking = true;
  o.thinking_budget = 3;
  auto d = Make(o);
  ASSERT_NE(d, nullptr);
  const std::vector<int32_t> word = Ids("a");
  ASSERT_EQ(word.size(), 1u);
  // The script thinks forever; three thought tokens after the header, then <channel|>.
  std::vector<int32_t> script = Concat({{control_.channel_open}, Ids("thought\n")});
  const size_t header_end = script.size();
  for (int i = 0; i < 10; ++i) script.push_back(word[0]);
  const Run run = Drive(*d, script, header_end + 4);
  ASSERT_EQ(run.chosen.size(), header_end + 4);
  EXPECT_EQ(run.chosen[header_end + 3], control_.channel_close);
  EXPECT_EQ(run.thought, "aaa");
  EXPECT_EQ(d->state(), TurnDecoder::State::kText);
}

TEST_F(TurnDecoderTest, StopInsideTheThoughtEndsTheTurn) {
  TurnDecoderOptions o = Options();
  o.thinking = true;
  auto d = Make(o);
  ASSERT_NE(d, nullptr);
  const Run run =
      Drive(*d, Concat({{control_.channel_open}, Ids("thought\nhm"), {control_.turn_close}}));
  ASSERT_TRUE(run.ended);
  EXPECT_EQ(run.steps.back().kind, TurnStep::Kind::kEndOfTurn);
  EXPECT_EQ(run.thought, "hm");
  EXPECT_EQ(run.text, "");
}

TEST_F(TurnDecoderTest, ToolCallsCloseAndTheRoundEnds) {
  TurnDecoderOptions o = Options();
  o.have_tools = true;
  o.constrain_tool_calls = false;
  auto d = Make(o);
  ASSERT_NE(d, nullptr);
  const std::vector<int32_t> script = Concat({{control_.tool_call_open},
                                              Ids("call:get{}"),
                                              {control_.tool_call_close},
                                              {control_.tool_call_open},
                                              Ids("nonsense"),
                                              {control_.tool_call_close},
                                              {control_.tool_response_open}});
  const Run run = Drive(*d, script);
  ASSERT_TRUE(run.ended);
  std::vector<const TurnStep*> calls;
  for (const TurnStep& s : run.steps) {
    if (s.kind == TurnStep::Kind::kCallClosed) calls.push_back(&s);
  }
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0]->call_name, "get");
  EXPECT_EQ(calls[0]->call_arguments_json, "{}");
  // A call that does not parse keeps its raw text, as a JSON string, and no name.
  EXPECT_EQ(calls[1]->call_name, "");
  EXPECT_EQ(calls[1]->call_arguments_json, "\"nonsense\"");
  EXPECT_EQ(run.steps.back().kind, TurnStep::Kind::kRoundEnd);
  EXPECT_EQ(run.text, "");
  // The next round starts afresh: a stop without calls ends the turn.
  const Run after = Drive(*d, Concat({Ids("ok"), {control_.turn_close}}));
  EXPECT_EQ(after.steps.back().kind, TurnStep::Kind::kEndOfTurn);
  EXPECT_EQ(after.text, "ok");
}

TEST_F(TurnDecoderTest, WithoutToolsACallTokenEndsTheTurn) {
  auto d = Make(Options());
  ASSERT_NE(d, nullptr);
  const Run run = Drive(*d, Concat({Ids("x"), {control_.tool_call_open}}));
  ASSERT_TRUE(run.ended);
  EXPECT_EQ(run.steps.back().kind, TurnStep::Kind::kEndOfTurn);
}

TEST_F(TurnDecoderTest, ConstrainedCallIsForcedAndOnlyACallOrTheRoundEndFollows) {
  auto decl = json::Parse(
      R"([{"type":"function","function":{"name":"f","description":"d",)"
      R"("parameters":{"type":"object","properties":{"b":{"type":"boolean"}},"required":["b"],)"
      R"("additionalProperties":false}}}])");
  ASSERT_TRUE(decl.ok()) << decl.status().ToString();
  const std::vector<json::Value> declarations = decl->as_array();
  TurnDecoderOptions o = Options();
  o.have_tools = true;
  o.tool_declarations = &declarations;
  o.require_tool_call = true;
  o.max_calls_per_round = 1;
  auto d = Make(o);
  ASSERT_NE(d, nullptr);
  // The script wants plain text throughout: the decoder forces the call's opening, the
  // grammar the arguments, and after <tool_call|> only the round's end may follow.
  const std::vector<int32_t> text = Ids("hello hello hello hello hello hello hello hello");
  const Run run = Drive(*d, text);
  ASSERT_TRUE(run.ended);
  EXPECT_EQ(run.chosen.front(), control_.tool_call_open);
  std::vector<const TurnStep*> calls;
  for (const TurnStep& s : run.steps) {
    if (s.kind == TurnStep::Kind::kCallClosed) calls.push_back(&s);
  }
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]->call_name, "f");
  auto args = json::Parse(calls[0]->call_arguments_json);
  ASSERT_TRUE(args.ok()) << calls[0]->call_arguments_json;
  ASSERT_NE(args->Find("b"), nullptr);
  EXPECT_TRUE(args->Find("b")->is_bool());
  EXPECT_EQ(run.chosen.back(), control_.tool_response_open);
  EXPECT_EQ(run.steps.back().kind, TurnStep::Kind::kRoundEnd);
}

TEST_F(TurnDecoderTest, CompleteJsonAnswerEndsTheTurn) {
  TurnDecoderOptions o = Options();
  const std::string schema = R"({"enum":["yes"]})";
  o.json_schema = schema;
  auto d = Make(o);
  ASSERT_NE(d, nullptr);
  const Run run = Drive(*d, {}, 64);  // flat logits: the grammar alone decides
  ASSERT_TRUE(run.ended);
  auto answer = json::Parse(run.text);
  ASSERT_TRUE(answer.ok()) << run.text;
  ASSERT_TRUE(answer->is_string()) << run.text;
  EXPECT_EQ(answer->as_string(), "yes");
  EXPECT_EQ(run.chosen.back(), control_.turn_close);
  // A schema that does not compile is refused when the decoder is made.
  TurnDecoderOptions bad = Options();
  bad.json_schema = R"({"type":"object","frobnicate":1})";
  EXPECT_FALSE(TurnDecoder::Create(tok_, control_, bad).ok());
}

TEST_F(TurnDecoderTest, RepetitionGuardWatchesFreeTokens) {
  const std::vector<int32_t> word = Ids("a");
  ASSERT_EQ(word.size(), 1u);
  const std::vector<int32_t> script(40, word[0]);
  for (const bool guard : {true, false}) {
    TurnDecoderOptions o = Options();
    o.stop_on_repetition = guard;
    auto d = Make(o);
    ASSERT_NE(d, nullptr);
    const Run run = Drive(*d, script, script.size());
    EXPECT_FALSE(run.ended);
    EXPECT_EQ(d->Repeating(), guard);
  }
}

}  // namespace
}  // namespace gemma4
