// Visual question answering over several images: the images go into the first turn once; each
// question (one per stdin line) is asked in a fork of that conversation, which shares the
// images' KV cache, so only the question is processed.
//   example_vqa MODEL IMAGE [IMAGE ...] [--tokenizer PATH] [--threads N]   (questions on stdin)
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "common.h"
#include "gemma4/session.h"

int main(int argc, char** argv) {
  const examples::Args args = examples::Parse(
      argc, argv, "example_vqa MODEL IMAGE [IMAGE ...] [--tokenizer PATH] [--threads N]");
  if (args.positional.empty()) {
    std::fprintf(stderr, "usage: example_vqa MODEL IMAGE [IMAGE ...]\n");
    return 2;
  }
  auto model = examples::LoadOrDie(args);
  auto session = gemma4::Session::Create(model);
  if (!session.ok()) return 1;
  // Turn 1: the images, labelled, and an instruction.
  std::vector<gemma4::ContentPart> content;
  for (size_t i = 0; i < args.positional.size(); ++i) {
    content.push_back(gemma4::ContentPart::Text("Image " + std::to_string(i + 1) + ":"));
    content.push_back(gemma4::ContentPart::FromImage(gemma4::Image::FromFile(args.positional[i])));
  }
  content.push_back(gemma4::ContentPart::Text("Answer my questions about these images."));
  gemma4::GenerateOptions o;
  o.max_tokens = 64;
  auto first = (*session)->Send(content, o);
  if (!first.ok()) {
    std::fprintf(stderr, "error: %s\n", first.status().message().c_str());
    return 1;
  }
  std::printf("[%zu images: %d prompt tokens]\n%s\n", args.positional.size(), first->prompt_tokens,
              first->text.c_str());
  std::string question;
  while (std::getline(std::cin, question)) {
    if (question.empty()) continue;
    o.max_tokens = 256;
    auto fork = (*session)->Fork();
    if (!fork.ok()) {
      std::fprintf(stderr, "error: %s\n", fork.status().message().c_str());
      return 1;
    }
    auto reply = (*fork)->Send(question, o);
    if (!reply.ok()) {
      std::fprintf(stderr, "error: %s\n", reply.status().message().c_str());
      return 1;
    }
    std::printf("Q: %s\nA: %s\n[%d new prompt tokens, %d reused]\n", question.c_str(),
                reply->text.c_str(), reply->prompt_tokens, reply->reused_tokens);
  }
  return 0;
}
