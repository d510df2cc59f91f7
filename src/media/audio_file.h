// Audio files -> 16 kHz mono float samples for the audio encoder: WAV, FLAC, Ogg (Vorbis, Opus),
// MP3 and the other formats libsndfile reads, downmixed to mono (the mean of the channels, as
// librosa.to_mono) and resampled with libsoxr (high quality, as librosa's default soxr_hq) when
// the file's rate differs. Built without libsndfile / libsoxr, every call is Unimplemented.
#ifndef GEMMA4_SRC_MEDIA_AUDIO_FILE_H_
#define GEMMA4_SRC_MEDIA_AUDIO_FILE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/status.h"

namespace gemma4::media {

struct AudioLimits {
  uint64_t max_file_bytes = uint64_t{1} << 30;  // 1 GiB
  double max_seconds = 4 * 3600.0;              // decoded duration
};

struct DecodedAudio {
  std::vector<float> samples;  // mono, at sample_rate
  int sample_rate = 0;
  int source_rate = 0;
  int source_channels = 0;
};

// Decodes a regular file (not a device, FIFO or directory) to mono at target_rate.
StatusOr<DecodedAudio> LoadAudioFile(const std::string& path, int target_rate = 16000,
                                     const AudioLimits& limits = AudioLimits());

// The same from the bytes of a file held in memory (`source` names it in errors).
StatusOr<DecodedAudio> DecodeAudio(std::string_view bytes, const std::string& source,
                                   int target_rate = 16000,
                                   const AudioLimits& limits = AudioLimits());

// Mono samples at `rate` resampled to `target_rate` (libsoxr, high quality); a copy when the
// rates are equal.
StatusOr<std::vector<float>> ResampleMono(const float* samples, int64_t n, int rate,
                                          int target_rate = 16000);

// Whether this build can decode audio files.
bool AudioFilesSupported();

}  // namespace gemma4::media

#endif  // GEMMA4_SRC_MEDIA_AUDIO_FILE_H_
