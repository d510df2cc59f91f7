// Float kernels written once with xsimd and instantiated per ISA (included only by the ISA
// translation units, which are compiled with that ISA's flags).
//
// Everything here is defined in namespace gemma4::kernels::GEMMA4_ISA_NAMESPACE::simd, the
// including unit's own namespace: an inline function or template instantiation compiled with
// AVX-512 flags then has a different symbol from the AVX2 one, so the linker cannot keep one
// copy for both (scripts/check-isa-symbols.py checks the objects).
#ifndef GEMMA4_SRC_KERNELS_FLOAT_KERNELS_INL_H_
#define GEMMA4_SRC_KERNELS_FLOAT_KERNELS_INL_H_

#ifndef GEMMA4_ISA_NAMESPACE
#error "define GEMMA4_ISA_NAMESPACE (the including ISA unit's namespace, e.g. avx2) first"
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <xsimd/xsimd.hpp>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

#include "base/half.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

namespace gemma4::kernels::GEMMA4_ISA_NAMESPACE::simd {

// Software prefetch of a weight stream consumed kBytes at a time, 2 KiB ahead: decode reads
// each weight once, and one core's hardware prefetchers alone keep too few lines in flight to
// reach its share of the DRAM bandwidth (AVX2, one-token Q4_0x16 GEMV from DRAM on two cores:
// 18-19 GB/s without, 21-28 GB/s with; 1, 2 and 4 KiB measured, 2 KiB best).
template <int kBytes>
inline void PrefetchAhead(const uint8_t* p) {
  constexpr int kDistance = 2048;
  for (int i = 0; i < kBytes; i += 64) __builtin_prefetch(p + kDistance + i);
}

// The same, kDistance bytes ahead and non-temporal (prefetchnta): for weights that one token
// reads once from DRAM, so that they pass through L1 without evicting the activations (which
// every row group re-reads) or filling L2 with lines nobody reads again.
template <int kBytes, int kDistance>
inline void PrefetchAheadNonTemporal(const uint8_t* p) {
  for (int i = 0; i < kBytes; i += 64) __builtin_prefetch(p + kDistance + i, 0, 0);
}

// Decode's weight stream (each weight read once from DRAM), by CPU vendor (DecodeStreamToL2):
// AMD, non-temporal 8 KiB ahead (Zen 5, two cores: 34-41 -> 48-59 GB/s against the 2 KiB T0
// prefetch); Intel, into L2 (prefetcht1) 4 KiB ahead: there prefetchnta fills L1 only and the
// Q4_0 decode kernel read 13 GB/s against 21-27 for a plain read (E2B Q4_0 tg32 on an Emerald
// Rapids-class Xeon, two threads: 58-75% of the bandwidth bound with prefetchnta 8 KiB, 85-87%
// with no prefetch, 95-103% with prefetcht0 8 KiB, 105-107% with prefetcht1 4 KiB).
template <int kBytes>
inline void PrefetchDecodeStream(const uint8_t* p, bool to_l2) {
  if (to_l2) {
    for (int i = 0; i < kBytes; i += 64) __builtin_prefetch(p + 4096 + i, 0, 2);
  } else {
    PrefetchAheadNonTemporal<kBytes, 8192>(p);
  }
}

// a * b + c with one rounding (a fused multiply-add instruction). xsimd 8.1 has no AVX-512
// fma and falls back to x * y + z, which -ffp-contract=off keeps as a multiply and an add: half
// the FMA throughput, and a rounding more than the AVX2 and NEON kernels.
template <class Arch>
inline xsimd::batch<float, Arch> MulAdd(xsimd::batch<float, Arch> a, xsimd::batch<float, Arch> b,
                                        xsimd::batch<float, Arch> c) {
#if defined(__AVX512F__)
  if constexpr (xsimd::batch<float, Arch>::size == 16) {
    return xsimd::batch<float, Arch>(_mm512_fmadd_ps(a, b, c));
  }
#endif
  return xsimd::fma(a, b, c);
}

inline float AsF32(float x) { return x; }
inline float AsF32(uint16_t h) { return half::F16ToF32(h); }
inline float AsF32(Bf16 h) { return half::Bf16ToF32(h.bits); }

// Values of an f32, f16 (IEEE half bits) or bf16 row as f32: one batch from p, and one value.
// Widening is exact, so 16-bit rows give the same products as the f32 rows they hold.
template <class Arch>
xsimd::batch<float, Arch> LoadAsF32(const float* p) {
  return xsimd::batch<float, Arch>::load_unaligned(p);
}
template <class Arch>
xsimd::batch<float, Arch> LoadAsF32(const uint16_t* p) {
  using B = xsimd::batch<float, Arch>;
#if defined(__AVX512F__)
  if constexpr (B::size == 16) {
    return B(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
  }
#endif
#if defined(__F16C__)
  if constexpr (B::size == 8) {
    return B(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
#endif
#if defined(__aarch64__)
  if constexpr (B::size == 4) return B(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))));
#endif
  alignas(64) float lanes[B::size];
  for (size_t i = 0; i < B::size; ++i) lanes[i] = half::F16ToF32(p[i]);
  return B::load_aligned(lanes);
}
template <class Arch>
xsimd::batch<float, Arch> LoadAsF32(const Bf16* p) {
  using B = xsimd::batch<float, Arch>;
#if defined(__AVX512F__)
  if constexpr (B::size == 16) {
    return B(_mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16)));
  }
#endif
#if defined(__AVX2__)
  if constexpr (B::size == 8) {
    return B(_mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16)));
  }
#endif
#if defined(__aarch64__)
  if constexpr (B::size == 4) {
    return B(
        vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p)), 16)));
  }
#endif
  alignas(64) float lanes[B::size];
  for (size_t i = 0; i < B::size; ++i) lanes[i] = AsF32(p[i]);
  return B::load_aligned(lanes);
}

// Calls f(std::integral_constant<int, n>{}) for the runtime count n in 1..Max.
template <int Max, class F>
void DispatchTokenCount(int n, F&& f) {
  if constexpr (Max == 1) {
    f(std::integral_constant<int, 1>{});
  } else if (n >= Max) {
    f(std::integral_constant<int, Max>{});
  } else {
    DispatchTokenCount<Max - 1>(n, f);
  }
}

// Splits ntok tokens into pieces of at most Max and calls f(first, std::integral_constant<int,
// n>{}) for each, so a kernel that keeps Max tokens' accumulators in registers serves any count.
template <int Max, class F>
void ForTokenPieces(int ntok, F&& f) {
  for (int first = 0; first < ntok; first += Max) {
    DispatchTokenCount<Max>(std::min(Max, ntok - first), [&](auto nt) { f(first, nt); });
  }
}

// Calls f(std::integral_constant<int, N>{}) for N = ntok in 1..4, so kernels templated on the
// token count are dispatched from a runtime count in one line.
template <class F>
void ForTokenCount(int ntok, F&& f) {
  DispatchTokenCount<4>(ntok, f);
}

// A row-dot kernel templated on the token count, as a kernels::RowDotFn: the table entry
// GEMMA4_BY_TOKEN_COUNT(DotQ4_0T) dispatches ntok 1..4 to DotQ4_0T<1..4>.
template <class Acts, void (*F1)(const uint8_t*, int64_t, const Acts&, int64_t, float*),
          void (*F2)(const uint8_t*, int64_t, const Acts&, int64_t, float*),
          void (*F3)(const uint8_t*, int64_t, const Acts&, int64_t, float*),
          void (*F4)(const uint8_t*, int64_t, const Acts&, int64_t, float*)>
void ByTokenCount(const uint8_t* w, int64_t nblocks, const Acts& a, int64_t token, int ntok,
                  float* out) {
  switch (ntok) {
    case 4:
      return F4(w, nblocks, a, token, out);
    case 3:
      return F3(w, nblocks, a, token, out);
    case 2:
      return F2(w, nblocks, a, token, out);
    default:
      return F1(w, nblocks, a, token, out);
  }
}
#define GEMMA4_BY_TOKEN_COUNT(kernel)                          \
  ::gemma4::kernels::GEMMA4_ISA_NAMESPACE::simd::ByTokenCount< \
      ::gemma4::kernels::QuantizedActivations, kernel<1>, kernel<2>, kernel<3>, kernel<4>>

// Dot product with four independent vector accumulators.
template <class Arch>
float DotF32(const float* a, const float* b, int64_t n) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  B acc0(0.0f), acc1(0.0f), acc2(0.0f), acc3(0.0f);
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    acc0 = MulAdd<Arch>(B::load_unaligned(a + i), B::load_unaligned(b + i), acc0);
    acc1 = MulAdd<Arch>(B::load_unaligned(a + i + W), B::load_unaligned(b + i + W), acc1);
    acc2 = MulAdd<Arch>(B::load_unaligned(a + i + 2 * W), B::load_unaligned(b + i + 2 * W), acc2);
    acc3 = MulAdd<Arch>(B::load_unaligned(a + i + 3 * W), B::load_unaligned(b + i + 3 * W), acc3);
  }
  for (; i + W <= n; i += W) {
    acc0 = MulAdd<Arch>(B::load_unaligned(a + i), B::load_unaligned(b + i), acc0);
  }
  float sum = xsimd::hadd((acc0 + acc1) + (acc2 + acc3));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

#if defined(__AVX512F__)
// The lane sums of 16 vectors at once: [s(v0), s(v4), s(v8), s(v12) | s(v1), s(v5), s(v9),
// s(v13) | s(v2), ... | s(v3), ...] (128-bit lane q holds v[q], v[q + 4], v[q + 8], v[q + 12]).
// Each sum takes the additions of xsimd::hadd on AVX-512, in its tree (r_i = x_i + x_{i+8},
// t_i = r_i + r_{i+4}, (t_0 + t_1) + (t_2 + t_3)), so the same bits: 15 additions and 30
// shuffles instead of 16 separate reductions of about 8 dependent instructions each.
// ReduceTree16 is the tree for any op (the activation quantization's max and int32 sums too).
template <class Op>
inline __m512 ReduceTree16(const __m512* v, Op op) {
  __m512 r[8], t[4], u[2];
  for (int p = 0; p < 8; ++p) {  // [r(v_2p) | r(v_2p+1)], 8 values each
    r[p] = op(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
              _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  for (int p = 0; p < 4; ++p) {  // [t(v_4p) | t(v_4p+1) | t(v_4p+2) | t(v_4p+3)], 4 each
    t[p] = op(_mm512_shuffle_f32x4(r[2 * p], r[2 * p + 1], _MM_SHUFFLE(2, 0, 2, 0)),
              _mm512_shuffle_f32x4(r[2 * p], r[2 * p + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  for (int p = 0; p < 2; ++p) {  // lane q: t0 + t1, t2 + t3 of t[2p]'s and of t[2p+1]'s vector
    u[p] = op(_mm512_shuffle_ps(t[2 * p], t[2 * p + 1], _MM_SHUFFLE(2, 0, 2, 0)),
              _mm512_shuffle_ps(t[2 * p], t[2 * p + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  return op(_mm512_shuffle_ps(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
            _mm512_shuffle_ps(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
}
inline __m512 ReduceAdd16(const __m512* v) {
  return ReduceTree16(v, [](__m512 a, __m512 b) { return _mm512_add_ps(a, b); });
}
#endif

#if defined(__AVX512F__)
// scores[a * ldsc + b] = hadd(acc[a][b]) for QB tokens x 4 rows, four tokens' four sums at a
// time (ReduceAdd16: xsimd::hadd's additions, so its bits).
template <class Arch, int QB>
inline void StoreSums4(const xsimd::batch<float, Arch> (&acc)[QB][4], float* scores, int64_t ldsc) {
  for (int a0 = 0; a0 < QB; a0 += 4) {
    __m512 v[16];
    for (int q = 0; q < 4; ++q) {
      for (int b = 0; b < 4; ++b) {
        v[q + 4 * b] = a0 + q < QB ? __m512(acc[a0 + q][b]) : _mm512_setzero_ps();
      }
    }
    alignas(64) float sums[16];
    _mm512_store_ps(sums, ReduceAdd16(v));
    for (int q = 0; q < 4 && a0 + q < QB; ++q) {
      std::memcpy(scores + (a0 + q) * ldsc, sums + 4 * q, 4 * sizeof(float));
    }
  }
}

// ScoresBlock<Arch, 6, 4> over the values [i0, i1) only (multiples of 16), continuing the 24
// accumulators kept in saved (from zero when first) and leaving them there, or storing the
// sums when last: the same products and additions in the same order as ScoresBlock over the
// whole rows, so the same bits, with a short span of six tokens' values staying in L1 while the
// rows' spans stream (prefill's float matmuls, whose six 1536-value f32 rows alone are 36 KiB).
template <class Arch, class KT>
void ScoresBlockSpan(const float* q, int64_t ldq, const KT* k, int64_t ldk, int64_t i0, int64_t i1,
                     xsimd::batch<float, Arch>* saved, bool first, bool last, float* scores,
                     int64_t ldsc) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  B acc[6][4];
  for (int a = 0; a < 6; ++a) {
    for (int b = 0; b < 4; ++b) acc[a][b] = first ? B(0.0f) : saved[a * 4 + b];
  }
  for (int64_t i = i0; i < i1; i += W) {
    B kv[4];
    for (int b = 0; b < 4; ++b) kv[b] = LoadAsF32<Arch>(k + b * ldk + i);
    for (int a = 0; a < 6; ++a) {
      const B qv = B::load_unaligned(q + a * ldq + i);
      for (int b = 0; b < 4; ++b) acc[a][b] = MulAdd<Arch>(qv, kv[b], acc[a][b]);
    }
  }
  if (last) {
    StoreSums4<Arch, 6>(acc, scores, ldsc);
    return;
  }
  for (int a = 0; a < 6; ++a) {
    for (int b = 0; b < 4; ++b) saved[a * 4 + b] = acc[a][b];
  }
}
#endif

// Attention scores of nq query rows against nk key rows:
// scores[h * ldsc + j] = dot(q + h * ldq, k + j * ldk) over d values. Blocks of 4 queries x 2
// keys keep 8 accumulators in registers, so each loaded vector serves several FMAs (a plain
// dot product loads two vectors per FMA). Every (query, key) pair is summed in the same order
// whatever the block shape, so results do not depend on how many rows come together.
template <class Arch, int QB, int KB, class KT, bool kPrefetchNextKeys = true>
void ScoresBlock(const float* q, int64_t ldq, const KT* k, int64_t ldk, int64_t d, float* scores,
                 int64_t ldsc) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  B acc[QB][KB];
  for (int a = 0; a < QB; ++a) {
    for (int b = 0; b < KB; ++b) acc[a][b] = B(0.0f);
  }
  auto step = [&](int64_t i) {
    B kv[KB];
    for (int b = 0; b < KB; ++b) kv[b] = LoadAsF32<Arch>(k + b * ldk + i);
    for (int a = 0; a < QB; ++a) {
      const B qv = B::load_unaligned(q + a * ldq + i);
      for (int b = 0; b < KB; ++b) acc[a][b] = MulAdd<Arch>(qv, kv[b], acc[a][b]);
    }
  };
  // One cache line of each row per outer step, and a prefetch of the same line of the rows of
  // the next block (the next KB keys): rows of a few hundred bytes (256-value f16 keys) change
  // too often for the hardware prefetchers to follow.
  constexpr int64_t kStep = std::max<int64_t>(W, 64 / static_cast<int64_t>(sizeof(KT)));
  int64_t i = 0;
  for (; i + kStep <= d; i += kStep) {
    if constexpr (kPrefetchNextKeys) {
      for (int b = 0; b < KB; ++b) {
        __builtin_prefetch(reinterpret_cast<const char*>(k + (b + KB) * ldk + i));
      }
    }
    for (int64_t v = 0; v < kStep; v += W) step(i + v);
  }
  for (; i + W <= d; i += W) step(i);
#if defined(__AVX512F__)
  if constexpr (W == 16 && KB == 4 && QB >= 4) {
    if (i == d) {
      StoreSums4<Arch, QB>(acc, scores, ldsc);
      return;
    }
  }
#endif
  for (int a = 0; a < QB; ++a) {
    for (int b = 0; b < KB; ++b) {
      float sum = xsimd::hadd(acc[a][b]);
      for (int64_t j = i; j < d; ++j) sum += q[a * ldq + j] * AsF32(k[b * ldk + j]);
      scores[a * ldsc + b] = sum;
    }
  }
}

// QB queries against all nk keys: blocks of KB keys, then the remaining keys one at a time.
template <class Arch, int QB, int KB, class KT, bool kPrefetchNextKeys = true>
void ScoresRows(const float* q, int64_t ldq, const KT* k, int64_t ldk, int64_t nk, int64_t d,
                float* scores, int64_t ldsc) {
  int64_t j = 0;
  for (; j + KB <= nk; j += KB) {
    ScoresBlock<Arch, QB, KB, KT, kPrefetchNextKeys>(q, ldq, k + j * ldk, ldk, d, scores + j, ldsc);
  }
  for (; j < nk; ++j) {
    ScoresBlock<Arch, QB, 1, KT, kPrefetchNextKeys>(q, ldq, k + j * ldk, ldk, d, scores + j, ldsc);
  }
}

// KT: float or uint16_t (f16 keys).
template <class Arch, class KT>
void AttentionScores(const float* q, int64_t ldq, int nq, const KT* k, int64_t ldk, int64_t nk,
                     int64_t d, float* scores, int64_t ldsc) {
  int h = 0;
  if constexpr (xsimd::batch<float, Arch>::size == 16) {
    // 32 vector registers: 6 queries x 4 keys (24 accumulators) load 10 vectors per 24 FMAs
    // (4 x 2 load 6 per 8). With six or more queries the keys are re-read by every query block
    // and sit in cache, so the next keys' prefetch (for streaming decode rows) only costs load
    // slots: without it, BF16 6144 x 1536 at 64 tokens on one core ran 101 -> 113 GFLOP/s.
    //
    // Many rows (prefill's float matmuls: the per-layer-input gate 256 x 1536 and projection
    // 1536 x 256, the 8960 x 1536 model projection) go row group by row group, every group of
    // six queries over one group before the next: a group's rows stay in cache while the
    // queries pass over them, where query group by query group streamed the whole matrix
    // once per six tokens. Each (query, row) pair is still one ScoresBlock / ScoresBlockSpan
    // sum at the same offsets, so the bits do not change.
    const int hq = nq / 6 * 6;
#if defined(__AVX512F__)
    // Long rows: six tokens against 32 rows at a time in spans of 256 values (ScoresBlockSpan),
    // the same bits as the whole-row blocks below.
    constexpr int64_t kSpan = 256, kRowGroup = 32;
    if (nq >= 12 && d > kSpan && d % 16 == 0) {
      int64_t j0 = 0;
      for (; j0 + 4 <= nk; j0 += kRowGroup) {
        const int64_t j1 = j0 + std::min(kRowGroup, (nk - j0) / 4 * 4);
        for (h = 0; h < hq; h += 6) {
          xsimd::batch<float, Arch> saved[kRowGroup / 4 * 24];
          const float* qh = q + h * ldq;
          float* sh = scores + h * ldsc;
          for (int64_t i0 = 0; i0 < d; i0 += kSpan) {
            const int64_t i1 = std::min(d, i0 + kSpan);
            for (int64_t j = j0; j < j1; j += 4) {
              ScoresBlockSpan<Arch, KT>(qh, ldq, k + j * ldk, ldk, i0, i1,
                                        saved + (j - j0) / 4 * 24, i0 == 0, i1 == d, sh + j, ldsc);
            }
          }
        }
        if (j1 < j0 + kRowGroup) {
          j0 = j1;
          break;
        }
      }
      for (h = 0; h < hq; h += 6) {
        for (int64_t j = j0; j < nk; ++j) {  // the last rows (fewer than 4), one at a time
          ScoresBlock<Arch, 6, 1, KT, false>(q + h * ldq, ldq, k + j * ldk, ldk, d,
                                             scores + h * ldsc + j, ldsc);
        }
      }
      h = hq;
    }
#endif
    if (h + 6 <= nq) {
      // Rows in runs of about 128 KiB (a multiple of ScoresRows' 4-row blocks, so every row
      // keeps its block), each run met by every group of six queries.
      const int64_t run = std::max<int64_t>(
          4, (int64_t{128 << 10} / std::max<int64_t>(1, d * int64_t{sizeof(KT)})) / 4 * 4);
      for (int64_t j0 = 0; j0 < nk; j0 += run) {
        const int64_t rows = std::min(run, nk - j0);
        for (int g = h; g + 6 <= nq; g += 6) {
          ScoresRows<Arch, 6, 4, KT, false>(q + g * ldq, ldq, k + j0 * ldk, ldk, rows, d,
                                            scores + g * ldsc + j0, ldsc);
        }
      }
      h = hq;
    }
  }
  for (; h + 4 <= nq; h += 4) {
    ScoresRows<Arch, 4, 2, KT>(q + h * ldq, ldq, k, ldk, nk, d, scores + h * ldsc, ldsc);
  }
  for (; h < nq; ++h) {
    ScoresRows<Arch, 1, 4, KT>(q + h * ldq, ldq, k, ldk, nk, d, scores + h * ldsc, ldsc);
  }
}

// A few tokens against weight rows (decode's float matmuls): y[t * ldy + r] = dot(x + t * ldx,
// w + r * ldw) over d values, for t < NX and r < nrows, one row after another. Each row is read
// once, front to back, before the next, so short rows form one sequential stream that the
// hardware prefetchers follow, with a software prefetch 2 KiB ahead. The single accumulator
// per token and the order of the sums are those of AttentionScores, so every output equals the
// one-token, one-row product (batch invariance, checked in ops_test).
template <class Arch, int NX, class KT>
void MatVecRowsT(const float* x, int64_t ldx, const KT* w, int64_t ldw, int64_t nrows, int64_t d,
                 float* y, int64_t ldy) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  // One cache line of the row per step (a software prefetch each), in vectors of W values.
  constexpr int64_t kStep = std::max<int64_t>(W, 64 / static_cast<int64_t>(sizeof(KT)));
  constexpr int64_t kPrefetchDistance = 2048;
  for (int64_t r = 0; r < nrows; ++r) {
    const KT* row = w + r * ldw;
    B acc[NX];
    for (int t = 0; t < NX; ++t) acc[t] = B(0.0f);
    auto step = [&](int64_t i) {
      const B wv = LoadAsF32<Arch>(row + i);
      for (int t = 0; t < NX; ++t)
        acc[t] = MulAdd<Arch>(B::load_unaligned(x + t * ldx + i), wv, acc[t]);
    };
    int64_t i = 0;
    for (; i + kStep <= d; i += kStep) {
      __builtin_prefetch(reinterpret_cast<const char*>(row + i) + kPrefetchDistance);
      for (int64_t v = 0; v < kStep; v += W) step(i + v);
    }
    for (; i + W <= d; i += W) step(i);
    for (int t = 0; t < NX; ++t) {
      float sum = xsimd::hadd(acc[t]);
      for (int64_t j = i; j < d; ++j) sum += x[t * ldx + j] * AsF32(row[j]);
      y[t * ldy + r] = sum;
    }
  }
}

// Decode's float matmuls for any token count. Rows of at least 1 KiB go four (or two) side by
// side through AttentionScores, whose prefetch covers the next rows: several independent
// accumulators, and streams long enough for the prefetchers. Shorter rows go one at a time
// (MatVecRowsT): four 512-byte rows side by side (the BF16 per-layer-input projection, 1536 x
// 256) read DRAM at 55-65% of the streaming bandwidth, one at a time at 85-100%; 3 KiB rows
// (1536-value BF16 rows, 8960 x 1536) the other way round, 105-115% of the probe side by side
// and 80-90% one at a time (AVX2, Zen 3, two threads; no sizes between measured). Both give
// the same sums.
template <class Arch, class KT>
void MatVecRows(const float* x, int64_t ldx, int nx, const KT* w, int64_t ldw, int64_t nrows,
                int64_t d, float* y, int64_t ldy) {
  constexpr int64_t kLongRowBytes = 1024;
  if (d * static_cast<int64_t>(sizeof(KT)) >= kLongRowBytes) {
    AttentionScores<Arch, KT>(x, ldx, nx, w, ldw, nrows, d, y, ldy);
    return;
  }
  ForTokenPieces<4>(nx, [&](int first, auto nt) {
    MatVecRowsT<Arch, decltype(nt)::value>(x + first * ldx, ldx, w, ldw, nrows, d, y + first * ldy,
                                           ldy);
  });
}

// Weighted sums of value rows: out[h * ldo + i] += sum_j p[h * ldp + j] * v[j * ldv + i] for
// h < nq, i < d. Accumulators for 2 queries x 4 vectors of output stay in registers across all
// nk values (a per-value axpy would load and store the output once per FMA).
// VT: float or uint16_t (f16 values).
template <class Arch, class VT>
void AttentionValues(const float* p, int64_t ldp, int nq, const VT* v, int64_t ldv, int64_t nk,
                     int64_t d, float* out, int64_t ldo) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  auto block = [&](auto qb_const, auto nv_const, int h0, int64_t i0) {
    constexpr int QB = decltype(qb_const)::value, NV = decltype(nv_const)::value;
    B acc[QB][NV];
    for (int a = 0; a < QB; ++a) {
      for (int c = 0; c < NV; ++c) {
        acc[a][c] = B::load_unaligned(out + (h0 + a) * ldo + i0 + c * W);
      }
    }
    for (int64_t j = 0; j < nk; ++j) {
      B vv[NV];
      for (int c = 0; c < NV; ++c) vv[c] = LoadAsF32<Arch>(v + j * ldv + i0 + c * W);
      for (int a = 0; a < QB; ++a) {
        const B w(p[(h0 + a) * ldp + j]);
        for (int c = 0; c < NV; ++c) acc[a][c] = MulAdd<Arch>(w, vv[c], acc[a][c]);
      }
    }
    for (int a = 0; a < QB; ++a) {
      for (int c = 0; c < NV; ++c) acc[a][c].store_unaligned(out + (h0 + a) * ldo + i0 + c * W);
    }
  };
  auto rows = [&](auto qb_const, int h0) {
    constexpr int QB = decltype(qb_const)::value;
    int64_t i = 0;
    for (; i + 4 * W <= d; i += 4 * W) block(qb_const, std::integral_constant<int, 4>{}, h0, i);
    for (; i + W <= d; i += W) block(qb_const, std::integral_constant<int, 1>{}, h0, i);
    for (int a = 0; a < QB; ++a) {
      for (int64_t t = i; t < d; ++t) {
        float sum = out[(h0 + a) * ldo + t];
        for (int64_t j = 0; j < nk; ++j) sum += p[(h0 + a) * ldp + j] * AsF32(v[j * ldv + t]);
        out[(h0 + a) * ldo + t] = sum;
      }
    }
  };
  int h = 0;
  // Six queries per pass where 6 x 4 accumulators and 4 value vectors fit the register file
  // (AVX-512's 32): each value row loaded serves six queries (vision attention, long
  // prefills). Every output still sums its keys in order, so the blocking changes no bit.
  if constexpr (W >= 16) {
    for (; h + 6 <= nq; h += 6) rows(std::integral_constant<int, 6>{}, h);
  }
  for (; h + 2 <= nq; h += 2) rows(std::integral_constant<int, 2>{}, h);
  for (; h < nq; ++h) rows(std::integral_constant<int, 1>{}, h);
}

// In place: x = tanh(x / cap) * cap (Gemma's final logit soft-capping).
template <class Arch>
void SoftcapF32(float* x, int64_t n, float cap) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  const B vcap(cap);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    (xsimd::tanh(B::load_unaligned(x + i) / vcap) * vcap).store_unaligned(x + i);
  }
  for (; i < n; ++i) x[i] = std::tanh(x[i] / cap) * cap;
}

// y += a * x
template <class Arch>
void AxpyF32(float a, const float* x, float* y, int64_t n) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  const B va(a);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    MulAdd<Arch>(va, B::load_unaligned(x + i), B::load_unaligned(y + i)).store_unaligned(y + i);
  }
  for (; i < n; ++i) y[i] += a * x[i];
}

// exp(x) on a batch. AVX-512: x = n ln2 + r with n = round(x / ln2) and r (|r| <= ln2 / 2)
// from two fused steps with ln2 split in a high and a low part; exp(r) = 1 + r + r^2 P(r) with
// Cephes' expf polynomial (degree 5, Horner in fused multiply-adds); then times 2^n by
// vscalefps, which also gives the overflow (inf), the gradual underflow (denormals, rounded
// once) and 0 without a branch. Within 2 ulp of std::exp (kernels_test checks 2e-6 relative);
// about 15 instructions against xsimd's 30 (the vision attention's softmax, 1.2 G exps per
// 280-token image). x is clamped to [-104, 89] first, outside which exp rounds to 0 or inf
// anyway (NaN stays NaN: vmaxps/vminps return their second operand then). Other widths:
// xsimd's exp, whose denormal results are 0 (callers that care check for them).
template <class Arch>
inline xsimd::batch<float, Arch> Exp(xsimd::batch<float, Arch> x) {
#if defined(__AVX512F__)
  if constexpr (xsimd::batch<float, Arch>::size == 16) {
    __m512 v = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), v);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 e =
        _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return xsimd::batch<float, Arch>(_mm512_scalef_ps(e, n));
  }
#endif
  return xsimd::exp(x);
}

// Whether Exp<Arch> gives denormal results as such (AVX-512) rather than 0 (xsimd).
template <class Arch>
constexpr bool kExpKeepsDenormals =
#if defined(__AVX512F__)
    xsimd::batch<float, Arch>::size == 16;
#else
    false;
#endif

// out[i] = m[i] / (1 + exp(-x[i])) (m null: x[i], SiLU). exp is Exp's (within a few ulp of
// std::exp; where exp(-x) is denormal or infinite the quotient is m or 0 either way).
template <class Arch>
void SigmoidMulF32(const float* x, const float* m, float* out, int64_t n) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  const B one(1.0f);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const B v = B::load_unaligned(x + i);
    const B num = m != nullptr ? B::load_unaligned(m + i) : v;
    (num / (one + Exp<Arch>(-v))).store_unaligned(out + i);
  }
  for (; i < n; ++i) {
    const float v = x[i];
    out[i] = (m != nullptr ? m[i] : v) / (1.0f + std::exp(-v));
  }
}

// out[i] = gelu_tanh(g[i]) * u[i] (u may be null: plain gelu_tanh), PyTorch's tanh form
// 0.5 x (1 + tanh(z)), z = sqrt(2/pi) (x + 0.044715 x^3), computed as the equal x / (1 + exp(-2z))
// with Exp's exp: about 20 instructions a vector against xsimd::tanh's 40 (0.66 -> 0.3 ns a
// value on Zen 5; the MLP's activation is 2.5% of an E2B prefill). Where exp(-2z) overflows
// (x below about -10) the quotient is x / inf = -0, as 1 + tanh(z) rounds to 0 there; for
// negative x it avoids the cancellation in 1 + tanh(z), within a few ulp elsewhere.
template <class Arch>
void GeluMulF32(const float* g, const float* u, float* out, int64_t n) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  // -2z = x (c1 + c2 x^2): c1 = -2 sqrt(2/pi), c2 = -2 sqrt(2/pi) 0.044715.
  constexpr float kC1 = -1.5957691216057308f, kC2 = -0.07135481627159f;
  const B c1(kC1), c2(kC2), one(1.0f);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const B x = B::load_unaligned(g + i);
    const B minus_2z = x * xsimd::fma(c2, x * x, c1);
    B y = x / (one + Exp<Arch>(minus_2z));
    if (u != nullptr) y = y * B::load_unaligned(u + i);
    y.store_unaligned(out + i);
  }
  for (; i < n; ++i) {
    const float x = g[i];
    const float y = x / (1.0f + std::exp(x * std::fma(kC2, x * x, kC1)));
    out[i] = u != nullptr ? y * u[i] : y;
  }
}

// x = exp(x - max) / sum. exp is Exp's (within a few ulp of std::exp); the sum is kept in
// float vector lanes and reduced in double.
template <class Arch>
void SoftmaxF32(float* x, int64_t n) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  if (n <= 0) return;
  float mx = -INFINITY;
  int64_t i = 0;
  if (n >= W) {
    B vmax = B::load_unaligned(x);
    for (i = W; i + W <= n; i += W) vmax = xsimd::max(vmax, B::load_unaligned(x + i));
    alignas(64) float max_lanes[W];
    vmax.store_aligned(max_lanes);
    for (int64_t k = 0; k < W; ++k) mx = std::max(mx, max_lanes[k]);
  }
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  const B vmx(mx);
  B acc(0.0f);
  i = 0;
  // Below -87 exp's result is denormal: xsimd returns 0 there, so such batches (rare: far
  // below the maximum) take std::exp like the reference (AVX-512's Exp gives them itself).
  const B denormal_edge(-87.0f);
  double sum = 0;
  for (; i + W <= n; i += W) {
    const B v = B::load_unaligned(x + i) - vmx;
    if (!kExpKeepsDenormals<Arch> && xsimd::any(v < denormal_edge)) {
      for (int64_t k = 0; k < W; ++k) {
        x[i + k] = std::exp(x[i + k] - mx);
        sum += x[i + k];
      }
      continue;
    }
    const B e = Exp<Arch>(v);
    e.store_unaligned(x + i);
    acc += e;
  }
  alignas(64) float lanes[W];
  acc.store_aligned(lanes);
  for (int64_t k = 0; k < W; ++k) sum += lanes[k];
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float total = static_cast<float>(sum);
  const B vt(total);
  i = 0;
  for (; i + W <= n; i += W) (B::load_unaligned(x + i) / vt).store_unaligned(x + i);
  for (; i < n; ++i) x[i] /= total;
}

// ExpColumns over NV vectors of columns side by side (one pass down the rows serves them all:
// the vision attention's score blocks are two vectors wide, and a row's two halves share cache
// lines): the max a row at a time, then the exps stored in place and summed in float lanes over
// runs of 64 rows, each run's lanes added into double totals (the reference sums every value in
// double). Each column's arithmetic is that of one vector at a time. Batches with a lane below
// -87 (a denormal exp, which xsimd's exp returns as 0) take std::exp like the reference, except
// on AVX-512, whose Exp rounds denormal results itself.
template <class Arch, int NV>
void ExpColumnsBlock(float* s, int64_t rows, int64_t ld, float* sums) {
  using B = xsimd::batch<float, Arch>;
  constexpr int W = static_cast<int>(B::size);
  constexpr int64_t kRun = 64;
  const B denormal_edge(-87.0f);
  B vmax[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) vmax[v] = B::load_unaligned(s + v * W);
  for (int64_t r = 1; r < rows; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      vmax[v] = xsimd::max(vmax[v], B::load_unaligned(s + r * ld + v * W));
  }
  alignas(64) float mx[NV * W];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) vmax[v].store_aligned(mx + v * W);
  double total[NV * W] = {};
  for (int64_t r0 = 0; r0 < rows; r0 += kRun) {
    const int64_t r1 = std::min(rows, r0 + kRun);
    B acc[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[v] = B(0.0f);
    for (int64_t r = r0; r < r1; ++r) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        float* row = s + r * ld + v * W;
        const B x = B::load_unaligned(row) - vmax[v];
        B e;
        if (!kExpKeepsDenormals<Arch> && xsimd::any(x < denormal_edge)) {
          alignas(64) float lanes[W];
          for (int j = 0; j < W; ++j) lanes[j] = std::exp(row[j] - mx[v * W + j]);
          e = B::load_aligned(lanes);
        } else {
          e = Exp<Arch>(x);
        }
        e.store_unaligned(row);
        acc[v] += e;
      }
    }
    alignas(64) float part[NV * W];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[v].store_aligned(part + v * W);
    for (int j = 0; j < NV * W; ++j) total[j] += part[j];
  }
  for (int j = 0; j < NV * W; ++j) sums[j] = static_cast<float>(total[j]);
}

// ExpColumns (KernelTable::exp_columns_f32): two vectors of columns at a time, then one, then
// the columns past the last whole vector through the scalar reference, whose per-column sums
// these are the same as (std::exp, a double sum).
template <class Arch>
void ExpColumnsF32(float* s, int64_t rows, int width, int64_t ld, float* sums) {
  constexpr int W = static_cast<int>(xsimd::batch<float, Arch>::size);
  int c0 = 0;
  for (; c0 + 2 * W <= width; c0 += 2 * W) ExpColumnsBlock<Arch, 2>(s + c0, rows, ld, sums + c0);
  for (; c0 + W <= width; c0 += W) ExpColumnsBlock<Arch, 1>(s + c0, rows, ld, sums + c0);
  if (c0 < width) ReferenceTable().exp_columns_f32(s + c0, rows, width - c0, ld, sums + c0);
}

template <class Arch>
double SumSquaresF32(const float* x, int64_t n) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  B acc0(0.0f), acc1(0.0f);
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const B a = B::load_unaligned(x + i), b = B::load_unaligned(x + i + W);
    acc0 = MulAdd<Arch>(a, a, acc0);
    acc1 = MulAdd<Arch>(b, b, acc1);
  }
  for (; i + W <= n; i += W) {
    const B a = B::load_unaligned(x + i);
    acc0 = MulAdd<Arch>(a, a, acc0);
  }
  alignas(64) float lanes[W];
  (acc0 + acc1).store_aligned(lanes);
  double sum = 0;
  for (int64_t k = 0; k < W; ++k) sum += lanes[k];
  for (; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return sum;
}

// Float GEMM micro-kernel (KernelTable::gemm_f32_packed): NT of the MR packed tokens times
// NV vectors of packed weight columns, NT x NV accumulators held in registers for the whole
// of k (on AVX-512, 14 x 2: 28 of the 32 registers). Each step loads NV weight vectors and
// broadcasts each token's value once, NT * NV FMAs for NV + NT loads; the accumulators are
// written once at the end. With `accumulate` they start from y, continuing the chains of the
// k values before (a k-blocked caller gets the bits of one pass over all of k).
// Weight panel element types of GemmPackedTile: f32 as stored, or 16-bit floats widened exactly
// in registers (IEEE half, bfloat16).
struct F16Weights {};
struct Bf16Weights {};
template <class W>
using PanelElement = std::conditional_t<std::is_same_v<W, float>, float, uint16_t>;

// One vector of panel values as f32 (p 64-byte aligned for f32 panels of whole vectors). The
// 16-bit loads and widenings are plain GCC vector operations, and vcvtph2ps an asm statement on
// registers: GCC takes the x86 intrinsics' builtins (vcvtph2ps, vpmovzxwd, vpslld) for calls
// that may write memory, and after one of them in the k loop it kept GemmPackedTile's
// accumulators in memory, storing all 28 after every step (2.5x slower than f32 panels).
template <class Arch, class WeightT>
inline xsimd::batch<float, Arch> LoadPanel(const PanelElement<WeightT>* p) {
  using B = xsimd::batch<float, Arch>;
  constexpr int kLanes = static_cast<int>(B::size);
  if constexpr (std::is_same_v<WeightT, float>) {
    return B::load_aligned(p);
  } else {
    constexpr bool kHalf = std::is_same_v<WeightT, F16Weights>;
    // One branch per vector width, chained with else so the others are discarded.
#if defined(__AVX512F__)
    if constexpr (kLanes == 16) {
      typedef uint16_t U16x16 __attribute__((vector_size(32), aligned(2)));
      typedef uint32_t U32x16 __attribute__((vector_size(64)));
      const U16x16 h = *reinterpret_cast<const U16x16*>(p);
      if constexpr (kHalf) {
        __m512 wide;
        const __m256i bits = reinterpret_cast<__m256i>(h);
        asm("vcvtph2ps %1, %0" : "=v"(wide) : "v"(bits));
        return B(wide);
      } else {
        return B(reinterpret_cast<__m512>(__builtin_convertvector(h, U32x16) << 16));
      }
    } else  // NOLINT(readability/braces)
#endif
#if defined(__AVX2__) && defined(__F16C__)
        if constexpr (kLanes == 8) {
      typedef uint16_t U16x8 __attribute__((vector_size(16), aligned(2)));
      typedef uint32_t U32x8 __attribute__((vector_size(32)));
      const U16x8 h = *reinterpret_cast<const U16x8*>(p);
      if constexpr (kHalf) {
        __m256 wide;
        const __m128i bits = reinterpret_cast<__m128i>(h);
        asm("vcvtph2ps %1, %0" : "=x"(wide) : "x"(bits));
        return B(wide);
      } else {
        return B(reinterpret_cast<__m256>(__builtin_convertvector(h, U32x8) << 16));
      }
    } else  // NOLINT(readability/braces)
#endif
#if defined(__aarch64__)
        if constexpr (kLanes == 4) {
      const uint16x4_t h = vld1_u16(p);
      if constexpr (kHalf) {
        return B(vcvt_f32_f16(vreinterpret_f16_u16(h)));
      } else {
        return B(vreinterpretq_f32_u32(vshll_n_u16(h, 16)));
      }
    } else  // NOLINT(readability/braces)
#endif
    {
      static_assert(kLanes < 0, "no 16-bit panel load for this vector width");
    }
  }
}

template <class Arch, int NT, int MR, int NV, class WeightT = float>
void GemmPackedTile(const float* xp, const PanelElement<WeightT>* wp, int64_t k, int ncols,
                    float* y, int64_t ldy, bool accumulate) {
  using B = xsimd::batch<float, Arch>;
  constexpr int W = static_cast<int>(B::size);
  constexpr int NR = NV * W;
  // Every loop over acc is unrolled, so each accumulator is a register from start to end: with
  // one loop left rolled (a runtime index), GCC kept acc in a stack array, zeroed it there and
  // moved all 28 vectors through memory before and after the k loop (about 140 vector loads and
  // stores per call, 10-15% of a k = 64 call: the vision attention's score tiles).
  B acc[NT][NV];
  alignas(64) float row[NR];
  const bool whole = ncols == NR;
  if (!whole) std::fill(row + ncols, row + NR, 0.0f);
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) {
    if (accumulate && !whole) std::copy(y + t * ldy, y + t * ldy + ncols, row);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      if (!accumulate) {
        acc[t][v] = B(0.0f);
      } else if (whole) {
        acc[t][v] = B::load_unaligned(y + t * ldy + v * W);
      } else {
        acc[t][v] = B::load_aligned(row + v * W);
      }
    }
  }
  // Both operands are streams read once per call (from L2 or L3: a k block of a token tile and
  // of a panel is 40-130 KiB); a prefetch kPrefetchSteps ahead of each keeps its lines in flight
  // beyond what the hardware prefetchers fetch (single-thread GEMM loop on f16 panels, 756 x
  // 1024 -> 4096 and 756 x 4096 -> 1024: 1-3% less CPU with 4, 8 or 16 steps; 16 chosen).
  constexpr int64_t kPrefetchSteps = 16;
  for (int64_t i = 0; i < k; ++i, xp += MR, wp += NR) {
    __builtin_prefetch(xp + kPrefetchSteps * MR);
    __builtin_prefetch(wp + kPrefetchSteps * NR);
    B wv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) wv[v] = LoadPanel<Arch, WeightT>(wp + v * W);
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      const B xv(xp[t]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[t][v] = MulAdd<Arch>(xv, wv[v], acc[t][v]);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) {
    if (whole) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[t][v].store_unaligned(y + t * ldy + v * W);
    } else {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[t][v].store_aligned(row + v * W);
      std::copy(row, row + ncols, y + t * ldy);
    }
  }
}

template <class Arch, int MR, int NV, class WeightT = float>
void GemmPacked(const float* xp, const PanelElement<WeightT>* wp, int64_t k, int ntok, int ncols,
                float* y, int64_t ldy, bool accumulate) {
  DispatchTokenCount<MR>(ntok, [&](auto nt) {
    GemmPackedTile<Arch, decltype(nt)::value, MR, NV, WeightT>(xp, wp, k, ncols, y, ldy,
                                                               accumulate);
  });
}

// 32 int8 values times d into out[0, 32): each output is float(q) * d, one rounding, the
// reference's bits on every ISA.
inline void I8x32ToF32(const int8_t* q, float d, float* out) {
#if defined(__AVX512F__)
  const __m512 vd = _mm512_set1_ps(d);
  for (int i = 0; i < 32; i += 16) {
    const __m512i w =
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i)));
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_cvtepi32_ps(w), vd));
  }
#elif defined(__AVX2__)
  const __m256 vd = _mm256_set1_ps(d);
  for (int i = 0; i < 32; i += 8) {
    const __m256i w =
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtepi32_ps(w), vd));
  }
#elif defined(__aarch64__)
  const float32x4_t vd = vdupq_n_f32(d);
  for (int i = 0; i < 32; i += 8) {
    const int16x8_t w = vmovl_s8(vld1_s8(q + i));
    vst1q_f32(out + i, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(w))), vd));
    vst1q_f32(out + i + 4, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(w))), vd));
  }
#else
  for (int i = 0; i < 32; ++i) out[i] = static_cast<float>(q[i]) * d;
#endif
}

// Q8_0 blocks (ggml layout: f16 d, 32 x int8) to f32: out[i] = d * q[i].
inline void DequantizeQ8_0(const uint8_t* blocks, int64_t nblocks, float* out) {
  for (int64_t b = 0; b < nblocks; ++b, blocks += quant::kQ8_0BlockBytes, out += 32) {
    uint16_t d;
    std::memcpy(&d, blocks, 2);
    I8x32ToF32(reinterpret_cast<const int8_t*>(blocks + 2), half::F16ToF32(d), out);
  }
}

// Q4_0 blocks (f16 d, 16 bytes: byte j holds value j in its low nibble and value j + 16 in its
// high nibble) to f32: out[i] = d * (nibble - 8).
inline void DequantizeQ4_0(const uint8_t* blocks, int64_t nblocks, float* out) {
  alignas(64) int8_t q[32];
  for (int64_t b = 0; b < nblocks; ++b, blocks += quant::kQ4_0BlockBytes, out += 32) {
    uint16_t d;
    std::memcpy(&d, blocks, 2);
#if defined(__AVX2__) || defined(__AVX512F__)
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + 2));
    const __m128i low = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    _mm_store_si128(reinterpret_cast<__m128i*>(q), _mm_sub_epi8(_mm_and_si128(packed, low), eight));
    _mm_store_si128(reinterpret_cast<__m128i*>(q + 16),
                    _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(packed, 4), low), eight));
#elif defined(__aarch64__)
    const uint8x16_t packed = vld1q_u8(blocks + 2);
    const int8x16_t eight = vdupq_n_s8(8);
    vst1q_s8(q, vsubq_s8(vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0F))), eight));
    vst1q_s8(q + 16, vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(packed, 4)), eight));
#else
    for (int j = 0; j < 16; ++j) {
      q[j] = static_cast<int8_t>((blocks[2 + j] & 0x0F) - 8);
      q[j + 16] = static_cast<int8_t>((blocks[2 + j] >> 4) - 8);
    }
#endif
    I8x32ToF32(q, half::F16ToF32(d), out);
  }
}

}  // namespace gemma4::kernels::GEMMA4_ISA_NAMESPACE::simd

// The table rows every ISA fills from the templates above (in KernelTable's order, between
// quantize_blocks and bf16_to_f32): `.quantize_blocks = ..., GEMMA4_FLOAT_KERNEL_ROWS(Arch),
// .bf16_to_f32 = ...`.
#define GEMMA4_FLOAT_KERNEL_ROWS(Arch)                                                         \
  .dot_f32 = simd::DotF32<Arch>, .axpy_f32 = simd::AxpyF32<Arch>,                              \
  .gelu_mul_f32 = simd::GeluMulF32<Arch>, .sigmoid_mul_f32 = simd::SigmoidMulF32<Arch>,        \
  .softmax_f32 = simd::SoftmaxF32<Arch>, .exp_columns_f32 = simd::ExpColumnsF32<Arch>,         \
  .attention_scores_f32 = simd::AttentionScores<Arch, float>,                                  \
  .attention_values_f32 = simd::AttentionValues<Arch, float>,                                  \
  .attention_scores_f16 = simd::AttentionScores<Arch, uint16_t>,                               \
  .attention_scores_bf16 = simd::AttentionScores<Arch, Bf16>,                                  \
  .attention_values_f16 = simd::AttentionValues<Arch, uint16_t>,                               \
  .matvec_f32 = simd::MatVecRows<Arch, float>, .matvec_f16 = simd::MatVecRows<Arch, uint16_t>, \
  .matvec_bf16 = simd::MatVecRows<Arch, Bf16>, .dequantize_q8_0 = simd::DequantizeQ8_0,        \
  .dequantize_q4_0 = simd::DequantizeQ4_0, .softcap_f32 = simd::SoftcapF32<Arch>,              \
  .sum_squares_f32 = simd::SumSquaresF32<Arch>

#endif  // GEMMA4_SRC_KERNELS_FLOAT_KERNELS_INL_H_
