// AMX (AMX-TILE + AMX-INT8) prefill kernels for the Q4_0x16, Q8_0x16 and Q4_Kx16 layouts, on top of
// the AVX-512 VNNI table (Intel Sapphire Rapids and later). One TDPBSSD multiplies a tile of 16
// tokens x 32 int8 activations (one block) by the 32 x 16 signed weight bytes of one block of a
// 16-row group into 16 x 16 int32 sums: 8192 multiply-adds in one instruction, where vpdpbusd
// does 64. Each block's sums then take the same float step as the VNNI kernels (one fused
// multiply-add of d_w * d_a per block, in block order; for Q4_K's sub-blocks also the min
// term), so the results are theirs, bit for bit.
// Compiled with AVX-512 + AMX flags; only called after CpuSupports(Isa::kAvx512Amx), which also
// asks Linux for the tile-data permission.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/kernels.h"
#include "kernels/pack/pack.h"

namespace gemma4::kernels::amx {
namespace {

// One TDPBSSD takes about as long with 32-byte rows as with 64 (K = 32 or 64), and tiles of
// 32-byte rows load at half the rate (Xeon 8592+-class core, 2 threads: 13.6 ns a TDPBSSD either
// way; 16 rows of 32 bytes 7.3 ns, of 64 bytes 3.7 ns). A block's int32 sums cannot span two
// blocks (each has its own scales), so the kernels run K = 64 over a pair of blocks with half of
// each weight tile zero: the activation tile A holds blocks 2p and 2p + 1 of 16 tokens (64 bytes
// a token, QuantizedActivations::Slot), the weight tile B_X block 2p's 32 values of the 16 rows
// over zeros, B_Y zeros over block 2p + 1's. A x B_X is then block 2p's sums alone and A x B_Y
// block 2p + 1's, each one loaded A serving both.
// Tile registers: 0 and 1 int32 sums C (16 tokens x 16 rows), 2 the activations A (16 tokens x
// 64 bytes), 4 and 5 the weights B_X, B_Y (16 rows of 4 values x 16 rows, the VNNI layout the x16
// groups use). GCC's tile intrinsics paste the register number into the instruction: literals.
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
  for (int t : {0, 1, 2, 4, 5}) {
    c.rows[t] = 16;
    c.colsb[t] = 64;
  }
  return c;
}
alignas(64) constexpr TileConfig kConfig = MakeConfig();

constexpr int kGroup = 16;           // the activations' interleave group this kernel reads
constexpr int kBlockB = 8 * 64;      // one block of one 16-row group, unpacked: 512 bytes
constexpr int kPairB = 3 * kBlockB;  // a pair unpacked: block 2p, zeros, block 2p + 1
constexpr int64_t kChunkPairs = 32;  // pairs unpacked at a time: 48 KiB
constexpr int64_t kChunkBlocks = 2 * kChunkPairs;
constexpr int64_t kMaxTiles = 17;        // tiles of tokens a pass over the chunks: 17 KiB of sums
constexpr int64_t kMaxScaleFloats = 32;  // row factors a block (Q4_K: scale and min)
// GemmGroups' thread_local buffers (unpacked weights, partial sums, the chunk's row factors),
// for the memory plan.
constexpr int64_t kThreadScratchBytes =
    kChunkPairs * kPairB +
    (kMaxTiles * kGroup * 16 + kChunkBlocks * kMaxScaleFloats) * int64_t{sizeof(float)};

// The formats. Each gives, for block b of a 16-row group (32 values of each row):
// - Block: its values as signed bytes in B-tile rows (row c = values 4c..4c+3 of the 16 rows:
//   byte 64c + 4r + i) at out, and its kScaleFloats row factors at scales;
// - Accumulate: the VNNI kernels' float step of the block's int32 sums C [16 tokens, 16 rows]
//   for the 16 tokens of a tile, in the same order (so results are theirs, bit for bit). sc and
//   off: token t's activation scale and offset at [2 t] (Slot).
// kGroupBlockBytes: a group's bytes per block (Q4_K: averaged over its 256-value blocks).

// Byte c * 64 + r * 4 + i of a Q4_0x16 data area: value 8c + i in the low nibble, 8c + 4 + i in
// the high one (the layout Q4_Kx16's sub-blocks share). minus: 8 for Q4_0, 0 for Q4_K.
__attribute__((always_inline)) inline void UnpackNibbles(const uint8_t* data, __m512i minus,
                                                         int8_t* out) {
  const __m512i mask = _mm512_set1_epi8(0x0F);
  for (int c = 0; c < 4; ++c) {
    const __m512i bytes = _mm512_loadu_si512(data + 64 * c);
    const __m512i lo = _mm512_sub_epi8(_mm512_and_si512(bytes, mask), minus);
    const __m512i hi = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(bytes, 4), mask), minus);
    _mm512_store_si512(out + 128 * c, lo);
    _mm512_store_si512(out + 128 * c + 64, hi);
  }
}

// acc[t] += f32(C[t]) * (d_w * d_a[t]): GemmX16T's and GemmPairT's step.
__attribute__((always_inline)) inline void AccumulateScaled(const int32_t* c, const float* scales,
                                                            const float* sc,
                                                            __m512 (&acc)[kGroup]) {
  const __m512 dw = _mm512_load_ps(scales);
#pragma GCC unroll 16
  for (int t = 0; t < kGroup; ++t) {
    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * t)),
                             _mm512_mul_ps(dw, _mm512_set1_ps(sc[2 * t])), acc[t]);
  }
}

// Q4_0x16 and Q8_0x16: per block, the 16 rows' f16 d, then the values; the row factor is d.
struct ScaledBlocks {
  static constexpr int kScaleFloats = 16;
  static constexpr bool kUsesOffset = false;
  static void StoreScales(const uint8_t* block, float* scales) {
    _mm512_store_ps(scales,
                    _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block))));
  }
  __attribute__((always_inline)) static void Accumulate(const int32_t* c, const float* scales,
                                                        const float* sc, const float*,
                                                        __m512 (&acc)[kGroup]) {
    AccumulateScaled(c, scales, sc, acc);
  }
};

struct Q4Format : ScaledBlocks {  // values: the data area's nibbles - 8
  static constexpr int64_t kGroupBlockBytes = 16 * 18;
  static void Block(const uint8_t* group, int64_t b, int8_t* out, float* scales) {
    const uint8_t* block = group + b * kGroupBlockBytes;
    StoreScales(block, scales);
    UnpackNibbles(block + 32, _mm512_set1_epi8(8), out);
  }
};

struct Q8Format : ScaledBlocks {  // values: 8 chunks of 4 values of the 16 rows, stored + 128
  static constexpr int64_t kGroupBlockBytes = 16 * 34;
  static void Block(const uint8_t* group, int64_t b, int8_t* out, float* scales) {
    const uint8_t* block = group + b * kGroupBlockBytes;
    StoreScales(block, scales);
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int c = 0; c < 8; ++c) {
      _mm512_store_si512(out + 64 * c,
                         _mm512_xor_si512(_mm512_loadu_si512(block + 32 + 64 * c), bias));
    }
  }
};

// Q4_Kx16 (pack::RepackGroupQ4_Kx16): 256-value blocks of 16 rows, sub-block j (our block b =
// 8 sb + j) a data area of unsigned nibbles with per-row scale d * sc_j and min dmin * m_j, the
// 6-bit sc and m of entry e = 16 j + r: low 4 bits at byte e % 64 of their 64-byte areas
// (shifted by 4 for e >= 64), top 2 bits at byte e % 64 of the shared area, bits 2 (e / 64)
// (scales) and 4 + 2 (e / 64) (mins). Row factors: d * sc_j, then dmin / 8 * m_j (GemmQ4_Kx16T
// takes the min term as dmin m / 8 times the activation's 8 * sum * scale).
struct Q4KFormat {
  static constexpr int64_t kGroupBlockBytes = pack::kQ4_Kx16BlockBytes / 8;
  static constexpr int kScaleFloats = 32;
  static constexpr bool kUsesOffset = true;
  static void Block(const uint8_t* group, int64_t b, int8_t* out, float* scales) {
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
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(super)));
    const __m512 dmin8 = _mm512_mul_ps(
        _mm512_cvtph_ps(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(super + pack::kQ4_Kx16Dmin))),
        _mm512_set1_ps(0.125f));
    _mm512_store_ps(scales, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(sc))));
    _mm512_store_ps(scales + 16,
                    _mm512_mul_ps(dmin8, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(mn))));
    UnpackNibbles(super + pack::kQ4_Kx16Data + 256 * j, _mm512_setzero_si512(), out);
  }
  // acc[t] += f32(C[t]) * (d sc_j * d_a[t]), then -= dmin m_j / 8 * offset[t].
  __attribute__((always_inline)) static void Accumulate(const int32_t* c, const float* scales,
                                                        const float* sc, const float* off,
                                                        __m512 (&acc)[kGroup]) {
    const __m512 ds = _mm512_load_ps(scales), dm8 = _mm512_load_ps(scales + 16);
#pragma GCC unroll 16
    for (int t = 0; t < kGroup; ++t) {
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * t)),
                               _mm512_mul_ps(ds, _mm512_set1_ps(sc[2 * t])), acc[t]);
      acc[t] = _mm512_fnmadd_ps(dm8, _mm512_set1_ps(off[2 * t]), acc[t]);
    }
  }
};

// Blocks [first_block, first_block + n) of a group, pair by pair (block 2p at p * kPairB, zeros
// after it, block 2p + 1 after those; the zero halves are written once per thread and never
// overwritten), and their row factors (kScaleFloats a block, at scales).
template <class Fmt>
void Unpack(const uint8_t* group, int64_t first_block, int64_t n, int8_t* out, float* scales) {
  for (int64_t i = 0; i < n; ++i) {
    Fmt::Block(group, first_block + i, out + (i / 2) * kPairB + (i % 2) * 2 * kBlockB,
               scales + i * Fmt::kScaleFloats);
  }
}

// Pairs a stage: their tile products are all issued and stored first, then their float steps
// run from L1 (the two do not overlap on this core either way).
constexpr int kStagePairs = 4;

// A tile's activations from block b0 on (b0 even): values (1 KiB a pair), scales and, for
// formats with a min term, offsets (token t's at [2 t] of a pair's 32).
struct TileActivations {
  const int8_t* q;
  const float* sc;
  const float* off;
};

template <class Fmt>
TileActivations ActivationsOf(const QuantizedActivations& a, int64_t tg, int64_t b0) {
  const int64_t slot = a.Slot(tg * kGroup, b0);
  return {a.q8.data() + slot * 32, a.scale8.data() + slot,
          Fmt::kUsesOffset ? a.offset8.data() + slot : nullptr};
}

// Blocks [b, b + m) of a tile (b even, from the chunk's start): products into c, then the float
// steps. m is a constant in the main loop (a whole stage), a variable for a chunk's last blocks.
template <class Fmt, class M>
__attribute__((always_inline)) inline void Stage(int64_t b, M m, const TileActivations& x,
                                                 const float* scales, const int8_t* unpacked,
                                                 int32_t (*c)[16 * 16], __m512 (&acc)[kGroup]) {
  for (int i = 0; i < m; i += 2) {
    const int64_t p = (b + i) / 2;
    _tile_loadd(2, x.q + p * 1024, 64);
    _tile_loadd(4, unpacked + p * kPairB, 64);
    _tile_zero(0);
    _tile_dpbssd(0, 2, 4);
    if (i + 1 < m) {
      _tile_loadd(5, unpacked + p * kPairB + kBlockB, 64);
      _tile_zero(1);
      _tile_dpbssd(1, 2, 5);
    }
    _tile_stored(0, c[i], 64);
    if (i + 1 < m) _tile_stored(1, c[i + 1], 64);
  }
  for (int j = 0; j < m; ++j) {
    const int64_t bj = b + j, at = (bj / 2) * 32 + bj % 2;
    Fmt::Accumulate(c[j], scales + bj * Fmt::kScaleFloats, x.sc + at,
                    Fmt::kUsesOffset ? x.off + at : nullptr, acc);
  }
}

// One 16-row group times the 16 tokens of interleave group `tg`, the chunk's n blocks from b0
// (b0 even): its unpacked weights and row factors (Unpack), acc carried in and out.
template <class Fmt>
__attribute__((always_inline)) inline void TileBlocks(const int8_t* unpacked, const float* scales,
                                                      int64_t b0, int64_t n,
                                                      const QuantizedActivations& a, int64_t tg,
                                                      __m512 (&acc)[kGroup]) {
  const TileActivations x = ActivationsOf<Fmt>(a, tg, b0);
  alignas(64) int32_t c[2 * kStagePairs][16 * 16];
  int64_t b = 0;
  for (; b + 2 * kStagePairs <= n; b += 2 * kStagePairs) {
    Stage<Fmt>(b, std::integral_constant<int, 2 * kStagePairs>(), x, scales, unpacked, c, acc);
  }
  if (b < n) Stage<Fmt>(b, static_cast<int>(n - b), x, scales, unpacked, c, acc);
}

// ngroups adjacent 16-row groups times tokens [token, token + ntok) (activations interleaved in
// groups of 16 tokens; any token range: the tiles it touches are computed whole, only its rows
// stored) into out[t * ldo + r], r < 16 * ngroups. Each chunk of a group's blocks is unpacked
// once and serves up to kMaxTiles tiles of tokens (a call's 256 tokens, and one more where
// they start inside a tile); the tiles' sums wait in `partial` between chunks.
template <class Fmt>
void GemmGroups(const uint8_t* groups, int ngroups, int64_t nblocks, const QuantizedActivations& a,
                int64_t token, int ntok, float* out, int64_t ldo) {
  alignas(64) static thread_local int8_t unpacked[kChunkPairs * kPairB];
  alignas(64) static thread_local float partial[kMaxTiles][kGroup * 16];
  alignas(64) static thread_local float scales[kChunkBlocks * kMaxScaleFloats];
  static_assert(sizeof(unpacked) + sizeof(partial) + sizeof(scales) == kThreadScratchBytes);
  static_assert(Fmt::kScaleFloats <= kMaxScaleFloats);
  static thread_local bool zeros_ready = false;
  if (!zeros_ready) {
    std::memset(unpacked, 0, sizeof(unpacked));
    zeros_ready = true;
  }
  _tile_loadconfig(&kConfig);
  const int64_t end = token + ntok;
  // At most kMaxTiles tiles of tokens at a time (their sums wait in `partial` between chunks).
  for (int64_t first_tile = token / kGroup; first_tile * kGroup < end; first_tile += kMaxTiles) {
    const int64_t tiles = std::min<int64_t>(kMaxTiles, (end + kGroup - 1) / kGroup - first_tile);
    for (int g = 0; g < ngroups; ++g) {
      const uint8_t* group = groups + g * nblocks * Fmt::kGroupBlockBytes;
      for (int64_t b0 = 0; b0 < nblocks; b0 += kChunkBlocks) {
        const int64_t n = std::min(kChunkBlocks, nblocks - b0);
        Unpack<Fmt>(group, b0, n, unpacked, scales);
        for (int64_t i = 0; i < tiles; ++i) {
          const int64_t tg = first_tile + i;
          __m512 acc[kGroup];
          for (int t = 0; t < kGroup; ++t) {
            acc[t] = b0 == 0 ? _mm512_setzero_ps() : _mm512_load_ps(partial[i] + 16 * t);
          }
          TileBlocks<Fmt>(unpacked, scales, b0, n, a, tg, acc);
          if (b0 + n < nblocks) {
            for (int t = 0; t < kGroup; ++t) _mm512_store_ps(partial[i] + 16 * t, acc[t]);
            continue;
          }
          const int64_t first = std::max(token, tg * kGroup);
          const int64_t last = std::min(end, (tg + 1) * kGroup);
          for (int64_t t = first; t < last; ++t) {
            _mm512_storeu_ps(out + (t - token) * ldo + 16 * g, acc[t - tg * kGroup]);
          }
        }
      }
    }
  }
  _tile_release();
}

// The AMX kernel of a format for activations in groups of 16 (prefill); the VNNI kernel
// otherwise (decode, short pieces, MoE's per-expert rows).
template <class Fmt, int kGroups>
void Gemm(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a, int64_t token,
          int ntok, float* out, int64_t ldo) {
  if (a.interleave_group != kGroup) {
    const KernelTable& vnni = Avx512VnniTable();
    GemmX16Fn fn = nullptr;
    if constexpr (std::is_same_v<Fmt, Q4Format>) {
      fn = kGroups == 2 ? vnni.gemm_q4_0x16_pair : vnni.gemm_q4_0x16;
    } else if constexpr (std::is_same_v<Fmt, Q8Format>) {
      fn = kGroups == 2 ? vnni.gemm_q8_0x16_pair : vnni.gemm_q8_0x16;
    } else {
      static_assert(kGroups == 1);
      fn = vnni.gemm_q4_kx16;
    }
    fn(group, nblocks, a, token, ntok, out, ldo);
    return;
  }
  GemmGroups<Fmt>(group, kGroups, nblocks, a, token, ntok, out, ldo);
}

}  // namespace

const KernelTable& Table() {
  static const KernelTable table = [] {
    KernelTable t = Avx512VnniTable();
    t.isa = "avx512amx";
    t.gemm_q4_0x16 = Gemm<Q4Format, 1>;
    t.gemm_q8_0x16 = Gemm<Q8Format, 1>;
    t.gemm_q4_0x16_pair = Gemm<Q4Format, 2>;
    t.gemm_q8_0x16_pair = Gemm<Q8Format, 2>;
    t.gemm_q4_kx16 = Gemm<Q4KFormat, 1>;
    t.q4_kx16_prefill_interleaved = true;
    t.x16_prefill_group = kGroup;
    t.thread_scratch_bytes = kThreadScratchBytes;
    return t;
  }();
  return table;
}

}  // namespace gemma4::kernels::amx

namespace gemma4::kernels {

const KernelTable& Avx512AmxTable() { return amx::Table(); }

}  // namespace gemma4::kernels
