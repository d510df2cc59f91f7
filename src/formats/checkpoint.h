// A checkpoint as users have it: a Hugging Face directory (config.json plus model.safetensors
// or a sharded model.safetensors.index.json), or a single .safetensors file with config.json
// beside it. All weight files are memory-mapped; tensors are looked up by name.
#ifndef GEMMA4_SRC_FORMATS_CHECKPOINT_H_
#define GEMMA4_SRC_FORMATS_CHECKPOINT_H_

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/json.h"
#include "base/tensor.h"
#include "formats/safetensors.h"
#include "gemma4/status.h"

namespace gemma4 {

class Checkpoint {
 public:
  static StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& path);

  const json::Value& config_json() const { return config_json_; }
  const std::string& config_path() const { return config_path_; }
  // generation_config.json beside config.json; null when the file is absent.
  const json::Value& generation_config_json() const { return generation_config_json_; }
  const std::string& generation_config_path() const { return generation_config_path_; }
  const std::string& path() const { return path_; }
  // nullptr when absent.
  const TensorView* Find(std::string_view name) const;
  size_t num_tensors() const { return tensors_.size(); }
  const std::unordered_map<std::string, TensorView>& tensors() const { return tensors_; }
  // Total bytes of all mapped weight files.
  uint64_t mapped_bytes() const;
  // DataLoss naming the weight file that shrank or changed since it was mapped.
  Status CheckFilesUnchanged() const;

 private:
  Status AddFile(const std::string& file_path);

  std::string path_;
  std::string config_path_;
  json::Value config_json_;
  json::Value generation_config_json_;
  std::string generation_config_path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, TensorView> tensors_;
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_FORMATS_CHECKPOINT_H_
