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

StatusOr<std::vector<float>> ResampleMonoImpl(const float* samples, int64_t n, int rate,
                                              int target_rate);

// Reads every frame of an open file, downmixes to mono (channel mean) and resamples.
StatusOr<DecodedAudio> ReadAll(SndFile& file, const SF_INFO& info, const std::string& path,
                               int target_rate, const AudioLimits& limits) {
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
    if (mono.empty()) return InvalidArgumentError(path + ": the audio holds no samples");
    GEMMA4_ASSIGN_OR_RETURN(out.samples,
                            ResampleMonoImpl(mono.data(), static_cast<int64_t>(mono.size()),
                                             info.samplerate, target_rate));
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(path + ": out of memory decoding audio");
  }
  return out;
}

// libsndfile virtual I/O over a byte buffer.
struct MemoryReader {
  std::string_view bytes;
  sf_count_t pos = 0;
};
sf_count_t MemLength(void* user) {
  return static_cast<sf_count_t>(static_cast<MemoryReader*>(user)->bytes.size());
}
sf_count_t MemSeek(sf_count_t offset, int whence, void* user) {
  auto* m = static_cast<MemoryReader*>(user);
  const sf_count_t size = static_cast<sf_count_t>(m->bytes.size());
  const sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : size;
  const sf_count_t to = base + offset;
  if (to < 0 || to > size) return -1;
  m->pos = to;
  return m->pos;
}
sf_count_t MemRead(void* dst, sf_count_t count, void* user) {
  auto* m = static_cast<MemoryReader*>(user);
  const sf_count_t left = static_cast<sf_count_t>(m->bytes.size()) - m->pos;
  const sf_count_t n = std::max<sf_count_t>(0, std::min(count, left));
  if (n > 0) std::memcpy(dst, m->bytes.data() + m->pos, static_cast<size_t>(n));
  m->pos += n;
  return n;
}
sf_count_t MemWrite(const void*, sf_count_t, void*) { return 0; }
sf_count_t MemTell(void* user) { return static_cast<MemoryReader*>(user)->pos; }

StatusOr<std::vector<float>> ResampleMonoImpl(const float* samples, int64_t n, int rate,
                                              int target_rate) {
  if (n <= 0) return InvalidArgumentError("audio: no samples");
  if (rate < 1 || rate > 768000 || target_rate < 1000 || target_rate > 384000) {
    return InvalidArgumentError("audio: sample rate " + std::to_string(rate) + " -> " +
                                std::to_string(target_rate) + " is out of range");
  }
  try {
    if (rate == target_rate) return std::vector<float>(samples, samples + n);
    const double ratio = static_cast<double>(target_rate) / rate;
    const size_t out_len = static_cast<size_t>(std::ceil(static_cast<double>(n) * ratio));
    std::vector<float> out(out_len, 0.0f);
    const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
    size_t done = 0;
    soxr_error_t err = soxr_oneshot(rate, target_rate, 1, samples, static_cast<size_t>(n), nullptr,
                                    out.data(), out_len, &done, &io, &quality, nullptr);
    if (err != nullptr) return InternalError("audio: resampling failed (" + std::string(err) + ")");
    out.resize(done);
    if (out.empty()) return InvalidArgumentError("audio: too short to resample");
    return out;
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("audio: out of memory resampling");
  }
}

}  // namespace

StatusOr<std::vector<float>> ResampleMono(const float* samples, int64_t n, int rate,
                                          int target_rate) {
  return ResampleMonoImpl(samples, n, rate, target_rate);
}

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
  return ReadAll(file, info, path, target_rate, limits);
}

StatusOr<DecodedAudio> DecodeAudio(std::string_view bytes, const std::string& source,
                                   int target_rate, const AudioLimits& limits) {
  if (target_rate < 1000 || target_rate > 384000) {
    return InvalidArgumentError("audio: target rate " + std::to_string(target_rate) +
                                " is out of range");
  }
  if (bytes.empty()) return InvalidArgumentError(source + ": no audio bytes");
  if (bytes.size() > limits.max_file_bytes) {
    return InvalidArgumentError(source + ": " + std::to_string(bytes.size()) +
                                " bytes of audio exceed the limit of " +
                                std::to_string(limits.max_file_bytes));
  }
  MemoryReader reader{bytes, 0};
  SF_VIRTUAL_IO io{MemLength, MemSeek, MemRead, MemWrite, MemTell};
  SF_INFO info;
  std::memset(&info, 0, sizeof(info));
  SndFile file(sf_open_virtual(&io, SFM_READ, &info, &reader));
  if (file.get() == nullptr) {
    return InvalidArgumentError(source + ": cannot decode audio (" + sf_strerror(nullptr) + ")");
  }
  return ReadAll(file, info, source, target_rate, limits);
}

#else  // !GEMMA4_HAVE_SNDFILE

bool AudioFilesSupported() { return false; }

StatusOr<DecodedAudio> LoadAudioFile(const std::string& path, int, const AudioLimits&) {
  return UnimplementedError(path +
                            ": this build cannot decode audio files (built without libsndfile "
                            "and libsoxr; Debian: libsndfile1-dev libsoxr-dev)");
}

StatusOr<DecodedAudio> DecodeAudio(std::string_view, const std::string& source, int,
                                   const AudioLimits&) {
  return UnimplementedError(source +
                            ": this build cannot decode audio (built without libsndfile and "
                            "libsoxr; Debian: libsndfile1-dev libsoxr-dev)");
}

StatusOr<std::vector<float>> ResampleMono(const float* samples, int64_t n, int rate,
                                          int target_rate) {
  if (n <= 0) return InvalidArgumentError("audio: no samples");
  if (rate != target_rate) {
    return UnimplementedError("audio: this build cannot resample (built without libsoxr)");
  }
  return std::vector<float>(samples, samples + n);
}

#endif  // GEMMA4_HAVE_SNDFILE

}  // namespace gemma4::media
