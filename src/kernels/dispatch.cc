// Choosing the kernel table: what this CPU supports (CPUID, AT_HWCAP) and GEMMA4_ISA.
#include <cstdlib>
#include <cstring>

#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
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
#endif

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
    for (Isa isa : {Isa::kAvx512Vnni, Isa::kAvx2, Isa::kNeonDotprod}) {
      if (only_ref || (at_most_avx2 && isa == Isa::kAvx512Vnni)) continue;
      if (CpuSupports(isa)) return &TableFor(isa);
    }
    return &ReferenceTable();
  }();
  return *best;
}

}  // namespace gemma4::kernels
