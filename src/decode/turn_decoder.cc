#include "decode/turn_decoder.h"

#include <utility>

#include "chat/tool_syntax.h"

namespace gemma4 {

namespace {
// The thought channel opens with this header, which is not part of the thought.
constexpr std::string_view kThoughtHeader = "thought\n";
}  // namespace

bool TurnControlTokens::IsStop(int32_t id) const {
  for (int32_t s : stop_ids) {
    if (s == id) return true;
  }
  return id == turn_close || id == tool_response_open;
}

TurnDecoder::TurnDecoder(std::shared_ptr<const Tokenizer> tokenizer, TurnControlTokens tokens,
                         TurnDecoderOptions options)
    : tokenizer_(std::move(tokenizer)),
      tokens_(std::move(tokens)),
      options_(std::move(options)),
      sampler_(options_.sampler),
      text_stream_(tokenizer_, /*skip_special_tokens=*/true),
      thought_stream_(tokenizer_, /*skip_special_tokens=*/true),
      turn_has_tool_calls_(options_.turn_has_tool_calls),
      turn_has_thought_(options_.turn_has_thought) {}

StatusOr<std::unique_ptr<TurnDecoder>> TurnDecoder::Create(
    std::shared_ptr<const Tokenizer> tokenizer, TurnControlTokens tokens,
    TurnDecoderOptions options) {
  if (tokenizer == nullptr) return InvalidArgumentError("TurnDecoder: null tokenizer");
  std::unique_ptr<TurnDecoder> d(
      new TurnDecoder(std::move(tokenizer), std::move(tokens), std::move(options)));
  if (d->options_.have_tools && d->options_.constrain_tool_calls) {
    if (d->options_.tool_declarations == nullptr) {
      return InvalidArgumentError("TurnDecoder: constrained tool calls without declarations");
    }
    GEMMA4_ASSIGN_OR_RETURN(d->tool_grammar_,
                            chat::CompileToolCallGrammar(*d->options_.tool_declarations));
  }
  if (!d->options_.json_schema.empty()) {
    GEMMA4_ASSIGN_OR_RETURN(json::Value schema,
                            json::Parse(d->options_.json_schema, "json_schema"));
    GEMMA4_ASSIGN_OR_RETURN(d->json_grammar_, chat::CompileJsonSchemaGrammar(schema));
    d->json_matcher_ = std::make_unique<chat::GrammarMatcher>(d->json_grammar_);
  }
  return d;
}

bool TurnDecoder::HeaderOnly() const {
  return raw_thought_.size() <= kThoughtHeader.size() &&
         kThoughtHeader.substr(0, raw_thought_.size()) == raw_thought_;
}

bool TurnDecoder::InsideThoughtHeader() const {
  return !raw_thought_.empty() && raw_thought_.size() < kThoughtHeader.size() && HeaderOnly();
}

std::string TurnDecoder::ThoughtPiece(const std::string& piece) {
  raw_thought_ += piece;
  if (raw_thought_.size() < kThoughtHeader.size() &&
      kThoughtHeader.substr(0, raw_thought_.size()) == raw_thought_) {
    return {};  // still possibly the header
  }
  size_t skip = 0;
  if (raw_thought_.compare(0, kThoughtHeader.size(), kThoughtHeader) == 0) {
    skip = kThoughtHeader.size();
  }
  const std::string clean = raw_thought_.substr(skip);
  if (clean.size() <= thought_emitted_) return {};
  std::string fresh = clean.substr(thought_emitted_);
  thought_emitted_ = clean.size();
  turn_has_thought_ = true;
  return fresh;
}

StatusOr<int32_t> TurnDecoder::Choose(std::vector<float>& logits,
                                      const std::vector<int32_t>& context) {
  const TurnControlTokens& sp = tokens_;
  int32_t next = -1;
  const bool must_call = options_.require_tool_call && options_.have_tools &&
                         sp.tool_call_open >= 0 && state_ == State::kText &&
                         !turn_has_tool_calls_ && !answer_started_;
  if (must_call && options_.thinking && generated_ == 0 && sp.channel_open >= 0) {
    next = sp.channel_open;  // thinking: the thought comes first, then the call
  } else if (must_call && (!options_.thinking || thought_closed_ || sp.channel_open < 0)) {
    next = sp.tool_call_open;
  } else if (state_ == State::kThought && options_.thinking_budget >= 0 &&
             thought_tokens_ >= options_.thinking_budget && !InsideThoughtHeader() &&
             sp.channel_close >= 0) {
    next = sp.channel_close;  // budget spent: close the thought
  } else if (state_ == State::kToolCall && call_matcher_ != nullptr && [&] {
               // Arguments closed: the only continuation is <tool_call|>, as one token.
               chat::GrammarMatcher probe = *call_matcher_;
               return probe.Accept("<tool_call|>") && probe.IsComplete();
             }()) {
    next = sp.tool_call_close;
  } else if (state_ == State::kToolCall && call_matcher_ != nullptr) {
    call_matcher_->FillAllowed(options_.tool_vocab(), &allowed_);
    allowed_.resize(logits.size(), false);
    next = sampler_.Sample(logits, context, allowed_);
    if (next < 0) {
      return InternalError("tool-call grammar allows no token after \"" + call_text_ + "\"");
    }
  } else if (state_ == State::kText && after_call_ && options_.constrain_tool_calls) {
    // After <tool_call|> only another call or the end of the round may follow (a model that
    // writes text here would leave the call unanswered).
    allowed_.assign(logits.size(), false);
    const bool more = calls_this_round_ < options_.max_calls_per_round;
    for (int32_t id : {more ? sp.tool_call_open : -1, sp.tool_response_open}) {
      if (id >= 0 && id < static_cast<int32_t>(allowed_.size())) allowed_[id] = true;
    }
    next = sampler_.Sample(logits, context, allowed_);
    if (next < 0) return InternalError("no token may follow the tool call");
  } else if (state_ == State::kText && json_matcher_ != nullptr) {
    if (json_matcher_->IsComplete()) {
      next = sp.turn_close;  // the document is complete: end the turn
    } else {
      json_matcher_->FillAllowed(options_.text_vocab(), &allowed_);
      allowed_.resize(logits.size(), false);
      // Before the answer starts, a thought channel may still open.
      if (!answer_started_ && options_.thinking && sp.channel_open >= 0 && !turn_has_thought_) {
        allowed_[sp.channel_open] = true;
      }
      if (json_matcher_->CanEnd()) allowed_[sp.turn_close] = true;
      next = sampler_.Sample(logits, context, allowed_);
      if (next < 0) return InternalError("JSON grammar allows no token");
    }
  } else {
    next = sampler_.Sample(logits, context);
    if (next < 0) return InternalError("the sampler found no token (all logits are -inf/NaN)");
    free_generated_.push_back(next);
  }
  ++generated_;
  return next;
}

TurnStep TurnDecoder::Accept(int32_t next) {
  const TurnControlTokens& sp = tokens_;
  const Tokenizer& tok = *tokenizer_;
  TurnStep step;
  after_call_ = false;
  switch (state_) {
    case State::kThought:
      if (next == sp.channel_close) {
        state_ = State::kText;
        thought_closed_ = true;
        step.kind = TurnStep::Kind::kThoughtClosed;
        step.thought = ThoughtPiece(thought_stream_.Flush());
      } else if (sp.IsStop(next)) {
        // The model ended inside its thought: the thought is the whole turn.
        step.kind = TurnStep::Kind::kEndOfTurn;
        step.thought = ThoughtPiece(thought_stream_.Flush());
      } else {
        step.thought = ThoughtPiece(thought_stream_.Push(next));
        // The budget counts the thought's own tokens, not its "thought\n" header.
        if (!HeaderOnly()) ++thought_tokens_;
      }
      break;
    case State::kToolCall:
      if (next == sp.tool_call_close) {
        auto parsed = chat::ParseToolCall(call_text_);
        if (parsed.ok()) {
          step.call_name = parsed->name;
          step.call_arguments_json = parsed->arguments.Serialize();
        } else {
          // Unconstrained output that does not parse: keep the raw text for the caller.
          step.call_arguments_json = json::Value::String(call_text_).Serialize();
        }
        step.kind = TurnStep::Kind::kCallClosed;
        ++calls_this_round_;
        turn_has_tool_calls_ = true;
        state_ = State::kText;
        call_matcher_.reset();
        after_call_ = true;
      } else if (sp.IsStop(next)) {
        step.kind = TurnStep::Kind::kEndOfTurn;
      } else {
        const std::string bytes =
            tok.IsSpecial(next) ? tok.TokenString(next) : tok.TokenBytes(next);
        call_text_ += bytes;
        if (call_matcher_ != nullptr) call_matcher_->Accept(bytes);
      }
      break;
    case State::kText:
      if (next == sp.channel_open && !answer_started_) {
        state_ = State::kThought;
        step.kind = TurnStep::Kind::kThoughtOpened;
      } else if (next == sp.tool_call_open && options_.have_tools && json_matcher_ == nullptr &&
                 calls_this_round_ < options_.max_calls_per_round) {
        state_ = State::kToolCall;
        call_text_.clear();
        if (tool_grammar_ != nullptr) {
          call_matcher_ = std::make_unique<chat::GrammarMatcher>(tool_grammar_);
        }
      } else if (sp.IsStop(next) || next == sp.tool_call_open) {
        if (calls_this_round_ > 0) {
          // End of a round of calls: the caller answers them and the turn goes on.
          calls_this_round_ = 0;
          step.kind = TurnStep::Kind::kRoundEnd;
        } else {
          step.kind = TurnStep::Kind::kEndOfTurn;
        }
      } else {
        if (!tok.IsSpecial(next)) answer_started_ = true;
        if (json_matcher_ != nullptr && !tok.IsSpecial(next)) {
          json_matcher_->Accept(tok.TokenBytes(next));
        }
        step.answer_token = true;
        step.text = text_stream_.Push(next);
      }
      break;
  }
  return step;
}

std::string TurnDecoder::FlushText() { return text_stream_.Flush(); }

bool TurnDecoder::Repeating() const {
  return options_.stop_on_repetition &&
         IsDegenerateRepetition(free_generated_, options_.repetition_guard);
}

}  // namespace gemma4
