// Tokenizer throughput: `tokenizer_bench TOKENIZER TEXT_FILE [ROUNDS]` encodes the whole file
// (content as text, no special tokens) ROUNDS times (default 5) and prints the fastest and the
// median round in MB/s and tokens/s. TOKENIZER is anything Tokenizer::Load takes (tokenizer.json,
// tokenizer.model, a GGUF such as llama.cpp's models/ggml-vocab-gemma-4.gguf, a directory).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gemma4/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: tokenizer_bench TOKENIZER TEXT_FILE [ROUNDS]\n");
    return 2;
  }
  const int rounds = argc > 3 ? std::max(1, std::atoi(argv[3])) : 5;
  auto tokenizer = gemma4::Tokenizer::Load(argv[1]);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  std::ifstream in(argv[2], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", argv[2]);
    return 1;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  std::vector<double> seconds;
  size_t tokens = 0;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = (*tokenizer)->Encode(text);
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    tokens = ids.size();
  }
  std::sort(seconds.begin(), seconds.end());
  const double best = seconds.front(), median = seconds[seconds.size() / 2];
  const double mb = static_cast<double>(text.size()) / 1e6;
  std::printf(
      "%zu bytes, %zu tokens, %d rounds: best %.3f s (%.2f MB/s, %.0f tokens/s), median "
      "%.3f s (%.2f MB/s)\n",
      text.size(), tokens, rounds, best, mb / best, static_cast<double>(tokens) / best, median,
      mb / median);
  return 0;
}
