#!/usr/bin/env bash
# A fuzzing campaign over every libFuzzer target at once (ASan + UBSan builds from
# -DGEMMA4_BUILD_FUZZERS=ON with clang). Each target runs WORKERS processes for SECONDS, starting
# from fuzz/corpus/<target>; then its corpus is merged (minimized) into OUT/corpus/<target> and
# any crash, leak or timeout input is kept in OUT/crashes/<target>. OUT/summary.txt gets one line
# per target: executions, CPU seconds, corpus sizes, crashes.
#
#   fuzz/run_campaign.sh BIN_DIR OUT SECONDS WORKERS [TARGET...]
#
# BIN_DIR holds the <target>_fuzz binaries. Run it on the machine with the most cores. With
# SEEDS=DIR in the environment, DIR/<target> (e.g. an earlier campaign's OUT/corpus) adds seeds.
set -uo pipefail
bin="$(realpath "$1")" out="$(realpath -m "$2")" seconds="$3" workers="$4"
shift 4
cd "$(dirname "$0")/.."
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$bin"/*_fuzz; do targets+=("$(basename "$f" _fuzz)"); done
fi
mkdir -p "$out"
for t in "${targets[@]}"; do
  mkdir -p "$out/work/$t" "$out/crashes/$t" "$out/logs/$t"
  cp -r fuzz/corpus/"$t"/. "$out/work/$t/" 2>/dev/null || true
  if [ -n "${SEEDS:-}" ] && [ -d "$SEEDS/$t" ]; then cp -r "$SEEDS/$t"/. "$out/work/$t/"; fi
  (cd "$out/logs/$t" &&
   "$bin/${t}_fuzz" -workers="$workers" -jobs="$workers" -max_total_time="$seconds" \
     -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 \
     -artifact_prefix="$out/crashes/$t/" "$out/work/$t" > /dev/null 2>&1) &
done
wait
: > "$out/summary.txt"
for t in "${targets[@]}"; do
  mkdir -p "$out/corpus/$t"
  "$bin/${t}_fuzz" -merge=1 -rss_limit_mb=4096 "$out/corpus/$t" "$out/work/$t" > /dev/null 2>&1
  execs=$(grep -h 'stat::number_of_executed_units' "$out/logs/$t"/fuzz-*.log 2>/dev/null |
          awk '{s += $2} END {print s + 0}')
  secs=$(grep -h 'stat::total_time\|Done [0-9]* runs in' "$out/logs/$t"/fuzz-*.log 2>/dev/null |
         sed -n 's/.*Done [0-9]* runs in \([0-9]*\) second.*/\1/p' | awk '{s += $1} END {print s + 0}')
  printf '%s executions=%s worker_seconds=%s seed_corpus=%s merged_corpus=%s crashes=%s\n' \
    "$t" "$execs" "$secs" "$(ls fuzz/corpus/"$t" | wc -l)" "$(ls "$out/corpus/$t" | wc -l)" \
    "$(ls "$out/crashes/$t" | wc -l)" >> "$out/summary.txt"
done
cat "$out/summary.txt"
