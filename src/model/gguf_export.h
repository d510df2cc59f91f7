// Writing Gemma 4 GGUF files: quantizing a loaded model (gemma4 quantize) and synthesizing
// random-weight models with the released dimensions (gemma4 synth), both through the same
// recipe and writer, so the files load in llama.cpp as well as here.
#ifndef GEMMA4_SRC_MODEL_GGUF_EXPORT_H_
#define GEMMA4_SRC_MODEL_GGUF_EXPORT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/tensor.h"
#include "formats/gguf.h"
#include "gemma4/status.h"
#include "model/config.h"
#include "model/model.h"
#include "runtime/thread_pool.h"

namespace gemma4 {

// Target precision of `gemma4 quantize --type` / `gemma4 synth --type`.
enum class Recipe { kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_K_M };
StatusOr<Recipe> ParseRecipe(const std::string& name);  // q4_0 q4_k_m q8_0 bf16 f16 f32

// The storage type of one tensor under a recipe (the recipe table in the README): vectors
// (norms, scales) and the router F32; PLE gate/projection and PLE model projection BF16 (or the
// recipe's float type); embedding/LM head and PLE table Q6_K under q4_0 and q4_k_m, Q8_0 under
// q8_0; q4_k_m gives attn_v and ffn_down Q6_K in llama.cpp's "more bits" layers and Q4_K
// elsewhere. Rows that do not fit a block fall back (Q6_K -> Q8_0, Q4_K -> Q4_0, -> BF16).
DType RecipeType(Recipe recipe, const std::string& hf_name, const std::vector<int64_t>& shape,
                 int num_layers);

// One tensor to write: Hugging Face name (without prefix), row-major shape, and a function
// that fills row `r` (cols = shape.back() floats).
struct ExportTensor {
  std::string hf_name;
  std::vector<int64_t> shape;
  std::function<void(int64_t row, float* out)> row;
};

// Tokenizer metadata copied from a Hugging Face tokenizer.json (+ tokenizer_config.json /
// chat_template.jinja) next to config.json. Returns false (and sets nothing) if absent.
StatusOr<bool> SetGgufTokenizerFromDirectory(const std::string& dir, const ModelConfig& config,
                                             gguf::Writer* writer);
// A placeholder vocabulary of `vocab_size` unique tokens (specials, 256 byte tokens, then
// "<tok_N>"), for synthetic benchmark models.
void SetGgufPlaceholderTokenizer(const ModelConfig& config, gguf::Writer* writer);

// Writes metadata (the writer may already hold tokenizer keys), rope_freqs and every tensor
// converted per `recipe`, quantizing rows on `pool`.
Status WriteGgufModel(const ModelConfig& config, const std::vector<ExportTensor>& tensors,
                      Recipe recipe, gguf::Writer* writer, const std::string& path,
                      ThreadPool* pool);

// Tensors of a loaded model, read row by row (dequantized) from its mapping.
std::vector<ExportTensor> ModelTensors(const LoadedModel& model);

// Random weights with the shapes of `config` (deterministic in `seed`): matrices uniform with
// variance 1/fan_in, embeddings unit variance, norms and scales near 1.
std::vector<ExportTensor> SyntheticTensors(const ModelConfig& config, uint64_t seed);

// Configurations with the released dimensions: "e2b", "e4b", "26b-a4b", "31b". layers > 0
// keeps every width but builds that many layers (no KV sharing).
StatusOr<ModelConfig> ReleasedConfig(const std::string& variant, int layers = 0);

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_GGUF_EXPORT_H_
