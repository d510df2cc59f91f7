// Scoped timing of one phase of the forward pass into a ForwardProfile (forward.cc and
// attention.cc share it).
#ifndef GEMMA4_SRC_MODEL_PHASE_TIMER_H_
#define GEMMA4_SRC_MODEL_PHASE_TIMER_H_

#include <ctime>

#include <chrono>

#include "model/forward.h"

namespace gemma4 {

inline double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}
// Adds the scope's wall time and the process's CPU time to one phase of a profile (nothing
// when there is none).
class PhaseTimer {
 public:
  PhaseTimer(ForwardProfile* profile, ForwardProfile::Phase phase)
      : profile_(profile), phase_(phase) {
    if (profile_ != nullptr) {
      start_ = std::chrono::steady_clock::now();
      cpu_start_ = ProcessCpuSeconds();
    }
  }
  ~PhaseTimer() { Stop(); }
  void Stop() {
    if (profile_ != nullptr) {
      profile_->seconds[phase_] +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      profile_->cpu_seconds[phase_] += ProcessCpuSeconds() - cpu_start_;
      profile_ = nullptr;
    }
  }
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

 private:
  ForwardProfile* profile_;
  ForwardProfile::Phase phase_;
  std::chrono::steady_clock::time_point start_;
  double cpu_start_ = 0;
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_PHASE_TIMER_H_
