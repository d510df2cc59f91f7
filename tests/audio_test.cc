// The audio path against transformers 5.17 (tests/fixtures/audio, made by
// tools/reference/make_audio_fixtures.py): 16 kHz WAVs -> log-mel features and frame masks
// (Gemma4AudioFeatureExtractor) -> soft tokens after embed_audio, on two tiny checkpoints
// (E2B layout in bf16, E4B layout in f32, clipped linears), plus the processor's token counts.
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "audio/audio_encoder.h"
#include "audio/audio_features.h"
#include "base/json.h"
#include "formats/checkpoint.h"
#include "formats/gguf.h"
#include "formats/mapped_file.h"
#include "formats/mmproj.h"
#include "media/audio_file.h"
#include "media/image.h"
#include "media_reference.h"
#include "model/forward.h"
#include "model/model.h"
#include "ops/ops.h"
#include "prompt/media_batch.h"
#include "runtime/thread_pool.h"
#include "vision/image_preprocess.h"
#include "vision/vision_encoder.h"

namespace gemma4 {
namespace {

using testing::Int;
using testing::Ints;
using testing::MaxAbsDiff;
using testing::ReadBytes;
using testing::ReadF32;

constexpr float kFeatureTolerance = 1e-4f;
constexpr float kSoftTolerance = 1e-3f;
const char* const kModels[] = {"tiny-e2b-audio", "tiny-e4b-audio"};

std::string AudioDir() { return std::string(GEMMA4_FIXTURES_DIR) + "/audio"; }

const json::Value& Reference() {
  static const json::Value root = testing::ReadJsonFixture(AudioDir() + "/reference.json");
  return root;
}

uint32_t Le32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  return v;
}

// A 16-bit PCM mono RIFF/WAVE file as int16 / 32768 in f32 (what the reference fed the
// extractor).
std::vector<float> ReadWav(const std::string& path) {
  const std::string b = ReadBytes(path);
  EXPECT_GE(b.size(), 12u);
  if (b.size() < 12 || b.compare(0, 4, "RIFF") != 0 || b.compare(8, 4, "WAVE") != 0) return {};
  size_t at = 12;
  bool pcm16_mono = false;
  while (at + 8 <= b.size()) {
    const std::string id = b.substr(at, 4);
    const uint32_t size = Le32(b, at + 4);
    const size_t body = at + 8;
    if (body + size > b.size()) break;
    if (id == "fmt ") {
      const uint16_t format = static_cast<uint16_t>(Le32(b, body) & 0xffff);
      const uint16_t channels = static_cast<uint16_t>(Le32(b, body) >> 16);
      const uint32_t rate = Le32(b, body + 4);
      const uint16_t bits = static_cast<uint16_t>(Le32(b, body + 12) >> 16);
      pcm16_mono = format == 1 && channels == 1 && rate == 16000 && bits == 16;
    } else if (id == "data") {
      EXPECT_TRUE(pcm16_mono) << path;
      std::vector<float> out(size / 2);
      for (size_t i = 0; i < out.size(); ++i) {
        const uint16_t u = static_cast<uint16_t>(static_cast<uint8_t>(b[body + 2 * i]) |
                                                 (static_cast<uint8_t>(b[body + 2 * i + 1]) << 8));
        int16_t s;
        std::memcpy(&s, &u, 2);
        out[i] = static_cast<float>(s) / 32768.0f;
      }
      return out;
    }
    at = body + size + (size & 1);
  }
  ADD_FAILURE() << path << ": no data chunk";
  return {};
}

StatusOr<audio::AudioFeatures> ClipFeatures(const std::string& name) {
  const json::Value* clip = Reference().Find("clips")->Find(name);
  const std::vector<float> samples =
      ReadWav(AudioDir() + "/wav/" + clip->Find("file")->as_string());
  EXPECT_EQ(static_cast<int64_t>(samples.size()), Int(*clip->Find("samples"))) << name;
  return audio::ComputeLogMel(samples.data(), static_cast<int64_t>(samples.size()));
}

TEST(AudioFeatures, MatchTheExtractor) {
  for (const auto& [name, clip] : Reference().Find("clips")->as_object()) {
    auto f = ClipFeatures(name);
    ASSERT_TRUE(f.ok()) << name << ": " << f.status().ToString();
    EXPECT_EQ(f->num_frames, Int(*clip.Find("frames"))) << name;
    EXPECT_EQ(f->num_valid_frames(), Int(*clip.Find("valid_frames"))) << name;
    const std::vector<float> want = ReadF32(AudioDir() + "/" + name + ".features.f32");
    const float err = MaxAbsDiff(f->features, want);
    EXPECT_LE(err, kFeatureTolerance) << name;
    std::printf("features %-18s frames %4lld  max |err| %.3g\n", name.c_str(),
                static_cast<long long>(f->num_frames), err);
    const std::string mask = ReadBytes(AudioDir() + "/" + name + ".mask.u8");
    ASSERT_EQ(mask.size(), f->mask.size()) << name;
    for (size_t i = 0; i < mask.size(); ++i) {
      EXPECT_EQ(static_cast<uint8_t>(mask[i]), f->mask[i]) << name << " frame " << i;
    }
  }
}

TEST(AudioFeatures, TokenCountsFollowTheProcessor) {
  for (const auto& [len, count] : Reference().Find("token_counts")->as_object()) {
    EXPECT_EQ(audio::AudioSoftTokenCount(std::stoll(len)), Int(count)) << len;
  }
  EXPECT_EQ(audio::AudioSoftTokenCount(0), 0);
  EXPECT_EQ(audio::AudioSoftTokenCount(160), 0);
  EXPECT_EQ(audio::AudioSoftTokenCount(161), 1);
  // The count equals the valid rows the encoder returns (valid frames halved twice).
  for (int64_t n : {161, 481, 999, 4800, 32037, 38560}) {
    std::vector<float> zeros(n, 0.0f);
    auto f = audio::ComputeLogMel(zeros.data(), n);
    ASSERT_TRUE(f.ok()) << n;
    int64_t v = f->num_valid_frames();
    v = (v + 1) / 2;
    v = (v + 1) / 2;
    EXPECT_EQ(audio::AudioSoftTokenCount(n), v) << n;
  }
}

TEST(AudioFeatures, LongAudioIsTruncatedTo30Seconds) {
  std::vector<float> samples(480000 + 5000);
  for (size_t i = 0; i < samples.size(); ++i) {
    samples[i] = 0.1f * static_cast<float>(std::sin(0.01 * static_cast<double>(i)));
  }
  auto all = audio::ComputeLogMel(samples.data(), static_cast<int64_t>(samples.size()));
  auto cut = audio::ComputeLogMel(samples.data(), 480000);
  ASSERT_TRUE(all.ok() && cut.ok());
  EXPECT_EQ(all->num_frames, 2999);  // (480000 + 160 - 321) / 160 + 1
  EXPECT_EQ(all->features, cut->features);
}

TEST(AudioFeatures, Errors) {
  EXPECT_EQ(audio::ComputeLogMel(nullptr, 0).status().code(), StatusCode::kInvalidArgument);
  std::vector<float> s(4800, 0.1f);
  EXPECT_EQ(audio::ComputeLogMel(s.data(), 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(audio::ComputeLogMel(s.data(), 100).status().code(), StatusCode::kInvalidArgument);
  s[1234] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(audio::ComputeLogMel(s.data(), 4800).status().code(), StatusCode::kInvalidArgument);
  s[1234] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(audio::ComputeLogMel(s.data(), 4800).status().code(), StatusCode::kInvalidArgument);

  audio::FeatureConfig c;
  auto apply = [&](const char* text) {
    auto v = json::Parse(text, "test");
    EXPECT_TRUE(v.ok());
    c = audio::FeatureConfig();
    return audio::ApplyFeatureExtractorConfig(*v, "test", &c);
  };
  EXPECT_TRUE(apply(R"({"feature_extractor": {"feature_size": 128, "sampling_rate": 16000,
      "frame_length_ms": 20.0, "hop_length_ms": 10.0, "min_frequency": 0.0,
      "max_frequency": 8000.0, "mel_floor": 0.001, "dither": 0.0, "per_bin_mean": null}})")
                  .ok());
  EXPECT_EQ(c.frame_length(), 320);
  EXPECT_EQ(c.hop_length(), 160);
  EXPECT_EQ(c.fft_length(), 512);
  EXPECT_EQ(apply(R"({"dither": 0.0001})").code(), StatusCode::kUnimplemented);
  EXPECT_EQ(apply(R"({"per_bin_mean": [0.0]})").code(), StatusCode::kUnimplemented);
  EXPECT_EQ(apply(R"({"sampling_rate": 22050})").code(), StatusCode::kUnimplemented);
  EXPECT_EQ(apply(R"({"mel_floor": -1})").code(), StatusCode::kInvalidArgument);
}

void PutLe(std::string* s, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A 16-bit PCM WAV of interleaved frames.
std::string MakeWav(const std::vector<int16_t>& pcm, int channels, int rate) {
  std::string s = "RIFF";
  PutLe(&s, static_cast<uint32_t>(36 + pcm.size() * 2), 4);
  s += "WAVEfmt ";
  PutLe(&s, 16, 4);
  PutLe(&s, 1, 2);
  PutLe(&s, static_cast<uint32_t>(channels), 2);
  PutLe(&s, static_cast<uint32_t>(rate), 4);
  PutLe(&s, static_cast<uint32_t>(rate * channels * 2), 4);
  PutLe(&s, static_cast<uint32_t>(channels * 2), 2);
  PutLe(&s, 16, 2);
  s += "data";
  PutLe(&s, static_cast<uint32_t>(pcm.size() * 2), 4);
  for (int16_t v : pcm) PutLe(&s, static_cast<uint16_t>(v), 2);
  return s;
}

std::string TempFile(const std::string& name, const std::string& bytes) {
  const std::string path =
      ::testing::TempDir() + "/gemma4_audio_" + std::to_string(::getpid()) + "_" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

TEST(AudioFile, DecodesTheFixtureWavsExactly) {
  if (!media::AudioFilesSupported()) GTEST_SKIP() << "built without libsndfile / libsoxr";
  for (const auto& [name, clip] : Reference().Find("clips")->as_object()) {
    const std::string path = AudioDir() + "/wav/" + clip.Find("file")->as_string();
    auto decoded = media::LoadAudioFile(path);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(decoded->sample_rate, 16000);
    EXPECT_EQ(decoded->source_channels, 1);
    EXPECT_EQ(decoded->samples, ReadWav(path)) << name;
  }
}

TEST(AudioFile, DownmixesAndResamples) {
  if (!media::AudioFilesSupported()) GTEST_SKIP() << "built without libsndfile / libsoxr";
  // Stereo at 8 kHz: a 440 Hz tone on the left, silence on the right.
  const int n = 8000;
  std::vector<int16_t> pcm;
  for (int i = 0; i < n; ++i) {
    pcm.push_back(
        static_cast<int16_t>(std::lround(16000.0 * std::sin(2 * M_PI * 440.0 * i / 8000))));
    pcm.push_back(0);
  }
  const std::string path = TempFile("stereo8k.wav", MakeWav(pcm, 2, 8000));
  auto decoded = media::LoadAudioFile(path);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->source_rate, 8000);
  EXPECT_EQ(decoded->source_channels, 2);
  ASSERT_EQ(decoded->samples.size(), 16000u);
  // Half amplitude after the downmix; the resampled tone keeps its level away from the ends.
  float peak = 0;
  for (size_t i = 1000; i < 15000; ++i) peak = std::max(peak, std::fabs(decoded->samples[i]));
  EXPECT_NEAR(peak, 0.5f * 16000.0f / 32768.0f, 0.01f);
  auto features = audio::ComputeLogMel(decoded->samples.data(), 16000);
  EXPECT_TRUE(features.ok());
  std::remove(path.c_str());
}

TEST(AudioFile, Errors) {
  if (!media::AudioFilesSupported()) {
    EXPECT_EQ(media::LoadAudioFile(AudioDir() + "/wav/short_4800.wav").status().code(),
              StatusCode::kUnimplemented);
    return;
  }
  EXPECT_EQ(media::LoadAudioFile(AudioDir() + "/wav/missing.wav").status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(media::LoadAudioFile(AudioDir() + "/wav").status().code(),
            StatusCode::kInvalidArgument);
  const std::string junk = TempFile("junk.wav", "RIFF....WAVEnot audio at all");
  EXPECT_EQ(media::LoadAudioFile(junk).status().code(), StatusCode::kInvalidArgument);
  std::remove(junk.c_str());
  media::AudioLimits small;
  small.max_file_bytes = 1000;
  EXPECT_EQ(media::LoadAudioFile(AudioDir() + "/wav/short_4800.wav", 16000, small).status().code(),
            StatusCode::kInvalidArgument);
  small = media::AudioLimits();
  small.max_seconds = 0.1;
  EXPECT_EQ(media::LoadAudioFile(AudioDir() + "/wav/short_4800.wav", 16000, small).status().code(),
            StatusCode::kInvalidArgument);
}

struct Loaded {
  std::unique_ptr<LoadedModel> model;
  std::unique_ptr<audio::AudioEncoder> encoder;
};

Loaded Load(const std::string& name) {
  Loaded l;
  auto model = LoadedModel::Load(AudioDir() + "/" + name);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return l;
  l.model = std::move(model).value();
  auto encoder = audio::AudioEncoder::Load(*l.model);
  EXPECT_TRUE(encoder.ok()) << encoder.status().ToString();
  if (encoder.ok()) l.encoder = std::move(encoder).value();
  return l;
}

// The soft tokens of every clip against transformers: in the default (intended) mask mode
// against sdpa, transformers' default attention, and in the kHfEagerInverted mode against
// eager attention, whose audio mask is applied inverted (huggingface/transformers#48818);
// both references come from the same weights (tools/reference/make_audio_fixtures.py).
TEST(AudioEncoder, SoftTokensMatchTransformers) {
  ThreadPool pool(2);
  for (const char* mname : kModels) {
    Loaded l = Load(mname);
    ASSERT_NE(l.encoder, nullptr) << mname;
    const json::Value& soft = *Reference().Find("models")->Find(mname)->Find("soft");
    for (audio::AudioMaskMode mode :
         {audio::AudioMaskMode::kIntended, audio::AudioMaskMode::kHfEagerInverted}) {
      l.encoder->set_mask_mode(mode);
      const bool eager = mode == audio::AudioMaskMode::kHfEagerInverted;
      float worst = 0;
      for (const auto& [name, entry] : soft.as_object()) {
        auto f = ClipFeatures(name);
        ASSERT_TRUE(f.ok()) << f.status().ToString();
        std::vector<float> got;
        Status s = l.encoder->Encode(*f, &pool, &got);
        ASSERT_TRUE(s.ok()) << s.ToString();
        const int64_t n = Int(*entry.Find("n"));
        const int64_t hidden = l.encoder->text_hidden_size();
        ASSERT_EQ(static_cast<int64_t>(got.size()), n * hidden) << mname << " " << name;
        std::string file = entry.Find("file")->as_string();
        if (eager) file.insert(file.size() - 4, ".eager");
        const std::vector<float> want = ReadF32(AudioDir() + "/" + mname + "/" + file);
        const float err = MaxAbsDiff(got, want);
        EXPECT_LE(err, kSoftTolerance) << mname << " " << name << (eager ? " eager" : " sdpa");
        worst = std::max(worst, err);
      }
      std::printf("soft %s (%s) worst max |err| %.3g\n", mname, eager ? "eager" : "sdpa", worst);
    }
  }
}

// Session::Cancel reaches the audio tower through its cancel flag, read before every conformer
// layer (and between 30 s pieces in EncodeClip): a set flag stops with CancelledError, a clear
// one changes nothing.
TEST(AudioEncoder, CancelFlagStopsBeforeTheNextLayer) {
  Loaded l = Load("tiny-e2b-audio");
  ASSERT_NE(l.encoder, nullptr);
  auto f = ClipFeatures("speechlike_27200");
  ASSERT_TRUE(f.ok());
  ThreadPool pool(2);
  std::atomic<bool> cancel{true};
  std::vector<float> out;
  Status s = l.encoder->Encode(*f, &pool, &out, &cancel);
  EXPECT_EQ(s.code(), StatusCode::kCancelled) << s.ToString();
  EXPECT_NE(s.message().find("before layer 1 of"), std::string::npos) << s.message();
  const std::vector<float> samples(40000, 0.01f);
  std::vector<std::vector<float>> pieces;
  EXPECT_EQ(audio::EncodeClip(*l.encoder, samples.data(), 40000, &pool, &pieces, &cancel).code(),
            StatusCode::kCancelled);
  EXPECT_TRUE(pieces.empty());
  cancel = false;
  std::vector<float> with_flag, without;
  ASSERT_TRUE(l.encoder->Encode(*f, &pool, &with_flag, &cancel).ok());
  ASSERT_TRUE(l.encoder->Encode(*f, &pool, &without).ok());
  EXPECT_EQ(with_flag, without);
  EXPECT_FALSE(without.empty());
}

// The intended mask (as sdpa applies it): same row count, finite, and independent of the pool.
TEST(AudioEncoder, IntendedMaskIsDeterministic) {
  Loaded l = Load("tiny-e2b-audio");
  ASSERT_NE(l.encoder, nullptr);
  EXPECT_EQ(l.encoder->mask_mode(), audio::AudioMaskMode::kIntended);
  auto f = ClipFeatures("speechlike_27200");
  ASSERT_TRUE(f.ok());
  ThreadPool one(1), two(2);
  std::vector<float> a, b;
  ASSERT_TRUE(l.encoder->Encode(*f, &one, &a).ok());
  ASSERT_TRUE(l.encoder->Encode(*f, &two, &b).ok());
  EXPECT_EQ(a, b);
  EXPECT_EQ(static_cast<int64_t>(a.size()),
            audio::AudioSoftTokenCount(27200) * l.encoder->text_hidden_size());
  for (float v : a) ASSERT_TRUE(std::isfinite(v));
  // It is not the eager reference (whose mask is inverted), so the mode matters.
  const std::vector<float> eager =
      ReadF32(AudioDir() + "/tiny-e2b-audio/soft_speechlike_27200.eager.f32");
  const float diff = MaxAbsDiff(a, eager);
  std::printf("intended vs eager mask: max |diff| %.3g\n", diff);
  EXPECT_GT(diff, 10 * kSoftTolerance);
}

TEST(AudioEncoder, Errors) {
  {
    // A multimodal checkpoint whose audio_config is null, and a text-only one.
    for (const std::string& path :
         {std::string(GEMMA4_FIXTURES_DIR) + "/vision/tiny-e2b-vision",
          std::string(GEMMA4_FIXTURES_DIR) + "/models/tiny-e2b/gemma4_text"}) {
      auto model = LoadedModel::Load(path);
      ASSERT_TRUE(model.ok()) << model.status().ToString();
      auto enc = audio::AudioEncoder::Load(**model);
      EXPECT_EQ(enc.status().code(), StatusCode::kFailedPrecondition) << path;
      EXPECT_NE(enc.status().message().find("audio"), std::string::npos);
    }
  }
  {
    auto model =
        LoadedModel::Load(std::string(GEMMA4_FIXTURES_DIR) + "/llama_cpp_gguf/tiny-e4b.gguf");
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    auto enc = audio::AudioEncoder::Load(**model);
    EXPECT_EQ(enc.status().code(), StatusCode::kUnimplemented);
    EXPECT_NE(enc.status().message().find("mmproj"), std::string::npos);
  }
  Loaded l = Load("tiny-e4b-audio");
  ASSERT_NE(l.encoder, nullptr);
  std::vector<float> out;
  audio::AudioFeatures empty;
  EXPECT_EQ(l.encoder->Encode(empty, nullptr, &out).code(), StatusCode::kInvalidArgument);
  auto f = ClipFeatures("short_4800");
  ASSERT_TRUE(f.ok());
  audio::AudioFeatures bad = *f;
  bad.features[100] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(l.encoder->Encode(bad, nullptr, &out).code(), StatusCode::kInvalidArgument);
  bad = *f;
  bad.feature_size = 64;
  EXPECT_EQ(l.encoder->Encode(bad, nullptr, &out).code(), StatusCode::kInvalidArgument);
  bad = *f;
  std::fill(bad.mask.begin(), bad.mask.end(), 0);
  EXPECT_EQ(l.encoder->Encode(bad, nullptr, &out).code(), StatusCode::kInvalidArgument);
  // More than 30 s of frames.
  audio::AudioFeatures long_clip;
  long_clip.num_frames = 3001;
  long_clip.feature_size = 128;
  long_clip.features.assign(3001 * 128, 0.0f);
  long_clip.mask.assign(3001, 1);
  EXPECT_EQ(l.encoder->Encode(long_clip, nullptr, &out).code(), StatusCode::kInvalidArgument);
}

// Prompts mixing text, audio and an image, through the whole path (WAV file -> features ->
// tower -> placeholder runs), against transformers (sdpa): logits and greedy ids. The bound is
// the language model's 1e-3 plus the tiny models' measured gain on soft-token differences
// (tests/vision_test.cc: up to 750 per unit; the image's soft tokens differ from
// transformers' by ~1e-5, the audio's by ~1e-6).
TEST(AudioPrompt, LogitsAndGreedyMatchTransformers) {
  ThreadPool pool(2);
  for (const char* mname : kModels) {
    Loaded l = Load(mname);
    ASSERT_NE(l.encoder, nullptr);
    const int64_t H = l.model->config().hidden_size;
    for (const json::Value& p :
         Reference().Find("models")->Find(mname)->Find("prompts")->as_array()) {
      std::vector<EncodedMedia> media;
      for (const json::Value& clip : p.Find("audio")->as_array()) {
        auto decoded = media::LoadAudioFile(AudioDir() + "/wav/" + clip.as_string() + ".wav");
        ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
        std::vector<std::vector<float>> pieces;
        ASSERT_TRUE(audio::EncodeClip(*l.encoder, decoded->samples.data(),
                                      static_cast<int64_t>(decoded->samples.size()), &pool, &pieces)
                        .ok());
        ASSERT_EQ(pieces.size(), 1u);
        EncodedMedia e;
        e.kind = MediaKind::kAudio;
        e.rows = static_cast<int64_t>(pieces[0].size()) / H;
        e.embeddings = std::move(pieces[0]);
        media.push_back(std::move(e));
      }
      const json::Value* image = p.Find("image");
      if (image != nullptr && image->is_string()) {
        auto vision = vision::VisionEncoder::Load(*l.model);
        ASSERT_TRUE(vision.ok()) << vision.status().ToString();
        auto rgb = media::LoadImageFile(std::string(GEMMA4_FIXTURES_DIR) + "/vision/images/" +
                                        image->as_string() + ".png");
        ASSERT_TRUE(rgb.ok());
        auto patches = vision::PreprocessImage(*rgb, 70, (*vision)->config());
        ASSERT_TRUE(patches.ok());
        EncodedMedia e;
        ASSERT_TRUE((*vision)->Encode(*patches, &pool, &e.embeddings).ok());
        e.rows = static_cast<int64_t>(e.embeddings.size()) / H;
        media.push_back(std::move(e));
      }
      auto batch = MediaBatch::Build(l.model->config(), Ints(*p.Find("ids")), media);
      ASSERT_TRUE(batch.ok()) << batch.status().ToString();
      InferenceState state(*l.model, &pool);
      std::vector<float> logits;
      ASSERT_TRUE(state.Forward(batch->input(), LogitsMode::kAll, &logits).ok());
      const std::vector<float> want =
          ReadF32(AudioDir() + "/" + mname + "/" + p.Find("logits")->as_string());
      const bool with_image = image != nullptr && image->is_string();
      EXPECT_LE(MaxAbsDiff(logits, want), 1e-3f + 750.0f * (with_image ? 1.1e-5f : 1e-6f)) << mname;
      const int64_t V = l.model->config().vocab_size;
      std::vector<float> last(logits.end() - V, logits.end());
      std::vector<int32_t> greedy;
      for (size_t step = 0; step < Ints(*p.Find("greedy")).size(); ++step) {
        const int32_t best =
            static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
        greedy.push_back(best);
        ASSERT_TRUE(state.Forward(&best, 1, LogitsMode::kLast, &last).ok());
      }
      EXPECT_EQ(greedy, Ints(*p.Find("greedy"))) << mname;
    }
  }
}

// Clips longer than 30 s are encoded in 30 s pieces, each its own run.
TEST(AudioPrompt, LongClipsSplitIntoThirtySecondPieces) {
  ThreadPool pool(2);
  Loaded l = Load("tiny-e2b-audio");
  ASSERT_NE(l.encoder, nullptr);
  std::vector<float> samples(480000 * 2 + 16000, 0.0f);
  for (size_t i = 0; i < samples.size(); ++i) samples[i] = 0.1f * std::sin(0.01f * i);
  std::vector<std::vector<float>> pieces;
  ASSERT_TRUE(audio::EncodeClip(*l.encoder, samples.data(), static_cast<int64_t>(samples.size()),
                                &pool, &pieces)
                  .ok());
  ASSERT_EQ(pieces.size(), 3u);
  const int64_t H = l.encoder->text_hidden_size();
  EXPECT_EQ(static_cast<int64_t>(pieces[0].size()) / H, audio::AudioSoftTokenCount(480000));
  EXPECT_EQ(static_cast<int64_t>(pieces[2].size()) / H, audio::AudioSoftTokenCount(16000));
  // A tail too short for one token adds no piece; a clip that short alone is an error.
  std::vector<std::vector<float>> two;
  ASSERT_TRUE(audio::EncodeClip(*l.encoder, samples.data(), 480000 + 100, &pool, &two).ok());
  EXPECT_EQ(two.size(), 1u);
  EXPECT_FALSE(audio::EncodeClip(*l.encoder, samples.data(), 100, &pool, &two).ok());
}

// ---- llama.cpp mmproj files (projector gemma4a).

std::string LlamaCppMmproj(const std::string& model) {
  return AudioDir() + "/llama_cpp/" + model + "-mmproj-f32.gguf";
}

// The audio tensor names of a checkpoint's safetensors header.
std::vector<std::string> AudioTensorNames(const std::string& model) {
  const std::string b = ReadBytes(AudioDir() + "/" + model + "/model.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, b.data(), 8);
  auto header = json::Parse(b.substr(8, n), "safetensors header");
  EXPECT_TRUE(header.ok());
  std::vector<std::string> names;
  if (!header.ok()) return names;
  for (const auto& [name, v] : header->as_object()) {
    if (name.rfind("model.audio_tower.", 0) == 0 || name.rfind("model.embed_audio.", 0) == 0) {
      names.push_back(name);
    }
  }
  return names;
}

std::vector<float> Values(const TensorView& t) {
  std::vector<float> v(t.numel());
  ops::ToF32(t, 0, t.numel(), v.data());
  return v;
}

// Every audio tensor of the checkpoints maps to a tensor of llama.cpp's converted file, and
// every a.* / mm.a.* tensor there is one of them, with the converter's transforms: softplus
// per_dim_scale, [C, K] depthwise convolution, scalars as one element, and the crossed
// conv_norm / norm_conv names (tests/mmproj_test.cc checks the names alone).
TEST(AudioMmproj, NameMapCoversTheConverter) {
  for (const char* mname : kModels) {
    Loaded l = Load(mname);
    ASSERT_NE(l.model, nullptr);
    auto file = gguf::File::Open(LlamaCppMmproj(mname));
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    EXPECT_TRUE(mmproj::HasTower(**file, mmproj::Tower::kAudio));
    EXPECT_TRUE(mmproj::HasTower(**file, mmproj::Tower::kVision));
    std::map<std::string, const TensorView*> stored;
    for (const TensorView& t : (*file)->tensors()) {
      if (t.name.rfind("a.", 0) == 0 || t.name.rfind("mm.a.", 0) == 0) stored[t.name] = &t;
    }
    size_t mapped = 0;
    for (const std::string& hf : AudioTensorNames(mname)) {
      const std::string name = mmproj::LlamaCppName(mmproj::Tower::kAudio, hf);
      ASSERT_FALSE(name.empty()) << hf;
      auto it = stored.find(name);
      ASSERT_NE(it, stored.end()) << hf << " -> " << name;
      ++mapped;
      const TensorView& gt = *it->second;
      const TensorView& ht = *l.model->checkpoint()->Find(hf);
      std::vector<float> want = Values(ht);
      std::vector<int64_t> shape = ht.shape.empty() ? std::vector<int64_t>{1} : ht.shape;
      if (hf.find("depthwise_conv1d") != std::string::npos) shape = {shape[0], shape[2]};
      const bool softplus = hf.find("per_dim_scale") != std::string::npos;
      if (softplus) {
        for (float& v : want) v = v > 20.0f ? v : std::log1p(std::exp(v));
      }
      EXPECT_EQ(gt.shape, shape) << name;
      EXPECT_EQ(gt.dtype, DType::kF32) << name;
      EXPECT_LE(MaxAbsDiff(Values(gt), want), softplus ? 1e-6f : 0.0f) << hf << " -> " << name;
    }
    EXPECT_EQ(mapped, stored.size()) << mname;
  }
}

// Encodes every reference clip; the worst difference to `want` (per clip, from the checkpoint
// encoder) and to transformers' sdpa soft tokens.
struct ClipErrors {
  float vs_checkpoint = 0, vs_transformers = 0;
};
ClipErrors CompareClips(const audio::AudioEncoder& got_enc, const audio::AudioEncoder& want_enc,
                        const std::string& mname, ThreadPool* pool) {
  ClipErrors e;
  const json::Value& soft = *Reference().Find("models")->Find(mname)->Find("soft");
  for (const auto& [name, entry] : soft.as_object()) {
    auto f = ClipFeatures(name);
    EXPECT_TRUE(f.ok());
    if (!f.ok()) continue;
    std::vector<float> got, want;
    EXPECT_TRUE(got_enc.Encode(*f, pool, &got).ok()) << name;
    EXPECT_TRUE(want_enc.Encode(*f, pool, &want).ok()) << name;
    e.vs_checkpoint = std::max(e.vs_checkpoint, MaxAbsDiff(got, want));
    const std::vector<float> ref =
        ReadF32(AudioDir() + "/" + mname + "/" + entry.Find("file")->as_string());
    e.vs_transformers = std::max(e.vs_transformers, MaxAbsDiff(got, ref));
  }
  return e;
}

void ExpectSameConfig(const audio::AudioEncoder& a, const audio::AudioEncoder& b) {
  const AudioConfig &x = a.config(), &y = b.config();
  EXPECT_EQ(x.hidden_size, y.hidden_size);
  EXPECT_EQ(x.num_layers, y.num_layers);
  EXPECT_EQ(x.num_heads, y.num_heads);
  EXPECT_EQ(x.subsampling_channels[0], y.subsampling_channels[0]);
  EXPECT_EQ(x.subsampling_channels[1], y.subsampling_channels[1]);
  EXPECT_EQ(x.conv_kernel_size, y.conv_kernel_size);
  EXPECT_EQ(x.output_proj_dims, y.output_proj_dims);
  EXPECT_EQ(x.use_clipped_linears, y.use_clipped_linears);
  EXPECT_EQ(x.attention_chunk_size, y.attention_chunk_size);
  EXPECT_EQ(x.attention_context_left, y.attention_context_left);
  EXPECT_EQ(x.attention_logit_cap, y.attention_logit_cap);
  EXPECT_EQ(x.rms_norm_eps, y.rms_norm_eps);
  EXPECT_EQ(a.feature_config().feature_size, b.feature_config().feature_size);
  EXPECT_EQ(a.text_hidden_size(), b.text_hidden_size());
}

// llama.cpp's converted files (convert_hf_to_gguf.py --mmproj on the fixtures; E2B/E4B files
// hold both towers) load and encode like the checkpoints.
TEST(AudioMmproj, LlamaCppConvertedFilesMatchTheCheckpoint) {
  ThreadPool pool(2);
  for (const char* mname : kModels) {
    Loaded l = Load(mname);
    ASSERT_NE(l.encoder, nullptr);
    auto mm = audio::AudioEncoder::LoadMmproj(LlamaCppMmproj(mname), l.model->config().hidden_size);
    ASSERT_TRUE(mm.ok()) << mm.status().ToString();
    ExpectSameConfig(**mm, *l.encoder);
    const ClipErrors e = CompareClips(**mm, *l.encoder, mname, &pool);
    EXPECT_LE(e.vs_checkpoint, 1e-5f) << mname;
    EXPECT_LE(e.vs_transformers, kSoftTolerance) << mname;
    std::printf("llama.cpp mmproj %s: max |diff| vs checkpoint %.3g, vs transformers %.3g\n", mname,
                e.vs_checkpoint, e.vs_transformers);
    // The vision tower of the same file loads too.
    auto v =
        vision::VisionEncoder::LoadMmproj(LlamaCppMmproj(mname), l.model->config().hidden_size);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
  }
}

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/gemma4_audio_" + std::to_string(::getpid()) + "_" + name;
}

// What WriteAudioMmproj writes loads back and encodes as the checkpoint's tower does.
TEST(AudioMmproj, WrittenMmprojRoundTrips) {
  ThreadPool pool(2);
  for (const char* mname : kModels) {
    Loaded l = Load(mname);
    ASSERT_NE(l.encoder, nullptr);
    for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
      const std::string path = TempPath(std::string(mname) + "-audio-" + DTypeName(type) + ".gguf");
      Status s = audio::WriteAudioMmproj(*l.model, type, path, &pool);
      ASSERT_TRUE(s.ok()) << s.ToString();
      auto mm = audio::AudioEncoder::LoadMmproj(path, l.model->config().hidden_size);
      ASSERT_TRUE(mm.ok()) << mm.status().ToString();
      ExpectSameConfig(**mm, *l.encoder);
      const ClipErrors e = CompareClips(**mm, *l.encoder, mname, &pool);
      // f32 holds the checkpoints' weights exactly (softplus stored instead of computed at
      // load gives the same floats); f16, bf16 and q8_0 round the matrices (tiny-e2b is stored
      // in bf16, tiny-e4b in f32; soft tokens have RMS ~1, peaks ~3.5). Measured: f16 2.3e-3,
      // bf16 0.044, q8_0 0.095. A wrong name, layout or transform moves them by units.
      const float bound = type == DType::kF32    ? 1e-6f
                          : type == DType::kF16  ? 5e-3f
                          : type == DType::kBF16 ? 0.1f
                                                 : 0.2f;
      EXPECT_LE(e.vs_checkpoint, bound) << mname << " " << DTypeName(type);
      std::printf("written %s %-4s: max |diff| vs checkpoint %.3g\n", mname, DTypeName(type),
                  e.vs_checkpoint);
      auto file = gguf::File::Open(path);
      ASSERT_TRUE(file.ok());
      EXPECT_TRUE(mmproj::HasTower(**file, mmproj::Tower::kAudio));
      EXPECT_FALSE(mmproj::HasTower(**file, mmproj::Tower::kVision));
      EXPECT_EQ(
          vision::VisionEncoder::LoadMmproj(path, l.model->config().hidden_size).status().code(),
          StatusCode::kNotFound);
      std::remove(path.c_str());
    }
  }
}

// Random towers for benchmarks (gemma4 synth --mmproj): every tensor the format needs, at the
// shapes the loader checks, deterministic in the seed, and a sound encoding (finite, the
// processor's token count, not constant).
TEST(AudioMmproj, SyntheticTowersLoadAndEncode) {
  ThreadPool pool(2);
  AudioConfig c;  // Gemma4AudioConfig's defaults are the released E2B/E4B tower; narrower here
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.output_proj_dims = 48;
  const int text_hidden = 96;
  std::vector<std::vector<float>> outputs;
  for (uint64_t seed : {1u, 1u, 2u}) {
    const std::string path =
        TempPath("synthetic-audio-" + std::to_string(outputs.size()) + ".gguf");
    Status s = audio::WriteAudioMmproj(c, 128, text_hidden,
                                       audio::SyntheticAudioTensors(c, 128, text_hidden, seed),
                                       DType::kF16, path, &pool);
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto mm = audio::AudioEncoder::LoadMmproj(path, text_hidden);
    ASSERT_TRUE(mm.ok()) << mm.status().ToString();
    EXPECT_EQ((*mm)->config().num_layers, 2);
    EXPECT_TRUE((*mm)->config().use_clipped_linears);
    std::vector<float> samples(27200);
    for (size_t i = 0; i < samples.size(); ++i) samples[i] = 0.3f * std::sin(0.05f * i);
    std::vector<std::vector<float>> pieces;
    ASSERT_TRUE(audio::EncodeClip(**mm, samples.data(), static_cast<int64_t>(samples.size()), &pool,
                                  &pieces)
                    .ok());
    ASSERT_EQ(pieces.size(), 1u);
    EXPECT_EQ(pieces[0].size(), static_cast<size_t>(43 * text_hidden));  // 27200 samples: 43
    float lo = pieces[0][0], hi = pieces[0][0];
    for (float v : pieces[0]) {
      ASSERT_TRUE(std::isfinite(v));
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    EXPECT_GT(hi - lo, 0.1f);
    outputs.push_back(std::move(pieces[0]));
    std::remove(path.c_str());
  }
  EXPECT_EQ(outputs[0], outputs[1]);  // same seed, same tower
  EXPECT_NE(outputs[0], outputs[2]);
}

// Our f32 file holds the converter's names, shapes, types and values; with the vision tower
// added (WriteVisionMmproj, then WriteAudioMmproj onto it) it is the converter's combined file:
// the same tensors and clip.* metadata, and both towers load.
TEST(AudioMmproj, CombinedFileMatchesTheConverter) {
  ThreadPool pool(2);
  for (const char* mname : kModels) {
    Loaded l = Load(mname);
    ASSERT_NE(l.encoder, nullptr);
    const int hidden = l.model->config().hidden_size;
    const std::string path = TempPath(std::string(mname) + "-both.gguf");
    ASSERT_TRUE(vision::WriteVisionMmproj(*l.model, DType::kF32, path, &pool).ok());
    Status s = audio::WriteAudioMmproj(*l.model, DType::kF32, path, &pool, path);
    ASSERT_TRUE(s.ok()) << s.ToString();
    // Adding again replaces the audio tower rather than duplicating it.
    s = audio::WriteAudioMmproj(*l.model, DType::kF32, path, &pool, path);
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto ours = gguf::File::Open(path);
    auto theirs = gguf::File::Open(LlamaCppMmproj(mname));
    ASSERT_TRUE(ours.ok() && theirs.ok());
    std::map<std::string, const TensorView*> a, b;
    for (const TensorView& t : (*ours)->tensors()) a[t.name] = &t;
    for (const TensorView& t : (*theirs)->tensors()) b[t.name] = &t;
    ASSERT_EQ(a.size(), b.size()) << mname;
    float worst = 0;
    for (const auto& [name, t] : b) {
      auto it = a.find(name);
      ASSERT_NE(it, a.end()) << name;
      EXPECT_EQ(it->second->shape, t->shape) << name;
      EXPECT_EQ(it->second->dtype, t->dtype) << name;
      worst = std::max(worst, MaxAbsDiff(Values(*it->second), Values(*t)));
    }
    EXPECT_LE(worst, 1e-6f) << mname;  // softplus may round differently from torch's
    std::printf("combined %s: %zu tensors as the converter's, max |value diff| %.3g\n", mname,
                a.size(), worst);
    for (const auto& [key, value] : (*theirs)->metadata()) {
      if (key.rfind("clip.", 0) != 0) continue;
      const gguf::Value* mine = (*ours)->Find(key);
      ASSERT_NE(mine, nullptr) << key;
      EXPECT_EQ(mine->type, value.type) << key;
      EXPECT_EQ(mine->i, value.i) << key;
      EXPECT_EQ(mine->f, value.f) << key;
      EXPECT_EQ(mine->s, value.s) << key;
      EXPECT_EQ(mine->array.size(), value.array.size()) << key;
    }
    for (const auto& [key, value] : (*ours)->metadata()) {
      if (key.rfind("clip.", 0) == 0) {
        EXPECT_NE((*theirs)->Find(key), nullptr) << key;
      }
    }
    auto audio_mm = audio::AudioEncoder::LoadMmproj(path, hidden);
    ASSERT_TRUE(audio_mm.ok()) << audio_mm.status().ToString();
    EXPECT_LE(CompareClips(**audio_mm, *l.encoder, mname, &pool).vs_checkpoint, 1e-6f);
    auto vision_ckpt = vision::VisionEncoder::Load(*l.model);
    auto vision_mm = vision::VisionEncoder::LoadMmproj(path, hidden);
    ASSERT_TRUE(vision_ckpt.ok() && vision_mm.ok()) << vision_mm.status().ToString();
    auto rgb =
        media::LoadImageFile(std::string(GEMMA4_FIXTURES_DIR) + "/vision/images/up_200x150.png");
    ASSERT_TRUE(rgb.ok());
    auto patches = vision::PreprocessImage(*rgb, 70, (*vision_mm)->config());
    ASSERT_TRUE(patches.ok());
    std::vector<float> got, want;
    ASSERT_TRUE((*vision_mm)->Encode(*patches, &pool, &got).ok());
    ASSERT_TRUE((*vision_ckpt)->Encode(*patches, &pool, &want).ok());
    EXPECT_LE(MaxAbsDiff(got, want), 1e-6f) << mname;
    std::remove(path.c_str());
  }
}

TEST(AudioMmproj, Errors) {
  ThreadPool pool(2);
  // A vision-only mmproj has no audio tower.
  const std::string vision_only =
      std::string(GEMMA4_FIXTURES_DIR) + "/vision/llama_cpp/tiny-e2b-vision-mmproj-f32.gguf";
  auto none = audio::AudioEncoder::LoadMmproj(vision_only, 64);
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound) << none.status().ToString();
  EXPECT_NE(none.status().message().find("audio"), std::string::npos);
  {
    auto file = gguf::File::Open(vision_only);
    ASSERT_TRUE(file.ok());
    EXPECT_FALSE(mmproj::HasTower(**file, mmproj::Tower::kAudio));
  }
  // Another text width: both widths named.
  auto wrong = audio::AudioEncoder::LoadMmproj(LlamaCppMmproj("tiny-e2b-audio"), 1234);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("1234"), std::string::npos) << wrong.status().message();
  EXPECT_NE(wrong.status().message().find("64"), std::string::npos) << wrong.status().message();
  // Not a GGUF file; no file.
  EXPECT_FALSE(audio::AudioEncoder::LoadMmproj(AudioDir() + "/reference.json", 64).ok());
  EXPECT_FALSE(audio::AudioEncoder::LoadMmproj(AudioDir() + "/no-such.gguf", 64).ok());
  // A text model GGUF is no mmproj.
  const std::string text_gguf = std::string(GEMMA4_FIXTURES_DIR) + "/llama_cpp_gguf/tiny-e4b.gguf";
  EXPECT_EQ(audio::AudioEncoder::LoadMmproj(text_gguf, 64).status().code(), StatusCode::kNotFound);

  Loaded l = Load("tiny-e2b-audio");
  ASSERT_NE(l.encoder, nullptr);
  const std::string path = TempPath("errors.gguf");
  // Below 8 bits is refused; so is a base file that is no mmproj.
  EXPECT_EQ(audio::WriteAudioMmproj(*l.model, DType::kQ4_0, path, &pool).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(audio::WriteAudioMmproj(*l.model, DType::kF32, path, &pool, text_gguf).code(),
            StatusCode::kInvalidArgument);
  // Settings the format cannot carry.
  AudioConfig custom = l.encoder->config();
  custom.attention_chunk_size = 8;
  const Checkpoint& ckpt = *l.model->checkpoint();
  auto source = [&ckpt](const std::string& hf) -> std::optional<audio::AudioTensor> {
    const TensorView* t = ckpt.Find(hf);
    if (t == nullptr) return std::nullopt;
    const TensorView view = *t;
    return audio::AudioTensor{view.shape,
                              [view](float* out) { ops::ToF32(view, 0, view.numel(), out); }};
  };
  Status s = audio::WriteAudioMmproj(custom, 128, 64, source, DType::kF32, path, &pool);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("attention_chunk_size"), std::string::npos) << s.message();
  // A missing tensor.
  auto partial = [&source](const std::string& hf) -> std::optional<audio::AudioTensor> {
    if (hf.find("output_proj.bias") != std::string::npos) return std::nullopt;
    return source(hf);
  };
  EXPECT_EQ(audio::WriteAudioMmproj(l.encoder->config(), 128, 64, partial, DType::kF32, path, &pool)
                .code(),
            StatusCode::kNotFound);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace gemma4
