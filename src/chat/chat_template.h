// Gemma 4 prompt rendering, reproducing the official chat template (chat_template.jinja of the
// Gemma 4 instruction-tuned checkpoints, as executed by transformers) without a Jinja engine.
// tests/fixtures/chat/renderings.json holds transformers' renderings that the tests compare
// against byte for byte.
//
// Conversation layout (text is trimmed; earlier thoughts are stripped from model turns):
//   <bos>[<|turn>system\n[<|think|>\n][system text][<|tool>declaration:...<tool|>]*<turn|>\n]
//   <|turn>user\n...<turn|>\n
//   <|turn>model\n[<|tool_call>call:f{..}<tool_call|><|tool_response>response:f{..}<tool_response|>]*
//      answer<turn|>\n
//   <|turn>model\n[<|channel>thought\n<channel|>]      <- generation prompt
// The bracketed empty thought channel is only in the 26B/31B ("large") template, and only when
// thinking is off.
#ifndef GEMMA4_SRC_CHAT_CHAT_TEMPLATE_H_
#define GEMMA4_SRC_CHAT_CHAT_TEMPLATE_H_

#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "chat/rendered_chat.h"
#include "gemma4/status.h"

namespace gemma4::chat {

enum class TemplateVariant {
  kSmall,  // E2B / E4B
  kLarge,  // 26B-A4B / 31B: the generation prompt closes an empty thought channel
};

struct RenderOptions {
  TemplateVariant variant = TemplateVariant::kSmall;
  bool add_generation_prompt = true;
  bool enable_thinking = false;
  std::string bos_token = "<bos>";
  // The template drops <|channel>...<channel|> blocks from model turns' text. A caller whose
  // text is content throughout (a literal "<|channel>" in it is text, never a channel) turns
  // this off; the text is then only trimmed.
  bool strip_model_thoughts = true;
};

// `messages`: OpenAI-style objects {"role": "system"|"developer"|"user"|"assistant"|"tool",
// "content": string or [{"type": "text", "text": ..}, {"type": "image"|"audio"|"video"}],
// "tool_calls": [{"id"?, "function": {"name", "arguments": object or string}}],
// "tool_responses": [{"name", "response"}], "tool_call_id", "name", "reasoning_content"}.
// Beyond OpenAI's parts, a content part {"type": "token_ids", "index": N} becomes a kSplice
// segment: the caller's ids for that part (a model turn as the KV cache holds it) go there.
// `tools`: [{"type": "function", "function": {"name", "description", "parameters"}}].
// The result's Text() is the prompt string; its segments tell markup from content.
StatusOr<RenderedChat> RenderChat(const std::vector<json::Value>& messages,
                                  const std::vector<json::Value>& tools,
                                  const RenderOptions& options);

// Python's str.strip() (what Jinja's `trim` does): removes Unicode whitespace at both ends.
std::string PythonStrip(std::string_view s);

}  // namespace gemma4::chat

#endif  // GEMMA4_SRC_CHAT_CHAT_TEMPLATE_H_
