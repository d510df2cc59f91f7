#include "base/json.h"

#include <charconv>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <unordered_set>

#include "base/utf8.h"

namespace gemma4::json {
namespace {

const std::string& EmptyString() {
  static const std::string* s = new std::string();
  return *s;
}

class Parser {
 public:
  Parser(std::string_view text, std::string_view source, size_t max_values)
      : text_(text), source_(source), values_left_(max_values) {}

  StatusOr<Value> ParseDocument() {
    SkipWhitespace();
    Value v;
    GEMMA4_RETURN_IF_ERROR(ParseValue(&v, 0));
    SkipWhitespace();
    if (pos_ != text_.size()) return Error("unexpected trailing characters after the document");
    return v;
  }

 private:
  Status Error(const std::string& what) const {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return InvalidArgumentError(std::string(source_) + ": line " + std::to_string(line) +
                                ", column " + std::to_string(column) + ": " + what);
  }

  void SkipWhitespace() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }

  bool Consume(std::string_view word) {
    if (text_.substr(pos_, word.size()) == word) {
      pos_ += word.size();
      return true;
    }
    return false;
  }

  // `depth` is the number of arrays/objects enclosing the value.
  Status ParseValue(Value* out, int depth) {
    if (pos_ >= text_.size()) return Error("unexpected end of input, expected a value");
    if (values_left_ == 0) {
      return Error("more values than this document may hold (" + std::to_string(max_values_) + ")");
    }
    --values_left_;
    char c = text_[pos_];
    if ((c == '{' || c == '[') && depth >= kMaxDepth) {
      return Error("nesting deeper than 256 levels");
    }
    switch (c) {
      case '{':
        return ParseObject(out, depth);
      case '[':
        return ParseArray(out, depth);
      case '"': {
        std::string s;
        GEMMA4_RETURN_IF_ERROR(ParseString(&s));
        *out = Value::String(std::move(s));
        return OkStatus();
      }
      case 't':
        if (Consume("true")) {
          *out = Value::Bool(true);
          return OkStatus();
        }
        break;
      case 'f':
        if (Consume("false")) {
          *out = Value::Bool(false);
          return OkStatus();
        }
        break;
      case 'n':
        if (Consume("null")) {
          *out = Value();
          return OkStatus();
        }
        break;
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber(out);
        break;
    }
    return Error(std::string("unexpected character '") + Printable(c) + "', expected a value");
  }

  static std::string Printable(char c) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string(1, c);
    char buf[8];
    std::snprintf(buf, sizeof(buf), "\\x%02x", u);
    return buf;
  }

  Status ParseObject(Value* out, int depth) {
    ++pos_;  // '{'
    Value::Object members;
    std::unordered_set<std::string> seen_keys;  // duplicate detection in O(n)
    SkipWhitespace();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      *out = Value::MakeObject(std::move(members));
      return OkStatus();
    }
    while (true) {
      SkipWhitespace();
      if (pos_ >= text_.size() || text_[pos_] != '"') return Error("expected a string object key");
      std::string key;
      GEMMA4_RETURN_IF_ERROR(ParseString(&key));
      if (!seen_keys.insert(key).second) return Error("duplicate object key \"" + key + "\"");
      SkipWhitespace();
      if (pos_ >= text_.size() || text_[pos_] != ':') return Error("expected ':' after object key");
      ++pos_;
      SkipWhitespace();
      Value v;
      GEMMA4_RETURN_IF_ERROR(ParseValue(&v, depth + 1));
      members.emplace_back(std::move(key), std::move(v));
      SkipWhitespace();
      if (pos_ >= text_.size()) return Error("unexpected end of input inside an object");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == '}') {
        ++pos_;
        break;
      }
      return Error("expected ',' or '}' in an object");
    }
    *out = Value::MakeObject(std::move(members));
    return OkStatus();
  }

  Status ParseArray(Value* out, int depth) {
    ++pos_;  // '['
    Value::Array items;
    SkipWhitespace();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      *out = Value::MakeArray(std::move(items));
      return OkStatus();
    }
    while (true) {
      SkipWhitespace();
      Value v;
      GEMMA4_RETURN_IF_ERROR(ParseValue(&v, depth + 1));
      items.push_back(std::move(v));
      SkipWhitespace();
      if (pos_ >= text_.size()) return Error("unexpected end of input inside an array");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == ']') {
        ++pos_;
        break;
      }
      return Error("expected ',' or ']' in an array");
    }
    *out = Value::MakeArray(std::move(items));
    return OkStatus();
  }

  Status ParseHex4(uint32_t* out) {
    if (pos_ + 4 > text_.size()) return Error("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_ + i];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return Error("invalid hex digit in \\u escape");
      }
    }
    pos_ += 4;
    *out = v;
    return OkStatus();
  }

  // Validates one UTF-8 sequence starting at pos_ and copies it.
  Status CopyUtf8(std::string* out) {
    const utf8::Decoded d = utf8::DecodeAt(text_, pos_);
    switch (d.status) {
      case utf8::DecodeStatus::kOk:
        break;
      case utf8::DecodeStatus::kInvalidLead:
        return Error("invalid UTF-8 byte in string");
      case utf8::DecodeStatus::kInvalidContinuation:
        return Error("invalid UTF-8 sequence in string");
      case utf8::DecodeStatus::kTruncated:
        return Error("truncated UTF-8 sequence in string");
    }
    out->append(text_.data() + pos_, static_cast<size_t>(d.length));
    pos_ += static_cast<size_t>(d.length);
    return OkStatus();
  }

  Status ParseString(std::string* out) {
    ++pos_;  // opening quote
    while (true) {
      if (pos_ >= text_.size()) return Error("unterminated string");
      char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return OkStatus();
      }
      if (static_cast<unsigned char>(c) < 0x20) return Error("control character in string");
      if (c != '\\') {
        GEMMA4_RETURN_IF_ERROR(CopyUtf8(out));
        continue;
      }
      ++pos_;
      if (pos_ >= text_.size()) return Error("unterminated escape in string");
      char e = text_[pos_++];
      switch (e) {
        case '"':
          out->push_back('"');
          break;
        case '\\':
          out->push_back('\\');
          break;
        case '/':
          out->push_back('/');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          GEMMA4_RETURN_IF_ERROR(ParseHex4(&cp));
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo = 0;
            if (!Consume("\\u")) return Error("unpaired high surrogate in \\u escape");
            GEMMA4_RETURN_IF_ERROR(ParseHex4(&lo));
            if (lo < 0xDC00 || lo > 0xDFFF) return Error("invalid low surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Error("unpaired low surrogate in \\u escape");
          }
          utf8::Append(cp, out);
          break;
        }
        default:
          --pos_;
          return Error(std::string("invalid escape '\\") + Printable(e) + "' in string");
      }
    }
  }

  Status ParseNumber(Value* out) {
    const size_t start = pos_;
    if (text_[pos_] == '-') ++pos_;
    if (pos_ >= text_.size()) return Error("truncated number");
    if (text_[pos_] == '0') {
      ++pos_;
    } else if (text_[pos_] >= '1' && text_[pos_] <= '9') {
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    } else {
      return Error("invalid number");
    }
    bool integral = true;
    if (pos_ < text_.size() && text_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9') {
        return Error("expected digits after the decimal point");
      }
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9') {
        return Error("expected digits in the exponent");
      }
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    }
    const std::string literal(text_.substr(start, pos_ - start));
    if (integral) {
      errno = 0;
      char* end = nullptr;
      long long v = std::strtoll(literal.c_str(), &end, 10);
      if (errno == 0 && end == literal.c_str() + literal.size()) {
        *out = Value::Integer(static_cast<int64_t>(v));
        return OkStatus();
      }
    }
    *out = Value::Number(std::strtod(literal.c_str(), nullptr));
    return OkStatus();
  }

  std::string_view text_;
  std::string_view source_;
  size_t pos_ = 0;
  size_t values_left_;  // values the document may still hold (Parse's max_values)
  const size_t max_values_ = values_left_;
};

}  // namespace

Value Value::Bool(bool b) {
  Value v;
  v.data_ = b;
  return v;
}

Value Value::Number(double d) {
  Value v;
  v.data_ = d;
  return v;
}

Value Value::Integer(int64_t i) {
  Value v;
  v.data_ = i;
  return v;
}

Value Value::String(std::string s) {
  Value v;
  v.data_ = Boxed<std::string>(std::move(s));
  return v;
}

Value Value::MakeArray(Array a) {
  Value v;
  v.data_ = Boxed<Array>(std::move(a));
  return v;
}

Value Value::MakeObject(Object o) {
  Value v;
  v.data_ = Boxed<Object>(std::move(o));
  return v;
}

Value::Type Value::type() const {
  // The variant's alternatives in order: null, bool, double, int64, string, array, object.
  static constexpr Type kTypes[] = {Type::kNull,   Type::kBool,  Type::kNumber, Type::kNumber,
                                    Type::kString, Type::kArray, Type::kObject};
  return kTypes[data_.index()];
}

double Value::as_number() const {
  if (const double* d = std::get_if<double>(&data_)) return *d;
  if (const int64_t* i = std::get_if<int64_t>(&data_)) return static_cast<double>(*i);
  return 0.0;
}

const std::string& Value::as_string() const {
  const auto* s = std::get_if<Boxed<std::string>>(&data_);
  return s != nullptr ? s->get() : EmptyString();
}

const Value::Array& Value::as_array() const {
  static const Array* empty = new Array();
  const auto* a = std::get_if<Boxed<Array>>(&data_);
  return a != nullptr ? a->get() : *empty;
}

const Value::Object& Value::as_object() const {
  static const Object* empty = new Object();
  const auto* o = std::get_if<Boxed<Object>>(&data_);
  return o != nullptr ? o->get() : *empty;
}

Value::Array& Value::mutable_array() {
  if (!is_array()) data_ = Boxed<Array>(Array());
  return std::get<Boxed<Array>>(data_).get();
}

Value::Object& Value::mutable_object() {
  if (!is_object()) data_ = Boxed<Object>(Object());
  return std::get<Boxed<Object>>(data_).get();
}

bool Value::GetInt64(int64_t* out) const {
  if (const int64_t* i = std::get_if<int64_t>(&data_)) {
    *out = *i;
    return true;
  }
  const double* d = std::get_if<double>(&data_);
  if (d == nullptr) return false;
  // 2^63 as a double; values at or beyond it do not fit.
  if (std::isfinite(*d) && std::floor(*d) == *d && std::fabs(*d) < 9.2233720368547758e18) {
    *out = static_cast<int64_t>(*d);
    return true;
  }
  return false;
}

const Value* Value::Find(std::string_view key) const {
  for (const auto& m : as_object()) {
    if (m.first == key) return &m.second;
  }
  return nullptr;
}

void AppendQuoted(std::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
          out->append(buf);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

std::string Value::Serialize() const {
  std::string out;
  switch (type()) {
    case Type::kNull:
      return "null";
    case Type::kBool:
      return as_bool() ? "true" : "false";
    case Type::kNumber: {
      if (const int64_t* i = std::get_if<int64_t>(&data_)) return std::to_string(*i);
      const double d = std::get<double>(data_);
      if (!std::isfinite(d)) return "null";
      // Shortest text that round-trips; a float stays a float (1000.0, not 1000).
      char buf[64];
      const auto r = std::to_chars(buf, buf + sizeof(buf), d);
      std::string text(buf, r.ptr);
      if (text.find_first_of(".e") == std::string::npos) text += ".0";
      return text;
    }
    case Type::kString:
      AppendQuoted(as_string(), &out);
      return out;
    case Type::kArray: {
      const Array& array = as_array();
      out.push_back('[');
      for (size_t i = 0; i < array.size(); ++i) {
        if (i) out.push_back(',');
        out += array[i].Serialize();
      }
      out.push_back(']');
      return out;
    }
    case Type::kObject: {
      const Object& object = as_object();
      out.push_back('{');
      for (size_t i = 0; i < object.size(); ++i) {
        if (i) out.push_back(',');
        AppendQuoted(object[i].first, &out);
        out.push_back(':');
        out += object[i].second.Serialize();
      }
      out.push_back('}');
      return out;
    }
  }
  return out;
}

StatusOr<Value> Parse(std::string_view text, std::string_view source) {
  return Parse(text, source, std::numeric_limits<size_t>::max());
}

StatusOr<Value> Parse(std::string_view text, std::string_view source, size_t max_values) {
  // The document is built in memory: a large one can fail to allocate (a memory limit, a
  // hostile input). That is the caller's error to report, never an exception.
  try {
    Parser parser(text, source, max_values);
    return parser.ParseDocument();
  } catch (const std::bad_alloc&) {
  } catch (const std::length_error&) {
  }
  return ResourceExhaustedError(std::string(source) + ": out of memory while parsing " +
                                std::to_string(text.size()) + " bytes of JSON");
}

}  // namespace gemma4::json
