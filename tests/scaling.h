// Helpers for tests that assert how a cost grows with the input size. A ratio of CPU times
// between two sizes (best of several runs each) separates linear from quadratic growth with a
// wide margin and does not depend on how fast or loaded the machine is.
#ifndef GEMMA4_TESTS_SCALING_H_
#define GEMMA4_TESTS_SCALING_H_

#include <algorithm>
#include <ctime>
#include <functional>

namespace gemma4::testing {

// The shortest of `runs` timings of `fn`, in CPU seconds of the calling thread (`fn` must do
// its work on this thread).
inline double BestSeconds(const std::function<void()>& fn, int runs = 5) {
  // This thread's CPU time, not wall time: other processes on a loaded machine (CI runs the
  // suite with -j) deschedule the thread without charging it, so the ratios between sizes stay
  // those of the work done.
  auto cpu_seconds = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  };
  double best = 1e300;
  for (int r = 0; r < runs; ++r) {
    const double start = cpu_seconds();
    fn();
    best = std::min(best, cpu_seconds() - start);
  }
  return best;
}

}  // namespace gemma4::testing

#endif  // GEMMA4_TESTS_SCALING_H_
