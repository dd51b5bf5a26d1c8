"""The deployment against the embedded default, on the same articles, in one run.

    .venv/bin/python bench/deployment.py [--corpus DIR] [--docs 5000] [--workers 2] [--batches 512,256,64,1] [--cpu]

Writes SaudiNewsNet articles as scraped files, then:
- embedded: ``docsieve ingest DIR`` into a fresh SQLite file (process start included);
- deployment: ``docsieve worker --concurrency N`` already running on Redis and a fresh PostgreSQL
  database, and ``docsieve submit DIR --wait`` timed from its start to the last stored record, with
  512, 256, 64 and 1 document a task (the default is 512), which shows the per-task
  overhead that batching removes.
Each timed run starts once the machine is about idle (``common.settle``): a deployment run ends by
dropping its database, which must not be counted against the next run. Services come from REDIS_URL /
DATABASE_URL when set and reachable, else private instances (the same helpers as the tests). Prints
docs/s and the ratios, and a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import DEFAULT_CORPUS, ROOT, folder_or_exit, load_articles, machine, settle
from pipeline import compile_sources, docsieve_command, write_articles

sys.path.insert(0, str(ROOT))
from tests.services import (
    deployment_env,
    postgres_database,
    postgres_server,
    redis_server,
    remove_keys,
    running_worker,
)

EMBEDDED = "embedded `docsieve ingest` (SQLite)"


def timed(argv: list[str], env: dict) -> tuple[float, str, float]:
    """Wall seconds, standard output and CPU seconds of a command."""
    settle()  # not while the previous run's database is still being dropped
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        if (code := os.waitstatus_to_exitcode(status)) != 0:
            err.seek(0)
            sys.exit(f"{' '.join(argv)} failed with exit code {code}:\n{err.read().decode(errors='replace')}")
        out.seek(0)
        return seconds, out.read().decode(), usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds spent meanwhile by the worker processes, Redis and PostgreSQL (``--cpu``, with psutil),
    and by the whole machine. Each process counts from its time when the meter was made (from zero if it
    started later); one that ends during the run takes its time in the run with it, so each service's
    figure is a lower bound; the machine's counts everything."""

    def __init__(self, worker_pid: int) -> None:
        import psutil

        self._psutil = psutil
        self._worker = psutil.Process(worker_pid)
        self._start, self._machine = self._read()

    def _read(self) -> tuple[dict[tuple[str, int], float], float]:
        """CPU seconds so far of each (kind, pid), and of the machine."""
        psutil = self._psutil
        try:
            workers = [self._worker, *self._worker.children(recursive=True)]
        except psutil.Error:  # the worker is gone
            workers = []
        seconds = {("workers", p.pid): self._cpu(p) for p in workers}
        for process in psutil.process_iter(["name"]):
            name = process.info["name"] or ""
            kind = "redis" if name.startswith("redis-server") else "postgres" if name.startswith("postgres") else None
            if kind:
                seconds[kind, process.pid] = self._cpu(process)
        times = psutil.cpu_times()
        return seconds, times.user + times.system + times.nice + times.irq + times.softirq

    def _cpu(self, process) -> float:
        try:
            times = process.cpu_times()
        except self._psutil.Error:
            return 0.0
        return times.user + times.system

    def spent(self) -> dict[str, float]:
        """Since this meter was made, by kind."""
        end, machine = self._read()
        spent = {"workers": 0.0, "redis": 0.0, "postgres": 0.0, "machine": machine - self._machine}
        for (kind, pid), seconds in end.items():
            spent[kind] += seconds - self._start.get((kind, pid), 0.0)
        return spent


def deployment_run(
    docsieve: str, folder: Path, redis_url: str, pg_server: str, batch: int, workers: int, cpu: bool
) -> tuple[float, str, dict[str, float]]:
    """Workers up on a fresh database, then ``submit --wait`` timed (and with ``cpu``, where CPU went)."""
    with postgres_database(pg_server) as store_url:
        prefix = f"docsieve-bench-{uuid.uuid4().hex[:8]}"
        env = deployment_env(redis_url, store_url, prefix, DOCSIEVE_SUBMIT_BATCH=str(batch))
        subprocess.run([docsieve, "migrate"], env=env, check=True, capture_output=True)
        log = folder.with_name("worker.log")
        with running_worker(env, concurrency=workers, loglevel="WARNING", log=log) as worker:
            meter = CpuMeter(worker.process.pid) if cpu else None
            seconds, out, submit_cpu = timed([docsieve, "submit", str(folder), "--wait", "--quiet"], env)
            spent = {"submit": submit_cpu, **meter.spent()} if meter else {}
        remove_keys(redis_url, prefix)  # the index, the payloads, the queues' bindings (Celery's results are not)
    return seconds, out.splitlines()[-1], spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--batches", default="512,256,64,1", help="documents a task to try (default 512,256,64,1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, embedded and deployment alternating")
    parser.add_argument("--cpu", action="store_true", help="also where the CPU time goes (needs psutil)")
    args = parser.parse_args()
    articles = load_articles(folder_or_exit(args.corpus), args.docs)
    docsieve = docsieve_command()
    compile_sources()  # every command runs from bytecode, as an installed package does
    batches = [int(b) for b in args.batches.split(",")]
    times: dict[str, list[float]] = {}
    outcomes: dict[str, str] = {}
    cpu: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="docsieve-deploy-") as work_dir:
        work = Path(work_dir)
        folder = work / "articles"
        write_articles(articles, folder)
        base = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
        with redis_server() as redis_url, postgres_server() as pg_server:
            for round_ in range(args.rounds):
                store = work / f"embedded-{round_}.db"
                seconds, out, used = timed(
                    [docsieve, "ingest", str(folder), "--quiet", "--store", f"sqlite:///{store}"], base
                )
                times.setdefault(EMBEDDED, []).append(seconds)
                outcomes[EMBEDDED] = out.splitlines()[0]
                cpu.setdefault(EMBEDDED, []).append({"ingest": used})
                # One document a task is slow: it runs in the first round only.
                for batch in batches if round_ == 0 else [b for b in batches if b > 1]:
                    label = f"deployment, {batch} document{'s' if batch > 1 else ''} a task, {args.workers} workers"
                    seconds, outcomes[label], spent = deployment_run(
                        docsieve, folder, redis_url, pg_server, batch, args.workers, args.cpu
                    )
                    times.setdefault(label, []).append(seconds)
                    cpu.setdefault(label, []).append(spent)
    docs = len(articles)
    embedded = statistics.median(times[EMBEDDED])
    print(f"{docs:,} SaudiNewsNet articles as files; {args.rounds} rounds; {machine()}")
    print("\n| run | rounds | median s | docs/s | ÷ embedded (median) | best ÷ best | outcome |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for label, runs in times.items():
        median = statistics.median(runs)
        print(
            f"| {label} | {len(runs)} | {median:.2f} | {docs / median:,.0f} | {embedded / median:.2f}x | "
            f"{min(times[EMBEDDED]) / min(runs):.2f}x | `{outcomes[label]}` |"
        )
    if args.cpu:
        print("\nCPU seconds during the runs, medians (Redis and PostgreSQL: every such process on the machine,")
        print("a lower bound, as one that ends takes its time with it; `machine`: all CPUs, whatever ran):\n")
        kinds = ["ingest", "submit", "workers", "redis", "postgres", "machine"]
        print("| run | " + " | ".join(kinds) + " |")
        print("| --- |" + " ---: |" * len(kinds))
        for label, spent in cpu.items():
            cells = [f"{statistics.median(s[k] for s in spent):.2f}" if k in spent[0] else "" for k in kinds]
            print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
