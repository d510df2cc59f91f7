// Per-phase time of one call (an image or audio encode), for finding where the time goes:
// with the environment variable GEMMA4_PROFILE set (to anything but "0"), the destructor
// prints each phase's wall-clock and process CPU milliseconds, summed over the call, to
// stderr. Process CPU counts every thread of the process, spinning pool workers included, so
// CPU above wall x threads means other work ran; on a shared machine read CPU beside wall.
// Off (the default) it costs one branch per Mark.
#ifndef GEMMA4_SRC_RUNTIME_PHASE_PROFILE_H_
#define GEMMA4_SRC_RUNTIME_PHASE_PROFILE_H_

#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace gemma4 {

class PhaseProfile {
 public:
  // `what` names the call in the printout ("audio encode").
  explicit PhaseProfile(const char* what) : what_(what) {
    const char* env = std::getenv("GEMMA4_PROFILE");
    on_ = env != nullptr && std::strcmp(env, "0") != 0 && env[0] != '\0';
    if (on_) Now(&wall_, &cpu_);
  }
  ~PhaseProfile() {
    if (!on_) return;
    double wall = 0, cpu = 0;
    for (const Phase& p : phases_) {
      wall += p.wall_ms;
      cpu += p.cpu_ms;
    }
    std::fprintf(stderr, "profile %s: %.1f ms wall, %.1f ms CPU\n", what_, wall, cpu);
    for (const Phase& p : phases_) {
      std::fprintf(stderr, "  %-28s %9.1f ms wall %5.1f%%  %9.1f ms CPU  x%d\n", p.name, p.wall_ms,
                   wall > 0 ? 100.0 * p.wall_ms / wall : 0.0, p.cpu_ms, p.count);
    }
  }
  PhaseProfile(const PhaseProfile&) = delete;
  PhaseProfile& operator=(const PhaseProfile&) = delete;

  // Charges the time since the previous Mark (or construction) to `phase` (a string literal:
  // phases are told apart by content).
  void Mark(const char* phase) {
    if (!on_) return;
    double wall, cpu;
    Now(&wall, &cpu);
    Phase* found = nullptr;
    for (Phase& p : phases_) {
      if (std::strcmp(p.name, phase) == 0) found = &p;
    }
    if (found == nullptr) {
      phases_.push_back(Phase{phase, 0, 0, 0});
      found = &phases_.back();
    }
    found->wall_ms += wall - wall_;
    found->cpu_ms += cpu - cpu_;
    ++found->count;
    wall_ = wall;
    cpu_ = cpu;
  }

 private:
  struct Phase {
    const char* name;
    double wall_ms, cpu_ms;
    int count;
  };
  static void Now(double* wall_ms, double* cpu_ms) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    *wall_ms = static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    *cpu_ms = static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
  }

  const char* what_;
  bool on_ = false;
  double wall_ = 0, cpu_ = 0;
  std::vector<Phase> phases_;
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_RUNTIME_PHASE_PROFILE_H_
