// Tests of base/utf8.h, the one UTF-8 decoder: every well-formed length and its boundaries,
// and every kind of malformed sequence (overlong forms, surrogates, code points past U+10FFFF,
// stray continuation bytes, truncation) with the status and the bytes examined.
#include "base/utf8.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace gemma4::utf8 {
namespace {

Decoded Decode(std::string_view s) { return DecodeAt(s, 0); }

TEST(Utf8Test, DecodesEveryLengthAtItsBoundaries) {
  struct Case {
    std::string_view bytes;
    uint32_t cp;
  };
  const Case cases[] = {
      {std::string_view("\x00", 1), 0x0},
      {"\x7F", 0x7F},
      {"\xC2\x80", 0x80},
      {"\xDF\xBF", 0x7FF},
      {"\xE0\xA0\x80", 0x800},
      {"\xED\x9F\xBF", 0xD7FF},
      {"\xEE\x80\x80", 0xE000},
      {"\xEF\xBF\xBF", 0xFFFF},
      {"\xF0\x90\x80\x80", 0x10000},
      {"\xF4\x8F\xBF\xBF", 0x10FFFF},
  };
  for (const Case& c : cases) {
    const Decoded d = Decode(c.bytes);
    EXPECT_TRUE(d.ok()) << std::hex << c.cp;
    EXPECT_EQ(d.code_point, c.cp);
    EXPECT_EQ(d.length, static_cast<int>(c.bytes.size()));
    EXPECT_EQ(Encode(c.cp), c.bytes) << std::hex << c.cp;
    EXPECT_TRUE(IsValid(c.bytes));
  }
}

TEST(Utf8Test, RoundTripsEveryScalarValue) {
  for (uint32_t cp = 0; cp <= kMaxCodePoint; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const std::string s = Encode(cp);
    const Decoded d = Decode(s);
    ASSERT_TRUE(d.ok()) << std::hex << cp;
    ASSERT_EQ(d.code_point, cp);
    ASSERT_EQ(d.length, static_cast<int>(s.size()));
  }
}

TEST(Utf8Test, RefusesMalformedSequences) {
  struct Case {
    std::string_view bytes;
    DecodeStatus status;
    int length;  // bytes examined
    const char* what;
  };
  const Case cases[] = {
      {"\x80", DecodeStatus::kInvalidLead, 1, "lone continuation byte"},
      {"\xBF", DecodeStatus::kInvalidLead, 1, "lone continuation byte"},
      {"\xC0\x80", DecodeStatus::kInvalidLead, 1, "overlong NUL (C0)"},
      {"\xC1\xBF", DecodeStatus::kInvalidLead, 1, "overlong 2-byte (C1)"},
      {"\xE0\x80\x80", DecodeStatus::kInvalidContinuation, 1, "overlong 3-byte"},
      {"\xE0\x9F\xBF", DecodeStatus::kInvalidContinuation, 1, "overlong U+07FF"},
      {"\xF0\x80\x80\x80", DecodeStatus::kInvalidContinuation, 1, "overlong 4-byte"},
      {"\xF0\x8F\xBF\xBF", DecodeStatus::kInvalidContinuation, 1, "overlong U+FFFF"},
      {"\xED\xA0\x80", DecodeStatus::kInvalidContinuation, 1, "surrogate U+D800"},
      {"\xED\xBF\xBF", DecodeStatus::kInvalidContinuation, 1, "surrogate U+DFFF"},
      {"\xF4\x90\x80\x80", DecodeStatus::kInvalidContinuation, 1, "U+110000"},
      {"\xF5\x80\x80\x80", DecodeStatus::kInvalidLead, 1, "lead past U+10FFFF"},
      {"\xF8\x88\x80\x80\x80", DecodeStatus::kInvalidLead, 1, "5-byte form"},
      {"\xFF", DecodeStatus::kInvalidLead, 1, "FF"},
      {"\xC3\x41", DecodeStatus::kInvalidContinuation, 1, "ASCII after a lead"},
      {"\xE2\x82\x41", DecodeStatus::kInvalidContinuation, 2, "ASCII as third byte"},
      {"\xF0\x9F\x98\xC3", DecodeStatus::kInvalidContinuation, 3, "lead as fourth byte"},
      {"\xC3", DecodeStatus::kTruncated, 1, "2-byte cut after 1"},
      {"\xE2\x82", DecodeStatus::kTruncated, 2, "3-byte cut after 2"},
      {"\xF0\x9F\x98", DecodeStatus::kTruncated, 3, "4-byte cut after 3"},
      {"\xF4\x8F", DecodeStatus::kTruncated, 2, "U+10FFFF cut after 2"},
  };
  for (const Case& c : cases) {
    const Decoded d = Decode(c.bytes);
    EXPECT_EQ(d.status, c.status) << c.what;
    EXPECT_EQ(d.length, c.length) << c.what;
    EXPECT_FALSE(IsValid(c.bytes)) << c.what;
  }
  // A sequence that can never be completed is invalid at once, not truncated.
  EXPECT_EQ(Decode("\xED\xA0").status, DecodeStatus::kInvalidContinuation);
  EXPECT_EQ(Decode("\xF4\x90").status, DecodeStatus::kInvalidContinuation);
  EXPECT_EQ(Decode("\xC0").status, DecodeStatus::kInvalidLead);
}

TEST(Utf8Test, DecodesInsideLongerText) {
  const std::string_view s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";
  size_t i = 0;
  std::u32string cps;
  while (i < s.size()) {
    const Decoded d = DecodeAt(s, i);
    ASSERT_TRUE(d.ok());
    cps.push_back(d.code_point);
    i += d.length;
  }
  EXPECT_EQ(cps, (std::u32string{U'a', 0xE9, 0x20AC, 0x1F600, U'z'}));
  EXPECT_TRUE(IsValid(s));
  EXPECT_FALSE(IsValid(s.substr(0, s.size() - 3)));  // cut inside the emoji
  EXPECT_TRUE(IsValid(""));
}

TEST(Utf8Test, LeadByteClasses) {
  EXPECT_EQ(SequenceLength(0x41), 1);
  EXPECT_EQ(SequenceLength(0xC0), 2);  // by bit pattern; IsLeadByte tells it is never valid
  EXPECT_EQ(SequenceLength(0xEF), 3);
  EXPECT_EQ(SequenceLength(0xF7), 4);
  EXPECT_EQ(SequenceLength(0x80), 1);
  EXPECT_EQ(SequenceLength(0xF8), 1);
  for (int b = 0; b < 256; ++b) {
    const bool lead = IsLeadByte(static_cast<unsigned char>(b));
    EXPECT_EQ(lead, b < 0x80 || (b >= 0xC2 && b <= 0xF4)) << b;
    const ByteRange r = SecondByteRange(static_cast<unsigned char>(b));
    EXPECT_EQ(r.lo <= r.hi, b >= 0xC2 && b <= 0xF4) << b;
  }
}

}  // namespace
}  // namespace gemma4::utf8
