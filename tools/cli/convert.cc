// gemma4 quantize and gemma4 synth: write GGUF models (see src/model/gguf_export.h).
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "audio/audio_encoder.h"
#include "formats/gguf.h"
#include "model/gguf_export.h"
#include "model/model.h"
#include "runtime/thread_pool.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"
#include "vision/vision_encoder.h"

namespace gemma4::cli {
namespace {

int DefaultThreads() { return static_cast<int>(std::max<long>(1, sysconf(_SC_NPROCESSORS_ONLN))); }

std::string DirOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return path;
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

}  // namespace

Status RunQuantize(int argc, char** argv) {
  std::string src, dst, type, mmproj, mmproj_type = "f16";
  int64_t threads = DefaultThreads();
  ArgParser parser(
      "gemma4 quantize SRC DST --type q4_0|q4_k_m|q8_0|bf16|f16|f32 [--threads N]\n"
      "                       [--mmproj-type f16|bf16|f32|q8_0] [--mmproj OUT]",
      "Writes a GGUF (llama.cpp layout) from a checkpoint or GGUF, and the towers as a\n"
      "llama.cpp mmproj beside it (mmproj-DST) when the checkpoint has them.\n");
  parser.Positional("SRC", "checkpoint directory or model file", &src)
      .Positional("DST", "the GGUF to write", &dst)
      .String({"--type"}, "TYPE", "q4_0, q4_k_m, q8_0, bf16, f16 or f32", &type)
      .Int({"--threads"}, "N", "worker threads (default: all cores)", 1, 1024, &threads)
      .String({"--mmproj"}, "OUT", "where the mmproj goes (default: mmproj-DST)", &mmproj)
      .String({"--mmproj-type"}, "TYPE", "f16 (default), bf16, f32 or q8_0", &mmproj_type);
  GEMMA4_RETURN_IF_ERROR(parser.Parse(argc, argv));
  if (parser.help_requested()) return parser.PrintHelp();
  if (src.empty() || dst.empty())
    return InvalidArgumentError("usage: gemma4 quantize SRC DST --type TYPE");
  if (type.empty())
    return InvalidArgumentError("--type is required (q4_0, q4_k_m, q8_0, bf16, f16, f32)");
  GEMMA4_ASSIGN_OR_RETURN(Recipe recipe, ParseRecipe(type));
  GEMMA4_ASSIGN_OR_RETURN(std::unique_ptr<LoadedModel> model, LoadedModel::Load(src));
  gguf::Writer writer;
  if (model->is_gguf()) {
    // Carry the tokenizer (and chat template) over from the source file.
    GEMMA4_ASSIGN_OR_RETURN(std::unique_ptr<gguf::File> source, gguf::File::Open(src));
    for (const auto& [key, value] : source->metadata()) {
      if (key.rfind("tokenizer.", 0) == 0) writer.Set(key, value);
    }
  } else {
    GEMMA4_ASSIGN_OR_RETURN(bool has_tokenizer,
                            SetGgufTokenizerFromDirectory(DirOf(src), model->config(), &writer));
    if (!has_tokenizer) {
      std::fprintf(stderr,
                   "gemma4 quantize: warning: no tokenizer.json next to %s; the output "
                   "has no tokenizer (llama.cpp needs one to load it)\n",
                   src.c_str());
    }
  }
  ThreadPool pool(static_cast<int>(threads));
  const auto t0 = std::chrono::steady_clock::now();
  GEMMA4_RETURN_IF_ERROR(
      WriteGgufModel(model->config(), ModelTensors(*model), recipe, &writer, dst, &pool));
  std::fprintf(stderr, "gemma4 quantize: wrote %s (%s) in %.1f s\n", dst.c_str(), type.c_str(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  // The towers, as a llama.cpp mmproj beside the text model.
  const Checkpoint* ckpt = model->checkpoint();
  auto declared = [&](const char* key) {
    const json::Value* v = ckpt != nullptr ? ckpt->config_json().Find(key) : nullptr;
    return v != nullptr && !v->is_null();
  };
  bool vision = declared("vision_config");
  bool audio = declared("audio_config");
  if (!vision && !audio) {
    if (!mmproj.empty()) {
      return FailedPreconditionError("--mmproj: " + src + " has no vision or audio tower to write");
    }
    return OkStatus();
  }
  DType matrix_type;
  if (mmproj_type == "f16") {
    matrix_type = DType::kF16;
  } else if (mmproj_type == "bf16") {
    matrix_type = DType::kBF16;
  } else if (mmproj_type == "f32") {
    matrix_type = DType::kF32;
  } else if (mmproj_type == "q8_0") {
    matrix_type = DType::kQ8_0;
  } else {
    return InvalidArgumentError("--mmproj-type " + mmproj_type +
                                ": expected f16, bf16, f32 or q8_0 (the vision tower is never "
                                "stored below 8 bits)");
  }
  if (mmproj.empty()) {
    const size_t slash = dst.rfind('/');
    mmproj = slash == std::string::npos
                 ? "mmproj-" + dst
                 : dst.substr(0, slash + 1) + "mmproj-" + dst.substr(slash + 1);
  }
  // A tower the checkpoint declares but that cannot be used (damaged, or shaped as transformers
  // itself could not run) is left out with a warning: the text model is written either way.
  if (vision) {
    if (auto usable = vision::VisionEncoder::Load(*model); !usable.ok()) {
      std::fprintf(stderr,
                   "gemma4 quantize: warning: the vision tower cannot be used and is not in "
                   "the mmproj (%s)\n",
                   usable.status().message().c_str());
      vision = false;
    }
  }
  if (vision) {
    GEMMA4_RETURN_IF_ERROR(vision::WriteVisionMmproj(*model, matrix_type, mmproj, &pool));
  }
  // E2B/E4B: the audio tower joins the vision tower in the same file, as llama.cpp's converter
  // writes it; a checkpoint with an audio tower alone gets an audio-only mmproj.
  if (audio) {
    if (auto usable = audio::AudioEncoder::Load(*model); !usable.ok()) {
      std::fprintf(stderr,
                   "gemma4 quantize: warning: the audio tower cannot be used and is not "
                   "in the mmproj (%s)\n",
                   usable.status().message().c_str());
      audio = false;
    }
  }
  if (audio) {
    GEMMA4_RETURN_IF_ERROR(audio::WriteAudioMmproj(*model, matrix_type, mmproj, &pool,
                                                   /*add_to=*/vision ? mmproj : ""));
  }
  if (!vision && !audio) {
    std::fprintf(stderr, "gemma4 quantize: warning: no mmproj written: no usable tower\n");
    return OkStatus();
  }
  std::fprintf(stderr, "gemma4 quantize: wrote %s (%s%s%s tower%s, %s)\n", mmproj.c_str(),
               vision ? "vision" : "", vision && audio ? " and " : "", audio ? "audio" : "",
               vision && audio ? "s" : "", mmproj_type.c_str());
  return OkStatus();
}

Status RunSynth(int argc, char** argv) {
  std::string variant, type, out, mmproj;
  int64_t threads = DefaultThreads();
  int64_t seed = 1;
  int64_t layers = 0;
  ArgParser parser(
      "gemma4 synth --variant e2b|e4b|26b-a4b|31b --type TYPE OUT.gguf [--seed N] [--layers N]\n"
      "                    [--mmproj OUT] [--threads N]",
      "Writes a random-weight GGUF with the released dimensions (benchmarks); --layers keeps\n"
      "the widths with N layers, --mmproj adds the released vision tower.\n");
  parser.Positional("OUT.gguf", "the GGUF to write", &out)
      .String({"--variant"}, "NAME", "e2b, e4b, 26b-a4b or 31b", &variant)
      .String({"--type"}, "TYPE", "q4_0, q4_k_m, q8_0, bf16, f16 or f32", &type)
      .Int({"--seed"}, "N", "seed of the random weights (default 1)", 0, INT64_MAX, &seed)
      .Int({"--layers"}, "N", "number of layers (default: the released count)", 1, 1024, &layers)
      .String({"--mmproj"}, "OUT", "also write the released vision tower here", &mmproj)
      .Int({"--threads"}, "N", "worker threads (default: all cores)", 1, 1024, &threads);
  GEMMA4_RETURN_IF_ERROR(parser.Parse(argc, argv));
  if (parser.help_requested()) return parser.PrintHelp();
  if (variant.empty() || type.empty() || out.empty()) {
    return InvalidArgumentError(
        "usage: gemma4 synth --variant e2b|e4b|26b-a4b|31b --type TYPE OUT.gguf");
  }
  GEMMA4_ASSIGN_OR_RETURN(Recipe recipe, ParseRecipe(type));
  GEMMA4_ASSIGN_OR_RETURN(ModelConfig config, ReleasedConfig(variant, static_cast<int>(layers)));
  gguf::Writer writer;
  writer.Set("general.name", gguf::Value::String("gemma4 synthetic " + variant));
  SetGgufPlaceholderTokenizer(config, &writer);
  ThreadPool pool(static_cast<int>(threads));
  const auto t0 = std::chrono::steady_clock::now();
  GEMMA4_RETURN_IF_ERROR(WriteGgufModel(
      config, SyntheticTensors(config, static_cast<uint64_t>(seed)), recipe, &writer, out, &pool));
  std::fprintf(stderr, "gemma4 synth: wrote %s (%s %s) in %.1f s\n", out.c_str(), variant.c_str(),
               type.c_str(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  if (!mmproj.empty()) {
    // The released vision tower with random weights, f16 (as llama.cpp's converter writes).
    GEMMA4_ASSIGN_OR_RETURN(VisionConfig vc, vision::ReleasedVisionConfig(variant));
    GEMMA4_RETURN_IF_ERROR(vision::WriteVisionMmproj(
        vc, config.hidden_size,
        vision::SyntheticVisionTensors(vc, config.hidden_size, static_cast<uint64_t>(seed)),
        DType::kF16, mmproj, &pool));
    // E2B and E4B hear: the released audio tower (Gemma4AudioConfig's defaults) joins it, as
    // in llama.cpp's combined files.
    const bool audio = variant == "e2b" || variant == "e4b";
    if (audio) {
      const AudioConfig ac;
      GEMMA4_RETURN_IF_ERROR(
          audio::WriteAudioMmproj(ac, 128, config.hidden_size,
                                  audio::SyntheticAudioTensors(ac, 128, config.hidden_size,
                                                               static_cast<uint64_t>(seed) + 1),
                                  DType::kF16, mmproj, &pool, /*add_to=*/mmproj));
    }
    std::fprintf(stderr, "gemma4 synth: wrote %s (vision%s, f16)\n", mmproj.c_str(),
                 audio ? " and audio towers" : " tower");
  }
  return OkStatus();
}

}  // namespace gemma4::cli
