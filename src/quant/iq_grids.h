// The codebooks of llama.cpp's IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and IQ1_M weight
// formats (part of the GGUF format: a reader needs the same numbers). Each entry holds the
// magnitudes of 8 (IQ2, one byte each, little-endian) or 4 (IQ3) consecutive weights, or 8
// signed values -1, 0, +1 (IQ1); signs, shifts and scales come from the block. Defined once in
// iq_grids.cc (the ISA units, compiled with -fno-weak, share these arrays rather than each keeping
// a copy).
#ifndef GEMMA4_SRC_QUANT_IQ_GRIDS_H_
#define GEMMA4_SRC_QUANT_IQ_GRIDS_H_

#include <array>
#include <cstdint>

namespace gemma4::quant {

extern const std::array<uint64_t, 256> kIQ2XXSGrid;  // bytes 8, 25 or 43
extern const std::array<uint64_t, 512> kIQ2XSGrid;   // likewise
extern const std::array<uint64_t, 1024> kIQ2SGrid;   // likewise
extern const std::array<uint32_t, 256> kIQ3XXSGrid;  // bytes 4, 12, 20, 28, 36, 44, 52 or 62
extern const std::array<uint32_t, 512> kIQ3SGrid;    // bytes 1, 3, 5, ..., 15
// IQ1_S and IQ1_M's grid: 8 signed values a entry, bytes 0xff, 0x00 or 0x01 (-1, 0, +1 as int8).
extern const std::array<uint64_t, 2048> kIQ1SGrid;

// IQ2_XXS, IQ2_XS and IQ3_XXS store 7 of the 8 signs of 8 weights: the eighth makes the number
// of negative ones even. kIQSignBits[s] is the full mask (bit k set: weight k is negative).
extern const std::array<uint8_t, 128> kIQSignBits;

}  // namespace gemma4::quant

#endif  // GEMMA4_SRC_QUANT_IQ_GRIDS_H_
