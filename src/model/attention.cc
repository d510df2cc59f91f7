#include "model/attention.h"

#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"
#include "model/forward.h"
#include "model/phase_timer.h"
#include "ops/ops.h"
#include "quant/quant.h"
#include "runtime/thread_scratch.h"

namespace gemma4 {

void MergeSplit(int64_t hd, float max, float sum, const float* out, bool first, float* merged_max,
                float* merged_sum, float* merged) {
  // merged = sum over pieces of exp(m_i - M) * l_i * out_i, with M the largest m_i so far and
  // out_i each piece's normalized weighted sum: every factor is at most 1, and the weights'
  // total M-relative exp-sum is kept in merged_sum.
  if (first) {
    *merged_max = max;
    *merged_sum = sum;
    for (int64_t i = 0; i < hd; ++i) merged[i] = out[i] * sum;
    return;
  }
  const float new_max = std::max(*merged_max, max);
  const float old_scale = std::exp(*merged_max - new_max);
  const float piece_weight = sum * std::exp(max - new_max);
  *merged_max = new_max;
  *merged_sum = *merged_sum * old_scale + piece_weight;
  for (int64_t i = 0; i < hd; ++i) merged[i] = merged[i] * old_scale + out[i] * piece_weight;
}

void FinishSplit(int64_t hd, float merged_sum, const float* merged, float* out) {
  for (int64_t i = 0; i < hd; ++i) out[i] = merged[i] / merged_sum;
}

void AttendPiece(const KeyRows& keys, const KeyRows& values, int64_t g, const float* q,
                 int64_t ldq_token, int nq, int nt, const int64_t* lo, const int64_t* hi,
                 float* out, float* max, float* sum, AttentionScratch* sc) {
  const int64_t hd = keys.head_dim;
  int64_t first = INT64_MAX, last = -1, ld = 1;
  for (int i = 0; i < nt; ++i) {
    if (lo[i] > hi[i]) continue;
    first = std::min(first, lo[i]);
    last = std::max(last, hi[i]);
    ld = std::max(ld, hi[i] - lo[i] + 1);
  }
  std::fill(out, out + int64_t{nt} * nq * hd, 0.0f);
  if (last < first) return;
  sc->scores.resize(int64_t{nt} * nq * ld);
  float* scores = sc->scores.data();
  // Calls fn(k, n, rows, ld_rows) over tiles of at most kAttentionKeyTile consecutive cache
  // rows [k, k + n) of KV head g covering [first, last] (a ring wraps at most once).
  const KvCache& cache = *keys.cache;
  auto for_each_tile = [&](const KeyRows& rows, auto fn) {
    const KvType type = cache.type();
    for (int64_t k = first; k <= last;) {
      const int64_t n =
          std::min({last + 1 - k, cache.ContiguousRun(rows.layer, k), kAttentionKeyTile});
      auto row = [&](auto tag, int64_t position) {
        using T = decltype(tag);
        return rows.values ? cache.V<T>(rows.layer, position) : cache.K<T>(rows.layer, position);
      };
      if (type == KvType::kF32) {
        fn(k, n, row(float{}, k) + g * hd, rows.kv_dim);
      } else if (type == KvType::kF16) {
        fn(k, n, row(uint16_t{}, k) + g * hd, rows.kv_dim);
      } else {
        sc->tile.resize(kAttentionKeyTile * hd);
        const int64_t head_bytes = static_cast<int64_t>(KvRowBytes(type, hd));
        const int64_t row_bytes = cache.row_bytes(rows.layer);
        const uint8_t* src = row(uint8_t{}, k) + g * head_bytes;
        auto dequantize = type == KvType::kQ8_0 ? ops::DequantizeQ8_0 : ops::DequantizeQ4_0;
        for (int64_t r = 0; r < n; ++r) {
          dequantize(src + r * row_bytes, hd / 32, sc->tile.data() + r * hd);
        }
        fn(k, n, static_cast<const float*>(sc->tile.data()), hd);
      }
      k += n;
    }
  };
  for_each_tile(keys, [&](int64_t k, int64_t n, const auto* rows, int64_t ld_rows) {
    for (int i = 0; i < nt; ++i) {
      const int64_t a = std::max(k, lo[i]), b = std::min(k + n - 1, hi[i]);
      if (a > b) continue;
      ops::AttentionScores(q + i * ldq_token, hd, nq, rows + (a - k) * ld_rows, ld_rows, b - a + 1,
                           hd, scores + int64_t{i} * nq * ld + (a - lo[i]), ld);
    }
  });
  for (int i = 0; i < nt; ++i) {
    if (lo[i] > hi[i]) continue;
    const int64_t nk = hi[i] - lo[i] + 1;
    for (int h = 0; h < nq; ++h) {
      float* row = scores + (int64_t{i} * nq + h) * ld;
      const int64_t top = std::max_element(row, row + nk) - row;
      max[i * nq + h] = row[top];
      ops::Softmax(row, nk);
      // The top score's weight is exp(0) / l: the piece's exp-sum l, recovered without a
      // second pass over the scores.
      sum[i * nq + h] = 1.0f / row[top];
    }
  }
  for_each_tile(values, [&](int64_t k, int64_t n, const auto* rows, int64_t ld_rows) {
    for (int i = 0; i < nt; ++i) {
      const int64_t a = std::max(k, lo[i]), b = std::min(k + n - 1, hi[i]);
      if (a > b) continue;
      ops::AttentionValues(scores + int64_t{i} * nq * ld + (a - lo[i]), ld, nq,
                           rows + (a - k) * ld_rows, ld_rows, b - a + 1, hd,
                           out + int64_t{i} * nq * hd, hd);
    }
  });
}

namespace {

// A 64-byte aligned run of count floats inside buffer (grown as needed).
float* AlignedFloats(PageVector<float>& buffer, int64_t count) {
  if (buffer.size() < static_cast<size_t>(count + 16)) buffer.resize(count + 16);
  const uintptr_t address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + ((64 - address % 64) % 64) / sizeof(float);
}

// Rows [k, k + n) of KV head g as f32 into dst [n, head_dim].
void ReadRowsF32(const KeyRows& rows, int64_t g, int64_t k, int64_t n, float* dst) {
  const KvCache& cache = *rows.cache;
  const int64_t hd = rows.head_dim;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t position = k + r;
    float* out = dst + r * hd;
    switch (cache.type()) {
      case KvType::kF32: {
        const float* src = rows.values ? cache.V<float>(rows.layer, position)
                                       : cache.K<float>(rows.layer, position);
        std::copy_n(src + g * hd, hd, out);
        break;
      }
      case KvType::kF16: {
        const uint16_t* src = rows.values ? cache.V<uint16_t>(rows.layer, position)
                                          : cache.K<uint16_t>(rows.layer, position);
        kernels::BestTable().f16_to_f32(reinterpret_cast<const uint8_t*>(src + g * hd), hd, out);
        break;
      }
      case KvType::kQ8_0:
      case KvType::kQ4_0: {
        const uint8_t* src = rows.values ? cache.V<uint8_t>(rows.layer, position)
                                         : cache.K<uint8_t>(rows.layer, position);
        const int64_t head_bytes = static_cast<int64_t>(KvRowBytes(cache.type(), hd));
        if (cache.type() == KvType::kQ8_0) {
          ops::DequantizeQ8_0(src + g * head_bytes, hd / 32, out);
        } else {
          ops::DequantizeQ4_0(src + g * head_bytes, hd / 32, out);
        }
        break;
      }
    }
  }
}

}  // namespace

int64_t BlockedAttentionScratchBytes(int64_t nt, int64_t nq, int64_t head_dim) {
  const kernels::KernelTable& table = kernels::BestTable();
  const int64_t mr = table.gemm_f32_mr, nr = table.gemm_f32_nr, B = kAttentionBlockKeys;
  const int64_t rows = nt * nq, tiles = (rows + mr - 1) / mr;
  const int64_t padded_keys = (B + nr - 1) / nr * nr, padded_dim = (head_dim + nr - 1) / nr * nr;
  const int64_t floats = tiles * mr * head_dim     // q_packed
                         + B * head_dim            // rows
                         + padded_keys * head_dim  // k_packed
                         + B * padded_dim          // v_packed
                         + mr * padded_keys        // scores
                         + B * mr                  // probs
                         + rows * head_dim         // out
                         + 2 * rows + 6 * 16;      // max, sum; alignment
  return floats * 4 + rows + tiles;                // started, tile_written
}

void AttendBlocked(const KeyRows& keys, const KeyRows& values, int64_t g, const float* q,
                   int64_t ldq_token, int nq, int nt, const int64_t* lo, const int64_t* hi,
                   float* out, int64_t ldo_token, BlockedAttentionScratch* sc) {
  const kernels::KernelTable& table = kernels::BestTable();
  const int mr = table.gemm_f32_mr, nr = table.gemm_f32_nr;
  const int64_t hd = keys.head_dim, rows = int64_t{nt} * nq;
  const int64_t tiles = (rows + mr - 1) / mr;
  int64_t first = INT64_MAX, last = -1;
  for (int i = 0; i < nt; ++i) {
    if (lo[i] > hi[i]) continue;
    first = std::min(first, lo[i]);
    last = std::max(last, hi[i]);
  }
  // Row r is token r / nq, head r % nq. Queries packed k-major in tiles of mr rows
  // ([tiles][hd][mr], padding rows zero), once per item.
  float* const q_packed = AlignedFloats(sc->q_packed, tiles * hd * mr);
  if (ldq_token == int64_t{nq} * hd) {
    // Every row hd floats after the last (one KV head's query heads of consecutive tokens):
    // the ISA's packing straight from q.
    for (int64_t tile = 0; tile < tiles; ++tile) {
      table.pack_gemm_tokens(q + tile * mr * hd, hd,
                             static_cast<int>(std::min<int64_t>(mr, rows - tile * mr)), hd, mr,
                             q_packed + tile * hd * mr);
    }
  } else {
    std::fill(q_packed, q_packed + tiles * hd * mr, 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = q + (r / nq) * ldq_token + (r % nq) * hd;
      float* dst = q_packed + (r / mr) * hd * mr + r % mr;
      for (int64_t x = 0; x < hd; ++x) dst[x * mr] = src[x];
    }
  }
  // [rows, hd] unnormalized sums: a tile's rows are written (not accumulated) by the value
  // product of the first block any of them sees, rows that see none of it with zero weights,
  // so no pass zeroes them first (0 + x is x: the same bits).
  float* const acc = AlignedFloats(sc->out, rows * hd);
  sc->tile_written.assign(tiles, 0);
  sc->max.resize(rows);
  sc->sum.resize(rows);
  sc->started.assign(rows, 0);
  const int64_t B = kAttentionBlockKeys;
  const int64_t padded_keys = (B + nr - 1) / nr * nr;
  const int64_t value_panels = (hd + nr - 1) / nr;
  float* const block_rows = AlignedFloats(sc->rows, B * hd);
  float* const k_packed = AlignedFloats(sc->k_packed, padded_keys * hd);
  float* const v_packed = AlignedFloats(sc->v_packed, B * value_panels * nr);
  float* const scores = AlignedFloats(sc->scores, int64_t{mr} * padded_keys);
  float* const probs = AlignedFloats(sc->probs, B * mr);
  for (int64_t kb = last < first ? last + 1 : first / B * B; kb <= last; kb += B) {
    const int64_t k0 = std::max(kb, first), k1 = std::min(kb + B - 1, last), n = k1 - k0 + 1;
    const int64_t key_panels = (n + nr - 1) / nr;
    // Keys as panels of nr keys k-major over the head ([hd, nr] each); values as panels of nr
    // dimensions over the block's keys ([n, nr] each, zero past hd).
    ReadRowsF32(keys, g, k0, n, block_rows);
    for (int64_t p = 0; p < key_panels; ++p) {
      table.pack_gemm_panel(block_rows + p * nr * hd, hd,
                            static_cast<int>(std::min<int64_t>(nr, n - p * nr)), hd, nr,
                            k_packed + p * nr * hd);
    }
    ReadRowsF32(values, g, k0, n, block_rows);
    for (int64_t c = 0; c < value_panels; ++c) {
      const int64_t d0 = c * nr, cols = std::min<int64_t>(nr, hd - d0);
      float* panel = v_packed + c * n * nr;
      for (int64_t j = 0; j < n; ++j) {
        std::copy_n(block_rows + j * hd + d0, cols, panel + j * nr);
        std::fill(panel + j * nr + cols, panel + (j + 1) * nr, 0.0f);
      }
    }
    for (int64_t tile = 0; tile < tiles; ++tile) {
      const int64_t r0 = tile * mr;
      const int ntile = static_cast<int>(std::min<int64_t>(mr, rows - r0));
      // The block's keys that any row of the tile sees, [k0 + col_lo, k0 + col_hi): the
      // diagonal block of a causal step is about half masked (a 128-token step's last block),
      // a sliding window's oldest block likewise, so only the key panels and the value rows in
      // that range are multiplied. The rows' weights outside their own ranges are zero, so the
      // sums are the same, less products of zero (identical for finite values).
      int64_t tile_lo = INT64_MAX, tile_hi = -1;
      for (int t = 0; t < ntile; ++t) {
        const int64_t i = (r0 + t) / nq;
        const int64_t a = std::max(lo[i], k0), b = std::min(hi[i], k1);
        if (a > b) continue;
        tile_lo = std::min(tile_lo, a);
        tile_hi = std::max(tile_hi, b);
      }
      if (tile_hi < 0) continue;
      const int64_t first_panel = (tile_lo - k0) / nr, end_panel = (tile_hi - k0) / nr + 1;
      const int64_t col_lo = first_panel * nr, col_hi = tile_hi - k0 + 1;
      // scores [ntile, n] (row stride padded_keys) = queries . keys, the live panels.
      for (int64_t p = first_panel; p < end_panel; ++p) {
        table.gemm_f32_packed(q_packed + tile * hd * mr, k_packed + p * nr * hd, hd, ntile,
                              static_cast<int>(std::min<int64_t>(nr, n - p * nr)), scores + p * nr,
                              padded_keys, false);
      }
      // Each row's softmax over its keys in the block, merged into the row's running max m
      // and exp-sum l: the block's weights become exp(score - m_new) (as MergeSplit's
      // piece_weight) and the row's sums so far are rescaled by exp(m_old - m_new) <= 1.
      for (int t = 0; t < ntile; ++t) {
        const int64_t r = r0 + t, i = r / nq;
        float* row = scores + t * padded_keys;
        const int64_t a = std::max(lo[i], k0), b = std::min(hi[i], k1);
        if (a > b) {
          std::fill(row + col_lo, row + col_hi, 0.0f);
          continue;
        }
        float* live = row + (a - k0);
        const int64_t len = b - a + 1;
        const int64_t top = std::max_element(live, live + len) - live;
        const float block_max = live[top];
        table.softmax_f32(live, len);
        const float block_sum = 1.0f / live[top];
        float weight = block_sum;
        if (!sc->started[r]) {
          sc->started[r] = 1;
          sc->max[r] = block_max;
          sc->sum[r] = block_sum;
        } else {
          const float new_max = std::max(sc->max[r], block_max);
          const float old_scale = std::exp(sc->max[r] - new_max);
          weight = block_sum * std::exp(block_max - new_max);
          sc->max[r] = new_max;
          sc->sum[r] = sc->sum[r] * old_scale + weight;
          if (old_scale != 1.0f) {
            float* o = acc + r * hd;
            for (int64_t x = 0; x < hd; ++x) o[x] *= old_scale;
          }
        }
        for (int64_t j = 0; j < len; ++j) live[j] *= weight;
        std::fill(row + col_lo, live, 0.0f);
        std::fill(live + len, row + col_hi, 0.0f);
      }
      // acc[rows of the tile] += weights [ntile, col_lo:col_hi] . values [col_lo:col_hi, hd].
      table.pack_gemm_tokens(scores + col_lo, padded_keys, ntile, col_hi - col_lo, mr, probs);
      const bool accumulate = sc->tile_written[tile] != 0;
      sc->tile_written[tile] = 1;
      for (int64_t c = 0; c < value_panels; ++c) {
        table.gemm_f32_packed(probs, v_packed + c * n * nr + col_lo * nr, col_hi - col_lo, ntile,
                              static_cast<int>(std::min<int64_t>(nr, hd - c * nr)),
                              acc + r0 * hd + c * nr, hd, accumulate);
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    float* dst = out + (r / nq) * ldo_token + (r % nq) * hd;
    if (!sc->started[r]) {
      std::fill(dst, dst + hd, 0.0f);
    } else {
      FinishSplit(hd, sc->sum[r], acc + r * hd, dst);
    }
  }
}

void InferenceState::Attention(int layer, int64_t s, const ops::MakeRow& input, float* out) {
  const kernels::KernelTable& table = kernels::BestTable();
  const LayerConfig& lc = config_.layers[layer];
  const LayerWeights& lw = model_.weights().layers[layer];
  const int64_t hd = lc.head_dim, n_heads = config_.num_heads, n_kv = lc.num_kv_heads;
  const int64_t q_dim = n_heads * hd, kv_dim = n_kv * hd, n_rep = n_heads / n_kv;
  const float eps = config_.rms_norm_eps;
  q_.resize(s * q_dim);
  attn_.resize(s * q_dim);
  // The projections first: q = q_proj(h), and on layers with their own cache k and v.
  {
    PhaseTimer timer(profile_, ForwardProfile::kAttnProjection);
    // h made and quantized once for all of them, in one parallel job (ops::MatMulSharedRows).
    const TensorView* w[3] = {&lw.q_proj, &lw.k_proj, &lw.v_proj};
    float* y[3] = {q_.data(), nullptr, nullptr};
    int n = 1;
    if (!lc.kv_shared) {
      k_.resize(s * kv_dim);
      v_.resize(s * kv_dim);
      y[1] = k_.data();
      y[2] = v_.data();
      n = lc.k_eq_v ? 2 : 3;
    }
    normed_.resize(s * config_.hidden_size);
    ops::MatMulSharedRows(w, y, n, s, input, normed_.data(), pool_);
    if (!lc.kv_shared && lc.k_eq_v) std::copy(k_.begin(), k_.end(), v_.begin());
  }
  PhaseTimer core_timer(profile_, ForwardProfile::kAttnCore);
  // q = RoPE(q_norm(q)) per head.
  // cos/sin of every rotated pair, once per token ([s, pairs] each), shared by all heads.
  const int pairs = lc.rotated_pairs;
  rope_cos_.resize(s * pairs);
  rope_sin_.resize(s * pairs);
  // Token by token on the pool (prefill: 64 tokens x every head; one thread had done it while
  // the other waited); each token's rows and cache slots are its own. One job for q and, on
  // layers with their own cache, k and v (one pool handoff).
  pool_->ParallelFor(s, 4, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      ops::RopeTable(lc.inv_freq.data(), pairs, position_ + t, rope_cos_.data() + t * pairs,
                     rope_sin_.data() + t * pairs);
      for (int64_t h = 0; h < n_heads; ++h) {
        float* q = q_.data() + t * q_dim + h * hd;
        ops::RmsNorm(q, lw.q_norm.data(), hd, eps, q);
        ops::ApplyRopeTable(q, hd, rope_cos_.data() + t * pairs, rope_sin_.data() + t * pairs,
                            pairs);
      }
      if (lc.kv_shared) continue;
      // K = RoPE(k_norm(k)); V = v_norm(v), or of the raw k_proj output on K=V layers.
      // Written straight into this layer's cache.
      for (int64_t g = 0; g < n_kv; ++g) {
        float* kr = k_.data() + t * kv_dim + g * hd;
        float* vr = v_.data() + t * kv_dim + g * hd;
        ops::RmsNorm(kr, lw.k_norm.data(), hd, eps, kr);
        ops::ApplyRopeTable(kr, hd, rope_cos_.data() + t * pairs, rope_sin_.data() + t * pairs,
                            pairs);
        ops::RmsNorm(vr, nullptr, hd, eps, vr);
      }
      const float* kr = k_.data() + t * kv_dim;
      const float* vr = v_.data() + t * kv_dim;
      switch (cache_.type()) {
        case KvType::kF16: {
          table.f32_to_f16(kr, kv_dim, cache_.K<uint16_t>(layer, position_ + t));
          table.f32_to_f16(vr, kv_dim, cache_.V<uint16_t>(layer, position_ + t));
          break;
        }
        case KvType::kQ8_0:
        case KvType::kQ4_0: {
          // Blocks of 32 never straddle heads (head_dim % 32 == 0, checked by Reserve), so
          // the whole row in blocks is each head's row in blocks, one after another.
          const DType block = cache_.type() == KvType::kQ8_0 ? DType::kQ8_0 : DType::kQ4_0;
          quant::QuantizeRow(block, kr, kv_dim, cache_.K<uint8_t>(layer, position_ + t));
          quant::QuantizeRow(block, vr, kv_dim, cache_.V<uint8_t>(layer, position_ + t));
          break;
        }
        case KvType::kF32:
          std::copy_n(kr, kv_dim, cache_.K<float>(layer, position_ + t));
          std::copy_n(vr, kv_dim, cache_.V<float>(layer, position_ + t));
          break;
      }
    }
  });
  // Scores with scale 1.0, causal (and windowed on sliding layers: keys k > q - W), softmax in
  // f32, weighted sum of V. Query head h reads KV head h / n_rep.
  //
  // Steps of kAttentionBlockedMinTokens or more (prefill) take the blocked path
  // (AttendBlocked). Smaller steps (decode, a drafter's verify step): each token's keys are cut at
  // multiples of attention_split_ (absolute positions): each piece gives its heads'
  // softmax-weighted value sum with its own maximum m and exp-sum l, and the pieces merge in order
  // by log-sum-exp rescaling (MergeSplit). The pieces depend only on the query's key range, so any
  // thread count gives the same bits; a range inside one piece is the plain softmax (no merge).
  // Work items are (token block, KV head, block of query heads): each key tile loaded (dequantized,
  // for block-quantized caches) serves every token and head of the item. When a few tokens see many
  // pieces (decode at depth), the pieces themselves are the work items and a second pass merges
  // them, so one sequence uses every thread at any depth. Both paths give each row bits that depend
  // only on its key range; they differ from each other by rounding.
  const int src = lc.kv_source;
  const int64_t window = config_.sliding_window;
  const int64_t base = position_;
  const int64_t split = attention_split_;
  auto key_lo = [&](int64_t t) {
    return lc.sliding ? std::max<int64_t>(0, base + t - window + 1) : int64_t{0};
  };
  auto key_hi = [&](int64_t t) { return lc.sliding ? sliding_key_end_[t] : base + t; };
  int64_t max_pieces = 1;
  for (int64_t t = 0; t < s; ++t) {
    max_pieces = std::max(max_pieces, key_hi(t) / split - key_lo(t) / split + 1);
  }
  const int threads = pool_->num_threads();
  const KeyRows keys{&cache_, src, kv_dim, hd, /*values=*/false};
  const KeyRows values{&cache_, src, kv_dim, hd, /*values=*/true};
  if (s >= kAttentionBlockedMinTokens) {
    // Prefill: blocked products (AttendBlocked), one item per
    // (token block, KV head) with every query head of the group, token blocks as large as
    // the threads allow (each packed key block then serves as many rows as possible).
    const int64_t tokens_per_item =
        std::clamp<int64_t>((s * n_kv + threads - 1) / threads, 1, kAttentionBlockTokens);
    const int64_t token_blocks = (s + tokens_per_item - 1) / tokens_per_item;
    // Last token blocks first: under the causal mask they see the most keys, and threads take
    // chunks in order, so the longest items start first and the short ones fill in at the end.
    const int64_t items = token_blocks * n_kv;
    pool_->ParallelFor(items, 1, [&](int64_t begin, int64_t end) {
      struct BlockedTag;
      BlockedAttentionScratch& sc = ThreadScratch<BlockedAttentionScratch, BlockedTag>();
      std::vector<int64_t> lo, hi;
      for (int64_t index = begin; index < end; ++index) {
        const int64_t item = items - 1 - index;
        const int64_t t0 = item / n_kv * tokens_per_item, g = item % n_kv;
        const int nt = static_cast<int>(std::min(tokens_per_item, s - t0));
        lo.resize(nt);
        hi.resize(nt);
        for (int i = 0; i < nt; ++i) {
          lo[i] = key_lo(t0 + i);
          hi[i] = key_hi(t0 + i);
        }
        AttendBlocked(keys, values, g, q_.data() + t0 * q_dim + g * n_rep * hd, q_dim,
                      static_cast<int>(n_rep), nt, lo.data(), hi.data(),
                      attn_.data() + t0 * q_dim + g * n_rep * hd, q_dim, &sc);
      }
    });
    core_timer.Stop();
    PhaseTimer timer(profile_, ForwardProfile::kAttnProjection);
    ops::MatMul(lw.o_proj, attn_.data(), s, out, pool_);
    return;
  }
  const bool by_piece = max_pieces > 1 && s * n_kv < 2 * threads;
  int64_t heads_per_item = n_rep;
  auto item_count = [&](int64_t hpi) {
    return (by_piece ? s * max_pieces : s) * n_kv * ((n_rep + hpi - 1) / hpi);
  };
  while (heads_per_item > 1 && item_count(heads_per_item) < threads) {
    heads_per_item = (heads_per_item + 1) / 2;
  }
  const int64_t blocks_per_group = (n_rep + heads_per_item - 1) / heads_per_item;
  if (!by_piece) {
    // Token blocks: one item per thread where the tokens allow (each key tile then serves as
    // many tokens as possible: at depth a prefill step is bound by reading the cache), at most
    // kAttentionTokenBlock tokens each.
    const int64_t per_token_items = s * n_kv * blocks_per_group;
    const int64_t tokens_per_item =
        std::clamp<int64_t>((per_token_items + threads - 1) / threads, 1, kAttentionTokenBlock);
    const int64_t token_blocks = (s + tokens_per_item - 1) / tokens_per_item;
    pool_->ParallelFor(token_blocks * n_kv * blocks_per_group, 1, [&](int64_t begin, int64_t end) {
      struct PieceTag;
      AttentionScratch& sc = ThreadScratch<AttentionScratch, PieceTag>();
      for (int64_t item = begin; item < end; ++item) {
        const int64_t tb = item / (n_kv * blocks_per_group);
        const int64_t g = item / blocks_per_group % n_kv;
        const int64_t h0 = g * n_rep + item % blocks_per_group * heads_per_item;
        const int nq = static_cast<int>(std::min(heads_per_item, (g + 1) * n_rep - h0));
        const int64_t t0 = tb * tokens_per_item;
        const int nt = static_cast<int>(std::min(tokens_per_item, s - t0));
        int64_t first = INT64_MAX, last = 0;
        for (int i = 0; i < nt; ++i) {
          first = std::min(first, key_lo(t0 + i) / split);
          last = std::max(last, key_hi(t0 + i) / split);
        }
        sc.merged_max.resize(nt * nq);
        sc.merged_sum.resize(nt * nq);
        sc.merged.resize(nt * nq * hd);
        for (int64_t piece = first; piece <= last; ++piece) {
          sc.lo.resize(nt);
          sc.hi.resize(nt);
          for (int i = 0; i < nt; ++i) {
            sc.lo[i] = std::max(key_lo(t0 + i), piece * split);
            sc.hi[i] = std::min(key_hi(t0 + i), piece * split + split - 1);
          }
          sc.out.resize(nt * nq * hd);
          sc.max.resize(nt * nq);
          sc.sum.resize(nt * nq);
          AttendPiece(keys, values, g, q_.data() + t0 * q_dim + h0 * hd, q_dim, nq, nt,
                      sc.lo.data(), sc.hi.data(), sc.out.data(), sc.max.data(), sc.sum.data(), &sc);
          for (int i = 0; i < nt; ++i) {
            if (sc.lo[i] > sc.hi[i]) continue;
            const int64_t t = t0 + i;
            const bool single = key_lo(t) / split == key_hi(t) / split;
            float* o = attn_.data() + t * q_dim + h0 * hd;
            for (int h = 0; h < nq; ++h) {
              const int64_t r = int64_t{i} * nq + h;
              if (single) {
                std::copy_n(sc.out.data() + r * hd, hd, o + h * hd);
              } else {
                MergeSplit(hd, sc.max[r], sc.sum[r], sc.out.data() + r * hd,
                           piece == key_lo(t) / split, &sc.merged_max[r], &sc.merged_sum[r],
                           sc.merged.data() + r * hd);
                if (piece == key_hi(t) / split) {
                  FinishSplit(hd, sc.merged_sum[r], sc.merged.data() + r * hd, o + h * hd);
                }
              }
            }
          }
        }
      }
    });
  } else {
    // Pass 1: every (token, KV head, head block, piece) alone, into [s, n_heads, pieces]
    // partial sums; pass 2 merges each token's pieces in order.
    split_out_.resize(s * n_heads * max_pieces * hd);
    split_max_.resize(s * n_heads * max_pieces);
    split_sum_.resize(s * n_heads * max_pieces);
    pool_->ParallelFor(
        s * n_kv * blocks_per_group * max_pieces, 1, [&](int64_t begin, int64_t end) {
          struct PieceTag;
          AttentionScratch& sc = ThreadScratch<AttentionScratch, PieceTag>();
          for (int64_t item = begin; item < end; ++item) {
            const int64_t piece_index = item % max_pieces;
            const int64_t rest = item / max_pieces;
            const int64_t t = rest / (n_kv * blocks_per_group);
            const int64_t g = rest / blocks_per_group % n_kv;
            const int64_t h0 = g * n_rep + rest % blocks_per_group * heads_per_item;
            const int nq = static_cast<int>(std::min(heads_per_item, (g + 1) * n_rep - h0));
            const int64_t piece = key_lo(t) / split + piece_index;
            if (piece > key_hi(t) / split) continue;
            const int64_t lo = std::max(key_lo(t), piece * split);
            const int64_t hi = std::min(key_hi(t), piece * split + split - 1);
            float* out = split_out_.data() + ((t * n_heads + h0) * max_pieces) * hd;
            sc.out.resize(nq * hd);
            sc.max.resize(nq);
            sc.sum.resize(nq);
            AttendPiece(keys, values, g, q_.data() + t * q_dim + h0 * hd, q_dim, nq, 1, &lo, &hi,
                        sc.out.data(), sc.max.data(), sc.sum.data(), &sc);
            for (int h = 0; h < nq; ++h) {
              const int64_t r = (t * n_heads + h0 + h) * max_pieces + piece_index;
              std::copy_n(sc.out.data() + h * hd, hd, out + (h * max_pieces + piece_index) * hd);
              split_max_[r] = sc.max[h];
              split_sum_[r] = sc.sum[h];
            }
          }
        });
    pool_->ParallelFor(s * n_heads, 1, [&](int64_t begin, int64_t end) {
      struct MergeTag;
      PageVector<float>& merged = ThreadScratch<PageVector<float>, MergeTag>();
      merged.resize(hd);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t t = row / n_heads;
        const int64_t pieces = key_hi(t) / split - key_lo(t) / split + 1;
        float* o = attn_.data() + row * hd;  // token t, head row % n_heads
        const float* partial = split_out_.data() + row * max_pieces * hd;
        if (pieces == 1) {
          std::copy_n(partial, hd, o);
          continue;
        }
        float merged_max = 0, merged_sum = 0;
        for (int64_t p = 0; p < pieces; ++p) {
          MergeSplit(hd, split_max_[row * max_pieces + p], split_sum_[row * max_pieces + p],
                     partial + p * hd, p == 0, &merged_max, &merged_sum, merged.data());
        }
        FinishSplit(hd, merged_sum, merged.data(), o);
      }
    });
  }
  core_timer.Stop();
  PhaseTimer timer(profile_, ForwardProfile::kAttnProjection);
  ops::MatMul(lw.o_proj, attn_.data(), s, out, pool_);
}

}  // namespace gemma4
