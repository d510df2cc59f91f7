// A conversation with a Model: the whole chat loop (Gemma 4 chat format, thinking, tool calls)
// with the KV cache reused across turns. One Session is used by one thread at a time, except
// Cancel(), which any thread may call. Many sessions may share one Model. Standard library only.
#ifndef GEMMA4_SESSION_H_
#define GEMMA4_SESSION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gemma4/model.h"
#include "gemma4/sampler.h"
#include "gemma4/status.h"
#include "gemma4/tools.h"

namespace gemma4 {

enum class Role { kSystem, kUser, kModel };

// An image for a user turn, from one of three sources: a file (PNG, JPEG or WebP; EXIF
// orientation applied), the bytes of such a file, or RGB8 pixels the caller decoded itself.
// It becomes max_soft_tokens (70, 140, 280, 560 or 1120; 0: the model's default) or fewer
// soft tokens, preprocessed exactly as transformers' Gemma4ImageProcessor does.
struct Image {
  std::string path;
  std::string encoded;       // file bytes
  std::vector<uint8_t> rgb;  // height rows of width * 3 bytes
  int width = 0;
  int height = 0;
  int max_soft_tokens = 0;
  // Filled by the session once the image is encoded: a content hash of the decoded pixels and
  // the budget. The KV cache is reused across turns only where these match, and the session
  // then drops the pixels and bytes it was given (the history keeps the hash).
  std::string digest;

  static Image FromFile(std::string file, int max_soft_tokens = 0);
  static Image FromEncoded(std::string bytes, int max_soft_tokens = 0);
  static Image FromRgb(std::vector<uint8_t> pixels, int width, int height, int max_soft_tokens = 0);
};

// A recording for a user turn (E2B and E4B hear): a file (WAV, FLAC, Ogg/Vorbis/Opus, MP3), the
// bytes of one, or mono float PCM at `sample_rate` Hz. Any rate and channel count is downmixed
// to mono and resampled to 16 kHz; recordings longer than 30 s are encoded in 30 s pieces,
// each placed as its own <|audio> ... <audio|> run, in order.
struct Audio {
  std::string path;
  std::string encoded;     // file bytes
  std::vector<float> pcm;  // mono samples in [-1, 1]
  int sample_rate = 16000;
  std::string digest;  // filled by the session, as Image::digest

  static Audio FromFile(std::string file);
  static Audio FromEncoded(std::string bytes);
  static Audio FromPcm(std::vector<float> samples, int sample_rate);
};

// A video for a user turn (26B-A4B and 31B): its frames in time order with their timestamps
// in seconds, each an Image of the same size (Image::max_soft_tokens is ignored: every frame
// gets `max_soft_tokens_per_frame`, 0 for the model's default of 70). At most the model's frame
// limit (32). Each frame becomes "mm:ss <|image>" + <|video|> x n + "<image|>", frames joined by
// spaces, as transformers' processor writes them.
struct VideoFrame {
  Image image;
  double seconds = 0;
};
struct Video {
  std::vector<VideoFrame> frames;
  // Or a video file (mp4, webm, mkv, ... through FFmpeg), sampled at one frame per second
  // (evenly spaced past the frame limit); the frames above are then filled from it.
  std::string path;
  int max_soft_tokens_per_frame = 0;

  static Video FromFile(std::string file, int max_soft_tokens_per_frame = 0);
};

// One part of a user turn's content: text, an image (when `image` is set), a recording (when
// `audio` is set) or a video (when `video` is set).
struct ContentPart {
  std::string text;
  std::optional<Image> image;
  std::optional<Audio> audio;
  std::optional<Video> video;

  static ContentPart Text(std::string text);
  static ContentPart FromImage(Image image);
  static ContentPart FromAudio(Audio audio);
  static ContentPart FromVideo(Video video);
};

// One turn of the history. A model turn may hold tool calls and their results, in order, then
// the final text.
struct Turn {
  Role role = Role::kUser;
  std::string text;
  std::string thought;  // model turns: the thought channel (kept here, stripped from the prompt)
  std::vector<ToolCall> tool_calls;
  std::vector<ToolResult> tool_results;
  // Model turns: the ids generated for `text` (empty for other turns).
  std::vector<int32_t> text_tokens;
  // Model turns: every id after "<|turn>model\n" as the KV cache holds it: the 26B/31B empty
  // thought channel, thoughts, text, tool calls as generated and tool responses as fed. The
  // conversation's next prompt is built on these ids (not on a re-rendering of `text` and
  // `tool_calls`), so a next turn processes only its new tokens. thought_spans ([begin, end)
  // into `tokens`) are the thought channels, which later prompts drop as the official template
  // does: the next turn then re-processes this turn from its first thought on, never more.
  std::vector<int32_t> tokens;
  std::vector<std::pair<int32_t, int32_t>> thought_spans;
  // User turns with media: every part in order (`text` then holds the text parts joined).
  std::vector<ContentPart> content;
};

enum class StopReason {
  kEndOfTurn,      // the model closed its turn (or emitted a stop token)
  kMaxTokens,      // GenerateOptions::max_tokens reached
  kCancelled,      // Cancel() or a callback returned false
  kRepetition,     // the repetition guard saw a degenerate loop
  kToolStepLimit,  // max_tool_steps rounds of tool calls
  kToolCall,       // tool calls were produced and execute_tools was false
  kContextFull,    // the context filled up during generation (the prompt itself fitting is
                   // checked first: a prompt that does not fit is a ResourceExhausted status)
};

enum class StreamKind { kThought, kText };

struct GenerateOptions {
  int max_tokens = 1024;  // generated tokens per turn (tool responses not counted)
  bool thinking = false;  // thinking mode for this request
  // Max thought tokens (the thought's own, not the channel's "thought\n" header), then the
  // thought is closed (-1 = none).
  int thinking_budget = -1;
  std::optional<SamplerOptions> sampler;  // unset: the model's generation_config defaults
  // Drafted tokens per round when the model has a drafter (ModelOptions::draft_model_path):
  // -1: ModelOptions::draft_tokens, 0: no drafting.
  int draft_tokens = -1;
  // Tools: calls are executed through the registry and generation continues, at most
  // max_tool_steps rounds. With execute_tools false the turn stops at the calls (kToolCall)
  // and the caller answers with Session::SubmitToolResults.
  bool execute_tools = true;
  int max_tool_steps = 8;
  bool constrain_tool_calls = true;  // grammar-constrained arguments
  // The turn starts with a tool call (like OpenAI's tool_choice "required"); later rounds are
  // free.
  bool require_tool_call = false;
  int max_calls_per_round = 8;  // parallel calls before the round must end (exactly this many)
  // When set, the answer (after any thought) is a JSON document matching this JSON schema.
  std::string json_schema;
  // The guard watches freely sampled tokens only: grammar-constrained and forced spans (JSON
  // answers, tool-call arguments) are never cut.
  bool stop_on_repetition = true;
  RepetitionGuardOptions repetition_guard;
  // Streaming: text pieces (never broken UTF-8), and raw tokens. Returning false cancels.
  std::function<bool(StreamKind kind, std::string_view text)> on_text;
  std::function<bool(int32_t token)> on_token;
  std::function<void(const ToolCall& call)> on_tool_call;
  std::function<void(const ToolResult& result)> on_tool_result;
};

struct Reply {
  std::string text;
  std::string thought;
  std::vector<ToolCall> tool_calls;
  std::vector<ToolResult> tool_results;
  StopReason stop_reason = StopReason::kEndOfTurn;
  int prompt_tokens = 0;  // tokens processed for this reply (new ones only)
  int reused_tokens = 0;  // tokens whose KV entries were reused
  int generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  // Speculative decoding: tokens the drafter proposed and how many of them the model kept.
  int drafted_tokens = 0;
  int accepted_draft_tokens = 0;
};

enum class ContextPolicy {
  kError,         // a turn that does not fit returns ResourceExhausted
  kDropOldTurns,  // drop the oldest exchanges (a user turn and the model's answer) after the
                  // system prompt until it fits; the new user turn is never dropped
};

struct SessionOptions {
  std::string system_prompt;
  std::shared_ptr<const ToolRegistry> tools;
  int64_t max_context = 0;  // 0 = the model's maximum
  ContextPolicy context_policy = ContextPolicy::kError;
};

class SessionImpl;
class SessionAccess;  // tests' way in (src/api/session_impl.h)

class Session {
 public:
  static StatusOr<std::unique_ptr<Session>> Create(std::shared_ptr<const Model> model,
                                                   SessionOptions options = {});
  // Restores a session saved by SaveState (same model file).
  static StatusOr<std::unique_ptr<Session>> Restore(std::shared_ptr<const Model> model,
                                                    std::string_view state,
                                                    std::shared_ptr<const ToolRegistry> tools = {});
  ~Session();

  // Adds a user turn and generates the model's turn. Only tokens after the longest prefix
  // already in the KV cache are processed (Reply::reused_tokens and prompt_tokens say how
  // many). A Send that fails (a bad option, a turn that does not fit) leaves the history and
  // the cache as they were.
  StatusOr<Reply> Send(std::string_view user_text, const GenerateOptions& options = {});
  // The same with images and recordings among the text, in order. Each is encoded once per
  // session (cached by content); a model without a vision (audio) tower refuses images
  // (recordings). Sessions holding media cannot be saved with SaveState yet.
  StatusOr<Reply> Send(const std::vector<ContentPart>& content,
                       const GenerateOptions& options = {});
  // Continues the current model turn after Send stopped with kToolCall.
  StatusOr<Reply> SubmitToolResults(const std::vector<ToolResult>& results,
                                    const GenerateOptions& options = {});

  // Thread-safe: stops the Send or SubmitToolResults running on another thread within one
  // layer of the prompt's forward step (its finished steps stay in the cache) or of an image or
  // audio encoder; during generation, after the decode step running (one token, or one
  // verification of drafts).
  // A cancel that arrives while no call runs is kept and stops the next call; each call
  // consumes it. The call returns CancelledError: cancelled during generation, the partial
  // model turn stays in the history; cancelled before generation, the history is as it was
  // and the cache holds what was processed (the next Send reuses it).
  void Cancel();

  // An independent copy (history and KV cache).
  StatusOr<std::unique_ptr<Session>> Fork() const;
  // Keeps the first `num_turns` turns (system prompt included) and drops the rest.
  Status Rewind(size_t num_turns);
  // History, KV cache and settings as bytes (tools are not saved: pass them to Restore). The
  // cache's rows up to the current position (a sliding-window layer's at most its window plus
  // one forward step), so a state grows with the conversation: a fresh session's is a few
  // hundred bytes. States of earlier versions, which held whole windows, still restore.
  StatusOr<std::string> SaveState() const;

  const std::vector<Turn>& history() const;
  int64_t context_tokens() const;  // tokens in the KV cache
  // The ids the KV cache holds, position by position: exactly what the model has seen (media
  // rows appear as their placeholder ids). Text from users, system prompts, tool declarations
  // and tool results is always tokenized as text: control-token strings in it (e.g. "<turn|>")
  // never appear here as control ids.
  const std::vector<int32_t>& context_token_ids() const;
  int64_t max_context() const;

  friend class SessionAccess;

 private:
  explicit Session(std::unique_ptr<SessionImpl> impl);
  std::unique_ptr<SessionImpl> impl_;
};

}  // namespace gemma4

#endif  // GEMMA4_SESSION_H_
