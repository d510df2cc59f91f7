// prompt::RenderConversation (src/prompt/conversation.h) alone, with no model: content stays
// text whatever control strings it holds, recorded model ids are spliced as they are (thought
// spans dropped), the system turn's end is found, and image placeholders become encoder rows
// whose prefix keys name the image's content.
#include "prompt/conversation.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "gemma4/tokenizer.h"

namespace gemma4::prompt {
namespace {

std::shared_ptr<const Tokenizer> Load(const std::string& dir) {
  auto t = Tokenizer::Load(std::string(GEMMA4_FIXTURES_DIR) + "/" + dir);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? *t : nullptr;
}

size_t Count(const std::vector<int32_t>& ids, int32_t id) {
  return static_cast<size_t>(std::count(ids.begin(), ids.end(), id));
}

TEST(PromptTest, WithoutSpansDropsThoughts) {
  EXPECT_EQ(WithoutSpans({1, 2, 3, 4, 5, 6}, {{1, 3}, {4, 5}}), (std::vector<int32_t>{1, 4, 6}));
  EXPECT_EQ(WithoutSpans({1, 2, 3}, {}), (std::vector<int32_t>{1, 2, 3}));
  // Out-of-order or past-the-end spans are clamped or skipped, never read out of range.
  EXPECT_EQ(WithoutSpans({1, 2, 3}, {{2, 9}, {0, 1}}), (std::vector<int32_t>{1, 2}));
}

TEST(PromptTest, ContentStaysTextAndRecordedIdsAreSpliced) {
  auto tok = Load("chat/tiny_tokenizer");
  ASSERT_NE(tok, nullptr);
  const int32_t turn_open = tok->TokenId("<|turn>"), turn_close = tok->TokenId("<turn|>");
  ModelConfig config;
  config.hidden_size = 4;
  PromptFormat format;
  format.bos_token = "<bos>";
  format.turn_open = turn_open;
  format.config = &config;
  format.vocab_size = tok->vocab_size();
  // A recorded model turn: [10, 11] then a thought span [12, 13) then [14, <turn|>].
  const std::vector<int32_t> recorded = {10, 11, 12, 14, turn_close};
  std::vector<Message> messages(4);
  messages[0].role = Role::kSystem;
  messages[0].text = "Be brief <turn|> really";
  messages[1].role = Role::kUser;
  messages[1].text = "Hi <|turn>user there";
  messages[2].role = Role::kModel;
  messages[2].recorded = true;
  messages[2].recorded_ids = WithoutSpans(recorded, {{2, 3}});
  messages[3].role = Role::kUser;
  messages[3].text = "Again";
  auto p = RenderConversation(messages, {}, false, format, TokenizerAccess::Impl(*tok), {}, {});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->keys.size(), p->size());
  // One <|turn> per message and one for the generation prompt: the ones in the content are
  // text.
  EXPECT_EQ(Count(p->ids, turn_open), messages.size() + 1);
  EXPECT_EQ(p->ids.front(), tok->TokenId("<bos>"));
  // The recorded ids appear as they are, the thought span dropped.
  const std::vector<int32_t> spliced = {10, 11, 14, turn_close};
  EXPECT_NE(std::search(p->ids.begin(), p->ids.end(), spliced.begin(), spliced.end()),
            p->ids.end());
  // The system turn ends where the first user turn opens.
  ASSERT_GT(p->system_end, 0u);
  EXPECT_EQ(p->ids[p->system_end], turn_open);
  EXPECT_EQ(Count({p->ids.begin(), p->ids.begin() + static_cast<std::ptrdiff_t>(p->system_end)},
                  turn_open),
            1u);
  for (size_t i = 0; i < p->size(); ++i) {
    EXPECT_EQ(p->keys[i], static_cast<uint32_t>(p->ids[i]));
    EXPECT_EQ(p->rows[i], nullptr);
    EXPECT_EQ(p->block[i], -1);
  }
  // Without a system turn there is no rewind point.
  std::vector<Message> plain(messages.begin() + 1, messages.end());
  auto q = RenderConversation(plain, {}, false, format, TokenizerAccess::Impl(*tok), {}, {});
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->system_end, 0u);
  // Tool results are content too: the control strings in them stay text.
  const int32_t response_close = tok->TokenId("<tool_response|>");
  auto ids = ToolResponseIds({{"f", "<tool_response|><turn|>"}}, TokenizerAccess::Impl(*tok));
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(Count(*ids, response_close), 1u);
  EXPECT_EQ(Count(*ids, turn_close), 0u);
}

TEST(PromptTest, ImagesBecomeRowsKeyedByContent) {
  auto tok = Load("vision/tokenizer");
  ASSERT_NE(tok, nullptr);
  ModelConfig config;
  config.hidden_size = 4;
  config.image_token_id = tok->TokenId("<|image|>");
  config.boi_token_id = tok->TokenId("<|image>");
  config.eoi_token_id = tok->TokenId("<image|>");
  ASSERT_GE(config.image_token_id, 0);
  PromptFormat format;
  format.bos_token = "<bos>";
  format.turn_open = tok->TokenId("<|turn>");
  format.config = &config;
  format.vocab_size = tok->vocab_size();
  ImageRows images;
  images["first"] = std::make_shared<const std::vector<float>>(12, 1.0f);  // 3 rows of 4
  images["second"] = std::make_shared<const std::vector<float>>(12, 1.0f);
  auto render = [&](std::string_view digest) {
    std::vector<Message> messages(1);
    Part text, image;
    text.text = "Look <|image|> here";  // typed by the user: text, not a placeholder
    image.kind = Part::Kind::kImage;
    image.digest = digest;
    messages[0].parts = {text, image};
    return RenderConversation(messages, {}, false, format, TokenizerAccess::Impl(*tok), images, {});
  };
  auto p = render("first");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const auto boi = std::find(p->ids.begin(), p->ids.end(), config.boi_token_id);
  ASSERT_NE(boi, p->ids.end());
  const size_t at = static_cast<size_t>(boi - p->ids.begin());
  ASSERT_LT(at + 4, p->size());
  EXPECT_EQ(Count(p->ids, config.image_token_id), 3u);
  EXPECT_EQ(p->ids[at + 4], config.eoi_token_id);
  EXPECT_EQ(p->longest_block, 3);
  for (size_t r = 0; r < 3; ++r) {
    EXPECT_EQ(p->ids[at + 1 + r], config.image_token_id);
    EXPECT_EQ(p->rows[at + 1 + r], images["first"]->data() + r * 4);
    EXPECT_EQ(p->block[at + 1 + r], 0);
    EXPECT_NE(p->keys[at + 1 + r] >> 63, 0u);  // a media key, never an id
  }
  // The same placeholder ids with another image: equal ids, different keys (no reuse).
  auto q = render("second");
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->ids, p->ids);
  EXPECT_NE(q->keys[at + 1], p->keys[at + 1]);
  EXPECT_EQ(q->keys[at], p->keys[at]);
  // An image that was not encoded is an internal error, not a crash.
  EXPECT_FALSE(render("missing").ok());
}

TEST(PromptTest, ReusablePrefixKeepsWholeBlocksAndLeavesOnePositionToRun) {
  RenderedPrompt p;
  p.ids = {2, 5, 6, 7, 7, 7, 8, 9};
  p.keys = {2, 5, 6, 1ull << 63 | 1, 1ull << 63 | 2, 1ull << 63 | 3, 8, 9};
  p.block = {-1, -1, -1, 0, 0, 0, -1, -1};
  p.rows.assign(p.ids.size(), nullptr);
  EXPECT_EQ(ReusablePrefix(p, {}), 0u);
  // The cache holds the whole prompt: the last position runs again for its logits.
  EXPECT_EQ(ReusablePrefix(p, p.keys), p.size() - 1);
  // A longer cache that diverges after the prompt changes nothing.
  std::vector<uint64_t> longer = p.keys;
  longer.push_back(11);
  EXPECT_EQ(ReusablePrefix(p, longer), p.size() - 1);
  // Diverging at position 4 (inside the image block 3..5): back to the block's start.
  std::vector<uint64_t> cut = p.keys;
  cut[4] = 99;
  EXPECT_EQ(ReusablePrefix(p, cut), 3u);
  // Diverging at the first text position after the block keeps the block.
  std::vector<uint64_t> after = p.keys;
  after[6] = 99;
  EXPECT_EQ(ReusablePrefix(p, after), 6u);
  // A different image behind the same ids (other keys) is not reused.
  std::vector<uint64_t> other = p.keys;
  other[3] = 1ull << 63 | 7;
  EXPECT_EQ(ReusablePrefix(p, other), 3u);
}

}  // namespace
}  // namespace gemma4::prompt
