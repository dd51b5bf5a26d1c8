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
from typing import Protocol

import numpy as np

from worker.models import Fingerprint, batched


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


class RedisIndex:
    """The deployment's index, shared by every worker: for each key the (earliest) records that have it,
    and the store sequence number the index is complete up to.

    Keys are written before the records are stored (``stage``, outside the lock), and the sequence
    number only moves under the store's write lock, before the commit; a lookup outside the lock is
    complete up to the sequence number it read, and the records stored after it are looked at under
    the lock. So a record others can see is never missed, and a crash leaves at worst keys of records
    that were never stored (no sketch: never a candidate). A lost or stale Redis is caught up from the
    store's rows by sequence number on the next batch; ``docsieve reindex`` rebuilds it whole.
    """

    # One hash holds every key's postings as "id,id,...": a batch's lookup is a few HMGETs inside one
    # script call instead of one command (or one Lua redis.call, ~3 µs each) per key; a batch has some
    # 15,000 keys. Keys travel as the raw 8 bytes of each int64 (the hash's field names), so neither
    # side formats or parses numbers.
    _ADD = """
    local hash, cap = ARGV[1] .. 'postings', tonumber(ARGV[3])
    local order, added = {}, {}
    for i = 5, #ARGV, 2 do
        local id, keys = ARGV[i], ARGV[i + 1]
        for p = 1, #keys, 8 do
            local key = string.sub(keys, p, p + 7)
            if added[key] then table.insert(added[key], id)
            else added[key] = {id}; order[#order + 1] = key end
        end
    end
    for s = 1, #order, 2000 do
        local e = math.min(s + 1999, #order)
        local current = redis.call('HMGET', hash, unpack(order, s, e))
        local fields = {}
        for j = s, e do
            local key, old = order[j], current[j - s + 1]
            local ids, present = {}, {}
            if old then
                for id in string.gmatch(old, '[^,]+') do ids[#ids + 1] = id; present[id] = true end
            end
            local before = #ids
            for _, id in ipairs(added[key]) do
                if #ids < cap and not present[id] then ids[#ids + 1] = id; present[id] = true end
            end
            if #ids > before then
                fields[#fields + 1] = key; fields[#fields + 1] = table.concat(ids, ',')
            end
        end
        if #fields > 0 then redis.call('HSET', hash, unpack(fields)) end
    end
    redis.call('SETNX', ARGV[1] .. 'epoch', ARGV[4])
    if tonumber(ARGV[2]) > tonumber(redis.call('GET', ARGV[1] .. 'seq') or '0') then
        redis.call('SET', ARGV[1] .. 'seq', ARGV[2])
    end
    return redis.call('GET', ARGV[1] .. 'epoch')
    """
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
    # Counting shared keys per document happens here too: the reply is a few ids a document. With
    # ARGV[4] == 'stage' the documents' own ids are then added under their keys in the same call (one
    # HMGET of the batch's keys serves both), counted from the values read before the addition.
    _LOOKUP = """
    local hash, limit, cap = ARGV[1] .. 'postings', tonumber(ARGV[2]), tonumber(ARGV[3])
    local docs, ids, unique, position = {}, {}, {}, {}
    for i = 6, #ARGV, 2 do
        local keys, blob = {}, ARGV[i + 1]
        for p = 1, #blob, 8 do
            local key = string.sub(blob, p, p + 7)
            keys[#keys + 1] = key
            if not position[key] then unique[#unique + 1] = key; position[key] = #unique end
        end
        docs[#docs + 1] = keys; ids[#ids + 1] = ARGV[i]
    end
    local found = {}
    for s = 1, #unique, 4000 do
        local values = redis.call('HMGET', hash, unpack(unique, s, math.min(s + 3999, #unique)))
        for j = 1, #values do found[s + j - 1] = values[j] end
    end
    local out = {redis.call('GET', ARGV[1] .. 'seq') or '0', ''}
    local listed = {}
    for d = 1, #docs do
        local counts, order = {}, {}
        for _, key in ipairs(docs[d]) do
            local value = found[position[key]]
            if value then
                for id in string.gmatch(value, '[^,]+') do
                    if id ~= ids[d] then
                        if counts[id] then counts[id] = counts[id] + 1
                        else counts[id] = 1; order[#order + 1] = id end
                    end
                end
            end
        end
        table.sort(order, function(a, b)
            if counts[a] ~= counts[b] then return counts[a] > counts[b] end
            return a < b
        end)
        for k = limit + 1, #order do order[k] = nil end
        out[#out + 1] = table.concat(order, ',')
    end
    if ARGV[4] == 'stage' then
        local fields, additions = {}, {}
        for d = 1, #docs do
            for _, key in ipairs(docs[d]) do
                local pos = position[key]
                if not additions[pos] then additions[pos] = {} end
                table.insert(additions[pos], ids[d])
            end
        end
        for pos, added in pairs(additions) do
            local list, present = {}, {}
            if found[pos] then
                for id in string.gmatch(found[pos], '[^,]+') do list[#list + 1] = id; present[id] = true end
            end
            local before = #list
            for _, id in ipairs(added) do
                if #list < cap and not present[id] then list[#list + 1] = id; present[id] = true end
            end
            if #list > before then
                fields[#fields + 1] = unique[pos]; fields[#fields + 1] = table.concat(list, ',')
                if #fields >= 4000 then redis.call('HSET', hash, unpack(fields)); fields = {} end
            end
        end
        if #fields > 0 then redis.call('HSET', hash, unpack(fields)) end
        redis.call('SETNX', ARGV[1] .. 'epoch', ARGV[5])
        out[2] = redis.call('GET', ARGV[1] .. 'epoch')
    end
    return table.concat(out, ';')
    """

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self._prefix = f"{prefix}:index:"
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
        args: list = [self._prefix, last_seq, POSTINGS_PER_KEY, uuid.uuid4().hex]
        for record_id, array in zip(record_ids, keys, strict=True):
            args += (record_id, array.astype("<i8").tobytes())
        return self._add(args=args)

    def lookup(
        self, queries: Sequence[np.ndarray], limit: int, stage_ids: Sequence[str] | None = None
    ) -> tuple[list[list[str]], int]:
        args: list = [self._prefix, limit, POSTINGS_PER_KEY, "stage" if stage_ids else "", uuid.uuid4().hex]
        for record_id, q in zip(stage_ids or [""] * len(queries), queries, strict=True):
            args += (record_id, q.astype("<i8").tobytes())
        seq, epoch, *found = self._lookup(args=args).decode().split(";")
        if stage_ids:
            self._staged_epoch = epoch.encode()
        return [ids.split(",") if ids else [] for ids in found], int(seq)

    def clear(self) -> int:
        """Remove this index's keys (only those under its prefix); returns how many."""
        removed = 0
        for batch in batched(self._redis.scan_iter(match=f"{self._prefix}*", count=10_000), 10_000):
            removed += self._redis.delete(*batch)
        return removed


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
    codes, shared = np.unique(later[distinct] * len(queries) + earlier[distinct], return_counts=True)
    later, earlier = np.divmod(codes, len(queries))
    order = np.lexsort((earlier, -shared, later))  # by later array, most shared first, then earliest
    later, earlier = later[order], earlier[order]
    bounds = np.searchsorted(later, np.arange(len(queries) + 1))
    found = earlier.tolist()
    return [found[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]
