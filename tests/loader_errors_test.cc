// Bad checkpoints must fail with a clear, non-OK Status that names the problem and the file or
// tensor, never crash. Corrupted checkpoints are built in a temporary directory from the tiny
// fixtures; raw safetensors layouts are also parsed from exact-size heap buffers so that
// AddressSanitizer catches any read past the end.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/json.h"
#include "child_process.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "gemma4/status.h"
#include "gemma4/tokenizer.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/model.h"
#include "vision/image_preprocess.h"
#include "vision/vision_encoder.h"

namespace gemma4 {
namespace {

namespace fs = std::filesystem;

const std::string kFixtures = std::string(GEMMA4_FIXTURES_DIR) + "/models";
// Single-file, float32 text-only checkpoint.
const std::string kTiny31bText = kFixtures + "/tiny-31b/gemma4_text";
// Sharded multimodal checkpoint (10 shards + index).
const std::string kTinyE2bSharded = kFixtures + "/tiny-e2b/gemma4";
const std::string kQProj3 = "model.layers.3.self_attn.q_proj.weight";

// ---------------------------------------------------------------------------------------------
// Helpers

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/gemma4_loader_test_XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    EXPECT_NE(p, nullptr) << std::strerror(errno);
    if (p != nullptr) path_ = p;
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

// A safetensors file: 8-byte little-endian header length, the header, the data.
std::string MakeSafetensors(std::string_view header, std::string_view data = "") {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += header;
  out += data;
  return out;
}

// Raw length prefix without a matching header, for lying headers.
std::string LengthPrefix(uint64_t n) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out;
}

// Parses `bytes` from an exact-size heap copy so out-of-bounds reads trip ASan.
StatusOr<std::vector<TensorView>> Parse(std::string_view bytes,
                                        const std::string& name = "bad.safetensors") {
  std::vector<uint8_t> copy(bytes.begin(), bytes.end());
  auto result = ParseSafetensors(copy.data(), copy.size(), name);
  // Views point into `copy`; drop them before it goes away.
  if (result.ok()) {
    for (const TensorView& t : *result) {
      EXPECT_GE(t.data, copy.data());
      EXPECT_LE(t.data + t.nbytes, copy.data() + copy.size());
    }
  }
  return result;
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// Checks code and that the message contains each of `parts`.
#define EXPECT_STATUS(status_expr, expected_code, ...)                                \
  do {                                                                                \
    const ::gemma4::Status s_ = (status_expr);                                        \
    EXPECT_EQ(s_.code(), expected_code) << s_.ToString();                             \
    for (const std::string& part : std::initializer_list<std::string>{__VA_ARGS__}) { \
      EXPECT_TRUE(Contains(s_.message(), part))                                       \
          << "missing '" << part << "' in: " << s_.ToString();                        \
    }                                                                                 \
  } while (0)

struct SafetensorsParts {
  json::Value header;
  std::string data;
};

SafetensorsParts Split(const std::string& file) {
  SafetensorsParts parts;
  EXPECT_GE(file.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(file[i]);
  auto header = json::Parse(std::string_view(file).substr(8, n));
  EXPECT_TRUE(header.ok()) << header.status().ToString();
  if (header.ok()) parts.header = std::move(header).value();
  parts.data = file.substr(8 + n);
  return parts;
}

json::Value* Member(json::Value& obj, std::string_view key) {
  for (auto& [k, v] : obj.mutable_object()) {
    if (k == key) return &v;
  }
  return nullptr;
}

void EraseMember(json::Value& obj, std::string_view key) {
  auto& members = obj.mutable_object();
  for (auto it = members.begin(); it != members.end(); ++it) {
    if (it->first == key) {
      members.erase(it);
      return;
    }
  }
  ADD_FAILURE() << "no member " << key;
}

void SetMember(json::Value& obj, std::string_view key, json::Value value) {
  if (json::Value* v = Member(obj, key)) {
    *v = std::move(value);
  } else {
    obj.mutable_object().emplace_back(std::string(key), std::move(value));
  }
}

json::Value IntArray(std::vector<int64_t> values) {
  json::Value::Array a;
  for (int64_t v : values) a.push_back(json::Value::Integer(v));
  return json::Value::MakeArray(std::move(a));
}

// Rewrites a safetensors file with `edit` applied to its header; the data stays.
void EditSafetensorsHeader(const std::string& path, const std::function<void(json::Value&)>& edit) {
  SafetensorsParts parts = Split(ReadFile(path));
  edit(parts.header);
  WriteFile(path, MakeSafetensors(parts.header.Serialize(), parts.data));
}

void EditJsonFile(const std::string& path, const std::function<void(json::Value&)>& edit) {
  auto v = json::Parse(ReadFile(path), path);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  edit(*v);
  WriteFile(path, v->Serialize());
}

// A copy of a fixture checkpoint directory in a fresh temporary directory.
class CheckpointCopy {
 public:
  explicit CheckpointCopy(const std::string& fixture) {
    dir_ = tmp_.path() + "/ckpt";
    fs::copy(fixture, dir_, fs::copy_options::recursive);
  }
  const std::string& dir() const { return dir_; }
  std::string file(std::string_view name) const { return dir_ + "/" + std::string(name); }

 private:
  TempDir tmp_;
  std::string dir_;
};

Status LoadStatus(const std::string& path) {
  auto model = LoadedModel::Load(path);
  return model.ok() ? OkStatus() : model.status();
}

// ---------------------------------------------------------------------------------------------
// ParseSafetensors on raw bytes

TEST(LoaderSafetensorsTest, ValidFileParses) {
  std::string data(24 + 4 + 6, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i);
  const std::string file =
      MakeSafetensors(R"({"__metadata__":{"format":"pt"},)"
                      R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},)"
                      R"("c":{"dtype":"U8","shape":[3,2],"data_offsets":[28,34]},)"
                      R"("empty":{"dtype":"F16","shape":[0,5],"data_offsets":[34,34]},)"
                      R"("scalar_like":{"dtype":"I8","shape":[],"data_offsets":[33,34]}})",
                      data);
  // "scalar_like" overlaps "c"; drop it for the valid case.
  auto bad = Parse(file);
  EXPECT_STATUS(bad.status(), StatusCode::kInvalidArgument, "overlap", "'c'", "'scalar_like'");

  const std::string good =
      MakeSafetensors(R"({"__metadata__":{"format":"pt"},)"
                      R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},)"
                      R"("c":{"dtype":"U8","shape":[3,2],"data_offsets":[28,34]},)"
                      R"("empty":{"dtype":"F16","shape":[0,5],"data_offsets":[34,34]}})",
                      data);
  std::vector<uint8_t> bytes(good.begin(), good.end());
  auto tensors = ParseSafetensors(bytes.data(), bytes.size(), "good.safetensors");
  ASSERT_TRUE(tensors.ok()) << tensors.status().ToString();
  ASSERT_EQ(tensors->size(), 4u);
  const TensorView& a = (*tensors)[0];
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.dtype, DType::kF32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.nbytes, 24u);
  EXPECT_EQ(a.file, "good.safetensors");
  const size_t data_start = good.size() - data.size();
  EXPECT_EQ(a.data, bytes.data() + data_start);
  EXPECT_EQ(a.file_offset, data_start);
  EXPECT_EQ((*tensors)[1].dtype, DType::kBF16);
  EXPECT_EQ((*tensors)[1].data[0], 24);
  EXPECT_EQ((*tensors)[2].dtype, DType::kU8);
  EXPECT_EQ((*tensors)[3].nbytes, 0u);

  // An empty header object is a valid (empty) file.
  auto empty = Parse(MakeSafetensors("{}"));
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(empty->empty());
}

// A header's metadata costs memory in proportion to its values, not its bytes ("0," is two
// bytes, a parsed value 40): past kMaxSafetensorsHeaderValues the header is refused while it is
// parsed, before it costs gigabytes; a header just under the bound still loads.
TEST(LoaderSafetensorsTest, HeaderValueCountIsBounded) {
  auto header_with = [](size_t metadata_values) {
    std::string header = R"({"__metadata__":{"junk":[)";
    header.reserve(header.size() + 2 * metadata_values + 64);
    for (size_t i = 0; i < metadata_values; ++i) header += i == 0 ? "0" : ",0";
    header += R"(]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    return MakeSafetensors(header, std::string(4, '\0'));
  };
  // Values besides the array's elements: the root, __metadata__, junk, and tensor "a" (its
  // object, dtype, shape + 1 element, offsets + 2 elements).
  const size_t other_values = 10;
  auto fits = Parse(header_with(kMaxSafetensorsHeaderValues - other_values));
  ASSERT_TRUE(fits.ok()) << fits.status().ToString();
  EXPECT_EQ(fits->size(), 1u);
  EXPECT_STATUS(Parse(header_with(kMaxSafetensorsHeaderValues - other_values + 1)).status(),
                StatusCode::kInvalidArgument, "bad.safetensors header", "more values");
}

TEST(LoaderSafetensorsTest, ShorterThanEightBytes) {
  for (size_t n = 0; n < 8; ++n) {
    auto r = Parse(std::string(n, '\x01'));
    EXPECT_STATUS(r.status(), StatusCode::kDataLoss, "bad.safetensors", "truncated safetensors",
                  "(" + std::to_string(n) + " bytes");
  }
}

TEST(LoaderSafetensorsTest, HeaderLengthBeyondFile) {
  EXPECT_STATUS(Parse(LengthPrefix(100) + "{}").status(), StatusCode::kDataLoss, "bad.safetensors",
                "header length 100 extends beyond the file (10 bytes)");
  EXPECT_STATUS(Parse(LengthPrefix(1)).status(), StatusCode::kDataLoss, "extends beyond");
  // Lengths near 2^64 must not wrap around.
  EXPECT_STATUS(Parse(LengthPrefix(~uint64_t{0}) + "{}").status(), StatusCode::kDataLoss,
                "extends beyond");
  EXPECT_STATUS(Parse(LengthPrefix(~uint64_t{0} - 7) + "{}").status(), StatusCode::kDataLoss,
                "extends beyond");
}

TEST(LoaderSafetensorsTest, MalformedHeaderJson) {
  EXPECT_STATUS(Parse(MakeSafetensors(R"({"a": {"dtype": "F32",)")).status(),
                StatusCode::kInvalidArgument, "bad.safetensors header: line 1, column 23",
                "expected a string object key");
  EXPECT_STATUS(Parse(MakeSafetensors("")).status(), StatusCode::kInvalidArgument,
                "bad.safetensors header", "expected a value");
  EXPECT_STATUS(Parse(MakeSafetensors(std::string("{}\0\0\0", 5))).status(),
                StatusCode::kInvalidArgument, "bad.safetensors header", "trailing characters");
  EXPECT_STATUS(Parse(MakeSafetensors(R"({"a":1,"a":2})")).status(), StatusCode::kInvalidArgument,
                "duplicate object key \"a\"");
}

TEST(LoaderSafetensorsTest, HeaderNotAnObject) {
  for (const char* header : {"[]", "null", "1", "\"x\"", "true"}) {
    EXPECT_STATUS(Parse(MakeSafetensors(header)).status(), StatusCode::kInvalidArgument,
                  "bad.safetensors: header is not a JSON object");
  }
}

TEST(LoaderSafetensorsTest, MalformedEntries) {
  const std::string data(16, '\0');
  struct Case {
    const char* header;
    const char* message;
  } cases[] = {
      {R"({"t":[]})", "tensor 't': entry is not an object"},
      {R"({"t":{"shape":[4],"data_offsets":[0,16]}})", "tensor 't': missing or non-string 'dtype'"},
      {R"({"t":{"dtype":7,"shape":[4],"data_offsets":[0,16]}})", "non-string 'dtype'"},
      {R"({"t":{"dtype":"F32","data_offsets":[0,16]}})", "missing or non-array 'shape'"},
      {R"({"t":{"dtype":"F32","shape":4,"data_offsets":[0,16]}})", "non-array 'shape'"},
      {R"({"t":{"dtype":"F32","shape":[4]}})", "'data_offsets' must be an array of two integers"},
      {R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0]}})", "'data_offsets' must be"},
      {R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,8,16]}})", "'data_offsets' must be"},
      {R"({"t":{"dtype":"F32","shape":[4],"data_offsets":"0,16"}})", "'data_offsets' must be"},
      {R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[-16,0]}})",
       "invalid data_offsets [-16,0]"},
      {R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}})", "invalid data_offsets [16,0]"},
      {R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0.5,16]}})", "invalid data_offsets"},
      {R"({"t":{"dtype":"F32","shape":[4],"data_offsets":["0",16]}})", "invalid data_offsets"},
      {R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,1e30]}})", "invalid data_offsets"},
      {R"({"t":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})",
       "shape entries must be non-negative integers"},
      {R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,16]}})",
       "shape entries must be non-negative integers"},
      {R"({"t":{"dtype":"F32","shape":["4"],"data_offsets":[0,16]}})",
       "shape entries must be non-negative integers"},
      {R"({"t":{"dtype":"F32","shape":[1099511627777],"data_offsets":[0,16]}})", "is too large"},
      {R"({"t":{"dtype":"F32","shape":[1048576,1048576,1048576],"data_offsets":[0,16]}})",
       "shape [1048576,1048576,1048576] is too large"},
      {R"({"t":{"dtype":"F32","shape":[9223372036854775807],"data_offsets":[0,16]}})",
       "is too large"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header);
    EXPECT_STATUS(Parse(MakeSafetensors(c.header, data)).status(), StatusCode::kInvalidArgument,
                  "bad.safetensors: tensor 't'", c.message);
  }
}

TEST(LoaderSafetensorsTest, UnknownDtype) {
  for (const char* dtype : {"Q4", "f32", "", "F32 ", "FLOAT"}) {
    const std::string header =
        std::string(R"({"w":{"dtype":")") + dtype + R"(","shape":[4],"data_offsets":[0,16]}})";
    EXPECT_STATUS(Parse(MakeSafetensors(header, std::string(16, '\0'))).status(),
                  StatusCode::kInvalidArgument, "bad.safetensors: tensor 'w'",
                  std::string("unknown dtype '") + dtype + "'");
  }
}

TEST(LoaderSafetensorsTest, ByteCountMismatch) {
  EXPECT_STATUS(
      Parse(MakeSafetensors(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})",
                            std::string(24, '\0')))
          .status(),
      StatusCode::kInvalidArgument, "tensor 'w'",
      "20 data bytes for F32 shape [2, 3], expected 24");
  EXPECT_STATUS(Parse(MakeSafetensors(R"({"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,16]}})",
                                      std::string(16, '\0')))
                    .status(),
                StatusCode::kInvalidArgument, "16 data bytes for BF16 shape [4], expected 8");
  EXPECT_STATUS(Parse(MakeSafetensors(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[0,4]}})",
                                      std::string(4, '\0')))
                    .status(),
                StatusCode::kInvalidArgument, "4 data bytes", "expected 0");
}

TEST(LoaderSafetensorsTest, DataOffsetsPastTheEnd) {
  EXPECT_STATUS(Parse(MakeSafetensors(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                                      std::string(15, '\0')))
                    .status(),
                StatusCode::kDataLoss, "bad.safetensors: tensor 'w'",
                "data_offsets [0,16] extend beyond the data section (15 bytes; file truncated?)");
  // Offsets far beyond the file, including values that would overflow if added.
  EXPECT_STATUS(
      Parse(
          MakeSafetensors(
              R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[9223372036854775806,9223372036854775807]}})",
              std::string(4, '\0')))
          .status(),
      StatusCode::kDataLoss, "extend beyond the data section");
}

TEST(LoaderSafetensorsTest, OverlappingTensors) {
  const std::string data(32, '\0');
  EXPECT_STATUS(Parse(MakeSafetensors(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                      R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                                      data))
                    .status(),
                StatusCode::kInvalidArgument,
                "bad.safetensors: data of tensors 'a' and 'b' overlap");
  // Identical ranges.
  EXPECT_STATUS(Parse(MakeSafetensors(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                      R"("b":{"dtype":"I32","shape":[4],"data_offsets":[0,16]}})",
                                      data))
                    .status(),
                StatusCode::kInvalidArgument, "overlap");
  // One range inside another, listed in reverse order.
  EXPECT_STATUS(
      Parse(MakeSafetensors(R"({"inner":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},)"
                            R"("outer":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})",
                            data))
          .status(),
      StatusCode::kInvalidArgument, "'outer' and 'inner' overlap");
  // An empty tensor sitting between two overlapping ones must not hide the overlap.
  EXPECT_STATUS(Parse(MakeSafetensors(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                      R"("z":{"dtype":"F32","shape":[0],"data_offsets":[10,10]},)"
                                      R"("b":{"dtype":"F32","shape":[4],"data_offsets":[12,28]}})",
                                      data))
                    .status(),
                StatusCode::kInvalidArgument, "'a' and 'b' overlap");
  // A long tensor overlapping a later one past a short one in between.
  EXPECT_STATUS(Parse(MakeSafetensors(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},)"
                                      R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                                      R"("c":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}})",
                                      data))
                    .status(),
                StatusCode::kInvalidArgument, "overlap");
  // Adjacent and empty tensors are fine.
  auto ok = Parse(MakeSafetensors(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                  R"("e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},)"
                                  R"("f":{"dtype":"F32","shape":[0],"data_offsets":[16,16]},)"
                                  R"("b":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}})",
                                  data));
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();
}

TEST(LoaderSafetensorsTest, TruncatedRealFile) {
  const std::string file = ReadFile(kTiny31bText + "/model.safetensors");
  ASSERT_GT(file.size(), 1000u);
  ASSERT_TRUE(Parse(file).ok());
  // Cutting the last bytes loses the end of the last tensor in the data section.
  for (size_t cut : {1, 4, 100, 5000}) {
    auto r = Parse(file.substr(0, file.size() - cut), "cut.safetensors");
    EXPECT_STATUS(r.status(), StatusCode::kDataLoss, "cut.safetensors: tensor '",
                  "extend beyond the data section", "file truncated?");
  }
  // Cut inside the header.
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(file[i]);
  EXPECT_STATUS(Parse(file.substr(0, 8 + header_len / 2), "cut.safetensors").status(),
                StatusCode::kDataLoss, "cut.safetensors: header length", "extends beyond the file");
}

// Every prefix and many single-byte corruptions of a file give a Status, never a crash or an
// out-of-bounds read.
TEST(LoaderSafetensorsTest, CorruptionSweepNeverCrashes) {
  const std::string small = MakeSafetensors(
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}})",
      std::string(22, '\x7f'));
  ASSERT_TRUE(Parse(small).ok());
  for (size_t n = 0; n <= small.size(); ++n) (void)Parse(small.substr(0, n));
  for (size_t i = 0; i < small.size(); ++i) {
    for (int x : {0x01, 0x20, 0x80, 0xff}) {
      std::string m = small;
      m[i] = static_cast<char>(static_cast<uint8_t>(m[i]) ^ x);
      (void)Parse(m);
    }
  }
  const std::string real = ReadFile(kTiny31bText + "/model.safetensors");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(real[i]);
  for (size_t n = 0; n < 8 + header_len + 64; n += (n < 64 ? 1 : 97)) {
    (void)Parse(real.substr(0, n));
  }
}

// ---------------------------------------------------------------------------------------------
// LoadedModel::Load on whole checkpoints

TEST(LoaderModelTest, AllFixturesLoad) {
  for (const char* variant : {"tiny-e2b", "tiny-e4b", "tiny-26b-a4b", "tiny-31b"}) {
    for (const char* layout : {"gemma4", "gemma4_text"}) {
      const std::string dir = kFixtures + "/" + variant + "/" + layout;
      SCOPED_TRACE(dir);
      auto model = LoadedModel::Load(dir);
      ASSERT_TRUE(model.ok()) << model.status().ToString();
      EXPECT_GT((*model)->num_parameters(), 0);
      EXPECT_EQ((*model)->text_prefix(),
                std::string(layout) == "gemma4" ? "model.language_model." : "model.");
      EXPECT_EQ(static_cast<int>((*model)->weights().layers.size()), (*model)->config().num_layers);
      // Also by file: the weights file itself, or the index of a sharded checkpoint.
      const std::string index = dir + "/model.safetensors.index.json";
      const std::string file = fs::exists(index) ? index : dir + "/model.safetensors";
      auto by_file = LoadedModel::Load(file);
      ASSERT_TRUE(by_file.ok()) << by_file.status().ToString();
      EXPECT_EQ((*by_file)->num_parameters(), (*model)->num_parameters());
    }
  }
}

TEST(LoaderModelTest, NonexistentPath) {
  const std::string path = "/nonexistent/gemma4/checkpoint";
  EXPECT_STATUS(LoadStatus(path), StatusCode::kNotFound, path, "no such file or directory");
  EXPECT_STATUS(LoadStatus(""), StatusCode::kNotFound, "no such file or directory");
}

TEST(LoaderModelTest, DirectoryWithoutWeights) {
  TempDir tmp;
  EXPECT_STATUS(LoadStatus(tmp.path()), StatusCode::kNotFound, tmp.path(),
                "no model.safetensors or model.safetensors.index.json");
  // A config alone is not enough either.
  fs::copy_file(kTiny31bText + "/config.json", tmp.path() + "/config.json");
  EXPECT_STATUS(LoadStatus(tmp.path()), StatusCode::kNotFound, "no model.safetensors");
  // Nor is an unrelated file.
  EXPECT_STATUS(LoadStatus(tmp.path() + "/config.json"), StatusCode::kInvalidArgument,
                "not a checkpoint directory, .safetensors file or safetensors index");
}

TEST(LoaderModelTest, MissingConfig) {
  CheckpointCopy ckpt(kTiny31bText);
  fs::remove(ckpt.file("config.json"));
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kNotFound, ckpt.file("config.json"),
                "cannot open");
}

TEST(LoaderModelTest, WeightsFileShorterThanEightBytes) {
  CheckpointCopy ckpt(kTiny31bText);
  WriteFile(ckpt.file("model.safetensors"), "abc");
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kDataLoss, ckpt.file("model.safetensors"),
                "truncated safetensors file (3 bytes");
  WriteFile(ckpt.file("model.safetensors"), "");
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kDataLoss, ckpt.file("model.safetensors"),
                "(0 bytes");
}

TEST(LoaderModelTest, HeaderLengthBeyondFile) {
  CheckpointCopy ckpt(kTiny31bText);
  WriteFile(ckpt.file("model.safetensors"), LengthPrefix(1 << 20) + "{}");
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kDataLoss, ckpt.file("model.safetensors"),
                "header length 1048576 extends beyond the file (10 bytes)");
}

TEST(LoaderModelTest, MalformedHeader) {
  CheckpointCopy ckpt(kTiny31bText);
  WriteFile(ckpt.file("model.safetensors"), MakeSafetensors("{\"a\":\n tru}"));
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                ckpt.file("model.safetensors") + " header: line 2, column 2");
  WriteFile(ckpt.file("model.safetensors"), MakeSafetensors("[1,2]"));
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                ckpt.file("model.safetensors") + ": header is not a JSON object");
}

TEST(LoaderModelTest, TruncatedWeights) {
  CheckpointCopy ckpt(kTiny31bText);
  const std::string file = ReadFile(ckpt.file("model.safetensors"));
  WriteFile(ckpt.file("model.safetensors"), file.substr(0, file.size() - 10));
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kDataLoss, ckpt.file("model.safetensors"),
                "tensor '", "extend beyond the data section", "file truncated?");
}

TEST(LoaderModelTest, UnknownDtype) {
  CheckpointCopy ckpt(kTiny31bText);
  EditSafetensorsHeader(ckpt.file("model.safetensors"), [](json::Value& h) {
    SetMember(*Member(h, kQProj3), "dtype", json::Value::String("F32X"));
  });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                ckpt.file("model.safetensors") + ": tensor '" + kQProj3 + "'",
                "unknown dtype 'F32X'");
}

TEST(LoaderModelTest, ShapeByteCountMismatch) {
  CheckpointCopy ckpt(kTiny31bText);
  EditSafetensorsHeader(ckpt.file("model.safetensors"), [](json::Value& h) {
    SetMember(*Member(h, kQProj3), "shape", IntArray({64, 57}));
  });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument, kQProj3,
                "14336 data bytes for F32 shape [64, 57], expected 14592");
}

TEST(LoaderModelTest, OverlappingTensors) {
  CheckpointCopy ckpt(kTiny31bText);
  EditSafetensorsHeader(ckpt.file("model.safetensors"), [](json::Value& h) {
    // Point layer 3's k_proj at the data of layer 3's v_proj (same shape and dtype).
    json::Value* v = Member(h, "model.layers.3.self_attn.v_proj.weight");
    json::Value offsets = *Member(*v, "data_offsets");
    SetMember(*Member(h, "model.layers.3.self_attn.k_proj.weight"), "data_offsets", offsets);
  });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                ckpt.file("model.safetensors"), "overlap", "model.layers.3.self_attn.k_proj.weight",
                "model.layers.3.self_attn.v_proj.weight");
}

TEST(LoaderModelTest, MissingTensor) {
  CheckpointCopy ckpt(kTiny31bText);
  EditSafetensorsHeader(ckpt.file("model.safetensors"),
                        [](json::Value& h) { EraseMember(h, kQProj3); });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kNotFound, ckpt.dir(),
                "missing tensor '" + kQProj3 + "' (expected shape [64, 56])");
}

TEST(LoaderModelTest, MissingEmbedding) {
  CheckpointCopy ckpt(kTiny31bText);
  EditSafetensorsHeader(ckpt.file("model.safetensors"),
                        [](json::Value& h) { EraseMember(h, "model.embed_tokens.weight"); });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kNotFound, "missing tensor",
                "embed_tokens.weight");
}

TEST(LoaderModelTest, MisshapenTensor) {
  CheckpointCopy ckpt(kTiny31bText);
  // Swapped dims: the byte count still matches, so only the model check can catch it.
  EditSafetensorsHeader(ckpt.file("model.safetensors"), [](json::Value& h) {
    SetMember(*Member(h, kQProj3), "shape", IntArray({56, 64}));
  });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                ckpt.file("model.safetensors") + ": tensor '" + kQProj3 + "'",
                "has shape [56, 64], expected [64, 56]");
  // A norm vector given an extra dimension.
  CheckpointCopy ckpt2(kTiny31bText);
  EditSafetensorsHeader(ckpt2.file("model.safetensors"), [](json::Value& h) {
    SetMember(*Member(h, "model.norm.weight"), "shape", IntArray({1, 56}));
  });
  EXPECT_STATUS(LoadStatus(ckpt2.dir()), StatusCode::kInvalidArgument, "'model.norm.weight'",
                "has shape [1, 56], expected [56]");
}

TEST(LoaderModelTest, UnsupportedWeightDtype) {
  CheckpointCopy ckpt(kTiny31bText);
  // I32 has the same element size as F32, so the file itself is consistent.
  EditSafetensorsHeader(ckpt.file("model.safetensors"), [](json::Value& h) {
    SetMember(*Member(h, kQProj3), "dtype", json::Value::String("I32"));
  });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kUnimplemented,
                ckpt.file("model.safetensors") + ": tensor '" + kQProj3 + "'",
                "has dtype I32; weights must be F32, F16");
}

TEST(LoaderModelTest, MalformedConfig) {
  CheckpointCopy ckpt(kTiny31bText);
  WriteFile(ckpt.file("config.json"),
            "{\n  \"model_type\": \"gemma4_text\",\n  \"vocab_size\" 512\n}");
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                ckpt.file("config.json") + ": line 3, column 16: expected ':' after object key");
  WriteFile(ckpt.file("config.json"), "");
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument, ckpt.file("config.json"),
                "unexpected end of input");
  WriteFile(ckpt.file("config.json"), "[]");
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                ckpt.file("config.json") + ": not a JSON object");
}

TEST(LoaderModelTest, ConfigModelTypeNotGemma4) {
  CheckpointCopy ckpt(kTiny31bText);
  EditJsonFile(ckpt.file("config.json"),
               [](json::Value& c) { SetMember(c, "model_type", json::Value::String("llama")); });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument, ckpt.file("config.json"),
                "model_type 'llama' is not a Gemma 4 model");
  EditJsonFile(ckpt.file("config.json"), [](json::Value& c) { EraseMember(c, "model_type"); });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                "model_type '' is not a Gemma 4 model");
}

TEST(LoaderModelTest, ConfigMissingOrBadField) {
  CheckpointCopy ckpt(kTiny31bText);
  EditJsonFile(ckpt.file("config.json"), [](json::Value& c) { EraseMember(c, "hidden_size"); });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument, ckpt.file("config.json"),
                "missing required field 'hidden_size'");
  EditJsonFile(ckpt.file("config.json"),
               [](json::Value& c) { SetMember(c, "hidden_size", json::Value::String("56")); });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                "field 'hidden_size' must be an integer, got \"56\"");
  EditJsonFile(ckpt.file("config.json"),
               [](json::Value& c) { SetMember(c, "hidden_size", json::Value::Integer(-1)); });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                "field 'hidden_size' = -1 is out of range");
  EditJsonFile(ckpt.file("config.json"), [](json::Value& c) {
    SetMember(c, "hidden_size", json::Value::Integer(int64_t{1} << 40));
  });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument, "is out of range");
}

TEST(LoaderModelTest, ConfigDisagreesWithWeights) {
  CheckpointCopy ckpt(kTiny31bText);
  EditJsonFile(ckpt.file("config.json"),
               [](json::Value& c) { SetMember(c, "hidden_size", json::Value::Integer(64)); });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                "tensor 'model.embed_tokens.weight' has shape [512, 56], expected [512, 64]");
  EditJsonFile(ckpt.file("config.json"), [](json::Value& c) {
    SetMember(c, "hidden_size", json::Value::Integer(56));
    SetMember(c, "num_hidden_layers", json::Value::Integer(8));
    Member(c, "layer_types")->mutable_array().push_back(json::Value::String("full_attention"));
  });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kNotFound, "missing tensor 'model.layers.7.");
}

TEST(LoaderModelTest, HeadsNotDivisibleByKvHeads) {
  CheckpointCopy ckpt(kTiny31bText);
  EditJsonFile(ckpt.file("config.json"), [](json::Value& c) {
    SetMember(c, "num_attention_heads", json::Value::Integer(3));
  });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument, ckpt.file("config.json"),
                "layer 0: num_attention_heads 3 is not a multiple of its KV heads 2");
}

TEST(LoaderModelTest, LayerTypesWrongLength) {
  CheckpointCopy ckpt(kTiny31bText);
  EditJsonFile(ckpt.file("config.json"),
               [](json::Value& c) { Member(c, "layer_types")->mutable_array().pop_back(); });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument, ckpt.file("config.json"),
                "layer_types must list one type per layer (7)");
  EditJsonFile(ckpt.file("config.json"), [](json::Value& c) {
    json::Value::Array& a = Member(c, "layer_types")->mutable_array();
    a.push_back(json::Value::String("full_attention"));
    a[2] = json::Value::String("local_attention");
  });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                "layer_types[2] = 'local_attention' is not sliding_attention or full_attention");
}

TEST(LoaderModelTest, AllLayersKvShared) {
  CheckpointCopy ckpt(kTiny31bText);
  for (int shared : {7, 8, 1000}) {
    EditJsonFile(ckpt.file("config.json"), [shared](json::Value& c) {
      SetMember(c, "num_kv_shared_layers", json::Value::Integer(shared));
    });
    EXPECT_STATUS(
        LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument, ckpt.file("config.json"),
        "num_kv_shared_layers " + std::to_string(shared) + " leaves no layer to compute KV");
  }
}

TEST(LoaderModelTest, MalformedGenerationConfig) {
  CheckpointCopy ckpt(kTiny31bText);
  WriteFile(ckpt.file("generation_config.json"), "{\"eos_token_id\": [1,}");
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                ckpt.file("generation_config.json") + ": line 1, column 21");
  WriteFile(ckpt.file("generation_config.json"), "{\"eos_token_id\": [1, -5]}");
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument, "generation_config.json",
                "eos_token_id", "non-negative integers");
}

// Values that would make the per-layer tables enormous (or overflow) are rejected up front.
TEST(LoaderConfigTest, HostileSizesRejectedQuickly) {
  auto base = json::Parse(ReadFile(kTiny31bText + "/config.json"));
  ASSERT_TRUE(base.ok());
  struct Case {
    const char* key;
    int64_t value;
    const char* message;
  } cases[] = {
      {"num_hidden_layers", int64_t{1} << 30, "'num_hidden_layers' = 1073741824 is out of range"},
      {"num_hidden_layers", 1025, "'num_hidden_layers' = 1025 is out of range [1, 1024]"},
      {"head_dim", int64_t{1} << 30, "'head_dim' = 1073741824 is out of range [2, 16384]"},
      {"intermediate_size", int64_t{1} << 30, "'intermediate_size' = 1073741824 is out of range"},
      {"vocab_size", int64_t{1} << 31, "'vocab_size' = 2147483648 is out of range"},
      {"num_attention_heads", 0, "'num_attention_heads' = 0 is out of range"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key);
    json::Value config = *base;
    SetMember(config, c.key, json::Value::Integer(c.value));
    if (std::string(c.key) == "num_hidden_layers") EraseMember(config, "layer_types");
    auto parsed = ParseModelConfig(config, "config.json");
    EXPECT_STATUS(parsed.status(), StatusCode::kInvalidArgument, "config.json: ", c.message);
  }
  // A per-layer override is bounded the same way.
  json::Value config = *base;
  SetMember(*Member(*Member(config, "per_layer_config"), "5"), "head_dim",
            json::Value::Integer(int64_t{1} << 20));
  EXPECT_STATUS(ParseModelConfig(config, "config.json").status(), StatusCode::kInvalidArgument,
                "per_layer_config['5']: field 'head_dim' = 1048576 is out of range");
  // The largest double-wide MLP still fits in an int.
  config = *base;
  SetMember(config, "intermediate_size", json::Value::Integer(int64_t{1} << 29));
  SetMember(config, "use_double_wide_mlp", json::Value::Bool(true));
  SetMember(config, "num_kv_shared_layers", json::Value::Integer(1));
  auto parsed = ParseModelConfig(config, "config.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->layers[6].mlp_width, 1 << 30);
  EXPECT_EQ(parsed->layers[0].mlp_width, 1 << 29);
}

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints

std::string ShardOf(const std::string& index_path, const std::string& tensor) {
  auto index = json::Parse(ReadFile(index_path));
  EXPECT_TRUE(index.ok());
  const json::Value* f = index->Find("weight_map")->Find(tensor);
  EXPECT_NE(f, nullptr) << tensor;
  return f == nullptr ? "" : f->as_string();
}

const std::string kShardedQProj3 = "model.language_model.layers.3.self_attn.q_proj.weight";

TEST(LoaderShardedTest, IndexNamesMissingShard) {
  CheckpointCopy ckpt(kTinyE2bSharded);
  const std::string shard = ShardOf(ckpt.file("model.safetensors.index.json"), kShardedQProj3);
  ASSERT_FALSE(shard.empty());
  fs::remove(ckpt.file(shard));
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kNotFound, ckpt.file(shard), "cannot open",
                "No such file or directory");
}

TEST(LoaderShardedTest, ShardNameWithPath) {
  for (const char* bad : {"../model-00001-of-00010.safetensors",
                          "sub/model-00001-of-00010.safetensors", "/etc/passwd", "..", ".", ""}) {
    SCOPED_TRACE(bad);
    CheckpointCopy ckpt(kTinyE2bSharded);
    EditJsonFile(ckpt.file("model.safetensors.index.json"), [bad](json::Value& index) {
      SetMember(*Member(index, "weight_map"), kShardedQProj3, json::Value::String(bad));
    });
    EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                  ckpt.file("model.safetensors.index.json"),
                  "weight_map entry for '" + kShardedQProj3 + "' is not a plain file name");
  }
  CheckpointCopy ckpt(kTinyE2bSharded);
  EditJsonFile(ckpt.file("model.safetensors.index.json"), [](json::Value& index) {
    SetMember(*Member(index, "weight_map"), kShardedQProj3, json::Value::Integer(3));
  });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument, "is not a plain file name");
}

TEST(LoaderShardedTest, ShardDoesNotContainTensor) {
  CheckpointCopy ckpt(kTinyE2bSharded);
  const std::string index_path = ckpt.file("model.safetensors.index.json");
  const std::string shard = ShardOf(index_path, kShardedQProj3);
  const std::string other = ShardOf(index_path, "model.language_model.embed_tokens.weight");
  ASSERT_NE(shard, other);
  EditJsonFile(index_path, [&other](json::Value& index) {
    SetMember(*Member(index, "weight_map"), kShardedQProj3, json::Value::String(other));
  });
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kDataLoss, index_path,
                "tensor '" + kShardedQProj3 + "' is listed in shard '" + other +
                    "' but that shard does not contain it");

  // A name in the index that no shard has at all.
  CheckpointCopy ckpt2(kTinyE2bSharded);
  EditJsonFile(ckpt2.file("model.safetensors.index.json"), [&other](json::Value& index) {
    SetMember(*Member(index, "weight_map"), "model.ghost.weight", json::Value::String(other));
  });
  EXPECT_STATUS(LoadStatus(ckpt2.dir()), StatusCode::kDataLoss,
                "tensor 'model.ghost.weight' is listed in shard", "does not contain it");
}

TEST(LoaderShardedTest, TensorInTwoShards) {
  CheckpointCopy ckpt(kTinyE2bSharded);
  const std::string index_path = ckpt.file("model.safetensors.index.json");
  const std::string shard = ShardOf(index_path, kShardedQProj3);
  const std::string other = ShardOf(index_path, "model.language_model.embed_tokens.weight");
  // Rename a tensor of `other` to the name that `shard` already holds.
  std::string victim;
  EditSafetensorsHeader(ckpt.file(other), [&victim](json::Value& h) {
    for (auto& [name, entry] : h.mutable_object()) {
      if (name != "__metadata__" && name != "model.language_model.embed_tokens.weight") {
        victim = name;
        name = kShardedQProj3;
        break;
      }
    }
  });
  ASSERT_FALSE(victim.empty());
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                "tensor '" + kShardedQProj3 + "' also appears in another weight file");
}

TEST(LoaderShardedTest, MalformedIndex) {
  CheckpointCopy ckpt(kTinyE2bSharded);
  const std::string index_path = ckpt.file("model.safetensors.index.json");
  WriteFile(index_path, "{\"weight_map\": {\"a\": \"b\",}}");
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                index_path + ": line 1, column 26: expected a string object key");
  WriteFile(index_path, "{\"metadata\": {}}");
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument,
                index_path + ": missing 'weight_map' object");
  WriteFile(index_path, "{\"weight_map\": []}");
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument, "missing 'weight_map'");
  WriteFile(index_path, "[]");
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument, "missing 'weight_map'");
}

TEST(LoaderShardedTest, CorruptShard) {
  CheckpointCopy ckpt(kTinyE2bSharded);
  const std::string shard = ShardOf(ckpt.file("model.safetensors.index.json"), kShardedQProj3);
  const std::string bytes = ReadFile(ckpt.file(shard));
  WriteFile(ckpt.file(shard), bytes.substr(0, bytes.size() - 3));
  EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kDataLoss, ckpt.file(shard),
                "extend beyond the data section");
}

// ---------------------------------------------------------------------------------------------
// Special files: only regular files are read (a FIFO blocked the load forever, /dev/zero was
// read until memory ran out). Each load runs in a child with a time limit, so a hang fails.

void ExpectRefusedInChild(const std::string& load_path, const std::string& bad_file) {
  const testing::ChildResult result = testing::RunInChild(
      [&] {
        const Status status = LoadStatus(load_path);
        std::fprintf(stderr, "%s\n", status.ToString().c_str());
        return !status.ok() && Contains(status.message(), bad_file) &&
                       Contains(status.message(), "not a regular file")
                   ? 0
                   : 1;
      },
      /*timeout_seconds=*/20);
  EXPECT_TRUE(result.exited && result.exit_code == 0) << bad_file << ": " << result.Describe();
}

TEST(LoaderSpecialFilesTest, ConfigFifoDevZeroOrDirectoryIsRefused) {
  CheckpointCopy ckpt(kTiny31bText);
  const std::string config = ckpt.file("config.json");
  fs::remove(config);
  ASSERT_EQ(::mkfifo(config.c_str(), 0600), 0) << std::strerror(errno);
  ExpectRefusedInChild(ckpt.dir(), config);
  fs::remove(config);
  fs::create_symlink("/dev/zero", config);
  ExpectRefusedInChild(ckpt.dir(), config);
  fs::remove(config);
  fs::create_directory(config);
  ExpectRefusedInChild(ckpt.dir(), config);
}

TEST(LoaderSpecialFilesTest, WeightsFifoOrDevZeroIsRefused) {
  CheckpointCopy ckpt(kTiny31bText);
  const std::string weights = ckpt.file("model.safetensors");
  fs::remove(weights);
  ASSERT_EQ(::mkfifo(weights.c_str(), 0600), 0) << std::strerror(errno);
  ExpectRefusedInChild(ckpt.dir(), weights);
  ExpectRefusedInChild(weights, weights);
  fs::remove(weights);
  fs::create_symlink("/dev/zero", weights);
  ExpectRefusedInChild(ckpt.dir(), weights);
  // A GGUF path is sniffed for its magic before loading: that must not open a FIFO either.
  const std::string gguf = ckpt.file("model.gguf.fifo");
  ASSERT_EQ(::mkfifo(gguf.c_str(), 0600), 0) << std::strerror(errno);
  ExpectRefusedInChild(gguf, gguf);
}

TEST(LoaderSpecialFilesTest, TokenizerFifoIsRefused) {
  TempDir tmp;
  const std::string fifo = tmp.path() + "/tokenizer.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  const testing::ChildResult result = testing::RunInChild(
      [&] {
        auto tokenizer = Tokenizer::Load(fifo);
        if (tokenizer.ok()) return 2;
        std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
        // Refused without opening the FIFO (the tokenizer loader checks the type first).
        return Contains(tokenizer.status().message(), fifo) ? 0 : 1;
      },
      /*timeout_seconds=*/20);
  EXPECT_TRUE(result.exited && result.exit_code == 0) << result.Describe();
}

// ---------------------------------------------------------------------------------------------
// A weight file truncated or rewritten while the model maps it: the next forward pass reports
// DataLoss naming the file (it died of SIGBUS for f32 GGUF and bf16/f32 safetensors). Each run
// is in a child so that a SIGBUS fails the test instead of killing it.

void ExpectForwardRefusedAfter(const std::string& model_path, const std::string& weights,
                               const std::function<void()>& damage) {
  const testing::ChildResult result = testing::RunInChild(
      [&] {
        auto model = LoadedModel::Load(model_path);
        if (!model.ok()) {
          std::fprintf(stderr, "load: %s\n", model.status().ToString().c_str());
          return 2;
        }
        InferenceState state(**model, nullptr, 4);
        const int32_t ids[] = {2, 17, 33};
        if (!state.Forward(ids, 3, LogitsMode::kLast, nullptr).ok()) return 3;  // intact: runs
        damage();
        const Status status = state.Forward(ids, 3, LogitsMode::kLast, nullptr);
        std::fprintf(stderr, "%s\n", status.ToString().c_str());
        return status.code() == StatusCode::kDataLoss && Contains(status.message(), weights) ? 0
                                                                                             : 1;
      },
      /*timeout_seconds=*/60);
  EXPECT_TRUE(result.exited && result.exit_code == 0) << weights << ": " << result.Describe();
}

TEST(LoaderMappedFilesTest, TruncatedOrRewrittenWhileMappedIsDataLoss) {
  CheckpointCopy ckpt(kTiny31bText);
  const std::string weights = ckpt.file("model.safetensors");
  const uintmax_t size = fs::file_size(weights);
  ExpectForwardRefusedAfter(ckpt.dir(), weights, [&] { fs::resize_file(weights, size / 2); });
  // The same size, rewritten in place (other contents under the mapping).
  CheckpointCopy rewritten(kTiny31bText);
  const std::string bytes = ReadFile(rewritten.file("model.safetensors"));
  ExpectForwardRefusedAfter(rewritten.dir(), rewritten.file("model.safetensors"), [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a later mtime
    WriteFile(rewritten.file("model.safetensors"), bytes);
  });
  TempDir tmp;
  const std::string gguf = tmp.path() + "/model.gguf";
  fs::copy_file(std::string(GEMMA4_FIXTURES_DIR) + "/llama_cpp_gguf/tiny-e4b.gguf", gguf);
  ExpectForwardRefusedAfter(gguf, gguf, [&] { fs::resize_file(gguf, fs::file_size(gguf) / 3); });
}

// The vision tower reads its weights from the same kind of mapping: the checkpoint's
// safetensors, or an mmproj GGUF. Damaged after loading, the next image is DataLoss naming the
// file (it was a SIGBUS).
void ExpectEncodeRefusedAfter(
    const std::function<StatusOr<std::unique_ptr<vision::VisionEncoder>>()>& load,
    const std::string& weights, const std::function<void()>& damage) {
  const testing::ChildResult result = testing::RunInChild(
      [&] {
        auto encoder = load();
        if (!encoder.ok()) {
          std::fprintf(stderr, "load: %s\n", encoder.status().ToString().c_str());
          return 2;
        }
        const int p = (*encoder)->config().patch_size * (*encoder)->config().pooling_kernel_size;
        std::vector<uint8_t> rgb(static_cast<size_t>(p) * p * 3, 77);
        auto patches = vision::Patchify(rgb.data(), p, p, (*encoder)->config().patch_size);
        if (!patches.ok()) return 4;
        std::vector<float> soft;
        if (!(*encoder)->Encode(*patches, nullptr, &soft).ok()) return 3;  // intact: runs
        damage();
        const Status status = (*encoder)->Encode(*patches, nullptr, &soft);
        std::fprintf(stderr, "%s\n", status.ToString().c_str());
        return status.code() == StatusCode::kDataLoss && Contains(status.message(), weights) ? 0
                                                                                             : 1;
      },
      /*timeout_seconds=*/60);
  EXPECT_TRUE(result.exited && result.exit_code == 0) << weights << ": " << result.Describe();
}

TEST(LoaderMappedFilesTest, EncoderWeightsTruncatedWhileMappedIsDataLoss) {
  const std::string vision_fixtures = std::string(GEMMA4_FIXTURES_DIR) + "/vision";
  CheckpointCopy ckpt(vision_fixtures + "/tiny-e2b-vision");
  const std::string weights = ckpt.file("model.safetensors");
  std::unique_ptr<LoadedModel> model;
  ExpectEncodeRefusedAfter(
      [&]() -> StatusOr<std::unique_ptr<vision::VisionEncoder>> {
        GEMMA4_ASSIGN_OR_RETURN(model, LoadedModel::Load(ckpt.dir()));
        return vision::VisionEncoder::Load(*model);
      },
      weights, [&] { fs::resize_file(weights, fs::file_size(weights) / 2); });
  TempDir tmp;
  const std::string mmproj = tmp.path() + "/mmproj.gguf";
  fs::copy_file(vision_fixtures + "/llama_cpp/tiny-e2b-vision-mmproj-f32.gguf", mmproj);
  ExpectEncodeRefusedAfter(
      [&] {
        auto text = LoadedModel::Load(vision_fixtures + "/tiny-e2b-vision");
        const int hidden = text.ok() ? (*text)->config().hidden_size : 0;
        return vision::VisionEncoder::LoadMmproj(mmproj, hidden);
      },
      mmproj, [&] { fs::resize_file(mmproj, fs::file_size(mmproj) / 3); });
}

// ---------------------------------------------------------------------------------------------
// GGUF bounds: tensors sharing bytes, and metadata arrays whose in-memory cost dwarfs the file.

// A GGUF with tensors "a" and "b" (8 f32 each) and the given metadata, as bytes.
std::string SmallGguf(const std::vector<std::pair<std::string, gguf::Value>>& metadata) {
  TempDir tmp;
  gguf::Writer writer;
  for (const auto& [key, value] : metadata) writer.Set(key, value);
  writer.AddTensor("a", DType::kF32, {8});
  writer.AddTensor("b", DType::kF32, {8});
  const std::string path = tmp.path() + "/small.gguf";
  EXPECT_TRUE(writer
                  .Write(path,
                         [](size_t, std::vector<uint8_t>* bytes) {
                           bytes->assign(32, 0);
                           return OkStatus();
                         })
                  .ok());
  return ReadFile(path);
}

Status ParseGguf(const std::string& bytes) {
  auto file =
      gguf::File::Parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "test.gguf");
  return file.ok() ? OkStatus() : file.status();
}

TEST(LoaderGgufTest, OverlappingTensorsAreRefused) {
  std::string bytes = SmallGguf({});
  ASSERT_TRUE(ParseGguf(bytes).ok());
  // Tensor "b"'s info: name (u64 length 1, "b"), n_dims u32, one u64 dim, type u32, offset u64.
  const size_t b_info = bytes.find(std::string("\x01\0\0\0\0\0\0\0b", 9));
  ASSERT_NE(b_info, std::string::npos);
  const size_t offset_at = b_info + 9 + 4 + 8 + 4;
  uint64_t offset = 0;
  std::memcpy(&offset, bytes.data() + offset_at, 8);
  ASSERT_EQ(offset, 32u);
  offset = 0;  // "b" now starts where "a" does
  std::memcpy(bytes.data() + offset_at, &offset, 8);
  const Status status = ParseGguf(bytes);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), "overlap")) << status.ToString();
}

TEST(LoaderGgufTest, UnsupportedTensorTypesAreRefusedByName) {
  // Tensor "b"'s type field (see above) set to other ggml ids: llama.cpp's Q8_1 (an activation
  // type, never in its files), F64, TQ1_0, TQ2_0 and NVFP4, an id ggml removed and one past its
  // table. Each is refused naming the tensor and the type, and the message lists the types read
  // (the 1-bit codebook formats IQ1_S and IQ1_M among them).
  const std::string good = SmallGguf({});
  const size_t b_info = good.find(std::string("\x01\0\0\0\0\0\0\0b", 9));
  ASSERT_NE(b_info, std::string::npos);
  const size_t type_at = b_info + 9 + 4 + 8;
  uint32_t type = 99;
  std::memcpy(&type, good.data() + type_at, 4);
  ASSERT_EQ(type, 0u);  // F32
  const std::pair<uint32_t, const char*> cases[] = {
      {28, "ggml type 28 (F64)"},      {35, "ggml type 35 (TQ2_0)"}, {9, "ggml type 9 (Q8_1)"},
      {34, "ggml type 34 (TQ1_0)"},    {40, "ggml type 40 (NVFP4)"}, {4, "ggml type 4 (unknown)"},
      {200, "ggml type 200 (unknown)"}};
  for (const auto& [id, text] : cases) {
    std::string bytes = good;
    std::memcpy(bytes.data() + type_at, &id, 4);
    const Status status = ParseGguf(bytes);
    EXPECT_EQ(status.code(), StatusCode::kUnimplemented) << status.ToString();
    EXPECT_TRUE(Contains(status.message(), "tensor 'b' has " + std::string(text)))
        << status.ToString();
    EXPECT_TRUE(Contains(status.message(), "Q6_K, IQ1_S, IQ1_M, IQ2_XXS")) << status.ToString();
  }
}

TEST(LoaderGgufTest, MetadataValueCountIsBounded) {
  // 20 million one-byte elements: 20 MB in the file, about 2 GB as metadata values.
  std::vector<gguf::Value> many(gguf::kMaxMetadataValues + 1,
                                gguf::Value::Int(gguf::ValueType::kUint8, 7));
  std::string bytes =
      SmallGguf({{"junk", gguf::Value::Array(gguf::ValueType::kUint8, std::move(many))}});
  const Status status = ParseGguf(bytes);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), "metadata values")) << status.ToString();
}

// ---------------------------------------------------------------------------------------------
// Non-finite weights: norms and scales are checked whole at load (they printed 0,0,0,0 with
// exit 0), naming the tensor.

// Sets element `index` of float32 tensor `tensor` in a single-file checkpoint.
void SetF32(const std::string& path, const std::string& tensor, int64_t index, float value) {
  std::string file = ReadFile(path);
  uint64_t header_size = 0;
  std::memcpy(&header_size, file.data(), 8);
  auto header = json::Parse(std::string_view(file).substr(8, header_size), "header");
  ASSERT_TRUE(header.ok());
  const json::Value* t = header->Find(tensor);
  ASSERT_NE(t, nullptr) << tensor;
  ASSERT_EQ(t->Find("dtype")->as_string(), "F32");
  int64_t begin = 0;
  ASSERT_TRUE(t->Find("data_offsets")->as_array()[0].GetInt64(&begin));
  std::memcpy(file.data() + 8 + header_size + begin + index * 4, &value, 4);
  WriteFile(path, file);
}

TEST(LoaderModelTest, NonFiniteNormOrScaleIsRefusedNamingTheTensor) {
  struct Case {
    std::string tensor;
    float value;
    const char* what;
  };
  const Case cases[] = {
      {"model.norm.weight", std::nanf(""), "NaN"},
      {"model.layers.2.input_layernorm.weight", INFINITY, "Inf"},
      {"model.layers.1.self_attn.q_norm.weight", -INFINITY, "Inf"},
  };
  for (const Case& c : cases) {
    CheckpointCopy ckpt(kTiny31bText);
    SetF32(ckpt.file("model.safetensors"), c.tensor, 3, c.value);
    EXPECT_STATUS(LoadStatus(ckpt.dir()), StatusCode::kInvalidArgument, c.tensor, c.what,
                  "at index 3");
  }
}

}  // namespace
}  // namespace gemma4
