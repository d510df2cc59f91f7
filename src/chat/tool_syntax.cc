#include "chat/tool_syntax.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <unordered_map>

#include "chat/chat_template.h"

namespace gemma4::chat {
namespace {

using Object = json::Value::Object;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Jinja's dictsort: by key, case-insensitively (Python's str.lower, ASCII here), stable.
// Each key is lowered once (not in every comparison).
std::vector<const std::pair<std::string, json::Value>*> DictSort(const Object& o) {
  std::vector<std::pair<std::string, const std::pair<std::string, json::Value>*>> keyed;
  keyed.reserve(o.size());
  for (const auto& kv : o) keyed.emplace_back(Lower(kv.first), &kv);
  std::stable_sort(keyed.begin(), keyed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<const std::pair<std::string, json::Value>*> items;
  items.reserve(keyed.size());
  for (const auto& k : keyed) items.push_back(k.second);
  return items;
}

}  // namespace

bool JinjaTruthy(const json::Value* v) {
  if (v == nullptr) return false;
  switch (v->type()) {
    case json::Value::Type::kNull:
      return false;
    case json::Value::Type::kBool:
      return v->as_bool();
    case json::Value::Type::kNumber:
      return v->as_number() != 0.0;
    case json::Value::Type::kString:
      return !v->as_string().empty();
    case json::Value::Type::kArray:
      return !v->as_array().empty();
    case json::Value::Type::kObject:
      return !v->as_object().empty();
  }
  return false;
}

namespace {

bool Truthy(const json::Value* v) { return JinjaTruthy(v); }

// `{{ value }}` of a JSON-decoded Python object.
std::string JinjaPrint(const json::Value* v);

std::string PythonRepr(const json::Value& v) {
  // str() of a list/dict uses repr() of the items: 'x' strings, True/False/None.
  switch (v.type()) {
    case json::Value::Type::kNull:
      return "None";
    case json::Value::Type::kBool:
      return v.as_bool() ? "True" : "False";
    case json::Value::Type::kNumber:
      return PythonNumber(v);
    case json::Value::Type::kString: {
      const std::string& s = v.as_string();
      const bool use_double = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
      const char q = use_double ? '"' : '\'';
      std::string out(1, q);
      for (char c : s) {
        if (c == '\\') {
          out += "\\\\";
        } else if (c == q) {
          out += std::string("\\") + q;
        } else if (c == '\n') {
          out += "\\n";
        } else if (c == '\t') {
          out += "\\t";
        } else if (c == '\r') {
          out += "\\r";
        } else {
          out += c;
        }
      }
      return out + q;
    }
    case json::Value::Type::kArray: {
      std::string out = "[";
      for (size_t i = 0; i < v.as_array().size(); ++i) {
        if (i) out += ", ";
        out += PythonRepr(v.as_array()[i]);
      }
      return out + "]";
    }
    case json::Value::Type::kObject: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, val] : v.as_object()) {
        if (!first) out += ", ";
        first = false;
        out += PythonRepr(json::Value::String(k)) + ": " + PythonRepr(val);
      }
      return out + "}";
    }
  }
  return "";
}

std::string JinjaPrint(const json::Value* v) {
  if (v == nullptr) return "";  // Undefined prints nothing
  if (v->is_string()) return v->as_string();
  return PythonRepr(*v);
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

// `value['type'] | upper` (Undefined|upper is "").
std::string UpperType(const json::Value* v) { return Upper(JinjaPrint(v)); }

const json::Value* Get(const json::Value& v, std::string_view key) {
  return v.is_object() ? v.Find(key) : nullptr;
}

void FormatParameters(const json::Value& properties, RenderedChat* out);

// `{%- if add_comma %},{%- else -%} {%- set add_comma = true -%} {% endif -%}`
void Comma(bool* add_comma, RenderedChat* out) {
  if (*add_comma) {
    out->Markup(",");
  } else {
    *add_comma = true;
  }
}

void FormatRequired(const json::Value* required, RenderedChat* out) {
  out->Markup("required:[");
  if (required != nullptr && required->is_array()) {
    const auto& items = required->as_array();
    for (size_t i = 0; i < items.size(); ++i) {
      out->Markup(kStringDelimiter);
      out->Content(JinjaPrint(&items[i]));
      out->Markup(kStringDelimiter);
      if (i + 1 < items.size()) out->Markup(",");
    }
  }
  out->Markup("]");
}

// The template's format_parameters(properties, required) macro. Property names, descriptions
// and type names come from the declaration: content.
void FormatParameters(const json::Value& properties, RenderedChat* out) {
  static const char* kStandard[] = {"description", "type", "properties", "required", "nullable"};
  if (!properties.is_object()) return;
  bool found_first = false;
  for (const auto* kv : DictSort(properties.as_object())) {
    const std::string& key = kv->first;
    const json::Value& value = kv->second;
    bool standard = false;
    for (const char* s : kStandard) standard = standard || key == s;
    if (standard) continue;
    if (found_first) out->Markup(",");
    found_first = true;
    bool add_comma = false;
    out->Content(key);
    out->Markup(":{");
    if (Truthy(Get(value, "description"))) {
      out->Markup("description:");
      out->Markup(kStringDelimiter);
      out->Content(JinjaPrint(Get(value, "description")));
      out->Markup(kStringDelimiter);
      add_comma = true;
    }
    const std::string type = UpperType(Get(value, "type"));
    if (type == "STRING") {
      if (Truthy(Get(value, "enum"))) {
        Comma(&add_comma, out);
        out->Markup("enum:");
        WriteArgument(*Get(value, "enum"), true, out);
      }
    } else if (type == "ARRAY") {
      const json::Value* items = Get(value, "items");
      if (items != nullptr && items->is_object() && Truthy(items)) {
        Comma(&add_comma, out);
        out->Markup("items:{");
        bool items_first = false;
        for (const auto* ikv : DictSort(items->as_object())) {
          const std::string& item_key = ikv->first;
          const json::Value& item_value = ikv->second;
          if (item_value.is_null()) continue;
          if (items_first) out->Markup(",");
          items_first = true;
          if (item_key == "properties") {
            out->Markup("properties:{");
            if (item_value.is_object()) FormatParameters(item_value, out);
            out->Markup("}");
          } else if (item_key == "required") {
            FormatRequired(&item_value, out);
          } else if (item_key == "type") {
            out->Markup("type:");
            if (item_value.is_string()) {
              WriteArgument(json::Value::String(Upper(item_value.as_string())), true, out);
            } else if (item_value.is_array()) {
              json::Value::Array upper;
              for (const json::Value& t : item_value.as_array()) {
                upper.push_back(json::Value::String(Upper(JinjaPrint(&t))));
              }
              WriteArgument(json::Value::MakeArray(std::move(upper)), true, out);
            } else {
              WriteArgument(item_value, true, out);
            }
          } else {
            out->Content(item_key);
            out->Markup(":");
            WriteArgument(item_value, true, out);
          }
        }
        out->Markup("}");
      }
    }
    if (Truthy(Get(value, "nullable"))) {
      Comma(&add_comma, out);
      out->Markup("nullable:true");
    }
    if (type == "OBJECT") {
      const json::Value* props = Get(value, "properties");
      if (props != nullptr && props->is_object()) {
        Comma(&add_comma, out);
        out->Markup("properties:{");
        FormatParameters(*props, out);
        out->Markup("}");
      } else if (value.is_object()) {
        Comma(&add_comma, out);
        out->Markup("properties:{");
        FormatParameters(value, out);
        out->Markup("}");
      }
      if (Truthy(Get(value, "required"))) {
        Comma(&add_comma, out);
        FormatRequired(Get(value, "required"), out);
      }
    }
    Comma(&add_comma, out);
    out->Markup("type:");
    out->Markup(kStringDelimiter);
    out->Content(type);
    out->Markup(kStringDelimiter);
    out->Markup("}");
  }
}

// An object's members as format_argument writes them, without the braces.
void WriteMembers(const json::Value::Object& object, bool escape_keys, RenderedChat* out) {
  bool first = true;
  for (const auto* kv : DictSort(object)) {
    if (!first) out->Markup(",");
    first = false;
    if (escape_keys) out->Markup(kStringDelimiter);
    out->Content(kv->first);
    if (escape_keys) out->Markup(kStringDelimiter);
    out->Markup(":");
    WriteArgument(kv->second, escape_keys, out);
  }
}

}  // namespace

std::string PythonNumber(const json::Value& number) {
  if (number.is_integer()) {
    int64_t i = 0;
    number.GetInt64(&i);
    return std::to_string(i);
  }
  const double d = number.as_number();
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  // Shortest round-trip digits, then Python's repr layout: positional for 1e-4 <= |d| < 1e16,
  // else d.ddde+XX with at least two exponent digits.
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // e.g. "-1.5e-07", "1e+20"
  const size_t e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  const int exponent = std::atoi(sci.c_str() + e + 1);
  std::string sign;
  if (!mantissa.empty() && mantissa[0] == '-') {
    sign = "-";
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits += c;
  }
  if (exponent >= -5 && exponent < 16) {
    // Python switches to exponent notation below 1e-4 (repr uses 'r' -> -4 <= exp < 16).
    if (exponent < -4) {
      // falls through to scientific below
    } else {
      std::string out;
      if (exponent >= 0) {
        if (static_cast<int>(digits.size()) <= exponent + 1) {
          out = digits + std::string(exponent + 1 - digits.size(), '0') + ".0";
        } else {
          out = digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
        }
      } else {
        out = "0." + std::string(-exponent - 1, '0') + digits;
      }
      return sign + out;
    }
  }
  std::string m = digits.substr(0, 1);
  if (digits.size() > 1) m += "." + digits.substr(1);
  char exp[16];
  std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return sign + m + exp;
}

void WriteArgument(const json::Value& v, bool escape_keys, RenderedChat* out) {
  switch (v.type()) {
    case json::Value::Type::kString:
      out->Markup(kStringDelimiter);
      out->Content(v.as_string());
      out->Markup(kStringDelimiter);
      return;
    case json::Value::Type::kBool:
      out->Markup(v.as_bool() ? "true" : "false");
      return;
    case json::Value::Type::kObject:
      out->Markup("{");
      WriteMembers(v.as_object(), escape_keys, out);
      out->Markup("}");
      return;
    case json::Value::Type::kArray:
      out->Markup("[");
      for (size_t i = 0; i < v.as_array().size(); ++i) {
        if (i) out->Markup(",");
        WriteArgument(v.as_array()[i], escape_keys, out);
      }
      out->Markup("]");
      return;
    case json::Value::Type::kNumber:
      out->Markup(PythonNumber(v));
      return;
    case json::Value::Type::kNull:
      out->Markup("None");
      return;
  }
}

std::string FormatArgument(const json::Value& value, bool escape_keys) {
  RenderedChat out;
  WriteArgument(value, escape_keys, &out);
  return out.Text();
}

Status WriteFunctionDeclaration(const json::Value& tool, RenderedChat* out) {
  const json::Value* function = Get(tool, "function");
  if (function == nullptr) function = &tool;
  const json::Value* name = Get(*function, "name");
  if (name == nullptr || !name->is_string() || name->as_string().empty()) {
    return InvalidArgumentError("tool declaration without a function name");
  }
  // The template strips the declaration, which starts with "declaration:" and ends with '}':
  // nothing to strip.
  out->Markup("declaration:");
  out->Content(name->as_string());
  out->Markup("{description:");
  out->Markup(kStringDelimiter);
  out->Content(JinjaPrint(Get(*function, "description")));
  out->Markup(kStringDelimiter);
  const json::Value* params = Get(*function, "parameters");
  if (Truthy(params)) {
    out->Markup(",parameters:{");
    if (Truthy(Get(*params, "properties"))) {
      out->Markup("properties:{");
      FormatParameters(*Get(*params, "properties"), out);
      out->Markup("},");
    }
    if (Truthy(Get(*params, "required"))) {
      FormatRequired(Get(*params, "required"), out);
      out->Markup(",");
    }
    if (Truthy(Get(*params, "type"))) {
      out->Markup("type:");
      out->Markup(kStringDelimiter);
      out->Content(UpperType(Get(*params, "type")));
      out->Markup(kStringDelimiter);
      out->Markup("}");
    }
  }
  if (const json::Value* response = Get(*function, "response"); response != nullptr) {
    out->Markup(",response:{");
    if (Truthy(Get(*response, "description"))) {
      out->Markup("description:");
      out->Markup(kStringDelimiter);
      out->Content(JinjaPrint(Get(*response, "description")));
      out->Markup(kStringDelimiter);
      out->Markup(",");
    }
    if (UpperType(Get(*response, "type")) == "OBJECT") {
      out->Markup("type:");
      out->Markup(kStringDelimiter);
      out->Content(UpperType(Get(*response, "type")));
      out->Markup(kStringDelimiter);
      out->Markup("}");
    }
  }
  out->Markup("}");
  return OkStatus();
}

StatusOr<std::string> FormatFunctionDeclaration(const json::Value& tool) {
  RenderedChat out;
  GEMMA4_RETURN_IF_ERROR(WriteFunctionDeclaration(tool, &out));
  return out.Text();
}

void WriteToolCall(std::string_view name, const json::Value& arguments, RenderedChat* out) {
  out->Markup("<|tool_call>call:");
  out->Content(name);
  out->Markup("{");
  if (arguments.is_object()) {
    WriteMembers(arguments.as_object(), /*escape_keys=*/false, out);
  } else if (arguments.is_string()) {
    out->Content(arguments.as_string());
  }
  out->Markup("}<tool_call|>");
}

std::string FormatToolCall(std::string_view name, const json::Value& arguments) {
  RenderedChat out;
  WriteToolCall(name, arguments, &out);
  return out.Text();
}

void WriteToolResponse(std::string_view name, const json::Value& response, RenderedChat* out) {
  out->Markup("<|tool_response>response:");
  out->Content(name);
  out->Markup("{");
  if (response.is_object()) {
    WriteMembers(response.as_object(), /*escape_keys=*/false, out);
  } else {
    out->Markup("value:");
    WriteArgument(response, false, out);
  }
  out->Markup("}<tool_response|>");
}

std::string FormatToolResponse(std::string_view name, const json::Value& response) {
  RenderedChat out;
  WriteToolResponse(name, response, &out);
  return out.Text();
}

// ---------------------------------------------------------------------------------------------
// Parser

namespace {

class CallParser {
 public:
  explicit CallParser(std::string_view text) : text_(text) {}

  StatusOr<ParsedToolCall> Parse() {
    SkipSpace();
    if (!Consume("call:")) return Error("expected \"call:\"");
    const size_t name_start = pos_;
    while (pos_ < text_.size() && text_[pos_] != '{' && !IsSpace(text_[pos_])) ++pos_;
    ParsedToolCall call;
    call.name = std::string(text_.substr(name_start, pos_ - name_start));
    if (call.name.empty()) return Error("expected a function name after \"call:\"");
    SkipSpace();
    if (pos_ >= text_.size() || text_[pos_] != '{') return Error("expected '{' after the name");
    GEMMA4_RETURN_IF_ERROR(ParseValue(&call.arguments, 0));
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text after the arguments");
    return call;
  }

 private:
  static bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
  void SkipSpace() {
    while (pos_ < text_.size() && IsSpace(text_[pos_])) ++pos_;
  }
  bool Consume(std::string_view s) {
    if (text_.compare(pos_, s.size(), s) != 0) return false;
    pos_ += s.size();
    return true;
  }
  Status Error(const std::string& what) const {
    return InvalidArgumentError("tool call, byte " + std::to_string(pos_) + ": " + what);
  }

  Status ParseDelimitedString(std::string* out) {
    const size_t end = text_.find(kStringDelimiter, pos_);
    if (end == std::string_view::npos) return Error("unterminated <|\"|> string");
    *out = std::string(text_.substr(pos_, end - pos_));
    pos_ = end + kStringDelimiter.size();
    return OkStatus();
  }

  Status ParseJsonString(std::string* out) {
    // A "..." string with JSON escapes; delegate to the JSON parser on the literal.
    size_t end = pos_ + 1;
    while (end < text_.size() && text_[end] != '"') end += text_[end] == '\\' ? 2 : 1;
    if (end >= text_.size()) return Error("unterminated \"...\" string");
    auto v = json::Parse(text_.substr(pos_, end + 1 - pos_), "tool call string");
    if (!v.ok() || !v->is_string()) return Error("bad \"...\" string");
    *out = v->as_string();
    pos_ = end + 1;
    return OkStatus();
  }

  Status ParseKey(std::string* key) {
    SkipSpace();
    if (Consume(kStringDelimiter)) return ParseDelimitedString(key);
    if (pos_ < text_.size() && text_[pos_] == '"') return ParseJsonString(key);
    const size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] != ':' && text_[pos_] != '}' && text_[pos_] != ',' &&
           !IsSpace(text_[pos_])) {
      ++pos_;
    }
    if (pos_ == start) return Error("expected a key");
    *key = std::string(text_.substr(start, pos_ - start));
    return OkStatus();
  }

  Status ParseValue(json::Value* out, int depth) {
    if (depth > 64) return Error("nesting deeper than 64");
    SkipSpace();
    if (pos_ >= text_.size()) return Error("expected a value");
    const char c = text_[pos_];
    if (Consume(kStringDelimiter)) {
      std::string s;
      GEMMA4_RETURN_IF_ERROR(ParseDelimitedString(&s));
      *out = json::Value::String(std::move(s));
      return OkStatus();
    }
    if (c == '"') {
      std::string s;
      GEMMA4_RETURN_IF_ERROR(ParseJsonString(&s));
      *out = json::Value::String(std::move(s));
      return OkStatus();
    }
    if (c == '{') {
      ++pos_;
      Object object;
      // Key -> index in `object`, so that a repeated key is found in O(1) (a linear scan made
      // a call with n keys cost O(n^2)).
      std::unordered_map<std::string, size_t> index;
      SkipSpace();
      if (Consume("}")) {
        *out = json::Value::MakeObject();
        return OkStatus();
      }
      while (true) {
        std::string key;
        GEMMA4_RETURN_IF_ERROR(ParseKey(&key));
        SkipSpace();
        if (!Consume(":")) return Error("expected ':' after key \"" + key + "\"");
        json::Value value;
        GEMMA4_RETURN_IF_ERROR(ParseValue(&value, depth + 1));
        const auto [it, inserted] = index.try_emplace(key, object.size());
        if (inserted) {
          object.emplace_back(std::move(key), std::move(value));
        } else {
          object[it->second].second = std::move(value);  // last one wins, as in Python dicts
        }
        SkipSpace();
        if (Consume(",")) continue;
        if (Consume("}")) break;
        return Error("expected ',' or '}' in an object");
      }
      *out = json::Value::MakeObject(std::move(object));
      return OkStatus();
    }
    if (c == '[') {
      ++pos_;
      json::Value::Array array;
      SkipSpace();
      if (Consume("]")) {
        *out = json::Value::MakeArray();
        return OkStatus();
      }
      while (true) {
        json::Value value;
        GEMMA4_RETURN_IF_ERROR(ParseValue(&value, depth + 1));
        array.push_back(std::move(value));
        SkipSpace();
        if (Consume(",")) continue;
        if (Consume("]")) break;
        return Error("expected ',' or ']' in an array");
      }
      *out = json::Value::MakeArray(std::move(array));
      return OkStatus();
    }
    if (Consume("true") || Consume("True")) {
      *out = json::Value::Bool(true);
      return OkStatus();
    }
    if (Consume("false") || Consume("False")) {
      *out = json::Value::Bool(false);
      return OkStatus();
    }
    if (Consume("null") || Consume("None")) {
      *out = json::Value();
      return OkStatus();
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      const size_t start = pos_;
      ++pos_;
      while (pos_ < text_.size() &&
             ((text_[pos_] >= '0' && text_[pos_] <= '9') || text_[pos_] == '.' ||
              text_[pos_] == 'e' || text_[pos_] == 'E' || text_[pos_] == '+' ||
              text_[pos_] == '-')) {
        ++pos_;
      }
      auto v = json::Parse(text_.substr(start, pos_ - start), "tool call number");
      if (!v.ok() || !v->is_number()) {
        pos_ = start;
        return Error("bad number");
      }
      if (!std::isfinite(v->as_number())) {
        pos_ = start;
        return Error("number out of range");
      }
      *out = std::move(*v);
      return OkStatus();
    }
    return Error(std::string("unexpected character '") + c + "'");
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

StatusOr<ParsedToolCall> ParseToolCall(std::string_view body) {
  CallParser parser(body);
  GEMMA4_ASSIGN_OR_RETURN(ParsedToolCall call, parser.Parse());
  if (!call.arguments.is_object())
    return InvalidArgumentError("tool call arguments: not an object");
  return call;
}

std::vector<ToolCallSpan> FindToolCalls(std::string_view text) {
  static constexpr std::string_view kOpen = "<|tool_call>";
  static constexpr std::string_view kClose = "<tool_call|>";
  std::vector<ToolCallSpan> spans;
  size_t pos = 0;
  while (true) {
    const size_t open = text.find(kOpen, pos);
    if (open == std::string_view::npos) break;
    ToolCallSpan span;
    span.begin = open;
    const size_t body_start = open + kOpen.size();
    const size_t close = text.find(kClose, body_start);
    if (close == std::string_view::npos) {
      span.end = text.size();
      span.body = std::string(text.substr(body_start));
      span.status = InvalidArgumentError("tool call at byte " + std::to_string(open) +
                                         " is not terminated by <tool_call|>");
      spans.push_back(std::move(span));
      break;
    }
    span.end = close + kClose.size();
    span.body = std::string(text.substr(body_start, close - body_start));
    auto parsed = ParseToolCall(span.body);
    if (parsed.ok()) {
      span.call = std::move(*parsed);
    } else {
      span.status = parsed.status();
    }
    spans.push_back(std::move(span));
    pos = close + kClose.size();
  }
  return spans;
}

std::string StripThinking(std::string_view text) {
  static constexpr std::string_view kOpen = "<|channel>";
  static constexpr std::string_view kClose = "<channel|>";
  std::string result;
  size_t pos = 0;
  while (true) {
    const size_t close = text.find(kClose, pos);
    const std::string_view part =
        text.substr(pos, close == std::string_view::npos ? std::string_view::npos : close - pos);
    const size_t open = part.find(kOpen);
    result += part.substr(0, open);
    if (close == std::string_view::npos) break;
    pos = close + kClose.size();
  }
  return PythonStrip(result);
}

ThoughtSplit SplitThought(std::string_view text) {
  static constexpr std::string_view kOpen = "<|channel>";
  static constexpr std::string_view kClose = "<channel|>";
  ThoughtSplit out;
  const size_t open = text.find(kOpen);
  if (open == std::string_view::npos) {
    out.content = std::string(text);
    return out;
  }
  size_t start = open + kOpen.size();
  if (text.compare(start, 8, "thought\n") == 0) start += 8;
  // (.+?) needs at least one character before the close.
  const size_t close = text.find(kClose, start + 1);
  if (close == std::string_view::npos || start >= text.size()) {
    out.content = std::string(text);
    return out;
  }
  out.thought = std::string(text.substr(start, close - start));
  out.content = std::string(text.substr(0, open)) + std::string(text.substr(close + kClose.size()));
  return out;
}

}  // namespace gemma4::chat
