// Runs a test body in a forked child, for tests that change process-wide limits (address space,
// thread stacks) or that must catch a crash or a hang as a failure instead of dying with it.
#ifndef GEMMA4_TESTS_CHILD_PROCESS_H_
#define GEMMA4_TESTS_CHILD_PROCESS_H_

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <string>

#include "sanitizers.h"

namespace gemma4::testing {

// Sanitizer runtimes reserve terabytes of shadow address space, so an address-space limit
// cannot be applied under them.
inline constexpr bool kAddressSpaceLimitsWork = !kSanitizedBuild;

// How the child ended: exit status, or the signal that killed it.
struct ChildResult {
  bool exited = false;
  int exit_code = -1;
  int signal = 0;
  std::string Describe() const {
    return exited ? "exit " + std::to_string(exit_code)
                  : "signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
  }
};

// The exit code of a child whose body let an exception escape.
inline constexpr int kExceptionEscaped = 99;

// Runs body() in a forked child that exits with body's return value; a child still running
// after timeout_seconds is killed by SIGALRM (a hang reads as a signal).
inline ChildResult RunInChild(const std::function<int()>& body, unsigned timeout_seconds = 60) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(timeout_seconds);
    int code = 0;
    try {
      code = body();
    } catch (const std::exception& e) {
      // An exception out of an API that promises a Status: a failure of its own kind.
      std::fprintf(stderr, "exception escaped: %s\n", e.what());
      code = kExceptionEscaped;
    }
    std::fflush(nullptr);
    _exit(code);
  }
  ChildResult result;
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return result;
  if (WIFEXITED(status)) {
    result.exited = true;
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}

// A /proc/self/status size of this process in bytes ("VmSize:", "VmRSS:", "VmHWM:"); 0 if
// unreadable.
inline size_t ProcStatusBytes(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == field) {
      size_t kib = 0;
      status >> kib;
      return kib * 1024;
    }
    std::getline(status, key);
  }
  return 0;
}

// This process's mapped address space in bytes (VmSize).
inline size_t AddressSpaceBytes() { return ProcStatusBytes("VmSize:"); }

// Limits this process's address space to its current size plus `extra` bytes.
inline bool LimitAddressSpace(size_t extra) {
  const rlim_t limit = AddressSpaceBytes() + extra;
  const rlimit r{limit, limit};
  return setrlimit(RLIMIT_AS, &r) == 0;
}

}  // namespace gemma4::testing

#endif  // GEMMA4_TESTS_CHILD_PROCESS_H_
