// Describes an image, streaming the answer. The picture is decoded (PNG, JPEG or WebP, EXIF
// orientation applied), resized and encoded by the model's vision tower inside the library.
//   example_describe MODEL IMAGE [--budget 70|140|280|560|1120] [--tokenizer PATH] [--threads N]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common.h"
#include "gemma4/session.h"

int main(int argc, char** argv) {
  int budget = 0;  // the model's default soft-token budget
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::string(argv[i]) == "--budget" && i + 1 < argc) {
      budget = examples::IntArgOrDie("--budget", argv[++i], 0, 1 << 20);
    } else {
      rest.push_back(argv[i]);
    }
  }
  const examples::Args args =
      examples::Parse(static_cast<int>(rest.size()), rest.data(),
                      "example_describe MODEL IMAGE [--budget N] [--tokenizer PATH] [--threads N]");
  if (args.positional.empty()) {
    std::fprintf(stderr, "usage: example_describe MODEL IMAGE\n");
    return 2;
  }
  auto model = examples::LoadOrDie(args);
  if (!model->info().vision) {
    std::fprintf(stderr, "error: %s has no vision tower\n", args.model.c_str());
    return 1;
  }
  auto session = gemma4::Session::Create(model);
  if (!session.ok()) return 1;
  gemma4::GenerateOptions options;
  options.max_tokens = 256;
  options.on_text = [](gemma4::StreamKind kind, std::string_view text) {
    if (kind == gemma4::StreamKind::kText) std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  auto reply = (*session)->Send(
      {gemma4::ContentPart::FromImage(gemma4::Image::FromFile(args.positional[0], budget)),
       gemma4::ContentPart::Text("Describe this image.")},
      options);
  std::printf("\n");
  if (!reply.ok()) {
    std::fprintf(stderr, "error: %s\n", reply.status().message().c_str());
    return 1;
  }
  std::fprintf(stderr, "[%d prompt tokens, %d generated]\n", reply->prompt_tokens,
               reply->generated_tokens);
  return 0;
}
