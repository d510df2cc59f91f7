#include "runtime/thread_scratch.h"

#include <pthread.h>

#include <new>

namespace gemma4::thread_scratch_internal {
namespace {

// One node per scratch object of a thread, linked from the thread's key slot.
struct Node {
  void* object;
  void (*deleter)(void*);
  Node* next;
};

void DeleteAll(void* head) {
  for (Node* n = static_cast<Node*>(head); n != nullptr;) {
    Node* next = n->next;
    n->deleter(n->object);
    delete n;
    n = next;
  }
}

pthread_key_t Key() {
  static const pthread_key_t key = [] {
    pthread_key_t k;
    if (pthread_key_create(&k, DeleteAll) != 0) throw std::bad_alloc();
    return k;
  }();
  return key;
}

}  // namespace

void DeleteAtThreadExit(void* object, void (*deleter)(void*)) {
  const pthread_key_t key = Key();
  Node* node = new Node{object, deleter, static_cast<Node*>(pthread_getspecific(key))};
  if (pthread_setspecific(key, node) != 0) {
    delete node;
    throw std::bad_alloc();
  }
}

}  // namespace gemma4::thread_scratch_internal
