// Per-layer inputs (E2B/E4B): each token's [num_layers, ple_dim] rows, a projection of the
// scaled embeddings plus the token's row of the per-layer embedding table (read with pread, so
// the 1.9 GB table of E2B never enters the resident set). InferenceState members.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <mutex>

#include "model/forward.h"
#include "ops/ops.h"
#include "runtime/thread_scratch.h"

namespace gemma4 {

namespace {

// Where row `id` of a file-backed PLE table starts in its file (read and read-ahead alike).
uint64_t PleRowOffset(const TensorView& table, int32_t id) {
  return table.file_offset + static_cast<uint64_t>(id) * RowBytes(table.dtype, table.cols());
}

}  // namespace

Status InferenceState::ReadPleRow(int32_t id, std::vector<uint8_t>* bytes, float* out) const {
  const TensorView& table = model_.weights().ple_embed;
  const int64_t cols = table.cols();
  if (table.fd < 0) {
    ops::ToF32(table, int64_t{id} * cols, cols, out);
    return OkStatus();
  }
  // Read the row with pread rather than through the mapping: faulting mapped pages would also
  // map their cached neighbours (kernel fault-around), and a long prompt of random ids would
  // drag most of the table (1.9 GB on E2B) into the resident set.
  const uint64_t row_bytes = RowBytes(table.dtype, cols);
  bytes->resize(row_bytes);
  uint64_t done = 0;
  const uint64_t offset = PleRowOffset(table, id);
  while (done < row_bytes) {
    const ssize_t n = ::pread(table.fd, bytes->data() + done, row_bytes - done,
                              static_cast<off_t>(offset + done));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return DataLossError(table.file + ": cannot read row " + std::to_string(id) + " of '" +
                           table.name + "' at offset " + std::to_string(offset));
    }
    done += static_cast<uint64_t>(n);
  }
  TensorView row = table;
  row.data = bytes->data();
  ops::ToF32(row, 0, cols, out);
  return OkStatus();
}

void InferenceState::ReadAheadPleRows(const ForwardInput& input) const {
#if defined(POSIX_FADV_WILLNEED)
  // A row a token, read inside the prompt's first steps: where the file's pages are not in the
  // page cache (a fresh load reads no table row; the kernel drops them under pressure), each
  // pread waits for the disk, on the pool's threads. Advice for every row at once lets the
  // reads overlap the forward steps before each row is needed (E2B Q4_0, 512 random ids, rows
  // dropped from the cache, two threads: 6.5-8.1 ms per 128-token step in the pread loop).
  const TensorView& table = model_.weights().ple_embed;
  if (config_.ple_dim <= 0 || table.fd < 0) return;
  const uint64_t row_bytes = RowBytes(table.dtype, table.cols());
  for (int64_t i = 0; i < input.n; ++i) {
    if (input.embedded != nullptr && input.embedded[i] != 0) continue;
    (void)::posix_fadvise(table.fd, static_cast<off_t>(PleRowOffset(table, input.ids[i])),
                          static_cast<off_t>(row_bytes), POSIX_FADV_WILLNEED);
  }
#else
  (void)input;
#endif
}

Status InferenceState::PerLayerInputs(const int32_t* ids, int64_t s) {
  const ModelWeights& w = model_.weights();
  const int64_t H = config_.hidden_size, L = config_.num_layers, P = config_.ple_dim;
  const int64_t LP = L * P;
  ple_inputs_.resize(s * LP);
  // Context part: project the scaled embeddings, * f32(H^-0.5), RMSNorm each P-chunk.
  ops::MatMul(w.ple_model_projection, x_.data(), s, ple_inputs_.data(), pool_);
  const float projection_scale = static_cast<float>(std::pow(static_cast<double>(H), -0.5));
  const float token_scale = static_cast<float>(std::sqrt(static_cast<double>(P)));
  const float combine_scale = static_cast<float>(std::pow(2.0, -0.5));
  // Token by token on the pool (each reads its own table row; on one thread this loop had been
  // most of the embedding phase's wall time, the other thread waiting).
  std::mutex error_mu;
  Status error = OkStatus();
  auto tokens = [&](int64_t begin, int64_t end) {
    struct PleRowTag;
    std::vector<float>& token_part = ThreadScratch<std::vector<float>, PleRowTag>();
    token_part.resize(LP);
    struct PleBytesTag;
    std::vector<uint8_t>& bytes = ThreadScratch<std::vector<uint8_t>, PleBytesTag>();
    for (int64_t t = begin; t < end; ++t) {
      float* row = ple_inputs_.data() + t * LP;
      for (int64_t j = 0; j < LP; ++j) row[j] *= projection_scale;
      for (int64_t l = 0; l < L; ++l) {
        ops::RmsNorm(row + l * P, w.ple_projection_norm.data(), P, config_.rms_norm_eps,
                     row + l * P);
      }
      // Token-identity part: the PLE table row * f32(sqrt(P)).
      Status read = ReadPleRow(ids[t], &bytes, token_part.data());
      if (!read.ok()) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (error.ok()) error = std::move(read);
        return;
      }
      for (int64_t j = 0; j < LP; ++j) {
        row[j] = (row[j] + token_part[j] * token_scale) * combine_scale;
      }
    }
  };
  if (pool_ != nullptr) {
    pool_->ParallelFor(s, 1, tokens);
  } else {
    tokens(0, s);
  }
  return error;
}

}  // namespace gemma4
