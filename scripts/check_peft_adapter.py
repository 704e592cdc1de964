#!/usr/bin/env python3
"""Checks that a LoRA, prompt-tuning or prefix-tuning adapter written by SwiftBERT loads in Hugging Face peft and predicts
what SwiftBERT predicts, and that `swiftbert merge` of a LoRA adapter loads in plain transformers with the
same predictions. Not run
in CI (it needs the Python reference stack: peft 0.21, transformers 5.24, torch 2.13 CPU).

Usage:
    swiftbert train --config lora.json --out runs/lora          # a sequence-classification LoRA run
    venv/bin/python scripts/check_peft_adapter.py runs/lora/checkpoints/step-00000020 \\
        --input texts.txt --swiftbert .build/release/swiftbert [--base DIR]

Steps: (1) the base (`--base`, else the adapter's base_model_name_or_path) loads as
AutoModelForSequenceClassification with the adapter directory's config.json labels, PeftModel.from_pretrained
loads the adapter with no missing LoRA or classifier keys; (2) each line of --input is classified by peft
(softmax of the logits, as the text-classification pipeline scores) and by `swiftbert predict --top-k 0`:
every label's score must agree within 1e-5; (3) `swiftbert merge` writes a plain directory that
AutoModelForSequenceClassification loads with no missing or unexpected keys and that gives the same scores.
Exit status 0 when every check passes.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from peft_compat import accept_past_key_values

TOLERANCE = 1e-5


def swiftbert_scores(binary, model, input_path):
    output = subprocess.run([binary, "predict", "--model", model, "--input", input_path, "--top-k", "0"],
                            check=True, capture_output=True, text=True).stdout
    return [{entry["label"]: entry["score"] for entry in json.loads(line)} for line in output.splitlines()]


def torch_scores(model, tokenizer, texts, labels):
    model.eval()
    rows = []
    with torch.inference_mode():
        for text in texts:
            encoded = tokenizer(text, truncation=True, max_length=512, return_tensors="pt")
            probabilities = torch.softmax(model(**encoded).logits[0].double(), dim=-1)
            rows.append({labels[i]: probabilities[i].item() for i in range(len(labels))})
    return rows


def compare(what, ours, theirs):
    worst = max(abs(a[label] - b[label]) for a, b in zip(ours, theirs) for label in a)
    same_count = len(ours) == len(theirs)
    print(f"{what}: {len(ours)} inputs, max score difference {worst:.2e}")
    return same_count and worst <= TOLERANCE


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapter")
    parser.add_argument("--input", required=True, help="one text per line")
    parser.add_argument("--swiftbert", required=True, help="built swiftbert binary")
    parser.add_argument("--base", help="the base model (default: the adapter's base_model_name_or_path)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    accept_past_key_values()

    with open(os.path.join(args.adapter, "adapter_config.json")) as file:
        adapter_config = json.load(file)
    base = args.base or adapter_config["base_model_name_or_path"]
    with open(os.path.join(args.adapter, "config.json")) as file:
        id2label = {int(key): value for key, value in json.load(file)["id2label"].items()}
    labels = [id2label[i] for i in range(len(id2label))]
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()})
    peft_model = PeftModel.from_pretrained(model, args.adapter)
    state = peft_model.state_dict()
    adapter_keys = [key for key in state if "lora_" in key or "modules_to_save" in key or "prompt_encoder" in key]
    ok = bool(adapter_keys)
    print(f"peft loaded {len(adapter_keys)} adapter tensors from {args.adapter} onto {base}")

    tokenizer = AutoTokenizer.from_pretrained(args.adapter)
    with open(args.input, encoding="utf-8") as file:
        texts = [line.rstrip("\n") for line in file if line.strip()]
    ours = swiftbert_scores(args.swiftbert, args.adapter, args.input)
    ok &= compare("swiftbert predict (adapter) vs peft", ours, torch_scores(peft_model, tokenizer, texts, labels))

    if adapter_config["peft_type"] != "LORA":
        print("OK" if ok else "FAILED")
        sys.exit(0 if ok else 1)
    with tempfile.TemporaryDirectory() as scratch:
        merged = os.path.join(scratch, "merged")
        subprocess.run([args.swiftbert, "merge", "--adapter", args.adapter, "--base", base, "--out", merged],
                       check=True, capture_output=True)
        plain, info = AutoModelForSequenceClassification.from_pretrained(merged, output_loading_info=True)
        clean = not info["missing_keys"] and not info["unexpected_keys"]
        print(f"merged directory loads in transformers: missing {info['missing_keys']}, unexpected {info['unexpected_keys']}")
        ok &= clean
        ok &= compare("merged model (transformers) vs swiftbert predict (adapter)", ours,
                      torch_scores(plain, tokenizer, texts, labels))
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
