#include "model/attention.h"

#include <algorithm>
#include <cmath>

#include "base/half.h"
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

void InferenceState::Attention(int layer, int64_t s, const float* normed, float* out) {
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
    ops::MatMul(lw.q_proj, normed, s, q_.data(), pool_);
    if (!lc.kv_shared) {
      k_.resize(s * kv_dim);
      v_.resize(s * kv_dim);
      ops::MatMul(lw.k_proj, normed, s, k_.data(), pool_);
      if (lc.k_eq_v) {
        std::copy(k_.begin(), k_.end(), v_.begin());
      } else {
        ops::MatMul(lw.v_proj, normed, s, v_.data(), pool_);
      }
    }
  }
  PhaseTimer core_timer(profile_, ForwardProfile::kAttnCore);
  // q = RoPE(q_norm(q)) per head.
  // cos/sin of every rotated pair, once per token ([s, pairs] each), shared by all heads.
  const int pairs = lc.rotated_pairs;
  rope_cos_.resize(s * pairs);
  rope_sin_.resize(s * pairs);
  for (int64_t t = 0; t < s; ++t) {
    ops::RopeTable(lc.inv_freq.data(), pairs, position_ + t, rope_cos_.data() + t * pairs,
                   rope_sin_.data() + t * pairs);
  }
  for (int64_t t = 0; t < s; ++t) {
    for (int64_t h = 0; h < n_heads; ++h) {
      float* q = q_.data() + t * q_dim + h * hd;
      ops::RmsNorm(q, lw.q_norm.data(), hd, eps, q);
      ops::ApplyRopeTable(q, hd, rope_cos_.data() + t * pairs, rope_sin_.data() + t * pairs, pairs);
    }
  }
  if (!lc.kv_shared) {
    // K = RoPE(k_norm(k)); V = v_norm(v), or of the raw k_proj output on K=V layers.
    // Written straight into this layer's cache.
    for (int64_t t = 0; t < s; ++t) {
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
          uint16_t* kc = cache_.K<uint16_t>(layer, position_ + t);
          uint16_t* vc = cache_.V<uint16_t>(layer, position_ + t);
          for (int64_t j = 0; j < kv_dim; ++j) {
            kc[j] = half::F32ToF16(kr[j]);
            vc[j] = half::F32ToF16(vr[j]);
          }
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
  }
  // Scores with scale 1.0, causal (and windowed on sliding layers: keys k > q - W), softmax in
  // f32, weighted sum of V. Query head h reads KV head h / n_rep.
  //
  // A query's keys are cut at multiples of attention_split_ (absolute positions): each piece
  // gives its heads' softmax-weighted value sum with its own maximum m and exp-sum l, and the
  // pieces merge in order by log-sum-exp rescaling (MergeSplit). The pieces depend only on the
  // query's key range, so prefill and decode, and any thread count, give the same bits; a range
  // inside one piece is the plain softmax (no merge). Work items are (token block, KV head,
  // block of query heads): each key tile loaded (dequantized, for block-quantized caches)
  // serves every token and head of the item. When a few tokens see many pieces (decode at
  // depth), the pieces themselves are the work items and a second pass merges them, so one
  // sequence uses every thread at any depth.
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
  const bool by_piece = max_pieces > 1 && s * n_kv < 2 * threads;
  int64_t heads_per_item = n_rep;
  auto item_count = [&](int64_t hpi) {
    return (by_piece ? s * max_pieces : s) * n_kv * ((n_rep + hpi - 1) / hpi);
  };
  while (heads_per_item > 1 && item_count(heads_per_item) < threads) {
    heads_per_item = (heads_per_item + 1) / 2;
  }
  const int64_t blocks_per_group = (n_rep + heads_per_item - 1) / heads_per_item;
  const KeyRows keys{&cache_, src, kv_dim, hd, /*values=*/false};
  const KeyRows values{&cache_, src, kv_dim, hd, /*values=*/true};
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
      std::vector<float>& merged = ThreadScratch<std::vector<float>, MergeTag>();
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
