#!/usr/bin/env bash
# Runs every test of a configured build. Usage: scripts/test.sh [build-dir]   (default: build)
# ctest (C++ unit/golden/fuzz-replay tests, the C99 API test), then for builds without
# sanitizers: the ABI check, the install + consumer check and the Python, Rust and Go bindings.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build}"
cmake --build "$build_dir" -j"$(nproc)"
ctest --test-dir "$build_dir" --output-on-failure -j"$(nproc)"
if grep -q '^GEMMA4_SANITIZE:STRING=$' "$build_dir/CMakeCache.txt"; then
  scripts/check-abi.sh "$build_dir"
  scripts/test-install.sh "$build_dir"
  scripts/test-bindings.sh "$build_dir"
fi
