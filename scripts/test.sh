#!/usr/bin/env bash
# Runs every test of a configured build. Usage: scripts/test.sh [build-dir]   (default: build)
set -euo pipefail
build_dir="${1:-build}"
cmake --build "$build_dir" -j"$(nproc)"
ctest --test-dir "$build_dir" --output-on-failure -j"$(nproc)"
