// gemma4 chat: interactive terminal chat over a Session (streaming, thinking toggle, tokens/s).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "gemma4/model.h"
#include "gemma4/session.h"
#include "tools/cli/commands.h"

namespace gemma4::cli {
namespace {

constexpr char kChatHelp[] =
    "commands: /think on|off  /image PATH  /audio PATH (attached to the next message)  /reset\n"
    "          /quit   (an empty line is ignored)\n";

Status ParseNumber(const std::string& flag, const std::string& s, double lo, double hi,
                   double* out) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(v >= lo && v <= hi)) {
    return InvalidArgumentError(flag + " must be a number in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "], got '" + s + "'");
  }
  *out = v;
  return OkStatus();
}

}  // namespace

Status RunChat(int argc, char** argv) {
  std::string model_path, system, tokenizer_path;
  std::vector<std::string> pending_images;  // attached to the next message
  std::vector<std::string> pending_audio;
  double image_budget = 0;
  KvCacheType kv_cache_type = KvCacheType::kAuto;
  bool think = false;
  double threads = 0, max_tokens = 1024, temperature = -1, seed = 0;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string* out) -> Status {
      if (i + 1 >= argc) return InvalidArgumentError("option " + a + " needs a value");
      *out = argv[++i];
      return OkStatus();
    };
    std::string v;
    if (a == "--model" || a == "-m") {
      GEMMA4_RETURN_IF_ERROR(value(&model_path));
    } else if (a == "--system") {
      GEMMA4_RETURN_IF_ERROR(value(&system));
    } else if (a == "--tokenizer") {
      GEMMA4_RETURN_IF_ERROR(value(&tokenizer_path));
    } else if (a == "--image") {
      GEMMA4_RETURN_IF_ERROR(value(&v));
      pending_images.push_back(v);
    } else if (a == "--audio") {
      GEMMA4_RETURN_IF_ERROR(value(&v));
      pending_audio.push_back(v);
    } else if (a == "--image-budget") {
      GEMMA4_RETURN_IF_ERROR(value(&v));
      GEMMA4_RETURN_IF_ERROR(ParseNumber(a, v, 70, 1120, &image_budget));
    } else if (a == "--think") {
      think = true;
    } else if (a == "--threads" || a == "-t") {
      GEMMA4_RETURN_IF_ERROR(value(&v));
      GEMMA4_RETURN_IF_ERROR(ParseNumber(a, v, 0, 1024, &threads));
    } else if (a == "--max-tokens" || a == "-n") {
      GEMMA4_RETURN_IF_ERROR(value(&v));
      GEMMA4_RETURN_IF_ERROR(ParseNumber(a, v, 1, 1 << 20, &max_tokens));
    } else if (a == "--temperature") {
      GEMMA4_RETURN_IF_ERROR(value(&v));
      GEMMA4_RETURN_IF_ERROR(ParseNumber(a, v, 0, 100, &temperature));
    } else if (a == "--kv-type") {
      GEMMA4_RETURN_IF_ERROR(value(&v));
      if (v == "auto") {
        kv_cache_type = KvCacheType::kAuto;
      } else if (v == "f32") {
        kv_cache_type = KvCacheType::kF32;
      } else if (v == "f16") {
        kv_cache_type = KvCacheType::kF16;
      } else {
        return InvalidArgumentError("--kv-type " + v + ": expected auto, f32 or f16");
      }
    } else if (a == "--seed") {
      GEMMA4_RETURN_IF_ERROR(value(&v));
      GEMMA4_RETURN_IF_ERROR(ParseNumber(a, v, 0, 1e15, &seed));
    } else {
      return InvalidArgumentError("unknown argument '" + a + "'");
    }
  }
  if (model_path.empty()) return InvalidArgumentError("--model PATH is required");
  ModelOptions model_options;
  model_options.threads = static_cast<int>(threads);
  model_options.tokenizer_path = tokenizer_path;
  model_options.kv_cache_type = kv_cache_type;
  GEMMA4_ASSIGN_OR_RETURN(auto model, Model::Load(model_path, model_options));
  if (!pending_images.empty() && !model->info().vision) {
    return FailedPreconditionError("--image: model " + model_path +
                                   " has no vision tower (a text-only checkpoint or GGUF)");
  }
  if (!pending_audio.empty() && !model->info().audio) {
    return FailedPreconditionError("--audio: model " + model_path +
                                   " has no audio tower (E2B and E4B checkpoints hear)");
  }
  SessionOptions session_options;
  session_options.system_prompt = system;
  session_options.context_policy = ContextPolicy::kDropOldTurns;
  GEMMA4_ASSIGN_OR_RETURN(auto session, Session::Create(model, session_options));
  const bool tty = isatty(STDOUT_FILENO) != 0;
  std::fprintf(stderr, "gemma4 chat: %s (%s, %d threads, %s KV cache), thinking %s. %s",
               model_path.c_str(), model->info().variant.c_str(), model->info().threads,
               model->info().kv_cache_type.c_str(), think ? "on" : "off", kChatHelp);
  std::string line;
  while (true) {
    std::fputs(tty ? "\n> " : "> ", stdout);
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/think on" || line == "/think off") {
      think = line == "/think on";
      std::printf("thinking %s\n", think ? "on" : "off");
      continue;
    }
    if (line.rfind("/audio ", 0) == 0) {
      pending_audio.push_back(line.substr(7));
      std::printf("recording %s attached to the next message\n", pending_audio.back().c_str());
      continue;
    }
    if (line.rfind("/image ", 0) == 0) {
      pending_images.push_back(line.substr(7));
      std::printf("image %s attached to the next message\n", pending_images.back().c_str());
      continue;
    }
    if (line == "/reset") {
      GEMMA4_RETURN_IF_ERROR(session->Rewind(system.empty() ? 0 : 1));
      std::printf("conversation cleared\n");
      continue;
    }
    GenerateOptions options;
    options.thinking = think;
    options.max_tokens = static_cast<int>(max_tokens);
    if (temperature >= 0) {
      SamplerOptions s = model->info().default_sampler;
      s.temperature = static_cast<float>(temperature);
      s.seed = static_cast<uint64_t>(seed);
      options.sampler = s;
    }
    bool in_thought = false;
    options.on_text = [&](StreamKind kind, std::string_view text) {
      if (kind == StreamKind::kThought && !in_thought) {
        std::fputs(tty ? "\x1b[2m[thinking] " : "[thinking] ", stdout);
        in_thought = true;
      } else if (kind == StreamKind::kText && in_thought) {
        std::fputs(tty ? "\x1b[0m\n" : "\n[answer] ", stdout);
        in_thought = false;
      }
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      return true;
    };
    StatusOr<Reply> reply = InvalidArgumentError("no message");
    if (pending_images.empty() && pending_audio.empty()) {
      reply = session->Send(line, options);
    } else {
      // The images and recordings first, then the text, as one user turn.
      std::vector<ContentPart> content;
      for (const std::string& path : pending_images) {
        content.push_back(
            ContentPart::FromImage(Image::FromFile(path, static_cast<int>(image_budget))));
      }
      for (const std::string& path : pending_audio) {
        content.push_back(ContentPart::FromAudio(Audio::FromFile(path)));
      }
      content.push_back(ContentPart::Text(line));
      pending_images.clear();
      pending_audio.clear();
      reply = session->Send(content, options);
    }
    if (in_thought && tty) std::fputs("\x1b[0m", stdout);
    std::fputc('\n', stdout);
    if (!reply.ok()) {
      std::fprintf(stderr, "error: %s\n", reply.status().message().c_str());
      continue;
    }
    const double tps =
        reply->decode_seconds > 0 ? reply->generated_tokens / reply->decode_seconds : 0.0;
    const double pps =
        reply->prefill_seconds > 0 ? reply->prompt_tokens / reply->prefill_seconds : 0.0;
    std::fprintf(stderr,
                 "[%d prompt tokens (%d reused) at %.1f tok/s, %d generated at %.1f tok/s]\n",
                 reply->prompt_tokens, reply->reused_tokens, pps, reply->generated_tokens, tps);
  }
  return OkStatus();
}

}  // namespace gemma4::cli
