// Tools the model may call during a Session turn. Each tool has a JSON-schema for its arguments;
// declarations are rendered into the system turn in Gemma 4's format, calls are parsed from the
// model's call syntax into JSON, and (with constrained decoding, the default) the arguments are
// generated under a grammar derived from the schema so they always parse and type-check.
// Standard library only.
#ifndef GEMMA4_TOOLS_H_
#define GEMMA4_TOOLS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gemma4/status.h"

namespace gemma4 {

struct ToolCall {
  std::string name;
  std::string arguments_json;  // a JSON object
};

struct ToolResult {
  std::string name;
  std::string response_json;  // a JSON value (object, string, number...)
  bool is_error = false;
};

class ToolRegistry {
 public:
  // Receives the arguments as a JSON object text. The returned text is used as JSON if it
  // parses, else as a string. An error Status goes back to the model as {"error": message}.
  using Callback = std::function<StatusOr<std::string>(const std::string& arguments_json)>;

  ToolRegistry();
  ~ToolRegistry();
  ToolRegistry(const ToolRegistry&);
  ToolRegistry& operator=(const ToolRegistry&);

  // parameters_schema_json: a JSON schema object ({"type": "object", "properties": ...}), or
  // empty for a tool without arguments. Names: letters, digits, '_', '-', '.', unique.
  // A schema using a keyword the call grammar cannot enforce is refused here, with the keyword
  // and its JSON-pointer path in the message (supported keywords: src/decode/grammar.h).
  Status Register(const std::string& name, const std::string& description,
                  const std::string& parameters_schema_json, Callback callback);

  size_t size() const;
  std::vector<std::string> names() const;
  // The declarations as OpenAI-style JSON: [{"type": "function", "function": {...}}, ...].
  std::string DeclarationsJson() const;
  // Runs a tool; unknown names and callback errors give is_error results, never a crash.
  ToolResult Invoke(const ToolCall& call) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gemma4

#endif  // GEMMA4_TOOLS_H_
