#include "formats/mmproj.h"

#include <utility>

namespace gemma4::mmproj {

namespace {

// Hugging Face names of the towers (Gemma4ForConditionalGeneration).
constexpr char kVisionTower[] = "model.vision_tower.";
constexpr char kVisionProjector[] = "model.embed_vision.embedding_projection.weight";
constexpr char kAudioTower[] = "model.audio_tower.";
constexpr char kAudioProjector[] = "model.embed_audio.embedding_projection.weight";

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string VisionName(const std::string& hf) {
  if (hf == kVisionProjector) return "mm.input_projection.weight";
  const std::string tower = kVisionTower;
  if (!StartsWith(hf, tower)) return "";
  const std::string rest = hf.substr(tower.size());
  if (rest == "patch_embedder.input_proj.weight") return "v.patch_embd.weight";
  if (rest == "patch_embedder.position_embedding_table") return "v.position_embd.weight";
  if (rest == "std_bias") return "v.std_bias";
  if (rest == "std_scale") return "v.std_scale";
  const std::string layers = "encoder.layers.";
  if (!StartsWith(rest, layers)) return "";
  const size_t dot = rest.find('.', layers.size());
  if (dot == std::string::npos) return "";
  const std::string blk = "v.blk." + rest.substr(layers.size(), dot - layers.size()) + ".";
  const std::string leaf = rest.substr(dot + 1);
  static const std::pair<const char*, const char*> kNames[] = {
      {"input_layernorm.weight", "ln1.weight"},
      {"post_attention_layernorm.weight", "attn_post_norm.weight"},
      {"pre_feedforward_layernorm.weight", "ln2.weight"},
      {"post_feedforward_layernorm.weight", "ffn_post_norm.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
  };
  for (const auto& [from, to] : kNames) {
    if (leaf == from) return blk + to;
  }
  static const std::pair<const char*, const char*> kLinears[] = {
      {"self_attn.q_proj.", "attn_q."}, {"self_attn.k_proj.", "attn_k."},
      {"self_attn.v_proj.", "attn_v."}, {"self_attn.o_proj.", "attn_out."},
      {"mlp.gate_proj.", "ffn_gate."},  {"mlp.up_proj.", "ffn_up."},
      {"mlp.down_proj.", "ffn_down."},
  };
  for (const auto& [from, to] : kLinears) {
    if (!StartsWith(leaf, from)) continue;
    std::string tail = leaf.substr(std::string(from).size());  // linear.weight, input_min, ...
    if (tail == "linear.weight") tail = "weight";
    return blk + to + tail;
  }
  return "";
}

std::string AudioName(const std::string& hf) {
  if (hf == kAudioProjector) return "mm.a.input_projection.weight";
  const std::string tower = kAudioTower;
  if (!StartsWith(hf, tower)) return "";
  const std::string rest = hf.substr(tower.size());
  static const std::pair<const char*, const char*> kTop[] = {
      {"subsample_conv_projection.layer0.conv.weight", "a.conv1d.0.weight"},
      {"subsample_conv_projection.layer0.norm.weight", "a.conv1d.0.norm.weight"},
      {"subsample_conv_projection.layer1.conv.weight", "a.conv1d.1.weight"},
      {"subsample_conv_projection.layer1.norm.weight", "a.conv1d.1.norm.weight"},
      {"subsample_conv_projection.input_proj_linear.weight", "a.input_projection.weight"},
      {"output_proj.weight", "a.pre_encode.out.weight"},
      {"output_proj.bias", "a.pre_encode.out.bias"},
  };
  for (const auto& [from, to] : kTop) {
    if (rest == from) return to;
  }
  const std::string layers = "layers.";
  if (!StartsWith(rest, layers)) return "";
  const size_t dot = rest.find('.', layers.size());
  if (dot == std::string::npos || dot == layers.size()) return "";
  const std::string index = rest.substr(layers.size(), dot - layers.size());
  if (index.find_first_not_of("0123456789") != std::string::npos) return "";
  const std::string blk = "a.blk." + index + ".";
  const std::string leaf = rest.substr(dot + 1);
  static const std::pair<const char*, const char*> kNames[] = {
      {"feed_forward1.pre_layer_norm.weight", "ffn_norm.weight"},
      {"feed_forward1.post_layer_norm.weight", "ffn_post_norm.weight"},
      {"feed_forward2.pre_layer_norm.weight", "ffn_norm_1.weight"},
      {"feed_forward2.post_layer_norm.weight", "ffn_post_norm_1.weight"},
      {"norm_pre_attn.weight", "attn_pre_norm.weight"},
      {"norm_post_attn.weight", "attn_post_norm.weight"},
      {"norm_out.weight", "ln2.weight"},
      {"self_attn.relative_k_proj.weight", "attn_k_rel.weight"},
      {"self_attn.per_dim_scale", "per_dim_scale.weight"},  // stored softplus-applied
      // Crossed on purpose: tensor_mapping.py maps lconv1d.pre_layer_norm to A_ENC_CONV_NORM
      // and lconv1d.conv_norm to A_ENC_NORM_CONV, and clip.cpp loads them the other way round.
      {"lconv1d.pre_layer_norm.weight", "conv_norm.weight"},
      {"lconv1d.conv_norm.weight", "norm_conv.weight"},
      {"lconv1d.depthwise_conv1d.weight", "conv_dw.weight"},  // stored [H, K]
  };
  for (const auto& [from, to] : kNames) {
    if (leaf == from) return blk + to;
  }
  static const std::pair<const char*, const char*> kLinears[] = {
      {"feed_forward1.ffw_layer_1.", "ffn_up."},
      {"feed_forward1.ffw_layer_2.", "ffn_down."},
      {"feed_forward2.ffw_layer_1.", "ffn_up_1."},
      {"feed_forward2.ffw_layer_2.", "ffn_down_1."},
      {"self_attn.q_proj.", "attn_q."},
      {"self_attn.k_proj.", "attn_k."},
      {"self_attn.v_proj.", "attn_v."},
      {"self_attn.post.", "attn_out."},
      {"lconv1d.linear_start.", "conv_pw1."},
      {"lconv1d.linear_end.", "conv_pw2."},
  };
  for (const auto& [from, to] : kLinears) {
    if (!StartsWith(leaf, from)) continue;
    const std::string tail = leaf.substr(std::string(from).size());
    if (tail == "linear.weight") return blk + to + "weight";
    if (tail == "input_min" || tail == "input_max" || tail == "output_min" ||
        tail == "output_max") {
      return blk + to + tail;
    }
    return "";
  }
  return "";
}

// Ollama's audio names (convert_gemma4.go); its llama.cpp compatibility layer,
// handle_gemma4_clip, renames them the other way.
std::string OllamaAudioName(const std::string& llama) {
  if (llama == "a.input_projection.weight") return "a.pre_encode.out.weight";
  if (llama == "a.pre_encode.out.weight") return "mm.a.fc.weight";
  if (llama == "a.pre_encode.out.bias") return "mm.a.fc.bias";
  if (!StartsWith(llama, "a.blk.")) return llama;
  const size_t dot = llama.find('.', 6);
  if (dot == std::string::npos) return llama;
  const std::string blk = llama.substr(0, dot + 1), leaf = llama.substr(dot + 1);
  static const std::pair<const char*, const char*> kLeaves[] = {
      {"attn_pre_norm.weight", "ln1.weight"},
      {"attn_post_norm.weight", "ln2.weight"},
      {"ln2.weight", "layer_pre_norm.weight"},
      {"attn_k_rel.weight", "linear_pos.weight"},
  };
  for (const auto& [from, to] : kLeaves) {
    if (leaf == from) return blk + to;
  }
  return llama;
}

// clip.cpp's choice of the audio projector type in a llama.cpp mmproj.
std::string LlamaCppAudioProjectorType(const gguf::File& file) {
  const std::string type = MetaString(file, "clip.projector_type");
  return type.empty() ? MetaString(file, "clip.audio.projector_type") : type;
}

}  // namespace

const char* TowerName(Tower tower) { return tower == Tower::kVision ? "vision" : "audio"; }

const char* MarkerTensor(Tower tower) {
  return tower == Tower::kVision ? "v.patch_embd.weight" : "a.conv1d.0.weight";
}

bool StoredTower(const std::string& stored_name, Tower* tower) {
  if (StartsWith(stored_name, "a.") || StartsWith(stored_name, "mm.a.")) {
    *tower = Tower::kAudio;
    return true;
  }
  if (StartsWith(stored_name, "v.") || StartsWith(stored_name, "mm.")) {
    *tower = Tower::kVision;
    return true;
  }
  return false;
}

std::string MetaString(const gguf::File& file, const std::string& key) {
  const gguf::Value* v = file.Find(key);
  return v != nullptr && v->type == gguf::ValueType::kString ? v->s : "";
}

bool IsOllamaBlob(const gguf::File& file, Tower tower) {
  const gguf::Value* arch = file.Find("general.architecture");
  if (arch == nullptr || arch->type != gguf::ValueType::kString || arch->s != "gemma4") {
    return false;
  }
  const std::string marker = MarkerTensor(tower);
  for (const TensorView& t : file.tensors()) {
    if (t.name == marker) return true;
  }
  return false;
}

std::string ProjectorType(const gguf::File& file, Tower tower) {
  if (tower == Tower::kVision) {
    if (IsOllamaBlob(file, tower)) return "gemma4v";
    const std::string type = MetaString(file, "clip.vision.projector_type");
    return type.empty() ? MetaString(file, "clip.projector_type") : type;
  }
  if (IsOllamaBlob(file, tower)) return "gemma4a";
  return LlamaCppAudioProjectorType(file);
}

bool HasTower(const gguf::File& file, Tower tower) {
  if (tower == Tower::kVision) {
    return MetaString(file, "clip.vision.projector_type") == "gemma4v" ||
           MetaString(file, "clip.projector_type") == "gemma4v" || IsOllamaBlob(file, tower);
  }
  return LlamaCppAudioProjectorType(file) == "gemma4a" || IsOllamaBlob(file, tower);
}

std::string LlamaCppName(Tower tower, const std::string& hf_name) {
  return tower == Tower::kVision ? VisionName(hf_name) : AudioName(hf_name);
}

std::string OllamaName(Tower tower, const std::string& llama_cpp_name) {
  return tower == Tower::kVision ? llama_cpp_name : OllamaAudioName(llama_cpp_name);
}

StatusOr<std::deque<TensorView>> UnpackOllamaClampData(const TensorView& packed, int layers) {
  static const char* const kLinears[] = {"attn_q",   "attn_k", "attn_v",  "attn_out",
                                         "ffn_gate", "ffn_up", "ffn_down"};
  static const char* const kBounds[] = {"input_min", "input_max", "output_min", "output_max"};
  const int64_t want = (int64_t{layers} * 7 + 1) * 4;
  if (packed.dtype != DType::kF32 || packed.numel() != want) {
    return InvalidArgumentError(packed.file + ": v.clamp_data is " + DTypeName(packed.dtype) + " " +
                                packed.ShapeString() + ", expected F32 [" + std::to_string(want) +
                                "] for " + std::to_string(layers) + " layers");
  }
  std::deque<TensorView> views;
  for (int layer = 0; layer < layers; ++layer) {
    for (int li = 0; li < 7; ++li) {
      for (int bi = 0; bi < 4; ++bi) {
        TensorView v;
        v.name = "v.blk." + std::to_string(layer) + "." + kLinears[li] + "." + kBounds[bi];
        v.dtype = DType::kF32;
        v.shape = {1};
        v.data = packed.data + ((int64_t{layer} * 7 + li) * 4 + bi) * sizeof(float);
        v.nbytes = sizeof(float);
        v.file = packed.file;
        views.push_back(std::move(v));
      }
    }
  }
  return views;
}

StatusOr<std::unique_ptr<TowerFile>> TowerFile::Open(const std::string& path, Tower tower) {
  auto t = std::unique_ptr<TowerFile>(new TowerFile());
  t->tower_ = tower;
  GEMMA4_ASSIGN_OR_RETURN(t->file_, gguf::File::Open(path));
  const gguf::File& f = *t->file_;
  t->ollama_ = IsOllamaBlob(f, tower);
  const std::string type = ProjectorType(f, tower);
  const bool vision = tower == Tower::kVision;
  if (type != (vision ? "gemma4v" : "gemma4a")) {
    if (type == (vision ? "gemma4uv" : "gemma4ua")) {
      return UnimplementedError(path + ": projector '" + type +
                                "' (Gemma 4 12B Unified, encoder-free) is not supported");
    }
    return NotFoundError(path + ": no Gemma 4 " + TowerName(tower) + " tower (clip " +
                         (vision ? "" : "audio ") + "projector type '" + type + "', expected " +
                         (vision ? "gemma4v" : "gemma4a") + ")");
  }
  if (!vision) {
    if (const gguf::Value* has = f.Find("clip.has_audio_encoder");
        has != nullptr && has->type == gguf::ValueType::kBool && has->i == 0) {
      return NotFoundError(path + ": clip.has_audio_encoder is false");
    }
  }
  for (const TensorView& v : f.tensors()) t->by_name_[v.name] = &v;
  return t;
}

std::string TowerFile::Key(const std::string& name) const {
  return std::string(ollama_ ? "gemma4." : "clip.") + TowerName(tower_) + "." + name;
}

std::string TowerFile::ProjectionDimKey() const {
  return ollama_ ? "gemma4.embedding_length" : Key("projection_dim");
}

Status TowerFile::UnpackClampData(int layers) {
  if (tower_ != Tower::kVision) return OkStatus();
  auto packed = by_name_.find("v.clamp_data");
  if (packed == by_name_.end() || by_name_.count("v.blk.0.attn_q.input_min") != 0) {
    return OkStatus();
  }
  GEMMA4_ASSIGN_OR_RETURN(unpacked_bounds_, UnpackOllamaClampData(*packed->second, layers));
  for (const TensorView& v : unpacked_bounds_) by_name_[v.name] = &v;
  return OkStatus();
}

const TensorView* TowerFile::Find(const std::string& hf_name) const {
  std::string name = LlamaCppName(tower_, hf_name);
  if (ollama_) name = OllamaName(tower_, name);
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

}  // namespace gemma4::mmproj
