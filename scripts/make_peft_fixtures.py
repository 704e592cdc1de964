#!/usr/bin/env python3
"""Reference fixtures for SwiftBERT's parameter-efficient tuning (LoRA, prompt tuning, P-tuning, prefix tuning), computed with
Hugging Face peft 0.21 + transformers 5.24 + torch 2.13 on CPU.

Run:  venv/bin/python scripts/make_peft_fixtures.py
Writes into Tests/TransformerTests/Fixtures/peft/ (the whole folder stays under 1.1 MB), then loads every file back
and recomputes it (section 4). Deterministic (fixed torch seeds, one thread, and PYTHONHASHSEED=0: the script
restarts itself with it, because peft keeps target_modules in a set and writes it into adapter_config.json in the
set's iteration order); only the order of the metadata keys in a safetensors header may differ between runs.
The tests only read the files, Python is never needed at test time.

    venv/bin/python scripts/make_peft_fixtures.py --check-adapter BASE ADAPTER FIXTURE
checks an adapter directory against a parity fixture instead (section 3).

Every base model is a BertForSequenceClassification, problem_type single_label_classification, 3 labels, float32,
2 layers, hidden 32, 4 attention heads, intermediate 40, vocab 89, max positions 16, gelu, eager attention, every
dropout probability 0 (hidden, attention, classifier_dropout; lora_dropout 0 too), run in train() mode: the forward
pass is deterministic and the gradients are those of training. Every parameter of the base model has random
values (not HF's init: biases and LayerNorm gains are random too), and after get_peft_model every trainable tensor
(LoRA A and B, the classifier copy, the bias="all" biases, prompt embeddings, prompt encoder weights) is set to new
random values, so that every tensor of the adapter changes the output. Token ids 0 [PAD], 2 [CLS], 3 [SEP]; inputs
are sentence pairs [CLS] A [SEP] B [SEP] (token type 0 on [CLS] A [SEP] and on the padding, 1 on B [SEP]), with
padding in every batch.

1. Parity fixtures `<case>.safetensors`, one per case, all tensors little-endian:
     param.<HF name>       F32  the base model as transformers' save_pretrained writes it (its model.safetensors,
                                read back): every parameter under its plain transformers name
                                (bert.embeddings.word_embeddings.weight,
                                bert.encoder.layer.0.attention.self.query.weight, bert.pooler.dense.bias,
                                classifier.weight, ...). These are the values BEFORE the
                                adapter: the classifier copy and the bias="all" biases of the adapter differ from them.
     adapter.<key>         F32  every tensor of adapter_model.safetensors as peft's PeftModel.save_pretrained writes
                                it, under the same key (the keys are listed with the cases below).
     encoder.<name>        F32  P-tuning only: the parameters of the prompt encoder (the module
                                prompt_encoder.default of the PeftModel) under their names inside it
                                (embedding.weight, mlp_head.0.weight, lstm_head.weight_ih_l0, ...). peft does not save
                                them (adapter_model.safetensors only holds their output, prompt_embeddings), but they
                                are what P-tuning trains.
     input.input_ids       I64  [B, T]
     input.token_type_ids  I64  [B, T]
     input.attention_mask  I64  [B, T]  1 real token, 0 padding
     input.labels          I64  [B]
     expect.logits         F32  [B, 3]  PeftModel(**inputs).logits
     expect.loss           F32  [1]     PeftModel(**inputs, labels=...).loss (transformers' mean cross-entropy)
     expect.loss_sum       F32  [1]     sum of the per-sequence cross-entropies; expect.loss = loss_sum / B
     expect.prompts        F32  [n, C]  prompt methods only: the n virtual-token embeddings peft feeds to BERT
                                (the prompt encoder's output; bit-equal to adapter.prompt_embeddings)
     expect.prompts_grad   F32  [n, C]  prompt methods only: gradient of expect.loss with respect to them (summed
                                over the batch; for prompt tuning it equals grad.prompt_embeddings)
     grad.<key>            F32  gradient of expect.loss for every tensor that is trainable in the PeftModel
                                (requires_grad True), under the key the adapter file uses for it (without the
                                "adapter." prefix), or encoder.<name> for the P-tuning encoder. There is one grad.*
                                per trainable tensor and none for anything else.
   Metadata (`__metadata__`, strings):
     config           the config.json text transformers' save_pretrained writes for the base model
     adapter_config   the adapter_config.json text peft's save_pretrained writes. Note: "inference_mode" is
                      always true in the file; base_model_name_or_path is null (these models are built from a
                      config); for the prompt methods modules_to_save is ["classifier", "score", "classifier",
                      "score"] (PeftModelForSequenceClassification appends the two names in __init__ and again in
                      add_adapter, which the prompt methods go through), for LoRA ["classifier", "score"].
     normalizer       "sequence_count=B"
     description      one line about the case

   Adapter keys (peft drops the adapter name "default" from the parameter names of the PeftModel; LoRA and
   modules_to_save keys start with base_model.model., prompt-method keys with base_model.):
     LoRA               base_model.model.<module>.lora_A.weight [r, in], base_model.model.<module>.lora_B.weight
                        [out, r] for every targeted nn.Linear <module>; the module computes
                        y = x W^T + b + scaling * (x A^T) B^T   with scaling = lora_alpha / r
                        (use_rslora: lora_alpha / sqrt(r)).
     modules_to_save    For task_type SEQ_CLS peft adds ["classifier", "score"] to modules_to_save; BERT's
                        `classifier` is then replaced by a wrapper holding the original and a trainable copy
                        (classifier.modules_to_save.default). The copy is saved under the plain name:
                        base_model.model.classifier.weight [3, C], base_model.model.classifier.bias [3]
                        (prompt methods: base_model.classifier.weight / .bias). Loading puts these into the copy,
                        which is what the forward pass uses; the base model's own classifier is left unchanged.
     bias="all"         Every tensor of the PeftModel's state dict whose name ends in ".bias" is trainable and saved,
                        layers not touched by LoRA included (embeddings and encoder LayerNorm biases, every Linear
                        bias, the pooler bias), under its PeftModel name without the adapter name:
                        base_model.model.bert.<...>.bias for modules LoRA did not wrap,
                        base_model.model.bert.<module>.base_layer.bias for the Linear layers LoRA wrapped,
                        and three classifier biases: base_model.model.classifier.bias (the modules_to_save entry),
                        base_model.model.classifier.modules_to_save.bias (the same tensor again, through the bias
                        filter) and base_model.model.classifier.original_module.bias (the base model's classifier
                        bias, not trainable, equal to param.classifier.bias). Loading replaces the base model's
                        biases with the saved ones. grad.* of the trainable classifier bias is stored once, under
                        the modules_to_save key base_model.model.classifier.bias.
     prompt methods     prompt_embeddings [n, C]: the virtual-token embeddings (prompt tuning: the trained
                        nn.Embedding itself; P-tuning and prefix tuning: the OUTPUT of the prompt encoder for the n
                        virtual tokens, computed at save time). The encoder's own weights are not saved; loading
                        (inference mode) puts prompt_embeddings into prompt_encoder.default.embedding.weight and uses
                        it directly, without an encoder. Plus the classifier copy (modules_to_save, above).

   How peft 0.21 runs the prompt methods on BertForSequenceClassification (PeftModelForSequenceClassification.
   forward; checked in the verify step by recomputing the logits with the plain model):
     inputs_embeds   = concat([prompts (n, C) repeated over the batch, word_embeddings(input_ids)], dim 1): the n
                       virtual tokens go BEFORE [CLS]; the sequence is n + T long (max positions must be >= n + T).
     attention_mask  = concat([ones(B, n), attention_mask], dim 1): every virtual token is attended to (peft builds a
                       float tensor here).
     token_type_ids  = concat([zeros(B, n), token_type_ids], dim 1): virtual tokens have token type 0.
     position_ids    not passed (peft drops any given position_ids with a warning): BERT uses 0 ..< n + T, so the
                       virtual tokens take positions 0 ..< n and the real tokens n ..< n + T ([CLS] at position n).
     The embeddings of the virtual tokens are prompt + token_type_embeddings[0] + position_embeddings[i], then
     LayerNorm, like a word. logits = classifier(tanh(pooler(hidden state at sequence position 0))): position 0 is
     the FIRST VIRTUAL TOKEN, not [CLS]. The labels go to transformers' loss unchanged.

   Cases (B sequences of T tokens, n = 3 virtual tokens for the prompt methods):
     lora_qv       LoraConfig(task_type SEQ_CLS, r=4, lora_alpha=8, target_modules=["query", "value"]), defaults
                   otherwise (lora_dropout 0, bias "none"); scaling 2. B=4, T=13.
                   Adapter: lora_A [4, 32] and lora_B [32, 4] of bert.encoder.layer.{0,1}.attention.self.{query,value},
                   classifier.weight [3, 32], classifier.bias [3] (all with the base_model.model. prefix).
                   Trainable: those 10 tensors.
     lora_all      r=2, lora_alpha=3, use_rslora=True (scaling 3 / sqrt(2)), bias="all", layers_to_transform=[1],
                   target_modules=["query", "key", "value", "attention.output.dense", "intermediate.dense",
                   "output.dense"]. peft matches a target against a module name when the name equals it or ends with
                   "." + target, so "output.dense" matches BOTH layer.N.attention.output.dense and layer.N.output.dense
                   ("attention.output.dense" is redundant); layers_to_transform keeps layer 1 only. LoRA on
                   layer.1 attention.self.query/key/value, attention.output.dense (A [2, 32], B [32, 2]),
                   intermediate.dense (A [2, 32], B [40, 2]) and output.dense (A [2, 40], B [32, 2]).
                   B=3, T=14. The adapter holds those 12 LoRA tensors, every bias of the model (see bias="all"),
                   and the classifier; the trainable tensors are the LoRA tensors, the classifier copy and every
                   bias except classifier.original_module.bias.
     prompt        PromptTuningConfig(task_type SEQ_CLS, num_virtual_tokens=3) (prompt_tuning_init RANDOM).
                   B=3, T=13. Adapter: prompt_embeddings [3, 32], base_model.classifier.weight [3, 32],
                   base_model.classifier.bias [3]. Trainable: the prompt embedding (grad.prompt_embeddings) and
                   the classifier copy.
     ptuning_mlp   PromptEncoderConfig(task_type SEQ_CLS, num_virtual_tokens=3, encoder_reparameterization_type MLP,
                   encoder_hidden_size=24). The encoder: prompts = mlp_head(embedding.weight) with
                   mlp_head = Linear(32, 24), ReLU, Linear(24, 24), ReLU, Linear(24, 32):
                   encoder.embedding.weight [3, 32], encoder.mlp_head.0.weight [24, 32], .0.bias [24],
                   .2.weight [24, 24], .2.bias [24], .4.weight [32, 24], .4.bias [32]. B=4, T=12.
                   Adapter: prompt_embeddings [3, 32] (= mlp_head(embedding.weight)) and the classifier.
                   Trainable: the encoder tensors and the classifier copy.
     ptuning_lstm  the same with encoder_reparameterization_type LSTM (encoder_num_layers 2, encoder_dropout 0):
                   prompts = mlp_head(lstm_head(embedding.weight[None])[0]) with lstm_head a bidirectional 2-layer
                   torch.nn.LSTM (input 32, hidden 24, batch_first; gates i, f, g, o in that order of the 96 rows)
                   and mlp_head = Linear(48, 48), ReLU, Linear(48, 32):
                   encoder.embedding.weight [3, 32],
                   encoder.lstm_head.weight_ih_l0 [96, 32], weight_hh_l0 [96, 24], bias_ih_l0 [96], bias_hh_l0 [96],
                   the same with suffix _l0_reverse (backward direction),
                   encoder.lstm_head.weight_ih_l1 [96, 48], weight_hh_l1 [96, 24], bias_ih_l1 [96], bias_hh_l1 [96],
                   the same with suffix _l1_reverse (layer 1 reads the concatenated [forward, backward] outputs),
                   encoder.mlp_head.0.weight [48, 48], .0.bias [48], .2.weight [32, 48], .2.bias [32]. B=3, T=13.
                   Adapter and trainable tensors as for ptuning_mlp.
     prefix        PrefixTuningConfig(task_type SEQ_CLS, num_virtual_tokens=3) (no projection): the trained table is
                   prompt_encoder.default.embedding.weight [3, 128] = [n, 2 * layers * C], saved as prompt_embeddings.
                   B=3, T=12 (12 + 3 prefix positions <= 16). Adapter: prompt_embeddings [3, 128] and the classifier.
                   How peft 0.21 runs it (_prefix_tuning_forward): attention_mask = concat([ones(B, n), mask], 1);
                   the table viewed as (n, 2 * layers, heads, C / heads) gives, for layer l, the keys (index 2l) and
                   values (2l + 1), each transposed to (B, heads, n, C / heads), as a DynamicCache of length n;
                   BertModel then puts the cache's keys and values in front of the layer's own in every self-attention
                   and numbers the tokens' positions n ..< n + T (cache_length); token types are the inputs'.
                   transformers 5.24's BertModel takes the cache as `cache` (its decorator renames a past_key_values
                   argument), but peft looks for a parameter literally named past_key_values in BertModel.forward's
                   signature and otherwise raises "Model does not support past key values which are required for
                   prefix tuning." The script therefore wraps BertModel.forward in a function with that parameter
                   that passes it on as `cache` (peft_compat.accept_past_key_values): the computation is transformers'
                   own.
                   expect.prompts / prompts_grad are not written for prefix tuning (the prefix enters as a cache).
     prefix_proj   PrefixTuningConfig(..., prefix_projection=True, encoder_hidden_size=24): the table is
                   transform(embedding.weight) with transform = Linear(32, 24), Tanh, Linear(24, 128); the trainable
                   tensors are encoder.embedding.weight [3, 32], encoder.transform.0.weight [24, 32], .0.bias [24],
                   .2.weight [128, 24], .2.bias [128] and the classifier. B=3, T=12. Adapter: prompt_embeddings
                   [3, 128] = the projection's output (what peft saves and, in inference mode, reads), and the
                   classifier.

2. Peft directories for loading tests:
     lora-base/      the lora_qv base model, written by BertForSequenceClassification.save_pretrained:
                     config.json, model.safetensors (same tensors as lora_qv's param.*).
     lora-adapter/   the lora_qv adapter, written by PeftModel.save_pretrained: adapter_config.json,
                     adapter_model.safetensors (same tensors as lora_qv's adapter.*). The base was loaded with
                     from_pretrained("Tests/TransformerTests/Fixtures/peft/lora-base") from the repository root, and
                     peft writes that path (the base model's name_or_path) as base_model_name_or_path, so
                     AutoPeftModelForSequenceClassification.from_pretrained("Tests/TransformerTests/Fixtures/peft/
                     lora-adapter") works from the repository root. adapter_config.json is otherwise the text in
                     lora_qv's adapter_config metadata. peft also writes a model card README.md; it is deleted.

3. `--check-adapter BASE ADAPTER FIXTURE`: loads BASE with AutoModelForSequenceClassification.from_pretrained
   (eager attention, eval mode), wraps it with PeftModel.from_pretrained(model, ADAPTER), runs the fixture's input.*
   tensors and prints the largest absolute difference between the logits and the fixture's expect.logits. Exit
   status 1 if that difference exceeds 1e-5 * max |expect.logits|, if transformers reports missing or unexpected
   keys for BASE, or if peft reports missing adapter keys or unexpected keys for ADAPTER (the load result of
   set_peft_model_state_dict, its missing keys filtered as PeftModel.from_pretrained filters them). peft reports
   some keys of its own files as unexpected although it loads them: prompt_embeddings (loaded by the prompt encoder,
   outside load_state_dict) and, with bias="all", base_model.model.classifier.modules_to_save.bias (the classifier
   copy is loaded from base_model.model.classifier.bias); unexpected keys that peft itself would save for the loaded
   model are therefore only printed, not counted. It also prints, for information, how the ADAPTER's keys differ from
   those peft itself would save.

4. Verification (run after writing): every parity fixture is loaded back, its base model rebuilt from the config
   metadata and param.*, wrapped with get_peft_model(config from the adapter_config metadata, inference_mode off),
   the adapter.* tensors loaded with set_peft_model_state_dict (no unexpected keys besides the ones of section 3)
   and encoder.* into the prompt encoder; forward and backward are run again and compared with expect.* and grad.* (every gradient non-zero);
   the logits are also recomputed without peft's wrappers (LoRA merged into plain weights, W + scaling * B A, with the
   adapter's biases and classifier; prompt methods through BertForSequenceClassification with the inputs_embeds,
   attention mask and token types described above; prefix tuning through BertForSequenceClassification with a
   DynamicCache built from prompt_embeddings as described above), and --check-adapter is run on the fixture written out as a
   base and an adapter directory. The two directories are checked with --check-adapter against lora_qv and
   loaded with AutoPeftModelForSequenceClassification.
"""

import os
import sys

if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # peft writes target_modules from a set: fix string hashing so that adapter_config.json is the same on each run.
    os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))

import json
import shutil
import tempfile
import warnings

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import transformers
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification
import peft
from peft import (AutoPeftModelForSequenceClassification, LoraConfig, PeftModel, PrefixTuningConfig,
                  PromptEncoderConfig, PromptTuningConfig, TaskType, get_peft_model, get_peft_model_state_dict,
                  set_peft_model_state_dict)
from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING
from peft.utils import load_peft_weights

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# Importing make_head_fixtures only defines functions and sets the same torch/transformers globals as below.
from make_head_fixtures import encoder_inputs, loss_sum_seqcls, randomize, run_case, small_config  # noqa: E402
from peft_compat import accept_past_key_values  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "TransformerTests", "Fixtures", "peft")
BASE_DIR = os.path.join(OUT, "lora-base")
ADAPTER_DIR = os.path.join(OUT, "lora-adapter")
SIZE_LIMIT = 1_100_000
CHECK_TOLERANCE = 1e-5

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # transformers 5.24, called by peft

SIZES = dict(vocab_size=89, hidden_size=32, num_attention_heads=4, intermediate_size=40, max_position_embeddings=16,
             num_labels=3, problem_type="single_label_classification")
LOSS_SUM = loss_sum_seqcls("single_label_classification")


def lora_all_config():
    return LoraConfig(task_type=TaskType.SEQ_CLS, r=2, lora_alpha=3, use_rslora=True, bias="all",
                      layers_to_transform=[1],
                      target_modules=["query", "key", "value", "attention.output.dense", "intermediate.dense",
                                      "output.dense"])


# (name, peft config factory, description, batch lengths, T, seed)
CASES = [
    ("lora_qv", lambda: LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=["query", "value"]),
     "LoRA r=4 alpha=8 on query/value, classifier in modules_to_save, bias none", [13, 10, 7, 12], 13, 8101),
    ("lora_all", lora_all_config,
     "LoRA r=2 alpha=3 rsLoRA on every Linear of layer 1 (layers_to_transform [1]), bias all", [14, 9, 12], 14, 8202),
    ("prompt", lambda: PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=3),
     "prompt tuning, 3 virtual tokens, random init", [13, 8, 11], 13, 8303),
    ("ptuning_mlp", lambda: PromptEncoderConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=3,
                                                encoder_reparameterization_type="MLP", encoder_hidden_size=24),
     "P-tuning, 3 virtual tokens, MLP encoder (hidden 24)", [12, 9, 12, 6], 12, 8404),
    ("ptuning_lstm", lambda: PromptEncoderConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=3,
                                                 encoder_reparameterization_type="LSTM", encoder_hidden_size=24),
     "P-tuning, 3 virtual tokens, bidirectional 2-layer LSTM encoder (hidden 24) + MLP", [13, 11, 8], 13, 8505),
    ("prefix", lambda: PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=3),
     "prefix tuning (P-tuning v2), 3 virtual keys and values per layer", [12, 8, 10], 12, 8606),
    ("prefix_proj", lambda: PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=3, prefix_projection=True,
                                               encoder_hidden_size=24),
     "prefix tuning through the projection MLP (hidden 24)", [11, 9, 12], 12, 8707),
]


accept_past_key_values()


# MARK: - Helpers

def base_model(seed):
    torch.manual_seed(seed)
    model = BertForSequenceClassification(small_config(**SIZES))
    randomize(model, seed + 1, 0.2)
    return model


def case_inputs(seed, lengths, T):
    generator = torch.Generator().manual_seed(seed + 2)
    inputs, _ = encoder_inputs(generator, lengths, T, SIZES["vocab_size"], pair=True)
    inputs["labels"] = torch.randint(0, SIZES["num_labels"], (len(lengths),), generator=generator)
    return inputs


def randomize_trainable(model, seed):
    """New random values for every trainable tensor of a PeftModel (LoRA B starts at 0, the classifier copy equals
    the base classifier, the biases of bias="all" equal the base ones: each would otherwise go untested)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            noise = torch.randn(parameter.shape, generator=generator)
            last = name.split(".")[-1]
            if last.startswith("bias"):  # Linear .bias, LSTM bias_ih_l0 ...
                parameter.copy_(0.1 * noise)
            elif "prompt_encoder" in name and name.endswith("embedding.weight"):
                parameter.copy_(0.5 * noise)
            else:
                parameter.copy_(0.2 * noise)


def saved_base(model):
    """(config.json text, tensors of model.safetensors) as transformers' save_pretrained writes them."""
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
            config = f.read()
        tensors = load_file(os.path.join(directory, "model.safetensors"))
    return config, tensors


def saved_adapter(model):
    """(adapter_config.json text, tensors of adapter_model.safetensors) as peft's save_pretrained writes them."""
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        assert sorted(os.listdir(directory)) == ["README.md", "adapter_config.json", "adapter_model.safetensors"], \
            os.listdir(directory)
        with open(os.path.join(directory, "adapter_config.json"), encoding="utf-8") as f:
            config = f.read()
        tensors = load_file(os.path.join(directory, "adapter_model.safetensors"))
    return config, tensors


ENCODER_PREFIX = "prompt_encoder.default."


def trainable_key(model, name):
    """The fixture key (without "adapter."/"grad.") of a trainable PeftModel parameter."""
    config = model.active_peft_config
    if name.startswith(ENCODER_PREFIX):
        inner = name[len(ENCODER_PREFIX):]
        direct = config.peft_type == peft.PeftType.PROMPT_TUNING or (
            config.peft_type == peft.PeftType.PREFIX_TUNING and not config.prefix_projection)
        if direct and inner == "embedding.weight":
            return "prompt_embeddings"
        return "encoder." + inner
    name = name.replace(".modules_to_save.default.", ".")
    return name.replace(".default.", ".")


def capture_prompts(model):
    """Patch model.get_prompt so that the virtual-token embeddings of the next forward keep their gradient."""
    captured = {}
    original = model.get_prompt

    def get_prompt(*args, **kwargs):
        prompts = original(*args, **kwargs)
        prompts.retain_grad()
        captured["prompts"] = prompts
        return prompts

    model.get_prompt = get_prompt
    return captured


def run_peft(model, inputs):
    """Forward + backward of a PeftModel in train mode; prompt methods also return the prompts and their gradient."""
    config = model.active_peft_config
    captured = capture_prompts(model) if config.is_prompt_learning and config.peft_type != peft.PeftType.PREFIX_TUNING \
        else None
    model.train()
    outputs, total, normalizer = run_case(model, inputs, LOSS_SUM)
    prompts = None
    if captured is not None:
        p = captured["prompts"]
        assert torch.equal(p, p[:1].expand_as(p)), "the prompts differ between sequences"
        prompts = (p[0].detach().clone(), p.grad.sum(0))
    return outputs, total, normalizer, prompts


# MARK: - 1. Parity fixtures

def parity_fixture(name, make_config, description, lengths, T, seed):
    model = base_model(seed)
    base_config, base_tensors = saved_base(model)
    assert set(base_tensors) == {key for key, _ in model.named_parameters()}, f"{name}: save_pretrained names differ"
    torch.manual_seed(seed + 3)
    peft_model = get_peft_model(model, make_config())
    randomize_trainable(peft_model, seed + 4)
    inputs = case_inputs(seed, lengths, T)
    outputs, total, normalizer, prompts = run_peft(peft_model, inputs)
    adapter_config, adapter = saved_adapter(peft_model)

    tensors = {"param." + key: value.contiguous() for key, value in base_tensors.items()}
    tensors.update({"adapter." + key: value.contiguous() for key, value in adapter.items()})
    for key, parameter in peft_model.named_parameters():
        if not parameter.requires_grad:
            continue
        fixture_key = trainable_key(peft_model, key)
        if fixture_key.startswith("encoder."):
            tensors[fixture_key] = parameter.detach().clone().contiguous()
        else:
            assert fixture_key in adapter, f"{name}: {key} -> {fixture_key} is not in the adapter file"
            assert torch.equal(adapter[fixture_key], parameter.detach()), f"{name}: {fixture_key} differs"
        assert parameter.grad is not None, f"{name}: {key} has no gradient"
        tensors["grad." + fixture_key] = parameter.grad.detach().clone().contiguous()
    for key, value in inputs.items():
        tensors["input." + key] = value.contiguous()
    tensors["expect.logits"] = outputs.logits.detach().contiguous()
    tensors["expect.loss"] = outputs.loss.detach().reshape(1)
    tensors["expect.loss_sum"] = total.reshape(1)
    if prompts is not None:
        tensors["expect.prompts"], tensors["expect.prompts_grad"] = prompts
        assert torch.equal(prompts[0], adapter["prompt_embeddings"]), f"{name}: the saved prompt_embeddings differ"
    metadata = {"config": base_config, "adapter_config": adapter_config, "normalizer": normalizer,
                "description": description}
    path = os.path.join(OUT, name + ".safetensors")
    save_file(tensors, path, metadata=metadata)
    trainable = sum(1 for key in tensors if key.startswith("grad."))
    print(f"{path}: loss {outputs.loss.item():.6f}, {len(adapter)} adapter tensors, {trainable} trainable, "
          f"{os.path.getsize(path)} bytes")
    return model, peft_model


# MARK: - 2. Peft directories

def peft_directories():
    """lora-base/ and lora-adapter/: the lora_qv base and adapter as save_pretrained writes them."""
    tensors = load_file(os.path.join(OUT, "lora_qv.safetensors"))
    with safe_open(os.path.join(OUT, "lora_qv.safetensors"), framework="pt") as f:
        metadata = f.metadata()
    for directory in [BASE_DIR, ADAPTER_DIR]:
        shutil.rmtree(directory, ignore_errors=True)
    base = rebuild_base(metadata, tensors)
    base.save_pretrained(BASE_DIR)
    with open(os.path.join(BASE_DIR, "config.json"), encoding="utf-8") as f:
        assert f.read() == metadata["config"], "lora-base/config.json differs from lora_qv's config"
    relative = os.path.relpath(BASE_DIR, ROOT)
    previous = os.getcwd()
    os.chdir(ROOT)  # from_pretrained with the repository-relative path: peft writes it as base_model_name_or_path
    try:
        loaded = BertForSequenceClassification.from_pretrained(relative, attn_implementation="eager")
        peft_model = get_peft_model(loaded, CASES[0][1]())  # the config itself: the metadata's has modules_to_save
        result = set_peft_model_state_dict(peft_model, adapter_tensors(tensors))
        assert not result.unexpected_keys, result.unexpected_keys
        peft_model.save_pretrained(ADAPTER_DIR)
    finally:
        os.chdir(previous)
    os.remove(os.path.join(ADAPTER_DIR, "README.md"))
    print(f"{BASE_DIR}: {sorted(os.listdir(BASE_DIR))}; {ADAPTER_DIR}: {sorted(os.listdir(ADAPTER_DIR))}")


# MARK: - 3. Adapter check

def fixture_inputs(tensors):
    return {key[len("input."):]: value for key, value in tensors.items()
            if key.startswith("input.") and key != "input.labels"}


def check_adapter(base, adapter, fixture):
    """Logits of BASE + ADAPTER (loaded by transformers and peft) against FIXTURE's expect.logits; True if they agree
    and nothing was missing or unexpected."""
    ok = True
    model, info = AutoModelForSequenceClassification.from_pretrained(base, output_loading_info=True,
                                                                     attn_implementation="eager")
    for key in ["missing_keys", "unexpected_keys", "mismatched_keys"]:
        if info[key]:
            print(f"base {key}: {sorted(info[key])}")
            ok = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peft_model = PeftModel.from_pretrained(model, adapter)
    for warning in caught:
        if "missing adapter keys" in str(warning.message):
            print(f"peft: {warning.message}")
            ok = False
    # The load result PeftModel.from_pretrained does not return: load the same weights again.
    weights = load_peft_weights(adapter)
    result = set_peft_model_state_dict(peft_model, weights)
    # load_adapter keeps the missing keys with the tuner's prefix and the adapter name, from_pretrained then drops
    # the prompt encoder (loaded separately from prompt_embeddings).
    prefix = PEFT_TYPE_TO_PREFIX_MAPPING.get(peft_model.active_peft_config.peft_type, "")
    missing = [key for key in result.missing_keys if prefix in key and "default" in key and "prompt_encoder" not in key]
    own = set(get_peft_model_state_dict(peft_model))
    # peft reports some keys of its own files as unexpected (see expected_unexpected): not an error.
    quirks = [key for key in result.unexpected_keys if key in own]
    unexpected = [key for key in result.unexpected_keys if key not in own]
    if quirks:
        print(f"(info) keys reported unexpected that peft's own save writes too: {quirks}")
    if missing or unexpected:
        print(f"adapter missing keys: {missing}\nadapter unexpected keys: {unexpected}")
        ok = False
    if own != set(weights):
        print(f"(info) keys peft would save but the adapter lacks: {sorted(own - set(weights))}")
        print(f"(info) keys the adapter has but peft would not save: {sorted(set(weights) - own)}")
    tensors = load_file(fixture)
    peft_model.eval()
    with torch.no_grad():
        logits = peft_model(**fixture_inputs(tensors)).logits
    expected = tensors["expect.logits"]
    difference = (logits - expected).abs().max().item()
    limit = CHECK_TOLERANCE * expected.abs().max().item()
    print(f"max |logits - expect.logits| = {difference:.3e} (limit {limit:.3e}, max |expected| "
          f"{expected.abs().max().item():.4f})")
    return ok and difference <= limit


# MARK: - 4. Verification

def rebuild_base(metadata, tensors):
    config = BertConfig.from_dict(json.loads(metadata["config"]))
    assert config.architectures == ["BertForSequenceClassification"], config.architectures
    assert config.hidden_dropout_prob == config.attention_probs_dropout_prob == config.classifier_dropout == 0
    config._attn_implementation = "eager"
    model = BertForSequenceClassification(config)
    params = {key[len("param."):]: value for key, value in tensors.items() if key.startswith("param.")}
    missing, unexpected = model.load_state_dict(params, strict=False)
    assert not unexpected and all(key.startswith("bert.embeddings.") and "_ids" in key for key in missing), \
        (missing, unexpected)
    return model


def training_peft_config(metadata):
    values = json.loads(metadata["adapter_config"])
    assert values["inference_mode"] is True  # what peft writes
    values["inference_mode"] = False
    return peft.get_peft_config(values)


def adapter_tensors(tensors):
    return {key[len("adapter."):]: value for key, value in tensors.items() if key.startswith("adapter.")}


def write_directories(metadata, tensors, base, adapter):
    save_file({key[len("param."):]: value for key, value in tensors.items() if key.startswith("param.")},
              os.path.join(base, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(base, "config.json"), "w", encoding="utf-8") as f:
        f.write(metadata["config"])
    save_file(adapter_tensors(tensors), os.path.join(adapter, "adapter_model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(adapter, "adapter_config.json"), "w", encoding="utf-8") as f:
        f.write(metadata["adapter_config"])


def merged_lora_logits(metadata, tensors):
    """The logits of a LoRA fixture with plain BERT: W + scaling * B A, the adapter's biases and classifier."""
    model = rebuild_base(metadata, tensors)
    config = json.loads(metadata["adapter_config"])
    scaling = config["lora_alpha"] / (config["r"] ** 0.5 if config["use_rslora"] else config["r"])
    adapter = adapter_tensors(tensors)
    parameters = dict(model.named_parameters())
    prefix = "base_model.model."
    merged = set()
    with torch.no_grad():
        for key, value in adapter.items():
            module = key[len(prefix):].rsplit(".", 2)[0]  # <module>.lora_A.weight -> <module>
            if key.endswith(".lora_A.weight"):
                b = adapter[key.replace(".lora_A.", ".lora_B.")]
                parameters[module + ".weight"] += scaling * (b @ value)
                merged.add(module)
            elif key.endswith(".bias") and ".original_module." not in key:
                name = key[len(prefix):].replace(".base_layer.", ".").replace(".modules_to_save.", ".")
                parameters[name].copy_(value)
        parameters["classifier.weight"].copy_(adapter[prefix + "classifier.weight"])
        parameters["classifier.bias"].copy_(adapter[prefix + "classifier.bias"])
        model.train()
        return model(**fixture_inputs(tensors)).logits, merged


def plain_prompt_model(metadata, tensors):
    """(plain BERT with the adapter's classifier, in train mode; the prompt table; the inputs) of a prompt fixture."""
    model = rebuild_base(metadata, tensors)
    adapter = adapter_tensors(tensors)
    with torch.no_grad():
        model.classifier.weight.copy_(adapter["base_model.classifier.weight"])
        model.classifier.bias.copy_(adapter["base_model.classifier.bias"])
    model.train()
    return model, adapter["prompt_embeddings"], fixture_inputs(tensors)


def plain_prompt_logits(metadata, tensors):
    """The logits of a prompt fixture with plain BERT: virtual tokens before [CLS], as the docstring says."""
    model, prompts, inputs = plain_prompt_model(metadata, tensors)
    B, n = inputs["input_ids"].shape[0], prompts.shape[0]
    embeds = torch.cat([prompts.expand(B, -1, -1), model.bert.embeddings.word_embeddings(inputs["input_ids"])], 1)
    mask = torch.cat([torch.ones(B, n, dtype=torch.int64), inputs["attention_mask"]], 1)
    types = torch.cat([torch.zeros(B, n, dtype=torch.int64), inputs["token_type_ids"]], 1)
    with torch.no_grad():
        return model(inputs_embeds=embeds, attention_mask=mask, token_type_ids=types).logits


def plain_prefix_logits(metadata, tensors):
    """The logits of a prefix fixture with plain BERT: the key/value cache and the mask built as the docstring says."""
    model, table, inputs = plain_prompt_model(metadata, tensors)
    config = model.config
    B, n = inputs["input_ids"].shape[0], table.shape[0]
    heads, L = config.num_attention_heads, config.num_hidden_layers
    pairs = table.view(n, 2 * L, heads, config.hidden_size // heads).permute(1, 2, 0, 3)  # (2L, heads, n, hs)
    cache = transformers.DynamicCache(config=config)
    for layer in range(L):
        cache.update(pairs[2 * layer].expand(B, -1, -1, -1), pairs[2 * layer + 1].expand(B, -1, -1, -1), layer)
    mask = torch.cat([torch.ones(B, n, dtype=torch.int64), inputs["attention_mask"]], 1)
    with torch.no_grad():
        return model(input_ids=inputs["input_ids"], token_type_ids=inputs["token_type_ids"], attention_mask=mask,
                     cache=cache).logits


def expected_unexpected(model):
    """What set_peft_model_state_dict reports as unexpected for peft's own adapter file: with bias="all" the
    duplicate classifier.modules_to_save.bias (the copy is loaded from classifier.bias); for prompt methods
    prompt_embeddings (load_state_dict does not know it, the prompt encoder loads it separately)."""
    config = model.active_peft_config
    if config.is_prompt_learning:
        return ["prompt_embeddings"]
    return ["base_model.model.classifier.modules_to_save.bias"] if getattr(config, "bias", "none") == "all" else []


def verify_parity():
    for name, *_ in CASES:
        path = os.path.join(OUT, name + ".safetensors")
        tensors = load_file(path)
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata()
        mask = tensors["input.attention_mask"]
        assert (mask == 0).any() and ((mask == 0) | (mask == 1)).all(), f"{name}: the batch must have padding"
        assert (tensors["input.token_type_ids"] == 1).any(), f"{name}: the inputs must be sentence pairs"
        model = get_peft_model(rebuild_base(metadata, tensors), training_peft_config(metadata))
        adapter = adapter_tensors(tensors)
        if getattr(model.active_peft_config, "prefix_projection", False):
            # Training mode reads the projection's input table there; the saved output is for inference.
            adapter["prompt_embeddings"] = tensors["encoder.embedding.weight"]
        result = set_peft_model_state_dict(model, adapter)
        assert result.unexpected_keys == expected_unexpected(model), f"{name}: {result.unexpected_keys}"
        encoder = {key[len("encoder."):]: value for key, value in tensors.items() if key.startswith("encoder.")}
        if encoder:
            model.prompt_encoder["default"].load_state_dict(encoder, strict=True)
        inputs = {key[len("input."):]: value for key, value in tensors.items() if key.startswith("input.")}
        outputs, total, normalizer, prompts = run_peft(model, inputs)
        assert normalizer == metadata["normalizer"] == f"sequence_count={inputs['labels'].numel()}"
        assert torch.equal(outputs.logits, tensors["expect.logits"]), f"{name}: logits"
        assert torch.equal(outputs.loss.reshape(1), tensors["expect.loss"]), f"{name}: loss"
        assert torch.equal(total.reshape(1), tensors["expect.loss_sum"]), f"{name}: loss_sum"
        grads = {key for key in tensors if key.startswith("grad.")}
        for key, parameter in model.named_parameters():
            if parameter.requires_grad:
                fixture_key = "grad." + trainable_key(model, key)
                grads.remove(fixture_key)
                assert torch.equal(parameter.grad, tensors[fixture_key]), f"{name}: {fixture_key}"
                assert parameter.grad.abs().max() > 0, f"{name}: {fixture_key} is zero, the tensor does not matter"
        assert not grads, f"{name}: gradients of tensors that are not trainable: {grads}"
        if prompts is not None:
            assert torch.equal(prompts[0], tensors["expect.prompts"]), f"{name}: prompts"
            assert torch.equal(prompts[1], tensors["expect.prompts_grad"]), f"{name}: prompts_grad"
            plain = plain_prompt_logits(metadata, tensors)
            how = "virtual tokens before [CLS] in plain BERT"
        elif model.active_peft_config.peft_type == peft.PeftType.PREFIX_TUNING:
            plain = plain_prefix_logits(metadata, tensors)
            how = "a key/value cache in plain BERT"
        else:
            plain, merged = merged_lora_logits(metadata, tensors)
            how = f"LoRA merged into {len(merged)} Linear layers"
        assert torch.allclose(plain, outputs.logits, rtol=1e-5, atol=1e-5), f"{name}: logits with {how}"
        with tempfile.TemporaryDirectory() as base, tempfile.TemporaryDirectory() as adapter:
            write_directories(metadata, tensors, base, adapter)
            assert check_adapter(base, adapter, path), f"{name}: --check-adapter fails on the fixture's own files"
        count = sum(1 for key in tensors if key.startswith("grad."))
        print(f"verified {name}: logits, loss, {count} gradients recomputed; logits also with {how}")


def verify_directories():
    path = os.path.join(OUT, "lora_qv.safetensors")
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
    assert sorted(os.listdir(BASE_DIR)) == ["config.json", "model.safetensors"]
    assert sorted(os.listdir(ADAPTER_DIR)) == ["adapter_config.json", "adapter_model.safetensors"]
    base = load_file(os.path.join(BASE_DIR, "model.safetensors"))
    assert base.keys() == {k[len("param."):] for k in tensors if k.startswith("param.")}
    assert all(torch.equal(value, tensors["param." + key]) for key, value in base.items())
    adapter = load_file(os.path.join(ADAPTER_DIR, "adapter_model.safetensors"))
    assert adapter.keys() == adapter_tensors(tensors).keys()
    assert all(torch.equal(value, tensors["adapter." + key]) for key, value in adapter.items())
    with open(os.path.join(ADAPTER_DIR, "adapter_config.json"), encoding="utf-8") as f:
        written = json.load(f)
    assert written["base_model_name_or_path"] == os.path.relpath(BASE_DIR, ROOT), written["base_model_name_or_path"]
    assert dict(written, base_model_name_or_path=None) == json.loads(metadata["adapter_config"])
    assert check_adapter(BASE_DIR, ADAPTER_DIR, path), "--check-adapter fails on lora-base + lora-adapter"
    previous = os.getcwd()
    os.chdir(ROOT)
    try:
        auto = AutoPeftModelForSequenceClassification.from_pretrained(os.path.relpath(ADAPTER_DIR, ROOT),
                                                                      attn_implementation="eager")
    finally:
        os.chdir(previous)
    auto.eval()
    with torch.no_grad():
        logits = auto(**fixture_inputs(tensors)).logits
    assert torch.allclose(logits, tensors["expect.logits"], rtol=1e-5, atol=1e-6), "AutoPeftModel logits"
    print("verified lora-base/ and lora-adapter/: same tensors as lora_qv, --check-adapter and AutoPeftModel pass")


def folder_size():
    total = 0
    for directory, _, files in os.walk(OUT):
        total += sum(os.lstat(os.path.join(directory, file)).st_size for file in files)
    return total


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--check-adapter":
        if len(sys.argv) != 5:
            sys.exit("usage: make_peft_fixtures.py --check-adapter BASE ADAPTER FIXTURE")
        sys.exit(0 if check_adapter(*sys.argv[2:5]) else 1)
    if len(sys.argv) > 1:
        sys.exit("usage: make_peft_fixtures.py [--check-adapter BASE ADAPTER FIXTURE]")
    os.makedirs(OUT, exist_ok=True)
    for case in CASES:
        parity_fixture(*case)
    peft_directories()
    verify_parity()
    verify_directories()
    size = folder_size()
    assert size < SIZE_LIMIT, f"{OUT} is {size} bytes, more than {SIZE_LIMIT}"
    print(f"{OUT}: {size} bytes")
