#!/usr/bin/env python3
"""Plots the results of scripts/peer_bench.py: pre-training throughput of SwiftBERT and PyTorch per config.

One panel per config, each with its own linear y scale (bert-tiny runs an order of magnitude faster than
bert-small, and a shared or logarithmic axis would hide the ratios that matter). Bars: median tokens/s over
the rounds; error bars: slowest and fastest single step seen. SwiftBERT bars carry their ratio to the
PyTorch stock model and to the masked-only head, paired within rounds as peer_bench.py reports them.

Setup:  python3 -m venv venv && venv/bin/pip install 'torch==2.13.0+cpu' transformers matplotlib
        (the +cpu wheel is on PyTorch's CPU wheel index: add it with pip's --extra-index-url if pip does
        not find it; this script itself needs only matplotlib).
Run:    venv/bin/python scripts/plot_bench.py [--results bench/results.json] [--out docs/performance.png]
"""

import argparse
import json
import os
import statistics

from peer_bench import paired_ratios

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEMS = [  # (key in the results, colour); the first SwiftBERT layout is launch/local.sh's default
    ("swiftbert-ranks-per-core", "#d9601a"),
    ("swiftbert-one-rank", "#f2a65a"),
    ("pytorch-stock", "#8c8c8c"),
    ("pytorch-masked", "#3b75af"),
]


def label(key, summary, threads):
    if key.startswith("swiftbert"):
        ranks, per_rank = summary.get("ranks"), summary.get("threads_per_rank")
        if ranks and per_rank:
            return (f"SwiftBERT, {ranks} rank{'s' if ranks > 1 else ''} x {per_rank} "
                    f"thread{'s' if per_rank > 1 else ''}")
        return f"SwiftBERT ({key.split('-', 1)[1]})"
    head = "BertForPreTraining (stock)" if key == "pytorch-stock" else "masked-only MLM head"
    return f"PyTorch {head}, {summary.get('threads', threads)} threads"


def kilo(value):
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=os.path.join(ROOT, "bench", "results.json"))
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "performance.png"))
    args = parser.parse_args()
    with open(args.results) as f:
        results = json.load(f)
    summaries, settings, machine = results["summary"], results["settings"], results["machine"]

    present = [(key, colour) for key, colour in SYSTEMS if any(key in s["systems"] for s in summaries)]
    fig, axes = plt.subplots(1, len(summaries), figsize=(10, 5.2), dpi=100, squeeze=False)
    labels = {}
    for ax, s in zip(axes[0], summaries):
        systems = s["systems"]
        peak = 0
        for i, (key, colour) in enumerate(present):
            if key not in systems:
                continue
            tps = systems[key]["tokens_per_second"]
            median = tps["median"]
            bar = ax.bar(i, median, width=0.8, color=colour,
                         yerr=[[median - tps["min"]], [tps["max"] - median]],
                         error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333333"})
            labels.setdefault(key, (bar, label(key, systems[key], settings.get("threads"))))
            text = kilo(median)
            runs = [r for r in results["runs"] if r["config"] == s["config"]]
            peers = ("stock", "masked") if key.startswith("swiftbert") else ("stock",) if key == "pytorch-masked" else ()
            for peer in peers:
                paired = paired_ratios(runs, key, f"pytorch-{peer}")
                if paired:
                    text += f"\n{statistics.median(paired):.1f}x {peer}"
            ax.annotate(text, (i, max(tps["max"], median)), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7, linespacing=1.1)
            peak = max(peak, tps["max"], median)
        ax.set_ylim(0, peak * 1.3 if peak else 1)
        ax.set_title(s["name"], fontsize=10)
        ax.set_xticks([])
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", linewidth=0.4, alpha=0.5)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[0][0].set_ylabel("tokens/s (median over rounds)", fontsize=9)

    ordered = [labels[key] for key, _ in present if key in labels]
    fig.legend([bar for bar, _ in ordered], [text for _, text in ordered], loc="lower center",
               ncol=2, fontsize=8, frameon=False)
    torch_version = next((v.get("torch") for s in summaries for k, v in s["systems"].items()
                          if k.startswith("pytorch") and v.get("torch")), None)
    fig.suptitle(f"BERT pre-training step (forward, backward, clip, AdamW), batch {settings['batch']} x "
                 f"{settings['sequence_length']}\n{machine['cpu']}, {machine['cores']} cores"
                 + (f"; PyTorch {torch_version}" if torch_version else "")
                 + "; error bars: slowest/fastest step", fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
