"""Shared by the reliability trials: generated documents, the docsieve commands, a deployment's Redis
leftovers, the workers' logs, the checks.

Services and workers come from ``tests.services`` (the one module for them, shared with the tests and the
benchmarks): ``redis_server`` / ``postgres_server`` (REDIS_URL / DATABASE_URL when set and reachable, else
private instances), or ``private_services``: a redis-server and a PostgreSQL server of this process's own,
which a trial may stop and start again; ``running_workers`` and the rest for ``docsieve worker`` processes.
A trial owns a fresh database and a queue prefix of its own, and removes only what it made.
"""

from __future__ import annotations

import argparse
import random
import re
import shlex
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import redis
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.services
from docsieve.store import Store
from tests.services import DOCSIEVE, ROOT, remove_keys

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


def command_line() -> str:
    """How this script was run, to print above its table."""
    return shlex.join([".venv/bin/python", f"reliability/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def deployment_options(parser: argparse.ArgumentParser, workers: int, concurrency: int, batch: int) -> None:
    parser.add_argument("--workers", type=int, default=workers, help=f"worker processes (default {workers})")
    parser.add_argument(
        "--concurrency", type=int, default=concurrency, help=f"pool processes a worker (default {concurrency})"
    )
    parser.add_argument("--batch", type=int, default=batch, help=f"DOCSIEVE_SUBMIT_BATCH (default {batch})")


# ----------------------------------------------------------------------------------------------- documents


@dataclass(frozen=True, slots=True)
class Corpus:
    folder: Path
    story_of: dict[str, int | None]  # source (the path `docsieve submit` stores) -> story; None: bad input

    @property
    def size(self) -> int:
        return len(self.story_of)

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


def _small_edit(
    rng: random.Random, words: list[str], title: str, paragraphs: list[str], copy: int
) -> tuple[str, list[str]]:
    """Copy 0 is the story; later copies are exact copies or near copies with one small edit, so any two
    copies keep a Jaccard similarity of about 0.8 or more (thresholds: 0.5 Jaccard, 0.55 containment)."""
    body = list(paragraphs)
    kind = copy % 5 if copy else -1
    if kind == 1:  # a sentence's worth of words (12-18) dropped from one paragraph
        i = rng.randrange(len(body))
        paragraph = body[i].split()
        cut = rng.randint(12, 18)
        at = rng.randrange(len(paragraph) - cut)
        body[i] = " ".join(paragraph[:at] + paragraph[at + cut :])
    elif kind == 2:  # one word of one paragraph changed
        i = rng.randrange(len(body))
        paragraph = body[i].split()
        paragraph[rng.randrange(len(paragraph))] = rng.choice(words)
        body[i] = " ".join(paragraph)
    elif kind == 3:  # another headline, a word and an agency dateline (not one the normalizer strips)
        title, body[0] = " ".join(rng.choices(words, k=7)), f"{rng.choice(words)} (AFP) - {body[0]}"
    elif kind == 4:  # a footer line
        body.append(f"{rng.choice(words)} {rng.choice(words)} {copy}.")
    return title, body


def _save(folder: Path, documents: list[tuple[str, bytes, int | None]], rng: random.Random) -> Corpus:
    """The documents in a shuffled order, named by it: submit reads a folder in name order, so copies of
    one story travel in different tasks."""
    rng.shuffle(documents)
    folder.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(documents) - 1)))
    story_of: dict[str, int | None] = {}
    for position, (suffix, data, number) in enumerate(documents):
        path = folder / f"{position:0{width}d}{suffix}"
        path.write_bytes(data)
        story_of[str(path)] = number
    return Corpus(folder, story_of)


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
    return _save(folder, documents, rng)


def write_copies(folder: Path, stories: int, copies: int, seed: int) -> Corpus:
    """``stories`` x ``copies`` files in the scraped shape: each story and ``copies - 1`` exact or near
    copies of it with one small edit each (see ``_small_edit``), shuffled; no bad inputs."""
    rng = random.Random(seed)
    words = _vocabulary()
    documents: list[tuple[str, bytes, int | None]] = []
    for story in range(stories):
        title, paragraphs = _story(rng, words, story)
        image = f"https://img.example.net/{story}.jpg"
        for copy in range(copies):
            text = _scraped(*_small_edit(rng, words, title, paragraphs, copy), image)
            documents.append((".txt", text.encode(), story))
    return _save(folder, documents, rng)


# ----------------------------------------------------------------------------------------------- store


def scalar(store_url: str, query: str) -> int:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar_one()
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------------------------- deployment


def docsieve(env: dict[str, str], *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """``docsieve ARGS`` in the repository; with ``check``, a non-zero exit raises with its output."""
    done = subprocess.run([*DOCSIEVE, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and done.returncode != 0:
        raise RuntimeError(f"docsieve {args[0]} failed: {done.stdout}{done.stderr}")
    return done


def submit(env: dict[str, str], corpus: Corpus) -> tuple[int, int]:
    """``docsieve submit FOLDER --quiet``: the documents and tasks it queued."""
    submitted = docsieve(env, "submit", str(corpus.folder), "--quiet")
    m = re.search(r"queued (\d+) documents in (\d+) tasks", submitted.stdout)
    if not m:
        raise RuntimeError(f"unexpected submit output: {submitted.stdout}")
    return int(m.group(1)), int(m.group(2))


def cleanup_redis(redis_url: str, markers: Iterable[str], task_ids: Iterable[str], queue: str) -> int:
    """Remove only what this trial made: keys naming its prefix or mailbox, its task results, its bindings,
    and any unacknowledged message of its queue still parked in kombu's shared ``unacked`` hash."""
    client = redis.Redis.from_url(redis_url)
    removed = 0
    for marker in markers:
        removed += remove_keys(redis_url, marker)
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
    """Messages of ``queue`` waiting in it, and delivered but not acknowledged (kombu's ``unacked``: running,
    or a retry waiting for its countdown in a worker's memory)."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        waiting = client.llen(queue)
        unacked = sum(queue.encode() in body for _, body in client.hscan_iter("unacked"))
        return waiting, unacked
    finally:
        client.close()


# ----------------------------------------------------------------------------------------------- worker logs

RECEIVED = re.compile(r"Task docsieve\.ingest_batch\[([0-9a-f-]+)\] received")
SUCCEEDED = re.compile(r"Task docsieve\.ingest_batch\[([0-9a-f-]+)\] succeeded in [\d.e-]+s: (\{.*\})")
RETRY = re.compile(r"Task [\w.]+\[([\w-]+)\] retry: (?:Retry (?:in \S+|at .*?): )?(\w+)")
RAISED = re.compile(r"Task [\w.]+\[([\w-]+)\] raised unexpected")
DROPPED = re.compile(r"Task [\w.]+\[([\w-]+)\] reject requeue=False: (.*)")  # the retry could not be sent
FRAME = re.compile(r'File ".*/(worker/\w+\.py)", line (\d+), in (\w+)')
WORKER_LOST = "WorkerLostError"
KILLED_CHILD = re.compile(r"Process '[^']+' pid:(\d+) exited with 'signal 9")
LEVEL = re.compile(r"\b(ERROR|CRITICAL|WARNING)/\S*\] ")


@dataclass
class LogSummary:
    received: Counter[str] = field(default_factory=Counter)  # task id -> deliveries
    succeeded: set[str] = field(default_factory=set)
    reruns_after_commit: set[str] = field(default_factory=set)  # ran again, found its records stored
    retry_errors: Counter[str] = field(default_factory=Counter)  # error -> retries it caused
    raised: set[str] = field(default_factory=set)  # tasks that failed for good ("raised unexpected")
    failed: set[str] = field(default_factory=set)  # tasks that raised or were retried
    # "reject requeue=False": the retry could not be sent. Task id, error, where in docsieve it failed.
    dropped: list[list[str]] = field(default_factory=list)
    broker_lost: int = 0  # "Connection to broker lost" lines
    worker_lost: int = 0  # tasks whose pool process died under them (requeued)
    killed_pids: set[int] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)  # other ERROR/CRITICAL lines, without the time
    warnings: Counter[str] = field(default_factory=Counter)  # other WARNING lines, without the time

    @property
    def redelivered(self) -> int:
        return sum(n - 1 for n in self.received.values())

    @property
    def retries(self) -> int:
        return sum(self.retry_errors.values())


def read_logs(paths: Iterable[Path]) -> LogSummary:
    summary = LogSummary()
    for path in paths:
        dropped: list[str] | None = None  # the dropped task whose traceback follows
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("["):  # a new log record
                dropped = None
            if m := RECEIVED.search(line):
                summary.received[m.group(1)] += 1
            elif m := SUCCEEDED.search(line):
                summary.succeeded.add(m.group(1))
                stored = re.search(r"'stored': (\d+)", m.group(2))
                received = re.search(r"'received': (\d+)", m.group(2))
                if stored and received and stored.group(1) != received.group(1):
                    summary.reruns_after_commit.add(m.group(1))
            elif m := RETRY.search(line):
                summary.failed.add(m.group(1))
                summary.retry_errors[m.group(2)] += 1
            elif m := RAISED.search(line):
                summary.failed.add(m.group(1))
                summary.raised.add(m.group(1))
            elif m := DROPPED.search(line):
                dropped = [m.group(1), m.group(2)[:60], "?"]
                summary.dropped.append(dropped)
            elif dropped is not None and (frame := FRAME.search(line)) and frame.group(1) != "worker/tasks.py":
                # docsieve's own frames in the dropped task's traceback: where the fault hit
                where = "{}:{} {}".format(*frame.groups())
                dropped[2] = where if dropped[2] == "?" else f"{dropped[2]} > {where}"
            elif m := KILLED_CHILD.search(line):
                summary.killed_pids.add(int(m.group(1)))
            elif WORKER_LOST in line and "Task handler raised error" in line:
                summary.worker_lost += 1
            elif "Connection to broker lost" in line:
                summary.broker_lost += 1
            elif m := LEVEL.search(line):
                found = summary.warnings if m.group(1) == "WARNING" else summary.errors
                found[line[m.end() :][:100]] += 1
    return summary


def log_notes(summary: LogSummary, warnings: bool) -> list[str]:
    """Lines to print under a trial's line: tasks a worker dropped, the commonest errors (and warnings)."""
    notes = [f"    dropped task {task} at {where}: {error}" for task, error, where in summary.dropped]
    found = summary.errors + summary.warnings if warnings else summary.errors
    return notes + [f"    worker log, {n}x: {text}" for text, n in found.most_common(5)]


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
    bad_kept: list[str]  # bad inputs whose record is not a rejection
    story_rejected: list[str]  # documents of a generated story that were rejected
    members: dict[str, set[str]]  # root record id -> the sources of the story documents under it

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
            or self.bad_kept
            or self.story_rejected
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
            "bad inputs not rejected": self.bad_kept,
            "story documents rejected": self.story_rejected,
        }
        out = [f"{label} {len(items)}: {items[:5]}" for label, items in named.items() if items]
        if self.repeated_ids:
            out.append(f"record ids repeated {self.repeated_ids}")
        return out

    def groups(self) -> set[frozenset[str]]:
        """The stories as the store sees them: the sources under each canonical record."""
        return {frozenset(sources) for sources in self.members.values()}


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
    members: dict[str, set[str]] = defaultdict(set)
    for r in records:
        story = corpus.story_of.get(r.source)
        if story is not None and r.status.value != "rejected":
            root = r.duplicate_of or r.id
            roots_of_story[story].add(root)
            stories_of_root[root].add(story)
            members[root].add(r.source)
    bad = {source for source, story in corpus.story_of.items() if story is None}
    good = expected - bad
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
        bad_kept=sorted(r.source for r in records if r.source in bad and r.status.value != "rejected"),
        story_rejected=sorted(r.source for r in records if r.source in good and r.status.value == "rejected"),
        members=dict(members),
    )
