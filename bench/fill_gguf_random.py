#!/usr/bin/env python3
# Usage: bench/fill_gguf_random.py FILE.gguf (Q4_0, Q6_K and F32 tensors; in place).
# Fills the data of a sparse-hole GGUF (bench/make_26b_a4b_gguf.py) with random weights of
# realistic scale, in place: Q4_0 blocks (f16 d ~ 0.004, random nibbles), Q6_K blocks (random
# bits, int8 scales, small d), F32 norms/scales 1.0, the MoE router N(0, 0.05).
import os, sys, numpy as np
sys.path.insert(0, os.environ.get('GGUF_PY', '/work/llama/llama.cpp/gguf-py'))  # llama.cpp's gguf-py
import gguf
from gguf import GGMLQuantizationType as Q
path = sys.argv[1]
r = gguf.GGUFReader(path)
rng = np.random.default_rng(7)
mm = np.memmap(path, dtype=np.uint8, mode='r+')
for t in r.tensors:
    off, n = int(t.data_offset), int(t.n_bytes)
    if t.tensor_type == Q.F32:
        vals = np.ones(n // 4, np.float32)
        if t.name.endswith('ffn_gate_inp.weight'):
            vals = rng.normal(0, 0.05, n // 4).astype(np.float32)
        mm[off:off + n] = vals.view(np.uint8)
        continue
    bs = {Q.Q4_0: 18, Q.Q6_K: 210}[t.tensor_type]
    step = bs * 200000
    for s in range(0, n, step):
        m = min(step, n - s)
        blk = np.frombuffer(rng.bytes(m), np.uint8).copy().reshape(-1, bs)
        if t.tensor_type == Q.Q4_0:
            d = rng.uniform(0.002, 0.006, blk.shape[0]).astype(np.float16)
            blk[:, 0:2] = d.view(np.uint8).reshape(-1, 2)
        else:
            sc = rng.integers(4, 32, (blk.shape[0], 16)).astype(np.int8)
            blk[:, 192:208] = sc.view(np.uint8)
            d = rng.uniform(2e-5, 6e-5, blk.shape[0]).astype(np.float16)
            blk[:, 208:210] = d.view(np.uint8).reshape(-1, 2)
        mm[off + s:off + s + m] = blk.reshape(-1)
    print(t.name, n, flush=True) if t.name.startswith('blk.0.') or 'embd' in t.name else None
mm.flush()
print('done')
