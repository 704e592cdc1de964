#!/usr/bin/env python3
"""Writes Tests/TrainingTests/Fixtures/metrics/*.json: reference values for SwiftBERT's fine-tuning
metrics and token-classification entity grouping, computed by the libraries users compare against.

- classification.json: sklearn accuracy_score, f1_score (macro, micro; labels= not given, so over the
  classes present in labels or predictions), precision_recall_fscore_support per class,
  matthews_corrcoef; zero_division=0 throughout.
- multilabel.json: multi-hot predictions from logits > 0 (sigmoid > 0.5, as transformers'
  run_classification.py thresholds), sklearn subset accuracy and micro/macro F1 over indicator matrices.
- regression.json: scipy.stats.pearsonr / spearmanr (null where scipy gives NaN or raises: constant
  input, fewer than 2 points), sklearn mean_squared_error.
- entities.json: seqeval 1.2.2: default (conlleval-compatible) mode on IOB1, IOB2 and BIOES tags, strict
  mode with scheme IOB2 and IOBES, micro average and per type, get_entities chunks; token accuracy
  over the positions whose label is not -100, as transformers' run_ner.py computes it.
- grouping.json: a tiny random BertForTokenClassification with the fast BertTokenizer on corpus/vocab.txt,
  run through pipeline("token-classification") with aggregation_strategy "none" and "simple"; the
  per-token logits, offsets and tokens are recorded beside the pipeline's output.

Fixed seeds, so the files are reproducible. Run: venv/bin/python scripts/make_metric_fixtures.py
(needs seqeval, scikit-learn and scipy besides transformers and torch).
"""
import json
import math
import os
import random
import warnings

import numpy as np
import torch
from scipy import stats
from seqeval.metrics import accuracy_score as seq_accuracy
from seqeval.metrics.sequence_labeling import precision_recall_fscore_support as seq_prfs
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2, IOBES, Entities
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    matthews_corrcoef,
    mean_squared_error,
    precision_recall_fscore_support,
)

warnings.simplefilter("ignore")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "TrainingTests", "Fixtures", "metrics")
rng = np.random.default_rng(20260312)
pyrng = random.Random(20260312)


def write(name, value):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.write("\n")


def finite_or_none(x):
    x = float(x)
    return None if math.isnan(x) else x


# MARK: - Classification

def classification_case(name, labels, predictions):
    classes = sorted(set(labels) | set(predictions))
    p, r, f, s = precision_recall_fscore_support(labels, predictions, labels=classes, zero_division=0)
    return {
        "name": name, "labels": labels, "predictions": predictions,
        "accuracy": accuracy_score(labels, predictions),
        "macro_f1": f1_score(labels, predictions, average="macro", zero_division=0),
        "micro_f1": f1_score(labels, predictions, average="micro", zero_division=0),
        "mcc": matthews_corrcoef(labels, predictions),
        "per_class": [{"label": int(c), "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                       "support": int(s[i])} for i, c in enumerate(classes)],
    }


def classification_cases():
    cases = []
    for i, (n, k) in enumerate([(50, 2), (200, 3), (333, 5), (64, 7)]):
        labels = rng.integers(0, k, n).tolist()
        # Mostly right, so the scores are neither 0 nor 1.
        predictions = [l if rng.random() < 0.6 else int(rng.integers(0, k)) for l in labels]
        cases.append(classification_case(f"random-{n}x{k}", labels, predictions))
    cases.append(classification_case("class-never-predicted", [0, 1, 2, 2, 1, 0, 2], [0, 1, 1, 1, 1, 0, 0]))
    cases.append(classification_case("class-only-predicted", [0, 0, 1, 1], [0, 3, 1, 3]))
    cases.append(classification_case("one-class-everywhere", [2, 2, 2], [2, 2, 2]))
    cases.append(classification_case("constant-prediction", [0, 1, 0, 1, 1], [1, 1, 1, 1, 1]))
    cases.append(classification_case("all-wrong", [0, 1, 0, 1], [1, 0, 1, 0]))
    cases.append(classification_case("single-example", [4], [1]))
    cases.append(classification_case("labels-with-gaps", [0, 5, 9, 5, 0, 9], [5, 5, 9, 0, 0, 9]))
    return cases


def multilabel_case(name, labels, logits):
    labels = np.asarray(labels, dtype=np.int64)
    logits = np.asarray(logits, dtype=np.float32)
    predictions = (logits > 0).astype(np.int64)
    return {
        "name": name, "labels": labels.tolist(), "logits": logits.tolist(),
        "subset_accuracy": accuracy_score(labels, predictions),
        "micro_f1": f1_score(labels, predictions, average="micro", zero_division=0),
        "macro_f1": f1_score(labels, predictions, average="macro", zero_division=0),
    }


def multilabel_cases():
    cases = []
    for n, k in [(40, 4), (100, 6)]:
        labels = (rng.random((n, k)) < 0.35).astype(np.int64)
        logits = (labels * 2 - 1) * rng.uniform(0.1, 2.0, (n, k)) + rng.normal(0, 1.0, (n, k))
        cases.append(multilabel_case(f"random-{n}x{k}", labels, logits))
    # The third label never occurs and is never predicted: sklearn counts it in the macro mean as 0.
    cases.append(multilabel_case("label-never-seen", [[1, 0, 0], [0, 1, 0], [1, 1, 0]],
                                 [[2.0, -1.0, -3.0], [-0.5, -0.1, -2.0], [1.0, 0.5, -1.0]]))
    cases.append(multilabel_case("nothing-predicted", [[1, 0], [0, 1]], [[-1.0, -1.0], [-2.0, -0.5]]))
    cases.append(multilabel_case("empty-label-sets", [[0, 0], [0, 0]], [[-1.0, -1.0], [-2.0, -0.5]]))
    return cases


# MARK: - Regression

def regression_case(name, labels, predictions):
    labels = [float(x) for x in labels]
    predictions = [float(x) for x in predictions]

    def correlation(f):
        if len(labels) < 2:
            return None  # scipy raises (pearsonr) or returns NaN (spearmanr)
        return finite_or_none(f(labels, predictions).statistic)

    return {
        "name": name, "labels": labels, "predictions": predictions,
        "pearson": correlation(stats.pearsonr), "spearman": correlation(stats.spearmanr),
        "mse": mean_squared_error(labels, predictions),
    }


def regression_cases():
    cases = []
    for n in [10, 257]:
        labels = rng.normal(2.5, 1.2, n)
        predictions = labels * 0.7 + rng.normal(0, 0.8, n)
        cases.append(regression_case(f"random-{n}", labels.tolist(), predictions.tolist()))
    # STS-B-like scores on a 0-5 grid: many ties in both, averaged ranks matter.
    labels = rng.integers(0, 11, 80) / 2
    predictions = np.clip(np.round((labels + rng.normal(0, 1, 80)) * 2) / 2, 0, 5)
    cases.append(regression_case("ties-on-a-grid", labels.tolist(), predictions.tolist()))
    cases.append(regression_case("hand-ties", [1, 2, 2, 3, 3, 3, 4], [1, 1, 2, 2, 5, 5, 5]))
    cases.append(regression_case("constant-prediction", [1, 2, 3, 4], [2.5, 2.5, 2.5, 2.5]))
    cases.append(regression_case("constant-label", [3, 3, 3], [1, 2, 3]))
    cases.append(regression_case("two-points", [1, 2], [5, 3]))
    cases.append(regression_case("one-point", [1.5], [2.0]))
    cases.append(regression_case("large-offset", (1e6 + rng.normal(0, 1, 30)).tolist(),
                                 (1e6 + rng.normal(0, 1, 30)).tolist()))
    return cases


# MARK: - Entities

def scores_of(p, r, f, s, types):
    return {t: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, t in enumerate(types)}


def entity_case(name, y_true, y_pred, mode=None, scheme=None):
    case = {"name": name, "true": y_true, "pred": y_pred, "mode": mode or "default",
            "scheme": scheme.__name__ if scheme else None}
    try:
        if mode == "strict":
            from seqeval.metrics.v1 import precision_recall_fscore_support as strict_prfs
            types = sorted(Entities(y_true, scheme).unique_tags | Entities(y_pred, scheme).unique_tags)
            per = strict_prfs(y_true, y_pred, average=None, scheme=scheme, zero_division=0)
            micro = strict_prfs(y_true, y_pred, average="micro", scheme=scheme, zero_division=0)
            case["true_entities"] = [[e.sent_id, e.tag, e.start, e.end] for s in Entities(y_true, scheme).entities
                                     for e in s]
        else:
            types = sorted({t for t, _, _ in get_entities(y_true)} | {t for t, _, _ in get_entities(y_pred)})
            per = seq_prfs(y_true, y_pred, average=None, zero_division=0)
            micro = seq_prfs(y_true, y_pred, average="micro", zero_division=0)
            case["true_entities"] = [list(e) for e in get_entities(y_true)]
    except (ValueError, KeyError) as error:  # seqeval: ValueError for a prefix the scheme disallows,
        case["error"] = repr(error)            # KeyError for one that is no prefix at all
        return case
    case["per_type"] = scores_of(*per, types)
    case["micro"] = {"precision": float(micro[0]), "recall": float(micro[1]), "f1": float(micro[2]),
                     "support": int(micro[3])}
    return case


def random_sequences(tags, count, rng_):
    return [[rng_.choice(tags) for _ in range(rng_.randint(0, 12))] for _ in range(count)]


def perturb(sequences, tags, rng_, rate=0.2):
    return [[rng_.choice(tags) if rng_.random() < rate else t for t in s] for s in sequences]


def entity_cases():
    cases = []
    types = ["PER", "LOC", "ORG"]
    iob = ["O", "O", "O"] + [f"{p}-{t}" for p in "BI" for t in types]
    bioes = ["O", "O", "O"] + [f"{p}-{t}" for p in "BIES" for t in types]
    for label, tags in [("iob", iob), ("bioes", bioes)]:
        truth = random_sequences(tags, 40, pyrng)
        pred = perturb(truth, tags, pyrng)
        cases.append(entity_case(f"default-random-{label}", truth, pred))
        strict_scheme = IOB2 if label == "iob" else IOBES
        cases.append(entity_case(f"strict-random-{label}", truth, pred, "strict", strict_scheme))
    # IOB1: I- opens a chunk, B- only separates two adjacent chunks of one type.
    iob1_true = [["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-LOC", "I-ORG"], ["O", "I-MISC", "O"]]
    iob1_pred = [["I-PER", "I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"], ["O", "I-MISC", "O"]]
    cases.append(entity_case("default-iob1", iob1_true, iob1_pred))
    hand = [
        ("i-after-o", [["O", "I-PER", "I-PER", "O", "B-LOC"]], [["O", "B-PER", "I-PER", "O", "I-LOC"]]),
        ("type-switch-inside", [["B-PER", "I-PER", "I-LOC", "O"]], [["B-PER", "I-PER", "O", "O"]]),
        ("all-o-prediction", [["B-PER", "I-PER", "O"], ["B-LOC"]], [["O", "O", "O"], ["O"]]),
        ("all-o-everywhere", [["O", "O"], ["O"]], [["O", "O"], ["O"]]),
        ("empty-sentences", [[], ["B-PER"], []], [[], ["B-PER"], []]),
        ("bioes-e-s", [["S-PER", "B-LOC", "E-LOC", "O", "B-ORG", "I-ORG", "E-ORG", "S-LOC"]],
         [["S-PER", "B-LOC", "I-LOC", "O", "B-ORG", "E-ORG", "E-ORG", "S-LOC"]]),
        ("bioes-broken", [["E-PER", "I-PER", "S-LOC", "I-LOC", "E-LOC"]],
         [["B-PER", "E-PER", "B-LOC", "S-LOC", "E-LOC"]]),
        ("untyped-and-odd-tags", [["B", "I", "O", "B-X-Y", "I-X-Y", "I"]], [["B", "O", "O", "B-X-Y", "I-X", "B"]]),
        ("entity-at-sentence-end", [["O", "B-PER"], ["I-PER", "O"]], [["O", "B-PER"], ["B-PER", "O"]]),
    ]
    for name, truth, pred in hand:
        cases.append(entity_case(f"default-{name}", truth, pred))
    strict_hand = [
        ("i-after-o", [["O", "I-PER", "I-PER", "O", "B-LOC"]], [["O", "B-PER", "I-PER", "O", "I-LOC"]], IOB2),
        ("type-switch-inside", [["B-PER", "I-PER", "I-LOC", "O"]], [["B-PER", "I-PER", "O", "O"]], IOB2),
        ("all-o-prediction", [["B-PER", "I-PER", "O"], ["B-LOC"]], [["O", "O", "O"], ["O"]], IOB2),
        ("empty-sentences", [[], ["B-PER"], []], [[], ["B-PER"], []], IOB2),
        ("bioes-e-s", [["S-PER", "B-LOC", "E-LOC", "O", "B-ORG", "I-ORG", "E-ORG", "S-LOC"]],
         [["S-PER", "B-LOC", "I-LOC", "O", "B-ORG", "E-ORG", "E-ORG", "S-LOC"]], IOBES),
        ("bioes-broken", [["E-PER", "I-PER", "S-LOC", "I-LOC", "E-LOC"]],
         [["B-PER", "E-PER", "B-LOC", "S-LOC", "E-LOC"]], IOBES),
        ("bioes-unclosed", [["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "E-PER", "B-LOC"]], IOBES),
        ("e-in-iob2", [["B-PER", "E-PER"]], [["B-PER", "I-PER"]], IOB2),
        ("unknown-prefix", [["B-PER", "X-PER"]], [["B-PER", "I-PER"]], IOBES),
    ]
    for name, truth, pred, scheme in strict_hand:
        cases.append(entity_case(f"strict-{name}", truth, pred, "strict", scheme))
    return cases


def token_cases():
    # Label ids with -100 where transformers' data collator ignores a position (continuation pieces,
    # special tokens); run_ner.py drops those before it calls seqeval.
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    cases = []
    for i in range(3):
        labels, predictions = [], []
        for _ in range(8):
            n = pyrng.randint(1, 14)
            row = [pyrng.choice([0, 0, 1, 2, 3, 4]) for _ in range(n)]
            row = [-100 if pyrng.random() < 0.25 else t for t in row]
            labels.append(row)
            predictions.append([t if t != -100 and pyrng.random() < 0.7 else pyrng.randrange(5) for t in row])
        true_tags = [[names[l] for l in row if l != -100] for row in labels]
        pred_tags = [[names[p] for p, l in zip(prow, row) if l != -100] for prow, row in zip(predictions, labels)]
        micro = seq_prfs(true_tags, pred_tags, average="micro", zero_division=0)
        cases.append({"name": f"random-{i}", "label_names": names, "labels": labels, "predictions": predictions,
                      "accuracy": seq_accuracy(true_tags, pred_tags),
                      "micro": {"precision": float(micro[0]), "recall": float(micro[1]), "f1": float(micro[2]),
                                "support": int(micro[3])}})
    return cases


# MARK: - Entity grouping (token-classification pipeline)

def grouping_fixture():
    from transformers import BertConfig, BertForTokenClassification, BertTokenizer, pipeline

    torch.manual_seed(7)
    # transformers 5's BertTokenizer is the fast (tokenizers-backed) one; it takes the vocabulary itself.
    with open(os.path.join(ROOT, "corpus", "vocab.txt"), encoding="utf-8") as f:
        vocab = {token: index for index, token in enumerate(f.read().splitlines())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    assert tokenizer.is_fast
    # Labels beyond B-/I-: a bare type (grouped as an I- continuation) and an E- tag (grouped by its
    # whole name, reported by the part after the first "-").
    id2label = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "MISC", 6: "E-ORG"}
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model = BertForTokenClassification(config).eval()
    with torch.no_grad():
        # Larger classifier weights than the initialiser's, so the argmax changes from token to token.
        model.classifier.weight.normal_(0, 1.0)
        model.classifier.bias.normal_(0, 0.5)
    texts = [
        "John Smith lives in New York.",
        "Unbelievably, Jerusalem's gates opened at 12:30!",
        "Café crème in Zürich \U0001F600 with Ångström.",
        "and god said, let there be light",
        "北京 is a city; don't panic.",
        "x",
        "Mr. O'Neil, isn't it? Yes! We're here, aren't we.",
        "Sherlock Holmes met Dr. Watson at 221B Baker Street , London .",
    ]
    ner_none = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="none")
    ner_simple = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple")
    cases = []
    for text in texts:
        encoded = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True,
                            return_tensors="pt")
        with torch.no_grad():
            logits = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                           token_type_ids=encoded["token_type_ids"]).logits[0]
        ids = encoded["input_ids"][0].tolist()
        tokens = []
        for i, token_id in enumerate(ids):
            if encoded["special_tokens_mask"][0][i]:
                continue
            start, end = encoded["offset_mapping"][0][i].tolist()
            tokens.append({"index": i, "token": tokenizer.convert_ids_to_tokens(token_id),
                           "is_unknown": token_id == tokenizer.unk_token_id, "start": start, "end": end,
                           "logits": logits[i].tolist()})

        def plain(entities):
            return [{k: (float(v) if k == "score" else v) for k, v in e.items()} for e in entities]

        cases.append({"text": text, "tokens": tokens, "none": plain(ner_none(text)),
                      "simple": plain(ner_simple(text))})
    # The decoder behind the "simple" groups' words, on pieces that exercise its cleanup rules.
    pieces = [["hello", ",", "world", "!"], ["##ing", "un", "##believ", "##able", "."], ["isn", "'", "t"],
              ["don", "' ", "t"], ["i", " 'm", " n't", "x"], ["we", "'re", "they", " 've", " 're"],
              ["do", " do not"], ["a", "?", " .", "b"], ["solo"], []]
    decoded = [{"pieces": p, "text": tokenizer.convert_tokens_to_string(p)} for p in pieces]
    return {"id2label": [id2label[i] for i in range(len(id2label))], "cases": cases, "decoded": decoded}


write("classification.json", {"single_label": classification_cases(), "multi_label": multilabel_cases()})
rank_inputs = [[3, 1, 3, 2, 3], [0.5, 0.5, 0.5], [2.0, -1.0, 7.5, -1.0, 2.0, 2.0, 9.0], rng.integers(0, 4, 25).tolist()]
write("regression.json", {"cases": regression_cases(),
                          "ranks": [{"values": [float(v) for v in values], "ranks": stats.rankdata(values).tolist()}
                                    for values in rank_inputs]})
write("entities.json", {"cases": entity_cases(), "token_cases": token_cases()})
write("grouping.json", grouping_fixture())
