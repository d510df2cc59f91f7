#include "chat/special_tokens.h"

namespace gemma4::chat {

SpecialTokens FindSpecialTokens(const Tokenizer& tok, int32_t bos_fallback) {
  SpecialTokens s;
  s.bos = tok.bos_id() >= 0 ? tok.bos_id() : bos_fallback;
  s.eos = tok.eos_id();
  s.turn_open = tok.TokenId("<|turn>");
  s.turn_close = tok.TokenId("<turn|>");
  s.channel_open = tok.TokenId("<|channel>");
  s.channel_close = tok.TokenId("<channel|>");
  s.tool_call_open = tok.TokenId("<|tool_call>");
  s.tool_call_close = tok.TokenId("<tool_call|>");
  s.tool_response_open = tok.TokenId("<|tool_response>");
  s.tool_response_close = tok.TokenId("<tool_response|>");
  s.string_delimiter = tok.TokenId("<|\"|>");
  return s;
}

}  // namespace gemma4::chat
