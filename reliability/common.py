"""Shared by the reliability trials: generated documents, a deployment's workers, their logs, the checks.

Services come from ``tests.services`` (REDIS_URL / DATABASE_URL when set and reachable, else private
instances). A trial owns a fresh database and a queue prefix of its own, and removes only what it made.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.services, worker
from worker.store import Store

ROOT = Path(__file__).resolve().parent.parent
DOCSIEVE = str(Path(sys.executable).with_name("docsieve"))
TEXTS = [*sorted((ROOT / "tests" / "fixtures").glob("*.txt")), *sorted((ROOT / "seeds").glob("*.txt"))]
# Inputs that must each become a rejected record (suffix, bytes).
BAD_INPUTS: list[tuple[str, bytes]] = [
    (".txt", b""),
    (".txt", b"  \n\n\t\n"),
    (".txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
    (".txt", "خبر عاجل".encode() + b"\xff\xfe\xfa"),
    (".txt", "!!! ... ؟؟؟ ،،، ---\n".encode()),
    (".pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),
]


# ----------------------------------------------------------------------------------------------- documents


@dataclass(frozen=True, slots=True)
class Corpus:
    folder: Path
    story_of: dict[str, int | None]  # source (the path `docsieve submit` stores) -> story; None: bad input

    @property
    def stories(self) -> int:
        return len({s for s in self.story_of.values() if s is not None})

    @property
    def bad(self) -> int:
        return sum(s is None for s in self.story_of.values())


def _vocabulary() -> list[str]:
    words = {w for path in TEXTS for w in path.read_text(encoding="utf-8").split() if w.isalpha() and len(w) > 1}
    return sorted(words)


def _story(rng: random.Random, words: list[str], number: int) -> tuple[str, list[str]]:
    """A headline and 5-7 paragraphs of words drawn at random: two stories share next to no 3-gram."""
    title = " ".join(rng.choices(words, k=rng.randint(6, 10)))
    paragraphs = [" ".join(rng.choices(words, k=rng.randint(30, 60))) + "." for _ in range(rng.randint(5, 7))]
    paragraphs[0] = f"{paragraphs[0][:-1]} {number}."
    return title, paragraphs


def _scraped(title: str, paragraphs: list[str], image: str | None) -> str:
    head = [f"![]({image})"] if image else []
    return "\n".join([*head, title, *paragraphs]) + "\n"


def _variants(rng: random.Random, words: list[str], title: str, paragraphs: list[str], image: str) -> list[str]:
    """The original and its copies: exact (same bytes, or equal after normalization) or near (new headline
    and dateline with the last paragraph cut, or only the first three paragraphs)."""
    original = _scraped(title, paragraphs, image)
    out = [original]
    kind = rng.random()
    if kind < 0.45:
        return out
    if kind < 0.65:
        for _ in range(rng.randint(1, 2)):
            if rng.random() < 0.5:
                out.append(original)
            else:  # punctuation and spacing only: the same normalized text
                out.append(_scraped(title, [p.replace(" ", " ، ", 3).replace(".", " .") for p in paragraphs], None))
        return out
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.5:
            headline = " ".join(rng.choices(words, k=7))
            out.append(_scraped(headline, [f"(أ ف ب) — {paragraphs[0]}", *paragraphs[1:-1]], None))
        else:
            out.append(_scraped(title, paragraphs[:3], image))
    if rng.random() < 0.3:
        out.append(out[-1])
    return out


def write_corpus(folder: Path, count: int, seed: int) -> Corpus:
    """``count`` files in the scraped shape under ``folder``: stories alone, with exact and near copies,
    and a few bad inputs, in a shuffled order so that copies of one story travel in different tasks."""
    rng = random.Random(seed)
    words = _vocabulary()
    documents: list[tuple[str, bytes, int | None]] = [(suffix, data, None) for suffix, data in BAD_INPUTS]
    story = 0
    while len(documents) < count:
        title, paragraphs = _story(rng, words, story)
        for text in _variants(rng, words, title, paragraphs, f"https://img.example.net/{story}.jpg"):
            if len(documents) < count:
                documents.append((".txt", text.encode(), story))
        story += 1
    rng.shuffle(documents)
    folder.mkdir(parents=True, exist_ok=True)
    story_of: dict[str, int | None] = {}
    for position, (suffix, data, number) in enumerate(documents):
        path = folder / f"{position:05d}{suffix}"
        path.write_bytes(data)
        story_of[str(path)] = number
    return Corpus(folder, story_of)


# ----------------------------------------------------------------------------------------------- deployment


def deployment_env(redis_url: str, store_url: str, prefix: str, submit_batch: int, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
    return {
        **base,
        "DOCSIEVE_STORE": store_url,
        "DOCSIEVE_BROKER_URL": redis_url,
        "DOCSIEVE_RESULT_BACKEND": redis_url,
        "DOCSIEVE_INDEX_URL": redis_url,  # the shared index, as deployed
        "DOCSIEVE_QUEUE_PREFIX": prefix,
        "DOCSIEVE_SUBMIT_BATCH": str(submit_batch),
        **extra,
    }


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    def children(self) -> list[psutil.Process]:
        """The prefork pool processes of this worker, alive ones only: a killed child stays a zombie, listed
        by ``inspect().active()`` with its task, until the parent notices (up to a few seconds later)."""
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []
        alive = []
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child)
        return alive


def start_worker(env: dict[str, str], name: str, concurrency: int, log: Path) -> Worker:
    """``docsieve worker`` in a session of its own (so that it and its pool can be ended together)."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [DOCSIEVE, "worker", "-c", str(concurrency), "--loglevel", "INFO", "--hostname", name],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Worker(name, process, log)


def wait_ready(app, workers: list[Worker], timeout: float = 120) -> None:
    names = [w.name for w in workers]
    deadline = time.monotonic() + timeout
    while True:
        replies = app.control.inspect(destination=names, timeout=1.0, limit=len(names)).ping() or {}
        if all(n in replies for n in names) and all(w.children() for w in workers):
            return
        for w in workers:
            if w.process.poll() is not None:
                raise RuntimeError(f"worker {w.name} exited: see {w.log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not ready after {timeout} s: {sorted(set(names) - set(replies))}")


def kill_group(worker: Worker) -> None:
    """SIGKILL the worker and its pool (its own session: nothing else is in it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=30)


def stop_worker(worker: Worker, timeout: float = 60) -> None:
    """Warm shutdown, then whatever is left of the worker's session is killed."""
    if worker.process.poll() is None:
        worker.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=timeout)
    kill_group(worker)


def cleanup_redis(redis_url: str, markers: Iterable[str], task_ids: Iterable[str], queue: str) -> int:
    """Remove only what this trial made: keys naming its prefix or mailbox, its task results, its bindings,
    and any unacknowledged message of its queue still parked in kombu's shared ``unacked`` hash."""
    client = redis.Redis.from_url(redis_url)
    removed = 0
    for marker in markers:
        for key in client.scan_iter(match=f"*{marker}*", count=1000):
            removed += client.delete(key)
        for binding in client.scan_iter(match="_kombu.binding.*", count=1000):
            if client.type(binding) == b"set":
                ours = [m for m in client.smembers(binding) if marker.encode() in m]
                if ours:
                    removed += client.srem(binding, *ours)
    for task_id in task_ids:
        removed += client.delete(f"celery-task-meta-{task_id}")
    for tag, body in client.hscan_iter("unacked"):
        if queue.encode() in body:
            removed += client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    client.close()
    return removed


def parked_messages(redis_url: str, queue: str) -> tuple[int, int]:
    """Messages of ``queue`` waiting in it, and delivered but not acknowledged (kombu's ``unacked``)."""
    client = redis.Redis.from_url(redis_url)
    try:
        waiting = client.llen(queue)
        unacked = sum(queue.encode() in body for _, body in client.hscan_iter("unacked"))
        return waiting, unacked
    finally:
        client.close()


# ----------------------------------------------------------------------------------------------- worker logs

RECEIVED = re.compile(r"Task docsieve\.ingest_batch\[([0-9a-f-]+)\] received")
SUCCEEDED = re.compile(r"Task docsieve\.ingest_batch\[([0-9a-f-]+)\] succeeded in [\d.e-]+s: (\{.*\})")
FAILED = re.compile(r"Task docsieve\.ingest_batch\[([0-9a-f-]+)\] (?:raised unexpected|retry)")
WORKER_LOST = "WorkerLostError"
KILLED_CHILD = re.compile(r"Process '[^']+' pid:(\d+) exited with 'signal 9")


@dataclass
class LogSummary:
    received: Counter[str] = field(default_factory=Counter)  # task id -> deliveries
    succeeded: set[str] = field(default_factory=set)
    reruns_after_commit: set[str] = field(default_factory=set)  # ran again, found its records stored
    failed: set[str] = field(default_factory=set)
    worker_lost: int = 0  # tasks whose pool process died under them (requeued)
    killed_pids: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    @property
    def redelivered(self) -> int:
        return sum(n - 1 for n in self.received.values())


def read_logs(paths: Iterable[Path]) -> LogSummary:
    summary = LogSummary()
    for path in paths:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if m := RECEIVED.search(line):
                summary.received[m.group(1)] += 1
            elif m := SUCCEEDED.search(line):
                summary.succeeded.add(m.group(1))
                stored = re.search(r"'stored': (\d+)", m.group(2))
                received = re.search(r"'received': (\d+)", m.group(2))
                if stored and received and stored.group(1) != received.group(1):
                    summary.reruns_after_commit.add(m.group(1))
            elif m := FAILED.search(line):
                summary.failed.add(m.group(1))
            elif m := KILLED_CHILD.search(line):
                summary.killed_pids.add(int(m.group(1)))
            elif WORKER_LOST in line and "Task handler raised error" in line:
                summary.worker_lost += 1
            elif "ERROR/" in line or "CRITICAL/" in line or "WARNING/" in line:
                summary.errors.append(f"{path.name}: {line}")
    return summary


# ----------------------------------------------------------------------------------------------- checks


@dataclass
class Check:
    records: int
    counts: Counter[str]
    missing: list[str]  # sources submitted with no record: lost
    extra: list[str]  # records of sources never submitted
    twice: list[str]  # sources with more than one record
    repeated_ids: int
    dangling: list[str]  # duplicates whose duplicate_of is not a canonical record
    hash_conflicts: list[str]  # content hashes with two canonicals, or copies under two roots
    split_stories: list[int]  # stories whose copies ended under more than one canonical
    merged_roots: list[str]  # canonicals holding copies of more than one story

    @property
    def lost(self) -> int:
        return len(self.missing)

    @property
    def duplicated(self) -> int:
        return len(self.twice) + self.repeated_ids + len(self.extra)

    @property
    def ok(self) -> bool:
        return not (
            self.missing
            or self.extra
            or self.twice
            or self.repeated_ids
            or self.dangling
            or self.hash_conflicts
            or self.split_stories
            or self.merged_roots
        )

    def problems(self) -> list[str]:
        named = {
            "lost": self.missing,
            "unexpected": self.extra,
            "stored twice": self.twice,
            "dangling duplicate_of": self.dangling,
            "content-hash conflicts": self.hash_conflicts,
            "stories split": self.split_stories,
            "stories merged under": self.merged_roots,
        }
        out = [f"{label} {len(items)}: {items[:5]}" for label, items in named.items() if items]
        if self.repeated_ids:
            out.append(f"record ids repeated {self.repeated_ids}")
        return out


def check_store(store_url: str, corpus: Corpus) -> Check:
    store = Store(store_url, migrate=False)
    try:
        records = list(store.iter_records())
    finally:
        store.close()
    by_id = {r.id: r for r in records}
    sources = Counter(r.source for r in records)
    expected = set(corpus.story_of)
    canonical = {r.id for r in records if r.status.value == "canonical"}
    dangling = [r.source for r in records if r.status.value == "duplicate" and r.duplicate_of not in canonical]
    by_hash: dict[str, list] = defaultdict(list)
    for r in records:
        if r.status.value != "rejected":
            by_hash[r.content_hash].append(r)
    hash_conflicts = [
        h
        for h, group in by_hash.items()
        if sum(r.status.value == "canonical" for r in group) > 1 or len({r.duplicate_of or r.id for r in group}) > 1
    ]
    roots_of_story: dict[int, set[str]] = defaultdict(set)
    stories_of_root: dict[str, set[int]] = defaultdict(set)
    for r in records:
        story = corpus.story_of.get(r.source)
        if story is not None and r.status.value != "rejected":
            root = r.duplicate_of or r.id
            roots_of_story[story].add(root)
            stories_of_root[root].add(story)
    return Check(
        records=len(records),
        counts=Counter(r.status.value for r in records),
        missing=sorted(expected - sources.keys()),
        extra=sorted(sources.keys() - expected),
        twice=sorted(s for s, n in sources.items() if n > 1),
        repeated_ids=len(records) - len(by_id),
        dangling=dangling,
        hash_conflicts=hash_conflicts,
        split_stories=sorted(s for s, roots in roots_of_story.items() if len(roots) > 1),
        merged_roots=sorted(root for root, stories in stories_of_root.items() if len(stories) > 1),
    )
