"""The deployment's ceiling: how long each document holds the store's write lock, and what that allows.

    .venv/bin/python bench/lock.py [--corpus DIR | --jsonl FILE] [--docs 5000] [--single 300] [--processes 1,2,4,8]
        [--scaling-only] [--deciders 0,64]
    .venv/bin/python bench/lock.py --phases [--contended] [--docs 5000]
    .venv/bin/python bench/lock.py --phases --against DIR [--rounds 8] [--docs 15000]

Every decider takes one lock to decide and write a batch (an advisory lock on PostgreSQL, BEGIN IMMEDIATE
on SQLite): whatever the number of workers, documents cannot be decided faster than one lock hold after
another. This measures the hold (``Store.lock_seconds``: from taking the lock to the end of the commit)
per document, on PostgreSQL with the shared Redis index (the deployment) and on SQLite (the embedded
default), with batches of 512 (the default) and of 1, and then runs 1, 2, 4 and 8 worker processes on one
PostgreSQL database and Redis index: each a ``Pipeline`` (what a Celery ingest task runs, without the
broker) with its share of the articles, all started together. It prints the ceilings (documents a second
the lock allows: 1 / hold per document) and, for each process count, the throughput, the CPU time the
processes spent a document (what deciding more than once costs, where processes outnumber cores: the
database's and Redis's own CPU is not in it). ``--deciders``: the processes' ``DOCSIEVE_DECIDERS`` (0: one a core,
the default; a number above the process count: no limit), each in turn for each process count, so that the rows
compare in one run (docsieve/deciders.py). Services come from
REDIS_URL / DATABASE_URL when set and reachable, else private instances (the tests' helpers).

``--against DIR`` (with ``--phases``): another tree of docsieve (a worktree or ``git archive`` of an older commit)
and this one, each running its own ``bench/lock.py --phases`` in a child process, ``--rounds`` times, the order
turned every round; it prints each round's hold and the medians of the paired ratios (this ÷ other) of the hold and
of each part both trees time. On a shared machine a hold varies by a fifth from run to run: only ratios of runs
side by side say what a change did.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from common import DEFAULT_CORPUS, ROOT, Article, folder_or_exit, load_articles, machine, meanwhile, settle

sys.path.insert(0, str(ROOT))
from docsieve.index import open_index
from docsieve.models import RawDocument
from docsieve.pipeline import Pipeline
from docsieve.settings import Settings
from docsieve.store import Store
from tests.services import postgres_database, postgres_server, redis_server, remove_keys


def documents(articles: list[Article]) -> list[RawDocument]:
    return [RawDocument(source=f"{a.id}.txt", body=f"{a.title}\n{a.content}", title=a.title) for a in articles]


def documents_of(jsonl: Path, count: int) -> list[RawDocument]:
    """The first ``count`` documents of a JSONL batch file (bench/scale.py's corpus: articles three times the size of
    SaudiNewsNet's, whose template counts fall due for a snapshot every 5,000 or so in a young store)."""
    from itertools import islice

    from docsieve.readers import read

    items = islice(read([str(jsonl)], 1 << 24), count)
    return [item for item in items if isinstance(item, RawDocument)]


def held(settings: Settings, docs: list[RawDocument]) -> tuple[float, float, int]:
    """(wall seconds, lock seconds, lock holds) of ingesting the documents in one process."""
    store = Store(settings.store, fingerprints=settings.fingerprint_parameters)
    pipeline = Pipeline(store, settings, open_index(settings))
    started = time.perf_counter()
    pipeline.ingest(docs)
    wall = time.perf_counter() - started
    pipeline.close()
    return wall, store.lock_seconds, store.lock_holds


def worker(settings: Settings, docs: list[RawDocument], start, results) -> None:
    store = Store(settings.store, fingerprints=settings.fingerprint_parameters)
    pipeline = Pipeline(store, settings, open_index(settings))
    start.wait()
    began, cpu = time.perf_counter(), time.process_time()
    pipeline.ingest(docs)
    results.put(
        (
            began,
            time.perf_counter(),
            time.process_time() - cpu,
            store.lock_seconds,
            pipeline.batches_stored,
            pipeline.decided_again,
            getattr(pipeline, "decided_again_before_lock", 0),
        )
    )
    pipeline.close()


# What --phases times: the parts of a batch's hold (and, for comparison, the lookup and staging before it).
PHASES = {
    "Pipeline._decide": "deciding (story rules, the records stored since the lookup): before the lock on PostgreSQL, "
    "and again under it if others wrote meanwhile",
    "Transaction.insert": "placing the staged records (one UPDATE), writing the rejected",
    "Transaction.add_shingle_counts": "placing the template counts' row (written before the lock)",
    "Transaction.save_stories": "stories and links",
    "Transaction.existing_ids": "which ids are stored (before and under the lock)",
    "SegmentIndex.catch_up": "catching up with the records stored since (before and under the lock)",
    "Transaction.stage": "staging the batch's records (before the lock)",
    "Transaction.stage_stories": "staging the stories the batch founds on its records (before the lock)",
    "Transaction.save_count_snapshot": "saving a template-count snapshot (under the lock; placing it, where it was "
    "staged before)",
    "ShingleCounts.snapshot_if_due": "a template-count snapshot made and saved under the lock (the code before "
    "the twenty-seventh session)",
    "ShingleCounts.snapshot": "a template-count snapshot made (compressed), outside the lock",
}


def phases(settings: Settings, docs: list[RawDocument], contended: bool = False) -> tuple[dict[str, float], int]:
    """Seconds spent in each of PHASES while one process ingests the documents (wrapped methods, in process).
    ``contended``: a second worker (another ``Pipeline`` on the same store and index, in this process) takes every
    other batch of the documents (their order kept: batches 1, 3, 5... are the first's, 2, 4, 6... the second's),
    and stores one of its batches between each of the first's decisions before the lock and the lock: every batch
    of the first meets records stored meanwhile, as a cluster's batches do (75-88% of them with 4 and 8 processes),
    without the others' processes on this machine's cores. Only the first's time is counted."""
    import functools

    import docsieve.index
    import docsieve.pipeline
    import docsieve.store
    import docsieve.templates

    size = settings.batch_size
    mine = [d for i in range(0, len(docs), 2 * size) for d in docs[i : i + size]] if contended else docs
    theirs = [docs[i + size : i + 2 * size] for i in range(0, len(docs), 2 * size)] if contended else []
    counting = [True]

    owners = {
        "Pipeline": docsieve.pipeline.Pipeline,
        "Transaction": docsieve.store.Transaction,
        "SegmentIndex": docsieve.index.SegmentIndex,
        "ShingleCounts": docsieve.templates.ShingleCounts,
    }
    # A phase the code does not have (another version's, run with this file) is left out.
    present = [name for name in PHASES if hasattr(owners[name.split(".")[0]], name.split(".")[1])]
    spent = dict.fromkeys(present, 0.0)
    originals = []
    for name in present:
        owner, method = name.split(".")
        cls = owners[owner]
        original = getattr(cls, method)

        def timed(*args, __f=original, __name=name, **kwargs):
            started = time.perf_counter()
            try:
                return __f(*args, **kwargs)
            finally:
                if counting[0]:
                    spent[__name] += time.perf_counter() - started

        setattr(cls, method, functools.wraps(original)(timed))
        originals.append((cls, method, original))
    store = Store(settings.store, fingerprints=settings.fingerprint_parameters)
    pipeline = Pipeline(store, settings, open_index(settings))
    other = Pipeline(Store(settings.store), settings, open_index(settings)) if contended else None
    if other is not None:

        def theirs_next() -> None:
            if theirs and (batch := theirs.pop(0)):
                counting[0] = False
                try:
                    other.process(batch)
                finally:
                    counting[0] = True

        meanwhile(store, theirs_next)
    try:
        pipeline.ingest(mine)
    finally:
        for cls, method, original in originals:
            setattr(cls, method, original)
        pipeline.close()
        if other is not None:
            other.close()
    again = getattr(pipeline, "documents_decided_again", None)
    print(
        f"first worker: {len(mine):,} documents in {pipeline.batches_stored} batches, {pipeline.decided_again} decided "
        f"again under the lock" + ("" if again is None else f", {again:,} documents of them"),
        flush=True,
    )
    return {"lock held (all of it)": store.lock_seconds, **spent}, len(mine)


def together(settings: Settings, docs: list[RawDocument], processes: int) -> tuple[float, float, float, float, float]:
    """(documents a second from the first start to the last end, lock seconds a document, the share of batches
    decided before the lock that were decided again under it, the times a batch was decided again before the lock,
    a batch, and the processes' CPU seconds a document) of ``processes`` processes ingesting their shares of the
    documents at once."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    shares = [docs[i::processes] for i in range(processes)]
    running = [context.Process(target=worker, args=(settings, share, start, results)) for share in shares]
    for p in running:
        p.start()
    time.sleep(3)  # every process imported and connected before the start
    start.set()
    got = [results.get(timeout=1800) for _ in running]
    for p in running:
        p.join()
    wall = max(g[1] for g in got) - min(g[0] for g in got)
    batches = sum(g[4] for g in got)
    return (
        len(docs) / wall,
        sum(g[3] for g in got) / len(docs),
        sum(g[5] for g in got) / batches,
        sum(g[6] for g in got) / batches,
        sum(g[2] for g in got) / len(docs),
    )


def against(other: Path, rounds: int, docs: int, contended: bool, corpus: Path) -> int:
    """Alternating runs of the other tree's ``--phases`` and this one's (see the module's docstring)."""
    trees = [("other", other.resolve()), ("this", ROOT)]
    got: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
    for r in range(rounds):
        for name, tree in trees if r % 2 == 0 else trees[::-1]:
            command = [sys.executable, str(tree / "bench" / "lock.py"), "--phases", "--docs", str(docs)]
            command += ["--corpus", str(corpus)] + (["--contended"] if contended else [])
            run = subprocess.run(
                command, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(tree)}, check=False
            )
            if run.returncode:
                sys.exit(f"{tree}: bench/lock.py --phases failed:\n{run.stderr[-2000:]}")
            got[name].append(_phase_rows(run.stdout))
            print(f"  round {r + 1} {name}: lock held {got[name][-1][HOLD]:.1f} µs a document", flush=True)
    print(f"\n{other} (other) and {ROOT} (this), {rounds} rounds alternating; {machine()}")
    print("\n| round | other: lock held µs / doc | this | this ÷ other |\n| ---: | ---: | ---: | ---: |")
    for r, (a, b) in enumerate(zip(got["other"], got["this"], strict=True), start=1):
        print(f"| {r} | {a[HOLD]:.1f} | {b[HOLD]:.1f} | {b[HOLD] / a[HOLD]:.2f} |")
    both = [part for part in got["this"][0] if part in got["other"][0]]
    print("\n| part | other: median µs / doc | this | median of this ÷ other |\n| --- | ---: | ---: | ---: |")
    for part in both:
        pairs = [(a[part], b[part]) for a, b in zip(got["other"], got["this"], strict=True) if a[part] > 0]
        if pairs:
            mine, theirs = statistics.median(b for _, b in pairs), statistics.median(a for a, _ in pairs)
            print(f"| {part} | {theirs:.1f} | {mine:.1f} | {statistics.median(b / a for a, b in pairs):.2f} |")
    return 0


HOLD = "lock held (all of it)"


def _phase_rows(output: str) -> dict[str, float]:
    """The µs a document of each part, from the table ``--phases`` prints."""
    parts = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] and cells[0] not in ("part", "---"):
            try:
                parts[cells[0]] = float(cells[1])
            except ValueError:
                continue
    if HOLD not in parts:
        raise SystemExit(f"no '{HOLD}' row in:\n{output[-2000:]}")
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--jsonl", type=Path, help="documents of this JSONL file instead of SaudiNewsNet's")
    parser.add_argument("--single", type=int, default=300, help="documents ingested one a batch")
    parser.add_argument("--processes", default="1,2,4,8")
    parser.add_argument(
        "--deciders", default="0", help="DOCSIEVE_DECIDERS values to run each process count with (comma-separated)"
    )
    parser.add_argument(
        "--scaling-only", action="store_true", help="only the runs of --processes processes (no one-process rows)"
    )
    parser.add_argument(
        "--phases", action="store_true", help="only: where one process's hold goes (PostgreSQL, batches of 512)"
    )
    parser.add_argument(
        "--contended",
        action="store_true",
        help="with --phases: a second worker stores every other batch, each between the first's decision and its lock",
    )
    parser.add_argument("--against", type=Path, help="with --phases: another tree, its holds beside this one's")
    parser.add_argument("--rounds", type=int, default=8, help="with --against: runs of each tree")
    args = parser.parse_args()
    if args.against is not None:
        if not args.phases or args.jsonl:
            parser.error("--against compares --phases runs of the corpus's articles")
        return against(args.against, args.rounds, args.docs, args.contended, args.corpus)
    docs = (
        documents_of(args.jsonl, args.docs)
        if args.jsonl
        else documents(load_articles(folder_or_exit(args.corpus), args.docs))
    )
    corpus = f"documents of {args.jsonl.name}" if args.jsonl else "SaudiNewsNet articles"
    if args.phases:
        with redis_server() as redis_url, postgres_server() as server, postgres_database(server, "docsieve_lock") as pg:
            prefix = f"docsieve-lock-{uuid.uuid4().hex[:8]}"
            settle()
            settings = Settings(store=pg, index_url=redis_url, queue_prefix=prefix, batch_size=512)
            spent, mine = phases(settings, docs, args.contended)
            remove_keys(redis_url, prefix)
        how = (
            ", every other batch stored by a second worker between the first's decision and its lock"
            if args.contended
            else ""
        )
        print(f"{len(docs):,} {corpus}, one process, PostgreSQL + Redis, batches of 512{how}; {machine()}")
        print("\n| part | µs a document | what |\n| --- | ---: | --- |")
        for name, seconds in spent.items():
            print(f"| {name} | {seconds / mine * 1e6:.1f} | {PHASES.get(name, '')} |")
        return 0
    counts = [int(n) for n in args.processes.split(",")]
    print(f"{len(docs):,} {corpus}; {machine()}", flush=True)
    rows = []
    with redis_server() as redis_url, postgres_server() as server:
        for back_end in () if args.scaling_only else ("postgresql", "sqlite"):
            for batch, count in ((512, len(docs)), (1, args.single)):
                with postgres_database(server, "docsieve_lock") as pg, _scratch() as folder:
                    prefix = f"docsieve-lock-{uuid.uuid4().hex[:8]}"
                    settings = (
                        Settings(store=pg, index_url=redis_url, queue_prefix=prefix, batch_size=batch)
                        if back_end == "postgresql"
                        else Settings(store=f"sqlite:///{folder / 'lock.db'}", batch_size=batch)
                    )
                    settle()
                    wall, lock, holds = held(settings, docs[:count])
                    remove_keys(redis_url, prefix)
                per_doc = lock / count
                rows.append((back_end, batch, count, count / wall, per_doc * 1e6, 1 / per_doc, lock / holds * 1e3))
                print(
                    f"  {back_end:10} batch {batch:3}: {count / wall:8,.0f} docs/s in one process; lock held "
                    f"{per_doc * 1e6:7.1f} µs a document ({lock / holds * 1e3:.1f} ms a hold): ceiling "
                    f"{1 / per_doc:9,.0f} docs/s",
                    flush=True,
                )
        scaling = []
        for n in counts:
            for deciders in (int(d) for d in args.deciders.split(",")):
                with postgres_database(server, "docsieve_lock") as pg:
                    prefix = f"docsieve-lock-{uuid.uuid4().hex[:8]}"
                    settings = Settings(store=pg, index_url=redis_url, queue_prefix=prefix, deciders=deciders)
                    settle()
                    rate, lock, again, before, cpu = together(settings, docs, n)
                    remove_keys(redis_url, prefix)
                scaling.append((n, deciders, rate, lock * 1e6, again, before, cpu * 1e6))
                print(
                    f"  {n} processes on PostgreSQL + Redis, deciders {deciders or 'one a core'}: {rate:7,.0f} docs/s, "
                    f"lock {lock * 1e6:.1f} µs a document, {again:.0%} of batches decided again under the lock, "
                    f"{before:.2f} times a batch before it, {cpu * 1e6:,.0f} µs of the processes' CPU a document",
                    flush=True,
                )
    print("\n| store | batch | documents | docs/s (one process) | lock µs / doc | ms / hold | ceiling docs/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for back_end, batch, count, rate, micro, ceiling, hold in rows:
        print(f"| {back_end} | {batch} | {count:,} | {rate:,.0f} | {micro:.1f} | {hold:.1f} | {ceiling:,.0f} |")
    print(
        "\n| processes | deciders | docs/s | vs the first | lock µs / doc | batches decided again under the lock "
        "| decided again before it, a batch | the processes' CPU µs / doc |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, deciders, rate, micro, again, before, cpu in scaling:
        print(
            f"| {n} | {deciders or 'one a core'} | {rate:,.0f} | {rate / scaling[0][2]:.2f}x | {micro:.1f} "
            f"| {again:.0%} | {before:.2f} | {cpu:,.0f} |"
        )
    return 0


class _scratch:
    """A temporary folder (for the SQLite runs' store and its index files)."""

    def __enter__(self) -> Path:
        import tempfile

        self._dir = tempfile.TemporaryDirectory(prefix="docsieve-lock-")
        return Path(self._dir.name)

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()


if __name__ == "__main__":
    sys.exit(main())
