"""Exports a data team reads: JSON Lines (records, or stories with their members nested), CSV and Parquet
(flat: one row per record, or one per member of a story). Every format streams: rows go out as the store
gives them, Parquet a row group at a time."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from docsieve.models import MergedStory, Record, Story

ROW_GROUP = 10_000  # Parquet rows held before they are written

RECORD_COLUMNS = (
    "id", "source", "status", "story_id", "duplicate_of", "method", "similarity", "jaccard", "containment",
    "content_hash", "language", "title", "text", "images", "reason", "url", "published", "published_at",
    "author", "outlet", "created_at", "changed_at",
)  # fmt: skip
MEMBER_COLUMNS = (
    "story_id", "canonical_id", "story_title", "first_published", "record_id", "is_canonical", "source", "outlet",
    "url", "published_at", "method", "similarity", "jaccard", "containment", "created_at", "merged_into",
)  # fmt: skip
FLOATS = {"similarity", "jaccard", "containment"}
TIMES = {"published_at", "first_published", "created_at", "changed_at"}


def record_row(record: Record) -> dict[str, Any]:
    row = record.to_json()
    row["images"] = list(record.images)
    row["published_at"] = record.published_at
    return {column: row[column] for column in RECORD_COLUMNS}


def member_rows(story: Story | MergedStory) -> Iterator[dict[str, Any]]:
    """One row per record of the story, its canonical first; for a story merged into another, one row that says
    which (``merged_into``; its other columns empty)."""
    if isinstance(story, MergedStory):
        yield {column: None for column in MEMBER_COLUMNS} | {"story_id": story.id, "merged_into": story.merged_into}
        return
    first = story.first_published
    for record in (story.canonical, *story.members):
        yield {
            "story_id": story.id,
            "canonical_id": story.canonical.id,
            "story_title": story.canonical.title,
            "first_published": first,
            "record_id": record.id,
            "is_canonical": record.id == story.canonical.id,
            "source": record.source,
            "outlet": record.outlet,
            "url": record.url,
            "published_at": record.published_at,
            "method": str(record.method) if record.method else None,
            "similarity": record.similarity,
            "jaccard": record.jaccard,
            "containment": record.containment,
            "created_at": record.created_at,
            "merged_into": None,
        }


def write_jsonl(items: Iterable[Record | Story | MergedStory], out: IO[str]) -> None:
    out.writelines(json.dumps(item.to_json(), ensure_ascii=False) + "\n" for item in items)


def write_csv(rows: Iterable[dict[str, Any]], columns: tuple[str, ...], out: IO[str]) -> None:
    """RFC 4180 CSV with a header; lists as JSON, times as ISO 8601, nothing as an empty field."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def write_parquet(rows: Iterable[dict[str, Any]], columns: tuple[str, ...], out: IO[bytes]) -> None:
    """Typed columns (floats, booleans, UTC timestamps, a list of image URLs), a row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, _arrow_type(pa, c)) for c in columns])
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        held: list[dict[str, Any]] = []
        for row in rows:
            held.append({c: _typed(c, row[c]) for c in columns})
            if len(held) >= ROW_GROUP:
                writer.write_table(pa.Table.from_pylist(held, schema=schema))
                held = []
        if held:  # (an export of nothing is still a file: the schema, no row group)
            writer.write_table(pa.Table.from_pylist(held, schema=schema))


def _arrow_type(pa: Any, column: str) -> Any:
    if column in FLOATS:
        return pa.float64()
    if column in TIMES:
        return pa.timestamp("us", tz="UTC")
    if column == "images":
        return pa.list_(pa.string())
    if column == "is_canonical":
        return pa.bool_()
    return pa.string()


def _typed(column: str, value: Any) -> Any:
    if column in TIMES and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value
