#!/usr/bin/env python3
"""LoRA or prefix tuning against full fine-tuning in SwiftBERT, and against peft + transformers on PyTorch.

Same models, texts and step as scripts/finetune_bench.py (its docstring): BertForSequenceClassification of
BERT-mini's or bert-base's shape, random weights, 20 Newsgroups texts truncated to --max-length, batches
padded to their longest text. LoRA is peft's LoraConfig(task_type SEQ_CLS, r 8, lora_alpha 16, dropout 0.1,
target_modules query and value): the adapters and the classifier train, everything else is frozen. Prefix tuning
(--method prefix) is peft's PrefixTuningConfig(task_type SEQ_CLS, num_virtual_tokens 20): the prefix and the
classifier train (peft runs it on transformers 5.24 through scripts/peft_compat.py).

Systems, each run once per round, in alternating order:
  full 2x1        `swiftbert train`, every parameter trained, 2 ranks x 1 thread (launch/local.sh)
  lora 2x1        `swiftbert train` with the peft section above, 2 ranks x 1 thread (prefix 2x1 with --method prefix)
  lora 1x2        the same on 1 rank with 2 BLAS threads
  peft            transformers + peft 0.21 on PyTorch 2.13, torch.set_num_threads(--threads), AdamW over the
                  trainable parameters (weight decay 0.01 except biases and LayerNorm), clip 1.0
Reported: real tokens/s over the timed steps (after --warmup), and for SwiftBERT from metrics.jsonl the
median step seconds, rank 0's peak resident memory (peak_rss_bytes of the last record) and the bytes each
rank all-reduces per step (allreduce_bytes). Ratios are within a round, medians over rounds.

Run:  venv/bin/python scripts/peft_bench.py --shapes base --rounds 3
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

from finetune_bench import ROOT, bench_model, newsgroups, read_examples, run, write_examples

# SwiftBERT's peft section of each method; peft_config builds peft's equivalent.
METHODS = {
    "lora": {"method": "lora", "r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "value"]},
    "prefix": {"method": "prefix_tuning", "num_virtual_tokens": 20},
}


def peft_config(method):
    from peft import LoraConfig, PrefixTuningConfig
    settings = METHODS[method]
    if method == "lora":
        return LoraConfig(task_type="SEQ_CLS", r=settings["r"], lora_alpha=settings["lora_alpha"],
                          lora_dropout=settings["lora_dropout"], target_modules=settings["target_modules"])
    from peft_compat import accept_past_key_values
    accept_past_key_values()
    return PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=settings["num_virtual_tokens"])


def peft_worker(args):
    import torch
    from peft import get_peft_model
    from torch.utils.data import DataLoader
    from transformers import BertForSequenceClassification, BertTokenizerFast, DataCollatorWithPadding

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = BertTokenizerFast.from_pretrained(args.model)
    model = BertForSequenceClassification.from_pretrained(args.model)
    model = get_peft_model(model, peft_config(args.method))
    label2id = model.config.label2id
    examples = read_examples(args.file)
    encoded = tokenizer([text for _, text in examples], truncation=True, max_length=args.max_length)
    features = [{"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": label2id[label]}
                for ids, types, mask, (label, _) in zip(encoded["input_ids"], encoded["token_type_ids"],
                                                        encoded["attention_mask"], examples)]
    loader = DataLoader(features, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        collate_fn=DataCollatorWithPadding(tokenizer), generator=torch.Generator().manual_seed(0))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_decay = [p for n, p in trainable if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in trainable if not (n.endswith("bias") or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3)
    model.train()
    batches = iter(loader)
    tokens, seconds = 0, 0.0
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        batch = next(batches)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - start
        if step >= args.warmup:
            tokens += int(batch["attention_mask"].sum())
            seconds += elapsed
    print(json.dumps({"tokens": tokens, "seconds": seconds}))


def peft_train(args, model, file, batch_size):
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--threads", str(args.threads), "--model", model,
               "--file", file, "--batch-size", str(batch_size), "--max-length", str(args.max_length),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--method", args.method]
    proc, _ = run(command, "peft training")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"tokens/s": result["tokens"] / result["seconds"]}


def swiftbert_train(args, model, file, batch_size, ranks, adapter, scratch):
    out = os.path.join(scratch, "run")
    shutil.rmtree(out, ignore_errors=True)
    config = {
        "task": {"type": "sequence_classification", "train_file": file, "format": "label_tab_text"},
        "init_from": model,
        "batch": {"global_batch_size": batch_size, "sequence_length": args.max_length},
        "optimizer": {"learning_rate": 1e-3 if adapter else 5e-5, "weight_decay": 0.01, "max_grad_norm": 1.0},
        "schedule": {"total_steps": args.warmup + args.steps, "warmup_steps": 0},
        "checkpoint": {"every_steps": 100000},
        "logging": {"every_steps": 1, "eval_every_steps": 0},
    }
    if adapter:
        config["peft"] = METHODS[args.method]
    path = os.path.join(scratch, "train.json")
    with open(path, "w") as f:
        json.dump(config, f)
    run([os.path.join(ROOT, "launch", "local.sh"), "--ranks", str(ranks), "--binary", args.binary, "train",
         "--config", path, "--out", out], "swiftbert train")
    tokens, seconds, steps, last = 0.0, 0.0, [], None
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record.get("split") != "train":
                continue
            last = record
            if record["step"] <= args.warmup:
                continue
            step_seconds = record["time_compute"] + record["time_comm_wait"] + record["time_data_wait"]
            tokens += record["tokens_per_second"] * step_seconds
            seconds += step_seconds
            steps.append(step_seconds)
    shutil.rmtree(out, ignore_errors=True)
    return {"tokens/s": tokens / seconds, "step s": statistics.median(steps), "peak MB": last["peak_rss_bytes"] / 1e6,
            "all-reduce MB": last["allreduce_bytes"] / 1e6}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/tasks/20newsgroups")
    parser.add_argument("--models", default=os.path.join(ROOT, "runs"))
    parser.add_argument("--shapes", nargs="+", default=["base"], choices=["mini", "base"])
    parser.add_argument("--train-count", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 for mini, 8 for base")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--method", default="lora", choices=sorted(METHODS))
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "swiftbert"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return peft_worker(args)

    train, _, labels = newsgroups(args, 0)
    scratch = tempfile.mkdtemp(prefix="peft-bench-")
    try:
        for shape in args.shapes:
            model = bench_model(args, shape, labels)
            batch_size = args.batch_size or (8 if shape == "base" else 32)
            file = os.path.join(scratch, "train.tsv")
            write_examples(file, train)
            print(f"\n[{shape}] batch {batch_size}, {args.steps} timed steps after {args.warmup}", flush=True)
            two, one = f"{args.method} 2x1", f"{args.method} 1x2"
            systems = {
                "full 2x1": lambda: swiftbert_train(args, model, file, batch_size, 2, False, scratch),
                two: lambda: swiftbert_train(args, model, file, batch_size, 2, True, scratch),
                one: lambda: swiftbert_train(args, model, file, batch_size, 1, True, scratch),
                "peft": lambda: peft_train(args, model, file, batch_size),
            }
            rounds = []
            for r in range(args.rounds):
                names = list(systems) if r % 2 == 0 else list(systems)[::-1]
                result = {name: systems[name]() for name in names}
                rounds.append(result)
                print(f"  round {r + 1}: " + "; ".join(
                    f"{name} " + ", ".join(f"{k} {v:.4g}" for k, v in result[name].items()) for name in systems)
                      + f"; load average {os.getloadavg()[0]:.1f}", flush=True)

            def median(name, key):
                return statistics.median(r[name][key] for r in rounds)

            def ratio(a, b, key):
                values = [r[a][key] / r[b][key] for r in rounds]
                return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"

            print(f"\n[{shape}] medians of {len(rounds)} rounds")
            for name in systems:
                print(f"  {name:<9} " + ", ".join(f"{k} {median(name, k):.4g}" for k in rounds[0][name]))
            print(f"  {two} / full 2x1: all-reduce bytes {ratio(two, 'full 2x1', 'all-reduce MB')}, "
                  f"peak memory {ratio(two, 'full 2x1', 'peak MB')}, step time {ratio(two, 'full 2x1', 'step s')}")
            print(f"  throughput against peft: {two} {ratio(two, 'peft', 'tokens/s')}, "
                  f"{one} {ratio(one, 'peft', 'tokens/s')}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
