// Hugging Face safetensors reader: an 8-byte little-endian header length, a JSON header that
// maps tensor names to {dtype, shape, data_offsets}, then the raw data. Everything read from
// the file is validated before use.
#ifndef GEMMA4_SRC_FORMATS_SAFETENSORS_H_
#define GEMMA4_SRC_FORMATS_SAFETENSORS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/tensor.h"
#include "formats/mapped_file.h"
#include "gemma4/status.h"

namespace gemma4 {

// Largest header accepted (the format's own readers use 100 MB).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;
// Most JSON values a header may hold. A tensor entry takes about 10 (dtype, shape, offsets), so
// this allows 400,000 tensors (Gemma 4 31B has under 2,000), while a hostile header of "0,0,..."
// metadata is refused before it costs more than about 160 MB in memory.
inline constexpr size_t kMaxSafetensorsHeaderValues = 4'000'000;

// Parses the safetensors layout of `bytes` (a whole file's contents). Tensor views point into
// `bytes`. `file_name` is used in error messages and recorded in each view.
StatusOr<std::vector<TensorView>> ParseSafetensors(const uint8_t* bytes, size_t size,
                                                   const std::string& file_name);

class SafetensorsFile {
 public:
  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::string& path() const { return file_->path(); }
  Status CheckUnchanged() const { return file_->CheckUnchanged(); }

 private:
  std::unique_ptr<MappedFile> file_;
  std::vector<TensorView> tensors_;
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_FORMATS_SAFETENSORS_H_
