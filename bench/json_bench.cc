// JSON parser throughput and memory: `json_bench FILE [ROUNDS]` parses the file ROUNDS times
// (default 5) and prints the fastest and median round in MB/s, the number of values, the size
// of one json::Value and the heap bytes the parsed document holds per value (every allocation
// made while parsing that is still live when the parse returns).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "base/json.h"

namespace {

std::atomic<long long> g_live_bytes{0};

// Counts values the way Parse's max_values does: every scalar, array and object.
size_t CountValues(const gemma4::json::Value& v) {
  size_t n = 1;
  for (const auto& item : v.as_array()) n += CountValues(item);
  for (const auto& member : v.as_object()) n += CountValues(member.second);
  return n;
}

}  // namespace

// Live heap bytes, tracked through a size header in front of every allocation.
void* operator new(std::size_t size) {
  void* p = std::malloc(size + 16);
  if (p == nullptr) throw std::bad_alloc();
  *static_cast<std::size_t*>(p) = size;
  g_live_bytes += static_cast<long long>(size);
  return static_cast<char*>(p) + 16;
}
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  char* base = static_cast<char*>(p) - 16;
  g_live_bytes -= static_cast<long long>(*reinterpret_cast<std::size_t*>(base));
  std::free(base);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: json_bench FILE [ROUNDS]\n");
    return 2;
  }
  const int rounds = argc > 2 ? std::max(1, std::atoi(argv[2])) : 5;
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", argv[1]);
    return 1;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  std::vector<double> seconds;
  size_t values = 0;
  long long held = 0;
  for (int r = 0; r < rounds; ++r) {
    const long long before = g_live_bytes.load();
    const auto t0 = std::chrono::steady_clock::now();
    auto doc = gemma4::json::Parse(text, argv[1]);
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (!doc.ok()) {
      std::fprintf(stderr, "%s\n", doc.status().ToString().c_str());
      return 1;
    }
    held = g_live_bytes.load() - before - static_cast<long long>(sizeof(gemma4::json::Value));
    values = CountValues(*doc);
  }
  std::sort(seconds.begin(), seconds.end());
  const double mb = static_cast<double>(text.size()) / 1e6;
  std::printf(
      "%zu bytes, %zu values, sizeof(json::Value) %zu, heap %.1f bytes per value; best %.3f s "
      "(%.1f MB/s), median %.3f s (%.1f MB/s)\n",
      text.size(), values, sizeof(gemma4::json::Value),
      static_cast<double>(held) / static_cast<double>(values), seconds.front(),
      mb / seconds.front(), seconds[seconds.size() / 2], mb / seconds[seconds.size() / 2]);
  return 0;
}
