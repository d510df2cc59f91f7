// Per-layer key/value storage. Sliding-window layers keep a ring buffer of W - 1 + max_chunk
// positions (enough for every query of a chunk to see its W keys); global layers keep every
// position. KV-shared layers own no storage: they read their source layer's cache, which the
// source has already updated for the current chunk.
#ifndef GEMMA4_SRC_MODEL_KV_CACHE_H_
#define GEMMA4_SRC_MODEL_KV_CACHE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/status.h"
#include "model/config.h"

namespace gemma4 {

// Float storage that grows without copying: the largest size it may ever need is reserved as
// address space up front (anonymous mmap, MAP_NORESERVE) and pages become resident only when
// written, so a growing context costs exactly the rows used, with no reallocation copies. Falls
// back to a std::vector where the reservation fails.
class FloatArena {
 public:
  FloatArena() = default;
  ~FloatArena();
  FloatArena(const FloatArena&) = delete;
  FloatArena& operator=(const FloatArena&) = delete;
  FloatArena(FloatArena&& other) noexcept;
  FloatArena& operator=(FloatArena&& other) noexcept;

  // Sets the most floats this arena will hold (once, before Grow).
  void SetLimit(size_t max_floats);
  // Makes [0, floats) usable (contents of the existing prefix kept).
  Status Grow(size_t floats);
  float* data() { return base_ != nullptr ? base_ : fallback_.data(); }
  const float* data() const { return base_ != nullptr ? base_ : fallback_.data(); }
  size_t size() const { return size_; }

 private:
  void Release();
  float* base_ = nullptr;  // mmap'ed reservation, or null (fallback_ in use)
  size_t reserved_ = 0;    // floats in the reservation
  size_t limit_ = 0;
  size_t size_ = 0;
  std::vector<float> fallback_;
};

class KvCache {
 public:
  struct Layer {
    bool ring = false;     // sliding: slot = position % capacity
    int64_t capacity = 0;  // positions storable (grows for global layers)
    int64_t row = 0;       // floats per position: num_kv_heads * head_dim
    FloatArena k;          // [capacity, num_kv_heads, head_dim], normed and roped
    FloatArena v;          // [capacity, num_kv_heads, head_dim], normed
  };

  KvCache(const ModelConfig& config, int64_t max_chunk);
  // Copies hold the same positions (only the rows in use are copied).
  KvCache(const KvCache& other);
  KvCache& operator=(const KvCache& other);

  // Makes room for positions [0, end) in every global layer. Fails past max_context.
  Status Reserve(int64_t end);

  float* K(int layer, int64_t position) { return Slot(layer, position, &Layer::k); }
  float* V(int layer, int64_t position) { return Slot(layer, position, &Layer::v); }
  const float* K(int layer, int64_t position) const {
    return const_cast<KvCache*>(this)->K(layer, position);
  }
  const float* V(int layer, int64_t position) const {
    return const_cast<KvCache*>(this)->V(layer, position);
  }
  // How many positions from `position` on are stored at consecutive rows (a ring buffer wraps).
  int64_t ContiguousRun(int layer, int64_t position) const {
    const Layer& l = layers_[layer];
    return l.ring ? l.capacity - position % l.capacity : INT64_MAX;
  }
  int64_t max_chunk() const { return max_chunk_; }
  int64_t max_context() const { return max_context_; }
  // Bytes held by all layers.
  uint64_t bytes() const;

  // Serialized state of positions [0, end): each global layer's first `end` rows and each ring's
  // full buffer. Restore checks the layout against this cache's.
  void AppendState(int64_t end, std::string* out) const;
  Status RestoreState(int64_t end, std::string_view bytes, size_t* offset);

 private:
  float* Slot(int layer, int64_t position, FloatArena Layer::*which) {
    Layer& l = layers_[layer];
    const int64_t slot = l.ring ? position % l.capacity : position;
    return (l.*which).data() + slot * l.row;
  }

  std::vector<Layer> layers_;  // indexed by layer; shared layers have capacity 0
  int64_t max_chunk_;
  int64_t max_context_;
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_KV_CACHE_H_
