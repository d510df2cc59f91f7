// The chat loop, orchestration only: encodes a turn's media (cached by content digest), renders
// the conversation (prompt/conversation.h), reuses the KV cache for the longest common key
// prefix, runs the model's turn through the TurnDecoder (decode/turn_decoder.h), runs tools
// and continues the turn, all bounded and cancellable. Save/restore: session_state.cc.
#include "gemma4/session.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "api/memory_plan.h"
#include "api/model_impl.h"
#include "api/session_impl.h"
#include "audio/audio_encoder.h"
#include "base/json.h"
#include "chat/chat_template.h"
#include "decode/turn_decoder.h"
#include "media/audio_file.h"
#include "media/image.h"
#include "media/video_file.h"
#include "model/forward.h"
#include "prompt/conversation.h"
#include "tokenizer/tokenizer_impl.h"
#include "vision/image_preprocess.h"

namespace gemma4 {

namespace {

// The history as the prompt module's messages (views into it).
std::vector<prompt::Message> ToPromptMessages(const std::vector<Turn>& history) {
  std::vector<prompt::Message> out;
  out.reserve(history.size());
  for (const Turn& t : history) {
    prompt::Message m;
    m.role = t.role == Role::kSystem ? prompt::Role::kSystem
             : t.role == Role::kUser ? prompt::Role::kUser
                                     : prompt::Role::kModel;
    m.text = t.text;
    if (t.role == Role::kModel && !t.tokens.empty()) {
      // A model turn's recorded ids as the next prompt holds them: its thought channels
      // dropped, as the official template drops the thoughts of turns before the last user
      // turn.
      m.recorded = true;
      m.recorded_ids = prompt::WithoutSpans(t.tokens, t.thought_spans);
    }
    for (const ContentPart& part : t.content) {
      prompt::Part p;
      if (part.image.has_value()) {
        p.kind = prompt::Part::Kind::kImage;
        p.digest = part.image->digest;
      } else if (part.audio.has_value()) {
        p.kind = prompt::Part::Kind::kAudio;
        p.digest = part.audio->digest;
      } else if (part.video.has_value()) {
        p.kind = prompt::Part::Kind::kVideo;
        for (const VideoFrame& f : part.video->frames)
          p.frames.push_back({f.image.digest, f.seconds});
      } else {
        p.text = part.text;
      }
      m.parts.push_back(std::move(p));
    }
    for (const ToolCall& c : t.tool_calls) m.tool_calls.push_back({c.name, c.arguments_json});
    for (const ToolResult& r : t.tool_results) m.tool_results.push_back({r.name, r.response_json});
    out.push_back(std::move(m));
  }
  return out;
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

// Context rewind slots: the end of the system turn, and the start of the latest thought.
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
    // A session whose default steps (512 tokens on AMX CPUs) do not fit takes 128-token ones
    // where those do.
    GEMMA4_ASSIGN_OR_RETURN(const PlanInputs* inputs, m_.plan_inputs());
    const PlanInputs stepped = WithStepWithin(*inputs, max_context_, limit);
    GEMMA4_RETURN_IF_ERROR(CheckMemoryLimit(stepped, ComputeMemoryPlan(stepped, max_context_),
                                            limit, "a session of the model " + m_.info.path));
    if (stepped.max_chunk != state_->max_chunk()) {
      state_ = m_.contexts->NewContext(stepped.max_chunk);
    }
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

StatusOr<RenderedPrompt> SessionImpl::RenderPrompt(bool thinking) const {
  std::vector<json::Value> tools;
  if (options_.tools != nullptr && options_.tools->size() > 0) {
    auto parsed = json::Parse(options_.tools->DeclarationsJson(), "tools");
    if (!parsed.ok()) return parsed.status();
    tools = parsed->as_array();
  }
  prompt::PromptFormat format;
  format.variant =
      m_.info.large_chat_template ? chat::TemplateVariant::kLarge : chat::TemplateVariant::kSmall;
  format.bos_token = m_.tokenizer->TokenString(m_.special.bos);
  format.turn_open = m_.special.turn_open;
  format.config = &config_;
  format.vocab_size = m_.info.vocab_size;
  return prompt::RenderConversation(ToPromptMessages(history_), tools, thinking, format,
                                    TokenizerAccess::Impl(*m_.tokenizer), media_cache_,
                                    audio_cache_);
}

Status SessionImpl::Feed(const std::vector<int32_t>& ids) {
  if (ids.empty()) return OkStatus();
  if (static_cast<int64_t>(tokens_.size() + ids.size()) > max_context_) {
    return ResourceExhaustedError("context full: " + std::to_string(tokens_.size() + ids.size()) +
                                  " tokens needed, the session holds at most " +
                                  std::to_string(max_context_));
  }
  const int64_t V = config_.vocab_size, H = config_.hidden_size;
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
  if (m_.drafter != nullptr && state_->inference() != nullptr && draft_tokens_ > 0 &&
      ids.size() == 1 && last_hidden_at_ == position) {
    k = static_cast<int>(
        std::min<int64_t>({draft_tokens_, state_->max_chunk() - 2, max_context_ - position - 1}));
  }
  std::vector<int32_t> batch = ids;
  {
    std::lock_guard<std::mutex> lock(m_.compute_mutex);
    hidden_rows_.clear();
    state_->set_hidden_output(&hidden_rows_);
    struct ClearHidden {
      ContextState* state;
      ~ClearHidden() { state->set_hidden_output(nullptr); }
    } clear_hidden{state_.get()};
    if (k > 0) {
      std::vector<float> h = last_hidden_, draft_logits;
      int32_t last = ids[0];
      for (int i = 0; i < k; ++i) {
        GEMMA4_RETURN_IF_ERROR(m_.drafter->Step(*m_.loaded, *state_->inference(), last, position,
                                                &h, &draft_logits, m_.pool.get()));
        if (draft_hook) draft_hook(position, i, &draft_logits);
        last = static_cast<int32_t>(std::max_element(draft_logits.begin(), draft_logits.end()) -
                                    draft_logits.begin());
        batch.push_back(last);
      }
    }
    ForwardInput input;
    input.ids = batch.data();
    input.n = static_cast<int64_t>(batch.size());
    GEMMA4_RETURN_IF_ERROR(
        state_->Forward(input, k > 0 ? LogitsMode::kAll : LogitsMode::kLast, &logits_));
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
  const int64_t H = config_.hidden_size;
  // One forward step per call; Cancel() also stops a step between two layers (ForwardInput::
  // stop), leaving the cache after the last whole step.
  const size_t step = static_cast<size_t>(std::max<int64_t>(1, state_->max_chunk()));
  auto stop = [this] {
    if (stop_check_hook) stop_check_hook();
    return cancel_.load(std::memory_order_relaxed);
  };
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
    input.stop = stop;
    {
      std::lock_guard<std::mutex> lock(m_.compute_mutex);
      const Status forward = state_->Forward(
          input, end == prompt.size() ? LogitsMode::kLast : LogitsMode::kNone, &logits_);
      // Logits come with the prompt's last step only: a prompt stopped before its end leaves
      // none (a saved state then carries none; the next Send runs at least one position).
      if (!forward.ok()) logits_.clear();
      if (forward.code() == StatusCode::kCancelled) {
        return CancelledError("cancelled while processing the prompt, " +
                              std::to_string(at - begin) + " of " + std::to_string(n) +
                              " tokens in (" + forward.message() + ")");
      }
      GEMMA4_RETURN_IF_ERROR(forward);
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
  if (config_.bidirectional_vision && prompt.longest_block > state_->max_chunk()) {
    state_ = m_.contexts->NewContext(prompt.longest_block);
    tokens_.clear();
    keys_.clear();
  }
  size_t common = prompt::ReusablePrefix(prompt, keys_);
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
      state_ = m_.contexts->NewContext(state_->max_chunk());
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
  const ModelConfig& c = config_;
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
    GEMMA4_ASSIGN_OR_RETURN(const int budget, ImageBudget(image.max_soft_tokens, "an image"));
    const std::string digest = prompt::ImageDigest(*decoded, budget);
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

StatusOr<int> SessionImpl::ImageBudget(int requested, const std::string& what) const {
  GEMMA4_ASSIGN_OR_RETURN(const int cap, ResolveMaxImageTokens(m_.options));
  if (requested <= 0) return std::min(m_.vision->config().default_max_soft_tokens, cap);
  if (requested > cap) {
    return InvalidArgumentError(what + " at " + std::to_string(requested) +
                                " soft tokens: this model was loaded with max_image_tokens " +
                                std::to_string(cap) +
                                " (ModelOptions::max_image_tokens, which the memory plan is "
                                "sized for)");
  }
  return requested;
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
  GEMMA4_ASSIGN_OR_RETURN(const int budget, ImageBudget(video->max_soft_tokens_per_frame > 0
                                                            ? video->max_soft_tokens_per_frame
                                                            : vc.default_video_soft_tokens,
                                                        "a video's frames"));
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
    const std::string digest = "v" + prompt::ImageDigest(decoded, budget);
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
  const std::string digest = prompt::AudioDigest(samples);
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
  std::vector<prompt::ToolResultText> texts;
  for (const ToolResult& r : results) texts.push_back({r.name, r.response_json});
  GEMMA4_ASSIGN_OR_RETURN(*out,
                          prompt::ToolResponseIds(texts, TokenizerAccess::Impl(*m_.tokenizer)));
  return OkStatus();
}

// The model's turn: the TurnDecoder (decode/turn_decoder.h) chooses each token and says what it
// means; this loop feeds it to the model, records the turn, streams, runs tools between rounds
// of calls, and stops on cancel, max_tokens, the repetition guard or a full context.
Status SessionImpl::Generate(const GenerateOptions& options, Reply* reply) {
  Turn& turn = history_.back();
  if (options.draft_tokens > kMaxDraftTokens) {
    return InvalidArgumentError(
        "GenerateOptions.draft_tokens = " + std::to_string(options.draft_tokens) + " exceeds " +
        std::to_string(kMaxDraftTokens));
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
  const bool have_tools = options_.tools != nullptr && options_.tools->size() > 0;
  std::vector<json::Value> declarations;
  if (have_tools && options.constrain_tool_calls) {
    auto decl = json::Parse(options_.tools->DeclarationsJson(), "tools");
    if (!decl.ok()) return decl.status();
    declarations = decl->as_array();
  }
  TurnControlTokens control{m_.special, m_.info.stop_token_ids};
  TurnDecoderOptions d;
  d.sampler = SamplerFor(options);
  d.thinking = options.thinking;
  d.thinking_budget = options.thinking_budget;
  d.have_tools = have_tools;
  d.constrain_tool_calls = options.constrain_tool_calls;
  d.tool_declarations = &declarations;
  d.require_tool_call = options.require_tool_call;
  d.max_calls_per_round = options.max_calls_per_round;
  d.json_schema = options.json_schema;
  d.stop_on_repetition = options.stop_on_repetition;
  d.repetition_guard = options.repetition_guard;
  d.turn_has_tool_calls = !turn.tool_calls.empty();
  d.turn_has_thought = !turn.thought.empty();
  const ModelImpl& m = m_;
  d.tool_vocab = [&m]() -> const chat::VocabIndex& { return m.tool_vocab(); };
  d.text_vocab = [&m]() -> const chat::VocabIndex& { return m.text_vocab(); };
  GEMMA4_ASSIGN_OR_RETURN(std::unique_ptr<TurnDecoder> decoder,
                          TurnDecoder::Create(m_.tokenizer, std::move(control), std::move(d)));
  std::vector<ToolCall> pending_calls;  // calls of the current round
  int64_t open_thought = -1;            // where in turn.tokens the open thought channel began
  int tool_rounds = 0;
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
    std::string tail = decoder->FlushText();
    if (!tail.empty()) {
      turn.text += tail;
      reply->text += tail;
      if (options.on_text) options.on_text(StreamKind::kText, tail);
    }
    reply->stop_reason = reason;
    reply->decode_seconds = Seconds(start);
    reply->generated_tokens = static_cast<int>(decoder->generated());
    reply->drafted_tokens = drafted_;
    reply->accepted_draft_tokens = accepted_;
    reply->thought = turn.thought;
  };
  auto emit = [&](StreamKind kind, const std::string& piece) {
    if (piece.empty()) return;
    if (kind == StreamKind::kText) {
      turn.text += piece;
      reply->text += piece;
    } else {
      turn.thought += piece;
    }
    if (options.on_text && !options.on_text(kind, piece)) cancel_.store(true);
  };

  while (true) {
    if (cancel_.load(std::memory_order_relaxed)) {
      finish(StopReason::kCancelled);
      return CancelledError("generation cancelled after " + std::to_string(decoder->generated()) +
                            " tokens");
    }
    if (static_cast<int>(decoder->generated()) >= options.max_tokens) {
      finish(StopReason::kMaxTokens);
      return OkStatus();
    }
    if (logits_hook) logits_hook(&logits_, decoder->generated());
    GEMMA4_ASSIGN_OR_RETURN(const int32_t next, decoder->Choose(logits_, tokens_));
    if (options.on_token && !options.on_token(next)) cancel_.store(true);
    TurnStep step = decoder->Accept(next);
    switch (step.kind) {
      case TurnStep::Kind::kContinue:
        break;
      case TurnStep::Kind::kThoughtOpened:
        // The next prompt drops this thought: remember the cache as it is before it, so the
        // next turn re-processes from here and no further back.
        if (turn.thought_spans.empty()) {
          GEMMA4_RETURN_IF_ERROR(state_->SetRewindPoint(kThoughtRewindSlot));
        }
        open_thought = static_cast<int64_t>(turn.tokens.size());
        break;
      case TurnStep::Kind::kThoughtClosed:
        // The span ends with <channel|>, which is fed below.
        turn.thought_spans.emplace_back(static_cast<int32_t>(open_thought),
                                        static_cast<int32_t>(turn.tokens.size() + 1));
        open_thought = -1;
        break;
      case TurnStep::Kind::kCallClosed: {
        ToolCall call;
        call.name = std::move(step.call_name);
        call.arguments_json = std::move(step.call_arguments_json);
        if (options.on_tool_call) options.on_tool_call(call);
        pending_calls.push_back(call);
        turn.tool_calls.push_back(call);
        reply->tool_calls.push_back(call);
        break;
      }
      case TurnStep::Kind::kRoundEnd:
      case TurnStep::Kind::kEndOfTurn:
        break;
    }
    emit(StreamKind::kThought, step.thought);
    if (step.kind == TurnStep::Kind::kEndOfTurn) {
      finish(StopReason::kEndOfTurn);
      return OkStatus();
    }
    if (step.kind == TurnStep::Kind::kRoundEnd) {
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
        ToolResult r = c.name.empty()
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
    if (step.answer_token) turn.text_tokens.push_back(next);
    emit(StreamKind::kText, step.text);
    if (decoder->Repeating()) {
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
    copy->state_ = m_.contexts->NewContext(state_->max_chunk());
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
