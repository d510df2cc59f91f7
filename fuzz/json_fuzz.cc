// libFuzzer target: json::Parse on arbitrary bytes. A document that parses must serialize to
// text that parses again, and serialization must be stable from the second round on.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = gemma4::json::Parse(text, "fuzz");
  if (!parsed.ok()) {
    if (parsed.status().message().empty()) __builtin_trap();
    return 0;
  }
  // Round 1 may normalize (e.g. "-0.0" -> "-0" -> 0); from round 2 on the text is fixed.
  const std::string s1 = parsed->Serialize();
  auto v2 = gemma4::json::Parse(s1, "round trip 1");
  if (!v2.ok()) __builtin_trap();
  const std::string s2 = v2->Serialize();
  auto v3 = gemma4::json::Parse(s2, "round trip 2");
  if (!v3.ok()) __builtin_trap();
  if (v3->Serialize() != s2) __builtin_trap();
  return 0;
}
