"""Task messages: raw documents and rejections as small JSON objects, and back.

Kept apart from the tasks so that ``docsieve submit`` imports neither the pipeline nor the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from docsieve.models import Format, RawDocument, Rejection
from docsieve.readers import Item

INGEST_TASK = "docsieve.ingest_batch"
FETCH_TASK = "docsieve.fetch_urls"
OPTIONAL = ("title", "url", "published", "language", "author", "outlet")
# A fetch task's URLs are fetched one after the other, while the I/O worker's thread pool runs many
# tasks: few URLs a task keep the pool busy and a slow host holding up only a few others.
URLS_PER_TASK = 8


def to_message(item: Item) -> dict:
    if isinstance(item, Rejection):
        return {"source": item.source, "reason": item.reason, "raw_hash": item.raw_hash}
    message = {"source": item.source, "body": item.body, "format": str(item.format)}
    for name in OPTIONAL:
        if getattr(item, name):
            message[name] = getattr(item, name)
    return message


def from_message(message: object) -> Item:
    """The item a message carries; a malformed message is a rejection, never an exception."""
    if isinstance(message, dict) and isinstance(message.get("source"), str):
        wrong = [name for name in OPTIONAL if message.get(name) is not None and not isinstance(message[name], str)]
        if wrong:
            return _malformed(message, f"{', '.join(wrong)} must be text")
        try:
            if "reason" in message:
                return Rejection(message["source"], str(message["reason"]), str(message["raw_hash"]))
            if isinstance(message.get("body"), str):
                return RawDocument(
                    source=message["source"],
                    body=message["body"],
                    format=Format(message.get("format", "scraped")),
                    title=message.get("title"),
                    url=message.get("url"),
                    published=message.get("published"),
                    language=message.get("language"),
                    author=message.get("author"),
                    outlet=message.get("outlet"),
                )
        except (KeyError, ValueError) as exc:
            return _malformed(message, f"{type(exc).__name__}: {exc}")
    return _malformed(message, "a document message needs a 'source' and a 'body' string")


def _malformed(message: object, why: str) -> Rejection:
    raw = json.dumps(message, ensure_ascii=False, sort_keys=True, default=str)
    source = message.get("source") if isinstance(message, dict) else None
    return Rejection.of(str(source or "(unknown source)"), f"malformed task message: {why}", raw)


def message_size(message: dict) -> int:
    """Characters of text in a message: what its size on the wire grows with."""
    return sum(len(value) for value in message.values() if isinstance(value, str))


def message_batches(messages: Iterable[dict], max_count: int, max_chars: int) -> Iterator[list[dict]]:
    """Task-sized batches: at most ``max_count`` messages and, unless one message is larger alone,
    ``max_chars`` characters of text."""
    batch: list[dict] = []
    size = 0
    for message in messages:
        length = message_size(message)
        if batch and (len(batch) >= max_count or size + length > max_chars):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += length
    if batch:
        yield batch
