// Private anonymous memory straight from mmap, aligned (2 MiB for huge pages) and advised for
// transparent huge pages (MapAnonymous: AnonymousMemory in formats/mapped_file.h maps the
// repacked weights with it), and allocators on top of it whose large blocks go back to the
// kernel when freed:
// - HugePageVector, for large activation buffers made per call (the towers' [patches, width]
//   arrays, tens of MB per call): blocks of 1 MiB or more are mapped 2 MiB-aligned with
//   MADV_HUGEPAGE, so the first touch of each 2 MiB costs one page fault instead of 512 (on the
//   VMs this runs on a 4 KiB fault costs about 10 us: 130 ms of a 3.4 s image encode went to
//   faulting in fresh vectors).
// - PageVector, for the text forward pass's scratch, kept between steps and sized by the memory
//   plan: blocks of 128 KiB or more are mapped with the system's pages, so what is resident is
//   what was written, to the page. Through malloc these had stayed resident after being freed:
//   glibc raises its mmap threshold (up to 32 MiB) each time a mapped block is freed, after
//   which blocks of that size come from its heap, and a freed block inside the heap is kept, not
//   returned (measured: 10 MiB, +2.7% over the plan of a two-layer E2B-wide model at 768
//   tokens; +0.3% with the threshold fixed).
// Smaller blocks come from operator new. The allocators' failures throw std::bad_alloc, as
// std::allocator does.
#ifndef GEMMA4_SRC_RUNTIME_HUGE_PAGES_H_
#define GEMMA4_SRC_RUNTIME_HUGE_PAGES_H_

#include <cstddef>
#include <new>
#include <vector>

namespace gemma4 {

// Blocks of this many bytes and more are mapped (HugePageVector, PageVector); smaller ones
// come from operator new. Under AddressSanitizer every block comes from operator new, so
// overruns of these buffers stay detectable (ASan does not watch raw mappings).
// (Namespace-scope constexpr, not inline: the ISA translation units build with -fno-weak,
// under which GCC refuses inline variables.)
#if defined(__SANITIZE_ADDRESS__)
#define GEMMA4_MAPPED_BLOCKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GEMMA4_MAPPED_BLOCKS 0
#else
#define GEMMA4_MAPPED_BLOCKS 1
#endif
#else
#define GEMMA4_MAPPED_BLOCKS 1
#endif
constexpr size_t kHugePageMinBytes =
    GEMMA4_MAPPED_BLOCKS ? size_t{1} << 20 : static_cast<size_t>(-1);
constexpr size_t kPageMinBytes = GEMMA4_MAPPED_BLOCKS ? size_t{128} << 10 : static_cast<size_t>(-1);
#undef GEMMA4_MAPPED_BLOCKS

// The transparent huge page of x86-64: the alignment of huge-page mappings and the unit the
// allocator's mapped blocks are rounded up to.
constexpr size_t kHugePageBytes = size_t{2} << 20;

// Maps `length` bytes (rounded up to the system page; at least one page) of private anonymous
// read-write memory, zero-filled, starting at a multiple of `align` (a power of two; the system
// page when smaller), and when `huge_pages` advises the kernel to back it with transparent huge
// pages (advice only: 4 KiB pages if refused). The mapping is made `align` larger so that an
// aligned start exists inside it, and the slack on either side is unmapped at once: only the
// returned range stays mapped, resident as far as it is written. nullptr with errno set on
// failure (ENOMEM when the sizes overflow). Give it back with UnmapAnonymous(p, length).
void* MapAnonymous(size_t length, size_t align, bool huge_pages) noexcept;
// Unmaps what MapAnonymous(length, ...) returned (the same length); nothing for nullptr.
void UnmapAnonymous(void* p, size_t length) noexcept;

// The bytes a HugePageAllocator block of `bytes` occupies: mapped blocks are rounded up to whole
// huge pages (so that the last one can be a huge page too), smaller ones are what they ask for
// (operator new's own overhead aside). Saturates instead of overflowing.
constexpr size_t HugePageBlockBytes(size_t bytes) {
  if (bytes < kHugePageMinBytes) return bytes;
  if (bytes > static_cast<size_t>(-1) - kHugePageBytes) return static_cast<size_t>(-1);
  return (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
}

namespace huge_pages_internal {
// huge_pages: HugePageAllocator's blocks, else PageAllocator's.
void* Allocate(size_t bytes, bool huge_pages);  // throws std::bad_alloc
void Free(void* p, size_t bytes, bool huge_pages) noexcept;
}  // namespace huge_pages_internal

template <class T, bool kHugePages>
struct MappedAllocator {
  using value_type = T;
  // Spelled out: the default rebinding only rewrites type parameters, not kHugePages.
  template <class U>
  struct rebind {
    using other = MappedAllocator<U, kHugePages>;
  };
  MappedAllocator() = default;
  template <class U>
  MappedAllocator(const MappedAllocator<U, kHugePages>&) noexcept {}  // NOLINT: rebinding
  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_alloc();
    return static_cast<T*>(huge_pages_internal::Allocate(n * sizeof(T), kHugePages));
  }
  void deallocate(T* p, size_t n) noexcept {
    huge_pages_internal::Free(p, n * sizeof(T), kHugePages);
  }
  template <class U>
  bool operator==(const MappedAllocator<U, kHugePages>&) const noexcept {
    return true;
  }
};

template <class T>
using HugePageAllocator = MappedAllocator<T, true>;
template <class T>
using PageAllocator = MappedAllocator<T, false>;

// std::vectors whose large blocks are mapped as above (same interface and zero-filling).
template <class T>
using HugePageVector = std::vector<T, HugePageAllocator<T>>;
template <class T>
using PageVector = std::vector<T, PageAllocator<T>>;

}  // namespace gemma4

#endif  // GEMMA4_SRC_RUNTIME_HUGE_PAGES_H_
