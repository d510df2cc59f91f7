// Float kernels written once with xsimd and instantiated per ISA (included only by the ISA
// translation units, which are compiled with that ISA's flags).
#ifndef GEMMA4_SRC_KERNELS_FLOAT_KERNELS_INL_H_
#define GEMMA4_SRC_KERNELS_FLOAT_KERNELS_INL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <xsimd/xsimd.hpp>

namespace gemma4::kernels::simd {

// Calls f(std::integral_constant<int, N>{}) for N = ntok in 1..4, so kernels templated on the
// token count are dispatched from a runtime count in one line.
template <class F>
void ForTokenCount(int ntok, F&& f) {
  switch (ntok) {
    case 4:
      return f(std::integral_constant<int, 4>{});
    case 3:
      return f(std::integral_constant<int, 3>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    default:
      return f(std::integral_constant<int, 1>{});
  }
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
#define GEMMA4_BY_TOKEN_COUNT(kernel)                                                     \
  ::gemma4::kernels::simd::ByTokenCount<::gemma4::quant::QuantizedActivations, kernel<1>, \
                                        kernel<2>, kernel<3>, kernel<4>>

// Dot product with four independent vector accumulators.
template <class Arch>
float DotF32(const float* a, const float* b, int64_t n) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  B acc0(0.0f), acc1(0.0f), acc2(0.0f), acc3(0.0f);
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    acc0 = xsimd::fma(B::load_unaligned(a + i), B::load_unaligned(b + i), acc0);
    acc1 = xsimd::fma(B::load_unaligned(a + i + W), B::load_unaligned(b + i + W), acc1);
    acc2 = xsimd::fma(B::load_unaligned(a + i + 2 * W), B::load_unaligned(b + i + 2 * W), acc2);
    acc3 = xsimd::fma(B::load_unaligned(a + i + 3 * W), B::load_unaligned(b + i + 3 * W), acc3);
  }
  for (; i + W <= n; i += W) {
    acc0 = xsimd::fma(B::load_unaligned(a + i), B::load_unaligned(b + i), acc0);
  }
  float sum = xsimd::hadd((acc0 + acc1) + (acc2 + acc3));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// y += a * x
template <class Arch>
void AxpyF32(float a, const float* x, float* y, int64_t n) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  const B va(a);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    xsimd::fma(va, B::load_unaligned(x + i), B::load_unaligned(y + i)).store_unaligned(y + i);
  }
  for (; i < n; ++i) y[i] += a * x[i];
}

// out[i] = gelu_tanh(g[i]) * u[i] (u may be null: plain gelu_tanh), with the constants of
// PyTorch's kernel: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))).
template <class Arch>
void GeluMulF32(const float* g, const float* u, float* out, int64_t n) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  const B beta(0.7978845608028654f), kappa(0.044715f), half(0.5f), one(1.0f);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const B x = B::load_unaligned(g + i);
    const B inner = beta * (x + kappa * (x * x * x));
    B y = half * x * (one + xsimd::tanh(inner));
    if (u != nullptr) y = y * B::load_unaligned(u + i);
    y.store_unaligned(out + i);
  }
  for (; i < n; ++i) {
    const float x = g[i];
    const float y =
        0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    out[i] = u != nullptr ? y * u[i] : y;
  }
}

// x = exp(x - max) / sum. exp is xsimd's (within a few ulp of std::exp); the sum is kept in
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
  // below the maximum) take std::exp like the reference.
  const B denormal_edge(-87.0f);
  double sum = 0;
  for (; i + W <= n; i += W) {
    const B v = B::load_unaligned(x + i) - vmx;
    if (xsimd::any(v < denormal_edge)) {
      for (int64_t k = 0; k < W; ++k) {
        x[i + k] = std::exp(x[i + k] - mx);
        sum += x[i + k];
      }
      continue;
    }
    const B e = xsimd::exp(v);
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

template <class Arch>
double SumSquaresF32(const float* x, int64_t n) {
  using B = xsimd::batch<float, Arch>;
  constexpr int64_t W = B::size;
  B acc0(0.0f), acc1(0.0f);
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const B a = B::load_unaligned(x + i), b = B::load_unaligned(x + i + W);
    acc0 = xsimd::fma(a, a, acc0);
    acc1 = xsimd::fma(b, b, acc1);
  }
  for (; i + W <= n; i += W) {
    const B a = B::load_unaligned(x + i);
    acc0 = xsimd::fma(a, a, acc0);
  }
  alignas(64) float lanes[W];
  (acc0 + acc1).store_aligned(lanes);
  double sum = 0;
  for (int64_t k = 0; k < W; ++k) sum += lanes[k];
  for (; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return sum;
}

}  // namespace gemma4::kernels::simd

#endif  // GEMMA4_SRC_KERNELS_FLOAT_KERNELS_INL_H_
