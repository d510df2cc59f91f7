// Scalar sub-block decoding of llama.cpp's codebook formats for the SIMD row dots of the ISA
// units (included only by them, after defining GEMMA4_ISA_NAMESPACE): the 2-bit ones (IQ2_XXS,
// IQ2_XS, IQ2_S) in namespace iq2, the sign bits and multipliers of the 3-bit ones (IQ3_S,
// IQ3_XXS; their grid entries are gathered by each unit) in namespace iq3, and the 1-bit ones
// (IQ1_S, IQ1_M) in namespace iq1.
//
// A 256-value block is 8 sub-blocks of 32 values, each four groups of 8 weights sharing one
// grid entry (8 unsigned magnitudes 8, 25 or 43, one byte each) and 8 signs. The kernels gather
// a sub-block's four entries into one 32-byte vector in element order, take its 32 signs as one
// mask (bit e: weight e negative) and its two 4-bit scales s (one per half of 16) as the odd
// multipliers 2 s + 1, exactly as quant::UnpackCodebookBlock; everything here is scalar and
// shared by the three ISAs, defined in the including unit's namespace like float_kernels-inl.h.
#ifndef GEMMA4_SRC_KERNELS_ISA_CODEBOOK_INL_H_
#define GEMMA4_SRC_KERNELS_ISA_CODEBOOK_INL_H_

#ifndef GEMMA4_ISA_NAMESPACE
#error "define GEMMA4_ISA_NAMESPACE (the including ISA unit's namespace, e.g. avx2) first"
#endif

#include <cstdint>
#include <cstring>

#include "base/tensor.h"
#include "quant/iq_grids.h"
#include "quant/quant.h"

namespace gemma4::kernels::GEMMA4_ISA_NAMESPACE {
// Internal linkage, like the units' own helpers (-fno-weak rejects inline variables such as
// the formats' kBlockBytes otherwise).
namespace {

// The including unit's f16 load (F16C's or NEON's conversion), defined there: the codebook
// formats' d, read once a block, stays inline.
inline float LoadHalf(const uint8_t* p);

namespace iq2 {

// One 32-value sub-block: grid[l] holds the magnitudes of weights 8 l .. 8 l + 7 (byte k:
// weight 8 l + k), bit e of signs is set where weight e is negative, and scales holds s of
// values 0-15 in its low nibble and of values 16-31 in its high nibble.
struct SubBlock {
  uint64_t grid[4];
  uint32_t signs;
  uint32_t scales;
};

inline uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// IQ2_XXS (66 bytes): sub-block ib's 8 bytes at 2 + 8 ib are four 8-bit kIQ2XXSGrid indices,
// then a u32 whose bits 7 l .. 7 l + 6 index kIQSignBits for group l and bits 28-31 hold the
// one s of both halves.
struct IQ2XXS {
  static constexpr int kBlockBytes = quant::kIQ2_XXSBlockBytes;
  static SubBlock Decode(const uint8_t* block, int ib) {
    const uint8_t* sub = block + 2 + 8 * ib;
    const uint32_t aux = LoadU32(sub + 4);
    SubBlock s;
    s.signs = 0;
    for (int l = 0; l < 4; ++l) {
      s.grid[l] = quant::kIQ2XXSGrid[sub[l]];
      s.signs |= static_cast<uint32_t>(quant::kIQSignBits[(aux >> (7 * l)) & 127]) << (8 * l);
    }
    s.scales = (aux >> 28) * 0x11;  // the same s in both nibbles
    return s;
  }
};

// IQ2_XS (74 bytes): u16 qs[4 ib + l] at 2 + 2 (4 ib + l) holds group l's 9-bit kIQ2XSGrid
// index (bits 0-8) and 7-bit sign index (bits 9-15); scales[ib] at 66 + ib.
struct IQ2XS {
  static constexpr int kBlockBytes = quant::kIQ2_XSBlockBytes;
  static SubBlock Decode(const uint8_t* block, int ib) {
    SubBlock s;
    s.signs = 0;
    for (int l = 0; l < 4; ++l) {
      const uint16_t v = LoadU16(block + 2 + 2 * (4 * ib + l));
      s.grid[l] = quant::kIQ2XSGrid[v & 511];
      s.signs |= static_cast<uint32_t>(quant::kIQSignBits[v >> 9]) << (8 * l);
    }
    s.scales = block[quant::kIQ2_XSScales + ib];
    return s;
  }
};

// IQ2_S (82 bytes): group l's 10-bit kIQ2SGrid index has its low 8 bits in byte 2 + 4 ib + l
// and bits 8-9 at bits 2 l, 2 l + 1 of qh[ib] (66 + ib); its 8 signs are the byte at 34 + 4 ib
// + l (bit k: weight k), so the sub-block's 32 signs are the little-endian u32 at 34 + 4 ib.
// scales[ib] at 74 + ib.
struct IQ2S {
  static constexpr int kBlockBytes = quant::kIQ2_SBlockBytes;
  static SubBlock Decode(const uint8_t* block, int ib) {
    const uint8_t* low = block + 2 + 4 * ib;
    const int high = block[quant::kIQ2_SHigh + ib];
    SubBlock s;
    for (int l = 0; l < 4; ++l) {
      s.grid[l] = quant::kIQ2SGrid[low[l] | (((high >> (2 * l)) & 3) << 8)];
    }
    s.signs = LoadU32(block + quant::kIQ2_SSigns + 4 * ib);
    s.scales = block[quant::kIQ2_SScales + ib];
    return s;
  }
};

// The odd multipliers of a sub-block's two halves.
inline int MultiplierLow(const SubBlock& s) { return 2 * static_cast<int>(s.scales & 0xF) + 1; }
inline int MultiplierHigh(const SubBlock& s) { return 2 * static_cast<int>(s.scales >> 4) + 1; }

// The unit of d (x = d / 8 (2 s + 1) grid sign), as quant::CodebookUnit.
constexpr float kUnit = 0.125f;

}  // namespace iq2

// The 3-bit formats, per 32-value sub-block j of a 256-value block: 32 sign bits (bit e: value e
// negative) and the odd multiplier 2 s + 1 (one s per 32 values), as quant::UnpackCodebookBlock.
namespace iq3 {

struct IQ3S {
  static uint32_t SignBits(const uint8_t* block, int j) {
    return iq2::LoadU32(block + quant::kIQ3_SSigns + 4 * j);  // explicit, one byte per 8 values
  }
  static int Multiplier(const uint8_t* block, int j) {
    return 2 * ((block[quant::kIQ3_SScales + j / 2] >> (4 * (j % 2))) & 0xF) + 1;
  }
};

struct IQ3XXS {
  // A u32 per sub-block: four 7-bit sign indices (one per 8 values), s in bits 28-31.
  static uint32_t Packed(const uint8_t* block, int j) {
    return iq2::LoadU32(block + quant::kIQ3_XXSSigns + 4 * j);
  }
  static uint32_t SignBits(const uint8_t* block, int j) {
    const uint32_t packed = Packed(block, j);
    uint32_t signs = 0;
    for (int l = 0; l < 4; ++l) {
      signs |= uint32_t{quant::kIQSignBits[(packed >> (7 * l)) & 127]} << (8 * l);
    }
    return signs;
  }
  static int Multiplier(const uint8_t* block, int j) {
    return 2 * static_cast<int>(Packed(block, j) >> 28) + 1;
  }
};

}  // namespace iq3

// The 1-bit formats (IQ1_S, IQ1_M), per 32-value sub-block: four groups of 8 values, each a
// kIQ1SGrid entry g (int8 bytes -1, 0, +1) shifted by +-1/8. The kernels compute on the integers
// 8 g +- 1 (in [-9, 9], never 0) with unit 1/8, as quant::UnpackCodebookBlock.
namespace iq1 {

// grid[l]: group l's entry (byte k: value 8 l + k); bit l of negative set where group l's shift
// is -1/8; m_low / m_high: the odd multipliers 2 s + 1 of values 0-15 / 16-31.
struct SubBlock {
  uint64_t grid[4];
  uint32_t negative;
  int m_low, m_high;
};

// IQ1_S (50 bytes): f16 d; index low bytes qs[4 ib + l] at 2; u16 qh[ib] at 34 + 2 ib holds
// index bits 8-10 of group l at bits 3 l .. 3 l + 2, s at bits 12-14 and the shift's sign at
// bit 15 (one s and one shift per 32 values).
struct IQ1S {
  static constexpr int kBlockBytes = quant::kIQ1_SBlockBytes;
  static float D(const uint8_t* block) { return LoadHalf(block); }  // = quant::CodebookD
  static SubBlock Decode(const uint8_t* block, int ib) {
    const uint32_t qh = iq2::LoadU16(block + quant::kIQ1_SHigh + 2 * ib);
    SubBlock s;
    for (int l = 0; l < 4; ++l) {
      s.grid[l] = quant::kIQ1SGrid[block[2 + 4 * ib + l] | (((qh >> (3 * l)) & 7) << 8)];
    }
    s.negative = qh & 0x8000 ? 0xF : 0;
    s.m_low = s.m_high = 2 * static_cast<int>((qh >> 12) & 7) + 1;
    return s;
  }
};

// IQ1_M (56 bytes): index low bytes qs[4 ib + l] at 0; nibble l % 2 of qh[2 ib + l / 2] at 32
// holds group l's index bits 8-10 (bits 0-2) and its shift's sign (bit 3); u16 scales[ib / 2]
// at 48 holds s of sub-block ib's halves at bits 6 (ib % 2) and 6 (ib % 2) + 3 (their top
// nibbles: d, quant::CodebookD).
struct IQ1M {
  static constexpr int kBlockBytes = quant::kIQ1_MBlockBytes;
  static float D(const uint8_t* block) {  // = quant::CodebookD
    const uint16_t bits = quant::IQ1_MScaleBits(block);
    return LoadHalf(reinterpret_cast<const uint8_t*>(&bits));
  }
  static SubBlock Decode(const uint8_t* block, int ib) {
    const uint32_t qh = iq2::LoadU16(block + quant::kIQ1_MHigh + 2 * ib);  // nibble l: group l
    SubBlock s;
    for (int l = 0; l < 4; ++l) {
      s.grid[l] = quant::kIQ1SGrid[block[4 * ib + l] | (((qh >> (4 * l)) & 7) << 8)];
    }
    s.negative = ((qh >> 3) & 1) | ((qh >> 6) & 2) | ((qh >> 9) & 4) | ((qh >> 12) & 8);
    const uint32_t sc = iq2::LoadU16(block + quant::kIQ1_MScales + 2 * (ib / 2)) >> (6 * (ib % 2));
    s.m_low = 2 * static_cast<int>(sc & 7) + 1;
    s.m_high = 2 * static_cast<int>((sc >> 3) & 7) + 1;
    return s;
  }
};

// The shifts of the four groups as bytes: -1 (0xFF) or +1, group l in bytes 8 l .. 8 l + 7.
inline uint64_t ShiftBytes(uint32_t negative, int l) {
  return (negative >> l) & 1 ? ~uint64_t{0} : 0x0101010101010101ULL;
}

// The unit of d (x = d / 8 (2 s + 1) (8 g +- 1)), as quant::CodebookUnit.
constexpr float kUnit = 0.125f;

}  // namespace iq1
}  // namespace
}  // namespace gemma4::kernels::GEMMA4_ISA_NAMESPACE

#endif  // GEMMA4_SRC_KERNELS_ISA_CODEBOOK_INL_H_
