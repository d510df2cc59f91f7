#!/usr/bin/env python3
"""Writes tests/fixtures/vision/tokenizer/tokenizer.json: the tiny chat tokenizer
(tests/fixtures/chat/tiny_tokenizer) with Gemma 4's media control tokens at the ids the tiny
vision/audio fixtures use (make_vision_fixtures.SPECIAL: <|image> 500, <image|> 501, <|image|> 502,
<|video|> 503, <|audio> 504, <audio|> 505, <|audio|> 506). Those ids were byte-fallback tokens
<0xF4>..<0xFA>, bytes that never occur in the tests' text.

    python3 tools/reference/make_tiny_media_tokenizer.py
"""
import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
MEDIA = {500: "<|image>", 501: "<image|>", 502: "<|image|>", 503: "<|video|>", 504: "<|audio>",
         505: "<audio|>", 506: "<|audio|>"}


def main():
    src = os.path.join(ROOT, "tests", "fixtures", "chat", "tiny_tokenizer", "tokenizer.json")
    with open(src) as f:
        tok = json.load(f)
    vocab = tok["model"]["vocab"]
    by_id = {i: s for s, i in vocab.items()}
    for i, s in MEDIA.items():
        del vocab[by_id[i]]
        vocab[s] = i
        tok["added_tokens"].append({"id": i, "content": s, "single_word": False, "lstrip": False,
                                    "rstrip": False, "normalized": False, "special": True})
    out = os.path.join(ROOT, "tests", "fixtures", "vision", "tokenizer")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
