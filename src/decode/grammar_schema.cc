// JSON Schema -> grammar nodes. Supported keywords are listed in grammar.h; every other keyword
// is refused with its JSON-pointer path. allOf (and anyOf/oneOf/$ref next to other keywords)
// is handled by merging schemas at the JSON level before compiling.
#include <algorithm>
#include <bitset>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "chat/tool_syntax.h"
#include "decode/grammar.h"
#include "decode/grammar_internal.h"

namespace gemma4::chat {

using grammar_internal::HashKey;
using grammar_internal::kAdditional;
using grammar_internal::Kind;
using grammar_internal::kMaxDepth;
using grammar_internal::kMaxIntegerDigits;
using grammar_internal::kNumberFractionDigits;
using grammar_internal::Node;
using grammar_internal::Property;
using grammar_internal::StackAccepts;
using grammar_internal::Syntax;

namespace {

using json::Value;

std::string PointerToken(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string At(const std::string& path) { return path.empty() ? "/" : path; }

Status Refuse(const std::string& path, const std::string& what) {
  return InvalidArgumentError("schema at " + At(path) + ": " + what);
}

// Keywords that change nothing in the grammar.
const std::set<std::string>& AnnotationKeywords() {
  static const std::set<std::string> k = {"description", "title",     "examples", "default",
                                          "$schema",     "$comment",  "$id",      "deprecated",
                                          "readOnly",    "writeOnly", "$anchor"};
  return k;
}

const std::set<std::string>& SupportedKeywords() {
  static const std::set<std::string> k = {"type",
                                          "enum",
                                          "const",
                                          "properties",
                                          "required",
                                          "additionalProperties",
                                          "items",
                                          "prefixItems",
                                          "minItems",
                                          "maxItems",
                                          "minLength",
                                          "maxLength",
                                          "minimum",
                                          "maximum",
                                          "exclusiveMinimum",
                                          "exclusiveMaximum",
                                          "pattern",
                                          "format",
                                          "anyOf",
                                          "oneOf",
                                          "allOf",
                                          "$ref",
                                          "$defs",
                                          "definitions",
                                          "minProperties",
                                          "maxProperties",
                                          "nullable"};
  return k;
}

bool IsCombinatorOrRef(const std::string& k) {
  return k == "anyOf" || k == "oneOf" || k == "allOf" || k == "$ref";
}

// Keywords that constrain (not annotations, not $defs containers).
bool Constrains(const std::string& k) {
  return !AnnotationKeywords().count(k) && k != "$defs" && k != "definitions";
}

constexpr const char* kDatePattern =
    "^((000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-((0[13578]|1[02])-(0[1-9]|[12][0-9]|"
    "3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))|([0-9]{2}(0[48]|[2468]["
    "048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29)$";
constexpr const char* kTimePattern =
    "^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-"
    "9])$";
constexpr const char* kUuidPattern =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
constexpr const char* kEmailPattern =
    "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-"
    "]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$";

std::string FormatPattern(const std::string& format) {
  auto strip = [](std::string p) {  // ^...$ -> ...
    return p.substr(1, p.size() - 2);
  };
  if (format == "date") return kDatePattern;
  if (format == "time") return kTimePattern;
  if (format == "date-time") return "^(" + strip(kDatePattern) + ")T(" + strip(kTimePattern) + ")$";
  if (format == "uuid") return kUuidPattern;
  if (format == "email") return kEmailPattern;
  return "";
}

// ---------------------------------------------------------------------------------------------
// Exact number bounds.

constexpr __int128 Pow10(int n) {
  __int128 v = 1;
  for (int i = 0; i < n; ++i) v *= 10;
  return v;
}

// floor (or ceil) of d * 10^digits, exactly, from glibc's exact decimal expansion; clamped to
// +-limit.
__int128 ScaledRound(double d, int digits, bool ceil, __int128 limit) {
  if (std::isinf(d)) return d > 0 ? limit : -limit;
  char buf[1600];
  std::snprintf(buf, sizeof(buf), "%.1100f", d);
  const char* p = buf;
  const bool negative = *p == '-';
  if (negative) ++p;
  __int128 magnitude = 0;
  bool clamped = false;
  for (; *p != '.' && *p != 0; ++p) {
    magnitude = magnitude * 10 + (*p - '0');
    if (magnitude > limit) clamped = true;
    if (clamped) magnitude = limit;
  }
  if (*p == '.') ++p;
  bool rest = false;
  for (int i = 0; *p != 0; ++p, ++i) {
    if (i < digits) {
      if (!clamped) magnitude = magnitude * 10 + (*p - '0');
    } else if (*p != '0') {
      rest = true;
    }
  }
  if (clamped) return negative ? -limit : limit;
  if (*p == 0) {
    // fewer fraction digits printed than `digits` cannot happen with %.1100f
  }
  __int128 v = negative ? -magnitude : magnitude;
  // Truncation went toward zero; adjust to floor/ceil.
  if (rest) {
    if (ceil && !negative) v += 1;
    if (!ceil && negative) v -= 1;
  }
  return std::clamp(v, -limit, limit);
}

class Compiler {
 public:
  Compiler(Grammar* g, const Value* root_doc) : g_(g), root_(root_doc) {}

  void AddHelpers() {
    Node s;
    s.kind = Kind::kString;
    s.max_length = static_cast<uint32_t>(std::max(0, g_->options.max_string_length));
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
    Node key = s;
    key.key_string = true;
    const int key_string = g_->Add(key);
    if (g_->syntax == Syntax::kJson) {
      g_->key = key_string;
    } else {
      Node either;
      either.kind = Kind::kAnyOf;
      either.children = {g_->name, key_string};
      g_->key = g_->Add(either);
    }
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

  std::string LiteralText(const Value& v) const {
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
    return bare ? key
                : std::string(grammar_internal::kDelim) + key +
                      std::string(grammar_internal::kDelim);
  }

  int Literal(std::vector<std::string> alts) {
    std::sort(alts.begin(), alts.end());
    alts.erase(std::unique(alts.begin(), alts.end()), alts.end());
    Node n;
    n.kind = Kind::kLiteral;
    n.alts = std::move(alts);
    return g_->Add(std::move(n));
  }

  // ---- $ref

  StatusOr<const Value*> ResolvePointer(const std::string& ref, const std::string& path) const {
    if (ref.empty() || ref[0] != '#') {
      return Refuse(path + "/$ref",
                    "only local references (\"#/...\") are supported, not \"" + ref + "\"");
    }
    const Value* cur = root_;
    std::string rest = ref.substr(1);
    if (!rest.empty() && rest[0] != '/') {
      return Refuse(path + "/$ref", "anchor references (\"" + ref + "\") are not supported");
    }
    size_t i = 0;
    while (i < rest.size()) {
      size_t j = rest.find('/', i + 1);
      if (j == std::string::npos) j = rest.size();
      std::string token;
      for (size_t k = i + 1; k < j; ++k) {
        if (rest[k] == '~' && k + 1 < j) {
          token += rest[k + 1] == '1' ? '/' : '~';
          ++k;
        } else if (rest[k] == '%' && k + 2 < j) {
          token += static_cast<char>(std::stoi(rest.substr(k + 1, 2), nullptr, 16));
          k += 2;
        } else {
          token += rest[k];
        }
      }
      if (cur->is_object()) {
        cur = cur->Find(token);
      } else if (cur->is_array()) {
        char* end = nullptr;
        const long idx = std::strtol(token.c_str(), &end, 10);
        cur = (end != token.c_str() && *end == 0 && idx >= 0 &&
               static_cast<size_t>(idx) < cur->as_array().size())
                  ? &cur->as_array()[idx]
                  : nullptr;
      } else {
        cur = nullptr;
      }
      if (cur == nullptr) return Refuse(path + "/$ref", "\"" + ref + "\" does not resolve");
      i = j;
    }
    return cur;
  }

  // ---- allOf merging

  static std::vector<std::string> TypeList(const Value& t) {
    std::vector<std::string> out;
    if (t.is_string()) out.push_back(t.as_string());
    if (t.is_array()) {
      for (const Value& e : t.as_array()) out.push_back(e.as_string());
    }
    return out;
  }

  // Replaces a top-level $ref (merged with its siblings) by its target.
  StatusOr<Value> Expand(const Value& s, const std::string& path, int depth) {
    if (depth > 32) return Refuse(path, "allOf over a recursive $ref (not supported)");
    if (!s.is_object() || s.Find("$ref") == nullptr) return s;
    const Value* ref = s.Find("$ref");
    if (!ref->is_string()) return Refuse(path + "/$ref", "must be a string");
    GEMMA4_ASSIGN_OR_RETURN(const Value* target, ResolvePointer(ref->as_string(), path));
    Value::Object rest;
    for (const auto& [k, v] : s.as_object()) {
      if (k != "$ref") rest.emplace_back(k, v);
    }
    GEMMA4_ASSIGN_OR_RETURN(Value t, Expand(*target, path, depth + 1));
    return Merge(t, Value::MakeObject(std::move(rest)), path, depth + 1);
  }

  StatusOr<Value> Merge(const Value& a_in, const Value& b_in, const std::string& path, int depth) {
    if (depth > 64) return Refuse(path, "allOf nested too deeply");
    if (a_in.is_bool() && a_in.as_bool()) return b_in;
    if (b_in.is_bool() && b_in.as_bool()) return a_in;
    if ((a_in.is_bool() && !a_in.as_bool()) || (b_in.is_bool() && !b_in.as_bool())) {
      return Refuse(path + "/allOf", "a false schema: no value can match");
    }
    if (!a_in.is_object() || !b_in.is_object()) return Refuse(path, "not an object");
    GEMMA4_ASSIGN_OR_RETURN(Value a, Expand(a_in, path, depth));
    GEMMA4_ASSIGN_OR_RETURN(Value b, Expand(b_in, path, depth));
    GEMMA4_ASSIGN_OR_RETURN(a, Flatten(a, path, depth));
    GEMMA4_ASSIGN_OR_RETURN(b, Flatten(b, path, depth));
    // Distribute a combinator over the other side.
    for (const char* comb : {"anyOf", "oneOf"}) {
      for (int side = 0; side < 2; ++side) {
        const Value& x = side == 0 ? a : b;
        const Value& y = side == 0 ? b : a;
        const Value* list = x.Find(comb);
        if (list == nullptr) continue;
        if (!list->is_array() || list->as_array().empty()) {
          return Refuse(path + "/" + comb, "must be a non-empty list");
        }
        Value::Object rest;
        for (const auto& [k, v] : x.as_object()) {
          if (k != comb) rest.emplace_back(k, v);
        }
        GEMMA4_ASSIGN_OR_RETURN(Value base,
                                Merge(Value::MakeObject(std::move(rest)), y, path, depth + 1));
        Value::Array branches;
        Status first_error = OkStatus();
        for (size_t i = 0; i < list->as_array().size(); ++i) {
          auto m = Merge(list->as_array()[i], base, path + "/" + comb + "/" + std::to_string(i),
                         depth + 1);
          if (m.ok()) {
            branches.push_back(std::move(*m));
          } else if (first_error.ok()) {
            first_error = m.status();
          }
        }
        if (branches.empty()) return first_error;
        Value::Object out;
        out.emplace_back(comb, Value::MakeArray(std::move(branches)));
        return Value::MakeObject(std::move(out));
      }
    }
    Value::Object out;
    auto find_out = [&](const std::string& k) -> Value* {
      for (auto& [key, v] : out) {
        if (key == k) return &v;
      }
      return nullptr;
    };
    std::set<std::string> keys;
    for (const auto& [k, v] : a.as_object()) keys.insert(k);
    for (const auto& [k, v] : b.as_object()) keys.insert(k);
    const Value* ap_a = a.Find("additionalProperties");
    const Value* ap_b = b.Find("additionalProperties");
    for (const std::string& k : keys) {
      const Value* va = a.Find(k);
      const Value* vb = b.Find(k);
      const std::string kpath = path + "/allOf/" + PointerToken(k);
      if (k == "$defs" || k == "definitions") continue;
      if (k == "properties") continue;  // below, with additionalProperties
      if (va == nullptr || vb == nullptr) {
        out.emplace_back(k, va != nullptr ? *va : *vb);
        continue;
      }
      if (AnnotationKeywords().count(k)) {
        out.emplace_back(k, *va);
        continue;
      }
      if (k == "type") {
        std::vector<std::string> ta = TypeList(*va), tb = TypeList(*vb), both;
        for (const std::string& x : ta) {
          for (const std::string& y : tb) {
            if (x == y) {
              both.push_back(x);
            } else if ((x == "integer" && y == "number") || (x == "number" && y == "integer")) {
              both.push_back("integer");
            }
          }
        }
        std::sort(both.begin(), both.end());
        both.erase(std::unique(both.begin(), both.end()), both.end());
        if (both.empty()) return Refuse(kpath, "the branches' types have nothing in common");
        Value::Array list;
        for (const std::string& t : both) list.push_back(Value::String(t));
        out.emplace_back(k, Value::MakeArray(std::move(list)));
        continue;
      }
      if (k == "enum" || k == "const") {
        continue;  // below
      }
      if (k == "required") {
        Value::Array list = va->as_array();
        for (const Value& r : vb->as_array()) {
          bool have = false;
          for (const Value& x : list) have = have || x.Serialize() == r.Serialize();
          if (!have) list.push_back(r);
        }
        out.emplace_back(k, Value::MakeArray(std::move(list)));
        continue;
      }
      if (k == "minItems" || k == "minLength" || k == "minProperties" || k == "minimum" ||
          k == "maxItems" || k == "maxLength" || k == "maxProperties" || k == "maximum" ||
          k == "exclusiveMinimum" || k == "exclusiveMaximum") {
        if (!va->is_number() || !vb->is_number()) {
          return Refuse(kpath, "\"" + k + "\" must be a number (boolean forms cannot be merged)");
        }
        const bool take_max = k.rfind("min", 0) == 0 || k == "exclusiveMinimum";
        const bool a_wins =
            take_max ? va->as_number() >= vb->as_number() : va->as_number() <= vb->as_number();
        out.emplace_back(k, a_wins ? *va : *vb);
        continue;
      }
      if (k == "pattern") {
        Value::Array list;
        for (const Value* v : {va, vb}) {
          if (v->is_array()) {
            for (const Value& p : v->as_array()) list.push_back(p);
          } else {
            list.push_back(*v);
          }
        }
        out.emplace_back(k, Value::MakeArray(std::move(list)));
        continue;
      }
      if (k == "items" || k == "additionalProperties") {
        GEMMA4_ASSIGN_OR_RETURN(Value m, MergeMaybeBool(*va, *vb, kpath, depth));
        out.emplace_back(k, std::move(m));
        continue;
      }
      if (k == "prefixItems") {
        if (!va->is_array() || !vb->is_array()) return Refuse(kpath, "must be a list");
        const Value::Array& pa = va->as_array();
        const Value::Array& pb = vb->as_array();
        const Value* items_a = a.Find("items");
        const Value* items_b = b.Find("items");
        Value::Array list;
        for (size_t i = 0; i < std::max(pa.size(), pb.size()); ++i) {
          const Value x = i < pa.size() ? pa[i] : items_a != nullptr ? *items_a : Value::Bool(true);
          const Value y = i < pb.size() ? pb[i] : items_b != nullptr ? *items_b : Value::Bool(true);
          GEMMA4_ASSIGN_OR_RETURN(Value m, MergeMaybeBool(x, y, kpath, depth));
          list.push_back(std::move(m));
        }
        out.emplace_back(k, Value::MakeArray(std::move(list)));
        continue;
      }
      if (va->Serialize() == vb->Serialize()) {
        out.emplace_back(k, *va);
        continue;
      }
      return Refuse(kpath, "\"" + k + "\" differs between the branches (" + va->Serialize() +
                               " vs " + vb->Serialize() + ") and cannot be merged");
    }
    // enum/const: the values both allow.
    {
      std::vector<Value> values;
      bool have_list = false;
      for (const Value* s : {&a, &b}) {
        std::vector<Value> mine;
        bool constrained = false;
        if (const Value* c = s->Find("const"); c != nullptr) {
          mine.push_back(*c);
          constrained = true;
        }
        if (const Value* e = s->Find("enum"); e != nullptr && e->is_array()) {
          std::vector<Value> filtered;
          for (const Value& v : e->as_array()) {
            if (!constrained) {
              filtered.push_back(v);
            } else {
              for (const Value& m : mine) {
                if (m.Serialize() == v.Serialize()) filtered.push_back(v);
              }
            }
          }
          mine = std::move(filtered);
          constrained = true;
        }
        if (!constrained) continue;
        if (!have_list) {
          values = std::move(mine);
          have_list = true;
        } else {
          std::vector<Value> both;
          for (const Value& v : values) {
            for (const Value& m : mine) {
              if (m.Serialize() == v.Serialize()) {
                both.push_back(v);
                break;
              }
            }
          }
          values = std::move(both);
        }
      }
      if (have_list) {
        if (values.empty()) return Refuse(path + "/allOf", "enum/const: no value in common");
        out.emplace_back("enum", Value::MakeArray(std::move(values)));
      }
    }
    // properties, each under the other side's additionalProperties when it does not list it.
    const Value* pa = a.Find("properties");
    const Value* pb = b.Find("properties");
    if (pa != nullptr || pb != nullptr) {
      Value::Object props;
      std::set<std::string> names;
      if (pa != nullptr) {
        for (const auto& [k, v] : pa->as_object()) names.insert(k);
      }
      if (pb != nullptr) {
        for (const auto& [k, v] : pb->as_object()) names.insert(k);
      }
      for (const std::string& k : names) {
        const Value* x = pa != nullptr ? pa->Find(k) : nullptr;
        const Value* y = pb != nullptr ? pb->Find(k) : nullptr;
        Value xv = x != nullptr ? *x : ap_a != nullptr ? *ap_a : Value::Bool(true);
        Value yv = y != nullptr ? *y : ap_b != nullptr ? *ap_b : Value::Bool(true);
        const std::string ppath = path + "/allOf/properties/" + PointerToken(k);
        if ((xv.is_bool() && !xv.as_bool()) || (yv.is_bool() && !yv.as_bool())) {
          // Forbidden by one side's additionalProperties: must stay absent.
          bool required = false;
          for (const Value* s : {&a, &b}) {
            if (const Value* r = s->Find("required"); r != nullptr && r->is_array()) {
              for (const Value& n : r->as_array()) required = required || n.as_string() == k;
            }
          }
          if (required) {
            return Refuse(ppath, "required, but another branch's additionalProperties is false");
          }
          continue;
        }
        GEMMA4_ASSIGN_OR_RETURN(Value m, Merge(xv, yv, ppath, depth + 1));
        props.emplace_back(k, std::move(m));
      }
      out.emplace_back("properties", Value::MakeObject(std::move(props)));
    }
    (void)find_out;
    return Value::MakeObject(std::move(out));
  }

  StatusOr<Value> MergeMaybeBool(const Value& x, const Value& y, const std::string& path,
                                 int depth) {
    if (x.is_bool() && !x.as_bool()) return x;
    if (y.is_bool() && !y.as_bool()) return y;
    return Merge(x, y, path, depth + 1);
  }

  // Folds allOf (and anyOf/oneOf/$ref with sibling keywords) into one schema.
  StatusOr<Value> Flatten(const Value& s, const std::string& path, int depth) {
    if (!s.is_object()) return s;
    const Value* all = s.Find("allOf");
    if (all == nullptr) return s;
    if (!all->is_array() || all->as_array().empty()) {
      return Refuse(path + "/allOf", "must be a non-empty list");
    }
    Value::Object rest;
    for (const auto& [k, v] : s.as_object()) {
      if (k != "allOf") rest.emplace_back(k, v);
    }
    Value acc = Value::MakeObject(std::move(rest));
    for (size_t i = 0; i < all->as_array().size(); ++i) {
      const Value& branch = all->as_array()[i];
      GEMMA4_RETURN_IF_ERROR(CheckKeywords(branch, path + "/allOf/" + std::to_string(i)));
      GEMMA4_ASSIGN_OR_RETURN(acc, Merge(acc, branch, path, depth + 1));
    }
    return acc;
  }

  // ---- compilation

  Status CheckKeywords(const Value& schema, const std::string& path) const {
    if (!schema.is_object()) return OkStatus();
    for (const auto& [k, v] : schema.as_object()) {
      if (SupportedKeywords().count(k) || AnnotationKeywords().count(k)) continue;
      return InvalidArgumentError("unsupported keyword \"" + k + "\" at " + path + "/" +
                                  PointerToken(k));
    }
    return OkStatus();
  }

  StatusOr<int> Compile(const Value& schema, const std::string& path, int depth) {
    if (depth > 64) return Refuse(path, "nested too deeply");
    if (schema.is_bool()) {
      if (!schema.as_bool()) return Refuse(path, "the false schema: no value can match");
      return g_->any_value[0];
    }
    if (!schema.is_object()) return Refuse(path, "not an object");
    GEMMA4_RETURN_IF_ERROR(CheckKeywords(schema, path));
    bool has_siblings = false;
    int combinators = 0;
    for (const auto& [k, v] : schema.as_object()) {
      if (IsCombinatorOrRef(k)) {
        ++combinators;
      } else if (Constrains(k) && k != "nullable") {
        has_siblings = true;
      }
    }
    if (const Value* ref = schema.Find("$ref");
        ref != nullptr && combinators == 1 && !has_siblings) {
      if (!ref->is_string()) return Refuse(path + "/$ref", "must be a string");
      const std::string& target = ref->as_string();
      auto it = refs_.find(target);
      int node = -1;
      if (it != refs_.end()) {
        node = it->second;
      } else {
        GEMMA4_ASSIGN_OR_RETURN(const Value* resolved, ResolvePointer(target, path));
        // A placeholder first, so that recursion finds it.
        Node alias;
        alias.kind = Kind::kAnyOf;
        node = g_->Add(alias);
        refs_[target] = node;
        GEMMA4_ASSIGN_OR_RETURN(int body, Compile(*resolved, target.substr(1), depth + 1));
        g_->nodes[node].children = {body};
      }
      if (schema.Find("nullable") != nullptr && schema.Find("nullable")->as_bool()) {
        Node either;
        either.kind = Kind::kAnyOf;
        either.children = {node, NullNode()};
        return g_->Add(std::move(either));
      }
      return node;
    }
    if (schema.Find("allOf") != nullptr || (combinators > 0 && has_siblings) || combinators > 1) {
      // Merge everything into one schema (anyOf/oneOf distribute over their siblings).
      Value::Object rest;
      Value::Array parts;
      for (const auto& [k, v] : schema.as_object()) {
        if (k == "allOf") {
          if (!v.is_array()) return Refuse(path + "/allOf", "must be a list");
          for (const Value& p : v.as_array()) parts.push_back(p);
        } else if (k == "anyOf" || k == "oneOf" || k == "$ref") {
          Value::Object one;
          one.emplace_back(k, v);
          parts.push_back(Value::MakeObject(std::move(one)));
        } else {
          rest.emplace_back(k, v);
        }
      }
      Value::Object wrapper;
      wrapper.emplace_back("allOf", Value::MakeArray(std::move(parts)));
      for (auto& kv : rest) wrapper.push_back(kv);
      GEMMA4_ASSIGN_OR_RETURN(Value merged,
                              Flatten(Value::MakeObject(std::move(wrapper)), path, 0));
      return Compile(merged, path, depth + 1);
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      const Value* list = schema.Find(key);
      if (list == nullptr) continue;
      if (!list->is_array() || list->as_array().empty()) {
        return Refuse(path + "/" + key, "must be a non-empty list");
      }
      Node n;
      n.kind = Kind::kAnyOf;
      for (size_t i = 0; i < list->as_array().size(); ++i) {
        GEMMA4_ASSIGN_OR_RETURN(
            int child,
            Compile(list->as_array()[i], path + "/" + key + "/" + std::to_string(i), depth + 1));
        n.children.push_back(child);
      }
      if (schema.Find("nullable") != nullptr && schema.Find("nullable")->as_bool()) {
        n.children.push_back(NullNode());
      }
      const int id = g_->Add(std::move(n));
      if (std::string(key) == "oneOf") one_of_checks_.push_back({id, path + "/oneOf"});
      return id;
    }
    const Value* e = schema.Find("enum");
    const Value* c = schema.Find("const");
    if (e != nullptr || c != nullptr) return CompileEnum(schema, e, c, path, depth);
    return CompileTypes(schema, path, depth);
  }

  int NullNode() { return Literal({g_->syntax == Syntax::kJson ? "null" : "None"}); }

  StatusOr<int> CompileEnum(const Value& schema, const Value* e, const Value* c,
                            const std::string& path, int depth) {
    std::vector<Value> values;
    if (e != nullptr) {
      if (!e->is_array() || e->as_array().empty()) {
        return Refuse(path + "/enum", "must be a non-empty list");
      }
      values = e->as_array();
    }
    if (c != nullptr) {
      if (e != nullptr) {
        std::vector<Value> both;
        for (const Value& v : values) {
          if (v.Serialize() == c->Serialize()) both.push_back(v);
        }
        values = std::move(both);
      } else {
        values = {*c};
      }
    }
    std::vector<std::string> alts;
    for (const Value& v : values) alts.push_back(LiteralText(v));
    // Other keywords (type, maxLength, ...) still apply: keep the values they accept.
    Value::Object rest;
    bool constrained = false;
    for (const auto& [k, v] : schema.as_object()) {
      if (k == "enum" || k == "const") continue;
      rest.emplace_back(k, v);
      constrained = constrained || Constrains(k);
    }
    if (constrained) {
      GEMMA4_ASSIGN_OR_RETURN(int filter,
                              CompileTypes(Value::MakeObject(std::move(rest)), path, depth));
      std::vector<std::string> kept;
      for (std::string& a : alts) {
        if (StackAccepts(*g_, filter, a)) kept.push_back(std::move(a));
      }
      alts = std::move(kept);
    }
    if (alts.empty()) {
      return Refuse(path + (e != nullptr ? "/enum" : "/const"),
                    "no listed value satisfies the schema's other keywords");
    }
    return Literal(std::move(alts));
  }

  StatusOr<int> CompileTypes(const Value& schema, const std::string& path, int depth) {
    const Value* type = schema.Find("type");
    std::vector<std::string> types;
    if (type == nullptr) {
      auto has = [&](std::initializer_list<const char*> keys) {
        for (const char* k : keys) {
          if (schema.Find(k) != nullptr) return true;
        }
        return false;
      };
      if (has({"properties", "required", "additionalProperties", "minProperties",
               "maxProperties"})) {
        types.push_back("object");
      } else if (has({"items", "prefixItems", "minItems", "maxItems"})) {
        types.push_back("array");
      } else if (has({"pattern", "format", "minLength", "maxLength"})) {
        types.push_back("string");
      } else if (has({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})) {
        types.push_back("number");
      } else {
        const Value* nullable = schema.Find("nullable");
        (void)nullable;
        return g_->any_value[0];
      }
    } else if (type->is_string()) {
      types.push_back(type->as_string());
    } else if (type->is_array()) {
      for (const Value& t : type->as_array()) {
        if (!t.is_string()) return Refuse(path + "/type", "bad entry " + t.Serialize());
        types.push_back(t.as_string());
      }
      if (types.empty()) return Refuse(path + "/type", "empty list");
    } else {
      return Refuse(path + "/type", "must be a string or list");
    }
    const Value* nullable = schema.Find("nullable");
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

  Status Count(const Value& schema, const char* key, const std::string& path, uint64_t fallback,
               uint64_t* out) {
    *out = fallback;
    const Value* v = schema.Find(key);
    if (v == nullptr) return OkStatus();
    const double d = v->as_number();
    if (!v->is_number() || d < 0 || d != std::floor(d)) {
      return Refuse(path + "/" + key, "must be a non-negative integer");
    }
    *out = d >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(d);
    if (v->is_integer()) {
      int64_t i = 0;
      if (v->GetInt64(&i)) *out = static_cast<uint64_t>(i);
    }
    return OkStatus();
  }

  StatusOr<int> CompileString(const Value& schema, const std::string& path) {
    Node n;
    n.kind = Kind::kString;
    uint64_t min = 0, max = 0;
    GEMMA4_RETURN_IF_ERROR(Count(schema, "minLength", path, 0, &min));
    const bool has_max = schema.Find("maxLength") != nullptr;
    GEMMA4_RETURN_IF_ERROR(Count(schema, "maxLength", path,
                                 std::max<uint64_t>(g_->options.max_string_length, min), &max));
    if (max < min) return Refuse(path, "maxLength < minLength");
    n.min_length = static_cast<uint32_t>(std::min<uint64_t>(min, UINT32_MAX));
    n.max_length = static_cast<uint32_t>(std::min<uint64_t>(max, UINT32_MAX));
    if (min > UINT32_MAX) return Refuse(path + "/minLength", "over 4294967295");
    std::vector<std::pair<std::string, std::string>> patterns;  // (regex, keyword path)
    if (const Value* p = schema.Find("pattern"); p != nullptr) {
      if (p->is_string()) {
        patterns.push_back({p->as_string(), path + "/pattern"});
      } else if (p->is_array()) {  // several, from merging allOf branches
        for (const Value& x : p->as_array()) patterns.push_back({x.as_string(), path + "/pattern"});
      } else {
        return Refuse(path + "/pattern", "must be a string");
      }
    }
    if (const Value* f = schema.Find("format"); f != nullptr) {
      const std::string regex = FormatPattern(f->as_string());
      if (regex.empty()) {
        return InvalidArgumentError("unsupported format \"" + f->as_string() + "\" at " + path +
                                    "/format (supported: date, time, date-time, uuid, email)");
      }
      patterns.push_back({regex, path + "/format"});
    }
    for (const auto& [regex, where] : patterns) {
      auto dfa = CompileRegex(regex);
      if (!dfa.ok())
        return InvalidArgumentError("schema at " + where + ": " + dfa.status().message());
      if (n.dfa < 0) {
        g_->dfas.push_back(std::move(*dfa));
        n.dfa = static_cast<int>(g_->dfas.size()) - 1;
      } else {
        auto both = IntersectDfa(g_->dfas[n.dfa], *dfa);
        if (!both.ok())
          return InvalidArgumentError("schema at " + where + ": " + both.status().message());
        g_->dfas[n.dfa] = std::move(*both);
      }
    }
    if (n.dfa >= 0) {
      const ByteDfa& dfa = g_->dfas[n.dfa];
      if (dfa.min_chars[dfa.start] > n.max_length) {
        return Refuse(path, "the pattern/format needs at least " +
                                std::to_string(dfa.min_chars[dfa.start]) + " characters, over " +
                                (has_max ? "maxLength" : "the default string limit") + " (" +
                                std::to_string(n.max_length) + ")");
      }
    }
    return g_->Add(std::move(n));
  }

  StatusOr<int> CompileNumber(const Value& schema, bool integer, const std::string& path) {
    const Value* minimum = schema.Find("minimum");
    const Value* maximum = schema.Find("maximum");
    const Value* ex_min = schema.Find("exclusiveMinimum");
    const Value* ex_max = schema.Find("exclusiveMaximum");
    if (minimum == nullptr && maximum == nullptr && ex_min == nullptr && ex_max == nullptr) {
      Node n;
      n.kind = integer ? Kind::kInteger : Kind::kNumber;
      return g_->Add(std::move(n));
    }
    Node n;
    n.kind = Kind::kBoundedNumber;
    n.frac_digits = integer ? 0 : kNumberFractionDigits;
    const __int128 scale = Pow10(n.frac_digits);
    const __int128 cap = Pow10(static_cast<int>(kMaxIntegerDigits)) * scale - 1;
    __int128 lo = -cap, hi = cap;
    // One bound: `lower` (minimum side) or upper; exclusive from the keyword or draft 4's flag.
    auto apply = [&](const Value* v, bool lower, bool exclusive, const char* key) -> Status {
      if (v == nullptr) return OkStatus();
      if (!v->is_number()) return Refuse(path + "/" + key, "must be a number");
      __int128 bound = 0;
      int64_t exact = 0;
      if (integer && v->GetInt64(&exact)) {
        bound = std::clamp<__int128>(exact, -cap - 1, cap + 1);
        if (exclusive) bound += lower ? 1 : -1;
      } else {
        double d = v->as_number();
        if (!integer && v->GetInt64(&exact)) {
          // An integer bound a double cannot hold: round it toward the inside of the range.
          d = static_cast<double>(exact);
          const __int128 back = static_cast<__int128>(d);
          if (lower && back < exact) d = std::nextafter(d, INFINITY);
          if (!lower && back > exact) d = std::nextafter(d, -INFINITY);
        }
        if (exclusive) {
          if (integer) {
            // v > d  <=>  v >= floor(d) + 1 (and mirrored)
            bound = lower ? ScaledRound(d, 0, false, cap + 1) + 1
                          : ScaledRound(d, 0, true, cap + 1) - 1;
          } else {
            // The next double beyond the bound: any decimal at or past it parses (with
            // round-to-nearest) to a double strictly beyond the bound.
            d = std::nextafter(d, lower ? INFINITY : -INFINITY);
            bound = ScaledRound(d, n.frac_digits, lower, cap + 1);
          }
        } else {
          bound = ScaledRound(d, n.frac_digits, lower, cap + 1);
        }
      }
      if (lower) {
        lo = std::max(lo, bound);
      } else {
        hi = std::min(hi, bound);
      }
      return OkStatus();
    };
    const bool draft4_min = ex_min != nullptr && ex_min->is_bool();
    const bool draft4_max = ex_max != nullptr && ex_max->is_bool();
    GEMMA4_RETURN_IF_ERROR(apply(minimum, true, draft4_min && ex_min->as_bool(), "minimum"));
    GEMMA4_RETURN_IF_ERROR(apply(maximum, false, draft4_max && ex_max->as_bool(), "maximum"));
    if (!draft4_min) GEMMA4_RETURN_IF_ERROR(apply(ex_min, true, true, "exclusiveMinimum"));
    if (!draft4_max) GEMMA4_RETURN_IF_ERROR(apply(ex_max, false, true, "exclusiveMaximum"));
    lo = std::max(lo, -cap);
    hi = std::min(hi, cap);
    if (lo > hi)
      return Refuse(path, "no " + std::string(integer ? "integer" : "number") +
                              " lies within minimum/maximum");
    n.pos_lo = std::max<__int128>(lo, 0);
    n.pos_hi = hi;
    n.neg_lo = std::max<__int128>(-hi, 0);
    n.neg_hi = -lo;
    if (hi < 0) {  // only negative values: no non-negative range
      n.pos_lo = 1;
      n.pos_hi = 0;
    }
    if (lo > 0) {
      n.neg_lo = 1;
      n.neg_hi = 0;
    }
    return g_->Add(std::move(n));
  }

  StatusOr<int> CompileArray(const Value& schema, const std::string& path, int depth) {
    Node n;
    n.kind = Kind::kArray;
    GEMMA4_RETURN_IF_ERROR(Count(schema, "minItems", path, 0, &n.min_items));
    GEMMA4_RETURN_IF_ERROR(
        Count(schema, "maxItems", path, std::max<uint64_t>(64, n.min_items), &n.max_items));
    if (n.max_items < n.min_items) return Refuse(path, "maxItems < minItems");
    if (const Value* prefix = schema.Find("prefixItems"); prefix != nullptr) {
      if (!prefix->is_array()) return Refuse(path + "/prefixItems", "must be a list");
      for (size_t i = 0; i < prefix->as_array().size(); ++i) {
        GEMMA4_ASSIGN_OR_RETURN(
            int item,
            Compile(prefix->as_array()[i], path + "/prefixItems/" + std::to_string(i), depth + 1));
        n.prefix.push_back(item);
      }
    }
    const Value* items = schema.Find("items");
    if (items == nullptr) {
      n.child = g_->any_value[1];
    } else if (items->is_array()) {
      return Refuse(path + "/items",
                    "a list of schemas (draft 4-7 tuples) is not supported: use prefixItems");
    } else if (items->is_bool() && !items->as_bool()) {
      n.child = -1;
      n.max_items = std::min<uint64_t>(n.max_items, n.prefix.size());
      if (n.min_items > n.max_items) {
        return Refuse(path, "minItems exceeds the prefixItems allowed by \"items\": false");
      }
    } else {
      GEMMA4_ASSIGN_OR_RETURN(n.child, Compile(*items, path + "/items", depth + 1));
    }
    return g_->Add(std::move(n));
  }

  StatusOr<int> CompileObject(const Value& schema, const std::string& path, int depth) {
    const Value* props = schema.Find("properties");
    const Value* ap = schema.Find("additionalProperties");
    Node n;
    n.kind = Kind::kObject;
    GEMMA4_RETURN_IF_ERROR(Count(schema, "minProperties", path, 0, &n.min_props));
    GEMMA4_RETURN_IF_ERROR(Count(schema, "maxProperties", path, UINT64_MAX, &n.max_props));
    if (props != nullptr && !props->is_object()) {
      return Refuse(path + "/properties", "must be an object");
    }
    if (props == nullptr && ap == nullptr && schema.Find("required") == nullptr &&
        schema.Find("minProperties") == nullptr && schema.Find("maxProperties") == nullptr) {
      return g_->any_object[0];  // {"type": "object"}: any object
    }
    if (ap == nullptr) {
      // Not given: the grammar generates the declared properties only (a subset of what the
      // schema allows); with no `properties` at all, any object.
      if (props == nullptr) n.additional = g_->any_value[1];
    } else if (ap->is_bool()) {
      if (ap->as_bool()) n.additional = g_->any_value[1];
    } else {
      GEMMA4_ASSIGN_OR_RETURN(n.additional,
                              Compile(*ap, path + "/additionalProperties", depth + 1));
    }
    std::vector<std::string> required;
    if (const Value* req = schema.Find("required"); req != nullptr) {
      if (!req->is_array()) return Refuse(path + "/required", "must be a list");
      for (const Value& r : req->as_array()) {
        if (!r.is_string()) return Refuse(path + "/required", "entries must be strings");
        required.push_back(r.as_string());
      }
    }
    std::vector<std::pair<std::string, const Value*>> declared;
    if (props != nullptr) {
      for (const auto& [key, sub] : props->as_object()) declared.push_back({key, &sub});
    }
    for (const std::string& r : required) {
      bool found = false;
      for (const auto& d : declared) found = found || d.first == r;
      if (found) continue;
      if (n.additional < 0) {
        return Refuse(path + "/required", "\"" + r + "\" is not among the properties");
      }
      declared.push_back({r, nullptr});  // required extra key: declared with the extra schema
    }
    if (declared.size() > 64) {
      return Refuse(path + "/properties", "more than 64 properties (not supported)");
    }
    for (const auto& [key, sub] : declared) {
      Property p;
      p.key_text = KeyText(key);
      p.key_hash = HashKey(key);
      if (sub == nullptr) {
        p.node = n.additional;
      } else {
        GEMMA4_ASSIGN_OR_RETURN(
            p.node, Compile(*sub, path + "/properties/" + PointerToken(key), depth + 1));
      }
      p.required = std::find(required.begin(), required.end(), key) != required.end();
      n.props.push_back(std::move(p));
    }
    std::sort(n.props.begin(), n.props.end(),
              [](const Property& a, const Property& b) { return a.key_text < b.key_text; });
    for (size_t i = 0; i < n.props.size(); ++i) {
      if (n.props[i].required) n.required_mask |= uint64_t{1} << i;
    }
    if (n.min_props > n.max_props) return Refuse(path, "maxProperties < minProperties");
    if (n.additional < 0 && n.min_props > n.props.size()) {
      return Refuse(path + "/minProperties", "more than the properties allowed");
    }
    if (static_cast<uint64_t>(__builtin_popcountll(n.required_mask)) > n.max_props) {
      return Refuse(path + "/maxProperties", "fewer than the required properties");
    }
    return g_->Add(std::move(n));
  }

  StatusOr<int> CompileType(const Value& schema, const std::string& type, const std::string& path,
                            int depth) {
    if (type == "string") return CompileString(schema, path);
    if (type == "integer") return CompileNumber(schema, true, path);
    if (type == "number") return CompileNumber(schema, false, path);
    if (type == "boolean") return Literal({"false", "true"});
    if (type == "null") return NullNode();
    if (type == "array") return CompileArray(schema, path, depth);
    if (type == "object") return CompileObject(schema, path, depth);
    return Refuse(path + "/type", "unsupported type \"" + type + "\"");
  }

  // ---- after compilation

  void ComputeMinDepth() {
    constexpr int kInf = 1 << 20;
    std::vector<int> d(g_->nodes.size(), kInf);
    bool changed = true;
    while (changed) {
      changed = false;
      for (size_t i = 0; i < g_->nodes.size(); ++i) {
        const Node& n = g_->nodes[i];
        int v = 1;
        switch (n.kind) {
          case Kind::kAnyOf:
            v = kInf;
            for (int c : n.children) v = std::min(v, d[c]);
            break;
          case Kind::kSequence:
            for (int c : n.children) v = std::max(v, 1 + d[c]);
            break;
          case Kind::kArray:
            for (uint64_t k = 0; k < n.min_items; ++k) {
              const int item = k < n.prefix.size() ? n.prefix[k] : n.child;
              if (item < 0) {
                v = kInf;
                break;
              }
              v = std::max(v, 1 + d[item]);
              if (k >= n.prefix.size()) break;
            }
            break;
          case Kind::kObject:
            for (size_t k = 0; k < n.props.size(); ++k) {
              if (n.props[k].required) v = std::max(v, 1 + d[n.props[k].node]);
            }
            if (n.min_props > 0) {
              // Enough properties whose values fit must exist: use the cheapest ones.
              std::vector<int> costs;
              for (const Property& p : n.props) costs.push_back(d[p.node]);
              std::sort(costs.begin(), costs.end());
              if (n.additional >= 0) {
                costs.resize(std::max<size_t>(costs.size(), n.min_props), d[n.additional]);
                std::sort(costs.begin(), costs.end());
              }
              if (costs.size() >= n.min_props) {
                v = std::max(v, 1 + costs[n.min_props - 1]);
              } else {
                v = kInf;
              }
            }
            break;
          default:
            break;
        }
        v = std::min(v, kInf);
        if (v != d[i]) {
          d[i] = v;
          changed = true;
        }
      }
    }
    for (size_t i = 0; i < g_->nodes.size(); ++i) g_->nodes[i].min_depth = d[i];
  }

  std::bitset<256> First(int node, int budget) const {
    std::bitset<256> out;
    if (budget <= 0) {
      out.set();
      return out;
    }
    const Node& n = g_->nodes[node];
    switch (n.kind) {
      case Kind::kLiteral:
        for (const std::string& a : n.alts) {
          if (!a.empty()) out.set(static_cast<uint8_t>(a[0]));
        }
        break;
      case Kind::kString:
        out.set(g_->syntax == Syntax::kJson ? '"' : '<');
        break;
      case Kind::kNumber:
      case Kind::kInteger:
      case Kind::kBoundedNumber:
        out.set('-');
        for (int c = '0'; c <= '9'; ++c) out.set(c);
        break;
      case Kind::kArray:
      case Kind::kAnyArray:
        out.set('[');
        break;
      case Kind::kObject:
      case Kind::kAnyObject:
        out.set('{');
        break;
      case Kind::kAnyOf:
        for (int c : n.children) out |= First(c, budget - 1);
        break;
      default:
        out.set();
    }
    return out;
  }

  int Deref(int node) const {
    for (int i = 0; i < 64; ++i) {
      const Node& n = g_->nodes[node];
      if (n.kind != Kind::kAnyOf || n.children.size() != 1) break;
      node = n.children[0];
    }
    return node;
  }

  // Conservative: true only when no value can match both.
  bool Disjoint(int a, int b, int budget) const {
    if (budget <= 0) return false;
    a = Deref(a);
    b = Deref(b);
    if ((First(a, 16) & First(b, 16)).none()) return true;
    const Node& x = g_->nodes[a];
    const Node& y = g_->nodes[b];
    if (x.kind == Kind::kLiteral && y.kind == Kind::kLiteral) {
      // Compare as values: 1 and 1.0 are equal.
      for (const std::string& s : x.alts) {
        for (const std::string& t : y.alts) {
          if (s == t) return false;
          auto p = json::Parse(s), q = json::Parse(t);
          if (p.ok() && q.ok() && p->is_number() && q->is_number() &&
              p->as_number() == q->as_number()) {
            return false;
          }
        }
      }
      return true;
    }
    if (x.kind == Kind::kLiteral || y.kind == Kind::kLiteral) {
      const Node& lit = x.kind == Kind::kLiteral ? x : y;
      const int other = x.kind == Kind::kLiteral ? b : a;
      for (const std::string& s : lit.alts) {
        if (StackAccepts(*g_, other, s)) return false;
      }
      return true;
    }
    if (x.kind == Kind::kAnyOf || y.kind == Kind::kAnyOf) {
      const Node& u = x.kind == Kind::kAnyOf ? x : y;
      const int other = x.kind == Kind::kAnyOf ? b : a;
      for (int c : u.children) {
        if (!Disjoint(c, other, budget - 1)) return false;
      }
      return true;
    }
    if (x.kind == Kind::kObject && y.kind == Kind::kObject) {
      // A discriminator: a property both require whose values are disjoint.
      for (const Property& p : x.props) {
        if (!p.required) continue;
        for (const Property& q : y.props) {
          if (q.required && q.key_text == p.key_text && Disjoint(p.node, q.node, budget - 1)) {
            return true;
          }
        }
      }
    }
    return false;
  }

  Status Finish(int root, const std::string& path) {
    ComputeMinDepth();
    for (const auto& [node, where] : one_of_checks_) {
      const Node& n = g_->nodes[node];
      for (size_t i = 0; i < n.children.size(); ++i) {
        for (size_t j = i + 1; j < n.children.size(); ++j) {
          if (!Disjoint(n.children[i], n.children[j], 8)) {
            return InvalidArgumentError(
                "schema at " + where + ": branches " + std::to_string(i) + " and " +
                std::to_string(j) +
                " may both match a value (oneOf needs provably exclusive branches: different "
                "types, disjoint enum/const values, or a required property with disjoint "
                "values); use anyOf");
          }
        }
      }
    }
    if (g_->nodes[root].min_depth > kMaxDepth) {
      return Refuse(path, "no finite value fits the nesting limit of " + std::to_string(kMaxDepth) +
                              " (recursive $ref without a base case?)");
    }
    return OkStatus();
  }

 private:
  Grammar* g_;
  const Value* root_;
  std::map<std::string, int> refs_;
  std::vector<std::pair<int, std::string>> one_of_checks_;
};

}  // namespace

StatusOr<std::shared_ptr<const Grammar>> CompileToolCallGrammar(const std::vector<Value>& tools,
                                                                GrammarOptions options) {
  if (tools.empty()) return InvalidArgumentError("tool-call grammar: no tools");
  auto g = std::make_shared<Grammar>();
  g->syntax = Syntax::kGemma;
  g->options = options;
  Node any_of;
  any_of.kind = Kind::kAnyOf;
  std::vector<std::pair<int, std::string>> roots;
  // Each tool's schema is its own $ref document; the compilers share the node graph.
  std::vector<std::unique_ptr<Compiler>> compilers;
  for (size_t t = 0; t < tools.size(); ++t) {
    const Value* function = tools[t].Find("function");
    if (function == nullptr) function = &tools[t];
    const Value* name = function->Find("name");
    if (name == nullptr || !name->is_string() || name->as_string().empty()) {
      return InvalidArgumentError("tool " + std::to_string(t) + ": no name");
    }
    const std::string path = "tools/" + name->as_string() + "/parameters";
    const Value* schema = function->Find("parameters");
    compilers.push_back(std::make_unique<Compiler>(g.get(), schema));
    Compiler& compiler = *compilers.back();
    if (t == 0) compiler.AddHelpers();
    int params = -1;
    if (schema == nullptr || schema->is_null()) {
      Node empty;
      empty.kind = Kind::kObject;
      params = g->Add(empty);
    } else {
      auto compiled = compiler.Compile(*schema, "", 0);
      if (!compiled.ok()) {
        return InvalidArgumentError("tool \"" + name->as_string() +
                                    "\" parameters: " + compiled.status().message());
      }
      params = *compiled;
    }
    Node seq;
    seq.kind = Kind::kSequence;
    seq.children = {compiler.Literal({"call:" + name->as_string()}), params,
                    compiler.Literal({"<tool_call|>"})};
    const int id = g->Add(std::move(seq));
    any_of.children.push_back(id);
    roots.push_back({id, path});
  }
  g->root = g->Add(std::move(any_of));
  for (size_t t = 0; t < compilers.size(); ++t) {
    Status s = compilers[t]->Finish(roots[t].first, "");
    if (!s.ok()) return InvalidArgumentError(roots[t].second + ": " + s.message());
  }
  return std::shared_ptr<const Grammar>(std::move(g));
}

StatusOr<std::shared_ptr<const Grammar>> CompileJsonSchemaGrammar(const Value& schema,
                                                                  GrammarOptions options) {
  auto g = std::make_shared<Grammar>();
  g->syntax = Syntax::kJson;
  g->options = options;
  Compiler compiler(g.get(), &schema);
  compiler.AddHelpers();
  GEMMA4_ASSIGN_OR_RETURN(g->root, compiler.Compile(schema, "", 0));
  GEMMA4_RETURN_IF_ERROR(compiler.Finish(g->root, ""));
  return std::shared_ptr<const Grammar>(std::move(g));
}

}  // namespace gemma4::chat
