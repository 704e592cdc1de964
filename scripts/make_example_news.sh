#!/usr/bin/env bash
# Writes examples/news/{train,dev}.tsv, the README's fine-tuning example: four classes of 20 Newsgroups
# (../shared/tasks/20newsgroups, `label<TAB>text`), the first 50 posts of each class in train.tsv and the
# first 15 of each in test.tsv, in file order, each cut to its first 300 characters at a word boundary
# (after a reply's quoting header)
# so that the files stay small (tens of KB) and a step is quick.
# Usage: scripts/make_example_news.sh [SHARED_TASKS_DIR]   (default ../shared/tasks)
set -euo pipefail
cd "$(dirname "$0")/.."
source=${1:-../shared/tasks}/20newsgroups
classes="rec.sport.hockey sci.space sci.med soc.religion.christian"
pick() {  # file, posts per class
    awk -F'\t' -v classes="$classes" -v per="$2" '
        BEGIN { n = split(classes, list, " "); for (i = 1; i <= n; i++) wanted[list[i]] = 1 }
        ($1 in wanted) && count[$1] < per {
            count[$1]++
            post = $2
            # Replies open with "re SUBJECT in article ADDRESS NAME writes": keep what follows.
            if (match(post, / writes /) && RSTART < 250) post = substr(post, RSTART + 8)
            text = substr(post, 1, 300)
            if (length(post) > 300) sub(/ [^ ]*$/, "", text)
            print $1 "\t" text
        }' "$1"
}
mkdir -p examples/news
pick "$source/train.tsv" 50 > examples/news/train.tsv
pick "$source/test.tsv" 15 > examples/news/dev.tsv
wc -l examples/news/train.tsv examples/news/dev.tsv
