#!/usr/bin/env python3
"""Builds tiny random-weight Gemma 4 checkpoints WITH audio (and vision) towers and records what
transformers computes for speech: the log-mel features and their frame mask
(Gemma4AudioFeatureExtractor), the soft tokens after embed_audio, full-prompt logits of prompts
mixing text, audio and an image, and greedy continuations.

Run on a machine with transformers (>= 5.17), torch, torchvision and PIL:
    python3 tools/reference/make_audio_fixtures.py OUT_DIR
Then copy OUT_DIR/* to tests/fixtures/audio/.

Layout of OUT_DIR:
  wav/NAME.wav                16 kHz mono 16-bit PCM inputs (made here, deterministic); the
                              reference reads them back as int16 / 32768 in float32
  NAME.features.f32           [frames, 128] log-mel features (float32, as the extractor returns)
  NAME.mask.u8                [frames] frame validity (0/1)
  MODEL/                      checkpoint (Gemma4ForConditionalGeneration, storage dtype)
  MODEL/soft_NAME.f32         soft tokens after embed_audio, [n, H]
  MODEL/logits_P.f32          [len(prompt P), vocab] logits
  reference.json              token counts, prompts, greedy ids, versions
"""
import json
import os
import sys
import wave

import numpy as np
import torch
import transformers
from transformers import Gemma4Config, Gemma4ForConditionalGeneration
from transformers.image_utils import load_image
from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
from transformers.models.gemma4.image_processing_gemma4 import Gemma4ImageProcessor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import COMMON_TEXT, VOCAB, randomize, reference_model  # noqa: E402
from make_vision_fixtures import SPECIAL, TINY_VISION, randomize_tower_buffers  # noqa: E402

TINY_AUDIO = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  subsampling_conv_channels=[128, 4], output_proj_dims=24)
# subsampling_conv_channels[0] must be 128: transformers sizes the input projection as
# (channels[0] // 4) * channels[1], i.e. it assumes the 128 mel bins there.

VARIANTS = {
    "tiny-e2b-audio": dict(
        text=dict(hidden_size=64, num_hidden_layers=6, num_attention_heads=4,
                  num_key_value_heads=1, head_dim=32, global_head_dim=64,
                  intermediate_size=96, hidden_size_per_layer_input=16,
                  vocab_size_per_layer_input=VOCAB, num_kv_shared_layers=2,
                  use_double_wide_mlp=True, sliding_window=8,
                  layer_types=(["sliding_attention"] * 2 + ["full_attention"]) * 2),
        vision=dict(use_clipped_linears=True), dtype=torch.bfloat16),
    "tiny-e4b-audio": dict(
        text=dict(hidden_size=48, num_hidden_layers=7, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, global_head_dim=32,
                  intermediate_size=80, hidden_size_per_layer_input=8,
                  vocab_size_per_layer_input=VOCAB, num_kv_shared_layers=2, sliding_window=6,
                  layer_types=["sliding_attention"] * 2 + ["full_attention"] +
                  ["sliding_attention"] * 3 + ["full_attention"]),
        vision=dict(use_clipped_linears=True), dtype=torch.float32),
}

# name -> number of samples at 16 kHz.
CLIPS = {
    "short_4800": 4800,        # 0.3 s: fewer tokens than one 12-token attention chunk
    "speechlike_27200": 27200,  # 1.7 s: several chunks
    "odd_32037": 32037,        # not a multiple of 128 samples
    "silence_16000": 16000,    # digital silence
    "golden_38560": 38560,     # a golden length from the transformers tests (60 tokens)
}


def make_wavs(d):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(11)
    out = {}
    for name, n in CLIPS.items():
        t = np.arange(n) / 16000.0
        if name.startswith("silence"):
            x = np.zeros(n)
        else:
            # A vowel-like harmonic series with a moving pitch, bursts of noise, and a click.
            f0 = 120 + 40 * np.sin(2 * np.pi * 1.3 * t)
            phase = 2 * np.pi * np.cumsum(f0) / 16000.0
            x = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.25
            x *= 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
            x += rng.normal(0, 0.02, n)
            x[n // 3: n // 3 + 400] += rng.normal(0, 0.3, min(400, n - n // 3))
            x[n // 2] = 0.99
        pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
        path = os.path.join(d, name + ".wav")
        with wave.open(path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(pcm.tobytes())
        out[name] = (path, pcm.astype(np.float32) / np.float32(32768.0))
    return out


def build(spec, seed):
    text = dict(COMMON_TEXT)
    text.update(spec["text"])
    vision = dict(TINY_VISION)
    vision.update(spec["vision"])
    cfg = Gemma4Config(text_config=text, vision_config=vision, audio_config=TINY_AUDIO, **SPECIAL)
    torch.manual_seed(seed)
    model = Gemma4ForConditionalGeneration(cfg).eval()
    randomize(model, seed)
    # The towers here have no std buffers (no standardize), so this draws as it always did.
    randomize_tower_buffers(model, seed + 1)
    return model


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(8)
    clips = make_wavs(os.path.join(out, "wav"))
    fe = Gemma4AudioFeatureExtractor()
    record = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
              "special_ids": SPECIAL, "clips": {}, "models": {}}
    feats = {}
    for name, (path, samples) in clips.items():
        f = fe([samples], return_tensors="pt")
        x, mask = f["input_features"], f["input_features_mask"]
        feats[name] = (x, mask)
        x[0].numpy().astype("<f4").tofile(os.path.join(out, name + ".features.f32"))
        mask[0].numpy().astype(np.uint8).tofile(os.path.join(out, name + ".mask.u8"))
        record["clips"][name] = dict(file=os.path.basename(path), samples=len(samples),
                                     frames=int(x.shape[1]), valid_frames=int(mask.sum()))
    # Token counts for the golden lengths of the transformers tests, without running a model.
    counts = {}
    for n in (38560, 48000, 48800, 99360, 640000, 480000, 481, 640, 1000, 2000):
        f = fe([np.zeros(n, dtype=np.float32)], return_tensors="np")
        m = f["input_features_mask"][0]
        t = len(m)
        for _ in range(2):
            t_out = (t + 2 - 3) // 2 + 1
            m = m[::2][:t_out]
            t = len(m)
        counts[str(n)] = int(m.sum())
    record["token_counts"] = counts

    image_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                              "fixtures", "vision", "images", "up_200x150.png")
    image = None
    if os.path.exists(image_path):
        image = Gemma4ImageProcessor(max_soft_tokens=70)(images=[load_image(image_path)],
                                                         return_tensors="pt")

    for vi, (mname, spec) in enumerate(VARIANTS.items()):
        vdir = os.path.join(out, mname)
        model = build(spec, seed=500 + vi)
        model.to(spec["dtype"]).save_pretrained(vdir)
        ref = reference_model(Gemma4ForConditionalGeneration, vdir)
        # transformers 5.17's eager attention applies the audio tower's attention mask
        # inverted (huggingface/transformers#48818; sdpa applies it as intended). The soft
        # tokens and logits here come from sdpa, as transformers computes by default; the eager
        # soft tokens are kept beside them (soft_NAME.eager.f32) to document the difference.
        ref_sdpa = Gemma4ForConditionalGeneration.from_pretrained(
            vdir, dtype=torch.float32, attn_implementation="sdpa").eval()
        mrec = {"storage_dtype": str(spec["dtype"]).replace("torch.", ""), "soft": {},
                "prompts": []}
        for name, (x, mask) in feats.items():
            with torch.no_grad():
                ao = ref_sdpa.model.get_audio_features(x, mask, return_dict=True)
                soft = ao.pooler_output[ao.attention_mask].float()
                ae = ref.model.get_audio_features(x, mask, return_dict=True)
                soft_eager = ae.pooler_output[ae.attention_mask].float()
            fname = f"soft_{name}.f32"
            soft.contiguous().numpy().astype("<f4").tofile(os.path.join(vdir, fname))
            soft_eager.contiguous().numpy().astype("<f4").tofile(
                os.path.join(vdir, f"soft_{name}.eager.f32"))
            print(mname, name, "sdpa vs eager max diff",
                  float((soft - soft_eager).abs().max()), flush=True)
            mrec["soft"][name] = dict(file=fname, n=int(soft.shape[0]))
        g = torch.Generator().manual_seed(777 + vi)
        prompts = [(["speechlike_27200"], False), (["short_4800", "odd_32037"], True)]
        for pi, (names, with_image) in enumerate(prompts):
            ids = [2] + torch.randint(3, 400, (4,), generator=g).tolist()
            if with_image and image is not None:
                n_img = int(image["num_soft_tokens_per_image"][0])
                ids += [SPECIAL["boi_token_id"]] + [SPECIAL["image_token_id"]] * n_img + \
                       [SPECIAL["eoi_token_id"]]
                ids += torch.randint(3, 400, (3,), generator=g).tolist()
            for nm in names:
                n = mrec["soft"][nm]["n"]
                ids += [SPECIAL["boa_token_id"]] + [SPECIAL["audio_token_id"]] * n + \
                       [SPECIAL["eoa_token_index"]]
                ids += torch.randint(3, 400, (3,), generator=g).tolist()
            # Batch the clips as the processor would: padded to the longest.
            fe_batch = fe([clips[nm][1] for nm in names], return_tensors="pt")
            kwargs = dict(input_features=fe_batch["input_features"],
                          input_features_mask=fe_batch["input_features_mask"])
            if with_image and image is not None:
                kwargs.update(pixel_values=image["pixel_values"],
                              image_position_ids=image["image_position_ids"])
            with torch.no_grad():
                x = torch.tensor([ids])
                logits = ref_sdpa(input_ids=x, **kwargs).logits[0].float()
                seq = list(ids)
                margins = []
                for _ in range(10):
                    last = ref_sdpa(input_ids=torch.tensor([seq]),
                                    **kwargs).logits[0, -1].float()
                    top2 = last.topk(2).values
                    margins.append(round((top2[0] - top2[1]).item(), 5))
                    seq.append(int(last.argmax()))
            fname = f"logits_{pi}.f32"
            logits.contiguous().numpy().astype("<f4").tofile(os.path.join(vdir, fname))
            mrec["prompts"].append(dict(ids=ids, audio=names,
                                        image="up_200x150" if with_image and image is not None
                                        else None,
                                        logits=fname, greedy=seq[len(ids):],
                                        greedy_margins=margins))
        record["models"][mname] = mrec
        print(mname, {k: v["n"] for k, v in mrec["soft"].items()},
              [p["greedy"] for p in mrec["prompts"]], flush=True)
    print("token counts", counts)
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
