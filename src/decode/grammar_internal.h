// Internals shared by the schema compiler (grammar_schema.cc) and the matcher (grammar.cc).
#ifndef GEMMA4_SRC_DECODE_GRAMMAR_INTERNAL_H_
#define GEMMA4_SRC_DECODE_GRAMMAR_INTERNAL_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "decode/grammar.h"
#include "decode/regex.h"

namespace gemma4::chat {

namespace grammar_internal {

enum class Syntax { kJson, kGemma };

enum class Kind : uint8_t {
  kLiteral,        // one of `alts` (sorted, unique)
  kString,         // min/max characters, optional pattern automaton
  kNumber,         // JSON number, no bounds
  kInteger,        // JSON integer, no bounds
  kBoundedNumber,  // integer or number within bounds (no exponent)
  kArray,          // prefix items, then `child` items (-1: none)
  kObject,         // props (sorted by key text), additional properties
  kAnyValue,       // any value, nesting depth = depth
  kAnyArray,       // items = AnyValue(depth + 1)
  kAnyObject,      // keys: strings (JSON) / names (Gemma); values AnyValue(depth + 1)
  kName,           // a bare key: [A-Za-z0-9_.-]{1,64}
  kAnyOf,          // children
  kSequence,       // children in order
};

inline constexpr int kMaxDepth = 32;                 // frames per stack: the nesting limit
inline constexpr uint32_t kMaxIntegerDigits = 18;    // |integer part| < 10^18
inline constexpr int kNumberFractionDigits = 12;     // bounded numbers: at most 12 decimals
inline constexpr uint32_t kAdditional = 0xFFFFFFFF;  // object frame: value of an extra key
inline constexpr std::string_view kDelim = "<|\"|>";

struct Property {
  std::string key_text;   // as written: "\"city\"" (JSON) or "city" (Gemma)
  uint64_t key_hash = 0;  // HashKey of the key itself
  int node = -1;
  bool required = false;
};

struct Node {
  Kind kind = Kind::kLiteral;
  std::vector<std::string> alts;
  // Strings.
  uint32_t min_length = 0, max_length = 0;
  int dfa = -1;             // index into Grammar::dfas
  bool key_string = false;  // an object key: checked against its object when it closes
  // Arrays.
  uint64_t min_items = 0, max_items = 0;
  std::vector<int> prefix;
  int child = -1;
  int depth = 0;
  // Objects.
  std::vector<Property> props;
  uint64_t required_mask = 0;
  int additional = -1;  // node of extra properties' values, -1 = none allowed
  uint64_t min_props = 0, max_props = UINT64_MAX;
  // Bounded numbers: magnitude * 10^frac_digits in [pos_lo, pos_hi] (non-negative values) or
  // [neg_lo, neg_hi] (after '-'); lo > hi = that sign is impossible.
  int frac_digits = 0;
  __int128 pos_lo = 0, pos_hi = -1, neg_lo = 0, neg_hi = -1;
  std::vector<int> children;
  // Fewest stack frames needed to complete a value of this node.
  int min_depth = 1;
};

// Frame::state, one set per node kind. Plain uint8_t constants (not enum classes) because the
// field is a byte of a frame that is compared with memcmp; the values are those a new frame
// starts from (0) and the ones each kind's matcher moves through.
namespace string_state {  // kString
enum : uint8_t {
  kOpen = 0,           // before the opening quote (JSON) or delimiter (Gemma)
  kBody = 1,           // content
  kEscape = 2,         // after a backslash (JSON)
  kUnicodeEscape = 3,  // inside \uXXXX, pos8 = hex digits read
  kDone = 10,          // closed
};
}  // namespace string_state
namespace number_state {  // kNumber, kInteger
enum : uint8_t {
  kStart = 0,
  kAfterMinus = 1,
  kLeadingZero = 2,
  kIntegerDigits = 3,
  kAfterPoint = 4,
  kFraction = 5,
  kAfterE = 6,
  kAfterExponentSign = 7,
  kExponentDigits = 8,
};
}  // namespace number_state
namespace bounded_state {  // kBoundedNumber
enum : uint8_t {
  kStart = 0,
  kAfterMinus = 1,
  kIntegerDigits = 2,
  kAfterPoint = 4,
  kFraction = 5,
};
}  // namespace bounded_state
namespace object_state {  // kObject, kAnyObject
enum : uint8_t {
  kOpen = 0,         // before '{'
  kAfterBrace = 1,   // '{' read: a key or '}'
  kDeclaredKey = 2,  // matching a declared key's text (lo/hi/pos: candidates)
  kBeforeColon = 3,  // a key complete
  kBeforeValue = 4,  // ':' read
  kAfterValue = 5,   // a value complete: ',' or '}'
  kAfterComma = 6,   // a key must follow
  kInKey = 7,        // a free-form key frame above this one; recorded when it closes
  kDone = 9,         // '}' read
};
}  // namespace object_state
namespace array_state {  // kArray, kAnyArray
enum : uint8_t {
  kOpen = 0,          // before '['
  kAfterBracket = 1,  // '[' read: an item or ']'
  kAfterItem = 2,     // an item complete: ',' or ']'
  kAfterComma = 3,    // an item must follow
  kDone = 9,          // ']' read (equal to object_state::kDone: CanFinish tests both at once)
};
}  // namespace array_state
static_assert(int{array_state::kDone} == int{object_state::kDone});

// 64 bytes, no padding: stacks are compared with memcmp.
struct Frame {
  int32_t node;
  uint8_t state;             // the node kind's *_state value
  uint8_t ws;                // whitespace characters since the last token (JSON)
  uint8_t utf8;              // continuation bytes still expected inside a string
  uint8_t pos8;              // delimiter progress (strings)
  uint8_t next_lo, next_hi;  // allowed range of the next UTF-8 continuation byte
  uint8_t flags;             // bounded numbers: bit 0 = negative
  uint8_t escape_hex;        // strings: the first hex digit of a \u escape being read
  uint32_t lo, hi;           // candidate range of sorted alternatives/keys
  uint32_t pos;              // bytes of the candidate matched / sequence index / fraction digits
  uint32_t count;            // characters, items, digits, or the chosen property
  int32_t dfa;               // pattern automaton state (strings)
  uint32_t extra;            // objects: extra (undeclared) properties present
  uint64_t used;             // objects: declared properties present
  uint64_t a;  // strings/names: content hash; numbers: integer part; objects: key filter
  uint64_t b;  // numbers: fraction digits; objects: hash of the key that just closed
};
static_assert(sizeof(Frame) == 64);

struct Stack {
  int depth = 0;
  Frame frames[kMaxDepth];

  Stack() = default;
  Stack(const Stack& other) : depth(other.depth) {
    std::copy(other.frames, other.frames + depth, frames);
  }
  Stack& operator=(const Stack& other) {
    depth = other.depth;
    std::copy(other.frames, other.frames + depth, frames);
    return *this;
  }
};

struct State {
  std::vector<Stack> stacks;
};

uint64_t HashKey(std::string_view key);
// Whether `text` is a complete value of `node` (used at compile time to filter enums).
bool StackAccepts(const Grammar& g, int node, std::string_view text);
bool FeedState(const Grammar& g, const State& in, uint8_t c, State* out);

}  // namespace grammar_internal

class Grammar {
 public:
  grammar_internal::Syntax syntax = grammar_internal::Syntax::kJson;
  GrammarOptions options;
  std::vector<grammar_internal::Node> nodes;
  std::vector<ByteDfa> dfas;
  int root = -1;
  // Shared helper nodes for schema-free values and keys.
  int any_string = -1, any_number = -1, any_literal = -1, name = -1, key = -1;
  std::vector<int> any_value, any_array, any_object;  // by depth

  int Add(grammar_internal::Node n) {
    nodes.push_back(std::move(n));
    return static_cast<int>(nodes.size()) - 1;
  }
};

}  // namespace gemma4::chat

#endif  // GEMMA4_SRC_DECODE_GRAMMAR_INTERNAL_H_
