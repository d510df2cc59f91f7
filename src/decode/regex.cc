// Pattern -> syntax tree -> Thompson NFA -> DFA by subset construction, then pruned to the
// states that can still accept. Bytes that never appear in string content (raw control
// characters other than \b \t \n \f \r, and bytes that are never valid UTF-8) get no transition.
#include "decode/regex.h"

#include <algorithm>
#include <bitset>
#include <cstdlib>
#include <deque>
#include <map>
#include <string>
#include <unordered_set>

#include "base/utf8.h"

namespace gemma4::chat {
namespace {

constexpr int kMaxNfaStates = 200000;
// Most NFA states the subset construction may scan and collect (under a second at worst); the
// built-in formats take under 20,000, real patterns alike.
constexpr size_t kMaxSubsetWork = size_t{4} << 20;

using ByteSet = std::bitset<256>;

bool ContentByte(int b) {
  if (b < 0x20) return b == 0x08 || b == 0x09 || b == 0x0A || b == 0x0C || b == 0x0D;
  // Any byte well-formed UTF-8 may hold (the string matcher checks the sequences).
  return utf8::IsLeadByte(static_cast<unsigned char>(b)) ||
         utf8::IsContinuationByte(static_cast<unsigned char>(b));
}

struct Re {
  enum Kind { kSet, kSeq, kAlt, kRepeat } kind = kSeq;
  ByteSet set;
  std::vector<Re> kids;
  int min = 0, max = 0;  // kRepeat; max -1 = unbounded
};

Re SetOf(const ByteSet& s) {
  Re r;
  r.kind = Re::kSet;
  r.set = s;
  return r;
}

Re Range(int lo, int hi) {
  ByteSet s;
  for (int b = lo; b <= hi; ++b) s.set(b);
  return SetOf(s);
}

// Any well-formed multi-byte UTF-8 character (the string matcher checks the finer ranges).
Re AnyMultibyte() {
  Re alt;
  alt.kind = Re::kAlt;
  for (int n = 1; n <= 3; ++n) {
    Re seq;
    seq.kind = Re::kSeq;
    seq.kids.push_back(n == 1 ? Range(0xC2, 0xDF) : n == 2 ? Range(0xE0, 0xEF) : Range(0xF0, 0xF4));
    for (int i = 0; i < n; ++i) seq.kids.push_back(Range(0x80, 0xBF));
    alt.kids.push_back(std::move(seq));
  }
  return alt;
}

Re Utf8Literal(uint32_t cp) {
  const std::string bytes = utf8::Encode(cp);
  Re seq;
  seq.kind = Re::kSeq;
  for (unsigned char c : bytes) {
    ByteSet s;
    s.set(c);
    seq.kids.push_back(SetOf(s));
  }
  return seq.kids.size() == 1 ? seq.kids[0] : seq;
}

class Parser {
 public:
  explicit Parser(std::string_view p) : p_(p) {}

  StatusOr<Re> ParseAll() {
    // Top-level alternatives carry their own ^ and $ anchors.
    std::vector<std::string_view> alts;
    GEMMA4_RETURN_IF_ERROR(SplitTopLevel(&alts));
    Re alt;
    alt.kind = Re::kAlt;
    // An alternative spelled like an earlier one adds nothing to the language, but would add
    // a copy of its automaton (with its .* loops) to every subset: skip it.
    std::vector<std::string_view> seen;
    for (std::string_view a : alts) {
      if (std::find(seen.begin(), seen.end(), a) != seen.end()) continue;
      seen.push_back(a);
      const bool anchored_start = !a.empty() && a.front() == '^';
      if (anchored_start) a.remove_prefix(1);
      bool anchored_end = false;
      if (!a.empty() && a.back() == '$') {
        size_t backslashes = 0;
        for (size_t i = a.size() - 1; i > 0 && a[i - 1] == '\\'; --i) ++backslashes;
        if (backslashes % 2 == 0) {
          anchored_end = true;
          a.remove_suffix(1);
        }
      }
      Parser inner(a);
      inner.offset_ = static_cast<size_t>(a.data() - p_.data());
      GEMMA4_ASSIGN_OR_RETURN(Re body, inner.ParseAlt());
      if (inner.pos_ != a.size()) return inner.Error("unbalanced ')'");
      Re seq;
      seq.kind = Re::kSeq;
      if (!anchored_start) seq.kids.push_back(AnyStar());
      seq.kids.push_back(std::move(body));
      if (!anchored_end) seq.kids.push_back(AnyStar());
      alt.kids.push_back(std::move(seq));
    }
    return alt;
  }

 private:
  static Re AnyStar() {
    ByteSet all;
    all.set();
    Re r;
    r.kind = Re::kRepeat;
    r.min = 0;
    r.max = -1;
    r.kids.push_back(SetOf(all));
    return r;
  }

  Status Error(const std::string& what) const {
    return InvalidArgumentError("pattern \"" + std::string(p_) + "\": " + what + " at offset " +
                                std::to_string(offset_ + pos_));
  }

  Status SplitTopLevel(std::vector<std::string_view>* out) {
    int depth = 0;
    bool in_class = false;
    size_t start = 0;
    for (size_t i = 0; i < p_.size(); ++i) {
      const char c = p_[i];
      if (c == '\\') {
        ++i;
        continue;
      }
      if (in_class) {
        if (c == ']') in_class = false;
        continue;
      }
      if (c == '[') {
        in_class = true;
      } else if (c == '(') {
        ++depth;
      } else if (c == ')') {
        --depth;
      } else if (c == '|' && depth == 0) {
        out->push_back(p_.substr(start, i - start));
        start = i + 1;
      }
    }
    out->push_back(p_.substr(start));
    return OkStatus();
  }

  bool AtEnd() const { return pos_ >= p_.size(); }
  char Peek() const { return p_[pos_]; }

  StatusOr<Re> ParseAlt() {
    Re alt;
    alt.kind = Re::kAlt;
    std::vector<std::string_view> spelled;  // each kept alternative's text
    while (true) {
      const size_t begin = pos_;
      GEMMA4_ASSIGN_OR_RETURN(Re seq, ParseSeq());
      const std::string_view text = p_.substr(begin, pos_ - begin);
      // The same text again is the same language (see ParseAll).
      if (std::find(spelled.begin(), spelled.end(), text) == spelled.end()) {
        spelled.push_back(text);
        alt.kids.push_back(std::move(seq));
      }
      if (AtEnd() || Peek() != '|') break;
      ++pos_;
    }
    return alt.kids.size() == 1 ? alt.kids[0] : alt;
  }

  StatusOr<Re> ParseSeq() {
    Re seq;
    seq.kind = Re::kSeq;
    while (!AtEnd() && Peek() != '|' && Peek() != ')') {
      GEMMA4_ASSIGN_OR_RETURN(Re atom, ParseAtom());
      GEMMA4_ASSIGN_OR_RETURN(atom, ParseQuantifiers(std::move(atom)));
      seq.kids.push_back(std::move(atom));
    }
    return seq;
  }

  StatusOr<Re> ParseQuantifiers(Re atom) {
    if (AtEnd()) return atom;
    int min = -2, max = -1;
    const char c = Peek();
    if (c == '*') {
      min = 0;
    } else if (c == '+') {
      min = 1;
    } else if (c == '?') {
      min = 0;
      max = 1;
    } else if (c == '{') {
      size_t i = pos_ + 1;
      auto number = [&](int* out) {
        const size_t begin = i;
        long long v = 0;
        while (i < p_.size() && p_[i] >= '0' && p_[i] <= '9' && v <= 100000) {
          v = v * 10 + (p_[i] - '0');
          ++i;
        }
        *out = static_cast<int>(v);
        return i > begin;
      };
      if (!number(&min)) return Error("'{' is not a quantifier (escape it as \\{)");
      max = min;
      if (i < p_.size() && p_[i] == ',') {
        ++i;
        if (!number(&max)) max = -1;
      }
      if (i >= p_.size() || p_[i] != '}') return Error("unterminated {n,m} quantifier");
      if (max >= 0 && max < min) return Error("{n,m} with m < n");
      if (min > 1000 || max > 1000) return Error("repetition count over 1000");
      pos_ = i;
    } else {
      return atom;
    }
    ++pos_;
    if (!AtEnd() && Peek() == '?') ++pos_;  // lazy: same language
    if (!AtEnd() && (Peek() == '*' || Peek() == '+' || Peek() == '?' || Peek() == '{')) {
      return Error("repeated quantifier");
    }
    Re r;
    r.kind = Re::kRepeat;
    r.min = min;
    r.max = max;
    r.kids.push_back(std::move(atom));
    return r;
  }

  // One UTF-8 character of the pattern text.
  StatusOr<uint32_t> Char() {
    const utf8::Decoded d = utf8::DecodeAt(p_, pos_);
    if (!d.ok()) return Error("invalid UTF-8");
    pos_ += static_cast<size_t>(d.length);
    return d.code_point;
  }

  static ByteSet Shorthand(char c) {
    ByteSet s;
    const char lower = static_cast<char>(c | 0x20);
    for (int b = 0; b < 128; ++b) {
      bool in = false;
      if (lower == 'd') in = b >= '0' && b <= '9';
      if (lower == 'w') {
        in = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || b == '_';
      }
      if (lower == 's') in = b == ' ' || (b >= 0x09 && b <= 0x0D);
      if (c != lower) in = !in;  // \D \W \S: ASCII complement
      if (in) s.set(b);
    }
    return s;
  }

  // After a backslash: a shorthand class (returned in *set) or one character (*cp).
  Status Escape(bool* is_set, ByteSet* set, uint32_t* cp) {
    if (AtEnd()) return Error("pattern ends with '\\'");
    const char c = Peek();
    *is_set = false;
    if (std::string_view("dDwWsS").find(c) != std::string_view::npos) {
      ++pos_;
      *is_set = true;
      *set = Shorthand(c);
      return OkStatus();
    }
    auto hex = [&](int digits) -> Status {
      uint32_t v = 0;
      for (int i = 0; i < digits; ++i) {
        ++pos_;
        if (AtEnd()) return Error("short hex escape");
        const char h = Peek();
        const int d = h >= '0' && h <= '9'   ? h - '0'
                      : h >= 'a' && h <= 'f' ? h - 'a' + 10
                      : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                             : -1;
        if (d < 0) return Error("bad hex escape");
        v = v * 16 + d;
      }
      ++pos_;
      *cp = v;
      return OkStatus();
    };
    switch (c) {
      case 'n':
        *cp = '\n';
        break;
      case 'r':
        *cp = '\r';
        break;
      case 't':
        *cp = '\t';
        break;
      case 'f':
        *cp = '\f';
        break;
      case 'v':
        *cp = '\v';
        break;
      case '0':
        *cp = 0;
        break;
      case 'x':
        return hex(2);
      case 'u': {
        GEMMA4_RETURN_IF_ERROR(hex(4));
        if (*cp >= 0xD800 && *cp <= 0xDFFF) return Error("surrogate \\u escape");
        return OkStatus();
      }
      default:
        if (std::string_view(".\\/-[](){}|*+?^$ \"'#:,=!<>&%@;~`_").find(c) ==
            std::string_view::npos) {
          return Error(std::string("unsupported escape \\") + c);
        }
        *cp = static_cast<unsigned char>(c);
    }
    ++pos_;
    return OkStatus();
  }

  StatusOr<Re> ParseClass() {
    ++pos_;  // '['
    bool negate = false;
    if (!AtEnd() && Peek() == '^') {
      negate = true;
      ++pos_;
    }
    if (!AtEnd() && Peek() == ']') return Error("empty or ambiguous class '[]'");
    ByteSet ascii;
    std::vector<uint32_t> non_ascii;
    bool unicode_shorthand = false;  // \d \w \s: engines differ beyond ASCII
    while (true) {
      if (AtEnd()) return Error("unterminated class");
      if (Peek() == ']') {
        ++pos_;
        break;
      }
      if (Peek() == '[') return Error("nested '[' in a class (escape it)");
      bool is_set = false;
      ByteSet set;
      uint32_t lo = 0;
      if (Peek() == '\\') {
        ++pos_;
        GEMMA4_RETURN_IF_ERROR(Escape(&is_set, &set, &lo));
      } else {
        GEMMA4_ASSIGN_OR_RETURN(lo, Char());
      }
      if (is_set) {
        ascii |= set;
        unicode_shorthand = true;
        continue;
      }
      uint32_t hi = lo;
      if (pos_ + 1 < p_.size() && Peek() == '-' && p_[pos_ + 1] != ']') {
        ++pos_;
        if (Peek() == '\\') {
          ++pos_;
          GEMMA4_RETURN_IF_ERROR(Escape(&is_set, &set, &hi));
          if (is_set) return Error("class range ending in a shorthand");
        } else {
          GEMMA4_ASSIGN_OR_RETURN(hi, Char());
        }
        if (hi < lo) return Error("class range out of order");
      }
      if (hi >= 0x80) {
        if (lo != hi) return Error("non-ASCII class range (not supported)");
        non_ascii.push_back(lo);
        continue;
      }
      for (uint32_t b = lo; b <= hi; ++b) ascii.set(b);
    }
    Re alt;
    alt.kind = Re::kAlt;
    if (negate) {
      if (!non_ascii.empty()) return Error("negated class with non-ASCII members (not supported)");
      ByteSet s;
      for (int b = 0; b < 128; ++b) s.set(b, !ascii.test(b));
      alt.kids.push_back(SetOf(s));
      if (!unicode_shorthand) alt.kids.push_back(AnyMultibyte());
    } else {
      alt.kids.push_back(SetOf(ascii));
      for (uint32_t cp : non_ascii) alt.kids.push_back(Utf8Literal(cp));
    }
    return alt.kids.size() == 1 ? alt.kids[0] : alt;
  }

  StatusOr<Re> ParseAtom() {
    const char c = Peek();
    switch (c) {
      case '(': {
        ++pos_;
        if (!AtEnd() && Peek() == '?') {
          if (pos_ + 1 < p_.size() && p_[pos_ + 1] == ':') {
            pos_ += 2;
          } else {
            return Error("lookaround, named groups and flags (?...) are not supported");
          }
        }
        GEMMA4_ASSIGN_OR_RETURN(Re inner, ParseAlt());
        if (AtEnd() || Peek() != ')') return Error("unterminated group");
        ++pos_;
        return inner;
      }
      case '[':
        return ParseClass();
      case '.': {
        ++pos_;
        ByteSet s;
        for (int b = 0; b < 128; ++b) s.set(b, b != '\n' && b != '\r');
        Re alt;
        alt.kind = Re::kAlt;
        alt.kids.push_back(SetOf(s));
        alt.kids.push_back(AnyMultibyte());
        return alt;
      }
      case '^':
      case '$':
        return Error("anchor not at the start/end of the pattern (not supported)");
      case '*':
      case '+':
      case '?':
      case '{':
        return Error("nothing to repeat");
      case '\\': {
        ++pos_;
        if (!AtEnd() && (Peek() == 'b' || Peek() == 'B')) {
          return Error("word boundaries are not supported");
        }
        if (!AtEnd() && Peek() >= '1' && Peek() <= '9') {
          return Error("backreferences are not supported");
        }
        bool is_set = false;
        ByteSet set;
        uint32_t cp = 0;
        GEMMA4_RETURN_IF_ERROR(Escape(&is_set, &set, &cp));
        if (is_set) return SetOf(set);
        return Utf8Literal(cp);
      }
      default: {
        GEMMA4_ASSIGN_OR_RETURN(uint32_t cp, Char());
        return Utf8Literal(cp);
      }
    }
  }

  std::string_view p_;
  size_t pos_ = 0;
  size_t offset_ = 0;
};

struct NfaState {
  std::vector<int> eps;
  ByteSet set;
  int to = -1;
};

class NfaBuilder {
 public:
  std::vector<NfaState> states;
  bool too_big = false;

  int New() {
    if (states.size() >= static_cast<size_t>(kMaxNfaStates)) {
      too_big = true;
      return 0;
    }
    states.emplace_back();
    return static_cast<int>(states.size()) - 1;
  }

  // Returns {start, end}.
  std::pair<int, int> Emit(const Re& r) {
    if (too_big) return {0, 0};
    switch (r.kind) {
      case Re::kSet: {
        const int s = New(), e = New();
        if (too_big) return {0, 0};
        states[s].set = r.set;
        states[s].to = e;
        return {s, e};
      }
      case Re::kSeq: {
        const int s = New();
        int cur = s;
        for (const Re& k : r.kids) {
          auto [ks, ke] = Emit(k);
          if (too_big) return {0, 0};
          states[cur].eps.push_back(ks);
          cur = ke;
        }
        return {s, cur};
      }
      case Re::kAlt: {
        const int s = New(), e = New();
        for (const Re& k : r.kids) {
          auto [ks, ke] = Emit(k);
          if (too_big) return {0, 0};
          states[s].eps.push_back(ks);
          states[ke].eps.push_back(e);
        }
        return {s, e};
      }
      case Re::kRepeat: {
        const int s = New();
        int cur = s;
        for (int i = 0; i < r.min; ++i) {
          auto [ks, ke] = Emit(r.kids[0]);
          if (too_big) return {0, 0};
          states[cur].eps.push_back(ks);
          cur = ke;
        }
        if (r.max < 0) {
          auto [ks, ke] = Emit(r.kids[0]);
          const int e = New();
          if (too_big) return {0, 0};
          states[cur].eps.push_back(ks);
          states[cur].eps.push_back(e);
          states[ke].eps.push_back(ks);
          states[ke].eps.push_back(e);
          return {s, e};
        }
        const int e = New();
        for (int i = r.min; i < r.max; ++i) {
          auto [ks, ke] = Emit(r.kids[0]);
          if (too_big) return {0, 0};
          states[cur].eps.push_back(ks);
          states[cur].eps.push_back(e);
          cur = ke;
        }
        if (too_big) return {0, 0};
        states[cur].eps.push_back(e);
        return {s, e};
      }
    }
    return {0, 0};
  }
};

// Removes states that cannot reach acceptance and computes min_chars. Fails on an empty language.
StatusOr<ByteDfa> Prune(ByteDfa dfa, std::string_view what) {
  const int n = dfa.num_states();
  std::vector<std::vector<std::pair<int, uint8_t>>> reverse(n);
  for (int s = 0; s < n; ++s) {
    for (int b = 0; b < 256; ++b) {
      const int t = dfa.next[s * 256 + b];
      if (t >= 0) reverse[t].push_back({s, static_cast<uint8_t>(b)});
    }
  }
  constexpr uint32_t kInf = 0xFFFFFFFF;
  std::vector<uint32_t> dist(n, kInf);
  std::deque<int> queue;
  for (int s = 0; s < n; ++s) {
    if (dfa.accepting[s]) {
      dist[s] = 0;
      queue.push_back(s);
    }
  }
  // 0-1 breadth-first search: continuation bytes cost no character.
  while (!queue.empty()) {
    const int t = queue.front();
    queue.pop_front();
    for (auto [s, b] : reverse[t]) {
      const uint32_t cost = (b & 0xC0) == 0x80 ? 0 : 1;
      if (dist[t] + cost < dist[s]) {
        dist[s] = dist[t] + cost;
        if (cost == 0) {
          queue.push_front(s);
        } else {
          queue.push_back(s);
        }
      }
    }
  }
  if (dist[dfa.start] == kInf) {
    return InvalidArgumentError(std::string(what) + ": no string matches");
  }
  std::vector<int> remap(n, -1);
  ByteDfa out;
  for (int s = 0; s < n; ++s) {
    if (dist[s] == kInf) continue;
    remap[s] = out.num_states();
    out.accepting.push_back(dfa.accepting[s]);
    out.min_chars.push_back(dist[s]);
  }
  out.next.assign(out.accepting.size() * 256, -1);
  for (int s = 0; s < n; ++s) {
    if (remap[s] < 0) continue;
    for (int b = 0; b < 256; ++b) {
      const int t = dfa.next[s * 256 + b];
      out.next[remap[s] * 256 + b] = t >= 0 ? remap[t] : -1;
    }
  }
  out.start = remap[dfa.start];
  return out;
}

}  // namespace

StatusOr<ByteDfa> CompileRegex(std::string_view pattern) {
  Parser parser(pattern);
  GEMMA4_ASSIGN_OR_RETURN(Re re, parser.ParseAll());
  NfaBuilder nfa;
  // Plain variables, not a structured binding: lambdas below capture them, which clang
  // (before C++20's P1091 support) refuses for bindings.
  const std::pair<int, int> emitted = nfa.Emit(re);
  const int start = emitted.first, end = emitted.second;
  const std::string what = "pattern \"" + std::string(pattern) + "\"";
  if (nfa.too_big) return InvalidArgumentError(what + ": too large (repetitions)");
  // Subset construction. Its cost must stay linear in what it builds, whatever the pattern
  // (fuzzing found 400-byte patterns of empty alternatives that took seconds): the epsilon
  // closure marks visits with a generation stamp instead of clearing an array the size of the
  // NFA per call, and bytes that every NFA transition treats alike form one class, computed
  // once per class instead of once per byte.
  std::vector<uint32_t> stamp(nfa.states.size(), 0);
  uint32_t generation = 0;
  std::vector<int> stack;
  auto closure = [&](std::vector<int> set) {
    ++generation;
    stack.assign(set.begin(), set.end());
    for (int s : set) stamp[s] = generation;
    while (!stack.empty()) {
      const int s = stack.back();
      stack.pop_back();
      for (int t : nfa.states[s].eps) {
        if (stamp[t] != generation) {
          stamp[t] = generation;
          set.push_back(t);
          stack.push_back(t);
        }
      }
    }
    std::sort(set.begin(), set.end());
    return set;
  };
  // byte_class[b]: bytes in one class are in exactly the same transition sets (content bytes
  // only; others read -1). Refined set by set: (old class, in this set) -> new class.
  std::vector<int> byte_class(256, -1);
  int num_classes = 1;
  for (int b = 0; b < 256; ++b) byte_class[b] = ContentByte(b) ? 0 : -1;
  {
    std::vector<const ByteSet*> distinct;
    std::unordered_set<ByteSet> seen_sets;
    for (const NfaState& st : nfa.states) {
      if (st.to < 0 || !seen_sets.insert(st.set).second) continue;
      distinct.push_back(&st.set);
      if (distinct.size() > 512) break;  // beyond this, refining costs more than it saves
    }
    if (distinct.size() > 512) {
      num_classes = 0;  // one class per content byte
      for (int b = 0; b < 256; ++b) byte_class[b] = ContentByte(b) ? num_classes++ : -1;
    } else {
      for (const ByteSet* set : distinct) {
        std::map<std::pair<int, bool>, int> split;
        for (int b = 0; b < 256; ++b) {
          if (byte_class[b] < 0) continue;
          const auto key = std::make_pair(byte_class[b], set->test(b));
          auto [it, fresh] = split.emplace(key, static_cast<int>(split.size()));
          byte_class[b] = it->second;
        }
        num_classes = static_cast<int>(split.size());
      }
    }
  }
  std::vector<int> representative(num_classes, -1);
  for (int b = 0; b < 256; ++b) {
    if (byte_class[b] >= 0 && representative[byte_class[b]] < 0) representative[byte_class[b]] = b;
  }
  std::map<std::vector<int>, int> ids;
  std::vector<std::vector<int>> sets;
  ByteDfa dfa;
  auto intern = [&](std::vector<int> set) -> int {
    auto it = ids.find(set);
    if (it != ids.end()) return it->second;
    const int id = static_cast<int>(sets.size());
    ids.emplace(set, id);
    dfa.accepting.push_back(std::binary_search(set.begin(), set.end(), end) ? 1 : 0);
    sets.push_back(std::move(set));
    return id;
  };
  dfa.start = intern(closure({start}));
  std::vector<int> class_target(num_classes);
  size_t work = 0;
  for (size_t i = 0; i < sets.size(); ++i) {
    if (sets.size() > static_cast<size_t>(kMaxRegexStates)) {
      return InvalidArgumentError(what + ": its automaton exceeds " +
                                  std::to_string(kMaxRegexStates) + " states");
    }
    // Bounded work whatever the pattern: each subset is scanned once per byte class.
    work += sets[i].size() * static_cast<size_t>(num_classes);
    if (work > kMaxSubsetWork) {
      return InvalidArgumentError(what + ": too complex (its automaton takes too long to build)");
    }
    for (int c = 0; c < num_classes; ++c) {
      const int b = representative[c];
      std::vector<int> next;
      for (int s : sets[i]) {
        if (nfa.states[s].to >= 0 && nfa.states[s].set.test(b)) next.push_back(nfa.states[s].to);
      }
      if (next.empty()) {
        class_target[c] = -1;
        continue;
      }
      std::vector<int> target = closure(std::move(next));
      work += target.size();
      if (work > kMaxSubsetWork) {
        return InvalidArgumentError(what + ": too complex (its automaton takes too long to build)");
      }
      class_target[c] = intern(std::move(target));
    }
    dfa.next.resize(sets.size() * 256, -1);
    for (int b = 0; b < 256; ++b) {
      if (byte_class[b] >= 0) dfa.next[i * 256 + b] = class_target[byte_class[b]];
    }
  }
  dfa.next.resize(sets.size() * 256, -1);
  return Prune(std::move(dfa), what);
}

StatusOr<ByteDfa> IntersectDfa(const ByteDfa& a, const ByteDfa& b) {
  std::map<std::pair<int, int>, int> ids;
  std::vector<std::pair<int, int>> pairs;
  ByteDfa out;
  auto intern = [&](int x, int y) {
    auto [it, fresh] = ids.emplace(std::make_pair(x, y), static_cast<int>(pairs.size()));
    if (fresh) {
      pairs.push_back({x, y});
      out.accepting.push_back(a.accepting[x] && b.accepting[y]);
    }
    return it->second;
  };
  out.start = intern(a.start, b.start);
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (pairs.size() > static_cast<size_t>(kMaxRegexStates)) {
      return InvalidArgumentError("combined patterns/formats: automaton exceeds " +
                                  std::to_string(kMaxRegexStates) + " states");
    }
    out.next.resize(pairs.size() * 256, -1);
    for (int c = 0; c < 256; ++c) {
      const int x = a.Step(pairs[i].first, static_cast<uint8_t>(c));
      const int y = b.Step(pairs[i].second, static_cast<uint8_t>(c));
      if (x < 0 || y < 0) continue;
      const int t = intern(x, y);
      out.next.resize(pairs.size() * 256, -1);
      out.next[i * 256 + c] = t;
    }
  }
  out.next.resize(pairs.size() * 256, -1);
  return Prune(std::move(out), "combined patterns/formats");
}

}  // namespace gemma4::chat
