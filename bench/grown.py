"""A batch's candidate lookup in a grown store's embedded index: its reads through the segments' mappings (as
now) against one ``pread`` an entry (the way before), alternating in one process.

    .venv/bin/python bench/grown.py --workdir /work/scratch/scale300 [--batches 8] [--rounds 8]

WORKDIR is a finished bench/scale.py run; its store is read, never written. The articles are fresh ones of the
scale corpus's kind dated after the store's last (bench/scale_check.py's ``write_fresh``), prepared once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import scale
import scale_check
from common import DEFAULT_CORPUS, ROOT, machine

sys.path.insert(0, str(ROOT))
from docsieve import index
from docsieve.prepare import prepare
from docsieve.readers import read
from docsieve.settings import Settings
from docsieve.store import Store


def lookups(settings: Settings, batches: list, rounds: int) -> dict[str, list[float]]:
    """ms a batch's ``candidates``, the reads through the mappings (now) and one read an entry (before)."""
    found = index.open_index(settings)
    mapped_take = index._Segment.take

    def take_before(segment, part, at, width=1, mapped=False):
        return mapped_take(segment, part, at, width, False)

    ways = {"mapped": mapped_take, "pread": take_before}
    spent: dict[str, list[float]] = {way: [] for way in ways}
    for r in range(rounds):
        for way in ways if r % 2 == 0 else reversed(ways):
            index._Segment.take = ways[way]  # type: ignore[method-assign]
            started = time.perf_counter()
            for batch in batches:
                found.candidates([p.keys for p in batch], settings.max_candidates, None)
            spent[way].append((time.perf_counter() - started) / len(batches) * 1000)
    index._Segment.take = mapped_take  # type: ignore[method-assign]
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="of a finished bench/scale.py run")
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
    spent = lookups(settings, batches, args.rounds)
    for way, figures in spent.items():
        print(f"  lookup of a batch of {size}, {way:<7} {statistics.median(figures):7.1f} ms median of {args.rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
