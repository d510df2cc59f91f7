// Helpers for tests that assert how a cost grows with the input size. A wall-clock ratio
// between two sizes (best of several runs each) separates linear from quadratic growth with a
// wide margin and does not depend on how fast or loaded the machine is.
#ifndef GEMMA4_TESTS_SCALING_H_
#define GEMMA4_TESTS_SCALING_H_

#include <algorithm>
#include <chrono>
#include <functional>

namespace gemma4::testing {

// The shortest of `runs` timings of `fn`, in seconds.
inline double BestSeconds(const std::function<void()>& fn, int runs = 3) {
  double best = 1e300;
  for (int r = 0; r < runs; ++r) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    best = std::min(best, took.count());
  }
  return best;
}

}  // namespace gemma4::testing

#endif  // GEMMA4_TESTS_SCALING_H_
