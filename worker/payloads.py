"""Task payloads: the documents of an ingest task wait in Redis under a key, and the task message carries
only that key and the documents' sources, so messages stay small (Celery's guidance).

With the documents inside the message, kombu's Redis transport base64-encoded every body and wrote it
into a JSON envelope, which cost `docsieve submit` much of its CPU (docs/benchmarks.md), and the
worker's parent process decoded it again before handing it to a child.
A payload is the JSON of the messages as they are, written with one SET and read with one GET.

A payload outlives a delivery: when its task is done the documents are replaced by the task's result,
so a message delivered again (a worker killed before the acknowledgement) returns that result rather
than finding nothing. Either expires ``payload_ttl`` seconds after it was queued or last taken (more
than the visibility timeout, after which an unacknowledged message comes again). A payload gone
before its task ran (a backlog older than the TTL, or a Redis that lost its data) makes its documents
``rejected`` records that say so: nothing is dropped silently. A task that fails for good keeps its
documents in the failures table (``docsieve retry``) and its payload is dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

import orjson

from docsieve.settings import Settings, url_list
from worker.messages import INGEST_TASK, message_size

T = TypeVar("T")


class PayloadLost(LookupError):
    """The documents of a task are no longer where its message says."""


class Payloads:
    """Payloads in the Redis the workers share (``index_url``'s first, when the index has several)."""

    def __init__(self, url: str, prefix: str, ttl: int) -> None:
        from worker.redis_index import connect

        self._redis = connect(url)
        self._prefix = f"{prefix}:payload:"
        self._ttl = ttl

    @classmethod
    def of(cls, settings: Settings) -> Payloads | None:
        """Payloads for a deployment with a shared Redis; None where documents travel in the messages."""
        if not settings.index_url:
            return None
        return cls(url_list(settings.index_url)[0], settings.queue_prefix, settings.payload_ttl)

    def put(self, messages: Sequence[dict]) -> str:
        key = f"{self._prefix}{uuid.uuid4().hex}"
        self._redis.set(key, orjson.dumps(messages), ex=self._ttl)
        return key

    def take(self, key: str) -> list[dict] | dict:
        """The messages waiting under ``key``, or the result of the run that already took them; either
        is kept ``ttl`` seconds more from now, for a delivery of the same message again."""
        if not key.startswith(self._prefix):
            raise PayloadLost(f"{key!r} is not a payload of this deployment ({self._prefix}*)")
        found = self._redis.getex(key, ex=self._ttl)
        if found is None:
            raise PayloadLost(key)
        return orjson.loads(found)

    def done(self, key: str, result: dict) -> None:
        """The task's result in place of its documents, for a delivery of the same message again."""
        self._redis.set(key, orjson.dumps(result), ex=self._ttl)

    def drop(self, key: str) -> None:
        """Forget a payload whose documents are kept elsewhere (a failed task's, in the failures table)."""
        self._redis.delete(key)

    def close(self) -> None:
        self._redis.close()


# Characters of text up to which documents travel in the message itself: a page or two of a fetch, or a
# one-document task, is small already, and a payload would cost it two more Redis round trips.
INLINE_CHARS = 32_000


def send_ingest(send_task: Callable[..., T], messages: list[dict], queue: str, payloads: Payloads | None) -> T:
    """Queue an ingest task (``send_task`` is the app's) for the messages: their payload's key where there
    is a shared Redis and they are more than a little text, else the messages themselves."""
    if payloads is None or sum(map(message_size, messages)) <= INLINE_CHARS:
        return send_task(INGEST_TASK, args=[messages], queue=queue)
    sources = [m.get("source") for m in messages]
    return send_task(INGEST_TASK, kwargs={"payload": payloads.put(messages), "sources": sources}, queue=queue)
