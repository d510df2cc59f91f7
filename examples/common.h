// Shared argument handling for the examples: MODEL [--tokenizer PATH] [--threads N].
#ifndef GEMMA4_EXAMPLES_COMMON_H_
#define GEMMA4_EXAMPLES_COMMON_H_

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/model.h"

namespace examples {

struct Args {
  std::string model;
  std::vector<std::string> positional;  // after the model
  gemma4::ModelOptions options;
};

// The whole of `text` as an integer in [lo, hi], or a usage error naming `flag` (atoi would
// read "8x" as 8 and "x" as 0, the library's "pick for me" value for several options).
inline int IntArgOrDie(const char* flag, std::string_view text, int lo, int hi) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < lo || value > hi) {
    std::fprintf(stderr, "error: %s takes an integer from %d to %d, not \"%.*s\"\n", flag, lo, hi,
                 static_cast<int>(text.size()), text.data());
    std::exit(2);
  }
  return value;
}

inline Args Parse(int argc, char** argv, const char* usage) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--tokenizer" && i + 1 < argc) {
      a.options.tokenizer_path = argv[++i];
    } else if (s == "--threads" && i + 1 < argc) {
      a.options.threads = IntArgOrDie("--threads", argv[++i], 0, 4096);
    } else if (a.model.empty()) {
      a.model = s;
    } else {
      a.positional.push_back(s);
    }
  }
  if (a.model.empty()) {
    std::fprintf(stderr, "usage: %s\n", usage);
    std::exit(2);
  }
  return a;
}

inline std::shared_ptr<const gemma4::Model> LoadOrDie(const Args& a) {
  auto model = gemma4::Model::Load(a.model, a.options);
  if (!model.ok()) {
    std::fprintf(stderr, "error: %s\n", model.status().message().c_str());
    std::exit(1);
  }
  return *model;
}

}  // namespace examples

#endif  // GEMMA4_EXAMPLES_COMMON_H_
