// AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; only called after
// CpuSupports(Isa::kAvx2).
#include <immintrin.h>

#include <cstring>

#include "kernels/float_kernels-inl.h"
#include "kernels/kernels.h"

namespace gemma4::kernels {
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
void DotQ4_0T(const uint8_t* w, int64_t nblocks, const quant::QuantizedActivations& a,
              int64_t token, float* out) {
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
void DotQ8_0T(const uint8_t* w, int64_t nblocks, const quant::QuantizedActivations& a,
              int64_t token, float* out) {
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

void DotQ4_0(const uint8_t* w, int64_t nblocks, const quant::QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  switch (ntok) {
    case 4:
      return DotQ4_0T<4>(w, nblocks, a, token, out);
    case 3:
      return DotQ4_0T<3>(w, nblocks, a, token, out);
    case 2:
      return DotQ4_0T<2>(w, nblocks, a, token, out);
    default:
      return DotQ4_0T<1>(w, nblocks, a, token, out);
  }
}

void DotQ8_0(const uint8_t* w, int64_t nblocks, const quant::QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  switch (ntok) {
    case 4:
      return DotQ8_0T<4>(w, nblocks, a, token, out);
    case 3:
      return DotQ8_0T<3>(w, nblocks, a, token, out);
    case 2:
      return DotQ8_0T<2>(w, nblocks, a, token, out);
    default:
      return DotQ8_0T<1>(w, nblocks, a, token, out);
  }
}

void Bf16ToF32(const uint8_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
  }
  for (; i < n; ++i) {
    uint32_t bits = static_cast<uint32_t>(src[2 * i] | (src[2 * i + 1] << 8)) << 16;
    std::memcpy(dst + i, &bits, 4);
  }
}

void F16ToF32(const uint8_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = LoadHalf(src + 2 * i);
}

using Arch = xsimd::fma3<xsimd::avx2>;

}  // namespace

const KernelTable& Avx2Table() {
  static const KernelTable table = {
      "avx2", DotQ8_0, DotQ4_0, simd::DotF32<Arch>, simd::AxpyF32<Arch>, Bf16ToF32, F16ToF32};
  return table;
}

}  // namespace gemma4::kernels
