#!/usr/bin/env python3
"""Peer throughput for `swiftbert prepare`: the reference BERT tokenizers on the same corpus.

Tokenizes every line of the given files and directories (what Google's create_pretraining_data.py
does before building instances) with transformers' BertTokenizer (pure Python, the same algorithm as
Google's tokenization.py) and BertTokenizerFast (Rust, batched, all cores), and prints MB/s.
Usage: data_reference_throughput.py VOCAB PATH...
"""
import os
import sys
import time

from transformers import BertTokenizer, BertTokenizerFast


def lines(paths):
    for path in paths:
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
        for name in files:
            with open(name, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if line:
                        yield line


def main():
    vocab, paths = sys.argv[1], sys.argv[2:]
    text = list(lines(paths))
    size = sum(len(t.encode("utf-8")) + 1 for t in text) / 1e6
    print(f"{len(text)} lines, {size:.1f} MB")

    fast = BertTokenizerFast(vocab_file=vocab, do_lower_case=True)
    start, cpu = time.perf_counter(), time.process_time()
    count = 0
    for i in range(0, len(text), 4096):
        count += sum(len(ids) for ids in fast(text[i:i + 4096], add_special_tokens=False)["input_ids"])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"BertTokenizerFast (Rust, batched): {count} tokens, {seconds:.1f} s wall ({size / seconds:.2f} MB/s), "
          f"{cpu:.1f} s CPU ({size / cpu:.2f} MB per CPU-second)")

    slow = BertTokenizer(vocab_file=vocab, do_lower_case=True)
    start, cpu = time.perf_counter(), time.process_time()
    count = 0
    for t in text:
        count += len(slow.convert_tokens_to_ids(slow.tokenize(t)))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"BertTokenizer (Python, as Google's tokenization.py): {count} tokens, {seconds:.1f} s wall "
          f"({size / seconds:.2f} MB/s), {cpu:.1f} s CPU ({size / cpu:.2f} MB per CPU-second)")


if __name__ == "__main__":
    main()
