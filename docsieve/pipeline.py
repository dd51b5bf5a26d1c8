"""The pipeline: raw documents -> extract -> fingerprint -> language -> decide -> store, in batches.

Extraction, fingerprints and language (``docsieve/prepare.py``) are computed outside any lock. Deciding
and storing happen in one transaction that holds the store's write lock: the index first catches up
with what other processes stored, then each document of the batch is decided in arrival order (so the
first copy of a story is its canonical record within a batch as well), then the batch is written. A
batch costs a handful of store round trips whatever its size. On PostgreSQL the batch is written and
decided before the lock too; under the lock the decision stands if nothing was stored or taken down since
it began to read, so that a lone worker's hold is placing and linking only.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from docsieve.dates import Slots, dated
from docsieve.decide import hopeless, passes, verified_pairs
from docsieve.deciders import DeciderSlots, cores
from docsieve.figures import Figures
from docsieve.fingerprint import jaccard_and_containment, stored_word_sets
from docsieve.index import (
    CandidateIndex,
    MemoryIndex,
    SegmentIndex,
    chunked_rows,
    index_time,
    open_index,
    query_time,
    sketch_row,
)
from docsieve.models import Method, Record, Rejection, Sketch, Status, batched
from docsieve.prepare import Prepared, Preparing, Within, prepare, prepare_each, verified_within
from docsieve.published import parse_published
from docsieve.readers import Item
from docsieve.rewrites import RewriteScores, counted_words
from docsieve.settings import Settings
from docsieve.store import NewRecord, Store, Transaction
from docsieve.stories import Book, Overlap, Placement, rank_key
from docsieve.templates import ShingleCounts, counted_shingles, day_of

logger = logging.getLogger(__name__)
# Times a batch's decision before the lock is made again there, in the parts that records others stored meanwhile
# touch (PostgreSQL), each time from its first decision with all that was stored since: a few passes settle it unless
# the store never rests; then what is left is met under the lock.
AGAIN_BEFORE_LOCK = 3
# While another holds the lock, a batch tries it every LOCK_TRY_EVERY seconds, LOCK_TRIES times at most (a lone
# worker's hold of 512 documents is some 25 ms), then waits its turn.
LOCK_TRY_EVERY = 0.002
LOCK_TRIES = 50
BATCH_SEQ = 1 << 62  # ranks a batch's documents after every stored record that arrived when they did
# Stored records' weekday slots a process keeps (700 bytes each on news, their dicts and ids: 14 MB), so that the
# likeliest candidates, the records stored last, are not read and tokenized again (docsieve/dates.py).
DAYS_CACHED = 20_000
# Stored records' words for the rewrite stage a process keeps (2.4 KB each on bench/scale.py's articles: some
# 12 MB), for the same reason: the canonicals a batch's documents are
# scored against recur from batch to batch, and a batch decided again under the PostgreSQL lock scores the same
# ones (reading them again was a tenth of that decision's time). Ten batches of 512 and their canonicals.
WORDS_CACHED = 5_000
# Stored records' figures a process keeps (docsieve/figures.py; 720 bytes each on saudinewsnet-dev, with their ids
# some 16 MB), for the same reason as their weekday slots.
FIGURES_CACHED = 20_000
# How far (in records) the index may be behind the store before a batch catches it up ahead of its lookup. A batch
# reads the records stored after what its lookup covered into an index of its own, held whole in memory (some
# 1.3 KB a record): a few batches of other workers normally, but all of the store when a shared index came back
# empty (a Redis restarted without its data). Past this many, the index is caught up first, in chunks.
LAG_CAUGHT_UP_FIRST = 32_768


@dataclass(slots=True)
class Summary:
    read: int = 0
    new: int = 0
    exact: int = 0
    near: int = 0
    rejected: int = 0
    unchanged: int = 0  # already stored: the same source with the same text
    merged: int = 0  # stories merged into another (one story split in two made one: ``Book._merge_bridged``)
    elapsed: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        return self.read / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def ingested(self) -> int:
        return self.new + self.exact + self.near + self.unchanged

    def count(self, record: Record) -> None:
        if record.status is Status.CANONICAL:
            self.new += 1
        elif record.status is Status.REJECTED:
            self.rejected += 1
            self.reasons[record.reason or ""] = self.reasons.get(record.reason or "", 0) + 1
        elif record.method is Method.EXACT:
            self.exact += 1
        else:
            self.near += 1


@dataclass(frozen=True, slots=True)
class Checked:
    """What verification passed: for each document id, its candidates (record id, Jaccard, containment,
    the candidate's shingle count); the shingle sets of the stored ones (the story rules measure them
    against others); and which stored candidates were there to examine (a shared index also names records
    other workers have staged but not yet committed: those are verified under the lock, once stored)."""

    passed: dict[str, list[tuple[str, float, float, int]]]
    shingles: dict[str, np.ndarray]
    examined: set[str]
    near: dict[str, list[tuple[str, float, float, int]]] = field(default_factory=dict)  # for the rewrite stage


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one input: the id of its record, and the record if this call stored it (None: it was
    stored before, or earlier in the same batch)."""

    record_id: str
    record: Record | None

    @property
    def stored(self) -> bool:
        return self.record is not None


@dataclass(frozen=True, slots=True)
class Match:
    record: Record
    jaccard: float
    containment: float


V = TypeVar("V")  # what a _Kept holds of each record


class _Kept(Generic[V]):
    """What a process keeps of stored records that never changes (a stored text's words, its weekday slots): at
    most ``size`` records, the older half going when it is full (the records stored or asked for last are the
    likeliest candidates of the next batches)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: dict[str, V] = {}

    def remember(self, found: dict[str, V]) -> None:
        if len(self.items) + len(found) > self.size:
            self.items = dict(list(self.items.items())[len(self.items) // 2 :])
        self.items.update(found)

    def reader(
        self, own: dict[str, V], read: Callable[[set[str]], dict[str, V]]
    ) -> Callable[[Iterable[str]], dict[str, V]]:
        """A batch's lookup: its own documents' (``own``, kept too: they are stored with the batch), kept ones,
        else ``read`` from the store (and kept)."""
        self.remember(own)

        def of(ids: Iterable[str]) -> dict[str, V]:
            wanted = set(ids)
            found = {i: own[i] for i in wanted & own.keys()}
            found |= {i: self.items[i] for i in wanted - found.keys() if i in self.items}
            missing = wanted - found.keys()
            fresh = read(missing) if missing else {}
            self.remember(fresh)
            return found | fresh

        return of


class Pipeline:
    def __init__(self, store: Store, settings: Settings, index: CandidateIndex | None = None) -> None:
        """``index``: the candidate index to use; none is the one the settings name
        (``docsieve.index.open_index``)."""
        self.store = store
        # Recorded whether or not the stage is on, so that a store first filled without it is not taken later
        # for one written before the setting existed.
        stems = store.word_stems(settings.word_stems)
        if stems != settings.word_stems:
            logger.info("this store counts the rewrite stage's words by %s stems; kept", stems)
        self.settings = settings = settings.with_(word_stems=stems)
        store.check_fingerprints(settings.fingerprint_parameters)
        self.index = index if index is not None else open_index(settings)
        self.templates = ShingleCounts(settings.boilerplate_texts, settings.template_across_days)
        # Shingles of the records this process stored or read, so most verifications need no store read.
        # A record's shingles never change, so an entry never goes stale; DOCSIEVE_SKETCH_CACHE_MB bounds it.
        self._sketches: dict[str, Sketch] = {}
        self._days: _Kept[Slots] = _Kept(DAYS_CACHED)  # stored records' weekday slots (docsieve/dates.py)
        self._words: _Kept[np.ndarray] = _Kept(WORDS_CACHED)  # stored records' words (docsieve/rewrites.py)
        self._figures: _Kept[Figures] = _Kept(FIGURES_CACHED)  # stored records' figures (docsieve/figures.py)
        self._sketch_bytes = 0
        # Batches stored, and those of them decided before the lock (PostgreSQL) and again under it because
        # another worker wrote meanwhile (docs/scaling.md).
        self.batches_stored = 0
        self.decided_again = 0  # batches decided before the lock, and again (whole or in part) under it
        self.documents_decided_again = 0
        self.decided_again_before_lock = 0  # times a batch's decision was made again in part before the lock
        self.documents_decided_again_before_lock = 0
        self._tries_in_vain = False  # the last batch tried before the lock (passes, the lock) and was decided under it
        self.stories_merged = 0  # stories this process's batches merged into another
        # SQLite: a batch is decided under the store's one writer lock, never before it (docsieve/deciders.py).
        slots = 0 if store.engine.dialect.name == "sqlite" else settings.deciders or cores()
        folder = Path(settings.deciders_folder) if settings.deciders_folder else None
        self.deciders = DeciderSlots(store.url, slots, folder)

    def ingest(
        self,
        items: Iterable[Item] | Preparing,
        progress: Callable[[int], object] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Summary:
        """Store everything the items hold, a batch at a time, in order; ``progress`` hears how many
        documents each batch read; once ``stop`` says so, no further batch is taken. Items are prepared
        here, batch after batch, unless they come as a ``Preparing`` (which may prepare them ahead, in a
        process of its own)."""
        summary = Summary()
        started = time.perf_counter()
        merged = self.stories_merged
        with items if isinstance(items, Preparing) else Preparing(items, self.settings) as preparing:
            # Prepared (started before the store was open) with other word stems than the store's: made again.
            restem = self.settings.rewrites and preparing.settings.word_stems != self.settings.word_stems
            # The batch's own pairs as the preparing process verified them, if by these settings (a caller's
            # ``Preparing`` may have others); else verified again.
            own_pairs = preparing.settings.with_(word_stems=self.settings.word_stems) == self.settings
            for count, rejections, prepared, within in preparing:
                if stop is not None and stop():  # asked while this batch was prepared or on its way: not taken
                    break
                if restem:
                    prepared = self._restemmed(prepared)
                stored = self.store_prepared(rejections, prepared, within if own_pairs else None)
                summary.read += count
                summary.unchanged += count - len(stored)
                for record in stored:
                    summary.count(record)
                if progress:
                    progress(count)
                if stop is not None and stop():
                    break
        summary.elapsed = time.perf_counter() - started
        summary.merged = self.stories_merged - merged
        return summary

    def process(self, batch: list[Item]) -> list[Record]:
        """Decide and store one batch; returns the records it created (none for inputs already stored)."""
        return self.store_prepared(*self.prepare(batch))

    def process_each(self, batch: list[Item]) -> list[Outcome]:
        """``process``, answered for each input in order (the HTTP service's per-document replies)."""
        each = prepare_each(batch, self.settings)
        created = {
            r.id: r
            for r in self.store_prepared(
                [r for r in each if isinstance(r, Rejection)], [p for p in each if isinstance(p, Prepared)]
            )
        }
        # A second input of the same record, later in the batch, was stored before (by the first).
        return [Outcome(item.id, created.pop(item.id, None)) for item in each]

    def store_prepared(
        self, rejections: list[Rejection], prepared: list[Prepared], within: Within | None = None
    ) -> list[Record]:
        """Decide and store a prepared batch, in one of this machine's decider slots (docsieve/deciders.py); returns
        the records it created. ``within``: the batch's own pairs verified (``prepare.verified_within``), else
        verified here, before the slot: they read no store."""
        within = verified_within(prepared, self.settings) if within is None else within
        with self.deciders.held():
            return self._store_prepared(rejections, prepared, within)

    def _store_prepared(self, rejections: list[Rejection], prepared: list[Prepared], within: Within) -> list[Record]:
        limit = self.settings.max_candidates
        published = {p.id: parse_published(p.document.published) for p in prepared}
        arrival = datetime.now(UTC)
        times = [query_time(published[p.id], arrival) for p in prepared]
        keys = [p.keys for p in prepared]
        # The costly lookup happens before taking the lock; under it, only the records stored since
        # that lookup (by other workers, meanwhile) are looked at again.
        ids = [p.id for p in prepared]
        early, complete_to = self.index.lookup(keys, limit, times=times, stage_ids=ids)
        # Their verification too: stored records' sets never change, so only the records stored after the
        # lookup are verified under the lock (a shorter hold for every worker: docs/scaling.md).
        with self.store.reading() as txn:
            behind = txn.last_seq() - complete_to
            checked = self._verify(txn, prepared, early, within) if behind <= LAG_CAUGHT_UP_FIRST else None
        if checked is None:  # the records after ``complete_to`` would all be read into ``late``, below
            logger.warning("the candidate index is %d records behind the store: catching it up first", behind)
            # PostgreSQL: the gap read before the lock, as ``before_lock`` below does (a process's own index needs no
            # lock to read the store, a shared one is written idempotently), and under it what others stored
            # meanwhile; SQLite (the embedded index's files): under its lock, as ``reindex`` does.
            with self.store.writing(before_lock=self.index.catch_up) as txn:
                self.index.catch_up(txn)
            early, complete_to = self.index.lookup(keys, limit, times=times, stage_ids=ids)
            with self.store.reading() as txn:
                checked = self._verify(txn, prepared, early, within)
        drafts = {p.id: _draft(p, published[p.id]) for p in prepared}

        late = MemoryIndex(self.settings.index_window, self.settings.common_key_records)
        late.last_seq = complete_to

        def decide(
            txn: Transaction, now: datetime, earlier: Book | None = None, redo: set[str] | None = None
        ) -> tuple[list[NewRecord], Book]:
            """The batch's records, placed; ``redo``: only these documents are decided again, the rest of the
            ``earlier`` decision stands (``Book.depending_on``), with the ids it read as stored."""
            if redo is None:
                known.clear()
                known.update(txn.existing_ids([p.id for p in prepared] + [r.id for r in rejections]))
            # Candidates to verify here: the records stored since the lookup and those it named unstored; never
            # the batch's own (another worker's lookup may have staged the same id).
            own = {p.id for p in prepared} - known
            found = {
                p.id: [c for c in a if c not in checked.examined and c not in own]
                for p, a in zip(prepared, early, strict=True)
            }
            if late.last_seq > complete_to:  # other workers stored records since the lookup
                for p, b, a in zip(prepared, late.candidates(keys, limit, times), early, strict=True):
                    found[p.id] += [c for c in b if c not in a and c not in own]
            batch = _first_of_each(prepared, known)
            positions = {p.id: i for i, p in enumerate(batch)}
            if redo is not None:
                batch = [p for p in batch if p.id in redo]
            decided, book = self._decide(txn, batch, found, checked, drafts, published, now, earlier, late, positions)
            return [_rejected(r) for r in _first_of_each(rejections, known)] + decided, book

        def meeting(txn: Transaction, stored: dict[str, str]) -> set[str]:
            """The batch's documents that records stored since its decision before the lock (``stored``: id -> text
            hash) may change: an exact copy of one's text, or a candidate that passes verification (to the rewrite
            stage's floor). Most candidates share a stock phrase and nothing more."""
            hashes = set(stored.values())
            fresh = [
                [c for c in dict.fromkeys((*later, *first)) if c in stored]
                for later, first in zip(late.candidates(keys, limit, times), early, strict=True)
            ]
            found = self._verify(txn, prepared, fresh, late=late)
            return {
                p.id
                for p in prepared
                if p.fingerprint.content_hash in hashes or found.passed.get(p.id) or found.near.get(p.id)
            }

        def in_parts(
            txn: Transaction, stored: dict[str, str], now: datetime
        ) -> tuple[list[NewRecord], Book, int] | None:
            """The decision before the lock, made again in the parts that read what others changed since (``stored``:
            the records they stored), and how many documents it decided again; None if a part decided again read a
            part that stands."""
            first_new, first = ahead[0][1]
            redo = first.depending_on(txn.stories_changed_since(ahead[0][0][0]), meeting(txn, stored))
            if not redo:
                return first_new, first, 0
            again_new, again = decide(txn, now, first, redo)
            book = first.merged(again, redo)
            if book is None:
                return None
            replaced = {n.record.id: n for n in again_new}
            return [replaced.get(n.record.id, n) for n in first_new], book, len(redo)

        def again_before_lock(txn: Transaction) -> bool | None:
            """If others stored records since the batch's last decision before the lock, its first decision made
            again in the parts that what they stored since it touch, still before the lock: True if it was (the
            store may have moved on again meanwhile), False if the store has not moved. None if it cannot be made
            again in part (a takedown, one of the batch's ids stored, a part that reads a part that stands): that
            stays so as the store moves on, so it is left to the lock, where the batch is decided again whole.
            Under the lock the batch's decision stands if nothing was stored since the last one made."""
            seen = (again or ahead)[0][0]
            through = txn.written_through()  # read before what it guards, as in ``before_lock``
            if through == seen:
                return False
            if through[1] != ahead[0][0][1]:
                return None
            # From the first decision each time, as under the lock: a book ``in_parts`` merged knows only the parts
            # it decided again, not those it kept, so it cannot be split into parts again.
            stored = txn.stored_since(ahead[0][0][0])
            if stored.keys() & batch_ids:
                return None
            self.index.catch_up(txn)
            late.catch_up(txn)
            now = txn.now()
            if (part := in_parts(txn, stored, now)) is None:
                return None
            new, book, redone = part
            again[:] = [(through, (new, book))]
            stage_decision(txn, now, new, book)  # in place of the first's
            self.decided_again_before_lock += 1
            self.documents_decided_again_before_lock += redone
            return True

        known: set[str] = set()

        # With the rewrite stage, a text's words are counted with its shingles (docsieve/rewrites.py).
        words = {p.id: counted_words(p.fingerprint.words) for p in prepared if p.fingerprint.words is not None}

        def counted_of(new: list[NewRecord], book: Book) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
            """The shingle sets, word sets and days the batch adds to the template counts: its new texts."""
            texts = [n for n in new if n.record.id in book.different and n.shingles is not None]
            shingles = [n.shingles for n in texts if n.shingles is not None]
            days = [day_of(n.record.published_at) for n in texts]
            return shingles, [words[n.record.id] for n in texts if n.record.id in words], days

        def stage_decision(txn: Transaction, now: datetime, new: list[NewRecord], book: Book) -> None:
            """What a decision made before the lock writes there, to stand under it: the stories it founds, the
            placing's parameters and its template-count row."""
            txn.stage_stories(book, now)
            txn.prepare_placing(new)
            shingles, words, days = counted_of(new, book)
            txn.stage_shingle_counts(counted_shingles(shingles, words, days) if shingles else None)

        # The batch's decision before the lock, with the seqs it read the store after; and the last made again there.
        ahead: list[tuple[tuple[int, int], tuple[list[NewRecord], Book]]] = []
        again: list[tuple[tuple[int, int], tuple[list[NewRecord], Book]]] = []
        batch_ids = drafts.keys() | {r.id for r in rejections}

        def before_lock(txn: Transaction) -> None:  # PostgreSQL: SQLite's lock comes with the transaction
            txn.stage([drafts[p.id] for p in _first_of_each(prepared, txn.existing_ids(drafts))])
            # What other workers stored since the lookup, and their template counts, read before the lock as
            # well (under it, only what they store while this one waits), and the batch decided: the decision
            # stands if nothing is stored or taken down between here and the lock, so that it is the one the
            # batch would get under it (a lone worker's hold is then placing and linking only).
            seen = txn.written_through()
            self.index.catch_up(txn)
            late.catch_up(txn)
            self.templates.catch_up(txn)
            # A record taken down while this decision read it (one read said it was stored, the next did not)
            # fails it: decided under the lock then, where nothing changes meanwhile.
            with contextlib.suppress(KeyError):
                now = txn.now()
                ahead.append((seen, decide(txn, now)))
                stage_decision(txn, now, *ahead[0][1])
                # Others stored records while it was decided: a batch that waited its turn met them all under the
                # lock (119-124 µs of the hold a document against 47-51 alone, docs/benchmarks.md). Made again here
                # while the store moves, a few times at most, the lock's holder meets only what came after; and
                # while another holds the lock (it will store what this batch must meet), the lock is not waited
                # for but tried, for a while, the batch made again once the holder has stored. Where the last
                # batch's tries were in vain (decided again under the lock all the same), the store moves too fast
                # for them (more workers than cores): this batch goes straight to the lock, the next tries again.
                passes, tried = 0, 0
                while not self._tries_in_vain and passes < AGAIN_BEFORE_LOCK:
                    if made := again_before_lock(txn):
                        passes += 1
                    elif made is None or txn.try_write_lock() or tried == LOCK_TRIES:
                        break
                    else:
                        tried += 1
                        time.sleep(LOCK_TRY_EVERY)

        with self.templates.bound(), self.store.writing(before_lock=before_lock) as txn:
            through = txn.written_through()
            last = (again or ahead)[0] if ahead else None
            standing = last is not None and through == last[0]
            # Others stored records meanwhile, took nothing down and stored none of this batch's ids: the decision
            # before the lock is made again only in the parts that read what they changed (``Book.depending_on``).
            stored = None
            if ahead and not standing and through[1] == ahead[0][0][1]:
                stored = txn.stored_since(ahead[0][0][0])
            in_part = stored is not None and not stored.keys() & batch_ids
            if not standing:  # else nothing was stored since the catch-ups before the lock: a query each spared
                self.index.catch_up(txn)
                late.catch_up(txn)
                # Decided in part, the batch weighs boilerplate by the template counts as read before the lock: a
                # few batches fewer than the store's, which cost 40 µs a document to count under the lock
                # (docs/benchmarks.md). They are counted before the next batch's lock.
                if not in_part:
                    self.templates.catch_up(txn)
            snapshot_due = self.templates.snapshot_due(txn, len(prepared))  # made and saved after the commit
            now = txn.now()  # ranks undated documents, and stamps what the batch changes
            if last is not None and standing:
                new, book = last[1]
            elif stored is not None and in_part and (part := in_parts(txn, stored, now)) is not None:
                self.decided_again += 1
                new, book, redone = part
                self.documents_decided_again += redone
            else:  # a takedown meanwhile, or a batch's id stored by another: the whole batch decided again
                self.decided_again += len(ahead)
                self.documents_decided_again += len(prepared) if ahead else 0
                # Which of the batch's ids name a stored story, as the decision before the lock read it, if nothing
                # was taken down since (records stored meanwhile are known again here, and left out).
                earlier = ahead[0][1][1] if ahead and through[1] == ahead[0][0][1] else None
                new, book = decide(txn, now, earlier)
            self.batches_stored += 1
            # Tried before the lock (decided there, not skipped after tries in vain), and decided again under it.
            self._tries_in_vain = bool(ahead) and not self._tries_in_vain and not standing
            last_seq = txn.insert(new, now) or txn.last_seq()
            txn.save_stories(book, now, last_seq)
            counted, counted_words_of, counted_days = counted_of(new, book)
            if standing:  # the row staged before the lock is this decision's (1.5 µs a document to make again)
                blob = txn.staged_counts[1] if txn.staged_counts is not None else None
            else:
                blob = counted_shingles(counted, counted_words_of, counted_days) if counted else None
            counts_seq = txn.add_shingle_counts(blob)
        self.stories_merged += len(book.stored_merged)  # committed; a story the batch founded was never one
        # The row just written (under the lock nobody wrote one between it and the last read), if this process
        # holds the counts and read every row before it: else it is read with the others when they are next needed.
        # (A decision made again before the lock, as in part under it, weighed by the counts read before the first.)
        if counts_seq is not None and self.templates.read and not in_part and not (standing and again):
            self.templates.add(
                np.concatenate(counted),
                (np.array(counted_days, dtype=np.uint16), np.array([len(c) for c in counted], dtype=np.int64)),
            )
            if counted_words_of:
                self.templates.add_words(np.concatenate(counted_words_of))
            self.templates.last_seq = counts_seq
        # Only after the commit: an index never claims records that were rolled back. (A shared index
        # had the keys staged before the lock; only its sequence number moves now.)
        keyed = [n for n in new if n.keys is not None]  # every record but the rejected
        self.index.add(
            [n.record.id for n in keyed],
            [n.keys for n in keyed if n.keys is not None],
            last_seq,
            [index_time(n.record.published_at, now) for n in keyed],
            first_seq=last_seq - len(new) + 1,
            arrived=int(now.timestamp()),
            sketches=[sketch_row(n.shingles, n.minima) for n in keyed],
        )
        self._remember(
            Sketch(n.record.id, n.shingles, n.minima) for n in new if n.shingles is not None and n.minima is not None
        )
        if snapshot_due:
            self._save_count_snapshot(len(prepared))
        return [n.record for n in new]

    def _save_count_snapshot(self, documents: int) -> None:
        """The template counts' snapshot, once the batch is stored: the counts caught up (read whole, by a process
        that has not needed them yet) and compressed outside the write lock, staged before it (PostgreSQL) and
        placed under it, so that no worker waits while one is made. Nothing changes the counts till it is saved:
        this process's next batch reads rows only after."""
        try:
            with self.templates.bound(), self.store.reading() as txn:
                self.templates.catch_up(txn)
                made = self.templates.snapshot(txn, documents)
            if made is None:
                return
            seq, blob = made
            with self.store.writing(before_lock=lambda txn: txn.stage_count_snapshot(blob)) as txn:
                txn.save_count_snapshot(seq, blob)
        except SQLAlchemyError as error:
            # The batch is stored: failing it now would have a task retried, a request answered 500, an ingest
            # stopped, for documents already in. The snapshot is due still, and made again after the next batch.
            logger.warning("the template counts' snapshot was not saved (made again after the next batch): %s", error)
            return
        self.templates.saved(seq, len(blob))  # saved, or another as new was there: the rows are bounded either way

    def _remember(self, sketches: Iterable[Sketch]) -> None:
        """Keep sketches in the cache; past its size, the oldest quarter goes (news is copied within days,
        so the records stored or asked for last are the likeliest candidates of the next batches)."""
        budget = self.settings.sketch_cache_mb << 20
        for sketch in sketches:
            if sketch.record_id in self._sketches:
                continue
            self._sketches[sketch.record_id] = sketch
            self._sketch_bytes += _cached_size(sketch)
            if self._sketch_bytes > budget:
                oldest = iter(list(self._sketches))
                while self._sketch_bytes > budget * 3 // 4:
                    self._sketch_bytes -= _cached_size(self._sketches.pop(next(oldest)))

    def prepare(self, batch: list[Item]) -> tuple[list[Rejection], list[Prepared]]:
        """Extraction, fingerprints and language (``prepare.prepare``)."""
        return prepare(batch, self.settings)

    def close(self, flush: bool = True) -> None:
        """``flush``: write the index's last batches to its files (else the next start reads them from the
        store: the way after a failure or an interruption, which may have left a transaction of this process
        open)."""
        if flush and isinstance(self.index, SegmentIndex) and self.index.unwritten:
            with self.store.writing() as txn:  # the last batches into the index's files: the next start reads them
                self.index.flush(txn)
        self.index.close()
        self.store.close()

    def _verify(
        self,
        txn: Transaction,
        batch: list[Prepared],
        stored: list[list[str]],
        within: Within | None = None,
        exact: list[bool] | None = None,
        late: CandidateIndex | None = None,
    ) -> Checked:
        """The candidates of each document of the batch that pass verification: the ``stored`` records (all the batch's
        pairs at once), then the earlier documents of the batch that ``within`` passed; a document that is an
        ``exact`` copy is not verified at all. ``late``: an index whose last lookup named stored candidates too, whose
        sketches it holds (the records stored since the lookup)."""
        exact = exact or [False] * len(batch)
        summaries = self._summaries_of(txn, {c for i, found in enumerate(stored) if not exact[i] for c in found}, late)
        doc_of_pair: list[int] = []
        candidate_sizes: list[int] = []
        candidate_minima: list[np.ndarray] = []
        targets: list[str] = []
        for i, found in enumerate(stored):
            if exact[i]:
                continue
            for c in found:
                if (summary := summaries.get(c)) is not None:
                    doc_of_pair.append(i)
                    candidate_sizes.append(summary[0])
                    candidate_minima.append(summary[1])
                    targets.append(c)
        checked = Checked({p.id: [] for p in batch}, {}, set(summaries))
        verified = Within({}, {})
        if doc_of_pair:
            verified = self._verify_stored(txn, batch, checked, doc_of_pair, candidate_sizes, candidate_minima, targets)
        assert within is None or not any(exact), "the batch's own pairs are verified before its exact copies are known"
        own = within or Within({}, {})
        # Each document's stored candidates, then its earlier documents of the batch (one id twice in a batch: the
        # first's, then the second's).
        for i, p in enumerate(batch):
            for kind, parts in (
                (checked.passed, (verified.passed, own.passed)),
                (checked.near, (verified.near, own.near)),
            ):
                for part in parts:
                    if i in part:
                        kind.setdefault(p.id, []).extend(part[i])
        return checked

    def _verify_stored(
        self,
        txn: Transaction,
        batch: list[Prepared],
        checked: Checked,
        doc_of_pair: list[int],
        candidate_sizes: list[int],
        candidate_minima: list[np.ndarray],
        targets: list[str],
    ) -> Within:
        """``_verify``'s pairs of a document and a stored record (``targets``): those that pass, by the document's
        place in the batch; the stored records' shingle sets into ``checked``."""
        # Most candidates share a stock phrase and nothing more: ruled out on their sketches, so that only the
        # others' shingle sets are made (from the stored texts, for records this process has not cached).
        docs = np.asarray(doc_of_pair, dtype=np.int64)
        near_floor = self.settings.rewrite_floor if self.settings.rewrites else None
        hope = np.flatnonzero(
            ~hopeless(
                np.array([len(p.fingerprint.shingles) for p in batch], dtype=np.int64)[docs],
                np.asarray(candidate_sizes, dtype=np.int64),
                np.array([p.fingerprint.minima for p in batch])[docs],
                np.array(candidate_minima),
                self.settings,
                near_floor,
            )
        ).tolist()
        sketches = self._sketches_of(txn, {targets[k] for k in hope})
        hope = [k for k in hope if targets[k] in sketches]
        candidate_shingles = [sketches[targets[k]].shingles for k in hope]
        strong = verified_pairs(
            [p.fingerprint.shingles for p in batch],
            np.array([p.fingerprint.minima for p in batch]),
            [doc_of_pair[k] for k in hope],
            candidate_shingles,
            [candidate_minima[k] for k in hope],
            self.settings,
            near_floor,
        )
        found = Within({}, {})
        for pair, (jaccard, containment) in strong.items():
            k, other = hope[pair], candidate_shingles[pair]
            smaller = min(len(other), len(batch[doc_of_pair[k]].fingerprint.shingles))
            kind = found.passed if passes(jaccard, containment, smaller, self.settings) else found.near
            kind.setdefault(doc_of_pair[k], []).append((targets[k], jaccard, containment, len(other)))
            checked.shingles[targets[k]] = other
        return found

    def _decide(
        self,
        txn: Transaction,
        batch: list[Prepared],
        found: dict[str, list[str]],
        checked: Checked,
        drafts: dict[str, NewRecord],
        published: dict[str, datetime | None],
        now: datetime,
        earlier: Book | None = None,
        late: CandidateIndex | None = None,
        positions: dict[str, int] | None = None,
    ) -> tuple[list[NewRecord], Book]:
        """Each document of the batch placed in a story, in arrival order (docsieve/stories.py). ``checked``:
        the verified candidates of the lookup before the lock; ``found``: those stored since, to verify;
        ``drafts``: the records to store, all but their place; ``earlier``: this batch's decision before the lock,
        whose reads of the batch's story names stand (``Book.reserve``); ``late``: the index of the records stored since
        the lookup, which holds the sketches of those ``found`` names; ``positions``: each document's place in the whole
        batch (its rank among documents that arrived together), when ``batch`` is a part of it."""
        book = Book(
            txn,
            self.settings,
            lambda ids: {i: s.shingles for i, s in self._sketches_of(txn, ids).items()},
            self.templates,
            self._rewrite_scores(txn, batch) if self.settings.rewrites else None,
            self._day_slots(txn, batch) if self.settings.weekday_check else None,
            self._figures_of(txn, batch) if self.settings.figure_check else None,
        )
        book.shingles.update({p.id: p.fingerprint.shingles for p in batch})
        book.reserve((p.id for p in batch), earlier)
        stored_texts = txn.by_hash(p.fingerprint.content_hash for p in batch)
        # An exact copy of a stored text, or of an earlier text of this batch, needs no verification.
        exact, texts = [], set(stored_texts)
        for p in batch:
            exact.append(p.fingerprint.content_hash in texts)
            texts.add(p.fingerprint.content_hash)
        # The records stored since the lookup (the earlier documents of the batch were verified before the lock,
        # and an exact copy is no candidate: its original is).
        since = self._verify(txn, batch, [found[p.id] for p in batch], exact=exact, late=late)
        book.shingles.update(checked.shingles)
        book.shingles.update(since.shingles)
        copies = {p.id for p, is_exact in zip(batch, exact, strict=True) if is_exact}
        passed, near = (
            [
                ([] if exact[i] else [c for c in kind(checked).get(p.id, []) if c[0] not in copies])
                + kind(since).get(p.id, [])
                for i, p in enumerate(batch)
            ]
            for kind in (lambda c: c.passed, lambda c: c.near)
        )
        # Only the candidates that passed (or reach the rewrite stage's floor), and the records of texts stored
        # already, are looked up in stories.
        batch_ids = {p.id for p in batch}
        book.load(
            {t for pairs in (*passed, *near) for t, _, _, _ in pairs if t not in batch_ids} | set(stored_texts.values())
        )
        copies_of: list[list[str]] = [[] for _ in batch]
        near_of: list[list[str]] = [[] for _ in batch]
        for i, p in enumerate(batch):
            size = len(p.fingerprint.shingles)
            for kind, found_of in ((passed, copies_of), (near, near_of)):
                for other, jaccard, containment, other_size in kind[i]:
                    book.overlaps[(p.id, other)] = Overlap(
                        jaccard, containment, min(size, other_size), size <= other_size
                    )
                    found_of[i].append(other)
        if book.rewrites is not None:  # the canonicals the rewrite stage may score, read at once
            book.rewrites.read(
                book.canonical_of[book.placements[c].story_id]
                for found in near_of
                for c in found
                if c in book.placements
            )
        # The records each document may be checked against (its candidates and their canonicals): their days and
        # figures read at once.
        book.read_marks_against(
            {
                p.id: [
                    other
                    for c in copies_of[i] + near_of[i]
                    if c in book.placements
                    for other in (c, book.canonical_of[book.placements[c].story_id])
                ]
                for i, p in enumerate(batch)
            }
        )
        first_with_text: dict[str, str] = {}
        for i, p in enumerate(batch):
            fp = p.fingerprint
            record = Placement(
                p.id,
                "",
                Status.CANONICAL,
                fp.content_hash,
                rank_key(
                    self.settings.canonical,
                    published[p.id],
                    now,
                    BATCH_SEQ + (i if positions is None else positions[p.id]),
                ),
            )
            if fp.content_hash in stored_texts:
                book.add_exact(record, stored_texts[fp.content_hash])
            elif fp.content_hash in first_with_text:
                book.add_exact(record, first_with_text[fp.content_hash])
            else:
                first_with_text[fp.content_hash] = p.id
                book.decide(
                    record,
                    [c for c in copies_of[i] if c in book.placements],
                    [c for c in near_of[i] if c in book.placements],
                )
        new = []
        for p in batch:
            placed, draft = book.placements[p.id], drafts[p.id]
            canonical = book.canonical_of[placed.story_id]
            # Every record keeps its shingles and keys, exact copies too: any record may have to found a story
            # or become one's canonical (a take-over, a split, a takedown), and must then be found and measured.
            stored = replace(
                draft.record,
                status=placed.status,
                duplicate_of=None if placed.status is Status.CANONICAL else canonical,
                similarity=placed.similarity,
                method=placed.method,
                story_id=placed.story_id,
                jaccard=placed.jaccard,
                containment=placed.containment,
            )
            new.append(NewRecord(stored, draft.shingles, draft.keys, draft.minima))
        return new, book

    def _restemmed(self, batch: list[Prepared]) -> list[Prepared]:
        """The batch with its words stemmed as the store's are."""
        made = stored_word_sets([p.document.text for p in batch], self.settings.word_stems)
        return [replace(p, fingerprint=replace(p.fingerprint, words=w)) for p, w in zip(batch, made, strict=True)]

    def _rewrite_scores(self, txn: Transaction, batch: list[Prepared]) -> RewriteScores:
        """The rewrite stage's scores for a batch: the words of its documents from their fingerprints, stored
        records' from this process's cache, else made again from their texts."""
        own = {p.id: p.fingerprint.words for p in batch if p.fingerprint.words is not None}
        return RewriteScores(
            self.templates, self._words.reader(own, partial(txn.word_sets, stems_of=self.settings.word_stems))
        )

    def _day_slots(self, txn: Transaction, batch: list[Prepared]) -> Callable[[Iterable[str]], dict[str, Slots]]:
        """The weekday slots of records (docsieve/dates.py): the batch's from their fingerprints, stored ones' from
        this process's cache, else read from their texts."""
        own = {p.id: dated(p.fingerprint.days, p.document.published) for p in batch if p.fingerprint.days is not None}
        return self._days.reader(own, txn.day_slots)

    def _figures_of(self, txn: Transaction, batch: list[Prepared]) -> Callable[[Iterable[str]], dict[str, Figures]]:
        """The figures of records (docsieve/figures.py): the batch's from their fingerprints, stored ones' from this
        process's cache, else read from their texts."""
        own = {p.id: p.fingerprint.figures for p in batch if p.fingerprint.figures is not None}
        return self._figures.reader(own, txn.figures)

    def _summaries_of(
        self, txn: Transaction, ids: Iterable[str], late: CandidateIndex | None = None
    ) -> dict[str, tuple[int, np.ndarray]]:
        """Shingle counts and bin minima of stored records: from this process's cache, the indexes that named
        them (``late`` too), else the store."""
        ids = set(ids)
        found = {c: (len(self._sketches[c].shingles), self._sketches[c].minima) for c in ids if c in self._sketches}
        found.update(self.index.summaries(ids - found.keys()))  # the embedded index keeps them
        if late is not None:
            found.update(late.summaries(ids - found.keys()))
        found.update(txn.summaries(ids - found.keys()))
        return found

    def _sketches_of(self, txn: Transaction, ids: Iterable[str]) -> dict[str, Sketch]:
        """Shingles of stored records: from this process's cache, else read once from the store."""
        ids = set(ids)
        found = {c: self._sketches[c] for c in ids if c in self._sketches}
        loaded = txn.sketches(ids - found.keys(), self.settings)
        self._remember(loaded.values())  # other workers' records
        found.update(loaded)
        return found

    def similar(
        self, items: Iterable[Item], limit: int, everything: bool = False
    ) -> Iterator[tuple[str, list[Match] | str]]:
        """For each input, the stored records closest to it (nothing is stored), or why it was rejected.
        The index answers: the records of its window; ``everything`` searches every stored record's keys
        instead (a pass over the store)."""
        wanted = max(limit, self.settings.max_candidates)
        for batch in batched(items, self.settings.batch_size):
            rejections, prepared = self.prepare(batch)
            for rejection in rejections:
                yield rejection.source, rejection.reason
            keys = [p.keys for p in prepared]
            with self.store.reading() as txn:
                if everything:
                    found: list[list[str]] = [[] for _ in prepared]
                    for rows in chunked_rows(txn.index_rows(0), 1 << 22):
                        part = MemoryIndex(common=self.settings.common_key_records)
                        part.add(rows.ids, rows.keys, rows.last_seq, rows.times)
                        for ids, more in zip(found, part.candidates(keys, wanted), strict=True):
                            ids += more
                else:
                    self.index.catch_up(txn)
                    found, _ = self.index.lookup(keys, wanted)
                for p, ids in zip(prepared, found, strict=True):
                    ids += txn.by_hash([p.fingerprint.content_hash]).values()
                    scored = []
                    for sketch in self._sketches_of(txn, ids).values():
                        jaccard, containment = jaccard_and_containment(p.fingerprint.shingles, sketch.shingles)
                        if jaccard or containment:
                            scored.append((max(jaccard, containment), jaccard, containment, sketch.record_id))
                    scored.sort(reverse=True)
                    records = txn.records([rid for _, _, _, rid in scored[:limit]])
                    matches = [Match(records[rid], j, c) for _, j, c, rid in scored[:limit] if rid in records]
                    yield p.document.source, matches


T = TypeVar("T", Rejection, Prepared)


def _first_of_each(items: list[T], known: set[str]) -> list[T]:
    """Items whose record id is neither stored already nor earlier in the batch."""
    seen = set(known)
    first = []
    for item in items:
        if item.id not in seen:
            seen.add(item.id)
            first.append(item)
    return first


def _cached_size(sketch: Sketch) -> int:
    """Bytes a cached sketch holds: its arrays and about 400 more for the objects and the dict entry."""
    return sketch.shingles.nbytes + sketch.minima.nbytes + 400


def _draft(p: Prepared, published: datetime | None) -> NewRecord:
    """The record a prepared document becomes, all but its place (status, story, link), which it gets under
    the lock."""
    doc, fp = p.document, p.fingerprint
    record = Record(
        id=p.id,
        source=doc.source,
        status=Status.CANONICAL,
        content_hash=fp.content_hash,
        language=doc.language,
        title=doc.title,
        text=doc.text,
        images=doc.images,
        url=doc.url,
        published=doc.published,
        author=doc.author,
        outlet=doc.outlet,
        published_at=published,
    )
    return NewRecord(record, shingles=fp.shingles, keys=p.keys, minima=fp.minima)


def _rejected(rejection: Rejection) -> NewRecord:
    return NewRecord(
        Record(
            id=rejection.id,
            source=rejection.source,
            status=Status.REJECTED,
            content_hash=rejection.raw_hash,
            reason=rejection.reason,
        )
    )
