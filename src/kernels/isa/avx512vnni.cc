// AVX-512 (F, BW, VL, DQ) + VNNI + F16C kernels: vpdpbusd multiplies unsigned weight bytes
// with signed activation bytes and accumulates into int32 in one instruction, two 32-value
// blocks per 512-bit register. Compiled with those flags; only called after
// CpuSupports(Isa::kAvx512Vnni).
// GCC 12's AVX-512 headers use _mm512_undefined_*() placeholders that trip
// -Wmaybe-uninitialized at every inlined call site (GCC bug 105593); the values are never read.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
// Everything this unit defines lives in namespace avx512 (float_kernels-inl.h opens it from
// this macro), so no other object can share its symbols (see CMakeLists.txt: -fno-weak).
#define GEMMA4_ISA_NAMESPACE avx512
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "kernels/isa/avx512_transpose-inl.h"
#include "kernels/isa/codebook-inl.h"
#include "kernels/isa/float_kernels-inl.h"
#include "kernels/kernels.h"
#include "kernels/pack/pack.h"
#include "kernels/ref/reference_dots.h"
#include "quant/iq_grids.h"

namespace gemma4::kernels::avx512 {

const KernelTable& Table();

namespace {

inline float LoadHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Two Q4_0 blocks' nibbles as 64 unsigned bytes in element order: [lo0 hi0 lo1 hi1].
inline __m512i ExpandQ4Pair(const uint8_t* qs0, const uint8_t* qs1) {
  const __m256i raw = _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1)),
                                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0)));
  const __m256i mask = _mm256_set1_epi8(0x0F);
  const __m256i lo = _mm256_and_si256(raw, mask);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
  const __m512i z = _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1);  // lo0 lo1 hi0 hi1
  return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
}

inline __m256i ExpandQ4(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), mask), _mm_and_si128(raw, mask));
}

inline __m512 PairScale(float s0, float s1) {
  return _mm512_insertf32x8(_mm512_zextps256_ps512(_mm256_set1_ps(s0)), _mm256_set1_ps(s1), 1);
}

inline float HorizontalSum128(__m128 c) {
  c = _mm_add_ps(c, _mm_movehl_ps(c, c));
  c = _mm_add_ss(c, _mm_shuffle_ps(c, c, 1));
  return _mm_cvtss_f32(c);
}

inline float HorizontalSum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

template <int NT>
void DotQ4_0T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  __m512 acc[NT];
  float corr[NT];
  const int8_t* aq[NT];
  const float* as[NT];
  const int32_t* asum[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm512_setzero_ps();
    corr[t] = 0;
    aq[t] = a.q_row(token + t);
    as[t] = a.scale_row(token + t);
    asum[t] = a.sum_row(token + t);
  }
  constexpr int kB = quant::kQ4_0BlockBytes;
  int64_t b = 0;
  for (; b + 2 <= nblocks; b += 2, w += 2 * kB) {
    const float dw0 = LoadHalf(w), dw1 = LoadHalf(w + kB);
    const __m512i wq = ExpandQ4Pair(w + 2, w + kB + 2);
    for (int t = 0; t < NT; ++t) {
      const __m512i av = _mm512_loadu_si512(aq[t] + b * 32);
      const __m512i dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, av);
      const float d0 = dw0 * as[t][b], d1 = dw1 * as[t][b + 1];
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), PairScale(d0, d1), acc[t]);
      corr[t] +=
          d0 * static_cast<float>(8 * asum[t][b]) + d1 * static_cast<float>(8 * asum[t][b + 1]);
    }
  }
  float tail[NT] = {};
  if (b < nblocks) {
    const float dw = LoadHalf(w);
    const __m256i wq = ExpandQ4(w + 2);
    for (int t = 0; t < NT; ++t) {
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq[t] + b * 32));
      const __m256i dp = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wq, av);
      const float d = dw * as[t][b];
      tail[t] = HorizontalSum256(_mm256_mul_ps(_mm256_cvtepi32_ps(dp), _mm256_set1_ps(d)));
      corr[t] += d * static_cast<float>(8 * asum[t][b]);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]) + tail[t] - corr[t];
}

// |w| (unsigned) times a * sign(w) (signed) equals w * a for int8 in [-127, 127].
inline __m512i DotS8S8(__m512i wq, __m512i av) {
  const __mmask64 neg = _mm512_movepi8_mask(wq);
  const __m512i wabs = _mm512_abs_epi8(wq);
  const __m512i asg = _mm512_mask_sub_epi8(av, neg, _mm512_setzero_si512(), av);
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), wabs, asg);
}

template <int NT>
void DotQ8_0T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  __m512 acc[NT];
  const int8_t* aq[NT];
  const float* as[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm512_setzero_ps();
    aq[t] = a.q_row(token + t);
    as[t] = a.scale_row(token + t);
  }
  constexpr int kB = quant::kQ8_0BlockBytes;
  int64_t b = 0;
  for (; b + 2 <= nblocks; b += 2, w += 2 * kB) {
    const float dw0 = LoadHalf(w), dw1 = LoadHalf(w + kB);
    const __m512i wq = _mm512_inserti64x4(
        _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kB + 2)), 1);
    for (int t = 0; t < NT; ++t) {
      const __m512i av = _mm512_loadu_si512(aq[t] + b * 32);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DotS8S8(wq, av)),
                               PairScale(dw0 * as[t][b], dw1 * as[t][b + 1]), acc[t]);
    }
  }
  float tail[NT] = {};
  if (b < nblocks) {
    const float dw = LoadHalf(w);
    const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2));
    const __m256i wabs = _mm256_sign_epi8(wq, wq);
    for (int t = 0; t < NT; ++t) {
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq[t] + b * 32));
      const __m256i dp =
          _mm256_dpbusd_epi32(_mm256_setzero_si256(), wabs, _mm256_sign_epi8(av, wq));
      tail[t] =
          HorizontalSum256(_mm256_mul_ps(_mm256_cvtepi32_ps(dp), _mm256_set1_ps(dw * as[t][b])));
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]) + tail[t];
}

// Repacked formats (DType::kQ4_0R, kQ8_0R): groups of four blocks, each group four f16 scales
// then the values of blocks 0-1 and 2-3 as two 64-byte runs of unsigned bytes that meet two
// plain 64-byte activation loads. Q4_0R packs both runs into one 64-byte load (low and high
// nibbles, values + 8); Q8_0R stores them as values + 128. The offset (8 or 128 times the
// activation sum) comes off in a separate light pass over the scales.
struct Q4Groups {
  static constexpr int kGroupBytes = 72;
  static constexpr float kOffsetScale = 1.0f;  // QuantizedActivations::offset holds 8 * sum * d
  static void Load(const uint8_t* g, __m512i* lo, __m512i* hi) {
    const __m512i mask = _mm512_set1_epi8(0x0F);
    const __m512i bytes = _mm512_loadu_si512(g + 8);
    *lo = _mm512_and_si512(bytes, mask);
    *hi = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), mask);
  }
  static float Tail(const uint8_t* w, const int8_t* q, const float* sc, const int32_t* sum,
                    int64_t n) {
    return DotQ4_0Reference(w, q, sc, sum, n);
  }
};

struct Q8Groups {
  static constexpr int kGroupBytes = 136;
  static constexpr float kOffsetScale = 16.0f;  // 128 * sum * d
  static void Load(const uint8_t* g, __m512i* lo, __m512i* hi) {
    *lo = _mm512_loadu_si512(g + 8);
    *hi = _mm512_loadu_si512(g + 72);
  }
  static float Tail(const uint8_t* w, const int8_t* q, const float* sc, const int32_t*, int64_t n) {
    return DotQ8_0Reference(w, q, sc, n);
  }
};

// R rows (w + r * row_bytes) times NT tokens; out[r * ldo + t]. Each activation load and scale
// permutation serves all R rows; the weights' unpacking serves all NT tokens.
template <class Fmt, int R, int NT>
void GroupTile(const uint8_t* w, uint64_t row_bytes, int64_t nblocks, const QuantizedActivations& a,
               int64_t token, float* out, int64_t ldo) {
  const int64_t groups = nblocks / 4;
  const __m512i idx_lo = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i idx_hi = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
  __m512 acc[R][NT];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  for (int64_t gi = 0; gi < groups; ++gi) {
    // Per row: the four block scales spread to the lanes each block's dot product lands in
    // (blocks 0-1 for the low run, 2-3 for the high run); per token the same for the
    // activation scales. Two permutations per row and two per token, all amortised.
    __m512 dw_lo[R], dw_hi[R];
    __m512i lo[R], hi[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* g = w + r * row_bytes + gi * Fmt::kGroupBytes;
      const __m512 dw = _mm512_broadcast_f32x4(
          _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(g))));
      dw_lo[r] = _mm512_permutexvar_ps(idx_lo, dw);
      dw_hi[r] = _mm512_permutexvar_ps(idx_hi, dw);
      Fmt::Load(g, &lo[r], &hi[r]);
    }
    for (int t = 0; t < NT; ++t) {
      const int8_t* q = a.q_row(token + t) + gi * 128;
      const __m512i q_lo = _mm512_loadu_si512(q);
      const __m512i q_hi = _mm512_loadu_si512(q + 64);
      const __m512 da = _mm512_broadcast_f32x4(_mm_loadu_ps(a.scale_row(token + t) + gi * 4));
      const __m512 da_lo = _mm512_permutexvar_ps(idx_lo, da);
      const __m512 da_hi = _mm512_permutexvar_ps(idx_hi, da);
      for (int r = 0; r < R; ++r) {
        acc[r][t] = _mm512_fmadd_ps(
            _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[r], q_lo)),
            _mm512_mul_ps(dw_lo[r], da_lo), acc[r][t]);
        acc[r][t] = _mm512_fmadd_ps(
            _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[r], q_hi)),
            _mm512_mul_ps(dw_hi[r], da_hi), acc[r][t]);
      }
    }
  }
  const int64_t tail = nblocks - 4 * groups, b0 = 4 * groups;
  for (int r = 0; r < R; ++r) {
    const uint8_t* row = w + r * row_bytes;
    for (int t = 0; t < NT; ++t) {
      const float* off = a.offset_row(token + t);
      __m128 c = _mm_setzero_ps();
      for (int64_t gi = 0; gi < groups; ++gi) {
        c = _mm_fmadd_ps(_mm_cvtph_ps(_mm_loadl_epi64(
                             reinterpret_cast<const __m128i*>(row + gi * Fmt::kGroupBytes))),
                         _mm_loadu_ps(off + gi * 4), c);
      }
      float total = _mm512_reduce_add_ps(acc[r][t]) - Fmt::kOffsetScale * HorizontalSum128(c);
      if (tail > 0) {
        total += Fmt::Tail(row + groups * Fmt::kGroupBytes, a.q_row(token + t) + b0 * 32,
                           a.scale_row(token + t) + b0, a.sum_row(token + t) + b0, tail);
      }
      out[r * ldo + t] = total;
    }
  }
}

template <class Fmt>
void GroupDot(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              int ntok, float* out) {
  simd::ForTokenCount(ntok, [&](auto nt) {
    GroupTile<Fmt, 1, decltype(nt)::value>(w, 0, nblocks, a, token, out, 0);
  });
}

template <class Fmt>
void GroupGemm(const uint8_t* w, uint64_t row_bytes, int nrows, int64_t nblocks,
               const QuantizedActivations& a, int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenCount(ntok, [&](auto nt) {
    if (nrows >= 2) {
      GroupTile<Fmt, 2, decltype(nt)::value>(w, row_bytes, nblocks, a, token, out, ldo);
    } else {
      GroupTile<Fmt, 1, decltype(nt)::value>(w, row_bytes, nblocks, a, token, out, ldo);
    }
  });
}

// Q6_K: per 128-value half, three 32-byte loads unpack to four 32-byte vectors of unsigned
// 6-bit values in element order (each one activation block); dot products subtract 32 * sum(a)
// with a second vpdpbusd, then each 4-lane group is scaled by its sub-block's int8 scale.
template <int NT>
void DotQ6_KT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
  const __m512i thirty_two = _mm512_set1_epi8(32);
  const __m128i spread = _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += 210) {
    simd::PrefetchAhead<210>(w);
    const float d = LoadHalf(w + 208);
    const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192);
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = w + 64 * half;
      const uint8_t* qh = w + 128 + 32 * half;
      const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
      const __m256i q0 =
          _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
      const __m256i q1 =
          _mm256_or_si256(_mm256_and_si256(ql1, m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
      const __m256i q2 =
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
      const __m256i q3 =
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
      const __m512i q01 = _mm512_inserti64x4(_mm512_zextsi256_si512(q0), q1, 1);
      const __m512i q23 = _mm512_inserti64x4(_mm512_zextsi256_si512(q2), q3, 1);
      const __m512 sc01 = _mm512_cvtepi32_ps(
          _mm512_cvtepi8_epi32(_mm_shuffle_epi8(_mm_loadu_si32(sc + 8 * half), spread)));
      const __m512 sc23 = _mm512_cvtepi32_ps(
          _mm512_cvtepi8_epi32(_mm_shuffle_epi8(_mm_loadu_si32(sc + 8 * half + 4), spread)));
      const int64_t b = sb * 8 + half * 4;  // first activation block of this half
      for (int t = 0; t < NT; ++t) {
        const int8_t* q = a.q_row(token + t) + b * 32;
        const float* as = a.scale_row(token + t) + b;
        const __m512i a01 = _mm512_loadu_si512(q);
        const __m512i a23 = _mm512_loadu_si512(q + 64);
        const __m512i dp01 =
            _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q01, a01),
                             _mm512_dpbusd_epi32(_mm512_setzero_si512(), thirty_two, a01));
        const __m512i dp23 =
            _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q23, a23),
                             _mm512_dpbusd_epi32(_mm512_setzero_si512(), thirty_two, a23));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp01),
                                 _mm512_mul_ps(sc01, PairScale(d * as[0], d * as[1])), acc[t]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp23),
                                 _mm512_mul_ps(sc23, PairScale(d * as[2], d * as[3])), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
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

// Q3_K: per 128-value half, the 32 bytes of low bit pairs and the block's 32 hmask bytes make
// four 32-byte vectors of unsigned values (low bits + 4 * hmask bit, 0..7) in element order,
// each one activation block; as Q6_K, a second vpdpbusd takes off 4 * sum(a) and each 4-lane
// group is scaled by its sub-block's scale.
template <int NT>
void DotQ3_KT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
  const __m512i fours = _mm512_set1_epi8(4);
  // Scale bytes 4 q .. 4 q + 3 spread over four dword lanes each, q = 0..3.
  const __m128i spread[4] = {
      _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
      _mm_setr_epi8(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7),
      _mm_setr_epi8(8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11),
      _mm_setr_epi8(12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15)};
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += quant::kQ3_KBlockBytes) {
    simd::PrefetchAhead<quant::kQ3_KBlockBytes>(w);
    const float d = LoadHalf(w + quant::kQ3_KD);
    const __m128i sc = Q3_KScalesI8(w + quant::kQ3_KScales);
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    for (int half = 0; half < 2; ++half) {
      const __m256i qs =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + quant::kQ3_KLow + 32 * half));
      __m256i q[4];
      for (int k = 0; k < 4; ++k) {
        const int g = 4 * half + k;  // group g: bit g of hmask moved to bit 2
        const __m256i high = g < 2 ? _mm256_slli_epi16(hm, 2 - g) : _mm256_srli_epi16(hm, g - 2);
        q[k] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qs, 2 * k), m3),
                               _mm256_and_si256(high, m4));
      }
      const __m512i q01 = _mm512_inserti64x4(_mm512_zextsi256_si512(q[0]), q[1], 1);
      const __m512i q23 = _mm512_inserti64x4(_mm512_zextsi256_si512(q[2]), q[3], 1);
      const __m512 sc01 =
          _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_shuffle_epi8(sc, spread[2 * half])));
      const __m512 sc23 =
          _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_shuffle_epi8(sc, spread[2 * half + 1])));
      const int64_t b = sb * 8 + half * 4;  // first activation block of this half
      for (int t = 0; t < NT; ++t) {
        const int8_t* qa = a.q_row(token + t) + b * 32;
        const float* as = a.scale_row(token + t) + b;
        const __m512i a01 = _mm512_loadu_si512(qa);
        const __m512i a23 = _mm512_loadu_si512(qa + 64);
        const __m512i dp01 =
            _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q01, a01),
                             _mm512_dpbusd_epi32(_mm512_setzero_si512(), fours, a01));
        const __m512i dp23 =
            _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q23, a23),
                             _mm512_dpbusd_epi32(_mm512_setzero_si512(), fours, a23));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp01),
                                 _mm512_mul_ps(sc01, PairScale(d * as[0], d * as[1])), acc[t]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp23),
                                 _mm512_mul_ps(sc23, PairScale(d * as[2], d * as[3])), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

// Q4_K: each 32-value sub-block is one activation block. A 32-byte chunk holds sub-block 2c in
// its low nibbles and 2c + 1 in its high nibbles, which together meet one 64-byte activation
// load; the 6-bit scales and mins are unpacked per 256-value block.
// Q5_K (kFifthBit): the same with a fifth bit per value: sub-block j's is bit j of qh[l] (l the
// chunk's byte), shifted down by 2c (16-bit shifts: the bits that cross into a byte's top are
// masked off) and up into bit 4 of each byte.
template <int NT, bool kFifthBit = false>
void DotQ4_KT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  constexpr int kBlockBytes = kFifthBit ? quant::kQ5_KBlockBytes : quant::kQ4_KBlockBytes;
  constexpr int kNibbles = kFifthBit ? quant::kQ5_KLow : 16;
  __m512 acc[NT];
  float mins[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm512_setzero_ps();
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
      const __m512i q = _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1);
      const int64_t b = sb * 8 + 2 * c;
      for (int t = 0; t < NT; ++t) {
        const float* as = a.scale_row(token + t) + b;
        const int32_t* sum = a.sum_row(token + t) + b;
        const __m512i dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q,
                                               _mm512_loadu_si512(a.q_row(token + t) + b * 32));
        acc[t] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp),
                            PairScale(d * sc[2 * c] * as[0], d * sc[2 * c + 1] * as[1]), acc[t]);
        mins[t] += dmin * (m[2 * c] * as[0] * static_cast<float>(sum[0]) +
                           m[2 * c + 1] * as[1] * static_cast<float>(sum[1]));
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]) - mins[t];
}

template <int NT>
void DotQ5_KT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  DotQ4_KT<NT, true>(w, nblocks, a, token, out);
}

// Q2_K: per 128-value half h, the 32 bytes qs[32 h ..] hold four activation blocks (block
// 4 h + j at bits 2 j .. 2 j + 1 of each byte), loaded into both 256-bit halves of a vector and
// shifted by 0 and 2 (blocks j = 0, 1) or 4 and 6 (j = 2, 3) per half: two blocks per vector in
// element order, unsigned for vpdpbusd. Each dword lane then sums 4 products of one 16-value
// sub-block, at most 4 * 3 * 127 in magnitude, so vpmaddwd against the sub-block's scale (the
// lane's high word 0) gives scale * sum in int32, and each block pair is scaled by d times its
// activation scales. The mins come off once per super-block: dmin times the sum over blocks of
// a_scale * (m_2b sum16_2b + m_2b+1 sum16_2b+1), one vpmaddwd of the 16 mins with the 16
// per-16 activation sums (QuantizedActivations::sum16).
template <int NT>
void DotQ2_KT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  __m512 acc[NT];
  __m256 mins[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm512_setzero_ps();
    mins[t] = _mm256_setzero_ps();
  }
  const __m512i three = _mm512_set1_epi8(3);
  const __m512i shift01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
  const __m512i shift23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
  const __m512i low4 = _mm512_set1_epi32(0x0F);
  // Byte k / 4 of four scale bytes to dword lane k (each sub-block's four lanes).
  const __m128i spread = _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += quant::kQ2_KBlockBytes) {
    simd::PrefetchAhead<quant::kQ2_KBlockBytes>(w);
    const float d = LoadHalf(w + quant::kQ2_KD), dmin = LoadHalf(w + quant::kQ2_KD + 2);
    const __m128i scale_bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
    const __m256i m16 =
        _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(scale_bytes, 4), _mm_set1_epi8(0x0F)));
    for (int t = 0; t < NT; ++t) {
      const __m256i s16 =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.sum16_row(token + t) + sb * 16));
      const __m256 dmin_as =
          _mm256_mul_ps(_mm256_set1_ps(dmin), _mm256_loadu_ps(a.scale_row(token + t) + sb * 8));
      mins[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(m16, s16)), dmin_as, mins[t]);
    }
    for (int half = 0; half < 2; ++half) {
      const __m512i raw = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + quant::kQ2_KValues + 32 * half)));
      const __m512i q01 = _mm512_and_si512(_mm512_srlv_epi16(raw, shift01), three);
      const __m512i q23 = _mm512_and_si512(_mm512_srlv_epi16(raw, shift23), three);
      const __m512i sc01 = _mm512_and_si512(
          _mm512_cvtepu8_epi32(_mm_shuffle_epi8(_mm_loadu_si32(w + 8 * half), spread)), low4);
      const __m512i sc23 = _mm512_and_si512(
          _mm512_cvtepu8_epi32(_mm_shuffle_epi8(_mm_loadu_si32(w + 8 * half + 4), spread)), low4);
      const int64_t b = sb * 8 + half * 4;  // first activation block of this half
      for (int t = 0; t < NT; ++t) {
        const int8_t* q = a.q_row(token + t) + b * 32;
        const float* as = a.scale_row(token + t) + b;
        const __m512i dp01 = _mm512_madd_epi16(
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), q01, _mm512_loadu_si512(q)), sc01);
        const __m512i dp23 = _mm512_madd_epi16(
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), q23, _mm512_loadu_si512(q + 64)), sc23);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp01), PairScale(d * as[0], d * as[1]), acc[t]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp23), PairScale(d * as[2], d * as[3]), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]) - HorizontalSum256(mins[t]);
}

// The IQ2 formats' decoding for DotIQ2T, two sub-blocks (2p, 2p + 1) at a time in vectors
// (scalar decoding, kernels/isa/codebook-inl.h, measured 2-3x slower here): Load gives the
// eight grid indices in dword lanes (lane l: group l % 4 of sub-block 2p + l / 4), the 64 signs
// as a mask (bit e: weight e of the pair negative) and the two scale bytes as a u16 (nibble k:
// s of half k). IQ2_XXS and IQ2_XS store 7-bit sign indices; SignMask appends each one's parity
// bit (kIQSignBits' rule: an even count of negative weights) with a nibble-parity table.
inline __mmask64 SignMask(__m256i seven_bits) {
  const __m128i b = _mm256_cvtepi32_epi8(seven_bits);  // the 8 indices as bytes
  const __m128i parity_table = _mm_setr_epi8(0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0);
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m128i parity =
      _mm_xor_si128(_mm_shuffle_epi8(parity_table, _mm_and_si128(b, low4)),
                    _mm_shuffle_epi8(parity_table, _mm_and_si128(_mm_srli_epi16(b, 4), low4)));
  // parity is 0 or 1 per byte, so the 16-bit shift keeps each bit in its byte.
  return static_cast<__mmask64>(_mm_cvtsi128_si64(_mm_or_si128(b, _mm_slli_epi16(parity, 7))));
}

struct IQ2XXSPairs {
  static constexpr int kBlockBytes = quant::kIQ2_XXSBlockBytes;
  static const uint64_t* Grid() { return quant::kIQ2XXSGrid.data(); }
  // Bytes 2 + 16 p ..: sub-block 2p's four index bytes and u32 (sign indices at bits 7 l, s at
  // 28-31), then sub-block 2p + 1's.
  static __m256i Load(const uint8_t* block, int p, __mmask64* negative, uint32_t* scales) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2 + 16 * p));
    const __m256i index = _mm256_cvtepu8_epi32(_mm_shuffle_epi8(
        raw, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1)));
    const __m256i aux = _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(raw),
                                                    _mm256_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3));
    *negative = SignMask(
        _mm256_and_si256(_mm256_srlv_epi32(aux, _mm256_setr_epi32(0, 7, 14, 21, 0, 7, 14, 21)),
                         _mm256_set1_epi32(127)));
    const uint32_t s0 = static_cast<uint32_t>(_mm_extract_epi32(raw, 1)) >> 28;
    const uint32_t s1 = static_cast<uint32_t>(_mm_extract_epi32(raw, 3)) >> 28;
    *scales = s0 * 0x11 | (s1 * 0x11) << 8;  // one s per sub-block, for both halves
    return index;
  }
};

struct IQ2XSPairs {
  static constexpr int kBlockBytes = quant::kIQ2_XSBlockBytes;
  static const uint64_t* Grid() { return quant::kIQ2XSGrid.data(); }
  // u16 qs[8 p .. 8 p + 7] at 2 + 16 p: 9-bit grid index, 7-bit sign index; scales at 66 + 2p.
  static __m256i Load(const uint8_t* block, int p, __mmask64* negative, uint32_t* scales) {
    const __m256i v = _mm256_cvtepu16_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2 + 16 * p)));
    *negative = SignMask(_mm256_srli_epi32(v, 9));
    *scales = iq2::LoadU16(block + quant::kIQ2_XSScales + 2 * p);
    return _mm256_and_si256(v, _mm256_set1_epi32(511));
  }
};

struct IQ2SPairs {
  static constexpr int kBlockBytes = quant::kIQ2_SBlockBytes;
  static const uint64_t* Grid() { return quant::kIQ2SGrid.data(); }
  // Index low bytes at 2 + 8 p, bits 8-9 of group l at bits 2 l of qh[2p + l / 4] (66 + 2p);
  // explicit signs (bit e: weight e) at 34 + 8 p; scales at 74 + 2p.
  static __m256i Load(const uint8_t* block, int p, __mmask64* negative, uint32_t* scales) {
    const __m256i low =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 + 8 * p)));
    const __m256i qh = _mm256_setr_m128i(_mm_set1_epi32(block[quant::kIQ2_SHigh + 2 * p]),
                                         _mm_set1_epi32(block[quant::kIQ2_SHigh + 2 * p + 1]));
    const __m256i high = _mm256_and_si256(
        _mm256_srlv_epi32(qh, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)), _mm256_set1_epi32(3));
    uint64_t signs;
    std::memcpy(&signs, block + quant::kIQ2_SSigns + 8 * p, 8);
    *negative = signs;
    *scales = iq2::LoadU16(block + quant::kIQ2_SScales + 2 * p);
    return _mm256_or_si256(low, _mm256_slli_epi32(high, 8));
  }
};

// IQ2_XXS / IQ2_XS / IQ2_S (Fmt: IQ2XXSPairs, IQ2XSPairs, IQ2SPairs): two 32-value sub-blocks
// (2p, 2p + 1) per step. Their eight grid entries (one gather) make one 64-byte vector of
// unsigned magnitudes (<= 43) in element order, and their 64 signs one mask that negates the
// matching activations (an activation is never -128: QuantizeActivations scales to +-127).
// vpdpbusd then sums four products per dword lane (at most 4 * 43 * 127 = 21844 in magnitude,
// so the lane's low word holds it as a signed int16 and its high word is only its sign), and
// vpmaddwd against the halves' multipliers 2 s + 1 (low words; high words 0) gives m * sum in
// int32: lanes 0-3 and 4-7 are sub-block 2p's halves, 8-11 and 12-15 sub-block 2p + 1's. Each
// pair is then scaled by d / 8 times its two activation scales. A step's weights are decoded
// once for all NT tokens.
template <class Fmt, int NT>
void DotIQ2T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             float* out) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i zero = _mm512_setzero_si512();
  // Dword lane k takes nibble k / 4 of the two scale bytes.
  const __m512i nibble_shift =
      _mm512_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12);
  const __m512i low4 = _mm512_set1_epi32(0x0F), one = _mm512_set1_epi32(1);
  const __m512i pair_lanes = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += Fmt::kBlockBytes) {
    simd::PrefetchAhead<Fmt::kBlockBytes>(w);
    const __m256 d = _mm256_set1_ps(LoadHalf(w) * iq2::kUnit);
    __m512 scale[NT];  // d / 8 times the token's 8 activation scales of this block
    for (int t = 0; t < NT; ++t) {
      scale[t] = _mm512_castps256_ps512(
          _mm256_mul_ps(d, _mm256_loadu_ps(a.scale_row(token + t) + sb * 8)));
    }
    for (int p = 0; p < 4; ++p) {
      __mmask64 negative;
      uint32_t scales;
      const __m256i index = Fmt::Load(w, p, &negative, &scales);
      const __m512i grid = _mm512_i32gather_epi64(index, Fmt::Grid(), 8);
      const __m512i s = _mm512_and_si512(
          _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(scales)), nibble_shift), low4);
      const __m512i m = _mm512_add_epi32(_mm512_add_epi32(s, s), one);
      // Scale lanes 0-7: sub-block 2p's, 8-15: 2p + 1's.
      const __m512i pick = _mm512_add_epi32(pair_lanes, _mm512_set1_epi32(2 * p));
      const int64_t b = sb * 8 + 2 * p;
      for (int t = 0; t < NT; ++t) {
        const __m512i x = _mm512_loadu_si512(a.q_row(token + t) + b * 32);
        const __m512i signed_x = _mm512_mask_sub_epi8(x, negative, zero, x);
        const __m512i dp = _mm512_madd_epi16(_mm512_dpbusd_epi32(zero, grid, signed_x), m);
        acc[t] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_permutexvar_ps(pick, scale[t]), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

// The IQ2 formats in the interface of the codebook tiles and panels below (DotCodebookT,
// DecodePanel): a pair of sub-blocks' 64 unsigned magnitudes, the sign mask and the odd
// multiplier 2 s + 1 of each 16-value quarter of the pair (IQ2_XXS: one s per sub-block, so
// its two quarters share it; IQ2_XS and IQ2_S: one per quarter, kQuarters).
template <class Fmt, bool kOnePerQuarter>
struct IQ2Codebook {
  static constexpr int kBlockBytes = Fmt::kBlockBytes;
  static constexpr float kUnit = iq2::kUnit;
  static constexpr bool kQuarters = kOnePerQuarter;
  static void Load(const uint8_t* block, int p, __m512i* magnitudes, __mmask64* negative,
                   int m[4]) {
    uint32_t scales;  // nibble k: s of quarter k
    const __m256i index = Fmt::Load(block, p, negative, &scales);
    *magnitudes = _mm512_i32gather_epi64(index, Fmt::Grid(), 8);
    for (int k = 0; k < 4; ++k) m[k] = 2 * static_cast<int>((scales >> (4 * k)) & 0xF) + 1;
  }
};
using IQ2_XXSPairs = IQ2Codebook<IQ2XXSPairs, false>;
using IQ2_XSPairs = IQ2Codebook<IQ2XSPairs, true>;
using IQ2_SPairs = IQ2Codebook<IQ2SPairs, true>;

template <int NT>
void DotIQ2_XXST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                 float* out) {
  DotIQ2T<IQ2XXSPairs, NT>(w, nblocks, a, token, out);
}

template <int NT>
void DotIQ2_XST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                float* out) {
  DotIQ2T<IQ2XSPairs, NT>(w, nblocks, a, token, out);
}

template <int NT>
void DotIQ2_ST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               float* out) {
  DotIQ2T<IQ2SPairs, NT>(w, nblocks, a, token, out);
}

// The 1-bit formats' decoding for DotIQ1T, two sub-blocks (2p, 2p + 1) at a time in vectors:
// Load gives the eight 11-bit kIQ1SGrid indices in dword lanes (lane l: group l % 4 of sub-block
// 2p + l / 4), the groups' negative shifts as a mask (bit l: group l's shift is -1/8) and the odd
// multipliers 2 s + 1 per dword lane of the products (lanes 0-3 and 4-7: sub-block 2p's halves,
// 8-11 and 12-15: 2p + 1's).
struct IQ1SPairs {
  static constexpr int kBlockBytes = quant::kIQ1_SBlockBytes;
  static float D(const uint8_t* block) { return iq1::IQ1S::D(block); }
  // Index low bytes at 2 + 8 p; u16 qh of sub-blocks 2p, 2p + 1 at 34 + 4 p (index bits 8-10 of
  // group l at 3 l, s at 12-14, the shift's sign at 15).
  static __m256i Load(const uint8_t* block, int p, __mmask8* negative, __m512i* m) {
    const __m256i low =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 + 8 * p)));
    const uint32_t qh = iq2::LoadU32(block + quant::kIQ1_SHigh + 4 * p);
    const __m256i qhv = _mm256_setr_m128i(_mm_set1_epi32(static_cast<int>(qh & 0xFFFF)),
                                          _mm_set1_epi32(static_cast<int>(qh >> 16)));
    const __m256i high = _mm256_and_si256(
        _mm256_srlv_epi32(qhv, _mm256_setr_epi32(0, 3, 6, 9, 0, 3, 6, 9)), _mm256_set1_epi32(7));
    *negative = static_cast<__mmask8>((qh & 0x8000 ? 0x0F : 0) | (qh & 0x80000000u ? 0xF0 : 0));
    const __m512i s = _mm512_and_si512(
        _mm512_srlv_epi32(
            _mm512_set1_epi32(static_cast<int>(qh)),
            _mm512_setr_epi32(12, 12, 12, 12, 12, 12, 12, 12, 28, 28, 28, 28, 28, 28, 28, 28)),
        _mm512_set1_epi32(7));
    *m = _mm512_add_epi32(_mm512_add_epi32(s, s), _mm512_set1_epi32(1));
    return _mm256_or_si256(low, _mm256_slli_epi32(high, 8));
  }
};

struct IQ1MPairs {
  static constexpr int kBlockBytes = quant::kIQ1_MBlockBytes;
  static float D(const uint8_t* block) { return iq1::IQ1M::D(block); }
  // Index low bytes at 8 p; the u32 of qh at 32 + 4 p holds group l's index bits 8-10 at 4 l and
  // its shift's sign at 4 l + 3; u16 scales[p] at 48 + 2 p holds the four halves' s at 0, 3, 6, 9.
  static __m256i Load(const uint8_t* block, int p, __mmask8* negative, __m512i* m) {
    const __m256i low =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 8 * p)));
    const __m256i nibbles =
        _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(iq2::LoadU32(block + 32 + 4 * p))),
                          _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    *negative = _mm256_test_epi32_mask(nibbles, _mm256_set1_epi32(8));
    const __m512i s = _mm512_and_si512(
        _mm512_srlv_epi32(_mm512_set1_epi32(iq2::LoadU16(block + quant::kIQ1_MScales + 2 * p)),
                          _mm512_setr_epi32(0, 0, 0, 0, 3, 3, 3, 3, 6, 6, 6, 6, 9, 9, 9, 9)),
        _mm512_set1_epi32(7));
    *m = _mm512_add_epi32(_mm512_add_epi32(s, s), _mm512_set1_epi32(1));
    return _mm256_or_si256(low,
                           _mm256_slli_epi32(_mm256_and_si256(nibbles, _mm256_set1_epi32(7)), 8));
  }
};

// IQ1_S / IQ1_M (Fmt: IQ1SPairs, IQ1MPairs): two 32-value sub-blocks (2p, 2p + 1) per step.
// Their eight grid entries (one gather) make one 64-byte vector g of int8 -1, 0, +1 in element
// order; q = 8 g +- 1 (a 16-bit shift by 3, masked back to bytes: 8 g has no low bits, so the
// bits the shift carries across bytes fall away, plus the groups' shift bytes) lies in [-9, 9]
// and is never 0. vpdpbusd of |q| with the activations negated where q < 0 (an activation is
// never -128) sums four products per dword lane (at most 4 * 9 * 127, so the lane's low word
// holds it as a signed int16), and vpmaddwd against the multipliers (low words; high words 0)
// gives m * sum in int32. Each pair is then scaled by d / 8 times its two activation scales. A
// step's weights are decoded once for all NT tokens.
template <class Fmt, int NT>
void DotIQ1T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             float* out) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i zero = _mm512_setzero_si512();
  const __m512i high5 = _mm512_set1_epi8(static_cast<char>(0xF8));
  const __m512i plus = _mm512_set1_epi8(1), minus = _mm512_set1_epi8(-1);
  const __m512i pair_lanes = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += Fmt::kBlockBytes) {
    simd::PrefetchAhead<Fmt::kBlockBytes>(w);
    const __m256 d = _mm256_set1_ps(Fmt::D(w) * iq1::kUnit);
    __m512 scale[NT];  // d / 8 times the token's 8 activation scales of this block
    for (int t = 0; t < NT; ++t) {
      scale[t] = _mm512_castps256_ps512(
          _mm256_mul_ps(d, _mm256_loadu_ps(a.scale_row(token + t) + sb * 8)));
    }
    for (int p = 0; p < 4; ++p) {
      __mmask8 negative;
      __m512i m;
      const __m256i index = Fmt::Load(w, p, &negative, &m);
      const __m512i g = _mm512_i32gather_epi64(index, quant::kIQ1SGrid.data(), 8);
      const __m512i q = _mm512_add_epi8(_mm512_and_si512(_mm512_slli_epi16(g, 3), high5),
                                        _mm512_mask_blend_epi64(negative, plus, minus));
      const __m512i mag = _mm512_abs_epi8(q);
      const __mmask64 q_negative = _mm512_movepi8_mask(q);
      const __m512i pick = _mm512_add_epi32(pair_lanes, _mm512_set1_epi32(2 * p));
      const int64_t b = sb * 8 + 2 * p;
      for (int t = 0; t < NT; ++t) {
        const __m512i x = _mm512_loadu_si512(a.q_row(token + t) + b * 32);
        const __m512i signed_x = _mm512_mask_sub_epi8(x, q_negative, zero, x);
        const __m512i dp = _mm512_madd_epi16(_mm512_dpbusd_epi32(zero, mag, signed_x), m);
        acc[t] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_permutexvar_ps(pick, scale[t]), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

template <int NT>
void DotIQ1_ST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               float* out) {
  DotIQ1T<IQ1SPairs, NT>(w, nblocks, a, token, out);
}

template <int NT>
void DotIQ1_MT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               float* out) {
  DotIQ1T<IQ1MPairs, NT>(w, nblocks, a, token, out);
}

// Q5_1: x = d q + m per 32-value block, q in [0, 31]. A block's nibbles unpack in element order
// (low nibbles elements 0-15, high nibbles 16-31) and its 32 fifth bits (qh, bit e for element
// e) become bytes through a mask move; two blocks meet one 64-byte activation load. Per block
// a_scale (d dot + m sum(a)), the m terms summed apart. Q4_1 (no kFifthBit): the same without
// qh, its nibbles at byte 4.
template <bool kFifthBit>
inline __m256i AffineValues(const uint8_t* block) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + (kFifthBit ? 8 : 4)));
  const __m256i nibbles = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(qs, m4)),
                                                  _mm_and_si128(_mm_srli_epi16(qs, 4), m4), 1);
  if constexpr (!kFifthBit) return nibbles;
  uint32_t qh;
  std::memcpy(&qh, block + 4, 4);
  return _mm256_or_si256(nibbles, _mm256_and_si256(_mm256_movm_epi8(qh), _mm256_set1_epi8(0x10)));
}

template <int NT, bool kFifthBit = true>
void DotQ5_1T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  constexpr int kBytes = kFifthBit ? quant::kQ5_1BlockBytes : quant::kQ4_1BlockBytes;
  __m512 acc[NT];
  float mins[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm512_setzero_ps();
    mins[t] = 0;
  }
  for (int64_t b = 0; b < nblocks; b += 2, w += 2 * kBytes) {
    const bool pair = b + 1 < nblocks;  // else the row's last block alone (upper half zero)
    const __m256i second = pair ? AffineValues<kFifthBit>(w + kBytes) : _mm256_setzero_si256();
    const __m512i q =
        _mm512_inserti64x4(_mm512_zextsi256_si512(AffineValues<kFifthBit>(w)), second, 1);
    const float d0 = LoadHalf(w), m0 = LoadHalf(w + 2);
    const float d1 = pair ? LoadHalf(w + kBytes) : 0.0f,
                m1 = pair ? LoadHalf(w + kBytes + 2) : 0.0f;
    for (int t = 0; t < NT; ++t) {
      const float* as = a.scale_row(token + t) + b;
      const int32_t* sum = a.sum_row(token + t) + b;
      const int8_t* aq = a.q_row(token + t) + b * 32;
      const __m512i x =
          pair ? _mm512_loadu_si512(aq)
               : _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq)));
      const __m512i dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, x);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp),
                               PairScale(d0 * as[0], pair ? d1 * as[1] : 0.0f), acc[t]);
      mins[t] += m0 * as[0] * static_cast<float>(sum[0]);
      if (pair) mins[t] += m1 * as[1] * static_cast<float>(sum[1]);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]) + mins[t];
}

template <int NT>
void DotQ4_1T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out) {
  DotQ5_1T<NT, false>(w, nblocks, a, token, out);
}

// IQ4_XS's 16 levels (quant::kIQ4NLValues) + 128, unsigned, as a vpshufb table in every lane.
constexpr std::array<uint8_t, 16> kIQ4LevelsPlus128 = [] {
  std::array<uint8_t, 16> t{};
  for (int i = 0; i < 16; ++i) t[i] = static_cast<uint8_t>(quant::kIQ4NLValues[i] + 128);
  return t;
}();
// MXFP4's 16 levels (quant::kMXFP4Values, E2M1 doubled) + 128 likewise.
constexpr std::array<uint8_t, 16> kMXFP4LevelsPlus128 = [] {
  std::array<uint8_t, 16> t{};
  for (int i = 0; i < 16; ++i) t[i] = static_cast<uint8_t>(quant::kMXFP4Values[i] + 128);
  return t;
}();
// A 16-byte vpshufb table in every 128-bit lane.
inline __m512i Table16(const uint8_t* t) {
  return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
}
inline __m512i IQ4LevelsPlus128() { return Table16(kIQ4LevelsPlus128.data()); }

// IQ4_XS: per 32-value sub-block j, d (ls_j - 32) times the table's levels of its nibbles.
// Two sub-blocks make one vector in element order (low nibbles then high nibbles of each) whose
// nibbles are looked up (vpshufb) as the levels + 128, unsigned for vpdpbusd; the 128 comes off
// exactly as a second vpdpbusd of 128s with the same activations.
template <int NT>
void DotIQ4_XST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                float* out) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i table = IQ4LevelsPlus128();
  const __m512i m4 = _mm512_set1_epi8(0x0F), offset = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += quant::kIQ4_XSBlockBytes) {
    const float d = LoadHalf(w);
    uint8_t ls[8];
    quant::IQ4_XSScales(w, ls);
    for (int p = 0; p < 4; ++p) {  // sub-blocks 2p and 2p + 1
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 8 + 32 * p));
      const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(raw), raw, 1);
      // 128-bit lanes: low nibbles of 2p, of 2p + 1, high nibbles of 2p, of 2p + 1, then
      // reordered to 2p's low, 2p's high, (2p + 1)'s low, high.
      const __m512i nibbles = _mm512_mask_blend_epi64(
          0xF0, _mm512_and_si512(both, m4), _mm512_and_si512(_mm512_srli_epi16(both, 4), m4));
      const __m512i q = _mm512_shuffle_epi8(
          table, _mm512_shuffle_i64x2(nibbles, nibbles, _MM_SHUFFLE(3, 1, 2, 0)));
      const float dl0 = d * static_cast<float>(ls[2 * p] - 32);
      const float dl1 = d * static_cast<float>(ls[2 * p + 1] - 32);
      const int64_t b = sb * 8 + 2 * p;
      for (int t = 0; t < NT; ++t) {
        const float* as = a.scale_row(token + t) + b;
        const __m512i x = _mm512_loadu_si512(a.q_row(token + t) + b * 32);
        const __m512i dp = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, x),
                                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, x));
        acc[t] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), PairScale(dl0 * as[0], dl1 * as[1]), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

// E8M0 byte e as f32 2^(e - 128) (quant::E8M0ToF32Half).
inline float E8M0Half(uint8_t e) {
  const uint32_t bits = e < 2 ? uint32_t{0x00200000} << e : static_cast<uint32_t>(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// The 32-value formats whose nibbles index a table of 16 int8 levels: IQ4_NL (f16 d) and MXFP4
// (an E8M0 byte), for the row dots below.
struct IQ4NLRows {
  static constexpr int kBlockBytes = quant::kIQ4_NLBlockBytes;
  static constexpr int kDataOffset = 2;
  static float Scale(const uint8_t* block) { return LoadHalf(block); }
  static __m512i Table() { return Table16(kIQ4LevelsPlus128.data()); }
};
struct MXFP4Rows {
  static constexpr int kBlockBytes = quant::kMXFP4BlockBytes;
  static constexpr int kDataOffset = 1;
  static float Scale(const uint8_t* block) { return E8M0Half(block[0]); }
  static __m512i Table() { return Table16(kMXFP4LevelsPlus128.data()); }
};

// IQ4_NL and MXFP4 (Rows: IQ4NLRows, MXFP4Rows): per block, its scale times the table's levels
// of its nibbles. Two blocks make one vector in element order (ExpandQ4Pair) whose nibbles are
// looked up as the levels + 128 (unsigned for vpdpbusd); the 128 comes off exactly as a second
// vpdpbusd of 128s with the same activations. An odd last block takes the same steps in 256
// bits.
template <class Rows, int NT>
void DotNonLinearT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                   float* out) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i table = Rows::Table(), offset = _mm512_set1_epi8(static_cast<char>(0x80));
  constexpr int kB = Rows::kBlockBytes, kData = Rows::kDataOffset;
  int64_t b = 0;
  for (; b + 2 <= nblocks; b += 2, w += 2 * kB) {
    const float dw0 = Rows::Scale(w), dw1 = Rows::Scale(w + kB);
    const __m512i q = _mm512_shuffle_epi8(table, ExpandQ4Pair(w + kData, w + kB + kData));
    for (int t = 0; t < NT; ++t) {
      const float* as = a.scale_row(token + t) + b;
      const __m512i x = _mm512_loadu_si512(a.q_row(token + t) + b * 32);
      const __m512i dp = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, x),
                                          _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, x));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), PairScale(dw0 * as[0], dw1 * as[1]), acc[t]);
    }
  }
  float tail[NT] = {};
  if (b < nblocks) {
    const float dw = Rows::Scale(w);
    const __m256i q = _mm256_shuffle_epi8(_mm512_castsi512_si256(table), ExpandQ4(w + kData));
    for (int t = 0; t < NT; ++t) {
      const __m256i x =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q_row(token + t) + b * 32));
      const __m256i dp = _mm256_sub_epi32(
          _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, x),
          _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm512_castsi512_si256(offset), x));
      tail[t] = HorizontalSum256(
          _mm256_mul_ps(_mm256_cvtepi32_ps(dp), _mm256_set1_ps(dw * a.scale_row(token + t)[b])));
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]) + tail[t];
}

template <int NT>
void DotIQ4_NLT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                float* out) {
  DotNonLinearT<IQ4NLRows, NT>(w, nblocks, a, token, out);
}

template <int NT>
void DotMXFP4T(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               float* out) {
  DotNonLinearT<MXFP4Rows, NT>(w, nblocks, a, token, out);
}

// The IQ3 codebook formats, two 32-value sub-blocks (2p, 2p + 1) of a 256-value block per
// vector: the 16 grid entries' magnitudes (4 bytes each, element order; vpgatherdd from the
// grid) as unsigned bytes for vpdpbusd, the 64 signs as a mask that negates the token's
// activations instead (the grid values are unsigned), and each sub-block's odd multiplier.
struct IQ3_SPairs {
  static constexpr int kBlockBytes = quant::kIQ3_SBlockBytes;
  static constexpr float kUnit = 1.0f;
  static constexpr bool kQuarters = false;
  static void Load(const uint8_t* block, int p, __m512i* magnitudes, __mmask64* negative,
                   int m[4]) {
    // 16 indices: bits 0-7 in qs[16 p + i], bit 8 in bit i % 8 of qh[2 p + i / 8].
    const __m512i low =
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2 + 16 * p)));
    uint16_t high;
    std::memcpy(&high, block + quant::kIQ3_SHigh + 2 * p, 2);
    const __m512i bit8 =
        _mm512_slli_epi32(_mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(high), Lanes16()),
                                           _mm512_set1_epi32(1)),
                          8);
    *magnitudes = _mm512_i32gather_epi32(_mm512_or_si512(low, bit8), quant::kIQ3SGrid.data(), 4);
    uint64_t signs;  // bit e: element e of the pair negative (one byte per 8 values)
    std::memcpy(&signs, block + quant::kIQ3_SSigns + 8 * p, 8);
    *negative = _cvtu64_mask64(signs);
    m[0] = m[1] = iq3::IQ3S::Multiplier(block, 2 * p);
    m[2] = m[3] = iq3::IQ3S::Multiplier(block, 2 * p + 1);
  }
  static __m512i Lanes16() {
    return _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  }
};

struct IQ3_XXSPairs {
  static constexpr int kBlockBytes = quant::kIQ3_XXSBlockBytes;
  static constexpr float kUnit = 0.25f;
  static constexpr bool kQuarters = false;
  static void Load(const uint8_t* block, int p, __m512i* magnitudes, __mmask64* negative,
                   int m[4]) {
    const __m512i index =
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2 + 16 * p)));
    *magnitudes = _mm512_i32gather_epi32(index, quant::kIQ3XXSGrid.data(), 4);
    *negative = _cvtu64_mask64(iq3::IQ3XXS::SignBits(block, 2 * p) |
                               uint64_t{iq3::IQ3XXS::SignBits(block, 2 * p + 1)} << 32);
    m[0] = m[1] = iq3::IQ3XXS::Multiplier(block, 2 * p);
    m[2] = m[3] = iq3::IQ3XXS::Multiplier(block, 2 * p + 1);
  }
};

// Lanes 4k .. 4k + 3 hold m[k] (the dword lanes of a pair's vpdpbusd sums over quarter k).
inline __m512 QuarterMultipliers(const int m[4]) {
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  return _mm512_cvtepi32_ps(_mm512_permutexvar_epi32(
      spread, _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(m)))));
}

// A block's d: the f16 at byte 0, or what Pairs::D reads where the format keeps it elsewhere
// (IQ1_M).
template <class Pairs>
float BlockD(const uint8_t* block) {
  if constexpr (requires { Pairs::D(block); }) {
    return Pairs::D(block);
  } else {
    return LoadHalf(block);
  }
}

// IQ1_S / IQ1_M in the interface of DotCodebookT: the pair's 64 values q = 8 g +- 1 (decoded as
// in DotIQ1T) as magnitudes |q| and the mask of q < 0, and the odd multiplier of each 16-value
// quarter (IQ1_S: one per sub-block, so both of its quarters share it).
template <class Fmt, bool kOnePerQuarter>
struct IQ1Codebook {
  static constexpr int kBlockBytes = Fmt::kBlockBytes;
  static constexpr float kUnit = iq1::kUnit;
  static constexpr bool kQuarters = kOnePerQuarter;
  static float D(const uint8_t* block) { return Fmt::D(block); }
  static void Load(const uint8_t* block, int p, __m512i* magnitudes, __mmask64* negative,
                   int m[4]) {
    __mmask8 shift_negative;
    __m512i mv;  // dword lanes 4k .. 4k + 3: quarter k's multiplier
    const __m256i index = Fmt::Load(block, p, &shift_negative, &mv);
    const __m512i g = _mm512_i32gather_epi64(index, quant::kIQ1SGrid.data(), 8);
    const __m512i q = _mm512_add_epi8(
        _mm512_and_si512(_mm512_slli_epi16(g, 3), _mm512_set1_epi8(static_cast<char>(0xF8))),
        _mm512_mask_blend_epi64(shift_negative, _mm512_set1_epi8(1), _mm512_set1_epi8(-1)));
    *magnitudes = _mm512_abs_epi8(q);
    *negative = _mm512_movepi8_mask(q);
    alignas(64) int lanes[16];
    _mm512_store_si512(lanes, mv);
    for (int k = 0; k < 4; ++k) m[k] = lanes[4 * k];
  }
};

// Per pair of sub-blocks and token: vpdpbusd of the magnitudes with the sign-applied activations
// (|a| <= 127, so negating is exact) gives 16 int32 sums of 4 products; they are scaled by d unit
// m a_scale per quarter of the vector (the sub-block halves). The weights are decoded once for
// the NT tokens.
template <class Pairs, int NT>
void DotCodebookT(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                  float* out) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i zero = _mm512_setzero_si512();
  // Token t's rows: activations at q + t * k, block scales at scale + t * k / 32 (the rows are
  // contiguous), so the unrolled token loop keeps its accumulators in registers.
  const int64_t k = nblocks * 32;
  const int8_t* q = a.q_row(token);
  const float* scale = a.scale_row(token);
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, w += Pairs::kBlockBytes) {
    const float d = BlockD<Pairs>(w) * Pairs::kUnit;
    for (int p = 0; p < 4; ++p) {
      __m512i magnitudes;
      __mmask64 negative;
      alignas(16) int m[4];
      Pairs::Load(w, p, &magnitudes, &negative, m);
      // d unit m of each quarter in its lanes; times the token's block scales (broadcast into
      // the halves of the vector) per token.
      const __m512 dl = Pairs::kQuarters
                            ? _mm512_mul_ps(_mm512_set1_ps(d), QuarterMultipliers(m))
                            : PairScale(d * static_cast<float>(m[0]), d * static_cast<float>(m[2]));
      const int64_t b = sb * 8 + 2 * p;
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const __m512i x = _mm512_loadu_si512(q + t * k + b * 32);
        const __m512i signed_x = _mm512_mask_sub_epi8(x, negative, zero, x);
        const __m512i dp = _mm512_dpbusd_epi32(zero, magnitudes, signed_x);
        const float* as = scale + t * nblocks + b;
        const __m512 block_scales =
            _mm512_mask_broadcastss_ps(_mm512_set1_ps(as[0]), 0xFF00, _mm_load_ss(as + 1));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_mul_ps(dl, block_scales), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

template <int NT>
void DotIQ3_ST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               float* out) {
  DotCodebookT<IQ3_SPairs, NT>(w, nblocks, a, token, out);
}

template <int NT>
void DotIQ3_XXST(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                 float* out) {
  DotCodebookT<IQ3_XXSPairs, NT>(w, nblocks, a, token, out);
}

// Prefill panels of the codebook formats: 16 rows x kPanelBlocks blocks of 32 values decoded
// once a call into thread_local scratch, as the signed values + 64 (unsigned bytes for
// vpdpbusd; the 64 comes off as 64 x the activation block's sum) interleaved like Q8_0x16's
// data (per block 8 chunks of 64 bytes: values 4c .. 4c + 3 of rows 0..15), with each row's
// f32 sub-block factor d unit m per block (16 floats; with one m per 16 values, kQuarters,
// two: the block's first 16 values', then the last 16's, each offset by its 16-value sum). Per
// token and block: 8 vpdpbusd of a chunk with the token's 4 activation bytes broadcast, then one
// multiply-add of the 16 rows' sums by factor x activation scale: about 21 instructions for 512
// products, against 8 per 64 in the row tiles above.
constexpr int64_t kPanelBlocks = 64;  // 2048 columns a panel
constexpr int64_t kPanelValueBytes = kPanelBlocks * 512;
constexpr int64_t kPanelScaleFloats = kPanelBlocks * 32;
constexpr int64_t kCodebookScratchBytes = kPanelValueBytes + 4 * kPanelScaleFloats;

// Blocks [b0, b0 + nb) (multiples of 8: whole 256-value blocks) of rows 0 .. nrows - 1 into
// the panel (rows past nrows: zeros). Factors: [block][16 rows], or with Pairs::kQuarters
// [block][half][16 rows].
template <class Pairs>
void DecodePanel(const uint8_t* rows, uint64_t row_bytes, int nrows, int64_t b0, int64_t nb,
                 uint8_t* values, float* scales) {
  const __m512i zero = _mm512_setzero_si512(), offset = _mm512_set1_epi8(64);
  for (int64_t sb = b0 / 8; sb < (b0 + nb) / 8; ++sb) {
    for (int p = 0; p < 4; ++p) {  // sub-blocks 2p and 2p + 1 of the 16 rows
      __m512 r[16];
      alignas(64) float factor[4][16];  // [quarter of the pair][row]
      for (int row = 0; row < 16; ++row) {
        if (row >= nrows) {
          r[row] = _mm512_castsi512_ps(offset);
          for (int k = 0; k < 4; ++k) factor[k][row] = 0;
          continue;
        }
        const uint8_t* block = rows + row * row_bytes + sb * Pairs::kBlockBytes;
        __m512i magnitudes;
        __mmask64 negative;
        int m[4];
        Pairs::Load(block, p, &magnitudes, &negative, m);
        r[row] = _mm512_castsi512_ps(
            _mm512_add_epi8(_mm512_mask_sub_epi8(magnitudes, negative, zero, magnitudes), offset));
        const float d = BlockD<Pairs>(block) * Pairs::kUnit;
        for (int k = 0; k < 4; ++k) factor[k][row] = d * static_cast<float>(m[k]);
      }
      Transpose16x16(r);  // r[j]: values 4j .. 4j + 3 of the 64 (both sub-blocks), rows 0..15
      const int64_t b = sb * 8 + 2 * p - b0;
      for (int j = 0; j < 16; ++j) {
        _mm512_store_si512(values + (b + j / 8) * 512 + (j % 8) * 64, _mm512_castps_si512(r[j]));
      }
      if constexpr (Pairs::kQuarters) {
        for (int k = 0; k < 4; ++k) {
          _mm512_store_ps(scales + (b + k / 2) * 32 + (k % 2) * 16, _mm512_load_ps(factor[k]));
        }
      } else {
        _mm512_store_ps(scales + b * 16, _mm512_load_ps(factor[0]));
        _mm512_store_ps(scales + (b + 1) * 16, _mm512_load_ps(factor[2]));
      }
    }
  }
}

// Tokens token .. token + T - 1 over the panel's nb blocks (activation blocks b0 ..), into acc.
// kQuarters: two factors a block (DecodePanel's layout), each 16 values' sum offset by 64 x
// their activations' sum (QuantizedActivations::sum16).
template <int T, bool kQuarters>
void PanelTokensT(const uint8_t* values, const float* scales, int64_t nb,
                  const QuantizedActivations& a, int64_t b0, int64_t token, __m512* acc) {
  constexpr int kParts = kQuarters ? 2 : 1;  // per block: factors, int32 sums and offsets
  constexpr int kChunks = 8 / kParts;        // 4-value chunks per part
  const int8_t* q[T];
  const float* as[T];
  const int32_t* sum[T];
  const int16_t* sum16[T];
  for (int t = 0; t < T; ++t) {
    q[t] = a.q_row(token + t) + b0 * 32;
    as[t] = a.scale_row(token + t) + b0;
    if constexpr (kQuarters) {
      sum16[t] = a.sum16_row(token + t) + 2 * b0;
    } else {
      sum[t] = a.sum_row(token + t) + b0;
    }
  }
  for (int64_t b = 0; b < nb; ++b, values += 512) {
    __m512i d[kParts][T];
    for (int t = 0; t < T; ++t) {
      if constexpr (kQuarters) {
        d[0][t] = _mm512_set1_epi32(-64 * sum16[t][2 * b]);
        d[kParts - 1][t] = _mm512_set1_epi32(-64 * sum16[t][2 * b + 1]);
      } else {
        d[0][t] = _mm512_set1_epi32(-64 * sum[t][b]);
      }
    }
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      const __m512i w = _mm512_load_si512(values + 64 * c);
      for (int t = 0; t < T; ++t) {
        int32_t four;
        std::memcpy(&four, q[t] + b * 32 + 4 * c, 4);
        d[c / kChunks][t] = _mm512_dpbusd_epi32(d[c / kChunks][t], w, _mm512_set1_epi32(four));
      }
    }
    for (int part = 0; part < kParts; ++part) {
      const __m512 factor = _mm512_load_ps(scales + (16 * kParts) * b + 16 * part);
      for (int t = 0; t < T; ++t) {
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d[part][t]),
                                 _mm512_mul_ps(factor, _mm512_set1_ps(as[t][b])), acc[t]);
      }
    }
  }
}

bool GemmCodebookX16Takes(DType type) { return IsCodebookType(type) || IsOneBitCodebookType(type); }

void GemmCodebookX16(DType type, const uint8_t* rows, uint64_t row_bytes, int nrows,
                     int64_t nblocks, const QuantizedActivations& a, int64_t ntok, float* out,
                     int64_t ldo);

// Prefill's tiles of up to 16 tokens: the IQ3 kernels above with 16 and 8 accumulators (each
// pair of sub-blocks gathered once per 16 tokens), the rest and the other formats through the
// 4-token row dots.
void DotCodebookTile(DType type, const uint8_t* w, int64_t nblocks, const QuantizedActivations& a,
                     int64_t token, int ntok, float* out);

// Q4_0x16: 16 rows at a time. Each 64-byte run of a block unpacks into two vectors holding
// four consecutive values of all 16 rows; vpdpbusd against the token's matching four
// activation bytes (broadcast) accumulates one int32 per row, eight times per block, and the
// block's sums are scaled once: offset by 8 * sum(a), times d_w (16 rows) * d_a.
// Q4_0x16 stores nibbles (two chunks per 64 bytes, value + 8); Q8_0x16 stores bytes (one chunk
// per 64 bytes, value + 128). Both subtract offset * sum(a) from the int32 sums.
// Each format's block starts with its 16 rows' scales (Scales: as f32) and holds the values at
// kDataOffset.
inline __m512 F16Scales(const uint8_t* block) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block)));
}

struct Q4X16 {
  static constexpr int kBlockBytes = 16 * quant::kQ4_0BlockBytes;
  static constexpr int kOffset = 8;
  static constexpr int kDataOffset = 32;
  static __m512 Scales(const uint8_t* block) { return F16Scales(block); }
  static void Load(const uint8_t* data, __m512i* w) {
    const __m512i mask = _mm512_set1_epi8(0x0F);
    for (int p = 0; p < 4; ++p) {
      const __m512i bytes = _mm512_loadu_si512(data + 64 * p);
      w[2 * p] = _mm512_and_si512(bytes, mask);
      w[2 * p + 1] = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), mask);
    }
  }
  static void LoadPair(const uint8_t* data, int p, __m512i* lo, __m512i* hi) {
    const __m512i mask = _mm512_set1_epi8(0x0F);
    __m512i bytes = _mm512_loadu_si512(data + 64 * p);
    // One load into a register: GCC otherwise folds it into both the vpandd and the vpsrlw,
    // two loads where the kernel is short of load slots (+0-3% measured).
    __asm__("" : "+v"(bytes));
    *lo = _mm512_and_si512(bytes, mask);
    *hi = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), mask);
  }
};

// IQ4_NLx16 and MXFP4x16: Q4_0x16's nibbles, each looked up (vpshufb) as its level + 128,
// unsigned for vpdpbusd; the 128 comes off the int32 sums as Q8_0x16's does. IQ4_NL's rows
// scale by f16 d, MXFP4's by E8M0 bytes (E8M0Scales).
template <const uint8_t* (*kLevelsPlus128)(), int kScaleBytes, __m512 (*kScales)(const uint8_t*)>
struct NonLinearX16 {
  static constexpr int kBlockBytes = 16 * (kScaleBytes + 16);
  static constexpr int kOffset = 128;
  static constexpr int kDataOffset = 16 * kScaleBytes;
  static __m512 Scales(const uint8_t* block) { return kScales(block); }
  static __m512i Table() { return Table16(kLevelsPlus128()); }
  static void Load(const uint8_t* data, __m512i* w) {
    const __m512i table = Table();
    Q4X16::Load(data, w);
    for (int c = 0; c < 8; ++c) w[c] = _mm512_shuffle_epi8(table, w[c]);
  }
  static void LoadPair(const uint8_t* data, int p, __m512i* lo, __m512i* hi) {
    const __m512i table = Table();
    Q4X16::LoadPair(data, p, lo, hi);
    *lo = _mm512_shuffle_epi8(table, *lo);
    *hi = _mm512_shuffle_epi8(table, *hi);
  }
};

// The 16 rows' E8M0 bytes as f32 2^(e - 128) (quant::E8M0ToF32Half: (e - 1) << 23, and for
// e < 2 the denormals 0x00200000 << e).
inline __m512 E8M0Scales(const uint8_t* block) {
  const __m512i e = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
  const __m512i normal = _mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(1)), 23);
  const __m512i tiny = _mm512_sllv_epi32(_mm512_set1_epi32(0x00200000), e);
  const __mmask16 below2 = _mm512_cmplt_epu32_mask(e, _mm512_set1_epi32(2));
  return _mm512_castsi512_ps(_mm512_mask_blend_epi32(below2, normal, tiny));
}

const uint8_t* IQ4NLLevelsPlus128() { return kIQ4LevelsPlus128.data(); }
const uint8_t* MXFP4LevelsPlus128() { return kMXFP4LevelsPlus128.data(); }
using IQ4NLX16 = NonLinearX16<IQ4NLLevelsPlus128, 2, F16Scales>;
using MXFP4X16 = NonLinearX16<MXFP4LevelsPlus128, 1, E8M0Scales>;

struct Q8X16 {
  static constexpr int kBlockBytes = 16 * quant::kQ8_0BlockBytes;
  static constexpr int kOffset = 128;
  static constexpr int kDataOffset = 32;
  static __m512 Scales(const uint8_t* block) { return F16Scales(block); }
  static void Load(const uint8_t* data, __m512i* w) {
    for (int c = 0; c < 8; ++c) w[c] = _mm512_loadu_si512(data + 64 * c);
  }
  static void LoadPair(const uint8_t* data, int p, __m512i* lo, __m512i* hi) {
    *lo = _mm512_loadu_si512(data + 128 * p);
    *hi = _mm512_loadu_si512(data + 128 * p + 64);
  }
};

// One 32-value block of 16 rows against one token: w[c] holds values 4c..4c+3 of the 16 rows
// (unsigned), qb the token's 32 int8 activations. Returns the 16 rows' int32 dot products
// (before any offset). The eight vpdpbusd run as two independent chains (even and odd chunks):
// Q4_Kx16, token by token (the chunk order of GemmX16T measured no faster there).
inline __m512i DotBlockX16(const __m512i* w, const int8_t* qb) {
  __m512i even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
  for (int c = 0; c < 8; c += 2) {
    int32_t four0, four1;
    std::memcpy(&four0, qb + 4 * c, 4);
    std::memcpy(&four1, qb + 4 * c + 4, 4);
    even = _mm512_dpbusd_epi32(even, w[c], _mm512_set1_epi32(four0));
    odd = _mm512_dpbusd_epi32(odd, w[c + 1], _mm512_set1_epi32(four1));
  }
  return _mm512_add_epi32(even, odd);
}

// dot += w (64 unsigned bytes) times the four signed bytes at p broadcast to every lane, with
// the broadcast folded into vpdpbusd's memory operand (the intrinsic on _mm512_set1_epi32
// compiled to a separate vpbroadcastd per product).
inline __m512i DotBroadcast(__m512i dot, __m512i w, const int8_t* p) {
  __asm__("vpdpbusd %2%{1to16%}, %1, %0"
          : "+v"(dot)
          : "v"(w), "m"(*reinterpret_cast<const int32_t*>(p)));
  return dot;
}

// One token (decode, or the odd token of a prefill group): the block sums of GemmX16T, bit for
// bit, in two chains (even and odd chunks, added as integers) since a single token gives no
// independent chains across tokens. Its weights come from DRAM once: they are prefetched
// ahead (simd::PrefetchDecodeStream: non-temporally 8 KiB ahead on AMD, into L2 4 KiB ahead on
// Intel), and a decode token's activations are contiguous
// (interleave_group 1). Measured against the 2 KiB T0 prefetch and the 8-token layout (two Zen 5
// cores from DRAM on 2 MiB pages, Q4_0x16, 6144 x 1536 to 1536 x 12288 and 2048 x 1536): 34-41
// -> 48-59 GB/s, next to 42-59 GB/s for a plain read of the same bytes in the same runs; the
// non-temporal prefetch alone gave about half of that, the contiguous layout the rest.

template <class Fmt>
void GemmX16Token(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                  int64_t token, float* out) {
  constexpr int kOffsetShift = Fmt::kOffset == 8 ? 0 : 4;
  const int64_t step = a.interleave_group;  // slots from one block to the next
  const int64_t slot = a.Slot(token, 0);
  const int8_t* q = a.q8.data() + slot * 32;
  const float* sc = a.scale8.data() + slot;
  const int32_t* neg_offset = a.neg_offset8.data() + slot;
  __m512 acc = _mm512_setzero_ps();
  const bool to_l2 = DecodeStreamToL2();
  for (int64_t b = 0; b < nblocks;
       ++b, group += Fmt::kBlockBytes, q += step * 32, sc += step, neg_offset += step) {
    simd::PrefetchDecodeStream<Fmt::kBlockBytes>(group, to_l2);
    const __m512 dw = Fmt::Scales(group);
    __m512i w[8];
    Fmt::Load(group + Fmt::kDataOffset, w);
    __m512i even = _mm512_slli_epi32(_mm512_set1_epi32(*neg_offset), kOffsetShift);
    __m512i odd = _mm512_setzero_si512();
    for (int c = 0; c < 8; c += 2) {
      even = DotBroadcast(even, w[c], q + 4 * c);
      odd = DotBroadcast(odd, w[c + 1], q + 4 * c + 4);
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(even, odd)),
                          _mm512_mul_ps(dw, _mm512_set1_ps(*sc)), acc);
  }
  _mm512_storeu_ps(out, acc);
}

// Up to 8 tokens of one group of 8 (QuantizedActivations' interleaved copy: token t's block b
// at the group's block b, slot t) per pass over a block: the eight unpacked weight vectors
// serve all of them, the vpdpbusd go chunk by chunk across the tokens (chunk c of every token,
// then chunk c + 1), one chain per token: consecutive instructions are independent and eight
// tokens cover vpdpbusd's latency at two per cycle. (Token by token, with two chains each, the
// scheduler had to hold a block's dependent chains to find independent work: Q4_0x16 at 16
// tokens, one Zen 5 core, from cache, 138 -> 145 multiply-adds per TSC tick, and 106 -> 139
// with 6144-value rows.) Each token's int32 sums start at its block's -offset * sum(a), and
// all tokens' values, scales and offsets are read at constant offsets from one pointer each.
template <class Fmt, int NT>
void GemmX16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              float* out, int64_t ldo) {
  constexpr int kOffsetShift = Fmt::kOffset == 8 ? 0 : 4;  // neg_offset8 holds -8 * sum
  static_assert((8 << kOffsetShift) == Fmt::kOffset);
  if constexpr (NT == 1) {
    GemmX16Token<Fmt>(group, nblocks, a, token, out);
    return;
  }
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  // NT > 1 only inside a group of 8 (GemmX16 splits at groups), so a block is 8 slots on.
  const int64_t slot = a.Slot(token, 0);
  const int8_t* q = a.q8.data() + slot * 32;
  const float* sc = a.scale8.data() + slot;
  const int32_t* neg_offset = a.neg_offset8.data() + slot;
  for (int64_t b = 0; b < nblocks;
       ++b, group += Fmt::kBlockBytes, q += 8 * 32, sc += 8, neg_offset += 8) {
    simd::PrefetchAhead<Fmt::kBlockBytes>(group);
    const __m512 dw = Fmt::Scales(group);
    __m512i w[8];
    Fmt::Load(group + Fmt::kDataOffset, w);
    __m512i dot[NT];
    for (int t = 0; t < NT; ++t) {
      dot[t] = _mm512_slli_epi32(_mm512_set1_epi32(neg_offset[t]), kOffsetShift);
    }
    for (int c = 0; c < 8; ++c) {
      for (int t = 0; t < NT; ++t) dot[t] = DotBroadcast(dot[t], w[c], q + 32 * t + 4 * c);
    }
    for (int t = 0; t < NT; ++t) {
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t]), _mm512_mul_ps(dw, _mm512_set1_ps(sc[t])),
                               acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(out + t * ldo, acc[t]);
}

// Pieces that stay inside one group of 8 tokens of the interleaved copy.
template <class Fmt>
void GemmX16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out, int64_t ldo) {
  for (int first = 0; first < ntok;) {
    const int64_t t = token + first;
    const int64_t g = a.interleave_group;  // 8, or 1 for a single row
    const int n = static_cast<int>(std::min<int64_t>(g - t % g, ntok - first));
    simd::DispatchTokenCount<8>(n, [&](auto nt) {
      GemmX16T<Fmt, decltype(nt)::value>(group, nblocks, a, t, out + first * ldo, ldo);
    });
    first += n;
  }
}

// Two adjacent groups (32 rows) for prefill: the same sums as GemmX16T, bit for bit (per row
// and token: the block's int32 sum from -offset * sum(a) over chunks 0..7, then one fused
// multiply-add of d_w * d_a per block), but each token's four activation bytes are broadcast
// into a register once and serve both groups' vpdpbusd. GemmX16T's memory-operand broadcasts
// made it load-bound: 64 broadcasts per block and 8 tokens plus the weights, scales and offsets,
// about 1.4 loads per vpdpbusd where Zen 5 issues two vpdpbusd a cycle. Here, 2 groups x T = 4
// tokens, 0.8 loads per vpdpbusd and 8 independent chains; one Zen 5 core, 48 tokens in tiles
// of 16 as MatMulQuantized runs them, 6144 x 1536 and 1536 x 6144: 101-121 -> 134-146
// multiply-adds per TSC tick (3 groups x 4 tokens measured about 3% more: too few registers
// left to be worth the odd group counts).
// Fmt::LoadPair(data, p, lo, hi): chunks 2p and 2p + 1 of a block's 16 rows (unsigned bytes).
// kGroup: the copy's interleave_group (8, or 1 where it was made for single rows), a constant
// so that the hot loop's activation offsets are too.
template <class Fmt, int T, int kGroup = 8>
void GemmPairT(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               float* out, int64_t ldo) {
  static_assert(kGroup == 8 || (kGroup == 1 && T == 1));
  constexpr int kOffsetShift = Fmt::kOffset == 8 ? 0 : 4;  // neg_offset8 holds -8 * sum
  static_assert((8 << kOffsetShift) == Fmt::kOffset);
  const uint8_t* g0 = group;
  const uint8_t* g1 = group + nblocks * Fmt::kBlockBytes;
  __m512 acc0[T], acc1[T];
  for (int t = 0; t < T; ++t) acc0[t] = acc1[t] = _mm512_setzero_ps();
  const int64_t slot = a.Slot(token, 0);
  const int8_t* q = a.q8.data() + slot * 32;
  const float* sc = a.scale8.data() + slot;
  const int32_t* neg_offset = a.neg_offset8.data() + slot;
  for (int64_t b = 0; b < nblocks; ++b, g0 += Fmt::kBlockBytes, g1 += Fmt::kBlockBytes,
               q += kGroup * 32, sc += kGroup, neg_offset += kGroup) {
    simd::PrefetchAhead<Fmt::kBlockBytes>(g0);
    simd::PrefetchAhead<Fmt::kBlockBytes>(g1);
    __m512i d0[T], d1[T];
    for (int t = 0; t < T; ++t) {
      d0[t] = d1[t] = _mm512_slli_epi32(_mm512_set1_epi32(neg_offset[t]), kOffsetShift);
    }
    for (int p = 0; p < 4; ++p) {
      __m512i lo0, hi0, lo1, hi1;
      Fmt::LoadPair(g0 + Fmt::kDataOffset, p, &lo0, &hi0);
      Fmt::LoadPair(g1 + Fmt::kDataOffset, p, &lo1, &hi1);
      for (int t = 0; t < T; ++t) {
        int32_t four;
        std::memcpy(&four, q + 32 * t + 8 * p, 4);
        const __m512i bc = _mm512_set1_epi32(four);
        d0[t] = _mm512_dpbusd_epi32(d0[t], lo0, bc);
        d1[t] = _mm512_dpbusd_epi32(d1[t], lo1, bc);
      }
      for (int t = 0; t < T; ++t) {
        int32_t four;
        std::memcpy(&four, q + 32 * t + 8 * p + 4, 4);
        const __m512i bc = _mm512_set1_epi32(four);
        d0[t] = _mm512_dpbusd_epi32(d0[t], hi0, bc);
        d1[t] = _mm512_dpbusd_epi32(d1[t], hi1, bc);
      }
    }
    const __m512 dw0 = Fmt::Scales(g0);
    const __m512 dw1 = Fmt::Scales(g1);
    for (int t = 0; t < T; ++t) {
      const __m512 s = _mm512_set1_ps(sc[t]);
      acc0[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0[t]), _mm512_mul_ps(dw0, s), acc0[t]);
      acc1[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1[t]), _mm512_mul_ps(dw1, s), acc1[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    _mm512_storeu_ps(out + t * ldo, acc0[t]);
    _mm512_storeu_ps(out + t * ldo + 16, acc1[t]);
  }
}

// Pieces inside one token group of the interleaved copy (8 tokens, or 1 for a copy made for
// single rows), 4 tokens at a time.
template <class Fmt>
void GemmX16Pair(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  if (a.interleave_group == 1) {
    for (int t = 0; t < ntok; ++t) {
      GemmPairT<Fmt, 1, 1>(group, nblocks, a, token + t, out + t * ldo, ldo);
    }
    return;
  }
  for (int first = 0; first < ntok;) {
    const int64_t t = token + first;
    const int n = static_cast<int>(std::min<int64_t>({4, 8 - t % 8, ntok - first}));
    simd::DispatchTokenCount<4>(n, [&](auto nt) {
      GemmPairT<Fmt, decltype(nt)::value>(group, nblocks, a, t, out + first * ldo, ldo);
    });
    first += n;
  }
}

// The fifth bits of a Q5_Kx16 sub-block or Q5_1x16 block (64 bytes: chunk ch's at bit ch of
// each byte) ORed into bit 4 of the chunks' nibbles w[ch]: ch < 4 up by 4 - ch, ch > 4 down by
// ch - 4 (16-bit shifts: bits crossing into the neighbouring byte land outside bit 4, which the
// mask keeps). One shift and one vpternlogd per chunk.
inline void OrFifthBits(const uint8_t* bits, __m512i (&w)[8]) {
  const __m512i fifth = _mm512_loadu_si512(bits);
  const __m512i bit4 = _mm512_set1_epi8(0x10);
  w[0] = _mm512_ternarylogic_epi32(w[0], _mm512_slli_epi16(fifth, 4), bit4, 0xF8);
  w[1] = _mm512_ternarylogic_epi32(w[1], _mm512_slli_epi16(fifth, 3), bit4, 0xF8);
  w[2] = _mm512_ternarylogic_epi32(w[2], _mm512_slli_epi16(fifth, 2), bit4, 0xF8);
  w[3] = _mm512_ternarylogic_epi32(w[3], _mm512_slli_epi16(fifth, 1), bit4, 0xF8);
  w[4] = _mm512_ternarylogic_epi32(w[4], fifth, bit4, 0xF8);
  w[5] = _mm512_ternarylogic_epi32(w[5], _mm512_srli_epi16(fifth, 1), bit4, 0xF8);
  w[6] = _mm512_ternarylogic_epi32(w[6], _mm512_srli_epi16(fifth, 2), bit4, 0xF8);
  w[7] = _mm512_ternarylogic_epi32(w[7], _mm512_srli_epi16(fifth, 3), bit4, 0xF8);
}

// Q4_Kx16: each 32-value sub-block is a Q4_0x16-layout area (Q4X16::Load) with per-row scale
// d * sc and offset dmin * m: out += sum_j a_scale_j * (d sc_j dot_j - dmin m_j sum(a_j)). The
// 6-bit scales and mins (entry j * 16 + r) are unpacked to bytes once per 256-value block for
// the whole token piece: low nibbles from their 64-byte areas, top two bits from the shared
// one (pack::RepackGroupQ4_Kx16); 16-bit shifts carry bits across bytes, which the masks drop.
template <int NT, bool kFifthBit = false>
void GemmQ4_Kx16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                  int64_t token, float* out, int64_t ldo) {
  // Q5_Kx16 (kFifthBit): the same head, and sub-blocks of 320 bytes whose last 64 hold the
  // fifth bits, chunk ch's at bit ch of each byte (pack::RepackGroupQ5_Kx16), ORed into bit 4
  // of the chunk's nibbles: one shift and one vpternlogd per chunk, shared by the NT tokens.
  constexpr int64_t kBlockBytes = kFifthBit ? pack::kQ5_Kx16BlockBytes : pack::kQ4_Kx16BlockBytes;
  constexpr int64_t kSubBlockBytes = kFifthBit ? pack::kQ5_Kx16SubBlockBytes : 256;
  __m512 acc[NT];
  const int8_t* q[NT];
  const float* as[NT];
  const float* offset[NT];  // 8 * sum * scale per activation block (QuantizedActivations)
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm512_setzero_ps();
    q[t] = a.q_row(token + t);
    as[t] = a.scale_row(token + t);
    offset[t] = a.offset_row(token + t);
  }
  const __m512i low4 = _mm512_set1_epi8(0x0F), top2 = _mm512_set1_epi8(0x30);
  const __m512i quad = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, group += kBlockBytes) {
    simd::PrefetchAhead<256>(group + 2048);
    // Entries 0-63 (sub-blocks 0-3) and 64-127 (4-7) of the scales and mins, kept in
    // registers rather than stored and reloaded 16 bytes at a time.
    const __m512i sl = _mm512_loadu_si512(group + pack::kQ4_Kx16ScaleLow);
    const __m512i ml = _mm512_loadu_si512(group + pack::kQ4_Kx16MinLow);
    const __m512i hi = _mm512_loadu_si512(group + pack::kQ4_Kx16High);
    const __m512i sc[2] = {_mm512_or_si512(_mm512_and_si512(sl, low4),
                                           _mm512_and_si512(_mm512_slli_epi16(hi, 4), top2)),
                           _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(sl, 4), low4),
                                           _mm512_and_si512(_mm512_slli_epi16(hi, 2), top2))};
    const __m512i mn[2] = {_mm512_or_si512(_mm512_and_si512(ml, low4), _mm512_and_si512(hi, top2)),
                           _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ml, 4), low4),
                                           _mm512_and_si512(_mm512_srli_epi16(hi, 2), top2))};
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(group)));
    // dmin / 8: the min term is then dmin m / 8 times the activation block's offset (8 sum
    // scale, one broadcast load per token) rather than sum and scale multiplied per token.
    const __m512 dmin8 = _mm512_mul_ps(
        _mm512_cvtph_ps(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + pack::kQ4_Kx16Dmin))),
        _mm512_set1_ps(0.125f));
    for (int j = 0; j < 8; ++j) {
      simd::PrefetchAhead<256>(group + kSubBlockBytes * j);
      const int64_t b = sb * 8 + j;
      __m512i w[8];
      const uint8_t* data = group + pack::kQ4_Kx16Data + kSubBlockBytes * j;
      Q4X16::Load(data, w);
      if constexpr (kFifthBit) OrFifthBits(data + pack::kQ5_Kx16FifthBits, w);
      // Sub-block j's 16 bytes (dwords 4 (j % 4) ...) moved to the low lane, widened to f32.
      const __m512i pick = _mm512_add_epi32(quad, _mm512_set1_epi32(4 * (j % 4)));
      auto bytes_f32 = [&](__m512i v) {
        return _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm512_castsi512_si128(_mm512_permutexvar_epi32(pick, v))));
      };
      const __m512 ds = _mm512_mul_ps(d, bytes_f32(sc[j / 4]));
      const __m512 dm8 = _mm512_mul_ps(dmin8, bytes_f32(mn[j / 4]));
      for (int t = 0; t < NT; ++t) {
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DotBlockX16(w, q[t] + b * 32)),
                                 _mm512_mul_ps(ds, _mm512_set1_ps(as[t][b])), acc[t]);
        acc[t] = _mm512_fnmadd_ps(dm8, _mm512_set1_ps(offset[t][b]), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(out + t * ldo, acc[t]);
}

void GemmQ4_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<8>(ntok, [&](int first, auto nt) {
    GemmQ4_Kx16T<decltype(nt)::value>(group, nblocks, a, token + first, out + first * ldo, ldo);
  });
}

// IQ4_XSx16: each 32-value sub-block is a Q4_0x16-layout area (Q4X16::Load) whose nibbles are
// looked up (vpshufb) as the levels + 128, unsigned for vpdpbusd; the 128 comes off each
// token's int32 block sums exactly (128 sum(a), one broadcast), and the rows' d (ls - 32)
// scale them with the activation scale. The 6-bit scales (entry 16 j + r) are unpacked to bytes
// once per 256-value block (pack::RepackGroupIQ4_XSx16's layout): low nibbles from the 64-byte
// area, top two bits from the 32-byte one, shifted per quarter of the entries.
template <int NT>
void GemmIQ4_XSx16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                    int64_t token, float* out, int64_t ldo) {
  __m512 acc[NT];
  const int8_t* q[NT];
  const float* as[NT];
  const int32_t* sum[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm512_setzero_ps();
    q[t] = a.q_row(token + t);
    as[t] = a.scale_row(token + t);
    sum[t] = a.sum_row(token + t);
  }
  const __m512i table = IQ4LevelsPlus128();
  const __m512i low4 = _mm512_set1_epi8(0x0F), top2 = _mm512_set1_epi8(0x30);
  const __m512i quad = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
  const __m512i minus32 = _mm512_set1_epi32(-32);
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, group += pack::kIQ4_XSx16BlockBytes) {
    simd::PrefetchAhead<256>(group + 2048);
    const __m512i sl = _mm512_loadu_si512(group + pack::kIQ4_XSx16ScaleLow);
    const __m256i hi =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + pack::kIQ4_XSx16ScaleHigh));
    // Entries 0-63 take their top bits at shifts 0 (e < 32) and 2; entries 64-127 at 4 and 6.
    const __m512i hi_a =
        _mm512_inserti64x4(_mm512_castsi256_si512(hi), _mm256_srli_epi16(hi, 2), 1);
    const __m512i hi_b = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srli_epi16(hi, 4)),
                                            _mm256_srli_epi16(hi, 6), 1);
    const __m512i sc[2] = {_mm512_or_si512(_mm512_and_si512(sl, low4),
                                           _mm512_and_si512(_mm512_slli_epi16(hi_a, 4), top2)),
                           _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(sl, 4), low4),
                                           _mm512_and_si512(_mm512_slli_epi16(hi_b, 4), top2))};
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(group)));
    for (int j = 0; j < 8; ++j) {
      simd::PrefetchAhead<256>(group + 256 * j);
      const int64_t b = sb * 8 + j;
      __m512i w[8];
      Q4X16::Load(group + pack::kIQ4_XSx16Data + 256 * j, w);
      for (int c = 0; c < 8; ++c) w[c] = _mm512_shuffle_epi8(table, w[c]);
      // Sub-block j's 16 scale bytes (dwords 4 (j % 4) ...) moved to the low lane: d (ls - 32).
      const __m512i pick = _mm512_add_epi32(quad, _mm512_set1_epi32(4 * (j % 4)));
      const __m512 dl = _mm512_mul_ps(
          d, _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_cvtepu8_epi32(_mm512_castsi512_si128(
                                                     _mm512_permutexvar_epi32(pick, sc[j / 4]))),
                                                 minus32)));
      for (int t = 0; t < NT; ++t) {
        const __m512i dot =
            _mm512_sub_epi32(DotBlockX16(w, q[t] + b * 32), _mm512_set1_epi32(128 * sum[t][b]));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot),
                                 _mm512_mul_ps(dl, _mm512_set1_ps(as[t][b])), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(out + t * ldo, acc[t]);
}

void GemmIQ4_XSx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                   int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<8>(ntok, [&](int first, auto nt) {
    GemmIQ4_XSx16T<decltype(nt)::value>(group, nblocks, a, token + first, out + first * ldo, ldo);
  });
}

void GemmQ5_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<8>(ntok, [&](int first, auto nt) {
    GemmQ4_Kx16T<decltype(nt)::value, true>(group, nblocks, a, token + first, out + first * ldo,
                                            ldo);
  });
}

// Q2_Kx16: per 32-value sub-block j, chunk ch of the 16 rows is bits 2 (ch % 4) .. + 1 of area
// ch / 4 (pack::RepackGroupQ2_Kx16): one 16-bit shift and a mask (the bits shifted in from the
// next byte land above bit 1). Chunks 0-3 (Q2_K sub-block 2 j, scale and min in the low words
// below) and 4-7 (2 j + 1, the high words) run as two vpdpbusd chains per token, whose sums
// (at most 16 * 3 * 127 in magnitude) fit 16 bits: the second chain's moved into the high words
// of the first's, one vpmaddwd against the rows' (scale_2j, scale_2j+1) pairs gives S = sc dot
// summed over both in int32, and another of the (min_2j, min_2j+1) pairs with the token's two
// per-16 activation sums gives M; the rows then take a_scale (d S - dmin M) in f32.
template <int NT>
void GemmQ2_Kx16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                  int64_t token, float* out, int64_t ldo) {
  __m512 acc[NT];
  const int8_t* q[NT];
  const float* as[NT];
  const int16_t* sum16[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm512_setzero_ps();
    q[t] = a.q_row(token + t);
    as[t] = a.scale_row(token + t);
    sum16[t] = a.sum16_row(token + t);
  }
  const __m512i three = _mm512_set1_epi8(3), low4 = _mm512_set1_epi16(0x0F);
  const bool to_l2 = DecodeStreamToL2();
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, group += pack::kQ2_Kx16BlockBytes) {
    // A whole block ahead at once (head and sub-blocks): one token (decode) streams it from
    // DRAM (simd::PrefetchDecodeStream), more tokens re-read it from L2.
    if constexpr (NT == 1) {
      simd::PrefetchDecodeStream<pack::kQ2_Kx16BlockBytes>(group, to_l2);
    } else {
      simd::PrefetchAhead<pack::kQ2_Kx16BlockBytes>(group);
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(group)));
    const __m512 dmin = _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + pack::kQ2_Kx16Dmin)));
    for (int j = 0; j < 8; ++j) {
      const uint8_t* data = group + pack::kQ2_Kx16Data + pack::kQ2_Kx16SubBlockBytes * j;
      const int64_t b = sb * 8 + j;
      __m512i w[8];
      for (int p = 0; p < 2; ++p) {
        const __m512i area = _mm512_loadu_si512(data + 64 * p);
        w[4 * p] = _mm512_and_si512(area, three);
        w[4 * p + 1] = _mm512_and_si512(_mm512_srli_epi16(area, 2), three);
        w[4 * p + 2] = _mm512_and_si512(_mm512_srli_epi16(area, 4), three);
        w[4 * p + 3] = _mm512_and_si512(_mm512_srli_epi16(area, 6), three);
      }
      // Row r's scale bytes of sub-blocks 2 j (low word) and 2 j + 1 (high word).
      const uint8_t* scales = group + pack::kQ2_Kx16Scales + 32 * j;
      const __m512i pairs = _mm512_or_si512(
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales))),
          _mm512_slli_epi32(
              _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + 16))),
              16));
      const __m512i sc = _mm512_and_si512(pairs, low4), mn = _mm512_srli_epi16(pairs, 4);
      for (int t = 0; t < NT; ++t) {
        const int8_t* qb = q[t] + b * 32;
        __m512i first = _mm512_setzero_si512(), second = _mm512_setzero_si512();
        for (int c = 0; c < 4; ++c) {
          first = DotBroadcast(first, w[c], qb + 4 * c);
          second = DotBroadcast(second, w[c + 4], qb + 16 + 4 * c);
        }
        const __m512i both =
            _mm512_mask_blend_epi16(0xAAAAAAAA, first, _mm512_slli_epi32(second, 16));
        int32_t sums;  // the token's two 16-value sums of this block, as an int16 pair
        std::memcpy(&sums, sum16[t] + 2 * b, 4);
        const __m512i scaled = _mm512_madd_epi16(both, sc);
        const __m512i mins = _mm512_madd_epi16(mn, _mm512_set1_epi32(sums));
        const __m512 dsm = _mm512_fnmadd_ps(dmin, _mm512_cvtepi32_ps(mins),
                                            _mm512_mul_ps(d, _mm512_cvtepi32_ps(scaled)));
        acc[t] = _mm512_fmadd_ps(dsm, _mm512_set1_ps(as[t][b]), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(out + t * ldo, acc[t]);
}

void GemmQ2_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<8>(ntok, [&](int first, auto nt) {
    GemmQ2_Kx16T<decltype(nt)::value>(group, nblocks, a, token + first, out + first * ldo, ldo);
  });
}

// One token's share of a 16-row sub-block whose values carry an offset (Q6_Kx16: + 32, Q3_Kx16:
// + 4) and a scale per 16 values: chunks 0-3 (values 0-15, scale_lo = d * scale 2j per row) and
// 4-7 (values 16-31, scale_hi) as two vpdpbusd chains, each taking off kOffset * the token's
// 16-value activation sum, then scaled by the row's scale and the block's activation scale.
template <int kOffset>
inline void AccumulateScaledHalves(const __m512i (&w)[8], const QuantizedActivations& a,
                                   int64_t token, int64_t b, __m512 scale_lo, __m512 scale_hi,
                                   __m512* acc) {
  const int8_t* qb = a.q_row(token) + b * 32;
  __m512i first = _mm512_setzero_si512(), second = _mm512_setzero_si512();
  for (int c = 0; c < 4; ++c) {
    int32_t four0, four1;
    std::memcpy(&four0, qb + 4 * c, 4);
    std::memcpy(&four1, qb + 16 + 4 * c, 4);
    first = _mm512_dpbusd_epi32(first, w[c], _mm512_set1_epi32(four0));
    second = _mm512_dpbusd_epi32(second, w[c + 4], _mm512_set1_epi32(four1));
  }
  const int16_t* sums = a.sum16_row(token) + 2 * b;
  first = _mm512_sub_epi32(first, _mm512_set1_epi32(kOffset * sums[0]));
  second = _mm512_sub_epi32(second, _mm512_set1_epi32(kOffset * sums[1]));
  const __m512 da = _mm512_set1_ps(a.scale_row(token)[b]);
  *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(first), _mm512_mul_ps(scale_lo, da), *acc);
  *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(second), _mm512_mul_ps(scale_hi, da), *acc);
}

// Q6_Kx16: per sub-block, eight vectors of unsigned 6-bit values (low nibbles in the Q4_0x16
// layout, top two bits of chunk ch from shift 2 (ch % 4) of area ch / 4, moved to bits 4-5 by
// 16-bit shifts whose carries the mask drops). Chunks 0-3 (values 0-15, scale 2j) and 4-7
// (values 16-31, scale 2j + 1) run as two vpdpbusd chains per token; each takes off its +32
// as 32 * the token's 16-value activation sum and is scaled by d * scale in f32.
template <int NT>
void GemmQ6_Kx16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                  int64_t token, float* out, int64_t ldo) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F), top2 = _mm512_set1_epi8(0x30);
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, group += pack::kQ6_Kx16BlockBytes) {
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(group)));
    const uint8_t* scales = group + pack::kQ6_Kx16Scales;
    auto scale_f32 = [&](int k) {
      return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                  reinterpret_cast<const __m128i*>(scales + 16 * k)))));
    };
    for (int j = 0; j < 8; ++j) {
      const uint8_t* data = group + pack::kQ6_Kx16Data + pack::kQ6_Kx16SubBlockBytes * j;
      simd::PrefetchAhead<pack::kQ6_Kx16SubBlockBytes>(data);
      const int64_t b = sb * 8 + j;
      __m512i w[8];
      for (int c = 0; c < 4; ++c) {
        const __m512i nib = _mm512_loadu_si512(data + 64 * c);
        const __m512i top = _mm512_loadu_si512(data + 256 + 64 * (c / 2));
        const __m512i top_a = c % 2 == 0 ? _mm512_slli_epi16(top, 4) : top;
        const __m512i top_b = c % 2 == 0 ? _mm512_slli_epi16(top, 2) : _mm512_srli_epi16(top, 2);
        w[2 * c] = _mm512_or_si512(_mm512_and_si512(nib, low4), _mm512_and_si512(top_a, top2));
        w[2 * c + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(nib, 4), low4),
                                       _mm512_and_si512(top_b, top2));
      }
      const __m512 scale_lo = scale_f32(2 * j), scale_hi = scale_f32(2 * j + 1);
      for (int t = 0; t < NT; ++t) {
        AccumulateScaledHalves<32>(w, a, token + t, b, scale_lo, scale_hi, &acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(out + t * ldo, acc[t]);
}

void GemmQ6_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<8>(ntok, [&](int first, auto nt) {
    GemmQ6_Kx16T<decltype(nt)::value>(group, nblocks, a, token + first, out + first * ldo, ldo);
  });
}

// Q4_1x16: per block, the Q4_0x16 data area's nibbles (Q4X16::Load) times the token's block
// (DotBlockX16), scaled by d; the mins add m / 8 times the block's offset (8 sum(a) scale,
// QuantizedActivations), so no per-token sum and scale multiply.
// Q5_1x16 (kFifthBit): the same with the fifth bits ORed in (OrFifthBits).
template <int NT, bool kFifthBit = false>
void GemmQ4_1x16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                  int64_t token, float* out, int64_t ldo) {
  constexpr int kBlockBytes = kFifthBit ? pack::kQ5_1x16BlockBytes : pack::kQ4_1x16BlockBytes;
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nblocks; ++b, group += kBlockBytes) {
    simd::PrefetchAhead<kBlockBytes>(group);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(group)));
    const __m512 m8 = _mm512_mul_ps(
        _mm512_cvtph_ps(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + pack::kQ4_1x16Min))),
        _mm512_set1_ps(0.125f));
    __m512i w[8];
    Q4X16::Load(group + pack::kQ4_1x16Data, w);
    if constexpr (kFifthBit) OrFifthBits(group + pack::kQ5_1x16FifthBits, w);
    for (int t = 0; t < NT; ++t) {
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DotBlockX16(w, a.q_row(token + t) + b * 32)),
                               _mm512_mul_ps(d, _mm512_set1_ps(a.scale_row(token + t)[b])), acc[t]);
      acc[t] = _mm512_fmadd_ps(m8, _mm512_set1_ps(a.offset_row(token + t)[b]), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(out + t * ldo, acc[t]);
}

void GemmQ4_1x16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<8>(ntok, [&](int first, auto nt) {
    GemmQ4_1x16T<decltype(nt)::value>(group, nblocks, a, token + first, out + first * ldo, ldo);
  });
}

void GemmQ5_1x16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<8>(ntok, [&](int first, auto nt) {
    GemmQ4_1x16T<decltype(nt)::value, true>(group, nblocks, a, token + first, out + first * ldo,
                                            ldo);
  });
}

// Q3_Kx16: per sub-block, eight vectors of unsigned 3-bit values: chunk ch's low bit pair from
// area ch / 4 at shift 2 (ch % 4), its hmask bit from bit ch of the high-bit area moved to
// bit 2 (16-bit shifts whose carries the masks drop). Chunks 0-3 (values 0-15, scale 2j) and
// 4-7 (values 16-31, scale 2j + 1) run as two vpdpbusd chains per token, each taking off its
// + 4 as 4 * the token's 16-value activation sum, scaled by d * (scale - 32) in f32. The two
// scales' 6 bits are one 32-byte load from each scale area (entries 32 j .. 32 j + 31).
template <int NT>
void GemmQ3_Kx16T(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                  int64_t token, float* out, int64_t ldo) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i m3 = _mm512_set1_epi8(3), m4 = _mm512_set1_epi8(4);
  const __m256i low4 = _mm256_set1_epi8(0x0F), top2 = _mm256_set1_epi8(0x30);
  for (int64_t sb = 0; sb < nblocks / 8; ++sb, group += pack::kQ3_Kx16BlockBytes) {
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(group)));
    for (int j = 0; j < 8; ++j) {
      const uint8_t* data = group + pack::kQ3_Kx16Data + pack::kQ3_Kx16SubBlockBytes * j;
      simd::PrefetchAhead<pack::kQ3_Kx16SubBlockBytes>(data);
      const int64_t b = sb * 8 + j;
      // Scales 2j (bytes 0-15) and 2j + 1 (bytes 16-31) of the 16 rows, minus 32.
      const __m256i low = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(group + pack::kQ3_Kx16ScaleLow + (32 * j) % 128));
      const __m256i high = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(group + pack::kQ3_Kx16ScaleHigh + (32 * j) % 64));
      const int high_shift = 2 * (j / 2);  // top bits at 2 (j / 2); moved to bits 4-5
      const __m256i top = high_shift <= 4 ? _mm256_slli_epi16(high, 4 - high_shift)
                                          : _mm256_srli_epi16(high, high_shift - 4);
      const __m256i scales = _mm256_sub_epi8(
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(low, 4 * (j / 4)), low4),
                          _mm256_and_si256(top, top2)),
          _mm256_set1_epi8(32));
      const __m512 scale_lo = _mm512_mul_ps(
          d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(scales))));
      const __m512 scale_hi = _mm512_mul_ps(
          d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(scales, 1))));
      const __m512i bits = _mm512_loadu_si512(data + pack::kQ3_Kx16HighBits);
      __m512i w[8];
      for (int p = 0; p < 2; ++p) {
        const __m512i pairs = _mm512_loadu_si512(data + 64 * p);
        for (int s = 0; s < 4; ++s) {
          const int ch = 4 * p + s;
          const __m512i hbit =
              ch < 2 ? _mm512_slli_epi16(bits, 2 - ch) : _mm512_srli_epi16(bits, ch - 2);
          // (pairs >> 2 s) & 3 | hbit & 4
          w[ch] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(pairs, 2 * s), m3),
                                            hbit, m4, 0xF8);
        }
      }
      for (int t = 0; t < NT; ++t) {
        AccumulateScaledHalves<4>(w, a, token + t, b, scale_lo, scale_hi, &acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(out + t * ldo, acc[t]);
}

void GemmQ3_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  simd::ForTokenPieces<8>(ntok, [&](int first, auto nt) {
    GemmQ3_Kx16T<decltype(nt)::value>(group, nblocks, a, token + first, out + first * ldo, ldo);
  });
}

void Bf16ToF32(const uint8_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * i));
    const __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(w));
  }
  ReferenceTable().bf16_to_f32(src + 2 * i, n - i, dst + i);  // the tail
}

void F16ToF32(const uint8_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * i));
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
  }
  ReferenceTable().f16_to_f32(src + 2 * i, n - i, dst + i);  // the tail
}

void F32ToF16(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h =
        _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), h);
  }
  ReferenceTable().f32_to_f16(src + i, n - i, dst + i);  // the tail
}

// One value per vector for 16 vectors, in lane order: out[i] = op over the lanes of v[i]
// (max of floats, or sum of int32 lanes viewed as floats), as a tree of 15 ops and 30 shuffles
// instead of 16 separate reductions of about 8 dependent instructions each. Both ops are exact
// in any order, so the results are those of _mm512_reduce_max_ps / _mm512_reduce_add_epi32.
template <class Op>
inline __m512 Reduce16(const __m512* v, Op op) {
  // 128-bit lane q of the tree holds the results of v[q], v[q + 4], v[q + 8], v[q + 12].
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, simd::ReduceTree16(v, op));
}

// Activation blocks of 32 values: d = max|x| / 127, q = round-to-even(x / d) (times 1 / d, as
// the reference), sum = sum of q, offset = 8 * sum * d. Sixteen blocks at a time, their maxima,
// scales and sums as vectors instead of a horizontal max and sum per block (E2B q4_0 pp512:
// 1.47% -> 0.87% of the samples); the same operations on the same values, so the reference's
// bits.
void QuantizeBlocks(const float* x, int64_t nblocks, int8_t* q, float* scale, int32_t* sum,
                    float* offset) {
  const auto max_op = [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); };
  const auto add_op = [](__m512 a, __m512 b) {
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
  };
  int64_t b = 0;
  for (; b + 16 <= nblocks; b += 16, x += 16 * 32, q += 16 * 32) {
    __m512 m[16];
    for (int j = 0; j < 16; ++j) {
      m[j] = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 32 * j)),
                           _mm512_abs_ps(_mm512_loadu_ps(x + 32 * j + 16)));
    }
    const __m512 d = _mm512_div_ps(Reduce16(m, max_op), _mm512_set1_ps(127.0f));
    const __m512 id = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_OQ),
                                          _mm512_set1_ps(1.0f), d);
    alignas(64) float ids[16];
    _mm512_store_ps(ids, id);
    __m512 sums[16];
    for (int j = 0; j < 16; ++j) {
      const __m512 s = _mm512_set1_ps(ids[j]);
      const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 32 * j), s));
      const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 32 * j + 16), s));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * j), _mm512_cvtsepi32_epi8(i0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * j + 16), _mm512_cvtsepi32_epi8(i1));
      sums[j] = _mm512_castsi512_ps(_mm512_add_epi32(i0, i1));
    }
    const __m512i total = _mm512_castps_si512(Reduce16(sums, add_op));
    _mm512_storeu_ps(scale + b, d);
    _mm512_storeu_si512(sum + b, total);
    _mm512_storeu_ps(
        offset + b,
        _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(8.0f), _mm512_cvtepi32_ps(total)), d));
  }
  for (; b < nblocks; ++b, x += 32, q += 32) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const __m512 id = _mm512_set1_ps(d != 0 ? 1.0f / d : 0.0f);
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));  // rounds to nearest even
    const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtsepi32_epi8(i0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtsepi32_epi8(i1));
    const int32_t total = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    scale[b] = d;
    sum[b] = total;
    offset[b] = 8.0f * static_cast<float>(total) * d;
  }
}

// PackGemmTokens sixteen k values at a time: the tile's rows (up to 16) loaded as vectors,
// transposed in registers, each k value's mr tokens stored with one masked store.
void PackGemmTokensAvx512(const float* x, int64_t ldx, int ntok, int64_t k, int mr, float* out) {
  if (mr > 16) {
    PackGemmTokens(x, ldx, ntok, k, mr, out);
    return;
  }
  const __mmask16 lanes = static_cast<__mmask16>((1u << mr) - 1);
  int64_t i0 = 0;
  for (; i0 + 16 <= k; i0 += 16) {
    __m512 r[16];
    for (int t = 0; t < 16; ++t) {
      r[t] = t < ntok ? _mm512_loadu_ps(x + t * ldx + i0) : _mm512_setzero_ps();
    }
    Transpose16x16(r);
    for (int i = 0; i < 16; ++i) _mm512_mask_storeu_ps(out + (i0 + i) * mr, lanes, r[i]);
  }
  for (int64_t i = i0; i < k; ++i) {  // the tail
    for (int t = 0; t < mr; ++t) out[i * mr + t] = t < ntok ? x[t * ldx + i] : 0.0f;
  }
}

// PackGemmPanel sixteen k values and sixteen rows at a time (transposed in registers, each k
// value's 16 rows one store); panels whose width is not a multiple of 16 take the reference.
void PackGemmPanelAvx512(const float* w, int64_t ldw, int nrows, int64_t k, int nr, float* out) {
  if (nr % 16 != 0) {
    PackGemmPanel(w, ldw, nrows, k, nr, out);
    return;
  }
  int64_t i0 = 0;
  for (; i0 + 16 <= k; i0 += 16) {
    for (int j0 = 0; j0 < nr; j0 += 16) {
      __m512 r[16];
      for (int j = 0; j < 16; ++j) {
        r[j] = j0 + j < nrows ? _mm512_loadu_ps(w + (j0 + j) * ldw + i0) : _mm512_setzero_ps();
      }
      Transpose16x16(r);
      for (int i = 0; i < 16; ++i) _mm512_storeu_ps(out + (i0 + i) * nr + j0, r[i]);
    }
  }
  for (int64_t i = i0; i < k; ++i) {  // the tail
    for (int j = 0; j < nr; ++j) out[i * nr + j] = j < nrows ? w[j * ldw + i] : 0.0f;
  }
}

using Arch = xsimd::avx512bw;

// Tokens in pieces of 16, then 8, through DotCodebookT; returns how many it took.
template <class Pairs>
int WideCodebookTiles(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a,
                      int64_t token, int ntok, float* out) {
  int t = 0;
  for (; t + 16 <= ntok; t += 16) DotCodebookT<Pairs, 16>(w, nblocks, a, token + t, out + t);
  for (; t + 8 <= ntok; t += 8) DotCodebookT<Pairs, 8>(w, nblocks, a, token + t, out + t);
  return t;
}

void DotCodebookTile(DType type, const uint8_t* w, int64_t nblocks, const QuantizedActivations& a,
                     int64_t token, int ntok, float* out) {
  int t =
      type == DType::kIQ3_S     ? WideCodebookTiles<IQ3_SPairs>(w, nblocks, a, token, ntok, out)
      : type == DType::kIQ3_XXS ? WideCodebookTiles<IQ3_XXSPairs>(w, nblocks, a, token, ntok, out)
      : type == DType::kIQ2_XXS ? WideCodebookTiles<IQ2_XXSPairs>(w, nblocks, a, token, ntok, out)
      : type == DType::kIQ2_XS  ? WideCodebookTiles<IQ2_XSPairs>(w, nblocks, a, token, ntok, out)
      : type == DType::kIQ2_S   ? WideCodebookTiles<IQ2_SPairs>(w, nblocks, a, token, ntok, out)
      : type == DType::kIQ1_S
          ? WideCodebookTiles<IQ1Codebook<IQ1SPairs, false>>(w, nblocks, a, token, ntok, out)
          : WideCodebookTiles<IQ1Codebook<IQ1MPairs, true>>(w, nblocks, a, token, ntok, out);
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

void GemmCodebookX16(DType type, const uint8_t* rows, uint64_t row_bytes, int nrows,
                     int64_t nblocks, const QuantizedActivations& a, int64_t ntok, float* out,
                     int64_t ldo) {
  alignas(64) static thread_local uint8_t values[kPanelValueBytes];
  alignas(64) static thread_local float scales[kPanelScaleFloats];
  const __mmask16 row_mask = static_cast<__mmask16>((1u << nrows) - 1);
  for (int64_t b0 = 0; b0 < nblocks; b0 += kPanelBlocks) {
    const int64_t nb = std::min(kPanelBlocks, nblocks - b0);
    const auto decode = type == DType::kIQ3_S     ? DecodePanel<IQ3_SPairs>
                        : type == DType::kIQ2_XXS ? DecodePanel<IQ2_XXSPairs>
                        : type == DType::kIQ2_XS  ? DecodePanel<IQ2_XSPairs>
                        : type == DType::kIQ2_S   ? DecodePanel<IQ2_SPairs>
                        : type == DType::kIQ1_S   ? DecodePanel<IQ1Codebook<IQ1SPairs, false>>
                        : type == DType::kIQ1_M   ? DecodePanel<IQ1Codebook<IQ1MPairs, true>>
                                                  : DecodePanel<IQ3_XXSPairs>;
    decode(rows, row_bytes, nrows, b0, nb, values, scales);
    const bool quarters = type == DType::kIQ2_XS || type == DType::kIQ2_S || type == DType::kIQ1_M;
    simd::ForTokenPieces<8>(static_cast<int>(ntok), [&](int first, auto nt) {
      constexpr int T = decltype(nt)::value;
      __m512 acc[T];
      for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
      if (quarters) {
        PanelTokensT<T, true>(values, scales, nb, a, b0, first, acc);
      } else {
        PanelTokensT<T, false>(values, scales, nb, a, b0, first, acc);
      }
      for (int t = 0; t < T; ++t) {
        float* o = out + (first + t) * ldo;
        const __m512 sum =
            b0 == 0 ? acc[t] : _mm512_add_ps(_mm512_maskz_loadu_ps(row_mask, o), acc[t]);
        _mm512_mask_storeu_ps(o, row_mask, sum);
      }
    });
  }
}

}  // namespace

const KernelTable& Table() {
  static const KernelTable table = {
      .isa = "avx512vnni",
      .dot_q8_0 = GEMMA4_BY_TOKEN_COUNT(DotQ8_0T),
      .dot_q4_0 = GEMMA4_BY_TOKEN_COUNT(DotQ4_0T),
      .dot_q4_0r = GroupDot<Q4Groups>,
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
      .gemm_q4_0r = GroupGemm<Q4Groups>,
      .dot_q8_0r = GroupDot<Q8Groups>,
      .gemm_q8_0r = GroupGemm<Q8Groups>,
      .gemm_q4_0x16 = GemmX16<Q4X16>,
      .gemm_q8_0x16 = GemmX16<Q8X16>,
      .gemm_q4_0x16_pair = GemmX16Pair<Q4X16>,
      .gemm_q8_0x16_pair = GemmX16Pair<Q8X16>,
      .x16_reads_interleaved = true,
      .thread_scratch_bytes = kCodebookScratchBytes,
      .gemm_q4_kx16 = GemmQ4_Kx16,
      .gemm_q6_kx16 = GemmQ6_Kx16,
      .gemm_q5_kx16 = GemmQ5_Kx16,
      .gemm_iq4_xsx16 = GemmIQ4_XSx16,
      .gemm_q3_kx16 = GemmQ3_Kx16,
      .gemm_q4_1x16 = GemmQ4_1x16,
      .gemm_q5_1x16 = GemmQ5_1x16,
      .gemm_q2_kx16 = GemmQ2_Kx16,
      .gemm_iq4_nlx16 = GemmX16<IQ4NLX16>,
      .gemm_iq4_nlx16_pair = GemmX16Pair<IQ4NLX16>,
      .gemm_mxfp4x16 = GemmX16<MXFP4X16>,
      .gemm_mxfp4x16_pair = GemmX16Pair<MXFP4X16>,
      .quantize_blocks = QuantizeBlocks,
      GEMMA4_FLOAT_KERNEL_ROWS(Arch),
      .bf16_to_f32 = Bf16ToF32,
      .f16_to_f32 = F16ToF32,
      .f32_to_f16 = F32ToF16,
      .gemm_f32_mr = 14,
      .gemm_f32_nr = 32,
      .gemm_f32_packed = simd::GemmPacked<Arch, 14, 2>,
      .gemm_f16_packed = simd::GemmPacked<Arch, 14, 2, simd::F16Weights>,
      .gemm_bf16_packed = simd::GemmPacked<Arch, 14, 2, simd::Bf16Weights>,
      .pack_gemm_tokens = PackGemmTokensAvx512,
      .pack_gemm_panel = PackGemmPanelAvx512};
  return table;
}

}  // namespace gemma4::kernels::avx512

namespace gemma4::kernels {

const KernelTable& Avx512VnniTable() { return avx512::Table(); }

}  // namespace gemma4::kernels
