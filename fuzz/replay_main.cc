// Plain driver for the fuzz targets, for compilers without libFuzzer: runs
// LLVMFuzzerTestOneInput on every file named on the command line (directories are walked).
//
//   replay [-mutations=N] PATH...
//
// With -mutations=N it also runs N deterministic variants of each input (truncations, byte
// flips, insertions, deletions, chunk copies), so the test suite explores a little beyond the
// seed corpus under the sanitizers. Exits non-zero if no input was found.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

// Runs the target on an exact-size heap copy so reads past the end are caught.
void RunOne(const std::vector<uint8_t>& input) {
  std::vector<uint8_t> copy(input);
  LLVMFuzzerTestOneInput(copy.empty() ? nullptr : copy.data(), copy.size());
}

uint64_t Next(uint64_t* state) {  // xorshift64*
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

std::vector<uint8_t> Mutate(const std::vector<uint8_t>& in, uint64_t* rng) {
  std::vector<uint8_t> out(in);
  const int steps = 1 + static_cast<int>(Next(rng) % 3);
  static const char* const kTokens[] = {
      "\"", "{",  "}",     "[",    "]",   ",",    ":",
      "0",  "-1", "1e309", "null", "\\u", "\xff", "18446744073709551615"};
  for (int s = 0; s < steps; ++s) {
    const size_t n = out.size();
    switch (Next(rng) % 6) {
      case 0:  // truncate
        out.resize(n == 0 ? 0 : Next(rng) % n);
        break;
      case 1:  // flip bits of one byte
        if (n > 0) out[Next(rng) % n] ^= static_cast<uint8_t>(1u << (Next(rng) % 8));
        break;
      case 2:  // set one byte to an interesting value
        if (n > 0) {
          static const uint8_t kBytes[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '"', '\\', '9'};
          out[Next(rng) % n] = kBytes[Next(rng) % sizeof(kBytes)];
        }
        break;
      case 3: {  // insert a token
        const char* tok = kTokens[Next(rng) % (sizeof(kTokens) / sizeof(kTokens[0]))];
        const size_t at = n == 0 ? 0 : Next(rng) % (n + 1);
        out.insert(out.begin() + static_cast<std::ptrdiff_t>(at), tok, tok + std::strlen(tok));
        break;
      }
      case 4:  // delete a range
        if (n > 0) {
          const size_t at = Next(rng) % n;
          const size_t len = 1 + Next(rng) % std::min<size_t>(16, n - at);
          out.erase(out.begin() + static_cast<std::ptrdiff_t>(at),
                    out.begin() + static_cast<std::ptrdiff_t>(at + len));
        }
        break;
      default:  // duplicate a chunk elsewhere
        if (n > 0) {
          const size_t from = Next(rng) % n;
          const size_t len = 1 + Next(rng) % std::min<size_t>(32, n - from);
          const std::vector<uint8_t> chunk(out.begin() + static_cast<std::ptrdiff_t>(from),
                                           out.begin() + static_cast<std::ptrdiff_t>(from + len));
          const size_t at = Next(rng) % (n + 1);
          out.insert(out.begin() + static_cast<std::ptrdiff_t>(at), chunk.begin(), chunk.end());
        }
        break;
    }
  }
  return out;
}

bool ReadFile(const std::filesystem::path& path, std::vector<uint8_t>* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

}  // namespace

int main(int argc, char** argv) {
  long mutations = 0;
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("-mutations=", 0) == 0) {
      mutations = std::strtol(arg.c_str() + std::strlen("-mutations="), nullptr, 10);
      continue;
    }
    if (!arg.empty() && arg[0] == '-') continue;  // ignore other libFuzzer-style flags
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(arg, ec)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
    } else {
      files.emplace_back(arg);
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "replay: no input files\n");
    return 2;
  }
  size_t runs = 0;
  for (const auto& path : files) {
    std::vector<uint8_t> input;
    if (!ReadFile(path, &input)) {
      std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
      return 2;
    }
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", path.c_str(), input.size());
    RunOne(input);
    ++runs;
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ (input.size() * 0x100000001B3ull);
    for (unsigned char c : path.filename().string()) rng = (rng ^ c) * 0x100000001B3ull;
    if (rng == 0) rng = 1;
    for (long m = 0; m < mutations; ++m) {
      RunOne(Mutate(input, &rng));
      ++runs;
    }
  }
  std::fprintf(stderr, "replay: %zu files, %zu runs, no crash\n", files.size(), runs);
  return 0;
}
