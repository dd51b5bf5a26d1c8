"""A batch's candidate lookup in a grown store's embedded index, two ways alternating in one process:
``--compare take``, its reads through the segments' mappings (as now) against one ``pread`` an entry (the way
before); ``--compare search``, a batch's keys searched in a mapped segment a part at a time, its pages given back
between parts (as now), against all at once (the way before); ``--compare window``, the lookup with the
documents' times, each query's keys searched only in the segments within its window (as now) against every segment
searched (the way before).

    .venv/bin/python bench/grown.py --workdir /work/scratch/scale300 [--compare take|search|window] [--batches 8]
        [--rounds 8]

WORKDIR is a finished bench/scale.py run; its store is read, never written. The articles are fresh ones of the
scale corpus's kind dated after the store's last (bench/scale_check.py's ``write_fresh``), prepared once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import numpy as np
import scale
import scale_check
from common import DEFAULT_CORPUS, ROOT, machine, reset_peak, status_mb

sys.path.insert(0, str(ROOT))
from docsieve import index
from docsieve.prepare import prepare
from docsieve.published import parse_published
from docsieve.readers import read
from docsieve.settings import Settings
from docsieve.store import Store


def ways_of(compare: str) -> tuple[str, dict[str, Callable]]:
    """The ``_Segment`` method swapped, and its two versions by name (now first)."""
    if compare == "search":
        in_parts = index._Segment.search

        def search_whole(segment, keys):
            if segment.fence is None or segment.resident or len(keys) > index.FEW:
                return segment._searched(keys)
            return segment._fenced(keys)

        return "search", {"parts": in_parts, "whole": search_whole}
    if compare == "take":
        mapped_take = index._Segment.take

        def take_before(segment, part, at, width=1, mapped=False):
            return mapped_take(segment, part, at, width, False)

        return "take", {"mapped": mapped_take, "pread": take_before}

    def every_segment(segment, query_times, window):
        return np.ones(len(query_times), dtype=bool)

    return "meets", {"window": index._Segment.meets, "all": every_segment}


def lookups(
    settings: Settings, batches: list, rounds: int, compare: str
) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """ms a batch's ``candidates``, each way (with the documents' times for ``window``), and the MB a round's
    lookups raised the process's peak by (Linux: ``/proc``)."""
    found = index.open_index(settings)
    method, ways = ways_of(compare)
    now = getattr(index._Segment, method)
    arrival = datetime.now(UTC)
    times = [
        [index.query_time(parse_published(p.document.published), arrival) for p in batch]
        if compare == "window"
        else None
        for batch in batches
    ]
    spent: dict[str, list[float]] = {way: [] for way in ways}
    peaks: dict[str, list[int]] = {way: [] for way in ways}
    for r in range(rounds):
        for way in ways if r % 2 == 0 else reversed(ways):
            setattr(index._Segment, method, ways[way])
            before = status_mb("VmRSS")
            reset_peak()
            started = time.perf_counter()
            for batch, batch_times in zip(batches, times, strict=True):
                found.candidates([p.keys for p in batch], settings.max_candidates, batch_times)
            spent[way].append((time.perf_counter() - started) / len(batches) * 1000)
            peaks[way].append(status_mb("VmHWM") - before)
    setattr(index._Segment, method, now)
    return spent, peaks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="of a finished bench/scale.py run")
    parser.add_argument("--compare", choices=("take", "search", "window"), default="take")
    parser.add_argument("--batches", type=int, default=8, help="batches of 512 fresh articles")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    settings = Settings(store=f"sqlite:///{args.workdir / 'store.db'}")
    store = Store(settings.store, readonly=True)
    with store.reading() as txn:
        records = txn.last_seq()
    store.close()
    with tempfile.TemporaryDirectory(prefix="docsieve-grown-") as tmp:
        fresh = Path(tmp) / "fresh.jsonl"
        scale_check.write_fresh(fresh, records, args.batches * settings.batch_size, scale.load_pools(args.corpus))
        items = list(islice(read([str(fresh)], settings.max_document_bytes), args.batches * settings.batch_size))
    size = settings.batch_size
    batches = [prepare(items[i : i + size], settings)[1] for i in range(0, len(items), size)]
    print(f"a store of {records:,} records ({args.workdir}); {machine()}")
    spent, peaks = lookups(settings, batches, args.rounds, args.compare)
    for way, figures in spent.items():
        print(
            f"  lookup of a batch of {size}, {way:<7} {statistics.median(figures):7.1f} ms median of {args.rounds}, "
            f"the process's peak +{statistics.median(peaks[way]):.0f} MB (median)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
