#!/usr/bin/env bash
# Rebuilds tests/fixtures/ollama: Ollama-layout one-file GGUFs of two tiny checkpoints.
# The text part is `gemma4 quantize --type f32` of the checkpoint with the tiny media
# tokenizer beside it (its vocabulary has the media tokens the fixtures' ids use); the towers
# are converted from the safetensors by make_ollama_fixtures.py, by Ollama's own rules.
# Usage: tools/reference/make_ollama_fixtures.sh [build-dir]  (needs llama.cpp's gguf-py on
# PYTHONPATH, numpy; PYTHON picks the interpreter)
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build}"
fixtures=tests/fixtures
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$fixtures/ollama"
for pair in audio/tiny-e2b-audio:tiny-e2b-ollama vision/tiny-26b-vision:tiny-26b-ollama; do
  src="${pair%%:*}" out="${pair##*:}"
  dir="$tmp/$(basename "$src")"
  mkdir -p "$dir"
  for f in "$fixtures/$src"/*.json "$fixtures/$src/model.safetensors" \
           "$fixtures/vision/tokenizer/tokenizer.json"; do
    ln -s "$PWD/$f" "$dir/"
  done
  "$build/gemma4" quantize "$dir" "$tmp/$out-text.gguf" --type f32
  "${PYTHON:-python3}" tools/reference/make_ollama_fixtures.py "$fixtures/$src" "$tmp/$out-text.gguf" \
    "$fixtures/ollama/$out.gguf"
done
