// Per-layer key/value storage. Sliding-window layers keep a ring buffer of W - 1 + max_chunk
// positions (enough for every query of a chunk to see its W keys); global layers keep every
// position. KV-shared layers own no storage: they read their source layer's cache, which the
// source has already updated for the current chunk.
#ifndef GEMMA4_SRC_MODEL_KV_CACHE_H_
#define GEMMA4_SRC_MODEL_KV_CACHE_H_

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/status.h"
#include "model/config.h"

namespace gemma4 {

// Storage that grows without copying: the largest size it may ever need is reserved as address
// space up front (anonymous mmap, MAP_NORESERVE) and pages become resident only when written,
// so a growing context costs exactly the rows used, with no reallocation copies. Falls back to a
// std::vector where the reservation fails.
class KvArena {
 public:
  KvArena() = default;
  ~KvArena();
  KvArena(const KvArena&) = delete;
  KvArena& operator=(const KvArena&) = delete;
  KvArena(KvArena&& other) noexcept;
  KvArena& operator=(KvArena&& other) noexcept;

  // Sets the most bytes this arena will hold (once, before Grow).
  void SetLimit(size_t max_bytes);
  // Makes [0, bytes) usable (contents of the existing prefix kept).
  Status Grow(size_t bytes);
  uint8_t* data() { return base_ != nullptr ? base_ : fallback_.data(); }
  const uint8_t* data() const { return base_ != nullptr ? base_ : fallback_.data(); }
  size_t size() const { return size_; }

 private:
  void Release();
  uint8_t* base_ = nullptr;  // mmap'ed reservation, or null (fallback_ in use)
  size_t reserved_ = 0;      // bytes in the reservation
  size_t limit_ = 0;
  size_t size_ = 0;
  std::vector<uint8_t> fallback_;
};

// How cached keys and values are stored. f32 keeps the float forward pass exact; f16 (IEEE
// half, rounded to nearest even) halves the cache (E2B at 4K context: 63 -> 32 MiB), as
// llama.cpp's default cache does; attention widens it back to f32 exactly on load. q8_0 and
// q4_0 store each head's row in ggml's blocks of 32 values (34 and 18 bytes: an f16 scale and
// 8- or 4-bit values, the layout of llama.cpp's -ctk/-ctv q8_0 and q4_0), 0.27x and 0.14x of
// f32; attention dequantizes tiles of keys and values to f32 (needs head_dim % 32 == 0).
enum class KvType { kF32, kF16, kQ8_0, kQ4_0 };
const char* KvTypeName(KvType type);
// "f32", "f16", "q8_0" or "q4_0" (llama.cpp's names); nullopt for anything else.
std::optional<KvType> ParseKvType(std::string_view name);
bool IsQuantizedKvType(KvType type);
// Bytes that `values` cached values take in `type` (values % 32 == 0 for the block types).
uint64_t KvRowBytes(KvType type, int64_t values);
// The KV cache's resident bytes once positions [0, tokens) are stored: each global layer's
// rows for `tokens` positions plus each sliding layer's whole ring (W - 1 + max_chunk
// positions, allocated up front), keys and values, in `type`. Equals KvCache::bytes() after
// Reserve(tokens) (tested); the one place that knows what a position costs in each type.
uint64_t KvCacheBytes(const ModelConfig& config, KvType type, int64_t tokens, int64_t max_chunk);
// Rows of a sliding layer's ring: its window's W - 1 earlier positions and a step of
// max_chunk (at least 1) new ones.
inline int64_t KvRingRows(const ModelConfig& config, int64_t max_chunk) {
  return int64_t{config.sliding_window} - 1 + std::max<int64_t>(1, max_chunk);
}
// Why `config` cannot use `type` (block types need every cached head_dim % 32 == 0), or OK.
Status CheckKvType(const ModelConfig& config, KvType type);

class KvCache {
 public:
  struct Layer {
    bool ring = false;      // sliding: slot = position % capacity
    int64_t capacity = 0;   // positions storable (grows for global layers)
    int64_t row = 0;        // values per position: num_kv_heads * head_dim
    int64_t row_bytes = 0;  // bytes per position in the cache's type
    KvArena k;              // [capacity, num_kv_heads, head_dim], normed and roped
    KvArena v;              // [capacity, num_kv_heads, head_dim], normed
  };

  KvCache(const ModelConfig& config, int64_t max_chunk, KvType type = KvType::kF32);
  // Copies hold the same positions (only the rows in use are copied).
  KvCache(const KvCache& other);
  KvCache& operator=(const KvCache& other);

  // Makes room for positions [0, end) in every global layer. Fails past max_context.
  Status Reserve(int64_t end);

  KvType type() const { return type_; }
  // Rows of `position` as T: float for kF32, uint16_t (half bits) for kF16, uint8_t (blocks,
  // head g's at byte g * KvRowBytes(type, head_dim)) for kQ8_0 and kQ4_0.
  template <class T>
  T* K(int layer, int64_t position) {
    return reinterpret_cast<T*>(Slot(layer, position, &Layer::k));
  }
  template <class T>
  T* V(int layer, int64_t position) {
    return reinterpret_cast<T*>(Slot(layer, position, &Layer::v));
  }
  template <class T>
  const T* K(int layer, int64_t position) const {
    return const_cast<KvCache*>(this)->K<T>(layer, position);
  }
  template <class T>
  const T* V(int layer, int64_t position) const {
    return const_cast<KvCache*>(this)->V<T>(layer, position);
  }
  // How many positions from `position` on are stored at consecutive rows (a ring buffer wraps).
  int64_t ContiguousRun(int layer, int64_t position) const {
    const Layer& l = layers_[layer];
    return l.ring ? l.capacity - position % l.capacity : INT64_MAX;
  }
  int64_t max_chunk() const { return max_chunk_; }
  int64_t max_context() const { return max_context_; }
  // Bytes between consecutive positions of `layer`'s rows.
  int64_t row_bytes(int layer) const { return layers_[layer].row_bytes; }
  // Bytes held by all layers.
  uint64_t bytes() const;

  // Serialized state of positions [0, end): each global layer's first `end` rows, and each
  // ring's first SavedRingRows(end) slots, in this cache's type (the caller records the type
  // and the ring rows beside the bytes).
  void AppendState(int64_t end, std::string* out) const;
  // The slots of each ring AppendState(end) writes: min(end, ring capacity), 0 without rings.
  // While a ring has not wrapped (end <= capacity) positions [0, end) are slots [0, end), and
  // nothing later reads a slot past them before a forward step writes it: a step reads the
  // window of its positions after writing them, and Truncate only goes back to positions whose
  // window lies below `end` (a fresh session's state is a few bytes, not W - 1 + step rows
  // a ring: 12 MiB for E2B at 512-token steps).
  int64_t SavedRingRows(int64_t end) const;
  // Restores what AppendState(end) wrote, with ring_rows rows a ring: SavedRingRows(end), or
  // -1 or the ring's capacity for whole rings (states saved before the rings were cut at
  // `end`); other counts are DataLoss. A ring's slots past its saved rows are zeroed.
  Status RestoreState(int64_t end, int64_t ring_rows, std::string_view bytes, size_t* offset);

  // The sliding-window rings' bytes as they are now. A ring only holds its last
  // W - 1 + max_chunk positions, so returning to an older position later needs the rings as
  // they were there (global layers keep every position and need nothing).
  struct RingSnapshot {
    std::vector<std::vector<uint8_t>> k, v;  // per layer; empty for non-ring layers
  };
  // The rings' slots of positions [0, end) while they have not wrapped, else whole
  // (SavedRingRows(end) rows each: the slots past them are not read again before a forward
  // step rewrites them, see SavedRingRows). A short conversation's rewind points copy a few
  // rows, not W - 1 + max_chunk.
  Status SaveRings(int64_t end, RingSnapshot* out) const;
  // Writes the snapshot's rows back (its first slots; the others keep what they hold).
  void RestoreRings(const RingSnapshot& snapshot);

 private:
  uint8_t* Slot(int layer, int64_t position, KvArena Layer::*which) {
    Layer& l = layers_[layer];
    const int64_t slot = l.ring ? position % l.capacity : position;
    return (l.*which).data() + slot * l.row_bytes;
  }

  KvType type_;
  std::string unsupported_;    // why the model cannot use type_ (Reserve fails), or empty
  std::vector<Layer> layers_;  // indexed by layer; shared layers have capacity 0
  int64_t max_chunk_;
  int64_t max_context_;
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_KV_CACHE_H_
