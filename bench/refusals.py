"""Copies by their shingles that the template weights refuse: which of them end in two stories, and what they share.

    .venv/bin/python bench/refusals.py [--corpus ../shared/corpus] [--rare 20] [--out refusals.tsv]

Ingests all of saudinewsnet-dev in date order into a temporary store, as bench/quality.py does, with ``Book.decide``
watched: every pair of a document and a candidate story's canonical that is strong by its shingles (the thresholds)
but not with template boilerplate weighed (``Book.beyond_template``), and not two items of a template on other days
or with other figures (``Book.items_apart``), is listed once. For each: the overlaps (plain and weighed), the rewrite
stage's score, how many words both texts hold that at most ``--rare`` stored texts hold (names, places: what one
release has and a template's other items do not), and whether the two ended in one story. Prints the counts (those
that ended apart also by their hand labels in bench/labels/, where a pair has one) and writes the pairs
(tab-separated, the pairs that ended apart first) for reading.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_CORPUS, folder_or_exit
from quality import LABELS, _tsv, load_saudinewsnet, snn_raw

from docsieve import prepare, stories
from docsieve.pipeline import Pipeline
from docsieve.settings import Settings
from docsieve.store import Store

COLUMNS = ("document", "canonical", "jaccard", "containment", "weighed_j", "weighed_c", "score", "rare", "apart")


def refused_pairs(docs: list[dict], rare: int) -> list[dict]:
    """The refused pairs of one ingest of ``docs``, with whether they ended apart."""
    sources: dict[str, str] = {}
    found: dict[tuple[str, str], dict] = {}
    prepare_each, decide = prepare.prepare_each, stories.Book.decide

    def named(batch, settings):  # record id -> source, for the listing
        each = prepare_each(batch, settings)
        sources.update((p.id, p.document.source) for p in each if isinstance(p, prepare.Prepared))
        return each

    def watched(book: stories.Book, record, candidates, near=()):
        for story in dict.fromkeys(book.placements[c].story_id for c in candidates):
            canonical = book.canonical_of[story]
            if (record.id, canonical) in found or book.rewrites is None or book.templates is None:
                continue
            o = book.overlap(record.id, canonical)
            if not book.strong(o) or book.items_apart(record.id, canonical):
                continue
            if book.beyond_template(record.id, canonical, strong=True):
                continue
            book.rewrites.read((record.id, canonical))
            a, b = book.rewrites.words.get(record.id), book.rewrites.words.get(canonical)
            both = np.intersect1d(a, b) if a is not None and b is not None else np.zeros(0, dtype=np.uint32)
            held = book.rewrites.counts.word_counts(both) if len(both) else np.zeros(0)
            wj, wc = book._weighted(record.id, canonical, book.templates)
            found[(record.id, canonical)] = {
                "jaccard": o.jaccard,
                "containment": o.containment,
                "weighed_j": wj,
                "weighed_c": wc,
                "score": book.rewrites.score(record.id, canonical),
                "rare": int((held <= rare).sum()),
            }
        return decide(book, record, candidates, near)

    prepare.prepare_each, stories.Book.decide = named, watched
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(f"sqlite:///{tmp}/refusals.db")
            pipeline = Pipeline(store, Settings().with_(store=store.url, prepare_ahead="off"))
            pipeline.ingest([snn_raw(d) for d in docs])
            story_of = {r.id: r.story_id for r in store.iter_records()}
            pipeline.close()
    finally:
        prepare.prepare_each, stories.Book.decide = prepare_each, decide
    return [
        {"document": sources[a], "canonical": sources[b], **f, "apart": story_of.get(a) != story_of.get(b)}
        for (a, b), f in found.items()
    ]


def labeled() -> dict[frozenset[str], str]:
    """The hand labels of bench/labels/ (every file with id_a, id_b and label columns), by pair."""
    rows = (row for path in sorted(LABELS.glob("*.tsv")) for row in _tsv(path))
    return {frozenset((r["id_a"], r["id_b"])): r["label"] for r in rows if {"id_a", "id_b", "label"} <= r.keys()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rare", type=int, default=20, help="a word at most this many stored texts hold is rare")
    parser.add_argument("--out", type=Path, help="write the pairs here (tab-separated)")
    args = parser.parse_args()
    docs = load_saudinewsnet(folder_or_exit(args.corpus))
    pairs = refused_pairs(docs, args.rare)
    apart = [p for p in pairs if p["apart"]]
    print(f"{len(pairs)} pairs strong by their shingles refused by the template weights; {len(apart)} ended apart")
    by_rare = Counter(min(p["rare"], 10) for p in apart)
    print("ended apart, by rare words shared (10: ten or more):", dict(sorted(by_rare.items())))
    labels = labeled()
    by_label = Counter(labels.get(frozenset((p["document"], p["canonical"])), "unlabeled") for p in apart)
    print("ended apart, by the hand labels of bench/labels/:", dict(sorted(by_label.items())))
    if args.out:
        rows = sorted(pairs, key=lambda p: (not p["apart"], -p["rare"]))
        lines = ["\t".join(COLUMNS)] + [
            "\t".join(str(round(p[c], 3)) if isinstance(p[c], float) else str(p[c]) for c in COLUMNS) for p in rows
        ]
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
