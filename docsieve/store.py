"""Storage: records, their stories and the persistent candidate index, in SQLite (embedded) or
PostgreSQL, through SQLAlchemy Core. The tables are described in ``docsieve/schema.py`` and built by the
Alembic migrations in ``docsieve/migrations``; failures, fetch validators and source claims are
``docsieve/bookkeeping.py``'s."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol, overload

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from docsieve.bookkeeping import Bookkeeping
from docsieve.dates import Slots, dated
from docsieve.figures import Figures
from docsieve.fingerprint import (
    SETS_AT_ONCE,
    bin_minima,
    pack_keys,
    shingle_sets,
    stored_word_sets,
    text_day_slots,
    text_figures,
    unpack_keys,
)
from docsieve.index import IndexRow, index_time, sketch_row
from docsieve.models import MergedStory, Method, Record, Sketch, Status, Story, batched
from docsieve.rewrites import RewriteScores
from docsieve.schema import (
    CHUNK,
    contains,
    deletions,
    meta,
    metadata,
    records,
    shingle_count_snapshots,
    shingle_counts,
    stories,
    upsert_insert,
)
from docsieve.settings import WORD_STEMS, Settings, StoreError, redacted
from docsieve.stories import Book, Link, Placement, rank_key
from docsieve.templates import ShingleCounts


class Copy(Protocol):
    """The driver's COPY (psycopg's, of the deployment; the core names no deployment library)."""

    def set_types(self, types: Sequence[str]) -> None: ...

    def write_row(self, row: Sequence[object]) -> None: ...


RECORD_COLUMNS = [c for c in records.c if c.name not in ("shingles", "index_keys", "sketch", "seq")]
# Any constant: the advisory lock that serializes deciders on PostgreSQL, as BEGIN IMMEDIATE does on SQLite.
WRITE_LOCK = 0x646F6373
MIGRATIONS = Path(__file__).with_name("migrations")
BLOB_PIECE = 1 << 20  # bytes of a template-count snapshot written to SQLite at a time
SCHEMA_REVISION = "0018"  # the newest migration; a test holds it equal to Alembic's head
KNOWN_REVISIONS = frozenset(path.name[:4] for path in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
SQLITE_HEADER = b"SQLite format 3\0"


@dataclass(frozen=True, slots=True)
class NewRecord:
    record: Record
    shingles: np.ndarray | None = None
    keys: np.ndarray | None = None  # candidate-index keys of this record
    minima: np.ndarray | None = None  # bin minima of the shingles (not stored: made again on reading)


class Transaction:
    """Queries on one connection: a plain read, or the decide-and-write section under the write lock."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        # Records written before the write lock (``stage``) by id, with the seq that marks them till they are placed.
        self.staged: dict[str, int] = {}
        # The template-count row written before the lock (``stage_shingle_counts``): its marking seq and its blob.
        self.staged_counts: tuple[int, bytes] | None = None
        # A template-count snapshot written before the lock (``stage_count_snapshot``): the seq that marks it.
        self.staged_snapshot: int | None = None
        # Stories written before the lock (``stage_stories``): id -> canonical record id.
        self.staged_stories: dict[str, str] = {}
        # The placing UPDATE's parameters made before the lock (``prepare_placing``), for that list of new records.
        self._placing: tuple[Sequence[NewRecord], tuple[str, ...]] | None = None
        self.locked_at: float | None = None  # when ``try_write_lock`` took the write lock (perf_counter)

    def try_write_lock(self) -> bool:
        """PostgreSQL, before the write lock: take it if no one holds it, without waiting (held to the transaction's
        end, as ``write_locked`` takes it, which then finds it held)."""
        if self.locked_at is None and self.conn.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(WRITE_LOCK))):
            self.locked_at = time.perf_counter()
        return self.locked_at is not None

    def _among(self, column: sa.Column, values: list[str]) -> sa.ColumnElement[bool]:
        """``column IN values``; on PostgreSQL as ``= ANY(array)``, one parameter instead of hundreds (a
        batch's lookups by id and by hash, three times quicker: docs/benchmarks.md)."""
        if self.conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY  # loaded with the dialect already

            array = ARRAY(sa.String)
            return column == sa.any_(sa.cast(sa.bindparam("values", list(values), type_=array), array))
        return column.in_(values)

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of the ids are stored (records this transaction staged are not, yet)."""
        found: set[str] = set()
        for chunk in batched(ids, CHUNK):
            query = sa.select(records.c.id).where(self._among(records.c.id, chunk), records.c.seq > 0)
            found.update(self.conn.scalars(query))
        return found

    def by_hash(self, hashes: Iterable[str]) -> dict[str, str]:
        """For each content hash already stored, the earliest stored record with it."""
        found: dict[str, str] = {}
        for chunk in batched(set(hashes), CHUNK):
            query = (
                sa.select(records.c.content_hash, records.c.id)
                .where(
                    self._among(records.c.content_hash, chunk),
                    records.c.status != Status.REJECTED,
                    records.c.seq > 0,  # not this transaction's staged records
                )
                .order_by(records.c.seq.desc())
            )
            found.update(self.conn.execute(query).all())  # the earliest comes last and wins
        return found

    def stories_of(self, ids: Iterable[str], policy: str) -> tuple[dict[str, str], dict[str, list[Placement]]]:
        """The stories of these stored records: each one's canonical, and all its records in arrival order
        (one query, quicker than one for the records, one for their canonicals and one for the members:
        docs/benchmarks.md)."""
        canonical_of: dict[str, str] = {}
        members: dict[str, list[Placement]] = {}
        asked = records.alias("asked")
        for chunk in batched(set(ids), CHUNK):
            stories_asked = sa.select(asked.c.story_id).where(self._among(asked.c.id, chunk))
            query = (
                sa.select(*PLACEMENT_COLUMNS, stories.c.canonical_id)
                .join_from(records, stories, stories.c.id == records.c.story_id)
                .where(records.c.story_id.in_(stories_asked))
                .order_by(records.c.seq)
            )
            done = set(members)  # a story of two chunks is read whole with the first
            for row in self.conn.execute(query):
                if row.story_id not in done:
                    canonical_of[row.story_id] = row.canonical_id
                    members.setdefault(row.story_id, []).append(_placement(row, policy))
        return canonical_of, members

    def members(self, story_ids: Iterable[str], policy: str) -> dict[str, list[Placement]]:
        """Every record of each story, in arrival order."""
        found: dict[str, list[Placement]] = {}
        for chunk in batched(set(story_ids), CHUNK):
            found.update((story, []) for story in chunk)
            query = sa.select(*PLACEMENT_COLUMNS).where(self._among(records.c.story_id, chunk)).order_by(records.c.seq)
            for row in self.conn.execute(query):
                found[row.story_id].append(_placement(row, policy))
        return found

    def roundups(self, ids: Iterable[str]) -> set[str]:
        """Which of these records hold other stories."""
        found: set[str] = set()
        for chunk in batched(set(ids), CHUNK):
            query = sa.select(contains.c.record_id).where(self._among(contains.c.record_id, chunk), contains.c.roundup)
            found.update(self.conn.scalars(query))
        return found

    def held_stories(self, ids: Iterable[str]) -> dict[str, set[str]]:
        """The stories each of these records holds (its ``contains`` links)."""
        found: dict[str, set[str]] = {}
        for chunk in batched(set(ids), CHUNK):
            query = sa.select(contains.c.record_id, contains.c.story_id).where(self._among(contains.c.record_id, chunk))
            for record_id, story_id in self.conn.execute(query):
                found.setdefault(record_id, set()).add(story_id)
        return found

    def taken_story_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of these ids name a story, but those this transaction staged (``stage_stories``): they are its own."""
        found: set[str] = set()
        for chunk in batched(set(ids), CHUNK):
            found.update(self.conn.scalars(sa.select(stories.c.id).where(self._among(stories.c.id, chunk))))
        return found - self.staged_stories.keys()

    def records(self, ids: Iterable[str]) -> dict[str, Record]:
        """Records by id, the ones stored."""
        found: dict[str, Record] = {}
        for chunk in batched(set(ids), CHUNK):
            query = sa.select(*RECORD_COLUMNS).where(self._among(records.c.id, chunk))
            found.update((row.id, _record(row)) for row in self.conn.execute(query))
        return found

    def summaries(self, ids: Iterable[str]) -> dict[str, tuple[int, np.ndarray]]:
        """Each stored record's shingle count and bin minima (what rules most candidates out), from its
        sketch; records stored before sketches were kept give theirs from the set they kept."""
        found: dict[str, tuple[int, np.ndarray]] = {}
        old: list[tuple[str, np.ndarray]] = []
        for chunk in batched(set(ids), CHUNK):
            query = sa.select(records.c.id, records.c.sketch, records.c.shingles).where(
                self._among(records.c.id, chunk), records.c.index_keys.is_not(None)
            )
            for record_id, sketch, shingles in self.conn.execute(query):
                if sketch is not None:
                    values = np.frombuffer(sketch, dtype=np.uint32)
                    found[record_id] = (int(values[0]), values[1:])
                elif shingles is not None:
                    old.append((record_id, np.frombuffer(shingles, dtype=np.uint32)))
        for (record_id, shingles), minima in zip(old, bin_minima([s for _, s in old]), strict=True):
            found[record_id] = (len(shingles), minima)
        return found

    def sketches(self, ids: Iterable[str], settings: Settings) -> dict[str, Sketch]:
        """Shingle sets (and their bin minima) of stored records: made again from their texts with the
        store's fingerprint settings, a few hundred at a time (a batch can ask for thousands, whose texts and
        the arrays that shingle them would all be held at once); a record stored with its set, by an older
        docsieve, gives that one."""
        found: dict[str, Sketch] = {}
        for chunk in batched(set(ids), SETS_AT_ONCE):
            query = sa.select(records.c.id, records.c.shingles, records.c.text).where(
                self._among(records.c.id, chunk),
                records.c.index_keys.is_not(None),  # a stored text: not a rejection, not taken down
            )
            rows: list[tuple[str, np.ndarray]] = []
            texts: list[tuple[str, str]] = []
            for record_id, blob, text in self.conn.execute(query):
                if blob is not None:
                    rows.append((record_id, np.frombuffer(blob, dtype=np.uint32)))
                elif text is not None:
                    texts.append((record_id, text))
            rows += zip([i for i, _ in texts], shingle_sets([t for _, t in texts], settings), strict=True)
            minima = bin_minima([shingles for _, shingles in rows])
            found.update((i, Sketch(i, shingles, m)) for (i, shingles), m in zip(rows, minima, strict=True))
        return found

    def texts(self, ids: Iterable[str]) -> dict[str, str]:
        """Stored records' texts; a record without one (a rejection, a takedown) has none."""
        found: dict[str, str] = {}
        for chunk in batched(set(ids), CHUNK):
            query = sa.select(records.c.id, records.c.text).where(
                self._among(records.c.id, chunk), records.c.text.is_not(None)
            )
            found.update((i, t) for i, t in self.conn.execute(query) if t)
        return found

    def word_sets(self, ids: Iterable[str], stems_of: str) -> dict[str, np.ndarray]:
        """The rewrite stage's word ids of stored records (docsieve/rewrites.py), made again from their texts with
        the store's stems (``Store.word_stems``); a record without a stored text (taken down) has none."""
        texts = self.texts(ids)
        return dict(zip(texts, stored_word_sets(list(texts.values()), stems_of), strict=True))

    def day_slots(self, ids: Iterable[str]) -> dict[str, Slots]:
        """The weekday slots of stored records' texts, "this day" dated by their publication (docsieve/dates.py);
        a record without a text has none."""
        found: dict[str, tuple[str, str | None]] = {}
        for chunk in batched(set(ids), CHUNK):
            query = sa.select(records.c.id, records.c.text, records.c.published).where(
                self._among(records.c.id, chunk), records.c.text.is_not(None)
            )
            found.update((i, (t, p)) for i, t, p in self.conn.execute(query) if t)
        made = text_day_slots([t for t, _ in found.values()])
        return {i: dated(s, p) for (i, (_, p)), s in zip(found.items(), made, strict=True)}

    def figures(self, ids: Iterable[str]) -> dict[str, Figures]:
        """The figures of stored records' texts (docsieve/figures.py); a record without a text has none."""
        texts = self.texts(ids)
        return dict(zip(texts, text_figures(list(texts.values())), strict=True))

    def stage_stories(self, book: Book, now: datetime) -> None:
        """PostgreSQL, before the write lock: the stories the batch's decision there founds that are named after one of
        the records it staged and have one as their canonical, written with no ``changed_seq``: that record's seq
        says the story is new (``stories_changed_since``). ``save_stories`` then writes under the lock the rest
        (a story named at random, or after a stored record: a member a take-over leaves) and what the decision made
        there founds otherwise; for a lone worker most of a batch's stories are written before the lock (their COPY
        took 6 µs a document of its hold: docs/benchmarks.md). Nobody else sees them before the commit, and this
        transaction's reads find no record in them: their records are staged without a place. No other writer
        founds a story of such a name meanwhile, nor waits on one: it would need the record, which nobody else stores
        till this transaction ends (``stage``). A stored record's name is another matter: a writer making the same
        member leave, or a takedown, may found that story too, and the lock's holder would then wait on the row
        staged here (a review found that deadlock)."""
        if self.conn.dialect.name != "postgresql":
            return
        founded = {s: c for s in book.new_stories if s in self.staged and (c := book.canonical_of[s]) in self.staged}
        if fresh := self._unstage(founded):  # a decision made again before the lock: what it founds otherwise
            self._copy_stories(fresh, now, None)
        self.staged_stories = founded

    def _unstage(self, founded: dict[str, str]) -> dict[str, str]:
        """Delete the staged stories that a decision (``founded``: id -> canonical) does not found as they were staged;
        return the ones it founds that are not staged as they are (to be written)."""
        staged, self.staged_stories = self.staged_stories, {}
        if gone := [s for s, canonical in staged.items() if founded.get(s) != canonical]:
            self.conn.execute(stories.delete().where(self._among(stories.c.id, gone)))
        return {s: c for s, c in founded.items() if staged.get(s) != c}

    def _copy_stories(self, founded: dict[str, str], now: datetime, seq: int | None) -> None:
        """New stories' rows (id -> canonical) by binary COPY, as records: SQLAlchemy's executemany of a batch's
        ~500 new stories took 18 ms under the lock."""
        columns = "id, canonical_id, created_at, changed_at, changed_seq"
        with self._copy(f"COPY stories ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["varchar", "varchar", "timestamptz", "timestamptz", "int8"])
            for story, canonical in founded.items():
                copy.write_row((story, canonical, now, now, seq))

    def save_stories(self, book: Book, now: datetime, seq: int | None = None) -> None:
        """What a batch's decisions changed besides the records it inserts: stories founded (but those
        ``stage_stories`` wrote as they stand), stories whose canonical, members or links changed (their
        ``changed_at`` moves, so ``export --since`` sees them), stored records placed anew, and what holds what.
        ``now`` is the batch's time (see ``Transaction.now``); ``seq``, its last record's, goes with every story it
        changed (``changed_seq``; a takedown says what it changed by its own seq)."""
        # Those staged before the lock are written again only where the decision under it differs.
        new_stories = self._unstage({s: book.canonical_of[s] for s in book.new_stories})
        changed_stories = {s: book.canonical_of[s] for s in book.changed_stories - book.new_stories}
        if new_stories and self.conn.dialect.name == "postgresql":
            self._copy_stories(new_stories, now, seq)
        elif new_stories:  # through the driver, as records are (SQLAlchemy's handling of each row took most)
            stamp = _sqlite_time(now)
            self.conn.exec_driver_sql(
                "INSERT INTO stories (id, canonical_id, created_at, changed_at, changed_seq) VALUES (?, ?, ?, ?, ?)",
                [(k, v, stamp, stamp, seq) for k, v in new_stories.items()],
            )
        changed_seq = {} if seq is None else {"changed_seq": seq}
        for story, canonical in changed_stories.items():
            self.conn.execute(
                stories.update()
                .where(stories.c.id == story)
                .values(canonical_id=canonical, changed_at=now, **changed_seq)
            )
        # A story that one of the batch's records joined or holds keeps its row: the record says it changed, by its
        # seq and its time (``stories_changed_since``, ``_changed_since``, ``_stories``). Stamping each such story
        # took 8 µs a document of a lone worker's hold (docs/benchmarks.md).
        told = {p.story_id for r in book.new_records if (p := book.placements.get(r)) is not None} | {
            k.story_id for k in book.links if k.record_id in book.new_records
        }
        touched = book.touched_stories - book.new_stories - book.changed_stories - told
        if touched and self.conn.dialect.name == "postgresql":
            for chunk in batched(touched, CHUNK):
                self.conn.execute(stories.update().where(stories.c.id.in_(chunk)).values(changed_at=now, **changed_seq))
        elif touched:
            stamp = _sqlite_time(now)
            self.conn.exec_driver_sql(
                "UPDATE stories SET changed_at = ?, changed_seq = coalesce(?, changed_seq) WHERE id = ?",
                [(stamp, seq, t) for t in touched],
            )
        changed = [book.placements[r] for r in book.changed_records]
        if changed:
            update = (
                records.update()
                .where(records.c.id == sa.bindparam("b_id"))
                .values(
                    story_id=sa.bindparam("b_story"),
                    status=sa.bindparam("b_status"),
                    duplicate_of=sa.bindparam("b_of"),
                    method=sa.bindparam("b_method"),
                    similarity=sa.bindparam("b_similarity"),
                    jaccard=sa.bindparam("b_jaccard"),
                    containment=sa.bindparam("b_containment"),
                    changed_at=now,
                )
            )
            self.conn.execute(update, [_placement_values(p, book.canonical_of) for p in changed])
        if book.merged_into:
            self._merge_stories(book.merged_into, now, seq)
        if book.links:
            rows: dict[tuple[str, str], Link] = {}
            for k in book.links:  # one row a pair; a roundup's link wins over a copy's
                if (k.record_id, k.story_id) not in rows or k.roundup:
                    rows[(k.record_id, k.story_id)] = k
            self.conn.execute(
                upsert_insert(self.conn, contains).on_conflict_do_nothing(),
                [
                    {
                        "record_id": k.record_id,
                        "story_id": k.story_id,
                        "containment": k.containment,
                        "roundup": k.roundup,
                        "created_at": now,
                    }
                    for k in rows.values()
                ],
            )
        for into in set(book.merged_into.values()):  # a record that held a story merged into its own holds nothing
            own = sa.select(records.c.id).where(records.c.story_id == into)
            self.conn.execute(contains.delete().where(contains.c.story_id == into, contains.c.record_id.in_(own)))

    def _merge_stories(self, merged_into: dict[str, str], now: datetime, seq: int | None) -> None:
        """Stories merged into others (``Book._merge``; their records are placed already): each keeps its row, saying
        where it went, and so do those merged into it before; what held it holds the other, once; the stories of the
        records holding it change."""
        changed_seq = {} if seq is None else {"changed_seq": seq}
        for gone, into in merged_into.items():
            holders = sa.select(contains.c.record_id).where(contains.c.story_id == gone).scalar_subquery()
            self.conn.execute(
                stories.update()
                .where(stories.c.id.in_(sa.select(records.c.story_id).where(records.c.id.in_(holders))))
                .values(changed_at=now, **changed_seq)
            )
            self.conn.execute(
                stories.update()
                .where(sa.or_(stories.c.id == gone, stories.c.merged_into == gone))
                .values(merged_into=into, changed_at=now, **changed_seq)
            )
            holding = sa.select(contains.c.record_id).where(contains.c.story_id == into)
            self.conn.execute(contains.delete().where(contains.c.story_id == gone, contains.c.record_id.in_(holding)))
            self.conn.execute(contains.update().where(contains.c.story_id == gone).values(story_id=into))

    @staticmethod
    def now() -> datetime:
        """The time a batch's changes are stamped with: taken under the write lock, to the microsecond
        (SQLite's CURRENT_TIMESTAMP has whole seconds, and PostgreSQL's now() is when the transaction
        began, which can be before another's commit)."""
        return datetime.now(UTC)

    def index_rows(self, after_seq: int) -> Iterator[IndexRow]:
        """(seq, id, keys, time, arrival, sketch) of the records stored after ``after_seq``, in order; the time
        is ``index.index_time`` of each, the arrival when it was stored (seconds). The sketch goes into the
        index with the keys: a segment made from the store's rows (a rebuild, other processes' records) without
        them sent every lookup's candidates to the store for theirs (docs/benchmarks.md)."""
        query = (
            sa.select(
                records.c.seq,
                records.c.id,
                records.c.index_keys,
                records.c.published_at,
                records.c.created_at,
                records.c.sketch,
            )
            .where(records.c.seq > after_seq, records.c.index_keys.is_not(None))
            .order_by(records.c.seq)
        )
        for seq, record_id, keys, published, arrived, sketch in self.conn.execute(
            query.execution_options(yield_per=10000)
        ):
            yield seq, record_id, keys, *_index_clocks(published, arrived), sketch

    def newest_times(self, after_seq: int) -> tuple[int | None, int | None]:
        """The newest publication time and the newest arrival (seconds), as ``index_rows`` gives them, of the
        records stored after ``after_seq``: a row is dated where its time is not its arrival."""
        query = sa.select(records.c.published_at, records.c.created_at).where(
            records.c.seq > after_seq, records.c.index_keys.is_not(None)
        )
        dated: int | None = None
        newest: int | None = None
        for published, arrived in self.conn.execute(query.execution_options(yield_per=10000)):
            when, at = _index_clocks(published, arrived)
            if when != at and (dated is None or when > dated):
                dated = when
            if newest is None or at > newest:
                newest = at
        return dated, newest

    def id_at(self, seq: int) -> str | None:
        return self.conn.scalar(sa.select(records.c.id).where(records.c.seq == seq))

    def shingle_count_rows(self, after_seq: int) -> Iterator[tuple[int, bytes]]:
        query = sa.select(shingle_counts.c.seq, shingle_counts.c.counts).where(shingle_counts.c.seq > after_seq)
        yield from self.conn.execute(query.order_by(shingle_counts.c.seq).execution_options(yield_per=100))

    def count_snapshot(self, after_seq: int) -> tuple[int, bytes] | None:
        """The newest template-count snapshot, if it covers rows after ``after_seq``."""
        query = (
            sa.select(shingle_count_snapshots.c.seq, shingle_count_snapshots.c.counts)
            .where(shingle_count_snapshots.c.seq > after_seq)
            .order_by(shingle_count_snapshots.c.seq.desc())
            .limit(1)
        )
        row = self.conn.execute(query).first()
        return (int(row.seq), bytes(row.counts)) if row else None

    def stage_count_snapshot(self, blob: bytes | memoryview) -> None:
        """PostgreSQL, before the write lock: a template-count snapshot, under a negative seq that no reader counts
        (nor sees: the transaction places it, or drops it, before it commits). Written under the lock, a snapshot of
        a 300,000-record store's counts (41 MB) held it 0.25 s; placed there, it is a one-row UPDATE."""
        mark = -int(np.random.default_rng().integers(1, 1 << 62))
        self.conn.execute(shingle_count_snapshots.insert().values(seq=mark, counts=blob))
        self.staged_snapshot = mark

    def save_count_snapshot(self, seq: int, blob: bytes | memoryview) -> bool:
        """Under the lock: the counts as of row ``seq`` (placed, if ``stage_count_snapshot`` wrote them); the rows and
        older snapshots it covers go, all but row ``seq`` itself: SQLite numbers a new row after the largest there,
        so the newest stays to keep the numbers rising. False, and nothing written (a staged one dropped), where a
        snapshot as new is stored already: another process wrote one meanwhile (two at one seq would clash on the
        key)."""
        staged, self.staged_snapshot = self.staged_snapshot, None
        if self.newest_count_snapshot() >= seq:
            if staged is not None:
                self.conn.execute(shingle_count_snapshots.delete().where(shingle_count_snapshots.c.seq == staged))
            return False
        if staged is not None:
            placed = self.conn.execute(
                shingle_count_snapshots.update().where(shingle_count_snapshots.c.seq == staged).values(seq=seq)
            )
            if placed.rowcount != 1:
                raise RuntimeError("the template-count snapshot staged before the lock was not found")
        elif self.conn.dialect.name == "sqlite":
            # Written into the row a piece at a time: bound as a parameter, the whole blob was copied by the driver
            # for SQLite (48 MB more at the peak of an ingest into a 1,000,000-record store; bench/peaks.py).
            self.conn.execute(shingle_count_snapshots.insert().values(seq=seq, counts=sa.func.zeroblob(len(blob))))
            driver = self.conn.connection.driver_connection
            assert driver is not None  # a connection in use has its driver's
            dbapi = self.conn.dialect.loaded_dbapi
            try:  # past SQLAlchemy: its errors raised as SQLAlchemy's, as ``_copy`` does (a command's line, a retry)
                with driver.blobopen("shingle_count_snapshots", "counts", seq) as into:  # seq is SQLite's rowid here
                    view = memoryview(blob)
                    for start in range(0, len(view), BLOB_PIECE):
                        into.write(view[start : start + BLOB_PIECE])
            except dbapi.Error as error:
                raise sa.exc.DBAPIError.instance("blobopen", None, error, dbapi.Error) from error
        else:
            self.conn.execute(shingle_count_snapshots.insert().values(seq=seq, counts=blob))
        self.conn.execute(shingle_count_snapshots.delete().where(shingle_count_snapshots.c.seq < seq))
        # Not a row this transaction staged (a negative seq till ``add_shingle_counts`` places it).
        self.conn.execute(shingle_counts.delete().where(shingle_counts.c.seq < seq, shingle_counts.c.seq > 0))
        return True

    def newest_count_snapshot(self) -> int:
        """The seq of the newest template-count snapshot (0: none)."""
        return int(self.conn.scalar(NEWEST_COUNT_SNAPSHOT) or 0)

    def newest_count_snapshot_size(self) -> int:
        """The bytes of the newest template-count snapshot (0: none), its blob not read."""
        query = sa.select(sa.func.length(shingle_count_snapshots.c.counts)).where(
            shingle_count_snapshots.c.seq == NEWEST_COUNT_SNAPSHOT.scalar_subquery()
        )
        return int(self.conn.scalar(query) or 0)

    def counted_since_snapshot(self) -> int:
        """Ids in the template-count rows after the newest snapshot, from the rows' lengths (no ids decoded)."""
        size = sa.func.coalesce(sa.func.sum(sa.func.length(shingle_counts.c.counts)), 0)
        query = sa.select(size).where(shingle_counts.c.seq > NEWEST_COUNT_SNAPSHOT.scalar_subquery())
        return int(self.conn.scalar(query) or 0) // 4

    def stage_shingle_counts(self, blob: bytes | None) -> None:
        """PostgreSQL, before the write lock: the template-count row the batch's decision before the lock would
        add, under a negative seq that no reader counts (they read rows after a seq of at least 0). Writing it
        there (a megabyte of ids for 512 articles, into TOAST) took a fifth of a lone worker's hold; placing it
        under the lock is a one-row UPDATE that leaves the blob where it is (docs/benchmarks.md). A batch decided
        again before the lock stages its new row in place of the first (None: it adds none)."""
        if self.staged_counts is not None:
            mark, staged = self.staged_counts
            if blob == staged:
                return
            self.conn.execute(shingle_counts.delete().where(shingle_counts.c.seq == mark))
            self.staged_counts = None
        if blob is None:
            return
        mark = -int(np.random.default_rng().integers(1, 1 << 62))
        self.conn.execute(shingle_counts.insert().values(seq=mark, counts=blob))
        self.staged_counts = (mark, blob)

    def add_shingle_counts(self, blob: bytes | None) -> int | None:
        """Under the lock: the row of the ids a batch adds to the template counts (None: it adds none); returns
        its sequence number. A row staged before the lock is placed if it holds the same ids, else replaced."""
        if self.staged_counts is not None:
            mark, staged = self.staged_counts
            self.staged_counts = None
            if blob == staged:
                placed = self.conn.execute(
                    shingle_counts.update()
                    .where(shingle_counts.c.seq == mark)
                    .values(seq=sa.func.nextval(sa.func.pg_get_serial_sequence("shingle_counts", "seq")))
                    .returning(shingle_counts.c.seq)
                ).scalar_one_or_none()
                if placed is None:
                    raise RuntimeError("the template-count row staged before the lock was not found")
                return int(placed)
            self.conn.execute(shingle_counts.delete().where(shingle_counts.c.seq == mark))
        if blob is None:
            return None
        key = self.conn.execute(shingle_counts.insert().values(counts=blob)).inserted_primary_key
        assert key is not None  # an INSERT of one row
        return int(key[0])

    def last_seq(self) -> int:
        """The seq of the last stored record (not of this transaction's staged ones)."""
        query = sa.select(sa.func.coalesce(sa.func.max(records.c.seq), 0)).where(records.c.seq > 0)
        return int(self.conn.scalar(query) or 0)

    def stored_since(self, seq: int) -> dict[str, str]:
        """The records stored after this seq: id -> content hash (what others stored while a batch waited)."""
        query = sa.select(records.c.id, records.c.content_hash).where(records.c.seq > seq)
        return {row.id: row.content_hash for row in self.conn.execute(query)}

    def stories_changed_since(self, seq: int) -> set[str]:
        """The stories the batches stored after this seq founded or changed: those they stamped (``changed_seq``)
        and those their records joined or hold (``save_stories`` stamps no more). Every worker that writes the
        store stamps so (since migration 0015 no older one may run beside a newer: README, "Upgrading")."""
        since = sa.select(records.c.id).where(records.c.seq > seq)
        changed = sa.union(
            sa.select(stories.c.id).where(stories.c.changed_seq > seq),
            sa.select(records.c.story_id).where(records.c.seq > seq, records.c.story_id.is_not(None)),
            sa.select(contains.c.story_id).where(contains.c.record_id.in_(since)),
        )
        return set(self.conn.scalars(changed))

    def written_through(self) -> tuple[int, int]:
        """The seqs of the last stored record and of the last takedown: every change to stories comes with one
        or the other, so while both stay, nothing a decision read has changed (``Pipeline.store_prepared``)."""
        last_record = sa.select(sa.func.max(records.c.seq)).where(records.c.seq > 0).scalar_subquery()
        last_deletion = sa.select(sa.func.max(deletions.c.seq)).scalar_subquery()
        row = self.conn.execute(sa.select(last_record, last_deletion)).one()
        return int(row[0] or 0), int(row[1] or 0)

    def stage(self, drafts: Sequence[NewRecord]) -> None:
        """PostgreSQL, before the write lock: the records a batch will store, written with their text, keys and
        sketches but not their place (status, story, link), under a negative seq that nothing reads as stored.
        ``insert`` then places them under the lock with one UPDATE, which costs a fifth of writing them there
        (docs/scaling.md). Nobody else sees them before the commit.

        Writers stage ids in one order (sorted), so two staging the same ids wait on each other at most one
        way. A writer that meets an id another has staged waits for it; if the other commits, that record is
        stored and is left out, and the rest is staged again. So the lock holder writes under the lock only
        rejected records, which nobody stages, and never waits for a writer that waits for the lock. Should
        PostgreSQL still break a deadlock here (with a writer of an older version, say), staging is tried
        again a few times, then given up: the batch is written under the lock, as SQLite always does."""
        drafts = sorted(drafts, key=lambda d: d.record.id)
        deadlocks = 0
        while drafts:
            # Random negative seqs: unique among the transactions staging at once (2^62 values), and drawn
            # without the records' sequence, which only the lock holder advances (a batch's seqs consecutive).
            marks = (-np.random.default_rng().choice(1 << 62, size=len(drafts), replace=False) - 1).tolist()
            savepoint = self.conn.begin_nested()
            try:
                stamp = self.now()
                self._copy_records([(mark, *_row(draft, stamp)) for mark, draft in zip(marks, drafts, strict=True)])
            except sa.exc.IntegrityError as error:
                savepoint.rollback()
                stored = self.existing_ids(d.record.id for d in drafts)
                if getattr(error.orig, "sqlstate", None) != UNIQUE_VIOLATION or not stored:
                    raise  # not an id another writer stored meanwhile: a real fault, not a clash
                drafts = [d for d in drafts if d.record.id not in stored]
                continue
            except sa.exc.OperationalError as error:
                savepoint.rollback()
                deadlocks += 1
                if getattr(error.orig, "sqlstate", None) != DEADLOCK:
                    raise
                if deadlocks > STAGING_DEADLOCKS:
                    return
                continue  # the cycle is broken: the other writer's commit is now a clash, or nothing
            savepoint.commit()
            self.staged = dict(zip([d.record.id for d in drafts], marks, strict=True))
            return

    def insert(self, new: Sequence[NewRecord], now: datetime | None = None) -> int | None:
        """New records, in this transaction, in order, with consecutive seqs, through the driver's bulk path: on
        PostgreSQL COPY (far cheaper than executemany for rows with text, shingles and keys) and, for records
        ``stage`` wrote before the lock, one UPDATE of their place; on SQLite the driver's executemany
        (SQLAlchemy's per-row parameter handling took a good part of the insert; docs/benchmarks.md). Returns the
        last record's seq where it drew them (PostgreSQL), else None (``last_seq`` says)."""
        stamp = now or self.now()
        if self.conn.dialect.name != "postgresql":
            if new:
                created = _sqlite_time(stamp)
                rows = [_row(item, created, _sqlite_time) for item in new]
                self.conn.exec_driver_sql(SQLITE_INSERT, rows)
            return None
        last = first = None
        if new:
            # The batch's seqs in one call: only the lock's holder advances the sequence, so the range is the
            # batch's alone (a nextval a record took 3.5 µs a document of the hold; docs/benchmarks.md).
            last = int(self.conn.exec_driver_sql(DRAW_SEQS, (len(new) - 1,)).scalar_one())
            first = last - len(new) + 1
        written = [(i, n) for i, n in enumerate(new) if n.record.id not in self.staged]
        if written:
            assert first is not None
            # Binary COPY: text and bytes go as they are, with no escaping or hex on either side (less time and
            # client CPU than the text format).
            self._copy_records([(first + i, *_row(item, stamp)) for i, item in written])
        placed, arrays = self._placing_of(new)
        if placed:
            done = self.conn.exec_driver_sql(PLACE_STAGED, (first, stamp, *arrays))
            if done.rowcount != placed:
                raise RuntimeError(f"{placed - done.rowcount} records staged before the lock were not found")
        if placed < len(self.staged):  # the caller stores what it staged: never commit a record without its place
            raise RuntimeError(f"{len(self.staged) - placed} records staged before the lock were not placed")
        self.staged, self._placing = {}, None
        return last

    def prepare_placing(self, new: Sequence[NewRecord]) -> None:
        """PostgreSQL, before the write lock: the placing UPDATE's parameters for these new records (a decision made
        before the lock), so that ``insert`` of the same list under the lock, where that decision stands, only sends
        them (making them took 3 µs a document of a lone worker's hold: docs/benchmarks.md)."""
        if self.conn.dialect.name == "postgresql" and self.staged:
            self._placing = (new, self._placing_arrays(new))

    def _placing_of(self, new: Sequence[NewRecord]) -> tuple[int, tuple[str, ...]]:
        """How many of the new records are staged, and the placing's parameters for them: those made before the lock
        if for this very list, else made now."""
        placed = sum(1 for n in new if n.record.id in self.staged)
        if not placed:
            return 0, ()
        if self._placing is not None and self._placing[0] is new:
            return placed, self._placing[1]
        return placed, self._placing_arrays(new)

    def _placing_arrays(self, new: Sequence[NewRecord]) -> tuple[str, ...]:
        """The staged records' marks, places in ``new`` (a record's seq is the batch's first plus its place, drawn
        under the lock) and placement, as array literals."""
        placed = [(i, n.record) for i, n in enumerate(new) if n.record.id in self.staged]
        arrays: list[list[Any]] = [
            [self.staged[r.id] for _, r in placed],
            [i for i, _ in placed],
            [str(r.status) for _, r in placed],
            [r.duplicate_of for _, r in placed],
            [r.similarity for _, r in placed],
            [str(r.method) if r.method else None for _, r in placed],
            [r.story_id for _, r in placed],
            [r.jaccard for _, r in placed],
            [r.containment for _, r in placed],
        ]
        return tuple(map(_array_literal, arrays))

    def _copy_records(self, rows: Iterable[tuple]) -> None:
        """Rows of records, each its seq and then the ROW_COLUMNS, by binary COPY."""
        with self._copy(f"COPY records (seq, {', '.join(ROW_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", *COPY_TYPES])
            for row in rows:
                copy.write_row(row)

    @contextmanager
    def _copy(self, statement: str) -> Iterator[Copy]:
        """A PostgreSQL COPY in this transaction, through the driver; its errors raised as SQLAlchemy raises
        the driver's (a deadlock an OperationalError, which the tasks retry; a unique clash an IntegrityError)."""
        driver = self.conn.connection.driver_connection
        assert driver is not None  # a connection checked out of the pool
        dbapi = self.conn.dialect.loaded_dbapi
        try:
            with driver.cursor() as cursor, cursor.copy(statement) as copy:
                yield copy
        except dbapi.Error as error:
            raise sa.exc.DBAPIError.instance(statement, None, error, dbapi.Error) from error


class Store(Bookkeeping):
    """Records and their stories (and, from ``Bookkeeping``, failures, fetch validators, source claims)."""

    def __init__(self, url: str, migrate: bool = True, readonly: bool = False, fingerprints: str | None = None) -> None:
        """Open a store; ``migrate`` brings its schema up to date (creating it), otherwise a store
        without docsieve's schema is an error, so a mistyped URL never passes for an empty store.
        ``readonly`` (export, show, similar, status) opens it without changing anything, not even SQLite's
        journal mode, so a store on a read-only disk, another program's database, or a store of an older
        schema, can be read. ``fingerprints`` (what the settings make, for a store that will be written)
        refuses a store made with others before migrating it, so the docsieve that made it still can."""
        self.url = url
        self.readonly = readonly
        migrate = migrate and not readonly
        shown = redacted(url)
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise StoreError(f"{shown} is not a store URL: {exc}") from None
        database = parsed.database
        is_file = parsed.get_backend_name() == "sqlite" and bool(database) and database != ":memory:"
        if is_file:
            assert database is not None
            problem = _file_problem(database, writing=migrate)
            if problem:
                raise StoreError(f"the store {shown}: {problem}")
            if not migrate and not os.path.exists(database):  # and never create one by reading
                raise StoreError(f"no docsieve store at {shown} (run `docsieve migrate` or `docsieve ingest` first)")
        try:
            self.engine = create_engine(url, readonly=readonly)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:  # ImportError: no driver
            hint = (
                " (PostgreSQL's driver comes with pip install 'docsieve[deploy]')"
                if isinstance(exc, ImportError)
                else ""
            )
            raise StoreError(f"{shown} is not a store URL docsieve can open: {exc}{hint}") from None
        self._columns: list[sa.ColumnElement] = list(RECORD_COLUMNS)
        self.schema_has_stories = True  # False for a store of an older schema, read as it is
        self._merges = True  # False for a store of a schema before stories were merged (0018)
        # A file store copies its write-ahead log into the database on a thread of its own (below).
        self._checkpointer = _Checkpointer(self.engine) if is_file and not readonly else None
        self.lock_seconds = 0.0  # the write lock held, in all (``writing``), and how many times
        self.lock_holds = 0
        try:
            # The common case, a store at the newest schema, costs this one query and no Alembic import.
            revision = _revision(self.engine, shown)
            if migrate:
                if fingerprints is not None and revision is not None:
                    with self.engine.connect() as conn:
                        stored = _fingerprints_of(conn)
                    if stored not in (None, fingerprints):
                        raise StoreError(_other_fingerprints(stored, fingerprints))
                if revision != SCHEMA_REVISION:
                    upgrade(self.engine, shown)
                if is_file:  # WAL: readers never block the writer. Kept in the file once set.
                    _use_wal(self.engine)
            elif revision is None:
                raise StoreError(_not_a_store(self.engine, shown))
            elif revision != SCHEMA_REVISION:  # an older schema, read as it is: a column it lacks is empty
                with self.engine.connect() as conn:
                    present = {column["name"] for column in sa.inspect(conn).get_columns("records")}
                self._columns = [c if c.name in present else sa.null().label(c.name) for c in RECORD_COLUMNS]
                self.schema_has_stories = revision >= "0008"
                self._merges = revision >= "0018"
        except BaseException as exc:
            self.engine.dispose()
            # A file that SQLite cannot use as a store is said in one line. A server that cannot be reached
            # (OperationalError on PostgreSQL) stays what it is: a fault that may pass, which tasks retry.
            if isinstance(exc, sa.exc.DatabaseError) and (is_file or not isinstance(exc, sa.exc.OperationalError)):
                raise StoreError(f"the store {shown}: {_database_problem(exc)}") from None
            raise

    @property
    def _live_stories(self) -> sa.ColumnElement[bool]:
        """Stories not merged into another (every story of a schema before 0018)."""
        return stories.c.merged_into.is_(None) if self._merges else sa.true()

    def close(self) -> None:
        if self._checkpointer:
            self._checkpointer.close()
        self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Transaction]:
        with self.engine.connect() as conn:
            yield Transaction(conn)

    @contextmanager
    def writing(self, before_lock: Callable[[Transaction], object] | None = None) -> Iterator[Transaction]:
        """A transaction that holds the store's write lock to its commit, so that deciding against what is
        stored and storing the decision are one atomic step. ``before_lock`` runs in the same transaction
        before the lock is taken, on PostgreSQL; SQLite's lock comes with the transaction, and it is not run."""
        opened: list[Transaction] = []

        def before(conn: sa.Connection) -> None:
            opened.append(Transaction(conn))
            if before_lock is not None:
                before_lock(opened[0])

        with write_locked(self.engine, before) as conn:
            txn = opened[0] if opened else Transaction(conn)
            locked = txn.locked_at or time.perf_counter()
            yield txn
            if txn.staged_counts is not None:  # never commit a count row nobody counts (rolled back instead)
                raise RuntimeError("a template-count row staged before the lock was neither placed nor dropped")
            if txn.staged_snapshot is not None:  # nor a snapshot nobody reads, in the table till the next one
                raise RuntimeError("a template-count snapshot staged before the lock was neither placed nor dropped")
            if txn.staged_stories:  # nor a story the decision under the lock did not see
                raise RuntimeError("stories staged before the lock were not saved")
        # How long the lock was held, commit included: what bounds a cluster of any size (docs/scaling.md).
        self.lock_seconds += time.perf_counter() - locked
        self.lock_holds += 1
        if self._checkpointer:
            self._checkpointer.request()

    def get(self, record_id: str) -> Record | None:
        """A record by id or by a unique prefix of it."""
        found = self.matching(record_id, limit=2)
        return found[0] if len(found) == 1 or (found and found[0].id == record_id) else None

    def matching(self, prefix: str, limit: int) -> list[Record]:
        """Records whose id starts with ``prefix`` (the one whose id it is whole first), at most ``limit``.
        A range of the id index, not LIKE, which SQLite answers by reading every row."""
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(self.prefix_query(prefix, limit))]

    def prefix_query(self, prefix: str, limit: int) -> sa.Select:
        query = sa.select(*self._columns).where(records.c.id >= prefix)  # the whole id, if it is one, comes first
        if prefix and ord(prefix[-1]) < sys.maxunicode:
            query = query.where(records.c.id < prefix[:-1] + chr(ord(prefix[-1]) + 1))
        return query.order_by(records.c.id).limit(limit)

    def iter_records(self, status: Status | None = None, since: datetime | None = None) -> Iterator[Record]:
        """Records in arrival order; ``since``: only those stored, or placed anew, at or after it."""
        query = sa.select(*self._columns).order_by(records.c.seq)
        if status:
            query = query.where(records.c.status == status)
        if since is not None:
            query = query.where(records.c.changed_at >= since)
        with self.engine.connect() as conn:
            for row in conn.execute(query.execution_options(yield_per=1000)):
                yield _record(row)

    def page_records(
        self,
        after_seq: int = 0,
        limit: int = 100,
        status: Status | None = None,
        language: str | None = None,
        source: str | None = None,
        outlet: str | None = None,
        since: datetime | None = None,
    ) -> list[tuple[int, Record]]:
        """Up to ``limit`` records after ``after_seq`` in arrival order, each with its seq (the cursor to go
        on from). A record committed later always has a higher seq (only the write lock's holder gives them
        out), so paging by it neither skips nor repeats a record while others are stored."""
        query = sa.select(records.c.seq, *self._columns).where(records.c.seq > after_seq)
        for column, value in (("status", status), ("language", language), ("source", source), ("outlet", outlet)):
            if value:
                query = query.where(records.c[column] == value)
        if since is not None:
            query = query.where(records.c.changed_at >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(records.c.seq).limit(limit))
            return [(row.seq, _record(row)) for row in rows]

    def page_stories(
        self,
        limit: int = 50,
        after: tuple[datetime, str] | None = None,
        since: datetime | None = None,
        min_copies: int = 0,
        title: str | None = None,
        newest_first: bool = False,
    ) -> list[Story]:
        """Up to ``limit`` stories in order of creation (``newest_first``: the other way), after the story
        whose (created_at, id) is ``after``; ``since``: founded or changed at or after it; ``min_copies``: with
        at least so many copies; ``title``: whose canonical's title holds it (case-insensitive)."""
        where = self._changed_since(since)
        if after is not None:
            moment, story_id = after
            later = stories.c.created_at < moment if newest_first else stories.c.created_at > moment
            beside = stories.c.id < story_id if newest_first else stories.c.id > story_id
            where = sa.and_(where, sa.or_(later, sa.and_(stories.c.created_at == moment, beside)))
        if min_copies > 0:
            copied = (
                sa.select(records.c.story_id)
                .where(records.c.status == Status.DUPLICATE)
                .group_by(records.c.story_id)
                .having(sa.func.count() >= min_copies)
            )
            where = sa.and_(where, stories.c.id.in_(copied))
        if title:
            escaped = title.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            titled = sa.select(records.c.id).where(records.c.title.ilike(f"%{escaped}%", escape="\\"))
            where = sa.and_(where, stories.c.canonical_id.in_(titled))
        return list(self._stories(where, limit=limit, newest_first=newest_first))

    def story(self, story_id: str) -> Story | None:
        """A story with its canonical first, then its members by arrival; what it holds and what holds it. A story
        merged into another is that one (its ``id`` says which)."""
        for story in self._stories(stories.c.id == story_id):
            return story
        if not self._merges:
            return None
        with self.engine.connect() as conn:
            into = conn.scalar(sa.select(stories.c.merged_into).where(stories.c.id == story_id))
        return None if into is None else next(self._stories(stories.c.id == into), None)

    def iter_stories(self, since: datetime | None = None) -> Iterator[Story | MergedStory]:
        """Every story in order of creation; ``since``: those founded or changed (canonical, members,
        links) at or after it, then those merged into another since (what a consumer that had them drops)."""
        yield from self._stories(self._changed_since(since))
        if since is not None:
            yield from self.merged_since(since)

    def merged_since(self, since: datetime) -> Iterator[MergedStory]:
        """The stories merged into another at or after ``since``, in the order they were."""
        if not self._merges:
            return
        query = (
            sa.select(stories.c.id, stories.c.merged_into, stories.c.changed_at)
            .where(stories.c.merged_into.is_not(None), stories.c.changed_at >= since)
            .order_by(stories.c.changed_at, stories.c.id)
        )
        with self.engine.connect() as conn:
            for row in conn.execute(query.execution_options(yield_per=500)):
                yield MergedStory(row.id, row.merged_into, _iso(row.changed_at))

    @staticmethod
    def _changed_since(since: datetime | None) -> sa.ColumnElement[bool]:
        if since is None:
            return sa.true()
        changed = sa.select(records.c.story_id).where(records.c.changed_at >= since)
        linked = sa.select(contains.c.story_id).where(contains.c.created_at >= since)
        return sa.or_(stories.c.changed_at >= since, stories.c.id.in_(changed), stories.c.id.in_(linked))

    def _stories(
        self, where: sa.ColumnElement[bool], limit: int | None = None, newest_first: bool = False
    ) -> Iterator[Story]:
        member_columns = [sa.null().label("text") if c.name == "text" else c for c in self._columns]
        order: tuple[sa.ColumnElement, ...] = (stories.c.created_at, stories.c.id)
        if newest_first:
            order = (stories.c.created_at.desc(), stories.c.id.desc())
        with self.engine.connect() as conn:
            heads = conn.execute(
                sa.select(stories.c.id, stories.c.canonical_id, stories.c.created_at, stories.c.changed_at)
                .where(where, self._live_stories)
                .order_by(*order)
                .limit(limit)
                .execution_options(yield_per=500)
            )
            for chunk in batched(heads, 500):
                ids = [h.id for h in chunk]
                members: dict[str, list[Record]] = {i: [] for i in ids}
                # A story changed when its row says, or when a record joined it or a link to or from it was made
                # (``save_stories`` stamps no row for those).
                changed = {h.id: h.changed_at for h in chunk}
                rows = conn.execute(
                    sa.select(*member_columns).where(records.c.story_id.in_(ids)).order_by(records.c.seq)
                )
                for row in rows:
                    record = _record(row)
                    members[record.story_id or ""].append(record)
                    changed[record.story_id or ""] = _later(changed[record.story_id or ""], row.changed_at)
                # story id -> held story id -> its links: (held story id, containment, the record holding it)
                held: dict[str, dict[str, list[tuple[str, float | None, str]]]] = {i: {} for i in ids}
                holders: dict[str, list[tuple[str, float | None]]] = {i: [] for i in ids}
                in_story = {r.id: r.story_id for group in members.values() for r in group}
                place = {r.id: n for group in members.values() for n, r in enumerate(group)}
                links = conn.execute(
                    sa.select(
                        contains.c.record_id, contains.c.story_id, contains.c.containment, contains.c.created_at
                    ).where(
                        # The members by subquery: a story can have more records than a statement has parameters.
                        sa.or_(
                            contains.c.story_id.in_(ids),
                            contains.c.record_id.in_(sa.select(records.c.id).where(records.c.story_id.in_(ids))),
                        )
                    )
                )
                for record_id, story_id, containment, linked_at in links:
                    if story_id in holders:
                        holders[story_id].append((record_id, containment))
                        changed[story_id] = _later(changed[story_id], linked_at)
                    if (own := in_story.get(record_id)) is not None and own in held:
                        held[own].setdefault(story_id, []).append((story_id, containment, record_id))
                        changed[own] = _later(changed[own], linked_at)
                for head in chunk:
                    group = members[head.id]
                    canonical = next((r for r in group if r.id == head.canonical_id), None)
                    if canonical is None:
                        continue
                    yield Story(
                        id=head.id,
                        canonical=canonical,
                        members=[r for r in group if r.id != canonical.id],
                        contains=sorted(_named_link(links, canonical.id, place) for links in held[head.id].values()),
                        contained_in=holders[head.id],
                        created_at=_iso(head.created_at),
                        changed_at=_iso(changed[head.id]),
                    )

    def index_keys(self, record_ids: Sequence[str]) -> dict[str, bytes]:
        """The candidate-index keys records keep (what a shared index must forget when they are taken down),
        each record's as an int64 array's bytes."""
        found: dict[str, bytes] = {}
        with self.engine.connect() as conn:
            for chunk in batched(record_ids, CHUNK):
                query = sa.select(records.c.id, records.c.index_keys).where(
                    records.c.id.in_(chunk), records.c.index_keys.is_not(None)
                )
                found.update((i, unpack_keys(blob).astype("<i8").tobytes()) for i, blob in conn.execute(query))
        return found

    def delete(self, record_ids: Sequence[str], reason: str | None, settings: Settings) -> list[str]:
        """Take records down: text, fingerprints and index keys go; an audit row (id, when, reason) stays.
        A canonical's place goes to the next member by the canonical policy; members no longer close to
        it found stories of their own. Returns the ids removed (those stored)."""
        removed = []
        counts = ShingleCounts(settings.boilerplate_texts, settings.template_across_days) if settings.rewrites else None
        with self.writing() as txn, counts.bound() if counts else nullcontext():
            stems = _word_stems_of(txn.conn, settings.word_stems, _said_word_stems(txn.conn))
            if counts:
                counts.catch_up(txn)
            for record_id in record_ids:
                if not txn.existing_ids([record_id]):
                    continue
                book = Book(
                    txn,
                    settings,
                    lambda ids: {i: s.shingles for i, s in txn.sketches(ids, settings).items()},
                    # the members a new canonical is measured against keep their rewrite links as ingest would
                    rewrites=RewriteScores(counts, partial(txn.word_sets, stems_of=stems)) if counts else None,
                    days_of=txn.day_slots if settings.weekday_check else None,
                    figures_of=txn.figures if settings.figure_check else None,
                )
                book.load([record_id])
                placed = book.placements.get(record_id)  # none for a rejected record
                story_id = placed.story_id if placed else None
                if placed is not None:
                    book.remove(record_id)
                    txn.save_stories(book, txn.now())
                    if book.emptied:  # and the rows of stories merged into it: their records were its own
                        gone = sa.or_(stories.c.id == story_id, stories.c.merged_into == story_id)
                        txn.conn.execute(stories.delete().where(gone))
                        txn.conn.execute(contains.delete().where(contains.c.story_id == story_id))
                    if book.heir:
                        _inherit(txn.conn, record_id, book.heir)
                # What it held changes too (its link goes): said by the stories' rows, as no link tells it now.
                held = sa.select(contains.c.story_id).where(contains.c.record_id == record_id)
                txn.conn.execute(stories.update().where(stories.c.id.in_(held)).values(changed_at=txn.now()))
                txn.conn.execute(contains.delete().where(contains.c.record_id == record_id))
                txn.conn.execute(records.delete().where(records.c.id == record_id))
                txn.conn.execute(deletions.insert().values(id=record_id, story_id=story_id, reason=reason))
                removed.append(record_id)
        return removed

    def word_stems(self, wanted: str) -> str:
        """How this store's words are stemmed for the rewrite stage's counts (Settings.word_stems): what it was
        first written with; ``wanted`` for a new store. A store written before the setting existed counted its
        words with clitics off the front only ("prefixes"): its counts keep meaning what they meant, as words
        stemmed otherwise would fall into other counters (a new store is needed for the other stems)."""
        with self.engine.connect() as conn:  # a store that says so needs no write lock at every start
            said = _said_word_stems(conn)
            if said is not None or self.readonly:
                return _word_stems_of(conn, wanted, said)
        with write_locked(self.engine) as conn:
            said = _said_word_stems(conn)
            if said is None:
                said = _word_stems_of(conn, wanted, said)
                conn.execute(meta.insert().values(key="word stems", value=said))
            return said

    def check_fingerprints(self, made_with: str) -> None:
        """Record what this store's fingerprints are made with, or refuse other parameters: shingles,
        signatures and index keys made otherwise would never match the stored ones, silently. A store
        opened read-only is only compared with."""
        if self.readonly:
            with self.engine.connect() as conn:
                stored = _fingerprints_of(conn)
            if stored not in (None, made_with):
                raise StoreError(_other_fingerprints(stored, made_with))
            return
        with write_locked(self.engine) as conn:
            stored = _fingerprints_of(conn)
            if stored is None:
                conn.execute(meta.insert().values(key="fingerprints", value=made_with))
            elif stored != made_with:
                raise StoreError(_other_fingerprints(stored, made_with))

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            query = sa.select(records.c.status, sa.func.count()).group_by(records.c.status)
            return {status: n for status, n in conn.execute(query)}

    def story_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.scalar(sa.select(sa.func.count()).select_from(stories).where(self._live_stories)) or 0

    def story_counts(self) -> tuple[int, int, int]:
        """Stories, those with copies, and those that are roundups (their canonical holds other stories as one; a
        copy of a roundup holds them so too, and is no story of its own)."""
        total = self.story_count()
        with self.engine.connect() as conn:
            copied = conn.scalar(
                sa.select(sa.func.count(sa.distinct(records.c.story_id))).where(records.c.status == Status.DUPLICATE)
            )
            roundups = conn.scalar(
                sa.select(sa.func.count(sa.distinct(records.c.story_id)))
                .select_from(contains.join(records, records.c.id == contains.c.record_id))
                .where(contains.c.roundup, records.c.status == Status.CANONICAL)
            )
        return total, copied or 0, roundups or 0


def create_engine(url: str, readonly: bool = False) -> Engine:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if readonly and path and path != ":memory:":
            return _read_only_sqlite(path)
        engine = sa.create_engine(url)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record) -> None:
            # NORMAL sync is durable across process crashes in WAL mode (set once the store is known to be
            # docsieve's: Store.__init__, never on another program's database).
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            # A checkpoint every 64 MiB of log rather than every 4 MiB: an ingest rewrites the same index
            # pages in every batch, and each checkpoint costs an fsync (docs/benchmarks.md).
            cursor.execute("PRAGMA wal_autocheckpoint=16384")
            cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache, for the same reason
            cursor.close()

        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    # READ COMMITTED whatever the server's default: each statement sees what others committed before it, which
    # catching up by seq, and staging before the lock, rely on.
    engine = sa.create_engine(url, pool_pre_ping=True, isolation_level="READ COMMITTED")
    if readonly and parsed.get_backend_name() == "postgresql":

        @sa.event.listens_for(engine, "connect")
        def _read_only(dbapi_connection, _record) -> None:
            # Every transaction of this engine is read-only: a reading command cannot change the store by
            # mistake. Set on the session rather than as a startup option, which PgBouncer refuses.
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            dbapi_connection.commit()

    return engine


def _read_only_sqlite(path: str) -> Engine:
    """A SQLite file opened read-only (``mode=ro``): no journal mode set, nothing written. A store in WAL mode
    on a disk or folder this process cannot write, whose ``-shm`` file is missing, can only be opened as
    immutable (no other process may be writing it then: it could not, either)."""
    import sqlite3
    from urllib.parse import quote

    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"

    def connect() -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            if "unable to open" not in str(exc) and "readonly" not in str(exc):
                raise
            wal = f"{path}-wal"
            if os.path.exists(wal) and os.path.getsize(wal) > 0:  # immutable would read past what it holds
                raise sqlite3.OperationalError(
                    f"{path} has recent records in its write-ahead log ({wal}), which can only be read where its "
                    "folder can be written (to make its -shm file): open it once there"
                ) from exc
            connection = sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)
        connection.isolation_level = None  # as for the writing engine: BEGIN is emitted below
        connection.execute("PRAGMA busy_timeout=60000")
        return connection

    engine = sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.NullPool)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_begin(conn: sa.Connection) -> None:
    """The BEGIN of every SQLite transaction, emitted here: pysqlite's own is deferred, so two writers
    would both read, then one would fail (the write lock asks for BEGIN IMMEDIATE)."""
    conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))


def _file_problem(path: str, writing: bool) -> str | None:
    """What keeps a SQLite store file from being used, said before SQLite says it less clearly."""
    if os.path.isdir(path):
        return f"{path} is a folder, not a store file"
    if not os.path.exists(path):
        folder = os.path.dirname(os.path.abspath(path))
        if writing and not os.path.isdir(folder):
            return f"the folder {folder} does not exist"
        return None
    if not os.access(path, os.R_OK):
        return f"cannot read {path}: permission denied"
    try:
        with open(path, "rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if header and header != SQLITE_HEADER:
        return f"{path} is not a SQLite database (it is a file of another kind)"
    if writing and not (os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK)):
        return f"{path} is read-only here: docsieve cannot write to it (export, show and similar can still read it)"
    return None


def _database_problem(exc: sa.exc.DBAPIError) -> str:
    """The database's own words for what went wrong (disk full, read-only, cannot connect), on one line."""
    said = str(exc.orig) if exc.orig is not None else str(exc)
    return said.strip().splitlines()[0] if said.strip() else type(exc).__name__


class _Checkpointer:
    """Copies SQLite's write-ahead log into the database file after each commit, on a thread of its own.

    SQLite would do it on the committing thread (every 16,384 pages here) and once more when the last
    connection closes, at the end of an ingest, in which the pipeline waits (docs/benchmarks.md).
    A PASSIVE checkpoint never waits for readers or writers and runs with the GIL released, so on
    this thread it overlaps the pipeline's next batch; and a log that has been copied whole starts
    over at its beginning, so it stays small. Started at the first request (after a worker forks).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._wanted = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def request(self) -> None:
        with self._lock:
            if self._closing:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="docsieve-checkpoint", daemon=True)
                self._thread.start()
        self._wanted.set()

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._wanted.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        with self._engine.connect() as conn:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._closing:
                    return
                try:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                except sa.exc.DBAPIError:  # a busy or failing checkpoint is only done later, or at close
                    continue


@contextmanager
def write_locked(engine: Engine, before: Callable[[sa.Connection], object] | None = None) -> Iterator[sa.Connection]:
    """A transaction holding the store's write lock: BEGIN IMMEDIATE on SQLite (from its first statement), a
    transaction-scoped advisory lock on PostgreSQL, taken after ``before`` has run in the transaction (on
    SQLite, where nothing can be written before the lock, ``before`` is not run)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                if before is not None:
                    before(conn)
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITE_LOCK)))
            yield conn


def _said_word_stems(conn: sa.Connection) -> str | None:
    return conn.scalar(sa.select(meta.c.value).where(meta.c.key == "word stems"))


def _word_stems_of(conn: sa.Connection, wanted: str, said: str | None) -> str:
    """How a store's words are stemmed (``Store.word_stems``): as it ``said``; else, with records already (written
    before the setting existed), clitics off the front only; else (a new store) ``wanted``."""
    if said is not None:
        return said
    return WORD_STEMS[0] if conn.scalar(sa.select(records.c.seq).limit(1)) is not None else wanted


def _fingerprints_of(conn: sa.Connection) -> str | None:
    """What a docsieve store's fingerprints were made with; None before its first document."""
    return conn.scalar(sa.select(meta.c.value).where(meta.c.key == "fingerprints"))


def _other_fingerprints(stored: str, made_with: str) -> str:
    said = f"the store's fingerprints were made with {stored}; the settings now say {made_with}"
    if stored.split(",")[0] != made_with.split(",")[0]:  # "normalization N" comes first
        return (
            f"{said}. This docsieve normalizes text differently from the one that made the store: ingest into "
            "a new store (export gives every record's text), or keep using that version for this store."
        )
    if "sample" in stored:  # the 1-in-N shingle sample, which winnowing replaced
        return (
            f"{said}. This docsieve keys containment search by winnowing, which no setting turns back into the "
            "sample the store's records were indexed with: ingest into a new store (export gives every record's "
            "text), or keep using that version for this store."
        )
    return f"{said}. Use the store's settings, or a new store."


def _not_a_store(engine: Engine, shown: str) -> str:
    with engine.connect() as conn:
        others = sorted(sa.inspect(conn).get_table_names())
    if others:
        return _another_programs(shown, others)
    return f"no docsieve store at {shown} (run `docsieve migrate` or `docsieve ingest` first)"


def _another_programs(shown: str, tables: list[str]) -> str:
    listed = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
    return f"{shown} is a database of another program (tables {listed}), not a docsieve store"


def _use_wal(engine: Engine, patience: float = 60.0) -> None:
    """Put a SQLite file in WAL mode, outside a transaction (where the mode can change). Processes opening a
    new store together: one may already be writing in the old mode, and SQLite then answers "locked" at
    once rather than wait (its busy handler is skipped where waiting could deadlock), so this waits itself."""
    import sqlite3

    deadline = time.monotonic() + patience
    while True:
        raw = engine.raw_connection()
        try:
            connection = raw.driver_connection
            assert connection is not None
            if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        finally:
            raw.close()
        time.sleep(0.05)


def upgrade(engine: Engine, shown: str) -> None:
    """Bring the schema to the newest migration (``Store`` calls it when its revision is not the newest).
    The Alembic migrations are the schema: a new store runs them all (the models in this module only
    describe it for queries, and ``tests/test_store.py`` holds the two equal). Migrating takes the write
    lock, so processes starting together migrate once. A database that holds other tables, and no
    docsieve schema, is another program's: refused, never written to."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    with write_locked(engine) as conn:
        inspector = sa.inspect(conn)
        if not any(inspector.has_table(t) for t in (*metadata.tables, "alembic_version")):
            others = sorted(inspector.get_table_names())
            if others:
                raise StoreError(f"{_another_programs(shown, others)}: give a new file or an empty database")
        if MigrationContext.configure(conn).get_current_revision() != SCHEMA_REVISION:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")


def _revision(engine: Engine, shown: str) -> str | None:
    """The store's schema revision; None for a database without docsieve's schema (new, or another's)."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table("alembic_version"):
            return None
        revision = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
        if revision is not None and not inspector.has_table("records"):  # Alembic, but not ours
            raise StoreError(_foreign_revision(shown, revision))
    if revision is not None and revision not in KNOWN_REVISIONS:
        newer = revision.isdigit() and len(revision) == len(SCHEMA_REVISION) and revision > SCHEMA_REVISION
        raise StoreError(
            f"{shown} was made by a newer docsieve (schema revision {revision}; this one knows up to {SCHEMA_REVISION})"
            if newer
            else _foreign_revision(shown, revision)
        )
    return revision


def _named_link(
    links: list[tuple[str, float | None, str]], canonical_id: str, place: dict[str, int]
) -> tuple[str, float | None, str]:
    """The link (held story, containment, record) that names a story another holds, of its records' ``links`` to
    it: the most containment (a NULL one least), then the story's canonical, then the earliest record (``place``:
    a record's position in its story), never the order the database returns the links in."""
    return max(links, key=lambda k: (-1.0 if k[1] is None else k[1], k[2] == canonical_id, -place[k[2]]))


def _foreign_revision(shown: str, revision: str) -> str:
    return f"{shown} is not a docsieve store (its Alembic revision {revision!r} is another program's)"


# What an insert writes: every column but those the database fills in.
ROW_COLUMNS = tuple(c.name for c in records.c if c.name not in ("seq", "created_at"))
NEWEST_COUNT_SNAPSHOT = sa.select(sa.func.coalesce(sa.func.max(shingle_count_snapshots.c.seq), 0))
DEADLOCK = "40P01"  # SQLSTATE of a transaction PostgreSQL rolled back to break a deadlock
UNIQUE_VIOLATION = "23505"
STAGING_DEADLOCKS = 3  # tries of staging after a deadlock, before the batch is written under the lock
# A batch's records' seqs under the lock, consecutive: the last of them, the sequence moved past it.
DRAW_SEQS = (
    "SELECT setval(pg_get_serial_sequence('records', 'seq'), nextval(pg_get_serial_sequence('records', 'seq')) + %s)"
)
# The place of records staged before the lock (``Transaction.stage``), found by their staging seq.
PLACE_STAGED = """
UPDATE records AS r SET seq = %s + v.place, status = v.status, duplicate_of = v.duplicate_of,
    similarity = v.similarity, method = v.method, story_id = v.story_id, jaccard = v.jaccard,
    containment = v.containment, changed_at = %s
FROM unnest(%s::int8[], %s::int8[], %s::varchar[], %s::varchar[], %s::float8[], %s::varchar[], %s::varchar[],
    %s::float8[], %s::float8[])
    AS v(mark, place, status, duplicate_of, similarity, method, story_id, jaccard, containment)
WHERE r.seq = v.mark
"""
# PostgreSQL's names of the ROW_COLUMNS types, for binary COPY (Text before String: it is one).
COPY_TYPES = [
    next(
        name
        for kind, name in (
            (sa.Text, "text"),
            (sa.String, "varchar"),
            (sa.Float, "float8"),
            (sa.LargeBinary, "bytea"),
            (sa.DateTime, "timestamptz"),
        )
        if isinstance(records.c[column].type, kind)
    )
    for column in ROW_COLUMNS
]
SQLITE_INSERT = f"INSERT INTO records ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})"


def _row(item: NewRecord, now: object, stamp: Callable[[datetime | None], object] = lambda t: t) -> tuple:
    """A record's values in the order of ROW_COLUMNS (``stamp`` writes a time as the store keeps it)."""
    r = item.record
    return (
        r.id,
        r.source,
        str(r.status),
        r.duplicate_of,
        r.similarity,
        str(r.method) if r.method else None,
        r.content_hash,
        r.language,
        r.title,
        r.text,
        orjson.dumps(r.images).decode(),  # quicker than json.dumps, per row
        r.reason,
        r.url,
        r.published,
        r.author,
        r.outlet,
        r.story_id,
        stamp(r.published_at),
        r.jaccard,
        r.containment,
        now,
        None,  # shingles: made again from the text when needed (Transaction.sketches), a fifth of a record's size
        pack_keys(item.keys) if item.keys is not None else None,
        _sketch_blob(item.shingles, item.minima),
    )


def _sketch_blob(shingles: np.ndarray | None, minima: np.ndarray | None) -> bytes | None:
    """The ``sketch`` column: the record's sketch as the index keeps it too."""
    return None if shingles is None or minima is None else sketch_row(shingles, minima).tobytes()


PLACEMENT_COLUMNS = (
    records.c.id,
    records.c.seq,
    records.c.story_id,
    records.c.status,
    records.c.content_hash,
    records.c.method,
    records.c.jaccard,
    records.c.containment,
    records.c.similarity,
    records.c.published_at,
    records.c.created_at,
)


def _inherit(conn: sa.Connection, gone: str, heir: str) -> None:
    """The heir to a canonical record takes its stories' links, and index keys (and shingles) if it has none
    (an exact copy stored without them, by an older docsieve: those of a record with the same text)."""
    held = conn.execute(
        sa.select(contains.c.story_id, contains.c.containment, contains.c.roundup).where(contains.c.record_id == gone)
    )
    rows = [{"record_id": heir, "story_id": s, "containment": c, "roundup": r} for s, c, r in held]
    if rows:
        conn.execute(upsert_insert(conn, contains).on_conflict_do_nothing(), rows)
    text = sa.select(records.c.content_hash).where(records.c.id == heir).scalar_subquery()
    twin = (
        sa.select(records.c.shingles, records.c.index_keys)
        .where(records.c.content_hash == text, records.c.index_keys.is_not(None))
        .order_by(records.c.seq)
        .limit(1)
    )
    found = conn.execute(twin).first()
    if found is not None:
        conn.execute(
            records.update()
            .where(records.c.id == heir, records.c.index_keys.is_(None))
            .values(shingles=found.shingles, index_keys=found.index_keys)
        )


def _placement(row, policy: str) -> Placement:
    return Placement(
        id=row.id,
        story_id=row.story_id,
        status=Status(row.status),
        content_hash=row.content_hash,
        rank=rank_key(policy, _utc(row.published_at), _utc(row.created_at), row.seq),
        method=Method(row.method) if row.method else None,
        jaccard=row.jaccard,
        containment=row.containment,
        similarity=row.similarity,
    )


def _placement_values(p: Placement, canonical_of: dict[str, str]) -> dict:
    return {
        "b_id": p.id,
        "b_story": p.story_id,
        "b_status": str(p.status),
        "b_of": None if p.status is Status.CANONICAL else canonical_of[p.story_id],
        "b_method": str(p.method) if p.method else None,
        "b_similarity": p.similarity,
        "b_jaccard": p.jaccard,
        "b_containment": p.containment,
    }


def _array_literal(values: Sequence[object]) -> str:
    """A PostgreSQL array literal of numbers, strings and None (NULL): psycopg dumps a list an element at a time in
    Python, which took 3.6 µs a document of the hold for the placing's nine arrays; a literal is one string."""
    items = [None if v is None else str(v) for v in values]
    said = "".join(t for t in items if t is not None)
    if '"' in said or "\\" in said:  # never in ids, statuses and numbers, but never a wrong array either
        items = [None if t is None else t.replace("\\", "\\\\").replace('"', '\\"') for t in items]
    return "{" + ",".join("NULL" if t is None else f'"{t}"' for t in items) + "}"


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two times, either unknown (a column an older store lacks)."""
    return b if a is None or (b is not None and b > a) else a


def _record(row) -> Record:
    m = row._mapping
    return Record(
        id=m["id"],
        source=m["source"],
        status=Status(m["status"]),
        content_hash=m["content_hash"],
        duplicate_of=m["duplicate_of"],
        similarity=m["similarity"],
        method=Method(m["method"]) if m["method"] else None,
        language=m["language"],
        title=m["title"],
        text=m["text"],
        images=tuple(json.loads(m["images"] or "[]")),
        reason=m["reason"],
        url=m["url"],
        published=m["published"],
        author=m["author"],
        outlet=m["outlet"],
        created_at=_iso(m["created_at"]),
        story_id=m["story_id"],
        published_at=_utc(m["published_at"]),
        jaccard=m["jaccard"],
        containment=m["containment"],
        changed_at=_iso(m["changed_at"]),
    )


def _sqlite_time(stamp: datetime | None) -> str | None:
    """A UTC time as SQLAlchemy keeps it in SQLite, for rows written through the driver: one format for
    every row, so times compare as strings (the driver's own adapter adds an offset, and drops the
    microseconds when they are zero, which would sort before a time of the same second)."""
    return None if stamp is None else stamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _index_clocks(published: datetime | None, arrived: datetime) -> tuple[int, int]:
    """A stored record's time for the index (``index.index_time``) and its arrival, in seconds, as read from a row."""
    arrived = _utc(arrived)
    return index_time(_utc(published), arrived), int(arrived.timestamp())


@overload
def _utc(stamp: datetime) -> datetime: ...
@overload
def _utc(stamp: None) -> None: ...
def _utc(stamp: datetime | None) -> datetime | None:
    """SQLite gives back naive datetimes; every stored instant is UTC."""
    return stamp.replace(tzinfo=UTC) if stamp is not None and stamp.tzinfo is None else stamp


def _iso(stamp: datetime | None) -> str | None:
    return _utc(stamp).isoformat() if stamp is not None else None
