// Gemma 4's tool syntax, which is not JSON:
//   declaration  <|tool>declaration:NAME{description:<|"|>..<|"|>,parameters:{..}}<tool|>
//   call         <|tool_call>call:NAME{key:value,...}<tool_call|>
//   response     <|tool_response>response:NAME{key:value,...}<tool_response|>
// Keys are bare, strings are delimited by the <|"|> token, numbers and booleans are bare,
// objects and arrays nest. The formatters reproduce the official chat template's macros
// (format_argument, format_function_declaration, format_tool_response_block) byte for byte;
// the parser turns a call back into JSON. The Write* forms append segments, strings from the
// JSON as content and the syntax around them as markup; the Format* forms return the text.
#ifndef GEMMA4_SRC_CHAT_TOOL_SYNTAX_H_
#define GEMMA4_SRC_CHAT_TOOL_SYNTAX_H_

#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "chat/rendered_chat.h"
#include "gemma4/status.h"

namespace gemma4::chat {

inline constexpr std::string_view kStringDelimiter = "<|\"|>";

// The template's format_argument: strings delimited, keys sorted case-insensitively (Jinja
// dictsort) and delimited only with escape_keys, numbers printed as Python prints them
// (1000.0, 1e+20), null as None.
std::string FormatArgument(const json::Value& value, bool escape_keys);
void WriteArgument(const json::Value& value, bool escape_keys, RenderedChat* out);
// Jinja truthiness of a JSON value; a missing key (nullptr) is Undefined, which is false.
bool JinjaTruthy(const json::Value* value);
// Python's repr() of the number a JSON literal decodes to.
std::string PythonNumber(const json::Value& number);

// The template's format_function_declaration (without the <|tool> markers). `tool` is
// {"type": "function", "function": {"name", "description", "parameters", "response"}} or the
// inner function object itself.
StatusOr<std::string> FormatFunctionDeclaration(const json::Value& tool);
Status WriteFunctionDeclaration(const json::Value& tool, RenderedChat* out);

// <|tool_call>call:NAME{k:v,...}<tool_call|>
std::string FormatToolCall(std::string_view name, const json::Value& arguments);
void WriteToolCall(std::string_view name, const json::Value& arguments, RenderedChat* out);
// <|tool_response>response:NAME{k:v,...}<tool_response|>; a non-object becomes {value:...}.
std::string FormatToolResponse(std::string_view name, const json::Value& response);
void WriteToolResponse(std::string_view name, const json::Value& response, RenderedChat* out);

struct ParsedToolCall {
  std::string name;
  json::Value arguments;  // an object
};

// Parses the text between <|tool_call> and <tool_call|>: "call:NAME{...}". Accepts bare,
// <|"|>-delimited or JSON-quoted keys, whitespace between tokens, None/null. Errors give the
// byte offset.
StatusOr<ParsedToolCall> ParseToolCall(std::string_view body);

struct ToolCallSpan {
  size_t begin = 0;  // offset of <|tool_call>
  size_t end = 0;    // offset just past <tool_call|> (or the text's end when unterminated)
  std::string body;
  Status status;  // parse result; the call is valid when ok()
  ParsedToolCall call;
};
// Every <|tool_call>...<tool_call|> span in model output, tolerating junk around them.
std::vector<ToolCallSpan> FindToolCalls(std::string_view text);

// The template's strip_thinking: drops every <|channel>...<channel|> block, then trims.
std::string StripThinking(std::string_view text);

struct ThoughtSplit {
  std::string thought;  // the first channel's text, without its "thought\n" header
  std::string content;  // the rest, channel removed
};
// Follows the response regex <\|channel\>(?:thought\n)?(.+?)<channel\|>.
ThoughtSplit SplitThought(std::string_view text);

}  // namespace gemma4::chat

#endif  // GEMMA4_SRC_CHAT_TOOL_SYNTAX_H_
