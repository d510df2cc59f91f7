#!/usr/bin/env python3
"""Builds a small Gemma-4-style tokenizer and records Hugging Face `tokenizers` encodings of a
test corpus, for gemma4's tokenizer tests.

Run where sentencepiece, tokenizers and transformers (>= 5.17) are installed:
    python3 tools/reference/make_tokenizer_fixtures.py OUT_DIR
Outputs (copy to tests/fixtures/tokenizer/):
  tokenizer.model   SentencePiece BPE model with Gemma 4's settings (byte fallback, split
                    digits, no dummy prefix, whitespace kept) and special tokens
  tokenizer.json    the same converted by transformers (what Gemma 4 checkpoints ship)
  tokenizer_config.json, special_tokens_map.json (as saved by transformers)
  cases.json        [{"text": ..., "ids": [...], "decoded": ...}] from tokenizers
"""
import json
import os
import random
import sys

import sentencepiece as spm

SPECIALS = ["<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>", "<|tool_response>",
            "<tool_response|>", '<|"|>', "<|think|>", "<|channel>", "<channel|>", "<|turn>",
            "<turn|>", "<|image>", "<|audio>", "<|image|>", "<|audio|>", "<image|>", "<audio|>",
            "<|video|>"]

CORPUS_LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "Numbers: 0 1 12 123 1234 3.14159 -42 1e10 2026-11-23",
    "Café naïve résumé façade coöperate São Paulo Zürich",
    "日本語のテキストと中文文本，还有한국어 텍스트.",
    "Emoji: 😀 👍🏽 🇫🇷 ❤️ 🧑‍💻",
    "Tabs\tand  double  spaces   and\n\nnewlines\n",
    "<html><body class=\"main\">Hello, world!</body></html>",
    "SELECT name, COUNT(*) FROM users WHERE age > 30 GROUP BY name;",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": true, \"b\": null}}",
    "Gemma 4 runs locally on CPUs with exact numerics.",
    "Привет, мир! Γειά σου Κόσμε! مرحبا بالعالم! שלום עולם",
]


def train(out, vocab_size=1200):
    rng = random.Random(0)
    lines = []
    for _ in range(300):
        lines.extend(CORPUS_LINES)
        words = [rng.choice(["alpha", "beta", "gamma", "delta", "token", "model", "local",
                             "quick", "über", "東京", "数据", "42", "2026", "x_y", "foo.bar"])
                 for _ in range(12)]
        lines.append(" ".join(words))
    corpus = os.path.join(out, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=os.path.join(out, "tokenizer"), model_type="bpe",
        vocab_size=vocab_size, character_coverage=1.0, byte_fallback=True, split_digits=True,
        add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name="identity", allow_whitespace_only_pieces=True,
        split_by_whitespace=False, treat_whitespace_as_suffix=False, max_sentencepiece_length=16,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", user_defined_symbols=["<mask>", "\n"] + SPECIALS,
        minloglevel=2)
    os.remove(corpus)


def convert(out, add_bos=False):
    """tokenizer.model -> tokenizer.json through transformers, wrapped in the GemmaTokenizer
    class the checkpoints name. transformers 5 builds the tokenizers backend from the
    SentencePiece vocabulary and merges."""
    import inspect
    from transformers import GemmaTokenizer
    from transformers import convert_slow_tokenizer as cst

    path = os.path.join(out, "tokenizer.model")
    print("GemmaTokenizer.__init__", inspect.signature(GemmaTokenizer.__init__))
    kwargs = dict(bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>",
                  mask_token="<mask>", add_bos_token=add_bos, add_eos_token=False)
    res = cst.SentencePieceExtractor(path).extract(None)
    if isinstance(res, dict):
        vocab, merges = res["vocab"], res["merges"]
    else:
        vocab, merges = res[0], res[1]
    tok = GemmaTokenizer(vocab=vocab, merges=merges, **kwargs)
    print("built from SentencePieceExtractor:", len(vocab), "pieces,", len(merges), "merges")
    assert len(tok) == len(vocab), (len(tok), len(vocab))
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    tok.save_pretrained(out)
    return tok


def cases(tok):
    texts = ["", " ", "  ", "\n", "\n\n\n", "\t", "a", "hello", " hello", "hello ",
             "Hello World", "  leading and trailing  ", "x" * 50, "1234567890",
             "3.14 and 2,718", "<|turn>user\nHi there!<turn|>\n<|turn>model\n",
             '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>',
             "<|think|>\n<|channel>thought\nHmm<channel|>Answer", "<bos>not special? <eos>",
             "\u00e9\u0301 combining", "\U0001F600\U0001F600", "a\u200bb", "ÿ\x7f\x01",
             "   \n \t \n  ", "multi\n\nline\n\n\ntext", "trailing newline\n"]
    texts += CORPUS_LINES
    rng = random.Random(1)
    pool = "abcdefghijklmnopqrstuvwxyz ABC  \n\t0123456789éüß日本😀.,;:!?<>|\"'-_"
    for _ in range(60):
        texts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 60))))
    out = []
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        # ids_default: what tok(text) gives (the tokenizer's own special-token rule), which is
        # what `gemma4 tokenize` prints by default.
        out.append({"text": t, "ids": ids, "ids_default": tok(t)["input_ids"],
                    "decoded": tok.decode(ids, skip_special_tokens=False)})
    return out


def main():
    # usage: make_tokenizer_fixtures.py OUT_DIR [VOCAB_SIZE] [--add-bos]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = args[0]
    os.makedirs(out, exist_ok=True)
    train(out, int(args[1]) if len(args) > 1 else 1200)
    tok = convert(out, add_bos="--add-bos" in sys.argv)
    data = cases(tok)
    with open(os.path.join(out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=0)
    import transformers
    print("transformers", transformers.__version__, "vocab", len(tok),
          "files", sorted(os.listdir(out)))
    for c in data[:20]:
        print(repr(c["text"]), c["ids"][:20])


if __name__ == "__main__":
    main()
