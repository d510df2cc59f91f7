// int8 peak of this machine: the throughput of AVX-512 VNNI's vpdpbusd (64 u8 x s8 products
// summed into 16 int32 lanes per instruction, so 128 integer ops) on 1 and 2 threads, the
// ceiling for the int8 GEMMs of prefill. Each thread runs kChains independent accumulator
// chains (enough to cover the instruction's latency) over register operands, so no load or
// other instruction limits it; a single chain measures the latency. Prints ops/s per thread
// count and, with --json, one JSON array. Rates are given per wall second and per CPU second
// of the measuring threads: on a shared machine the threads lose the CPU to other tenants,
// and the CPU-time rate is the peak while they hold it (what per-op CPU times compare to).
//
//   build/vnni_peak [--seconds S] [--json]
//
// Standard library only; on CPUs without AVX-512 VNNI (or other architectures) it says so and
// exits 0, so scripts can run it anywhere.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define GEMMA4_VNNI_PEAK_X86 1
#endif

namespace {

constexpr int64_t kOpsPerInstruction = 2 * 64;  // 64 multiply-adds
constexpr int kChains = 12;                     // independent accumulators per thread
constexpr int64_t kUnroll = 8;                  // instructions per chain per loop iteration

#ifdef GEMMA4_VNNI_PEAK_X86
// Runs `iterations` x kUnroll instructions on each of `chains` accumulators; returns a value
// depending on all of them so nothing is dropped.
template <int Chains>
__attribute__((target("avx512f,avx512vnni"))) int64_t RunDpbusd(int64_t iterations, int seed) {
  __m512i acc[Chains];
  for (int c = 0; c < Chains; ++c) acc[c] = _mm512_set1_epi32(seed + c);
  __m512i a = _mm512_set1_epi8(static_cast<char>(seed | 1));
  __m512i b = _mm512_set1_epi8(static_cast<char>(3 + seed));
  // The operands go through an empty asm so the compiler cannot treat them as constants.
  asm volatile("" : "+v"(a), "+v"(b));
  for (int64_t i = 0; i < iterations; ++i) {
    for (int u = 0; u < kUnroll; ++u) {
      for (int c = 0; c < Chains; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
    }
  }
  __m512i total = acc[0];
  for (int c = 1; c < Chains; ++c) total = _mm512_add_epi32(total, acc[c]);
  // Stored and summed in scalar code (GCC 12 warns falsely inside _mm512_reduce_add_epi32).
  int32_t lanes[16];
  _mm512_storeu_si512(lanes, total);
  int64_t sum = 0;
  for (int32_t lane : lanes) sum += lane;
  return sum;
}

bool CpuHasVnni512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni");
}
#endif

struct Result {
  int threads;
  int chains;
  double ops_per_second;      // all threads together
  double instructions_per_s;  // per thread
  double ops_per_cpu_second;  // all threads' instructions over all threads' CPU time
};

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

#ifdef GEMMA4_VNNI_PEAK_X86
// Every thread runs the same number of iterations; the time is the slowest thread's, each
// measured from a common start flag (so a thread that started late is not counted short).
Result Measure(int threads, int chains, double seconds) {
  // Calibrate on one thread: iterations for about `seconds`.
  int64_t iterations = 1 << 12;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    volatile int64_t sink =
        chains == 1 ? RunDpbusd<1>(iterations, 1) : RunDpbusd<kChains>(iterations, 1);
    (void)sink;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > seconds / 4) {
      iterations = static_cast<int64_t>(static_cast<double>(iterations) * seconds / dt);
      break;
    }
    iterations *= 2;
  }
  std::atomic<bool> go{false};
  std::vector<double> elapsed(threads), cpu(threads);
  std::vector<std::thread> pool;
  std::atomic<int64_t> sink{0};
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      while (!go.load(std::memory_order_acquire)) {
      }
      const auto t0 = std::chrono::steady_clock::now();
      const double c0 = ThreadCpuSeconds();
      const int64_t v =
          chains == 1 ? RunDpbusd<1>(iterations, t) : RunDpbusd<kChains>(iterations, t);
      elapsed[t] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      cpu[t] = ThreadCpuSeconds() - c0;
      sink += v;
    });
  }
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  const double slowest = *std::max_element(elapsed.begin(), elapsed.end());
  const double instructions = static_cast<double>(iterations) * kUnroll * chains;
  Result r;
  r.threads = threads;
  r.chains = chains;
  r.instructions_per_s = instructions / slowest;
  r.ops_per_second = r.instructions_per_s * threads * static_cast<double>(kOpsPerInstruction);
  double cpu_total = 0;
  for (double c : cpu) cpu_total += c;
  r.ops_per_cpu_second =
      instructions * threads * static_cast<double>(kOpsPerInstruction) / cpu_total;
  return r;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  double seconds = 1.0;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (std::strcmp(argv[i], "--json") == 0) {
      json = true;
    } else {
      std::fprintf(stderr, "usage: %s [--seconds S] [--json]\n", argv[0]);
      return 2;
    }
  }
  if (!(seconds > 0)) seconds = 1.0;
#ifdef GEMMA4_VNNI_PEAK_X86
  if (!CpuHasVnni512()) {
    std::printf("this CPU has no AVX-512 VNNI: nothing measured\n");
    return 0;
  }
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  std::vector<Result> results;
  results.push_back(Measure(1, 1, seconds));  // latency-bound: one chain
  for (int threads = 1; threads <= static_cast<int>(std::min(2u, hw)); ++threads) {
    results.push_back(Measure(threads, kChains, seconds));
  }
  if (json) {
    std::printf("[");
    for (size_t i = 0; i < results.size(); ++i) {
      std::printf(
          "%s{\"threads\": %d, \"chains\": %d, \"ops_per_second\": %.6g, "
          "\"ops_per_cpu_second\": %.6g}",
          i ? ", " : "", results[i].threads, results[i].chains, results[i].ops_per_second,
          results[i].ops_per_cpu_second);
    }
    std::printf("]\n");
    return 0;
  }
  std::printf("vpdpbusd zmm (128 int8 ops each), %d chains per thread unless noted\n", kChains);
  for (const Result& r : results) {
    std::printf(
        "threads %d chains %2d: %6.2f G instructions/s per thread, %7.1f int8 GOPS (wall), "
        "%7.1f GOPS per CPU second x threads\n",
        r.threads, r.chains, r.instructions_per_s * 1e-9, r.ops_per_second * 1e-9,
        r.ops_per_cpu_second * r.threads * 1e-9);
  }
  return 0;
#else
  (void)json;
  std::printf("not an x86-64 build: nothing measured\n");
  return 0;
#endif
}
