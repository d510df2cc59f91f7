#include "formats/checkpoint.h"

#include <sys/stat.h>

#include <map>
#include <set>

#include "formats/mapped_file.h"

namespace gemma4 {
namespace {

bool IsDirectory(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool IsFile(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool Exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string DirName(const std::string& p) {
  const size_t slash = p.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

}  // namespace

Status Checkpoint::AddFile(const std::string& file_path) {
  GEMMA4_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(file_path));
  for (const TensorView& t : file->tensors()) {
    if (!tensors_.emplace(t.name, t).second) {
      return InvalidArgumentError(file_path + ": tensor '" + t.name +
                                  "' also appears in another weight file");
    }
  }
  files_.push_back(std::move(file));
  return OkStatus();
}

Status Checkpoint::CheckFilesUnchanged() const {
  for (const auto& file : files_) GEMMA4_RETURN_IF_ERROR(file->CheckUnchanged());
  return OkStatus();
}

StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& path) {
  auto ckpt = std::unique_ptr<Checkpoint>(new Checkpoint());
  ckpt->path_ = path;
  std::string dir;
  std::vector<std::string> weight_files;
  std::string index_path;
  if (IsDirectory(path)) {
    dir = path;
    if (IsFile(dir + "/model.safetensors.index.json")) {
      index_path = dir + "/model.safetensors.index.json";
    } else if (IsFile(dir + "/model.safetensors")) {
      weight_files.push_back(dir + "/model.safetensors");
    } else {
      // A FIFO or device under a weight file's name: say so rather than "missing".
      for (const char* name : {"/model.safetensors.index.json", "/model.safetensors"}) {
        if (Exists(dir + name)) return InvalidArgumentError(dir + name + ": not a regular file");
      }
      return NotFoundError(path +
                           ": no model.safetensors or model.safetensors.index.json in the "
                           "checkpoint directory");
    }
  } else if (IsFile(path)) {
    dir = DirName(path);
    if (EndsWith(path, ".index.json")) {
      index_path = path;
    } else if (EndsWith(path, ".safetensors")) {
      weight_files.push_back(path);
    } else {
      return InvalidArgumentError(path +
                                  ": not a checkpoint directory, .safetensors file or "
                                  "safetensors index");
    }
  } else if (Exists(path)) {
    return InvalidArgumentError(path + ": not a regular file or directory");
  } else {
    return NotFoundError(path + ": no such file or directory");
  }

  ckpt->config_path_ = dir + "/config.json";
  GEMMA4_ASSIGN_OR_RETURN(std::string config_text, ReadFileToString(ckpt->config_path_));
  GEMMA4_ASSIGN_OR_RETURN(ckpt->config_json_, json::Parse(config_text, ckpt->config_path_));
  ckpt->generation_config_path_ = dir + "/generation_config.json";
  if (const std::string& gen_path = ckpt->generation_config_path_; IsFile(gen_path)) {
    GEMMA4_ASSIGN_OR_RETURN(std::string gen_text, ReadFileToString(gen_path));
    GEMMA4_ASSIGN_OR_RETURN(ckpt->generation_config_json_, json::Parse(gen_text, gen_path));
  }

  std::map<std::string, std::string> expected_location;  // tensor -> shard, from the index
  if (!index_path.empty()) {
    GEMMA4_ASSIGN_OR_RETURN(std::string index_text, ReadFileToString(index_path));
    GEMMA4_ASSIGN_OR_RETURN(json::Value index, json::Parse(index_text, index_path));
    const json::Value* map = index.Find("weight_map");
    if (map == nullptr || !map->is_object()) {
      return InvalidArgumentError(index_path + ": missing 'weight_map' object");
    }
    std::set<std::string> shards;
    for (const auto& [name, file] : map->as_object()) {
      const std::string& f = file.as_string();
      // Shards must live next to the index: no paths, no parent references.
      if (!file.is_string() || f.empty() || f.find('/') != std::string::npos || f == "." ||
          f == "..") {
        return InvalidArgumentError(index_path + ": weight_map entry for '" + name +
                                    "' is not a plain file name");
      }
      expected_location[name] = f;
      if (shards.insert(f).second) weight_files.push_back(dir + "/" + f);
    }
  }
  for (const std::string& f : weight_files) GEMMA4_RETURN_IF_ERROR(ckpt->AddFile(f));
  for (const auto& [name, file] : expected_location) {
    auto it = ckpt->tensors_.find(name);
    if (it == ckpt->tensors_.end() || !EndsWith(it->second.file, "/" + file)) {
      return DataLossError(index_path + ": tensor '" + name + "' is listed in shard '" + file +
                           "' but that shard does not contain it");
    }
  }
  return ckpt;
}

const TensorView* Checkpoint::Find(std::string_view name) const {
  auto it = tensors_.find(std::string(name));
  return it == tensors_.end() ? nullptr : &it->second;
}

uint64_t Checkpoint::mapped_bytes() const {
  uint64_t total = 0;
  for (const auto& f : files_) {
    for (const auto& t : f->tensors()) total += t.nbytes;
  }
  return total;
}

}  // namespace gemma4
