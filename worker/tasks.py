"""Celery tasks: thin wrappers over the pipeline core.

A task gets a batch of raw documents (JSON), runs ``Pipeline.process`` against the deployment's store
and returns the counts. Transient faults (database or broker unreachable, network) are retried with
exponential backoff and jitter; bad input never raises, it becomes a ``rejected`` record. A task that
still fails for good is written to the failures table by ``on_failure``, where ``docsieve status``
shows it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import cache, wraps
from typing import TypeVar

import redis.exceptions
import sqlalchemy.exc
from celery import Task, current_app, shared_task
from celery.exceptions import Reject
from celery.signals import worker_process_init
from kombu.exceptions import OperationalError as BrokerError

from docsieve.index import open_index
from docsieve.models import Rejection
from docsieve.pipeline import Pipeline
from docsieve.readers import Item
from docsieve.settings import PREFIX, Settings
from docsieve.store import Store
from docsieve.web import Unreachable, Validators, fetch_page, known_validators, save_validators, url_key
from worker.celery_app import Retrying, queue_names
from worker.messages import FETCH_TASK, INGEST_TASK, from_message, to_message
from worker.metrics import task_metrics
from worker.payloads import PayloadLost, Payloads, send_ingest

logger = logging.getLogger(__name__)

# A URL that stays unreachable (network, 5xx, 429 after the fetcher's own retries) is tried this many
# times, a little later each time, then stored as rejected with the last error.
FETCH_ATTEMPTS = 5
PAYLOAD_LOST = (
    "the documents of this task were gone before it ran (kept DOCSIEVE_PAYLOAD_TTL seconds in Redis, "
    "or Redis lost them): submit the source again"
)
T = TypeVar("T")

TRANSIENT = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    BrokerError,
    ConnectionError,
    TimeoutError,
)


def _settings() -> Settings:
    """The settings of the app this process runs (``worker.celery_app.create_app``)."""
    return current_app.docsieve_settings


def _once(make: Callable[[], T]) -> Callable[[], T]:
    """make() once per process, however many threads of an I/O worker ask at the same moment
    (functools.cache would let each of them make its own)."""
    made: list[T] = []
    lock = threading.Lock()

    @wraps(make)
    def get() -> T:
        if not made:
            with lock:
                if not made:
                    made.append(make())
        return made[0]

    return get


@_once
def shared_fetcher():
    """One fetcher (one HTTP session, one robots cache, one rate limiter) per worker process."""
    from docsieve.fetch import Fetcher

    return Fetcher(_settings())


@_once
def _payloads_if_any() -> Payloads | None:
    """Where this process's ingest tasks keep their documents: the shared Redis, if there is one."""
    return Payloads.of(_settings())


def _payloads() -> Payloads:
    """For a task that came with a payload key: a worker without the shared Redis is misconfigured (the
    task fails, and is kept for a retry), not the documents."""
    payloads = _payloads_if_any()
    if payloads is None:
        raise RuntimeError(f"a task came with a payload key, but this worker has no shared Redis ({PREFIX}INDEX_URL)")
    return payloads


@_once
def shared_store() -> Store:
    """This process's store for small reads and writes outside the pipeline (validators, claims)."""
    return Store(_settings().store)


@cache
def _pipeline() -> Pipeline:
    """One pipeline per worker process, made on first use: after the fork, so no connection is shared."""
    settings = _settings()
    index = open_index(settings)
    return Pipeline(Store(settings.store, fingerprints=settings.fingerprint_parameters), settings, index)


@worker_process_init.connect
def _warm_up(**_) -> None:
    """Each process of a CPU worker loads what its first batch needs (store connection, candidate index,
    language model, normalization tables, fingerprint constants) when it starts, not while that batch
    waits. A store that is not reachable yet only postpones this to the first task, which retries."""
    from docsieve import language
    from docsieve.fingerprint import fingerprint_batch

    try:
        _pipeline()
        language.detect_many(["warm up"])
        fingerprint_batch(["warm up"], _settings())
    except TRANSIENT:
        current_app.log.get_default_logger().warning("store not reachable at start; the first task will connect")


class IngestTask(Task):
    """Both tasks: transient faults retried with exponential backoff and jitter, up to the app's settings
    (read from the app the task is bound to, when it is bound: nothing at import), failures kept."""

    autoretry_for = TRANSIENT
    retry_backoff = 2
    retry_jitter = True

    @property
    def max_retries(self) -> int:
        return self.app.docsieve_settings.max_retries

    @property
    def retry_backoff_max(self) -> int:
        return self.app.docsieve_settings.retry_backoff_max

    def retry(self, *args, **kwargs):
        """Celery drops a message for good (``Reject(requeue=False)``) when the retry cannot be queued,
        as when the fault is the broker itself restarting: found by reliability/restart_services.py,
        which lost every batch caught in a Redis restart. The message goes back instead (or, with the
        broker unreachable, stays unacknowledged and is restored when the worker reconnects)."""
        try:
            return super().retry(*args, **kwargs)
        except Reject as exc:
            raise Reject(exc.reason, requeue=True) from None

    def on_retry(self, exc, task_id, args, kwargs, einfo) -> None:
        """The task's state while it waits for its next attempt says which attempt failed (Celery has just
        stored the error alone)."""
        task_metrics().task_retries.labels(self.name).inc()
        attempt = self.request.retries + 1
        said = Retrying(f"attempt {attempt} of {self.max_retries + 1} failed: {type(exc).__name__}: {exc}")
        self.backend.mark_as_retry(task_id, said, einfo.traceback, request=self.request)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Keep the failed task's messages where a person can see them. After a hard time limit this runs
        in the pool's parent process, so it uses a store (and a Redis client) of its own, closed at once,
        rather than the per-process ones, whose connections children forked later would inherit. The
        documents of a payload, once kept, leave Redis."""
        task_metrics().task_failures.labels(self.name).inc()
        settings = _settings()
        payloads = Payloads.of(settings) if kwargs.get("payload") else None
        try:
            kept = _failed_messages(args, kwargs, payloads)
            try:
                store = Store(settings.store, migrate=False)
                try:
                    store.record_failure(task_id, self.name, f"{type(exc).__name__}: {exc}", kept)
                finally:
                    store.close()
            except Exception:  # the store itself may be what failed; the worker log keeps the error
                self.app.log.get_default_logger().exception("could not record the failure of task %s", task_id)
                return
            if payloads is not None and isinstance(kept, list):
                payloads.drop(kwargs["payload"])
        except Exception:  # Redis unreachable while dropping: the payload expires by itself
            self.app.log.get_default_logger().exception("could not clean up after task %s", task_id)
        finally:
            if payloads is not None:
                payloads.close()


def _failed_messages(args: tuple, kwargs: dict, payloads: Payloads | None) -> list | dict:
    """What a failed task was given, to keep for a retry: its messages, read from its payload if it had
    one. Where the payload cannot be read now (Redis unreachable, or no shared Redis here), its key and
    sources, for a retry to send again; where it is gone for good, the rejections of its sources."""
    messages = args[0] if args else kwargs.get("messages")
    key, sources = kwargs.get("payload"), [str(s) for s in kwargs.get("sources") or []]
    if messages is None and key:
        if payloads is None:
            return {"payload": key, "sources": sources}
        try:
            taken = payloads.take(key)
        except PayloadLost:
            return [_lost(key, source) for source in sources]
        except Exception:  # the documents are still there, unreachable
            return {"payload": key, "sources": sources}
        return taken if isinstance(taken, list) else []  # a result: another delivery did the work
    return messages if isinstance(messages, list) else [messages]


def _lost(key: str, source: str) -> dict:
    """The message of a rejection for a document whose payload is gone."""
    return to_message(Rejection.of(source, PAYLOAD_LOST, f"{key}\0{source}"))


@shared_task(name=INGEST_TASK, base=IngestTask, bind=True)
def ingest_batch(
    self, messages: list[dict] | None = None, payload: str | None = None, sources: list[str] | None = None
) -> dict:
    """Store a batch of documents: the messages themselves, or the ``payload`` key they wait under
    (worker/payloads.py), with their ``sources`` for the record if the payload is gone."""
    if payload is not None:
        try:
            taken = _payloads().take(payload)
        except PayloadLost:
            messages = [_lost(payload, str(source)) for source in sources or []]
        else:
            if isinstance(taken, dict):  # delivered again after it was done: its result
                return taken
            messages = taken
    messages = messages or []
    pipeline = _pipeline()
    started, merged = time.perf_counter(), pipeline.stories_merged
    outcomes = pipeline.process_each([from_message(m) for m in messages])
    records = [o.record for o in outcomes if o.record is not None]
    task_metrics().stored(records, len(outcomes) - len(records), time.perf_counter() - started)
    # Only now that the pages are stored may their next fetch be conditional.
    save_validators(pipeline.store, (_validators(m) for m in messages))
    statuses = Counter(
        "exact" if r.method and r.method.value == "exact" else "near" if r.duplicate_of else r.status.value
        for r in records
    )
    # Each message's record id, in order (`GET /v1/tasks/{id}` answers with them): stored now or before.
    ids = [o.record_id for o in outcomes]
    result = {"received": len(messages), "stored": len(records), **statuses, "records": ids}
    if pipeline.stories_merged > merged:
        result["merged"] = pipeline.stories_merged - merged
    if payload is not None:
        _payloads().done(payload, result)
    return result


@shared_task(name=FETCH_TASK, base=IngestTask, bind=True)
def fetch_urls(self, urls: list[str], attempt: int = 1) -> dict:
    """Fetch pages (I/O queue) and send what changed to the CPU queue to be ingested. URLs that may come
    back later are sent again in a task of their own, so one slow host never holds the others."""
    cpu_queue, io_queue = queue_names(_settings())
    known = known_validators(shared_store(), urls)
    messages: list[dict] = []
    unchanged = 0
    unreachable: list[Unreachable] = []
    for url in urls:
        try:
            page = fetch_page(shared_fetcher(), url, known.get(url_key(url)))
        except Unreachable as exc:
            unreachable.append(exc)
            task_metrics().fetched("unreachable")
            continue
        if page.item is None:
            unchanged += 1
            task_metrics().fetched("not_modified")
        else:
            messages.append(_message(page.item, page.validators))
            task_metrics().fetched("failed" if isinstance(page.item, Rejection) else "fetched")
    if unreachable and attempt >= FETCH_ATTEMPTS:
        for gone in unreachable:
            reason = f"unreachable after {attempt} attempts: {gone.reason}"
            logger.warning("%s: rejected: %s", gone.url, reason)
            messages.append(to_message(Rejection.of(gone.url, reason, gone.url)))
    # The pages first: if sending fails, the retry of this task fetches them again (conditionally: no
    # validators were saved), and no second chain of later attempts has been started.
    followups = [send_ingest(self.app.send_task, messages, cpu_queue, _payloads_if_any()).id] if messages else []
    if unreachable and attempt < FETCH_ATTEMPTS:
        # Well below the visibility timeout (settings check it): a countdown past it is delivered twice.
        delay = min(_settings().retry_backoff_max, 15 * 2**attempt) * random.uniform(0.5, 1.0)
        for later in unreachable:
            when = f"attempt {attempt + 1} of {FETCH_ATTEMPTS} in {delay:.0f} s"
            logger.warning("%s: unreachable, %s: %s", later.url, when, later.reason)
        again = [e.url for e in unreachable]
        followups.append(self.app.send_task(FETCH_TASK, args=[again, attempt + 1], queue=io_queue, countdown=delay).id)
    # `submit --wait` says which URLs wait for a later attempt, and why.
    deferred = [[e.url, e.reason] for e in unreachable] if attempt < FETCH_ATTEMPTS else []
    return {"urls": len(urls), "not_modified": unchanged, "followups": followups, "deferred": deferred}


def _message(item: Item, validators: Validators | None) -> dict:
    message = to_message(item)
    if validators is not None:
        v = validators
        message["validators"] = {"url": v.url, "etag": v.etag, "last_modified": v.last_modified}
    return message


def _validators(message: dict) -> Validators | None:
    v = message.get("validators") if isinstance(message, dict) else None
    if not isinstance(v, dict) or not isinstance(v.get("url"), str):
        return None
    etag, modified = v.get("etag"), v.get("last_modified")
    return Validators(
        v["url"], etag if isinstance(etag, str) else None, modified if isinstance(modified, str) else None
    )
