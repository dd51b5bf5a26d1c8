"""The candidate index: LSH band keys and sampled-shingle keys, each pointing at the records that have
them. Candidates for a new document are the records that share keys with it, most shared first.

Two implementations behind one protocol (which calls happen under the store's write lock is said
in ``CandidateIndex``):

- ``MemoryIndex``, the embedded default: sorted numpy segments of (key, record) pairs, one segment a
  batch, merged log-structured style so there are never more than a few. Lookups are made for a whole
  batch at once, one ``searchsorted`` per segment.
- ``RedisIndex``, the deployment's index shared by all workers.

Both persist with the store: every record keeps its keys (``records.index_keys``), written in the
same transaction as the record, and an index catches up from those rows by sequence number, so it
can always be rebuilt and never disagrees with the store for long. (A table with one row per key was
the first design: 57 rows a document made the SQLite writes cost more than the rest of the pipeline.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

import numpy as np

from worker.models import Fingerprint, batched


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

    def lookup(
        self, queries: Sequence[np.ndarray], limit: int, stage_ids: Sequence[str] | None = None
    ) -> tuple[list[list[str]], int]:
        """Candidates for each key array, and the store sequence number the answer is complete up to:
        records stored after it must still be looked at (under the lock) before deciding. With
        ``stage_ids`` a shared index also publishes the arrays under those record ids."""


def _rows_to_arrays(rows: Iterable[tuple[int, str, bytes]]) -> tuple[list[str], list[np.ndarray], int]:
    ids, arrays, last = [], [], 0
    for seq, record_id, blob in rows:
        ids.append(record_id)
        arrays.append(np.frombuffer(blob, dtype=np.int64))
        last = max(last, seq)
    return ids, arrays, last


class MemoryIndex:
    """The embedded default: the index in this process's memory."""

    def __init__(self) -> None:
        self.record_ids: list[str] = []
        self._segments: list[_Segment] = []
        self.last_seq = 0  # the newest store row already in the index

    def close(self) -> None:
        """Nothing to release."""

    def catch_up(self, store: StoredRows, after: int | None = None) -> None:
        ids, arrays, last = _rows_to_arrays(store.index_rows(self.last_seq if after is None else after))
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
        ranked = _most_shared(np.concatenate(query_hits), np.concatenate(owner_hits), len(queries), limit)
        return [[self.record_ids[o] for o in owners] for owners in ranked]


ID_WIDTH = 20  # record ids are 20 hex characters; the index stores them at this fixed width


class RedisIndex:
    """The deployment's index, shared by every worker: for each key the (earliest) records that have it,
    and the store sequence number the index is complete up to.

    Keys are written before the records are stored (``stage``, outside the lock), and the sequence
    number only moves under the store's write lock, before the commit; a lookup outside the lock is
    complete up to the sequence number it read, and the records stored after it are looked at under
    the lock. So a record others can see is never missed, and a crash leaves at worst keys of records
    that were never stored (no sketch: never a candidate). A lost or stale Redis is caught up from the
    store's rows by sequence number on the next batch; ``docsieve reindex`` rebuilds it whole.

    Layout: one hash holds every key's postings, the record ids one after another at ID_WIDTH
    characters each, so a script counts them by length and finds one with a plain substring search.
    Keys travel as the raw 8 bytes of each int64 (the hash's field names). A batch (some 36,000 keys)
    is one script call: its HMGETs, and with staging the batch's own ids appended under its keys. The
    script only reads and writes; counting shared keys and ranking candidates happen in the worker,
    with numpy (counting in Lua took Redis, which every worker and the broker share, 0.15 s a batch).
    """

    # Shared by the lookup (with staging) and the add script. ARGV: prefix, cap, mode, epoch, the batch's
    # distinct keys (8 bytes each, one string), how many ids each key gets (one byte each, at most cap),
    # the ids (ID_WIDTH each, one string). Unless mode is 'add', the reply starts with each key's
    # number of ids and all the ids as read, before appending. Appending skips ids already there and
    # stops at cap; most keys are new, which costs one substring. (Library functions held in locals and a
    # running count of the changes, not #changed per key: a tenth less Redis time.)
    _READ_AND_APPEND = """
    local hash, cap, mode, W = ARGV[1] .. 'postings', tonumber(ARGV[2]), ARGV[3], ID_WIDTH
    local blob, counts, adds = ARGV[5], ARGV[6], ARGV[7]
    local sub, byte, find, call = string.sub, string.byte, string.find, redis.call
    local n, appending = #blob / 8, mode ~= 'lookup'
    local fields = {}
    for i = 1, n do fields[i] = sub(blob, 8 * i - 7, 8 * i) end
    local found, changed, k, at = {}, {}, 0, 1
    for s = 1, n, 4000 do
        local values = call('HMGET', hash, unpack(fields, s, math.min(s + 3999, n)))
        for j = 1, #values do
            local i, value = s + j - 1, values[j]
            found[i] = value or ''
            local c = appending and byte(counts, i) or 0
            if c > 0 then
                if not value then
                    k = k + 2; changed[k - 1] = fields[i]; changed[k] = sub(adds, at, at + c * W - 1)
                else
                    local merged = value
                    for m = 0, c - 1 do
                        if #merged >= cap * W then break end
                        local id = sub(adds, at + m * W, at + (m + 1) * W - 1)
                        local seen, from = false, 1
                        while true do
                            local hit = find(merged, id, from, true)
                            if not hit then break end
                            if (hit - 1) % W == 0 then seen = true; break end
                            from = hit + 1
                        end
                        if not seen then merged = merged .. id end
                    end
                    if merged ~= value then k = k + 2; changed[k - 1] = fields[i]; changed[k] = merged end
                end
                if k >= 4000 then call('HSET', hash, unpack(changed, 1, k)); k = 0 end
                at = at + c * W
            end
        end
    end
    if k > 0 then call('HSET', hash, unpack(changed, 1, k)) end
    if appending then call('SETNX', ARGV[1] .. 'epoch', ARGV[4]) end
    local reply = {}
    if mode ~= 'add' then
        local sizes, char = {}, string.char
        for i = 1, n do sizes[i] = char(#found[i] / W) end
        reply = {table.concat(sizes), table.concat(found)}
    end
    """.replace("ID_WIDTH", str(ID_WIDTH))
    # The lookup: the postings read, the sequence number they are complete up to, and the epoch.
    _LOOKUP = (
        _READ_AND_APPEND
        + """
    reply[3] = redis.call('GET', ARGV[1] .. 'seq') or '0'
    reply[4] = redis.call('GET', ARGV[1] .. 'epoch') or ''
    return reply
    """
    )
    # Writing records' keys after the fact (catching up, or staged keys lost): append, move the sequence.
    _ADD = (
        _READ_AND_APPEND
        + """
    if tonumber(ARGV[8]) > tonumber(redis.call('GET', ARGV[1] .. 'seq') or '0') then
        redis.call('SET', ARGV[1] .. 'seq', ARGV[8])
    end
    return redis.call('GET', ARGV[1] .. 'epoch')
    """
    )
    # Moves the sequence number only if the staged keys are still there (the same epoch: the index was
    # not cleared, nor Redis restarted empty, since they were written); otherwise the caller writes
    # them again.
    _PUBLISH = """
    if redis.call('GET', ARGV[1] .. 'epoch') ~= ARGV[3] then return 0 end
    if tonumber(ARGV[2]) > tonumber(redis.call('GET', ARGV[1] .. 'seq') or '0') then
        redis.call('SET', ARGV[1] .. 'seq', ARGV[2])
    end
    return 1
    """

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        # "index2": postings at a fixed width (the first layout, "index", separated ids with commas).
        self._namespace = f"{prefix}:index"
        self._prefix = f"{prefix}:index2:"
        self._seq_key = f"{self._prefix}seq"
        self._add = self._redis.register_script(self._ADD)
        self._publish = self._redis.register_script(self._PUBLISH)
        self._lookup = self._redis.register_script(self._LOOKUP)
        self._staged_epoch = b""

    def close(self) -> None:
        self._redis.close()

    def catch_up(self, store: StoredRows) -> None:
        after = int(self._redis.get(self._seq_key) or 0)
        batch: list[tuple[int, str, bytes]] = []
        for row in store.index_rows(after):
            batch.append(row)
            if len(batch) == 1000:  # bounded script calls, each complete up to its own last row
                self._write_rows(batch)
                batch = []
        self._write_rows(batch)

    def _write_rows(self, rows: list[tuple[int, str, bytes]]) -> None:
        ids, arrays, last = _rows_to_arrays(rows)
        if ids:
            self._write(ids, arrays, last)

    def add(self, record_ids: Sequence[str], keys: Sequence[np.ndarray], last_seq: int) -> None:
        """After the commit: the staged keys are there, so the sequence number moves; if the index was
        cleared meanwhile, the keys are written again first."""
        if not self._publish(args=[self._prefix, last_seq, self._staged_epoch]):
            self._write(record_ids, keys, last_seq)

    def _write(self, record_ids: Sequence[str], keys: Sequence[np.ndarray], last_seq: int) -> bytes:
        batch = _KeyBatch(keys)
        args = [self._prefix, POSTINGS_PER_KEY, "add", uuid.uuid4().hex, batch.keys, *batch.appends(record_ids)]
        return self._add(args=[*args, last_seq])

    def lookup(
        self, queries: Sequence[np.ndarray], limit: int, stage_ids: Sequence[str] | None = None
    ) -> tuple[list[list[str]], int]:
        batch = _KeyBatch(queries)
        mode = "stage" if stage_ids else "lookup"
        appends = batch.appends(stage_ids) if stage_ids else (b"", b"")
        sizes, ids, seq, epoch = self._lookup(
            args=[self._prefix, POSTINGS_PER_KEY, mode, uuid.uuid4().hex, batch.keys, *appends]
        )
        if stage_ids:
            self._staged_epoch = epoch
        return batch.ranked(np.frombuffer(sizes, dtype=np.uint8).astype(np.int64), ids, stage_ids, limit), int(seq)

    # Takes one record id (ARGV[2], at ID_WIDTH) out of the postings of its keys (ARGV[3]: 8 bytes each).
    _REMOVE = """
    local hash, id, blob, W = ARGV[1] .. 'postings', ARGV[2], ARGV[3], ID_WIDTH
    local sub, find, call = string.sub, string.find, redis.call
    local removed = 0
    for i = 1, #blob / 8 do
        local field = sub(blob, 8 * i - 7, 8 * i)
        local value = call('HGET', hash, field)
        local from = 1
        while value do
            local hit = find(value, id, from, true)
            if not hit then break end
            if (hit - 1) % W == 0 then
                value = sub(value, 1, hit - 1) .. sub(value, hit + W)
                if #value == 0 then call('HDEL', hash, field) else call('HSET', hash, field, value) end
                removed = removed + 1
                break
            end
            from = hit + 1
        end
    end
    return removed
    """.replace("ID_WIDTH", str(ID_WIDTH))

    def remove(self, record_id: str, keys: bytes) -> int:
        """Take a record (a takedown) out of the postings of its keys; returns how many it was in."""
        script = self._redis.register_script(self._REMOVE)
        return int(script(args=[self._prefix, _fixed_width([record_id])[0].tobytes(), keys]))

    def clear(self) -> int:
        """Remove this index's keys (only those under its prefix, in either layout); returns how many."""
        removed = 0
        for layout in (f"{self._namespace}:*", f"{self._prefix}*"):
            for batch in batched(self._redis.scan_iter(match=layout, count=10_000), 10_000):
                removed += self._redis.delete(*batch)
        return removed


class _KeyBatch:
    """A batch's key arrays as the Redis scripts take them (each distinct key once) and their answers
    turned into candidates."""

    def __init__(self, queries: Sequence[np.ndarray]) -> None:
        self.count = len(queries)
        keys = np.concatenate(queries).astype(np.int64) if queries else np.zeros(0, dtype=np.int64)
        self.owner = np.repeat(np.arange(len(queries), dtype=np.int64), [len(q) for q in queries])
        self.distinct, position = np.unique(keys, return_inverse=True)
        self.position = position.reshape(-1)
        self.unique = len(self.distinct)

    @property
    def keys(self) -> bytes:
        """The distinct keys as the raw 8 bytes of each (the hash's field names), one after another."""
        return self.distinct.astype("<i8").tobytes()

    def appends(self, record_ids: Sequence[str]) -> tuple[bytes, bytes]:
        """How many ids each distinct key gets and those ids: the earliest POSTINGS_PER_KEY records of
        the batch with the key, in batch order, each id once (the same source and text can come twice
        in a batch, and a document's keys can repeat)."""
        names, code = np.unique(np.array(list(record_ids), dtype=str), return_inverse=True)
        _, first = np.unique(self.position * len(names) + code.reshape(-1)[self.owner], return_index=True)
        position, owner = self.position[first], self.owner[first]
        order = np.lexsort((owner, position))
        position, owner = position[order], owner[order]
        start = np.flatnonzero(np.r_[True, position[1:] != position[:-1]]) if len(position) else position
        rank = np.arange(len(position)) - np.repeat(start, np.diff(np.r_[start, len(position)]))
        kept = rank < POSTINGS_PER_KEY
        counts = np.bincount(position[kept], minlength=self.unique).astype(np.uint8)
        return counts.tobytes(), _fixed_width(record_ids)[owner[kept]].tobytes()

    def ranked(self, sizes: np.ndarray, postings: bytes, own_ids: Sequence[str] | None, limit: int) -> list[list[str]]:
        """For each query, the records sharing its keys (``sizes[k]`` ids of ``postings`` for distinct
        key k, in order), most shared first, then by id; never itself."""
        result: list[list[str]] = [[] for _ in range(self.count)]
        ids = np.frombuffer(postings, dtype=f"S{ID_WIDTH}")
        if not len(ids) or not limit:
            return result
        names, codes = np.unique(ids, return_inverse=True)  # codes in id order
        codes = codes.reshape(-1)
        first = np.cumsum(sizes) - sizes
        per_key = sizes[self.position]
        query = np.repeat(self.owner, per_key)
        at = (
            np.repeat(first[self.position], per_key)
            + np.arange(per_key.sum())
            - np.repeat(np.cumsum(per_key) - per_key, per_key)
        )
        record = codes[at]
        if own_ids:
            own = _fixed_width(own_ids)
            where = np.minimum(np.searchsorted(names, own), len(names) - 1)
            own_code = np.where(names[where] == own, where, -1)
            keep = record != own_code[query]
            query, record = query[keep], record[keep]
        text = [n.decode().rstrip() for n in names.tolist()]
        return [[text[r] for r in records] for records in _most_shared(query, record, self.count, limit)]


def _fixed_width(record_ids: Sequence[str]) -> np.ndarray:
    if any(len(r) > ID_WIDTH for r in record_ids):
        raise ValueError(f"record ids longer than {ID_WIDTH} characters cannot be indexed")
    return np.array([r.ljust(ID_WIDTH) for r in record_ids], dtype=f"S{ID_WIDTH}")


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
    return _most_shared(later[distinct], earlier[distinct], len(queries), None)


def _most_shared(query: np.ndarray, other: np.ndarray, queries: int, limit: int | None) -> list[list[int]]:
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
