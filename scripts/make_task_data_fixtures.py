#!/usr/bin/env python3
"""Generates the reference encodings of fine-tuning inputs for SwiftBERT's TaskEncoder.

Output, committed: Tests/DataTests/Fixtures/tasks/hf-encodings.json, what Hugging Face's
BertTokenizerFast (the tokenizer AutoTokenizer and the example scripts load) returns with
corpus/vocab.txt (bert-base-uncased's vocabulary, lower-cased) for:

  singles   tokenizer(text, truncation=True, max_length=m)
  pairs     tokenizer(a, b, truncation=True, max_length=m): the `longest_first` rule, over a grid of
            lengths (both texts short, one long, both long, equal lengths, odd and even budgets)
  words     tokenizer(words, is_split_into_words=True, truncation=True, max_length=m) with the labels
            as run_ner.py aligns them (the word's label on its first token, -100 elsewhere) and
            word_ids (-1 for None); words that give no token included
  choices   run_swag.py's encoding: tokenizer([context] * n, [f"{sent2} {ending}" ...],
            truncation=True, max_length=m)

The slow Python tokenizer (BertTokenizerLegacy) gives the same ids for the singles and words; for
pairs where both texts are over budget it keeps the odd token in the first text instead of the
longer one. The script checks the first and counts the second (printed), so a change in either
library shows up when the fixtures are regenerated.

With --shared-digests, also Tests/DataTests/Fixtures/tasks/shared-task-digests.json: SHA-256 digests of
the same encodings over the real data of ../shared/tasks (not in the repository), for the test that
runs where SWIFTBERT_SHARED_TASKS names that folder:
  20newsgroups/train.tsv      label<TAB>text lines, tokenizer(text, truncation=True, max_length=128)
  people-daily-1998/199801.txt  word/TAG lines, tags turned into IOB2 entities (nr -> PER, consecutive
                              nr tokens one person; ns -> LOC; nt -> ORG; others O), label ids in order of
                              first appearance, tokenizer(words, is_split_into_words=True, max_length=128)
Digest input per example: input_ids, -1, token_type_ids, -1 (and for words: word_ids, -1, labels, -1),
each an int32, little-endian.

Run with the reference stack:  venv/bin/python scripts/make_task_data_fixtures.py [--shared-digests]
"""

import argparse
import hashlib
import json
import struct
import os
import random
import shutil
import tempfile

from transformers import BertTokenizerFast, BertTokenizerLegacy
from transformers.utils import logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(ROOT, "corpus", "vocab.txt")
OUT = os.path.join(ROOT, "Tests", "DataTests", "Fixtures", "tasks", "hf-encodings.json")
SHARED_OUT = os.path.join(ROOT, "Tests", "DataTests", "Fixtures", "tasks", "shared-task-digests.json")
SHARED_TASKS = os.path.join(ROOT, "..", "shared", "tasks")

SINGLES = [
    "Hello, world!",
    "The movie was surprisingly good; I'd watch it again.",
    "Unaffable naïveté — résumé of the café's crème brûlée.",
    "我正在写这本书的心得，勘误和疑点。",
    "Mixed 中文 and English with [SEP] written in the text.",
    "",
    "a " * 200,
    "supercalifragilisticexpialidocious antidisestablishmentarianism " * 10,
]
SINGLE_LENGTHS = [3, 8, 16, 128]

WORDS = [
    (["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."], [3, 0, 7, 0, 0, 0, 7, 0, 0]),
    (["Peter", "Blackburn"], [1, 2]),
    (["don't", "stop", "\u200b", "believing", "\x00", "!"], [0, 0, 5, 0, 6, 0]),
    (["江", "泽民", "发表", "新年", "讲话"], [1, 2, 0, 0, 0]),
    (["unaffable", "naïveté", "supercalifragilisticexpialidocious", "x"], [4, 3, 2, 1]),
    ([], []),
    (["word"] * 40, list(range(40))),
]
WORD_LENGTHS = [4, 10, 512]

SWAG = [
    ("Members of the procession walk down the street holding small horn brass instruments.",
     "A drum line",
     ["passes by walking down the street playing their instruments.",
      "has heard approaching them.",
      "arrives and they're outside dancing and asleep.",
      "turns the lead singer watches the performance."]),
    ("A man is sitting on a roof.", "He",
     ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
      "is holding a rubik's cube.", "starts pulling up roofing on a roof."]),
]
CHOICE_LENGTHS = [16, 64]


def pair_cases(rng):
    """Texts of a given number of single-token words, so lengths in tokens are exact."""
    words = ["cat", "dog", "house", "tree", "blue", "red", "run", "jump", "big", "small"]

    def text(n):
        return " ".join(rng.choice(words) for _ in range(n))

    cases = []
    lengths = [0, 1, 2, 3, 5, 6, 10, 11]
    for m in [5, 6, 7, 8, 13]:
        for a in lengths:
            for b in lengths:
                cases.append((text(a), text(b), m))
    cases.append(("The quick brown fox jumps over the lazy dog.", "Résumé writing: a café-side guide!", 16))
    cases.append(("我正在写这本书的心得", "勘误和疑点，有兴趣的朋友可以访问我的网站", 12))
    return cases


def peoples_daily_entities(tags):
    entities = []
    for index, tag in enumerate(tags):
        if tag == "nr":
            entities.append("I-PER" if index > 0 and tags[index - 1] == "nr" else "B-PER")
        else:
            entities.append({"ns": "B-LOC", "nt": "B-ORG"}.get(tag, "O"))
    return entities


def digest_update(hasher, *lists):
    for values in lists:
        hasher.update(struct.pack(f"<{len(values) + 1}i", *values, -1))


def shared_digests(fast):
    with open(os.path.join(SHARED_TASKS, "20newsgroups", "train.tsv"), encoding="utf-8", newline="") as f:
        texts = [line.rstrip("\n").rstrip("\r").split("\t", 1)[1] for line in f if line.strip("\r\n")]
    enc = fast(texts, truncation=True, max_length=128)
    news = hashlib.sha256()
    for ids, types in zip(enc["input_ids"], enc["token_type_ids"]):
        digest_update(news, ids, types)

    sentences, names = [], {}
    with open(os.path.join(SHARED_TASKS, "people-daily-1998", "199801.txt"), encoding="utf-8", newline="") as f:
        for line in f:
            tokens = line.rstrip("\n").rstrip("\r").replace("\t", " ").split(" ")
            pairs = [token.rsplit("/", 1) for token in tokens if token]
            if not pairs:
                continue
            tags = [names.setdefault(tag, len(names)) for tag in peoples_daily_entities([p[1] for p in pairs])]
            sentences.append(([p[0] for p in pairs], tags))
    enc = fast([words for words, _ in sentences], is_split_into_words=True, truncation=True, max_length=128)
    daily = hashlib.sha256()
    for index, (_, tags) in enumerate(sentences):
        word_ids = enc.word_ids(index)
        labels, previous = [], None
        for word in word_ids:
            labels.append(-100 if word is None or word == previous else tags[word])
            previous = word
        digest_update(daily, enc["input_ids"][index], enc["token_type_ids"][index],
                      [-1 if w is None else w for w in word_ids], labels)
    with open(SHARED_OUT, "w", encoding="utf-8") as f:
        json.dump({"20newsgroups/train.tsv": {"examples": len(texts), "max_length": 128, "sha256": news.hexdigest()},
                   "people-daily-1998/199801.txt": {"examples": len(sentences), "max_length": 128,
                                                    "label_names": list(names), "sha256": daily.hexdigest()}},
                  f, ensure_ascii=False, indent=2)
        f.write("\n")
    print(f"wrote {SHARED_OUT}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-digests", action="store_true", help="also digest the encodings of ../shared/tasks")
    args = parser.parse_args()
    logging.set_verbosity_error()  # the slow tokenizer warns on every truncated pair
    # Loaded from a directory holding vocab.txt: transformers 5's BertTokenizerFast(vocab_file=...)
    # ignores the file and gives a tokenizer without the vocabulary.
    with tempfile.TemporaryDirectory() as directory:
        shutil.copyfile(VOCAB, os.path.join(directory, "vocab.txt"))
        fast = BertTokenizerFast.from_pretrained(directory, do_lower_case=True)
        slow = BertTokenizerLegacy.from_pretrained(directory, do_lower_case=True)
    for tokenizer in (fast, slow):
        assert len(tokenizer) == 30522 and tokenizer.cls_token_id == 101, f"{type(tokenizer)} lost the vocabulary"
    rng = random.Random(14)

    singles = []
    for text in SINGLES:
        for m in SINGLE_LENGTHS:
            enc = fast(text, truncation=True, max_length=m)
            assert enc["input_ids"] == slow(text, truncation=True, max_length=m)["input_ids"], text
            singles.append({"text": text, "max_length": m, "input_ids": enc["input_ids"],
                            "token_type_ids": enc["token_type_ids"]})

    pairs, slow_differs = [], 0
    for a, b, m in pair_cases(rng):
        enc = fast(a, b, truncation=True, max_length=m)
        if enc["input_ids"] != slow(a, b, truncation=True, max_length=m)["input_ids"]:
            slow_differs += 1
        pairs.append({"text": a, "pair": b, "max_length": m, "input_ids": enc["input_ids"],
                      "token_type_ids": enc["token_type_ids"]})

    words = []
    for tokens, tags in WORDS:
        for m in WORD_LENGTHS:
            enc = fast(tokens, is_split_into_words=True, truncation=True, max_length=m)
            word_ids = enc.word_ids()
            labels, previous = [], None
            for word in word_ids:
                labels.append(-100 if word is None or word == previous else tags[word])
                previous = word
            # (The slow tokenizer rejects an empty word list.)
            assert not tokens or enc["input_ids"] == slow(tokens, is_split_into_words=True, truncation=True,
                                            max_length=m)["input_ids"], tokens
            words.append({"words": tokens, "tags": tags, "max_length": m, "input_ids": enc["input_ids"],
                          "word_ids": [-1 if w is None else w for w in word_ids], "labels": labels})

    choices = []
    for context, prefix, endings in SWAG:
        for m in CHOICE_LENGTHS:
            enc = fast([context] * len(endings), [f"{prefix} {e}" for e in endings], truncation=True, max_length=m)
            choices.append({"context": context, "prefix": prefix, "endings": endings, "max_length": m,
                            "input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"]})

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"tokenizer": "BertTokenizerFast(corpus/vocab.txt, do_lower_case=True)",
                   "singles": singles, "pairs": pairs, "words": words, "choices": choices},
                  f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {len(singles)} singles, {len(pairs)} pairs ({slow_differs} where the slow "
          f"tokenizer truncates differently), {len(words)} word cases, {len(choices)} choice cases")
    if args.shared_digests:
        shared_digests(fast)


if __name__ == "__main__":
    main()
