// Questions about a local text file, offline. The document goes into the system prompt once;
// every question reuses its KV cache (only the question is processed).
//   example_docqa MODEL FILE [--tokenizer PATH] [--threads N]   (questions on stdin)
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "common.h"
#include "gemma4/session.h"

int main(int argc, char** argv) {
  const examples::Args args =
      examples::Parse(argc, argv, "example_docqa MODEL FILE [--tokenizer PATH] [--threads N]");
  if (args.positional.empty()) {
    std::fprintf(stderr, "usage: example_docqa MODEL FILE\n");
    return 2;
  }
  std::ifstream file(args.positional[0]);
  if (!file) {
    std::fprintf(stderr, "error: cannot read %s\n", args.positional[0].c_str());
    return 1;
  }
  std::stringstream text;
  text << file.rdbuf();
  auto model = examples::LoadOrDie(args);
  gemma4::SessionOptions so;
  so.system_prompt = "Answer questions using only this document:\n\n" + text.str();
  so.context_policy = gemma4::ContextPolicy::kDropOldTurns;
  auto session = gemma4::Session::Create(model, so);
  if (!session.ok()) return 1;
  std::string question;
  while (std::getline(std::cin, question)) {
    if (question.empty()) continue;
    gemma4::GenerateOptions o;
    o.max_tokens = 256;
    auto reply = (*session)->Send(question, o);
    if (!reply.ok()) {
      std::fprintf(stderr, "error: %s\n", reply.status().message().c_str());
      return 1;
    }
    std::printf("Q: %s\nA: %s\n[%d new prompt tokens, %d reused]\n", question.c_str(),
                reply->text.c_str(), reply->prompt_tokens, reply->reused_tokens);
    // Each question is independent: go back to just the document.
    (void)(*session)->Rewind(1);
  }
  return 0;
}
