#!/usr/bin/env python3
"""Reference fixtures for SwiftBERT's Transformer module, computed with Hugging Face transformers on CPU.

Run:  /work/venv/bin/python scripts/make_transformer_fixtures.py   (torch 2.13 CPU, transformers 5.24)
Writes into Tests/TransformerTests/Fixtures/. Deterministic (fixed torch seeds, one thread); the tests
only read the files, Python is never needed at test time.

1. Parity fixtures `<name>.safetensors`, one per configuration, all tensors little-endian:
     param.<HF name>        F32  every parameter of BertForPreTraining under its Hugging Face name, as
                                 `named_parameters()` lists them (= the keys `save_pretrained` writes): the
                                 tied `cls.predictions.decoder.weight` (= bert.embeddings.word_embeddings.weight)
                                 and `cls.predictions.decoder.bias` (= cls.predictions.bias) are NOT stored.
                                 Values are random (not HF's init) so that every parameter matters.
     input.input_ids        I64  [B, T]
     input.token_type_ids   I64  [B, T]
     input.attention_mask   I64  [B, T]  1 real token, 0 padding
     input.masked_positions I64  [P]     flat positions b*T + t, batch order
     input.masked_labels    I64  [P]     target token id at each masked position
     input.nsp_labels       I64  [B]
     expect.hidden_states   F32  [B, T, C]  last encoder layer (padding positions included: HF masks padded
                                 keys with the float32 minimum, padded queries still attend to real tokens)
     expect.pooled_output   F32  [B, C]     pooler output (tanh(dense(h[:, 0])))
     expect.mlm_logits      F32  [P, V]     MLM head on the gathered masked positions only
     expect.nsp_logits      F32  [B, K]     K = NSP classes (2, or 3 for the three-way configuration)
     expect.mlm_loss        F32  [1]   sum over masked tokens of cross-entropy / P   (mean over masked tokens)
     expect.nsp_loss        F32  [1]   sum over sequences of cross-entropy / B       (mean over sequences)
     expect.loss            F32  [1]   mlm_loss + nsp_loss
     grad.<HF name>         F32  gradient of expect.loss for every param.<HF name>; the word-embedding gradient
                                 is the full one of the tied parameter (embedding lookup + MLM decoder).
   Metadata (`__metadata__`, strings):
     config       HF config.json keys of the model (plus SwiftBERT's "num_nsp_labels")
     normalizers  "mlm=masked_token_count,nsp=sequence_count"
     description  one line about the case
   Everything is float32; dropout probabilities are 0 and the model is in train() mode, so the forward pass
   is the deterministic one and the gradients are those of training.
   Configurations:
     pad_gelu_h48     hidden 48, 3 heads of 16, 2 layers, intermediate 96, vocab 120, max pos 64, gelu,
                      B=3, T=16, padding in two sequences, NSP 2 classes.
     nsp3_gelunew_h64 hidden 64, 4 heads, 2 layers, intermediate 128, vocab 99, gelu_new, no padding,
                      three-way NSP: HF's BertForPreTraining has a fixed 2-class head, so cls.seq_relationship
                      is replaced by a Linear(64, 3) under the same name and the NSP loss is the same
                      cross-entropy over 3 classes.
     relu_eps6_h40    hidden 40, 5 heads of 8, 1 layer, intermediate 72, vocab 77, relu, layer_norm_eps 1e-6,
                      type_vocab_size 3, B=2, T=12, padding in one sequence.

2. A Hugging Face model directory `hf-tiny/` written by BertForPreTraining.save_pretrained (config.json,
   model.safetensors without the tied decoder keys) plus the tokenizer files (vocab.txt: a
   2,506-token subset of bert-base-uncased's vocabulary, tokenizer_config.json, tokenizer.json), and `hf-tiny-headless/`:
   the same encoder saved by BertModel.save_pretrained (no `bert.` prefix, no pooler-less heads: no cls.*).
   `hf-tiny-cleanup/` links to hf-tiny's model files and sets "clean_up_tokenization_spaces": true in its
   tokenizer_config.json (as bert-base-uncased does); its pipeline answers are hf-tiny-cleanup-fill-mask.json.
   Expected inference results of that model, from transformers itself:
     hf-tiny-fill-mask.json   [{"text": ..., "top_k": K, "output": <pipeline("fill-mask") output>}]
                              (score, token, token_str, sequence; a list of lists for several [MASK]s)
     hf-tiny-embeddings.json  [{"text": ..., "input_ids": [...], "cls": [...], "mean": [...]}]
                              last hidden state of BertModel for the text alone (with [CLS]/[SEP]);
                              cls = the [CLS] row, mean = the mean over all tokens of the text (mask 1).
"""

import json
import os
import shutil
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import transformers
from transformers import BertConfig, BertForPreTraining, BertModel, BertTokenizer, pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "TransformerTests", "Fixtures")
VOCAB = os.path.join(ROOT, "corpus", "vocab.txt")  # BERT-Base uncased

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()


def randomize(model, seed, scale):
    """Random values for every parameter (HF's init leaves biases 0 and LayerNorm 1/0, which would let a
    wrong bias or LayerNorm gain pass unnoticed)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "LayerNorm.weight" in name:
                parameter.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                parameter.copy_(0.1 * noise)
            else:
                parameter.copy_(scale * noise)


def reference_step(model, inputs):
    """Forward over the gathered masked positions + NSP, losses normalised as SwiftBERT does, backward."""
    ids, types, mask = inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"]
    positions, labels, nsp_labels = inputs["masked_positions"], inputs["masked_labels"], inputs["nsp_labels"]
    B, T = ids.shape
    model.zero_grad(set_to_none=True)
    out = model.bert(input_ids=ids, token_type_ids=types, attention_mask=mask)
    hidden = out.last_hidden_state
    pooled = out.pooler_output
    gathered = hidden.reshape(B * T, -1)[positions]
    mlm_logits = model.cls.predictions(gathered)
    nsp_logits = model.cls.seq_relationship(pooled)
    mlm_loss = F.cross_entropy(mlm_logits, labels, reduction="sum") / positions.numel()
    nsp_loss = F.cross_entropy(nsp_logits, nsp_labels, reduction="sum") / B
    loss = mlm_loss + nsp_loss
    loss.backward()
    return hidden, pooled, mlm_logits, nsp_logits, mlm_loss, nsp_loss, loss


def make_inputs(seed, B, T, V, type_vocab, lengths, masked_per_sequence, nsp_classes):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(B, T, dtype=torch.int64)
    types = torch.zeros(B, T, dtype=torch.int64)
    mask = torch.zeros(B, T, dtype=torch.int64)
    positions, labels = [], []
    for b, length in enumerate(lengths):
        ids[b, :length] = torch.randint(5, V, (length,), generator=generator)
        ids[b, 0], ids[b, length - 1] = 2, 3  # [CLS] ... [SEP] (ids 2 and 3 in these toy vocabularies)
        split = length // 2
        types[b, split:length] = torch.randint(1, type_vocab, (1,), generator=generator).item()
        mask[b, :length] = 1
        candidates = torch.randperm(length - 2, generator=generator)[:masked_per_sequence] + 1
        for t in sorted(candidates.tolist()):
            positions.append(b * T + t)
            labels.append(int(ids[b, t]))
            ids[b, t] = 4  # [MASK]
    return {
        "input_ids": ids,
        "token_type_ids": types,
        "attention_mask": mask,
        "masked_positions": torch.tensor(positions, dtype=torch.int64),
        "masked_labels": torch.tensor(labels, dtype=torch.int64),
        "nsp_labels": torch.randint(0, nsp_classes, (B,), generator=generator),
    }


def config_json(config, nsp_classes):
    keys = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
            "type_vocab_size", "initializer_range", "layer_norm_eps"]
    values = {key: getattr(config, key) for key in keys}
    values["num_nsp_labels"] = nsp_classes
    values["model_type"] = "bert"
    values["architectures"] = ["BertForPreTraining"]
    return json.dumps(values, sort_keys=True)


def parity_fixture(name, description, seed, config, B, T, lengths, masked_per_sequence, nsp_classes, scale):
    torch.manual_seed(seed)
    model = BertForPreTraining(config)
    if nsp_classes != 2:
        model.cls.seq_relationship = torch.nn.Linear(config.hidden_size, nsp_classes)
    randomize(model, seed + 1, scale)
    model.train()  # dropout probabilities are 0: deterministic, with training-mode semantics
    inputs = make_inputs(seed + 2, B, T, config.vocab_size, config.type_vocab_size, lengths,
                         masked_per_sequence, nsp_classes)
    hidden, pooled, mlm_logits, nsp_logits, mlm_loss, nsp_loss, loss = reference_step(model, inputs)

    if nsp_classes == 2:
        # Cross-check against HF's own BertForPreTraining loss (labels -100 everywhere but the masked positions).
        labels = torch.full((B * T,), -100, dtype=torch.int64)
        labels[inputs["masked_positions"]] = inputs["masked_labels"]
        with torch.no_grad():
            hf = model(input_ids=inputs["input_ids"], token_type_ids=inputs["token_type_ids"],
                       attention_mask=inputs["attention_mask"], labels=labels.view(B, T),
                       next_sentence_label=inputs["nsp_labels"])
        assert torch.allclose(hf.loss, loss.detach(), atol=1e-5), (hf.loss, loss)

    tensors = {}
    for key, value in model.named_parameters():
        tensors["param." + key] = value.detach().clone().contiguous()
        tensors["grad." + key] = value.grad.detach().clone().contiguous()
    for key, value in inputs.items():
        tensors["input." + key] = value.contiguous()
    tensors["expect.hidden_states"] = hidden.detach().contiguous()
    tensors["expect.pooled_output"] = pooled.detach().contiguous()
    tensors["expect.mlm_logits"] = mlm_logits.detach().contiguous()
    tensors["expect.nsp_logits"] = nsp_logits.detach().contiguous()
    tensors["expect.mlm_loss"] = mlm_loss.detach().reshape(1)
    tensors["expect.nsp_loss"] = nsp_loss.detach().reshape(1)
    tensors["expect.loss"] = loss.detach().reshape(1)
    metadata = {
        "config": config_json(config, nsp_classes),
        "normalizers": "mlm=masked_token_count,nsp=sequence_count",
        "description": description,
    }
    path = os.path.join(OUT, name + ".safetensors")
    save_file(tensors, path, metadata=metadata)
    print(f"{path}: loss {loss.item():.6f} ({os.path.getsize(path)} bytes)")


def parity_fixtures():
    parity_fixture(
        "pad_gelu_h48", "hidden 48, 3 heads of 16, gelu, padding, 2-way NSP", seed=1001,
        config=BertConfig(vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                          intermediate_size=96, hidden_act="gelu", max_position_embeddings=64,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager"),
        B=3, T=16, lengths=[16, 11, 7], masked_per_sequence=3, nsp_classes=2, scale=0.2)
    parity_fixture(
        "nsp3_gelunew_h64", "hidden 64, 4 heads, gelu_new, no padding, 3-way NSP", seed=2002,
        config=BertConfig(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=128, hidden_act="gelu_new", max_position_embeddings=32,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager"),
        B=2, T=20, lengths=[20, 20], masked_per_sequence=4, nsp_classes=3, scale=0.15)
    parity_fixture(
        "relu_eps6_h40", "hidden 40, 5 heads of 8, relu, layer_norm_eps 1e-6, 3 token types, padding", seed=3003,
        config=BertConfig(vocab_size=77, hidden_size=40, num_hidden_layers=1, num_attention_heads=5,
                          intermediate_size=72, hidden_act="relu", max_position_embeddings=16, type_vocab_size=3,
                          layer_norm_eps=1e-6, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                          attn_implementation="eager"),
        B=2, T=12, lengths=[12, 9], masked_per_sequence=2, nsp_classes=2, scale=0.25)


# MARK: - hf-tiny: a pretrained-style model directory and the pipeline's answers on it

FILL_MASK_TEXTS = [
    ("the man went to the [MASK] to buy some milk.", 5),
    ("Paris is the capital of [MASK].", 3),
    ("She said, \"I [MASK] it!\" and left.", 5),
    ("the [MASK] of the city were closed, and [MASK] went home.", 4),
    ("Héllo wörld, this is a [MASK] test", 10),
    ("numbers like 1984 and [MASK] are years", 5),
    ("zebraphone quixotic [MASK] xylograph", 5),
    ("i don't [MASK] it's fine, isn't it?", 5),
    ("i love 🙂 and [MASK] [MASK]", 3),
    ("東京 is [MASK] big", 5),
]
CLEANUP_TEXTS = [
    ("i don't [MASK] it's fine, isn't it?", 5),
    ("She said, \"I [MASK] it!\" and left.", 3),
    ("we're sure you've [MASK] what i'm saying .", 4),
    ("the [MASK] of the city were closed, and [MASK] went home.", 2),
]
EMBED_TEXTS = [
    "the man went to the store.",
    "Hello, world!",
    "a much longer sentence that has more words in it than the others do, for mean pooling",
    "unknown zebraphone words",
]


def tiny_vocabulary():
    """[PAD], two unused, [UNK] [CLS] [SEP] [MASK], the single characters of bert-base-uncased, its 1,500
    most frequent whole words and the ## pieces of ascii letters and digits: 2,506 tokens."""
    with open(VOCAB, encoding="utf-8") as f:
        full = [line.rstrip("\n") for line in f]
    tokens = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += full[999:1996]  # single characters
    tokens += full[1996:3496]  # frequent words and pieces
    ascii_pieces = [t for t in full if t.startswith("##") and len(t) == 3 and t[2].isascii() and t[2].isalnum()]
    seen = set()
    result = []
    for token in tokens + ascii_pieces:
        if token not in seen:
            seen.add(token)
            result.append(token)
    return result


def hf_tiny():
    directory = os.path.join(OUT, "hf-tiny")
    headless = os.path.join(OUT, "hf-tiny-headless")
    os.makedirs(directory, exist_ok=True)
    os.makedirs(headless, exist_ok=True)
    vocab = tiny_vocabulary()
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")

    torch.manual_seed(4004)
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128, pad_token_id=0)
    model = BertForPreTraining(config)
    # Spread-out weights so the fill-mask ranking has clear gaps (HF's 0.02 init makes near-ties).
    randomize(model, 4005, 0.3)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(4006)
        model.cls.predictions.bias.copy_(2.0 * torch.randn(len(vocab), generator=generator))
    model.eval()
    model.save_pretrained(directory)
    model.bert.save_pretrained(headless)

    # Loaded from vocab.txt alone, as a directory with only a vocabulary (bert-base-uncased style) is;
    # save_pretrained then adds tokenizer_config.json and tokenizer.json but not vocab.txt.
    tokenizer = BertTokenizer.from_pretrained(directory, do_lower_case=True)
    tokenizer.save_pretrained(directory)
    tokenizer.save_pretrained(headless)
    shutil.copyfile(os.path.join(directory, "vocab.txt"), os.path.join(headless, "vocab.txt"))

    fill = pipeline("fill-mask", model=directory, tokenizer=directory, device="cpu")
    records = []
    for text, k in FILL_MASK_TEXTS:
        output = fill(text, top_k=k)
        records.append({"text": text, "top_k": k, "output": output})
        lists = output if isinstance(output[0], list) else [output]
        for ranking in lists:
            scores = [entry["score"] for entry in ranking]
            gaps = [a - b for a, b in zip(scores, scores[1:])]
            if gaps and min(gaps) < 1e-4:
                sys.exit(f"fill-mask ranking of {text!r} has a near-tie ({min(gaps):.2e}); change the seed")
    with open(os.path.join(OUT, "hf-tiny-fill-mask.json"), "w", encoding="utf-8") as f:
        json.dump(records, f, indent=1, ensure_ascii=False)

    encoder = BertModel.from_pretrained(headless).eval()
    embeddings = []
    with torch.no_grad():
        for text in EMBED_TEXTS:
            encoded = tokenizer(text, return_tensors="pt")
            hidden = encoder(**encoded).last_hidden_state[0]
            embeddings.append({
                "text": text,
                "input_ids": encoded["input_ids"][0].tolist(),
                "cls": hidden[0].tolist(),
                "mean": hidden.mean(dim=0).tolist(),
            })
    with open(os.path.join(OUT, "hf-tiny-embeddings.json"), "w", encoding="utf-8") as f:
        json.dump(embeddings, f, indent=1, ensure_ascii=False)
    print(f"{directory}: {len(vocab)} tokens; {len(records)} fill-mask cases, {len(embeddings)} embeddings")
    hf_tiny_cleanup(directory)


def hf_tiny_cleanup(directory):
    """hf-tiny with "clean_up_tokenization_spaces": true in tokenizer_config.json (as bert-base-uncased has):
    the model files are symbolic links to hf-tiny's; the pipeline's answers then get transformers' clean-up."""
    cleanup = os.path.join(OUT, "hf-tiny-cleanup")
    shutil.rmtree(cleanup, ignore_errors=True)
    os.makedirs(cleanup)
    for name in ["config.json", "model.safetensors", "vocab.txt"]:
        os.symlink(os.path.join("..", "hf-tiny", name), os.path.join(cleanup, name))
    with open(os.path.join(directory, "tokenizer_config.json"), encoding="utf-8") as f:
        settings = json.load(f)
    settings["clean_up_tokenization_spaces"] = True
    with open(os.path.join(cleanup, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=2)
    fill = pipeline("fill-mask", model=cleanup, tokenizer=cleanup, device="cpu")
    records = [{"text": text, "top_k": k, "output": fill(text, top_k=k)} for text, k in CLEANUP_TEXTS]
    with open(os.path.join(OUT, "hf-tiny-cleanup-fill-mask.json"), "w", encoding="utf-8") as f:
        json.dump(records, f, indent=1, ensure_ascii=False)
    print(f"{cleanup}: {len(records)} fill-mask cases with clean_up_tokenization_spaces")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    parity_fixtures()
    hf_tiny()
