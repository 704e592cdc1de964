#!/usr/bin/env python3
"""Reference vectors for `swiftbert embed` on texts of mixed lengths, computed with transformers on CPU.

Run:  venv/bin/python scripts/make_embed_fixtures.py   (torch 2.13 CPU, transformers 5.24; after
      scripts/make_transformer_fixtures.py, whose hf-tiny model it reads)
Writes Tests/TransformerTests/Fixtures/hf-tiny-embed-batch.json:
  {"max_length": 128, "texts": [{"text", "tokens", "cls", "mean"}, ...]}
tokens counts [CLS] and [SEP] before truncation; cls and mean are the [CLS] vector and the mean over the
text's tokens of the last hidden state of BertModel (hf-tiny-headless), all texts run as ONE batch padded to
the longest (tokenizer(..., padding=True, truncation=True, max_length=128), as sentence-transformers runs a
batch), so the fixture holds what padding and truncation give in transformers. Each vector is also checked
against the text run alone, which must agree to 1e-5.
"""

import json
import os
import sys

import torch
from transformers import BertModel, BertTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "TransformerTests", "Fixtures")

# Lengths from 2 tokens to past max_position_embeddings (128): "a" is one token, so "a " * 126 is exactly
# 128 tokens with [CLS] and [SEP], and "a " * 127 one more (cut only with --truncate).
TEXTS = [
    "the man went to the store.",
    "",
    "Hello, world!",
    ("a " * 126).strip(),
    "a much longer sentence that has more words in it than the others do, for mean pooling",
    ("a " * 127).strip(),
    "unknown zebraphone words",
    " ".join(["the city of paris is the capital of france and a very big city"] * 12),
    "東京 is big",
    "short",
]


def main():
    torch.set_num_threads(1)
    tokenizer = BertTokenizer.from_pretrained(os.path.join(FIXTURES, "hf-tiny"))
    model = BertModel.from_pretrained(os.path.join(FIXTURES, "hf-tiny-headless")).eval()
    max_length = model.config.max_position_embeddings

    def embed(texts):
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return hidden[:, 0], (hidden * mask).sum(dim=1) / mask.sum(dim=1)

    records = []
    with torch.no_grad():
        cls, mean = embed(TEXTS)
        for i, text in enumerate(TEXTS):
            alone_cls, alone_mean = embed([text])
            worst = max((alone_cls[0] - cls[i]).abs().max().item(), (alone_mean[0] - mean[i]).abs().max().item())
            if worst > 1e-5:
                sys.exit(f"{text[:40]!r}: batched and alone differ by {worst:.2e}")
            records.append({"text": text, "tokens": len(tokenizer(text)["input_ids"]),
                            "cls": cls[i].tolist(), "mean": mean[i].tolist()})
    lengths = [r["tokens"] for r in records]
    if max_length not in lengths or max_length + 1 not in lengths:
        sys.exit(f"expected texts of exactly {max_length} and {max_length + 1} tokens, got {lengths}")
    path = os.path.join(FIXTURES, "hf-tiny-embed-batch.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"max_length": max_length, "texts": records}, f, indent=1, ensure_ascii=False)
    print(f"{path}: {len(records)} texts of {min(lengths)}-{max(lengths)} tokens")


if __name__ == "__main__":
    main()
