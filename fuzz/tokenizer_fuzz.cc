// libFuzzer target: the tokenizer.json loader and the BPE encoder on arbitrary bytes.
//  - input starting with '{': parsed as a tokenizer.json; a loaded tokenizer must encode and
//    decode a few strings without crashing and only produce ids inside its vocabulary.
//  - anything else: encoded with a small Gemma-style tokenizer (byte fallback), and for valid
//    UTF-8 input without a literal "▁" decode(encode(x)) must give x back exactly.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/tokenizer.h"

namespace {

// Vocabulary: the bytes, "▁" and a few merged pieces; one special token.
std::shared_ptr<const gemma4::Tokenizer> SmallTokenizer() {
  static std::shared_ptr<const gemma4::Tokenizer> tok = [] {
    std::string vocab =
        "{\"<unk>\": 0, \"<bos>\": 1, \"\\u2581\": 2, \"a\": 3, \"b\": 4, \"ab\": 5,"
        " \"\\u2581a\": 6, \"\\u2581ab\": 7";
    for (int b = 0; b < 256; ++b) {
      char piece[16];
      std::snprintf(piece, sizeof(piece), "<0x%02X>", b);
      vocab += ", \"" + std::string(piece) + "\": " + std::to_string(8 + b);
    }
    vocab += "}";
    const std::string json =
        "{\"added_tokens\": [{\"id\": 264, \"content\": \"<|turn>\", \"special\": true}],"
        " \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"},"
        " \"content\": \"\\u2581\"},"
        " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\","
        " \"pattern\": {\"String\": \"\\u2581\"}, \"content\": \" \"}, {\"type\": "
        "\"ByteFallback\"}, {\"type\": \"Fuse\"}]},"
        " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": true,"
        " \"fuse_unk\": true, \"vocab\": " +
        vocab + ", \"merges\": [[\"a\", \"b\"], [\"\\u2581\", \"a\"], [\"\\u2581a\", \"b\"]]}}";
    auto t = gemma4::Tokenizer::FromHuggingFaceJson(json, "fuzz");
    if (!t.ok()) __builtin_trap();
    return *t;
  }();
  return tok;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c >> 5) == 6) {
      n = 2;
      cp = c & 0x1F;
    } else if ((c >> 4) == 14) {
      n = 3;
      cp = c & 0x0F;
    } else if ((c >> 3) == 30) {
      n = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n;
  }
  return true;
}

void CheckIds(const gemma4::Tokenizer& tok, std::string_view text) {
  for (int32_t id : tok.Encode(text, true)) {
    if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (!input.empty() && input[0] == '{') {
    auto tok = gemma4::Tokenizer::FromHuggingFaceJson(input, "fuzz.json");
    if (!tok.ok()) {
      if (tok.status().message().empty()) __builtin_trap();
      return 0;
    }
    for (std::string_view text : {"", " ", "hello world", "a\n\tb  c", "\xF0\x9F\x98\x80"}) {
      CheckIds(**tok, text);
      const std::vector<int32_t> ids = (*tok)->Encode(text);
      (*tok)->Decode(ids);
    }
    return 0;
  }
  const auto tok = SmallTokenizer();
  const std::vector<int32_t> ids = tok->Encode(input);
  for (int32_t id : ids) {
    if (id < 0 || id >= tok->vocab_size()) __builtin_trap();
  }
  // "▁" in the input decodes to a space (as in `tokenizers`): the one text that does not come
  // back exactly.
  const bool round_trips =
      IsValidUtf8(input) && input.find("\xE2\x96\x81") == std::string_view::npos;
  if (round_trips && tok->Decode(ids) != input) __builtin_trap();
  gemma4::StreamingDetokenizer stream(tok);
  std::string streamed;
  for (int32_t id : ids) streamed += stream.Push(id);
  streamed += stream.Flush();
  if (round_trips && streamed != input) __builtin_trap();
  return 0;
}
