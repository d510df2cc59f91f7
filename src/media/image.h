// Image decoding for vision input, following what transformers' Gemma4ImageProcessor does to a
// file: PIL.Image.open, PIL.ImageOps.exif_transpose, .convert("RGB").
#ifndef GEMMA4_SRC_MEDIA_IMAGE_H_
#define GEMMA4_SRC_MEDIA_IMAGE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/status.h"

namespace gemma4::media {

// Limits checked before any pixel buffer is allocated: each side at most 32768 pixels and at
// most 64 megapixels in all (192 MiB of RGB8). Zero-sized images are refused.
inline constexpr int64_t kMaxImageSide = 32768;
inline constexpr int64_t kMaxImagePixels = int64_t{64} << 20;
// Files larger than this are refused by LoadImageFile.
inline constexpr int64_t kMaxImageFileBytes = int64_t{256} << 20;

struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // HWC, RGB8, row-major, width * height * 3 bytes
};

// OK when width x height is within the limits above; `source` names the image in the error.
Status CheckImageSize(int64_t width, int64_t height, const std::string& source);

// PNG, JPEG or WebP, chosen by magic bytes, converted with PIL's convert("RGB") semantics:
// alpha dropped (not composited), gray replicated, palettes expanded, CMYK JPEGs (Adobe
// inverted) converted as PIL does. EXIF orientation is applied like PIL.ImageOps.exif_transpose
// (JPEG APP1 Exif, PNG eXIf chunk, WebP EXIF chunk). `source` names the file or buffer in
// errors. Corrupt or truncated data yields DataLoss or InvalidArgument, never a crash.
StatusOr<RgbImage> DecodeImage(std::string_view bytes, const std::string& source);

// Reads a regular file (at most kMaxImageFileBytes) and decodes it.
StatusOr<RgbImage> LoadImageFile(const std::string& path);

// From raw pixels the caller decoded: channels 1 (gray, replicated), 2 (gray + alpha), 3 (RGB)
// or 4 (RGBA); alpha is dropped. Rows are stride_bytes apart (>= width * channels).
StatusOr<RgbImage> ImageFromPixels(const uint8_t* data, int width, int height, int channels,
                                   int64_t stride_bytes);

// True when the library was built with the PNG/JPEG/WebP decoders (GEMMA4_WITH_IMAGE_CODECS).
bool HaveImageCodecs();

}  // namespace gemma4::media

#endif  // GEMMA4_SRC_MEDIA_IMAGE_H_
