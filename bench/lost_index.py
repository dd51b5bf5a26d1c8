"""One document into a store whose candidate index was lost: the memory its first batch takes, this code against
another's, alternating.

    .venv/bin/python bench/lost_index.py --workdir /tmp/lost-100k [--docs 100000] [--rounds 3] [--against DIR]
        [--redis redis://127.0.0.1:6379/0 [--only-redis]] [--env KEY=VALUE ...]

Builds, once, a store of --docs fresh articles of bench/scale.py's kind (``scale_check.write_fresh``, ingested with
this code in chunks of 50,000) in --workdir. Then, each round, for each code: a copy of that store **without its
index files** (deleted, or a store copied without them), and ``docsieve ingest`` of one new article into it, under
GNU time (wall seconds, peak RSS), and the same article's exact copy ingested again (the index is whole by then).
With ``--redis URL``, the same against a shared index in Redis under a prefix of its own that holds nothing (a Redis
restarted without its data), removed after each run (``--only-redis``: that one alone). ``--env KEY=VALUE`` sets a
variable for the timed runs (``DOCSIEVE_INDEX_WINDOW=5``, say: a store that holds more than two windows). With
``--against DIR`` (a copy of other code, say ``git archive COMMIT | tar -x -C DIR``), each round runs both codes in
alternating order.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

import scale
from common import DEFAULT_CORPUS, machine
from pipeline import docsieve_command
from scale_check import remove_store, write_fresh

CHUNK = 50_000


def ingest(store: Path, source: Path, code: Path | None, extra: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, its summary line) of one ``docsieve ingest`` of the code in ``code`` (else this)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
    env["DOCSIEVE_STORE"] = str(store)
    env.update(extra)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    os.sync()  # the store's copy written back first, not during the timed run
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", docsieve_command(), "ingest", "--quiet", str(source)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"docsieve ingest failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    wall, rss_kb = done.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss_kb) / 1024, done.stdout.splitlines()[0]


def build(work: Path, docs: int, corpus: Path) -> Path:
    """The store of ``docs`` articles, made once and kept in ``work``."""
    store = work / "store.db"
    done = work / "store.done"
    if done.exists() and done.read_text() == str(docs):
        print(f"store: reusing {store} ({docs:,} articles)", flush=True)
        return store
    remove_store(store)
    pools = scale.load_pools(corpus)
    for start in range(0, docs, CHUNK):
        part = work / "part.jsonl"
        write_fresh(part, start, min(CHUNK, docs - start), pools)
        wall, rss, summary = ingest(store, part, None, {})
        print(f"store: articles {start:,}+ in {wall:.1f} s, {rss:.0f} MB: {summary}", flush=True)
    (work / "part.jsonl").unlink()
    done.write_text(str(docs))
    return store


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="the store is built and kept here")
    parser.add_argument("--docs", type=int, default=100_000, help="articles the store holds (default 100,000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another copy of docsieve's code, run alternately")
    parser.add_argument("--redis", help="also with a shared index in this Redis, empty (lost)")
    parser.add_argument("--only-redis", action="store_true", help="with --redis: the shared index alone")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="for the timed docsieve processes (repeatable)"
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    store = build(work, args.docs, args.corpus)
    probe = work / "one.jsonl"
    write_fresh(probe, args.docs, 1, scale.load_pools(args.corpus))
    codes: list[tuple[str, Path | None]] = [("this", None)]
    if args.against is not None:
        codes.append((f"against {args.against.name}", args.against.resolve()))
    indexes = ([] if args.only_redis and args.redis else ["embedded"]) + (["redis"] if args.redis else [])
    given = dict(item.partition("=")[::2] for item in args.env)
    results: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    print(machine(), flush=True)
    for round_ in range(args.rounds):
        for name, code in codes if round_ % 2 == 0 else codes[::-1]:
            for kind in indexes:
                run = remove_store(work / "run.db")
                shutil.copyfile(store, run)  # the database alone: its index files are lost
                extra = dict(given)
                prefix = f"docsieve-bench-{uuid.uuid4().hex[:8]}"
                if kind == "redis":
                    extra |= {"DOCSIEVE_INDEX_URL": args.redis, "DOCSIEVE_QUEUE_PREFIX": prefix}
                try:
                    first = ingest(run, probe, code, extra)
                    again = ingest(run, probe, code, extra)  # already stored: the index whole by now
                finally:
                    if kind == "redis":
                        from worker.redis_index import RedisIndex

                        RedisIndex(args.redis, prefix).clear()
                results.setdefault((name, kind), []).append((first[0], first[1], again[0], again[1]))
                print(
                    f"round {round_ + 1} {name:>12} {kind:>8}: first {first[0]:.2f} s {first[1]:.0f} MB "
                    f"({first[2]}), then {again[0]:.2f} s {again[1]:.0f} MB",
                    flush=True,
                )
    remove_store(work / "run.db")
    print(f"\n{args.docs:,} articles stored, the index lost; one new article ingested, then again (medians):")
    print("| code | index | first ingest s | its peak RSS MB | the next s | its peak RSS MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for (name, kind), rows in results.items():
        med = [statistics.median(r[i] for r in rows) for i in range(4)]
        print(f"| {name} | {kind} | {med[0]:.2f} | {med[1]:.0f} | {med[2]:.2f} | {med[3]:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
