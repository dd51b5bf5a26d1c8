"""The candidate index: LSH band keys and sampled-shingle keys, each pointing at the records that have
them. Candidates for a new document are the records that share keys with it, most shared first.

The embedded default keeps the index in memory as sorted numpy segments of (key, record) pairs, one
segment a batch, merged log-structured style so there are never more than a few. It persists with
the store as one keys blob per record (``records.index_keys``), loaded at start and caught up, inside
the store's write lock, with whatever other processes stored since, so two ``ingest`` runs on one
store still see each other's documents. (A table with one row per key was the first design: 57 rows
a document made the SQLite writes cost more than the rest of the pipeline together.)

Lookups are made for a whole batch at once: one ``searchsorted`` per segment for all its documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from worker.models import Fingerprint


def keys_of(fingerprint: Fingerprint) -> np.ndarray:
    """All index keys of a fingerprint: band keys are salted by band and sample keys tagged, so they are
    distinct but for a 64-bit collision, which would only count one shared key twice."""
    return np.concatenate((fingerprint.band_keys, fingerprint.sample_keys))


# A key shared by many records is boilerplate ("Saudi Press Agency" in 3-grams) or a much-copied story.
# Only its earliest records count: a story's canonical record is among them, and boilerplate cannot
# flood every document with hundreds of candidates to verify.
POSTINGS_PER_KEY = 8


@dataclass(slots=True)
class _Segment:
    keys: np.ndarray  # int64, sorted
    owners: np.ndarray  # int64 positions in MemoryIndex.record_ids, parallel to keys


class MemoryIndex:
    def __init__(self) -> None:
        self.record_ids: list[str] = []
        self._segments: list[_Segment] = []
        self.last_seq = 0  # the newest store row already in the index

    def __len__(self) -> int:
        return len(self.record_ids)

    def load(self, rows: Iterable[tuple[int, str, bytes]]) -> None:
        """Add stored (seq, record id, keys blob) rows, in seq order."""
        ids, arrays = [], []
        for seq, record_id, blob in rows:
            ids.append(record_id)
            arrays.append(np.frombuffer(blob, dtype=np.int64))
            self.last_seq = max(self.last_seq, seq)
        self.add(ids, arrays)

    def add(self, record_ids: Sequence[str], keys: Sequence[np.ndarray]) -> None:
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
        pairs = []
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
            pairs.append(query_of[hit].repeat(counts) * len(self.record_ids) + segment.owners[positions])
        if not pairs:
            return result
        codes, shared = np.unique(np.concatenate(pairs), return_counts=True)
        query, owner = np.divmod(codes, len(self.record_ids))
        order = np.lexsort((-shared, query))  # by query, most shared first
        query, owner = query[order], owner[order]
        group_start = np.flatnonzero(np.r_[True, query[1:] != query[:-1]])
        rank = np.arange(len(query)) - np.repeat(group_start, np.diff(np.r_[group_start, len(query)]))
        keep = rank < limit
        for q, o in zip(query[keep].tolist(), owner[keep].tolist(), strict=True):
            result[q].append(self.record_ids[o])
        return result


def within_batch(queries: Sequence[np.ndarray]) -> list[list[int]]:
    """For each key array, the earlier arrays of the same batch that share keys with it, most shared
    first: how a copy finds an original that arrived a few documents before it, not yet stored."""
    if not queries:
        return []
    keys = np.concatenate(queries)
    owner = np.repeat(np.arange(len(queries), dtype=np.int64), [len(q) for q in queries])
    order = np.lexsort((owner, keys))
    keys, owner = keys[order], owner[order]
    boundaries = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    shared: list[dict[int, int]] = [{} for _ in queries]
    for start, end in zip(boundaries[:-1].tolist(), boundaries[1:].tolist(), strict=True):
        if end - start < 2:
            continue
        members = owner[start:end].tolist()
        for j, later in enumerate(members):
            for earlier in members[:j]:
                shared[later][earlier] = shared[later].get(earlier, 0) + 1
    return [sorted(s, key=lambda i, s=s: (-s[i], i)) for s in shared]
