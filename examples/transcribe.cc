// Speech in, text out, in one model (E2B / E4B hear): transcribes a recording, or answers the
// question spoken in it with --answer. WAV, FLAC, Ogg or MP3 at any rate; recordings over 30 s
// are encoded in 30 s pieces.
//   example_transcribe MODEL AUDIO [--answer] [--tokenizer PATH] [--threads N]
#include <cstdio>
#include <string>
#include <vector>

#include "common.h"
#include "gemma4/session.h"

int main(int argc, char** argv) {
  bool answer = false;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::string(argv[i]) == "--answer") {
      answer = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  const examples::Args args =
      examples::Parse(static_cast<int>(rest.size()), rest.data(),
                      "example_transcribe MODEL AUDIO [--answer] [--tokenizer PATH] [--threads N]");
  if (args.positional.empty()) {
    std::fprintf(stderr, "usage: example_transcribe MODEL AUDIO [--answer]\n");
    return 2;
  }
  auto model = examples::LoadOrDie(args);
  if (!model->info().audio) {
    std::fprintf(stderr, "error: %s has no audio tower (E2B and E4B hear)\n", args.model.c_str());
    return 1;
  }
  auto session = gemma4::Session::Create(model);
  if (!session.ok()) return 1;
  gemma4::GenerateOptions options;
  options.max_tokens = 512;
  options.on_text = [](gemma4::StreamKind kind, std::string_view text) {
    if (kind == gemma4::StreamKind::kText) std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  const char* instruction = answer ? "Answer the question asked in this recording."
                                   : "Transcribe this recording verbatim.";
  auto reply =
      (*session)->Send({gemma4::ContentPart::FromAudio(gemma4::Audio::FromFile(args.positional[0])),
                        gemma4::ContentPart::Text(instruction)},
                       options);
  std::printf("\n");
  if (!reply.ok()) {
    std::fprintf(stderr, "error: %s\n", reply.status().message().c_str());
    return 1;
  }
  std::fprintf(stderr, "[%d prompt tokens in %.2f s, %d generated]\n", reply->prompt_tokens,
               reply->prefill_seconds, reply->generated_tokens);
  return 0;
}
