#!/usr/bin/env bash
# BERT's whole paradigm in Chinese, on the labelled data of ../shared/tasks and the Chinese corpus of
# ../shared/corpora: learn a WordPiece vocabulary from Chinese text, prepare and pre-train a small BERT
# (bert-tiny's shape) with MLM + NSP, then fine-tune it for sentiment (zh-sentiment), in full and with
# LoRA from the same start, and for named entities (People's Daily 1998), printing the validation
# metrics. About 8 minutes on 2 cores.
#
# Splits: a line goes to dev when the first byte of the MD5 of its UTF-8 text (without the newline) is
# below 26 (about 10%), else to train; identical lines land in the same split. The pre-training corpus
# is the Debian handbook in Chinese plus the texts of the train splits only (labels and tags removed),
# so no dev text is seen before it is evaluated.
#
# Usage: scripts/chinese_demo.sh [--shared DIR] [--out DIR] [--ranks N] [--pretrain-steps N] [--finetune-steps N]
#   --shared  the shared data folder (default ../shared); --out  work directory (default runs/zh-demo; a rerun replaces its runs);
#   --ranks   MPI ranks (default: the number of cores); steps of pre-training (default 1500, global batch
#   32 x 128 tokens) and of each fine-tuning (default 600, batch 32). SWIFTBERT=path overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=../shared out=runs/zh-demo ranks=$(nproc) pretrain_steps=1500 finetune_steps=600
while [ $# -gt 0 ]; do
    case "$1" in
    --shared) shared=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --pretrain-steps) pretrain_steps=$2; shift 2 ;;
    --finetune-steps) finetune_steps=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
bin=${SWIFTBERT:-.build/release/swiftbert}
sentiment=$shared/tasks/zh-sentiment people=$shared/tasks/people-daily-1998/199801.txt handbook=$shared/corpora/zh-handbook
for path in "$bin" "$sentiment/pos.txt" "$sentiment/neg.txt" "$people" "$handbook"; do
    [ -e "$path" ] || { echo "error: $path not found (build with 'swift build -c release'; --shared names the data)" >&2; exit 2; }
done
mpi=(mpirun --oversubscribe -np "$ranks")
[ "$(id -u)" -eq 0 ] && mpi=(mpirun --allow-run-as-root --oversubscribe -np "$ranks")
data=$out/data
mkdir -p "$data"
start=$SECONDS
stage() { echo; echo "==> [$((SECONDS - start)) s] $*"; }

# `swiftbert train ARGS` on the ranks into a fresh --out (a rerun starts over), its progress lines left
# out of the printed log; stops the script when training fails.
train() {
    local run=$1; shift
    rm -rf "$run"
    if ! "${mpi[@]}" "$bin" train --out "$run" "$@" > "$out/train.log" 2>&1; then
        tail -n 20 "$out/train.log" >&2; echo "error: training into $run failed (log: $out/train.log)" >&2; exit 1
    fi
    grep -v '^step [0-9]*/' "$out/train.log" || true
}

# Standard input's lines to $PREFIX.train / $PREFIX.dev by the MD5 rule above, as `$LABEL<TAB>line`.
split_lines() {
    perl -MDigest::MD5=md5 -ne 'chomp; next unless /\S/;
        my $dev = ord(md5($_)) < 26;
        print { $dev ? $::d : $::t } "$ENV{LABEL}\t$_\n";
        BEGIN { open($::t, ">>", "$ENV{PREFIX}.train") or die; open($::d, ">>", "$ENV{PREFIX}.dev") or die }'
}

stage "splitting zh-sentiment and People's Daily into train/dev (MD5 of the line)"
rm -f "$data"/sentiment.* "$data"/people.*
LABEL=positive PREFIX=$data/sentiment split_lines < "$sentiment/pos.txt"
LABEL=negative PREFIX=$data/sentiment split_lines < "$sentiment/neg.txt"
PREFIX=$data/people perl -MDigest::MD5=md5 -ne 'chomp; next unless /\S/;
    print { ord(md5($_)) < 26 ? $::d : $::t } "$_\n";
    BEGIN { open($::t, ">", "$ENV{PREFIX}.train") or die; open($::d, ">", "$ENV{PREFIX}.dev") or die }' "$people"
wc -l "$data"/sentiment.train "$data"/sentiment.dev "$data"/people.train "$data"/people.dev

stage "pre-training corpus: the handbook + the train splits' texts, one sentence a line, a blank line between documents"
corpus=$data/corpus.txt
# perl with UTF-8 I/O: awk here (mawk) works on bytes and would cut characters in half.
{
    for file in "$handbook"/*.txt; do perl -CSD -ne 'next unless /\S/; s/。/。\n/g; s/\n+$/\n/; print; END { print "\n" }' "$file"; done
    cut -f2 "$data/sentiment.train" | perl -CSD -ne 's/([。！？])/$1\n/g; s/\n+$//; print "$_\n\n"'
    # People's Daily: tags removed, words joined as printed (compounds: [中央/n  人民/n]nt).
    perl -CSD -ne 'my $text = join "", map { s{/[^/]*$}{}r =~ s/^\[//r } split " ";
        $text =~ s/([。！？])/$1\n/g; $text =~ s/\n+$//; print "$text\n\n"' "$data/people.train"
} | perl -CSD -ne 'print unless /^[ \t]+$/' > "$corpus"
ls -l "$corpus" | awk '{ printf "%s: %.1f MB\n", $NF, $5 / 1e6 }'

stage "learning a WordPiece vocabulary (swiftbert vocab)"
"$bin" vocab --input "$corpus" --size 12000 --out "$data/vocab.txt"
vocab_size=$(wc -l < "$data/vocab.txt")
echo "vocabulary: $vocab_size tokens"

stage "preparing pre-training shards (swiftbert prepare)"
"$bin" prepare --input "$corpus" --vocab "$data/vocab.txt" --out "$data/shards" --dupe-factor 2 --overwrite

stage "pre-training bert-tiny's shape on $ranks ranks (swiftbert train)"
train "$out/pretrain" --config configs/bert-tiny.json --data "$data/shards" \
    --set model.vocab_size="$vocab_size" --set batch.global_batch_size=32 --set batch.micro_batch_size=null \
    --set schedule.total_steps="$pretrain_steps" --set schedule.warmup_steps=$((pretrain_steps / 15)) \
    --set optimizer.learning_rate=0.001 --set checkpoint.every_steps="$pretrain_steps" \
    --set logging.every_steps=$(((pretrain_steps + 9) / 10)) --set logging.eval_every_steps="$pretrain_steps"
pretrained=$out/pretrain/checkpoints/$(cat "$out/pretrain/checkpoints/latest")
[ -f "$pretrained/model.safetensors" ] || { echo "error: pre-training left no checkpoint" >&2; exit 1; }
grep '"split": *"validation"' "$out/pretrain/metrics.jsonl" | tail -n 1

# Both fine-tunings: batch 32, learning rate 3e-4 with 10% warm-up, three evaluations (the best is kept
# as best/).
finetune=(--set batch.global_batch_size=32 --set optimizer.learning_rate=0.0003 --set schedule.total_steps="$finetune_steps"
    --set schedule.warmup_steps=$((finetune_steps / 10)) --set checkpoint.every_steps=$(((finetune_steps + 2) / 3))
    --set logging.eval_every_steps=$(((finetune_steps + 2) / 3)) --set task.early_stopping_patience=0)

stage "fine-tuning for sentiment (configs/finetune-sequence-classification.json)"
train "$out/sentiment" --config configs/finetune-sequence-classification.json --set init_from="$pretrained" \
    --set task.train_file="$data/sentiment.train" --set task.validation_file="$data/sentiment.dev" "${finetune[@]}"
echo "sentiment, dev split (swiftbert evaluate):"
"$bin" evaluate --model "$out/sentiment/best" --data "$data/sentiment.dev"
printf '%s\n' "这本书写得非常好，值得一读。" "质量太差了，再也不会买了。" > "$out/reviews.txt"
"$bin" predict --model "$out/sentiment/best" --input "$out/reviews.txt"

stage "LoRA on the same start (r 8 on query and value, the classifier trained; configs/finetune-sequence-classification-lora.json)"
train "$out/sentiment-lora" --config configs/finetune-sequence-classification-lora.json --set init_from="$pretrained" \
    --set task.train_file="$data/sentiment.train" --set task.validation_file="$data/sentiment.dev" "${finetune[@]}" \
    --set optimizer.learning_rate=0.003
echo "sentiment with LoRA, dev split (swiftbert evaluate of the adapter):"
"$bin" evaluate --model "$out/sentiment-lora/best" --data "$data/sentiment.dev"

stage "fine-tuning for named entities, People's Daily (configs/finetune-token-classification.json)"
train "$out/ner" --config configs/finetune-token-classification.json --set init_from="$pretrained" \
    --set task.train_file="$data/people.train" --set task.validation_file="$data/people.dev" "${finetune[@]}"
echo "NER, dev split (swiftbert evaluate):"
"$bin" evaluate --model "$out/ner/best" --data "$data/people.dev"

stage "done; everything is under $out"
