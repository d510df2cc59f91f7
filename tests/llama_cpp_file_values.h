// Shared by the tests of the ggml types gemma4 reads from llama.cpp's files (q5_0_test,
// q5_1_test, q5_k_test): every matrix the forward pass reads, as it reads it (weights() after
// conversion and repacking, dequantized row by row with ops::ToF32), against ggml's formula for
// the type applied to the file's own bytes; and the forward pass's logits against llama.cpp's.
#ifndef GEMMA4_TESTS_LLAMA_CPP_FILE_VALUES_H_
#define GEMMA4_TESTS_LLAMA_CPP_FILE_VALUES_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "formats/gguf.h"
#include "model/forward.h"
#include "model/model.h"
#include "ops/ops.h"

namespace gemma4::testing {

inline std::string LlamaCppFixture(const std::string& name) {
  return std::string(GEMMA4_FIXTURES_DIR) + "/llama_cpp_gguf/" + name;
}

// ggml's dequantization of `numel` values of one type from a tensor's file bytes.
using GgmlFormula = std::function<std::vector<float>(const uint8_t* data, int64_t numel)>;

// Loads the GGUF at `path` and compares every matrix the forward pass reads (the token
// embedding and each layer's attention, MLP, expert and per-layer-input matrices) whose file
// type has a formula in `formulas` value for value with it. Returns how many matrices of each
// type were compared (a test states the counts its file holds, so none can be skipped quietly).
inline std::map<DType, int> ExpectForwardPassReadsFileValues(
    const std::string& path, const std::map<DType, GgmlFormula>& formulas) {
  std::map<DType, int> checked;
  auto file = gguf::File::Open(path);
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  auto model = LoadedModel::Load(path);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!file.ok() || !model.ok()) return checked;
  std::map<std::string, const TensorView*> raw;
  for (const TensorView& t : (*file)->tensors()) raw[t.name] = &t;
  const ModelWeights& w = (*model)->weights();
  std::vector<std::pair<const TensorView*, std::string>> pairs = {{&w.embed, "token_embd.weight"}};
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& lw = w.layers[l];
    const std::string blk = "blk." + std::to_string(l) + ".";
    const std::pair<const TensorView*, const char*> names[] = {
        {&lw.q_proj, "attn_q.weight"},
        {&lw.k_proj, "attn_k.weight"},
        {&lw.v_proj, "attn_v.weight"},
        {&lw.o_proj, "attn_output.weight"},
        {&lw.gate_proj, "ffn_gate.weight"},
        {&lw.up_proj, "ffn_up.weight"},
        {&lw.down_proj, "ffn_down.weight"},
        {&lw.experts_gate_up, "ffn_gate_up_exps.weight"},
        {&lw.experts_down, "ffn_down_exps.weight"},
        {&lw.ple_gate, "inp_gate.weight"},
        {&lw.ple_projection, "proj.weight"}};
    for (const auto& [view, name] : names) pairs.emplace_back(view, blk + name);
  }
  for (const auto& [view, name] : pairs) {
    auto it = raw.find(name);
    if (it == raw.end() || view->data == nullptr) continue;
    const TensorView& stored = *it->second;
    auto formula = formulas.find(stored.dtype);
    if (formula == formulas.end()) continue;
    EXPECT_EQ(stored.numel(), view->numel()) << name;
    if (stored.numel() != view->numel()) continue;
    const std::vector<float> want = formula->second(stored.data, stored.numel());
    std::vector<float> got(view->numel());
    const int64_t cols = view->cols();
    for (int64_t r = 0; r < view->rows(); ++r) {  // a row at a time (interleaved layouts)
      ops::ToF32(*view, r * cols, cols, got.data() + r * cols);
    }
    int64_t first_wrong = -1;
    for (int64_t i = 0; i < view->numel() && first_wrong < 0; ++i) {
      if (got[i] != want[i]) first_wrong = i;
    }
    EXPECT_EQ(first_wrong, -1) << name << " (" << DTypeName(stored.dtype) << "): value "
                               << first_wrong << " is "
                               << (first_wrong >= 0 ? got[first_wrong] : 0.0f) << ", ggml's "
                               << (first_wrong >= 0 ? want[first_wrong] : 0.0f);
    ++checked[stored.dtype];
  }
  return checked;
}

// The forward pass over `ids` on the GGUF at `path` against llama.cpp's logits of every
// position (a committed [ids, vocab] f32 file): each row within `bound` and the same argmax.
// With `llama_exact_logits` (llama.cpp's logits on the same weights dequantized to f32), a row's
// bound grows by how far llama.cpp's own quantized run is from that one there: where rounding
// the activations flips an MoE router choice in llama.cpp, its row moves by units however exact
// gemma4 is (|gemma4 - llama| <= |gemma4 - exact| + |exact_llama - llama| + the 0.01 the two
// float paths differ by); the median row must still be within `bound`.
// The KV cache is f32 (the `logits` command's default), so only the weights' formats and the
// activations' rounding separate the two: with an f16 cache, one row of the IQ4_NL MoE file
// moved by 2.2 (a router choice flipped), the others by the same 0.2-0.5.
inline std::vector<float> ReadLogitsFile(const std::string& path, size_t count) {
  std::vector<float> values(count);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  EXPECT_NE(f, nullptr) << path;
  if (f == nullptr) return {};
  const size_t read = std::fread(values.data(), 4, values.size(), f);
  std::fclose(f);
  EXPECT_EQ(read, values.size()) << path;
  return values;
}

inline void ExpectLogitsNearLlamaCpp(const std::string& path, const std::vector<int32_t>& ids,
                                     const std::string& llama_logits, float bound,
                                     const std::string& llama_exact_logits = "") {
  auto model = LoadedModel::Load(path);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  InferenceState state(**model, nullptr, DefaultMaxChunk(), KvType::kF32);
  std::vector<float> logits;
  ASSERT_TRUE(state.Forward(ids.data(), ids.size(), LogitsMode::kAll, &logits).ok());
  const int64_t vocab = (*model)->config().vocab_size;
  const std::vector<float> want = ReadLogitsFile(llama_logits, ids.size() * vocab);
  ASSERT_EQ(logits.size(), want.size());
  const std::vector<float> exact = llama_exact_logits.empty()
                                       ? std::vector<float>()
                                       : ReadLogitsFile(llama_exact_logits, ids.size() * vocab);
  ASSERT_TRUE(llama_exact_logits.empty() || exact.size() == want.size());
  std::vector<float> row_worst;
  for (size_t t = 0; t < ids.size(); ++t) {
    const float* got_row = logits.data() + t * vocab;
    const float* want_row = want.data() + t * vocab;
    float worst = 0, llama_excursion = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      worst = std::max(worst, std::fabs(got_row[v] - want_row[v]));
      if (!exact.empty()) {
        llama_excursion = std::max(llama_excursion, std::fabs(want_row[v] - exact[t * vocab + v]));
      }
    }
    row_worst.push_back(worst);
    EXPECT_LT(worst, bound + llama_excursion)
        << "row " << t
        << " (llama.cpp's own distance from its exact-weights run: " << llama_excursion << ")";
    EXPECT_EQ(std::max_element(got_row, got_row + vocab) - got_row,
              std::max_element(want_row, want_row + vocab) - want_row)
        << "row " << t;
  }
  // The allowance above is for the rows a flip moves; the typical row must still be within the
  // plain bound.
  std::nth_element(row_worst.begin(), row_worst.begin() + row_worst.size() / 2, row_worst.end());
  EXPECT_LT(row_worst[row_worst.size() / 2], bound) << "median row";
}

}  // namespace gemma4::testing

#endif  // GEMMA4_TESTS_LLAMA_CPP_FILE_VALUES_H_
