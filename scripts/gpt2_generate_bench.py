#!/usr/bin/env python3
"""`swiftbert generate` against transformers' `generate` (with its cache) on PyTorch 2.13 CPU, side by side.

The model: GPT2LMHeadModel of GPT-2 124M's shape (n_embd 768, 12 layers, 12 heads, vocab 50257, 1024 positions),
random weights (transformers' init), saved once with a byte-level BPE tokenizer trained by `tokenizers` on
../shared/corpora/kjv (vocab 8,000; ids above it are never in a prompt but the model may produce them). Prompts:
--batch texts of the King James Bible cut to exactly --prompt-tokens tokens. Greedy decoding, --new-tokens tokens.

Each side times every step of one generation: SwiftBERT with `generate --timings` (the seconds between one new
token and the next), transformers with a logits processor that notes the time at each step (the same interval:
one forward pass over the cache and the choice of a token). A step's time is thus measured directly, without
start-up, loading or the prompt's pass; tokens/s = batch / median step time. The per-step times against the
position show how a token's cost grows with the tokens before it (attention over the cache; every other cost
is constant). The greedy tokens of both sides are compared (up to an end of text).
SwiftBERT runs as a process (--threads), transformers in a worker process with torch.set_num_threads(--threads).
Rounds alternate the order; ratios are within a round, medians over rounds.

Run:  venv/bin/python scripts/gpt2_generate_bench.py --batch 1 8 --rounds 3 [--out bench/generate.json]
      venv/bin/python scripts/gpt2_generate_bench.py --plot bench/generate.json docs/generation.png
      (the plot needs matplotlib in the venv)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
END_OF_TEXT = 50256


def prepare(directory, corpus):
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train([corpus], vocab_size=8000, show_progress=False)
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(attn_implementation="eager"))
    model.save_pretrained(directory)
    PreTrainedTokenizerFast(tokenizer_file=os.path.join(directory, "tokenizer.json")).save_pretrained(directory)


def prompts(directory, corpus, batch, length):
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
    texts = []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            ids = tokenizer.encode(line.strip()).ids
            if len(ids) >= length:
                text = tokenizer.decode(ids[:length])
                if len(tokenizer.encode(text).ids) == length:
                    texts.append(text)
            if len(texts) == batch:
                return texts
    sys.exit("not enough long lines in the corpus")


def worker(args):
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel, LogitsProcessor, LogitsProcessorList
    torch.set_num_threads(args.threads)
    model = GPT2LMHeadModel.from_pretrained(args.model, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    ids = torch.tensor([tokenizer(text)["input_ids"] for text in json.loads(args.texts)])

    class Clock(LogitsProcessor):
        def __init__(self):
            self.times = []

        def __call__(self, input_ids, scores):
            self.times.append(time.perf_counter())
            return scores

    clock = Clock()
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new_tokens,
                             min_new_tokens=args.new_tokens, do_sample=False, use_cache=True, pad_token_id=END_OF_TEXT,
                             logits_processor=LogitsProcessorList([clock]))
    times = [start] + clock.times
    steps = [b - a for a, b in zip(times, times[1:])]
    print(json.dumps({"prompt_seconds": steps[0], "step_seconds": steps[1:],
                      "tokens": out[:, ids.shape[1]:].tolist()}))


def swiftbert(args, texts):
    command = [args.binary, "generate", "--model", args.model, "--max-new-tokens", str(args.new_tokens), "--threads",
               str(args.threads), "--json", "--timings"] + texts
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"swiftbert generate failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stderr.strip().splitlines()[-1])
    result["tokens"] = [json.loads(line)["tokens"] for line in proc.stdout.splitlines()]
    return result


def transformers(args, texts):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "--model", args.model, "--threads",
                           str(args.threads), "--texts", json.dumps(texts), "--new-tokens", str(args.new_tokens)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def same_tokens(ours, theirs):
    """Sequences whose greedy tokens agree up to SwiftBERT's end of text (transformers, held to --new-tokens by
    min_new_tokens, takes the next most likely token there)."""
    def before_end(tokens):
        return tokens[:tokens.index(END_OF_TEXT)] if END_OF_TEXT in tokens else tokens
    return sum(before_end(a) == b[:len(before_end(a))] for a, b in zip(ours, theirs))


def bench(args):
    results = {"threads": args.threads, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
               "cpu": cpu_name(), "batches": {}}
    with tempfile.TemporaryDirectory(prefix="gpt2-bench-") as directory:
        prepare(directory, args.corpus)
        args.model = directory
        for batch in args.batch:
            texts = prompts(directory, args.corpus, batch, args.prompt_tokens)
            print(f"\n[batch {batch}] prompts of {args.prompt_tokens} tokens, {args.new_tokens} new tokens; "
                  f"milliseconds per step (one new token per sequence)", flush=True)
            rounds = []
            for r in range(args.rounds):
                order = [("swiftbert", swiftbert), ("transformers", transformers)]
                result = {name: run(args, texts) for name, run in (order if r % 2 == 0 else order[::-1])}
                ours, theirs = result["swiftbert"], result["transformers"]
                result["ratio"] = statistics.median(theirs["step_seconds"]) / statistics.median(ours["step_seconds"])
                result["same_tokens"] = same_tokens(ours["tokens"], theirs["tokens"])
                rounds.append(result)
                print(f"  round {r + 1}: swiftbert {1000 * statistics.median(ours['step_seconds']):.1f} ms, transformers "
                      f"{1000 * statistics.median(theirs['step_seconds']):.1f} ms (medians over "
                      f"{len(ours['step_seconds'])} and {len(theirs['step_seconds'])} steps); ratio "
                      f"{result['ratio']:.2f}; greedy tokens identical for {result['same_tokens']} of {batch}; "
                      f"load average {os.getloadavg()[0]:.1f}", flush=True)
            summary = {}
            for name in ("swiftbert", "transformers"):
                step = statistics.median(statistics.median(r[name]["step_seconds"]) for r in rounds)
                summary[name] = {"ms_per_step": 1000 * step, "tokens_per_second": batch / step}
                # The curve: each position's step time, median over the rounds.
                columns = zip(*(r[name]["step_seconds"] for r in rounds))
                summary[name]["curve_ms"] = [1000 * statistics.median(column) for column in columns]
            ratios = [r["ratio"] for r in rounds]
            summary["ratio"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
            results["batches"][str(batch)] = summary
            ours, theirs = summary["swiftbert"], summary["transformers"]
            quarter = len(ours["curve_ms"]) // 4
            growth = {name: statistics.median(summary[name]["curve_ms"][-quarter:])
                      / statistics.median(summary[name]["curve_ms"][:quarter]) for name in ("swiftbert", "transformers")}
            print(f"  batch {batch}: swiftbert {ours['ms_per_step']:.1f} ms per step ({ours['tokens_per_second']:.1f} "
                  f"tokens/s), transformers {theirs['ms_per_step']:.1f} ms ({theirs['tokens_per_second']:.1f} tokens/s); "
                  f"tokens/s ratio {summary['ratio']['median']:.2f} (min {summary['ratio']['min']:.2f}, max "
                  f"{summary['ratio']['max']:.2f}); last quarter of the steps against the first: swiftbert "
                  f"{growth['swiftbert']:.2f}x, transformers {growth['transformers']:.2f}x", flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
        print(f"\nwrote {args.out}")


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def plot(results_path, image_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(results_path) as f:
        results = json.load(f)
    batches = results["batches"]
    figure, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 4), squeeze=False)
    for axis, (batch, summary) in zip(axes[0], batches.items()):
        for name, colour in (("swiftbert", "#d9601a"), ("transformers", "#4a6fa5")):
            curve = summary[name]["curve_ms"]
            positions = range(results["prompt_tokens"] + 1, results["prompt_tokens"] + 1 + len(curve))
            axis.plot(positions, curve, color=colour, linewidth=1,
                      label=f"{name}: {summary[name]['tokens_per_second']:.1f} tokens/s")
        axis.set_title(f"batch {batch}: tokens/s ratio {summary['ratio']['median']:.2f}")
        axis.set_xlabel("position of the new token")
        axis.set_ylabel("ms per step")
        axis.set_ylim(bottom=0)
        axis.legend(loc="lower right", fontsize=8)
    figure.suptitle(f"GPT-2 124M greedy generation, {results['threads']} threads, {results['cpu']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(image_path, dpi=110)
    print(f"wrote {image_path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=os.path.join(ROOT, "..", "shared", "corpora", "kjv", "kjv-chapters.txt"))
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "swiftbert"))
    parser.add_argument("--out", help="write the results (with each side's per-step curve) to this JSON file")
    parser.add_argument("--plot", nargs=2, metavar=("RESULTS", "IMAGE"), help="plot a results file and exit")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.plot:
        return plot(*args.plot)
    bench(args)


if __name__ == "__main__":
    main()
