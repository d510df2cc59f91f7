#!/usr/bin/env bash
# Builds and tests the language bindings against build/libgemma4.so:
#   Python: pip-installs bindings/python into a venv, runs pytest
#   Rust:   cargo test in bindings/rust (no crates from outside)
#   Go:     go test in bindings/go (cgo)
# Usage: scripts/test-bindings.sh [build-dir] [python|rust|go ...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build_dir="$(cd "${1:-build}" && pwd)"
shift || true
langs=("$@")
[ ${#langs[@]} -eq 0 ] && langs=(python rust go)
export GEMMA4_LIBRARY="$build_dir/libgemma4.so"
export LD_LIBRARY_PATH="$build_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for lang in "${langs[@]}"; do
  case "$lang" in
    python)
      echo "== Python binding =="
      venv=$(mktemp -d)
      # Debian's interpreter with its python3-pytest; the package itself installs offline.
      /usr/bin/python3 -m venv --system-site-packages "$venv"
      "$venv/bin/pip" install -q --no-build-isolation --no-index "$root/bindings/python"
      (cd "$venv" && "$venv/bin/python" -m pytest -q "$root/bindings/python/tests")
      rm -rf "$venv"
      ;;
    rust)
      echo "== Rust binding =="
      (cd bindings/rust && GEMMA4_LIB_DIR="$build_dir" cargo test --offline -q)
      ;;
    go)
      echo "== Go binding =="
      (cd bindings/go && CGO_CFLAGS="-I$root/capi" CGO_LDFLAGS="-L$build_dir -lgemma4" \
        GOFLAGS=-mod=mod GOCACHE="${GOCACHE:-$(mktemp -d)}" go test -count=1 ./...)
      ;;
    *) echo "unknown binding '$lang'"; exit 1 ;;
  esac
done
