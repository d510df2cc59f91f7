#include "model/gguf_export.h"

#include <sys/stat.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "base/json.h"
#include "formats/mapped_file.h"
#include "model/gguf_model.h"
#include "ops/ops.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

bool EndsWith(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

bool IsFile(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// splitmix64: fast, deterministic, good enough for benchmark weights.
struct Rng {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  float Uniform() {
    return static_cast<float>(static_cast<int64_t>(Next() >> 40) - (1 << 23)) /
           static_cast<float>(1 << 23);
  }
};

}  // namespace

StatusOr<Recipe> ParseRecipe(const std::string& name) {
  if (name == "q4_0") return Recipe::kQ4_0;
  if (name == "q4_k_m") return Recipe::kQ4_K_M;
  if (name == "q8_0") return Recipe::kQ8_0;
  if (name == "bf16") return Recipe::kBF16;
  if (name == "f16") return Recipe::kF16;
  if (name == "f32") return Recipe::kF32;
  return InvalidArgumentError("unknown type '" + name +
                              "' (expected q4_0, q8_0, bf16, f16 or f32)");
}

namespace {

// llama.cpp's Q4_K_M gives more bits to attn_v and ffn_down in the first and last eighth of
// the layers and every third layer between.
bool UseMoreBits(int layer, int num_layers) {
  return layer < num_layers / 8 || layer >= 7 * num_layers / 8 || (layer - num_layers / 8) % 3 == 2;
}

int LayerIndex(const std::string& name) {
  if (name.rfind("layers.", 0) != 0) return -1;
  return std::atoi(name.c_str() + 7);
}

}  // namespace

DType RecipeType(Recipe recipe, const std::string& name, const std::vector<int64_t>& shape,
                 int num_layers) {
  if (shape.size() <= 1 || EndsWith(name, "router.proj.weight")) return DType::kF32;
  const DType float_type = recipe == Recipe::kF32   ? DType::kF32
                           : recipe == Recipe::kF16 ? DType::kF16
                                                    : DType::kBF16;
  if (recipe == Recipe::kF32 || recipe == Recipe::kF16 || recipe == Recipe::kBF16) {
    return float_type;
  }
  // Small matrices that every token passes through keep 16-bit precision.
  if (EndsWith(name, "per_layer_input_gate.weight") ||
      EndsWith(name, "per_layer_projection.weight") ||
      name == "per_layer_model_projection.weight") {
    return DType::kBF16;
  }
  const int64_t cols = shape.back();
  // The tied embedding is also the LM head, so logits come straight from it; the PLE table
  // feeds every layer through a norm that removes its scale, so its relative error passes
  // through undiminished. Both get 6 bits under q4_0 and q4_k_m (as llama.cpp's recipes do),
  // 8 under q8_0.
  const bool embedding = name == "embed_tokens.weight" || name == "lm_head.weight" ||
                         name == "embed_tokens_per_layer.weight";
  DType type;
  if (recipe == Recipe::kQ8_0) {
    type = DType::kQ8_0;
  } else if (embedding) {
    type = DType::kQ6_K;
  } else if (recipe == Recipe::kQ4_K_M) {
    const bool more =
        (EndsWith(name, "self_attn.v_proj.weight") || EndsWith(name, "mlp.down_proj.weight") ||
         EndsWith(name, "experts.down_proj")) &&
        UseMoreBits(LayerIndex(name), num_layers);
    type = more ? DType::kQ6_K : DType::kQ4_K;
  } else {
    type = DType::kQ4_0;
  }
  // K-quants need rows that are a multiple of 256: Q6_K falls back to Q8_0, Q4_K to Q4_0 (as
  // llama.cpp falls back to a 32-block type); anything not a multiple of 32 to BF16.
  if (cols % 256 != 0 && type == DType::kQ6_K) type = DType::kQ8_0;
  if (cols % 256 != 0 && type == DType::kQ4_K) type = DType::kQ4_0;
  if (cols % quant::kBlock != 0) type = DType::kBF16;
  return type;
}

std::vector<ExportTensor> ModelTensors(const LoadedModel& model) {
  std::vector<ExportTensor> out;
  for (const auto& [name, view] : model.tensors()) {
    TensorView t = view;
    out.push_back({name, t.shape,
                   [t](int64_t row, float* dst) { ops::ToF32(t, row * t.cols(), t.cols(), dst); }});
  }
  return out;
}

std::vector<ExportTensor> SyntheticTensors(const ModelConfig& config, uint64_t seed) {
  std::vector<ExportTensor> out;
  uint64_t index = 0;
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    const int64_t cols = spec.shape.back();
    const bool vector = spec.shape.size() == 1;
    const bool embedding = spec.name.find("embed_tokens") != std::string::npos;
    const float scale = vector      ? 0.1f
                        : embedding ? 1.7320508f
                                    : 1.7320508f / std::sqrt(static_cast<float>(cols));
    const uint64_t tensor_seed = seed * 1000003ull + index++;
    out.push_back({spec.name, spec.shape, [=](int64_t row, float* dst) {
                     Rng rng{tensor_seed * 0x100000001B3ull + static_cast<uint64_t>(row)};
                     for (int64_t j = 0; j < cols; ++j) {
                       const float u = rng.Uniform() * scale;
                       dst[j] = vector ? 1.0f + u : u;
                     }
                   }});
  }
  return out;
}

namespace {

// rope_freqs for the file, or nothing when every pair rotates unscaled.
StatusOr<std::vector<float>> RopeFreqFactorsOrEmpty(const ModelConfig& c) {
  GEMMA4_ASSIGN_OR_RETURN(std::vector<float> f, RopeFreqFactors(c));
  for (float x : f) {
    if (x != 1.0f) return f;
  }
  return std::vector<float>{};
}

}  // namespace

Status WriteGgufModel(const ModelConfig& config, const std::vector<ExportTensor>& tensors,
                      Recipe recipe, gguf::Writer* writer, const std::string& path,
                      ThreadPool* pool) {
  GEMMA4_ASSIGN_OR_RETURN(const std::vector<float> rope_freqs, RopeFreqFactorsOrEmpty(config));
  SetGgufMetadata(config, writer);
  // llama.cpp's general.file_type (LLAMA_FTYPE_*): F32 0, F16 1, Q4_0 2, Q8_0 7, Q4_K_M 15,
  // BF16 32.
  const uint32_t file_type = recipe == Recipe::kF32      ? 0
                             : recipe == Recipe::kF16    ? 1
                             : recipe == Recipe::kBF16   ? 32
                             : recipe == Recipe::kQ8_0   ? 7
                             : recipe == Recipe::kQ4_K_M ? 15
                                                         : 2;
  writer->Set("general.file_type", gguf::Value::Int(gguf::ValueType::kUint32, file_type));
  writer->Set("general.quantization_version", gguf::Value::Int(gguf::ValueType::kUint32, 2));
  struct Planned {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    const ExportTensor* source;
  };
  std::vector<Planned> plan;
  if (!rope_freqs.empty()) {
    plan.push_back(
        {"rope_freqs.weight", DType::kF32, {static_cast<int64_t>(rope_freqs.size())}, nullptr});
  }
  for (const ExportTensor& t : tensors) {
    const std::string name = GgufTensorName(t.hf_name);
    if (name.empty()) return InternalError("no GGUF name for tensor '" + t.hf_name + "'");
    plan.push_back({name, RecipeType(recipe, t.hf_name, t.shape, config.num_layers), t.shape, &t});
  }
  for (const Planned& p : plan) writer->AddTensor(p.name, p.type, p.shape);
  return writer->Write(path, [&](size_t i, std::vector<uint8_t>* bytes) -> Status {
    const Planned& p = plan[i];
    if (p.source == nullptr) {
      bytes->resize(rope_freqs.size() * sizeof(float));
      std::memcpy(bytes->data(), rope_freqs.data(), bytes->size());
      return OkStatus();
    }
    const int64_t cols = p.shape.back();
    int64_t rows = 1;
    for (size_t d = 0; d + 1 < p.shape.size(); ++d) rows *= p.shape[d];
    const uint64_t row_bytes = RowBytes(p.type, cols);
    try {
      bytes->resize(rows * row_bytes);
    } catch (const std::bad_alloc&) {
      return ResourceExhaustedError("out of memory converting tensor '" + p.name + "'");
    }
    pool->ParallelFor(rows, 64, [&](int64_t begin, int64_t end) {
      std::vector<float> row(cols);
      for (int64_t r = begin; r < end; ++r) {
        p.source->row(r, row.data());
        quant::QuantizeRow(p.type, row.data(), cols, bytes->data() + r * row_bytes);
      }
    });
    return OkStatus();
  });
}

// A stand-in vocabulary for random-weight models: Gemma 4's control tokens at their real ids
// (so the chat loop runs on synthetic models), byte-fallback tokens, single characters and
// "▁", and unique fillers for the rest.
void SetGgufPlaceholderTokenizer(const ModelConfig& config, gguf::Writer* w) {
  using gguf::Value;
  using gguf::ValueType;
  static const std::pair<int, const char*> kControl[] = {{0, "<pad>"},
                                                         {1, "<eos>"},
                                                         {2, "<bos>"},
                                                         {3, "<unk>"},
                                                         {4, "<mask>"},
                                                         {46, "<|tool>"},
                                                         {47, "<tool|>"},
                                                         {48, "<|tool_call>"},
                                                         {49, "<tool_call|>"},
                                                         {50, "<|tool_response>"},
                                                         {51, "<tool_response|>"},
                                                         {52, "<|\"|>"},
                                                         {98, "<|think|>"},
                                                         {100, "<|channel>"},
                                                         {101, "<channel|>"},
                                                         {105, "<|turn>"},
                                                         {106, "<turn|>"},
                                                         {255999, "<|image>"},
                                                         {256000, "<|audio>"},
                                                         {258880, "<|image|>"},
                                                         {258881, "<|audio|>"},
                                                         {258882, "<image|>"},
                                                         {258883, "<audio|>"},
                                                         {258884, "<|video|>"}};
  constexpr int kFirstByte = 1000;  // <0x00>..<0xFF>
  constexpr int kFirstChar = 1300;  // "▁", "\n" and printable ASCII
  std::vector<std::string> texts(config.vocab_size);
  std::vector<int> kinds(config.vocab_size, 1);  // NORMAL
  for (int i = 0; i < config.vocab_size; ++i) texts[i] = "<tok_" + std::to_string(i) + ">";
  for (const auto& [id, text] : kControl) {
    if (id < config.vocab_size) {
      texts[id] = text;
      kinds[id] = 3;  // CONTROL
    }
  }
  for (int b = 0; b < 256 && kFirstByte + b < config.vocab_size; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    texts[kFirstByte + b] = buf;
    kinds[kFirstByte + b] = 6;  // BYTE
  }
  std::vector<std::string> chars = {"\xE2\x96\x81", "\n"};
  for (char c = 0x21; c < 0x7F; ++c) chars.push_back(std::string(1, c));
  for (size_t k = 0; k < chars.size() && kFirstChar + static_cast<int>(k) < config.vocab_size;
       ++k) {
    texts[kFirstChar + k] = chars[k];
  }
  std::vector<Value> tokens, scores, types;
  for (int i = 0; i < config.vocab_size; ++i) {
    tokens.push_back(Value::String(texts[i]));
    scores.push_back(Value::Float32(-1000.0f));
    types.push_back(Value::Int(ValueType::kInt32, kinds[i]));
  }
  w->Set("tokenizer.ggml.model", Value::String("gemma4"));
  w->Set("tokenizer.ggml.tokens", Value::Array(ValueType::kString, std::move(tokens)));
  w->Set("tokenizer.ggml.scores", Value::Array(ValueType::kFloat32, std::move(scores)));
  w->Set("tokenizer.ggml.token_type", Value::Array(ValueType::kInt32, std::move(types)));
  w->Set("tokenizer.ggml.merges", Value::Array(ValueType::kString, {}));
  w->Set("tokenizer.ggml.bos_token_id", Value::Int(ValueType::kUint32, 2));
  w->Set("tokenizer.ggml.eos_token_id", Value::Int(ValueType::kUint32, 1));
  w->Set("tokenizer.ggml.unknown_token_id", Value::Int(ValueType::kUint32, 3));
  w->Set("tokenizer.ggml.padding_token_id", Value::Int(ValueType::kUint32, 0));
  w->Set("tokenizer.ggml.add_bos_token", Value::Bool(true));
  w->Set("tokenizer.ggml.add_space_prefix", Value::Bool(false));
}

StatusOr<bool> SetGgufTokenizerFromDirectory(const std::string& dir, const ModelConfig& config,
                                             gguf::Writer* w) {
  using gguf::Value;
  using gguf::ValueType;
  const std::string path = dir + "/tokenizer.json";
  if (!IsFile(path)) return false;
  GEMMA4_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  GEMMA4_ASSIGN_OR_RETURN(json::Value root, json::Parse(text, path));
  const json::Value* model = root.Find("model");
  const json::Value* vocab = model != nullptr ? model->Find("vocab") : nullptr;
  if (vocab == nullptr || !vocab->is_object()) {
    return InvalidArgumentError(path + ": missing model.vocab object");
  }
  std::vector<std::string> tokens;
  std::vector<int> types;
  auto place = [&](int64_t id, const std::string& s, int type) -> Status {
    if (id < 0 || id >= (1 << 24)) return InvalidArgumentError(path + ": token id out of range");
    if (static_cast<int64_t>(tokens.size()) <= id) {
      tokens.resize(id + 1);
      types.resize(id + 1, 1);
    }
    tokens[id] = s;
    types[id] = type;
    return OkStatus();
  };
  for (const auto& [piece, id_value] : vocab->as_object()) {
    int64_t id = 0;
    if (!id_value.GetInt64(&id)) return InvalidArgumentError(path + ": non-integer vocab id");
    const bool byte = piece.size() == 6 && piece.rfind("<0x", 0) == 0 && piece.back() == '>';
    GEMMA4_RETURN_IF_ERROR(place(id, piece, byte ? 6 : 1));
  }
  static const char* kRenderedAsText[] = {"<|channel>",   "<channel|>",       "<|tool_call>",
                                          "<tool_call|>", "<|tool_response>", "<tool_response|>",
                                          "<|\"|>"};
  if (const json::Value* added = root.Find("added_tokens"); added != nullptr) {
    for (const json::Value& t : added->as_array()) {
      int64_t id = 0;
      const json::Value* idv = t.Find("id");
      const json::Value* content = t.Find("content");
      if (idv == nullptr || !idv->GetInt64(&id) || content == nullptr || !content->is_string()) {
        return InvalidArgumentError(path + ": malformed added_tokens entry");
      }
      const json::Value* special = t.Find("special");
      int type = special != nullptr && special->as_bool() ? 3 : 4;
      for (const char* s : kRenderedAsText) {
        if (content->as_string() == s) type = 4;
      }
      GEMMA4_RETURN_IF_ERROR(place(id, content->as_string(), type));
    }
  }
  // The embedding may be longer than the tokenizer (padding rows): name them uniquely.
  for (size_t i = 0; i < tokens.size() || static_cast<int>(i) < config.vocab_size; ++i) {
    if (i >= tokens.size()) {
      tokens.push_back("");
      types.push_back(5);  // UNUSED
    }
    if (tokens[i].empty()) {
      tokens[i] = "<unused_pad_" + std::to_string(i) + ">";
      types[i] = 5;
    }
  }
  std::vector<Value> tv, sv, yv, mv;
  for (size_t i = 0; i < tokens.size(); ++i) {
    tv.push_back(Value::String(tokens[i]));
    sv.push_back(Value::Float32(-1000.0f));
    yv.push_back(Value::Int(ValueType::kInt32, types[i]));
  }
  if (const json::Value* merges = model->Find("merges"); merges != nullptr) {
    for (const json::Value& m : merges->as_array()) {
      if (m.is_string()) {
        mv.push_back(Value::String(m.as_string()));
      } else if (m.is_array() && m.as_array().size() == 2) {
        mv.push_back(
            Value::String(m.as_array()[0].as_string() + " " + m.as_array()[1].as_string()));
      }
    }
  }
  w->Set("tokenizer.ggml.model", Value::String("gemma4"));
  w->Set("tokenizer.ggml.tokens", Value::Array(ValueType::kString, std::move(tv)));
  w->Set("tokenizer.ggml.scores", Value::Array(ValueType::kFloat32, std::move(sv)));
  w->Set("tokenizer.ggml.token_type", Value::Array(ValueType::kInt32, std::move(yv)));
  w->Set("tokenizer.ggml.merges", Value::Array(ValueType::kString, std::move(mv)));
  w->Set("tokenizer.ggml.bos_token_id", Value::Int(ValueType::kUint32, config.bos_token_id));
  if (!config.eos_token_ids.empty()) {
    w->Set("tokenizer.ggml.eos_token_id", Value::Int(ValueType::kUint32, config.eos_token_ids[0]));
  }
  w->Set("tokenizer.ggml.padding_token_id", Value::Int(ValueType::kUint32, config.pad_token_id));
  w->Set("tokenizer.ggml.add_bos_token", Value::Bool(true));
  w->Set("tokenizer.ggml.add_space_prefix", Value::Bool(false));
  if (IsFile(dir + "/chat_template.jinja")) {
    GEMMA4_ASSIGN_OR_RETURN(std::string tmpl, ReadFileToString(dir + "/chat_template.jinja"));
    w->Set("tokenizer.chat_template", Value::String(tmpl));
  }
  return true;
}

StatusOr<ModelConfig> ReleasedConfig(const std::string& variant, int layers) {
  struct Dims {
    const char* name;
    int hidden, layers, period, heads, kv, global_kv, window, inter, shared, ple;
    bool k_eq_v, double_wide, moe;
    int max_pos;
  };
  static const Dims kDims[] = {
      {"e2b", 1536, 35, 5, 8, 1, 1, 512, 6144, 20, 256, false, true, false, 131072},
      {"e4b", 2560, 42, 6, 8, 2, 2, 512, 10240, 18, 256, false, false, false, 131072},
      {"26b-a4b", 2816, 30, 6, 16, 8, 2, 1024, 2112, 0, 0, true, false, true, 262144},
      {"31b", 5376, 60, 6, 32, 16, 4, 1024, 21504, 0, 0, true, false, false, 262144},
  };
  for (Dims d : kDims) {
    if (variant != d.name) continue;
    if (layers > 0) {
      // Fewer layers, every width as released (encoder benchmarks need a text model of the
      // real hidden size, not its depth); KV sharing off.
      if (layers > 1024) return InvalidArgumentError("--layers must be at most 1024");
      d.layers = layers;
      d.shared = 0;
    }
    json::Value::Object o;
    auto num = [&](const char* k, int64_t v) { o.emplace_back(k, json::Value::Integer(v)); };
    o.emplace_back("model_type", json::Value::String("gemma4_text"));
    num("vocab_size", 262144);
    num("hidden_size", d.hidden);
    num("intermediate_size", d.inter);
    num("num_hidden_layers", d.layers);
    num("num_attention_heads", d.heads);
    num("num_key_value_heads", d.kv);
    num("num_global_key_value_heads", d.global_kv);
    num("head_dim", 256);
    num("global_head_dim", 512);
    num("sliding_window", d.window);
    num("hidden_size_per_layer_input", d.ple);
    num("vocab_size_per_layer_input", 262144);
    num("num_kv_shared_layers", d.shared);
    num("max_position_embeddings", d.max_pos);
    o.emplace_back("final_logit_softcapping", json::Value::Number(30.0));
    o.emplace_back("attention_k_eq_v", json::Value::Bool(d.k_eq_v));
    o.emplace_back("use_double_wide_mlp", json::Value::Bool(d.double_wide));
    o.emplace_back("enable_moe_block", json::Value::Bool(d.moe));
    if (d.moe) {
      num("num_experts", 128);
      num("top_k_experts", 8);
      num("moe_intermediate_size", 704);
    }
    json::Value::Array types;
    for (int i = 0; i < d.layers; ++i) {
      types.push_back(
          json::Value::String((i + 1) % d.period == 0 ? "full_attention" : "sliding_attention"));
    }
    o.emplace_back("layer_types", json::Value::MakeArray(std::move(types)));
    json::Value::Array eos;
    for (int id : {1, 106, 50}) eos.push_back(json::Value::Integer(id));
    o.emplace_back("eos_token_id", json::Value::MakeArray(std::move(eos)));
    return ParseModelConfig(json::Value::MakeObject(std::move(o)), "released " + variant);
  }
  return InvalidArgumentError("unknown variant '" + variant +
                              "' (expected e2b, e4b, 26b-a4b, 31b)");
}

}  // namespace gemma4
