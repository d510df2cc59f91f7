// AVX-512 VBMI kernels for the codebook formats, on top of the AVX-512 VNNI table (which this
// table copies): the grid lookups without gathers. On this project's Zen 5 machine a 16-lane
// vpgatherdd from a 2 KB table takes about 7 ns (the same loop without it 0.75 ns; an 8-lane
// vpgatherdq 3.5 ns), which left the one-token IQ3 dot at 1 ms per 6144 x 1536 matrix,
// gather-bound at ~20% of the bandwidth bound. Here a whole 256-value block's grid indices (64
// for IQ3; 32 for IQ2, two blocks at a time) are looked up at once with vpermi2b in byte planes
// of the grid's level codes (the level index of each magnitude: 3 bits x 4 for IQ3, 2 bits x 8
// for IQ2; a low and a high plane of 256, 512 or 1024 bytes), and each pair of sub-blocks'
// codes are spread to bytes with vpermi2b + vpmultishiftqb and made magnitudes with vpermb: 3
// instructions a pair after 7-31 a lookup. Compiled with the VNNI unit's flags plus
// -mavx512vbmi and -mbmi2; only called after CpuSupports(Isa::kAvx512Vbmi).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#define GEMMA4_ISA_NAMESPACE avx512vbmi
#include <immintrin.h>

#include <algorithm>
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

// A grid of N entries of kMagnitudes bytes as byte planes of its level codes: the level index
// (rank among the grid's distinct magnitudes) of magnitude k at code bits kBits k ..; the low
// plane holds code bits 0-7, the high plane bits 8-15, and levels[i] the level of code i & (2^kBits
// - 1) (a vpermb table: it reads 6 bits of each byte, so the bits above a field need no mask).
template <size_t N>
struct CodePlanes {
  alignas(64) uint8_t low[N];
  alignas(64) uint8_t high[N];
  alignas(64) uint8_t levels[64];
};

template <int kMagnitudes, int kBits, class Entry, size_t N>
CodePlanes<N> MakeCodePlanes(const std::array<Entry, N>& grid) {
  CodePlanes<N> planes{};
  bool present[256] = {};
  for (Entry e : grid) {
    for (int k = 0; k < kMagnitudes; ++k) present[static_cast<uint8_t>(e >> (8 * k))] = true;
  }
  uint8_t rank[256] = {}, level[8] = {};
  int count = 0;
  for (int v = 0; v < 256; ++v) {
    if (!present[v]) continue;
    rank[v] = static_cast<uint8_t>(count);
    level[count++] = static_cast<uint8_t>(v);  // at most 2^kBits <= 8 levels
  }
  for (int i = 0; i < 64; ++i) planes.levels[i] = level[i & ((1 << kBits) - 1)];
  for (size_t i = 0; i < N; ++i) {
    uint32_t code = 0;
    for (int k = 0; k < kMagnitudes; ++k) {
      code |= uint32_t{rank[static_cast<uint8_t>(grid[i] >> (8 * k))]} << (kBits * k);
    }
    planes.low[i] = static_cast<uint8_t>(code);
    planes.high[i] = static_cast<uint8_t>(code >> 8);
  }
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

// The same in a 512-byte plane (bit 8 of each index in bit8) and a 1024-byte one (bit 9 in
// bit9).
inline __m512i Lookup512(const uint8_t* plane, __m512i index, __mmask64 bit8) {
  return _mm512_mask_blend_epi8(bit8, Lookup256(plane, index), Lookup256(plane + 256, index));
}
inline __m512i Lookup1024(const uint8_t* plane, __m512i index, __mmask64 bit8, __mmask64 bit9) {
  return _mm512_mask_blend_epi8(bit9, Lookup512(plane, index, bit8),
                                Lookup512(plane + 512, index, bit8));
}

// Byte 8q + j of the vpermi2b that spreads pair p's codes into qwords (entries >= 64 pick the
// second operand, the high plane's bytes). IQ3 (16 indices a pair, p < 4): qword q gets the
// codes of indices 16p + 2q and 16p + 2q + 1 in bits 0-15 and 16-31; IQ2 (8 indices a pair,
// two blocks' 32 each, p < 8): the code of index 8p + q in bits 0-15. The other bytes repeat
// those (unused).
template <int kIndicesPerPair>
constexpr std::array<std::array<uint8_t, 64>, 8> SpreadCodes() {
  std::array<std::array<uint8_t, 64>, 8> s{};
  for (int p = 0; p < 512 / (8 * kIndicesPerPair); ++p) {
    for (int q = 0; q < 8; ++q) {
      for (int j = 0; j < 8; ++j) {
        const int index = kIndicesPerPair == 16 ? 16 * p + 2 * q + (j / 2) % 2 : 8 * p + q;
        s[p][8 * q + j] = static_cast<uint8_t>(j % 2 == 0 ? index : 64 + index);
      }
    }
  }
  return s;
}

// The grid entries of sub-blocks 2p, 2p + 1 as 64 magnitudes in element order, from the
// looked-up codes (low, high: the planes' bytes for index i in byte i): the codes spread into
// qwords, vpmultishiftqb moving each magnitude's bits to the bottom of its byte (IQ3: bit
// offsets 0, 3, 6, 9, 16, 19, 22, 25; IQ2: 0, 2, ..., 14), and the levels by vpermb.
template <int kIndicesPerPair>
inline __m512i PairMagnitudes(__m512i low, __m512i high, __m512i levels, int p) {
  alignas(64) static constexpr auto kSpread = SpreadCodes<kIndicesPerPair>();
  constexpr bool kIQ3 = kIndicesPerPair == 16;
  const __m512i codes = _mm512_permutex2var_epi8(low, _mm512_load_si512(kSpread[p].data()), high);
  const __m512i fields = _mm512_multishift_epi64_epi8(
      _mm512_set1_epi64(kIQ3 ? 0x1916131009060300LL : 0x0E0C0A0806040200LL), codes);
  return _mm512_permutexvar_epi8(fields, levels);
}

// Up to 64 bytes of 7-bit sign indices (bit 7 ignored) as sign bytes (kIQSignBits: the eighth
// sign from the parity).
inline __m512i SignBytes(__m512i sign_index) {
  return _mm512_permutex2var_epi8(_mm512_loadu_si512(quant::kIQSignBits.data()), sign_index,
                                  _mm512_loadu_si512(quant::kIQSignBits.data() + 64));
}

// The 16 multipliers 2 s + 1 of a block's 16-value quarters from 8 bytes of nibbles (quarter
// 2j: the low nibble of byte j, 2j + 1: the high one).
inline __m512 QuarterMultipliers(const uint8_t* nibbles) {
  const __m512i bytes = _mm512_permutexvar_epi32(
      _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
      _mm512_castsi256_si512(
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(nibbles)))));
  const __m512i s = _mm512_and_si512(
      _mm512_srlv_epi32(bytes, _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4)),
      _mm512_set1_epi32(15));
  return _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_add_epi32(s, s), _mm512_set1_epi32(1)));
}

// The same from 8 per-sub-block s (dword lanes of s8), each for both of its quarters.
inline __m512 SubBlockMultipliers(__m256i s8) {
  const __m512i s =
      _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
                               _mm512_castsi256_si512(s8));
  return _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_add_epi32(s, s), _mm512_set1_epi32(1)));
}

// Each format: kBlockBytes; kIndicesPerPair (grid indices per pair of sub-blocks); kUnit (x =
// d unit m grid sign); kBlocksPerLookup; Planes(); Codes(blocks, nb, planes, low, high,
// negative): the looked-up codes of nb (<= kBlocksPerLookup) blocks' indices (byte i: index i)
// and each pair of sub-blocks' 64-bit sign mask (negative[4h + p]: block h's pair p);
// Multipliers(block): the 16 quarters' 2 s + 1.

// IQ3_S: 9-bit indices, the low 8 bits in qs[64] at 2, bit 8 of index l in bit l % 8 of
// qh[l / 8] (so qh is the block's 64-bit mask of bit 8); explicit sign bits, 8 bytes a pair;
// s in the nibbles of scales[4], one per sub-block.
struct IQ3S {
  static constexpr int kBlockBytes = quant::kIQ3_SBlockBytes;
  static constexpr int kIndicesPerPair = 16;
  static constexpr float kUnit = 1.0f;
  static constexpr int kBlocksPerLookup = 1;
  static const CodePlanes<512>& Planes() {
    static const CodePlanes<512> planes = MakeCodePlanes<4, 3>(quant::kIQ3SGrid);
    return planes;
  }
  static void Codes(const uint8_t* block, int /*nb*/, const CodePlanes<512>& planes, __m512i* low,
                    __m512i* high, uint64_t negative[4]) {
    const __m512i index = _mm512_loadu_si512(block + 2);
    uint64_t bit8;
    std::memcpy(&bit8, block + quant::kIQ3_SHigh, 8);
    *low = Lookup512(planes.low, index, bit8);
    *high = Lookup512(planes.high, index, bit8);
    std::memcpy(negative, block + quant::kIQ3_SSigns, 32);
  }
  static __m512 Multipliers(const uint8_t* block) {
    uint32_t packed;
    std::memcpy(&packed, block + quant::kIQ3_SScales, 4);
    const __m256i s =
        _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(packed)),
                                           _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                         _mm256_set1_epi32(15));
    return SubBlockMultipliers(s);
  }
};

// IQ3_XXS: 8-bit indices in qs[64] at 2; per sub-block a u32 (at 66 + 4j) of four 7-bit sign
// indices (bit offsets 0, 7, 14, 21: one vpmultishiftqb takes all 32) and s in bits 28-31.
struct IQ3XXS {
  static constexpr int kBlockBytes = quant::kIQ3_XXSBlockBytes;
  static constexpr int kIndicesPerPair = 16;
  static constexpr float kUnit = 0.25f;
  static constexpr int kBlocksPerLookup = 1;
  static const CodePlanes<256>& Planes() {
    static const CodePlanes<256> planes = MakeCodePlanes<4, 3>(quant::kIQ3XXSGrid);
    return planes;
  }
  static void Codes(const uint8_t* block, int /*nb*/, const CodePlanes<256>& planes, __m512i* low,
                    __m512i* high, uint64_t negative[4]) {
    const __m512i index = _mm512_loadu_si512(block + 2);
    *low = Lookup256(planes.low, index);
    *high = Lookup256(planes.high, index);
    const __m512i packed = _mm512_zextsi256_si512(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + quant::kIQ3_XXSSigns)));
    const __m512i signs =
        SignBytes(_mm512_multishift_epi64_epi8(_mm512_set1_epi64(0x352E2720150E0700LL), packed));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(negative), _mm512_castsi512_si256(signs));
  }
  static __m512 Multipliers(const uint8_t* block) {
    return SubBlockMultipliers(_mm256_srli_epi32(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + quant::kIQ3_XXSSigns)), 28));
  }
};

// An IQ2 block's 32 indices (bits 0-7 a byte, bits 8 and 9 as masks) and 32 sign bytes or
// 7-bit sign indices.
struct IQ2Block {
  __m256i index;
  __m256i signs;
  uint32_t bit8, bit9;
};

// The IQ2 formats look up two blocks' 64 indices at once (the second block's in bytes 32-63;
// with nb 1, the row's last block alone, its lanes doubled).
template <class Format, size_t N>
void IQ2Codes(const uint8_t* blocks, int nb, const CodePlanes<N>& planes, __m512i* low,
              __m512i* high, uint64_t negative[8]) {
  const IQ2Block first = Format::Parts(blocks);
  const IQ2Block second = nb > 1 ? Format::Parts(blocks + Format::kBlockBytes) : first;
  const __m512i index = _mm512_inserti64x4(_mm512_castsi256_si512(first.index), second.index, 1);
  const __mmask64 bit8 = first.bit8 | uint64_t{second.bit8} << 32;
  const __mmask64 bit9 = first.bit9 | uint64_t{second.bit9} << 32;
  if constexpr (N == 256) {
    *low = Lookup256(planes.low, index);
    *high = Lookup256(planes.high, index);
  } else if constexpr (N == 512) {
    *low = Lookup512(planes.low, index, bit8);
    *high = Lookup512(planes.high, index, bit8);
  } else {
    *low = Lookup1024(planes.low, index, bit8, bit9);
    *high = Lookup1024(planes.high, index, bit8, bit9);
  }
  __m512i signs = _mm512_inserti64x4(_mm512_castsi256_si512(first.signs), second.signs, 1);
  if constexpr (Format::kSignIndices) signs = SignBytes(signs);
  _mm512_storeu_si512(negative, signs);
}

// IQ2_XXS: per sub-block 8 bytes at 2 + 8j: four 8-bit indices, then a u32 of four 7-bit sign
// indices (bit offsets 32, 39, 46, 53 of the qword) and s in bits 28-31 of the u32.
struct IQ2XXS {
  static constexpr int kBlockBytes = quant::kIQ2_XXSBlockBytes;
  static constexpr int kIndicesPerPair = 8;
  static constexpr float kUnit = iq2::kUnit;
  static constexpr int kBlocksPerLookup = 2;
  static constexpr bool kSignIndices = true;
  static const CodePlanes<256>& Planes() {
    static const CodePlanes<256> planes = MakeCodePlanes<8, 2>(quant::kIQ2XXSGrid);
    return planes;
  }
  // Byte i < 32: byte 8 (i / 4) + i % 4 of the 8-byte groups (the indices, or the sign indices
  // once the vpmultishiftqb has moved them there).
  static __m512i Compact() {
    alignas(64) static constexpr auto kCompact = [] {
      std::array<uint8_t, 64> c{};
      for (int i = 0; i < 32; ++i) c[i] = static_cast<uint8_t>(8 * (i / 4) + i % 4);
      return c;
    }();
    return _mm512_load_si512(kCompact.data());
  }
  static IQ2Block Parts(const uint8_t* block) {
    const __m512i raw = _mm512_loadu_si512(block + 2);
    const __m512i fields =
        _mm512_multishift_epi64_epi8(_mm512_set1_epi64(0x352E2720352E2720LL), raw);
    return {_mm512_castsi512_si256(_mm512_permutexvar_epi8(Compact(), raw)),
            _mm512_castsi512_si256(_mm512_permutexvar_epi8(Compact(), fields)), 0, 0};
  }
  static void Codes(const uint8_t* blocks, int nb, const CodePlanes<256>& planes, __m512i* low,
                    __m512i* high, uint64_t negative[8]) {
    IQ2Codes<IQ2XXS>(blocks, nb, planes, low, high, negative);
  }
  static __m512 Multipliers(const uint8_t* block) {
    return SubBlockMultipliers(
        _mm512_cvtepi64_epi32(_mm512_srli_epi64(_mm512_loadu_si512(block + 2), 60)));
  }
};

// IQ2_XS: u16 qs[32] at 2, a 9-bit index and a 7-bit sign index each; s per quarter in the
// nibbles of scales[8] at 66.
struct IQ2XS {
  static constexpr int kBlockBytes = quant::kIQ2_XSBlockBytes;
  static constexpr int kIndicesPerPair = 8;
  static constexpr float kUnit = iq2::kUnit;
  static constexpr int kBlocksPerLookup = 2;
  static constexpr bool kSignIndices = true;
  static const CodePlanes<512>& Planes() {
    static const CodePlanes<512> planes = MakeCodePlanes<8, 2>(quant::kIQ2XSGrid);
    return planes;
  }
  static IQ2Block Parts(const uint8_t* block) {
    const __m512i packed = _mm512_loadu_si512(block + 2);
    return {_mm512_cvtepi16_epi8(packed), _mm512_cvtepi16_epi8(_mm512_srli_epi16(packed, 9)),
            _mm512_test_epi16_mask(packed, _mm512_set1_epi16(0x100)), 0};
  }
  static void Codes(const uint8_t* blocks, int nb, const CodePlanes<512>& planes, __m512i* low,
                    __m512i* high, uint64_t negative[8]) {
    IQ2Codes<IQ2XS>(blocks, nb, planes, low, high, negative);
  }
  static __m512 Multipliers(const uint8_t* block) {
    return QuarterMultipliers(block + quant::kIQ2_XSScales);
  }
};

// IQ2_S: index bits 0-7 in bytes [32] at 2, bits 8-9 of index 4j + l at bits 2l, 2l + 1 of
// qh[j] (at 66; pext takes each bit's 32 as a mask); explicit sign bits at 34; s per quarter in
// the nibbles of scales[8] at 74.
struct IQ2S {
  static constexpr int kBlockBytes = quant::kIQ2_SBlockBytes;
  static constexpr int kIndicesPerPair = 8;
  static constexpr float kUnit = iq2::kUnit;
  static constexpr int kBlocksPerLookup = 2;
  static constexpr bool kSignIndices = false;
  static const CodePlanes<1024>& Planes() {
    static const CodePlanes<1024> planes = MakeCodePlanes<8, 2>(quant::kIQ2SGrid);
    return planes;
  }
  static IQ2Block Parts(const uint8_t* block) {
    uint64_t qh;
    std::memcpy(&qh, block + quant::kIQ2_SHigh, 8);
    return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2)),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + quant::kIQ2_SSigns)),
            static_cast<uint32_t>(_pext_u64(qh, 0x5555555555555555ULL)),
            static_cast<uint32_t>(_pext_u64(qh, 0xAAAAAAAAAAAAAAAAULL))};
  }
  static void Codes(const uint8_t* blocks, int nb, const CodePlanes<1024>& planes, __m512i* low,
                    __m512i* high, uint64_t negative[8]) {
    IQ2Codes<IQ2S>(blocks, nb, planes, low, high, negative);
  }
  static __m512 Multipliers(const uint8_t* block) {
    return QuarterMultipliers(block + quant::kIQ2_SScales);
  }
};

// Lanes 4k .. 4k + 3: v[4p + k] (the vpdpbusd lanes of pair p's quarter k).
inline __m512 PairLanes(__m512 v, int p) {
  return _mm512_permutexvar_ps(
      _mm512_add_epi32(_mm512_set1_epi32(4 * p),
                       _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)),
      v);
}

// Row dot of a codebook format with NT tokens: per lookup the codes of one or two blocks'
// indices, per block the 16 quarters' factors d unit m, then per pair of sub-blocks the
// magnitudes, and per token vpdpbusd of the magnitudes with the sign-applied activations
// (|a| <= 127: negating is exact) scaled by factor x activation scale per quarter of the vector
// (up to 4 tokens: a block's 16 products per token at once). The weights are decoded once for
// the NT tokens.
template <class Format, int NT>
void DotGridT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i zero = _mm512_setzero_si512();
  const auto& planes = Format::Planes();
  const __m512i levels = _mm512_load_si512(planes.levels);
  // A token's 8 sub-block scales in the 16 quarters' lanes.
  const __m512i quarter_of = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const bool to_l2 = DecodeStreamToL2();
  // Token t's rows: activations at q + t * k, block scales at scale + t * k / 32.
  const int64_t k = nblocks * 32;
  const int8_t* q = a.q_row(token);
  const float* scale = a.scale_row(token);
  constexpr bool kScalesPerBlock = NT <= 4;
  constexpr int kGroup = Format::kBlocksPerLookup;
  const int64_t nsb = nblocks / 8;
  for (int64_t sb0 = 0; sb0 < nsb; sb0 += kGroup, w += kGroup * Format::kBlockBytes) {
    const int nb = static_cast<int>(std::min<int64_t>(kGroup, nsb - sb0));
    for (int h = 0; h < kGroup; ++h) {
      simd::PrefetchDecodeStream<Format::kBlockBytes>(w + h * Format::kBlockBytes, to_l2);
    }
    __m512i low, high;
    uint64_t negative[4 * kGroup];
    Format::Codes(w, nb, planes, &low, &high, negative);
    for (int h = 0; h < nb; ++h) {
      const uint8_t* block = w + h * Format::kBlockBytes;
      const int64_t sb = sb0 + h;
      const __m512 factors = _mm512_mul_ps(_mm512_set1_ps(LoadHalf(block) * Format::kUnit),
                                           Format::Multipliers(block));
      __m512 token_factors[kScalesPerBlock ? NT : 1];
      if constexpr (kScalesPerBlock) {
        for (int t = 0; t < NT; ++t) {
          const __m512 as = _mm512_permutexvar_ps(
              quarter_of, _mm512_castps256_ps512(_mm256_loadu_ps(scale + t * nblocks + sb * 8)));
          token_factors[t] = _mm512_mul_ps(factors, as);
        }
      }
      for (int p = 0; p < 4; ++p) {
        const __m512i magnitudes =
            PairMagnitudes<Format::kIndicesPerPair>(low, high, levels, 4 * h + p);
        const __mmask64 negative_p = _cvtu64_mask64(negative[4 * h + p]);
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
            s = _mm512_mul_ps(
                pair_factors,
                _mm512_mask_broadcastss_ps(_mm512_set1_ps(as[0]), 0xFF00, _mm_load_ss(as + 1)));
          }
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), s, acc[t]);
        }
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

template <class Format>
struct Kernels {
  template <int NT>
  static void Dot(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                  float* out) {
    DotGridT<Format, NT>(w, nblocks, a, token, out);
  }
  // Prefill's tiles: 16, then 8 tokens a pass, the rest 4 at a time.
  static void Tile(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                   int ntok, float* out) {
    int t = 0;
    for (; t + 16 <= ntok; t += 16) Dot<16>(w, nblocks, a, token + t, out + t);
    for (; t + 8 <= ntok; t += 8) Dot<8>(w, nblocks, a, token + t, out + t);
    for (; t < ntok; t += 4) {
      GEMMA4_BY_TOKEN_COUNT(Dot)(w, nblocks, a, token + t, std::min(4, ntok - t), out + t);
    }
  }
};

void DotCodebookTile(DType type, const uint8_t* w, int64_t nblocks, const QuantizedActivations& a,
                     int64_t token, int ntok, float* out) {
  if (IsOneBitCodebookType(type)) {  // IQ1's 2048-entry grid: the VNNI table's gathers
    Avx512VnniTable().dot_codebook_tile(type, w, nblocks, a, token, ntok, out);
    return;
  }
  const auto tile = type == DType::kIQ3_S     ? Kernels<IQ3S>::Tile
                    : type == DType::kIQ3_XXS ? Kernels<IQ3XXS>::Tile
                    : type == DType::kIQ2_XXS ? Kernels<IQ2XXS>::Tile
                    : type == DType::kIQ2_XS  ? Kernels<IQ2XS>::Tile
                                              : Kernels<IQ2S>::Tile;
  tile(w, nblocks, a, token, ntok, out);
}

}  // namespace

const KernelTable& Table() {
  static const KernelTable table = [] {
    KernelTable t = Avx512VnniTable();
    t.isa = "avx512vbmi";
    t.dot_iq3_s = GEMMA4_BY_TOKEN_COUNT(Kernels<IQ3S>::Dot);
    t.dot_iq3_xxs = GEMMA4_BY_TOKEN_COUNT(Kernels<IQ3XXS>::Dot);
    t.dot_iq2_xxs = GEMMA4_BY_TOKEN_COUNT(Kernels<IQ2XXS>::Dot);
    t.dot_iq2_xs = GEMMA4_BY_TOKEN_COUNT(Kernels<IQ2XS>::Dot);
    t.dot_iq2_s = GEMMA4_BY_TOKEN_COUNT(Kernels<IQ2S>::Dot);
    t.dot_codebook_tile = DotCodebookTile;
    return t;
  }();
  return table;
}

}  // namespace gemma4::kernels::avx512vbmi

namespace gemma4::kernels {

const KernelTable& Avx512VbmiTable() { return avx512vbmi::Table(); }

}  // namespace gemma4::kernels
