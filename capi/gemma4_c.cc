// C ABI over the C++ API. Every entry point catches everything: no exception crosses into C.
#include "gemma4.h"

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "gemma4/model.h"
#include "gemma4/session.h"
#include "gemma4/tools.h"

struct gemma4_model {
  std::shared_ptr<const gemma4::Model> model;
};
struct gemma4_tools {
  std::shared_ptr<gemma4::ToolRegistry> registry;
};
struct gemma4_session {
  std::shared_ptr<const gemma4::Model> model;
  std::unique_ptr<gemma4::Session> session;
};
struct gemma4_content {
  std::vector<gemma4::ContentPart> parts;
};
struct gemma4_reply {
  gemma4::Reply reply;
  std::vector<std::string> results;
};
struct gemma4_tool_result {
  std::string text;
};

namespace {

thread_local std::string last_error;

gemma4_status Fail(gemma4_status code, std::string message) {
  last_error = std::move(message);
  return code;
}

gemma4_status FromStatus(const gemma4::Status& s) {
  if (s.ok()) return GEMMA4_OK;
  last_error = s.message();
  return static_cast<gemma4_status>(static_cast<int>(s.code()));
}

// Runs `body`, turning exceptions (bad_alloc from std containers, anything from callbacks)
// into statuses.
template <class F>
gemma4_status Guard(F&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(GEMMA4_RESOURCE_EXHAUSTED, "out of memory");
  } catch (const std::exception& e) {
    return Fail(GEMMA4_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return Fail(GEMMA4_INTERNAL, "internal error");
  }
}

// Copies the caller's option struct over `defaults`, as far as the caller's struct reaches.
template <class T>
T Options(const T* given, T defaults) {
  if (given == nullptr) return defaults;
  const size_t n = given->struct_size < sizeof(T) ? given->struct_size : sizeof(T);
  std::memcpy(static_cast<void*>(&defaults), given, n);
  defaults.struct_size = sizeof(T);
  return defaults;
}

// Writes the defaults into the first `size` bytes of the caller's struct (the size of the struct
// as the caller's header declares it), never beyond; struct_size records how far it reaches.
template <class T>
void InitSized(T* options, size_t size, const T& defaults) {
  if (options == nullptr || size < sizeof(uint32_t)) return;
  const size_t n = size < sizeof(T) ? size : sizeof(T);
  std::memcpy(static_cast<void*>(options), &defaults, n);
  options->struct_size = static_cast<uint32_t>(n);
}

// The option structs as 0.2 declared them end at these fields (what its *_init functions, still
// exported, may write). Later fields go after them.
constexpr size_t kModelOptionsSize0_2 = offsetof(gemma4_model_options, user_data) + sizeof(void*);
constexpr size_t kSessionOptionsSize0_2 =
    offsetof(gemma4_session_options, context_policy) + sizeof(gemma4_context_policy);
constexpr size_t kSamplerOptionsSize0_2 =
    offsetof(gemma4_sampler_options, n_logit_bias) + sizeof(size_t);
constexpr size_t kGenerateOptionsSize0_2 =
    offsetof(gemma4_generate_options, max_calls_per_round) + sizeof(int32_t);

gemma4_sampler_options DefaultSampler(const gemma4_model* model) {
  gemma4_sampler_options o{};
  o.struct_size = sizeof(o);
  gemma4::SamplerOptions d;
  if (model != nullptr) d = model->model->info().default_sampler;
  o.temperature = d.temperature;
  o.top_k = d.top_k;
  o.top_p = d.top_p;
  o.min_p = d.min_p;
  o.repetition_penalty = d.repetition_penalty;
  o.frequency_penalty = d.frequency_penalty;
  o.presence_penalty = d.presence_penalty;
  o.penalty_last_n = d.penalty_last_n;
  o.seed = d.seed;
  return o;
}

gemma4_generate_options DefaultGenerate() {
  gemma4_generate_options o{};
  o.struct_size = sizeof(o);
  const gemma4::GenerateOptions d;
  o.max_tokens = d.max_tokens;
  o.thinking = d.thinking;
  o.thinking_budget = d.thinking_budget;
  o.execute_tools = d.execute_tools;
  o.max_tool_steps = d.max_tool_steps;
  o.constrain_tool_calls = d.constrain_tool_calls;
  o.stop_on_repetition = d.stop_on_repetition;
  o.max_calls_per_round = d.max_calls_per_round;
  o.draft_tokens = d.draft_tokens;
  return o;
}

gemma4::GenerateOptions ToGenerate(const gemma4_generate_options* given) {
  const gemma4_generate_options o = Options(given, DefaultGenerate());
  gemma4::GenerateOptions g;
  g.max_tokens = o.max_tokens;
  g.thinking = o.thinking != 0;
  g.thinking_budget = o.thinking_budget;
  g.execute_tools = o.execute_tools != 0;
  g.max_tool_steps = o.max_tool_steps;
  g.constrain_tool_calls = o.constrain_tool_calls != 0;
  g.stop_on_repetition = o.stop_on_repetition != 0;
  g.require_tool_call = o.require_tool_call != 0;
  if (o.max_calls_per_round > 0) g.max_calls_per_round = o.max_calls_per_round;
  g.draft_tokens = o.draft_tokens;
  if (o.json_schema != nullptr) g.json_schema = o.json_schema;
  if (o.sampler != nullptr) {
    const gemma4_sampler_options s = Options(o.sampler, DefaultSampler(nullptr));
    gemma4::SamplerOptions so;
    so.temperature = s.temperature;
    so.top_k = s.top_k;
    so.top_p = s.top_p;
    so.min_p = s.min_p;
    so.repetition_penalty = s.repetition_penalty;
    so.frequency_penalty = s.frequency_penalty;
    so.presence_penalty = s.presence_penalty;
    so.penalty_last_n = s.penalty_last_n;
    so.seed = s.seed;
    for (size_t i = 0; i < s.n_logit_bias && s.logit_bias_ids && s.logit_bias_values; ++i) {
      so.logit_bias.emplace_back(s.logit_bias_ids[i], s.logit_bias_values[i]);
    }
    g.sampler = so;
  }
  if (o.on_text != nullptr) {
    auto fn = o.on_text;
    void* user = o.user_data;
    g.on_text = [fn, user](gemma4::StreamKind kind, std::string_view text) {
      const std::string copy(text);  // NUL-terminated for C callers that ignore len
      return fn(kind == gemma4::StreamKind::kThought ? GEMMA4_STREAM_THOUGHT : GEMMA4_STREAM_TEXT,
                copy.c_str(), copy.size(), user) != 0;
    };
  }
  if (o.on_tool_call != nullptr) {
    auto fn = o.on_tool_call;
    void* user = o.user_data;
    g.on_tool_call = [fn, user](const gemma4::ToolCall& call) {
      fn(call.name.c_str(), call.arguments_json.c_str(), user);
    };
  }
  return g;
}

gemma4_status Deliver(gemma4::StatusOr<gemma4::Reply> reply, gemma4_reply** out) {
  if (!reply.ok()) return FromStatus(reply.status());
  auto r = std::make_unique<gemma4_reply>();
  r->reply = std::move(*reply);
  for (const auto& t : r->reply.tool_results) r->results.push_back(t.response_json);
  *out = r.release();
  return GEMMA4_OK;
}

}  // namespace

extern "C" {

const char* gemma4_version_string(void) { return "0.4.0"; }

void gemma4_version(int* major, int* minor, int* patch) {
  if (major) *major = GEMMA4_VERSION_MAJOR;
  if (minor) *minor = GEMMA4_VERSION_MINOR;
  if (patch) *patch = GEMMA4_VERSION_PATCH;
}

const char* gemma4_last_error(void) { return last_error.c_str(); }

const char* gemma4_status_name(gemma4_status status) {
  return gemma4::StatusCodeName(static_cast<gemma4::StatusCode>(status));
}

void gemma4_free(void* p) { std::free(p); }

void gemma4_model_options_init_sized(gemma4_model_options* options, size_t size) {
  InitSized(options, size, gemma4_model_options{});  // kv_cache_type 0: GEMMA4_KV_CACHE_AUTO
}

// 0.2's entry points, still exported for programs linked against it: they fill exactly the
// struct those programs have (0.2's fields), never the fields added since.
GEMMA4_API void(gemma4_model_options_init)(gemma4_model_options* options) {
  gemma4_model_options_init_sized(options, kModelOptionsSize0_2);
}

namespace {

// gemma4_model_options -> ModelOptions; false (with the error set) for a bad kv_cache_type.
bool ToModelOptions(const gemma4_model_options* options, const char* function,
                    gemma4::ModelOptions* out, gemma4_status* status) {
  gemma4_model_options defaults{};
  defaults.struct_size = sizeof(defaults);
  const gemma4_model_options o = Options(options, defaults);
  gemma4::ModelOptions& mo = *out;
  mo.threads = o.threads;
  if (o.tokenizer_path != nullptr) mo.tokenizer_path = o.tokenizer_path;
  if (o.mmproj_path != nullptr) mo.mmproj_path = o.mmproj_path;
  switch (o.kv_cache_type) {
    case GEMMA4_KV_CACHE_AUTO:
      mo.kv_cache_type = gemma4::KvCacheType::kAuto;
      break;
    case GEMMA4_KV_CACHE_F32:
      mo.kv_cache_type = gemma4::KvCacheType::kF32;
      break;
    case GEMMA4_KV_CACHE_F16:
      mo.kv_cache_type = gemma4::KvCacheType::kF16;
      break;
    case GEMMA4_KV_CACHE_Q8_0:
      mo.kv_cache_type = gemma4::KvCacheType::kQ8_0;
      break;
    case GEMMA4_KV_CACHE_Q4_0:
      mo.kv_cache_type = gemma4::KvCacheType::kQ4_0;
      break;
    default:
      *status = Fail(GEMMA4_INVALID_ARGUMENT,
                     std::string(function) + ": kv_cache_type " + std::to_string(o.kv_cache_type) +
                         " is not a gemma4_kv_cache_type (0 auto, 1 f32, 2 f16, 3 q8_0, 4 q4_0)");
      return false;
  }
  mo.memory_limit_bytes = o.memory_limit_bytes;
  if (o.draft_model_path != nullptr) mo.draft_model_path = o.draft_model_path;
  if (o.draft_tokens != 0) mo.draft_tokens = o.draft_tokens;
  mo.max_image_tokens = o.max_image_tokens;
  if (o.progress != nullptr) {
    auto fn = o.progress;
    void* user = o.user_data;
    mo.progress = [fn, user](float f) { return fn(f, user) != 0; };
  }
  return true;
}

gemma4_status FillPlan(const gemma4::MemoryPlan& p, gemma4_memory_plan* out) {
  gemma4_memory_plan plan{};
  plan.struct_size = sizeof(plan);
  plan.kv_cache_type = p.kv_cache_type == "f32"    ? GEMMA4_KV_CACHE_F32
                       : p.kv_cache_type == "f16"  ? GEMMA4_KV_CACHE_F16
                       : p.kv_cache_type == "q8_0" ? GEMMA4_KV_CACHE_Q8_0
                                                   : GEMMA4_KV_CACHE_Q4_0;
  plan.threads = p.threads;
  plan.context_tokens = p.context_tokens;
  plan.weights_repacked = p.weights_repacked;
  plan.weights_mapped = p.weights_mapped;
  plan.weights_converted = p.weights_converted;
  plan.ple_table = p.ple_table;
  plan.kv_full = p.kv_full;
  plan.kv_sliding = p.kv_sliding;
  plan.kv_rewind = p.kv_rewind;
  plan.scratch = p.scratch;
  plan.tokenizer = p.tokenizer;
  plan.encoder_weights = p.encoder_weights;
  plan.encoder_activations = p.encoder_activations;
  plan.total = p.total;
  plan.drafter = p.drafter;
  plan.max_image_tokens = static_cast<int32_t>(p.max_image_tokens);
  // Only the caller's fields (a struct from an older header is shorter).
  const size_t n =
      out->struct_size != 0 && out->struct_size < sizeof(plan) ? out->struct_size : sizeof(plan);
  std::memcpy(static_cast<void*>(out), &plan, n);
  out->struct_size = static_cast<uint32_t>(n);
  return GEMMA4_OK;
}

}  // namespace

gemma4_status gemma4_model_load(const char* path, const gemma4_model_options* options,
                                gemma4_model** out) {
  return Guard([&]() -> gemma4_status {
    if (path == nullptr || out == nullptr) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_model_load: path and out are required");
    }
    *out = nullptr;
    gemma4::ModelOptions mo;
    gemma4_status bad = GEMMA4_OK;
    if (!ToModelOptions(options, "gemma4_model_load", &mo, &bad)) return bad;
    auto model = gemma4::Model::Load(path, mo);
    if (!model.ok()) return FromStatus(model.status());
    *out = new gemma4_model{*model};
    return GEMMA4_OK;
  });
}

void gemma4_model_free(gemma4_model* model) { delete model; }

gemma4_status gemma4_plan_memory(const char* path, const gemma4_model_options* options,
                                 int64_t context_tokens, gemma4_memory_plan* out) {
  return Guard([&]() -> gemma4_status {
    if (path == nullptr || out == nullptr) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_plan_memory: path and out are required");
    }
    gemma4::ModelOptions mo;
    gemma4_status bad = GEMMA4_OK;
    if (!ToModelOptions(options, "gemma4_plan_memory", &mo, &bad)) return bad;
    auto plan = gemma4::Model::PlanMemory(path, mo, context_tokens);
    if (!plan.ok()) return FromStatus(plan.status());
    return FillPlan(*plan, out);
  });
}

gemma4_status gemma4_model_plan_memory(const gemma4_model* model, int64_t context_tokens,
                                       gemma4_memory_plan* out) {
  return Guard([&]() -> gemma4_status {
    if (model == nullptr || out == nullptr) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_model_plan_memory: null argument");
    }
    auto plan = model->model->PlanMemory(context_tokens);
    if (!plan.ok()) return FromStatus(plan.status());
    return FillPlan(*plan, out);
  });
}

gemma4_status gemma4_model_get_info(const gemma4_model* model, gemma4_model_info* out) {
  if (model == nullptr || out == nullptr) {
    return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_model_get_info: null argument");
  }
  const gemma4::ModelInfo& i = model->model->info();
  gemma4_model_info info{};
  info.struct_size = sizeof(info);
  info.variant = i.variant.c_str();
  info.vocab_size = i.vocab_size;
  info.num_layers = i.num_layers;
  info.hidden_size = i.hidden_size;
  info.sliding_window = i.sliding_window;
  info.max_context = i.max_context;
  info.num_parameters = i.num_parameters;
  info.weight_bytes = i.weight_bytes;
  info.threads = i.threads;
  info.large_chat_template = i.large_chat_template ? 1 : 0;
  info.kv_cache_type = i.kv_cache_type.c_str();
  info.vision = i.vision ? 1 : 0;
  info.default_image_tokens = i.default_image_tokens;
  info.audio = i.audio ? 1 : 0;
  const size_t n =
      out->struct_size != 0 && out->struct_size < sizeof(info) ? out->struct_size : sizeof(info);
  std::memcpy(static_cast<void*>(out), &info, n);
  out->struct_size = static_cast<uint32_t>(n);
  return GEMMA4_OK;
}

gemma4_status gemma4_tokenize(const gemma4_model* model, const char* text, size_t text_len,
                              int add_special_tokens, int32_t* ids, size_t capacity,
                              size_t* n_ids) {
  return Guard([&]() -> gemma4_status {
    if (model == nullptr || (text == nullptr && text_len > 0) || n_ids == nullptr ||
        (ids == nullptr && capacity > 0)) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_tokenize: null argument");
    }
    const std::vector<int32_t> out = model->model->tokenizer()->Encode(
        std::string_view(text == nullptr ? "" : text, text_len), add_special_tokens != 0);
    *n_ids = out.size();
    if (out.size() > capacity) {
      return Fail(GEMMA4_OUT_OF_RANGE, "gemma4_tokenize: " + std::to_string(out.size()) +
                                           " ids do not fit in " + std::to_string(capacity));
    }
    if (!out.empty()) std::memcpy(ids, out.data(), out.size() * sizeof(int32_t));
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_detokenize(const gemma4_model* model, const int32_t* ids, size_t n_ids,
                                int skip_special_tokens, char* text, size_t capacity,
                                size_t* text_len) {
  return Guard([&]() -> gemma4_status {
    if (model == nullptr || (ids == nullptr && n_ids > 0) || text_len == nullptr ||
        (text == nullptr && capacity > 0)) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_detokenize: null argument");
    }
    auto decoded = model->model->tokenizer()->DecodeChecked(std::span<const int32_t>(ids, n_ids),
                                                            skip_special_tokens != 0);
    if (!decoded.ok()) return FromStatus(decoded.status());
    const std::string& s = *decoded;
    *text_len = s.size();
    if (s.size() + 1 > capacity) {
      return Fail(GEMMA4_OUT_OF_RANGE, "gemma4_detokenize: " + std::to_string(s.size() + 1) +
                                           " bytes do not fit in " + std::to_string(capacity));
    }
    std::memcpy(text, s.c_str(), s.size() + 1);
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_model_logits(const gemma4_model* model, const int32_t* ids, size_t n_ids,
                                  float* logits, size_t capacity) {
  return Guard([&]() -> gemma4_status {
    if (model == nullptr || ids == nullptr || logits == nullptr || n_ids == 0) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_model_logits: null or empty argument");
    }
    const size_t need = n_ids * static_cast<size_t>(model->model->info().vocab_size);
    if (capacity < need) {
      return Fail(GEMMA4_OUT_OF_RANGE, "gemma4_model_logits: needs " + std::to_string(need) +
                                           " floats, capacity " + std::to_string(capacity));
    }
    auto out = model->model->Logits(std::vector<int32_t>(ids, ids + n_ids));
    if (!out.ok()) return FromStatus(out.status());
    std::memcpy(logits, out->data(), need * sizeof(float));
    return GEMMA4_OK;
  });
}

void gemma4_tool_result_set(gemma4_tool_result* result, const char* text, size_t len) {
  if (result == nullptr) return;
  result->text.assign(text == nullptr ? "" : text, text == nullptr ? 0 : len);
}

gemma4_status gemma4_tools_create(gemma4_tools** out) {
  return Guard([&]() -> gemma4_status {
    if (out == nullptr) return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_tools_create: null out");
    *out = new gemma4_tools{std::make_shared<gemma4::ToolRegistry>()};
    return GEMMA4_OK;
  });
}

void gemma4_tools_free(gemma4_tools* tools) { delete tools; }

gemma4_status gemma4_tools_register(gemma4_tools* tools, const char* name, const char* description,
                                    const char* parameters_schema_json, gemma4_tool_fn fn,
                                    void* user_data) {
  return Guard([&]() -> gemma4_status {
    if (tools == nullptr || name == nullptr || fn == nullptr) {
      return Fail(GEMMA4_INVALID_ARGUMENT,
                  "gemma4_tools_register: tools, name and fn are required");
    }
    auto callback = [fn, user_data](const std::string& args) -> gemma4::StatusOr<std::string> {
      gemma4_tool_result result;
      const gemma4_status s = fn(args.c_str(), &result, user_data);
      if (s != GEMMA4_OK) {
        return gemma4::Status(static_cast<gemma4::StatusCode>(s),
                              result.text.empty() ? gemma4_status_name(s) : result.text);
      }
      return result.text;
    };
    return FromStatus(
        tools->registry->Register(name, description ? description : "",
                                  parameters_schema_json ? parameters_schema_json : "", callback));
  });
}

void gemma4_session_options_init_sized(gemma4_session_options* options, size_t size) {
  InitSized(options, size, gemma4_session_options{});
}

GEMMA4_API void(gemma4_session_options_init)(gemma4_session_options* options) {
  gemma4_session_options_init_sized(options, kSessionOptionsSize0_2);
}

gemma4_status gemma4_session_create(gemma4_model* model, const gemma4_session_options* options,
                                    gemma4_session** out) {
  return Guard([&]() -> gemma4_status {
    if (model == nullptr || out == nullptr) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_session_create: model and out are required");
    }
    *out = nullptr;
    gemma4_session_options defaults{};
    defaults.struct_size = sizeof(defaults);
    const gemma4_session_options o = Options(options, defaults);
    gemma4::SessionOptions so;
    if (o.system_prompt != nullptr) so.system_prompt = o.system_prompt;
    if (o.tools != nullptr) so.tools = std::make_shared<gemma4::ToolRegistry>(*o.tools->registry);
    so.max_context = o.max_context;
    so.context_policy = o.context_policy == GEMMA4_CONTEXT_DROP_OLD_TURNS
                            ? gemma4::ContextPolicy::kDropOldTurns
                            : gemma4::ContextPolicy::kError;
    auto session = gemma4::Session::Create(model->model, so);
    if (!session.ok()) return FromStatus(session.status());
    *out = new gemma4_session{model->model, std::move(*session)};
    return GEMMA4_OK;
  });
}

void gemma4_session_free(gemma4_session* session) { delete session; }

void gemma4_sampler_options_init_sized(gemma4_sampler_options* options, const gemma4_model* model,
                                       size_t size) {
  InitSized(options, size, DefaultSampler(model));
}

GEMMA4_API void(gemma4_sampler_options_init)(gemma4_sampler_options* options,
                                             const gemma4_model* model) {
  gemma4_sampler_options_init_sized(options, model, kSamplerOptionsSize0_2);
}

void gemma4_generate_options_init_sized(gemma4_generate_options* options, size_t size) {
  InitSized(options, size, DefaultGenerate());
}

GEMMA4_API void(gemma4_generate_options_init)(gemma4_generate_options* options) {
  gemma4_generate_options_init_sized(options, kGenerateOptionsSize0_2);
}

gemma4_status gemma4_session_send(gemma4_session* session, const char* user_text,
                                  const gemma4_generate_options* options, gemma4_reply** out) {
  return Guard([&]() -> gemma4_status {
    if (session == nullptr || user_text == nullptr || out == nullptr) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_session_send: null argument");
    }
    *out = nullptr;
    return Deliver(session->session->Send(user_text, ToGenerate(options)), out);
  });
}

gemma4_status gemma4_content_create(gemma4_content** out) {
  return Guard([&]() -> gemma4_status {
    if (out == nullptr) return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_content_create: null out");
    *out = new gemma4_content();
    return GEMMA4_OK;
  });
}

void gemma4_content_free(gemma4_content* content) { delete content; }

gemma4_status gemma4_content_add_text(gemma4_content* content, const char* text, size_t len) {
  return Guard([&]() -> gemma4_status {
    if (content == nullptr || (text == nullptr && len > 0)) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_content_add_text: null argument");
    }
    content->parts.push_back(gemma4::ContentPart::Text(std::string(text, len)));
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_content_add_image_file(gemma4_content* content, const char* path,
                                            int32_t max_soft_tokens) {
  return Guard([&]() -> gemma4_status {
    if (content == nullptr || path == nullptr || path[0] == '\0') {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_content_add_image_file: null argument");
    }
    content->parts.push_back(
        gemma4::ContentPart::FromImage(gemma4::Image::FromFile(path, max_soft_tokens)));
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_content_add_image_bytes(gemma4_content* content, const void* data, size_t size,
                                             int32_t max_soft_tokens) {
  return Guard([&]() -> gemma4_status {
    if (content == nullptr || data == nullptr || size == 0) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_content_add_image_bytes: no data");
    }
    content->parts.push_back(gemma4::ContentPart::FromImage(gemma4::Image::FromEncoded(
        std::string(static_cast<const char*>(data), size), max_soft_tokens)));
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_content_add_image_rgb(gemma4_content* content, const uint8_t* pixels,
                                           int32_t width, int32_t height, size_t stride,
                                           int32_t max_soft_tokens) {
  return Guard([&]() -> gemma4_status {
    if (content == nullptr || pixels == nullptr) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_content_add_image_rgb: null argument");
    }
    constexpr int32_t kMaxSide = 32768;
    if (width <= 0 || height <= 0 || width > kMaxSide || height > kMaxSide ||
        stride < static_cast<size_t>(width) * 3 || int64_t{width} * height > (int64_t{1} << 26)) {
      return Fail(GEMMA4_INVALID_ARGUMENT,
                  "gemma4_content_add_image_rgb: " + std::to_string(width) + "x" +
                      std::to_string(height) + " pixels with stride " + std::to_string(stride) +
                      " (sides 1..32768, at most 64 megapixels, stride >= 3 * width)");
    }
    std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3);
    for (int32_t y = 0; y < height; ++y) {
      std::memcpy(rgb.data() + static_cast<size_t>(y) * width * 3, pixels + y * stride,
                  static_cast<size_t>(width) * 3);
    }
    content->parts.push_back(gemma4::ContentPart::FromImage(
        gemma4::Image::FromRgb(std::move(rgb), width, height, max_soft_tokens)));
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_content_begin_video(gemma4_content* content,
                                         int32_t max_soft_tokens_per_frame) {
  return Guard([&]() -> gemma4_status {
    if (content == nullptr)
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_content_begin_video: null");
    gemma4::Video video;
    video.max_soft_tokens_per_frame = max_soft_tokens_per_frame;
    content->parts.push_back(gemma4::ContentPart::FromVideo(std::move(video)));
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_content_add_video_file(gemma4_content* content, const char* path,
                                            int32_t max_soft_tokens_per_frame) {
  return Guard([&]() -> gemma4_status {
    if (content == nullptr || path == nullptr || path[0] == '\0') {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_content_add_video_file: null argument");
    }
    content->parts.push_back(
        gemma4::ContentPart::FromVideo(gemma4::Video::FromFile(path, max_soft_tokens_per_frame)));
    return GEMMA4_OK;
  });
}

namespace {

// The video part frames are added to: the content's last part, begun by
// gemma4_content_begin_video.
gemma4::Video* OpenVideo(gemma4_content* content, const char* fn) {
  if (content == nullptr || content->parts.empty() || !content->parts.back().video.has_value()) {
    Fail(GEMMA4_FAILED_PRECONDITION,
         std::string(fn) + ": no video part to add to (call gemma4_content_begin_video first)");
    return nullptr;
  }
  return &*content->parts.back().video;
}

}  // namespace

gemma4_status gemma4_content_add_video_frame_file(gemma4_content* content, const char* path,
                                                  double seconds) {
  return Guard([&]() -> gemma4_status {
    if (path == nullptr || path[0] == '\0') {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_content_add_video_frame_file: no path");
    }
    gemma4::Video* video = OpenVideo(content, "gemma4_content_add_video_frame_file");
    if (video == nullptr) return GEMMA4_FAILED_PRECONDITION;
    video->frames.push_back({gemma4::Image::FromFile(path), seconds});
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_content_add_video_frame_bytes(gemma4_content* content, const void* data,
                                                   size_t size, double seconds) {
  return Guard([&]() -> gemma4_status {
    if (data == nullptr || size == 0) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_content_add_video_frame_bytes: no data");
    }
    gemma4::Video* video = OpenVideo(content, "gemma4_content_add_video_frame_bytes");
    if (video == nullptr) return GEMMA4_FAILED_PRECONDITION;
    video->frames.push_back(
        {gemma4::Image::FromEncoded(std::string(static_cast<const char*>(data), size)), seconds});
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_content_add_video_frame_rgb(gemma4_content* content, const uint8_t* pixels,
                                                 int32_t width, int32_t height, size_t stride,
                                                 double seconds) {
  return Guard([&]() -> gemma4_status {
    if (pixels == nullptr || width <= 0 || height <= 0 || width > 32768 || height > 32768 ||
        stride < static_cast<size_t>(width) * 3 || int64_t{width} * height > (int64_t{1} << 26)) {
      return Fail(GEMMA4_INVALID_ARGUMENT,
                  "gemma4_content_add_video_frame_rgb: bad pixels (sides 1..32768, at most 64 "
                  "megapixels, stride >= 3 * width)");
    }
    gemma4::Video* video = OpenVideo(content, "gemma4_content_add_video_frame_rgb");
    if (video == nullptr) return GEMMA4_FAILED_PRECONDITION;
    std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3);
    for (int32_t y = 0; y < height; ++y) {
      std::memcpy(rgb.data() + static_cast<size_t>(y) * width * 3, pixels + y * stride,
                  static_cast<size_t>(width) * 3);
    }
    video->frames.push_back({gemma4::Image::FromRgb(std::move(rgb), width, height), seconds});
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_content_add_audio_file(gemma4_content* content, const char* path) {
  return Guard([&]() -> gemma4_status {
    if (content == nullptr || path == nullptr || path[0] == '\0') {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_content_add_audio_file: null argument");
    }
    content->parts.push_back(gemma4::ContentPart::FromAudio(gemma4::Audio::FromFile(path)));
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_content_add_audio_bytes(gemma4_content* content, const void* data,
                                             size_t size) {
  return Guard([&]() -> gemma4_status {
    if (content == nullptr || data == nullptr || size == 0) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_content_add_audio_bytes: no data");
    }
    content->parts.push_back(gemma4::ContentPart::FromAudio(
        gemma4::Audio::FromEncoded(std::string(static_cast<const char*>(data), size))));
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_content_add_audio_pcm(gemma4_content* content, const float* samples,
                                           size_t n_samples, int32_t sample_rate) {
  return Guard([&]() -> gemma4_status {
    if (content == nullptr || samples == nullptr || n_samples == 0) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_content_add_audio_pcm: no samples");
    }
    // 4 hours at 768 kHz bounds the copy; the session resamples to 16 kHz.
    if (sample_rate < 1 || sample_rate > 768000 ||
        n_samples > static_cast<size_t>(sample_rate) * 4 * 3600) {
      return Fail(GEMMA4_INVALID_ARGUMENT,
                  "gemma4_content_add_audio_pcm: " + std::to_string(n_samples) + " samples at " +
                      std::to_string(sample_rate) + " Hz (rates 1..768000, at most 4 hours)");
    }
    content->parts.push_back(gemma4::ContentPart::FromAudio(
        gemma4::Audio::FromPcm(std::vector<float>(samples, samples + n_samples), sample_rate)));
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_session_send_content(gemma4_session* session, const gemma4_content* content,
                                          const gemma4_generate_options* options,
                                          gemma4_reply** out) {
  return Guard([&]() -> gemma4_status {
    if (session == nullptr || content == nullptr || out == nullptr) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_session_send_content: null argument");
    }
    *out = nullptr;
    return Deliver(session->session->Send(content->parts, ToGenerate(options)), out);
  });
}

gemma4_status gemma4_session_submit_tool_results(gemma4_session* session, size_t n_results,
                                                 const char* const* names,
                                                 const char* const* results_json,
                                                 const gemma4_generate_options* options,
                                                 gemma4_reply** out) {
  return Guard([&]() -> gemma4_status {
    if (session == nullptr || out == nullptr ||
        (n_results > 0 && (names == nullptr || results_json == nullptr))) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_session_submit_tool_results: null argument");
    }
    *out = nullptr;
    std::vector<gemma4::ToolResult> results;
    for (size_t i = 0; i < n_results; ++i) {
      if (names[i] == nullptr || results_json[i] == nullptr) {
        return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_session_submit_tool_results: null entry");
      }
      results.push_back({names[i], results_json[i], false});
    }
    return Deliver(session->session->SubmitToolResults(results, ToGenerate(options)), out);
  });
}

void gemma4_session_cancel(gemma4_session* session) {
  if (session != nullptr) session->session->Cancel();
}

gemma4_status gemma4_session_fork(const gemma4_session* session, gemma4_session** out) {
  return Guard([&]() -> gemma4_status {
    if (session == nullptr || out == nullptr) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_session_fork: null argument");
    }
    auto fork = session->session->Fork();
    if (!fork.ok()) return FromStatus(fork.status());
    *out = new gemma4_session{session->model, std::move(*fork)};
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_session_rewind(gemma4_session* session, size_t num_turns) {
  return Guard([&]() -> gemma4_status {
    if (session == nullptr) return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_session_rewind: null");
    return FromStatus(session->session->Rewind(num_turns));
  });
}

gemma4_status gemma4_session_save(const gemma4_session* session, void** data, size_t* size) {
  return Guard([&]() -> gemma4_status {
    if (session == nullptr || data == nullptr || size == nullptr) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_session_save: null argument");
    }
    auto bytes = session->session->SaveState();
    if (!bytes.ok()) return FromStatus(bytes.status());
    void* p = std::malloc(bytes->size() == 0 ? 1 : bytes->size());
    if (p == nullptr) return Fail(GEMMA4_RESOURCE_EXHAUSTED, "gemma4_session_save: out of memory");
    std::memcpy(p, bytes->data(), bytes->size());
    *data = p;
    *size = bytes->size();
    return GEMMA4_OK;
  });
}

gemma4_status gemma4_session_restore(gemma4_model* model, const void* data, size_t size,
                                     const gemma4_tools* tools, gemma4_session** out) {
  return Guard([&]() -> gemma4_status {
    if (model == nullptr || (data == nullptr && size > 0) || out == nullptr) {
      return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_session_restore: null argument");
    }
    *out = nullptr;
    std::shared_ptr<const gemma4::ToolRegistry> registry;
    if (tools != nullptr) registry = std::make_shared<gemma4::ToolRegistry>(*tools->registry);
    auto session = gemma4::Session::Restore(
        model->model, std::string_view(static_cast<const char*>(data), size), registry);
    if (!session.ok()) return FromStatus(session.status());
    *out = new gemma4_session{model->model, std::move(*session)};
    return GEMMA4_OK;
  });
}

size_t gemma4_session_num_turns(const gemma4_session* session) {
  return session == nullptr ? 0 : session->session->history().size();
}

gemma4_status gemma4_session_get_turn(const gemma4_session* session, size_t index, int* role,
                                      const char** text, const char** thought) {
  if (session == nullptr) return Fail(GEMMA4_INVALID_ARGUMENT, "gemma4_session_get_turn: null");
  const auto& history = session->session->history();
  if (index >= history.size()) {
    return Fail(GEMMA4_OUT_OF_RANGE, "gemma4_session_get_turn: index " + std::to_string(index) +
                                         " >= " + std::to_string(history.size()) + " turns");
  }
  const gemma4::Turn& t = history[index];
  if (role) *role = static_cast<int>(t.role);
  if (text) *text = t.text.c_str();
  if (thought) *thought = t.thought.c_str();
  return GEMMA4_OK;
}

int64_t gemma4_session_context_tokens(const gemma4_session* session) {
  return session == nullptr ? 0 : session->session->context_tokens();
}

gemma4_status gemma4_session_context_token_ids(const gemma4_session* session, int32_t* ids,
                                               size_t capacity, size_t* count) {
  if (session == nullptr || count == nullptr || (ids == nullptr && capacity > 0)) {
    return Fail(GEMMA4_INVALID_ARGUMENT,
                "gemma4_session_context_token_ids: null session, count, or ids with capacity");
  }
  const std::vector<int32_t>& tokens = session->session->context_token_ids();
  *count = tokens.size();
  if (capacity > 0) std::copy_n(tokens.begin(), std::min(capacity, tokens.size()), ids);
  return GEMMA4_OK;
}

void gemma4_reply_free(gemma4_reply* reply) { delete reply; }
const char* gemma4_reply_text(const gemma4_reply* r) { return r ? r->reply.text.c_str() : ""; }
const char* gemma4_reply_thought(const gemma4_reply* r) {
  return r ? r->reply.thought.c_str() : "";
}
gemma4_stop_reason gemma4_reply_stop_reason(const gemma4_reply* r) {
  return r ? static_cast<gemma4_stop_reason>(static_cast<int>(r->reply.stop_reason))
           : GEMMA4_STOP_END_OF_TURN;
}
size_t gemma4_reply_num_tool_calls(const gemma4_reply* r) {
  return r ? r->reply.tool_calls.size() : 0;
}
const char* gemma4_reply_tool_call_name(const gemma4_reply* r, size_t i) {
  return r && i < r->reply.tool_calls.size() ? r->reply.tool_calls[i].name.c_str() : nullptr;
}
const char* gemma4_reply_tool_call_arguments(const gemma4_reply* r, size_t i) {
  return r && i < r->reply.tool_calls.size() ? r->reply.tool_calls[i].arguments_json.c_str()
                                             : nullptr;
}
size_t gemma4_reply_num_tool_results(const gemma4_reply* r) { return r ? r->results.size() : 0; }
const char* gemma4_reply_tool_result(const gemma4_reply* r, size_t i) {
  return r && i < r->results.size() ? r->results[i].c_str() : nullptr;
}
int32_t gemma4_reply_prompt_tokens(const gemma4_reply* r) { return r ? r->reply.prompt_tokens : 0; }
int32_t gemma4_reply_reused_tokens(const gemma4_reply* r) { return r ? r->reply.reused_tokens : 0; }
int32_t gemma4_reply_generated_tokens(const gemma4_reply* r) {
  return r ? r->reply.generated_tokens : 0;
}
double gemma4_reply_decode_seconds(const gemma4_reply* r) {
  return r ? r->reply.decode_seconds : 0.0;
}
double gemma4_reply_prefill_seconds(const gemma4_reply* r) {
  return r ? r->reply.prefill_seconds : 0.0;
}
int32_t gemma4_reply_drafted_tokens(const gemma4_reply* r) {
  return r ? r->reply.drafted_tokens : 0;
}
int32_t gemma4_reply_accepted_draft_tokens(const gemma4_reply* r) {
  return r ? r->reply.accepted_draft_tokens : 0;
}

}  // extern "C"
