// A conversation -> the prompt the model runs: messages (with media already encoded) are
// rendered with the Gemma 4 chat template, tokenized with content always as text, and media
// placeholders expanded into encoder rows, each position with the key that KV prefix reuse
// compares (a media row's key hashes the item's content digest, so a different image behind the
// same placeholder ids never shares the cache).
#ifndef GEMMA4_SRC_PROMPT_CONVERSATION_H_
#define GEMMA4_SRC_PROMPT_CONVERSATION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/json.h"
#include "chat/chat_template.h"
#include "gemma4/status.h"
#include "media/image.h"
#include "model/config.h"
#include "tokenizer/tokenizer_impl.h"

namespace gemma4::prompt {

enum class Role { kSystem, kUser, kModel };

struct VideoFrameRef {
  std::string_view digest;  // of the frame's soft tokens in MediaRows::images
  double seconds = 0;
};

// One part of a user message: text, or an encoded medium named by its content digest.
struct Part {
  enum class Kind { kText, kImage, kAudio, kVideo };
  Kind kind = Kind::kText;
  std::string_view text;
  std::string_view digest;            // kImage (MediaRows::images), kAudio (MediaRows::audio)
  std::vector<VideoFrameRef> frames;  // kVideo, in time order
};

struct ToolCallText {
  std::string_view name, arguments_json;
};
struct ToolResultText {
  std::string_view name, response_json;
};

// One turn of the history. Views into the caller's history, which outlives the rendering.
struct Message {
  Role role = Role::kUser;
  std::string_view text;    // when `parts` is empty
  std::vector<Part> parts;  // a user turn with media: every part in order
  // A model turn with recorded ids (what the KV cache holds): they stand for the turn in the
  // prompt, its thought channels dropped as the official template drops them.
  bool recorded = false;
  std::vector<int32_t> recorded_ids;
  std::vector<ToolCallText> tool_calls;
  std::vector<ToolResultText> tool_results;
};

// `tokens` without the [begin, end) spans (sorted, disjoint; out-of-order ones are skipped).
std::vector<int32_t> WithoutSpans(const std::vector<int32_t>& tokens,
                                  const std::vector<std::pair<int32_t, int32_t>>& spans);

// A rendered conversation: its ids, plus what each position holds beyond the id (an encoder
// row for media placeholders) and the key prefix reuse compares.
struct RenderedPrompt {
  std::vector<int32_t> ids;
  // The id for text; for a media row a hash of the item's digest and the row, high bit set,
  // so that a different image behind the same placeholder ids never shares the KV cache.
  std::vector<uint64_t> keys;
  std::vector<const float*> rows;  // the position's soft token, or null for text
  std::vector<int32_t> block;      // bidirectional image block id, or -1
  int64_t longest_block = 0;
  // Where the system turn (system prompt, tool declarations) ends, or 0 without one: the
  // session keeps a rewind point there, so dropping or rewinding later turns reuses it.
  size_t system_end = 0;
  size_t size() const { return ids.size(); }
};

// KV prefix reuse: how many leading positions of `prompt` the cache may keep when it holds
// positions with `cached_keys`: the common key prefix, less one when it covers the whole
// prompt (a position must run to give the next logits), moved back to the start of a
// bidirectional image block it would cut (the block's rows see each other).
size_t ReusablePrefix(const RenderedPrompt& prompt, const std::vector<uint64_t>& cached_keys);

// Soft tokens of encoded media, by content digest: images and video frames ([rows, hidden]),
// recordings (one [rows, hidden] block per 30 s piece).
using ImageRows = std::unordered_map<std::string, std::shared_ptr<const std::vector<float>>>;
using AudioRows =
    std::unordered_map<std::string, std::shared_ptr<const std::vector<std::vector<float>>>>;

struct PromptFormat {
  chat::TemplateVariant variant = chat::TemplateVariant::kSmall;
  std::string bos_token;  // its text, as the template writes it
  int32_t turn_open = -1;
  const ModelConfig* config = nullptr;  // placeholder ids, hidden size
  int vocab_size = 0;                   // every id must be below it
};

// Renders `messages` (and `tools`, the declarations as JSON objects) with the generation
// prompt. The rows point into `images` and `audio`, which must outlive the result.
StatusOr<RenderedPrompt> RenderConversation(const std::vector<Message>& messages,
                                            const std::vector<json::Value>& tools, bool thinking,
                                            const PromptFormat& format,
                                            const TokenizerImpl& tokenizer, const ImageRows& images,
                                            const AudioRows& audio);

// The ids of tool responses as fed after a round of calls (names and results are content:
// no string in them becomes a control token).
StatusOr<std::vector<int32_t>> ToolResponseIds(const std::vector<ToolResultText>& results,
                                               const TokenizerImpl& tokenizer);

// Content digests (two independent 64-bit hashes, hex) that name encoded media in the caches
// and in prefix keys: a decoded image at a soft-token budget, 16 kHz mono samples.
std::string ImageDigest(const media::RgbImage& image, int budget);
std::string AudioDigest(const std::vector<float>& samples);

}  // namespace gemma4::prompt

#endif  // GEMMA4_SRC_PROMPT_CONVERSATION_H_
