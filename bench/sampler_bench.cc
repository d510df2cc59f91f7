// Sampling cost per token at Gemma 4's vocabulary (262144 ids): `sampler_bench [ROUNDS]` runs
// greedy, temperature alone, Gemma 4's generation config (top-k 64, top-p 0.95), top-p alone
// and min-p alone on fixed logits (normal, sd 3: a flat distribution, whose nucleus is large)
// and on peaked ones (sd 3 plus 25 on 20 ids, as a trained model's are), and prints the
// median milliseconds per Sample call over ROUNDS rounds (default 5) of 50 calls, the logits
// copy included. Decode of E2B takes 50-70 ms a token on two cores: this is what sampling adds.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "gemma4/sampler.h"

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  constexpr int kVocab = 262144, kCalls = 50;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> flat(kVocab);
  for (float& v : flat) v = normal(rng);
  std::vector<float> peaked = flat;
  for (int i = 0; i < 20; ++i) peaked[(i * 7919) % kVocab] += 25.0f;
  struct Config {
    const char* name;
    int top_k;
    float top_p, min_p, temperature;
  };
  const Config configs[] = {{"greedy", 0, 1.0f, 0.0f, 0.0f},
                            {"temperature 1", 0, 1.0f, 0.0f, 1.0f},
                            {"top-k 64, top-p 0.95", 64, 0.95f, 0.0f, 1.0f},
                            {"top-p 0.95", 0, 0.95f, 0.0f, 1.0f},
                            {"min-p 0.05", 0, 1.0f, 0.05f, 1.0f}};
  std::printf("%-22s %12s %12s   (ms per token, median of %d rounds)\n", "sampling", "flat",
              "peaked", rounds);
  for (const Config& c : configs) {
    std::printf("%-22s", c.name);
    for (const std::vector<float>* logits : {&flat, &peaked}) {
      gemma4::SamplerOptions options;
      options.top_k = c.top_k;
      options.top_p = c.top_p;
      options.min_p = c.min_p;
      options.temperature = c.temperature;
      options.seed = 3;
      gemma4::Sampler sampler(options);
      std::vector<float> work;
      std::vector<double> ms;
      long checksum = 0;
      for (int r = 0; r < rounds; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < kCalls; ++i) {
          work = *logits;
          checksum += sampler.Sample(work, {});
        }
        const auto t1 = std::chrono::steady_clock::now();
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count() / kCalls);
      }
      std::sort(ms.begin(), ms.end());
      std::printf(" %12.3f", ms[ms.size() / 2]);
      if (checksum < 0) std::printf("?");  // keeps the calls
    }
    std::printf("\n");
  }
  return 0;
}
