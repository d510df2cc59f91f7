#!/usr/bin/env python3
"""Diagnosis for a sweep checkpoint whose audio soft tokens differ from transformers' more than
float32 rounding explains: transformers' soft tokens of the checkpoint's audio clip with the
audio tower cut to its first L conformer layers (L = 1 .. all), with sdpa and eager attention,
so that gemma4's output on the same cut checkpoints (`gemma4 encode --model DIR/cut-L`) shows
at which layer, and with which attention implementation, the two part.

    python3 tools/reference/sweep_audio_layers.py SWEEP_DIR SEED OUT_DIR

Writes OUT_DIR/cut-L/ (the checkpoint's files, config.json with audio_config.num_hidden_layers
= L; the weights of the later layers stay in the file and are not read) and
OUT_DIR/soft_L{L}_{sdpa,eager}.f32 ([n, hidden] float32, the valid rows as the sweep records).
"""
import json
import os
import shutil
import sys
import wave

import numpy as np
import torch
from transformers import Gemma4ForConditionalGeneration
from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor


def main():
    sweep, seed, out = sys.argv[1], sys.argv[2], sys.argv[3]
    vdir = os.path.join(sweep, f"sweep-{seed}")
    rec = json.load(open(os.path.join(vdir, "reference.json")))
    wav = os.path.join(sweep, "media", rec["soft"]["audio"]["media"])
    with wave.open(wav) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    f = Gemma4AudioFeatureExtractor()([pcm.astype(np.float32) / 32768.0], return_tensors="pt")
    config = json.load(open(os.path.join(vdir, "config.json")))
    layers = config["audio_config"]["num_hidden_layers"]
    for cut in range(1, layers + 1):
        cdir = os.path.join(out, f"cut-{cut}")
        os.makedirs(cdir, exist_ok=True)
        for name in os.listdir(vdir):
            if name != "config.json" and os.path.isfile(os.path.join(vdir, name)):
                shutil.copy(os.path.join(vdir, name), cdir)
        c = json.loads(json.dumps(config))
        c["audio_config"]["num_hidden_layers"] = cut
        json.dump(c, open(os.path.join(cdir, "config.json"), "w"), indent=1)
        for impl in ("sdpa", "eager"):
            model = Gemma4ForConditionalGeneration.from_pretrained(
                cdir, dtype=torch.float32, attn_implementation=impl,
                experts_implementation="eager").eval()
            with torch.no_grad():
                ao = model.model.get_audio_features(f["input_features"], f["input_features_mask"],
                                                    return_dict=True)
                soft = ao.pooler_output[ao.attention_mask].float()
            soft.contiguous().numpy().astype("<f4").tofile(
                os.path.join(out, f"soft_L{cut}_{impl}.f32"))
            print(seed, cut, impl, tuple(soft.shape), "valid frames",
                  int(f["input_features_mask"].sum()), "of", f["input_features_mask"].shape[-1])


if __name__ == "__main__":
    main()
