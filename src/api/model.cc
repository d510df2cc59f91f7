#include "gemma4/model.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <filesystem>
#include <thread>

#include "api/model_impl.h"
#include "formats/mmproj.h"
#include "model/forward.h"

namespace gemma4 {
namespace {

// The tokenizer beside the weights: the checkpoint directory (or the directory of a
// .safetensors file), or the GGUF's own vocabulary.
std::string DefaultTokenizerPath(const std::string& model_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(model_path, ec)) return model_path;
  const fs::path p(model_path);
  if (p.extension() == ".gguf") return model_path;
  return p.parent_path().empty() ? "." : p.parent_path().string();
}

std::vector<std::string> VocabTexts(const Tokenizer& tok, bool with_tool_markers) {
  std::vector<std::string> texts(tok.vocab_size());
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (tok.IsSpecial(id)) {
      const std::string s = tok.TokenString(id);
      if (with_tool_markers && (s == "<|\"|>" || s == "<tool_call|>")) texts[id] = s;
      continue;
    }
    texts[id] = tok.TokenBytes(id);
  }
  return texts;
}

// Heap pages freed by parsing (a GGUF's metadata, JSON) stay in the resident set of a malloc
// heap, between the tables that remain, until trimmed.
void ReturnFreedHeapPages() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace

const chat::VocabIndex& ModelImpl::tool_vocab() const {
  std::call_once(tool_vocab_once_, [this] {
    tool_vocab_ = std::make_unique<chat::VocabIndex>(VocabTexts(*tokenizer, true));
  });
  return *tool_vocab_;
}

const chat::VocabIndex& ModelImpl::text_vocab() const {
  std::call_once(text_vocab_once_, [this] {
    text_vocab_ = std::make_unique<chat::VocabIndex>(VocabTexts(*tokenizer, false));
  });
  return *text_vocab_;
}

StatusOr<const PlanInputs*> ModelImpl::plan_inputs() const {
  std::call_once(plan_once_, [this] {
    try {
      // The drafter is loaded already: size it from there rather than load it again.
      ModelOptions without_drafter = options;
      without_drafter.draft_model_path.clear();
      plan_inputs_ = GatherPlanInputs(info.path, without_drafter);
      if (plan_inputs_.ok()) {
        plan_inputs_->drafter = drafter != nullptr ? drafter->ResidentBytes() : 0;
        // What the load resolved (threads that could start, the towers it kept).
        plan_inputs_->threads = info.threads;
        plan_inputs_->kv_type = kv_type;
        if (vision == nullptr && audio == nullptr) {
          plan_inputs_->encoder_weights = plan_inputs_->encoder_activations = 0;
        }
      }
    } catch (const std::bad_alloc&) {
      plan_inputs_ = ResourceExhaustedError("out of memory planning the memory of " + info.path);
    }
  });
  if (!plan_inputs_.ok()) return plan_inputs_.status();
  return &*plan_inputs_;
}

Model::Model(std::unique_ptr<ModelImpl> impl) : impl_(std::move(impl)) {}

std::shared_ptr<const Model> ModelAccess::Wrap(std::unique_ptr<ModelImpl> impl) {
  return std::shared_ptr<const Model>(new Model(std::move(impl)));
}

Model::~Model() = default;

StatusOr<std::shared_ptr<const Model>> Model::Load(const std::string& path,
                                                   const ModelOptions& options) {
  // Allocations that depend on the files and the machine (JSON, tables, repacked weights)
  // throw std::bad_alloc from deep inside; none may reach the caller of a StatusOr API.
  auto load = [&]() -> StatusOr<std::shared_ptr<const Model>> {
    if (options.threads < 0 || options.threads > 1024) {
      return InvalidArgumentError("ModelOptions.threads = " + std::to_string(options.threads) +
                                  ": must be in [0, 1024]");
    }
    auto report = [&](float fraction) -> Status {
      if (options.progress && !options.progress(fraction)) {
        return CancelledError("loading " + path + " was cancelled");
      }
      return OkStatus();
    };
    GEMMA4_ASSIGN_OR_RETURN(const int max_image_tokens, ResolveMaxImageTokens(options));
    GEMMA4_RETURN_IF_ERROR(report(0.0f));
    auto impl = std::make_unique<ModelImpl>();
    impl->options = options;
    impl->options.progress = nullptr;
    impl->options.max_image_tokens = max_image_tokens;
    // A drafter sized by the memory check below is kept for the load (mapped once, not twice).
    std::unique_ptr<Drafter> planned_drafter;
    if (options.memory_limit_bytes != 0) {
      // Refused before anything is allocated: the weights and a one-token session must fit.
      ModelOptions without_drafter = options;
      without_drafter.draft_model_path.clear();
      GEMMA4_ASSIGN_OR_RETURN(PlanInputs inputs, GatherPlanInputs(path, without_drafter));
      if (!options.draft_model_path.empty()) {
        GEMMA4_ASSIGN_OR_RETURN(planned_drafter, Drafter::Load(options.draft_model_path));
        inputs.drafter = planned_drafter->ResidentBytes();
      }
      // Sessions may take smaller steps to fit (SessionImpl::Init).
      const PlanInputs stepped = WithStepWithin(inputs, 1, options.memory_limit_bytes);
      GEMMA4_RETURN_IF_ERROR(CheckMemoryLimit(stepped, ComputeMemoryPlan(stepped, 1),
                                              options.memory_limit_bytes, "model " + path));
      impl->set_plan_inputs(std::move(inputs));
    }
    std::function<bool(float)> layer_progress;
    if (options.progress) {
      layer_progress = [&options](float f) { return options.progress(0.9f * f); };
    }
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    const int threads = options.threads > 0 ? options.threads : static_cast<int>(hw);
    impl->pool = std::make_unique<ThreadPool>(threads);
    // The tokenizer first: parsing a GGUF's vocabulary holds about three times the finished
    // tables for a moment (Gemma 4's 262144 entries: ~100 MB), and that peak then comes
    // before the weights, not on top of them; the heap it leaves free is returned before the
    // weights load. Its error, if any, still comes after the model's own.
    const std::string tokenizer_path =
        options.tokenizer_path.empty() ? DefaultTokenizerPath(path) : options.tokenizer_path;
    auto tokenizer = Tokenizer::Load(tokenizer_path);
    ReturnFreedHeapPages();
    GEMMA4_ASSIGN_OR_RETURN(impl->loaded,
                            LoadedModel::Load(path, layer_progress, impl->pool.get()));
    GEMMA4_RETURN_IF_ERROR(report(0.9f));
    if (!tokenizer.ok()) {
      return Status(tokenizer.status().code(), "model " + path + ": no usable tokenizer (" +
                                                   tokenizer.status().message() +
                                                   "); pass ModelOptions::tokenizer_path");
    }
    impl->tokenizer = *tokenizer;
    const ModelConfig& c = impl->loaded->config();
    if (impl->tokenizer->vocab_size() > c.vocab_size) {
      return InvalidArgumentError(
          "tokenizer " + tokenizer_path + " has " + std::to_string(impl->tokenizer->vocab_size()) +
          " ids but the model's vocabulary has only " + std::to_string(c.vocab_size));
    }
    const Tokenizer& tok = *impl->tokenizer;
    impl->special = chat::FindSpecialTokens(tok, c.bos_token_id);
    const chat::SpecialTokens& s = impl->special;
    if (s.turn_open < 0 || s.turn_close < 0) {
      return InvalidArgumentError("tokenizer " + tokenizer_path +
                                  " lacks Gemma 4's <|turn> / <turn|> tokens");
    }
    ModelInfo& info = impl->info;
    info.variant = c.variant;
    info.path = path;
    info.vocab_size = c.vocab_size;
    info.num_layers = c.num_layers;
    info.hidden_size = c.hidden_size;
    info.sliding_window = c.sliding_window;
    info.max_context = c.max_position_embeddings;
    info.num_parameters = impl->loaded->num_parameters();
    info.weight_bytes = impl->loaded->weight_bytes();
    // 26B-A4B and 31B (no Per-Layer Embeddings) ship the template with the empty thought channel.
    info.large_chat_template = c.ple_dim == 0;
    for (int id : c.eos_token_ids) info.stop_token_ids.push_back(id);
    if (info.stop_token_ids.empty()) {
      if (s.eos >= 0) info.stop_token_ids.push_back(s.eos);
      info.stop_token_ids.push_back(s.turn_close);
    }
    SamplerOptions& d = info.default_sampler;
    d.temperature = c.do_sample ? c.temperature : 0.0f;
    d.top_k = c.top_k;
    d.top_p = c.top_p > 0.0f ? c.top_p : 1.0f;
    info.threads = impl->pool->num_threads();  // capped, or fewer where threads could not start
    switch (options.kv_cache_type) {
      case KvCacheType::kF32:
        impl->kv_type = KvType::kF32;
        break;
      case KvCacheType::kF16:
        impl->kv_type = KvType::kF16;
        break;
      case KvCacheType::kQ8_0:
        impl->kv_type = KvType::kQ8_0;
        break;
      case KvCacheType::kQ4_0:
        impl->kv_type = KvType::kQ4_0;
        break;
      case KvCacheType::kAuto:
        impl->kv_type = impl->loaded->DefaultKvType();
        break;
    }
    info.kv_cache_type = KvTypeName(impl->kv_type);
    impl->contexts = ModelContexts(*impl->loaded, impl->pool.get(), impl->kv_type);
    if (!options.draft_model_path.empty()) {
      if (options.draft_tokens < 1 || options.draft_tokens > kMaxDraftTokens) {
        return InvalidArgumentError(
            "ModelOptions.draft_tokens = " + std::to_string(options.draft_tokens) +
            " is outside [1, " + std::to_string(kMaxDraftTokens) + "]");
      }
      if (planned_drafter != nullptr) {
        impl->drafter = std::move(planned_drafter);
      } else {
        GEMMA4_ASSIGN_OR_RETURN(impl->drafter, Drafter::Load(options.draft_model_path));
      }
      Status compatible = impl->drafter->CheckCompatible(c);
      if (!compatible.ok()) {
        return Status(compatible.code(),
                      "drafter " + options.draft_model_path + ": " + compatible.message());
      }
      impl->draft_tokens = options.draft_tokens;
    }
    // The towers. An mmproj file given explicitly must load; a checkpoint's own tower that cannot
    // be used (damaged, or a shape transformers itself could not run) leaves the text model
    // working, and the reason is returned when media of that kind is sent.
    impl->vision_status =
        FailedPreconditionError("model " + path +
                                " has no vision tower: it cannot take images (give ModelOptions::"
                                "mmproj_path for a GGUF model)");
    impl->audio_status = FailedPreconditionError(
        "model " + path +
        " has no audio tower: it cannot take recordings (E2B and E4B hear; 26B "
        "and 31B do not)");
    // Ollama's one-file GGUFs carry the towers inline: the model file is its own mmproj. Those
    // towers, like a checkpoint's, leave the text model usable when they cannot be.
    const bool inline_vision =
        impl->loaded->HasGgufTensor(mmproj::MarkerTensor(mmproj::Tower::kVision));
    const bool inline_audio =
        impl->loaded->HasGgufTensor(mmproj::MarkerTensor(mmproj::Tower::kAudio));
    const bool towers_inline =
        options.mmproj_path.empty() && impl->loaded->is_gguf() && (inline_vision || inline_audio);
    const std::string& mmproj_path = towers_inline ? path : options.mmproj_path;
    const Checkpoint* ckpt = impl->loaded->checkpoint();
    bool mmproj_has_tower = false;
    if (!mmproj_path.empty()) {
      auto vision = vision::VisionEncoder::LoadMmproj(mmproj_path, c.hidden_size, impl->pool.get());
      if (vision.ok()) {
        impl->vision = std::move(vision).value();
        mmproj_has_tower = true;
      } else if (towers_inline) {
        if (inline_vision) {
          impl->vision_status = Status(vision.status().code(), "the vision tower cannot be used: " +
                                                                   vision.status().message());
        }
      } else if (vision.status().code() != StatusCode::kNotFound) {
        return vision.status();
      }
    } else if (ckpt != nullptr) {
      const json::Value* vc = ckpt->config_json().Find("vision_config");
      if (vc != nullptr && !vc->is_null()) {
        auto vision = vision::VisionEncoder::Load(*impl->loaded, impl->pool.get());
        if (vision.ok()) {
          impl->vision = std::move(vision).value();
        } else {
          impl->vision_status = Status(vision.status().code(), "the vision tower cannot be used: " +
                                                                   vision.status().message());
        }
      }
    }
    if (impl->vision != nullptr) {
      impl->vision_status = OkStatus();
      info.vision = true;
      info.default_image_tokens = impl->vision->config().default_max_soft_tokens;
    }
    if (!mmproj_path.empty()) {
      // The same file may hold the audio tower (E2B/E4B mmproj files from llama.cpp's converter,
      // Ollama blobs).
      auto audio = audio::AudioEncoder::LoadMmproj(mmproj_path, c.hidden_size, impl->pool.get());
      if (audio.ok()) {
        impl->audio = std::move(audio).value();
        impl->audio_status = OkStatus();
        info.audio = true;
        mmproj_has_tower = true;
      } else if (towers_inline) {
        if (inline_audio) {
          impl->audio_status = Status(
              audio.status().code(), "the audio tower cannot be used: " + audio.status().message());
        }
      } else if (audio.status().code() != StatusCode::kNotFound) {
        return audio.status();
      }
      if (!mmproj_has_tower && !towers_inline) {
        return NotFoundError(options.mmproj_path +
                             ": no Gemma 4 vision (gemma4v) or audio (gemma4a) tower in this file");
      }
    } else if (ckpt != nullptr) {
      const json::Value* ac = ckpt->config_json().Find("audio_config");
      if (ac != nullptr && !ac->is_null()) {
        auto audio = audio::AudioEncoder::Load(*impl->loaded, impl->pool.get());
        if (audio.ok()) {
          impl->audio = std::move(audio).value();
          impl->audio_status = OkStatus();
          info.audio = true;
        } else {
          impl->audio_status = Status(
              audio.status().code(), "the audio tower cannot be used: " + audio.status().message());
        }
      }
    }
    GEMMA4_RETURN_IF_ERROR(report(1.0f));
    return std::shared_ptr<const Model>(new Model(std::move(impl)));
  };
  try {
    return load();
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory loading the model " + path);
  } catch (const std::exception& e) {
    return InternalError("loading the model " + path + ": " + e.what());
  }
}

StatusOr<MemoryPlan> Model::PlanMemory(const std::string& path, const ModelOptions& options,
                                       int64_t context_tokens) {
  try {
    GEMMA4_ASSIGN_OR_RETURN(PlanInputs inputs, GatherPlanInputs(path, options));
    return ComputeMemoryPlan(WithStepWithin(inputs, context_tokens, options.memory_limit_bytes),
                             context_tokens);
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory planning the memory of " + path);
  } catch (const std::exception& e) {
    return InternalError("planning the memory of " + path + ": " + e.what());
  }
}

StatusOr<MemoryPlan> Model::PlanMemory(int64_t context_tokens) const {
  GEMMA4_ASSIGN_OR_RETURN(const PlanInputs* inputs, impl_->plan_inputs());
  // With a cap, the steps a session of that context would take.
  return ComputeMemoryPlan(
      WithStepWithin(*inputs, context_tokens, impl_->options.memory_limit_bytes), context_tokens);
}

const ModelInfo& Model::info() const { return impl_->info; }
const std::shared_ptr<const Tokenizer>& Model::tokenizer() const { return impl_->tokenizer; }

StatusOr<std::vector<float>> Model::Logits(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids) {
    if (id < 0 || id >= impl_->info.vocab_size) {
      return InvalidArgumentError("token id " + std::to_string(id) + " outside the vocabulary");
    }
  }
  std::lock_guard<std::mutex> lock(impl_->compute_mutex);
  InferenceState state(*impl_->loaded, impl_->pool.get(), DefaultMaxChunk(), impl_->kv_type);
  std::vector<float> logits;
  GEMMA4_RETURN_IF_ERROR(
      state.Forward(ids.data(), static_cast<int64_t>(ids.size()), LogitsMode::kAll, &logits));
  return logits;
}

}  // namespace gemma4
