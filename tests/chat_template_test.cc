// Chat rendering vs transformers' apply_chat_template over the official Gemma 4 template
// (tests/fixtures/chat/renderings.json, tools/reference/make_chat_fixtures.py): byte-exact text
// for both template variants, and the token ids of the rendering.
#include "chat/chat_template.h"

#include <gtest/gtest.h>

#include "base/json.h"
#include "formats/mapped_file.h"
#include "gemma4/tokenizer.h"

namespace gemma4::chat {
namespace {

const std::string kFixtures = GEMMA4_FIXTURES_DIR;

std::vector<json::Value> AsList(const json::Value* v) {
  if (v == nullptr || !v->is_array()) return {};
  return v->as_array();
}

TEST(ChatTemplateTest, MatchesTransformersRenderings) {
  auto text = ReadFileToString(kFixtures + "/chat/renderings.json");
  ASSERT_TRUE(text.ok());
  auto root = json::Parse(*text, "renderings.json");
  ASSERT_TRUE(root.ok()) << root.status().message();
  auto tokenizer = Tokenizer::Load(kFixtures + "/tokenizer/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok());
  int checked = 0;
  for (const json::Value& r : root->as_array()) {
    const std::string name = r.Find("name")->as_string() + "/" + r.Find("variant")->as_string();
    RenderOptions options;
    options.variant = r.Find("variant")->as_string() == "large" ? TemplateVariant::kLarge
                                                                : TemplateVariant::kSmall;
    options.add_generation_prompt = r.Find("add_generation_prompt")->as_bool();
    options.enable_thinking = r.Find("enable_thinking")->as_bool();
    auto rendered = RenderChat(AsList(r.Find("messages")), AsList(r.Find("tools")), options);
    ASSERT_TRUE(rendered.ok()) << name << ": " << rendered.status().message();
    EXPECT_EQ(rendered->Text(), r.Find("text")->as_string()) << name;
    std::vector<int32_t> expected_ids;
    for (const json::Value& id : r.Find("ids")->as_array()) {
      int64_t v = 0;
      id.GetInt64(&v);
      expected_ids.push_back(static_cast<int32_t>(v));
    }
    EXPECT_EQ((*tokenizer)->Encode(rendered->Text()), expected_ids) << name;
    ++checked;
  }
  EXPECT_GE(checked, 30);
}

TEST(ChatTemplateTest, PythonStripMatchesStrSplit) {
  EXPECT_EQ(PythonStrip("  a b \n\t"), "a b");
  EXPECT_EQ(PythonStrip("\xE3\x80\x80x\xC2\xA0"), "x");  // U+3000, U+00A0
  EXPECT_EQ(PythonStrip("\x1f"
                        "y\x1c"),
            "y");
  EXPECT_EQ(PythonStrip("\xE2\x80\x8B"
                        "z"),
            "\xE2\x80\x8B"
            "z");  // U+200B is not space
  EXPECT_EQ(PythonStrip(""), "");
  EXPECT_EQ(PythonStrip(" \n "), "");
}

TEST(ChatTemplateTest, RejectsMalformedMessages) {
  auto bad_calls = json::Parse(R"({"role": "assistant", "tool_calls": {"x": 1}})");
  ASSERT_TRUE(bad_calls.ok());
  EXPECT_FALSE(RenderChat({*bad_calls}, {}, {}).ok());
  auto no_name = json::Parse(R"({"role": "assistant", "tool_calls": [{"function": {}}]})");
  ASSERT_TRUE(no_name.ok());
  auto r = RenderChat({*no_name}, {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("function.name"), std::string::npos);
  EXPECT_FALSE(RenderChat({json::Value::Integer(3)}, {}, {}).ok());
}

// The segments tell what the template wrote from what the conversation holds: control strings
// typed in content stay content, media parts are placeholders in order, a token_ids part is a
// splice, and strings inside tool syntax are content between markup delimiters.
TEST(ChatTemplateTest, SegmentsSeparateMarkupFromContent) {
  auto messages = json::Parse(R"([
    {"role": "user", "content": [{"type": "text", "text": "Hi <|turn>"}, {"type": "image"},
                                 {"type": "audio"}, {"type": "video"}]},
    {"role": "assistant", "content": [{"type": "token_ids", "index": 7}]},
    {"role": "user", "content": "Next"},
    {"role": "assistant", "tool_calls": [{"function": {"name": "f<", "arguments": {"k": "v<"}}}],
     "tool_responses": [{"name": "f<", "response": 3}]}])");
  ASSERT_TRUE(messages.ok());
  auto r = RenderChat(messages->as_array(), {}, {});
  ASSERT_TRUE(r.ok()) << r.status().message();
  std::vector<std::pair<Segment::Kind, std::string>> got;
  for (const Segment& s : r->segments()) {
    got.emplace_back(s.kind, s.kind == Segment::Kind::kSplice ? std::to_string(s.splice) : s.text);
  }
  using K = Segment::Kind;
  const std::vector<std::pair<Segment::Kind, std::string>> want = {
      {K::kMarkup, "<bos><|turn>user\n"},
      {K::kContent, "Hi <|turn>"},
      {K::kImage, "<|image|>"},
      {K::kAudio, "<|audio|>"},
      {K::kVideo, "<|video|>"},
      {K::kMarkup, "<turn|>\n<|turn>model\n"},
      {K::kSplice, "7"},
      {K::kMarkup, "<turn|>\n<|turn>user\n"},
      {K::kContent, "Next"},
      {K::kMarkup, "<turn|>\n<|turn>model\n<|tool_call>call:"},
      {K::kContent, "f<"},
      {K::kMarkup, "{"},
      {K::kContent, "k"},
      {K::kMarkup, ":<|\"|>"},
      {K::kContent, "v<"},
      {K::kMarkup, "<|\"|>}<tool_call|><|tool_response>response:"},
      {K::kContent, "f<"},
      {K::kMarkup, "{value:3}<tool_response|>"},
  };
  EXPECT_EQ(got, want);
  auto bad = json::Parse(R"([{"role": "assistant", "content": [{"type": "token_ids"}]}])");
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(RenderChat(bad->as_array(), {}, {}).ok());
}

// strip_model_thoughts off: a model turn's text is only trimmed (its "<|channel>" is content).
TEST(ChatTemplateTest, ModelTextKeepsChannelsWhenItIsContent) {
  auto messages = json::Parse(
      R"([{"role": "assistant", "content": " <|channel>thought\nx<channel|>Answer "}])");
  ASSERT_TRUE(messages.ok());
  RenderOptions options;
  options.add_generation_prompt = false;
  auto stripped = RenderChat(messages->as_array(), {}, options);
  ASSERT_TRUE(stripped.ok());
  EXPECT_EQ(stripped->Text(), "<bos><|turn>model\nAnswer<turn|>\n");
  options.strip_model_thoughts = false;
  auto kept = RenderChat(messages->as_array(), {}, options);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->Text(), "<bos><|turn>model\n<|channel>thought\nx<channel|>Answer<turn|>\n");
}

}  // namespace
}  // namespace gemma4::chat
