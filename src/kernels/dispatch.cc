// Choosing the kernel table: what this CPU supports (CPUID, AT_HWCAP) and GEMMA4_ISA.
#include <cstdlib>
#include <cstring>

#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif

#include "kernels/kernels.h"

namespace gemma4::kernels {

#if defined(__x86_64__) || defined(__i386__)
// F16C (the half <-> float conversions) from CPUID leaf 1 directly: clang 14's
// __builtin_cpu_supports does not know the "f16c" feature name.
static bool CpuHasF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

// AMX-TILE and AMX-BF16 (CPUID leaf 7: EDX bits 24 and 22) with AVX512-BF16 (leaf 7, subleaf
// 1: EAX bit 5) for the activations' rounding, the OS saving tile state (XCR0 bits 17 and 18)
// and, on Linux, the process's permission to use tile data, which must be asked for
// (arch_prctl ARCH_REQ_XCOMP_PERM; it holds for every thread of the process). Asked once.
static bool AmxUsable() {
  static const bool usable = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
    if ((edx & (1u << 24)) == 0 || (edx & (1u << 22)) == 0) return false;
    if (eax < 1 || __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) == 0 || (eax & (1u << 5)) == 0) {
      return false;
    }
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0 || (ecx & bit_OSXSAVE) == 0) return false;
    unsigned xcr0_lo = 0, xcr0_hi = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    constexpr unsigned kTileState = (1u << 17) | (1u << 18);
    if ((xcr0_lo & kTileState) != kTileState) return false;
#if defined(__linux__)
    constexpr long kArchReqXcompPerm = 0x1023;
    constexpr long kXfeatureXtiledata = 18;
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
#endif
    return true;
  }();
  return usable;
}
#endif

bool DecodeStreamToL2() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool intel = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0) return false;
    char vendor[13] = {};
    std::memcpy(vendor, &ebx, 4);
    std::memcpy(vendor + 4, &edx, 4);
    std::memcpy(vendor + 8, &ecx, 4);
    return std::strcmp(vendor, "GenuineIntel") == 0;
  }();
  return intel;
#else
  return false;
#endif
}

bool CpuSupports(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  switch (isa) {
    case Isa::kReference:
      return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && CpuHasF16c();
    case Isa::kAvx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni") && CpuHasF16c();
    case Isa::kAvx512Vbmi:
      return CpuSupports(Isa::kAvx512Vnni) && __builtin_cpu_supports("avx512vbmi") &&
             __builtin_cpu_supports("bmi2");
    case Isa::kAvx512Amx:
      return CpuSupports(Isa::kAvx512Vnni) && AmxUsable();
    case Isa::kNeonDotprod:
      return false;
  }
  return false;
#elif defined(__aarch64__) && defined(__linux__)
  if (isa == Isa::kReference) return true;
  // ASIMDDP: the SDOT/UDOT instructions (ARMv8.2 dotprod).
  return isa == Isa::kNeonDotprod && (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
  return isa == Isa::kReference;
#endif
}

const KernelTable& TableFor(Isa isa) {
  switch (isa) {
#ifdef GEMMA4_HAVE_X86_KERNELS
    case Isa::kAvx2:
      return Avx2Table();
    case Isa::kAvx512Vnni:
      return Avx512VnniTable();
    case Isa::kAvx512Vbmi:
      return Avx512VbmiTable();
    case Isa::kAvx512Amx:
      return Avx512AmxTable();
#endif
#ifdef GEMMA4_HAVE_NEON_KERNELS
    case Isa::kNeonDotprod:
      return NeonDotprodTable();
#endif
    default:
      return ReferenceTable();
  }
}

const KernelTable& BestTable() {
  static const KernelTable* best = [] {
    const char* force = std::getenv("GEMMA4_ISA");
    const bool only_ref = force != nullptr && std::strcmp(force, "ref") == 0;
    const bool at_most_avx2 = force != nullptr && std::strcmp(force, "avx2") == 0;
    const bool at_most_vnni = force != nullptr && std::strcmp(force, "avx512vnni") == 0;
    const bool at_most_avx512 = force != nullptr && std::strcmp(force, "avx512") == 0;
    for (Isa isa :
         {Isa::kAvx512Amx, Isa::kAvx512Vbmi, Isa::kAvx512Vnni, Isa::kAvx2, Isa::kNeonDotprod}) {
      const bool capped =
          only_ref ||
          (isa == Isa::kAvx512Amx && (at_most_avx2 || at_most_vnni || at_most_avx512)) ||
          (isa == Isa::kAvx512Vbmi && (at_most_avx2 || at_most_vnni)) ||
          (isa == Isa::kAvx512Vnni && at_most_avx2);
      if (capped) continue;
      if (CpuSupports(isa)) return &TableFor(isa);
    }
    return &ReferenceTable();
  }();
  return *best;
}

}  // namespace gemma4::kernels
