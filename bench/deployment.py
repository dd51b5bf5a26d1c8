"""The deployment against the embedded default, on the same articles, in one run.

    .venv/bin/python bench/deployment.py [--corpus ../shared/corpus] [--docs 5000] [--workers 2] [--batches 256,64,1]

Writes SaudiNewsNet articles as scraped files, then:
- embedded: ``docsieve ingest DIR`` into a fresh SQLite file (process start included);
- deployment: ``docsieve worker --concurrency N`` already running on Redis and a fresh PostgreSQL
  database, and ``docsieve submit DIR --wait`` timed from its start to the last stored record, with
  256, 64 and 1 document a task (the default is 256), which shows the per-task
  overhead that batching removes.
Services come from REDIS_URL / DATABASE_URL when set and reachable, else private instances (the same
helpers as the tests). Prints docs/s and the ratios, and a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import DEFAULT_CORPUS, ROOT, folder_or_exit, load_articles, machine
from pipeline import docsieve_command, write_articles

sys.path.insert(0, str(ROOT))
from tests.services import postgres_database, postgres_server, redis_server
from worker.celery_app import create_app
from worker.settings import Settings


def timed(argv: list[str], env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--batches", default="256,64,1", help="documents a task to try (default 256,64,1)")
    args = parser.parse_args()
    articles = load_articles(folder_or_exit(args.corpus), args.docs)
    docsieve = docsieve_command()
    with tempfile.TemporaryDirectory(prefix="docsieve-deploy-") as work_dir:
        work = Path(work_dir)
        folder = work / "articles"
        write_articles(articles, folder)
        base = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
        embedded_s, embedded_out = timed(
            [docsieve, "ingest", str(folder), "--quiet", "--store", f"sqlite:///{work / 'embedded.db'}"], base
        )
        rows = [("embedded `docsieve ingest` (SQLite)", embedded_s, embedded_out.splitlines()[0])]
        with redis_server() as redis_url, postgres_server() as pg_server:
            for batch in map(int, args.batches.split(",")):
                label = f"deployment, {batch} document{'s' if batch > 1 else ''} a task"
                with postgres_database(pg_server) as store_url:
                    env = {
                        **base,
                        "DOCSIEVE_STORE": store_url,
                        "DOCSIEVE_BROKER_URL": redis_url,
                        "DOCSIEVE_RESULT_BACKEND": redis_url,
                        "DOCSIEVE_SUBMIT_BATCH": str(batch),
                        "DOCSIEVE_INDEX_URL": redis_url,
                        "DOCSIEVE_QUEUE_PREFIX": f"docsieve-bench-{uuid.uuid4().hex[:8]}",
                    }
                    subprocess.run([docsieve, "migrate"], env=env, check=True, capture_output=True)
                    worker = subprocess.Popen(
                        [docsieve, "worker", "-c", str(args.workers), "--loglevel", "WARNING"],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    try:
                        app = create_app(Settings.from_env(env))
                        while not (app.control.inspect(timeout=0.5).ping() or {}):
                            time.sleep(0.2)
                        seconds, out = timed([docsieve, "submit", str(folder), "--wait", "--quiet"], env)
                    finally:
                        worker.terminate()
                        worker.wait(timeout=60)
                    rows.append((f"{label}, {args.workers} worker processes", seconds, out.splitlines()[-1]))
    docs = len(articles)
    print(f"{docs:,} SaudiNewsNet articles as files; {machine()}")
    print("\n| run | seconds | docs/s | ÷ embedded | outcome |\n| --- | ---: | ---: | ---: | --- |")
    for label, seconds, outcome in rows:
        print(f"| {label} | {seconds:.2f} | {docs / seconds:,.0f} | {embedded_s / seconds:.2f}x | `{outcome}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
