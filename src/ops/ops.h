// The operators the forward pass and the encoders call (matmul over any weight type, norms,
// RoPE, attention pieces, softmax). Most dispatch to the running CPU's kernel table
// (kernels/kernels.h), whose scalar reference follows transformers' float32 arithmetic (separate
// products, no fused multiply-add: the library is compiled with -ffp-contract=off).
#ifndef GEMMA4_SRC_OPS_OPS_H_
#define GEMMA4_SRC_OPS_OPS_H_

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "base/tensor.h"
#include "gemma4/status.h"
#include "runtime/thread_pool.h"

namespace gemma4::ops {

// Converts `count` elements starting at element `first` of a float-typed tensor to f32.
void ToF32(const TensorView& t, int64_t first, int64_t count, float* out);

// Tokens a prefill matmul call needs for its kernels' speed, which the forward pass's steps
// and MLP slices follow: 512 where the table has bf16 tile kernels (AMX), which dequantize each
// weight block to bf16 once a call for all of the call's tokens. That costs about as much as 8
// tile products of 16 tokens (123 core cycles a block of 16 rows here, on the same ports: it
// does not overlap them), so at 128 tokens a call half of a quantized matmul's time went to it.
// 128 elsewhere: the integer kernels read the quantized weights in place, and larger steps were
// no faster there (Zen 5) while their scratch grows with them.
int64_t PrefillStepTokens();
// The smaller of its two values.
inline constexpr int64_t kSmallestPrefillStepTokens = 128;

// y[s, n] = sum_k x[s, k] * W[n, k] for W = [N, K] (nn.Linear layout), x = [S, K], y = [S, N].
// The kernels are chosen by the token count: where the table has bf16 tile kernels (AMX), runs
// of 16 tokens or more take them (other sums than the integer and f32 kernels'), and each
// token's outputs do not depend on the other tokens of the call. run_tokens: the length of the
// run these S tokens are a piece of (0: S), so that pieces of one run split across threads
// choose as the whole run would and give it its bits.
void MatMul(const TensorView& w, const float* x, int64_t s, float* y, ThreadPool* pool,
            int64_t run_tokens = 0);
// Several matrices applied to the same x [S, K]: y[j] = MatMul(*w[j], x, s) for j < n. Over
// interleaved block-quantized weights of one type x is quantized once and all products run as
// one parallel job (the same kernel calls on the same activations as MatMul's, so the same
// bits): the attention's q/k/v and the MLP's gate/up cost one quantization and one pool
// handoff instead of two or three. Other weights go through MatMul one by one.
void MatMulShared(const TensorView* const* w, float* const* y, int n, const float* x, int64_t s,
                  ThreadPool* pool);
// Makes token t's row of a product's input, K floats, in `row`.
using MakeRow = std::function<void(int64_t t, float* row)>;
// MatMulShared over an input made token by token: make_row(t, scratch + t * K) for every t < S,
// exactly once each, then the products of the rows. Over interleaved block-quantized weights
// each row is made right before it is quantized, on the thread that quantizes it (a norm of the
// residual stream then costs no pass of its own and no pool handoff); the same bits as making
// the rows first and calling MatMulShared.
void MatMulSharedRows(const TensorView* const* w, float* const* y, int n, int64_t s,
                      const MakeRow& make_row, float* scratch, ThreadPool* pool);
// The gated MLP's down projection: g [S, K] becomes gelu_tanh(g) * u (as GeluMul in place),
// then y = MatMul(w, g). Over block-quantized weights each token's row is activated right
// before it is quantized, on the thread that quantizes it (no pass of its own over the
// [S, K] activations and no pool handoff); the same bits as GeluMul then MatMul.
void MatMulGeluMul(const TensorView& w, float* g, const float* u, int64_t s, float* y,
                   ThreadPool* pool);
// Several products with row slices of one matrix in one pass over the pool: for each group g,
// y[t, r] = sum_k W[g.first_row + r, k] * x[t, k] for its tokens t in [g.first_token,
// g.first_token + g.tokens) and r < rows; x = [T, K], y = [T, rows], T covering every group's
// tokens. The values are those of MatMul on each group's slice and tokens (the same kernels on
// the same quantized activations); in one parallel loop, a MoE layer's experts cost one handoff
// instead of one per expert (26B-A4B decode: 2 per layer instead of 16).
struct MatMulGroup {
  int64_t first_row = 0;    // a multiple of 16 for the interleaved layouts' single pass
  int64_t first_token = 0;  // rows of x and y
  int64_t tokens = 0;
};
void MatMulGrouped(const TensorView& w, int64_t rows, const MatMulGroup* groups, int64_t n_groups,
                   const float* x, float* y, ThreadPool* pool);
// The same product for the vision and audio towers, which run whole sequences and never mix
// them with one-token steps: float weights (F32, F16, BF16) go through a packed GEMM with
// register-blocked tiles (several times MatMul's prefill speed), every output one chain of
// fused multiply-adds in k order. Each output depends only on its token and row, whatever s,
// the tiling and the thread count, but its bits are not those of MatMul's dot products.
// Block-quantized weights go through MatMul.
void MatMulGemm(const TensorView& w, const float* x, int64_t s, float* y, ThreadPool* pool);
// MatMulGemm's weight panels ([n_out, k] widened to f32 and laid out k-major in panels of the
// kernel's width), packed once where several calls multiply row slices of tokens by the same
// matrix (a tower's MLP in slices of tokens). Same results as MatMulGemm on the TensorView.
// Or, from PackGemmWeights16, a 16-bit float matrix's values as stored in panels of the same
// layout (panels16; half the bytes of f32 panels, widened exactly inside the kernel: the same
// bits as f32 panels), which the towers pack once at load.
struct PackedGemmWeights {
  int64_t n_out = 0, k = 0;
  std::vector<float> storage;
  const float* panels = nullptr;  // 64-byte aligned, inside storage
  std::unique_ptr<uint16_t[]> storage16;
  const uint16_t* panels16 = nullptr;  // 64-byte aligned, inside storage16
  DType panel_type = DType::kF32;      // kF32, or kF16 / kBF16 for panels16
  int nr = 0;                          // the panel width packed for
  // Bytes held (the memory plan's count of packed tower weights).
  uint64_t PanelBytes() const;
};
void PackGemmWeights(const TensorView& w, PackedGemmWeights* out, ThreadPool* pool);
// w F16 or BF16 (InvalidArgument otherwise, naming the tensor). pool may be null.
Status PackGemmWeights16(const TensorView& w, PackedGemmWeights* out, ThreadPool* pool);
// Resident bytes of PackGemmWeights16's panels for a [rows, cols] 16-bit matrix on this CPU
// (rows rounded up to the kernel's panel width).
uint64_t PackedGemm16Bytes(int64_t rows, int64_t cols);
void MatMulGemm(const PackedGemmWeights& w, const float* x, int64_t s, float* y, ThreadPool* pool);
// MatMulGemm's token tile on this CPU (the micro-kernel's rows): a caller that multiplies
// slices of tokens loses nothing to partial tiles when each slice is a multiple of it.
int64_t GemmTokenTile();

// Bytes of each thread's DenseAttention scratch besides the packed keys and values (the query
// panel, the scores of a query tile against all n keys, the transposed output), which stay
// allocated between calls (the memory plan's per-thread encoder scratch).
uint64_t DenseAttentionThreadBytes(int64_t n, int64_t head_dim);
// Softmax attention of n tokens over all n (no mask, scale 1: the vision tower's bidirectional
// attention), f32: out[t, h * hd + i] = sum_j softmax_j(q_t,h . k_j,g) v_j,g[i] for query head
// h < n_heads and its KV head g = h / (n_heads / n_kv_heads); q_t,h = q + t * ldq + h * hd, k
// and v likewise. Scores and weighted sums go through MatMulGemm's packed kernel (each one
// chain of fused multiply-adds in order, so the result does not depend on the thread count);
// the softmax's division is applied to the weighted sums (out = sum_j e_j v_j / sum_j e_j).
void DenseAttention(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v,
                    int64_t ldv, int64_t n, int n_heads, int n_kv_heads, int head_dim, float* out,
                    int64_t ldo, ThreadPool* pool);

// Dot product with f32 accumulation (vectorised for the running CPU).
float Dot(const float* a, const float* b, int64_t n);

// out = x / sqrt(mean(x^2) + eps) * weight (weight may be null: no scale). In place allowed.
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// out = gelu_tanh(g) * u elementwise (vectorised); u may be null, out may alias g.
void GeluMul(const float* g, const float* u, float* out, int64_t n);
// The same split over the pool's threads (prefill's [tokens, width] MLP activations), in
// pieces of whole 64-value runs so every value takes the same vector or tail path as in one
// call: bit-identical to GeluMul(g, u, out, n).
void GeluMul(const float* g, const float* u, float* out, int64_t n, ThreadPool* pool);

// out = m * sigmoid(x) elementwise as m / (1 + exp(-x)) (vectorised); m null: SiLU(x). out may
// alias x or m.
void SigmoidMul(const float* x, const float* m, float* out, int64_t n);

// Rotate-half RoPE over one head of width head_dim at `position`:
// out[i] = x[i]*cos - x[i+h]*sin, out[i+h] = x[i+h]*cos + x[i]*sin for i < rotated_pairs.
void ApplyRope(float* x, int head_dim, const float* inv_freq, int rotated_pairs, int64_t position);
// The same rotation split in two: the angles' cos/sin for one position (computed once and
// shared by every head), then the rotation. Bit-identical to ApplyRope.
void RopeTable(const float* inv_freq, int rotated_pairs, int64_t position, float* cos_out,
               float* sin_out);
void ApplyRopeTable(float* x, int head_dim, const float* cos_table, const float* sin_table,
                    int rotated_pairs);

// In-place softmax over n values.
void Softmax(float* x, int64_t n);

// Attention over nk cached positions for nq query heads sharing one KV head:
// scores[h * ldsc + j] = q_h . k_j  (q_h = q + h * ldq, k_j = k + j * ldk, d values each).
void AttentionScores(const float* q, int64_t ldq, int nq, const float* k, int64_t ldk, int64_t nk,
                     int64_t d, float* scores, int64_t ldsc);
// out_h += sum_j p[h * ldp + j] * v_j  (v_j = v + j * ldv, out_h = out + h * ldo).
void AttentionValues(const float* p, int64_t ldp, int nq, const float* v, int64_t ldv, int64_t nk,
                     int64_t d, float* out, int64_t ldo);
// The same over f16 keys / values (IEEE half bits).
void AttentionScores(const float* q, int64_t ldq, int nq, const uint16_t* k, int64_t ldk,
                     int64_t nk, int64_t d, float* scores, int64_t ldsc);
void AttentionValues(const float* p, int64_t ldp, int nq, const uint16_t* v, int64_t ldv,
                     int64_t nk, int64_t d, float* out, int64_t ldo);
// Blocks of a quantized KV cache row to f32 (nblocks blocks of 32 values, ggml layout).
void DequantizeQ8_0(const uint8_t* blocks, int64_t nblocks, float* out);
void DequantizeQ4_0(const uint8_t* blocks, int64_t nblocks, float* out);
// In place: x = tanh(x / cap) * cap.
void Softcap(float* x, int64_t n, float cap);

}  // namespace gemma4::ops

#endif  // GEMMA4_SRC_OPS_OPS_H_
