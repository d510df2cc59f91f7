#include "model/model.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>

#include "base/hash.h"
#include "kernels/kernels.h"
#include "kernels/pack/pack.h"
#include "model/gguf_model.h"
#include "ops/ops.h"
#include "quant/quant.h"

namespace gemma4 {
namespace {

bool IsGgufPath(const std::string& path) {
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0) return true;
  // Only a regular file is opened (a FIFO would block the open; the loader refuses the rest).
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  char magic[4] = {};
  const bool gguf = std::fread(magic, 1, 4, f) == 4 && std::memcmp(magic, "GGUF", 4) == 0;
  std::fclose(f);
  return gguf;
}

// Drops the whole pages inside [data, data + n) of a file mapping from this process's
// resident set (they are re-read from the file if touched again).
void ReleasePages(const uint8_t* data, uint64_t n) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + n) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// Loading frees many small allocations (GGUF metadata such as the 262144 vocabulary strings,
// name maps); their pages stay in the resident set of a malloc heap until trimmed (E2B: ~3 MiB).
void ReturnFreedHeapPages() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

void AdviseRandomAccess(const uint8_t* data, uint64_t n) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + n + page - 1) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_RANDOM);
}

// A fingerprint of the text weights for saved session states: every tensor's name, type and
// shape, and 3 x 256 bytes of its data (start, middle, end), read with pread where the file is
// open (a few pages per tensor; the loader has just touched them). Two models of the same
// dimensions with other weights differ in it.
StatusOr<uint64_t> FingerprintWeights(
    const std::vector<std::pair<std::string, TensorView>>& tensors) {
  constexpr uint64_t kWindow = 256;
  Hasher h;
  uint8_t buffer[kWindow];
  for (const auto& [name, t] : tensors) {
    h.Add(name);
    h.AddWord(static_cast<uint64_t>(t.dtype));
    for (int64_t d : t.shape) h.AddWord(static_cast<uint64_t>(d));
    h.AddWord(t.nbytes);
    const uint64_t n = std::min(kWindow, t.nbytes);
    for (const uint64_t at : {uint64_t{0}, (t.nbytes - n) / 2, t.nbytes - n}) {
      if (t.fd >= 0) {
        const ssize_t got = ::pread(t.fd, buffer, n, static_cast<off_t>(t.file_offset + at));
        if (got != static_cast<ssize_t>(n)) {
          return DataLossError(t.file + ": tensor '" + t.name +
                               "' could not be read back (file truncated or replaced?)");
        }
        h.Add(buffer, n);
      } else if (t.data != nullptr) {
        h.Add(t.data + at, n);
      }
    }
  }
  return h.value();
}

}  // namespace

StatusOr<std::unique_ptr<LoadedModel>> LoadedModel::Load(const std::string& path,
                                                         std::function<bool(float)> progress,
                                                         ThreadPool* pool) {
  return Open(path, nullptr, pool, std::move(progress));
}

StatusOr<WeightPlan> LoadedModel::PlanWeights(const std::string& path) {
  WeightPlan plan;
  GEMMA4_RETURN_IF_ERROR(Open(path, &plan, nullptr, nullptr).status());
  return plan;
}

StatusOr<std::unique_ptr<LoadedModel>> LoadedModel::Open(const std::string& path,
                                                         WeightPlan* plan_only, ThreadPool* pool,
                                                         std::function<bool(float)> progress) {
  auto model = std::unique_ptr<LoadedModel>(new LoadedModel());
  model->progress_ = std::move(progress);
  model->plan_only_ = plan_only;
  if (IsGgufPath(path)) {
    GEMMA4_ASSIGN_OR_RETURN(model->gguf_, gguf::File::Open(path));
    for (const TensorView& t : model->gguf_->tensors()) model->gguf_tensors_[t.name] = &t;
    GEMMA4_ASSIGN_OR_RETURN(model->config_, ConfigFromGguf(*model->gguf_));
    // Everything needed from the metadata is in config_ now; its heap pages (a vocabulary's
    // arrays: tens of MB) go back before the weights load, not after.
    model->gguf_->DropMetadata();
    ReturnFreedHeapPages();
  } else {
    GEMMA4_ASSIGN_OR_RETURN(model->checkpoint_, Checkpoint::Open(path));
    GEMMA4_ASSIGN_OR_RETURN(model->config_, ParseModelConfig(model->checkpoint_->config_json(),
                                                             model->checkpoint_->config_path()));
    GEMMA4_RETURN_IF_ERROR(ApplyGenerationConfig(model->checkpoint_->generation_config_json(),
                                                 model->checkpoint_->generation_config_path(),
                                                 &model->config_));
  }
  GEMMA4_RETURN_IF_ERROR(model->LoadWeights(pool));
  if (plan_only != nullptr) {
    plan_only->config = model->config_;
    plan_only->source_path = model->source_path();
    plan_only->gguf = model->gguf_ != nullptr;
    plan_only->text_prefix = model->prefix_;
    plan_only->num_parameters = model->num_parameters_;
    plan_only->weight_bytes = model->weight_bytes_;
    if (model->checkpoint_ != nullptr) {
      for (const auto& [name, t] : model->checkpoint_->tensors()) {
        if (name.starts_with("model.vision_tower.") || name.starts_with("model.embed_vision.")) {
          plan_only->vision_tower += t.nbytes;
        } else if (name.starts_with("model.audio_tower.") ||
                   name.starts_with("model.embed_audio.")) {
          plan_only->audio_tower += t.nbytes;
        }
      }
      const json::Value& root = model->checkpoint_->config_json();
      auto width = [&](const char* section, const char* key) -> int64_t {
        const json::Value* sec = root.Find(section);
        const json::Value* v = sec != nullptr && sec->is_object() ? sec->Find(key) : nullptr;
        int64_t out = 0;
        return v != nullptr && v->GetInt64(&out) ? out : 0;
      };
      if (plan_only->vision_tower > 0) {
        plan_only->vision_hidden = width("vision_config", "hidden_size");
        plan_only->vision_ffn = width("vision_config", "intermediate_size");
        plan_only->vision_head_dim = width("vision_config", "head_dim");
      }
      if (plan_only->audio_tower > 0)
        plan_only->audio_hidden = width("audio_config", "hidden_size");
    }
    return model;
  }
  GEMMA4_ASSIGN_OR_RETURN(model->weights_fingerprint_, FingerprintWeights(model->tensors_));
  ReturnFreedHeapPages();
  return model;
}

const std::string& LoadedModel::source_path() const {
  return gguf_ != nullptr ? gguf_->path() : checkpoint_->path();
}

const TensorView* LoadedModel::FindWeight(const std::string& hf_name) const {
  if (gguf_ != nullptr) {
    const std::string stored = GgufTensorName(hf_name);
    auto it = gguf_tensors_.find(stored);
    if (it == gguf_tensors_.end() && stored.ends_with(".ffn_down_exps.scale")) {
      // Ollama's name for the per-expert scale.
      it = gguf_tensors_.find(stored.substr(0, stored.size() - 20) +
                              ".ffn_gate_inp.per_expert_scale");
    }
    return it == gguf_tensors_.end() ? nullptr : it->second;
  }
  return checkpoint_->Find(StoredName(hf_name));
}

std::string LoadedModel::StoredName(const std::string& hf_name) const {
  if (gguf_ != nullptr) return GgufTensorName(hf_name);
  // An untied LM head sits beside the model, not inside it (Gemma4ForCausalLM and
  // Gemma4ForConditionalGeneration alike).
  return hf_name == "lm_head.weight" ? hf_name : prefix_ + hf_name;
}

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& c, bool split_expert_gate_up) {
  std::vector<TensorSpec> specs;
  const int64_t H = c.hidden_size, L = c.num_layers, P = c.ple_dim;
  auto add = [&](std::string name, std::vector<int64_t> shape, bool optional = false) {
    specs.push_back({std::move(name), std::move(shape), optional});
  };
  add("embed_tokens.weight", {c.vocab_size, H});
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, H});
  add("norm.weight", {H});
  if (P > 0) {
    add("embed_tokens_per_layer.weight", {c.ple_vocab_size, L * P});
    add("per_layer_model_projection.weight", {L * P, H});
    add("per_layer_projection_norm.weight", {P});
  }
  for (int i = 0; i < L; ++i) {
    const LayerConfig& lc = c.layers[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    const int64_t hd = lc.head_dim, q_dim = int64_t{c.num_heads} * hd,
                  kv_dim = int64_t{lc.num_kv_heads} * hd, I = lc.mlp_width;
    add(p + "input_layernorm.weight", {H});
    add(p + "post_attention_layernorm.weight", {H});
    add(p + "pre_feedforward_layernorm.weight", {H});
    add(p + "post_feedforward_layernorm.weight", {H});
    add(p + "self_attn.q_proj.weight", {q_dim, H});
    add(p + "self_attn.q_norm.weight", {hd});
    add(p + "self_attn.o_proj.weight", {H, q_dim});
    // KV-shared layers read their source's cache; transformers ignores their k/v weights.
    if (!lc.kv_shared) {
      add(p + "self_attn.k_proj.weight", {kv_dim, H});
      add(p + "self_attn.k_norm.weight", {hd});
      if (!lc.k_eq_v) add(p + "self_attn.v_proj.weight", {kv_dim, H});
    }
    add(p + "mlp.gate_proj.weight", {I, H});
    add(p + "mlp.up_proj.weight", {I, H});
    add(p + "mlp.down_proj.weight", {H, I});
    if (c.moe) {
      const int64_t E = c.num_experts, Ie = c.moe_width;
      add(p + "router.proj.weight", {E, H});
      add(p + "router.scale", {H});
      add(p + "router.per_expert_scale", {E});
      if (split_expert_gate_up) {
        add(p + "experts.gate_proj", {E, Ie, H});
        add(p + "experts.up_proj", {E, Ie, H});
      } else {
        add(p + "experts.gate_up_proj", {E, 2 * Ie, H});
      }
      add(p + "experts.down_proj", {E, H, Ie});
      add(p + "pre_feedforward_layernorm_2.weight", {H});
      add(p + "post_feedforward_layernorm_1.weight", {H});
      add(p + "post_feedforward_layernorm_2.weight", {H});
    }
    if (P > 0) {
      add(p + "per_layer_input_gate.weight", {P, H});
      add(p + "per_layer_projection.weight", {H, P});
      add(p + "post_per_layer_input_norm.weight", {H});
    }
    // A persistent buffer of shape [1]; absent means 1.
    add(p + "layer_scalar", {1}, /*optional=*/true);
  }
  return specs;
}

Status LoadedModel::LoadWeights(ThreadPool* pool) {
  const ModelConfig& c = config_;
  // Text weights live under model.language_model. (Gemma4ForConditionalGeneration) or model.
  // (Gemma4ForCausalLM); decide by where the embedding is.
  if (checkpoint_ == nullptr) {
    prefix_.clear();
  } else if (checkpoint_->Find("model.language_model.embed_tokens.weight") != nullptr) {
    prefix_ = "model.language_model.";
  } else if (checkpoint_->Find("model.embed_tokens.weight") != nullptr) {
    prefix_ = "model.";
  } else {
    return NotFoundError(checkpoint_->path() +
                         ": missing tensor 'model.language_model.embed_tokens.weight' (or "
                         "'model.embed_tokens.weight' for a text-only checkpoint)");
  }
  // Find and validate every tensor first; then wire them into the per-layer structs.
  std::unordered_map<std::string, TensorView> found;
  const bool split_expert_gate_up = c.moe && HasGgufTensor("blk.0.ffn_gate_exps.weight") &&
                                    !HasGgufTensor("blk.0.ffn_gate_up_exps.weight");
  for (const TensorSpec& spec : ExpectedTensors(c, split_expert_gate_up)) {
    const std::string stored = StoredName(spec.name);
    const TensorView* t = FindWeight(spec.name);
    TensorView expected;
    expected.shape = spec.shape;
    if (t == nullptr) {
      if (spec.optional) continue;
      return NotFoundError(source_path() + ": missing tensor '" + stored + "' (expected shape " +
                           expected.ShapeString() + ")");
    }
    if (t->shape != spec.shape) {
      return InvalidArgumentError(t->file + ": tensor '" + stored + "' has shape " +
                                  t->ShapeString() + ", expected " + expected.ShapeString());
    }
    if (!IsComputeType(t->dtype) && !(ConvertedAtLoad(t->dtype) && spec.shape.size() >= 2 &&
                                      spec.name != "embed_tokens_per_layer.weight")) {
      // (Q5_0 matrices are converted below; the PLE table is read as stored.)
      return UnimplementedError(
          t->file + ": tensor '" + stored + "' has dtype " + DTypeName(t->dtype) +
          "; weights must be F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q5_1, "
          "IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_XS, IQ4_NL or MXFP4 (or Q5_0 "
          "matrices, read as Q5_1)");
    }
    if (IsBlockType(t->dtype) && spec.shape.size() == 1) {
      return UnimplementedError(t->file + ": vector '" + stored + "' is block-quantized (" +
                                DTypeName(t->dtype) + "); norms and scales must be float");
    }
    num_parameters_ += t->numel();
    weight_bytes_ += t->nbytes;
    tensors_.emplace_back(spec.name, *t);
    found.emplace(spec.name, *t);
  }
  // Quantized matrices are repacked into the layout the kernels read
  // (kernels::pack::PackedLayout), except the PLE table, which is only ever gathered row by row.
  const kernels::KernelTable& table = kernels::BestTable();
  struct Repack {
    TensorView* view;
    DType layout;     // kernels::pack::PackedLayout (the stored type when copy_only)
    uint64_t offset;  // in repacked_
    bool copy_only;   // kept in its file format, moved into the arena
    // Stored as Q5_0: each row converted to ConvertedType by this (false: a value the converted
    // type cannot hold), then laid out as `layout`.
    bool (*convert)(const uint8_t*, int64_t, uint8_t*) = nullptr;
  };
  std::vector<Repack> plan;
  // With repacked matrices in an anonymous arena, the other matrices read for every token (the
  // embedding / LM head, the per-layer-input projections, routers; not the PLE table, which is
  // read row by row with pread, nor MoE experts, which are read as routed) move into it too, so
  // that nothing is read from the file mapping after loading. A fault on a file mapping maps
  // the cached pages around it (a whole large folio on recent kernels: ext4 on Linux 6.18 maps
  // hundreds of KiB), so reading a matrix left in the file mapped the released repacked
  // matrices beside it back in: E2B q4_0 held 45-135 MiB of them again after its first token.
  std::vector<Repack> copies;
  // File ranges copied out of the mapping (repacked matrices, vectors widened to f32): dropped
  // from the resident set once loading is done (see the end of this function).
  std::vector<std::pair<const uint8_t*, uint64_t>> copied;
  uint64_t total = 0;
  for (const auto& [name, stored] : tensors_) {  // load order: layer by layer
    TensorView& view = found.at(name);
    if (view.shape.size() < 2 || name == "embed_tokens_per_layer.weight") continue;
    const int64_t rows_per_matrix = view.shape[view.shape.size() - 2];
    if (ConvertedAtLoad(view.dtype)) {
      // Into the arena as Q5_1 (24 bytes a block instead of Q5_0's 22), in its packed layout.
      const DType to = ConvertedType(view.dtype);
      const DType layout = kernels::pack::PackedLayout(table, to, rows_per_matrix);
      plan.push_back({&view, layout, total, false, quant::ConvertRowQ5_0ToQ5_1});
      total += (RowBytes(to, view.cols()) * static_cast<uint64_t>(view.rows()) + 63) / 64 * 64;
      continue;
    }
    const DType layout = kernels::pack::PackedLayout(table, view.dtype, rows_per_matrix);
    if (layout == view.dtype) {
      if (name.find(".experts.") == std::string::npos) {
        copies.push_back({&view, view.dtype, 0, true});
      }
      continue;
    }
    plan.push_back({&view, layout, total, false});
    total += (view.nbytes + 63) / 64 * 64;
  }
  if (!plan.empty()) {
    for (Repack& c : copies) {
      c.offset = total;
      total += (c.view->nbytes + 63) / 64 * 64;
      plan.push_back(c);
    }
  }
  if (plan_only_ != nullptr) {
    // What the rest of this function would keep: the arena, the matrices it leaves in the
    // mapping (not the PLE table, read with pread), and the vectors as f32.
    WeightPlan& p = *plan_only_;
    p.repacked = plan.empty() ? 0 : AnonymousMemory::ResidentBytes(total, /*huge_pages=*/true);
    for (const auto& [name, view] : found) {
      const TensorView* const this_view = &view;  // a lambda's capture (clang 14: no bindings)
      const bool repacked = std::any_of(
          plan.begin(), plan.end(), [this_view](const Repack& r) { return r.view == this_view; });
      const bool layer_matrix =
          name.ends_with("q_proj.weight") || name.ends_with("o_proj.weight") ||
          name.ends_with("mlp.gate_proj.weight") || name.ends_with("experts.gate_up_proj") ||
          name.ends_with("experts.gate_proj");
      if (layer_matrix && IsBlockType(view.dtype)) p.default_kv_type = KvType::kF16;
      if (view.shape.size() >= 2 && view.dtype == DType::kBF16 &&
          name != "embed_tokens_per_layer.weight") {
        p.bf16_k = std::max(p.bf16_k, view.shape.back());
        if (name.ends_with("per_layer_input_gate.weight") ||
            name.ends_with("per_layer_projection.weight")) {
          p.bf16_ple_k = std::max(p.bf16_ple_k, view.shape.back());
        }
      }
      if (view.shape.size() < 2) {
        p.converted += static_cast<uint64_t>(view.numel()) * sizeof(float);
      } else if (name == "embed_tokens_per_layer.weight") {
        p.ple_table += view.nbytes;
      } else if (!repacked) {
        p.mapped += view.nbytes;
      }
    }
    return OkStatus();
  }
  if (!plan.empty()) {
    auto memory = AnonymousMemory::Allocate(total, /*huge_pages=*/true);
    if (!memory.ok()) {
      return ResourceExhaustedError(source_path() + ": out of memory repacking " +
                                    std::to_string(plan.size()) + " quantized matrices (" +
                                    std::to_string(total) +
                                    " bytes): " + memory.status().message());
    }
    repacked_ = std::move(memory).value();
  }
  // Set by a conversion that met a value its target type cannot hold (read after each matrix).
  std::atomic<bool> unconvertible_value{false};
  for (const Repack& r : plan) {
    TensorView& view = *r.view;
    const bool q4 = view.dtype == DType::kQ4_0;
    const bool x16 = IsInterleavedX16(r.layout);
    uint8_t* dst = repacked_->data() + r.offset;
    if (r.copy_only) {
      // In slices, each released once copied, so that the file's pages and their copy are
      // never both resident (the E2B embedding alone is 322 MiB).
      constexpr uint64_t kSlice = uint64_t{4} << 20;
      for (uint64_t done = 0; done < view.nbytes;) {
        const uint64_t end = std::min(view.nbytes, (done / kSlice + 1) * kSlice);
        std::memcpy(dst + done, view.data + done, end - done);
        ReleasePages(view.data + done, end - done);
        done = end;
      }
      copied.emplace_back(view.data, view.nbytes);
      view.data = dst;
      continue;
    }
    // Bytes of a row as stored (read and released) and as laid out in the arena.
    const uint64_t src_row_bytes = RowBytes(view.dtype, view.cols());
    const uint64_t row_bytes =
        r.convert != nullptr ? RowBytes(ConvertedType(view.dtype), view.cols()) : src_row_bytes;
    const int64_t nblocks = view.cols() / quant::kBlock;
    // Rows [begin, end) (multiples of 16 where interleaved) of this matrix; the arena's first
    // touch (zeroing its pages) happens here too, so both spread over the pool.
    std::function<void(int64_t, int64_t)> repack_rows;
    const uint8_t* src = view.data;
    if (r.convert != nullptr) {
      // Each row converted (exact), then laid out as that type's kernels read it; groups of 16
      // rows go through a 16-row buffer (per piece of the pool's job).
      const DType layout = r.layout;
      const auto convert = r.convert;
      std::atomic<bool>* unconvertible = &unconvertible_value;
      repack_rows = [=](int64_t begin, int64_t end) {
        const int64_t step = IsInterleavedX16(layout) ? 16 : 1;
        std::vector<uint8_t> rows(static_cast<size_t>(step * row_bytes));
        for (int64_t row = begin; row < end; row += step) {
          for (int64_t k = 0; k < step; ++k) {
            if (!convert(src + (row + k) * src_row_bytes, nblocks, rows.data() + k * row_bytes)) {
              unconvertible->store(true, std::memory_order_relaxed);
            }
          }
          uint8_t* out = dst + row * row_bytes;
          if (layout == DType::kQ5_1x16) {
            kernels::pack::RepackGroupQ5_1x16(rows.data(), row_bytes, nblocks, out);
          } else {
            std::memcpy(out, rows.data(), row_bytes);  // plain Q5_1
          }
        }
      };
    } else if (view.dtype == DType::kQ2_K || view.dtype == DType::kQ3_K ||
               view.dtype == DType::kQ4_K || view.dtype == DType::kQ5_K ||
               view.dtype == DType::kQ6_K || view.dtype == DType::kIQ4_XS) {
      const auto repack = view.dtype == DType::kQ2_K     ? kernels::pack::RepackGroupQ2_Kx16
                          : view.dtype == DType::kQ3_K   ? kernels::pack::RepackGroupQ3_Kx16
                          : view.dtype == DType::kQ4_K   ? kernels::pack::RepackGroupQ4_Kx16
                          : view.dtype == DType::kQ5_K   ? kernels::pack::RepackGroupQ5_Kx16
                          : view.dtype == DType::kIQ4_XS ? kernels::pack::RepackGroupIQ4_XSx16
                                                         : kernels::pack::RepackGroupQ6_Kx16;
      repack_rows = [=](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; row += 16) {
          repack(src + row * row_bytes, row_bytes, nblocks / 8, dst + row * row_bytes);
        }
      };
    } else if (x16) {
      // IQ4_NL's blocks are Q4_0's shape (f16 d, 16 bytes of nibbles): Q4_0x16's layout.
      const auto repack = q4 || view.dtype == DType::kIQ4_NL ? kernels::pack::RepackGroupQ4_0x16
                          : view.dtype == DType::kMXFP4      ? kernels::pack::RepackGroupMXFP4x16
                          : view.dtype == DType::kQ4_1       ? kernels::pack::RepackGroupQ4_1x16
                          : view.dtype == DType::kQ5_1       ? kernels::pack::RepackGroupQ5_1x16
                                                             : kernels::pack::RepackGroupQ8_0x16;
      repack_rows = [=](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; row += 16) {
          repack(src + row * row_bytes, row_bytes, nblocks, dst + row * row_bytes);
        }
      };
    } else {
      const auto repack = q4 ? kernels::pack::RepackRowQ4_0 : kernels::pack::RepackRowQ8_0;
      repack_rows = [=](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          repack(src + row * row_bytes, nblocks, dst + row * row_bytes);
        }
      };
    }
    const int64_t group = x16 ? 16 : 1;
    const int64_t groups = view.rows() / group;
    const uint64_t stored_bytes = view.nbytes;
    // In slices of about 4 MiB, each slice's file pages released once repacked, so that a
    // matrix is never resident twice (file and arena) while it is repacked: the peak of a
    // load is the arena (E2B's Q6_K embedding alone is 207 MiB; the memory plan counts the
    // arena only).
    const int64_t slice_groups = std::max<int64_t>(
        1, (int64_t{4} << 20) / std::max<int64_t>(1, group * static_cast<int64_t>(src_row_bytes)));
    for (int64_t first = 0; first < groups; first += slice_groups) {
      const int64_t last = std::min(groups, first + slice_groups);
      if (pool != nullptr && pool->num_threads() > 1) {
        // ParallelFor cuts a slice into at most 4 pieces per thread; small matrices are split
        // too (cheap at load, and the tiny test models then take this path).
        pool->ParallelFor(last - first, 1, [&](int64_t begin, int64_t end) {
          repack_rows((first + begin) * group, (first + end) * group);
        });
      } else {
        repack_rows(first * group, last * group);
      }
      ReleasePages(view.data + first * group * src_row_bytes,
                   static_cast<uint64_t>((last - first) * group) * src_row_bytes);
    }
    ReleasePages(view.data, stored_bytes);
    if (unconvertible_value.load(std::memory_order_relaxed)) {
      return InvalidArgumentError(view.file + ": tensor '" + view.name + "' (" +
                                  DTypeName(view.dtype) +
                                  ") has a block scale d with |16 d| beyond f16's range (|d| > "
                                  "4094: weights beyond 65504), which gemma4 cannot read exactly");
    }
    copied.emplace_back(view.data, stored_bytes);
    view.data = dst;
    view.dtype = r.layout;
    view.nbytes = row_bytes * static_cast<uint64_t>(view.rows());
  }
  // The PLE table (E2B: 262144 rows of 8960 values) is read one row per token (with pread,
  // see InferenceState::ReadPleRow); no readahead for whatever does touch the mapping.
  if (auto it = found.find("embed_tokens_per_layer.weight"); it != found.end()) {
    AdviseRandomAccess(it->second.data, it->second.nbytes);
  }
  auto matrix = [&](const std::string& name) {
    auto it = found.find(name);
    return it == found.end() ? TensorView() : it->second;
  };
  // Norms, scales and scalars are converted whole here, so checking them for NaN and Inf is
  // free; one bad value in a norm would turn every later activation into NaN.
  Status non_finite = OkStatus();
  auto vec = [&](const std::string& name, std::vector<float>* out) {
    auto it = found.find(name);
    if (it == found.end()) return;
    out->resize(it->second.numel());
    ops::ToF32(it->second, 0, it->second.numel(), out->data());
    for (size_t k = 0; k < out->size() && non_finite.ok(); ++k) {
      if (!std::isfinite((*out)[k])) {
        non_finite = InvalidArgumentError(it->second.file + ": tensor '" + it->second.name +
                                          "' holds " + (std::isnan((*out)[k]) ? "NaN" : "Inf") +
                                          " at index " + std::to_string(k) +
                                          " (non-finite weights would make every output NaN)");
      }
    }
    copied.emplace_back(it->second.data, it->second.nbytes);
    // With the matrices in the arena, nothing else is read from the mapping: drop the whole
    // folio that reading this vector faulted in, not only its own pages (E2B q4_0: the norms'
    // folios held 30 MiB, resident on top of the arena until the end of loading).
    if (repacked_ != nullptr && gguf_ != nullptr) {
      gguf_->ReleasePagesAround(it->second.data, it->second.nbytes, uint64_t{2} << 20);
    }
  };
  weights_.embed = matrix("embed_tokens.weight");
  weights_.lm_head = c.tie_word_embeddings ? weights_.embed : matrix("lm_head.weight");
  vec("norm.weight", &weights_.final_norm);
  weights_.ple_embed = matrix("embed_tokens_per_layer.weight");
  weights_.ple_model_projection = matrix("per_layer_model_projection.weight");
  vec("per_layer_projection_norm.weight", &weights_.ple_projection_norm);
  weights_.layers.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    LayerWeights& lw = weights_.layers[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    vec(p + "input_layernorm.weight", &lw.input_norm);
    vec(p + "post_attention_layernorm.weight", &lw.post_attention_norm);
    vec(p + "pre_feedforward_layernorm.weight", &lw.pre_ffn_norm);
    vec(p + "post_feedforward_layernorm.weight", &lw.post_ffn_norm);
    lw.q_proj = matrix(p + "self_attn.q_proj.weight");
    vec(p + "self_attn.q_norm.weight", &lw.q_norm);
    lw.o_proj = matrix(p + "self_attn.o_proj.weight");
    lw.k_proj = matrix(p + "self_attn.k_proj.weight");
    vec(p + "self_attn.k_norm.weight", &lw.k_norm);
    lw.v_proj = matrix(p + "self_attn.v_proj.weight");
    lw.gate_proj = matrix(p + "mlp.gate_proj.weight");
    lw.up_proj = matrix(p + "mlp.up_proj.weight");
    lw.down_proj = matrix(p + "mlp.down_proj.weight");
    lw.router_proj = matrix(p + "router.proj.weight");
    vec(p + "router.scale", &lw.router_scale);
    vec(p + "router.per_expert_scale", &lw.per_expert_scale);
    lw.experts_gate_up = matrix(p + "experts.gate_up_proj");
    lw.experts_gate = matrix(p + "experts.gate_proj");
    lw.experts_up = matrix(p + "experts.up_proj");
    lw.experts_down = matrix(p + "experts.down_proj");
    vec(p + "pre_feedforward_layernorm_2.weight", &lw.pre_ffn_norm_2);
    vec(p + "post_feedforward_layernorm_1.weight", &lw.post_ffn_norm_1);
    vec(p + "post_feedforward_layernorm_2.weight", &lw.post_ffn_norm_2);
    lw.ple_gate = matrix(p + "per_layer_input_gate.weight");
    lw.ple_projection = matrix(p + "per_layer_projection.weight");
    vec(p + "post_per_layer_input_norm.weight", &lw.post_ple_norm);
    std::vector<float> scalar;
    vec(p + "layer_scalar", &scalar);
    lw.layer_scalar = scalar.empty() ? 1.0f : scalar[0];
    GEMMA4_RETURN_IF_ERROR(non_finite);
    if (progress_ && !progress_(static_cast<float>(i + 1) / static_cast<float>(c.num_layers))) {
      return CancelledError("loading " + source_path() + " was cancelled after layer " +
                            std::to_string(i));
    }
  }
  // torch.tensor(sqrt(H)) is a float32 buffer: the double sqrt rounded to f32.
  embed_scale_ = static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size)));
  // Once more now that loading reads nothing else: pages dropped right after their copy came
  // back where a later read nearby (in another order than the file's) mapped them again.
  for (const auto& [data, nbytes] : copied) ReleasePages(data, nbytes);
  return OkStatus();
}

std::vector<const TensorView*> LoadedModel::PerTokenMatrices() const {
  const ModelWeights& w = weights_;
  std::vector<const TensorView*> out = {&w.lm_head, &w.ple_model_projection};
  for (const LayerWeights& l : w.layers) {
    for (const TensorView* t :
         {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj,
          &l.router_proj, &l.ple_gate, &l.ple_projection}) {
      if (t->data != nullptr) out.push_back(t);
    }
  }
  return out;
}

KvType LoadedModel::DefaultKvType() const {
  for (const LayerWeights& l : weights_.layers) {
    for (const TensorView* t :
         {&l.q_proj, &l.o_proj, &l.gate_proj, &l.experts_gate_up, &l.experts_gate}) {
      if (t->data != nullptr && IsBlockType(t->dtype)) return KvType::kF16;
    }
  }
  return KvType::kF32;
}

uint64_t LoadedModel::DecodeBytesPerToken() const {
  const ModelConfig& c = config_;
  const ModelWeights& w = weights_;
  auto row_bytes = [](const TensorView& t) { return t.data ? RowBytes(t.dtype, t.cols()) : 0; };
  uint64_t total = row_bytes(w.embed) + row_bytes(w.ple_embed);
  for (const TensorView* t : PerTokenMatrices()) total += t->nbytes;
  if (c.moe) {
    for (const LayerWeights& l : w.layers) {
      total += (l.experts_gate_up.nbytes + l.experts_gate.nbytes + l.experts_up.nbytes +
                l.experts_down.nbytes) *
               c.top_k_experts / c.num_experts;
    }
  }
  return total;
}

}  // namespace gemma4
