// Gemma 4 in GGUF files, as llama.cpp's converter writes it (docs/gguf-gemma4.md): metadata
// keys to ModelConfig, Hugging Face tensor names to GGUF tensor names, and writing a model.
#ifndef GEMMA4_SRC_MODEL_GGUF_MODEL_H_
#define GEMMA4_SRC_MODEL_GGUF_MODEL_H_

#include <string>

#include "formats/gguf.h"
#include "gemma4/status.h"
#include "model/config.h"

namespace gemma4 {

// Builds the configuration from a gemma4 GGUF file's metadata and tensor shapes.
StatusOr<ModelConfig> ConfigFromGguf(const gguf::File& file);
// The same for another architecture that uses gemma4's keys under its own name
// ("gemma4-assistant": drafters, whose layers all read the target's cache, read as unshared).
StatusOr<ModelConfig> ConfigFromGguf(const gguf::File& file, const std::string& arch);

// GGUF name of a text tensor given its Hugging Face name without the model prefix, e.g.
// "layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight". Empty if there is none.
std::string GgufTensorName(const std::string& hf_name);

// Writes the gemma4 metadata keys for `config` (architecture, dimensions, per-layer arrays,
// RoPE, MoE, PLE, stop tokens).
void SetGgufMetadata(const ModelConfig& config, gguf::Writer* writer);

// The rope_freqs.weight values llama.cpp uses for proportional RoPE on global layers
// ([global_head_dim / 2]): each rotated pair's divisor (1, or RoPE scaling's factor), 1e30 for
// the unrotated pairs. Unimplemented where the layout cannot say what the config does: RoPE
// scaling on sliding-window layers (the file has no divisor for them), or global layers whose
// divisors differ.
StatusOr<std::vector<float>> RopeFreqFactors(const ModelConfig& config);

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_GGUF_MODEL_H_
