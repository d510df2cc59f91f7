#include "vision/image_preprocess.h"

#include <cmath>
#include <new>
#include <string>

#include "media/resize.h"

namespace gemma4::vision {

StatusOr<TargetSize> AspectPreservingSize(int height, int width, int patch_size,
                                          int max_soft_tokens, int pooling_kernel_size) {
  if (height <= 0 || width <= 0 || patch_size <= 0 || max_soft_tokens <= 0 ||
      pooling_kernel_size <= 0) {
    return InvalidArgumentError("image of " + std::to_string(width) + "x" + std::to_string(height) +
                                " pixels cannot be resized");
  }
  // Python floats are doubles: the same arithmetic in the same order.
  const int64_t max_patches = int64_t{max_soft_tokens} * pooling_kernel_size * pooling_kernel_size;
  const double total_px = static_cast<double>(int64_t{height} * width);
  const double target_px = static_cast<double>(max_patches * patch_size * patch_size);
  const double factor = std::sqrt(target_px / total_px);
  const double ideal_height = factor * height;
  const double ideal_width = factor * width;
  const int64_t side = int64_t{pooling_kernel_size} * patch_size;
  int64_t target_height = static_cast<int64_t>(std::floor(ideal_height / side)) * side;
  int64_t target_width = static_cast<int64_t>(std::floor(ideal_width / side)) * side;
  if (target_height == 0 && target_width == 0) {
    return InvalidArgumentError("image of " + std::to_string(width) + "x" + std::to_string(height) +
                                " pixels would resize to 0x0");
  }
  const int64_t max_side =
      (max_patches / (int64_t{pooling_kernel_size} * pooling_kernel_size)) * side;
  if (target_height == 0) {
    target_height = side;
    target_width = std::min<int64_t>(
        static_cast<int64_t>(std::floor(static_cast<double>(width) / height)) * side, max_side);
  } else if (target_width == 0) {
    target_width = side;
    target_height = std::min<int64_t>(
        static_cast<int64_t>(std::floor(static_cast<double>(height) / width)) * side, max_side);
  }
  if (target_height * target_width > max_patches * patch_size * patch_size) {
    return InvalidArgumentError("image of " + std::to_string(width) + "x" + std::to_string(height) +
                                " pixels: resizing to " + std::to_string(target_width) + "x" +
                                std::to_string(target_height) + " exceeds " +
                                std::to_string(max_patches) + " patches");
  }
  return TargetSize{static_cast<int>(target_height), static_cast<int>(target_width)};
}

StatusOr<ImagePatches> Patchify(const uint8_t* rgb, int height, int width, int patch_size,
                                PixelScale pixel_scale) {
  if (patch_size <= 0 || height <= 0 || width <= 0 || height % patch_size != 0 ||
      width % patch_size != 0) {
    return InvalidArgumentError("image of " + std::to_string(width) + "x" + std::to_string(height) +
                                " is not a whole number of " + std::to_string(patch_size) +
                                "-pixel patches");
  }
  ImagePatches out;
  out.patches_h = height / patch_size;
  out.patches_w = width / patch_size;
  out.patch_size = patch_size;
  const int64_t patch_values = int64_t{patch_size} * patch_size * 3;
  try {
    out.pixels.resize(out.num_patches() * patch_values);
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory patchifying a " + std::to_string(width) + "x" +
                                  std::to_string(height) + " image");
  }
  // The image processor rescales with `uint8 tensor * python float`: f32(byte) * f32(1/255);
  // the video processor normalizes with std 255: f32(byte) / 255.
  const float scale = static_cast<float>(1.0 / 255.0);
  float lut[256];
  for (int i = 0; i < 256; ++i) {
    lut[i] = pixel_scale == PixelScale::kImage ? static_cast<float>(i) * scale
                                               : static_cast<float>(i) / 255.0f;
  }
  float* dst = out.pixels.data();
  for (int py = 0; py < out.patches_h; ++py) {
    for (int px = 0; px < out.patches_w; ++px) {
      for (int r = 0; r < patch_size; ++r) {
        const uint8_t* src =
            rgb + (int64_t{py} * patch_size + r) * width * 3 + int64_t{px} * patch_size * 3;
        for (int j = 0; j < patch_size * 3; ++j) *dst++ = lut[src[j]];
      }
    }
  }
  return out;
}

StatusOr<ImagePatches> PreprocessImage(const media::RgbImage& image, int max_soft_tokens,
                                       const VisionConfig& config, PixelScale scale) {
  if (!IsSupportedSoftTokenBudget(max_soft_tokens)) {
    return InvalidArgumentError("image budget of " + std::to_string(max_soft_tokens) +
                                " soft tokens: expected 70, 140, 280, 560 or 1120");
  }
  GEMMA4_ASSIGN_OR_RETURN(TargetSize size,
                          AspectPreservingSize(image.height, image.width, config.patch_size,
                                               max_soft_tokens, config.pooling_kernel_size));
  if (size.height == image.height && size.width == image.width) {
    return Patchify(image.pixels.data(), image.width == 0 ? 0 : image.height, image.width,
                    config.patch_size, scale);
  }
  GEMMA4_ASSIGN_OR_RETURN(media::RgbImage resized,
                          media::ResizeBicubicAntialias(image, size.height, size.width));
  return Patchify(resized.pixels.data(), resized.height, resized.width, config.patch_size, scale);
}

}  // namespace gemma4::vision
