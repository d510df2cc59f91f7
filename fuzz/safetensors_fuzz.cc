// libFuzzer target: ParseSafetensors on the raw bytes of a file. Every tensor view it returns
// must lie inside the input; reading each byte lets AddressSanitizer check that.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size copy, so that a read one byte past the end is caught.
  std::vector<uint8_t> bytes(data, data + size);
  auto tensors = gemma4::ParseSafetensors(bytes.data(), bytes.size(), "fuzz.safetensors");
  if (!tensors.ok()) {
    if (tensors.status().message().empty()) __builtin_trap();
    return 0;
  }
  const uint8_t* begin = bytes.data();
  const uint8_t* end = begin + bytes.size();
  volatile uint8_t sink = 0;
  for (const gemma4::TensorView& t : *tensors) {
    if (t.nbytes == 0) continue;
    if (t.data < begin || t.data > end || t.nbytes > static_cast<uint64_t>(end - t.data)) {
      __builtin_trap();
    }
    uint8_t acc = 0;
    for (uint64_t i = 0; i < t.nbytes; ++i) acc ^= t.data[i];
    sink = sink ^ acc;
    (void)t.ShapeString();
  }
  (void)sink;
  return 0;
}
