#include "tools/cli/session_args.h"

#include <cstdio>

namespace gemma4::cli {

void AddModelArgs(ArgParser* parser, ModelArgs* args) {
  parser->String({"--model", "-m"}, "PATH", "checkpoint directory or model file", &args->model)
      .String({"--tokenizer"}, "PATH", "tokenizer when it is not beside the weights",
              &args->tokenizer)
      .Int({"--threads", "-t"}, "N", "worker threads (default: one per hardware thread)", 0, 1024,
           &args->threads);
  AddKvCacheTypeArg(parser, "auto|f32|f16|q8_0|q4_0",
                    "KV cache type (auto: f16 for quantized weights)", &args->kv_cache_type)
      .String({"--mmproj"}, "F", "llama.cpp mmproj GGUF with the vision/audio towers",
              &args->mmproj)
      .String({"--draft"}, "PATH",
              "Gemma 4 assistant drafter (checkpoint or GGUF): speculative decoding, same output",
              &args->draft)
      .Int({"--draft-k"}, "K", "drafts per round with --draft (default 4)", 1, 14, &args->draft_k)
      .Int({"--memory-limit"}, "BYTES",
           "refuse a model or context whose memory plan exceeds this (see gemma4 info)", 1,
           INT64_MAX, &args->memory_limit);
}

StatusOr<std::shared_ptr<const Model>> LoadModel(const ModelArgs& args) {
  if (args.model.empty()) return InvalidArgumentError("--model PATH is required");
  ModelOptions options;
  options.threads = static_cast<int>(args.threads);
  options.tokenizer_path = args.tokenizer;
  options.kv_cache_type = args.kv_cache_type;
  options.mmproj_path = args.mmproj;
  options.draft_model_path = args.draft;
  options.draft_tokens = static_cast<int>(args.draft_k);
  options.memory_limit_bytes = static_cast<uint64_t>(args.memory_limit);
  auto model = Model::Load(args.model, options);
  if (!model.ok() && args.tokenizer.empty() &&
      model.status().message().find("tokenizer") != std::string::npos) {
    return Status(model.status().code(),
                  model.status().message() + " (on the command line: --tokenizer PATH)");
  }
  return model;
}

void AddMaxTokensArg(ArgParser* parser, SamplingArgs* args) {
  parser->Int({"-n", "--max-tokens"}, "N", "most tokens to generate (default 1024)", 1, 1 << 20,
              &args->max_tokens);
}

void AddSamplingArgs(ArgParser* parser, SamplingArgs* args) {
  parser
      ->Number({"--temperature"}, "T", "sampling temperature (0: greedy; default: the model's)", 0,
               100, &args->temperature)
      .Value({"--seed"}, "S", "sampling seed; samples even where the model's default is greedy",
             [args](const std::string& flag, const std::string& v) {
               args->seed_given = true;
               return ParseInt(flag, v, 0, INT64_MAX, &args->seed);
             });
}

std::optional<SamplerOptions> SamplerFor(const ModelInfo& info, const SamplingArgs& args) {
  if (args.temperature < 0 && !args.seed_given) return std::nullopt;
  SamplerOptions s = info.default_sampler;
  if (args.temperature >= 0) {
    s.temperature = static_cast<float>(args.temperature);
  } else if (s.temperature <= 0) {
    s.temperature = 1.0f;
  }
  s.seed = static_cast<uint64_t>(args.seed);
  return s;
}

std::string DescribeSampler(const SamplerOptions& s) {
  if (s.temperature <= 0) return "greedy";
  char buf[128];
  std::snprintf(buf, sizeof(buf), "temperature %g, top-k %d, top-p %g, seed %llu", s.temperature,
                s.top_k, s.top_p, static_cast<unsigned long long>(s.seed));
  return buf;
}

const char* StopReasonName(StopReason reason) {
  switch (reason) {
    case StopReason::kEndOfTurn:
      return "end_of_turn";
    case StopReason::kMaxTokens:
      return "max_tokens";
    case StopReason::kCancelled:
      return "cancelled";
    case StopReason::kRepetition:
      return "repetition";
    case StopReason::kToolStepLimit:
      return "tool_step_limit";
    case StopReason::kToolCall:
      return "tool_call";
    case StopReason::kContextFull:
      return "context_full";
    default:  // a reason added to the API later
      break;
  }
  return "unknown";
}

}  // namespace gemma4::cli
