// Gemma 4's image preprocessing after decoding and resizing (Gemma4ImageProcessor in
// transformers 5.17): the aspect-preserving target size that fills a soft-token budget, then
// rescale by 1/255 and patchify. Resizing itself is media::ResizeBicubicAntialias.
#ifndef GEMMA4_SRC_VISION_IMAGE_PREPROCESS_H_
#define GEMMA4_SRC_VISION_IMAGE_PREPROCESS_H_

#include <cstdint>
#include <vector>

#include "gemma4/status.h"
#include "media/image.h"
#include "model/config.h"

namespace gemma4::vision {

struct TargetSize {
  int height = 0;
  int width = 0;
};

// The largest height and width, multiples of pooling * patch, whose patch count stays within
// max_soft_tokens * pooling^2 for an image of height x width (scaling up as well as down), as
// get_aspect_ratio_preserving_size computes it in double precision; a side that rounds to zero
// becomes one block and the other side its aspect multiple, capped.
StatusOr<TargetSize> AspectPreservingSize(int height, int width, int patch_size,
                                          int max_soft_tokens, int pooling_kernel_size);

// Patches of one resized image, ready for the vision tower.
struct ImagePatches {
  int patches_h = 0;  // rows of patches
  int patches_w = 0;  // columns of patches
  int patch_size = 0;
  // [patches_h * patches_w, patch_size * patch_size * 3], patch p = py * patches_w + px,
  // values in (row-in-patch, column-in-patch, channel) order, each byte * f32(1/255).
  std::vector<float> pixels;
  int64_t num_patches() const { return int64_t{patches_h} * patches_w; }
};

// How bytes become pixel values. The image processor rescales (`x * f32(1/255)`); the video
// processor's fused rescale + normalize divides (`f32(x) / 255`), which differs in the last
// bit for some bytes.
enum class PixelScale { kImage, kVideoFrame };

// rgb: [height, width, 3] bytes; height and width multiples of patch_size.
StatusOr<ImagePatches> Patchify(const uint8_t* rgb, int height, int width, int patch_size,
                                PixelScale scale = PixelScale::kImage);

// The whole preprocessing of one decoded RGB image for a soft-token budget (70, 140, 280, 560
// or 1120): aspect-preserving size, bicubic antialiased resize bit-identical to torchvision's
// uint8 path (skipped when the size already fits), rescale and patchify.
StatusOr<ImagePatches> PreprocessImage(const media::RgbImage& image, int max_soft_tokens,
                                       const VisionConfig& config,
                                       PixelScale scale = PixelScale::kImage);

}  // namespace gemma4::vision

#endif  // GEMMA4_SRC_VISION_IMAGE_PREPROCESS_H_
