#!/usr/bin/env python3
"""Builds tiny random-weight Gemma 4 checkpoints WITH vision towers and records what
transformers computes for images: the preprocessed (resized) pixels, the soft tokens after the
projector, full-prompt logits with images in the prompt, and greedy continuations.

Run on a machine with transformers (>= 5.17), torch, torchvision and PIL:
    python3 tools/reference/make_vision_fixtures.py OUT_DIR
Then copy OUT_DIR/* to tests/fixtures/vision/.

Layout of OUT_DIR:
  images/NAME.{png,jpg}        inputs (made here with PIL, deterministic)
  images/NAME.resized.png      the processor's resized uint8 RGB image (lossless), the exact
                               input of rescale + patchify
  MODEL/                       checkpoint (Gemma4ForConditionalGeneration, storage dtype)
  MODEL/soft_IMAGE_BUDGET.f32  soft tokens after embed_vision, raw little-endian f32 [n, H]
  MODEL/logits_P.f32           [len(prompt P), vocab] logits of a prompt holding images
  reference.json               everything else: sizes, token counts, prompts, greedy ids

Tiny models are chaotic: a one-level pixel difference moves their logits by whole units, which
is the point: preprocessing must be exact.
"""
import json
import math
import os
import sys

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch
import transformers
from torchvision.transforms.v2 import functional as tvF
from transformers import Gemma4Config, Gemma4ForConditionalGeneration
from transformers.image_utils import load_image
from transformers.models.gemma4.image_processing_gemma4 import Gemma4ImageProcessor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import COMMON_TEXT, VOCAB, randomize, reference_model  # noqa: E402

# Multimodal special ids inside the tiny 512-token vocabulary (the released ids are > 255999).
SPECIAL = dict(boi_token_id=500, eoi_token_id=501, image_token_id=502, video_token_id=503,
               boa_token_id=504, eoa_token_index=505, audio_token_id=506)

TINY_VISION = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                   num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                   position_embedding_size=256)

VARIANTS = {
    # E2B/E4B-like towers: clipped linears, no standardize; causal images in the LM.
    "tiny-e2b-vision": dict(
        text=dict(hidden_size=64, num_hidden_layers=6, num_attention_heads=4,
                  num_key_value_heads=1, head_dim=32, global_head_dim=64,
                  intermediate_size=96, hidden_size_per_layer_input=16,
                  vocab_size_per_layer_input=VOCAB, num_kv_shared_layers=2,
                  use_double_wide_mlp=True, sliding_window=8,
                  layer_types=(["sliding_attention"] * 2 + ["full_attention"]) * 2),
        vision=dict(use_clipped_linears=True, standardize=False), dtype=torch.bfloat16),
    # 26B-A4B-like: MoE, K=V globals, standardize, bidirectional image blocks on sliding layers
    # (the window of 8 is far shorter than an image).
    "tiny-26b-vision": dict(
        text=dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, num_global_key_value_heads=1, head_dim=32,
                  global_head_dim=64, intermediate_size=40, hidden_size_per_layer_input=0,
                  attention_k_eq_v=True, enable_moe_block=True, num_experts=8,
                  top_k_experts=3, moe_intermediate_size=24, sliding_window=8,
                  use_bidirectional_attention="vision",
                  layer_types=["sliding_attention"] * 3 + ["full_attention"]),
        vision=dict(use_clipped_linears=False, standardize=True), dtype=torch.bfloat16),
    # 31B-like: dense, K=V, standardize, bidirectional; float32 storage.
    "tiny-31b-vision": dict(
        text=dict(hidden_size=56, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, num_global_key_value_heads=1, head_dim=16,
                  global_head_dim=48, intermediate_size=72, hidden_size_per_layer_input=0,
                  attention_k_eq_v=True, sliding_window=7, use_bidirectional_attention="vision",
                  layer_types=["sliding_attention"] * 3 + ["full_attention"]),
        vision=dict(use_clipped_linears=False, standardize=True), dtype=torch.float32),
    # E4B-like, float16 storage, and a flat preprocessor_config.json with a 140-token default.
    "tiny-e4b-vision": dict(
        text=dict(hidden_size=48, num_hidden_layers=7, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, global_head_dim=32,
                  intermediate_size=80, hidden_size_per_layer_input=8,
                  vocab_size_per_layer_input=VOCAB, num_kv_shared_layers=2, sliding_window=6,
                  layer_types=["sliding_attention"] * 2 + ["full_attention"] +
                  ["sliding_attention"] * 3 + ["full_attention"]),
        vision=dict(use_clipped_linears=True, standardize=False), dtype=torch.float16,
        default_budget=140),
}


def make_images(d):
    """Deterministic test pictures: smooth gradients plus noise and hard edges, so that a
    resampling error anywhere shows. Returns {name: (path, budget)}."""
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(7)

    def rgb(h, w):
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        base = np.stack([x / max(w - 1, 1) * 255, y / max(h - 1, 1) * 255,
                         (np.sin(x / 7.0) * np.cos(y / 5.0) * 0.5 + 0.5) * 255], axis=-1)
        noise = rng.normal(0, 6, size=(h, w, 3))
        img = np.clip(base + noise, 0, 255).astype(np.uint8)
        pil = PIL.Image.fromarray(img, "RGB")
        draw = PIL.ImageDraw.Draw(pil)
        draw.rectangle([w // 5, h // 4, w // 2, h // 2], fill=(250, 10, 30))
        draw.line([0, h - 1, w - 1, 0], fill=(0, 0, 0), width=max(1, min(h, w) // 40))
        return pil

    images = {}
    # Scaled up (200x150 -> 432x336 for 70 tokens).
    p = os.path.join(d, "up_200x150.png"); rgb(150, 200).save(p); images["up_200x150"] = (p, 70)
    # Scaled down, JPEG (4:2:0 chroma).
    p = os.path.join(d, "down_1000x700.jpg"); rgb(700, 1000).save(p, quality=90)
    images["down_1000x700"] = (p, 70)
    # The same picture at a 280-token budget and at 140.
    images["down_1000x700@280"] = (p, 280)
    images["down_1000x700@140"] = (p, 140)
    # A thin strip: one side rounds to zero (edge case of the size rule).
    p = os.path.join(d, "strip_900x10.png"); rgb(10, 900).save(p); images["strip_900x10"] = (p, 70)
    # Grayscale.
    p = os.path.join(d, "gray_333x251.png"); rgb(251, 333).convert("L").save(p)
    images["gray_333x251"] = (p, 70)
    # RGBA with a varying alpha (convert("RGB") drops it).
    a = rgb(300, 300).convert("RGBA")
    alpha = PIL.Image.fromarray((np.mgrid[0:300, 0:300][1] * 255 // 299).astype(np.uint8), "L")
    a.putalpha(alpha)
    p = os.path.join(d, "rgba_300x300.png"); a.save(p); images["rgba_300x300"] = (p, 70)
    # Palette image.
    p = os.path.join(d, "palette_123x77.png")
    rgb(77, 123).quantize(colors=37).save(p); images["palette_123x77"] = (p, 70)
    # Already the target size for 70 tokens (432x336): no resize at all.
    p = os.path.join(d, "exact_432x336.png"); rgb(336, 432).save(p); images["exact_432x336"] = (p, 70)
    # JPEG with EXIF orientation 6 (stored 240x160, shown rotated 90 degrees clockwise).
    exif = PIL.Image.Exif(); exif[0x0112] = 6
    p = os.path.join(d, "exif6_240x160.jpg"); rgb(160, 240).save(p, quality=92, exif=exif)
    images["exif6_240x160"] = (p, 70)
    return images


def build(spec, seed):
    text = dict(COMMON_TEXT)
    text.update(spec["text"])
    vision = dict(TINY_VISION)
    vision.update(spec["vision"])
    cfg = Gemma4Config(text_config=text, vision_config=vision, audio_config=None, **SPECIAL)
    torch.manual_seed(seed)
    model = Gemma4ForConditionalGeneration(cfg).eval()
    randomize(model, seed)
    randomize_tower_buffers(model, seed + 1)
    return model


def randomize_tower_buffers(model, seed):
    """Finite clip bounds that do clip (activations are O(1)); std buffers that matter. Draws
    in buffer order from one generator, so a tower without some buffers draws the rest as
    before."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, b in model.named_buffers():
            leaf = name.split(".")[-1]
            if leaf in ("input_min", "output_min"):
                b.copy_(-(torch.rand(b.shape, generator=g) * 1.0 + 0.8))
            elif leaf in ("input_max", "output_max"):
                b.copy_(torch.rand(b.shape, generator=g) * 1.0 + 0.8)
            elif leaf == "std_bias":
                b.copy_(torch.randn(b.shape, generator=g) * 0.5)
            elif leaf == "std_scale":
                b.copy_(torch.rand(b.shape, generator=g) * 1.0 + 0.5)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(8)
    images = make_images(os.path.join(out, "images"))

    # Preprocessing: exactly what the processor hands the model.
    processed = {}
    record = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
              "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "special_ids": SPECIAL, "images": {}, "models": {}}
    for key, (path, budget) in images.items():
        pil = load_image(path)  # EXIF transpose + convert("RGB"), as transformers loads files
        proc = Gemma4ImageProcessor(max_soft_tokens=budget)
        # The resized uint8 image, before rescale (the processor's own steps, stopped early).
        t = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).contiguous()
        resized = proc.aspect_ratio_preserving_resize(
            t, patch_size=16, max_patches=budget * 9, pooling_kernel_size=3,
            resample=tvF.InterpolationMode.BICUBIC)
        rname = os.path.basename(path).rsplit(".", 1)[0] + (f"@{budget}" if "@" in key else "")
        rpath = os.path.join(out, "images", rname + ".resized.png")
        PIL.Image.fromarray(resized.permute(1, 2, 0).numpy(), "RGB").save(rpath)
        feats = proc(images=[pil], return_tensors="pt")
        pv = feats["pixel_values"][0]
        # Cross-check: the processor's pixel values are the resized bytes * (1/255), patchified.
        n_real = int((feats["image_position_ids"][0] != -1).all(-1).sum())
        check = (resized.float() * (1 / 255)).reshape(3, resized.shape[1] // 16, 16,
                                                       resized.shape[2] // 16, 16)
        check = check.permute(1, 3, 2, 4, 0).reshape(-1, 768)
        assert torch.equal(check, pv[:n_real]), key
        processed[key] = feats
        record["images"][key] = dict(file=os.path.basename(path), budget=budget,
                                     source_size=[pil.height, pil.width],
                                     resized=os.path.basename(rpath),
                                     resized_size=[int(resized.shape[1]), int(resized.shape[2])],
                                     num_patches=n_real,
                                     soft_tokens=int(feats["num_soft_tokens_per_image"][0]))

    for vi, (name, spec) in enumerate(VARIANTS.items()):
        vdir = os.path.join(out, name)
        model = build(spec, seed=300 + vi)
        model.to(spec["dtype"]).save_pretrained(vdir)
        if "default_budget" in spec:
            Gemma4ImageProcessor(max_soft_tokens=spec["default_budget"]).save_pretrained(vdir)
        ref = reference_model(Gemma4ForConditionalGeneration, vdir)
        H = ref.config.text_config.hidden_size
        mrec = {"storage_dtype": str(spec["dtype"]).replace("torch.", ""), "soft": {},
                "prompts": []}
        # Soft tokens of every image.
        for key, feats in processed.items():
            with torch.no_grad():
                out_feats = ref.model.get_image_features(
                    feats["pixel_values"], feats["image_position_ids"],
                    return_dict=True).pooler_output[0].float()
            assert out_feats.shape[1] == H
            fname = "soft_" + key.replace("@", "_at") + ".f32"
            out_feats.contiguous().numpy().astype("<f4").tofile(os.path.join(vdir, fname))
            mrec["soft"][key] = dict(file=fname, n=int(out_feats.shape[0]))
        # Prompts with images: text, image A, text, image B, text; and one image alone.
        g = torch.Generator().manual_seed(4321 + vi)
        prompt_images = [["up_200x150", "gray_333x251"], ["exif6_240x160"]]
        for pi, keys in enumerate(prompt_images):
            ids = [2] + torch.randint(3, 400, (5,), generator=g).tolist()
            for k in keys:
                n = record["images"][k]["soft_tokens"]
                ids += [SPECIAL["boi_token_id"]] + [SPECIAL["image_token_id"]] * n + \
                       [SPECIAL["eoi_token_id"]]
                ids += torch.randint(3, 400, (4,), generator=g).tolist()
            pv = torch.cat([processed[k]["pixel_values"] for k in keys])
            pos = torch.cat([processed[k]["image_position_ids"] for k in keys])
            x = torch.tensor([ids])
            tt = (x == SPECIAL["image_token_id"]).long()
            with torch.no_grad():
                logits = ref(input_ids=x, pixel_values=pv, image_position_ids=pos,
                             mm_token_type_ids=tt).logits[0].float()
                # Greedy by full recomputation (no cache subtleties): 10 steps.
                seq = list(ids)
                margins = []
                for _ in range(10):
                    xs = torch.tensor([seq])
                    ts = (xs == SPECIAL["image_token_id"]).long()
                    last = ref(input_ids=xs, pixel_values=pv, image_position_ids=pos,
                               mm_token_type_ids=ts).logits[0, -1].float()
                    top2 = last.topk(2).values
                    margins.append(round((top2[0] - top2[1]).item(), 5))
                    seq.append(int(last.argmax()))
            fname = f"logits_{pi}.f32"
            logits.contiguous().numpy().astype("<f4").tofile(os.path.join(vdir, fname))
            mrec["prompts"].append(dict(ids=ids, images=keys, logits=fname,
                                        greedy=seq[len(ids):], greedy_margins=margins))
        record["models"][name] = mrec
        print(name, {k: v["n"] for k, v in mrec["soft"].items()},
              [p["greedy"] for p in mrec["prompts"]], flush=True)
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
