#include "quant/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/half.h"

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

// Unsigned nibble value (0..15) of element e (0..127) of a Q4_0R group (64 data bytes).
inline int GroupNibble(const uint8_t* data, int e) {
  return e < 64 ? data[e] & 0xF : data[e - 64] >> 4;
}

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

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
    case DType::kQ4_K:
      for (int64_t b = 0; b < count / 256; ++b) DequantizeQ4_K(row + b * 144, out + b * 256);
      return;
    case DType::kQ8_0R: {
      const int64_t nblocks = count / kBlock, groups = nblocks / 4;
      for (int64_t g = 0; g < groups; ++g, row += 136, out += 128) {
        for (int e = 0; e < 128; ++e) {
          out[e] =
              half::F16ToF32(LoadU16(row + 2 * (e / 32))) * (static_cast<int>(row[8 + e]) - 128);
        }
      }
      DequantizeRow(DType::kQ8_0, row, (nblocks - 4 * groups) * kBlock, out);
      return;
    }
    case DType::kQ4_0R: {
      const int64_t nblocks = count / kBlock, groups = nblocks / 4;
      for (int64_t g = 0; g < groups; ++g, row += 72, out += 128) {
        for (int e = 0; e < 128; ++e) {
          out[e] = half::F16ToF32(LoadU16(row + 2 * (e / 32))) * (GroupNibble(row + 8, e) - 8);
        }
      }
      DequantizeRow(DType::kQ4_0, row, (nblocks - 4 * groups) * kBlock, out);
      return;
    }
    case DType::kQ6_K:
      for (int64_t b = 0; b < count / 256; ++b) DequantizeQ6_K(row + b * 210, out + b * 256);
      return;
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

float DotQ6_KReference(const uint8_t* w, const int8_t* a, const float* a_scale, int64_t nblocks) {
  float total = 0;
  int8_t q[256];
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += 210) {
    UnpackQ6_K(w, q);
    const float d = half::F16ToF32(LoadU16(w + 208));
    const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192);
    for (int b = 0; b < 8; ++b) {  // activation block b holds Q6_K sub-blocks 2b and 2b + 1
      const int8_t* ab = a + (sb * 8 + b) * 32;
      int32_t lo = 0, hi = 0;
      for (int i = 0; i < 16; ++i) lo += q[32 * b + i] * ab[i];
      for (int i = 16; i < 32; ++i) hi += q[32 * b + i] * ab[i];
      total += d * a_scale[sb * 8 + b] * static_cast<float>(sc[2 * b] * lo + sc[2 * b + 1] * hi);
    }
  }
  return total;
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
}  // namespace

void RepackGroupQ4_0x16(const uint8_t* src, uint64_t src_row_bytes, int64_t nblocks, uint8_t* dst) {
  // With X16Byte / X16Shift, data byte c * 64 + r * 4 + i holds element 8c + i in its low
  // nibble and 8c + 4 + i in its high one. Elements j < 16 are the low nibbles of the block's
  // bytes j, the others the high nibbles of bytes j - 16.
  for (int64_t b = 0; b < nblocks; ++b, dst += 16 * kQ4_0BlockBytes) {
    for (int r = 0; r < 16; ++r) {
      const uint8_t* block = src + r * src_row_bytes + b * kQ4_0BlockBytes;
      const uint8_t* qs = block + 2;
      std::memcpy(dst + 2 * r, block, 2);
      for (int c = 0; c < 4; ++c) {
        const uint32_t word = X16NibbleWord(qs + (8 * c) % 16, c < 2 ? 0 : 4);
        std::memcpy(dst + 32 + c * 64 + r * 4, &word, 4);
      }
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

int Q4_0x16Value(const uint8_t* block, int row, int j) {
  return ((block[32 + X16Byte(row, j)] >> X16Shift(j)) & 0xF) - 8;
}

void DequantizeQ4_0x16Row(const uint8_t* group, int64_t nblocks, int row, float* out) {
  for (int64_t b = 0; b < nblocks; ++b, group += 16 * kQ4_0BlockBytes, out += kBlock) {
    uint16_t h;
    std::memcpy(&h, group + 2 * row, 2);
    const float d = half::F16ToF32(h);
    for (int j = 0; j < 32; ++j) {
      out[j] = d * (((group[32 + X16Byte(row, j)] >> X16Shift(j)) & 0xF) - 8);
    }
  }
}

// Q4_Kx16: scale / min entry e = j * 16 + r (sub-block j, row r) keeps its low 4 bits in
// byte e % 64 of its 64-byte area (low nibble for e < 64, high nibble otherwise) and its top
// 2 bits in byte e % 64 of the shared area: bits 0-1 / 2-3 the scale's (e < 64 / e >= 64),
// bits 4-5 / 6-7 the min's. A SIMD kernel unpacks all 128 of each with a few masks and shifts.
void RepackGroupQ4_Kx16(const uint8_t* src, uint64_t src_row_bytes, int64_t nsuper, uint8_t* dst) {
  for (int64_t sb = 0; sb < nsuper; ++sb, dst += kQ4_Kx16BlockBytes) {
    for (int r = 0; r < 16; ++r) {
      const uint8_t* block = src + r * src_row_bytes + sb * kQ4_KBlockBytes;
      std::memcpy(dst + 2 * r, block, 2);
      std::memcpy(dst + kQ4_Kx16Dmin + 2 * r, block + 2, 2);
      uint8_t sc[8], m[8];
      Q4_KScales(block + 4, sc, m);
      // Entries e = j * 16 + r and e + 64 (sub-blocks j and j + 4) share byte e: each byte
      // belongs to one row and is written once.
      for (int j = 0; j < 4; ++j) {
        const int byte = j * 16 + r;
        dst[kQ4_Kx16ScaleLow + byte] = static_cast<uint8_t>((sc[j] & 0xF) | (sc[j + 4] << 4));
        dst[kQ4_Kx16MinLow + byte] = static_cast<uint8_t>((m[j] & 0xF) | (m[j + 4] << 4));
        dst[kQ4_Kx16High + byte] = static_cast<uint8_t>(
            (sc[j] >> 4) | ((sc[j + 4] >> 4) << 2) | ((m[j] >> 4) << 4) | ((m[j + 4] >> 4) << 6));
      }
      // Sub-block j is the low (even j) or high (odd j) nibbles of bytes 32 * (j / 2) ...
      // + 31; its 32 values go to the Q4_0x16 positions of a 256-byte area: run c, row r
      // holds values 8c .. 8c + 3 in its low nibbles and 8c + 4 .. 8c + 7 in its high ones
      // (four bytes, built as one word; byte order within the word is memory order).
      const uint8_t* qs = block + 16;
      for (int j = 0; j < 8; ++j) {
        uint8_t* data = dst + kQ4_Kx16Data + 256 * j;
        const int shift = 4 * (j % 2);
        for (int c = 0; c < 4; ++c) {
          const uint32_t word = X16NibbleWord(qs + 32 * (j / 2) + 8 * c, shift);
          std::memcpy(data + 64 * c + 4 * r, &word, 4);
        }
      }
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

void DequantizeQ4_Kx16Row(const uint8_t* group, int64_t nsuper, int row, float* out) {
  for (int64_t sb = 0; sb < nsuper; ++sb, group += kQ4_Kx16BlockBytes, out += 256) {
    const float d = half::F16ToF32(LoadU16(group + 2 * row));
    const float dmin = half::F16ToF32(LoadU16(group + kQ4_Kx16Dmin + 2 * row));
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      Q4_Kx16ScaleMin(group, row, j, &sc, &m);
      for (int i = 0; i < 32; ++i) {
        out[32 * j + i] = d * sc * Q4_Kx16Value(group, row, 32 * j + i) - dmin * m;
      }
    }
  }
}

void GemmQ4_Kx16Reference(const uint8_t* group, const int8_t* a, const float* a_scale,
                          const int32_t* a_sum, int64_t nblocks, float* out) {
  for (int r = 0; r < 16; ++r) {
    float total = 0;
    const uint8_t* block = group;
    for (int64_t sb = 0; sb < nblocks / 8; ++sb, block += kQ4_Kx16BlockBytes) {
      const float d = half::F16ToF32(LoadU16(block + 2 * r));
      const float dmin = half::F16ToF32(LoadU16(block + kQ4_Kx16Dmin + 2 * r));
      for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        Q4_Kx16ScaleMin(block, r, j, &sc, &m);
        const int64_t blk = sb * 8 + j;
        int32_t dot = 0;
        for (int i = 0; i < 32; ++i) dot += Q4_Kx16Value(block, r, 32 * j + i) * a[blk * 32 + i];
        total += a_scale[blk] *
                 (d * sc * static_cast<float>(dot) - dmin * m * static_cast<float>(a_sum[blk]));
      }
    }
    out[r] = total;
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

void QuantizeActivationBlocks(const float* x, int64_t nblocks, int8_t* q, float* scale,
                              int32_t* sum, float* offset) {
  for (int64_t b = 0; b < nblocks; ++b, x += kBlock, q += kBlock) {
    float amax = 0;
    for (int i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    int32_t s = 0;
    for (int i = 0; i < kBlock; ++i) {
      q[i] = static_cast<int8_t>(std::nearbyint(x[i] * id));  // ties to even, as SIMD rounds
      s += q[i];
    }
    scale[b] = d;
    sum[b] = s;
    offset[b] = 8.0f * static_cast<float>(s) * d;
  }
}

void QuantizedActivations::Resize(int64_t new_rows, int64_t new_cols) {
  rows = new_rows;
  cols = new_cols;
  const int64_t nb = rows * (cols / kBlock);
  if (static_cast<int64_t>(q.size()) < rows * cols) q.resize(rows * cols);
  if (static_cast<int64_t>(scale.size()) < nb) {
    scale.resize(nb);
    sum.resize(nb);
    offset.resize(nb);
  }
}

void QuantizedActivations::FillSums16() {
  if (static_cast<int64_t>(sum16.size()) < rows * (cols / 16)) sum16.resize(rows * (cols / 16));
  for (int64_t i = 0; i < rows * (cols / 16); ++i) {
    int32_t s = 0;
    for (int j = 0; j < 16; ++j) s += q[i * 16 + j];
    sum16[i] = static_cast<int16_t>(s);
  }
}

void QuantizeActivations(const float* x, int64_t rows, int64_t cols, QuantizedActivations* out) {
  out->Resize(rows, cols);
  const int64_t nb = cols / kBlock;
  for (int64_t r = 0; r < rows; ++r) {
    QuantizeActivationBlocks(x + r * cols, nb, out->q.data() + r * cols, out->scale.data() + r * nb,
                             out->sum.data() + r * nb, out->offset.data() + r * nb);
  }
  out->FillSums16();
}

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
      for (int j = 0; j < 32; ++j) acc += GroupNibble(w + 8, 32 * b + j) * a[32 * b + j];
      const int64_t blk = 4 * g + b;
      total += half::F16ToF32(LoadU16(w + 2 * b)) * a_scale[blk] *
               static_cast<float>(acc - 8 * a_sum[blk]);
    }
  }
  return total +
         DotQ4_0Reference(w, a, a_scale + 4 * groups, a_sum + 4 * groups, nblocks - 4 * groups);
}

}  // namespace gemma4::quant
