// Reading the multimodal reference fixtures recorded with transformers 5.17
// (tests/fixtures/{vision,audio}, made by tools/reference/make_{vision,audio}_fixtures.py):
// their reference.json, raw little-endian f32 arrays, and the comparisons the tests share.
#ifndef GEMMA4_TESTS_MEDIA_REFERENCE_H_
#define GEMMA4_TESTS_MEDIA_REFERENCE_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "base/json.h"
#include "formats/mapped_file.h"
#include "gemma4/model.h"
#include "gemma4/session.h"
#include "model/forward.h"
#include "tiny_models.h"

namespace gemma4::testing {

// A reference.json, parsed; failures are reported through gtest and give a null value.
inline json::Value ReadJsonFixture(const std::string& path) {
  auto text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  auto parsed = json::Parse(text.ok() ? *text : "{}", path);
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  return parsed.ok() ? std::move(parsed).value() : json::Value();
}

inline int64_t Int(const json::Value& v) {
  int64_t x = -1;
  EXPECT_TRUE(v.GetInt64(&x));
  return x;
}

inline std::vector<int32_t> Ints(const json::Value& v) {
  std::vector<int32_t> out;
  for (const json::Value& e : v.as_array()) out.push_back(static_cast<int32_t>(Int(e)));
  return out;
}

inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::vector<float> ReadF32(const std::string& path) {
  const std::string b = ReadBytes(path);
  std::vector<float> v(b.size() / sizeof(float));
  std::memcpy(v.data(), b.data(), v.size() * sizeof(float));
  return v;
}

inline float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    m = std::max(m, std::fabs(a[i] - b[i]));
  }
  return m;
}

// Greedy continuation of `steps` tokens from a state whose last forward produced `logits`
// (all positions or the last; the last vocab_size values are used).
inline std::vector<int32_t> GreedyContinuation(InferenceState* state,
                                               const std::vector<float>& logits, int64_t vocab,
                                               size_t steps) {
  std::vector<float> last(logits.end() - vocab, logits.end());
  std::vector<int32_t> out;
  for (size_t step = 0; step < steps; ++step) {
    const int32_t best =
        static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    out.push_back(best);
    Status s = state->Forward(&best, 1, LogitsMode::kLast, &last);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) break;
  }
  return out;
}

// A chat model from a path (checkpoint directory or GGUF) with the tiny media tokenizer
// (tests/fixtures/vision/tokenizer: media tokens at 500-506) and 2 threads; null on failure,
// reported through gtest.
inline std::shared_ptr<const Model> LoadMediaChatModel(const std::string& path) {
  ModelOptions options = TinyModelOptions();
  options.tokenizer_path = FixturePath("vision/tokenizer/tokenizer.json");
  return LoadTinyModelAt(path, options);
}

// Greedy decoding of up to `max_tokens`, repetition guard off (tiny models repeat).
inline GenerateOptions GreedyOptions(int max_tokens) {
  GenerateOptions g;
  g.max_tokens = max_tokens;
  SamplerOptions s;
  s.temperature = 0;
  g.sampler = s;
  g.stop_on_repetition = false;
  return g;
}

}  // namespace gemma4::testing

#endif  // GEMMA4_TESTS_MEDIA_REFERENCE_H_
