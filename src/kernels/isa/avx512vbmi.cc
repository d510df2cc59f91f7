// AVX-512 VBMI kernels for the codebook formats, on top of the AVX-512 VNNI table (which this
// table copies): the grid lookups without vpgatherdd. A 16-lane vpgatherdd costs about 30
// cycles on Zen 5 (measured: 7 ns against 0.75 for the same loop without it), which left the
// one-token IQ3 dot at 1 ms per 6144 x 1536 matrix, gather-bound at ~20% of the bandwidth
// bound. Here a whole 256-value block's 64 grid indices are looked up at once with vpermi2b
// in byte planes of the grid's level codes (3 bits a magnitude, 12 bits an entry: a low and a
// high plane of 256 or 512 bytes), and each pair of sub-blocks' codes are spread to bytes with
// vpmultishiftqb and turned into magnitudes with vpshufb: about 4 instructions a pair after
// ~8-15 a block. Compiled with the VNNI unit's flags plus -mavx512vbmi; only called after
// CpuSupports(Isa::kAvx512Vbmi).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#define GEMMA4_ISA_NAMESPACE avx512vbmi
#include <immintrin.h>

#include <array>
#include <cstring>

#include "kernels/isa/codebook-inl.h"
#include "kernels/isa/float_kernels-inl.h"
#include "kernels/kernels.h"
#include "quant/iq_grids.h"

namespace gemma4::kernels::avx512vbmi {
namespace {

inline float LoadHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// A grid of N entries of 4 magnitudes as byte planes of its level codes (code bits 3k .. 3k + 2:
// the level index of magnitude k; quant/iq_grids.cc's generator writes the grids that way), the
// low 8 bits and the high 4, and the 8 levels as a vpshufb table.
template <size_t N>
struct CodePlanes {
  alignas(64) uint8_t low[N];
  alignas(64) uint8_t high[N];
  alignas(16) uint8_t levels[16];
};

template <size_t N>
CodePlanes<N> MakeCodePlanes(const std::array<uint32_t, N>& grid) {
  CodePlanes<N> planes{};
  // The 8 levels in increasing order (every one occurs in the grid).
  int count = 0;
  for (int v = 0; v < 256 && count < 8; ++v) {
    for (size_t i = 0; i < N; ++i) {
      if (((grid[i] & 0xFF) == static_cast<uint32_t>(v))) {
        planes.levels[count++] = static_cast<uint8_t>(v);
        break;
      }
    }
  }
  for (size_t i = 0; i < N; ++i) {
    uint32_t code = 0;
    for (int k = 0; k < 4; ++k) {
      const uint8_t magnitude = static_cast<uint8_t>(grid[i] >> (8 * k));
      int level = 0;
      while (level < 7 && planes.levels[level] != magnitude) ++level;
      code |= static_cast<uint32_t>(level) << (3 * k);
    }
    planes.low[i] = static_cast<uint8_t>(code);
    planes.high[i] = static_cast<uint8_t>(code >> 8);
  }
  return planes;
}

const CodePlanes<256>& IQ3XXSPlanes() {
  static const CodePlanes<256> planes = MakeCodePlanes(quant::kIQ3XXSGrid);
  return planes;
}

const CodePlanes<512>& IQ3SPlanes() {
  static const CodePlanes<512> planes = MakeCodePlanes(quant::kIQ3SGrid);
  return planes;
}

// 64 byte lookups in a 256-byte plane by the indices' 8 bits (bit 7 picks the half).
inline __m512i Lookup256(const uint8_t* plane, __m512i index) {
  const __m512i low =
      _mm512_permutex2var_epi8(_mm512_load_si512(plane), index, _mm512_load_si512(plane + 64));
  const __m512i high = _mm512_permutex2var_epi8(_mm512_load_si512(plane + 128), index,
                                                _mm512_load_si512(plane + 192));
  return _mm512_mask_blend_epi8(_mm512_movepi8_mask(index), low, high);
}

// The same in a 512-byte plane, bit 8 of each index in bit8.
inline __m512i Lookup512(const uint8_t* plane, __m512i index, __mmask64 bit8) {
  return _mm512_mask_blend_epi8(bit8, Lookup256(plane, index), Lookup256(plane + 256, index));
}

// Byte 8q + j of the vpermi2b that spreads pair p's codes: qword q gets the codes of indices
// 16p + 2q and 16p + 2q + 1 in bits 0-15 and 16-31 (low plane byte, high plane byte, each;
// entries >= 64 pick the second operand, the high plane). Bytes 4-7 repeat 0-3 (unused).
constexpr std::array<std::array<uint8_t, 64>, 4> kSpreadCodes = [] {
  std::array<std::array<uint8_t, 64>, 4> s{};
  for (int p = 0; p < 4; ++p) {
    for (int q = 0; q < 8; ++q) {
      for (int j = 0; j < 8; ++j) {
        const int index = 16 * p + 2 * q + (j / 2) % 2;
        s[p][8 * q + j] = static_cast<uint8_t>(j % 2 == 0 ? index : 64 + index);
      }
    }
  }
  return s;
}();

// The 16 grid entries of sub-blocks 2p, 2p + 1 (indices 16p .. 16p + 15 of the block) as 64
// magnitudes in element order, from the block's codes (low, high: the planes' bytes for index
// i in byte i): the codes spread two to a qword, vpmultishiftqb moving each magnitude's 3 bits
// to the bottom of its byte (bit offsets 0, 3, 6, 9, 16, 19, 22, 25), and the levels by vpshufb.
inline __m512i PairMagnitudes(__m512i low, __m512i high, __m512i levels, int p) {
  alignas(64) static constexpr auto kSpread = kSpreadCodes;
  const __m512i codes = _mm512_permutex2var_epi8(low, _mm512_load_si512(kSpread[p].data()), high);
  const __m512i fields =
      _mm512_multishift_epi64_epi8(_mm512_set1_epi64(0x1916131009060300LL), codes);
  return _mm512_shuffle_epi8(levels, _mm512_and_si512(fields, _mm512_set1_epi8(7)));
}

// IQ3_S: 9-bit indices, the low 8 bits in qs[64] at 2, bit 8 of index l in bit l % 8 of
// qh[l / 8] (so qh is the blocks' 64-bit mask of bit 8); explicit sign bits, 8 bytes a pair.
struct IQ3SCodes {
  static constexpr int kBlockBytes = quant::kIQ3_SBlockBytes;
  static constexpr float kUnit = 1.0f;
  static const CodePlanes<512>& Planes() { return IQ3SPlanes(); }
  static void Codes(const uint8_t* block, const CodePlanes<512>& planes, __m512i* low,
                    __m512i* high, uint64_t negative[4]) {
    const __m512i index = _mm512_loadu_si512(block + 2);
    uint64_t bit8;
    std::memcpy(&bit8, block + quant::kIQ3_SHigh, 8);
    *low = Lookup512(planes.low, index, bit8);
    *high = Lookup512(planes.high, index, bit8);
    std::memcpy(negative, block + quant::kIQ3_SSigns, 32);
  }
  // The 8 sub-blocks' multipliers 2 s + 1 (s: nibble j of scales[4]).
  static __m256 Multipliers(const uint8_t* block) {
    uint32_t packed;
    std::memcpy(&packed, block + quant::kIQ3_SScales, 4);
    const __m256i s =
        _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(packed)),
                                           _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                         _mm256_set1_epi32(15));
    return _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_add_epi32(s, s), _mm256_set1_epi32(1)));
  }
};

// IQ3_XXS: 8-bit indices in qs[64] at 2; per sub-block a u32 (at 66 + 4j) of four 7-bit sign
// indices and s. The 32 sign indices come out of the 8 u32s by one vpmultishiftqb (bit offsets
// 0, 7, 14, 21 in each u32) and become the sign bytes (kIQSignBits: the eighth sign from the
// parity) by one vpermi2b from the 128-byte table.
struct IQ3XXSCodes {
  static constexpr int kBlockBytes = quant::kIQ3_XXSBlockBytes;
  static constexpr float kUnit = 0.25f;
  static const CodePlanes<256>& Planes() { return IQ3XXSPlanes(); }
  static void Codes(const uint8_t* block, const CodePlanes<256>& planes, __m512i* low,
                    __m512i* high, uint64_t negative[4]) {
    const __m512i index = _mm512_loadu_si512(block + 2);
    *low = Lookup256(planes.low, index);
    *high = Lookup256(planes.high, index);
    const __m512i packed = _mm512_zextsi256_si512(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + quant::kIQ3_XXSSigns)));
    const __m512i sign_index =
        _mm512_multishift_epi64_epi8(_mm512_set1_epi64(0x352E2720150E0700LL), packed);
    const __m512i signs =
        _mm512_permutex2var_epi8(_mm512_loadu_si512(quant::kIQSignBits.data()), sign_index,
                                 _mm512_loadu_si512(quant::kIQSignBits.data() + 64));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(negative), _mm512_castsi512_si256(signs));
  }
  // The 8 sub-blocks' multipliers 2 s + 1 (s: bits 28-31 of each u32).
  static __m256 Multipliers(const uint8_t* block) {
    const __m256i s = _mm256_srli_epi32(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + quant::kIQ3_XXSSigns)), 28);
    return _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_add_epi32(s, s), _mm256_set1_epi32(1)));
  }
};

// Lanes 0-7: v[2p], lanes 8-15: v[2p + 1] (the vpdpbusd lanes of sub-blocks 2p and 2p + 1).
inline __m512 PairLanes(__m256 v, int p) {
  return _mm512_permutexvar_ps(
      _mm512_add_epi32(_mm512_set1_epi32(2 * p),
                       _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)),
      _mm512_castps256_ps512(v));
}

// Row dot of an IQ3 format with NT tokens: per block the codes of its 64 indices at once and
// the 8 sub-blocks' factors d unit m, then per pair of sub-blocks the magnitudes, and per token
// vpdpbusd of the magnitudes with the sign-applied activations (|a| <= 127: negating is exact)
// scaled by factor x activation scale in each sub-block's half of the vector (up to 4 tokens:
// the 8 products a block and token at once). The weights are decoded once for the NT tokens.
template <class Format, int NT>
void DotIQ3T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             float* out) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i zero = _mm512_setzero_si512();
  const auto& planes = Format::Planes();
  const __m512i levels =
      _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(planes.levels)));
  const bool to_l2 = DecodeStreamToL2();
  // Token t's rows: activations at q + t * k, block scales at scale + t * k / 32.
  const int64_t k = nblocks * 32;
  const int8_t* q = a.q_row(token);
  const float* scale = a.scale_row(token);
  constexpr bool kScalesPerBlock = NT <= 4;
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += Format::kBlockBytes) {
    simd::PrefetchDecodeStream<Format::kBlockBytes>(w, to_l2);
    __m512i low, high;
    uint64_t negative[4];
    Format::Codes(w, planes, &low, &high, negative);
    const __m256 factors =
        _mm256_mul_ps(_mm256_set1_ps(LoadHalf(w) * Format::kUnit), Format::Multipliers(w));
    __m256 token_factors[kScalesPerBlock ? NT : 1];
    if constexpr (kScalesPerBlock) {
      for (int t = 0; t < NT; ++t) {
        token_factors[t] = _mm256_mul_ps(factors, _mm256_loadu_ps(scale + t * nblocks + sb * 8));
      }
    }
    for (int p = 0; p < 4; ++p) {
      const __m512i magnitudes = PairMagnitudes(low, high, levels, p);
      const __mmask64 negative_p = _cvtu64_mask64(negative[p]);
      const __m512 pair_factors = PairLanes(factors, p);
      const int64_t b = sb * 8 + 2 * p;
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const __m512i x = _mm512_loadu_si512(q + t * k + b * 32);
        const __m512i signed_x = _mm512_mask_sub_epi8(x, negative_p, zero, x);
        const __m512i dp = _mm512_dpbusd_epi32(zero, magnitudes, signed_x);
        __m512 s;
        if constexpr (kScalesPerBlock) {
          s = PairLanes(token_factors[t], p);
        } else {
          const float* as = scale + t * nblocks + b;
          s = _mm512_mul_ps(pair_factors, _mm512_mask_broadcastss_ps(_mm512_set1_ps(as[0]), 0xFF00,
                                                                     _mm_load_ss(as + 1)));
        }
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), s, acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

template <int NT>
void DotIQ3_ST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               float* out) {
  DotIQ3T<IQ3SCodes, NT>(w, nblocks, a, token, out);
}

template <int NT>
void DotIQ3_XXST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                 float* out) {
  DotIQ3T<IQ3XXSCodes, NT>(w, nblocks, a, token, out);
}

// Prefill's tiles: the IQ3 formats 16 then 8 tokens a pass, the rest 4 at a time; the IQ2
// formats through the VNNI table's tiles.
void DotCodebookTile(DType type, const uint8_t* w, int64_t nblocks, const QuantizedActivations& a,
                     int64_t token, int ntok, float* out) {
  if (type != DType::kIQ3_S && type != DType::kIQ3_XXS) {
    Avx512VnniTable().dot_codebook_tile(type, w, nblocks, a, token, ntok, out);
    return;
  }
  const bool s = type == DType::kIQ3_S;
  int t = 0;
  for (; t + 16 <= ntok; t += 16) {
    (s ? DotIQ3_ST<16> : DotIQ3_XXST<16>)(w, nblocks, a, token + t, out + t);
  }
  for (; t + 8 <= ntok; t += 8) {
    (s ? DotIQ3_ST<8> : DotIQ3_XXST<8>)(w, nblocks, a, token + t, out + t);
  }
  const RowDotFn dot = s ? GEMMA4_BY_TOKEN_COUNT(DotIQ3_ST) : GEMMA4_BY_TOKEN_COUNT(DotIQ3_XXST);
  for (; t < ntok; t += 4) dot(w, nblocks, a, token + t, std::min(4, ntok - t), out + t);
}

}  // namespace

const KernelTable& Table() {
  static const KernelTable table = [] {
    KernelTable t = Avx512VnniTable();
    t.isa = "avx512vbmi";
    t.dot_iq3_s = GEMMA4_BY_TOKEN_COUNT(DotIQ3_ST);
    t.dot_iq3_xxs = GEMMA4_BY_TOKEN_COUNT(DotIQ3_XXST);
    t.dot_codebook_tile = DotCodebookTile;
    return t;
  }();
  return table;
}

}  // namespace gemma4::kernels::avx512vbmi

namespace gemma4::kernels {

const KernelTable& Avx512VbmiTable() { return avx512vbmi::Table(); }

}  // namespace gemma4::kernels
