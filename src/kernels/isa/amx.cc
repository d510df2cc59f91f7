// AMX (AMX-TILE + AMX-BF16) prefill kernels for the Q4_0x16, Q8_0x16, Q4_Kx16 and Q6_Kx16 layouts,
// on top of the AVX-512 VNNI table (Intel Sapphire Rapids and later). Prefill's activations are
// rounded to bfloat16 once (QuantizedActivations::bf16, tiles of 16 tokens x 32 values), each
// weight block is dequantized to bfloat16 once per call (d q; d sc q - dmin m for Q4_K; d sc q
// for Q6_K: exact in f32, then rounded) and serves every tile of the call's tokens, and one
// TDPBF16PS multiplies 16 tokens x 32 values by 32 values x 16 rows into f32 sums that stay in a
// tile register across the blocks: no per-block float step at all.
//
// Why bfloat16 rather than the int8 tiles (TDPBSSD) the quantized weights suggest: each 32-value
// block has its own scales, so an int8 tile's int32 sums must leave the tile unit after every
// block for a float multiply-add per sum; on this core those float steps took as long as the
// tile products and never overlapped them (16 x 16 x 32 block-tile: 27-44 ns, against 14-22 for
// the bf16 tiles here; docs/performance.md, round eleven). A TDPBF16PS does the same 16 x 16 x
// 32 multiply-adds as the half-zero K = 64 TDPBSSD the int8 kernels ran, in the same time.
//
// Numerics: every weight rounds once to bf16 (8 significant bits: relative error <= 2^-9, small
// against 4-bit quantization's own), every activation once to bf16 (<= 2^-9 relative, where
// int8 blocks err up to 1/254 of the block's largest value), products exact, sums in f32. So the
// results are not the VNNI kernels' bits but closer to the exact product of the dequantized
// weights and the f32 activations (AmxKernelTest measures both).
// Compiled with AVX-512 + AMX flags; only called after CpuSupports(Isa::kAvx512Amx), which also
// asks Linux for the tile-data permission.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#define GEMMA4_ISA_NAMESPACE amx
#include <immintrin.h>

#include <algorithm>

#include "kernels/isa/avx512_transpose-inl.h"
#include "kernels/kernels.h"
#include "kernels/pack/pack.h"

namespace gemma4::kernels::amx {
namespace {

// Tile registers: 0-3 the f32 sums C (16 tokens x 16 rows; C[2 g + t] for token tile t and
// group g of the step), 4 and 5 the activations A of two token tiles (16 tokens x 32 bf16), 6
// and 7 the weights B of two 16-row groups (16 rows of pairs: row k2 holds values 2 k2 and
// 2 k2 + 1 of each of the 16 weight rows, the layout TDPBF16PS reads). Two tiles of tokens times
// two groups make four independent sums per block: one TDPBF16PS's result feeds the next one
// on the same C only after its latency (a single chain ran at a third of the throughput).
// GCC's tile intrinsics paste the register number into the instruction: literals.
struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// In static storage: a configuration built on the stack can be optimised away before
// ldtilecfg reads it (llama.cpp's AMX path crashed so, ggml-org/llama.cpp#26954).
constexpr TileConfig MakeConfig() {
  TileConfig c{};
  c.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    c.rows[t] = 16;
    c.colsb[t] = 64;
  }
  return c;
}
alignas(64) constexpr TileConfig kConfig = MakeConfig();

constexpr int kTileValues = 16 * 32;  // bf16 values of an A or B tile of one block (1 KiB)
constexpr int kMaxGroups = 2;
constexpr int64_t kChunkBlocks = 64;  // blocks dequantized at a time: 64 KiB a group
constexpr int64_t kMaxTiles = 33;     // tiles of tokens a pass: a call's 512, +1 if unaligned
// GemmTiles' thread_local buffers (dequantized weights, the tiles' sums between chunks), for
// the memory plan.
constexpr int64_t kThreadScratchBytes =
    kMaxGroups * kChunkBlocks * kTileValues * 2 + kMaxTiles * kMaxGroups * 256 * 4;

// The 16 rows' factors (one f32 a row) spread for the four quarters of a 64-byte block of
// values in the x16 int8 layout (byte 4 r + i: value i of four consecutive values of row r):
// quarter q holds rows 4q..4q+3, so lane l takes row 4q + l / 4's factor.
struct RowFactors {
  __m512 quarter[4];
};
__attribute__((always_inline)) inline RowFactors Spread(__m512 rows) {
  RowFactors f;
  for (int q = 0; q < 4; ++q) {
    const __m512i index = _mm512_add_epi32(
        _mm512_srli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                          2),
        _mm512_set1_epi32(4 * q));
    f.quarter[q] = _mm512_permutexvar_ps(index, rows);
  }
  return f;
}

// 64 f32 values in the x16 layout's order (f[q]: four consecutive values v..v+3 of rows 4q..
// 4q+3, lane 4 (r - 4q) + i) rounded to bf16 and stored as the two B-tile rows they make:
// values v, v+1 of every row (dword r: row r's pair) at row0, values v+2, v+3 at row0 + 32.
__attribute__((always_inline)) inline void StoreBRows(const __m512 (&f)[4], uint16_t* row0) {
  // Dword j of each: row j / 2 (rows 0-7, then 8-15), pair j % 2.
  const __m512i rows_0_7 = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(f[1], f[0]));
  const __m512i rows_8_15 = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(f[3], f[2]));
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  _mm512_store_si512(row0, _mm512_permutex2var_epi32(rows_0_7, even, rows_8_15));
  _mm512_store_si512(row0 + 32, _mm512_permutex2var_epi32(rows_0_7, odd, rows_8_15));
}

// 64 signed bytes in the x16 int8 layout (byte 4 r + i: value i of four consecutive values of
// row r), each times its row's scale, as StoreBRows' two rows.
__attribute__((always_inline)) inline void StoreScaledBytes(__m512i values, const RowFactors& scale,
                                                            uint16_t* row0) {
  auto widen = [&](__m128i bytes, int q) {
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)), scale.quarter[q]);
  };
  // The lane indices are immediates: spelled out (a loop is not unrolled at -O1).
  const __m512 f[4] = {widen(_mm512_castsi512_si128(values), 0),
                       widen(_mm512_extracti32x4_epi32(values, 1), 1),
                       widen(_mm512_extracti32x4_epi32(values, 2), 2),
                       widen(_mm512_extracti32x4_epi32(values, 3), 3)};
  StoreBRows(f, row0);
}

// A Q4_0x16 data area (256 bytes; byte 64 c + 4 r + i: value 8c + i of row r in the low nibble,
// 8c + 4 + i in the high one, the layout Q4_Kx16's sub-blocks share) as the block's 16 B-tile
// rows, each nibble q as q * scale - offset in one rounding (Q4_0: scale d, offset 8 d, exact;
// Q4_K: d sc_j and dmin m_j). The bytes widen to 32 bits straight from memory, four rows at a
// time, and the nibbles split there (no 128-bit extracts, no separate - 8).
__attribute__((always_inline)) inline void StoreNibbleBlock(const uint8_t* data,
                                                            const RowFactors& scale,
                                                            const RowFactors& offset,
                                                            uint16_t* out) {
  const __m512i mask = _mm512_set1_epi32(0x0F);
  for (int c = 0; c < 4; ++c) {
    __m512 lo[4], hi[4];
    for (int q = 0; q < 4; ++q) {
      const __m512i bytes = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + 64 * c + 16 * q)));
      lo[q] = _mm512_fmsub_ps(_mm512_cvtepi32_ps(_mm512_and_si512(bytes, mask)), scale.quarter[q],
                              offset.quarter[q]);
      hi[q] = _mm512_fmsub_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(bytes, 4)), scale.quarter[q],
                              offset.quarter[q]);
    }
    StoreBRows(lo, out + 4 * c * 32);        // values 8c .. 8c + 3
    StoreBRows(hi, out + (4 * c + 2) * 32);  // values 8c + 4 .. 8c + 7
  }
}

__attribute__((always_inline)) inline __m512 LoadHalves(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// The formats. Block(group, b, out): block b (32 values of each of the 16 rows) of a group as
// its 16 B-tile rows of bf16 (512 values) at out. kGroupBlockBytes: a group's bytes per block
// (Q4_K: averaged over its 256-value blocks).
struct Q4Format {  // per block: the 16 rows' f16 d, then a data area; values nibble - 8
  static constexpr int64_t kGroupBlockBytes = 16 * 18;
  static void Block(const uint8_t* group, int64_t b, uint16_t* out) {
    const uint8_t* block = group + b * kGroupBlockBytes;
    const __m512 d = LoadHalves(block);
    StoreNibbleBlock(block + 32, Spread(d), Spread(_mm512_mul_ps(d, _mm512_set1_ps(8.0f))), out);
  }
};

struct Q8Format {  // per block: f16 d, then 8 x 64 bytes (values 4c..4c+3 of the rows) + 128
  static constexpr int64_t kGroupBlockBytes = 16 * 34;
  static void Block(const uint8_t* group, int64_t b, uint16_t* out) {
    const uint8_t* block = group + b * kGroupBlockBytes;
    const RowFactors d = Spread(LoadHalves(block));
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int c = 0; c < 8; ++c) {
      StoreScaledBytes(_mm512_xor_si512(_mm512_loadu_si512(block + 32 + 64 * c), bias), d,
                       out + 2 * c * 32);
    }
  }
};

// Q4_Kx16 (pack::RepackGroupQ4_Kx16): 256-value blocks of 16 rows, sub-block j (our block b =
// 8 sb + j) a data area of unsigned nibbles q with per-row value d sc_j q - dmin m_j, the 6-bit
// sc and m of entry e = 16 j + r: low 4 bits at byte e % 64 of their 64-byte areas (shifted by
// 4 for e >= 64), top 2 bits at byte e % 64 of the shared area, bits 2 (e / 64) (scales) and
// 4 + 2 (e / 64) (mins).
struct Q4KFormat {
  static constexpr int64_t kGroupBlockBytes = pack::kQ4_Kx16BlockBytes / 8;
  static void Block(const uint8_t* group, int64_t b, uint16_t* out) {
    const uint8_t* super = group + (b / 8) * pack::kQ4_Kx16BlockBytes;
    const int j = static_cast<int>(b % 8), half = j / 4, at = 16 * (j % 4);
    auto load16 = [&](int offset) {
      return _mm_loadu_si128(reinterpret_cast<const __m128i*>(super + offset + at));
    };
    const __m128i low4 = _mm_set1_epi8(0x0F), top2 = _mm_set1_epi8(0x30);
    const __m128i high = load16(pack::kQ4_Kx16High);
    const __m128i shift_low = _mm_cvtsi32_si128(4 * half);
    const __m128i sc =
        _mm_or_si128(_mm_and_si128(_mm_srl_epi16(load16(pack::kQ4_Kx16ScaleLow), shift_low), low4),
                     _mm_and_si128(_mm_sll_epi16(high, _mm_cvtsi32_si128(4 - 2 * half)), top2));
    const __m128i mn =
        _mm_or_si128(_mm_and_si128(_mm_srl_epi16(load16(pack::kQ4_Kx16MinLow), shift_low), low4),
                     _mm_and_si128(_mm_srl_epi16(high, _mm_cvtsi32_si128(2 * half)), top2));
    const __m512 scale =
        _mm512_mul_ps(LoadHalves(super), _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(sc)));
    const __m512 min = _mm512_mul_ps(LoadHalves(super + pack::kQ4_Kx16Dmin),
                                     _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(mn)));
    StoreNibbleBlock(super + pack::kQ4_Kx16Data + 256 * j, Spread(scale), Spread(min), out);
  }
};

// Q6_Kx16 (pack::RepackGroupQ6_Kx16): 256-value blocks of 16 rows, sub-block j (our block b =
// 8 sb + j) 256 bytes of low nibbles in the Q4_0x16 layout and two 64-byte areas of top bits
// (chunk ch = values 4ch..4ch+3 at bits 2 (ch % 4) of area ch / 4), value (low | top << 4) - 32
// times d * the int8 scale of its 16 values (scale k of row r at kQ6_Kx16Scales + 16 k + r).
struct Q6KFormat {
  static constexpr int64_t kGroupBlockBytes = pack::kQ6_Kx16BlockBytes / 8;
  static void Block(const uint8_t* group, int64_t b, uint16_t* out) {
    const uint8_t* super = group + (b / 8) * pack::kQ6_Kx16BlockBytes;
    const int j = static_cast<int>(b % 8);
    const __m512 d = LoadHalves(super);
    auto scale = [&](int k) {
      const __m128i sc =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(super + pack::kQ6_Kx16Scales + 16 * k));
      return Spread(_mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc))));
    };
    const RowFactors first = scale(2 * j), second = scale(2 * j + 1);  // values 0-15, 16-31
    const uint8_t* data = super + pack::kQ6_Kx16Data + pack::kQ6_Kx16SubBlockBytes * j;
    const __m512i mask = _mm512_set1_epi8(0x0F), three = _mm512_set1_epi8(3);
    const __m512i bias = _mm512_set1_epi8(32);
    auto top = [&](__m512i area, int shift) {  // bits shift, shift + 1 as bits 4, 5
      return _mm512_slli_epi16(
          _mm512_and_si512(_mm512_srl_epi16(area, _mm_cvtsi32_si128(shift)), three), 4);
    };
    for (int c = 0; c < 4; ++c) {  // chunks 2c (low nibbles) and 2c + 1 (high)
      const __m512i bytes = _mm512_loadu_si512(data + 64 * c);
      const __m512i area = _mm512_loadu_si512(data + 256 + 64 * (c / 2));
      const int shift = 4 * (c % 2);
      const __m512i lo =
          _mm512_sub_epi8(_mm512_or_si512(_mm512_and_si512(bytes, mask), top(area, shift)), bias);
      const __m512i hi =
          _mm512_sub_epi8(_mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(bytes, 4), mask),
                                          top(area, shift + 2)),
                          bias);
      const RowFactors& f = c < 2 ? first : second;
      StoreScaledBytes(lo, f, out + 4 * c * 32);
      StoreScaledBytes(hi, f, out + (4 * c + 2) * 32);
    }
  }
};

// Where a step's sums C(t, g) (token tile t, group g) live: base + t * tile_step + g *
// group_step, rows ld bytes apart (the thread's buffer between chunks, or the output).
struct SumsAt {
  float* base;
  int64_t tile_step, group_step, ld;
  float* at(int t, int g) const { return base + t * tile_step + g * group_step; }
};

// The sums of kTiles token tiles x kGroups groups over n blocks: A of tile t at a + t *
// tile_stride (block i at + i * kTileValues), B of group g at w + g * kChunkBlocks *
// kTileValues; C starts at zero (in == nullptr) or from *in, and is stored to out.
template <int kGroups, int kTiles>
__attribute__((always_inline)) inline void TileSums(const uint16_t* a, int64_t tile_stride,
                                                    const uint16_t* w, int64_t n, const SumsAt* in,
                                                    const SumsAt& out) {
  constexpr int64_t kGroupStride = kChunkBlocks * kTileValues;
  if (in == nullptr) {
    _tile_zero(0);
    if constexpr (kTiles > 1) _tile_zero(1);
    if constexpr (kGroups > 1) _tile_zero(2);
    if constexpr (kTiles > 1 && kGroups > 1) _tile_zero(3);
  } else {
    _tile_loadd(0, in->at(0, 0), in->ld);
    if constexpr (kTiles > 1) _tile_loadd(1, in->at(1, 0), in->ld);
    if constexpr (kGroups > 1) _tile_loadd(2, in->at(0, 1), in->ld);
    if constexpr (kTiles > 1 && kGroups > 1) _tile_loadd(3, in->at(1, 1), in->ld);
  }
  // Software-pipelined: the next block's first activation tile and both weight tiles load
  // while this block's products run (the tile unit waits on a load's result: with each load
  // issued right before its products this loop ran 20% slower in a microbenchmark, data in
  // L1, and four loads per four products cost 75% more than two).
  _tile_loadd(6, w, 64);
  if constexpr (kGroups > 1) _tile_loadd(7, w + kGroupStride, 64);
  _tile_loadd(4, a, 64);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t next = (i + 1 < n ? i + 1 : i) * kTileValues;  // the last reloads itself
    if constexpr (kTiles > 1) _tile_loadd(5, a + tile_stride + i * kTileValues, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (kGroups > 1) _tile_dpbf16ps(2, 4, 7);
    _tile_loadd(4, a + next, 64);
    if constexpr (kTiles > 1) {
      _tile_dpbf16ps(1, 5, 6);
      if constexpr (kGroups > 1) _tile_dpbf16ps(3, 5, 7);
    }
    _tile_loadd(6, w + next, 64);
    if constexpr (kGroups > 1) _tile_loadd(7, w + kGroupStride + next, 64);
  }
  _tile_stored(0, out.at(0, 0), out.ld);
  if constexpr (kTiles > 1) _tile_stored(1, out.at(1, 0), out.ld);
  if constexpr (kGroups > 1) _tile_stored(2, out.at(0, 1), out.ld);
  if constexpr (kTiles > 1 && kGroups > 1) _tile_stored(3, out.at(1, 1), out.ld);
}

template <int kGroups>
void TileSumsOf(int tiles, const uint16_t* a, int64_t tile_stride, const uint16_t* w, int64_t n,
                const SumsAt* in, const SumsAt& out) {
  if (tiles > 1) {
    TileSums<kGroups, 2>(a, tile_stride, w, n, in, out);
  } else {
    TileSums<kGroups, 1>(a, tile_stride, w, n, in, out);
  }
}

// KernelTable::gemm_x16_tiles for one format (see there).
template <class Fmt>
void GemmTiles(const uint8_t* groups, int ngroups, int64_t nblocks, int64_t b0, int64_t b1,
               const QuantizedActivations& a, int64_t token, int ntok, float* out, int64_t ldo,
               bool accumulate) {
  alignas(64) static thread_local uint16_t weights[kMaxGroups * kChunkBlocks * kTileValues];
  alignas(64) static thread_local float sums[kMaxTiles * kMaxGroups * 256];
  static_assert(sizeof(weights) + sizeof(sums) == kThreadScratchBytes);
  _tile_loadconfig(&kConfig);
  const int64_t end = token + ntok;
  const int64_t tile_stride = (a.cols / 32) * kTileValues;  // one token tile's blocks
  for (int64_t first_tile = token / 16; first_tile * 16 < end; first_tile += kMaxTiles) {
    const int64_t tiles = std::min<int64_t>(kMaxTiles, (end + 15) / 16 - first_tile);
    // The pair of tiles from tile i on (i even) is computed in the output rows themselves
    // when the call's blocks are one chunk and every token of the pair is in the range;
    // otherwise in the buffer, and only the range's rows copied out at the end.
    auto direct = [&](int64_t i) {
      const int64_t t0 = (first_tile + i) * 16,
                    t1 = std::min(first_tile + tiles, first_tile + i + 2) * 16;
      return b1 - b0 <= kChunkBlocks && t0 >= token && t1 <= end;
    };
    for (int64_t c = b0; c < b1; c += kChunkBlocks) {
      const int64_t n = std::min(kChunkBlocks, b1 - c);
      for (int g = 0; g < ngroups; ++g) {
        const uint8_t* group = groups + g * nblocks * Fmt::kGroupBlockBytes;
        for (int64_t i = 0; i < n; ++i) {
          Fmt::Block(group, c + i, weights + (g * kChunkBlocks + i) * kTileValues);
        }
      }
      for (int64_t i = 0; i < tiles; i += 2) {
        const int pair_tiles = static_cast<int>(std::min<int64_t>(2, tiles - i));
        const uint16_t* at = a.bf16.data() + (first_tile + i) * tile_stride + c * kTileValues;
        const SumsAt buffer{sums + i * kMaxGroups * 256, kMaxGroups * 256, 256, 64};
        const SumsAt* in = c == b0 ? nullptr : &buffer;
        const SumsAt* to = &buffer;
        SumsAt output;
        if (direct(i)) {  // the tiles' sums from and to the output rows
          output = {out + ((first_tile + i) * 16 - token) * ldo, 16 * ldo, 16, ldo * 4};
          in = accumulate ? &output : nullptr;
          to = &output;
        } else if (c == b0 && accumulate) {
          // The output's values start the sums here too (zero for tokens outside the range),
          // so every token gets the bits of a direct pair whatever its place in the call.
          for (int t = 0; t < pair_tiles; ++t) {
            for (int g = 0; g < ngroups; ++g) {
              float* sum = sums + ((i + t) * kMaxGroups + g) * 256;
              for (int64_t j = 0; j < 16; ++j) {
                const int64_t tok = (first_tile + i + t) * 16 + j;
                _mm512_store_ps(sum + 16 * j,
                                tok >= token && tok < end
                                    ? _mm512_loadu_ps(out + (tok - token) * ldo + 16 * g)
                                    : _mm512_setzero_ps());
              }
            }
          }
          in = &buffer;
        }
        if (ngroups > 1) {
          TileSumsOf<2>(pair_tiles, at, tile_stride, weights, n, in, *to);
        } else {
          TileSumsOf<1>(pair_tiles, at, tile_stride, weights, n, in, *to);
        }
      }
    }
    for (int64_t i = 0; i < tiles; ++i) {
      if (direct(i - i % 2)) continue;
      const int64_t tg = first_tile + i;
      const int64_t first = std::max(token, tg * 16), last = std::min(end, (tg + 1) * 16);
      for (int g = 0; g < ngroups; ++g) {
        const float* s = sums + (i * kMaxGroups + g) * 256;
        for (int64_t t = first; t < last; ++t) {
          float* o = out + (t - token) * ldo + 16 * g;
          const __m512 v = _mm512_load_ps(s + 16 * (t - tg * 16));
          _mm512_storeu_ps(o, v);
        }
      }
    }
  }
  _tile_release();
}

// KernelTable::bf16_tile_row: 32 values a block, rounded to nearest even (VCVTNE2PS2BF16:
// subnormal inputs count as zero), block b at dst + b * kTileValues.
void Bf16TileRow(const float* x, int64_t nblocks, uint16_t* dst) {
  for (int64_t b = 0; b < nblocks; ++b) {
    const __m512bh v =
        _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 32 * b + 16), _mm512_loadu_ps(x + 32 * b));
    _mm512_storeu_si512(dst + b * kTileValues, reinterpret_cast<__m512i>(v));
  }
}

__attribute__((always_inline)) inline __m512 WidenBf16(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// KernelTable::bf16_split_tiles.
void Bf16SplitTiles(const float* x, int64_t ldx, int ntok, int64_t nblocks, uint16_t* dst) {
  for (int64_t b = 0; b < nblocks; ++b) {
    __m512 parts[3][16];  // per part, token t's 16 pairs (dword i: values 2i, 2i + 1)
    for (int t = 0; t < 16; ++t) {
      if (t >= ntok) {
        for (auto& part : parts) part[t] = _mm512_setzero_ps();
        continue;
      }
      const float* v = x + t * ldx + 32 * b;
      __m512 lo = _mm512_loadu_ps(v), hi = _mm512_loadu_ps(v + 16);  // values 0-15, 16-31
      for (int p = 0; p < 3; ++p) {
        const __m512i rounded = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
        parts[p][t] = _mm512_castsi512_ps(rounded);
        if (p == 2) break;
        // The remainders, exact in f32 (x - bf16(x) has at most 16 significant bits, and the
        // second one at most 8: the third part is exact); none where the part is infinite.
        const __m512 lo_part = WidenBf16(_mm512_castsi512_si256(rounded));
        const __m512 hi_part = WidenBf16(_mm512_extracti64x4_epi64(rounded, 1));
        const __m512 inf = _mm512_set1_ps(__builtin_inff());
        const __mmask16 lo_finite = _mm512_cmp_ps_mask(_mm512_abs_ps(lo_part), inf, _CMP_LT_OQ);
        const __mmask16 hi_finite = _mm512_cmp_ps_mask(_mm512_abs_ps(hi_part), inf, _CMP_LT_OQ);
        lo = _mm512_maskz_sub_ps(lo_finite, lo, lo_part);
        hi = _mm512_maskz_sub_ps(hi_finite, hi, hi_part);
      }
    }
    for (int p = 0; p < 3; ++p) {
      Transpose16x16(parts[p]);  // row i: pair i of every token
      uint16_t* tile = dst + (3 * b + p) * kTileValues;
      for (int i = 0; i < 16; ++i) _mm512_storeu_ps(tile + 32 * i, parts[p][i]);
    }
  }
}

// The sums of kGroups groups of 16 weight rows (A tiles 4, 5, loaded straight from the rows)
// times kTiles token tiles (B tiles 6, 7: the split activations, three parts a block) over
// blocks [b0, b1), into c[2 g + t] (16 rows x 16 tokens, 64-byte rows). Each weight tile
// serves the three parts of both token tiles: 2 + 6 loads per 12 products.
template <int kGroups, int kTiles>
void Bf16RowSums(const uint16_t* w, int64_t ldw_bytes, int64_t b0, int64_t b1, const uint16_t* x,
                 int64_t tile_stride, float (*c)[256]) {
  _tile_zero(0);
  if constexpr (kTiles > 1) _tile_zero(1);
  if constexpr (kGroups > 1) _tile_zero(2);
  if constexpr (kTiles > 1 && kGroups > 1) _tile_zero(3);
  const int64_t group_step = 16 * ldw_bytes / 2;
  for (int64_t b = b0; b < b1; ++b) {
    _tile_loadd(4, w + 32 * b, ldw_bytes);
    if constexpr (kGroups > 1) _tile_loadd(5, w + group_step + 32 * b, ldw_bytes);
    for (int p = 0; p < 3; ++p) {
      const uint16_t* xb = x + (3 * b + p) * kTileValues;
      _tile_loadd(6, xb, 64);
      if constexpr (kTiles > 1) _tile_loadd(7, xb + tile_stride, 64);
      _tile_dpbf16ps(0, 4, 6);
      if constexpr (kTiles > 1) _tile_dpbf16ps(1, 4, 7);
      if constexpr (kGroups > 1) _tile_dpbf16ps(2, 5, 6);
      if constexpr (kTiles > 1 && kGroups > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c[0], 64);
  if constexpr (kTiles > 1) _tile_stored(1, c[1], 64);
  if constexpr (kGroups > 1) _tile_stored(2, c[2], 64);
  if constexpr (kTiles > 1 && kGroups > 1) _tile_stored(3, c[3], 64);
}

// KernelTable::tiles_bf16 (Bf16RowsTilesFn).
void Bf16RowsTiles(const Bf16* w, int64_t ldw, int ngroups, int64_t b0, int64_t b1,
                   const uint16_t* split, int64_t nblocks, int64_t token, int ntok, float* out,
                   int64_t ldo, bool accumulate) {
  _tile_loadconfig(&kConfig);
  const uint16_t* rows = reinterpret_cast<const uint16_t*>(w);
  const int64_t ldw_bytes = ldw * 2, tile_stride = nblocks * 3 * kTileValues;
  const int ntiles = (ntok + 15) / 16;
  alignas(64) float c[4][256];
  for (int i = 0; i < ntiles; i += 2) {
    const uint16_t* x = split + (token / 16 + i) * tile_stride;
    const int pair = std::min(2, ntiles - i);
    if (ngroups > 1) {
      if (pair > 1) {
        Bf16RowSums<2, 2>(rows, ldw_bytes, b0, b1, x, tile_stride, c);
      } else {
        Bf16RowSums<2, 1>(rows, ldw_bytes, b0, b1, x, tile_stride, c);
      }
    } else if (pair > 1) {
      Bf16RowSums<1, 2>(rows, ldw_bytes, b0, b1, x, tile_stride, c);
    } else {
      Bf16RowSums<1, 1>(rows, ldw_bytes, b0, b1, x, tile_stride, c);
    }
    // c[2 g + t] holds rows x tokens: transposed to the output's tokens x rows.
    for (int g = 0; g < ngroups; ++g) {
      for (int t = 0; t < pair; ++t) {
        __m512 r[16];
        for (int j = 0; j < 16; ++j) r[j] = _mm512_load_ps(c[2 * g + t] + 16 * j);
        Transpose16x16(r);
        const int first = (i + t) * 16, count = std::min(16, ntok - first);
        for (int j = 0; j < count; ++j) {
          float* o = out + (first + j) * ldo + 16 * g;
          _mm512_storeu_ps(o, accumulate ? _mm512_add_ps(_mm512_loadu_ps(o), r[j]) : r[j]);
        }
      }
    }
  }
  _tile_release();
}

}  // namespace

const KernelTable& Table() {
  static const KernelTable table = [] {
    // Every AMX CPU so far has VBMI too (Sapphire Rapids on); the check keeps one without it
    // on the gathers.
    KernelTable t = CpuSupports(Isa::kAvx512Vbmi) ? Avx512VbmiTable() : Avx512VnniTable();
    t.isa = "avx512amx";
    t.tiles_q4_0x16 = GemmTiles<Q4Format>;
    t.tiles_q8_0x16 = GemmTiles<Q8Format>;
    t.tiles_q4_kx16 = GemmTiles<Q4KFormat>;
    t.tiles_q6_kx16 = GemmTiles<Q6KFormat>;
    t.bf16_tile_row = Bf16TileRow;
    t.tiles_bf16 = Bf16RowsTiles;
    t.bf16_split_tiles = Bf16SplitTiles;
    // Its tiles' buffers beside the AVX-512 table's (the codebook panels), which it keeps.
    t.thread_scratch_bytes += kThreadScratchBytes;
    return t;
  }();
  return table;
}

}  // namespace gemma4::kernels::amx

namespace gemma4::kernels {

const KernelTable& Avx512AmxTable() { return amx::Table(); }

}  // namespace gemma4::kernels
