#!/usr/bin/env python3
"""Diagnosis for a sweep checkpoint whose media-prompt logits miss the check's bound: runs
transformers on that prompt with gemma4's soft tokens in place of its own (what the text model
alone makes of the same inputs) and reports, per position, where the MoE routers pick other
experts than with transformers' soft tokens.

    python3 tools/reference/sweep_feed_soft.py SWEEP_DIR SEED PROMPT OURS.f32 [OURS.f32 ...] OUT_DIR
    python3 tools/reference/sweep_feed_soft.py SWEEP_DIR SEED PROMPT --float64 OUT_DIR

--float64: the whole prompt (towers and text model, same attention and experts settings as the
reference) in float64 instead, written as OUT_DIR/logits64_SEED_PROMPT.f32: a yardstick for
rows where float32 rounding alone moves the logits (how far the float32 reference itself is
from it, beside how far gemma4 is). For image and audio prompts it also writes the soft tokens
of each medium, float64 (OUT_DIR/soft64_SEED_PROMPT_I.f64) and transformers' float32 ones
(soft32_SEED_PROMPT_I.f32), to set beside `gemma4 encode`'s.

OURS: `gemma4 encode` outputs, one per medium of the prompt in its order ([n, hidden] float32).
Writes OUT_DIR/logits_SEED_PROMPT.f32 (transformers' logits with our soft tokens) and
OUT_DIR/routing_SEED_PROMPT.json (positions whose top-k expert sets differ, per layer).
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import Gemma4ForConditionalGeneration
from transformers.image_utils import load_image
from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
from transformers.models.gemma4.image_processing_gemma4 import Gemma4ImageProcessor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import reference_model  # noqa: E402
from make_vision_fixtures import SPECIAL  # noqa: E402


def main():
    sweep, seed, name = sys.argv[1], sys.argv[2], sys.argv[3]
    ours_files, out = sys.argv[4:-1], sys.argv[-1]
    float64 = ours_files == ["--float64"]
    dtype = torch.float64 if float64 else torch.float32
    os.makedirs(out, exist_ok=True)
    vdir = os.path.join(sweep, f"sweep-{seed}")
    rec = json.load(open(os.path.join(vdir, "reference.json")))
    spec = rec["spec"]
    hidden = spec["text"]["hidden_size"]
    prompt = next(p for p in rec["prompts"] if p["name"] == name)
    media = [os.path.join(sweep, "media", m) for m in prompt["media"]]
    ours = [] if float64 else [torch.from_numpy(np.fromfile(f, dtype="<f4").reshape(-1, hidden))
                               for f in ours_files]
    x = torch.tensor([prompt["ids"]])
    if name == "audio":
        model = Gemma4ForConditionalGeneration.from_pretrained(
            vdir, dtype=dtype, attn_implementation="sdpa",
            experts_implementation="eager").eval()
        import wave
        with wave.open(media[0]) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        f = Gemma4AudioFeatureExtractor()([pcm.astype(np.float32) / 32768.0],
                                          return_tensors="pt")
        kwargs = dict(input_features=f["input_features"].to(dtype),
                      input_features_mask=f["input_features_mask"])
        attr = "get_audio_features"
    else:
        model = reference_model(Gemma4ForConditionalGeneration, vdir).to(dtype)
        vp = spec["vision"]
        proc = Gemma4ImageProcessor(max_soft_tokens=spec["budget"], patch_size=vp["patch_size"],
                                    pooling_kernel_size=vp["pooling_kernel_size"])
        feats = [proc(images=[load_image(m)], return_tensors="pt") for m in media]
        kwargs = dict(pixel_values=torch.cat([f["pixel_values"] for f in feats]).to(dtype),
                      image_position_ids=torch.cat([f["image_position_ids"] for f in feats]),
                      mm_token_type_ids=(x == SPECIAL["image_token_id"]).long())
        attr = "get_image_features"

    routers = [m for m in model.modules() if type(m).__name__ == "Gemma4TextRouter"]
    k = model.config.get_text_config().top_k_experts

    def run(substitute):
        scores = []
        hooks = [r.proj.register_forward_hook(lambda mod, i, o: scores.append(o.detach()))
                 for r in routers]
        inner = model.model
        orig = getattr(inner, attr)

        def wrapper(*a, **kw):
            res = orig(*a, **kw)
            po = res.pooler_output
            if isinstance(po, (list, tuple)):
                assert len(po) == len(ours), (len(po), len(ours))
                res.pooler_output = type(po)(o.to(p.dtype).view_as(p) for o, p in zip(ours, po))
            elif attr == "get_audio_features":
                po = po.clone()
                po[res.attention_mask] = ours[0].to(po.dtype)
                res.pooler_output = po
            else:
                res.pooler_output = torch.cat(ours).to(po.dtype).view_as(po)
            return res
        if substitute:
            setattr(inner, attr, wrapper)
        try:
            with torch.no_grad():
                logits = model(input_ids=x, **kwargs).logits[0].float()
        finally:
            if substitute:
                delattr(inner, attr)
            for h in hooks:
                h.remove()
        sets = [s.float().reshape(-1, s.shape[-1]).topk(k, dim=-1) for s in scores]
        return logits, sets, scores

    if float64 and attr == "get_image_features":
        # The soft tokens too, per image, float64 ([n, hidden] little-endian doubles): how far
        # transformers' float32 tower and ours each are from them.
        for i, f in enumerate(feats):
            with torch.no_grad():
                soft = model.model.get_image_features(
                    f["pixel_values"].to(dtype), f["image_position_ids"],
                    return_dict=True).pooler_output[0]
            soft.contiguous().numpy().astype("<f8").tofile(
                os.path.join(out, f"soft64_{seed}_{name}_{i}.f64"))
        # transformers' own float32 tower on the same pixels, for the same comparison.
        model32 = reference_model(Gemma4ForConditionalGeneration, vdir)
        for i, f in enumerate(feats):
            with torch.no_grad():
                soft = model32.model.get_image_features(
                    f["pixel_values"], f["image_position_ids"], return_dict=True).pooler_output[0]
            soft.contiguous().numpy().astype("<f4").tofile(
                os.path.join(out, f"soft32_{seed}_{name}_{i}.f32"))
        del model32
    if float64 and attr == "get_audio_features":
        # transformers' audio attention computes in float32 whatever the model's dtype
        # (.float() on q, k and v; softmax with dtype=float32): for the float64 yardstick both
        # keep float64 tensors float64 while the audio prompt runs.
        to_float, softmax = torch.Tensor.float, torch.nn.functional.softmax
        torch.Tensor.float = lambda t, *a, **k: t if t.dtype == torch.float64 else to_float(t, *a, **k)
        torch.nn.functional.softmax = lambda x, *a, dtype=None, **k: softmax(
            x, *a, dtype=torch.float64 if x.dtype == torch.float64 else dtype, **k)
        # The clip's soft tokens, float64 (the valid rows, [n, hidden] little-endian doubles), and
        # transformers' float32 tower's on the same features, as for images.
        with torch.no_grad():
            ao = model.model.get_audio_features(**kwargs, return_dict=True)
        ao.pooler_output[ao.attention_mask].contiguous().numpy().astype("<f8").tofile(
            os.path.join(out, f"soft64_{seed}_{name}_0.f64"))
        model32 = Gemma4ForConditionalGeneration.from_pretrained(
            vdir, dtype=torch.float32, attn_implementation="sdpa",
            experts_implementation="eager").eval()
        patched = torch.Tensor.float, torch.nn.functional.softmax
        torch.Tensor.float, torch.nn.functional.softmax = to_float, softmax
        with torch.no_grad():
            ao = model32.model.get_audio_features(f["input_features"], f["input_features_mask"],
                                                  return_dict=True)
        torch.Tensor.float, torch.nn.functional.softmax = patched
        ao.pooler_output[ao.attention_mask].contiguous().numpy().astype("<f4").tofile(
            os.path.join(out, f"soft32_{seed}_{name}_0.f32"))
        del model32
    if float64:
        logits, _, _ = run(False)
        logits.contiguous().numpy().astype("<f4").tofile(
            os.path.join(out, f"logits64_{seed}_{name}.f32"))
        if attr == "get_audio_features":
            torch.Tensor.float, torch.nn.functional.softmax = to_float, softmax
        print(f"{seed} {name}: float64 logits written")
        return
    theirs, sets_t, scores_t = run(False)
    mine, sets_o, _ = run(True)
    ref = torch.from_numpy(np.fromfile(os.path.join(vdir, prompt["logits"]), dtype="<f4"))
    print("transformers now vs recorded reference:",
          float((theirs.flatten() - ref).abs().max()))
    mine.contiguous().numpy().astype("<f4").tofile(os.path.join(out, f"logits_{seed}_{name}.f32"))
    flips = []
    for layer, (a, b, s) in enumerate(zip(sets_t, sets_o, scores_t)):
        s = s.float().reshape(-1, s.shape[-1])
        for pos in range(a.indices.shape[0]):
            if set(a.indices[pos].tolist()) != set(b.indices[pos].tolist()):
                top = s[pos].topk(min(k + 1, s.shape[-1])).values
                flips.append(dict(layer=layer, position=pos,
                                  gap=float(top[k - 1] - top[k]) if k < s.shape[-1] else None))
    per_pos = (mine - theirs).abs().max(dim=-1).values
    result = dict(seed=seed, prompt=name, flips=flips,
                  max_diff_by_position=[round(float(v), 7) for v in per_pos])
    with open(os.path.join(out, f"routing_{seed}_{name}.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps(dict(seed=seed, prompt=name, flips=flips,
                          top_positions=per_pos.topk(3).indices.tolist(),
                          top_diffs=[round(float(v), 6) for v in per_pos.topk(3).values]))[:2000])


if __name__ == "__main__":
    main()
