// Tests of the strict JSON parser (src/base/json.h): every value type, escapes, UTF-8
// validation, number forms, error positions, depth limit and serialization round trips.
#include "base/json.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <string>

// Allocation failure on demand: while g_allocation_budget is non-negative, every operator new
// in this thread draws its size from it; the first one that does not fit throws std::bad_alloc
// (once: what the unwinding frees is available again, as under a real memory limit).
namespace {
thread_local long long g_allocation_budget = -1;

void* Allocate(std::size_t size) {
  if (g_allocation_budget >= 0) {
    if (static_cast<long long>(size) > g_allocation_budget) {
      g_allocation_budget = -1;
      throw std::bad_alloc();
    }
    g_allocation_budget -= static_cast<long long>(size);
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t size) { return Allocate(size); }
void* operator new[](std::size_t size) { return Allocate(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace gemma4::json {
namespace {

Value ParseOk(std::string_view text) {
  StatusOr<Value> v = Parse(text, "test.json");
  EXPECT_TRUE(v.ok()) << "input: " << text << "\nstatus: " << v.status().ToString();
  return v.ok() ? std::move(v).value() : Value();
}

// Parses `text`, expecting failure; returns the message.
std::string ParseError(std::string_view text) {
  StatusOr<Value> v = Parse(text, "test.json");
  EXPECT_FALSE(v.ok()) << "unexpectedly parsed: " << text;
  if (v.ok()) return "";
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument) << v.status().ToString();
  EXPECT_NE(v.status().message().find("test.json: line "), std::string::npos)
      << v.status().message();
  return v.status().message();
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(JsonTest, Literals) {
  EXPECT_TRUE(ParseOk("null").is_null());
  Value t = ParseOk("true");
  ASSERT_TRUE(t.is_bool());
  EXPECT_TRUE(t.as_bool());
  Value f = ParseOk("false");
  ASSERT_TRUE(f.is_bool());
  EXPECT_FALSE(f.as_bool());
  EXPECT_TRUE(ParseOk(" \t\r\n null \n").is_null());
}

TEST(JsonTest, AllValueTypes) {
  Value v = ParseOk(R"({"n": null, "b": true, "i": 42, "d": 2.5, "s": "hi", "a": [1, "x"],
                       "o": {"k": false}})");
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v.type(), Value::Type::kObject);
  ASSERT_EQ(v.as_object().size(), 7u);
  EXPECT_EQ(v.Find("n")->type(), Value::Type::kNull);
  EXPECT_EQ(v.Find("b")->type(), Value::Type::kBool);
  EXPECT_EQ(v.Find("i")->type(), Value::Type::kNumber);
  EXPECT_EQ(v.Find("d")->type(), Value::Type::kNumber);
  EXPECT_EQ(v.Find("s")->type(), Value::Type::kString);
  EXPECT_EQ(v.Find("a")->type(), Value::Type::kArray);
  EXPECT_EQ(v.Find("o")->type(), Value::Type::kObject);
  EXPECT_DOUBLE_EQ(v.Find("d")->as_number(), 2.5);
  EXPECT_EQ(v.Find("s")->as_string(), "hi");
  ASSERT_EQ(v.Find("a")->as_array().size(), 2u);
  EXPECT_EQ(v.Find("a")->as_array()[1].as_string(), "x");
  EXPECT_FALSE(v.Find("o")->Find("k")->as_bool());
  EXPECT_EQ(v.Find("missing"), nullptr);
  // Insertion order is kept.
  EXPECT_EQ(v.as_object()[0].first, "n");
  EXPECT_EQ(v.as_object()[6].first, "o");
}

TEST(JsonTest, WrongTypeAccessorsAreNeutral) {
  Value v = ParseOk("[1]");
  EXPECT_FALSE(v.as_bool());
  EXPECT_EQ(v.as_number(), 0.0);
  EXPECT_EQ(v.as_string(), "");
  EXPECT_TRUE(v.as_object().empty());
  EXPECT_EQ(v.Find("x"), nullptr);
  int64_t i = 7;
  EXPECT_FALSE(ParseOk("\"5\"").GetInt64(&i));
  EXPECT_EQ(i, 7);
  EXPECT_TRUE(ParseOk("{}").as_array().empty());
}

TEST(JsonTest, EmptyContainers) {
  EXPECT_TRUE(ParseOk("[]").as_array().empty());
  EXPECT_TRUE(ParseOk("{}").as_object().empty());
  EXPECT_TRUE(ParseOk("[ ]").as_array().empty());
  EXPECT_TRUE(ParseOk("{ \n }").as_object().empty());
  EXPECT_TRUE(ParseOk("[[], {}]").is_array());
}

TEST(JsonTest, Nesting) {
  Value v = ParseOk(R"({"a": [{"b": [[1, 2], {"c": {"d": [true]}}]}]})");
  const Value* d = v.Find("a")->as_array()[0].Find("b")->as_array()[1].Find("c")->Find("d");
  ASSERT_NE(d, nullptr);
  ASSERT_EQ(d->as_array().size(), 1u);
  EXPECT_TRUE(d->as_array()[0].as_bool());
  int64_t i = 0;
  ASSERT_TRUE(v.Find("a")->as_array()[0].Find("b")->as_array()[0].as_array()[1].GetInt64(&i));
  EXPECT_EQ(i, 2);
}

TEST(JsonTest, StringEscapes) {
  EXPECT_EQ(ParseOk(R"("a\"b\\c\/d\be\ff\ng\rh\ti")").as_string(), "a\"b\\c/d\be\ff\ng\rh\ti");
  EXPECT_EQ(ParseOk(R"("\u0041\u00e9\u20AC")").as_string(), "A\xC3\xA9\xE2\x82\xAC");
  EXPECT_EQ(ParseOk(R"("\u0000")").as_string(), std::string(1, '\0'));
  // Raw multi-byte UTF-8 is copied through.
  EXPECT_EQ(ParseOk("\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"").as_string(),
            "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
}

TEST(JsonTest, SurrogatePairs) {
  // U+1F600 GRINNING FACE = D83D DE00.
  EXPECT_EQ(ParseOk(R"("\uD83D\uDE00")").as_string(), "\xF0\x9F\x98\x80");
  // U+10000 and U+10FFFF, the extremes.
  EXPECT_EQ(ParseOk(R"("\ud800\udc00")").as_string(), "\xF0\x90\x80\x80");
  EXPECT_EQ(ParseOk(R"("\uDBFF\uDFFF")").as_string(), "\xF4\x8F\xBF\xBF");

  EXPECT_TRUE(Contains(ParseError(R"("\uD83D")"), "unpaired high surrogate"));
  EXPECT_TRUE(Contains(ParseError(R"("\uD83Dx")"), "unpaired high surrogate"));
  EXPECT_TRUE(Contains(ParseError(R"("\uD83D\n")"), "unpaired high surrogate"));
  EXPECT_TRUE(Contains(ParseError(R"("\uD83D\u0041")"), "invalid low surrogate"));
  EXPECT_TRUE(Contains(ParseError(R"("\uD83D\uD83D")"), "invalid low surrogate"));
  EXPECT_TRUE(Contains(ParseError(R"("\uDE00")"), "unpaired low surrogate"));
  EXPECT_TRUE(Contains(ParseError(R"("\uDE00\uD83D")"), "unpaired low surrogate"));
}

TEST(JsonTest, BadEscapes) {
  EXPECT_TRUE(Contains(ParseError(R"("\x41")"), "invalid escape '\\x'"));
  EXPECT_TRUE(Contains(ParseError(R"("\u12G4")"), "invalid hex digit"));
  EXPECT_TRUE(Contains(ParseError(R"("\u12)"), "truncated \\u escape"));
  EXPECT_TRUE(Contains(ParseError("\"\\"), "unterminated escape"));
  EXPECT_TRUE(Contains(ParseError("\"abc"), "unterminated string"));
  EXPECT_TRUE(Contains(ParseError("\""), "unterminated string"));
}

TEST(JsonTest, InvalidUtf8) {
  const char* bad[] = {
      "\"\x80\"",                  // lone continuation byte
      "\"\xBF\"",                  // lone continuation byte
      "\"\xC3\"",                  // truncated 2-byte sequence before the quote
      "\"\xE2\x82\"",              // truncated 3-byte sequence
      "\"\xC3(\"",                 // bad continuation
      "\"\xC0\x80\"",              // overlong NUL
      "\"\xC1\xBF\"",              // overlong
      "\"\xE0\x80\xAF\"",          // overlong '/'
      "\"\xF0\x80\x80\xAF\"",      // overlong '/'
      "\"\xED\xA0\x80\"",          // UTF-16 surrogate D800 encoded in UTF-8
      "\"\xED\xBF\xBF\"",          // surrogate DFFF
      "\"\xF4\x90\x80\x80\"",      // U+110000, beyond Unicode
      "\"\xF8\x88\x80\x80\x80\"",  // 5-byte form
      "\"\xFF\"",
      "\"\xFE\"",
  };
  for (const char* s : bad) {
    const std::string msg = ParseError(s);
    EXPECT_TRUE(Contains(msg, "UTF-8")) << "input bytes: " << s << " message: " << msg;
  }
  // A sequence cut off by the end of the input.
  EXPECT_TRUE(Contains(ParseError(std::string_view("\"\xE2\x82", 3)), "truncated UTF-8"));
  // Invalid UTF-8 outside of strings is just an unexpected character.
  EXPECT_TRUE(Contains(ParseError("\xC3\xA9"), "unexpected character '\\xc3'"));
  // Valid boundary cases.
  EXPECT_EQ(ParseOk("\"\x7F\"").as_string(), "\x7F");
  EXPECT_EQ(ParseOk("\"\xC2\x80\"").as_string(), "\xC2\x80");
  EXPECT_EQ(ParseOk("\"\xEF\xBF\xBF\"").as_string(), "\xEF\xBF\xBF");
  EXPECT_EQ(ParseOk("\"\xF4\x8F\xBF\xBF\"").as_string(), "\xF4\x8F\xBF\xBF");
}

TEST(JsonTest, ControlCharacters) {
  for (int c = 0; c < 0x20; ++c) {
    std::string text = "\"a";
    text.push_back(static_cast<char>(c));
    text += "b\"";
    EXPECT_TRUE(Contains(ParseError(text), "control character in string")) << "char " << c;
  }
  // Outside strings, only the four JSON whitespace characters are allowed.
  EXPECT_TRUE(Contains(ParseError(std::string("[1,\x01 2]")), "unexpected character '\\x01'"));
  EXPECT_TRUE(Contains(ParseError(std::string("\f1")), "unexpected character '\\x0c'"));
  EXPECT_TRUE(Contains(ParseError(std::string("\0", 1)), "unexpected character '\\x00'"));
}

TEST(JsonTest, DuplicateKeys) {
  const std::string msg = ParseError(R"({"a": 1, "b": 2, "a": 3})");
  EXPECT_TRUE(Contains(msg, "duplicate object key \"a\"")) << msg;
  // Same key in different objects is fine.
  EXPECT_TRUE(ParseOk(R"({"a": {"a": 1}, "b": {"a": 2}})").is_object());
  // Keys that differ only after an escape are distinct; equal after unescaping are not.
  EXPECT_TRUE(Contains(ParseError(R"({"a": 1, "\u0061": 2})"), "duplicate object key"));
}

TEST(JsonTest, TrailingGarbage) {
  EXPECT_TRUE(Contains(ParseError("{} x"), "unexpected trailing characters"));
  EXPECT_TRUE(Contains(ParseError("1 2"), "unexpected trailing characters"));
  EXPECT_TRUE(Contains(ParseError("[1]]"), "unexpected trailing characters"));
  EXPECT_TRUE(Contains(ParseError("nullnull"), "unexpected trailing characters"));
  EXPECT_TRUE(Contains(ParseError(std::string("{}\0", 3)), "unexpected trailing characters"));
  EXPECT_TRUE(Contains(ParseError("truex"), "unexpected trailing characters"));
}

TEST(JsonTest, StructuralErrors) {
  EXPECT_TRUE(Contains(ParseError(""), "unexpected end of input, expected a value"));
  EXPECT_TRUE(Contains(ParseError("   "), "unexpected end of input"));
  EXPECT_TRUE(Contains(ParseError("["), "unexpected end of input"));
  EXPECT_TRUE(Contains(ParseError("[1"), "unexpected end of input inside an array"));
  EXPECT_TRUE(Contains(ParseError("[1,"), "unexpected end of input"));
  EXPECT_TRUE(Contains(ParseError("[1,]"), "unexpected character ']'"));
  EXPECT_TRUE(Contains(ParseError("[1 2]"), "expected ',' or ']'"));
  EXPECT_TRUE(Contains(ParseError("{"), "expected a string object key"));
  EXPECT_TRUE(Contains(ParseError("{\"a\""), "expected ':' after object key"));
  EXPECT_TRUE(Contains(ParseError("{\"a\" 1}"), "expected ':' after object key"));
  EXPECT_TRUE(Contains(ParseError("{\"a\":"), "unexpected end of input"));
  EXPECT_TRUE(Contains(ParseError("{\"a\":1"), "unexpected end of input inside an object"));
  EXPECT_TRUE(Contains(ParseError("{\"a\":1,}"), "expected a string object key"));
  EXPECT_TRUE(Contains(ParseError("{\"a\":1 \"b\":2}"), "expected ',' or '}'"));
  EXPECT_TRUE(Contains(ParseError("{a:1}"), "expected a string object key"));
  EXPECT_TRUE(Contains(ParseError("{1:1}"), "expected a string object key"));
  EXPECT_TRUE(Contains(ParseError("[1}"), "expected ',' or ']'"));
  EXPECT_TRUE(Contains(ParseError("{\"a\":1]"), "expected ',' or '}'"));
  EXPECT_TRUE(Contains(ParseError("tru"), "unexpected character 't'"));
  EXPECT_TRUE(Contains(ParseError("nul"), "unexpected character 'n'"));
  EXPECT_TRUE(Contains(ParseError("True"), "unexpected character 'T'"));
  EXPECT_TRUE(Contains(ParseError("'a'"), "unexpected character '''"));
  EXPECT_TRUE(Contains(ParseError("NaN"), "unexpected character 'N'"));
  EXPECT_TRUE(Contains(ParseError("Infinity"), "unexpected character 'I'"));
  EXPECT_TRUE(Contains(ParseError("/* c */ 1"), "unexpected character '/'"));
}

TEST(JsonTest, ErrorMessagesNameLineAndColumn) {
  StatusOr<Value> v = Parse("{\n  \"a\": 1,\n  \"b\" 2\n}", "config.json");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().message(), "config.json: line 3, column 7: expected ':' after object key");

  v = Parse("[1,\n2,\n\n   x]", "weights header");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().message(),
            "weights header: line 4, column 4: unexpected character 'x', expected a value");

  // The default source name.
  v = Parse("?");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().message(),
            "json: line 1, column 1: unexpected character '?', "
            "expected a value");
  EXPECT_EQ(v.status().ToString().rfind("INVALID_ARGUMENT: ", 0), 0u) << v.status().ToString();
}

TEST(JsonTest, IntegerNumbers) {
  int64_t i = -1;
  ASSERT_TRUE(ParseOk("0").GetInt64(&i));
  EXPECT_EQ(i, 0);
  ASSERT_TRUE(ParseOk("123").GetInt64(&i));
  EXPECT_EQ(i, 123);
  ASSERT_TRUE(ParseOk("-45").GetInt64(&i));
  EXPECT_EQ(i, -45);
  // -0 is a number equal to zero.
  Value neg_zero = ParseOk("-0");
  ASSERT_TRUE(neg_zero.is_number());
  ASSERT_TRUE(neg_zero.GetInt64(&i));
  EXPECT_EQ(i, 0);
  EXPECT_EQ(neg_zero.as_number(), 0.0);
  Value neg_zero_f = ParseOk("-0.0");
  ASSERT_TRUE(neg_zero_f.GetInt64(&i));
  EXPECT_EQ(i, 0);
  EXPECT_TRUE(std::signbit(neg_zero_f.as_number()));
}

TEST(JsonTest, Int64Limits) {
  int64_t i = 0;
  ASSERT_TRUE(ParseOk("9223372036854775807").GetInt64(&i));
  EXPECT_EQ(i, std::numeric_limits<int64_t>::max());
  ASSERT_TRUE(ParseOk("-9223372036854775808").GetInt64(&i));
  EXPECT_EQ(i, std::numeric_limits<int64_t>::min());
  // Exact integers with full precision (beyond 2^53) are kept exactly.
  ASSERT_TRUE(ParseOk("9007199254740993").GetInt64(&i));
  EXPECT_EQ(i, int64_t{9007199254740993});

  // One past the limits: still a number, but not an int64.
  i = 5;
  Value big = ParseOk("9223372036854775808");
  ASSERT_TRUE(big.is_number());
  EXPECT_FALSE(big.GetInt64(&i));
  EXPECT_EQ(i, 5);
  EXPECT_DOUBLE_EQ(big.as_number(), 9223372036854775808.0);
  EXPECT_FALSE(ParseOk("-9223372036854775809").GetInt64(&i));
  EXPECT_FALSE(ParseOk("18446744073709551616").GetInt64(&i));
  EXPECT_FALSE(ParseOk("1e19").GetInt64(&i));
  EXPECT_FALSE(ParseOk("-1e19").GetInt64(&i));
  EXPECT_FALSE(ParseOk("123456789012345678901234567890").GetInt64(&i));
  EXPECT_EQ(i, 5);
}

TEST(JsonTest, FractionsAndExponents) {
  EXPECT_DOUBLE_EQ(ParseOk("1.5").as_number(), 1.5);
  EXPECT_DOUBLE_EQ(ParseOk("-0.25").as_number(), -0.25);
  EXPECT_DOUBLE_EQ(ParseOk("1e3").as_number(), 1000.0);
  EXPECT_DOUBLE_EQ(ParseOk("1E3").as_number(), 1000.0);
  EXPECT_DOUBLE_EQ(ParseOk("1e+3").as_number(), 1000.0);
  EXPECT_DOUBLE_EQ(ParseOk("25e-1").as_number(), 2.5);
  EXPECT_DOUBLE_EQ(ParseOk("-1.5E-2").as_number(), -0.015);
  EXPECT_DOUBLE_EQ(ParseOk("1e-06").as_number(), 1e-6);
  EXPECT_DOUBLE_EQ(ParseOk("0.0").as_number(), 0.0);

  int64_t i = 0;
  // Integral values written with a fraction or exponent still convert.
  ASSERT_TRUE(ParseOk("1e3").GetInt64(&i));
  EXPECT_EQ(i, 1000);
  ASSERT_TRUE(ParseOk("2.0").GetInt64(&i));
  EXPECT_EQ(i, 2);
  ASSERT_TRUE(ParseOk("-4.0e1").GetInt64(&i));
  EXPECT_EQ(i, -40);
  EXPECT_FALSE(ParseOk("250e-2").GetInt64(&i));
  EXPECT_FALSE(ParseOk("1.5").GetInt64(&i));
  EXPECT_FALSE(ParseOk("1e-3").GetInt64(&i));

  // Overflowing exponents become infinite, which is not an integer and serializes as null.
  Value huge = ParseOk("1e400");
  ASSERT_TRUE(huge.is_number());
  EXPECT_TRUE(std::isinf(huge.as_number()));
  EXPECT_FALSE(huge.GetInt64(&i));
  EXPECT_EQ(huge.Serialize(), "null");
  EXPECT_EQ(ParseOk("1e-400").as_number(), 0.0);
}

TEST(JsonTest, InvalidNumbers) {
  EXPECT_TRUE(Contains(ParseError("-"), "truncated number"));
  EXPECT_TRUE(Contains(ParseError("-a"), "invalid number"));
  EXPECT_TRUE(Contains(ParseError("- 1"), "invalid number"));
  EXPECT_TRUE(Contains(ParseError("01"), "unexpected trailing characters"));
  EXPECT_TRUE(Contains(ParseError("-01"), "unexpected trailing characters"));
  EXPECT_TRUE(Contains(ParseError("1."), "expected digits after the decimal point"));
  EXPECT_TRUE(Contains(ParseError("1.e5"), "expected digits after the decimal point"));
  EXPECT_TRUE(Contains(ParseError("1e"), "expected digits in the exponent"));
  EXPECT_TRUE(Contains(ParseError("1e+"), "expected digits in the exponent"));
  EXPECT_TRUE(Contains(ParseError("1E-x"), "expected digits in the exponent"));
  EXPECT_TRUE(Contains(ParseError("+1"), "unexpected character '+'"));
  EXPECT_TRUE(Contains(ParseError(".5"), "unexpected character '.'"));
  EXPECT_TRUE(Contains(ParseError("0x10"), "unexpected trailing characters"));
  EXPECT_TRUE(Contains(ParseError("[1.5.5]"), "expected ',' or ']'"));
}

std::string Nested(int depth, std::string_view inner = "") {
  return std::string(depth, '[') + std::string(inner) + std::string(depth, ']');
}

TEST(JsonTest, DepthLimit) {
  // 200 and exactly 256 levels are fine.
  Value v = ParseOk(Nested(200));
  int levels = 0;
  const Value* p = &v;
  while (p->is_array()) {
    ++levels;
    if (p->as_array().empty()) break;
    p = &p->as_array()[0];
  }
  EXPECT_EQ(levels, 200);
  EXPECT_TRUE(ParseOk(Nested(256)).is_array());
  EXPECT_TRUE(ParseOk(Nested(256, "1")).is_array());
  EXPECT_TRUE(ParseOk(Nested(256, "\"s\"")).is_array());

  // 257 levels fail with a clear message, whatever the innermost container.
  std::string msg = ParseError(Nested(257));
  EXPECT_TRUE(Contains(msg, "nesting deeper than 256 levels")) << msg;
  EXPECT_TRUE(Contains(msg, "column 257")) << msg;
  EXPECT_TRUE(Contains(ParseError(Nested(256, "{}")), "nesting deeper than 256 levels"));
  EXPECT_TRUE(Contains(ParseError(Nested(100000)), "nesting deeper than 256 levels"));

  // Objects count too.
  std::string objects;
  for (int i = 0; i < 257; ++i) objects += "{\"k\":";
  objects += "0";
  for (int i = 0; i < 257; ++i) objects += "}";
  EXPECT_TRUE(Contains(ParseError(objects), "nesting deeper than 256 levels"));
  std::string ok_objects;
  for (int i = 0; i < 256; ++i) ok_objects += "{\"k\":";
  ok_objects += "0";
  for (int i = 0; i < 256; ++i) ok_objects += "}";
  EXPECT_TRUE(ParseOk(ok_objects).is_object());
  // Deep but unterminated input fails without recursion trouble.
  EXPECT_FALSE(Parse(std::string(1 << 20, '[')).ok());
}

TEST(JsonTest, SerializeForms) {
  EXPECT_EQ(Value().Serialize(), "null");
  EXPECT_EQ(Value::Bool(true).Serialize(), "true");
  EXPECT_EQ(Value::Integer(-7).Serialize(), "-7");
  EXPECT_EQ(Value::Integer(std::numeric_limits<int64_t>::min()).Serialize(),
            "-9223372036854775808");
  EXPECT_EQ(Value::Number(0.5).Serialize(), "0.5");
  EXPECT_EQ(Value::Number(std::nan("")).Serialize(), "null");
  EXPECT_EQ(Value::String("a\"\\\n\r\t\b\f\x01\x1f/\xC3\xA9").Serialize(),
            "\"a\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f/\xC3\xA9\"");
  EXPECT_EQ(Value::MakeArray().Serialize(), "[]");
  EXPECT_EQ(Value::MakeObject().Serialize(), "{}");
  Value::Object members;
  members.emplace_back("z", Value::Integer(1));
  members.emplace_back("a", Value::MakeArray({Value(), Value::Bool(false)}));
  EXPECT_EQ(Value::MakeObject(std::move(members)).Serialize(), "{\"z\":1,\"a\":[null,false]}");
  std::string quoted;
  AppendQuoted("x\"y", &quoted);
  EXPECT_EQ(quoted, "\"x\\\"y\"");
}

TEST(JsonTest, SerializeRoundTrip) {
  const char* docs[] = {
      "null",
      "[true,false,null]",
      R"({"b":1,"a":[1,2.5,-3,1e+300,"x"],"c":{"d":{}},"e":[]})",
      R"(["\u0000\u001f\"\\\/\b\f\n\r\t","\uD83D\uDE00","é€"])",
      "[0.1,0.2,0.30000000000000004,5e-324,1.7976931348623157e308,-2.2250738585072014e-308]",
      "[9223372036854775807,-9223372036854775808,9223372036854775808]",
      R"({"model_type":"gemma4_text","layer_types":["sliding_attention","full_attention"],
         "rope_parameters":{"full_attention":{"rope_theta":1000000.0}},"rms_norm_eps":1e-06})",
  };
  for (const char* doc : docs) {
    Value v = ParseOk(doc);
    const std::string s1 = v.Serialize();
    Value v2 = ParseOk(s1);
    const std::string s2 = v2.Serialize();
    EXPECT_EQ(s1, s2) << doc;
  }
  // Doubles survive bit-exactly.
  Value v = ParseOk("[0.1, 1e-06, 3.141592653589793, 1e+300, 5e-324]");
  Value back = ParseOk(v.Serialize());
  ASSERT_EQ(back.as_array().size(), 5u);
  for (size_t k = 0; k < 5; ++k) {
    EXPECT_EQ(back.as_array()[k].as_number(), v.as_array()[k].as_number()) << k;
  }
  // Integers keep their integer form.
  EXPECT_EQ(ParseOk("[1, -0, 10]").Serialize(), "[1,0,10]");
  EXPECT_EQ(ParseOk(" { \"a\" : [ 1 , 2 ] } ").Serialize(), "{\"a\":[1,2]}");
}

TEST(JsonTest, MutableAccess) {
  Value v = ParseOk(R"({"a": [1]})");
  v.mutable_object().emplace_back("b", Value::String("x"));
  v.mutable_object()[0].second.mutable_array().push_back(Value::Integer(2));
  EXPECT_EQ(v.Serialize(), R"({"a":[1,2],"b":"x"})");
}

TEST(JsonTest, DepthLimitIsTheDocumentedConstant) {
  EXPECT_EQ(kMaxDepth, 256);
  std::string ok(kMaxDepth, '['), too_deep(kMaxDepth + 1, '[');
  ok += std::string(kMaxDepth, ']');
  too_deep += std::string(kMaxDepth + 1, ']');
  EXPECT_TRUE(Parse(ok).ok());
  EXPECT_FALSE(Parse(too_deep).ok());
}

// Running out of memory while building the document is a ResourceExhausted status (it was a
// std::bad_alloc that aborted the CLI).
TEST(JsonTest, OutOfMemoryIsAStatus) {
  std::string big = "[";
  for (int i = 0; i < 100000; ++i)
    big += (i ? ",\"" : "\"") + std::to_string(i) + "xxxxxxxxxxxxxxxxxxxx\"";
  big += "]";
  for (long long budget : {0LL, 100LL, 4096LL, 1LL << 20}) {
    g_allocation_budget = budget;
    StatusOr<Value> v = Parse(big, "big.json");
    g_allocation_budget = -1;
    ASSERT_FALSE(v.ok()) << "budget " << budget;
    EXPECT_EQ(v.status().code(), StatusCode::kResourceExhausted) << v.status().ToString();
    EXPECT_TRUE(Contains(v.status().message(), "big.json: out of memory while parsing"))
        << v.status().message();
  }
  // With memory to spare the same document parses.
  StatusOr<Value> v = Parse(big, "big.json");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->as_array().size(), 100000u);
}

// A value holds only its own alternative (it held all of them: 104 bytes each).
TEST(JsonTest, ValuesAreSmall) {
  EXPECT_LE(sizeof(Value), 48u);
  Value v = Value::Integer(7);
  EXPECT_TRUE(v.is_integer());
  v = Value::String("s");
  EXPECT_FALSE(v.is_number());
  EXPECT_EQ(v.as_number(), 0.0);
  EXPECT_TRUE(v.mutable_array().empty());  // becomes an empty array
  EXPECT_TRUE(v.is_array());
}

}  // namespace
}  // namespace gemma4::json
