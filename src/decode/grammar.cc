// Grammar = a graph of schema nodes; the matcher state = a small set of frame stacks (one per
// live alternative of anyOf/oneOf/tool name), advanced one byte at a time. Frames are plain
// structs without padding so that copying a state (done per trie edge in FillAllowed) is a
// memcpy of the frames in use and identical alternatives can be merged by memcmp.
//
// Schema compilation (schema -> nodes) lives in grammar_schema.cc; this file holds the node
// graph's matcher and the public entry points.
#include "decode/grammar.h"

#include <algorithm>
#include <cstring>

#include "base/utf8.h"
#include "decode/grammar_internal.h"

namespace gemma4::chat {

using grammar_internal::Frame;
using grammar_internal::Kind;
using grammar_internal::kMaxDepth;
using grammar_internal::Node;
using grammar_internal::Stack;
using grammar_internal::State;
using grammar_internal::Syntax;

namespace grammar_internal {

namespace {

enum class Step { kConsumed, kFinish, kReject, kPushed };

bool IsWs(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool IsDigit(uint8_t c) { return c >= '0' && c <= '9'; }
bool IsNameByte(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '_' || c == '-' ||
         c == '.';
}

constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;
uint64_t HashByte(uint64_t h, uint8_t c) { return (h ^ c) * kFnvPrime; }

// Two bits of a 64-bit Bloom filter per key: a repeated key always finds its bits set; a fresh
// key rarely does (then it is refused, which only narrows the output).
uint64_t BloomBits(uint64_t h) {
  return (uint64_t{1} << (h & 63)) | (uint64_t{1} << ((h >> 6) & 63));
}

__int128 Pow10(int n) {
  __int128 v = 1;
  for (int i = 0; i < n; ++i) v *= 10;
  return v;
}

}  // namespace

uint64_t HashKey(std::string_view key) {
  uint64_t h = kFnvOffset;
  for (unsigned char c : key) h = HashByte(h, c);
  return h;
}

class Machine {
 public:
  explicit Machine(const Grammar& g) : g_(g) {}

  Frame NewFrame(int node) const {
    Frame f{};
    f.node = node;
    const Node& n = g_.nodes[node];
    if (n.kind == Kind::kLiteral) f.hi = static_cast<uint32_t>(n.alts.size());
    if (n.kind == Kind::kString) {
      f.a = kFnvOffset;
      f.dfa = n.dfa >= 0 ? g_.dfas[n.dfa].start : -1;
    }
    if (n.kind == Kind::kName) f.a = kFnvOffset;
    return f;
  }

  bool Fits(const Stack& s, int node) const {
    return s.depth + g_.nodes[node].min_depth <= kMaxDepth;
  }

  // Pushes `node`; an anyOf forks the stack: alternatives beyond the first go to `forks`.
  bool Push(Stack* s, int node, std::vector<Stack>* forks) const {
    const Node& n = g_.nodes[node];
    if (n.kind == Kind::kAnyOf) {
      bool first_ok = false;
      Stack original = *s;
      for (size_t i = 0; i < n.children.size(); ++i) {
        if (!Fits(original, n.children[i])) continue;
        if (!first_ok) {
          first_ok = Push(s, n.children[i], forks);
          if (first_ok) continue;
          *s = original;
        } else {
          Stack copy = original;
          if (Push(&copy, n.children[i], forks)) forks->push_back(copy);
        }
      }
      return first_ok;
    }
    if (s->depth >= kMaxDepth) return false;
    s->frames[s->depth++] = NewFrame(node);
    return true;
  }

  // Feeds byte c to the stack. Returns whether it survives; forks may be added.
  bool Feed(Stack* s, uint8_t c, std::vector<Stack>* forks) const {
    while (s->depth > 0) {
      Frame& f = s->frames[s->depth - 1];
      std::vector<Stack> local_forks;
      const Step step = Advance(&f, c, s, &local_forks);
      for (Stack& fork : local_forks) {
        // A fork was made while pushing: it still has to see c.
        if (Feed(&fork, c, forks)) forks->push_back(fork);
      }
      switch (step) {
        case Step::kConsumed:
          return true;
        case Step::kReject:
          return false;
        case Step::kFinish:
          --s->depth;
          // Hand a finished key's content hash to the object that asked for it.
          if (s->depth > 0) s->frames[s->depth - 1].b = s->frames[s->depth].a;
          break;
        case Step::kPushed:
          if (s->depth == 0) return false;
          break;
      }
    }
    return false;  // everything matched already: nothing more may follow
  }

  bool CanFinish(const Frame& f) const {
    const Node& n = g_.nodes[f.node];
    switch (n.kind) {
      case Kind::kLiteral:
        for (uint32_t i = f.lo; i < f.hi; ++i) {
          if (n.alts[i].size() == f.pos) return true;
        }
        return false;
      case Kind::kString:
        return f.state == string_state::kDone;
      case Kind::kNumber:
      case Kind::kInteger:
        return f.state == number_state::kLeadingZero || f.state == number_state::kIntegerDigits ||
               f.state == number_state::kFraction || f.state == number_state::kExponentDigits;
      case Kind::kBoundedNumber:
        return BoundedCanEnd(n, f);
      case Kind::kName:
        return f.count >= 1;
      case Kind::kSequence:
        return f.pos >= n.children.size();
      default:  // arrays and objects (their done states are equal)
        return f.state == object_state::kDone;
    }
  }

  bool StackCanEnd(const Stack& s) const {
    for (int i = s.depth - 1; i >= 0; --i) {
      if (!CanFinish(s.frames[i])) return false;
    }
    return true;
  }

 private:
  bool Ws(Frame* f, uint8_t c) const {
    if (g_.syntax != Syntax::kJson || !IsWs(c) || f->ws >= g_.options.max_whitespace) return false;
    ++f->ws;
    return true;
  }

  // The object frame below a key (string or name) frame, when the key belongs to one.
  const Frame* KeyOwner(const Stack& s) const {
    if (s.depth < 2) return nullptr;
    const Frame& owner = s.frames[s.depth - 2];
    const Kind k = g_.nodes[owner.node].kind;
    return (k == Kind::kObject || k == Kind::kAnyObject) && owner.state == object_state::kInKey
               ? &owner
               : nullptr;
  }

  // Whether a free-form key with content hash h may be used in `owner` now.
  bool KeyAllowed(const Stack& s, const Frame& owner, uint64_t h) const {
    const Node& n = g_.nodes[owner.node];
    if (n.kind == Kind::kAnyObject) return (owner.a & BloomBits(h)) != BloomBits(h);
    for (size_t i = 0; i < n.props.size(); ++i) {
      if (n.props[i].key_hash == h) {
        // A declared key: unused and its value fits (the value goes one frame above `owner`).
        return !((owner.used >> i) & 1) &&
               (((n.required_mask >> i) & 1) || RoomForOptional(owner, n)) &&
               s.depth - 1 + g_.nodes[n.props[i].node].min_depth <= kMaxDepth;
      }
    }
    return n.additional >= 0 && (owner.a & BloomBits(h)) != BloomBits(h) &&
           RoomForOptional(owner, n) && s.depth - 1 + g_.nodes[n.additional].min_depth <= kMaxDepth;
  }

  Step String(Frame* f, const Node& n, uint8_t c, const Stack& s) const {
    if (f->state == string_state::kDone) return Step::kFinish;
    if (g_.syntax == Syntax::kGemma) {
      const std::string_view delim = kDelim;
      if (f->state == string_state::kOpen) {  // opening delimiter
        if (c != static_cast<uint8_t>(delim[f->pos8])) return Step::kReject;
        if (++f->pos8 == delim.size()) {
          f->state = string_state::kBody;
          f->pos8 = 0;
        }
        return Step::kConsumed;
      }
      // Body. pos8 = bytes of a possible closing delimiter just seen; they count as content
      // only once the delimiter breaks off.
      if (f->utf8 == 0 && c == static_cast<uint8_t>(delim[f->pos8])) {
        if (f->pos8 == delim.size() - 1) {
          if (!CanCloseString(*f, n, s)) return Step::kReject;
          f->state = string_state::kDone;
          return Step::kConsumed;
        }
        // A partial delimiter must lead somewhere: to a close, or to content if it breaks off.
        if (!CanCloseString(*f, n, s)) {
          Frame probe = *f;
          if (!ContentBytes(&probe, n, delim.substr(0, f->pos8 + 1))) return Step::kReject;
        }
        ++f->pos8;
        return Step::kConsumed;
      }
      if (f->pos8 > 0) {
        const uint8_t held = f->pos8;
        f->pos8 = 0;
        if (!ContentBytes(f, n, delim.substr(0, held))) return Step::kReject;
        if (c == static_cast<uint8_t>(delim[0])) {
          if (!CanCloseString(*f, n, s)) {
            Frame probe = *f;
            if (!ContentBytes(&probe, n, delim.substr(0, 1))) return Step::kReject;
          }
          f->pos8 = 1;
          return Step::kConsumed;
        }
      }
      return ContentByte(f, n, c) ? Step::kConsumed : Step::kReject;
    }
    switch (f->state) {
      case string_state::kOpen:
        if (c != '"') return Step::kReject;
        f->state = string_state::kBody;
        return Step::kConsumed;
      case string_state::kBody:
        if (c == '"') {
          if (f->utf8 != 0 || !CanCloseString(*f, n, s)) return Step::kReject;
          f->state = string_state::kDone;
          return Step::kConsumed;
        }
        if (c == '\\') {
          if (f->utf8 != 0 || f->count >= n.max_length) return Step::kReject;
          // Only when some escape can follow (a pattern may allow none of them).
          bool any = n.dfa < 0;
          for (uint8_t decoded : {'"', '\\', '/', '\b', '\f', '\n', '\r', '\t'}) {
            Frame probe = *f;
            any = any || ContentByte(&probe, n, decoded);
          }
          if (!any) return Step::kReject;
          f->state = string_state::kEscape;
          return Step::kConsumed;
        }
        if (c < 0x20) return Step::kReject;
        return ContentByte(f, n, c) ? Step::kConsumed : Step::kReject;
      case string_state::kEscape: {
        if (c == 'u') {
          // \uXXXX would hide the character from patterns and key comparison.
          if (n.dfa >= 0 || n.key_string) return Step::kReject;
          f->state = string_state::kUnicodeEscape;
          f->pos8 = 0;
          return Step::kConsumed;
        }
        uint8_t decoded = 0;
        switch (c) {
          case '"':
          case '\\':
          case '/':
            decoded = c;
            break;
          case 'b':
            decoded = '\b';
            break;
          case 'f':
            decoded = '\f';
            break;
          case 'n':
            decoded = '\n';
            break;
          case 'r':
            decoded = '\r';
            break;
          case 't':
            decoded = '\t';
            break;
          default:
            return Step::kReject;
        }
        if (!ContentByte(f, n, decoded)) return Step::kReject;
        f->state = string_state::kBody;
        return Step::kConsumed;
      }
      case string_state::kUnicodeEscape: {
        const bool hex = IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!hex) return Step::kReject;
        // No UTF-16 surrogates (\uD800-\uDFFF): a lone one is no character and json::Parse
        // refuses it; pairs are not needed, as characters beyond U+FFFF can be written as
        // UTF-8 (the fuzzer found the grammar completing strings the parser then refused).
        const uint8_t digit = static_cast<uint8_t>(IsDigit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
        if (f->pos8 == 0) f->escape_hex = digit;
        if (f->pos8 == 1 && f->escape_hex == 0xD && digit >= 8) return Step::kReject;
        if (++f->pos8 == 4) {
          f->state = string_state::kBody;
          ++f->count;
        }
        return Step::kConsumed;
      }
    }
    return Step::kReject;
  }

  bool CanCloseString(const Frame& f, const Node& n, const Stack& s) const {
    if (f.count < n.min_length) return false;
    if (n.dfa >= 0 && !g_.dfas[n.dfa].accepting[f.dfa]) return false;
    if (n.key_string) {
      const Frame* owner = KeyOwner(s);
      if (owner != nullptr && !KeyAllowed(s, *owner, f.a)) return false;
    }
    return true;
  }

  bool ContentBytes(Frame* f, const Node& n, std::string_view bytes) const {
    for (unsigned char b : bytes) {
      if (!ContentByte(f, n, b)) return false;
    }
    return true;
  }

  // One byte of (decoded) string content: well-formed UTF-8, at most max_length characters,
  // and a live pattern state from which acceptance stays within max_length.
  bool ContentByte(Frame* f, const Node& n, uint8_t c) const {
    if (f->utf8 > 0) {
      if (c < f->next_lo || c > f->next_hi) return false;
    } else {
      if (!utf8::IsLeadByte(c)) return false;
      if (f->count >= n.max_length) return false;
    }
    int32_t next_dfa = -1;
    if (n.dfa >= 0) {
      const ByteDfa& dfa = g_.dfas[n.dfa];
      next_dfa = dfa.Step(f->dfa, c);
      if (next_dfa < 0) return false;
      const uint64_t chars = f->count + (f->utf8 == 0 ? 1 : 0);
      if (chars + dfa.min_chars[next_dfa] > n.max_length) return false;
    }
    if (f->utf8 > 0) {
      --f->utf8;
      f->next_lo = 0x80;
      f->next_hi = 0xBF;
    } else {
      ++f->count;
      f->utf8 = static_cast<uint8_t>(utf8::SequenceLength(c) - 1);
      // No overlong forms, surrogates or code points above U+10FFFF (RFC 3629).
      const utf8::ByteRange next =
          f->utf8 > 0 ? utf8::SecondByteRange(c) : utf8::ByteRange{0x80, 0xBF};
      f->next_lo = next.lo;
      f->next_hi = next.hi;
    }
    f->dfa = next_dfa;
    f->a = HashByte(f->a, c);
    return true;
  }

  // Frame::state: number_state. count = digits in the current part (integer, fraction,
  // exponent).
  Step Number(Frame* f, bool integer, uint8_t c) const {
    constexpr uint32_t kMaxDigits = 18;
    switch (f->state) {
      case number_state::kStart:
        if (c == '-') {
          f->state = number_state::kAfterMinus;
          return Step::kConsumed;
        }
        [[fallthrough]];
      case number_state::kAfterMinus:
        if (c == '0') {
          f->state = number_state::kLeadingZero;
          return Step::kConsumed;
        }
        if (c >= '1' && c <= '9') {
          f->state = number_state::kIntegerDigits;
          f->count = 1;
          return Step::kConsumed;
        }
        return Step::kReject;
      case number_state::kIntegerDigits:
        if (IsDigit(c)) {
          if (++f->count > kMaxDigits) return Step::kReject;
          return Step::kConsumed;
        }
        [[fallthrough]];
      case number_state::kLeadingZero:
        if (!integer && c == '.') {
          f->state = number_state::kAfterPoint;
          f->count = 0;
          return Step::kConsumed;
        }
        if (!integer && (c == 'e' || c == 'E')) {
          f->state = number_state::kAfterE;
          f->count = 0;
          return Step::kConsumed;
        }
        return Step::kFinish;
      case number_state::kAfterPoint:
      case number_state::kFraction:
        if (IsDigit(c)) {
          if (++f->count > kMaxDigits) return Step::kReject;
          f->state = number_state::kFraction;
          return Step::kConsumed;
        }
        if (f->state == number_state::kFraction && (c == 'e' || c == 'E')) {
          f->state = number_state::kAfterE;
          f->count = 0;
          return Step::kConsumed;
        }
        return f->state == number_state::kFraction ? Step::kFinish : Step::kReject;
      case number_state::kAfterE:
        if (c == '+' || c == '-') {
          f->state = number_state::kAfterExponentSign;
          return Step::kConsumed;
        }
        [[fallthrough]];
      case number_state::kAfterExponentSign:
      case number_state::kExponentDigits:
        if (IsDigit(c)) {
          if (++f->count > 2) return Step::kReject;  // |exponent| < 100: stays finite
          f->state = number_state::kExponentDigits;
          return Step::kConsumed;
        }
        return f->state == number_state::kExponentDigits ? Step::kFinish : Step::kReject;
    }
    return Step::kReject;
  }

  // Bounded numbers: value = sign * (p + f / 10^nf), the magnitude scaled by 10^frac_digits must
  // lie in [lo, hi] of the sign's range. A digit is allowed only when some completion does.
  // Frame: flags bit 0 = negative; a = integer part p; count = its digits; b = fraction f;
  // pos = fraction digits nf; state: bounded_state.
  static bool Overlaps(__int128 lo, __int128 hi, __int128 range_lo, __int128 range_hi) {
    return lo <= range_hi && hi >= range_lo;
  }

  bool BoundedFeasible(const Node& n, bool negative, uint64_t p, uint32_t k, bool fraction,
                       uint64_t f, uint32_t nf) const {
    const __int128 lo = negative ? n.neg_lo : n.pos_lo;
    const __int128 hi = negative ? n.neg_hi : n.pos_hi;
    if (lo > hi) return false;
    const __int128 scale = Pow10(n.frac_digits);
    if (fraction) {
      const __int128 unit = Pow10(n.frac_digits - static_cast<int>(nf));
      const __int128 v = static_cast<__int128>(p) * scale + static_cast<__int128>(f) * unit;
      return Overlaps(v, v + unit - 1, lo, hi);
    }
    if (k == 0) return true;
    if (p == 0) return Overlaps(0, scale - 1, lo, hi);
    __int128 block = 1;
    for (uint32_t j = 0; k + j <= kMaxIntegerDigits; ++j, block *= 10) {
      const __int128 start = static_cast<__int128>(p) * block * scale;
      const __int128 end = (static_cast<__int128>(p) + 1) * block * scale - 1;
      if (start > hi) break;
      if (Overlaps(start, end, lo, hi)) return true;
    }
    return false;
  }

  bool BoundedCanEnd(const Node& n, const Frame& f) const {
    const bool negative = f.flags & 1;
    const __int128 lo = negative ? n.neg_lo : n.pos_lo;
    const __int128 hi = negative ? n.neg_hi : n.pos_hi;
    const __int128 scale = Pow10(n.frac_digits);
    if (f.state == bounded_state::kIntegerDigits) {
      const __int128 v = static_cast<__int128>(f.a) * scale;
      return v >= lo && v <= hi;
    }
    if (f.state == bounded_state::kFraction) {
      const __int128 v =
          static_cast<__int128>(f.a) * scale +
          static_cast<__int128>(f.b) * Pow10(n.frac_digits - static_cast<int>(f.pos));
      return v >= lo && v <= hi;
    }
    return false;
  }

  Step BoundedNumber(Frame* f, const Node& n, uint8_t c) const {
    const bool negative = f->flags & 1;
    switch (f->state) {
      case bounded_state::kStart:
        if (c == '-') {
          if (!BoundedFeasible(n, true, 0, 0, false, 0, 0)) return Step::kReject;
          f->flags |= 1;
          f->state = bounded_state::kAfterMinus;
          return Step::kConsumed;
        }
        [[fallthrough]];
      case bounded_state::kAfterMinus:
        if (!IsDigit(c) || !BoundedFeasible(n, negative, c - '0', 1, false, 0, 0)) {
          return Step::kReject;
        }
        f->a = c - '0';
        f->count = 1;
        f->state = bounded_state::kIntegerDigits;
        return Step::kConsumed;
      case bounded_state::kIntegerDigits:
        if (IsDigit(c) && f->a != 0 && f->count < kMaxIntegerDigits &&
            BoundedFeasible(n, negative, f->a * 10 + (c - '0'), f->count + 1, false, 0, 0)) {
          f->a = f->a * 10 + (c - '0');
          ++f->count;
          return Step::kConsumed;
        }
        if (c == '.' && n.frac_digits > 0 && BoundedFeasible(n, negative, f->a, 0, true, 0, 0)) {
          f->state = bounded_state::kAfterPoint;
          return Step::kConsumed;
        }
        return BoundedCanEnd(n, *f) ? Step::kFinish : Step::kReject;
      case bounded_state::kAfterPoint:
      case bounded_state::kFraction:
        if (IsDigit(c) && f->pos < static_cast<uint32_t>(n.frac_digits) &&
            BoundedFeasible(n, negative, f->a, 0, true, f->b * 10 + (c - '0'), f->pos + 1)) {
          f->b = f->b * 10 + (c - '0');
          ++f->pos;
          f->state = bounded_state::kFraction;
          return Step::kConsumed;
        }
        if (f->state == bounded_state::kAfterPoint) return Step::kReject;
        return BoundedCanEnd(n, *f) ? Step::kFinish : Step::kReject;
    }
    return Step::kReject;
  }

  Step Literal(Frame* f, const Node& n, uint8_t c) const {
    // Alternatives are sorted, so the ones sharing the matched prefix form a range; within it,
    // those long enough are sorted by their byte at `pos`.
    const uint32_t pos = f->pos;
    auto first = n.alts.begin() + f->lo;
    auto last = n.alts.begin() + f->hi;
    auto lower = std::partition_point(first, last, [&](const std::string& a) {
      return a.size() <= pos || static_cast<uint8_t>(a[pos]) < c;
    });
    auto upper = std::partition_point(lower, last, [&](const std::string& a) {
      return a.size() > pos && static_cast<uint8_t>(a[pos]) == c;
    });
    if (upper > lower) {
      f->lo = static_cast<uint32_t>(lower - n.alts.begin());
      f->hi = static_cast<uint32_t>(upper - n.alts.begin());
      ++f->pos;
      return Step::kConsumed;
    }
    return CanFinish(*f) ? Step::kFinish : Step::kReject;
  }

  // Whether one more property that is not required still leaves room (maxProperties) for the
  // required ones not yet present.
  bool RoomForOptional(const Frame& f, const Node& n) const {
    const uint64_t missing = __builtin_popcountll(n.required_mask & ~f.used);
    return PropertyCount(f) + 1 + missing <= n.max_props;
  }

  bool PropAvailable(const Stack& s, const Frame& f, const Node& n, size_t i) const {
    if ((f.used >> i) & 1) return false;
    if (!((n.required_mask >> i) & 1) && !RoomForOptional(f, n)) return false;
    return Fits(s, n.props[i].node);
  }

  // Object key matching against the sorted declared key texts, skipping unavailable ones.
  // Returns the completed property index, -1 while matching, -2 on reject.
  int Key(Frame* f, const Node& n, uint8_t c, bool* consumed, const Stack& s) const {
    *consumed = false;
    const uint32_t lo = f->lo, hi = f->hi;
    int new_lo = -1, new_hi = -1;
    bool any_available = false;
    for (uint32_t i = lo; i < hi; ++i) {
      const std::string& k = n.props[i].key_text;
      if (k.size() > f->pos && static_cast<uint8_t>(k[f->pos]) == c) {
        if (new_lo < 0) new_lo = static_cast<int>(i);
        new_hi = static_cast<int>(i) + 1;
        any_available = any_available || PropAvailable(s, *f, n, i);
      }
    }
    if (any_available) {
      f->lo = static_cast<uint32_t>(new_lo);
      f->hi = static_cast<uint32_t>(new_hi);
      ++f->pos;
      *consumed = true;
      return -1;
    }
    for (uint32_t i = lo; i < hi; ++i) {
      if (n.props[i].key_text.size() == f->pos && PropAvailable(s, *f, n, i)) {
        return static_cast<int>(i);
      }
    }
    return -2;
  }

  uint64_t PropertyCount(const Frame& f) const {
    return static_cast<uint64_t>(__builtin_popcountll(f.used)) + f.extra;
  }

  bool ObjectCanClose(const Frame& f, const Node& n) const {
    return (f.used & n.required_mask) == n.required_mask && PropertyCount(f) >= n.min_props;
  }

  // Whether another key can follow (after '{' or ',').
  bool ObjectMoreKeys(const Stack& s, const Frame& f, const Node& n) const {
    if (PropertyCount(f) >= n.max_props) return false;
    if (n.additional >= 0 && Fits(s, n.additional) && RoomForOptional(f, n)) return true;
    for (size_t i = 0; i < n.props.size(); ++i) {
      if (PropAvailable(s, f, n, i)) return true;
    }
    return false;
  }

  int KeyNode() const { return g_.key; }

  Step Object(Frame* f, const Node& n, uint8_t c, Stack* s, std::vector<Stack>* forks) const {
    switch (f->state) {
      case object_state::kOpen:
        if (c != '{') return Step::kReject;
        f->state = object_state::kAfterBrace;
        return Step::kConsumed;
      case object_state::kAfterBrace:
      case object_state::kAfterComma:
        if (Ws(f, c)) return Step::kConsumed;
        f->ws = 0;
        if (f->state == object_state::kAfterBrace && c == '}' && ObjectCanClose(*f, n)) {
          f->state = object_state::kDone;
          return Step::kConsumed;
        }
        if (!ObjectMoreKeys(*s, *f, n)) return Step::kReject;
        if (n.additional >= 0 && Fits(*s, n.additional) && RoomForOptional(*f, n)) {
          // Free-form keys: a key string checked against the object when it closes. (When only
          // declared keys remain possible, they are matched below instead.)
          f->state = object_state::kInKey;
          return Push(s, KeyNode(), forks) ? Step::kPushed : Step::kReject;
        }
        f->state = object_state::kDeclaredKey;
        f->lo = 0;
        f->hi = static_cast<uint32_t>(n.props.size());
        f->pos = 0;
        [[fallthrough]];
      case object_state::kDeclaredKey: {
        bool consumed = false;
        const int done = Key(f, n, c, &consumed, *s);
        if (consumed) return Step::kConsumed;
        if (done < 0) return Step::kReject;
        f->used |= uint64_t{1} << done;
        f->count = static_cast<uint32_t>(done);
        f->state = object_state::kBeforeColon;
        [[fallthrough]];
      }
      case object_state::kBeforeColon:
        if (Ws(f, c)) return Step::kConsumed;
        f->ws = 0;
        if (c != ':') return Step::kReject;
        f->state = object_state::kBeforeValue;
        return Step::kConsumed;
      case object_state::kBeforeValue: {
        if (Ws(f, c)) return Step::kConsumed;
        f->ws = 0;
        f->state = object_state::kAfterValue;
        const int value = f->count == kAdditional ? n.additional : n.props[f->count].node;
        return Push(s, value, forks) ? Step::kPushed : Step::kReject;
      }
      case object_state::kAfterValue:
        if (Ws(f, c)) return Step::kConsumed;
        f->ws = 0;
        if (c == ',' && ObjectMoreKeys(*s, *f, n)) {
          f->state = object_state::kAfterComma;
          return Step::kConsumed;
        }
        if (c == '}' && ObjectCanClose(*f, n)) {
          f->state = object_state::kDone;
          return Step::kConsumed;
        }
        return Step::kReject;
      case object_state::kInKey: {
        // The key (hash in b) has just closed: record it.
        f->count = kAdditional;
        for (size_t i = 0; i < n.props.size(); ++i) {
          if (n.props[i].key_hash == f->b) {
            f->used |= uint64_t{1} << i;
            f->count = static_cast<uint32_t>(i);
            break;
          }
        }
        if (f->count == kAdditional) {
          f->a |= BloomBits(f->b);
          ++f->extra;
        }
        f->state = object_state::kBeforeColon;
        return Object(f, n, c, s, forks);
      }
      default:
        return Step::kFinish;
    }
  }

  Step Advance(Frame* f, uint8_t c, Stack* s, std::vector<Stack>* forks) const {
    const Node& n = g_.nodes[f->node];
    switch (n.kind) {
      case Kind::kLiteral:
        return Literal(f, n, c);
      case Kind::kString:
        return String(f, n, c, *s);
      case Kind::kNumber:
        return Number(f, false, c);
      case Kind::kInteger:
        return Number(f, true, c);
      case Kind::kBoundedNumber:
        return BoundedNumber(f, n, c);
      case Kind::kName: {
        if (IsNameByte(c) && f->count < 64) {
          ++f->count;
          f->a = HashByte(f->a, c);
          return Step::kConsumed;
        }
        if (f->count == 0) return Step::kReject;
        const Frame* owner = KeyOwner(*s);
        if (owner != nullptr && !KeyAllowed(*s, *owner, f->a)) return Step::kReject;
        return Step::kFinish;
      }
      case Kind::kSequence:
        if (f->pos >= n.children.size()) return Step::kFinish;
        ++f->pos;
        return Push(s, n.children[f->pos - 1], forks) ? Step::kPushed : Step::kReject;
      case Kind::kAnyValue: {
        const int d = n.depth;
        int next = -1;
        if (c == '"' && g_.syntax == Syntax::kJson) {
          next = g_.any_string;
        } else if (c == '<' && g_.syntax == Syntax::kGemma) {
          next = g_.any_string;
        } else if (c == '-' || IsDigit(c)) {
          next = g_.any_number;
        } else if (c == 't' || c == 'f' || c == 'n' || (c == 'N' && g_.syntax == Syntax::kGemma)) {
          next = g_.any_literal;
        } else if (c == '[' && d + 1 < static_cast<int>(g_.any_value.size())) {
          next = g_.any_array[d];
        } else if (c == '{' && d + 1 < static_cast<int>(g_.any_value.size())) {
          next = g_.any_object[d];
        }
        if (next < 0) return Step::kReject;
        // Replace this frame by the concrete one.
        --s->depth;
        return Push(s, next, forks) ? Step::kPushed : Step::kReject;
      }
      case Kind::kArray:
      case Kind::kAnyArray: {
        const bool typed = n.kind == Kind::kArray;
        const uint64_t min_items = typed ? n.min_items : 0;
        const uint64_t max_items = typed ? n.max_items : 64;
        // The node of item number `i` (0-based), -1 if none may come.
        auto item_node = [&](uint64_t i) -> int {
          if (!typed) return g_.any_value[n.depth + 1];
          if (i < n.prefix.size()) return n.prefix[i];
          return n.child;
        };
        auto can_add = [&]() {
          if (f->count >= max_items) return false;
          const int item = item_node(f->count);
          return item >= 0 && Fits(*s, item);
        };
        switch (f->state) {
          case array_state::kOpen:
            if (c != '[') return Step::kReject;
            f->state = array_state::kAfterBracket;
            return Step::kConsumed;
          case array_state::kAfterBracket:
          case array_state::kAfterComma:
            if (Ws(f, c)) return Step::kConsumed;
            if (f->state == array_state::kAfterBracket && c == ']' && min_items == 0) {
              f->state = array_state::kDone;
              return Step::kConsumed;
            }
            if (!can_add()) return Step::kReject;
            f->ws = 0;
            f->state = array_state::kAfterItem;
            ++f->count;
            return Push(s, item_node(f->count - 1), forks) ? Step::kPushed : Step::kReject;
          case array_state::kAfterItem:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            if (c == ',' && can_add()) {
              f->state = array_state::kAfterComma;
              return Step::kConsumed;
            }
            if (c == ']' && f->count >= min_items) {
              f->state = array_state::kDone;
              return Step::kConsumed;
            }
            return Step::kReject;
          default:
            return Step::kFinish;
        }
      }
      case Kind::kObject:
        return Object(f, n, c, s, forks);
      case Kind::kAnyObject: {
        switch (f->state) {
          case object_state::kOpen:
            if (c != '{') return Step::kReject;
            f->state = object_state::kAfterBrace;
            return Step::kConsumed;
          case object_state::kAfterBrace:
          case object_state::kAfterComma:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            if (f->state == object_state::kAfterBrace && c == '}') {
              f->state = object_state::kDone;
              return Step::kConsumed;
            }
            if (f->extra >= 64) return Step::kReject;
            f->state = object_state::kInKey;
            return Push(s, KeyNode(), forks) ? Step::kPushed : Step::kReject;
          case object_state::kInKey:
            f->a |= BloomBits(f->b);
            ++f->extra;
            f->state = object_state::kBeforeColon;
            [[fallthrough]];
          case object_state::kBeforeColon:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            if (c != ':') return Step::kReject;
            f->state = object_state::kBeforeValue;
            return Step::kConsumed;
          case object_state::kBeforeValue:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            f->state = object_state::kAfterValue;
            return Push(s, g_.any_value[n.depth + 1], forks) ? Step::kPushed : Step::kReject;
          case object_state::kAfterValue:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            if (c == ',' && f->extra < 64) {
              f->state = object_state::kAfterComma;
              return Step::kConsumed;
            }
            if (c == '}') {
              f->state = object_state::kDone;
              return Step::kConsumed;
            }
            return Step::kReject;
          default:
            return Step::kFinish;
        }
      }
      case Kind::kAnyOf:
        return Step::kReject;  // expanded by Push, never on a stack
    }
    return Step::kReject;
  }

  const Grammar& g_;
};

bool SameStack(const Stack& a, const Stack& b) {
  return a.depth == b.depth &&
         std::memcmp(a.frames, b.frames, sizeof(Frame) * static_cast<size_t>(a.depth)) == 0;
}

// Advances every alternative stack over one byte into `out`; false if none survives.
bool FeedState(const Grammar& g, const State& in, uint8_t c, State* out) {
  Machine m(g);
  out->stacks.clear();
  std::vector<Stack> forks;
  for (const Stack& s : in.stacks) {
    out->stacks.push_back(s);
    forks.clear();
    if (!m.Feed(&out->stacks.back(), c, &forks)) out->stacks.pop_back();
    for (Stack& f : forks) out->stacks.push_back(f);
  }
  if (out->stacks.size() > 1) {
    // Alternatives that converged (anyOf branches accepting the same text) are merged, so the
    // set stays small however many branches an anyOf has.
    size_t kept = 0;
    for (size_t i = 0; i < out->stacks.size(); ++i) {
      bool duplicate = false;
      for (size_t j = 0; j < kept && !duplicate; ++j) {
        duplicate = SameStack(out->stacks[i], out->stacks[j]);
      }
      if (!duplicate) {
        if (kept != i) out->stacks[kept] = out->stacks[i];
        ++kept;
      }
    }
    out->stacks.resize(kept);
  }
  return !out->stacks.empty();
}

bool StackAccepts(const Grammar& g, int node, std::string_view text) {
  Machine m(g);
  State state;
  Stack s;
  std::vector<Stack> forks;
  if (m.Push(&s, node, &forks)) state.stacks.push_back(s);
  for (Stack& f : forks) state.stacks.push_back(f);
  State next;
  for (unsigned char c : text) {
    if (!FeedState(g, state, c, &next)) return false;
    std::swap(state, next);
  }
  for (const Stack& st : state.stacks) {
    if (m.StackCanEnd(st)) return true;
  }
  return false;
}

}  // namespace grammar_internal

using grammar_internal::FeedState;
using grammar_internal::Machine;

// ---------------------------------------------------------------------------------------------

VocabIndex::VocabIndex(std::vector<std::string> token_texts) : num_tokens_(token_texts.size()) {
  // Ids sorted by text (then id). In that order the trie's nodes are created in preorder with
  // each node's children in byte order, and the node of a text's first d bytes already exists
  // exactly when the previous text shares those d bytes: the build needs no per-node child map
  // (a std::map per node cost ~100 MB of transient heap and 1.5 s for Gemma 4's 262144 tokens),
  // only a parent and a byte per node, and the edges are grouped by parent in one counting pass.
  std::vector<int32_t> order;
  for (size_t i = 0; i < token_texts.size(); ++i) {
    if (!token_texts[i].empty()) order.push_back(static_cast<int32_t>(i));
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return token_texts[a] != token_texts[b] ? token_texts[a] < token_texts[b] : a < b;
  });
  next_token_.assign(token_texts.size(), -1);
  // Per node [nodes]: its parent, the byte on the edge into it, the first and last token whose
  // text ends there. Node 0 is the root.
  std::vector<uint32_t> parent(1, 0);
  std::vector<uint8_t> byte_into(1, 0);
  std::vector<int32_t> first_token(1, -1), last_token(1, -1);
  std::vector<uint32_t> path(1, 0);  // path[d]: the node of the current text's first d bytes
  std::string_view previous;
  for (int32_t id : order) {
    const std::string_view text = token_texts[id];
    max_token_length_ = std::max(max_token_length_, text.size());
    size_t shared = 0;
    const size_t limit = std::min(previous.size(), text.size());
    while (shared < limit && previous[shared] == text[shared]) ++shared;
    path.resize(shared + 1);
    for (size_t d = shared; d < text.size(); ++d) {
      path.push_back(static_cast<uint32_t>(parent.size()));
      parent.push_back(path[d]);
      byte_into.push_back(static_cast<uint8_t>(text[d]));
      first_token.push_back(-1);
      last_token.push_back(-1);
    }
    const uint32_t node = path[text.size()];
    if (first_token[node] < 0) {
      first_token[node] = id;
    } else {
      next_token_[last_token[node]] = id;
    }
    last_token[node] = id;
    previous = text;
  }
  const size_t num_nodes = parent.size();
  nodes_.resize(num_nodes);
  for (size_t child = 1; child < num_nodes; ++child) ++nodes_[parent[child]].num_edges;
  uint32_t next_edge = 0;
  for (size_t i = 0; i < num_nodes; ++i) {
    nodes_[i].first_edge = next_edge;
    nodes_[i].first_token = first_token[i];
    next_edge += nodes_[i].num_edges;
  }
  // Children in preorder: each parent's edges fill in byte order.
  edges_.resize(num_nodes - 1);
  std::vector<uint32_t> filled(num_nodes, 0);
  for (size_t child = 1; child < num_nodes; ++child) {
    const uint32_t p = parent[child];
    edges_[nodes_[p].first_edge + filled[p]++] = {byte_into[child], static_cast<uint32_t>(child)};
  }
}

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar)
    : grammar_(std::move(grammar)), state_(std::make_unique<State>()) {
  Machine m(*grammar_);
  Stack s;
  std::vector<Stack> forks;
  if (m.Push(&s, grammar_->root, &forks)) state_->stacks.push_back(s);
  for (Stack& f : forks) state_->stacks.push_back(f);
}

GrammarMatcher::~GrammarMatcher() = default;
GrammarMatcher::GrammarMatcher(const GrammarMatcher& other)
    : grammar_(other.grammar_), state_(std::make_unique<State>(*other.state_)) {}
GrammarMatcher& GrammarMatcher::operator=(const GrammarMatcher& other) {
  if (this != &other) {
    grammar_ = other.grammar_;
    state_ = std::make_unique<State>(*other.state_);
  }
  return *this;
}

bool GrammarMatcher::Accept(std::string_view text) {
  State current = *state_, next;
  for (unsigned char c : text) {
    if (!FeedState(*grammar_, current, c, &next)) return false;
    std::swap(current, next);
  }
  *state_ = std::move(current);
  return true;
}

bool GrammarMatcher::CanAccept(std::string_view text) const {
  State current = *state_, next;
  for (unsigned char c : text) {
    if (!FeedState(*grammar_, current, c, &next)) return false;
    std::swap(current, next);
  }
  return true;
}

bool GrammarMatcher::CanEnd() const {
  Machine m(*grammar_);
  for (const Stack& s : state_->stacks) {
    if (m.StackCanEnd(s)) return true;
  }
  return false;
}

bool GrammarMatcher::IsComplete() const {
  if (!CanEnd()) return false;
  State probe;
  for (int c = 0; c < 256; ++c) {
    if (FeedState(*grammar_, *state_, static_cast<uint8_t>(c), &probe)) return false;
  }
  return true;
}

void GrammarMatcher::FillAllowed(const VocabIndex& vocab, std::vector<bool>* allowed) const {
  allowed->assign(vocab.size(), false);
  if (vocab.nodes_.empty()) return;
  // Depth-first over the trie, pruning a subtree as soon as its prefix is rejected. Each trie
  // depth has its own state buffer, reused across siblings (no allocation once warm).
  std::vector<State> level_states(vocab.max_token_length_ + 2);
  level_states[0] = *state_;
  auto visit = [&](auto&& self, uint32_t node_index, size_t level) -> void {
    const VocabIndex::Node& node = vocab.nodes_[node_index];
    for (uint32_t e = 0; e < node.num_edges; ++e) {
      const VocabIndex::Edge& edge = vocab.edges_[node.first_edge + e];
      if (!FeedState(*grammar_, level_states[level], edge.byte, &level_states[level + 1])) {
        continue;
      }
      const VocabIndex::Node& child = vocab.nodes_[edge.child];
      for (int32_t t = child.first_token; t >= 0; t = vocab.next_token_[t]) (*allowed)[t] = true;
      if (child.num_edges > 0) self(self, edge.child, level + 1);
    }
  };
  visit(visit, 0, 0);
}

}  // namespace gemma4::chat
