// A small, strict JSON (RFC 8259) DOM parser for outside data: config.json, safetensors headers,
// tokenizer files, tool-call arguments. Errors name the source, line and column. Nesting depth
// is bounded (kMaxDepth) so hostile input cannot exhaust the stack, parsing is linear in the
// input, and running out of memory while parsing is a ResourceExhausted status, not an
// exception.
#ifndef GEMMA4_SRC_BASE_JSON_H_
#define GEMMA4_SRC_BASE_JSON_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "gemma4/status.h"

namespace gemma4::json {

// Arrays and objects nested deeper than this are refused ("nesting deeper than 256 levels").
inline constexpr int kMaxDepth = 256;

// One JSON value. It holds only its own alternative (a std::variant: 40 bytes on 64-bit
// targets, where a struct of every alternative took 104).
class Value {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  using Array = std::vector<Value>;
  using Object = std::vector<std::pair<std::string, Value>>;  // insertion order, unique keys

  Value() = default;  // null
  static Value Bool(bool b);
  static Value Number(double d);
  static Value Integer(int64_t i);
  static Value String(std::string s);
  static Value MakeArray(Array a = {});
  static Value MakeObject(Object o = {});

  Type type() const { return static_cast<Type>(data_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_number() const { return type() == Type::kNumber; }
  // A number written as an integer literal (or made by Integer()); others are doubles.
  bool is_integer() const { return is_number() && std::get<NumberData>(data_).is_integer; }
  bool is_string() const { return type() == Type::kString; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_object() const { return type() == Type::kObject; }

  // Accessors return a neutral value (false, 0, empty) for the wrong type.
  bool as_bool() const { return is_bool() && std::get<bool>(data_); }
  double as_number() const { return is_number() ? std::get<NumberData>(data_).value : 0.0; }
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;
  // The array / object itself; a value of another type becomes an empty one first.
  Array& mutable_array();
  Object& mutable_object();

  // True when this is a number with an exact integer value that fits in int64 (written
  // without fraction or exponent, or an exponent form that is still integral).
  bool GetInt64(int64_t* out) const;

  // Object member lookup; nullptr if absent or this is not an object.
  const Value* Find(std::string_view key) const;

  // Compact serialization (keys in stored order); numbers keep their integer form.
  std::string Serialize() const;

 private:
  struct NumberData {
    double value = 0.0;
    int64_t integer = 0;  // exact value when is_integer
    bool is_integer = false;
  };
  // Alternatives in the order of Type.
  std::variant<std::monostate, bool, NumberData, std::string, Array, Object> data_;
};

// Parses a complete JSON document (surrounding whitespace allowed). `source` names the input
// in error messages, e.g. "config.json: line 3, column 14: expected ':' after object key".
StatusOr<Value> Parse(std::string_view text, std::string_view source = "json");
// The same with at most `max_values` values in the document (every scalar, array and object
// counts one): formats whose legitimate documents are small for their size bound the memory
// a hostile one can cost (a value takes 40 bytes for as little as 2 bytes of text).
StatusOr<Value> Parse(std::string_view text, std::string_view source, size_t max_values);

// Appends the JSON string literal for `s` (quoted and escaped) to `out`.
void AppendQuoted(std::string_view s, std::string* out);

}  // namespace gemma4::json

#endif  // GEMMA4_SRC_BASE_JSON_H_
