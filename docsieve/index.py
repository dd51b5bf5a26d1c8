"""The candidate index: LSH band keys and sampled-shingle keys, each pointing at the records that have
them. Candidates for a new document are the records that share keys with it, most shared first.

Two implementations behind one protocol (which calls happen under the store's write lock is said
in ``CandidateIndex``):

- ``MemoryIndex``, the embedded default: sorted numpy segments of (key, record) pairs, one segment a
  batch, merged log-structured style so there are never more than a few. Lookups are made for a whole
  batch at once, one ``searchsorted`` per segment.
- ``worker.redis_index.RedisIndex``, the deployment's index shared by all workers (found by the scheme of
  ``DOCSIEVE_INDEX_URL`` among the ``docsieve.indexes`` entry points: the core never imports it).

Both persist with the store: every record keeps its keys (``records.index_keys``), written in the
same transaction as the record, and an index catches up from those rows by sequence number, so it
can always be rebuilt and never disagrees with the store for long. (A table with one row per key was
the first design: 57 rows a document made the SQLite writes cost more than the rest of the pipeline.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

import numpy as np

from docsieve.models import Fingerprint
from docsieve.settings import Settings, SettingsError


def keys_of(fingerprint: Fingerprint) -> np.ndarray:
    """All index keys of a fingerprint: band keys are salted by band and sample keys tagged, so they are
    distinct but for a 64-bit collision, which would only count one shared key twice."""
    return np.concatenate((fingerprint.band_keys, fingerprint.winnow_keys))


# A key shared by many records is boilerplate ("Saudi Press Agency" in 3-grams) or a much-copied story.
# Only its earliest records count: a story's canonical record is among them, and boilerplate cannot
# flood every document with hundreds of candidates to verify.
POSTINGS_PER_KEY = 8


@dataclass(slots=True)
class _Segment:
    keys: np.ndarray  # int64, sorted
    owners: np.ndarray  # int64 positions in MemoryIndex.record_ids, parallel to keys


class StoredRows(Protocol):
    def index_rows(self, after_seq: int) -> Iterable[tuple[int, str, bytes]]: ...


class CandidateIndex(Protocol):
    """What the pipeline needs of an index. ``lookup`` (and its staging) runs before the store's write lock,
    ``catch_up`` under it, ``add`` just after the commit."""

    def catch_up(self, store: StoredRows) -> None:
        """Add the records stored since the index last looked (by other processes, or before a crash)."""

    def add(self, record_ids: Sequence[str], keys: Sequence[np.ndarray], last_seq: int) -> None:
        """Add this batch's records, just committed with sequence numbers up to ``last_seq``."""

    def close(self) -> None: ...

    def remove(self, record_id: str, keys: bytes) -> int:
        """Forget a record taken down (its keys as stored); returns how many postings went."""

    def lookup(
        self, queries: Sequence[np.ndarray], limit: int, stage_ids: Sequence[str] | None = None
    ) -> tuple[list[list[str]], int]:
        """Candidates for each key array, and the store sequence number the answer is complete up to:
        records stored after it must still be looked at (under the lock) before deciding. With
        ``stage_ids`` a shared index also publishes the arrays under those record ids."""


def rows_to_arrays(rows: Iterable[tuple[int, str, bytes]]) -> tuple[list[str], list[np.ndarray], int]:
    ids, arrays, last = [], [], 0
    for seq, record_id, blob in rows:
        ids.append(record_id)
        arrays.append(np.frombuffer(blob, dtype=np.int64))
        last = max(last, seq)
    return ids, arrays, last


ENTRY_POINTS = "docsieve.indexes"  # index URL scheme -> a factory (url, prefix) -> CandidateIndex


def open_index(settings: Settings) -> CandidateIndex:
    """The index the settings name: the embedded one, or the shared one ``DOCSIEVE_INDEX_URL`` points at,
    made by whichever installed package registered its URL scheme (the deployment's Redis index comes with
    ``docsieve[deploy]``)."""
    if not settings.index_url:
        return MemoryIndex()
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
    return factory(settings.index_url, settings.queue_prefix)


class MemoryIndex:
    """The embedded default: the index in this process's memory."""

    def __init__(self) -> None:
        self.record_ids: list[str] = []
        self._segments: list[_Segment] = []
        self.last_seq = 0  # the newest store row already in the index

    def close(self) -> None:
        """Nothing to release."""

    def remove(self, record_id: str, keys: bytes) -> int:
        """Nothing: this index lives as long as its process and is rebuilt from the store at each start, and
        a record taken down has no row, so it is never a verified candidate meanwhile."""
        return 0

    def catch_up(self, store: StoredRows, after: int | None = None) -> None:
        ids, arrays, last = rows_to_arrays(store.index_rows(self.last_seq if after is None else after))
        self._append(ids, arrays)
        self.last_seq = max(self.last_seq, last)

    def lookup(
        self, queries: Sequence[np.ndarray], limit: int, stage_ids: Sequence[str] | None = None
    ) -> tuple[list[list[str]], int]:
        """Candidates now; ``stage_ids`` publish nothing: this index is private to the process."""
        return self.candidates(queries, limit), self.last_seq

    def add(self, record_ids: Sequence[str], keys: Sequence[np.ndarray], last_seq: int) -> None:
        self._append(record_ids, keys)
        self.last_seq = max(self.last_seq, last_seq)

    def _append(self, record_ids: Sequence[str], keys: Sequence[np.ndarray]) -> None:
        if not record_ids:
            return
        first = len(self.record_ids)
        self.record_ids.extend(record_ids)
        owners = np.repeat(np.arange(first, first + len(keys), dtype=np.int64), [len(k) for k in keys])
        all_keys = np.concatenate(keys)
        order = np.argsort(all_keys, kind="stable")
        self._segments.append(_Segment(all_keys[order], owners[order]))
        # Merge like a binary counter: at most log2(batches) segments, each pair re-sorted as often.
        while len(self._segments) > 1 and len(self._segments[-1].keys) >= len(self._segments[-2].keys):
            newer, older = self._segments.pop(), self._segments.pop()
            merged_keys = np.concatenate((older.keys, newer.keys))
            order = np.argsort(merged_keys, kind="stable")
            self._segments.append(_Segment(merged_keys[order], np.concatenate((older.owners, newer.owners))[order]))

    def candidates(self, queries: Sequence[np.ndarray], limit: int) -> list[list[str]]:
        """For each key array, the records sharing keys with it, most shared first, at most ``limit``."""
        result: list[list[str]] = [[] for _ in queries]
        if not queries or not self._segments:
            return result
        keys = np.concatenate(queries)
        query_of = np.repeat(np.arange(len(queries), dtype=np.int64), [len(q) for q in queries])
        # Searched in key order: consecutive binary searches then walk the segment's memory in one
        # direction, about four times faster than searching the keys as they come.
        order = np.argsort(keys)
        keys, query_of = keys[order], query_of[order]
        query_hits, owner_hits = [], []
        quota = np.full(len(keys), POSTINGS_PER_KEY, dtype=np.int64)
        for segment in self._segments:  # oldest first, and within a segment in arrival order
            left = np.searchsorted(segment.keys, keys, "left")
            counts = np.minimum(np.searchsorted(segment.keys, keys, "right") - left, quota)
            quota -= counts
            hit = np.flatnonzero(counts)
            if not len(hit):
                continue
            counts = counts[hit]
            # Every (query, matching position) pair, without a Python loop over the hits.
            starts = np.repeat(left[hit] - np.cumsum(counts) + counts, counts)
            positions = starts + np.arange(counts.sum(), dtype=np.int64)
            query_hits.append(query_of[hit].repeat(counts))
            owner_hits.append(segment.owners[positions])
        if not query_hits:
            return result
        ranked = most_shared(np.concatenate(query_hits), np.concatenate(owner_hits), len(queries), limit)
        return [[self.record_ids[o] for o in owners] for owners in ranked]


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


def most_shared(query: np.ndarray, other: np.ndarray, queries: int, limit: int | None) -> list[list[int]]:
    """For each of ``queries`` queries, given one (query, other) pair per key they share, the others it
    shares keys with: most shared first, then the lowest other; at most ``limit`` of them."""
    if not len(query):
        return [[] for _ in range(queries)]
    others = int(other.max()) + 1
    codes, shared = np.unique(query * others + other, return_counts=True)
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
