"""The Celery task ``docsieve.poll_source``: a thin wrapper over ``docsieve.sources.poll``.

The poll message carries the whole source (name, kind, location, interval) as the scheduler read it from
the sources file: fetchers never read that file, so one not told where it is cannot fail every poll.
How each poll went is kept in the coordination Redis (``scheduler/polls.py``) for ``docsieve status``.

A poll holds ``<prefix>:poll:<name>`` for as long as the task may run (the task time limit), so a slow
poll never overlaps the next poll of the same source. (The I/O worker's thread pool does not enforce
time limits: a poll still running after that long may overlap the next one, which is only wasted work,
since the store's claims are atomic and each new entry is enqueued once either way.) A poll that fails
is not retried: the next scheduled poll does the same work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache, partial

import redis
from celery import current_app, shared_task

from docsieve.fetch import FetchError
from docsieve.models import Rejection, batched
from docsieve.readers import read
from docsieve.settings import Settings
from docsieve.sources import Claims, Enqueue, Entry, GetText, Source, SourcesError, poll
from scheduler.beat import POLL_TASK
from scheduler.locks import Locks, holding, make_locks
from scheduler.polls import PollLog
from worker.celery_app import queue_names
from worker.messages import FETCH_TASK, INGEST_TASK, URLS_PER_TASK, message_batches, to_message
from worker.payloads import Payloads, send_ingest
from worker.tasks import shared_fetcher, shared_store

logger = logging.getLogger(__name__)

SendTask = Callable[..., object]
Reject = Callable[[Source, str], None]


def poll_once(
    settings: Settings,
    source: Source,
    locks: Locks,
    get_text: GetText,
    claims: Claims,
    enqueue: Enqueue,
    reject: Reject | None = None,
) -> dict:
    """Poll the source, unless a poll of it is still running. A source that cannot be read for good
    (hostile or malformed XML, a 404) is reported to ``reject``; a fault that may pass (network, 5xx)
    raises, and the next scheduled poll tries again."""
    name = source.name
    with holding(locks, f"{settings.queue_prefix}:poll:{name}", settings.task_time_limit) as extend:
        if extend is None:
            return {"skipped": "a poll of this source is still running"}

        def get_text_held(url: str) -> str:
            # A sitemap index can take many fetches: each one extends the hold, so the poll that is still
            # running keeps it and the next scheduled one of this source is skipped, never overlapping.
            extend()
            return get_text(url)

        try:
            result = poll(source, get_text_held, claims, enqueue, limit=settings.max_entries_per_poll)
        except (SourcesError, FetchError) as exc:
            if isinstance(exc, FetchError) and exc.transient:
                raise
            if reject is not None:
                reject(source, str(exc))
            return {"source": name, "rejected": str(exc)}
    return {"source": name, "found": result.found, "new": result.new}


def reject_source(send_task: SendTask, settings: Settings, source: Source, reason: str) -> None:
    """A `rejected` record for a source that cannot be read: one per source and reason, however often
    the poll fails the same way (the record id comes from both)."""
    rejection = Rejection.of(source.location, reason, f"{source.location}\0{reason}")
    send_task(INGEST_TASK, args=[[to_message(rejection)]], queue=queue_names(settings)[0])


def enqueue_entries(send_task: SendTask, settings: Settings, source: Source, entries: list[Entry]) -> None:
    """Pages to fetch go to the I/O queue; files of a folder are read here and go to the CPU queue."""
    cpu_queue, io_queue = queue_names(settings)
    if source.kind != "folder":
        for urls in batched((e.location for e in entries), URLS_PER_TASK):
            send_task(FETCH_TASK, args=[urls], queue=io_queue)
        return
    files = read([e.location for e in entries], settings.max_document_bytes, root=source.location)
    messages = (to_message(item) for item in files)
    payloads = Payloads.of(settings)
    try:
        for batch in message_batches(messages, settings.submit_batch, settings.submit_max_chars):
            send_ingest(send_task, batch, cpu_queue, payloads)
    finally:
        if payloads:
            payloads.close()


def _settings() -> Settings:
    return current_app.docsieve_settings


@cache
def _locks() -> Locks:
    return make_locks(_settings())


@cache
def _poll_log() -> PollLog | None:
    return PollLog.of(_settings())


@shared_task(name=POLL_TASK)
def poll_source(source: dict) -> dict:
    """Poll the source the scheduler sent (``scheduler.beat``: the fields of a ``Source``)."""
    settings = _settings()
    polled = Source(**source)
    try:
        result = poll_once(
            settings,
            polled,
            locks=_locks(),
            get_text=shared_fetcher().get_text,
            claims=shared_store(),
            enqueue=partial(enqueue_entries, current_app.send_task, settings),
            reject=partial(reject_source, current_app.send_task, settings),
        )
    except Exception as exc:
        _remember(polled, error=f"{type(exc).__name__}: {exc}")
        raise
    _remember(polled, result=result)
    return result


def _remember(source: Source, result: dict | None = None, error: str | None = None) -> None:
    log = _poll_log()
    if log is None:
        return
    try:
        log.record(source, result, error)
    except redis.RedisError as exc:  # the poll's own outcome stands; only `status` will not show it
        logger.warning("could not record the poll of source %r in Redis: %s", source.name, exc)
