// Gemma 4 tool syntax: formatting as the official template's macros do (exact strings), parsing
// back to JSON, and the thought-channel helpers. The full declaration/call/response renderings
// are also checked against transformers in chat_template_test.
#include "chat/tool_syntax.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "base/json.h"
#include "scaling.h"

namespace gemma4::chat {
namespace {

json::Value J(const char* text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v.ok()) << text;
  return v.ok() ? *v : json::Value();
}

TEST(ToolSyntaxTest, FormatArgumentLikeTheTemplate) {
  EXPECT_EQ(FormatArgument(J(R"("Paris")"), false), "<|\"|>Paris<|\"|>");
  EXPECT_EQ(FormatArgument(J("true"), false), "true");
  EXPECT_EQ(FormatArgument(J("null"), false), "None");
  EXPECT_EQ(FormatArgument(J("[1, 2.5, \"x\"]"), false), "[1,2.5,<|\"|>x<|\"|>]");
  // dictsort is case-insensitive and stable: "A" and "a" keep their order.
  EXPECT_EQ(FormatArgument(J(R"({"b": 1, "A": 2, "a": 3, "C": {"z": [], "y": {}}})"), false),
            "{A:2,a:3,b:1,C:{y:{},z:[]}}");
  EXPECT_EQ(FormatArgument(J(R"({"k": "v"})"), true), "{<|\"|>k<|\"|>:<|\"|>v<|\"|>}");
}

TEST(ToolSyntaxTest, NumbersPrintAsPythonReprs) {
  const std::pair<const char*, const char*> cases[] = {{"1000.0", "1000.0"},
                                                       {"1e3", "1000.0"},
                                                       {"0.1", "0.1"},
                                                       {"1e20", "1e+20"},
                                                       {"1.5e-7", "1.5e-07"},
                                                       {"-0.0001", "-0.0001"},
                                                       {"0.00001", "1e-05"},
                                                       {"1e16", "1e+16"},
                                                       {"9999999999999998.0", "9999999999999998.0"},
                                                       {"123456789012345678", "123456789012345678"},
                                                       {"-7", "-7"},
                                                       {"2.5", "2.5"},
                                                       {"0.0", "0.0"},
                                                       {"-0.0", "-0.0"},
                                                       {"123.456", "123.456"}};
  for (const auto& [in, out] : cases) EXPECT_EQ(PythonNumber(J(in)), out) << in;
}

TEST(ToolSyntaxTest, CallAndResponse) {
  EXPECT_EQ(FormatToolCall("get_weather", J(R"({"unit": "celsius", "city": "Paris"})")),
            "<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>,unit:<|\"|>celsius<|\"|>}"
            "<tool_call|>");
  EXPECT_EQ(FormatToolResponse("f", J(R"({"temp": 18.5, "ok": true})")),
            "<|tool_response>response:f{ok:true,temp:18.5}<tool_response|>");
  EXPECT_EQ(FormatToolResponse("f", J("4")), "<|tool_response>response:f{value:4}<tool_response|>");
  EXPECT_EQ(FormatToolResponse("f", J(R"("text")")),
            "<|tool_response>response:f{value:<|\"|>text<|\"|>}<tool_response|>");
}

TEST(ToolSyntaxTest, Declarations) {
  auto d = FormatFunctionDeclaration(J(R"({"type": "function", "function": {"name": "now",
      "description": "Time."}})"));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, "declaration:now{description:<|\"|>Time.<|\"|>}");
  auto e = FormatFunctionDeclaration(J(R"({"name": "f", "parameters": {"type": "object",
      "properties": {"x": {"type": "string", "enum": ["a", "b"]}}, "required": ["x"]}})"));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e,
            "declaration:f{description:<|\"|><|\"|>,parameters:{properties:{x:{enum:[<|\"|>a<|\"|>,"
            "<|\"|>b<|\"|>],type:<|\"|>STRING<|\"|>}},required:[<|\"|>x<|\"|>],type:<|\"|>OBJECT"
            "<|\"|>}}");
  EXPECT_FALSE(FormatFunctionDeclaration(J(R"({"function": {}})")).ok());
}

TEST(ToolSyntaxTest, ParsesCalls) {
  auto c = ParseToolCall(
      "call:search{query:<|\"|>say \"hi\", {ok}<|\"|>,n:-3,x:1.5e2,flag:false,none:None,"
      "nested:{list:[1,[2],{a:<|\"|><|\"|>}]},<|\"|>odd key<|\"|>:true,\"q\":\"j\\n\"}");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->name, "search");
  EXPECT_EQ(c->arguments.Serialize(),
            R"({"query":"say \"hi\", {ok}","n":-3,"x":150.0,"flag":false,"none":null,)"
            R"("nested":{"list":[1,[2],{"a":""}]},"odd key":true,"q":"j\n"})");
  auto spaced = ParseToolCall(" call:f { a : 1 , b : [ 1 , 2 ] } ");
  ASSERT_TRUE(spaced.ok()) << spaced.status().message();
  EXPECT_EQ(spaced->arguments.Serialize(), R"({"a":1,"b":[1,2]})");
  // A string argument holding JSON comes back verbatim (LiteRT-LM #2418).
  auto json_arg = ParseToolCall("call:store{data:<|\"|>{\"a\": [1, 2], \"b\": \"x,y}\"}<|\"|>}");
  ASSERT_TRUE(json_arg.ok());
  EXPECT_EQ(json_arg->arguments.Find("data")->as_string(), "{\"a\": [1, 2], \"b\": \"x,y}\"}");
}

TEST(ToolSyntaxTest, ParseErrorsGiveOffsets) {
  const std::pair<const char*, const char*> bad[] = {
      {"f{}", "byte 0: expected \"call:\""},
      {"call:{}", "function name"},
      {"call:f", "expected '{'"},
      {"call:f{a:<|\"|>x}", "unterminated"},
      {"call:f{a:1}junk", "byte 11: unexpected text"},
      {"call:f{a 1}", "expected ':'"},
      {"call:f{a:1 b:2}", "expected ',' or '}'"},
      {"call:f{a:[1 2]}", "expected ',' or ']'"},
      {"call:f{a:-}", "bad number"},
      {"call:f{a:@}", "unexpected character '@'"},
  };
  for (const auto& [text, expect] : bad) {
    auto c = ParseToolCall(text);
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_NE(c.status().message().find(expect), std::string::npos)
        << text << " -> " << c.status().message();
  }
  std::string deep = "call:f{a:";
  for (int i = 0; i < 100; ++i) deep += "[";
  auto c = ParseToolCall(deep);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("deeper than 64"), std::string::npos);
}

TEST(ToolSyntaxTest, FindToolCallsToleratesJunk) {
  const std::string text =
      "Let me check.<|tool_call>call:a{x:1}<tool_call|>junk<|tool_call>call:b{y:<|\"|>z<|\"|>}"
      "<tool_call|><|tool_call>call:c{broken<tool_call|> tail <|tool_call>call:d{";
  const auto spans = FindToolCalls(text);
  ASSERT_EQ(spans.size(), 4u);
  EXPECT_TRUE(spans[0].status.ok());
  EXPECT_EQ(spans[0].call.name, "a");
  EXPECT_EQ(spans[0].begin, 13u);
  EXPECT_TRUE(spans[1].status.ok());
  EXPECT_EQ(spans[1].call.arguments.Serialize(), R"({"y":"z"})");
  EXPECT_FALSE(spans[2].status.ok());
  EXPECT_FALSE(spans[3].status.ok());
  EXPECT_NE(spans[3].status.message().find("not terminated"), std::string::npos);
  EXPECT_EQ(spans[3].end, text.size());
}

json::Value RandomValue(std::mt19937* g, int depth) {
  const int kind = (*g)() % (depth > 3 ? 5 : 7);
  switch (kind) {
    case 0:
      return json::Value::Integer(static_cast<int64_t>((*g)() % 2001) - 1000);
    case 1:
      return json::Value::Number(((*g)() % 100000) / 64.0 - 500);
    case 2:
      return json::Value::Bool((*g)() % 2);
    case 3:
      return json::Value();
    case 4: {
      std::string s;
      const char* pool[] = {"a", "B", " ", "{", "}", ",", ":", "\"", "\n", "é", "日", "[", "<"};
      const int n = (*g)() % 8;
      for (int i = 0; i < n; ++i) s += pool[(*g)() % 13];
      return json::Value::String(s);
    }
    case 5: {
      json::Value::Array a;
      const int n = (*g)() % 4;
      for (int i = 0; i < n; ++i) a.push_back(RandomValue(g, depth + 1));
      return json::Value::MakeArray(std::move(a));
    }
    default: {
      json::Value::Object o;
      const int n = (*g)() % 4;
      for (int i = 0; i < n; ++i) {
        o.emplace_back("k" + std::to_string(i) + ((*g)() % 2 ? "_x" : ""),
                       RandomValue(g, depth + 1));
      }
      return json::Value::MakeObject(std::move(o));
    }
  }
}

// Sorted-key serialization, to compare objects regardless of key order.
std::string Canonical(const json::Value& v) {
  if (v.is_object()) {
    std::vector<std::pair<std::string, std::string>> items;
    for (const auto& [k, x] : v.as_object()) items.emplace_back(k, Canonical(x));
    std::sort(items.begin(), items.end());
    std::string out = "{";
    for (const auto& [k, x] : items) out += k + ":" + x + ",";
    return out + "}";
  }
  if (v.is_array()) {
    std::string out = "[";
    for (const json::Value& x : v.as_array()) out += Canonical(x) + ",";
    return out + "]";
  }
  return v.Serialize();
}

TEST(ToolSyntaxTest, RoundTripsRandomArguments) {
  std::mt19937 g(3);
  for (int i = 0; i < 2000; ++i) {
    json::Value::Object args;
    const int n = g() % 5;
    for (int k = 0; k < n; ++k) args.emplace_back("arg" + std::to_string(k), RandomValue(&g, 0));
    const json::Value v = json::Value::MakeObject(std::move(args));
    const std::string call = FormatToolCall("tool_name", v);
    const std::string body = call.substr(12, call.size() - 12 - 12);
    auto parsed = ParseToolCall(body);
    ASSERT_TRUE(parsed.ok()) << body << ": " << parsed.status().message();
    EXPECT_EQ(Canonical(parsed->arguments), Canonical(v)) << body;
  }
}

TEST(ToolSyntaxTest, ThoughtHelpers) {
  EXPECT_EQ(StripThinking("<|channel>thought\nhmm<channel|>The answer.  "), "The answer.");
  EXPECT_EQ(StripThinking("a<|channel>x<channel|>b<|channel>y<channel|>c"), "abc");
  EXPECT_EQ(StripThinking("no channel "), "no channel");
  ThoughtSplit s = SplitThought("<|channel>thought\nplan<channel|>answer");
  EXPECT_EQ(s.thought, "plan");
  EXPECT_EQ(s.content, "answer");
  ThoughtSplit none = SplitThought("just text");
  EXPECT_EQ(none.thought, "");
  EXPECT_EQ(none.content, "just text");
}

TEST(ToolSyntaxTest, RepeatedKeysKeepTheFirstPlaceAndTheLastValue) {
  auto c = ParseToolCall("call:f{a:1,b:2,a:3,c:4,b:5}");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->arguments.Serialize(), R"({"a":3,"b":5,"c":4})");
}

// A call with n distinct keys parses in time linear in n (it was quadratic: every key was
// compared with all earlier ones, 14 s for 100,000 keys). 8x the keys must cost well under
// the 64x a quadratic parser needs.
// A call with 100,000 keys costs a small multiple of parsing the same object as JSON (measured
// 1.1-1.6x, loaded or not); a per-key cost that grows with the keys already parsed (a linear
// duplicate check, re-copying the object) would be thousands of times that. Comparing with the
// JSON parser on the same machine at the same moment, instead of two sizes with each other,
// keeps the cache and page-fault costs of the large input out of the ratio (two sizes gave
// 14x-30x for linear code on a loaded machine).
TEST(ToolSyntaxTest, ParseCostStaysWithinAConstantOfJsonParsing) {
  constexpr int kKeys = 100000;
  std::string call = "call:f{", object = "{";
  for (int i = 0; i < kKeys; ++i) {
    if (i) {
      call += ",";
      object += ",";
    }
    call += "key" + std::to_string(i) + ":" + std::to_string(i);
    object += "\"key" + std::to_string(i) + "\":" + std::to_string(i);
  }
  call += "}";
  object += "}";
  size_t keys = 0;
  const double t_call = testing::BestSeconds([&] {
    auto c = ParseToolCall(call);
    ASSERT_TRUE(c.ok()) << c.status().message();
    keys = c->arguments.as_object().size();
  });
  EXPECT_EQ(keys, static_cast<size_t>(kKeys));
  const double t_json = testing::BestSeconds([&] {
    auto v = json::Parse(object, "object");
    ASSERT_TRUE(v.ok()) << v.status().message();
    keys = v->as_object().size();
  });
  EXPECT_EQ(keys, static_cast<size_t>(kKeys));
  EXPECT_LT(t_call, 8 * t_json) << "tool call " << t_call << " s, JSON " << t_json << " s";
}

}  // namespace
}  // namespace gemma4::chat
