// A scripted language model for session tests without weights: a Model whose contexts
// (api/context.h) keep the ids they were fed as their "KV cache" and answer from them. The next
// token is a letter chosen by a hash of every id the context holds, and the model turn ends
// with <turn|> after kReplyLetters letters, so a context that holds anything other than the
// conversation's exact ids answers differently from a fresh one. FakeStats counts what ran.
#ifndef GEMMA4_TESTS_FAKE_MODEL_H_
#define GEMMA4_TESTS_FAKE_MODEL_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "api/context.h"
#include "api/model_impl.h"
#include "gemma4/tokenizer.h"

namespace gemma4::fake {

inline constexpr int kReplyLetters = 5;
inline constexpr int32_t kNewline = 107, kTurnClose = 106;  // chat/tiny_tokenizer's ids
inline constexpr int32_t kFirstLetter = 77, kLetters = 21;  // 'a'..'u'

struct FakeStats {
  int64_t forwarded = 0;     // positions run, over every context
  int64_t new_contexts = 0;  // contexts made (a session's first, restarts, forks)
};

// The next id after `ids`: kReplyLetters letters after the last newline, then <turn|>.
inline int32_t NextId(const std::vector<int32_t>& ids) {
  size_t since_newline = 0;
  while (since_newline < ids.size() && ids[ids.size() - 1 - since_newline] != kNewline) {
    ++since_newline;
  }
  if (since_newline >= static_cast<size_t>(kReplyLetters)) return kTurnClose;
  uint64_t h = 0xcbf29ce484222325ull;
  for (int32_t id : ids) h = (h ^ static_cast<uint32_t>(id)) * 0x100000001b3ull;
  return kFirstLetter + static_cast<int32_t>(h % kLetters);
}

class FakeContext final : public ContextState {
 public:
  // `window`: how far back Truncate may go without a rewind point (the real model's rings
  // hold max_chunk positions).
  FakeContext(int64_t max_chunk, int64_t window, int vocab, std::shared_ptr<FakeStats> stats)
      : max_chunk_(max_chunk), window_(window), vocab_(vocab), stats_(std::move(stats)) {}

  Status Forward(const ForwardInput& input, LogitsMode mode, std::vector<float>* logits) override {
    if (input.n <= 0) return InvalidArgumentError("fake Forward: no positions");
    if (logits != nullptr) logits->clear();
    for (int64_t i = 0; i < input.n; ++i) {
      ids_.push_back(input.ids[i]);
      if (mode == LogitsMode::kAll || (mode == LogitsMode::kLast && i + 1 == input.n)) {
        const size_t at = logits->size();
        logits->resize(at + static_cast<size_t>(vocab_), 0.0f);
        (*logits)[at + static_cast<size_t>(NextId(ids_))] = 10.0f;
      }
    }
    stats_->forwarded += input.n;
    return OkStatus();
  }
  int64_t position() const override { return static_cast<int64_t>(ids_.size()); }
  int64_t max_chunk() const override { return max_chunk_; }
  KvType kv_type() const override { return KvType::kF32; }
  // The real rule: back at most `window` positions (the sliding-window rings), or to a rewind
  // point.
  bool CanTruncateTo(int64_t p) const override {
    return p >= 0 && p <= position() &&
           (position() - p <= window_ || p == rewind_[0] || p == rewind_[1]);
  }
  int64_t rewind_floor() const override { return std::max<int64_t>(0, position() - window_); }
  Status Truncate(int64_t p) override {
    if (!CanTruncateTo(p)) return FailedPreconditionError("fake: cannot rewind that far");
    ids_.resize(static_cast<size_t>(p));
    for (int64_t& r : rewind_) {
      if (p < r) r = -1;
    }
    return OkStatus();
  }
  Status SetRewindPoint(int slot) override {
    if (slot < 0 || slot > 1) return InvalidArgumentError("fake: bad rewind slot");
    rewind_[slot] = position();
    return OkStatus();
  }
  int64_t rewind_point(int slot) const override { return rewind_[slot]; }
  int64_t LatestRewindPoint(int64_t p) const override {
    int64_t best = -1;
    for (int64_t r : rewind_) {
      if (r >= 0 && r <= p && r <= position()) best = std::max(best, r);
    }
    return best;
  }
  Status CopyStateFrom(const ContextState& other) override {
    const auto* o = dynamic_cast<const FakeContext*>(&other);
    if (o == nullptr) return InvalidArgumentError("fake: not a fake context");
    ids_ = o->ids_;
    rewind_[0] = o->rewind_[0];
    rewind_[1] = o->rewind_[1];
    return OkStatus();
  }
  void AppendState(std::string* out) const override {
    out->append(reinterpret_cast<const char*>(ids_.data()), ids_.size() * sizeof(int32_t));
  }
  // (The fake's reach follows its position: the saved floor is not needed.)
  int64_t saved_ring_rows() const override { return 0; }  // (no rings)
  Status RestoreState(int64_t position, int64_t /*rewind_floor*/, int64_t /*ring_rows*/,
                      std::string_view bytes, size_t* offset) override {
    const size_t n = static_cast<size_t>(position) * sizeof(int32_t);
    if (bytes.size() - *offset < n) return DataLossError("fake: state truncated");
    ids_.resize(static_cast<size_t>(position));
    std::memcpy(ids_.data(), bytes.data() + *offset, n);
    *offset += n;
    return OkStatus();
  }
  void set_hidden_output(std::vector<float>*) override {}

  const std::vector<int32_t>& ids() const { return ids_; }

 private:
  std::vector<int32_t> ids_;
  int64_t max_chunk_, window_;
  int vocab_;
  int64_t rewind_[2] = {-1, -1};
  std::shared_ptr<FakeStats> stats_;
};

class FakeSource final : public ContextSource {
 public:
  FakeSource(ModelConfig config, int64_t window, std::shared_ptr<FakeStats> stats)
      : config_(std::move(config)), window_(window), stats_(std::move(stats)) {}
  const ModelConfig& config() const override { return config_; }
  uint64_t weights_fingerprint() const override { return 0x66616b65; }
  std::unique_ptr<ContextState> NewContext(int64_t max_chunk) const override {
    ++stats_->new_contexts;
    return std::make_unique<FakeContext>(max_chunk, window_ > 0 ? window_ : max_chunk,
                                         config_.vocab_size, stats_);
  }

 private:
  ModelConfig config_;
  int64_t window_;
  std::shared_ptr<FakeStats> stats_;
};

// A Model over the fake contexts and the chat fixture tokenizer (512 ids); `window` as in
// FakeContext (0: max_chunk). Null on failure.
inline std::shared_ptr<const Model> MakeFakeModel(std::shared_ptr<FakeStats> stats,
                                                  int64_t window = 0) {
  auto tokenizer =
      Tokenizer::Load(std::string(GEMMA4_FIXTURES_DIR) + "/chat/tiny_tokenizer/tokenizer.json");
  if (!tokenizer.ok()) return nullptr;
  auto impl = std::make_unique<ModelImpl>();
  impl->tokenizer = *tokenizer;
  impl->special = chat::FindSpecialTokens(**tokenizer, /*bos_fallback=*/2);
  ModelConfig config;
  config.vocab_size = 512;
  config.hidden_size = 4;
  ModelInfo& info = impl->info;
  info.path = "fake";
  info.vocab_size = config.vocab_size;
  info.hidden_size = config.hidden_size;
  info.max_context = 4096;
  info.stop_token_ids = {impl->special.eos, impl->special.turn_close};
  info.default_sampler.temperature = 0;
  impl->contexts = std::make_unique<FakeSource>(config, window, std::move(stats));
  return ModelAccess::Wrap(std::move(impl));
}

}  // namespace gemma4::fake

#endif  // GEMMA4_TESTS_FAKE_MODEL_H_
