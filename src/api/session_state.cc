// Session save/restore: the history, settings, the ids and the KV cache of a SessionImpl as
// one checksummed blob (Session::SaveState, Session::Restore).
#include <algorithm>
#include <cstring>
#include <new>

#include "api/memory_plan.h"
#include "api/model_impl.h"
#include "api/session_impl.h"
#include "base/hash.h"
#include "base/json.h"
#include "model/forward.h"

namespace gemma4 {

// Layout (format 2): "G4SESS02", u64 model fingerprint, then JSON (history, options, tokens)
// length-prefixed, then the KV cache bytes of InferenceState::AppendState, then the logits,
// then a u64 checksum (base/hash.h) of everything before it. The checksum is verified before
// anything is parsed, so a damaged blob (any bit flip, a truncation) is refused as a whole;
// the fingerprint covers the dimensions and a hash of the weights (LoadedModel::
// weights_fingerprint), so a state from another model of the same shape is refused too.
namespace {
constexpr char kMagic[8] = {'G', '4', 'S', 'E', 'S', 'S', '0', '2'};
// Format 1 ("G4SESS01"): no checksum and a dimensions-only fingerprint; no longer accepted.
constexpr char kMagicFormat1[8] = {'G', '4', 'S', 'E', 'S', 'S', '0', '1'};
constexpr size_t kChecksumBytes = 8;
// The largest forward step a saved state may name (it sizes the rings a restore allocates).
constexpr int64_t kMaxSavedStep = 4096;

uint64_t Fingerprint(const ModelImpl& m) {
  Hasher h;
  h.AddWord(static_cast<uint64_t>(m.info.vocab_size));
  h.AddWord(static_cast<uint64_t>(m.info.num_layers));
  h.AddWord(static_cast<uint64_t>(m.info.hidden_size));
  h.AddWord(static_cast<uint64_t>(m.info.num_parameters));
  h.AddWord(m.info.weight_bytes);
  h.AddWord(m.contexts->weights_fingerprint());
  return h.value();
}

void PutU64(uint64_t v, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

bool GetU64(std::string_view in, size_t* offset, uint64_t* v) {
  if (in.size() - *offset < 8 || *offset > in.size()) return false;
  *v = 0;
  for (int i = 0; i < 8; ++i) {
    *v |= static_cast<uint64_t>(static_cast<unsigned char>(in[*offset + i])) << (8 * i);
  }
  *offset += 8;
  return true;
}

json::Value TurnsToJson(const std::vector<Turn>& turns) {
  json::Value::Array list;
  for (const Turn& t : turns) {
    json::Value::Object o;
    o.emplace_back("role", json::Value::Integer(static_cast<int>(t.role)));
    o.emplace_back("text", json::Value::String(t.text));
    o.emplace_back("thought", json::Value::String(t.thought));
    json::Value::Array calls, results;
    for (const ToolCall& c : t.tool_calls) {
      calls.push_back(json::Value::MakeArray(
          {json::Value::String(c.name), json::Value::String(c.arguments_json)}));
    }
    for (const ToolResult& r : t.tool_results) {
      results.push_back(
          json::Value::MakeArray({json::Value::String(r.name), json::Value::String(r.response_json),
                                  json::Value::Bool(r.is_error)}));
    }
    json::Value::Array text_tokens;
    for (int32_t id : t.text_tokens) text_tokens.push_back(json::Value::Integer(id));
    o.emplace_back("text_tokens", json::Value::MakeArray(std::move(text_tokens)));
    // The model turn's ids as the cache holds them, so a restored session reuses its cache.
    json::Value::Array tokens, spans;
    for (int32_t id : t.tokens) tokens.push_back(json::Value::Integer(id));
    for (const auto& [begin, end] : t.thought_spans) {
      spans.push_back(
          json::Value::MakeArray({json::Value::Integer(begin), json::Value::Integer(end)}));
    }
    o.emplace_back("tokens", json::Value::MakeArray(std::move(tokens)));
    o.emplace_back("thought_spans", json::Value::MakeArray(std::move(spans)));
    o.emplace_back("calls", json::Value::MakeArray(std::move(calls)));
    o.emplace_back("results", json::Value::MakeArray(std::move(results)));
    list.push_back(json::Value::MakeObject(std::move(o)));
  }
  return json::Value::MakeArray(std::move(list));
}

Status TurnsFromJson(const json::Value& v, std::vector<Turn>* out) {
  if (!v.is_array()) return DataLossError("session state: history is not a list");
  for (const json::Value& o : v.as_array()) {
    Turn t;
    int64_t role = 0;
    const json::Value* r = o.Find("role");
    if (r == nullptr || !r->GetInt64(&role) || role < 0 || role > 2) {
      return DataLossError("session state: bad turn role");
    }
    t.role = static_cast<Role>(role);
    const json::Value* text = o.Find("text");
    const json::Value* thought = o.Find("thought");
    const json::Value* calls = o.Find("calls");
    const json::Value* results = o.Find("results");
    if (text == nullptr || thought == nullptr || calls == nullptr || results == nullptr) {
      return DataLossError("session state: incomplete turn");
    }
    t.text = text->as_string();
    t.thought = thought->as_string();
    if (const json::Value* ids = o.Find("text_tokens"); ids != nullptr) {
      for (const json::Value& id : ids->as_array()) {
        int64_t v = 0;
        if (!id.GetInt64(&v) || v < 0 || v > INT32_MAX) {
          return DataLossError("session state: bad token id");
        }
        t.text_tokens.push_back(static_cast<int32_t>(v));
      }
    }
    if (const json::Value* ids = o.Find("tokens"); ids != nullptr && ids->is_array()) {
      for (const json::Value& id : ids->as_array()) {
        int64_t v = 0;
        if (!id.GetInt64(&v) || v < 0 || v > INT32_MAX) {
          return DataLossError("session state: bad token id");
        }
        t.tokens.push_back(static_cast<int32_t>(v));
      }
    }
    if (const json::Value* spans = o.Find("thought_spans"); spans != nullptr && spans->is_array()) {
      int64_t last_end = 0;
      for (const json::Value& span : spans->as_array()) {
        int64_t begin = 0, end = 0;
        if (!span.is_array() || span.as_array().size() != 2 ||
            !span.as_array()[0].GetInt64(&begin) || !span.as_array()[1].GetInt64(&end) ||
            begin < last_end || end < begin || end > static_cast<int64_t>(t.tokens.size())) {
          return DataLossError("session state: bad thought span");
        }
        t.thought_spans.emplace_back(static_cast<int32_t>(begin), static_cast<int32_t>(end));
        last_end = end;
      }
    }
    for (const json::Value& c : calls->as_array()) {
      if (c.as_array().size() != 2) return DataLossError("session state: bad tool call");
      t.tool_calls.push_back({c.as_array()[0].as_string(), c.as_array()[1].as_string()});
    }
    for (const json::Value& c : results->as_array()) {
      if (c.as_array().size() != 3) return DataLossError("session state: bad tool result");
      t.tool_results.push_back(
          {c.as_array()[0].as_string(), c.as_array()[1].as_string(), c.as_array()[2].as_bool()});
    }
    out->push_back(std::move(t));
  }
  return OkStatus();
}
}  // namespace

StatusOr<std::string> SessionImpl::SaveState() const {
  for (const Turn& t : history_) {
    if (!t.content.empty()) {
      return UnimplementedError("SaveState: sessions holding images cannot be saved yet");
    }
  }
  std::string out(kMagic, sizeof(kMagic));
  PutU64(Fingerprint(m_), &out);
  json::Value::Object meta;
  meta.reserve(10);  // (also keeps GCC 12's -Warray-bounds false positive on emplace_back away)
  meta.emplace_back("history", TurnsToJson(history_));
  meta.emplace_back("system_prompt", json::Value::String(options_.system_prompt));
  meta.emplace_back("max_context", json::Value::Integer(max_context_));
  meta.emplace_back("policy", json::Value::Integer(static_cast<int>(options_.context_policy)));
  meta.emplace_back("turn_open", json::Value::Bool(turn_open_));
  meta.emplace_back("thinking", json::Value::Bool(last_thinking_));
  meta.emplace_back("kv_type", json::Value::String(KvTypeName(state_->kv_type())));
  // The sliding-window rings' rows (W - 1 + step each) depend on the forward step, which
  // differs between CPUs (DefaultMaxChunk) and under a memory cap: the restoring side adopts it.
  meta.emplace_back("step", json::Value::Integer(state_->max_chunk()));
  // How far back the rings reach (a step cancelled between layers overwrote rows before it).
  meta.emplace_back("rewind_floor", json::Value::Integer(state_->rewind_floor()));
  // Rows saved of each sliding-window ring: up to the position, not the whole ring.
  meta.emplace_back("ring_rows", json::Value::Integer(state_->saved_ring_rows()));
  json::Value::Array tokens;
  for (int32_t id : tokens_) tokens.push_back(json::Value::Integer(id));
  meta.emplace_back("tokens", json::Value::MakeArray(std::move(tokens)));
  const std::string text = json::Value::MakeObject(std::move(meta)).Serialize();
  PutU64(text.size(), &out);
  out += text;
  try {
    state_->AppendState(&out);
    PutU64(logits_.size(), &out);
    out.append(reinterpret_cast<const char*>(logits_.data()), logits_.size() * sizeof(float));
    PutU64(Hash64(out), &out);
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory serializing the session");
  }
  return out;
}

Status SessionImpl::RestoreState(std::string_view bytes) {
  size_t offset = sizeof(kMagic);
  if (bytes.size() >= sizeof(kMagicFormat1) &&
      std::memcmp(bytes.data(), kMagicFormat1, sizeof(kMagicFormat1)) == 0) {
    return FailedPreconditionError(
        "session state: format 1 (saved by gemma4 before 0.5) has no checksum and is no longer "
        "accepted; save the session again");
  }
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return DataLossError("session state: not a gemma4 session state of format 2 (bad magic)");
  }
  if (bytes.size() < sizeof(kMagic) + kChecksumBytes) {
    return DataLossError("session state: truncated (" + std::to_string(bytes.size()) + " bytes)");
  }
  {
    size_t at = bytes.size() - kChecksumBytes;
    uint64_t checksum = 0;
    GetU64(bytes, &at, &checksum);
    bytes.remove_suffix(kChecksumBytes);
    if (checksum != Hash64(bytes)) {
      return DataLossError("session state: checksum mismatch over " + std::to_string(bytes.size()) +
                           " bytes (the state is damaged or truncated)");
    }
  }
  uint64_t fingerprint = 0, meta_size = 0;
  if (!GetU64(bytes, &offset, &fingerprint) || !GetU64(bytes, &offset, &meta_size) ||
      meta_size > bytes.size() - offset) {
    return DataLossError("session state: truncated header");
  }
  if (fingerprint != Fingerprint(m_)) {
    return FailedPreconditionError(
        "session state was saved with a different model (its dimensions or weights differ from "
        "those of " +
        m_.info.path + ")");
  }
  GEMMA4_ASSIGN_OR_RETURN(json::Value meta,
                          json::Parse(bytes.substr(offset, meta_size), "session state"));
  offset += meta_size;
  const json::Value* history = meta.Find("history");
  const json::Value* tokens = meta.Find("tokens");
  int64_t max_context = 0, policy = 0;
  if (history == nullptr || tokens == nullptr || !tokens->is_array() ||
      meta.Find("max_context") == nullptr || !meta.Find("max_context")->GetInt64(&max_context) ||
      meta.Find("policy") == nullptr || !meta.Find("policy")->GetInt64(&policy)) {
    return DataLossError("session state: missing fields");
  }
  // States written before the cache type was recorded hold f32 caches.
  const json::Value* kv_type = meta.Find("kv_type");
  const std::string saved_kv =
      kv_type != nullptr && kv_type->is_string() ? kv_type->as_string() : std::string("f32");
  if (saved_kv != KvTypeName(state_->kv_type())) {
    return FailedPreconditionError(
        "session state holds a " + saved_kv + " KV cache but this model's sessions use " +
        KvTypeName(state_->kv_type()) + " (ModelOptions::kv_cache_type)");
  }
  // The step the rings were saved with (states written before it was recorded: 128 tokens, the
  // only default then). Bounded: it sizes the rings allocated below.
  int64_t step = kSmallestDefaultMaxChunk;
  if (const json::Value* saved_step = meta.Find("step");
      saved_step != nullptr && (!saved_step->GetInt64(&step) || step < 1 || step > kMaxSavedStep)) {
    return DataLossError("session state: bad forward step (1.." + std::to_string(kMaxSavedStep) +
                         ")");
  }
  // Absent (states saved before it was recorded): the rule then, a step back.
  int64_t rewind_floor = -1;
  if (const json::Value* saved_floor = meta.Find("rewind_floor");
      saved_floor != nullptr && (!saved_floor->GetInt64(&rewind_floor) || rewind_floor < 0)) {
    return DataLossError("session state: bad rewind_floor");
  }
  // Absent (states saved before the rings were cut at the position): whole rings.
  int64_t ring_rows = -1;
  if (const json::Value* saved_rows = meta.Find("ring_rows");
      saved_rows != nullptr && (!saved_rows->GetInt64(&ring_rows) || ring_rows < 0)) {
    return DataLossError("session state: bad ring_rows");
  }
  history_.clear();
  GEMMA4_RETURN_IF_ERROR(TurnsFromJson(*history, &history_));
  options_.system_prompt =
      meta.Find("system_prompt") ? meta.Find("system_prompt")->as_string() : "";
  options_.context_policy = policy == 1 ? ContextPolicy::kDropOldTurns : ContextPolicy::kError;
  max_context_ = std::clamp<int64_t>(max_context, 1, std::max<int64_t>(1, m_.info.max_context));
  turn_open_ = meta.Find("turn_open") != nullptr && meta.Find("turn_open")->as_bool();
  last_thinking_ = meta.Find("thinking") != nullptr && meta.Find("thinking")->as_bool();
  tokens_.clear();
  keys_.clear();
  for (const json::Value& t : tokens->as_array()) {
    int64_t id = 0;
    if (!t.GetInt64(&id) || id < 0 || id >= m_.info.vocab_size) {
      return DataLossError("session state: token id out of range");
    }
    tokens_.push_back(static_cast<int32_t>(id));
    keys_.push_back(static_cast<uint32_t>(id));
  }
  if (static_cast<int64_t>(tokens_.size()) > max_context_) {
    return DataLossError("session state: more tokens than the context holds");
  }
  if (const uint64_t limit = m_.options.memory_limit_bytes; limit != 0) {
    GEMMA4_ASSIGN_OR_RETURN(const PlanInputs* inputs, m_.plan_inputs());
    PlanInputs stepped = *inputs;
    stepped.max_chunk = step;
    GEMMA4_RETURN_IF_ERROR(CheckMemoryLimit(stepped, ComputeMemoryPlan(stepped, max_context_),
                                            limit, "the restored session of " + m_.info.path));
  }
  if (step != state_->max_chunk()) state_ = m_.contexts->NewContext(step);
  const int64_t position = static_cast<int64_t>(tokens_.size());
  if (rewind_floor < 0) rewind_floor = std::max<int64_t>(0, position - step);
  if (rewind_floor > position) return DataLossError("session state: rewind_floor past the tokens");
  GEMMA4_RETURN_IF_ERROR(state_->RestoreState(position, rewind_floor, ring_rows, bytes, &offset));
  uint64_t n_logits = 0;
  // The logits after the last token, or none: an empty session, or one whose prompt was
  // cancelled or failed before its last step.
  if (!GetU64(bytes, &offset, &n_logits) ||
      (n_logits != 0 &&
       (tokens_.empty() || n_logits != static_cast<uint64_t>(m_.info.vocab_size))) ||
      (bytes.size() - offset) != n_logits * sizeof(float)) {
    return DataLossError("session state: bad logits block");
  }
  logits_.resize(n_logits);
  // An empty session has no logits (and data() may be null, which memcpy must not get).
  if (n_logits > 0) std::memcpy(logits_.data(), bytes.data() + offset, n_logits * sizeof(float));
  return OkStatus();
}

}  // namespace gemma4
