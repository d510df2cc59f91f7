// Flush-to-zero and denormals-are-zero for the forward pass. Softmax produces probabilities far
// below 1e-38 for keys that score much lower than the best one, and on Intel cores every
// multiply-add that reads or writes such a denormal takes a microcode assist (over a hundred
// cycles). Treating them as zero changes nothing measurable (they are below the float epsilon
// of any sum they enter by 30 orders of magnitude) and keeps attention at full speed.
// x86 only (MXCSR); Arm cores handle denormals in hardware.
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
