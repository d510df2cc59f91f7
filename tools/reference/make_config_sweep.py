#!/usr/bin/env python3
"""Random Gemma 4 configurations against transformers: builds N tiny random-weight checkpoints
whose every configuration knob is drawn at random (widths that are not multiples of 8, head
counts and head dims of all kinds, layer patterns, KV sharing, PLE, K=V, MoE, RoPE types and
partial rotation, softcap on/off, tied or untied heads, storage dtype; vision towers with other
patch and pooling sizes, clipping, standardize, bidirectional images; audio towers with other
conv kernels, chunk sizes and left/right context) and records what transformers computes for
each: text logits and greedy ids, image soft tokens and logits, audio soft tokens and logits.

`tools/reference/check_config_sweep.py OUT --gemma4 BIN` then runs the gemma4 command-line
contracts (`logits`, `generate`, `encode`, and `quantize` to GGUF and back) on every checkpoint
and compares. The released configurations are covered by the fixtures; this sweep is how the
code is held general (what a held-out checkpoint may look like).

Run on a machine with transformers (>= 5.17), torch, torchvision and PIL:
    python3 tools/reference/make_config_sweep.py OUT_DIR [N] [FIRST_SEED] [SEED,SEED,...]

Layout of OUT_DIR:
  media/                       the images and recordings the models are fed
  sweep-SEED/                  checkpoint (Gemma4ForConditionalGeneration, storage dtype)
  sweep-SEED/reference.json    the drawn configuration, prompts, greedy ids, file names
  sweep-SEED/*.f32             logits [len(prompt), vocab] and soft tokens [n, H], raw f32
  summary.json                 one line per seed: built or the error transformers raised
"""
import json
import os
import random
import sys
import shutil
import traceback
import wave

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch
import transformers
from transformers import (Gemma4Config, Gemma4ForCausalLM, Gemma4ForConditionalGeneration,
                          Gemma4TextConfig)
from transformers.image_utils import load_image
from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
from transformers.models.gemma4.image_processing_gemma4 import Gemma4ImageProcessor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import randomize, reference_model  # noqa: E402
from make_vision_fixtures import SPECIAL, randomize_tower_buffers  # noqa: E402

LAYER_S, LAYER_F = "sliding_attention", "full_attention"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SENSITIVITY_EPS = 1e-6


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def draw_text(r, vocab):
    layers = r.randint(2, 11)
    types = [LAYER_F if r.random() < 0.3 else LAYER_S for _ in range(layers)]
    # transformers' Gemma4TextConfig makes the last layer global whatever the config says (so
    # does gemma4's loader); drawn so here too, or KV sharing is checked against types that
    # are not the model's (seed 5032: a shared suffix then had no global layer to read). The
    # draw stays so earlier seeds keep their other values.
    r.random()
    types[-1] = LAYER_F
    if LAYER_S not in types:
        types[0] = LAYER_S
    heads = r.choice([1, 2, 3, 4, 6, 8])
    kv = r.choice(divisors(heads))
    head_dim = r.choice([8, 12, 16, 20, 24, 32, 40, 64])
    global_head_dim = r.choice([8, 12, 16, 24, 32, 48, 64, 96])
    # KV-shared layers take their K/V from the last unshared layer of the same type, so the
    # unshared prefix must hold every type the shared suffix uses.
    shared = 0
    if r.random() < 0.5 and layers >= 3:
        for _ in range(20):
            s = r.randint(1, layers - 2)
            if set(types[layers - s:]) <= set(types[:layers - s]):
                shared = s
                break
    k_eq_v = r.random() < 0.4
    sliding_rope = {"rope_type": "default", "rope_theta": r.choice([10000.0, 500.0, 1e5])}
    if r.random() < 0.2:
        sliding_rope = {"rope_type": "linear", "rope_theta": 10000.0,
                        "factor": r.choice([2.0, 4.0, 0.5])}
    full_kind = r.random()
    if full_kind < 0.6:
        full_rope = {"rope_type": "proportional", "rope_theta": r.choice([1e6, 1e4, 3e5]),
                     "partial_rotary_factor": r.choice([0.25, 0.5, 1.0, 0.125, 0.3])}
        if r.random() < 0.25:
            full_rope["factor"] = r.choice([2.0, 8.0])
    elif full_kind < 0.8:
        full_rope = {"rope_type": "default", "rope_theta": r.choice([1e6, 1e4])}
    else:
        full_rope = {"rope_type": "linear", "rope_theta": 1e6, "factor": r.choice([2.0, 4.0])}
    text = dict(
        vocab_size=vocab,
        hidden_size=r.choice([16, 24, 36, 40, 48, 52, 64, 72, 100]),
        num_hidden_layers=layers,
        layer_types=types,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=head_dim,
        global_head_dim=global_head_dim,
        intermediate_size=r.randint(8, 130),
        sliding_window=r.randint(2, 20),
        num_kv_shared_layers=shared,
        use_double_wide_mlp=shared > 0 and r.random() < 0.5,
        attention_k_eq_v=k_eq_v,
        rope_parameters={LAYER_S: sliding_rope, LAYER_F: full_rope},
        final_logit_softcapping=r.choice([30.0, 30.0, 10.0, None]),
        rms_norm_eps=r.choice([1e-6, 1e-6, 1e-5]),
        tie_word_embeddings=r.random() < 0.8,
        max_position_embeddings=4096,
        bos_token_id=2, eos_token_id=[1, 106], pad_token_id=0,
    )
    if k_eq_v:
        text["num_global_key_value_heads"] = r.choice(divisors(heads))
    if r.random() < 0.5:
        text["hidden_size_per_layer_input"] = r.choice([4, 6, 8, 16, 24])
        text["vocab_size_per_layer_input"] = vocab
    else:
        text["hidden_size_per_layer_input"] = 0
    if r.random() < 0.3:
        experts = r.randint(2, 10)
        text.update(enable_moe_block=True, num_experts=experts,
                    top_k_experts=r.randint(1, min(4, experts)),
                    moe_intermediate_size=r.randint(4, 40))
    return text


def draw_vision(r):
    heads = r.choice([1, 2, 3, 4])
    return dict(
        rope_parameters={"rope_type": "axial", "rope_theta": r.choice([100.0, 100.0, 1000.0, 10.0])},
        hidden_size=r.choice([16, 20, 24, 32, 48]),
        intermediate_size=r.randint(12, 64),
        num_hidden_layers=r.randint(1, 3),
        num_attention_heads=heads,
        num_key_value_heads=r.choice(divisors(heads)),
        head_dim=r.choice([8, 12, 16, 20]),
        patch_size=r.choice([16, 16, 14, 8]),
        pooling_kernel_size=r.choice([3, 3, 2, 4]),
        position_embedding_size=r.choice([128, 256, 300]),
        use_clipped_linears=r.random() < 0.5,
        standardize=r.random() < 0.5,
        rms_norm_eps=r.choice([1e-6, 1e-5]),
    )


def draw_audio(r):
    heads = r.choice([1, 2, 4])
    if r.random() < 0.4:  # the released attention settings (what a llama.cpp mmproj can hold)
        return dict(hidden_size=heads * r.choice([4, 8, 12, 16]), num_hidden_layers=r.randint(1, 3),
                    num_attention_heads=heads,
                    subsampling_conv_channels=[128, r.choice([2, 4, 6, 8])],
                    output_proj_dims=r.choice([8, 20, 24, 40]), conv_kernel_size=r.choice([3, 5, 7]),
                    use_clipped_linears=r.random() < 0.7)
    chunk = r.randint(3, 12)
    return dict(
        hidden_size=heads * r.choice([4, 8, 12, 16]),
        num_hidden_layers=r.randint(1, 3),
        num_attention_heads=heads,
        subsampling_conv_channels=[128, r.choice([2, 4, 6, 8])],
        output_proj_dims=r.choice([8, 20, 24, 40]),
        conv_kernel_size=r.choice([3, 5, 7]),
        attention_chunk_size=chunk,
        attention_context_left=chunk + 1 + r.randint(0, 4),
        attention_context_right=r.choice([0, 0, 0, 2, chunk]),
        attention_logit_cap=r.choice([50.0, 10.0]),
        residual_weight=r.choice([0.5, 0.5, 1.0]),
        use_clipped_linears=r.random() < 0.7,
    )


def draw(seed):
    r = random.Random(seed)
    vocab = r.randint(512, 700)  # >= 507: the multimodal ids of make_vision_fixtures
    spec = dict(text=draw_text(r, vocab), vision=None, audio=None,
                dtype=r.choice(["bfloat16", "float16", "float32"]), budget=70,
                layout="conditional", tie_word_embeddings=r.random() < 0.8)
    if r.random() < 0.25:
        # Gemma4ForCausalLM: the text model alone, tied or untied by its own config.
        spec["layout"] = "text"
        spec["text"]["tie_word_embeddings"] = spec["tie_word_embeddings"]
        return spec
    if r.random() < 0.5:
        spec["vision"] = draw_vision(r)
        spec["budget"] = r.choice([70, 70, 140])
        if r.random() < 0.5:
            spec["text"]["use_bidirectional_attention"] = "vision"
    if r.random() < 0.4:
        spec["audio"] = draw_audio(r)
    return spec


def make_media(d):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(17)

    def picture(h, w):
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        base = np.stack([x / max(w - 1, 1) * 255, y / max(h - 1, 1) * 255,
                         (np.sin(x / 5.0) * np.cos(y / 3.0) * 0.5 + 0.5) * 255], axis=-1)
        img = np.clip(base + rng.normal(0, 8, size=(h, w, 3)), 0, 255).astype(np.uint8)
        pil = PIL.Image.fromarray(img, "RGB")
        PIL.ImageDraw.Draw(pil).rectangle([w // 6, h // 3, w // 2, h // 2], fill=(10, 240, 60))
        return pil

    images = {}
    p = os.path.join(d, "odd_173x111.png"); picture(111, 173).save(p); images["odd"] = p
    p = os.path.join(d, "tall_90x400.jpg"); picture(400, 90).save(p, quality=88)
    images["tall"] = p
    n = 21377  # 1.34 s, not a multiple of 128 samples
    t = np.arange(n) / 16000.0
    f0 = 150 + 30 * np.sin(2 * np.pi * 0.9 * t)
    x = sum(np.sin(k * 2 * np.pi * np.cumsum(f0) / 16000.0) / k for k in range(1, 6)) * 0.3
    x += rng.normal(0, 0.03, n)
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    wav = os.path.join(d, "voice_21377.wav")
    with wave.open(wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    return images, (wav, pcm.astype(np.float32) / np.float32(32768.0))


def build(spec, seed):
    torch.manual_seed(seed)
    if spec["layout"] == "text":
        model = Gemma4ForCausalLM(Gemma4TextConfig(**spec["text"])).eval()
        randomize(model, seed)
        return model
    # The top-level flag ties (or not) a Gemma4ForConditionalGeneration's head.
    cfg = Gemma4Config(text_config=spec["text"], vision_config=spec["vision"],
                       audio_config=spec["audio"], tie_word_embeddings=spec["tie_word_embeddings"],
                       **SPECIAL)
    model = Gemma4ForConditionalGeneration(cfg).eval()
    randomize(model, seed)
    randomize_tower_buffers(model, seed + 1)
    return model


def soft_token_sensitivity(model, x, kwargs, logits):
    """How far the logits move when every soft token value is scaled by 1 +- SENSITIVITY_EPS
    (signs alternating): the conditioning of the prompt, against which a soft-token difference
    of float32 rounding size is judged (random tiny models can be ill-conditioned)."""
    inner = model.model
    patched = {}
    for attr in ("get_image_features", "get_audio_features"):
        orig = getattr(inner, attr, None)
        if orig is None:
            continue

        def wrapper(*a, _orig=orig, **k):
            out = _orig(*a, **k)

            def perturb(t):
                if isinstance(t, (tuple, list)):
                    return type(t)(perturb(u) for u in t)
                sign = torch.ones_like(t).flatten()
                sign[1::2] = -1
                return t * (1 + SENSITIVITY_EPS * sign.view_as(t))
            out.pooler_output = perturb(out.pooler_output)
            return out
        patched[attr] = orig
        setattr(inner, attr, wrapper)
    try:
        with torch.no_grad():
            moved = model(input_ids=x, **kwargs).logits[0].float()
    finally:
        for attr in patched:
            delattr(inner, attr)  # the class method again
    return float((moved - logits).abs().max())


def router_margins(model, run):
    """Runs run() with every MoE router's scores recorded; returns (its result, per position
    the smallest gap between the k-th and (k+1)-th router score over the MoE layers, or None
    without experts): recorded to diagnose a MoE checkpoint's misses (a row whose gap is at
    rounding level may pick other experts in gemma4). Not used by the check: in these random
    models gaps under 0.01 are the common case (26 of 44 rows of seed 4044's audio prompt),
    and rows with gaps near 1e-4 agreed within the bound."""
    routers = [m for m in model.modules() if type(m).__name__ == "Gemma4TextRouter"]
    if not routers:
        return run(), None
    scores = []
    hooks = [r.proj.register_forward_hook(lambda mod, inp, out: scores.append(out.detach()))
             for r in routers]
    try:
        result = run()
    finally:
        for h in hooks:
            h.remove()
    k = model.config.get_text_config().top_k_experts
    gaps = None
    for s in scores:
        s = s.float().reshape(-1, s.shape[-1])
        if k >= s.shape[-1]:
            continue  # every expert is taken: nothing to tie
        top = s.topk(k + 1, dim=-1).values
        gap = top[:, k - 1] - top[:, k]
        gaps = gap if gaps is None else torch.minimum(gaps, gap)
    return result, None if gaps is None else [round(float(g), 6) for g in gaps]


def greedy(model, ids, kwargs, steps=6):
    seq, margins = list(ids), []
    with torch.no_grad():
        for _ in range(steps):
            x = torch.tensor([seq])
            extra = dict(kwargs)
            if "pixel_values" in extra:
                extra["mm_token_type_ids"] = (x == SPECIAL["image_token_id"]).long()
            last = model(input_ids=x, **extra).logits[0, -1].float()
            top2 = last.topk(2).values
            margins.append(round((top2[0] - top2[1]).item(), 5))
            seq.append(int(last.argmax()))
    return seq[len(ids):], margins


def record_model(spec, seed, vdir, images, clip, fe):
    model = build(spec, seed)
    model.to(getattr(torch, spec["dtype"])).save_pretrained(vdir)
    # The tiny media tokenizer (placeholders at the ids above), so GGUF files name them too.
    tokenizer = os.path.join(ROOT, "tests", "fixtures", "vision", "tokenizer", "tokenizer.json")
    if os.path.exists(tokenizer):
        shutil.copy(tokenizer, os.path.join(vdir, "tokenizer.json"))
    if spec["vision"] is not None:
        Gemma4ImageProcessor(max_soft_tokens=spec["budget"],
                             patch_size=spec["vision"]["patch_size"],
                             pooling_kernel_size=spec["vision"]["pooling_kernel_size"]
                             ).save_pretrained(vdir)
    # Eager attention for the text model (the reference the fixtures use); sdpa where audio is
    # in the prompt (transformers 5.17's eager audio attention applies its mask inverted:
    # huggingface/transformers#48818; make_audio_fixtures.py).
    ref = reference_model(Gemma4ForCausalLM if spec["layout"] == "text" else
                          Gemma4ForConditionalGeneration, vdir)
    # Eager experts in both (torch's grouped_mm refuses expert widths whose rows are not a
    # multiple of 16 bytes: "strides should be multiple of 16 bytes"; 8 of the 96 seeds of
    # rounds 3-4, every one MoE with an audio tower).
    sdpa = Gemma4ForConditionalGeneration.from_pretrained(
        vdir, dtype=torch.float32, attn_implementation="sdpa",
        experts_implementation="eager").eval() if spec["audio"] is not None else None
    g = torch.Generator().manual_seed(seed)
    vocab = spec["text"]["vocab_size"]
    rec = dict(seed=seed, spec=spec, transformers_version=transformers.__version__,
               torch_version=torch.__version__, prompts=[], soft={})

    def add_prompt(name, ids, model_, kwargs, media):
        x = torch.tensor([ids])
        extra = dict(kwargs)
        if "pixel_values" in extra:
            extra["mm_token_type_ids"] = (x == SPECIAL["image_token_id"]).long()
        with torch.no_grad():
            logits, routing = router_margins(
                model_, lambda: model_(input_ids=x, **extra).logits[0].float())
        gen, margins = greedy(model_, ids, kwargs)
        fname = f"logits_{name}.f32"
        logits.contiguous().numpy().astype("<f4").tofile(os.path.join(vdir, fname))
        entry = dict(name=name, ids=ids, logits=fname, media=media, greedy=gen,
                     greedy_margins=margins)
        if routing is not None:
            entry["router_margins"] = routing
        if media:
            entry["sensitivity"] = soft_token_sensitivity(model_, x, extra, logits)
        rec["prompts"].append(entry)

    # Text: long enough to cross every drawn sliding window several times.
    ids = [2] + torch.randint(3, min(vocab, 500), (44,), generator=g).tolist()
    add_prompt("text", ids, ref, {}, [])

    if spec["vision"] is not None:
        vp = spec["vision"]
        proc = Gemma4ImageProcessor(max_soft_tokens=spec["budget"], patch_size=vp["patch_size"],
                                    pooling_kernel_size=vp["pooling_kernel_size"])
        feats = {k: proc(images=[load_image(p)], return_tensors="pt") for k, p in images.items()}
        for k, f in feats.items():
            with torch.no_grad():
                soft = ref.model.get_image_features(f["pixel_values"], f["image_position_ids"],
                                                    return_dict=True).pooler_output[0].float()
            fname = f"soft_image_{k}.f32"
            soft.contiguous().numpy().astype("<f4").tofile(os.path.join(vdir, fname))
            rec["soft"]["image_" + k] = dict(file=fname, media=os.path.basename(images[k]),
                                             n=int(soft.shape[0]))
        ids = [2] + torch.randint(3, 400, (4,), generator=g).tolist()
        for k in images:
            n = int(feats[k]["num_soft_tokens_per_image"][0])
            ids += [SPECIAL["boi_token_id"]] + [SPECIAL["image_token_id"]] * n + \
                [SPECIAL["eoi_token_id"]] + torch.randint(3, 400, (3,), generator=g).tolist()
        kwargs = dict(pixel_values=torch.cat([feats[k]["pixel_values"] for k in images]),
                      image_position_ids=torch.cat([feats[k]["image_position_ids"]
                                                    for k in images]))
        add_prompt("image", ids, ref, kwargs, [os.path.basename(p) for p in images.values()])

    if spec["audio"] is not None:
        wav, samples = clip
        f = fe([samples], return_tensors="pt")
        with torch.no_grad():
            ao = sdpa.model.get_audio_features(f["input_features"], f["input_features_mask"],
                                               return_dict=True)
            soft = ao.pooler_output[ao.attention_mask].float()
        soft.contiguous().numpy().astype("<f4").tofile(os.path.join(vdir, "soft_audio.f32"))
        rec["soft"]["audio"] = dict(file="soft_audio.f32", media=os.path.basename(wav),
                                    n=int(soft.shape[0]))
        ids = [2] + torch.randint(3, 400, (3,), generator=g).tolist() + \
            [SPECIAL["boa_token_id"]] + [SPECIAL["audio_token_id"]] * int(soft.shape[0]) + \
            [SPECIAL["eoa_token_index"]] + torch.randint(3, 400, (4,), generator=g).tolist()
        add_prompt("audio", ids, sdpa,
                   dict(input_features=f["input_features"],
                        input_features_mask=f["input_features_mask"]),
                   [os.path.basename(wav)])
    with open(os.path.join(vdir, "reference.json"), "w") as fh:
        json.dump(rec, fh, indent=1)
    return rec


def main():
    out = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 24
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    # SEEDS (comma-separated) instead of N FIRST: redo chosen seeds of an earlier round.
    seeds = [int(x) for x in sys.argv[4].split(",")] if len(sys.argv) > 4 else \
        list(range(first, first + count))
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(8)
    images, clip = make_media(os.path.join(out, "media"))
    fe = Gemma4AudioFeatureExtractor()
    summary = {}
    for seed in seeds:
        spec = draw(seed)
        vdir = os.path.join(out, f"sweep-{seed}")
        try:
            rec = record_model(spec, seed, vdir, images, clip, fe)
            summary[seed] = dict(built=True, soft={k: v["n"] for k, v in rec["soft"].items()},
                                 greedy=[p["greedy"] for p in rec["prompts"]])
        except Exception as e:  # noqa: BLE001 - a config transformers refuses is a result too
            summary[seed] = dict(built=False, error=f"{type(e).__name__}: {e}",
                                 trace=traceback.format_exc()[-1500:], spec=spec)
        print(seed, json.dumps(summary[seed])[:300], flush=True)
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
