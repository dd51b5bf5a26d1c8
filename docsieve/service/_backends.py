"""What the HTTP service stands on: the embedded default (documents decided in the request, in this process)
or the deployment's queue (documents sent to the workers, answered with the tasks to poll). The queue is
an installed package's (``docsieve.queues`` entry points: the deployment's ``worker``), which the core never
imports."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from docsieve.fetch import Fetcher
from docsieve.index import index_directory, open_index
from docsieve.metrics import Metrics, QueueDepths
from docsieve.models import RawDocument, Record, Rejection, batched
from docsieve.pipeline import Match, Pipeline
from docsieve.readers import Item
from docsieve.settings import Settings, SettingsError
from docsieve.store import Store

QUEUES = "docsieve.queues"


@dataclass(frozen=True, slots=True)
class Answer:
    """One input's reply: its record as stored (None if it was taken down meanwhile), and whether this request
    stored it."""

    record: Record | None
    stored: bool


@dataclass(frozen=True, slots=True)
class Queued:
    """Documents (or URLs) handed to the workers: the task that carries each, by the input's position."""

    tasks: list[str]
    task_of: list[str]


class Backend(Protocol):
    store: Store
    queued: bool

    def submit(self, items: list[Item]) -> list[Answer] | Queued: ...

    def submit_urls(self, urls: list[str]) -> list[Answer | str] | Queued:
        """Each URL's outcome, or why it gave no document now ("not modified"), or the tasks queued."""

    def similar(self, document: RawDocument, limit: int, everything: bool) -> list[Match] | str: ...

    def delete(self, record_id: str, reason: str | None) -> bool: ...

    def task(self, task_id: str) -> dict[str, Any] | None: ...

    def problems(self) -> dict[str, str]:
        """Each part that cannot be reached now (store, broker, index), with why; empty when all can."""

    def close(self) -> None: ...


def open_backend(settings: Settings, metrics: Metrics | None = None) -> Backend:
    if not settings.api_queue:
        return Embedded(settings, metrics)
    from importlib.metadata import entry_points

    found = list(entry_points(group=QUEUES))
    if not found:
        raise SettingsError(
            "DOCSIEVE_API_QUEUE: queuing to workers needs the deployment (pip install 'docsieve[deploy]')"
        )
    try:
        factory = found[0].load()
    except ImportError as exc:
        raise SettingsError(f"DOCSIEVE_API_QUEUE: the deployment's packages cannot be loaded: {exc}") from None
    return factory(settings, metrics)


class Looking:
    """What both backends share: a pipeline over the store for ``similar`` (its index resident: a service
    lives long and looks up one document at a time), used by one thread at a time (its index and caches
    are not shared between threads)."""

    def __init__(self, settings: Settings, store: Store, metrics: Metrics | None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.pipeline = Pipeline(store, settings, open_index(settings, resident=True))
        self._lock = threading.Lock()

    def watch(self, queues: QueueDepths | None = None) -> None:
        """What the store and the index hold (and the queues' depths), as metrics read when scraped."""
        if self.metrics is not None:
            folder = index_directory(self.settings) if not self.settings.index_url else None
            postings = getattr(self.pipeline.index, "posting_count", None)
            self.metrics.watch_store(self.store, folder, queues, postings)

    def similar(self, document: RawDocument, limit: int, everything: bool) -> list[Match] | str:
        with self._lock:
            for _, matches in self.pipeline.similar([document], limit, everything=everything):
                return matches
        return []

    def close(self) -> None:
        with self._lock:
            self.pipeline.close()


class Embedded(Looking):
    """Documents decided in the request. One batch is decided at a time: the pipeline's index and caches
    belong to one thread, and SQLite has one writer anyway. Reads go to the store beside it."""

    queued = False

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        super().__init__(settings, Store(settings.store, fingerprints=settings.fingerprint_parameters), metrics)
        self._fetcher: Fetcher | None = None  # made when first needed: requests come with it
        self.watch()

    @property
    def fetcher(self) -> Fetcher:
        """One fetcher for every request: its per-host pacing and its robots.txt cache hold across them."""
        if self._fetcher is None:
            self._fetcher = Fetcher(self.settings)
        return self._fetcher

    def submit(self, items: list[Item]) -> list[Answer]:
        answers: list[Answer] = []
        with self._lock:
            for batch in batched(items, self.settings.batch_size):
                started = time.perf_counter()
                done = self.pipeline.process_each(batch)
                if self.metrics is not None:
                    fresh = [o.record for o in done if o.record is not None]
                    self.metrics.stored(fresh, len(done) - len(fresh), time.perf_counter() - started)
                with self.store.reading() as txn:  # as stored: with the times the store gave them
                    stored = txn.records({o.record_id for o in done})
                answers += [Answer(stored.get(o.record_id), o.stored) for o in done]
        return answers

    def submit_urls(self, urls: list[str]) -> list[Answer | str]:
        from docsieve.web import fetch_here, save_validators

        pages = fetch_here(urls, self.store, self.settings, fetcher=self.fetcher)  # outside the lock: the network
        if self.metrics is not None:
            for page in pages:
                self.metrics.fetched(_fetch_outcome(page.item))
        fetched = [page.item for page in pages if page.item is not None]
        outcomes = iter(self.submit(fetched))
        save_validators(self.store, (page.validators for page in pages))  # only now that the pages are stored
        return [next(outcomes) if page.item is not None else "not modified" for page in pages]

    def delete(self, record_id: str, reason: str | None) -> bool:
        with self._lock:
            return bool(self.store.delete([record_id], reason, self.settings))

    def task(self, task_id: str) -> dict[str, Any] | None:
        return None  # nothing is queued: every request is answered when it is decided

    def problems(self) -> dict[str, str]:
        return store_problems(self.store)

    def close(self) -> None:
        super().close()
        if self._fetcher is not None:
            self._fetcher.close()


def _fetch_outcome(item: Item | None) -> str:
    if item is None:
        return "not_modified"
    if not isinstance(item, Rejection):
        return "fetched"
    return "unreachable" if item.reason.startswith("unreachable") else "failed"


def store_problems(store: Store) -> dict[str, str]:
    import sqlalchemy as sa

    try:
        with store.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return {"store": first[0] if first else type(exc).__name__}
    return {}


def outcome_counts(outcomes: Sequence[Answer | str]) -> dict[str, int]:
    counts = {"new": 0, "copies": 0, "rejected": 0, "already_stored": 0, "not_modified": 0}
    for outcome in outcomes:
        if isinstance(outcome, str):
            counts["not_modified"] += 1
        elif not outcome.stored or outcome.record is None:
            counts["already_stored"] += 1
        else:
            status = str(outcome.record.status)
            counts[{"canonical": "new", "duplicate": "copies", "rejected": "rejected"}[status]] += 1
    return counts
