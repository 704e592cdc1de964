#!/usr/bin/env python3
"""Fine-tuning and prediction speed: `swiftbert train` / `predict` / `evaluate` against transformers on PyTorch.

Models: BertForSequenceClassification of two shapes, randomly initialised and written with save_pretrained
(the weights' values do not change the work), with corpus/vocab.txt (bert-base-uncased, 30,522 tokens) and
the 20 labels of 20 Newsgroups as id2label:
  mini  4 layers, hidden 256, 4 heads, intermediate 1024 (Google's BERT-mini)
  base  12 layers, hidden 768, 12 heads, intermediate 3072 (bert-base)
Texts: 20 Newsgroups (label<TAB>text lines, /work/shared/tasks/20newsgroups or --data), a fixed random
sample of --train-count training and --predict-count test examples, truncated to --max-length tokens.

Training (tokens/s counts REAL tokens, attention mask 1, for both sides):
  pytorch    BertForSequenceClassification in train mode, torch.set_num_threads(--threads), texts tokenized once
             (truncation, no padding), DataLoader(shuffle) with DataCollatorWithPadding (each batch padded to its
             own longest text), torch.optim.AdamW (weight decay 0.01 except biases and LayerNorm weights, as
             transformers' Trainer), linear schedule, clip_grad_norm_(1.0), zero_grad(set_to_none). Its own
             subprocess.
  swiftbert  `swiftbert train` on a sequence_classification config with the same model (init_from), file,
             batch size, sequence length, learning rate, clipping (1.0) and weight decay; batches padded to the
             global batch's longest text; metrics every step, no evaluation. Through launch/local.sh: one rank
             with 2 BLAS threads (`--ranks 1`) and 2 ranks with one thread each (its default).
  Both sides: the first --warmup steps are dropped; tokens/s is the real tokens over the summed step times of the
  remaining --steps steps (a step: collate the batch, forward, backward, all-reduce, clip, optimizer). Start-up
  (imports, loading the model, tokenizing the file) is outside the steps on both sides. SwiftBERT's per-step
  time and real tokens come from metrics.jsonl (tokens_per_second x step seconds).

Prediction (texts/s over the same --predict-count test texts, batch --batch-size, truncated to --max-length):
  pipeline    transformers pipeline("text-classification", batch_size=B), after loading and one warm-up batch.
  forward     the plain model under torch.inference_mode: tokenizer(batch, padding=True) per batch in input
              order, logits -> softmax; after loading and one warm-up batch.
  predict     `swiftbert predict --model DIR --input FILE --batch-size B --max-length L` timed end to end (process
              start, model loading, tokenisation, JSON output), and its start-up measured by a one-text run
              in the same round and subtracted (the "net" column) so both sides exclude loading.
  evaluate    `swiftbert evaluate` on the same examples with their labels (loss and metrics), end to end.

Every round runs each system once, in alternating order (a shared host's speed drifts within minutes); ratios
are SwiftBERT / PyTorch within each round, and the report gives medians over rounds.

Setup:  python3 -m venv venv && venv/bin/pip install 'torch==2.13.0+cpu' transformers safetensors tokenizers
Build:  swift build -c release
Run:    venv/bin/python scripts/finetune_bench.py                      # mini and base, training and prediction
        venv/bin/python scripts/finetune_bench.py --shapes mini --rounds 3 --skip predict
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench_models import cpu_model, save_with_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHAPES = {
    "mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
}
LEARNING_RATE, WEIGHT_DECAY = 5e-5, 0.01


def make_model(directory, shape, labels):
    """A randomly initialised BertForSequenceClassification of `shape`, saved with its tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, hidden_act="gelu", layer_norm_eps=1e-12,
                        type_vocab_size=2, pad_token_id=0, id2label=dict(enumerate(labels)),
                        label2id={name: i for i, name in enumerate(labels)}, **SHAPES[shape])
    model = BertForSequenceClassification(config)
    save_with_tokenizer(model, directory)


def read_examples(path):
    examples = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            label, sep, text = line.partition("\t")
            if not sep:
                sys.exit(f"{path}:{number}: expected label<TAB>text")
            examples.append((label, text))
    return examples


def write_examples(path, examples):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{label}\t{text}\n" for label, text in examples)


def newsgroups(args, predict_count):
    """The fixed samples of --train-count training and `predict_count` test examples, and the labels."""
    rng = random.Random(0)
    train = read_examples(os.path.join(args.data, "train.tsv"))
    test = read_examples(os.path.join(args.data, "test.tsv")) if predict_count else []
    labels = list(dict.fromkeys(label for label, _ in train))
    train = rng.sample(train, min(args.train_count, len(train)))
    test = rng.sample(test, min(predict_count, len(test)))
    print(f"20 Newsgroups: {len(train)} training / {len(test)} test examples, max length {args.max_length}; "
          f"CPU {cpu_model()}, {len(os.sched_getaffinity(0))} cores, PyTorch threads {args.threads}", flush=True)
    return train, test, labels


def bench_model(args, shape, labels):
    """The random model of `shape` under --models, written on first use."""
    model = os.path.join(args.models, f"finetune-bench-{shape}")
    if not os.path.isdir(model):
        make_model(model, shape, labels)
    return model


# ---------------------------------------------------------------- workers (PyTorch, one run each)

def train_worker(args):
    import torch
    from torch.utils.data import DataLoader
    from transformers import BertForSequenceClassification, BertTokenizerFast, DataCollatorWithPadding
    from transformers import get_linear_schedule_with_warmup

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = BertTokenizerFast.from_pretrained(args.model)
    model = BertForSequenceClassification.from_pretrained(args.model)
    label2id = model.config.label2id
    examples = read_examples(args.file)
    encoded = tokenizer([text for _, text in examples], truncation=True, max_length=args.max_length)
    features = [{"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": label2id[label]}
                for ids, types, mask, (label, _) in zip(encoded["input_ids"], encoded["token_type_ids"],
                                                        encoded["attention_mask"], examples)]
    loader = DataLoader(features, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        collate_fn=DataCollatorWithPadding(tokenizer), generator=torch.Generator().manual_seed(0))
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=LEARNING_RATE)
    total = args.warmup + args.steps
    schedule = get_linear_schedule_with_warmup(optimizer, 0, total)
    batches = iter(loader)
    timed_training(model, optimizer, schedule, total, args.warmup,
                   lambda step: next(batches), lambda batch: model(**batch).loss,
                   lambda batch: int(batch["attention_mask"].sum()))


def timed_training(model, optimizer, schedule, total, warmup, next_batch, loss_of, tokens_of):
    """`total` steps (batch, forward, backward, clip 1.0, optimizer, schedule); prints the tokens and summed
    seconds of the steps after the first `warmup` as JSON."""
    import torch
    model.train()
    tokens, seconds = 0, 0.0
    for step in range(total):
        start = time.perf_counter()
        batch = next_batch(step)
        loss = loss_of(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - start
        if step >= warmup:
            tokens += tokens_of(batch)
            seconds += elapsed
    print(json.dumps({"tokens": tokens, "seconds": seconds}))


def predict_worker(args):
    import torch
    from transformers import BertForSequenceClassification, BertTokenizerFast, pipeline

    torch.set_num_threads(args.threads)
    with open(args.file, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f]
    B = args.batch_size
    if args.mode == "pipeline":
        classify = pipeline("text-classification", model=args.model, tokenizer=args.model, device=-1)
        options = dict(batch_size=B, truncation=True, max_length=args.max_length)
        classify(texts[:B], **options)
        start = time.perf_counter()
        classify(texts, **options)
        seconds = time.perf_counter() - start
    else:
        tokenizer = BertTokenizerFast.from_pretrained(args.model)
        model = BertForSequenceClassification.from_pretrained(args.model).eval()

        def forward(batch):
            encoded = tokenizer(batch, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
            return model(**encoded).logits.softmax(-1)

        with torch.inference_mode():
            forward(texts[:B])
            start = time.perf_counter()
            for i in range(0, len(texts), B):
                forward(texts[i:i + B])
            seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "texts": len(texts)}))


# ---------------------------------------------------------------- driver

def run(command, what, stdout=None):
    start = time.perf_counter()
    proc = subprocess.run(command, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{what} failed ({' '.join(command)}):\n{proc.stderr[-3000:]}")
    return proc, seconds


def worker_command(args, *extra):
    return [sys.executable, os.path.abspath(__file__), "--threads", str(args.threads), *extra]


def pytorch_train(args, model, file, batch_size, steps):
    proc, _ = run(worker_command(args, "--worker", "train", "--model", model, "--file", file, "--batch-size",
                                 str(batch_size), "--max-length", str(args.max_length), "--steps", str(steps),
                                 "--warmup", str(args.warmup)), "pytorch training")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["tokens"] / result["seconds"]


def swiftbert_train(args, model, file, batch_size, steps, ranks, scratch):
    out = os.path.join(scratch, f"run-{ranks}")
    shutil.rmtree(out, ignore_errors=True)
    config = {
        "task": {"type": "sequence_classification", "train_file": file, "format": "label_tab_text"},
        "init_from": model,
        "batch": {"global_batch_size": batch_size, "sequence_length": args.max_length},
        "optimizer": {"learning_rate": LEARNING_RATE, "weight_decay": WEIGHT_DECAY, "max_grad_norm": 1.0},
        "schedule": {"total_steps": args.warmup + steps, "warmup_steps": 0},
        "checkpoint": {"every_steps": 100000},
        "logging": {"every_steps": 1, "eval_every_steps": 0},
    }
    config_path = os.path.join(scratch, "train.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    # launch/local.sh as the README runs it: each rank bound to cores / ranks CPUs with as many BLAS threads.
    command = [os.path.join(ROOT, "launch", "local.sh"), "--ranks", str(ranks), "--binary", args.binary,
               "train", "--config", config_path, "--out", out]
    run(command, "swiftbert train")
    return timed_tokens_per_second(out, args.warmup)


def timed_tokens_per_second(out, warmup):
    """Tokens over the summed step times of a run's training records after the first `warmup` steps (from
    metrics.jsonl: tokens_per_second x the step's compute, communication and data wait); removes the run."""
    tokens, seconds = 0.0, 0.0
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record.get("split") != "train" or record["step"] <= warmup:
                continue
            step_seconds = record["time_compute"] + record["time_comm_wait"] + record["time_data_wait"]
            tokens += record["tokens_per_second"] * step_seconds
            seconds += step_seconds
    shutil.rmtree(out, ignore_errors=True)
    return tokens / seconds


def pytorch_predict(args, model, texts_path, mode, batch_size):
    proc, _ = run(worker_command(args, "--worker", "predict", "--mode", mode, "--model", model, "--file", texts_path,
                                 "--batch-size", str(batch_size), "--max-length", str(args.max_length)),
                  f"pytorch {mode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["texts"] / result["seconds"]


def swiftbert_seconds(args, command, scratch):
    with open(os.path.join(scratch, "swiftbert.out"), "w") as out:
        _, seconds = run([args.binary] + command, f"swiftbert {command[0]}", stdout=out)
    return seconds


def report(title, unit, rounds, reference):
    """Medians over rounds of every system and of each system's ratio to `reference` within its round."""
    print(f"\n{title} ({unit}, median of {len(rounds)} rounds; ratio = system / {reference} within a round)")
    for system in rounds[0]:
        values = [r[system] for r in rounds]
        line = f"  {system:<22} {statistics.median(values):10.1f}"
        if system != reference:
            ratios = [r[system] / r[reference] for r in rounds]
            line += f"   ratio {statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x)"
        print(line, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/tasks/20newsgroups",
                        help="directory with train.tsv and test.tsv (label<TAB>text)")
    parser.add_argument("--models", default=os.path.join(ROOT, "runs"),
                        help="where the random models are written (finetune-bench-SHAPE), reused when present")
    parser.add_argument("--shapes", nargs="+", default=["mini", "base"], choices=sorted(SHAPES))
    parser.add_argument("--skip", nargs="*", default=[], choices=["train", "predict"])
    parser.add_argument("--train-count", type=int, default=2000)
    parser.add_argument("--predict-count", type=int, default=512)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32, help="mini's batch (training and prediction)")
    parser.add_argument("--base-batch-size", type=int, default=8, help="base's training batch")
    parser.add_argument("--steps", type=int, default=40, help="mini's timed training steps")
    parser.add_argument("--base-steps", type=int, default=6, help="base's timed training steps")
    parser.add_argument("--base-predict-count", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's threads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "swiftbert"))
    parser.add_argument("--worker", choices=["train", "predict"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["pipeline", "forward"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "train":
        return train_worker(args)
    if args.worker == "predict":
        return predict_worker(args)

    train, test, labels = newsgroups(args, args.predict_count)
    scratch = tempfile.mkdtemp(prefix="finetune-bench-")
    try:
        for shape in args.shapes:
            model = bench_model(args, shape, labels)
            base = shape == "base"
            batch_size = args.base_batch_size if base else args.batch_size
            steps = args.base_steps if base else args.steps
            if "train" not in args.skip:
                # Each system reads its own copy so that SwiftBERT's feature cache beside the file is per run.
                train_path = os.path.join(scratch, "train.tsv")
                write_examples(train_path, train)
                print(f"\n[{shape}] training: batch {batch_size}, {steps} timed steps after {args.warmup}", flush=True)
                rounds = []
                systems = ["pytorch", "swiftbert 1 rank x 2 threads", "swiftbert 2 ranks x 1 thread"]
                for r in range(args.rounds):
                    rate = {}
                    for system in (systems if r % 2 == 0 else systems[::-1]):
                        if system == "pytorch":
                            rate[system] = pytorch_train(args, model, train_path, batch_size, steps)
                        else:
                            ranks = 2 if "2 ranks" in system else 1
                            rate[system] = swiftbert_train(args, model, train_path, batch_size, steps, ranks, scratch)
                    rate = {s: rate[s] for s in systems}
                    rounds.append(rate)
                    print(f"  round {r + 1}: " + ", ".join(f"{s} {v:.0f}" for s, v in rate.items())
                          + f"; load average {os.getloadavg()[0]:.1f}", flush=True)
                report(f"[{shape}] fine-tuning throughput", "real tokens/s", rounds, "pytorch")
            if "predict" not in args.skip:
                count = args.base_predict_count if base else len(test)
                texts_path = os.path.join(scratch, "texts.txt")
                labelled_path = os.path.join(scratch, "labelled.tsv")
                one_path = os.path.join(scratch, "one.txt")
                with open(texts_path, "w", encoding="utf-8") as f:
                    f.writelines(text + "\n" for _, text in test[:count])
                with open(one_path, "w", encoding="utf-8") as f:
                    f.write(test[0][1] + "\n")
                write_examples(labelled_path, test[:count])
                B = args.batch_size
                common = ["--batch-size", str(B), "--max-length", str(args.max_length)]
                print(f"\n[{shape}] prediction: {count} texts, batch {B}", flush=True)
                systems = ["pytorch pipeline", "pytorch forward", "swiftbert predict", "swiftbert predict net",
                           "swiftbert evaluate"]
                rounds = []
                for r in range(args.rounds):
                    seconds = {}
                    order = ["pipeline", "forward", "predict", "evaluate"]
                    for system in (order if r % 2 == 0 else order[::-1]):
                        if system in ("pipeline", "forward"):
                            seconds[system] = count / pytorch_predict(args, model, texts_path, system, B)
                        elif system == "predict":
                            seconds["predict"] = swiftbert_seconds(
                                args, ["predict", "--model", model, "--input", texts_path] + common, scratch)
                            seconds["startup"] = swiftbert_seconds(
                                args, ["predict", "--model", model, "--input", one_path] + common, scratch)
                        else:
                            # Each run encodes afresh: the feature cache beside the file is removed first.
                            for name in os.listdir(scratch):
                                if name.startswith("labelled.tsv."):
                                    os.remove(os.path.join(scratch, name))
                            seconds["evaluate"] = swiftbert_seconds(
                                args, ["evaluate", "--model", model, "--data", labelled_path, "--data-format",
                                       "label_tab_text"] + common, scratch)
                    rate = {
                        "pytorch pipeline": count / seconds["pipeline"],
                        "pytorch forward": count / seconds["forward"],
                        "swiftbert predict": count / seconds["predict"],
                        # One text's run is start-up plus one text: (count - 1) texts over the difference.
                        "swiftbert predict net": (count - 1) / max(seconds["predict"] - seconds["startup"], 1e-9),
                        "swiftbert evaluate": count / seconds["evaluate"],
                    }
                    rounds.append(rate)
                    print(f"  round {r + 1}: " + ", ".join(f"{s} {v:.1f}" for s, v in rate.items())
                          + f"; load average {os.getloadavg()[0]:.1f}", flush=True)
                report(f"[{shape}] prediction throughput", "texts/s", rounds, "pytorch forward")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
