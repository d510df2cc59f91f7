#!/usr/bin/env python3
"""Image or audio encode time: gemma4 against llama.cpp's mtmd on the same mmproj, input and
threads, alternating between the two (drift on a shared machine hits both), reported as a ratio
(and, for audio, as a real-time factor: encode time / clip duration).

    bench/compare_mtmd.py --mtmd-cli ~/llama.cpp/build/bin/llama-mtmd-cli \\
        --gemma4 build/gemma4 --model TEXT.gguf --mmproj MMPROJ.gguf --image IMG \\
        --tokens 280 -t 2 --rounds 3
    bench/compare_mtmd.py ... --audio CLIP.wav     (16 kHz mono WAV; 30 s is the piece size)

Make the files with `gemma4 synth --variant e2b --type q4_0 --layers 2 TEXT.gguf --mmproj
MMPROJ.gguf` (random weights, the released vision tower, and for e2b/e4b the audio tower, a text
model of the real width); bench/make_media.py writes the image and clip, and
bench/build_llama_cpp.sh builds llama.cpp. Pick an image whose size gives the same token count in both (transformers scales up to fill
the budget, llama.cpp never enlarges): 960x672 -> 280 tokens, 1920x1344 -> 1120 (with
--tokens 1120). The 26B/31B tower (1152 wide, 27 layers): `--variant 26b-a4b` in synth.
gemma4 reports the encoder's own time (`gemma4 encode` on stderr), mtmd its "batch encoding
done in N ms" (tower + projector in both).
"""
import argparse
import re
import resource
import statistics
import subprocess
import sys
import wave


def child_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def gemma4_ms(args):
    media = (["--audio", args.audio] if args.audio else
             ["--image", args.image, "--image-budget", str(args.tokens)])
    cmd = [args.gemma4, "encode", "--model", args.model, "--mmproj", args.mmproj, *media,
           "--threads", str(args.threads), "--out", "/dev/null"]
    p = subprocess.run(cmd, check=True, capture_output=True, text=True)
    n = int(p.stdout.strip())
    m = re.search(r"encoder ([0-9.]+) ms", p.stderr)
    return n, float(m.group(1))


def mtmd_ms(args):
    media = (["--audio", args.audio] if args.audio else
             ["--image", args.image, "--image-min-tokens", str(args.tokens), "--image-max-tokens",
              str(args.tokens)])
    cmd = [args.mtmd_cli, "-m", args.model, "--mmproj", args.mmproj, *media, "-p", "x", "-n",
           "1", "-t", str(args.threads), "--chat-template", "gemma"]
    p = subprocess.run(cmd, check=True, capture_output=True, text=True)
    m = re.search(r"batch encoding done in ([0-9.]+) ms", p.stdout + p.stderr)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mtmd-cli", required=True)
    ap.add_argument("--gemma4", default="build/gemma4")
    ap.add_argument("--model", required=True)
    ap.add_argument("--mmproj", required=True)
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--image")
    group.add_argument("--audio", help="a WAV file")
    ap.add_argument("--tokens", type=int, default=280)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ours, theirs = [], []
    n = 0
    for r in range(args.rounds):
        # Wall times decide the ratio; the processes' CPU seconds (model loading included) say
        # how much of the machine each run got on a loaded host.
        c0 = child_cpu_s()
        theirs.append(mtmd_ms(args))
        c1 = child_cpu_s()
        n, ms = gemma4_ms(args)
        ours.append(ms)
        c2 = child_cpu_s()
        print("round %d: llama.cpp %.0f ms (process CPU %.1f s), gemma4 %.0f ms (process CPU "
              "%.1f s)" % (r + 1, theirs[-1], c1 - c0, ours[-1], c2 - c1), file=sys.stderr)
    a, b = statistics.median(theirs), statistics.median(ours)
    if args.audio:
        with wave.open(args.audio) as w:
            seconds = w.getnframes() / w.getframerate()
        print("| clip | s | tokens | threads | llama.cpp mtmd ms | gemma4 ms | speedup | "
              "gemma4 RTF | llama.cpp RTF |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        print("| %s | %.1f | %d | %d | %.0f | %.0f | %.2fx | %.3f | %.3f |" % (
            args.audio.split("/")[-1], seconds, n, args.threads, a, b, a / b,
            b / 1000 / seconds, a / 1000 / seconds))
        return
    print("| image | tokens | threads | llama.cpp mtmd ms | gemma4 ms | speedup |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print("| %s | %d | %d | %.0f | %.0f | %.2fx |" % (args.image.split("/")[-1], n,
                                                      args.threads, a, b, a / b))


if __name__ == "__main__":
    main()
