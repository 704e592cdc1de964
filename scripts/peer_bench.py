#!/usr/bin/env python3
"""SwiftBERT's pre-training throughput against PyTorch on the same CPU, the same shapes and the same step.

One step = forward, backward, gradient clipping to the config's max_grad_norm, AdamW update, in training
mode (dropout on), on one fixed synthetic batch (B x T tokens, P masked positions per sequence with
P = min(max_predictions_per_seq, max(1, round(T * masked_lm_prob))), as Google's create_pretraining_data.py
counts them: 19 for T=128). Model and optimizer settings come from SwiftBERT's training configs.

Systems run interleaved, every round of a config running each once, in the order stock, SwiftBERT
layouts, masked and reversed in every other round, so that a machine whose speed drifts (shared hosts do,
by 30% over minutes) favours none of them:
  swiftbert-ranks-per-core  launch/local.sh bench ...            one MPI rank per core, 1 BLAS thread each
  swiftbert-one-rank        launch/local.sh --ranks 1 bench ...  one rank, all cores as BLAS threads
  pytorch-stock             BertForPreTraining(..., labels=, next_sentence_label=).loss: what users run,
                            the MLM decoder over every position (labels -100 where not masked)
  pytorch-masked            model.bert(...), the MLM head on the gathered masked positions only + NSP: the
                            best practice, the same work as SwiftBERT
Each PyTorch variant runs in its own subprocess of this script (`--worker`), so that thread settings and
peak memory are its own. Per run: median tokens/s over the timed steps; per system: the median over rounds.
Ratios are paired: SwiftBERT / peer within each round (runs minutes apart at most), then the median over
rounds.

Setup:  python3 -m venv venv && venv/bin/pip install 'torch==2.13.0+cpu' transformers matplotlib
        (the +cpu wheel is on PyTorch's CPU wheel index: add it with pip's --extra-index-url if pip does
        not find it). Tested with torch 2.13 CPU and transformers 5.24.
Build:  swift build -c release   (SwiftBERT side; not needed with --peer-only)
Run:    venv/bin/python scripts/peer_bench.py                     # tiny, mini, small; 3 rounds; bench/results.json
        venv/bin/python scripts/peer_bench.py --peer-only --configs configs/bert-tiny.json --steps 5 --repeats 1
Plot:   venv/bin/python scripts/plot_bench.py
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIGS = ["configs/bert-tiny.json", "configs/bert-mini.json", "configs/bert-small.json"]
LAYOUTS = {  # launcher arguments before the binary's own
    "ranks-per-core": [],
    "one-rank": ["--ranks", "1"],
}
PEERS = ["stock", "masked"]


def cores():
    return len(os.sched_getaffinity(0))


def summarize(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def masked_per_sequence(data, T):
    """Google's count: int(round(len(tokens) * masked_lm_prob)), at least 1, at most max_predictions_per_seq."""
    return min(data["max_predictions_per_seq"], max(1, int(round(T * data["masked_lm_prob"]))))


# ---------------------------------------------------------------- worker (one PyTorch variant, one run)

def worker(args):
    """Times one variant and prints one JSON line. Thread counts are fixed in the environment before torch
    is imported, so that OpenMP/MKL start no more threads than asked for."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import BertConfig, BertForPreTraining

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    with open(args.config) as f:
        cfg = json.load(f)
    config = BertConfig(**cfg["model"])
    if args.attn_implementation:
        config._attn_implementation = args.attn_implementation
    opt_cfg = cfg["optimizer"]
    B, T, V = args.batch, args.seq_len, config.vocab_size
    P = masked_per_sequence(cfg["data"], T)

    # The batch: fixed for the run, the same in every run with the same seed.
    g = torch.Generator().manual_seed(args.seed)
    input_ids = torch.randint(999, V, (B, T), generator=g)
    token_type_ids = torch.zeros(B, T, dtype=torch.int64)
    token_type_ids[:, T // 2:] = 1
    attention_mask = torch.ones(B, T, dtype=torch.int64)
    positions = torch.stack([(torch.randperm(T - 1, generator=g)[:P] + 1).sort().values for _ in range(B)])
    flat_positions = (positions + T * torch.arange(B).unsqueeze(1)).reshape(-1)
    masked_labels = torch.randint(999, V, (B * P,), generator=g)
    nsp_labels = torch.randint(0, 2, (B,), generator=g)
    full_labels = torch.full((B * T,), -100, dtype=torch.int64)
    full_labels[flat_positions] = masked_labels
    full_labels = full_labels.view(B, T)

    torch.manual_seed(args.seed)
    model = BertForPreTraining(config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opt_cfg["learning_rate"], betas=(opt_cfg["beta1"], opt_cfg["beta2"]),
                                  eps=opt_cfg["epsilon"], weight_decay=opt_cfg["weight_decay"])
    max_grad_norm = opt_cfg["max_grad_norm"]

    def loss_stock():
        return model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                     labels=full_labels, next_sentence_label=nsp_labels).loss

    def loss_masked():
        out = model.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        gathered = out.last_hidden_state.reshape(B * T, -1)[flat_positions]
        mlm = F.cross_entropy(model.cls.predictions(gathered), masked_labels)
        nsp = F.cross_entropy(model.cls.seq_relationship(out.pooler_output), nsp_labels)
        return mlm + nsp

    loss_fn = loss_stock if args.worker == "stock" else loss_masked
    step_seconds, loss = [], None
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        elapsed = time.perf_counter() - start
        if step >= args.warmup:
            step_seconds.append(elapsed)
    final_loss = loss.item()
    if final_loss != final_loss or abs(final_loss) == float("inf"):
        sys.exit(f"peer_bench: non-finite loss {final_loss}")

    print(json.dumps({
        "variant": args.worker,
        "config": relative(args.config),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "threads": torch.get_num_threads(),
        "global_batch": B,
        "sequence_length": T,
        "masked_per_sequence": P,
        "parameters": sum(p.numel() for p in params),
        "steps": args.steps,
        "warmup": args.warmup,
        "step_seconds": step_seconds,
        "tokens_per_second": summarize([B * T / s for s in step_seconds]),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
        "final_loss": final_loss,
    }))


# ---------------------------------------------------------------- driver

def relative(path):
    """Config paths as the repository names them (configs/bert-mini.json) when inside it."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": cores(), "logical_cpus": os.cpu_count(),
            "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "platform": platform.platform(), "python": platform.python_version()}


def parse_json_object(stdout):
    """The last top-level JSON object in stdout that starts a line (one line or pretty-printed; objects
    nested in it are skipped); launcher and MPI chatter around it is ignored."""
    decoder, found, offset, end = json.JSONDecoder(), None, 0, 0
    for line in stdout.splitlines(keepends=True):
        start = offset + len(line) - len(line.lstrip())
        if start >= end and line.lstrip().startswith("{"):
            try:
                value, stop = decoder.raw_decode(stdout, start)
                if isinstance(value, dict):
                    found, end = value, stop
            except ValueError:
                pass
        offset += len(line)
    return found


def run(label, command, env, timeout):
    """Runs one benchmark subprocess and returns its JSON object; exits with its stderr on failure."""
    print(f"peer_bench: {label} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr or ""
        sys.stderr.write(err.decode(errors="replace") if isinstance(err, bytes) else err)
        sys.exit(f"peer_bench: {label} did not finish within {timeout} s: {' '.join(command)}")
    seconds = time.perf_counter() - start
    result = parse_json_object(proc.stdout) if proc.returncode == 0 else None
    if result is None or "tokens_per_second" not in result:
        sys.stderr.write(proc.stderr)
        if proc.returncode == 0:
            sys.stderr.write(proc.stdout)
        why = (f"exit status {proc.returncode}" if proc.returncode else
               "no JSON object with tokens_per_second on stdout")
        sys.exit(f"peer_bench: {label} failed ({why}): {' '.join(command)}")
    tps = result["tokens_per_second"]
    print(f"peer_bench: {label}: {tps['median']:.0f} tok/s (min {tps['min']:.0f}, max {tps['max']:.0f}), "
          f"{seconds:.0f} s", file=sys.stderr, flush=True)
    return result, seconds


def swiftbert_command(args, layout, config):
    return (["bash", os.path.join(ROOT, "launch", "local.sh")] + LAYOUTS[layout] + ["--binary", args.swiftbert,
            "bench", "--config", config, "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--batch", str(args.batch), "--seq-len", str(args.seq_len), "--json"])


def peer_command(args, variant, config):
    command = [sys.executable, os.path.abspath(__file__), "--worker", variant, "--configs", config,
               "--threads", str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--batch", str(args.batch), "--seq-len", str(args.seq_len), "--seed", str(args.seed)]
    if args.attn_implementation:
        command += ["--attn-implementation", args.attn_implementation]
    return command


def system_summary(runs):
    """Median over rounds of the per-run medians; min/max over every timed step of every round."""
    tps = [r["result"]["tokens_per_second"] for r in runs]
    summary = {
        "tokens_per_second": {"median": statistics.median(t["median"] for t in tps),
                              "min": min(t["min"] for t in tps), "max": max(t["max"] for t in tps)},
        "round_medians": [t["median"] for t in tps],
        "peak_rss_bytes": max(r["result"].get("peak_rss_bytes", 0) for r in runs),
    }
    first = runs[0]["result"]
    if runs[0]["system"].startswith("swiftbert"):
        mfus = [r["result"]["mfu"] for r in runs if r["result"].get("mfu") is not None]
        summary.update(ranks=first.get("ranks"), threads_per_rank=first.get("threads_per_rank"),
                       mfu=statistics.median(mfus) if mfus else None)
        for key in ("flops_per_token", "sgemm_peak_gflops", "memory_floor_bytes"):
            summary[key] = first.get(key)
    else:
        summary.update(threads=first["threads"], attn_implementation=first["attn_implementation"],
                       torch=first["torch"], transformers=first["transformers"])
    return summary


def paired_ratios(runs, system, peer):
    """tokens/s of `system` over those of `peer` in the same round, for every round."""
    def by_round(name):
        return {r["round"]: r["result"]["tokens_per_second"]["median"] for r in runs if r["system"] == name}
    mine, theirs = by_round(system), by_round(peer)
    return [mine[k] / theirs[k] for k in sorted(mine) if k in theirs]


def config_summary(config, runs, layouts):
    systems = {}
    for system in [f"swiftbert-{layout}" for layout in layouts] + [f"pytorch-{peer}" for peer in PEERS]:
        mine = [r for r in runs if r["system"] == system]
        if mine:
            systems[system] = system_summary(mine)
    ratios = {}
    swift = {name: s["tokens_per_second"]["median"] for name, s in systems.items() if name.startswith("swiftbert")}
    if swift:
        best = max(swift, key=swift.get)
        default = "swiftbert-ranks-per-core" if "swiftbert-ranks-per-core" in swift else best
        ratios["best_layout"] = best
        for peer in PEERS:
            for key, system in (("best", best), ("default", default)):
                paired = paired_ratios(runs, system, f"pytorch-{peer}")
                ratios[f"{key}_vs_{peer}"] = statistics.median(paired)
                ratios[f"{key}_vs_{peer}_rounds"] = paired
    return {"config": config, "name": os.path.splitext(os.path.basename(config))[0],
            "systems": systems, "ratios": ratios}


def print_table(summaries, layouts, info):
    def num(value, fmt="{:.0f}"):
        return "-" if value is None else fmt.format(value)

    header = (["config"] + [f"SB {layout}" for layout in layouts] + ["stock", "masked"]
              + (["best/stock", "best/masked", "dflt/stock", "dflt/masked"] if layouts else [])
              + [f"MFU {layout}" for layout in layouts])
    rows = []
    for s in summaries:
        tps = {name: v["tokens_per_second"]["median"] for name, v in s["systems"].items()}
        r = s["ratios"]
        row = ([s["name"]] + [num(tps.get(f"swiftbert-{layout}")) for layout in layouts]
               + [num(tps.get("pytorch-stock")), num(tps.get("pytorch-masked"))])
        if layouts:
            row += [num(r.get(k), "{:.2f}x") for k in ("best_vs_stock", "best_vs_masked",
                                                       "default_vs_stock", "default_vs_masked")]
        row += [num(s["systems"].get(f"swiftbert-{layout}", {}).get("mfu"), "{:.1%}") for layout in layouts]
        rows.append(row)
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    m = info["machine"]
    print(f"tokens/s (median over {info['settings']['repeats']} rounds of the median over "
          f"{info['settings']['steps']} steps), batch {info['settings']['batch']} x "
          f"{info['settings']['sequence_length']}, PyTorch on {info['settings']['threads']} threads; "
          f"ratios: median over rounds of the ratio within a round")
    print(f"machine: {m['cpu']}, {m['cores']} cores; load average "
          f"{m['load_average_start'][0]:.2f} at start, {m['load_average_end'][0]:.2f} at end")
    for row in [header] + rows:
        print("  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="SwiftBERT training configs")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per config")
    parser.add_argument("--threads", type=int, default=cores(), help="PyTorch threads (default: cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attn-implementation", help="e.g. eager or sdpa (default: transformers' choice)")
    parser.add_argument("--swiftbert", default=os.path.join(ROOT, ".build", "release", "swiftbert"))
    parser.add_argument("--swiftbert-layouts", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS))
    parser.add_argument("--peer-only", action="store_true", help="PyTorch only, no SwiftBERT")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results.json"))
    parser.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        args.config = args.configs[0]
        return worker(args)

    layouts = [] if args.peer_only else args.swiftbert_layouts
    args.swiftbert = os.path.abspath(args.swiftbert)
    if layouts and not os.access(args.swiftbert, os.X_OK):
        sys.exit(f"peer_bench: {args.swiftbert} not found: build it (swift build -c release), "
                 "pass --swiftbert PATH, or run with --peer-only")
    configs = [os.path.abspath(c) for c in args.configs]
    for config in configs:
        if not os.path.isfile(config):
            sys.exit(f"peer_bench: no config {config}")
    out = os.path.abspath(args.out)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    info = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": dict(machine(), load_average_start=list(os.getloadavg())),
        "settings": {"batch": args.batch, "sequence_length": args.seq_len, "steps": args.steps,
                     "warmup": args.warmup, "repeats": args.repeats, "threads": args.threads, "seed": args.seed,
                     "attn_implementation": args.attn_implementation,
                     "swiftbert": None if args.peer_only else relative(args.swiftbert),
                     "swiftbert_layouts": layouts, "command": [os.path.basename(sys.argv[0])] + sys.argv[1:]},
    }
    runs, summaries = [], []
    for config in configs:
        name = relative(config)
        config_runs = []
        for round_ in range(args.repeats):
            order = [("pytorch-stock", peer_command(args, "stock", config))]
            order += [(f"swiftbert-{layout}", swiftbert_command(args, layout, config)) for layout in layouts]
            order += [("pytorch-masked", peer_command(args, "masked", config))]
            if round_ % 2:
                order.reverse()
            for system, command in order:
                label = f"{name} round {round_ + 1}/{args.repeats} {system}"
                load = list(os.getloadavg())
                result, seconds = run(label, command, env, args.timeout)
                if (result.get("global_batch"), result.get("sequence_length")) != (args.batch, args.seq_len):
                    print(f"peer_bench: warning: {label} ran {result.get('global_batch')} x "
                          f"{result.get('sequence_length')}, not {args.batch} x {args.seq_len}", file=sys.stderr)
                config_runs.append({"config": name, "round": round_, "system": system,
                                    "command": command, "load_average_before": load, "wall_seconds": seconds,
                                    "result": result})
        runs += config_runs
        summaries.append(config_summary(name, config_runs, layouts))

    info["machine"]["load_average_end"] = list(os.getloadavg())
    results = dict(info, summary=summaries, runs=runs)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    print_table(summaries, layouts, results)
    print(f"wrote {relative(out)}")


if __name__ == "__main__":
    main()
