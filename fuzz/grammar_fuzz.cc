// libFuzzer target: JSON-schema grammar compilation and matching on arbitrary input. The input
// is "SCHEMA\n\nTEXT": the schema compiles (or fails with a message) for both syntaxes, and the
// matcher consumes TEXT byte by byte without crashing; a text it accepts that the grammar calls
// complete must be valid JSON (repeated keys included: the grammar refuses them), and a
// complete tool call must parse. Seeds cover every supported keyword (pattern, format, bounds,
// allOf, $ref recursion, additionalProperties, prefixItems, oneOf, ...).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/json.h"
#include "chat/tool_syntax.h"
#include "decode/grammar.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find("\n\n");
  const std::string_view schema_text = input.substr(0, split);
  const std::string_view text =
      split == std::string_view::npos ? std::string_view() : input.substr(split + 2);
  auto schema = gemma4::json::Parse(schema_text, "schema");
  if (!schema.ok()) return 0;
  auto json_grammar = gemma4::chat::CompileJsonSchemaGrammar(*schema);
  if (json_grammar.ok()) {
    gemma4::chat::GrammarMatcher m(*json_grammar);
    std::string accepted;
    for (char c : text.substr(0, 4096)) {
      if (m.Accept(std::string_view(&c, 1))) accepted += c;
    }
    if (m.IsComplete() && !gemma4::json::Parse(accepted).ok()) __builtin_trap();
  } else if (json_grammar.status().message().empty()) {
    __builtin_trap();
  }
  // The same schema as a tool's parameters, in Gemma's call syntax.
  gemma4::json::Value::Object function;
  function.emplace_back("name", gemma4::json::Value::String("f"));
  function.emplace_back("parameters", *schema);
  auto tool_grammar =
      gemma4::chat::CompileToolCallGrammar({gemma4::json::Value::MakeObject(std::move(function))});
  if (tool_grammar.ok()) {
    gemma4::chat::GrammarMatcher m(*tool_grammar);
    std::string accepted;
    for (char c : text.substr(0, 4096)) {
      if (m.Accept(std::string_view(&c, 1))) accepted += c;
    }
    constexpr std::string_view kClose = "<tool_call|>";
    if (m.IsComplete()) {
      if (accepted.size() < kClose.size()) __builtin_trap();
      if (!gemma4::chat::ParseToolCall(accepted.substr(0, accepted.size() - kClose.size())).ok()) {
        __builtin_trap();
      }
    }
  } else if (tool_grammar.status().message().empty()) {
    __builtin_trap();
  }
  return 0;
}
