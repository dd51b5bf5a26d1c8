"""Prometheus metrics (prometheus-client, with ``docsieve[api]`` or ``docsieve[deploy]``): what the HTTP
service and the workers count, and what the store holds, read when scraped. Names in Prometheus style; the
README lists the panels worth watching.

Counters are counted by the thin layers (the service's backends, the Celery tasks) from what the core returns,
so the core never imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from docsieve.models import Record, Status

if TYPE_CHECKING:
    from docsieve.store import Store

LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """One process's metrics, in a registry of their own (so tests and several apps never share counters)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.documents = Counter(
            "docsieve_documents_total",
            "Documents stored, by status (canonical, duplicate, rejected, already_stored) and method of a copy",
            ["status", "method"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "docsieve_batch_seconds", "Seconds to decide and store one batch", buckets=LATENCY, registry=r
        )
        self.decision_seconds = Histogram(
            "docsieve_decision_seconds",
            "Seconds a document's batch took to decide and store, counted once per document",
            buckets=LATENCY,
            registry=r,
        )
        self.fetches = Counter("docsieve_fetches_total", "Fetches of URLs, by outcome", ["outcome"], registry=r)
        self.requests = Counter(
            "docsieve_http_requests_total",
            "HTTP requests, by route and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "docsieve_http_request_seconds", "Seconds to answer an HTTP request", ["route"], buckets=LATENCY, registry=r
        )
        self.task_retries = Counter(
            "docsieve_task_retries_total", "Task attempts that failed and wait to be retried", ["task"], registry=r
        )
        self.task_failures = Counter("docsieve_task_failures_total", "Tasks that failed for good", ["task"], registry=r)

    def stored(self, records: Sequence[Record], already: int, seconds: float) -> None:
        """A batch's records (stored now) and how many of its inputs were stored before."""
        for record in records:
            method = str(record.method) if record.method else ""
            self.documents.labels(str(record.status), method).inc()
        if already:
            self.documents.labels("already_stored", "").inc(already)
        self.batch_seconds.observe(seconds)
        for _ in range(len(records) + already):
            self.decision_seconds.observe(seconds)

    def fetched(self, outcome: str) -> None:
        self.fetches.labels(outcome).inc()

    def watch_store(
        self,
        store: Store,
        index_folder: Path | None,
        queues: QueueDepths | None = None,
        postings: Callable[[], int] | None = None,
    ) -> None:
        """Gauges of what the store holds (and the index's files and postings, and the queues), read when
        scraped."""
        self.registry.register(_StoreCollector(store, index_folder, queues, postings))


class QueueDepths(Protocol):
    def depths(self) -> dict[str, int]:
        """Messages waiting, by queue name (the deployment's broker)."""


class _StoreCollector(Collector):
    def __init__(
        self,
        store: Store,
        index_folder: Path | None,
        queues: QueueDepths | None,
        postings: Callable[[], int] | None,
    ) -> None:
        self.store = store
        self.index_folder = index_folder
        self.queues = queues
        self.postings = postings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.store.counts()
        records = GaugeMetricFamily("docsieve_records", "Records in the store, by status", labels=["status"])
        for status in Status:
            records.add_metric([str(status)], counts.get(str(status), 0))
        yield records
        yield GaugeMetricFamily("docsieve_stories", "Stories in the store", value=self.store.story_count())
        if self.index_folder is not None:
            size = sum(f.stat().st_size for f in _files(self.index_folder))
            yield GaugeMetricFamily("docsieve_index_bytes", "Bytes of the candidate index's files", value=size)
        if self.postings is not None:
            yield GaugeMetricFamily(
                "docsieve_index_postings", "Entries of the candidate index (keys and ids)", value=self.postings()
            )
        if self.queues is not None:
            depth = GaugeMetricFamily("docsieve_queue_depth", "Messages waiting in each queue", labels=["queue"])
            for name, n in self.queues.depths().items():
                depth.add_metric([name], n)
            yield depth


def _files(folder: Path) -> Sequence[Path]:
    try:
        return [f for f in folder.iterdir() if f.is_file()]
    except OSError:
        return []
