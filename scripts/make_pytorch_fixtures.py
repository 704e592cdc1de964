#!/usr/bin/env python3
"""Fixtures for reading `pytorch_model.bin` (torch.save's zip format) without Python.

Run:  venv/bin/python scripts/make_pytorch_fixtures.py   (torch 2.13 CPU, transformers 5.24)
Writes Tests/TransformerTests/Fixtures/pytorch/:
  dtypes.bin, dtypes.safetensors  the same tensors saved by torch.save (a state dict: F32, F16, BF16, I64,
                                  a view at a storage offset that shares its storage with another tensor)
                                  and by safetensors.torch.save_file (contiguous copies): every tensor must
                                  read back with the same dtype, shape and bytes from both.
  noncontiguous.bin               a transposed view, which the reader refuses by name.
  hf-seqcls-bin/                  ../heads/hf-seqcls with its weights as torch.save(model.state_dict())
                                  (pytorch_model.bin, no model.safetensors), as older Hugging Face
                                  directories ship them; the tokenizer files link to hf-tiny's.
Then reads every file back and checks it.
"""
import os
import shutil

import torch
from safetensors.torch import load_file, save_file
from transformers import BertForSequenceClassification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "TransformerTests", "Fixtures", "pytorch")
HEADS = os.path.join(ROOT, "Tests", "TransformerTests", "Fixtures", "heads")

torch.manual_seed(14)
os.makedirs(OUT, exist_ok=True)
big = torch.randn(3, 4)
tensors = {
    "float32": torch.randn(2, 3),
    "float16": torch.randn(3).half(),
    "bfloat16": torch.randn(2, 2).bfloat16(),
    "int64": torch.tensor([0, -1, 2**40, -(2**40)], dtype=torch.int64),
    "big": big,
    "row_one": big[1],  # storage offset 4, the storage shared with "big"
}
torch.save(tensors, os.path.join(OUT, "dtypes.bin"))
save_file({name: t.contiguous().clone() for name, t in tensors.items()}, os.path.join(OUT, "dtypes.safetensors"))
torch.save({"transposed": torch.randn(3, 4).t()}, os.path.join(OUT, "noncontiguous.bin"))

model_dir = os.path.join(OUT, "hf-seqcls-bin")
shutil.rmtree(model_dir, ignore_errors=True)
os.makedirs(model_dir)
model = BertForSequenceClassification.from_pretrained(os.path.join(HEADS, "hf-seqcls"))
torch.save(model.state_dict(), os.path.join(model_dir, "pytorch_model.bin"))
shutil.copyfile(os.path.join(HEADS, "hf-seqcls", "config.json"), os.path.join(model_dir, "config.json"))
for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
    os.symlink(os.path.join("..", "..", "hf-tiny", name), os.path.join(model_dir, name))

# Read back.
loaded = torch.load(os.path.join(OUT, "dtypes.bin"))
reference = load_file(os.path.join(OUT, "dtypes.safetensors"))
assert loaded["row_one"].storage_offset() == 4
for name, tensor in tensors.items():
    assert torch.equal(loaded[name], tensor) and torch.equal(reference[name], tensor), name
again = BertForSequenceClassification.from_pretrained(model_dir)
for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
    assert torch.equal(a, b), name
print("wrote", OUT)
