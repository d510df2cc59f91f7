#include "quant/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/half.h"
#include "quant/iq_grids.h"

namespace gemma4::quant {

void QuantizeRowQ8_0(const float* x, int64_t n, uint8_t* out) {
  for (int64_t b = 0; b < n / kBlock; ++b, x += kBlock, out += kQ8_0BlockBytes) {
    float amax = 0;
    for (int i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    const uint16_t dh = half::F32ToF16(d);
    std::memcpy(out, &dh, 2);
    for (int i = 0; i < kBlock; ++i) {
      out[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(x[i] * id)));
    }
  }
}

void QuantizeRowQ4_0(const float* x, int64_t n, uint8_t* out) {
  for (int64_t b = 0; b < n / kBlock; ++b, x += kBlock, out += kQ4_0BlockBytes) {
    // The signed value of largest magnitude maps to -8, so the full [-8, 7] range is used.
    float amax = 0, max = 0;
    for (int i = 0; i < kBlock; ++i) {
      if (std::fabs(x[i]) > amax) {
        amax = std::fabs(x[i]);
        max = x[i];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    const uint16_t dh = half::F32ToF16(d);
    std::memcpy(out, &dh, 2);
    for (int j = 0; j < kBlock / 2; ++j) {
      const int lo = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int hi = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
      out[2 + j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

namespace {

void ScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void DequantizeQ4_K(const uint8_t* block, float* y) {
  const float d = half::F16ToF32(LoadU16(block));
  const float dmin = half::F16ToF32(LoadU16(block + 2));
  const uint8_t* scales = block + 4;
  const uint8_t* q = block + 16;
  int is = 0;
  for (int j = 0; j < 256; j += 64) {
    uint8_t sc, m;
    ScaleMinK4(is, scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    ScaleMinK4(is + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    q += 32;
    is += 2;
  }
}

// ggml's dequantize_row_q5_K: Q4_K's sub-blocks with a fifth bit per value.
void DequantizeQ5_K(const uint8_t* block, float* y) {
  const float d = half::F16ToF32(LoadU16(block));
  const float dmin = half::F16ToF32(LoadU16(block + 2));
  uint8_t sc[8], m[8], q[256];
  for (int j = 0; j < 8; ++j) ScaleMinK4(j, block + 4, &sc[j], &m[j]);
  UnpackQ5_K(block, q);
  for (int e = 0; e < 256; ++e) y[e] = d * sc[e / 32] * q[e] - dmin * m[e / 32];
}

// ggml's dequantize_row_q3_K: 16 sub-blocks of 16 with signed 6-bit scales.
void DequantizeQ3_K(const uint8_t* block, float* y) {
  const float d = half::F16ToF32(LoadU16(block + kQ3_KD));
  int8_t sc[16], q[256];
  Q3_KScales(block + kQ3_KScales, sc);
  UnpackQ3_K(block, q);
  for (int e = 0; e < 256; ++e) y[e] = d * sc[e / 16] * q[e];
}

// ggml's dequantize_row_q2_K: per 16-value sub-block k, d * (scales[k] & 0xF) times the value
// minus dmin * (scales[k] >> 4).
void DequantizeQ2_K(const uint8_t* block, float* y) {
  const float d = half::F16ToF32(LoadU16(block + kQ2_KD));
  const float dmin = half::F16ToF32(LoadU16(block + kQ2_KD + 2));
  uint8_t q[256];
  UnpackQ2_K(block, q);
  for (int e = 0; e < 256; ++e) {
    const uint8_t sc = block[e / 16];
    y[e] = d * (sc & 0xF) * q[e] - dmin * (sc >> 4);
  }
}

void DequantizeQ6_K(const uint8_t* block, float* y) {
  const uint8_t* ql = block;
  const uint8_t* qh = block + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(block + 192);
  const float d = half::F16ToF32(LoadU16(block + 208));
  for (int n = 0; n < 256; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

}  // namespace

void ConvertRowQ5_0ToQ8_0(const uint8_t* src, int64_t nblocks, uint8_t* dst) {
  for (int64_t b = 0; b < nblocks; ++b, src += kQ5_0BlockBytes, dst += kQ8_0BlockBytes) {
    std::memcpy(dst, src, 2);  // d
    uint32_t qh;
    std::memcpy(&qh, src + 2, 4);  // little-endian, as ggml reads it
    const uint8_t* qs = src + 6;
    for (int j = 0; j < 16; ++j) {
      const int low = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);         // element j
      const int high = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);  // element j + 16
      dst[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(low - 16));
      dst[2 + j + 16] = static_cast<uint8_t>(static_cast<int8_t>(high - 16));
    }
  }
}

bool ConvertRowQ5_0ToQ5_1(const uint8_t* src, int64_t nblocks, uint8_t* dst) {
  for (int64_t b = 0; b < nblocks; ++b, src += kQ5_0BlockBytes, dst += kQ5_1BlockBytes) {
    const float d = half::F16ToF32(LoadU16(src));
    const uint16_t m = half::F32ToF16(-16.0f * d);
    if (std::isfinite(d) && !std::isfinite(half::F16ToF32(m))) return false;
    std::memcpy(dst, src, 2);               // d
    std::memcpy(dst + 2, &m, 2);            // m
    std::memcpy(dst + 4, src + 2, 4 + 16);  // qh, qs: the same layout in both
  }
  return true;
}

float E8M0ToF32Half(uint8_t e) {
  const uint32_t bits = e < 2 ? uint32_t{0x00200000} << e : static_cast<uint32_t>(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void IQ4_XSScales(const uint8_t* block, uint8_t* scales) {
  const int high = LoadU16(block + 2);
  for (int j = 0; j < 8; ++j) {
    scales[j] = static_cast<uint8_t>(((block[4 + j / 2] >> (4 * (j % 2))) & 0xF) |
                                     (((high >> (2 * j)) & 3) << 4));
  }
}

void DequantizeRow(DType type, const uint8_t* row, int64_t count, float* out) {
  switch (type) {
    case DType::kQ8_0:
      for (int64_t b = 0; b < count / kBlock; ++b, row += kQ8_0BlockBytes) {
        const float d = half::F16ToF32(LoadU16(row));
        for (int i = 0; i < kBlock; ++i) *out++ = d * static_cast<int8_t>(row[2 + i]);
      }
      return;
    case DType::kQ4_0:
      for (int64_t b = 0; b < count / kBlock; ++b, row += kQ4_0BlockBytes, out += kBlock) {
        const float d = half::F16ToF32(LoadU16(row));
        for (int j = 0; j < 16; ++j) {
          out[j] = d * ((row[2 + j] & 0xF) - 8);
          out[j + 16] = d * ((row[2 + j] >> 4) - 8);
        }
      }
      return;
    case DType::kQ5_0: {
      uint8_t q8[kQ8_0BlockBytes];
      for (int64_t b = 0; b < count / kBlock; ++b, row += kQ5_0BlockBytes, out += kBlock) {
        ConvertRowQ5_0ToQ8_0(row, 1, q8);
        const float d = half::F16ToF32(LoadU16(q8));
        for (int i = 0; i < kBlock; ++i) out[i] = d * static_cast<int8_t>(q8[2 + i]);
      }
      return;
    }
    case DType::kQ4_K:
      for (int64_t b = 0; b < count / 256; ++b) DequantizeQ4_K(row + b * 144, out + b * 256);
      return;
    case DType::kIQ4_NL:
      for (int64_t b = 0; b < count / kBlock; ++b, row += kIQ4_NLBlockBytes, out += kBlock) {
        const float d = half::F16ToF32(LoadU16(row));
        for (int j = 0; j < 16; ++j) {
          out[j] = d * kIQ4NLValues[row[2 + j] & 0xF];
          out[j + 16] = d * kIQ4NLValues[row[2 + j] >> 4];
        }
      }
      return;
    case DType::kMXFP4:
      for (int64_t b = 0; b < count / kBlock; ++b, row += kMXFP4BlockBytes, out += kBlock) {
        const float d = E8M0ToF32Half(row[0]);
        for (int j = 0; j < 16; ++j) {
          out[j] = d * kMXFP4Values[row[1 + j] & 0xF];
          out[j + 16] = d * kMXFP4Values[row[1 + j] >> 4];
        }
      }
      return;
    case DType::kIQ4_XS:
      for (int64_t b = 0; b < count / 256; ++b, row += kIQ4_XSBlockBytes) {
        const float d = half::F16ToF32(LoadU16(row));
        uint8_t ls[8];
        IQ4_XSScales(row, ls);
        for (int j = 0; j < 8; ++j, out += kBlock) {
          const float dl = d * (ls[j] - 32);
          const uint8_t* qs = row + 8 + 16 * j;
          for (int i = 0; i < 16; ++i) {
            out[i] = dl * kIQ4NLValues[qs[i] & 0xF];
            out[i + 16] = dl * kIQ4NLValues[qs[i] >> 4];
          }
        }
      }
      return;
    case DType::kQ4_1:
      for (int64_t b = 0; b < count / kBlock; ++b, row += kQ4_1BlockBytes, out += kBlock) {
        const float d = half::F16ToF32(LoadU16(row)), m = half::F16ToF32(LoadU16(row + 2));
        uint8_t q[kBlock];
        UnpackQ4_1(row, q);
        for (int i = 0; i < kBlock; ++i) out[i] = q[i] * d + m;
      }
      return;
    case DType::kQ5_1:
      for (int64_t b = 0; b < count / kBlock; ++b, row += kQ5_1BlockBytes, out += kBlock) {
        const float d = half::F16ToF32(LoadU16(row)), m = half::F16ToF32(LoadU16(row + 2));
        uint8_t q[kBlock];
        UnpackQ5_1(row, q);
        for (int i = 0; i < kBlock; ++i) out[i] = q[i] * d + m;
      }
      return;
    case DType::kQ5_K:
      for (int64_t b = 0; b < count / 256; ++b) {
        DequantizeQ5_K(row + b * kQ5_KBlockBytes, out + b * 256);
      }
      return;
    case DType::kQ2_K:
      for (int64_t b = 0; b < count / 256; ++b) {
        DequantizeQ2_K(row + b * kQ2_KBlockBytes, out + b * 256);
      }
      return;
    case DType::kQ6_K:
      for (int64_t b = 0; b < count / 256; ++b) DequantizeQ6_K(row + b * 210, out + b * 256);
      return;
    case DType::kQ3_K:
      for (int64_t b = 0; b < count / 256; ++b) {
        DequantizeQ3_K(row + b * kQ3_KBlockBytes, out + b * 256);
      }
      return;
    case DType::kIQ2_XXS:
    case DType::kIQ2_XS:
    case DType::kIQ2_S:
    case DType::kIQ3_XXS:
    case DType::kIQ3_S:
    case DType::kIQ1_S:
    case DType::kIQ1_M: {
      const size_t block_bytes = BlockBytes(type);
      const float unit = CodebookUnit(type);
      for (int64_t b = 0; b < count / 256; ++b, row += block_bytes, out += 256) {
        int8_t q[256];
        uint8_t m[16];
        UnpackCodebookBlock(type, row, q, m);
        // Exact: a power of two. IQ1: d (2 s + 1) / 8 is exact too, so the one rounding of its
        // product with 8 g +- 1 is ggml's of d (2 s + 1) times g +- 1/8.
        const float d = CodebookD(type, row) * unit;
        for (int e = 0; e < 256; ++e) out[e] = d * m[e / 16] * q[e];
      }
      return;
    }
    // Float types (ops::ToF32 converts them with the vector kernels; the bits are the same).
    case DType::kF32:
      std::memcpy(out, row, count * 4);
      return;
    case DType::kF16:
      for (int64_t i = 0; i < count; ++i) out[i] = half::F16ToF32(LoadU16(row + 2 * i));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < count; ++i) out[i] = half::Bf16ToF32(LoadU16(row + 2 * i));
      return;
    default:
      // Callers validate dtypes at load time (IsComputeType); never reached.
      std::fill(out, out + count, 0.0f);
      return;
  }
}

namespace {

// Round to nearest, ties to even (ggml's nearest_int).
inline int NearestInt(float f) { return static_cast<int>(std::nearbyint(f)); }

// ggml's make_qx_quants with rmse_type 1 (weights x^2): a symmetric scale for n values on
// [-nmax, nmax - 1], refined over 18 nearby inverse scales; L receives value + nmax.
float MakeQxQuants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < 1e-15f) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  auto fit = [&](float iscale, float* sumlx, float* suml2) {
    *sumlx = *suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(-nmax, std::min(nmax - 1, NearestInt(iscale * x[i])));
      const float w = x[i] * x[i];
      *sumlx += w * x[i] * l;
      *suml2 += w * l * l;
    }
  };
  float iscale = -nmax / max;
  float sumlx, suml2;
  fit(iscale, &sumlx, &suml2);
  for (int i = 0; i < n; ++i) {
    L[i] =
        static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, NearestInt(iscale * x[i]))));
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    fit(iscale, &sumlx, &suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        L[i] = static_cast<int8_t>(nmax +
                                   std::max(-nmax, std::min(nmax - 1, NearestInt(iscale * x[i]))));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

}  // namespace

namespace {

// ggml's make_qkx2_quants: an affine fit x ~ scale * L - min (min >= 0) for n values on
// [0, nmax] with weights, refined over nstep + 1 inverse scales; returns scale, sets *the_min.
float MakeQkx2Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                     float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_mad = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, NearestInt(iscale * (x[i] - min)))));
    const float diff = scale * L[i] + min - x[i];
    best_mad += weights[i] * diff * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(0, std::min(nmax, NearestInt(iscale * (x[i] - min))));
      Laux[i] = static_cast<uint8_t>(l);
      sum_l += weights[i] * l;
      sum_l2 += weights[i] * l * l;
      sum_xl += weights[i] * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float mad = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * Laux[i] + this_min - x[i];
        mad += weights[i] * diff * diff;
      }
      if (mad < best_mad) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_mad = mad;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

}  // namespace

void QuantizeRowQ4_K(const float* x, int64_t n, uint8_t* out) {
  for (int64_t blk = 0; blk < n / 256; ++blk, x += 256, out += 144) {
    uint8_t L[256], Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] =
          MakeQkx2Quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.0f, 0.1f, 20);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t* packed = out + 4;
    for (int j = 0; j < 8; ++j) {
      const uint8_t ls = static_cast<uint8_t>(std::min(63, NearestInt(inv_scale * scales[j])));
      const uint8_t lm = static_cast<uint8_t>(std::min(63, NearestInt(inv_min * mins[j])));
      if (j < 4) {
        packed[j] = ls;
        packed[j + 4] = lm;
      } else {
        packed[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
        packed[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
        packed[j] |= static_cast<uint8_t>((lm >> 4) << 6);
      }
    }
    const uint16_t dh = half::F32ToF16(max_scale / 63.0f), mh = half::F32ToF16(max_min / 63.0f);
    std::memcpy(out, &dh, 2);
    std::memcpy(out + 2, &mh, 2);
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      ScaleMinK4(j, packed, &sc, &m);
      const float d = half::F16ToF32(dh) * sc;
      if (d == 0) continue;
      const float dm = half::F16ToF32(mh) * m;
      for (int ii = 0; ii < 32; ++ii) {
        L[32 * j + ii] =
            static_cast<uint8_t>(std::max(0, std::min(15, NearestInt((x[32 * j + ii] + dm) / d))));
      }
    }
    uint8_t* q = out + 16;
    for (int j = 0; j < 256; j += 64, q += 32) {
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    }
  }
}

void QuantizeRowQ6_K(const float* x, int64_t n, uint8_t* out) {
  for (int64_t blk = 0; blk < n / 256; ++blk, x += 256, out += 210) {
    int8_t L[256];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
      scales[ib] = MakeQxQuants(16, 32, x + 16 * ib, L + 16 * ib);
      if (std::fabs(scales[ib]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[ib]);
        max_scale = scales[ib];
      }
    }
    std::memset(out, 0, 210);
    if (max_abs_scale < 1e-15f) continue;  // all zero; d = 0
    const float iscale = -128.0f / max_scale;
    const uint16_t dh = half::F32ToF16(1.0f / iscale);
    std::memcpy(out + 208, &dh, 2);
    int8_t* sc = reinterpret_cast<int8_t*>(out + 192);
    for (int ib = 0; ib < 16; ++ib) {
      sc[ib] = static_cast<int8_t>(std::min(127, NearestInt(iscale * scales[ib])));
    }
    const float d_stored = half::F16ToF32(dh);
    for (int j = 0; j < 16; ++j) {
      const float d = d_stored * sc[j];
      if (d == 0) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = std::max(-32, std::min(31, NearestInt(x[16 * j + ii] / d)));
        L[16 * j + ii] = static_cast<int8_t>(l + 32);
      }
    }
    uint8_t* ql = out;
    uint8_t* qh = out + 128;
    for (int j = 0; j < 256; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
        const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
        ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                     ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
      }
    }
  }
}

void Q4_KScales(const uint8_t* packed, uint8_t* scales, uint8_t* mins) {
  for (int j = 0; j < 8; ++j) ScaleMinK4(j, packed, &scales[j], &mins[j]);
}

void UnpackQ5_1(const uint8_t* block, uint8_t* q) {
  uint32_t qh;
  std::memcpy(&qh, block + 4, 4);  // little-endian, as ggml reads it
  const uint8_t* qs = block + 8;
  for (int j = 0; j < 16; ++j) {
    q[j] = static_cast<uint8_t>((qs[j] & 0xF) | (((qh >> j) & 1) << 4));
    q[j + 16] = static_cast<uint8_t>((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
  }
}

void UnpackQ4_1(const uint8_t* block, uint8_t* q) {
  const uint8_t* qs = block + 4;
  for (int j = 0; j < 16; ++j) {
    q[j] = static_cast<uint8_t>(qs[j] & 0xF);
    q[j + 16] = static_cast<uint8_t>(qs[j] >> 4);
  }
}

void UnpackQ5_K(const uint8_t* block, uint8_t* q) {
  const uint8_t* qh = block + kQ5_KHigh;
  const uint8_t* qs = block + kQ5_KLow;
  for (int j = 0; j < 8; ++j) {  // sub-block j: nibbles of qs[32 (j / 2) + l], bit j of qh[l]
    for (int l = 0; l < 32; ++l) {
      const int low = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0xF;
      q[32 * j + l] = static_cast<uint8_t>(low | (((qh[l] >> j) & 1) << 4));
    }
  }
}

void Q3_KScales(const uint8_t* packed, int8_t* scales) {
  for (int k = 0; k < 16; ++k) {
    const int low = (packed[k % 8] >> (4 * (k / 8))) & 0xF;
    const int top = (packed[8 + k % 4] >> (2 * (k / 4))) & 3;
    scales[k] = static_cast<int8_t>((low | (top << 4)) - 32);
  }
}

void UnpackQ3_K(const uint8_t* block, int8_t* q) {
  const uint8_t* hmask = block;
  const uint8_t* qs = block + kQ3_KLow;
  for (int g = 0; g < 8; ++g) {  // group g: 32 values, one 2-bit field of qs and bit g of hmask
    for (int l = 0; l < 32; ++l) {
      const int low = (qs[32 * (g / 4) + l] >> (2 * (g % 4))) & 3;
      q[32 * g + l] = static_cast<int8_t>(low - ((hmask[l] >> g) & 1 ? 0 : 4));
    }
  }
}

void UnpackQ2_K(const uint8_t* block, uint8_t* q) {
  const uint8_t* qs = block + kQ2_KValues;
  for (int h = 0; h < 2; ++h) {  // 128-value halves: 32 bytes of qs each, four values a byte
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 32; ++l) {
        q[128 * h + 32 * j + l] = static_cast<uint8_t>((qs[32 * h + l] >> (2 * j)) & 3);
      }
    }
  }
}

namespace {

uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Eight weights from one grid entry's magnitudes (byte k: weight k) and a sign mask (bit k set:
// weight k negative).
void SignedGridValues(uint64_t magnitudes, uint8_t sign_bits, int nvalues, int8_t* q) {
  for (int k = 0; k < nvalues; ++k) {
    const int v = static_cast<int>((magnitudes >> (8 * k)) & 0xFF);
    q[k] = static_cast<int8_t>((sign_bits >> k) & 1 ? -v : v);
  }
}

// IQ1: eight values 8 g + shift (g the grid entry's int8 bytes -1, 0, +1; shift +-1).
void IQ1Values(uint64_t grid, int shift, int8_t* q) {
  for (int k = 0; k < 8; ++k) {
    q[k] = static_cast<int8_t>(8 * static_cast<int8_t>((grid >> (8 * k)) & 0xFF) + shift);
  }
}

}  // namespace

float CodebookUnit(DType type) {
  return type == DType::kIQ3_S ? 1.0f : type == DType::kIQ3_XXS ? 0.25f : 0.125f;
}

float CodebookD(DType type, const uint8_t* block) {
  return half::F16ToF32(type == DType::kIQ1_M ? IQ1_MScaleBits(block) : LoadU16(block));
}

void UnpackCodebookBlock(DType type, const uint8_t* block, int8_t* q, uint8_t* m) {
  for (int ib = 0; ib < 8; ++ib, q += 32) {  // sub-blocks of 32 weights, four groups of 8
    int s_lo = 0, s_hi = 0;                  // the 4-bit scales of its two halves
    switch (type) {
      case DType::kIQ2_XXS: {
        const uint8_t* sub = block + 2 + 8 * ib;  // 4 grid indices, then u32 signs and scale
        const uint32_t signs = LoadU32(sub + 4);
        for (int l = 0; l < 4; ++l) {
          SignedGridValues(kIQ2XXSGrid[sub[l]], kIQSignBits[(signs >> (7 * l)) & 127], 8,
                           q + 8 * l);
        }
        s_lo = s_hi = static_cast<int>(signs >> 28);
        break;
      }
      case DType::kIQ2_XS: {
        for (int l = 0; l < 4; ++l) {
          const uint16_t v = LoadU16(block + 2 + 2 * (4 * ib + l));  // 9-bit index, 7-bit signs
          SignedGridValues(kIQ2XSGrid[v & 511], kIQSignBits[v >> 9], 8, q + 8 * l);
        }
        s_lo = block[kIQ2_XSScales + ib] & 0xF;
        s_hi = block[kIQ2_XSScales + ib] >> 4;
        break;
      }
      case DType::kIQ2_S: {
        const int high = block[kIQ2_SHigh + ib];  // index bits 8-9 of group l at bits 2l, 2l + 1
        for (int l = 0; l < 4; ++l) {
          const int index = block[2 + 4 * ib + l] | (((high >> (2 * l)) & 3) << 8);
          SignedGridValues(kIQ2SGrid[index], block[kIQ2_SSigns + 4 * ib + l], 8, q + 8 * l);
        }
        s_lo = block[kIQ2_SScales + ib] & 0xF;
        s_hi = block[kIQ2_SScales + ib] >> 4;
        break;
      }
      case DType::kIQ3_XXS: {
        const uint8_t* indices = block + 2 + 8 * ib;  // one per 4 weights
        const uint32_t signs = LoadU32(block + kIQ3_XXSSigns + 4 * ib);
        for (int l = 0; l < 4; ++l) {
          const uint8_t sign_bits = kIQSignBits[(signs >> (7 * l)) & 127];
          SignedGridValues(kIQ3XXSGrid[indices[2 * l]], sign_bits & 0xF, 4, q + 8 * l);
          SignedGridValues(kIQ3XXSGrid[indices[2 * l + 1]], sign_bits >> 4, 4, q + 8 * l + 4);
        }
        s_lo = s_hi = static_cast<int>(signs >> 28);
        break;
      }
      case DType::kIQ3_S: {
        const uint8_t* low = block + 2 + 8 * ib;  // index bits 0-7, one per 4 weights
        const int high = block[kIQ3_SHigh + ib];  // bit 8 of index i at bit i
        for (int i = 0; i < 8; ++i) {
          const int index = low[i] | (((high >> i) & 1) << 8);
          const uint8_t sign_bits = block[kIQ3_SSigns + 4 * ib + i / 2];
          SignedGridValues(kIQ3SGrid[index], i % 2 == 0 ? sign_bits & 0xF : sign_bits >> 4, 4,
                           q + 4 * i);
        }
        s_lo = s_hi = (block[kIQ3_SScales + ib / 2] >> (4 * (ib % 2))) & 0xF;
        break;
      }
      case DType::kIQ1_S: {
        const int qh = LoadU16(block + kIQ1_SHigh + 2 * ib);
        const int shift = qh & 0x8000 ? -1 : 1;  // 8 delta
        for (int l = 0; l < 4; ++l) {
          const int index = block[2 + 4 * ib + l] | (((qh >> (3 * l)) & 7) << 8);
          IQ1Values(kIQ1SGrid[index], shift, q + 8 * l);
        }
        s_lo = s_hi = (qh >> 12) & 7;
        break;
      }
      case DType::kIQ1_M: {
        for (int l = 0; l < 4; ++l) {
          const int nibble = (block[kIQ1_MHigh + 2 * ib + l / 2] >> (4 * (l % 2))) & 0xF;
          const int index = block[4 * ib + l] | ((nibble & 7) << 8);
          IQ1Values(kIQ1SGrid[index], nibble & 8 ? -1 : 1, q + 8 * l);
        }
        const int sc = LoadU16(block + kIQ1_MScales + 2 * (ib / 2)) >> (6 * (ib % 2));
        s_lo = sc & 7;
        s_hi = (sc >> 3) & 7;
        break;
      }
      default:
        std::fill(q, q + 32, int8_t{0});
        break;
    }
    m[2 * ib] = static_cast<uint8_t>(2 * s_lo + 1);
    m[2 * ib + 1] = static_cast<uint8_t>(2 * s_hi + 1);
  }
}

void UnpackQ6_K(const uint8_t* block, int8_t* q) {
  const uint8_t* ql = block;
  const uint8_t* qh = block + 128;
  for (int n = 0; n < 256; n += 128, ql += 64, qh += 32, q += 128) {
    for (int l = 0; l < 32; ++l) {
      q[l] = static_cast<int8_t>(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
      q[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
      q[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      q[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
    }
  }
}

void QuantizeRow(DType type, const float* x, int64_t n, uint8_t* out) {
  switch (type) {
    case DType::kQ6_K:
      QuantizeRowQ6_K(x, n, out);
      return;
    case DType::kQ4_K:
      QuantizeRowQ4_K(x, n, out);
      return;
    case DType::kQ8_0:
      QuantizeRowQ8_0(x, n, out);
      return;
    case DType::kQ4_0:
      QuantizeRowQ4_0(x, n, out);
      return;
    case DType::kF32:
      std::memcpy(out, x, n * 4);
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = half::F32ToF16(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = half::F32ToBf16(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    default:
      return;  // callers only pass the types listed above
  }
}

}  // namespace gemma4::quant
