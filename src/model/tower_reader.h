// Loading and validating the weights of an encoder tower (audio, vision) by their Hugging Face
// names, from a checkpoint or an mmproj (formats/mmproj.h maps the names): matrices kept as
// views of the mapping, small vectors widened to f32, and Gemma4ClippableLinear layers with
// their learned clamp bounds.
#ifndef GEMMA4_SRC_MODEL_TOWER_READER_H_
#define GEMMA4_SRC_MODEL_TOWER_READER_H_

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/tensor.h"
#include "formats/checkpoint.h"
#include "formats/mmproj.h"
#include "gemma4/status.h"
#include "ops/ops.h"
#include "runtime/thread_pool.h"

namespace gemma4 {

// DataLoss when a weight file under an encoder's views shrank or was replaced since loading
// (reading it would raise SIGBUS): every encoder checks before each encode, as the text forward
// does. `mmproj` and `checkpoint` are the mappings the views point into; either may be null.
inline Status CheckTowerWeightsUnchanged(const mmproj::TowerFile* mmproj,
                                         const Checkpoint* checkpoint) {
  if (mmproj != nullptr) GEMMA4_RETURN_IF_ERROR(mmproj->CheckUnchanged());
  if (checkpoint != nullptr) GEMMA4_RETURN_IF_ERROR(checkpoint->CheckFilesUnchanged());
  return OkStatus();
}

// A linear layer whose input and output may be clamped to learned bounds
// (Gemma4ClippableLinear; no clamping when use_clipped_linears is off).
struct ClippableLinear {
  TensorView weight;  // [out, in]
  // F16/BF16 weights as 16-bit GEMM panels, packed once at load (TowerReader::Linear); null for
  // f32 and block-quantized weights, which are multiplied from `weight`.
  std::shared_ptr<const ops::PackedGemmWeights> packed;
  bool clipped = false;
  float input_min = 0, input_max = 0, output_min = 0, output_max = 0;

  // The input and output clamps on n values in place (nothing when the layer does not clip);
  // the towers' row passes apply them around TowerGemm.
  void ClampInput(float* x, int64_t n) const;
  void ClampOutput(float* y, int64_t n) const;
};

// l's weight times x [s, in] into y [s, out] (no clamps): the load-time panels when there are
// some, else MatMulGemm on the stored weight (the same bits either way).
inline void TowerGemm(const ClippableLinear& l, const float* x, int64_t s, float* y,
                      ThreadPool* pool) {
  if (l.packed != nullptr) {
    ops::MatMulGemm(*l.packed, x, s, y, pool);
  } else {
    ops::MatMulGemm(l.weight, x, s, y, pool);
  }
}

// Drops the whole pages of a weight's file mapping from this process once the weight was copied
// out of it (its panels): they stay in the page cache but stop counting as resident, so a packed
// tower holds its weights once. Reading the view again would fault them back in.
inline void ReleaseMappedPages(const TensorView& t) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t start = reinterpret_cast<uintptr_t>(t.data);
  const uintptr_t begin = (start + page - 1) / page * page;
  const uintptr_t end = (start + t.nbytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// torch.clamp(x, lo, hi): max then min, NaN kept.
inline void ClampInPlace(float* x, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::min(std::max(x[i], lo), hi);
}

inline void ClippableLinear::ClampInput(float* x, int64_t n) const {
  if (clipped) ClampInPlace(x, n, input_min, input_max);
}
inline void ClippableLinear::ClampOutput(float* y, int64_t n) const {
  if (clipped) ClampInPlace(y, n, output_min, output_max);
}

// Calls row(t) for every t < rows on the pool's threads, `grain` rows at least per item. Each
// row's arithmetic is the same whichever thread runs it, so results do not depend on the
// thread count.
template <class F>
void ForEachTowerRow(ThreadPool* pool, int64_t rows, int64_t grain, F&& row) {
  pool->ParallelFor(rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) row(t);
  });
}

// The processor settings files beside a checkpoint's config.json that exist, in the order the
// towers read them: processor_config.json (transformers 5 nests the sub-processors in it), then
// the flat preprocessor_config.json.
inline std::vector<std::string> ProcessorConfigFiles(const Checkpoint& ckpt) {
  const std::string& config = ckpt.config_path();
  const size_t slash = config.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : config.substr(0, slash);
  std::vector<std::string> files;
  for (const char* name : {"processor_config.json", "preprocessor_config.json"}) {
    const std::string path = dir + "/" + name;
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) files.push_back(path);
  }
  return files;
}

// An integer of a tower file's metadata (the mmproj loaders' hyperparameters) in [1, max] into
// *out. An absent key is InvalidArgument when `required`, else leaves *out (its default).
inline Status TowerMetadataInt(const mmproj::TowerFile& file, const std::string& key, int* out,
                               bool required, int max) {
  const gguf::Value* v = file.gguf().Find(key);
  if (v == nullptr) {
    return required ? InvalidArgumentError(file.path() + ": missing metadata '" + key + "'")
                    : OkStatus();
  }
  if (!v->IsInteger() || v->i <= 0 || v->i > max) {
    return InvalidArgumentError(file.path() + ": metadata '" + key +
                                "' must be an integer in [1, " + std::to_string(max) + "]");
  }
  *out = static_cast<int>(v->i);
  return OkStatus();
}

// InvalidArgument when the file's projector (its projection_dim, when it carries one) does not
// output `text_hidden` values per soft token: an mmproj of another model. `what` names the
// tower ("vision", "audio").
inline Status CheckTowerProjection(const mmproj::TowerFile& file, int text_hidden,
                                   const std::string& what) {
  int projection = text_hidden;
  GEMMA4_RETURN_IF_ERROR(
      TowerMetadataInt(file, file.ProjectionDimKey(), &projection, false, 1 << 20));
  if (projection != text_hidden) {
    return InvalidArgumentError(file.path() + ": the " + what + " projector outputs " +
                                std::to_string(projection) +
                                " values per soft token, the text model's hidden size is " +
                                std::to_string(text_hidden) + " (an mmproj of another model?)");
  }
  return OkStatus();
}

// y[s, out] = clip_out(W clip_in(x)); x is clamped in place when the layer clips.
inline void ApplyClippableLinear(const ClippableLinear& l, float* x, int64_t s, int64_t in_dim,
                                 float* y, ThreadPool* pool) {
  if (l.clipped) ClampInPlace(x, s * in_dim, l.input_min, l.input_max);
  TowerGemm(l, x, s, y, pool);
  if (l.clipped) ClampInPlace(y, s * l.weight.shape[0], l.output_min, l.output_max);
}

// Reads and validates tower tensors through a function from Hugging Face names to the stored
// tensors (a checkpoint's own, or an mmproj's under llama.cpp's names).
class TowerReader {
 public:
  // `source` names the file, `what` the tower ("audio", "vision") in error messages.
  TowerReader(std::function<const TensorView*(const std::string&)> find, std::string source,
              std::string what)
      : find_(std::move(find)), source_(std::move(source)), what_(std::move(what)) {}
  // The pool that packs 16-bit weight panels at load (Linear); null packs on this thread.
  void UsePool(ThreadPool* pool) { pool_ = pool; }
  TowerReader(const Checkpoint& ckpt, std::string what)
      : TowerReader([&ckpt](const std::string& name) { return ckpt.Find(name); }, ckpt.path(),
                    std::move(what)) {}

  StatusOr<TensorView> Find(const std::string& name) const {
    const TensorView* t = find_(name);
    if (t == nullptr) {
      return NotFoundError(source_ + ": missing " + what_ + " tensor '" + name + "'");
    }
    return *t;
  }

  // A weight matrix [rows, cols] that ops::MatMul can multiply. A tensor of more dimensions
  // whose trailing ones multiply to `cols` (a convolution kernel) is viewed as [rows, cols].
  StatusOr<TensorView> Matrix(const std::string& name, int64_t rows, int64_t cols,
                              const std::vector<int64_t>& shape = {}) const {
    GEMMA4_ASSIGN_OR_RETURN(TensorView t, Find(name));
    const std::vector<int64_t> want = shape.empty() ? std::vector<int64_t>{rows, cols} : shape;
    if (t.shape != want) return ShapeError(t, name, want);
    if (!IsComputeType(t.dtype) || (IsBlockType(t.dtype) && cols % 32 != 0)) {
      return UnimplementedError(t.file + ": tensor '" + name + "' has dtype " + DTypeName(t.dtype) +
                                ", which the " + what_ + " tower cannot multiply");
    }
    t.shape = {rows, cols};
    return t;
  }

  // A float tensor of the given shape widened to f32.
  Status Vector(const std::string& name, const std::vector<int64_t>& shape,
                std::vector<float>* out) const {
    GEMMA4_ASSIGN_OR_RETURN(TensorView t, Find(name));
    if (t.shape != shape) return ShapeError(t, name, shape);
    if (IsBlockType(t.dtype) || !IsComputeType(t.dtype)) {
      return UnimplementedError(t.file + ": tensor '" + name + "' must be F32, F16 or BF16, not " +
                                DTypeName(t.dtype));
    }
    out->resize(t.numel());
    ops::ToF32(t, 0, t.numel(), out->data());
    return OkStatus();
  }

  Status Scalar(const std::string& name, float* out) const {
    GEMMA4_ASSIGN_OR_RETURN(TensorView t, Find(name));
    if (t.numel() != 1 || IsBlockType(t.dtype) || !IsComputeType(t.dtype)) {
      return InvalidArgumentError(t.file + ": tensor '" + name + "' must be one float, got " +
                                  DTypeName(t.dtype) + " " + t.ShapeString());
    }
    ops::ToF32(t, 0, 1, out);
    return OkStatus();
  }

  // NAME.linear.weight [rows, cols] and, when clipped, NAME.{input,output}_{min,max}.
  Status Linear(const std::string& name, int64_t rows, int64_t cols, bool clipped,
                ClippableLinear* out) const {
    GEMMA4_ASSIGN_OR_RETURN(out->weight, Matrix(name + ".linear.weight", rows, cols));
    GEMMA4_RETURN_IF_ERROR(Pack16(out));
    out->clipped = clipped;
    if (clipped) {
      GEMMA4_RETURN_IF_ERROR(Scalar(name + ".input_min", &out->input_min));
      GEMMA4_RETURN_IF_ERROR(Scalar(name + ".input_max", &out->input_max));
      GEMMA4_RETURN_IF_ERROR(Scalar(name + ".output_min", &out->output_min));
      GEMMA4_RETURN_IF_ERROR(Scalar(name + ".output_max", &out->output_max));
    }
    return OkStatus();
  }

  // A plain weight matrix read as Matrix reads it (`shape` as there), held as an unclipped
  // ClippableLinear so that its F16/BF16 values are packed once here like Linear's (projectors,
  // the audio subsampling's convolution and input projection: multiplied at every encode).
  Status PackedMatrix(const std::string& name, int64_t rows, int64_t cols, ClippableLinear* out,
                      const std::vector<int64_t>& shape = {}) const {
    GEMMA4_ASSIGN_OR_RETURN(out->weight, Matrix(name, rows, cols, shape));
    out->clipped = false;
    return Pack16(out);
  }

 private:
  // out->weight's 16-bit panels (F16/BF16), or none for other types.
  Status Pack16(ClippableLinear* out) const {
    out->packed.reset();
    if ((out->weight.dtype == DType::kF16 || out->weight.dtype == DType::kBF16) &&
        reinterpret_cast<uintptr_t>(out->weight.data) % alignof(uint16_t) == 0) {
      // Packed here once instead of widened and packed at every encode (the weights' bytes,
      // anonymous instead of mapped: see ReleaseMappedPages). A misaligned 16-bit tensor (no
      // GGUF or safetensors writer makes one) stays on the per-encode path.
      auto packed = std::make_shared<ops::PackedGemmWeights>();
      GEMMA4_RETURN_IF_ERROR(ops::PackGemmWeights16(out->weight, packed.get(), pool_));
      ReleaseMappedPages(out->weight);
      out->packed = std::move(packed);
    }
    return OkStatus();
  }

  static Status ShapeError(const TensorView& t, const std::string& name,
                           const std::vector<int64_t>& shape) {
    TensorView want;
    want.shape = shape;
    return InvalidArgumentError(t.file + ": tensor '" + name + "' has shape " + t.ShapeString() +
                                ", expected " + want.ShapeString());
  }

  std::function<const TensorView*(const std::string&)> find_;
  std::string source_;
  std::string what_;
  ThreadPool* pool_ = nullptr;
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_TOWER_READER_H_
