// Grammar = a graph of schema nodes; the matcher state = a small set of frame stacks (one per
// live alternative of anyOf/oneOf/tool name), advanced one byte at a time. Frames are plain
// structs so that copying a state (done per trie edge in FillAllowed) is a memcpy.
#include "chat/grammar.h"

#include <algorithm>
#include <map>

#include "chat/tool_syntax.h"

namespace gemma4::chat {

enum class Syntax { kJson, kGemma };

enum class Kind : uint8_t {
  kLiteral,    // one of `alts` (sorted, unique)
  kString,     // min/max characters
  kNumber,     // JSON number
  kInteger,    // JSON integer
  kArray,      // items = child
  kObject,     // props (sorted by key text)
  kAnyValue,   // any value, nesting depth = depth
  kAnyArray,   // items = AnyValue(depth + 1)
  kAnyObject,  // keys: strings (JSON) / names (Gemma); values AnyValue(depth + 1)
  kName,       // a bare key: [A-Za-z0-9_.-]{1,64}
  kAnyOf,      // children
  kSequence,   // children in order
};

struct Property {
  std::string key_text;  // as written: "\"city\"" (JSON) or "city" (Gemma)
  int node = -1;
  bool required = false;
};

struct Node {
  Kind kind = Kind::kLiteral;
  std::vector<std::string> alts;
  int min_length = 0, max_length = 0;
  int min_items = 0, max_items = 0;
  int child = -1;
  int depth = 0;
  std::vector<Property> props;
  uint64_t required_mask = 0;
  std::vector<int> children;
};

class Grammar {
 public:
  Syntax syntax = Syntax::kJson;
  GrammarOptions options;
  std::vector<Node> nodes;
  int root = -1;
  // Shared helper nodes for schema-free values.
  int any_string = -1, any_number = -1, any_literal = -1, name = -1;
  std::vector<int> any_value, any_array, any_object;  // by depth

  int Add(Node n) {
    nodes.push_back(std::move(n));
    return static_cast<int>(nodes.size()) - 1;
  }
};

namespace grammar_internal {

constexpr int kMaxDepth = 24;
constexpr std::string_view kDelim = "<|\"|>";

struct Frame {
  int32_t node;
  uint8_t state;             // meaning depends on the node kind
  uint8_t ws;                // whitespace characters since the last token (JSON)
  uint8_t utf8;              // continuation bytes still expected inside a string
  uint8_t pos8;              // delimiter progress (strings)
  uint8_t next_lo, next_hi;  // allowed range of the next UTF-8 continuation byte
  uint16_t lo, hi;           // candidate range of sorted alternatives/keys
  uint16_t pos;              // bytes of the candidate matched / sequence index
  uint16_t count;            // characters, items, digits, or the chosen property
  uint64_t used;             // properties already present (objects)
};

struct Stack {
  int depth = 0;
  Frame frames[kMaxDepth];
};

struct State {
  std::vector<Stack> stacks;
};

}  // namespace grammar_internal

using grammar_internal::Frame;
using grammar_internal::kDelim;
using grammar_internal::kMaxDepth;
using grammar_internal::Stack;
using grammar_internal::State;

namespace {

// ---------------------------------------------------------------------------------------------
// Compilation

class Compiler {
 public:
  Compiler(Grammar* g) : g_(g) {}

  void AddHelpers() {
    Node s;
    s.kind = Kind::kString;
    s.max_length = g_->options.max_string_length;
    g_->any_string = g_->Add(s);
    Node n;
    n.kind = Kind::kNumber;
    g_->any_number = g_->Add(n);
    Node lit;
    lit.kind = Kind::kLiteral;
    // Gemma's template writes null as None; the parser takes both.
    lit.alts = g_->syntax == Syntax::kJson
                   ? std::vector<std::string>{"false", "null", "true"}
                   : std::vector<std::string>{"None", "false", "null", "true"};
    g_->any_literal = g_->Add(lit);
    Node name;
    name.kind = Kind::kName;
    g_->name = g_->Add(name);
    const int levels = std::max(1, g_->options.max_any_depth) + 1;
    for (int d = 0; d < levels; ++d) {
      Node v;
      v.kind = Kind::kAnyValue;
      v.depth = d;
      g_->any_value.push_back(g_->Add(v));
      Node a;
      a.kind = Kind::kAnyArray;
      a.depth = d;
      g_->any_array.push_back(g_->Add(a));
      Node o;
      o.kind = Kind::kAnyObject;
      o.depth = d;
      g_->any_object.push_back(g_->Add(o));
    }
  }

  std::string LiteralText(const json::Value& v) const {
    if (g_->syntax == Syntax::kJson) return v.Serialize();
    return FormatArgument(v, false);
  }

  std::string KeyText(const std::string& key) const {
    if (g_->syntax == Syntax::kJson) {
      std::string out;
      json::AppendQuoted(key, &out);
      return out;
    }
    const bool bare = !key.empty() && key.find_first_of(":,{}[] \t\n\r<\"") == std::string::npos;
    return bare ? key : std::string(kDelim) + key + std::string(kDelim);
  }

  int Literal(std::vector<std::string> alts) {
    std::sort(alts.begin(), alts.end());
    alts.erase(std::unique(alts.begin(), alts.end()), alts.end());
    Node n;
    n.kind = Kind::kLiteral;
    n.alts = std::move(alts);
    return g_->Add(std::move(n));
  }

  StatusOr<int> Compile(const json::Value& schema, const std::string& path, int depth) {
    if (depth > 32) return InvalidArgumentError("schema at " + path + ": nested too deeply");
    if (schema.is_bool()) {
      if (!schema.as_bool()) return InvalidArgumentError("schema at " + path + ": false");
      return g_->any_value[0];
    }
    if (!schema.is_object()) {
      return InvalidArgumentError("schema at " + path + ": not an object");
    }
    if (schema.Find("$ref") != nullptr) {
      return UnimplementedError("schema at " + path + ": $ref is not supported");
    }
    if (const json::Value* e = schema.Find("enum"); e != nullptr) {
      if (!e->is_array() || e->as_array().empty()) {
        return InvalidArgumentError("schema at " + path + "/enum: must be a non-empty list");
      }
      std::vector<std::string> alts;
      for (const json::Value& v : e->as_array()) alts.push_back(LiteralText(v));
      return Literal(std::move(alts));
    }
    if (const json::Value* c = schema.Find("const"); c != nullptr) {
      return Literal({LiteralText(*c)});
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (const json::Value* list = schema.Find(key); list != nullptr) {
        if (!list->is_array() || list->as_array().empty()) {
          return InvalidArgumentError("schema at " + path + "/" + key +
                                      ": must be a non-empty list");
        }
        Node n;
        n.kind = Kind::kAnyOf;
        for (size_t i = 0; i < list->as_array().size(); ++i) {
          GEMMA4_ASSIGN_OR_RETURN(
              int child,
              Compile(list->as_array()[i], path + "/" + key + "/" + std::to_string(i), depth + 1));
          n.children.push_back(child);
        }
        return g_->Add(std::move(n));
      }
    }
    const json::Value* type = schema.Find("type");
    std::vector<std::string> types;
    if (type == nullptr) {
      if (schema.Find("properties") != nullptr) {
        types.push_back("object");
      } else if (schema.Find("items") != nullptr) {
        types.push_back("array");
      } else {
        return g_->any_value[0];
      }
    } else if (type->is_string()) {
      types.push_back(type->as_string());
    } else if (type->is_array()) {
      for (const json::Value& t : type->as_array()) {
        if (!t.is_string()) return InvalidArgumentError("schema at " + path + "/type: bad entry");
        types.push_back(t.as_string());
      }
    } else {
      return InvalidArgumentError("schema at " + path + "/type: must be a string or list");
    }
    const json::Value* nullable = schema.Find("nullable");
    if (nullable != nullptr && nullable->as_bool()) types.push_back("null");
    if (types.size() == 1) return CompileType(schema, types[0], path, depth);
    Node n;
    n.kind = Kind::kAnyOf;
    for (const std::string& t : types) {
      GEMMA4_ASSIGN_OR_RETURN(int child, CompileType(schema, t, path, depth));
      n.children.push_back(child);
    }
    return g_->Add(std::move(n));
  }

  StatusOr<int> CompileType(const json::Value& schema, const std::string& type_in,
                            const std::string& path, int depth) {
    std::string type = type_in;
    for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto int_field = [&](const char* key, int fallback, int* out) -> Status {
      *out = fallback;
      const json::Value* v = schema.Find(key);
      if (v == nullptr) return OkStatus();
      int64_t i = 0;
      if (!v->GetInt64(&i) || i < 0 || i > 1000000) {
        return InvalidArgumentError("schema at " + path + "/" + key + ": bad value");
      }
      *out = static_cast<int>(i);
      return OkStatus();
    };
    Node n;
    if (type == "string") {
      n.kind = Kind::kString;
      GEMMA4_RETURN_IF_ERROR(int_field("minLength", 0, &n.min_length));
      GEMMA4_RETURN_IF_ERROR(int_field("maxLength", g_->options.max_string_length, &n.max_length));
      if (n.max_length < n.min_length) {
        return InvalidArgumentError("schema at " + path + ": maxLength < minLength");
      }
      return g_->Add(std::move(n));
    }
    if (type == "integer") {
      n.kind = Kind::kInteger;
      return g_->Add(std::move(n));
    }
    if (type == "number") {
      n.kind = Kind::kNumber;
      return g_->Add(std::move(n));
    }
    if (type == "boolean") return Literal({"false", "true"});
    if (type == "null") return Literal({g_->syntax == Syntax::kJson ? "null" : "None"});
    if (type == "array") {
      n.kind = Kind::kArray;
      GEMMA4_RETURN_IF_ERROR(int_field("minItems", 0, &n.min_items));
      GEMMA4_RETURN_IF_ERROR(int_field("maxItems", 64, &n.max_items));
      n.max_items = std::min(n.max_items, 0xFFFF);
      if (n.max_items < n.min_items) {
        return InvalidArgumentError("schema at " + path + ": maxItems < minItems");
      }
      const json::Value* items = schema.Find("items");
      if (items == nullptr) {
        n.child = g_->any_value[1];
      } else {
        GEMMA4_ASSIGN_OR_RETURN(n.child, Compile(*items, path + "/items", depth + 1));
      }
      return g_->Add(std::move(n));
    }
    if (type == "object") {
      const json::Value* props = schema.Find("properties");
      if (props == nullptr || !props->is_object() || props->as_object().empty()) {
        if (props != nullptr && props->is_object()) {
          // "properties": {} -> exactly an empty object.
          n.kind = Kind::kObject;
          return g_->Add(std::move(n));
        }
        return g_->any_object[0];
      }
      if (props->as_object().size() > 64) {
        return UnimplementedError("schema at " + path + ": more than 64 properties");
      }
      n.kind = Kind::kObject;
      for (const auto& [key, sub] : props->as_object()) {
        Property p;
        p.key_text = KeyText(key);
        GEMMA4_ASSIGN_OR_RETURN(p.node, Compile(sub, path + "/properties/" + key, depth + 1));
        n.props.push_back(std::move(p));
      }
      std::sort(n.props.begin(), n.props.end(),
                [](const Property& a, const Property& b) { return a.key_text < b.key_text; });
      if (const json::Value* req = schema.Find("required"); req != nullptr) {
        if (!req->is_array()) {
          return InvalidArgumentError("schema at " + path + "/required: must be a list");
        }
        for (const json::Value& r : req->as_array()) {
          const std::string text = KeyText(r.as_string());
          bool found = false;
          for (size_t i = 0; i < n.props.size(); ++i) {
            if (n.props[i].key_text == text) {
              n.props[i].required = true;
              n.required_mask |= uint64_t{1} << i;
              found = true;
            }
          }
          if (!found) {
            return InvalidArgumentError("schema at " + path + "/required: \"" + r.as_string() +
                                        "\" is not a property");
          }
        }
      }
      return g_->Add(std::move(n));
    }
    return InvalidArgumentError("schema at " + path + "/type: unsupported type '" + type_in + "'");
  }

 private:
  Grammar* g_;
};

// ---------------------------------------------------------------------------------------------
// Matching

enum class Step { kConsumed, kFinish, kReject, kPushed };

bool IsWs(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool IsDigit(uint8_t c) { return c >= '0' && c <= '9'; }

class Machine {
 public:
  explicit Machine(const Grammar& g) : g_(g) {}

  Frame NewFrame(int node) const {
    Frame f{};
    f.node = node;
    const Node& n = g_.nodes[node];
    if (n.kind == Kind::kLiteral) f.hi = static_cast<uint16_t>(n.alts.size());
    return f;
  }

  // Pushes `node`; an anyOf forks the stack: alternatives beyond the first go to `forks`.
  bool Push(Stack* s, int node, std::vector<Stack>* forks) const {
    const Node& n = g_.nodes[node];
    if (n.kind == Kind::kAnyOf) {
      for (size_t i = 1; i < n.children.size(); ++i) {
        Stack copy = *s;
        if (Push(&copy, n.children[i], forks)) forks->push_back(copy);
      }
      return Push(s, n.children[0], forks);
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
        for (int i = f.lo; i < f.hi; ++i) {
          if (n.alts[i].size() == f.pos) return true;
        }
        return false;
      case Kind::kString:
        return f.state == 10;
      case Kind::kNumber:
      case Kind::kInteger:
        return f.state == 2 || f.state == 3 || f.state == 5 || f.state == 8;
      case Kind::kName:
        return f.count >= 1;
      case Kind::kSequence:
        return f.pos >= n.children.size();
      default:
        return f.state == 9;
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

  Step String(Frame* f, const Node& n, uint8_t c) const {
    if (f->state == 10) return Step::kFinish;
    if (g_.syntax == Syntax::kGemma) {
      if (f->state == 0) {  // opening delimiter
        if (c != static_cast<uint8_t>(kDelim[f->pos8])) return Step::kReject;
        if (++f->pos8 == kDelim.size()) {
          f->state = 1;
          f->pos8 = 0;
        }
        return Step::kConsumed;
      }
      // Body. pos8 = bytes of a possible closing delimiter just seen; they count as content
      // only once the delimiter breaks off.
      if (f->utf8 == 0 && c == static_cast<uint8_t>(kDelim[f->pos8])) {
        if (f->pos8 == kDelim.size() - 1) {
          if (f->count < n.min_length) return Step::kReject;
          f->state = 10;
          return Step::kConsumed;
        }
        ++f->pos8;
        return Step::kConsumed;
      }
      if (f->pos8 > 0) {
        if (f->count + f->pos8 > n.max_length) return Step::kReject;
        f->count = static_cast<uint16_t>(f->count + f->pos8);
        f->pos8 = 0;
        if (c == static_cast<uint8_t>(kDelim[0])) {
          f->pos8 = 1;
          return Step::kConsumed;
        }
      }
      return Utf8Char(f, n, c) ? Step::kConsumed : Step::kReject;
    }
    switch (f->state) {
      case 0:
        if (c != '"') return Step::kReject;
        f->state = 1;
        return Step::kConsumed;
      case 1:
        if (c == '"') {
          if (f->utf8 != 0 || f->count < n.min_length) return Step::kReject;
          f->state = 10;
          return Step::kConsumed;
        }
        if (c == '\\') {
          if (f->utf8 != 0 || f->count >= n.max_length) return Step::kReject;
          f->state = 2;
          return Step::kConsumed;
        }
        if (c < 0x20) return Step::kReject;
        return Utf8Char(f, n, c) ? Step::kConsumed : Step::kReject;
      case 2:
        if (c == 'u') {
          f->state = 3;
          f->pos8 = 0;
          return Step::kConsumed;
        }
        if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
            c == 't') {
          f->state = 1;
          ++f->count;
          return Step::kConsumed;
        }
        return Step::kReject;
      case 3: {
        const bool hex = IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!hex) return Step::kReject;
        if (++f->pos8 == 4) {
          f->state = 1;
          ++f->count;
        }
        return Step::kConsumed;
      }
    }
    return Step::kReject;
  }

  // One byte of string content: well-formed UTF-8 and at most max_length characters.
  bool Utf8Char(Frame* f, const Node& n, uint8_t c) const {
    if (f->utf8 > 0) {
      if (c < f->next_lo || c > f->next_hi) return false;
      --f->utf8;
      f->next_lo = 0x80;
      f->next_hi = 0xBF;
      return true;
    }
    if ((c & 0xC0) == 0x80 || c == 0xC0 || c == 0xC1 || c >= 0xF5) return false;
    if (f->count >= n.max_length) return false;
    ++f->count;
    f->utf8 = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : 3;
    // No overlong forms, surrogates or code points above U+10FFFF (RFC 3629).
    f->next_lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    f->next_hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    return true;
  }

  // states: 0 start, 1 after '-', 2 after leading 0, 3 int digits, 4 after '.', 5 fraction,
  // 6 after 'e', 7 after exponent sign, 8 exponent digits. count = digits in this part.
  Step Number(Frame* f, bool integer, uint8_t c) const {
    constexpr int kMaxDigits = 18;
    switch (f->state) {
      case 0:
        if (c == '-') {
          f->state = 1;
          return Step::kConsumed;
        }
        [[fallthrough]];
      case 1:
        if (c == '0') {
          f->state = 2;
          return Step::kConsumed;
        }
        if (c >= '1' && c <= '9') {
          f->state = 3;
          f->count = 1;
          return Step::kConsumed;
        }
        return Step::kReject;
      case 3:
        if (IsDigit(c)) {
          if (++f->count > kMaxDigits) return Step::kReject;
          return Step::kConsumed;
        }
        [[fallthrough]];
      case 2:
        if (!integer && c == '.') {
          f->state = 4;
          f->count = 0;
          return Step::kConsumed;
        }
        if (!integer && (c == 'e' || c == 'E')) {
          f->state = 6;
          f->count = 0;
          return Step::kConsumed;
        }
        return Step::kFinish;
      case 4:
      case 5:
        if (IsDigit(c)) {
          if (++f->count > kMaxDigits) return Step::kReject;
          f->state = 5;
          return Step::kConsumed;
        }
        if (f->state == 5 && (c == 'e' || c == 'E')) {
          f->state = 6;
          f->count = 0;
          return Step::kConsumed;
        }
        return f->state == 5 ? Step::kFinish : Step::kReject;
      case 6:
        if (c == '+' || c == '-') {
          f->state = 7;
          return Step::kConsumed;
        }
        [[fallthrough]];
      case 7:
      case 8:
        if (IsDigit(c)) {
          if (++f->count > 2) return Step::kReject;  // |exponent| < 100: stays finite
          f->state = 8;
          return Step::kConsumed;
        }
        return f->state == 8 ? Step::kFinish : Step::kReject;
    }
    return Step::kReject;
  }

  Step Literal(Frame* f, const Node& n, uint8_t c) const {
    // Alternatives are sorted, so the ones sharing the matched prefix form a range.
    int lo = f->lo, hi = f->hi;
    while (lo < hi &&
           (n.alts[lo].size() <= f->pos || static_cast<uint8_t>(n.alts[lo][f->pos]) < c)) {
      ++lo;
    }
    int new_hi = lo;
    while (new_hi < hi && n.alts[new_hi].size() > f->pos &&
           static_cast<uint8_t>(n.alts[new_hi][f->pos]) == c) {
      ++new_hi;
    }
    if (new_hi > lo) {
      f->lo = static_cast<uint16_t>(lo);
      f->hi = static_cast<uint16_t>(new_hi);
      ++f->pos;
      return Step::kConsumed;
    }
    return CanFinish(*f) ? Step::kFinish : Step::kReject;
  }

  // Object key matching against the sorted property key texts, skipping used ones.
  // Returns the completed property index, -1 while matching, -2 on reject.
  int Key(Frame* f, const Node& n, uint8_t c, bool* consumed) const {
    *consumed = false;
    int lo = f->lo, hi = f->hi;
    int new_lo = -1, new_hi = -1;
    for (int i = lo; i < hi; ++i) {
      const std::string& k = n.props[i].key_text;
      if (k.size() > f->pos && static_cast<uint8_t>(k[f->pos]) == c) {
        if (new_lo < 0) new_lo = i;
        new_hi = i + 1;
      }
    }
    if (new_lo >= 0) {
      bool any_unused = false;
      for (int i = new_lo; i < new_hi; ++i) any_unused = any_unused || !((f->used >> i) & 1);
      if (any_unused) {
        f->lo = static_cast<uint16_t>(new_lo);
        f->hi = static_cast<uint16_t>(new_hi);
        ++f->pos;
        *consumed = true;
        return -1;
      }
    }
    for (int i = lo; i < hi; ++i) {
      if (n.props[i].key_text.size() == f->pos && !((f->used >> i) & 1)) return i;
    }
    return -2;
  }

  Step Advance(Frame* f, uint8_t c, Stack* s, std::vector<Stack>* forks) const {
    const Node& n = g_.nodes[f->node];
    switch (n.kind) {
      case Kind::kLiteral:
        return Literal(f, n, c);
      case Kind::kString:
        return String(f, n, c);
      case Kind::kNumber:
        return Number(f, false, c);
      case Kind::kInteger:
        return Number(f, true, c);
      case Kind::kName: {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) ||
                        c == '_' || c == '-' || c == '.';
        if (ok && f->count < 64) {
          ++f->count;
          return Step::kConsumed;
        }
        return f->count >= 1 ? Step::kFinish : Step::kReject;
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
        const int item = n.kind == Kind::kArray ? n.child : g_.any_value[n.depth + 1];
        const int min_items = n.kind == Kind::kArray ? n.min_items : 0;
        const int max_items = n.kind == Kind::kArray ? n.max_items : 64;
        switch (f->state) {
          case 0:
            if (c != '[') return Step::kReject;
            f->state = 1;
            return Step::kConsumed;
          case 1:
          case 3:
            if (Ws(f, c)) return Step::kConsumed;
            if (f->state == 1 && c == ']' && min_items == 0) {
              f->state = 9;
              return Step::kConsumed;
            }
            if (f->count >= max_items) return Step::kReject;
            f->ws = 0;
            ++f->count;
            f->state = 2;
            return Push(s, item, forks) ? Step::kPushed : Step::kReject;
          case 2:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            if (c == ',' && f->count < max_items) {
              f->state = 3;
              return Step::kConsumed;
            }
            if (c == ']' && f->count >= min_items) {
              f->state = 9;
              return Step::kConsumed;
            }
            return Step::kReject;
          default:
            return Step::kFinish;
        }
      }
      case Kind::kObject: {
        const uint64_t all =
            n.props.size() >= 64 ? ~uint64_t{0} : (uint64_t{1} << n.props.size()) - 1;
        switch (f->state) {
          case 0:
            if (c != '{') return Step::kReject;
            f->state = 1;
            return Step::kConsumed;
          case 1:
          case 6:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            if (f->state == 1 && c == '}' && (f->used & n.required_mask) == n.required_mask) {
              f->state = 9;
              return Step::kConsumed;
            }
            if ((f->used & all) == all) return Step::kReject;
            f->state = 2;
            f->lo = 0;
            f->hi = static_cast<uint16_t>(n.props.size());
            f->pos = 0;
            [[fallthrough]];
          case 2: {
            bool consumed = false;
            const int done = Key(f, n, c, &consumed);
            if (consumed) return Step::kConsumed;
            if (done < 0) return Step::kReject;
            f->used |= uint64_t{1} << done;
            f->count = static_cast<uint16_t>(done);
            f->state = 3;
            [[fallthrough]];
          }
          case 3:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            if (c != ':') return Step::kReject;
            f->state = 4;
            return Step::kConsumed;
          case 4:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            f->state = 5;
            return Push(s, n.props[f->count].node, forks) ? Step::kPushed : Step::kReject;
          case 5:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            if (c == ',' && (f->used & all) != all) {
              f->state = 6;
              return Step::kConsumed;
            }
            if (c == '}' && (f->used & n.required_mask) == n.required_mask) {
              f->state = 9;
              return Step::kConsumed;
            }
            return Step::kReject;
          default:
            return Step::kFinish;
        }
      }
      case Kind::kAnyObject: {
        const int key = g_.syntax == Syntax::kJson ? g_.any_string : g_.name;
        switch (f->state) {
          case 0:
            if (c != '{') return Step::kReject;
            f->state = 1;
            return Step::kConsumed;
          case 1:
          case 6:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            if (f->state == 1 && c == '}') {
              f->state = 9;
              return Step::kConsumed;
            }
            if (f->count >= 64) return Step::kReject;
            ++f->count;
            f->state = 3;
            return Push(s, key, forks) ? Step::kPushed : Step::kReject;
          case 3:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            if (c != ':') return Step::kReject;
            f->state = 4;
            return Step::kConsumed;
          case 4:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            f->state = 5;
            return Push(s, g_.any_value[n.depth + 1], forks) ? Step::kPushed : Step::kReject;
          case 5:
            if (Ws(f, c)) return Step::kConsumed;
            f->ws = 0;
            if (c == ',') {
              f->state = 6;
              return Step::kConsumed;
            }
            if (c == '}') {
              f->state = 9;
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

// Advances every alternative stack over one byte; false (state unchanged) if none survives.
bool FeedState(const Grammar& g, State* state, uint8_t c) {
  Machine m(g);
  std::vector<Stack> next;
  for (const Stack& s : state->stacks) {
    Stack copy = s;
    std::vector<Stack> forks;
    if (m.Feed(&copy, c, &forks)) next.push_back(copy);
    for (Stack& f : forks) next.push_back(f);
  }
  if (next.empty()) return false;
  // Cap the alternatives (anyOf inside arrays can multiply them).
  if (next.size() > 64) next.resize(64);
  state->stacks = std::move(next);
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

StatusOr<std::shared_ptr<const Grammar>> CompileToolCallGrammar(
    const std::vector<json::Value>& tools, GrammarOptions options) {
  if (tools.empty()) return InvalidArgumentError("tool-call grammar: no tools");
  auto g = std::make_shared<Grammar>();
  g->syntax = Syntax::kGemma;
  g->options = options;
  Compiler compiler(g.get());
  compiler.AddHelpers();
  Node any_of;
  any_of.kind = Kind::kAnyOf;
  for (size_t t = 0; t < tools.size(); ++t) {
    const json::Value* function = tools[t].Find("function");
    if (function == nullptr) function = &tools[t];
    const json::Value* name = function->Find("name");
    if (name == nullptr || !name->is_string() || name->as_string().empty()) {
      return InvalidArgumentError("tool " + std::to_string(t) + ": no name");
    }
    const std::string path = "tools/" + name->as_string() + "/parameters";
    int params = -1;
    const json::Value* schema = function->Find("parameters");
    if (schema == nullptr || schema->is_null()) {
      Node empty;
      empty.kind = Kind::kObject;
      params = g->Add(empty);
    } else {
      GEMMA4_ASSIGN_OR_RETURN(params, compiler.Compile(*schema, path, 0));
    }
    Node seq;
    seq.kind = Kind::kSequence;
    seq.children = {compiler.Literal({"call:" + name->as_string()}), params,
                    compiler.Literal({"<tool_call|>"})};
    any_of.children.push_back(g->Add(std::move(seq)));
  }
  g->root = g->Add(std::move(any_of));
  return std::shared_ptr<const Grammar>(std::move(g));
}

StatusOr<std::shared_ptr<const Grammar>> CompileJsonSchemaGrammar(const json::Value& schema,
                                                                  GrammarOptions options) {
  auto g = std::make_shared<Grammar>();
  g->syntax = Syntax::kJson;
  g->options = options;
  Compiler compiler(g.get());
  compiler.AddHelpers();
  GEMMA4_ASSIGN_OR_RETURN(g->root, compiler.Compile(schema, "", 0));
  return std::shared_ptr<const Grammar>(std::move(g));
}

VocabIndex::VocabIndex(std::vector<std::string> token_texts) : num_tokens_(token_texts.size()) {
  // Sort ids by text, then build the trie in one pass (children of a node are contiguous).
  std::vector<int32_t> order;
  for (size_t i = 0; i < token_texts.size(); ++i) {
    if (!token_texts[i].empty()) order.push_back(static_cast<int32_t>(i));
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return token_texts[a] != token_texts[b] ? token_texts[a] < token_texts[b] : a < b;
  });
  next_token_.assign(token_texts.size(), -1);
  // Build with a temporary map-based trie, then flatten breadth-first.
  struct Temp {
    std::map<uint8_t, uint32_t> children;
    int32_t first_token = -1;
    int32_t last_token = -1;
  };
  std::vector<Temp> temp(1);
  for (int32_t id : order) {
    uint32_t node = 0;
    for (unsigned char c : token_texts[id]) {
      auto it = temp[node].children.find(c);
      if (it == temp[node].children.end()) {
        temp.push_back({});
        const uint32_t child = static_cast<uint32_t>(temp.size() - 1);
        temp[node].children[c] = child;
        node = child;
      } else {
        node = it->second;
      }
    }
    if (temp[node].first_token < 0) {
      temp[node].first_token = id;
    } else {
      next_token_[temp[node].last_token] = id;
    }
    temp[node].last_token = id;
  }
  nodes_.resize(temp.size());
  for (size_t i = 0; i < temp.size(); ++i) {
    nodes_[i].first_edge = static_cast<uint32_t>(edges_.size());
    nodes_[i].num_edges = static_cast<uint16_t>(temp[i].children.size());
    nodes_[i].first_token = temp[i].first_token;
    for (const auto& [byte, child] : temp[i].children) edges_.push_back({byte, child});
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
  State next = *state_;
  for (unsigned char c : text) {
    if (!FeedState(*grammar_, &next, c)) return false;
  }
  *state_ = std::move(next);
  return true;
}

bool GrammarMatcher::CanAccept(std::string_view text) const {
  State next = *state_;
  for (unsigned char c : text) {
    if (!FeedState(*grammar_, &next, c)) return false;
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
  for (int c = 0; c < 256; ++c) {
    State probe = *state_;
    if (FeedState(*grammar_, &probe, static_cast<uint8_t>(c))) return false;
  }
  return true;
}

void GrammarMatcher::FillAllowed(const VocabIndex& vocab, std::vector<bool>* allowed) const {
  allowed->assign(vocab.size(), false);
  if (vocab.nodes_.empty()) return;
  // Depth-first over the trie, pruning a subtree as soon as its prefix is rejected. Each trie
  // depth has its own state buffer, reused across siblings.
  std::vector<State> level_states(1, *state_);
  auto visit = [&](auto&& self, uint32_t node_index, size_t level) -> void {
    const VocabIndex::Node& node = vocab.nodes_[node_index];
    if (level_states.size() <= level + 1) level_states.emplace_back();
    for (uint32_t e = 0; e < node.num_edges; ++e) {
      const VocabIndex::Edge& edge = vocab.edges_[node.first_edge + e];
      level_states[level + 1] = level_states[level];
      if (!FeedState(*grammar_, &level_states[level + 1], edge.byte)) continue;
      const VocabIndex::Node& child = vocab.nodes_[edge.child];
      for (int32_t t = child.first_token; t >= 0; t = vocab.next_token_[t]) (*allowed)[t] = true;
      if (child.num_edges > 0) self(self, edge.child, level + 1);
    }
  };
  visit(visit, 0, 0);
}

}  // namespace gemma4::chat
