// Resource failures end in a Status, never a signal, a hang or std::terminate: allocations that
// fail (an address-space limit sweeping over loading and generation), a KV ring that cannot be
// allocated. Each case runs in a forked child so that the limit, and a crash, stay there.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "child_process.h"
#include "gemma4/model.h"
#include "gemma4/session.h"
#include "model/config.h"
#include "model/kv_cache.h"

namespace gemma4 {
namespace {

const std::string kFixtures = GEMMA4_FIXTURES_DIR;

TEST(ResourceLimitsTest, SlidingWindowRingThatCannotBeAllocatedIsAnError) {
  if (!testing::kAddressSpaceLimitsWork) GTEST_SKIP() << "address-space limits under a sanitizer";
  // A 1 GiB ring (2^20 positions of 256 f32 values) under a 64 MiB address-space allowance:
  // Reserve, which every forward pass calls first, must say so (it used to return OK and the
  // attention then wrote through a null buffer).
  const testing::ChildResult result = testing::RunInChild([] {
    ModelConfig config;
    config.num_layers = 1;
    config.sliding_window = 1 << 20;
    config.max_position_embeddings = 1 << 20;
    LayerConfig layer;
    layer.sliding = true;
    layer.head_dim = 256;
    layer.num_kv_heads = 1;
    config.layers = {layer};
    if (!testing::LimitAddressSpace(size_t{64} << 20)) return 10;
    KvCache cache(config, /*max_chunk=*/1, KvType::kF32);
    const Status reserved = cache.Reserve(1);
    if (reserved.ok()) return 2;
    std::fprintf(stderr, "%s\n", reserved.message().c_str());
    return reserved.code() == StatusCode::kResourceExhausted ? 0 : 3;
  });
  EXPECT_TRUE(result.exited && result.exit_code == 0) << result.Describe();
}

// Loads the tiny E2B checkpoint with 4 threads and generates 4 tokens; exits 0 on success and 1
// with the message on an error status.
int LoadAndGenerate() {
  ModelOptions options;
  options.threads = 4;
  options.tokenizer_path = kFixtures + "/chat/tiny_tokenizer/tokenizer.json";
  auto model = Model::Load(kFixtures + "/models/tiny-e2b/gemma4", options);
  if (!model.ok()) {
    std::fprintf(stderr, "load: %s\n", model.status().message().c_str());
    return 1;
  }
  if (std::getenv("GEMMA4_SWEEP_KIB")) std::fprintf(stderr, "loaded\n");
  auto session = Session::Create(*model);
  if (!session.ok()) {
    std::fprintf(stderr, "session: %s\n", session.status().message().c_str());
    return 1;
  }
  if (std::getenv("GEMMA4_SWEEP_KIB")) std::fprintf(stderr, "session\n");
  GenerateOptions generate;
  generate.max_tokens = 4;
  auto reply = (*session)->Send("Hello there", generate);
  if (!reply.ok()) {
    std::fprintf(stderr, "send: %s\n", reply.status().message().c_str());
    return 1;
  }
  return 0;
}

TEST(ResourceLimitsTest, AddressSpaceSweepOverLoadingAndGenerationGivesCleanErrorsOnly) {
  if (!testing::kAddressSpaceLimitsWork) GTEST_SKIP() << "address-space limits under a sanitizer";
  // The allowance above what the process already maps grows from nothing to enough; every
  // step must end in success or a clean error, never a signal (SIGSEGV, SIGABRT from
  // std::terminate, SIGALRM from a hang).
  // Steps in KiB: fine where loading runs out, coarser up to where generation fits.
  // GEMMA4_SWEEP_KIB="first,last,step" replaces them (to explore another machine's allocator).
  size_t first = 0, last = 24 << 10, step = 256;
  if (const char* env = std::getenv("GEMMA4_SWEEP_KIB")) {
    std::sscanf(env, "%zu,%zu,%zu", &first, &last, &step);
  }
  int errors = 0, successes = 0;
  for (size_t kib = first; kib <= last; kib += std::max<size_t>(step, 1)) {
    const testing::ChildResult result = testing::RunInChild(
        [kib] {
          if (!testing::LimitAddressSpace(kib << 10)) return 10;
          return LoadAndGenerate();
        },
        /*timeout_seconds=*/60);
    ASSERT_TRUE(result.exited && (result.exit_code == 0 || result.exit_code == 1))
        << "allowance " << kib << " KiB: " << result.Describe();
    (result.exit_code == 0 ? successes : errors)++;
    if (std::getenv("GEMMA4_SWEEP_KIB"))
      std::fprintf(stderr, "%zu KiB: exit %d\n", kib, result.exit_code);
  }
  // The sweep crossed the point where the run fits.
  EXPECT_GT(errors, 0);
  EXPECT_GT(successes, 0);
}

}  // namespace
}  // namespace gemma4
