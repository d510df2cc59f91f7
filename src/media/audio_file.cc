#include "media/audio_file.h"

#include <cmath>
#include <new>

#if GEMMA4_HAVE_SNDFILE
#include <fcntl.h>
#include <sndfile.h>
#include <soxr.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#endif

namespace gemma4::media {

#if GEMMA4_HAVE_SNDFILE

bool AudioFilesSupported() { return true; }

namespace {

class SndFile {
 public:
  explicit SndFile(SNDFILE* f) : f_(f) {}
  ~SndFile() {
    if (f_ != nullptr) sf_close(f_);
  }
  SndFile(const SndFile&) = delete;
  SndFile& operator=(const SndFile&) = delete;
  SNDFILE* get() const { return f_; }

 private:
  SNDFILE* f_;
};

}  // namespace

StatusOr<DecodedAudio> LoadAudioFile(const std::string& path, int target_rate,
                                     const AudioLimits& limits) {
  if (target_rate < 1000 || target_rate > 384000) {
    return InvalidArgumentError("audio: target rate " + std::to_string(target_rate) +
                                " is out of range");
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    const std::string what = path + ": " + std::strerror(err);
    return err == ENOENT ? NotFoundError(what) : InvalidArgumentError(what);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgumentError(path + ": not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > limits.max_file_bytes) {
    ::close(fd);
    return InvalidArgumentError(path + ": audio file of " + std::to_string(st.st_size) +
                                " bytes exceeds the limit of " +
                                std::to_string(limits.max_file_bytes));
  }
  SF_INFO info;
  std::memset(&info, 0, sizeof(info));
  SndFile file(sf_open_fd(fd, SFM_READ, &info, /*close_desc=*/SF_TRUE));
  if (file.get() == nullptr) {
    return InvalidArgumentError(path + ": cannot decode audio (" + sf_strerror(nullptr) + ")");
  }
  if (info.channels < 1 || info.channels > 64 || info.samplerate < 1 || info.samplerate > 768000) {
    return InvalidArgumentError(path + ": unsupported audio layout (" +
                                std::to_string(info.channels) + " channels at " +
                                std::to_string(info.samplerate) + " Hz)");
  }
  DecodedAudio out;
  out.source_rate = info.samplerate;
  out.source_channels = info.channels;
  out.sample_rate = target_rate;
  const double max_frames_d = limits.max_seconds * info.samplerate;
  const int64_t max_frames =
      max_frames_d > 9e15 ? int64_t{1} << 53 : static_cast<int64_t>(max_frames_d);
  try {
    std::vector<float> mono;
    if (info.frames > 0 && info.frames <= max_frames) mono.reserve(info.frames);
    constexpr sf_count_t kBlock = 8192;
    std::vector<float> buf(kBlock * info.channels);
    const float inv_channels = 1.0f / static_cast<float>(info.channels);
    for (;;) {
      const sf_count_t got = sf_readf_float(file.get(), buf.data(), kBlock);
      if (got <= 0) break;
      if (static_cast<int64_t>(mono.size()) + got > max_frames) {
        return InvalidArgumentError(path + ": audio longer than " +
                                    std::to_string(limits.max_seconds) + " s");
      }
      for (sf_count_t i = 0; i < got; ++i) {
        const float* frame = buf.data() + i * info.channels;
        float v = frame[0];
        if (info.channels > 1) {
          float s = 0.0f;
          for (int c = 0; c < info.channels; ++c) s += frame[c];
          v = s * inv_channels;
        }
        if (!std::isfinite(v)) {
          return InvalidArgumentError(path + ": audio holds a non-finite sample");
        }
        mono.push_back(v);
      }
    }
    if (sf_error(file.get()) != SF_ERR_NO_ERROR) {
      return InvalidArgumentError(path + ": error decoding audio (" + sf_strerror(file.get()) +
                                  ")");
    }
    if (mono.empty()) return InvalidArgumentError(path + ": the audio file holds no samples");
    if (info.samplerate == target_rate) {
      out.samples = std::move(mono);
      return out;
    }
    const double ratio = static_cast<double>(target_rate) / info.samplerate;
    const size_t out_len = static_cast<size_t>(std::ceil(static_cast<double>(mono.size()) * ratio));
    out.samples.assign(out_len, 0.0f);
    const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
    size_t done = 0;
    soxr_error_t err =
        soxr_oneshot(info.samplerate, target_rate, 1, mono.data(), mono.size(), nullptr,
                     out.samples.data(), out_len, &done, &io, &quality, nullptr);
    if (err != nullptr) {
      return InternalError(path + ": resampling failed (" + std::string(err) + ")");
    }
    out.samples.resize(done);
    if (out.samples.empty()) return InvalidArgumentError(path + ": too short to resample");
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(path + ": out of memory decoding audio");
  }
  return out;
}

#else  // !GEMMA4_HAVE_SNDFILE

bool AudioFilesSupported() { return false; }

StatusOr<DecodedAudio> LoadAudioFile(const std::string& path, int, const AudioLimits&) {
  return UnimplementedError(path +
                            ": this build cannot decode audio files (built without libsndfile "
                            "and libsoxr; Debian: libsndfile1-dev libsoxr-dev)");
}

#endif  // GEMMA4_HAVE_SNDFILE

}  // namespace gemma4::media
