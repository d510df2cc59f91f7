#!/usr/bin/env python3
"""Every speed ratio of issue 19 from one run on one machine, in one table.

    bench/issue19_suite.py --llama-bench .../llama-bench --gemma4 build/gemma4 \\
        --e2b-q4_0 e2b-q4_0.gguf --e2b-q4_k_m e2b-q4_k_m.gguf --a4b-q4_0 26b-a4b-q4_0.gguf \\
        [--depth 32768] [--rounds 3] [--depth-rounds 1] [--vnni-peak build/vnni_peak]

Runs bench/compare_llama_cpp.py's alternating comparison (llama-bench and gemma4 bench on the
same file, 2 threads, f16 KV, the model file read into the page cache before each run) for:
  - E2B Q4_0: pp512 (goal 2.5x) and tg128 (goal 1.5x, and >= 90% of gemma4's bandwidth bound,
    each generation run against the read bandwidth measured around it);
  - E2B Q4_K_M: pp512 (goal 2x);
  - 26B-A4B Q4_0 (when given): pp512 (no goal) and tg32 (goal 1.5x);
  - E2B Q4_0 at --depth (default 32768; --depth 0 skips it): pp512 (goal 2x) and tg16 (goal
    1.5x), --depth-rounds rounds (each fills the context once per tool: ~25 min a round for
    both tools at 32K on two Zen 5 cores).
With --vnni-peak (build/vnni_peak), E2B Q4_0's pp512 is also given as a share of the machine's
int8 peak: 2 int8 ops per quantized weight in the layers (from the GGUF's tensor shapes) per
prompt token, against
vnni_peak's two-thread vpdpbusd rate per CPU second (the highest of three measurements: before,
after the E2B Q4_0 job and at the end).
The files come from `gemma4 synth --variant e2b --type q4_0` (and q4_k_m) and
bench/make_26b_a4b_gguf.py + bench/fill_gguf_random.py.
"""
import argparse
import datetime
import json
import math
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_llama_cpp as cmp  # noqa: E402


def read_gguf_header(path):
    """(metadata {key: scalar value}, tensors [(name, dims, ggml type)]) of a GGUF file: the
    header only, standard library (arrays are skipped)."""
    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
              11: "<q", 12: "<d"}
    with open(path, "rb") as f:
        def read(fmt):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def string():
            return f.read(read("<Q")).decode("utf-8", "replace")

        def value(kind):
            if kind in scalar:
                return read(scalar[kind])
            if kind == 8:
                return string()
            if kind == 9:
                item, n = read("<I"), read("<Q")
                for _ in range(n):
                    value(item)
                return None
            raise ValueError("%s: unknown GGUF value type %d" % (path, kind))

        if f.read(4) != b"GGUF":
            raise ValueError(path + ": not a GGUF file")
        read("<I")  # version
        n_tensors, n_kv = read("<Q"), read("<Q")
        meta = {}
        for _ in range(n_kv):
            k = string()
            meta[k] = value(read("<I"))
        tensors = []
        for _ in range(n_tensors):
            name = string()
            dims = [read("<Q") for _ in range(read("<I"))]
            tensors.append((name, dims, read("<I")))
            read("<Q")  # offset
    return meta, tensors


# ggml types of the block-quantized weights the int8 kernels multiply: Q4_0, Q8_0, Q4_K, Q5_K,
# Q6_K.
QUANTIZED = {2, 8, 12, 13, 14}


def int8_ops_per_token(path):
    """2 x the quantized weights in the layers (blk.*) that one token multiplies: a 3-D
    (expert) tensor counts expert_used_count / expert_count of its weights."""
    meta, tensors = read_gguf_header(path)
    used = next((v for k, v in meta.items() if k.endswith(".expert_used_count")), None)
    total = next((v for k, v in meta.items() if k.endswith(".expert_count")), None)
    weights = 0.0
    for name, dims, kind in tensors:
        if not name.startswith("blk.") or kind not in QUANTIZED:
            continue
        n = float(math.prod(dims))
        if len([d for d in dims if d > 1]) == 3 and used and total:
            n *= used / total
        weights += n
    return 2.0 * weights


def vnni_peak_ops_per_cpu_second(binary, instruction="vpdpbusd"):
    out = subprocess.run([binary, "--json"], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    start = out.find("[")
    if start < 0:
        return None  # no AVX-512 VNNI here
    records = json.loads(out[start:])
    two = [r for r in records if r["threads"] == 2 and r["chains"] > 1
           and r.get("instruction", "vpdpbusd") == instruction]
    return two[0]["ops_per_cpu_second"] * 2 if two else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-bench", required=True)
    ap.add_argument("--gemma4", default="build/gemma4")
    ap.add_argument("--e2b-q4_0", required=True)
    ap.add_argument("--e2b-q4_k_m", required=True)
    ap.add_argument("--a4b-q4_0", default="", help="26B-A4B Q4_0 file (row skipped if absent)")
    ap.add_argument("--depth", type=int, default=32768, help="0 skips the long-context rows")
    ap.add_argument("-t", "--threads", default="2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--depth-rounds", type=int, default=1)
    ap.add_argument("--vnni-peak", default="", help="build/vnni_peak, for the int8 peak share")
    args = ap.parse_args()

    t = ["-t", args.threads, "-ctk", "f16", "-ctv", "f16"]
    jobs = [("E2B Q4_0", args.e2b_q4_0, t + ["-p", "512", "-n", "128", "-r", "2"], args.rounds),
            ("E2B Q4_K_M", args.e2b_q4_k_m, t + ["-p", "512", "-n", "0", "-r", "2"], args.rounds)]
    if args.a4b_q4_0:
        jobs.append(("26B-A4B Q4_0", args.a4b_q4_0, t + ["-p", "512", "-n", "32", "-r", "2"],
                     args.rounds))
    if args.depth > 0:
        jobs.append(("E2B Q4_0", args.e2b_q4_0,
                     t + ["-p", "512", "-n", "16", "-r", "1", "-d", str(args.depth)],
                     args.depth_rounds))

    # The peak is the highest of three measurements (before the runs, after the first job and
    # at the end): on a shared machine a single one can read half the core's rate (935 against
    # 1696-1756 GOPS in the same hour).
    peaks = []
    if args.vnni_peak:
        peaks.append(vnni_peak_ops_per_cpu_second(args.vnni_peak))
    started = datetime.datetime.now(datetime.timezone.utc)
    table = []
    shares = []
    build = "?"
    for label, path, test_args, rounds in jobs:
        print("== %s: %s %s" % (label, path, " ".join(test_args)), file=sys.stderr)
        measured = cmp.compare(args.llama_bench, args.gemma4, path, test_args, rounds)
        build = measured["build"]

        def goal_of(test, model_type, label=label):
            if label.startswith("26B") and test.startswith("pp"):
                return None  # issue 19 sets the MoE model a decode goal only
            return cmp.goal(test, model_type)

        for row in cmp.rows(measured, goal_of):
            table.append((label,) + row)
            # Each job's rows as soon as it ends (a long-context job can take an hour).
            _, test, _, kv, _, a, b, ratio, lo, hi, target = table[-1]
            print("-- %s %s %s: llama.cpp %.2f, gemma4 %.2f t/s, %.2fx (%.2f-%.2f), %s" % (
                label, test, kv, a, b, ratio, lo, hi, cmp.verdict(ratio, target)),
                file=sys.stderr, flush=True)
        if label == "E2B Q4_0" and "-d" not in test_args:
            shares = measured["shares"]["gemma4"]
            if args.vnni_peak:
                peaks.append(vnni_peak_ops_per_cpu_second(args.vnni_peak))
    if args.vnni_peak:
        peaks.append(vnni_peak_ops_per_cpu_second(args.vnni_peak))
        amx_peak = vnni_peak_ops_per_cpu_second(args.vnni_peak, "tdpbf16ps")
    else:
        amx_peak = None
    peak = max((p for p in peaks if p), default=None)
    finished = datetime.datetime.now(datetime.timezone.utc)

    print("llama.cpp: %s, %s; gemma4: %s; %d threads; %s - %s UTC" % (
        args.llama_bench, build, args.gemma4, int(args.threads),
        started.strftime("%Y-%m-%d %H:%M"), finished.strftime("%H:%M")))
    print("| model | test | KV type | llama.cpp t/s | gemma4 t/s | ratio (range over rounds) | "
          "goal |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for label, test, threads, kv, name, a, b, ratio, lo, hi, target in table:
        print("| %s | %s | %s | %.2f | %.2f | %.2fx (%.2f-%.2f) | %s |" % (
            label, test, kv, a, b, ratio, lo, hi, cmp.verdict(ratio, target)))
    if shares:
        low = min(shares)
        print("E2B Q4_0 decode (tg128): %s%% of gemma4's bandwidth bound per run (goal >= 90%%: "
              "%s)" % (", ".join(str(s) for s in shares),
                       "met in every run" if low >= 90 else
                       "met in %d of %d runs" % (sum(s >= 90 for s in shares), len(shares))))
    if peak:
        ops = int8_ops_per_token(args.e2b_q4_0)
        for label, test, threads, kv, name, a, b, *_ in table:
            if label == "E2B Q4_0" and test == "pp512":
                print("E2B Q4_0 pp512: %.1f t/s x %.2f G int8 ops a token = %.0f GOPS, %.0f%% of "
                      "the two cores' vpdpbusd peak (%.0f GOPS per CPU second, vnni_peak; highest of %s)" % (
                          b, ops * 1e-9, b * ops * 1e-9, 100.0 * b * ops / peak, peak * 1e-9,
                          ", ".join("%.0f" % (p * 1e-9) for p in peaks if p)))
                if amx_peak:
                    print("  and %.1f%% of their AMX-BF16 peak (tdpbf16ps, %.0f GOPS per CPU "
                          "second; the AMX prefill kernels' instruction)" % (
                              100.0 * b * ops / amx_peak, amx_peak * 1e-9))


if __name__ == "__main__":
    main()
