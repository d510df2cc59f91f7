// The mixture-of-experts feed-forward block (26B-A4B): the router's top-k experts per token,
// their gated GELU MLPs as grouped matmuls, summed with the router's weights. An InferenceState
// member.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>
#include <vector>

#include "model/forward.h"
#include "ops/ops.h"

namespace gemma4 {

void InferenceState::Moe(const LayerWeights& lw, int64_t s, const float* residual, float* out) {
  const int64_t H = config_.hidden_size, E = config_.num_experts, K = config_.top_k_experts;
  const int64_t Ie = config_.moe_width;
  const float eps = config_.rms_norm_eps;
  // Router on the residual stream: norm without weight, * scale * f32(H^-0.5), softmax over all
  // experts, top-k, renormalise, * per_expert_scale.
  // Scratch kept between calls (a fresh mapping each call would fault its pages in again).
  PageVector<float>& z = moe_z_;
  PageVector<float>& router_logits = moe_router_logits_;
  z.resize(s * H);
  router_logits.resize(s * E);
  const float root = static_cast<float>(std::pow(static_cast<double>(H), -0.5));
  for (int64_t t = 0; t < s; ++t) {
    float* zt = z.data() + t * H;
    ops::RmsNorm(residual + t * H, nullptr, H, eps, zt);
    for (int64_t j = 0; j < H; ++j) zt[j] = (zt[j] * lw.router_scale[j]) * root;
  }
  ops::MatMul(lw.router_proj, z.data(), s, router_logits.data(), pool_);
  std::vector<std::vector<std::pair<int64_t, float>>> routed(E);  // expert -> (token, weight)
  std::vector<int64_t> order(E);
  for (int64_t t = 0; t < s; ++t) {
    float* p = router_logits.data() + t * E;
    ops::Softmax(p, E);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + K, order.end(),
                      [&](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    float sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += p[order[k]];
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = order[k];
      routed[e].emplace_back(t, (p[e] / sum) * lw.per_expert_scale[e]);
    }
  }
  // Experts on pre_feedforward_layernorm_2(residual). Each (expert, token) pair gets a row,
  // pairs in increasing expert index (the order transformers accumulates in) and each expert's
  // tokens together, so every expert's rows are read once per tile of its tokens; all experts'
  // products then run as one grouped matmul per projection (one handoff to the pool, not one
  // per expert: a decode step's 8 experts are small matrices).
  PageVector<float>& xin = moe_xin_;
  xin.resize(s * H);
  for (int64_t t = 0; t < s; ++t) {
    ops::RmsNorm(residual + t * H, lw.pre_ffn_norm_2.data(), H, eps, xin.data() + t * H);
  }
  std::vector<ops::MatMulGroup> gate_up_groups, gate_groups, down_groups;
  int64_t pairs = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = static_cast<int64_t>(routed[e].size());
    if (n == 0) continue;
    gate_up_groups.push_back({e * 2 * Ie, pairs, n});
    gate_groups.push_back({e * Ie, pairs, n});
    down_groups.push_back({e * H, pairs, n});
    pairs += n;
  }
  PageVector<float>& xe = moe_xe_;
  PageVector<float>& act = moe_act_;
  xe.resize(pairs * H);
  act.resize(pairs * Ie);
  for (int64_t e = 0, row = 0; e < E; ++e) {
    for (const auto& [token, weight] : routed[e]) {
      std::copy_n(xin.data() + token * H, H, xe.data() + row++ * H);
    }
  }
  const int64_t n_groups = static_cast<int64_t>(down_groups.size());
  if (lw.experts_gate_up.data != nullptr) {
    // gu [pairs, 2 * Ie]: each row the gate's Ie values, then up's.
    PageVector<float>& gu = moe_gate_up_;
    gu.resize(pairs * 2 * Ie);
    ops::MatMulGrouped(lw.experts_gate_up, 2 * Ie, gate_up_groups.data(), n_groups, xe.data(),
                       gu.data(), pool_);
    for (int64_t r = 0; r < pairs; ++r) {
      ops::GeluMul(gu.data() + r * 2 * Ie, gu.data() + r * 2 * Ie + Ie, act.data() + r * Ie, Ie);
    }
  } else {
    // Gate and up stored apart: g and u [pairs, Ie].
    moe_gate_up_.resize(pairs * 2 * Ie);
    float* const g = moe_gate_up_.data();
    float* const u = g + pairs * Ie;
    ops::MatMulGrouped(lw.experts_gate, Ie, gate_groups.data(), n_groups, xe.data(), g, pool_);
    ops::MatMulGrouped(lw.experts_up, Ie, gate_groups.data(), n_groups, xe.data(), u, pool_);
    for (int64_t r = 0; r < pairs; ++r) {
      ops::GeluMul(g + r * Ie, u + r * Ie, act.data() + r * Ie, Ie);
    }
  }
  PageVector<float>& y = xe;  // [pairs, H]: the inputs are no longer needed
  ops::MatMulGrouped(lw.experts_down, H, down_groups.data(), n_groups, act.data(), y.data(), pool_);
  std::fill(out, out + s * H, 0.0f);
  for (int64_t e = 0, row = 0; e < E; ++e) {
    for (const auto& [token, weight] : routed[e]) {
      float* o = out + token * H;
      const float* yr = y.data() + row++ * H;
      for (int64_t j = 0; j < H; ++j) o[j] += yr[j] * weight;
    }
  }
  for (int64_t t = 0; t < s; ++t) {
    ops::RmsNorm(out + t * H, lw.post_ffn_norm_2.data(), H, eps, out + t * H);
  }
}

}  // namespace gemma4
