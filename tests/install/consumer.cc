// The C++ API from the installed static library.
#include <gemma4/model.h>
#include <gemma4/session.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  gemma4::ModelOptions options;
  options.tokenizer_path = argv[2];
  auto model = gemma4::Model::Load(argv[1], options);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().message().c_str());
    return 1;
  }
  auto session = gemma4::Session::Create(*model);
  if (!session.ok()) return 1;
  gemma4::GenerateOptions go;
  go.max_tokens = 4;
  auto reply = (*session)->Send("Hi", go);
  if (!reply.ok()) return 1;
  std::printf("C++ consumer: %d tokens generated\n", reply->generated_tokens);
  return 0;
}
