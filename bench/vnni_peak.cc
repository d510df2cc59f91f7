// int8 peak of this machine: the throughput of AVX-512 VNNI's vpdpbusd (64 u8 x s8 products
// summed into 16 int32 lanes per instruction, so 128 integer ops) on 1 and 2 threads, the
// ceiling for the int8 GEMMs of prefill. Each thread runs kChains independent accumulator
// chains (enough to cover the instruction's latency) over register operands, so no load or
// other instruction limits it; a single chain measures the latency. Prints ops/s per thread
// count and, with --json, one JSON array. Rates are given per wall second and per CPU second
// of the measuring threads: on a shared machine the threads lose the CPU to other tenants,
// and the CPU-time rate is the peak while they hold it (what per-op CPU times compare to).
//
// --mix: which other instructions share vpdpbusd's execution pipes (what bounds a kernel that
// issues them beside its vpdpbusd). One thread runs 10 independent vpdpbusd chains per loop
// iteration plus N independent instructions of one kind, and prints the vpdpbusd rate against
// the loop with none: an instruction on pipes of its own leaves the rate where it was while
// the other pipes have room; one on vpdpbusd's pipes lowers it to 10 / (10 + N) of it.
//
//   build/vnni_peak [--seconds S] [--json] [--mix]
//
// Where the CPU has AMX-BF16 (and Linux grants the tile-data permission), also the peak of
// TDPBF16PS: 16 x 16 f32 sums of 32 bf16 x bf16 products each (16384 ops an instruction), four
// independent tiles per thread, the ceiling for the AMX prefill kernels (src/kernels/isa/amx.cc).
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
#include <cpuid.h>
#include <immintrin.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
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

// TDPBSSD on four independent accumulator tiles (0, 1, 6, 7) from register operands (tiles 2
// and 4: 16 x 64 bytes each): iterations x kUnroll x 4 instructions.
struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 0, 64, 0, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 0, 16, 0, 16, 16};
};
const TileConfig kTileConfig;

__attribute__((target("amx-tile,amx-bf16"))) int64_t RunTdpbf16ps(int64_t iterations, int seed) {
  alignas(64) static thread_local uint16_t operand[16 * 32];
  alignas(64) static thread_local float out[16 * 16];
  for (uint16_t& v : operand) v = static_cast<uint16_t>(0x3C00 + (seed & 7));  // ~2^-7, finite
  _tile_loadconfig(&kTileConfig);
  _tile_loadd(2, operand, 64);
  _tile_loadd(4, operand, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(6);
  _tile_zero(7);
  for (int64_t i = 0; i < iterations; ++i) {
    for (int u = 0; u < kUnroll; ++u) {
      _tile_dpbf16ps(0, 2, 4);
      _tile_dpbf16ps(1, 2, 4);
      _tile_dpbf16ps(6, 2, 4);
      _tile_dpbf16ps(7, 2, 4);
    }
  }
  _tile_stored(0, out, 64);
  int64_t sum = static_cast<int64_t>(out[0]);
  _tile_stored(7, out, 64);
  sum += static_cast<int64_t>(out[255]);
  _tile_release();
  return sum;
}

// AMX-TILE and AMX-BF16 in CPUID, tile state enabled in XCR0 and (Linux) the permission.
bool CpuHasAmxBf16() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  if ((edx & (1u << 24)) == 0 || (edx & (1u << 22)) == 0) return false;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0 || (ecx & bit_OSXSAVE) == 0) return false;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & (3u << 17)) != (3u << 17)) return false;
#if defined(__linux__)
  if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) != 0) {
    return false;
  }
#endif
  return true;
}

bool CpuHasVnni512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni");
}
#endif

struct Result {
  const char* instruction;
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
Result Measure(int threads, int chains, double seconds, bool amx = false) {
  auto run = [&](int64_t iterations, int seed) {
    return amx           ? RunTdpbf16ps(iterations, seed)
           : chains == 1 ? RunDpbusd<1>(iterations, seed)
                         : RunDpbusd<kChains>(iterations, seed);
  };
  // Calibrate on one thread: iterations for about `seconds`.
  int64_t iterations = 1 << 12;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    volatile int64_t sink = run(iterations, 1);
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
      const int64_t v = run(iterations, t);
      elapsed[t] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      cpu[t] = ThreadCpuSeconds() - c0;
      sink += v;
    });
  }
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  const double slowest = *std::max_element(elapsed.begin(), elapsed.end());
  const double instructions = static_cast<double>(iterations) * kUnroll * chains;
  const double ops_per_instruction = amx ? 2.0 * 16 * 16 * 32 : kOpsPerInstruction;
  Result r;
  r.instruction = amx ? "tdpbf16ps" : "vpdpbusd";
  r.threads = threads;
  r.chains = chains;
  r.instructions_per_s = instructions / slowest;
  r.ops_per_second = r.instructions_per_s * threads * ops_per_instruction;
  double cpu_total = 0;
  for (double c : cpu) cpu_total += c;
  r.ops_per_cpu_second = instructions * threads * ops_per_instruction / cpu_total;
  return r;
}

// --mix: 10 vpdpbusd chains (zmm0-9) and N instructions of one kind into zmm16-23 (each
// target written at most twice an iteration, so the accumulating vfmadd231ps's own latency
// never binds), sources zmm14 / zmm15 and, for the broadcast load, a stack word.
#define GEMMA4_DPBUSD10                                                     \
  "vpdpbusd %%zmm14, %%zmm15, %%zmm0\n vpdpbusd %%zmm14, %%zmm15, %%zmm1\n" \
  "vpdpbusd %%zmm14, %%zmm15, %%zmm2\n vpdpbusd %%zmm14, %%zmm15, %%zmm3\n" \
  "vpdpbusd %%zmm14, %%zmm15, %%zmm4\n vpdpbusd %%zmm14, %%zmm15, %%zmm5\n" \
  "vpdpbusd %%zmm14, %%zmm15, %%zmm6\n vpdpbusd %%zmm14, %%zmm15, %%zmm7\n" \
  "vpdpbusd %%zmm14, %%zmm15, %%zmm8\n vpdpbusd %%zmm14, %%zmm15, %%zmm9\n"
#define GEMMA4_FOUR(op) op(16) op(17) op(18) op(19)
#define GEMMA4_FOUR_MORE(op) op(20) op(21) op(22) op(23)
#define GEMMA4_MUL(r) "vmulps %%zmm14, %%zmm15, %%zmm" #r "\n"
#define GEMMA4_FMA(r) "vfmadd231ps %%zmm14, %%zmm15, %%zmm" #r "\n"
#define GEMMA4_ADD(r) "vaddps %%zmm14, %%zmm15, %%zmm" #r "\n"
#define GEMMA4_CVT(r) "vcvtdq2ps %%zmm14, %%zmm" #r "\n"
#define GEMMA4_AND(r) "vpandd %%zmm14, %%zmm15, %%zmm" #r "\n"
#define GEMMA4_SRL(r) "vpsrlw $4, %%zmm14, %%zmm" #r "\n"
#define GEMMA4_BCAST(r) "vpbroadcastd %[word], %%zmm" #r "\n"
#define GEMMA4_CLOBBERS                                                                    \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
      "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23"

// Runs the loop `iterations` times; `Extra` groups of four of the kind per iteration.
template <int Kind, int Extra>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void RunMix(int64_t iterations) {
  int32_t word = 0x01010101;
  asm volatile("vpternlogd $0xff, %%zmm14, %%zmm14, %%zmm14\n vpxord %%zmm15, %%zmm15, %%zmm15" ::
                   : "xmm14", "xmm15");
  for (int64_t i = 0; i < iterations; ++i) {
#define GEMMA4_MIX_CASE(k, op)                                                            \
  if constexpr (Kind == k) {                                                              \
    if constexpr (Extra == 0) asm volatile(GEMMA4_DPBUSD10 ::: GEMMA4_CLOBBERS);          \
    if constexpr (Extra == 1)                                                             \
      asm volatile(GEMMA4_DPBUSD10 GEMMA4_FOUR(op)::[word] "m"(word) : GEMMA4_CLOBBERS);  \
    if constexpr (Extra == 2)                                                             \
      asm volatile(GEMMA4_DPBUSD10 GEMMA4_FOUR(op) GEMMA4_FOUR_MORE(op)::[word] "m"(word) \
                   : GEMMA4_CLOBBERS);                                                    \
    if constexpr (Extra == 4)                                                             \
      asm volatile(GEMMA4_DPBUSD10 GEMMA4_FOUR(op) GEMMA4_FOUR_MORE(op) GEMMA4_FOUR(op)   \
                       GEMMA4_FOUR_MORE(op)::[word] "m"(word)                             \
                   : GEMMA4_CLOBBERS);                                                    \
  }
    GEMMA4_MIX_CASE(0, GEMMA4_MUL)
    GEMMA4_MIX_CASE(1, GEMMA4_FMA)
    GEMMA4_MIX_CASE(2, GEMMA4_ADD)
    GEMMA4_MIX_CASE(3, GEMMA4_CVT)
    GEMMA4_MIX_CASE(4, GEMMA4_AND)
    GEMMA4_MIX_CASE(5, GEMMA4_SRL)
    GEMMA4_MIX_CASE(6, GEMMA4_BCAST)
#undef GEMMA4_MIX_CASE
  }
}

// vpdpbusd per nanosecond of the loop with `Extra` x 4 instructions of `Kind`: the best of
// three runs of about `seconds` / 3.
template <int Kind, int Extra>
double MixRate(double seconds) {
  constexpr int64_t kCalibration = 1 << 20;
  auto time = [](int64_t iterations) {
    const auto t0 = std::chrono::steady_clock::now();
    RunMix<Kind, Extra>(iterations);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const double dt = time(kCalibration);
  const int64_t iterations = std::max<int64_t>(
      kCalibration, static_cast<int64_t>(static_cast<double>(kCalibration) * seconds / 3 / dt));
  double best = 0;
  for (int run = 0; run < 3; ++run) {
    best = std::max(best, 10.0 * static_cast<double>(iterations) / (time(iterations) * 1e9));
  }
  return best;
}

template <int Kind>
void PrintMix(const char* name, double base, double seconds) {
  const double four = MixRate<Kind, 1>(seconds), eight = MixRate<Kind, 2>(seconds),
               sixteen = MixRate<Kind, 4>(seconds);
  std::printf("  + %-22s  4: %5.2f (%3.0f%%)   8: %5.2f (%3.0f%%)   16: %5.2f (%3.0f%%)\n", name,
              four, 100 * four / base, eight, 100 * eight / base, sixteen, 100 * sixteen / base);
}

void RunMixes(double seconds) {
  const double base = MixRate<0, 0>(seconds);
  std::printf(
      "vpdpbusd zmm per ns, one thread, 10 chains and N other instructions per iteration (the "
      "share of the plain loop's rate; 10 / (10 + N) where they share vpdpbusd's pipes: 71%% "
      "for 4, 56%% for 8, 38%% for 16)\n");
  std::printf("  plain                        %5.2f\n", base);
  PrintMix<0>("vmulps", base, seconds);
  PrintMix<1>("vfmadd231ps", base, seconds);
  PrintMix<2>("vaddps", base, seconds);
  PrintMix<3>("vcvtdq2ps", base, seconds);
  PrintMix<4>("vpandd", base, seconds);
  PrintMix<5>("vpsrlw", base, seconds);
  PrintMix<6>("vpbroadcastd (memory)", base, seconds);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  double seconds = 1.0;
  bool json = false, mix = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (std::strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (std::strcmp(argv[i], "--mix") == 0) {
      mix = true;
    } else {
      std::fprintf(stderr, "usage: %s [--seconds S] [--json] [--mix]\n", argv[0]);
      return 2;
    }
  }
  if (!(seconds > 0)) seconds = 1.0;
#ifdef GEMMA4_VNNI_PEAK_X86
  if (!CpuHasVnni512()) {
    std::printf("this CPU has no AVX-512 VNNI: nothing measured\n");
    return 0;
  }
  if (mix) {
    RunMixes(seconds);
    return 0;
  }
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  std::vector<Result> results;
  results.push_back(Measure(1, 1, seconds));  // latency-bound: one chain
  for (int threads = 1; threads <= static_cast<int>(std::min(2u, hw)); ++threads) {
    results.push_back(Measure(threads, kChains, seconds));
  }
  if (CpuHasAmxBf16()) {
    for (int threads = 1; threads <= static_cast<int>(std::min(2u, hw)); ++threads) {
      results.push_back(Measure(threads, 4, seconds, /*amx=*/true));
    }
  }
  if (json) {
    std::printf("[");
    for (size_t i = 0; i < results.size(); ++i) {
      std::printf(
          "%s{\"instruction\": \"%s\", \"threads\": %d, \"chains\": %d, "
          "\"ops_per_second\": %.6g, \"ops_per_cpu_second\": %.6g}",
          i ? ", " : "", results[i].instruction, results[i].threads, results[i].chains,
          results[i].ops_per_second, results[i].ops_per_cpu_second);
    }
    std::printf("]\n");
    return 0;
  }
  std::printf(
      "vpdpbusd zmm (128 int8 ops each), %d chains per thread unless noted; tdpbf16ps (16384 "
      "bf16 ops each), 4 tiles per thread\n",
      kChains);
  for (const Result& r : results) {
    std::printf(
        "%-9s threads %d chains %2d: %6.3f G instructions/s per thread, %8.1f GOPS (wall), "
        "%8.1f GOPS per CPU second x threads\n",
        r.instruction, r.threads, r.chains, r.instructions_per_s * 1e-9, r.ops_per_second * 1e-9,
        r.ops_per_cpu_second * r.threads * 1e-9);
  }
  return 0;
#else
  (void)json;
  (void)mix;
  std::printf("not an x86-64 build: nothing measured\n");
  return 0;
#endif
}
