// The tiny random-weight checkpoints under tests/fixtures/models, loaded the way the session
// tests share: the tiny chat tokenizer (the checkpoints carry none) and 2 threads unless a test
// passes options of its own.
#ifndef GEMMA4_TESTS_TINY_MODELS_H_
#define GEMMA4_TESTS_TINY_MODELS_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "gemma4/model.h"

namespace gemma4::testing {

inline std::string FixturePath(const std::string& relative) {
  return std::string(GEMMA4_FIXTURES_DIR) + "/" + relative;
}

inline ModelOptions TinyModelOptions(int threads = 2) {
  ModelOptions options;
  options.threads = threads;
  options.tokenizer_path = FixturePath("chat/tiny_tokenizer/tokenizer.json");
  return options;
}

// Loads the checkpoint directory `dir`; on an error the test fails with its message and the
// result is null.
inline std::shared_ptr<const Model> LoadTinyModelAt(
    const std::string& dir, const ModelOptions& options = TinyModelOptions()) {
  auto model = Model::Load(dir, options);
  EXPECT_TRUE(model.ok()) << dir << ": " << model.status().message();
  return model.ok() ? *model : nullptr;
}

// tests/fixtures/models/NAME/gemma4 (NAME: tiny-e2b, tiny-e4b, tiny-26b-a4b, tiny-31b).
inline std::shared_ptr<const Model> LoadTiny(const std::string& name) {
  return LoadTinyModelAt(FixturePath("models/" + name + "/gemma4"));
}

// The tiny E2B model, loaded once per test program and shared by its tests.
inline const std::shared_ptr<const Model>& TinyE2b() {
  static const std::shared_ptr<const Model> model = LoadTiny("tiny-e2b");
  return model;
}

}  // namespace gemma4::testing

#endif  // GEMMA4_TESTS_TINY_MODELS_H_
