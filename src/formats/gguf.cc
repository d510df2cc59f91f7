#include "formats/gguf.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <set>

namespace gemma4::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxStringBytes = 1ull << 30;
constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 2;

// Bounds-checked little-endian cursor over the file image.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& name)
      : data_(data), size_(size), name_(name) {}

  size_t offset() const { return pos_; }
  // Counts `n` more metadata values against kMaxMetadataValues.
  Status CountValues(uint64_t n, const std::string& key) {
    if (n > kMaxMetadataValues - values_) {
      return Error("metadata '" + key + "' takes the file past " +
                   std::to_string(kMaxMetadataValues) + " metadata values");
    }
    values_ += n;
    return OkStatus();
  }
  Status Error(const std::string& what) const {
    return DataLossError(name_ + ": " + what + " (at offset " + std::to_string(pos_) + ")");
  }

  template <class T>
  Status Read(T* out, const char* what) {
    if (size_ - pos_ < sizeof(T)) return Error(std::string("truncated file reading ") + what);
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return OkStatus();
  }

  Status ReadString(std::string* out, const char* what) {
    uint64_t len = 0;
    GEMMA4_RETURN_IF_ERROR(Read(&len, what));
    if (len > kMaxStringBytes || len > size_ - pos_) {
      return Error(std::string("string length ") + std::to_string(len) + " of " + what +
                   " extends beyond the file");
    }
    out->assign(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return OkStatus();
  }

  size_t remaining() const { return size_ - pos_; }

 private:
  const uint8_t* data_;
  size_t size_;
  std::string name_;
  size_t pos_ = 0;
  uint64_t values_ = 0;
};

size_t ScalarSize(ValueType t) {
  switch (t) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kBool:
      return 1;
    case ValueType::kUint16:
    case ValueType::kInt16:
      return 2;
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kFloat32:
      return 4;
    case ValueType::kUint64:
    case ValueType::kInt64:
    case ValueType::kFloat64:
      return 8;
    default:
      return 0;
  }
}

Status ReadValue(Reader* r, ValueType type, int depth, const std::string& key, Value* out) {
  out->type = type;
  switch (type) {
    case ValueType::kUint8: {
      uint8_t v = 0;
      GEMMA4_RETURN_IF_ERROR(r->Read(&v, "u8"));
      out->i = v;
      return OkStatus();
    }
    case ValueType::kInt8: {
      int8_t v = 0;
      GEMMA4_RETURN_IF_ERROR(r->Read(&v, "i8"));
      out->i = v;
      return OkStatus();
    }
    case ValueType::kUint16: {
      uint16_t v = 0;
      GEMMA4_RETURN_IF_ERROR(r->Read(&v, "u16"));
      out->i = v;
      return OkStatus();
    }
    case ValueType::kInt16: {
      int16_t v = 0;
      GEMMA4_RETURN_IF_ERROR(r->Read(&v, "i16"));
      out->i = v;
      return OkStatus();
    }
    case ValueType::kUint32: {
      uint32_t v = 0;
      GEMMA4_RETURN_IF_ERROR(r->Read(&v, "u32"));
      out->i = v;
      return OkStatus();
    }
    case ValueType::kInt32: {
      int32_t v = 0;
      GEMMA4_RETURN_IF_ERROR(r->Read(&v, "i32"));
      out->i = v;
      return OkStatus();
    }
    case ValueType::kInt64: {
      int64_t v = 0;
      GEMMA4_RETURN_IF_ERROR(r->Read(&v, "i64"));
      out->i = v;
      return OkStatus();
    }
    case ValueType::kUint64: {
      uint64_t v = 0;
      GEMMA4_RETURN_IF_ERROR(r->Read(&v, "u64"));
      if (v > static_cast<uint64_t>(INT64_MAX)) return r->Error("value of '" + key + "' too large");
      out->i = static_cast<int64_t>(v);
      return OkStatus();
    }
    case ValueType::kBool: {
      uint8_t v = 0;
      GEMMA4_RETURN_IF_ERROR(r->Read(&v, "bool"));
      if (v > 1) return r->Error("bool value of '" + key + "' is neither 0 nor 1");
      out->i = v;
      return OkStatus();
    }
    case ValueType::kFloat32: {
      float v = 0;
      GEMMA4_RETURN_IF_ERROR(r->Read(&v, "f32"));
      out->f = v;
      return OkStatus();
    }
    case ValueType::kFloat64: {
      double v = 0;
      GEMMA4_RETURN_IF_ERROR(r->Read(&v, "f64"));
      out->f = v;
      return OkStatus();
    }
    case ValueType::kString:
      return r->ReadString(&out->s, "string value");
    case ValueType::kArray: {
      if (depth >= kMaxArrayDepth) return r->Error("arrays of '" + key + "' nested too deeply");
      uint32_t et = 0;
      uint64_t n = 0;
      GEMMA4_RETURN_IF_ERROR(r->Read(&et, "array element type"));
      GEMMA4_RETURN_IF_ERROR(r->Read(&n, "array length"));
      if (et > static_cast<uint32_t>(ValueType::kFloat64)) {
        return r->Error("unknown array element type " + std::to_string(et) + " for '" + key + "'");
      }
      out->element_type = static_cast<ValueType>(et);
      // Every element takes at least one byte (strings at least 8): bound n by the file.
      const size_t min_size = out->element_type == ValueType::kString ? 8
                              : out->element_type == ValueType::kArray
                                  ? 12
                                  : ScalarSize(out->element_type);
      if (n > r->remaining() / std::max<size_t>(1, min_size)) {
        return r->Error("array '" + key + "' of " + std::to_string(n) +
                        " elements extends beyond the file");
      }
      GEMMA4_RETURN_IF_ERROR(r->CountValues(n, key));
      out->array.resize(n);
      for (uint64_t k = 0; k < n; ++k) {
        GEMMA4_RETURN_IF_ERROR(ReadValue(r, out->element_type, depth + 1, key, &out->array[k]));
      }
      return OkStatus();
    }
  }
  return r->Error("unknown value type " + std::to_string(static_cast<uint32_t>(type)) + " for '" +
                  key + "'");
}

}  // namespace

bool Value::IsInteger() const {
  switch (type) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kUint16:
    case ValueType::kInt16:
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kUint64:
    case ValueType::kInt64:
    case ValueType::kBool:
      return true;
    default:
      return false;
  }
}

Value Value::Int(ValueType t, int64_t v) {
  Value x;
  x.type = t;
  x.i = v;
  return x;
}
Value Value::Float32(float v) {
  Value x;
  x.type = ValueType::kFloat32;
  x.f = v;
  return x;
}
Value Value::Bool(bool v) { return Int(ValueType::kBool, v ? 1 : 0); }
Value Value::String(std::string v) {
  Value x;
  x.type = ValueType::kString;
  x.s = std::move(v);
  return x;
}
Value Value::Array(ValueType element_type, std::vector<Value> elements) {
  Value x;
  x.type = ValueType::kArray;
  x.element_type = element_type;
  x.array = std::move(elements);
  return x;
}

const char* GgmlTypeName(uint32_t ggml_type) {
  // ggml.h's enum ggml_type (ids 4, 5 and 31-33, 36-38 were removed from GGUF files).
  static constexpr const char* kNames[] = {
      "F32",     "F16",   "Q4_0",   "Q4_1",  "",      "",       "Q5_0", "Q5_1",    "Q8_0",
      "Q8_1",    "Q2_K",  "Q3_K",   "Q4_K",  "Q5_K",  "Q6_K",   "Q8_K", "IQ2_XXS", "IQ2_XS",
      "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8",   "I16",     "I32",
      "I64",     "F64",   "IQ1_M",  "BF16",  "",      "",       "",     "TQ1_0",   "TQ2_0",
      "",        "",      "",       "MXFP4", "NVFP4", "Q1_0",   "Q2_0"};
  if (ggml_type >= std::size(kNames) || kNames[ggml_type][0] == '\0') return nullptr;
  return kNames[ggml_type];
}

bool GgmlTypeToDType(uint32_t ggml_type, DType* out) {
  switch (ggml_type) {
    case 0:
      *out = DType::kF32;
      return true;
    case 1:
      *out = DType::kF16;
      return true;
    case 2:
      *out = DType::kQ4_0;
      return true;
    case 3:
      *out = DType::kQ4_1;
      return true;
    case 6:  // converted to Q5_1 when a model loads (DType::kQ5_0)
      *out = DType::kQ5_0;
      return true;
    case 7:
      *out = DType::kQ5_1;
      return true;
    case 8:
      *out = DType::kQ8_0;
      return true;
    case 10:
      *out = DType::kQ2_K;
      return true;
    case 11:
      *out = DType::kQ3_K;
      return true;
    case 12:
      *out = DType::kQ4_K;
      return true;
    case 13:
      *out = DType::kQ5_K;
      return true;
    case 14:
      *out = DType::kQ6_K;
      return true;
    case 16:
      *out = DType::kIQ2_XXS;
      return true;
    case 17:
      *out = DType::kIQ2_XS;
      return true;
    case 18:
      *out = DType::kIQ3_XXS;
      return true;
    case 21:
      *out = DType::kIQ3_S;
      return true;
    case 22:
      *out = DType::kIQ2_S;
      return true;
    case 19:
      *out = DType::kIQ1_S;
      return true;
    case 29:
      *out = DType::kIQ1_M;
      return true;
    case 20:
      *out = DType::kIQ4_NL;
      return true;
    case 39:
      *out = DType::kMXFP4;
      return true;
    case 23:
      *out = DType::kIQ4_XS;
      return true;
    case 30:
      *out = DType::kBF16;
      return true;
    case 26:  // I32: index tensors (an assistant drafter's token ordering), never weights
      *out = DType::kI32;
      return true;
    default:
      return false;
  }
}

bool DTypeToGgmlType(DType t, GgmlType* out) {
  switch (t) {
    case DType::kF32:
      *out = GgmlType::kF32;
      return true;
    case DType::kF16:
      *out = GgmlType::kF16;
      return true;
    case DType::kQ4_0:
      *out = GgmlType::kQ4_0;
      return true;
    case DType::kQ8_0:
      *out = GgmlType::kQ8_0;
      return true;
    case DType::kQ4_K:
      *out = GgmlType::kQ4_K;
      return true;
    case DType::kQ6_K:
      *out = GgmlType::kQ6_K;
      return true;
    case DType::kBF16:
      *out = GgmlType::kBF16;
      return true;
    case DType::kI32:
      *out = GgmlType::kI32;
      return true;
    default:
      return false;
  }
}

StatusOr<std::unique_ptr<File>> File::Open(const std::string& path) {
  GEMMA4_ASSIGN_OR_RETURN(auto mapped, MappedFile::Open(path));
  GEMMA4_ASSIGN_OR_RETURN(auto file, Parse(mapped->data(), mapped->size(), path));
  for (TensorView& t : file->tensors_) t.fd = mapped->fd();
  file->file_ = std::move(mapped);
  return file;
}

StatusOr<std::unique_ptr<File>> File::Parse(const uint8_t* data, size_t size,
                                            const std::string& name) {
  auto file = std::unique_ptr<File>(new File());
  file->name_ = name;
  Reader r(data, size, name);
  uint32_t magic = 0;
  GEMMA4_RETURN_IF_ERROR(r.Read(&magic, "magic"));
  if (magic != kMagic) return InvalidArgumentError(name + ": not a GGUF file (bad magic)");
  GEMMA4_RETURN_IF_ERROR(r.Read(&file->version_, "version"));
  if (file->version_ != 2 && file->version_ != 3) {
    return UnimplementedError(name + ": GGUF version " + std::to_string(file->version_) +
                              " is not supported (2 and 3 are)");
  }
  uint64_t n_tensors = 0, n_kv = 0;
  GEMMA4_RETURN_IF_ERROR(r.Read(&n_tensors, "tensor count"));
  GEMMA4_RETURN_IF_ERROR(r.Read(&n_kv, "metadata count"));
  // Each metadata entry takes >= 12 bytes and each tensor info >= 24: bound the counts.
  if (n_kv > r.remaining() / 12 || n_tensors > r.remaining() / 24) {
    return r.Error("metadata count " + std::to_string(n_kv) + " or tensor count " +
                   std::to_string(n_tensors) + " exceeds what the file can hold");
  }
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key;
    GEMMA4_RETURN_IF_ERROR(r.ReadString(&key, "metadata key"));
    uint32_t type = 0;
    GEMMA4_RETURN_IF_ERROR(r.Read(&type, "metadata value type"));
    if (type > static_cast<uint32_t>(ValueType::kFloat64)) {
      return r.Error("unknown metadata value type " + std::to_string(type) + " for '" + key + "'");
    }
    Value v;
    GEMMA4_RETURN_IF_ERROR(ReadValue(&r, static_cast<ValueType>(type), 0, key, &v));
    if (!file->metadata_.emplace(key, std::move(v)).second) {
      return r.Error("duplicate metadata key '" + key + "'");
    }
  }
  uint64_t alignment = kDefaultAlignment;
  if (const Value* a = file->Find("general.alignment"); a != nullptr) {
    if (!a->IsInteger() || a->i <= 0 || a->i > 65536 || (a->i & (a->i - 1)) != 0) {
      return InvalidArgumentError(name + ": general.alignment must be a power of two <= 65536");
    }
    alignment = static_cast<uint64_t>(a->i);
  }
  struct Info {
    std::string name;
    std::vector<int64_t> shape;
    DType type;
    uint64_t offset;
    uint64_t bytes;
  };
  std::vector<Info> infos(n_tensors);
  std::set<std::string> names;
  for (uint64_t t = 0; t < n_tensors; ++t) {
    Info& info = infos[t];
    GEMMA4_RETURN_IF_ERROR(r.ReadString(&info.name, "tensor name"));
    if (!names.insert(info.name).second) return r.Error("duplicate tensor '" + info.name + "'");
    uint32_t n_dims = 0;
    GEMMA4_RETURN_IF_ERROR(r.Read(&n_dims, "tensor dims"));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return r.Error("tensor '" + info.name + "' has " + std::to_string(n_dims) + " dims");
    }
    std::vector<int64_t> ne(n_dims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t v = 0;
      GEMMA4_RETURN_IF_ERROR(r.Read(&v, "tensor dim"));
      if (v > (1ull << 40) || (v != 0 && numel > (1ull << 50) / v)) {
        return r.Error("tensor '" + info.name + "' dims are too large");
      }
      numel *= v;
      ne[d] = static_cast<int64_t>(v);
    }
    info.shape.assign(ne.rbegin(), ne.rend());
    uint32_t type = 0;
    GEMMA4_RETURN_IF_ERROR(r.Read(&type, "tensor type"));
    if (!GgmlTypeToDType(type, &info.type)) {
      // Named, so that a user can tell which quantization to ask for instead (llama.cpp's
      // quantizer falls back from Q4_K to Q5_0 on rows that are not a multiple of 256, as
      // 26B-A4B's 2112- and 704-wide down projections are).
      const char* type_name = GgmlTypeName(type);
      return UnimplementedError(
          name + ": tensor '" + info.name + "' has ggml type " + std::to_string(type) +
          (type_name != nullptr ? std::string(" (") + type_name + ")" : std::string(" (unknown)")) +
          ", which is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, "
          "Q4_K, Q5_K, Q6_K, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS, "
          "MXFP4, I32 are)");
    }
    if (ne[0] % BlockElements(info.type) != 0) {
      return InvalidArgumentError(name + ": tensor '" + info.name + "' row of " +
                                  std::to_string(ne[0]) + " elements is not a multiple of the " +
                                  DTypeName(info.type) + " block size");
    }
    info.bytes = (numel / BlockElements(info.type)) * BlockBytes(info.type);
    GEMMA4_RETURN_IF_ERROR(r.Read(&info.offset, "tensor offset"));
    if (info.offset % alignment != 0) {
      return InvalidArgumentError(name + ": tensor '" + info.name + "' offset " +
                                  std::to_string(info.offset) + " is not aligned to " +
                                  std::to_string(alignment));
    }
  }
  const uint64_t data_start = (r.offset() + alignment - 1) / alignment * alignment;
  if (data_start > size) return r.Error("data section starts beyond the end of the file");
  const uint64_t data_size = size - data_start;
  file->data_start_ = data_start;
  // Tensors must not share bytes (as safetensors files are checked too): sorted by offset,
  // each non-empty one ends where the next begins or before.
  {
    std::vector<const Info*> by_offset;
    by_offset.reserve(infos.size());
    for (const Info& info : infos) {
      if (info.bytes > 0) by_offset.push_back(&info);
    }
    std::sort(by_offset.begin(), by_offset.end(),
              [](const Info* a, const Info* b) { return a->offset < b->offset; });
    for (size_t k = 1; k < by_offset.size(); ++k) {
      const Info& prev = *by_offset[k - 1];
      if (prev.bytes > by_offset[k]->offset - prev.offset) {
        return InvalidArgumentError(name + ": tensors '" + prev.name + "' and '" +
                                    by_offset[k]->name + "' overlap in the data section");
      }
    }
  }
  for (Info& info : infos) {
    if (info.offset > data_size || info.bytes > data_size - info.offset) {
      return DataLossError(name + ": tensor '" + info.name + "' (" + std::to_string(info.bytes) +
                           " bytes at data offset " + std::to_string(info.offset) +
                           ") extends beyond the end of the file; truncated?");
    }
    TensorView v;
    v.name = std::move(info.name);
    v.dtype = info.type;
    v.shape = std::move(info.shape);
    v.data = data + data_start + info.offset;
    v.nbytes = info.bytes;
    v.file = name;
    v.file_offset = data_start + info.offset;
    file->tensors_.push_back(std::move(v));
  }
  return file;
}

void File::DropMetadata() {
  std::map<std::string, Value>().swap(metadata_);
  if (file_ != nullptr) file_->ReleasePages(0, data_start_);
}

void File::ReleasePagesAround(const uint8_t* p, uint64_t n, uint64_t granule) const {
  if (file_ == nullptr || p < file_->data() || p > file_->data() + file_->size()) return;
  const uint64_t offset = static_cast<uint64_t>(p - file_->data());
  const uint64_t begin = offset / granule * granule;
  const uint64_t end =
      std::min<uint64_t>(file_->size(), (offset + n + granule - 1) / granule * granule);
  file_->ReleasePages(begin, end - begin);
}

const Value* File::Find(std::string_view key) const {
  auto it = metadata_.find(std::string(key));
  return it == metadata_.end() ? nullptr : &it->second;
}

void Writer::Set(const std::string& key, Value value) {
  for (auto& kv : metadata_) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

void Writer::AddTensor(const std::string& name, DType type, std::vector<int64_t> shape) {
  tensors_.push_back({name, type, std::move(shape)});
}

namespace {

class Out {
 public:
  explicit Out(std::FILE* f) : f_(f) {}
  template <class T>
  void Put(T v) {
    Bytes(&v, sizeof(T));
  }
  void Str(const std::string& s) {
    Put<uint64_t>(s.size());
    Bytes(s.data(), s.size());
  }
  void Bytes(const void* p, size_t n) {
    if (ok_ && n > 0 && std::fwrite(p, 1, n, f_) != n) ok_ = false;
    offset_ += n;
  }
  void Pad(uint64_t alignment) {
    static const uint8_t zeros[64] = {};
    while (offset_ % alignment != 0) {
      Bytes(zeros, std::min<uint64_t>(64, alignment - offset_ % alignment));
    }
  }
  bool ok() const { return ok_; }
  uint64_t offset() const { return offset_; }

 private:
  std::FILE* f_;
  bool ok_ = true;
  uint64_t offset_ = 0;
};

void PutValue(Out* o, const Value& v) {
  switch (v.type) {
    case ValueType::kUint8:
      o->Put<uint8_t>(static_cast<uint8_t>(v.i));
      break;
    case ValueType::kInt8:
      o->Put<int8_t>(static_cast<int8_t>(v.i));
      break;
    case ValueType::kUint16:
      o->Put<uint16_t>(static_cast<uint16_t>(v.i));
      break;
    case ValueType::kInt16:
      o->Put<int16_t>(static_cast<int16_t>(v.i));
      break;
    case ValueType::kUint32:
      o->Put<uint32_t>(static_cast<uint32_t>(v.i));
      break;
    case ValueType::kInt32:
      o->Put<int32_t>(static_cast<int32_t>(v.i));
      break;
    case ValueType::kUint64:
      o->Put<uint64_t>(static_cast<uint64_t>(v.i));
      break;
    case ValueType::kInt64:
      o->Put<int64_t>(v.i);
      break;
    case ValueType::kBool:
      o->Put<uint8_t>(v.i ? 1 : 0);
      break;
    case ValueType::kFloat32:
      o->Put<float>(static_cast<float>(v.f));
      break;
    case ValueType::kFloat64:
      o->Put<double>(v.f);
      break;
    case ValueType::kString:
      o->Str(v.s);
      break;
    case ValueType::kArray:
      o->Put<uint32_t>(static_cast<uint32_t>(v.element_type));
      o->Put<uint64_t>(v.array.size());
      for (const Value& e : v.array) PutValue(o, e);
      break;
  }
}

}  // namespace

Status Writer::Write(const std::string& path, const Producer& produce) const {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return InvalidArgumentError(path + ": cannot create file");
  Out o(f);
  o.Put<uint32_t>(kMagic);
  o.Put<uint32_t>(3);
  o.Put<uint64_t>(tensors_.size());
  o.Put<uint64_t>(metadata_.size());
  for (const auto& [key, value] : metadata_) {
    o.Str(key);
    o.Put<uint32_t>(static_cast<uint32_t>(value.type));
    PutValue(&o, value);
  }
  uint64_t offset = 0;
  std::vector<uint64_t> sizes;
  for (const Tensor& t : tensors_) {
    GgmlType gt;
    if (!DTypeToGgmlType(t.type, &gt)) {
      std::fclose(f);
      return InvalidArgumentError(path + ": tensor '" + t.name + "' has no GGUF type");
    }
    o.Str(t.name);
    o.Put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    uint64_t numel = 1;
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) {
      o.Put<uint64_t>(static_cast<uint64_t>(*it));
      numel *= static_cast<uint64_t>(*it);
    }
    o.Put<uint32_t>(static_cast<uint32_t>(gt));
    o.Put<uint64_t>(offset);
    const uint64_t bytes = numel / BlockElements(t.type) * BlockBytes(t.type);
    sizes.push_back(bytes);
    offset += (bytes + kDefaultAlignment - 1) / kDefaultAlignment * kDefaultAlignment;
  }
  o.Pad(kDefaultAlignment);
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    bytes.clear();
    Status s = produce(i, &bytes);
    if (s.ok() && bytes.size() != sizes[i]) {
      s = InternalError("tensor '" + tensors_[i].name + "' produced " +
                        std::to_string(bytes.size()) + " bytes, expected " +
                        std::to_string(sizes[i]));
    }
    if (!s.ok()) {
      std::fclose(f);
      std::remove(path.c_str());
      return s;
    }
    o.Bytes(bytes.data(), bytes.size());
    o.Pad(kDefaultAlignment);
  }
  const bool closed = std::fclose(f) == 0;
  if (!o.ok() || !closed) {
    std::remove(path.c_str());
    return ResourceExhaustedError(path + ": write failed (disk full?)");
  }
  return OkStatus();
}

}  // namespace gemma4::gguf
