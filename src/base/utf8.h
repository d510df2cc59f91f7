// UTF-8 (RFC 3629), the one decoder and encoder every layer uses: the JSON parser, the
// tokenizer and its streaming detokenizer, the chat template's str.strip(), the regex compiler
// and the grammar matcher. Well-formed means no overlong form, no UTF-16 surrogate
// (U+D800..U+DFFF) and nothing past U+10FFFF; each check is made on the byte where it first shows,
// so a sequence cut short is told apart from one that can never become valid.
#ifndef GEMMA4_SRC_BASE_UTF8_H_
#define GEMMA4_SRC_BASE_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gemma4::utf8 {

inline constexpr uint32_t kMaxCodePoint = 0x10FFFF;
inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// Bytes in the sequence that `lead` announces by its bit pattern alone: 1 for ASCII, 2, 3 or 4
// for 110xxxxx, 1110xxxx, 11110xxx, and 1 for any other byte (so that lenient scanning of
// malformed text still advances).
constexpr int SequenceLength(unsigned char lead) {
  return lead < 0x80           ? 1
         : (lead >> 5) == 0x6  ? 2
         : (lead >> 4) == 0xE  ? 3
         : (lead >> 3) == 0x1E ? 4
                               : 1;
}

constexpr bool IsContinuationByte(unsigned char b) { return (b & 0xC0) == 0x80; }

// Whether `b` can start a well-formed sequence: ASCII or C2..F4 (C0 and C1 only start overlong
// forms, F5..FF only code points past U+10FFFF).
constexpr bool IsLeadByte(unsigned char b) { return b < 0x80 || (b >= 0xC2 && b <= 0xF4); }

// The bytes allowed right after a multi-byte lead (RFC 3629's table): 80..BF, narrowed after
// E0 (no overlong 3-byte form), ED (no surrogate), F0 (no overlong 4-byte form) and F4 (nothing
// past U+10FFFF). Every later continuation byte is 80..BF. Empty (lo > hi) after a byte that
// is not a multi-byte lead.
struct ByteRange {
  unsigned char lo, hi;
};
constexpr ByteRange SecondByteRange(unsigned char lead) {
  if (lead < 0xC2 || lead > 0xF4) return {0x80, 0x7F};
  if (lead == 0xE0) return {0xA0, 0xBF};
  if (lead == 0xED) return {0x80, 0x9F};
  if (lead == 0xF0) return {0x90, 0xBF};
  if (lead == 0xF4) return {0x80, 0x8F};
  return {0x80, 0xBF};
}

enum class DecodeStatus {
  kOk,
  kInvalidLead,          // the first byte cannot start a well-formed sequence
  kInvalidContinuation,  // a later byte is not the continuation this sequence needs
  kTruncated,            // the text ends inside a sequence that was well-formed so far
};

struct Decoded {
  uint32_t code_point = 0;  // valid when status is kOk
  int length = 1;           // kOk: bytes of the sequence; else the bytes examined before failing
  DecodeStatus status = DecodeStatus::kOk;
  bool ok() const { return status == DecodeStatus::kOk; }
};

// Decodes the code point starting at s[i] (i < s.size()).
constexpr Decoded DecodeAt(std::string_view s, size_t i) {
  const unsigned char lead = static_cast<unsigned char>(s[i]);
  if (lead < 0x80) return {lead, 1, DecodeStatus::kOk};
  if (!IsLeadByte(lead)) return {0, 1, DecodeStatus::kInvalidLead};
  const int n = SequenceLength(lead);
  uint32_t cp = lead & (0x7Fu >> n);
  for (int k = 1; k < n; ++k) {
    if (i + k >= s.size()) return {0, k, DecodeStatus::kTruncated};
    const unsigned char b = static_cast<unsigned char>(s[i + k]);
    const ByteRange allowed = k == 1 ? SecondByteRange(lead) : ByteRange{0x80, 0xBF};
    if (b < allowed.lo || b > allowed.hi) return {0, k, DecodeStatus::kInvalidContinuation};
    cp = (cp << 6) | (b & 0x3Fu);
  }
  return {cp, n, DecodeStatus::kOk};
}

// Whether the whole of `s` is well-formed UTF-8 (Rust's String::from_utf8 check).
constexpr bool IsValid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const Decoded d = DecodeAt(s, i);
    if (!d.ok()) return false;
    i += static_cast<size_t>(d.length);
  }
  return true;
}

// Appends the encoding of `cp`, which must be a Unicode scalar value (at most U+10FFFF, not a
// surrogate); the caller checks.
inline void Append(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

inline std::string Encode(uint32_t cp) {
  std::string s;
  Append(cp, &s);
  return s;
}

}  // namespace gemma4::utf8

#endif  // GEMMA4_SRC_BASE_UTF8_H_
