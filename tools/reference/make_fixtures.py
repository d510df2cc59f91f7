#!/usr/bin/env python3
"""Builds tiny random-weight Gemma 4 checkpoints with Hugging Face transformers and records
reference logits and greedy generations for gemma4's golden tests.

Run on a machine with transformers (>= 5.17), torch and safetensors:
    python3 tools/reference/make_fixtures.py OUT_DIR
Then copy OUT_DIR/* to tests/fixtures/models/.

Every parameter and persistent buffer is randomised (norm weights, layer_scalar, router scale,
per_expert_scale, ...) so that a missing op fails a test. The reference is computed the way the
architecture note (section 6, pitfalls 20 and 22) prescribes: the checkpoint is saved in its
storage dtype, then loaded back with from_pretrained(dtype=float32, attn_implementation="eager")
and run on the CPU.

Each fixture directory holds:
  gemma4/        the checkpoint as Gemma4ForConditionalGeneration (text under model.language_model.)
  gemma4_text/   the same text weights as Gemma4ForCausalLM (text under model.)
  reference.json prompts, greedy continuations, tool versions, logit file names
  logits_N.f32   raw little-endian float32 [len(prompt N), vocab] full-pass logits
"""
import json
import os
import sys

import torch
import transformers
from transformers import (Gemma4Config, Gemma4ForCausalLM, Gemma4ForConditionalGeneration,
                          Gemma4TextConfig)

VOCAB = 512

# Tiny stand-ins for the four released families. Sliding windows are small so the prompts
# (37 and 64 tokens) cross them several times.
VARIANTS = {
    # E2B-like: PLE, KV sharing (last 4 of 10 layers), double-wide MLP in shared layers,
    # period-5 pattern, 1 KV head; towers present in the conditional layout; bf16, sharded.
    "tiny-e2b": dict(
        text=dict(hidden_size=64, num_hidden_layers=10, num_attention_heads=4,
                  num_key_value_heads=1, head_dim=32, global_head_dim=64,
                  intermediate_size=96, hidden_size_per_layer_input=16,
                  vocab_size_per_layer_input=VOCAB, num_kv_shared_layers=4,
                  use_double_wide_mlp=True, sliding_window=8,
                  layer_types=(["sliding_attention"] * 4 + ["full_attention"]) * 2),
        vision=True, audio=True, dtype=torch.bfloat16, shard="150KB"),
    # E4B-like: PLE, KV sharing (last 5 of 12), period-6 pattern, 2 KV heads; float16.
    "tiny-e4b": dict(
        text=dict(hidden_size=48, num_hidden_layers=12, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, global_head_dim=32,
                  intermediate_size=80, hidden_size_per_layer_input=8,
                  vocab_size_per_layer_input=VOCAB, num_kv_shared_layers=5,
                  sliding_window=6,
                  layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 2),
        vision=False, audio=False, dtype=torch.float16, shard=None),
    # 26B-A4B-like: MoE beside the dense MLP on every layer, K=V global layers with fewer KV
    # heads, no PLE; bf16.
    "tiny-26b-a4b": dict(
        text=dict(hidden_size=64, num_hidden_layers=6, num_attention_heads=4,
                  num_key_value_heads=2, num_global_key_value_heads=1, head_dim=32,
                  global_head_dim=64, intermediate_size=40, hidden_size_per_layer_input=0,
                  attention_k_eq_v=True, enable_moe_block=True, num_experts=8,
                  top_k_experts=3, moe_intermediate_size=24, sliding_window=8,
                  layer_types=["sliding_attention"] * 5 + ["full_attention"]),
        vision=True, audio=False, dtype=torch.bfloat16, shard=None),
    # 31B-like: dense, K=V global layers, odd layer count (last layer forced global); float32.
    "tiny-31b": dict(
        text=dict(hidden_size=56, num_hidden_layers=7, num_attention_heads=4,
                  num_key_value_heads=2, num_global_key_value_heads=1, head_dim=16,
                  global_head_dim=48, intermediate_size=72, hidden_size_per_layer_input=0,
                  attention_k_eq_v=True, sliding_window=7,
                  layer_types=["sliding_attention"] * 5 + ["full_attention"] * 2),
        vision=False, audio=False, dtype=torch.float32, shard=None),
}

COMMON_TEXT = dict(vocab_size=VOCAB, rms_norm_eps=1e-6, final_logit_softcapping=30.0,
                   max_position_embeddings=4096, tie_word_embeddings=True,
                   bos_token_id=2, eos_token_id=[1, 106], pad_token_id=0)

TINY_VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                   num_attention_heads=2, num_key_value_heads=2, head_dim=8,
                   position_embedding_size=64)
TINY_AUDIO = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  subsampling_conv_channels=[8, 4], output_proj_dims=32)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.split(".")[-2] if name.endswith(".weight") else name.split(".")[-1]
            if p.dim() == 1 or "norm" in leaf:
                # Norm weights (stored with the 1 included), router.scale, per_expert_scale.
                v = torch.rand(p.shape, generator=g) * 0.8 + 0.6
            elif "embed_tokens" in name:
                v = torch.randn(p.shape, generator=g)
            else:
                v = torch.randn(p.shape, generator=g) / (p.shape[-1] ** 0.5)
            p.copy_(v.to(p.dtype))
        for name, b in model.named_buffers():
            if name.endswith("layer_scalar"):
                b.copy_((torch.rand(b.shape, generator=g) * 1.0 + 0.5).to(b.dtype))


def build(name, spec, seed):
    text = dict(COMMON_TEXT)
    text.update(spec["text"])
    cfg = Gemma4Config(text_config=text,
                       vision_config=TINY_VISION if spec["vision"] else None,
                       audio_config=TINY_AUDIO if spec["audio"] else None)
    torch.manual_seed(seed)
    cond = Gemma4ForConditionalGeneration(cfg).eval()
    randomize(cond, seed)
    causal = Gemma4ForCausalLM(cfg.text_config).eval()
    missing, unexpected = causal.model.load_state_dict(
        cond.model.language_model.state_dict(), strict=False)
    assert not unexpected, unexpected
    assert all("inv_freq" in m or "embed_scale" in m for m in missing), missing
    return cond, causal


def save(model, path, dtype, shard):
    model = model.to(dtype)
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(path, **kwargs)


def reference_model(cls, path):
    kwargs = dict(dtype=torch.float32, attn_implementation="eager")
    try:
        return cls.from_pretrained(path, experts_implementation="eager", **kwargs).eval()
    except (TypeError, ValueError):
        return cls.from_pretrained(path, **kwargs).eval()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(8)
    prompts = []
    g = torch.Generator().manual_seed(1234)
    for length in (37, 64):
        ids = torch.randint(3, VOCAB, (length,), generator=g).tolist()
        ids[0] = 2  # BOS
        prompts.append(ids)
    summary = {}
    for vi, (name, spec) in enumerate(VARIANTS.items()):
        vdir = os.path.join(out, name)
        cond, causal = build(name, spec, seed=100 + vi)
        save(cond, os.path.join(vdir, "gemma4"), spec["dtype"], spec["shard"])
        save(causal, os.path.join(vdir, "gemma4_text"), spec["dtype"], None)
        ref_cond = reference_model(Gemma4ForConditionalGeneration, os.path.join(vdir, "gemma4"))
        ref_text = reference_model(Gemma4ForCausalLM, os.path.join(vdir, "gemma4_text"))
        record = {"transformers_version": transformers.__version__,
                  "torch_version": torch.__version__, "vocab_size": VOCAB,
                  "storage_dtype": str(spec["dtype"]).replace("torch.", ""), "prompts": []}
        for pi, ids in enumerate(prompts):
            x = torch.tensor([ids])
            with torch.no_grad():
                logits = ref_cond(input_ids=x).logits[0].float()
                logits_text = ref_text(input_ids=x).logits[0].float()
                layout_diff = (logits - logits_text).abs().max().item()
                gen = ref_text.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=12,
                                        do_sample=False, top_k=None, top_p=None)
            new_ids = gen[0, len(ids):].tolist()
            # Logit margin between the best and second-best token at each greedy step,
            # recorded so a flaky near-tie is visible.
            with torch.no_grad():
                full = ref_text(input_ids=gen[:, :-1]).logits[0, len(ids) - 1:].float()
            top2 = full.topk(2, dim=-1).values
            margins = (top2[:, 0] - top2[:, 1]).tolist()
            fname = f"logits_{pi}.f32"
            logits.contiguous().numpy().astype("<f4").tofile(os.path.join(vdir, fname))
            record["prompts"].append({"ids": ids, "logits": fname, "greedy": new_ids,
                                      "greedy_margins": [round(m, 5) for m in margins],
                                      "layout_max_diff": layout_diff})
            summary[f"{name}/{pi}"] = dict(layout_diff=layout_diff, min_margin=min(margins),
                                           greedy=new_ids)
        with open(os.path.join(vdir, "reference.json"), "w") as f:
            json.dump(record, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
