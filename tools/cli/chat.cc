// gemma4 chat: interactive terminal chat over a Session (streaming, thinking toggle, tokens/s).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "gemma4/model.h"
#include "gemma4/session.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"
#include "tools/cli/session_args.h"

namespace gemma4::cli {
namespace {

constexpr char kChatHelp[] =
    "commands: /think on|off  /image PATH  /audio PATH (attached to the next message)  /reset\n"
    "          /quit   (an empty line is ignored)\n";

}  // namespace

Status RunChat(int argc, char** argv) {
  ModelArgs model_args;
  SamplingArgs sampling;
  std::string system;
  std::vector<std::string> pending_images;  // attached to the next message
  std::vector<std::string> pending_audio;
  int64_t image_budget = 0;
  bool think = false;
  ArgParser parser(
      "gemma4 chat --model PATH [--think] [--system TEXT] [--tokenizer PATH] [-t N] [-n N]\n"
      "                   [--temperature T] [--seed S] [--kv-type auto|f32|f16|q8_0|q4_0] [--image "
      "FILE "
      "...]\n"
      "                   [--image-budget N] [--audio FILE ...] [--mmproj F]",
      "Interactive chat on stdin/stdout, streaming; thoughts marked [thinking]; tokens/s and the\n"
      "stop reason of every reply on stderr.\n" +
          std::string(kChatHelp));
  AddModelArgs(&parser, &model_args);
  AddMaxTokensArg(&parser, &sampling);
  AddSamplingArgs(&parser, &sampling);
  parser.String({"--system"}, "TEXT", "system prompt", &system)
      .Flag({"--think"}, "start with thinking on", &think)
      .Strings({"--image"}, "FILE", "image attached to the first message", &pending_images)
      .Strings({"--audio"}, "FILE", "recording attached to the first message", &pending_audio)
      .Int({"--image-budget"}, "N", "soft tokens per image: 70, 140, 280, 560 or 1120", 70, 1120,
           &image_budget);
  GEMMA4_RETURN_IF_ERROR(parser.Parse(argc, argv));
  if (parser.help_requested()) return parser.PrintHelp();
  const std::string& model_path = model_args.model;
  GEMMA4_ASSIGN_OR_RETURN(auto model, LoadModel(model_args));
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
    options.max_tokens = static_cast<int>(sampling.max_tokens);
    options.sampler = SamplerFor(model->info(), sampling);
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
                 "[%d prompt tokens (%d reused) at %.1f tok/s, %d generated at %.1f tok/s; "
                 "stop: %s]\n",
                 reply->prompt_tokens, reply->reused_tokens, pps, reply->generated_tokens, tps,
                 StopReasonName(reply->stop_reason));
  }
  return OkStatus();
}

}  // namespace gemma4::cli
