"""The deployment's candidate index, shared by every worker in Redis (the protocol and the embedded index
are ``docsieve.index``). Registered for ``redis://``, ``rediss://`` and ``unix://`` index URLs under the
``docsieve.indexes`` entry points, so the core finds it without importing it.

The layout ("index3"), and why. The second layout ("index2") kept one hash field per key holding
20-character ids: 5.8 KB a document on real articles, nearly all of it Redis's per-field hash-table
entry. This one keeps no Redis structure per key (docs/benchmarks.md, "The shared index's size": 864
bytes a document on the same articles, 6.7x less):

- **Generations.** A record goes into the generation of its index time (spans of half the window; one
  generation without a window). Each generation has a number of its own (its *birth*, from a counter)
  that names every Redis key of it, so a generation that expires leaves the list of live ones in one
  step (done by whichever script moves the horizon) and its keys are deleted a few hundred at a time by
  the writes that follow: no script walks a whole generation, and a generation born again for the same
  span never meets the old one's keys. (Redis TTLs were the plan, but the horizon follows the
  documents' clock, not the wall's: a backfill of old articles moves it days in seconds; and a TTL is
  set key by key, as long as deleting them.)
- **Buckets as plain strings, not listpack hashes.** A generation's postings are 10-byte entries (48
  bits of the mixed key, then a 4-byte record number) in strings, one a bucket, rewritten whole (SET,
  so no string keeps the slack APPEND's growth leaves); a lookup fetches its buckets with MGET and finds
  each key by a substring search. A posting costs its 10 bytes plus about 1.5 for the bucket's own key
  and allocation. Listpack hashes (the plan) cost 14 bytes a posting at best (a header and a back-length
  for the field and for the value) and turn into hash tables past 128 fields or 64-byte values, which
  a string never does.
- **Keys of many records.** A key that reaches ``OVERFLOW`` (8) records in a generation moves to the
  generation's overflow hash (its numbers in one string: 4 bytes a record, and read by HMGET, not
  searched record by record in Lua), a marker entry in its bucket. A generation stops taking records
  for a key at ``common`` + 1: more would never be read.
- **Buckets that split.** The number of buckets follows the generation's size by linear hashing: once a
  generation holds more than ``LOAD`` entries a bucket on average, the next bucket in turn splits in two
  by one more bit of the key, so a bucket is about a kilobyte whatever the generation's size. Entries
  keep the bits that address them (the last four of their six bytes: a substring search keys on the
  first, which the bucket's entries do not share). Two different keys agree in all 48 bits about once in
  2^48: at billions of records a lookup may meet a stray record under a key it does not have, one
  candidate that verification rules out. The worker splits, not Redis: after its write it reads the
  buckets due (``_SPLIT_READ``), splits them with numpy by the bit, and ``_SPLIT`` writes the halves
  unless another worker split them or a takedown or a key's move rewrote one meanwhile (a version in the
  generation's state; entries only appended since are split there, one by one). Until then buckets are a
  little fuller than ``LOAD``, never wrong: a split is one script, and addresses follow its state.
- **Record numbers.** A generation numbers its records from 0 (inside the first call, see below:
  concurrent workers never share a number), and 28-byte slots map a number to its record: the id (20 characters)
  and its index time (8 bytes, with whether it is a publication time). The slots are cut in strings of
  292, each written whole when first used (8 KB with its header: one allocator size class). A record's
  id is also kept as a posting (48 bits of a hash of the id), so a record written again (a retry, a feed
  read twice, a catch-up racing a publish) keeps its number and is not posted twice.
- **A write in two calls.** Per posting Lua work was what Redis's time went to (a substring search, a
  string built and a table entry each), so a write (staging, a catch-up) is two script calls and the
  postings are built between them by the worker. The first (``_MAIN``, the lookup when staging) numbers
  the records not posted yet, writes their slots, and returns each generation's bucket state and how many
  records each of the batch's keys holds in it. The worker then builds every entry with numpy, keeps a
  key's first ``common`` + 1 records of a generation (counting those found), addresses them and groups
  them by bucket; the second (``_APPEND``) appends each bucket's string (read and written whole with
  MGET and MSET: no per-posting step), moves keys reaching ``OVERFLOW`` to the overflow hash, and
  publishes the sequence number (``add``). What another worker does between the two calls: a bucket
  split meanwhile is addressed again in the script, entry by entry; a record posted meanwhile (the same
  id staged twice at once: its id's posting) is not posted again; a generation expired meanwhile sends
  its records through both calls again (the first decides whether they are still indexed); counts that
  moved meanwhile only let a key pass its cap by a few records or reach the overflow hash a write later
  (its entries beside its marker are read, and moved, all the same).

The window (``DOCSIEVE_INDEX_WINDOW``) as the embedded index keeps it: a dated record is forgotten two
windows behind the newest publication, an undated one two windows behind the newest arrival; a dated
lookup reads only the generations within a window of its time, an undated one every live generation.
The newest times only move forward (a max inside the scripts), so concurrent workers agree on the
horizon; the slots' times make the window and the horizon exact record by record (the worker filters),
the generations only decide what is read and what is freed. The span is fixed by the first write (kept
in Redis; a worker with another window reads it and follows): ``docsieve reindex`` after changing it.

Common keys: a key is skipped when the generations a lookup reads hold ``common`` + 1 records or more
under it, counted over those generations together (as the embedded index counts over its segments).

The cost (docs/benchmarks.md, "The shared index's size"; bench/redis_index.py, commit 276805b): Redis's
time for an ingest is now the second layout's (130-136 against 134-148 µs a document, 0.83-1.01x over six
runs on Redis 6.2 and 7.0; it was 2.2-3x while each posting was a step of Lua). A lookup still costs Redis
more than one hash field a key did (a string made and searched for each key, ~0.3 µs of Lua each): 512 new
articles took 1.17-1.5x the second layout's time in those runs (the same script time as before the write
moved to two calls), indexed ones 1.5-1.9x. The next step there: the keys sent as arguments grouped by
bucket under the worker's last known state (no string made or address computed in Lua a key).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import redis

from docsieve.index import DAY, ID_WIDTH, StoredRows, lone_phrases, most_shared, read_rows
from docsieve.models import batched

LAYOUT = "index3"  # "index": comma-separated ids; "index2": one hash, fixed-width ids
OLD_LAYOUTS = ("index", "index2")
ENTRY = 10  # bytes of a posting: 6 of the mixed key, 4 of the record number
PART = 6
SLOT = ID_WIDTH + 8  # a record number's slot: its id and its time
CHUNK = 292  # slots per table string: 8,176 bytes, which with the string's header fill an 8 KB allocation
# Entries a bucket holds on average before the next one splits (a bucket then holds 0.5-1.3 KB: its Redis
# key's ~100 bytes are about 1 byte a posting, and a lookup's substring search stays short).
LOAD = 96
# A key that reaches this many records in a generation moves to the generation's overflow hash (its
# numbers one string: read by HMGET without a step of Lua a record, 4 bytes a record instead of 10); a
# marker entry (MARK for a number) stays in its bucket.
OVERFLOW = 8
NONE = 0xFFFFFFFF  # a record number the first call gives a record it does not write
MAX_SPLITS = 4096  # buckets one split call rewrites at most
EVERY = 1 << 53  # a generation range that holds every generation (undated queries), exact in Lua's doubles

# A record as the main script takes it: its generation, time, arrival, whether dated, its id's key part,
# and its slot (id and time code).
_RECORD = np.dtype(
    [
        ("g", "<i8"),
        ("t", "<i8"),
        ("a", "<i8"),
        ("d", "u1"),
        ("idpart", f"S{PART}"),
        ("id", f"S{ID_WIDTH}"),
        ("time", "<i8"),
    ]
)
# The first call's reply: a (key, generation) found (flags: 1 some numbers in the overflow hash, 2 its numbers
# sent), a generation written, a record's generation (index among those) and number.
_HIT = np.dtype([("key", "<u4"), ("gen", "<u4"), ("count", "<u4"), ("flags", "<u4")])
_WRITTEN = np.dtype([("g", "<i8"), ("birth", "<i8"), ("L", "<u4"), ("p", "<u4")])
_NUMBERED = np.dtype([("gen", "<u4"), ("number", "<u4")])
# The second call's arguments: a posting, a generation (and how many of each below it has), a key of many
# records (kind 1: numbers appended to its overflow string, 2: moved there), a record.
_ENTRY = np.dtype([("part", f"V{PART}"), ("number", "<u4")])
_GEN = np.dtype(
    [
        ("g", "<i8"),
        ("birth", "<i8"),
        ("L", "<u4"),
        ("p", "<u4"),
        ("buckets", "<u4"),
        ("keys", "<u4"),
        ("records", "<u4"),
    ]
)
_STATE = np.dtype([("birth", "<i8"), ("L", "<u4"), ("p", "<u4"), ("n", "<i8")])
_KEYED = np.dtype([("part", f"V{PART}"), ("kind", "u1"), ("bytes", "<u4")])
_WRITING = np.dtype([("idpart", f"V{PART}"), ("number", "<u4"), ("id", f"S{ID_WIDTH}")])

# Shared by every script: the generation state, addresses, and the horizon.
_COMMON_LUA = """
local P = ARGV[1]
local sub, byte, find, call = string.sub, string.byte, string.find, redis.call
local spack, sunpack = struct.pack, struct.unpack
local floor = math.floor
local MARK = '\\255\\255\\255\\255'  -- a number no record has: the key's records are in the overflow hash
-- A key part's last four bytes as a number: its bucket address bits. (Not its first: every entry of a
-- bucket shares its address's low byte, which would make a substring search stop at every entry.)
local function low32(s, at)
    local b1, b2, b3, b4 = byte(s, at + 2, at + 5)
    return b1 + 256 * (b2 + 256 * (b3 + 256 * b4))
end
local function address(h, L, p)  -- linear hashing: buckets before the split pointer use one more bit
    local n = 2 ^ L
    local b = h % n
    if b < p then b = h % (2 * n) end
    return b
end
local function bucket(birth, b) return P .. birth .. 'b' .. b end
local function chunk(birth, c) return P .. birth .. 'r' .. c end
local function numbers_of(blob, part)  -- the record numbers (4 bytes each) under a key part, aligned entries only
    local got, from = nil, 1
    while true do
        local at = find(blob, part, from, true)
        if not at then break end
        if (at - 1) % ENTRY == 0 then
            got = got or {}
            got[#got + 1] = sub(blob, at + PART, at + ENTRY - 1)
            from = at + ENTRY
        else
            from = at + 1
        end
    end
    return got
end
local function without(blob, entry)  -- the blob without the aligned occurrences of entry (a part or a whole entry)
    local from, out, start = 1, {}, 1
    while true do
        local at = find(blob, entry, from, true)
        if not at then break end
        if (at - 1) % ENTRY == 0 then
            out[#out + 1] = sub(blob, start, at - 1)
            start = at + ENTRY
            from = start
        else
            from = at + 1
        end
    end
    if start == 1 then return blob end
    out[#out + 1] = sub(blob, start)
    return table.concat(out)
end
""".replace("ENTRY", str(ENTRY)).replace("PART", str(PART))

# The first call of a lookup or a write: it reads, and a write's records get their numbers. ARGV: 1 prefix,
# 2 cap, 3 mode ('lookup', 'stage' or 'add'), 4 the epoch to set if there is none, 5 span (seconds; 0 one
# generation), 6 key parts (6 bytes each, the batch's distinct keys), 7 generation ranges (two int64 each),
# 8 each key's range (uint32; empty with one range), 9 records (int64 generation, int64 time, int64
# arrival, a byte dated, 6 bytes of the id's hash, the 28-byte slot).
# Reply: a span mismatch as {'span', span}; else {hits (uint32 key, generation ordinal, count, flags each:
# 1 some in the overflow hash, 2 its numbers are sent), numbers (4 bytes each, of the hits flagged 2 in
# order), births (int64 per ordinal), seq, epoch, newest publication, newest arrival, the generations
# written (int64 generation, int64 birth, uint32 L, uint32 p each), each record's (uint32 generation
# index, uint32 number; NONE when it is not written: known already, or behind the horizon)}.
# A write ('add') reads only counts: the caps of the keys it writes, in the worker.
_MAIN = (
    _COMMON_LUA
    + """
local cap, mode, span = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[5])
local parts, rangetab, keyranges, recs = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local state = P .. 'state'
local stored = call('HGET', state, 'span')
if stored and tonumber(stored) ~= span then return {'span', stored} end
local writing = mode ~= 'lookup'
local counting = mode == 'add'
if writing and not stored then call('HSET', state, 'span', span) end
local nkeys = #parts / PART
local h, ps = {}, {}
for i = 1, nkeys do  -- each key's address bits and its part, once for every generation
    local k = PART * i - PART
    local b1, b2, b3, b4 = byte(parts, k + 3, k + 6)
    h[i] = b1 + 256 * (b2 + 256 * (b3 + 256 * b4))
    ps[i] = sub(parts, k + 1, k + PART)
end

local live = call('HGETALL', P .. 'gens')
local gens, births = {}, {}
for j = 1, #live, 2 do
    local birth = live[j + 1]
    local st = call('HMGET', P .. 's' .. birth, 'L', 'p')
    gens[#gens + 1] = {g = tonumber(live[j]), birth = birth, L = tonumber(st[1]), p = tonumber(st[2])}
    births[#births + 1] = spack('<i8', tonumber(birth))
end
local lo, hi = {}, {}
local nranges = #rangetab / 16
for r = 1, nranges do lo[r], hi[r] = sunpack('<i8i8', rangetab, 16 * r - 15) end
-- Each (key, generation) with postings: key, ordinal, count, flags (flat, four a group), and the numbers.
local heads, nums, total, ng = {}, {}, {}, 0
for o, gen in ipairs(gens) do
    local g, birth, p = gen.g, gen.birth, gen.p
    local n1 = 2 ^ gen.L
    local n2 = 2 * n1
    local every = nil  -- one range for every key (the usual batch): read for all keys or for none
    if nranges == 0 then every = false elseif nranges == 1 then every = g >= lo[1] and g <= hi[1] end
    -- First every bucket to read, fetched with MGET (one call for thousands: a call from Lua costs more
    -- than the read), then each key searched in its bucket.
    local slot_of, names, bucket_of = {}, {}, {}
    if every ~= false then
        for i = 1, nkeys do
            local read = every
            if read == nil then
                local r = sunpack('<I4', keyranges, 4 * i - 3) + 1
                read = g >= lo[r] and g <= hi[r]
            end
            if read then
                local hv = h[i]
                local b = hv % n1
                if b < p then b = hv % n2 end
                local slot = slot_of[b]
                if not slot then
                    slot = #names + 1
                    names[slot] = P .. birth .. 'b' .. b
                    slot_of[b] = slot
                end
                bucket_of[i] = slot
            end
        end
    end
    local cache = {}
    for s = 1, #names, 4000 do
        local values = call('MGET', unpack(names, s, math.min(s + 3999, #names)))
        for j = 1, #values do cache[s + j - 1] = values[j] or '' end
    end
    local over, overkey, overnums = {}, {}, {}
    for i = 1, nkeys do
        local slot = bucket_of[i]
        if slot then
            local blob, part = cache[slot], ps[i]
            local at = find(blob, part, 1, true)
            if at then  -- most keys of a new document are nowhere: this is the rarer path
                local c, first, more, marked = 0, '', nil, false
                while at do
                    if (at - 1) % ENTRY == 0 then  -- an entry's start, not bytes across two entries
                        local nb = sub(blob, at + PART, at + ENTRY - 1)
                        if nb == MARK then
                            marked = true
                        else  -- one record (the usual) without a table
                            c = c + 1
                            if c == 1 then first = nb elseif c == 2 then more = {first, nb} else more[c] = nb end
                        end
                        at = find(blob, part, at + ENTRY, true)
                    else
                        at = find(blob, part, at + 1, true)
                    end
                end
                local got = more and table.concat(more) or first
                if marked then  -- in the overflow hash (and, written by a worker that did not know yet, here)
                    over[#over + 1] = part
                    overkey[#over] = i
                    overnums[#over] = got
                elseif c > 0 then
                    heads[4 * ng + 1], heads[4 * ng + 2], heads[4 * ng + 3], heads[4 * ng + 4] = i - 1, o - 1, c, 0
                    ng = ng + 1
                    nums[ng] = got
                    total[i] = (total[i] or 0) + c
                end
            end
        end
    end
    for s = 1, #over, 4000 do  -- keys of many records: their numbers in one string each
        local values = call('HMGET', P .. birth .. 'o', unpack(over, s, math.min(s + 3999, #over)))
        for j = 1, #values do
            local v = overnums[s + j - 1] .. (values[j] or '')
            local i = overkey[s + j - 1]
            heads[4 * ng + 1], heads[4 * ng + 2], heads[4 * ng + 3], heads[4 * ng + 4] = i - 1, o - 1, #v / 4, 1
            ng = ng + 1
            nums[ng] = v
            total[i] = (total[i] or 0) + #v / 4
        end
    end
end
-- A key held by cap records or more in the generations read is common: its numbers are not sent (its
-- count is: a write's caps).
local knums = {}
if not counting then
    for j = 0, ng - 1 do
        if total[heads[4 * j + 1] + 1] < cap then
            heads[4 * j + 4] = heads[4 * j + 4] + 2
            knums[#knums + 1] = nums[j + 1]
        end
    end
end
local packed = {}
for s = 1, 4 * ng, 4000 do
    local e = math.min(s + 3999, 4 * ng)
    packed[#packed + 1] = spack('<' .. string.rep('I4', e - s + 1), unpack(heads, s, e))
end
local gens_written, numbered = {}, {}

if writing then
    call('SETNX', P .. 'epoch', ARGV[4])
    local RECORD = 8 + 8 + 8 + 1 + PART + SLOT
    local nrec = #recs / RECORD
    local pub, arr = tonumber(call('HGET', state, 'published')), tonumber(call('HGET', state, 'arrived'))
    local moved = false
    for r = 1, nrec do
        local _, t, a, dated = sunpack('<i8i8i8B', recs, RECORD * (r - 1) + 1)
        if dated == 1 and (not pub or t > pub) then pub = t; moved = true end
        if not arr or a > arr then arr = a; moved = true end
    end
    local hd, hu = nil, nil  -- the horizons: records before them are forgotten
    if span > 0 then
        if pub then hd = pub - 4 * span end
        if arr then hu = arr - 4 * span end
    end
    if moved then
        if pub then call('HSET', state, 'published', pub) end
        call('HSET', state, 'arrived', arr)
        if span > 0 then  -- generations wholly behind the horizon leave the live list, to be swept
            for j = 1, #live, 2 do
                local g, birth = tonumber(live[j]), live[j + 1]
                local k = tonumber(call('HGET', P .. 's' .. birth, 'k') or '0')
                local ends = (g + 1) * span
                local dated_gone = k % 2 == 0 or (hd and ends <= hd)
                local undated_gone = k < 2 or (hu and ends <= hu)
                if dated_gone and undated_gone then
                    call('HDEL', P .. 'gens', live[j])
                    call('RPUSH', P .. 'dead', birth)
                end
            end
        end
    end
    local wgens, order = {}, {}  -- generation -> its state; in the order first written
    local function gen_of(g)
        local gen = wgens[g]
        if gen then return gen end
        local birth = call('HGET', P .. 'gens', g)
        if not birth then
            birth = tostring(call('HINCRBY', state, 'births', 1))
            call('HSET', P .. 'gens', g, birth)
            call('HSET', P .. 's' .. birth, 'L', 0, 'p', 0, 'n', 0, 'r', 0, 'k', 0, 'g', g)
        end
        local st = call('HMGET', P .. 's' .. birth, 'L', 'p', 'r', 'k')
        gen = {g = g, birth = birth, L = tonumber(st[1]), p = tonumber(st[2]), r = tonumber(st[3]),
               k = tonumber(st[4]), slots = {}, wanted = {}, names = {}, blobs = {}, index = #order}
        gen.r0, gen.k0 = gen.r, gen.k
        order[#order + 1] = gen
        wgens[g] = gen
        return gen
    end
    -- The live records' generations, and the buckets of their ids' postings, read at once (a record
    -- whose id is posted was written before: a retry, a feed read twice, a catch-up racing a publish).
    local of = {}
    for r = 1, nrec do
        local base = RECORD * (r - 1) + 1
        local g, t, _, dated = sunpack('<i8i8i8B', recs, base)
        -- A record past the horizon is not indexed (it would be forgotten at once).
        if (dated == 1 and (not hd or t >= hd)) or (dated == 0 and (not hu or t >= hu)) then
            local gen = gen_of(g)
            local b = address(low32(recs, base + 25), gen.L, gen.p)
            if not gen.wanted[b] then
                gen.wanted[b] = true
                gen.names[#gen.names + 1] = b
            end
            of[r] = gen
        end
    end
    for _, gen in ipairs(order) do
        local names = {}
        for j, b in ipairs(gen.names) do names[j] = bucket(gen.birth, b) end
        for s = 1, #names, 4000 do
            local values = call('MGET', unpack(names, s, math.min(s + 3999, #names)))
            for j = 1, #values do gen.blobs[gen.names[s + j - 1]] = values[j] or '' end
        end
    end
    for r = 1, nrec do
        local gen, number = of[r], NONE
        if gen then
            local base = RECORD * (r - 1) + 1
            local dated = byte(recs, base + 24)
            local idpart = sub(recs, base + 25, base + 24 + PART)
            local slot = sub(recs, base + 25 + PART, base + 24 + PART + SLOT)
            local id = sub(slot, 1, ID_WIDTH)
            local blob = gen.blobs[address(low32(idpart, 1), gen.L, gen.p)]
            local known = false
            for _, nb in ipairs(numbers_of(blob, idpart) or {}) do
                local n = sunpack('<I4', nb)
                local off = (n % CHUNK) * SLOT
                if call('GETRANGE', chunk(gen.birth, floor(n / CHUNK)), off, off + ID_WIDTH - 1) == id then
                    known = true
                    break
                end
            end
            if not known then
                number = gen.r
                gen.r = number + 1
                gen.slots[#gen.slots + 1] = slot
                local bit = dated == 1 and 1 or 2
                if gen.k % (2 * bit) < bit then gen.k = gen.k + bit end
            end
        end
        numbered[r] = spack('<I4I4', gen and gen.index or 0, number)
    end
    for _, gen in ipairs(order) do
        -- The new slots, numbers r0 up: one SETRANGE a table string (made whole when its first slot is).
        local n, s = gen.r0, 1
        while n < gen.r do
            local c, off = floor(n / CHUNK), n % CHUNK
            local take = math.min(CHUNK - off, gen.r - n)
            local name = chunk(gen.birth, c)
            if off == 0 then call('SET', name, string.rep('\\0', CHUNK * SLOT)) end
            call('SETRANGE', name, off * SLOT, table.concat(gen.slots, '', s, s + take - 1))
            s, n = s + take, n + take
        end
        if gen.r ~= gen.r0 or gen.k ~= gen.k0 then call('HSET', P .. 's' .. gen.birth, 'r', gen.r, 'k', gen.k) end
        gens_written[#gens_written + 1] = spack('<i8i8I4I4', gen.g, tonumber(gen.birth), gen.L, gen.p)
    end
end
local st = call('HMGET', state, 'published', 'arrived')
return {table.concat(packed), table.concat(knums), table.concat(births), call('GET', P .. 'seq') or '0',
        call('GET', P .. 'epoch') or '', st[1] or '', st[2] or '', table.concat(gens_written), table.concat(numbered)}
"""
).replace("ID_WIDTH", str(ID_WIDTH))
for _name, _value in (("ENTRY", ENTRY), ("PART", PART), ("SLOT", SLOT), ("CHUNK", CHUNK), ("NONE", NONE)):
    _MAIN = _MAIN.replace(_name, str(_value))

# The second call of a write: the entries the worker built, appended a bucket at a time. ARGV: 1 prefix,
# 2 mode ('stage' or 'add'), 3 the sequence number to publish ('add'), 4 the generations (int64 generation,
# int64 birth, uint32 L and p as the worker addressed them, uint32 buckets, keys, records each), 5 buckets
# (uint32 bucket, uint32 bytes each), 6 their entries, 7 keys of many records (6 bytes of the key, a byte:
# 1 append to its overflow numbers, 2 move it there; uint32 bytes), 8 their numbers, 9 the records (6
# bytes of the id's hash, uint32 number, the id).
# Reply: the generations (int64 each) that expired (and maybe were born again) since the first call (their
# records are written again from the first call), and the others' state after (int64 birth, uint32 L and p,
# int64 entries each): the worker splits the buckets due (``_SPLIT``).
_APPEND = (
    _COMMON_LUA
    + """
local mode = ARGV[2]
local gtab, bheads, bblob, kheads, kblob, rtab = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local GEN, REC = 8 + 8 + 4 * 5, PART + 4 + ID_WIDTH
local gone, states = {}, {}
local written = 0
local bpos, boff, kpos, koff, rpos = 1, 1, 1, 1, 1
local function keep(nums, drop)  -- numbers (4 bytes each) less those dropped
    local out = {}
    for e = 1, #nums, 4 do
        local nb = sub(nums, e, e + 3)
        if not drop[nb] then out[#out + 1] = nb end
    end
    return table.concat(out)
end
for gi = 1, #gtab / GEN do
    local g, birth, L0, p0, nb, nk, nr = sunpack('<i8i8I4I4I4I4I4', gtab, GEN * gi - GEN + 1)
    birth = string.format('%d', birth)
    local bstart, kstart, rstart = bpos, kpos, rpos
    local bostart, kostart = boff, koff
    bpos, kpos, rpos = bpos + 8 * nb, kpos + (PART + 5) * nk, rpos + REC * nr
    for j = 0, nb - 1 do boff = boff + sunpack('<I4', bheads, bstart + 8 * j + 4) end
    for j = 0, nk - 1 do koff = koff + sunpack('<I4', kheads, kstart + (PART + 5) * j + PART + 1) end
    if call('HGET', P .. 'gens', g) ~= birth then
        gone[#gone + 1] = spack('<i8', g)
    else
        local sname, oname = P .. 's' .. birth, P .. birth .. 'o'
        local st = call('HMGET', sname, 'L', 'p', 'n')
        local L, p, n = tonumber(st[1]), tonumber(st[2]), tonumber(st[3])
        local n1, nL0 = 2 ^ L, 2 ^ L0
        local pending, targets = {}, {}  -- bucket -> its new entries (strings); the buckets, in order
        local function put(b, s)
            local list = pending[b]
            if not list then list = {}; pending[b] = list; targets[#targets + 1] = b end
            list[#list + 1] = s
        end
        local off = bostart
        for j = 0, nb - 1 do
            local b, len = sunpack('<I4I4', bheads, bstart + 8 * j)
            local s = sub(bblob, off, off + len - 1)
            off = off + len
            -- A bucket split since the worker addressed it (by another worker's write between the two
            -- calls): its entries are addressed again here, one by one.
            local d0 = (b < p0 or b >= nL0) and L0 + 1 or L0
            local d1 = (b < p or b >= n1) and L + 1 or L
            if d0 == d1 then
                put(b, s)
            else
                for e = 1, #s, ENTRY do put(address(low32(s, e), L, p), sub(s, e, e + ENTRY - 1)) end
            end
        end
        local keyed, moves = {}, false
        off = kostart
        for j = 0, nk - 1 do
            local at = kstart + (PART + 5) * j
            local part = sub(kheads, at, at + PART - 1)
            local kind, len = sunpack('<BI4', kheads, at + PART)
            keyed[#keyed + 1] = {part, kind, sub(kblob, off, off + len - 1)}
            off = off + len
            if kind == 2 then
                local b = address(low32(part, 1), L, p)
                if not pending[b] then pending[b] = {}; targets[#targets + 1] = b end
            end
        end
        -- Every bucket written, read at once; each record's id bucket is among them.
        local blobs = {}
        for s = 1, #targets, 4000 do
            local names = {}
            for j = s, math.min(s + 3999, #targets) do names[#names + 1] = bucket(birth, targets[j]) end
            local values = call('MGET', unpack(names))
            for j = 1, #values do blobs[targets[s + j - 1]] = values[j] or '' end
        end
        -- A record another write posted since the first call (the same id, staged twice at once) is not
        -- posted again: its entries are dropped, its slot cleared.
        local drop = nil
        for j = 0, nr - 1 do
            local at = rstart + REC * j
            local idpart, mine = sub(rtab, at, at + PART - 1), sub(rtab, at + PART, at + PART + 3)
            local id = sub(rtab, at + PART + 4, at + REC - 1)
            for _, other in ipairs(numbers_of(blobs[address(low32(idpart, 1), L, p)] or '', idpart) or {}) do
                if other ~= mine and other ~= MARK then
                    local num = sunpack('<I4', other)
                    local o = (num % CHUNK) * SLOT
                    if call('GETRANGE', chunk(birth, floor(num / CHUNK)), o, o + ID_WIDTH - 1) == id then
                        drop = drop or {}
                        drop[mine] = true
                        local own = sunpack('<I4', mine)
                        local zero = string.rep('\\0', SLOT)
                        call('SETRANGE', chunk(birth, floor(own / CHUNK)), (own % CHUNK) * SLOT, zero)
                        break
                    end
                end
            end
        end
        local new = {}
        for _, b in ipairs(targets) do
            local add = table.concat(pending[b])
            if drop then
                local out = {}
                for e = 1, #add, ENTRY do
                    if not drop[sub(add, e + PART, e + ENTRY - 1)] then out[#out + 1] = sub(add, e, e + ENTRY - 1) end
                end
                add = table.concat(out)
            end
            new[b] = blobs[b] .. add
        end
        -- Keys of many records: numbers appended to their overflow string, or the key moved there (its
        -- entries out of the bucket, a marker in their place).
        if #keyed > 0 then
            local fields = {}
            for j, item in ipairs(keyed) do fields[j] = item[1] end
            local values = call('HMGET', oname, unpack(fields))
            local sets = {}
            for j, item in ipairs(keyed) do
                local part, kind, nums = item[1], item[2], item[3]
                if drop then nums = keep(nums, drop) end
                local value = values[j] or ''
                if kind == 2 then
                    moves = true
                    local b = address(low32(part, 1), L, p)
                    local moving = {}
                    for _, nb in ipairs(numbers_of(new[b], part) or {}) do
                        if nb ~= MARK then moving[#moving + 1] = nb end
                    end
                    new[b] = without(new[b], part) .. part .. MARK
                    value = value .. table.concat(moving)
                end
                written = written + #nums / 4
                sets[#sets + 1] = part
                sets[#sets + 1] = value .. nums
            end
            call('HSET', oname, unpack(sets))
        end
        local sets = {}
        for _, b in ipairs(targets) do
            local grown = (#new[b] - #blobs[b]) / ENTRY
            if grown ~= 0 or new[b] ~= blobs[b] then
                sets[#sets + 1] = bucket(birth, b)
                sets[#sets + 1] = new[b]
                n = n + grown
                written = written + math.max(grown, 0)
            end
        end
        for s = 1, #sets, 2000 do call('MSET', unpack(sets, s, math.min(s + 1999, #sets))) end
        call('HSET', sname, 'n', n)
        if moves then call('HINCRBY', sname, 'v', 1) end  -- a bucket rewritten, not appended to: splits read it again
        states[#states + 1] = spack('<i8I4I4i8', tonumber(birth), L, p, n)
    end
end
-- Sweep expired generations: a few hundred keys a call, more when more was written.
local budget = 256 + floor(written / 8)
while budget > 0 do
    local birth = call('LINDEX', P .. 'dead', 0)
    if not birth then break end
    local sname = P .. 's' .. birth
    local st = call('HMGET', sname, 'L', 'p', 'r', 'c')
    local nb = 2 ^ tonumber(st[1] or '0') + tonumber(st[2] or '0')
    local nc = math.ceil(tonumber(st[3] or '0') / CHUNK)
    local total = nb + nc + 1
    local c = tonumber(st[4] or '0')
    local names = {}
    while c < total and #names < budget do
        if c < nb then names[#names + 1] = bucket(birth, c)
        elseif c < nb + nc then names[#names + 1] = chunk(birth, c - nb)
        else names[#names + 1] = P .. birth .. 'o' end
        c = c + 1
    end
    -- UNLINK: the overflow hash can be large, and is freed off the main thread
    for s = 1, #names, 1000 do call('UNLINK', unpack(names, s, math.min(s + 999, #names))) end
    budget = budget - #names
    if c >= total then
        call('DEL', sname)
        call('LPOP', P .. 'dead')
    else
        call('HSET', sname, 'c', c)
    end
end
if mode == 'add' and #gone == 0 and tonumber(ARGV[3]) > tonumber(call('GET', P .. 'seq') or '0') then
    call('SET', P .. 'seq', ARGV[3])
end
return {table.concat(gone), table.concat(states)}
"""
).replace("ID_WIDTH", str(ID_WIDTH))
for _name, _value in (("ENTRY", ENTRY), ("PART", PART), ("SLOT", SLOT), ("CHUNK", CHUNK), ("LOAD", LOAD)):
    _APPEND = _APPEND.replace(_name, str(_value))

# Splits the buckets a worker read and split (linear hashing: bucket p into p and p + 2^L by bit L of the
# address), in turn from the split pointer. ARGV: 1 prefix, 2 birth, 3 L, 4 p and 5 version as it read them,
# 6 each bucket's length as read (uint32 each), then each bucket's two halves. Applied only if no split and no
# rewrite (a takedown, a key moved to the overflow hash: the version) came since; entries appended since are
# split here, one by one. Returns how many buckets split.
_SPLIT = (
    _COMMON_LUA
    + """
local birth, L, p0, version, seen = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local sname = P .. 's' .. birth
local st = call('HMGET', sname, 'L', 'p', 'v')
if tonumber(st[1]) ~= L or tonumber(st[2]) ~= p0 or (st[3] or '0') ~= version then return 0 end
local count = #seen / 4
local names = {}
for j = 1, count do names[j] = bucket(birth, p0 + j - 1) end
local now = call('MGET', unpack(names))
local at, div = 2 + floor(L / 8), 2 ^ (L % 8)
local sets, empty, p = {}, {}, p0
for j = 1, count do
    local len, blob = sunpack('<I4', seen, 4 * j - 3), now[j] or ''
    if #blob < len then break end
    local kept, moved = ARGV[5 + 2 * j], ARGV[6 + 2 * j]
    if #blob > len then
        local stay, move = {kept}, {moved}
        for e = len + 1, #blob, ENTRY do
            local t = floor(byte(blob, e + at) / div) % 2 == 1 and move or stay
            t[#t + 1] = sub(blob, e, e + ENTRY - 1)
        end
        kept, moved = table.concat(stay), table.concat(move)
    end
    if #kept > 0 then
        sets[#sets + 1] = names[j]
        sets[#sets + 1] = kept
    else
        empty[#empty + 1] = names[j]
    end
    if #moved > 0 then
        sets[#sets + 1] = bucket(birth, p + 2 ^ L)
        sets[#sets + 1] = moved
    end
    p = p + 1
end
for s = 1, #sets, 2000 do call('MSET', unpack(sets, s, math.min(s + 1999, #sets))) end
if #empty > 0 then call('DEL', unpack(empty)) end
if p == 2 ^ L then call('HSET', sname, 'L', L + 1, 'p', 0) else call('HSET', sname, 'p', p) end
return p - p0
"""
).replace("ENTRY", str(ENTRY))

# The buckets due to split, read with the state that says so. ARGV: prefix, birth, the first bucket, how many.
# Reply: {L, p, version, the buckets' strings}.
_SPLIT_READ = """
local P, birth, first = ARGV[1], ARGV[2], tonumber(ARGV[3])
local st = redis.call('HMGET', P .. 's' .. birth, 'L', 'p', 'v')
local names = {}
for b = first, first + tonumber(ARGV[4]) - 1 do names[#names + 1] = P .. birth .. 'b' .. b end
local blobs = redis.call('MGET', unpack(names))
for j = 1, #names do blobs[j] = blobs[j] or '' end
return {st[1] or '', st[2] or '', st[3] or '0', blobs}
"""

# Moves the sequence number only if the staged keys are still there (the same epoch: the index was not
# cleared, nor Redis restarted empty, since they were written); otherwise the caller writes them again.
_PUBLISH = """
if redis.call('GET', ARGV[1] .. 'epoch') ~= ARGV[3] then return 0 end
if tonumber(ARGV[2]) > tonumber(redis.call('GET', ARGV[1] .. 'seq') or '0') then
    redis.call('SET', ARGV[1] .. 'seq', ARGV[2])
end
return 1
"""

# Record numbers to slots. ARGV: prefix, births (int64 each), how many numbers each (uint32), the numbers
# (4 bytes each). A slot whose generation was swept meanwhile comes back as zeros.
_RESOLVE = (
    _COMMON_LUA
    + """
local births, counts, nums = ARGV[2], ARGV[3], ARGV[4]
local out, k, at = {}, 0, 1
local ZERO = string.rep('\\0', SLOT)
for j = 1, #births / 8 do
    local birth = string.format('%d', sunpack('<i8', births, 8 * j - 7))
    for _ = 1, sunpack('<I4', counts, 4 * j - 3) do
        local n = sunpack('<I4', nums, at)
        at = at + 4
        local off = (n % CHUNK) * SLOT
        local s = call('GETRANGE', chunk(birth, floor(n / CHUNK)), off, off + SLOT - 1)
        k = k + 1
        out[k] = #s == SLOT and s or ZERO
    end
end
return table.concat(out)
"""
)
for _name, _value in (("SLOT", SLOT), ("CHUNK", CHUNK)):
    _RESOLVE = _RESOLVE.replace(_name, str(_value))

# Takes a record out of every live generation. ARGV: prefix, its slot's id (ID_WIDTH), its id's part,
# its key parts (6 bytes each). Returns how many key postings went.
_REMOVE = (
    _COMMON_LUA
    + """
local id, idpart, parts = ARGV[2], ARGV[3], ARGV[4]
local removed = 0
local live = call('HGETALL', P .. 'gens')
for j = 1, #live, 2 do
    local birth = live[j + 1]
    local sname = P .. 's' .. birth
    local st = call('HMGET', sname, 'L', 'p', 'n')
    local L, p, n = tonumber(st[1]), tonumber(st[2]), tonumber(st[3])
    local oname = P .. birth .. 'o'
    local function drop(h, entry)  -- the entry out of its bucket, and out of the overflow hash if marked there
        local name = bucket(birth, address(h, L, p))
        local blob = call('GET', name)
        if not blob then return 0 end
        local part, nb = sub(entry, 1, PART), sub(entry, PART + 1)
        local gone = 0
        local marked = find(blob, part .. MARK, 1, true)
        if marked and (marked - 1) % ENTRY == 0 then  -- numbers only there, 4 bytes each
            local value, from = call('HGET', oname, part) or '', 1
            while true do
                local at = find(value, nb, from, true)
                if not at then break end
                if (at - 1) % 4 == 0 then
                    value = sub(value, 1, at - 1) .. sub(value, at + 4)
                    if #value == 0 then call('HDEL', oname, part) else call('HSET', oname, part, value) end
                    gone = 1
                    break
                end
                from = at + 1
            end
        end
        -- (a worker that did not know the key had moved may have written entries beside the marker)
        local rest = without(blob, entry)
        if #rest == #blob then return gone end
        if #rest == 0 then call('DEL', name) else call('SET', name, rest) end
        n = n - (#blob - #rest) / ENTRY
        return gone + (#blob - #rest) / ENTRY
    end
    local hid = low32(idpart, 1)
    local blob = call('GET', bucket(birth, address(hid, L, p))) or ''
    for _, nb in ipairs(numbers_of(blob, idpart) or {}) do
        local num = sunpack('<I4', nb)
        local name, off = chunk(birth, floor(num / CHUNK)), (num % CHUNK) * SLOT
        if call('GETRANGE', name, off, off + ID_WIDTH - 1) == id then
            for i = 1, #parts / PART do
                local part = sub(parts, PART * i - PART + 1, PART * i)
                removed = removed + drop(low32(part, 1), part .. nb)
            end
            drop(hid, idpart .. nb)
            call('SETRANGE', name, off, string.rep('\\0', SLOT))
        end
    end
    call('HSET', sname, 'n', n)
    call('HINCRBY', sname, 'v', 1)  -- buckets rewritten: a split read before is not applied
end
return removed
"""
).replace("ID_WIDTH", str(ID_WIDTH))
for _name, _value in (("ENTRY", ENTRY), ("PART", PART), ("SLOT", SLOT), ("CHUNK", CHUNK)):
    _REMOVE = _REMOVE.replace(_name, str(_value))


class RedisIndex:
    """The deployment's index, shared by every worker: for each key the (earliest) records that have it,
    by generation, and the store sequence number the index is complete up to (the layout: the module's
    docstring).

    Keys are written before the records are stored (``stage``, outside the lock), and the sequence
    number only moves under the store's write lock, before the commit; a lookup outside the lock is
    complete up to the sequence number it read, and the records stored after it are looked at under
    the lock. So a record others can see is never missed, and a crash leaves at worst keys of records
    that were never stored (no sketch: never a candidate). A lost or stale Redis is caught up from the
    store's rows by sequence number on the next batch; ``docsieve reindex`` rebuilds it whole.

    A lookup of a batch (some 36,000 keys) is one script call that reads, and one more that turns the
    record numbers found into ids and times; staging adds the write's second call (the entries the worker
    built, appended a bucket at a time) and the splits it makes due. The scripts only read and write;
    counting shared keys, the window, ranking and building the postings happen in the worker, with numpy
    (that work in Lua took Redis, which every worker and the broker share, much longer).
    """

    def __init__(self, url: str, prefix: str, common: int = 1000, window: float = 0.0) -> None:
        """``window``: ``DOCSIEVE_INDEX_WINDOW``, days (0: none)."""
        self._redis = redis.Redis.from_url(url)
        # A key's first ``common`` + 1 records are kept: once it has that many it is common, never read.
        self._cap = common + 1
        self._window = int(window * DAY)
        # A generation spans half a window; the index's own span (set by its first write) wins.
        self._span = max(1, self._window // 2) if self._window else 0
        self._namespace = prefix
        self._prefix = f"{prefix}:{LAYOUT}:"
        self._seq_key = f"{self._prefix}seq"
        self._main = self._redis.register_script(_MAIN)
        self._publish = self._redis.register_script(_PUBLISH)
        self._resolve = self._redis.register_script(_RESOLVE)
        self._remove = self._redis.register_script(_REMOVE)
        self._append = self._redis.register_script(_APPEND)
        self._split_script = self._redis.register_script(_SPLIT)
        self._split_read = self._redis.register_script(_SPLIT_READ)
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
            self._write(read.ids, read.keys, read.times, read.arrived, read.last_seq)

    def add(
        self,
        record_ids: Sequence[str],
        keys: Sequence[np.ndarray],
        last_seq: int,
        times: Sequence[int] = (),
        first_seq: int | None = None,
        arrived: int | None = None,
        sketches: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        """After the commit: the staged keys are there, so the sequence number moves; if the index was
        cleared meanwhile, the keys are written again first."""
        if not self._publish(args=[self._prefix, last_seq, self._staged_epoch]):
            when = list(times) if len(times) == len(record_ids) else [_now()] * len(record_ids)
            stored = arrived if arrived is not None else max(when, default=_now())
            # As the store's rows say it: a record whose time is its arrival is undated.
            self._write(record_ids, keys, when, [stored] * len(record_ids), last_seq)

    def _write(
        self,
        record_ids: Sequence[str],
        keys: Sequence[np.ndarray],
        times: Sequence[int],
        arrived: Sequence[int],
        last_seq: int,
    ) -> None:
        dated = [t != a for t, a in zip(times, arrived, strict=True)]
        batch = _KeyBatch(keys)
        build = partial(self._records, batch, record_ids, times, dated, arrived)
        reply, records = self._first("add", batch, build, partial(self._written_ranges, batch))
        assert records is not None
        self._second("add", batch, records, reply, last_seq)

    def _records(
        self,
        batch: _KeyBatch,
        record_ids: Sequence[str],
        times: Sequence[int],
        dated: Sequence[bool],
        arrived: Sequence[int],
    ) -> _Records:
        """The records as the first call takes them: each id once (the same source and text can come twice
        in a batch), with its distinct keys (a document's keys can repeat)."""
        ids = _fixed_width(record_ids)
        _, first = np.unique(ids, return_index=True)
        first = np.sort(first)
        when = np.asarray(times, dtype=np.int64)[first]
        flags = np.asarray(dated, dtype=bool)[first]
        row = np.zeros(len(first), dtype=_RECORD)
        row["g"] = self._generation(when)
        row["t"] = when
        row["a"] = np.asarray(arrived, dtype=np.int64)[first]
        row["d"] = flags
        row["idpart"] = [hashlib.blake2b(i, digest_size=PART).digest() for i in ids[first].tolist()]
        row["id"] = ids[first]
        row["time"] = when * 2 + flags  # the slot's time, and whether it is a publication time
        # Each chosen record's distinct keys: (record, key position) pairs, by record.
        width = max(batch.unique, 1)
        owner, position = np.divmod(np.unique(batch.owner * width + batch.position), width)
        rank = np.full(batch.count, -1, dtype=np.int64)
        rank[first] = np.arange(len(first))
        chosen = rank[owner] >= 0
        return _Records(row, rank[owner[chosen]], position[chosen])

    def _generation(self, times: np.ndarray) -> np.ndarray:
        return np.floor_divide(times, self._span) if self._span else np.zeros(len(times), dtype=np.int64)

    def _first(
        self,
        mode: str,
        batch: _KeyBatch,
        records: Callable[[], _Records] | None,
        ranges: Callable[[_Records | None], tuple[bytes, bytes]],
        cap: int | None = None,
    ) -> tuple[list, _Records | None]:
        """The first call (the lookup; a write's numbers), its generations computed for the index's span: if
        the index has another (made by a worker with another window), it is learnt and the call made again."""
        while True:
            built = records() if records else None
            args: list[bytes | str | int] = [self._prefix, cap or self._cap, mode, uuid.uuid4().hex, self._span]
            args += [batch.parts, *ranges(built), built.rows.tobytes() if built is not None else b""]
            reply = self._main(args=args)
            if isinstance(reply, list) and reply and reply[0] == b"span":
                self._span = int(reply[1])
                continue
            return reply, built

    def _second(self, mode: str, batch: _KeyBatch, records: _Records, reply: list, last_seq: int) -> None:
        """The second call of a write: the entries built here, appended a bucket at a time. Records of a
        generation that expired between the two calls (another worker moved the horizon) go through both
        calls again: the first decides whether they are still indexed."""
        while True:
            built = _entries(batch, records, reply, self._cap)
            if built is None and mode != "add":
                return
            gone, states = self._append(args=[self._prefix, mode, last_seq, *(built or (b"",) * 6)])
            for birth, bits, pointer, entries in np.frombuffer(states, dtype=_STATE).tolist():
                self._split(birth, bits, pointer, entries)
            if not gone:
                return
            again = np.isin(records.rows["g"], np.frombuffer(gone, dtype="<i8"))
            records = records.subset(again)
            reply, _ = self._first("add", batch, partial(_same, records), partial(self._written_ranges, batch))

    def _split(self, birth: int, bits: int, pointer: int, entries: int) -> None:
        """Linear hashing's splits, done here: the buckets due read with MGET, split by numpy, and written by
        ``_SPLIT`` if no other write split or rewrote them meanwhile (else the next write tries again)."""
        while (due := min(-(-entries // LOAD) - (2**bits + pointer), 2**bits - pointer, MAX_SPLITS)) > 0:
            state, now, version, blobs = self._split_read(args=[self._prefix, birth, pointer, due])
            if (state, now) != (str(bits).encode(), str(pointer).encode()):
                return  # another worker split them meanwhile
            args: list[bytes | str | int] = [self._prefix, birth, bits, pointer, version]
            args.append(np.array([len(blob) for blob in blobs], dtype="<u4").tobytes())
            column, shift = 2 + bits // 8, bits % 8
            for blob in blobs:
                rows = np.frombuffer(blob, dtype=np.uint8).reshape(-1, ENTRY)
                moves = ((rows[:, column] >> shift) & 1).astype(bool)
                args += [rows[~moves].tobytes(), rows[moves].tobytes()]
            if int(self._split_script(args=args)) != due:
                return  # another worker split or rewrote them meanwhile: its split stands, or the next write's
            pointer += due
            if pointer == 2**bits:
                bits, pointer = bits + 1, 0

    def lookup(
        self,
        queries: Sequence[np.ndarray],
        limit: int,
        times: Sequence[int | None] | None = None,
        stage_ids: Sequence[str] | None = None,
    ) -> tuple[list[list[str]], int]:
        batch = _KeyBatch(queries)
        now = _now()
        staged: Callable[[], _Records] | None = None
        if stage_ids:
            # A record's index time is its publication (the query's time), else its arrival: now.
            given = list(times) if times is not None else [None] * len(stage_ids)
            when = [now if t is None else t for t in given]
            dated = [t is not None for t in given]
            staged = partial(self._records, batch, stage_ids, when, dated, [now] * len(when))
        reply, records = self._first(
            "stage" if stage_ids else "lookup", batch, staged, lambda _: self._ranges(batch, times)
        )
        hits, numbers, births, seq, epoch, published, arrived = reply[:7]
        if records is not None:
            self._staged_epoch = epoch
            self._second("stage", batch, records, reply, 0)
        horizon = (
            (int(published) - 4 * self._span if published else None, int(arrived) - 4 * self._span if arrived else None)
            if self._span
            else (None, None)
        )
        found = self._found(batch, hits, numbers, births, horizon, times, stage_ids, limit)
        return found, int(seq)

    def _ranges(self, batch: _KeyBatch, times: Sequence[int | None] | None) -> tuple[bytes, bytes]:
        """Which generations each distinct key is read in: those within the window of its queries' times
        (all of them if a query is undated, or without a window)."""
        lo = np.full(batch.count, -EVERY, dtype=np.int64)
        hi = np.full(batch.count, EVERY, dtype=np.int64)
        if times is not None and self._window and self._span:
            dated = np.array([t is not None for t in times], dtype=bool)
            when = np.array([0 if t is None else t for t in times], dtype=np.int64)
            lo = np.where(dated, np.floor_divide(when - self._window, self._span), lo)
            hi = np.where(dated, np.floor_divide(when + self._window, self._span), hi)
        if not batch.count or ((lo == lo[0]).all() and (hi == hi[0]).all()):  # the usual batch: one range
            return np.array([lo[:1].sum(), hi[:1].sum()], dtype="<i8").tobytes(), b""
        # Each distinct key's hull of its queries' ranges (positions sorted: a reduce over each run).
        order, starts = batch.by_key()
        key_lo = np.minimum.reduceat(lo[batch.owner[order]], starts[:-1])
        key_hi = np.maximum.reduceat(hi[batch.owner[order]], starts[:-1])
        return _range_table(key_lo, key_hi)

    def _written_ranges(self, batch: _KeyBatch, records: _Records | None) -> tuple[bytes, bytes]:
        """For a write's first call: each key read only in the generations of its records (the counts its
        caps need), a key of none of them nowhere."""
        key_lo = np.full(batch.unique, EVERY, dtype=np.int64)
        key_hi = np.full(batch.unique, -EVERY, dtype=np.int64)
        if records is not None and len(records.owner):
            g = records.rows["g"][records.owner]
            np.minimum.at(key_lo, records.position, g)
            np.maximum.at(key_hi, records.position, g)
        if not batch.unique or ((key_lo == key_lo[0]).all() and (key_hi == key_hi[0]).all()):
            return np.array([key_lo[:1].sum(), key_hi[:1].sum()], dtype="<i8").tobytes(), b""
        return _range_table(key_lo, key_hi)

    def _found(
        self,
        batch: _KeyBatch,
        hits: bytes,
        numbers: bytes,
        births: bytes,
        horizon: tuple[int | None, int | None],
        times: Sequence[int | None] | None,
        own_ids: Sequence[str] | None,
        limit: int,
    ) -> list[list[str]]:
        """For each query, the records sharing its keys, most shared first, then by id; never itself; only
        those within the horizon and (a dated query) its window."""
        result: list[list[str]] = [[] for _ in range(batch.count)]
        every = np.frombuffer(hits, dtype=_HIT)
        # How many records hold each key in the generations read (a phrase many hold is no evidence alone).
        held = np.bincount(every["key"], weights=every["count"], minlength=batch.unique).astype(np.int64)
        heads = every[(every["flags"] & 2) != 0]  # the keys that are not common: their numbers were sent
        if not len(heads) or not limit:
            return result
        key = np.repeat(heads["key"].astype(np.int64), heads["count"])
        gen = np.repeat(heads["gen"].astype(np.int64), heads["count"])
        number = np.frombuffer(numbers, dtype="<u4").astype(np.int64)
        distinct, record = np.unique((gen << 32) | number, return_inverse=True)
        record = record.reshape(-1)
        slots = self._slots(distinct, np.frombuffer(births, dtype="<i8"))
        ids, code = slots["id"], slots["time"]
        when, dated = code >> 1, (code & 1).astype(bool)
        usable = ids != b""  # a slot zeroed by a takedown, or swept with its generation
        dated_horizon, undated_horizon = horizon  # exact per record: generations end where they end
        if dated_horizon is not None:
            usable &= ~dated | (when >= dated_horizon)
        if undated_horizon is not None:
            usable &= dated | (when >= undated_horizon)
        # Every (query, record) pair of a shared key: each posting once per query that holds its key.
        order, starts = batch.by_key()
        per = (starts[1:] - starts[:-1])[key]
        at = np.repeat(starts[key], per) + np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
        query = batch.owner[order[at]]
        pair_key, pair_record = np.repeat(key, per), np.repeat(record, per)
        keep = usable[pair_record]
        if times is not None and self._window:
            query_time = np.array([0 if t is None else t for t in times], dtype=np.int64)
            undated = np.array([t is None for t in times], dtype=bool)
            near = np.abs(when[pair_record] - query_time[query]) <= self._window
            keep &= near | undated[query]
        names, name_of = np.unique(ids, return_inverse=True)  # in id order: ties go to the lowest id
        name_of = name_of.reshape(-1)
        other = name_of[pair_record]
        if own_ids:
            own = _fixed_width(own_ids)
            where = np.minimum(np.searchsorted(names, own), len(names) - 1)
            keep &= other != np.where(names[where] == own, where, -1)[query]
        query, pair_key, other = query[keep], pair_key[keep], other[keep]
        # A record met twice under one key (in two generations) shares that key once.
        width = len(names)
        query_key, other = np.divmod(np.unique((query * batch.unique + pair_key) * width + other), width)
        query, pair_key = np.divmod(query_key, batch.unique)
        telling = ~lone_phrases(batch.distinct[pair_key], held[pair_key])
        text = [n.decode().rstrip() for n in names.tolist()]
        ranked = most_shared(query, other, batch.count, limit, telling)
        return [[text[r] for r in records] for records in ranked]

    def _slots(self, distinct: np.ndarray, births: np.ndarray) -> np.ndarray:
        """The slots (id, time) of the records numbered ``distinct`` (generation ordinal << 32 | number),
        which are sorted, so each generation's come together."""
        gen, number = distinct >> 32, distinct & 0xFFFFFFFF
        present, counts = np.unique(gen, return_counts=True)
        raw = self._resolve(
            args=[
                self._prefix,
                births[present].astype("<i8").tobytes(),
                counts.astype("<u4").tobytes(),
                number.astype("<u4").tobytes(),
            ]
        )
        return np.frombuffer(raw, dtype=[("id", f"S{ID_WIDTH}"), ("time", "<i8")])

    def remove(self, record_id: str, keys: bytes) -> int:
        """Take a record (a takedown) out of the postings of its keys; returns how many it was in."""
        (fixed,) = _fixed_width([record_id]).tolist()
        idpart = hashlib.blake2b(fixed, digest_size=PART).digest()
        parts = _parts(np.unique(np.frombuffer(keys, dtype=np.int64)))
        return int(self._remove(args=[self._prefix, fixed, idpart, parts]))

    def postings(self, key: int) -> list[str]:
        """The ids a key holds in the live generations (for tests and inspection), in generation order."""
        batch = _KeyBatch([np.array([key], dtype=np.int64)])
        reply, _ = self._first("lookup", batch, None, lambda _: self._ranges(batch, None), cap=1 << 30)
        hits, numbers, births = reply[0], reply[1], reply[2]
        heads = np.frombuffer(hits, dtype=_HIT)
        if not len(heads):
            return []
        gen = np.repeat(heads["gen"].astype(np.int64), heads["count"])
        distinct = (gen << 32) | np.frombuffer(numbers, dtype="<u4").astype(np.int64)
        order = np.argsort(distinct, kind="stable")
        slots = self._slots(distinct[order], np.frombuffer(births, dtype="<i8"))
        ids = np.empty(len(order), dtype=object)
        ids[order] = [i.decode().rstrip() for i in slots["id"].tolist()]
        return [i for i in ids.tolist() if i]

    def redis_keys(self) -> list[bytes]:
        """The names of every Redis key this index holds (its layout's, not the old ones')."""
        return list(self._redis.scan_iter(match=f"{self._prefix}*", count=10_000))

    def clear(self) -> int:
        """Remove this index's keys (only those under its prefix, in any layout); returns how many."""
        removed = 0
        for layout in (*OLD_LAYOUTS, LAYOUT):
            pattern = f"{self._namespace}:{layout}:*"
            for batch in batched(self._redis.scan_iter(match=pattern, count=10_000), 10_000):
                removed += self._redis.delete(*batch)
        return removed


class _KeyBatch:
    """A batch's key arrays as the scripts take them: each distinct key once, as the 6 bytes a bucket keeps."""

    def __init__(self, queries: Sequence[np.ndarray]) -> None:
        self.count = len(queries)
        keys = np.concatenate(queries).astype(np.int64) if queries else np.zeros(0, dtype=np.int64)
        self.owner = np.repeat(np.arange(len(queries), dtype=np.int64), [len(q) for q in queries])
        self.distinct, position = np.unique(keys, return_inverse=True)
        self.position = position.reshape(-1)
        self.unique = len(self.distinct)
        self.parts = _parts(self.distinct)
        self._by_key: tuple[np.ndarray, np.ndarray] | None = None

    def by_key(self) -> tuple[np.ndarray, np.ndarray]:
        """The key occurrences ordered by distinct key, and where each key's run starts (and the end)."""
        if self._by_key is None:
            order = np.argsort(self.position, kind="stable")
            self._by_key = order, np.searchsorted(self.position[order], np.arange(self.unique + 1))
        return self._by_key


def _parts(keys: np.ndarray) -> bytes:
    """The 6 bytes of each key a bucket keeps: the low 48 bits of the key mixed (splitmix64's finalizer, a
    bijection), since winnowed keys are small numbers with fixed high bits and bucket addresses need
    every bit even."""
    x = keys.astype(np.int64).view(np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return x.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :PART].tobytes()


def _now() -> int:
    return int(time.time())


def _fixed_width(record_ids: Sequence[str]) -> np.ndarray:
    if any(len(r) > ID_WIDTH for r in record_ids):
        raise ValueError(f"record ids longer than {ID_WIDTH} characters cannot be indexed")
    return np.array([r.ljust(ID_WIDTH) for r in record_ids], dtype=f"S{ID_WIDTH}")


class _Records:
    """A write's records (each id once) as the first call takes them, and their distinct keys: (record,
    key position) pairs."""

    def __init__(self, rows: np.ndarray, owner: np.ndarray, position: np.ndarray) -> None:
        self.rows, self.owner, self.position = rows, owner, position

    def subset(self, mask: np.ndarray) -> _Records:
        renumber = np.cumsum(mask) - 1
        pairs = mask[self.owner]
        return _Records(self.rows[mask], renumber[self.owner[pairs]], self.position[pairs])


def _same(records: _Records) -> _Records:
    return records


def _range_table(key_lo: np.ndarray, key_hi: np.ndarray) -> tuple[bytes, bytes]:
    """Each key's generation range as the first call takes them: the distinct ranges, and each key's."""
    pairs = np.ascontiguousarray(np.stack([key_lo, key_hi], axis=1).astype("<i8")).view("V16").reshape(-1)
    table, which = np.unique(pairs, return_inverse=True)
    return table.tobytes(), which.reshape(-1).astype("<u4").tobytes()


def _entries(batch: _KeyBatch, records: _Records, reply: list, cap: int) -> tuple[bytes, ...] | None:
    """The second call's arguments from the first call's reply: every posting of the records it numbered,
    addressed with the generations' state it read and grouped by bucket; a key's first ``cap`` records in a
    generation, counting those the first call found; keys of many records apart. None: nothing to write."""
    hits = np.frombuffer(reply[0], dtype=_HIT)
    births = np.frombuffer(reply[2], dtype="<i8")
    gens = np.frombuffer(reply[7], dtype=_WRITTEN)
    numbered = np.frombuffer(reply[8], dtype=_NUMBERED)
    number = numbered["number"]
    live = number != NONE
    if not live.any():
        return None
    unique = max(batch.unique, 1)
    rec_gen = numbered["gen"].astype(np.int64)
    # The (record, key) pairs to post, by generation and key, a key's records in record order (their numbers').
    pairs = live[records.owner]
    owner = records.owner[pairs]
    code = rec_gen[owner] * unique + records.position[pairs]
    order = np.lexsort((owner, code))
    owner, code = owner[order], code[order]
    # What each (generation, key) holds already: the first call's counts, in the generations written.
    index_of = {b: i for i, b in enumerate(gens["birth"].tolist())}
    ordinal_gen = np.array([index_of.get(b, -1) for b in births.tolist()], dtype=np.int64)
    hit_gen = ordinal_gen[hits["gen"]]
    ours = hit_gen >= 0
    hit_code = hit_gen[ours] * unique + hits["key"][ours]
    hit_order = np.argsort(hit_code)
    hit_code = hit_code[hit_order]
    hit_count = hits["count"][ours][hit_order].astype(np.int64)
    hit_over = (hits["flags"][ours][hit_order] & 1) == 1
    start = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    length = np.diff(np.r_[start, len(code)])
    at = np.minimum(np.searchsorted(hit_code, code[start]), max(len(hit_code) - 1, 0))
    found = hit_code[at] == code[start] if len(hit_code) else np.zeros(len(start), dtype=bool)
    before = np.where(found, hit_count[at] if len(hit_code) else 0, 0)
    # A key's first cap records in a generation: more would never be read.
    taken = np.clip(cap - before, 0, length)
    # Kind: 0 a bucket's entries; 1 numbers appended to the key's overflow string; 2 the key moves there. (Counts
    # another worker changed meanwhile only delay a move or let a key pass cap by a little: both harmless.)
    kind = np.where(found & hit_over[at] if len(hit_code) else found, 1, np.where(before + taken >= OVERFLOW, 2, 0))
    kept = np.arange(len(code)) - np.repeat(start, length) < np.repeat(taken, length)
    pair_kind = np.repeat(kind, length)[kept]
    owner, code = owner[kept], code[kept]
    gen_of, position = np.divmod(code, unique)
    parts = np.frombuffer(batch.parts, dtype=f"V{PART}")

    # Postings in buckets: the keys' and each record's id's.
    plain = pair_kind == 0
    written = np.flatnonzero(live)
    entries = np.empty(int(plain.sum()) + len(written), dtype=_ENTRY)
    entries["part"] = np.concatenate(
        (parts[position[plain]], np.ascontiguousarray(records.rows["idpart"][written]).view(f"V{PART}"))
    )
    entries["number"] = np.concatenate((number[owner[plain]], number[written]))
    entry_gen = np.concatenate((gen_of[plain], rec_gen[written]))
    low = np.ascontiguousarray(entries.view(np.uint8).reshape(-1, ENTRY)[:, 2:PART]).view("<u4").reshape(-1)
    bits = gens["L"][entry_gen].astype(np.int64)
    address = low.astype(np.int64) & ((1 << bits) - 1)
    address = np.where(address < gens["p"][entry_gen], low & ((1 << (bits + 1)) - 1), address)
    order = np.lexsort((address, entry_gen))
    entries, entry_gen, address = entries[order], entry_gen[order], address[order]
    first = np.flatnonzero(np.r_[True, (entry_gen[1:] != entry_gen[:-1]) | (address[1:] != address[:-1])])
    heads = np.empty(len(first), dtype=[("b", "<u4"), ("bytes", "<u4")])
    heads["b"] = address[first]
    heads["bytes"] = np.diff(np.r_[first, len(entries)]) * ENTRY

    # Keys of many records: their numbers, one string a (generation, key).
    many = ~plain
    many_code = code[many]
    key_first = np.flatnonzero(np.r_[True, many_code[1:] != many_code[:-1]]) if len(many_code) else np.zeros(0, int)
    keyed = np.empty(len(key_first), dtype=_KEYED)
    keyed["part"] = parts[position[many][key_first]]
    keyed["kind"] = pair_kind[many][key_first]
    keyed["bytes"] = np.diff(np.r_[key_first, len(many_code)]) * 4

    # The records, for the second call's check that no other write posted them meanwhile.
    by_gen = written[np.argsort(rec_gen[written], kind="stable")]
    writing = np.empty(len(by_gen), dtype=_WRITING)
    writing["idpart"] = np.ascontiguousarray(records.rows["idpart"][by_gen]).view(f"V{PART}")
    writing["number"] = number[by_gen]
    writing["id"] = records.rows["id"][by_gen]

    table = np.zeros(len(gens), dtype=_GEN)
    for field in ("g", "birth", "L", "p"):
        table[field] = gens[field]
    table["buckets"] = np.bincount(entry_gen[first], minlength=len(gens))
    table["keys"] = np.bincount(gen_of[many][key_first], minlength=len(gens))
    table["records"] = np.bincount(rec_gen[written], minlength=len(gens))
    table = table[(table["buckets"] > 0) | (table["keys"] > 0) | (table["records"] > 0)]
    return (
        table.tobytes(),
        heads.tobytes(),
        entries.tobytes(),
        keyed.tobytes(),
        number[owner[many]].astype("<u4").tobytes(),
        writing.tobytes(),
    )
