#!/usr/bin/env python3
"""Records what transformers 5.17 computes for video on the tiny 26B/31B-layout vision fixtures
(tests/fixtures/vision, made by make_vision_fixtures.py): Gemma4VideoProcessor's frames (resize,
rescale + normalize, patchify), soft tokens per frame, the logits of a prompt holding a video
(frames as "mm:ss <|image>" + <|video|> x n + "<image|>"; the timestamp text is stood in for by
ordinary ids, as the CLI contract takes ids), and greedy ids.

Run where transformers, torch and torchvision are installed, from the repository root:
    python3 tools/reference/make_video_fixtures.py OUT_DIR
Then copy OUT_DIR/* to tests/fixtures/vision/video/.

  frames/frame_K.png          the input frames (lossless, 4 of them, 1 s apart)
  frames/frame_K.resized.png  the processor's resized frame
  MODEL_soft.f32              soft tokens of all frames, [frames * n, H]
  MODEL_logits.f32            [len(ids), vocab]
  reference.json
"""
import json
import os
import sys

import numpy as np
import PIL.Image
import torch
import transformers
from torchvision.transforms.v2 import functional as tvF
from transformers import Gemma4ForConditionalGeneration
from transformers.models.gemma4.video_processing_gemma4 import Gemma4VideoProcessor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import reference_model  # noqa: E402
from make_vision_fixtures import SPECIAL  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def main():
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "frames"), exist_ok=True)
    torch.set_num_threads(8)
    rng = np.random.default_rng(3)
    # 4 frames of a moving square over a gradient with noise, 257 x 181 (odd sizes, scaled up
    # to the 70-token budget).
    frames = []
    h, w = 181, 257
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    for k in range(4):
        base = np.stack([x / (w - 1) * 255, y / (h - 1) * 255,
                         np.full_like(x, 40 + 50 * k)], axis=-1)
        img = np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
        img[40:90, 30 + 40 * k:80 + 40 * k] = (250, 20, 20)
        frames.append(img)
        PIL.Image.fromarray(img, "RGB").save(os.path.join(out, "frames", f"frame_{k}.png"))
    video = np.stack(frames)  # [F, H, W, 3]
    proc = Gemma4VideoProcessor()
    feats = proc(videos=[video], do_sample_frames=False, return_tensors="pt")
    pv, pos = feats["pixel_values_videos"], feats["video_position_ids"]
    n = int(feats["num_soft_tokens_per_video"][0])
    # The resized frames, as the processor's resize produced them.
    t = torch.from_numpy(video).permute(0, 3, 1, 2).contiguous()
    resized = proc.aspect_ratio_preserving_resize(t, patch_size=16, max_patches=70 * 9,
                                                  pooling_kernel_size=3,
                                                  resample=tvF.InterpolationMode.BICUBIC)
    for k in range(len(frames)):
        PIL.Image.fromarray(resized[k].permute(1, 2, 0).numpy(), "RGB").save(
            os.path.join(out, "frames", f"frame_{k}.resized.png"))
    # How the pixel values relate to the resized bytes (x / 255 from the fused normalize, or
    # x * (1/255) as for images): recorded, and checked by the C++ test.
    r = resized.float()
    by_div = (r / 255.0)
    by_mul = (r * (1 / 255))
    npatch = (resized.shape[2] // 16) * (resized.shape[3] // 16)

    def patchify(v):
        f, c, hh, ww = v.shape
        v = v.reshape(f, c, hh // 16, 16, ww // 16, 16).permute(0, 2, 4, 3, 5, 1)
        return v.reshape(f, -1, 768)

    record = {"transformers_version": transformers.__version__, "frames": len(frames),
              "source_size": [h, w], "resized_size": [int(resized.shape[2]),
                                                      int(resized.shape[3])],
              "soft_tokens_per_frame": n, "timestamps": [0.0, 1.0, 2.0, 3.0],
              "pixels_equal_div_255": bool(torch.equal(patchify(by_div), pv[0][:, :npatch])),
              "pixels_equal_mul_inv_255": bool(torch.equal(patchify(by_mul), pv[0][:, :npatch])),
              "models": {}}
    for name in ("tiny-26b-vision", "tiny-31b-vision"):
        vdir = os.path.join(ROOT, "tests", "fixtures", "vision", name)
        ref = reference_model(Gemma4ForConditionalGeneration, vdir)
        with torch.no_grad():
            soft = torch.cat(ref.model.get_video_features(pv, pos, return_dict=True)
                             .pooler_output).float()
        soft.numpy().astype("<f4").tofile(os.path.join(out, f"{name}_soft.f32"))
        g = torch.Generator().manual_seed(99)
        ids = [2] + torch.randint(3, 400, (4,), generator=g).tolist()
        for k in range(len(frames)):
            # "mm:ss " stands in as two ordinary ids.
            ids += torch.randint(3, 400, (2,), generator=g).tolist()
            ids += [SPECIAL["boi_token_id"]] + [SPECIAL["video_token_id"]] * n + \
                   [SPECIAL["eoi_token_id"]]
        ids += torch.randint(3, 400, (3,), generator=g).tolist()
        x = torch.tensor([ids])
        tt = (x == SPECIAL["video_token_id"]).long() * 2
        with torch.no_grad():
            logits = ref(input_ids=x, pixel_values_videos=pv, video_position_ids=pos,
                         mm_token_type_ids=tt).logits[0].float()
            seq = list(ids)
            for _ in range(8):
                xs = torch.tensor([seq])
                ts = (xs == SPECIAL["video_token_id"]).long() * 2
                last = ref(input_ids=xs, pixel_values_videos=pv, video_position_ids=pos,
                           mm_token_type_ids=ts).logits[0, -1]
                seq.append(int(last.argmax()))
        logits.numpy().astype("<f4").tofile(os.path.join(out, f"{name}_logits.f32"))
        record["models"][name] = dict(ids=ids, greedy=seq[len(ids):],
                                      soft=f"{name}_soft.f32", logits=f"{name}_logits.f32")
        print(name, n, seq[len(ids):], flush=True)
    print("div", record["pixels_equal_div_255"], "mul", record["pixels_equal_mul_inv_255"])
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
