"""Workers SIGKILLed in mid-batch lose nothing and store nothing twice.

    .venv/bin/python reliability/kill_workers.py [--trials 10] [--docs 3000] [--workers 3] [--concurrency 1]
        [--batch 64] [--interval 0.05,0.3] [--kill-parent] [--seed 1] [--keep-logs DIR]

Writes ``--docs`` files in the scraped shape (random-word stories built from the words of tests/fixtures
and seeds/, alone or with exact and near copies, shuffled, plus a few bad inputs that must become
rejected records). Each trial: a fresh PostgreSQL database and queue prefix on the shared services,
``--workers`` ``docsieve worker -c N`` processes with the shared Redis index, ``docsieve submit DIR`` in
tasks of ``--batch`` documents; while tasks run, every 0.05-0.3 s a pool process that is executing a task
(``inspect().active()`` names its pid; never an idle or starting one) gets SIGKILL. Its prefork parent
starts a new one and, with late acks and ``reject_on_worker_lost``, the message goes back to the queue.
(A task of 64 such documents runs in about 0.1 s on 2 cores, and a parent notices a dead child 0.1-2.5 s
later: kills 0.3-1.0 s apart give only one or two per trial.) With ``--kill-parent`` one whole
worker (parent and pool) is also killed once and a replacement started; its message comes back only
after the visibility timeout (and kombu's sweep for such messages, every 100 s), so those trials run on a
private Redis with a 45 s visibility timeout.

A trial ends when every task succeeded, the queue and kombu's unacked hash hold none of its messages and
the record count has not moved for a few seconds (or at ``--timeout``). Then the store is checked: one
record per submitted source (none lost, none twice, no unknown one), ids unique, every duplicate points to
a canonical record, one root per content hash, and each generated story under exactly one canonical.
Prints a line per trial and a markdown table for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from common import (
    Check,
    Corpus,
    LogSummary,
    check_store,
    cleanup_redis,
    command_line,
    deployment_options,
    docsieve,
    log_notes,
    parked_messages,
    read_logs,
    submit,
    write_corpus,
)

from docsieve.settings import Settings
from docsieve.store import Store
from tests.services import (
    Worker,
    add_worker,
    deployment_env,
    kill_group,
    postgres_database,
    postgres_server,
    redis_server,
    running_workers,
)
from worker.celery_app import create_app

SETTLE = 3.0  # seconds the record count must stay still, with nothing queued or unacknowledged
# --kill-parent: the killed worker's message is redelivered after the visibility timeout, which must
# exceed the hard time limit plus the longest retry delay (settings check it).
SHORT_VISIBILITY = {
    "DOCSIEVE_VISIBILITY_TIMEOUT": "45",
    "DOCSIEVE_TASK_SOFT_TIME_LIMIT": "20",
    "DOCSIEVE_TASK_TIME_LIMIT": "30",
    "DOCSIEVE_RETRY_BACKOFF_MAX": "10",
}


@dataclass
class Kill:
    at: float  # seconds since submit
    worker: str
    pid: int
    task: str  # the task it was executing ("" for a whole worker)


@dataclass
class Trial:
    number: int
    expected: int  # files written
    documents: int  # documents submit queued
    tasks: int
    kills: list[Kill]
    logs: LogSummary
    seconds: float  # from submit to the last record stored
    finished: bool
    note: str = ""
    check: Check | None = None
    failures: int = 0  # rows in the store's failures table
    wall: float = 0.0  # the whole trial: database, workers up, submit, drain, checks, teardown

    @property
    def pool_kills(self) -> int:
        return sum(1 for k in self.kills if k.task)

    @property
    def passed(self) -> bool:
        return bool(self.finished and self.check and self.check.ok and self.documents == self.expected)


def active_tasks(app, workers: list[Worker]) -> list[tuple[Worker, int, str]]:
    """(worker, pool pid, task id) of every task executing now, only in pool processes of our workers."""
    live = [w for w in workers if w.process.poll() is None]
    replies = app.control.inspect(destination=[w.name for w in live], timeout=0.5, limit=len(live)).active() or {}
    found = []
    for w in live:
        children = {c.pid for c in w.children()}
        for task in replies.get(w.name, []):
            if task.get("worker_pid") in children:
                found.append((w, task["worker_pid"], task["id"]))
    return found


def run_trial(number: int, args: argparse.Namespace, corpus: Corpus, redis_url: str, pg: str, logs: Path) -> Trial:
    rng = random.Random(args.seed * 1000 + number)
    prefix = f"docsieve-kill-{uuid.uuid4().hex[:8]}"
    extra = SHORT_VISIBILITY if args.kill_parent else {}
    with postgres_database(pg, "reliability") as store_url:
        env = deployment_env(redis_url, store_url, prefix, DOCSIEVE_SUBMIT_BATCH=str(args.batch), **extra)
        queue = f"{prefix}.cpu"
        docsieve(env, "migrate")
        app = create_app(Settings.from_env(env))
        folder = logs / f"trial-{number:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        store = Store(store_url, migrate=False)
        workers: list[Worker] = []
        try:
            with running_workers(env, args.workers, args.concurrency, folder, app=app) as workers:
                trial = drive(number, args, corpus, env, app, workers, store, redis_url, queue, rng, folder)
            (folder / "kills.tsv").write_text(
                "".join(f"{k.at:.3f}\t{k.worker}\t{k.pid}\t{k.task or 'whole worker'}\n" for k in trial.kills)
            )
        finally:
            store.close()
            summary = read_logs(w.log for w in workers)
            mailbox = app.control.mailbox.oid
            app.close()
            cleanup_redis(redis_url, [prefix, mailbox], summary.received, queue)
        trial.check = check_store(store_url, corpus) if trial.finished or args.check_unfinished else None
        trial.logs = summary
        store = Store(store_url, migrate=False)
        trial.failures = len(store.recent_failures(limit=1000))
        store.close()
    return trial


def drive(
    number: int,
    args: argparse.Namespace,
    corpus: Corpus,
    env: dict[str, str],
    app,
    workers: list[Worker],
    store: Store,
    redis_url: str,
    queue: str,
    rng: random.Random,
    folder: Path,
) -> Trial:
    """Submit, kill pool processes while tasks run, wait until everything is done and settled."""
    low, high = args.interval
    started = time.monotonic()
    documents, tasks = submit(env, corpus)
    kills: list[Kill] = []
    next_kill = time.monotonic() + rng.uniform(low, high)
    parent_kill_at = int(tasks * rng.uniform(0.2, 0.6)) if args.kill_parent else None
    last_total, still_since = -1, time.monotonic()
    deadline = started + args.timeout
    while True:
        now = time.monotonic()
        summary = read_logs(w.log for w in workers)
        done = len(summary.succeeded)
        if (
            parent_kill_at is not None
            and done >= parent_kill_at
            and (busy := [w for w, _, _ in active_tasks(app, workers)])
        ):
            victim = rng.choice(busy)  # one with a task in hand: its message is what must come back
            kill_group(victim)
            kills.append(Kill(time.monotonic() - started, victim.name, victim.process.pid, ""))
            add_worker(env, workers, args.concurrency, folder)
            parent_kill_at = None
        if done < tasks and now >= next_kill:
            killed = {k.pid for k in kills}
            running = [r for r in active_tasks(app, workers) if r[1] not in killed]
            if running:
                worker, pid, task = rng.choice(running)
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills.append(Kill(time.monotonic() - started, worker.name, pid, task))
                except ProcessLookupError:
                    pass
                next_kill = time.monotonic() + rng.uniform(low, high)
        total = sum(store.counts().values())
        if total != last_total:
            last_total, still_since = total, now
        waiting, unacked = parked_messages(redis_url, queue)
        if done >= tasks and not waiting and not unacked and now - still_since >= SETTLE:
            return Trial(number, corpus.size, documents, tasks, kills, summary, still_since - started, True)
        if now > deadline:
            note = f"timeout: {done}/{tasks} tasks succeeded, {waiting} queued, {unacked} unacknowledged"
            return Trial(number, corpus.size, documents, tasks, kills, summary, now - started, False, note)
        time.sleep(0.1)


def line(t: Trial) -> str:
    c = t.check
    whole = len(t.kills) - t.pool_kills
    parts = [
        f"trial {t.number:2d}: {t.documents} documents in {t.tasks} tasks",
        f"kills {t.pool_kills} pool" + (f" + {whole} whole worker" if whole else ""),
        f"mid-task (worker lost, requeued) {t.logs.worker_lost}",
        f"redelivered {t.logs.redelivered} (re-run after commit {len(t.logs.reruns_after_commit)})",
        f"failed {t.failures}" + (f" (retried or raised in log: {len(t.logs.failed)})" if t.logs.failed else ""),
    ]
    if c:
        parts += [
            f"records {c.records} ({c.counts['canonical']} canonical, {c.counts['duplicate']} duplicate, "
            f"{c.counts['rejected']} rejected)",
            f"lost {c.lost}",
            f"duplicated {c.duplicated}",
            "OK" if t.passed else "PROBLEM: " + "; ".join(c.problems() or [f"{t.documents} documents queued"]),
        ]
    parts.append(f"{t.seconds:.1f} s to the last record ({t.wall:.1f} s the whole trial)")
    if t.note:
        parts.append(t.note)
    if not t.logs.worker_lost:
        parts.append("(no task was killed mid-run: this trial proves nothing)")
    return "  ".join(parts)


def table(trials: list[Trial], command: str, machine: str) -> str:
    rows = [
        f"Command: `{command}`",
        "",
        machine,
        "",
        "| trial | documents | tasks | pool processes killed | whole workers killed | tasks lost mid-run "
        "(requeued) | redeliveries | re-runs after commit | failed tasks | records | canonical / duplicate / "
        "rejected | lost | duplicated | checks | s to last record | s whole trial |",
        "|" + " ---: |" * 10 + " --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for t in trials:
        c = t.check
        counts = f"{c.counts['canonical']} / {c.counts['duplicate']} / {c.counts['rejected']}" if c else "-"
        rows.append(
            f"| {t.number} | {t.documents} | {t.tasks} | {t.pool_kills} | {len(t.kills) - t.pool_kills} "
            f"| {t.logs.worker_lost} | {t.logs.redelivered} | {len(t.logs.reruns_after_commit)} | {t.failures} "
            f"| {c.records if c else '-'} | {counts} | {c.lost if c else '-'} | {c.duplicated if c else '-'} "
            f"| {'pass' if t.passed else 'FAIL'} | {t.seconds:.1f} | {t.wall:.1f} |"
        )
    rows.append(
        f"| all | {sum(t.documents for t in trials)} | {sum(t.tasks for t in trials)} "
        f"| {sum(t.pool_kills for t in trials)} | {sum(len(t.kills) - t.pool_kills for t in trials)} "
        f"| {sum(t.logs.worker_lost for t in trials)} | {sum(t.logs.redelivered for t in trials)} "
        f"| {sum(len(t.logs.reruns_after_commit) for t in trials)} | {sum(t.failures for t in trials)} "
        f"| {sum(t.check.records for t in trials if t.check)} | | "
        f"{sum(t.check.lost for t in trials if t.check)} | {sum(t.check.duplicated for t in trials if t.check)} "
        f"| {sum(t.passed for t in trials)}/{len(trials)} pass | | |"
    )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--docs", type=int, default=3000, help="documents submitted per trial (default 3000)")
    deployment_options(parser, workers=3, concurrency=1, batch=64)
    parser.add_argument(
        "--interval",
        type=lambda s: tuple(float(x) for x in s.split(",")),
        default=(0.05, 0.3),
        help="seconds between kills, drawn uniformly (default 0.05,0.3)",
    )
    parser.add_argument("--kill-parent", action="store_true", help="also kill one whole worker per trial")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a trial may take (default 900)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", type=Path, help="keep the worker logs here (default: a temporary folder)")
    parser.add_argument("--check-unfinished", action="store_true", help="check the store after a timeout too")
    args = parser.parse_args()
    command = command_line()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    if args.kill_parent:
        os.environ.pop("REDIS_URL", None)  # a short visibility timeout must not touch anyone else's messages
    trials: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="docsieve-kill-") as work_dir:
        work = Path(work_dir)
        logs = args.keep_logs or work / "logs"
        corpus = write_corpus(work / "articles", args.docs, args.seed)
        print(
            f"{args.docs} documents: {corpus.stories} stories (alone or with copies), {corpus.bad} bad inputs; "
            f"{args.workers} workers x {args.concurrency} processes; {args.batch} documents a task; "
            f"a kill every {args.interval[0]}-{args.interval[1]} s",
            flush=True,
        )
        with redis_server() as redis_url, postgres_server() as pg:
            for number in range(1, args.trials + 1):
                began = time.monotonic()
                trial = run_trial(number, args, corpus, redis_url, pg, logs)
                trial.wall = time.monotonic() - began
                trials.append(trial)
                print(line(trial), flush=True)
                for note in log_notes(trial.logs, warnings=True):
                    print(note, flush=True)
    seconds = [t.seconds for t in trials]
    walls = [t.wall for t in trials]
    print()
    print(table(trials, command, machine))
    print()
    print(
        f"{len(trials)} trials, {sum(len(t.kills) for t in trials)} kills, "
        f"{sum(t.check.lost for t in trials if t.check)} lost, "
        f"{sum(t.check.duplicated for t in trials if t.check)} duplicated; "
        f"submit to last record: median {statistics.median(seconds):.1f} s (min {min(seconds):.1f}, max "
        f"{max(seconds):.1f}); whole trial median {statistics.median(walls):.1f} s"
    )
    if args.keep_logs:
        print(f"worker logs: {args.keep_logs}")
    return 0 if all(t.passed for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
