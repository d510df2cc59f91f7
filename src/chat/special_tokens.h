// Gemma 4's control tokens, found by their text in a model's tokenizer: the ids the prompt
// layer, the session and the turn decoder use to write and read the chat format
// (chat_template.h describes the layout they mark).
#ifndef GEMMA4_SRC_CHAT_SPECIAL_TOKENS_H_
#define GEMMA4_SRC_CHAT_SPECIAL_TOKENS_H_

#include <cstdint>

#include "gemma4/tokenizer.h"

namespace gemma4::chat {

// Ids of Gemma 4's control tokens in one tokenizer (-1 when absent).
struct SpecialTokens {
  int32_t bos = -1, eos = -1;
  int32_t turn_open = -1, turn_close = -1;            // <|turn> <turn|>
  int32_t channel_open = -1, channel_close = -1;      // <|channel> <channel|>
  int32_t tool_call_open = -1, tool_call_close = -1;  // <|tool_call> <tool_call|>
  int32_t tool_response_open = -1, tool_response_close = -1;
  int32_t string_delimiter = -1;  // <|"|>
};

// The control tokens of `tokenizer`; `bos_fallback` when it names no BOS token.
SpecialTokens FindSpecialTokens(const Tokenizer& tokenizer, int32_t bos_fallback);

}  // namespace gemma4::chat

#endif  // GEMMA4_SRC_CHAT_SPECIAL_TOKENS_H_
