#!/bin/bash
# Issue 19's long-context acceptance runs on one many-core machine, as run on the 16-core device
# machine on 2026-12-04 (docs/performance.md). Every job is pinned to its own cores with
# taskset and runs at the same time as the others (not alternating: a device session is too short
# for the 32K fills one after another):
#   - the 32K-depth comparison (E2B widths, 5 layers, f16 KV, 2 threads per process): llama.cpp's
#     pp512 and tg16 each in its own process (llama-bench fills the depth once per test), gemma4's
#     pp512 and tg16 in one (gemma4 bench fills it once), three pairs of cores;
#   - a 128K-token E2B Q4_0 prompt on the remaining cores, its peak RSS against `gemma4 info`;
#   - with RUN_26B=1, a 32K-token 26B-A4B Q4_0 prompt instead of the 128K one (peak RSS vs plan).
# usage: GEMMA4=build/gemma4 LLAMA_BENCH=.../llama-bench MODELS=/tmp/m bench/long_context_runs.sh
# Logs go to $LOGS (default /tmp/logs); bench/peak_rss.py prints the peaks there.
set -u
G=${GEMMA4:-build/gemma4}
LB=${LLAMA_BENCH:-llama-bench}
M=${MODELS:-/tmp/m}
L=${LOGS:-/tmp/logs}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$M" "$L"
n=$(nproc)
if [ "$n" -lt 8 ]; then echo "needs 8 or more cores (6 for the comparison)" >&2; exit 1; fi
rest="6-$((n - 1))"
nrest=$((n - 6))

job() {  # job NAME command...: in the background, output to $L/NAME.out/.err, status to .done
  local name=$1
  shift
  ("$@" > "$L/$name.out" 2> "$L/$name.err"; echo "rc=$?" > "$L/$name.done") &
}

[ -f "$M/e2b-l5-q4_0.gguf" ] || "$G" synth --variant e2b --type q4_0 "$M/e2b-l5-q4_0.gguf" --layers 5
A=(-m "$M/e2b-l5-q4_0.gguf" -t 2 -r 1 -d 32768 -ctk f16 -ctv f16 -o json)
job lpp taskset -c 0,1 "$LB" -fa 1 "${A[@]}" -p 512 -n 0
job ltg taskset -c 2,3 "$LB" -fa 1 "${A[@]}" -p 0 -n 16
job g4 taskset -c 4,5 "$G" bench "${A[@]}" -p 512 -n 16

if [ "${RUN_26B:-0}" = 1 ]; then
  model="$M/26b-q4_0.gguf" variant=26b-a4b ctx=32768
else
  model="$M/e2b-q4_0.gguf" variant=e2b ctx=131072
fi
[ -f "$model" ] || taskset -c "$rest" "$G" synth --variant $variant --type q4_0 "$model" \
  --threads $nrest
"$G" info --model "$model" --ctx $ctx --threads $nrest | grep plan | tee "$L/plan.txt"
plan=$(awk '/plan total/{print $3}' "$L/plan.txt")
job long python3 "$HERE/peak_rss.py" --interval 20 --plan-bytes "$plan" -- \
  taskset -c "$rest" "$G" bench -m "$model" -t $nrest -p $ctx -n 0 -r 1 -o json
wait
grep -h "peak_rss: exit\|of the plan" "$L/long.err"
python3 - "$L" <<'EOF'
import json, sys
def load(name):
    try:
        text = open('%s/%s.out' % (sys.argv[1], name)).read()
        return json.loads(text[text.find('['):])
    except (OSError, ValueError):
        return []
g4 = load('g4')
for o in load('lpp') + load('ltg'):
    for q in g4:
        if (q['n_prompt'], q['n_gen'], q['n_depth']) == (o['n_prompt'], o['n_gen'], o['n_depth']):
            print('pp%d tg%d @ d%d: llama.cpp %.2f t/s (%s) gemma4 %.2f t/s: %.2fx' % (
                o['n_prompt'], o['n_gen'], o['n_depth'], o['avg_ts'], o.get('build_commit'),
                q['avg_ts'], q['avg_ts'] / o['avg_ts']))
EOF
