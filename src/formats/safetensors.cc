#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>

#include "base/json.h"

namespace gemma4 {
namespace {

bool ParseDType(std::string_view s, DType* out) {
  static const struct {
    const char* name;
    DType type;
  } kTypes[] = {{"F32", DType::kF32},   {"F16", DType::kF16},        {"BF16", DType::kBF16},
                {"F64", DType::kF64},   {"I64", DType::kI64},        {"I32", DType::kI32},
                {"I16", DType::kI16},   {"I8", DType::kI8},          {"U8", DType::kU8},
                {"BOOL", DType::kBool}, {"F8_E4M3", DType::kF8E4M3}, {"F8_E5M2", DType::kF8E5M2}};
  for (const auto& t : kTypes) {
    if (s == t.name) {
      *out = t.type;
      return true;
    }
  }
  return false;
}

}  // namespace

StatusOr<std::vector<TensorView>> ParseSafetensors(const uint8_t* bytes, size_t size,
                                                   const std::string& file_name) {
  if (size < 8) {
    return DataLossError(file_name + ": truncated safetensors file (" + std::to_string(size) +
                         " bytes, need at least 8 for the header length)");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > size - 8) {
    return DataLossError(file_name + ": header length " + std::to_string(header_len) +
                         " extends beyond the file (" + std::to_string(size) + " bytes)");
  }
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return InvalidArgumentError(file_name + ": header length " + std::to_string(header_len) +
                                " exceeds the 100 MB limit");
  }
  const std::string_view header(reinterpret_cast<const char*>(bytes + 8), header_len);
  GEMMA4_ASSIGN_OR_RETURN(json::Value root,
                          json::Parse(header, file_name + " header", kMaxSafetensorsHeaderValues));
  if (!root.is_object()) {
    return InvalidArgumentError(file_name + ": header is not a JSON object");
  }
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  std::vector<TensorView> tensors;
  tensors.reserve(root.as_object().size());
  for (const auto& [name, entry] : root.as_object()) {
    if (name == "__metadata__") continue;
    const std::string where = file_name + ": tensor '" + name + "'";
    if (!entry.is_object()) return InvalidArgumentError(where + ": entry is not an object");
    const json::Value* dtype = entry.Find("dtype");
    const json::Value* shape = entry.Find("shape");
    const json::Value* offsets = entry.Find("data_offsets");
    if (dtype == nullptr || !dtype->is_string()) {
      return InvalidArgumentError(where + ": missing or non-string 'dtype'");
    }
    if (shape == nullptr || !shape->is_array()) {
      return InvalidArgumentError(where + ": missing or non-array 'shape'");
    }
    if (offsets == nullptr || !offsets->is_array() || offsets->as_array().size() != 2) {
      return InvalidArgumentError(where + ": 'data_offsets' must be an array of two integers");
    }
    TensorView t;
    t.name = name;
    t.file = file_name;
    if (!ParseDType(dtype->as_string(), &t.dtype)) {
      return InvalidArgumentError(where + ": unknown dtype '" + dtype->as_string() + "'");
    }
    uint64_t numel = 1;
    for (const json::Value& d : shape->as_array()) {
      int64_t dim = 0;
      if (!d.GetInt64(&dim) || dim < 0) {
        return InvalidArgumentError(where + ": shape entries must be non-negative integers");
      }
      // Bound every dimension and the product so the byte count cannot overflow.
      if (dim > (int64_t{1} << 40) || (dim != 0 && numel > (uint64_t{1} << 50) / dim)) {
        return InvalidArgumentError(where + ": shape " + shape->Serialize() + " is too large");
      }
      numel *= static_cast<uint64_t>(dim);
      t.shape.push_back(dim);
    }
    int64_t begin = 0, end = 0;
    if (!offsets->as_array()[0].GetInt64(&begin) || !offsets->as_array()[1].GetInt64(&end) ||
        begin < 0 || end < begin) {
      return InvalidArgumentError(where + ": invalid data_offsets " + offsets->Serialize());
    }
    if (static_cast<uint64_t>(end) > data_size) {
      return DataLossError(where + ": data_offsets " + offsets->Serialize() +
                           " extend beyond the data section (" + std::to_string(data_size) +
                           " bytes; file truncated?)");
    }
    const uint64_t expected = numel * DTypeSize(t.dtype);
    if (static_cast<uint64_t>(end - begin) != expected) {
      return InvalidArgumentError(where + ": " + std::to_string(end - begin) + " data bytes for " +
                                  DTypeName(t.dtype) + " shape " + t.ShapeString() + ", expected " +
                                  std::to_string(expected));
    }
    t.data = bytes + data_start + begin;
    t.nbytes = expected;
    t.file_offset = data_start + begin;
    tensors.push_back(std::move(t));
  }
  // Tensors must not overlap. Empty tensors occupy no bytes and are skipped, so they cannot
  // hide an overlap between their neighbours.
  std::vector<const TensorView*> sorted;
  for (const auto& t : tensors) {
    if (t.nbytes > 0) sorted.push_back(&t);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorView* a, const TensorView* b) { return a->data < b->data; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i - 1]->data + sorted[i - 1]->nbytes > sorted[i]->data) {
      return InvalidArgumentError(file_name + ": data of tensors '" + sorted[i - 1]->name +
                                  "' and '" + sorted[i]->name + "' overlap");
    }
  }
  return tensors;
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  auto file = std::make_unique<SafetensorsFile>();
  GEMMA4_ASSIGN_OR_RETURN(file->file_, MappedFile::Open(path));
  GEMMA4_ASSIGN_OR_RETURN(file->tensors_,
                          ParseSafetensors(file->file_->data(), file->file_->size(), path));
  for (TensorView& t : file->tensors_) t.fd = file->file_->fd();
  return file;
}

}  // namespace gemma4
