#!/usr/bin/env python3
"""Writes a Gemma 4 assistant drafter checkpoint (config.json + model.safetensors) as a GGUF file
the way llama.cpp's converter does (conversion/gemma.py, class Gemma4AssistantModel: architecture
"gemma4-assistant", gemma4's metadata keys under that name plus embedding_length_out = the
target's hidden size and nextn_predict_layers = block count; tensors named by gguf-py's
tensor map, pre/post projections as nextn.pre_projection / nextn.post_projection, layer_scalar as
blk.N.layer_output_scale, rope_freqs for the proportional RoPE of full layers). The converter
needs torch; this script needs only numpy and llama.cpp's gguf-py:

    PYTHONPATH=/path/to/llama.cpp/gguf-py python3 tools/reference/make_assistant_gguf.py \
        CHECKPOINT_DIR OUT.gguf [--keep-centroids]

llama.cpp's converter drops the E2B/E4B drafters' centroid head (masked_embedding.*), so such a
GGUF computes the dense head; --keep-centroids also writes masked_embd_centroids.weight and
masked_embd_ordering, the names gguf-py reserves for them (llama.cpp loads them if present).
Float tensors are written as F32.
"""
import json
import struct
import sys

import numpy as np
import gguf

ARCH = "gemma4-assistant"


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[base + a:base + b]
        dt = info["dtype"]
        if dt == "BF16":
            arr = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F16":
            arr = np.frombuffer(buf, "<f2").astype(np.float32)
        elif dt == "F32":
            arr = np.frombuffer(buf, "<f4").copy()
        elif dt == "I64":
            arr = np.frombuffer(buf, "<i8").copy()
        else:
            raise ValueError(f"{name}: dtype {dt}")
        out[name] = arr.reshape(info["shape"])
    return out


LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "layer_scalar": "layer_output_scale.weight",
}


def main():
    src, dst = sys.argv[1], sys.argv[2]
    keep_centroids = "--keep-centroids" in sys.argv[3:]
    cfg = json.load(open(f"{src}/config.json"))
    tc = cfg["text_config"]
    tensors = read_safetensors(f"{src}/model.safetensors")
    n = tc["num_hidden_layers"]
    types = tc["layer_types"]
    swa = [t == "sliding_attention" for t in types]
    head_dim_swa = tc["head_dim"]
    kv_swa = tc["num_key_value_heads"]
    head_dim_full = tc.get("global_head_dim")
    kv_full = tc.get("num_global_key_value_heads")
    # As the converter does: a full layer's per_layer_config entry when the keys are absent.
    for idx, lc in (tc.get("per_layer_config") or {}).items():
        if types[int(idx)] == "full_attention":
            head_dim_full = head_dim_full or lc.get("head_dim")
            kv_full = kv_full or lc.get("num_key_value_heads")
    head_dim_full = head_dim_full or head_dim_swa
    kv_full = kv_full or kv_swa
    rope = tc["rope_parameters"]

    w = gguf.GGUFWriter(dst, ARCH)
    w.add_block_count(n)
    w.add_context_length(tc.get("max_position_embeddings", 131072))
    w.add_embedding_length(tc["hidden_size"])
    w.add_feed_forward_length(tc["intermediate_size"])
    w.add_head_count(tc["num_attention_heads"])
    w.add_head_count_kv([kv_swa if s else kv_full for s in swa])
    w.add_layer_norm_rms_eps(tc["rms_norm_eps"])
    w.add_key_length(head_dim_full)
    w.add_value_length(head_dim_full)
    w.add_key_length_swa(head_dim_swa)
    w.add_value_length_swa(head_dim_swa)
    w.add_sliding_window(tc["sliding_window"])
    w.add_sliding_window_pattern(swa)
    w.add_shared_kv_layers(tc.get("num_kv_shared_layers") or n)
    w.add_embedding_length_per_layer_input(0)
    w.add_rope_freq_base(rope["full_attention"]["rope_theta"])
    w.add_rope_freq_base_swa(rope["sliding_attention"]["rope_theta"])
    w.add_rope_dimension_count(head_dim_full)
    w.add_rope_dimension_count_swa(head_dim_swa)
    if tc.get("final_logit_softcapping"):
        w.add_final_logit_softcapping(tc["final_logit_softcapping"])
    w.add_embedding_length_out(cfg["backbone_hidden_size"])
    w.add_nextn_predict_layers(n)
    if keep_centroids and cfg.get("use_ordered_embeddings"):
        w.add_uint32(f"{ARCH}.centroid_top_k", cfg["centroid_intermediate_top_k"])

    def put(name, arr):
        w.add_tensor(name, np.ascontiguousarray(arr.astype(np.float32)))

    put("token_embd.weight", tensors["model.embed_tokens.weight"])
    put("output_norm.weight", tensors["model.norm.weight"])
    put("nextn.pre_projection.weight", tensors["pre_projection.weight"])
    put("nextn.post_projection.weight", tensors["post_projection.weight"])
    partial = rope["full_attention"].get("partial_rotary_factor", 1.0)
    rotated = int(head_dim_full * partial / 2)
    put("rope_freqs.weight",
        np.array([1.0] * rotated + [1e30] * (head_dim_full // 2 - rotated), np.float32))
    for i in range(n):
        for hf, gg in LAYER_NAMES.items():
            key = f"model.layers.{i}.{hf}"
            if key in tensors:
                arr = tensors[key]
                put(f"blk.{i}.{gg}", arr.reshape(1) if arr.ndim == 0 else arr)
    if keep_centroids and cfg.get("use_ordered_embeddings"):
        put("masked_embd_centroids.weight", tensors["masked_embedding.centroids.weight"])
        w.add_tensor("masked_embd_ordering",
                     tensors["masked_embedding.token_ordering"].astype(np.int32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
