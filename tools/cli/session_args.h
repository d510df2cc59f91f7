// Options shared by the commands that talk to a model through a Session (`gemma4 run`,
// `gemma4 chat`): which model and how to load it, how to sample, and how a reply ended.
#ifndef GEMMA4_TOOLS_CLI_SESSION_ARGS_H_
#define GEMMA4_TOOLS_CLI_SESSION_ARGS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gemma4/model.h"
#include "gemma4/sampler.h"
#include "gemma4/session.h"
#include "gemma4/status.h"
#include "tools/cli/args.h"

namespace gemma4::cli {

// --model/-m, --tokenizer, --threads/-t, --kv-type, --mmproj, --draft, --draft-k.
struct ModelArgs {
  std::string model;
  std::string tokenizer;
  std::string mmproj;
  std::string draft;  // assistant drafter for speculative decoding
  int64_t draft_k = 4;
  KvCacheType kv_cache_type = KvCacheType::kAuto;
  int64_t threads = 0;       // 0: one per hardware thread
  int64_t memory_limit = 0;  // bytes; 0: none (ModelOptions::memory_limit_bytes)
};
void AddModelArgs(ArgParser* parser, ModelArgs* args);
StatusOr<std::shared_ptr<const Model>> LoadModel(const ModelArgs& args);

// -n/--max-tokens (AddMaxTokensArg), --temperature, --seed (AddSamplingArgs).
struct SamplingArgs {
  int64_t max_tokens = 1024;
  double temperature = -1;  // < 0: the model's default
  int64_t seed = 0;
  bool seed_given = false;
};
void AddMaxTokensArg(ArgParser* parser, SamplingArgs* args);
void AddSamplingArgs(ArgParser* parser, SamplingArgs* args);
// The sampler a request uses: unset (the model's generation_config defaults) unless
// --temperature or --seed was given. A seed asks for sampling: where the model's default is
// greedy (do_sample false) and no --temperature was given, it samples at temperature 1 with the
// model's top-k / top-p.
std::optional<SamplerOptions> SamplerFor(const ModelInfo& info, const SamplingArgs& args);
// "greedy" or "temperature T, top-k K, top-p P, seed S", for the reports on stderr.
std::string DescribeSampler(const SamplerOptions& sampler);

// end_of_turn, max_tokens, cancelled, repetition, tool_step_limit, tool_call, context_full.
const char* StopReasonName(StopReason reason);

}  // namespace gemma4::cli

#endif  // GEMMA4_TOOLS_CLI_SESSION_ARGS_H_
