#include "kernels/pack/pack.h"

#include <cstring>

#include "base/half.h"

namespace gemma4::kernels::pack {

DType PackedLayout(const KernelTable& table, DType stored, int64_t rows_per_matrix) {
  const bool x16_rows = rows_per_matrix % 16 == 0;
  switch (stored) {
    case DType::kQ4_0:
      return x16_rows && table.gemm_q4_0x16 != nullptr ? DType::kQ4_0x16 : DType::kQ4_0R;
    case DType::kQ8_0:
      if (table.gemm_q8_0r == nullptr && table.gemm_q8_0x16 == nullptr) return stored;
      return x16_rows && table.gemm_q8_0x16 != nullptr ? DType::kQ8_0x16 : DType::kQ8_0R;
    case DType::kQ4_K:
      return x16_rows && table.gemm_q4_kx16 != nullptr ? DType::kQ4_Kx16 : stored;
    case DType::kQ3_K:
      return x16_rows && table.gemm_q3_kx16 != nullptr ? DType::kQ3_Kx16 : stored;
    case DType::kQ4_1:
      return x16_rows && table.gemm_q4_1x16 != nullptr ? DType::kQ4_1x16 : stored;
    case DType::kQ5_1:
      return x16_rows && table.gemm_q5_1x16 != nullptr ? DType::kQ5_1x16 : stored;
    case DType::kQ5_K:
      return x16_rows && table.gemm_q5_kx16 != nullptr ? DType::kQ5_Kx16 : stored;
    case DType::kQ6_K:
      return x16_rows && table.gemm_q6_kx16 != nullptr ? DType::kQ6_Kx16 : stored;
    case DType::kIQ4_XS:
      return x16_rows && table.gemm_iq4_xsx16 != nullptr ? DType::kIQ4_XSx16 : stored;
    case DType::kQ2_K:
      return x16_rows && table.gemm_q2_kx16 != nullptr ? DType::kQ2_Kx16 : stored;
    case DType::kIQ4_NL:
      return x16_rows && table.gemm_iq4_nlx16 != nullptr ? DType::kIQ4_NLx16 : stored;
    case DType::kMXFP4:
      return x16_rows && table.gemm_mxfp4x16 != nullptr ? DType::kMXFP4x16 : stored;
    default:
      return stored;
  }
}

using quant::kBlock;
using quant::kQ4_0BlockBytes;
using quant::kQ4_KBlockBytes;
using quant::kQ6_KBlockBytes;
using quant::kQ8_0BlockBytes;
using quant::LoadU16;
using quant::Q4_KScales;

int Q4_0RNibble(const uint8_t* data, int e) { return e < 64 ? data[e] & 0xF : data[e - 64] >> 4; }

void DequantizeRow(DType type, const uint8_t* row, int64_t count, float* out) {
  switch (type) {
    case DType::kQ8_0R: {
      const int64_t nblocks = count / kBlock, groups = nblocks / 4;
      for (int64_t g = 0; g < groups; ++g, row += 136, out += 128) {
        for (int e = 0; e < 128; ++e) {
          out[e] =
              half::F16ToF32(LoadU16(row + 2 * (e / 32))) * (static_cast<int>(row[8 + e]) - 128);
        }
      }
      quant::DequantizeRow(DType::kQ8_0, row, (nblocks - 4 * groups) * kBlock, out);
      return;
    }
    case DType::kQ4_0R: {
      const int64_t nblocks = count / kBlock, groups = nblocks / 4;
      for (int64_t g = 0; g < groups; ++g, row += 72, out += 128) {
        for (int e = 0; e < 128; ++e) {
          out[e] = half::F16ToF32(LoadU16(row + 2 * (e / 32))) * (Q4_0RNibble(row + 8, e) - 8);
        }
      }
      quant::DequantizeRow(DType::kQ4_0, row, (nblocks - 4 * groups) * kBlock, out);
      return;
    }
    default:
      quant::DequantizeRow(type, row, count, out);
      return;
  }
}

void RepackRowQ4_0(const uint8_t* src, int64_t nblocks, uint8_t* dst) {
  const int64_t groups = nblocks / 4;
  for (int64_t g = 0; g < groups; ++g, src += 4 * kQ4_0BlockBytes, dst += 72) {
    uint8_t values[4][32];  // unsigned nibble values of the four blocks, in element order
    for (int b = 0; b < 4; ++b) {
      const uint8_t* block = src + b * kQ4_0BlockBytes;
      std::memcpy(dst + 2 * b, block, 2);  // scale
      for (int j = 0; j < 16; ++j) {
        values[b][j] = block[2 + j] & 0xF;
        values[b][j + 16] = block[2 + j] >> 4;
      }
    }
    for (int j = 0; j < 64; ++j) {
      const uint8_t lo = values[j / 32][j % 32];      // blocks 0-1
      const uint8_t hi = values[2 + j / 32][j % 32];  // blocks 2-3
      dst[8 + j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
  std::memcpy(dst, src, (nblocks - 4 * groups) * kQ4_0BlockBytes);  // plain tail blocks
}

void RepackRowQ8_0(const uint8_t* src, int64_t nblocks, uint8_t* dst) {
  const int64_t groups = nblocks / 4;
  for (int64_t g = 0; g < groups; ++g, src += 4 * kQ8_0BlockBytes, dst += 136) {
    for (int b = 0; b < 4; ++b) {
      const uint8_t* block = src + b * kQ8_0BlockBytes;
      std::memcpy(dst + 2 * b, block, 2);
      for (int j = 0; j < 32; ++j) dst[8 + 32 * b + j] = static_cast<uint8_t>(block[2 + j] ^ 0x80);
    }
  }
  std::memcpy(dst, src, (nblocks - 4 * groups) * kQ8_0BlockBytes);  // plain tail blocks
}

namespace {
// Byte and shift of element j of row r in a Q4_0x16 block's 256 data bytes.
inline int X16Byte(int r, int j) { return (j / 8) * 64 + r * 4 + j % 4; }
inline int X16Shift(int j) { return ((j / 4) % 2) * 4; }
// Four bytes of a Q4_0x16-style run: byte i holds nibble `shift` of first[i] low and of
// first[4 + i] high (values 8c + i and 8c + 4 + i of a run c whose values start at `first`).
inline uint32_t X16NibbleWord(const uint8_t* first, int shift) {
  uint32_t lo, hi;
  std::memcpy(&lo, first, 4);
  std::memcpy(&hi, first + 4, 4);
  return ((lo >> shift) & 0x0F0F0F0Fu) | (((hi >> shift) & 0x0F0F0F0Fu) << 4);
}
// One 32-value block of row r stored as Q4_0's 16 nibble bytes (element j < 16 the low nibble
// of byte j, the others the high nibbles of bytes j - 16: Q4_0, IQ4_XS's sub-blocks) into the
// Q4_0x16 data area at `data`: byte c * 64 + r * 4 + i holds element 8c + i in its low nibble
// and 8c + 4 + i in its high one.
inline void PlaceQ4_0Nibbles(const uint8_t* qs, int r, uint8_t* data) {
  for (int c = 0; c < 4; ++c) {
    const uint32_t word = X16NibbleWord(qs + (8 * c) % 16, c < 2 ? 0 : 4);
    std::memcpy(data + c * 64 + r * 4, &word, 4);
  }
}
// Sub-block j of row r stored as Q4_K's / Q5_K's 128 nibble bytes (the low (even j) or high
// (odd j) nibbles of bytes 32 (j / 2) .. + 31) into the same layout.
inline void PlaceKQuantNibbles(const uint8_t* qs, int j, int r, uint8_t* data) {
  for (int c = 0; c < 4; ++c) {
    const uint32_t word = X16NibbleWord(qs + 32 * (j / 2) + 8 * c, 4 * (j % 2));
    std::memcpy(data + 64 * c + 4 * r, &word, 4);
  }
}
}  // namespace

void RepackGroupQ4_0x16(const uint8_t* src, uint64_t src_row_bytes, int64_t nblocks, uint8_t* dst) {
  // Data at 32 (PlaceQ4_0Nibbles; X16Byte / X16Shift read it back).
  for (int64_t b = 0; b < nblocks; ++b, dst += 16 * kQ4_0BlockBytes) {
    for (int r = 0; r < 16; ++r) {
      const uint8_t* block = src + r * src_row_bytes + b * kQ4_0BlockBytes;
      std::memcpy(dst + 2 * r, block, 2);
      PlaceQ4_0Nibbles(block + 2, r, dst + 32);
    }
  }
}

void RepackGroupQ8_0x16(const uint8_t* src, uint64_t src_row_bytes, int64_t nblocks, uint8_t* dst) {
  for (int64_t b = 0; b < nblocks; ++b, dst += 16 * kQ8_0BlockBytes) {
    for (int r = 0; r < 16; ++r) {
      const uint8_t* block = src + r * src_row_bytes + b * kQ8_0BlockBytes;
      std::memcpy(dst + 2 * r, block, 2);
      for (int j = 0; j < 32; ++j) {
        dst[32 + (j / 4) * 64 + r * 4 + j % 4] = static_cast<uint8_t>(block[2 + j] ^ 0x80);
      }
    }
  }
}

int Q8_0x16Value(const uint8_t* block, int row, int j) {
  return static_cast<int>(block[32 + (j / 4) * 64 + row * 4 + j % 4]) - 128;
}

void DequantizeQ8_0x16Row(const uint8_t* group, int64_t nblocks, int row, float* out) {
  for (int64_t b = 0; b < nblocks; ++b, group += 16 * kQ8_0BlockBytes, out += kBlock) {
    uint16_t h;
    std::memcpy(&h, group + 2 * row, 2);
    const float d = half::F16ToF32(h);
    for (int j = 0; j < 32; ++j) out[j] = d * Q8_0x16Value(group, row, j);
  }
}

namespace {

// Q4_1 and Q5_1 (kFifthBit) blocks of 16 rows: d, m, the nibbles in the Q4_0x16 layout and, for
// Q5_1, the fifth bits (bit v of qh for value v) one per chunk: byte 4 r + i, bit ch <- value
// 4 ch + i.
template <bool kFifthBit>
void RepackGroupAffineX16(const uint8_t* src, uint64_t src_row_bytes, int64_t nblocks,
                          uint8_t* dst) {
  constexpr int kBytes = kFifthBit ? quant::kQ5_1BlockBytes : quant::kQ4_1BlockBytes;
  for (int64_t b = 0; b < nblocks; ++b, dst += 16 * kBytes) {
    for (int r = 0; r < 16; ++r) {
      const uint8_t* block = src + r * src_row_bytes + b * kBytes;
      std::memcpy(dst + 2 * r, block, 2);
      std::memcpy(dst + kQ4_1x16Min + 2 * r, block + 2, 2);
      PlaceQ4_0Nibbles(block + (kFifthBit ? 8 : 4), r, dst + kQ4_1x16Data);
      if constexpr (kFifthBit) {
        uint32_t qh;
        std::memcpy(&qh, block + 4, 4);
        for (int i = 0; i < 4; ++i) {
          uint8_t fifth = 0;
          for (int ch = 0; ch < 8; ++ch) {
            fifth |= static_cast<uint8_t>(((qh >> (4 * ch + i)) & 1) << ch);
          }
          dst[kQ5_1x16FifthBits + 4 * r + i] = fifth;
        }
      }
    }
  }
}

template <bool kFifthBit>
void DequantizeAffineX16Row(const uint8_t* group, int64_t nblocks, int row, float* out) {
  constexpr int kBlockBytes = kFifthBit ? kQ5_1x16BlockBytes : kQ4_1x16BlockBytes;
  for (int64_t b = 0; b < nblocks; ++b, group += kBlockBytes, out += kBlock) {
    const float d = half::F16ToF32(LoadU16(group + 2 * row));
    const float m = half::F16ToF32(LoadU16(group + kQ4_1x16Min + 2 * row));
    for (int j = 0; j < 32; ++j) {
      out[j] = (kFifthBit ? Q5_1x16Value(group, row, j) : Q4_1x16Value(group, row, j)) * d + m;
    }
  }
}

}  // namespace

void RepackGroupQ4_1x16(const uint8_t* src, uint64_t src_row_bytes, int64_t nblocks, uint8_t* dst) {
  RepackGroupAffineX16<false>(src, src_row_bytes, nblocks, dst);
}

void RepackGroupQ5_1x16(const uint8_t* src, uint64_t src_row_bytes, int64_t nblocks, uint8_t* dst) {
  RepackGroupAffineX16<true>(src, src_row_bytes, nblocks, dst);
}

int Q4_1x16Value(const uint8_t* block, int row, int j) {
  return (block[kQ4_1x16Data + X16Byte(row, j)] >> X16Shift(j)) & 0xF;
}

int Q5_1x16Value(const uint8_t* block, int row, int j) {
  return Q4_1x16Value(block, row, j) |
         (((block[kQ5_1x16FifthBits + 4 * row + j % 4] >> (j / 4)) & 1) << 4);
}

void DequantizeQ4_1x16Row(const uint8_t* group, int64_t nblocks, int row, float* out) {
  DequantizeAffineX16Row<false>(group, nblocks, row, out);
}

void DequantizeQ5_1x16Row(const uint8_t* group, int64_t nblocks, int row, float* out) {
  DequantizeAffineX16Row<true>(group, nblocks, row, out);
}

int Q4_0x16Value(const uint8_t* block, int row, int j) {
  return ((block[32 + X16Byte(row, j)] >> X16Shift(j)) & 0xF) - 8;
}

float X16F16Scale(const uint8_t* block, int row) {
  return half::F16ToF32(LoadU16(block + 2 * row));
}

float MXFP4x16Scale(const uint8_t* block, int row) { return quant::E8M0ToF32Half(block[row]); }

namespace {

// Q4_0x16, IQ4_NLx16 and MXFP4x16 (kBlockBytes: one row's block as stored): a 16-row block's
// scales (Scale reads row r's), then Q4_0x16's nibble layout, each nibble's value from Value.
template <int kBlockBytes, float (*Scale)(const uint8_t*, int),
          int (*Value)(const uint8_t*, int, int)>
void DequantizeNibbleX16Row(const uint8_t* group, int64_t nblocks, int row, float* out) {
  for (int64_t b = 0; b < nblocks; ++b, group += 16 * kBlockBytes, out += kBlock) {
    const float d = Scale(group, row);
    for (int j = 0; j < 32; ++j) out[j] = d * Value(group, row, j);
  }
}

}  // namespace

void DequantizeQ4_0x16Row(const uint8_t* group, int64_t nblocks, int row, float* out) {
  DequantizeNibbleX16Row<kQ4_0BlockBytes, X16F16Scale, Q4_0x16Value>(group, nblocks, row, out);
}

int IQ4_NLx16Value(const uint8_t* block, int row, int j) {
  return quant::kIQ4NLValues[(block[32 + X16Byte(row, j)] >> X16Shift(j)) & 0xF];
}

void DequantizeIQ4_NLx16Row(const uint8_t* group, int64_t nblocks, int row, float* out) {
  DequantizeNibbleX16Row<quant::kIQ4_NLBlockBytes, X16F16Scale, IQ4_NLx16Value>(group, nblocks, row,
                                                                                out);
}

void RepackGroupMXFP4x16(const uint8_t* src, uint64_t src_row_bytes, int64_t nblocks,
                         uint8_t* dst) {
  for (int64_t b = 0; b < nblocks; ++b, dst += 16 * quant::kMXFP4BlockBytes) {
    for (int r = 0; r < 16; ++r) {
      const uint8_t* block = src + r * src_row_bytes + b * quant::kMXFP4BlockBytes;
      dst[r] = block[0];
      PlaceQ4_0Nibbles(block + 1, r, dst + kMXFP4x16Data);
    }
  }
}

int MXFP4x16Value(const uint8_t* block, int row, int j) {
  return quant::kMXFP4Values[(block[kMXFP4x16Data + X16Byte(row, j)] >> X16Shift(j)) & 0xF];
}

void DequantizeMXFP4x16Row(const uint8_t* group, int64_t nblocks, int row, float* out) {
  DequantizeNibbleX16Row<quant::kMXFP4BlockBytes, MXFP4x16Scale, MXFP4x16Value>(group, nblocks, row,
                                                                                out);
}

namespace {

// Row r's f16 d and dmin and its 6-bit scales and mins (the same 16 bytes in Q4_K and Q5_K
// blocks) into a Q4_Kx16 / Q5_Kx16 block's head. Entries e = j * 16 + r and e + 64
// (sub-blocks j and j + 4) share byte e: each byte belongs to one row and is written once.
void PackKQuantHead(const uint8_t* block, int r, uint8_t* dst) {
  std::memcpy(dst + 2 * r, block, 2);
  std::memcpy(dst + kQ4_Kx16Dmin + 2 * r, block + 2, 2);
  uint8_t sc[8], m[8];
  Q4_KScales(block + 4, sc, m);
  for (int j = 0; j < 4; ++j) {
    const int byte = j * 16 + r;
    dst[kQ4_Kx16ScaleLow + byte] = static_cast<uint8_t>((sc[j] & 0xF) | (sc[j + 4] << 4));
    dst[kQ4_Kx16MinLow + byte] = static_cast<uint8_t>((m[j] & 0xF) | (m[j + 4] << 4));
    dst[kQ4_Kx16High + byte] = static_cast<uint8_t>((sc[j] >> 4) | ((sc[j + 4] >> 4) << 2) |
                                                    ((m[j] >> 4) << 4) | ((m[j + 4] >> 4) << 6));
  }
}

}  // namespace

// Q4_Kx16: scale / min entry e = j * 16 + r (sub-block j, row r) keeps its low 4 bits in
// byte e % 64 of its 64-byte area (low nibble for e < 64, high nibble otherwise) and its top
// 2 bits in byte e % 64 of the shared area: bits 0-1 / 2-3 the scale's (e < 64 / e >= 64),
// bits 4-5 / 6-7 the min's. A SIMD kernel unpacks all 128 of each with a few masks and shifts.
void RepackGroupQ4_Kx16(const uint8_t* src, uint64_t src_row_bytes, int64_t nsuper, uint8_t* dst) {
  for (int64_t sb = 0; sb < nsuper; ++sb, dst += kQ4_Kx16BlockBytes) {
    for (int r = 0; r < 16; ++r) {
      const uint8_t* block = src + r * src_row_bytes + sb * kQ4_KBlockBytes;
      PackKQuantHead(block, r, dst);
      // Sub-block j's 32 values to the Q4_0x16 positions of its 256-byte area.
      for (int j = 0; j < 8; ++j)
        PlaceKQuantNibbles(block + 16, j, r, dst + kQ4_Kx16Data + 256 * j);
    }
  }
}

void Q4_Kx16ScaleMin(const uint8_t* block, int row, int j, uint8_t* scale, uint8_t* min) {
  const int e = j * 16 + row, byte = e % 64, upper = e / 64;
  const int high = block[kQ4_Kx16High + byte];
  *scale = static_cast<uint8_t>(((block[kQ4_Kx16ScaleLow + byte] >> (4 * upper)) & 0xF) |
                                (((high >> (2 * upper)) & 3) << 4));
  *min = static_cast<uint8_t>(((block[kQ4_Kx16MinLow + byte] >> (4 * upper)) & 0xF) |
                              (((high >> (4 + 2 * upper)) & 3) << 4));
}

int Q4_Kx16Value(const uint8_t* block, int row, int e) {
  const int i = e % 32;
  return (block[kQ4_Kx16Data + 256 * (e / 32) + X16Byte(row, i)] >> X16Shift(i)) & 0xF;
}

namespace {

// Q4_Kx16 and Q5_Kx16 rows: the shared head's d sc and dmin m around each value.
template <int (*Value)(const uint8_t*, int, int), int64_t kBlockBytes>
void DequantizeKQuantX16Row(const uint8_t* group, int64_t nsuper, int row, float* out) {
  for (int64_t sb = 0; sb < nsuper; ++sb, group += kBlockBytes, out += 256) {
    const float d = half::F16ToF32(LoadU16(group + 2 * row));
    const float dmin = half::F16ToF32(LoadU16(group + kQ4_Kx16Dmin + 2 * row));
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      Q4_Kx16ScaleMin(group, row, j, &sc, &m);
      for (int i = 0; i < 32; ++i) {
        out[32 * j + i] = d * sc * Value(group, row, 32 * j + i) - dmin * m;
      }
    }
  }
}

}  // namespace

void DequantizeQ4_Kx16Row(const uint8_t* group, int64_t nsuper, int row, float* out) {
  DequantizeKQuantX16Row<Q4_Kx16Value, kQ4_Kx16BlockBytes>(group, nsuper, row, out);
}

// The head (d, dmin, scales and mins) and the nibbles as Q4_Kx16's; sub-block j's fifth bits
// (bit j of qh[l] for its value l) one per chunk: byte 4 r + i, bit ch <- value 4 ch + i.
void RepackGroupQ5_Kx16(const uint8_t* src, uint64_t src_row_bytes, int64_t nsuper, uint8_t* dst) {
  for (int64_t sb = 0; sb < nsuper; ++sb, dst += kQ5_Kx16BlockBytes) {
    for (int r = 0; r < 16; ++r) {
      const uint8_t* block = src + r * src_row_bytes + sb * quant::kQ5_KBlockBytes;
      PackKQuantHead(block, r, dst);
      const uint8_t* qh = block + quant::kQ5_KHigh;
      for (int j = 0; j < 8; ++j) {
        uint8_t* data = dst + kQ5_Kx16Data + kQ5_Kx16SubBlockBytes * j;
        PlaceKQuantNibbles(block + quant::kQ5_KLow, j, r, data);
        for (int i = 0; i < 4; ++i) {
          uint8_t fifth = 0;
          for (int ch = 0; ch < 8; ++ch) {
            fifth |= static_cast<uint8_t>(((qh[4 * ch + i] >> j) & 1) << ch);
          }
          data[kQ5_Kx16FifthBits + 4 * r + i] = fifth;
        }
      }
    }
  }
}

int Q5_Kx16Value(const uint8_t* block, int row, int e) {
  const uint8_t* data = block + kQ5_Kx16Data + kQ5_Kx16SubBlockBytes * (e / 32);
  const int v = e % 32, ch = v / 4, i = v % 4;
  const int low = (data[64 * (ch / 2) + 4 * row + i] >> (4 * (ch % 2))) & 0xF;
  return low | (((data[kQ5_Kx16FifthBits + 4 * row + i] >> ch) & 1) << 4);
}

void DequantizeQ5_Kx16Row(const uint8_t* group, int64_t nsuper, int row, float* out) {
  DequantizeKQuantX16Row<Q5_Kx16Value, kQ5_Kx16BlockBytes>(group, nsuper, row, out);
}

void RepackGroupIQ4_XSx16(const uint8_t* src, uint64_t src_row_bytes, int64_t nsuper,
                          uint8_t* dst) {
  for (int64_t sb = 0; sb < nsuper; ++sb, dst += kIQ4_XSx16BlockBytes) {
    std::memset(dst + kIQ4_XSx16ScaleLow, 0, kIQ4_XSx16Data - kIQ4_XSx16ScaleLow);
    for (int r = 0; r < 16; ++r) {
      const uint8_t* block = src + r * src_row_bytes + sb * quant::kIQ4_XSBlockBytes;
      std::memcpy(dst + 2 * r, block, 2);
      uint8_t ls[8];
      quant::IQ4_XSScales(block, ls);
      for (int j = 0; j < 8; ++j) {
        const int e = 16 * j + r;
        dst[kIQ4_XSx16ScaleLow + e % 64] |= static_cast<uint8_t>((ls[j] & 0xF) << (4 * (e / 64)));
        dst[kIQ4_XSx16ScaleHigh + e % 32] |= static_cast<uint8_t>((ls[j] >> 4) << (2 * (e / 32)));
      }
      for (int j = 0; j < 8; ++j) {  // sub-block j: 16 bytes laid out as a Q4_0 block's
        PlaceQ4_0Nibbles(block + 8 + 16 * j, r, dst + kIQ4_XSx16Data + 256 * j);
      }
    }
  }
}

int IQ4_XSx16Scale(const uint8_t* block, int row, int j) {
  const int e = 16 * j + row;
  return ((block[kIQ4_XSx16ScaleLow + e % 64] >> (4 * (e / 64))) & 0xF) |
         (((block[kIQ4_XSx16ScaleHigh + e % 32] >> (2 * (e / 32))) & 3) << 4);
}

int IQ4_XSx16Nibble(const uint8_t* block, int row, int e) {
  const int i = e % 32;
  return (block[kIQ4_XSx16Data + 256 * (e / 32) + X16Byte(row, i)] >> X16Shift(i)) & 0xF;
}

void DequantizeIQ4_XSx16Row(const uint8_t* group, int64_t nsuper, int row, float* out) {
  for (int64_t sb = 0; sb < nsuper; ++sb, group += kIQ4_XSx16BlockBytes, out += 256) {
    const float d = half::F16ToF32(LoadU16(group + 2 * row));
    for (int j = 0; j < 8; ++j) {
      const float dl = d * (IQ4_XSx16Scale(group, row, j) - 32);
      for (int i = 0; i < 32; ++i) {
        out[32 * j + i] = dl * quant::kIQ4NLValues[IQ4_XSx16Nibble(group, row, 32 * j + i)];
      }
    }
  }
}

// Plain Q2_K: sub-block j's 32 values (element 32 j' + l of half h, j = 4 h + j') are bits
// 2 j' .. 2 j' + 1 of qs[32 h + l], l = 0..31, so chunk ch (values 4 ch + i) of row r sits in
// the four bytes qs[32 h + 4 ch ..]: moved four values (one word) at a time, like Q6_Kx16's top
// bits.
void RepackGroupQ2_Kx16(const uint8_t* src, uint64_t src_row_bytes, int64_t nsuper, uint8_t* dst) {
  for (int64_t sb = 0; sb < nsuper; ++sb, dst += kQ2_Kx16BlockBytes) {
    for (int r = 0; r < 16; ++r) {
      const uint8_t* block = src + r * src_row_bytes + sb * quant::kQ2_KBlockBytes;
      std::memcpy(dst + 2 * r, block + quant::kQ2_KD, 2);
      std::memcpy(dst + kQ2_Kx16Dmin + 2 * r, block + quant::kQ2_KD + 2, 2);
      for (int k = 0; k < 16; ++k) dst[kQ2_Kx16Scales + 16 * k + r] = block[k];
      for (int j = 0; j < 8; ++j) {
        const uint8_t* qs = block + quant::kQ2_KValues + 32 * (j / 4);
        const int shift = 2 * (j % 4);
        uint8_t* data = dst + kQ2_Kx16Data + kQ2_Kx16SubBlockBytes * j;
        for (int p = 0; p < 2; ++p) {
          uint32_t crumbs = 0;  // byte i: values 4 (4p + s) + i at bits 2s .. 2s + 1
          for (int s = 0; s < 4; ++s) {
            uint32_t bits;
            std::memcpy(&bits, qs + 4 * (4 * p + s), 4);
            crumbs |= ((bits >> shift) & 0x03030303u) << (2 * s);
          }
          std::memcpy(data + 64 * p + 4 * r, &crumbs, 4);
        }
      }
    }
  }
}

void Q2_Kx16ScaleMin(const uint8_t* block, int row, int k, uint8_t* scale, uint8_t* min) {
  const uint8_t byte = block[kQ2_Kx16Scales + 16 * k + row];
  *scale = byte & 0xF;
  *min = byte >> 4;
}

int Q2_Kx16Value(const uint8_t* block, int row, int e) {
  const uint8_t* data = block + kQ2_Kx16Data + kQ2_Kx16SubBlockBytes * (e / 32);
  const int v = e % 32, ch = v / 4, i = v % 4;
  return (data[64 * (ch / 4) + 4 * row + i] >> (2 * (ch % 4))) & 3;
}

void DequantizeQ2_Kx16Row(const uint8_t* group, int64_t nsuper, int row, float* out) {
  for (int64_t sb = 0; sb < nsuper; ++sb, group += kQ2_Kx16BlockBytes, out += 256) {
    const float d = half::F16ToF32(LoadU16(group + 2 * row));
    const float dmin = half::F16ToF32(LoadU16(group + kQ2_Kx16Dmin + 2 * row));
    for (int e = 0; e < 256; ++e) {
      uint8_t sc, m;
      Q2_Kx16ScaleMin(group, row, e / 16, &sc, &m);
      out[e] = d * sc * Q2_Kx16Value(group, row, e) - dmin * m;
    }
  }
}

// Q6_Kx16 sub-block j: 256 bytes of low nibbles in the Q4_0x16 layout (run c holds chunks 2c
// and 2c + 1: values 8c .. 8c + 3 and 8c + 4 .. 8c + 7), then two 64-byte areas of top bits:
// byte 4r + i of area p holds, at bits 2s .. 2s + 1, the top bits of value 4 (4p + s) + i of
// row r, so chunk ch's top bits sit at shift 2 (ch % 4) of area ch / 4.
void RepackGroupQ6_Kx16(const uint8_t* src, uint64_t src_row_bytes, int64_t nsuper, uint8_t* dst) {
  // Plain Q6_K: sub-block j (half h = j / 4, quarter g = j % 4) takes its low nibbles from
  // ql[64 h + 32 (g % 2) + l] (low nibble for g < 2, high otherwise) and its top bits from
  // bits 2 g .. 2 g + 1 of qh[32 h + l], l = 0..31. Both are moved four bytes (four values of
  // one row) at a time.
  for (int64_t sb = 0; sb < nsuper; ++sb, dst += kQ6_Kx16BlockBytes) {
    for (int r = 0; r < 16; ++r) {
      const uint8_t* block = src + r * src_row_bytes + sb * kQ6_KBlockBytes;
      std::memcpy(dst + 2 * r, block + 208, 2);
      for (int k = 0; k < 16; ++k) dst[kQ6_Kx16Scales + 16 * k + r] = block[192 + k];
      for (int j = 0; j < 8; ++j) {
        uint8_t* data = dst + kQ6_Kx16Data + kQ6_Kx16SubBlockBytes * j;
        const int h = j / 4, g = j % 4;
        const uint8_t* ql = block + 64 * h + 32 * (g % 2);
        const uint8_t* qh = block + 128 + 32 * h;
        const int low_shift = 4 * (g / 2), top_shift = 2 * g;
        for (int c = 0; c < 4; ++c) {
          const uint32_t word = X16NibbleWord(ql + 8 * c, low_shift);
          std::memcpy(data + 64 * c + 4 * r, &word, 4);
        }
        for (int p = 0; p < 2; ++p) {
          uint32_t top = 0;  // byte i: top bits of values 4 (4p + s) + i at bits 2s .. 2s + 1
          for (int s = 0; s < 4; ++s) {
            uint32_t bits;
            std::memcpy(&bits, qh + 4 * (4 * p + s), 4);
            top |= ((bits >> top_shift) & 0x03030303u) << (2 * s);
          }
          std::memcpy(data + 256 + 64 * p + 4 * r, &top, 4);
        }
      }
    }
  }
}

int Q6_Kx16Value(const uint8_t* block, int row, int e) {
  const uint8_t* data = block + kQ6_Kx16Data + kQ6_Kx16SubBlockBytes * (e / 32);
  const int v = e % 32, ch = v / 4, i = v % 4;
  const int low = (data[64 * (ch / 2) + 4 * row + i] >> (4 * (ch % 2))) & 0xF;
  const int top = (data[256 + 64 * (ch / 4) + 4 * row + i] >> (2 * (ch % 4))) & 3;
  return low | (top << 4);
}

void DequantizeQ6_Kx16Row(const uint8_t* group, int64_t nsuper, int row, float* out) {
  for (int64_t sb = 0; sb < nsuper; ++sb, group += kQ6_Kx16BlockBytes, out += 256) {
    const float d = half::F16ToF32(LoadU16(group + 2 * row));
    for (int e = 0; e < 256; ++e) {
      const int8_t sc = static_cast<int8_t>(group[kQ6_Kx16Scales + 16 * (e / 16) + row]);
      out[e] = d * sc * (Q6_Kx16Value(group, row, e) - 32);
    }
  }
}

void RepackGroupQ3_Kx16(const uint8_t* src, uint64_t src_row_bytes, int64_t nsuper, uint8_t* dst) {
  for (int64_t sb = 0; sb < nsuper; ++sb, dst += kQ3_Kx16BlockBytes) {
    std::memset(dst + kQ3_Kx16ScaleLow, 0, kQ3_Kx16BlockBytes - kQ3_Kx16ScaleLow);  // OR-ed below
    for (int r = 0; r < 16; ++r) {
      const uint8_t* block = src + r * src_row_bytes + sb * quant::kQ3_KBlockBytes;
      std::memcpy(dst + 2 * r, block + quant::kQ3_KD, 2);
      int8_t scales[16];
      quant::Q3_KScales(block + quant::kQ3_KScales, scales);
      for (int k = 0; k < 16; ++k) {
        const int e = 16 * k + r, s6 = scales[k] + 32;
        dst[kQ3_Kx16ScaleLow + e % 128] |= static_cast<uint8_t>((s6 & 0xF) << (4 * (e / 128)));
        dst[kQ3_Kx16ScaleHigh + e % 64] |= static_cast<uint8_t>((s6 >> 4) << (2 * (e / 64)));
      }
      // Plain Q3_K: value l of sub-block j has its low bits at shift 2 (j % 4) of
      // qs[32 (j / 4) + l] and its hmask bit at bit j of hmask[l].
      const uint8_t* hmask = block;
      for (int j = 0; j < 8; ++j) {
        const uint8_t* qs = block + quant::kQ3_KLow + 32 * (j / 4);
        uint8_t* data = dst + kQ3_Kx16Data + kQ3_Kx16SubBlockBytes * j;
        for (int i = 0; i < 4; ++i) {
          uint8_t high = 0;
          for (int ch = 0; ch < 8; ++ch) {
            const int l = 4 * ch + i;
            const int low = (qs[l] >> (2 * (j % 4))) & 3;
            data[64 * (ch / 4) + 4 * r + i] |= static_cast<uint8_t>(low << (2 * (ch % 4)));
            high |= static_cast<uint8_t>(((hmask[l] >> j) & 1) << ch);
          }
          data[kQ3_Kx16HighBits + 4 * r + i] = high;
        }
      }
    }
  }
}

int Q3_Kx16Scale(const uint8_t* block, int row, int k) {
  const int e = 16 * k + row;
  return ((block[kQ3_Kx16ScaleLow + e % 128] >> (4 * (e / 128))) & 0xF) |
         (((block[kQ3_Kx16ScaleHigh + e % 64] >> (2 * (e / 64))) & 3) << 4);
}

int Q3_Kx16Value(const uint8_t* block, int row, int e) {
  const uint8_t* data = block + kQ3_Kx16Data + kQ3_Kx16SubBlockBytes * (e / 32);
  const int v = e % 32, ch = v / 4, i = v % 4;
  const int low = (data[64 * (ch / 4) + 4 * row + i] >> (2 * (ch % 4))) & 3;
  return low | (((data[kQ3_Kx16HighBits + 4 * row + i] >> ch) & 1) << 2);
}

void DequantizeQ3_Kx16Row(const uint8_t* group, int64_t nsuper, int row, float* out) {
  for (int64_t sb = 0; sb < nsuper; ++sb, group += kQ3_Kx16BlockBytes, out += 256) {
    const float d = half::F16ToF32(LoadU16(group + 2 * row));
    for (int e = 0; e < 256; ++e) {
      out[e] = d * (Q3_Kx16Scale(group, row, e / 16) - 32) * (Q3_Kx16Value(group, row, e) - 4);
    }
  }
}

}  // namespace gemma4::kernels::pack
