#!/usr/bin/env bash
# Installs the Debian packages gemma4 builds and tests with, then configures and builds.
# Usage: scripts/setup-debian.sh [build-dir]   (default: build)
set -euo pipefail
build_dir="${1:-build}"
sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
packages=(build-essential cmake pkg-config ninja-build lld
          libxsimd-dev libsentencepiece-dev libgtest-dev libgmock-dev libbenchmark-dev clang-format
          libpng-dev libjpeg-dev libwebp-dev libsndfile1-dev libsoxr-dev
          libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
          abigail-tools python3 python3-venv python3-pytest python3-jsonschema cargo golang-go)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build_dir" -j"$(nproc)"
