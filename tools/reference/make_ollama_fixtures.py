#!/usr/bin/env python3
"""Builds Ollama-layout one-file Gemma 4 GGUFs (text + vision + audio towers inline) for tests.

Ollama's converter (ollama/ollama convert/convert_gemma4.go) writes one blob per model with the
towers inside, and its llama.cpp compatibility layer (llama/compat/llama-ollama-compat.cpp,
handle_gemma4 / handle_gemma4_clip) documents how that blob differs from llama.cpp's files:

  * metadata: general.architecture "gemma4" only (no clip.* keys); tower settings under
    gemma4.vision.* and gemma4.audio.*; tokenizer.ggml.model "llama" (the vocabulary is BPE).
  * vision tensors: llama.cpp's v.* / mm.* names; the patch embedding stored F16 as
    [n_embd, 3, p, p]; the clip bounds as 1-element tensors and packed into v.clamp_data
    ((layers * 7 + 1) * 4 floats: q, k, v, out, gate, up, down x in_min, in_max, out_min,
    out_max, then the projector).
  * audio tensors: a.pre_encode.out = the subsampler's input projection (llama.cpp:
    a.input_projection), mm.a.fc = the tower's output projection (llama.cpp: a.pre_encode.out),
    per block ln1 / ln2 / layer_pre_norm / linear_pos (llama.cpp: attn_pre_norm / attn_post_norm
    / ln2 / attn_k_rel); per_dim_scale softplus-applied; depthwise conv [C, K].
  * MoE (26B-A4B): expert gate and up kept as two tensors (blk.N.ffn_gate_exps /
    blk.N.ffn_up_exps) and the per-expert scale as blk.N.ffn_gate_inp.per_expert_scale.

The text part comes from a text GGUF written by `gemma4 quantize` (f32), rewritten into
Ollama's conventions; the towers are converted here straight from the Hugging Face
safetensors by Ollama's renaming rules, independently of gemma4's own mmproj writer.

Usage: make_ollama_fixtures.py CHECKPOINT_DIR TEXT_GGUF OUT_GGUF (make_ollama_fixtures.sh runs it
for the committed fixtures). Needs numpy and gguf-py (llama.cpp's gguf-py on PYTHONPATH).
"""
import json
import math
import struct
import sys

import numpy as np
import gguf


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = np.frombuffer(data[begin:end], dtype=np.uint8)
        if info["dtype"] == "BF16":
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F32":
            arr = raw.view(np.float32)
        elif info["dtype"] == "F16":
            arr = raw.view(np.float16).astype(np.float32)
        else:
            raise SystemExit(f"{name}: unsupported dtype {info['dtype']}")
        out[name] = (arr.reshape(info["shape"]), info["dtype"])
    del base
    return out


# Ollama's convert_gemma4.go Replacements(): ordered (from, to) pairs applied as one
# strings.Replacer (at each position the first listed pair that matches wins).
REPLACEMENTS = [
    (".linear.weight", ".weight"), (".linear.bias", ".bias"),
    ("model.audio_tower.subsample_conv_projection.layer0.conv", "a.conv1d.0"),
    ("model.audio_tower.subsample_conv_projection.layer0.norm", "a.conv1d.0.norm"),
    ("model.audio_tower.subsample_conv_projection.layer1.conv", "a.conv1d.1"),
    ("model.audio_tower.subsample_conv_projection.layer1.norm", "a.conv1d.1.norm"),
    ("model.audio_tower.subsample_conv_projection.input_proj_linear", "a.pre_encode.out"),
    ("model.audio_tower.layers", "a.blk"),
    ("self_attn.relative_k_proj", "linear_pos"), ("self_attn.per_dim_scale", "per_dim_scale"),
    ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
    ("norm_post_attn", "ln2"), ("norm_pre_attn", "ln1"), ("self_attn.post", "attn_out"),
    ("feed_forward1.pre_layer_norm", "ffn_norm"), ("feed_forward1.post_layer_norm", "ffn_post_norm"),
    ("feed_forward1.ffw_layer_1", "ffn_up"), ("feed_forward1.ffw_layer_2", "ffn_down"),
    ("feed_forward2.pre_layer_norm", "ffn_norm_1"),
    ("feed_forward2.post_layer_norm", "ffn_post_norm_1"),
    ("feed_forward2.ffw_layer_1", "ffn_up_1"), ("feed_forward2.ffw_layer_2", "ffn_down_1"),
    ("lconv1d.depthwise_conv1d", "conv_dw"), ("lconv1d.pre_layer_norm", "conv_norm"),
    ("lconv1d.conv_norm", "norm_conv"), ("lconv1d.linear_start", "conv_pw1"),
    ("lconv1d.linear_end", "conv_pw2"),
    ("norm_out", "layer_pre_norm"),
    ("model.embed_audio.embedding_projection", "mm.a.input_projection"),
    ("model.audio_tower.output_proj", "mm.a.fc"),
    ("model.vision_tower.encoder.layers", "v.blk"),
    ("model.vision_tower.patch_embedder.input_proj", "v.patch_embd"),
    ("model.vision_tower.patch_embedder.position_embedding_table", "v.position_embd.weight"),
    ("model.vision_tower.std_bias", "v.std_bias"), ("model.vision_tower.std_scale", "v.std_scale"),
    ("model.embed_vision.embedding_projection", "mm.input_projection"),
    ("input_layernorm", "attn_norm"), ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.k_norm", "attn_k_norm"), ("self_attn.o_proj", "attn_output"),
    ("mlp.gate_proj", "ffn_gate"), ("mlp.down_proj", "ffn_down"), ("mlp.up_proj", "ffn_up"),
    ("post_attention_layernorm", "post_attention_norm"),
    ("pre_feedforward_layernorm", "ffn_norm"),
    ("post_feedforward_layernorm", "post_ffw_norm"),
    ("layer_scalar", "layer_output_scale.weight"),
]


def replace_all(name):
    out, i = [], 0
    while i < len(name):
        for old, new in REPLACEMENTS:
            if name.startswith(old, i):
                out.append(new)
                i += len(old)
                break
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def ollama_tower_name(hf):
    name = replace_all(hf)
    if name.startswith("v.blk."):
        for old, new in ((".attn_norm.", ".ln1."), (".ffn_norm.", ".ln2."),
                         (".attn_output.", ".attn_out."),
                         (".post_attention_norm.", ".attn_post_norm."),
                         (".post_ffw_norm.", ".ffn_post_norm."),
                         (".layer_output_scale.", ".out_scale.")):
            name = name.replace(old, new, 1)
    if name.startswith("a.blk.") and name.endswith("per_dim_scale"):
        name += ".weight"
    return name


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    ckpt, text_gguf, out_path = sys.argv[1:]
    config = json.load(open(f"{ckpt}/config.json"))
    hf = read_safetensors(f"{ckpt}/model.safetensors")
    reader = gguf.GGUFReader(text_gguf)

    writer = gguf.GGUFWriter(out_path, "gemma4")
    for field in reader.fields.values():
        key = field.name
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            etype = field.types[-1]
            if etype == gguf.GGUFValueType.STRING:
                value = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                value = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_key_value(key, value, vtype, sub_type=etype)
        elif vtype == gguf.GGUFValueType.STRING:
            value = bytes(field.parts[field.data[0]]).decode("utf-8")
            if key == "tokenizer.ggml.model":
                value = "llama"  # what Ollama writes for Gemma 4 (handle_gemma4 flips it back)
            writer.add_key_value(key, value, vtype)
        else:
            writer.add_key_value(key, field.parts[field.data[0]].tolist()[0], vtype)

    vc, ac = config.get("vision_config"), config.get("audio_config")
    if vc:
        writer.add_uint32("gemma4.vision.block_count", vc["num_hidden_layers"])
        writer.add_uint32("gemma4.vision.embedding_length", vc["hidden_size"])
        writer.add_uint32("gemma4.vision.attention.head_count", vc["num_attention_heads"])
        writer.add_uint32("gemma4.vision.feed_forward_length", vc["intermediate_size"])
        writer.add_uint32("gemma4.vision.patch_size", vc["patch_size"])
        writer.add_uint32("gemma4.vision.num_channels", vc.get("num_channels") or 3)
        writer.add_uint32("gemma4.vision.projector.scale_factor", vc.get("pooling_kernel_size") or 3)
        writer.add_float32("gemma4.vision.attention.layer_norm_epsilon", vc.get("rms_norm_eps") or 1e-6)
    if ac:
        writer.add_uint32("gemma4.audio.block_count", ac["num_hidden_layers"])
        writer.add_uint32("gemma4.audio.embedding_length", ac["hidden_size"])
        writer.add_uint32("gemma4.audio.feed_forward_length", ac["hidden_size"] * 4)
        writer.add_uint32("gemma4.audio.attention.head_count", ac["num_attention_heads"])
        writer.add_float32("gemma4.audio.attention.layer_norm_epsilon", ac.get("rms_norm_eps") or 1e-6)
        if ac.get("conv_kernel_size"):
            writer.add_uint32("gemma4.audio.conv_kernel_size", ac["conv_kernel_size"])

    # Text tensors (gguf-py gives numpy arrays in row-major order, i.e. reversed ggml ne).
    for t in reader.tensors:
        data = np.array(t.data)
        name = t.name
        if name.endswith("ffn_gate_up_exps.weight"):
            half = data.shape[1] // 2  # [E, 2 * Ie, H]: gate rows, then up rows
            writer.add_tensor(name.replace("gate_up", "gate"), np.ascontiguousarray(data[:, :half]))
            writer.add_tensor(name.replace("gate_up", "up"), np.ascontiguousarray(data[:, half:]))
            continue
        if name.endswith("ffn_down_exps.scale"):
            name = name.replace("ffn_down_exps.scale", "ffn_gate_inp.per_expert_scale")
        writer.add_tensor(name, data)

    # Towers, by Ollama's rules.
    clamps = {}
    for hf_name, (arr, dtype) in sorted(hf.items()):
        if not hf_name.startswith(("model.vision_tower.", "model.embed_vision.",
                                   "model.audio_tower.", "model.embed_audio.")):
            continue
        if "embedding_post_projection_norm" in hf_name:
            continue
        name = ollama_tower_name(hf_name)
        data = arr.astype(np.float32)
        if arr.ndim == 0:
            data = data.reshape(1)
            if "vision_tower" in hf_name or "embed_vision" in hf_name:
                clamps[hf_name] = float(data[0])
        out_type = gguf.GGMLQuantizationType.BF16 if dtype == "BF16" else gguf.GGMLQuantizationType.F32
        if name.startswith("a.blk.") and name.endswith("per_dim_scale.weight"):
            data = np.log1p(np.exp(data.astype(np.float64))).astype(np.float32)
        if name.startswith("a.blk.") and "conv_dw" in name and name.endswith(".weight"):
            data = data.reshape(data.shape[0], data.shape[-1])  # [C, 1, K] -> [C, K]
        if name.startswith("a.conv1d.") and name.endswith(".weight") and ".norm" not in name:
            out_type = gguf.GGMLQuantizationType.F32  # im2col wants F32
        if name == "v.patch_embd.weight":
            # HF [n, p * p * 3] (patch-row, patch-column, channel) -> [n, 3, p, p], stored F16.
            n, k = data.shape
            p = int(math.isqrt(k // 3))
            data = data.reshape(n, p, p, 3).transpose(0, 3, 1, 2)
            out_type = gguf.GGMLQuantizationType.F16
        if data.ndim <= 1:
            out_type = gguf.GGMLQuantizationType.F32  # vectors and bounds are F32
        data = np.ascontiguousarray(data)
        if out_type == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, data.astype(np.float16))
        elif out_type == gguf.GGMLQuantizationType.BF16:
            bits = (data.view(np.uint32) >> 16).astype(np.uint16)  # exact: the source is bf16
            writer.add_tensor(name, bits, raw_shape=data.shape, raw_dtype=out_type)
        else:
            writer.add_tensor(name, data)

    if clamps:
        layers = vc["num_hidden_layers"]
        linears = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        suffixes = ["input_min", "input_max", "output_min", "output_max"]
        packed = np.zeros((layers * len(linears) + 1) * 4, dtype=np.float32)
        for layer in range(layers):
            for li, lin in enumerate(linears):
                for si, sfx in enumerate(suffixes):
                    for name, value in clamps.items():
                        if f"layers.{layer}." in name and lin in name and name.endswith(sfx):
                            packed[(layer * len(linears) + li) * 4 + si] = value
        writer.add_tensor("v.clamp_data", packed)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
