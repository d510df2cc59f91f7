#!/usr/bin/env bash
# Checks libgemma4.so against the committed ABI baseline: the exported symbol list
# (capi/abi/gemma4.symbols) and abidiff over the C API's types (capi/abi/libgemma4.abi).
# Usage: scripts/check-abi.sh [build-dir] [--update]   (--update rewrites the baseline after an
# intended, versioned change)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build}"
lib="$build_dir/libgemma4.so"
[ -f "$lib" ] || { echo "check-abi: $lib not found (build first)"; exit 1; }
symbols=$(nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}' | sed 's/@.*//' | sort)
if [ "${2:-}" = "--update" ]; then
  echo "$symbols" > capi/abi/gemma4.symbols
  abidw --headers-dir capi --drop-private-types --no-corpus-path "$lib" > capi/abi/libgemma4.abi
  echo "check-abi: baseline updated"
  exit 0
fi
if ! diff -u capi/abi/gemma4.symbols <(echo "$symbols"); then
  echo "check-abi: exported symbols changed (see diff above)"
  exit 1
fi
if ! command -v abidiff >/dev/null; then
  echo "check-abi: abidiff not installed (Debian: abigail-tools)"
  exit 1
fi
set +e
abidiff --headers-dir2 capi capi/abi/libgemma4.abi "$lib"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  echo "check-abi: abidiff reports ABI changes (exit $rc)"
  exit 1
fi
echo "check-abi: $(echo "$symbols" | wc -l) symbols, ABI unchanged"
