"""Celery tasks: thin wrappers over the pipeline core.

A task gets a batch of raw documents (JSON), runs ``Pipeline.process`` against the deployment's store
and returns the counts. Transient faults (database or broker unreachable, network) are retried with
exponential backoff and jitter; bad input never raises, it becomes a ``rejected`` record. A task that
still fails for good is written to the failures table by ``on_failure``, where ``docsieve status``
shows it.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import redis.exceptions
import sqlalchemy.exc
from celery import Task
from kombu.exceptions import OperationalError as BrokerError

from worker.celery_app import app
from worker.messages import INGEST_TASK, from_message
from worker.pipeline import Pipeline
from worker.settings import Settings
from worker.store import Store

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


@cache
def _pipeline() -> Pipeline:
    """One pipeline per worker process, made on first use: after the fork, so no connection is shared."""
    settings: Settings = app.conf.docsieve_settings
    return Pipeline(Store(settings.store), settings)


class IngestTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Keep the failed task's messages where a person can see them. After a hard time limit this runs
        in the pool's parent process, so it uses a store of its own, closed at once, rather than the
        per-process pipeline, whose connections children forked later would inherit."""
        messages = args[0] if args else kwargs.get("messages", [])
        messages = messages if isinstance(messages, list) else [messages]
        try:
            store = Store(app.conf.docsieve_settings.store, migrate=False)
            try:
                store.record_failure(task_id, self.name, f"{type(exc).__name__}: {exc}", messages)
            finally:
                store.close()
        except Exception:  # the store itself may be what failed; the worker log keeps the error
            self.app.log.get_default_logger().exception("could not record the failure of task %s", task_id)


@app.task(
    name=INGEST_TASK,
    base=IngestTask,
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=app.conf.docsieve_settings.retry_backoff_max,
    retry_jitter=True,
    max_retries=app.conf.docsieve_settings.max_retries,
)
def ingest_batch(self, messages: list[dict]) -> dict:
    records = _pipeline().process([from_message(m) for m in messages])
    statuses = Counter(
        "exact" if r.method and r.method.value == "exact" else "near" if r.duplicate_of else r.status.value
        for r in records
    )
    return {"received": len(messages), "stored": len(records), **statuses}
