"""How long the template counts keep a shingle's day (docsieve/templates.py, ``template_across_days``) as a store
grows: buckets are shared, and every bucket holds some ids of other days; a shingle reads as of one day while its
bucket holds no more of them than the mean count of a bucket (``ShingleCounts.of_one_day``), else it is weighed by
the rule without days.

    .venv/bin/python bench/template_days.py [--corpus ../shared/corpus] [--days 90] [--per-day 1400]

Fingerprints every article of saudinewsnet-dev once, then counts a growing store day by day: each day ``--per-day``
articles drawn from them, their shingle ids salted by the day (so every day's news is new text, as the worst case
for collisions; real news repeats more). After each day's texts are counted, it prints the share of that day's
shingles that still read as of one day (the share the rule can weigh in full) for a release carried on that day,
which is what a same-day copy is weighed by.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_CORPUS, folder_or_exit
from quality import load_saudinewsnet

from docsieve.fingerprint import fingerprint_batch
from docsieve.settings import Settings
from docsieve.templates import ShingleCounts


def shingle_sets(docs: list[dict]) -> list[np.ndarray]:
    texts = [f"{d['title']}\n{d['content']}" for d in docs if d["content"].strip()]
    return [f.shingles for f in fingerprint_batch(texts, Settings()) if f.shingles is not None and len(f.shingles)]


def grow(counts: ShingleCounts, sets: list[np.ndarray], first_day: int, days: int, per_day: int, seed: int = 7):
    """Count ``days`` days of ``per_day`` articles from ``sets``, each day's ids salted (new text), day by day from
    ``first_day`` (a ``day_of`` value); yields each day and the ids it counted."""
    rng = np.random.default_rng(seed)
    for day in range(first_day, first_day + days):
        salt = np.uint32(rng.integers(1, 2**32, dtype=np.uint64))
        chosen = [sets[i] ^ salt for i in rng.integers(0, len(sets), per_day)]
        ids = np.concatenate(chosen)
        counts.add(ids, (np.full(len(chosen), day, dtype=np.uint16), np.array([len(c) for c in chosen])))
        yield day, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--per-day", type=int, default=1400)
    args = parser.parse_args()
    sets = shingle_sets(load_saudinewsnet(folder_or_exit(args.corpus)))
    print(f"{len(sets)} shingle sets, {np.mean([len(s) for s in sets]):.0f} shingles each on average")
    counts = ShingleCounts(boilerplate_texts=3)
    print("| day | articles stored | a day's shingles still of one day |")
    print("|---:|---:|---:|")
    for day, ids in grow(counts, sets, 1, args.days, args.per_day):
        if day in (1, 2, 7, 14, 30, 60, 90) or day == args.days:
            still = float(np.mean(counts.of_one_day(ids)))
            print(f"| {day} | {day * args.per_day:,} | {still:.1%} |")


if __name__ == "__main__":
    main()
