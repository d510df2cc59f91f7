#!/usr/bin/env python3
"""Golden Gemma 4 chat renderings from transformers' chat templating.

Run where transformers (>= 5.17) is installed:
    python3 tools/reference/make_chat_fixtures.py TEMPLATE.jinja TOKENIZER_DIR OUT.json

TEMPLATE.jinja is the official Gemma 4 chat template of the 26B/31B checkpoints ("large": with
thinking off, the generation prompt ends in an empty thought channel). The E2B/E4B ("small")
template is the same text without that block. The template itself is not stored in this repo;
only the renderings are (tests/fixtures/chat/renderings.json).
"""
import copy
import json
import sys

from transformers import AutoTokenizer

EMPTY_THOUGHT_BLOCK = """        {%- if not enable_thinking | default(false) -%}
            {{- '<|channel>thought\\n<channel|>' -}}
        {%- endif -%}
"""

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                         "description": "Temperature unit"},
                "days": {"type": "integer", "description": "Forecast days", "nullable": True},
            },
            "required": ["city"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search_files",
        "description": "Search local files.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Text to look for"},
                "Filters": {
                    "type": "object",
                    "description": "Optional filters",
                    "properties": {
                        "extensions": {"type": "array", "items": {"type": "string"},
                                       "description": "File extensions"},
                        "max_results": {"type": "number"},
                        "recursive": {"type": "boolean"},
                    },
                    "required": ["extensions"],
                },
                "paths": {
                    "type": "array",
                    "items": {"type": "object",
                              "properties": {"root": {"type": "string"},
                                             "depth": {"type": "integer"}},
                              "required": ["root"]},
                },
            },
            "required": ["query", "paths"],
        },
    },
}
NO_PARAMS = {
    "type": "function",
    "function": {"name": "get_time", "description": "Current local time."},
}
CALC = {
    "type": "function",
    "function": {
        "name": "calculate",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object",
                       "properties": {"expression": {"type": "string"}},
                       "required": ["expression"]},
        "response": {"type": "object", "description": "The result"},
    },
}


def conversations():
    c = []
    c.append(("user_only", [{"role": "user", "content": "Hello!"}], None, {}))
    c.append(("system_user", [{"role": "system", "content": "  You are terse.  "},
                              {"role": "user", "content": "  Hi there \n"}], None, {}))
    c.append(("developer_role", [{"role": "developer", "content": "Answer in French."},
                                 {"role": "user", "content": "Good morning"}], None, {}))
    c.append(("thinking_on", [{"role": "user", "content": "What is 17*23?"}], None,
              {"enable_thinking": True}))
    c.append(("thinking_on_system", [{"role": "system", "content": "Be careful."},
                                     {"role": "user", "content": "Solve x^2=4."}], None,
              {"enable_thinking": True}))
    c.append(("multi_turn_strips_thoughts", [
        {"role": "user", "content": "First question"},
        {"role": "assistant",
         "content": "<|channel>thought\nLet me think about it.<channel|>The answer is 42."},
        {"role": "user", "content": "And the second?"},
        {"role": "assistant", "content": "  Also 42.  "},
        {"role": "user", "content": "Thanks"}], None, {}))
    c.append(("multi_turn_thinking", [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "<|channel>thought\nhmm<channel|>A1"},
        {"role": "user", "content": "Q2"}], None, {"enable_thinking": True}))
    c.append(("no_generation_prompt", [{"role": "user", "content": "Hi"},
                                        {"role": "assistant", "content": "Hello."}], None,
              {"add_generation_prompt": False}))
    c.append(("tools_declared", [{"role": "user", "content": "Weather in Paris?"}],
              [WEATHER, SEARCH, NO_PARAMS, CALC], {}))
    c.append(("tools_with_system_and_thinking", [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "Find my notes"}], [SEARCH], {"enable_thinking": True}))
    c.append(("tool_call_pending", [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather",
                                              "arguments": {"city": "Paris", "unit": "celsius"}}}]}],
        [WEATHER], {}))
    c.append(("tool_call_openai_response", [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 18, \"sky\": \"clear\"}"}],
        [WEATHER], {}))
    c.append(("tool_call_native_response_then_answer", [
        {"role": "user", "content": "Weather in Paris and 2+2?"},
        {"role": "assistant",
         "tool_calls": [
             {"type": "function", "function": {"name": "get_weather",
                                               "arguments": {"city": "Paris", "days": 2}}},
             {"type": "function", "function": {"name": "calculate",
                                               "arguments": {"expression": "2+2"}}}],
         "tool_responses": [
             {"name": "get_weather", "response": {"temp": 18.5, "ok": True, "tags": ["a", "b"],
                                                  "Sky": "clear", "detail": {"wind": 3}}},
             {"name": "calculate", "response": 4}]},
        {"role": "assistant", "content": "It is 18.5 degrees and 2+2 is 4."},
        {"role": "user", "content": "Thanks!"}], [WEATHER, CALC], {}))
    c.append(("tool_call_with_reasoning", [
        {"role": "user", "content": "Search for TODO in src"},
        {"role": "assistant", "reasoning_content": "I should search.",
         "tool_calls": [{"id": "c1", "type": "function", "function": {
             "name": "search_files",
             "arguments": {"query": "TODO", "paths": [{"root": "src", "depth": 3}],
                           "Filters": {"extensions": [".cc", ".h"], "recursive": False,
                                       "max_results": 1e3}}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "3 matches"}],
        [SEARCH], {"enable_thinking": True}))
    c.append(("tool_args_json_string", [
        {"role": "user", "content": "Store this"},
        {"role": "assistant", "tool_calls": [{"type": "function", "function": {
            "name": "calculate",
            "arguments": {"expression": "{\"a\": [1, 2], \"b\": \"x,y}\"}"}}}]}],
        [CALC], {}))
    c.append(("multimodal_placeholders", [
        {"role": "user", "content": [{"type": "text", "text": "Describe"},
                                     {"type": "image"}, {"type": "audio"},
                                     {"type": "text", "text": " and compare  "},
                                     {"type": "video"}]}], None, {}))
    c.append(("unicode_and_newlines", [
        {"role": "system", "content": "Réponds en 日本語.\n\nRules:\n- short"},
        {"role": "user", "content": "Émoji 😀 test\n\n  with   spaces"}], None, {}))
    return c


def main():
    template_path, tok_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
    large = open(template_path, encoding="utf-8").read()
    assert EMPTY_THOUGHT_BLOCK in large, "template does not have the expected thinking block"
    small = large.replace(EMPTY_THOUGHT_BLOCK, "")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    records = []
    for variant, template in (("large", large), ("small", small)):
        for name, messages, tools, opts in conversations():
            kwargs = dict(tokenize=False, add_generation_prompt=opts.get("add_generation_prompt",
                                                                         True))
            if "enable_thinking" in opts:
                kwargs["enable_thinking"] = opts["enable_thinking"]
            text = tok.apply_chat_template(copy.deepcopy(messages), tools=tools,
                                           chat_template=template, **kwargs)
            records.append({
                "name": name, "variant": variant, "messages": messages, "tools": tools,
                "add_generation_prompt": kwargs["add_generation_prompt"],
                "enable_thinking": opts.get("enable_thinking", False), "text": text,
                "ids": tok(text, add_special_tokens=False)["input_ids"]})
    with open(out, "w", encoding="utf-8") as f:
        json.dump(records, f, ensure_ascii=False, indent=1)
    import transformers
    print("transformers", transformers.__version__, len(records), "renderings")
    for r in records[:3]:
        print(repr(r["text"]))


if __name__ == "__main__":
    main()
