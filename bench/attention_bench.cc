// Prefill attention at depth, one thread: the blocked path (AttendBlocked: all query rows of
// an item x blocks of keys through the float GEMM micro-kernel) against the split path
// (AttendPiece over pieces of kAttentionSplit keys, merged as decode does), on E2B's global
// layer shape (8 query heads on one KV head of 512 values) by default.
//   attention_bench [depth=32768] [tokens=16] [kv=f16] [head_dim=512] [heads=8] [reps=3]
// Prints GFLOP/s (4 * tokens * heads * head_dim * keys per call) per CPU second.

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "base/json.h"
#include "bench_timing.h"
#include "model/attention.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "quant/quant.h"

int main(int argc, char** argv) {
  using namespace gemma4;
  const int64_t depth = argc > 1 ? std::atoll(argv[1]) : 32768;
  const int nt = argc > 2 ? std::atoi(argv[2]) : 16;
  const std::string kv = argc > 3 ? argv[3] : "f16";
  const int hd = argc > 4 ? std::atoi(argv[4]) : 512;
  const int heads = argc > 5 ? std::atoi(argv[5]) : 8;
  const int reps = argc > 6 ? std::atoi(argv[6]) : 3;
  const std::optional<KvType> type = ParseKvType(kv);
  if (!type || depth < 1 || nt < 1 || hd < 32 || hd % 32 != 0 || heads < 1 || reps < 1) {
    std::fprintf(stderr,
                 "usage: attention_bench [depth] [tokens] [f32|f16|q8_0|q4_0] [head_dim] "
                 "[heads] [reps]\n");
    return 2;
  }
  // One global layer with its own cache (a second, sliding one: the parser wants both kinds).
  const std::string config_json =
      "{\"model_type\": \"gemma4_text\", \"vocab_size\": 512, \"hidden_size\": 256, "
      "\"intermediate_size\": 256, \"num_hidden_layers\": 2, \"num_attention_heads\": " +
      std::to_string(heads) + ", \"num_key_value_heads\": 1, \"head_dim\": 256, " +
      "\"global_head_dim\": " + std::to_string(hd) +
      ", \"sliding_window\": 512, \"max_position_embeddings\": " + std::to_string(depth + nt + 16) +
      ", \"layer_types\": [\"sliding_attention\", \"full_attention\"]}";
  auto root = json::Parse(config_json, "bench");
  if (!root.ok()) return 1;
  auto config = ParseModelConfig(*root, "bench");
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
  const int layer = 1;
  const int64_t n_keys = depth + nt;
  KvCache cache(*config, 16, *type);
  if (!cache.Reserve(n_keys).ok()) return 1;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> row(hd);
  for (int64_t p = 0; p < n_keys; ++p) {
    for (int which = 0; which < 2; ++which) {
      for (float& x : row) x = dist(rng) * 0.1f;
      switch (*type) {
        case KvType::kF32:
          std::copy(row.begin(), row.end(),
                    which ? cache.V<float>(layer, p) : cache.K<float>(layer, p));
          break;
        case KvType::kF16: {
          uint16_t* dst = which ? cache.V<uint16_t>(layer, p) : cache.K<uint16_t>(layer, p);
          for (int j = 0; j < hd; ++j) dst[j] = half::F32ToF16(row[j]);
          break;
        }
        default:
          quant::QuantizeRow(*type == KvType::kQ8_0 ? DType::kQ8_0 : DType::kQ4_0, row.data(), hd,
                             which ? cache.V<uint8_t>(layer, p) : cache.K<uint8_t>(layer, p));
      }
    }
  }
  std::vector<float> q(int64_t{nt} * heads * hd), out(q.size());
  for (float& x : q) x = dist(rng);
  std::vector<int64_t> lo(nt, 0), hi(nt);
  for (int i = 0; i < nt; ++i) hi[i] = depth + i;
  const KeyRows keys{&cache, layer, hd, hd, false}, values{&cache, layer, hd, hd, true};
  const double flop = 4.0 * heads * hd * static_cast<double>(nt * depth + nt * (nt + 1) / 2);

  auto time_best = [&](auto fn) { return bench::BestCpuSeconds(reps, fn); };
  BlockedAttentionScratch blocked_scratch;
  const double blocked = time_best([&] {
    AttendBlocked(keys, values, 0, q.data(), int64_t{heads} * hd, heads, nt, lo.data(), hi.data(),
                  out.data(), int64_t{heads} * hd, &blocked_scratch);
  });
  // The split path as InferenceState ran it before: every piece of kAttentionSplit keys for
  // all tokens and heads, merged per row.
  AttentionScratch sc;
  std::vector<float> merged(out.size()), merged_max(nt * heads), merged_sum(nt * heads);
  const double split = time_best([&] {
    const int64_t last_piece = (depth + nt - 1) / kAttentionSplit;
    std::vector<int64_t> plo(nt), phi(nt);
    std::vector<float> pout(out.size()), pmax(nt * heads), psum(nt * heads);
    for (int64_t piece = 0; piece <= last_piece; ++piece) {
      for (int i = 0; i < nt; ++i) {
        plo[i] = piece * kAttentionSplit;
        phi[i] = std::min(hi[i], piece * kAttentionSplit + kAttentionSplit - 1);
      }
      AttendPiece(keys, values, 0, q.data(), int64_t{heads} * hd, heads, nt, plo.data(), phi.data(),
                  pout.data(), pmax.data(), psum.data(), &sc);
      for (int64_t r = 0; r < int64_t{nt} * heads; ++r) {
        MergeSplit(hd, pmax[r], psum[r], pout.data() + r * hd, piece == 0, &merged_max[r],
                   &merged_sum[r], merged.data() + r * hd);
      }
    }
  });
  std::printf(
      "depth %lld, %d tokens x %d heads, head_dim %d, %s cache, 1 thread: blocked %.1f "
      "GFLOP/s per CPU second (%.1f ms), split %.1f (%.1f ms), %.2fx\n",
      static_cast<long long>(depth), nt, heads, hd, kv.c_str(), flop / blocked * 1e-9,
      blocked * 1e3, flop / split * 1e-9, split * 1e3, split / blocked);
  return 0;
}
