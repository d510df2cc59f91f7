// Terminal chat: streaming output, /think to toggle thinking mode, tokens/s after each reply.
//   example_chat MODEL [--tokenizer PATH] [--threads N]
#include <cstdio>
#include <iostream>
#include <string>

#include "common.h"
#include "gemma4/session.h"

int main(int argc, char** argv) {
  const examples::Args args =
      examples::Parse(argc, argv, "example_chat MODEL [--tokenizer PATH] [--threads N]");
  auto model = examples::LoadOrDie(args);
  auto session = gemma4::Session::Create(model);
  if (!session.ok()) return 1;
  bool thinking = false;
  std::printf("Chatting with %s. /think toggles thinking, /quit exits.\n",
              model->info().variant.c_str());
  std::string line;
  while (std::printf("\n> "), std::fflush(stdout), std::getline(std::cin, line)) {
    if (line == "/quit") break;
    if (line == "/think") {
      thinking = !thinking;
      std::printf("thinking %s\n", thinking ? "on" : "off");
      continue;
    }
    if (line.empty()) continue;
    gemma4::GenerateOptions options;
    options.thinking = thinking;
    options.max_tokens = 512;
    options.on_text = [](gemma4::StreamKind kind, std::string_view text) {
      if (kind == gemma4::StreamKind::kThought) std::fputs("\x1b[2m", stdout);
      std::fwrite(text.data(), 1, text.size(), stdout);
      if (kind == gemma4::StreamKind::kThought) std::fputs("\x1b[0m", stdout);
      std::fflush(stdout);
      return true;
    };
    auto reply = (*session)->Send(line, options);
    if (!reply.ok()) {
      std::printf("\nerror: %s\n", reply.status().message().c_str());
      continue;
    }
    std::printf("\n[%d tokens, %.1f tok/s; %d prompt tokens reused]\n", reply->generated_tokens,
                reply->decode_seconds > 0 ? reply->generated_tokens / reply->decode_seconds : 0.0,
                reply->reused_tokens);
  }
  return 0;
}
