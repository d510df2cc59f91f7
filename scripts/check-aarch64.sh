#!/usr/bin/env bash
# Cross-builds gemma4 for 64-bit ARM (NEON + dotprod kernels), runs it under qemu on quantized
# and float fixture models, and checks that its logits match the host build's.
# Usage: scripts/check-aarch64.sh [host-build-dir]   (default: build)
set -euo pipefail
host_build="${1:-build}"
sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
missing=()
for p in g++-aarch64-linux-gnu qemu-user; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
cmake -S . -B build-aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DCMAKE_BUILD_TYPE=Release -DGEMMA4_BUILD_TESTS=OFF -DGEMMA4_BUILD_BENCHMARKS=OFF \
  -DGEMMA4_BUILD_EXAMPLES=OFF -DGEMMA4_WITH_SENTENCEPIECE=OFF \
  -DGEMMA4_WITH_IMAGE_CODECS=OFF -DGEMMA4_WITH_AUDIO_FILES=OFF -DGEMMA4_WITH_VIDEO_FILES=OFF > /dev/null
cmake --build build-aarch64 -j"$(nproc)" --target gemma4 kernel_check
QEMU_CPU=max qemu-aarch64 -L /usr/aarch64-linux-gnu build-aarch64/kernel_check
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ids=2,17,33,45,100,200,300,400,5,6,7,311,12,99
# Quantized models are only compared where no discrete decision flips: activations are rounded
# to int8, so a 1e-7 difference in float summation order can flip a rounding step or an MoE
# top-k choice, which the random fixtures amplify into logit changes of 0.2 (seen between the
# host's own AVX2 and AVX-512 paths too, from the position of the flip on).
# Kernels are compared one by one above (kernel_check); end to end, the float path of every
# family must agree everywhere, and the quantized model at its first positions (every kernel
# runs there, so a kernel fault shows from position 0; a rounding flip only from its position
# on) and within 0.5 after.
# llama-cpp:NAME runs a committed llama.cpp file (tests/fixtures/llama_cpp_gguf/NAME.gguf)
# instead: Q2_K, Q3_K and Q5_K matrices go through their row dots here and the 16-row kernels on
# the host; Q5_1 and IQ4_XS through their row dots on both (Q4_1 through the 16-row kernel on
# the host); IQ2_XXS, IQ2_XS, IQ2_S, IQ3_S, IQ3_XXS, IQ1_S and IQ1_M through their row dots
# on both;
# IQ4_NL and MXFP4 through their row dots here and (q_proj, the experts) the 16-row kernels on
# the host.
checks="tiny-e2b:f32 tiny-e4b:f32 tiny-26b-a4b:f32 tiny-31b:f32 tiny-26b-a4b:q4_0"
checks="$checks llama-cpp:tiny-wide-q5_k_m llama-cpp:tiny-26b-a4b-q5_1 llama-cpp:tiny-wide-iq4_xs"
checks="$checks llama-cpp:tiny-26b-a4b-iq4_nl llama-cpp:tiny-26b-a4b-mxfp4"
checks="$checks llama-cpp:tiny-wide-q3_k_m llama-cpp:tiny-wide-q4_1"
checks="$checks llama-cpp:tiny-wide-q2_k llama-cpp:tiny-wide-iq3_s llama-cpp:tiny-wide-iq3_xxs"
checks="$checks llama-cpp:tiny-wide-iq2_xxs llama-cpp:tiny-wide-iq2_xs llama-cpp:tiny-wide-iq2_s"
# NAME@ISA runs the host side with GEMMA4_ISA=ISA: on tiny-wide-iq1_s the host's AVX-512 table
# flips one activation rounding step at position 1 (0.14 in its logits there, 2-6e-6 elsewhere)
# where its scalar reference, its AVX2 table and the aarch64 build all agree within 4e-6, so
# that file is compared against the host's reference table (its row dots on every table are
# checked against the reference on the file's own matrices in iq1_test). On tiny-wide-iq1_m the
# AVX-512 host flips such steps at positions 8 and 9 (0.008, 0.11) and, with the VBMI table's
# IQ1 row dots (their float factors round apart from the VNNI table's integer multipliers), also
# at 13 (0.11), where the reference, AVX2 and aarch64 agree within 4e-6: within the 0.5 allowed
# after the first positions.
checks="$checks llama-cpp:tiny-wide-iq1_s@ref llama-cpp:tiny-wide-iq1_m"
for check in $checks; do
  variant=${check%%:*}
  type=${check##*:}
  host_isa=""
  if [ "${type#*@}" != "$type" ]; then
    host_isa=${type#*@}
    type=${type%@*}
  fi
  {
    if [ "$variant" = llama-cpp ]; then
      cp "tests/fixtures/llama_cpp_gguf/$type.gguf" "$tmp/m.gguf"
    else
      "$host_build/gemma4" quantize "tests/fixtures/models/$variant/gemma4" "$tmp/m.gguf" \
        --type "$type" 2> /dev/null
    fi
    GEMMA4_ISA="$host_isa" "$host_build/gemma4" logits --model "$tmp/m.gguf" --ids "$ids" \
      --out "$tmp/host.f32"
    QEMU_CPU=max qemu-aarch64 -L /usr/aarch64-linux-gnu build-aarch64/gemma4 logits \
      --model "$tmp/m.gguf" --ids "$ids" --out "$tmp/arm.f32"
    # Same weights and integer arithmetic; only float summation order differs.
    python3 - "$tmp/host.f32" "$tmp/arm.f32" "$variant $type" "$ids" <<'PY'
import struct, sys
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
assert len(a) == len(b) and len(a) > 0, "logit files differ in size"
x = struct.unpack("<%df" % (len(a) // 4), a); y = struct.unpack("<%df" % (len(b) // 4), b)
n_pos = len(sys.argv[4].split(","))
vocab = len(x) // n_pos
per_pos = [max(abs(x[i] - y[i]) for i in range(p * vocab, (p + 1) * vocab)) for p in range(n_pos)]
err = max(per_pos)
print("aarch64 vs host %s: max |logit difference| %.3g (per position: %s)"
      % (sys.argv[3], err, " ".join("%.2g" % e for e in per_pos)))
if sys.argv[3].endswith(" f32"):
    sys.exit(0 if err <= 1e-3 else 1)
sys.exit(0 if max(per_pos[:4]) <= 1e-3 and err <= 0.5 else 1)
PY
  }
done
