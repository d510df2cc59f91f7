#include "media/video_file.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>

#if GEMMA4_HAVE_FFMPEG
#include <dlfcn.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avstring.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}
#endif

namespace gemma4::media {

#if GEMMA4_HAVE_FFMPEG

namespace {

// FFmpeg's libraries are opened at the first video file, not linked: libavformat alone pulls in
// about 130 shared libraries (network protocols, every codec's own library), which every program
// that embeds gemma4 would otherwise load and map at startup whether or not it ever reads a
// video (a process start measured 75 ms linked vs 25 ms without them; under AddressSanitizer the
// leak check at exit scans them all). The headers still give every function's exact type.
#define GEMMA4_FFMPEG_FUNCTIONS(X)          \
  X(avutil, av_dict_set)                    \
  X(avutil, av_dict_free)                   \
  X(avutil, av_strerror)                    \
  X(avutil, av_match_list)                  \
  X(avutil, av_frame_alloc)                 \
  X(avutil, av_frame_free)                  \
  X(avutil, av_frame_unref)                 \
  X(avcodec, avcodec_alloc_context3)        \
  X(avcodec, avcodec_free_context)          \
  X(avcodec, avcodec_parameters_to_context) \
  X(avcodec, avcodec_open2)                 \
  X(avcodec, avcodec_send_packet)           \
  X(avcodec, avcodec_receive_frame)         \
  X(avcodec, av_packet_alloc)               \
  X(avcodec, av_packet_free)                \
  X(avcodec, av_packet_unref)               \
  X(avformat, avformat_open_input)          \
  X(avformat, avformat_close_input)         \
  X(avformat, avformat_find_stream_info)    \
  X(avformat, av_find_best_stream)          \
  X(avformat, av_read_frame)                \
  X(swscale, sws_getCachedContext)          \
  X(swscale, sws_freeContext)               \
  X(swscale, sws_scale)
#define GEMMA4_STRINGIFY_INNER(x) #x
#define GEMMA4_STRINGIFY(x) GEMMA4_STRINGIFY_INNER(x)

// One pointer per function above, of that function's own type.
struct FfmpegApi {
#define GEMMA4_FFMPEG_MEMBER(library, name) decltype(&::name) name = nullptr;
  GEMMA4_FFMPEG_FUNCTIONS(GEMMA4_FFMPEG_MEMBER)
#undef GEMMA4_FFMPEG_MEMBER
};

struct LoadedFfmpeg {
  FfmpegApi api;
  std::string error;  // empty when every library and function was found
};

LoadedFfmpeg LoadFfmpeg() {
  LoadedFfmpeg loaded;
#if GEMMA4_LINK_FFMPEG  // linked (a static build): the functions are this program's own
#define GEMMA4_FFMPEG_LINKED(library, name) loaded.api.name = &::name;
  GEMMA4_FFMPEG_FUNCTIONS(GEMMA4_FFMPEG_LINKED)
#undef GEMMA4_FFMPEG_LINKED
#else
  // The sonames of the major versions the headers describe (Debian 12: libavformat.so.59 ...).
  constexpr const char* kAvutilLibrary = "libavutil.so." GEMMA4_STRINGIFY(LIBAVUTIL_VERSION_MAJOR);
  constexpr const char* kAvcodecLibrary =
      "libavcodec.so." GEMMA4_STRINGIFY(LIBAVCODEC_VERSION_MAJOR);
  constexpr const char* kAvformatLibrary =
      "libavformat.so." GEMMA4_STRINGIFY(LIBAVFORMAT_VERSION_MAJOR);
  constexpr const char* kSwscaleLibrary =
      "libswscale.so." GEMMA4_STRINGIFY(LIBSWSCALE_VERSION_MAJOR);
  // Never closed: frames and contexts from these libraries may live until the process ends.
  void* avutil = dlopen(kAvutilLibrary, RTLD_NOW | RTLD_LOCAL);
  void* avcodec = avutil != nullptr ? dlopen(kAvcodecLibrary, RTLD_NOW | RTLD_LOCAL) : nullptr;
  void* avformat = avcodec != nullptr ? dlopen(kAvformatLibrary, RTLD_NOW | RTLD_LOCAL) : nullptr;
  void* swscale = avformat != nullptr ? dlopen(kSwscaleLibrary, RTLD_NOW | RTLD_LOCAL) : nullptr;
  if (swscale == nullptr) {
    const char* why = dlerror();
    loaded.error =
        std::string("cannot load FFmpeg's libraries (") + (why != nullptr ? why : "?") +
        "; Debian: libavformat" GEMMA4_STRINGIFY(
            LIBAVFORMAT_VERSION_MAJOR) " libswscale" GEMMA4_STRINGIFY(LIBSWSCALE_VERSION_MAJOR) ")";
    return loaded;
  }
#define GEMMA4_FFMPEG_RESOLVE(library, name)                                    \
  loaded.api.name = reinterpret_cast<decltype(&::name)>(dlsym(library, #name)); \
  if (loaded.api.name == nullptr && loaded.error.empty()) {                     \
    loaded.error = std::string("FFmpeg's ") + #library + " has no " + #name;    \
  }
  GEMMA4_FFMPEG_FUNCTIONS(GEMMA4_FFMPEG_RESOLVE)
#undef GEMMA4_FFMPEG_RESOLVE
#endif  // GEMMA4_LINK_FFMPEG
  return loaded;
}

// FFmpeg's functions, loaded once (thread-safe), or Unimplemented saying what is missing.
StatusOr<const FfmpegApi*> Ffmpeg() {
  static const LoadedFfmpeg* const loaded = new LoadedFfmpeg(LoadFfmpeg());
  if (!loaded->error.empty()) return UnimplementedError("video files: " + loaded->error);
  return &loaded->api;
}

// The loaded API for the closers below (only ever run after Ffmpeg() succeeded).
const FfmpegApi& Av() { return **Ffmpeg(); }

// Owners of FFmpeg's objects (each freed with its own function).
struct FormatCloser {
  void operator()(AVFormatContext* f) const { Av().avformat_close_input(&f); }
};
struct CodecCloser {
  void operator()(AVCodecContext* c) const { Av().avcodec_free_context(&c); }
};
struct FrameCloser {
  void operator()(AVFrame* f) const { Av().av_frame_free(&f); }
};
struct PacketCloser {
  void operator()(AVPacket* p) const { Av().av_packet_free(&p); }
};
struct ScaleCloser {
  void operator()(SwsContext* s) const { Av().sws_freeContext(s); }
};

// What a video file may be. FFmpeg left to itself opens any of its ~300 demuxers over any
// protocol: an HLS playlist or an ffconcat script given as "video.mp4" would read other files
// (or URLs) named inside it, and rarely used demuxers and decoders are where FFmpeg's bugs live.
// So only the containers and video codecs people record and share are opened, and only as
// local files (FFmpeg's format_whitelist / codec_whitelist / protocol_whitelist options).
constexpr char kContainers[] = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpeg,mpegts,flv,ogg";
constexpr char kContainerNames[] = "MP4/MOV/3GP, Matroska/WebM, AVI, MPEG-PS/TS, FLV, Ogg";
constexpr char kDecoders[] =
    "h264,hevc,vp8,vp9,libvpx,libvpx-vp9,av1,libdav1d,libaom-av1,mpeg4,msmpeg4v3,mpeg1video,"
    "mpeg2video,mjpeg,theora,h263,prores,ffv1,rawvideo";

std::string AvError(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  Av().av_strerror(err, buf, sizeof(buf));
  return buf;
}

}  // namespace

bool VideoFilesSupported() { return Ffmpeg().ok(); }

StatusOr<std::vector<SampledFrame>> LoadVideoFrames(const std::string& path,
                                                    const VideoSampling& sampling) {
  if (!(sampling.frames_per_second > 0) || sampling.max_frames < 1) {
    return InvalidArgumentError("video sampling needs a positive rate and frame count");
  }
  StatusOr<const FfmpegApi*> loaded = Ffmpeg();
  if (!loaded.ok()) return loaded.status().WithContext(path);
  const FfmpegApi* av = *loaded;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return NotFoundError(path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return InvalidArgumentError(path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > sampling.max_file_bytes) {
    return InvalidArgumentError(path + ": video file of " + std::to_string(st.st_size) +
                                " bytes exceeds the limit");
  }
  AVDictionary* options = nullptr;
  if (av->av_dict_set(&options, "format_whitelist", kContainers, 0) < 0 ||
      av->av_dict_set(&options, "codec_whitelist", kDecoders, 0) < 0 ||
      av->av_dict_set(&options, "protocol_whitelist", "file", 0) < 0) {
    av->av_dict_free(&options);
    return ResourceExhaustedError(path + ": out of memory (options)");
  }
  AVFormatContext* raw_format = nullptr;
  int err = av->avformat_open_input(&raw_format, path.c_str(), nullptr, &options);
  av->av_dict_free(&options);
  if (err < 0) {
    return InvalidArgumentError(path + ": cannot open video (" + AvError(err) +
                                "; containers read: " + kContainerNames + ")");
  }
  std::unique_ptr<AVFormatContext, FormatCloser> format(raw_format);
  err = av->avformat_find_stream_info(format.get(), nullptr);
  if (err < 0) {
    return InvalidArgumentError(path + ": cannot read the streams (" + AvError(err) + ")");
  }
  const AVCodec* decoder = nullptr;
  const int stream_index =
      av->av_find_best_stream(format.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &decoder, 0);
  if (stream_index < 0 || decoder == nullptr) {
    return InvalidArgumentError(path + ": no decodable video stream");
  }
  if (av->av_match_list(decoder->name, kDecoders, ',') <= 0) {
    return UnimplementedError(path + ": video codec '" + decoder->name +
                              "' is not supported (supported: " + kDecoders + ")");
  }
  AVStream* stream = format->streams[stream_index];
  const int width = stream->codecpar->width, height = stream->codecpar->height;
  if (width <= 0 || height <= 0 || width > sampling.max_side || height > sampling.max_side) {
    return InvalidArgumentError(path + ": video of " + std::to_string(width) + "x" +
                                std::to_string(height) + " pixels (sides 1.." +
                                std::to_string(sampling.max_side) + ")");
  }
  std::unique_ptr<AVCodecContext, CodecCloser> codec(av->avcodec_alloc_context3(decoder));
  if (codec == nullptr) return ResourceExhaustedError(path + ": out of memory (codec)");
  if ((err = av->avcodec_parameters_to_context(codec.get(), stream->codecpar)) < 0 ||
      (err = av->avcodec_open2(codec.get(), decoder, nullptr)) < 0) {
    return InvalidArgumentError(path + ": cannot open the decoder (" + AvError(err) + ")");
  }
  // Sampling times: every 1 / fps seconds from 0 while that gives at most max_frames frames,
  // else max_frames evenly over the duration.
  double duration = -1;
  if (stream->duration != AV_NOPTS_VALUE && stream->duration > 0) {
    duration = static_cast<double>(stream->duration) * av_q2d(stream->time_base);
  } else if (format->duration != AV_NOPTS_VALUE && format->duration > 0) {
    duration = static_cast<double>(format->duration) / AV_TIME_BASE;
  }
  std::vector<double> targets;
  const double step = 1.0 / sampling.frames_per_second;
  if (duration > 0 && duration / step + 1 > sampling.max_frames) {
    for (int k = 0; k < sampling.max_frames; ++k) {
      targets.push_back(duration * k / sampling.max_frames);
    }
  } else {
    for (int k = 0; k < sampling.max_frames; ++k) {
      const double t = k * step;
      if (duration > 0 && t >= duration) break;
      targets.push_back(t);
    }
  }
  std::unique_ptr<AVFrame, FrameCloser> frame(av->av_frame_alloc());
  std::unique_ptr<AVPacket, PacketCloser> packet(av->av_packet_alloc());
  if (frame == nullptr || packet == nullptr) {
    return ResourceExhaustedError(path + ": out of memory (frame)");
  }
  std::unique_ptr<SwsContext, ScaleCloser> scale;
  std::vector<SampledFrame> out;
  size_t next = 0;
  int64_t decoded = 0;
  const double time_base = av_q2d(stream->time_base);
  // Takes every decoded frame at or past the next target time (one frame per target).
  auto take = [&]() -> Status {
    for (;;) {
      int r = av->avcodec_receive_frame(codec.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return OkStatus();
      if (r < 0) return DataLossError(path + ": corrupt video data (" + AvError(r) + ")");
      if (++decoded > int64_t{1} << 22) {
        return InvalidArgumentError(path + ": too many frames");
      }
      const int64_t pts = frame->best_effort_timestamp;
      const double seconds = pts == AV_NOPTS_VALUE ? decoded / 25.0 : pts * time_base;
      if (next >= targets.size() || seconds + 1e-6 < targets[next]) {
        av->av_frame_unref(frame.get());
        continue;
      }
      if (frame->width != width || frame->height != height) {
        av->av_frame_unref(frame.get());
        return InvalidArgumentError(path + ": frames change size mid-stream");
      }
      scale.reset(av->sws_getCachedContext(
          scale.release(), width, height, static_cast<AVPixelFormat>(frame->format), width, height,
          AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND, nullptr, nullptr, nullptr));
      if (scale == nullptr) {
        av->av_frame_unref(frame.get());
        return UnimplementedError(path + ": unsupported pixel format");
      }
      SampledFrame f;
      f.seconds = seconds;
      f.image.width = width;
      f.image.height = height;
      f.image.pixels.resize(static_cast<size_t>(width) * height * 3);
      uint8_t* dst[4] = {f.image.pixels.data(), nullptr, nullptr, nullptr};
      int dst_stride[4] = {width * 3, 0, 0, 0};
      av->sws_scale(scale.get(), frame->data, frame->linesize, 0, height, dst, dst_stride);
      av->av_frame_unref(frame.get());
      out.push_back(std::move(f));
      // Skip targets this frame already covers (frame rates below the sampling rate).
      while (next < targets.size() && targets[next] <= seconds + 1e-6) ++next;
    }
  };
  try {
    while (next < targets.size()) {
      err = av->av_read_frame(format.get(), packet.get());
      if (err < 0) break;  // end of file (or a read error: keep what was decoded)
      if (packet->stream_index == stream_index) {
        err = av->avcodec_send_packet(codec.get(), packet.get());
        av->av_packet_unref(packet.get());
        if (err < 0 && err != AVERROR(EAGAIN)) {
          return DataLossError(path + ": corrupt video data (" + AvError(err) + ")");
        }
        GEMMA4_RETURN_IF_ERROR(take());
      } else {
        av->av_packet_unref(packet.get());
      }
    }
    av->avcodec_send_packet(codec.get(), nullptr);  // flush the decoder
    GEMMA4_RETURN_IF_ERROR(take());
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(path + ": out of memory decoding video");
  }
  if (out.empty()) return DataLossError(path + ": no video frame could be decoded");
  return out;
}

#else  // !GEMMA4_HAVE_FFMPEG

bool VideoFilesSupported() { return false; }

StatusOr<std::vector<SampledFrame>> LoadVideoFrames(const std::string& path, const VideoSampling&) {
  return UnimplementedError(path +
                            ": this build cannot decode video files (built without FFmpeg's "
                            "libraries; Debian: libavformat-dev libavcodec-dev libswscale-dev); "
                            "give the frames as images with timestamps instead");
}

#endif  // GEMMA4_HAVE_FFMPEG

}  // namespace gemma4::media
