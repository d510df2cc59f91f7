// Regular expressions for JSON Schema `pattern` (and the built-in `format`s), compiled to a
// byte-level DFA that the grammar matcher steps through one string byte at a time.
//
// Supported subset (ECMA-262 syntax, matched as JSON Schema does: a search, anchored only by an
// explicit ^ at the start and $ at the end of the pattern or of a top-level alternative):
//   literals (any UTF-8 character), escapes \. \\ \/ \- \[ \] \( \) \{ \} \| \* \+ \? \^ \$
//   \n \r \t \f \v \0 \xHH \uXXXX, classes [abc] [a-z] [^...] with ASCII ranges, the shorthands
//   \d \w \s \D \W \S (ASCII meaning; \D \W \S and [^\d...] match ASCII characters only so the
//   result also matches under Unicode-aware engines), `.` (any character but \n and \r),
//   groups (...) and (?:...), alternation |, quantifiers * + ? {n} {n,} {n,m} (lazy forms too).
// Refused with a message: backreferences, lookaround, word boundaries, named groups, flags,
// anchors elsewhere, non-ASCII class ranges, and patterns whose automaton would exceed
// kMaxRegexStates states.
#ifndef GEMMA4_SRC_DECODE_REGEX_H_
#define GEMMA4_SRC_DECODE_REGEX_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "gemma4/status.h"

namespace gemma4::chat {

inline constexpr int kMaxRegexStates = 4096;

// A deterministic automaton over string content bytes. States from which no accepting state is
// reachable are removed (their transitions read -1), so every live state can still match.
struct ByteDfa {
  std::vector<int32_t> next;       // next[state * 256 + byte], -1 = no transition
  std::vector<uint8_t> accepting;  // per state
  // Fewest characters (UTF-8 lead or ASCII bytes) that lead from the state to acceptance.
  std::vector<uint32_t> min_chars;
  int32_t start = 0;
  int num_states() const { return static_cast<int>(accepting.size()); }
  int32_t Step(int32_t state, uint8_t byte) const { return next[state * 256 + byte]; }
};

// Compiles `pattern` with JSON Schema's search semantics. An empty language is an error.
StatusOr<ByteDfa> CompileRegex(std::string_view pattern);
// The product automaton: strings both accept. An empty language is an error.
StatusOr<ByteDfa> IntersectDfa(const ByteDfa& a, const ByteDfa& b);

}  // namespace gemma4::chat

#endif  // GEMMA4_SRC_DECODE_REGEX_H_
