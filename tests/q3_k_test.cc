// Q3_K, llama.cpp's 3-bit K-quant (its Q3_K_S, Q3_K_M, Q3_K_L and Q2_K mixes hold it): read
// from GGUF files and computed on as stored (plain rows) or interleaved by 16 rows (Q3_Kx16).
// The values are checked against ggml's dequantize_row_q3_K written out here, on random blocks
// and on every Q3_K matrix of tests/fixtures/llama_cpp_gguf/tiny-wide-q3_k_m.gguf
// (llama-quantize de3ff81, Q3_K_M) as the forward pass reads them; the kernels are checked
// against the scalar reference in kernels_test.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "base/half.h"
#include "kernels/kernels.h"
#include "llama_cpp_file_values.h"
#include "model/model.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

// ggml's dequantize_row_q3_K as ggml writes it: the 12 scale bytes read as three u32 and
// rearranged with masks into 16 bytes, then per 128 values four shifts of the 32 qs bytes,
// each over two 16-value sub-blocks, with the hmask bit under a mask that moves up one bit per
// 32 values.
std::vector<float> GgmlDequantizeQ3_K(const uint8_t* blocks, int64_t nblocks) {
  constexpr uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
  std::vector<float> out(nblocks * 256);
  float* y = out.data();
  for (int64_t i = 0; i < nblocks; ++i, blocks += 110) {
    const uint8_t* hm = blocks;
    const uint8_t* q = blocks + 32;
    uint16_t d16;
    std::memcpy(&d16, blocks + 108, 2);
    const float d_all = half::F16ToF32(d16);
    uint32_t aux[4];
    std::memcpy(aux, blocks + 96, 12);
    const uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    int8_t scales[16];
    std::memcpy(scales, aux, 16);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < 256; n += 128) {
      int shift = 0;
      for (int j = 0; j < 4; ++j) {
        float dl = d_all * (scales[is++] - 32);
        for (int l = 0; l < 16; ++l) {
          *y++ = dl * (static_cast<int8_t>((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
        }
        dl = d_all * (scales[is++] - 32);
        for (int l = 0; l < 16; ++l) {
          *y++ = dl * (static_cast<int8_t>((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
        }
        shift += 2;
        m <<= 1;
      }
      q += 32;
    }
  }
  return out;
}

TEST(Q3_KTest, DequantizationIsGgmlFormula) {
  std::mt19937 rng(33);
  constexpr int kBlocks = 40;
  std::vector<uint8_t> q3(110 * kBlocks);
  for (auto& byte : q3) byte = static_cast<uint8_t>(rng());
  for (int b = 0; b < kBlocks; ++b) {  // finite d (random bytes may spell inf or NaN)
    const uint16_t d = half::F32ToF16(0.001f * static_cast<float>(b + 1) * (b % 2 ? -1 : 1));
    std::memcpy(q3.data() + 110 * b + 108, &d, 2);
  }
  std::memset(q3.data(), 0xFF, 32);             // block 0: every hmask bit set (values 0..3)
  std::memset(q3.data() + 110, 0x00, 32);       // block 1: none (values -4..-1)
  std::memset(q3.data() + 220 + 96, 0x00, 12);  // block 2: every scale -32
  std::memset(q3.data() + 330 + 96, 0xFF, 12);  // block 3: every scale 31
  const std::vector<float> want = GgmlDequantizeQ3_K(q3.data(), kBlocks);
  std::vector<float> got(want.size());
  quant::DequantizeRow(DType::kQ3_K, q3.data(), static_cast<int64_t>(want.size()), got.data());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << i;
}

TEST(Q3_KTest, GgufTypeIsRead) {
  DType t = DType::kF32;
  ASSERT_TRUE(gguf::GgmlTypeToDType(11, &t));
  EXPECT_EQ(t, DType::kQ3_K);
  EXPECT_EQ(BlockElements(DType::kQ3_K), 256);
  EXPECT_EQ(BlockBytes(DType::kQ3_K), 110u);
  EXPECT_EQ(RowBytes(DType::kQ3_Kx16, 512), 220u);  // interleaving keeps the bytes
  EXPECT_TRUE(IsComputeType(DType::kQ3_K));
  EXPECT_TRUE(IsInterleavedX16(DType::kQ3_Kx16));
}

// Every Q3_K matrix of llama.cpp's Q3_K_M file (a 3-layer Gemma 4 with E2B's parts, widths
// 256 and 512: tools/reference/make_wide_tiny_gguf.py) as the forward pass reads it
// (interleaved where the ISA has a 16-row kernel) equals ggml's formula on the file's bytes.
TEST(Q3_KTest, LlamaCppFileLoadsWithTheFileValues) {
  const std::string path = testing::LlamaCppFixture("tiny-wide-q3_k_m.gguf");
  std::map<DType, int> checked = testing::ExpectForwardPassReadsFileValues(
      path,
      {{DType::kQ3_K, [](const uint8_t* d, int64_t n) { return GgmlDequantizeQ3_K(d, n / 256); }}});
  // The file's 17 Q3_K matrices: q, k, gate, up and the two PLE ones of blk.0 and blk.1, and
  // q, gate, up and the PLE ones of blk.2 (KV-shared: no k). Its attn_output and ffn_down are
  // Q4_K, attn_v Q5_K, the embeddings Q6_K (the forward pass reads those too, as the logits
  // test shows).
  EXPECT_EQ(checked[DType::kQ3_K], 17);
  // Where the ISA has the 16-row kernel, the 512-row gate projection is interleaved.
  auto model = LoadedModel::Load(path);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->weights().layers[0].gate_proj.dtype,
            kernels::BestTable().gemm_q3_kx16 != nullptr ? DType::kQ3_Kx16 : DType::kQ3_K);
}

// The forward pass on the Q3_K_M file against llama.cpp's logits on it (libllama de3ff81, one
// batch, llama_get_logits_ith for every position; committed as
// tiny-wide-q3_k_m.llama_logits.f32, [8, 512]). Both quantize activations to 8 bits (llama.cpp
// per 256 values, Q8_K; gemma4 per 32), which alone moves each program's logits by 0.14-0.45
// on this model's files (see q5_k_test), so the bound is 0.75 and the greedy tokens must
// agree. Measured: 0.32-0.40 per row (every ISA table).
TEST(Q3_KTest, LogitsAgreeWithLlamaCpp) {
  testing::ExpectLogitsNearLlamaCpp(
      testing::LlamaCppFixture("tiny-wide-q3_k_m.gguf"), {2, 10, 20, 30, 40, 50, 60, 70},
      testing::LlamaCppFixture("tiny-wide-q3_k_m.llama_logits.f32"), 0.75f);
}

}  // namespace
}  // namespace gemma4
