// libFuzzer target: media::LoadVideoFrames (FFmpeg's demuxers and decoders, then the 1 fps
// sampling) on arbitrary bytes, through an in-memory file. Sampled frames must be within the
// limits given, consistent in size, and in time order; errors must say what was wrong.
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "media/video_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("video_fuzz", 0);
  if (fd < 0) return 0;
  size_t written = 0;
  while (written < size) {
    const ssize_t n = write(fd, data + written, size - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  gemma4::media::VideoSampling sampling;
  sampling.max_frames = 4;
  sampling.max_side = 256;
  sampling.max_file_bytes = 1 << 20;
  auto frames = gemma4::media::LoadVideoFrames("/proc/self/fd/" + std::to_string(fd), sampling);
  close(fd);
  if (!frames.ok()) {
    if (frames.status().message().empty()) __builtin_trap();
    return 0;
  }
  if (frames->empty() || frames->size() > 4) __builtin_trap();
  double last = -1;
  for (const auto& f : *frames) {
    const int64_t w = f.image.width, h = f.image.height;
    if (w <= 0 || h <= 0 || w > 256 || h > 256) __builtin_trap();
    if (f.image.pixels.size() != static_cast<size_t>(w * h * 3)) __builtin_trap();
    if (!std::isfinite(f.seconds) || f.seconds < last) __builtin_trap();
    last = f.seconds;
  }
  return 0;
}
