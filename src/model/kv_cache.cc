#include "model/kv_cache.h"

#include <cstring>

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

void KvCache::AppendState(int64_t end, std::string* out) const {
  for (const Layer& l : layers_) {
    if (l.row == 0) continue;
    const int64_t rows = l.ring ? l.capacity : std::min(end, l.capacity);
    const size_t n = static_cast<size_t>(rows * l.row) * sizeof(float);
    out->append(reinterpret_cast<const char*>(l.k.data()), n);
    out->append(reinterpret_cast<const char*>(l.v.data()), n);
  }
}

Status KvCache::RestoreState(int64_t end, std::string_view bytes, size_t* offset) {
  GEMMA4_RETURN_IF_ERROR(Reserve(end));
  for (Layer& l : layers_) {
    if (l.row == 0) continue;
    const int64_t rows = l.ring ? l.capacity : end;
    const size_t n = static_cast<size_t>(rows * l.row) * sizeof(float);
    if (bytes.size() - *offset < 2 * n) {
      return DataLossError("session state: KV cache data truncated at byte " +
                           std::to_string(*offset));
    }
    std::memcpy(l.k.data(), bytes.data() + *offset, n);
    std::memcpy(l.v.data(), bytes.data() + *offset + n, n);
    *offset += 2 * n;
  }
  return OkStatus();
}

uint64_t KvCache::bytes() const {
  uint64_t b = 0;
  for (const Layer& l : layers_) b += (l.k.size() + l.v.size()) * sizeof(float);
  return b;
}

}  // namespace gemma4
