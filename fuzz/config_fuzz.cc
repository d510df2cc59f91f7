// libFuzzer target: config.json text through json::Parse and ParseModelConfig (and the
// generation-config stop tokens). A config that parses must have a consistent layer table.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/json.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto root = gemma4::json::Parse(text, "config.json");
  if (!root.ok()) return 0;
  auto config = gemma4::ParseModelConfig(*root, "config.json");
  if (!config.ok()) {
    if (config.status().message().empty()) __builtin_trap();
    return 0;
  }
  const gemma4::ModelConfig& c = *config;
  if (c.num_layers <= 0 || static_cast<int>(c.layers.size()) != c.num_layers) __builtin_trap();
  for (int i = 0; i < c.num_layers; ++i) {
    const gemma4::LayerConfig& l = c.layers[i];
    if (l.head_dim <= 0 || l.head_dim % 2 != 0 || l.num_kv_heads <= 0) __builtin_trap();
    if (c.num_heads % l.num_kv_heads != 0) __builtin_trap();
    if (static_cast<int>(l.inv_freq.size()) != l.head_dim / 2) __builtin_trap();
    if (l.rotated_pairs < 0 || l.rotated_pairs > l.head_dim / 2) __builtin_trap();
    if (l.kv_source < 0 || l.kv_source > i) __builtin_trap();
    if (l.kv_shared != (l.kv_source != i)) __builtin_trap();
    if (l.mlp_width <= 0) __builtin_trap();
  }
  gemma4::ModelConfig with_generation = c;
  (void)gemma4::ApplyGenerationConfig(*root, "generation_config.json", &with_generation);
  return 0;
}
