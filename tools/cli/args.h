// One command-line parser for every gemma4 command: options with values (repeatable or not),
// flags, positional arguments, range-checked numbers, and `--help` built from the same table
// that parses, so the help a command prints always lists exactly the options it accepts.
#ifndef GEMMA4_TOOLS_CLI_ARGS_H_
#define GEMMA4_TOOLS_CLI_ARGS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gemma4/model.h"
#include "gemma4/status.h"

namespace gemma4::cli {

class ArgParser {
 public:
  // Receives the value of an option and the spelling the user typed (so errors name it).
  using Setter = std::function<Status(const std::string& flag, const std::string& value)>;

  // `synopsis`: the command line in brief ("gemma4 info --model PATH"); `about`: what the
  // command does (one or more lines, printed under the synopsis by --help).
  ArgParser(std::string synopsis, std::string about);

  // Options; `names` are the spellings ("--threads", "-t"), the first one is the option's name
  // in the help and in Given(). A value option given twice keeps the last value.
  ArgParser& Value(std::vector<std::string> names, std::string metavar, std::string help,
                   Setter set);
  ArgParser& String(std::vector<std::string> names, std::string metavar, std::string help,
                    std::string* out);
  // Repeatable: every value, in order.
  ArgParser& Strings(std::vector<std::string> names, std::string metavar, std::string help,
                     std::vector<std::string>* out);
  // Integers in [min, max] and numbers in [min, max]; anything else is an error naming the flag.
  ArgParser& Int(std::vector<std::string> names, std::string metavar, std::string help, int64_t min,
                 int64_t max, int64_t* out);
  ArgParser& Number(std::vector<std::string> names, std::string metavar, std::string help,
                    double min, double max, double* out);
  ArgParser& Flag(std::vector<std::string> names, std::string help, bool* out);
  // Positional arguments, filled in the order they are declared; a word beginning with '-' is
  // always taken as an option.
  ArgParser& Positional(std::string metavar, std::string help, std::string* out);

  // Parses argv[first..argc). `--help` / `-h` anywhere an option may stand ends parsing with
  // help_requested() set (and nothing else checked).
  Status Parse(int argc, char** argv, int first = 2);
  bool help_requested() const { return help_requested_; }
  // Whether the option (by its first name) appeared on the command line.
  bool Given(const std::string& name) const;

  std::string Help() const;
  // Prints Help() on stdout; returns OkStatus so a command can `return parser.PrintHelp();`.
  Status PrintHelp() const;

 private:
  struct Option {
    std::vector<std::string> names;
    std::string metavar;  // empty: a flag
    std::string help;
    Setter set;
    bool given = false;
  };
  struct Slot {
    std::string metavar;
    std::string help;
    std::string* out;
  };
  Option* Find(const std::string& spelling);

  std::string synopsis_, about_;
  std::vector<Option> options_;
  std::vector<Slot> positionals_;
  bool help_requested_ = false;
  Status setup_error_;  // an option declared twice: a bug in the command, reported by Parse
};

// "--flag must be an integer in [min, max], got 'v'" on failure.
Status ParseInt(const std::string& flag, const std::string& value, int64_t min, int64_t max,
                int64_t* out);
Status ParseNumber(const std::string& flag, const std::string& value, double min, double max,
                   double* out);
// Comma-separated token ids ("2,17,33"; spaces around entries allowed), each in [0, 2^31).
Status ParseIds(const std::string& flag, const std::string& value, std::vector<int32_t>* ids);
// Comma-separated integers ("1,2,4"), each in [min, max]; false on anything else (an empty
// entry, a word, a number out of range), leaving the message to the caller.
bool ParseIntList(const std::string& value, int64_t min, int64_t max, std::vector<int64_t>* out);
// --kv-type auto|f32|f16|q8_0|q4_0.
StatusOr<KvCacheType> ParseKvCacheType(const std::string& flag, const std::string& value);
// Declares --kv-type (parsed by ParseKvCacheType into *out); every command that takes it
// declares it through here, with its own metavar and help.
ArgParser& AddKvCacheTypeArg(ArgParser* parser, std::string metavar, std::string help,
                             KvCacheType* out);

}  // namespace gemma4::cli

#endif  // GEMMA4_TOOLS_CLI_ARGS_H_
