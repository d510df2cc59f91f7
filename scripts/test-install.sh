#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds small consumers against it: with
# find_package(gemma4) (C against libgemma4.so, C++ against libgemma4.a) and with pkg-config.
# Usage: scripts/test-install.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build}"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
model=tests/fixtures/models/tiny-e2b/gemma4
tok=tests/fixtures/chat/tiny_tokenizer
cmake -S tests/install -B "$prefix/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer" >/dev/null
LD_LIBRARY_PATH="$prefix/lib" "$prefix/consumer/consumer_c" "$model" "$tok"
"$prefix/consumer/consumer_cxx" "$model" "$tok"
# pkg-config, as a Makefile-based project would use it.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc -std=c99 -pedantic -Werror tests/install/consumer.c $(pkg-config --cflags --libs gemma4) \
  -o "$prefix/consumer_pc"
LD_LIBRARY_PATH="$prefix/lib" "$prefix/consumer_pc" "$model" "$tok"
readelf -d "$prefix/lib/libgemma4.so" | grep -q 'SONAME.*libgemma4.so.0' || {
  echo "test-install: libgemma4.so has no SONAME libgemma4.so.0"; exit 1; }
echo "test-install: find_package (C, C++) and pkg-config consumers OK"
