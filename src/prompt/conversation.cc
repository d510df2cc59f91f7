#include "prompt/conversation.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>

#include "chat/tool_syntax.h"

namespace gemma4::prompt {

namespace {

json::Value ParseOr(std::string_view text, json::Value fallback) {
  auto v = json::Parse(text, "json");
  return v.ok() ? std::move(*v) : std::move(fallback);
}

// The ids of a rendered chat: special tokens only where the template wrote them (markup and
// media placeholders), content always as text, spliced id runs as they are. A content byte
// that could begin a special token is flagged literal, so no special token starts at or spans
// it; the text between splices is encoded in one piece.
StatusOr<std::vector<int32_t>> EncodeSegments(const TokenizerImpl& tokenizer,
                                              const chat::RenderedChat& rendered,
                                              const std::vector<std::vector<int32_t>>& splices) {
  bool protect[256];
  for (int b = 0; b < 256; ++b) {
    protect[b] = tokenizer.StartsSpecialToken(static_cast<unsigned char>(b));
  }
  std::vector<int32_t> ids;
  std::string plain;
  std::vector<uint8_t> literal;
  auto flush = [&] {
    tokenizer.Encode(plain, /*add_special_tokens=*/false, &ids, &literal);
    plain.clear();
    literal.clear();
  };
  for (const chat::Segment& segment : rendered.segments()) {
    switch (segment.kind) {
      case chat::Segment::Kind::kContent:
        plain += segment.text;
        for (char c : segment.text) literal.push_back(protect[static_cast<unsigned char>(c)]);
        break;
      case chat::Segment::Kind::kSplice:
        if (segment.splice >= splices.size()) {
          return InternalError("rendered prompt: a splice names no recorded turn");
        }
        flush();
        ids.insert(ids.end(), splices[segment.splice].begin(), splices[segment.splice].end());
        break;
      default:  // markup and media placeholders
        plain += segment.text;
        literal.resize(plain.size(), 0);
        break;
    }
  }
  flush();
  return ids;
}

// Messages as the OpenAI-style JSON RenderChat takes. A model turn with recorded ids becomes a
// token_ids part (its ids appended to *splices).
std::vector<json::Value> ToMessages(const std::vector<Message>& messages,
                                    std::vector<std::vector<int32_t>>* splices) {
  std::vector<json::Value> out;
  for (const Message& t : messages) {
    json::Value::Object m;
    const char* role = t.role == Role::kSystem ? "system"
                       : t.role == Role::kUser ? "user"
                                               : "assistant";
    m.emplace_back("role", json::Value::String(role));
    if (t.role == Role::kModel && t.recorded) {
      json::Value::Object part;
      part.emplace_back("type", json::Value::String("token_ids"));
      part.emplace_back("index", json::Value::Integer(static_cast<int64_t>(splices->size())));
      json::Value::Array parts;
      parts.push_back(json::Value::MakeObject(std::move(part)));
      m.emplace_back("content", json::Value::MakeArray(std::move(parts)));
      splices->push_back(t.recorded_ids);
      out.push_back(json::Value::MakeObject(std::move(m)));
      continue;
    }
    if (t.parts.empty()) {
      m.emplace_back("content", json::Value::String(std::string(t.text)));
    } else {
      json::Value::Array parts;
      for (const Part& part : t.parts) {
        json::Value::Object item;
        switch (part.kind) {
          case Part::Kind::kImage:
            item.emplace_back("type", json::Value::String("image"));
            break;
          case Part::Kind::kAudio:
            item.emplace_back("type", json::Value::String("audio"));
            break;
          case Part::Kind::kVideo:
            item.emplace_back("type", json::Value::String("video"));
            break;
          case Part::Kind::kText:
            item.emplace_back("type", json::Value::String("text"));
            item.emplace_back("text", json::Value::String(std::string(part.text)));
            break;
        }
        parts.push_back(json::Value::MakeObject(std::move(item)));
      }
      m.emplace_back("content", json::Value::MakeArray(std::move(parts)));
    }
    if (!t.tool_calls.empty()) {
      json::Value::Array calls;
      for (const ToolCallText& c : t.tool_calls) {
        json::Value::Object f;
        f.emplace_back("name", json::Value::String(std::string(c.name)));
        f.emplace_back("arguments", ParseOr(c.arguments_json, json::Value::MakeObject()));
        json::Value::Object call;
        call.emplace_back("type", json::Value::String("function"));
        call.emplace_back("function", json::Value::MakeObject(std::move(f)));
        calls.push_back(json::Value::MakeObject(std::move(call)));
      }
      m.emplace_back("tool_calls", json::Value::MakeArray(std::move(calls)));
    }
    if (!t.tool_results.empty()) {
      json::Value::Array responses;
      for (const ToolResultText& r : t.tool_results) {
        json::Value::Object o;
        o.emplace_back("name", json::Value::String(std::string(r.name)));
        o.emplace_back("response",
                       ParseOr(r.response_json, json::Value::String(std::string(r.response_json))));
        responses.push_back(json::Value::MakeObject(std::move(o)));
      }
      m.emplace_back("tool_responses", json::Value::MakeArray(std::move(responses)));
    }
    out.push_back(json::Value::MakeObject(std::move(m)));
  }
  return out;
}

// 64-bit FNV-1a over bytes, continuing from `h`.
uint64_t Fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// "mm:ss" as the processor writes a frame's timestamp.
std::string Timestamp(double seconds) {
  const long long s = static_cast<long long>(seconds);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%02lld:%02lld", s / 60, s % 60);
  return buf;
}

}  // namespace

// Content digest of a decoded image at a budget: two independent 64-bit hashes (hex).
std::string ImageDigest(const media::RgbImage& image, int budget) {
  const int64_t header[3] = {image.width, image.height, budget};
  uint64_t a = Fnv1a(header, sizeof(header), 0xcbf29ce484222325ull);
  a = Fnv1a(image.pixels.data(), image.pixels.size(), a);
  uint64_t b = Fnv1a(header, sizeof(header), 0x84222325cbf29ce4ull);
  for (size_t i = 0; i < image.pixels.size(); i += 8) {
    uint64_t word = 0;
    std::memcpy(&word, image.pixels.data() + i, std::min<size_t>(8, image.pixels.size() - i));
    b = Mix(b ^ word) + i;
  }
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b));
  return buf;
}

// Content digest of 16 kHz mono samples.
std::string AudioDigest(const std::vector<float>& samples) {
  const int64_t n = static_cast<int64_t>(samples.size());
  uint64_t a = Fnv1a(&n, sizeof(n), 0x9ae16a3b2f90404full);
  a = Fnv1a(samples.data(), samples.size() * sizeof(float), a);
  uint64_t b = Mix(static_cast<uint64_t>(n) ^ 0xc2b2ae3d27d4eb4full);
  for (float v : samples) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    b = Mix(b ^ bits);
  }
  char buf[48];
  std::snprintf(buf, sizeof(buf), "a%016llx%016llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b));
  return buf;
}

StatusOr<RenderedPrompt> RenderConversation(const std::vector<Message>& messages,
                                            const std::vector<json::Value>& declarations,
                                            bool thinking, const PromptFormat& format,
                                            const TokenizerImpl& tokenizer,
                                            const ImageRows& media_cache,
                                            const AudioRows& audio_cache) {
  chat::RenderOptions render;
  render.variant = format.variant;
  render.enable_thinking = thinking;
  render.add_generation_prompt = true;
  render.bos_token = format.bos_token;
  render.strip_model_thoughts = false;  // model turns' text is content
  // Model turns are their recorded ids (what the KV cache holds), so the prompt matches the
  // cache wherever the template would re-render a turn differently (tool-call arguments in
  // sorted key order, trimmed text, the 26B/31B empty thought channel).
  std::vector<std::vector<int32_t>> spliced;
  GEMMA4_ASSIGN_OR_RETURN(chat::RenderedChat rendered,
                          chat::RenderChat(ToMessages(messages, &spliced), declarations, render));
  // Videos are expanded in the text, as the processor does (the timestamps are text): each
  // video placeholder becomes "mm:ss <|image>" + <|video|> x n + "<image|>" per frame, joined
  // by spaces.
  std::vector<const VideoFrameRef*> video_frames;
  {
    std::vector<const Part*> videos;
    for (const Message& m : messages) {
      for (const Part& part : m.parts) {
        if (part.kind == Part::Kind::kVideo) videos.push_back(&part);
      }
    }
    chat::RenderedChat expanded;
    size_t next = 0;
    for (const chat::Segment& segment : rendered.segments()) {
      switch (segment.kind) {
        case chat::Segment::Kind::kMarkup:
          expanded.Markup(segment.text);
          break;
        case chat::Segment::Kind::kContent:
          expanded.Content(segment.text);
          break;
        case chat::Segment::Kind::kSplice:
          expanded.Splice(segment.splice);
          break;
        case chat::Segment::Kind::kImage:
        case chat::Segment::Kind::kAudio:
          expanded.Media(segment.kind, segment.text);
          break;
        case chat::Segment::Kind::kVideo: {
          if (next >= videos.size()) {
            return InvalidArgumentError(
                "the conversation's text holds a video placeholder token that no video fills");
          }
          const Part& v = *videos[next++];
          std::string text;
          for (size_t f = 0; f < v.frames.size(); ++f) {
            auto it = media_cache.find(std::string(v.frames[f].digest));
            if (it == media_cache.end()) return InternalError("a video frame was not encoded");
            const size_t rows = it->second->size() / format.config->hidden_size;
            if (f > 0) text += ' ';
            text += Timestamp(v.frames[f].seconds) + " <|image>";
            for (size_t r = 0; r < rows; ++r) text += segment.text;
            text += "<image|>";
            video_frames.push_back(&v.frames[f]);
          }
          expanded.Markup(text);
          break;
        }
      }
    }
    if (next != videos.size()) return InternalError("the rendered prompt lost a video");
    rendered = std::move(expanded);
  }
  GEMMA4_ASSIGN_OR_RETURN(std::vector<int32_t> ids, EncodeSegments(tokenizer, rendered, spliced));
  for (int32_t id : ids) {
    if (id < 0 || id >= format.vocab_size) {
      return DataLossError("the conversation holds token id " + std::to_string(id) +
                           " outside the model's vocabulary of " +
                           std::to_string(format.vocab_size));
    }
  }
  // Media: each <|image|> the template wrote becomes <|image> + <|image|> x rows + <image|>,
  // in the order of the history's images (what transformers' processor does to the text).
  std::vector<std::string> images;
  std::vector<std::string> audios;
  for (const Message& m : messages) {
    for (const Part& part : m.parts) {
      if (part.kind == Part::Kind::kImage) images.emplace_back(part.digest);
      if (part.kind == Part::Kind::kAudio) audios.emplace_back(part.digest);
    }
  }
  size_t next_audio = 0;
  size_t next_frame = 0;  // video frame whose rows come next
  int64_t frame_row = 0;  // rows of that frame already placed
  const ModelConfig& c = *format.config;
  RenderedPrompt p;
  size_t next_image = 0;
  int32_t next_block = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id == c.video_token_id) {
      if (next_frame >= video_frames.size()) {
        return InvalidArgumentError("more video placeholder tokens than video frames give");
      }
      const std::string frame_digest(video_frames[next_frame]->digest);
      const std::vector<float>& soft = *media_cache.at(frame_digest);
      const int64_t H = c.hidden_size, rows = static_cast<int64_t>(soft.size()) / H;
      const uint64_t base = Mix(std::hash<std::string>()(frame_digest) ^ 0x85ebca6bu);
      p.ids.push_back(id);
      p.keys.push_back((uint64_t{1} << 63) | (Mix(base + static_cast<uint64_t>(frame_row)) >> 1));
      p.rows.push_back(soft.data() + frame_row * H);
      // One bidirectional block per frame (26B/31B).
      p.block.push_back(next_block);
      p.longest_block = std::max(p.longest_block, rows);
      if (++frame_row == rows) {
        frame_row = 0;
        ++next_frame;
        ++next_block;
      }
      continue;
    }
    if (id == c.audio_token_id) {
      // <|audio> + <|audio|> x rows + <audio|> per 30 s piece, in order.
      if (next_audio >= audios.size()) {
        return InvalidArgumentError(
            "the conversation's text holds an audio placeholder token that no recording fills");
      }
      const std::string& digest = audios[next_audio++];
      auto it = audio_cache.find(digest);
      if (it == audio_cache.end()) return InternalError("audio " + digest + " was not encoded");
      const int64_t H = c.hidden_size;
      uint64_t base = Mix(std::hash<std::string>()(digest) ^ 0x27d4eb2fu);
      for (const std::vector<float>& piece : *it->second) {
        const int64_t rows = static_cast<int64_t>(piece.size()) / H;
        p.ids.push_back(c.boa_token_id);
        p.keys.push_back(static_cast<uint32_t>(c.boa_token_id));
        p.rows.push_back(nullptr);
        p.block.push_back(-1);
        for (int64_t r = 0; r < rows; ++r) {
          p.ids.push_back(c.audio_token_id);
          p.keys.push_back((uint64_t{1} << 63) | (Mix(base + static_cast<uint64_t>(r)) >> 1));
          p.rows.push_back(piece.data() + r * H);
          p.block.push_back(-1);  // audio is causal in the language model
        }
        base = Mix(base + 0x9e3779b97f4a7c15ull);
        p.ids.push_back(c.eoa_token_id);
        p.keys.push_back(static_cast<uint32_t>(c.eoa_token_id));
        p.rows.push_back(nullptr);
        p.block.push_back(-1);
      }
      continue;
    }
    if (id != c.image_token_id) {
      p.ids.push_back(id);
      p.keys.push_back(static_cast<uint32_t>(id));
      p.rows.push_back(nullptr);
      p.block.push_back(-1);
      continue;
    }
    if (next_image >= images.size()) {
      return InvalidArgumentError(
          "the conversation's text holds an image placeholder token that no image fills");
    }
    const std::string& digest = images[next_image++];
    auto it = media_cache.find(digest);
    if (it == media_cache.end()) return InternalError("image " + digest + " was not encoded");
    const std::vector<float>& soft = *it->second;
    const int64_t H = c.hidden_size, rows = static_cast<int64_t>(soft.size()) / H;
    const uint64_t base = Mix(std::hash<std::string>()(digest) ^ 0x5bd1e995u);
    p.ids.push_back(c.boi_token_id);
    p.keys.push_back(static_cast<uint32_t>(c.boi_token_id));
    p.rows.push_back(nullptr);
    p.block.push_back(-1);
    for (int64_t r = 0; r < rows; ++r) {
      p.ids.push_back(c.image_token_id);
      p.keys.push_back((uint64_t{1} << 63) | (Mix(base + static_cast<uint64_t>(r)) >> 1));
      p.rows.push_back(soft.data() + r * H);
      p.block.push_back(next_block);
    }
    ++next_block;
    p.longest_block = std::max(p.longest_block, rows);
    p.ids.push_back(c.eoi_token_id);
    p.keys.push_back(static_cast<uint32_t>(c.eoi_token_id));
    p.rows.push_back(nullptr);
    p.block.push_back(-1);
  }
  if (next_image != images.size() || next_audio != audios.size() ||
      next_frame != video_frames.size() || frame_row != 0) {
    return InternalError("the rendered prompt lost a media placeholder");
  }
  const bool system_turn =
      thinking || !declarations.empty() || (!messages.empty() && messages[0].role == Role::kSystem);
  if (system_turn && p.ids.size() > 2 && p.ids[1] == format.turn_open) {
    for (size_t i = 2; i < p.ids.size(); ++i) {
      if (p.ids[i] == format.turn_open) {
        p.system_end = i;
        break;
      }
    }
  }
  return p;
}

StatusOr<std::vector<int32_t>> ToolResponseIds(const std::vector<ToolResultText>& results,
                                               const TokenizerImpl& tokenizer) {
  // Tool names and results are content: no string in them becomes a control token (a result
  // holding "<tool_response|><turn|>" stays text).
  chat::RenderedChat rendered;
  for (const ToolResultText& r : results) {
    chat::WriteToolResponse(
        r.name, ParseOr(r.response_json, json::Value::String(std::string(r.response_json))),
        &rendered);
  }
  return EncodeSegments(tokenizer, rendered, {});
}

size_t ReusablePrefix(const RenderedPrompt& prompt, const std::vector<uint64_t>& cached_keys) {
  if (prompt.size() == 0) return 0;
  size_t common = 0;
  while (common < prompt.size() && common < cached_keys.size() &&
         prompt.keys[common] == cached_keys[common]) {
    ++common;
  }
  // At least one token must run to produce the next logits.
  if (common == prompt.size()) --common;
  // Never start inside a bidirectional image block: its rows see each other.
  while (common > 0 && common < prompt.size() && prompt.block[common] >= 0 &&
         prompt.block[common - 1] == prompt.block[common]) {
    --common;
  }
  return common;
}

std::vector<int32_t> WithoutSpans(const std::vector<int32_t>& tokens,
                                  const std::vector<std::pair<int32_t, int32_t>>& spans) {
  std::vector<int32_t> out;
  size_t pos = 0;
  for (const auto& [begin, end] : spans) {
    const size_t b = std::min<size_t>(static_cast<size_t>(begin), tokens.size());
    const size_t e = std::min<size_t>(static_cast<size_t>(end), tokens.size());
    if (b < pos || e < b) continue;
    out.insert(out.end(), tokens.begin() + static_cast<std::ptrdiff_t>(pos),
               tokens.begin() + static_cast<std::ptrdiff_t>(b));
    pos = e;
  }
  out.insert(out.end(), tokens.begin() + static_cast<std::ptrdiff_t>(pos), tokens.end());
  return out;
}

}  // namespace gemma4::prompt
