// Reads the reference data tools/reference/make_fixtures.py recorded with transformers:
// tests/fixtures/models/<variant>/reference.json and its raw float32 logit files.
#ifndef GEMMA4_TESTS_REFERENCE_FIXTURE_H_
#define GEMMA4_TESTS_REFERENCE_FIXTURE_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "base/json.h"
#include "formats/mapped_file.h"

namespace gemma4::testing {

inline const char* const kVariants[] = {"tiny-e2b", "tiny-e4b", "tiny-26b-a4b", "tiny-31b"};
inline const char* const kLayouts[] = {"gemma4", "gemma4_text"};

struct ReferencePrompt {
  std::vector<int32_t> ids;
  std::string logits_file;
  std::vector<float> logits;  // [ids, vocab], transformers float32 eager
  std::vector<int32_t> greedy;
};

struct ReferenceFixture {
  int vocab = 0;
  std::vector<ReferencePrompt> prompts;
};

inline std::string ModelDir(const std::string& variant) {
  return std::string(GEMMA4_FIXTURES_DIR) + "/models/" + variant;
}

inline std::vector<int32_t> IntArray(const json::Value& v) {
  std::vector<int32_t> out;
  int64_t x = 0;
  for (const json::Value& e : v.as_array()) {
    e.GetInt64(&x);
    out.push_back(static_cast<int32_t>(x));
  }
  return out;
}

// Failures are reported through gtest; a broken fixture yields an empty result.
inline ReferenceFixture LoadReferenceFixture(const std::string& variant) {
  ReferenceFixture f;
  const std::string dir = ModelDir(variant);
  auto text = ReadFileToString(dir + "/reference.json");
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  if (!text.ok()) return f;
  auto root = json::Parse(*text, dir + "/reference.json");
  EXPECT_TRUE(root.ok()) << root.status().ToString();
  if (!root.ok()) return f;
  int64_t vocab = 0;
  root->Find("vocab_size")->GetInt64(&vocab);
  f.vocab = static_cast<int>(vocab);
  for (const json::Value& p : root->Find("prompts")->as_array()) {
    ReferencePrompt prompt;
    prompt.ids = IntArray(*p.Find("ids"));
    prompt.greedy = IntArray(*p.Find("greedy"));
    prompt.logits_file = dir + "/" + p.Find("logits")->as_string();
    prompt.logits.resize(prompt.ids.size() * f.vocab);
    std::ifstream in(prompt.logits_file, std::ios::binary);
    in.read(reinterpret_cast<char*>(prompt.logits.data()),
            static_cast<std::streamsize>(prompt.logits.size() * sizeof(float)));
    EXPECT_TRUE(in.good()) << "cannot read " << prompt.logits_file;
    f.prompts.push_back(std::move(prompt));
  }
  return f;
}

}  // namespace gemma4::testing

#endif  // GEMMA4_TESTS_REFERENCE_FIXTURE_H_
