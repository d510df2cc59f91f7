#include "tools/cli/args.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace gemma4::cli {

ArgParser::ArgParser(std::string synopsis, std::string about)
    : synopsis_(std::move(synopsis)), about_(std::move(about)) {}

ArgParser& ArgParser::Value(std::vector<std::string> names, std::string metavar, std::string help,
                            Setter set) {
  for (const std::string& n : names) {
    if (Find(n) != nullptr) setup_error_ = InternalError("option " + n + " is declared twice");
  }
  options_.push_back({std::move(names), std::move(metavar), std::move(help), std::move(set)});
  return *this;
}

ArgParser& ArgParser::String(std::vector<std::string> names, std::string metavar, std::string help,
                             std::string* out) {
  return Value(std::move(names), std::move(metavar), std::move(help),
               [out](const std::string&, const std::string& v) {
                 *out = v;
                 return OkStatus();
               });
}

ArgParser& ArgParser::Strings(std::vector<std::string> names, std::string metavar, std::string help,
                              std::vector<std::string>* out) {
  return Value(std::move(names), std::move(metavar), std::move(help) + " (repeatable)",
               [out](const std::string&, const std::string& v) {
                 out->push_back(v);
                 return OkStatus();
               });
}

ArgParser& ArgParser::Int(std::vector<std::string> names, std::string metavar, std::string help,
                          int64_t min, int64_t max, int64_t* out) {
  return Value(std::move(names), std::move(metavar), std::move(help),
               [=](const std::string& flag, const std::string& v) {
                 return ParseInt(flag, v, min, max, out);
               });
}

ArgParser& ArgParser::Number(std::vector<std::string> names, std::string metavar, std::string help,
                             double min, double max, double* out) {
  return Value(std::move(names), std::move(metavar), std::move(help),
               [=](const std::string& flag, const std::string& v) {
                 return ParseNumber(flag, v, min, max, out);
               });
}

ArgParser& ArgParser::Flag(std::vector<std::string> names, std::string help, bool* out) {
  return Value(std::move(names), "", std::move(help),
               [out](const std::string&, const std::string&) {
                 *out = true;
                 return OkStatus();
               });
}

ArgParser& ArgParser::Positional(std::string metavar, std::string help, std::string* out) {
  positionals_.push_back({std::move(metavar), std::move(help), out});
  return *this;
}

ArgParser::Option* ArgParser::Find(const std::string& spelling) {
  for (Option& o : options_) {
    for (const std::string& n : o.names) {
      if (n == spelling) return &o;
    }
  }
  return nullptr;
}

bool ArgParser::Given(const std::string& name) const {
  for (const Option& o : options_) {
    if (o.names.front() == name) return o.given;
  }
  return false;
}

Status ArgParser::Parse(int argc, char** argv, int first) {
  GEMMA4_RETURN_IF_ERROR(setup_error_);
  // --help first, wherever it stands as an option: asking for help never reports an error in
  // the rest of the line.
  for (int i = first; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      help_requested_ = true;
      return OkStatus();
    }
    const Option* o = Find(a);
    if (o != nullptr && !o->metavar.empty()) ++i;  // skip its value
  }
  size_t next_positional = 0;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    std::optional<std::string> inline_value;  // --name=value
    Option* o = Find(a);
    if (o == nullptr && a.rfind("--", 0) == 0) {
      const size_t eq = a.find('=');
      if (eq != std::string::npos) {
        o = Find(a.substr(0, eq));
        if (o != nullptr && !o->metavar.empty()) {
          inline_value = a.substr(eq + 1);
          a = a.substr(0, eq);
        } else {
          o = nullptr;
        }
      }
    }
    if (o != nullptr) {
      o->given = true;
      if (o->metavar.empty()) {
        GEMMA4_RETURN_IF_ERROR(o->set(a, ""));
        continue;
      }
      if (!inline_value.has_value()) {
        if (i + 1 >= argc) return InvalidArgumentError("option " + a + " needs a value");
        inline_value = argv[++i];
      }
      GEMMA4_RETURN_IF_ERROR(o->set(a, *inline_value));
      continue;
    }
    if ((a.size() > 1 && a[0] == '-') || next_positional >= positionals_.size()) {
      // A word after the positionals, or one spelled like an option, is not ours.
      if (a.size() > 1 && a[0] == '-') return InvalidArgumentError("unknown argument '" + a + "'");
      return InvalidArgumentError(positionals_.empty() ? "unknown argument '" + a + "'"
                                                       : "unexpected argument '" + a + "'");
    }
    *positionals_[next_positional++].out = a;
  }
  return OkStatus();
}

std::string ArgParser::Help() const {
  std::string s = "usage: " + synopsis_ + "\n" + about_;
  if (!about_.empty() && about_.back() != '\n') s += "\n";
  std::vector<std::pair<std::string, std::string>> rows;
  for (const Slot& p : positionals_) rows.emplace_back(p.metavar, p.help);
  for (const Option& o : options_) {
    std::string left;
    for (const std::string& n : o.names) {
      if (!left.empty()) left += ", ";
      left += n;
    }
    if (!o.metavar.empty()) left += " " + o.metavar;
    rows.emplace_back(left, o.help);
  }
  rows.emplace_back("--help, -h", "print this help and exit");
  s += "\narguments:\n";
  constexpr size_t kColumn = 30;
  for (const auto& [left, help] : rows) {
    std::string line = "  " + left;
    if (line.size() + 2 > kColumn) {
      s += line + "\n";
      line.clear();
    }
    line.resize(kColumn, ' ');
    s += line + help + "\n";
  }
  return s;
}

Status ArgParser::PrintHelp() const {
  const std::string h = Help();
  std::fwrite(h.data(), 1, h.size(), stdout);
  return OkStatus();
}

Status ParseInt(const std::string& flag, const std::string& value, int64_t min, int64_t max,
                int64_t* out) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno != 0 || v < min || v > max) {
    return InvalidArgumentError(flag + " must be an integer in [" + std::to_string(min) + ", " +
                                std::to_string(max) + "], got '" + value + "'");
  }
  *out = v;
  return OkStatus();
}

Status ParseNumber(const std::string& flag, const std::string& value, double min, double max,
                   double* out) {
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || !std::isfinite(v) || !(v >= min && v <= max)) {
    char range[96];
    std::snprintf(range, sizeof(range), "[%g, %g]", min, max);
    return InvalidArgumentError(flag + " must be a number in " + range + ", got '" + value + "'");
  }
  *out = v;
  return OkStatus();
}

Status ParseIds(const std::string& flag, const std::string& value, std::vector<int32_t>* ids) {
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    if (comma == std::string::npos) comma = value.size();
    std::string item = value.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    int64_t v = 0;
    GEMMA4_RETURN_IF_ERROR(ParseInt(flag + " entry", item, 0, INT32_MAX, &v));
    ids->push_back(static_cast<int32_t>(v));
    start = comma + 1;
  }
  if (ids->empty()) return InvalidArgumentError(flag + " is empty");
  return OkStatus();
}

bool ParseIntList(const std::string& value, int64_t min, int64_t max, std::vector<int64_t>* out) {
  out->clear();
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    if (comma == std::string::npos) comma = value.size();
    int64_t v = 0;
    if (!ParseInt("", value.substr(start, comma - start), min, max, &v).ok()) return false;
    out->push_back(v);
    start = comma + 1;
  }
  return true;
}

StatusOr<KvCacheType> ParseKvCacheType(const std::string& flag, const std::string& value) {
  if (value == "auto") return KvCacheType::kAuto;
  if (value == "f32") return KvCacheType::kF32;
  if (value == "f16") return KvCacheType::kF16;
  if (value == "q8_0") return KvCacheType::kQ8_0;
  if (value == "q4_0") return KvCacheType::kQ4_0;
  return InvalidArgumentError(flag + " " + value + ": expected auto, f32, f16, q8_0 or q4_0");
}

ArgParser& AddKvCacheTypeArg(ArgParser* parser, std::string metavar, std::string help,
                             KvCacheType* out) {
  return parser->Value({"--kv-type"}, std::move(metavar), std::move(help),
                       [out](const std::string& flag, const std::string& v) -> Status {
                         GEMMA4_ASSIGN_OR_RETURN(*out, ParseKvCacheType(flag, v));
                         return OkStatus();
                       });
}

}  // namespace gemma4::cli
