// A loaded Gemma 4 model: weights (memory-mapped where possible), tokenizer, chat template
// variant and generation defaults. Immutable after Load and safe to share between threads; each
// conversation is a Session (session.h). Standard library only.
#ifndef GEMMA4_MODEL_H_
#define GEMMA4_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gemma4/sampler.h"
#include "gemma4/status.h"
#include "gemma4/tokenizer.h"

namespace gemma4 {

// How a session's KV cache stores keys and values.
enum class KvCacheType {
  kAuto,  // f16 for block-quantized weights (GGUF Q4_0, Q8_0, K-quants), f32 for float weights
  kF32,   // exact: the float forward pass of transformers
  kF16,   // half the memory (E2B at 4K context: 32 instead of 63 MiB), as llama.cpp's default
  // Blocks of 32 values with an f16 scale, llama.cpp's -ctk/-ctv q8_0 and q4_0: 0.27x and
  // 0.14x of f32 (E2B at 128K context: about 411 and 218 MiB, f16 774 MiB). Models whose head_dim
  // is not a multiple of 32 refuse them when a session starts.
  kQ8_0,
  kQ4_0,
};

struct ModelOptions {
  // Worker threads for the forward pass (0 = one per hardware thread). Sessions of this model
  // take turns on one pool, so the machine is never oversubscribed.
  int threads = 0;
  // Tokenizer location when it is not beside the weights (tokenizer.json, tokenizer.model,
  // GGUF or directory). Empty: the checkpoint directory, or the GGUF's own vocabulary.
  std::string tokenizer_path;
  // Called with the fraction loaded (0..1); returning false cancels the load (CancelledError).
  std::function<bool(float fraction)> progress;
  KvCacheType kv_cache_type = KvCacheType::kAuto;
  // A llama.cpp mmproj GGUF with the vision tower (for GGUF text models, or to replace a
  // checkpoint's own tower). Empty: the checkpoint's tower, if it has one.
  std::string mmproj_path;
  // Speculative decoding: a Gemma 4 assistant drafter (the "-assistant" checkpoint directory or
  // its GGUF) for this model. Empty: none. Sessions then draft `draft_tokens` tokens (1..14) a
  // round and check them in one batched forward; the output is unchanged (every token is still
  // chosen by the session's sampler from the model's own logits).
  std::string draft_model_path;
  int draft_tokens = 4;
  // The most bytes the model and one session may keep resident (0: no cap), checked against
  // the MemoryPlan before anything is allocated: Load refuses a model whose plan at a
  // one-token context exceeds it, Session::Create a session whose plan at its max_context
  // does (ResourceExhausted naming the items, their bytes and the largest context that fits).
  // Where the plan with the default forward steps (512 tokens on CPUs with AMX tiles, 128
  // elsewhere) does not fit but one with 128-token steps does, sessions take those (less
  // scratch; a slower prefill).
  uint64_t memory_limit_bytes = 0;
  // The largest image budget (soft tokens: 70, 140, 280, 560 or 1120) that sessions of this
  // model encode; 0 = 1120, the largest there is. The memory plan sizes the vision tower's
  // activations for it (a 1120-token image is 10080 patches: on E2B about 270 MB more than a
  // 280-token one), and an image or video frame asking for more is refused (InvalidArgument)
  // rather than let past memory_limit_bytes. Set it to the budget you use to plan tightly.
  int max_image_tokens = 0;
};

// The bytes a model and one session at `context_tokens` keep resident, itemized; computed
// from the files' headers and configs without reading a weight (Model::PlanMemory).
// Resident means what the process's resident set (VmRSS) grows by: anonymous memory plus the
// pages of file mappings that are read. File-backed weight pages count once touched, and the
// forward pass touches every matrix it reads in place, so they are counted whole; tables read
// with pread (the per-layer-embedding table) live in the page cache and are not counted.
// The process's own code and heap from before loading are not part of the plan.
struct MemoryPlan {
  int64_t context_tokens = 0;
  std::string kv_cache_type;  // "f32", "f16", "q8_0" or "q4_0": ModelOptions's resolved
  int threads = 0;            // ModelOptions::threads resolved
  int64_t step_tokens = 0;    // tokens per forward step of the session (see memory_limit_bytes)
  // Text weights.
  uint64_t weights_repacked = 0;   // anonymous copies made at load (repacked for the kernels)
  uint64_t weights_mapped = 0;     // matrices read in place from the file mapping
  uint64_t weights_converted = 0;  // norms and scales widened to f32
  uint64_t ple_table = 0;          // per-layer-embedding table: page cache, not counted
  // One session at context_tokens.
  uint64_t kv_full = 0;     // global layers' keys and values at context_tokens positions
  uint64_t kv_sliding = 0;  // sliding-window layers' rings (W - 1 + chunk positions each)
  uint64_t kv_rewind = 0;   // the rings' snapshots a conversation keeps for rewinding (2)
  uint64_t scratch = 0;     // forward-pass buffers of one chunk, per-thread attention scores,
                            // quantized activations and the logits
  uint64_t tokenizer = 0;   // vocabulary tables
  // Encoders, when the model has them (weights, and the largest input's activations: an image
  // of max_image_tokens soft tokens, a 30 s audio piece).
  uint64_t encoder_weights = 0;
  uint64_t encoder_activations = 0;
  int max_image_tokens = 0;  // ModelOptions::max_image_tokens resolved (1120 for 0)
  // A speculative-decoding drafter (ModelOptions::draft_model_path): its weights, norms,
  // token ordering and one step's buffers; it reads the model's own KV cache.
  uint64_t drafter = 0;
  uint64_t total = 0;  // every counted item above
};

struct ModelInfo {
  std::string variant;  // "e2b", "e4b", "26b-a4b", "31b" or "custom"
  std::string path;
  int vocab_size = 0;
  int num_layers = 0;
  int hidden_size = 0;
  int sliding_window = 0;
  int64_t max_context = 0;
  int64_t num_parameters = 0;
  uint64_t weight_bytes = 0;
  bool large_chat_template = false;  // 26B/31B template (empty thought channel when not thinking)
  std::vector<int32_t> stop_token_ids;  // generation_config eos ids
  SamplerOptions default_sampler;       // from generation_config.json
  int threads = 1;
  std::string kv_cache_type;     // "f32", "f16", "q8_0" or "q4_0": kv_cache_type resolved
  bool vision = false;           // the model takes images (its checkpoint holds the vision tower)
  int default_image_tokens = 0;  // soft tokens per image unless a request says otherwise
  bool audio = false;            // the model takes recordings (E2B/E4B with their audio tower)
};

class ModelImpl;
class ModelAccess;  // the library's and tests' way in (src/api/model_impl.h)

class Model {
 public:
  static StatusOr<std::shared_ptr<const Model>> Load(const std::string& path,
                                                     const ModelOptions& options = {});
  // The memory plan of Load(path, options) and one session of `context_tokens` positions,
  // from the headers alone (nothing is loaded; the weights are not read).
  static StatusOr<MemoryPlan> PlanMemory(const std::string& path, const ModelOptions& options,
                                         int64_t context_tokens);
  // The same for this loaded model (its options, threads and towers).
  StatusOr<MemoryPlan> PlanMemory(int64_t context_tokens) const;
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelInfo& info() const;
  const std::shared_ptr<const Tokenizer>& tokenizer() const;

  // Logits of every position of `ids` processed from an empty context ([n, vocab], row-major),
  // for scoring and tests.
  StatusOr<std::vector<float>> Logits(const std::vector<int32_t>& ids) const;

  friend class ModelAccess;

 private:
  explicit Model(std::unique_ptr<ModelImpl> impl);
  std::unique_ptr<ModelImpl> impl_;
};

}  // namespace gemma4

#endif  // GEMMA4_MODEL_H_
