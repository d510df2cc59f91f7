#include "runtime/huge_pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>

namespace gemma4 {
namespace {

size_t SystemPage() { return static_cast<size_t>(::sysconf(_SC_PAGESIZE)); }

// length rounded up to whole system pages (one at least); 0 if that overflows.
size_t PageRounded(size_t length, size_t page) {
  if (length == 0) length = 1;
  if (length > SIZE_MAX - (page - 1)) return 0;
  return (length + page - 1) / page * page;
}

}  // namespace

void* MapAnonymous(size_t length, size_t align, bool huge_pages) noexcept {
  const size_t page = SystemPage();
  if (align < page) align = page;
  const size_t rounded = PageRounded(length, page);
  if (rounded == 0 || rounded > SIZE_MAX - align) {
    errno = ENOMEM;
    return nullptr;
  }
  // One alignment unit of slack (none at page alignment, which mmap already gives).
  const size_t mapped = rounded + (align > page ? align : 0);
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  const uintptr_t raw = reinterpret_cast<uintptr_t>(p);
  const uintptr_t start = (raw + align - 1) / align * align;
  if (start > raw) ::munmap(p, start - raw);
  const size_t tail = mapped - (start - raw) - rounded;
  if (tail > 0) ::munmap(reinterpret_cast<void*>(start + rounded), tail);
  void* data = reinterpret_cast<void*>(start);
#ifdef MADV_HUGEPAGE
  if (huge_pages) ::madvise(data, rounded, MADV_HUGEPAGE);  // advice only: fine if refused
#else
  static_cast<void>(huge_pages);
#endif
  return data;
}

void UnmapAnonymous(void* p, size_t length) noexcept {
  if (p != nullptr) ::munmap(p, PageRounded(length, SystemPage()));
}

namespace huge_pages_internal {

void* Allocate(size_t bytes, bool huge_pages) {
  if (bytes < (huge_pages ? kHugePageMinBytes : kPageMinBytes)) return ::operator new(bytes);
  if (bytes > SIZE_MAX - 2 * kHugePageBytes) throw std::bad_alloc();
  void* p = huge_pages ? MapAnonymous(HugePageBlockBytes(bytes), kHugePageBytes, true)
                       : MapAnonymous(bytes, 0, false);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void Free(void* p, size_t bytes, bool huge_pages) noexcept {
  if (p == nullptr) return;
  if (bytes < (huge_pages ? kHugePageMinBytes : kPageMinBytes)) {
    ::operator delete(p);
    return;
  }
  UnmapAnonymous(p, huge_pages ? HugePageBlockBytes(bytes) : bytes);
}

}  // namespace huge_pages_internal
}  // namespace gemma4
