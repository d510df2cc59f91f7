#include "runtime/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>

namespace gemma4::huge_pages_internal {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// A block's extent: its bytes rounded up to whole huge pages. It is mapped with one huge page of
// slack so that an aligned start exists inside; the slack on either side is unmapped at once.
size_t Rounded(size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }

}  // namespace

void* Allocate(size_t bytes) {
  if (bytes < kHugePageMinBytes) return ::operator new(bytes);
  if (bytes > SIZE_MAX - 2 * kHugePage) throw std::bad_alloc();
  const size_t mapped = Rounded(bytes) + kHugePage;
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t raw = reinterpret_cast<uintptr_t>(p);
  const uintptr_t start = (raw + kHugePage - 1) / kHugePage * kHugePage;
  if (start > raw) ::munmap(p, start - raw);
  const size_t tail = mapped - (start - raw) - Rounded(bytes);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(start + Rounded(bytes)), tail);
  void* data = reinterpret_cast<void*>(start);
#ifdef MADV_HUGEPAGE
  ::madvise(data, Rounded(bytes), MADV_HUGEPAGE);  // advice only: 4 KiB pages if refused
#endif
  return data;
}

void Free(void* p, size_t bytes) noexcept {
  if (p == nullptr) return;
  if (bytes < kHugePageMinBytes) {
    ::operator delete(p);
    return;
  }
  ::munmap(p, Rounded(bytes));
}

}  // namespace gemma4::huge_pages_internal
