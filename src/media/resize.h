// The resize of Gemma 4's image processor: torchvision's resize(BICUBIC, antialias=True) on a
// uint8 tensor, which on CPU is ATen's separable fixed-point (Pillow-style) uint8 kernel. This
// reproduces it bit for bit (see resize.cc for the arithmetic).
#ifndef GEMMA4_SRC_MEDIA_RESIZE_H_
#define GEMMA4_SRC_MEDIA_RESIZE_H_

#include "gemma4/status.h"
#include "media/image.h"

namespace gemma4::media {

// Bicubic (Keys a = -0.5) resize with antialiasing, align_corners=False, scale = in/out.
// Up- and downscaling; a side whose size is unchanged is not filtered; equal sizes return a
// copy. Output sides must be in [1, kMaxImageSide] and the output at most kMaxImagePixels.
StatusOr<RgbImage> ResizeBicubicAntialias(const RgbImage& in, int out_height, int out_width);

}  // namespace gemma4::media

#endif  // GEMMA4_SRC_MEDIA_RESIZE_H_
