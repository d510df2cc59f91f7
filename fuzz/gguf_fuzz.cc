// libFuzzer target: gguf::File::Parse on the raw bytes of a file, then the Gemma 4 metadata
// mapping (ConfigFromGguf). Every tensor view must lie inside the input (each byte is read so
// AddressSanitizer checks it), and a configuration that parses must have a consistent table.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "formats/gguf.h"
#include "model/gguf_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size copy, so that a read one byte past the end is caught.
  std::vector<uint8_t> bytes(data, data + size);
  auto file = gemma4::gguf::File::Parse(bytes.data(), bytes.size(), "fuzz.gguf");
  if (!file.ok()) {
    if (file.status().message().empty()) __builtin_trap();
    return 0;
  }
  const uint8_t* begin = bytes.data();
  const uint8_t* end = begin + bytes.size();
  volatile uint8_t sink = 0;
  for (const gemma4::TensorView& t : (*file)->tensors()) {
    if (t.nbytes == 0) continue;
    if (t.data < begin || t.data > end || t.nbytes > static_cast<uint64_t>(end - t.data)) {
      __builtin_trap();
    }
    uint8_t acc = 0;
    for (uint64_t i = 0; i < t.nbytes; ++i) acc ^= t.data[i];
    sink = sink ^ acc;
  }
  auto config = gemma4::ConfigFromGguf(**file);
  if (!config.ok()) {
    if (config.status().message().empty()) __builtin_trap();
    return 0;
  }
  const gemma4::ModelConfig& c = *config;
  if (static_cast<int>(c.layers.size()) != c.num_layers) __builtin_trap();
  for (const gemma4::LayerConfig& l : c.layers) {
    if (l.num_kv_heads <= 0 || c.num_heads % l.num_kv_heads != 0) __builtin_trap();
    if (l.kv_source < 0 || l.kv_source >= c.num_layers) __builtin_trap();
    if (static_cast<int>(l.inv_freq.size()) != l.head_dim / 2) __builtin_trap();
    if (l.rotated_pairs < 0 || l.rotated_pairs > l.head_dim / 2) __builtin_trap();
  }
  (void)sink;
  return 0;
}
