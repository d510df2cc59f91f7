// Multimodal projector GGUF files ("mmproj"): where an encoder tower's settings and tensors
// are stored, in the two layouts Gemma 4 ships in (../shared/docs/multimodal-interchange.md).
//  - llama.cpp's mmproj (general.architecture "clip"): projector types gemma4v / gemma4a,
//    settings under clip.vision.* / clip.audio.*, tensors v.*, a.*, mm.* named by its
//    converter (audio norms crossed: conv_norm holds lconv1d.pre_layer_norm).
//  - Ollama's one-file blob (architecture "gemma4", convert_gemma4.go): the text model with
//    the towers inline, settings under gemma4.vision.* / gemma4.audio.*, five audio tensors
//    named its own way, and the vision clamp bounds packed into one tensor v.clamp_data.
// This file answers "which towers, which key, which tensor"; what the settings mean (image
// sizes, feature settings, layer counts) is read by vision/ and audio/.
#ifndef GEMMA4_SRC_FORMATS_MMPROJ_H_
#define GEMMA4_SRC_FORMATS_MMPROJ_H_

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>

#include "base/tensor.h"
#include "formats/gguf.h"
#include "gemma4/status.h"

namespace gemma4::mmproj {

enum class Tower { kVision, kAudio };

// "vision" / "audio".
const char* TowerName(Tower tower);

// One tensor every stored tower of that kind has (v.patch_embd.weight, a.conv1d.0.weight):
// a GGUF holding it carries that tower inline.
const char* MarkerTensor(Tower tower);

// The tower a stored tensor belongs to, by its name in either layout (v.* and mm.* vision,
// a.* and mm.a.* audio); false for the text model's tensors.
bool StoredTower(const std::string& stored_name, Tower* tower);

// A string metadata value, or "" when absent or not a string.
std::string MetaString(const gguf::File& file, const std::string& key);

// An Ollama one-file Gemma 4 blob holding `tower` inline: architecture "gemma4" and the
// tower's marker tensor.
bool IsOllamaBlob(const gguf::File& file, Tower tower);

// The projector type llama.cpp reads for `tower` ("" when absent). Vision: clip.vision.
// projector_type, else the single-modality clip.projector_type; audio: clip.projector_type
// when set, else clip.audio.projector_type (clip.cpp's order). An Ollama blob holding the
// tower: gemma4v / gemma4a.
std::string ProjectorType(const gguf::File& file, Tower tower);

// A GGUF model file or mmproj that holds a Gemma 4 `tower` (gemma4v / gemma4a; metadata and
// tensor names only). Vision accepts gemma4v under either projector key.
bool HasTower(const gguf::File& file, Tower tower);

// llama.cpp's name (its converter, tensor_mapping.py and clip.cpp) of a tower tensor given
// its Hugging Face name (model.vision_tower.*, model.embed_vision.*; model.audio_tower.*,
// model.embed_audio.*), or "" when llama.cpp stores no such tensor. Note the audio norms
// llama.cpp crosses: lconv1d.pre_layer_norm is a.blk.N.conv_norm and lconv1d.conv_norm is
// a.blk.N.norm_conv.
std::string LlamaCppName(Tower tower, const std::string& hf_name);

// Ollama's name of a tower tensor given llama.cpp's (the subsampler's input projection, the
// audio tower's output projection and four per-block audio tensors differ; vision: the same).
std::string OllamaName(Tower tower, const std::string& llama_cpp_name);

// Ollama packs the clamp bounds of every vision linear into one F32 tensor v.clamp_data:
// [layers][q, k, v, out, gate, up, down][input_min, input_max, output_min, output_max], then
// 4 floats for the projector (unused: Gemma 4's projector does not clip). Returns 1-element
// views into `packed` under llama.cpp's names (v.blk.N.attn_q.input_min, ...);
// InvalidArgument when `packed` is not F32 of (layers * 7 + 1) * 4 values.
StatusOr<std::deque<TensorView>> UnpackOllamaClampData(const TensorView& packed, int layers);

// One tower of an opened mmproj or Ollama blob: its settings under the right key prefix and
// its tensors by Hugging Face name. Keeps the mapping the tensor views point into.
class TowerFile {
 public:
  // Opens `path` and checks that it holds `tower`: NotFound (naming the projector type found)
  // when it does not or when clip.has_audio_encoder is false, Unimplemented for the 12B
  // Unified encoder-free projectors gemma4uv / gemma4ua.
  static StatusOr<std::unique_ptr<TowerFile>> Open(const std::string& path, Tower tower);

  Tower tower() const { return tower_; }
  const std::string& path() const { return file_->path(); }
  // An Ollama blob (settings under gemma4.<tower>.*, Ollama's tensor names).
  bool ollama() const { return ollama_; }
  const gguf::File& gguf() const { return *file_; }

  // The metadata key of the tower's setting `name`: clip.vision.block_count or, in an Ollama
  // blob, gemma4.vision.block_count.
  std::string Key(const std::string& name) const;
  // The key holding the projector's output width: clip.<tower>.projection_dim, or in an
  // Ollama blob the text model's gemma4.embedding_length.
  std::string ProjectionDimKey() const;

  // Ollama's packed vision clamp bounds, unpacked under llama.cpp's names for files that do
  // not also store them as 1-element tensors (Ollama's files usually carry both); `layers` is
  // the tower's block count. Nothing to do for other files and for audio.
  Status UnpackClampData(int layers);

  // The tower tensor of a Hugging Face name (through llama.cpp's names, then Ollama's), or
  // null when the file has none.
  const TensorView* Find(const std::string& hf_name) const;

  // DataLoss when the file shrank or was replaced since it was opened (gguf::File).
  Status CheckUnchanged() const { return file_->CheckUnchanged(); }

 private:
  TowerFile() = default;

  Tower tower_ = Tower::kVision;
  bool ollama_ = false;
  std::unique_ptr<gguf::File> file_;
  std::unordered_map<std::string, const TensorView*> by_name_;  // stored name -> tensor
  std::deque<TensorView> unpacked_bounds_;  // views into v.clamp_data (stable addresses)
};

}  // namespace gemma4::mmproj

#endif  // GEMMA4_SRC_FORMATS_MMPROJ_H_
