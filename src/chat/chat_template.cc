#include "chat/chat_template.h"

#include <algorithm>
#include <cstdint>

#include "base/utf8.h"
#include "chat/tool_syntax.h"

namespace gemma4::chat {
namespace {

// Decodes one UTF-8 code point at s[i] (length in *n); a byte that does not start a
// well-formed sequence decodes as itself (never a space, so strip keeps it).
uint32_t DecodeAt(std::string_view s, size_t i, size_t* n) {
  const utf8::Decoded d = utf8::DecodeAt(s, i);
  if (!d.ok()) {
    *n = 1;
    return static_cast<unsigned char>(s[i]);
  }
  *n = static_cast<size_t>(d.length);
  return d.code_point;
}

// str.isspace() for one code point.
bool IsPythonSpace(uint32_t cp) {
  if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F)) return true;
  if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A)) return true;
  return cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool Truthy(const json::Value* v) { return JinjaTruthy(v); }

std::string RoleOf(const json::Value& m) {
  const json::Value* r = m.Find("role");
  return r != nullptr && r->is_string() ? r->as_string() : std::string();
}

// `follow.get('tool_call_id') == tc.get('id')`: two missing/null values compare equal.
bool SameOptional(const json::Value* a, const json::Value* b) {
  const bool a_none = a == nullptr || a->is_null();
  const bool b_none = b == nullptr || b->is_null();
  if (a_none || b_none) return a_none && b_none;
  return a->Serialize() == b->Serialize();
}

}  // namespace

std::string PythonStrip(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    size_t n;
    if (!IsPythonSpace(DecodeAt(s, begin, &n))) break;
    begin += n;
  }
  size_t end = s.size();
  while (end > begin) {
    // Step back to the start of the last code point.
    size_t start = end - 1;
    while (start > begin && utf8::IsContinuationByte(static_cast<unsigned char>(s[start]))) {
      --start;
    }
    size_t n;
    const uint32_t cp = DecodeAt(s, start, &n);
    if (start + n != end || !IsPythonSpace(cp)) break;
    end = start;
  }
  return std::string(s.substr(begin, end - begin));
}

StatusOr<RenderedChat> RenderChat(const std::vector<json::Value>& messages,
                                  const std::vector<json::Value>& tools,
                                  const RenderOptions& options) {
  enum class Prev { kNone, kThink, kTool, kToolCall, kToolResponse, kMedia };
  Prev prev = Prev::kNone;
  RenderedChat out;
  out.Markup(options.bos_token);
  size_t first = 0;  // loop_messages = messages[first:]
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!messages[i].is_object()) {
      return InvalidArgumentError("chat message " + std::to_string(i) + " is not an object");
    }
  }
  const std::string first_role = messages.empty() ? "" : RoleOf(messages[0]);
  const bool system_first = first_role == "system" || first_role == "developer";
  if (options.enable_thinking || !tools.empty() || system_first) {
    out.Markup("<|turn>system\n");
    if (options.enable_thinking) {
      out.Markup("<|think|>\n");
      prev = Prev::kThink;
    }
    if (system_first) {
      const json::Value* content = messages[0].Find("content");
      if (content != nullptr && content->is_string()) {
        out.Content(PythonStrip(content->as_string()));
      } else if (content != nullptr && content->is_array()) {
        for (const json::Value& part : content->as_array()) {
          const json::Value* text = part.Find("text");
          if (text != nullptr && text->is_string()) out.Content(PythonStrip(text->as_string()));
        }
      }
      first = 1;
    }
    for (size_t t = 0; t < tools.size(); ++t) {
      // The template strips the declaration; it starts with "declaration:" and ends with '}'.
      out.Markup("<|tool>");
      const Status declared = WriteFunctionDeclaration(tools[t], &out);
      if (!declared.ok()) {
        return InvalidArgumentError("tool " + std::to_string(t) + ": " + declared.message());
      }
      out.Markup("<tool|>");
    }
    if (!tools.empty()) prev = Prev::kTool;
    out.Markup("<turn|>\n");
  }
  // A model turn's text: the template drops its thought channels unless the caller's text is
  // content throughout.
  auto model_text = [&](std::string_view text) {
    return options.strip_model_thoughts ? StripThinking(text) : PythonStrip(text);
  };
  const size_t count = messages.size();
  size_t last_user = SIZE_MAX;  // index into messages (not loop_messages), SIZE_MAX = none
  for (size_t i = first; i < count; ++i) {
    if (RoleOf(messages[i]) == "user") last_user = i;
  }
  for (size_t i = first; i < count; ++i) {
    const json::Value& message = messages[i];
    const std::string raw_role = RoleOf(message);
    if (raw_role == "tool") continue;
    prev = Prev::kNone;
    const std::string role = raw_role == "assistant" ? "model" : raw_role;
    std::string prev_non_tool_role;
    for (size_t j = i; j-- > first;) {
      if (RoleOf(messages[j]) != "tool") {
        prev_non_tool_role = RoleOf(messages[j]);
        break;
      }
    }
    const bool continue_model_turn = role == "model" && prev_non_tool_role == "assistant";
    if (!continue_model_turn) out.Markup("<|turn>" + role + "\n");

    const json::Value* tool_calls = message.Find("tool_calls");
    const bool has_tool_calls = Truthy(tool_calls);
    const json::Value* thinking = message.Find("reasoning");
    if (!Truthy(thinking)) thinking = message.Find("reasoning_content");
    if (Truthy(thinking) && (last_user == SIZE_MAX || i > last_user) && has_tool_calls &&
        thinking->is_string()) {
      out.Markup("<|channel>thought\n");
      out.Content(thinking->as_string());
      out.Markup("\n<channel|>");
    }
    if (has_tool_calls) {
      if (!tool_calls->is_array()) {
        return InvalidArgumentError("chat message " + std::to_string(i) +
                                    ": tool_calls is not a list");
      }
      for (const json::Value& call : tool_calls->as_array()) {
        const json::Value* function = call.Find("function");
        const json::Value* name = function != nullptr ? function->Find("name") : nullptr;
        if (name == nullptr || !name->is_string()) {
          return InvalidArgumentError("chat message " + std::to_string(i) +
                                      ": a tool call has no function.name");
        }
        const json::Value* arguments = function->Find("arguments");
        WriteToolCall(name->as_string(), arguments != nullptr ? *arguments : json::Value(), &out);
      }
      prev = Prev::kToolCall;
    }
    bool wrote_response = false;
    const json::Value* responses = message.Find("tool_responses");
    if (Truthy(responses) && responses->is_array()) {
      for (const json::Value& r : responses->as_array()) {
        const json::Value* name = r.Find("name");
        const json::Value* response = r.Find("response");
        WriteToolResponse(name != nullptr && name->is_string() ? name->as_string() : "unknown",
                          response != nullptr ? *response : json::Value(), &out);
        wrote_response = true;
        prev = Prev::kToolResponse;
      }
    } else if (has_tool_calls) {
      // OpenAI style: the following role:"tool" messages answer this turn's calls.
      for (size_t k = i + 1; k < count && RoleOf(messages[k]) == "tool"; ++k) {
        const json::Value& follow = messages[k];
        const json::Value* fname = follow.Find("name");
        std::string name = fname != nullptr && fname->is_string() ? fname->as_string() : "unknown";
        for (const json::Value& tc : tool_calls->as_array()) {
          if (SameOptional(tc.Find("id"), follow.Find("tool_call_id"))) {
            const json::Value* f = tc.Find("function");
            const json::Value* n = f != nullptr ? f->Find("name") : nullptr;
            if (n != nullptr && n->is_string()) name = n->as_string();
          }
        }
        const json::Value* body = follow.Find("content");
        if (body != nullptr && body->is_array()) {
          std::string text;
          for (const json::Value& part : body->as_array()) {
            const json::Value* type = part.Find("type");
            const json::Value* t = part.Find("text");
            if (type != nullptr && type->is_string() && type->as_string() == "text" &&
                t != nullptr && t->is_string()) {
              text += t->as_string();
            }
          }
          WriteToolResponse(name, json::Value::String(text), &out);
        } else {
          WriteToolResponse(name, body != nullptr ? *body : json::Value(), &out);
        }
        wrote_response = true;
        prev = Prev::kToolResponse;
      }
    }
    const json::Value* content = message.Find("content");
    if (content != nullptr && content->is_string()) {
      out.Content(role == "model" ? model_text(content->as_string())
                                  : PythonStrip(content->as_string()));
    } else if (content != nullptr && content->is_array()) {
      for (const json::Value& item : content->as_array()) {
        const json::Value* type = item.Find("type");
        const std::string t = type != nullptr && type->is_string() ? type->as_string() : "";
        if (t == "text") {
          const json::Value* text = item.Find("text");
          const std::string s = text != nullptr && text->is_string() ? text->as_string() : "";
          out.Content(role == "model" ? model_text(s) : PythonStrip(s));
        } else if (t == "image" || t == "audio" || t == "video") {
          out.Media(t == "image"   ? Segment::Kind::kImage
                    : t == "audio" ? Segment::Kind::kAudio
                                   : Segment::Kind::kVideo,
                    "<|" + t + "|>");
          prev = Prev::kMedia;
        } else if (t == "token_ids") {
          const json::Value* index = item.Find("index");
          int64_t n = -1;
          if (index == nullptr || !index->GetInt64(&n) || n < 0) {
            return InvalidArgumentError("chat message " + std::to_string(i) +
                                        ": a token_ids part needs a non-negative index");
          }
          out.Splice(static_cast<size_t>(n));
        }
      }
    }
    if (prev == Prev::kToolCall && !wrote_response) {
      out.Markup("<|tool_response>");
    } else if (!(wrote_response && !Truthy(content))) {
      out.Markup("<turn|>\n");
    }
  }
  if (options.add_generation_prompt && prev != Prev::kToolResponse && prev != Prev::kToolCall) {
    out.Markup("<|turn>model\n");
    if (options.variant == TemplateVariant::kLarge && !options.enable_thinking) {
      out.Markup("<|channel>thought\n<channel|>");
    }
  }
  return out;
}

}  // namespace gemma4::chat
