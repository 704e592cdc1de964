#!/usr/bin/env python3
"""Reference fixtures for SwiftBERT's GPT-2, computed with transformers 5.24's GPT2LMHeadModel + torch 2.13 on CPU.

Run:  venv/bin/python scripts/make_gpt2_fixtures.py
Writes Tests/TransformerTests/Fixtures/gpt2/lm.safetensors, then loads it back and recomputes it; and
Tests/TransformerTests/Fixtures/gpt2/tiny/ (the same model as GPT2LMHeadModel.save_pretrained writes it, with
eos_token_id 5) with generate.json: transformers' greedy `generate` on it (GENERATE_PROMPTS, left-padded with
pad_token_id = eos_token_id and the attention mask, max_new_tokens GENERATE_TOKENS), with the cache and without
(use_cache=False), which agree: per prompt, the new tokens up to and including the first eos (the rest is padding).

And Tests/TransformerTests/Fixtures/gpt2/tiny-bpe/: a random GPT2LMHeadModel (vocab 1200, n_positions 32, n_embd 32,
2 layers, 4 heads) with the byte-level BPE tokenizer of Tests/DataTests/Fixtures/bpe (tokenizer.json, saved through
PreTrainedTokenizerFast) and eos_token_id = <|endoftext|>'s id, plus text-generate.json: for each of TEXT_PROMPTS,
transformers' greedy generate (max_new_tokens TEXT_TOKENS) and the prompt + tokenizer.decode(new tokens,
skip_special_tokens=True), what `swiftbert generate --json` must print as generated_text.

    venv/bin/python scripts/make_gpt2_fixtures.py --check-directory DIR
checks a directory SwiftBERT wrote instead (see check_directory).

The model: GPT2LMHeadModel, vocab 61, n_positions 16, n_embd 32, n_layer 2, n_head 4, n_inner null (128),
gelu_new, every dropout 0, eager attention, float32, in train() mode; every parameter random (biases and
LayerNorm gains too, so that none can be wrong unnoticed); the LM head is tied to transformer.wte.weight.
The batch: 3 sequences of T = 12 tokens, right-padded (lengths 12, 9, 6; pad id 0), attention_mask 1 on real
tokens; labels = input_ids with -100 on the padding. transformers' loss: position t predicts labels[t + 1],
mean over the counted positions (8 + 5 + 11 = 24 here: (12-1) + (9-1) + (6-1)).

Tensors (little-endian):
  param.<name>   F32   every parameter as transformers' save_pretrained writes it (transformer.wte.weight,
                       transformer.h.0.attn.c_attn.weight [32, 96] (Conv1D: [in, out]), ...; lm_head is tied and
                       not written)
  input.input_ids, input.attention_mask, input.labels   I64 [3, 12]
  expect.logits  F32 [3, 12, 61]   (compare at real tokens only: padded rows follow the mask)
  expect.loss    F32 [1]           the mean loss
  expect.count   I64 [1]           the counted positions
  grad.<name>    F32   d(loss)/d(parameter) for every parameter (transformer.wte.weight's includes the head's)

lm-long.safetensors: the same tensors for sequences longer than SwiftBERT's 64-row causal attention blocks
(LONG_LENGTHS in T = 150, n_positions 160), so that blocks of every kind (full, partial, on padding) are checked.
"""

import os
import sys

import torch
from safetensors.torch import load_file, save_file

import transformers
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_transformer_fixtures import randomize  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "TransformerTests", "Fixtures", "gpt2")
LENGTHS = [12, 9, 6]
T = 12
LONG_LENGTHS = [150, 97]
LONG_T = 150
TINY = os.path.join(OUT, "tiny")
GENERATE_PROMPTS = [[7, 11, 13], [42], [3, 1, 4, 1, 5, 9], [2, 7, 18, 28]]
GENERATE_TOKENS = 9
EOS = 5

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()


def model_and_inputs(seed=1624, lengths=LENGTHS, T=T, positions=16):
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=61, n_positions=positions, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="eager")
    model = GPT2LMHeadModel(config)
    randomize(model, seed + 1, 0.3)
    generator = torch.Generator().manual_seed(seed + 2)
    ids = torch.zeros(len(lengths), T, dtype=torch.int64)
    mask = torch.zeros(len(lengths), T, dtype=torch.int64)
    for b, length in enumerate(lengths):
        ids[b, :length] = torch.randint(1, config.vocab_size, (length,), generator=generator)
        mask[b, :length] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return model, {"input_ids": ids, "attention_mask": mask, "labels": labels}


def run(model, inputs):
    model.train()
    model.zero_grad(set_to_none=True)
    outputs = model(**inputs)
    outputs.loss.backward()
    return outputs


def main():
    os.makedirs(OUT, exist_ok=True)
    again = write_lm("lm.safetensors", {})
    write_lm("lm-long.safetensors", {"lengths": LONG_LENGTHS, "T": LONG_T, "positions": 160})
    write_generation(again)
    write_text_generation()


def write_lm(file_name, shape):
    """The model's parameters, inputs, logits, loss and gradients; returns the model rebuilt from the file."""
    lengths = shape.get("lengths", LENGTHS)
    model, inputs = model_and_inputs(**shape)
    outputs = run(model, inputs)
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight" and not k.endswith(".attn.bias")}
    tensors = {"param." + k: v.detach().contiguous() for k, v in state.items()}
    for name, parameter in model.named_parameters():
        tensors["grad." + name] = parameter.grad.detach().contiguous()
    for key, value in inputs.items():
        tensors["input." + key] = value.contiguous()
    tensors["expect.logits"] = outputs.logits.detach().contiguous()
    tensors["expect.loss"] = outputs.loss.detach().reshape(1)
    tensors["expect.count"] = torch.tensor([sum(length - 1 for length in lengths)])
    path = os.path.join(OUT, file_name)
    save_file(tensors, path, metadata={"config": model.config.to_json_string()})
    print(f"{path}: loss {outputs.loss.item():.6f}, {len(state)} parameters, {os.path.getsize(path)} bytes")

    # Verification: the file's parameters give the file's outputs again.
    loaded = load_file(path)
    again, inputs = model_and_inputs(**shape)
    with torch.no_grad():
        for name, parameter in again.named_parameters():
            parameter.copy_(loaded["param." + name])
    outputs = run(again, {k[len("input."):]: v for k, v in loaded.items() if k.startswith("input.")})
    assert torch.equal(outputs.logits, loaded["expect.logits"]) and torch.equal(outputs.loss.reshape(1), loaded["expect.loss"])
    for name, parameter in again.named_parameters():
        assert torch.equal(parameter.grad, loaded["grad." + name]), name
        assert parameter.grad.abs().max() > 0, f"{name}: zero gradient"
    print("verified: logits, loss and every gradient recomputed")
    return again


TEXT_PROMPTS = ["In the beginning God", "def f(x):", "中文 text"]
TEXT_TOKENS = 12


def write_text_generation():
    import json
    import shutil
    from transformers import PreTrainedTokenizerFast
    directory = os.path.join(OUT, "tiny-bpe")
    shutil.rmtree(directory, ignore_errors=True)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=os.path.join(ROOT, "Tests", "DataTests", "Fixtures", "bpe", "tokenizer.json"),
                                        eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(2718)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=eos, eos_token_id=eos, attn_implementation="eager")
    model = GPT2LMHeadModel(config)
    randomize(model, 2719, 0.3)
    model.generation_config.pad_token_id = eos
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    model.eval()
    results = []
    for prompt in TEXT_PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=TEXT_TOKENS, do_sample=False, eos_token_id=eos, pad_token_id=eos)
        new = out[0, ids["input_ids"].shape[1]:].tolist()
        results.append({"prompt": prompt, "tokens": new,
                        "generated_text": prompt + tokenizer.decode(new, skip_special_tokens=True)})
    with open(os.path.join(OUT, "text-generate.json"), "w") as f:
        json.dump({"max_new_tokens": TEXT_TOKENS, "results": results}, f, ensure_ascii=False)
        f.write("\n")
    print(f"tiny-bpe: {sorted(os.listdir(directory))}; text-generate.json: {[r['generated_text'] for r in results]}")


def write_generation(model):
    import json
    model.config.eos_token_id = EOS
    model.config.bos_token_id = EOS
    model.generation_config.eos_token_id = EOS
    model.generation_config.pad_token_id = EOS
    model.save_pretrained(TINY)
    model.eval()
    longest = max(map(len, GENERATE_PROMPTS))
    ids = torch.tensor([[EOS] * (longest - len(p)) + p for p in GENERATE_PROMPTS])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in GENERATE_PROMPTS])
    results = {}
    for use_cache in [True, False]:
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=GENERATE_TOKENS, do_sample=False,
                                 use_cache=use_cache, eos_token_id=EOS, pad_token_id=EOS)
        new = out[:, longest:].tolist()
        results[use_cache] = [row[:row.index(EOS) + 1] if EOS in row else row for row in new]
    assert results[True] == results[False], results
    with open(os.path.join(OUT, "generate.json"), "w") as f:
        json.dump({"prompts": GENERATE_PROMPTS, "max_new_tokens": GENERATE_TOKENS, "eos_token_id": EOS,
                   "greedy": results[True]}, f)
        f.write("\n")
    print(f"generate.json: {results[True]}")


def check_directory(directory):
    """A directory SwiftBERT wrote (GPT2_SAVE_DIRECTORY=DIR swift test --filter GPT2GenerationTests/testSavedDirectoryLoadsBack)
    loads in GPT2LMHeadModel.from_pretrained with no missing or unexpected keys and generates generate.json's tokens."""
    import json
    model, info = GPT2LMHeadModel.from_pretrained(directory, output_loading_info=True, attn_implementation="eager")
    problems = {key: info[key] for key in ["missing_keys", "unexpected_keys", "mismatched_keys"] if info[key]}
    with open(os.path.join(OUT, "generate.json")) as f:
        expected = json.load(f)
    prompts, eos = expected["prompts"], expected["eos_token_id"]
    longest = max(map(len, prompts))
    ids = torch.tensor([[eos] * (longest - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    model.eval()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=expected["max_new_tokens"],
                             do_sample=False, eos_token_id=eos, pad_token_id=eos)
    new = [row[:row.index(eos) + 1] if eos in row else row for row in out[:, longest:].tolist()]
    print(f"loading info problems: {problems or 'none'}; greedy tokens {'equal' if new == expected['greedy'] else 'DIFFER'}")
    sys.exit(0 if not problems and new == expected["greedy"] else 1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-directory":
        check_directory(sys.argv[2])
    else:
        main()
