// gemma4: command-line front end. Subcommands (stable contracts, scripted by other tools):
//   gemma4 logits   --model PATH --ids 2,17,33 --out FILE [--chunk N] [--threads N] [--kv-type T]
//                   [--image FILE ...] [--image-budget N]
//   gemma4 generate --model PATH --ids 2,17,33 -n 32 --greedy [--threads N] [--kv-type T]
//                   [--image FILE ...] [--image-budget N]
//   gemma4 encode   --model PATH --image FILE --out FILE [--image-budget N] [--threads N]
//   gemma4 info     --model PATH
//   gemma4 tokenize --tokenizer PATH --text-file F
#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "audio/audio_encoder.h"
#include "gemma4/status.h"
#include "gemma4/tokenizer.h"
#include "io/mapped_file.h"
#include "media/audio_file.h"
#include "media/image.h"
#include "media/video_file.h"
#include "model/forward.h"
#include "model/model.h"
#include "prompt/media_batch.h"
#include "runtime/thread_pool.h"
#include "tools/cli/commands.h"
#include "vision/image_preprocess.h"
#include "vision/vision_encoder.h"

namespace gemma4 {
namespace {

constexpr char kUsage[] =
    "usage:\n"
    "  gemma4 logits   --model PATH --ids 2,17,33 --out FILE [--chunk N] [--threads N]\n"
    "                  [--kv-type f32|f16|auto]\n"
    "                  [--image FILE ...] [--image-budget 70|140|280|560|1120] [--mmproj F]\n"
    "      writes the logits of every position as little-endian float32 [n_ids, vocab]\n"
    "      (KV cache f32 unless --kv-type says otherwise); the ids hold each image's\n"
    "      placeholder run as the processor writes it, filled by the --image files in order\n"
    "      (and <|video|> runs by --frame FILE@SECONDS frames or --video FILE sampled at 1 fps,\n"
    "      --video-budget N; <|audio|>\n"
    "      runs by --audio FILE: WAV/FLAC/Ogg/MP3, any rate, 30 s pieces)\n"
    "  gemma4 generate --model PATH --ids 2,17,33 -n 32 --greedy [--threads N]\n"
    "                  [--kv-type auto|f32|f16] [--image FILE ...] [--image-budget N]\n"
    "                  [--mmproj F]\n"
    "      prints the generated ids, comma-separated (stops after an end-of-sequence id);\n"
    "      KV cache auto: f16 for quantized weights, f32 for float weights\n"
    "  gemma4 encode   --model PATH [--mmproj F] (--image FILE | --frame FILE@SECONDS ... |\n"
    "                  --video FILE | --audio FILE)\n"
    "                  --out FILE [--image-budget N] [--video-budget N] [--threads N]\n"
    "      writes the soft tokens after the projector (a video's frames one after another) as\n"
    "      little-endian float32 [n, hidden] and prints n\n"
    "  gemma4 bench    -m PATH [-t N,..] [-p N,..] [-n N,..] [-d N,..] [-r N] [-ub N]\n"
    "                  [-ctk f16|f32] [-ctv f16|f32] [-o md|json|jsonl|csv] [--profile]\n"
    "      prompt processing (pp) and generation (tg) tokens/s, as llama-bench reports them;\n"
    "      --profile adds the time of each forward phase (stderr)\n"
    "  gemma4 quantize SRC DST --type q4_0|q4_k_m|q8_0|bf16|f16|f32 [--threads N]\n"
    "                  [--mmproj-type f16|bf16|f32|q8_0] [--mmproj OUT]\n"
    "      writes a GGUF (llama.cpp layout) from a checkpoint or GGUF, and the vision tower\n"
    "      as a llama.cpp mmproj beside it (mmproj-DST) when the checkpoint has one\n"
    "  gemma4 synth    --variant e2b|e4b|26b-a4b|31b --type TYPE OUT.gguf [--seed N]\n"
    "                  [--layers N] [--mmproj OUT]\n"
    "      writes a random-weight GGUF with the released dimensions (benchmarks); --layers\n"
    "      keeps the widths with N layers, --mmproj adds the released vision tower\n"
    "  gemma4 chat     --model PATH [--think] [--system TEXT] [--tokenizer PATH] [-t N]\n"
    "                  [--kv-type auto|f32|f16] [--image FILE ...] [--image-budget N]\n"
    "                  [--audio FILE ...]\n"
    "      interactive chat (streaming; /think on|off, /image PATH, /audio PATH, /reset, /quit)\n"
    "  gemma4 tokenize --tokenizer PATH (--text-file F | --text STR) [--no-special-tokens]\n"
    "      prints the ids of the text, comma-separated (PATH: tokenizer.json, tokenizer.model,\n"
    "      a GGUF, or a checkpoint directory)\n"
    "  gemma4 detokenize --tokenizer PATH --ids 2,17,33 [--skip-special-tokens]\n"
    "      prints the decoded text\n"
    "  gemma4 info     --model PATH\n"
    "      prints the variant, the layer table, the parameter count and the mapped bytes\n"
    "PATH is a checkpoint directory (config.json + safetensors) or a model file.\n";

struct Args {
  std::map<std::string, std::string> values;                   // the last value of each option
  std::map<std::string, std::vector<std::string>> all_values;  // every value, in order
  std::vector<std::string> flags;
  bool Has(const std::string& k) const { return values.count(k) > 0; }
  bool Flag(const std::string& k) const {
    for (const auto& f : flags) {
      if (f == k) return true;
    }
    return false;
  }
};

Status ParseArgs(int argc, char** argv, int first, const std::vector<std::string>& with_value,
                 const std::vector<std::string>& boolean, Args* out) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    bool matched = false;
    for (const auto& k : with_value) {
      if (a == k) {
        if (i + 1 >= argc) return InvalidArgumentError("option " + a + " needs a value");
        out->values[k] = argv[++i];
        out->all_values[k].push_back(argv[i]);
        matched = true;
        break;
      }
    }
    for (const auto& k : boolean) {
      if (!matched && a == k) {
        out->flags.push_back(k);
        matched = true;
      }
    }
    if (!matched) return InvalidArgumentError("unknown argument '" + a + "'");
  }
  return OkStatus();
}

Status ParseInt(const std::string& what, const std::string& s, int64_t min, int64_t max,
                int64_t* out) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0 || v < min || v > max) {
    return InvalidArgumentError(what + " must be an integer in [" + std::to_string(min) + ", " +
                                std::to_string(max) + "], got '" + s + "'");
  }
  *out = v;
  return OkStatus();
}

Status ParseIds(const std::string& s, std::vector<int32_t>* ids) {
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    std::string item = s.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    int64_t v = 0;
    GEMMA4_RETURN_IF_ERROR(ParseInt("--ids entry", item, 0, INT32_MAX, &v));
    ids->push_back(static_cast<int32_t>(v));
    start = comma + 1;
  }
  if (ids->empty()) return InvalidArgumentError("--ids is empty");
  return OkStatus();
}

// --kv-type auto|f32|f16; auto (or absent, when auto_by_default) leaves the choice to the model.
Status ParseKvType(const Args& args, bool auto_by_default, std::optional<KvType>* out) {
  const std::string v = args.Has("--kv-type") ? args.values.at("--kv-type")
                        : auto_by_default     ? "auto"
                                              : "f32";
  if (v == "auto") {
    out->reset();
  } else if (v == "f32") {
    *out = KvType::kF32;
  } else if (v == "f16") {
    *out = KvType::kF16;
  } else {
    return InvalidArgumentError("--kv-type " + v + ": expected auto, f32 or f16");
  }
  return OkStatus();
}

Status CommonOptions(const Args& args, std::unique_ptr<LoadedModel>* model, int64_t* threads) {
  if (!args.Has("--model")) return InvalidArgumentError("--model PATH is required");
  *threads = 1;
  if (args.Has("--threads")) {
    GEMMA4_RETURN_IF_ERROR(ParseInt("--threads", args.values.at("--threads"), 1, 1024, threads));
  }
  ThreadPool load_pool(static_cast<int>(*threads));
  GEMMA4_ASSIGN_OR_RETURN(*model,
                          LoadedModel::Load(args.values.at("--model"), nullptr, &load_pool));
  return OkStatus();
}

// --image FILE (repeatable, --image-budget N) and --frame FILE@SECONDS (repeatable: the
// frames of one video, in order, --video-budget N): every item decoded, preprocessed as
// transformers' image / video processor does, and encoded, images first, then frames.
// Wall time of the media work (`gemma4 encode` reports it on stderr).
struct MediaTimes {
  double prepare = 0;  // decode + resize + patchify
  double encode = 0;   // the tower and projector
};

Status EncodeMedia(const Args& args, const LoadedModel& model, ThreadPool* pool,
                   std::vector<EncodedMedia>* media, MediaTimes* times = nullptr) {
  auto images = args.all_values.find("--image");
  auto frames = args.all_values.find("--frame");
  auto video = args.all_values.find("--video");
  auto audios = args.all_values.find("--audio");
  const bool any_image = images != args.all_values.end();
  const bool any_frame = frames != args.all_values.end() || video != args.all_values.end();
  if (frames != args.all_values.end() && video != args.all_values.end()) {
    return InvalidArgumentError(
        "give a video as --video FILE or as --frame FILE@SECONDS, not both");
  }
  if (audios != args.all_values.end()) {
    // --audio FILE: decoded, downmixed and resampled to 16 kHz, split into 30 s pieces, each
    // piece one <|audio> run, in order.
    // The tower from --mmproj (llama.cpp's gemma4a), else from the checkpoint.
    std::unique_ptr<audio::AudioEncoder> audio_encoder;
    if (args.Has("--mmproj")) {
      GEMMA4_ASSIGN_OR_RETURN(
          audio_encoder,
          audio::AudioEncoder::LoadMmproj(args.values.at("--mmproj"), model.config().hidden_size));
    } else {
      GEMMA4_ASSIGN_OR_RETURN(audio_encoder, audio::AudioEncoder::Load(model));
    }
    for (const std::string& path : audios->second) {
      const auto t0 = std::chrono::steady_clock::now();
      GEMMA4_ASSIGN_OR_RETURN(media::DecodedAudio clip, media::LoadAudioFile(path));
      const auto t1 = std::chrono::steady_clock::now();
      std::vector<std::vector<float>> pieces;
      Status s = audio::EncodeClip(*audio_encoder, clip.samples.data(),
                                   static_cast<int64_t>(clip.samples.size()), pool, &pieces);
      if (!s.ok()) return Status(s.code(), path + ": " + s.message());
      if (times != nullptr) {
        times->prepare += std::chrono::duration<double>(t1 - t0).count();
        times->encode +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
      }
      for (std::vector<float>& p : pieces) {
        EncodedMedia m;
        m.kind = MediaKind::kAudio;
        m.rows = static_cast<int64_t>(p.size()) / model.config().hidden_size;
        m.embeddings = std::move(p);
        media->push_back(std::move(m));
      }
    }
  }
  if (!any_image && args.Has("--image-budget")) {
    return InvalidArgumentError("--image-budget without --image");
  }
  if (!any_frame && args.Has("--video-budget")) {
    return InvalidArgumentError("--video-budget without --frame or --video");
  }
  if (!any_image && !any_frame) return OkStatus();
  // The tower from --mmproj (a llama.cpp mmproj GGUF), else from the checkpoint itself.
  std::unique_ptr<vision::VisionEncoder> encoder;
  if (args.Has("--mmproj")) {
    GEMMA4_ASSIGN_OR_RETURN(encoder, vision::VisionEncoder::LoadMmproj(args.values.at("--mmproj"),
                                                                       model.config().hidden_size));
  } else {
    GEMMA4_ASSIGN_OR_RETURN(encoder, vision::VisionEncoder::Load(model));
  }
  auto encode = [&](const std::string& path, int64_t budget, vision::PixelScale scale,
                    MediaKind kind, int* width, int* height) -> Status {
    const auto t0 = std::chrono::steady_clock::now();
    GEMMA4_ASSIGN_OR_RETURN(media::RgbImage image, media::LoadImageFile(path));
    if (width != nullptr) {
      if (*width != 0 && (image.width != *width || image.height != *height)) {
        return InvalidArgumentError(path + ": frame of " + std::to_string(image.width) + "x" +
                                    std::to_string(image.height) +
                                    "; the frames of a video share one size (" +
                                    std::to_string(*width) + "x" + std::to_string(*height) + ")");
      }
      *width = image.width;
      *height = image.height;
    }
    auto patches =
        vision::PreprocessImage(image, static_cast<int>(budget), encoder->config(), scale);
    if (!patches.ok()) {
      return Status(patches.status().code(), path + ": " + patches.status().message());
    }
    EncodedMedia m;
    m.kind = kind;
    const auto t1 = std::chrono::steady_clock::now();
    GEMMA4_RETURN_IF_ERROR(encoder->Encode(*patches, pool, &m.embeddings));
    if (times != nullptr) {
      const auto t2 = std::chrono::steady_clock::now();
      times->prepare += std::chrono::duration<double>(t1 - t0).count();
      times->encode += std::chrono::duration<double>(t2 - t1).count();
    }
    m.rows = static_cast<int64_t>(m.embeddings.size()) / model.config().hidden_size;
    media->push_back(std::move(m));
    return OkStatus();
  };
  if (any_image) {
    int64_t budget = encoder->config().default_max_soft_tokens;
    if (args.Has("--image-budget")) {
      GEMMA4_RETURN_IF_ERROR(
          ParseInt("--image-budget", args.values.at("--image-budget"), 1, 1120, &budget));
    }
    for (const std::string& path : images->second) {
      GEMMA4_RETURN_IF_ERROR(
          encode(path, budget, vision::PixelScale::kImage, MediaKind::kImage, nullptr, nullptr));
    }
  }
  if (any_frame) {
    int64_t budget = encoder->config().default_video_soft_tokens;
    if (args.Has("--video-budget")) {
      GEMMA4_RETURN_IF_ERROR(
          ParseInt("--video-budget", args.values.at("--video-budget"), 1, 1120, &budget));
    }
    if (video != args.all_values.end()) {
      // A video file: 1 frame per second (evenly spaced past 32 s), each a frame of the video.
      if (video->second.size() != 1) return InvalidArgumentError("give one --video");
      media::VideoSampling sampling;
      sampling.max_frames = encoder->config().max_video_frames;
      const auto t0 = std::chrono::steady_clock::now();
      GEMMA4_ASSIGN_OR_RETURN(std::vector<media::SampledFrame> sampled,
                              media::LoadVideoFrames(video->second[0], sampling));
      if (times != nullptr) {
        times->prepare +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      for (const media::SampledFrame& f : sampled) {
        std::fprintf(stderr, "%s: frame at %.3f s\n", video->second[0].c_str(), f.seconds);
        const auto t1 = std::chrono::steady_clock::now();
        auto patches = vision::PreprocessImage(f.image, static_cast<int>(budget), encoder->config(),
                                               vision::PixelScale::kVideoFrame);
        if (!patches.ok()) return patches.status();
        EncodedMedia m;
        m.kind = MediaKind::kVideo;
        const auto t2 = std::chrono::steady_clock::now();
        GEMMA4_RETURN_IF_ERROR(encoder->Encode(*patches, pool, &m.embeddings));
        if (times != nullptr) {
          times->prepare += std::chrono::duration<double>(t2 - t1).count();
          times->encode +=
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count();
        }
        m.rows = static_cast<int64_t>(m.embeddings.size()) / model.config().hidden_size;
        media->push_back(std::move(m));
      }
      return OkStatus();
    }
    if (static_cast<int>(frames->second.size()) > encoder->config().max_video_frames) {
      return InvalidArgumentError(std::to_string(frames->second.size()) +
                                  " frames: the model takes at most " +
                                  std::to_string(encoder->config().max_video_frames));
    }
    int width = 0, height = 0;
    double last = -1;
    for (const std::string& spec : frames->second) {
      // FILE@SECONDS: the timestamp orders the frames (the ids carry its text already).
      const size_t at = spec.rfind('@');
      char* end = nullptr;
      const double seconds =
          at == std::string::npos ? -1 : std::strtod(spec.c_str() + at + 1, &end);
      if (at == std::string::npos || end == nullptr || *end != '\0' || !(seconds >= 0) ||
          !(seconds < 1e7)) {
        return InvalidArgumentError("--frame " + spec + ": expected FILE@SECONDS");
      }
      if (seconds < last) {
        return InvalidArgumentError("--frame " + spec + ": frames must come in time order");
      }
      last = seconds;
      GEMMA4_RETURN_IF_ERROR(encode(spec.substr(0, at), budget, vision::PixelScale::kVideoFrame,
                                    MediaKind::kVideo, &width, &height));
    }
  }
  return OkStatus();
}

// The chunk a state needs so that every bidirectional image block fits in one.
int64_t ChunkFor(const LoadedModel& model, const MediaBatch& batch) {
  return model.config().bidirectional_vision
             ? std::max<int64_t>(kDefaultMaxChunk, batch.longest_block())
             : kDefaultMaxChunk;
}

Status RunEncode(int argc, char** argv) {
  Args args;
  GEMMA4_RETURN_IF_ERROR(ParseArgs(argc, argv, 2,
                                   {"--model", "--image", "--frame", "--video", "--audio", "--out",
                                    "--image-budget", "--video-budget", "--threads", "--mmproj"},
                                   {}, &args));
  if (args.Has("--image") + (args.Has("--frame") || args.Has("--video")) + args.Has("--audio") !=
      1) {
    return InvalidArgumentError(
        "encode takes one --image FILE, the --frame FILE@SECONDS of one video, or one --audio "
        "FILE");
  }
  if (args.Has("--audio") && args.all_values["--audio"].size() != 1) {
    return InvalidArgumentError("encode takes one --audio");
  }
  if (args.Has("--image") && args.all_values["--image"].size() != 1) {
    return InvalidArgumentError("encode takes one --image");
  }
  if (!args.Has("--out")) return InvalidArgumentError("--out FILE is required");
  std::unique_ptr<LoadedModel> model;
  int64_t threads;
  GEMMA4_RETURN_IF_ERROR(CommonOptions(args, &model, &threads));
  ThreadPool pool(static_cast<int>(threads));
  std::vector<EncodedMedia> media;
  MediaTimes times;
  GEMMA4_RETURN_IF_ERROR(EncodeMedia(args, *model, &pool, &media, &times));
  const std::string& out = args.values.at("--out");
  std::ofstream f(out, std::ios::binary);
  if (!f) return InvalidArgumentError(out + ": cannot create the output file");
  static_assert(std::endian::native == std::endian::little);
  int64_t rows = 0;
  for (const EncodedMedia& m : media) {  // a video's frames one after another
    f.write(reinterpret_cast<const char*>(m.embeddings.data()),
            static_cast<std::streamsize>(m.embeddings.size() * sizeof(float)));
    rows += m.rows;
  }
  f.close();
  if (!f) {
    std::remove(out.c_str());
    return InvalidArgumentError(out + ": cannot write the output file");
  }
  std::printf("%lld\n", static_cast<long long>(rows));
  std::fprintf(stderr,
               "gemma4 encode: %lld soft tokens; decode + resize + patchify %.1f ms, "
               "encoder %.1f ms (%lld threads)\n",
               static_cast<long long>(rows), times.prepare * 1e3, times.encode * 1e3,
               static_cast<long long>(threads));
  return OkStatus();
}

Status RunLogits(int argc, char** argv) {
  Args args;
  GEMMA4_RETURN_IF_ERROR(
      ParseArgs(argc, argv, 2,
                {"--model", "--ids", "--out", "--chunk", "--threads", "--kv-type", "--image",
                 "--image-budget", "--frame", "--video", "--video-budget", "--audio", "--mmproj"},
                {}, &args));
  if (!args.Has("--ids")) return InvalidArgumentError("--ids is required");
  if (!args.Has("--out")) return InvalidArgumentError("--out FILE is required");
  std::vector<int32_t> ids;
  GEMMA4_RETURN_IF_ERROR(ParseIds(args.values.at("--ids"), &ids));
  int64_t chunk = static_cast<int64_t>(ids.size());
  if (args.Has("--chunk")) {
    GEMMA4_RETURN_IF_ERROR(ParseInt("--chunk", args.values.at("--chunk"), 1, INT32_MAX, &chunk));
  }
  std::optional<KvType> kv_type;
  GEMMA4_RETURN_IF_ERROR(ParseKvType(args, /*auto_by_default=*/false, &kv_type));
  std::unique_ptr<LoadedModel> model;
  int64_t threads;
  GEMMA4_RETURN_IF_ERROR(CommonOptions(args, &model, &threads));
  ThreadPool pool(static_cast<int>(threads));
  std::vector<EncodedMedia> media;
  GEMMA4_RETURN_IF_ERROR(EncodeMedia(args, *model, &pool, &media));
  GEMMA4_ASSIGN_OR_RETURN(MediaBatch batch, MediaBatch::Build(model->config(), ids, media));
  InferenceState state(*model, &pool, ChunkFor(*model, batch), kv_type);
  // Logits are written as they are produced, at most 256 positions at a time (a long prompt
  // over a 262144-token vocabulary would otherwise need n * 1 MiB at once). The forward pass
  // gives the same logits for any split (tests/golden_test.cc).
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t step = std::min<int64_t>(chunk, 256);
  const std::string& out = args.values.at("--out");
  std::ofstream f(out, std::ios::binary);
  if (!f) return InvalidArgumentError(out + ": cannot create the logits file");
  // float32 in host order; every supported host is little-endian (checked at build time).
  static_assert(std::endian::native == std::endian::little);
  std::vector<float> part;
  Status status;
  for (int64_t done = 0, len = 0; done < n && status.ok(); done += len) {
    // Calls split anywhere but inside a bidirectional image block.
    len = batch.SplitPoint(done, std::min(n, done + step)) - done;
    status = state.Forward(batch.input(done, done + len), LogitsMode::kAll, &part);
    if (status.ok()) {
      f.write(reinterpret_cast<const char*>(part.data()),
              static_cast<std::streamsize>(part.size() * sizeof(float)));
      if (!f) status = InvalidArgumentError(out + ": cannot write the logits file");
    }
  }
  f.close();
  if (!status.ok()) std::remove(out.c_str());  // no partial output
  return status;
}

Status RunGenerate(int argc, char** argv) {
  Args args;
  GEMMA4_RETURN_IF_ERROR(
      ParseArgs(argc, argv, 2,
                {"--model", "--ids", "-n", "--threads", "--kv-type", "--image", "--image-budget",
                 "--frame", "--video", "--video-budget", "--audio", "--mmproj"},
                {"--greedy"}, &args));
  if (!args.Has("--ids")) return InvalidArgumentError("--ids is required");
  if (!args.Flag("--greedy")) {
    return InvalidArgumentError("generate needs --greedy (sampled decoding is not available yet)");
  }
  std::vector<int32_t> ids;
  GEMMA4_RETURN_IF_ERROR(ParseIds(args.values.at("--ids"), &ids));
  int64_t max_new = 32;
  if (args.Has("-n"))
    GEMMA4_RETURN_IF_ERROR(ParseInt("-n", args.values.at("-n"), 0, INT32_MAX, &max_new));
  std::optional<KvType> kv_type;
  GEMMA4_RETURN_IF_ERROR(ParseKvType(args, /*auto_by_default=*/true, &kv_type));
  std::unique_ptr<LoadedModel> model;
  int64_t threads;
  GEMMA4_RETURN_IF_ERROR(CommonOptions(args, &model, &threads));
  ThreadPool pool(static_cast<int>(threads));
  std::vector<EncodedMedia> media;
  GEMMA4_RETURN_IF_ERROR(EncodeMedia(args, *model, &pool, &media));
  GEMMA4_ASSIGN_OR_RETURN(MediaBatch batch, MediaBatch::Build(model->config(), ids, media));
  InferenceState state(*model, &pool, ChunkFor(*model, batch), kv_type);
  std::vector<float> logits;
  std::vector<int32_t> generated;
  std::vector<int32_t> next;
  for (int64_t step = 0; step < max_new; ++step) {
    if (step == 0) {
      GEMMA4_RETURN_IF_ERROR(state.Forward(batch.input(), LogitsMode::kLast, &logits));
    } else {
      GEMMA4_RETURN_IF_ERROR(state.Forward(next.data(), 1, LogitsMode::kLast, &logits));
    }
    int32_t best = 0;
    for (int32_t v = 1; v < static_cast<int32_t>(logits.size()); ++v) {
      if (logits[v] > logits[best]) best = v;
    }
    generated.push_back(best);
    bool eos = false;
    for (int e : model->config().eos_token_ids) eos = eos || e == best;
    if (eos) break;
    next.assign(1, best);
  }
  std::string line;
  for (size_t i = 0; i < generated.size(); ++i) {
    if (i) line += ",";
    line += std::to_string(generated[i]);
  }
  std::printf("%s\n", line.c_str());
  return OkStatus();
}

std::string HumanBytes(uint64_t b) {
  char buf[64];
  if (b >= (1ull << 30)) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", b / double(1ull << 30));
  } else if (b >= (1ull << 20)) {
    std::snprintf(buf, sizeof(buf), "%.2f MiB", b / double(1ull << 20));
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f KiB", b / 1024.0);
  }
  return buf;
}

// The file's bytes are the text, exactly (no newline is stripped). Special-token strings in it
// become their ids; the tokenizer's own post-processor (tokenizer.json, or add_bos_token in
// tokenizer_config.json) applies unless --no-special-tokens.
Status RunTokenize(int argc, char** argv) {
  Args args;
  GEMMA4_RETURN_IF_ERROR(ParseArgs(argc, argv, 2, {"--tokenizer", "--text-file", "--text"},
                                   {"--no-special-tokens"}, &args));
  if (!args.Has("--tokenizer")) return InvalidArgumentError("--tokenizer PATH is required");
  if (args.Has("--text-file") == args.Has("--text")) {
    return InvalidArgumentError("give exactly one of --text-file F and --text STR");
  }
  std::string text;
  if (args.Has("--text-file")) {
    GEMMA4_ASSIGN_OR_RETURN(text, ReadFileToString(args.values.at("--text-file")));
  } else {
    text = args.values.at("--text");
  }
  GEMMA4_ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::Load(args.values.at("--tokenizer")));
  const std::vector<int32_t> ids = tokenizer->Encode(text, !args.Flag("--no-special-tokens"));
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ",";
    line += std::to_string(ids[i]);
  }
  line += "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  return OkStatus();
}

Status RunDetokenize(int argc, char** argv) {
  Args args;
  GEMMA4_RETURN_IF_ERROR(
      ParseArgs(argc, argv, 2, {"--tokenizer", "--ids"}, {"--skip-special-tokens"}, &args));
  if (!args.Has("--tokenizer")) return InvalidArgumentError("--tokenizer PATH is required");
  if (!args.Has("--ids")) return InvalidArgumentError("--ids is required");
  std::vector<int32_t> ids;
  GEMMA4_RETURN_IF_ERROR(ParseIds(args.values.at("--ids"), &ids));
  GEMMA4_ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::Load(args.values.at("--tokenizer")));
  for (int32_t id : ids) {
    if (id >= tokenizer->vocab_size()) {
      return InvalidArgumentError("--ids: id " + std::to_string(id) +
                                  " is outside the vocabulary (" +
                                  std::to_string(tokenizer->vocab_size()) + " ids)");
    }
  }
  const std::string text = tokenizer->Decode(ids, args.Flag("--skip-special-tokens"));
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return OkStatus();
}

Status RunInfo(int argc, char** argv) {
  Args args;
  GEMMA4_RETURN_IF_ERROR(ParseArgs(argc, argv, 2, {"--model"}, {}, &args));
  std::unique_ptr<LoadedModel> model;
  int64_t threads;
  GEMMA4_RETURN_IF_ERROR(CommonOptions(args, &model, &threads));
  const ModelConfig& c = model->config();
  std::printf("variant: %s\n", c.variant.c_str());
  std::printf("layout: %s (text weights under '%s')\n", c.model_type.c_str(),
              model->text_prefix().c_str());
  std::printf("vocab: %d  hidden: %d  layers: %d  heads: %d  sliding_window: %d\n", c.vocab_size,
              c.hidden_size, c.num_layers, c.num_heads, c.sliding_window);
  std::printf("ple_dim: %d  moe: %s", c.ple_dim, c.moe ? "yes" : "no");
  if (c.moe) {
    std::printf(" (%d experts, top-%d, width %d)", c.num_experts, c.top_k_experts, c.moe_width);
  }
  std::printf("  kv_shared_layers: %d  final_logit_softcap: %g\n", c.num_kv_shared_layers,
              c.final_logit_softcap);
  std::printf("%5s  %-7s  %8s  %8s  %4s  %9s  %9s  %10s\n", "layer", "type", "head_dim", "kv_heads",
              "k=v", "kv_source", "mlp_width", "rope_pairs");
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerConfig& l = c.layers[i];
    std::printf("%5d  %-7s  %8d  %8d  %4s  %9d  %9d  %10d\n", i, l.sliding ? "sliding" : "global",
                l.head_dim, l.num_kv_heads, l.k_eq_v ? "yes" : "no", l.kv_source, l.mlp_width,
                l.rotated_pairs);
  }
  std::printf("parameters: %lld\n", static_cast<long long>(model->num_parameters()));
  std::printf("mapped bytes: %llu (%s)\n", static_cast<unsigned long long>(model->weight_bytes()),
              HumanBytes(model->weight_bytes()).c_str());
  return OkStatus();
}

int Main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  Status status;
  if (cmd == "logits") {
    status = RunLogits(argc, argv);
  } else if (cmd == "chat") {
    status = cli::RunChat(argc, argv);
  } else if (cmd == "tokenize") {
    status = RunTokenize(argc, argv);
  } else if (cmd == "detokenize") {
    status = RunDetokenize(argc, argv);
  } else if (cmd == "encode") {
    status = RunEncode(argc, argv);
  } else if (cmd == "generate") {
    status = RunGenerate(argc, argv);
  } else if (cmd == "info") {
    status = RunInfo(argc, argv);
  } else if (cmd == "bench") {
    status = cli::RunBench(argc, argv);
  } else if (cmd == "quantize") {
    status = cli::RunQuantize(argc, argv);
  } else if (cmd == "synth") {
    status = cli::RunSynth(argc, argv);
  } else {
    std::fprintf(stderr, "gemma4: unknown command '%s'\n%s", cmd.c_str(), kUsage);
    return 2;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "gemma4 %s: %s\n", cmd.c_str(), status.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace gemma4

int main(int argc, char** argv) { return gemma4::Main(argc, argv); }
