// The memory plan (gemma4::MemoryPlan, include/gemma4/model.h): what a model and one session
// keep resident, itemized, from the files' headers and configs alone.
#ifndef GEMMA4_SRC_API_MEMORY_PLAN_H_
#define GEMMA4_SRC_API_MEMORY_PLAN_H_

#include <cstdint>
#include <string>

#include "gemma4/model.h"
#include "model/kv_cache.h"
#include "model/model.h"

namespace gemma4 {

// Everything a plan depends on besides the context: gathered from the headers before loading
// (GatherPlanInputs), and kept by a loaded model for its sessions.
struct PlanInputs {
  WeightPlan weights;
  KvType kv_type = KvType::kF32;
  int threads = 1;
  int64_t max_chunk = 0;  // tokens per forward step (DefaultMaxChunk())
  uint64_t tokenizer = 0;
  uint64_t encoder_weights = 0;
  uint64_t encoder_activations = 0;
  int max_image_tokens = 0;  // ModelOptions::max_image_tokens resolved (0 -> 1120)
  uint64_t drafter = 0;      // Drafter::ResidentBytes of options.draft_model_path
};

// The largest image budget there is (Gemma4ImageProcessor's max_soft_tokens choices).
inline constexpr int kLargestImageTokens = 1120;

// ModelOptions::max_image_tokens resolved: 0 -> kLargestImageTokens; anything but 0 or a
// supported budget is InvalidArgument.
StatusOr<int> ResolveMaxImageTokens(const ModelOptions& options);

// Reads the headers of the model at `path` (and of options.mmproj_path, the tokenizer) and
// resolves the options as Model::Load does.
StatusOr<PlanInputs> GatherPlanInputs(const std::string& path, const ModelOptions& options);

// The plan at `context_tokens` positions (clamped to at least 1).
MemoryPlan ComputeMemoryPlan(const PlanInputs& inputs, int64_t context_tokens);

// The forward pass's scratch for one sequence at `context_tokens` (see InferenceState): the
// chunk's activation buffers, one quantized-activation buffer, each thread's attention scores
// (a query block against every key it sees) and the last position's logits. bf16_k,
// bf16_ple_k: WeightPlan's (the widest BF16 matrix, and per-layer-input matrix; 0: none).
uint64_t ForwardScratchBytes(const ModelConfig& config, int64_t max_chunk, int threads,
                             int64_t context_tokens, int64_t bf16_k, int64_t bf16_ple_k);

// OK when `plan` fits in `limit` bytes (0: no cap); else ResourceExhausted naming `what`, the
// plan's items and the largest context that fits (or that none does).
Status CheckMemoryLimit(const PlanInputs& inputs, const MemoryPlan& plan, uint64_t limit,
                        const std::string& what);

// `inputs` with the forward step a sequence of `context_tokens` takes under `limit` (0: no
// cap): inputs.max_chunk (DefaultMaxChunk()) where that plan fits; else
// kSmallestDefaultMaxChunk where that one does (less scratch and smaller sliding-window rings;
// on AMX CPUs a slower prefill); else inputs.max_chunk, which CheckMemoryLimit then refuses.
PlanInputs WithStepWithin(const PlanInputs& inputs, int64_t context_tokens, uint64_t limit);

// One line per item of the plan ("weights repacked: N bytes (X MiB)"), for `gemma4 info`.
std::string DescribeMemoryPlan(const MemoryPlan& plan);

}  // namespace gemma4

#endif  // GEMMA4_SRC_API_MEMORY_PLAN_H_
