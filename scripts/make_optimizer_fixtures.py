#!/usr/bin/env python3
"""Writes Tests/TrainingTests/Fixtures/optimizer.json: reference values for SwiftBERT's optimizers,
gradient clipping and learning-rate schedules, computed independently of SwiftBERT.

- AdamW with bias correction: torch.optim.AdamW (float64, so the reference is exact to far below the
  float32 rounding of the Swift implementation), decay mask via two parameter groups.
- AdamW without bias correction: Google BERT's AdamWeightDecayOptimizer formula, in numpy float64.
- LAMB (You et al. 2019, with bias correction and without), in numpy float64: per-tensor trust
  ratio ||w|| / ||update||, 1 when either norm is 0.
- Gradient clipping: torch.nn.utils.clip_grad_norm_ before the AdamW step.
- Schedules: transformers.get_{linear,cosine,constant}_schedule_with_warmup and
  get_cosine_with_min_lr_schedule_with_warmup; linear decay to a floor (no transformers function)
  in plain Python.

Inputs (initial parameters, per-step gradients) are float32 values so both sides start from the same
numbers. Run: /work/venv/bin/python scripts/make_optimizer_fixtures.py
"""
import json
import math
import os

import numpy as np
import torch
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_cosine_with_min_lr_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "TrainingTests", "Fixtures", "optimizer.json")

STEPS = 5
rng = np.random.default_rng(20190401)

# Tensors of assorted sizes (not multiples of 16, to exercise vector tails) with a decay mask in the
# spirit of BERT: matrices decay, LayerNorm weights and biases do not. One all-zero tensor checks the
# LAMB trust ratio of 1 when ||w|| = 0.
SHAPES = [
    ("embeddings.weight", 67, True),
    ("layernorm.weight", 19, False),
    ("layernorm.bias", 19, False),
    ("dense.weight", 150, True),
    ("dense.bias", 33, False),
    ("zero.weight", 21, True),
]


def f32(a):
    return np.asarray(a, dtype=np.float32)


def make_tensors():
    tensors = []
    for name, n, decays in SHAPES:
        if name.startswith("zero"):
            w = np.zeros(n, dtype=np.float32)
        else:
            w = f32(rng.uniform(0.5, 1.5, n) * rng.choice([-1.0, 1.0], n))
        tensors.append((name, w, decays))
    return tensors


TENSORS = make_tensors()
GRADS = [[f32(rng.normal(0.0, 0.05, w.size)) for (_, w, _) in TENSORS] for _ in range(STEPS)]
# The zero tensor gets gradients of one sign, so its parameters move steadily away from 0 instead of
# cancelling to tiny values whose relative error says nothing about the optimizer.
for step in GRADS:
    step[-1] = f32(np.abs(step[-1]) + 0.01)
# One gradient step with a large norm, so that clipping engages in the clipped case.
GRADS[2] = [g * np.float32(40.0) for g in GRADS[2]]


def torch_adamw(lr, betas, eps, wd, max_grad_norm=None):
    params = [torch.tensor(w.astype(np.float64), requires_grad=True) for (_, w, _) in TENSORS]
    decay = [p for p, (_, _, d) in zip(params, TENSORS) if d]
    no_decay = [p for p, (_, _, d) in zip(params, TENSORS) if not d]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=betas, eps=eps)
    history, norms = [], []
    for step in range(STEPS):
        for p, g in zip(params, GRADS[step]):
            p.grad = torch.tensor(g.astype(np.float64))
        if max_grad_norm is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm)))
        opt.step()
        history.append([float(x) for p in params for x in p.detach().numpy()])
    return history, norms


def google_adam_weight_decay(lr, betas, eps, wd):
    """BERT's AdamWeightDecayOptimizer (optimization.py): no bias correction, decay added to the update."""
    b1, b2 = betas
    ws = [w.astype(np.float64) for (_, w, _) in TENSORS]
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    history = []
    for step in range(STEPS):
        for i, (_, _, decays) in enumerate(TENSORS):
            g = GRADS[step][i].astype(np.float64)
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            update = ms[i] / (np.sqrt(vs[i]) + eps)
            if decays:
                update = update + wd * ws[i]
            ws[i] = ws[i] - lr * update
        history.append([float(x) for w in ws for x in w])
    return history


def lamb(lr, betas, eps, wd, bias_correction):
    b1, b2 = betas
    ws = [w.astype(np.float64) for (_, w, _) in TENSORS]
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    history = []
    for step in range(STEPS):
        t = step + 1
        for i, (_, _, decays) in enumerate(TENSORS):
            g = GRADS[step][i].astype(np.float64)
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            m_hat = ms[i] / (1 - b1 ** t) if bias_correction else ms[i]
            v_hat = vs[i] / (1 - b2 ** t) if bias_correction else vs[i]
            update = m_hat / (np.sqrt(v_hat) + eps)
            if decays:
                update = update + wd * ws[i]
            w_norm = np.linalg.norm(ws[i])
            u_norm = np.linalg.norm(update)
            trust = w_norm / u_norm if (w_norm > 0 and u_norm > 0) else 1.0
            ws[i] = ws[i] - lr * trust * update
        history.append([float(x) for w in ws for x in w])
    return history


def schedules():
    total, warmup, base = 100, 10, 1.0
    steps = list(range(0, total + 1))

    def hf(make, **kw):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
        sched = make(opt, **kw)
        return [sched.lr_lambdas[0](s) * base for s in steps]

    def linear_floor(min_ratio):
        out = []
        for s in steps:
            if s < warmup:
                out.append(base * s / warmup)
            else:
                progress = (s - warmup) / (total - warmup)
                out.append(base * (min_ratio + (1 - min_ratio) * max(0.0, 1 - progress)))
        return out

    return {
        "base_learning_rate": base,
        "warmup_steps": warmup,
        "total_steps": total,
        "steps": steps,
        "linear": hf(get_linear_schedule_with_warmup, num_warmup_steps=warmup, num_training_steps=total),
        "cosine": hf(get_cosine_schedule_with_warmup, num_warmup_steps=warmup, num_training_steps=total),
        "cosine_min_lr_ratio_0.1": hf(get_cosine_with_min_lr_schedule_with_warmup,
                                      num_warmup_steps=warmup, num_training_steps=total, min_lr_rate=0.1),
        "constant": hf(get_constant_schedule_with_warmup, num_warmup_steps=warmup),
        "linear_min_lr_ratio_0.2": linear_floor(0.2),
    }


def main():
    lr, betas, eps, wd = 1e-2, (0.9, 0.999), 1e-6, 0.01
    adamw, _ = torch_adamw(lr, betas, eps, wd)
    clipped, norms = torch_adamw(lr, betas, eps, wd, max_grad_norm=1.0)
    fixture = {
        "generator": "scripts/make_optimizer_fixtures.py (torch %s)" % torch.__version__,
        "tensors": [{"name": n, "count": int(w.size), "decays": d} for (n, w, d) in TENSORS],
        "initial": [float(x) for (_, w, _) in TENSORS for x in w],
        "gradients": [[float(x) for g in step for x in g] for step in GRADS],
        "hyperparameters": {"learning_rate": lr, "beta1": betas[0], "beta2": betas[1],
                            "epsilon": eps, "weight_decay": wd},
        "cases": {
            "adamw_bias_correction": adamw,
            "adamw_no_bias_correction": google_adam_weight_decay(lr, betas, eps, wd),
            "lamb_bias_correction": lamb(lr, betas, eps, wd, True),
            "lamb_no_bias_correction": lamb(lr, betas, eps, wd, False),
            "adamw_bias_correction_clip_1.0": clipped,
        },
        "clip_norms_before_clipping": norms,
        "schedules": schedules(),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
