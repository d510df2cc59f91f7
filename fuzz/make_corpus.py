#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/ (standard library only; output is committed).

Run from anywhere: python3 fuzz/make_corpus.py. Overwrites the generated seeds; keep the whole
corpus small (< 100 KB).
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "models")


def write(kind, name, data):
    path = os.path.join(CORPUS, kind, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)


# ----------------------------------------------------------------------------------------------
# json

def json_seeds():
    write("json", "all_types.json",
          '{"null": null, "t": true, "f": false, "int": -42, "float": 2.5e-3, '
          '"str": "a\\"b\\\\c\\n\\u00e9\\ud83d\\ude00", "arr": [1, [2, [3]], {}], '
          '"obj": {"nested": {"deeper": []}}}')
    write("json", "numbers.json",
          "[0, -0, 1e3, 1E+3, 25e-1, -1.5E-2, 9223372036854775807, -9223372036854775808, "
          "9223372036854775808, 1e400, 5e-324, 0.30000000000000004]")
    write("json", "utf8.json", '["\u00e9\u20ac\U0001F600", "\\u0000\\u001f", "\x7f"]')
    write("json", "deep_ok.json", "[" * 200 + "]" * 200)
    write("json", "deep_bad.json", "[" * 300 + "]" * 300)
    write("json", "bad_utf8.json", b'["\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff"]')
    write("json", "bad_surrogate.json", '["\\ud83d", "\\ude00\\ud83d"]')
    write("json", "duplicate_key.json", '{"a": 1, "b": 2, "a": 3}')
    write("json", "trailing.json", '{"a": [1, 2]} x')
    write("json", "truncated.json", '{"a": [1, 2, {"b": "c')
    write("json", "control_char.json", b'["a\x01b"]')
    write("json", "empty.json", b"")


# ----------------------------------------------------------------------------------------------
# safetensors

def safetensors(header, data=b"", header_len=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    n = len(h) if header_len is None else header_len
    return struct.pack("<Q", n) + h + data


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def safetensors_seeds():
    a = f32([0.5 * i for i in range(6)])
    b = struct.pack("<4H", 0x3F80, 0x4000, 0xBF80, 0x0000)  # bf16 1, 2, -1, 0
    valid = {
        "__metadata__": {"format": "pt"},
        "model.embed_tokens.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "model.norm.weight": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]},
        "model.layers.0.layer_scalar": {"dtype": "F16", "shape": [1], "data_offsets": [32, 34]},
        "empty": {"dtype": "I64", "shape": [0, 7], "data_offsets": [34, 34]},
    }
    data = a + b + struct.pack("<H", 0x3C00)
    write("safetensors", "valid.safetensors", safetensors(valid, data))
    write("safetensors", "empty_header.safetensors", safetensors({}))
    write("safetensors", "all_dtypes.safetensors", safetensors({
        name: {"dtype": name, "shape": [1], "data_offsets": [8 * i, 8 * i + size]}
        for i, (name, size) in enumerate([
            ("F64", 8), ("I64", 8), ("F32", 4), ("I32", 4), ("F16", 2), ("BF16", 2), ("I16", 2),
            ("I8", 1), ("U8", 1), ("BOOL", 1), ("F8_E4M3", 1), ("F8_E5M2", 1)])
    }, bytes(range(96))))
    write("safetensors", "short.safetensors", b"\x10\x00\x00")
    write("safetensors", "header_beyond_file.safetensors", safetensors(b"{}", header_len=4096))
    write("safetensors", "header_not_object.safetensors", safetensors(b"[1,2,3]"))
    write("safetensors", "malformed_header.safetensors", safetensors(b'{"a": {"dtype": "F32",'))
    write("safetensors", "unknown_dtype.safetensors", safetensors(
        {"w": {"dtype": "Q4", "shape": [4], "data_offsets": [0, 16]}}, bytes(16)))
    write("safetensors", "byte_count_mismatch.safetensors", safetensors(
        {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}, bytes(24)))
    write("safetensors", "truncated_data.safetensors", safetensors(valid, data[:-5]))
    write("safetensors", "overlap.safetensors", safetensors({
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "z": {"dtype": "F32", "shape": [0], "data_offsets": [10, 10]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [12, 28]}}, bytes(32)))
    write("safetensors", "huge_shape.safetensors", safetensors(
        {"w": {"dtype": "F32", "shape": [1 << 20, 1 << 20, 1 << 20], "data_offsets": [0, 16]}},
        bytes(16)))
    write("safetensors", "bad_offsets.safetensors", safetensors(
        {"w": {"dtype": "U8", "shape": [1],
               "data_offsets": [9223372036854775806, 9223372036854775807]}}, bytes(4)))


# ----------------------------------------------------------------------------------------------
# config

def config_seeds():
    for variant, layout in [("tiny-31b", "gemma4_text"), ("tiny-e2b", "gemma4"),
                            ("tiny-26b-a4b", "gemma4_text"), ("tiny-e4b", "gemma4_text")]:
        with open(os.path.join(FIXTURES, variant, layout, "config.json"), "rb") as f:
            text = json.load(f)
        # Compact, to keep the corpus small.
        write("config", "%s_%s.json" % (variant, layout), json.dumps(text, separators=(",", ":")))
    base = {
        "model_type": "gemma4_text", "vocab_size": 512, "hidden_size": 56,
        "intermediate_size": 72, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "global_head_dim": 32,
        "hidden_size_per_layer_input": 0, "sliding_window": 7,
        "layer_types": ["sliding_attention"] * 3 + ["full_attention"],
    }

    def variant(name, **changes):
        c = dict(base)
        for k, v in changes.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        write("config", name, json.dumps(c, separators=(",", ":")))

    variant("minimal.json")
    write("config", "nested_text_config.json",
          json.dumps({"model_type": "gemma4", "text_config": dict(base, model_type=None)}))
    variant("kv_shared_double_wide.json", num_kv_shared_layers=2, use_double_wide_mlp=True)
    variant("moe.json", enable_moe_block=True, num_experts=4, top_k_experts=2,
            moe_intermediate_size=16)
    variant("moe_topk_too_big.json", enable_moe_block=True, num_experts=2, top_k_experts=3,
            moe_intermediate_size=16)
    variant("wrong_model_type.json", model_type="llama")
    variant("heads_not_divisible.json", num_attention_heads=3)
    variant("layer_types_short.json", layer_types=["sliding_attention"])
    variant("all_kv_shared.json", num_kv_shared_layers=4)
    variant("per_layer_config.json", per_layer_config={"3": {"head_dim": 48,
                                                            "num_key_value_heads": 1},
                                                      "x": {}})
    variant("rope.json", rope_parameters={
        "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                           "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "yarn", "rope_theta": 1e4}})
    variant("odd_head_dim.json", head_dim=15)
    variant("huge_dims.json", num_hidden_layers=1073741824, head_dim=1073741824,
            intermediate_size=1073741824, layer_types=None, use_double_wide_mlp=True,
            num_kv_shared_layers=1)
    variant("bad_types.json", hidden_size="56", eos_token_id=[1, -2], rms_norm_eps="x")
    write("config", "not_object.json", "[1, 2, 3]")
    write("config", "malformed.json", '{"model_type": "gemma4_text", "vocab_size" 512}')


# ----------------------------------------------------------------------------------------------
# gguf: a tiny two-layer gemma4 model in llama.cpp's layout (docs/gguf-gemma4.md), and breakages

GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STR, GGUF_ARR = 4, 5, 6, 7, 8, 9


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_value(vtype, v):
    if vtype == GGUF_U32:
        return struct.pack("<I", v)
    if vtype == GGUF_I32:
        return struct.pack("<i", v)
    if vtype == GGUF_F32:
        return struct.pack("<f", v)
    if vtype == GGUF_BOOL:
        return struct.pack("<B", 1 if v else 0)
    if vtype == GGUF_STR:
        return gguf_str(v)
    etype, items = v
    return struct.pack("<IQ", etype, len(items)) + b"".join(gguf_value(etype, x) for x in items)


def gguf_file(kvs, tensors, version=3, magic=b"GGUF"):
    """kvs: [(key, type, value)]; tensors: [(name, ggml_type, ne list, data bytes)]."""
    out = magic + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, vtype, v in kvs:
        out += gguf_str(key) + struct.pack("<I", vtype) + gguf_value(vtype, v)
    offset, blobs = 0, []
    for name, gtype, ne, data in tensors:
        out += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", gtype, offset)
        padded = data + b"\0" * ((-len(data)) % 32)
        blobs.append(padded)
        offset += len(padded)
    out += b"\0" * ((-len(out)) % 32)
    return out + b"".join(blobs)


def q8_0_rows(rows, cols, seed):
    out = b""
    for r in range(rows):
        for b in range(cols // 32):
            out += struct.pack("<e", 0.01) + bytes(((seed + r * 7 + b * 3 + i * 5) % 255) for i in range(32))
    return out


def tiny_gguf_parts():
    H, V, L, nh, hd, ghd, ffn = 32, 16, 2, 2, 16, 32, 32
    kv = [("general.architecture", GGUF_STR, "gemma4"),
          ("gemma4.block_count", GGUF_U32, L), ("gemma4.context_length", GGUF_U32, 128),
          ("gemma4.embedding_length", GGUF_U32, H), ("gemma4.feed_forward_length", GGUF_U32, ffn),
          ("gemma4.attention.head_count", GGUF_U32, nh),
          ("gemma4.attention.head_count_kv", GGUF_ARR, (GGUF_I32, [1, 1])),
          ("gemma4.attention.key_length", GGUF_U32, ghd), ("gemma4.attention.value_length", GGUF_U32, ghd),
          ("gemma4.attention.key_length_swa", GGUF_U32, hd), ("gemma4.attention.value_length_swa", GGUF_U32, hd),
          ("gemma4.attention.layer_norm_rms_epsilon", GGUF_F32, 1e-6),
          ("gemma4.attention.sliding_window", GGUF_U32, 4),
          ("gemma4.attention.sliding_window_pattern", GGUF_ARR, (GGUF_BOOL, [True, False])),
          ("gemma4.attention.shared_kv_layers", GGUF_U32, 0),
          ("gemma4.rope.freq_base", GGUF_F32, 1e6), ("gemma4.rope.freq_base_swa", GGUF_F32, 1e4),
          ("gemma4.embedding_length_per_layer_input", GGUF_U32, 0),
          ("gemma4.final_logit_softcapping", GGUF_F32, 30.0)]
    f32 = lambda n, v=1.0: struct.pack("<%df" % n, *([v] * n))
    t = [("rope_freqs.weight", 0, [ghd // 2], f32(4) + f32(ghd // 2 - 4, 1e30)),
         ("token_embd.weight", 8, [H, V], q8_0_rows(V, H, 1)),
         ("output_norm.weight", 0, [H], f32(H))]
    for i, (d, kvh) in enumerate([(hd, 1), (ghd, 1)]):
        p = "blk.%d." % i
        t += [(p + "attn_norm.weight", 0, [H], f32(H)), (p + "post_attention_norm.weight", 0, [H], f32(H)),
              (p + "ffn_norm.weight", 0, [H], f32(H)), (p + "post_ffw_norm.weight", 0, [H], f32(H)),
              (p + "attn_q.weight", 8, [H, nh * d], q8_0_rows(nh * d, H, i)),
              (p + "attn_q_norm.weight", 0, [d], f32(d)),
              (p + "attn_output.weight", 8, [nh * d, H], q8_0_rows(H, nh * d, i + 1)),
              (p + "attn_k.weight", 8, [H, kvh * d], q8_0_rows(kvh * d, H, i + 2)),
              (p + "attn_k_norm.weight", 0, [d], f32(d)),
              (p + "attn_v.weight", 8, [H, kvh * d], q8_0_rows(kvh * d, H, i + 3)),
              (p + "ffn_gate.weight", 8, [H, ffn], q8_0_rows(ffn, H, i + 4)),
              (p + "ffn_up.weight", 8, [H, ffn], q8_0_rows(ffn, H, i + 5)),
              (p + "ffn_down.weight", 8, [ffn, H], q8_0_rows(H, ffn, i + 6)),
              (p + "layer_output_scale.weight", 0, [1], f32(1, 0.5))]
    return kv, t


def gguf_seeds():
    kv, t = tiny_gguf_parts()
    write("gguf", "tiny_gemma4.gguf", gguf_file(kv, t))
    write("gguf", "bad_magic.gguf", gguf_file(kv[:3], t[:2], magic=b"GGUX"))
    write("gguf", "version1.gguf", gguf_file(kv[:3], t[:2], version=1))
    write("gguf", "truncated.gguf", gguf_file(kv, t)[:700])
    write("gguf", "not_gemma4.gguf", gguf_file([("general.architecture", GGUF_STR, "llama")], t[:2]))
    write("gguf", "count_too_large.gguf", b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 1 << 40))
    write("gguf", "pattern_wrong_length.gguf", gguf_file(
        [x if x[0] != "gemma4.attention.sliding_window_pattern" else (x[0], GGUF_ARR, (GGUF_BOOL, [True]))
         for x in kv], t))
    write("gguf", "unknown_type.gguf", gguf_file(kv[:3], [("x", 99, [32], b"\0" * 32)]))
    write("gguf", "q4_0_bad_row.gguf", gguf_file(kv[:3], [("x", 2, [31, 2], b"\0" * 36)]))


if __name__ == "__main__":
    json_seeds()
    safetensors_seeds()
    config_seeds()
    gguf_seeds()
    total = 0
    for root, _, files in os.walk(CORPUS):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print("corpus: %d bytes" % total)
