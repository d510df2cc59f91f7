// Prefill speed of a prompt holding an image against the same length of text: the image's soft
// tokens enter the language model as embedding rows (no embedding lookup, the pad id's
// per-layer input) and, on models with bidirectional_vision (26B-A4B, 31B), as one
// bidirectional block on the sliding layers. The goal (issue 15) is that an image's positions
// prefill at the model's normal prefill speed. Encoder time is not included
// (bench/compare_mtmd.py).
//
//   media_prefill_bench --model PATH [--threads N] [--tokens T] [--image-tokens I] [--reps R]
//
// Prints tokens/s of T text tokens and of T positions with an I-position image block
// ("<|image>" + I x "<|image|>" + "<image|>") in the middle, both as median of R runs from an
// empty cache, and their ratio.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench_timing.h"
#include "model/forward.h"
#include "model/model.h"
#include "prompt/media_batch.h"
#include "runtime/thread_pool.h"

namespace gemma4 {
namespace {

using bench::Median;
using bench::Now;

int Run(int argc, char** argv) {
  std::string model_path;
  int threads = 2, tokens = 512, image_tokens = 280, reps = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--model") {
      model_path = value();
    } else if (arg == "--threads") {
      threads = std::atoi(value().c_str());
    } else if (arg == "--tokens") {
      tokens = std::atoi(value().c_str());
    } else if (arg == "--image-tokens") {
      image_tokens = std::atoi(value().c_str());
    } else if (arg == "--reps") {
      reps = std::atoi(value().c_str());
    } else {
      std::fprintf(stderr,
                   "usage: media_prefill_bench --model PATH [--threads N] [--tokens T] "
                   "[--image-tokens I] [--reps R]\n");
      return 2;
    }
  }
  if (model_path.empty() || threads < 1 || reps < 1 || image_tokens < 1 ||
      tokens < image_tokens + 4) {
    std::fprintf(stderr,
                 "media_prefill_bench: --model is required; counts must be positive and "
                 "--tokens at least --image-tokens + 4\n");
    return 2;
  }
  ThreadPool pool(threads);
  auto model = LoadedModel::Load(model_path, nullptr, &pool);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  const ModelConfig& c = (*model)->config();
  if (c.image_token_id < 0 || c.boi_token_id < 0 || c.eoi_token_id < 0) {
    std::fprintf(stderr, "media_prefill_bench: %s has no image token ids\n", model_path.c_str());
    return 1;
  }
  std::mt19937 rng(7);
  auto random_id = [&] {
    return 3 + static_cast<int32_t>(rng() % (std::min(c.vocab_size, 200000) - 3));
  };
  std::vector<int32_t> text(tokens);
  for (int32_t& id : text) id = random_id();
  // The same length with an image in the middle: BOI, I placeholders, EOI.
  std::vector<int32_t> with_image = text;
  const int start = (tokens - image_tokens - 2) / 2;
  with_image[start] = c.boi_token_id;
  for (int k = 0; k < image_tokens; ++k) with_image[start + 1 + k] = c.image_token_id;
  with_image[start + 1 + image_tokens] = c.eoi_token_id;
  EncodedMedia image;
  image.kind = MediaKind::kImage;
  image.rows = image_tokens;
  image.embeddings.resize(static_cast<size_t>(image_tokens) * c.hidden_size);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : image.embeddings) v = normal(rng);
  auto batch = MediaBatch::Build(c, with_image, {image});
  if (!batch.ok()) {
    std::fprintf(stderr, "%s\n", batch.status().ToString().c_str());
    return 1;
  }
  const int64_t max_chunk = std::max<int64_t>(DefaultMaxChunk(), batch->longest_block());
  std::vector<float> logits;
  auto time_prefill = [&](const ForwardInput& input) {
    std::vector<double> t;
    for (int r = 0; r < reps + 1; ++r) {
      InferenceState state(**model, &pool, max_chunk);
      const double t0 = Now();
      if (!state.Forward(input, LogitsMode::kLast, &logits).ok()) std::abort();
      if (r > 0) t.push_back(Now() - t0);  // the first run warms caches
    }
    return Median(t);
  };
  ForwardInput text_input;
  text_input.ids = text.data();
  text_input.n = tokens;
  const double t_text = time_prefill(text_input);
  const double t_image = time_prefill(batch->input());
  std::printf("model %s (%s, bidirectional image blocks: %s), %d threads, median of %d\n",
              model_path.c_str(), c.variant.c_str(), c.bidirectional_vision ? "yes" : "no", threads,
              reps);
  std::printf("text  %5d tokens:                       %8.2f ms  %8.1f t/s\n", tokens, t_text * 1e3,
              tokens / t_text);
  std::printf("image %5d positions (%d soft tokens): %8.2f ms  %8.1f t/s\n", tokens, image_tokens,
              t_image * 1e3, tokens / t_image);
  std::printf("image prefill speed / text prefill speed: %.3f\n", t_text / t_image);
  return 0;
}

}  // namespace
}  // namespace gemma4

int main(int argc, char** argv) { return gemma4::Run(argc, argv); }
