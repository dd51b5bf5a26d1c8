"""The deployment's candidate index, shared by every worker in Redis (the protocol and the embedded index
are ``docsieve.index``). Registered for ``redis://``, ``rediss://`` and ``unix://`` index URLs under the
``docsieve.indexes`` entry points, so the core finds it without importing it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
import redis

from docsieve.index import ID_WIDTH, StoredRows, most_shared, read_rows
from docsieve.models import batched


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
    with numpy (counting in Lua took Redis, which every worker and the broker share, much longer).
    """

    # Shared by the lookup (with staging) and the add script. ARGV: prefix, cap, mode, epoch, the batch's
    # distinct keys (8 bytes each, one string), how many ids each key gets (two bytes each, little-endian,
    # at most cap), the ids (ID_WIDTH each, one string). Unless mode is 'add', the reply starts with each
    # key's number of ids (two bytes each) and all the ids as read, before appending; a key that holds cap
    # ids is common (DOCSIEVE_COMMON_KEY_RECORDS + 1) and its ids are not sent: lookups skip it. Appending
    # skips ids already there and stops at cap (more would never be read); most keys are new, which costs
    # one substring. (Library functions held in locals and a
    # running count of the changes, not #changed per key: less Redis time.)
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
            found[i] = (value and #value < cap * W) and value or ''
            local c = appending and (byte(counts, 2 * i - 1) + 256 * byte(counts, 2 * i)) or 0
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
        for i = 1, n do
            local size = #found[i] / W
            sizes[i] = char(size % 256, math.floor(size / 256))
        end
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

    def __init__(self, url: str, prefix: str, common: int = 1000) -> None:
        self._redis = redis.Redis.from_url(url)
        # A key's first ``common`` + 1 records are kept: once it has that many it is common, never read.
        self._cap = common + 1
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
        batch: list[tuple[int, str, bytes, int, int]] = []
        for row in store.index_rows(after):
            batch.append(row)
            if len(batch) == 1000:  # bounded script calls, each complete up to its own last row
                self._write_rows(batch)
                batch = []
        self._write_rows(batch)

    def _write_rows(self, rows: list[tuple[int, str, bytes, int, int]]) -> None:
        read = read_rows(rows)
        if read.ids:
            self._write(read.ids, read.keys, read.last_seq)

    def add(
        self,
        record_ids: Sequence[str],
        keys: Sequence[np.ndarray],
        last_seq: int,
        times: Sequence[int] = (),
        first_seq: int | None = None,
        arrived: int | None = None,
    ) -> None:
        """After the commit: the staged keys are there, so the sequence number moves; if the index was
        cleared meanwhile, the keys are written again first."""
        if not self._publish(args=[self._prefix, last_seq, self._staged_epoch]):
            self._write(record_ids, keys, last_seq)

    def _write(self, record_ids: Sequence[str], keys: Sequence[np.ndarray], last_seq: int) -> bytes:
        batch = _KeyBatch(keys)
        args: list[str | int | bytes] = [self._prefix, self._cap, "add", uuid.uuid4().hex, batch.keys]
        return self._add(args=[*args, *batch.appends(record_ids, self._cap), last_seq])

    def lookup(
        self,
        queries: Sequence[np.ndarray],
        limit: int,
        times: Sequence[int | None] | None = None,
        stage_ids: Sequence[str] | None = None,
    ) -> tuple[list[list[str]], int]:
        batch = _KeyBatch(queries)
        mode = "stage" if stage_ids else "lookup"
        appends = batch.appends(stage_ids, self._cap) if stage_ids else (b"", b"")
        sizes, ids, seq, epoch = self._lookup(
            args=[self._prefix, self._cap, mode, uuid.uuid4().hex, batch.keys, *appends]
        )
        if stage_ids:
            self._staged_epoch = epoch
        return batch.ranked(np.frombuffer(sizes, dtype="<u2").astype(np.int64), ids, stage_ids, limit), int(seq)

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

    def appends(self, record_ids: Sequence[str], cap: int) -> tuple[bytes, bytes]:
        """How many ids each distinct key gets (two bytes each) and those ids: the earliest ``cap`` records
        of the batch with the key, in batch order, each id once (the same source and text can come twice
        in a batch, and a document's keys can repeat)."""
        names, code = np.unique(np.array(list(record_ids), dtype=str), return_inverse=True)
        _, first = np.unique(self.position * len(names) + code.reshape(-1)[self.owner], return_index=True)
        position, owner = self.position[first], self.owner[first]
        order = np.lexsort((owner, position))
        position, owner = position[order], owner[order]
        start = np.flatnonzero(np.r_[True, position[1:] != position[:-1]]) if len(position) else position
        rank = np.arange(len(position)) - np.repeat(start, np.diff(np.r_[start, len(position)]))
        kept = rank < min(cap, 65535)
        counts = np.bincount(position[kept], minlength=self.unique).astype("<u2")
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
        return [[text[r] for r in records] for records in most_shared(query, record, self.count, limit)]


def _fixed_width(record_ids: Sequence[str]) -> np.ndarray:
    if any(len(r) > ID_WIDTH for r in record_ids):
        raise ValueError(f"record ids longer than {ID_WIDTH} characters cannot be indexed")
    return np.array([r.ljust(ID_WIDTH) for r in record_ids], dtype=f"S{ID_WIDTH}")
