#!/usr/bin/env python3
"""Writes Tests/TrainingTests/Fixtures/flops.json: model FLOPs of one BERT pre-training step, counted
by PyTorch's FlopCounterMode, to check the analytic count `swiftbert bench` reports.

The model is transformers' BertForPreTraining with the MLM head applied to the masked positions only
(gathered rows of the last hidden state), the shape SwiftBERT trains. One forward and backward pass of
a full-length batch is counted (matrix products only: mm, addmm, bmm and attention); the count is
divided by the number of tokens. Configurations: the repository's configs/*.json at batch 4 x 128
(FLOPs per token do not depend on the batch) and a short-sequence case.

Run: /work/venv/bin/python scripts/make_flop_fixtures.py
(venv: python3 -m venv venv && venv/bin/pip install 'torch==2.13.0+cpu' transformers)
"""
import json
import os

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForPreTraining

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def masked_count(length, probability, cap):
    # Google's create_pretraining_data.py: min(max_predictions_per_seq, max(1, int(round(n * p)))).
    return min(cap, max(1, int(round(length * probability))))


def count(config_path, batch, length):
    with open(os.path.join(ROOT, config_path)) as f:
        run = json.load(f)
    data = run.get("data", {})
    masked = masked_count(length, data.get("masked_lm_prob", 0.15), data.get("max_predictions_per_seq", 20))
    config = BertConfig(**run["model"])
    model = BertForPreTraining(config).train()
    ids = torch.randint(999, config.vocab_size, (batch, length))
    types = torch.zeros_like(ids)
    positions = torch.stack([torch.randperm(length - 1)[:masked] + 1 for _ in range(batch)])
    flat = (positions + torch.arange(batch).unsqueeze(1) * length).reshape(-1)
    labels = torch.randint(0, config.vocab_size, (batch * masked,))
    nsp = torch.randint(0, 2, (batch,))
    with FlopCounterMode(display=False) as counter:
        out = model.bert(input_ids=ids, token_type_ids=types, attention_mask=torch.ones_like(ids))
        hidden = out.last_hidden_state.reshape(batch * length, -1)[flat]
        logits = model.cls.predictions(hidden)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        loss = loss + torch.nn.functional.cross_entropy(model.cls.seq_relationship(out.pooler_output), nsp)
        loss.backward()
    return {
        "config": config_path, "sequence_length": length, "masked_per_sequence": masked,
        "flops_per_token": counter.get_total_flops() / (batch * length),
    }


def main():
    torch.manual_seed(0)
    cases = [count(f"configs/{name}.json", 4, 128) for name in ("bert-tiny", "bert-mini", "bert-small", "debug")]
    cases.append(count("configs/bert-mini.json", 4, 64))
    path = os.path.join(ROOT, "Tests", "TrainingTests", "Fixtures", "flops.json")
    with open(path, "w") as f:
        json.dump({"generator": "scripts/make_flop_fixtures.py", "torch": torch.__version__, "cases": cases}, f, indent=1)
        f.write("\n")
    for case in cases:
        print(case)


if __name__ == "__main__":
    main()
