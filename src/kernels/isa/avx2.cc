// AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; only called after
// CpuSupports(Isa::kAvx2).
// Everything this unit defines lives in namespace avx2 (float_kernels-inl.h opens it from
// this macro), so no other object can share its symbols (see CMakeLists.txt: -fno-weak).
#define GEMMA4_ISA_NAMESPACE avx2
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "kernels/isa/codebook-inl.h"
#include "kernels/isa/float_kernels-inl.h"
#include "kernels/kernels.h"
#include "kernels/pack/pack.h"
#include "kernels/ref/reference_dots.h"
#include "quant/iq_grids.h"

namespace gemma4::kernels::avx2 {

const KernelTable& Table();

namespace {

inline float LoadHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// 32 unsigned nibbles of a Q4_0 block: low nibbles are elements 0..15, high ones 16..31.
inline __m256i ExpandQ4(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(raw, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
  return _mm256_set_m128i(hi, lo);
}

// Sum of products of unsigned bytes u and signed bytes s, as 8 int32 lanes.
inline __m256i DotU8S8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

template <int NT>
void DotQ4_0T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  __m256 acc[NT];
  float corr[NT];
  const int8_t* aq[NT];
  const float* as[NT];
  const int32_t* asum[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm256_setzero_ps();
    corr[t] = 0;
    aq[t] = a.q_row(token + t);
    as[t] = a.scale_row(token + t);
    asum[t] = a.sum_row(token + t);
  }
  for (int64_t b = 0; b < nblocks; ++b, w += quant::kQ4_0BlockBytes) {
    const float dw = LoadHalf(w);
    const __m256i wq = ExpandQ4(w + 2);
    for (int t = 0; t < NT; ++t) {
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq[t] + b * 32));
      const float d = dw * as[t][b];
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DotU8S8(wq, av)), _mm256_set1_ps(d), acc[t]);
      corr[t] += d * static_cast<float>(8 * asum[t][b]);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = HorizontalSum(acc[t]) - corr[t];
}

template <int NT>
void DotQ8_0T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  __m256 acc[NT];
  const int8_t* aq[NT];
  const float* as[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm256_setzero_ps();
    aq[t] = a.q_row(token + t);
    as[t] = a.scale_row(token + t);
  }
  for (int64_t b = 0; b < nblocks; ++b, w += quant::kQ8_0BlockBytes) {
    const float dw = LoadHalf(w);
    const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2));
    const __m256i wabs = _mm256_sign_epi8(wq, wq);  // |w| as unsigned
    for (int t = 0; t < NT; ++t) {
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq[t] + b * 32));
      const __m256i asg = _mm256_sign_epi8(av, wq);  // a * sign(w)
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DotU8S8(wabs, asg)),
                               _mm256_set1_ps(dw * as[t][b]), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = HorizontalSum(acc[t]);
}

// Repacked Q4_0: 32 bytes of a group hold block 0 (low nibbles) and block 2 (high nibbles);
// the next 32 hold blocks 1 and 3.
template <int NT>
void DotQ4_0RT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               float* out) {
  const int64_t groups = nblocks / 4;
  __m256 acc[NT];
  __m128 corr[NT];
  const int8_t* aq[NT];
  const float* as[NT];
  const float* aoff[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm256_setzero_ps();
    corr[t] = _mm_setzero_ps();
    aq[t] = a.q_row(token + t);
    as[t] = a.scale_row(token + t);
    aoff[t] = a.offset_row(token + t);
  }
  const __m256i mask = _mm256_set1_epi8(0x0F);
  const uint8_t* g = w;
  for (int64_t gi = 0; gi < groups; ++gi, g += 72) {
    const __m128 dw4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(g)));
    alignas(16) float dw[4];
    _mm_store_ps(dw, dw4);
    const __m256i b01 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 8));
    const __m256i b23 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 40));
    const __m256i w0 = _mm256_and_si256(b01, mask);
    const __m256i w2 = _mm256_and_si256(_mm256_srli_epi16(b01, 4), mask);
    const __m256i w1 = _mm256_and_si256(b23, mask);
    const __m256i w3 = _mm256_and_si256(_mm256_srli_epi16(b23, 4), mask);
    for (int t = 0; t < NT; ++t) {
      const __m256i* qv = reinterpret_cast<const __m256i*>(aq[t] + gi * 128);
      const float* sc = as[t] + gi * 4;
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DotU8S8(w0, _mm256_loadu_si256(qv))),
                               _mm256_set1_ps(dw[0] * sc[0]), acc[t]);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DotU8S8(w1, _mm256_loadu_si256(qv + 1))),
                               _mm256_set1_ps(dw[1] * sc[1]), acc[t]);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DotU8S8(w2, _mm256_loadu_si256(qv + 2))),
                               _mm256_set1_ps(dw[2] * sc[2]), acc[t]);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DotU8S8(w3, _mm256_loadu_si256(qv + 3))),
                               _mm256_set1_ps(dw[3] * sc[3]), acc[t]);
      corr[t] = _mm_fmadd_ps(dw4, _mm_loadu_ps(aoff[t] + gi * 4), corr[t]);
    }
  }
  const int64_t tail = nblocks - 4 * groups;
  for (int t = 0; t < NT; ++t) {
    __m128 c = corr[t];
    c = _mm_add_ps(c, _mm_movehl_ps(c, c));
    c = _mm_add_ss(c, _mm_shuffle_ps(c, c, 1));
    float total = HorizontalSum(acc[t]) - _mm_cvtss_f32(c);
    if (tail > 0) {
      const int64_t b0 = 4 * groups;
      total += DotQ4_0Reference(g, aq[t] + b0 * 32, as[t] + b0, a.sum_row(token + t) + b0, tail);
    }
    out[t] = total;
  }
}

// Byte shuffles putting byte 2v of 16 per-16 scales in bytes 0-7 and byte 2v + 1 in bytes
// 8-15, v = 0..7: the scales of the two 16-value halves of 32-value block v (Q6_K, Q2_K).
alignas(16) constexpr uint8_t kScalePairs[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
    {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},
    {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13},
    {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15}};

inline __m128i ScalePairShuffle(int v) {
  return _mm_load_si128(reinterpret_cast<const __m128i*>(kScalePairs[v]));
}

// The 16 sub-block scales of a Q3_K block (12 packed bytes at `packed`) minus 32, as int8 in
// element order: low nibbles from bytes 0-7 (scales 0-7 low, 8-15 high), top bit pairs from
// bytes 8-11 (scale k's at shift 2 (k / 4) of byte 8 + k % 4, one variable shift per dword).
inline __m128i Q3_KScalesI8(const uint8_t* packed) {
  const __m128i m4 = _mm_set1_epi8(0x0F), m3 = _mm_set1_epi8(3);
  const __m128i low = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed));
  const __m128i nibbles =
      _mm_unpacklo_epi64(_mm_and_si128(low, m4), _mm_and_si128(_mm_srli_epi16(low, 4), m4));
  int32_t top_bytes;
  std::memcpy(&top_bytes, packed + 8, 4);
  const __m128i top =
      _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32(top_bytes), _mm_setr_epi32(0, 2, 4, 6)), m3);
  return _mm_sub_epi8(_mm_or_si128(nibbles, _mm_slli_epi16(top, 4)), _mm_set1_epi8(32));
}

// The two K-quants with int8 scales per 16 values and values stored with an offset: Q6_K
// (6-bit values, + 32) and Q3_K (3-bit values, + 4 unless the hmask bit is set, here stored
// as low bits + 4 * hmask bit so that the offset is always 4).
struct Q6KRows {
  static constexpr int kBlockBytes = quant::kQ6_KBlockBytes, kOffset = 32;
  static float Scale(const uint8_t* w) { return LoadHalf(w + 208); }
  static __m128i Scales(const uint8_t* w) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 192));
  }
  // Half `half` (128 values) as four 32-byte vectors of unsigned values in element order.
  static void Unpack(const uint8_t* w, int half, __m256i (&q)[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    const uint8_t* ql = w + 64 * half;
    const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
    const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 128 + 32 * half));
    q[0] =
        _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
  }
};

struct Q3KRows {
  static constexpr int kBlockBytes = quant::kQ3_KBlockBytes, kOffset = 4;
  static float Scale(const uint8_t* w) { return LoadHalf(w + quant::kQ3_KD); }
  static __m128i Scales(const uint8_t* w) { return Q3_KScalesI8(w + quant::kQ3_KScales); }
  // Group g = 4 half + k: low bit pair at shift 2 k of the half's 32 qs bytes, hmask bit g
  // moved to bit 2 (16-bit shifts; the bits crossing bytes are masked off).
  static void Unpack(const uint8_t* w, int half, __m256i (&q)[4]) {
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    const __m256i qs =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + quant::kQ3_KLow + 32 * half));
    for (int k = 0; k < 4; ++k) {
      const int g = 4 * half + k;
      const __m256i high = g < 2 ? _mm256_slli_epi16(hm, 2 - g) : _mm256_srli_epi16(hm, g - 2);
      q[k] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qs, 2 * k), m3),
                             _mm256_and_si256(high, m4));
    }
  }
};

// Q6_K and Q3_K, 32 values per vector (same unpacking as the AVX-512 kernels). maddubs of the
// unsigned values (stored + offset) with the activations gives int16 pair sums; one vpmaddwd
// against the sub-block scales (lanes 0-7: sub-block 2v, 8-15: 2v + 1) sums them to int32
// already scaled, so each vector costs maddubs + madd + convert + fma. The offset comes off
// once per super-block: offset * sum over sub-blocks of scale * (sum of those 16
// activations), from the activations' per-16 sums (QuantizedActivations::sum16).
template <class Fmt, int NT>
void DotScaled16T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                  float* out) {
  __m256 acc[NT], offset[NT];
  for (int t = 0; t < NT; ++t) acc[t] = offset[t] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += Fmt::kBlockBytes) {
    simd::PrefetchAhead<Fmt::kBlockBytes>(w);
    const float d = Fmt::Scale(w);
    const __m128i sc = Fmt::Scales(w);
    const __m256i sc16 = _mm256_cvtepi8_epi16(sc);
    for (int t = 0; t < NT; ++t) {
      // Per 32-value block k: scale[2k] * sum16[2k] + scale[2k + 1] * sum16[2k + 1].
      const __m256i s16 =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.sum16_row(token + t) + sb * 16));
      const __m256 das =
          _mm256_mul_ps(_mm256_set1_ps(d), _mm256_loadu_ps(a.scale_row(token + t) + sb * 8));
      offset[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(sc16, s16)), das, offset[t]);
    }
    for (int half = 0; half < 2; ++half) {
      __m256i q[4], scale[4];
      Fmt::Unpack(w, half, q);
      for (int v = 0; v < 4; ++v) {  // vector v holds sub-blocks 2v, 2v + 1 of this half
        scale[v] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, ScalePairShuffle(4 * half + v)));
      }
      const int64_t b = sb * 8 + half * 4;  // first activation block of this half
      for (int t = 0; t < NT; ++t) {
        const int8_t* aq = a.q_row(token + t) + b * 32;
        const float* as = a.scale_row(token + t) + b;
        for (int v = 0; v < 4; ++v) {
          const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq + 32 * v));
          const __m256i dp = _mm256_madd_epi16(_mm256_maddubs_epi16(q[v], av), scale[v]);
          acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_set1_ps(d * as[v]), acc[t]);
        }
      }
    }
  }
  for (int t = 0; t < NT; ++t) {
    out[t] = HorizontalSum(acc[t]) - static_cast<float>(Fmt::kOffset) * HorizontalSum(offset[t]);
  }
}

template <int NT>
void DotQ6_KT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  DotScaled16T<Q6KRows, NT>(w, nblocks, a, token, out);
}

template <int NT>
void DotQ3_KT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  DotScaled16T<Q3KRows, NT>(w, nblocks, a, token, out);
}

// Q2_K: per 128-value half h, the 32 bytes qs[32 h ..] hold four activation blocks (block
// 4 h + j at bits 2 j .. 2 j + 1 of each byte): one shift and mask each, in element order.
// maddubs of the unsigned values (0..3) with the activations gives int16 pair sums, and one
// vpmaddwd against the sub-block scales (lanes 0-7: the block's first 16 values, 8-15: the
// other 16; kScalePairs) sums them to int32 already scaled, as in Q6_K. The mins come off once
// per super-block: dmin times the sum over blocks of a_scale * (m_2b sum16_2b + m_2b+1
// sum16_2b+1), one vpmaddwd of the 16 mins with the 16 per-16 activation sums.
template <int NT>
void DotQ2_KT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  __m256 acc[NT], mins[NT];
  for (int t = 0; t < NT; ++t) acc[t] = mins[t] = _mm256_setzero_ps();
  const __m256i three = _mm256_set1_epi8(3);
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += quant::kQ2_KBlockBytes) {
    simd::PrefetchAhead<quant::kQ2_KBlockBytes>(w);
    const float d = LoadHalf(w + quant::kQ2_KD), dmin = LoadHalf(w + quant::kQ2_KD + 2);
    const __m128i scale_bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
    const __m128i sc = _mm_and_si128(scale_bytes, low4);
    const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(scale_bytes, 4), low4));
    for (int t = 0; t < NT; ++t) {
      const __m256i s16 =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.sum16_row(token + t) + sb * 16));
      const __m256 dmin_as =
          _mm256_mul_ps(_mm256_set1_ps(dmin), _mm256_loadu_ps(a.scale_row(token + t) + sb * 8));
      mins[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(m16, s16)), dmin_as, mins[t]);
    }
    for (int half = 0; half < 2; ++half) {
      const __m256i raw =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + quant::kQ2_KValues + 32 * half));
      __m256i q[4], scale[4];
      for (int j = 0; j < 4; ++j) {
        q[j] = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * j), three);
        scale[j] = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sc, ScalePairShuffle(4 * half + j)));
      }
      const int64_t b = sb * 8 + half * 4;  // first activation block of this half
      for (int t = 0; t < NT; ++t) {
        const int8_t* aq = a.q_row(token + t) + b * 32;
        const float* as = a.scale_row(token + t) + b;
        for (int j = 0; j < 4; ++j) {
          const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq + 32 * j));
          const __m256i dp = _mm256_madd_epi16(_mm256_maddubs_epi16(q[j], av), scale[j]);
          acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_set1_ps(d * as[j]), acc[t]);
        }
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = HorizontalSum(acc[t]) - HorizontalSum(mins[t]);
}

// IQ2_XXS / IQ2_XS / IQ2_S (Fmt: iq2::IQ2XXS, IQ2XS, IQ2S), one 32-value sub-block at a time:
// its four grid entries make one vector of unsigned magnitudes (<= 43) in element order, and
// its 32 sign bits become bytes -1 / +1 (byte e: bit e of the mask, from dword lane e / 8 of a
// broadcast) for vpsignb on the activations (never -128: they are scaled to +-127). maddubs
// then gives int16 pair sums (at most 2 * 43 * 127) and vpmaddwd against the halves'
// multipliers 2 s + 1 (lanes 0-7: values 0-15, 8-15: values 16-31) sums them to int32 already
// scaled; each sub-block is scaled by d / 8 times its activation scale. A sub-block's weights
// are decoded once for all NT tokens.
template <class Fmt, int NT>
void DotIQ2T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             float* out) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  // Byte e of the vector <- byte e / 8 of the mask (every 128-bit lane has all four), then the
  // bit of weight e within it.
  const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                          2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  const __m256i one = _mm256_set1_epi8(1);
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += Fmt::kBlockBytes) {
    simd::PrefetchAhead<Fmt::kBlockBytes>(w);
    const float d = LoadHalf(w) * iq2::kUnit;
    for (int j = 0; j < 8; ++j) {
      const iq2::SubBlock s = Fmt::Decode(w, j);
      const __m256i grid =
          _mm256_set_epi64x(static_cast<int64_t>(s.grid[3]), static_cast<int64_t>(s.grid[2]),
                            static_cast<int64_t>(s.grid[1]), static_cast<int64_t>(s.grid[0]));
      const __m256i sign_bits = _mm256_and_si256(
          _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(s.signs)), spread), bit);
      const __m256i sign = _mm256_or_si256(_mm256_cmpeq_epi8(sign_bits, bit), one);
      const __m256i m =
          _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(iq2::MultiplierHigh(s))),
                           _mm_set1_epi16(static_cast<int16_t>(iq2::MultiplierLow(s))));
      const int64_t b = sb * 8 + j;
      for (int t = 0; t < NT; ++t) {
        const __m256i x =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q_row(token + t) + b * 32));
        const __m256i dp =
            _mm256_madd_epi16(_mm256_maddubs_epi16(grid, _mm256_sign_epi8(x, sign)), m);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp),
                                 _mm256_set1_ps(d * a.scale_row(token + t)[b]), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = HorizontalSum(acc[t]);
}

template <int NT>
void DotIQ2_XXST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                 float* out) {
  DotIQ2T<iq2::IQ2XXS, NT>(w, nblocks, a, token, out);
}

template <int NT>
void DotIQ2_XST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                float* out) {
  DotIQ2T<iq2::IQ2XS, NT>(w, nblocks, a, token, out);
}

template <int NT>
void DotIQ2_ST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               float* out) {
  DotIQ2T<iq2::IQ2S, NT>(w, nblocks, a, token, out);
}

// A sub-block's 32 values q = 8 g +- 1 in element order (vpsignb of 8 by g, plus the groups'
// shift bytes).
inline __m256i IQ1Values(const iq1::SubBlock& s) {
  const __m256i g =
      _mm256_set_epi64x(static_cast<int64_t>(s.grid[3]), static_cast<int64_t>(s.grid[2]),
                        static_cast<int64_t>(s.grid[1]), static_cast<int64_t>(s.grid[0]));
  const __m256i shift = _mm256_set_epi64x(static_cast<int64_t>(iq1::ShiftBytes(s.negative, 3)),
                                          static_cast<int64_t>(iq1::ShiftBytes(s.negative, 2)),
                                          static_cast<int64_t>(iq1::ShiftBytes(s.negative, 1)),
                                          static_cast<int64_t>(iq1::ShiftBytes(s.negative, 0)));
  return _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), g), shift);
}

// IQ1_S / IQ1_M (Fmt: iq1::IQ1S, IQ1M), one 32-value sub-block at a time: its four grid entries
// (int8 -1, 0, +1) make one vector g in element order, the values q = 8 g +- 1 (vpsignb of 8 by
// g, plus the groups' shift bytes) lie in [-9, 9] and are never 0, so maddubs of |q| with the
// activations signed by q gives the int16 pair sums (at most 2 * 9 * 127) and vpmaddwd against
// the halves' multipliers 2 s + 1 the int32 sums already scaled; each sub-block is then scaled
// by d / 8 times its activation scale. A sub-block is decoded once for all NT tokens.
template <class Fmt, int NT>
void DotIQ1T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             float* out) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += Fmt::kBlockBytes) {
    simd::PrefetchAhead<Fmt::kBlockBytes>(w);
    const float d = Fmt::D(w) * iq1::kUnit;
    for (int j = 0; j < 8; ++j) {
      const iq1::SubBlock s = Fmt::Decode(w, j);
      const __m256i q = IQ1Values(s);
      const __m256i mag = _mm256_abs_epi8(q);
      const __m256i m = _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(s.m_high)),
                                         _mm_set1_epi16(static_cast<int16_t>(s.m_low)));
      const int64_t b = sb * 8 + j;
      for (int t = 0; t < NT; ++t) {
        const __m256i x =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q_row(token + t) + b * 32));
        const __m256i dp = _mm256_madd_epi16(_mm256_maddubs_epi16(mag, _mm256_sign_epi8(x, q)), m);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp),
                                 _mm256_set1_ps(d * a.scale_row(token + t)[b]), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = HorizontalSum(acc[t]);
}

template <int NT>
void DotIQ1_ST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               float* out) {
  DotIQ1T<iq1::IQ1S, NT>(w, nblocks, a, token, out);
}

template <int NT>
void DotIQ1_MT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               float* out) {
  DotIQ1T<iq1::IQ1M, NT>(w, nblocks, a, token, out);
}

// Q4_K: a 32-byte chunk holds sub-block 2c in its low nibbles and 2c + 1 in its high nibbles,
// each one activation block; the mins come off with the activation block sums.
// Q5_K (kFifthBit): the same with a fifth bit per value (bit j of qh[l] for sub-block j), moved
// to bit 4 of each byte: shifted down by 2c (16-bit shifts; the bits crossing bytes are masked
// off) and up by 4 or 3. Values up to 31: maddubs pair sums stay below 2 * 31 * 128.
template <int NT, bool kFifthBit = false>
void DotQ4_KT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  constexpr int kBlockBytes = kFifthBit ? quant::kQ5_KBlockBytes : quant::kQ4_KBlockBytes;
  constexpr int kNibbles = kFifthBit ? quant::kQ5_KLow : 16;
  __m256 acc[NT];
  float mins[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm256_setzero_ps();
    mins[t] = 0;
  }
  const __m256i m4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += kBlockBytes) {
    const float d = LoadHalf(w), dmin = LoadHalf(w + 2);
    uint8_t sc[8], m[8];
    quant::Q4_KScales(w + 4, sc, m);
    const __m256i qh =
        kFifthBit ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + quant::kQ5_KHigh))
                  : _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i raw =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kNibbles + 32 * c));
      __m256i lo = _mm256_and_si256(raw, m4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
      if constexpr (kFifthBit) {
        const __m256i h = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c));
        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(h, 4), bit4));
        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(h, 3), bit4));
      }
      const int64_t b = sb * 8 + 2 * c;
      for (int t = 0; t < NT; ++t) {
        const int8_t* aq = a.q_row(token + t) + b * 32;
        const float* as = a.scale_row(token + t) + b;
        const int32_t* sum = a.sum_row(token + t) + b;
        const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq));
        const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq + 32));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DotU8S8(lo, a0)),
                                 _mm256_set1_ps(d * sc[2 * c] * as[0]), acc[t]);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DotU8S8(hi, a1)),
                                 _mm256_set1_ps(d * sc[2 * c + 1] * as[1]), acc[t]);
        mins[t] += dmin * (m[2 * c] * as[0] * static_cast<float>(sum[0]) +
                           m[2 * c + 1] * as[1] * static_cast<float>(sum[1]));
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = HorizontalSum(acc[t]) - mins[t];
}

template <int NT>
void DotQ5_KT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  DotQ4_KT<NT, true>(w, nblocks, a, token, out);
}

// Shared by the 16-row kernels: a group's 16 f16 row scales as two vectors (rows 0-7, 8-15),
// one block's int32 sums of both halves scaled into the accumulators, and the tile's output.
inline void LoadGroupScales(const uint8_t* group, __m256 dw[2]) {
  dw[0] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(group)));
  dw[1] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(group + 16)));
}

inline void AccumulateBlock(__m256i dp0, __m256i dp1, const __m256 dw[2], float scale,
                            __m256 acc[2]) {
  const __m256 da = _mm256_set1_ps(scale);
  acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp0), _mm256_mul_ps(dw[0], da), acc[0]);
  acc[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp1), _mm256_mul_ps(dw[1], da), acc[1]);
}

template <int NT>
void StoreGroupTile(const __m256 (&acc)[NT][2], float* out, int64_t ldo) {
  for (int t = 0; t < NT; ++t) {
    _mm256_storeu_ps(out + t * ldo, acc[t][0]);
    _mm256_storeu_ps(out + t * ldo + 8, acc[t][1]);
  }
}

// The int32 sums of one 256-byte Q4_0x16-layout data area (16 rows x 32 nibbles) with
// activation block b of tokens token .. token + NT - 1: dp[t][h] holds rows 8h .. 8h + 7.
// Per 64-byte run, the two unpacked chunks of each half meet the token's two broadcast
// activation quads through maddubs (unsigned nibbles times signed bytes). A block's eight
// maddubs per half are summed in int16 before a single madd widens them: each int16 lane then
// holds 16 products of at most 15 * 127, 30480 < 32767 (activations are quantized to
// [-127, 127]), so nothing saturates (InterleavedX16ExtremeValues checks the limit).
// One token's activation quads for a 64-byte run of a 16-row layout: qb points at value 8c of
// the block; values 8c .. 8c + 3 and 8c + 4 .. 8c + 7 are each broadcast to every 32-bit lane.
inline void BroadcastQuads(const int8_t* qb, __m256i* a0, __m256i* a1) {
  int32_t quad0, quad1;
  std::memcpy(&quad0, qb, 4);
  std::memcpy(&quad1, qb + 4, 4);
  *a0 = _mm256_set1_epi32(quad0);
  *a1 = _mm256_set1_epi32(quad1);
}

// Unsigned weight chunks (w[0] with a0's values, w[1] with a1's) times the broadcast quads,
// adjacent products summed into int16 lanes (maddubs), the two chunks added.
inline __m256i ChunkPairSums16(const __m256i (&w)[2], __m256i a0, __m256i a1) {
  return _mm256_add_epi16(_mm256_maddubs_epi16(w[0], a0), _mm256_maddubs_epi16(w[1], a1));
}

template <int NT>
inline void NibbleBlockSums(const uint8_t* data, const QuantizedActivations& a, int64_t token,
                            int64_t b, __m256i (&dp)[NT][2]) {
  const __m256i mask = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i s16[NT][2];
  for (int t = 0; t < NT; ++t) s16[t][0] = s16[t][1] = _mm256_setzero_si256();
  for (int p = 0; p < 4; ++p) {
    const uint8_t* run = data + 64 * p;
    __m256i w[2][2];  // [half][chunk 2p or 2p + 1]
    for (int h = 0; h < 2; ++h) {
      const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(run + 32 * h));
      w[h][0] = _mm256_and_si256(bytes, mask);
      w[h][1] = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), mask);
    }
    for (int t = 0; t < NT; ++t) {
      __m256i a0, a1;
      BroadcastQuads(a.q_row(token + t) + b * 32 + 8 * p, &a0, &a1);
      for (int h = 0; h < 2; ++h) {
        s16[t][h] = _mm256_add_epi16(s16[t][h], ChunkPairSums16(w[h], a0, a1));
        // Keeps each sum in program order: left alone, GCC -O3 hoists all 64 maddubs of a
        // block ahead of their sums and spills (measured 25% slower than the unfused kernel;
        // with this, 12% faster).
        asm volatile("" : "+x"(s16[t][h]));
      }
    }
  }
  for (int t = 0; t < NT; ++t) {
    for (int h = 0; h < 2; ++h) dp[t][h] = _mm256_madd_epi16(s16[t][h], ones);
  }
}

// NibbleBlockSums for Q5_Kx16's sub-blocks: the nibbles as there, each chunk ch gaining its
// fifth bit (bit ch of the 64 bytes after the nibbles, pack::RepackGroupQ5_Kx16) at bit 4.
// With values up to 31 a run's two maddubs sum to at most 2 * 2 * 31 * 128 = 15872 per int16
// lane, but four runs would not fit: each run goes to int32 (madd) at once.
template <int NT>
inline void FifthBitBlockSums(const uint8_t* data, const QuantizedActivations& a, int64_t token,
                              int64_t b, __m256i (&dp)[NT][2]) {
  const __m256i mask = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int t = 0; t < NT; ++t) dp[t][0] = dp[t][1] = _mm256_setzero_si256();
  __m256i fifth[2];
  for (int h = 0; h < 2; ++h) {
    fifth[h] = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(data + pack::kQ5_Kx16FifthBits + 32 * h));
  }
  // Bit ch of each byte to bit 4 (16-bit shifts: what crosses bytes misses bit 4's mask).
  auto fifth_bit = [&](__m256i v, int ch) {
    const __m256i moved = ch <= 4 ? _mm256_sll_epi16(v, _mm_cvtsi32_si128(4 - ch))
                                  : _mm256_srl_epi16(v, _mm_cvtsi32_si128(ch - 4));
    return _mm256_and_si256(moved, bit4);
  };
  for (int p = 0; p < 4; ++p) {
    const uint8_t* run = data + 64 * p;
    __m256i w[2][2];  // [half][chunk 2p or 2p + 1]
    for (int h = 0; h < 2; ++h) {
      const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(run + 32 * h));
      w[h][0] = _mm256_or_si256(_mm256_and_si256(bytes, mask), fifth_bit(fifth[h], 2 * p));
      w[h][1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bytes, 4), mask),
                                fifth_bit(fifth[h], 2 * p + 1));
    }
    for (int t = 0; t < NT; ++t) {
      __m256i a0, a1;
      BroadcastQuads(a.q_row(token + t) + b * 32 + 8 * p, &a0, &a1);
      for (int h = 0; h < 2; ++h) {
        dp[t][h] =
            _mm256_add_epi32(dp[t][h], _mm256_madd_epi16(ChunkPairSums16(w[h], a0, a1), ones));
      }
    }
  }
}

// The weight prefetch of a 16-row kernel instantiated for NT tokens: one token (decode) streams
// them from DRAM once (simd::PrefetchDecodeStream: non-temporal and 8 KiB ahead on AMD, so they
// pass through L1 without evicting the activations; into L2 on Intel); more tokens re-read them
// from L2 across token tiles (2 KiB ahead, T0).
template <int NT, int kBytes>
inline void PrefetchWeights(const uint8_t* p, bool to_l2) {
  if constexpr (NT == 1) {
    simd::PrefetchDecodeStream<kBytes>(p, to_l2);
  } else {
    simd::PrefetchAhead<kBytes>(p);
  }
}

// Q4_0x16 on AVX2: rows 0-7 of every 64-byte run are its first 32 bytes, rows 8-15 the second
// (see NibbleBlockSums); the nibbles' +8 comes off each block's int32 sums as 8 * sum(a).
template <int NT>
void GemmQ4_0x16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                  int64_t token, float* out, int64_t ldo) {
  constexpr int kBlockBytes = 16 * quant::kQ4_0BlockBytes;
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  const bool to_l2 = NT == 1 && DecodeStreamToL2();
  for (int64_t b = 0; b < nblocks; ++b, group += kBlockBytes) {
    PrefetchWeights<NT, kBlockBytes>(group, to_l2);
    __m256i dp[NT][2];
    NibbleBlockSums<NT>(group + 32, a, token, b, dp);
    __m256 dw[2];
    LoadGroupScales(group, dw);
    for (int t = 0; t < NT; ++t) {
      const __m256i offset = _mm256_set1_epi32(8 * a.sum_row(token + t)[b]);
      AccumulateBlock(_mm256_sub_epi32(dp[t][0], offset), _mm256_sub_epi32(dp[t][1], offset), dw,
                      a.scale_row(token + t)[b], acc[t]);
    }
  }
  StoreGroupTile<NT>(acc, out, ldo);
}

void GemmQ4_0x16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<4>(ntok, [&](int first, auto nt) {
    GemmQ4_0x16T<decltype(nt)::value>(group, nblocks, a, token + first, out + first * ldo, ldo);
  });
}

// Q8_0x16 on AVX2: each 64-byte run holds one 4-value chunk of 16 rows (rows 0-7 in its first
// 32 bytes), stored as value + 128. maddubs needs one unsigned operand and its pair sums must
// fit int16, so the bytes go back to signed (xor 0x80) and enter as |w| against the activation
// with w's sign: |w| <= 128 and |a| <= 127 give pair sums <= 32512. Every maddubs is widened at
// once (two more would overflow).
template <int NT>
void GemmQ8_0x16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                  int64_t token, float* out, int64_t ldo) {
  constexpr int kBlockBytes = 16 * quant::kQ8_0BlockBytes;
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  const bool to_l2 = NT == 1 && DecodeStreamToL2();
  for (int64_t b = 0; b < nblocks; ++b, group += kBlockBytes) {
    PrefetchWeights<NT, kBlockBytes>(group, to_l2);
    __m256i dp[NT][2];
    for (int t = 0; t < NT; ++t) dp[t][0] = dp[t][1] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      __m256i ws[2], wa[2];
      for (int h = 0; h < 2; ++h) {
        ws[h] = _mm256_xor_si256(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + 32 + 64 * c + 32 * h)),
            flip);
        wa[h] = _mm256_abs_epi8(ws[h]);
      }
      for (int t = 0; t < NT; ++t) {
        int32_t quad;
        std::memcpy(&quad, a.q_row(token + t) + b * 32 + 4 * c, 4);
        const __m256i av = _mm256_set1_epi32(quad);
        for (int h = 0; h < 2; ++h) {
          dp[t][h] = _mm256_add_epi32(
              dp[t][h],
              _mm256_madd_epi16(_mm256_maddubs_epi16(wa[h], _mm256_sign_epi8(av, ws[h])), ones));
          asm volatile("" : "+x"(dp[t][h]));  // program order (see GemmQ4_0x16T)
        }
      }
    }
    __m256 dw[2];
    LoadGroupScales(group, dw);
    for (int t = 0; t < NT; ++t) {
      AccumulateBlock(dp[t][0], dp[t][1], dw, a.scale_row(token + t)[b], acc[t]);
    }
  }
  StoreGroupTile<NT>(acc, out, ldo);
}

void GemmQ8_0x16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<4>(ntok, [&](int first, auto nt) {
    GemmQ8_0x16T<decltype(nt)::value>(group, nblocks, a, token + first, out + first * ldo, ldo);
  });
}

// Q5_1: x = d q + m per 32-value block, q in [0, 31]: the nibbles in element order (low nibbles
// elements 0-15, high 16-31) and the fifth bits (qh, bit e for element e) spread to bytes: byte
// e takes qh's byte e / 8 (shuffle) and tests bit e % 8. Per block a_scale (d dot + m sum(a)).
// Q4_1 (no kFifthBit): the same without qh, its nibbles at byte 4.
template <bool kFifthBit>
inline __m256i AffineValues(const uint8_t* block) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + (kFifthBit ? 8 : 4)));
  const __m256i nibbles = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(qs, m4)),
                                                  _mm_and_si128(_mm_srli_epi16(qs, 4), m4), 1);
  if constexpr (!kFifthBit) return nibbles;
  int32_t qh;
  std::memcpy(&qh, block + 4, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(qh),
      _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201));
  const __m256i fifth = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                                         _mm256_set1_epi8(0x10));
  return _mm256_or_si256(nibbles, fifth);
}

template <int NT, bool kFifthBit = true>
void DotQ5_1T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  constexpr int kBytes = kFifthBit ? quant::kQ5_1BlockBytes : quant::kQ4_1BlockBytes;
  __m256 acc[NT];
  float mins[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm256_setzero_ps();
    mins[t] = 0;
  }
  for (int64_t b = 0; b < nblocks; ++b, w += kBytes) {
    const __m256i q = AffineValues<kFifthBit>(w);
    const float d = LoadHalf(w), m = LoadHalf(w + 2);
    for (int t = 0; t < NT; ++t) {
      const float as = a.scale_row(token + t)[b];
      const __m256i x =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q_row(token + t) + b * 32));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DotU8S8(q, x)), _mm256_set1_ps(d * as), acc[t]);
      mins[t] += m * as * static_cast<float>(a.sum_row(token + t)[b]);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = HorizontalSum(acc[t]) + mins[t];
}

template <int NT>
void DotQ4_1T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  DotQ5_1T<NT, false>(w, nblocks, a, token, out);
}

// IQ4_XS's 16 levels (quant::kIQ4NLValues) and their sizes (|level|, at most 127), each a
// vpshufb table in both lanes.
using quant::kIQ4NLValues;
constexpr std::array<int8_t, 16> Sizes(const int8_t (&levels)[16]) {
  std::array<int8_t, 16> t{};
  for (int i = 0; i < 16; ++i) t[i] = static_cast<int8_t>(levels[i] < 0 ? -levels[i] : levels[i]);
  return t;
}
constexpr std::array<int8_t, 16> kIQ4Sizes = Sizes(kIQ4NLValues);
inline __m256i IQ4Table(const int8_t* values) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(values)));
}
// MXFP4's 16 levels (quant::kMXFP4Values, E2M1 doubled) and their sizes (at most 12) likewise.
constexpr std::array<int8_t, 16> kMXFP4Sizes = Sizes(quant::kMXFP4Values);

// E8M0 byte e as f32 2^(e - 128) (quant::E8M0ToF32Half).
inline float E8M0Half(uint8_t e) {
  const uint32_t bits = e < 2 ? uint32_t{0x00200000} << e : static_cast<uint32_t>(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// The 32-value formats whose nibbles (as Q4_0's) index a table of 16 int8 levels: IQ4_NL (an
// f16 d first) and MXFP4 (an E8M0 byte first). Scale: a plain block's; GroupScales: the 16 rows'
// at the start of a 16-row block (rows 0-7 in dw[0], 8-15 in dw[1]).
struct IQ4NLFormat {
  static constexpr int kBlockBytes = quant::kIQ4_NLBlockBytes;
  static constexpr int kDataOffset = 2;
  static const int8_t* Levels() { return kIQ4NLValues; }
  static const int8_t* Sizes() { return kIQ4Sizes.data(); }
  static float Scale(const uint8_t* block) { return LoadHalf(block); }
  static void GroupScales(const uint8_t* group, __m256 dw[2]) { LoadGroupScales(group, dw); }
};
struct MXFP4Format {
  static constexpr int kBlockBytes = quant::kMXFP4BlockBytes;
  static constexpr int kDataOffset = 1;
  static const int8_t* Levels() { return quant::kMXFP4Values; }
  static const int8_t* Sizes() { return kMXFP4Sizes.data(); }
  static float Scale(const uint8_t* block) { return E8M0Half(block[0]); }
  static void GroupScales(const uint8_t* group, __m256 dw[2]) {
    // (e - 1) << 23, and for e < 2 the denormals 0x00200000 << e.
    for (int h = 0; h < 2; ++h) {
      const __m256i e =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(group + 8 * h)));
      const __m256i normal = _mm256_slli_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(1)), 23);
      const __m256i tiny = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), e);
      const __m256i below2 = _mm256_cmpgt_epi32(_mm256_set1_epi32(2), e);
      dw[h] = _mm256_castsi256_ps(_mm256_blendv_epi8(normal, tiny, below2));
    }
  }
};

// IQ4_XS: per 32-value sub-block j, d (ls_j - 32) times the table's levels of its nibbles. A
// sub-block's nibbles in element order (low then high) are looked up twice: the levels' sizes
// (unsigned, at most 127) and the levels themselves, whose signs go onto the activations
// (vpsignb); maddubs pair sums then stay within 2 * 127 * 127.
template <int NT>
void DotIQ4_XST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                float* out) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i size_table = IQ4Table(kIQ4Sizes.data()), level_table = IQ4Table(kIQ4NLValues);
  const __m128i m4 = _mm_set1_epi8(0x0F);
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += quant::kIQ4_XSBlockBytes) {
    const float d = LoadHalf(w);
    uint8_t ls[8];
    quant::IQ4_XSScales(w, ls);
    for (int j = 0; j < 8; ++j) {
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 8 + 16 * j));
      const __m256i nibbles =
          _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(raw, m4)),
                                  _mm_and_si128(_mm_srli_epi16(raw, 4), m4), 1);
      const __m256i size = _mm256_shuffle_epi8(size_table, nibbles);
      const __m256i level = _mm256_shuffle_epi8(level_table, nibbles);
      const float dl = d * static_cast<float>(ls[j] - 32);
      const int64_t b = sb * 8 + j;
      for (int t = 0; t < NT; ++t) {
        const __m256i x =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q_row(token + t) + b * 32));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DotU8S8(size, _mm256_sign_epi8(x, level))),
                                 _mm256_set1_ps(dl * a.scale_row(token + t)[b]), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = HorizontalSum(acc[t]);
}

// IQ4_NL and MXFP4 (Format: IQ4NLFormat, MXFP4Format): per block, its scale times the table's
// levels of its nibbles, looked up as in DotIQ4_XST.
template <class Format, int NT>
void DotNonLinearT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                   float* out) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i size_table = IQ4Table(Format::Sizes()), level_table = IQ4Table(Format::Levels());
  for (int64_t b = 0; b < nblocks; ++b, w += Format::kBlockBytes) {
    const float d = Format::Scale(w);
    const __m256i nibbles = ExpandQ4(w + Format::kDataOffset);
    const __m256i size = _mm256_shuffle_epi8(size_table, nibbles);
    const __m256i level = _mm256_shuffle_epi8(level_table, nibbles);
    for (int t = 0; t < NT; ++t) {
      const __m256i x =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q_row(token + t) + b * 32));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DotU8S8(size, _mm256_sign_epi8(x, level))),
                               _mm256_set1_ps(d * a.scale_row(token + t)[b]), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = HorizontalSum(acc[t]);
}

template <int NT>
void DotIQ4_NLT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                float* out) {
  DotNonLinearT<IQ4NLFormat, NT>(w, nblocks, a, token, out);
}

template <int NT>
void DotMXFP4T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               float* out) {
  DotNonLinearT<MXFP4Format, NT>(w, nblocks, a, token, out);
}

// The IQ3 codebook formats, one 32-value sub-block j of a 256-value block per vector: the 8
// grid entries' magnitudes (4 bytes each, element order; vpgatherdd from the grid), unsigned
// for maddubs; the 32 signs as -1 / +1 bytes that vpsignb puts onto the token's activations;
// the sub-block's odd multiplier.
struct IQ3_SSubBlocks {
  static constexpr int kBlockBytes = quant::kIQ3_SBlockBytes;
  static constexpr float kUnit = 1.0f;
  static __m256i Magnitudes(const uint8_t* block, int j) {
    // 8 indices: bits 0-7 in qs[8 j + i], bit 8 in bit i of qh[j].
    const __m256i low =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 + 8 * j)));
    const __m256i bit8 = _mm256_slli_epi32(
        _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(block[quant::kIQ3_SHigh + j]),
                                           _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                         _mm256_set1_epi32(1)),
        8);
    return _mm256_i32gather_epi32(reinterpret_cast<const int*>(quant::kIQ3SGrid.data()),
                                  _mm256_or_si256(low, bit8), 4);
  }
  static uint32_t SignBits(const uint8_t* block, int j) { return iq3::IQ3S::SignBits(block, j); }
  static int Multiplier(const uint8_t* block, int j) { return iq3::IQ3S::Multiplier(block, j); }
};

struct IQ3_XXSSubBlocks {
  static constexpr int kBlockBytes = quant::kIQ3_XXSBlockBytes;
  static constexpr float kUnit = 0.25f;
  static __m256i Magnitudes(const uint8_t* block, int j) {
    const __m256i index =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 + 8 * j)));
    return _mm256_i32gather_epi32(reinterpret_cast<const int*>(quant::kIQ3XXSGrid.data()), index,
                                  4);
  }
  static uint32_t SignBits(const uint8_t* block, int j) { return iq3::IQ3XXS::SignBits(block, j); }
  static int Multiplier(const uint8_t* block, int j) { return iq3::IQ3XXS::Multiplier(block, j); }
};

// 32 sign bits (bit e: element e negative) as bytes -1 (set) or +1, for vpsignb.
inline __m256i SignBytes(uint32_t bits) {
  // Byte e takes byte e / 8 of the bits (vpshufb works within 128-bit lanes, each holding all
  // four), then tests bit e % 8.
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  return _mm256_or_si256(set, _mm256_set1_epi8(1));
}

// Per sub-block and token: maddubs of the magnitudes (at most 62) with the sign-applied
// activations (|a| <= 127: pair sums within int16), summed to 8 int32 and scaled by d unit m
// a_scale. The weights are decoded once for the NT tokens.
template <class SubBlocks, int NT>
void DotCodebookT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                  float* out) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += SubBlocks::kBlockBytes) {
    const float d = LoadHalf(w) * SubBlocks::kUnit;
    for (int j = 0; j < 8; ++j) {
      const __m256i magnitudes = SubBlocks::Magnitudes(w, j);
      const __m256i signs = SignBytes(SubBlocks::SignBits(w, j));
      const float dl = d * static_cast<float>(SubBlocks::Multiplier(w, j));
      const int64_t b = sb * 8 + j;
      for (int t = 0; t < NT; ++t) {
        const __m256i x =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q_row(token + t) + b * 32));
        acc[t] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(DotU8S8(magnitudes, _mm256_sign_epi8(x, signs))),
                            _mm256_set1_ps(dl * a.scale_row(token + t)[b]), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = HorizontalSum(acc[t]);
}

template <int NT>
void DotIQ3_ST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               float* out) {
  DotCodebookT<IQ3_SSubBlocks, NT>(w, nblocks, a, token, out);
}

template <int NT>
void DotIQ3_XXST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                 float* out) {
  DotCodebookT<IQ3_XXSSubBlocks, NT>(w, nblocks, a, token, out);
}

// Prefill panels of the codebook formats (as the AVX-512 unit's): 16 rows x kPanelBlocks
// blocks of 32 values decoded once a call into thread_local scratch, then multiplied with every
// token. Each row's sub-blocks are decoded by the row dots' decoders above (grid entries and
// signs) into the signed values + 64 (2..126: unsigned for maddubs, whose pair sums stay
// <= 2 x 126 x 127 within int16; the 64 comes off as 64 x the activations' sum) and
// interleaved by 16 rows (per block 8 chunks of 64 bytes: values 4c .. 4c + 3 of rows 0-7,
// then of rows 8-15), with each row's factors d unit m for the block's first and last 16
// values (one m per 32 for IQ2_XXS and IQ3: the two are equal).
constexpr int64_t kPanelBlocks = 64;  // 2048 columns a panel
constexpr int64_t kPanelValueBytes = kPanelBlocks * 512;
constexpr int64_t kPanelFactorFloats = kPanelBlocks * 32;
constexpr int64_t kCodebookScratchBytes = kPanelValueBytes + 4 * kPanelFactorFloats;

// Sub-block j of a block as 32 signed values + 64 in element order and its halves' multipliers
// (unit kUnit), for the IQ2 formats (Fmt: iq2::IQ2XXS ...) and the IQ3 ones (IQ3_SSubBlocks,
// IQ3_XXSSubBlocks).
template <class Fmt>
struct IQ2PanelValues {
  static constexpr int kBlockBytes = Fmt::kBlockBytes;
  static constexpr float kUnit = iq2::kUnit;
  static float D(const uint8_t* block) { return LoadHalf(block); }
  static __m256i Values(const uint8_t* block, int j, int* m_low, int* m_high) {
    const iq2::SubBlock s = Fmt::Decode(block, j);
    const __m256i grid =
        _mm256_set_epi64x(static_cast<int64_t>(s.grid[3]), static_cast<int64_t>(s.grid[2]),
                          static_cast<int64_t>(s.grid[1]), static_cast<int64_t>(s.grid[0]));
    *m_low = iq2::MultiplierLow(s);
    *m_high = iq2::MultiplierHigh(s);
    return _mm256_add_epi8(_mm256_sign_epi8(grid, SignBytes(s.signs)), _mm256_set1_epi8(64));
  }
};

template <class SubBlocks>
struct IQ3PanelValues {
  static constexpr int kBlockBytes = SubBlocks::kBlockBytes;
  static constexpr float kUnit = SubBlocks::kUnit;
  static float D(const uint8_t* block) { return LoadHalf(block); }
  static __m256i Values(const uint8_t* block, int j, int* m_low, int* m_high) {
    *m_low = *m_high = SubBlocks::Multiplier(block, j);
    return _mm256_add_epi8(
        _mm256_sign_epi8(SubBlocks::Magnitudes(block, j), SignBytes(SubBlocks::SignBits(block, j))),
        _mm256_set1_epi8(64));
  }
};

// The 1-bit formats (Fmt: iq1::IQ1S, IQ1M) likewise: q = 8 g +- 1 as in DotIQ1T (in [-9, 9]),
// d read where the format keeps it (IQ1_M: its scales' top nibbles).
template <class Fmt>
struct IQ1PanelValues {
  static constexpr int kBlockBytes = Fmt::kBlockBytes;
  static constexpr float kUnit = iq1::kUnit;
  static float D(const uint8_t* block) { return Fmt::D(block); }
  static __m256i Values(const uint8_t* block, int j, int* m_low, int* m_high) {
    const iq1::SubBlock s = Fmt::Decode(block, j);
    *m_low = s.m_low;
    *m_high = s.m_high;
    return _mm256_add_epi8(IQ1Values(s), _mm256_set1_epi8(64));
  }
};

// Blocks [b0, b0 + nb) (whole 256-value blocks) of rows 0 .. nrows - 1 into the panel (rows
// past nrows: values 64, factors 0). factors: [block][half][16 rows].
template <class Panel>
void DecodePanel(const uint8_t* rows, uint64_t row_bytes, int nrows, int64_t b0, int64_t nb,
                 uint8_t* values, float* factors) {
  for (int r = 0; r < 16; ++r) {
    for (int64_t sb = b0 / 8; sb < (b0 + nb) / 8; ++sb) {
      const uint8_t* block = rows + r * row_bytes + sb * Panel::kBlockBytes;
      const float d = r < nrows ? Panel::D(block) * Panel::kUnit : 0.0f;
      for (int j = 0; j < 8; ++j) {
        const int64_t b = sb * 8 + j - b0;
        alignas(32) uint8_t v[32];
        int m_low = 0, m_high = 0;
        _mm256_store_si256(
            reinterpret_cast<__m256i*>(v),
            r < nrows ? Panel::Values(block, j, &m_low, &m_high) : _mm256_set1_epi8(64));
        for (int c = 0; c < 8; ++c) std::memcpy(values + b * 512 + c * 64 + r * 4, v + 4 * c, 4);
        factors[b * 32 + r] = d * static_cast<float>(m_low);
        factors[b * 32 + 16 + r] = d * static_cast<float>(m_high);
      }
    }
  }
}

// Tokens token .. token + T - 1 over the panel's nb blocks (activation blocks b0 ..), into
// acc[t][half of the rows]. kQuarters: the two 16-value halves of a block apart (their own
// factors, each offset by 64 x its activations' sum16); else one int32 sum a block.
template <int T, bool kQuarters>
void PanelTokensT(const uint8_t* values, const float* factors, int64_t nb,
                  const QuantizedActivations& a, int64_t b0, int64_t token, __m256 acc[][2]) {
  constexpr int kParts = kQuarters ? 2 : 1;
  constexpr int kChunks = 8 / kParts;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b, values += 512) {
    for (int part = 0; part < kParts; ++part) {
      __m256i d[T][2];
      for (int t = 0; t < T; ++t) {
        const int32_t sum =
            kQuarters ? a.sum16_row(token + t)[2 * (b0 + b) + part] : a.sum_row(token + t)[b0 + b];
        d[t][0] = d[t][1] = _mm256_set1_epi32(-64 * sum);
      }
      for (int c = part * kChunks; c < (part + 1) * kChunks; ++c) {
        const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(values + 64 * c));
        const __m256i w1 =
            _mm256_load_si256(reinterpret_cast<const __m256i*>(values + 64 * c + 32));
        for (int t = 0; t < T; ++t) {
          int32_t four;
          std::memcpy(&four, a.q_row(token + t) + (b0 + b) * 32 + 4 * c, 4);
          const __m256i x = _mm256_set1_epi32(four);
          d[t][0] = _mm256_add_epi32(d[t][0], _mm256_madd_epi16(_mm256_maddubs_epi16(w0, x), ones));
          d[t][1] = _mm256_add_epi32(d[t][1], _mm256_madd_epi16(_mm256_maddubs_epi16(w1, x), ones));
        }
      }
      const float* f = factors + b * 32 + part * 16;
      const __m256 f0 = _mm256_load_ps(f), f1 = _mm256_load_ps(f + 8);
      for (int t = 0; t < T; ++t) {
        const __m256 s = _mm256_set1_ps(a.scale_row(token + t)[b0 + b]);
        acc[t][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d[t][0]), _mm256_mul_ps(f0, s), acc[t][0]);
        acc[t][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d[t][1]), _mm256_mul_ps(f1, s), acc[t][1]);
      }
    }
  }
}

bool GemmCodebookX16Takes(DType type) { return IsCodebookType(type) || IsOneBitCodebookType(type); }

void GemmCodebookX16(DType type, const uint8_t* rows, uint64_t row_bytes, int nrows,
                     int64_t nblocks, const QuantizedActivations& a, int64_t ntok, float* out,
                     int64_t ldo) {
  alignas(64) static thread_local uint8_t values[kPanelValueBytes];
  alignas(64) static thread_local float factors[kPanelFactorFloats];
  const bool quarters = type == DType::kIQ2_XS || type == DType::kIQ2_S || type == DType::kIQ1_M;
  for (int64_t b0 = 0; b0 < nblocks; b0 += kPanelBlocks) {
    const int64_t nb = std::min(kPanelBlocks, nblocks - b0);
    const auto decode = type == DType::kIQ2_XXS  ? DecodePanel<IQ2PanelValues<iq2::IQ2XXS>>
                        : type == DType::kIQ2_XS ? DecodePanel<IQ2PanelValues<iq2::IQ2XS>>
                        : type == DType::kIQ2_S  ? DecodePanel<IQ2PanelValues<iq2::IQ2S>>
                        : type == DType::kIQ3_S  ? DecodePanel<IQ3PanelValues<IQ3_SSubBlocks>>
                        : type == DType::kIQ1_S  ? DecodePanel<IQ1PanelValues<iq1::IQ1S>>
                        : type == DType::kIQ1_M  ? DecodePanel<IQ1PanelValues<iq1::IQ1M>>
                                                 : DecodePanel<IQ3PanelValues<IQ3_XXSSubBlocks>>;
    decode(rows, row_bytes, nrows, b0, nb, values, factors);
    simd::ForTokenPieces<4>(static_cast<int>(ntok), [&](int first, auto nt) {
      constexpr int T = decltype(nt)::value;
      __m256 acc[T][2];
      for (int t = 0; t < T; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
      if (quarters) {
        PanelTokensT<T, true>(values, factors, nb, a, b0, first, acc);
      } else {
        PanelTokensT<T, false>(values, factors, nb, a, b0, first, acc);
      }
      for (int t = 0; t < T; ++t) {
        alignas(32) float sums[16];
        _mm256_store_ps(sums, acc[t][0]);
        _mm256_store_ps(sums + 8, acc[t][1]);
        float* o = out + (first + t) * ldo;
        for (int r = 0; r < nrows; ++r) o[r] = b0 == 0 ? sums[r] : o[r] + sums[r];
      }
    });
  }
}

// Prefill's tiles of up to 16 tokens: the IQ3 kernels above with 8 accumulators (each
// sub-block gathered once per 8 tokens; 16 would not fit the 16 registers), the rest and the
// other formats through the 4-token row dots.
void DotCodebookTile(DType type, const uint8_t* w, int64_t nblocks, const QuantizedActivations& a,
                     int64_t token, int ntok, float* out) {
  int t = 0;
  if (type == DType::kIQ3_S) {
    for (; t + 8 <= ntok; t += 8)
      DotCodebookT<IQ3_SSubBlocks, 8>(w, nblocks, a, token + t, out + t);
  } else if (type == DType::kIQ3_XXS) {
    for (; t + 8 <= ntok; t += 8) {
      DotCodebookT<IQ3_XXSSubBlocks, 8>(w, nblocks, a, token + t, out + t);
    }
  }
  const KernelTable& table = Table();
  const RowDotFn dot = type == DType::kIQ1_S     ? table.dot_iq1_s
                       : type == DType::kIQ1_M   ? table.dot_iq1_m
                       : type == DType::kIQ2_XXS ? table.dot_iq2_xxs
                       : type == DType::kIQ2_XS  ? table.dot_iq2_xs
                       : type == DType::kIQ2_S   ? table.dot_iq2_s
                       : type == DType::kIQ3_XXS ? table.dot_iq3_xxs
                                                 : table.dot_iq3_s;
  for (; t < ntok; t += 4) dot(w, nblocks, a, token + t, std::min(4, ntok - t), out + t);
}

// A Q4_Kx16 block's 128 six-bit scales and mins (entry j * 16 + r: sub-block j, row r) as
// bytes, 32 entries (two sub-blocks) per vector: low nibbles from their 64-byte areas, top two
// bits from the shared one (see pack::RepackGroupQ4_Kx16). 16-bit shifts carry bits across
// bytes, which the masks drop.
inline void UnpackQ4_Kx16Scales(const uint8_t* block, __m256i sc[4], __m256i mn[4]) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), top2 = _mm256_set1_epi8(0x30);
  auto load = [](const uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  };
  for (int c = 0; c < 2; ++c) {
    const __m256i sl = load(block + pack::kQ4_Kx16ScaleLow + 32 * c);
    const __m256i ml = load(block + pack::kQ4_Kx16MinLow + 32 * c);
    const __m256i hi = load(block + pack::kQ4_Kx16High + 32 * c);
    sc[c] = _mm256_or_si256(_mm256_and_si256(sl, low4),
                            _mm256_and_si256(_mm256_slli_epi16(hi, 4), top2));
    sc[2 + c] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(sl, 4), low4),
                                _mm256_and_si256(_mm256_slli_epi16(hi, 2), top2));
    mn[c] = _mm256_or_si256(_mm256_and_si256(ml, low4), _mm256_and_si256(hi, top2));
    mn[2 + c] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ml, 4), low4),
                                _mm256_and_si256(_mm256_srli_epi16(hi, 2), top2));
  }
}

// Sub-block j's 16 bytes of such a vector set (moved to the low lane), as two f32 vectors
// (rows 0-7, 8-15) times the rows' f16 factors f.
inline void SubBlockBytesTimes(const __m256i v[4], int j, const __m256 f[2], __m256 out[2]) {
  const __m256i pick =
      _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3), _mm256_set1_epi32(4 * (j % 2)));
  const __m128i bytes = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v[j / 2], pick));
  out[0] = _mm256_mul_ps(f[0], _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)));
  out[1] = _mm256_mul_ps(f[1], _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8))));
}

// Q4_Kx16 on AVX2: each 32-value sub-block is a Q4_0x16-layout area (NibbleBlockSums) with
// per-row scale d * sc and offset dmin * m: out += sum_j a_scale_j * (d sc_j dot_j -
// dmin m_j sum(a_j)), the scales unpacked once per 256-value block for the whole token piece.
// Q5_Kx16 (kFifthBit): the same head, sub-blocks of 320 bytes (FifthBitBlockSums).
template <int NT, bool kFifthBit = false>
void GemmQ4_Kx16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                  int64_t token, float* out, int64_t ldo) {
  constexpr int64_t kBlockBytes = kFifthBit ? pack::kQ5_Kx16BlockBytes : pack::kQ4_Kx16BlockBytes;
  constexpr int64_t kSubBlockBytes = kFifthBit ? pack::kQ5_Kx16SubBlockBytes : 256;
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, group += kBlockBytes) {
    simd::PrefetchAhead<256>(group + 2048);
    __m256i sc[4], mn[4];
    UnpackQ4_Kx16Scales(group, sc, mn);
    // dmin / 8: the min term is then dmin m / 8 times the activation block's offset (8 sum
    // scale, QuantizedActivations), broadcast from memory per token.
    __m256 d[2], dmin8[2];
    LoadGroupScales(group, d);
    LoadGroupScales(group + pack::kQ4_Kx16Dmin, dmin8);
    for (int h = 0; h < 2; ++h) dmin8[h] = _mm256_mul_ps(dmin8[h], _mm256_set1_ps(0.125f));
    for (int j = 0; j < 8; ++j) {
      simd::PrefetchAhead<256>(group + kSubBlockBytes * j);
      const int64_t b = sb * 8 + j;
      __m256i dp[NT][2];
      const uint8_t* data = group + pack::kQ4_Kx16Data + kSubBlockBytes * j;
      if constexpr (kFifthBit) {
        FifthBitBlockSums<NT>(data, a, token, b, dp);
      } else {
        NibbleBlockSums<NT>(data, a, token, b, dp);
      }
      __m256 ds[2], dm[2];
      SubBlockBytesTimes(sc, j, d, ds);
      SubBlockBytesTimes(mn, j, dmin8, dm);
      for (int t = 0; t < NT; ++t) {
        const __m256 vs = _mm256_broadcast_ss(a.scale_row(token + t) + b);
        const __m256 vm = _mm256_broadcast_ss(a.offset_row(token + t) + b);
        for (int h = 0; h < 2; ++h) {
          acc[t][h] =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp[t][h]), _mm256_mul_ps(ds[h], vs), acc[t][h]);
          acc[t][h] = _mm256_fnmadd_ps(dm[h], vm, acc[t][h]);
        }
      }
    }
  }
  StoreGroupTile<NT>(acc, out, ldo);
}

void GemmQ4_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<4>(ntok, [&](int first, auto nt) {
    GemmQ4_Kx16T<decltype(nt)::value>(group, nblocks, a, token + first, out + first * ldo, ldo);
  });
}

// Q4_1x16 on AVX2: each block is a Q4_0x16-layout area (NibbleBlockSums) with per-row scale d
// and min m: out += a_scale (d dot + m sum(a)), the min term as m / 8 times the block's offset
// (8 sum(a) scale), broadcast from memory per token.
// Q5_1x16 (kFifthBit): the block's data from kQ4_1x16Data is a Q5_Kx16 sub-block's layout
// (FifthBitBlockSums).
template <int NT, bool kFifthBit = false>
void GemmQ4_1x16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                  int64_t token, float* out, int64_t ldo) {
  constexpr int kBlockBytes = kFifthBit ? pack::kQ5_1x16BlockBytes : pack::kQ4_1x16BlockBytes;
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nblocks; ++b, group += kBlockBytes) {
    simd::PrefetchAhead<kBlockBytes>(group);
    __m256 d[2], m8[2];
    LoadGroupScales(group, d);
    LoadGroupScales(group + pack::kQ4_1x16Min, m8);
    for (int h = 0; h < 2; ++h) m8[h] = _mm256_mul_ps(m8[h], _mm256_set1_ps(0.125f));
    __m256i dp[NT][2];
    if constexpr (kFifthBit) {
      FifthBitBlockSums<NT>(group + pack::kQ4_1x16Data, a, token, b, dp);
    } else {
      NibbleBlockSums<NT>(group + pack::kQ4_1x16Data, a, token, b, dp);
    }
    for (int t = 0; t < NT; ++t) {
      const __m256 vs = _mm256_broadcast_ss(a.scale_row(token + t) + b);
      const __m256 vm = _mm256_broadcast_ss(a.offset_row(token + t) + b);
      for (int h = 0; h < 2; ++h) {
        acc[t][h] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp[t][h]), _mm256_mul_ps(d[h], vs), acc[t][h]);
        acc[t][h] = _mm256_fmadd_ps(m8[h], vm, acc[t][h]);
      }
    }
  }
  StoreGroupTile<NT>(acc, out, ldo);
}

void GemmQ4_1x16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<4>(ntok, [&](int first, auto nt) {
    GemmQ4_1x16T<decltype(nt)::value>(group, nblocks, a, token + first, out + first * ldo, ldo);
  });
}

void GemmQ5_1x16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<4>(ntok, [&](int first, auto nt) {
    GemmQ4_1x16T<decltype(nt)::value, true>(group, nblocks, a, token + first, out + first * ldo,
                                            ldo);
  });
}

// The int32 sums of one 256-byte Q4_0x16-layout data area whose nibbles index a table of
// levels (Format::Levels: kIQ4NLValues for IQ4_XSx16's sub-blocks and IQ4_NLx16's blocks,
// kMXFP4Values for MXFP4x16's) with activation block b of tokens token .. token + NT - 1:
// dp[t][h] holds rows 8h .. 8h + 7. The nibbles are looked up twice, as the levels' sizes
// (unsigned, at most 127) and as the levels, whose signs go onto the broadcast activations
// (vpsignb, per byte: per row; a level 0 zeroes the activation). A maddubs pair sum is then at
// most 2 * 127 * 127, so each goes to int32 (madd) before the next is added.
template <int NT, class Format = IQ4NLFormat>
inline void LevelBlockSums(const uint8_t* data, const QuantizedActivations& a, int64_t token,
                           int64_t b, __m256i (&dp)[NT][2]) {
  const __m256i size_table = IQ4Table(Format::Sizes()), level_table = IQ4Table(Format::Levels());
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  for (int t = 0; t < NT; ++t) dp[t][0] = dp[t][1] = _mm256_setzero_si256();
  for (int p = 0; p < 4; ++p) {
    __m256i size[2][2], level[2][2];  // [half][chunk 2p or 2p + 1]
    for (int h = 0; h < 2; ++h) {
      const __m256i bytes =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(data + 64 * p + 32 * h));
      const __m256i n[2] = {_mm256_and_si256(bytes, low4),
                            _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4)};
      for (int c = 0; c < 2; ++c) {
        size[h][c] = _mm256_shuffle_epi8(size_table, n[c]);
        level[h][c] = _mm256_shuffle_epi8(level_table, n[c]);
      }
    }
    for (int t = 0; t < NT; ++t) {
      __m256i a0, a1;
      BroadcastQuads(a.q_row(token + t) + b * 32 + 8 * p, &a0, &a1);
      for (int h = 0; h < 2; ++h) {
        const __m256i s0 = _mm256_maddubs_epi16(size[h][0], _mm256_sign_epi8(a0, level[h][0]));
        const __m256i s1 = _mm256_maddubs_epi16(size[h][1], _mm256_sign_epi8(a1, level[h][1]));
        dp[t][h] = _mm256_add_epi32(
            dp[t][h], _mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones)));
      }
    }
  }
}

// IQ4_NLx16 and MXFP4x16 on AVX2: per block, LevelBlockSums scaled by the 16 rows' scales (at
// the block's start, Format::GroupScales) and the token's scale.
template <class Format, int NT>
void GemmNonLinearX16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                       int64_t token, float* out, int64_t ldo) {
  constexpr int kBlockBytes = 16 * Format::kBlockBytes;
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  const bool to_l2 = NT == 1 && DecodeStreamToL2();
  for (int64_t b = 0; b < nblocks; ++b, group += kBlockBytes) {
    PrefetchWeights<NT, kBlockBytes>(group, to_l2);
    __m256i dp[NT][2];
    LevelBlockSums<NT, Format>(group + 16 * Format::kDataOffset, a, token, b, dp);
    __m256 dw[2];
    Format::GroupScales(group, dw);
    for (int t = 0; t < NT; ++t) {
      AccumulateBlock(dp[t][0], dp[t][1], dw, a.scale_row(token + t)[b], acc[t]);
    }
  }
  StoreGroupTile<NT>(acc, out, ldo);
}

template <class Format>
void GemmNonLinearX16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                      int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<4>(ntok, [&](int first, auto nt) {
    GemmNonLinearX16T<Format, decltype(nt)::value>(group, nblocks, a, token + first,
                                                   out + first * ldo, ldo);
  });
}

// IQ4_XSx16 on AVX2: each sub-block's nibbles (Q4_0x16 layout) through LevelBlockSums, scaled by
// d (ls - 32) per row. The 128 six-bit scales are unpacked to bytes once per 256-value block
// (pack::RepackGroupIQ4_XSx16's layout).
template <int NT>
void GemmIQ4_XSx16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                    int64_t token, float* out, int64_t ldo) {
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3);
  alignas(32) uint8_t ls[128];  // entry 16 j + r: the 6-bit scale of sub-block j, row r
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, group += pack::kIQ4_XSx16BlockBytes) {
    simd::PrefetchAhead<256>(group + 2048);
    auto load = [](const uint8_t* p) {
      return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    };
    const __m256i sl0 = load(group + pack::kIQ4_XSx16ScaleLow);
    const __m256i sl1 = load(group + pack::kIQ4_XSx16ScaleLow + 32);
    const __m256i hi = load(group + pack::kIQ4_XSx16ScaleHigh);
    const __m256i low[4] = {_mm256_and_si256(sl0, low4), _mm256_and_si256(sl1, low4),
                            _mm256_and_si256(_mm256_srli_epi16(sl0, 4), low4),
                            _mm256_and_si256(_mm256_srli_epi16(sl1, 4), low4)};
    for (int q = 0; q < 4; ++q) {  // entries 32 q .. 32 q + 31: top bits at 2 q
      const __m256i top = _mm256_and_si256(_mm256_srl_epi16(hi, _mm_cvtsi32_si128(2 * q)), three);
      _mm256_store_si256(reinterpret_cast<__m256i*>(ls + 32 * q),
                         _mm256_or_si256(low[q], _mm256_slli_epi16(top, 4)));
    }
    __m256 d[2];
    LoadGroupScales(group, d);
    for (int j = 0; j < 8; ++j) {
      const uint8_t* data = group + pack::kIQ4_XSx16Data + 256 * j;
      simd::PrefetchAhead<256>(data);
      const int64_t b = sb * 8 + j;
      __m256 dl[2];
      for (int h = 0; h < 2; ++h) {
        const __m256i scale = _mm256_sub_epi32(
            _mm256_cvtepu8_epi32(
                _mm_loadl_epi64(reinterpret_cast<const __m128i*>(ls + 16 * j + 8 * h))),
            _mm256_set1_epi32(32));
        dl[h] = _mm256_mul_ps(d[h], _mm256_cvtepi32_ps(scale));
      }
      __m256i dp[NT][2];
      LevelBlockSums<NT>(data, a, token, b, dp);
      for (int t = 0; t < NT; ++t) {
        const __m256 vs = _mm256_broadcast_ss(a.scale_row(token + t) + b);
        for (int h = 0; h < 2; ++h) {
          acc[t][h] =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp[t][h]), _mm256_mul_ps(dl[h], vs), acc[t][h]);
        }
      }
    }
  }
  StoreGroupTile<NT>(acc, out, ldo);
}

void GemmIQ4_XSx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                   int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<4>(ntok, [&](int first, auto nt) {
    GemmIQ4_XSx16T<decltype(nt)::value>(group, nblocks, a, token + first, out + first * ldo, ldo);
  });
}

void GemmQ5_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<4>(ntok, [&](int first, auto nt) {
    GemmQ4_Kx16T<decltype(nt)::value, true>(group, nblocks, a, token + first, out + first * ldo,
                                            ldo);
  });
}

// Q2_Kx16 on AVX2: per 32-value sub-block j and half of the rows (rows 0-7 in the first 32
// bytes of each 64-byte area, 8-15 in the second), chunk ch is bits 2 (ch % 4) .. + 1 of area
// ch / 4 (one shift and mask; the bits shifted in from the next byte land above bit 1).
// maddubs of a chunk with the token's broadcast quad gives int16 pair sums of at most 2 * 3 *
// 127, so chunks 0-3 (Q2_K sub-block 2 j) and 4-7 (2 j + 1) each sum in int16 (at most 3048);
// vpmaddwd against the rows' (scale, scale) pairs takes each to int32 already scaled, S =
// sc_2j dot_2j + sc_2j+1 dot_2j+1, and one more of the rows' (min_2j, min_2j+1) pairs with the
// token's two per-16 activation sums gives M; the rows then take a_scale (d S - dmin M) in f32.
template <int NT>
void GemmQ2_Kx16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                  int64_t token, float* out, int64_t ldo) {
  const __m256i three = _mm256_set1_epi8(3), low4 = _mm256_set1_epi32(0x0F);
  __m256 acc[NT][2];
  const int8_t* q[NT];
  const float* as[NT];
  const int16_t* sum16[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    q[t] = a.q_row(token + t);
    as[t] = a.scale_row(token + t);
    sum16[t] = a.sum16_row(token + t);
  }
  const bool to_l2 = NT == 1 && DecodeStreamToL2();
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, group += pack::kQ2_Kx16BlockBytes) {
    PrefetchWeights<NT, pack::kQ2_Kx16BlockBytes>(group, to_l2);  // a whole block ahead
    __m256 d[2], dmin[2];
    LoadGroupScales(group, d);
    LoadGroupScales(group + pack::kQ2_Kx16Dmin, dmin);
    for (int j = 0; j < 8; ++j) {
      const uint8_t* data = group + pack::kQ2_Kx16Data + pack::kQ2_Kx16SubBlockBytes * j;
      const int64_t b = sb * 8 + j;
      const uint8_t* scales = group + pack::kQ2_Kx16Scales + 32 * j;
      for (int h = 0; h < 2; ++h) {
        __m256i w[8];
        for (int p = 0; p < 2; ++p) {
          const __m256i area =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(data + 64 * p + 32 * h));
          w[4 * p] = _mm256_and_si256(area, three);
          w[4 * p + 1] = _mm256_and_si256(_mm256_srli_epi16(area, 2), three);
          w[4 * p + 2] = _mm256_and_si256(_mm256_srli_epi16(area, 4), three);
          w[4 * p + 3] = _mm256_and_si256(_mm256_srli_epi16(area, 6), three);
        }
        // Rows 8h .. 8h + 7's scale bytes of sub-blocks 2 j and 2 j + 1, one per dword.
        const __m256i lo =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales + 8 * h)));
        const __m256i hi = _mm256_cvtepu8_epi32(
            _mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales + 16 + 8 * h)));
        const __m256i sc_lo = _mm256_and_si256(lo, low4), sc_hi = _mm256_and_si256(hi, low4);
        const __m256i scale_lo = _mm256_or_si256(sc_lo, _mm256_slli_epi32(sc_lo, 16));
        const __m256i scale_hi = _mm256_or_si256(sc_hi, _mm256_slli_epi32(sc_hi, 16));
        const __m256i min_pairs = _mm256_or_si256(_mm256_srli_epi32(lo, 4),
                                                  _mm256_slli_epi32(_mm256_srli_epi32(hi, 4), 16));
        for (int t = 0; t < NT; ++t) {
          const int8_t* qb = q[t] + b * 32;
          // Opaque to the compiler, so that it loads the quads again for each half of the rows
          // (a broadcast from memory costs a load only): left to itself, GCC -O3 kept the 64
          // broadcasts of a block in stack slots and 64 addresses in others.
          asm volatile("" : "+r"(qb));
          auto quad = [qb](int offset) {
            int32_t four;
            std::memcpy(&four, qb + offset, 4);
            return _mm256_set1_epi32(four);
          };
          __m256i first = _mm256_maddubs_epi16(w[0], quad(0));
          __m256i second = _mm256_maddubs_epi16(w[4], quad(16));
          for (int c = 1; c < 4; ++c) {
            first = _mm256_add_epi16(first, _mm256_maddubs_epi16(w[c], quad(4 * c)));
            second = _mm256_add_epi16(second, _mm256_maddubs_epi16(w[4 + c], quad(16 + 4 * c)));
          }
          const __m256i scaled = _mm256_add_epi32(_mm256_madd_epi16(first, scale_lo),
                                                  _mm256_madd_epi16(second, scale_hi));
          int32_t sums;  // the token's two 16-value sums of this block, as an int16 pair
          std::memcpy(&sums, sum16[t] + 2 * b, 4);
          const __m256i mins = _mm256_madd_epi16(min_pairs, _mm256_set1_epi32(sums));
          const __m256 dsm = _mm256_fnmadd_ps(dmin[h], _mm256_cvtepi32_ps(mins),
                                              _mm256_mul_ps(d[h], _mm256_cvtepi32_ps(scaled)));
          acc[t][h] = _mm256_fmadd_ps(dsm, _mm256_broadcast_ss(as[t] + b), acc[t][h]);
        }
      }
    }
  }
  StoreGroupTile<NT>(acc, out, ldo);
}

void GemmQ2_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<4>(ntok, [&](int first, auto nt) {
    GemmQ2_Kx16T<decltype(nt)::value>(group, nblocks, a, token + first, out + first * ldo, ldo);
  });
}

// The 16-row layouts with int8 scales per 16 values and an offset on the values: Q6_Kx16
// (int8 scales stored as such) and Q3_Kx16 (6-bit scales, regrouped). Scales16 writes the
// block's scales as int8 [scale k][row]; Unpack makes chunks 2c and 2c + 1 of rows 8h .. 8h + 7
// as unsigned values.
struct Q6KX16 {
  static constexpr int kBlockBytes = pack::kQ6_Kx16BlockBytes, kData = pack::kQ6_Kx16Data;
  static constexpr int kSubBlockBytes = pack::kQ6_Kx16SubBlockBytes, kOffsetShift = 5;
  static const int8_t* Scales16(const uint8_t* group, int8_t*) {
    return reinterpret_cast<const int8_t*>(group + pack::kQ6_Kx16Scales);
  }
  // Low nibbles of chunks 2c and 2c + 1 (run c) gain their top two bits from area c / 2
  // (chunk ch's at shift 2 (ch % 4), moved to bits 4-5 with 16-bit shifts whose carries the
  // mask drops): unsigned 6-bit values.
  static void Unpack(const uint8_t* data, int c, int h, __m256i (&w)[2]) {
    const __m256i low4 = _mm256_set1_epi8(0x0F), top2 = _mm256_set1_epi8(0x30);
    const __m256i nib =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(data + 64 * c + 32 * h));
    const __m256i top =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(data + 256 + 64 * (c / 2) + 32 * h));
    const __m256i top_a = c % 2 == 0 ? _mm256_slli_epi16(top, 4) : top;
    const __m256i top_b = c % 2 == 0 ? _mm256_slli_epi16(top, 2) : _mm256_srli_epi16(top, 2);
    w[0] = _mm256_or_si256(_mm256_and_si256(nib, low4), _mm256_and_si256(top_a, top2));
    w[1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(nib, 4), low4),
                           _mm256_and_si256(top_b, top2));
  }
};

struct Q3KX16 {
  static constexpr int kBlockBytes = pack::kQ3_Kx16BlockBytes, kData = pack::kQ3_Kx16Data;
  static constexpr int kSubBlockBytes = pack::kQ3_Kx16SubBlockBytes, kOffsetShift = 2;
  // Entries 32 q .. 32 q + 31 (scales 2q and 2q + 1 of the 16 rows) are one 32-byte load from
  // each scale area: low nibble q / 4, top bits at shift 2 (q / 2) (moved to bits 4-5).
  static const int8_t* Scales16(const uint8_t* group, int8_t* scratch) {
    const __m256i low4 = _mm256_set1_epi8(0x0F), top2 = _mm256_set1_epi8(0x30);
    for (int q = 0; q < 8; ++q) {
      const __m256i low = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(group + pack::kQ3_Kx16ScaleLow + (32 * q) % 128));
      const __m256i high = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(group + pack::kQ3_Kx16ScaleHigh + (32 * q) % 64));
      const int shift = 2 * (q / 2);
      const __m256i top =
          shift <= 4 ? _mm256_slli_epi16(high, 4 - shift) : _mm256_srli_epi16(high, shift - 4);
      const __m256i scales = _mm256_sub_epi8(
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(low, 4 * (q / 4)), low4),
                          _mm256_and_si256(top, top2)),
          _mm256_set1_epi8(32));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(scratch + 32 * q), scales);
    }
    return scratch;
  }
  // Chunk ch's low bit pair at shift 2 (ch % 4) of area ch / 4, its hmask bit at bit ch of the
  // high-bit area, moved to bit 2: unsigned 3-bit values.
  static void Unpack(const uint8_t* data, int c, int h, __m256i (&w)[2]) {
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    const __m256i pairs =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(data + 64 * (c / 2) + 32 * h));
    const __m256i bits = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(data + pack::kQ3_Kx16HighBits + 32 * h));
    for (int i = 0; i < 2; ++i) {
      const int ch = 2 * c + i;
      const __m256i hbit =
          ch < 2 ? _mm256_slli_epi16(bits, 2 - ch) : _mm256_srli_epi16(bits, ch - 2);
      w[i] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(pairs, 2 * (ch % 4)), m3),
                             _mm256_and_si256(hbit, m4));
    }
  }
};

// Q6_Kx16 and Q3_Kx16 on AVX2. Per 64-byte run c of a sub-block, chunks 2c and 2c + 1 of each
// 8-row half (Fmt::Unpack). Two maddubs against the token's broadcast quads sum to at most
// 2 * 2 * 63 * 127 = 32004 per int16 lane (Q6_K; 3556 for Q3_K), which madd then multiplies
// by the row's scale of that 16-value half (runs 0-1: scale 2j, runs 2-3: scale 2j + 1;
// (scale, scale) int16 pairs) into int32. The values' offset (32, 4) comes off per block as
// offset * (scale_2j * sum16_lo + scale_2j+1 * sum16_hi), one more madd of (scale_2j,
// scale_2j+1) pairs with the token's two 16-value activation sums.
template <class Fmt, int NT>
void GemmScaled16x16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                      int64_t token, float* out, int64_t ldo) {
  const __m256i low16 = _mm256_set1_epi32(0xFFFF);
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  alignas(32) int8_t scratch[256];   // [scale k][row] where the layout does not store int8
  alignas(32) int32_t pair[16][16];  // [scale k][row]: (scale, scale)
  alignas(32) int32_t lohi[8][16];   // [sub-block j][row]: (scale 2j, scale 2j + 1)
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, group += Fmt::kBlockBytes) {
    const int8_t* scales = Fmt::Scales16(group, scratch);
    for (int k = 0; k < 16; ++k) {
      for (int h = 0; h < 2; ++h) {
        const __m256i x = _mm256_cvtepi8_epi32(
            _mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales + 16 * k + 8 * h)));
        const __m256i packed =
            _mm256_or_si256(_mm256_and_si256(x, low16), _mm256_slli_epi32(x, 16));
        _mm256_store_si256(reinterpret_cast<__m256i*>(pair[k] + 8 * h), packed);
        if (k % 2 == 1) {
          const __m256i lo =
              _mm256_load_si256(reinterpret_cast<const __m256i*>(pair[k - 1] + 8 * h));
          _mm256_store_si256(reinterpret_cast<__m256i*>(lohi[k / 2] + 8 * h),
                             _mm256_blend_epi16(lo, packed, 0xAA));
        }
      }
    }
    __m256 d[2];
    LoadGroupScales(group, d);
    for (int j = 0; j < 8; ++j) {
      const uint8_t* data = group + Fmt::kData + Fmt::kSubBlockBytes * j;
      simd::PrefetchAhead<Fmt::kSubBlockBytes>(data);
      const int64_t b = sb * 8 + j;
      __m256i s32[NT][2];
      for (int t = 0; t < NT; ++t) s32[t][0] = s32[t][1] = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c) {
        __m256i w[2][2];  // [half][chunk 2c or 2c + 1]
        for (int h = 0; h < 2; ++h) Fmt::Unpack(data, c, h, w[h]);
        const int32_t* sc = pair[2 * j + c / 2];
        for (int t = 0; t < NT; ++t) {
          __m256i a0, a1;
          BroadcastQuads(a.q_row(token + t) + b * 32 + 8 * c, &a0, &a1);
          for (int h = 0; h < 2; ++h) {
            const __m256i p16 = ChunkPairSums16(w[h], a0, a1);
            s32[t][h] = _mm256_add_epi32(
                s32[t][h],
                _mm256_madd_epi16(p16,
                                  _mm256_load_si256(reinterpret_cast<const __m256i*>(sc + 8 * h))));
          }
        }
      }
      for (int t = 0; t < NT; ++t) {
        int32_t sums;  // the token's two 16-value sums of this block, as an int16 pair
        std::memcpy(&sums, a.sum16_row(token + t) + 2 * b, 4);
        const __m256i vsums = _mm256_set1_epi32(sums);
        const __m256 da = _mm256_set1_ps(a.scale_row(token + t)[b]);
        for (int h = 0; h < 2; ++h) {
          const __m256i offset = _mm256_slli_epi32(
              _mm256_madd_epi16(
                  _mm256_load_si256(reinterpret_cast<const __m256i*>(lohi[j] + 8 * h)), vsums),
              Fmt::kOffsetShift);
          acc[t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s32[t][h], offset)),
                                      _mm256_mul_ps(d[h], da), acc[t][h]);
        }
      }
    }
  }
  StoreGroupTile<NT>(acc, out, ldo);
}

void GemmQ6_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<4>(ntok, [&](int first, auto nt) {
    GemmScaled16x16T<Q6KX16, decltype(nt)::value>(group, nblocks, a, token + first,
                                                  out + first * ldo, ldo);
  });
}

void GemmQ3_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<4>(ntok, [&](int first, auto nt) {
    GemmScaled16x16T<Q3KX16, decltype(nt)::value>(group, nblocks, a, token + first,
                                                  out + first * ldo, ldo);
  });
}

void Bf16ToF32(const uint8_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
  }
  ReferenceTable().bf16_to_f32(src + 2 * i, n - i, dst + i);  // the tail
}

void F16ToF32(const uint8_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  ReferenceTable().f16_to_f32(src + 2 * i, n - i, dst + i);  // the tail
}

void F32ToF16(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h =
        _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  ReferenceTable().f32_to_f16(src + i, n - i, dst + i);  // the tail
}

void QuantizeBlocks(const float* x, int64_t nblocks, int8_t* q, float* scale, int32_t* sum,
                    float* offset) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < nblocks; ++b, x += 32, q += 32) {
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(x + 8 * i);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    const float d = _mm_cvtss_f32(m) / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0 ? 1.0f / d : 0.0f);
    __m256i i32[4];
    for (int i = 0; i < 4; ++i) i32[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], id));
    // Pack 32-bit -> 16-bit -> 8-bit (saturating; values are within [-127, 127]) and undo the
    // lane interleaving of the pack instructions.
    const __m256i p16a = _mm256_packs_epi32(i32[0], i32[1]);
    const __m256i p16b = _mm256_packs_epi32(i32[2], i32[3]);
    const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    const __m256i ordered =
        _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), ordered);
    __m256i s =
        _mm256_add_epi32(_mm256_add_epi32(i32[0], i32[1]), _mm256_add_epi32(i32[2], i32[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
    const int32_t total = _mm_cvtsi128_si32(s4);
    scale[b] = d;
    sum[b] = total;
    offset[b] = 8.0f * static_cast<float>(total) * d;
  }
}

using Arch = xsimd::fma3<xsimd::avx2>;

}  // namespace

const KernelTable& Table() {
  static const KernelTable table = {
      .isa = "avx2",
      .dot_q8_0 = GEMMA4_BY_TOKEN_COUNT(DotQ8_0T),
      .dot_q4_0 = GEMMA4_BY_TOKEN_COUNT(DotQ4_0T),
      .dot_q4_0r = GEMMA4_BY_TOKEN_COUNT(DotQ4_0RT),
      .dot_q6_k = GEMMA4_BY_TOKEN_COUNT(DotQ6_KT),
      .dot_q4_k = GEMMA4_BY_TOKEN_COUNT(DotQ4_KT),
      .dot_q5_k = GEMMA4_BY_TOKEN_COUNT(DotQ5_KT),
      .dot_q5_1 = GEMMA4_BY_TOKEN_COUNT(DotQ5_1T),
      .dot_iq4_xs = GEMMA4_BY_TOKEN_COUNT(DotIQ4_XST),
      .dot_iq4_nl = GEMMA4_BY_TOKEN_COUNT(DotIQ4_NLT),
      .dot_mxfp4 = GEMMA4_BY_TOKEN_COUNT(DotMXFP4T),
      .dot_q3_k = GEMMA4_BY_TOKEN_COUNT(DotQ3_KT),
      .dot_q4_1 = GEMMA4_BY_TOKEN_COUNT(DotQ4_1T),
      .dot_q2_k = GEMMA4_BY_TOKEN_COUNT(DotQ2_KT),
      .dot_iq2_xxs = GEMMA4_BY_TOKEN_COUNT(DotIQ2_XXST),
      .dot_iq2_xs = GEMMA4_BY_TOKEN_COUNT(DotIQ2_XST),
      .dot_iq2_s = GEMMA4_BY_TOKEN_COUNT(DotIQ2_ST),
      .dot_iq3_xxs = GEMMA4_BY_TOKEN_COUNT(DotIQ3_XXST),
      .dot_iq3_s = GEMMA4_BY_TOKEN_COUNT(DotIQ3_ST),
      .dot_iq1_s = GEMMA4_BY_TOKEN_COUNT(DotIQ1_ST),
      .dot_iq1_m = GEMMA4_BY_TOKEN_COUNT(DotIQ1_MT),
      .dot_codebook_tile = DotCodebookTile,
      .gemm_codebook_x16 = GemmCodebookX16,
      .gemm_codebook_x16_takes = GemmCodebookX16Takes,
      .gemm_q4_0r = nullptr,
      .dot_q8_0r = ReferenceTable().dot_q8_0r,
      .gemm_q8_0r = nullptr,
      .gemm_q4_0x16 = GemmQ4_0x16,
      .gemm_q8_0x16 = GemmQ8_0x16,
      .gemm_q4_0x16_pair = nullptr,
      .gemm_q8_0x16_pair = nullptr,
      .thread_scratch_bytes = kCodebookScratchBytes,
      .gemm_q4_kx16 = GemmQ4_Kx16,
      .gemm_q6_kx16 = GemmQ6_Kx16,
      .gemm_q5_kx16 = GemmQ5_Kx16,
      .gemm_iq4_xsx16 = GemmIQ4_XSx16,
      .gemm_q3_kx16 = GemmQ3_Kx16,
      .gemm_q4_1x16 = GemmQ4_1x16,
      .gemm_q5_1x16 = GemmQ5_1x16,
      .gemm_q2_kx16 = GemmQ2_Kx16,
      .gemm_iq4_nlx16 = GemmNonLinearX16<IQ4NLFormat>,
      .gemm_iq4_nlx16_pair = nullptr,
      .gemm_mxfp4x16 = GemmNonLinearX16<MXFP4Format>,
      .gemm_mxfp4x16_pair = nullptr,
      .quantize_blocks = QuantizeBlocks,
      GEMMA4_FLOAT_KERNEL_ROWS(Arch),
      .bf16_to_f32 = Bf16ToF32,
      .f16_to_f32 = F16ToF32,
      .f32_to_f16 = F32ToF16,
      .gemm_f32_mr = 6,
      .gemm_f32_nr = 16,
      .gemm_f32_packed = simd::GemmPacked<Arch, 6, 2>,
      .gemm_f16_packed = simd::GemmPacked<Arch, 6, 2, simd::F16Weights>,
      .gemm_bf16_packed = simd::GemmPacked<Arch, 6, 2, simd::Bf16Weights>,
      .pack_gemm_tokens = PackGemmTokens,
      .pack_gemm_panel = PackGemmPanel};
  return table;
}

}  // namespace gemma4::kernels::avx2

namespace gemma4::kernels {

const KernelTable& Avx2Table() { return avx2::Table(); }

}  // namespace gemma4::kernels
