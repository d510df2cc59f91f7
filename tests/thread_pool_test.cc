// ThreadPool::ParallelFor: exact coverage of [0, n), range contract, reuse, and lifetime; and the
// runtime's huge-page allocator for activation buffers.
#include "runtime/thread_pool.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <new>
#include <stdexcept>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "child_process.h"
#include "formats/mapped_file.h"
#include "runtime/huge_pages.h"
#include "sanitizers.h"

namespace gemma4 {
namespace {

struct Recorded {
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::vector<std::thread::id> threads;
};

// Runs one ParallelFor and checks that [0, n) is covered exactly once by at most
// kChunksPerThread * num_threads() ranges, each at least `grain` long except possibly the last.
void CheckCoverage(ThreadPool* pool, int64_t n, int64_t grain,
                   int chunks_per_thread = ThreadPool::kChunksPerThread) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (auto& h : hits) h.store(0);
  Recorded rec;
  pool->ParallelFor(
      n, grain,
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          if (i >= 0 && i < n) hits[i].fetch_add(1, std::memory_order_relaxed);
        }
        std::lock_guard<std::mutex> lock(rec.mu);
        rec.ranges.emplace_back(begin, end);
      },
      chunks_per_thread);
  const std::string where = "n=" + std::to_string(n) + " grain=" + std::to_string(grain) +
                            " threads=" + std::to_string(pool->num_threads()) +
                            " chunks per thread=" + std::to_string(chunks_per_thread);
  if (n <= 0) {
    EXPECT_TRUE(rec.ranges.empty()) << where;
    return;
  }
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << where << " i=" << i;
  ASSERT_GE(rec.ranges.size(), 1u) << where;
  EXPECT_LE(rec.ranges.size(),
            static_cast<size_t>(std::max(1, chunks_per_thread) * pool->num_threads()))
      << where;
  std::sort(rec.ranges.begin(), rec.ranges.end());
  int64_t expect_begin = 0;
  for (size_t r = 0; r < rec.ranges.size(); ++r) {
    const auto [begin, end] = rec.ranges[r];
    EXPECT_EQ(begin, expect_begin) << where;
    EXPECT_LT(begin, end) << where << ": empty range";
    if (r + 1 < rec.ranges.size()) {
      EXPECT_GE(end - begin, std::max<int64_t>(grain, 1)) << where << ": range shorter than grain";
    }
    expect_begin = end;
  }
  EXPECT_EQ(expect_begin, n) << where;
}

// Runs one split of [0, n) through `split` (a ParallelFor* call given the recording body) and
// checks that every index is covered exactly once; returns the ranges the body got, sorted.
template <class Split>
std::vector<std::pair<int64_t, int64_t>> RunRecorded(int64_t n, Split split) {
  Recorded rec;
  std::vector<std::atomic<int>> hits(static_cast<size_t>(std::max<int64_t>(n, 1)));
  split([&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
    std::lock_guard<std::mutex> lock(rec.mu);
    rec.ranges.emplace_back(begin, end);
  });
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
  std::sort(rec.ranges.begin(), rec.ranges.end());
  return rec.ranges;
}

TEST(ThreadPoolTest, NumThreadsCountsTheCaller) {
  EXPECT_EQ(ThreadPool(1).num_threads(), 1);
  EXPECT_EQ(ThreadPool(4).num_threads(), 4);
  EXPECT_EQ(ThreadPool(0).num_threads(), 1);
  EXPECT_EQ(ThreadPool(-3).num_threads(), 1);
}

TEST(ThreadPoolTest, CoversRangeExactlyOnce) {
  const int64_t ns[] = {0, -5, 1, 2, 3, 5, 7, 15, 16, 17, 31, 32, 33, 47, 64, 100, 257, 1000, 1023};
  const int64_t grains[] = {-1, 0, 1, 2, 3, 7, 16, 64, 1000, 5000};
  for (int threads : {1, 2, 3, 4, 5, 8}) {
    // One pool reused across every combination (parts vary from call to call) ...
    ThreadPool pool(threads);
    for (int64_t n : ns) {
      for (int64_t grain : grains) {
        // The default chunks per thread, and the prefill GEMMs' finer split (and nonsense).
        for (int chunks_per_thread : {ThreadPool::kChunksPerThread, 1, 16, 0}) {
          CheckCoverage(&pool, n, grain, chunks_per_thread);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
  // ... and fresh pools for a few combinations.
  for (int threads : {2, 3, 7}) {
    for (int64_t n : {1, 9, 100}) {
      ThreadPool pool(threads);
      CheckCoverage(&pool, n, 1);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(ThreadPoolTest, StreamsCoverTheRangeWithEachThreadsPartFrontToBack) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 5, 48, 97, 768, 1000}) {
      for (int64_t grain : {-3, 0, 1, 2, 24, 5000}) {
        // max_piece: none, a cap above and below the eighth, and one below grain (grain wins).
        for (int64_t max_piece : {INT64_MAX, int64_t{40}, int64_t{3}, int64_t{0}}) {
          const auto pieces = RunRecorded(
              n, [&](const auto& body) { pool.ParallelForStreams(n, grain, body, max_piece); });
          if (HasFailure()) return;
          if (n == 0) {
            EXPECT_TRUE(pieces.empty());
            continue;
          }
          const int64_t g = std::max<int64_t>(1, grain);
          if (threads == 1 || n <= g) {  // nothing to share: one call over the whole range
            ASSERT_EQ(pieces.size(), 1u);
            continue;
          }
          // Every piece lies inside one thread's part ([n * i / T, n * (i + 1) / T), rounded as
          // ParallelFor's chunks) and is at most an eighth of that part (or max_piece, if less)
          // or `grain` items long.
          const int64_t t = pool.num_threads();
          for (const auto& [begin, end] : pieces) {
            ASSERT_LT(begin, end);
            int64_t part_begin = 0, part_end = 0;
            for (int64_t i = 0; i < t; ++i) {
              const int64_t b = i * (n / t) + std::min(i, n % t), e = b + n / t + (i < n % t);
              if (begin >= b && begin < e) {
                part_begin = b;
                part_end = e;
              }
            }
            ASSERT_LE(end, part_end) << "a piece crosses two threads' parts: n=" << n;
            ASSERT_LE(end - begin, std::max(g, std::min(max_piece, (part_end - part_begin) / 8)))
                << "n=" << n << " grain=" << grain << " max_piece=" << max_piece;
          }
        }
      }
    }
  }
  // An exception from a streamed job reaches the caller, and the pool goes on working.
  ThreadPool pool(3);
  EXPECT_THROW(pool.ParallelForStreams(300, 4,
                                       [](int64_t b, int64_t) {
                                         if (b > 150) throw std::bad_alloc();
                                       }),
               std::bad_alloc);
  std::atomic<int64_t> sum{0};
  pool.ParallelForStreams(100, 4, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) sum += k;
  });
  EXPECT_EQ(sum.load(), 4950);
}

// A thread held up inside its first piece (descheduled, say) has the rest of its part taken
// from the back by the others, in pieces of `grain` items.
TEST(ThreadPoolTest, StreamsLetFreeThreadsTakeTheRestOfAHeldUpThreadsPart) {
  ThreadPool pool(2);
  ASSERT_EQ(pool.num_threads(), 2);
  const std::thread::id caller = std::this_thread::get_id();
  constexpr int64_t kN = 800, kGrain = 5;  // the caller's part is [0, 400)
  std::atomic<int64_t> taken_from_callers_part{0};
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> stolen;
  int64_t first_end = -1;  // the caller's first piece: [0, first_end)
  // The worker holds its own part until the caller has claimed its first piece: on a loaded
  // machine the caller can otherwise lose the CPU right after starting the job while the
  // worker runs its part and steals all of the caller's, which this test does not measure.
  std::atomic<bool> caller_started{false};
  pool.ParallelForStreams(kN, kGrain, [&](int64_t begin, int64_t end) {
    if (std::this_thread::get_id() == caller) {
      if (first_end >= 0) return;
      first_end = end;
      caller_started = true;
      EXPECT_EQ(begin, 0);  // a thread starts at the front of its own part
      // Its first piece is [0, 50) (an eighth of its part) unless the worker got there first;
      // it waits until the worker has taken everything after it (or 20 s: then the
      // assertions below fail).
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (taken_from_callers_part.load() < 400 - end &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      return;
    }
    if (begin >= 400) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (!caller_started.load() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    if (begin < 400) {
      taken_from_callers_part += end - begin;
      std::lock_guard<std::mutex> lock(mu);
      stolen.emplace_back(begin, end);
    }
  });
  ASSERT_GT(first_end, 0);
  EXPECT_LE(first_end, 50);
  EXPECT_EQ(taken_from_callers_part.load(), 400 - first_end);
  ASSERT_FALSE(stolen.empty());
  for (size_t i = 0; i < stolen.size(); ++i) {
    EXPECT_LE(stolen[i].second - stolen[i].first, kGrain);
    // From the back: each stolen piece ends where the one before it began.
    if (i > 0) {
      EXPECT_EQ(stolen[i].second, stolen[i - 1].first);
    }
  }
  EXPECT_EQ(stolen.front().second, 400);
  EXPECT_EQ(stolen.back().first, first_end);
}

TEST(ThreadPoolTest, ZeroWorkNeverCallsFn) {
  ThreadPool pool(3);
  int calls = 0;
  pool.ParallelFor(0, 1, [&](int64_t, int64_t) { ++calls; });
  pool.ParallelFor(-1, 16, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ThreadPoolTest, SingleThreadRunsInlineOnCaller) {
  ThreadPool pool(1);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::thread::id who;
  pool.ParallelFor(1000, 1, [&](int64_t b, int64_t e) {
    ranges.emplace_back(b, e);
    who = std::this_thread::get_id();
  });
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].first, 0);
  EXPECT_EQ(ranges[0].second, 1000);
  EXPECT_EQ(who, std::this_thread::get_id());
}

TEST(ThreadPoolTest, CallerTakesPartAndWorkersRunConcurrently) {
  // Every range waits until all ranges have started: this only completes if the caller and the
  // workers run at the same time. A timeout keeps a broken pool from hanging the test.
  constexpr int kThreads = 3;
  ThreadPool pool(kThreads);
  std::atomic<int> started{0};
  std::atomic<bool> all_met{true};
  std::mutex mu;
  std::vector<std::thread::id> ids;
  pool.ParallelFor(kThreads, 1, [&](int64_t, int64_t) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ids.push_back(std::this_thread::get_id());
    }
    started.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (started.load() < kThreads) {
      if (std::chrono::steady_clock::now() > deadline) {
        all_met = false;
        break;
      }
      std::this_thread::yield();
    }
  });
  EXPECT_TRUE(all_met.load());
  ASSERT_EQ(ids.size(), static_cast<size_t>(kThreads));
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(std::unique(ids.begin(), ids.end()), ids.end()) << "two ranges on one thread";
  EXPECT_NE(std::find(ids.begin(), ids.end(), std::this_thread::get_id()), ids.end())
      << "the calling thread did not take part";
}

TEST(ThreadPoolTest, ThousandsOfRepeatedCallsWithoutDeadlock) {
  for (int threads : {2, 3, 4}) {
    ThreadPool pool(threads);
    std::vector<int64_t> data(97);
    for (int iter = 0; iter < 3000; ++iter) {
      // Vary n so that the number of parts changes between consecutive calls, including calls
      // that use fewer parts than there are workers and calls that run inline.
      const int64_t n = 1 + (iter * 7) % 97;
      pool.ParallelFor(n, 1 + iter % 3, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) data[i] += 1;
      });
    }
    int64_t total = 0;
    for (int64_t v : data) total += v;
    int64_t expect = 0;
    for (int iter = 0; iter < 3000; ++iter) expect += 1 + (iter * 7) % 97;
    EXPECT_EQ(total, expect) << "threads=" << threads;
  }
}

TEST(ThreadPoolTest, DestructionWhileIdle) {
  // Destroyed right away: workers may not even have reached their wait yet.
  for (int i = 0; i < 50; ++i) {
    ThreadPool pool(1 + i % 5);
  }
  // Destroyed after work, once the workers have gone back to waiting.
  for (int i = 0; i < 20; ++i) {
    ThreadPool pool(4);
    std::atomic<int64_t> sum{0};
    pool.ParallelFor(100, 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) sum += k;
    });
    EXPECT_EQ(sum.load(), 4950);
    if (i % 5 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

TEST(ThreadPoolTest, SeveralPoolsInParallel) {
  // Pools own no global state: two pools driven from two threads do not interfere.
  auto drive = [](std::atomic<int64_t>* out) {
    ThreadPool pool(3);
    for (int iter = 0; iter < 300; ++iter) {
      pool.ParallelFor(50, 1, [&](int64_t b, int64_t e) { *out += e - b; });
    }
  };
  std::atomic<int64_t> a{0}, b{0};
  std::thread ta(drive, &a), tb(drive, &b);
  ta.join();
  tb.join();
  EXPECT_EQ(a.load(), 300 * 50);
  EXPECT_EQ(b.load(), 300 * 50);
}

TEST(ThreadPoolTest, ExceptionInAJobReachesTheCallerNotTerminate) {
  // A worker that throws (std::bad_alloc from a scratch buffer) used to reach std::terminate.
  for (int threads : {2, 4}) {
    ThreadPool pool(threads);
    for (int failing_chunk = 0; failing_chunk < 8; ++failing_chunk) {
      std::atomic<int> calls{0};
      EXPECT_THROW(pool.ParallelFor(8 * 16, 16,
                                    [&](int64_t begin, int64_t) {
                                      calls.fetch_add(1);
                                      if (begin / 16 == failing_chunk) throw std::bad_alloc();
                                    }),
                   std::bad_alloc)
          << "threads=" << threads << " chunk=" << failing_chunk;
      EXPECT_GE(calls.load(), 1);
    }
    // The pool is still usable, and other exception types arrive unchanged.
    EXPECT_THROW(pool.ParallelFor(100, 1, [](int64_t, int64_t) { throw std::runtime_error("x"); }),
                 std::runtime_error);
    std::atomic<int64_t> sum{0};
    pool.ParallelFor(100, 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) sum += k;
    });
    EXPECT_EQ(sum.load(), 4950);
  }
}

TEST(ThreadPoolTest, ThreadsAreCappedAtAMultipleOfTheHardwareThreads) {
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(ThreadPool::MaxThreads(), ThreadPool::kMaxThreadsPerCore * hardware);
  EXPECT_EQ(ThreadPool(1 << 20).num_threads(), ThreadPool::MaxThreads());
  EXPECT_EQ(ThreadPool(ThreadPool::MaxThreads() + 1).num_threads(), ThreadPool::MaxThreads());
  EXPECT_EQ(ThreadPool(ThreadPool::MaxThreads()).num_threads(), ThreadPool::MaxThreads());
}

TEST(ThreadPoolTest, ThreadCreationFailingPartWayLeavesASmallerWorkingPool) {
  if (!testing::kAddressSpaceLimitsWork) GTEST_SKIP() << "address-space limits under a sanitizer";
  // Each thread's stack takes 256 MiB of address space and the limit leaves room for about
  // three: creating the fourth fails (as a process thread limit would) and used to end in
  // std::terminate or a deadlock. The child is killed after 60 s, so a hang fails the test.
  const testing::ChildResult result = testing::RunInChild([] {
    constexpr size_t kStack = size_t{256} << 20;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0 || pthread_attr_setstacksize(&attr, kStack) != 0 ||
        pthread_setattr_default_np(&attr) != 0) {
      return 10;
    }
    if (!testing::LimitAddressSpace(3 * kStack + kStack / 2)) return 11;
    ThreadPool pool(ThreadPool::MaxThreads());
    if (pool.num_threads() < 1 || pool.num_threads() >= ThreadPool::MaxThreads()) {
      std::fprintf(stderr, "pool has %d threads\n", pool.num_threads());
      return ThreadPool::MaxThreads() <= 4 ? 0 : 12;  // a machine too small to tell
    }
    std::atomic<int64_t> sum{0};
    for (int iter = 0; iter < 100; ++iter) {
      pool.ParallelFor(100, 1, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) sum += k;
      });
    }
    return sum.load() == 100 * 4950 ? 0 : 13;
  });
  EXPECT_TRUE(result.exited && result.exit_code == 0) << result.Describe();
}

// Blocks of 1 MiB and more start on a 2 MiB boundary (so the kernel can back them with huge
// pages); vectors of any size keep their contents through growth, copies and shrinking; an
// impossible size throws std::bad_alloc as std::allocator does.
TEST(HugePages, LargeBlocksAreAlignedAndVectorsBehave) {
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  HugePageVector<float> large(3 << 18);                                   // 3 MiB
  const bool mapped = large.size() * sizeof(float) >= kHugePageMinBytes;  // not under ASan
  if (mapped) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(large.data()) % kHugePage, 0u);
  }
  for (size_t i = 0; i < large.size(); ++i) large[i] = static_cast<float>(i);
  large.resize(large.size() * 2 + 7, -1.0f);  // a new, larger mapping
  if (mapped) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(large.data()) % kHugePage, 0u);
  }
  EXPECT_EQ(large[12345], 12345.0f);
  EXPECT_EQ(large[(3 << 18) - 1], static_cast<float>((3 << 18) - 1));
  EXPECT_EQ(large.back(), -1.0f);
  HugePageVector<float> copy = large;
  EXPECT_EQ(copy, large);
  HugePageVector<int32_t> small(100, 7);  // from operator new
  small.push_back(8);
  EXPECT_EQ(small.front() + small.back(), 15);
  large.resize(10);
  large.shrink_to_fit();
  EXPECT_EQ(large[9], 9.0f);
  if (mapped && !testing::kSanitizedBuild) {  // sanitizer allocators abort on such sizes
    HugePageVector<float> empty;
    EXPECT_THROW(empty.reserve(empty.max_size()), std::bad_alloc);
    HugePageAllocator<float> alloc;
    EXPECT_THROW(static_cast<void>(alloc.allocate(size_t{1} << 58)), std::bad_alloc);
  }
}

// PageVector (the forward pass's scratch): blocks of 128 KiB and more are page-aligned mappings
// whose pages leave the resident set when the vector frees them, also after glibc has raised its
// mmap threshold (a freed 24 MiB malloc block raises it to 24 MiB; a 16 MiB std::vector would
// then come from malloc's heap and stay resident once freed). Run in a child, whose heap the
// other tests have not shaped. Smaller blocks come from operator new; contents survive growth.
TEST(HugePages, PageVectorBlocksGoBackToTheKernelWhenFreed) {
  if (testing::kSanitizedBuild) GTEST_SKIP() << "every block comes from operator new";
  const testing::ChildResult result = testing::RunInChild([]() -> int {
    void* volatile raised = std::malloc(size_t{24} << 20);
    static_cast<char*>(raised)[0] = 1;
    std::free(raised);
    const uint64_t before = testing::ProcStatusBytes("VmRSS:");
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    {
      PageVector<float> v(size_t{4} << 20);  // 16 MiB, zero-filled: every page written
      if (reinterpret_cast<uintptr_t>(v.data()) % page != 0) return 10;
      if (testing::ProcStatusBytes("VmRSS:") < before + (size_t{15} << 20)) return 11;
      v[12345] = 3.0f;
      v.resize(v.size() + 1000, 2.0f);  // a new mapping, the old one unmapped
      if (v[12345] != 3.0f || v.back() != 2.0f || v[0] != 0.0f) return 12;
      PageVector<int16_t> small(1000, 7);  // 2000 bytes, from operator new
      small.push_back(8);
      if (small.front() + small.back() != 15) return 13;
    }
    if (testing::ProcStatusBytes("VmRSS:") > before + (size_t{1} << 20)) return 14;
    return 0;
  });
  EXPECT_TRUE(result.exited && result.exit_code == 0) << result.Describe();
}

// The one mapping helper under HugePageAllocator and AnonymousMemory: the start is aligned as
// asked (2 MiB, or the system page for smaller alignments), every byte of the rounded-up length
// is mapped zero-filled and writable, and sizes that overflow fail with ENOMEM instead of
// mapping a wrapped-around length.
TEST(HugePages, MapAnonymousAlignsAndMapsTheWholeLength) {
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  struct Case {
    size_t length, align;
    bool huge_pages;
  };
  for (const Case& c : {Case{3 * kHugePage + 12345, kHugePage, true}, Case{1, kHugePage, true},
                        Case{5 * page + 1, 0, false}, Case{0, 1, false}}) {
    SCOPED_TRACE(std::to_string(c.length) + " bytes, align " + std::to_string(c.align));
    auto* p = static_cast<uint8_t*>(MapAnonymous(c.length, c.align, c.huge_pages));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % std::max<size_t>(c.align, page), 0u);
    const size_t rounded = (std::max<size_t>(c.length, 1) + page - 1) / page * page;
    EXPECT_EQ(p[0], 0);
    EXPECT_EQ(p[rounded - 1], 0);
    for (size_t i = 0; i < rounded; i += page / 2) p[i] = static_cast<uint8_t>(i / page + 1);
    p[rounded - 1] = 0xAB;
    EXPECT_EQ(p[rounded - page / 2], static_cast<uint8_t>((rounded - page / 2) / page + 1));
    EXPECT_EQ(p[rounded - 1], 0xAB);
    UnmapAnonymous(p, c.length);
  }
  UnmapAnonymous(nullptr, 100);  // nothing
  errno = 0;
  EXPECT_EQ(MapAnonymous(SIZE_MAX - 10, kHugePage, true), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  // A HugePageAllocator block occupies whole huge pages once it is mapped.
  EXPECT_EQ(HugePageBlockBytes(100), 100u);
  if (kHugePageMinBytes <= (size_t{1} << 20)) {
    EXPECT_EQ(HugePageBlockBytes(size_t{1} << 20), kHugePage);
    EXPECT_EQ(HugePageBlockBytes(kHugePage), kHugePage);
    EXPECT_EQ(HugePageBlockBytes(kHugePage + 1), 2 * kHugePage);
  }
}

// AnonymousMemory (the repacked weights) maps through MapAnonymous: 2 MiB-aligned when asked
// for huge pages, page-aligned otherwise, zero-filled and writable over its whole size; a size
// no mapping can hold is ResourceExhausted.
TEST(HugePages, AnonymousMemoryIsAlignedAndUsable) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (const bool huge : {true, false}) {
    for (const size_t size : {size_t{0}, size_t{1}, (size_t{5} << 20) + 3}) {
      SCOPED_TRACE(std::to_string(size) + (huge ? " bytes, huge pages" : " bytes"));
      auto memory = AnonymousMemory::Allocate(size, huge);
      ASSERT_TRUE(memory.ok()) << memory.status().ToString();
      uint8_t* data = (*memory)->data();
      EXPECT_EQ((*memory)->size(), size);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % (huge ? kHugePageBytes : page), 0u);
      for (size_t i = 0; i < size; i += 4096) {
        EXPECT_EQ(data[i], 0);
        data[i] = 1;
      }
      if (size > 0) {
        data[size - 1] = 2;
        EXPECT_EQ(data[size - 1], 2);
      }
      EXPECT_EQ(AnonymousMemory::ResidentBytes(size, huge),
                (std::max<size_t>(size, 1) + page - 1) / page * page);
    }
  }
  auto impossible = AnonymousMemory::Allocate(SIZE_MAX - 10, true);
  ASSERT_FALSE(impossible.ok());
  EXPECT_EQ(impossible.status().code(), StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace gemma4
