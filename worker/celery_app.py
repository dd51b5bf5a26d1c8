"""The Celery app of the deployment: broker, result backend and the reliability settings.

Choices, and the traps they avoid:
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only after its task
  finished, and a child killed by SIGKILL or the OOM killer gives its message back instead of losing
  it. Tasks are idempotent (deterministic record ids, decided under the store's write lock), so a
  message delivered twice creates nothing twice.
- ``worker_prefetch_multiplier=1``: with late acks, each pool process reserves only the message it
  runs, so a slow task never keeps other work hostage.
- Redis ``visibility_timeout`` (settings, 2 h) exceeds the task hard time limit and the longest retry
  delay, so no message is redelivered while it is legitimately running or waiting (kombu#337).
  No task is ever scheduled with an ETA or countdown beyond it.
- Soft and hard time limits: a stuck task ends and fails; its messages are kept in the failures table
  (``task_acks_on_failure_or_timeout`` then acknowledges it, so it does not loop).
- JSON only (UTF-8, not \\u-escaped), small messages: documents travel in batches of at most
  ``submit_batch`` documents and ``submit_max_chars`` characters of text.
- The broker's Redis must not evict keys: run it with ``maxmemory-policy noeviction`` (docker-compose
  does) or queued messages can vanish.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from celery import Celery
from kombu import Queue
from kombu.serialization import register

from docsieve.settings import Settings

SERIALIZER = "docsieve-json"


def _register_serializer() -> None:
    """JSON that keeps non-ASCII text as UTF-8: kombu's json escapes every Arabic letter as \\uXXXX,
    three times the bytes to encode, send (base64 on top, on Redis) and decode. Written and read by
    orjson: the standard library's encoder took a large part of `submit` (docs/benchmarks.md)."""
    register(
        SERIALIZER,
        orjson.dumps,
        orjson.loads,
        content_type="application/x-docsieve-json",
        content_encoding="utf-8",
    )


class Retrying(Exception):
    """What the result backend keeps of a task waiting for its next attempt, for `docsieve submit --wait`
    and Flower: which attempt failed, and why. Celery keeps only the error, the same at every retry, so
    that a watcher could not tell one retry from the next (``worker.tasks.IngestTask.on_retry``)."""


def queue_names(settings: Settings) -> tuple[str, str]:
    """The CPU queue (extract, fingerprint, decide, store) and the I/O queue (fetching)."""
    return f"{settings.queue_prefix}.cpu", f"{settings.queue_prefix}.io"


TASK_MODULES = "docsieve.tasks"  # entry points: modules of tasks a worker loads (this package's, the scheduler's)


def task_modules() -> list[str]:
    """The modules a worker imports for its tasks: ``worker.tasks`` and those other installed packages
    register (the scheduler's poll task, which the fetchers run), so this package names none of theirs."""
    from importlib.metadata import entry_points

    return ["worker.tasks", *sorted({e.value for e in entry_points(group=TASK_MODULES)} - {"worker.tasks"})]


class DocsieveApp(Celery):
    """Celery with docsieve's settings on the app, not in ``app.conf``: a worker publishes its conf (``celery
    inspect conf``, Flower's Config tab), and the settings hold the store's and Redis's URLs with their
    passwords. They go along when the app is pickled into a pool process started by spawn (macOS's
    default), which Celery rebuilds from its constructor's keywords alone."""

    def __init__(self, *args: Any, docsieve_settings: Settings, **kwargs: Any) -> None:
        _register_serializer()  # here, so that a pool process that unpickled the app can send tasks too
        self.docsieve_settings = docsieve_settings
        super().__init__(*args, **kwargs)

    def __reduce_keys__(self) -> dict[str, Any]:
        return {**super().__reduce_keys__(), "docsieve_settings": self.docsieve_settings}


def create_app(settings: Settings) -> Celery:
    cpu, io = queue_names(settings)
    app = DocsieveApp(
        "docsieve",
        broker=settings.broker_url,
        backend=settings.result_backend,
        include=task_modules(),
        docsieve_settings=settings,
    )
    app.conf.update(
        task_serializer=SERIALIZER,
        result_serializer="json",
        accept_content=[SERIALIZER, "json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,  # a task that failed for good is in the failures table
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        task_queues=(Queue(cpu), Queue(io)),
        task_default_queue=cpu,
        # Fetching and polling wait on the network: the I/O queue, served by a thread pool.
        task_routes={
            "docsieve.fetch_urls": {"queue": io},
            "docsieve.poll_source": {"queue": io},
            "docsieve.*": {"queue": cpu},
        },
        result_expires=24 * 3600,
        task_track_started=True,
        worker_send_task_events=True,  # for Flower and `docsieve status`
        task_send_sent_event=True,
    )
    return app


@cache
def default_app() -> Celery:
    """The app of this process, from the DOCSIEVE_ settings, made once on first use (``celery -A worker``
    and the worker's pool processes get it through ``worker.app``); nothing is read at import."""
    return create_app(Settings.from_env())
