// A 16 x 16 transpose of 32-bit lanes in AVX-512 registers, shared by the AVX-512 units
// (avx512vnni.cc, amx.cc). Defined in namespace gemma4::kernels::GEMMA4_ISA_NAMESPACE, the
// including unit's own, with internal linkage: each unit compiles its own copy with its flags,
// so no inline function is shared between units built for different ISAs.
#ifndef GEMMA4_SRC_KERNELS_ISA_AVX512_TRANSPOSE_INL_H_
#define GEMMA4_SRC_KERNELS_ISA_AVX512_TRANSPOSE_INL_H_

#ifndef GEMMA4_ISA_NAMESPACE
#error "define GEMMA4_ISA_NAMESPACE (the including ISA unit's namespace, e.g. avx512) first"
#endif

#include <immintrin.h>

namespace gemma4::kernels::GEMMA4_ISA_NAMESPACE {
namespace {

// Transposes 16 rows of 16 floats in place: afterwards r[j] holds column j (lane t = row t).
// Pure data movement (unpacks within 128-bit lanes, then 128-bit lanes across; 64 shuffles),
// so any 32-bit lanes go through unchanged.
__attribute__((always_inline)) inline void Transpose16x16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int a = 0; a < 8; ++a) {  // pairs of rows: (0 1) (2 3) ... interleaved per 128-bit lane
    t[2 * a] = _mm512_unpacklo_ps(r[2 * a], r[2 * a + 1]);
    t[2 * a + 1] = _mm512_unpackhi_ps(r[2 * a], r[2 * a + 1]);
  }
  for (int a = 0; a < 4; ++a) {  // groups of four rows: u[4a + c] = column 4L + c in lane L
    const __m512d t0 = _mm512_castps_pd(t[4 * a]), t1 = _mm512_castps_pd(t[4 * a + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * a + 2]), t3 = _mm512_castps_pd(t[4 * a + 3]);
    u[4 * a] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[4 * a + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[4 * a + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[4 * a + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  for (int c = 0; c < 4; ++c) {  // 128-bit lanes: column 4L + c = lane L of u[c], u[4+c], ...
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
    const __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
    const __m512 w0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
    r[c] = _mm512_shuffle_f32x4(v0, w0, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(v1, w1, 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
    r[12 + c] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
  }
}

}  // namespace
}  // namespace gemma4::kernels::GEMMA4_ISA_NAMESPACE

#endif  // GEMMA4_SRC_KERNELS_ISA_AVX512_TRANSPOSE_INL_H_
