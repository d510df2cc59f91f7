// Timing helpers shared by the standalone benchmarks in bench/ (wall clock, median of runs; CPU
// time, best of runs).
#ifndef GEMMA4_BENCH_BENCH_TIMING_H_
#define GEMMA4_BENCH_BENCH_TIMING_H_

#include <algorithm>
#include <chrono>
#include <ctime>
#include <vector>

namespace gemma4::bench {

inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// CPU seconds of the whole process so far: on a shared machine other processes deschedule the
// benchmark without charging it, so a kernel's cost per CPU second stays that of its work.
inline double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// The least CPU time of `runs` calls of `fn`.
template <class Fn>
double BestCpuSeconds(int runs, Fn&& fn) {
  double best = 1e300;
  for (int r = 0; r < runs; ++r) {
    const double start = ProcessCpuSeconds();
    fn();
    best = std::min(best, ProcessCpuSeconds() - start);
  }
  return best;
}

}  // namespace gemma4::bench

#endif  // GEMMA4_BENCH_BENCH_TIMING_H_
