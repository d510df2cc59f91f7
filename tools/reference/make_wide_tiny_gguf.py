#!/usr/bin/env python3
"""Writes a tiny Gemma 4 GGUF whose matrices llama.cpp quantizes to K-quants (rows multiples of 256).

Why this exists
---------------
llama.cpp's K-quants (Q4_K, Q5_K, Q6_K, ...) pack a row in super-blocks of 256 values, so
llama-quantize only picks them for a matrix whose row length (ne0, the input dimension) is a
multiple of 256; otherwise it falls back to Q5_0/Q5_1/Q8_0 and the like. Our other tiny fixtures
have widths of 48/64, so none of their matrices can become Q5_K. This script writes a random-weight
E4B/E2B-like model (Per-Layer Embeddings, KV sharing, proportional RoPE on global layers) whose
every matrix input dimension is a multiple of 256, in exactly the layout llama.cpp's converter
(`convert_hf_to_gguf.py` / conversion/gemma.py, class Gemma4Model, arch "gemma4", commit de3ff81)
writes with `--outtype f32`; llama-quantize then turns it into a real K-quant file:

    PYTHONPATH=/path/to/llama.cpp/gguf-py python3 tools/reference/make_wide_tiny_gguf.py \
        OUT.gguf [--template tests/fixtures/llama_cpp_gguf/tiny-e4b.gguf] [--seed 0]
    llama-quantize OUT.gguf OUT-q5_k_m.gguf Q5_K_M

Layout (defaults)
-----------------
- hidden 256, FFN 512, 2 query heads, 1 KV head, head_dim 128 on sliding layers and 256 on
  global layers (global = 2x sliding, as in the released models), per-layer-input (PLE) size 256,
  vocab 512 (the template's tokenizer), 3 layers with pattern [S, F, F].
- Why 3 layers: llama-quantize never quantizes per_layer_model_proj (src/llama-quant.cpp), so that
  [hidden, layers*256] matrix stays F32 (1 MiB at 4 layers) and a 4-layer Q5_K_M file is 3.8 MB;
  3 layers give 2.9 MB. `--pattern SFSF --shared-kv-layers 2` writes the 4-layer variant.
- KV sharing: the last layer reuses the KV of layer 1 (the last non-shared global layer). That is
  what transformers does (last non-shared layer of the same type) *and* what llama.cpp assumes
  (src/llama-model.cpp: a shared sliding layer reads layer n_kv_from_start-2, a shared global
  layer reads n_kv_from_start-1), so the non-shared prefix must end [S, F]. (tiny-e4b.gguf's
  12-layer pattern ends its prefix [F, S]; llama.cpp aborts on it in the KV-cache setup.)
  KV-shared layers carry no attn_k / attn_v / attn_k_norm tensors, as in the converted fixture.
- Matrix input dims: token_embd/per_layer_model_proj/attn_q/k/v/ffn_gate/ffn_up/inp_gate: 256
  (hidden); attn_output: 2*128 = 256 or 2*256 = 512; ffn_down: 512; proj: 256 (PLE size);
  per_layer_token_embd: layers*256. All multiples of 256.

Metadata: every key of the template (a llama.cpp-converted tiny E4B, tokenizer included) is
copied in the template's order, with only the dimension keys (and the name / size label)
replaced. Tensors: the converter's order (rope_freqs first, then by sorted HF tensor name), the
converter's names and ggml shapes (ne0 = input dimension), all F32.

Values (deterministic for a given --seed; every value rounded to bfloat16 like a real
checkpoint's): matrices normal with std 1/sqrt(fan_in) (0.0625 for 256-wide inputs, 0.044 for
512), norm weights 1 + 0.2 N(0, 1) (Gemma 4 norms multiply by the weight itself), layer scalars in
[0.4, 0.6], embeddings (token_embd, per_layer_token_embd) N(0, 0.25^2), q_norm/k_norm weights
0.3 (1 + 0.2 N(0, 1)). The last two keep the model well conditioned: Gemma 4 attention has scale
1.0, so with unit q/k norms the scores have std ~sqrt(head_dim) = 11..16 and attention is nearly
hard, which lets rounding differences flip it (gemma4 vs llama.cpp then differ by 0.15 on some
rows instead of 0.01); with 0.3 the scores have std ~1-1.5. Embeddings of std 1 make the tied LM
head's logits std ~16 (close to the 30 softcap); 0.25 gives std ~4 with top-1 margins > 6.
"""
import argparse
import sys

import numpy as np
import gguf

ARCH = "gemma4"


def bf16_round(a):
    """Rounds float32 values to the nearest bfloat16 (ties to even), kept as float32."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def field_value(field):
    """Returns (value, type, sub_type) of a GGUFReader field, ready for GGUFWriter.add_key_value.
    Strings come back as raw bytes so that tokenizer pieces are copied byte for byte."""
    vtype = field.types[0]
    if vtype == gguf.GGUFValueType.ARRAY:
        sub = field.types[-1]
        if sub == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]) for i in field.data], vtype, sub
        vals = field.contents()
        if sub == gguf.GGUFValueType.BOOL:
            vals = [bool(v) for v in vals]
        return vals, vtype, sub
    if vtype == gguf.GGUFValueType.STRING:
        return bytes(field.parts[-1]), vtype, None
    return field.contents(), vtype, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="output .gguf (f32)")
    ap.add_argument("--template", default="tests/fixtures/llama_cpp_gguf/tiny-e4b.gguf",
                    help="llama.cpp-converted gemma4 GGUF whose metadata/tokenizer is copied")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--kv-heads", type=int, default=1)
    ap.add_argument("--head-dim", type=int, default=128, help="sliding layers")
    ap.add_argument("--global-head-dim", type=int, default=256, help="global (full) layers")
    ap.add_argument("--ple", type=int, default=256, help="per-layer-input size (0: no PLE)")
    ap.add_argument("--pattern", default="SFF",
                    help="layer types, S = sliding, F = global (full); the last must be F")
    ap.add_argument("--shared-kv-layers", type=int, default=1)
    ap.add_argument("--embed-std", type=float, default=0.25,
                    help="std of token_embd / per_layer_token_embd values")
    ap.add_argument("--qk-norm-scale", type=float, default=0.3,
                    help="multiplies the q_norm / k_norm weights (sets how sharp attention is)")
    args = ap.parse_args()

    H, I, nH, nKV = args.hidden, args.ffn, args.heads, args.kv_heads
    hd_s, hd_f, P = args.head_dim, args.global_head_dim, args.ple
    swa = [c == "S" for c in args.pattern.upper()]
    L = len(swa)
    n_shared = args.shared_kv_layers
    first_shared = L - n_shared
    assert not swa[-1], "the last layer must be global (transformers forces it)"
    assert 0 <= n_shared < L
    if n_shared > 0:
        # llama.cpp's KV reuse: shared sliding -> layer first_shared-2, shared global -> first_shared-1.
        assert first_shared >= 2 and swa[first_shared - 2] and not swa[first_shared - 1], \
            "llama.cpp needs the non-shared layers to end with [sliding, global]"

    # Every matrix input dim must be a multiple of 256 for K-quants.
    for what, d in [("hidden", H), ("ffn", I), ("heads*head_dim", nH * hd_s),
                    ("heads*global_head_dim", nH * hd_f), ("ple", P), ("layers*ple", L * P)]:
        if d % 256 != 0 and not (what.startswith(("ple", "layers")) and P == 0):
            print(f"warning: {what} = {d} is not a multiple of 256; llama-quantize will not "
                  f"use K-quants for those matrices", file=sys.stderr)

    rd = gguf.GGUFReader(args.template)
    vocab = len(rd.fields["tokenizer.ggml.tokens"].data)
    rng = np.random.default_rng(args.seed)

    # Metadata keys whose values differ from the template's (everything else is copied).
    K = lambda s: f"{ARCH}.{s}"  # noqa: E731
    U32, BOOL = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.BOOL
    override = {
        "general.name": ("Tiny Wide E4B", gguf.GGUFValueType.STRING, None),
        K("block_count"): (L, U32, None),
        K("embedding_length"): (H, U32, None),
        K("feed_forward_length"): (I, U32, None),
        K("attention.head_count"): (nH, U32, None),
        K("attention.head_count_kv"): (nKV, U32, None),
        # The converter writes the global head dim as key/value_length and rope.dimension_count
        # (proportional RoPE is expressed by rope_freqs), the sliding one as the *_swa keys.
        K("attention.key_length"): (hd_f, U32, None),
        K("attention.value_length"): (hd_f, U32, None),
        K("attention.key_length_swa"): (hd_s, U32, None),
        K("attention.value_length_swa"): (hd_s, U32, None),
        K("rope.dimension_count"): (hd_f, U32, None),
        K("rope.dimension_count_swa"): (hd_s, U32, None),
        K("attention.shared_kv_layers"): (n_shared, U32, None),
        K("embedding_length_per_layer_input"): (P, U32, None),
        K("attention.sliding_window_pattern"): (swa, gguf.GGUFValueType.ARRAY, BOOL),
    }
    w = gguf.GGUFWriter(args.out, ARCH)  # writes general.architecture itself

    # ---- tensors, keyed by the HF checkpoint name (the converter sorts by it) -------------------
    # Shapes here are numpy / HF order [out, in]; the GGUF ne order is reversed (ne0 = in).
    def linear(out_dim, in_dim):
        return bf16_round(rng.standard_normal((out_dim, in_dim)) / np.sqrt(in_dim))

    def norm(n, scale=1.0):
        return bf16_round(scale * (1.0 + 0.2 * rng.standard_normal(n)))

    hf = {}
    hf["embed_tokens.weight"] = bf16_round(args.embed_std * rng.standard_normal((vocab, H)))
    if P > 0:
        hf["embed_tokens_per_layer.weight"] = bf16_round(
            args.embed_std * rng.standard_normal((vocab, L * P)))
        hf["per_layer_model_projection.weight"] = linear(L * P, H)
        hf["per_layer_projection_norm.weight"] = norm(P)
    hf["norm.weight"] = norm(H)
    for i in range(L):
        p = f"layers.{i}."
        hd = hd_s if swa[i] else hd_f
        hf[p + "input_layernorm.weight"] = norm(H)
        hf[p + "self_attn.q_proj.weight"] = linear(nH * hd, H)
        hf[p + "self_attn.q_norm.weight"] = norm(hd, args.qk_norm_scale)
        if i < first_shared:  # KV-shared layers have no k/v projections or k_norm
            hf[p + "self_attn.k_proj.weight"] = linear(nKV * hd, H)
            hf[p + "self_attn.v_proj.weight"] = linear(nKV * hd, H)
            hf[p + "self_attn.k_norm.weight"] = norm(hd, args.qk_norm_scale)
        hf[p + "self_attn.o_proj.weight"] = linear(H, nH * hd)
        hf[p + "post_attention_layernorm.weight"] = norm(H)
        hf[p + "pre_feedforward_layernorm.weight"] = norm(H)
        hf[p + "mlp.gate_proj.weight"] = linear(I, H)
        hf[p + "mlp.up_proj.weight"] = linear(I, H)
        hf[p + "mlp.down_proj.weight"] = linear(H, I)
        hf[p + "post_feedforward_layernorm.weight"] = norm(H)
        if P > 0:
            hf[p + "per_layer_input_gate.weight"] = linear(P, H)
            hf[p + "per_layer_projection.weight"] = linear(H, P)
            hf[p + "post_per_layer_input_norm.weight"] = norm(H)
        hf[p + "layer_scalar"] = bf16_round(rng.uniform(0.4, 0.6, size=1))

    glob = {
        "embed_tokens.weight": "token_embd.weight",
        "embed_tokens_per_layer.weight": "per_layer_token_embd.weight",
        "per_layer_model_projection.weight": "per_layer_model_proj.weight",
        "per_layer_projection_norm.weight": "per_layer_proj_norm.weight",
        "norm.weight": "output_norm.weight",
    }
    per_layer = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "self_attn.q_norm.weight": "attn_q_norm.weight",
        "self_attn.k_norm.weight": "attn_k_norm.weight",
        "post_attention_layernorm.weight": "post_attention_norm.weight",
        "pre_feedforward_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
        "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
        "per_layer_input_gate.weight": "inp_gate.weight",
        "per_layer_projection.weight": "proj.weight",
        "post_per_layer_input_norm.weight": "post_norm.weight",
        "layer_scalar": "layer_output_scale.weight",
    }

    def gguf_name(n):
        if n in glob:
            return glob[n]
        _, idx, rest = n.split(".", 2)
        return f"blk.{idx}.{per_layer[rest]}"

    # rope_freqs (converter's generate_extra_tensors, emitted first): proportional RoPE on the
    # global layers, partial_rotary_factor 0.25 -> the first hd_f*0.25/2 pairs rotate (factor 1),
    # the rest get a 1e30 divisor (frequency ~0, i.e. unrotated).
    n_rot = int(hd_f * 0.25 / 2)
    rope_freqs = np.array([1.0] * n_rot + [1e30] * (hd_f // 2 - n_rot), dtype=np.float32)
    w.add_tensor("rope_freqs.weight", rope_freqs)
    # The converter walks the checkpoint's tensors in sorted "model.language_model.*" order.
    for n in sorted(hf):
        w.add_tensor(gguf_name(n), np.ascontiguousarray(hf[n], dtype=np.float32))

    # ---- metadata: the template's keys in its order, dimension keys replaced -------------------
    # (Written after the tensors are known, as the converter does, for general.size_label.)
    total, _, _, _ = w.get_total_parameter_count()
    override["general.size_label"] = (gguf.size_label(total, 0, 0, 0), gguf.GGUFValueType.STRING, None)
    missing = [k for k in override if k not in rd.fields]
    assert not missing, f"template lacks keys {missing}"
    for name, field in rd.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        val, vtype, sub = override[name] if name in override else field_value(field)
        w.add_key_value(name, val, vtype, sub)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.out}: {L} layers {''.join('S' if s else 'F' for s in swa)}, hidden {H}, "
          f"ffn {I}, heads {nH}/{nKV}, head_dim {hd_s}/{hd_f}, PLE {P}, vocab {vocab}, "
          f"{n_shared} KV-shared layers, {total} parameters")


if __name__ == "__main__":
    main()
