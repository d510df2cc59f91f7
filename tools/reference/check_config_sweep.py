#!/usr/bin/env python3
"""Runs gemma4's command-line contracts on the random-configuration checkpoints that
make_config_sweep.py wrote, and compares with what transformers computed:

  logits    every prompt (text, images, audio), from the checkpoint and from the GGUF + mmproj
            that `gemma4 quantize --type f32` writes of it
  generate  greedy ids (up to the first step whose reference margin is a near-tie)
  encode    image and audio soft tokens
  info      the memory plan of each checkpoint (must succeed)

    python3 tools/reference/check_config_sweep.py SWEEP_DIR --gemma4 build/gemma4 [--no-gguf]

Prints one line per checkpoint and exits 1 when any comparison fails. Tolerances scale with the
reference's magnitude (float32 sums in another order), as the golden tests' do. Some random
models are ill-conditioned on long media prompts: on the first sweep (seeds 1000-1079), seed
1010 (11 layers, bidirectional image blocks) moved its image-prompt logits by 6e-3 when its soft
tokens were perturbed by one part in 1e7, so its 0.026-0.065 there is rounding, not a
difference in what is computed (with transformers' own soft tokens fed in, most image prompts
agree within 1e-4). So make_config_sweep.py now records each media prompt's sensitivity in
transformers itself, and the bound here adds our soft tokens' rounding times it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from array import array

LOGIT_TOL = 1e-3    # at logits of magnitude ~6 (the golden tests' limit); scales above that
SOFT_TOL = 1e-3     # relative to the largest soft-token value
NEAR_TIE = 0.01     # a greedy step whose reference margin is smaller is not compared
# Our soft tokens and transformers' are float32 roundings of the same sums. A media prompt's
# logits may move by their measured difference (relative to the soft tokens' size, from the
# encode checks of the same checkpoint) times the prompt's recorded sensitivity (logit change
# per 1e-6 relative change of every soft token, measured in transformers by
# make_config_sweep.py), on top of the text tolerance.
SENSITIVITY_EPS = 1e-6


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\nexit {p.returncode}: {p.stderr.strip()[-800:]}")
    return p.stdout


def read_f32(path, cols):
    """Raw little-endian float32 rows of `cols` values (the standard library only: this runs
    on the build machine, which has no numpy)."""
    a = array("f")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder != "little":
        a.byteswap()
    return a, len(a) // cols if cols else 0


def relative_error(ours, ref):
    (a, _), (b, _) = ours, ref
    if len(a) != len(b) or not b:
        return None
    return max(abs(x - y) for x, y in zip(a, b)) / max(max(abs(v) for v in b), 1e-30)


def compare(ours, ref, tol_at_unit, extra=0.0):
    (a, rows_a), (b, rows_b) = ours, ref
    if len(a) != len(b):
        return float("inf"), f"{rows_a} rows vs {rows_b} in the reference"
    if any(v != v for v in a):
        return float("inf"), "NaN in our output"
    scale = max(1.0, max((abs(v) for v in b), default=0.0) / 6.0)
    err = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
    tol = tol_at_unit * scale + extra
    return err, "ok" if err <= tol else f"max |diff| {err:.3g} > {tol:.3g}"


def media_args(media, media_dir):
    args = []
    for m in media:
        flag = "--audio" if m.endswith(".wav") else "--image"
        args += [flag, os.path.join(media_dir, m)]
    return args


def check_model(gemma4, vdir, media_dir, tmp, gguf):
    rec = json.load(open(os.path.join(vdir, "reference.json")))
    spec = rec["spec"]
    vocab = spec["text"]["vocab_size"]
    hidden = spec["text"]["hidden_size"]
    results = []
    try:
        run([gemma4, "info", "--model", vdir, "--ctx", "256"])
        results.append(("info", 0.0, "ok"))
    except RuntimeError as e:
        results.append(("info", float("inf"), str(e)))
    sources = [("ckpt", vdir, [])]
    if gguf:
        g = os.path.join(tmp, "model.gguf")
        cmd = [gemma4, "quantize", vdir, g, "--type", "f32"]
        mm = []
        if spec["vision"] is not None or spec["audio"] is not None:
            mmf = os.path.join(tmp, "mmproj.gguf")
            cmd += ["--mmproj", mmf, "--mmproj-type", "f32"]
            mm = ["--mmproj", mmf]
        try:
            run(cmd)
            sources.append(("gguf", g, mm))
        except RuntimeError as e:
            # What llama.cpp's layout cannot hold is refused, never written wrong: RoPE scaling
            # on sliding layers, audio towers with other attention settings than its defaults.
            refused = "UNIMPLEMENTED" in str(e) or "differ from Gemma4AudioConfig" in str(e)
            results.append(("gguf quantize", 0.0 if refused else float("inf"),
                            "ok" if refused else str(e)))
            if refused:
                results[-1] = ("gguf quantize (refused)", 0.0, "ok")
    # Soft tokens first: their measured difference bounds what the media prompts may differ by.
    soft_rel = {}
    for (label, model, extra), (key, s) in (
            (src, item) for src in sources for item in rec["soft"].items()):
        what = f"{label} encode {key}"
        out = os.path.join(tmp, "soft.f32")
        flag = "--audio" if key == "audio" else "--image"
        # An mmproj file holds no processor config: the checkpoint's default budget is given.
        budget = ["--image-budget", str(spec["budget"])] if label == "gguf" and \
            flag == "--image" else []
        try:
            run([gemma4, "encode", "--model", model, flag, os.path.join(media_dir, s["media"]),
                 "--out", out] + extra + budget)
            ours, ref = read_f32(out, hidden), read_f32(os.path.join(vdir, s["file"]), hidden)
            err, msg = compare(ours, ref, SOFT_TOL)
            kind = "audio" if key == "audio" else "image"
            rel = relative_error(ours, ref)
            if rel is not None:
                soft_rel[(label, kind)] = max(soft_rel.get((label, kind), 0.0), rel)
        except RuntimeError as e:
            err, msg = float("inf"), str(e)
        results.append((what, err, msg))
    for label, model, extra in sources:
        for p in rec["prompts"]:
            if label == "gguf" and p["media"] and \
                    not os.path.exists(os.path.join(vdir, "tokenizer.json")):
                # Without a tokenizer the GGUF file cannot name the placeholder ids (GGUF has no
                # keys for them); the GGUF towers are still checked through `encode` above.
                continue
            out = os.path.join(tmp, "logits.f32")
            what = f"{label} logits {p['name']}"
            # An mmproj file holds no processor config: the checkpoint's default budget is given.
            budget = ["--image-budget", str(spec["budget"])] if label == "gguf" and any(
                not m.endswith(".wav") for m in p["media"]) else []
            try:
                run([gemma4, "logits", "--model", model, "--ids", ",".join(map(str, p["ids"])),
                     "--out", out] + media_args(p["media"], media_dir) + extra + budget)
                kinds = {"audio" if m.endswith(".wav") else "image" for m in p["media"]}
                soft = max((soft_rel.get((label, k), 0.0) for k in kinds), default=0.0)
                conditioning = p.get("sensitivity", 0.0) * soft / SENSITIVITY_EPS
                err, msg = compare(read_f32(out, vocab),
                                   read_f32(os.path.join(vdir, p["logits"]), vocab), LOGIT_TOL,
                                   conditioning)
            except RuntimeError as e:
                err, msg = float("inf"), str(e)
            results.append((what, err, msg))
    for p in rec["prompts"]:
        what = f"generate {p['name']}"
        n = len(p["greedy"])
        try:
            got = run([gemma4, "generate", "--model", vdir, "--ids",
                       ",".join(map(str, p["ids"])), "-n", str(n), "--greedy"] +
                      media_args(p["media"], media_dir)).strip()
            got = [int(t) for t in got.split(",") if t]
            want = []
            for tok, margin in zip(p["greedy"], p["greedy_margins"]):
                if margin < NEAR_TIE:
                    break
                want.append(tok)
            k = min(len(want), len(got))
            ok = got[:k] == want[:k] and (len(got) >= len(want) or got[-1] in (1, 106))
            results.append((what, 0.0 if ok else float("inf"),
                            "ok" if ok else f"ids {got} vs {p['greedy']}"))
        except RuntimeError as e:
            results.append((what, float("inf"), str(e)))
    return spec, results


def describe(spec):
    t = spec["text"]
    parts = [f"L{t['num_hidden_layers']} H{t['hidden_size']} h{t['num_attention_heads']}/"
             f"{t['num_key_value_heads']} hd{t['head_dim']}/{t['global_head_dim']} "
             f"W{t['sliding_window']} {spec['dtype']}"]
    if t.get("num_kv_shared_layers"):
        parts.append(f"shared{t['num_kv_shared_layers']}")
    if t.get("hidden_size_per_layer_input"):
        parts.append(f"ple{t['hidden_size_per_layer_input']}")
    if t.get("attention_k_eq_v"):
        parts.append("k=v")
    if t.get("enable_moe_block"):
        parts.append(f"moe{t['num_experts']}/{t['top_k_experts']}")
    if not spec.get("tie_word_embeddings", t.get("tie_word_embeddings", True)):
        parts.append("untied")
    if t.get("final_logit_softcapping") is None:
        parts.append("nocap")
    if spec.get("layout") == "text":
        parts.append("causal-lm")
    rp = t["rope_parameters"]
    parts.append("rope " + rp["sliding_attention"]["rope_type"] + "/" +
                 rp["full_attention"]["rope_type"])
    if spec["vision"]:
        v = spec["vision"]
        parts.append(f"vision p{v['patch_size']} k{v['pooling_kernel_size']}")
    if spec["audio"]:
        a = spec["audio"]
        parts.append(f"audio c{a.get('attention_chunk_size', 12)} "
                     f"r{a.get('attention_context_right', 0)}")
    return " ".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep")
    ap.add_argument("--gemma4", required=True)
    ap.add_argument("--no-gguf", action="store_true")
    args = ap.parse_args()
    media_dir = os.path.join(args.sweep, "media")
    failed = checked = 0
    dirs = sorted(d for d in os.listdir(args.sweep) if d.startswith("sweep-"))
    for d in dirs:
        vdir = os.path.join(args.sweep, d)
        if not os.path.exists(os.path.join(vdir, "reference.json")):
            continue
        checked += 1
        with tempfile.TemporaryDirectory() as tmp:
            spec, results = check_model(args.gemma4, vdir, media_dir, tmp, not args.no_gguf)
        bad = [r for r in results if r[2] != "ok"]
        worst = max((r[1] for r in results if r[1] != float("inf")), default=0.0)
        print(f"{d}: {'FAIL' if bad else 'ok'} ({len(results)} checks, worst {worst:.2g}) "
              f"{describe(spec)}", flush=True)
        for what, _, msg in bad:
            print(f"    {what}: {msg}", flush=True)
        failed += bool(bad)
    print(f"{checked - failed} of {checked} checkpoints pass ({len(dirs) - checked} that "
          "transformers refused to build skipped)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
