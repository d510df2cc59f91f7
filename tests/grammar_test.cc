// Schema grammars: accept/reject, incremental matching, the vocabulary mask against brute
// force, and random walks that must always end in a valid document/call.
#include "decode/grammar.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <random>

#include "chat/tool_syntax.h"

namespace gemma4::chat {
namespace {

json::Value J(const char* text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v.ok()) << text;
  return v.ok() ? *v : json::Value();
}

const char* kWeatherTool = R"({"type": "function", "function": {"name": "get_weather",
    "parameters": {"type": "object", "properties": {
      "city": {"type": "string", "maxLength": 30},
      "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
      "days": {"type": "integer"},
      "coords": {"type": "object", "properties": {"lat": {"type": "number"},
                 "lon": {"type": "number"}}, "required": ["lat", "lon"]},
      "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
      "raw": {}},
    "required": ["city"]}}})";
const char* kTimeTool = R"({"type": "function", "function": {"name": "get_time"}})";

std::shared_ptr<const Grammar> ToolGrammar() {
  auto g = CompileToolCallGrammar({J(kWeatherTool), J(kTimeTool)});
  EXPECT_TRUE(g.ok()) << g.status().message();
  return *g;
}

bool Matches(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  GrammarMatcher m(g);
  return m.Accept(text) && m.CanEnd();
}

const std::string kQ = "<|\"|>";

TEST(GrammarTest, ToolCalls) {
  auto g = ToolGrammar();
  const std::string ok[] = {
      "call:get_weather{city:" + kQ + "Paris" + kQ + "}<tool_call|>",
      "call:get_weather{unit:" + kQ + "celsius" + kQ + ",city:" + kQ + "Lyon, \"FR\" {x}" + kQ +
          ",days:3}<tool_call|>",
      "call:get_weather{city:" + kQ + kQ + ",coords:{lat:1.5,lon:-2e3},tags:[" + kQ + "a" + kQ +
          "," + kQ + "b" + kQ + "]}<tool_call|>",
      "call:get_weather{raw:{any_key:[1,true,None,{x:" + kQ + "y" + kQ + "}]},city:" + kQ + "c" +
          kQ + "}<tool_call|>",
      "call:get_time{}<tool_call|>",
  };
  for (const std::string& s : ok) EXPECT_TRUE(Matches(g, s)) << s;
  const std::string bad[] = {
      "call:get_wether{city:" + kQ + "P" + kQ + "}<tool_call|>",  // unknown tool
      "call:get_weather{}<tool_call|>",                           // missing city
      "call:get_weather{days:3}<tool_call|>",                     // missing city
      "call:get_weather{city:" + kQ + "a" + kQ + ",city:" + kQ + "b" + kQ + "}<tool_call|>",
      "call:get_weather{city:3}<tool_call|>",  // wrong type
      "call:get_weather{city:" + kQ + "a" + kQ + ",unit:" + kQ + "kelvin" + kQ + "}<tool_call|>",
      "call:get_weather{city:" + kQ + "a" + kQ + ",zzz:1}<tool_call|>",           // unknown key
      "call:get_weather{city:" + kQ + "a" + kQ + ",days:1.5}<tool_call|>",        // not integer
      "call:get_weather{city:" + kQ + "a" + kQ + ",coords:{lat:1}}<tool_call|>",  // lon missing
      "call:get_weather{city:" + kQ + "a" + kQ + ",tags:[" + kQ + kQ + "," + kQ + kQ + "," + kQ +
          kQ + "," + kQ + kQ + "]}<tool_call|>",                                    // > maxItems
      "call:get_weather{ city:" + kQ + "a" + kQ + "}<tool_call|>",                  // whitespace
      "call:get_time{}",                                                            // unterminated
      "call:get_weather{city:" + kQ + std::string(31, 'x') + kQ + "}<tool_call|>",  // too long
  };
  for (const std::string& s : bad) EXPECT_FALSE(Matches(g, s)) << s;
  GrammarMatcher m(g);
  ASSERT_TRUE(m.Accept("call:get_time{}<tool_call|>"));
  EXPECT_TRUE(m.IsComplete());
  EXPECT_FALSE(m.CanAccept("x"));
}

TEST(GrammarTest, JsonSchema) {
  auto g = CompileJsonSchemaGrammar(J(R"({"type": "object", "properties": {
      "name": {"type": "string"}, "age": {"type": ["integer", "null"]},
      "kind": {"enum": ["a", 1, true, null]}, "ratio": {"type": "number"},
      "items": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "boolean"}]},
                "minItems": 1}},
      "required": ["name", "items"]})"));
  ASSERT_TRUE(g.ok()) << g.status().message();
  const char* ok[] = {
      R"({"name":"x","items":[true]})",
      R"({"items": ["a", false], "name": "\u00e9\n", "age": null})",
      R"({"name":"x","items":["y"],"age":-12,"kind":1,"ratio":0.5e-3})",
      R"({"name":"x","items":["y"],"kind":"a"})",
      R"({"name":"日本","items":[true],"kind":null})",
  };
  for (const char* s : ok) EXPECT_TRUE(Matches(*g, s)) << s;
  const char* bad[] = {
      R"({"name":"x"})",                            // items missing
      R"({"name":"x","items":[]})",                 // minItems
      R"({"name":"x","items":[1]})",                // item type
      R"({"name":"x","items":[true],"age":1.5})",   // not an integer
      R"({"name":"x","items":[true],"kind":2})",    // not in enum
      R"({"name":"x","items":[true],"other":1})",   // unknown key
      R"({"name":"x","items":[true],"ratio":01})",  // leading zero
      R"({"name":"x\q","items":[true]})",           // bad escape
      "{\"name\":\"a\x01\",\"items\":[true]}",      // raw control character
      R"({"name":"x",   "items":[true]})",          // 3 whitespace characters
      R"( {"name":"x","items":[true]})",            // leading whitespace
      "{\"name\":\"\xC0\x80\",\"items\":[true]}",   // overlong UTF-8
  };
  for (const char* s : bad) EXPECT_FALSE(Matches(*g, s)) << s;
}

TEST(GrammarTest, SchemaErrorsNameThePath) {
  const std::pair<const char*, const char*> bad[] = {
      {R"({"$ref": "#/x"})", "$ref"},
      {R"({"type": "date"})", "unsupported type \"date\""},
      {R"({"type": "object", "properties": {"a": {"type": "blob"}}})", "/properties/a"},
      {R"({"type": "object", "properties": {"a": {}}, "required": ["b"]})", "\"b\""},
      {R"({"enum": []})", "/enum"},
      {R"({"type": "string", "minLength": 5, "maxLength": 2})", "maxLength < minLength"},
  };
  for (const auto& [schema, expect] : bad) {
    auto g = CompileJsonSchemaGrammar(J(schema));
    ASSERT_FALSE(g.ok()) << schema;
    EXPECT_NE(g.status().message().find(expect), std::string::npos) << g.status().message();
  }
}

TEST(GrammarTest, IncrementalEqualsWhole) {
  auto g = ToolGrammar();
  const std::string call = "call:get_weather{city:" + kQ + "Zürich" + kQ +
                           ",coords:{lat:47.37,lon:8.54},days:10}<tool_call|>";
  GrammarMatcher bytewise(g), chunked(g);
  for (char c : call) ASSERT_TRUE(bytewise.Accept(std::string(1, c)));
  for (size_t i = 0; i < call.size(); i += 7) ASSERT_TRUE(chunked.Accept(call.substr(i, 7)));
  EXPECT_TRUE(bytewise.IsComplete());
  EXPECT_TRUE(chunked.IsComplete());
  GrammarMatcher m(g);
  ASSERT_TRUE(m.Accept("call:get_weather{ci"));
  EXPECT_TRUE(m.CanAccept("ty:"));
  EXPECT_TRUE(m.CanAccept("ty:"));  // CanAccept does not advance
  EXPECT_FALSE(m.Accept("tx"));     // a failed Accept leaves the state as it was
  EXPECT_TRUE(m.Accept("ty:"));
}

std::vector<std::string> SyntheticVocab(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<std::string> vocab = {kQ,
                                    "<tool_call|>",
                                    "{",
                                    "}",
                                    ":",
                                    ",",
                                    "[",
                                    "]",
                                    "\"",
                                    "\":",
                                    "call",
                                    "call:",
                                    "get_weather",
                                    "get_time",
                                    "city",
                                    "unit",
                                    "days",
                                    "celsius",
                                    "fahrenheit",
                                    "true",
                                    "null",
                                    "None",
                                    "-",
                                    ".",
                                    "e",
                                    " ",
                                    "\n",
                                    "é",
                                    "\xC3",
                                    "\xA9",
                                    "日本",
                                    ""};
  const char* alphabet = "abcdefghijklmnopqrstuvwxyz_:{},[]0123456789\"<|>. -e";
  const size_t len = std::strlen(alphabet);
  while (vocab.size() < n) {
    std::string t;
    const int k = 1 + g() % 6;
    for (int i = 0; i < k; ++i) t += alphabet[g() % len];
    vocab.push_back(t);
  }
  return vocab;
}

TEST(GrammarTest, FillAllowedEqualsBruteForce) {
  auto g = ToolGrammar();
  const std::vector<std::string> texts = SyntheticVocab(3000, 5);
  const VocabIndex vocab(texts);
  const std::string call = "call:get_weather{city:" + kQ + "Paris" + kQ +
                           ",coords:{lat:-1.5e2,lon:3},tags:[" + kQ + "a" + kQ + "]}<tool_call|>";
  GrammarMatcher m(g);
  for (size_t i = 0; i <= call.size(); ++i) {
    std::vector<bool> allowed;
    m.FillAllowed(vocab, &allowed);
    for (size_t t = 0; t < texts.size(); ++t) {
      const bool expect = !texts[t].empty() && m.CanAccept(texts[t]);
      ASSERT_EQ(allowed[t], expect) << "at " << i << " token '" << texts[t] << "'";
    }
    if (i < call.size()) {
      ASSERT_TRUE(m.Accept(call.substr(i, 1)));
    }
  }
}

// Picks random allowed tokens until the grammar is complete: the result must be valid.
std::string RandomWalk(const std::shared_ptr<const Grammar>& g, const VocabIndex& vocab,
                       const std::vector<std::string>& texts, uint32_t seed) {
  std::mt19937 rng(seed);
  GrammarMatcher m(g);
  std::string out;
  std::vector<bool> allowed;
  for (int step = 0; step < 3000 && !m.IsComplete(); ++step) {
    m.FillAllowed(vocab, &allowed);
    std::vector<int> choices;
    for (size_t t = 0; t < allowed.size(); ++t) {
      if (allowed[t]) choices.push_back(static_cast<int>(t));
    }
    if (choices.empty()) {
      ADD_FAILURE() << "dead end after '" << out << "'";
      return out;
    }
    // Prefer closing tokens now and then so walks terminate.
    const int pick = choices[rng() % choices.size()];
    EXPECT_TRUE(m.Accept(texts[pick]));
    out += texts[pick];
  }
  return out;
}

TEST(GrammarTest, RandomWalksAlwaysGiveValidOutput) {
  const std::vector<std::string> texts = SyntheticVocab(2000, 9);
  const VocabIndex vocab(texts);
  auto tools = ToolGrammar();
  int completed = 0;
  for (uint32_t seed = 0; seed < 40; ++seed) {
    GrammarMatcher probe(tools);
    const std::string out = RandomWalk(tools, vocab, texts, seed);
    probe.Accept(out);
    if (!probe.IsComplete()) continue;  // step limit (long strings); validity still checked
    ++completed;
    ASSERT_EQ(out.substr(out.size() - 12), "<tool_call|>");
    auto call = ParseToolCall(out.substr(0, out.size() - 12));
    ASSERT_TRUE(call.ok()) << out << ": " << call.status().message();
    if (call->name == "get_weather") {
      ASSERT_NE(call->arguments.Find("city"), nullptr) << out;
      EXPECT_TRUE(call->arguments.Find("city")->is_string());
    }
  }
  EXPECT_GT(completed, 10);
  auto schema = CompileJsonSchemaGrammar(J(R"({"type": "object", "properties": {
      "a": {"type": "integer"}, "b": {"type": "string", "maxLength": 5},
      "c": {"type": "array", "items": {"type": "boolean"}, "maxItems": 2}},
      "required": ["a", "b"]})"));
  ASSERT_TRUE(schema.ok());
  for (uint32_t seed = 0; seed < 30; ++seed) {
    const std::string out = RandomWalk(*schema, vocab, texts, seed);
    GrammarMatcher probe(*schema);
    ASSERT_TRUE(probe.Accept(out));
    if (!probe.IsComplete()) continue;
    auto v = json::Parse(out);
    ASSERT_TRUE(v.ok()) << out;
    int64_t a;
    EXPECT_TRUE(v->Find("a")->GetInt64(&a)) << out;
    EXPECT_TRUE(v->Find("b")->is_string()) << out;
  }
}

TEST(GrammarTest, FullSizeVocabulary) {
  const std::vector<std::string> texts = SyntheticVocab(262144, 11);
  const VocabIndex vocab(texts);
  auto g = ToolGrammar();
  GrammarMatcher m(g);
  ASSERT_TRUE(m.Accept("call:get_weather{city:" + kQ + "Pa"));  // inside a string: most allowed
  std::vector<bool> allowed;
  const auto start = std::chrono::steady_clock::now();
  m.FillAllowed(vocab, &allowed);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  size_t n = 0;
  for (bool a : allowed) n += a;
  std::printf("FillAllowed over 262144 tokens inside a string: %.1f ms, %zu allowed\n", ms, n);
  EXPECT_GT(n, 1000u);
}

}  // namespace
}  // namespace gemma4::chat
