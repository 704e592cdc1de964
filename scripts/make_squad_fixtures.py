#!/usr/bin/env python3
"""Generates the reference data for SwiftBERT's extractive question answering (SQuAD v1.1 / v2.0).

Outputs, all committed, in Tests/DataTests/Fixtures/squad/:

  offsets.json    texts with their WordPiece ids, character offsets and word indices as
                  BertTokenizerFast (`return_offsets_mapping`, `word_ids()`) gives them with
                  corpus/vocab.txt (bert-base-uncased); offsets are Python str indices.
  squad.json      a small hand-written SQuAD v2.0 file (v1.1 questions plus unanswerable ones).
  features.json   the windows of squad.json as transformers' examples/pytorch/question-answering/run_qa.py
                  builds them (`prepare_train_features` / `prepare_validation_features`) for
                  MAX_LENGTH and DOC_STRIDE: ids, token types, start/end positions, the offsets of
                  context tokens (null elsewhere) and the example each window belongs to.
  decoding.json   fixed random logits per window and what utils_qa.postprocess_qa_predictions
                  returns for them (v1 and v2, n-best with probabilities, null score differences),
                  and what the question-answering pipeline of transformers 4.x (its last version;
                  transformers 5 removed it) returns for the same windows: answer, score, start, end.
  metrics.json    predictions against squad.json scored with the rules of the official SQuAD
                  evaluation scripts (v1.1 and v2.0), per question and in total.

One deliberate difference from run_qa.py: its search for the start token walks past the last context
token into [SEP] (offsets (0, 0) satisfy `offsets[i][0] <= start_char`), so an answer that starts at
the last context token of a window gets the [SEP] index as its start. Here the search stops at the last
context token; the case is in the fixtures ("capital-last-token").

Run with the reference stack:  venv/bin/python scripts/make_squad_fixtures.py
"""

import collections
import json
import os
import re
import shutil
import string
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(ROOT, "corpus", "vocab.txt")
FIXTURES = os.path.join(ROOT, "Tests", "DataTests", "Fixtures", "squad")
MAX_LENGTH = 48
DOC_STRIDE = 16
N_BEST_SIZE = 20
MAX_ANSWER_LENGTH = 30
NULL_SCORE_DIFF_THRESHOLD = 0.0
NARROW = (2, 1)  # n_best_size, max_answer_length
PIPELINE_MAX_ANSWER_LENGTH = 15
PIPELINE_TOP_K = 3
SEED = 1234

OFFSET_TEXTS = [
    "Hello, world!",
    "  leading and trailing spaces   ",
    "multiple    spaces\tand\ttabs\nand\r\nnewlines",
    "Héllo wörld: café, naïve, résumé, Ångström, São Paulo.",
    "decomposed e\u0301 and o\u0308 marks",
    "北京是中国的首都。我爱北京天安门!",
    "mixed中文and English混合text",
    "emoji 😀 in the middle 🎉🎉 and at the end 👍",
    "punctuation: don't, U.S.A., $100.50, a--b, (x), [y], {z}, \"quoted\", 'single'...",
    "İstanbul ΑΘΗΝΑ Ἀθῆναι straße ǅemal ﬁne",
    "Hangul 한국어 and Devanagari हिन्दी and Arabic العربية",
    "zero\u200bwidth and soft\u00adhyphen and nbsp\u00a0here",
    "special tokens [CLS] and [SEP] and x[MASK]y stay whole",
    "unknown ☃☃☃ snowmen and ⌘ keys",
    "a" * 120 + " long word",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "",
    "   ",
]

# A hand-written SQuAD v2.0 file. Contexts are long enough to be split at MAX_LENGTH, mix scripts
# and punctuation, and some questions have no answer.
SWIFT = ("The Swift programming language was introduced by Apple in June 2014 at WWDC. It was designed by "
         "Chris Lattner and many others, as a successor to Objective-C. Swift 5.0, released in March 2019, "
         "brought ABI stability on Apple's platforms. The compiler is built on LLVM, and the language is open "
         "source under the Apache License 2.0. Today it runs on Linux, Windows and the server, where projects "
         "such as Vapor use it.")
WORLD = ("Beijing (北京) is the capital of China. Café owners in Zürich serve crème brûlée 😀 daily!!  The   "
         "spaces here are many. İstanbul's ferries cross the Bosphorus; naïve tourists ride them at dawn, "
         "paying 15 lira.")
SHORT = "The capital of France is Paris"


def answer(context, text, occurrence=0):
    start = -1
    for _ in range(occurrence + 1):
        start = context.index(text, start + 1)
    return {"text": text, "answer_start": start}


def dataset():
    return {
        "version": "v2.0",
        "data": [
            {"title": "Swift", "paragraphs": [{"context": SWIFT, "qas": [
                {"id": "swift-introduced", "question": "  When was Swift introduced?",
                 "answers": [answer(SWIFT, "June 2014"), answer(SWIFT, "in June 2014"), answer(SWIFT, "2014")],
                 "is_impossible": False},
                {"id": "swift-designer", "question": "Who designed Swift?",
                 "answers": [answer(SWIFT, "Chris Lattner")], "is_impossible": False},
                {"id": "swift-5", "question": "What did Swift 5.0 bring?",
                 "answers": [answer(SWIFT, "ABI stability"), answer(SWIFT, "ABI stability on Apple's platforms")],
                 "is_impossible": False},
                {"id": "swift-license", "question": "Which license does Swift use?",
                 "answers": [answer(SWIFT, "the Apache License 2.0"), answer(SWIFT, "Apache License")],
                 "is_impossible": False},
                {"id": "swift-vapor", "question": "Which project uses Swift on the server?",
                 "answers": [answer(SWIFT, "Vapor")], "is_impossible": False},
                {"id": "swift-kotlin", "question": "Who designed Kotlin?", "answers": [],
                 "plausible_answers": [answer(SWIFT, "Chris Lattner")], "is_impossible": True},
            ]}]},
            {"title": "World", "paragraphs": [
                {"context": WORLD, "qas": [
                    {"id": "world-beijing", "question": "What is 北京?",
                     "answers": [answer(WORLD, "Beijing")], "is_impossible": False},
                    {"id": "world-dessert", "question": "What do café owners serve?",
                     "answers": [answer(WORLD, "crème brûlée"), answer(WORLD, "crème brûlée 😀")],
                     "is_impossible": False},
                    {"id": "world-ferries", "question": "What crosses the Bosphorus?",
                     "answers": [answer(WORLD, "İstanbul's ferries")], "is_impossible": False},
                    {"id": "world-fare", "question": "How much do tourists pay?",
                     "answers": [answer(WORLD, "15 lira")], "is_impossible": False},
                    {"id": "world-lima", "question": "Where is Lima?", "answers": [], "is_impossible": True},
                ]},
                {"context": SHORT, "qas": [
                    {"id": "capital-last-token", "question": "What is the capital of France?",
                     "answers": [answer(SHORT, "Paris")], "is_impossible": False},
                    {"id": "capital-none", "question": "What is the capital of Mars?", "answers": [],
                     "is_impossible": True},
                ]},
            ]},
        ],
    }


def examples_of(data):
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                yield {"id": qa["id"], "question": qa["question"], "context": paragraph["context"],
                       "answers": qa["answers"]}


# MARK: - Features (run_qa.py prepare_train_features / prepare_validation_features)

def prepare_features(tokenizer, examples):
    questions = [e["question"].lstrip() for e in examples]
    contexts = [e["context"] for e in examples]
    tokenized = tokenizer(questions, contexts, truncation="only_second", max_length=MAX_LENGTH,
                          stride=DOC_STRIDE, return_overflowing_tokens=True, return_offsets_mapping=True,
                          padding=False)
    features = []
    for i, offsets in enumerate(tokenized["offset_mapping"]):
        input_ids = tokenized["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id)
        sequence_ids = tokenized.sequence_ids(i)
        example_index = tokenized["overflow_to_sample_mapping"][i]
        answers = examples[example_index]["answers"]
        if len(answers) == 0:
            start_position = end_position = cls_index
        else:
            start_char = answers[0]["answer_start"]
            end_char = start_char + len(answers[0]["text"])
            token_start_index = 0
            while sequence_ids[token_start_index] != 1:
                token_start_index += 1
            token_end_index = len(input_ids) - 1
            while sequence_ids[token_end_index] != 1:
                token_end_index -= 1
            context_end = token_end_index
            if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
                start_position = end_position = cls_index
            else:
                # run_qa.py has `token_start_index < len(offsets)` here (see the module docstring).
                while token_start_index <= context_end and offsets[token_start_index][0] <= start_char:
                    token_start_index += 1
                start_position = token_start_index - 1
                while offsets[token_end_index][1] >= end_char:
                    token_end_index -= 1
                end_position = token_end_index + 1
        features.append({
            "example": example_index,
            "input_ids": input_ids,
            "token_type_ids": tokenized["token_type_ids"][i],
            "start_position": start_position,
            "end_position": end_position,
            "offsets": [list(o) if sequence_ids[k] == 1 else None for k, o in enumerate(offsets)],
            # For the pipeline reference: the encoding's words, as token_to_word / word_to_chars see them.
            "_encoding": tokenized.encodings[i],
            "_sequence_ids": sequence_ids,
        })
    return features


# MARK: - Decoding (utils_qa.postprocess_qa_predictions)

def postprocess(examples, features, start_logits_all, end_logits_all, version_2_with_negative,
                n_best_size=N_BEST_SIZE, max_answer_length=MAX_ANSWER_LENGTH):
    features_per_example = collections.defaultdict(list)
    for i, feature in enumerate(features):
        features_per_example[feature["example"]].append(i)
    results = []
    for example_index, example in enumerate(examples):
        min_null_prediction = None
        prelim_predictions = []
        for feature_index in features_per_example[example_index]:
            start_logits = start_logits_all[feature_index]
            end_logits = end_logits_all[feature_index]
            offset_mapping = features[feature_index]["offsets"]
            feature_null_score = start_logits[0] + end_logits[0]
            if min_null_prediction is None or min_null_prediction["score"] > feature_null_score:
                min_null_prediction = {"offsets": (0, 0), "score": feature_null_score,
                                       "start_logit": start_logits[0], "end_logit": end_logits[0]}
            start_indexes = np.argsort(start_logits)[-1: -n_best_size - 1: -1].tolist()
            end_indexes = np.argsort(end_logits)[-1: -n_best_size - 1: -1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    if (start_index >= len(offset_mapping) or end_index >= len(offset_mapping)
                            or offset_mapping[start_index] is None or offset_mapping[end_index] is None):
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    prelim_predictions.append({
                        "offsets": (offset_mapping[start_index][0], offset_mapping[end_index][1]),
                        "score": start_logits[start_index] + end_logits[end_index],
                        "start_logit": start_logits[start_index], "end_logit": end_logits[end_index]})
        if version_2_with_negative and min_null_prediction is not None:
            prelim_predictions.append(min_null_prediction)
            null_score = min_null_prediction["score"]
        predictions = sorted(prelim_predictions, key=lambda x: x["score"], reverse=True)[:n_best_size]
        if (version_2_with_negative and min_null_prediction is not None
                and not any(p["offsets"] == (0, 0) for p in predictions)):
            predictions.append(min_null_prediction)
        context = example["context"]
        for pred in predictions:
            pred["start"], pred["end"] = pred.pop("offsets")
            pred["text"] = context[pred["start"]: pred["end"]]
        if len(predictions) == 0 or (len(predictions) == 1 and predictions[0]["text"] == ""):
            predictions.insert(0, {"text": "empty", "start_logit": np.float32(0), "end_logit": np.float32(0),
                                   "score": np.float32(0), "start": 0, "end": 0})
        scores = np.array([pred["score"] for pred in predictions])
        exp_scores = np.exp(scores - np.max(scores))
        probs = exp_scores / exp_scores.sum()
        result = {"id": example["id"], "nbest": [
            {"text": p["text"], "start": p["start"], "end": p["end"], "score": float(p["score"]),
             "start_logit": float(p["start_logit"]), "end_logit": float(p["end_logit"]), "probability": float(q)}
            for p, q in zip(predictions, probs)]}
        if not version_2_with_negative:
            result["prediction"] = predictions[0]["text"]
        else:
            i = 0
            while predictions[i]["text"] == "":
                i += 1
            best = predictions[i]
            score_diff = null_score - best["start_logit"] - best["end_logit"]
            result["null_score_diff"] = float(score_diff)
            result["prediction"] = "" if score_diff > NULL_SCORE_DIFF_THRESHOLD else best["text"]
        results.append(result)
    return results


# MARK: - Pipeline (transformers 4.x QuestionAnsweringPipeline.postprocess, fast tokenizer, align_to_words)

def pipeline(examples, features, start_logits_all, end_logits_all, handle_impossible_answer):
    # select_starts_ends and decode_spans survive in transformers 5 in the document QA pipeline, unchanged.
    from transformers.pipelines.document_question_answering import select_starts_ends
    results = []
    for example_index, example in enumerate(examples):
        min_null_score = 1000000
        answers = []
        for feature_index, feature in enumerate(features):
            if feature["example"] != example_index:
                continue
            # p_mask: 1 outside the context, except [CLS].
            p_mask = np.array([0 if s == 1 else 1 for s in feature["_sequence_ids"]])
            p_mask[feature["input_ids"].index(101)] = 0
            attention_mask = np.ones((1, len(p_mask)), dtype=np.int64)
            start = start_logits_all[feature_index][None]
            end = end_logits_all[feature_index][None]
            starts, ends, scores, min_null_score = select_starts_ends(
                start, end, p_mask, attention_mask, min_null_score, PIPELINE_TOP_K, handle_impossible_answer,
                PIPELINE_MAX_ANSWER_LENGTH)
            enc = feature["_encoding"]
            for s, e, score in zip(starts, ends, scores):
                start_word = enc.token_to_word(s)
                end_word = enc.token_to_word(e)
                start_index = enc.word_to_chars(start_word, sequence_index=1)[0]
                end_index = enc.word_to_chars(end_word, sequence_index=1)[1]
                answers.append({"score": score.item(), "start": start_index, "end": end_index,
                                "answer": example["context"][start_index:end_index]})
        if handle_impossible_answer:
            answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda x: x["score"], reverse=True)[:PIPELINE_TOP_K]
        results.append({"id": example["id"], "answers": answers})
    return results


# MARK: - Metrics (the official SQuAD evaluation scripts' rules)

def normalize_answer(text):
    """Lower case, drop ASCII punctuation, drop the articles a/an/the as whole words, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(gold_tokens, prediction_tokens):
    common = collections.Counter(gold_tokens) & collections.Counter(prediction_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(prediction_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def score_v1(data, predictions):
    """v1.1: max over the gold answers; a question without a prediction counts as 0."""
    rows, exact, f1, total = [], 0.0, 0.0, 0
    for example in data:
        total += 1
        if example["id"] not in predictions:
            continue
        prediction = predictions[example["id"]]
        golds = [a["text"] for a in example["answers"]]
        em = max((float(normalize_answer(prediction) == normalize_answer(g)) for g in golds), default=0.0)
        f = max((token_f1(normalize_answer(g).split(), normalize_answer(prediction).split()) for g in golds),
                default=0.0)
        rows.append({"id": example["id"], "exact": em, "f1": f})
        exact += em
        f1 += f
    return {"exact": 100.0 * exact / total, "f1": 100.0 * f1 / total, "total": total, "questions": rows}


def score_v2(data, predictions):
    """v2.0: gold answers that normalise to nothing are dropped; no gold answer means the only right
    answer is the empty string; F1 is 1 when gold and prediction are both empty, 0 when one is."""
    def tokens(text):
        return normalize_answer(text).split() if text else []

    def f1_v2(gold, prediction):
        gold_tokens, prediction_tokens = tokens(gold), tokens(prediction)
        if not gold_tokens or not prediction_tokens:
            return float(gold_tokens == prediction_tokens)
        return token_f1(gold_tokens, prediction_tokens)

    rows = []
    for example in data:
        golds = [a["text"] for a in example["answers"] if normalize_answer(a["text"])] or [""]
        prediction = predictions[example["id"]]
        rows.append({"id": example["id"], "has_answer": bool(example["answers"]),
                     "exact": max(float(normalize_answer(g) == normalize_answer(prediction)) for g in golds),
                     "f1": max(f1_v2(g, prediction) for g in golds)})

    def summary(subset):
        if not subset:  # the official script leaves out an empty HasAns / NoAns group
            return None
        return {"exact": 100.0 * sum(r["exact"] for r in subset) / len(subset),
                "f1": 100.0 * sum(r["f1"] for r in subset) / len(subset), "total": len(subset)}
    result = summary(rows)
    result["has_answer"] = summary([r for r in rows if r["has_answer"]])
    result["no_answer"] = summary([r for r in rows if not r["has_answer"]])
    result["questions"] = rows
    return result


METRIC_PREDICTIONS = {
    "swift-introduced": "in June, 2014!",
    "swift-designer": "Lattner",
    "swift-5": "The ABI stability",
    "swift-license": "an Apache license 2.0",
    "swift-vapor": "projects such as Vapor",
    "swift-kotlin": "",
    "world-beijing": "BEIJING",
    "world-dessert": "Crème Brûlée",
    "world-ferries": "the ferries",
    "world-fare": "",
    "world-lima": "Zürich",
    "capital-last-token": "Paris.",
    "capital-none": "",
}
# Normalisation cases scored against single gold answers (v1.1 and v2.0 rules).
NORMALIZATION_PAIRS = [
    ("The Cat", "cat"), ("a  b   c", "b c"), ("the", ""), ("An apple", "apple"), ("theory", "ory"),
    ("café—the end", "café end"), ("ÉCOLE", "école"), ("x_the_y", "x_the_y"), ("naïve the", "naïve"),
    ("A.B.C.", "abc"), ("tab\tand\nnewline", "tab and newline"), ("", ""), ("¿Qué?", "¿qué"),
    ("the the the", ""), ("ΟΔΟΣ", "οδος"), ("one two two", "two one"), ("1,000", "1000"),
]


def main():
    from transformers import BertTokenizer, BertTokenizerLegacy
    staging = tempfile.mkdtemp()
    try:
        # transformers 5's BertTokenizer(vocab_file=...) ignores the file: load the directory instead.
        shutil.copyfile(VOCAB, os.path.join(staging, "vocab.txt"))
        fast = BertTokenizer.from_pretrained(staging, do_lower_case=True, model_max_length=512)
        legacy = BertTokenizerLegacy(vocab_file=VOCAB, do_lower_case=True)
    finally:
        shutil.rmtree(staging)
    if not fast.is_fast:
        sys.exit("expected the Rust (fast) BERT tokenizer")
    os.makedirs(FIXTURES, exist_ok=True)

    def write(name, value):
        with open(os.path.join(FIXTURES, name), "w", encoding="utf-8") as f:
            json.dump(value, f, ensure_ascii=False, indent=1)
            f.write("\n")

    cases = []
    for text in OFFSET_TEXTS:
        encoding = fast(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoding["input_ids"]
        # The Swift tokenizer follows the pure-Python one; the fixtures hold texts where both agree
        # (they differ on a final capital sigma, which only the pure-Python one lower-cases to ς).
        if ids != legacy.encode(text, add_special_tokens=False):
            sys.exit(f"fast and legacy tokenizers disagree on {text!r}")
        cases.append({"text": text, "ids": ids, "offsets": [list(o) for o in encoding["offset_mapping"]],
                      "words": encoding.word_ids()})
    write("offsets.json", {"cases": cases})

    data = dataset()
    write("squad.json", data)
    examples = list(examples_of(data))
    features = prepare_features(fast, examples)
    write("features.json", {
        "max_length": MAX_LENGTH, "doc_stride": DOC_STRIDE,
        "features": [{k: v for k, v in f.items() if not k.startswith("_")} for f in features]})

    rng = np.random.RandomState(SEED)
    start_logits = [rng.normal(0, 3, len(f["input_ids"])).astype(np.float32) for f in features]
    end_logits = [rng.normal(0, 3, len(f["input_ids"])).astype(np.float32) for f in features]
    # Make gold spans likely, and [CLS] for unanswerable questions, so that decoding returns real
    # answers and no-answers, not only noise.
    for f, s, e in zip(features, start_logits, end_logits):
        if f["start_position"] > 0:
            s[f["start_position"]] += np.float32(8)
            e[f["end_position"]] += np.float32(8)
        if not examples[f["example"]]["answers"]:
            s[0] += np.float32(9)
            e[0] += np.float32(9)
    write("decoding.json", {
        "n_best_size": N_BEST_SIZE, "max_answer_length": MAX_ANSWER_LENGTH,
        "null_score_diff_threshold": NULL_SCORE_DIFF_THRESHOLD,
        "start_logits": [[float(x) for x in s] for s in start_logits],
        "end_logits": [[float(x) for x in e] for e in end_logits],
        "v1": postprocess(examples, features, start_logits, end_logits, False),
        "v2": postprocess(examples, features, start_logits, end_logits, True),
        # Few candidates, so that some examples have none (the "empty" answer) or only the null one.
        "narrow_n_best_size": NARROW[0], "narrow_max_answer_length": NARROW[1],
        "v1_narrow": postprocess(examples, features, start_logits, end_logits, False, *NARROW),
        "v2_narrow": postprocess(examples, features, start_logits, end_logits, True, *NARROW),
        "pipeline_top_k": PIPELINE_TOP_K, "pipeline_max_answer_length": PIPELINE_MAX_ANSWER_LENGTH,
        "pipeline": pipeline(examples, features, start_logits, end_logits, False),
        "pipeline_impossible": pipeline(examples, features, start_logits, end_logits, True),
    })

    pairs = [{"prediction": p, "gold": g, "normalized": normalize_answer(p),
              "exact": float(normalize_answer(p) == normalize_answer(g)),
              "f1_v1": token_f1(normalize_answer(g).split(), normalize_answer(p).split()),
              "f1_v2": score_v2([{"id": "x", "answers": [{"text": g}] if g else []}], {"x": p})["f1"] / 100}
             for p, g in NORMALIZATION_PAIRS]
    partial = {k: v for k, v in METRIC_PREDICTIONS.items() if k != "swift-designer"}
    write("metrics.json", {
        "predictions": METRIC_PREDICTIONS,
        "v1": score_v1(examples, METRIC_PREDICTIONS),
        "v1_missing_designer": score_v1(examples, partial),
        "v2": score_v2(examples, METRIC_PREDICTIONS),
        "pairs": pairs,
    })
    print(f"{len(cases)} offset cases, {len(examples)} questions, {len(features)} windows -> {FIXTURES}")


if __name__ == "__main__":
    main()
