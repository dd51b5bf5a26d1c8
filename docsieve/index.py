"""The candidate index: LSH band keys and sampled-shingle keys, each pointing at the records that have
them. Candidates for a new document are the records that share keys with it, most shared first.

Two implementations behind one protocol (which calls happen under the store's write lock is said
in ``CandidateIndex``):

- ``SegmentIndex``, the embedded default: sorted segments of (key, record) pairs, one segment a batch,
  merged log-structured style. For a SQLite store they are files beside it (``<store>.index/``), mapped
  into memory and read by key, so opening a store of any size costs nothing and a process's memory holds
  only the pages its lookups touch; for a store without a file they live in memory. Lookups are made for
  a whole batch at once, one ``searchsorted`` per segment.
- ``worker.redis_index.RedisIndex``, the deployment's index shared by all workers (found by the scheme of
  ``DOCSIEVE_INDEX_URL`` among the ``docsieve.indexes`` entry points: the core never imports it).

Both derive from the store: every record keeps its keys (``records.index_keys``), written in the same
transaction as the record, and an index catches up from those rows by sequence number, so it can always
be rebuilt and never disagrees with the store for long. (A table with one row per key was the first
design: 57 rows a document made the SQLite writes cost more than the rest of the pipeline.)

What is a candidate (both indexes):
- **The window** (``DOCSIEVE_INDEX_WINDOW``, days): a record is a candidate for a document only if their
  times are at most that far apart. A record's time is its publication time, else (or if that is in the
  future) its arrival. News is copied within days; the window keeps what a lookup reads the size of the
  window however large the archive grows.
- **Common keys** (``DOCSIEVE_COMMON_KEY_RECORDS``): a key that more records hold than this is boilerplate
  (a stock phrase sampled as a key) and says nothing of which record a document copies: lookups skip it,
  and a document is found through its other keys. Nothing is dropped to make room: every record keeps
  every key, however many records came before it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing

from docsieve.fingerprint import MINIMA_BITS, SAMPLE_TAG, unpack_keys
from docsieve.models import Fingerprint
from docsieve.settings import Settings, SettingsError


def keys_of(fingerprint: Fingerprint) -> np.ndarray:
    """All index keys of a fingerprint: band keys are salted by band and sample keys tagged, so they are
    distinct but for a 64-bit collision, which would only count one shared key twice."""
    return np.concatenate((fingerprint.band_keys, fingerprint.winnow_keys))


# Within one batch (at most DOCSIEVE_BATCH_SIZE documents), a key pairs each document with the earliest
# this many before it that have it: a batch is bounded, so this bounds its pairs without touching the
# archive, which the stored index searches whole.
POSTINGS_PER_KEY = 8
ID_WIDTH = 20  # record ids are 20 hex characters; segments keep them at this fixed width
DAY = 86_400
UNDATED = np.iinfo(np.int64).min  # a query without a publication time: the window does not bound it


def index_time(published: datetime | None, arrived: datetime) -> int:
    """A record's time for the window, in seconds: its publication, unless unknown or in the future
    (then its arrival)."""
    return int((published if published is not None and published <= arrived else arrived).timestamp())


def query_time(published: datetime | None, arrived: datetime) -> int | None:
    """A document's time for its lookup: its publication time; none (the whole index) if it has none, so
    an undated page still finds a story published long before it arrived."""
    return index_time(published, arrived) if published is not None else None


# A stored record as an index reads it: seq, id, keys, index time and arrival (seconds), and its sketch (the
# store's ``sketch`` column: its shingle count and bin minima, as the index keeps them; None if not stored).
IndexRow = tuple[int, str, bytes, int, int, bytes | None]


class StoredRows(Protocol):
    def index_rows(self, after_seq: int) -> Iterable[IndexRow]:
        """The records stored after ``after_seq``, in order."""

    def newest_times(self, after_seq: int) -> tuple[int | None, int | None]:
        """The newest time of the dated rows after ``after_seq`` (whose time is not their arrival), and the newest
        arrival of all of them; None where there is none."""

    def id_at(self, seq: int) -> str | None:
        """The id of the record stored with that sequence number."""

    def last_seq(self) -> int:
        """The newest record's sequence number."""


class CandidateIndex(Protocol):
    """What the pipeline needs of an index. ``lookup`` (and its staging) runs before the store's write lock,
    ``catch_up`` under it, ``add`` just after the commit."""

    def catch_up(self, store: StoredRows) -> None:
        """Add the records stored since the index last looked (by other processes, or before a crash)."""

    def add(
        self,
        record_ids: Sequence[str],
        keys: Sequence[np.ndarray],
        last_seq: int,
        times: Sequence[int],
        first_seq: int | None = None,
        arrived: int | None = None,
        sketches: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        """Add this batch's records, just committed with sequence numbers ``first_seq`` to ``last_seq``
        (rejected records included) at ``arrived`` (seconds), with their times (``index_time``) and, where
        known, their sketches (``sketch_row``: an index may keep them for ``summaries``)."""

    def close(self) -> None: ...

    def remove(self, record_id: str, keys: bytes) -> int:
        """Forget a record taken down (its keys as stored); returns how many postings went."""

    def summaries(self, ids: Iterable[str]) -> dict[str, tuple[int, np.ndarray]]:
        """The shingle counts and bin minima of the last lookup's candidates among ``ids`` that the index
        keeps (the rest are read from the store)."""

    def lookup(
        self,
        queries: Sequence[np.ndarray],
        limit: int,
        times: Sequence[int | None] | None = None,
        stage_ids: Sequence[str] | None = None,
    ) -> tuple[list[list[str]], int]:
        """Candidates for each key array (within the window of its ``query_time``, if it has one), and the
        store sequence number the answer is complete up to: records stored after it must still be looked at
        (under the lock) before deciding. With ``stage_ids`` a shared index also publishes the arrays under
        those record ids."""


@dataclass(slots=True)
class Rows:
    """Records' index entries read from the store, one after another."""

    ids: list[str]
    keys: list[np.ndarray]
    times: list[int]
    arrived: list[int] = field(default_factory=list)
    last_seq: int = 0
    sketches: list[np.ndarray | None] = field(default_factory=list)


def read_rows(rows: Iterable[IndexRow]) -> Rows:
    read = Rows([], [], [])
    for seq, record_id, blob, when, arrived, sketch in rows:
        read.ids.append(record_id)
        read.keys.append(unpack_keys(blob))
        read.times.append(when)
        read.arrived.append(arrived)
        read.last_seq = max(read.last_seq, seq)
        read.sketches.append(_sketch_of(sketch))
    return read


def _sketch_of(blob: bytes | None) -> np.ndarray | None:
    """A stored sketch as a segment keeps it; None where there is none (or it is not of this width)."""
    if blob is None or len(blob) != SKETCH_WIDTH * 4:
        return None
    return np.frombuffer(blob, dtype=np.uint32)


def chunked_rows(rows: Iterable[IndexRow], postings: int) -> Iterator[Rows]:
    """The rows in pieces of about ``postings`` keys each: a whole store is never held at once. A piece's rows as
    read are let go before it is handed on (held with its arrays and the segment made of them, they were a third of
    a rebuild's peak: docs/benchmarks.md)."""
    piece: list[IndexRow] = []
    size = 0
    for row in rows:
        piece.append(row)
        size += len(row[2]) // 6  # keys of 4 and 8 bytes (or 8 in older records): about right
        if size >= postings:
            # Handed on through a list it leaves at once: a local name would keep the piece alive in this
            # generator while the caller works on it.
            read, piece, size = [read_rows(piece)], [], 0
            yield read.pop()
    if piece:
        read, piece = [read_rows(piece)], []
        yield read.pop()


def segments_of(rows: Iterable[IndexRow], postings: int) -> Iterator[_Segment]:
    """Segments of the rows, about ``postings`` keys each; a piece's arrays are let go before its segment is
    handed on, for the same reason."""
    for read in chunked_rows(rows, postings):
        segment = _segment(read.ids, read.keys, read.times, read.arrived, read.last_seq, read.sketches)
        del read
        yield segment


# index URL scheme -> a factory (url, prefix, common=, window=) -> CandidateIndex; window: days, as the setting
ENTRY_POINTS = "docsieve.indexes"


def open_index(settings: Settings, resident: bool = False) -> CandidateIndex:
    """The index the settings name: the embedded one (files beside a SQLite store, else in memory), or the
    shared one ``DOCSIEVE_INDEX_URL`` points at, made by whichever installed package registered its URL
    scheme (the deployment's Redis index comes with ``docsieve[deploy]``)."""
    if not settings.index_url:
        return SegmentIndex(index_directory(settings), settings.index_window, settings.common_key_records, resident)
    from importlib.metadata import entry_points
    from urllib.parse import urlsplit

    scheme = urlsplit(settings.index_url).scheme
    found = entry_points(group=ENTRY_POINTS, name=scheme)
    if not found:
        raise SettingsError(f"DOCSIEVE_INDEX_URL: no index is installed for {scheme or 'a URL without a'}:// URLs")
    try:
        factory = next(iter(found)).load()
    except ImportError as exc:
        raise SettingsError(
            f"DOCSIEVE_INDEX_URL: the {scheme}:// index needs the deployment's packages "
            f"(pip install 'docsieve[deploy]'): {exc}"
        ) from None
    return factory(
        settings.index_url, settings.queue_prefix, common=settings.common_key_records, window=settings.index_window
    )


def index_directory(settings: Settings) -> Path | None:
    """Where the embedded index keeps its files: beside a SQLite store file (``<store>.index``); none (in
    memory) for a store in memory or on a server without a shared index."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.store)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(f"{url.database}.index")


@dataclass(slots=True)
class _Segment:
    keys: np.ndarray  # int64, sorted
    owners: np.ndarray  # int32 positions in ids, times and arrived, parallel to keys
    ids: np.ndarray  # S20 record ids
    times: np.ndarray  # int64 seconds: index_time, for the window
    arrived: np.ndarray  # int64 seconds: when each was stored, for forgetting
    sketches: np.ndarray  # uint32, SKETCH_WIDTH a record: its shingle count and bin minima (or UNKNOWN)
    name: str = ""  # its files' stem; "" while in memory only
    last_seq: int = 0
    # The spans of its records' clocks (see Horizon), kept: a mapped segment's would be a pass over a file.
    spans: dict[str, list[int]] = field(default_factory=dict)
    fence: np.ndarray | None = None  # a mapped segment's every FENCE-th key, in memory (see search)
    directory: Path | None = None  # where a mapped segment's files are (see take)
    resident: bool = False  # lookups go through the mappings however few they are (SegmentIndex's resident)

    def __post_init__(self) -> None:
        if not self.spans and len(self.ids):
            self.spans = _spans(self.times, self.arrived)

    def meets(self, query_times: np.ndarray, window: int) -> np.ndarray:
        """For each query time, whether this segment holds a record whose time is within the ``window`` of it
        (an UNDATED query: always). Its records' times span its dated records' and its undated ones' arrivals."""
        spans = [self.spans[kind] for kind in ("dated", "undated") if kind in self.spans]
        if not spans:
            return np.zeros(len(query_times), dtype=bool)
        first, last = min(span[0] for span in spans), max(span[1] for span in spans)
        return (query_times == UNDATED) | ((query_times >= first - window) & (query_times <= last + window))

    def search(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each of the sorted ``keys`` starts and ends in this segment's keys. A few keys (a document or
        two) are looked for by reading the one block of FENCE keys the fence points at (``_fenced``); many
        keys (a batch) search the mapped file, most of which they touch either way."""
        if self.fence is None or self.resident:
            return self._searched(keys)
        if len(keys) > FEW:
            # Through the mapping a part of the keys at a time, the pages each part touched given back before the
            # next: searched whole, a batch held every page of the largest segments' keys at once.
            left, right = np.empty(len(keys), dtype=np.intp), np.empty(len(keys), dtype=np.intp)
            for at in range(0, len(keys), SEARCH_PART):
                left[at : at + SEARCH_PART], right[at : at + SEARCH_PART] = self._searched(keys[at : at + SEARCH_PART])
                _release(self.keys)
            return left, right
        return self._fenced(keys)

    def _searched(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Where a key ends is searched for only where it is found: most of a batch's keys are new.
        # (One search of the whole batch instead of two: 20-45% of the search's time on a 200k store.)
        left = np.searchsorted(self.keys, keys, "left")
        right = left.copy()
        inside = np.flatnonzero(left < len(self.keys))
        found = inside[self.keys[left[inside]] == keys[inside]]
        right[found] = np.searchsorted(self.keys, keys[found], "right")
        return left, right

    def _fenced(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each key starts and ends, from the blocks of FENCE keys the fence points at, each block read
        once for both ends (a one-document lookup in a 1M-record store read some 2,900 blocks, each from a file
        opened for it: 0.3 of its 0.4 s)."""
        assert self.fence is not None
        # The answer is in (block * FENCE, next block]: block -1 is position 0.
        starts, stops = (np.searchsorted(self.fence, keys, "left") - 1, np.searchsorted(self.fence, keys, "right") - 1)
        spans = {
            b: (b * FENCE + 1 if b >= 0 else 0, min((b + 1) * FENCE, len(self.keys)))
            for b in np.unique(np.concatenate((starts, stops))).tolist()
        }
        blocks = self._read_runs("keys", spans)

        def ends(block: np.ndarray, side: Literal["left", "right"]) -> np.ndarray:
            found = np.zeros(len(keys), dtype=np.int64)
            for b in np.unique(block).tolist():
                mine = block == b
                found[mine] = spans[b][0] + np.searchsorted(blocks[b], keys[mine], side)
            return found

        return ends(starts, "left"), ends(stops, "right")

    def _read_runs(self, part: str, spans: dict[int, tuple[int, int]]) -> dict[int, np.ndarray]:
        """``part``'s entries from ``lo`` to ``hi`` for each of the spans, read from its file, opened once."""
        array = getattr(self, part)
        runs = {b: array[:0] for b, (lo, hi) in spans.items() if lo == hi}  # (block -1 holds no key)
        wanted = {b: span for b, span in spans.items() if b not in runs}

        def held() -> dict[int, np.ndarray]:
            return runs | {b: np.asarray(array[lo:hi]) for b, (lo, hi) in wanted.items()}

        if self.directory is None or not wanted:  # a segment in memory, or nothing to read
            return held()
        try:
            handle = open(self.directory / f"{self.name}.{part}", "rb", buffering=0)  # noqa: SIM115 (below)
        except FileNotFoundError:  # merged away by another process since it was mapped: the mapping still holds it
            return held()
        size = array.dtype.itemsize
        with handle:
            fd = handle.fileno()
            for b, (lo, hi) in wanted.items():
                read = os.pread(fd, (hi - lo) * size, lo * size)
                if len(read) != (hi - lo) * size:  # the file is its manifest's length: never, but never silently
                    raise OSError(f"{self.name}.{part}: {len(read)} bytes at {lo * size}, {(hi - lo) * size} asked")
                runs[b] = np.frombuffer(read, dtype=array.dtype)
        return runs

    def take(self, part: str, at: np.ndarray, width: int = 1, mapped: bool = False) -> np.ndarray:
        """``part``'s entries at positions ``at`` (with a ``width``, its rows of that many entries). From a
        mapped segment, few entries are read from the file rather than through the mapping: on this kernel a
        fault maps the whole large folio around the page (up to 2 MB, whatever madvise says), so a one-document
        lookup through the mappings of a 1M-document index took 280 MB of the process's memory. Many entries,
        or any for a lookup of more than FEW keys (``mapped``: a batch's, whose search went through the mappings
        too), go through the mapping: a batch's candidates' ids were read one ``pread`` each, 15,000 a batch at
        300,000 records (docs/benchmarks.md)."""
        array = getattr(self, part)
        rows = array.reshape(-1, width) if width > 1 else array
        if self.directory is None or self.resident or mapped or len(at) * width > FEW or not len(at):
            return np.asarray(rows[at])
        first, last = int(at.min()), int(at.max())
        if (last - first) * width < FEW:  # one read for a run (a key's postings)
            run = self._read_runs(part, {0: (first * width, (last + 1) * width)})[0]
            return (run.reshape(-1, width) if width > 1 else run)[at - first]
        read = self._read_runs(part, {i: (p * width, (p + 1) * width) for i, p in enumerate(at.tolist())})
        entries = np.concatenate([read[i] for i in range(len(at))])
        return entries.reshape(-1, width) if width > 1 else entries

    def id_list(self) -> list[str]:
        return np.asarray(self.ids).astype(f"U{ID_WIDTH}").tolist()

    def describe(self) -> dict:
        return {
            "name": self.name,
            "records": len(self.ids),
            "postings": len(self.keys),
            "spans": self.spans,
            "last_seq": self.last_seq,
        }


def sketch_row(shingles: np.ndarray | None, minima: np.ndarray | None) -> np.ndarray:
    """A record's sketch as the index keeps it: its shingle count, then its bin minima; UNKNOWN if not given."""
    if shingles is None or minima is None:
        return UNKNOWN_SKETCH
    return np.concatenate(([len(shingles)], minima)).astype(np.uint32)


def _segment(
    ids: Sequence[str],
    keys: Sequence[np.ndarray],
    times: Sequence[int],
    arrived: Sequence[int],
    last_seq: int,
    sketches: Sequence[np.ndarray | None] | None = None,
) -> _Segment:
    if any(len(r) > ID_WIDTH for r in ids):
        raise ValueError(f"record ids longer than {ID_WIDTH} characters cannot be indexed")
    owners = np.repeat(np.arange(len(keys), dtype=np.int32), [len(k) for k in keys])
    all_keys = np.concatenate(keys).astype(np.int64, copy=False) if keys else np.zeros(0, dtype=np.int64)
    order = np.argsort(all_keys, kind="stable")
    all_keys, owners = all_keys[order], owners[order]  # the unsorted let go at once
    del order
    return _Segment(
        all_keys,
        owners,
        np.array(list(ids), dtype=f"S{ID_WIDTH}"),
        np.asarray(times, dtype=np.int64),
        np.asarray(arrived, dtype=np.int64),
        np.concatenate([UNKNOWN_SKETCH if s is None else s for s in sketches or [None] * len(ids)])
        if len(ids)
        else np.zeros(0, dtype=np.uint32),
        last_seq=last_seq,
    )


def _dated(times: np.ndarray, arrived: np.ndarray) -> np.ndarray:
    """Which records have a publication time of their own (an undated record's time is its arrival)."""
    return np.asarray(times) != np.asarray(arrived)


def _spans(times: np.ndarray, arrived: np.ndarray) -> dict[str, list[int]]:
    """The spans of records' clocks (see Horizon): their arrivals, and the times of the dated and the undated."""
    if not len(times):
        return {}
    dated = _dated(times, arrived)
    spans = {"arrived": [int(arrived.min()), int(arrived.max())]}
    if dated.any():
        spans["dated"] = [int(times[dated].min()), int(times[dated].max())]
    if not dated.all():
        spans["undated"] = [int(arrived[~dated].min()), int(arrived[~dated].max())]
    return spans


@dataclass(frozen=True, slots=True)
class Horizon:
    """What the index forgets: a dated record published more than two windows before the newest
    publication, an undated one stored more than two windows before the newest arrival. So the index stays
    the size of two windows of a feed however long it runs; an undated page does not push dated records
    out; and a record can still be found by every document published within a window of the newest."""

    dated: int | None  # records published before this go
    undated: int  # records without a publication time stored before this go

    @classmethod
    def of(cls, segments: Sequence[_Segment], window: int, seen: Newest = (None, 0)) -> Horizon | None:
        """The horizon of the segments' records, and of the newest times ``seen`` among records the index no
        longer holds."""
        if not window or not segments:
            return None
        published, arrived = newest(segments, seen)
        return cls(None if published is None else published - 2 * window, arrived - 2 * window)

    def live(self, times: np.ndarray, arrived: np.ndarray) -> np.ndarray:
        dated = _dated(times, arrived)
        published_in = times >= self.dated if self.dated is not None else np.ones(len(times), dtype=bool)
        return np.where(dated, published_in, arrived >= self.undated)

    def all_gone(self, segment: _Segment) -> bool:
        return all(self._past(segment, kind, 1) for kind in ("dated", "undated") if kind in segment.spans)

    def some_gone(self, segment: _Segment) -> bool:
        return any(self._past(segment, kind, 0) for kind in ("dated", "undated") if kind in segment.spans)

    def _past(self, segment: _Segment, kind: str, end: int) -> bool:
        limit = self.dated if kind == "dated" else self.undated
        return limit is not None and segment.spans[kind][end] < limit


Newest = tuple[int | None, int]  # the newest publication (None: no dated record) and arrival


def newest(segments: Iterable[_Segment], seen: Newest = (None, 0)) -> Newest:
    """The newest publication and arrival among the segments' records and ``seen``."""
    for segment in segments:
        if segment.spans:
            seen = later(
                seen, (segment.spans["dated"][1] if "dated" in segment.spans else None, segment.spans["arrived"][1])
            )
    return seen


def later(a: Newest, b: Newest) -> Newest:
    """The newer of each time."""
    return max((t for t in (a[0], b[0]) if t is not None), default=None), max(a[1], b[1])


@dataclass(frozen=True, slots=True)
class _MergedRecords:
    """The records of two segments merged, those past the horizon dropped (their sketches: ``sketches``)."""

    ids: np.ndarray
    times: np.ndarray
    arrived: np.ndarray
    newer_from: int  # where the newer segment's records start, before any are dropped
    live: np.ndarray | None  # which of both segments' records stay (None: all)
    renumbered: np.ndarray | None  # where each that stays is now

    @classmethod
    def of(cls, older: _Segment, newer: _Segment, horizon: Horizon | None) -> _MergedRecords:
        ids, times = np.concatenate((older.ids, newer.ids)), np.concatenate((older.times, newer.times))
        arrived = np.concatenate((older.arrived, newer.arrived))
        live = horizon.live(times, arrived) if horizon is not None else None
        if live is None or live.all():
            return cls(ids, times, arrived, len(older.ids), None, None)
        renumbered = np.cumsum(live, dtype=np.int32) - np.int32(1)
        return cls(ids[live], times[live], arrived[live], len(older.ids), live, renumbered)

    def sketches(self, older: _Segment, newer: _Segment, most: int) -> Iterator[np.ndarray]:
        """The sketches of the records that stay, in pieces of at most ``most`` records (a merge's largest part:
        a 150,000-record merge's are 74 MB)."""
        for segment, first in ((older, 0), (newer, self.newer_from)):
            rows = segment.sketches.reshape(-1, SKETCH_WIDTH)
            for at in range(0, len(rows), most):
                piece = rows[at : at + most]
                if self.live is not None:
                    piece = piece[self.live[first + at : first + at + len(piece)]]
                yield np.asarray(piece).reshape(-1)

    def postings(
        self, older_keys: np.ndarray, older_owners: np.ndarray, newer_keys: np.ndarray, newer_owners: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Both runs of sorted postings as one, without those of records dropped. A newer key's place is its
        index plus the older keys at or below it (equal keys keep the older first), the older keys take the
        places left, and each array is written once where it goes (concatenating both and sorting the result
        held three arrays of every posting at once)."""
        size = len(older_keys) + len(newer_keys)
        placed = np.searchsorted(older_keys, newer_keys, side="right")
        placed += np.arange(len(newer_keys), dtype=placed.dtype)
        newer_at = np.zeros(size, dtype=bool)
        newer_at[placed] = True
        older_at = ~newer_at
        del newer_at
        keys = np.empty(size, dtype=np.int64)
        keys[placed] = newer_keys
        keys[older_at] = older_keys
        owners = np.empty(size, dtype=np.int32)
        owners[placed] = newer_owners + np.int32(self.newer_from)
        owners[older_at] = older_owners
        del placed, older_at
        if self.live is not None and self.renumbered is not None:
            kept = self.live[owners]
            keys, owners = keys[kept], self.renumbered[owners[kept]]
        return keys, owners


def _merged(older: _Segment, newer: _Segment, horizon: Horizon | None) -> _Segment:
    """One segment of both in memory (a process's held batches, a store without files), without the records
    past the ``horizon``."""
    records = _MergedRecords.of(older, newer, horizon)
    keys, owners = records.postings(older.keys, older.owners, newer.keys, newer.owners)
    whole = len(older.ids) + len(newer.ids) + 1  # each segment's sketches in one piece: they are in memory
    sketches = np.concatenate([np.zeros(0, np.uint32), *records.sketches(older, newer, whole)])
    return _Segment(
        keys,
        owners,
        records.ids,
        records.times,
        records.arrived,
        sketches,
        last_seq=max(older.last_seq, newer.last_seq),
    )


def _merge_runs(older: np.ndarray, newer: np.ndarray, most: int) -> Iterator[tuple[slice, slice]]:
    """Both sorted key arrays cut into runs of at most about ``most`` keys each (a run of one key is never cut),
    in the merge's order: every key of a run is at most every key of the next. A cut falls after a key in
    both arrays: the older segment's postings of a key before the newer's, as in a merge of the whole."""
    o = n = 0
    while o < len(older) or n < len(newer):
        ends = [a[min(at + most, len(a)) - 1] for a, at in ((older, o), (newer, n)) if at < len(a)]
        last = min(ends)
        o_end = int(np.searchsorted(older, last, "right"))
        n_end = int(np.searchsorted(newer, last, "right"))
        yield slice(o, o_end), slice(n, n_end)
        o, n = o_end, n_end


# Segments are merged like a binary counter (at most log2(batches) of them, each posting rewritten as
# often) up to this many postings (about 100 MB of files, 150,000 articles): past it they stay as they are,
# so no merge ever holds more than that in memory, and a lookup searches a few more of them.
MERGE_UP_TO = 1 << 23
# A merge into files holds about this many postings of each segment at a time (some 20 MB with the merged run):
# merged whole, the largest merge held 353 MB more than the process did before it (bench/peaks.py merge).
MERGE_RUN = 1 << 19
# A phrase (a winnowed key) more records than this hold is a candidate's only shared key far more often as a
# stock phrase than as a copy: for 512 new articles into a 200,000-article store of bench/scale.py, 83% of the
# candidates shared a single key, nearly always a phrase others held too (14 records at the median). Such a
# candidate needs a second shared key, or an LSH band (a copy of a short text held by few shares its rare
# phrases; a copy of a long one, many). The labeled pairs of bench/quality.py gave the same figures with it.
LONE_PHRASE_RECORDS = 4
FENCE = 512  # keys a fence entry stands for: 4 KB, a page
FEW = 4096  # keys (or entries) a lookup reads from a segment's files; more go through its mappings
SEARCH_PART = 16384  # a batch's keys searched in a mapped segment at a time (see _Segment.search)
# A process's own batches are held in memory up to this many postings (some 4,600 articles, 3 MB) before
# they are written to the files: fewer, larger writes.
HOLD_POSTINGS = 1 << 18
MANIFEST = "index.json"
# A record's sketch in the index: its shingle count and bin minima, what rules most candidates out before their
# sets are made (docsieve/decide.py). Kept beside the keys so that a lookup hands them over with the candidates,
# not a read of the store a candidate (10 µs each in SQLite, 16% of a batch's time in a 400k store).
SKETCH_WIDTH = 1 + (1 << MINIMA_BITS)
UNKNOWN_SKETCH = np.full(SKETCH_WIDTH, np.iinfo(np.uint32).max, dtype=np.uint32)  # a record stored without one
FORMAT = 4  # 2: clocks by kind (dated, undated) in the manifest; 3: fence files; 4: sketches


class SegmentIndex:
    """The embedded index (see the module's docstring). With a ``directory`` its segments are files shared
    by every process on the store, written only under the store's write lock (``catch_up``): a manifest
    names them and the store row they are complete up to, and files that do not agree with the store (a
    lost file, a store replaced) are rebuilt from the store's rows. A batch's records are held in memory
    after its commit (``add``), so the next batch finds them at once, and written at the next ``catch_up``
    from the store's rows.

    Why not LMDB, RocksDB or a SQLite table: a batch asks some 30,000 keys at once, which sorted arrays
    answer in a few vectorized searches; those stores answer a key per call from Python, and a row per
    key made SQLite's writes the slowest stage. The files need no transactions of their own: the store
    is the truth, the index a view of it."""

    def __init__(
        self, directory: Path | None = None, window_days: float = 0.0, common: int = 1 << 62, resident: bool = False
    ) -> None:
        """``resident``: for a process that lives long and looks up one document at a time (the HTTP service).
        Its lookups read through the mappings, whose pages then stay in its memory (up to the index's size),
        rather than reading the few entries they need from the files (for a command that decides a document
        or two and ends, in little memory): bench/lookup.py weighs the two (docs/benchmarks.md)."""
        self.directory = directory
        self.resident = resident
        self.window = int(window_days * DAY)
        self.common = common
        self._segments: list[_Segment] = []  # oldest first: in the files (or, without a directory, all)
        self._held: list[_Segment] = []  # committed batches not in the files yet (with a directory)
        self._summaries: dict[str, tuple[int, np.ndarray]] = {}  # of the last lookup's candidates
        self._held_from = self._held_to = 0  # the store rows they came in (rejected ones too)
        self._held_gap = False  # whether another process's rows came between them
        self.last_seq = 0  # the newest store row the index holds
        self._persisted_seq = 0  # the newest store row in the files, and its record's id
        self._persisted_id: str | None = None
        self._manifest_stamp: tuple[int, int, int] | None = None
        self._broken = False  # the files could not be read: the next catch_up builds them again
        # The newest times of every record the index has held (kept in the manifest): the horizon is reckoned from
        # them, not from the segments it still holds, of which a backfill of old stories stored last, dropped whole,
        # would take the newest arrival away (undated records two windows older would be candidates again).
        self._seen: Newest = (None, 0)
        if directory is not None:  # made by the first catch_up: opening a store that is not there makes nothing
            self._refresh()

    # -- reading

    def lookup(
        self,
        queries: Sequence[np.ndarray],
        limit: int,
        times: Sequence[int | None] | None = None,
        stage_ids: Sequence[str] | None = None,
    ) -> tuple[list[list[str]], int]:
        """Candidates now; ``stage_ids`` publish nothing: what is staged is the batch's own ``add``."""
        if self.directory is not None:
            self._refresh()
        return self.candidates(queries, limit, times), self.last_seq

    def candidates(
        self, queries: Sequence[np.ndarray], limit: int, times: Sequence[int | None] | None = None
    ) -> list[list[str]]:
        """For each key array, the records sharing keys with it (in its window, if ``times`` are given),
        most shared first, at most ``limit``; keys more than ``common`` records hold are skipped (records of the
        segments the window meets, with ``times``)."""
        result: list[list[str]] = [[] for _ in queries]
        self._summaries = {}
        segments = self._segments + self._held
        if not queries or not segments:
            return result
        keys = np.concatenate(queries)
        query_of = np.repeat(np.arange(len(queries), dtype=np.int64), [len(q) for q in queries])
        # Searched in key order: consecutive binary searches then walk the segment's memory in one
        # direction, about four times faster than searching the keys as they come.
        order = np.argsort(keys)
        keys, query_of = keys[order], query_of[order]
        mapped = len(keys) > FEW  # a batch's lookup: its reads go through the mappings (``_Segment.take``)
        query_times = None
        if times is not None and self.window:
            query_times = np.array([UNDATED if t is None else t for t in times], dtype=np.int64)
        bounds = []
        held = np.zeros(len(keys), dtype=np.int64)
        for segment in segments:
            # A segment with no record in a query's window is not searched for that query's keys. The index holds
            # two windows, so a feed's new documents skip the older window's segments (at 1M records, 2 of 14
            # segments, 41% of the postings: a batch's lookup 25% quicker, docs/benchmarks.md).
            meets = segment.meets(query_times, self.window) if query_times is not None else None
            if meets is None or meets.all():
                left, right = segment.search(keys)
            else:
                left, right = np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=np.int64)
                if len(asked := np.flatnonzero(meets[query_of])):
                    left[asked], right[asked] = segment.search(keys[asked])
            bounds.append((left, right))
            held += right - left
        # A key's commonness is so counted among the records of the segments its query's window meets (those
        # past its window were never its candidates), not of the whole index. Which records those are depends on
        # how the segments were merged (one spanning both windows counts all its records), as it did before on
        # which records past the horizon a merge had dropped: an approximation near the threshold, either way.
        usable = held <= self.common
        telling = ~lone_phrases(keys, held)  # keys that are evidence on their own
        # Records past the horizon are forgotten, whether or not their segment has been rewritten without them.
        horizon = Horizon.of(segments, self.window, self._seen)
        query_hits, owner_hits, telling_hits = [], [], []
        base = 0
        for segment, (left, right) in zip(segments, bounds, strict=True):
            counts = np.where(usable, right - left, 0)
            hit = np.flatnonzero(counts)
            if len(hit):
                counts = counts[hit]
                # Every (query, matching position) pair, without a Python loop over the hits.
                starts = np.repeat(left[hit] - np.cumsum(counts) + counts, counts)
                positions = starts + np.arange(counts.sum(), dtype=np.int64)
                query = query_of[hit].repeat(counts)
                evidence = telling[hit].repeat(counts)
                owner = segment.take("owners", positions, mapped=mapped).astype(np.int64)
                if horizon is not None and horizon.some_gone(segment):
                    kept = horizon.live(
                        segment.take("times", owner, mapped=mapped), segment.take("arrived", owner, mapped=mapped)
                    )
                    query, owner, evidence = query[kept], owner[kept], evidence[kept]
                if query_times is not None:
                    near = np.abs(segment.take("times", owner, mapped=mapped) - query_times[query]) <= self.window
                    near |= query_times[query] == UNDATED
                    query, owner, evidence = query[near], owner[near], evidence[near]
                query_hits.append(query)
                owner_hits.append(owner + base)
                telling_hits.append(evidence)
            base += len(segment.ids)
            # Whatever went through the mappings (a batch's keys, a small lookup's many hits): one segment's
            # pages at a time at most. (A part read from the file has none to give back; a resident index
            # keeps its pages.)
            if not self.resident:
                for part in ("keys", "owners", "times", "arrived"):
                    _release(getattr(segment, part))
        if not query_hits:
            return result
        ranked = most_shared(
            np.concatenate(query_hits), np.concatenate(owner_hits), len(queries), limit, np.concatenate(telling_hits)
        )
        # The ids and sketches of every candidate at once, gathered segment by segment.
        chosen = np.array([o for owners in ranked for o in owners], dtype=np.int64)
        names = np.empty(len(chosen), dtype=f"U{ID_WIDTH}")
        sketches = np.empty((len(chosen), SKETCH_WIDTH), dtype=np.uint32)
        first = 0
        for segment in segments:
            mine = (chosen >= first) & (chosen < first + len(segment.ids))
            names[mine] = segment.take("ids", chosen[mine] - first, mapped=mapped).astype(f"U{ID_WIDTH}")
            sketches[mine] = segment.take("sketches", chosen[mine] - first, SKETCH_WIDTH, mapped)
            if not self.resident:
                for part in ("ids", "sketches"):
                    _release(getattr(segment, part))
            first += len(segment.ids)
        flat = names.tolist()
        known = sketches[:, 0] != UNKNOWN_SKETCH[0]
        self._summaries = {flat[i]: (int(sketches[i, 0]), sketches[i, 1:]) for i in np.flatnonzero(known).tolist()}
        bounds = np.cumsum([0] + [len(owners) for owners in ranked]).tolist()
        return [flat[a:b] for a, b in pairwise(bounds)]

    @property
    def unwritten(self) -> bool:
        """Whether committed records are held in memory only (written at the next ``catch_up``)."""
        return bool(self._held)

    def summaries(self, ids: Iterable[str]) -> dict[str, tuple[int, np.ndarray]]:
        """The shingle counts and bin minima of the last lookup's candidates among ``ids``, where the index
        has them (records it was handed with them; not those caught up from the store's rows)."""
        return {i: self._summaries[i] for i in ids if i in self._summaries}

    def size(self) -> tuple[int, int]:
        """(records, postings) the index holds."""
        segments = self._segments + self._held
        return sum(len(s.ids) for s in segments), sum(len(s.keys) for s in segments)

    def posting_count(self) -> int:
        """Postings the index holds (the metrics' gauge, as the shared index gives it)."""
        return self.size()[1]

    # -- writing

    def add(
        self,
        record_ids: Sequence[str],
        keys: Sequence[np.ndarray],
        last_seq: int,
        times: Sequence[int],
        first_seq: int | None = None,
        arrived: int | None = None,
        sketches: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        """A committed batch's records: looked up at once, and (with a directory) written to the files at
        a later ``catch_up``. ``first_seq``: where the batch's rows start (rejected ones included), so that
        a run of this process's batches is known to be all that was stored since the files. ``arrived``:
        when they were stored (seconds; by default their newest time)."""
        if last_seq <= self._persisted_seq:  # another process wrote them to the files already
            return
        if self.directory is not None:
            if first_seq is None or (self._held and first_seq != self._held_to + 1):
                self._held_gap = True
            if not self._held:
                self._held_from = first_seq or 0
            self._held_to = last_seq
        if record_ids:
            when = arrived if arrived is not None else max(times)
            segment = _segment(record_ids, keys, times, [when] * len(record_ids), last_seq, sketches)
            if self.directory is None:
                self._segments = self._merged_list([*self._segments, segment], persist=False)
            else:
                self._held = self._merged_list([*self._held, segment], persist=False)
        self.last_seq = max(self.last_seq, last_seq)

    def catch_up(self, store: StoredRows) -> None:
        """Under the store's write lock: add the rows stored since the index last looked (with a directory,
        into its files, rebuilt first if they disagree with the store)."""
        if self.directory is None:
            for segment in segments_of(store.index_rows(self.last_seq), MERGE_UP_TO):
                self._segments = self._merged_list([*self._segments, segment], persist=False)
                self.last_seq = max(self.last_seq, segment.last_seq)
            return
        try:
            self._catch_up_files(store)
        except OSError:  # a directory it may not write (a store on a read-only disk): caught up in memory
            for segment in segments_of(store.index_rows(self.last_seq), MERGE_UP_TO):
                self._held.append(segment)
                self._seen = newest([segment], self._seen)
                self.last_seq = max(self.last_seq, segment.last_seq)

    def rebuild(self, store: StoredRows) -> None:
        """The files made again from the store's rows (under the store's write lock)."""
        assert self.directory is not None
        self.directory.mkdir(exist_ok=True)
        with self._locked():
            self._clear()
            self._forget_held()
            self._manifest_stamp = None
        self._catch_up_files(store)

    def flush(self, store: StoredRows) -> None:
        """Write what is held in memory to the files now (under the store's write lock)."""
        if self.directory is not None:
            self._catch_up_files(store, flush=True)

    def _catch_up_files(self, store: StoredRows, flush: bool = False) -> None:
        assert self.directory is not None
        self.directory.mkdir(exist_ok=True)
        with self._locked():
            self._refresh()
            if self._broken or (self._persisted_seq and store.id_at(self._persisted_seq) != self._persisted_id):
                self._clear()  # lost or unreadable files, or records the store does not have: built again below
            wrote = False
            newest = store.last_seq()
            # What this process holds (its own batches, one run of rows) stands for the store's rows when it
            # is all that was stored since the files: the usual case, one process, or its turn after the
            # others wrote theirs. It is written once it is large enough (fewer, larger writes) or on closing.
            ours = (
                bool(self._held)
                and not self._held_gap
                and (self._held_from, self._held_to) == (self._persisted_seq + 1, newest)
            )
            if ours and (flush or sum(len(s.keys) for s in self._held) >= HOLD_POSTINGS):
                for segment in self._held:
                    self._segments = self._merged_list([*self._segments, self._written(segment)], persist=True)
                self._persisted_seq, self._persisted_id = newest, store.id_at(newest)
                self._forget_held()
                wrote = True
            elif newest > self._persisted_seq and not ours:  # others' records too: all read from the store
                self._forget_held()
                for segment in segments_of(store.index_rows(self._persisted_seq), MERGE_UP_TO):
                    last = segment.last_seq, segment.ids[-1].decode()
                    self._segments = self._merged_list([*self._segments, self._written(segment)], persist=True)
                    self._persisted_seq, self._persisted_id = last
                    wrote = True
            if wrote or self._horizon_passed():
                self._segments = self._merged_list(self._segments, persist=True)
                self._publish()
            self.last_seq = max(self._persisted_seq, self._held_to)

    def _forget_held(self) -> None:
        self._held, self._held_from, self._held_to, self._held_gap = [], 0, 0, False

    def _merged_list(self, segments: list[_Segment], persist: bool) -> list[_Segment]:
        """The segments with those past the window dropped and the newest merged (binary counter)."""
        self._seen = newest(segments, self._seen)
        horizon = Horizon.of([*self._segments, *self._held, *segments], self.window, self._seen)
        if horizon is not None:  # whole segments past the window go at once
            gone = [s for s in segments if horizon.all_gone(s)]
            if gone:
                segments = [s for s in segments if not horizon.all_gone(s)]
                self._remove_files(gone)
        while len(segments) > 1:
            older, newer = segments[-2], segments[-1]
            if len(newer.keys) < len(older.keys) or len(older.keys) + len(newer.keys) > MERGE_UP_TO:
                break
            merged = self._merged_in_files(older, newer, horizon) if persist else _merged(older, newer, horizon)
            segments = [*segments[:-2], merged]
            self._remove_files([older, newer])
        return segments

    def _horizon_passed(self) -> bool:
        horizon = Horizon.of([*self._segments, *self._held], self.window, self._seen)
        return horizon is not None and any(horizon.all_gone(s) for s in self._segments)

    # -- files

    def _path(self, name: str, part: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{name}.{part}"

    def _written(self, segment: _Segment) -> _Segment:
        """The segment written to its files, and mapped from them as a segment another process opens: kept in
        memory instead, every segment a long ingest merged stayed there, and the process grew with the index
        (the merges of a 50,000-article ingest into a 100,000-record store held 290 MB; docs/benchmarks.md)."""
        segment.name = _segment_name(segment.last_seq)
        segment.fence = np.array(segment.keys[::FENCE])
        for part in PARTS:
            path = self._path(segment.name, part)
            with open(f"{path}.tmp", "wb") as out:
                np.asarray(getattr(segment, part)).tofile(out)
            os.replace(f"{path}.tmp", path)
        return self._open(segment.describe())

    def _merged_in_files(self, older: _Segment, newer: _Segment, horizon: Horizon | None) -> _Segment:
        """``_merged``, written to its files a run of postings at a time (``MERGE_RUN``) and mapped from them:
        merged whole in memory, the largest merge held every posting of both segments three times over, and
        every page of their files it read. This holds a run's, and gives back the pages it read as it goes."""
        records = _MergedRecords.of(older, newer, horizon)
        name = _segment_name(max(older.last_seq, newer.last_seq))
        paths = {part: self._path(name, part) for part in PARTS}
        try:
            postings, fence = 0, []  # fence: every FENCE-th key of the whole, as _written's
            with open(f"{paths['keys']}.tmp", "wb") as keys_out, open(f"{paths['owners']}.tmp", "wb") as owners_out:
                for o, n in _merge_runs(older.keys, newer.keys, MERGE_RUN):
                    keys, owners = records.postings(older.keys[o], older.owners[o], newer.keys[n], newer.owners[n])
                    fence.append(np.array(keys[-postings % FENCE :: FENCE]))
                    postings += len(keys)
                    keys.tofile(keys_out)
                    owners.tofile(owners_out)
                    _release(older.keys, older.owners, newer.keys, newer.owners)
            with open(f"{paths['sketches']}.tmp", "wb") as out:
                for piece in records.sketches(older, newer, max(1, MERGE_RUN // SKETCH_WIDTH)):
                    piece.tofile(out)
                    _release(older.sketches, newer.sketches)
            rest = {"ids": records.ids, "times": records.times, "arrived": records.arrived}
            for part, array in (rest | {"fence": np.concatenate([np.zeros(0, np.int64), *fence])}).items():
                with open(f"{paths[part]}.tmp", "wb") as out:
                    array.tofile(out)
        except BaseException:  # a full disk, an interrupt: no part files left behind (the largest merge's are 100 MB)
            for path in paths.values():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{path}.tmp")
            raise
        for path in paths.values():
            os.replace(f"{path}.tmp", path)
        _release(*(getattr(segment, part) for segment in (older, newer) for part in ("ids", "times", "arrived")))
        return self._open(
            {
                "name": name,
                "records": len(records.ids),
                "postings": postings,
                "spans": _spans(records.times, records.arrived),
                "last_seq": max(older.last_seq, newer.last_seq),
            }
        )

    def _remove_files(self, segments: Iterable[_Segment]) -> None:
        """Another process may still read them: on POSIX its mapping outlives the name."""
        for segment in segments:
            if segment.name:
                for part in PARTS:
                    with contextlib.suppress(FileNotFoundError):
                        self._path(segment.name, part).unlink()

    def _publish(self) -> None:
        assert self.directory is not None
        manifest = {
            "format": FORMAT,
            "last_seq": self._persisted_seq,
            "last_id": self._persisted_id,
            "newest": list(self._seen),
            "segments": [s.describe() for s in self._segments],
        }
        path = self.directory / MANIFEST
        with open(f"{path}.tmp", "w") as out:
            json.dump(manifest, out)
        os.replace(f"{path}.tmp", path)
        self._manifest_stamp = _stamp(path)

    def _refresh(self) -> None:
        """Open the segments the directory's manifest names, if it changed since it was last read. A file
        that went meanwhile (another process merged it) is looked for once more under a newer manifest; an
        unreadable manifest leaves the index empty, and the next catch_up builds the files again."""
        assert self.directory is not None
        path = self.directory / MANIFEST
        for _ in range(3):
            stamp = _stamp(path)
            if stamp == self._manifest_stamp:
                return
            opened = {s.name: s for s in self._segments}
            try:
                manifest = json.loads(path.read_text()) if stamp is not None else {}
                if manifest and manifest.get("format") != FORMAT:
                    raise ValueError("another format")
                segments = [opened.get(entry["name"]) or self._open(entry) for entry in manifest.get("segments", [])]
                published, arrived = manifest.get("newest") or (None, 0)  # a manifest written before it was kept
                seen: Newest = (None if published is None else int(published), int(arrived))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError):
                manifest, segments, self._broken, seen = {}, [], True, (None, 0)
            self._manifest_stamp = stamp
            self._segments = segments
            self._persisted_seq = int(manifest.get("last_seq", 0))
            self._persisted_id = manifest.get("last_id")
            # The manifest's, not merged with what this process saw before: files built again by another process
            # for a store replaced hold its records only. (This process's own batches since it last read the files
            # are in them: any manifest written since was written under the lock after their commit.)
            self._seen = seen
            if self._held and self._held_to <= self._persisted_seq:  # another process wrote them
                self._forget_held()
            self.last_seq = max(self._persisted_seq, self._held_to)
            return
        self._broken = True  # files named by the manifest are gone

    def _open(self, entry: dict) -> _Segment:
        name = entry["name"]
        parts = {
            part: _mapped(self._path(name, part), dtype, count)
            for part, dtype, count in (
                ("keys", np.int64, entry["postings"]),
                ("owners", np.int32, entry["postings"]),
                ("ids", f"S{ID_WIDTH}", entry["records"]),
                ("times", np.int64, entry["records"]),
                ("arrived", np.int64, entry["records"]),
                ("sketches", np.uint32, entry["records"] * SKETCH_WIDTH),
            )
        }
        return _Segment(
            name=name,
            last_seq=int(entry["last_seq"]),
            spans={kind: [int(a), int(b)] for kind, (a, b) in entry["spans"].items()},
            fence=np.fromfile(self._path(name, "fence"), dtype=np.int64),
            directory=self.directory,
            resident=self.resident,
            **parts,
        )

    def _clear(self) -> None:
        assert self.directory is not None
        for path in self.directory.iterdir():
            if path.name != "lock":
                path.unlink()
        self._segments, self._persisted_seq, self._persisted_id, self._broken = [], 0, None, False
        self._seen = (None, 0)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The directory's own lock, besides the store's: writers of one store hold both, but a directory
        reused by hand for another store still never sees two writers."""
        assert self.directory is not None
        with open(self.directory / "lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def close(self) -> None:
        """Nothing to release: mapped files close with their arrays."""

    def remove(self, record_id: str, keys: bytes) -> int:
        """Nothing: a record taken down has no row, so it is never a verified candidate; its postings go
        when its segment expires or the files are built again."""
        return 0


PARTS = ("keys", "owners", "ids", "times", "arrived", "sketches", "fence")  # a segment's files


def MemoryIndex(window_days: float = 0.0, common: int = 1 << 62) -> SegmentIndex:
    """An index in this process's memory only."""
    return SegmentIndex(None, window_days, common)


def _segment_name(last_seq: int) -> str:
    """A segment's files' stem: unique, and in the order of the store rows it holds."""
    return f"s{last_seq:012d}-{uuid.uuid4().hex[:8]}"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def _mapped(path: Path, dtype: np.typing.DTypeLike, count: int) -> np.ndarray:
    """The file's array, mapped read-only (the pages a lookup touches are read; the rest stays on disk)."""
    if not count:
        return np.zeros(0, dtype=dtype)
    with open(path, "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    array = np.frombuffer(mapping, dtype=dtype)
    if len(array) != count:
        raise ValueError(f"{path}: {len(array)} entries, the manifest says {count}")
    return array


def _release(*arrays: np.ndarray) -> None:
    """Give back the pages of mapped arrays the process touched: they stay in the page cache (the next
    lookup maps them again at the cost of a minor fault), but no longer count in the process's memory,
    which would otherwise grow to the size of the whole index as batches touch it."""
    for array in arrays:
        base = array.base
        while isinstance(base, np.ndarray):  # a view (a reshape) of the mapped array
            base = base.base
        if isinstance(base, memoryview):  # np.frombuffer's view of the mapping
            base = base.obj
        if isinstance(base, mmap.mmap):
            base.madvise(mmap.MADV_DONTNEED)


def within_batch(queries: Sequence[np.ndarray]) -> list[list[int]]:
    """For each key array, the earlier arrays of the same batch that share keys with it, most shared
    first (then the earliest): how a copy finds an original that arrived a few documents before it,
    not yet stored. As across batches, only the earliest POSTINGS_PER_KEY arrays with a key count."""
    if not queries:
        return []
    keys = np.concatenate(queries)
    owner = np.repeat(np.arange(len(queries), dtype=np.int64), [len(q) for q in queries])
    order = np.lexsort((owner, keys))
    keys, owner = keys[order], owner[order]
    # Each array with a key is paired with the (at most POSTINGS_PER_KEY) arrays before it with that key.
    group_start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    first_of = np.repeat(group_start, np.diff(np.r_[group_start, len(keys)]))
    rank = np.arange(len(keys)) - first_of
    partners = np.minimum(rank, POSTINGS_PER_KEY)
    later = np.repeat(owner, partners)
    pair_start = np.repeat(np.cumsum(partners) - partners, partners)
    earlier = owner[np.repeat(first_of, partners) + np.arange(len(later)) - pair_start]
    distinct = earlier != later
    return most_shared(later[distinct], earlier[distinct], len(queries), None)


def lone_phrases(keys: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Which keys are no evidence on their own: winnowed keys (phrases) that more than LONE_PHRASE_RECORDS
    records hold, given how many records hold each."""
    return ((keys & SAMPLE_TAG) != 0) & (held > LONE_PHRASE_RECORDS)


def most_shared(
    query: np.ndarray, other: np.ndarray, queries: int, limit: int | None, telling: np.ndarray | None = None
) -> list[list[int]]:
    """For each of ``queries`` queries, given one (query, other) pair per key they share, the others it
    shares keys with: most shared first, then the lowest other; at most ``limit`` of them. With ``telling``
    (a flag a pair: is its key evidence on its own), an other that shares a single key that is not is left
    out."""
    if not len(query):
        return [[] for _ in range(queries)]
    others = int(other.max()) + 1
    codes, where, shared = np.unique(query * others + other, return_inverse=True, return_counts=True)
    if telling is not None:
        told = np.bincount(where.reshape(-1), weights=telling, minlength=len(codes)) > 0
        kept = told | (shared >= 2)
        codes, shared = codes[kept], shared[kept]
    query, other = np.divmod(codes, others)
    order = np.lexsort((other, -shared, query))
    query, other = query[order], other[order]
    if limit is not None:
        start = np.flatnonzero(np.r_[True, query[1:] != query[:-1]])
        kept = np.arange(len(query)) - np.repeat(start, np.diff(np.r_[start, len(query)])) < limit
        query, other = query[kept], other[kept]
    bounds = np.searchsorted(query, np.arange(queries + 1)).tolist()
    found = other.tolist()
    return [found[a:b] for a, b in pairwise(bounds)]
