"""Many copies under load: 20,000 generated articles (2,000 stories x 10 copies, shuffled) through four
worker processes sharing one Redis index, checked story by story, and against the embedded ingest.

    .venv/bin/python reliability/load.py [--stories 2000] [--copies 10] [--workers 2] [--concurrency 2] [--batch 64]

Private Redis and PostgreSQL (``tests.services.private_services``). Each story is a headline and 5-7 paragraphs
of random words of the fixtures and seeds (``common.write_copies``); its copies are exact copies or near
copies with one small edit (a sentence's worth of words dropped, a word changed, another headline and a
dateline, a footer line), so any two copies of a story have a Jaccard similarity of about 0.8 or more and
must be found, and two stories share next to nothing. Files are named in a shuffled order, so copies of
a story land in different tasks that run at the same moment. Checks: records = documents, `failed tasks
0` from `docsieve submit --wait`, the failures table empty, the store's checks (``common.check_store``:
none lost or twice, one canonical record a story and every other copy pointing at it, ...), the shared
index complete up to the store's last record, and the same groups from `docsieve ingest` (embedded,
SQLite) of the same folder. Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import redis
import sqlalchemy as sa
from common import (
    check_store,
    command_line,
    deployment_options,
    docsieve,
    read_logs,
    scalar,
    write_copies,
)

from tests.services import deployment_env, postgres_database, private_services, running_workers


def methods(store_url: str) -> Counter:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT status, method, count(*) FROM records GROUP BY status, method"))
            return Counter({f"{status} {method or ''}".strip(): n for status, method, n in rows})
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stories", type=int, default=2000)
    parser.add_argument("--copies", type=int, default=10, help="documents a story, the original included")
    deployment_options(parser, workers=2, concurrency=2, batch=64)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds `submit --wait` may take")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    command = command_line()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="docsieve-load-") as work_dir:
        work = Path(work_dir)
        corpus = write_copies(work / "articles", args.stories, args.copies, args.seed)
        print(f"{corpus.size:,} documents, {args.stories:,} stories x {args.copies} copies, in {corpus.folder}")
        with private_services(work) as (rds, pg), postgres_database(pg.url(), "reliability") as store:
            prefix = f"docsieve-load-{uuid.uuid4().hex[:8]}"
            batch = str(args.batch)
            env = deployment_env(rds.url(0), store, prefix, DOCSIEVE_SUBMIT_BATCH=batch, **rds.databases())
            docsieve(env, "migrate")
            with running_workers(env, args.workers, args.concurrency, work, "load-") as running:
                started = time.monotonic()
                done = docsieve(
                    env, "submit", str(corpus.folder), "--wait", "--quiet", timeout=args.timeout + 60, check=False
                )
                seconds = time.monotonic() - started
                print(f"submit --wait ({seconds:.1f} s): {done.stdout.strip()}")
            logs = read_logs(w.log for w in running)
            deployed = check_store(store, corpus)
            deployed_methods = methods(store)
            failures = scalar(store, "SELECT count(*) FROM failures")
            last_seq = scalar(store, "SELECT coalesce(max(seq), 0) FROM records")
            index_seq = int(redis.Redis(port=rds.port, db=2).get(f"{prefix}:index:seq") or 0)
        embedded_store = f"sqlite:///{work / 'embedded.db'}"
        started = time.monotonic()
        plain = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}  # the embedded default
        ingested = docsieve(plain, "ingest", str(corpus.folder), "--quiet", "--store", embedded_store)
        embedded_seconds = time.monotonic() - started
        print(f"embedded ingest ({embedded_seconds:.1f} s): {ingested.stdout.strip().splitlines()[0]}")
        embedded = check_store(embedded_store, corpus)
        embedded_methods = methods(embedded_store)
    failed_tasks = done.stdout.strip().rsplit("failed tasks ", 1)[-1]
    same_groups = deployed.groups() == embedded.groups()
    checks = {
        "submit --wait exit 0": done.returncode == 0,
        "failed tasks 0": failed_tasks == "0",
        "failures table empty": failures == 0,
        "records = documents, none lost or duplicated": deployed.records == corpus.size and deployed.ok,
        "one canonical a story, every copy pointing at it": not deployed.split_stories and not deployed.merged_roots,
        "shared index complete to the last record": index_seq == last_seq,
        "embedded finds the same groups": same_groups and embedded.ok,
    }
    for name, passed in checks.items():
        print(f"{'ok  ' if passed else 'FAIL'} {name}")
    for label, found, check in (
        ("deployment:", deployed_methods, deployed),
        ("embedded:  ", embedded_methods, embedded),
    ):
        print(f"{label} {dict(found)}; stories split {len(check.split_stories)}, merged {len(check.merged_roots)}")
    print(f"worker logs: {logs.retries} task retries, {len(logs.dropped)} dropped, {len(logs.raised)} failed")
    workers_text = f"{args.workers} x `docsieve worker -c {args.concurrency}`"
    print(f"\nCommand: `{command}`\n")
    print("| run | documents | stories | records | lost | duplicated | stories whole | failed tasks | s | docs/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, check, secs, failed in (
        (f"deployment, {workers_text}, {args.batch} docs a task, shared Redis index", deployed, seconds, failed_tasks),
        ("embedded `docsieve ingest` (SQLite)", embedded, embedded_seconds, "-"),
    ):
        whole = args.stories - len(check.split_stories) - len(check.merged_roots)
        print(
            f"| {label} | {corpus.size:,} | {args.stories:,} | {check.records:,} | {check.lost} | {check.duplicated} | "
            f"{whole:,} / {args.stories:,} | {failed} | {secs:.1f} | {corpus.size / secs:,.0f} |"
        )
    print(f"\nsame groups in both: {'yes' if same_groups else 'no'}; total {time.monotonic() - began:.0f} s")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
