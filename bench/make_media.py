#!/usr/bin/env python3
"""Writes the inputs bench/compare_mtmd.py times, deterministic (seeded), into a directory:

    bench/make_media.py /tmp/bench

- img960x672.png: 280 soft tokens in both gemma4 (--image-budget 280) and llama.cpp's mtmd
  (--image-min-tokens/--image-max-tokens 280): transformers fills the budget, llama.cpp never
  enlarges, so the image is already the size both choose.
- img1920x1344.png: 1120 soft tokens in both, likewise.
- speech30.wav: 30 s (one audio piece) of 16 kHz mono 16-bit PCM, tones with a moving pitch
  plus noise, so no frame is silent.
Smooth gradients with noise rather than flat colour: the content does not change the encode
time of either tool, but a flat image compresses to nothing and hides decoding costs.
"""
import os
import sys
import wave

import numpy as np
from PIL import Image


def image(width, height, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 200.0
    pixels = base + rng.normal(0.0, 20.0, size=base.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def speech(seconds, rate, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 180.0 + 60.0 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    signal = 0.3 * np.sin(phase) + 0.1 * np.sin(3 * phase) + 0.05 * rng.normal(size=t.shape)
    return (np.clip(signal, -1.0, 1.0) * 32767).astype("<i2")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    image(960, 672, 1).save(os.path.join(out, "img960x672.png"))
    image(1920, 1344, 2).save(os.path.join(out, "img1920x1344.png"))
    with wave.open(os.path.join(out, "speech30.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(speech(30.0, 16000, 3).tobytes())
    print("wrote img960x672.png, img1920x1344.png, speech30.wav in", out)


if __name__ == "__main__":
    main()
