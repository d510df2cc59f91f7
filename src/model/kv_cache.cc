#include "model/kv_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

#include "quant/quant.h"

namespace gemma4 {

KvArena::~KvArena() { Release(); }

KvArena::KvArena(KvArena&& other) noexcept { *this = std::move(other); }

KvArena& KvArena::operator=(KvArena&& other) noexcept {
  if (this != &other) {
    Release();
    base_ = other.base_;
    reserved_ = other.reserved_;
    limit_ = other.limit_;
    size_ = other.size_;
    fallback_ = std::move(other.fallback_);
    other.base_ = nullptr;
    other.reserved_ = other.size_ = other.limit_ = 0;
  }
  return *this;
}

void KvArena::Release() {
  if (base_ != nullptr) munmap(base_, reserved_);
  base_ = nullptr;
  reserved_ = 0;
}

void KvArena::SetLimit(size_t max_bytes) {
  Release();
  fallback_.clear();
  size_ = 0;
  limit_ = max_bytes;
  if (max_bytes == 0) return;
  void* p = mmap(nullptr, max_bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p != MAP_FAILED) {
    base_ = static_cast<uint8_t*>(p);
    reserved_ = max_bytes;
  }
}

Status KvArena::Grow(size_t bytes) {
  if (bytes <= size_) return OkStatus();
  if (bytes > limit_)
    return OutOfRangeError("KV arena: " + std::to_string(bytes) + " bytes exceed the limit of " +
                           std::to_string(limit_));
  if (base_ != nullptr) {
    size_ = bytes;  // pages are zero-filled on first touch
    return OkStatus();
  }
  try {
    fallback_.resize(std::min(limit_, std::max(bytes, 2 * fallback_.size())));
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory growing the KV cache to " + std::to_string(bytes) +
                                  " bytes");
  }
  size_ = bytes;
  return OkStatus();
}

const char* KvTypeName(KvType type) {
  switch (type) {
    case KvType::kF32:
      return "f32";
    case KvType::kF16:
      return "f16";
    case KvType::kQ8_0:
      return "q8_0";
    case KvType::kQ4_0:
      return "q4_0";
  }
  return "?";
}

std::optional<KvType> ParseKvType(std::string_view name) {
  for (KvType t : {KvType::kF32, KvType::kF16, KvType::kQ8_0, KvType::kQ4_0}) {
    if (name == KvTypeName(t)) return t;
  }
  return std::nullopt;
}

bool IsQuantizedKvType(KvType type) { return type == KvType::kQ8_0 || type == KvType::kQ4_0; }

uint64_t KvRowBytes(KvType type, int64_t values) {
  const uint64_t n = static_cast<uint64_t>(values);
  switch (type) {
    case KvType::kF32:
      return 4 * n;
    case KvType::kF16:
      return 2 * n;
    case KvType::kQ8_0:
      return n / 32 * quant::kQ8_0BlockBytes;
    case KvType::kQ4_0:
      return n / 32 * quant::kQ4_0BlockBytes;
  }
  return 0;
}

uint64_t KvCacheBytes(const ModelConfig& config, KvType type, int64_t tokens, int64_t max_chunk) {
  uint64_t bytes = 0;
  for (int i = 0; i < config.num_layers; ++i) {
    const LayerConfig& lc = config.layers[i];
    if (lc.kv_shared) continue;
    const uint64_t row = KvRowBytes(type, int64_t{lc.num_kv_heads} * lc.head_dim);
    const int64_t positions = lc.sliding ? KvRingRows(config, max_chunk) : tokens;
    bytes += 2 * row * static_cast<uint64_t>(positions);  // keys and values
  }
  return bytes;
}

Status CheckKvType(const ModelConfig& config, KvType type) {
  if (!IsQuantizedKvType(type)) return OkStatus();
  for (int i = 0; i < config.num_layers; ++i) {
    const LayerConfig& lc = config.layers[i];
    if (!lc.kv_shared && lc.head_dim % 32 != 0) {
      return InvalidArgumentError(std::string("KV cache type ") + KvTypeName(type) +
                                  " stores each head in blocks of 32 values, but layer " +
                                  std::to_string(i) + " has head_dim " +
                                  std::to_string(lc.head_dim) + " (use f32 or f16)");
    }
  }
  return OkStatus();
}

KvCache::KvCache(const ModelConfig& config, int64_t max_chunk, KvType type)
    : type_(type), max_chunk_(max_chunk), max_context_(config.max_position_embeddings) {
  if (const Status usable = CheckKvType(config, type); !usable.ok()) {
    unsupported_ = usable.message();
  }
  layers_.resize(config.num_layers);
  for (int i = 0; i < config.num_layers; ++i) {
    const LayerConfig& lc = config.layers[i];
    if (lc.kv_shared) continue;
    Layer& l = layers_[i];
    l.row = int64_t{lc.num_kv_heads} * lc.head_dim;
    // A head_dim the block types cannot hold (CheckKvType, called by Reserve) gets no storage.
    l.row_bytes = lc.head_dim % 32 == 0 || !IsQuantizedKvType(type)
                      ? static_cast<int64_t>(KvRowBytes(type, l.row))
                      : 0;
    if (lc.sliding) {
      l.ring = true;
      l.capacity = KvRingRows(config, max_chunk);
      // A failure here is reported by Reserve, which every forward pass and restore calls
      // first (a constructor cannot return a Status).
      for (KvArena* a : {&l.k, &l.v}) {
        a->SetLimit(static_cast<size_t>(l.capacity * l.row_bytes));
        (void)a->Grow(static_cast<size_t>(l.capacity * l.row_bytes));
      }
    } else {
      for (KvArena* a : {&l.k, &l.v}) {
        a->SetLimit(static_cast<size_t>(max_context_ * l.row_bytes));
      }
    }
  }
}

KvCache::KvCache(const KvCache& other) { *this = other; }

KvCache& KvCache::operator=(const KvCache& other) {
  if (this == &other) return *this;
  type_ = other.type_;
  unsupported_ = other.unsupported_;
  max_chunk_ = other.max_chunk_;
  max_context_ = other.max_context_;
  layers_.clear();
  layers_.resize(other.layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& src = other.layers_[i];
    Layer& dst = layers_[i];
    dst.ring = src.ring;
    dst.capacity = src.capacity;
    dst.row = src.row;
    dst.row_bytes = src.row_bytes;
    if (src.row == 0) continue;
    const size_t limit =
        static_cast<size_t>((src.ring ? src.capacity : max_context_) * src.row_bytes);
    const size_t used = src.k.size();
    for (auto [d, s] : {std::pair{&dst.k, &src.k}, std::pair{&dst.v, &src.v}}) {
      d->SetLimit(limit);
      if (!d->Grow(used).ok()) throw std::bad_alloc();
      if (used > 0) std::memcpy(d->data(), s->data(), used);
    }
  }
  return *this;
}

Status KvCache::Reserve(int64_t end) {
  if (!unsupported_.empty()) return InvalidArgumentError(unsupported_);
  if (end > max_context_) {
    return OutOfRangeError("context of " + std::to_string(end) +
                           " tokens exceeds the model's maximum of " +
                           std::to_string(max_context_));
  }
  for (Layer& l : layers_) {
    if (l.ring) {
      // Every forward pass and restore comes through here before touching a ring: a ring that
      // could not be allocated is an error, never a write through a null buffer.
      const size_t ring_bytes = static_cast<size_t>(l.capacity * l.row_bytes);
      for (KvArena* a : {&l.k, &l.v}) {
        const Status grown = a->Grow(ring_bytes);
        if (!grown.ok()) {
          return ResourceExhaustedError("cannot allocate the sliding-window KV cache (" +
                                        std::to_string(ring_bytes) + " bytes): " + grown.message());
        }
      }
      continue;
    }
    if (l.row == 0 || end <= l.capacity) continue;
    GEMMA4_RETURN_IF_ERROR(l.k.Grow(static_cast<size_t>(end * l.row_bytes)));
    GEMMA4_RETURN_IF_ERROR(l.v.Grow(static_cast<size_t>(end * l.row_bytes)));
    l.capacity = end;
  }
  return OkStatus();
}

int64_t KvCache::SavedRingRows(int64_t end) const {
  for (const Layer& l : layers_) {
    if (l.ring && l.row != 0) return std::min(end, l.capacity);
  }
  return 0;
}

void KvCache::AppendState(int64_t end, std::string* out) const {
  for (const Layer& l : layers_) {
    if (l.row == 0) continue;
    const int64_t rows = std::min(end, l.capacity);  // a ring: SavedRingRows(end)
    const size_t n = static_cast<size_t>(rows * l.row_bytes);
    // A ring that was never allocated (no forward pass succeeded) holds nothing: zeros.
    for (const KvArena* a : {&l.k, &l.v}) {
      const size_t held = std::min(n, a->size());
      out->append(reinterpret_cast<const char*>(a->data()), held);
      out->append(n - held, '\0');
    }
  }
}

Status KvCache::RestoreState(int64_t end, int64_t ring_rows, std::string_view bytes,
                             size_t* offset) {
  GEMMA4_RETURN_IF_ERROR(Reserve(end));
  for (Layer& l : layers_) {
    if (l.row == 0) continue;
    if (l.ring && ring_rows >= 0 && ring_rows != SavedRingRows(end) && ring_rows != l.capacity) {
      return DataLossError(
          "session state: " + std::to_string(ring_rows) + " rows a sliding-window ring (expected " +
          std::to_string(SavedRingRows(end)) + " or " + std::to_string(l.capacity) + ")");
    }
    const int64_t rows = !l.ring ? end : ring_rows < 0 ? l.capacity : ring_rows;
    const size_t n = static_cast<size_t>(rows * l.row_bytes);
    if (bytes.size() - *offset < 2 * n) {
      return DataLossError("session state: KV cache data truncated at byte " +
                           std::to_string(*offset));
    }
    std::memcpy(l.k.data(), bytes.data() + *offset, n);
    std::memcpy(l.v.data(), bytes.data() + *offset + n, n);
    *offset += 2 * n;
    if (l.ring) {
      const size_t ring_bytes = static_cast<size_t>(l.capacity * l.row_bytes);
      std::memset(l.k.data() + n, 0, ring_bytes - n);
      std::memset(l.v.data() + n, 0, ring_bytes - n);
    }
  }
  return OkStatus();
}

Status KvCache::SaveRings(int64_t end, RingSnapshot* out) const {
  try {
    out->k.assign(layers_.size(), {});
    out->v.assign(layers_.size(), {});
    for (size_t i = 0; i < layers_.size(); ++i) {
      const Layer& l = layers_[i];
      if (!l.ring || l.row == 0) continue;
      const size_t n = std::min(static_cast<size_t>(SavedRingRows(end) * l.row_bytes), l.k.size());
      out->k[i].assign(l.k.data(), l.k.data() + n);
      out->v[i].assign(l.v.data(), l.v.data() + n);
    }
  } catch (const std::bad_alloc&) {
    out->k.clear();
    out->v.clear();
    return ResourceExhaustedError("out of memory saving the sliding-window KV rings");
  }
  return OkStatus();
}

void KvCache::RestoreRings(const RingSnapshot& snapshot) {
  for (size_t i = 0; i < layers_.size() && i < snapshot.k.size(); ++i) {
    Layer& l = layers_[i];
    if (!l.ring || l.row == 0 || snapshot.k[i].empty() || snapshot.k[i].size() > l.k.size()) {
      continue;
    }
    std::memcpy(l.k.data(), snapshot.k[i].data(), snapshot.k[i].size());
    std::memcpy(l.v.data(), snapshot.v[i].data(), snapshot.v[i].size());
  }
}

uint64_t KvCache::bytes() const {
  uint64_t b = 0;
  for (const Layer& l : layers_) b += l.k.size() + l.v.size();
  return b;
}

}  // namespace gemma4
