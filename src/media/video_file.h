// Video files (mp4, webm, mkv, ... anything FFmpeg's libavformat/libavcodec read) sampled to RGB
// frames for Gemma 4's video input: one frame per second from t = 0, or, when the video is
// longer than max_frames seconds, max_frames frames evenly spaced over its duration. Decoding
// and colour conversion are FFmpeg's (not part of the exactness claim: the frames then go
// through the video processor's exact steps). Optional at build time (GEMMA4_WITH_VIDEO_FILES).
#ifndef GEMMA4_SRC_MEDIA_VIDEO_FILE_H_
#define GEMMA4_SRC_MEDIA_VIDEO_FILE_H_

#include <string>
#include <vector>

#include "gemma4/status.h"
#include "media/image.h"

namespace gemma4::media {

struct SampledFrame {
  RgbImage image;
  double seconds = 0;  // presentation time of the frame
};

struct VideoSampling {
  double frames_per_second = 1.0;
  int max_frames = 32;
  uint64_t max_file_bytes = uint64_t{8} << 30;  // 8 GiB
  int max_side = 8192;                          // larger pictures are refused before decoding
};

// Regular files only. Errors name the file: no video stream, unsupported codec, corrupt data,
// oversized pictures, no frame decoded.
StatusOr<std::vector<SampledFrame>> LoadVideoFrames(const std::string& path,
                                                    const VideoSampling& sampling = {});

// Whether this build can decode video files.
bool VideoFilesSupported();

}  // namespace gemma4::media

#endif  // GEMMA4_SRC_MEDIA_VIDEO_FILE_H_
