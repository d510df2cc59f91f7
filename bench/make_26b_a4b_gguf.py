#!/usr/bin/env python3
# Usage: bench/make_26b_a4b_gguf.py OUT.gguf, then bench/fill_gguf_random.py OUT.gguf for data.
# A GGUF with 26B-A4B's real shapes and Q4_0 types (token_embd Q6_K, norms F32) as llama.cpp's
# quantizer writes them, whose data region is a hole (sparse file): enough for gemma4 info's plan,
# which reads headers only. Metadata copied from the tiny 26B fixture and scaled.
import os, sys, numpy as np
sys.path.insert(0, os.environ.get('GGUF_PY', '/work/llama/llama.cpp/gguf-py'))  # llama.cpp's gguf-py
import gguf
from gguf import GGMLQuantizationType as Q
src = gguf.GGUFReader(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'fixtures', 'llama_cpp_gguf', 'tiny-26b-a4b.gguf'))
H, V, I, E, Ie, NH, L, W = 2816, 262144, 2112, 128, 704, 16, 30, 1024
glob = [i % 6 == 5 for i in range(L)]
kv = [2 if g else 8 for g in glob]
out = sys.argv[1]
w = gguf.GGUFWriter(out, 'gemma4')
over = {
  'gemma4.block_count': L, 'gemma4.context_length': 262144, 'gemma4.embedding_length': H,
  'gemma4.feed_forward_length': I, 'gemma4.attention.head_count': NH,
  'gemma4.attention.head_count_kv': kv, 'gemma4.expert_count': E, 'gemma4.expert_used_count': 8,
  'gemma4.attention.key_length': 512, 'gemma4.attention.value_length': 512,
  'gemma4.attention.sliding_window': W, 'gemma4.attention.sliding_window_pattern': [not g for g in glob],
  'gemma4.attention.key_length_swa': 256, 'gemma4.attention.value_length_swa': 256,
  'gemma4.expert_feed_forward_length': Ie, 'gemma4.rope.dimension_count': 512,
  'gemma4.rope.dimension_count_swa': 256, 'general.file_type': 2,
}
for k, f in src.fields.items():
  if k.startswith('GGUF.') or k == 'general.architecture': continue
  t = f.types[0]
  if k in over:
    v = over[k]
    if isinstance(v, list):
      sub = f.types[1]
      w.add_key_value(k, v, gguf.GGUFValueType.ARRAY, sub)
    else:
      w.add_key_value(k, v, t)
    continue
  if k.startswith('tokenizer.ggml.') and t == gguf.GGUFValueType.ARRAY:
    vals = list(f.contents())
    if k in ('tokenizer.ggml.tokens',):
      vals = vals + ['<filler_%d>' % i for i in range(V - len(vals))]
    elif k == 'tokenizer.ggml.scores':
      vals = vals + [0.0] * (V - len(vals))
    elif k == 'tokenizer.ggml.token_type':
      vals = vals + [1] * (V - len(vals))
    w.add_key_value(k, vals, t, f.types[1])
    continue
  w.add_key_value(k, f.contents(), t)
def ti(name, ne, qt):
  n = int(np.prod(ne))
  bs, ts = gguf.GGML_QUANT_SIZES[qt]
  w.add_tensor_info(name, list(reversed(ne)), np.float32, n // bs * ts, raw_dtype=qt)
ti('rope_freqs.weight', [256], Q.F32)
ti('token_embd.weight', [H, V], Q.Q6_K)
for i in range(L):
  hd = 512 if glob[i] else 256
  p = 'blk.%d.' % i
  ti(p + 'ffn_down_exps.weight', [Ie, H, E], Q.Q4_0)
  ti(p + 'ffn_gate_up_exps.weight', [H, 2 * Ie, E], Q.Q4_0)
  for n in ['attn_norm', 'post_attention_norm', 'post_ffw_norm', 'post_ffw_norm_1', 'post_ffw_norm_2', 'ffn_norm', 'pre_ffw_norm_2']:
    ti(p + n + '.weight', [H], Q.F32)
  ti(p + 'layer_output_scale.weight', [1], Q.F32)
  ti(p + 'ffn_down.weight', [I, H], Q.Q4_0)
  ti(p + 'ffn_gate.weight', [H, I], Q.Q4_0)
  ti(p + 'ffn_up.weight', [H, I], Q.Q4_0)
  ti(p + 'ffn_down_exps.scale', [E], Q.F32)
  ti(p + 'ffn_gate_inp.weight', [H, E], Q.F32)
  ti(p + 'ffn_gate_inp.scale', [H], Q.F32)
  ti(p + 'attn_k_norm.weight', [hd], Q.F32)
  ti(p + 'attn_q_norm.weight', [hd], Q.F32)
  ti(p + 'attn_k.weight', [H, kv[i] * hd], Q.Q4_0)
  ti(p + 'attn_q.weight', [H, NH * hd], Q.Q4_0)
  ti(p + 'attn_output.weight', [NH * hd, H], Q.Q4_0)
  if not glob[i]:
    ti(p + 'attn_v.weight', [H, kv[i] * hd], Q.Q4_0)
ti('output_norm.weight', [H], Q.F32)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_ti_data_to_file()
f = w.fout[0]
f.flush()
pos = f.tell()
start = (pos + w.data_alignment - 1) // w.data_alignment * w.data_alignment
total = sum(gguf.GGUFWriter.ggml_pad(t.nbytes, w.data_alignment) for t in w.tensors[0].values())
f.truncate(start + total)
# rope_freqs (the first tensor) as 1.0: a hole of zeros would divide the RoPE frequencies by 0.
f.seek(start)
f.write(np.ones(256, np.float32).tobytes())
f.close()
print(out, start + total)
