// GGUF v3 (llama.cpp's model file format): reader with full validation of everything read from
// the file, and a writer. Tensor views use row-major shapes like safetensors: GGUF's dims
// (ne0 = contiguous) are reversed, so a Linear weight stored as ne = [in, out] reads as
// [out, in].
#ifndef GEMMA4_SRC_FORMATS_GGUF_H_
#define GEMMA4_SRC_FORMATS_GGUF_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/tensor.h"
#include "formats/mapped_file.h"
#include "gemma4/status.h"

namespace gemma4::gguf {

enum class ValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// A metadata value. Integers and bools are held as int64 (uint64 values above INT64_MAX are
// rejected), floats as double; arrays hold their element type and elements.
struct Value {
  ValueType type = ValueType::kUint32;
  int64_t i = 0;
  double f = 0;
  std::string s;
  ValueType element_type = ValueType::kUint32;
  std::vector<Value> array;

  bool IsInteger() const;
  bool IsFloat() const { return type == ValueType::kFloat32 || type == ValueType::kFloat64; }
  static Value Int(ValueType t, int64_t v);
  static Value Float32(float v);
  static Value Bool(bool v);
  static Value String(std::string v);
  static Value Array(ValueType element_type, std::vector<Value> elements);
};

// ggml tensor type ids.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ6_K = 14,
  kBF16 = 30,
  kI32 = 26,
};
bool GgmlTypeToDType(uint32_t ggml_type, DType* out);
// ggml's name of a tensor type id ("Q5_0" for 6), or nullptr for ids ggml does not define.
const char* GgmlTypeName(uint32_t ggml_type);
bool DTypeToGgmlType(DType t, GgmlType* out);

inline constexpr uint64_t kDefaultAlignment = 32;
// The most metadata values (array elements included) a file may hold. Each costs a Value in
// memory (about 100 bytes) whatever its size in the file, so a 20 MB array of bytes would cost
// 2 GB; Gemma 4's tokenizer arrays hold about 1.3 million.
inline constexpr uint64_t kMaxMetadataValues = uint64_t{4} << 20;

class File {
 public:
  static StatusOr<std::unique_ptr<File>> Open(const std::string& path);
  // Parses an in-memory image (used by the fuzz target); views point into `data`.
  static StatusOr<std::unique_ptr<File>> Parse(const uint8_t* data, size_t size,
                                               const std::string& name);

  uint32_t version() const { return version_; }
  const std::map<std::string, Value>& metadata() const { return metadata_; }
  const Value* Find(std::string_view key) const;
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // Frees the metadata (a tokenizer's arrays take tens of MB) once it has been read, and
  // drops the mapped header it was parsed from (E2B: 7 MiB) from the resident set.
  void DropMetadata();
  // Drops the pages around [p, p + n) (a range inside this file's mapping), widened to
  // `granule` boundaries within the file, from the resident set. Reading a small tensor faults
  // in the whole large folio around it (up to 2 MiB on recent kernels), most of it other
  // tensors' bytes.
  void ReleasePagesAround(const uint8_t* p, uint64_t n, uint64_t granule) const;
  const std::string& path() const { return name_; }
  // See MappedFile::CheckUnchanged (OK for an in-memory image).
  Status CheckUnchanged() const { return file_ != nullptr ? file_->CheckUnchanged() : OkStatus(); }

 private:
  std::unique_ptr<MappedFile> file_;
  std::string name_;
  uint32_t version_ = 0;
  uint64_t data_start_ = 0;  // file offset of the tensor data section
  std::map<std::string, Value> metadata_;
  std::vector<TensorView> tensors_;
};

// Streams a GGUF file: metadata and tensor infos first, then each tensor's bytes, produced on
// demand so a multi-gigabyte model never sits in memory at once.
class Writer {
 public:
  // Keeps insertion order; setting an existing key replaces its value in place.
  void Set(const std::string& key, Value value);
  // shape is row-major (outermost first).
  void AddTensor(const std::string& name, DType type, std::vector<int64_t> shape);
  size_t num_tensors() const { return tensors_.size(); }

  // Fills `bytes` with tensor `index`'s data (exactly its size) or fails.
  using Producer = std::function<Status(size_t index, std::vector<uint8_t>* bytes)>;
  Status Write(const std::string& path, const Producer& produce) const;

 private:
  struct Tensor {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
  };
  std::vector<std::pair<std::string, Value>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace gemma4::gguf

#endif  // GEMMA4_SRC_FORMATS_GGUF_H_
