#!/usr/bin/env python3
"""Checks that the library's #include lines only point down the layers (docs/architecture.md).

    base <- runtime <- formats, quant <- kernels <- ops <- model <- media, vision, audio
         <- tokenizer, chat, prompt, decode <- api <- capi

A file under src/<dir>/ (or capi/) may include headers of its own directory and of any lower
layer; a header of a higher layer, or of another directory on the same layer that is not listed
in LATERAL, is an error. Public headers (include/gemma4/*.h) count as the layer that implements
them, and may include only the standard library and each other. Includes in tests/, tools/,
bench/, examples/ and fuzz/ are not checked: they sit above everything.

Usage: check-layers.py [REPO_ROOT]   (exit 0: clean; 1: violations, one line each)
       check-layers.py --self-test     (the check flags an upward and a sideways include)
"""
import os
import re
import sys

LAYERS = [
    ["base"],
    ["runtime"],
    ["formats", "quant"],
    ["kernels"],
    ["ops"],
    ["model"],
    ["media", "vision", "audio"],
    ["tokenizer", "chat", "prompt", "decode"],
    ["api"],
    ["capi"],
]
LAYER_OF = {d: i for i, names in enumerate(LAYERS) for d in names}

# Directories on one layer that may include each other's headers, in the direction given.
LATERAL = {
    ("vision", "media"),  # preprocessing decodes and resizes images
    ("audio", "media"),  # feature extraction reads decoded audio
    ("prompt", "chat"),  # the prompt is rendered through the chat format
    ("prompt", "tokenizer"),
    ("prompt", "decode"),
    ("decode", "chat"),  # grammars constrain tool calls written in the chat's tool syntax
    ("decode", "tokenizer"),  # the grammar's vocabulary index reads token strings
    ("chat", "tokenizer"),
}

# Public headers, by the directory that implements them.
PUBLIC_HEADER_LAYER = {
    "gemma4/status.h": "base",
    "gemma4/sampler.h": "decode",
    "gemma4/tokenizer.h": "tokenizer",
    "gemma4/tools.h": "api",
    "gemma4/model.h": "api",
    "gemma4/session.h": "api",
    "gemma4.h": "capi",
}

INCLUDE = re.compile(r'^\s*#\s*include\s+([<"])([^>"]+)[>"]')


def include_dir(path):
    """The directory (layer name) an #include "..." path points into, or None if outside src/."""
    if path in PUBLIC_HEADER_LAYER:
        return PUBLIC_HEADER_LAYER[path]
    head = path.split("/", 1)[0]
    return head if "/" in path and head in LAYER_OF else None


def check(root):
    errors = []
    for base, owner_of in (("src", None), ("capi", "capi")):
        top = os.path.join(root, base)
        for dirpath, _, files in os.walk(top):
            for name in sorted(files):
                if not name.endswith((".h", ".cc", ".c")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                owner = owner_of or os.path.relpath(dirpath, top).split(os.sep)[0]
                if owner not in LAYER_OF:
                    errors.append(f"{rel}: directory '{owner}' has no layer in "
                                  "scripts/check-layers.py (add it to LAYERS)")
                    continue
                with open(path, encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m or m.group(1) != '"':
                            continue
                        target = include_dir(m.group(2))
                        if target is None or target == owner:
                            continue
                        if LAYER_OF[target] < LAYER_OF[owner]:
                            continue
                        if LAYER_OF[target] == LAYER_OF[owner] and (owner, target) in LATERAL:
                            continue
                        errors.append(f"{rel}:{lineno}: {owner} (layer {LAYER_OF[owner]}) "
                                      f"includes {m.group(2)} ({target}, layer "
                                      f"{LAYER_OF[target]})")
    public = os.path.join(root, "include", "gemma4")
    for name in sorted(os.listdir(public)):
        path = os.path.join(public, name)
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if m and m.group(1) == '"' and not m.group(2).startswith("gemma4/"):
                    errors.append(f"include/gemma4/{name}:{lineno}: a public header includes "
                                  f"{m.group(2)} (only the standard library and gemma4/*.h)")
    return errors


def self_test():
    import tempfile
    with tempfile.TemporaryDirectory() as root:
        files = {
            "include/gemma4/status.h": "#include <string>\n",
            "src/base/json.h": '#include "gemma4/status.h"\n',
            "src/ops/ops.h": '#include "base/json.h"\n#include "model/config.h"\n',
            "src/formats/gguf.h": '#include "quant/quant.h"\n',
            "src/model/config.h": '#include "ops/ops.h"\n',
        }
        for rel, text in files.items():
            os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
                f.write(text)
        os.makedirs(os.path.join(root, "capi"))
        errors = check(root)
        expected = ["src/formats/gguf.h:1:", "src/ops/ops.h:2:"]
        found = sorted(e.split(" ", 1)[0] for e in errors)
        if found != expected:
            print(f"self-test: expected violations at {expected}, got {errors}")
            return 1
    print("self-test: the upward and the sideways include are flagged, nothing else")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    errors = check(os.path.abspath(root))
    for e in errors:
        print(e)
    if errors:
        print(f"{len(errors)} include(s) point up the layers; see docs/architecture.md")
        return 1
    print("layers: every include points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
