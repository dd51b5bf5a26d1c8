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
  candidate that verification rules out.
- **Record numbers.** A generation numbers its records from 0 (HINCRBY inside the script: concurrent
  workers never share a number), and 28-byte slots map a number to its record: the id (20 characters)
  and its index time (8 bytes, with whether it is a publication time). The slots are cut in strings of
  292, each written whole when first used (8 KB with its header: one allocator size class). A record's
  id is also kept as a posting (48 bits of a hash of the id), so a record written again (a retry, a feed
  read twice, a catch-up racing a publish) keeps its number and is not posted twice.

The window (``DOCSIEVE_INDEX_WINDOW``) as the embedded index keeps it: a dated record is forgotten two
windows behind the newest publication, an undated one two windows behind the newest arrival; a dated
lookup reads only the generations within a window of its time, an undated one every live generation.
The newest times only move forward (a max inside the scripts), so concurrent workers agree on the
horizon; the slots' times make the window and the horizon exact record by record (the worker filters),
the generations only decide what is read and what is freed. The span is fixed by the first write (kept
in Redis; a worker with another window reads it and follows): ``docsieve reindex`` after changing it.

Common keys: a key is skipped when the generations a lookup reads hold ``common`` + 1 records or more
under it, counted over those generations together (the generations the batch's queries holding the key read).
The embedded index counts over the segments each query's window meets: generations and segments are laid out
differently, so the two can differ for a key near ``common``.

The cost: Redis does more work a posting than with one hash field a key (a substring search, a bucket
rewritten and split in Lua): a lookup of 512 new articles took 1.3-1.4x the second layout's time, and
an ingest 2.2-3x its Redis time (docs/benchmarks.md). The next step, if Redis's CPU becomes the limit:
stage in two calls, numbers allocated in the first and the entries built by the worker (numpy) and
appended per bucket in the second.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

import numpy as np
import redis

from docsieve.index import DAY, ID_WIDTH, IndexRow, StoredRows, most_shared, read_rows
from docsieve.models import batched
from docsieve.settings import SettingsError, redacted, url_list

T = TypeVar("T")
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
""".replace("ENTRY", str(ENTRY)).replace("PART", str(PART))

# The lookup, staging and writing script. ARGV: 1 prefix, 2 cap, 3 mode ('lookup', 'stage' or 'add'), 4 the
# epoch to set if there is none, 5 span (seconds; 0 one generation), 6 the sequence number to publish ('add'),
# 7 key parts (6 bytes each, the batch's distinct keys), 8 generation ranges (two int64 each), 9 each key's
# range (uint32), 10 records (int64 generation, int64 time, int64 arrival, a byte dated, 6 bytes of the
# id's hash, the 28-byte slot), 11 each record's keys (uint32 count, then uint32 positions in 7), 12 which of how
# many instances this is ("i/n").
# Reply: a span mismatch as {'span', span}; an instance of another list as {'instance', "i/n"}; else {hits
# (uint32 key, uint32 generation ordinal, uint32 count each), numbers (4 bytes each, the hits' in order), births
# (int64 per ordinal), seq, epoch, newest publication, newest arrival}.
_MAIN = (
    _COMMON_LUA
    + """
local cap, mode, span = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[5])
local parts, rangetab, keyranges, recs, reckeys = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local state = P .. 'state'
local stored = call('HGET', state, 'span')
if stored and tonumber(stored) ~= span then return {'span', stored} end
local placed = call('HGET', state, 'instance')
if placed and placed ~= ARGV[12] then return {'instance', placed} end
local writing = mode ~= 'lookup'
if writing and not stored then call('HSET', state, 'span', span) end
if writing and not placed then call('HSET', state, 'instance', ARGV[12]) end
local nkeys = #parts / PART
local h = {}
for i = 1, nkeys do
    local b1, b2, b3, b4 = byte(parts, PART * i - PART + 3, PART * i)
    h[i] = b1 + 256 * (b2 + 256 * (b3 + 256 * b4))
end

local reply = {}
if mode ~= 'add' then
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
    -- Each (key, generation) with postings: key, ordinal, count (flat, three a group), and the numbers.
    local heads, nums, total, ng, common = {}, {}, {}, 0, false
    for o, gen in ipairs(gens) do
        local cache, g, birth, p = {}, gen.g, gen.birth, gen.p
        local over, overkey = {}, {}
        local n1 = 2 ^ gen.L
        local n2 = 2 * n1
        local every = nil  -- one range for every key (the usual batch): read for all keys or for none
        if nranges == 1 then every = g >= lo[1] and g <= hi[1] end
        -- First every bucket to read, fetched with MGET (one call for thousands: a call from Lua costs
        -- more than the read), then each key searched in its bucket.
        local slot_of, names, bucket_of = {}, {}, {}
        for i = 1, (every == false) and 0 or nkeys do
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
                    names[#names + 1] = P .. birth .. 'b' .. b
                    slot = #names
                    slot_of[b] = slot
                end
                bucket_of[i] = slot
            end
        end
        for s = 1, #names, 4000 do
            local values = call('MGET', unpack(names, s, math.min(s + 3999, #names)))
            for j = 1, #values do cache[s + j - 1] = values[j] or '' end
        end
        for i = 1, (every == false) and 0 or nkeys do
            local slot = bucket_of[i]
            if slot then
                local blob = cache[slot]
                local part = sub(parts, PART * i - PART + 1, PART * i)
                local at = #blob > 0 and find(blob, part, 1, true)
                local c, first, more = 0, nil, nil
                while at do
                    if (at - 1) % ENTRY == 0 then  -- an entry's start, not bytes across two entries
                        c = c + 1
                        local nb = sub(blob, at + PART, at + ENTRY - 1)
                        if c == 1 then first = nb elseif c == 2 then more = {first, nb} else more[c] = nb end
                        at = find(blob, part, at + ENTRY, true)
                    else
                        at = find(blob, part, at + 1, true)
                    end
                end
                if c == 1 and first == MARK then
                    over[#over + 1] = part
                    overkey[#over] = i
                elseif c > 0 then
                    heads[3 * ng + 1], heads[3 * ng + 2], heads[3 * ng + 3] = i - 1, o - 1, c
                    ng = ng + 1
                    nums[ng] = more and table.concat(more) or first
                    local t = (total[i] or 0) + c
                    total[i] = t
                    if t >= cap then common = true end
                end
            end
        end
        for s = 1, #over, 4000 do  -- keys of many records: their numbers in one string each
            local values = call('HMGET', P .. birth .. 'o', unpack(over, s, math.min(s + 3999, #over)))
            for j = 1, #values do
                local v, i = values[j], overkey[s + j - 1]
                if v and #v > 0 then
                    heads[3 * ng + 1], heads[3 * ng + 2], heads[3 * ng + 3] = i - 1, o - 1, #v / 4
                    ng = ng + 1
                    nums[ng] = v
                    local t = (total[i] or 0) + #v / 4
                    total[i] = t
                    if t >= cap then common = true end
                end
            end
        end
    end
    -- A key held by cap records or more in the generations read is common: its postings are not sent.
    local kept, knums, k = heads, nums, ng
    if common then
        kept, knums, k = {}, {}, 0
        for j = 0, ng - 1 do
            if total[heads[3 * j + 1] + 1] < cap then
                kept[3 * k + 1], kept[3 * k + 2], kept[3 * k + 3] = heads[3 * j + 1], heads[3 * j + 2], heads[3 * j + 3]
                k = k + 1
                knums[k] = nums[j + 1]
            end
        end
    end
    local packed = {}
    for s = 1, 3 * k, 3000 do
        local e = math.min(s + 2999, 3 * k)
        packed[#packed + 1] = spack('<' .. string.rep('I4', e - s + 1), unpack(kept, s, e))
    end
    reply = {table.concat(packed), table.concat(knums), table.concat(births)}
end

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
            local live = call('HGETALL', P .. 'gens')
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
    local gens = {}  -- generation -> {birth, L, p, n, r, k, pending = {bucket -> entries}}
    local function gen_of(g)
        local gen = gens[g]
        if gen then return gen end
        local birth = call('HGET', P .. 'gens', g)
        if not birth then
            birth = tostring(call('HINCRBY', state, 'births', 1))
            call('HSET', P .. 'gens', g, birth)
            call('HSET', P .. 's' .. birth, 'L', 0, 'p', 0, 'n', 0, 'r', 0, 'k', 0, 'g', g)
        end
        local st = call('HMGET', P .. 's' .. birth, 'L', 'p', 'n', 'r', 'k')
        gen = {birth = birth, L = tonumber(st[1]), p = tonumber(st[2]), n = tonumber(st[3]), r = tonumber(st[4]),
               k = tonumber(st[5]), r0 = tonumber(st[4]), k0 = tonumber(st[5]), blobs = {}, pending = {}}
        gens[g] = gen
        return gen
    end
    local function blob_of(gen, b)
        local blob = gen.blobs[b]
        if not blob then
            blob = call('GET', bucket(gen.birth, b)) or ''
            gen.blobs[b] = blob
        end
        return blob
    end
    local function fetch(gen, wanted)  -- the buckets wanted (bucket -> true) not read yet, in MGET calls
        local names, which = {}, {}
        for b in pairs(wanted) do
            if not gen.blobs[b] then
                names[#names + 1] = bucket(gen.birth, b)
                which[#names] = b
            end
        end
        for s = 1, #names, 4000 do
            local values = call('MGET', unpack(names, s, math.min(s + 3999, #names)))
            for j = 1, #values do gen.blobs[which[s + j - 1]] = values[j] or '' end
        end
    end
    -- The records' generations and the buckets of their ids' postings, read at once.
    local idwanted = {}
    for r = 1, nrec do
        local base = RECORD * (r - 1) + 1
        local g, t, _, dated = sunpack('<i8i8i8B', recs, base)
        if (dated == 1 and (not hd or t >= hd)) or (dated == 0 and (not hu or t >= hu)) then
            local gen = gen_of(g)
            idwanted[gen] = idwanted[gen] or {}
            idwanted[gen][address(low32(recs, base + 25), gen.L, gen.p)] = true
        end
    end
    for gen, wanted in pairs(idwanted) do fetch(gen, wanted) end
    local at = 1
    for r = 1, nrec do
        local base = RECORD * (r - 1) + 1
        local g, t, _, dated = sunpack('<i8i8i8B', recs, base)
        local idpart = sub(recs, base + 25, base + 24 + PART)
        local slot = sub(recs, base + 25 + PART, base + 24 + PART + SLOT)
        local count = sunpack('<I4', reckeys, at)
        local first = at + 4
        at = first + 4 * count
        -- A record past the horizon is not indexed (it would be forgotten at once).
        local live = (dated == 1 and (not hd or t >= hd)) or (dated == 0 and (not hu or t >= hu))
        if live then
            local gen = gen_of(g)
            -- Staged before (a retry, a catch-up racing a publish)? Its id's posting names its number.
            local known = false
            local hid = low32(idpart, 1)
            local got = numbers_of(blob_of(gen, address(hid, gen.L, gen.p)), idpart)
            for _, nb in ipairs(got or {}) do
                local n = sunpack('<I4', nb)
                local c, off = floor(n / CHUNK), (n % CHUNK) * SLOT
                if call('GETRANGE', chunk(gen.birth, c), off, off + ID_WIDTH - 1) == sub(slot, 1, ID_WIDTH) then
                    known = true
                    break
                end
            end
            if not known then
                local n = gen.r
                gen.r = n + 1
                local c, off = floor(n / CHUNK), (n % CHUNK) * SLOT
                local name = chunk(gen.birth, c)
                if off == 0 then call('SET', name, string.rep('\\0', CHUNK * SLOT)) end
                call('SETRANGE', name, off, slot)
                local nb = spack('<I4', n)
                local n1, L, p = 2 ^ gen.L, gen.L, gen.p
                local pending = gen.pending
                local function put(hv, entry)
                    local b = hv % n1
                    if b < p then b = hv % (2 * n1) end
                    local list = pending[b]
                    if not list then list = {}; pending[b] = list end
                    list[#list + 1] = entry
                end
                put(hid, idpart .. nb)
                for m = 0, count - 1 do
                    local i = sunpack('<I4', reckeys, first + 4 * m) + 1
                    put(h[i], sub(parts, PART * i - PART + 1, PART * i) .. nb)
                end
                local bit = dated == 1 and 1 or 2
                if gen.k % (2 * bit) < bit then gen.k = gen.k + bit end
            end
        end
    end
    local written = 0
    for _, gen in pairs(gens) do
        local oname = P .. gen.birth .. 'o'
        local wanted = {}
        for b in pairs(gen.pending) do wanted[b] = true end
        fetch(gen, wanted)
        for b, list in pairs(gen.pending) do
            local blob = gen.blobs[b]
            -- Per key: its records in the bucket (or, -1 marked, in the overflow hash) and those added.
            local cnt, over, overadd, moving, added = {}, nil, nil, nil, {}
            for _, entry in ipairs(list) do
                local part = sub(entry, 1, PART)
                local c = cnt[part]
                if c == nil then
                    c = 0
                    if #blob > 0 and find(blob, part, 1, true) then  -- rare: the key has records here
                        local got = numbers_of(blob, part)
                        if got and got[1] == MARK then
                            over = over or {}
                            over[part] = call('HGET', oname, part) or ''
                            c = #over[part] / 4
                        elseif got then
                            c = #got
                        end
                    end
                end
                if c < cap then  -- a key's first cap records in a generation; more would never be read
                    c = c + 1
                    if over and over[part] then
                        overadd = overadd or {}
                        overadd[part] = (overadd[part] or '') .. sub(entry, PART + 1)
                    else
                        added[#added + 1] = entry
                        if c >= OVERFLOW then moving = moving or {}; moving[part] = true end
                    end
                    written = written + 1
                end
                cnt[part] = c
            end
            for part, more in pairs(overadd or {}) do call('HSET', oname, part, over[part] .. more) end
            local new = blob .. table.concat(added)
            if moving then
                -- Keys reaching OVERFLOW records leave the bucket for the overflow hash, a marker in their place.
                local rest, numbers = {}, {}
                for e = 1, #new, ENTRY do
                    local part = sub(new, e, e + PART - 1)
                    if moving[part] then
                        numbers[part] = (numbers[part] or '') .. sub(new, e + PART, e + ENTRY - 1)
                    else
                        rest[#rest + 1] = sub(new, e, e + ENTRY - 1)
                    end
                end
                for part, value in pairs(numbers) do
                    call('HSET', oname, part, value)
                    rest[#rest + 1] = part .. MARK
                end
                new = table.concat(rest)
            end
            if new ~= blob then
                call('SET', bucket(gen.birth, b), new)
                gen.n = gen.n + (#new - #blob) / ENTRY
            end
        end
        -- Linear hashing: split the next bucket in turn while the average is above LOAD. The bit that
        -- decides is bit L of the address, in one byte of each entry; runs of entries move as one string.
        while gen.n > LOAD * (2 ^ gen.L + gen.p) do
            local old, new = gen.p, gen.p + 2 ^ gen.L
            local blob = call('GET', bucket(gen.birth, old)) or ''
            local stay, move = {}, {}
            local off, div = 2 + floor(gen.L / 8), 2 ^ (gen.L % 8)
            local start, moving = 1, nil
            for e = 1, #blob, ENTRY do
                local m = floor(byte(blob, e + off) / div) % 2 == 1
                if m ~= moving then
                    if moving ~= nil then
                        local t = moving and move or stay
                        t[#t + 1] = sub(blob, start, e - 1)
                    end
                    start, moving = e, m
                end
            end
            if moving ~= nil then
                local t = moving and move or stay
                t[#t + 1] = sub(blob, start)
            end
            if #move > 0 then
                if #stay > 0 then call('SET', bucket(gen.birth, old), table.concat(stay))
                else call('DEL', bucket(gen.birth, old)) end
                call('SET', bucket(gen.birth, new), table.concat(move))
            end
            gen.p = gen.p + 1
            if gen.p == 2 ^ gen.L then gen.L = gen.L + 1; gen.p = 0 end
        end
        call('HSET', P .. 's' .. gen.birth, 'L', gen.L, 'p', gen.p, 'n', gen.n, 'r', gen.r, 'k', gen.k)
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
    if mode == 'add' and tonumber(ARGV[6]) > tonumber(call('GET', P .. 'seq') or '0') then
        call('SET', P .. 'seq', ARGV[6])
    end
end
if mode == 'add' then return call('GET', P .. 'epoch') end
local st = call('HMGET', state, 'published', 'arrived')
reply[4] = call('GET', P .. 'seq') or '0'
reply[5] = call('GET', P .. 'epoch') or ''
reply[6] = st[1] or ''
reply[7] = st[2] or ''
return reply
"""
).replace("ID_WIDTH", str(ID_WIDTH))
for _name, _value in (("ENTRY", ENTRY), ("PART", PART), ("SLOT", SLOT), ("CHUNK", CHUNK), ("LOAD", LOAD)):
    _MAIN = _MAIN.replace(_name, str(_value))
_MAIN = _MAIN.replace("OVERFLOW", str(OVERFLOW))

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
local function without(blob, entry)  -- the blob without the aligned occurrences of entry
    local from, out = 1, {}
    local start = 1
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
    out[#out + 1] = sub(blob, start)
    return table.concat(out)
end
for j = 1, #live, 2 do
    local birth = live[j + 1]
    local sname = P .. 's' .. birth
    local st = call('HMGET', sname, 'L', 'p', 'n')
    local L, p, n = tonumber(st[1]), tonumber(st[2]), tonumber(st[3])
    local oname = P .. birth .. 'o'
    local function drop(h, entry)
        local name = bucket(birth, address(h, L, p))
        local blob = call('GET', name)
        if not blob then return 0 end
        local part = sub(entry, 1, PART)
        local got = numbers_of(blob, part)
        if got and got[1] == MARK then  -- in the overflow hash: numbers only, 4 bytes each
            local value = call('HGET', oname, part) or ''
            local nb, from = sub(entry, PART + 1), 1
            while true do
                local at = find(value, nb, from, true)
                if not at then return 0 end
                if (at - 1) % 4 == 0 then
                    value = sub(value, 1, at - 1) .. sub(value, at + 4)
                    if #value == 0 then call('HDEL', oname, part) else call('HSET', oname, part, value) end
                    return 1
                end
                from = at + 1
            end
        end
        local rest = without(blob, entry)
        if #rest == #blob then return 0 end
        if #rest == 0 then call('DEL', name) else call('SET', name, rest) end
        n = n - (#blob - #rest) / ENTRY
        return (#blob - #rest) / ENTRY
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
end
return removed
"""
).replace("ID_WIDTH", str(ID_WIDTH))
for _name, _value in (("ENTRY", ENTRY), ("PART", PART), ("SLOT", SLOT), ("CHUNK", CHUNK)):
    _REMOVE = _REMOVE.replace(_name, str(_value))


class IndexShardsChanged(SettingsError):
    """The index's Redis instances are not those it was written with: its keys would be looked for in the wrong one
    (a setting that cannot work with this index: the commands say so in a line, a task fails for good)."""


def connect(url: str) -> redis.Redis:
    """A client of the index's Redis (its scripts, and the task payloads kept there) that waits for its answer.

    redis-py 8 stops reading after 5 seconds unless told otherwise (it waited before). Each of the index's scripts
    runs whole on Redis's one thread, and a worker's waits its turn behind the others': four workers on two cores
    shared with Redis waited longer than that, and every one of them failed (docs/benchmarks.md, thirtieth session),
    while a script a client gives up on runs all the same. So the index waits, as before: TCP keepalive (asked for
    here, as redis-py before 8 did not) notices a Redis gone, a task's time limit one that hangs, the readiness
    check asks with a limit of its own (``RedisIndex.ping``), and a connection still fails within 5 seconds. A
    ``socket_timeout`` in the URL's query sets a limit all the same. Such a client sends nothing again after a
    timeout or a lost connection (no retries unless the URL asks), so a script is never run twice by it."""
    return redis.Redis.from_url(url, socket_timeout=None, socket_connect_timeout=5, socket_keepalive=True)


class _Instance:
    """One Redis instance of the index: its connection, its scripts, and the epoch its last staging saw."""

    def __init__(self, url: str, position: str) -> None:
        self.url = url
        self.redis = connect(url)
        # The readiness check's client (``RedisIndex.ping``): it answers within 5 s or raises, where ``redis`` waits.
        self.readiness = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.position = position  # "i/n": which of how many instances, kept in its state by its first write
        self.main = self.redis.register_script(_MAIN)
        self.publish = self.redis.register_script(_PUBLISH)
        self.resolve = self.redis.register_script(_RESOLVE)
        self.remove = self.redis.register_script(_REMOVE)
        self.staged_epoch = b""


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

    A batch (some 36,000 keys) is one script call that reads (and, staging, appends after reading), and
    one more that turns the record numbers found into ids and times. The scripts only read and write;
    counting shared keys, the window and ranking happen in the worker, with numpy (counting in Lua took
    Redis, which every worker and the broker share, much longer).

    **Several instances** (``url`` a comma-separated list): Redis runs a script on one core, and that core is the
    deployment's first limit (docs/scaling.md). Each key then lives in one instance, chosen by a byte of its mixed
    form that bucket addresses do not use; every record's id and slot are in each (38 bytes a record an instance
    more), so each answers for its keys on its own: a batch's calls go to all at once (threads) and their
    postings are ranked together, as one instance's would be. An instance keeps which of how many it is (checked
    by every script call): a list changed later is refused until ``docsieve reindex``. An index written before
    instances were kept takes the first list it is given.
    """

    def __init__(self, url: str, prefix: str, common: int = 1000, window: float = 0.0) -> None:
        """``window``: ``DOCSIEVE_INDEX_WINDOW``, days (0: none)."""
        urls = url_list(url)
        if not urls:
            raise ValueError("no Redis URL for the index")
        self._instances = [_Instance(u, f"{i}/{len(urls)}") for i, u in enumerate(urls)]
        self._span_read = len(urls) == 1  # several: the span the instances hold is read before the first call
        # A key's first ``common`` + 1 records are kept: once it has that many it is common, never read.
        self._cap = common + 1
        self._window = int(window * DAY)
        # A generation spans half a window; the index's own span (set by its first write) wins.
        self._span = max(1, self._window // 2) if self._window else 0
        self._namespace = prefix
        self._prefix = f"{prefix}:{LAYOUT}:"
        self._seq_key = f"{self._prefix}seq"

    def close(self) -> None:
        for instance in self._instances:
            instance.redis.close()

    def ping(self) -> None:
        """Raises if a Redis server of the index cannot be reached (the service's readiness)."""
        for instance in self._instances:
            instance.readiness.ping()

    def _each(self, work: Callable[[int, _Instance], T]) -> list[T]:
        """``work`` for every instance, at once when there are several (the calls wait on the network): the first
        in this thread, the others in threads that end with the call (an idle pool's threads would keep the
        pipeline from forking its preparing process)."""
        if not self._span_read:
            self._read_span()
        if len(self._instances) == 1:
            return [work(0, self._instances[0])]
        with ThreadPoolExecutor(len(self._instances) - 1, thread_name_prefix="docsieve-index") as pool:
            others = pool.map(work, range(1, len(self._instances)), self._instances[1:])
            return [work(0, self._instances[0]), *others]

    def _read_span(self) -> None:
        """The span the instances were written with, taken before this process writes any: an instance that lost
        its keys (or a new one) is then written with the others' span, whatever this worker's window says."""
        spans = {int(s) for i in self._instances if (s := i.redis.hget(f"{self._prefix}state", "span")) is not None}
        if len(spans) > 1:
            raise IndexShardsChanged(
                "DOCSIEVE_INDEX_URL: the index's instances were written with different spans "
                f"({sorted(spans)} seconds): run `docsieve reindex`"
            )
        if spans:
            self._span = spans.pop()
        self._span_read = True

    def _split(self, keys: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
        """Each instance's share of each key array (every array kept, perhaps empty, so positions stay)."""
        count = len(self._instances)
        if count == 1:
            return [list(keys)]
        shares: list[list[np.ndarray]] = [[] for _ in range(count)]
        for array in keys:
            array = np.asarray(array, dtype=np.int64)
            which = _instance_of(array, count)
            for i in range(count):
                shares[i].append(array[which == i])
        return shares

    def catch_up(self, store: StoredRows) -> None:
        def start(_: int, instance: _Instance) -> tuple[int, bytes, int]:
            # The seq and the epoch it holds for, read together (an epoch made first if the instance has none): a
            # chunk moves the seq only while the epoch is the same, so a loss midway never hides the rows before it.
            # The span too (fixed here if the index has none yet): the rows left out below are those behind the
            # horizon of the span the index is written with, whatever this process's window says.
            state = f"{self._prefix}state"
            with instance.redis.pipeline(transaction=True) as all_of:
                all_of.setnx(f"{self._prefix}epoch", uuid.uuid4().hex)
                all_of.hsetnx(state, "span", self._span)
                all_of.get(f"{self._prefix}epoch")
                all_of.get(self._seq_key)
                all_of.hget(state, "span")
                _, _, epoch, seq, span = all_of.execute()
            return int(seq or 0), epoch, int(span)

        begun = self._each(start)
        afters, epochs = [b[0] for b in begun], [b[1] for b in begun]
        if len({b[2] for b in begun}) > 1:
            raise IndexShardsChanged(
                "DOCSIEVE_INDEX_URL: the index's instances were written with different spans "
                f"({sorted({b[2] for b in begun})} seconds): run `docsieve reindex`"
            )
        self._span = begun[0][2]
        visible = self._visible_after_loss(store) if min(afters) == 0 else None
        batch: list[IndexRow] = []
        for row in store.index_rows(min(afters)):
            batch.append(row)
            if len(batch) == 1000:  # bounded script calls, each complete up to its own last row
                self._write_rows(batch, afters, epochs, visible)
                batch = []
        self._write_rows(batch, afters, epochs, visible)

    def _visible_after_loss(self, store: StoredRows) -> Callable[[IndexRow], bool] | None:
        """An index written from nothing (lost, cleared by ``reindex``, new) from a store that holds years: which
        rows a lookup could ever see once all are written. A lookup takes no record behind the horizon (two windows
        behind the newest publication time for dated records, behind the newest arrival for the others), and the
        sweep would delete their generations after the first write, so they are not written (at some 1 ms a record
        of Redis time, the most of a rebuild). The index's own horizon may then be behind (the newest arrival among
        the rows written), until the next batch's arrival moves it: it only sweeps later. One difference a lookup
        can see: a key's count for the common cap takes every record of its live generations, those behind the
        horizon too, so near the cap a key can be common in the index written whole and not in the rebuilt one
        (a review's case: three undated records behind the horizon in a generation a dated one keeps live), which
        changes candidates, as an index that swept those records would."""
        if not self._span:
            return None
        dated, arrived = store.newest_times(0)
        if arrived is None:
            return None
        dated_horizon = dated - 4 * self._span if dated is not None else None
        undated_horizon = arrived - 4 * self._span

        def visible(row: IndexRow) -> bool:
            _, _, _, when, at, _ = row
            if when == at:  # undated: its time is its arrival
                return when >= undated_horizon
            return dated_horizon is None or when >= dated_horizon

        return visible

    def _write_rows(
        self,
        rows: list[IndexRow],
        afters: list[int],
        epochs: list[bytes],
        visible: Callable[[IndexRow], bool] | None = None,
    ) -> None:
        def write(i: int, instance: _Instance) -> None:
            fresh = [row for row in rows if row[0] > afters[i]]
            # The last row written whatever it is: the sequence number then moves past the rows left out before it.
            read = read_rows([r for r in fresh[:-1] if visible is None or visible(r)] + fresh[-1:])
            if read.ids:
                self._write(instance, read.ids, self._split(read.keys)[i], read.times, read.arrived, last_seq=0)
                instance.publish(args=[self._prefix, read.last_seq, epochs[i]])  # only if nothing was lost since

        self._each(write)

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
        """After the commit: the staged keys are there, so the sequence number moves. If the index was cleared
        meanwhile (a Redis restarted empty, a ``reindex``), the keys are written again and the sequence number
        stays where it is: the index may have lost the records before these too, and moving it past them would
        hide them from every catch-up; the next batch brings them from the store."""

        def publish(i: int, instance: _Instance) -> None:
            if not instance.publish(args=[self._prefix, last_seq, instance.staged_epoch]):
                when = list(times) if len(times) == len(record_ids) else [_now()] * len(record_ids)
                stored = arrived if arrived is not None else max(when, default=_now())
                # As the store's rows say it: a record whose time is its arrival is undated.
                share = self._split(keys)[i]
                self._write(instance, record_ids, share, when, [stored] * len(record_ids), last_seq=0)

        self._each(publish)

    def _write(
        self,
        instance: _Instance,
        record_ids: Sequence[str],
        keys: Sequence[np.ndarray],
        times: Sequence[int],
        arrived: Sequence[int],
        last_seq: int,
    ) -> None:
        dated = [t != a for t, a in zip(times, arrived, strict=True)]
        batch = _KeyBatch(keys)
        records = partial(self._records, batch, record_ids, times, dated, arrived)
        self._run(instance, "add", batch, records, last_seq=last_seq)

    def _records(
        self,
        batch: _KeyBatch,
        record_ids: Sequence[str],
        times: Sequence[int],
        dated: Sequence[bool],
        arrived: Sequence[int],
    ) -> tuple[bytes, bytes]:
        """The records as the script takes them: each id once (the same source and text can come twice in a
        batch), with its distinct keys (a document's keys can repeat)."""
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
        # Each chosen record's count of distinct keys, then their positions: one uint32 array.
        width = max(batch.unique, 1)
        owner, position = np.divmod(np.unique(batch.owner * width + batch.position), width)
        chosen = np.zeros(batch.count, dtype=bool)
        chosen[first] = True
        owner, position = owner[chosen[owner]], position[chosen[owner]]
        counts = np.bincount(owner, minlength=batch.count)[first]
        out = np.empty(len(first) + len(position), dtype="<u4")
        heads = np.cumsum(counts + 1) - counts - 1
        out[heads] = counts
        body = np.ones(len(out), dtype=bool)
        body[heads] = False
        out[body] = position  # grouped by owner, in the chosen records' order (both ascend)
        return row.tobytes(), out.tobytes()

    def _generation(self, times: np.ndarray) -> np.ndarray:
        return np.floor_divide(times, self._span) if self._span else np.zeros(len(times), dtype=np.int64)

    def _run(
        self,
        instance: _Instance,
        mode: str,
        batch: _KeyBatch,
        records: Callable[[], tuple[bytes, bytes]] | None = None,
        ranges: Callable[[], tuple[bytes, bytes]] | None = None,
        last_seq: int = 0,
        cap: int | None = None,
    ) -> list:
        """One call of the main script on an instance, its generations computed for the index's span: if the
        index has another (made by a worker with another window), it is learnt and the call made again. An instance
        written as another place in another list is refused."""
        while True:
            built_records = records() if records else (b"", b"")
            built_ranges = ranges() if ranges else (b"", b"")
            args: list[bytes | str | int] = [self._prefix, cap or self._cap, mode, uuid.uuid4().hex]
            args += [self._span, last_seq, batch.parts]
            reply = instance.main(args=[*args, *built_ranges, *built_records, instance.position])
            if isinstance(reply, list) and reply and reply[0] == b"span":
                self._span = int(reply[1])
                continue
            if isinstance(reply, list) and reply and reply[0] == b"instance":
                raise IndexShardsChanged(
                    f"DOCSIEVE_INDEX_URL: the index at {redacted(instance.url)} was written as instance "
                    f"{reply[1].decode()} of its list (now {instance.position}): its keys would be looked for in the "
                    "wrong instance; run `docsieve reindex` after changing DOCSIEVE_INDEX_URL"
                )
            return reply

    def lookup(
        self,
        queries: Sequence[np.ndarray],
        limit: int,
        times: Sequence[int | None] | None = None,
        stage_ids: Sequence[str] | None = None,
    ) -> tuple[list[list[str]], int]:
        now = _now()
        shares = self._split(queries)
        # A staged record's index time is its publication (the query's time), else its arrival: now.
        given = list(times) if times is not None else [None] * len(queries)
        when = [now if t is None else t for t in given]
        dated = [t is not None for t in given]

        def look(i: int, instance: _Instance) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
            batch = _KeyBatch(shares[i])
            staged: Callable[[], tuple[bytes, bytes]] | None = None
            if stage_ids:
                staged = partial(self._records, batch, stage_ids, when, dated, [now] * len(when))
            reply = self._run(
                instance, "stage" if stage_ids else "lookup", batch, staged, lambda: self._ranges(batch, times)
            )
            hits, numbers, births, seq, epoch, published, arrived = reply
            if stage_ids:
                instance.staged_epoch = epoch
            horizon = (
                (
                    int(published) - 4 * self._span if published else None,
                    int(arrived) - 4 * self._span if arrived else None,
                )
                if self._span
                else (None, None)
            )
            if not limit:  # staging alone: no candidates wanted, none resolved
                return *_no_pairs(), int(seq), batch.unique
            query, key, record, ids = self._pairs(instance, batch, hits, numbers, births, horizon, times)
            return query, key, record, ids, int(seq), batch.unique

        answers = self._each(look)
        # Keys of different instances are different keys: each instance's numbered after the ones before. Records
        # are named by id across instances (each instance numbers its own).
        key_offsets = np.cumsum([0] + [a[5] for a in answers])
        id_offsets = np.cumsum([0] + [len(a[3]) for a in answers])
        names, name_of = np.unique(np.concatenate([a[3] for a in answers]), return_inverse=True)
        name_of = name_of.reshape(-1)
        query = np.concatenate([a[0] for a in answers])
        key = np.concatenate([a[1] + key_offsets[i] for i, a in enumerate(answers)])
        other = np.concatenate([name_of[a[2] + id_offsets[i]] for i, a in enumerate(answers)])
        found = _ranked(len(queries), int(key_offsets[-1]), query, key, other, names, stage_ids, limit)
        return found, min(a[4] for a in answers)

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
        pairs = np.ascontiguousarray(np.stack([key_lo, key_hi], axis=1).astype("<i8")).view("V16").reshape(-1)
        table, which = np.unique(pairs, return_inverse=True)
        return table.tobytes(), which.reshape(-1).astype("<u4").tobytes()

    def _pairs(
        self,
        instance: _Instance,
        batch: _KeyBatch,
        hits: bytes,
        numbers: bytes,
        births: bytes,
        horizon: tuple[int | None, int | None],
        times: Sequence[int | None] | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(query, key, record) of every posting found under a key a query holds, and the records' ids (a record is
        its position in them): only records within the horizon and (a dated query) its window. Keys are the
        batch's distinct-key positions."""
        heads = np.frombuffer(hits, dtype=[("key", "<u4"), ("gen", "<u4"), ("count", "<u4")])
        if not len(heads):
            return _no_pairs()
        key = np.repeat(heads["key"].astype(np.int64), heads["count"])
        gen = np.repeat(heads["gen"].astype(np.int64), heads["count"])
        number = np.frombuffer(numbers, dtype="<u4").astype(np.int64)
        distinct, record = np.unique((gen << 32) | number, return_inverse=True)
        record = record.reshape(-1)
        slots = self._slots(instance, distinct, np.frombuffer(births, dtype="<i8"))
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
        return query[keep], pair_key[keep], pair_record[keep], ids

    def _slots(self, instance: _Instance, distinct: np.ndarray, births: np.ndarray) -> np.ndarray:
        """The slots (id, time) of the records numbered ``distinct`` (generation ordinal << 32 | number),
        which are sorted, so each generation's come together."""
        gen, number = distinct >> 32, distinct & 0xFFFFFFFF
        present, counts = np.unique(gen, return_counts=True)
        raw = instance.resolve(
            args=[
                self._prefix,
                births[present].astype("<i8").tobytes(),
                counts.astype("<u4").tobytes(),
                number.astype("<u4").tobytes(),
            ]
        )
        return np.frombuffer(raw, dtype=[("id", f"S{ID_WIDTH}"), ("time", "<i8")])

    def summaries(self, ids: Iterable[str]) -> dict[str, tuple[int, np.ndarray]]:
        """None kept here: the store has them."""
        return {}

    def remove(self, record_id: str, keys: bytes) -> int:
        """Take a record (a takedown) out of the postings of its keys; returns how many it was in."""
        (fixed,) = _fixed_width([record_id]).tolist()
        idpart = hashlib.blake2b(fixed, digest_size=PART).digest()
        shares = self._split([np.unique(np.frombuffer(keys, dtype=np.int64))])
        return sum(
            self._each(
                lambda i, instance: int(instance.remove(args=[self._prefix, fixed, idpart, _parts(shares[i][0])]))
            )
        )

    def postings(self, key: int) -> list[str]:
        """The ids a key holds in the live generations (for tests and inspection), in generation order."""
        array = np.array([key], dtype=np.int64)
        instance = self._instances[int(_instance_of(array, len(self._instances))[0])]
        batch = _KeyBatch([array])
        reply = self._run(instance, "lookup", batch, ranges=lambda: self._ranges(batch, None), cap=1 << 30)
        hits, numbers, births = reply[0], reply[1], reply[2]
        heads = np.frombuffer(hits, dtype=[("key", "<u4"), ("gen", "<u4"), ("count", "<u4")])
        if not len(heads):
            return []
        gen = np.repeat(heads["gen"].astype(np.int64), heads["count"])
        distinct = (gen << 32) | np.frombuffer(numbers, dtype="<u4").astype(np.int64)
        order = np.argsort(distinct, kind="stable")
        slots = self._slots(instance, distinct[order], np.frombuffer(births, dtype="<i8"))
        ids = np.empty(len(order), dtype=object)
        ids[order] = [i.decode().rstrip() for i in slots["id"].tolist()]
        return [i for i in ids.tolist() if i]

    def posting_count(self) -> int:
        """Entries the live generations hold (each record's keys, and its id in each instance), from their
        counters: a few reads whatever the index's size (the metrics' gauge)."""

        def count(_: int, instance: _Instance) -> int:
            births = instance.redis.hvals(f"{self._prefix}gens")
            if not births:
                return 0
            counts = instance.redis.pipeline(transaction=False)
            for birth in births:
                counts.hget(f"{self._prefix}s{birth.decode() if isinstance(birth, bytes) else birth}", "n")
            return sum(int(float(n)) for n in counts.execute() if n is not None)

        return sum(self._each(count))

    def redis_keys(self) -> list[bytes]:
        """The names of every Redis key this index holds (its layout's, not the old ones'), in every instance."""
        return [
            name
            for names in self._each(
                lambda _, instance: list(instance.redis.scan_iter(match=f"{self._prefix}*", count=10_000))
            )
            for name in names
        ]

    def clear(self) -> int:
        """Remove this index's keys (only those under its prefix, in any layout) from every instance; returns how
        many."""

        def clear(_: int, instance: _Instance) -> int:
            removed = 0
            for layout in (*OLD_LAYOUTS, LAYOUT):
                pattern = f"{self._namespace}:{layout}:*"
                for batch in batched(instance.redis.scan_iter(match=pattern, count=10_000), 10_000):
                    removed += instance.redis.delete(*batch)
            # Last, the seq and the epoch at once: a catch-up that read them before (a worker's, outside the lock)
            # cannot move a seq the scan already passed, which would outlive the clear and claim rows it removed.
            removed += instance.redis.delete(self._seq_key, f"{self._prefix}epoch")
            return removed

        removed = sum(self._each(clear))
        self._span_read = len(self._instances) == 1  # read again: this worker's window writes it now
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


def _ranked(
    count: int,
    keys: int,
    query: np.ndarray,
    key: np.ndarray,
    other: np.ndarray,
    names: np.ndarray,
    own_ids: Sequence[str] | None,
    limit: int,
) -> list[list[str]]:
    """For each of ``count`` queries, the records (``other``: positions in ``names``, the sorted ids, so ties go
    to the lowest id) sharing its keys (of ``keys`` distinct ones), most shared first, then by id; never itself."""
    if not len(query) or not limit:
        return [[] for _ in range(count)]
    if own_ids:
        own = _fixed_width(own_ids)
        where = np.minimum(np.searchsorted(names, own), len(names) - 1)
        keep = other != np.where(names[where] == own, where, -1)[query]
        query, key, other = query[keep], key[keep], other[keep]
    # A record met twice under one key (in two generations) shares that key once.
    width = len(names)
    query, other = np.divmod(np.unique((query * keys + key) * width + other), width)
    query //= keys
    text = [n.decode().rstrip() for n in names.tolist()]
    ranked = most_shared(query, other, count, limit)
    return [[text[r] for r in records] for records in ranked]


def _no_pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    none = np.zeros(0, dtype=np.int64)
    return none, none, none, np.zeros(0, dtype=f"S{ID_WIDTH}")


def _instance_of(keys: np.ndarray, count: int) -> np.ndarray:
    """Which of ``count`` instances holds each key: the first byte of its mixed form (bucket addresses use the
    third to sixth)."""
    if count == 1:
        return np.zeros(len(keys), dtype=np.int64)
    first = np.frombuffer(_parts(keys), dtype=np.uint8).reshape(-1, PART)[:, 0]
    return first.astype(np.int64) % count


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
