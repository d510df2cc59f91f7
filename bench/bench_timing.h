// Timing helpers shared by the standalone benchmarks in bench/ (wall clock, median of runs).
#ifndef GEMMA4_BENCH_BENCH_TIMING_H_
#define GEMMA4_BENCH_BENCH_TIMING_H_

#include <algorithm>
#include <chrono>
#include <vector>

namespace gemma4::bench {

inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace gemma4::bench

#endif  // GEMMA4_BENCH_BENCH_TIMING_H_
