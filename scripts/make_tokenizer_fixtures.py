#!/usr/bin/env python3
"""Generates the reference data for SwiftBERT's BERT tokenizer.

Outputs, all committed:

  --tables    Sources/Data/UnicodeTables.swift: the Unicode character data the reference tokenizer
              reads through Python's `unicodedata` and `str.lower()` (Unicode 14.0 in Python 3.11),
              frozen so that the Swift tokenizer classifies every code point exactly as the reference
              does, independent of the Unicode version of the Swift runtime.
  --excerpts  Tests/DataTests/Fixtures/corpora/: the excerpts of ../shared/corpora that the default
              test suite reads (a fresh clone has no ../shared): the first ZH_HANDBOOK_FILES pages of
              the Debian handbook in Chinese and PYTHON_DOCS_FILES of the Python documentation, each
              cut at a line boundary to at most EXCERPT_BYTES.
  --fixtures  Tests/DataTests/Fixtures/tokenizer/: expected output of Hugging Face's pure-Python
              BERT tokenizer (`BertTokenizerLegacy`, formerly `BertTokenizer`) with corpus/vocab.txt
              (BERT-Base uncased, the same file as ../shared/vocab/bert-base-uncased-vocab.txt):
                hard-cases.json      every hard case with its basic tokens, WordPieces and ids,
                                     uncased and cased;
                random-cases.json    random strings (fixed seed) drawn from characters the tokenizer
                                     treats specially, with their ids and cased basic tokens;
                corpus-digests.json  for every file of the repository's corpora (corpus/kjv.txt and
                                     the excerpts), the line count and, per block of BLOCK_LINES
                                     lines, SHA-256 digests of the ids (uncased and cased) and of
                                     the cased basic tokens; paths relative to the repository.
  --shared-digests
              Tests/DataTests/Fixtures/tokenizer/shared-corpus-digests.json: the same digests over
              every file of ../shared/corpora (paths relative to it), for the whole-corpus check that
              .ci/run adds where ../shared exists (SWIFTBERT_SHARED_CORPORA).

A "line" is what `text.split("\\n")` gives on the UTF-8 file (a trailing newline gives a last, empty
line); every line is tokenized on its own. Digest encoding, per line: the ids as little-endian int32
followed by the int32 -1; basic tokens: UTF-8 of the tokens joined by " ", then "\\n".

Run with the reference stack:  venv/bin/python scripts/make_tokenizer_fixtures.py --tables --fixtures
(--benchmark FILE times the reference tokenizers on FILE's lines, to compare with `swiftbert tokenize`.)
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(ROOT, "corpus", "vocab.txt")
SHARED_CORPORA = os.path.join(os.path.dirname(ROOT), "shared", "corpora")
FIXTURES = os.path.join(ROOT, "Tests", "DataTests", "Fixtures", "tokenizer")
EXCERPTS = os.path.join(ROOT, "Tests", "DataTests", "Fixtures", "corpora")
# Enough of each corpus for the tests that read it: over 1,000 distinct Chinese characters, 20 pages
# for PrepareTests; Python documentation with reStructuredText markup, code and non-ASCII text.
ZH_HANDBOOK_FILES = 24
PYTHON_DOCS_FILES = ["howto__unicode.txt", "library__cmath.txt", "library__codecs.txt", "library__re.txt",
                     "reference__lexical_analysis.txt", "tutorial__introduction.txt", "whatsnew__3.11.txt"]
EXCERPT_BYTES = {"zh-handbook": 10_000, "python-docs": 24_000}
TABLES = os.path.join(ROOT, "Sources", "Data", "UnicodeTables.swift")
BLOCK_LINES = 200
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# --------------------------------------------------------------------------------------------------
# Unicode tables


def is_cjk(cp):
    # The ranges of BasicTokenizer._is_chinese_char, verbatim.
    return (
        (0x4E00 <= cp <= 0x9FFF)
        or (0x3400 <= cp <= 0x4DBF)
        or (0x20000 <= cp <= 0x2A6DF)
        or (0x2A700 <= cp <= 0x2B73F)
        or (0x2B740 <= cp <= 0x2B81F)
        or (0x2B820 <= cp <= 0x2CEAF)
        or (0xF900 <= cp <= 0xFAFF)
        or (0x2F800 <= cp <= 0x2FA1F)
    )


def code_point_flags():
    """One byte per code point; the bit layout is documented in UnicodeTables.swift."""
    from transformers.tokenization_python import _is_control, _is_punctuation, _is_whitespace

    # Second elements of canonical compositions: NFC may merge them into the previous character.
    composition_seconds = set()
    for first, second, _ in composition_pairs():
        composition_seconds.add(second)
    composition_seconds.update(range(0x1161, 0x1176))  # Hangul V jamo
    composition_seconds.update(range(0x11A8, 0x11C3))  # Hangul T jamo

    flags = bytearray(0x110000)
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            flags[cp] = 1  # surrogates never reach the tokenizer; classified as dropped
            continue
        ch = chr(cp)
        # kind: what BasicTokenizer does with the character, in the order it checks.
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            kind = 1  # dropped by _clean_text
        elif _is_whitespace(ch) or ch.isspace():
            kind = 2  # word separator (_clean_text's whitespace, or str.split()'s)
        elif is_cjk(cp):
            kind = 4  # a word of its own
        elif _is_punctuation(ch):
            kind = 3  # a piece of its own
        else:
            kind = 0
        f = kind
        if unicodedata.category(ch) == "Mn":
            f |= 8
        if (
            unicodedata.normalize("NFD", ch) != ch
            or unicodedata.combining(ch) != 0
            or cp in composition_seconds
        ):
            f |= 16
        if ch.lower() != ch:
            f |= 32
        # Final-sigma context of str.lower(): "cased and not case-ignorable", and "case-ignorable",
        # observed through str.lower() itself so that they are exactly CPython's properties.
        cased_not_ignorable = (ch + "\u03a3").lower()[-1] == "\u03c2"
        if cased_not_ignorable:
            f |= 64
        elif ("A" + ch + "\u03a3").lower()[-1] == "\u03c2":
            f |= 128
        flags[cp] = f
    return flags


def composition_pairs():
    """(first, second, composite) for every primary composite that NFC produces."""
    pairs = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF or 0xAC00 <= cp <= 0xD7A3:
            continue
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        if len(parts) != 2:
            continue
        if unicodedata.normalize("NFC", chr(cp)) != chr(cp):
            continue  # composition exclusion
        if unicodedata.normalize("NFC", chr(parts[0]) + chr(parts[1])) != chr(cp):
            continue  # non-starter decomposition
        pairs.append((parts[0], parts[1], cp))
    return pairs


def write_tables():
    flags = code_point_flags()
    runs = []
    previous = None
    for cp in range(0x110000):
        if flags[cp] != previous:
            runs.append("%x:%x" % (cp, flags[cp]))
            previous = flags[cp]
    ccc = []
    decompositions = []
    lowercase = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        c = unicodedata.combining(ch)
        if c:
            ccc.append("%x:%x" % (cp, c))
        if not (0xAC00 <= cp <= 0xD7A3):
            nfd = unicodedata.normalize("NFD", ch)
            if nfd != ch:
                decompositions.append("%x:%s" % (cp, " ".join("%x" % ord(x) for x in nfd)))
        low = ch.lower()
        if low != ch:
            lowercase.append("%x:%s" % (cp, " ".join("%x" % ord(x) for x in low)))
    compositions = ["%x %x:%x" % p for p in composition_pairs()]

    def literal(items, per_line=12):
        lines = []
        for i in range(0, len(items), per_line):
            lines.append("        " + ",".join(items[i : i + per_line]) + ",")
        return '"""\n' + "\n".join(lines) + '\n        """'

    text = f"""// Generated by scripts/make_tokenizer_fixtures.py --tables from Python {sys.version.split()[0]}'s
// unicodedata (Unicode {unicodedata.unidata_version}). Do not edit: regenerate.
//
// The reference BERT tokenizer classifies characters with Python's `unicodedata` and lower-cases with
// `str.lower()`; these tables freeze exactly that data so that the Swift tokenizer gives the same
// result for every code point whatever Unicode version the Swift runtime carries.
//
// Entries are hexadecimal and separated by commas (newlines are ignored).

enum UnicodeTables {{
    static let version = "{unicodedata.unidata_version}"

    /// Runs "first:flags": every code point from `first` up to the next run's first has `flags`.
    /// Bits 0-2: 0 ordinary, 1 dropped (NUL, U+FFFD, categories C*), 2 whitespace (separates words),
    /// 3 punctuation (ASCII symbols, categories P*), 4 CJK ideograph (a word of its own).
    /// Bit 3: category Mn. Bit 4: normalisation may change it (has a canonical decomposition, a
    /// non-zero combining class, or composes with a preceding character). Bit 5: `str.lower()`
    /// changes it. Bit 6: cased and not case-ignorable. Bit 7: case-ignorable.
    static let flagRuns = {literal(runs)}

    /// "code point:canonical combining class", for non-zero classes.
    static let combiningClasses = {literal(ccc)}

    /// "code point:full canonical decomposition" (Hangul syllables are decomposed algorithmically).
    static let decompositions = {literal(decompositions, 8)}

    /// "first second:composite" for every primary composite (Hangul composed algorithmically).
    static let compositions = {literal(compositions, 8)}

    /// "code point:str.lower() of the code point alone" (U+03A3 also depends on its context).
    static let lowercaseMappings = {literal(lowercase, 8)}
}}
"""
    with open(TABLES, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {TABLES}: {len(runs)} runs, {len(ccc)} classes, {len(decompositions)} decompositions,"
          f" {len(compositions)} compositions, {len(lowercase)} lowercase mappings")


# --------------------------------------------------------------------------------------------------
# Tokenizer fixtures

HARD_CASES = [
    "",
    " ",
    "\t\t",
    "Hello, World!",
    "hello world",
    "UNwant\u00e9d,running",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 co\u00f6perate se\u00f1or",
    "Cafe\u0301 nai\u0308ve",  # decomposed accents
    "\u00c5ngstr\u00f6m \u212bngstr\u00f6m A\u030angstro\u0308m",  # precomposed, singleton, decomposed
    "\u0301\u0301\u0301",  # combining marks only
    "a\u0301\u0327b \u1e0b\u0323 q\u0307\u0323",  # mark reordering
    "\u0130stanbul \u0049\u0307 \u0131",  # dotted capital I lowercases to two characters
    "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3 \u03a3\u0391\u03a3 \u03a3 A\u03a3 A\u03a3'b A'\u03a3",  # final sigma
    "\u1f08\u1f00 \u1f88 \u0390 \u1fef \u037e \u0387",  # Greek polytonic and canonical singletons
    "stra\u00dfe \u1e9e \ufb01 \ufb00 \u0149",
    "The quick brown fox jumps over the lazy dog.",
    "don't can't won't I'm",
    "$100 50% a&b a+b=c <tag> {x} [y] ^z `q` ~w |p| \\\\ @me #hash",
    "\u00bfQu\u00e9? \u00a1S\u00ed! \u00ab\u00bb \u2018x\u2019 \u201cy\u201d \u2014 \u2013 \u2026 \u00b7 \u00a7 \u00b6",
    "emoji \U0001F600\U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467 \u2764\ufe0f \U0001F1FA\U0001F1F8",
    "control\x00chars\x01here\x07and\x1bthere\x7f\x80\x9f",
    "nul\x00 fffd\ufffd mixed\x00\ufffd",
    "tab\tseparated\tvalues",
    "carriage\rreturn\r\nwindows",
    "vertical\x0btab form\x0cfeed file\x1cseparator unit\x1fsep next\x85line",
    "line\u2028separator paragraph\u2029separator",
    "zero\u200bwidth\u200cnon\u200djoiner\u2060word\ufeffbom\u00adsoft\u180emongolian",
    "nbsp\u00a0here ideographic\u3000space thin\u2009space en\u2002space figure\u2007space ogham\u1680mark",
    "\u4e2d\u6587\u5b57\u7b26\u6d4b\u8bd5",
    "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8\u3002\uff08\u62ec\u53f7\uff09\u201c\u5f15\u53f7\u201d",
    "Linux\u7cfb\u7edf\u7ba1\u7406\u5458\u624b\u518c (Debian) apt-get install \u8f6f\u4ef6\u5305",
    "\u3400\u4dbf \U00020000\U0002a6df \U0002a700\U0002b739 \U0002b740\U0002b81d \U0002b820\U0002cea1",
    "\uf900\uf901\ufa0e\ufa6d\ufad9 \U0002f800\U0002fa1d compat ideographs",
    "\U00030000\U0003134a Ext-G (not in the reference ranges) \U00031350 Ext-H \U0002ebf0 Ext-I",
    "\u3042\u3044\u3046\u30a2\u30a4\u30a6 \u304b\u3099 \u30ac \uff76\uff9e",  # Japanese kana
    "\ud55c\uad6d\uc5b4 \u1112\u1161\u11ab\u1100\u116e\u11a8 \u314e\u314f\u3134",  # Hangul: syllables, jamo
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a \u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22",  # Thai
    "\u0627\u0644\u0633\u0644\u0627\u0645 \u0639\u0644\u064a\u0643\u0645\u060c \u0645\u064e\u0631\u0652\u062d\u064e\u0628\u064b\u0627\u061f",  # Arabic
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0939\u093f\u0928\u094d\u0926\u0940 \u0915\u094d\u0937 \u0964",  # Devanagari
    "\u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd \u05e2\u05d5\u05dc\u05dd",  # Hebrew with points
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0401\u043b\u043a\u0430 \u0419\u043e\u0433\u0430",  # Cyrillic
    "\uff28\uff45\uff4c\uff4c\uff4f\uff0c\uff37\uff4f\uff52\uff4c\uff44\uff01 \uff11\uff12\uff13",  # fullwidth
    "\u2460\u2461 \u00bd \u00b2 \u2162 \u2122 \u00a9 \u00ae \u2103 \u33a1",
    "\u1d400\u1d41a \U0001d400\U0001d41a math \U0001d7d8",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 100,
    "a" * 101,
    "b" * 99 + "\u0301",
    "\u00e9" * 100 + " " + "e\u0301" * 60,
    "x" * 250 + " short",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "[MASK] [CLS] [SEP] [PAD] [UNK]",
    "a[MASK]b c[SEP]d [mask] [Mask] [ MASK ]",
    "[[MASK]] [MASK[MASK]] [CLS][SEP]",
    "[MA\x00SK] [MA\u200bSK] [MAS\u212a] x[MA\x00SK]",
    "\u00e9[UNK]\u0301 [UNK]\u0301",
    "##ing ## # ##",
    "Mixed \u4e2d\u6587 and English \u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0639\u0631\u0628\u064a \u0939\u093f\u0928\u094d\u0926\u0940 \u65e5\u672c\u8a9e",
    "http://example.com/path?query=1&x=2 user@example.org",
    "3.14159 1,000,000 -42 +7 1e-10 0x1F",
    "def f(x): return x**2 # comment",
    "\U000e0001\U000e0041 tag chars \ue000 private \U000f0000 \U0010fffd",
    "\u0378 \u0380 \u2065 \U0001fae8 \U0001fa75 unassigned in Unicode 14",
    "\u0345\u0399 \u1fb3 \u1fbc \u00b5 \u212a \u2126",
    "\u0041\u030a\u0323 \u0041\u0323\u030a \u1e9b\u0323",
    "\u09c7\u09be \u0b47\u0b3e \u0cbf\u0cd5 \u0dd9\u0dcf",  # compositions whose second part is a starter
    "  leading and trailing spaces  ",
    "multiple     spaces\t\t and \n newlines",
    "UPPER lower MiXeD CamelCase snake_case kebab-case",
    "\u00c6\u00e6 \u00d8\u00f8 \u0152\u0153 \u0141\u0142 \u0110\u0111 \u00de\u00fe \u00d0\u00f0",
    "\u1e00\u1e01 \u01c4\u01c5\u01c6 \u01f1\u01f2\u01f3 \u1f80\u1f88",
]


def reference_tokenizer(lowercase):
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    return BertTokenizerLegacy(VOCAB, do_lower_case=lowercase)


def reference_basic_tokens(tokenizer, text):
    """The words WordPiece receives: BertTokenizer.tokenize without the WordPiece step."""
    words = []
    specials = set(tokenizer.all_special_tokens)
    for chunk in tokenizer.tokens_trie.split(text):
        if not chunk:
            continue
        if chunk in specials:
            words.append(chunk)
        else:
            words.extend(tokenizer.basic_tokenizer.tokenize(chunk, never_split=tokenizer.all_special_tokens))
    return words


def reference_ids(tokenizer, text):
    return tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))


def write_hard_cases(uncased, cased):
    cases = []
    for text in HARD_CASES:
        entry = {"text": text}
        for name, tok in (("uncased", uncased), ("cased", cased)):
            tokens = tok.tokenize(text)
            ids = tok.convert_tokens_to_ids(tokens)
            assert ids == tok.encode(text, add_special_tokens=False)
            entry[name] = {"basic": reference_basic_tokens(tok, text), "tokens": tokens, "ids": ids}
        cases.append(entry)
    path = os.path.join(FIXTURES, "hard-cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"vocab": "bert-base-uncased-vocab.txt", "cases": cases}, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print(f"wrote {path}: {len(cases)} cases")


def random_texts(count=3000, seed=20240607):
    """Random strings from pools of characters the tokenizer treats specially (and from anywhere in
    the code space), so that the comparison covers text nobody wrote."""
    import random

    rng = random.Random(seed)
    pools = [
        [chr(c) for c in range(0x20, 0x7F)] * 3,  # ASCII, weighted up
        [chr(c) for c in range(0x00, 0x20)] + ["\x7f", "\x85", "\u00a0", "\u2028", "\u2029", "\u200b", "\ufeff",
                                               "\ufffd", "\u3000", "\u1680", "\u180e", "\u00ad"],
        [chr(c) for c in range(0xC0, 0x250)],  # Latin-1 and Latin Extended
        [chr(c) for c in range(0x300, 0x370)],  # combining diacritics
        [chr(c) for c in range(0x370, 0x400)] + ["\u03a3"] * 20,  # Greek, capital sigma weighted up
        [chr(c) for c in range(0x1F00, 0x2000)],  # Greek extended
        [chr(c) for c in range(0x2000, 0x2070)],  # general punctuation
        [chr(c) for c in range(0x4E00, 0x4E80)] + [chr(c) for c in range(0xF900, 0xF920)],
        [chr(c) for c in range(0x1100, 0x1200)] + [chr(c) for c in range(0xAC00, 0xAC80)],  # Hangul
        [chr(c) for c in range(0x0900, 0x0980)] + [chr(c) for c in range(0x0E00, 0x0E60)],  # Devanagari, Thai
        [chr(c) for c in range(0xFF00, 0xFFF0)],  # fullwidth and halfwidth forms
        ["[MASK]", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[", "]", "##", "\u0130", "\u212a", "\u1e9e"],
    ]
    texts = []
    for _ in range(count):
        length = rng.choice([1, 2, 3, 5, 8, 13, 21, 40, 120])
        chars = []
        for _ in range(length):
            if rng.random() < 0.08:
                cp = rng.randrange(0x110000)
                if 0xD800 <= cp <= 0xDFFF:
                    cp = 0x20
                chars.append(chr(cp))
            else:
                chars.append(rng.choice(rng.choice(pools)))
        texts.append("".join(chars))
    return texts


def write_random_cases(uncased, cased):
    cases = []
    for text in random_texts():
        cases.append({
            "text": text,
            "uncased": reference_ids(uncased, text),
            "cased": reference_ids(cased, text),
            "casedBasic": reference_basic_tokens(cased, text),
        })
    path = os.path.join(FIXTURES, "random-cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"vocab": "bert-base-uncased-vocab.txt", "cases": cases}, f, ensure_ascii=True, indent=0)
        f.write("\n")
    print(f"wrote {path}: {len(cases)} cases")


def write_excerpts():
    sources = {
        "zh-handbook": sorted(os.listdir(os.path.join(SHARED_CORPORA, "zh-handbook")))[:ZH_HANDBOOK_FILES],
        "python-docs": PYTHON_DOCS_FILES,
    }
    total = 0
    for folder, names in sources.items():
        os.makedirs(os.path.join(EXCERPTS, folder), exist_ok=True)
        for name in names:
            with open(os.path.join(SHARED_CORPORA, folder, name), encoding="utf-8") as f:
                lines = f.read().split("\n")
            kept, size = [], 0
            for line in lines:
                size += len(line.encode("utf-8")) + 1
                if size > EXCERPT_BYTES[folder] and kept:
                    break
                kept.append(line)
            data = ("\n".join(kept).rstrip("\n") + "\n").encode("utf-8")
            with open(os.path.join(EXCERPTS, folder, name), "wb") as f:
                f.write(data)
            total += len(data)
    print(f"wrote {EXCERPTS}: {sum(map(len, sources.values()))} files, {total} bytes")


def folder_files(root, folder):
    return [f"{folder}/{name}" for name in sorted(os.listdir(os.path.join(root, folder)))]


def repository_corpus_files():
    excerpts = os.path.relpath(EXCERPTS, ROOT)
    return ["corpus/kjv.txt"] + folder_files(ROOT, f"{excerpts}/python-docs") + folder_files(ROOT, f"{excerpts}/zh-handbook")


def shared_corpus_files():
    return ["kjv/kjv-chapters.txt"] + folder_files(SHARED_CORPORA, "python-docs") + folder_files(SHARED_CORPORA, "zh-handbook")


def corpus_lines(root, relative):
    """(the file's bytes, its lines): what the digests cover, one line after each "\\n"."""
    with open(os.path.join(root, relative), "rb") as f:
        data = f.read()
    return data, data.decode("utf-8").split("\n")


def write_corpus_digests(uncased, cased, root, relative_paths, name):
    files = []
    for relative in relative_paths:
        data, lines = corpus_lines(root, relative)
        blocks = []
        for start in range(0, len(lines), BLOCK_LINES):
            uncased_ids = hashlib.sha256()
            cased_ids = hashlib.sha256()
            cased_basic = hashlib.sha256()
            for line in lines[start : start + BLOCK_LINES]:
                ids = reference_ids(uncased, line)
                uncased_ids.update(struct.pack(f"<{len(ids) + 1}i", *ids, -1))
                ids = reference_ids(cased, line)
                cased_ids.update(struct.pack(f"<{len(ids) + 1}i", *ids, -1))
                cased_basic.update((" ".join(reference_basic_tokens(cased, line)) + "\n").encode("utf-8"))
            blocks.append([uncased_ids.hexdigest(), cased_ids.hexdigest(), cased_basic.hexdigest()])
        files.append({
            "path": relative,
            "sha256": hashlib.sha256(data).hexdigest(),
            "lines": len(lines),
            "blocks": blocks,
        })
        print(f"{relative}: {len(lines)} lines", file=sys.stderr)
    path = os.path.join(FIXTURES, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({
            "vocab": "bert-base-uncased-vocab.txt",
            "blockLines": BLOCK_LINES,
            "blockDigests": ["uncased ids", "cased ids", "cased basic tokens"],
            "files": files,
        }, f, indent=0)
        f.write("\n")
    print(f"wrote {path}: {len(files)} files")


def benchmark(path):
    """Throughput of the reference tokenizers on the lines of `path`, for comparison with
    `swiftbert tokenize` measured on the same machine: MB/s of wall-clock time and of CPU time
    (the CPU figure is the fairer one on a shared, loaded machine)."""
    import time
    from transformers import BertTokenizer

    with open(path, "rb") as f:
        data = f.read()
    lines = data.decode("utf-8").split("\n")
    megabytes = len(data) / 1e6

    def timed(name, run):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{name}: {megabytes / wall:.2f} MB/s wall, {megabytes / cpu:.2f} MB/s CPU")

    slow = reference_tokenizer(True)
    timed("Hugging Face BertTokenizerLegacy (pure Python), line by line",
          lambda: [slow.encode(line, add_special_tokens=False) for line in lines])
    fast = BertTokenizer(VOCAB, do_lower_case=True)
    timed("Hugging Face BertTokenizer (Rust tokenizers), line by line",
          lambda: [fast.encode(line, add_special_tokens=False) for line in lines])
    timed("Hugging Face BertTokenizer (Rust tokenizers), one batch (all threads)",
          lambda: fast(lines, add_special_tokens=False))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", action="store_true", help="write Sources/Data/UnicodeTables.swift")
    parser.add_argument("--excerpts", action="store_true", help="write Tests/DataTests/Fixtures/corpora/ from ../shared")
    parser.add_argument("--fixtures", action="store_true", help="write Tests/DataTests/Fixtures/tokenizer/")
    parser.add_argument("--skip-corpora", action="store_true", help="with --fixtures: keep corpus-digests.json")
    parser.add_argument("--shared-digests", action="store_true",
                        help="write shared-corpus-digests.json over the whole of ../shared/corpora")
    parser.add_argument("--benchmark", metavar="FILE", help="time the reference tokenizers on the lines of FILE")
    args = parser.parse_args()
    if not (args.tables or args.excerpts or args.fixtures or args.shared_digests or args.benchmark):
        parser.error("nothing to do: pass --tables, --excerpts, --fixtures, --shared-digests or --benchmark FILE")
    if args.benchmark:
        benchmark(args.benchmark)
    if args.tables:
        write_tables()
    if args.excerpts:
        write_excerpts()
    if args.fixtures or args.shared_digests:
        os.makedirs(FIXTURES, exist_ok=True)
        uncased = reference_tokenizer(True)
        cased = reference_tokenizer(False)
    if args.fixtures:
        write_hard_cases(uncased, cased)
        write_random_cases(uncased, cased)
        if not args.skip_corpora:
            write_corpus_digests(uncased, cased, ROOT, repository_corpus_files(), "corpus-digests.json")
    if args.shared_digests:
        write_corpus_digests(uncased, cased, SHARED_CORPORA, shared_corpus_files(), "shared-corpus-digests.json")


if __name__ == "__main__":
    main()
