#!/usr/bin/env python3
"""A GPT-2 checkpoint SwiftBERT trained, read by transformers: it loads in GPT2LMHeadModel.from_pretrained with no
missing, unexpected or mismatched keys, AutoTokenizer reads its tokenizer, and transformers' greedy `generate`
writes the same text as `swiftbert generate` for each prompt.

Run:  venv/bin/python scripts/check_gpt2_checkpoint.py runs/gpt2-quickstart/checkpoints/step-00000200 \
          --prompt "And God said" --prompt "In the beginning" --max-new-tokens 40
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
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel
    model, info = GPT2LMHeadModel.from_pretrained(args.directory, output_loading_info=True, attn_implementation="eager")
    problems = {key: info[key] for key in ["missing_keys", "unexpected_keys", "mismatched_keys"] if info[key]}
    tokenizer = AutoTokenizer.from_pretrained(args.directory)
    model.eval()
    ours = subprocess.run([args.binary, "generate", "--model", args.directory, "--max-new-tokens", str(args.max_new_tokens),
                           "--json"] + args.prompt, capture_output=True, text=True, check=True)
    ours = [json.loads(line)["generated_text"] for line in ours.stdout.splitlines()]
    equal = True
    for prompt, text in zip(args.prompt, ours):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                                 do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
        theirs = tokenizer.decode(out[0], skip_special_tokens=True)
        same = theirs == text
        equal &= same
        print(f"{'equal' if same else 'DIFFER'}: {prompt!r}\n  transformers: {theirs!r}\n  swiftbert:    {text!r}")
    print(f"loading info problems: {problems or 'none'}; tokenizer {type(tokenizer).__name__}; "
          f"greedy text {'equal' if equal else 'DIFFERS'} for {len(args.prompt)} prompts")
    sys.exit(0 if equal and not problems else 1)


if __name__ == "__main__":
    main()
