#!/usr/bin/env python3
"""GPT-2 causal LM training speed: `swiftbert train` (task causal_lm) against transformers' GPT2LMHeadModel on
PyTorch 2.13 CPU, side by side on the same shapes, tokens and cores.

Data: corpus/kjv.txt with a byte-level BPE tokenizer `tokenizers` trains on it (vocab --vocab), documents joined
by <|endoftext|> and cut into sequences of --length tokens: `swiftbert prepare --objective causal_lm` for
SwiftBERT, the same packing in Python for PyTorch (every position is a real token on both sides).
Shapes (random init, dropout 0.1 everywhere, as GPT-2's config):
  small  n_embd 256, 4 layers, 4 heads
  124m   n_embd 768, 12 layers, 12 heads (GPT-2 124M's blocks; vocab --vocab, not 50257)
Both sides: AdamW (weight decay 0.01 except biases and LayerNorm weights), linear schedule, clip 1.0, global
batch --batch; the first --warmup steps untimed; tokens/s = tokens of the timed steps / their summed step times
(forward, backward, all-reduce, clip, update; start-up excluded). PyTorch runs in its own process with
torch.set_num_threads(--threads); SwiftBERT through launch/local.sh with --ranks 1 (2 BLAS threads) and 2 (one
thread each). SwiftBERT's step time and tokens come from metrics.jsonl. Rounds alternate the order; ratios are
within a round, medians over rounds.

Run:  venv/bin/python scripts/gpt2_train_bench.py --shapes small 124m --rounds 3
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from finetune_bench import report, run, timed_tokens_per_second, timed_training  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {"small": (256, 4, 4), "124m": (768, 12, 12)}
LEARNING_RATE = 3e-4
WEIGHT_DECAY = 0.01


def gpt2_config(args, shape):
    embd, layers, heads = SHAPES[shape]
    return {"vocab_size": args.vocab, "n_positions": args.length, "n_embd": embd, "n_layer": layers, "n_head": heads,
            "activation_function": "gelu_new", "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
            "bos_token_id": 0, "eos_token_id": 0}


def make_tokenizer(args, scratch):
    from tokenizers import ByteLevelBPETokenizer
    directory = os.path.join(scratch, "tokenizer")
    os.makedirs(directory, exist_ok=True)
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train([args.corpus], vocab_size=args.vocab, special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    return directory


def train_worker(args):
    import torch
    from tokenizers import Tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, get_linear_schedule_with_warmup

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
    eot = tokenizer.token_to_id("<|endoftext|>")
    # Documents are blank-line separated blocks of lines, as `prepare` reads the google format.
    with open(args.corpus, encoding="utf-8") as f:
        documents = [block.strip() for block in f.read().split("\n\n") if block.strip()]
    stream = []
    for ids in tokenizer.encode_batch(documents):
        stream += ids.ids + [eot]
    count = len(stream) // args.length
    sequences = torch.tensor(stream[:count * args.length]).view(count, args.length)
    model = GPT2LMHeadModel(GPT2Config(**gpt2_config(args, args.shape), attn_implementation="eager"))
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or ".ln_" in n]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or ".ln_" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=LEARNING_RATE)
    total = args.warmup + args.steps
    schedule = get_linear_schedule_with_warmup(optimizer, 0, total)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(0))
    timed_training(model, optimizer, schedule, total, args.warmup,
                   lambda step: sequences[order[(step * args.batch) % count:][:args.batch]],
                   lambda batch: model(input_ids=batch, labels=batch).loss, lambda batch: batch.numel())


def pytorch_train(args, shape, tokenizer):
    proc, _ = run([sys.executable, os.path.abspath(__file__), "--worker", "--shape", shape, "--tokenizer", tokenizer,
                   "--threads", str(args.threads), "--batch", str(args.batch), "--length", str(args.length),
                   "--vocab", str(args.vocab), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--corpus", args.corpus], "pytorch training")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["tokens"] / result["seconds"]


def swiftbert_train(args, shape, data, ranks, scratch):
    out = os.path.join(scratch, f"run-{shape}-{ranks}")
    shutil.rmtree(out, ignore_errors=True)
    config = {
        "task": {"type": "causal_lm"},
        "model": gpt2_config(args, shape),
        "data": {"directory": data},
        "batch": {"global_batch_size": args.batch, "sequence_length": args.length},
        "optimizer": {"learning_rate": LEARNING_RATE, "weight_decay": WEIGHT_DECAY, "max_grad_norm": 1.0},
        "schedule": {"total_steps": args.warmup + args.steps, "warmup_steps": 0},
        "checkpoint": {"every_steps": 100000},
        "logging": {"every_steps": 1, "eval_every_steps": 0},
    }
    config_path = os.path.join(scratch, "train.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    run([os.path.join(ROOT, "launch", "local.sh"), "--ranks", str(ranks), "--binary", args.binary,
         "train", "--config", config_path, "--out", out], "swiftbert train")
    return timed_tokens_per_second(out, args.warmup)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["small", "124m"], choices=sorted(SHAPES))
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", default=os.path.join(ROOT, "corpus", "kjv.txt"))
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--length", type=int, default=256, help="tokens per sequence")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step")
    parser.add_argument("--steps", type=int, default=6, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's threads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "swiftbert"))
    args = parser.parse_args()
    if args.worker:
        train_worker(args)
        return
    scratch = tempfile.mkdtemp(prefix="gpt2-train-bench-")
    try:
        tokenizer = make_tokenizer(args, scratch)
        data = os.path.join(scratch, "data")
        run([args.binary, "prepare", "--objective", "causal_lm", "--tokenizer", tokenizer, "--input", args.corpus,
             "--out", data, "--max-seq-length", str(args.length), "--validation-fraction", "0"], "swiftbert prepare")
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
        print(f"{cpu}; sequences of {args.length} tokens, batch {args.batch}, {args.steps} timed steps", flush=True)
        for shape in args.shapes:
            rounds = []
            for index in range(args.rounds):
                result = {}
                systems = [("pytorch", lambda: pytorch_train(args, shape, tokenizer)),
                           ("swiftbert 1 rank", lambda: swiftbert_train(args, shape, data, 1, scratch)),
                           ("swiftbert 2 ranks", lambda: swiftbert_train(args, shape, data, 2, scratch))]
                for name, measure in (systems if index % 2 == 0 else list(reversed(systems))):
                    result[name] = measure()
                rounds.append({name: result[name] for name, _ in systems})
            report(f"GPT-2 {shape} training", "tokens/s", rounds, "pytorch")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
