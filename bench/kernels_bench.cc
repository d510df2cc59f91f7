// Google Benchmark microbenchmarks of the matmul kernels per ISA and weight type, at Gemma 4
// E2B shapes: decode (one token, matrix-vector) and prefill (64 tokens), from cache, and decode
// of matrices far larger than the caches. Reported bytes are weight bytes, so bytes_per_second
// of the decode cases is the achieved weight bandwidth.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "base/half.h"
#include "kernels/kernels.h"
#include "kernels/pack/pack.h"
#include "kernels/ref/reference_dots.h"
#include "ops/ops.h"
#include "quant/quant.h"
#include "runtime/thread_pool.h"

namespace gemma4 {
namespace {

struct Matrix {
  std::vector<uint8_t> bytes;
  TensorView view;
};

Matrix MakeMatrix(DType type, int64_t rows, int64_t cols) {
  Matrix m;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> row(cols);
  const DType stored = type == DType::kQ4_0R || type == DType::kQ4_0x16   ? DType::kQ4_0
                       : type == DType::kQ8_0R || type == DType::kQ8_0x16 ? DType::kQ8_0
                       : type == DType::kQ4_Kx16                          ? DType::kQ4_K
                       : type == DType::kQ6_Kx16                          ? DType::kQ6_K
                       : type == DType::kIQ4_NLx16                        ? DType::kIQ4_NL
                                                                          : type;
  const uint64_t row_bytes = RowBytes(stored, cols);
  m.bytes.resize(rows * row_bytes);
  std::vector<uint8_t> plain(row_bytes);
  // Rows past the first kDistinctRows repeat them (quantizing the E2B LM head's 262144 rows
  // took about a minute a case): a matrix larger than the caches is still read from memory
  // byte by byte, and no kernel's timing depends on the values.
  constexpr int64_t kDistinctRows = 4096;
  for (int64_t r = 0; r < rows; ++r) {
    if (r >= kDistinctRows) {
      std::copy_n(m.bytes.begin() + (r % kDistinctRows) * row_bytes, row_bytes,
                  m.bytes.begin() + r * row_bytes);
      continue;
    }
    if (IsCodebookType(type)) {
      // No quantizer of ours writes the codebook formats (llama.cpp's does): random bytes
      // (grid indices, signs, scales) with a small f16 d per 256 values.
      for (uint8_t& byte : plain) byte = static_cast<uint8_t>(rng());
      const uint16_t d = half::F32ToF16(0.0005f);
      for (uint64_t b = 0; b < row_bytes; b += BlockBytes(type)) std::memcpy(&plain[b], &d, 2);
      std::copy(plain.begin(), plain.end(), m.bytes.begin() + r * row_bytes);
      continue;
    }
    if (stored == DType::kIQ4_NL) {
      // Likewise (no quantizer of ours): random nibbles, a small f16 d per 32 values.
      for (uint8_t& byte : plain) byte = static_cast<uint8_t>(rng());
      const uint16_t d = half::F32ToF16(0.0005f);
      for (uint64_t b = 0; b < row_bytes; b += BlockBytes(type)) std::memcpy(&plain[b], &d, 2);
      std::copy(plain.begin(), plain.end(), m.bytes.begin() + r * row_bytes);
      continue;
    }
    if (IsOneBitCodebookType(type)) {
      // Likewise; IQ1_M's d lies in the top nibbles of its four u16 scales at 48 (nibble k in
      // scales[k]), IQ1_S's at 0.
      for (uint8_t& byte : plain) byte = static_cast<uint8_t>(rng());
      const uint16_t d = half::F32ToF16(0.0005f);
      for (uint64_t b = 0; b < row_bytes; b += BlockBytes(type)) {
        if (type == DType::kIQ1_S) {
          std::memcpy(&plain[b], &d, 2);
          continue;
        }
        for (int k = 0; k < 4; ++k) {
          uint8_t& top = plain[b + quant::kIQ1_MScales + 2 * k + 1];
          top = static_cast<uint8_t>((top & 0x0F) | (((d >> (4 * k)) & 0xF) << 4));
        }
      }
      std::copy(plain.begin(), plain.end(), m.bytes.begin() + r * row_bytes);
      continue;
    }
    for (float& x : row) x = dist(rng);
    quant::QuantizeRow(stored, row.data(), cols, plain.data());
    if (type == DType::kQ4_0R) {
      kernels::pack::RepackRowQ4_0(plain.data(), cols / 32, m.bytes.data() + r * row_bytes);
    } else if (type == DType::kQ8_0R) {
      kernels::pack::RepackRowQ8_0(plain.data(), cols / 32, m.bytes.data() + r * row_bytes);
    } else {
      std::copy(plain.begin(), plain.end(), m.bytes.begin() + r * row_bytes);
    }
  }
  // 16-row interleaving, as the loader does where the CPU has the 16-row kernels (the
  // K-quant repacks count 256-value blocks, the others 32-value blocks).
  void (*repack)(const uint8_t*, uint64_t, int64_t, uint8_t*) =
      type == DType::kQ4_0x16 || type == DType::kIQ4_NLx16 ? kernels::pack::RepackGroupQ4_0x16
      : type == DType::kQ8_0x16                            ? kernels::pack::RepackGroupQ8_0x16
      : type == DType::kQ4_Kx16                            ? kernels::pack::RepackGroupQ4_Kx16
      : type == DType::kQ6_Kx16                            ? kernels::pack::RepackGroupQ6_Kx16
                                                           : nullptr;
  if (repack != nullptr) {
    const std::vector<uint8_t> plain_rows = m.bytes;
    const int64_t blocks = cols / BlockElements(type);
    for (int64_t r = 0; r < rows; r += 16) {
      repack(plain_rows.data() + r * row_bytes, row_bytes, blocks, m.bytes.data() + r * row_bytes);
    }
  }
  m.view.dtype = type;
  m.view.shape = {rows, cols};
  m.view.data = m.bytes.data();
  m.view.nbytes = m.bytes.size();
  return m;
}

// args: type, rows, cols, tokens, threads
void BM_MatMul(benchmark::State& state) {
  const DType type = static_cast<DType>(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), tokens = state.range(3);
  ThreadPool pool(static_cast<int>(state.range(4)));
  const Matrix m = MakeMatrix(type, rows, cols);
  std::vector<float> x(tokens * cols, 0.5f), y(tokens * rows);
  for (auto _ : state) {
    ops::MatMul(m.view, x.data(), tokens, y.data(), &pool);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(m.bytes.size()));
  state.counters["GOPS"] =
      benchmark::Counter(2.0 * rows * cols * tokens * state.iterations(),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void Shapes(benchmark::internal::Benchmark* b) {
  const kernels::KernelTable& table = kernels::BestTable();
  std::vector<DType> types = {DType::kQ4_0R, DType::kQ4_0, DType::kQ8_0,
                              DType::kQ6_K,  DType::kQ4_K, DType::kBF16};
  if (table.gemm_q4_kx16 != nullptr) types.push_back(DType::kQ4_Kx16);
  if (table.gemm_q6_kx16 != nullptr) types.push_back(DType::kQ6_Kx16);
  if (table.gemm_q4_0x16 != nullptr) types.push_back(DType::kQ4_0x16);
  if (table.gemm_q8_0x16 != nullptr) types.push_back(DType::kQ8_0x16);
  if (table.gemm_q8_0r != nullptr) types.push_back(DType::kQ8_0R);
  for (DType t : types) {
    for (int threads : {1, 2}) {
      // E2B MLP gate/up (6144 x 1536) and down (1536 x 6144); decode and prefill.
      for (int tokens : {1, 64}) {
        b->Args({static_cast<int64_t>(t), 6144, 1536, tokens, threads});
        b->Args({static_cast<int64_t>(t), 1536, 6144, tokens, threads});
      }
    }
  }
  // Decode from memory rather than cache (L3 holds the shapes above): the E2B LM head as the
  // Q4_0 recipe stores it (Q6_K, 262144 x 1536, 330 MB) and 113 MB of the layers' Q4_0 type.
  const DType q4 = table.gemm_q4_0x16 != nullptr ? DType::kQ4_0x16 : DType::kQ4_0R;
  const DType q6 = table.gemm_q6_kx16 != nullptr ? DType::kQ6_Kx16 : DType::kQ6_K;
  for (int threads : {1, 2}) {
    b->Args({static_cast<int64_t>(DType::kQ6_K), 262144, 1536, 1, threads});
    if (q6 != DType::kQ6_K) b->Args({static_cast<int64_t>(q6), 262144, 1536, 1, threads});
    b->Args({static_cast<int64_t>(q4), 32768, 6144, 1, threads});
    if (table.gemm_q4_kx16 != nullptr) {
      b->Args({static_cast<int64_t>(DType::kQ4_Kx16), 32768, 6144, 1, threads});
    }
    b->Args({static_cast<int64_t>(DType::kBF16), 8960, 1536, 1, threads});
  }
  // A speculative verify step (the pending token and 1-8 drafts) from memory on two threads:
  // the weights are read once whatever the token count, the products grow with it (by 9
  // tokens they, not the reading, bound the Q4_0x16 product: docs/performance.md).
  for (int tokens : {2, 3, 4, 5, 7, 9}) {
    b->Args({static_cast<int64_t>(q4), 32768, 6144, tokens, 2});
    b->Args({static_cast<int64_t>(q6), 262144, 1536, tokens, 2});
    if (table.gemm_q4_kx16 != nullptr) {
      b->Args({static_cast<int64_t>(DType::kQ4_Kx16), 32768, 6144, tokens, 2});
    }
  }
  // The codebook formats (row dots, prefill panels; IQ1_S and IQ1_M row dots only): E2B's MLP
  // gate/up shape, and its down projection (4x fewer, 4x longer rows) for decode.
  for (DType t : {DType::kIQ3_S, DType::kIQ3_XXS, DType::kIQ2_XXS, DType::kIQ2_XS, DType::kIQ2_S,
                  DType::kIQ1_S, DType::kIQ1_M}) {
    for (int tokens : {1, 64}) b->Args({static_cast<int64_t>(t), 6144, 1536, tokens, 1});
    b->Args({static_cast<int64_t>(t), 1536, 6144, 1, 1});
  }
  // IQ4_NL (the IQ mixes' fallback: 26B-A4B's down projections, an expert's 2816 x 704) beside
  // Q8_0, which it was converted to before it had kernels of its own; 1 and 64 tokens.
  for (DType t : {DType::kIQ4_NLx16, DType::kQ8_0x16, DType::kIQ4_NL}) {
    if (t == DType::kIQ4_NLx16 && table.gemm_iq4_nlx16 == nullptr) continue;
    if (t == DType::kQ8_0x16 && table.gemm_q8_0x16 == nullptr) continue;
    for (int tokens : {1, 64}) {
      b->Args({static_cast<int64_t>(t), 6144, 1536, tokens, 1});
      b->Args({static_cast<int64_t>(t), 2816, 704, tokens, 1});
    }
  }
  // Prefill of a 512-token prompt on two threads: the MLP matrices (L3-sized, so the token
  // tiling decides how often they are re-read) at 512 tokens and at a forward step's 128, and
  // the BF16 per-layer-input gate (256 x 1536), projection (1536 x 256) and model projection
  // (8960 x 1536).
  for (const auto& [rows, cols] : {std::pair{6144, 1536}, std::pair{1536, 6144}}) {
    for (int tokens : {512, 128}) b->Args({static_cast<int64_t>(q4), rows, cols, tokens, 2});
  }
  for (const auto& [rows, cols] :
       {std::pair{256, 1536}, std::pair{1536, 256}, std::pair{8960, 1536}}) {
    b->Args({static_cast<int64_t>(DType::kBF16), rows, cols, 512, 2});
  }
}
BENCHMARK(BM_MatMul)->Apply(Shapes)->UseRealTime()->Unit(benchmark::kMicrosecond);

// Float-weight GEMM of the vision and audio towers (F16 weights, as llama.cpp's mmproj files
// store them), on one and two threads: the E2B audio tower's feed-forward (750 tokens for 30 s,
// 1024
// -> 4096), the E2B vision MLP (2520 patches, 768 -> 3072) and the 26B vision MLP (4032
// patches, 1152 -> 4304), through ops::MatMulGemm (the packed GEMM the towers use, gemm 1) and
// ops::MatMul (the text model's prefill path, gemm 0); gemm 2: MatMulGemm on 16-bit panels packed
// once before the loop (ops::PackGemmWeights16, as the towers now pack at load), gemm 3: on f32
// panels packed once (the kernel alone). GOPS counts 2 * s * k * n_out flops.
// args: type, rows, cols, tokens, threads, gemm
void BM_EncoderGemm(benchmark::State& state) {
  const DType type = static_cast<DType>(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), tokens = state.range(3);
  ThreadPool pool(static_cast<int>(state.range(4)));
  const bool gemm = state.range(5) != 0;
  const Matrix m = MakeMatrix(type, rows, cols);
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(tokens * cols), y(tokens * rows);
  for (float& v : x) v = dist(rng);
  const int64_t mode = state.range(5);
  ops::PackedGemmWeights packed;
  if (mode == 2 && !ops::PackGemmWeights16(m.view, &packed, &pool).ok()) {
    state.SkipWithError("PackGemmWeights16 failed");
    return;
  }
  if (mode == 3) ops::PackGemmWeights(m.view, &packed, &pool);
  for (auto _ : state) {
    if (mode >= 2) {
      ops::MatMulGemm(packed, x.data(), tokens, y.data(), &pool);
    } else if (gemm) {
      ops::MatMulGemm(m.view, x.data(), tokens, y.data(), &pool);
    } else {
      ops::MatMul(m.view, x.data(), tokens, y.data(), &pool);
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GOPS"] =
      benchmark::Counter(2.0 * rows * cols * tokens * state.iterations(),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void EncoderShapes(benchmark::internal::Benchmark* b) {
  for (const auto& [tokens, cols, rows] :
       {std::tuple{750, 1024, 4096}, std::tuple{2520, 768, 3072}, std::tuple{4032, 1152, 4304}}) {
    for (int gemm : {0, 1, 2, 3}) {
      for (int threads : {1, 2}) {
        b->Args({static_cast<int64_t>(DType::kF16), rows, cols, tokens, threads, gemm});
      }
    }
  }
}
BENCHMARK(BM_EncoderGemm)->Apply(EncoderShapes)->UseRealTime()->Unit(benchmark::kMillisecond);

// The vision tower's bidirectional attention (ops::DenseAttention): E2B (2520 patches for 280
// soft tokens, 12 heads of 64; 10080 for 1120) and 26B (2520 patches, 16 heads of 72). GOPS counts
// the two products, 4 * n^2 * head_dim * heads flops, per second of this thread's CPU time (the
// pool of one thread runs on it), so a loaded machine moves it little. args: patches, heads,
// head_dim, threads
void BM_DenseAttention(benchmark::State& state) {
  const int64_t n = state.range(0);
  const int heads = static_cast<int>(state.range(1)), hd = static_cast<int>(state.range(2));
  ThreadPool pool(static_cast<int>(state.range(3)));
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t width = int64_t{heads} * hd;
  std::vector<float> q(n * width), k(n * width), v(n * width), out(n * width);
  for (auto* t : {&q, &k, &v}) {
    for (float& x : *t) x = dist(rng);
  }
  for (auto _ : state) {
    ops::DenseAttention(q.data(), width, k.data(), width, v.data(), width, n, heads, heads, hd,
                        out.data(), width, &pool);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GOPS"] =
      benchmark::Counter(4.0 * n * n * width * state.iterations(), benchmark::Counter::kIsRate,
                         benchmark::Counter::kIs1000);
}
BENCHMARK(BM_DenseAttention)
    ->Args({2520, 12, 64, 1})
    ->Args({2520, 16, 72, 1})
    ->Args({10080, 12, 64, 1})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace gemma4

BENCHMARK_MAIN();
