// Internal state behind gemma4::Model (include/gemma4/model.h).
#ifndef GEMMA4_SRC_API_MODEL_IMPL_H_
#define GEMMA4_SRC_API_MODEL_IMPL_H_

#include <memory>
#include <mutex>

#include "api/context.h"
#include "api/memory_plan.h"
#include "audio/audio_encoder.h"
#include "chat/special_tokens.h"
#include "decode/grammar.h"
#include "gemma4/model.h"
#include "model/drafter.h"
#include "model/model.h"
#include "runtime/thread_pool.h"
#include "vision/vision_encoder.h"

namespace gemma4 {

class ModelImpl {
 public:
  std::unique_ptr<LoadedModel> loaded;
  // Sessions' contexts (KV cache + forward) and the config they read: ModelContexts over
  // `loaded`, or a scripted double in session tests (where `loaded` is null).
  std::unique_ptr<ContextSource> contexts;
  std::shared_ptr<const Tokenizer> tokenizer;
  ModelInfo info;
  chat::SpecialTokens special;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<vision::VisionEncoder> vision;  // null: the model takes no images
  std::unique_ptr<audio::AudioEncoder> audio;     // null: the model takes no recordings
  // Why a tower is missing (absent from the checkpoint, or present but unusable: the text
  // model still loads and works), returned when media of that kind is sent.
  Status vision_status, audio_status;
  KvType kv_type = KvType::kF32;     // of every session's cache and of Logits
  std::unique_ptr<Drafter> drafter;  // ModelOptions::draft_model_path, or null
  int draft_tokens = 0;
  ModelOptions options;  // as given to Load (progress dropped)
  // The memory plan's inputs for this model's sessions (gathered at load when
  // options.memory_limit_bytes is set, else on first use).
  StatusOr<const PlanInputs*> plan_inputs() const;
  // Sessions share the pool; ThreadPool::ParallelFor is not reentrant, so one forward pass
  // runs at a time. Decode is memory-bound: interleaving sessions would not be faster.
  mutable std::mutex compute_mutex;

  // Vocabulary tries for constrained decoding, built on first use: `tool_vocab` also holds the
  // text of <|"|> and <tool_call|>, `text_vocab` only ordinary tokens.
  const chat::VocabIndex& tool_vocab() const;
  const chat::VocabIndex& text_vocab() const;

 private:
  mutable std::once_flag tool_vocab_once_, text_vocab_once_, plan_once_;
  mutable StatusOr<PlanInputs> plan_inputs_ = InternalError("memory plan not gathered");

 public:
  // Sets the plan inputs gathered before loading.
  void set_plan_inputs(PlanInputs inputs) {
    std::call_once(plan_once_, [&] { plan_inputs_ = std::move(inputs); });
  }

 private:
  mutable std::unique_ptr<chat::VocabIndex> tool_vocab_, text_vocab_;
};

// The way inside a Model for the library's own layers (sessions, the C ABI's helpers) and for
// tests: read-only, since a Model is immutable after Load and shared between threads (what
// changes under a const Model, the vocabulary tries and the plan inputs, is built once behind
// std::call_once; compute_mutex serializes the pool).
class ModelAccess {
 public:
  static const ModelImpl& Impl(const Model& model) { return *model.impl_; }
  // A Model around an implementation assembled by hand (session tests' scripted models).
  static std::shared_ptr<const Model> Wrap(std::unique_ptr<ModelImpl> impl);
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_API_MODEL_IMPL_H_
