#!/usr/bin/env python3
"""Reference fixtures for SwiftBERT's LoRA on GPT-2, computed with peft 0.21 + transformers 5.24 + torch 2.13 on CPU.

Run:  venv/bin/python scripts/make_gpt2_lora_fixtures.py
Writes Tests/TransformerTests/Fixtures/gpt2-lora/:
  base/                 the frozen base, as GPT2LMHeadModel.save_pretrained writes it (config.json, model.safetensors)
  adapter/              peft's save_pretrained of the CASES[0] adapter (adapter_config.json, adapter_model.safetensors)
  <case>.safetensors    one file per case of CASES, then loads each back and recomputes it

The base: GPT2LMHeadModel, vocab 100, n_positions 32, n_embd 32, n_layer 2, n_head 4, n_inner 64, gelu_new,
every dropout 0, eager attention, float32; every parameter random (make_transformer_fixtures.randomize).
Each case wraps it with get_peft_model(LoraConfig(task_type CAUSAL_LM, ...)) (peft adapts Conv1D with
fan_in_fan_out = true: lora_A (r, in), lora_B (out, r)) and sets every lora_A and lora_B to random values
(peft starts B at 0, which would leave A's gradient 0). The batch: 3 sequences of T = 12 tokens, right-padded
(lengths 12, 9, 6; pad id 0), attention_mask 1 on real tokens, labels = input_ids with -100 on the padding; the
loss is transformers' mean over the 24 counted positions, in train() mode.

Tensors of <case>.safetensors (little-endian; names are SwiftBERT's table names: peft's without
`base_model.model.`, `.default` and `base_layer.`):
  lora.<name>    F32   the adapter's tensors (transformer.h.0.attn.c_attn.lora_A.weight [4, 32], ...)
  input.input_ids, input.attention_mask, input.labels   I64 [3, 12]
  expect.logits  F32 [3, 12, 100]  (compare at real tokens only)
  expect.loss    F32 [1]
  expect.count   I64 [1]
  grad.<name>    F32   d(loss)/d(tensor) of every trainable tensor (the factors; with bias "all" every bias too)
Metadata: "config" (the base's config.json), "lora" (the LoraConfig's keys as adapter_config.json holds them).
"""

import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

import transformers
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gpt2_fixtures import run  # noqa: E402
from make_transformer_fixtures import randomize  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "TransformerTests", "Fixtures", "gpt2-lora")
LENGTHS = [12, 9, 6]
T = 12
# name, LoraConfig keyword arguments
CASES = [
    ("attn", dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"])),
    ("layer1", dict(r=2, lora_alpha=5, use_rslora=True, target_modules=["attn.c_proj", "c_fc"], layers_to_transform=[1],
                    bias="all")),
]

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()


def base_model():
    torch.manual_seed(3141)
    config = GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=4, n_inner=64, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=99, eos_token_id=99, attn_implementation="eager")
    model = GPT2LMHeadModel(config)
    randomize(model, 3142, 0.3)
    return model


def inputs():
    generator = torch.Generator().manual_seed(3143)
    ids = torch.zeros(len(LENGTHS), T, dtype=torch.int64)
    mask = torch.zeros(len(LENGTHS), T, dtype=torch.int64)
    for b, length in enumerate(LENGTHS):
        ids[b, :length] = torch.randint(1, 100, (length,), generator=generator)
        mask[b, :length] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def table_name(peft_name):
    """SwiftBERT's name of a peft parameter or adapter key."""
    return peft_name.removeprefix("base_model.model.").replace(".default", "").replace(".base_layer.", ".")


def adapted(index, settings):
    """The base wrapped with case `settings`, every LoRA factor random."""
    model = get_peft_model(base_model(), LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, **settings))
    generator = torch.Generator().manual_seed(3150 + index)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    return model


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    base_model().save_pretrained(os.path.join(OUT, "base"))
    batch = inputs()
    for index, (name, settings) in enumerate(CASES):
        model = adapted(index, settings)
        if index == 0:
            model.save_pretrained(os.path.join(OUT, "adapter"))
            os.remove(os.path.join(OUT, "adapter", "README.md"))  # peft's model card template
            # peft writes no base path for a model built in memory; name the committed base, relative to the package.
            path = os.path.join(OUT, "adapter", "adapter_config.json")
            with open(path) as f:
                adapter_config = json.load(f)
            adapter_config["base_model_name_or_path"] = "Tests/TransformerTests/Fixtures/gpt2-lora/base"
            with open(path, "w") as f:
                json.dump(adapter_config, f, indent=2, sort_keys=True)
        outputs = run(model, batch)
        tensors = {}
        for key, parameter in model.named_parameters():
            if parameter.requires_grad:
                tensors["grad." + table_name(key)] = parameter.grad.detach().contiguous()
                if ".lora_" in key:
                    tensors["lora." + table_name(key)] = parameter.detach().contiguous()
        for key, value in batch.items():
            tensors["input." + key] = value.contiguous()
        tensors["expect.logits"] = outputs.logits.detach().contiguous()
        tensors["expect.loss"] = outputs.loss.detach().reshape(1)
        tensors["expect.count"] = torch.tensor([sum(length - 1 for length in LENGTHS)])
        lora = model.peft_config["default"].to_dict()
        lora = {k: (sorted(v) if isinstance(v, set) else v) for k, v in lora.items()}
        path = os.path.join(OUT, name + ".safetensors")
        save_file(tensors, path, metadata={"config": model.base_model.model.config.to_json_string(),
                                           "lora": json.dumps(lora, default=str)})
        print(f"{path}: loss {outputs.loss.item():.6f}, {sum(k.startswith('grad.') for k in tensors)} trainable tensors, "
              f"{os.path.getsize(path)} bytes")

        # Verification: the file's tensors give the file's outputs again.
        loaded = load_file(path)
        again = adapted(index, settings)
        with torch.no_grad():
            for key, parameter in again.named_parameters():
                if ".lora_" in key:
                    parameter.copy_(loaded["lora." + table_name(key)])
        outputs = run(again, batch)
        assert torch.equal(outputs.logits, loaded["expect.logits"]) and torch.equal(outputs.loss.reshape(1), loaded["expect.loss"])
        for key, parameter in again.named_parameters():
            if parameter.requires_grad:
                assert torch.equal(parameter.grad, loaded["grad." + table_name(key)]), key
                assert parameter.grad.abs().max() > 0, f"{key}: zero gradient"
        print("verified: logits, loss and every trainable tensor's gradient recomputed")


if __name__ == "__main__":
    main()
