// gemma4: command-line front end. Subcommands (stable contracts, scripted by other tools; the
// README's "Command-line contract" table and kUsage below list them). Every command parses its
// arguments with cli::ArgParser (tools/cli/args.h) and answers --help on stdout.
#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <new>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "api/memory_plan.h"
#include "audio/audio_encoder.h"
#include "formats/mapped_file.h"
#include "gemma4/sampler.h"
#include "gemma4/status.h"
#include "gemma4/tokenizer.h"
#include "media/audio_file.h"
#include "media/image.h"
#include "media/video_file.h"
#include "model/drafter.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/speculative.h"
#include "prompt/media_batch.h"
#include "runtime/thread_pool.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"
#include "tools/cli/session_args.h"
#include "vision/image_preprocess.h"
#include "vision/vision_encoder.h"

namespace gemma4 {
namespace {

constexpr char kUsage[] =
    "usage:\n"
    "  gemma4 logits   --model PATH --ids 2,17,33 --out FILE [--chunk N] [--threads N]\n"
    "                  [--kv-type f32|f16|q8_0|q4_0|auto]\n"
    "                  [--image FILE ...] [--image-budget 70|140|280|560|1120] [--mmproj F]\n"
    "      writes the logits of every position as little-endian float32 [n_ids, vocab]\n"
    "      (KV cache f32 unless --kv-type says otherwise); the ids hold each image's\n"
    "      placeholder run as the processor writes it, filled by the --image files in order\n"
    "      (and <|video|> runs by --frame FILE@SECONDS frames or --video FILE sampled at 1 fps,\n"
    "      --video-budget N; <|audio|>\n"
    "      runs by --audio FILE: WAV/FLAC/Ogg/MP3, any rate, 30 s pieces)\n"
    "  gemma4 generate --model PATH (--ids 2,17,33 | --prompt TEXT) [-n 32] [--greedy]\n"
    "                  [--temperature T] [--seed S] [--threads N] [--kv-type "
    "auto|f32|f16|q8_0|q4_0]\n"
    "                  [--image FILE ...] [--image-budget N] [--mmproj F] [--tokenizer PATH]\n"
    "      prints the generated ids, comma-separated (stops after an end-of-sequence id);\n"
    "      decoding: --greedy, else the model's generation_config (greedy unless do_sample)\n"
    "      with --temperature / --seed applied; the stop reason on stderr;\n"
    "      KV cache auto: f16 for quantized weights, f32 for float weights\n"
    "  gemma4 run      --model PATH (--prompt TEXT | --prompt-file F) [--system TEXT] [--think]\n"
    "                  [--json-schema F] [-n N] [--temperature T] [--seed S] [--image F ...]\n"
    "                  [--audio F ...] [--mmproj F] [--threads N] [--tokenizer PATH]\n"
    "      one chat turn: prints the reply (stop reason and timing on stderr)\n"
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
    "                  [--kv-type auto|f32|f16|q8_0|q4_0] [--image FILE ...] [--image-budget N]\n"
    "                  [--audio FILE ...] [--mmproj F] [--temperature T] [--seed S] [-n N]\n"
    "      interactive chat (streaming; /think on|off, /image PATH, /audio PATH, /reset, /quit)\n"
    "  gemma4 tokenize --tokenizer PATH (--text-file F | --text STR) [--no-special-tokens]\n"
    "      prints the ids of the text, comma-separated (PATH: tokenizer.json, tokenizer.model,\n"
    "      a GGUF, or a checkpoint directory)\n"
    "  gemma4 detokenize --tokenizer PATH --ids 2,17,33 [--skip-special-tokens]\n"
    "      prints the decoded text\n"
    "  gemma4 info     --model PATH [--ctx N] [--kv-type auto|f32|f16|q8_0|q4_0] [--threads N]\n"
    "                  [--mmproj F] [--image-budget N] [--tokenizer PATH] [--memory-limit BYTES]\n"
    "      prints the variant, the layer table, the parameter count, the mapped bytes and\n"
    "      the memory plan (bytes resident for the model and one session at N tokens),\n"
    "      from the headers alone\n"
    "PATH is a checkpoint directory (config.json + safetensors) or a model file.\n"
    "gemma4 COMMAND --help prints the options of one command.\n";

using cli::ArgParser;
using cli::ParseInt;

// --model PATH and --threads N (default 1) of the id-level commands.
struct ModelArgs {
  std::string path;
  int64_t threads = 1;
};

void AddModelArgs(ArgParser* parser, ModelArgs* args, bool with_threads = true) {
  parser->String({"--model"}, "PATH", "checkpoint directory or model file", &args->path);
  if (with_threads) {
    parser->Int({"--threads"}, "N", "worker threads (default 1)", 1, 1024, &args->threads);
  }
}

Status LoadModel(const ModelArgs& args, std::unique_ptr<LoadedModel>* model) {
  if (args.path.empty()) return InvalidArgumentError("--model PATH is required");
  ThreadPool load_pool(static_cast<int>(args.threads));
  GEMMA4_ASSIGN_OR_RETURN(*model, LoadedModel::Load(args.path, nullptr, &load_pool));
  return OkStatus();
}

// --kv-type auto|f32|f16|q8_0|q4_0 for the id-level commands.
void AddKvTypeArg(ArgParser* parser, KvCacheType* out) {
  cli::AddKvCacheTypeArg(parser, "auto|f32|f16|q8_0|q4_0",
                         "KV cache type (auto: f16 for quantized weights, f32 for float weights)",
                         out);
}

// The cache type an InferenceState takes: nullopt (auto) leaves the choice to the model.
std::optional<KvType> ToKvType(KvCacheType type) {
  switch (type) {
    case KvCacheType::kF32:
      return KvType::kF32;
    case KvCacheType::kF16:
      return KvType::kF16;
    case KvCacheType::kQ8_0:
      return KvType::kQ8_0;
    case KvCacheType::kQ4_0:
      return KvType::kQ4_0;
    default:
      return std::nullopt;
  }
}

void AddIdsArg(ArgParser* parser, std::vector<int32_t>* ids) {
  parser->Value({"--ids"}, "2,17,33", "token ids, comma-separated",
                [ids](const std::string& flag, const std::string& v) {
                  ids->clear();
                  return cli::ParseIds(flag, v, ids);
                });
}

// The media options of logits, generate and encode: files that fill the placeholder runs of
// the ids (or, for encode, whose soft tokens are written).
struct MediaArgs {
  std::vector<std::string> images, frames, videos, audios;
  std::string mmproj;
  int64_t image_budget = 0;  // 0: not given
  int64_t video_budget = 0;
};

void AddMediaArgs(ArgParser* parser, MediaArgs* args) {
  parser
      ->Strings({"--image"}, "FILE", "image (PNG/JPEG/WebP) filling the next image run",
                &args->images)
      .Int({"--image-budget"}, "N", "soft tokens per image: 70, 140, 280, 560 or 1120", 1, 1120,
           &args->image_budget)
      .Strings({"--frame"}, "FILE@SECONDS", "a video frame and its time, in order", &args->frames)
      .Strings({"--video"}, "FILE", "a video file, sampled at 1 frame per second", &args->videos)
      .Int({"--video-budget"}, "N", "soft tokens per video frame (default 70)", 1, 1120,
           &args->video_budget)
      .Strings({"--audio"}, "FILE", "a recording (WAV/FLAC/Ogg/MP3) in 30 s pieces", &args->audios)
      .String({"--mmproj"}, "F", "llama.cpp mmproj GGUF holding the towers", &args->mmproj);
}

// --image FILE (repeatable, --image-budget N) and --frame FILE@SECONDS (repeatable: the
// frames of one video, in order, --video-budget N): every item decoded, preprocessed as
// transformers' image / video processor does, and encoded, images first, then frames.
// Wall time of the media work (`gemma4 encode` reports it on stderr).
struct MediaTimes {
  double prepare = 0;  // decode + resize + patchify
  double encode = 0;   // the tower and projector
};

Status EncodeMedia(const MediaArgs& args, const LoadedModel& model, ThreadPool* pool,
                   std::vector<EncodedMedia>* media, MediaTimes* times = nullptr) {
  const bool any_image = !args.images.empty();
  const bool any_frame = !args.frames.empty() || !args.videos.empty();
  if (!args.frames.empty() && !args.videos.empty()) {
    return InvalidArgumentError(
        "give a video as --video FILE or as --frame FILE@SECONDS, not both");
  }
  if (!args.audios.empty()) {
    // --audio FILE: decoded, downmixed and resampled to 16 kHz, split into 30 s pieces, each
    // piece one <|audio> run, in order.
    // The tower from --mmproj (llama.cpp's gemma4a), else from the checkpoint.
    std::unique_ptr<audio::AudioEncoder> audio_encoder;
    if (!args.mmproj.empty()) {
      GEMMA4_ASSIGN_OR_RETURN(audio_encoder, audio::AudioEncoder::LoadMmproj(
                                                 args.mmproj, model.config().hidden_size, pool));
    } else {
      GEMMA4_ASSIGN_OR_RETURN(audio_encoder, audio::AudioEncoder::Load(model, pool));
    }
    for (const std::string& path : args.audios) {
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
  if (!any_image && args.image_budget != 0) {
    return InvalidArgumentError("--image-budget without --image");
  }
  if (!any_frame && args.video_budget != 0) {
    return InvalidArgumentError("--video-budget without --frame or --video");
  }
  if (!any_image && !any_frame) return OkStatus();
  // The tower from --mmproj (a llama.cpp mmproj GGUF), else from the checkpoint itself.
  std::unique_ptr<vision::VisionEncoder> encoder;
  if (!args.mmproj.empty()) {
    GEMMA4_ASSIGN_OR_RETURN(
        encoder, vision::VisionEncoder::LoadMmproj(args.mmproj, model.config().hidden_size, pool));
  } else {
    GEMMA4_ASSIGN_OR_RETURN(encoder, vision::VisionEncoder::Load(model, pool));
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
    const int64_t budget =
        args.image_budget != 0 ? args.image_budget : encoder->config().default_max_soft_tokens;
    for (const std::string& path : args.images) {
      GEMMA4_RETURN_IF_ERROR(
          encode(path, budget, vision::PixelScale::kImage, MediaKind::kImage, nullptr, nullptr));
    }
  }
  if (any_frame) {
    const int64_t budget =
        args.video_budget != 0 ? args.video_budget : encoder->config().default_video_soft_tokens;
    if (!args.videos.empty()) {
      // A video file: 1 frame per second (evenly spaced past 32 s), each a frame of the video.
      if (args.videos.size() != 1) return InvalidArgumentError("give one --video");
      media::VideoSampling sampling;
      sampling.max_frames = encoder->config().max_video_frames;
      const auto t0 = std::chrono::steady_clock::now();
      GEMMA4_ASSIGN_OR_RETURN(std::vector<media::SampledFrame> sampled,
                              media::LoadVideoFrames(args.videos[0], sampling));
      if (times != nullptr) {
        times->prepare +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      for (const media::SampledFrame& f : sampled) {
        std::fprintf(stderr, "%s: frame at %.3f s\n", args.videos[0].c_str(), f.seconds);
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
    if (static_cast<int>(args.frames.size()) > encoder->config().max_video_frames) {
      return InvalidArgumentError(std::to_string(args.frames.size()) +
                                  " frames: the model takes at most " +
                                  std::to_string(encoder->config().max_video_frames));
    }
    int width = 0, height = 0;
    double last = -1;
    for (const std::string& spec : args.frames) {
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
             ? std::max<int64_t>(DefaultMaxChunk(), batch.longest_block())
             : DefaultMaxChunk();
}

Status RunEncode(int argc, char** argv) {
  ModelArgs model_args;
  MediaArgs media_args;
  std::string out;
  ArgParser parser(
      "gemma4 encode --model PATH [--mmproj F] (--image FILE | --frame FILE@SECONDS ... |\n"
      "                     --video FILE | --audio FILE) --out FILE [--image-budget N]\n"
      "                     [--video-budget N] [--threads N]",
      "Writes the soft tokens after the projector (a video's frames, a recording's 30 s pieces\n"
      "one after another) as little-endian float32 [n, hidden] and prints n; preprocessing and\n"
      "encoder times on stderr.\n");
  AddModelArgs(&parser, &model_args);
  AddMediaArgs(&parser, &media_args);
  parser.String({"--out"}, "FILE", "where the soft tokens go", &out);
  GEMMA4_RETURN_IF_ERROR(parser.Parse(argc, argv));
  if (parser.help_requested()) return parser.PrintHelp();
  const bool image = !media_args.images.empty();
  const bool video = !media_args.frames.empty() || !media_args.videos.empty();
  const bool audio = !media_args.audios.empty();
  if (image + video + audio != 1) {
    return InvalidArgumentError(
        "encode takes one --image FILE, the --frame FILE@SECONDS of one video, or one --audio "
        "FILE");
  }
  if (media_args.audios.size() > 1) return InvalidArgumentError("encode takes one --audio");
  if (media_args.images.size() > 1) return InvalidArgumentError("encode takes one --image");
  if (!parser.Given("--out")) return InvalidArgumentError("--out FILE is required");
  std::unique_ptr<LoadedModel> model;
  GEMMA4_RETURN_IF_ERROR(LoadModel(model_args, &model));
  ThreadPool pool(static_cast<int>(model_args.threads));
  std::vector<EncodedMedia> media;
  MediaTimes times;
  GEMMA4_RETURN_IF_ERROR(EncodeMedia(media_args, *model, &pool, &media, &times));
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
               static_cast<long long>(model_args.threads));
  return OkStatus();
}

Status RunLogits(int argc, char** argv) {
  ModelArgs model_args;
  MediaArgs media_args;
  std::vector<int32_t> ids;
  std::string out;
  int64_t chunk = 0;
  KvCacheType kv_type = KvCacheType::kF32;  // exact logits unless asked otherwise
  ArgParser parser(
      "gemma4 logits --model PATH --ids 2,17,33 --out FILE [--chunk N] [--threads N]\n"
      "                     [--kv-type f32|f16|q8_0|q4_0|auto] [--image FILE ...] [--image-budget "
      "N]\n"
      "                     [--frame FILE@SECONDS ...] [--video FILE] [--video-budget N]\n"
      "                     [--audio FILE ...] [--mmproj F]",
      "Writes the logits of every position as little-endian float32 [n_ids, vocab] (KV cache\n"
      "f32 unless --kv-type says otherwise). With media the ids hold each placeholder run as\n"
      "the processor writes it, filled by the files of that kind in order.\n");
  AddModelArgs(&parser, &model_args);
  AddIdsArg(&parser, &ids);
  parser.String({"--out"}, "FILE", "where the logits go", &out)
      .Int({"--chunk"}, "N", "positions per forward call (default: all)", 1, INT32_MAX, &chunk);
  AddKvTypeArg(&parser, &kv_type);
  AddMediaArgs(&parser, &media_args);
  GEMMA4_RETURN_IF_ERROR(parser.Parse(argc, argv));
  if (parser.help_requested()) return parser.PrintHelp();
  if (!parser.Given("--ids")) return InvalidArgumentError("--ids is required");
  if (!parser.Given("--out")) return InvalidArgumentError("--out FILE is required");
  if (chunk == 0) chunk = static_cast<int64_t>(ids.size());
  std::unique_ptr<LoadedModel> model;
  GEMMA4_RETURN_IF_ERROR(LoadModel(model_args, &model));
  ThreadPool pool(static_cast<int>(model_args.threads));
  std::vector<EncodedMedia> media;
  GEMMA4_RETURN_IF_ERROR(EncodeMedia(media_args, *model, &pool, &media));
  GEMMA4_ASSIGN_OR_RETURN(MediaBatch batch, MediaBatch::Build(model->config(), ids, media));
  InferenceState state(*model, &pool, ChunkFor(*model, batch), ToKvType(kv_type));
  // Logits are written as they are produced, at most 256 positions at a time (a long prompt
  // over a 262144-token vocabulary would otherwise need n * 1 MiB at once). The forward pass
  // gives the same logits for any split up to f32 rounding (tests/golden_test.cc; the same
  // bits for any steps of 16 or more tokens, tests/kv_cache_test.cc).
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t step = std::min<int64_t>(chunk, 256);
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

// Where the tokenizer of a model is when --tokenizer is not given (as Model::Load looks): the
// checkpoint directory, the GGUF itself, or the directory of a weights file.
std::string DefaultTokenizerPath(const std::string& model_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(model_path, ec)) return model_path;
  const fs::path p(model_path);
  if (p.extension() == ".gguf") return model_path;
  return p.parent_path().empty() ? "." : p.parent_path().string();
}

// gemma4 generate --draft: speculative decoding (model/speculative.h). The sampler's
// temperature, top-k and top-p carry over; penalties and min-p do not apply to drafting.
Status GenerateWithDrafter(const LoadedModel& model, const std::string& draft_path, int k,
                           const std::vector<int32_t>& ids, const SamplerOptions& sampler,
                           int64_t max_new, std::optional<KvType> kv_type, ThreadPool* pool) {
  if (sampler.repetition_penalty != 1.0f || sampler.frequency_penalty != 0.0f ||
      sampler.presence_penalty != 0.0f || sampler.min_p > 0.0f || !sampler.logit_bias.empty()) {
    return InvalidArgumentError("--draft samples with temperature, top-k and top-p only");
  }
  GEMMA4_ASSIGN_OR_RETURN(std::unique_ptr<Drafter> drafter, Drafter::Load(draft_path));
  GEMMA4_RETURN_IF_ERROR(drafter->CheckCompatible(model.config()));
  SpeculativeOptions o;
  o.draft_tokens = k;
  o.max_tokens = static_cast<int>(max_new);
  o.stop_ids.assign(model.config().eos_token_ids.begin(), model.config().eos_token_ids.end());
  o.temperature = sampler.temperature;
  o.top_k = sampler.top_k;
  o.top_p = sampler.top_p;
  o.seed = sampler.seed;
  InferenceState state(model, pool, std::max<int64_t>(DefaultMaxChunk(), k + 2), kv_type);
  SpeculativeStats stats;
  const auto start = std::chrono::steady_clock::now();
  GEMMA4_ASSIGN_OR_RETURN(std::vector<int32_t> generated,
                          SpeculativeGenerate(model, drafter.get(), &state, ids, o, pool, &stats));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string line;
  for (size_t i = 0; i < generated.size(); ++i) {
    if (i) line += ",";
    line += std::to_string(generated[i]);
  }
  std::printf("%s\n", line.c_str());
  const bool eos = !generated.empty() && std::find(o.stop_ids.begin(), o.stop_ids.end(),
                                                   generated.back()) != o.stop_ids.end();
  std::fprintf(stderr,
               "gemma4 generate: stop: %s after %zu tokens (%zu prompt tokens); %s; drafting "
               "k=%d: %lld of %lld drafts accepted (%.2f), %lld target forwards, %.2f s\n",
               eos ? "end_of_sequence" : "max_tokens", generated.size(), ids.size(),
               cli::DescribeSampler(sampler).c_str(), k, static_cast<long long>(stats.accepted),
               static_cast<long long>(stats.drafted),
               stats.drafted ? double(stats.accepted) / stats.drafted : 0.0,
               static_cast<long long>(stats.target_forwards), seconds);
  return OkStatus();
}

Status RunGenerate(int argc, char** argv) {
  ModelArgs model_args;
  MediaArgs media_args;
  std::vector<int32_t> ids;
  std::string prompt, tokenizer_path;
  int64_t max_new = 32;
  bool greedy = false;
  cli::SamplingArgs sampling;
  KvCacheType kv_type = KvCacheType::kAuto;
  ArgParser parser(
      "gemma4 generate --model PATH (--ids 2,17,33 | --prompt TEXT) [-n 32] [--greedy]\n"
      "                       [--temperature T] [--seed S] [--threads N] [--kv-type "
      "auto|f32|f16|q8_0|q4_0]\n"
      "                       [--tokenizer PATH] [--draft PATH [--draft-k K]]\n"
      "                       [media options as for logits]",
      "Prints the generated ids, comma-separated, on one line (stops after an end-of-sequence\n"
      "id from generation_config.json); the stop reason and the decoding used on stderr.\n"
      "--prompt TEXT is tokenized as `gemma4 tokenize` does (special-token strings such as\n"
      "<|turn> become their ids) after <bos>; no chat template is applied (see `gemma4 run`).\n"
      "Decoding: --greedy, else the model's generation_config (greedy unless do_sample) with\n"
      "--temperature and --seed applied; a --seed alone samples at temperature 1 where the\n"
      "default is greedy.\n"
      "--draft PATH: speculative decoding with a Gemma 4 assistant drafter (its checkpoint\n"
      "directory or GGUF): K drafts (default 4) per round, checked in one batched forward.\n"
      "Greedy output is the same ids as without it; sampled output has the same distribution\n"
      "(standard speculative sampling; its random stream differs). Text prompts only.\n");
  std::string draft_path;
  int64_t draft_k = 4;
  AddModelArgs(&parser, &model_args);
  AddIdsArg(&parser, &ids);
  parser.String({"--draft"}, "PATH", "assistant drafter for speculative decoding", &draft_path)
      .Int({"--draft-k"}, "K", "drafts per round with --draft (default 4)", 1, 14, &draft_k);
  parser.String({"--prompt"}, "TEXT", "text to continue (instead of --ids)", &prompt)
      .String({"--tokenizer"}, "PATH", "tokenizer for --prompt (default: beside the model)",
              &tokenizer_path)
      .Int({"-n"}, "N", "most tokens to generate (default 32)", 0, INT32_MAX, &max_new)
      .Flag({"--greedy"}, "argmax decoding (ties go to the lowest id)", &greedy);
  cli::AddSamplingArgs(&parser, &sampling);
  AddKvTypeArg(&parser, &kv_type);
  AddMediaArgs(&parser, &media_args);
  GEMMA4_RETURN_IF_ERROR(parser.Parse(argc, argv));
  if (parser.help_requested()) return parser.PrintHelp();
  if (parser.Given("--ids") == parser.Given("--prompt")) {
    return InvalidArgumentError("give exactly one of --ids 2,17,33 and --prompt TEXT");
  }
  if (greedy && (sampling.seed_given || sampling.temperature > 0)) {
    return InvalidArgumentError(std::string("--greedy and ") +
                                (sampling.seed_given ? "--seed" : "--temperature") +
                                " conflict: greedy decoding does not sample");
  }
  if (parser.Given("--tokenizer") && !parser.Given("--prompt")) {
    return InvalidArgumentError("--tokenizer is for --prompt");
  }
  std::unique_ptr<LoadedModel> model;
  GEMMA4_RETURN_IF_ERROR(LoadModel(model_args, &model));
  const ModelConfig& config = model->config();
  if (parser.Given("--prompt")) {
    const std::string path =
        tokenizer_path.empty() ? DefaultTokenizerPath(model_args.path) : tokenizer_path;
    auto tokenizer = Tokenizer::Load(path);
    if (!tokenizer.ok()) {
      return Status(tokenizer.status().code(),
                    "--prompt needs a tokenizer: " + tokenizer.status().message() +
                        " (give --tokenizer PATH)");
    }
    ids = (*tokenizer)->Encode(prompt, /*add_special_tokens=*/true);
    if (ids.empty() || ids.front() != config.bos_token_id) {
      ids.insert(ids.begin(), config.bos_token_id);
    }
  }
  // The model's default decoding (generation_config), with the command line's changes.
  SamplerOptions sampler_options;
  sampler_options.temperature = config.do_sample ? config.temperature : 0.0f;
  sampler_options.top_k = config.top_k;
  sampler_options.top_p = config.top_p > 0.0f ? config.top_p : 1.0f;
  if (greedy) {
    sampler_options.temperature = 0.0f;
  } else if (sampling.temperature >= 0 || sampling.seed_given) {
    ModelInfo info;
    info.default_sampler = sampler_options;
    sampler_options = *cli::SamplerFor(info, sampling);
  }
  GEMMA4_RETURN_IF_ERROR(ValidateSamplerOptions(sampler_options));
  ThreadPool pool(static_cast<int>(model_args.threads));
  if (parser.Given("--draft-k") && draft_path.empty()) {
    return InvalidArgumentError("--draft-k is for --draft");
  }
  if (!draft_path.empty()) {
    return GenerateWithDrafter(*model, draft_path, static_cast<int>(draft_k), ids, sampler_options,
                               max_new, ToKvType(kv_type), &pool);
  }
  std::vector<EncodedMedia> media;
  GEMMA4_RETURN_IF_ERROR(EncodeMedia(media_args, *model, &pool, &media));
  GEMMA4_ASSIGN_OR_RETURN(MediaBatch batch, MediaBatch::Build(config, ids, media));
  InferenceState state(*model, &pool, ChunkFor(*model, batch), ToKvType(kv_type));
  Sampler sampler(sampler_options);
  std::vector<int32_t> history = ids;  // for the sampler's penalties
  std::vector<float> logits;
  std::vector<int32_t> generated;
  std::vector<int32_t> next;
  bool eos = false;
  for (int64_t step = 0; step < max_new && !eos; ++step) {
    if (step == 0) {
      GEMMA4_RETURN_IF_ERROR(state.Forward(batch.input(), LogitsMode::kLast, &logits));
    } else {
      GEMMA4_RETURN_IF_ERROR(state.Forward(next.data(), 1, LogitsMode::kLast, &logits));
    }
    int32_t chosen = 0;
    if (sampler_options.temperature <= 0) {
      for (int32_t v = 1; v < static_cast<int32_t>(logits.size()); ++v) {
        if (logits[v] > logits[chosen]) chosen = v;
      }
    } else {
      chosen = sampler.Sample(logits, history);
      if (chosen < 0) return InternalError("the sampler found no token to pick");
    }
    generated.push_back(chosen);
    history.push_back(chosen);
    for (int e : config.eos_token_ids) eos = eos || e == chosen;
    next.assign(1, chosen);
  }
  std::string line;
  for (size_t i = 0; i < generated.size(); ++i) {
    if (i) line += ",";
    line += std::to_string(generated[i]);
  }
  std::printf("%s\n", line.c_str());
  std::fprintf(stderr, "gemma4 generate: stop: %s after %zu tokens (%zu prompt tokens); %s\n",
               eos ? "end_of_sequence" : "max_tokens", generated.size(), ids.size(),
               cli::DescribeSampler(sampler_options).c_str());
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
  std::string tokenizer_path, text_file, text;
  bool no_special_tokens = false;
  ArgParser parser(
      "gemma4 tokenize --tokenizer PATH (--text-file F | --text STR) [--no-special-tokens]",
      "Prints the ids of the text, comma-separated (PATH: tokenizer.json, tokenizer.model, a\n"
      "GGUF, or a checkpoint directory). Special-token strings in the text become their ids.\n");
  parser.String({"--tokenizer"}, "PATH", "the tokenizer", &tokenizer_path)
      .String({"--text-file"}, "F", "the text: the file's exact bytes", &text_file)
      .String({"--text"}, "STR", "the text", &text)
      .Flag({"--no-special-tokens"}, "leave out the tokenizer's post-processor tokens",
            &no_special_tokens);
  GEMMA4_RETURN_IF_ERROR(parser.Parse(argc, argv));
  if (parser.help_requested()) return parser.PrintHelp();
  if (!parser.Given("--tokenizer")) return InvalidArgumentError("--tokenizer PATH is required");
  if (parser.Given("--text-file") == parser.Given("--text")) {
    return InvalidArgumentError("give exactly one of --text-file F and --text STR");
  }
  if (parser.Given("--text-file")) {
    GEMMA4_ASSIGN_OR_RETURN(text, ReadFileToString(text_file));
  }
  GEMMA4_ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::Load(tokenizer_path));
  const std::vector<int32_t> ids = tokenizer->Encode(text, !no_special_tokens);
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
  std::string tokenizer_path;
  std::vector<int32_t> ids;
  bool skip_special_tokens = false;
  ArgParser parser("gemma4 detokenize --tokenizer PATH --ids 2,17,33 [--skip-special-tokens]",
                   "Prints the decoded text.\n");
  parser.String({"--tokenizer"}, "PATH", "the tokenizer", &tokenizer_path);
  AddIdsArg(&parser, &ids);
  parser.Flag({"--skip-special-tokens"}, "leave special tokens out of the text",
              &skip_special_tokens);
  GEMMA4_RETURN_IF_ERROR(parser.Parse(argc, argv));
  if (parser.help_requested()) return parser.PrintHelp();
  if (!parser.Given("--tokenizer")) return InvalidArgumentError("--tokenizer PATH is required");
  if (!parser.Given("--ids")) return InvalidArgumentError("--ids is required");
  GEMMA4_ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::Load(tokenizer_path));
  for (int32_t id : ids) {
    if (id >= tokenizer->vocab_size()) {
      return InvalidArgumentError("--ids: id " + std::to_string(id) +
                                  " is outside the vocabulary (" +
                                  std::to_string(tokenizer->vocab_size()) + " ids)");
    }
  }
  const std::string text = tokenizer->Decode(ids, skip_special_tokens);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return OkStatus();
}

Status RunInfo(int argc, char** argv) {
  std::string path, tokenizer, mmproj, draft;
  int64_t threads = 0, context = 0, memory_limit = 0, image_budget = 0;
  KvCacheType kv_type = KvCacheType::kAuto;
  ArgParser parser(
      "gemma4 info --model PATH [--ctx N] [--kv-type auto|f32|f16|q8_0|q4_0] [--threads N]\n"
      "                   [--mmproj F] [--image-budget N] [--draft PATH] [--tokenizer PATH]\n"
      "                   [--memory-limit BYTES]",
      "Prints the variant, the layer table, the parameter count, the mapped bytes and the\n"
      "memory plan: the bytes the model and one session at N tokens keep resident, itemized,\n"
      "from the files' headers (no weight is read). --draft adds an assistant drafter's line\n"
      "(what generate/chat/run --draft keep resident). --image-budget: the largest image the\n"
      "plan's vision activations are sized for (ModelOptions::max_image_tokens; default 1120).\n"
      "--memory-limit: exit 1 when the plan exceeds it, as ModelOptions::memory_limit_bytes\n"
      "refuses it.\n");
  parser.String({"--model"}, "PATH", "checkpoint directory or model file", &path)
      .Int({"--ctx"}, "N", "context of the plan in tokens (default: the model's maximum)", 1,
           INT64_MAX, &context);
  cli::AddKvCacheTypeArg(&parser, "auto|f32|f16", "KV cache type of the plan (default auto)",
                         &kv_type)
      .Int({"--threads"}, "N", "worker threads of the plan (default: one per hardware thread)", 1,
           1024, &threads)
      .String({"--mmproj"}, "F", "an mmproj GGUF whose towers the plan includes", &mmproj)
      .Int({"--image-budget"}, "N", "largest image in soft tokens: 70, 140, 280, 560 or 1120", 70,
           1120, &image_budget)
      .String({"--draft"}, "PATH", "an assistant drafter whose memory the plan includes", &draft)
      .String({"--tokenizer"}, "PATH", "tokenizer location when not beside the weights", &tokenizer)
      .Int({"--memory-limit"}, "BYTES", "fail when the plan exceeds this many bytes", 1, INT64_MAX,
           &memory_limit);
  GEMMA4_RETURN_IF_ERROR(parser.Parse(argc, argv));
  if (parser.help_requested()) return parser.PrintHelp();
  if (path.empty()) return InvalidArgumentError("--model PATH is required");
  // The headers only: the layer table and counts come from the same validation Load runs.
  GEMMA4_ASSIGN_OR_RETURN(const WeightPlan weights, LoadedModel::PlanWeights(path));
  // Everything that can fail (the drafter, the mmproj, the tokenizer) is read before printing.
  ModelOptions options;
  options.threads = static_cast<int>(threads);
  options.kv_cache_type = kv_type;
  options.mmproj_path = mmproj;
  options.draft_model_path = draft;
  options.tokenizer_path = tokenizer;
  options.max_image_tokens = static_cast<int>(image_budget);
  GEMMA4_ASSIGN_OR_RETURN(PlanInputs inputs, GatherPlanInputs(path, options));
  const ModelConfig& c = weights.config;
  const int64_t ctx =
      context > 0 ? context
                  : (c.max_position_embeddings > 0 ? c.max_position_embeddings : int64_t{1} << 17);
  std::printf("variant: %s\n", c.variant.c_str());
  std::printf("layout: %s (text weights under '%s')\n", c.model_type.c_str(),
              weights.text_prefix.c_str());
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
  std::printf("parameters: %lld\n", static_cast<long long>(weights.num_parameters));
  std::printf("mapped bytes: %llu (%s)\n", static_cast<unsigned long long>(weights.weight_bytes),
              HumanBytes(weights.weight_bytes).c_str());
  // Under a limit, the forward steps a session of that context would take (ModelOptions::
  // memory_limit_bytes: 128 tokens where only those fit).
  inputs = WithStepWithin(inputs, ctx, static_cast<uint64_t>(memory_limit));
  const MemoryPlan plan = ComputeMemoryPlan(inputs, ctx);
  std::fputs(DescribeMemoryPlan(plan).c_str(), stdout);
  return CheckMemoryLimit(inputs, plan, static_cast<uint64_t>(memory_limit), "model " + path);
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
  } else if (cmd == "run") {
    status = cli::RunOnePrompt(argc, argv);
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

// The library reports failures as Status; the command-line code around it (argument parsing,
// output buffers, std::thread in the chat loop) can still throw on exhausted memory or threads.
// Those end the command with exit 1 and a message, as a Status would, never with an abort.
int main(int argc, char** argv) {
  const char* command = argc > 1 ? argv[1] : "";
  try {
    return gemma4::Main(argc, argv);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "gemma4 %s: RESOURCE_EXHAUSTED: out of memory\n", command);
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "gemma4 %s: RESOURCE_EXHAUSTED: %s\n", command, e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gemma4 %s: INTERNAL: %s\n", command, e.what());
  }
  return 1;
}
