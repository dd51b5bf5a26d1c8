"""Shared by the benchmarks in this folder: SaudiNewsNet articles from the shared corpus, the machine."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
FOLDER = "saudinewsnet-dev"


@dataclass(frozen=True, slots=True)
class Article:
    id: str  # snn-<date>-<index in that day's array>, as in silver_pairs_dev.tsv
    title: str
    content: str


def folder_or_exit(corpus: Path) -> Path:
    """The saudinewsnet-dev folder, or exit 2 with a message: the corpus is not part of the repository."""
    folder = corpus / FOLDER
    if not any(folder.glob("*.json.gz")):
        print(
            f"corpus not found: no {FOLDER}/*.json.gz under {corpus} "
            f"(the shared corpus lives beside the repository; pass --corpus DIR)",
            file=sys.stderr,
        )
        sys.exit(2)
    return folder


def load_articles(folder: Path, limit: int | None = None) -> list[Article]:
    """Articles with non-empty content, in day and array order; ids keep the index in the day's array."""
    articles: list[Article] = []
    for path in sorted(folder.glob("*.json.gz")):
        day = path.name.removesuffix(".json.gz")
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows = json.load(fh)
        for index, row in enumerate(rows):
            content = row.get("content") or ""
            if content.strip():
                articles.append(Article(f"snn-{day}-{index}", (row.get("title") or "").strip(), content))
                if limit is not None and len(articles) >= limit:
                    return articles
    return articles


def machine() -> str:
    """CPU model and count, for the header of a results table."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs"


def status_mb(field: str) -> int:
    """MB of one of this process's ``/proc/self/status`` fields (VmRSS, VmHWM...). Linux only."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(field)


def reset_peak() -> None:
    """Start this process's high-water mark (VmHWM) again from its resident size now. Linux only."""
    Path("/proc/self/clear_refs").write_text("5")


def settle(quiet_below: float = 0.2, longest: float = 10.0) -> None:
    """Wait until the machine is about idle (busy under ``quiet_below`` of its CPUs over a quarter second,
    for at most ``longest`` seconds): what the previous run left behind (PostgreSQL dropping a database,
    writing its checkpoint) must not count against the next one. Linux only; elsewhere a pause."""
    import time

    def busy_and_total() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle and iowait
        return sum(values) - idle, sum(values)

    deadline = time.monotonic() + longest
    try:
        before = busy_and_total()
    except (OSError, ValueError, IndexError):
        time.sleep(1.0)
        return
    while time.monotonic() < deadline:
        time.sleep(0.25)
        after = busy_and_total()
        if after[1] > before[1] and (after[0] - before[0]) / (after[1] - before[1]) < quiet_below:
            return
        before = after


def meanwhile(store, then: Callable[[], object]) -> None:
    """Make ``store``'s writes call ``then`` between their work before the lock and the lock: a second worker storing
    a batch while the first waits (bench/lock.py --contended, bench/interleaved.py). ``store``: a docsieve Store."""
    writing = store.writing

    @contextlib.contextmanager
    def wrapped(before_lock=None):
        def first_then(txn):
            # Before the lock is tried as well: a decision before the lock that finds the lock free takes it there
            # (``Transaction.try_write_lock``), and the second worker, in this thread, would then wait on it forever.
            pending = [then]  # the second worker's batch, stored once, whichever comes first
            tried = txn.try_write_lock

            def second() -> None:
                while pending:
                    pending.pop()()

            def second_then_try() -> bool:
                second()
                return tried()

            txn.try_write_lock = second_then_try
            if before_lock is not None:
                before_lock(txn)
            second()

        with writing(before_lock=first_then) as txn:
            yield txn

    store.writing = wrapped
