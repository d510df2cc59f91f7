// Random walks through schema grammars, for the independent check in grammar_validate.py.
// Usage: grammar_walk CASES.json SEEDS
// CASES.json: [{"name": ..., "mode": "json" | "tool", "schema": {...}}, ...]
// For every case and seed 0..SEEDS-1, starts a matcher and repeatedly picks a random token
// among those FillAllowed allows (a vocabulary of all single bytes plus multi-byte pieces),
// until the grammar is complete. Prints one JSON line per walk:
//   {"name", "seed", "status": "complete" | "dead_end" | "step_limit", "text",
//    "value": the parsed document (json) or the call's arguments (tool)}
// A dead end (nothing allowed before completion) or an output our own parser rejects is a
// failure the Python side reports; the value is validated there with `jsonschema`.
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/json.h"
#include "chat/tool_syntax.h"
#include "decode/grammar.h"

namespace {

using gemma4::json::Value;

std::vector<std::string> WalkVocabulary() {
  std::vector<std::string> v;
  for (int b = 1; b < 256; ++b) v.push_back(std::string(1, static_cast<char>(b)));
  for (const char* piece :
       {"<|\"|>", "<tool_call|>", "call:", "true", "false",        "null",   "None",
        "\":",    "\",\"",        "{\"",   "\"}",  "],",           "é",      "日本",
        "2024-",  "-02-29",       "T12:",  ":00Z", "@example.com", "00",     "12",
        "abc",    "-1",           "0.5",   "e5",   "\\n",          "\\u00e9"}) {
    v.push_back(piece);
  }
  return v;
}

std::string Escape(const std::string& s) {
  std::string out;
  gemma4::json::AppendQuoted(s, &out);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: grammar_walk CASES.json SEEDS\n");
    return 2;
  }
  std::ifstream in(argv[1]);
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto cases = gemma4::json::Parse(buffer.str(), argv[1]);
  if (!cases.ok() || !cases->is_array()) {
    std::fprintf(stderr, "%s\n", std::string(cases.status().message()).c_str());
    return 2;
  }
  const int seeds = std::atoi(argv[2]);
  const std::vector<std::string> texts = WalkVocabulary();
  const gemma4::chat::VocabIndex vocab(texts);
  for (const Value& c : cases->as_array()) {
    const std::string name = c.Find("name")->as_string();
    const bool tool = c.Find("mode")->as_string() == "tool";
    const Value& schema = *c.Find("schema");
    gemma4::StatusOr<std::shared_ptr<const gemma4::chat::Grammar>> grammar =
        gemma4::InvalidArgumentError("unset");
    if (tool) {
      Value::Object function;
      function.emplace_back("name", Value::String("f"));
      function.emplace_back("parameters", schema);
      grammar = gemma4::chat::CompileToolCallGrammar({Value::MakeObject(std::move(function))});
    } else {
      grammar = gemma4::chat::CompileJsonSchemaGrammar(schema);
    }
    if (!grammar.ok()) {
      std::printf("{\"name\":%s,\"seed\":-1,\"status\":\"refused\",\"text\":%s}\n",
                  Escape(name).c_str(), Escape(std::string(grammar.status().message())).c_str());
      continue;
    }
    for (int seed = 0; seed < seeds; ++seed) {
      std::mt19937 rng(static_cast<uint32_t>(seed));
      gemma4::chat::GrammarMatcher m(*grammar);
      std::string out;
      std::vector<bool> allowed;
      std::string status = "step_limit";
      for (int step = 0; step < 20000; ++step) {
        if (m.IsComplete() || (m.CanEnd() && rng() % 4 == 0)) {
          status = "complete";
          break;
        }
        m.FillAllowed(vocab, &allowed);
        std::vector<int> choices;
        for (size_t t = 0; t < allowed.size(); ++t) {
          if (allowed[t]) choices.push_back(static_cast<int>(t));
        }
        if (choices.empty()) {
          status = "dead_end";
          break;
        }
        const int pick = choices[rng() % choices.size()];
        if (!m.Accept(texts[pick])) {
          status = "accept_failed";
          break;
        }
        out += texts[pick];
      }
      std::string value = "null";
      if (status == "complete") {
        if (tool) {
          const std::string suffix = "<tool_call|>";
          if (out.size() < suffix.size() ||
              out.compare(out.size() - suffix.size(), suffix.size(), suffix) != 0) {
            status = "unterminated_call";
          } else {
            auto call = gemma4::chat::ParseToolCall(out.substr(0, out.size() - suffix.size()));
            if (call.ok()) {
              value = call->arguments.Serialize();
            } else {
              status = "parse_error: " + std::string(call.status().message());
            }
          }
        } else {
          auto parsed = gemma4::json::Parse(out);
          if (parsed.ok()) {
            value = parsed->Serialize();
          } else {
            status = "parse_error: " + std::string(parsed.status().message());
          }
        }
      }
      std::printf("{\"name\":%s,\"seed\":%d,\"status\":%s,\"text\":%s,\"value\":%s}\n",
                  Escape(name).c_str(), seed, Escape(status).c_str(), Escape(out).c_str(),
                  value.c_str());
    }
  }
  return 0;
}
