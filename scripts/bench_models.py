"""What the peer benchmarks share: the random Hugging Face models both sides load, and the CPU's name."""

import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def save_with_tokenizer(model, directory):
    """Writes `model` (random weights; their values do not change the work) to `directory` with the
    bert-base-uncased tokenizer of corpus/vocab.txt, through a staging directory so an interrupted
    run leaves nothing half-written."""
    from transformers import BertTokenizer

    staging = directory + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    # Loaded from vocab.txt in the directory (transformers 5's BertTokenizer(vocab_file=...) ignores the
    # file); save_pretrained then adds tokenizer.json and tokenizer_config.json beside it.
    shutil.copyfile(os.path.join(ROOT, "corpus", "vocab.txt"), os.path.join(staging, "vocab.txt"))
    tokenizer = BertTokenizer.from_pretrained(staging, do_lower_case=True, model_max_length=512)
    if len(tokenizer) != model.config.vocab_size:
        sys.exit(f"corpus/vocab.txt gave a tokenizer of {len(tokenizer)} tokens, expected {model.config.vocab_size}")
    tokenizer.save_pretrained(staging)
    os.replace(staging, directory)


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (the figures say which machine they come from)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
