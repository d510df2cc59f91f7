// libFuzzer target: media::DecodeAudio (WAV, FLAC, Ogg, MP3 through libsndfile's virtual I/O)
// on arbitrary bytes, then the log-mel features of short results. A decoded clip must be mono,
// 16 kHz, finite, and its features finite with a consistent frame count.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "audio/audio_features.h"
#include "media/audio_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  gemma4::media::AudioLimits limits;
  limits.max_seconds = 60;  // bound the work per input
  auto clip = gemma4::media::DecodeAudio(bytes, "fuzz", 16000, limits);
  if (!clip.ok()) {
    if (clip.status().message().empty()) __builtin_trap();
    return 0;
  }
  if (clip->sample_rate != 16000 || clip->samples.empty()) __builtin_trap();
  for (float v : clip->samples) {
    if (!std::isfinite(v)) __builtin_trap();
  }
  const int64_t n = static_cast<int64_t>(clip->samples.size());
  if (n > 64000) return 0;
  auto features = gemma4::audio::ComputeLogMel(clip->samples.data(), n);
  if (!features.ok()) return 0;  // too short for a frame, for instance
  if (features->features.size() !=
          static_cast<size_t>(features->num_frames) * features->feature_size ||
      features->mask.size() != static_cast<size_t>(features->num_frames)) {
    __builtin_trap();
  }
  for (float v : features->features) {
    if (!std::isfinite(v)) __builtin_trap();
  }
  return 0;
}
