// ARMv8.2 NEON + dotprod kernels (sdot multiplies signed bytes and accumulates into int32).
// Compiled with -march=armv8.2-a+dotprod+fp16; only called after CpuSupports(kNeonDotprod).
// Everything this unit defines lives in namespace neon (float_kernels-inl.h opens it from
// this macro), so no other object can share its symbols (see CMakeLists.txt: -fno-weak).
#define GEMMA4_ISA_NAMESPACE neon
#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels/isa/codebook-inl.h"
#include "kernels/isa/float_kernels-inl.h"
#include "kernels/kernels.h"
#include "kernels/pack/pack.h"
#include "kernels/ref/reference_dots.h"
#include "quant/iq_grids.h"

namespace gemma4::kernels::neon {

const KernelTable& Table();

namespace {

inline float LoadHalf(const uint8_t* p) {
  float16_t h;
  std::memcpy(&h, p, 2);
  return static_cast<float>(h);
}

// Signed Q4_0 values (nibble - 8) of one block: elements 0..15 and 16..31.
inline void ExpandQ4(const uint8_t* qs, int8x16_t* lo, int8x16_t* hi) {
  const uint8x16_t raw = vld1q_u8(qs);
  const int8x16_t eight = vdupq_n_s8(8);
  *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0F))), eight);
  *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), eight);
}

inline int32_t BlockDot(int8x16_t w0, int8x16_t w1, const int8_t* a) {
  int32x4_t acc = vdotq_s32(vdupq_n_s32(0), w0, vld1q_s8(a));
  acc = vdotq_s32(acc, w1, vld1q_s8(a + 16));
  return vaddvq_s32(acc);
}

void DotQ8_0(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  for (int t = 0; t < ntok; ++t) {
    const int8_t* q = a.q_row(token + t);
    const float* s = a.scale_row(token + t);
    float32x4_t acc = vdupq_n_f32(0);
    const uint8_t* b = w;
    for (int64_t i = 0; i < nblocks; ++i, b += quant::kQ8_0BlockBytes, q += 32) {
      const int8x16_t w0 = vld1q_s8(reinterpret_cast<const int8_t*>(b + 2));
      const int8x16_t w1 = vld1q_s8(reinterpret_cast<const int8_t*>(b + 18));
      int32x4_t dp = vdotq_s32(vdupq_n_s32(0), w0, vld1q_s8(q));
      dp = vdotq_s32(dp, w1, vld1q_s8(q + 16));
      acc = vmlaq_n_f32(acc, vcvtq_f32_s32(dp), LoadHalf(b) * s[i]);
    }
    out[t] = vaddvq_f32(acc);
  }
}

// Q6_K super-block (210 bytes: 128 low-nibble bytes, 64 bytes of 2-bit highs, 16 int8 scales,
// f16 d), as two halves of 128 values. In a half, vector v (32 values) is activation block
// b + v; its two 16-value sub-blocks have scales sc[8 * half + 2v] and sc[8 * half + 2v + 1].
// Values are 6-bit (0..63) minus 32, so they fit sdot's signed bytes directly.
void DotQ6_K(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(3);
  const int8x16_t thirty_two = vdupq_n_s8(32);
  for (int t = 0; t < ntok; ++t) {
    const int8_t* aq_row = a.q_row(token + t);
    const float* as_row = a.scale_row(token + t);
    float acc = 0;
    const uint8_t* sbp = w;
    for (int64_t sb = 0; sb < nblocks / 8; ++sb, sbp += 210) {
      const float d = LoadHalf(sbp + 208);
      const int8_t* sc = reinterpret_cast<const int8_t*>(sbp + 192);
      for (int half = 0; half < 2; ++half) {
        const uint8_t* ql = sbp + 64 * half;
        const uint8_t* qh = sbp + 128 + 32 * half;
        const int64_t b = sb * 8 + half * 4;
        for (int part = 0; part < 2; ++part) {  // bytes 0-15 and 16-31 of each 32-byte run
          const uint8x16_t l0 = vld1q_u8(ql + 16 * part), l1 = vld1q_u8(ql + 32 + 16 * part);
          const uint8x16_t h = vld1q_u8(qh + 16 * part);
          uint8x16_t q[4];
          q[0] = vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8(vandq_u8(h, m3), 4));
          q[1] = vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h, 2), m3), 4));
          q[2] = vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h, 4), m3), 4));
          q[3] = vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vshrq_n_u8(h, 6), 4));
          for (int v = 0; v < 4; ++v) {
            const int8x16_t qs = vsubq_s8(vreinterpretq_s8_u8(q[v]), thirty_two);
            const int8_t* aq = aq_row + (b + v) * 32 + 16 * part;
            const int32_t dot = vaddvq_s32(vdotq_s32(vdupq_n_s32(0), qs, vld1q_s8(aq)));
            acc += static_cast<float>(dot) *
                   (d * static_cast<float>(sc[8 * half + 2 * v + part]) * as_row[b + v]);
          }
        }
      }
    }
    out[t] = acc;
  }
}

// Q2_K super-block (84 bytes: 16 scale bytes, 64 bytes of 2-bit values, f16 d and dmin). In
// half h, block 4 h + j's values are bits 2 j .. 2 j + 1 of qs[32 h + l]: sub-block 8 h + 2 j
// from bytes l < 16, 8 h + 2 j + 1 from l >= 16. A value times its sub-block's scale (at most
// 3 * 15) is still a signed byte, so one sdot chain per block gives S = sc_lo dot_lo + sc_hi
// dot_hi; the mins come off per block through the activations' per-16 sums (M = m_lo sum16_lo +
// m_hi sum16_hi), a_scale (d S - dmin M) as the reference sums it.
void DotQ2_K(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  const uint8x16_t three = vdupq_n_u8(3);
  for (int t = 0; t < ntok; ++t) {
    const int8_t* aq_row = a.q_row(token + t);
    const float* as_row = a.scale_row(token + t);
    const int16_t* sum16_row = a.sum16_row(token + t);
    float acc = 0;
    const uint8_t* sbp = w;
    for (int64_t sb = 0; sb < nblocks / 8; ++sb, sbp += quant::kQ2_KBlockBytes) {
      const float d = LoadHalf(sbp + quant::kQ2_KD), dmin = LoadHalf(sbp + quant::kQ2_KD + 2);
      for (int h = 0; h < 2; ++h) {
        const uint8x16_t r0 = vld1q_u8(sbp + quant::kQ2_KValues + 32 * h);
        const uint8x16_t r1 = vld1q_u8(sbp + quant::kQ2_KValues + 32 * h + 16);
        for (int j = 0; j < 4; ++j) {
          const int k = 8 * h + 2 * j;
          const int64_t b = sb * 8 + 4 * h + j;
          const int8x16_t down = vdupq_n_s8(static_cast<int8_t>(-2 * j));
          const uint8x16_t lo = vmulq_u8(vandq_u8(vshlq_u8(r0, down), three),
                                         vdupq_n_u8(static_cast<uint8_t>(sbp[k] & 0xF)));
          const uint8x16_t hi = vmulq_u8(vandq_u8(vshlq_u8(r1, down), three),
                                         vdupq_n_u8(static_cast<uint8_t>(sbp[k + 1] & 0xF)));
          const int8_t* aq = aq_row + b * 32;
          int32x4_t dot = vdotq_s32(vdupq_n_s32(0), vreinterpretq_s8_u8(lo), vld1q_s8(aq));
          dot = vdotq_s32(dot, vreinterpretq_s8_u8(hi), vld1q_s8(aq + 16));
          const int32_t scaled = vaddvq_s32(dot);
          const int32_t mins =
              (sbp[k] >> 4) * sum16_row[2 * b] + (sbp[k + 1] >> 4) * sum16_row[2 * b + 1];
          acc += as_row[b] * (d * static_cast<float>(scaled) - dmin * static_cast<float>(mins));
        }
      }
    }
    out[t] = acc;
  }
}

// IQ2_XXS / IQ2_XS / IQ2_S (Fmt: iq2::IQ2XXS, IQ2XS, IQ2S), one 32-value sub-block at a time:
// each half of 16 is two grid entries (magnitudes <= 43) with its 16 sign bits applied as
// signed bytes (a byte mask from vtst of each sign byte against its weight's bit; x ^ m - m
// negates where m is all ones), so sdot gives the half's signed sum, at most 16 * 43 * 127.
// S = m_lo dot_lo + m_hi dot_hi (multipliers 2 s + 1) in int32, then a_scale (d / 8 S) per
// sub-block as the reference sums it. A sub-block is decoded once for all ntok tokens.
template <class Fmt>
void DotIQ2(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
            int ntok, float* out) {
  float acc[4] = {0, 0, 0, 0};
  const uint8x16_t bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040201008040201ULL));
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += Fmt::kBlockBytes) {
    const float d = LoadHalf(w) * iq2::kUnit;
    for (int j = 0; j < 8; ++j) {
      const iq2::SubBlock s = Fmt::Decode(w, j);
      int8x16_t q[2];
      for (int h = 0; h < 2; ++h) {  // values 16 h .. 16 h + 15: grid entries 2 h, 2 h + 1
        const uint8x16_t mag =
            vcombine_u8(vcreate_u8(s.grid[2 * h]), vcreate_u8(s.grid[2 * h + 1]));
        const uint8x16_t bytes =
            vcombine_u8(vdup_n_u8(static_cast<uint8_t>(s.signs >> (16 * h))),
                        vdup_n_u8(static_cast<uint8_t>(s.signs >> (16 * h + 8))));
        const uint8x16_t neg = vtstq_u8(bytes, bit);
        q[h] = vreinterpretq_s8_u8(vsubq_u8(veorq_u8(mag, neg), neg));
      }
      const int32_t m_lo = iq2::MultiplierLow(s), m_hi = iq2::MultiplierHigh(s);
      const int64_t b = sb * 8 + j;
      for (int t = 0; t < ntok; ++t) {
        const int8_t* aq = a.q_row(token + t) + b * 32;
        int32x4_t sum = vmulq_n_s32(vdotq_s32(vdupq_n_s32(0), q[0], vld1q_s8(aq)), m_lo);
        sum = vmlaq_n_s32(sum, vdotq_s32(vdupq_n_s32(0), q[1], vld1q_s8(aq + 16)), m_hi);
        acc[t] += a.scale_row(token + t)[b] * (d * static_cast<float>(vaddvq_s32(sum)));
      }
    }
  }
  for (int t = 0; t < ntok; ++t) out[t] = acc[t];
}

void DotIQ2_XXS(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                int ntok, float* out) {
  DotIQ2<iq2::IQ2XXS>(w, nblocks, a, token, ntok, out);
}

void DotIQ2_XS(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               int ntok, float* out) {
  DotIQ2<iq2::IQ2XS>(w, nblocks, a, token, ntok, out);
}

void DotIQ2_S(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              int ntok, float* out) {
  DotIQ2<iq2::IQ2S>(w, nblocks, a, token, ntok, out);
}

// IQ1_S / IQ1_M (Fmt: iq1::IQ1S, IQ1M), one 32-value sub-block at a time: each half of 16 is two
// grid entries (int8 -1, 0, +1) made into q = 8 g +- 1 (a shift left by 3 plus the groups'
// shift bytes), so sdot with the activations gives the half's signed sum (at most 16 * 9 * 127).
// S = m_lo dot_lo + m_hi dot_hi in int32, then a_scale (d / 8 S) per sub-block as the reference
// sums it. A sub-block is decoded once for all ntok tokens.
template <class Fmt>
void DotIQ1(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
            int ntok, float* out) {
  float acc[4] = {0, 0, 0, 0};
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += Fmt::kBlockBytes) {
    const float d = Fmt::D(w) * iq1::kUnit;
    for (int j = 0; j < 8; ++j) {
      const iq1::SubBlock s = Fmt::Decode(w, j);
      int8x16_t q[2];
      for (int h = 0; h < 2; ++h) {  // values 16 h .. 16 h + 15: grid entries 2 h, 2 h + 1
        const int8x16_t g = vcombine_s8(vcreate_s8(s.grid[2 * h]), vcreate_s8(s.grid[2 * h + 1]));
        const int8x16_t shift = vcombine_s8(vcreate_s8(iq1::ShiftBytes(s.negative, 2 * h)),
                                            vcreate_s8(iq1::ShiftBytes(s.negative, 2 * h + 1)));
        q[h] = vaddq_s8(vshlq_n_s8(g, 3), shift);
      }
      const int64_t b = sb * 8 + j;
      for (int t = 0; t < ntok; ++t) {
        const int8_t* aq = a.q_row(token + t) + b * 32;
        int32x4_t sum = vmulq_n_s32(vdotq_s32(vdupq_n_s32(0), q[0], vld1q_s8(aq)), s.m_low);
        sum = vmlaq_n_s32(sum, vdotq_s32(vdupq_n_s32(0), q[1], vld1q_s8(aq + 16)), s.m_high);
        acc[t] += a.scale_row(token + t)[b] * (d * static_cast<float>(vaddvq_s32(sum)));
      }
    }
  }
  for (int t = 0; t < ntok; ++t) out[t] = acc[t];
}

void DotIQ1_S(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              int ntok, float* out) {
  DotIQ1<iq1::IQ1S>(w, nblocks, a, token, ntok, out);
}

void DotIQ1_M(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              int ntok, float* out) {
  DotIQ1<iq1::IQ1M>(w, nblocks, a, token, ntok, out);
}

// Q3_K super-block (110 bytes: 32 hmask bytes, 64 bytes of low bit pairs, 12 bytes of 6-bit
// scales, f16 d), as two halves of 128 values like Q6_K: in a half, group k (32 values,
// activation block b + k) has its low bits at shift 2 k of the half's 32 qs bytes and 4 taken
// off unless bit 4 half + k of hmask is set; its two 16-value sub-blocks have scales
// sc[8 half + 2k] and sc[8 half + 2k + 1]. Values are signed (-4..3) and fit sdot directly.
void DotQ3_K(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  const uint8x16_t m3 = vdupq_n_u8(3), one = vdupq_n_u8(1);
  const int8x16_t four = vdupq_n_s8(4);
  for (int t = 0; t < ntok; ++t) {
    const int8_t* aq_row = a.q_row(token + t);
    const float* as_row = a.scale_row(token + t);
    float acc = 0;
    const uint8_t* sbp = w;
    for (int64_t sb = 0; sb < nblocks / 8; ++sb, sbp += quant::kQ3_KBlockBytes) {
      const float d = LoadHalf(sbp + quant::kQ3_KD);
      int8_t sc[16];
      quant::Q3_KScales(sbp + quant::kQ3_KScales, sc);
      for (int half = 0; half < 2; ++half) {
        const int64_t b = sb * 8 + half * 4;
        for (int part = 0; part < 2; ++part) {  // values 0-15 and 16-31 of each group
          const uint8x16_t qs = vld1q_u8(sbp + quant::kQ3_KLow + 32 * half + 16 * part);
          const uint8x16_t hm = vld1q_u8(sbp + 16 * part);
          for (int k = 0; k < 4; ++k) {
            const int g = 4 * half + k;
            const uint8x16_t low =
                vandq_u8(vshlq_u8(qs, vdupq_n_s8(static_cast<int8_t>(-2 * k))), m3);
            const uint8x16_t high =
                vandq_u8(vshlq_u8(hm, vdupq_n_s8(static_cast<int8_t>(-g))), one);
            const int8x16_t q =
                vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low, vshlq_n_u8(high, 2))), four);
            const int8_t* aq = aq_row + (b + k) * 32 + 16 * part;
            const int32_t dot = vaddvq_s32(vdotq_s32(vdupq_n_s32(0), q, vld1q_s8(aq)));
            acc += static_cast<float>(dot) *
                   (d * static_cast<float>(sc[8 * half + 2 * k + part]) * as_row[b + k]);
          }
        }
      }
    }
    out[t] = acc;
  }
}

// Q4_K super-block (144 bytes: f16 d and dmin, 12 bytes of 6-bit scales and mins, 128 nibble
// bytes). 32-byte chunk c holds sub-block 2c in its low nibbles and 2c + 1 in its high ones,
// each one activation block; the mins come off through the activation block sums.
// Q5_K (kFifthBit; 176 bytes, 32 bytes of fifth bits before the nibbles): the same with bit j
// of qh[l] (l the chunk's byte) moved to bit 4 of sub-block j's values.
template <bool kFifthBit>
void DotKQuant(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               int ntok, float* out) {
  constexpr int kBlockBytes = kFifthBit ? quant::kQ5_KBlockBytes : quant::kQ4_KBlockBytes;
  constexpr int kNibbles = kFifthBit ? quant::kQ5_KLow : 16;
  const uint8x16_t m4 = vdupq_n_u8(0x0F), one = vdupq_n_u8(1);
  for (int t = 0; t < ntok; ++t) {
    const int8_t* aq_row = a.q_row(token + t);
    const float* as_row = a.scale_row(token + t);
    const int32_t* sum_row = a.sum_row(token + t);
    float acc = 0, mins = 0;
    const uint8_t* sbp = w;
    for (int64_t sb = 0; sb < nblocks / 8; ++sb, sbp += kBlockBytes) {
      const float d = LoadHalf(sbp), dmin = LoadHalf(sbp + 2);
      uint8_t sc[8], m[8];
      quant::Q4_KScales(sbp + 4, sc, m);
      // Fifth bits (Q5_K): bit j of qh[l] belongs to value l of sub-block j.
      const uint8x16_t h0 = kFifthBit ? vld1q_u8(sbp + quant::kQ5_KHigh) : vdupq_n_u8(0);
      const uint8x16_t h1 = kFifthBit ? vld1q_u8(sbp + quant::kQ5_KHigh + 16) : vdupq_n_u8(0);
      for (int c = 0; c < 4; ++c) {
        const uint8_t* qs = sbp + kNibbles + 32 * c;
        uint8x16_t lo0 = vandq_u8(vld1q_u8(qs), m4), lo1 = vandq_u8(vld1q_u8(qs + 16), m4);
        uint8x16_t hi0 = vshrq_n_u8(vld1q_u8(qs), 4), hi1 = vshrq_n_u8(vld1q_u8(qs + 16), 4);
        if constexpr (kFifthBit) {
          // Fifth bits of sub-blocks 2c (bit 2c of qh) and 2c + 1 (bit 2c + 1), at bit 4.
          auto fifth = [&](uint8x16_t h, int bit) {
            return vshlq_n_u8(vandq_u8(vshlq_u8(h, vdupq_n_s8(static_cast<int8_t>(-bit))), one), 4);
          };
          lo0 = vorrq_u8(lo0, fifth(h0, 2 * c));
          lo1 = vorrq_u8(lo1, fifth(h1, 2 * c));
          hi0 = vorrq_u8(hi0, fifth(h0, 2 * c + 1));
          hi1 = vorrq_u8(hi1, fifth(h1, 2 * c + 1));
        }
        const int64_t b = sb * 8 + 2 * c;
        const int8_t* aq = aq_row + b * 32;
        int32x4_t lo = vdotq_s32(vdupq_n_s32(0), vreinterpretq_s8_u8(lo0), vld1q_s8(aq));
        lo = vdotq_s32(lo, vreinterpretq_s8_u8(lo1), vld1q_s8(aq + 16));
        int32x4_t hi = vdotq_s32(vdupq_n_s32(0), vreinterpretq_s8_u8(hi0), vld1q_s8(aq + 32));
        hi = vdotq_s32(hi, vreinterpretq_s8_u8(hi1), vld1q_s8(aq + 48));
        acc += static_cast<float>(vaddvq_s32(lo)) * (d * sc[2 * c] * as_row[b]) +
               static_cast<float>(vaddvq_s32(hi)) * (d * sc[2 * c + 1] * as_row[b + 1]);
        mins += dmin * (m[2 * c] * as_row[b] * static_cast<float>(sum_row[b]) +
                        m[2 * c + 1] * as_row[b + 1] * static_cast<float>(sum_row[b + 1]));
      }
    }
    out[t] = acc - mins;
  }
}

void DotQ4_K(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  DotKQuant<false>(w, nblocks, a, token, ntok, out);
}

void DotQ5_K(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  DotKQuant<true>(w, nblocks, a, token, ntok, out);
}

// Q5_1: x = d q + m per 32-value block, q in [0, 31]: nibbles in element order (low nibbles
// elements 0-15, high 16-31), fifth bits (qh, bit e for element e) spread to bytes by a table
// lookup of qh's bytes and a bit test. Per block a_scale (d dot + m sum(a)). Q4_1 (no
// kFifthBit): the same without qh, its nibbles at byte 4.
template <bool kFifthBit>
void DotAffine(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               int ntok, float* out) {
  constexpr int kBytes = kFifthBit ? quant::kQ5_1BlockBytes : quant::kQ4_1BlockBytes;
  const uint8x16_t m4 = vdupq_n_u8(0x0F), bit4 = vdupq_n_u8(0x10);
  static const uint8_t kBits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  static const uint8_t kLowBytes[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
  const uint8x16_t bits = vld1q_u8(kBits), low_bytes = vld1q_u8(kLowBytes);
  const uint8x16_t high_bytes = vaddq_u8(low_bytes, vdupq_n_u8(2));
  for (int t = 0; t < ntok; ++t) {
    const int8_t* aq_row = a.q_row(token + t);
    const float* as_row = a.scale_row(token + t);
    const int32_t* sum_row = a.sum_row(token + t);
    float acc = 0, mins = 0;
    const uint8_t* bp = w;
    for (int64_t b = 0; b < nblocks; ++b, bp += kBytes) {
      const float d = LoadHalf(bp), m = LoadHalf(bp + 2);
      uint8x16_t fifth_lo = vdupq_n_u8(0), fifth_hi = vdupq_n_u8(0);
      if constexpr (kFifthBit) {
        uint32_t qh32;
        std::memcpy(&qh32, bp + 4, 4);
        const uint8x16_t qh = vreinterpretq_u8_u32(vdupq_n_u32(qh32));
        fifth_lo = vandq_u8(vtstq_u8(vqtbl1q_u8(qh, low_bytes), bits), bit4);
        fifth_hi = vandq_u8(vtstq_u8(vqtbl1q_u8(qh, high_bytes), bits), bit4);
      }
      const uint8x16_t qs = vld1q_u8(bp + (kFifthBit ? 8 : 4));
      const int8x16_t lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(qs, m4), fifth_lo));
      const int8x16_t hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(qs, 4), fifth_hi));
      const int8_t* aq = aq_row + b * 32;
      int32x4_t dot = vdotq_s32(vdupq_n_s32(0), lo, vld1q_s8(aq));
      dot = vdotq_s32(dot, hi, vld1q_s8(aq + 16));
      acc += static_cast<float>(vaddvq_s32(dot)) * (d * as_row[b]);
      mins += m * as_row[b] * static_cast<float>(sum_row[b]);
    }
    out[t] = acc + mins;
  }
}

void DotQ5_1(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  DotAffine<true>(w, nblocks, a, token, ntok, out);
}

void DotQ4_1(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  DotAffine<false>(w, nblocks, a, token, ntok, out);
}

// IQ4_XS: per 32-value sub-block j, d (ls_j - 32) times the table's levels of its nibbles,
// looked up as signed bytes (tbl) for the signed dot products.
void DotIQ4_XS(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               int ntok, float* out) {
  const int8x16_t levels = vld1q_s8(quant::kIQ4NLValues);
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
  for (int t = 0; t < ntok; ++t) {
    const int8_t* aq_row = a.q_row(token + t);
    const float* as_row = a.scale_row(token + t);
    float acc = 0;
    const uint8_t* sbp = w;
    for (int64_t sb = 0; sb < nblocks / 8; ++sb, sbp += quant::kIQ4_XSBlockBytes) {
      const float d = LoadHalf(sbp);
      uint8_t ls[8];
      quant::IQ4_XSScales(sbp, ls);
      for (int j = 0; j < 8; ++j) {
        const uint8x16_t qs = vld1q_u8(sbp + 8 + 16 * j);
        const int64_t b = sb * 8 + j;
        const int8_t* aq = aq_row + b * 32;
        int32x4_t dot =
            vdotq_s32(vdupq_n_s32(0), vqtbl1q_s8(levels, vandq_u8(qs, m4)), vld1q_s8(aq));
        dot = vdotq_s32(dot, vqtbl1q_s8(levels, vshrq_n_u8(qs, 4)), vld1q_s8(aq + 16));
        acc +=
            static_cast<float>(vaddvq_s32(dot)) * (d * static_cast<float>(ls[j] - 32) * as_row[b]);
      }
    }
    out[t] = acc;
  }
}

// E8M0 byte e as f32 2^(e - 128) (quant::E8M0ToF32Half).
inline float E8M0Half(uint8_t e) {
  const uint32_t bits = e < 2 ? uint32_t{0x00200000} << e : static_cast<uint32_t>(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// IQ4_NL (f16 d first) and MXFP4 (an E8M0 byte first): per block, its scale times the table's
// levels of its nibbles (as DotIQ4_XS's sub-blocks).
template <bool kMXFP4>
void DotNonLinear(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                  int ntok, float* out) {
  const int8x16_t levels = vld1q_s8(kMXFP4 ? quant::kMXFP4Values : quant::kIQ4NLValues);
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
  constexpr int kBlockBytes = kMXFP4 ? quant::kMXFP4BlockBytes : quant::kIQ4_NLBlockBytes;
  constexpr int kData = kMXFP4 ? 1 : 2;
  for (int t = 0; t < ntok; ++t) {
    const int8_t* aq = a.q_row(token + t);
    const float* as = a.scale_row(token + t);
    float acc = 0;
    const uint8_t* block = w;
    for (int64_t b = 0; b < nblocks; ++b, block += kBlockBytes, aq += 32) {
      const uint8x16_t qs = vld1q_u8(block + kData);
      int32x4_t dot = vdotq_s32(vdupq_n_s32(0), vqtbl1q_s8(levels, vandq_u8(qs, m4)), vld1q_s8(aq));
      dot = vdotq_s32(dot, vqtbl1q_s8(levels, vshrq_n_u8(qs, 4)), vld1q_s8(aq + 16));
      const float d = kMXFP4 ? E8M0Half(block[0]) : LoadHalf(block);
      acc += static_cast<float>(vaddvq_s32(dot)) * (d * as[b]);
    }
    out[t] = acc;
  }
}

// 16 sign bits (bit e: element e negative) as bytes 0xFF (set) or 0.
inline int8x16_t SignMask16(uint32_t bits) {
  static constexpr uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t spread = vcombine_u8(vdup_n_u8(static_cast<uint8_t>(bits)),
                                        vdup_n_u8(static_cast<uint8_t>(bits >> 8)));
  return vreinterpretq_s8_u8(vtstq_u8(spread, vld1q_u8(kBit)));
}

// Magnitudes of 4 grid entries (one uint32 each, 4 consecutive values) as 16 bytes.
inline int8x16_t GridBytes(const uint32_t* grid, const int* index) {
  const uint32_t entries[4] = {grid[index[0]], grid[index[1]], grid[index[2]], grid[index[3]]};
  return vreinterpretq_s8_u32(vld1q_u32(entries));
}

// The IQ3 codebook formats, one 32-value sub-block j of a 256-value block at a time: its 8 grid
// indices, 32 sign bits and odd multiplier.
struct IQ3_SSubBlocks {
  static constexpr int kBlockBytes = quant::kIQ3_SBlockBytes;
  static constexpr float kUnit = 1.0f;
  static constexpr const uint32_t* Grid() { return quant::kIQ3SGrid.data(); }
  static void Indices(const uint8_t* block, int j, int* index) {
    const int high = block[quant::kIQ3_SHigh + j];  // bit 8 of index i at bit i
    for (int i = 0; i < 8; ++i) index[i] = block[2 + 8 * j + i] | (((high >> i) & 1) << 8);
  }
  static uint32_t SignBits(const uint8_t* block, int j) { return iq3::IQ3S::SignBits(block, j); }
  static int Multiplier(const uint8_t* block, int j) { return iq3::IQ3S::Multiplier(block, j); }
};

struct IQ3_XXSSubBlocks {
  static constexpr int kBlockBytes = quant::kIQ3_XXSBlockBytes;
  static constexpr float kUnit = 0.25f;
  static constexpr const uint32_t* Grid() { return quant::kIQ3XXSGrid.data(); }
  static void Indices(const uint8_t* block, int j, int* index) {
    for (int i = 0; i < 8; ++i) index[i] = block[2 + 8 * j + i];
  }
  static uint32_t SignBits(const uint8_t* block, int j) { return iq3::IQ3XXS::SignBits(block, j); }
  static int Multiplier(const uint8_t* block, int j) { return iq3::IQ3XXS::Multiplier(block, j); }
};

// Per sub-block: the magnitudes with their signs applied ((m ^ s) - s, exact: |m| <= 62) as two
// vectors of 16, decoded once and dotted (sdot) with each token's 32 activations; the int32 sum
// scaled by d unit m a_scale. Up to 16 tokens (the row dots pass 4, prefill's tiles 16).
template <class SubBlocks>
void DotCodebook(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                 int ntok, float* out) {
  float acc[16] = {};
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += SubBlocks::kBlockBytes) {
    const float d = LoadHalf(w) * SubBlocks::kUnit;
    for (int j = 0; j < 8; ++j) {
      int index[8];
      SubBlocks::Indices(w, j, index);
      const uint32_t bits = SubBlocks::SignBits(w, j);
      const int8x16_t neg_lo = SignMask16(bits), neg_hi = SignMask16(bits >> 16);
      const int8x16_t lo = vsubq_s8(veorq_s8(GridBytes(SubBlocks::Grid(), index), neg_lo), neg_lo);
      const int8x16_t hi =
          vsubq_s8(veorq_s8(GridBytes(SubBlocks::Grid(), index + 4), neg_hi), neg_hi);
      const float dl = d * static_cast<float>(SubBlocks::Multiplier(w, j));
      const int64_t b = sb * 8 + j;
      for (int t = 0; t < ntok; ++t) {
        const int8_t* aq = a.q_row(token + t) + b * 32;
        const int32x4_t dot =
            vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo, vld1q_s8(aq)), hi, vld1q_s8(aq + 16));
        acc[t] += static_cast<float>(vaddvq_s32(dot)) * (dl * a.scale_row(token + t)[b]);
      }
    }
  }
  for (int t = 0; t < ntok; ++t) out[t] = acc[t];
}

void DotCodebookTile(DType type, const uint8_t* w, int64_t nblocks, const QuantizedActivations& a,
                     int64_t token, int ntok, float* out) {
  if (type == DType::kIQ3_S) return DotCodebook<IQ3_SSubBlocks>(w, nblocks, a, token, ntok, out);
  if (type == DType::kIQ3_XXS) {
    return DotCodebook<IQ3_XXSSubBlocks>(w, nblocks, a, token, ntok, out);
  }
  const KernelTable& table = Table();  // the IQ2 formats' row dots, 4 tokens a call
  const RowDotFn dot = type == DType::kIQ1_S     ? table.dot_iq1_s
                       : type == DType::kIQ1_M   ? table.dot_iq1_m
                       : type == DType::kIQ2_XXS ? table.dot_iq2_xxs
                       : type == DType::kIQ2_XS  ? table.dot_iq2_xs
                                                 : table.dot_iq2_s;
  for (int t = 0; t < ntok; t += 4) dot(w, nblocks, a, token + t, std::min(4, ntok - t), out + t);
}

void DotQ4_0(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  for (int t = 0; t < ntok; ++t) {
    const int8_t* q = a.q_row(token + t);
    const float* s = a.scale_row(token + t);
    float total = 0;
    const uint8_t* b = w;
    for (int64_t i = 0; i < nblocks; ++i, b += quant::kQ4_0BlockBytes, q += 32) {
      int8x16_t lo, hi;
      ExpandQ4(b + 2, &lo, &hi);
      total += LoadHalf(b) * s[i] * static_cast<float>(BlockDot(lo, hi, q));
    }
    out[t] = total;
  }
}

// Repacked Q4_0 (DType::kQ4_0R): per group, 64 bytes whose low nibbles are blocks 0-1 and
// high nibbles blocks 2-3, in element order.
void DotQ4_0R(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              int ntok, float* out) {
  const int64_t groups = nblocks / 4;
  for (int t = 0; t < ntok; ++t) {
    const int8_t* q = a.q_row(token + t);
    const float* s = a.scale_row(token + t);
    const float* off = a.offset_row(token + t);
    float total = 0;
    const uint8_t* g = w;
    for (int64_t gi = 0; gi < groups; ++gi, g += 72, q += 128) {
      int32x4_t dp[4];
      for (int b = 0; b < 4; ++b) dp[b] = vdupq_n_s32(0);
      for (int c = 0; c < 4; ++c) {  // four 16-byte chunks of the 64 data bytes
        const uint8x16_t raw = vld1q_u8(g + 8 + 16 * c);
        const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0F)));
        const int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(raw, 4));
        // Chunk c covers elements 16c..16c+15 of blocks 0-1 (lo) and of blocks 2-3 (hi).
        dp[c / 2] = vdotq_s32(dp[c / 2], lo, vld1q_s8(q + 16 * c));
        dp[2 + c / 2] = vdotq_s32(dp[2 + c / 2], hi, vld1q_s8(q + 64 + 16 * c));
      }
      for (int b = 0; b < 4; ++b) {
        const float dw = LoadHalf(g + 2 * b);
        total += dw * (s[4 * gi + b] * static_cast<float>(vaddvq_s32(dp[b])) - off[4 * gi + b]);
      }
    }
    const int64_t b0 = 4 * groups;
    if (nblocks > b0) {
      total += DotQ4_0Reference(g, a.q_row(token + t) + b0 * 32, s + b0, a.sum_row(token + t) + b0,
                                nblocks - b0);
    }
    out[t] = total;
  }
}

void Bf16ToF32(const uint8_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    uint16x4_t h;
    std::memcpy(&h, src + 2 * i, 8);
    vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(h, 16)));
  }
  ReferenceTable().bf16_to_f32(src + 2 * i, n - i, dst + i);  // the tail
}

void F16ToF32(const uint8_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float16x4_t h;
    std::memcpy(&h, src + 2 * i, 8);
    vst1q_f32(dst + i, vcvt_f32_f16(h));
  }
  ReferenceTable().f16_to_f32(src + 2 * i, n - i, dst + i);  // the tail
}

void F32ToF16(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    // FPCR's default rounding: to nearest, ties to even.
    const float16x4_t h = vcvt_f16_f32(vld1q_f32(src + i));
    std::memcpy(dst + i, &h, 8);
  }
  ReferenceTable().f32_to_f16(src + i, n - i, dst + i);  // the tail
}

using Arch = xsimd::neon64;

}  // namespace

const KernelTable& Table() {
  static const KernelTable table = {
      .isa = "neon-dotprod",
      .dot_q8_0 = DotQ8_0,
      .dot_q4_0 = DotQ4_0,
      .dot_q4_0r = DotQ4_0R,
      .dot_q6_k = DotQ6_K,
      .dot_q4_k = DotQ4_K,
      .dot_q5_k = DotQ5_K,
      .dot_q5_1 = DotQ5_1,
      .dot_iq4_xs = DotIQ4_XS,
      .dot_iq4_nl = DotNonLinear<false>,
      .dot_mxfp4 = DotNonLinear<true>,
      .dot_q3_k = DotQ3_K,
      .dot_q4_1 = DotQ4_1,
      .dot_q2_k = DotQ2_K,
      .dot_iq2_xxs = DotIQ2_XXS,
      .dot_iq2_xs = DotIQ2_XS,
      .dot_iq2_s = DotIQ2_S,
      .dot_iq3_xxs = DotCodebook<IQ3_XXSSubBlocks>,
      .dot_iq3_s = DotCodebook<IQ3_SSubBlocks>,
      .dot_iq1_s = DotIQ1_S,
      .dot_iq1_m = DotIQ1_M,
      .dot_codebook_tile = DotCodebookTile,
      .gemm_codebook_x16 = nullptr,
      .gemm_codebook_x16_takes = nullptr,
      .gemm_q4_0r = nullptr,
      .dot_q8_0r = ReferenceTable().dot_q8_0r,
      .gemm_q8_0r = nullptr,
      .gemm_q4_0x16 = nullptr,
      .gemm_q8_0x16 = nullptr,
      .gemm_q4_0x16_pair = nullptr,
      .gemm_q8_0x16_pair = nullptr,
      .gemm_q4_kx16 = nullptr,
      .gemm_q6_kx16 = nullptr,
      .gemm_q5_kx16 = nullptr,    // plain Q5_K rows (dot_q5_k)
      .gemm_iq4_xsx16 = nullptr,  // plain IQ4_XS rows (dot_iq4_xs)
      .gemm_q3_kx16 = nullptr,    // plain Q3_K rows (dot_q3_k)
      .gemm_q4_1x16 = nullptr,    // plain Q4_1 rows (dot_q4_1)
      .gemm_q5_1x16 = nullptr,    // plain Q5_1 rows (dot_q5_1)
      .gemm_q2_kx16 = nullptr,    // plain Q2_K rows (dot_q2_k)
      .gemm_iq4_nlx16 = nullptr,  // plain IQ4_NL rows (dot_iq4_nl)
      .gemm_iq4_nlx16_pair = nullptr,
      .gemm_mxfp4x16 = nullptr,  // plain MXFP4 rows (dot_mxfp4)
      .gemm_mxfp4x16_pair = nullptr,
      .quantize_blocks = QuantizeActivationBlocks,
      GEMMA4_FLOAT_KERNEL_ROWS(Arch),
      .bf16_to_f32 = Bf16ToF32,
      .f16_to_f32 = F16ToF32,
      .f32_to_f16 = F32ToF16,
      .gemm_f32_mr = 8,
      .gemm_f32_nr = 12,
      .gemm_f32_packed = simd::GemmPacked<Arch, 8, 3>,
      .gemm_f16_packed = simd::GemmPacked<Arch, 8, 3, simd::F16Weights>,
      .gemm_bf16_packed = simd::GemmPacked<Arch, 8, 3, simd::Bf16Weights>,
      .pack_gemm_tokens = PackGemmTokens,
      .pack_gemm_panel = PackGemmPanel};
  return table;
}

}  // namespace gemma4::kernels::neon

namespace gemma4::kernels {

const KernelTable& NeonDotprodTable() { return neon::Table(); }

}  // namespace gemma4::kernels
