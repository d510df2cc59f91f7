// kernel_check: compares every kernel of the best ISA table of this CPU (or of GEMMA4_ISA)
// with the scalar reference on random data with odd sizes; exits non-zero on a mismatch.
// GoogleTest covers the same on the build host (tests/quant_test.cc); this standalone binary
// exists so cross-compiled builds (NEON under qemu in CI) are checked too.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "base/half.h"
#include "base/tensor.h"
#include "kernels/kernels.h"
#include "kernels/pack/pack.h"
#include "kernels/ref/reference_dots.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

int failures = 0;

void Check(bool ok, const char* what, int64_t size) {
  if (!ok) {
    std::printf("MISMATCH: %s (size %lld)\n", what, static_cast<long long>(size));
    ++failures;
  }
}

std::vector<float> Random(int64_t n, std::mt19937* rng, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(*rng);
  return v;
}

int Run() {
  const kernels::KernelTable& t = kernels::BestTable();
  const kernels::KernelTable& ref = kernels::ReferenceTable();
  std::printf("kernel_check: %s against the scalar reference\n", t.isa);
  std::mt19937 rng(3);
  for (int64_t nblocks : {1, 2, 3, 4, 5, 7, 8, 16, 22, 48}) {
    const int64_t k = nblocks * 32, tokens = 16;
    const auto x = Random(tokens * k, &rng, 2.0f);
    std::vector<int8_t> q1(k), q2(k);
    std::vector<float> s1(nblocks), s2(nblocks), o1(nblocks), o2(nblocks);
    std::vector<int32_t> m1(nblocks), m2(nblocks);
    t.quantize_blocks(x.data(), nblocks, q1.data(), s1.data(), m1.data(), o1.data());
    ref.quantize_blocks(x.data(), nblocks, q2.data(), s2.data(), m2.data(), o2.data());
    Check(q1 == q2 && s1 == s2 && m1 == m2 && o1 == o2, "quantize_blocks", k);
    kernels::QuantizedActivations acts;
    kernels::QuantizeActivations(x.data(), tokens, k, &acts);
    const auto w = Random(k, &rng, 0.05f);
    std::vector<uint8_t> q8(RowBytes(DType::kQ8_0, k)), q4(RowBytes(DType::kQ4_0, k)),
        q4r(q4.size());
    quant::QuantizeRow(DType::kQ8_0, w.data(), k, q8.data());
    quant::QuantizeRow(DType::kQ4_0, w.data(), k, q4.data());
    // MXFP4 (no quantizer of ours): the Q4_0 row's nibbles under E8M0 scales 2^-9 .. 2^-2.
    std::vector<uint8_t> mx(RowBytes(DType::kMXFP4, k));
    for (int64_t b = 0; b < nblocks; ++b) {
      mx[b * quant::kMXFP4BlockBytes] = static_cast<uint8_t>(119 + b % 8);
      std::memcpy(&mx[b * quant::kMXFP4BlockBytes + 1], &q4[b * quant::kQ4_0BlockBytes + 2], 16);
    }
    kernels::pack::RepackRowQ4_0(q4.data(), nblocks, q4r.data());
    double mag = 0;
    for (int64_t j = 0; j < k; ++j) mag += std::fabs(double{w[j]} * x[j]);
    for (int ntok = 1; ntok <= 4; ++ntok) {
      float a[4], b[4];
      auto same = [&](int n) {
        for (int i = 0; i < n; ++i) {
          if (std::fabs(a[i] - b[i]) > 1e-4 * (1 + mag)) return false;
        }
        return true;
      };
      t.dot_q8_0(q8.data(), nblocks, acts, 0, ntok, a);
      ref.dot_q8_0(q8.data(), nblocks, acts, 0, ntok, b);
      Check(same(ntok), "dot_q8_0", k);
      t.dot_q4_0(q4.data(), nblocks, acts, 0, ntok, a);
      ref.dot_q4_0(q4.data(), nblocks, acts, 0, ntok, b);
      Check(same(ntok), "dot_q4_0", k);
      t.dot_q4_0r(q4r.data(), nblocks, acts, 0, ntok, a);
      Check(same(ntok), "dot_q4_0r", k);
      std::vector<uint8_t> q8r(q8.size());
      kernels::pack::RepackRowQ8_0(q8.data(), nblocks, q8r.data());
      ref.dot_q8_0(q8.data(), nblocks, acts, 0, ntok, b);
      t.dot_q8_0r(q8r.data(), nblocks, acts, 0, ntok, a);
      Check(same(ntok), "dot_q8_0r", k);
      // The types no quantizer of ours writes (llama.cpp does): random bytes with small, finite
      // block scales (`fix_block` writes them into block sb), against the reference.
      auto check_random_row = [&](DType type, kernels::RowDotFn kernels::KernelTable::*dot,
                                  const char* name, auto fix_block) {
        std::vector<uint8_t> row(RowBytes(type, k));
        for (uint8_t& byte : row) byte = static_cast<uint8_t>(rng());
        const uint64_t block_bytes = BlockBytes(type);
        for (int64_t sb = 0; sb < k / BlockElements(type); ++sb) {
          fix_block(row.data() + sb * block_bytes, sb);
        }
        std::vector<float> values(k);
        quant::DequantizeRow(type, row.data(), k, values.data());
        double row_mag = 0;
        for (int64_t j = 0; j < k; ++j) row_mag += std::fabs(double{values[j]} * x[j]);
        (t.*dot)(row.data(), nblocks, acts, 0, ntok, a);
        (ref.*dot)(row.data(), nblocks, acts, 0, ntok, b);
        bool row_same = true;
        for (int i = 0; i < ntok; ++i) row_same &= std::fabs(a[i] - b[i]) <= 1e-4 * (1 + row_mag);
        Check(row_same, name, k);
      };
      auto put_half = [](uint8_t* p, float v) {
        const uint16_t h = half::F32ToF16(v);
        std::memcpy(p, &h, 2);
      };
      if (nblocks % 8 == 0) {
        std::vector<uint8_t> q6(RowBytes(DType::kQ6_K, k));
        quant::QuantizeRowQ6_K(w.data(), k, q6.data());
        t.dot_q6_k(q6.data(), nblocks, acts, 0, ntok, a);
        ref.dot_q6_k(q6.data(), nblocks, acts, 0, ntok, b);
        Check(same(ntok), "dot_q6_k", k);
        std::vector<uint8_t> q4k(RowBytes(DType::kQ4_K, k));
        quant::QuantizeRowQ4_K(w.data(), k, q4k.data());
        t.dot_q4_k(q4k.data(), nblocks, acts, 0, ntok, a);
        ref.dot_q4_k(q4k.data(), nblocks, acts, 0, ntok, b);
        Check(same(ntok), "dot_q4_k", k);
        check_random_row(DType::kQ5_K, &kernels::KernelTable::dot_q5_k, "dot_q5_k",
                         [&](uint8_t* block, int64_t sb) {
                           put_half(block, 0.001f * static_cast<float>(1 + sb % 7));
                           put_half(block + 2, 0.002f * static_cast<float>(1 + sb % 5));
                         });
        check_random_row(DType::kIQ4_XS, &kernels::KernelTable::dot_iq4_xs, "dot_iq4_xs",
                         [&](uint8_t* block, int64_t sb) {
                           put_half(block, 0.0005f * static_cast<float>(1 + sb % 7));
                         });
        // The IQ3 codebook formats: f16 d at byte 0 (sign as the sub-block says).
        check_random_row(DType::kIQ3_XXS, &kernels::KernelTable::dot_iq3_xxs, "dot_iq3_xxs",
                         [&](uint8_t* block, int64_t sb) {
                           put_half(block, 0.0005f * static_cast<float>(1 + sb % 7));
                         });
        check_random_row(DType::kIQ3_S, &kernels::KernelTable::dot_iq3_s, "dot_iq3_s",
                         [&](uint8_t* block, int64_t sb) {
                           put_half(block, 0.0002f * static_cast<float>(1 + sb % 7));
                         });
        check_random_row(DType::kQ3_K, &kernels::KernelTable::dot_q3_k, "dot_q3_k",
                         [&](uint8_t* block, int64_t sb) {
                           put_half(block + quant::kQ3_KD,
                                    0.0005f * static_cast<float>(1 + sb % 7));
                         });
        // The 2-bit codebook formats: random grid indices, signs and scales, small d.
        check_random_row(DType::kIQ2_XXS, &kernels::KernelTable::dot_iq2_xxs, "dot_iq2_xxs",
                         [&](uint8_t* block, int64_t sb) {
                           put_half(block, 0.001f * static_cast<float>(1 + sb % 7));
                         });
        check_random_row(DType::kIQ2_XS, &kernels::KernelTable::dot_iq2_xs, "dot_iq2_xs",
                         [&](uint8_t* block, int64_t sb) {
                           put_half(block, 0.001f * static_cast<float>(1 + sb % 7));
                         });
        check_random_row(DType::kIQ2_S, &kernels::KernelTable::dot_iq2_s, "dot_iq2_s",
                         [&](uint8_t* block, int64_t sb) {
                           put_half(block, 0.001f * static_cast<float>(1 + sb % 7));
                         });
        // The 1-bit codebook formats: random indices, shifts and scales, small d (IQ1_M's in the
        // top nibbles of its four u16 scales at 48).
        check_random_row(DType::kIQ1_S, &kernels::KernelTable::dot_iq1_s, "dot_iq1_s",
                         [&](uint8_t* block, int64_t sb) {
                           put_half(block, 0.002f * static_cast<float>(1 + sb % 7));
                         });
        check_random_row(
            DType::kIQ1_M, &kernels::KernelTable::dot_iq1_m, "dot_iq1_m",
            [&](uint8_t* block, int64_t sb) {
              const uint16_t d = half::F32ToF16(0.002f * static_cast<float>(1 + sb % 7));
              for (int j = 0; j < 4; ++j) {
                uint8_t& top = block[quant::kIQ1_MScales + 2 * j + 1];
                top = static_cast<uint8_t>((top & 0x0F) | (((d >> (4 * j)) & 0xF) << 4));
              }
            });
        // Q2_K likewise (random values, scales and mins, small d and dmin), and where the table
        // has the 16-row kernel, 16 copies of the row interleaved: each row's result is the
        // plain dot's.
        std::vector<uint8_t> q2k(RowBytes(DType::kQ2_K, k));
        for (uint8_t& byte : q2k) byte = static_cast<uint8_t>(rng());
        for (int64_t sb = 0; sb < nblocks / 8; ++sb) {
          const uint16_t d = half::F32ToF16(0.002f * static_cast<float>(1 + sb % 7));
          const uint16_t dmin = half::F32ToF16(0.001f * static_cast<float>(1 + sb % 5));
          std::memcpy(q2k.data() + sb * quant::kQ2_KBlockBytes + quant::kQ2_KD, &d, 2);
          std::memcpy(q2k.data() + sb * quant::kQ2_KBlockBytes + quant::kQ2_KD + 2, &dmin, 2);
        }
        std::vector<float> q2k_values(k);
        quant::DequantizeRow(DType::kQ2_K, q2k.data(), k, q2k_values.data());
        double q2k_mag = 0;
        for (int64_t j = 0; j < k; ++j) q2k_mag += std::fabs(double{q2k_values[j]} * x[j]);
        t.dot_q2_k(q2k.data(), nblocks, acts, 0, ntok, a);
        ref.dot_q2_k(q2k.data(), nblocks, acts, 0, ntok, b);
        bool q2k_same = true;
        for (int i = 0; i < ntok; ++i) q2k_same &= std::fabs(a[i] - b[i]) <= 1e-4 * (1 + q2k_mag);
        Check(q2k_same, "dot_q2_k", k);
        if (t.gemm_q2_kx16 != nullptr) {
          std::vector<uint8_t> rows(16 * q2k.size()), group(rows.size());
          for (int r = 0; r < 16; ++r)
            std::copy(q2k.begin(), q2k.end(), rows.begin() + r * q2k.size());
          kernels::pack::RepackGroupQ2_Kx16(rows.data(), q2k.size(), nblocks / 8, group.data());
          float got[4 * 16];
          t.gemm_q2_kx16(group.data(), nblocks, acts, 0, ntok, got, 16);
          bool x16_same = true;
          for (int i = 0; i < ntok; ++i) {
            for (int r = 0; r < 16; ++r) {
              x16_same &= std::fabs(got[i * 16 + r] - b[i]) <= 1e-4 * (1 + q2k_mag);
            }
          }
          Check(x16_same, "gemm_q2_kx16", k);
        }
      }
      // MXFP4 likewise (E8M0 scales 2^-10 .. 2^-4, and the denormal encodings 0 and 1).
      check_random_row(DType::kMXFP4, &kernels::KernelTable::dot_mxfp4, "dot_mxfp4",
                       [&](uint8_t* block, int64_t blk) {
                         block[0] = static_cast<uint8_t>(blk % 9 == 8 ? blk % 2 : 118 + blk % 7);
                       });
      // IQ4_NL likewise (scales of both signs), any block count.
      check_random_row(DType::kIQ4_NL, &kernels::KernelTable::dot_iq4_nl, "dot_iq4_nl",
                       [&](uint8_t* block, int64_t blk) {
                         put_half(block, 0.0004f * static_cast<float>(blk % 7 - 3));
                       });
      // Q5_1 and Q4_1 likewise (random bytes, small d, mins of both signs), any block count.
      for (DType type : {DType::kQ5_1, DType::kQ4_1}) {
        check_random_row(type,
                         type == DType::kQ5_1 ? &kernels::KernelTable::dot_q5_1
                                              : &kernels::KernelTable::dot_q4_1,
                         type == DType::kQ5_1 ? "dot_q5_1" : "dot_q4_1",
                         [&](uint8_t* block, int64_t blk) {
                           put_half(block, 0.001f * static_cast<float>(1 + blk % 7));
                           put_half(block + 2, 0.003f * static_cast<float>(blk % 5 - 2));
                         });
      }
    }
    // The 16-row kernels on 16 copies of the row, interleaved: every row's result equals the
    // plain dot, for token counts within one register block and across several (callers pass
    // whole 16-token tiles). IQ4_NL's row is the Q4_0 row's bytes (same block shape), its
    // nibbles read as level indices.
    struct X16Format {
      const char* name;
      kernels::GemmX16Fn gemm;
      kernels::RowDotFn dot;
      DType type;
      const std::vector<uint8_t>* row;
      void (*repack)(const uint8_t*, uint64_t, int64_t, uint8_t*);
    };
    const X16Format x16_formats[] = {{"gemm_q4_0x16", t.gemm_q4_0x16, ref.dot_q4_0, DType::kQ4_0,
                                      &q4, kernels::pack::RepackGroupQ4_0x16},
                                     {"gemm_q8_0x16", t.gemm_q8_0x16, ref.dot_q8_0, DType::kQ8_0,
                                      &q8, kernels::pack::RepackGroupQ8_0x16},
                                     {"gemm_iq4_nlx16", t.gemm_iq4_nlx16, ref.dot_iq4_nl,
                                      DType::kIQ4_NL, &q4, kernels::pack::RepackGroupQ4_0x16},
                                     {"gemm_mxfp4x16", t.gemm_mxfp4x16, ref.dot_mxfp4,
                                      DType::kMXFP4, &mx, kernels::pack::RepackGroupMXFP4x16}};
    for (const X16Format& f : x16_formats) {
      if (f.gemm == nullptr) continue;
      const std::vector<uint8_t>& row = *f.row;
      std::vector<float> values(k);
      quant::DequantizeRow(f.type, row.data(), k, values.data());
      std::vector<uint8_t> rows(16 * row.size()), group(rows.size());
      for (int r = 0; r < 16; ++r) std::copy(row.begin(), row.end(), rows.begin() + r * row.size());
      f.repack(rows.data(), row.size(), nblocks, group.data());
      for (int ntok : {1, 2, 3, 4, 5, 8, 9, 13, 16}) {
        std::vector<float> got(16 * 16);
        f.gemm(group.data(), nblocks, acts, 0, ntok, got.data(), 16);
        bool ok = true;
        for (int i = 0; i < ntok; ++i) {
          double mag = 0;
          for (int64_t j = 0; j < k; ++j) mag += std::fabs(double{values[j]} * x[i * k + j]);
          float want;
          f.dot(row.data(), nblocks, acts, i, 1, &want);
          for (int r = 0; r < 16; ++r)
            ok = ok && std::fabs(got[i * 16 + r] - want) <= 1e-4 * (1 + mag);
        }
        Check(ok, f.name, k);
      }
    }
  }
  for (int64_t n : {1, 3, 7, 16, 17, 63, 64, 65, 1000}) {
    const auto a = Random(n, &rng, 1.0f), b = Random(n, &rng, 1.0f);
    double mag = 0;
    for (int64_t i = 0; i < n; ++i) mag += std::fabs(double{a[i]} * b[i]);
    Check(std::fabs(t.dot_f32(a.data(), b.data(), n) - ref.dot_f32(a.data(), b.data(), n)) <=
              1e-5 * (1 + mag),
          "dot_f32", n);
    std::vector<float> y1(b), y2(b), g1(n), g2(n), c1(n), c2(n);
    t.axpy_f32(0.3f, a.data(), y1.data(), n);
    ref.axpy_f32(0.3f, a.data(), y2.data(), n);
    t.gelu_mul_f32(a.data(), b.data(), g1.data(), n);
    ref.gelu_mul_f32(a.data(), b.data(), g2.data(), n);
    bool axpy_ok = true, gelu_ok = true;
    for (int64_t i = 0; i < n; ++i) {
      axpy_ok = axpy_ok && std::fabs(y1[i] - y2[i]) <= 1e-6f * (1 + std::fabs(y2[i]));
      gelu_ok = gelu_ok && std::fabs(g1[i] - g2[i]) <= 4e-6f * (1 + std::fabs(g2[i]));
    }
    Check(axpy_ok, "axpy_f32", n);
    Check(gelu_ok, "gelu_mul_f32", n);
    // SiLU (m null) and GLU (m * sigmoid(x)) over +-100, where exp(-x) saturates.
    for (const float* m : {static_cast<const float*>(nullptr), b.data()}) {
      std::vector<float> xs(n), s1(n), s2(n);
      for (int64_t i = 0; i < n; ++i) xs[i] = a[i] * 100.0f;
      t.sigmoid_mul_f32(xs.data(), m, s1.data(), n);
      ref.sigmoid_mul_f32(xs.data(), m, s2.data(), n);
      bool ok = true;
      for (int64_t i = 0; i < n; ++i)
        ok = ok && std::fabs(s1[i] - s2[i]) <= 4e-6f * (1 + std::fabs(s2[i]));
      Check(ok, m == nullptr ? "sigmoid_mul_f32 (silu)" : "sigmoid_mul_f32", n);
    }
    // Column softmax numerators: n rows of 13 columns (one vector and a tail on NEON and
    // AVX2), stride 15, values spread past the denormal edge of exp.
    {
      std::vector<float> e1 = Random(n * 15, &rng, 30.0f), e2 = e1, sum1(13), sum2(13);
      t.exp_columns_f32(e1.data(), n, 13, 15, sum1.data());
      ref.exp_columns_f32(e2.data(), n, 13, 15, sum2.data());
      bool ok = true;
      for (int64_t i = 0; i < n * 15; ++i)
        ok = ok && std::fabs(e1[i] - e2[i]) <= 2e-6f * std::fabs(e2[i]);
      for (int c = 0; c < 13; ++c) ok = ok && std::fabs(sum1[c] - sum2[c]) <= 2e-6f * sum2[c];
      Check(ok, "exp_columns_f32", n);
    }
    std::vector<uint8_t> half(2 * n);
    for (auto& byte : half) byte = static_cast<uint8_t>(rng());
    for (auto conv : {&kernels::KernelTable::bf16_to_f32, &kernels::KernelTable::f16_to_f32}) {
      (t.*conv)(half.data(), n, c1.data());
      (ref.*conv)(half.data(), n, c2.data());
      bool ok = true;
      for (int64_t i = 0; i < n; ++i) {
        ok = ok && (c1[i] == c2[i] || (std::isnan(c1[i]) && std::isnan(c2[i])));
      }
      Check(ok, "16-bit float conversion", n);
    }
  }
  // Attention over f32 and f16 keys / values (odd head widths and counts, strided rows), and
  // soft-capping. The f16 kernels must equal the f32 ones over the widened rows exactly.
  for (int nq : {1, 3, 4, 5}) {
    for (int64_t nk : {1, 2, 7}) {
      for (int64_t d : {1, 7, 16, 33, 256}) {
        const int64_t ld = d + 3, ldsc = nk + 1;
        const auto q = Random(nq * ld, &rng, 1.0f), kf = Random(nk * ld, &rng, 1.0f);
        std::vector<uint16_t> kh(kf.size());
        std::vector<float> kw(kf.size());
        for (size_t i = 0; i < kf.size(); ++i) {
          kh[i] = half::F32ToF16(kf[i]);
          kw[i] = half::F16ToF32(kh[i]);
        }
        std::vector<float> s1(nq * ldsc), s2(nq * ldsc), s3(nq * ldsc);
        t.attention_scores_f32(q.data(), ld, nq, kw.data(), ld, nk, d, s1.data(), ldsc);
        ref.attention_scores_f32(q.data(), ld, nq, kw.data(), ld, nk, d, s2.data(), ldsc);
        t.attention_scores_f16(q.data(), ld, nq, kh.data(), ld, nk, d, s3.data(), ldsc);
        bool near = true;
        for (int h = 0; h < nq; ++h) {
          for (int64_t j = 0; j < nk; ++j) {
            double mag = 0;
            for (int64_t i = 0; i < d; ++i)
              mag += std::fabs(double{q[h * ld + i]} * kw[j * ld + i]);
            near = near && std::fabs(s1[h * ldsc + j] - s2[h * ldsc + j]) <= 1e-5 * (1 + mag);
          }
        }
        Check(near, "attention_scores_f32", d);
        Check(s1 == s3, "attention_scores_f16", d);
        // Decode's float matmul kernels: the same sums in row order.
        std::vector<float> m1(nq * ldsc), m2(nq * ldsc);
        t.matvec_f32(q.data(), ld, nq, kw.data(), ld, nk, d, m1.data(), ldsc);
        t.matvec_f16(q.data(), ld, nq, kh.data(), ld, nk, d, m2.data(), ldsc);
        near = true;
        for (int h = 0; h < nq; ++h) {
          for (int64_t j = 0; j < nk; ++j) {
            double mag = 0;
            for (int64_t i = 0; i < d; ++i)
              mag += std::fabs(double{q[h * ld + i]} * kw[j * ld + i]);
            near = near && std::fabs(m1[h * ldsc + j] - s2[h * ldsc + j]) <= 1e-5 * (1 + mag);
          }
        }
        Check(near, "matvec_f32", d);
        Check(m1 == m2, "matvec_f16", d);
        const auto p = Random(nq * ldsc, &rng, 1.0f);
        std::vector<float> o1(nq * ld, 0.5f), o2(o1), o3(o1);
        t.attention_values_f32(p.data(), ldsc, nq, kw.data(), ld, nk, d, o1.data(), ld);
        ref.attention_values_f32(p.data(), ldsc, nq, kw.data(), ld, nk, d, o2.data(), ld);
        t.attention_values_f16(p.data(), ldsc, nq, kh.data(), ld, nk, d, o3.data(), ld);
        near = true;
        for (size_t i = 0; i < o1.size(); ++i) {
          near = near && std::fabs(o1[i] - o2[i]) <= 1e-5f * (1 + std::fabs(o2[i]) * nk);
        }
        Check(near, "attention_values_f32", d);
        Check(o1 == o3, "attention_values_f16", d);
      }
    }
  }
  for (int64_t n : {1, 7, 8, 9, 1000}) {
    auto x1 = Random(n, &rng, 60.0f);
    auto x2 = x1;
    t.softcap_f32(x1.data(), n, 30.0f);
    ref.softcap_f32(x2.data(), n, 30.0f);
    bool ok = true;
    for (int64_t i = 0; i < n; ++i) ok = ok && std::fabs(x1[i] - x2[i]) <= 4e-6f * 30.0f;
    Check(ok, "softcap_f32", n);
  }
  std::printf("kernel_check: %d mismatches\n", failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace gemma4

int main() { return gemma4::Run(); }
