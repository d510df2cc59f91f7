// Speculative decoding cost on real shapes: one decode step of the target against the verify
// forward of k = 1..8 drafts ([pending, d_1 .. d_k]: k + 1 positions, all logits) and one
// drafter step, at a given context depth; then the speedup these costs imply at acceptance
// rates 0.5, 0.7 and 0.9. Random weights give no real acceptance rate, so those speedups are
// PROJECTIONS from measured costs, never measured speedups.
//
//   speculative_bench --model TARGET.gguf [--draft DRAFTER | --synth-draft OUT.gguf]
//                     [--threads N] [--depth D] [--reps R] [--only K]
//
// --only K times the verify forward of K drafts alone, R times (for a profiler: perf record).
//
// Without --draft a random-weight drafter with the E2B assistant's shapes (hidden 256, 4
// layers: 3 sliding + 1 full, 4 heads, intermediate 2048, centroid head of 2048 clusters, top
// 32) and the target's KV geometry is written to --synth-draft (default
// /tmp/speculative_bench_draft.gguf) and loaded.
//
// Projection: with each draft accepted independently with probability a, a round of k drafts
// yields E = (1 - a^(k+1)) / (1 - a) tokens and costs k * t_draft + t_verify(k); plain decoding
// costs t_decode a token. speedup = E * t_decode / (k * t_draft + t_verify(k)).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench_timing.h"
#include "formats/gguf.h"
#include "model/drafter.h"
#include "model/forward.h"
#include "model/model.h"
#include "quant/quant.h"
#include "runtime/thread_pool.h"

namespace gemma4 {
namespace {

using bench::Median;
using bench::Now;

// A random drafter with the E2B assistant's shapes for `target` (BF16 weights).
Status WriteSyntheticDrafter(const ModelConfig& target, const std::string& path) {
  using gguf::Value;
  using gguf::ValueType;
  const std::string a = "gemma4-assistant.";
  const int D = 256, L = 4, heads = 4, ffn = 2048, C = 2048, top = 32;
  const int V = target.vocab_size, B = target.hidden_size;
  const LayerConfig* swa = nullptr;
  const LayerConfig* full = nullptr;
  for (int i = 0; i < target.first_kv_shared_layer(); ++i) {
    (target.layers[i].sliding ? swa : full) = &target.layers[i];
  }
  if (swa == nullptr || full == nullptr) {
    return InvalidArgumentError("the target needs sliding and full attention layers");
  }
  auto u32 = [](int64_t v) { return Value::Int(ValueType::kUint32, v); };
  gguf::Writer w;
  w.Set("general.architecture", Value::String("gemma4-assistant"));
  w.Set(a + "block_count", u32(L));
  w.Set(a + "context_length", u32(131072));
  w.Set(a + "embedding_length", u32(D));
  w.Set(a + "feed_forward_length", u32(ffn));
  w.Set(a + "attention.head_count", u32(heads));
  std::vector<Value> kv, pattern;
  for (int i = 0; i < L; ++i) {
    const bool sliding = i < L - 1;
    kv.push_back(Value::Int(ValueType::kInt32, sliding ? swa->num_kv_heads : full->num_kv_heads));
    pattern.push_back(Value::Bool(sliding));
  }
  w.Set(a + "attention.head_count_kv", Value::Array(ValueType::kInt32, kv));
  w.Set(a + "attention.sliding_window_pattern", Value::Array(ValueType::kBool, pattern));
  w.Set(a + "attention.layer_norm_rms_epsilon", Value::Float32(target.rms_norm_eps));
  w.Set(a + "attention.key_length", u32(full->head_dim));
  w.Set(a + "attention.value_length", u32(full->head_dim));
  w.Set(a + "attention.key_length_swa", u32(swa->head_dim));
  w.Set(a + "attention.value_length_swa", u32(swa->head_dim));
  w.Set(a + "attention.sliding_window", u32(target.sliding_window));
  w.Set(a + "attention.shared_kv_layers", u32(L));
  w.Set(a + "rope.freq_base", Value::Float32(full->rope_theta));
  w.Set(a + "rope.freq_base_swa", Value::Float32(swa->rope_theta));
  w.Set(a + "embedding_length_out", u32(B));
  w.Set(a + "nextn_predict_layers", u32(L));
  w.Set(a + "centroid_top_k", u32(top));
  w.AddTensor("token_embd.weight", DType::kBF16, {V, D});
  w.AddTensor("output_norm.weight", DType::kF32, {D});
  w.AddTensor("nextn.pre_projection.weight", DType::kBF16, {D, 2 * B});
  w.AddTensor("nextn.post_projection.weight", DType::kBF16, {B, D});
  w.AddTensor("rope_freqs.weight", DType::kF32, {full->head_dim / 2});
  w.AddTensor("masked_embd_centroids.weight", DType::kBF16, {C, D});
  w.AddTensor("masked_embd_ordering", DType::kI32, {V});
  for (int i = 0; i < L; ++i) {
    const int hd = i < L - 1 ? swa->head_dim : full->head_dim;
    const std::string p = "blk." + std::to_string(i) + ".";
    for (const char* n : {"attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"}) {
      w.AddTensor(p + n + ".weight", DType::kF32, {D});
    }
    w.AddTensor(p + "attn_q_norm.weight", DType::kF32, {hd});
    w.AddTensor(p + "attn_q.weight", DType::kBF16, {int64_t{heads} * hd, D});
    w.AddTensor(p + "attn_output.weight", DType::kBF16, {D, int64_t{heads} * hd});
    w.AddTensor(p + "ffn_gate.weight", DType::kBF16, {ffn, D});
    w.AddTensor(p + "ffn_up.weight", DType::kBF16, {ffn, D});
    w.AddTensor(p + "ffn_down.weight", DType::kBF16, {D, ffn});
    w.AddTensor(p + "layer_output_scale.weight", DType::kF32, {1});
  }
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  struct Spec {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
  };
  // Reproduces the AddTensor order to know each tensor's name and shape.
  std::vector<Spec> specs;
  specs.push_back({"token_embd.weight", DType::kBF16, {V, D}});
  specs.push_back({"output_norm.weight", DType::kF32, {D}});
  specs.push_back({"pre", DType::kBF16, {D, 2 * B}});
  specs.push_back({"post", DType::kBF16, {B, D}});
  specs.push_back({"rope_freqs.weight", DType::kF32, {full->head_dim / 2}});
  specs.push_back({"centroids", DType::kBF16, {C, D}});
  specs.push_back({"masked_embd_ordering", DType::kI32, {V}});
  for (int i = 0; i < L; ++i) {
    const int hd = i < L - 1 ? swa->head_dim : full->head_dim;
    for (int n = 0; n < 4; ++n) specs.push_back({"norm", DType::kF32, {D}});
    specs.push_back({"norm", DType::kF32, {hd}});
    specs.push_back({"m", DType::kBF16, {int64_t{heads} * hd, D}});
    specs.push_back({"m", DType::kBF16, {D, int64_t{heads} * hd}});
    specs.push_back({"m", DType::kBF16, {ffn, D}});
    specs.push_back({"m", DType::kBF16, {ffn, D}});
    specs.push_back({"m", DType::kBF16, {D, ffn}});
    specs.push_back({"scale", DType::kF32, {1}});
  }
  return w.Write(path, [&](size_t index, std::vector<uint8_t>* bytes) -> Status {
    const Spec& s = specs[index];
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    if (s.type == DType::kI32) {
      std::vector<int32_t> ids(n);
      for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(i);
      std::shuffle(ids.begin(), ids.end(), rng);
      bytes->resize(n * 4);
      std::memcpy(bytes->data(), ids.data(), n * 4);
    } else if (s.type == DType::kF32) {
      std::vector<float> v(n, 1.0f);
      if (s.name == "rope_freqs.weight") {
        for (int64_t i = 0; i < n; ++i) v[i] = i < full->rotated_pairs ? 1.0f : 1e30f;
      }
      bytes->resize(n * 4);
      std::memcpy(bytes->data(), v.data(), n * 4);
    } else {
      const float scale =
          s.name == "token_embd.weight" ? 1.0f : 1.0f / std::sqrt(float(s.shape.back()));
      bytes->resize(n * 2);
      for (int64_t i = 0; i < n; ++i) {
        float f = normal(rng) * scale;
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        const uint16_t h = static_cast<uint16_t>(bits >> 16);
        std::memcpy(bytes->data() + 2 * i, &h, 2);
      }
    }
    return OkStatus();
  });
}

int Run(int argc, char** argv) {
  std::string model_path, draft_path, synth_path = "/tmp/speculative_bench_draft.gguf";
  int threads = 2, depth = 512, reps = 7, only = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--model")
      model_path = value();
    else if (arg == "--draft")
      draft_path = value();
    else if (arg == "--synth-draft")
      synth_path = value();
    else if (arg == "--threads")
      threads = std::atoi(value().c_str());
    else if (arg == "--depth")
      depth = std::atoi(value().c_str());
    else if (arg == "--reps")
      reps = std::atoi(value().c_str());
    else if (arg == "--only")
      only = std::atoi(value().c_str());
    else {
      std::fprintf(stderr,
                   "usage: speculative_bench --model TARGET.gguf [--draft PATH | --synth-draft "
                   "OUT.gguf] [--threads N] [--depth D] [--reps R] [--only K]\n");
      return 2;
    }
  }
  constexpr int kMaxK = 8;
  if (model_path.empty() || threads < 1 || depth < 1 || reps < 1 || only < 0 || only > kMaxK) {
    std::fprintf(stderr,
                 "speculative_bench: --model is required; counts must be positive, --only K at "
                 "most %d\n",
                 kMaxK);
    return 2;
  }
  ThreadPool pool(threads);
  auto target = LoadedModel::Load(model_path, nullptr, &pool);
  if (!target.ok()) {
    std::fprintf(stderr, "%s\n", target.status().ToString().c_str());
    return 1;
  }
  const ModelConfig& c = (*target)->config();
  InferenceState state(**target, &pool);
  std::vector<int32_t> prompt(depth);
  std::mt19937 rng(1);
  for (int32_t& id : prompt) id = 3 + static_cast<int32_t>(rng() % (c.vocab_size - 3));
  std::vector<float> logits, hidden;
  if (!state.Forward(prompt.data(), depth, LogitsMode::kLast, &logits).ok()) return 1;
  std::vector<int32_t> batch(kMaxK + 1);
  for (int32_t& id : batch) id = 3 + static_cast<int32_t>(rng() % (c.vocab_size - 3));
  // Each measurement runs n positions at the depth, then rolls them back.
  auto time_forward = [&](int n, LogitsMode mode) {
    std::vector<double> t;
    for (int r = 0; r < reps + 1; ++r) {
      const double t0 = Now();
      if (!state.Forward(batch.data(), n, mode, &logits).ok()) std::abort();
      const double dt = Now() - t0;
      if (!state.Truncate(depth).ok()) std::abort();
      if (r > 0) t.push_back(dt);  // the first run warms caches
    }
    return Median(t);
  };
  if (only > 0) {
    std::printf("verify of %d drafts at depth %d, %d threads: %.2f ms (median of %d)\n", only,
                depth, threads, time_forward(only + 1, LogitsMode::kAll) * 1e3, reps);
    return 0;
  }
  // The drafter only now: --only times the target alone.
  if (draft_path.empty()) {
    const Status s = WriteSyntheticDrafter(c, synth_path);
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
    draft_path = synth_path;
  }
  auto drafter = Drafter::Load(draft_path);
  if (!drafter.ok()) {
    std::fprintf(stderr, "%s\n", drafter.status().ToString().c_str());
    return 1;
  }
  if (Status s = (*drafter)->CheckCompatible(c); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  const double t_decode = time_forward(1, LogitsMode::kLast);
  std::vector<double> t_verify(kMaxK + 1);
  for (int k = 1; k <= kMaxK; ++k) t_verify[k] = time_forward(k + 1, LogitsMode::kAll);
  std::vector<double> td;
  std::vector<float> h(c.hidden_size, 0.1f);
  for (int r = 0; r < reps + 1; ++r) {
    const double t0 = Now();
    if (!(*drafter)->Step(**target, state, batch[0], depth, &h, &logits, &pool).ok()) return 1;
    if (r > 0) td.push_back(Now() - t0);
  }
  const double t_draft = Median(td);
  std::printf("target %s (%s), drafter %s; %d threads, depth %d, KV %s, median of %d\n",
              model_path.c_str(), c.variant.c_str(), draft_path.c_str(), threads, depth,
              KvTypeName(state.kv_type()), reps);
  std::printf("decode step (1 token): %.2f ms; drafter step: %.3f ms\n", t_decode * 1e3,
              t_draft * 1e3);
  std::printf("%3s %14s %16s %22s %22s %22s\n", "k", "verify (ms)", "verify/decode",
              "projected @ a=0.5", "projected @ a=0.7", "projected @ a=0.9");
  for (int k = 1; k <= kMaxK; ++k) {
    std::printf("%3d %14.2f %16.2f", k, t_verify[k] * 1e3, t_verify[k] / t_decode);
    for (double a : {0.5, 0.7, 0.9}) {
      const double tokens = (1 - std::pow(a, k + 1)) / (1 - a);
      const double speedup = tokens * t_decode / (k * t_draft + t_verify[k]);
      std::printf(" %21.2fx", speedup);
    }
    std::printf("\n");
  }
  std::printf(
      "PROJECTED speedups: random weights give no real acceptance rate; the columns apply the\n"
      "measured costs to an assumed per-draft acceptance a (tokens per round (1-a^(k+1))/(1-a),\n"
      "round cost k * drafter step + verify(k)).\n");
  return 0;
}

}  // namespace
}  // namespace gemma4

int main(int argc, char** argv) { return gemma4::Run(argc, argv); }
