#!/usr/bin/env python3
"""Runs llama.cpp's llama-bench and gemma4 bench on the same GGUF, thread count and test
sizes, alternating between the two (so drift on a shared machine hits both), and prints the
tokens/s of each and the gemma4 / llama.cpp ratios.

    bench/compare_llama_cpp.py --llama-bench ~/llama.cpp/build/bin/llama-bench \\
        --gemma4 build/gemma4 --model e2b-q4_0.gguf -t 2 -p 512 -n 128 -r 5 --rounds 3

Build llama.cpp from a local checkout first (cmake -B build && cmake --build build -j); this
script only runs the binaries. Both tools are asked for `-o json`; the fields read (n_prompt,
n_gen, n_threads, avg_ts) are llama-bench's.
"""
import argparse
import json
import statistics
import subprocess
import sys


def run(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    start = out.find("[")
    return json.loads(out[start:])


def key(obj):
    return ("pp%d" % obj["n_prompt"]) if obj["n_prompt"] > 0 else ("tg%d" % obj["n_gen"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-bench", required=True)
    ap.add_argument("--gemma4", default="build/gemma4")
    ap.add_argument("--model", "-m", required=True)
    ap.add_argument("-t", "--threads", default="2")
    ap.add_argument("-p", "--n-prompt", default="512")
    ap.add_argument("-n", "--n-gen", default="128")
    ap.add_argument("-r", "--repetitions", default="5")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per tool")
    args = ap.parse_args()
    common = ["-m", args.model, "-t", args.threads, "-p", args.n_prompt, "-n", args.n_gen,
              "-r", args.repetitions, "-o", "json"]
    results = {"llama.cpp": {}, "gemma4": {}}
    for r in range(args.rounds):
        for name, cmd in (("llama.cpp", [args.llama_bench]), ("gemma4", [args.gemma4, "bench"])):
            for obj in run(cmd + common):
                results[name].setdefault((key(obj), obj["n_threads"]), []).append(obj["avg_ts"])
            print("round %d/%d: %s done" % (r + 1, args.rounds, name), file=sys.stderr)
    print("| test | threads | llama.cpp t/s | gemma4 t/s | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for k in sorted(results["gemma4"]):
        if k not in results["llama.cpp"]:
            continue
        a = statistics.median(results["llama.cpp"][k])
        b = statistics.median(results["gemma4"][k])
        print("| %s | %d | %.2f | %.2f | %.2fx |" % (k[0], k[1], a, b, b / a))


if __name__ == "__main__":
    main()
