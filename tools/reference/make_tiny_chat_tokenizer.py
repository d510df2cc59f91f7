#!/usr/bin/env python3
"""Writes tests/fixtures/chat/tiny_tokenizer/tokenizer.json: a Gemma-4-shaped tokenizer whose
ids all fit the tiny fixture models' 512-entry vocabulary, with Gemma 4's control tokens at
their real ids (<|turn> 105, <turn|> 106, <|tool_call> 48 ...) and 256 byte-fallback tokens.
It lets the Session tests run the real chat loop on the tiny random-weight models.

    python3 tools/reference/make_tiny_chat_tokenizer.py OUT_DIR
"""
import json
import os
import sys

SPECIAL = {0: "<pad>", 1: "<eos>", 2: "<bos>", 3: "<unk>", 4: "<mask>",
           46: "<|tool>", 47: "<tool|>", 48: "<|tool_call>", 49: "<tool_call|>",
           50: "<|tool_response>", 51: "<tool_response|>", 52: '<|"|>', 98: "<|think|>",
           100: "<|channel>", 101: "<channel|>", 105: "<|turn>", 106: "<turn|>"}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    vocab = {}
    for i, s in SPECIAL.items():
        vocab[s] = i
    vocab["\n"] = 107
    for b in range(256):
        vocab["<0x%02X>" % b] = 256 + b
    free = [i for i in range(256) if i not in SPECIAL and i != 107]
    pieces = ["\u2581"] + [chr(c) for c in range(0x21, 0x7F)]
    merges = [("\u2581", "t"), ("t", "h"), ("\u2581t", "h"), ("\u2581th", "e"), ("i", "n"),
              ("\u2581", "a"), ("e", "r"), ("o", "n"), ("r", "e"), ("a", "t"),
              ("\u2581", "\u2581"), ("\n", "\n")]
    for a, b in merges:
        if a + b not in pieces:
            pieces.append(a + b)
    # Fill the remaining ids with two-letter pieces so that every id decodes to some text (the
    # random models pick any id).
    letters = "abcdefghijklmnopqrstuvwxyz"
    extra = (a + b for a in letters for b in letters)
    while len(pieces) < len(free):
        p = next(extra)
        if p not in pieces:
            pieces.append(p)
    assert len(pieces) <= len(free), (len(pieces), len(free))
    for piece, i in zip(pieces, free):
        vocab[piece] = i
    model = {"type": "BPE", "dropout": None, "unk_token": "<unk>",
             "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
             "byte_fallback": True, "ignore_merges": False,
             "vocab": dict(sorted(vocab.items(), key=lambda kv: kv[1])),
             "merges": [[a, b] for a, b in merges]}
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in sorted(SPECIAL.items())]
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
           "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                             "behavior": "MergedWithPrevious", "invert": False},
           "post_processor": None,
           "decoder": {"type": "Sequence", "decoders": [
               {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
               {"type": "ByteFallback"}, {"type": "Fuse"}]},
           "model": model}
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
