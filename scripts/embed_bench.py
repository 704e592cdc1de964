#!/usr/bin/env python3
"""`swiftbert embed` against transformers' BertModel on PyTorch: texts/s on the same model and texts.

Model: the shape of sentence-transformers/all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads, intermediate
1536, max positions 512, uncased BERT vocabulary of 30,522 tokens), randomly initialised and written with
save_pretrained (the hub is not reachable from every machine, and the weights' values do not change the
work), with corpus/vocab.txt as its vocabulary. Texts: the first --count lines of corpus/kjv.txt.

  pytorch    BertModel, torch.set_num_threads(--threads), no grad, batches of --batch-size texts in input
             order, each padded to its own longest text (tokenizer(..., padding=True) per batch), mean
             pooling over the attention mask. Timed from the first text to the last vector, tokenisation
             included, after loading the model and one untimed warm-up batch. Its own subprocess.
  swiftbert  `swiftbert embed --model DIR --pooling mean --batch-size B --input FILE --json`, output to a
             file: timed end to end as a user runs it (process start, model loading, tokenisation,
             writing the JSON lines).

Every round runs each system once, in alternating order (a shared host's speed drifts by 30% within
minutes); the ratio is SwiftBERT / PyTorch within each round, and the report gives medians over rounds.
The first round also compares the vectors of the two (largest absolute difference).

Setup:  python3 -m venv venv && venv/bin/pip install 'torch==2.13.0+cpu' transformers safetensors tokenizers
Build:  swift build -c release
Run:    venv/bin/python scripts/embed_bench.py                 # 2,000 verses, batch 64, 5 rounds
        venv/bin/python scripts/embed_bench.py --rounds 3 --count 500
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench_models import cpu_model, save_with_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_model(directory):
    """A randomly initialised BertModel of all-MiniLM-L6-v2's shape, saved with its tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512, hidden_act="gelu",
                        layer_norm_eps=1e-12, type_vocab_size=2, pad_token_id=0)
    model = BertModel(config, add_pooling_layer=True).eval()
    save_with_tokenizer(model, directory)


# ---------------------------------------------------------------- worker (PyTorch, one run)

def worker(args):
    import torch
    from transformers import BertModel, BertTokenizerFast

    torch.set_num_threads(args.threads)
    tokenizer = BertTokenizerFast.from_pretrained(args.model)
    model = BertModel.from_pretrained(args.model).eval()
    with open(args.texts, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f]

    def embed(batch):
        encoded = tokenizer(batch, padding=True, return_tensors="pt")
        hidden = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1)

    B = args.batch_size
    with torch.no_grad():
        embed(texts[:B])
        start = time.perf_counter()
        vectors = [embed(texts[i:i + B]) for i in range(0, len(texts), B)]
        seconds = time.perf_counter() - start
    if args.save:
        torch.save(torch.cat(vectors), args.save)
    print(json.dumps({"seconds": seconds, "texts": len(texts)}))


# ---------------------------------------------------------------- driver

def run_pytorch(args, texts_path, save=None):
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--model", args.model, "--texts", texts_path,
               "--threads", str(args.threads), "--batch-size", str(args.batch_size)]
    if save:
        command += ["--save", save]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"pytorch worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]


def run_swiftbert(args, texts_path, output_path):
    command = [args.binary, "embed", "--model", args.model, "--pooling", "mean", "--batch-size",
               str(args.batch_size), "--input", texts_path, "--json"] + args.swiftbert_args
    with open(output_path, "w") as out:
        start = time.perf_counter()
        proc = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"swiftbert failed ({' '.join(command)}):\n{proc.stderr}")
    return seconds


def largest_difference(swiftbert_output, pytorch_vectors):
    import torch

    with open(swiftbert_output, encoding="utf-8") as f:
        ours = torch.tensor([json.loads(line)["embedding"] for line in f])
    theirs = torch.load(pytorch_vectors)
    if ours.shape != theirs.shape:
        sys.exit(f"shapes differ: swiftbert {tuple(ours.shape)}, pytorch {tuple(theirs.shape)}")
    return (ours - theirs).abs().max().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.join(ROOT, "runs", "embed-bench-minilm-l6-shape"),
                        help="model directory; created (random weights of all-MiniLM-L6-v2's shape) if absent")
    parser.add_argument("--corpus", default=os.path.join(ROOT, "corpus", "kjv.txt"))
    parser.add_argument("--count", type=int, default=2000, help="texts: the first COUNT non-empty lines")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's threads")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "swiftbert"))
    parser.add_argument("--swiftbert-args", nargs=argparse.REMAINDER, default=[],
                        help="further arguments of swiftbert embed (last on the line)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    if not os.path.isdir(args.model):
        make_model(args.model)
    with open(args.corpus, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f if line.strip()][:args.count]
    scratch = tempfile.mkdtemp(prefix="embed-bench-")
    try:
        texts_path = os.path.join(scratch, "texts.txt")
        with open(texts_path, "w", encoding="utf-8") as f:
            f.write("\n".join(texts) + "\n")
        output = os.path.join(scratch, "swiftbert.jsonl")
        print(f"{len(texts)} texts of {os.path.relpath(args.corpus, ROOT)}, batch {args.batch_size}, "
              f"model {args.model}; CPU {cpu_model()}, {len(os.sched_getaffinity(0))} cores", flush=True)
        rounds = []
        for r in range(args.rounds):
            save = os.path.join(scratch, "pytorch.pt") if r == 0 else None
            order = ["pytorch", "swiftbert"] if r % 2 == 0 else ["swiftbert", "pytorch"]
            seconds = {}
            for system in order:
                if system == "pytorch":
                    seconds[system] = run_pytorch(args, texts_path, save)
                else:
                    seconds[system] = run_swiftbert(args, texts_path, output)
            rate = {system: len(texts) / s for system, s in seconds.items()}
            rounds.append(rate)
            print(f"round {r + 1}: pytorch {rate['pytorch']:.1f} texts/s, swiftbert {rate['swiftbert']:.1f} texts/s, "
                  f"ratio {rate['swiftbert'] / rate['pytorch']:.2f}x", flush=True)
            if r == 0:
                print(f"largest |swiftbert - pytorch| over all vectors: {largest_difference(output, save):.2e}",
                      flush=True)
        ratios = [r["swiftbert"] / r["pytorch"] for r in rounds]
        print(f"median texts/s: pytorch {statistics.median(r['pytorch'] for r in rounds):.1f}, "
              f"swiftbert {statistics.median(r['swiftbert'] for r in rounds):.1f}; "
              f"paired ratio median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
