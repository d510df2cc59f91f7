// Bit-exact reimplementation of the uint8 antialiased bicubic resize that torchvision runs on
// CPU (ATen upsample_bicubic2d_aa on uint8: UpSampleKernel.cpp's int16 weights and the AVX2
// kernels of UpSampleKernelAVXAntialias.h, whose integer arithmetic equals the generic path).
//
// Per axis whose size changes (the other axis is left alone; equal sizes copy):
//   scale = in / out (double), support = 2 * scale when downscaling else 2 (Keys cubic,
//   a = -0.5, stretched by the scale when downscaling), taps per output = ceil(support) * 2 + 1.
//   For output i: center = scale * (i + 0.5); xmin = max(trunc(center - support + 0.5), 0);
//   xsize = min(trunc(center + support + 0.5), in) - xmin; w_j = filter((xmin + j - center +
//   0.5) / max(scale, 1)), normalized by their sum. All in double.
//   Fixed point: with wt_max the largest normalized weight of the axis, the precision P is the
//   first p in [0, 22) with (int)(0.5 + wt_max * 2^(p + 1)) >= 2^15 (else 22); each weight
//   becomes int16 round-half-away-from-zero(w * 2^P).
//   Each output value = clamp((2^(P - 1) + sum_j w_j * pixel_j) >> P, 0, 255) in int32, with an
//   arithmetic shift.
// The horizontal pass runs first over every input row into a uint8 image, then the vertical
// pass; a pass whose axis does not change is skipped.
#include "media/resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <new>
#include <string>
#include <vector>

namespace gemma4::media {
namespace {

struct AxisWeights {
  int taps = 0;                // stride of `weights` per output index
  int precision = 0;           // fixed-point bits
  std::vector<int32_t> first;  // first input index per output index
  std::vector<int32_t> count;  // number of input indices per output index
  std::vector<int16_t> weights;
};

// Keys' cubic convolution kernel with a = -0.5, evaluated in the same operation order as
// ATen (cubic_convolution1 / cubic_convolution2).
double CubicFilter(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0.0;
}

AxisWeights ComputeAxisWeights(int64_t in_size, int64_t out_size) {
  AxisWeights aw;
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double support = (scale >= 1.0) ? (4 * 0.5) * scale : 4 * 0.5;
  const int64_t taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  aw.taps = static_cast<int>(taps);
  aw.first.resize(out_size);
  aw.count.resize(out_size);
  std::vector<double> w(static_cast<size_t>(out_size * taps), 0.0);
  const double invscale = (scale >= 1.0) ? 1.0 / scale : 1.0;
  double wt_max = 0.0;
  for (int64_t i = 0; i < out_size; ++i) {
    const double center = scale * (static_cast<double>(i) + 0.5);
    const int64_t xmin = std::max(static_cast<int64_t>(center - support + 0.5), int64_t{0});
    int64_t xsize = std::min(static_cast<int64_t>(center + support + 0.5), in_size) - xmin;
    xsize = std::clamp(xsize, int64_t{0}, taps);
    double* wi = &w[static_cast<size_t>(i * taps)];
    double total = 0.0;
    for (int64_t j = 0; j < xsize; ++j) {
      const double v = CubicFilter((static_cast<double>(j + xmin) - center + 0.5) * invscale);
      wi[j] = v;
      total += v;
    }
    if (total != 0.0) {
      for (int64_t j = 0; j < xsize; ++j) {
        wi[j] /= total;
        wt_max = std::max(wt_max, wi[j]);
      }
    }
    aw.first[i] = static_cast<int32_t>(xmin);
    aw.count[i] = static_cast<int32_t>(xsize);
  }
  unsigned precision = 0;
  for (precision = 0; precision < 22; ++precision) {
    const int next = static_cast<int>(0.5 + wt_max * (1 << (precision + 1)));
    if (next >= (1 << 15)) break;
  }
  aw.precision = static_cast<int>(precision);
  aw.weights.resize(w.size());
  for (size_t k = 0; k < w.size(); ++k) {
    const double v = w[k] * (1 << precision);
    aw.weights[k] =
        static_cast<int16_t>(v < 0 ? static_cast<int>(-0.5 + v) : static_cast<int>(0.5 + v));
  }
  return aw;
}

inline uint8_t ToPixel(int32_t acc, int precision) {
  const int32_t v = acc >> precision;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Rows [0, height) of `src` (width src_w, RGB) resampled along x into `dst` (width
// aw.count.size()).
void HorizontalPass(const uint8_t* src, int src_w, int height, const AxisWeights& aw,
                    uint8_t* dst) {
  const int out_w = static_cast<int>(aw.count.size());
  const int32_t init = int32_t{1} << (aw.precision - 1);
  const size_t src_stride = static_cast<size_t>(src_w) * 3;
  const size_t dst_stride = static_cast<size_t>(out_w) * 3;
  for (int y = 0; y < height; ++y) {
    const uint8_t* row = src + y * src_stride;
    uint8_t* out = dst + y * dst_stride;
    for (int x = 0; x < out_w; ++x) {
      const int16_t* k = &aw.weights[static_cast<size_t>(x) * aw.taps];
      const uint8_t* p = row + static_cast<size_t>(aw.first[x]) * 3;
      const int n = aw.count[x];
      int32_t s0 = init, s1 = init, s2 = init;
      for (int j = 0; j < n; ++j) {
        const int32_t wj = k[j];
        s0 += wj * p[3 * j + 0];
        s1 += wj * p[3 * j + 1];
        s2 += wj * p[3 * j + 2];
      }
      out[3 * x + 0] = ToPixel(s0, aw.precision);
      out[3 * x + 1] = ToPixel(s1, aw.precision);
      out[3 * x + 2] = ToPixel(s2, aw.precision);
    }
  }
}

// `src` (width, RGB, any number of rows) resampled along y into `dst` (aw.count.size() rows).
void VerticalPass(const uint8_t* src, int width, const AxisWeights& aw, uint8_t* dst) {
  const int out_h = static_cast<int>(aw.count.size());
  const int32_t init = int32_t{1} << (aw.precision - 1);
  const size_t n = static_cast<size_t>(width) * 3;
  std::vector<int32_t> acc(n);
  for (int y = 0; y < out_h; ++y) {
    std::fill(acc.begin(), acc.end(), init);
    const int16_t* k = &aw.weights[static_cast<size_t>(y) * aw.taps];
    const int first = aw.first[y];
    for (int j = 0; j < aw.count[y]; ++j) {
      const int32_t wj = k[j];
      const uint8_t* row = src + static_cast<size_t>(first + j) * n;
      int32_t* a = acc.data();
      for (size_t i = 0; i < n; ++i) a[i] += wj * row[i];
    }
    uint8_t* out = dst + static_cast<size_t>(y) * n;
    for (size_t i = 0; i < n; ++i) out[i] = ToPixel(acc[i], aw.precision);
  }
}

}  // namespace

StatusOr<RgbImage> ResizeBicubicAntialias(const RgbImage& in, int out_height, int out_width) {
  const std::string what = "resize";
  GEMMA4_RETURN_IF_ERROR(CheckImageSize(in.width, in.height, "resize input"));
  if (in.pixels.size() != static_cast<size_t>(in.width) * in.height * 3) {
    return InvalidArgumentError("resize input: " + std::to_string(in.pixels.size()) +
                                " bytes for a " + std::to_string(in.width) + "x" +
                                std::to_string(in.height) + " RGB image");
  }
  GEMMA4_RETURN_IF_ERROR(CheckImageSize(out_width, out_height, "resize output"));
  // The intermediate image (input rows at the output width) is bounded like an image.
  if (out_width != in.width && out_height != in.height &&
      static_cast<int64_t>(in.height) * out_width > kMaxImagePixels) {
    return ResourceExhaustedError("resize " + std::to_string(in.width) + "x" +
                                  std::to_string(in.height) + " -> " + std::to_string(out_width) +
                                  "x" + std::to_string(out_height) +
                                  ": intermediate image over the pixel limit");
  }
  try {
    RgbImage out;
    out.width = out_width;
    out.height = out_height;
    if (out_width == in.width && out_height == in.height) {
      out.pixels = in.pixels;
      return out;
    }
    out.pixels.resize(static_cast<size_t>(out_width) * out_height * 3);
    if (out_width != in.width && out_height != in.height) {
      const AxisWeights h = ComputeAxisWeights(in.width, out_width);
      const AxisWeights v = ComputeAxisWeights(in.height, out_height);
      std::vector<uint8_t> tmp(static_cast<size_t>(in.height) * out_width * 3);
      HorizontalPass(in.pixels.data(), in.width, in.height, h, tmp.data());
      VerticalPass(tmp.data(), out_width, v, out.pixels.data());
    } else if (out_width != in.width) {
      const AxisWeights h = ComputeAxisWeights(in.width, out_width);
      HorizontalPass(in.pixels.data(), in.width, in.height, h, out.pixels.data());
    } else {
      const AxisWeights v = ComputeAxisWeights(in.height, out_height);
      VerticalPass(in.pixels.data(), in.width, v, out.pixels.data());
    }
    return out;
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(what + ": out of memory");
  }
}

}  // namespace gemma4::media
