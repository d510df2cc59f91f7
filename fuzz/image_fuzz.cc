// libFuzzer target: media::DecodeImage (PNG, JPEG, WebP by magic bytes) on arbitrary bytes. A
// decoded image must have a consistent size within the limits, and small ones go through the
// processor's resize (down and up) as well.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "media/image.h"
#include "media/resize.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto img = gemma4::media::DecodeImage(bytes, "fuzz");
  if (!img.ok()) {
    if (img.status().message().empty()) __builtin_trap();
    return 0;
  }
  const int64_t w = img->width, h = img->height;
  if (w <= 0 || h <= 0 || w > gemma4::media::kMaxImageSide || h > gemma4::media::kMaxImageSide ||
      w * h > gemma4::media::kMaxImagePixels) {
    __builtin_trap();
  }
  if (img->pixels.size() != static_cast<size_t>(w * h * 3)) __builtin_trap();
  if (w * h <= 4096) {
    for (auto [oh, ow] : {std::pair<int, int>{3, 5}, {static_cast<int>(h) * 2 + 1, 7}}) {
      auto r = gemma4::media::ResizeBicubicAntialias(*img, oh, ow);
      if (!r.ok() || r->pixels.size() != static_cast<size_t>(oh) * ow * 3) __builtin_trap();
    }
  }
  return 0;
}
