// JSON Schema keywords in the grammar compiler: for each keyword, documents that must be
// accepted and ones that must be rejected (fed byte by byte, as the sampler does), the exact
// boundaries (so an off-by-one in a limit fails here), and the refusal of everything outside
// the supported set with the keyword's JSON-pointer path.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "chat/tool_syntax.h"
#include "decode/grammar.h"
#include "gemma4/tools.h"

namespace gemma4::chat {
namespace {

json::Value J(const std::string& text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v.ok()) << text;
  return v.ok() ? *v : json::Value();
}

std::shared_ptr<const Grammar> Compile(const std::string& schema) {
  auto g = CompileJsonSchemaGrammar(J(schema));
  EXPECT_TRUE(g.ok()) << schema << ": " << g.status().message();
  return g.ok() ? *g : nullptr;
}

// Byte by byte: every prefix accepted and the end reachable. Also checks that feeding the whole
// text at once agrees.
bool Matches(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  if (g == nullptr) return false;
  GrammarMatcher bytewise(g), whole(g);
  bool ok = true;
  for (char c : text) {
    if (!bytewise.Accept(std::string(1, c))) {
      ok = false;
      break;
    }
  }
  ok = ok && bytewise.CanEnd();
  const bool whole_ok = whole.Accept(text) && whole.CanEnd();
  EXPECT_EQ(ok, whole_ok) << text;
  return ok;
}

void ExpectAccepts(const std::string& schema, const std::vector<std::string>& good,
                   const std::vector<std::string>& bad) {
  auto g = Compile(schema);
  ASSERT_NE(g, nullptr);
  for (const std::string& s : good) EXPECT_TRUE(Matches(g, s)) << schema << " should accept " << s;
  for (const std::string& s : bad) EXPECT_FALSE(Matches(g, s)) << schema << " should reject " << s;
}

void ExpectRefused(const std::string& schema, const std::vector<std::string>& fragments) {
  auto g = CompileJsonSchemaGrammar(J(schema));
  ASSERT_FALSE(g.ok()) << schema << " should be refused";
  for (const std::string& f : fragments) {
    EXPECT_NE(g.status().message().find(f), std::string::npos)
        << "'" << g.status().message() << "' should mention " << f;
  }
}

TEST(GrammarKeywordsTest, TypesAndTypeLists) {
  ExpectAccepts(R"({"type": ["string", "null"]})", {R"("a")", "null"}, {"1", "true", "{}"});
  ExpectAccepts(R"({"type": "boolean"})", {"true", "false"}, {"null", "1", "tru"});
  ExpectAccepts(R"({"type": "integer"})", {"0", "-7", "123456789012345678"},
                {"1.0", "1e3", "01", "-", "1234567890123456789"});
  ExpectAccepts(R"({"type": "number"})", {"0", "-7.25", "1e3", "2.5E-7"}, {".5", "1.", "+1"});
}

TEST(GrammarKeywordsTest, EnumAndConst) {
  ExpectAccepts(R"({"enum": ["a", 1, true, null, {"x": [1]}]})",
                {R"("a")", "1", "true", "null", R"({"x":[1]})"}, {R"("b")", "2", "false"});
  ExpectAccepts(R"({"const": "fixed"})", {R"("fixed")"}, {R"("fixe")", R"("fixedd")"});
  // Sibling keywords still apply to the listed values.
  ExpectAccepts(R"({"type": "string", "enum": ["a", 3, "toolong"], "maxLength": 3})", {R"("a")"},
                {"3", R"("toolong")"});
  ExpectRefused(R"({"type": "integer", "enum": ["a", "b"]})", {"/enum", "no listed value"});
}

TEST(GrammarKeywordsTest, EnumOver65535Values) {
  std::string schema = R"({"enum": [)";
  for (int i = 0; i < 70000; ++i) schema += (i ? "," : "") + std::to_string(i);
  schema += "]}";
  ExpectAccepts(schema, {"0", "65535", "65536", "69999"}, {"70000", "100000", "-1"});
}

TEST(GrammarKeywordsTest, AnyOfOver64Branches) {
  std::string schema = R"({"anyOf": [)";
  for (int i = 0; i < 100; ++i) {
    schema +=
        std::string(i ? "," : "") + R"({"type": "object", "properties": {"id": {"const": )" +
        std::to_string(i) +
        R"(}, "tag": {"type": "string"}}, "required": ["id"], "additionalProperties": false})";
  }
  schema += "]}";
  ExpectAccepts(schema, {R"({"id":0})", R"({"tag":"x","id":99})", R"({"id":64,"tag":"y"})"},
                {R"({"id":100})", R"({"tag":"x"})"});
}

TEST(GrammarKeywordsTest, StringLengthsBeyond16Bits) {
  auto g = Compile(R"({"type": "string", "minLength": 70000, "maxLength": 70001})");
  ASSERT_NE(g, nullptr);
  EXPECT_FALSE(Matches(g, "\"" + std::string(69999, 'a') + "\""));
  EXPECT_TRUE(Matches(g, "\"" + std::string(70000, 'a') + "\""));
  EXPECT_TRUE(Matches(g, "\"" + std::string(70001, 'a') + "\""));
  EXPECT_FALSE(Matches(g, "\"" + std::string(70002, 'a') + "\""));
}

// \u escapes never name a UTF-16 surrogate: a lone one is no character and json::Parse refuses
// it (found by fuzzing: the grammar completed strings the parser then rejected).
TEST(GrammarKeywordsTest, UnicodeEscapesExcludeSurrogates) {
  ExpectAccepts(R"({"type": "string"})",
                {R"("\u00e9")", R"("\uD7FF")", R"("\uE000")", R"("\uffff")"},
                {R"("\ud800")", R"("\uDBFF")", R"("\uDC00")", R"("\udfff")"});
  ExpectAccepts(R"({})", {R"(["\u0041"])"}, {R"(["\uD83D\uDE00"])"});
}

TEST(GrammarKeywordsTest, StringLengthCountsCharacters) {
  ExpectAccepts(R"({"type": "string", "minLength": 2, "maxLength": 3})",
                {R"("ab")", R"("abc")", R"("日本")", R"("\n\t")", R"("\u00e9x")"},
                {R"("a")", R"("abcd")", R"("日本語x")", R"("")"});
}

TEST(GrammarKeywordsTest, ObjectsPropertiesRequired) {
  const std::string schema = R"({"type": "object", "properties": {"a": {"type": "integer"},
      "b": {"type": "string"}}, "required": ["a"]})";
  ExpectAccepts(schema, {R"({"a":1})", R"({"b":"x","a":2})", R"({ "a" : 1 })"},
                {R"({})", R"({"b":"x"})", R"({"a":1,"a":2})", R"({"a":1,"c":0})", R"({"a":"1"})"});
}

TEST(GrammarKeywordsTest, AdditionalProperties) {
  ExpectAccepts(R"({"type": "object", "properties": {"a": {"type": "integer"}},
                    "additionalProperties": false})",
                {R"({"a":1})", "{}"}, {R"({"a":1,"b":2})"});
  ExpectAccepts(R"({"type": "object", "properties": {"a": {"type": "integer"}},
                    "additionalProperties": true})",
                {R"({"a":1,"b":[true]})", R"({"zz":{"y":null}})"},
                {R"({"a":"x"})", R"({"b":1,"b":2})", R"({"a":1,"a":1})"});
  ExpectAccepts(R"({"type": "object", "additionalProperties": {"type": "boolean"}})",
                {R"({"x":true,"y":false})", "{}"}, {R"({"x":1})", R"({"x":true,"x":false})"});
  // A required key that is not listed takes the additional schema.
  ExpectAccepts(
      R"({"type": "object", "required": ["k"], "additionalProperties": {"type": "null"}})",
      {R"({"k":null})", R"({"j":null,"k":null})"}, {"{}", R"({"j":null})"});
}

TEST(GrammarKeywordsTest, MinMaxProperties) {
  const std::string schema = R"({"type": "object", "properties": {"a": {"type": "null"},
      "b": {"type": "null"}, "c": {"type": "null"}, "d": {"type": "null"}},
      "minProperties": 2, "maxProperties": 3})";
  ExpectAccepts(schema, {R"({"a":null,"b":null})", R"({"a":null,"c":null,"d":null})"},
                {R"({"a":null})", "{}", R"({"a":null,"b":null,"c":null,"d":null})"});
  ExpectRefused(R"({"type": "object", "properties": {"a": {}}, "additionalProperties": false,
                    "minProperties": 2})",
                {"/minProperties"});
}

TEST(GrammarKeywordsTest, ArraysItemsPrefixItemsBounds) {
  ExpectAccepts(R"({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3})",
                {"[1,2]", "[1,2,3]", "[ 1 , 2 ]"}, {"[]", "[1]", "[1,2,3,4]", "[1,\"2\"]"});
  ExpectAccepts(R"({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}],
                    "items": false})",
                {"[]", R"(["a"])", R"(["a",1])"}, {R"([1])", R"(["a",1,2])", R"(["a","b"])"});
  ExpectAccepts(R"({"type": "array", "prefixItems": [{"const": 0}], "items": {"type": "boolean"},
                    "minItems": 2})",
                {"[0,true]", "[0,false,true]"}, {"[0]", "[true,true]", "[0,0]"});
  ExpectAccepts(R"({"type": "array", "maxItems": 100})", {"[" + std::string("1") + "]"}, {});
  std::string hundred = "[";
  for (int i = 0; i < 100; ++i) hundred += (i ? ",0" : "0");
  ExpectAccepts(R"({"type": "array", "items": {"type": "integer"}, "maxItems": 100})",
                {hundred + "]"}, {hundred + ",0]"});
  ExpectRefused(R"({"type": "array", "items": [{"type": "string"}]})", {"/items", "prefixItems"});
}

TEST(GrammarKeywordsTest, IntegerBoundsAreExact) {
  ExpectAccepts(R"({"type": "integer", "minimum": -3, "maximum": 12})",
                {"-3", "-1", "0", "9", "10", "12"}, {"-4", "13", "120", "-30", "100"});
  ExpectAccepts(R"({"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 12})",
                {"-2", "11"}, {"-3", "12"});
  ExpectAccepts(R"({"type": "integer", "minimum": 1000000000000})",
                {"1000000000000", "999999999999999999"}, {"999999999999", "-5", "0"});
  ExpectAccepts(R"({"type": "integer", "minimum": 2.5, "maximum": 7.5})", {"3", "7"}, {"2", "8"});
  ExpectAccepts(R"({"type": "integer", "maximum": -10})", {"-10", "-11", "-1000"},
                {"-9", "0", "5"});
  // Draft 4's boolean form.
  ExpectAccepts(R"({"type": "integer", "minimum": 0, "exclusiveMinimum": true, "maximum": 2})",
                {"1", "2"}, {"0", "3"});
  ExpectRefused(R"({"type": "integer", "minimum": 5, "maximum": 4})", {"minimum/maximum"});
  ExpectRefused(R"({"type": "integer", "minimum": 1.5, "maximum": 1.9})", {"no integer"});
}

TEST(GrammarKeywordsTest, NumberBoundsAreExact) {
  ExpectAccepts(R"({"type": "number", "minimum": 0.5, "exclusiveMaximum": 30})",
                {"0.5", "1", "29.999", "29.999999999999", "0.50"},
                {"0.49", "30", "30.0", "-1", "0.4999999", "3e1", "1e0"});
  ExpectAccepts(R"({"type": "number", "exclusiveMinimum": 0.1, "exclusiveMaximum": 0.2})",
                {"0.15", "0.100000000001", "0.199999999999"}, {"0.1", "0.2", "0.10", "0"});
  ExpectAccepts(R"({"type": "number", "minimum": -1e-3, "maximum": -1e-4})",
                {"-0.001", "-0.0005", "-0.00011"}, {"-0.0011", "-0.00009", "0", "0.0005"});
  // Bounds are compared exactly with the double the schema holds: -1e-4 is
  // -0.000100000000000000004792..., so the decimal -0.0001 lies above it.
  ExpectAccepts(R"({"type": "number", "maximum": -1e-4})", {"-0.000100000001"}, {"-0.0001"});
  ExpectAccepts(R"({"type": "number", "minimum": -90, "maximum": 90})",
                {"-90", "-89.5", "0", "90", "90.0"}, {"-90.1", "90.000000000001", "91", "100"});
}

TEST(GrammarKeywordsTest, Patterns) {
  ExpectAccepts(R"({"type": "string", "pattern": "^[A-Z]{2}\\d{3}$"})", {R"("AB123")"},
                {R"("AB12")", R"("ab123")", R"("AB1234")", R"("AB123\n")"});
  // Unanchored: a search.
  ExpectAccepts(R"({"type": "string", "pattern": "abc"})", {R"("abc")", R"("xxabcyy")"},
                {R"("ab")", R"("")"});
  ExpectAccepts(R"({"type": "string", "pattern": "^(cat|dog)s?$"})", {R"("cat")", R"("dogs")"},
                {R"("cow")", R"("catss")"});
  ExpectAccepts(R"({"type": "string", "pattern": "^[^a-c]+$", "maxLength": 3})",
                {R"("xyz")", R"("é")"}, {R"("xa")", R"("wxyz")"});
  // Escaped characters in the JSON text are matched as what they decode to.
  ExpectAccepts(R"({"type": "string", "pattern": "^a\"b$"})", {R"("a\"b")"}, {R"("ab")"});
  ExpectAccepts(R"({"type": "string", "pattern": "^x.y$"})", {R"("x-y")", R"("x日y")"},
                {R"("x\ny")", R"("xy")"});
  for (const char* bad : {"(?=x)", "(a)\\\\1", "a\\\\b", "[a-é]", "x{5,2}", "(?<n>a)"}) {
    ExpectRefused(std::string(R"({"type": "string", "pattern": ")") + bad + "\"}", {"/pattern"});
  }
  ExpectRefused(R"({"type": "string", "pattern": "^a{3}$", "maxLength": 2})",
                {"at least 3 characters"});
}

// Compiling a pattern costs bounded work whatever it is: repeated alternatives are one (a
// fuzzer's 400-byte pattern of empty alternatives took 2.8 s), byte classes stand for bytes, and
// a pattern whose automaton would take too long to build is refused by name.
TEST(GrammarKeywordsTest, PatternCompileCostIsBounded) {
  auto string_with_pattern = [](const std::string& pattern) {
    return R"({"type": "string", "pattern": ")" + pattern + R"("})";
  };
  std::string many_empty = "^ab$";
  for (int i = 0; i < 3000; ++i) many_empty += "|";
  many_empty += "|^cd$";
  // An empty alternative matches everything (a search), so every string is accepted.
  ExpectAccepts(string_with_pattern(many_empty), {R"("ab")", R"("cd")", R"("zz")", R"("")"}, {});
  std::string repeated = "^(x";
  for (int i = 0; i < 3000; ++i) repeated += "|ab";
  repeated += ")$";
  ExpectAccepts(string_with_pattern(repeated), {R"("ab")", R"("x")"}, {R"("abab")", R"("")"});
  ExpectRefused(string_with_pattern("(.*.*.*.*.*.*.*.*.*.*){300}x"), {"/pattern", "too complex"});
  // Over 512 distinct character classes: one class per byte instead of refined classes (every
  // class then has a representative byte; an unassigned one once read bit -1).
  std::string classes = "^(";
  int count = 0;
  for (char lo = 'A'; lo <= 'z' && count < 600; ++lo) {
    for (char hi = lo; hi <= 'z' && count < 600; ++hi, ++count) {
      if (lo == '\\' || hi == '\\' || lo == ']' || hi == ']' || lo == '^') continue;
      classes += std::string(count ? "|" : "") + "[" + lo + "-" + hi + "]";
    }
  }
  classes += ")$";
  ExpectAccepts(string_with_pattern(classes), {R"("A")", R"("z")"}, {R"("AA")", R"("0")"});
}

TEST(GrammarKeywordsTest, Formats) {
  ExpectAccepts(R"({"type": "string", "format": "date"})",
                {R"("2024-02-29")", R"("2000-02-29")", R"("1999-12-31")", R"("0001-01-01")"},
                {R"("2023-02-29")", R"("1900-02-29")", R"("2024-13-01")", R"("2024-04-31")",
                 R"("0000-01-01")", R"("2024-1-01")"});
  ExpectAccepts(R"({"type": "string", "format": "time"})",
                {R"("12:34:56Z")", R"("23:59:59.123+05:30")"},
                {R"("24:00:00Z")", R"("12:34:56")", R"("12:60:00Z")"});
  ExpectAccepts(R"({"type": "string", "format": "date-time"})", {R"("2024-02-29T08:00:00Z")"},
                {R"("2024-02-29 08:00:00Z")", R"("2024-02-30T08:00:00Z")"});
  ExpectAccepts(
      R"({"type": "string", "format": "uuid"})", {R"("123e4567-e89b-12d3-a456-426614174000")"},
      {R"("123e4567e89b12d3a456426614174000")", R"("123e4567-e89b-12d3-a456-42661417400g")"});
  ExpectAccepts(R"({"type": "string", "format": "email"})",
                {R"("a.b+c@example.com")", R"("x@a-b.co")"},
                {R"("a@b")", R"("@example.com")", R"("a..b@example.com")", R"("a@-b.com")"});
  ExpectRefused(R"({"type": "string", "format": "uri"})", {"\"uri\"", "/format"});
  // Non-string formats (OpenAPI's int32, double, ...) do not constrain.
  ExpectAccepts(R"({"type": "integer", "format": "int32"})", {"5"}, {"\"5\""});
}

TEST(GrammarKeywordsTest, AnyOfOneOf) {
  ExpectAccepts(R"({"anyOf": [{"type": "integer"}, {"type": "number"}]})", {"1", "1.5"}, {"\"1\""});
  ExpectAccepts(R"({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]})",
                {R"("a")", "1", "null"}, {"1.5", "true"});
  // A discriminated union.
  ExpectAccepts(R"({"oneOf": [
      {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}},
       "required": ["kind"]},
      {"type": "object", "properties": {"kind": {"const": "b"}, "y": {"type": "string"}},
       "required": ["kind"]}]})",
                {R"({"kind":"a","x":1})", R"({"y":"s","kind":"b"})"},
                {R"({"kind":"a","y":"s"})", R"({"kind":"c"})"});
  ExpectRefused(R"({"oneOf": [{"type": "integer"}, {"type": "number"}]})",
                {"/oneOf", "branches 0 and 1"});
  // anyOf next to other keywords applies both.
  ExpectAccepts(R"({"type": "object", "properties": {"a": {"type": "integer"},
      "b": {"type": "integer"}}, "anyOf": [{"required": ["a"]}, {"required": ["b"]}]})",
                {R"({"a":1})", R"({"b":1})", R"({"a":1,"b":2})"}, {"{}"});
}

TEST(GrammarKeywordsTest, AllOfMerges) {
  ExpectAccepts(R"({"allOf": [
      {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0}}, "required": ["a"]},
      {"properties": {"a": {"maximum": 5}, "b": {"type": "string", "maxLength": 2}}}]})",
                {R"({"a":0})", R"({"a":5,"b":"xy"})"},
                {R"({"a":6})", R"({"b":"x"})", R"({"a":1,"b":"xyz"})", "null"});
  ExpectAccepts(R"({"allOf": [{"type": ["string", "integer"]}, {"type": ["integer", "null"]}]})",
                {"3"}, {R"("a")", "null"});
  ExpectAccepts(R"({"allOf": [{"type": "string", "pattern": "^a"}, {"pattern": "b$"}]})",
                {R"("ab")", R"("axxb")"}, {R"("a")", R"("b")", R"("ba")"});
  ExpectAccepts(R"({"allOf": [{"enum": [1, 2, 3]}, {"enum": [2, 3, 4]}]})", {"2", "3"}, {"1", "4"});
  ExpectRefused(R"({"allOf": [{"type": "string"}, {"type": "integer"}]})", {"allOf", "type"});
  ExpectRefused(R"({"allOf": [{"const": 1}, {"const": 2}]})", {"allOf", "enum/const"});
  ExpectRefused(R"({"allOf": [{"type": "string", "format": "date"}, {"format": "email"}]})",
                {"allOf", "format"});
}

TEST(GrammarKeywordsTest, RefsDefsRecursion) {
  const std::string list = R"({"$ref": "#/$defs/node", "$defs": {"node": {"type": "object",
      "properties": {"value": {"type": "integer"}, "next": {"$ref": "#/$defs/node"}},
      "required": ["value"], "additionalProperties": false}}})";
  ExpectAccepts(list, {R"({"value":1})", R"({"value":1,"next":{"value":2,"next":{"value":3}}})"},
                {R"({"next":{"value":1}})", R"({"value":1,"next":{}})"});
  ExpectAccepts(R"({"type": "object", "properties": {"p": {"$ref": "#/definitions/pos"}},
      "definitions": {"pos": {"type": "integer", "minimum": 1}}})",
                {R"({"p":1})"}, {R"({"p":0})"});
  ExpectRefused(R"({"$ref": "#/$defs/missing"})", {"/$ref", "does not resolve"});
  ExpectRefused(R"({"$ref": "https://example.com/s.json"})", {"/$ref", "local"});
  // Recursion with no base case has no finite instance.
  ExpectRefused(R"({"$ref": "#/$defs/n", "$defs": {"n": {"type": "object",
      "properties": {"n": {"$ref": "#/$defs/n"}}, "required": ["n"]}}})",
                {"nesting"});
}

TEST(GrammarKeywordsTest, UnsupportedKeywordsAreRefusedByNameAndPath) {
  ExpectRefused(R"({"type": "integer", "multipleOf": 3})", {"\"multipleOf\"", "/multipleOf"});
  ExpectRefused(R"({"type": "object", "properties": {"a": {"not": {"type": "null"}}}})",
                {"\"not\"", "/properties/a/not"});
  ExpectRefused(R"({"type": "array", "items": {"type": "string", "contentEncoding": "base64"}})",
                {"\"contentEncoding\"", "/items/contentEncoding"});
  ExpectRefused(R"({"type": "object", "patternProperties": {"^x": {}}})",
                {"\"patternProperties\""});
  ExpectRefused(R"({"type": "object", "properties": {"a/b": {"if": {}}}})",
                {"\"if\"", "/properties/a~1b/if"});
  ExpectRefused(R"({"allOf": [{"type": "string"}, {"uniqueItems": true}]})",
                {"\"uniqueItems\"", "/allOf/1/uniqueItems"});
  // Annotations are accepted.
  ExpectAccepts(R"({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "t",
      "description": "d", "type": "string", "examples": ["x"], "default": "x", "$comment": "c",
      "deprecated": false})",
                {R"("x")"}, {"1"});
  // Tool parameters: the message names the tool.
  auto tools = CompileToolCallGrammar({J(R"({"type": "function", "function": {"name": "f",
      "parameters": {"type": "object", "properties": {"q": {"type": "string",
      "contentMediaType": "x"}}}}})")});
  ASSERT_FALSE(tools.ok());
  EXPECT_NE(tools.status().message().find("tool \"f\""), std::string::npos);
  EXPECT_NE(tools.status().message().find("/properties/q/contentMediaType"), std::string::npos);
}

TEST(GrammarKeywordsTest, ToolCallSyntaxKeywords) {
  auto g = CompileToolCallGrammar({J(R"({"type": "function", "function": {"name": "f",
      "parameters": {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 1, "maximum": 3},
        "s": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 4},
        "d": {"type": "string", "format": "date"},
        "extra": {"type": "object", "additionalProperties": {"type": "boolean"}}},
      "required": ["n"]}}})")});
  ASSERT_TRUE(g.ok()) << g.status().message();
  const std::string q = "<|\"|>";
  for (const std::string& ok : std::vector<std::string>{
           "call:f{n:1}<tool_call|>", "call:f{n:3,s:" + q + "abcd" + q + "}<tool_call|>",
           "call:f{d:" + q + "2024-02-29" + q + ",n:2}<tool_call|>",
           "call:f{n:2,extra:{a:true," + q + "b c" + q + ":false}}<tool_call|>"}) {
    GrammarMatcher m(*g);
    EXPECT_TRUE(m.Accept(ok) && m.CanEnd()) << ok;
  }
  for (const std::string& bad :
       std::vector<std::string>{"call:f{n:0}<tool_call|>", "call:f{n:4}<tool_call|>",
                                "call:f{n:1,s:" + q + "abcde" + q + "}<tool_call|>",
                                "call:f{n:1,s:" + q + "ab1" + q + "}<tool_call|>",
                                "call:f{n:1,d:" + q + "2023-02-29" + q + "}<tool_call|>",
                                "call:f{n:1,extra:{a:true,a:false}}<tool_call|>"}) {
    GrammarMatcher m(*g);
    EXPECT_FALSE(m.Accept(bad) && m.CanEnd()) << bad;
  }
}

TEST(GrammarKeywordsTest, ToolRegistrationRefusesWhatTheGrammarCannotEnforce) {
  ToolRegistry tools;
  auto callback = [](const std::string&) -> StatusOr<std::string> { return std::string("{}"); };
  Status s = tools.Register(
      "a", "", R"({"type": "object", "properties": {"x": {"$ref": "#/nope"}}})", callback);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/properties/x/$ref"), std::string::npos) << s.message();
  s = tools.Register("b", "", R"({"type": "object", "properties": {"x": {"not": {}}}})", callback);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("\"not\" at /properties/x/not"), std::string::npos) << s.message();
  EXPECT_EQ(tools.size(), 0u);
  s = tools.Register("c", "", R"({"type": "object", "properties": {"t": {"$ref": "#/$defs/t"}},
      "$defs": {"t": {"type": "object", "properties": {"k": {"type": "array",
      "items": {"$ref": "#/$defs/t"}}}}}})",
                     callback);
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(tools.size(), 1u);
}

// The per-token mask equals CanAccept on each token, for a schema with the new constraint kinds.
TEST(GrammarKeywordsTest, FillAllowedEqualsBruteForce) {
  auto g = Compile(R"({"type": "object", "properties": {
      "n": {"type": "number", "minimum": -2.5, "maximum": 40},
      "p": {"type": "string", "pattern": "^[a-c]{2,4}-\\d$"},
      "x": {"type": "object", "additionalProperties": {"type": "integer", "maximum": 9}}},
      "required": ["n", "p"]})");
  ASSERT_NE(g, nullptr);
  std::vector<std::string> texts;
  for (int b = 1; b < 128; ++b) texts.push_back(std::string(1, static_cast<char>(b)));
  for (const char* t : {"\"n\":", "\"p\"", "-2", "40", "39.9", "ab", "abc-", "-1", "\"x\":{",
                        "\"k\":", "9}", "10", "\"}", "é", ".5", "2.50", "0"}) {
    texts.push_back(t);
  }
  const VocabIndex vocab(texts);
  const std::string doc = R"({"n":-2.5,"p":"abc-1","x":{"k":9,"j":-3}})";
  GrammarMatcher m(g);
  for (size_t i = 0; i <= doc.size(); ++i) {
    std::vector<bool> allowed;
    m.FillAllowed(vocab, &allowed);
    for (size_t t = 0; t < texts.size(); ++t) {
      ASSERT_EQ(allowed[t], m.CanAccept(texts[t])) << "at " << i << " token '" << texts[t] << "'";
    }
    if (i < doc.size()) {
      ASSERT_TRUE(m.Accept(doc.substr(i, 1))) << doc.substr(0, i + 1);
    }
  }
  EXPECT_TRUE(m.IsComplete() || m.CanEnd());
}

}  // namespace
}  // namespace gemma4::chat
