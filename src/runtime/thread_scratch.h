// Per-thread scratch buffers reused across calls (decode makes hundreds of ParallelFor calls per
// token), without a `thread_local` object that has a destructor: glibc registers such an
// object's destructor on its first use in each thread and aborts the process ("failed to
// register TLS destructor") when that registration cannot allocate. Here the thread_local is a
// plain pointer; the object is created with new (std::bad_alloc, which the pool carries to the
// caller as any job's exception) and deleted at thread exit through a pthread key, whose
// per-thread slot needs no allocation.
#ifndef GEMMA4_SRC_RUNTIME_THREAD_SCRATCH_H_
#define GEMMA4_SRC_RUNTIME_THREAD_SCRATCH_H_

namespace gemma4 {
namespace thread_scratch_internal {
// Schedules deleter(object) for when the calling thread exits; throws std::bad_alloc if it
// cannot (the caller then deletes the object itself).
void DeleteAtThreadExit(void* object, void (*deleter)(void*));
}  // namespace thread_scratch_internal

// The calling thread's instance of T for the call site named by Tag (any distinct type).
template <class T, class Tag = T>
T& ThreadScratch() {
  thread_local T* instance = nullptr;
  if (instance == nullptr) {
    T* created = new T();
    try {
      thread_scratch_internal::DeleteAtThreadExit(created,
                                                  [](void* p) { delete static_cast<T*>(p); });
    } catch (...) {
      delete created;
      throw;
    }
    instance = created;
  }
  return *instance;
}

}  // namespace gemma4

#endif  // GEMMA4_SRC_RUNTIME_THREAD_SCRATCH_H_
