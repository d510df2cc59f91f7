// libFuzzer target: Session::Restore on saved-state blobs for the tiny E2B fixture. A blob
// carries a checksum and the model's fingerprint, which random bytes never match, so the input
// is the payload between them (the JSON length, the JSON, the KV cache, the logits): the target
// frames it with this model's magic + fingerprint and a valid checksum, so the parser behind
// the checksum is what gets fuzzed. An input starting with "RAW" is restored as given instead
// (the checksum path). A restored session must save again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "base/hash.h"
#include "gemma4/model.h"
#include "gemma4/session.h"

#ifndef GEMMA4_FIXTURES_DIR
#error "GEMMA4_FIXTURES_DIR must name tests/fixtures"
#endif

namespace {

struct Fixture {
  std::shared_ptr<const gemma4::Model> model;
  std::string prefix;  // magic + fingerprint of a state saved by this model
};

// The fixtures of the checkout this was built from; GEMMA4_FIXTURES_DIR in the environment
// overrides it for a binary run elsewhere (a fuzzing campaign on another machine).
std::string FixturesDir() {
  const char* dir = std::getenv("GEMMA4_FIXTURES_DIR");
  return dir != nullptr && *dir != 0 ? dir : GEMMA4_FIXTURES_DIR;
}

const Fixture& GetFixture() {
  static const Fixture fixture = [] {
    Fixture f;
    gemma4::ModelOptions options;
    options.threads = 1;
    const std::string fixtures = FixturesDir();
    options.tokenizer_path = fixtures + "/chat/tiny_tokenizer/tokenizer.json";
    auto model = gemma4::Model::Load(fixtures + "/models/tiny-e2b/gemma4", options);
    if (!model.ok()) __builtin_trap();
    f.model = *model;
    auto session = gemma4::Session::Create(f.model);
    if (!session.ok()) __builtin_trap();
    auto saved = (*session)->SaveState();
    if (!saved.ok() || saved->size() < 16) __builtin_trap();
    f.prefix = saved->substr(0, 16);
    return f;
  }();
  return fixture;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Fixture& fixture = GetFixture();
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string blob;
  if (input.substr(0, 3) == "RAW") {
    blob = std::string(input.substr(3));
  } else {
    blob = fixture.prefix + std::string(input);
    const uint64_t checksum = gemma4::Hash64(blob);
    for (int i = 0; i < 8; ++i) blob.push_back(static_cast<char>((checksum >> (8 * i)) & 0xFF));
  }
  auto restored = gemma4::Session::Restore(fixture.model, blob);
  if (!restored.ok()) {
    if (restored.status().message().empty()) __builtin_trap();
    return 0;
  }
  auto saved = (*restored)->SaveState();
  if (!saved.ok()) __builtin_trap();
  return 0;
}
