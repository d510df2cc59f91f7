#!/usr/bin/env bash
# Builds llama.cpp for the comparisons in bench/ (compare_llama_cpp.py, compare_mtmd.py) from the
# source that the npm package node-llama-cpp ships (llama/gitRelease.bundle): the one copy of
# llama.cpp this machine can reach without the internet. Nothing of it is committed here.
#
#   bench/build_llama_cpp.sh [DIR]     (default /work/llama; binaries in DIR/llama.cpp/build/bin)
#
# GGML_NATIVE so llama.cpp gets this machine's best kernels (the comparison is against its best),
# flash attention is chosen per run (-fa 1 in the scripts). Also installs what the Python scripts
# in bench/ import (numpy, PIL; gguf comes from llama.cpp's own gguf-py).
set -euo pipefail
sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
missing=()
for p in npm python3-numpy python3-pil; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] && ! { [ "${missing[*]}" = npm ] && command -v npm >/dev/null; }; then
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    $(for p in "${missing[@]}"; do [ "$p" = npm ] && command -v npm >/dev/null || echo "$p"; done)
fi
dir=${1:-/work/llama}
mkdir -p "$dir"
cd "$dir"
if [ ! -d llama.cpp ]; then
  rm -rf package node-llama-cpp-*.tgz
  npm pack node-llama-cpp >/dev/null
  tar xzf node-llama-cpp-*.tgz
  git -c advice.detachedHead=false clone -q package/llama/gitRelease.bundle llama.cpp
fi
cd llama.cpp
echo "llama.cpp $(git rev-parse --short HEAD)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build build -j"$(nproc)" --target llama-bench llama-mtmd-cli llama-quantize
ls build/bin
