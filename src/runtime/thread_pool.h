// A small fork-join thread pool owned by whoever runs inference (a session or a CLI run); no
// global state. ParallelFor splits [0, n) into contiguous chunks (a few per thread) that the
// calling thread and the workers take in turn, so a thread slowed by other load on a shared
// machine takes fewer chunks instead of holding everyone up. Decode issues hundreds of short
// ParallelFor calls per token, so idle workers spin briefly before sleeping, and the caller spins
// briefly for completion; spinning yields to other runnable threads, and a pool with more
// threads than the machine has hardware threads does not spin at all.
//
// Failures: the pool never throws from its constructor and never lets an exception escape a
// worker. Threads that cannot be created (a process limit, no memory for a stack) leave a
// smaller pool; a request beyond kMaxThreadsPerCore threads per hardware thread is capped there,
// since oversubscribing a few cores by hundreds of spinning threads makes every ParallelFor
// wait for descheduled workers (thousands of times slower than the cores alone). An exception
// thrown by a job in any thread (std::bad_alloc from a scratch buffer, say) stops the remaining
// chunks and is rethrown to the ParallelFor caller, on the caller's thread, once every worker
// is done with the job; the library's entry points turn it into a Status.
#ifndef GEMMA4_SRC_RUNTIME_THREAD_POOL_H_
#define GEMMA4_SRC_RUNTIME_THREAD_POOL_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace gemma4 {

class ThreadPool {
 public:
  // num_threads counts the caller: 1 means run everything inline. The pool may hold fewer (see
  // above); num_threads() says how many it got.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // At most this many threads per hardware thread (std::thread::hardware_concurrency()).
  static constexpr int kMaxThreadsPerCore = 4;
  // The most threads a pool holds on this machine: kMaxThreadsPerCore * hardware threads.
  static int MaxThreads();

  // Calls fn(begin, end) on disjoint ranges covering [0, n), at most chunks_per_thread *
  // num_threads() of them, each at least `grain` long (except when n < grain); a thread may get
  // several. Not reentrant: do not call from inside fn, and call from one thread at a time.
  // If fn throws, the chunks not yet started are skipped and the first exception is rethrown
  // here after all threads have left the job. More chunks per thread shorten the wait for the
  // last one (a thread finishing early idles for up to one chunk) at the cost of one atomic
  // increment each.
  static constexpr int kChunksPerThread = 4;
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn,
                   int chunks_per_thread = kChunksPerThread);
  // For jobs that stream memory front to back (decode's matmuls, which read each weight once
  // from DRAM): each thread owns one contiguous part of [0, n) (the parts of ParallelFor with
  // one chunk per thread) and takes pieces from its front (an eighth of what is left of it, at
  // least `grain` items); a thread whose part is done takes `grain` items at a time from the
  // back of the part with the most left. So each
  // thread reads one sequential stream that its prefetches run ahead of without a break, and
  // the last thread to finish waits for at most one piece. (ParallelFor's fixed chunks, four
  // per thread, left a thread idle for about half a chunk at the end of every job: in E2B's
  // decode, 250 jobs a token, the pool's spin loops took ~9% of the samples.) Pieces go to
  // threads in an order that depends on timing; fn must give every item the same result
  // whichever thread runs it. max_piece caps the owner's pieces (prefill's matmuls, which
  // re-read a piece's weights from L2 for every token tile).
  void ParallelForStreams(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn,
                          int64_t max_piece = INT64_MAX);

 private:
  // self: the thread's index in the job's parts (0 is the caller, worker i is i + 1).
  void WorkerLoop(int self);
  // Takes chunks (or, for ParallelForStreams, pieces) of the current job until none is left;
  // an exception from the job is recorded in job_error_ (the first one) and ends the job.
  void RunChunks(int self);
  void RunPieces(int self);
  // Ends the job after a failure: no thread starts another chunk or piece.
  void AbandonJob();
  // Publishes the job (job_chunks_ chunks of job_n_, or the parts of ParallelForStreams), runs
  // chunks on this thread too and waits for the workers.
  void RunJob(const std::function<void(int64_t, int64_t)>& fn);

  std::vector<std::thread> workers_;
  std::chrono::microseconds spin_{0};  // how long idle threads spin before blocking
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  // The current job; written by the caller before generation_ is bumped (release) and read by
  // workers after they observe the new generation (acquire).
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int job_chunks_ = 0;
  // How the current job is split: ParallelFor's equal chunks or ParallelForStreams' parts.
  enum class JobKind { kChunks, kStreams };
  JobKind kind_ = JobKind::kChunks;
  // ParallelForStreams: each thread's part as (begin << 32 | end), the owner moving begin up
  // and other threads moving end down, one compare-and-swap a piece; a cache line each.
  struct alignas(64) StreamPart {
    std::atomic<uint64_t> range{0};
  };
  int64_t grain_ = 1;
  int64_t max_piece_ = INT64_MAX;        // ParallelForStreams: the owner's largest piece
  std::unique_ptr<StreamPart[]> parts_;  // num_threads() of them; null if allocation failed
  std::atomic<int> next_chunk_{0};
  std::mutex error_mu_;
  std::exception_ptr job_error_;  // guarded by error_mu_
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_RUNTIME_THREAD_POOL_H_
