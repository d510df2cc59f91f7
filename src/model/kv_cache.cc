#include "model/kv_cache.h"

#include <algorithm>
#include <new>

namespace gemma4 {

KvCache::KvCache(const ModelConfig& config, int64_t max_chunk)
    : max_chunk_(max_chunk), max_context_(config.max_position_embeddings) {
  layers_.resize(config.num_layers);
  for (int i = 0; i < config.num_layers; ++i) {
    const LayerConfig& lc = config.layers[i];
    if (lc.kv_shared) continue;
    Layer& l = layers_[i];
    l.row = int64_t{lc.num_kv_heads} * lc.head_dim;
    if (lc.sliding) {
      l.ring = true;
      l.capacity = config.sliding_window - 1 + max_chunk;
      l.k.resize(l.capacity * l.row);
      l.v.resize(l.capacity * l.row);
    }
  }
}

Status KvCache::Reserve(int64_t end) {
  if (end > max_context_) {
    return OutOfRangeError("context of " + std::to_string(end) +
                           " tokens exceeds the model's maximum of " +
                           std::to_string(max_context_));
  }
  for (Layer& l : layers_) {
    if (l.ring || l.row == 0 || end <= l.capacity) continue;
    const int64_t cap = std::min(max_context_, std::max(end, l.capacity * 2));
    try {
      l.k.resize(cap * l.row);
      l.v.resize(cap * l.row);
    } catch (const std::bad_alloc&) {
      return ResourceExhaustedError("out of memory growing the KV cache to " + std::to_string(cap) +
                                    " positions");
    }
    l.capacity = cap;
  }
  return OkStatus();
}

uint64_t KvCache::bytes() const {
  uint64_t b = 0;
  for (const Layer& l : layers_) b += (l.k.size() + l.v.size()) * sizeof(float);
  return b;
}

}  // namespace gemma4
