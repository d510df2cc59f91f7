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

// One JSON value in 16 bytes (on 64-bit targets): a tag and either the scalar itself (bool,
// double, int64) or a pointer to the string, array or object, which live out of line. A struct
// of every alternative took 104 bytes per value and a std::variant of them 40; arrays and
// objects of small values (a tokenizer's vocabulary, a safetensors header) are mostly scalars.
class Value {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  using Array = std::vector<Value>;
  using Object = std::vector<std::pair<std::string, Value>>;  // insertion order, unique keys

  Value() = default;  // null
  Value(const Value&) = default;
  Value& operator=(const Value&) = default;
  // A moved-from value is null.
  Value(Value&& other) noexcept : data_(std::move(other.data_)) { other.data_ = std::monostate(); }
  Value& operator=(Value&& other) noexcept {
    if (this != &other) {
      data_ = std::move(other.data_);
      other.data_ = std::monostate();
    }
    return *this;
  }
  ~Value() = default;

  static Value Bool(bool b);
  static Value Number(double d);
  static Value Integer(int64_t i);
  static Value String(std::string s);
  static Value MakeArray(Array a = {});
  static Value MakeObject(Object o = {});

  Type type() const;
  bool is_null() const { return type() == Type::kNull; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_number() const { return type() == Type::kNumber; }
  // A number written as an integer literal (or made by Integer()); others are doubles.
  bool is_integer() const { return std::holds_alternative<int64_t>(data_); }
  bool is_string() const { return type() == Type::kString; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_object() const { return type() == Type::kObject; }

  // Accessors return a neutral value (false, 0, empty) for the wrong type.
  bool as_bool() const { return is_bool() && std::get<bool>(data_); }
  double as_number() const;
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
  // An owning pointer that copies what it points to; never null except after a move (and a
  // Value resets itself to null when moved from, so no Value holds an empty one).
  template <typename T>
  class Boxed {
   public:
    explicit Boxed(T v) : p_(new T(std::move(v))) {}
    Boxed(const Boxed& other) : p_(new T(*other.p_)) {}
    Boxed(Boxed&& other) noexcept : p_(std::exchange(other.p_, nullptr)) {}
    Boxed& operator=(const Boxed& other) {
      if (this != &other) {
        T* copy = new T(*other.p_);
        delete p_;
        p_ = copy;
      }
      return *this;
    }
    Boxed& operator=(Boxed&& other) noexcept {
      std::swap(p_, other.p_);
      return *this;
    }
    ~Boxed() { delete p_; }
    T& get() const { return *p_; }

   private:
    T* p_;
  };
  // kNumber is a double or, for integer literals, the exact int64.
  std::variant<std::monostate, bool, double, int64_t, Boxed<std::string>, Boxed<Array>,
               Boxed<Object>>
      data_;
};

// Parses a complete JSON document (surrounding whitespace allowed). `source` names the input
// in error messages, e.g. "config.json: line 3, column 14: expected ':' after object key".
StatusOr<Value> Parse(std::string_view text, std::string_view source = "json");
// The same with at most `max_values` values in the document (every scalar, array and object
// counts one): formats whose legitimate documents are small for their size bound the memory
// a hostile one can cost (a value takes 16 bytes, a string 48 or more, for as little as 2
// bytes of text).
StatusOr<Value> Parse(std::string_view text, std::string_view source, size_t max_values);

// Appends the JSON string literal for `s` (quoted and escaped) to `out`.
void AppendQuoted(std::string_view s, std::string* out);

}  // namespace gemma4::json

#endif  // GEMMA4_SRC_BASE_JSON_H_
