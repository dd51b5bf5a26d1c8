"""Task messages: raw documents and rejections as small JSON objects, and back.

Kept apart from the tasks so that ``docsieve submit`` imports neither the pipeline nor the store.
"""

from __future__ import annotations

from worker.models import Format, RawDocument, Rejection
from worker.readers import Item

INGEST_TASK = "docsieve.ingest_batch"


def to_message(item: Item) -> dict:
    if isinstance(item, Rejection):
        return {"source": item.source, "reason": item.reason, "raw_hash": item.raw_hash}
    message = {"source": item.source, "body": item.body, "format": str(item.format)}
    for name in ("title", "url", "published", "language"):
        if getattr(item, name):
            message[name] = getattr(item, name)
    return message


def from_message(message: dict) -> Item:
    if "reason" in message:
        return Rejection(message["source"], message["reason"], message["raw_hash"])
    return RawDocument(
        source=message["source"],
        body=message["body"],
        format=Format(message.get("format", "scraped")),
        title=message.get("title"),
        url=message.get("url"),
        published=message.get("published"),
        language=message.get("language"),
    )


def message_size(message: dict) -> int:
    """Characters of text in a message: what its size on the wire grows with."""
    return sum(len(value) for value in message.values() if isinstance(value, str))
