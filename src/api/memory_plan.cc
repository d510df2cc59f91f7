#include "api/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "audio/audio_encoder.h"
#include "formats/gguf.h"
#include "formats/mmproj.h"
#include "kernels/kernels.h"
#include "model/attention.h"
#include "model/drafter.h"
#include "model/forward.h"
#include "ops/ops.h"
#include "quant/quant.h"
#include "runtime/huge_pages.h"
#include "vision/vision_encoder.h"

namespace gemma4 {
namespace {

std::string Bytes(uint64_t n) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%llu (%.1f MiB)", static_cast<unsigned long long>(n),
                static_cast<double>(n) / (1024.0 * 1024.0));
  return buf;
}

// Vocabulary tables of the tokenizer (pieces, the piece -> id map, merges, the special-token
// matcher), from the size of what it is built from: `entries` vocabulary strings and merges,
// `text_bytes` bytes of their text. Measured on Gemma 4's 262144-entry vocabularies (a GGUF's
// arrays and tokenizer.json): about 88 bytes per entry besides its text, which the pieces and
// the map each hold once.
uint64_t TokenizerBytes(uint64_t entries, uint64_t text_bytes) {
  return entries * 88 + text_bytes * 2;
}

// A GGUF's tokenizer arrays: entries and text bytes.
void GgufTokenizerSize(const gguf::File& file, uint64_t* entries, uint64_t* text_bytes) {
  for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.merges"}) {
    const gguf::Value* v = file.Find(key);
    if (v == nullptr) continue;
    *entries += v->array.size();
    for (const gguf::Value& e : v->array) *text_bytes += e.s.size();
  }
}

// Tower tensors of a GGUF (llama.cpp mmproj names, or an Ollama blob's inline towers): the
// bytes read in place, plus the f32 copy of the patch embedding; `hidden`/`ffn` of the first
// vision block for the activation estimate. The blocks' F16/BF16 linears are copied at load
// into 16-bit GEMM panels and their mapped pages released (model/tower_reader.h): the same
// bytes, anonymous instead of mapped, rows rounded up to the panel width (none for the
// released shapes, whose widths are multiples of 32).
struct TowerSize {
  uint64_t vision = 0, audio = 0;
  int64_t vision_hidden = 0, vision_ffn = 0, vision_head_dim = 0, audio_hidden = 0;
};
TowerSize GgufTowers(const gguf::File& file) {
  TowerSize t;
  for (const TensorView& v : file.tensors()) {
    mmproj::Tower tower;
    if (!mmproj::StoredTower(v.name, &tower)) continue;
    uint64_t bytes = v.nbytes;
    if ((v.dtype == DType::kF16 || v.dtype == DType::kBF16) && v.shape.size() == 2 &&
        v.name.find(".blk.") != std::string::npos) {
      bytes = std::max(bytes, ops::PackedGemm16Bytes(v.shape[0], v.shape[1]));
    }
    if (v.name == mmproj::MarkerTensor(mmproj::Tower::kVision)) {
      bytes += static_cast<uint64_t>(v.numel()) * 4;
    }
    (tower == mmproj::Tower::kVision ? t.vision : t.audio) += bytes;
    if (v.name == "v.blk.0.ffn_up.weight" && v.shape.size() == 2) {
      t.vision_ffn = v.shape[0];
      t.vision_hidden = v.shape[1];
    }
    if (v.name == "v.blk.0.attn_q_norm.weight" && v.shape.size() == 1) {
      t.vision_head_dim = v.shape[0];
    }
    if (v.name == "a.blk.0.attn_q.weight" && v.shape.size() == 2) t.audio_hidden = v.shape[1];
  }
  return t;
}

// The largest activations of one encode: vision at the largest image budget sessions accept
// (ModelOptions::max_image_tokens, 9 patches a soft token: 10080 at 1120), audio for one 30 s piece
// (750 positions after subsampling). Most of them are the huge-page buffers each encoder lists
// beside its Encode (HugePageBuffers: vision's [patches, width] residual, normed, q, k, v,
// attention output and tmp, RoPE tables, MLP slices, pooled rows and DenseAttention's packed keys
// and values; audio's residual and conformer scratch, a dozen rows of the hidden width), each
// counted as the allocator maps it (runtime/huge_pages.h HugePageBlockBytes: blocks of
// kHugePageMinBytes and more take whole 2 MiB pages). Summed per buffer, the rounding is exact for
// the planned sizes (an E2B [2520, 768] f32 buffer is 7.4 MiB and maps 8) instead of an allowance
// of 2 MiB for a hand count of buffers. Vision adds the caller's patches ([patches, 3 x 16 x 16]
// floats) and each thread's attention scratch (ops::DenseAttentionThreadBytes: the scores of a
// query tile against every patch, [patches, nr], and the tile's query panel and output).
uint64_t EncoderActivationBytes(const TowerSize& t, int threads, int image_tokens) {
  constexpr int64_t kAudioPositions = 750;
  const int64_t kPatches = int64_t{image_tokens} * 9;
  auto mapped = [](const std::vector<uint64_t>& buffers) {
    uint64_t total = 0;
    for (const uint64_t b : buffers) total += HugePageBlockBytes(b);
    return total;
  };
  uint64_t bytes = 0;
  if (t.vision_hidden > 0) {
    // Every Gemma 4 vision tower has heads x head_dim = hidden and as many KV heads as heads;
    // without a head_dim in the file, the released E2B / E4B towers' 64 stands in.
    VisionConfig c;
    c.hidden_size = static_cast<int>(t.vision_hidden);
    c.intermediate_size = static_cast<int>(t.vision_ffn);
    if (t.vision_head_dim > 0) c.head_dim = static_cast<int>(t.vision_head_dim);
    c.num_heads = c.num_kv_heads = std::max(1, c.hidden_size / c.head_dim);
    c.use_clipped_linears = true;  // the larger case: the MLP's clamped input copy
    const uint64_t patches = kPatches, patch_values = 3 * c.patch_size * c.patch_size;
    bytes += 4 * patches * patch_values +
             static_cast<uint64_t>(threads) * ops::DenseAttentionThreadBytes(kPatches, c.head_dim) +
             mapped(vision::VisionEncoder::HugePageBuffers(c, kPatches));
  }
  if (t.audio_hidden > 0) {
    AudioConfig c;
    c.hidden_size = static_cast<int>(t.audio_hidden);
    bytes += mapped(audio::AudioEncoder::HugePageBuffers(c, kAudioPositions));
  }
  return bytes;
}

}  // namespace

uint64_t ForwardScratchBytes(const ModelConfig& c, int64_t max_chunk, int threads,
                             int64_t context_tokens, int64_t bf16_k, int64_t bf16_ple_k) {
  // A step never holds more tokens than the context: its buffers grow to the largest step.
  const int64_t s = std::clamp<int64_t>(context_tokens, 1, max_chunk);
  const int64_t H = c.hidden_size, L = c.num_layers, P = c.ple_dim;
  int64_t q_dim = 0, kv_dim = 0, width = std::max<int64_t>(P, c.moe ? c.moe_width : 0);
  int64_t pairs = 0, head_dim = 0, attention = 0, k_max = std::max<int64_t>(H, P);
  const int64_t pieces = context_tokens / kAttentionSplit + 1;
  for (const LayerConfig& lc : c.layers) {
    q_dim = std::max<int64_t>(q_dim, int64_t{c.num_heads} * lc.head_dim);
    if (!lc.kv_shared) kv_dim = std::max<int64_t>(kv_dim, int64_t{lc.num_kv_heads} * lc.head_dim);
    width = std::max<int64_t>(width, lc.mlp_width);
    pairs = std::max<int64_t>(pairs, lc.rotated_pairs);
    head_dim = std::max<int64_t>(head_dim, lc.head_dim);
    // Each thread's attention scratch (model/attention.cc). Decode: the split path's
    // AttentionScratch, scores of the query heads of one KV head against one piece's
    // keys (at most kAttentionSplit, the window on sliding layers), a dequantized key tile, and
    // the outputs, merged outputs and softmax statistics, for the tokens of a step too small
    // for the blocked path. Prefill: BlockedAttentionScratch for up to kAttentionBlockTokens
    // tokens x those heads.
    const int64_t nq = c.num_heads / std::max(1, lc.num_kv_heads);
    const int64_t keys =
        std::min({kAttentionSplit, context_tokens,
                  lc.sliding ? int64_t{c.sliding_window} - 1 + s : context_tokens});
    const int64_t split_tokens =
        std::min({s, kAttentionBlockedMinTokens - 1, kAttentionTokenBlock});
    attention = std::max(attention, split_tokens * nq * (keys + 2 * lc.head_dim + 4) +
                                        kAttentionKeyTile * lc.head_dim + 4 * split_tokens);
    if (s >= kAttentionBlockedMinTokens) {
      const int64_t nt = std::min(s, kAttentionBlockTokens);
      attention = std::max(attention, (BlockedAttentionScratchBytes(nt, nq, lc.head_dim) + 3) / 4);
    }
  }
  k_max = std::max({k_max, q_dim, width});
  uint64_t floats = 0;
  floats += 4 * s * H;                                  // x, normed, tmp, tmp2
  floats += 2 * s * q_dim + 2 * s * kv_dim;             // q, attn; k, v
  floats += 2 * std::min(s, MlpSliceTokens()) * width;  // MLP gate and up slices
  floats += s * L * P + threads * L * P;  // per-layer inputs, a token's table part per thread
  floats += 2 * s * pairs;                // RoPE tables
  floats += c.vocab_size;                 // the last position's logits
  // MoE (model/forward.cc Moe): the router's input and logits, the experts' normed input, and
  // one row per (token, expert) pair for the gathered inputs (reused for the outputs), the gate
  // and up products and the activation.
  const int64_t moe_pairs = c.moe ? s * c.top_k_experts : 0;
  if (c.moe) floats += s * (2 * H + c.num_experts) + moe_pairs * (H + 3 * c.moe_width);
  floats += static_cast<uint64_t>(threads) * attention;
  // Decode at depth: a few tokens' attention pieces as separate work items, their partial
  // sums [tokens, heads, pieces, head_dim + 2] merged after (tokens: fewer than 2 x threads).
  const int64_t split_tokens = std::min<int64_t>(s, 2 * int64_t{threads} - 1);
  floats += split_tokens * c.num_heads * pieces * (head_dim + 2);
  // The chunk's activations as int8 blocks: values, 3 floats per 32 and 16-bit sums per 16;
  // and their token-interleaved copy for the AVX-512 Q4_0x16 / Q8_0x16 GEMMs (values, a scale
  // and an offset per 32, tokens rounded up to 8). Where the table has bf16 tile kernels (AMX),
  // runs of 16 tokens or more are rounded to bf16 instead (tokens rounded up to 16) and only
  // shorter ones (at most 15 tokens) interleaved. MoE layers quantize one row per (token,
  // expert) pair, in groups of 8.
  const int64_t moe_k = std::max<int64_t>(H, c.moe_width);
  const bool bf16_rows = kernels::BestTable().bf16_tile_row != nullptr && s >= 16;
  const int64_t interleaved_tokens = bf16_rows ? 16 : (s + 7) / 8 * 8;
  const uint64_t quantized =
      static_cast<uint64_t>(std::max(s * k_max, moe_pairs * moe_k)) * (1 + 12 / 32.0 + 2 / 16.0) +
      static_cast<uint64_t>(std::max(interleaved_tokens * k_max, (moe_pairs + 7) / 8 * 8 * moe_k)) *
          (1 + 8 / 32.0) +
      (bf16_rows ? static_cast<uint64_t>((s + 15) / 16 * 16 * k_max) * 2 : 0);
  // BF16 rows on the bf16 tiles (AMX, runs of 16 tokens or more) read each activation as three
  // bf16 parts: (s rounded up to 16) x K x 6 bytes for the widest BF16 matrix, on the calling
  // thread (a BF16 checkpoint: the MLP's down projection; a quantized GGUF file: the per-layer-
  // input matrices, if BF16; F32/F16 checkpoints: none). The per-layer-input block splits a
  // step's tokens over the threads, each splitting its own share's activations for the gate
  // (K = hidden) and projection (K = ple_dim) where they are BF16.
  uint64_t split = 0;
  if (kernels::BestTable().tiles_bf16 != nullptr && s >= 16 && bf16_k > 0) {
    split = static_cast<uint64_t>((s + 15) / 16 * 16 * bf16_k) * 6;
    if (bf16_ple_k > 0 && threads > 1) {
      const int64_t share = ((s + threads - 1) / threads + 15) / 16 * 16;
      split += static_cast<uint64_t>(threads - 1) * share * bf16_ple_k * 6;
    }
  }
  // Each thread's thread_local scratch of the prefill kernels (AMX: 162 KiB), kept while the
  // pool lives.
  const uint64_t kernel_threads =
      static_cast<uint64_t>(threads) * kernels::BestTable().thread_scratch_bytes;
  return floats * sizeof(float) + quantized + split + kernel_threads;
}

StatusOr<int> ResolveMaxImageTokens(const ModelOptions& options) {
  if (options.max_image_tokens == 0) return kLargestImageTokens;
  if (!IsSupportedSoftTokenBudget(options.max_image_tokens)) {
    return InvalidArgumentError(
        "ModelOptions.max_image_tokens = " + std::to_string(options.max_image_tokens) +
        ": must be 0 (1120), 70, 140, 280, 560 or 1120");
  }
  return options.max_image_tokens;
}

StatusOr<PlanInputs> GatherPlanInputs(const std::string& path, const ModelOptions& options) {
  if (options.threads < 0 || options.threads > 1024) {
    return InvalidArgumentError("ModelOptions.threads = " + std::to_string(options.threads) +
                                ": must be in [0, 1024]");
  }
  PlanInputs in;
  GEMMA4_ASSIGN_OR_RETURN(in.weights, LoadedModel::PlanWeights(path));
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  in.threads = options.threads > 0 ? options.threads : static_cast<int>(hw);
  in.max_chunk = DefaultMaxChunk();
  switch (options.kv_cache_type) {
    case KvCacheType::kF32:
      in.kv_type = KvType::kF32;
      break;
    case KvCacheType::kF16:
      in.kv_type = KvType::kF16;
      break;
    case KvCacheType::kQ8_0:
      in.kv_type = KvType::kQ8_0;
      break;
    case KvCacheType::kQ4_0:
      in.kv_type = KvType::kQ4_0;
      break;
    case KvCacheType::kAuto:
      in.kv_type = in.weights.default_kv_type;
      break;
  }
  GEMMA4_RETURN_IF_ERROR(CheckKvType(in.weights.config, in.kv_type));
  // The tokenizer Load would read: the model's GGUF, or the files beside the weights.
  namespace fs = std::filesystem;
  const std::string tokenizer_path =
      !options.tokenizer_path.empty()
          ? options.tokenizer_path
          : (in.weights.gguf
                 ? path
                 : (fs::is_directory(path) ? path : fs::path(path).parent_path().string()));
  uint64_t entries = 0, text_bytes = 0;
  std::error_code ec;
  if (fs::is_directory(tokenizer_path, ec)) {
    for (const char* name : {"tokenizer.json", "tokenizer.model"}) {
      const fs::path p = fs::path(tokenizer_path) / name;
      if (fs::is_regular_file(p, ec)) {
        text_bytes = fs::file_size(p, ec);
        entries = in.weights.config.vocab_size;
        break;
      }
    }
  } else if (fs::path(tokenizer_path).extension() == ".gguf" || in.weights.gguf) {
    auto file = gguf::File::Open(tokenizer_path);
    if (file.ok()) GgufTokenizerSize(**file, &entries, &text_bytes);
  } else if (fs::is_regular_file(tokenizer_path, ec)) {
    text_bytes = fs::file_size(tokenizer_path, ec);
    entries = in.weights.config.vocab_size;
  }
  in.tokenizer = TokenizerBytes(entries, text_bytes);
  // Towers: an mmproj given, an Ollama blob's inline towers, or a checkpoint's own.
  TowerSize towers;
  const std::string tower_file = !options.mmproj_path.empty() ? options.mmproj_path
                                 : in.weights.gguf            ? path
                                                              : "";
  if (!tower_file.empty()) {
    auto file = gguf::File::Open(tower_file);
    if (!file.ok() && !options.mmproj_path.empty()) return file.status();
    if (file.ok()) towers = GgufTowers(**file);
  } else {
    towers.vision = in.weights.vision_tower;
    towers.audio = in.weights.audio_tower;
    towers.vision_hidden = in.weights.vision_hidden;
    towers.vision_ffn = in.weights.vision_ffn;
    towers.vision_head_dim = in.weights.vision_head_dim;
    towers.audio_hidden = in.weights.audio_hidden;
  }
  in.encoder_weights = towers.vision + towers.audio;
  GEMMA4_ASSIGN_OR_RETURN(in.max_image_tokens, ResolveMaxImageTokens(options));
  in.encoder_activations = EncoderActivationBytes(towers, in.threads, in.max_image_tokens);
  // A drafter is small (the E2B assistant is about 80 MB): mapping it and reading its norms
  // and token ordering is the exact way to size it.
  if (!options.draft_model_path.empty()) {
    GEMMA4_ASSIGN_OR_RETURN(std::unique_ptr<Drafter> drafter,
                            Drafter::Load(options.draft_model_path));
    in.drafter = drafter->ResidentBytes();
  }
  return in;
}

MemoryPlan ComputeMemoryPlan(const PlanInputs& in, int64_t context_tokens) {
  const ModelConfig& c = in.weights.config;
  MemoryPlan p;
  p.context_tokens = std::max<int64_t>(1, context_tokens);
  p.kv_cache_type = KvTypeName(in.kv_type);
  p.threads = in.threads;
  p.step_tokens = in.max_chunk;
  p.weights_repacked = in.weights.repacked;
  p.weights_mapped = in.weights.mapped;
  p.weights_converted = in.weights.converted;
  p.ple_table = in.weights.ple_table;
  // KvCacheBytes (model/kv_cache.h) knows what a position costs in each type: the rings are
  // its bytes at no position, the global layers' rows the rest.
  p.kv_sliding = KvCacheBytes(c, in.kv_type, 0, in.max_chunk);
  p.kv_full = KvCacheBytes(c, in.kv_type, p.context_tokens, in.max_chunk) - p.kv_sliding;
  // Each rewind point copies the rings' rows up to its position (KvCache::SaveRings): at most
  // min(context, W - 1 + step) of every ring's W - 1 + step rows.
  const int64_t ring_rows = std::max<int64_t>(1, KvRingRows(c, in.max_chunk));
  p.kv_rewind = InferenceState::kRewindSlots * p.kv_sliding *
                static_cast<uint64_t>(std::min(p.context_tokens, ring_rows)) /
                static_cast<uint64_t>(ring_rows);
  p.scratch = ForwardScratchBytes(c, in.max_chunk, in.threads, p.context_tokens, in.weights.bf16_k,
                                  in.weights.bf16_ple_k);
  p.tokenizer = in.tokenizer;
  p.encoder_weights = in.encoder_weights;
  p.encoder_activations = in.encoder_activations;
  p.max_image_tokens = in.max_image_tokens;
  p.drafter = in.drafter;
  p.total = p.weights_repacked + p.weights_mapped + p.weights_converted + p.kv_full + p.kv_sliding +
            p.kv_rewind + p.scratch + p.tokenizer + p.encoder_weights + p.encoder_activations +
            p.drafter;
  return p;
}

PlanInputs WithStepWithin(const PlanInputs& inputs, int64_t context_tokens, uint64_t limit) {
  if (limit == 0 || inputs.max_chunk <= kSmallestDefaultMaxChunk ||
      ComputeMemoryPlan(inputs, context_tokens).total <= limit) {
    return inputs;
  }
  PlanInputs smaller = inputs;
  smaller.max_chunk = kSmallestDefaultMaxChunk;
  return ComputeMemoryPlan(smaller, context_tokens).total <= limit ? smaller : inputs;
}

Status CheckMemoryLimit(const PlanInputs& inputs, const MemoryPlan& plan, uint64_t limit,
                        const std::string& what) {
  if (limit == 0 || plan.total <= limit) return OkStatus();
  // The plan grows with the context (global layers' rows, attention scores): the largest
  // context that fits, by bisection.
  int64_t lo = 0, hi = plan.context_tokens;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (ComputeMemoryPlan(inputs, mid).total <= limit) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const std::string fits = lo > 0 ? "the largest context that fits is " + std::to_string(lo) +
                                        " tokens (SessionOptions::max_context)"
                                  : "no context fits: the weights alone exceed the limit";
  return ResourceExhaustedError(
      what + " needs " + Bytes(plan.total) + " at a context of " +
      std::to_string(plan.context_tokens) + " tokens (weights " +
      Bytes(plan.weights_repacked + plan.weights_mapped + plan.weights_converted) + ", KV cache " +
      Bytes(plan.kv_full + plan.kv_sliding + plan.kv_rewind) + " as " + plan.kv_cache_type +
      ", scratch " + Bytes(plan.scratch) + ", tokenizer " + Bytes(plan.tokenizer) + ", encoders " +
      Bytes(plan.encoder_weights + plan.encoder_activations) +
      (plan.drafter > 0 ? ", drafter " + Bytes(plan.drafter) : std::string()) +
      "), over ModelOptions::memory_limit_bytes = " + Bytes(limit) + "; " + fits);
}

std::string DescribeMemoryPlan(const MemoryPlan& p) {
  std::string out;
  auto line = [&](const char* name, uint64_t bytes) {
    out += std::string("plan ") + name + ": " + Bytes(bytes) + "\n";
  };
  out += "plan context: " + std::to_string(p.context_tokens) +
         " tokens  kv_type: " + p.kv_cache_type + "  threads: " + std::to_string(p.threads) +
         "  step: " + std::to_string(p.step_tokens) + " tokens";
  if (p.encoder_activations > 0 && p.max_image_tokens > 0) {
    out += "  image_budget: " + std::to_string(p.max_image_tokens);
  }
  out += "\n";
  line("weights repacked", p.weights_repacked);
  line("weights mapped", p.weights_mapped);
  line("weights converted", p.weights_converted);
  line("kv full", p.kv_full);
  line("kv sliding", p.kv_sliding);
  line("kv rewind", p.kv_rewind);
  line("scratch", p.scratch);
  line("tokenizer", p.tokenizer);
  line("encoder weights", p.encoder_weights);
  line("encoder activations", p.encoder_activations);
  if (p.drafter > 0) line("drafter", p.drafter);
  line("ple table (page cache, not counted)", p.ple_table);
  line("total", p.total);
  return out;
}

}  // namespace gemma4
