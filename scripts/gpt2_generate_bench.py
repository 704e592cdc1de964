#!/usr/bin/env python3
"""`swiftbert generate` against transformers' `generate` (with its cache) on PyTorch 2.13 CPU, side by side.

The model: GPT2LMHeadModel of GPT-2 124M's shape (n_embd 768, 12 layers, 12 heads, vocab 50257, 1024 positions),
random weights (transformers' init), saved once with a byte-level BPE tokenizer trained by `tokenizers` on
../shared/corpora/kjv (vocab 8,000; ids above it are never in a prompt but the model may produce them). Prompts:
--batch texts of the King James Bible cut to exactly --prompt-tokens tokens. Greedy decoding.

Both sides are timed as wall time of generating N new tokens minus that of generating 1 (the load and the prompt's
pass cancel out), for N in --new-tokens: the marginal seconds per new token, whose growth with N shows the
attention's share (the cache makes every other cost per token constant). SwiftBERT runs as a process
(`swiftbert generate --json`, --threads), transformers in a worker process with torch.set_num_threads(--threads).
Rounds alternate the order; ratios are within a round, medians over rounds.

Run:  venv/bin/python scripts/gpt2_generate_bench.py --batch 1 8 --rounds 3
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
    from transformers import AutoTokenizer, GPT2LMHeadModel
    torch.set_num_threads(args.threads)
    model = GPT2LMHeadModel.from_pretrained(args.model, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    texts = json.loads(args.texts)
    ids = torch.tensor([tokenizer(text)["input_ids"] for text in texts])
    results = {}
    for new in [1] + args.new_tokens:
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                                 do_sample=False, use_cache=True, pad_token_id=50256)
        results[new] = time.perf_counter() - start
        assert out.shape[1] == ids.shape[1] + new
    print(json.dumps(results))


def swiftbert(args, texts, new):
    command = [args.binary, "generate", "--model", args.model, "--max-new-tokens", str(new), "--threads", str(args.threads),
               "--json"] + texts
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"swiftbert generate failed: {proc.stderr[-2000:]}")
    lengths = [len(json.loads(line)["tokens"]) for line in proc.stdout.splitlines()]
    if lengths != [new] * len(texts):
        print(f"  (note: generated {lengths}, an end of text came early)", flush=True)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=os.path.join(ROOT, "..", "shared", "corpora", "kjv", "kjv-chapters.txt"))
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "swiftbert"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory(prefix="gpt2-bench-") as directory:
        prepare(directory, args.corpus)
        args.model = directory
        for batch in args.batch:
            texts = prompts(directory, args.corpus, batch, args.prompt_tokens)
            print(f"\n[batch {batch}] prompts of {args.prompt_tokens} tokens; marginal seconds per new token "
                  f"(N new tokens minus 1, divided by N - 1)", flush=True)
            rounds = []
            for r in range(args.rounds):
                def ours():
                    base = swiftbert(args, texts, 1)
                    return {n: (swiftbert(args, texts, n) - base) / (n - 1) for n in args.new_tokens}

                def theirs():
                    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "--model", directory,
                                           "--threads", str(args.threads), "--texts", json.dumps(texts), "--new-tokens"]
                                          + [str(n) for n in args.new_tokens], capture_output=True, text=True)
                    if proc.returncode != 0:
                        sys.exit(proc.stderr[-2000:])
                    times = {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
                    return {n: (times[n] - times[1]) / (n - 1) for n in args.new_tokens}
                order = [("swiftbert", ours), ("transformers", theirs)]
                result = dict((name, run()) for name, run in (order if r % 2 == 0 else order[::-1]))
                rounds.append(result)
                print(f"  round {r + 1}: " + "; ".join(
                    f"N={n}: swiftbert {1000 * result['swiftbert'][n]:.1f} ms, transformers {1000 * result['transformers'][n]:.1f} ms"
                    for n in args.new_tokens) + f"; load average {os.getloadavg()[0]:.1f}", flush=True)
            for n in args.new_tokens:
                ours_ms = statistics.median(1000 * r["swiftbert"][n] for r in rounds)
                theirs_ms = statistics.median(1000 * r["transformers"][n] for r in rounds)
                ratios = [r["transformers"][n] / r["swiftbert"][n] for r in rounds]
                print(f"  N={n}: swiftbert {ours_ms:.1f} ms/token ({batch * 1000 / ours_ms:.1f} tokens/s), transformers "
                      f"{theirs_ms:.1f} ms/token; tokens/s ratio {statistics.median(ratios):.2f} "
                      f"(min {min(ratios):.2f}, max {max(ratios):.2f})", flush=True)


if __name__ == "__main__":
    main()
