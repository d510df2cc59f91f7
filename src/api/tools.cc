#include "gemma4/tools.h"

#include <algorithm>

#include "base/json.h"
#include "decode/grammar.h"

namespace gemma4 {

struct ToolRegistry::Impl {
  struct Tool {
    std::string name;
    json::Value declaration;  // {"type": "function", "function": {...}}
    Callback callback;
  };
  std::vector<Tool> tools;
};

ToolRegistry::ToolRegistry() : impl_(std::make_unique<Impl>()) {}
ToolRegistry::~ToolRegistry() = default;
ToolRegistry::ToolRegistry(const ToolRegistry& other)
    : impl_(std::make_unique<Impl>(*other.impl_)) {}
ToolRegistry& ToolRegistry::operator=(const ToolRegistry& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(*other.impl_);
  return *this;
}

Status ToolRegistry::Register(const std::string& name, const std::string& description,
                              const std::string& parameters_schema_json, Callback callback) {
  if (name.empty() || name.size() > 128) {
    return InvalidArgumentError("tool name must have 1 to 128 characters");
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) {
      return InvalidArgumentError("tool name \"" + name +
                                  "\": only letters, digits, '_', '-' and '.' are allowed");
    }
  }
  for (const Impl::Tool& t : impl_->tools) {
    if (t.name == name) return InvalidArgumentError("tool \"" + name + "\" is already registered");
  }
  if (!callback) return InvalidArgumentError("tool \"" + name + "\": no callback");
  json::Value::Object function;
  function.emplace_back("name", json::Value::String(name));
  function.emplace_back("description", json::Value::String(description));
  if (!parameters_schema_json.empty()) {
    auto schema = json::Parse(parameters_schema_json, "tool \"" + name + "\" parameters");
    if (!schema.ok()) return schema.status();
    if (!schema->is_object()) {
      return InvalidArgumentError("tool \"" + name + "\": the parameters schema is not an object");
    }
    function.emplace_back("parameters", std::move(*schema));
  }
  json::Value::Object declaration;
  declaration.emplace_back("type", json::Value::String("function"));
  declaration.emplace_back("function", json::Value::MakeObject(std::move(function)));
  json::Value declared = json::Value::MakeObject(std::move(declaration));
  // Refuse now what the call grammar cannot enforce (unsupported keywords, bad $ref, ...),
  // rather than failing every Send later.
  if (auto grammar = chat::CompileToolCallGrammar({declared}); !grammar.ok()) {
    return grammar.status();
  }
  impl_->tools.push_back({name, std::move(declared), std::move(callback)});
  return OkStatus();
}

size_t ToolRegistry::size() const { return impl_->tools.size(); }

std::vector<std::string> ToolRegistry::names() const {
  std::vector<std::string> out;
  for (const Impl::Tool& t : impl_->tools) out.push_back(t.name);
  return out;
}

std::string ToolRegistry::DeclarationsJson() const {
  json::Value::Array list;
  for (const Impl::Tool& t : impl_->tools) list.push_back(t.declaration);
  return json::Value::MakeArray(std::move(list)).Serialize();
}

ToolResult ToolRegistry::Invoke(const ToolCall& call) const {
  ToolResult result;
  result.name = call.name;
  auto error = [&](const std::string& message) {
    json::Value::Object o;
    o.emplace_back("error", json::Value::String(message));
    result.response_json = json::Value::MakeObject(std::move(o)).Serialize();
    result.is_error = true;
    return result;
  };
  const auto it = std::find_if(impl_->tools.begin(), impl_->tools.end(),
                               [&](const Impl::Tool& t) { return t.name == call.name; });
  if (it == impl_->tools.end()) return error("unknown tool \"" + call.name + "\"");
  StatusOr<std::string> out = [&]() -> StatusOr<std::string> {
    try {
      return it->callback(call.arguments_json);
    } catch (...) {
      // A throwing callback must not unwind through the library (and the C ABI above it).
      return InternalError("tool \"" + call.name + "\" threw an exception");
    }
  }();
  if (!out.ok()) return error(out.status().message());
  auto parsed = json::Parse(*out, "tool result");
  result.response_json = parsed.ok() ? parsed->Serialize() : json::Value::String(*out).Serialize();
  return result;
}

}  // namespace gemma4
