// libFuzzer target: Gemma tool-call parsing on arbitrary bytes (model output is outside data).
// A call that parses must format and parse back to the same arguments; FindToolCalls must
// return spans inside the text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "chat/tool_syntax.h"

namespace {
// The format is only reversible when keys are bare words and no string contains the <|"|>
// delimiter (the template writes both as they are).
bool Reversible(const gemma4::json::Value& v) {
  if (v.is_string()) return v.as_string().find("<|\"|>") == std::string::npos;
  if (v.is_array()) {
    for (const auto& x : v.as_array()) {
      if (!Reversible(x)) return false;
    }
  }
  if (v.is_object()) {
    for (const auto& [k, x] : v.as_object()) {
      if (k.empty() || k.find_first_of(":,{}[] \t\n\r\"<") != std::string::npos) return false;
      if (!Reversible(x)) return false;
    }
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto call = gemma4::chat::ParseToolCall(text);
  if (!call.ok() && call.status().message().empty()) __builtin_trap();
  if (call.ok() && Reversible(call->arguments) &&
      call->name.find_first_of("{ \t\n\r") == std::string::npos) {
    const std::string formatted = gemma4::chat::FormatToolCall(call->name, call->arguments);
    const std::string body = formatted.substr(12, formatted.size() - 24);
    auto again = gemma4::chat::ParseToolCall(body);
    if (!again.ok()) __builtin_trap();
    if (again->name != call->name) __builtin_trap();
    // Key order may differ (formatting sorts keys); formatting is canonical.
    if (gemma4::chat::FormatToolCall(again->name, again->arguments) != formatted) __builtin_trap();
  }
  for (const auto& span : gemma4::chat::FindToolCalls(text)) {
    if (span.begin > span.end || span.end > text.size()) __builtin_trap();
  }
  gemma4::chat::StripThinking(text);
  gemma4::chat::SplitThought(text);
  return 0;
}
