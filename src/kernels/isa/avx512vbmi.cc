// AVX-512 VBMI kernels for the codebook formats, on top of the AVX-512 VNNI table (which this
// table copies): the grid lookups without gathers. On this project's Zen 5 machine a 16-lane
// vpgatherdd from a 2 KB table takes about 7 ns (the same loop without it 0.75 ns; an 8-lane
// vpgatherdq 3.5 ns), which left the one-token IQ3 dot at 1 ms per 6144 x 1536 matrix,
// gather-bound at ~20% of the bandwidth bound. Here a whole 256-value block's grid indices (64
// for IQ3; 32 for IQ2, two blocks at a time) are looked up at once with vpermi2b in byte planes
// of the grid's level codes (the level index of each magnitude: 3 bits x 4 for IQ3, 2 bits x 8
// for IQ2; a low and a high plane of 256, 512 or 1024 bytes), and each pair of sub-blocks'
// codes are spread to bytes with vpermi2b + vpmultishiftqb and made magnitudes with vpermb: 3
// instructions a pair after 7-31 a lookup. IQ1's 2048-entry grid of -1, 0, +1 is looked up as
// two planes of bit masks (nonzero, negative), two blocks' 64 entries per 2 x 16 vpermi2b, and
// the masks become magnitudes with two blends (IQ1Lookup). Compiled with the VNNI unit's flags plus
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
#include <type_traits>

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
inline __m512i Lookup2048(const uint8_t* plane, __m512i index, __mmask64 bit8, __mmask64 bit9,
                          __mmask64 bit10) {
  return _mm512_mask_blend_epi8(bit10, Lookup1024(plane, index, bit8, bit9),
                                Lookup1024(plane + 1024, index, bit8, bit9));
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

// 2 s + 1 of each dword lane, as floats.
inline __m512 OddMultipliers(__m512i s) {
  return _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_add_epi32(s, s), _mm512_set1_epi32(1)));
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
  return OddMultipliers(s);
}

// The same from 8 per-sub-block s (dword lanes of s8), each for both of its quarters.
inline __m512 SubBlockMultipliers(__m256i s8) {
  const __m512i s =
      _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
                               _mm512_castsi256_si512(s8));
  return OddMultipliers(s);
}

// Each format: kBlockBytes; kUnit (x = d unit m grid sign); D(block); kBlocksPerLookup;
// Lookup, constructed from (blocks, nb): nb (<= kBlocksPerLookup) blocks' grid entries looked
// up at once, whose Pair(4h + p, magnitudes, negative) gives block h's pair of sub-blocks p as 64
// magnitudes and the mask of the negative values; Multipliers(block): the 16 quarters' 2 s + 1.
// The IQ2 and IQ3 formats' Lookup is LevelLookup: kIndicesPerPair (grid indices per pair of
// sub-blocks), Planes(), Codes(blocks, nb, planes, low, high, negative): the looked-up codes of
// the blocks' indices (byte i: index i) and each pair's 64-bit sign mask (negative[4h + p]).
template <class Format>
struct LevelLookup {
  // Once a row: the code planes and their levels table.
  struct Tables {
    const std::remove_reference_t<decltype(Format::Planes())>& planes = Format::Planes();
    __m512i levels = _mm512_load_si512(planes.levels);
  };
  __m512i low, high, levels;
  uint64_t negative[4 * Format::kBlocksPerLookup];
  LevelLookup(const Tables& tables, const uint8_t* blocks, int nb) : levels(tables.levels) {
    Format::Codes(blocks, nb, tables.planes, &low, &high, negative);
  }
  void Pair(int p, __m512i* magnitudes, __mmask64* negative_p) const {
    *magnitudes = PairMagnitudes<Format::kIndicesPerPair>(low, high, levels, p);
    *negative_p = _cvtu64_mask64(negative[p]);
  }
};

// IQ3_S: 9-bit indices, the low 8 bits in qs[64] at 2, bit 8 of index l in bit l % 8 of
// qh[l / 8] (so qh is the block's 64-bit mask of bit 8); explicit sign bits, 8 bytes a pair;
// s in the nibbles of scales[4], one per sub-block.
struct IQ3S {
  using Lookup = LevelLookup<IQ3S>;
  static float D(const uint8_t* block) { return LoadHalf(block); }
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
  using Lookup = LevelLookup<IQ3XXS>;
  static float D(const uint8_t* block) { return LoadHalf(block); }
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
  using Lookup = LevelLookup<IQ2XXS>;
  static float D(const uint8_t* block) { return LoadHalf(block); }
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
  using Lookup = LevelLookup<IQ2XS>;
  static float D(const uint8_t* block) { return LoadHalf(block); }
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
  using Lookup = LevelLookup<IQ2S>;
  static float D(const uint8_t* block) { return LoadHalf(block); }
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

// The 1-bit formats (IQ1_S, IQ1_M): per group of 8 values an 11-bit index into ggml's
// 2048-entry grid of values -1, 0, +1 (kIQ1SGrid), shifted by +-1/8 per group (IQ1_M) or per
// sub-block (IQ1_S); computed on as the integers q = 8 g +- 1 (iq1::kUnit). The grid as two
// 2048-byte planes of bit masks (bit k of entry i: value k nonzero / negative), so one
// Lookup2048 per plane (16 vpermi2b and 15 blends) finds two blocks' 64 entries where the VNNI
// table gathers eight qwords four times a block: the one-token row dot about 1.3x faster on
// this project's Zen 5 machine (6144 x 1536 IQ1_S 850-1020 -> 650-830 us, one thread).
struct IQ1Planes {
  alignas(64) uint8_t nonzero[2048];
  alignas(64) uint8_t negative[2048];
};

inline const IQ1Planes& IQ1GridPlanes() {
  static const IQ1Planes planes = [] {
    IQ1Planes p{};
    for (size_t i = 0; i < quant::kIQ1SGrid.size(); ++i) {
      for (int k = 0; k < 8; ++k) {
        const auto value = static_cast<int8_t>(quant::kIQ1SGrid[i] >> (8 * k));
        if (value != 0) p.nonzero[i] |= static_cast<uint8_t>(1 << k);
        if (value < 0) p.negative[i] |= static_cast<uint8_t>(1 << k);
      }
    }
    return p;
  }();
  return planes;
}

// Two blocks' 64 grid entries (with nb 1, the row's last block alone, its lanes doubled):
// Format's index low bytes (32 at kLow) and its 16 bytes at kHigh as 8 dwords, each widened to
// the qword of index lanes 8Q .. 8Q + 7, where one vpmultishiftqb moves every index's bits 8-10
// (kIndexShifts) and its group's shift sign (kShiftSigns) to the bottom of its byte.
template <class Format>
struct IQ1Lookup {
  uint64_t nonzero[8], negative[8];
  uint64_t shift_negative;  // bit j: index j's group is shifted by -1/8
  struct Tables {
    const IQ1Planes& planes = IQ1GridPlanes();
  };
  IQ1Lookup(const Tables& tables, const uint8_t* blocks, int nb) {
    const uint8_t* second = nb > 1 ? blocks + Format::kBlockBytes : blocks;
    const __m512i index = _mm512_inserti64x4(
        _mm512_castsi256_si512(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blocks + Format::kLow))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(second + Format::kLow)), 1);
    const __m512i high = _mm512_cvtepu32_epi64(_mm256_inserti128_si256(
        _mm256_castsi128_si256(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + Format::kHigh))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(second + Format::kHigh)), 1));
    const __m512i bits =
        _mm512_multishift_epi64_epi8(_mm512_set1_epi64(Format::kIndexShifts), high);
    const __mmask64 bit8 = _mm512_test_epi8_mask(bits, _mm512_set1_epi8(1));
    const __mmask64 bit9 = _mm512_test_epi8_mask(bits, _mm512_set1_epi8(2));
    const __mmask64 bit10 = _mm512_test_epi8_mask(bits, _mm512_set1_epi8(4));
    const IQ1Planes& planes = tables.planes;
    _mm512_storeu_si512(nonzero, Lookup2048(planes.nonzero, index, bit8, bit9, bit10));
    _mm512_storeu_si512(negative, Lookup2048(planes.negative, index, bit8, bit9, bit10));
    shift_negative = _cvtmask64_u64(_mm512_test_epi8_mask(
        _mm512_multishift_epi64_epi8(_mm512_set1_epi64(Format::kShiftSigns), high),
        _mm512_set1_epi8(1)));
  }
  // Pair p's values q = 8 g +- 1 as |q| (1 where g = 0; 9 where g and the shift have one sign,
  // else 7) and the mask of q < 0 (g < 0, or g = 0 and a negative shift).
  void Pair(int p, __m512i* magnitudes, __mmask64* q_negative) const {
    const uint64_t nz = nonzero[p], neg = negative[p];
    const uint64_t shift = _pdep_u64(shift_negative >> (8 * p), 0x0101010101010101ULL) * 0xFF;
    const uint64_t differ = neg ^ shift;
    *magnitudes =
        _mm512_mask_mov_epi8(_mm512_mask_mov_epi8(_mm512_set1_epi8(1), _cvtu64_mask64(nz & ~differ),
                                                  _mm512_set1_epi8(9)),
                             _cvtu64_mask64(nz & differ), _mm512_set1_epi8(7));
    *q_negative = _cvtu64_mask64((nz & neg) | (shift & ~nz));
  }
};

// What the two IQ1 formats share: the lookup, d's unit, two blocks a lookup.
template <class Format>
struct IQ1Format {
  using Lookup = IQ1Lookup<Format>;
  static constexpr float kUnit = iq1::kUnit;
  static constexpr int kBlocksPerLookup = 2;
};

// IQ1_S (50 bytes): index low bytes at 2; u16 qh[8] at 34: index bits 8-10 of group l at 3 l,
// s at 12-14, the sub-block's shift sign at 15 (index lane k of a qword: sub-block k / 4, group
// k % 4).
struct IQ1S : IQ1Format<IQ1S> {
  static constexpr int kBlockBytes = quant::kIQ1_SBlockBytes;
  static constexpr int kLow = 2, kHigh = quant::kIQ1_SHigh;
  static constexpr long long kIndexShifts = 0x1916131009060300LL;
  static constexpr long long kShiftSigns = 0x1F1F1F1F0F0F0F0FLL;
  static float D(const uint8_t* block) { return iq1::IQ1S::D(block); }
  static __m512 Multipliers(const uint8_t* block) {
    const __m256i qh = _mm256_cvtepu16_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + quant::kIQ1_SHigh)));
    return SubBlockMultipliers(_mm256_and_si256(_mm256_srli_epi32(qh, 12), _mm256_set1_epi32(7)));
  }
};

// IQ1_M (56 bytes): index low bytes at 0; qh[16] at 32, nibble l % 2 of byte l / 2 for group l:
// index bits 8-10 and the group's shift sign (bit 3); u16 scales[4] at 48, quarter i's s at bits
// 3 (i % 4) of scales[i / 4] (their top nibbles: d).
struct IQ1M : IQ1Format<IQ1M> {
  static constexpr int kBlockBytes = quant::kIQ1_MBlockBytes;
  static constexpr int kLow = 0, kHigh = quant::kIQ1_MHigh;
  static constexpr long long kIndexShifts = 0x1C1814100C080400LL;
  static constexpr long long kShiftSigns = 0x1F1B17130F0B0703LL;
  static float D(const uint8_t* block) { return iq1::IQ1M::D(block); }
  static __m512 Multipliers(const uint8_t* block) {
    const __m512i scales = _mm512_castsi128_si512(_mm_cvtepu16_epi32(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + quant::kIQ1_MScales))));
    const __m512i s = _mm512_and_si512(
        _mm512_srlv_epi32(
            _mm512_permutexvar_epi32(
                _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3), scales),
            _mm512_setr_epi32(0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9)),
        _mm512_set1_epi32(7));
    return OddMultipliers(s);
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
  const typename Format::Lookup::Tables tables;
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
    const typename Format::Lookup lookup(tables, w, nb);
    for (int h = 0; h < nb; ++h) {
      const uint8_t* block = w + h * Format::kBlockBytes;
      const int64_t sb = sb0 + h;
      const __m512 factors = _mm512_mul_ps(_mm512_set1_ps(Format::D(block) * Format::kUnit),
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
        __m512i magnitudes;
        __mmask64 negative_p;
        lookup.Pair(4 * h + p, &magnitudes, &negative_p);
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
  const auto tile = type == DType::kIQ3_S     ? Kernels<IQ3S>::Tile
                    : type == DType::kIQ3_XXS ? Kernels<IQ3XXS>::Tile
                    : type == DType::kIQ2_XXS ? Kernels<IQ2XXS>::Tile
                    : type == DType::kIQ2_XS  ? Kernels<IQ2XS>::Tile
                    : type == DType::kIQ2_S   ? Kernels<IQ2S>::Tile
                    : type == DType::kIQ1_S   ? Kernels<IQ1S>::Tile
                                              : Kernels<IQ1M>::Tile;
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
    t.dot_iq1_s = GEMMA4_BY_TOKEN_COUNT(Kernels<IQ1S>::Dot);
    t.dot_iq1_m = GEMMA4_BY_TOKEN_COUNT(Kernels<IQ1M>::Dot);
    t.dot_codebook_tile = DotCodebookTile;
    return t;
  }();
  return table;
}

}  // namespace gemma4::kernels::avx512vbmi

namespace gemma4::kernels {

const KernelTable& Avx512VbmiTable() { return avx512vbmi::Table(); }

}  // namespace gemma4::kernels
