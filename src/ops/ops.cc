#include "ops/ops.h"

#include "kernels/kernels.h"
#include "kernels/pack/pack.h"
#include "quant/quant.h"
#include "runtime/huge_pages.h"
#include "runtime/thread_scratch.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace gemma4::ops {

void ToF32(const TensorView& t, int64_t first, int64_t count, float* out) {
  if (IsInterleavedX16(t.dtype)) {
    // Rows are interleaved in groups of 16: dequantize the whole row, keep the slice.
    const int64_t cols = t.cols(), row = first / cols;
    const uint8_t* group = t.data + (row / 16) * 16 * RowBytes(t.dtype, cols);
    auto dequantize = [&](float* dst) {
      const int r = static_cast<int>(row % 16);
      if (t.dtype == DType::kQ4_Kx16) {
        kernels::pack::DequantizeQ4_Kx16Row(group, cols / 256, r, dst);
      } else if (t.dtype == DType::kQ3_Kx16) {
        kernels::pack::DequantizeQ3_Kx16Row(group, cols / 256, r, dst);
      } else if (t.dtype == DType::kQ4_1x16) {
        kernels::pack::DequantizeQ4_1x16Row(group, cols / quant::kBlock, r, dst);
      } else if (t.dtype == DType::kQ5_1x16) {
        kernels::pack::DequantizeQ5_1x16Row(group, cols / quant::kBlock, r, dst);
      } else if (t.dtype == DType::kQ2_Kx16) {
        kernels::pack::DequantizeQ2_Kx16Row(group, cols / 256, r, dst);
      } else if (t.dtype == DType::kQ5_Kx16) {
        kernels::pack::DequantizeQ5_Kx16Row(group, cols / 256, r, dst);
      } else if (t.dtype == DType::kIQ4_XSx16) {
        kernels::pack::DequantizeIQ4_XSx16Row(group, cols / 256, r, dst);
      } else if (t.dtype == DType::kQ6_Kx16) {
        kernels::pack::DequantizeQ6_Kx16Row(group, cols / 256, r, dst);
      } else if (t.dtype == DType::kQ4_0x16) {
        kernels::pack::DequantizeQ4_0x16Row(group, cols / quant::kBlock, r, dst);
      } else if (t.dtype == DType::kIQ4_NLx16) {
        kernels::pack::DequantizeIQ4_NLx16Row(group, cols / quant::kBlock, r, dst);
      } else if (t.dtype == DType::kMXFP4x16) {
        kernels::pack::DequantizeMXFP4x16Row(group, cols / quant::kBlock, r, dst);
      } else {
        kernels::pack::DequantizeQ8_0x16Row(group, cols / quant::kBlock, r, dst);
      }
    };
    if (first % cols == 0 && count == cols) {
      dequantize(out);
      return;
    }
    std::vector<float> full(cols);
    dequantize(full.data());
    std::copy_n(full.data() + first % cols, count, out);
    return;
  }
  if (IsBlockType(t.dtype)) {
    kernels::pack::DequantizeRow(t.dtype, t.data + RowBytes(t.dtype, first), count, out);
    return;
  }
  switch (t.dtype) {
    case DType::kF32:
      std::memcpy(out, t.data + first * 4, count * 4);
      return;
    case DType::kBF16:
      kernels::BestTable().bf16_to_f32(t.data + first * 2, count, out);
      return;
    case DType::kF16:
      kernels::BestTable().f16_to_f32(t.data + first * 2, count, out);
      return;
    default:
      // Callers validate dtypes at load time (IsComputeType); never reached.
      std::fill(out, out + count, 0.0f);
      return;
  }
}

float Dot(const float* a, const float* b, int64_t n) {
  return kernels::BestTable().dot_f32(a, b, n);
}

void SigmoidMul(const float* x, const float* m, float* out, int64_t n) {
  kernels::BestTable().sigmoid_mul_f32(x, m, out, n);
}

void GeluMul(const float* g, const float* u, float* out, int64_t n) {
  kernels::BestTable().gelu_mul_f32(g, u, out, n);
}

void GeluMul(const float* g, const float* u, float* out, int64_t n, ThreadPool* pool) {
  constexpr int64_t kRun = 64;       // a multiple of every ISA's vector width
  constexpr int64_t kMinRuns = 256;  // 16 Ki values a piece: below that, not worth a handoff
  const int64_t runs = n / kRun;
  if (pool == nullptr || pool->num_threads() < 2 || runs < 2 * kMinRuns) {
    GeluMul(g, u, out, n);
    return;
  }
  pool->ParallelFor(runs, kMinRuns, [&](int64_t begin, int64_t end) {
    // The last piece also takes the values after the last whole run (the kernel's tail).
    const int64_t first = begin * kRun, last = end == runs ? n : end * kRun;
    GeluMul(g + first, u != nullptr ? u + first : nullptr, out + first, last - first);
  });
}

namespace {

// The bf16 tile kernel of an interleaved weight type (null: none on this table).
kernels::GemmX16TilesFn TilesFor(const kernels::KernelTable& table, DType dtype) {
  return dtype == DType::kQ4_0x16   ? table.tiles_q4_0x16
         : dtype == DType::kQ8_0x16 ? table.tiles_q8_0x16
         : dtype == DType::kQ4_Kx16 ? table.tiles_q4_kx16
         : dtype == DType::kQ6_Kx16 ? table.tiles_q6_kx16
                                    : nullptr;
}

// x [s, k] quantized to int8 blocks in this thread's scratch (reused across calls: large
// buffers freed and reallocated every matmul would come back from the OS as fresh zeroed pages
// each time), which the pool's workers then read; the token-interleaved copy where the
// weights' kernel reads it, per-16 sums for Q6_K, Q3_K and Q2_K weights; or, for a table's bf16
// tile kernels (AMX), x rounded to bf16 tiles instead (see below). gelu_up: when not null, x is the
// MLP's gate and each token's row x[t] first becomes gelu_tanh(x[t]) * gelu_up[t] in place
// (MatMulGeluMul). make_row: when not null, x is scratch that each token's row is first
// made in (MatMulSharedRows).
kernels::QuantizedActivations& QuantizeActivations(
    const float* x, int64_t s, int64_t k, DType weight_type, ThreadPool* pool, const float* gelu_up,
    const MakeRow* make_row = nullptr, bool token_by_token = false, bool whole_tiles = true,
    int64_t run_tokens = 0) {
  const kernels::KernelTable& table = kernels::BestTable();
  struct ActivationsTag;
  kernels::QuantizedActivations& acts =
      ThreadScratch<kernels::QuantizedActivations, ActivationsTag>();
  acts.Resize(s, k);
  const int64_t nblocks_per_row = k / quant::kBlock;
  // Runs of 16 tokens or more (whole runs: not MatMulGrouped's few tokens an expert, which
  // would be computed as whole tiles of 16) are rounded to bf16 for a table with bf16 tile
  // kernels for these weights (AMX); otherwise quantized to int8 blocks, interleaved for the
  // x16 kernels that read that copy (Q4_0x16, Q8_0x16 on AVX-512): groups of 1 for one token at
  // a time, else 8.
  const bool bf16 = !token_by_token && std::max(s, run_tokens) >= 16 && whole_tiles &&
                    TilesFor(table, weight_type) != nullptr;
  const bool interleave = !bf16 && table.x16_reads_interleaved &&
                          (weight_type == DType::kQ4_0x16 || weight_type == DType::kQ8_0x16 ||
                           weight_type == DType::kIQ4_NLx16 || weight_type == DType::kMXFP4x16);
  if (bf16) acts.ResizeBf16();
  if (interleave) acts.ResizeInterleaved(token_by_token ? 1 : 0);
  // Each token's blocks on their own, so prefill spreads the tokens over the pool (this had
  // been serial: about 1% of an E2B pp512 with the other thread waiting).
  auto quantize_tokens = [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      if (make_row != nullptr) (*make_row)(t, const_cast<float*>(x) + t * k);  // x is scratch
      if (gelu_up != nullptr) {
        float* row = const_cast<float*>(x) + t * k;  // MatMulGeluMul's g, which it may write
        table.gelu_mul_f32(row, gelu_up + t * k, row, k);
      }
      if (bf16) {
        table.bf16_tile_row(x + t * k, nblocks_per_row, acts.bf16_row(t));
      } else if (interleave) {
        // Only the interleaved copy is read (the x16 kernels address nothing else): the row
        // is quantized into a small per-thread buffer that stays in L1 and then scattered,
        // rather than written to the plain rows ([s, k], 1.5 MB for a 128-token step of the
        // 12288-wide down projection) and read back.
        struct StagingTag;
        kernels::QuantizedActivations& row =
            ThreadScratch<kernels::QuantizedActivations, StagingTag>();
        row.Resize(1, k);
        table.quantize_blocks(x + t * k, nblocks_per_row, row.q.data(), row.scale.data(),
                              row.sum.data(), row.offset.data());
        acts.InterleaveRow(t, row.q.data(), row.scale.data(), row.sum.data());
      } else {
        table.quantize_blocks(x + t * k, nblocks_per_row, acts.q.data() + t * k,
                              acts.scale.data() + t * nblocks_per_row,
                              acts.sum.data() + t * nblocks_per_row,
                              acts.offset.data() + t * nblocks_per_row);
      }
    }
  };
  if (pool != nullptr && s >= 8) {
    pool->ParallelFor(s, 4, quantize_tokens);
  } else {
    quantize_tokens(0, s);
  }
  if (!bf16 && (weight_type == DType::kQ6_K || weight_type == DType::kQ6_Kx16 ||
                weight_type == DType::kQ3_K || weight_type == DType::kQ3_Kx16 ||
                weight_type == DType::kQ2_K || weight_type == DType::kQ2_Kx16 ||
                weight_type == DType::kIQ2_XS || weight_type == DType::kIQ2_S ||
                weight_type == DType::kIQ1_M)) {
    acts.FillSums16();
  }
  return acts;
}

// The 16-row group kernel of an interleaved weight type.
kernels::GemmX16Fn Gemm16For(const kernels::KernelTable& table, DType dtype) {
  return dtype == DType::kQ4_0x16     ? table.gemm_q4_0x16
         : dtype == DType::kQ8_0x16   ? table.gemm_q8_0x16
         : dtype == DType::kQ4_Kx16   ? table.gemm_q4_kx16
         : dtype == DType::kQ5_Kx16   ? table.gemm_q5_kx16
         : dtype == DType::kQ3_Kx16   ? table.gemm_q3_kx16
         : dtype == DType::kQ4_1x16   ? table.gemm_q4_1x16
         : dtype == DType::kQ5_1x16   ? table.gemm_q5_1x16
         : dtype == DType::kIQ4_XSx16 ? table.gemm_iq4_xsx16
         : dtype == DType::kQ2_Kx16   ? table.gemm_q2_kx16
         : dtype == DType::kIQ4_NLx16 ? table.gemm_iq4_nlx16
         : dtype == DType::kMXFP4x16  ? table.gemm_mxfp4x16
                                      : table.gemm_q6_kx16;
}

// One interleaved (x16) matrix's product with quantized activations as work items: pairs of
// adjacent 16-row groups where the ISA has a pair kernel for prefill (4 tokens or more;
// bit-identical to the one-group kernel, it shares each activation broadcast between the
// groups) or bf16 tile kernels for the activations, else single groups; an odd last group runs
// alone. Run computes items [begin, end) for tokens [t0, t1) (and, for the tile kernels,
// blocks [b0, b1) of the rows, added to y's values after the first range), each kernel call
// writing 16 or 32 rows of the tokens straight into y.
struct X16Product {
  X16Product(const TensorView& w, int64_t s, float* out, const kernels::QuantizedActivations& acts)
      : data(w.data), n_out(w.rows()), y(out) {
    const kernels::KernelTable& table = kernels::BestTable();
    nblocks = w.cols() / quant::kBlock;
    group_bytes = 16 * static_cast<int64_t>(RowBytes(w.dtype, w.cols()));
    gemm16 = Gemm16For(table, w.dtype);
    tiles = acts.has_bf16 ? TilesFor(table, w.dtype) : nullptr;
    gemm_pair = s < 4 || tiles != nullptr      ? nullptr
                : w.dtype == DType::kQ4_0x16   ? table.gemm_q4_0x16_pair
                : w.dtype == DType::kQ8_0x16   ? table.gemm_q8_0x16_pair
                : w.dtype == DType::kIQ4_NLx16 ? table.gemm_iq4_nlx16_pair
                : w.dtype == DType::kMXFP4x16  ? table.gemm_mxfp4x16_pair
                                               : nullptr;
    per_item = gemm_pair != nullptr || tiles != nullptr ? 2 : 1;
    ngroups = n_out / 16;
    items = (ngroups + per_item - 1) / per_item;
  }
  void Run(const kernels::QuantizedActivations& acts, int64_t t0, int64_t t1, int64_t begin,
           int64_t end, int64_t b0, int64_t b1) const {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t g = i * per_item;
      float* out = y + t0 * n_out + g * 16;
      const int ntok = static_cast<int>(t1 - t0);
      if (tiles != nullptr) {
        tiles(data + g * group_bytes, static_cast<int>(std::min<int64_t>(2, ngroups - g)), nblocks,
              b0, b1, acts, t0, ntok, out, n_out, /*accumulate=*/b0 > 0);
        continue;
      }
      const auto gemm = g + per_item <= ngroups && gemm_pair != nullptr ? gemm_pair : gemm16;
      gemm(data + g * group_bytes, nblocks, acts, t0, ntok, out, n_out);
    }
  }
  const uint8_t* data;
  int64_t n_out;
  float* y;
  int64_t nblocks = 0, group_bytes = 0, per_item = 1, ngroups = 0, items = 0;
  kernels::GemmX16Fn gemm16 = nullptr, gemm_pair = nullptr;
  kernels::GemmX16TilesFn tiles = nullptr;
};

constexpr int64_t kTokenTile = 16;  // a tile's activations stay in L1 while rows stream
// The bf16 tile kernels (AMX) take up to this many tokens a call (PrefillStepTokens), each
// weight block dequantized once a call and reused for every tile of 16 tokens, and this many
// blocks of the rows (2048 values) a call: the kernel's own chunk, so a call's sums go straight
// to the output, and E2B's 1536-wide matrices are one call. Measured at 512 tokens (E2B Q4_0
// pp512, 7 alternating rounds each, against 32 blocks): 8 blocks 0.83x, 16 0.88x, 64 1.10x, 128
// 1.05-1.11x, all of K 1.00x (medians of the per-round ratios); keeping a call's activations
// in L2 (1 MiB: 32 blocks) mattered less than cutting the calls. The segments do not change a
// token's bits: each segment's tile sums start from the output's values, one f32 chain over the
// blocks in order however K is cut.
constexpr int64_t kTilesTokenBlock = 512;
constexpr int64_t kTilesSegmentBlocks = 64;
constexpr int kTilesPiecesPerThread = 4;
// Decode's matmuls hand out their weights in pieces of about this many bytes
// (ThreadPool::ParallelForStreams): the most a thread waits for the other at a job's end.
constexpr int64_t kStreamPieceBytes = 64 << 10;
constexpr int kPrefillPiecesPerThread = 16;  // the largest prefill piece: 1/16 of a share

// Interleaved matrices against the same quantized activations in one parallel job: the work
// items of all of them, token tile by token tile.
void RunX16Products(const X16Product* products, int n, const kernels::QuantizedActivations& acts,
                    int64_t s, ThreadPool* pool) {
  int64_t total = 0;
  for (int j = 0; j < n; ++j) total += products[j].items;
  const int64_t tile = acts.has_bf16 ? kTilesTokenBlock : kTokenTile;
  const int64_t nblocks = products[0].nblocks;  // the same activations: the same K
  const int64_t segment = acts.has_bf16 ? kTilesSegmentBlocks : nblocks;
  auto body = [&](int64_t begin, int64_t end) {
    for (int64_t t0 = 0; t0 < s; t0 += tile) {
      const int64_t t1 = std::min(s, t0 + tile);
      for (int64_t b0 = 0; b0 < nblocks; b0 += segment) {
        const int64_t b1 = std::min(nblocks, b0 + segment);
        int64_t first = 0;
        for (int j = 0; j < n; first += products[j].items, ++j) {
          const int64_t b = std::max(begin, first), e = std::min(end, first + products[j].items);
          if (b < e) products[j].Run(acts, t0, t1, b - first, e - first, b0, b1);
        }
      }
    }
  };
  if (pool != nullptr && s >= kTokenTile) {
    // Prefill: each thread works through its own contiguous part of the groups, front to
    // back, in pieces of at most 1/16 of its share (a piece's groups are re-read from L2 by
    // every token tile: 24 pairs of E2B's 1536-wide groups are 660 KB), and a thread done
    // with its part takes single items from the back of the other's. Chunks handed out in
    // turn (the former ParallelForTapered) had the two threads' items alternate through the
    // matrix and its output columns; kernels_bench at 128 tokens (3 alternating runs):
    // 2048 x 1536 1095 -> 1164 GOPS, 6144 x 1536 1163 -> 1176, 1536 x 6144 1119 -> 1143,
    // 1536 x 12288 1083 -> 1065. In the whole pass (gemma4 bench pp512, alternating) it is
    // neutral within the machine's noise: E2B Q4_0 means +1%, +2% and -0.3% over three runs
    // of 6 pairs, Q4_K_M 3 of 4 pairs faster.
    // The tile kernels take larger pieces: each piece rereads a segment's activations.
    const int64_t pieces =
        int64_t{acts.has_bf16 ? kTilesPiecesPerThread : kPrefillPiecesPerThread} *
        pool->num_threads();
    pool->ParallelForStreams(total, 1, body, /*max_piece=*/(total + pieces - 1) / pieces);
  } else if (pool != nullptr) {
    // Decode: each thread streams its own part of the groups, in pieces of about
    // kStreamPieceBytes, and helps with the other's from its back at the end.
    const int64_t item_bytes = products[0].group_bytes * products[0].per_item;
    pool->ParallelForStreams(total, std::max<int64_t>(1, kStreamPieceBytes / item_bytes), body);
  } else {
    body(0, total);
  }
}

// Prefill over BF16 rows on the bf16 tiles (AMX): each activation split into three bf16 parts
// that sum to it exactly (KernelTable::bf16_split_tiles, into this thread's scratch), so every
// product is exact and only the f32 sums round, as in the f32 kernels (in another order: not
// their bits). Three tile products a weight tile instead of one cost less than the f32 FMAs:
// the per-layer-input matrices, 10% of an E2B Q4_0 pp512 pass on the f32 kernels here.
// Items: pairs of 16-row groups; tokens in blocks and the rows in segments of blocks as for
// the quantized tiles (a call's split activations, 128 tokens x 64 blocks x 3 parts = 1.5 MiB,
// stay in L2 across its groups).
constexpr int64_t kBf16TilesTokenBlock = 128;
void MatMulBf16Tiles(const TensorView& w, const float* x, int64_t s, float* y, ThreadPool* pool) {
  const kernels::KernelTable& table = kernels::BestTable();
  const int64_t n_out = w.rows(), k = w.cols(), nblocks = k / quant::kBlock;
  const int64_t tiles = (s + 15) / 16, tile_values = nblocks * 3 * 512;
  struct SplitTag;
  PageVector<uint16_t>& split = ThreadScratch<PageVector<uint16_t>, SplitTag>();
  if (split.size() < static_cast<size_t>(tiles * tile_values)) split.resize(tiles * tile_values);
  auto split_tiles = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      table.bf16_split_tiles(x + i * 16 * k, k, static_cast<int>(std::min<int64_t>(16, s - i * 16)),
                             nblocks, split.data() + i * tile_values);
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(tiles, 1, split_tiles);
  } else {
    split_tiles(0, tiles);
  }
  const int64_t ngroups = n_out / 16, items = (ngroups + 1) / 2;
  const auto* rows = reinterpret_cast<const kernels::Bf16*>(w.data);
  auto body = [&](int64_t begin, int64_t end) {
    for (int64_t t0 = 0; t0 < s; t0 += kBf16TilesTokenBlock) {
      const int ntok = static_cast<int>(std::min(kBf16TilesTokenBlock, s - t0));
      for (int64_t b0 = 0; b0 < nblocks; b0 += kTilesSegmentBlocks) {
        const int64_t b1 = std::min(nblocks, b0 + kTilesSegmentBlocks);
        for (int64_t i = begin; i < end; ++i) {
          const int64_t g = 2 * i;
          table.tiles_bf16(rows + g * 16 * k, k,
                           static_cast<int>(std::min<int64_t>(2, ngroups - g)), b0, b1,
                           split.data(), nblocks, t0, ntok, y + t0 * n_out + g * 16, n_out,
                           /*accumulate=*/b0 > 0);
        }
      }
    }
  };
  if (pool != nullptr) {
    const int64_t pieces = int64_t{kTilesPiecesPerThread} * pool->num_threads();
    pool->ParallelForStreams(items, 1, body, /*max_piece=*/(items + pieces - 1) / pieces);
  } else {
    body(0, items);
  }
}

// Block-quantized weights: activations are quantized to int8 blocks once, then every weight
// row is dotted with up to four tokens at a time by the ISA's integer kernel. gelu_up: see
// QuantizeActivations.
void MatMulQuantized(const TensorView& w, const float* x, int64_t s, float* y, ThreadPool* pool,
                     const float* gelu_up = nullptr, int64_t run_tokens = 0) {
  const int64_t n_out = w.rows(), k = w.cols();
  const kernels::KernelTable& table = kernels::BestTable();
  const kernels::RowDotFn dot = w.dtype == DType::kQ8_0      ? table.dot_q8_0
                                : w.dtype == DType::kQ4_0R   ? table.dot_q4_0r
                                : w.dtype == DType::kQ8_0R   ? table.dot_q8_0r
                                : w.dtype == DType::kQ6_K    ? table.dot_q6_k
                                : w.dtype == DType::kQ4_K    ? table.dot_q4_k
                                : w.dtype == DType::kQ5_K    ? table.dot_q5_k
                                : w.dtype == DType::kQ3_K    ? table.dot_q3_k
                                : w.dtype == DType::kQ5_1    ? table.dot_q5_1
                                : w.dtype == DType::kQ4_1    ? table.dot_q4_1
                                : w.dtype == DType::kIQ4_XS  ? table.dot_iq4_xs
                                : w.dtype == DType::kIQ4_NL  ? table.dot_iq4_nl
                                : w.dtype == DType::kMXFP4   ? table.dot_mxfp4
                                : w.dtype == DType::kQ2_K    ? table.dot_q2_k
                                : w.dtype == DType::kIQ2_XXS ? table.dot_iq2_xxs
                                : w.dtype == DType::kIQ2_XS  ? table.dot_iq2_xs
                                : w.dtype == DType::kIQ2_S   ? table.dot_iq2_s
                                : w.dtype == DType::kIQ3_XXS ? table.dot_iq3_xxs
                                : w.dtype == DType::kIQ3_S   ? table.dot_iq3_s
                                : w.dtype == DType::kIQ1_S   ? table.dot_iq1_s
                                : w.dtype == DType::kIQ1_M   ? table.dot_iq1_m
                                                             : table.dot_q4_0;
  const kernels::QuantizedActivations& acts =
      QuantizeActivations(x, s, k, w.dtype, pool, gelu_up, nullptr, false, true, run_tokens);
  const uint64_t row_bytes = RowBytes(w.dtype, k);
  const int64_t nblocks = k / quant::kBlock;
  if (IsInterleavedX16(w.dtype)) {
    const X16Product product(w, s, y, acts);
    RunX16Products(&product, 1, acts, s, pool);
    return;
  }
  const auto gemm = w.dtype == DType::kQ4_0R   ? table.gemm_q4_0r
                    : w.dtype == DType::kQ8_0R ? table.gemm_q8_0r
                                               : nullptr;
  const bool tiled = gemm != nullptr && s > 1;
  // Codebook rows in prefill: groups of 16 rows decoded once into the kernel's panel and
  // multiplied with every token, where the table has that kernel for the type.
  if ((IsCodebookType(w.dtype) || IsOneBitCodebookType(w.dtype)) &&
      table.gemm_codebook_x16 != nullptr && table.gemm_codebook_x16_takes(w.dtype) && s >= 16) {
    auto groups = [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        const int nrows = static_cast<int>(std::min<int64_t>(16, n_out - 16 * g));
        table.gemm_codebook_x16(w.dtype, w.data + 16 * g * row_bytes, row_bytes, nrows, nblocks,
                                acts, s, y + 16 * g, n_out);
      }
    };
    if (pool != nullptr) {
      pool->ParallelFor((n_out + 15) / 16, 1, groups);
    } else {
      groups(0, (n_out + 15) / 16);
    }
    return;
  }
  // Codebook rows over whole token tiles where the table has the kernel (prefill).
  const bool codebook_tiles = (IsCodebookType(w.dtype) || IsOneBitCodebookType(w.dtype)) &&
                              table.dot_codebook_tile != nullptr && s > 4;
  auto body = [&](int64_t begin, int64_t end) {
    float out[kTokenTile];
    for (int64_t t0 = 0; t0 < s; t0 += kTokenTile) {
      const int64_t t1 = std::min(s, t0 + kTokenTile);
      if (codebook_tiles) {
        const int nt = static_cast<int>(t1 - t0);
        for (int64_t n = begin; n < end; ++n) {
          table.dot_codebook_tile(w.dtype, w.data + n * row_bytes, nblocks, acts, t0, nt, out);
          for (int i = 0; i < nt; ++i) y[(t0 + i) * n_out + n] = out[i];
        }
        continue;
      }
      for (int64_t n = begin; n < end; n += tiled ? 2 : 1) {
        const uint8_t* row = w.data + n * row_bytes;
        const int nrows = tiled && n + 1 < end ? 2 : 1;
        for (int64_t t = t0; t < t1; t += 4) {
          const int nt = static_cast<int>(std::min<int64_t>(4, t1 - t));
          if (tiled) {
            gemm(row, row_bytes, nrows, nblocks, acts, t, nt, out, 4);
          } else {
            dot(row, nblocks, acts, t, nt, out);
          }
          for (int r = 0; r < nrows; ++r) {
            for (int i = 0; i < nt; ++i) y[(t + i) * n_out + n + r] = out[r * 4 + i];
          }
        }
      }
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(n_out, 16, body);
  } else {
    body(0, n_out);
  }
}

}  // namespace

void MatMulGeluMul(const TensorView& w, float* g, const float* u, int64_t s, float* y,
                   ThreadPool* pool) {
  if (IsBlockType(w.dtype)) {
    MatMulQuantized(w, g, s, y, pool, u);
    return;
  }
  GeluMul(g, u, g, s * w.cols(), pool);
  MatMul(w, g, s, y, pool);
}

void MatMulShared(const TensorView* const* w, float* const* y, int n, const float* x, int64_t s,
                  ThreadPool* pool) {
  constexpr int kMaxShared = 4;
  bool shared = n >= 2 && n <= kMaxShared && IsInterleavedX16(w[0]->dtype);
  for (int j = 1; j < n && shared; ++j) {
    shared = w[j]->dtype == w[0]->dtype && w[j]->cols() == w[0]->cols();
  }
  if (!shared) {
    for (int j = 0; j < n; ++j) MatMul(*w[j], x, s, y[j], pool);
    return;
  }
  const kernels::QuantizedActivations& acts =
      QuantizeActivations(x, s, w[0]->cols(), w[0]->dtype, pool, nullptr);
  std::vector<X16Product> products;
  products.reserve(n);
  for (int j = 0; j < n; ++j) products.emplace_back(*w[j], s, y[j], acts);
  RunX16Products(products.data(), n, acts, s, pool);
}

void MatMulSharedRows(const TensorView* const* w, float* const* y, int n, int64_t s,
                      const MakeRow& make_row, float* scratch, ThreadPool* pool) {
  const int64_t k = w[0]->cols();
  bool shared = n >= 1 && IsInterleavedX16(w[0]->dtype);
  for (int j = 1; j < n && shared; ++j) {
    shared = w[j]->dtype == w[0]->dtype && w[j]->cols() == k;
  }
  if (!shared) {
    auto rows = [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) make_row(t, scratch + t * k);
    };
    if (pool != nullptr && s >= 8) {
      pool->ParallelFor(s, 4, rows);
    } else {
      rows(0, s);
    }
    MatMulShared(w, y, n, scratch, s, pool);
    return;
  }
  const kernels::QuantizedActivations& acts =
      QuantizeActivations(scratch, s, k, w[0]->dtype, pool, nullptr, &make_row);
  std::vector<X16Product> products;
  products.reserve(n);
  for (int j = 0; j < n; ++j) products.emplace_back(*w[j], s, y[j], acts);
  RunX16Products(products.data(), n, acts, s, pool);
}

int64_t PrefillStepTokens() {
  return kernels::BestTable().tiles_q4_0x16 != nullptr ? kTilesTokenBlock
                                                       : kSmallestPrefillStepTokens;
}

void MatMul(const TensorView& w, const float* x, int64_t s, float* y, ThreadPool* pool,
            int64_t run_tokens) {
  if (IsBlockType(w.dtype)) {  // every block-quantized layout, plain or repacked
    MatMulQuantized(w, x, s, y, pool, nullptr, run_tokens);
    return;
  }
  const int64_t n_out = w.rows(), k = w.cols();
  // Float weights: the BF16 per-layer-input gate and projection, F32/F16/BF16 checkpoints.
  // Decode (up to four tokens): rows read in place by the matvec kernels, front to back, one
  // row after another (16-bit rows widened exactly, so the sums are those of the f32 rows):
  // 2 bytes per BF16 weight streamed once, no f32 copy written and re-read.
  const kernels::KernelTable& table = kernels::BestTable();
  const uintptr_t address = reinterpret_cast<uintptr_t>(w.data);
  const bool in_place = w.dtype == DType::kF32 ? address % alignof(float) == 0
                        : w.dtype == DType::kBF16 || w.dtype == DType::kF16 ? address % 2 == 0
                                                                            : false;
  // Runs of 16 tokens or more over BF16 rows on the bf16 tiles (AMX; MatMulBf16Tiles).
  if (in_place && w.dtype == DType::kBF16 && std::max(s, run_tokens) >= 16 &&
      table.tiles_bf16 != nullptr && k % quant::kBlock == 0 && n_out % 16 == 0) {
    MatMulBf16Tiles(w, x, s, y, pool);
    return;
  }
  if (in_place && s <= 4) {
    auto rows = [&](int64_t begin, int64_t end) {
      const int nx = static_cast<int>(s);
      if (w.dtype == DType::kBF16) {
        table.matvec_bf16(x, k, nx, reinterpret_cast<const kernels::Bf16*>(w.data) + begin * k, k,
                          end - begin, k, y + begin, n_out);
      } else if (w.dtype == DType::kF16) {
        table.matvec_f16(x, k, nx, reinterpret_cast<const uint16_t*>(w.data) + begin * k, k,
                         end - begin, k, y + begin, n_out);
      } else {
        table.matvec_f32(x, k, nx, reinterpret_cast<const float*>(w.data) + begin * k, k,
                         end - begin, k, y + begin, n_out);
      }
    };
    if (pool != nullptr) {
      const int64_t row_bytes = static_cast<int64_t>(RowBytes(w.dtype, k));
      // In pieces of about kStreamPieceBytes, a multiple of 16 rows (MatVecRows' blocks).
      pool->ParallelForStreams(
          n_out, std::max<int64_t>(1, kStreamPieceBytes / (16 * row_bytes)) * 16, rows);
    } else {
      rows(0, n_out);
    }
    return;
  }
  // Prefill over BF16 rows (the per-layer-input gate 256 x 1536 and projection 1536 x 256, the
  // model projection 8960 x 1536): the rows widened on load inside the blocked dot-product
  // kernel (exact, the same kernel and order of sums as below, so the same bits) instead of
  // copied to f32 a block at a time first.
  if (in_place && w.dtype == DType::kBF16) {
    auto rows16 = [&](int64_t begin, int64_t end) {
      for (int64_t t0 = 0; t0 < s; t0 += 64) {
        const int nt = static_cast<int>(std::min<int64_t>(64, s - t0));
        table.attention_scores_bf16(x + t0 * k, k, nt,
                                    reinterpret_cast<const kernels::Bf16*>(w.data) + begin * k, k,
                                    end - begin, k, y + t0 * n_out + begin, n_out);
      }
    };
    if (pool != nullptr) {
      pool->ParallelFor(n_out, 16, rows16);
    } else {
      rows16(0, n_out);
    }
    return;
  }
  // Prefill: rows converted to f32 a block at a time, then every token against the block with
  // the blocked dot-product kernel (y[t, n] = x_t . w_n for 6 tokens x 4 rows per register
  // block on AVX-512, 4 x 2 elsewhere). Blocks of 4 rows instead of 16 were no faster.
  constexpr int64_t kRowBlock = 16;
  auto body = [&](int64_t begin, int64_t end) {
    const bool direct =
        w.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(w.data) % alignof(float) == 0;
    struct RowsTag;
    PageVector<float>& rows = ThreadScratch<PageVector<float>, RowsTag>();  // like the int8 one
    if (!direct) rows.resize(kRowBlock * k);
    for (int64_t n = begin; n < end; n += kRowBlock) {
      const int64_t nr = std::min(kRowBlock, end - n);
      const float* wr;
      if (direct) {
        wr = reinterpret_cast<const float*>(w.data) + n * k;
      } else {
        ToF32(w, n * k, nr * k, rows.data());
        wr = rows.data();
      }
      for (int64_t t0 = 0; t0 < s; t0 += 64) {
        const int nt = static_cast<int>(std::min<int64_t>(64, s - t0));
        AttentionScores(x + t0 * k, k, nt, wr, k, nr, k, y + t0 * n_out + n, n_out);
      }
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(n_out, 16, body);
  } else {
    body(0, n_out);
  }
}

void MatMulGrouped(const TensorView& w, int64_t rows, const MatMulGroup* groups, int64_t n_groups,
                   const float* x, float* y, ThreadPool* pool) {
  const int64_t k = w.cols();
  bool aligned = IsInterleavedX16(w.dtype) && rows % 16 == 0;
  for (int64_t i = 0; i < n_groups && aligned; ++i) aligned = groups[i].first_row % 16 == 0;
  if (!aligned) {  // other layouts: one MatMul per group, as the callers did before
    for (int64_t i = 0; i < n_groups; ++i) {
      const MatMulGroup& g = groups[i];
      MatMul(w.RowSlice(g.first_row, rows), x + g.first_token * k, g.tokens,
             y + g.first_token * rows, pool);
    }
    return;
  }
  // Units of work: one tile of at most 16 of a group's tokens (tiles start at the group's first
  // token, as MatMul's do) times one group of 16 interleaved rows, so each output is computed
  // by the same kernel call on the same quantized activations as MatMul of its group.
  constexpr int64_t kTokenTile = 16;
  int64_t total_tokens = 0;
  struct TokenTile {
    int64_t group, first_token;
    int tokens;
  };
  std::vector<TokenTile> tiles;
  for (int64_t i = 0; i < n_groups; ++i) {
    total_tokens = std::max(total_tokens, groups[i].first_token + groups[i].tokens);
    for (int64_t t = 0; t < groups[i].tokens; t += kTokenTile) {
      tiles.push_back({i, groups[i].first_token + t,
                       static_cast<int>(std::min(kTokenTile, groups[i].tokens - t))});
    }
  }
  const kernels::KernelTable& table = kernels::BestTable();
  // Decode's experts see one token each: the kernel then reads one token at a time, from
  // contiguous blocks (QuantizedActivations::ResizeInterleaved).
  const bool one_token_each =
      std::all_of(tiles.begin(), tiles.end(), [](const TokenTile& t) { return t.tokens == 1; });
  const kernels::QuantizedActivations& acts =
      QuantizeActivations(x, total_tokens, k, w.dtype, pool, nullptr, nullptr, one_token_each,
                          /*whole_tiles=*/false);
  const kernels::GemmX16Fn gemm16 = Gemm16For(table, w.dtype);
  const int64_t row_groups = rows / 16, nblocks = k / quant::kBlock;
  const int64_t group_bytes = 16 * static_cast<int64_t>(RowBytes(w.dtype, k));
  auto body = [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const TokenTile& tile = tiles[unit / row_groups];
      const int64_t row_group = unit % row_groups;
      gemm16(w.data + (groups[tile.group].first_row / 16 + row_group) * group_bytes, nblocks, acts,
             tile.first_token, tile.tokens, y + tile.first_token * rows + row_group * 16, rows);
    }
  };
  const int64_t units = static_cast<int64_t>(tiles.size()) * row_groups;
  if (pool != nullptr && total_tokens < kTokenTile) {
    // Decode (one token per selected expert): the experts' rows streamed as the dense
    // matmuls' are, in pieces of about kStreamPieceBytes.
    pool->ParallelForStreams(units, std::max<int64_t>(1, kStreamPieceBytes / group_bytes), body);
  } else if (pool != nullptr) {
    pool->ParallelFor(units, 1, body);
  } else {
    body(0, units);
  }
}

namespace {

// 64-byte aligned f32 scratch of `count` values: the GEMM kernels load whole aligned vectors.
// The buffer only grows: a tower's matmuls alternate between sizes, and resizing down and back
// up would zero-fill the regrown part on every call.
template <class FloatVector>
float* AlignedFloats(FloatVector& buffer, int64_t count) {
  if (buffer.size() < static_cast<size_t>(count + 16)) buffer.resize(count + 16);
  const uintptr_t address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + ((64 - address % 64) % 64) / sizeof(float);
}

}  // namespace

void PackGemmWeights(const TensorView& w, PackedGemmWeights* out, ThreadPool* pool) {
  const int64_t n_out = w.rows(), k = w.cols();
  const kernels::KernelTable& table = kernels::BestTable();
  const int nr = table.gemm_f32_nr;
  const int64_t panels = (n_out + nr - 1) / nr;
  out->n_out = n_out;
  out->k = k;
  out->nr = nr;
  out->storage16.reset();
  out->panels16 = nullptr;
  out->panel_type = DType::kF32;
  float* const packed = AlignedFloats(out->storage, panels * nr * k);
  out->panels = packed;
  const bool direct =
      w.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(w.data) % alignof(float) == 0;
  // 16-bit weights are widened a slice of k at a time ([nr, kSliceK], 32 KiB for nr = 32) and
  // the slice packed while it is in L1: the panel layout is k-major, so a slice of k is a
  // contiguous part of the panel.
  constexpr int64_t kSliceK = 256;
  auto pack_panels = [&](int64_t begin, int64_t end) {
    struct RowsTag;
    PageVector<float>& rows = ThreadScratch<PageVector<float>, RowsTag>();
    if (!direct && rows.size() < static_cast<size_t>(nr * kSliceK)) rows.resize(nr * kSliceK);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n0 = p * nr;
      const int nrows = static_cast<int>(std::min<int64_t>(nr, n_out - n0));
      float* const panel = packed + p * nr * k;
      if (direct) {
        table.pack_gemm_panel(reinterpret_cast<const float*>(w.data) + n0 * k, k, nrows, k, nr,
                              panel);
        continue;
      }
      for (int64_t i0 = 0; i0 < k; i0 += kSliceK) {
        const int64_t kc = std::min(kSliceK, k - i0);
        for (int r = 0; r < nrows; ++r) ToF32(w, (n0 + r) * k + i0, kc, rows.data() + r * kc);
        table.pack_gemm_panel(rows.data(), kc, nrows, kc, nr, panel + i0 * nr);
      }
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(panels, 1, pack_panels);
  } else {
    pack_panels(0, panels);
  }
}

uint64_t PackedGemmWeights::PanelBytes() const {
  if (nr == 0) return 0;
  const uint64_t values = static_cast<uint64_t>((n_out + nr - 1) / nr * nr) * k;
  return panels16 != nullptr ? 2 * values : 4 * values;
}

uint64_t PackedGemm16Bytes(int64_t rows, int64_t cols) {
  const int nr = kernels::BestTable().gemm_f32_nr;
  return 2 * static_cast<uint64_t>((rows + nr - 1) / nr * nr) * static_cast<uint64_t>(cols);
}

Status PackGemmWeights16(const TensorView& w, PackedGemmWeights* out, ThreadPool* pool) {
  if ((w.dtype != DType::kF16 && w.dtype != DType::kBF16) || w.shape.size() != 2 ||
      reinterpret_cast<uintptr_t>(w.data) % alignof(uint16_t) != 0) {
    return InvalidArgumentError("tensor '" + w.name + "' (" + DTypeName(w.dtype) + " " +
                                w.ShapeString() +
                                "): 16-bit panels need an aligned 2-D F16 or BF16 matrix");
  }
  const int64_t n_out = w.rows(), k = w.cols();
  const int nr = kernels::BestTable().gemm_f32_nr;
  const int64_t panels = (n_out + nr - 1) / nr;
  const int64_t values = panels * nr * k;
  // Not value-initialised: every value is written below (a zeroing pass would touch the
  // pages twice).
  out->storage16 = std::make_unique_for_overwrite<uint16_t[]>(values + 32);
  const uintptr_t address = reinterpret_cast<uintptr_t>(out->storage16.get());
  uint16_t* const packed = out->storage16.get() + ((64 - address % 64) % 64) / sizeof(uint16_t);
  out->storage.clear();
  out->storage.shrink_to_fit();
  out->panels = nullptr;
  out->panels16 = packed;
  out->panel_type = w.dtype;
  out->n_out = n_out;
  out->k = k;
  out->nr = nr;
  const uint16_t* const src = reinterpret_cast<const uint16_t*>(w.data);
  auto pack_panels = [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int nrows = static_cast<int>(std::min<int64_t>(nr, n_out - p * nr));
      kernels::PackGemmPanel16(src + p * nr * k, k, nrows, k, nr, packed + p * nr * k);
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(panels, 1, pack_panels);
  } else {
    pack_panels(0, panels);
  }
  return OkStatus();
}

void MatMulGemm(const PackedGemmWeights& w, const float* x, int64_t s, float* y, ThreadPool* pool) {
  const int64_t n_out = w.n_out, k = w.k;
  if (s <= 0 || n_out <= 0) return;
  const kernels::KernelTable& table = kernels::BestTable();
  // Goto-style blocking. The tokens are packed into k-major tiles of gemm_f32_mr, once per
  // call; the weight rows are k-major panels of gemm_f32_nr (PackGemmWeights). A work item is a
  // group of panels times a chunk of token tiles, walked one k block at a time: each token
  // tile's k block meets every panel of the group, so tokens are read from memory once per
  // group rather than once per panel, and weights once per token chunk. A panel's k block is
  // up to 256 KiB (k <= 2048 in one block on AVX-512): on a Zen 5 core, the towers' shapes
  // ([750 or 256 tokens] x [768..4096] x [768..4096]) ran 8% faster on average than with
  // 64 KiB blocks, whose extra accumulate passes reload the outputs and cut the FMA chains
  // short (bench: the same loop with block sizes of 16 KiB to all of k).
  const int mr = table.gemm_f32_mr, nr = table.gemm_f32_nr;
  const int64_t tiles = (s + mr - 1) / mr, panels = (n_out + nr - 1) / nr;
  constexpr int64_t kPanelBlockBytes = 256 * 1024;
  const int64_t k_blocks =
      std::max<int64_t>(1, (k * nr * 4 + kPanelBlockBytes - 1) / kPanelBlockBytes);
  const int64_t k_block = (k + k_blocks - 1) / k_blocks;
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  const int64_t group = std::clamp<int64_t>(panels / (4 * threads), 1, 8);
  const int64_t groups = (panels + group - 1) / group;
  constexpr int64_t kChunkTiles = 16;  // up to 224 tokens on AVX-512
  const int64_t chunks = (tiles + kChunkTiles - 1) / kChunkTiles;
  struct PackedTokensTag;
  float* const packed_x =
      AlignedFloats(ThreadScratch<PageVector<float>, PackedTokensTag>(), tiles * mr * k);
  const float* const packed_w = w.panels;
  const uint16_t* const packed_w16 = w.panels16;
  // 16-bit panels were packed for this table's panel width (the table is fixed per process).
  const auto gemm16 = w.panel_type == DType::kBF16 ? table.gemm_bf16_packed : table.gemm_f16_packed;
  auto pack_tokens = [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) {
      const int nt = static_cast<int>(std::min<int64_t>(mr, s - tile * mr));
      table.pack_gemm_tokens(x + tile * mr * k, k, nt, k, mr, packed_x + tile * mr * k);
    }
  };
  auto multiply = [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t g = item / chunks, chunk = item % chunks;
      const int64_t p_end = std::min(panels, (g + 1) * group);
      const int64_t tile_end = std::min(tiles, (chunk + 1) * kChunkTiles);
      for (int64_t i0 = 0; i0 < k; i0 += k_block) {
        const int64_t kc = std::min(k_block, k - i0);
        for (int64_t tile = chunk * kChunkTiles; tile < tile_end; ++tile) {
          const int nt = static_cast<int>(std::min<int64_t>(mr, s - tile * mr));
          const float* xp = packed_x + tile * mr * k + i0 * mr;
          for (int64_t p = g * group; p < p_end; ++p) {
            const int nrows = static_cast<int>(std::min<int64_t>(nr, n_out - p * nr));
            float* const yt = y + tile * mr * n_out + p * nr;
            if (packed_w16 != nullptr) {
              gemm16(xp, packed_w16 + p * nr * k + i0 * nr, kc, nt, nrows, yt, n_out, i0 > 0);
            } else {
              table.gemm_f32_packed(xp, packed_w + p * nr * k + i0 * nr, kc, nt, nrows, yt, n_out,
                                    i0 > 0);
            }
          }
        }
      }
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(tiles, 1, pack_tokens);
    pool->ParallelFor(groups * chunks, 1, multiply);
  } else {
    pack_tokens(0, tiles);
    multiply(0, groups * chunks);
  }
}

int64_t GemmTokenTile() { return kernels::BestTable().gemm_f32_mr; }

void MatMulGemm(const TensorView& w, const float* x, int64_t s, float* y, ThreadPool* pool) {
  if (IsBlockType(w.dtype)) {
    MatMul(w, x, s, y, pool);
    return;
  }
  if (s <= 0 || w.rows() <= 0) return;
  // The panels live in this thread's scratch, reused by the next call (a fresh buffer per call
  // would come back from the OS as zeroed pages every time).
  struct PackedWeightsTag;
  PackedGemmWeights& packed = ThreadScratch<PackedGemmWeights, PackedWeightsTag>();
  PackGemmWeights(w, &packed, pool);
  MatMulGemm(packed, x, s, y, pool);
}

uint64_t DenseAttentionThreadBytes(int64_t n, int64_t head_dim) {
  const int64_t nr = kernels::BestTable().gemm_f32_nr;
  // The query panel [hd, nr], the scores [n, nr] and the transposed output [hd, nr] with the
  // columns' sums, each with AlignedFloats' 16 floats of room.
  const int64_t floats = (head_dim * nr + 16) + (n * nr + 16) + (head_dim * nr + nr + 16);
  return static_cast<uint64_t>(floats) * sizeof(float);
}

void DenseAttention(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v,
                    int64_t ldv, int64_t n, int n_heads, int n_kv_heads, int head_dim, float* out,
                    int64_t ldo, ThreadPool* pool) {
  if (n <= 0 || n_heads <= 0) return;
  const kernels::KernelTable& table = kernels::BestTable();
  const int mr = table.gemm_f32_mr, nr = table.gemm_f32_nr;
  const int64_t hd = head_dim, n_rep = n_heads / n_kv_heads;
  // The scores are computed transposed, S^T [n keys, nr queries] = K Q^T, with the keys on the
  // micro-kernel's token side (tiles of mr keys packed k-major over hd, once per KV head) and a
  // tile of nr queries as its weight panel ([hd, nr]). Each query is then a column: the softmax
  // runs down the columns as plain vector ops (no transposes), and S^T as it stands is the
  // weight panel of the second product, out^T [hd, nr] = V^T S^T, whose token side is V^T in
  // tiles of <= mr head dims ([n, mr] each, packed once per KV head). The columns' sums divide
  // out^T as it is written back to out [nr queries, hd].
  const int64_t key_tiles = (n + mr - 1) / mr, dim_tiles = (hd + mr - 1) / mr;
  const int64_t key_floats = key_tiles * mr * hd, value_floats = dim_tiles * n * mr;
  // Dim tile c covers [DimStart(c), DimStart(c + 1)): sizes as even as possible (64 = 13 + 13 +
  // 13 + 13 + 12 for mr = 14) so no tile is a near-empty tail.
  auto dim_start = [&](int64_t c) { return c * hd / dim_tiles; };
  struct KeysTag;
  struct ValuesTag;
  // Huge-page backed: [heads, n, hd] each, 7.7 MB for E2B's 2520 patches, faulted in once.
  float* const packed_k =
      AlignedFloats(ThreadScratch<HugePageVector<float>, KeysTag>(), n_kv_heads * key_floats);
  float* const packed_v =
      AlignedFloats(ThreadScratch<HugePageVector<float>, ValuesTag>(), n_kv_heads * value_floats);
  auto pack_keys = [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t g = item / key_tiles, p = item % key_tiles;
      const int nt = static_cast<int>(std::min<int64_t>(mr, n - p * mr));
      table.pack_gemm_tokens(k + p * mr * ldk + g * hd, ldk, nt, hd, mr,
                             packed_k + g * key_floats + p * mr * hd);
    }
  };
  constexpr int64_t kKeyRun = 64;  // keys per packing item of the values
  const int64_t key_runs = (n + kKeyRun - 1) / kKeyRun;
  auto pack_values = [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t g = item / key_runs, j0 = item % key_runs * kKeyRun;
      const int64_t j1 = std::min(n, j0 + kKeyRun);
      for (int64_t c = 0; c < dim_tiles; ++c) {
        const int64_t d0 = dim_start(c), dims = dim_start(c + 1) - d0;
        float* tile = packed_v + g * value_floats + c * n * mr;
        for (int64_t j = j0; j < j1; ++j) {
          std::copy_n(v + j * ldv + g * hd + d0, dims, tile + j * mr);
          std::fill(tile + j * mr + dims, tile + (j + 1) * mr, 0.0f);
        }
      }
    }
  };
  // One item: one query head and one tile of nr queries.
  const int64_t query_tiles = (n + nr - 1) / nr;
  auto attend = [&](int64_t begin, int64_t end) {
    struct QueryTag;
    struct ScoresTag;
    struct OutTag;
    // DenseAttentionThreadBytes counts these three for the memory plan: keep it in step.
    float* const panel = AlignedFloats(ThreadScratch<PageVector<float>, QueryTag>(), hd * nr);
    float* const scores = AlignedFloats(ThreadScratch<PageVector<float>, ScoresTag>(), n * nr);
    float* const out_t = AlignedFloats(ThreadScratch<PageVector<float>, OutTag>(), hd * nr + nr);
    float* const sums = out_t + hd * nr;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t h = item / query_tiles, t0 = item % query_tiles * nr, g = h / n_rep;
      const int nq = static_cast<int>(std::min<int64_t>(nr, n - t0));
      // Queries past nq are zero in the panel: their columns hold exp(0 - 0) = 1, unused.
      table.pack_gemm_panel(q + t0 * ldq + h * hd, ldq, nq, hd, nr, panel);
      const float* keys = packed_k + g * key_floats;
      for (int64_t p = 0; p < key_tiles; ++p) {
        const int nt = static_cast<int>(std::min<int64_t>(mr, n - p * mr));
        table.gemm_f32_packed(keys + p * mr * hd, panel, hd, nt, nr, scores + p * mr * nr, nr,
                              false);
      }
      table.exp_columns_f32(scores, n, nr, nr, sums);
      const float* values = packed_v + g * value_floats;
      for (int64_t c = 0; c < dim_tiles; ++c) {
        const int64_t d0 = dim_start(c);
        const int dims = static_cast<int>(dim_start(c + 1) - d0);
        table.gemm_f32_packed(values + c * n * mr, scores, n, dims, nr, out_t + d0 * nr, nr, false);
      }
      // The division along out^T's rows (vector divides, the same quotients as one at a time),
      // then the transposed copy.
      for (int64_t d = 0; d < hd; ++d) {
        float* col = out_t + d * nr;
        for (int t = 0; t < nr; ++t) col[t] /= sums[t];
      }
      for (int t = 0; t < nq; ++t) {
        float* row = out + (t0 + t) * ldo + h * hd;
        for (int64_t d = 0; d < hd; ++d) row[d] = out_t[d * nr + t];
      }
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(n_kv_heads * key_tiles, 1, pack_keys);
    pool->ParallelFor(n_kv_heads * key_runs, 1, pack_values);
    pool->ParallelFor(n_heads * query_tiles, 1, attend);
  } else {
    pack_keys(0, n_kv_heads * key_tiles);
    pack_values(0, n_kv_heads * key_runs);
    attend(0, n_heads * query_tiles);
  }
}

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  const double sum = kernels::BestTable().sum_squares_f32(x, n);
  const float ms = static_cast<float>(sum / static_cast<double>(n)) + eps;
  const float inv = 1.0f / std::sqrt(ms);
  if (weight != nullptr) {
    for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * inv) * weight[i];
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv;
  }
}

void ApplyRope(float* x, int head_dim, const float* inv_freq, int rotated_pairs, int64_t position) {
  const int half = head_dim / 2;
  const float pos = static_cast<float>(position);
  for (int i = 0; i < rotated_pairs; ++i) {
    const float angle = inv_freq[i] * pos;
    const float c = std::cos(angle), s = std::sin(angle);
    const float a = x[i], b = x[i + half];
    x[i] = a * c - b * s;
    x[i + half] = b * c + a * s;
  }
}

void RopeTable(const float* inv_freq, int rotated_pairs, int64_t position, float* cos_out,
               float* sin_out) {
  const float pos = static_cast<float>(position);
  for (int i = 0; i < rotated_pairs; ++i) {
    const float angle = inv_freq[i] * pos;
    cos_out[i] = std::cos(angle);
    sin_out[i] = std::sin(angle);
  }
}

void ApplyRopeTable(float* x, int head_dim, const float* cos_table, const float* sin_table,
                    int rotated_pairs) {
  const int half = head_dim / 2;
  for (int i = 0; i < rotated_pairs; ++i) {
    const float c = cos_table[i], s = sin_table[i];
    const float a = x[i], b = x[i + half];
    x[i] = a * c - b * s;
    x[i + half] = b * c + a * s;
  }
}

void Softmax(float* x, int64_t n) { kernels::BestTable().softmax_f32(x, n); }

void AttentionScores(const float* q, int64_t ldq, int nq, const float* k, int64_t ldk, int64_t nk,
                     int64_t d, float* scores, int64_t ldsc) {
  kernels::BestTable().attention_scores_f32(q, ldq, nq, k, ldk, nk, d, scores, ldsc);
}

void AttentionValues(const float* p, int64_t ldp, int nq, const float* v, int64_t ldv, int64_t nk,
                     int64_t d, float* out, int64_t ldo) {
  kernels::BestTable().attention_values_f32(p, ldp, nq, v, ldv, nk, d, out, ldo);
}

void AttentionScores(const float* q, int64_t ldq, int nq, const uint16_t* k, int64_t ldk,
                     int64_t nk, int64_t d, float* scores, int64_t ldsc) {
  kernels::BestTable().attention_scores_f16(q, ldq, nq, k, ldk, nk, d, scores, ldsc);
}

void AttentionValues(const float* p, int64_t ldp, int nq, const uint16_t* v, int64_t ldv,
                     int64_t nk, int64_t d, float* out, int64_t ldo) {
  kernels::BestTable().attention_values_f16(p, ldp, nq, v, ldv, nk, d, out, ldo);
}

void DequantizeQ8_0(const uint8_t* blocks, int64_t nblocks, float* out) {
  kernels::BestTable().dequantize_q8_0(blocks, nblocks, out);
}

void DequantizeQ4_0(const uint8_t* blocks, int64_t nblocks, float* out) {
  kernels::BestTable().dequantize_q4_0(blocks, nblocks, out);
}

void Softcap(float* x, int64_t n, float cap) { kernels::BestTable().softcap_f32(x, n, cap); }

}  // namespace gemma4::ops
