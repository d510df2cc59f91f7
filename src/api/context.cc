#include "api/context.h"

namespace gemma4 {
namespace {

// The real context: every call goes to the InferenceState.
class ModelContext final : public ContextState {
 public:
  ModelContext(const LoadedModel& model, ThreadPool* pool, int64_t max_chunk, KvType kv_type)
      : state_(model, pool, max_chunk, kv_type) {}

  Status Forward(const ForwardInput& input, LogitsMode mode, std::vector<float>* logits) override {
    return state_.Forward(input, mode, logits);
  }
  int64_t position() const override { return state_.position(); }
  int64_t max_chunk() const override { return state_.max_chunk(); }
  KvType kv_type() const override { return state_.kv_type(); }
  bool CanTruncateTo(int64_t new_position) const override {
    return state_.CanTruncateTo(new_position);
  }
  int64_t rewind_floor() const override { return state_.rewind_floor(); }
  Status Truncate(int64_t new_position) override { return state_.Truncate(new_position); }
  Status SetRewindPoint(int slot) override { return state_.SetRewindPoint(slot); }
  int64_t rewind_point(int slot) const override { return state_.rewind_point(slot); }
  int64_t LatestRewindPoint(int64_t position) const override {
    return state_.LatestRewindPoint(position);
  }
  Status CopyStateFrom(const ContextState& other) override {
    const auto* model_context = dynamic_cast<const ModelContext*>(&other);
    if (model_context == nullptr) {
      return InvalidArgumentError("CopyStateFrom: the other context is not a model's");
    }
    return state_.CopyStateFrom(model_context->state_);
  }
  void AppendState(std::string* out) const override { state_.AppendState(out); }
  int64_t saved_ring_rows() const override { return state_.saved_ring_rows(); }
  Status RestoreState(int64_t position, int64_t rewind_floor, int64_t ring_rows,
                      std::string_view bytes, size_t* offset) override {
    return state_.RestoreState(position, rewind_floor, ring_rows, bytes, offset);
  }
  void set_hidden_output(std::vector<float>* rows) override { state_.set_hidden_output(rows); }
  InferenceState* inference() override { return &state_; }

 private:
  InferenceState state_;
};

class ModelContextSource final : public ContextSource {
 public:
  ModelContextSource(const LoadedModel& model, ThreadPool* pool, KvType kv_type)
      : model_(model), pool_(pool), kv_type_(kv_type) {}
  const ModelConfig& config() const override { return model_.config(); }
  uint64_t weights_fingerprint() const override { return model_.weights_fingerprint(); }
  std::unique_ptr<ContextState> NewContext(int64_t max_chunk) const override {
    return std::make_unique<ModelContext>(model_, pool_, max_chunk, kv_type_);
  }

 private:
  const LoadedModel& model_;
  ThreadPool* pool_;
  KvType kv_type_;
};

}  // namespace

std::unique_ptr<ContextSource> ModelContexts(const LoadedModel& model, ThreadPool* pool,
                                             KvType kv_type) {
  return std::make_unique<ModelContextSource>(model, pool, kv_type);
}

}  // namespace gemma4
