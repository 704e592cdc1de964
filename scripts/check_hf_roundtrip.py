#!/usr/bin/env python3
"""Checks that a model directory written by SwiftBERT loads in Hugging Face transformers and computes
what SwiftBERT computed. Not run in CI (it needs the Python reference stack).

Usage:
    # 1. Let SwiftBERT write a directory (the headless hf-tiny fixture, heads initialised by SwiftBERT,
    #    saved with savePretrained) together with its own outputs in swiftbert-outputs.safetensors:
    SWIFTBERT_ROUNDTRIP_DIR=/tmp/swiftbert-roundtrip swift test --scratch-path .build-weights \
        --filter PretrainedLoadingTests/testSavePretrainedWritesHuggingFaceLayout
    # 2. Check it in transformers (optionally also the inference commands against the pipeline):
    /work/venv/bin/python scripts/check_hf_roundtrip.py /tmp/swiftbert-roundtrip [--swiftbert .build/release/swiftbert]

Any SwiftBERT checkpoint directory works for the loading checks: the class named in config.json's
"architectures" (BertForPreTraining for 2-way NSP, BertForMaskedLM otherwise) must load it with no
missing keys, and AutoTokenizer must load it offline and give the ids of `swiftbert tokenize --model`
(with --swiftbert). The output comparison runs when
swiftbert-outputs.safetensors is present (input.* as float, swiftbert.hidden_states [B,T,C],
swiftbert.mlm_logits [P,V] at input.masked_positions (flat b*T+t), swiftbert.nsp_logits [B,K]).
Exit status 0 when every check passes.
"""

import argparse
import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

import transformers
from transformers import AutoTokenizer, BertForPreTraining, BertTokenizer, pipeline

TOLERANCE = 1e-4


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory")
    parser.add_argument("--swiftbert", help="built swiftbert binary: also compare fill-mask and embed with transformers")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    failures = []

    with open(os.path.join(args.directory, "config.json"), encoding="utf-8") as f:
        architecture = json.load(f)["architectures"][0]
    model_class = getattr(transformers, architecture)
    model, info = model_class.from_pretrained(args.directory, output_loading_info=True, attn_implementation="eager")
    model.eval()
    print(f"{architecture}.from_pretrained:")
    # BertForMaskedLM has no pooler or NSP head: those tensors are expected to be reported unused.
    unused = ("bert.pooler.", "cls.seq_relationship.") if architecture == "BertForMaskedLM" else ()
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        values = list(info.get(key, []))
        print(f"  {key}: {values}")
        values = [v for v in values if not (key == "unexpected_keys" and str(v).startswith(unused))]
        if values:
            failures.append(f"{key} not empty: {values}")
    tied = model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    print(f"decoder tied to word embeddings: {tied}")
    if not tied:
        failures.append("MLM decoder is not tied to the word embeddings")

    outputs = os.path.join(args.directory, "swiftbert-outputs.safetensors")
    if os.path.exists(outputs):
        recorded = load_file(outputs)
        ids = recorded["input.input_ids"].long()
        types = recorded["input.token_type_ids"].long()
        mask = recorded["input.attention_mask"].long()
        positions = recorded["input.masked_positions"].long()
        with torch.no_grad():
            out = model.bert(input_ids=ids, token_type_ids=types, attention_mask=mask)
            hidden = out.last_hidden_state
            B, T, C = hidden.shape
            mlm = model.cls.predictions(hidden.reshape(B * T, C)[positions])
        real = mask.bool()
        comparisons = [
            ("hidden states (real tokens)", hidden[real], recorded["swiftbert.hidden_states"][real]),
            ("MLM logits", mlm, recorded["swiftbert.mlm_logits"]),
        ]
        if hasattr(model.cls, "seq_relationship"):
            with torch.no_grad():
                nsp = model.cls.seq_relationship(out.pooler_output)
            comparisons.append(("NSP logits", nsp, recorded["swiftbert.nsp_logits"]))
        for name, expected, actual in comparisons:
            difference = (expected - actual).abs().max().item()
            print(f"{name}: max |transformers - SwiftBERT| = {difference:.3e}")
            if not difference <= TOLERANCE:
                failures.append(f"{name} differ by {difference:.3e} > {TOLERANCE}")
    else:
        print(f"no {outputs}: output comparison skipped")

    if args.swiftbert:
        failures += check_tokenizer(args.swiftbert, args.directory)
        if architecture == "BertForPreTraining":
            failures += check_commands(args.swiftbert, args.directory)

    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"OK: the directory loads in transformers {architecture} with no missing keys"
          + (" and the same outputs" if os.path.exists(outputs) else ""))


TOKENIZER_TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "And the LORD said unto Moses, Stretch out thine hand!",
    "The man went to the [MASK] to buy some milk. [CLS] x [SEP]",
    "café naïve résumé Ångström façade Über ÉCOLE",
    "numbers 3.14159 1,000,000 $100 50% #hashtag @user don't",
    "tabs\tand  spaces\u00a0nbsp control\u0007char zero\u200bwidth",
    "我们喜欢学习中文。mixed 中文 and English",
    "emoji 🙂 symbols ™ © … ← ∞ " + "x" * 120,
]


def check_tokenizer(binary, directory):
    """AutoTokenizer (offline) against `swiftbert tokenize --model DIR --ids`, line by line."""
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    print(f"AutoTokenizer: {type(tokenizer).__name__}, {len(tokenizer)} tokens, "
          f"files {sorted(f for f in os.listdir(directory) if 'token' in f or f == 'vocab.txt')}")
    run = subprocess.run([binary, "tokenize", "--model", directory, "--ids"], input="\n".join(TOKENIZER_TEXTS) + "\n",
                         capture_output=True, text=True, check=True)
    lines = run.stdout.split("\n")
    failures = []
    for text, line in zip(TOKENIZER_TEXTS, lines):
        expected = tokenizer.encode(text, add_special_tokens=False)
        actual = [int(token) for token in line.split()]
        if expected != actual:
            failures.append(f"tokenizer ids differ for {text!r}: transformers {expected}, swiftbert {actual}")
    print(f"tokenizer: {len(TOKENIZER_TEXTS) - len(failures)}/{len(TOKENIZER_TEXTS)} texts with identical ids")
    return failures


def check_commands(binary, directory):
    """fill-mask and embed of the SwiftBERT binary against transformers on the same directory."""
    failures = []
    fill = pipeline("fill-mask", model=directory, tokenizer=directory, device="cpu")
    for text in ["the man went to the [MASK] to buy some milk.", "i don't [MASK] it's fine, isn't it?"]:
        expected = fill(text, top_k=5)
        run = subprocess.run([binary, "fill-mask", "--model", directory, "--top-k", "5", "--json", text],
                             capture_output=True, text=True, check=True)
        actual = json.loads(run.stdout)
        same = [(e["token"], e["token_str"], e["sequence"]) for e in expected] == \
               [(a["token"], a["token_str"], a["sequence"]) for a in actual]
        score = max(abs(e["score"] - a["score"]) for e, a in zip(expected, actual))
        print(f"fill-mask {text!r}: same top-5 {same}, max score difference {score:.2e}")
        if not same or score > TOLERANCE:
            failures.append(f"fill-mask differs for {text!r}")
    tokenizer = BertTokenizer.from_pretrained(directory)
    model = BertForPreTraining.from_pretrained(directory).bert.eval()
    texts = ["the man went to the store.", "Hello, world!"]
    run = subprocess.run([binary, "embed", "--model", directory, "--pooling", "mean", "--json", *texts],
                         capture_output=True, text=True, check=True)
    actual = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    if len(actual) == 1 and isinstance(actual[0], list):
        actual = actual[0]
    for text, record in zip(texts, actual):
        with torch.no_grad():
            expected = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0].mean(dim=0)
        difference = (expected - torch.tensor(record["embedding"])).abs().max().item()
        print(f"embed {text!r}: max difference {difference:.2e}")
        if not difference <= TOLERANCE:
            failures.append(f"embedding differs for {text!r}")
    return failures


if __name__ == "__main__":
    main()
