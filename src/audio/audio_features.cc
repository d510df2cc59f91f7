#include "audio/audio_features.h"

#include <algorithm>
#include <cmath>
#include <new>

namespace gemma4::audio {

namespace {

constexpr double kPi = 3.14159265358979323846;

// Python's round() on a double: half to even (the default floating-point rounding mode).
int RoundHalfEven(double x) { return static_cast<int>(std::nearbyint(x)); }

// numpy.hanning(M)[:-1] for M = length + 1 (window_function(length, periodic=True)), cast to f32:
// 0.5 + 0.5 * cos(pi * n / (M - 1)) for n = 1 - M, 3 - M, ..., M - 1.
std::vector<float> PeriodicHann(int length) {
  const int m = length + 1;
  std::vector<float> w(length);
  for (int i = 0; i < length; ++i) {
    const double n = static_cast<double>(1 - m + 2 * i);
    w[i] = static_cast<float>(0.5 + 0.5 * std::cos(kPi * n / static_cast<double>(m - 1)));
  }
  return w;
}

// mel_filter_bank(num_bins, num_mel, fmin, fmax, rate, norm=None, mel_scale="htk") in float64:
// [num_bins, num_mel] row-major.
std::vector<double> MelFilterBank(int num_bins, int num_mel, double fmin, double fmax, int rate) {
  auto hz_to_mel = [](double f) { return 2595.0 * std::log10(1.0 + (f / 700.0)); };
  const double mel_min = hz_to_mel(fmin), mel_max = hz_to_mel(fmax);
  // np.linspace(mel_min, mel_max, num_mel + 2): start + i * step, the last value exactly stop.
  const int nf = num_mel + 2;
  const double step = (mel_max - mel_min) / static_cast<double>(nf - 1);
  std::vector<double> filter_freqs(nf);
  for (int i = 0; i < nf; ++i) {
    const double mel = i == nf - 1 ? mel_max : static_cast<double>(i) * step + mel_min;
    filter_freqs[i] = 700.0 * (std::pow(10.0, mel / 2595.0) - 1.0);
  }
  // np.linspace(0, rate // 2, num_bins).
  const double fft_step = static_cast<double>(rate / 2) / static_cast<double>(num_bins - 1);
  std::vector<double> out(static_cast<size_t>(num_bins) * num_mel);
  for (int f = 0; f < num_bins; ++f) {
    const double freq =
        f == num_bins - 1 ? static_cast<double>(rate / 2) : static_cast<double>(f) * fft_step;
    for (int m = 0; m < num_mel; ++m) {
      const double down = -(filter_freqs[m] - freq) / (filter_freqs[m + 1] - filter_freqs[m]);
      const double up = (filter_freqs[m + 2] - freq) / (filter_freqs[m + 2] - filter_freqs[m + 1]);
      out[static_cast<size_t>(f) * num_mel + m] = std::max(0.0, std::min(down, up));
    }
  }
  return out;
}

// In-place iterative radix-2 complex FFT of length n (a power of two) in float64.
class Fft {
 public:
  explicit Fft(int n) : n_(n), cos_(n / 2), sin_(n / 2), rev_(n) {
    for (int k = 0; k < n / 2; ++k) {
      const double a = -2.0 * kPi * static_cast<double>(k) / static_cast<double>(n);
      cos_[k] = std::cos(a);
      sin_[k] = std::sin(a);
    }
    int bits = 0;
    while ((1 << bits) < n) ++bits;
    for (int i = 0; i < n; ++i) {
      int r = 0;
      for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
      rev_[i] = r;
    }
  }

  void Run(double* re, double* im) const {
    for (int i = 0; i < n_; ++i) {
      if (i < rev_[i]) {
        std::swap(re[i], re[rev_[i]]);
        std::swap(im[i], im[rev_[i]]);
      }
    }
    for (int len = 2; len <= n_; len <<= 1) {
      const int half = len / 2, stride = n_ / len;
      for (int start = 0; start < n_; start += len) {
        for (int k = 0; k < half; ++k) {
          const double wr = cos_[k * stride], wi = sin_[k * stride];
          double& ar = re[start + k];
          double& ai = im[start + k];
          double& br = re[start + k + half];
          double& bi = im[start + k + half];
          const double tr = br * wr - bi * wi, ti = br * wi + bi * wr;
          br = ar - tr;
          bi = ai - ti;
          ar = ar + tr;
          ai = ai + ti;
        }
      }
    }
  }

 private:
  int n_;
  std::vector<double> cos_, sin_;
  std::vector<int> rev_;
};

}  // namespace

int FeatureConfig::frame_length() const {
  return RoundHalfEven(sampling_rate * frame_length_ms / 1000.0);
}

int FeatureConfig::hop_length() const {
  return RoundHalfEven(sampling_rate * hop_length_ms / 1000.0);
}

int FeatureConfig::fft_length() const {
  int n = 1;
  while (n < frame_length()) n <<= 1;
  return fft_overdrive ? n * 2 : n;
}

int64_t AudioFeatures::num_valid_frames() const {
  int64_t v = 0;
  for (uint8_t m : mask) v += m != 0;
  return v;
}

Status ValidateFeatureConfig(const FeatureConfig& c) {
  if (c.sampling_rate != 16000) {
    return UnimplementedError("audio feature extractor: sampling_rate " +
                              std::to_string(c.sampling_rate) +
                              " is not supported (Gemma 4 audio is 16000 Hz)");
  }
  if (c.feature_size < 1 || c.feature_size > 1024) {
    return InvalidArgumentError("audio feature extractor: feature_size " +
                                std::to_string(c.feature_size) + " is out of range [1, 1024]");
  }
  if (!(c.frame_length_ms > 0 && c.frame_length_ms <= 1000) ||
      !(c.hop_length_ms > 0 && c.hop_length_ms <= 1000)) {
    return InvalidArgumentError(
        "audio feature extractor: frame_length_ms and hop_length_ms must be in (0, 1000]");
  }
  if (c.frame_length() < 2 || c.hop_length() < 1) {
    return InvalidArgumentError("audio feature extractor: frames of " +
                                std::to_string(c.frame_length()) + " samples, hop " +
                                std::to_string(c.hop_length()) + " are too short");
  }
  if (!(c.min_frequency >= 0) || !(c.max_frequency > c.min_frequency) ||
      !(c.max_frequency <= c.sampling_rate / 2)) {
    return InvalidArgumentError(
        "audio feature extractor: need 0 <= min_frequency < max_frequency <= sampling_rate / 2");
  }
  if (!(c.mel_floor > 0) || !std::isfinite(c.mel_floor)) {
    return InvalidArgumentError("audio feature extractor: mel_floor must be positive");
  }
  if (!(c.preemphasis >= 0 && c.preemphasis < 1)) {
    return InvalidArgumentError("audio feature extractor: preemphasis must be in [0, 1)");
  }
  if (!std::isfinite(c.input_scale_factor)) {
    return InvalidArgumentError("audio feature extractor: input_scale_factor must be finite");
  }
  if (c.max_length < 1 || c.max_length > (int64_t{1} << 31)) {
    return InvalidArgumentError("audio feature extractor: max_length out of range");
  }
  if (c.pad_to_multiple_of < 1 || c.pad_to_multiple_of > (1 << 20)) {
    return InvalidArgumentError("audio feature extractor: pad_to_multiple_of out of range");
  }
  return OkStatus();
}

Status ApplyFeatureExtractorConfig(const json::Value& processor_config, const std::string& source,
                                   FeatureConfig* config) {
  if (!processor_config.is_object()) return InvalidArgumentError(source + ": not a JSON object");
  const json::Value* p = &processor_config;
  std::string where = source;
  if (const json::Value* nested = processor_config.Find("feature_extractor");
      nested != nullptr && nested->is_object()) {
    p = nested;
    where += ": feature_extractor";
  }
  FeatureConfig c = *config;
  auto number = [&](const char* key, double* out) -> Status {
    const json::Value* v = p->Find(key);
    if (v == nullptr || v->is_null()) return OkStatus();
    if (!v->is_number()) return InvalidArgumentError(where + ": '" + key + "' must be a number");
    *out = v->as_number();
    return OkStatus();
  };
  auto integer = [&](const char* key, int64_t* out) -> Status {
    const json::Value* v = p->Find(key);
    if (v == nullptr || v->is_null()) return OkStatus();
    if (!v->GetInt64(out)) {
      return InvalidArgumentError(where + ": '" + key + "' must be an integer");
    }
    return OkStatus();
  };
  auto boolean = [&](const char* key, bool* out) -> Status {
    const json::Value* v = p->Find(key);
    if (v == nullptr || v->is_null()) return OkStatus();
    if (!v->is_bool()) return InvalidArgumentError(where + ": '" + key + "' must be a bool");
    *out = v->as_bool();
    return OkStatus();
  };
  int64_t rate = c.sampling_rate, size = c.feature_size;
  GEMMA4_RETURN_IF_ERROR(integer("sampling_rate", &rate));
  GEMMA4_RETURN_IF_ERROR(integer("feature_size", &size));
  if (rate < 1 || rate > 1000000 || size < 1 || size > 1024) {
    return InvalidArgumentError(where + ": sampling_rate / feature_size out of range");
  }
  c.sampling_rate = static_cast<int>(rate);
  c.feature_size = static_cast<int>(size);
  GEMMA4_RETURN_IF_ERROR(number("frame_length_ms", &c.frame_length_ms));
  GEMMA4_RETURN_IF_ERROR(number("hop_length_ms", &c.hop_length_ms));
  GEMMA4_RETURN_IF_ERROR(number("min_frequency", &c.min_frequency));
  GEMMA4_RETURN_IF_ERROR(number("max_frequency", &c.max_frequency));
  GEMMA4_RETURN_IF_ERROR(number("mel_floor", &c.mel_floor));
  GEMMA4_RETURN_IF_ERROR(number("preemphasis", &c.preemphasis));
  GEMMA4_RETURN_IF_ERROR(boolean("preemphasis_htk_flavor", &c.preemphasis_htk_flavor));
  GEMMA4_RETURN_IF_ERROR(boolean("fft_overdrive", &c.fft_overdrive));
  GEMMA4_RETURN_IF_ERROR(number("input_scale_factor", &c.input_scale_factor));
  double dither = 0, padding_value = 0;
  GEMMA4_RETURN_IF_ERROR(number("dither", &dither));
  GEMMA4_RETURN_IF_ERROR(number("padding_value", &padding_value));
  if (dither != 0) {
    return UnimplementedError(where + ": dither " + std::to_string(dither) +
                              " is not supported (random noise; Gemma 4 uses 0)");
  }
  if (padding_value != 0) {
    return UnimplementedError(where + ": padding_value must be 0");
  }
  for (const char* key : {"per_bin_mean", "per_bin_stddev"}) {
    if (const json::Value* v = p->Find(key); v != nullptr && !v->is_null()) {
      return UnimplementedError(where + ": '" + key +
                                "' (per-bin normalisation) is not supported; Gemma 4 uses none");
    }
  }
  if (const json::Value* v = p->Find("padding_side");
      v != nullptr && v->is_string() && v->as_string() != "right") {
    return UnimplementedError(where + ": padding_side '" + v->as_string() + "' is not supported");
  }
  if (Status s = ValidateFeatureConfig(c); !s.ok()) {
    return Status(s.code(), where + ": " + s.message());
  }
  *config = c;
  return OkStatus();
}

StatusOr<AudioFeatures> ComputeLogMel(const float* samples, int64_t n,
                                      const FeatureConfig& config) {
  GEMMA4_RETURN_IF_ERROR(ValidateFeatureConfig(config));
  if (n <= 0 || samples == nullptr) {
    return InvalidArgumentError("audio: no samples");
  }
  const int64_t kept = std::min(n, config.max_length);
  for (int64_t i = 0; i < kept; ++i) {
    if (!std::isfinite(samples[i])) {
      return InvalidArgumentError("audio: sample " + std::to_string(i) + " is not a finite number");
    }
  }
  const int frame = config.frame_length(), hop = config.hop_length(), nfft = config.fft_length();
  const int pad_left = frame / 2, unfold = frame + 1;
  const int64_t multiple = config.pad_to_multiple_of;
  const int64_t padded = (kept + multiple - 1) / multiple * multiple;
  const int64_t total = padded + pad_left;
  const int64_t frames = total >= unfold ? (total - unfold) / hop + 1 : 0;
  AudioFeatures out;
  out.num_frames = frames;
  out.feature_size = config.feature_size;
  int64_t valid = 0;
  try {
    out.mask.resize(frames);
    for (int64_t i = 0; i < frames; ++i) {
      // The frame's last sample (index i * hop + frame in the left-padded signal) is real audio.
      const int64_t last = i * hop + unfold - 1 - pad_left;
      out.mask[i] = last >= 0 && last < kept;
      valid += out.mask[i];
    }
    if (valid == 0) {
      return InvalidArgumentError("audio: " + std::to_string(n) +
                                  " samples are too short for one feature frame (need more than " +
                                  std::to_string(unfold - 1 - pad_left) + ")");
    }
    // The padded signal in f32 (scaled as the extractor does when input_scale_factor != 1).
    std::vector<float> signal(total, 0.0f);
    for (int64_t i = 0; i < kept; ++i) {
      float v = samples[i];
      if (config.input_scale_factor != 1.0) v = v * static_cast<float>(config.input_scale_factor);
      signal[pad_left + i] = v;
    }
    const std::vector<float> window = PeriodicHann(frame);
    const int bins = nfft / 2 + 1, mels = config.feature_size;
    const std::vector<double> filters =
        MelFilterBank(bins, mels, config.min_frequency, config.max_frequency, config.sampling_rate);
    // Each filter's nonzero bins (the triangles are sparse).
    std::vector<int> first(mels, bins), last(mels, -1);
    for (int f = 0; f < bins; ++f) {
      for (int m = 0; m < mels; ++m) {
        if (filters[static_cast<size_t>(f) * mels + m] != 0.0) {
          first[m] = std::min(first[m], f);
          last[m] = std::max(last[m], f);
        }
      }
    }
    const Fft fft(nfft);
    const float pre = static_cast<float>(config.preemphasis);
    std::vector<double> re(nfft), im(nfft), mag(bins);
    std::vector<float> x(frame);
    out.features.assign(frames * mels, 0.0f);
    for (int64_t t = 0; t < frames; ++t) {
      const float* s = signal.data() + t * hop;  // unfold samples
      if (pre > 0.0f) {
        if (config.preemphasis_htk_flavor) {
          x[0] = s[0] * (1.0f - pre);
          for (int i = 1; i < frame; ++i) x[i] = s[i] - pre * s[i - 1];
        } else {
          for (int i = 0; i < frame; ++i) x[i] = s[i + 1] - pre * s[i];
        }
      } else {
        std::copy_n(s, frame, x.data());
      }
      for (int i = 0; i < frame; ++i) re[i] = static_cast<double>(x[i] * window[i]);
      std::fill(re.begin() + frame, re.end(), 0.0);
      std::fill(im.begin(), im.end(), 0.0);
      fft.Run(re.data(), im.data());
      for (int f = 0; f < bins; ++f) mag[f] = std::hypot(re[f], im[f]);
      float* row = out.features.data() + t * mels;
      for (int m = 0; m < mels; ++m) {
        double sum = 0.0;
        for (int f = first[m]; f <= last[m]; ++f) {
          sum += mag[f] * filters[static_cast<size_t>(f) * mels + m];
        }
        const float v = static_cast<float>(std::log(sum + config.mel_floor));
        row[m] = out.mask[t] ? v : v * 0.0f;
      }
    }
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory computing log-mel features of " +
                                  std::to_string(n) + " samples");
  }
  return out;
}

int64_t AudioSoftTokenCount(int64_t num_samples, const FeatureConfig& config) {
  const int64_t n = std::min(num_samples, config.max_length);
  const int64_t unfold = config.frame_length() + 1, pad_left = config.frame_length() / 2;
  const int64_t hop = config.hop_length();
  const int64_t numer = n + pad_left - unfold;
  // Python floor division.
  const int64_t q = numer >= 0 ? numer / hop : -((-numer + hop - 1) / hop);
  int64_t t = q + 1;
  if (t <= 0) return 0;
  for (int i = 0; i < 2; ++i) t = (t + 2 - 3) / 2 + 1;  // t >= 1 here, so no negative division
  return std::min<int64_t>(t, 750);
}

int64_t AudioSoftTokenCount(int64_t num_samples) {
  return AudioSoftTokenCount(num_samples, FeatureConfig());
}

}  // namespace gemma4::audio
