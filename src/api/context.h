// The seam between a session and the language model. A context is a KV cache of the positions
// it has run: it forwards new positions and gives the logits after them, forgets positions
// (Truncate, rewind points), copies and serializes itself. Sessions hold one through this
// interface and make them through the model's ContextSource, so that the session's own
// bookkeeping (history, KV prefix reuse, rewinds, save/restore) is tested against a scripted
// double (tests/fake_model.h) without any model; ModelContexts() wraps the real InferenceState.
#ifndef GEMMA4_SRC_API_CONTEXT_H_
#define GEMMA4_SRC_API_CONTEXT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/status.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/kv_cache.h"

namespace gemma4 {

class ContextState {
 public:
  virtual ~ContextState() = default;
  // Runs input.n positions at [position(), position() + n); `logits` gets [n, vocab] (kAll),
  // [vocab] (kLast) or nothing (kNone). See InferenceState::Forward.
  virtual Status Forward(const ForwardInput& input, LogitsMode mode,
                         std::vector<float>* logits) = 0;
  virtual int64_t position() const = 0;
  // Positions one Forward step takes; bidirectional blocks must fit in it.
  virtual int64_t max_chunk() const = 0;
  virtual KvType kv_type() const = 0;
  // Forgetting positions [new_position, position()): see InferenceState::Truncate.
  virtual bool CanTruncateTo(int64_t new_position) const = 0;
  // The lowest position Truncate reaches without a rewind point (InferenceState::
  // rewind_floor); saved states carry it.
  virtual int64_t rewind_floor() const = 0;
  virtual Status Truncate(int64_t new_position) = 0;
  virtual Status SetRewindPoint(int slot) = 0;
  virtual int64_t rewind_point(int slot) const = 0;  // -1: none
  virtual int64_t LatestRewindPoint(int64_t position) const = 0;
  // Copies `other`'s cache and position (a context of the same source and max_chunk).
  virtual Status CopyStateFrom(const ContextState& other) = 0;
  // Position + cache as bytes, and back.
  // ring_rows: saved_ring_rows() of the saving state, or -1 (InferenceState::RestoreState).
  virtual void AppendState(std::string* out) const = 0;
  virtual int64_t saved_ring_rows() const = 0;
  virtual Status RestoreState(int64_t position, int64_t rewind_floor, int64_t ring_rows,
                              std::string_view bytes, size_t* offset) = 0;
  // Where the forward calls put their final-normed hidden rows ([n, hidden]); null: nowhere.
  virtual void set_hidden_output(std::vector<float>* rows) = 0;
  // The model's own state, which the drafter reads (speculative decoding); null for a double.
  virtual InferenceState* inference() { return nullptr; }
};

// What sessions need of a language model: its config (hidden size, vocabulary, media ids) and
// fresh, empty contexts.
class ContextSource {
 public:
  virtual ~ContextSource() = default;
  virtual const ModelConfig& config() const = 0;
  // Names the weights the contexts run (saved session states carry it).
  virtual uint64_t weights_fingerprint() const = 0;
  virtual std::unique_ptr<ContextState> NewContext(int64_t max_chunk) const = 0;
};

// Contexts over a loaded model: InferenceStates on `pool` with caches of `kv_type`. `model`
// and `pool` must outlive the source and its contexts.
std::unique_ptr<ContextSource> ModelContexts(const LoadedModel& model, ThreadPool* pool,
                                             KvType kv_type);

}  // namespace gemma4

#endif  // GEMMA4_SRC_API_CONTEXT_H_
