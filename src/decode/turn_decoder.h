// The model turn as a token-level state machine, apart from any model: which token comes next
// (forced, grammar-constrained or sampled from the logits it is given) and what each token
// means for the turn:
//   [<|channel>thought\n ... <channel|>] text [<|tool_call>call:f{...}<tool_call|>]* (stop)
// The Session feeds the chosen tokens to the model, records the turn and runs tools; the
// decoder only reads logits and reports steps, so tests drive it with scripted logits alone.
#ifndef GEMMA4_SRC_DECODE_TURN_DECODER_H_
#define GEMMA4_SRC_DECODE_TURN_DECODER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "chat/special_tokens.h"
#include "decode/grammar.h"
#include "gemma4/sampler.h"
#include "gemma4/status.h"
#include "gemma4/tokenizer.h"

namespace gemma4 {

// The control ids the turn's syntax uses (the Gemma 4 format's, -1 where the vocabulary lacks
// one) and the generation config's end-of-sequence ids.
struct TurnControlTokens : chat::SpecialTokens {
  std::vector<int32_t> stop_ids;
  // Ends the turn (or, with calls pending, the round of calls).
  bool IsStop(int32_t id) const;
};

struct TurnDecoderOptions {
  SamplerOptions sampler;
  bool thinking = false;
  int thinking_budget = -1;  // thought tokens before <channel|> is forced; -1: none
  // Tool calls: allowed when the session has tools; their arguments follow the tools'
  // declarations (a JSON array) when constrain_tool_calls.
  bool have_tools = false;
  bool constrain_tool_calls = true;
  const std::vector<json::Value>* tool_declarations = nullptr;
  bool require_tool_call = false;
  int max_calls_per_round = 8;
  std::string_view json_schema;  // the answer is a JSON document matching it (empty: free)
  bool stop_on_repetition = true;
  RepetitionGuardOptions repetition_guard;
  // The turn as it stands when this decoder starts (SubmitToolResults continues a turn).
  bool turn_has_tool_calls = false;
  bool turn_has_thought = false;
  // Vocabulary tries for the grammars, built by the caller on first use.
  std::function<const chat::VocabIndex&()> tool_vocab;  // also holds <|"|> and <tool_call|>
  std::function<const chat::VocabIndex&()> text_vocab;
};

// What one token meant for the turn.
struct TurnStep {
  enum class Kind {
    kContinue,       // an ordinary token of the thought, the text or a call's body
    kThoughtOpened,  // <|channel>: a thought channel begins with this token
    kThoughtClosed,  // <channel|>: the thought channel ends with this token
    kCallClosed,     // <tool_call|>: `call_name` / `call_arguments_json` hold the call
    kRoundEnd,       // a stop (or <|tool_call> past the round's limit) after calls: answer them
    kEndOfTurn,      // the model ended its turn
  };
  Kind kind = Kind::kContinue;
  std::string text;           // answer text this token completes (never broken UTF-8)
  std::string thought;        // thought text this token completes (the "thought\n" header dropped)
  bool answer_token = false;  // the token belongs to the answer text (Turn::text_tokens)
  std::string call_name;      // kCallClosed: empty when the call did not parse
  std::string call_arguments_json;
};

class TurnDecoder {
 public:
  enum class State {
    kText,      // the answer (or, before it starts, where a thought or a call may open)
    kThought,   // inside <|channel> ... <channel|>
    kToolCall,  // inside <|tool_call> ... <tool_call|>
  };

  // Compiles the grammars the options ask for (tool-call arguments, the answer's schema).
  static StatusOr<std::unique_ptr<TurnDecoder>> Create(std::shared_ptr<const Tokenizer> tokenizer,
                                                       TurnControlTokens tokens,
                                                       TurnDecoderOptions options);

  // The next token from the model's logits after `context` (the ids the model has seen):
  // forced where the syntax leaves one choice, else sampled, masked by the grammar in force.
  // `logits` may be rewritten (penalties, masks).
  StatusOr<int32_t> Choose(std::vector<float>& logits, const std::vector<int32_t>& context);
  // Interprets a token Choose returned.
  TurnStep Accept(int32_t id);
  // The answer text the detokenizer still holds (call when the turn ends).
  std::string FlushText();
  // Whether the freely sampled tokens so far are a degenerate loop (the repetition guard;
  // forced and grammar-constrained spans are not watched: they repeat by design).
  bool Repeating() const;

  State state() const { return state_; }
  size_t generated() const { return generated_; }  // tokens chosen so far

 private:
  TurnDecoder(std::shared_ptr<const Tokenizer> tokenizer, TurnControlTokens tokens,
              TurnDecoderOptions options);
  // The thought channel so far holds nothing but (a beginning of) its "thought\n" header.
  bool HeaderOnly() const;
  // A started, unfinished header (not closed by the budget).
  bool InsideThoughtHeader() const;
  // The fresh thought text once `piece` is added (empty while it may still be the header).
  std::string ThoughtPiece(const std::string& piece);

  std::shared_ptr<const Tokenizer> tokenizer_;
  TurnControlTokens tokens_;
  TurnDecoderOptions options_;
  Sampler sampler_;
  std::shared_ptr<const chat::Grammar> tool_grammar_, json_grammar_;
  std::unique_ptr<chat::GrammarMatcher> call_matcher_;  // the open call's arguments
  std::unique_ptr<chat::GrammarMatcher> json_matcher_;  // the answer document
  StreamingDetokenizer text_stream_, thought_stream_;
  State state_ = State::kText;
  std::string raw_thought_;     // includes the "thought\n" header
  size_t thought_emitted_ = 0;  // bytes of the cleaned thought already reported
  std::string call_text_;       // body of the open tool call
  int calls_this_round_ = 0;    // closed calls not yet answered
  size_t generated_ = 0;
  std::vector<int32_t> free_generated_;  // the freely sampled tokens (the repetition guard's)
  int thought_tokens_ = 0;
  bool answer_started_ = false;  // any answer text (the JSON constraint starts here)
  bool after_call_ = false;      // the last token closed a tool call
  bool thought_closed_ = false;  // a thought channel has been closed
  bool turn_has_tool_calls_ = false;
  bool turn_has_thought_ = false;  // the turn's thought text is not empty
  std::vector<bool> allowed_;
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_DECODE_TURN_DECODER_H_
