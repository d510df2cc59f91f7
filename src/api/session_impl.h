// Internal state behind gemma4::Session (include/gemma4/session.h).
#ifndef GEMMA4_SRC_API_SESSION_IMPL_H_
#define GEMMA4_SRC_API_SESSION_IMPL_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "api/context.h"
#include "api/model_impl.h"
#include "gemma4/session.h"
#include "model/forward.h"
#include "prompt/conversation.h"

namespace gemma4 {

using prompt::RenderedPrompt;

class SessionImpl {
 public:
  SessionImpl(std::shared_ptr<const Model> model, SessionOptions options)
      : model_(std::move(model)),
        m_(ModelAccess::Impl(*model_)),
        options_(std::move(options)),
        config_(m_.contexts->config()),
        state_(m_.contexts->NewContext(DefaultMaxChunk())) {}

  Status Init();
  StatusOr<Reply> Send(std::string_view user_text, const GenerateOptions& options);
  StatusOr<Reply> Send(std::vector<ContentPart> content, const GenerateOptions& options);
  StatusOr<Reply> SubmitToolResults(const std::vector<ToolResult>& results,
                                    const GenerateOptions& options);
  StatusOr<std::unique_ptr<SessionImpl>> Fork() const;
  Status Rewind(size_t num_turns);
  StatusOr<std::string> SaveState() const;
  Status RestoreState(std::string_view bytes);

  void Cancel() { cancel_.store(true, std::memory_order_relaxed); }

  // Tests (SessionAccess): rewrites the logits before each sampled token (step = tokens
  // sampled so far in this reply), turning the tiny random model into a scripted one for the
  // chat logic.
  using LogitsHook = std::function<void(std::vector<float>* logits, size_t step)>;
  LogitsHook logits_hook;
  // Tests (SessionAccess): rewrites the drafter's logits before draft `index` of a round is
  // chosen; the round drafts after the token at `position` (speculative decoding,
  // ModelOptions::draft_model_path).
  using DraftHook = std::function<void(int64_t position, int index, std::vector<float>* logits)>;
  DraftHook draft_hook;
  // Tests (SessionAccess): called each time a prompt's forward step asks whether to stop,
  // before each layer (so a test may Cancel() at an exact layer of an exact step).
  std::function<void()> stop_check_hook;
  const std::vector<Turn>& history() const { return history_; }
  int64_t context_tokens() const { return static_cast<int64_t>(tokens_.size()); }
  const std::vector<int32_t>& context_token_ids() const { return tokens_; }
  int64_t max_context() const { return max_context_; }
  const ContextState& context() const { return *state_; }
  // Tests (SessionAccess): a fresh context of `step` tokens per forward step.
  void UseStep(int64_t step) { state_ = m_.contexts->NewContext(step); }

 private:
  // Adds a user turn (text, or content parts with media) and generates the model's turn.
  StatusOr<Reply> SendTurn(Turn user, const GenerateOptions& options);
  // Decodes and encodes the turn's images (once per content digest), fills each image's
  // digest and drops its pixels.
  Status EncodeMedia(Turn* turn);
  Status EncodeAudio(Audio* audio);
  Status EncodeVideo(Video* video);
  // The soft-token budget an image (or a video's frames) is encoded at: `requested`, or for 0
  // the model's default capped at ModelOptions::max_image_tokens; a request above that cap
  // (what the memory plan sized the vision activations for) is InvalidArgument.
  StatusOr<int> ImageBudget(int requested, const std::string& what) const;
  // Renders history_ (plus the generation prompt) to token ids, media placeholders expanded.
  StatusOr<RenderedPrompt> RenderPrompt(bool thinking) const;
  // Makes the KV cache hold exactly `prompt` and leaves the last position's logits in logits_.
  Status SyncPrompt(const RenderedPrompt& prompt, Reply* reply);
  // Runs prompt positions [begin, size) (text and media rows) into the KV cache.
  Status FeedPrompt(const RenderedPrompt& prompt, size_t begin);
  // Appends tokens to the KV cache; logits_ holds the last one's logits.
  Status Feed(const std::vector<int32_t>& ids);
  // Samples the rest of the current (last) model turn.
  Status Generate(const GenerateOptions& options, Reply* reply);
  Status ToolResponseTokens(const std::vector<ToolResult>& results, std::vector<int32_t>* out);
  SamplerOptions SamplerFor(const GenerateOptions& options) const;

  std::shared_ptr<const Model> model_;
  const ModelImpl& m_;
  SessionOptions options_;
  const ModelConfig& config_;  // the language model's (m_.contexts)
  std::unique_ptr<ContextState> state_;
  int64_t max_context_ = 0;
  std::vector<Turn> history_;
  std::vector<int32_t> tokens_;  // what the KV cache holds, position by position
  std::vector<uint64_t> keys_;   // RenderedPrompt::keys of tokens_
  // Soft tokens of every image encoded in this session, by digest ([rows, hidden]).
  prompt::ImageRows media_cache_;
  // Soft tokens of every recording, by digest: one [rows, hidden] block per 30 s piece.
  prompt::AudioRows audio_cache_;
  std::vector<float> logits_;  // logits after tokens_.back()
  // Speculative decoding (ModelImpl::drafter). The last verify forward ran drafts beyond
  // tokens_ through the cache: while the session's sampler picks exactly those tokens, Feed
  // takes their logits and hidden states from here instead of running the model; the first
  // other token drops the rest (DropSpeculation). Outside Generate the cache holds tokens_ only.
  struct Speculation {
    std::vector<int32_t> tokens;
    std::vector<float> logits;  // [tokens, vocab]: the model's logits after each
    std::vector<float> hidden;  // [tokens, hidden]: final-normed hidden state after each
    size_t used = 0;            // taken by Feed so far
  };
  Speculation spec_;
  std::vector<float> hidden_rows_;  // the forward passes' hidden rows (set_hidden_output)
  std::vector<float> last_hidden_;  // final-normed hidden state after tokens_.back()
  int64_t last_hidden_at_ = -1;     // tokens_.size() when last_hidden_ was taken; -1: none
  int draft_tokens_ = 0;            // drafts per round in the current Generate (0: off)
  int drafted_ = 0, accepted_ = 0;  // in the current Generate
  // Forgets the cache positions of drafts Feed has not taken (back to tokens_.size()).
  Status DropSpeculation();
  bool turn_open_ = false;      // the last model turn stopped at tool calls (kToolCall)
  bool last_thinking_ = false;  // thinking mode of the prompt in the cache
  std::atomic<bool> cancel_{false};
};

// Tests' way inside a Session (the public header declares it a friend and nothing more): the
// scripted-logits seams, which replace the tiny random model's choices by a script so that
// tests exercise the chat logic (history, KV prefix reuse, stop conditions) deterministically.
class SessionAccess {
 public:
  // Null clears the hook.
  static void SetLogitsHook(Session& session, SessionImpl::LogitsHook hook) {
    session.impl_->logits_hook = std::move(hook);
  }
  static void SetDraftHook(Session& session, SessionImpl::DraftHook hook) {
    session.impl_->draft_hook = std::move(hook);
  }
  // The context the session runs (a scripted double's, in tests over tests/fake_model.h).
  static const ContextState& Context(const Session& session) { return session.impl_->context(); }
  // A fresh context of `step` tokens per forward step, for a session that has run nothing yet
  // (what another CPU's default or a memory cap would have chosen).
  static void UseStep(Session& session, int64_t step) { session.impl_->UseStep(step); }
  // Null clears the hook.
  static void SetStopCheckHook(Session& session, std::function<void()> hook) {
    session.impl_->stop_check_hook = std::move(hook);
  }
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_API_SESSION_IMPL_H_
