"""The store's bookkeeping, apart from records and stories: tasks that failed for good (for ``docsieve
failures`` and ``retry``), the validators of fetched URLs (conditional requests), and the entries of
polled sources already claimed. ``docsieve.store.Store`` offers these methods as its own."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from docsieve.models import batched
from docsieve.schema import CHUNK, failures, fetch_state, sha256_hex, source_entries, upsert_insert
from docsieve.validate import storable

CLAIM_STALE_AFTER = 3600.0  # seconds; far longer than a poll may run (the task time limit)


class Bookkeeping:
    """Failures, fetch validators and source claims, each read or written in a transaction of its own."""

    engine: Engine

    def record_failure(self, task_id: str, task: str, error: str, messages: list | dict) -> None:
        """A task that failed for good, with its messages (documents, or URLs to fetch) to retry, or the
        payload key and sources of documents still in Redis (worker/payloads.py)."""
        if isinstance(messages, dict):
            sources = list(messages.get("sources", []))
        else:
            sources = [m.get("source") if isinstance(m, dict) else m if isinstance(m, str) else None for m in messages]
        row = {
            "task_id": task_id,
            "task": task,
            "error": storable(error),
            "sources": storable(json.dumps(sources, ensure_ascii=False)),
            "payload": storable(json.dumps(messages, ensure_ascii=False, default=str)),
        }
        with self.engine.begin() as conn:
            conn.execute(failures.insert().values(**row))

    def claim_entries(self, source: str, keys: Sequence[str]) -> list[str]:
        """The keys never claimed before for this source (or claimed by a poll that died before sending
        them), now claimed: one atomic upsert, so two pollers racing on one source never both get one."""
        rows = {sha256_hex(key): key for key in keys}
        now = time.time()
        claimed: set[str] = set()
        with self.engine.begin() as conn:
            for chunk in batched(rows.items(), 500):
                values = [{"source": source, "key_hash": h, "key": storable(k), "claimed_at": now} for h, k in chunk]
                statement = upsert_insert(conn, source_entries).values(values)
                statement = statement.on_conflict_do_update(
                    index_elements=[source_entries.c.source, source_entries.c.key_hash],
                    set_={"claimed_at": now},
                    where=source_entries.c.sent_at.is_(None) & (source_entries.c.claimed_at < now - CLAIM_STALE_AFTER),
                )
                claimed.update(conn.scalars(statement.returning(source_entries.c.key_hash)))
        return [key for h, key in rows.items() if h in claimed]

    def mark_sent(self, source: str, keys: Sequence[str]) -> None:
        """The claimed entries' tasks are queued: they are never given out again."""
        now = time.time()
        with self.engine.begin() as conn:
            for chunk in batched({sha256_hex(key) for key in keys}, CHUNK):
                mine = (source_entries.c.source == source) & source_entries.c.key_hash.in_(chunk)
                conn.execute(source_entries.update().where(mine).values(sent_at=now))

    def release_entries(self, source: str, keys: Sequence[str]) -> None:
        """Forget claims whose entries could not be sent, so that the next poll sends them."""
        with self.engine.begin() as conn:
            for chunk in batched({sha256_hex(key) for key in keys}, CHUNK):
                conn.execute(
                    source_entries.delete().where(
                        source_entries.c.source == source, source_entries.c.key_hash.in_(chunk)
                    )
                )

    def fetch_validators(self, url: str) -> tuple[str | None, str | None]:
        """(ETag, Last-Modified) of the last fetch of a URL, for a conditional GET."""
        query = sa.select(fetch_state.c.etag, fetch_state.c.last_modified).where(
            fetch_state.c.url_hash == sha256_hex(url)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return (row[0], row[1]) if row else (None, None)

    def save_fetch_validators(self, url: str, etag: str | None, last_modified: str | None) -> None:
        values = {"url_hash": sha256_hex(url), "url": url, "etag": etag, "last_modified": last_modified}
        with self.engine.begin() as conn:
            statement = upsert_insert(conn, fetch_state).values(values)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[fetch_state.c.url_hash],
                    set_={"etag": etag, "last_modified": last_modified, "fetched_at": sa.func.now()},
                )
            )

    def recent_failures(self, limit: int = 10, include_retried: bool = True) -> list[dict]:
        query = sa.select(failures).order_by(failures.c.id.desc()).limit(limit)
        if not include_retried:
            query = query.where(failures.c.retried_at.is_(None))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def failure_counts(self) -> tuple[int, int]:
        """How many failures wait to be retried, and how many were retried."""
        query = sa.select(sa.func.count(), sa.func.count(failures.c.retried_at))
        with self.engine.connect() as conn:
            total, retried = conn.execute(query).one()
        return total - retried, retried

    def failures_to_retry(self, ids: Sequence[int] | None) -> list[dict]:
        """The failures not retried yet, in order: these ids, or all of them."""
        query = sa.select(failures).where(failures.c.retried_at.is_(None)).order_by(failures.c.id)
        if ids is not None:
            query = query.where(failures.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def mark_retried(self, failure_id: int, retry_task_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                failures.update()
                .where(failures.c.id == failure_id)
                .values(retried_at=sa.func.now(), retry_task_id=retry_task_id)
            )
