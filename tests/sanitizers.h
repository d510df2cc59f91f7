// Whether this test binary runs under a sanitizer runtime (ASan, TSan): such builds skip or
// shrink cases that only cost time there, and cannot apply address-space limits.
#ifndef GEMMA4_TESTS_SANITIZERS_H_
#define GEMMA4_TESTS_SANITIZERS_H_

namespace gemma4::testing {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitizedBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitizedBuild = true;
#else
inline constexpr bool kSanitizedBuild = false;
#endif
#else
inline constexpr bool kSanitizedBuild = false;
#endif

}  // namespace gemma4::testing

#endif  // GEMMA4_TESTS_SANITIZERS_H_
