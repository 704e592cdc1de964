#!/usr/bin/env python3
"""Reference fixtures for SwiftBERT's fine-tuning heads, computed with Hugging Face transformers on CPU.

Run:  venv/bin/python scripts/make_head_fixtures.py   (torch 2.13 CPU, transformers 5.24)
Writes into Tests/TransformerTests/Fixtures/heads/ (the whole folder stays under 1.5 MB), then loads every
file back and recomputes it (section 4). Deterministic (fixed torch seeds, one thread): every value is the
same on each run, only the order of the metadata keys in a safetensors header may differ (the library keeps
them in a hash map). The tests only read the files, Python is never needed at test time. Token ids 0 [PAD],
2 [CLS], 3 [SEP] in the parity models' toy vocabularies; the HF directories use hf-tiny's real vocabulary.

1. Parity fixtures `<case>.safetensors`, one per head and loss, all tensors little-endian:
     param.<HF name>        F32  every parameter of the head class under its Hugging Face name, as
                                 `named_parameters()` lists them (checked equal to the keys `save_pretrained`
                                 writes; no head has tied weights). Random values (not HF's init) so that every
                                 parameter matters, biases and LayerNorm included.
     input.input_ids        I64  [B, T]  ([B, NC, T] for multiple choice)
     input.token_type_ids   I64  same shape; 0 for the first segment and the padding, 1 for the second
     input.attention_mask   I64  same shape; 1 real token, 0 padding (every batch has padding)
     input.labels           see the cases
     input.start_positions, input.end_positions   I64 [B]  (qa only)
     expect.logits          F32  (qa: expect.start_logits and expect.end_logits, F32 [B, T])
     expect.loss            F32  [1]  the loss transformers' forward returns (`model(..., labels=...).loss`)
     expect.loss_sum        F32  [1]  the same loss as a sum; expect.loss = loss_sum / normalizer
     grad.<HF name>         F32  gradient of expect.loss for every param.<HF name>
   Metadata (`__metadata__`, strings):
     config       the config.json transformers writes for the model (architectures, num_labels via
                  id2label/label2id, problem_type, classifier_dropout 0, dropout probabilities 0, ...)
     normalizer   "<what>=<count>": the divisor of loss_sum, i.e. what SwiftBERT's global count counts
     description  one line about the case
   Every model is float32, in train() mode with every dropout probability 0 (classifier_dropout 0 too), so
   the forward pass is the deterministic one and the gradients are those of training. The cases, all with
   2 layers (sizes: hidden C / attention heads / intermediate / vocab V / max positions):
     seqcls_single  BertForSequenceClassification, problem_type single_label_classification, 3 labels;
                    40 / 5 of 8 / 48 / 97 / 14, gelu; B=4, T=14, sentence pairs
                    ([CLS] A [SEP] B [SEP], token types 0/1), padding in three rows.
                    labels I64 [B]; logits [B, 3]; loss = mean cross-entropy; normalizer sequence_count=4.
     seqcls_multi   multi_label_classification, 4 labels; 32 / 4 of 8 / 40 / 83 / 12, gelu_new, single texts;
                    B=4, T=12.
                    labels F32 [B, 4] multi-hot; loss = BCE-with-logits mean over all B*4 entries;
                    normalizer label_count=16 (the sum is over every entry).
     seqcls_regr    regression, num_labels 1; 32 / 2 of 16 / 40 / 71 / 13, relu, layer_norm_eps 1e-6, pairs;
                    B=3, T=13.
                    labels F32 [B]; logits [B, 1]; loss = MSE mean; normalizer sequence_count=3.
     tokcls         BertForTokenClassification (no pooler), 5 labels; 32 / 4 of 8 / 40 / 89 / 16, gelu; B=3, T=16.
                    labels I64 [B, T] with -100 at [CLS], [SEP], the padding and the non-first WordPieces of
                    words (random positions); logits [B, T, 5]; loss = cross-entropy mean over the labelled
                    tokens; normalizer labelled_token_count=<number of labels != -100>.
     qa             BertForQuestionAnswering (no pooler, qa_outputs [2, C]); 36 / 3 of 12 / 40 / 79 / 15, gelu;
                    B=4, T=15, question = segment 0, context = segment 1; start/end positions inside the
                    context, one example 0/0 (no answer: the [CLS] position); none is out of range, so
                    HF's clamp/ignore_index never applies. loss = (mean start CE + mean end CE) / 2;
                    loss_sum = start CE sum + end CE sum; normalizer position_count=8 (2 B).
     mc             BertForMultipleChoice (pooler -> classifier [1, C]); 32 / 4 of 8 / 40 / 73 / 12, gelu; B=2 examples
                    x NC=3 choices, T=12, each choice a pair (context, choice), padding inside the choices.
                    labels I64 [B] (index of the right choice); logits [B, NC]; loss = mean CE over examples;
                    normalizer example_count=2. grad.classifier.bias is 0 (exactly, here): a bias shared by every
                    choice cancels in the softmax.

2. `layouts.json`: what transformers writes and reads for each head, for a tiny config (vocab 40, hidden 16,
   2 layers, 2 heads, intermediate 32, max positions 24):
     {"transformers_version", "config": <those sizes>,
      "heads": {<class name>: {
          "labels":      the label names used (NEG/POS; O/B-PER/I-PER/B-LOC/I-LOC; none for QA and MC),
          "pooler":      whether the class builds bert.pooler (token classification and QA are built with
                         add_pooling_layer=False),
          "tensors":     {name: {"shape": [...], "dtype": "F32"}} of the model.safetensors save_pretrained writes,
          "config":      the full config.json save_pretrained writes (architectures, id2label with string keys,
                         label2id, problem_type, classifier_dropout, ...),
          "new_head":    {name: {"init": "normal(0, initializer_range)" | "zeros", "mean", "std", "max_abs"}}
                         for the head tensors from_pretrained initialises when loading a BertForPreTraining
                         checkpoint (the statistics measured on a hidden-64 model with initializer_range 0.05, so
                         a std near 0.05 shows the rule reads the config),
          "from_pretraining": {"missing_keys", "unexpected_keys", "mismatched_keys"}: the loading info
                         (`from_pretrained(..., output_loading_info=True)`) of a BertForPreTraining checkpoint
                         (save_pretrained of BertForPreTraining, i.e. what SwiftBERT's pre-training writes)
                         loaded into this class: missing = newly initialised, unexpected = discarded}},
      "problem_types": {"multi_label_classification": <config.json>, "regression": <config.json>}:
                         BertForSequenceClassification's config.json for the other two problem types
                         (labels toxic/obscene/insult; regression with num_labels 1)}

3. Hugging Face directories for `swiftbert predict`, each written by save_pretrained (config.json,
   model.safetensors) with hf-tiny's tokenizer: vocab.txt (the 2,506-token subset of bert-base-uncased),
   tokenizer_config.json and tokenizer.json are symbolic links to ../../hf-tiny/ (as hf-tiny-cleanup links;
   copies would not fit the size limit). Hidden 8, 2 heads, 2 layers, intermediate 16, max positions 64,
   vocab 2,506, random weights (the script stops if a ranking has a near-tie below 1e-4):
     hf-seqcls/  BertForSequenceClassification, id2label {0: NEG, 1: POS}, problem_type single_label_classification.
       pipeline-text-classification.json  [{"input": text or {"text", "text_pair"}, "arguments": {} | {"top_k": null},
                                            "output": <pipeline("text-classification") output>}]
                                           arguments {}: the top label only, as a list of one {label, score},
                                           except for a pair, where transformers returns the dict itself;
                                           top_k null: every label, sorted by score. Both labels occur as top.
     hf-tokcls/  BertForTokenClassification, id2label O, B-PER, I-PER, B-LOC, I-LOC (no pooler); all four
                 entity tags occur in the answers, and "simple" merges an I- token into the group before it.
       pipeline-token-classification.json [{"text", "aggregation_strategy": "simple" | "none",
                                            "output": <pipeline("token-classification") output>}]
                                           ("O" tokens dropped, pipeline's default ignore_labels;
                                            simple: entity_group, score, word, start, end;
                                            none: entity, score, index, word, start, end)
     hf-qa/      BertForQuestionAnswering (no pooler).
       pipeline-question-answering.json   [{"question", "context", "arguments": {max_seq_len, doc_stride,
                                            max_answer_len, top_k, handle_impossible_answer}, "windows": n,
                                            "output": {"score", "start", "end", "answer"} or a list of them}]
       Five calls: the three question/context pairs with max_seq_len 48, doc_stride 16, max_answer_len 15,
       top_k 1, handle_impossible_answer false (the third context is longer than 48 tokens: 2 windows);
       the third again with top_k 3; the first again with handle_impossible_answer true (the null answer wins).
       transformers 5.24 removed the "question-answering" pipeline, so the answers come from
       `qa_pipeline` below: transformers 4.x's QuestionAnsweringPipeline (fast tokenizer, question first)
       on the 5.24 library: tokenizer(question, context, truncation="only_second", max_length=max_seq_len,
       stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True) gives the windows;
       p_mask 1 on the question and specials but not [CLS]; each window through the model; transformers'
       own `select_starts_ends` (still shipped in 5.24 for document QA) gives each window's top_k best spans
       (probabilities from a softmax over the window's unmasked tokens, score p_start * p_end, spans of at most
       max_answer_len tokens, [CLS] excluded); a span maps to
       characters through its first and last token's words (token_to_word, word_to_chars); the null answer
       (score = min over windows of p_start[CLS] * p_end[CLS], start = end = 0, answer "") only with
       handle_impossible_answer; the answers of all windows sorted by score, the first top_k kept (one
       answer: a dict, several: a list).

4. Verification (run after writing): every parity fixture is loaded back, its model rebuilt from the
   metadata config and the param.* tensors, forward and backward run again and compared with expect.*,
   grad.* and loss_sum / normalizer; every layout entry is re-read from a fresh save_pretrained; every HF
   directory is loaded with from_pretrained and its pipeline answers recomputed and compared.
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import transformers
from transformers import (BertConfig, BertForMultipleChoice, BertForPreTraining, BertForQuestionAnswering,
                          BertForSequenceClassification, BertForTokenClassification, BertTokenizer, pipeline)
from transformers.pipelines.document_question_answering import select_starts_ends

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_transformer_fixtures import randomize  # noqa: E402  (same parameter randomisation as the encoder fixtures)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "TransformerTests", "Fixtures")
OUT = os.path.join(FIXTURES, "heads")
HF_TINY = os.path.join(FIXTURES, "hf-tiny")
TOKENIZER_FILES = ["vocab.txt", "tokenizer_config.json", "tokenizer.json"]
PAD, CLS, SEP = 0, 2, 3
SIZE_LIMIT = 1_500_000

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()


def small_config(**overrides):
    values = dict(num_hidden_layers=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  classifier_dropout=0.0, attn_implementation="eager")
    values.update(overrides)
    return BertConfig(**values)


def written_config(model):
    """The config.json (and tensor names) save_pretrained writes for `model`."""
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        with safe_open(os.path.join(directory, "model.safetensors"), framework="pt") as f:
            tensors = {key: (list(f.get_slice(key).get_shape()), f.get_slice(key).get_dtype()) for key in f.keys()}
    return config, tensors


# MARK: - 1. Parity fixtures

def segments(generator, row_ids, row_types, length, V, pair):
    """[CLS] A [SEP] (B [SEP]) of `length` tokens into one row; token type 1 on the second segment."""
    row_ids[:length] = torch.randint(5, V, (length,), generator=generator)
    row_ids[0], row_ids[length - 1] = CLS, SEP
    if pair:
        split = int(torch.randint(2, length - 2, (1,), generator=generator))
        row_ids[split] = SEP
        row_types[split + 1:length] = 1
        return split
    return None


def encoder_inputs(generator, lengths, T, V, pair):
    B = len(lengths)
    ids = torch.full((B, T), PAD, dtype=torch.int64)
    types = torch.zeros(B, T, dtype=torch.int64)
    mask = torch.zeros(B, T, dtype=torch.int64)
    splits = []
    for b, length in enumerate(lengths):
        splits.append(segments(generator, ids[b], types[b], length, V, pair))
        mask[b, :length] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}, splits


def loss_sum_seqcls(problem_type):
    def loss_sum(outputs, inputs):
        logits, labels = outputs.logits, inputs["labels"]
        if problem_type == "single_label_classification":
            return F.cross_entropy(logits, labels, reduction="sum"), f"sequence_count={labels.numel()}"
        if problem_type == "multi_label_classification":
            return (F.binary_cross_entropy_with_logits(logits, labels, reduction="sum"),
                    f"label_count={labels.numel()}")
        return F.mse_loss(logits.squeeze(-1), labels, reduction="sum"), f"sequence_count={labels.numel()}"
    return loss_sum


def loss_sum_tokcls(outputs, inputs):
    labels = inputs["labels"]
    total = F.cross_entropy(outputs.logits.reshape(-1, outputs.logits.shape[-1]), labels.reshape(-1),
                            ignore_index=-100, reduction="sum")
    return total, f"labelled_token_count={int((labels != -100).sum())}"


def loss_sum_qa(outputs, inputs):
    starts, ends = inputs["start_positions"], inputs["end_positions"]
    total = (F.cross_entropy(outputs.start_logits, starts, reduction="sum")
             + F.cross_entropy(outputs.end_logits, ends, reduction="sum"))
    return total, f"position_count={starts.numel() + ends.numel()}"


def loss_sum_mc(outputs, inputs):
    labels = inputs["labels"]
    return F.cross_entropy(outputs.logits, labels, reduction="sum"), f"example_count={labels.numel()}"


def case_seqcls_single(generator, V):
    inputs, _ = encoder_inputs(generator, [14, 11, 8, 12], 14, V, pair=True)
    inputs["labels"] = torch.tensor([0, 2, 1, 2])
    return inputs


def case_seqcls_multi(generator, V):
    inputs, _ = encoder_inputs(generator, [12, 7, 10, 12], 12, V, pair=False)
    inputs["labels"] = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 0], [0, 1, 0, 1]], dtype=torch.float32)
    return inputs


def case_seqcls_regr(generator, V):
    inputs, _ = encoder_inputs(generator, [13, 9, 11], 13, V, pair=True)
    inputs["labels"] = 2.0 * torch.randn(3, generator=generator)
    return inputs


def case_tokcls(generator, V):
    lengths = [16, 12, 9]
    inputs, _ = encoder_inputs(generator, lengths, 16, V, pair=False)
    labels = torch.randint(0, 5, (3, 16), generator=generator)
    continuation = torch.rand(3, 16, generator=generator) < 0.25  # non-first WordPieces of words
    continuation[:, 1] = False  # the first word's first piece
    for b, length in enumerate(lengths):
        labels[b, 0] = labels[b, length - 1] = -100
        labels[b, length:] = -100
    labels[continuation] = -100
    inputs["labels"] = labels
    return inputs


def case_qa(generator, V):
    inputs, splits = encoder_inputs(generator, [15, 12, 10, 14], 15, V, pair=True)
    lengths = inputs["attention_mask"].sum(1).tolist()
    starts, ends = [], []
    for b, (split, length) in enumerate(zip(splits, lengths)):
        if b == 2:
            starts.append(0), ends.append(0)  # no answer: both positions on [CLS]
            continue
        first, last = split + 1, length - 2  # context tokens, without the final [SEP]
        start = int(torch.randint(first, last + 1, (1,), generator=generator))
        end = int(torch.randint(start, min(last, start + 3) + 1, (1,), generator=generator))
        starts.append(start), ends.append(end)
    inputs["start_positions"] = torch.tensor(starts)
    inputs["end_positions"] = torch.tensor(ends)
    return inputs


def case_mc(generator, V):
    B, NC, T = 2, 3, 12
    flat, _ = encoder_inputs(generator, [12, 9, 10, 7, 11, 12], T, V, pair=True)
    inputs = {key: value.reshape(B, NC, T) for key, value in flat.items()}
    inputs["labels"] = torch.tensor([2, 0])
    return inputs


PARITY_CASES = [
    ("seqcls_single", BertForSequenceClassification, case_seqcls_single,
     loss_sum_seqcls("single_label_classification"),
     "BertForSequenceClassification single-label, 3 labels, sentence pairs, hidden 40, padding",
     dict(vocab_size=97, hidden_size=40, num_attention_heads=5, intermediate_size=48, max_position_embeddings=14,
          num_labels=3, problem_type="single_label_classification"), 5101),
    ("seqcls_multi", BertForSequenceClassification, case_seqcls_multi,
     loss_sum_seqcls("multi_label_classification"),
     "BertForSequenceClassification multi-label (BCE), 4 labels, single texts, gelu_new, padding",
     dict(vocab_size=83, hidden_size=32, num_attention_heads=4, intermediate_size=40, max_position_embeddings=12,
          hidden_act="gelu_new", num_labels=4, problem_type="multi_label_classification"), 5202),
    ("seqcls_regr", BertForSequenceClassification, case_seqcls_regr, loss_sum_seqcls("regression"),
     "BertForSequenceClassification regression (MSE), num_labels 1, pairs, relu, eps 1e-6, padding",
     dict(vocab_size=71, hidden_size=32, num_attention_heads=2, intermediate_size=40, max_position_embeddings=13,
          hidden_act="relu", layer_norm_eps=1e-6, num_labels=1, problem_type="regression"), 5303),
    ("tokcls", BertForTokenClassification, case_tokcls, loss_sum_tokcls,
     "BertForTokenClassification, 5 labels, -100 on specials, padding and non-first pieces",
     dict(vocab_size=89, hidden_size=32, num_attention_heads=4, intermediate_size=40, max_position_embeddings=16,
          num_labels=5), 5404),
    ("qa", BertForQuestionAnswering, case_qa, loss_sum_qa,
     "BertForQuestionAnswering, question/context pairs, one no-answer (0/0), hidden 36, padding",
     dict(vocab_size=79, hidden_size=36, num_attention_heads=3, intermediate_size=40, max_position_embeddings=15),
     5505),
    ("mc", BertForMultipleChoice, case_mc, loss_sum_mc,
     "BertForMultipleChoice, 2 examples x 3 choices, padding inside the choices",
     dict(vocab_size=73, hidden_size=32, num_attention_heads=4, intermediate_size=40, max_position_embeddings=12),
     5606),
]


def run_case(model, inputs, loss_sum):
    """transformers' own forward and loss, backward; the loss recomputed as a sum for SwiftBERT's normaliser."""
    model.zero_grad(set_to_none=True)
    outputs = model(**inputs)
    outputs.loss.backward()
    with torch.no_grad():
        total, normalizer = loss_sum(outputs, inputs)
    count = int(normalizer.split("=")[1])
    assert torch.allclose(total / count, outputs.loss, rtol=1e-6, atol=1e-7), (total / count, outputs.loss)
    return outputs, total, normalizer


def parity_fixture(name, cls, make_inputs, loss_sum, description, sizes, seed):
    torch.manual_seed(seed)
    model = cls(small_config(**sizes))
    randomize(model, seed + 1, 0.2)
    model.train()  # dropout probabilities are 0: deterministic, with training-mode semantics
    inputs = make_inputs(torch.Generator().manual_seed(seed + 2), sizes["vocab_size"])
    outputs, total, normalizer = run_case(model, inputs, loss_sum)
    config, written = written_config(model)
    assert set(written) == {key for key, _ in model.named_parameters()}, f"{name}: save_pretrained names differ"

    tensors = {}
    for key, value in model.named_parameters():
        tensors["param." + key] = value.detach().clone().contiguous()
        tensors["grad." + key] = value.grad.detach().clone().contiguous()
    for key, value in inputs.items():
        tensors["input." + key] = value.contiguous()
    for key in ["logits", "start_logits", "end_logits"]:
        if getattr(outputs, key, None) is not None:
            tensors["expect." + key] = getattr(outputs, key).detach().contiguous()
    tensors["expect.loss"] = outputs.loss.detach().reshape(1)
    tensors["expect.loss_sum"] = total.reshape(1)
    metadata = {"config": json.dumps(config, sort_keys=True), "normalizer": normalizer, "description": description}
    path = os.path.join(OUT, name + ".safetensors")
    save_file(tensors, path, metadata=metadata)
    print(f"{path}: loss {outputs.loss.item():.6f}, {normalizer} ({os.path.getsize(path)} bytes)")


def verify_parity():
    for name, cls, _, loss_sum, _, _, _ in PARITY_CASES:
        path = os.path.join(OUT, name + ".safetensors")
        tensors = load_file(path)
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata()
        config = BertConfig.from_dict(json.loads(metadata["config"]))
        assert config.architectures == [cls.__name__], config.architectures
        assert config.hidden_dropout_prob == config.attention_probs_dropout_prob == config.classifier_dropout == 0
        config._attn_implementation = "eager"
        model = cls(config)
        params = {key[len("param."):]: value for key, value in tensors.items() if key.startswith("param.")}
        missing, unexpected = model.load_state_dict(params, strict=False)
        assert not unexpected and all(key.startswith("bert.embeddings.") and "_ids" in key for key in missing), \
            (missing, unexpected)
        model.train()
        inputs = {key[len("input."):]: value for key, value in tensors.items() if key.startswith("input.")}
        mask = inputs["attention_mask"]
        assert (mask == 0).any() and ((mask == 0) | (mask == 1)).all(), f"{name}: the batch must have padding"
        outputs, total, normalizer = run_case(model, inputs, loss_sum)
        assert normalizer == metadata["normalizer"], (normalizer, metadata["normalizer"])
        for key in ["logits", "start_logits", "end_logits"]:
            if "expect." + key in tensors:
                assert torch.equal(getattr(outputs, key), tensors["expect." + key]), f"{name}: {key}"
        assert torch.equal(outputs.loss.reshape(1), tensors["expect.loss"]), f"{name}: loss"
        assert torch.equal(total.reshape(1), tensors["expect.loss_sum"]), f"{name}: loss_sum"
        for key, value in model.named_parameters():
            assert torch.equal(value.grad, tensors["grad." + key]), f"{name}: grad.{key}"
            # The multiple-choice bias adds the same to every choice, so softmax cross-entropy ignores it.
            if not (name == "mc" and key == "classifier.bias"):
                assert value.grad.abs().max() > 0, f"{name}: grad.{key} is zero, the parameter does not matter"
        print(f"verified {name}: {len(params)} parameters, logits, loss and gradients recomputed")


# MARK: - 2. Layouts

HEADS = [
    (BertForSequenceClassification, ["NEG", "POS"], {"problem_type": "single_label_classification"}),
    (BertForTokenClassification, ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], {}),
    (BertForQuestionAnswering, None, {}),
    (BertForMultipleChoice, None, {}),
]
LAYOUT_SIZES = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                    max_position_embeddings=24)


def label_settings(labels):
    if labels is None:
        return {}
    return {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}


def head_layout(cls, labels, settings):
    config = BertConfig(**LAYOUT_SIZES, **label_settings(labels), **settings)
    torch.manual_seed(6001)
    written, tensors = written_config(cls(config))
    return {
        "labels": labels,
        "pooler": any(name.startswith("bert.pooler.") for name in tensors),
        "tensors": {name: {"shape": shape, "dtype": dtype} for name, (shape, dtype) in sorted(tensors.items())},
        "config": written,
    }


def loading_report(cls, labels, settings):
    """Load a BertForPreTraining checkpoint into `cls`: loading info and statistics of the new head tensors."""
    sizes = dict(LAYOUT_SIZES, hidden_size=64, num_attention_heads=4, intermediate_size=64, initializer_range=0.05)
    with tempfile.TemporaryDirectory() as directory:
        torch.manual_seed(6002)
        BertForPreTraining(BertConfig(**sizes)).save_pretrained(directory)
        torch.manual_seed(6003)
        model, info = cls.from_pretrained(directory, output_loading_info=True, **label_settings(labels), **settings)
    new_head = {}
    parameters = dict(model.named_parameters())
    for name in sorted(info["missing_keys"]):
        tensor = parameters[name].detach()
        rule = "zeros" if name.endswith(".bias") else "normal(0, initializer_range)"
        if rule == "zeros":
            assert torch.equal(tensor, torch.zeros_like(tensor)), f"{cls.__name__}: {name} is not zero"
        else:
            assert abs(tensor.std().item() - 0.05) < 0.015 and abs(tensor.mean().item()) < 0.02, \
                f"{cls.__name__}: {name} std {tensor.std().item()}"
        new_head[name] = {"init": rule, "mean": tensor.mean().item(), "std": tensor.std().item() if tensor.numel() > 1
                          else 0.0, "max_abs": tensor.abs().max().item()}
    report = {key: sorted(entry if isinstance(entry, str) else entry[0] for entry in info[key])
              for key in ["missing_keys", "unexpected_keys", "mismatched_keys"]}
    return new_head, report


def layout_fixtures():
    record = {"transformers_version": transformers.__version__, "config": LAYOUT_SIZES, "heads": {}}
    for cls, labels, settings in HEADS:
        entry = head_layout(cls, labels, settings)
        entry["new_head"], entry["from_pretraining"] = loading_report(cls, labels, settings)
        record["heads"][cls.__name__] = entry
        print(f"{cls.__name__}: pooler {entry['pooler']}, new {sorted(entry['new_head'])}, "
              f"discarded {entry['from_pretraining']['unexpected_keys']}")
    record["problem_types"] = {
        "multi_label_classification": head_layout(BertForSequenceClassification, ["toxic", "obscene", "insult"],
                                                  {"problem_type": "multi_label_classification"})["config"],
        "regression": head_layout(BertForSequenceClassification, None,
                                  {"num_labels": 1, "problem_type": "regression"})["config"],
    }
    with open(os.path.join(OUT, "layouts.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    return record


def verify_layouts():
    with open(os.path.join(OUT, "layouts.json"), encoding="utf-8") as f:
        record = json.load(f)
    for cls, labels, settings in HEADS:
        entry = record["heads"][cls.__name__]
        fresh = head_layout(cls, labels, settings)
        for key in ["labels", "pooler", "tensors", "config"]:
            assert entry[key] == fresh[key], f"layouts.json {cls.__name__}.{key} differs from a fresh save_pretrained"
        assert entry["pooler"] == (cls not in (BertForTokenClassification, BertForQuestionAnswering))
        assert sorted(entry["new_head"]) == entry["from_pretraining"]["missing_keys"]
    print(f"verified layouts.json: {len(record['heads'])} heads")


# MARK: - 3. HF directories and pipeline answers

TEXTS = [
    "the film was a great success and everyone loved it",
    "i would not go back there again.",
    "Hello, World! This is unbelievably short",
    "she said the food was bad but the service was good",
]
PAIR = {"text": "the man went to the store", "text_pair": "he bought some milk there"}
NER_TEXTS = [
    "john smith went to new york city with mary",
    "the president of france met angela merkel in berlin.",
    "Unbelievably, Zebraphone moved from Paris to London!",
]
QA_CASES = [
    ("who went to the store?", "the man went to the store to buy some milk."),
    ("where is the city?", "the city is in the north of the country, near the river."),
    ("what did they find?",
     "after a long time in the old house, the people of the city came back with the children. they said that "
     "the war was over and the new government would help them. in the end they found a small school near the "
     "river, where the first students had been living for many years before the war."),
]
QA_ARGUMENTS = dict(max_seq_len=48, doc_stride=16, max_answer_len=15, top_k=1, handle_impossible_answer=False)
NEAR_TIE = 1e-4


def hf_directory(name, cls, labels, seed, scale, **settings):
    """A tiny head model with hf-tiny's tokenizer, saved as transformers saves it."""
    directory = os.path.join(OUT, name)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    tokenizer = BertTokenizer.from_pretrained(HF_TINY)
    # Hidden 8 keeps the 2,506-row word embeddings (most of each file) small.
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=64, pad_token_id=0,
                        **label_settings(labels), **settings)
    torch.manual_seed(seed)
    model = cls(config)
    randomize(model, seed + 1, scale)
    model.eval()
    model.save_pretrained(directory)
    # Links, as hf-tiny-cleanup has: copies of hf-tiny's tokenizer would not fit the size limit.
    for file in TOKENIZER_FILES:
        os.symlink(os.path.join("..", "..", "hf-tiny", file), os.path.join(directory, file))
    return directory


def check_gaps(what, scores):
    ranked = sorted((float(s) for s in scores), reverse=True)
    gaps = [a - b for a, b in zip(ranked, ranked[1:])]
    if gaps and min(gaps) < NEAR_TIE:
        sys.exit(f"{what}: near-tie ({min(gaps):.2e}); change the seed")


def plain(value):
    """JSON-ready copy of a pipeline output (numpy scalars to Python numbers)."""
    return json.loads(json.dumps(value, default=lambda x: x.item()))


def text_classification_records(directory):
    classify = pipeline("text-classification", model=directory, tokenizer=directory, device="cpu")
    records = []
    for item in TEXTS + [PAIR]:
        for arguments in [{}, {"top_k": None}]:
            output = plain(classify(item, **arguments))
            check_gaps(f"text-classification {item!r}", [entry["score"] for entry in
                                                          classify(item, top_k=None)])
            records.append({"input": item, "arguments": arguments, "output": output})
    tops = {record["output"][0]["label"] for record in records if isinstance(record["output"], list)}
    assert tops == {"NEG", "POS"}, f"every text gets the same label {tops}; change the seed"
    return records


def token_classification_records(directory):
    tagger = pipeline("token-classification", model=directory, tokenizer=directory, device="cpu")
    records = []
    for text in NER_TEXTS:
        encoded = tagger.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            probabilities = tagger.model(**encoded).logits.softmax(-1)[0]
        for t, row in enumerate(probabilities):
            check_gaps(f"token-classification {text!r} token {t}", row.tolist())
        for strategy in ["simple", "none"]:
            records.append({"text": text, "aggregation_strategy": strategy,
                            "output": plain(tagger(text, aggregation_strategy=strategy))})
    tags = {entity["entity"] for record in records if record["aggregation_strategy"] == "none"
            for entity in record["output"]}
    assert tags == {"B-PER", "I-PER", "B-LOC", "I-LOC"}, f"only the tags {tags} are predicted; change the seed"
    simple, none = records[0::2], records[1::2]
    assert any(len(a["output"]) < len(b["output"]) for a, b in zip(simple, none)), "no group merges tokens"
    return records


def qa_pipeline(model, tokenizer, question, context, max_seq_len, doc_stride, max_answer_len, top_k,
                handle_impossible_answer):
    """transformers 4.x's QuestionAnsweringPipeline (fast tokenizer, question first, align_to_words), which
    transformers 5 removed; returns (output, number of windows)."""
    encoded = tokenizer(question, context, truncation="only_second", max_length=max_seq_len, stride=doc_stride,
                        return_token_type_ids=True, return_overflowing_tokens=True, return_offsets_mapping=True)
    windows = len(encoded["input_ids"])
    min_null_score = 1000000  # large and positive, as the pipeline starts
    answers = []
    for w in range(windows):
        ids = encoded["input_ids"][w]
        p_mask = np.asarray([0 if id_ == tokenizer.cls_token_id else int(sequence != 1)
                             for id_, sequence in zip(ids, encoded.sequence_ids(w))])
        inputs = {key: torch.tensor([encoded[key][w]]) for key in ["input_ids", "token_type_ids", "attention_mask"]}
        with torch.no_grad():
            outputs = model(**inputs)
        attention_mask = np.asarray([encoded["attention_mask"][w]])
        starts, ends, scores, min_null_score = select_starts_ends(
            outputs.start_logits.numpy(), outputs.end_logits.numpy(), p_mask, attention_mask, min_null_score, top_k,
            handle_impossible_answer, max_answer_len)
        encoding = encoded.encodings[w]
        for s, e, score in zip(starts, ends, scores):
            start = encoding.word_to_chars(encoding.token_to_word(s), sequence_index=1)[0]
            end = encoding.word_to_chars(encoding.token_to_word(e), sequence_index=1)[1]
            answers.append({"score": score.item(), "start": start, "end": end, "answer": context[start:end]})
    if handle_impossible_answer:
        answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
    answers = sorted(answers, key=lambda x: x["score"], reverse=True)
    if len(answers) > 1 and answers[0]["score"] - answers[1]["score"] < NEAR_TIE * answers[0]["score"]:
        sys.exit(f"question answering {question!r}: near-tie between the best answers; change the seed")
    answers = answers[:top_k]
    return (answers[0] if len(answers) == 1 else answers), windows


def question_answering_records(directory):
    model = BertForQuestionAnswering.from_pretrained(directory).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    calls = [(question, context, QA_ARGUMENTS) for question, context in QA_CASES]
    calls.append(QA_CASES[2] + (dict(QA_ARGUMENTS, top_k=3),))
    calls.append(QA_CASES[0] + (dict(QA_ARGUMENTS, handle_impossible_answer=True),))
    records = []
    for question, context, arguments in calls:
        output, windows = qa_pipeline(model, tokenizer, question, context, **arguments)
        records.append({"question": question, "context": context, "arguments": arguments, "windows": windows,
                        "output": output})
    assert records[2]["windows"] > 1 and records[0]["windows"] == 1, "the long context must be split in windows"
    return records


HF_DIRECTORIES = [
    ("hf-seqcls", BertForSequenceClassification, ["NEG", "POS"], 7051, {"problem_type": "single_label_classification"},
     "pipeline-text-classification.json", text_classification_records),
    ("hf-tokcls", BertForTokenClassification, ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], 7011, {},
     "pipeline-token-classification.json", token_classification_records),
    ("hf-qa", BertForQuestionAnswering, None, 7201, {}, "pipeline-question-answering.json",
     question_answering_records),
]


def hf_directories():
    for name, cls, labels, seed, settings, answers, records_of in HF_DIRECTORIES:
        directory = hf_directory(name, cls, labels, seed, 0.3, **settings)
        records = records_of(directory)
        with open(os.path.join(directory, answers), "w", encoding="utf-8") as f:
            json.dump(records, f, indent=1, ensure_ascii=False)
        print(f"{directory}: {len(records)} pipeline answers in {answers}")


def verify_hf_directories():
    for name, cls, labels, _, settings, answers, records_of in HF_DIRECTORIES:
        directory = os.path.join(OUT, name)
        for file in TOKENIZER_FILES:
            assert os.path.isfile(os.path.join(directory, file)), f"{name}/{file} does not lead to hf-tiny's file"
        loaded, info = cls.from_pretrained(directory, output_loading_info=True)
        assert not any(info[key] for key in ["missing_keys", "unexpected_keys", "mismatched_keys"]), info
        assert loaded.config.problem_type == settings.get("problem_type")
        assert labels is None or [loaded.config.id2label[i] for i in range(len(labels))] == labels
        with open(os.path.join(directory, answers), encoding="utf-8") as f:
            stored = json.load(f)
        fresh = records_of(directory)
        assert len(stored) == len(fresh)
        for old, new in zip(stored, fresh):
            assert close(old, new), f"{name}/{answers}: {old} != {new}"
        print(f"verified {name}: {len(stored)} pipeline answers recomputed")


def close(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - b) <= 1e-6 * max(1.0, abs(a))
    return a == b


def folder_size():
    total = 0
    for directory, _, files in os.walk(OUT):
        total += sum(os.lstat(os.path.join(directory, file)).st_size for file in files)  # links as git stores them
    return total


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for case in PARITY_CASES:
        parity_fixture(*case)
    layout_fixtures()
    hf_directories()
    verify_parity()
    verify_layouts()
    verify_hf_directories()
    size = folder_size()
    assert size < SIZE_LIMIT, f"{OUT} is {size} bytes, more than {SIZE_LIMIT}"
    print(f"{OUT}: {size} bytes")
