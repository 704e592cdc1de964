#!/usr/bin/env python3
"""A GPT-2 checkpoint SwiftBERT trained, read by transformers: it loads in GPT2LMHeadModel.from_pretrained with no
missing, unexpected or mismatched keys, AutoTokenizer reads its tokenizer, and transformers' greedy `generate`
writes the same text and tokens as `swiftbert generate` for each prompt.

A LoRA checkpoint (adapter_config.json; a causal_lm run with peft.method lora) is read by peft instead:
PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(base), checkpoint), the base being --base or the adapter's
base_model_name_or_path; every tensor of adapter_model.safetensors must be loaded into the PeftModel, with its values,
and peft's greedy `generate` must give `swiftbert generate --model checkpoint`'s tokens and text.

Run:  venv/bin/python scripts/check_gpt2_checkpoint.py runs/gpt2-quickstart/checkpoints/step-00000200 \
          --prompt "And God said" --prompt "In the beginning" --max-new-tokens 40 [--base DIR]
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory")
    parser.add_argument("--prompt", action="append", required=True)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "swiftbert"))
    parser.add_argument("--base", help="a LoRA checkpoint's base model (default: its base_model_name_or_path)")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel
    adapter_config = os.path.join(args.directory, "adapter_config.json")
    base = args.directory
    if os.path.exists(adapter_config):
        with open(adapter_config) as f:
            base = args.base or json.load(f)["base_model_name_or_path"]
    model, info = GPT2LMHeadModel.from_pretrained(base, output_loading_info=True, attn_implementation="eager")
    problems = {key: info[key] for key in ["missing_keys", "unexpected_keys", "mismatched_keys"] if info[key]}
    if base != args.directory:
        model, adapter_problems = load_adapter(model, args.directory)
        problems.update(adapter_problems)
    tokenizer = AutoTokenizer.from_pretrained(args.directory)
    model.eval()
    command = [args.binary, "generate", "--model", args.directory, "--max-new-tokens", str(args.max_new_tokens), "--json"]
    if args.base:
        command += ["--base", args.base]
    ours = subprocess.run(command + args.prompt, capture_output=True, text=True, check=True)
    ours = [json.loads(line) for line in ours.stdout.splitlines()]
    equal = True
    for prompt, generated in zip(args.prompt, ours):
        text = generated["generated_text"]
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                                 do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
        theirs = tokenizer.decode(out[0], skip_special_tokens=True)
        same = theirs == text and out[0, ids.shape[1]:].tolist() == generated["tokens"]
        equal &= same
        print(f"{'equal' if same else 'DIFFER'}: {prompt!r}\n  transformers: {theirs!r}\n  swiftbert:    {text!r}")
    print(f"loading info problems: {problems or 'none'}; tokenizer {type(tokenizer).__name__}; "
          f"greedy text {'equal' if equal else 'DIFFERS'} for {len(args.prompt)} prompts")
    sys.exit(0 if equal and not problems else 1)


def load_adapter(model, directory):
    """PeftModel.from_pretrained of a LoRA directory, and what of its file did not arrive in the model."""
    import torch
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file
    model = PeftModel.from_pretrained(model, directory)
    saved = load_file(os.path.join(directory, "adapter_model.safetensors"))
    loaded = get_peft_model_state_dict(model)
    problems = {}
    if set(saved) != set(loaded):
        problems["adapter_keys"] = sorted(set(saved) ^ set(loaded))
    differing = [key for key in saved if key in loaded and not torch.equal(saved[key], loaded[key])]
    if differing:
        problems["adapter_values"] = differing
    print(f"peft loaded {len(loaded)} adapter tensors ({model.peft_config['default'].target_modules}, r {model.peft_config['default'].r})")
    return model, problems


if __name__ == "__main__":
    main()
