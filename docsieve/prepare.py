"""Preparing a batch: extraction and fingerprints, which need neither the store nor its lock; and running
that ahead of the deciding thread.

This module loads no storage code: ``docsieve ingest`` starts preparing the first batch while the other
thread still imports SQLAlchemy and opens the store.
"""

from __future__ import annotations

import gc
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from docsieve.extract import HtmlLimits, extract
from docsieve.fingerprint import fingerprint_batch
from docsieve.index import keys_of
from docsieve.models import Document, Fingerprint, Rejection, batched, record_id
from docsieve.readers import Item
from docsieve.settings import Settings
from docsieve.validate import validate

FINGERPRINT_CHUNK = 64  # the vectorized fingerprint is fastest when a chunk's arrays stay in cache
U = TypeVar("U")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A document ready to be decided."""

    id: str
    document: Document
    fingerprint: Fingerprint
    keys: np.ndarray


def prepare(batch: list[Item], settings: Settings) -> tuple[list[Rejection], list[Prepared]]:
    """Extraction and fingerprints of a batch; what cannot become a document is rejected. (The language
    is detected by the deciding thread, ``Pipeline.store_prepared``: this thread is the busier of the two, and
    documents already stored need none.)"""
    rejections: list[Rejection] = []
    documents: list[Document] = []
    html_limits = HtmlLimits(settings.max_html_chars, settings.extract_timeout)
    for item in batch:
        result = validate(item if isinstance(item, Rejection) else extract(item, html_limits))
        if isinstance(result, Rejection):
            rejections.append(result)
        else:
            documents.append(result)
    fingerprints = fingerprint_documents(documents, settings)
    prepared = []
    for doc, fp in zip(documents, fingerprints, strict=True):
        if not len(fp.shingles):
            reason = "no words left after normalization (punctuation or symbols only)"
            rejections.append(Rejection.of(doc.source, reason, doc.text))
            continue
        rid = record_id(doc.source, fp.content_hash)
        prepared.append(Prepared(rid, doc, fp, keys_of(fp)))
    return rejections, prepared


def fingerprint_documents(documents: list[Document], settings: Settings) -> list[Fingerprint]:
    texts = [doc.text for doc in documents]
    return [
        fp
        for start in range(0, len(texts), FINGERPRINT_CHUNK)
        for fp in fingerprint_batch(texts[start : start + FINGERPRINT_CHUNK], settings)
    ]


PreparedBatch = tuple[list[Item], tuple[list[Rejection], list[Prepared]]]


def prepare_ahead(items: Iterable[Item], settings: Settings) -> RunAhead[PreparedBatch]:
    """Batches of the items with their preparation, made on a thread of their own from now on."""
    return RunAhead((batch, prepare(batch, settings)) for batch in batched(items, settings.batch_size))


def collect_less() -> tuple[int, int, int]:
    """Keep the cyclic garbage collector mostly out of the way of batch work; returns the thresholds it
    replaced. Batches allocate millions of short-lived objects that reference counting frees; with the
    default thresholds the collector still ran some 190 times in a 5,000-article ingest (0.1 s, 5% of
    it, all holding the GIL) and found next to nothing. What is loaded so far is frozen out of its
    scans (call again after loading more), and it runs once every 100,000 allocations instead of 700."""
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 20, 100)
    return previous


class RunAhead(Generic[U]):
    """The items of an iterable in order, produced on a thread of their own (started at once) at most
    ``depth`` items ahead of the consumer. An exception in the producer is raised in the consumer;
    ``close`` stops the producer after the item it is making, without waiting for it (it may be waiting
    for input)."""

    _FINISHED = object()

    def __init__(self, items: Iterable[U], depth: int = 1) -> None:
        self._ready: queue.Queue = queue.Queue(depth)
        self._stopping = threading.Event()
        self._items = items
        self._done = False
        self.started = time.perf_counter()
        threading.Thread(target=self._produce, name="docsieve-prepare", daemon=True).start()

    def __iter__(self) -> Iterator[U]:
        return self

    def __next__(self) -> U:
        if self._done:
            raise StopIteration
        ok, item = self._ready.get()
        if not ok:
            self.close()
            raise item
        if item is self._FINISHED:
            self.close()
            raise StopIteration
        return item

    def close(self) -> None:
        self._done = True
        self._stopping.set()

    def _hand_over(self, entry: tuple[bool, object]) -> bool:
        while not self._stopping.is_set():
            try:
                self._ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._hand_over((True, item)):
                    return
            self._hand_over((True, self._FINISHED))
        except BaseException as exc:  # handed to the consumer, raised there
            self._hand_over((False, exc))
