#include "kernels/ref/reference_dots.h"

#include <cstring>

#include "base/half.h"
#include "kernels/pack/pack.h"

namespace gemma4::kernels {

using pack::kQ4_Kx16BlockBytes;
using pack::kQ4_Kx16Dmin;
using pack::kQ6_Kx16BlockBytes;
using pack::kQ6_Kx16Scales;
using pack::Q4_Kx16ScaleMin;
using pack::Q4_Kx16Value;
using pack::Q6_Kx16Value;
using quant::kBlock;
using quant::kQ4_0BlockBytes;
using quant::kQ4_KBlockBytes;
using quant::kQ6_KBlockBytes;
using quant::kQ8_0BlockBytes;
using quant::LoadU16;
using quant::Q4_KScales;
using quant::UnpackQ6_K;

float DotQ8_0Reference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks) {
  float total = 0;
  for (int64_t b = 0; b < nblocks; ++b, w += kQ8_0BlockBytes, a += kBlock) {
    int32_t acc = 0;
    for (int i = 0; i < kBlock; ++i) acc += static_cast<int8_t>(w[2 + i]) * a[i];
    total += half::F16ToF32(LoadU16(w)) * a_scale[b] * static_cast<float>(acc);
  }
  return total;
}

float DotQ4_0Reference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int32_t* a_sum, int64_t nblocks) {
  float total = 0;
  for (int64_t b = 0; b < nblocks; ++b, w += kQ4_0BlockBytes, a += kBlock) {
    int32_t acc = 0;  // sum of nibble * a; the -8 offset is folded in via the block sum
    for (int j = 0; j < 16; ++j) {
      acc += (w[2 + j] & 0xF) * a[j] + (w[2 + j] >> 4) * a[j + 16];
    }
    total += half::F16ToF32(LoadU16(w)) * a_scale[b] * static_cast<float>(acc - 8 * a_sum[b]);
  }
  return total;
}

float DotQ8_0RReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                        const int32_t* a_sum, int64_t nblocks) {
  const int64_t groups = nblocks / 4;
  float total = 0;
  for (int64_t g = 0; g < groups; ++g, w += 136, a += 128) {
    for (int b = 0; b < 4; ++b) {
      int32_t acc = 0;  // sum of (q + 128) * a; the 128 comes off with the block sum
      for (int j = 0; j < 32; ++j) acc += static_cast<int>(w[8 + 32 * b + j]) * a[32 * b + j];
      const int64_t blk = 4 * g + b;
      total += half::F16ToF32(LoadU16(w + 2 * b)) * a_scale[blk] *
               static_cast<float>(acc - 128 * a_sum[blk]);
    }
  }
  return total + DotQ8_0Reference(w, a, a_scale + 4 * groups, nblocks - 4 * groups);
}

float DotQ4_0RReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                        const int32_t* a_sum, int64_t nblocks) {
  const int64_t groups = nblocks / 4;
  float total = 0;
  for (int64_t g = 0; g < groups; ++g, w += 72, a += 128) {
    for (int b = 0; b < 4; ++b) {
      int32_t acc = 0;
      for (int j = 0; j < 32; ++j) acc += pack::Q4_0RNibble(w + 8, 32 * b + j) * a[32 * b + j];
      const int64_t blk = 4 * g + b;
      total += half::F16ToF32(LoadU16(w + 2 * b)) * a_scale[blk] *
               static_cast<float>(acc - 8 * a_sum[blk]);
    }
  }
  return total +
         DotQ4_0Reference(w, a, a_scale + 4 * groups, a_sum + 4 * groups, nblocks - 4 * groups);
}

float DotQ4_KReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int32_t* a_sum, int64_t nblocks) {
  float total = 0;
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += 144) {
    const float d = half::F16ToF32(LoadU16(w)), dmin = half::F16ToF32(LoadU16(w + 2));
    uint8_t sc[8], m[8];
    Q4_KScales(w + 4, sc, m);
    for (int j = 0; j < 8; ++j) {  // sub-block j is activation block sb * 8 + j
      const uint8_t* qs = w + 16 + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      const int8_t* ab = a + (sb * 8 + j) * 32;
      int32_t dot = 0;
      for (int i = 0; i < 32; ++i) dot += ((qs[i] >> shift) & 0xF) * ab[i];
      const int64_t blk = sb * 8 + j;
      total += a_scale[blk] *
               (d * sc[j] * static_cast<float>(dot) - dmin * m[j] * static_cast<float>(a_sum[blk]));
    }
  }
  return total;
}

namespace {

// Q4_1 and Q5_1: per block a_scale (d sum(q a) + m sum(a)).
template <bool kFifthBit>
float DotAffineReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                         const int32_t* a_sum, int64_t nblocks) {
  constexpr int kBytes = kFifthBit ? quant::kQ5_1BlockBytes : quant::kQ4_1BlockBytes;
  float total = 0;
  uint8_t q[kBlock];
  for (int64_t b = 0; b < nblocks; ++b, w += kBytes, a += kBlock) {
    const float d = half::F16ToF32(LoadU16(w)), m = half::F16ToF32(LoadU16(w + 2));
    if constexpr (kFifthBit) {
      quant::UnpackQ5_1(w, q);
    } else {
      quant::UnpackQ4_1(w, q);
    }
    int32_t dot = 0;
    for (int i = 0; i < kBlock; ++i) dot += q[i] * a[i];
    total += a_scale[b] * (d * static_cast<float>(dot) + m * static_cast<float>(a_sum[b]));
  }
  return total;
}

}  // namespace

float DotQ5_1Reference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int32_t* a_sum, int64_t nblocks) {
  return DotAffineReference<true>(w, a, a_scale, a_sum, nblocks);
}

float DotQ4_1Reference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int32_t* a_sum, int64_t nblocks) {
  return DotAffineReference<false>(w, a, a_scale, a_sum, nblocks);
}

float DotIQ4_XSReference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks) {
  float total = 0;
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += quant::kIQ4_XSBlockBytes) {
    const float d = half::F16ToF32(LoadU16(w));
    uint8_t ls[8];
    quant::IQ4_XSScales(w, ls);
    for (int j = 0; j < 8; ++j) {
      const int64_t blk = sb * 8 + j;
      const uint8_t* qs = w + 8 + 16 * j;
      const int8_t* ab = a + blk * 32;
      int32_t dot = 0;
      for (int i = 0; i < 16; ++i) {
        dot +=
            quant::kIQ4NLValues[qs[i] & 0xF] * ab[i] + quant::kIQ4NLValues[qs[i] >> 4] * ab[i + 16];
      }
      total += a_scale[blk] * (d * static_cast<float>(ls[j] - 32) * static_cast<float>(dot));
    }
  }
  return total;
}

namespace {

// The 32-value formats whose nibbles (as Q4_0's, after a scale of kScaleBytes) index a table of
// 16 int8 levels: per block, scale * a_scale * sum(levels[nibble] a).
template <int kScaleBytes, float (*Scale)(const uint8_t*)>
float DotLevelsReference(const int8_t* levels, const uint8_t* w, const int8_t* a,
                         const float* a_scale, int64_t nblocks) {
  float total = 0;
  for (int64_t b = 0; b < nblocks; ++b, w += kScaleBytes + 16, a += kBlock) {
    const uint8_t* qs = w + kScaleBytes;
    int32_t acc = 0;
    for (int j = 0; j < 16; ++j) acc += levels[qs[j] & 0xF] * a[j] + levels[qs[j] >> 4] * a[j + 16];
    total += Scale(w) * a_scale[b] * static_cast<float>(acc);
  }
  return total;
}

float F16Scale(const uint8_t* block) { return half::F16ToF32(LoadU16(block)); }
float E8M0Scale(const uint8_t* block) { return quant::E8M0ToF32Half(block[0]); }

}  // namespace

float DotIQ4_NLReference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks) {
  return DotLevelsReference<2, F16Scale>(quant::kIQ4NLValues, w, a, a_scale, nblocks);
}

float DotMXFP4Reference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks) {
  return DotLevelsReference<1, E8M0Scale>(quant::kMXFP4Values, w, a, a_scale, nblocks);
}

float DotCodebookReference(DType type, const uint8_t* w, const int8_t* a, const float* a_scale,
                           int64_t nblocks) {
  float total = 0;
  const size_t block_bytes = BlockBytes(type);
  const float unit = quant::CodebookUnit(type);
  int8_t q[256];
  uint8_t m[16];
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += block_bytes) {
    const float d = quant::CodebookD(type, w) * unit;
    quant::UnpackCodebookBlock(type, w, q, m);
    for (int j = 0; j < 8; ++j) {
      const int64_t blk = sb * 8 + j;
      int32_t sum = 0;
      for (int h = 0; h < 2; ++h) {
        int32_t dot = 0;
        for (int i = 0; i < 16; ++i) dot += q[32 * j + 16 * h + i] * a[blk * 32 + 16 * h + i];
        sum += m[2 * j + h] * dot;
      }
      total += a_scale[blk] * (d * static_cast<float>(sum));
    }
  }
  return total;
}

float DotQ5_KReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int32_t* a_sum, int64_t nblocks) {
  float total = 0;
  uint8_t q[256];
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += quant::kQ5_KBlockBytes) {
    const float d = half::F16ToF32(LoadU16(w)), dmin = half::F16ToF32(LoadU16(w + 2));
    uint8_t sc[8], m[8];
    Q4_KScales(w + 4, sc, m);
    quant::UnpackQ5_K(w, q);
    for (int j = 0; j < 8; ++j) {  // sub-block j is activation block sb * 8 + j
      const int64_t blk = sb * 8 + j;
      const int8_t* ab = a + blk * 32;
      int32_t dot = 0;
      for (int i = 0; i < 32; ++i) dot += q[32 * j + i] * ab[i];
      total += a_scale[blk] *
               (d * sc[j] * static_cast<float>(dot) - dmin * m[j] * static_cast<float>(a_sum[blk]));
    }
  }
  return total;
}

float DotQ2_KReference(const uint8_t* w, const int8_t* a, const float* a_scale,
                       const int16_t* a_sum16, int64_t nblocks) {
  float total = 0;
  uint8_t q[256];
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += quant::kQ2_KBlockBytes) {
    const float d = half::F16ToF32(LoadU16(w + quant::kQ2_KD));
    const float dmin = half::F16ToF32(LoadU16(w + quant::kQ2_KD + 2));
    quant::UnpackQ2_K(w, q);
    for (int b = 0; b < 8; ++b) {  // activation block b holds Q2_K sub-blocks 2b and 2b + 1
      const int64_t blk = sb * 8 + b;
      const int8_t* ab = a + blk * 32;
      int32_t scaled = 0, mins = 0;
      for (int half = 0; half < 2; ++half) {
        const int k = 2 * b + half;
        int32_t dot = 0;
        for (int i = 0; i < 16; ++i) dot += q[16 * k + i] * ab[16 * half + i];
        scaled += (w[k] & 0xF) * dot;
        mins += (w[k] >> 4) * a_sum16[2 * blk + half];
      }
      total += a_scale[blk] * (d * static_cast<float>(scaled) - dmin * static_cast<float>(mins));
    }
  }
  return total;
}

namespace {

// One 256-value block of signed values q with a signed scale per 16 (Q6_K, Q3_K) against its
// eight activation blocks a (a_scale: their scales), added to *total block by block (the order
// the 16-row references keep): activation block b holds sub-blocks 2b and 2b + 1, summed
// exactly in int32 and scaled once.
void AddScaled16BlockReference(const int8_t* q, const int8_t* sc, float d, const int8_t* a,
                               const float* a_scale, float* total) {
  for (int b = 0; b < 8; ++b) {
    const int8_t* ab = a + b * 32;
    int32_t lo = 0, hi = 0;
    for (int i = 0; i < 16; ++i) lo += q[32 * b + i] * ab[i];
    for (int i = 16; i < 32; ++i) hi += q[32 * b + i] * ab[i];
    *total += d * a_scale[b] * static_cast<float>(sc[2 * b] * lo + sc[2 * b + 1] * hi);
  }
}

}  // namespace

float DotQ6_KReference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks) {
  float total = 0;
  int8_t q[256];
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += kQ6_KBlockBytes) {
    UnpackQ6_K(w, q);
    AddScaled16BlockReference(q, reinterpret_cast<const int8_t*>(w + 192),
                              half::F16ToF32(LoadU16(w + 208)), a + sb * 256, a_scale + sb * 8,
                              &total);
  }
  return total;
}

float DotQ3_KReference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks) {
  float total = 0;
  int8_t q[256], sc[16];
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += quant::kQ3_KBlockBytes) {
    quant::UnpackQ3_K(w, q);
    quant::Q3_KScales(w + quant::kQ3_KScales, sc);
    AddScaled16BlockReference(q, sc, half::F16ToF32(LoadU16(w + quant::kQ3_KD)), a + sb * 256,
                              a_scale + sb * 8, &total);
  }
  return total;
}

namespace {

// Q4_Kx16 and Q5_Kx16 share their head (d, dmin, scales, mins) and sums; only the values'
// layout (Value) and the block size differ.
template <int (*Value)(const uint8_t*, int, int), int64_t kBlockBytes>
void GemmKQuantX16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                            const int32_t* a_sum, int64_t nblocks, float* out) {
  for (int r = 0; r < 16; ++r) {
    float total = 0;
    const uint8_t* block = group;
    for (int64_t sb = 0; sb < nblocks / 8; ++sb, block += kBlockBytes) {
      const float d = half::F16ToF32(LoadU16(block + 2 * r));
      const float dmin = half::F16ToF32(LoadU16(block + kQ4_Kx16Dmin + 2 * r));
      for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        Q4_Kx16ScaleMin(block, r, j, &sc, &m);
        const int64_t blk = sb * 8 + j;
        int32_t dot = 0;
        for (int i = 0; i < 32; ++i) dot += Value(block, r, 32 * j + i) * a[blk * 32 + i];
        total += a_scale[blk] *
                 (d * sc * static_cast<float>(dot) - dmin * m * static_cast<float>(a_sum[blk]));
      }
    }
    out[r] = total;
  }
}

}  // namespace

void GemmQ4_Kx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          const int32_t* a_sum, int64_t nblocks, float* out) {
  GemmKQuantX16Reference<Q4_Kx16Value, kQ4_Kx16BlockBytes>(group, a, a_scale, a_sum, nblocks, out);
}

void GemmQ5_Kx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          const int32_t* a_sum, int64_t nblocks, float* out) {
  GemmKQuantX16Reference<pack::Q5_Kx16Value, pack::kQ5_Kx16BlockBytes>(group, a, a_scale, a_sum,
                                                                       nblocks, out);
}

void GemmIQ4_XSx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                            int64_t nblocks, float* out) {
  for (int r = 0; r < 16; ++r) {
    float total = 0;
    const uint8_t* block = group;
    for (int64_t sb = 0; sb < nblocks / 8; ++sb, block += pack::kIQ4_XSx16BlockBytes) {
      const float d = half::F16ToF32(LoadU16(block + 2 * r));
      for (int j = 0; j < 8; ++j) {
        const int64_t blk = sb * 8 + j;
        int32_t dot = 0;
        for (int i = 0; i < 32; ++i) {
          dot += quant::kIQ4NLValues[pack::IQ4_XSx16Nibble(block, r, 32 * j + i)] * a[blk * 32 + i];
        }
        total += a_scale[blk] * (d * static_cast<float>(pack::IQ4_XSx16Scale(block, r, j) - 32) *
                                 static_cast<float>(dot));
      }
    }
    out[r] = total;
  }
}

void GemmQ2_Kx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          const int16_t* a_sum16, int64_t nblocks, float* out) {
  for (int r = 0; r < 16; ++r) {
    float total = 0;
    const uint8_t* block = group;
    for (int64_t sb = 0; sb < nblocks / 8; ++sb, block += pack::kQ2_Kx16BlockBytes) {
      const float d = half::F16ToF32(LoadU16(block + 2 * r));
      const float dmin = half::F16ToF32(LoadU16(block + pack::kQ2_Kx16Dmin + 2 * r));
      for (int b = 0; b < 8; ++b) {
        const int64_t blk = sb * 8 + b;
        const int8_t* ab = a + blk * 32;
        int32_t scaled = 0, mins = 0;
        for (int half = 0; half < 2; ++half) {
          const int k = 2 * b + half;
          uint8_t sc, m;
          pack::Q2_Kx16ScaleMin(block, r, k, &sc, &m);
          int32_t dot = 0;
          for (int i = 0; i < 16; ++i)
            dot += pack::Q2_Kx16Value(block, r, 16 * k + i) * ab[16 * half + i];
          scaled += sc * dot;
          mins += m * a_sum16[2 * blk + half];
        }
        total += a_scale[blk] * (d * static_cast<float>(scaled) - dmin * static_cast<float>(mins));
      }
    }
    out[r] = total;
  }
}

void GemmQ6_Kx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          int64_t nblocks, float* out) {
  for (int r = 0; r < 16; ++r) {
    float total = 0;
    const uint8_t* block = group;
    for (int64_t sb = 0; sb < nblocks / 8; ++sb, block += kQ6_Kx16BlockBytes) {
      const float d = half::F16ToF32(LoadU16(block + 2 * r));
      for (int b = 0; b < 8; ++b) {
        const int8_t* ab = a + (sb * 8 + b) * 32;
        int32_t lo = 0, hi = 0;
        for (int i = 0; i < 16; ++i) lo += (Q6_Kx16Value(block, r, 32 * b + i) - 32) * ab[i];
        for (int i = 16; i < 32; ++i) hi += (Q6_Kx16Value(block, r, 32 * b + i) - 32) * ab[i];
        const int sc_lo = static_cast<int8_t>(block[kQ6_Kx16Scales + 16 * (2 * b) + r]);
        const int sc_hi = static_cast<int8_t>(block[kQ6_Kx16Scales + 16 * (2 * b + 1) + r]);
        total += d * a_scale[sb * 8 + b] * static_cast<float>(sc_lo * lo + sc_hi * hi);
      }
    }
    out[r] = total;
  }
}

namespace {

// Q4_1x16 and Q5_1x16 (kFifthBit): per row, the sums of DotAffineReference in its order.
template <bool kFifthBit>
void GemmAffineX16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                            const int32_t* a_sum, int64_t nblocks, float* out) {
  constexpr int kBlockBytes = kFifthBit ? pack::kQ5_1x16BlockBytes : pack::kQ4_1x16BlockBytes;
  for (int r = 0; r < 16; ++r) {
    float total = 0;
    const uint8_t* block = group;
    for (int64_t b = 0; b < nblocks; ++b, block += kBlockBytes) {
      const float d = half::F16ToF32(LoadU16(block + 2 * r));
      const float m = half::F16ToF32(LoadU16(block + pack::kQ4_1x16Min + 2 * r));
      int32_t dot = 0;
      for (int i = 0; i < kBlock; ++i) {
        const int q = kFifthBit ? pack::Q5_1x16Value(block, r, i) : pack::Q4_1x16Value(block, r, i);
        dot += q * a[b * kBlock + i];
      }
      total += a_scale[b] * (d * static_cast<float>(dot) + m * static_cast<float>(a_sum[b]));
    }
    out[r] = total;
  }
}

}  // namespace

void GemmQ4_1x16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          const int32_t* a_sum, int64_t nblocks, float* out) {
  GemmAffineX16Reference<false>(group, a, a_scale, a_sum, nblocks, out);
}

void GemmQ5_1x16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          const int32_t* a_sum, int64_t nblocks, float* out) {
  GemmAffineX16Reference<true>(group, a, a_scale, a_sum, nblocks, out);
}

void GemmQ3_Kx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          int64_t nblocks, float* out) {
  for (int r = 0; r < 16; ++r) {
    float total = 0;
    const uint8_t* block = group;
    for (int64_t sb = 0; sb < nblocks / 8; ++sb, block += pack::kQ3_Kx16BlockBytes) {
      const float d = half::F16ToF32(LoadU16(block + 2 * r));
      for (int b = 0; b < 8; ++b) {
        const int8_t* ab = a + (sb * 8 + b) * 32;
        int32_t lo = 0, hi = 0;
        for (int i = 0; i < 16; ++i) lo += (pack::Q3_Kx16Value(block, r, 32 * b + i) - 4) * ab[i];
        for (int i = 16; i < 32; ++i) {
          hi += (pack::Q3_Kx16Value(block, r, 32 * b + i) - 4) * ab[i];
        }
        const int sc_lo = pack::Q3_Kx16Scale(block, r, 2 * b) - 32;
        const int sc_hi = pack::Q3_Kx16Scale(block, r, 2 * b + 1) - 32;
        total += d * a_scale[sb * 8 + b] * static_cast<float>(sc_lo * lo + sc_hi * hi);
      }
    }
    out[r] = total;
  }
}

}  // namespace gemma4::kernels
