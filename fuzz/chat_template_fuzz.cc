// libFuzzer target: chat rendering of arbitrary JSON conversations (apps pass messages and
// tool declarations through). Input: a JSON array of messages, or {"messages": [...],
// "tools": [...]}. Rendering either succeeds or returns a message; it never crashes.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "chat/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto root = gemma4::json::Parse(input, "conversation");
  if (!root.ok()) return 0;
  std::vector<gemma4::json::Value> messages, tools;
  if (root->is_array()) {
    messages = root->as_array();
  } else if (root->is_object()) {
    if (const auto* m = root->Find("messages"); m != nullptr && m->is_array()) {
      messages = m->as_array();
    }
    if (const auto* t = root->Find("tools"); t != nullptr && t->is_array()) tools = t->as_array();
  }
  for (bool large : {false, true}) {
    for (bool thinking : {false, true}) {
      gemma4::chat::RenderOptions o;
      o.variant =
          large ? gemma4::chat::TemplateVariant::kLarge : gemma4::chat::TemplateVariant::kSmall;
      o.enable_thinking = thinking;
      auto text = gemma4::chat::RenderChat(messages, tools, o);
      if (!text.ok() && text.status().message().empty()) __builtin_trap();
    }
  }
  return 0;
}
