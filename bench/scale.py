"""The store growing: ``docsieve ingest`` of a seeded synthetic corpus, chunk after chunk, into one SQLite
store, with probes after each chunk.

    .venv/bin/python bench/scale.py --docs 200000 [--chunk 50000] [--workdir DIR] [--seed N] [--verbatim 0.01]
        [--env DOCSIEVE_INDEX_WINDOW=0 ...] [--keep] [--probe-only] [--corpus ../shared/corpus]

The corpus (``generate``, written to WORKDIR/corpus, never to the repository; reused when WORKDIR already
holds one for the same --docs, --chunk and --seed): articles recombined from the paragraphs of real news,
SaudiNewsNet (Arabic) and BBC (English), each article in one language (10% English). Paragraphs are cut
into pieces of at most 700 characters at sentence ends; an article draws pieces until it reaches a length
drawn around 4,900 characters (at least 2,000), shuffles the sentences of half of them, takes 1% of them
word for word and rewords the others (each word replaced by a word of the pool with chance 0.5: real news
reuses little text, see VERBATIM_SHARE; ``--verbatim 1`` takes every piece word for word, as the issue's
corpus did), and gets a line of random words of its own; some get an agency or dateline line first (35%)
or a footer (25%), the lines that recur across many different SaudiNewsNet articles. The arrival order
advances 3,000 articles per simulated day from 2015-01-01 (1M articles: about a year), publication time =
arrival +- 30 minutes. 5% of the articles are planted copies of an earlier article (90% within the last
5,000 articles, the rest 5,000 to 30,000 back, that is up to 10 days), published 10 to 180 minutes after
it, with one edit: truncation (the last 1-3 paragraphs cut, at least 60% of the text kept), headline (a
new title and a dateline before the first paragraph), drop (one paragraph dropped), footer (a footer line
added) or ortho (Arabic only: أ/إ→ا, ة→ه in half the words). The ground truth is ``truth-NNN.tsv`` beside
each ``part-NNN.jsonl``: copy_id, original_id, kind. The pool of real paragraphs is small (77,000 pieces,
some 13 an article): taken word for word (``--verbatim 1``) each recurs in about docs x 13 / 77,000
articles, among other pieces: far more shared text than real news has, which the template weights and the
containment keys see. The table's "piece reuse" says how much: the earlier word-for-word uses of an
article's pieces, on average over the chunk (planted copies included).

The run: a fresh store (``docsieve migrate``), then for each chunk ``docsieve ingest part-NNN.jsonl`` as a
child process (wall time from here, process start included; peak RSS from GNU time or an ``os.wait4``
wrapper, as in bench/pipeline.py: a child started from this process would otherwise inherit its peak),
and after it the probes, each a child process too: the ingest of one new article, ``docsieve show`` of
a stored copy by the first 8 characters of its id, ``docsieve similar`` of a new copy (one paragraph
dropped) of an article of the chunk (was that article among the matches?), and the recall of the chunk's
planted copies read from the store (SQLite, read-only): a copy is found when its record is not canonical
and is in its original's story. Also the articles of the chunk that are no planted copy but were stored
as copies (merged by mistake, or copies the generator made by chance), and the store's size per record.

docsieve runs with its defaults (every DOCSIEVE_ variable of this environment is cleared) and what
--env adds, from a copy of its packages made when the run starts (WORKDIR/src, first on PYTHONPATH: a
commit in the repository during a run of many minutes changes nothing), compiled into WORKDIR/pycache
(nothing is written in the repository). The commit it was copied from is in the output.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import numpy as np
from common import DEFAULT_CORPUS, machine, settle
from pipeline import MAX_RSS_LINE, docsieve_command, measuring_prefix

PINNED_PACKAGES = ("docsieve", "worker", "scheduler")  # copied for the runs (``pin_sources``)
GENERATOR_VERSION = 4  # a corpus made by another version is made again
ARTICLES_PER_DAY = 3000
START = datetime(2015, 1, 1, tzinfo=UTC)
JITTER_S = 1800  # publication time = arrival +- this
ENGLISH_SHARE = 0.10
MEAN_CHARS = 4900
MIN_CHARS = 2000
MAX_CHARS = 16000
LENGTH_SHAPE = 4.0  # of the gamma distribution the target lengths are drawn from
LENGTH_SCALE = 1141.0  # chosen so that articles average about MEAN_CHARS, the extra lines included
MAX_PIECE_CHARS = 700
MIN_PIECE_CHARS = 40
NEAR_COPY_CHARS = 60  # a piece that starts or ends as an earlier one did is left out of the pool
DRAWS = 64  # pieces drawn for an article, of which it takes what reaches its length
SHUFFLE_SHARE = 0.5  # of the pieces of several sentences, those whose sentences are shuffled
# Of the pieces an article draws, those it takes word for word (``--verbatim``); the others have each word
# replaced, with this chance, by a word of the pool: new text in the language's words, sharing few 3-grams
# with any other use of the piece. Real news reuses little: in saudinewsnet-dev an article's paragraphs
# (200 characters or more) appeared 0.15 times before on average (0.05 of the articles reuse any), mostly
# as copies. A pool of 77,000 pieces taken word for word gives each article's pieces 69 earlier uses at
# 50,000 articles and 2,600 at 1,000,000 (every piece in hundreds of articles).
VERBATIM_SHARE = 0.01
REWORD_SHARE = 0.5
HEAD_SHARE = 0.35
FOOT_SHARE = 0.25
BOILERPLATE_ARTICLES = 4  # a short paragraph in this many SaudiNewsNet articles or more is boilerplate
BOILERPLATE_MAX_CHARS = 80
COPY_SHARE = 0.05
NEAR_BACK = 5000
FAR_BACK = 30000
FAR_SHARE = 0.10
FIRST_ORIGINALS = 100  # the first articles are never copies
KINDS = ("truncation", "headline", "drop", "footer", "ortho")
ORTHO = str.maketrans({"أ": "ا", "إ": "ا", "ة": "ه"})
SENTENCE_END = re.compile(r"(?<=[.!?؟])\s+")
ARABIC_LETTER = re.compile("[\u0621-\u064a]")

ENGLISH_HEADS = (
    "LONDON (Reuters) -",
    "NEW YORK (AP) -",
    "By our business correspondent",
    "From the BBC's sports desk",
    "WASHINGTON (AFP) -",
    "Staff and agencies",
)
ENGLISH_FEET = (
    "Additional reporting by the news desk.",
    "Follow us on Twitter for the latest updates.",
    "Copyright 2015 The Associated Press. All rights reserved.",
    "This story has been corrected to fix a date.",
    "Send us your comments using the form below.",
)
ENGLISH_OUTLETS = ("bbc", "reuters", "ap", "afp", "guardian", "independent")
DATELINES = {
    "ar": [
        f"{city} – {agency}:"
        for city in ("الرياض", "جدة", "مكة المكرمة", "الدمام", "المدينة المنورة", "القاهرة", "دبي", "لندن")
        for agency in ("واس", "رويترز", "أ ف ب", "متابعات")
    ],
    "en": [
        f"{city} ({agency}) -"
        for city in ("LONDON", "NEW YORK", "WASHINGTON", "PARIS", "BRUSSELS", "TOKYO")
        for agency in ("Reuters", "AP", "AFP", "BBC")
    ],
}
READ_ALSO = {"ar": "اقرأ أيضاً:", "en": "Read more:"}


# --- the corpus ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pool:
    """What the articles of one language are made of."""

    language: str
    pieces: list[tuple[str, ...]]  # each a paragraph (or a part of one) as its sentences
    lengths: np.ndarray  # characters of each piece
    heads: list[str]  # agency and dateline lines
    feet: list[str]
    titles: list[str]
    words: list[str]  # every distinct word, for the line of its own each article gets
    uses: np.ndarray  # running count of each word's uses in the pieces: rewording draws words as often
    outlets: list[str]


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    language: str
    title: str
    paragraphs: list[str]
    published: datetime
    outlet: str
    pieces: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # of its pool, drawn

    def line(self) -> str:
        """The article as a line of JSON Lines, in the fields docsieve reads (``source`` is the outlet)."""
        item = {
            "id": self.id,
            "title": self.title,
            "text": "\n".join(self.paragraphs),
            "published": self.published.isoformat(),
            "source": self.outlet,
        }
        return json.dumps(item, ensure_ascii=False) + "\n"


def pieces_of(paragraph: str) -> list[tuple[str, ...]]:
    """A paragraph as pieces of at most MAX_PIECE_CHARS characters, cut at sentence ends (a longer
    sentence at a space), each a tuple of its sentences."""
    sentences: list[str] = []
    for sentence in SENTENCE_END.split(paragraph):
        rest = sentence.strip()
        while len(rest) > MAX_PIECE_CHARS:
            cut = rest.rfind(" ", 0, MAX_PIECE_CHARS)
            cut = cut if cut > 0 else MAX_PIECE_CHARS
            sentences.append(rest[:cut])
            rest = rest[cut:].strip()
        if rest:
            sentences.append(rest)
    pieces: list[tuple[str, ...]] = []
    current: list[str] = []
    size = 0
    for sentence in sentences:
        if current and size + 1 + len(sentence) > MAX_PIECE_CHARS:
            pieces.append(tuple(current))
            current, size = [], 0
        size += len(sentence) + (1 if current else 0)
        current.append(sentence)
    if current:
        pieces.append(tuple(current))
    return [p for p in pieces if sum(map(len, p)) + len(p) - 1 >= MIN_PIECE_CHARS]


def make_pool(
    language: str, paragraphs: list[str], heads: list[str], feet: list[str], titles: list[str], outlets: list[str]
) -> Pool:
    pieces: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for paragraph in dict.fromkeys(paragraphs):
        for piece in pieces_of(paragraph):
            # Without near copies of a piece (the same wire paragraph from two outlets, a story the corpus
            # holds twice): two articles that drew them would share more than their mix.
            text = " ".join(piece)
            ends = (text[:NEAR_COPY_CHARS], "\0" + text[-NEAR_COPY_CHARS:])
            if not seen.intersection(ends):
                pieces.append(piece)
                seen.update(ends)
    lengths = np.array([sum(map(len, p)) + len(p) - 1 for p in pieces], dtype=np.int64)
    counts = Counter(w for p in pieces for s in p for w in s.split() if len(w) > 1)
    words = sorted(counts)
    uses = np.cumsum([counts[w] for w in words])
    return Pool(language, pieces, lengths, heads, feet, titles, words, uses, outlets)


def load_pools(corpus: Path) -> dict[str, Pool]:
    """The Arabic pool from saudinewsnet-dev (its recurring short lines are the boilerplate), the English
    one from bbc-dev."""
    snn = corpus / "saudinewsnet-dev"
    bbc = corpus / "bbc-dev" / "bbc-dev.jsonl.gz"
    if not any(snn.glob("*.json.gz")) or not bbc.exists():
        sys.exit(f"corpus not found: {snn}/*.json.gz and {bbc} (the shared corpus; pass --corpus DIR)")
    paragraphs: list[str] = []
    titles: list[str] = []
    outlets: set[str] = set()
    in_articles: Counter[str] = Counter()
    for path in sorted(snn.glob("*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for row in json.load(fh):
                found = [p.strip() for p in (row.get("content") or "").split("\n") if p.strip()]
                paragraphs += found
                in_articles.update(set(found))
                if (row.get("title") or "").strip():
                    titles.append(row["title"].strip())
                if row.get("source"):
                    outlets.add(row["source"])
    boilerplate = [
        p for p, n in in_articles.items() if n >= BOILERPLATE_ARTICLES and 8 <= len(p) <= BOILERPLATE_MAX_CHARS
    ]
    heads = sorted(p for p in boilerplate if "–" in p or "ـ " in p)
    feet = sorted(p for p in boilerplate if p not in heads)
    kept = set(boilerplate)
    arabic = make_pool("ar", [p for p in paragraphs if p not in kept], heads, feet, titles, sorted(outlets))

    english_paragraphs: list[str] = []
    english_titles: list[str] = []
    with gzip.open(bbc, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            english_paragraphs += [p.strip() for p in row["text"].split("\n") if p.strip()]
            english_titles.append(row["title"].strip())
    english = make_pool(
        "en", english_paragraphs, list(ENGLISH_HEADS), list(ENGLISH_FEET), english_titles, list(ENGLISH_OUTLETS)
    )
    return {"ar": arabic, "en": english}


def pick(items: Sequence[str], rng: np.random.Generator) -> str:
    return items[int(rng.integers(len(items)))]


def compose(pool: Pool, rng: np.random.Generator, verbatim: float = VERBATIM_SHARE) -> tuple[list[str], np.ndarray]:
    """A new article's paragraphs: pieces drawn until a drawn length is reached, half of them with their
    sentences shuffled, all but a ``verbatim`` share of them reworded, a line of random words of its own,
    maybe an agency line and a footer. With the pieces taken word for word."""
    target = min(MAX_CHARS, max(MIN_CHARS, rng.gamma(LENGTH_SHAPE, LENGTH_SCALE)))
    draws = rng.integers(0, len(pool.pieces), DRAWS)
    reach = np.cumsum(pool.lengths[draws] + 1)
    taken = min(DRAWS, int(np.searchsorted(reach, target)) + 1)
    shuffled = rng.random(taken) < SHUFFLE_SHARE
    kept = rng.random(taken) < verbatim
    paragraphs: list[str] = []
    for index, shuffle, word_for_word in zip(draws[:taken].tolist(), shuffled.tolist(), kept.tolist(), strict=True):
        sentences = pool.pieces[index]
        if shuffle and len(sentences) > 1:
            sentences = tuple(sentences[i] for i in rng.permutation(len(sentences)))
        paragraph = " ".join(sentences)
        if not word_for_word:
            words = paragraph.split(" ")
            replaced = np.flatnonzero(rng.random(len(words)) < REWORD_SHARE)
            # Words as often as the pool uses them, so that a reworded piece keeps its length.
            drawn = np.searchsorted(pool.uses, rng.integers(0, pool.uses[-1], len(replaced)), side="right")
            for i, w in zip(replaced.tolist(), drawn.tolist(), strict=True):
                words[i] = pool.words[w]
            paragraph = " ".join(words)
        paragraphs.append(paragraph)
    own = " ".join(pool.words[i] for i in rng.integers(0, len(pool.words), int(rng.integers(8, 15))).tolist())
    paragraphs.insert(int(rng.integers(0, min(3, len(paragraphs)) + 1)), own)
    if rng.random() < HEAD_SHARE:
        paragraphs.insert(0, pick(pool.heads, rng))
    if rng.random() < FOOT_SHARE:
        paragraphs.append(pick(pool.feet, rng))
    return paragraphs, draws[:taken][kept]


def edited(title: str, paragraphs: list[str], kind: str, pool: Pool, rng: np.random.Generator) -> tuple[str, list[str]]:
    """A copy of an article with one edit of the given kind: its title and paragraphs."""
    paragraphs = list(paragraphs)
    if kind == "truncation":  # the last 1-3 paragraphs, keeping at least 60% of the text (at least one cut)
        total = sum(map(len, paragraphs))
        cut = int(rng.integers(1, 4))
        while cut > 1 and sum(map(len, paragraphs[:-cut])) < 0.6 * total:
            cut -= 1
        paragraphs = paragraphs[:-cut]
    elif kind == "headline":
        title = pick(pool.titles, rng)
        paragraphs[0] = f"{pick(DATELINES[pool.language], rng)} {paragraphs[0]}"
    elif kind == "drop":
        del paragraphs[int(rng.integers(1, len(paragraphs)))]
    elif kind == "footer":
        footer = pick(pool.feet, rng) if rng.random() < 0.5 else f"{READ_ALSO[pool.language]} {pick(pool.titles, rng)}"
        paragraphs.append(footer)
    elif kind == "ortho":
        changed = []
        for paragraph in paragraphs:
            words = paragraph.split(" ")
            for i in np.flatnonzero(rng.random(len(words)) < 0.5).tolist():
                words[i] = words[i].translate(ORTHO)
            changed.append(" ".join(words))
        paragraphs = changed
    else:
        raise ValueError(f"unknown kind of copy {kind!r}")
    return title, paragraphs


def arrival(position: int) -> datetime:
    return START + timedelta(seconds=position * 86_400 / ARTICLES_PER_DAY)


def article_id(position: int) -> str:
    return f"a{position:07d}"


@dataclass(frozen=True, slots=True)
class Plan:
    """Which articles are copies, of which original (never itself a copy), and what edit each makes."""

    original: np.ndarray  # the position copied, -1 for an original
    kind: list[str | None]


def plan(docs: int, seed: int) -> Plan:
    rng = np.random.default_rng([seed, 1])
    is_copy = rng.random(docs) < COPY_SHARE
    is_copy[:FIRST_ORIGINALS] = False
    # How far back, uniform over the articles there are: the last NEAR_BACK, or (FAR_SHARE of the copies,
    # once there are more) those from NEAR_BACK to FAR_BACK back.
    position = np.arange(docs)
    far = (rng.random(docs) < FAR_SHARE) & (position > NEAR_BACK)
    near_back = 1 + np.floor(rng.random(docs) * np.minimum(NEAR_BACK, np.maximum(position, 1))).astype(np.int64)
    far_span = np.clip(position - NEAR_BACK, 1, FAR_BACK - NEAR_BACK)
    far_back = NEAR_BACK + np.floor(rng.random(docs) * far_span).astype(np.int64)
    targets = position - np.where(far, far_back, near_back)
    kinds = rng.integers(0, len(KINDS), docs)
    original = np.full(docs, -1, dtype=np.int64)
    kind: list[str | None] = [None] * docs
    for copy in np.flatnonzero(is_copy).tolist():
        target = int(targets[copy])
        while original[target] >= 0:  # a copy of a copy copies the first article
            target = int(original[target])
        original[copy] = target
        kind[copy] = KINDS[int(kinds[copy])]
    return Plan(original, kind)


def part_name(chunk_index: int) -> str:
    return f"part-{chunk_index:03d}.jsonl"


def truth_name(chunk_index: int) -> str:
    return f"truth-{chunk_index:03d}.tsv"


def manifest_of(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def generate(
    docs: int,
    seed: int,
    out_dir: Path,
    chunk: int = 50_000,
    corpus: Path = DEFAULT_CORPUS,
    pools: dict[str, Pool] | None = None,
    verbatim: float = VERBATIM_SHARE,
) -> dict:
    """Write the corpus (``part-NNN.jsonl`` and ``truth-NNN.tsv`` of ``chunk`` articles each) and its
    manifest ``corpus.json`` (returned); the same docs, seed and chunk give the same files."""
    started = time.perf_counter()
    pools = pools or load_pools(corpus)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "corpus.json").unlink(missing_ok=True)
    layout = plan(docs, seed)
    last_use: dict[int, int] = {}
    for position in np.flatnonzero(layout.original >= 0).tolist():
        last_use[int(layout.original[position])] = position
    rng = np.random.default_rng([seed, 2])
    languages = np.where(rng.random(docs) < ENGLISH_SHARE, "en", "ar")
    jitter = rng.uniform(-JITTER_S, JITTER_S, docs)
    kept: dict[int, Article] = {}  # originals still to be copied
    uses = {language: np.zeros(len(pool.pieces), dtype=np.int64) for language, pool in pools.items()}
    reuse: list[float] = []  # per chunk: the mean, over its articles, of the earlier uses of their pieces
    reused = 0
    counts: Counter[str] = Counter()
    chars = 0
    part: TextIO | None = None
    truth: TextIO | None = None
    try:
        for position in range(docs):
            if position % chunk == 0:
                for fh in (part, truth):
                    if fh is not None:
                        fh.close()
                part = (out_dir / part_name(position // chunk)).open("w", encoding="utf-8")
                truth = (out_dir / truth_name(position // chunk)).open("w", encoding="utf-8")
                truth.write("copy_id\toriginal_id\tkind\n")
            assert part is not None and truth is not None
            published = arrival(position) + timedelta(seconds=float(jitter[position]))
            source = int(layout.original[position])
            if source < 0:
                pool = pools[str(languages[position])]
                paragraphs, pieces = compose(pool, rng, verbatim)
                title = pick(pool.titles, rng)
                article = Article(
                    article_id(position), pool.language, title, paragraphs, published, pick(pool.outlets, rng), pieces
                )
                if position in last_use:
                    kept[position] = article
            else:
                original = kept[source]
                pool = pools[original.language]
                kind = layout.kind[position]
                assert kind is not None
                if kind == "ortho" and original.language != "ar":
                    kind = KINDS[int(rng.integers(0, len(KINDS) - 1))]  # any other kind
                title, paragraphs = edited(original.title, original.paragraphs, kind, pool, rng)
                later = original.published + timedelta(minutes=float(rng.uniform(10, 180)))
                outlet = pick([o for o in pool.outlets if o != original.outlet] or pool.outlets, rng)
                article = Article(
                    article_id(position),
                    pool.language,
                    title,
                    paragraphs,
                    max(published, later),
                    outlet,
                    original.pieces,
                )
                truth.write(f"{article.id}\t{original.id}\t{kind}\n")
                counts[kind] += 1
                if last_use[source] == position:
                    del kept[source]
            line = article.line()
            reused += int(uses[article.language][article.pieces].sum())
            uses[article.language][article.pieces] += 1
            chars += sum(map(len, article.paragraphs)) + len(article.paragraphs) - 1
            part.write(line)
            if (position + 1) % chunk == 0 or position + 1 == docs:
                reuse.append(round(reused / (position % chunk + 1), 2))
                reused = 0
                print(f"  generated {position + 1:,} articles ({time.perf_counter() - started:.0f} s)", flush=True)
    finally:
        for fh in (part, truth):
            if fh is not None:
                fh.close()
    manifest = {
        "version": GENERATOR_VERSION,
        "docs": docs,
        "seed": seed,
        "chunk": chunk,
        "verbatim": verbatim,
        "chunks": (docs + chunk - 1) // chunk,
        "copies": dict(sorted(counts.items())),
        "mean_chars": round(chars / docs),
        "pieces": {language: len(pool.pieces) for language, pool in pools.items()},
        "piece_reuse": reuse,
        "english_share": ENGLISH_SHARE,
        "generated_s": round(time.perf_counter() - started, 1),
    }
    (out_dir / "corpus.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def read_truth(out_dir: Path, chunk_index: int) -> list[tuple[str, str, str]]:
    """(copy_id, original_id, kind) of the planted copies of a chunk."""
    lines = (out_dir / truth_name(chunk_index)).read_text(encoding="utf-8").splitlines()[1:]
    return [(a, b, c) for a, b, c in (line.split("\t") for line in lines)]


def nth_line(path: Path, n: int) -> str:
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i == n:
                return line
    raise IndexError(f"{path} has fewer than {n + 1} lines")


# --- the runs ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Child:
    """A finished child process: wall time measured from here, peak RSS from its own rusage."""

    wall_s: float
    peak_rss_mb: float
    returncode: int
    output: str


@dataclass(slots=True)
class Runner:
    """Runs docsieve commands on the store, one at a time, measured."""

    work: Path
    env: dict[str, str]
    prefix: list[str]
    report: Path
    command: str = field(default_factory=docsieve_command)

    def run(self, args: Sequence[str], name: str, check: bool = True) -> Child:
        self.report.unlink(missing_ok=True)
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        settle()
        with log.open("wb") as out:
            started = time.perf_counter()
            returncode = subprocess.run(
                [*self.prefix, self.command, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.work,
                check=False,
            ).returncode
            wall = time.perf_counter() - started
        output = log.read_text(encoding="utf-8", errors="replace")
        if check and returncode != 0:
            sys.exit(f"docsieve {' '.join(args)} failed with exit code {returncode}:\n{output[-4000:]}")
        found = MAX_RSS_LINE.search(self.report.read_text(encoding="utf-8"))
        return Child(wall, int(found.group(1)) / 1024 if found else float("nan"), returncode, output)


SUMMARY_FIELDS = re.compile(r"(read|new|exact copies|near copies|rejected|already stored) (\d+)")
ELAPSED = re.compile(r"^elapsed ([\d.]+) s\s+([\d,.]+) docs/s", re.MULTILINE)


def summary_of(output: str) -> dict[str, int]:
    first = next((line for line in output.splitlines() if line.startswith("read ")), "")
    return {name.replace(" ", "_"): int(n) for name, n in SUMMARY_FIELDS.findall(first)}


def reported_rate(output: str) -> float | None:
    found = ELAPSED.search(output)
    return float(found.group(2).replace(",", "")) if found else None


@dataclass(slots=True)
class Row:
    """One chunk: its ingest, the probes after it, the store then."""

    chunk: int
    records_before: int
    piece_reuse: float = 0.0  # the corpus: earlier uses of an article's pieces, on average over the chunk
    records_after: int = 0
    docs: int = 0
    ingest_s: float = 0.0
    docs_per_s: float = 0.0
    reported_docs_per_s: float | None = None  # docsieve's own figure: no process start, imports, store opening
    ingest_rss_mb: float = 0.0
    summary: dict[str, int] = field(default_factory=dict)
    one_doc_s: float = 0.0
    one_doc_rss_mb: float = 0.0
    show_s: float = 0.0
    show_rss_mb: float = 0.0
    show_ok: bool = False
    similar_s: float = 0.0
    similar_rss_mb: float = 0.0
    similar_found: bool = False  # the article the probe copies was among the matches
    copies: int = 0
    copies_found: int = 0
    truncations: int = 0
    truncations_found: int = 0
    found_by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind: [found, planted]
    unplanted_copies: int = 0  # articles of the chunk that are no planted copy, stored as copies
    rejected: int = 0
    db_bytes: int = 0  # the .db file with its -wal and -shm
    index_bytes: int = 0  # the embedded index's files beside it

    @property
    def store_kb_per_doc(self) -> float:
        return self.db_bytes / 1024 / max(1, self.records_after)


def percent(found: int, total: int) -> str:
    return f"{100 * found / total:.1f}" if total else "-"


def store_bytes(db: Path) -> tuple[int, int]:
    """The database with its -wal and -shm files, and the embedded index's folder beside it."""
    files = sum(p.stat().st_size for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())
    index = Path(f"{db}.index")
    beside = sum(p.stat().st_size for p in index.rglob("*") if p.is_file()) if index.is_dir() else 0
    return files, beside


class StoreReader:
    """The store, read-only, between the runs (no docsieve process has it open then)."""

    def __init__(self, db: Path) -> None:
        self.db = db

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)

    def count_and_last_seq(self) -> tuple[int, int]:
        with closing(self._connect()) as conn:
            count, last = conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM records").fetchone()
        return int(count), int(last)

    def rows_between(self, after_seq: int, up_to_seq: int) -> list[tuple[str, str, str]]:
        """(record id, source, status) of the records stored after ``after_seq`` up to ``up_to_seq``."""
        with closing(self._connect()) as conn:
            query = "SELECT id, source, status FROM records WHERE seq > ? AND seq <= ? ORDER BY seq"
            return [tuple(row) for row in conn.execute(query, (after_seq, up_to_seq))]

    def stories(self, record_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """Each record's (status, story id)."""
        found: dict[str, tuple[str, str | None]] = {}
        with closing(self._connect()) as conn:
            for start in range(0, len(record_ids), 900):
                batch = list(record_ids[start : start + 900])
                marks = ",".join("?" * len(batch))
                for rid, status, story in conn.execute(
                    f"SELECT id, status, story_id FROM records WHERE id IN ({marks})", batch
                ):
                    found[rid] = (status, story)
        return found

    def last_copy(self) -> str | None:
        """The id of the newest record stored as a copy (its story has two records at least)."""
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT id FROM records WHERE status = 'duplicate' ORDER BY seq DESC LIMIT 1").fetchone()
        return row[0] if row else None


def recall(
    reader: StoreReader, truth: Sequence[tuple[str, str, str]], record_of: dict[str, str]
) -> dict[str, list[int]]:
    """Per kind of copy, [found, planted]: found when the copy's record is not canonical and is in the
    story of its original's record."""
    wanted = [record_of[i] for copy, original, _ in truth for i in (copy, original) if i in record_of]
    states = reader.stories(wanted)
    by_kind: dict[str, list[int]] = {}
    for copy, original, kind in truth:
        tally = by_kind.setdefault(kind, [0, 0])
        tally[1] += 1
        copy_state = states.get(record_of.get(copy, ""))
        original_state = states.get(record_of.get(original, ""))
        if copy_state and original_state and copy_state[0] != "canonical" and copy_state[1] is not None:
            tally[0] += copy_state[1] == original_state[1]
    return by_kind


def input_id(source: str) -> str:
    """The article id a JSON Lines record's source ends with (``/path/part-000.jsonl#a0000123``)."""
    return source.rpartition("#")[2]


def write_jsonl(path: Path, article: Article) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(article.line(), encoding="utf-8")
    return path


def probe(
    runner: Runner,
    row: Row,
    reader: StoreReader,
    pools: dict[str, Pool],
    corpus_dir: Path,
    chunk_index: int,
    chunk_docs: int,
    chunk: int,
    seed: int,
    tag: str = "",
) -> None:
    """The probes after a chunk: one new article ingested, a stored copy shown, a new copy looked up. The
    ``tag`` makes the new article another source than an earlier run's probe of the same chunk."""
    rng = np.random.default_rng([seed, 3, chunk_index])
    probes = runner.work / "probes"
    last = chunk_index * chunk + chunk_docs - 1  # the chunk's last article
    when = arrival(last) + timedelta(minutes=1)

    language = "en" if rng.random() < ENGLISH_SHARE else "ar"
    pool = pools[language]
    name = f"{chunk_index:03d}{tag}"
    paragraphs, _ = compose(pool, rng)
    fresh = Article(f"probe-{name}", language, pick(pool.titles, rng), paragraphs, when, "probe")
    child = runner.run(["ingest", "--quiet", str(write_jsonl(probes / f"one-{name}.jsonl", fresh))], f"one-{name}")
    row.one_doc_s, row.one_doc_rss_mb = child.wall_s, child.peak_rss_mb

    shown = reader.last_copy()
    if shown is not None:
        child = runner.run(["show", shown[:8]], f"show-{name}", check=False)
        row.show_s, row.show_rss_mb, row.show_ok = child.wall_s, child.peak_rss_mb, child.returncode == 0

    copied = {a for a, _, _ in read_truth(corpus_dir, chunk_index)}
    while True:  # an article of the chunk that is no planted copy
        n = int(rng.integers(0, chunk_docs))
        item = json.loads(nth_line(corpus_dir / part_name(chunk_index), n))
        if item["id"] not in copied:
            break
    language = "ar" if ARABIC_LETTER.search(item["text"]) else "en"
    title, paragraphs = edited(item["title"], item["text"].split("\n"), "drop", pools[language], rng)
    copy = Article(f"probe-similar-{name}", language, title, paragraphs, when, "probe")
    child = runner.run(["similar", str(write_jsonl(probes / f"similar-{name}.jsonl", copy))], f"similar-{name}")
    row.similar_s, row.similar_rss_mb = child.wall_s, child.peak_rss_mb
    row.similar_found = f"#{item['id']})" in child.output


COLUMNS = (
    "chunk",
    "records before → after",
    "piece reuse",
    "ingest docs/s",
    "ingest peak RSS MB",
    "1-doc ingest s",
    "1-doc RSS MB",
    "show s",
    "similar s",
    "similar RSS MB",
    "recall truncations %",
    "recall all %",
    "stored as copy, not planted",
    "store KB/doc",
    "index MB",
)


def cells(r: Row) -> list[str]:
    """A row's cells, in the order of COLUMNS."""
    return [
        str(r.chunk),
        f"{r.records_before:,} → {r.records_after:,}",
        f"{r.piece_reuse:.0f}",
        f"{r.docs_per_s:,.0f}" if r.docs else "-",  # --probe-only ingests no chunk
        f"{r.ingest_rss_mb:,.0f}" if r.docs else "-",
        f"{r.one_doc_s:.2f}",
        f"{r.one_doc_rss_mb:,.0f}",
        f"{r.show_s:.2f}" + ("" if r.show_ok else " (failed)"),
        f"{r.similar_s:.2f}" + ("" if r.similar_found else " (missed)"),
        f"{r.similar_rss_mb:,.0f}",
        percent(r.truncations_found, r.truncations),
        percent(r.copies_found, r.copies),
        f"{r.unplanted_copies:,}",
        f"{r.store_kb_per_doc:.1f}",
        f"{r.index_bytes / 2**20:,.0f}",
    ]


def markdown(rows: Sequence[Row], final: dict[str, list[int]] | None) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " ---: |" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    ingested = [r for r in rows if r.docs]
    if len(ingested) > 1:
        first, last = ingested[0], ingested[-1]
        lines += [
            "",
            f"Last chunk's docs/s ÷ first chunk's: {last.docs_per_s / first.docs_per_s:.2f} "
            f"({last.docs_per_s:,.0f} / {first.docs_per_s:,.0f}; docsieve's own figures "
            f"{(last.reported_docs_per_s or 0):,.0f} / {(first.reported_docs_per_s or 0):,.0f}).",
        ]
    if final:
        found = sum(f for f, _ in final.values())
        planted = sum(n for _, n in final.values())
        kinds = ", ".join(f"{kind} {percent(f, n)}% of {n:,}" for kind, (f, n) in sorted(final.items()))
        lines += ["", f"Recall of all planted copies at the end: {percent(found, planted)}% of {planted:,} ({kinds})."]
    return "\n".join(lines)


def docsieve_revision() -> dict[str, str]:
    """The commit of the docsieve that runs (an editable install: its repository), and how its packages'
    files differ from that commit (``git diff``; "" if they do not)."""
    spec = importlib.util.find_spec("docsieve")  # found, not imported
    where = Path(spec.origin).parent if spec and spec.origin else Path.cwd()

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    packages = [f"../{name}" for name in PINNED_PACKAGES]
    changed = git("status", "--porcelain", "--", *packages)
    diff = git("diff", "HEAD", "--", *packages) if changed else ""
    return {"path": str(where), "commit": git("rev-parse", "--short", "HEAD"), "diff": diff or changed}


def pin_sources(package: Path, work: Path) -> Path:
    """A copy of docsieve's packages as they are now, which the runs import (``PYTHONPATH`` comes before
    the editable install's finder): a commit made in the repository during the run changes nothing."""
    src = work / "src"
    shutil.rmtree(src, ignore_errors=True)
    for name in PINNED_PACKAGES:
        if (package.parent / name).is_dir():
            shutil.copytree(package.parent / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def child_env(work: Path, src: Path, store: Path, extra: Sequence[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode compiled once, into the work folder
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    env["DOCSIEVE_STORE"] = str(store)
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            sys.exit(f"--env takes KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def chunk_ranges(manifest: dict) -> Iterator[tuple[int, int]]:
    """(chunk index, articles in it)."""
    docs, chunk = manifest["docs"], manifest["chunk"]
    for index in range(manifest["chunks"]):
        yield index, min(chunk, docs - index * chunk)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=200_000, help="articles in all (default 200,000)")
    parser.add_argument("--chunk", type=int, default=50_000, help="articles per ingest (default 50,000)")
    parser.add_argument("--seed", type=int, default=1, help="of the synthetic corpus (default 1)")
    parser.add_argument(
        "--verbatim",
        type=float,
        default=VERBATIM_SHARE,
        help=f"share of the pieces taken word for word, the others reworded (default {VERBATIM_SHARE}; "
        "1: every piece word for word, the heavy reuse of the issue's corpus)",
    )
    parser.add_argument("--workdir", type=Path, help="corpus, store and results here (kept; a corpus is reused)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="shared corpus folder")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="for the docsieve processes (repeatable)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder and print its path")
    parser.add_argument(
        "--probe-only", action="store_true", help="only the probes, on the store a run left in --workdir"
    )
    args = parser.parse_args(argv)
    if args.docs <= 0 or args.chunk <= 0:
        parser.error("--docs and --chunk must be positive")
    if args.probe_only and args.workdir is None:
        parser.error("--probe-only needs the --workdir of an earlier run")

    work = (args.workdir or Path(tempfile.mkdtemp(prefix="docsieve-scale-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    corpus_dir = work / "corpus"
    store = work / "store.db"
    try:
        pools = load_pools(args.corpus)
        manifest = manifest_of(corpus_dir)
        wanted = {
            "version": GENERATOR_VERSION,
            "docs": args.docs,
            "seed": args.seed,
            "chunk": args.chunk,
            "verbatim": args.verbatim,
        }
        if manifest and all(manifest.get(k) == v for k, v in wanted.items()):
            print(f"corpus: reusing {corpus_dir} ({args.docs:,} articles, seed {args.seed})", flush=True)
        elif args.probe_only:
            sys.exit(f"no corpus of {args.docs:,} articles with seed {args.seed} in {corpus_dir}")
        else:
            print(f"corpus: generating {args.docs:,} articles (seed {args.seed}) into {corpus_dir}", flush=True)
            for old in corpus_dir.glob("*-[0-9][0-9][0-9].*"):
                old.unlink()
            manifest = generate(args.docs, args.seed, corpus_dir, args.chunk, args.corpus, pools, args.verbatim)
        assert manifest is not None
        print(
            f"  {manifest['mean_chars']:,} characters an article on average; planted copies {manifest['copies']}; "
            f"pieces {manifest['pieces']} (generated in {manifest['generated_s']} s)",
            flush=True,
        )

        revision = docsieve_revision()
        src = pin_sources(Path(revision["path"]), work)
        changed = ""
        if revision["diff"]:  # what the runs import besides the commit, kept beside the results
            (work / "src.diff").write_text(revision["diff"] + "\n", encoding="utf-8")
            changed = f" with changes not committed ({work / 'src.diff'})"
        env = child_env(work, src, store, args.env)
        report = work / "rusage.txt"
        runner = Runner(work, env, measuring_prefix(work, report), report)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], env=env, check=True, capture_output=True)
        imported = subprocess.run(
            [sys.executable, "-P", "-c", "import docsieve; print(docsieve.__file__)"],  # -P: as the command
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not imported.startswith(str(src)):
            sys.exit(f"the runs would import docsieve from {imported}, not from the copy in {src}")
        if not args.probe_only:
            for path in work.glob("store.db*"):  # the database, its -wal and -shm, the index beside it
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            runner.run(["migrate"], "migrate")
        elif not store.exists():
            sys.exit(f"no store in {work}: run without --probe-only first")
        reader = StoreReader(store)
        print(
            f"docsieve {revision['commit']}{changed} "
            f"from {revision['path']}, copied to {src}; extra env {args.env or 'none'}; "
            f"peak RSS via {runner.prefix[0]}",
            flush=True,
        )

        rows: list[Row] = []
        record_of: dict[str, str] = {}  # article id -> record id, for the originals copies will need
        needed: set[str] = set()
        for index, _ in chunk_ranges(manifest):
            needed.update(original for _, original, _ in read_truth(corpus_dir, index))
        all_truth: list[tuple[str, str, str]] = []
        ranges = list(chunk_ranges(manifest))
        for index, chunk_docs in ranges[-1:] if args.probe_only else ranges:
            count, last_seq = reader.count_and_last_seq()
            row = Row(index, count, manifest["piece_reuse"][index])
            if not args.probe_only:
                part = corpus_dir / part_name(index)
                child = runner.run(["ingest", "--quiet", str(part)], f"ingest-{index:03d}")
                row.docs, row.ingest_s, row.ingest_rss_mb = chunk_docs, child.wall_s, child.peak_rss_mb
                row.docs_per_s = chunk_docs / child.wall_s
                row.reported_docs_per_s = reported_rate(child.output)
                row.summary = summary_of(child.output)
                _, new_seq = reader.count_and_last_seq()
                truth = read_truth(corpus_dir, index)
                all_truth += truth
                copies = {c for c, _, _ in truth}
                chunk_records: dict[str, str] = {}
                for rid, source, status in reader.rows_between(last_seq, new_seq):
                    article = input_id(source)
                    chunk_records[article] = rid
                    row.rejected += status == "rejected"
                    row.unplanted_copies += status == "duplicate" and article not in copies
                record_of.update((a, r) for a, r in chunk_records.items() if a in needed)
                by_kind = recall(reader, truth, {**record_of, **chunk_records})
                row.found_by_kind = by_kind
                row.copies, row.copies_found = sum(n for _, n in by_kind.values()), sum(f for f, _ in by_kind.values())
                row.truncations_found, row.truncations = by_kind.get("truncation", [0, 0])
                record_of.update((c, chunk_records[c]) for c in copies if c in chunk_records)
            tag = f"-again-{time.time_ns()}" if args.probe_only else ""
            probe(runner, row, reader, pools, corpus_dir, index, chunk_docs, manifest["chunk"], args.seed, tag)
            row.records_after, _ = reader.count_and_last_seq()
            row.db_bytes, row.index_bytes = store_bytes(store)
            rows.append(row)
            print(
                f"chunk {index}: {row.records_before:,} → {row.records_after:,} records  "
                f"ingest {row.ingest_s:.1f} s {row.docs_per_s:,.0f} docs/s {row.ingest_rss_mb:,.0f} MB  "
                f"1-doc {row.one_doc_s:.2f} s {row.one_doc_rss_mb:,.0f} MB  show {row.show_s:.2f} s  "
                f"similar {row.similar_s:.2f} s {row.similar_rss_mb:,.0f} MB"
                f"{'' if row.similar_found else ' (missed)'}  "
                f"recall truncations {percent(row.truncations_found, row.truncations)}% "
                f"all {percent(row.copies_found, row.copies)}%  not planted but copies {row.unplanted_copies}  "
                f"{row.store_kb_per_doc:.1f} KB/doc  index {row.index_bytes / 2**20:,.0f} MB  {row.summary}",
                flush=True,
            )

        final = recall(reader, all_truth, record_of) if all_truth else None
        table = markdown(rows, final)
        header = (
            f"{manifest['docs']:,} synthetic articles (seed {manifest['seed']}, {manifest['mean_chars']:,} characters "
            f"on average, 5% planted copies) in chunks of {manifest['chunk']:,}, docsieve {revision['commit']}"
            f"{' with changes not committed (src.diff)' if changed else ''}, "
            f"extra env: {' '.join(args.env) or 'none'}. {machine()}, Python {platform.python_version()}."
        )
        print(f"\n{header}\n\n{table}")
        results = {
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "docsieve": revision,
            "env": args.env,
            "machine": machine(),
            "python": platform.python_version(),
            "corpus": manifest,
            "rows": [{**asdict(r), "store_kb_per_doc": r.store_kb_per_doc} for r in rows],
            "final_recall": final,
        }
        (work / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        if args.workdir is not None or args.keep:
            print(f"\nresults: {work / 'results.json'}")
    finally:
        if args.workdir is None:
            if args.keep:
                print(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
