// An allocator for large activation buffers (the towers' [patches, width] arrays, tens of MB per
// call): blocks of 1 MiB or more are mapped 2 MiB-aligned with MADV_HUGEPAGE, so the first touch
// of each 2 MiB costs one page fault instead of 512 (on the VMs this runs on a 4 KiB fault costs
// about 10 us: 130 ms of a 3.4 s image encode went to faulting in fresh vectors). Smaller blocks
// come from operator new. Failure throws std::bad_alloc, as std::allocator does.
#ifndef GEMMA4_SRC_RUNTIME_HUGE_PAGES_H_
#define GEMMA4_SRC_RUNTIME_HUGE_PAGES_H_

#include <cstddef>
#include <new>
#include <vector>

namespace gemma4 {

// Blocks of this many bytes and more are mapped; smaller ones come from operator new. Under
// AddressSanitizer every block comes from operator new, so overruns of these buffers stay
// detectable (ASan does not watch raw mappings).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr size_t kHugePageMinBytes = static_cast<size_t>(-1);
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr size_t kHugePageMinBytes = static_cast<size_t>(-1);
#else
inline constexpr size_t kHugePageMinBytes = size_t{1} << 20;
#endif
#else
inline constexpr size_t kHugePageMinBytes = size_t{1} << 20;
#endif

namespace huge_pages_internal {
void* Allocate(size_t bytes);  // throws std::bad_alloc
void Free(void* p, size_t bytes) noexcept;
}  // namespace huge_pages_internal

template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}  // NOLINT: rebinding converts
  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_alloc();
    return static_cast<T*>(huge_pages_internal::Allocate(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) noexcept { huge_pages_internal::Free(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
};

// A std::vector whose large buffers are huge-page backed (same interface and zero-filling).
template <class T>
using HugePageVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace gemma4

#endif  // GEMMA4_SRC_RUNTIME_HUGE_PAGES_H_
