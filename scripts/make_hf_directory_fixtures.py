#!/usr/bin/env python3
"""Generates the fixtures of Hugging Face directories as transformers 5 writes and reads them.

Two outputs, both committed:

  Tests/DataTests/Fixtures/hf-tokenizers/
      NAME/          tokenizer.json + tokenizer_config.json as transformers 5's
                     `BertTokenizer.save_pretrained` writes them (no vocab.txt), for
                       uncased          bert-base-uncased's settings, a 3,000-token subset of corpus/vocab.txt
                       cased            do_lower_case=False, the subset plus cased and accented tokens
                       uncased-accents  do_lower_case=True, strip_accents=False
                       chinese          uncased, with CJK characters and "##" CJK continuations
                       chinese-unsplit  the same with tokenize_chinese_chars=False
      expected.json  for every directory and text: the ids `AutoTokenizer.from_pretrained(NAME)` gives
                     (no [CLS]/[SEP]), and the ids of the pure-Python reference `BertTokenizerLegacy`
                     with the same vocabulary and settings when they differ (SwiftBERT follows the
                     reference; see "differences").

  Tests/TransformerTests/Fixtures/hf-layouts.json
      For a small config: the tensors (names and shapes) each transformers class expects in
      model.safetensors (BertForPreTraining, BertForMaskedLM, BertModel, BertForNextSentencePrediction),
      the tied tensors it does not need, and, for a checkpoint with each NSP head SwiftBERT writes
      (2 classes, 3 classes, none), the tensors of that checkpoint and what `from_pretrained` reports:
      missing, unexpected and mismatched keys, or the error it raises.

Run with the reference stack:  venv/bin/python scripts/make_hf_directory_fixtures.py
"""

import json
import os
import shutil
import tempfile

import torch
from safetensors.torch import save_file

import transformers
from transformers import (AutoTokenizer, BertConfig, BertForMaskedLM, BertForNextSentencePrediction,
                          BertForPreTraining, BertModel, BertTokenizer, BertTokenizerLegacy)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZERS = os.path.join(ROOT, "Tests", "DataTests", "Fixtures", "hf-tokenizers")
LAYOUTS = os.path.join(ROOT, "Tests", "TransformerTests", "Fixtures", "hf-layouts.json")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "And the LORD said unto Moses, Stretch out thine hand!",
    "Hello, World! HELLO world? hello... (world) [brackets] {braces} \"quoted\" 'single'",
    "The man went to the [MASK] to buy some milk. [CLS] x [SEP] [PAD][UNK]",
    "café naïve résumé Ångström façade Über ÉCOLE coöperate",
    "tabs\tand\nnewlines\r\nand  double  spaces\u00a0nbsp\u3000ideographic space",
    "control\u0000chars\u0007and\ufffdreplacement\u200bzero-width",
    "numbers 3.14159 1,000,000 42nd 1st 2019-10-31 $100 50% #hashtag @user",
    "unbelievably antidisestablishmentarianism supercalifragilistic",
    "a" * 99 + " " + "b" * 101,
    "emoji 🙂 and symbols ™ © § ¶ † ‡ • … ‰ ← → ∞ ≠",
    "我们喜欢学习中文。中文很有意思！",
    "mixed 中文 and English: 北京 is the capital 首都.",
    "日本語のテキスト、カタカナ、ひらがな。한국어 텍스트",
    "Ελληνικά ΚΕΙΜΕΝΟ Σοφία ΟΔΟΣ русский ТЕКСТ",
    "",
    "   ",
    "don't won't can't it's 'tis o'clock",
    "e\u0301cole cafe\u0301 (decomposed accents)",
]

CASED_EXTRA = ["The", "And", "God", "LORD", "Moses", "Hello", "World", "HELLO", "In", "Stretch", "English",
               "café", "naïve", "résumé", "Über", "ÉCOLE", "é", "É", "ï", "ü", "Ü", "Å", "ç", "##é", "##ï",
               "##ü", "##ç", "##ö", "Ελληνικά", "Σοφία", "ΟΔΟΣ", "ТЕКСТ"]
UNCASED_EXTRA = ["café", "naïve", "résumé", "über", "école", "é", "ï", "ü", "å", "ç", "##é", "##ï", "##ü",
                 "##ç", "##ö", "ελληνικα", "σοφια", "οδος", "οδοσ", "текст"]
CJK = list("我们喜欢学习中文很有意思北京首都日本語のテキストカタナひらが한국어")


def base_tokens():
    """bert-base-uncased's specials, characters and most frequent words: corpus/vocab.txt ids < 4000
    without the [unusedN] placeholders."""
    with open(os.path.join(ROOT, "corpus", "vocab.txt"), encoding="utf-8") as f:
        tokens = f.read().split("\n")[:4000]
    return [t for t in tokens if not t.startswith("[unused")]


def with_extra(tokens, extra):
    seen = set(tokens)
    return tokens + [t for t in extra if t not in seen and not seen.add(t)]


def save_tokenizer(name, tokens, **settings):
    directory = os.path.join(TOKENIZERS, name)
    shutil.rmtree(directory, ignore_errors=True)
    vocab = {token: index for index, token in enumerate(tokens)}
    assert len(vocab) == len(tokens), f"{name}: duplicate tokens"
    BertTokenizer(vocab=vocab, **settings).save_pretrained(directory)
    files = sorted(os.listdir(directory))
    assert files == ["tokenizer.json", "tokenizer_config.json"], f"{name}: transformers wrote {files}"
    return directory


def tokenizer_fixtures():
    os.makedirs(TOKENIZERS, exist_ok=True)
    base = base_tokens()
    cjk_tokens = CJK + ["##" + c for c in CJK]
    directories = {
        "uncased": (with_extra(base, UNCASED_EXTRA), {}),
        "cased": (with_extra(base, CASED_EXTRA + UNCASED_EXTRA), {"do_lower_case": False}),
        "uncased-accents": (with_extra(base, UNCASED_EXTRA), {"strip_accents": False}),
        "chinese": (with_extra(base, cjk_tokens), {}),
        "chinese-unsplit": (with_extra(base, cjk_tokens), {"tokenize_chinese_chars": False}),
    }
    records = {"transformers_version": transformers.__version__, "texts": TEXTS, "directories": {}}
    differences = 0
    for name, (tokens, settings) in directories.items():
        directory = save_tokenizer(name, tokens, **settings)
        fast = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        assert type(fast).__name__ == "BertTokenizer", type(fast)
        with tempfile.TemporaryDirectory() as scratch:
            vocab_file = os.path.join(scratch, "vocab.txt")
            with open(vocab_file, "w", encoding="utf-8") as f:
                f.write("\n".join(tokens) + "\n")
            legacy = BertTokenizerLegacy(vocab_file, **settings)
        cases = []
        for text in TEXTS:
            ids = fast.encode(text, add_special_tokens=False)
            reference = legacy.encode(text, add_special_tokens=False)
            case = {"ids": ids}
            if reference != ids:
                case["reference_ids"] = reference
                differences += 1
                print(f"{name}: transformers 5 and the reference differ on {text!r}:\n  {fast.convert_ids_to_tokens(ids)}\n"
                      f"  {legacy.convert_ids_to_tokens(reference)}")
            cases.append(case)
        records["directories"][name] = {"settings": settings, "vocab_size": len(tokens), "cases": cases}
    with open(os.path.join(TOKENIZERS, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(records, f, indent=1, ensure_ascii=False)
    print(f"{TOKENIZERS}: {len(directories)} directories x {len(TEXTS)} texts, {differences} differences "
          "between transformers 5 and the reference tokenizer")


# --------------------------------------------------------------------------------------------------
# Checkpoint layouts

CLASSES = [BertForPreTraining, BertForMaskedLM, BertModel, BertForNextSentencePrediction]


def layout_fixtures():
    transformers.logging.set_verbosity_error()
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=24, type_vocab_size=2)
    record = {
        "transformers_version": transformers.__version__,
        "config": {key: getattr(config, key) for key in [
            "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings", "type_vocab_size"]},
        "classes": {},
        "checkpoints": {},
    }
    for cls in CLASSES:
        model = cls(config)
        tied = sorted((getattr(model, "_tied_weights_keys", None) or {}).keys())
        record["classes"][cls.__name__] = {
            "expects": {name: list(tensor.shape) for name, tensor in model.state_dict().items()},
            "tied": tied,
            # A class without the base model prefix on its own names (BertModel) loads `bert.X` as `X`.
            "strips_prefix": cls.base_model_prefix + "." if not any(
                name.startswith(cls.base_model_prefix + ".") for name in model.state_dict()) else None,
        }

    # The checkpoints SwiftBERT writes: BertForPreTraining's names without the tied decoder, with the
    # NSP head of 2 or 3 classes or none (the Swift test checks SwiftBERT writes exactly these).
    full = BertForPreTraining(config).state_dict()
    hidden = config.hidden_size
    for classes in [2, 3, 0]:
        tensors = {name: tensor.clone().contiguous() for name, tensor in full.items()
                   if not name.startswith("cls.predictions.decoder.")}
        if classes == 3:
            tensors["cls.seq_relationship.weight"] = torch.zeros(3, hidden)
            tensors["cls.seq_relationship.bias"] = torch.zeros(3)
        elif classes == 0:
            del tensors["cls.seq_relationship.weight"], tensors["cls.seq_relationship.bias"]
        reports = {}
        with tempfile.TemporaryDirectory() as directory:
            config.save_pretrained(directory)
            save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
            for cls in CLASSES:
                reports[cls.__name__] = load_report(cls, directory)
        record["checkpoints"][str(classes)] = {
            "tensors": {name: list(tensor.shape) for name, tensor in sorted(tensors.items())},
            "reports": reports,
        }
        print(f"NSP {classes}: " + ", ".join(
            f"{name} {'fails' if report['error'] else 'loads'}" for name, report in reports.items()))
    with open(LAYOUTS, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    print(f"{LAYOUTS}: {len(CLASSES)} classes, 3 checkpoints")


def load_report(cls, directory):
    """What `cls.from_pretrained(directory)` reports, and whether it raises."""
    try:
        _, info = cls.from_pretrained(directory, output_loading_info=True)
        error = None
    except RuntimeError as e:
        error = str(e).strip().splitlines()[0]
        _, info = cls.from_pretrained(directory, output_loading_info=True, ignore_mismatched_sizes=True)
    return {
        "error": error,
        "missing_keys": sorted(info["missing_keys"]),
        "unexpected_keys": sorted(info["unexpected_keys"]),
        "mismatched_keys": sorted(key for key, *_ in info["mismatched_keys"]),
    }


if __name__ == "__main__":
    tokenizer_fixtures()
    layout_fixtures()
