#include "kernels/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/half.h"
#include "kernels/pack/pack.h"
#include "kernels/ref/reference_dots.h"

namespace gemma4::kernels {

float GeluTanh(float x) {
  // kBeta = sqrt(2/pi), kKappa = 0.044715, as in PyTorch's CPU kernel.
  const float kBeta = static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5);
  const float kKappa = 0.044715f;
  const float cube = x * x * x;
  const float inner = kBeta * (x + kKappa * cube);
  return 0.5f * x * (1.0f + std::tanh(inner));
}

namespace {

void DotQ8_0(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotQ8_0Reference(w, a.q_row(token + i), a.scale_row(token + i), nblocks);
  }
}

void DotQ4_0(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotQ4_0Reference(w, a.q_row(token + i), a.scale_row(token + i), a.sum_row(token + i),
                              nblocks);
  }
}

void DotIQ4_NL(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotIQ4_NLReference(w, a.q_row(token + i), a.scale_row(token + i), nblocks);
  }
}

void DotMXFP4(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotMXFP4Reference(w, a.q_row(token + i), a.scale_row(token + i), nblocks);
  }
}

void DotQ4_0R(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotQ4_0RReference(w, a.q_row(token + i), a.scale_row(token + i), a.sum_row(token + i),
                               nblocks);
  }
}

void DotQ8_0R(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
              int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotQ8_0RReference(w, a.q_row(token + i), a.scale_row(token + i), a.sum_row(token + i),
                               nblocks);
  }
}

// Q4_0x16, Q8_0x16, IQ4_NLx16 and MXFP4x16 (kBlockBytes: one row's block as stored):
// Scale(block, row) reads a row's block scale, Value(block, row, j) one weight (the same sums in
// the same order as the plain rows' references).
template <int kBlockBytes, float (*Scale)(const uint8_t*, int),
          int (*Value)(const uint8_t*, int, int)>
void GemmX16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out, int64_t ldo) {
  constexpr int kGroupBlockBytes = 16 * kBlockBytes;
  for (int r = 0; r < 16; ++r) {
    for (int t = 0; t < ntok; ++t) {
      const int8_t* q = a.q_row(token + t);
      const float* sc = a.scale_row(token + t);
      float total = 0;
      for (int64_t b = 0; b < nblocks; ++b) {
        const uint8_t* block = group + b * kGroupBlockBytes;
        int32_t acc = 0;
        for (int j = 0; j < 32; ++j) acc += Value(block, r, j) * q[b * 32 + j];
        total += Scale(block, r) * sc[b] * static_cast<float>(acc);
      }
      out[t * ldo + r] = total;
    }
  }
}

void GemmQ4_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  for (int t = 0; t < ntok; ++t) {
    float rows[16];
    GemmQ4_Kx16Reference(group, a.q_row(token + t), a.scale_row(token + t), a.sum_row(token + t),
                         nblocks, rows);
    std::memcpy(out + t * ldo, rows, sizeof(rows));
  }
}

void GemmQ5_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  for (int t = 0; t < ntok; ++t) {
    float rows[16];
    GemmQ5_Kx16Reference(group, a.q_row(token + t), a.scale_row(token + t), a.sum_row(token + t),
                         nblocks, rows);
    std::memcpy(out + t * ldo, rows, sizeof(rows));
  }
}

void GemmIQ4_XSx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                   int64_t token, int ntok, float* out, int64_t ldo) {
  for (int t = 0; t < ntok; ++t) {
    float rows[16];
    GemmIQ4_XSx16Reference(group, a.q_row(token + t), a.scale_row(token + t), nblocks, rows);
    std::memcpy(out + t * ldo, rows, sizeof(rows));
  }
}

void GemmQ2_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  for (int t = 0; t < ntok; ++t) {
    float rows[16];
    GemmQ2_Kx16Reference(group, a.q_row(token + t), a.scale_row(token + t), a.sum16_row(token + t),
                         nblocks, rows);
    std::memcpy(out + t * ldo, rows, sizeof(rows));
  }
}

void GemmQ6_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  for (int t = 0; t < ntok; ++t) {
    float rows[16];
    GemmQ6_Kx16Reference(group, a.q_row(token + t), a.scale_row(token + t), nblocks, rows);
    std::memcpy(out + t * ldo, rows, sizeof(rows));
  }
}

void GemmQ4_1x16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  for (int t = 0; t < ntok; ++t) {
    float rows[16];
    GemmQ4_1x16Reference(group, a.q_row(token + t), a.scale_row(token + t), a.sum_row(token + t),
                         nblocks, rows);
    std::memcpy(out + t * ldo, rows, sizeof(rows));
  }
}

void GemmQ5_1x16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  for (int t = 0; t < ntok; ++t) {
    float rows[16];
    GemmQ5_1x16Reference(group, a.q_row(token + t), a.scale_row(token + t), a.sum_row(token + t),
                         nblocks, rows);
    std::memcpy(out + t * ldo, rows, sizeof(rows));
  }
}

void GemmQ3_Kx16(const uint8_t* group, int64_t nblocks, const QuantizedActivations& a,
                 int64_t token, int ntok, float* out, int64_t ldo) {
  for (int t = 0; t < ntok; ++t) {
    float rows[16];
    GemmQ3_Kx16Reference(group, a.q_row(token + t), a.scale_row(token + t), nblocks, rows);
    std::memcpy(out + t * ldo, rows, sizeof(rows));
  }
}

void DotQ3_K(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotQ3_KReference(w, a.q_row(token + i), a.scale_row(token + i), nblocks);
  }
}

void DotQ6_K(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotQ6_KReference(w, a.q_row(token + i), a.scale_row(token + i), nblocks);
  }
}

void DotQ2_K(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotQ2_KReference(w, a.q_row(token + i), a.scale_row(token + i), a.sum16_row(token + i),
                              nblocks);
  }
}

void DotQ4_K(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotQ4_KReference(w, a.q_row(token + i), a.scale_row(token + i), a.sum_row(token + i),
                              nblocks);
  }
}

void DotQ4_1(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotQ4_1Reference(w, a.q_row(token + i), a.scale_row(token + i), a.sum_row(token + i),
                              nblocks);
  }
}

void DotQ5_1(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotQ5_1Reference(w, a.q_row(token + i), a.scale_row(token + i), a.sum_row(token + i),
                              nblocks);
  }
}

void DotIQ4_XS(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
               int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotIQ4_XSReference(w, a.q_row(token + i), a.scale_row(token + i), nblocks);
  }
}

template <DType kType>
void DotCodebook(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
                 int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotCodebookReference(kType, w, a.q_row(token + i), a.scale_row(token + i), nblocks);
  }
}

void DotQ5_K(const uint8_t* w, int64_t nblocks, const QuantizedActivations& a, int64_t token,
             int ntok, float* out) {
  for (int i = 0; i < ntok; ++i) {
    out[i] = DotQ5_KReference(w, a.q_row(token + i), a.scale_row(token + i), a.sum_row(token + i),
                              nblocks);
  }
}

float DotF32(const float* a, const float* b, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void AxpyF32(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void GeluMulF32(const float* g, const float* u, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float y = GeluTanh(g[i]);
    out[i] = u != nullptr ? y * u[i] : y;
  }
}

void SigmoidMulF32(const float* x, const float* m, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    out[i] = (m != nullptr ? m[i] : v) / (1.0f + std::exp(-v));
  }
}

void SoftmaxF32(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float total = static_cast<float>(sum);
  for (int64_t i = 0; i < n; ++i) x[i] /= total;
}

void ExpColumnsF32(float* s, int64_t rows, int width, int64_t ld, float* sums) {
  for (int c = 0; c < width; ++c) {
    float mx = -INFINITY;
    for (int64_t r = 0; r < rows; ++r) mx = std::max(mx, s[r * ld + c]);
    double sum = 0;
    for (int64_t r = 0; r < rows; ++r) {
      s[r * ld + c] = std::exp(s[r * ld + c] - mx);
      sum += s[r * ld + c];
    }
    sums[c] = static_cast<float>(sum);
  }
}

void DequantizeQ8_0(const uint8_t* blocks, int64_t nblocks, float* out) {
  for (int64_t b = 0; b < nblocks; ++b) {
    const uint8_t* block = blocks + b * quant::kQ8_0BlockBytes;
    const float d = half::F16ToF32(static_cast<uint16_t>(block[0] | block[1] << 8));
    for (int i = 0; i < 32; ++i) {
      out[b * 32 + i] = static_cast<float>(static_cast<int8_t>(block[2 + i])) * d;
    }
  }
}

void DequantizeQ4_0(const uint8_t* blocks, int64_t nblocks, float* out) {
  for (int64_t b = 0; b < nblocks; ++b) {
    const uint8_t* block = blocks + b * quant::kQ4_0BlockBytes;
    const float d = half::F16ToF32(static_cast<uint16_t>(block[0] | block[1] << 8));
    for (int j = 0; j < 16; ++j) {
      out[b * 32 + j] = static_cast<float>((block[2 + j] & 0x0F) - 8) * d;
      out[b * 32 + j + 16] = static_cast<float>((block[2 + j] >> 4) - 8) * d;
    }
  }
}

void AttentionScoresF32(const float* q, int64_t ldq, int nq, const float* k, int64_t ldk,
                        int64_t nk, int64_t d, float* scores, int64_t ldsc) {
  for (int h = 0; h < nq; ++h) {
    for (int64_t j = 0; j < nk; ++j) scores[h * ldsc + j] = DotF32(q + h * ldq, k + j * ldk, d);
  }
}

void AttentionValuesF32(const float* p, int64_t ldp, int nq, const float* v, int64_t ldv,
                        int64_t nk, int64_t d, float* out, int64_t ldo) {
  for (int h = 0; h < nq; ++h) {
    for (int64_t j = 0; j < nk; ++j) AxpyF32(p[h * ldp + j], v + j * ldv, out + h * ldo, d);
  }
}

// Scores over 16-bit rows, widened exactly, summed in the order of AttentionScoresF32.
inline float Widen(uint16_t h) { return half::F16ToF32(h); }
inline float Widen(Bf16 h) { return half::Bf16ToF32(h.bits); }
template <class T>
void AttentionScores16(const float* q, int64_t ldq, int nq, const T* k, int64_t ldk, int64_t nk,
                       int64_t d, float* scores, int64_t ldsc) {
  for (int h = 0; h < nq; ++h) {
    for (int64_t j = 0; j < nk; ++j) {
      float sum = 0;
      for (int64_t i = 0; i < d; ++i) sum += q[h * ldq + i] * Widen(k[j * ldk + i]);
      scores[h * ldsc + j] = sum;
    }
  }
}

void AttentionValuesF16(const float* p, int64_t ldp, int nq, const uint16_t* v, int64_t ldv,
                        int64_t nk, int64_t d, float* out, int64_t ldo) {
  for (int h = 0; h < nq; ++h) {
    for (int64_t j = 0; j < nk; ++j) {
      for (int64_t i = 0; i < d; ++i) {
        out[h * ldo + i] += p[h * ldp + j] * half::F16ToF32(v[j * ldv + i]);
      }
    }
  }
}

void SoftcapF32(float* x, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::tanh(x[i] / cap) * cap;
}

double SumSquaresF32(const float* x, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return sum;
}

void Bf16ToF32(const uint8_t* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = half::Bf16ToF32(h);
  }
}

void F16ToF32(const uint8_t* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = half::F16ToF32(h);
  }
}

void F32ToF16(const float* src, int64_t n, uint16_t* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = half::F32ToF16(src[i]);
}

// The GEMM's sums as the SIMD kernels form them: one rounding per fused multiply-add, in k
// order (reference tile: 4 tokens x 8 rows).
void GemmPackedF32(const float* xp, const float* wp, int64_t k, int ntok, int ncols, float* y,
                   int64_t ldy, bool accumulate) {
  constexpr int kMr = 4, kNr = 8;
  for (int t = 0; t < ntok; ++t) {
    for (int j = 0; j < ncols; ++j) {
      float acc = accumulate ? y[t * ldy + j] : 0.0f;
      for (int64_t i = 0; i < k; ++i) acc = std::fma(xp[i * kMr + t], wp[i * kNr + j], acc);
      y[t * ldy + j] = acc;
    }
  }
}

// GemmPackedF32 with 16-bit panels: each weight widened exactly, then the same chains.
template <float (*Widen)(uint16_t)>
void GemmPacked16(const float* xp, const uint16_t* wp, int64_t k, int ntok, int ncols, float* y,
                  int64_t ldy, bool accumulate) {
  constexpr int kMr = 4, kNr = 8;
  for (int t = 0; t < ntok; ++t) {
    for (int j = 0; j < ncols; ++j) {
      float acc = accumulate ? y[t * ldy + j] : 0.0f;
      for (int64_t i = 0; i < k; ++i) acc = std::fma(xp[i * kMr + t], Widen(wp[i * kNr + j]), acc);
      y[t * ldy + j] = acc;
    }
  }
}

}  // namespace

void PackGemmTokens(const float* x, int64_t ldx, int ntok, int64_t k, int mr, float* out) {
  for (int64_t i = 0; i < k; ++i) {
    for (int t = 0; t < mr; ++t) out[i * mr + t] = t < ntok ? x[t * ldx + i] : 0.0f;
  }
}

namespace {

// out[i * nr + j] = w[j * ldw + i] for j < nrows, 0 for the panel's rows past them. k in blocks
// of kStep values: each pass reads nrows short runs of a row and writes whole output lines.
template <class T, int64_t kStep>
void PackPanel(const T* w, int64_t ldw, int nrows, int64_t k, int nr, T* out) {
  for (int64_t i0 = 0; i0 < k; i0 += kStep) {
    const int64_t i1 = std::min(k, i0 + kStep);
    for (int j = 0; j < nr; ++j) {
      if (j < nrows) {
        const T* row = w + j * ldw;
        for (int64_t i = i0; i < i1; ++i) out[i * nr + j] = row[i];
      } else {
        for (int64_t i = i0; i < i1; ++i) out[i * nr + j] = T{0};
      }
    }
  }
}

}  // namespace

void PackGemmPanel(const float* w, int64_t ldw, int nrows, int64_t k, int nr, float* out) {
  PackPanel<float, 8>(w, ldw, nrows, k, nr, out);
}

void PackGemmPanel16(const uint16_t* w, int64_t ldw, int nrows, int64_t k, int nr, uint16_t* out) {
  PackPanel<uint16_t, 32>(w, ldw, nrows, k, nr, out);  // 32 values: one line per k of the block
}

const KernelTable& ReferenceTable() {
  static const KernelTable table = {
      .isa = "ref",
      .dot_q8_0 = DotQ8_0,
      .dot_q4_0 = DotQ4_0,
      .dot_q4_0r = DotQ4_0R,
      .dot_q6_k = DotQ6_K,
      .dot_q4_k = DotQ4_K,
      .dot_q5_k = DotQ5_K,
      .dot_q5_1 = DotQ5_1,
      .dot_iq4_xs = DotIQ4_XS,
      .dot_iq4_nl = DotIQ4_NL,
      .dot_mxfp4 = DotMXFP4,
      .dot_q3_k = DotQ3_K,
      .dot_q4_1 = DotQ4_1,
      .dot_q2_k = DotQ2_K,
      .dot_iq2_xxs = DotCodebook<DType::kIQ2_XXS>,
      .dot_iq2_xs = DotCodebook<DType::kIQ2_XS>,
      .dot_iq2_s = DotCodebook<DType::kIQ2_S>,
      .dot_iq3_xxs = DotCodebook<DType::kIQ3_XXS>,
      .dot_iq3_s = DotCodebook<DType::kIQ3_S>,
      .dot_iq1_s = DotCodebook<DType::kIQ1_S>,
      .dot_iq1_m = DotCodebook<DType::kIQ1_M>,
      .dot_codebook_tile = nullptr,
      .gemm_codebook_x16 = nullptr,
      .gemm_codebook_x16_takes = nullptr,
      .gemm_q4_0r = nullptr,
      .dot_q8_0r = DotQ8_0R,
      .gemm_q8_0r = nullptr,
      .gemm_q4_0x16 = GemmX16<quant::kQ4_0BlockBytes, pack::X16F16Scale, pack::Q4_0x16Value>,
      .gemm_q8_0x16 = GemmX16<quant::kQ8_0BlockBytes, pack::X16F16Scale, pack::Q8_0x16Value>,
      .gemm_q4_0x16_pair = nullptr,
      .gemm_q8_0x16_pair = nullptr,
      .gemm_q4_kx16 = GemmQ4_Kx16,
      .gemm_q6_kx16 = GemmQ6_Kx16,
      .gemm_q5_kx16 = GemmQ5_Kx16,
      .gemm_iq4_xsx16 = GemmIQ4_XSx16,
      .gemm_q3_kx16 = GemmQ3_Kx16,
      .gemm_q4_1x16 = GemmQ4_1x16,
      .gemm_q5_1x16 = GemmQ5_1x16,
      .gemm_q2_kx16 = GemmQ2_Kx16,
      .gemm_iq4_nlx16 = GemmX16<quant::kIQ4_NLBlockBytes, pack::X16F16Scale, pack::IQ4_NLx16Value>,
      .gemm_iq4_nlx16_pair = nullptr,
      .gemm_mxfp4x16 = GemmX16<quant::kMXFP4BlockBytes, pack::MXFP4x16Scale, pack::MXFP4x16Value>,
      .gemm_mxfp4x16_pair = nullptr,
      .quantize_blocks = QuantizeActivationBlocks,
      .dot_f32 = DotF32,
      .axpy_f32 = AxpyF32,
      .gelu_mul_f32 = GeluMulF32,
      .sigmoid_mul_f32 = SigmoidMulF32,
      .softmax_f32 = SoftmaxF32,
      .exp_columns_f32 = ExpColumnsF32,
      .attention_scores_f32 = AttentionScoresF32,
      .attention_values_f32 = AttentionValuesF32,
      .attention_scores_f16 = AttentionScores16<uint16_t>,
      .attention_scores_bf16 = AttentionScores16<Bf16>,
      .attention_values_f16 = AttentionValuesF16,
      .matvec_f32 = AttentionScoresF32,
      .matvec_f16 = AttentionScores16<uint16_t>,
      .matvec_bf16 = AttentionScores16<Bf16>,
      .dequantize_q8_0 = DequantizeQ8_0,
      .dequantize_q4_0 = DequantizeQ4_0,
      .softcap_f32 = SoftcapF32,
      .sum_squares_f32 = SumSquaresF32,
      .bf16_to_f32 = Bf16ToF32,
      .f16_to_f32 = F16ToF32,
      .f32_to_f16 = F32ToF16,
      .gemm_f32_mr = 4,
      .gemm_f32_nr = 8,
      .gemm_f32_packed = GemmPackedF32,
      .gemm_f16_packed = GemmPacked16<half::F16ToF32>,
      .gemm_bf16_packed = GemmPacked16<half::Bf16ToF32>,
      .pack_gemm_tokens = PackGemmTokens,
      .pack_gemm_panel = PackGemmPanel};
  return table;
}

}  // namespace gemma4::kernels
