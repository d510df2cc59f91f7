// Gemma 4's audio front end (Gemma4AudioFeatureExtractor of transformers 5.17): 16 kHz mono
// samples -> log-mel frames and their validity mask, plus the processor's soft-token count.
//
// One call handles one clip of at most max_length samples (30 s at 16 kHz); longer input is
// truncated exactly as the extractor does. Callers that want more than 30 s split the audio into
// 30 s pieces and encode each piece on its own.
#ifndef GEMMA4_SRC_AUDIO_AUDIO_FEATURES_H_
#define GEMMA4_SRC_AUDIO_AUDIO_FEATURES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/json.h"
#include "gemma4/status.h"

namespace gemma4::audio {

// The feature extractor's settings (processor_config.json "feature_extractor", or a flat
// preprocessor_config.json). Defaults are Gemma 4's.
struct FeatureConfig {
  int sampling_rate = 16000;
  int feature_size = 128;  // mel bins
  double frame_length_ms = 20.0;
  double hop_length_ms = 10.0;
  double min_frequency = 0.0;
  double max_frequency = 8000.0;
  double mel_floor = 1e-3;
  double preemphasis = 0.0;
  bool preemphasis_htk_flavor = true;
  bool fft_overdrive = false;
  double input_scale_factor = 1.0;
  int64_t max_length = 480000;  // samples kept (truncation)
  int pad_to_multiple_of = 128;

  // Derived as the extractor does: round(rate * ms / 1000) (round half to even), and the next
  // power of two (doubled with fft_overdrive).
  int frame_length() const;
  int hop_length() const;
  int fft_length() const;
};

// Reads the feature extractor settings from processor_config.json (nested under
// "feature_extractor") or preprocessor_config.json (flat) into *config, refusing settings this
// implementation does not reproduce (dither, per-bin normalisation, other sampling rates).
Status ApplyFeatureExtractorConfig(const json::Value& processor_config, const std::string& source,
                                   FeatureConfig* config);

// Validates a FeatureConfig (ranges, supported values).
Status ValidateFeatureConfig(const FeatureConfig& config);

struct AudioFeatures {
  int64_t num_frames = 0;
  int feature_size = 0;
  std::vector<float> features;  // [num_frames, feature_size], row-major; invalid frames are 0
  std::vector<uint8_t> mask;    // [num_frames], 1 = frame of real audio
  int64_t num_valid_frames() const;
};

// Log-mel features of `n` samples at config.sampling_rate (mono, float, nominally in [-1, 1]),
// as Gemma4AudioFeatureExtractor()([samples]) returns them for the clip alone: truncation to
// max_length, zero padding to a multiple of pad_to_multiple_of (padded samples are invalid),
// semicausal left padding, periodic Hann window, |rFFT|, HTK mel filters, log(mel + mel_floor).
// Errors: no samples, non-finite samples, or audio too short to give one valid frame.
StatusOr<AudioFeatures> ComputeLogMel(const float* samples, int64_t n,
                                      const FeatureConfig& config = FeatureConfig());

// The number of audio soft tokens the processor inserts for `num_samples` samples
// (Gemma4Processor._compute_audio_num_tokens after the extractor's 480000-sample truncation);
// equal to the number of valid rows AudioEncoder::Encode returns. 0 for clips of <= 160 samples.
int64_t AudioSoftTokenCount(int64_t num_samples);
int64_t AudioSoftTokenCount(int64_t num_samples, const FeatureConfig& config);

}  // namespace gemma4::audio

#endif  // GEMMA4_SRC_AUDIO_AUDIO_FEATURES_H_
