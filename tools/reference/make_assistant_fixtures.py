#!/usr/bin/env python3
"""Builds tiny random-weight Gemma 4 assistant drafters (Gemma4AssistantForCausalLM) paired with
the tiny targets of make_fixtures.py and records transformers' drafting logits.

Run on a machine with transformers (>= 5.17) and torch, from the repository root:
    python3 tools/reference/make_assistant_fixtures.py OUT_DIR
Then copy OUT_DIR/<target>/* into tests/fixtures/models/<target>/.

How transformers drafts (SinglePositionMultiTokenCandidateGenerator + Gemma4AssistantForCausalLM):
the drafter has no KV cache of its own. Every drafter layer is KV-shared: it attends with its own
queries to the keys/values of the target's last non-shared layer of the same type
(shared_kv_states). Its input is concat(target_embed(token) * sqrt(backbone), h) projected by
pre_projection, where h is the target's final-normed hidden state at the position before the
token (then the drafter's own post_projection output for later steps), all at one constant
position id: the position of the first drafted-from token. Logits come from the tied lm_head (or
the centroid-masked head when use_ordered_embeddings), without soft-capping. The attention mask
is bidirectional over the shared keys; on sliding layers it keeps the last sliding_window + 1 of
them.

The reference here calls the drafter exactly that way with the target's keys/values for
positions [0, P) computed by a cache-less forward (so sliding layers see every position), for
k = 4 autoregressive drafting steps, at P inside and past the sliding window.

Each target directory gains:
  assistant/                  the drafter checkpoint (config.json, model.safetensors)
  assistant_reference.json    drafting cases: P, input token, drafted tokens, logit file names
  assistant_logits_N.f32      raw little-endian float32 [steps, vocab] drafter logits
"""
import json
import os
import sys

import torch
import transformers
from transformers import Gemma4AssistantConfig, Gemma4AssistantForCausalLM, Gemma4ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import randomize  # noqa: E402

FIXTURES = "tests/fixtures/models"
STEPS = 4

# Drafters: hidden sizes differ from the target's (the projections carry the difference); head
# dims and KV heads per layer type are the target's (the drafter reads the target's cache).
ASSISTANTS = {
    "tiny-e2b": dict(
        text=dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=32, global_head_dim=64,
                  intermediate_size=48, sliding_window=8,
                  layer_types=["sliding_attention"] * 3 + ["full_attention"]),
        ordered=True, dtype=torch.bfloat16),
    "tiny-26b-a4b": dict(
        text=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, num_global_key_value_heads=1, attention_k_eq_v=True,
                  head_dim=32, global_head_dim=64, intermediate_size=40, sliding_window=8,
                  layer_types=["sliding_attention", "full_attention"]),
        ordered=False, dtype=torch.float32),
}


def build(target_cfg, spec, seed):
    text = dict(vocab_size=target_cfg.vocab_size, rms_norm_eps=1e-6,
                final_logit_softcapping=30.0, max_position_embeddings=4096,
                tie_word_embeddings=True, hidden_size_per_layer_input=0,
                vocab_size_per_layer_input=0, bos_token_id=2, eos_token_id=[1, 106],
                pad_token_id=0)
    text.update(spec["text"])
    cfg = Gemma4AssistantConfig(text_config=text, backbone_hidden_size=target_cfg.hidden_size,
                                use_ordered_embeddings=spec["ordered"], num_centroids=16,
                                centroid_intermediate_top_k=4)
    torch.manual_seed(seed)
    model = Gemma4AssistantForCausalLM(cfg).eval()
    randomize(model, seed)
    if spec["ordered"]:
        g = torch.Generator().manual_seed(seed + 1)
        model.masked_embedding.token_ordering.copy_(torch.randperm(cfg.text_config.vocab_size,
                                                                   generator=g))
    return model


def draft(target, assistant, ids, position, token):
    """k drafting steps from `token` at `position`, the target having seen ids[:position]."""
    x = torch.tensor([ids[:position]])
    with torch.no_grad():
        out = target.model(input_ids=x, use_cache=False, return_shared_kv_states=True)
    h = out.last_hidden_state[:, -1:]
    shared = {k: (v[0].clone(), v[1].clone()) for k, v in out.shared_kv_states.items()}
    last = torch.tensor([[token]])
    pos = torch.tensor([[position]])
    logits, tokens = [], []
    for _ in range(STEPS):
        emb = target.model.embed_tokens(last)
        with torch.no_grad():
            o = assistant(inputs_embeds=torch.cat([emb, h], dim=-1), position_ids=pos,
                          shared_kv_states=shared, use_cache=False)
        logits.append(o.logits[0, 0].float())
        last = o.logits.argmax(dim=-1)
        tokens.append(int(last[0, 0]))
        h = o.last_hidden_state
    return torch.stack(logits), tokens


def main():
    out = sys.argv[1]
    torch.set_num_threads(8)
    summary = {}
    for vi, (name, spec) in enumerate(ASSISTANTS.items()):
        tdir = os.path.join(FIXTURES, name)
        ref = json.load(open(os.path.join(tdir, "reference.json")))
        target = Gemma4ForCausalLM.from_pretrained(os.path.join(tdir, "gemma4_text"),
                                                   dtype=torch.float32,
                                                   attn_implementation="eager").eval()
        vdir = os.path.join(out, name)
        adir = os.path.join(vdir, "assistant")
        build(target.config, spec, seed=300 + vi).to(spec["dtype"]).save_pretrained(adir)
        assistant = Gemma4AssistantForCausalLM.from_pretrained(
            adir, dtype=torch.float32, attn_implementation="eager").eval()
        record = {"transformers_version": transformers.__version__,
                  "torch_version": torch.__version__, "steps": STEPS,
                  "storage_dtype": str(spec["dtype"]).replace("torch.", ""), "cases": []}
        ids = ref["prompts"][0]["ids"]
        full = ids + ref["prompts"][0]["greedy"]
        for ci, position in enumerate((5, 20, len(ids))):
            logits, tokens = draft(target, assistant, full, position, full[position])
            fname = f"assistant_logits_{ci}.f32"
            logits.contiguous().numpy().astype("<f4").tofile(os.path.join(vdir, fname))
            record["cases"].append({"prompt": 0, "position": position, "token": full[position],
                                    "drafted": tokens, "logits": fname})
        # transformers' own assisted generation must give plain greedy's tokens.
        x = torch.tensor([ids])
        with torch.no_grad():
            gen = target.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=12,
                                  do_sample=False, top_k=None, top_p=None,
                                  assistant_model=assistant)
        record["assisted_greedy"] = gen[0, len(ids):].tolist()
        record["assisted_greedy_matches"] = record["assisted_greedy"] == ref["prompts"][0]["greedy"]
        with open(os.path.join(vdir, "assistant_reference.json"), "w") as f:
            json.dump(record, f, indent=1)
        summary[name] = {c["position"]: c["drafted"] for c in record["cases"]}
        summary[name + "/assisted_greedy_matches"] = record["assisted_greedy_matches"]
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
