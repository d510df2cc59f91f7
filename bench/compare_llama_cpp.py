#!/usr/bin/env python3
"""Runs llama.cpp's llama-bench and gemma4 bench on the same GGUF, thread count and test
sizes, alternating between the two (so drift on a shared machine hits both), and prints the
tokens/s of each and the gemma4 / llama.cpp ratios.

    bench/compare_llama_cpp.py --llama-bench ~/llama.cpp/build/bin/llama-bench \\
        --gemma4 build/gemma4 --model e2b-q4_0.gguf -t 2 -p 512 -n 128 -r 5 --rounds 3

Long context: -d 32768 -ctk q8_0 -ctv q8_0 runs both at that depth with that KV cache type
(llama-bench with flash attention, -fa 1, which its quantized V cache needs; gemma4's
attention is always fused). Each table row names the depth and the KV type, and the ratio is
checked against issue 19's goal for that row where there is one (depth 0: pp 2.5x for Q4_0 and 2x for Q4_K, tg 1.5x;
depth > 0: pp 2x, tg 1.5x). The llama.cpp build (llama-bench's build_commit and
build_number) heads the table.

Before every tool's run the model file is read once (--no-warm-cache skips it), so both start
from a file held in the page cache: the per-layer-embedding table (a third of an E2B file) is
read a row per prompt token by both tools (llama.cpp through its mapping, gemma4 with pread),
and rows the kernel has dropped since the last run would otherwise come from disk inside the
timed prompt, for whichever tool met them first.

--gemma4-ubatch 16,64 runs gemma4 once per forward step size in every round (before/after of
the step in the same alternating run).

Build llama.cpp from a local checkout first (cmake -B build && cmake --build build -j); this
script only runs the binaries. Both tools are asked for `-o json`; the fields read (n_prompt,
n_gen, n_threads, avg_ts) are llama-bench's.
"""
import argparse
import json
import re
import statistics
import subprocess
import sys


SHARE = re.compile(r"= (\d+)% of the bandwidth bound")


def run(cmd, shares=None):
    """Runs one tool with -o json and returns its records. gemma4's stderr is passed through,
    and each "= N% of the bandwidth bound" it prints (one per generation run) is appended to
    shares when given."""
    proc = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    sys.stderr.write(proc.stderr)
    if shares is not None:
        shares.extend(int(m) for m in SHARE.findall(proc.stderr))
    out = proc.stdout
    start = out.find("[")
    return json.loads(out[start:])


def key(obj):
    test = ("pp%d" % obj["n_prompt"]) if obj["n_prompt"] > 0 else ("tg%d" % obj["n_gen"])
    if obj.get("n_depth", 0) > 0:
        test += " @ d%d" % obj["n_depth"]
    return test


def goal(test, model_type):
    """Issue 19's target ratio for a test name and llama-bench's model_type ("gemma4 ?B Q4_0",
    "... Q4_K - Medium", "gemma4 26B.A4B Q4_0"), or None. Prefill at depth 0: 2.5x for Q4_0, 2x
    for the K-quants; none for MoE prefill."""
    deep = "@ d" in test
    if test.startswith("pp") and ".A" in model_type:
        return None  # a MoE model ("26B.A4B"): the issue sets it a decode goal only
    if test.startswith("pp"):
        return 2.0 if deep or " Q4_K" in model_type else 2.5
    if test.startswith("tg"):
        return 1.5
    return None


def warm_page_cache(path):
    with open(path, "rb", buffering=0) as f:
        while f.read(16 << 20):
            pass


def compare(llama_bench, gemma4, model, test_args, rounds, warm_cache=True, ubatches=()):
    """Alternates llama-bench and gemma4 bench on one file, `rounds` times each, with the same
    test arguments (llama-bench's: -t -p -n -r -d -ctk -ctv). Returns a dict: build (llama.cpp's
    commit and build number), model_type (llama-bench's), tools (names, llama.cpp first),
    results {tool: {(test, threads, KV type): [t/s per round]}} and shares {tool: [gemma4's
    decode share of its bandwidth bound, in %, per generation run]}."""
    common = ["-m", model] + list(test_args) + ["-o", "json"]
    # llama.cpp needs flash attention for a quantized V cache; with it, an f16 cache takes the
    # same fused path gemma4 always uses.
    tools = [("llama.cpp", [llama_bench, "-fa", "1"])]
    if ubatches:
        tools += [("gemma4 -ub " + u, [gemma4, "bench", "-ub", u]) for u in ubatches]
    else:
        tools.append(("gemma4", [gemma4, "bench"]))
    out = {"build": "?", "model_type": "", "tools": [name for name, _ in tools],
           "results": {name: {} for name, _ in tools}, "shares": {name: [] for name, _ in tools}}
    ctk = test_args[test_args.index("-ctk") + 1] if "-ctk" in test_args else "f16"
    for r in range(rounds):
        for name, cmd in tools:
            if warm_cache:
                warm_page_cache(model)
            for obj in run(cmd + common, out["shares"][name]):
                k = (key(obj), obj["n_threads"], obj.get("type_k", ctk))
                out["results"][name].setdefault(k, []).append(obj["avg_ts"])
                if name == "llama.cpp":
                    out["model_type"] = obj.get("model_type", "")
                    out["build"] = "%s (build %s)" % (obj.get("build_commit", "?"),
                                                      obj.get("build_number", "?"))
            print("round %d/%d: %s done" % (r + 1, rounds, name), file=sys.stderr)
    return out


def rows(measured, goal_of=goal):
    """Table rows (test, threads, KV type, tool, llama.cpp t/s, gemma4 t/s, ratio, lowest and
    highest round ratio, goal or None) of compare()'s result, medians over the rounds."""
    results = measured["results"]
    out = []
    for name in measured["tools"][1:]:
        for k in sorted(results[name]):
            if k not in results["llama.cpp"]:
                continue
            a = statistics.median(results["llama.cpp"][k])
            b = statistics.median(results[name][k])
            # Each round's ratio (the tools alternate, so round i of one meets round i of the
            # other).
            ratios = [g / l for l, g in zip(results["llama.cpp"][k], results[name][k])]
            out.append((k[0], k[1], k[2], name, a, b, b / a, min(ratios), max(ratios),
                        goal_of(k[0], measured["model_type"])))
    return out


def verdict(ratio, target):
    return "" if target is None else "%.1fx: %s" % (target, "met" if ratio >= target else
                                                     "not met")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-bench", required=True)
    ap.add_argument("--gemma4", default="build/gemma4")
    ap.add_argument("--model", "-m", required=True)
    ap.add_argument("-t", "--threads", default="2")
    ap.add_argument("-p", "--n-prompt", default="512")
    ap.add_argument("-n", "--n-gen", default="128")
    ap.add_argument("-r", "--repetitions", default="5")
    ap.add_argument("-d", "--n-depth", default="0", help="context depths, as llama-bench's -d")
    ap.add_argument("-ctk", "--cache-type-k", default="f16", help="KV cache type (f16, f32, "
                    "q8_0, q4_0), given to both tools")
    ap.add_argument("-ctv", "--cache-type-v", default=None, help="default: -ctk")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per tool")
    ap.add_argument("--gemma4-ubatch", default="",
                    help="comma list of gemma4 -ub values, each run as its own gemma4 entry in "
                         "every round (a before/after of the forward step in one alternating "
                         "run); default: gemma4's own step")
    ap.add_argument("--no-warm-cache", action="store_true",
                    help="do not read the model file into the page cache before each run")
    args = ap.parse_args()
    ctv = args.cache_type_v or args.cache_type_k
    test_args = ["-t", args.threads, "-p", args.n_prompt, "-n", args.n_gen,
                 "-r", args.repetitions, "-d", args.n_depth, "-ctk", args.cache_type_k,
                 "-ctv", ctv]
    measured = compare(args.llama_bench, args.gemma4, args.model, test_args, args.rounds,
                       not args.no_warm_cache,
                       [u for u in args.gemma4_ubatch.split(",") if u])
    print("llama.cpp: %s, %s; model: %s" % (args.llama_bench, measured["build"],
                                            measured["model_type"]))
    print("| test | threads | KV type | gemma4 | llama.cpp t/s | gemma4 t/s | ratio (range over "
          "rounds) | goal |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: | --- |")
    for test, threads, kv, name, a, b, ratio, lo, hi, target in rows(measured):
        print("| %s | %d | %s | %s | %.2f | %.2f | %.2fx (%.2f-%.2f) | %s |" % (
            test, threads, kv, name, a, b, ratio, lo, hi, verdict(ratio, target)))
    for name in measured["tools"][1:]:
        if measured["shares"][name]:
            print("%s decode: %s%% of its bandwidth bound (each generation run against the read "
                  "bandwidth measured around it)" % (
                      name, ", ".join(str(x) for x in measured["shares"][name])))


if __name__ == "__main__":
    main()
