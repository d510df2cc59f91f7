#include "runtime/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <new>
#include <utility>

#include "runtime/denormals.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GEMMA4_CPU_RELAX() _mm_pause()
#else
#define GEMMA4_CPU_RELAX() std::this_thread::yield()
#endif

namespace gemma4 {
namespace {

// How long a thread spins on an atomic before blocking (a token's matmuls are microseconds
// apart during decode; longer idle periods end in a sleep).
constexpr auto kSpin = std::chrono::microseconds(200);

// ParallelForStreams: a thread takes 1/kOwnerPieceShare of what is left of its own part.
constexpr int64_t kOwnerPieceShare = 8;

void PartRange(int64_t n, int parts, int index, int64_t* begin, int64_t* end) {
  const int64_t base = n / parts, rem = n % parts;
  *begin = index * base + std::min<int64_t>(index, rem);
  *end = *begin + base + (index < rem ? 1 : 0);
}

// Spins until pred() holds or `spin` elapses; returns pred(). Every 1024 pauses it also yields,
// so that on a core shared with other runnable threads (another process, or a pool larger than
// the machine) the spinner hands its time slice to them instead of burning it.
template <class Pred>
bool SpinUntil(std::chrono::microseconds spin, Pred pred) {
  if (spin.count() == 0) return pred();
  const auto deadline = std::chrono::steady_clock::now() + spin;
  int n = 0;
  while (!pred()) {
    GEMMA4_CPU_RELAX();
    if (++n % 64 != 0) continue;
    if (std::chrono::steady_clock::now() > deadline) return pred();
    if (n % 1024 == 0) std::this_thread::yield();  // tens of microseconds apart
  }
  return true;
}

}  // namespace

int ThreadPool::MaxThreads() {
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return kMaxThreadsPerCore * hardware;
}

ThreadPool::ThreadPool(int num_threads) {
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // More threads than hardware threads: a spinning thread would hold a core that a descheduled
  // worker with chunks to run needs, so threads block at once.
  spin_ = num_threads > hardware ? std::chrono::microseconds(0) : kSpin;
  const int extra = std::max(0, std::min(num_threads, MaxThreads()) - 1);
  // Without the parts (no memory), ParallelForStreams runs as ParallelFor.
  parts_.reset(new (std::nothrow) StreamPart[extra + 1]);
  try {
    workers_.reserve(extra);
    for (int i = 0; i < extra; ++i) workers_.emplace_back([this, i] { WorkerLoop(i + 1); });
  } catch (const std::exception&) {
    // std::system_error (thread limit, no memory for a stack) or std::bad_alloc: the threads
    // started so far are a working pool; a destructor would not run for a throwing constructor
    // and the vector would destroy joinable threads (std::terminate).
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_release);
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn,
                             int chunks_per_thread) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  // At most n / grain chunks, so that every range is at least `grain` long.
  const int chunks = static_cast<int>(std::min<int64_t>(
      int64_t{num_threads()} * std::max(1, chunks_per_thread), std::max<int64_t>(1, n / grain)));
  if (chunks <= 1 || workers_.empty()) {
    fn(0, n);
    return;
  }
  job_n_ = n;
  job_chunks_ = chunks;
  kind_ = JobKind::kChunks;
  RunJob(fn);
}

void ThreadPool::ParallelForStreams(int64_t n, int64_t grain,
                                    const std::function<void(int64_t, int64_t)>& fn,
                                    int64_t max_piece) {
  if (n <= 0) return;
  if (parts_ == nullptr || n > int64_t{UINT32_MAX}) {
    ParallelFor(n, grain, fn, 1);
    return;
  }
  grain = std::max<int64_t>(1, grain);
  if (workers_.empty() || n <= grain) {
    fn(0, n);
    return;
  }
  for (int i = 0; i < num_threads(); ++i) {
    int64_t begin, end;
    PartRange(n, num_threads(), i, &begin, &end);
    // Published to the workers by RunJob's generation bump (release).
    parts_[i].range.store(static_cast<uint64_t>(begin) << 32 | static_cast<uint64_t>(end),
                          std::memory_order_relaxed);
  }
  grain_ = grain;
  max_piece_ = std::max(grain, max_piece);
  kind_ = JobKind::kStreams;
  RunJob(fn);
}

void ThreadPool::RunJob(const std::function<void(int64_t, int64_t)>& fn) {
  job_ = &fn;
  next_chunk_.store(0, std::memory_order_relaxed);
  job_error_ = nullptr;  // no worker is inside a job here
  // Every worker checks in, taking chunks or not, so none can still be reading this job's fields
  // when the next call overwrites them.
  pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    // Bumping the generation under the mutex pairs with the workers' predicate check, so a
    // worker about to sleep cannot miss it.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  work_cv_.notify_all();
  RunChunks(0);
  if (!SpinUntil(spin_, [this] { return pending_.load(std::memory_order_acquire) == 0; })) {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
  }
  if (job_error_ != nullptr) {
    std::exception_ptr error = std::exchange(job_error_, nullptr);
    std::rethrow_exception(error);
  }
}

void ThreadPool::AbandonJob() {
  next_chunk_.store(job_chunks_, std::memory_order_relaxed);
  if (kind_ == JobKind::kStreams) {
    for (int i = 0; i < num_threads(); ++i) parts_[i].range.store(0, std::memory_order_relaxed);
  }
}

void ThreadPool::RunPieces(int self) {
  // Takes up to grain_ items from the front (own part) or the back (another's) of a part; false
  // once the part is empty.
  auto take = [&](StreamPart& part, bool front, int64_t* begin, int64_t* end) {
    uint64_t range = part.range.load(std::memory_order_relaxed);
    while (true) {
      const int64_t lo = static_cast<int64_t>(range >> 32);
      const int64_t hi = static_cast<int64_t>(range & UINT32_MAX);
      if (lo >= hi) return false;
      // The owner's pieces are an eighth of what is left of its part, down to grain_ near
      // its end: each piece costs a locked instruction, which waits for the job's loads in
      // flight (E2B decode, 64 KiB pieces: 1.9% of the samples on it; an eighth: 0.9%, the
      // pool's spin loops 8.4% -> 4.0% of the samples against ParallelFor).
      const int64_t size = std::min(
          front ? std::min(max_piece_, std::max(grain_, (hi - lo) / kOwnerPieceShare)) : grain_,
          hi - lo);
      *begin = front ? lo : hi - size;
      *end = front ? lo + size : hi;
      const uint64_t rest =
          front ? static_cast<uint64_t>(lo + size) << 32 | static_cast<uint64_t>(hi)
                : static_cast<uint64_t>(lo) << 32 | static_cast<uint64_t>(hi - size);
      if (part.range.compare_exchange_weak(range, rest, std::memory_order_relaxed)) return true;
    }
  };
  auto run = [&](int64_t begin, int64_t end) {
    try {
      (*job_)(begin, end);
      return true;
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(error_mu_);
        if (job_error_ == nullptr) job_error_ = std::current_exception();
      }
      AbandonJob();
      return false;
    }
  };
  int64_t begin, end;
  while (take(parts_[self], /*front=*/true, &begin, &end)) {
    if (!run(begin, end)) return;
  }
  while (true) {
    // The part with the most left, from its back.
    int victim = -1;
    int64_t most = 0;
    for (int i = 0; i < num_threads(); ++i) {
      const uint64_t range = parts_[i].range.load(std::memory_order_relaxed);
      const int64_t left =
          static_cast<int64_t>(range & UINT32_MAX) - static_cast<int64_t>(range >> 32);
      if (left > most) {
        most = left;
        victim = i;
      }
    }
    if (victim < 0) return;
    if (take(parts_[victim], /*front=*/false, &begin, &end) && !run(begin, end)) return;
  }
}

void ThreadPool::RunChunks(int self) {
  if (kind_ == JobKind::kStreams) {
    RunPieces(self);
    return;
  }
  while (true) {
    const int c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    if (c >= job_chunks_) return;
    int64_t begin, end;
    PartRange(job_n_, job_chunks_, c, &begin, &end);
    try {
      (*job_)(begin, end);
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(error_mu_);
        if (job_error_ == nullptr) job_error_ = std::current_exception();
      }
      AbandonJob();  // nobody starts another chunk of a failed job
      return;
    }
  }
}

void ThreadPool::WorkerLoop(int self) {
  // Workers only run this library's jobs: the forward pass's floating-point mode throughout.
  const ScopedDenormalsAreZero denormals_are_zero;
  uint64_t seen = 0;
  while (true) {
    auto has_work = [&] {
      return generation_.load(std::memory_order_acquire) != seen ||
             stop_.load(std::memory_order_acquire);
    };
    if (!SpinUntil(spin_, has_work)) {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, has_work);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    RunChunks(self);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);
      done_cv_.notify_one();
    }
  }
}

}  // namespace gemma4
