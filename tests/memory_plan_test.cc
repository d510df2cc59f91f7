// The memory plan (Model::PlanMemory) against what loading and running really hold: the KV
// cache and weight placement exactly, and the measured peak resident set of a child process
// within 3% at several contexts; the memory cap (ModelOptions::memory_limit_bytes) refusing a
// model or a session up front.
#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>

#include "api/memory_plan.h"
#include "api/model_impl.h"
#include "api/session_impl.h"
#include "base/json.h"
#include "child_process.h"
#include "formats/gguf.h"
#include "gemma4/model.h"
#include "gemma4/session.h"
#include "kernels/kernels.h"
#include "model/forward.h"
#include "model/gguf_export.h"
#include "sanitizers.h"
#include "synthetic_config.h"

namespace gemma4 {
namespace {

const std::string kTinyModel = std::string(GEMMA4_FIXTURES_DIR) + "/models/tiny-e2b/gemma4";
const std::string kTinyTokenizer = std::string(GEMMA4_FIXTURES_DIR) + "/chat/tiny_tokenizer";

// An E2B-wide Q8_0 model of two layers (one sliding, one global) with half the released
// vocabulary (131072 ids) and a placeholder tokenizer: about 300 MB resident, so that the
// allocator's and the code's own pages are well under 1% of the plan. Its weights are a cheap
// deterministic pattern (the plan does not depend on values; random weights took minutes to
// write here).
class SyntheticModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (testing::kSanitizedBuild) return;
    testing::SyntheticE2b shape;  // E2B's widths, two layers
    shape.vocab_size = 131072;
    shape.hidden_size = 1536;
    shape.intermediate_size = 6144;
    shape.num_attention_heads = 8;
    shape.num_global_key_value_heads = 1;
    shape.head_dim = 256;
    shape.global_head_dim = 512;
    shape.sliding_window = 512;
    shape.hidden_size_per_layer_input = 256;
    shape.vocab_size_per_layer_input = 131072;
    shape.num_kv_shared_layers = 0;
    shape.max_position_embeddings = 131072;
    shape.layer_types = {"sliding_attention", "full_attention"};
    auto config = testing::SyntheticConfig(shape, "memory plan test");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    path_ = new std::string(::testing::TempDir() + "/gemma4_memory_plan_" +
                            std::to_string(::getpid()) + ".gguf");
    std::vector<ExportTensor> tensors = SyntheticTensors(*config, 3);
    for (ExportTensor& t : tensors) {
      if (t.shape.size() < 2) continue;  // norms and scales as synthesized (near 1)
      const float scale = 1.0f / std::sqrt(static_cast<float>(t.shape.back()));
      const int64_t cols = t.shape.back();
      t.row = [scale, cols](int64_t row, float* out) {
        for (int64_t j = 0; j < cols; ++j) {
          out[j] = scale * static_cast<float>((row * 131 + j * 29) % 255 - 127) / 127.0f;
        }
      };
    }
    gguf::Writer writer;
    SetGgufPlaceholderTokenizer(*config, &writer);
    ThreadPool pool(2);
    const Status written =
        WriteGgufModel(*config, tensors, *ParseRecipe("q8_0"), &writer, *path_, &pool);
    ASSERT_TRUE(written.ok()) << written.ToString();
  }
  static void TearDownTestSuite() {
    if (path_ != nullptr) std::remove(path_->c_str());
    delete path_;
    path_ = nullptr;
  }
  static std::string* path_;
};
std::string* SyntheticModel::path_ = nullptr;

// Peak resident bytes a child adds by loading the model and running `tokens` positions and
// four generated tokens as a conversation holds them (both rewind points set), measured as VmHWM at
// the end minus VmRSS before loading.
uint64_t MeasuredPeak(const std::string& path, const ModelOptions& options, int64_t tokens) {
  int fds[2];
  if (pipe(fds) != 0) return 0;
  const testing::ChildResult child = testing::RunInChild(
      [&]() -> int {
        close(fds[0]);
        // The parent's freed heap (writing the model) is resident in this copy of it: returned
        // first, so that the child's allocations are counted from an empty heap, as in a fresh
        // process.
        malloc_trim(0);
        const uint64_t before = testing::ProcStatusBytes("VmRSS:");
        auto model = Model::Load(path, options);
        if (!model.ok()) return 2;
        const ModelImpl& impl = ModelAccess::Impl(**model);
        InferenceState state(*impl.loaded, impl.pool.get(), DefaultMaxChunk(), impl.kv_type);
        std::vector<int32_t> ids(tokens);
        for (int64_t i = 0; i < tokens; ++i)
          ids[i] = static_cast<int32_t>(1000 + (i * 7919) % 100000);
        std::vector<float> logits;
        if (!state.SetRewindPoint(0).ok()) return 3;
        if (!state.Forward(ids.data(), tokens, LogitsMode::kLast, &logits).ok()) return 4;
        if (!state.SetRewindPoint(1).ok()) return 5;
        // A few generated tokens: decode splits attention across threads by key piece.
        for (int32_t id : {17, 33, 40, 5}) {
          if (!state.Forward(&id, 1, LogitsMode::kLast, &logits).ok()) return 7;
        }
        const uint64_t peak = testing::ProcStatusBytes("VmHWM:") - before;
        return write(fds[1], &peak, sizeof(peak)) == sizeof(peak) ? 0 : 6;
      },
      300);
  close(fds[1]);
  uint64_t peak = 0;
  if (!child.exited || child.exit_code != 0 || read(fds[0], &peak, sizeof(peak)) != sizeof(peak)) {
    ADD_FAILURE() << "child: " << child.Describe();
  }
  close(fds[0]);
  return peak;
}

TEST_F(SyntheticModel, PeakResidentSetWithinThreePercentOfThePlan) {
  if (testing::kSanitizedBuild)
    GTEST_SKIP() << "sanitizer shadow memory is part of the resident set";
  ModelOptions options;
  options.threads = 2;
  options.kv_cache_type = KvCacheType::kF32;
  double previous_total = 0;
  for (const int64_t tokens : {64, 768, 1536}) {
    auto plan = Model::PlanMemory(*path_, options, tokens);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    const uint64_t measured = MeasuredPeak(*path_, options, tokens);
    const double error = (static_cast<double>(measured) - static_cast<double>(plan->total)) /
                         static_cast<double>(plan->total);
    std::printf("context %lld: plan %.2f MiB (kv full %.2f MiB), measured peak %.2f MiB, %+.2f%%\n",
                static_cast<long long>(tokens), plan->total / 1048576.0, plan->kv_full / 1048576.0,
                measured / 1048576.0, 100 * error);
    EXPECT_LT(std::fabs(error), 0.03) << "context " << tokens << ":\n" << DescribeMemoryPlan(*plan);
    // The plan grows with the context by the global layer's rows.
    EXPECT_GT(static_cast<double>(plan->total), previous_total);
    previous_total = static_cast<double>(plan->total);
  }
}

// The plan's items against the loaded model's own sizes: the same numbers, not estimates.
TEST(MemoryPlan, KvCacheAndWeightsMatchTheLoadedModel) {
  ModelOptions options;
  options.threads = 1;
  options.tokenizer_path = kTinyTokenizer;
  for (const KvCacheType type :
       {KvCacheType::kF32, KvCacheType::kF16, KvCacheType::kQ8_0, KvCacheType::kQ4_0}) {
    options.kv_cache_type = type;
    auto model = Model::Load(kTinyModel, options);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    const ModelImpl& impl = ModelAccess::Impl(**model);
    InferenceState state(*impl.loaded, impl.pool.get(), DefaultMaxChunk(), impl.kv_type);
    const std::vector<int32_t> ids = {2, 17, 33, 40, 5, 9, 81, 7, 11, 13,
                                      2, 3,  4,  5,  6, 7, 8,  9, 10};
    ASSERT_TRUE(
        state.Forward(ids.data(), static_cast<int64_t>(ids.size()), LogitsMode::kLast, nullptr)
            .ok());
    auto plan = Model::PlanMemory(kTinyModel, options, static_cast<int64_t>(ids.size()));
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    EXPECT_EQ(plan->kv_cache_type, (*model)->info().kv_cache_type);
    EXPECT_EQ(plan->kv_full + plan->kv_sliding, state.kv_cache().bytes());
    // Both rewind points at the last position: copies of the rings' rows up to it.
    ASSERT_TRUE(state.SetRewindPoint(0).ok());
    ASSERT_TRUE(state.SetRewindPoint(1).ok());
    EXPECT_EQ(plan->kv_rewind, state.rewind_bytes());
    EXPECT_LT(plan->kv_rewind, 2 * plan->kv_sliding);  // 19 positions: the rings not yet full
    // The loaded model's own plan agrees with the one from the headers.
    auto loaded_plan = (*model)->PlanMemory(static_cast<int64_t>(ids.size()));
    ASSERT_TRUE(loaded_plan.ok());
    EXPECT_EQ(loaded_plan->total, plan->total);
    // A float checkpoint: every matrix read in place, nothing repacked.
    EXPECT_EQ(plan->weights_repacked, 0u);
    uint64_t matrices = 0, vectors = 0, ple = 0;
    for (const auto& [name, t] : impl.loaded->tensors()) {
      if (t.shape.size() < 2) {
        vectors += static_cast<uint64_t>(t.numel()) * sizeof(float);
      } else if (name == "embed_tokens_per_layer.weight") {
        ple += t.nbytes;
      } else {
        matrices += t.nbytes;
      }
    }
    EXPECT_EQ(plan->weights_mapped, matrices);
    EXPECT_EQ(plan->weights_converted, vectors);
    EXPECT_EQ(plan->ple_table, ple);
  }
}

// Prefill's bf16-tile path (AMX) splits the activations of BF16 matrices only: the plan sizes
// those buffers by the widest BF16 matrix (and per-layer-input matrix) of the checkpoint, none
// for F32 and F16 ones (whose buffers were planned at the widest matrix before).
TEST(MemoryPlan, Bf16WidthsComeFromTheBf16MatricesOnly) {
  const std::string fixtures = std::string(GEMMA4_FIXTURES_DIR) + "/models/";
  for (const char* dir : {"tiny-e2b/gemma4", "tiny-e4b/gemma4_text", "tiny-31b/gemma4_text"}) {
    SCOPED_TRACE(dir);
    auto weights = LoadedModel::PlanWeights(fixtures + dir);
    ASSERT_TRUE(weights.ok()) << weights.status().ToString();
    auto model = LoadedModel::Load(fixtures + dir);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    int64_t widest = 0, widest_ple = 0;
    std::set<DType> types;
    for (const auto& [name, t] : (*model)->tensors()) {
      if (t.shape.size() < 2 || name == "embed_tokens_per_layer.weight") continue;
      types.insert(t.dtype);
      if (t.dtype != DType::kBF16) continue;
      widest = std::max(widest, t.shape.back());
      if (name.ends_with("per_layer_input_gate.weight") ||
          name.ends_with("per_layer_projection.weight")) {
        widest_ple = std::max(widest_ple, t.shape.back());
      }
    }
    EXPECT_EQ(weights->bf16_k, widest);
    EXPECT_EQ(weights->bf16_ple_k, widest_ple);
    // The fixtures hold one type each: BF16 (tiny-e2b, with per-layer inputs), F16 (tiny-e4b),
    // F32 (tiny-31b).
    ASSERT_EQ(types.size(), 1u);
    if (*types.begin() == DType::kBF16) {
      EXPECT_GT(weights->bf16_k, 0);
      EXPECT_GT(weights->bf16_ple_k, 0);
    } else {
      EXPECT_EQ(weights->bf16_k, 0);
      EXPECT_EQ(weights->bf16_ple_k, 0);
    }
  }
}

TEST(MemoryPlan, KvGrowsWithTheContextOnGlobalLayersOnly) {
  ModelOptions options;
  options.tokenizer_path = kTinyTokenizer;
  options.kv_cache_type = KvCacheType::kF32;
  auto a = Model::PlanMemory(kTinyModel, options, 100);
  auto b = Model::PlanMemory(kTinyModel, options, 200);
  options.kv_cache_type = KvCacheType::kF16;
  auto h = Model::PlanMemory(kTinyModel, options, 200);
  ASSERT_TRUE(a.ok() && b.ok() && h.ok());
  EXPECT_EQ(b->kv_full, 2 * a->kv_full);
  EXPECT_EQ(b->kv_sliding, a->kv_sliding);
  EXPECT_EQ(h->kv_full * 2, b->kv_full);
  EXPECT_EQ(h->kv_sliding * 2, b->kv_sliding);
  EXPECT_EQ(a->weights_mapped, b->weights_mapped);
}

// Each thread of a vision encode keeps its attention scratch between calls: the scores of one
// query tile (the float GEMM's panel width, nr queries) against every patch, [2520, nr] floats
// at the plan's 280-token image, beside the tile's query panel and output. So every thread
// more adds at least 2520 x nr floats (the plan had counted 2520).
TEST(MemoryPlan, VisionScratchGrowsPerThreadByTheAttentionScores) {
  const std::string vision = std::string(GEMMA4_FIXTURES_DIR) + "/vision/tiny-e2b-vision";
  ModelOptions options;
  options.tokenizer_path = kTinyTokenizer;
  options.threads = 1;
  options.max_image_tokens = 280;
  auto one = Model::PlanMemory(vision, options, 64);
  options.threads = 3;
  auto three = Model::PlanMemory(vision, options, 64);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  ASSERT_TRUE(three.ok()) << three.status().ToString();
  ASSERT_GT(one->encoder_activations, 0u);
  const uint64_t scores = 2520 * static_cast<uint64_t>(kernels::BestTable().gemm_f32_nr) * 4;
  EXPECT_GE(three->encoder_activations - one->encoder_activations, 2 * scores);
}

// The vision activations are planned for the largest image sessions accept
// (ModelOptions::max_image_tokens, 1120 unless set): at 1120 soft tokens, 10080 patches, the
// caller's patches alone ([patches, 3 x 16 x 16] floats) are 7560 x 768 floats more than at 280.
TEST(MemoryPlan, VisionActivationsAreSizedForTheLargestImageBudget) {
  const std::string vision = std::string(GEMMA4_FIXTURES_DIR) + "/vision/tiny-e2b-vision";
  ModelOptions options;
  options.tokenizer_path = kTinyTokenizer;
  options.threads = 1;
  auto largest = Model::PlanMemory(vision, options, 64);
  options.max_image_tokens = 1120;
  auto explicit_largest = Model::PlanMemory(vision, options, 64);
  options.max_image_tokens = 280;
  auto small = Model::PlanMemory(vision, options, 64);
  ASSERT_TRUE(largest.ok() && explicit_largest.ok() && small.ok());
  EXPECT_EQ(largest->max_image_tokens, 1120);
  EXPECT_EQ(small->max_image_tokens, 280);
  EXPECT_EQ(largest->encoder_activations, explicit_largest->encoder_activations);
  EXPECT_GE(largest->encoder_activations - small->encoder_activations,
            uint64_t{10080 - 2520} * 768 * 4);
  EXPECT_EQ(largest->total - small->total,
            largest->encoder_activations - small->encoder_activations);
  options.max_image_tokens = 100;
  auto invalid = Model::PlanMemory(vision, options, 64);
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.status().code(), StatusCode::kInvalidArgument);
}

// The plan of `context` tokens with 128-token forward steps, the smallest a capped session
// falls back to (ModelOptions::memory_limit_bytes).
MemoryPlan SmallStepPlan(const std::string& path, const ModelOptions& options, int64_t context) {
  auto inputs = GatherPlanInputs(path, options);
  EXPECT_TRUE(inputs.ok()) << inputs.status().ToString();
  if (!inputs.ok()) return MemoryPlan{};
  inputs->max_chunk = kSmallestDefaultMaxChunk;
  return ComputeMemoryPlan(*inputs, context);
}

TEST(MemoryPlan, MemoryLimitRefusesUpFront) {
  ModelOptions options;
  options.threads = 1;
  options.tokenizer_path = kTinyTokenizer;
  auto small = Model::PlanMemory(kTinyModel, options, 1);
  // 4096 tokens with the smallest steps: a cap below it refuses the session whatever its steps.
  const MemoryPlan large = SmallStepPlan(kTinyModel, options, 4096);
  ASSERT_TRUE(small.ok());
  ASSERT_GT(large.total, small->total);
  // Room for the weights alone, below any plan (with 128-token steps too): the load is
  // refused, naming what and the cap.
  options.memory_limit_bytes =
      small->weights_repacked + small->weights_mapped + small->weights_converted;
  auto refused = Model::Load(kTinyModel, options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("memory_limit_bytes"), std::string::npos)
      << refused.status().message();
  EXPECT_NE(refused.status().message().find("no context fits"), std::string::npos)
      << refused.status().message();
  // Between: the model loads, a session of 4096 tokens does not, one of 64 does.
  options.memory_limit_bytes = (small->total + large.total) / 2;
  auto model = Model::Load(kTinyModel, options);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  SessionOptions session_options;
  session_options.max_context = 4096;
  auto too_long = Session::Create(*model, session_options);
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(too_long.status().message().find("largest context that fits is"), std::string::npos)
      << too_long.status().message();
  session_options.max_context = 64;
  auto fits = Session::Create(*model, session_options);
  EXPECT_TRUE(fits.ok()) << fits.status().ToString();
  // No cap: the same long session is created.
  options.memory_limit_bytes = 0;
  auto uncapped = Model::Load(kTinyModel, options);
  ASSERT_TRUE(uncapped.ok());
  session_options.max_context = 4096;
  EXPECT_TRUE(Session::Create(*uncapped, session_options).ok());
}

// Where the default forward steps are larger than the smallest (512 tokens on AMX CPUs), a cap
// that only 128-token steps fit makes sessions take those instead of refusing them, and the
// plans say so.
TEST(MemoryPlan, MemoryLimitTakesSmallerStepsWhereOnlyThoseFit) {
  if (DefaultMaxChunk() <= kSmallestDefaultMaxChunk) {
    GTEST_SKIP() << "the default step is already the smallest on this CPU";
  }
  ModelOptions options;
  options.threads = 1;
  options.tokenizer_path = kTinyTokenizer;
  auto inputs = GatherPlanInputs(kTinyModel, options);
  ASSERT_TRUE(inputs.ok()) << inputs.status().ToString();
  const int64_t context = 2048;
  const MemoryPlan large = ComputeMemoryPlan(*inputs, context);
  PlanInputs smaller = *inputs;
  smaller.max_chunk = kSmallestDefaultMaxChunk;
  const MemoryPlan small = ComputeMemoryPlan(smaller, context);
  ASSERT_EQ(large.step_tokens, DefaultMaxChunk());
  ASSERT_EQ(small.step_tokens, kSmallestDefaultMaxChunk);
  ASSERT_LT(small.total, large.total);
  const uint64_t between = (small.total + large.total) / 2;
  EXPECT_EQ(WithStepWithin(*inputs, context, between).max_chunk, kSmallestDefaultMaxChunk);
  EXPECT_EQ(WithStepWithin(*inputs, context, large.total).max_chunk, DefaultMaxChunk());
  EXPECT_EQ(WithStepWithin(*inputs, context, 0).max_chunk, DefaultMaxChunk());
  EXPECT_EQ(WithStepWithin(*inputs, context, small.total - 1).max_chunk,
            DefaultMaxChunk());  // refused

  options.memory_limit_bytes = between;
  auto planned = Model::PlanMemory(kTinyModel, options, context);
  ASSERT_TRUE(planned.ok()) << planned.status().ToString();
  EXPECT_EQ(planned->step_tokens, kSmallestDefaultMaxChunk);
  EXPECT_EQ(planned->total, small.total);
  auto model = Model::Load(kTinyModel, options);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto loaded_plan = (*model)->PlanMemory(context);
  ASSERT_TRUE(loaded_plan.ok());
  EXPECT_EQ(loaded_plan->step_tokens, kSmallestDefaultMaxChunk);
  SessionOptions session_options;
  session_options.max_context = context;
  auto session = Session::Create(*model, session_options);
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  // The session's context took the smaller steps.
  EXPECT_EQ(SessionAccess::Context(**session).max_chunk(), kSmallestDefaultMaxChunk);
}

}  // namespace
}  // namespace gemma4
