// Flush-to-zero and denormals-are-zero for the forward pass. Softmax's exp underflows for keys
// that score far below the best one (about 3% of E2B's attention probabilities come out as
// exact zeros), and on Intel cores every operation whose result underflows (or that reads a
// denormal) takes a microcode assist of over a hundred cycles. Measured on a Sapphire Rapids
// host, E2B q4_0 pp512, 2 threads: attention core 2.2-2.5 s without, 0.87-0.93 s with; Zen 3
// shows no such penalty. Values below 1.2e-38 become zero, 30 orders of magnitude below the
// float epsilon of any sum they enter. x86 only (MXCSR); Arm cores handle denormals in hardware.
#ifndef GEMMA4_SRC_RUNTIME_DENORMALS_H_
#define GEMMA4_SRC_RUNTIME_DENORMALS_H_

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace gemma4 {

// Sets FTZ and DAZ on the calling thread for its lifetime and restores the caller's mode after,
// so an application embedding the library keeps its own floating-point environment.
class ScopedDenormalsAreZero {
 public:
#if defined(__x86_64__) || defined(__i386__)
  ScopedDenormalsAreZero() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFtzDaz); }
  ~ScopedDenormalsAreZero() { _mm_setcsr(saved_); }
#else
  ScopedDenormalsAreZero() {}
#endif
  ScopedDenormalsAreZero(const ScopedDenormalsAreZero&) = delete;
  ScopedDenormalsAreZero& operator=(const ScopedDenormalsAreZero&) = delete;

 private:
#if defined(__x86_64__) || defined(__i386__)
  static constexpr unsigned kFtzDaz = 0x8040;  // MXCSR bit 15 (FTZ) and bit 6 (DAZ)
  unsigned saved_;
#endif
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_RUNTIME_DENORMALS_H_
