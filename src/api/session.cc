// The chat loop: renders the conversation with the Gemma 4 template, reuses the KV cache for
// the longest common token prefix, samples the model's turn while splitting it into thought,
// text and tool calls, runs tools and continues the turn, all bounded and cancellable.
#include "gemma4/session.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "api/model_impl.h"
#include "api/session_impl.h"
#include "audio/audio_encoder.h"
#include "base/hash.h"
#include "base/json.h"
#include "chat/chat_template.h"
#include "chat/tool_syntax.h"
#include "decode/grammar.h"
#include "media/audio_file.h"
#include "media/image.h"
#include "media/video_file.h"
#include "model/forward.h"
#include "tokenizer/tokenizer_impl.h"
#include "vision/image_preprocess.h"

namespace gemma4 {

namespace {

json::Value ParseOr(const std::string& text, json::Value fallback) {
  auto v = json::Parse(text, "json");
  return v.ok() ? std::move(*v) : std::move(fallback);
}

// Conversation content (user, system, tool text) goes into the template escaped, so that
// nothing in it can act as markup: every byte that could begin a special token (and \x01, the
// escape byte itself) becomes \x01 L <byte in decimal> \x02; a model turn's recorded ids are
// represented by \x01 S <index> \x02. Once rendered, Unmark turns the text back into bytes plus
// a literal flag per byte (flagged bytes never start or belong to a special token) and the
// splice points. Escaped strings keep their whitespace, sort order aside only for '<'.
class ContentEscaper {
 public:
  explicit ContentEscaper(const TokenizerImpl& tokenizer) {
    for (int b = 0; b < 256; ++b) {
      protect_[b] = b == 0x01 || tokenizer.StartsSpecialToken(static_cast<unsigned char>(b));
    }
  }
  std::string Escape(std::string_view text) const {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
      const unsigned char b = static_cast<unsigned char>(c);
      if (protect_[b]) {
        out += "\x01L" + std::to_string(b) + "\x02";
      } else {
        out += c;
      }
    }
    return out;
  }
  json::Value Escape(const json::Value& v) const {
    if (v.is_string()) return json::Value::String(Escape(v.as_string()));
    if (v.is_array()) {
      json::Value::Array items;
      for (const json::Value& item : v.as_array()) items.push_back(Escape(item));
      return json::Value::MakeArray(std::move(items));
    }
    if (v.is_object()) {
      json::Value::Object members;
      for (const auto& [key, value] : v.as_object())
        members.emplace_back(Escape(key), Escape(value));
      return json::Value::MakeObject(std::move(members));
    }
    return v;
  }
  static std::string SpliceMarker(size_t index) { return "\x01S" + std::to_string(index) + "\x02"; }

 private:
  bool protect_[256] = {};
};

// The ids of escaped text with spliced id runs: special tokens only where the template wrote
// them, content always as text.
StatusOr<std::vector<int32_t>> EncodeMarked(const TokenizerImpl& tokenizer, std::string_view marked,
                                            const std::vector<std::vector<int32_t>>& splices) {
  std::vector<int32_t> ids;
  std::string plain;
  std::vector<uint8_t> literal;
  auto flush = [&] {
    tokenizer.Encode(plain, /*add_special_tokens=*/false, &ids, &literal);
    plain.clear();
    literal.clear();
  };
  for (size_t i = 0; i < marked.size(); ++i) {
    if (marked[i] != '\x01') {
      plain += marked[i];
      literal.push_back(0);
      continue;
    }
    const size_t close = marked.find('\x02', i);
    if (close == std::string_view::npos || close < i + 3) {
      return InternalError("rendered prompt: unterminated content marker");
    }
    const char kind = marked[i + 1];
    size_t value = 0;
    for (size_t k = i + 2; k < close; ++k) {
      if (marked[k] < '0' || marked[k] > '9') {
        return InternalError("rendered prompt: bad content marker");
      }
      value = value * 10 + static_cast<size_t>(marked[k] - '0');
      if (value > (size_t{1} << 40)) return InternalError("rendered prompt: bad content marker");
    }
    if (kind == 'L' && value < 256) {
      plain += static_cast<char>(value);
      literal.push_back(1);
    } else if (kind == 'S' && value < splices.size()) {
      flush();
      ids.insert(ids.end(), splices[value].begin(), splices[value].end());
    } else {
      return InternalError("rendered prompt: bad content marker");
    }
    i = close;
  }
  flush();
  return ids;
}

// A model turn's recorded ids as the next prompt holds them: its thought channels dropped, as
// the official template drops the thoughts of turns before the last user turn.
std::vector<int32_t> ModelTurnIds(const Turn& t) {
  std::vector<int32_t> out;
  size_t pos = 0;
  for (const auto& [begin, end] : t.thought_spans) {
    const size_t b = std::min<size_t>(static_cast<size_t>(begin), t.tokens.size());
    const size_t e = std::min<size_t>(static_cast<size_t>(end), t.tokens.size());
    if (b < pos || e < b) continue;
    out.insert(out.end(), t.tokens.begin() + static_cast<std::ptrdiff_t>(pos),
               t.tokens.begin() + static_cast<std::ptrdiff_t>(b));
    pos = e;
  }
  out.insert(out.end(), t.tokens.begin() + static_cast<std::ptrdiff_t>(pos), t.tokens.end());
  return out;
}

// History turns as the OpenAI-style messages RenderChat takes, content escaped. A model turn
// with recorded ids becomes a splice marker (its ids appended to *splices).
std::vector<json::Value> ToMessages(const std::vector<Turn>& history, const ContentEscaper& esc,
                                    std::vector<std::vector<int32_t>>* splices) {
  std::vector<json::Value> out;
  for (const Turn& t : history) {
    json::Value::Object m;
    const char* role = t.role == Role::kSystem ? "system"
                       : t.role == Role::kUser ? "user"
                                               : "assistant";
    m.emplace_back("role", json::Value::String(role));
    if (t.role == Role::kModel && !t.tokens.empty()) {
      m.emplace_back("content", json::Value::String(ContentEscaper::SpliceMarker(splices->size())));
      splices->push_back(ModelTurnIds(t));
      out.push_back(json::Value::MakeObject(std::move(m)));
      continue;
    }
    if (t.content.empty()) {
      m.emplace_back("content", json::Value::String(esc.Escape(t.text)));
    } else {
      json::Value::Array parts;
      for (const ContentPart& part : t.content) {
        json::Value::Object item;
        if (part.image.has_value()) {
          item.emplace_back("type", json::Value::String("image"));
        } else if (part.audio.has_value()) {
          item.emplace_back("type", json::Value::String("audio"));
        } else if (part.video.has_value()) {
          item.emplace_back("type", json::Value::String("video"));
        } else {
          item.emplace_back("type", json::Value::String("text"));
          item.emplace_back("text", json::Value::String(esc.Escape(part.text)));
        }
        parts.push_back(json::Value::MakeObject(std::move(item)));
      }
      m.emplace_back("content", json::Value::MakeArray(std::move(parts)));
    }
    if (!t.tool_calls.empty()) {
      json::Value::Array calls;
      for (const ToolCall& c : t.tool_calls) {
        json::Value::Object f;
        f.emplace_back("name", json::Value::String(esc.Escape(c.name)));
        f.emplace_back("arguments",
                       esc.Escape(ParseOr(c.arguments_json, json::Value::MakeObject())));
        json::Value::Object call;
        call.emplace_back("type", json::Value::String("function"));
        call.emplace_back("function", json::Value::MakeObject(std::move(f)));
        calls.push_back(json::Value::MakeObject(std::move(call)));
      }
      m.emplace_back("tool_calls", json::Value::MakeArray(std::move(calls)));
    }
    if (!t.tool_results.empty()) {
      json::Value::Array responses;
      for (const ToolResult& r : t.tool_results) {
        json::Value::Object o;
        o.emplace_back("name", json::Value::String(esc.Escape(r.name)));
        o.emplace_back("response",
                       esc.Escape(ParseOr(r.response_json, json::Value::String(r.response_json))));
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

// "mm:ss" as the processor writes a frame's timestamp.
std::string Timestamp(double seconds) {
  const long long s = static_cast<long long>(seconds);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%02lld:%02lld", s / 60, s % 60);
  return buf;
}

StatusOr<media::RgbImage> DecodeImagePart(const Image& image) {
  const int sources = !image.path.empty() + !image.encoded.empty() + !image.rgb.empty();
  if (sources != 1) {
    return InvalidArgumentError("an Image needs exactly one of path, encoded bytes or rgb pixels");
  }
  if (!image.path.empty()) return media::LoadImageFile(image.path);
  if (!image.encoded.empty()) return media::DecodeImage(image.encoded, "image bytes");
  // The pixels must be exactly width * height * 3 bytes: never read past the caller's buffer.
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() / 3 / static_cast<size_t>(image.width) !=
          static_cast<size_t>(image.height) ||
      image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3) {
    return InvalidArgumentError("Image::rgb holds " + std::to_string(image.rgb.size()) +
                                " bytes, not width * height * 3 for " +
                                std::to_string(image.width) + "x" + std::to_string(image.height));
  }
  return media::ImageFromPixels(image.rgb.data(), image.width, image.height, 3,
                                int64_t{image.width} * 3);
}

// InferenceState rewind slots: the end of the system turn, and the start of the latest thought.
constexpr int kSystemRewindSlot = 0;
constexpr int kThoughtRewindSlot = 1;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

Status SessionImpl::Init() {
  const int64_t model_max = m_.info.max_context > 0 ? m_.info.max_context : (int64_t{1} << 17);
  if (options_.max_context < 0) {
    return InvalidArgumentError("SessionOptions.max_context must be >= 0");
  }
  max_context_ = options_.max_context > 0 ? std::min(options_.max_context, model_max) : model_max;
  if (const uint64_t limit = m_.options.memory_limit_bytes; limit != 0) {
    // Refused here, up front, rather than failing to grow the cache deep into a conversation.
    GEMMA4_ASSIGN_OR_RETURN(const PlanInputs* inputs, m_.plan_inputs());
    GEMMA4_RETURN_IF_ERROR(CheckMemoryLimit(*inputs, ComputeMemoryPlan(*inputs, max_context_),
                                            limit, "a session of the model " + m_.info.path));
  }
  if (!options_.system_prompt.empty()) {
    Turn t;
    t.role = Role::kSystem;
    t.text = options_.system_prompt;
    history_.push_back(std::move(t));
  }
  return OkStatus();
}

SamplerOptions SessionImpl::SamplerFor(const GenerateOptions& options) const {
  return options.sampler.has_value() ? *options.sampler : m_.info.default_sampler;
}

bool SessionImpl::IsStop(int32_t id) const {
  for (int32_t s : m_.info.stop_token_ids) {
    if (s == id) return true;
  }
  return id == m_.special.turn_close || id == m_.special.tool_response_open;
}

StatusOr<RenderedPrompt> SessionImpl::RenderPrompt(bool thinking) const {
  std::vector<json::Value> tools;
  if (options_.tools != nullptr && options_.tools->size() > 0) {
    auto parsed = json::Parse(options_.tools->DeclarationsJson(), "tools");
    if (!parsed.ok()) return parsed.status();
    tools = parsed->as_array();
  }
  chat::RenderOptions render;
  render.variant =
      m_.info.large_chat_template ? chat::TemplateVariant::kLarge : chat::TemplateVariant::kSmall;
  render.enable_thinking = thinking;
  render.add_generation_prompt = true;
  render.bos_token = m_.tokenizer->TokenString(m_.special.bos);
  const ContentEscaper esc(m_.tokenizer->impl());
  for (json::Value& tool : tools) tool = esc.Escape(tool);
  // Model turns are their recorded ids (what the KV cache holds), so the prompt matches the
  // cache wherever the template would re-render a turn differently (tool-call arguments in
  // sorted key order, trimmed text, the 26B/31B empty thought channel).
  std::vector<std::vector<int32_t>> spliced;
  GEMMA4_ASSIGN_OR_RETURN(std::string text,
                          chat::RenderChat(ToMessages(history_, esc, &spliced), tools, render));
  // Videos are expanded in the text, as the processor does (the timestamps are text): each
  // <|video|> the template wrote becomes "mm:ss <|image>" + <|video|> x n + "<image|>" per
  // frame, joined by spaces.
  std::vector<const VideoFrame*> video_frames;
  {
    std::vector<const Video*> videos;
    for (const Turn& t : history_) {
      for (const ContentPart& part : t.content) {
        if (part.video.has_value()) videos.push_back(&*part.video);
      }
    }
    const std::string marker = "<|video|>";
    std::string expanded;
    size_t pos = 0, next = 0;
    for (size_t at = text.find(marker); at != std::string::npos; at = text.find(marker, pos)) {
      if (next >= videos.size()) {
        return InvalidArgumentError(
            "the conversation's text holds a video placeholder token that no video fills");
      }
      expanded.append(text, pos, at - pos);
      const Video& v = *videos[next++];
      for (size_t f = 0; f < v.frames.size(); ++f) {
        auto it = media_cache_.find(v.frames[f].image.digest);
        if (it == media_cache_.end()) return InternalError("a video frame was not encoded");
        const size_t rows = it->second->size() / m_.loaded->config().hidden_size;
        if (f > 0) expanded += ' ';
        expanded += Timestamp(v.frames[f].seconds) + " <|image>";
        for (size_t r = 0; r < rows; ++r) expanded += marker;
        expanded += "<image|>";
        video_frames.push_back(&v.frames[f]);
      }
      pos = at + marker.size();
    }
    if (next != videos.size()) return InternalError("the rendered prompt lost a video");
    if (next > 0) {
      expanded.append(text, pos, std::string::npos);
      text.swap(expanded);
    }
  }
  GEMMA4_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                          EncodeMarked(m_.tokenizer->impl(), text, spliced));
  for (int32_t id : ids) {
    if (id < 0 || id >= m_.info.vocab_size) {
      return DataLossError("the conversation holds token id " + std::to_string(id) +
                           " outside the model's vocabulary of " +
                           std::to_string(m_.info.vocab_size));
    }
  }
  // Media: each <|image|> the template wrote becomes <|image> + <|image|> x rows + <image|>,
  // in the order of the history's images (what transformers' processor does to the text).
  std::vector<const Image*> images;
  std::vector<const Audio*> audios;
  for (const Turn& t : history_) {
    for (const ContentPart& part : t.content) {
      if (part.image.has_value()) images.push_back(&*part.image);
      if (part.audio.has_value()) audios.push_back(&*part.audio);
    }
  }
  size_t next_audio = 0;
  size_t next_frame = 0;  // video frame whose rows come next
  int64_t frame_row = 0;  // rows of that frame already placed
  const ModelConfig& c = m_.loaded->config();
  RenderedPrompt p;
  size_t next_image = 0;
  int32_t next_block = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id == c.video_token_id) {
      if (next_frame >= video_frames.size()) {
        return InvalidArgumentError("more video placeholder tokens than video frames give");
      }
      const Image& frame = video_frames[next_frame]->image;
      const std::vector<float>& soft = *media_cache_.at(frame.digest);
      const int64_t H = c.hidden_size, rows = static_cast<int64_t>(soft.size()) / H;
      const uint64_t base = Mix(std::hash<std::string>()(frame.digest) ^ 0x85ebca6bu);
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
      const std::string& digest = audios[next_audio++]->digest;
      auto it = audio_cache_.find(digest);
      if (it == audio_cache_.end()) return InternalError("audio " + digest + " was not encoded");
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
    const std::string& digest = images[next_image++]->digest;
    auto it = media_cache_.find(digest);
    if (it == media_cache_.end()) return InternalError("image " + digest + " was not encoded");
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
      thinking || !tools.empty() || (!history_.empty() && history_[0].role == Role::kSystem);
  if (system_turn && p.ids.size() > 2 && p.ids[1] == m_.special.turn_open) {
    for (size_t i = 2; i < p.ids.size(); ++i) {
      if (p.ids[i] == m_.special.turn_open) {
        p.system_end = i;
        break;
      }
    }
  }
  return p;
}

Status SessionImpl::Feed(const std::vector<int32_t>& ids) {
  if (ids.empty()) return OkStatus();
  if (static_cast<int64_t>(tokens_.size() + ids.size()) > max_context_) {
    return ResourceExhaustedError("context full: " + std::to_string(tokens_.size() + ids.size()) +
                                  " tokens needed, the session holds at most " +
                                  std::to_string(max_context_));
  }
  const int64_t V = m_.loaded->config().vocab_size, H = m_.loaded->config().hidden_size;
  // A drafted token the model already ran: its logits and hidden state are at hand.
  if (ids.size() == 1 && spec_.used < spec_.tokens.size() && ids[0] == spec_.tokens[spec_.used]) {
    const size_t i = spec_.used++;
    logits_.assign(spec_.logits.begin() + i * V, spec_.logits.begin() + (i + 1) * V);
    last_hidden_.assign(spec_.hidden.begin() + i * H, spec_.hidden.begin() + (i + 1) * H);
    ++accepted_;
    tokens_.push_back(ids[0]);
    keys_.push_back(static_cast<uint32_t>(ids[0]));
    last_hidden_at_ = static_cast<int64_t>(tokens_.size());
    return OkStatus();
  }
  GEMMA4_RETURN_IF_ERROR(DropSpeculation());
  const int64_t position = static_cast<int64_t>(tokens_.size());
  // Draft after a single token when the hidden state before it is known: the drafter proposes
  // from (token, hidden state), and the model checks [token, drafts] in one forward.
  int k = 0;
  if (m_.drafter != nullptr && draft_tokens_ > 0 && ids.size() == 1 &&
      last_hidden_at_ == position) {
    k = static_cast<int>(
        std::min<int64_t>({draft_tokens_, state_->max_chunk() - 2, max_context_ - position - 1}));
  }
  std::vector<int32_t> batch = ids;
  {
    std::lock_guard<std::mutex> lock(m_.compute_mutex);
    hidden_rows_.clear();
    state_->set_hidden_output(&hidden_rows_);
    struct ClearHidden {
      InferenceState* state;
      ~ClearHidden() { state->set_hidden_output(nullptr); }
    } clear_hidden{state_.get()};
    if (k > 0) {
      std::vector<float> h = last_hidden_, draft_logits;
      int32_t last = ids[0];
      for (int i = 0; i < k; ++i) {
        GEMMA4_RETURN_IF_ERROR(m_.drafter->Step(*m_.loaded, *state_, last, position, &h,
                                                &draft_logits, m_.pool.get()));
        if (draft_hook) draft_hook(position, i, &draft_logits);
        last = static_cast<int32_t>(std::max_element(draft_logits.begin(), draft_logits.end()) -
                                    draft_logits.begin());
        batch.push_back(last);
      }
    }
    GEMMA4_RETURN_IF_ERROR(state_->Forward(batch.data(), static_cast<int64_t>(batch.size()),
                                           k > 0 ? LogitsMode::kAll : LogitsMode::kLast, &logits_));
  }
  if (k > 0) {
    spec_.tokens.assign(batch.begin() + 1, batch.end());
    spec_.logits.assign(logits_.begin() + V, logits_.end());
    spec_.hidden.assign(hidden_rows_.begin() + H, hidden_rows_.end());
    spec_.used = 0;
    logits_.resize(V);
    drafted_ += k;
    last_hidden_.assign(hidden_rows_.begin(), hidden_rows_.begin() + H);
  } else if (static_cast<int64_t>(hidden_rows_.size()) >= H) {
    last_hidden_.assign(hidden_rows_.end() - H, hidden_rows_.end());
  }
  tokens_.insert(tokens_.end(), ids.begin(), ids.end());
  for (int32_t id : ids) keys_.push_back(static_cast<uint32_t>(id));
  last_hidden_at_ = static_cast<int64_t>(tokens_.size());
  return OkStatus();
}

Status SessionImpl::DropSpeculation() {
  const size_t unused = spec_.tokens.size() - spec_.used;
  spec_ = Speculation();
  if (unused == 0) return OkStatus();
  std::lock_guard<std::mutex> lock(m_.compute_mutex);
  return state_->Truncate(static_cast<int64_t>(tokens_.size()));
}

Status SessionImpl::FeedPrompt(const RenderedPrompt& prompt, size_t begin) {
  const size_t n = prompt.size() - begin;
  if (n == 0) return OkStatus();
  if (static_cast<int64_t>(tokens_.size() + n) > max_context_) {
    return ResourceExhaustedError("context full: " + std::to_string(tokens_.size() + n) +
                                  " tokens needed, the session holds at most " +
                                  std::to_string(max_context_));
  }
  const int64_t H = m_.loaded->config().hidden_size;
  // One forward chunk per call, so that Cancel() takes effect within a chunk during prefill.
  const size_t step = static_cast<size_t>(std::max<int64_t>(1, state_->max_chunk()));
  std::vector<uint8_t> embedded;
  std::vector<float> embeddings;
  for (size_t at = begin; at < prompt.size();) {
    if (cancel_.load(std::memory_order_relaxed)) {
      return CancelledError("cancelled while processing the prompt, " + std::to_string(at - begin) +
                            " of " + std::to_string(n) + " tokens in");
    }
    size_t end = std::min(prompt.size(), at + step);
    if (at < prompt.system_end && prompt.system_end < end) end = prompt.system_end;
    // A bidirectional block lies inside one call: stop before a block the chunk would cut, or
    // take the whole block when it starts the chunk (it fits: see SyncPrompt).
    if (end < prompt.size() && prompt.block[end] >= 0 &&
        prompt.block[end - 1] == prompt.block[end]) {
      size_t block_start = end;
      while (block_start > at && prompt.block[block_start - 1] == prompt.block[end]) --block_start;
      if (block_start > at) {
        end = block_start;
      } else {
        while (end < prompt.size() && prompt.block[end] == prompt.block[at]) ++end;
      }
    }
    embedded.assign(end - at, 0);
    embeddings.clear();
    for (size_t i = at; i < end; ++i) {
      if (const float* row = prompt.rows[i]; row != nullptr) {
        embedded[i - at] = 1;
        embeddings.insert(embeddings.end(), row, row + H);
      }
    }
    ForwardInput input;
    input.ids = prompt.ids.data() + at;
    input.n = static_cast<int64_t>(end - at);
    if (!embeddings.empty()) {
      input.embedded = embedded.data();
      input.embeddings = embeddings.data();
    }
    if (prompt.longest_block > 0) input.block = prompt.block.data() + at;
    {
      std::lock_guard<std::mutex> lock(m_.compute_mutex);
      GEMMA4_RETURN_IF_ERROR(state_->Forward(
          input, end == prompt.size() ? LogitsMode::kLast : LogitsMode::kNone, &logits_));
    }
    tokens_.insert(tokens_.end(), prompt.ids.begin() + static_cast<std::ptrdiff_t>(at),
                   prompt.ids.begin() + static_cast<std::ptrdiff_t>(end));
    keys_.insert(keys_.end(), prompt.keys.begin() + static_cast<std::ptrdiff_t>(at),
                 prompt.keys.begin() + static_cast<std::ptrdiff_t>(end));
    at = end;
    if (at == prompt.system_end &&
        state_->rewind_point(kSystemRewindSlot) != static_cast<int64_t>(at)) {
      GEMMA4_RETURN_IF_ERROR(state_->SetRewindPoint(kSystemRewindSlot));
    }
  }
  return OkStatus();
}

Status SessionImpl::SyncPrompt(const RenderedPrompt& prompt, Reply* reply) {
  if (prompt.size() == 0) return InternalError("empty prompt");
  // Images attended to bidirectionally must fit in one forward chunk: a state with a larger
  // chunk starts over (once, when the first such image arrives).
  if (m_.loaded->config().bidirectional_vision && prompt.longest_block > state_->max_chunk()) {
    state_ = std::make_unique<InferenceState>(*m_.loaded, m_.pool.get(), prompt.longest_block,
                                              m_.kv_type);
    tokens_.clear();
    keys_.clear();
  }
  size_t common = 0;
  while (common < prompt.size() && common < keys_.size() && prompt.keys[common] == keys_[common]) {
    ++common;
  }
  // At least one token must run to produce the next logits.
  if (common == prompt.size()) --common;
  // Never start inside a bidirectional image block: its rows see each other.
  while (common > 0 && common < prompt.size() && prompt.block[common] >= 0 &&
         prompt.block[common - 1] == prompt.block[common]) {
    --common;
  }
  if (common < tokens_.size() && !state_->CanTruncateTo(static_cast<int64_t>(common))) {
    // A model turn's thoughts are dropped from the next prompt: the cache returns to where the
    // thought began (remembered when it opened), which the sliding-window rings alone could
    // not do past max_chunk positions.
    const int64_t point = state_->LatestRewindPoint(static_cast<int64_t>(common));
    if (point >= 0) common = static_cast<size_t>(point);
  }
  if (common < tokens_.size()) {
    if (state_->CanTruncateTo(static_cast<int64_t>(common))) {
      GEMMA4_RETURN_IF_ERROR(state_->Truncate(static_cast<int64_t>(common)));
    } else {
      // The sliding-window layers no longer hold the positions before `common`: start over.
      state_ = std::make_unique<InferenceState>(*m_.loaded, m_.pool.get(), state_->max_chunk(),
                                                m_.kv_type);
      common = 0;
    }
    tokens_.resize(common);
    keys_.resize(common);
  }
  reply->reused_tokens = static_cast<int>(common);
  reply->prompt_tokens = static_cast<int>(prompt.size() - common);
  const auto start = std::chrono::steady_clock::now();
  GEMMA4_RETURN_IF_ERROR(FeedPrompt(prompt, common));
  reply->prefill_seconds = Seconds(start);
  return OkStatus();
}

StatusOr<Reply> SessionImpl::Send(std::string_view user_text, const GenerateOptions& options) {
  Turn user;
  user.role = Role::kUser;
  user.text = std::string(user_text);
  return SendTurn(std::move(user), options);
}

StatusOr<Reply> SessionImpl::Send(std::vector<ContentPart> content,
                                  const GenerateOptions& options) {
  Turn user;
  user.role = Role::kUser;
  bool media = false;
  for (const ContentPart& part : content) {
    if (part.image.has_value() || part.audio.has_value() || part.video.has_value()) {
      media = true;
    } else {
      user.text += part.text;
    }
  }
  if (media) {
    user.content = std::move(content);
    Status encoded = EncodeMedia(&user);
    if (encoded.code() == StatusCode::kCancelled) cancel_.store(false, std::memory_order_relaxed);
    GEMMA4_RETURN_IF_ERROR(encoded);
  }
  return SendTurn(std::move(user), options);
}

Status SessionImpl::EncodeMedia(Turn* turn) {
  const ModelConfig& c = m_.loaded->config();
  for (ContentPart& part : turn->content) {
    if (cancel_.load(std::memory_order_relaxed)) {
      return CancelledError("cancelled while encoding the turn's media");
    }
    if (part.audio.has_value()) {
      GEMMA4_RETURN_IF_ERROR(EncodeAudio(&*part.audio));
      continue;
    }
    if (part.video.has_value()) {
      GEMMA4_RETURN_IF_ERROR(EncodeVideo(&*part.video));
      continue;
    }
    if (!part.image.has_value()) continue;
    Image& image = *part.image;
    if (m_.vision == nullptr) return m_.vision_status;
    StatusOr<media::RgbImage> decoded = DecodeImagePart(image);
    if (!decoded.ok()) return decoded.status();
    const int budget = image.max_soft_tokens > 0 ? image.max_soft_tokens
                                                 : m_.vision->config().default_max_soft_tokens;
    const std::string digest = ImageDigest(*decoded, budget);
    if (media_cache_.count(digest) == 0) {
      GEMMA4_ASSIGN_OR_RETURN(vision::ImagePatches patches,
                              vision::PreprocessImage(*decoded, budget, m_.vision->config()));
      auto soft = std::make_shared<std::vector<float>>();
      {
        std::lock_guard<std::mutex> lock(m_.compute_mutex);
        GEMMA4_RETURN_IF_ERROR(m_.vision->Encode(patches, m_.pool.get(), soft.get(), &cancel_));
      }
      if (soft->empty() || soft->size() % static_cast<size_t>(c.hidden_size) != 0) {
        return InternalError("the vision tower returned no soft tokens");
      }
      media_cache_.emplace(digest, std::move(soft));
    }
    image.digest = digest;
    image.max_soft_tokens = budget;
    image.path.clear();
    image.encoded = std::string();
    image.rgb = std::vector<uint8_t>();
  }
  return OkStatus();
}

Status SessionImpl::EncodeVideo(Video* video) {
  if (m_.vision == nullptr) return m_.vision_status;
  const VisionConfig& vc = m_.vision->config();
  if (!video->path.empty()) {
    if (!video->frames.empty()) {
      return InvalidArgumentError("a Video needs either a path or frames, not both");
    }
    media::VideoSampling sampling;
    sampling.max_frames = vc.max_video_frames;
    GEMMA4_ASSIGN_OR_RETURN(std::vector<media::SampledFrame> sampled,
                            media::LoadVideoFrames(video->path, sampling));
    for (media::SampledFrame& f : sampled) {
      video->frames.push_back(
          {Image::FromRgb(std::move(f.image.pixels), f.image.width, f.image.height), f.seconds});
    }
    video->path.clear();
  }
  if (video->frames.empty()) return InvalidArgumentError("a Video without frames");
  if (static_cast<int>(video->frames.size()) > vc.max_video_frames) {
    return InvalidArgumentError("a Video of " + std::to_string(video->frames.size()) +
                                " frames: the model takes at most " +
                                std::to_string(vc.max_video_frames));
  }
  const int budget = video->max_soft_tokens_per_frame > 0 ? video->max_soft_tokens_per_frame
                                                          : vc.default_video_soft_tokens;
  int width = 0, height = 0;
  double last = -1;
  for (VideoFrame& frame : video->frames) {
    if (cancel_.load(std::memory_order_relaxed)) {
      return CancelledError("cancelled while encoding a video's frames");
    }
    if (!(frame.seconds >= last) || !(frame.seconds < 1e7)) {
      return InvalidArgumentError("video frames must come in time order with finite timestamps");
    }
    last = frame.seconds;
    GEMMA4_ASSIGN_OR_RETURN(media::RgbImage decoded, DecodeImagePart(frame.image));
    if (width != 0 && (decoded.width != width || decoded.height != height)) {
      return InvalidArgumentError("the frames of a video share one size (" + std::to_string(width) +
                                  "x" + std::to_string(height) + "), a frame is " +
                                  std::to_string(decoded.width) + "x" +
                                  std::to_string(decoded.height));
    }
    width = decoded.width;
    height = decoded.height;
    const std::string digest = "v" + ImageDigest(decoded, budget);
    if (media_cache_.count(digest) == 0) {
      GEMMA4_ASSIGN_OR_RETURN(
          vision::ImagePatches patches,
          vision::PreprocessImage(decoded, budget, vc, vision::PixelScale::kVideoFrame));
      auto soft = std::make_shared<std::vector<float>>();
      {
        std::lock_guard<std::mutex> lock(m_.compute_mutex);
        GEMMA4_RETURN_IF_ERROR(m_.vision->Encode(patches, m_.pool.get(), soft.get(), &cancel_));
      }
      media_cache_.emplace(digest, std::move(soft));
    }
    frame.image.digest = digest;
    frame.image.max_soft_tokens = budget;
    frame.image.path.clear();
    frame.image.encoded = std::string();
    frame.image.rgb = std::vector<uint8_t>();
  }
  video->max_soft_tokens_per_frame = budget;
  return OkStatus();
}

Status SessionImpl::EncodeAudio(Audio* audio) {
  if (m_.audio == nullptr) return m_.audio_status;
  const int sources = !audio->path.empty() + !audio->encoded.empty() + !audio->pcm.empty();
  if (sources != 1) {
    return InvalidArgumentError("an Audio needs exactly one of path, encoded bytes or pcm samples");
  }
  std::vector<float> samples;
  if (!audio->path.empty()) {
    GEMMA4_ASSIGN_OR_RETURN(media::DecodedAudio d, media::LoadAudioFile(audio->path));
    samples = std::move(d.samples);
  } else if (!audio->encoded.empty()) {
    GEMMA4_ASSIGN_OR_RETURN(media::DecodedAudio d,
                            media::DecodeAudio(audio->encoded, "audio bytes"));
    samples = std::move(d.samples);
  } else {
    for (float v : audio->pcm) {
      if (!std::isfinite(v)) return InvalidArgumentError("audio pcm holds a non-finite sample");
    }
    GEMMA4_ASSIGN_OR_RETURN(
        samples, media::ResampleMono(audio->pcm.data(), static_cast<int64_t>(audio->pcm.size()),
                                     audio->sample_rate));
  }
  const std::string digest = AudioDigest(samples);
  if (audio_cache_.count(digest) == 0) {
    auto pieces = std::make_shared<std::vector<std::vector<float>>>();
    {
      std::lock_guard<std::mutex> lock(m_.compute_mutex);
      GEMMA4_RETURN_IF_ERROR(audio::EncodeClip(*m_.audio, samples.data(),
                                               static_cast<int64_t>(samples.size()), m_.pool.get(),
                                               pieces.get(), &cancel_));
    }
    audio_cache_.emplace(digest, std::move(pieces));
  }
  audio->digest = digest;
  audio->path.clear();
  audio->encoded = std::string();
  audio->pcm = std::vector<float>();
  return OkStatus();
}

StatusOr<Reply> SessionImpl::SendTurn(Turn user, const GenerateOptions& options) {
  GEMMA4_RETURN_IF_ERROR(ValidateSamplerOptions(SamplerFor(options)));
  if (options.max_tokens < 1)
    return InvalidArgumentError("GenerateOptions.max_tokens must be >= 1");
  // A Send that fails leaves the history as it was (dropped turns included).
  std::vector<Turn> saved_history = history_;
  const bool saved_turn_open = turn_open_;
  auto restore = [&] {
    history_ = std::move(saved_history);
    turn_open_ = saved_turn_open;
  };
  // The previous turn may have stopped at tool calls nobody answered: it is closed as it stands.
  turn_open_ = false;
  history_.push_back(std::move(user));
  StatusOr<RenderedPrompt> prompt = RenderPrompt(options.thinking);
  while (prompt.ok() && static_cast<int64_t>(prompt->size()) + 1 > max_context_ &&
         options_.context_policy == ContextPolicy::kDropOldTurns) {
    // Drop the oldest exchange after the system prompt: a user turn with everything up to the
    // next user turn (never a lone turn, never the new user turn).
    const size_t first = !history_.empty() && history_[0].role == Role::kSystem ? 1 : 0;
    size_t end = first + 1;
    while (end < history_.size() && history_[end].role != Role::kUser) ++end;
    if (end >= history_.size()) break;  // only the new user turn is left
    history_.erase(history_.begin() + static_cast<std::ptrdiff_t>(first),
                   history_.begin() + static_cast<std::ptrdiff_t>(end));
    prompt = RenderPrompt(options.thinking);
  }
  if (!prompt.ok()) {
    restore();
    return prompt.status();
  }
  if (static_cast<int64_t>(prompt->size()) + 1 > max_context_) {
    restore();
    return ResourceExhaustedError(
        "context full: the conversation needs " + std::to_string(prompt->size()) +
        " tokens plus the reply, the session holds at most " + std::to_string(max_context_) +
        " (ContextPolicy::kDropOldTurns drops old turns)");
  }
  Reply reply;
  Status synced = SyncPrompt(*prompt, &reply);
  if (!synced.ok()) {
    // The cache keeps what it holds (tokens_ says what): the next Send reuses its prefix.
    restore();
    cancel_.store(false, std::memory_order_relaxed);
    return synced;
  }
  last_thinking_ = options.thinking;
  Turn model_turn;
  model_turn.role = Role::kModel;
  if (m_.info.large_chat_template && !options.thinking) {
    // The generation prompt's empty thought channel belongs to the model turn as the cache
    // holds it.
    std::vector<int32_t> channel = m_.tokenizer->Encode("<|channel>thought\n<channel|>");
    if (channel.size() <= prompt->ids.size() &&
        std::equal(channel.begin(), channel.end(),
                   prompt->ids.end() - static_cast<std::ptrdiff_t>(channel.size()))) {
      model_turn.tokens = std::move(channel);
    }
  }
  history_.push_back(std::move(model_turn));
  Status generated = Generate(options, &reply);
  cancel_.store(false, std::memory_order_relaxed);  // a cancel is consumed by the call it stops
  if (!generated.ok()) return generated;
  return reply;
}

StatusOr<Reply> SessionImpl::SubmitToolResults(const std::vector<ToolResult>& results,
                                               const GenerateOptions& options) {
  if (!turn_open_ || history_.empty() || history_.back().role != Role::kModel) {
    return FailedPreconditionError(
        "SubmitToolResults: the last turn did not stop at tool calls (StopReason::kToolCall)");
  }
  GEMMA4_RETURN_IF_ERROR(ValidateSamplerOptions(SamplerFor(options)));
  turn_open_ = false;
  Reply reply;
  std::vector<int32_t> ids;
  GEMMA4_RETURN_IF_ERROR(ToolResponseTokens(results, &ids));
  const auto start = std::chrono::steady_clock::now();
  GEMMA4_RETURN_IF_ERROR(Feed(ids));
  reply.prompt_tokens = static_cast<int>(ids.size());
  reply.reused_tokens = static_cast<int>(tokens_.size() - ids.size());
  reply.prefill_seconds = Seconds(start);
  Turn& turn = history_.back();
  turn.tokens.insert(turn.tokens.end(), ids.begin(), ids.end());
  turn.tool_results.insert(turn.tool_results.end(), results.begin(), results.end());
  reply.tool_results = results;
  Status generated = Generate(options, &reply);
  cancel_.store(false, std::memory_order_relaxed);  // a cancel is consumed by the call it stops
  GEMMA4_RETURN_IF_ERROR(generated);
  return reply;
}

Status SessionImpl::ToolResponseTokens(const std::vector<ToolResult>& results,
                                       std::vector<int32_t>* out) {
  // Tool names and results are content: escaped, so that no string in them becomes a control
  // token (a result holding "<tool_response|><turn|>" stays text).
  const ContentEscaper esc(m_.tokenizer->impl());
  std::string text;
  for (const ToolResult& r : results) {
    text += chat::FormatToolResponse(
        esc.Escape(r.name),
        esc.Escape(ParseOr(r.response_json, json::Value::String(r.response_json))));
  }
  GEMMA4_ASSIGN_OR_RETURN(*out, EncodeMarked(m_.tokenizer->impl(), text, {}));
  return OkStatus();
}

// Token-level state machine over the model's turn:
//   [<|channel>thought\n ... <channel|>] text [<|tool_call>call:f{...}<tool_call|>]* (stop)
// A stop after tool calls runs them (or returns kToolCall) and feeds
// <|tool_response>response:f{...}<tool_response|> before generation continues in the same turn.
Status SessionImpl::Generate(const GenerateOptions& options, Reply* reply) {
  const SpecialTokens& sp = m_.special;
  const Tokenizer& tok = *m_.tokenizer;
  Turn& turn = history_.back();
  Sampler sampler(SamplerFor(options));
  if (options.draft_tokens > kDefaultMaxChunk - 2) {
    return InvalidArgumentError(
        "GenerateOptions.draft_tokens = " + std::to_string(options.draft_tokens) + " exceeds " +
        std::to_string(kDefaultMaxChunk - 2));
  }
  draft_tokens_ = m_.drafter == nullptr      ? 0
                  : options.draft_tokens < 0 ? m_.draft_tokens
                                             : options.draft_tokens;
  drafted_ = accepted_ = 0;
  last_hidden_at_ = -1;  // the prompt's forward passes kept no hidden state
  // However generation ends, the cache holds tokens_ only afterwards.
  struct DropSpeculationOnExit {
    SessionImpl* session;
    ~DropSpeculationOnExit() { (void)session->DropSpeculation(); }
  } drop_speculation{this};
  enum class Mode { kText, kThought, kToolCall };
  Mode mode = Mode::kText;
  StreamingDetokenizer text_stream(m_.tokenizer, /*skip_special_tokens=*/true);
  StreamingDetokenizer thought_stream(m_.tokenizer, true);
  std::string raw_thought;              // includes the "thought\n" header
  size_t thought_emitted = 0;           // bytes of the cleaned thought already streamed
  std::string call_text;                // body of the current tool call
  std::vector<ToolCall> pending_calls;  // calls of the current round
  std::vector<int32_t> generated;       // sampled tokens of this reply
  // The freely sampled ones: the repetition guard watches only these, since forced and
  // grammar-constrained spans (JSON answers, tool-call arguments) repeat by design and cutting
  // them would leave invalid JSON or no call.
  std::vector<int32_t> free_generated;
  int thought_tokens = 0;
  int64_t open_thought = -1;  // where in turn.tokens the open thought channel began
  int tool_rounds = 0;
  std::unique_ptr<chat::GrammarMatcher> call_matcher;
  std::unique_ptr<chat::GrammarMatcher> json_matcher;
  std::shared_ptr<const chat::Grammar> tool_grammar, json_grammar;
  const bool have_tools = options_.tools != nullptr && options_.tools->size() > 0;
  if (have_tools && options.constrain_tool_calls) {
    auto decl = json::Parse(options_.tools->DeclarationsJson(), "tools");
    if (!decl.ok()) return decl.status();
    GEMMA4_ASSIGN_OR_RETURN(tool_grammar, chat::CompileToolCallGrammar(decl->as_array()));
  }
  if (!options.json_schema.empty()) {
    GEMMA4_ASSIGN_OR_RETURN(json::Value schema, json::Parse(options.json_schema, "json_schema"));
    GEMMA4_ASSIGN_OR_RETURN(json_grammar, chat::CompileJsonSchemaGrammar(schema));
    json_matcher = std::make_unique<chat::GrammarMatcher>(json_grammar);
  }
  bool answer_started = false;  // any answer text (json constraint starts here)
  bool after_call = false;      // the last token closed a tool call
  bool thought_closed = false;  // the thought channel has been closed
  std::vector<bool> allowed;
  const auto start = std::chrono::steady_clock::now();
  // Runs ids through the model as part of this model turn.
  auto feed = [&](const std::vector<int32_t>& ids) -> Status {
    GEMMA4_RETURN_IF_ERROR(Feed(ids));
    turn.tokens.insert(turn.tokens.end(), ids.begin(), ids.end());
    return OkStatus();
  };
  auto finish = [&](StopReason reason) {
    if (open_thought >= 0) {
      turn.thought_spans.emplace_back(static_cast<int32_t>(open_thought),
                                      static_cast<int32_t>(turn.tokens.size()));
      open_thought = -1;
    }
    std::string tail = text_stream.Flush();
    if (!tail.empty()) {
      turn.text += tail;
      reply->text += tail;
      if (options.on_text) options.on_text(StreamKind::kText, tail);
    }
    reply->stop_reason = reason;
    reply->decode_seconds = Seconds(start);
    reply->generated_tokens = static_cast<int>(generated.size());
    reply->drafted_tokens = drafted_;
    reply->accepted_draft_tokens = accepted_;
    reply->thought = turn.thought;
  };
  auto emit_text = [&](const std::string& piece) -> bool {
    if (piece.empty()) return true;
    turn.text += piece;
    reply->text += piece;
    return !options.on_text || options.on_text(StreamKind::kText, piece);
  };
  // Whether the thought channel so far holds nothing but (a beginning of) its "thought\n"
  // header; inside_thought_header: a started, unfinished header (not closed by the budget).
  static constexpr std::string_view kThoughtHeader = "thought\n";
  auto header_only = [&] {
    return raw_thought.size() <= kThoughtHeader.size() &&
           kThoughtHeader.substr(0, raw_thought.size()) == raw_thought;
  };
  auto inside_thought_header = [&] {
    return !raw_thought.empty() && raw_thought.size() < kThoughtHeader.size() && header_only();
  };
  auto emit_thought = [&](const std::string& piece) -> bool {
    raw_thought += piece;
    // The channel opens with "thought\n"; the header is not part of the thought.
    static constexpr std::string_view kHeader = "thought\n";
    size_t skip = 0;
    if (raw_thought.size() < kHeader.size() &&
        kHeader.substr(0, raw_thought.size()) == raw_thought) {
      return true;  // still possibly the header
    }
    if (raw_thought.compare(0, kHeader.size(), kHeader) == 0) skip = kHeader.size();
    const std::string clean = raw_thought.substr(skip);
    if (clean.size() <= thought_emitted) return true;
    const std::string fresh = clean.substr(thought_emitted);
    thought_emitted = clean.size();
    turn.thought += fresh;
    return !options.on_text || options.on_text(StreamKind::kThought, fresh);
  };

  while (true) {
    if (cancel_.load(std::memory_order_relaxed)) {
      finish(StopReason::kCancelled);
      return CancelledError("generation cancelled after " + std::to_string(generated.size()) +
                            " tokens");
    }
    if (static_cast<int>(generated.size()) >= options.max_tokens) {
      finish(StopReason::kMaxTokens);
      return OkStatus();
    }
    // Choose the next token: forced, constrained or free.
    if (logits_hook) logits_hook(&logits_, generated.size());
    int32_t next = -1;
    const bool must_call = options.require_tool_call && have_tools && sp.tool_call_open >= 0 &&
                           mode == Mode::kText && turn.tool_calls.empty() && !answer_started;
    if (must_call && options.thinking && generated.empty() && sp.channel_open >= 0) {
      next = sp.channel_open;  // thinking: the thought comes first, then the call
    } else if (must_call && (!options.thinking || thought_closed || sp.channel_open < 0)) {
      next = sp.tool_call_open;
    } else if (mode == Mode::kThought && options.thinking_budget >= 0 &&
               thought_tokens >= options.thinking_budget && !inside_thought_header() &&
               sp.channel_close >= 0) {
      next = sp.channel_close;  // budget spent: close the thought
    } else if (mode == Mode::kToolCall && call_matcher != nullptr && [&] {
                 // Arguments closed: the only continuation is <tool_call|>, as one token.
                 chat::GrammarMatcher probe = *call_matcher;
                 return probe.Accept("<tool_call|>") && probe.IsComplete();
               }()) {
      next = sp.tool_call_close;
    } else if (mode == Mode::kToolCall && call_matcher != nullptr) {
      call_matcher->FillAllowed(m_.tool_vocab(), &allowed);
      allowed.resize(logits_.size(), false);
      next = sampler.Sample(logits_, tokens_, allowed);
      if (next < 0)
        return InternalError("tool-call grammar allows no token after \"" + call_text + "\"");
    } else if (mode == Mode::kText && after_call && options.constrain_tool_calls) {
      // After <tool_call|> only another call or the end of the round may follow (a model that
      // writes text here would leave the call unanswered).
      allowed.assign(logits_.size(), false);
      const bool more = static_cast<int>(pending_calls.size()) < options.max_calls_per_round;
      for (int32_t id : {more ? sp.tool_call_open : -1, sp.tool_response_open}) {
        if (id >= 0 && id < static_cast<int32_t>(allowed.size())) allowed[id] = true;
      }
      next = sampler.Sample(logits_, tokens_, allowed);
      if (next < 0) return InternalError("no token may follow the tool call");
    } else if (mode == Mode::kText && json_matcher != nullptr) {
      if (json_matcher->IsComplete()) {
        next = sp.turn_close;  // the document is complete: end the turn
      } else {
        json_matcher->FillAllowed(m_.text_vocab(), &allowed);
        allowed.resize(logits_.size(), false);
        // Before the answer starts, a thought channel may still open.
        if (!answer_started && options.thinking && sp.channel_open >= 0 && turn.thought.empty()) {
          allowed[sp.channel_open] = true;
        }
        if (json_matcher->CanEnd()) allowed[sp.turn_close] = true;
        next = sampler.Sample(logits_, tokens_, allowed);
        if (next < 0) return InternalError("JSON grammar allows no token");
      }
    } else {
      next = sampler.Sample(logits_, tokens_);
      if (next < 0) return InternalError("the sampler found no token (all logits are -inf/NaN)");
      free_generated.push_back(next);
    }
    generated.push_back(next);
    if (options.on_token && !options.on_token(next)) cancel_.store(true);

    // Interpret it.
    after_call = false;
    if (mode == Mode::kThought) {
      if (next == sp.channel_close) {
        mode = Mode::kText;
        thought_closed = true;
        // The span ends with <channel|>, which is fed below.
        turn.thought_spans.emplace_back(static_cast<int32_t>(open_thought),
                                        static_cast<int32_t>(turn.tokens.size() + 1));
        open_thought = -1;
        if (!emit_thought(thought_stream.Flush())) cancel_.store(true);
      } else if (IsStop(next)) {
        // The model ended inside its thought: treat the thought as the whole turn.
        if (!emit_thought(thought_stream.Flush())) cancel_.store(true);
        finish(StopReason::kEndOfTurn);
        return OkStatus();
      } else {
        if (!emit_thought(thought_stream.Push(next))) cancel_.store(true);
        // The budget counts the thought's own tokens, not its "thought\n" header.
        if (!header_only()) ++thought_tokens;
      }
    } else if (mode == Mode::kToolCall) {
      if (next == sp.tool_call_close) {
        auto parsed = chat::ParseToolCall(call_text);
        ToolCall call;
        if (parsed.ok()) {
          call.name = parsed->name;
          call.arguments_json = parsed->arguments.Serialize();
        } else {
          // Unconstrained output that does not parse: keep the raw text for the caller.
          call.name = "";
          call.arguments_json = json::Value::String(call_text).Serialize();
        }
        if (options.on_tool_call) options.on_tool_call(call);
        pending_calls.push_back(call);
        turn.tool_calls.push_back(call);
        reply->tool_calls.push_back(call);
        mode = Mode::kText;
        call_matcher.reset();
        after_call = true;
      } else if (IsStop(next)) {
        finish(StopReason::kEndOfTurn);
        return OkStatus();
      } else {
        const std::string bytes =
            tok.IsSpecial(next) ? tok.TokenString(next) : tok.TokenBytes(next);
        call_text += bytes;
        if (call_matcher != nullptr) call_matcher->Accept(bytes);
      }
    } else {  // kText
      if (next == sp.channel_open && !answer_started) {
        mode = Mode::kThought;
        // The next prompt drops this thought: remember the cache as it is before it, so the
        // next turn re-processes from here and no further back.
        if (turn.thought_spans.empty()) {
          GEMMA4_RETURN_IF_ERROR(state_->SetRewindPoint(kThoughtRewindSlot));
        }
        open_thought = static_cast<int64_t>(turn.tokens.size());
      } else if (next == sp.tool_call_open && have_tools && json_matcher == nullptr &&
                 static_cast<int>(pending_calls.size()) < options.max_calls_per_round) {
        mode = Mode::kToolCall;
        call_text.clear();
        if (tool_grammar != nullptr)
          call_matcher = std::make_unique<chat::GrammarMatcher>(tool_grammar);
      } else if (IsStop(next) || next == sp.tool_call_open) {
        if (!pending_calls.empty()) {
          // End of a round of calls: answer them and continue the same model turn.
          ++tool_rounds;
          if (!options.execute_tools) {
            turn_open_ = true;
            pending_calls.clear();
            finish(StopReason::kToolCall);
            return OkStatus();
          }
          if (tool_rounds > options.max_tool_steps) {
            finish(StopReason::kToolStepLimit);
            return OkStatus();
          }
          std::vector<ToolResult> results;
          for (const ToolCall& c : pending_calls) {
            ToolResult r =
                c.name.empty()
                    ? ToolResult{"unknown", "{\"error\":\"the call did not parse\"}", true}
                    : options_.tools->Invoke(c);
            if (options.on_tool_result) options.on_tool_result(r);
            results.push_back(r);
          }
          pending_calls.clear();
          turn.tool_results.insert(turn.tool_results.end(), results.begin(), results.end());
          reply->tool_results.insert(reply->tool_results.end(), results.begin(), results.end());
          std::vector<int32_t> ids;
          GEMMA4_RETURN_IF_ERROR(ToolResponseTokens(results, &ids));
          // The stop token itself is not fed: the responses follow <tool_call|> directly.
          GEMMA4_RETURN_IF_ERROR(feed(ids));
          continue;
        }
        finish(StopReason::kEndOfTurn);
        return OkStatus();
      } else {
        if (!tok.IsSpecial(next)) answer_started = true;
        if (json_matcher != nullptr && !tok.IsSpecial(next))
          json_matcher->Accept(tok.TokenBytes(next));
        turn.text_tokens.push_back(next);
        if (!emit_text(text_stream.Push(next))) cancel_.store(true);
      }
    }
    if (options.stop_on_repetition &&
        IsDegenerateRepetition(free_generated, options.repetition_guard)) {
      finish(StopReason::kRepetition);
      return OkStatus();
    }
    if (static_cast<int64_t>(tokens_.size()) + 1 > max_context_) {
      finish(StopReason::kContextFull);
      return OkStatus();
    }
    GEMMA4_RETURN_IF_ERROR(feed({next}));
  }
}

StatusOr<std::unique_ptr<SessionImpl>> SessionImpl::Fork() const {
  auto copy = std::make_unique<SessionImpl>(model_, options_);
  copy->max_context_ = max_context_;
  copy->history_ = history_;
  copy->tokens_ = tokens_;
  copy->keys_ = keys_;
  copy->media_cache_ = media_cache_;
  copy->audio_cache_ = audio_cache_;
  copy->logits_ = logits_;
  if (copy->state_->max_chunk() != state_->max_chunk()) {
    copy->state_ = std::make_unique<InferenceState>(*m_.loaded, m_.pool.get(), state_->max_chunk(),
                                                    m_.kv_type);
  }
  copy->turn_open_ = turn_open_;
  copy->last_thinking_ = last_thinking_;
  GEMMA4_RETURN_IF_ERROR(copy->state_->CopyStateFrom(*state_));
  return copy;
}

Status SessionImpl::Rewind(size_t num_turns) {
  if (num_turns > history_.size()) {
    return OutOfRangeError("Rewind(" + std::to_string(num_turns) + "): the history has only " +
                           std::to_string(history_.size()) + " turns");
  }
  history_.resize(num_turns);
  turn_open_ = false;
  // The KV cache keeps its tokens: the next Send reuses the common prefix and drops the rest.
  return OkStatus();
}

// Layout (format 2): "G4SESS02", u64 model fingerprint, then JSON (history, options, tokens)
// length-prefixed, then the KV cache bytes of InferenceState::AppendState, then the logits,
// then a u64 checksum (base/hash.h) of everything before it. The checksum is verified before
// anything is parsed, so a damaged blob (any bit flip, a truncation) is refused as a whole;
// the fingerprint covers the dimensions and a hash of the weights (LoadedModel::
// weights_fingerprint), so a state from another model of the same shape is refused too.
namespace {
constexpr char kMagic[8] = {'G', '4', 'S', 'E', 'S', 'S', '0', '2'};
// Format 1 ("G4SESS01"): no checksum and a dimensions-only fingerprint; no longer accepted.
constexpr char kMagicFormat1[8] = {'G', '4', 'S', 'E', 'S', 'S', '0', '1'};
constexpr size_t kChecksumBytes = 8;

uint64_t Fingerprint(const ModelImpl& m) {
  Hasher h;
  h.AddWord(static_cast<uint64_t>(m.info.vocab_size));
  h.AddWord(static_cast<uint64_t>(m.info.num_layers));
  h.AddWord(static_cast<uint64_t>(m.info.hidden_size));
  h.AddWord(static_cast<uint64_t>(m.info.num_parameters));
  h.AddWord(m.info.weight_bytes);
  h.AddWord(m.loaded->weights_fingerprint());
  return h.value();
}

void PutU64(uint64_t v, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

bool GetU64(std::string_view in, size_t* offset, uint64_t* v) {
  if (in.size() - *offset < 8 || *offset > in.size()) return false;
  *v = 0;
  for (int i = 0; i < 8; ++i) {
    *v |= static_cast<uint64_t>(static_cast<unsigned char>(in[*offset + i])) << (8 * i);
  }
  *offset += 8;
  return true;
}

json::Value TurnsToJson(const std::vector<Turn>& turns) {
  json::Value::Array list;
  for (const Turn& t : turns) {
    json::Value::Object o;
    o.emplace_back("role", json::Value::Integer(static_cast<int>(t.role)));
    o.emplace_back("text", json::Value::String(t.text));
    o.emplace_back("thought", json::Value::String(t.thought));
    json::Value::Array calls, results;
    for (const ToolCall& c : t.tool_calls) {
      calls.push_back(json::Value::MakeArray(
          {json::Value::String(c.name), json::Value::String(c.arguments_json)}));
    }
    for (const ToolResult& r : t.tool_results) {
      results.push_back(
          json::Value::MakeArray({json::Value::String(r.name), json::Value::String(r.response_json),
                                  json::Value::Bool(r.is_error)}));
    }
    json::Value::Array text_tokens;
    for (int32_t id : t.text_tokens) text_tokens.push_back(json::Value::Integer(id));
    o.emplace_back("text_tokens", json::Value::MakeArray(std::move(text_tokens)));
    // The model turn's ids as the cache holds them, so a restored session reuses its cache.
    json::Value::Array tokens, spans;
    for (int32_t id : t.tokens) tokens.push_back(json::Value::Integer(id));
    for (const auto& [begin, end] : t.thought_spans) {
      spans.push_back(
          json::Value::MakeArray({json::Value::Integer(begin), json::Value::Integer(end)}));
    }
    o.emplace_back("tokens", json::Value::MakeArray(std::move(tokens)));
    o.emplace_back("thought_spans", json::Value::MakeArray(std::move(spans)));
    o.emplace_back("calls", json::Value::MakeArray(std::move(calls)));
    o.emplace_back("results", json::Value::MakeArray(std::move(results)));
    list.push_back(json::Value::MakeObject(std::move(o)));
  }
  return json::Value::MakeArray(std::move(list));
}

Status TurnsFromJson(const json::Value& v, std::vector<Turn>* out) {
  if (!v.is_array()) return DataLossError("session state: history is not a list");
  for (const json::Value& o : v.as_array()) {
    Turn t;
    int64_t role = 0;
    const json::Value* r = o.Find("role");
    if (r == nullptr || !r->GetInt64(&role) || role < 0 || role > 2) {
      return DataLossError("session state: bad turn role");
    }
    t.role = static_cast<Role>(role);
    const json::Value* text = o.Find("text");
    const json::Value* thought = o.Find("thought");
    const json::Value* calls = o.Find("calls");
    const json::Value* results = o.Find("results");
    if (text == nullptr || thought == nullptr || calls == nullptr || results == nullptr) {
      return DataLossError("session state: incomplete turn");
    }
    t.text = text->as_string();
    t.thought = thought->as_string();
    if (const json::Value* ids = o.Find("text_tokens"); ids != nullptr) {
      for (const json::Value& id : ids->as_array()) {
        int64_t v = 0;
        if (!id.GetInt64(&v) || v < 0 || v > INT32_MAX) {
          return DataLossError("session state: bad token id");
        }
        t.text_tokens.push_back(static_cast<int32_t>(v));
      }
    }
    if (const json::Value* ids = o.Find("tokens"); ids != nullptr && ids->is_array()) {
      for (const json::Value& id : ids->as_array()) {
        int64_t v = 0;
        if (!id.GetInt64(&v) || v < 0 || v > INT32_MAX) {
          return DataLossError("session state: bad token id");
        }
        t.tokens.push_back(static_cast<int32_t>(v));
      }
    }
    if (const json::Value* spans = o.Find("thought_spans"); spans != nullptr && spans->is_array()) {
      int64_t last_end = 0;
      for (const json::Value& span : spans->as_array()) {
        int64_t begin = 0, end = 0;
        if (!span.is_array() || span.as_array().size() != 2 ||
            !span.as_array()[0].GetInt64(&begin) || !span.as_array()[1].GetInt64(&end) ||
            begin < last_end || end < begin || end > static_cast<int64_t>(t.tokens.size())) {
          return DataLossError("session state: bad thought span");
        }
        t.thought_spans.emplace_back(static_cast<int32_t>(begin), static_cast<int32_t>(end));
        last_end = end;
      }
    }
    for (const json::Value& c : calls->as_array()) {
      if (c.as_array().size() != 2) return DataLossError("session state: bad tool call");
      t.tool_calls.push_back({c.as_array()[0].as_string(), c.as_array()[1].as_string()});
    }
    for (const json::Value& c : results->as_array()) {
      if (c.as_array().size() != 3) return DataLossError("session state: bad tool result");
      t.tool_results.push_back(
          {c.as_array()[0].as_string(), c.as_array()[1].as_string(), c.as_array()[2].as_bool()});
    }
    out->push_back(std::move(t));
  }
  return OkStatus();
}
}  // namespace

StatusOr<std::string> SessionImpl::SaveState() const {
  for (const Turn& t : history_) {
    if (!t.content.empty()) {
      return UnimplementedError("SaveState: sessions holding images cannot be saved yet");
    }
  }
  std::string out(kMagic, sizeof(kMagic));
  PutU64(Fingerprint(m_), &out);
  json::Value::Object meta;
  meta.reserve(8);  // (also keeps GCC 12's -Warray-bounds false positive on emplace_back away)
  meta.emplace_back("history", TurnsToJson(history_));
  meta.emplace_back("system_prompt", json::Value::String(options_.system_prompt));
  meta.emplace_back("max_context", json::Value::Integer(max_context_));
  meta.emplace_back("policy", json::Value::Integer(static_cast<int>(options_.context_policy)));
  meta.emplace_back("turn_open", json::Value::Bool(turn_open_));
  meta.emplace_back("thinking", json::Value::Bool(last_thinking_));
  meta.emplace_back("kv_type", json::Value::String(KvTypeName(state_->kv_type())));
  json::Value::Array tokens;
  for (int32_t id : tokens_) tokens.push_back(json::Value::Integer(id));
  meta.emplace_back("tokens", json::Value::MakeArray(std::move(tokens)));
  const std::string text = json::Value::MakeObject(std::move(meta)).Serialize();
  PutU64(text.size(), &out);
  out += text;
  try {
    state_->AppendState(&out);
    PutU64(logits_.size(), &out);
    out.append(reinterpret_cast<const char*>(logits_.data()), logits_.size() * sizeof(float));
    PutU64(Hash64(out), &out);
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory serializing the session");
  }
  return out;
}

Status SessionImpl::RestoreState(std::string_view bytes) {
  size_t offset = sizeof(kMagic);
  if (bytes.size() >= sizeof(kMagicFormat1) &&
      std::memcmp(bytes.data(), kMagicFormat1, sizeof(kMagicFormat1)) == 0) {
    return FailedPreconditionError(
        "session state: format 1 (saved by gemma4 before 0.5) has no checksum and is no longer "
        "accepted; save the session again");
  }
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return DataLossError("session state: not a gemma4 session state of format 2 (bad magic)");
  }
  if (bytes.size() < sizeof(kMagic) + kChecksumBytes) {
    return DataLossError("session state: truncated (" + std::to_string(bytes.size()) + " bytes)");
  }
  {
    size_t at = bytes.size() - kChecksumBytes;
    uint64_t checksum = 0;
    GetU64(bytes, &at, &checksum);
    bytes.remove_suffix(kChecksumBytes);
    if (checksum != Hash64(bytes)) {
      return DataLossError("session state: checksum mismatch over " + std::to_string(bytes.size()) +
                           " bytes (the state is damaged or truncated)");
    }
  }
  uint64_t fingerprint = 0, meta_size = 0;
  if (!GetU64(bytes, &offset, &fingerprint) || !GetU64(bytes, &offset, &meta_size) ||
      meta_size > bytes.size() - offset) {
    return DataLossError("session state: truncated header");
  }
  if (fingerprint != Fingerprint(m_)) {
    return FailedPreconditionError(
        "session state was saved with a different model (its dimensions or weights differ from "
        "those of " +
        m_.info.path + ")");
  }
  GEMMA4_ASSIGN_OR_RETURN(json::Value meta,
                          json::Parse(bytes.substr(offset, meta_size), "session state"));
  offset += meta_size;
  const json::Value* history = meta.Find("history");
  const json::Value* tokens = meta.Find("tokens");
  int64_t max_context = 0, policy = 0;
  if (history == nullptr || tokens == nullptr || !tokens->is_array() ||
      meta.Find("max_context") == nullptr || !meta.Find("max_context")->GetInt64(&max_context) ||
      meta.Find("policy") == nullptr || !meta.Find("policy")->GetInt64(&policy)) {
    return DataLossError("session state: missing fields");
  }
  // States written before the cache type was recorded hold f32 caches.
  const json::Value* kv_type = meta.Find("kv_type");
  const std::string saved_kv =
      kv_type != nullptr && kv_type->is_string() ? kv_type->as_string() : std::string("f32");
  if (saved_kv != KvTypeName(state_->kv_type())) {
    return FailedPreconditionError(
        "session state holds a " + saved_kv + " KV cache but this model's sessions use " +
        KvTypeName(state_->kv_type()) + " (ModelOptions::kv_cache_type)");
  }
  history_.clear();
  GEMMA4_RETURN_IF_ERROR(TurnsFromJson(*history, &history_));
  options_.system_prompt =
      meta.Find("system_prompt") ? meta.Find("system_prompt")->as_string() : "";
  options_.context_policy = policy == 1 ? ContextPolicy::kDropOldTurns : ContextPolicy::kError;
  max_context_ = std::clamp<int64_t>(max_context, 1, std::max<int64_t>(1, m_.info.max_context));
  turn_open_ = meta.Find("turn_open") != nullptr && meta.Find("turn_open")->as_bool();
  last_thinking_ = meta.Find("thinking") != nullptr && meta.Find("thinking")->as_bool();
  tokens_.clear();
  keys_.clear();
  for (const json::Value& t : tokens->as_array()) {
    int64_t id = 0;
    if (!t.GetInt64(&id) || id < 0 || id >= m_.info.vocab_size) {
      return DataLossError("session state: token id out of range");
    }
    tokens_.push_back(static_cast<int32_t>(id));
    keys_.push_back(static_cast<uint32_t>(id));
  }
  if (static_cast<int64_t>(tokens_.size()) > max_context_) {
    return DataLossError("session state: more tokens than the context holds");
  }
  GEMMA4_RETURN_IF_ERROR(
      state_->RestoreState(static_cast<int64_t>(tokens_.size()), bytes, &offset));
  uint64_t n_logits = 0;
  if (!GetU64(bytes, &offset, &n_logits) ||
      n_logits != (tokens_.empty() ? 0 : static_cast<uint64_t>(m_.info.vocab_size)) ||
      (bytes.size() - offset) != n_logits * sizeof(float)) {
    return DataLossError("session state: bad logits block");
  }
  logits_.resize(n_logits);
  // An empty session has no logits (and data() may be null, which memcpy must not get).
  if (n_logits > 0) std::memcpy(logits_.data(), bytes.data() + offset, n_logits * sizeof(float));
  return OkStatus();
}

// ---------------------------------------------------------------------------------------------

Session::Session(std::unique_ptr<SessionImpl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;

StatusOr<std::unique_ptr<Session>> Session::Create(std::shared_ptr<const Model> model,
                                                   SessionOptions options) {
  if (model == nullptr) return InvalidArgumentError("Session::Create: null model");
  auto impl = std::make_unique<SessionImpl>(std::move(model), std::move(options));
  GEMMA4_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<Session>(new Session(std::move(impl)));
}

StatusOr<std::unique_ptr<Session>> Session::Restore(std::shared_ptr<const Model> model,
                                                    std::string_view state,
                                                    std::shared_ptr<const ToolRegistry> tools) {
  if (model == nullptr) return InvalidArgumentError("Session::Restore: null model");
  SessionOptions options;
  options.tools = std::move(tools);
  auto impl = std::make_unique<SessionImpl>(std::move(model), std::move(options));
  GEMMA4_RETURN_IF_ERROR(impl->RestoreState(state));
  return std::unique_ptr<Session>(new Session(std::move(impl)));
}

StatusOr<Reply> Session::Send(std::string_view user_text, const GenerateOptions& options) {
  return impl_->Send(user_text, options);
}

StatusOr<Reply> Session::Send(const std::vector<ContentPart>& content,
                              const GenerateOptions& options) {
  try {
    return impl_->Send(content, options);
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory adding a turn with media");
  }
}

Image Image::FromFile(std::string file, int max_soft_tokens) {
  Image image;
  image.path = std::move(file);
  image.max_soft_tokens = max_soft_tokens;
  return image;
}

Image Image::FromEncoded(std::string bytes, int max_soft_tokens) {
  Image image;
  image.encoded = std::move(bytes);
  image.max_soft_tokens = max_soft_tokens;
  return image;
}

Image Image::FromRgb(std::vector<uint8_t> pixels, int width, int height, int max_soft_tokens) {
  Image image;
  image.rgb = std::move(pixels);
  image.width = width;
  image.height = height;
  image.max_soft_tokens = max_soft_tokens;
  return image;
}

ContentPart ContentPart::Text(std::string text) {
  ContentPart part;
  part.text = std::move(text);
  return part;
}

ContentPart ContentPart::FromImage(Image image) {
  ContentPart part;
  part.image = std::move(image);
  return part;
}

Video Video::FromFile(std::string file, int max_soft_tokens_per_frame) {
  Video v;
  v.path = std::move(file);
  v.max_soft_tokens_per_frame = max_soft_tokens_per_frame;
  return v;
}

ContentPart ContentPart::FromVideo(Video video) {
  ContentPart part;
  part.video = std::move(video);
  return part;
}

ContentPart ContentPart::FromAudio(Audio audio) {
  ContentPart part;
  part.audio = std::move(audio);
  return part;
}

Audio Audio::FromFile(std::string file) {
  Audio a;
  a.path = std::move(file);
  return a;
}

Audio Audio::FromEncoded(std::string bytes) {
  Audio a;
  a.encoded = std::move(bytes);
  return a;
}

Audio Audio::FromPcm(std::vector<float> samples, int sample_rate) {
  Audio a;
  a.pcm = std::move(samples);
  a.sample_rate = sample_rate;
  return a;
}

StatusOr<Reply> Session::SubmitToolResults(const std::vector<ToolResult>& results,
                                           const GenerateOptions& options) {
  return impl_->SubmitToolResults(results, options);
}

void Session::Cancel() { impl_->Cancel(); }

StatusOr<std::unique_ptr<Session>> Session::Fork() const {
  GEMMA4_ASSIGN_OR_RETURN(auto impl, impl_->Fork());
  return std::unique_ptr<Session>(new Session(std::move(impl)));
}

Status Session::Rewind(size_t num_turns) { return impl_->Rewind(num_turns); }
StatusOr<std::string> Session::SaveState() const { return impl_->SaveState(); }
const std::vector<Turn>& Session::history() const { return impl_->history(); }
int64_t Session::context_tokens() const { return impl_->context_tokens(); }
const std::vector<int32_t>& Session::context_token_ids() const {
  return impl_->context_token_ids();
}
int64_t Session::max_context() const { return impl_->max_context(); }

}  // namespace gemma4
