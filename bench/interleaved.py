"""Two workers at once on real news: do batches decided again in part store what deciding them whole would?

    .venv/bin/python bench/interleaved.py [--corpus ../shared/corpus] [--batch 256] [--during]

All of saudinewsnet-dev in date order through two workers (``Pipeline``s in this process) on one PostgreSQL store
and Redis index, with publication times: batches alternate between them, and the second stores one of its batches
between each of the first's decisions before the lock and its lock (``bench/lock.py --phases --contended``'s
interleaving), so that every batch of the first meets records stored meanwhile under the lock; with ``--during``,
while the first's batch is decided, so that it meets them in a decision made again before the lock. Run twice, in
two fresh stores:

- **in part** (the code as it is): under the lock, only the parts of a batch that read what the other stored
  are decided again (``Pipeline.store_prepared``, ``Book.depending_on``);
- **whole**: every document of such a batch decided again (``Book.depending_on`` made to name them all), with the
  same template counts.

It prints how many documents each decided again, ``bench/quality.py``'s figures on each store (the labeled pairs
of natural-ar-dev and ``bench/labels``), the story rows that no record is in (0: a story staged before the lock that
the decision under it did not found is gone), and how many records have another canonical in one than in the other:
0 when the parts lose nothing. Services come from REDIS_URL / DATABASE_URL when set and reachable, else private
instances (the tests' helpers).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
import uuid
from pathlib import Path

from common import DEFAULT_CORPUS, ROOT, machine, meanwhile

sys.path.insert(0, str(ROOT))
import quality

from docsieve import stories
from docsieve.index import open_index
from docsieve.pipeline import Pipeline
from docsieve.settings import Settings
from docsieve.store import Store
from tests.services import postgres_database, postgres_server, redis_server, remove_keys


def during_decision(store, then) -> None:
    """Make ``store``'s writes call ``then`` while their batch is decided before the lock: after the decision, before
    its first look at whether the store moved (the second reading of ``written_through``), so that the batch is made
    again before the lock (``Pipeline.store_prepared``'s ``again_before_lock``)."""
    writing = store.writing

    @contextlib.contextmanager
    def wrapped(before_lock=None):
        def hooked(txn):
            through, readings = txn.written_through, [0]

            def reading():
                readings[0] += 1
                if readings[0] == 2:
                    then()
                return through()

            txn.written_through = reading
            try:
                before_lock(txn)
            finally:
                del txn.written_through

        with writing(before_lock=hooked if before_lock is not None else None) as txn:
            yield txn

    store.writing = wrapped


def run(docs: list[dict], size: int, whole: bool, during: bool) -> tuple[quality.StoreView, int, int, int, float]:
    """(the store's stories, the first worker's documents, those decided again under the lock and before it,
    seconds)."""
    raws = [quality.snn_raw(d) for d in docs]
    mine = [d for i in range(0, len(raws), 2 * size) for d in raws[i : i + size]]
    theirs = [raws[i + size : i + 2 * size] for i in range(0, len(raws), 2 * size)]
    original = stories.Book.depending_on
    if whole:
        stories.Book.depending_on = lambda self, changed, met: set(self._relied)  # type: ignore[method-assign]
    try:
        with redis_server() as redis_url, postgres_server() as server, postgres_database(server, "docsieve_il") as pg:
            prefix = f"docsieve-il-{uuid.uuid4().hex[:8]}"
            settings = Settings(store=pg, index_url=redis_url, queue_prefix=prefix, batch_size=size)
            store = Store(pg)
            first = Pipeline(store, settings, open_index(settings))
            second = Pipeline(Store(pg), settings, open_index(settings))
            (during_decision if during else meanwhile)(store, lambda: theirs and second.process(theirs.pop(0)))
            started = time.perf_counter()
            first.ingest(mine)
            while theirs:
                second.process(theirs.pop(0))
            elapsed = time.perf_counter() - started
            first.close()
            second.close()
            reader = Store(pg)
            view = quality.read_stories(reader)
            reader.close()
            remove_keys(redis_url, prefix)
    finally:
        stories.Book.depending_on = original  # type: ignore[method-assign]
    before = getattr(first, "documents_decided_again_before_lock", 0)
    return view, len(mine), first.documents_decided_again, before, elapsed


def canonicals(view: quality.StoreView) -> dict[str, str]:
    """Each record's source -> its story's canonical's source."""
    return {source: view.by_id[view.canonical_of[r.story_id]].source for source, r in view.by_source.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument(
        "--during",
        action="store_true",
        help="the second's batch stored while the first's is decided before the lock (met there), not after it",
    )
    args = parser.parse_args()
    docs = quality.load_saudinewsnet(args.corpus / "saudinewsnet-dev")
    settings = Settings()
    print(f"saudinewsnet-dev, {len(docs):,} articles, two workers, batches of {args.batch}; {machine()}\n")
    rows, seen = [], {}
    for name, whole in (("in part", False), ("whole", True)):
        view, mine, again, before, elapsed = run(docs, args.batch, whole, args.during)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            figures, _ = quality.run_saudinewsnet(args.corpus, settings, docs, view)
        every = figures["by_set"]["all pairs"]["docsieve"]
        counts = figures["counts"]
        empty = len(view.canonical_of.keys() - {r.story_id for r in view.by_source.values()})
        rows.append((name, mine, again, before, elapsed, every, counts, empty))
        seen[name] = canonicals(view)
    print("| decided again | first worker's documents | of them decided again under the lock | before it |", end="")
    print(" seconds | all labeled pairs: P / R / F1 | FP / FN | template pairs merged | short items missed |", end="")
    print(" story rows of no record |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |")
    for name, mine, again, before, elapsed, every, counts, empty in rows:
        print(
            f"| {name} | {mine:,} | {again:,} | {before:,} | {elapsed:.0f} | {every['precision']:.3f} / "
            f"{every['recall']:.3f} / "
            f"{every['f1']:.3f} | {every['fp']} / {every['fn']} | {counts['template_different_merged']['docsieve']} "
            f"of {counts['template_different_merged']['of']} | {counts['short_dup_missed']['docsieve']} of "
            f"{counts['short_dup_missed']['of']} | {empty} |"
        )
    differ = sum(1 for s, c in seen["in part"].items() if seen["whole"].get(s) != c)
    print(f"\nrecords whose story has another canonical in part than whole: {differ} of {len(seen['in part']):,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
