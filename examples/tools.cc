// An agent with two local tools: a file search and a calculator. The model's calls are
// generated under a grammar from each tool's schema, so they always parse.
//   example_tools MODEL "question" [--tokenizer PATH] [--threads N]
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "common.h"
#include "gemma4/session.h"
#include "gemma4/tools.h"

namespace {

// Pulls "key": "value" / number out of the (flat) JSON arguments the library hands over.
std::string StringField(const std::string& json, const std::string& key) {
  const std::string pattern = "\"" + key + "\":\"";
  const size_t at = json.find(pattern);
  if (at == std::string::npos) return "";
  std::string out;
  for (size_t i = at + pattern.size(); i < json.size() && json[i] != '"'; ++i) {
    if (json[i] == '\\' && i + 1 < json.size()) ++i;
    out += json[i];
  }
  return out;
}

// Recursive-descent arithmetic: + - * / ^ and parentheses.
struct Calc {
  const std::string& s;
  size_t i = 0;
  bool ok = true;
  void Space() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  double Primary() {
    Space();
    if (i < s.size() && s[i] == '(') {
      ++i;
      const double v = Sum();
      Space();
      if (i < s.size() && s[i] == ')')
        ++i;
      else
        ok = false;
      return v;
    }
    if (i < s.size() && s[i] == '-') {
      ++i;
      return -Primary();
    }
    const size_t start = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (start == i) {
      ok = false;
      return 0;
    }
    return std::stod(s.substr(start, i - start));
  }
  double Power() {
    double v = Primary();
    Space();
    if (i < s.size() && s[i] == '^') {
      ++i;
      v = std::pow(v, Power());
    }
    return v;
  }
  double Product() {
    double v = Power();
    for (Space(); i < s.size() && (s[i] == '*' || s[i] == '/'); Space()) {
      const char op = s[i++];
      const double r = Power();
      v = op == '*' ? v * r : v / r;
    }
    return v;
  }
  double Sum() {
    double v = Product();
    for (Space(); i < s.size() && (s[i] == '+' || s[i] == '-'); Space()) {
      const char op = s[i++];
      const double r = Product();
      v = op == '+' ? v + r : v - r;
    }
    return v;
  }
};

}  // namespace

int main(int argc, char** argv) {
  const examples::Args args = examples::Parse(
      argc, argv, "example_tools MODEL \"question\" [--tokenizer PATH] [--threads N]");
  const std::string question = args.positional.empty()
                                   ? "What is 17 * 23, and which files mention TODO?"
                                   : args.positional[0];
  auto model = examples::LoadOrDie(args);
  auto tools = std::make_shared<gemma4::ToolRegistry>();
  gemma4::Status s = tools->Register(
      "calculator", "Evaluate an arithmetic expression (+ - * / ^ and parentheses).",
      R"({"type": "object", "properties": {"expression": {"type": "string", "maxLength": 200}},
          "required": ["expression"]})",
      [](const std::string& json) -> gemma4::StatusOr<std::string> {
        const std::string expr = StringField(json, "expression");
        Calc c{expr};
        const double v = c.Sum();
        c.Space();
        if (!c.ok || c.i != expr.size()) {
          return gemma4::InvalidArgumentError("cannot evaluate '" + expr + "'");
        }
        return "{\"value\": " + std::to_string(v) + "}";
      });
  if (s.ok()) {
    s = tools->Register(
        "search_files", "Find files under the current directory whose text contains a string.",
        R"({"type": "object", "properties": {"text": {"type": "string", "maxLength": 100}},
            "required": ["text"]})",
        [](const std::string& json) -> gemma4::StatusOr<std::string> {
          const std::string needle = StringField(json, "text");
          std::string hits = "[";
          int n = 0;
          std::error_code ec;
          for (auto it = std::filesystem::recursive_directory_iterator(".", ec);
               it != std::filesystem::recursive_directory_iterator() && n < 20; it.increment(ec)) {
            if (ec || !it->is_regular_file(ec) || it->file_size(ec) > (1 << 20)) continue;
            std::ifstream f(it->path());
            std::string content((std::istreambuf_iterator<char>(f)), {});
            if (!needle.empty() && content.find(needle) != std::string::npos) {
              hits += (n++ ? ",\"" : "\"") + it->path().string() + "\"";
            }
          }
          return hits + "]";
        });
  }
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    return 1;
  }
  gemma4::SessionOptions so;
  so.tools = tools;
  so.system_prompt = "Use the tools when they help. Answer briefly.";
  auto session = gemma4::Session::Create(model, so);
  if (!session.ok()) return 1;
  gemma4::GenerateOptions options;
  options.max_tokens = 512;
  options.on_tool_call = [](const gemma4::ToolCall& c) {
    std::printf("[call] %s %s\n", c.name.c_str(), c.arguments_json.c_str());
  };
  options.on_tool_result = [](const gemma4::ToolResult& r) {
    std::printf("[result] %s%s\n", r.response_json.c_str(), r.is_error ? " (error)" : "");
  };
  auto reply = (*session)->Send(question, options);
  if (!reply.ok()) {
    std::fprintf(stderr, "error: %s\n", reply.status().message().c_str());
    return 1;
  }
  std::printf("%s\n", reply->text.c_str());
  return 0;
}
