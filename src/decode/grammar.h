// Constrained decoding from JSON schemas. A Grammar is compiled once from the tools' parameter
// schemas (Gemma 4 call syntax) or from a JSON schema (JSON syntax); a GrammarMatcher walks it
// byte by byte and, per step, marks which vocabulary tokens may come next.
//
// Tool calls (the text after <|tool_call>):
//   call  := "call:" NAME object "<tool_call|>"      NAME one of the tools
//   value := string | number | "true" | "false" | "null" | object | array
//   string:= <|"|> any bytes but <|"|> <|"|>          object := "{" key ":" value ("," ...)* "}"
//   key   := bare name (or <|"|>name<|"|> when it has separators); no whitespace anywhere.
// JSON answers: standard JSON for the schema, at most `max_whitespace` whitespace characters
// between tokens and none before the document.
//
// Every output the grammar allows validates against the schema (checked with Python's
// jsonschema by tests/grammar_validate.py); the grammar may allow less than the schema does.
// Supported keywords (anything else is refused at compile time, naming the keyword and its
// JSON-pointer path; description/title/examples/default/$schema/$comment/$id/$anchor/
// deprecated/readOnly/writeOnly are accepted and ignored):
//   type (string or list), enum, const (values also filtered by the sibling keywords),
//   nullable (OpenAPI: adds null)
//   objects: properties (at most 64), required, additionalProperties false/true/schema (when
//     absent with `properties` given, only the declared properties are generated),
//     minProperties/maxProperties. Keys never repeat.
//   arrays: items (schema or false), prefixItems, minItems/maxItems (default at most
//     max(64, minItems) items when maxItems is absent).
//   strings: minLength/maxLength in characters (up to 2^32-1; default max_string_length when
//     maxLength is absent), pattern (the regex subset in decode/regex.h, JSON Schema search
//     semantics), format date/time/date-time/uuid/email (as built-in patterns: full dates
//     with leap years and year >= 0001; time hh:mm:ss[.ffffff](Z|+hh:mm); uuid in hex of either
//     case; email as dot-atom@hostname with at least one dot). A string with a pattern or format
//     is written without \u escapes. Formats on non-strings (OpenAPI int32, double) are ignored.
//   integers/numbers: minimum/maximum/exclusiveMinimum/exclusiveMaximum (numeric, or draft 4's
//     boolean exclusive flags). Integers: exact. Numbers with a bound are written without an
//     exponent, with at most 18 integer digits and 12 decimals, and the decimal value is
//     compared exactly with the bound's binary double (exclusive bounds with the next double
//     beyond it), so every output parses to a double that satisfies the bound; values closer
//     to a bound than 10^-12 may be unreachable. Unbounded numbers: up to 18 digits per part,
//     exponent below 100.
//   anyOf; oneOf when the branches are provably exclusive (different types, disjoint
//     enum/const values, or a required property with disjoint values), refused otherwise;
//   allOf, merged into one schema (types intersected, enums intersected, bounds tightened,
//     patterns combined, properties merged recursively; conflicting const/format/type are
//     refused naming the keyword); anyOf/oneOf/$ref next to other keywords are merged likewise.
//   $ref to "#" pointers ($defs, definitions, or any local path), recursion included; the
//     nesting limit is 32 frames and no value is started that could not be finished within it.
// No limit is 16-bit: enum lists, anyOf branches, lengths and counts are 32/64-bit.
#ifndef GEMMA4_SRC_DECODE_GRAMMAR_H_
#define GEMMA4_SRC_DECODE_GRAMMAR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "gemma4/status.h"

namespace gemma4::chat {

struct GrammarOptions {
  int max_whitespace = 2;       // JSON: whitespace characters allowed between two tokens
  int max_string_length = 512;  // characters, when the schema sets no maxLength
  int max_any_depth = 6;        // nesting of schema-free values ({} or no type)
};

class Grammar;

StatusOr<std::shared_ptr<const Grammar>> CompileToolCallGrammar(
    const std::vector<json::Value>& tools, GrammarOptions options = {});
StatusOr<std::shared_ptr<const Grammar>> CompileJsonSchemaGrammar(const json::Value& schema,
                                                                  GrammarOptions options = {});

// A byte trie over a vocabulary's token texts (the bytes each id decodes to; empty = never
// allowed), built once per tokenizer.
class VocabIndex {
 public:
  explicit VocabIndex(std::vector<std::string> token_texts);
  size_t size() const { return num_tokens_; }

 private:
  friend class GrammarMatcher;
  struct Node {
    uint32_t first_edge = 0;
    uint16_t num_edges = 0;
    int32_t first_token = -1;  // a token whose text ends here; more via next_token_
  };
  struct Edge {
    uint8_t byte;
    uint32_t child;
  };
  size_t num_tokens_ = 0;
  size_t max_token_length_ = 0;
  std::vector<Node> nodes_;
  std::vector<Edge> edges_;
  std::vector<int32_t> next_token_;  // next token with the same text, or -1
};

namespace grammar_internal {
struct State;
}

class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const Grammar> grammar);
  ~GrammarMatcher();
  GrammarMatcher(const GrammarMatcher& other);
  GrammarMatcher& operator=(const GrammarMatcher& other);

  // Advances over `text`; on false nothing changed.
  bool Accept(std::string_view text);
  bool CanAccept(std::string_view text) const;
  // The document/call could end here.
  bool CanEnd() const;
  // It must end here: it can end and no further byte is allowed.
  bool IsComplete() const;
  // allowed->assign(vocab.size(), false); then true for every token CanAccept accepts.
  void FillAllowed(const VocabIndex& vocab, std::vector<bool>* allowed) const;

 private:
  std::shared_ptr<const Grammar> grammar_;
  std::unique_ptr<grammar_internal::State> state_;
};

}  // namespace gemma4::chat

#endif  // GEMMA4_SRC_DECODE_GRAMMAR_H_
