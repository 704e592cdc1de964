#!/usr/bin/env python3
"""Reference data for SwiftBERT's byte-level BPE tokenizer (GPT-2's), from the Hugging Face `tokenizers` library.

Outputs, all committed, in Tests/DataTests/Fixtures/bpe/:

  tokenizer.json       a byte-level BPE tokenizer (tokenizers' ByteLevelBPETokenizer: GPT-2's pre-tokenizer and
                       byte alphabet, no prefix space) trained by tokenizers on the repository's corpora
                       (corpus/kjv.txt and the excerpts in Tests/DataTests/Fixtures/corpora) with VOCAB_SIZE
                       tokens and the special token <|endoftext|>: OpenAI's GPT-2 files cannot be downloaded here,
                       and this one exercises the same code paths (merges of every rank, multi-byte characters).
  vocab.json, merges.txt
                       the same tokenizer as GPT-2 ships it (the model's save()).
  cases.json           hard cases (contractions, runs of spaces and newlines, tabs, letters and numbers of other
                       scripts, emoji, combining marks, <|endoftext|> inside text, every code point 0-255, text
                       decoded from invalid UTF-8 with U+FFFD) with their ids, the text decode(ids) gives, and,
                       per case, the pre-tokens of GPT-2's pattern (tokenizers' ByteLevel pre_tokenize_str);
                       plus "bytes": the decode of each single-byte token, for all 256 bytes (as byte lists,
                       since a lone byte of a multi-byte character decodes to U+FFFD).
  corpus-digests.json  for every file of the repository's corpora, its line count and per block of BLOCK_LINES lines
                       the SHA-256 of the ids (little-endian int32 per id, then int32 -1 per line).
  shared-corpus-digests.json (--shared-digests)
                       the same over every file of ../shared/corpora, for the whole-corpus check .ci/run adds.
  shared-corpus-training.json (--shared-digests)
                       what tokenizers learns from every file of ../shared/corpora with TRAINING_VOCAB_SIZE tokens
                       (min_frequency 2, <|endoftext|>): the SHA-256 of the vocab.json and merges.txt it saves, for
                       the whole-corpus check of `swiftbert vocab --bpe` (ByteLevelBPETrainerTests).

A "line" is what text.split("\\n") gives on the UTF-8 file; each line is encoded on its own.

Run:  venv/bin/python scripts/make_bpe_fixtures.py [--shared-digests]
"""

import argparse
import hashlib
import json
import os
import struct
import sys

from tokenizers import ByteLevelBPETokenizer, Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_fixtures import (ROOT, SHARED_CORPORA, corpus_lines, repository_corpus_files,  # noqa: E402
                                     shared_corpus_files)

OUT = os.path.join(ROOT, "Tests", "DataTests", "Fixtures", "bpe")
VOCAB_SIZE = 1200
TRAINING_VOCAB_SIZE = 8000
BLOCK_LINES = 200
END_OF_TEXT = "<|endoftext|>"

HARD_CASES = [
    "", " ", "  ", "a", " a", "  a", "a ", "a  ", "\n", "\n\n", " \n", "\n a", "\t\tx", "a\tb", "a \t b",
    "Hello world", "Hello  world", "Hello   world!", "  leading and trailing  ",
    "I'm don't we'll they've she'd it's you're", "I'M DON'T", "'s's 't", "rock 'n' roll", "'", "''", "'ll've",
    "1234567890", " 12 345", "3.14159", "x2 2x", "①②③ Ⅻ ¼½", "٣٤٥ ३४५",
    "naïve café résumé", "e\u0301 a\u0300", "Ελληνικά Русский עברית العربية",
    "中文测试，Debian 手册。", "日本語のテキスト", "한국어", "emoji 😀👍🏽 👨‍👩‍👧",
    "tabs\tand\nnewlines\r\nand\rreturns", "\u00a0nbsp\u2003em\u3000ideographic", "zero\u200bwidth",
    "a<|endoftext|>b", "<|endoftext|><|endoftext|>", " <|endoftext|> text", "<|endoftext", "x<|endoftext|>\u0301y",
    "def f(x):\n    return x ** 2  # comment\n", "https://example.com/a?b=c&d=e", "$100 @user #tag ~/path",
    "...!!!???", "(parenthesis) [brackets] {braces}", "snake_case camelCase", "\x00\x01\x1f\x7f",
    "".join(chr(c) for c in range(256)),
    bytes(range(128, 256)).decode("utf-8", errors="replace"),
    b"valid \xff\xfe invalid \xc3 truncated \xe2\x82 bytes \xf0\x9f\x98".decode("utf-8", errors="replace"),
]


def train():
    tokenizer = ByteLevelBPETokenizer()
    files = [os.path.join(ROOT, relative) for relative in repository_corpus_files()]
    tokenizer.train(files, vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=[END_OF_TEXT], show_progress=False)
    os.makedirs(OUT, exist_ok=True)
    tokenizer.save(os.path.join(OUT, "tokenizer.json"))
    tokenizer.save_model(OUT)  # vocab.json, merges.txt
    return Tokenizer.from_file(os.path.join(OUT, "tokenizer.json"))


def write_cases(tokenizer):
    pre = tokenizer.pre_tokenizer
    cases = []
    for text in HARD_CASES:
        ids = tokenizer.encode(text).ids
        cases.append({"text": text, "ids": ids, "decoded": tokenizer.decode(ids, skip_special_tokens=False),
                      "pre_tokens": [piece for piece, _ in pre.pre_tokenize_str(text)]})
    vocab = tokenizer.get_vocab()
    byte_tokens = []
    for byte in range(256):
        token = BYTE_TO_CHARACTER[byte]
        byte_tokens.append({"byte": byte, "id": vocab[token],
                            "decoded": list(tokenizer.decode([vocab[token]]).encode("utf-8"))})
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"cases": cases, "bytes": byte_tokens}, f, ensure_ascii=True, indent=0)
        f.write("\n")
    print(f"cases.json: {len(cases)} cases, 256 byte tokens")


def bytes_to_unicode():
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


BYTE_TO_CHARACTER = bytes_to_unicode()


def write_digests(tokenizer, root, relative_paths, name):
    files = []
    for relative in relative_paths:
        data, lines = corpus_lines(root, relative)
        blocks = []
        for start in range(0, len(lines), BLOCK_LINES):
            digest = hashlib.sha256()
            for encoding in tokenizer.encode_batch(lines[start:start + BLOCK_LINES]):
                digest.update(struct.pack(f"<{len(encoding.ids) + 1}i", *encoding.ids, -1))
            blocks.append(digest.hexdigest())
        files.append({"path": relative, "sha256": hashlib.sha256(data).hexdigest(), "lines": len(lines),
                      "blocks": blocks})
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        json.dump({"blockLines": BLOCK_LINES, "files": files}, f, indent=0)
        f.write("\n")
    print(f"{name}: {len(files)} files, {sum(file['lines'] for file in files)} lines")


def write_training_digest():
    import tempfile
    files = shared_corpus_files()
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train([os.path.join(SHARED_CORPORA, relative) for relative in files], vocab_size=TRAINING_VOCAB_SIZE,
                    min_frequency=2, special_tokens=[END_OF_TEXT], show_progress=False)
    with tempfile.TemporaryDirectory() as directory:
        tokenizer.save_model(directory)
        digests = {}
        for name in ["vocab.json", "merges.txt"]:
            with open(os.path.join(directory, name), "rb") as f:
                digests[name] = hashlib.sha256(f.read()).hexdigest()
    record = {"files": files, "vocabSize": TRAINING_VOCAB_SIZE, "minFrequency": 2, "specialTokens": [END_OF_TEXT],
              "sha256": digests}
    with open(os.path.join(OUT, "shared-corpus-training.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=0)
        f.write("\n")
    print(f"shared-corpus-training.json: {len(files)} files, vocab {TRAINING_VOCAB_SIZE}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-digests", action="store_true", help="also the digests over ../shared/corpora")
    args = parser.parse_args()
    tokenizer = train()
    write_cases(tokenizer)
    write_digests(tokenizer, ROOT, repository_corpus_files(), "corpus-digests.json")
    if args.shared_digests:
        write_digests(tokenizer, SHARED_CORPORA, shared_corpus_files(), "shared-corpus-digests.json")
        write_training_digest()


if __name__ == "__main__":
    main()
