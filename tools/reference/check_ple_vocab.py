#!/usr/bin/env python3
"""What transformers does with a token id that has no row in the per-layer embedding table
(id >= vocab_size_per_layer_input while id < vocab_size): gemma4 refuses such an id with an
error naming the table (src/model/forward.cc). This records whether transformers' Gemma 4
forward raises too (and what), or computes logits, so the behaviour is checked, not assumed.

Run on a machine with transformers (>= 5.17) and torch:
    python3 tools/reference/check_ple_vocab.py OUT.json
"""
import json
import sys

import torch
import transformers
from transformers import Gemma4ForCausalLM, Gemma4TextConfig


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    cfg = Gemma4TextConfig(
        vocab_size=64, vocab_size_per_layer_input=40, hidden_size_per_layer_input=8,
        hidden_size=32, num_hidden_layers=2, layer_types=["sliding_attention", "full_attention"],
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, global_head_dim=16,
        intermediate_size=48, sliding_window=8, max_position_embeddings=256,
        bos_token_id=2, eos_token_id=[1], pad_token_id=0)
    model = Gemma4ForCausalLM(cfg).eval()
    result = {"transformers": transformers.__version__, "torch": torch.__version__,
              "vocab_size": 64, "vocab_size_per_layer_input": 40, "cases": {}}
    for name, ids in {"inside": [2, 5, 39], "outside": [2, 5, 40], "last": [2, 63]}.items():
        try:
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits
            result["cases"][name] = {"ids": ids, "raised": None,
                                     "finite": bool(torch.isfinite(logits).all())}
        except Exception as e:  # noqa: BLE001 - the exception is the result
            result["cases"][name] = {"ids": ids, "raised": f"{type(e).__name__}: {str(e)[:300]}"}
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
