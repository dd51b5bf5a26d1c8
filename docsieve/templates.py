"""Template boilerplate: how many different texts hold each shingle, learned as the store grows.

Congratulation cables, weather forecasts, execution statements, company results and market closes are
written on templates: two items about different subjects share half their shingles and differ in the
names, dates and figures. A shingle's weight falls with the number of different texts that hold it
(``boilerplate_texts`` and more: ``boilerplate_texts / count``), and a copy must also pass the thresholds
with its shared shingles weighted so: what many different items say counts little, what differs counts.

What counts as "different texts": every stored record except exact copies and near-identical copies
(Jaccard >= ``NEAR_IDENTICAL`` with their canonical). A much-copied wire story therefore stays rare
however many outlets carry it, while a template's boilerplate climbs with every item written on it, even
when the first items of a template were merged (the count does not wait for the decisions to be right).

The counts persist in the store (``shingle_counts``: one row of shingle ids per batch, read by every
process from where it last looked, like the candidate index), so all workers share them.

The texts of one day count as one (``across_days``): the cuts of one release all come out on its day, while a
template's boilerplate comes back day after day (a forecast, a cable on each head of state's national day). So each
bucket also keeps the latest publication day of the texts counted in it and how many of its ids are of other days
(or undated), and a shingle whose bucket holds no more of other days than other shingles put in a bucket on average
weighs 1 (``of_one_day``). Buckets are shared: a shingle of a later day landing in a release's bucket takes the
bucket to its day and costs the release's later cuts their day, which falls back on the rule without days, never a
stricter one. A bucket so tells what its latest day did whatever the store's age: about half of a day's shingles
read as of one day at every size measured (bench/template_days.py), where a bucket once reached by any other day's
shingle used to be spread for good (none after 511,000 articles).

With the rewrite stage on (docsieve/rewrites.py), the same rows and snapshots also carry the word ids of the
texts counted, kept apart from the shingles' (``WORD_ROW``): the document frequencies of words, counted in
counters of their own that never stop (the stage's weights are IDF, which a cap would make drift with the
store's size).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import zstandard

from docsieve.fingerprint import shared_mask

# A copy this close to its canonical adds nothing new to count: it is the same text.
NEAR_IDENTICAL = 0.8


class CountRows(Protocol):
    def shingle_count_rows(self, after_seq: int) -> Iterable[tuple[int, bytes]]: ...

    def count_snapshot(self, after_seq: int) -> tuple[int, bytes] | None: ...

    def save_count_snapshot(self, seq: int, blob: bytes | memoryview) -> bool: ...

    def counted_since_snapshot(self) -> int: ...

    def newest_count_snapshot(self) -> int: ...

    def newest_count_snapshot_size(self) -> int: ...


# Counts are kept per bucket of shingle ids (their top 24 bits): 16M two-byte counters, 32 MB whatever the
# store holds, each lookup one array index. Shingles sharing a bucket add up: once the store has counted tens of
# millions of ids, every bucket holds other shingles' texts (2.5 on average after 126,000 articles, 9 after
# 511,000), and a rare shingle would look like boilerplate. So the weights take a bucket's count less the mean
# count of all buckets (what the others add to a bucket, on average) as its shingle's own (``weights``).
BUCKET_SHIFT = 8
# A snapshot of the counts is written once the rows since the last one hold this many ids (some 6,000
# different articles, 16 MB of rows), or as many bytes of ids as the last snapshot has, if more: a process starts
# from the newest snapshot and the rows after it, and the rows before it go, so neither the start nor the table
# grows with the store. A snapshot grows as the counters fill (23.5 MB at 30,000 articles, 43 MB at 300,000,
# docs/benchmarks.md), and each costs the deciding process its compression and its write: spread over as many bytes
# of rows as it has, its share of an ingest stays what it is in a young store. A start reads the snapshot and the
# rows since: about as many bytes again (more with the rewrite stage's word ids, which the rows hold too, twice as
# many after small batches).
SNAPSHOT_AFTER = 4_000_000
# Writing a snapshot reads every count and compresses them (0.5-0.7 s at 100,000 articles): the ingest of a
# single document that found one due took 1.06 s, most of it that. Small batches leave it to larger ones.
SMALL_BATCH = 8
MOST = 1 << 15  # counts stop here (the weight is 3/32768 by then); half the counters' range, see add()
# Words' counters: 4M buckets of a word id's top 22 bits, 16 MB, made when a process first meets a word row.
# A news archive holds a few million distinct stems, so a bucket holds a rare stem and one or two others:
# a rare word can look a little commoner, as a shingle can in its buckets. uint32: they never stop.
WORD_BUCKET_SHIFT = 10
# A count row or snapshot with words: this mark, the number of shingle ids (uint32), the shingle ids, then the
# word ids. Rows and snapshots without it (shingles alone) are those made before words were counted, or with
# the stage off.
WORD_ROW = b"DSW1"
ZSTD_FRAME = b"\x28\xb5\x2f\xfd"  # how a zstd frame starts (a zlib stream, 0x78)
# A count row with days: this mark, the number of texts (uint32), each text's day (uint32), each text's number of
# shingle ids (uint32), then the row as before. Rows without it: texts undated.
DAY_ROW = b"DSD1"
# A snapshot with days: this mark, the size of the compressed days (uint32), the days (``ShingleCounts._days``),
# then the snapshot as before. A snapshot of DAY_ROW (schema 0016) kept for each bucket the day of all its texts,
# or UNDATED (uint16); one without either mark, none.
DAY_SNAPSHOT = b"DSD2"
# A bucket's days, one uint32: its latest day in the top half, its ids of other days in the bottom (capped at MOST,
# as the counts are), read and written together. The latest day is 0 for none counted yet, else the latest day
# (since DAY_ZERO) of the texts counted in it, or UNDATED where that is unknown (counted from a snapshot without
# days). uint16 days since 1900 run to 2079; a date outside is none (UNDATED), as an undated text's.
DAY_BITS = 16
OTHERS = (1 << DAY_BITS) - 1
UNDATED = 0xFFFF
DAY_ZERO = datetime(1900, 1, 1, tzinfo=UTC)


def day_of(published: datetime | None) -> int:
    """A text's day for the template counts: its publication day, UNDATED when it has none."""
    if published is None:
        return UNDATED
    if published.tzinfo is None:  # a naive time is UTC's, as parse_published takes it
        published = published.replace(tzinfo=UTC)
    day = (published - DAY_ZERO).days
    return day if 0 < day < UNDATED else UNDATED  # a day the counters cannot hold: none, as an undated text's


class ShingleCounts:
    """How many different stored texts hold each shingle (by bucket, see BUCKET_SHIFT), and how many of them came
    out on other days than its latest."""

    def __init__(self, boilerplate_texts: int, across_days: bool = True) -> None:
        self.boilerplate_texts = boilerplate_texts
        self.across_days = across_days
        self._counts: np.ndarray | None = None  # not read yet (see catch_up)
        self._total = 0  # the sum of the counters (as capped: what a snapshot's counters add up to)
        # Each bucket's latest day (or UNDATED) and how many of its ids are of other days or undated (capped as the
        # counts are), kept whatever ``across_days`` says, which only chooses whether the weights read them: a worker
        # with it off would otherwise write snapshots without days, unknown for every bucket for all.
        self._days: np.ndarray | None = None
        self._words: np.ndarray | None = None  # no word counted yet
        self._rows: CountRows | None = None
        self._released = False  # the transaction of the last catch_up has ended
        self.last_seq = 0
        self.since_snapshot = 0  # ids counted since the last snapshot this process knows of
        self.snapshot_seq = 0  # the seq of that snapshot (0: none)
        self.snapshot_bytes = 0  # its size, as this process last read or made one (0: none)

    @property
    def read(self) -> bool:
        """Whether this process holds the counts (else it has not needed them yet)."""
        return self._counts is not None

    def catch_up(self, rows: CountRows) -> None:
        """Count the rows written since this process last looked, starting from the newest snapshot if it
        covers more than this process has counted (or the rows it read were deleted). A process reads the
        counts the first time it weighs shingles (``weights``, in the transaction of this call) or a snapshot is
        due: a command that decides no near copy, such as the ingest of one new document, reads none (0.23 s
        of a 1M-record store's snapshot and rows)."""
        self._rows, self._released = rows, False
        if self._counts is not None:
            self._read(rows)

    @contextmanager
    def bound(self) -> Iterator[None]:
        """The span of the transaction ``catch_up`` is given in: past it, counts not read by then wait for the
        next ``catch_up`` (reading them through an ended transaction is an error, not zeros)."""
        try:
            yield
        finally:
            self._rows, self._released = None, True

    def _loaded(self) -> np.ndarray:
        if self._counts is None:
            if self._released:
                raise RuntimeError("template counts needed outside a transaction: catch_up first")
            self._counts = np.zeros(1 << (32 - BUCKET_SHIFT), dtype=np.uint16)  # pages are taken as written
            self._days = np.zeros(1 << (32 - BUCKET_SHIFT), dtype=np.uint32)
            if self._rows is not None:  # else a counter of its own, with nothing stored to read
                self._read(self._rows)
        return self._counts

    def _read(self, rows: CountRows) -> None:
        try:
            self._read_rows(rows)
        except BaseException:  # counted part-way, perhaps past rows a snapshot took: read all again next time
            self._counts, self._days, self._words = None, None, None
            self._total, self.last_seq, self.since_snapshot, self.snapshot_seq = 0, 0, 0, 0
            raise

    def _read_rows(self, rows: CountRows) -> None:
        after = self.last_seq
        while True:
            newest = rows.newest_count_snapshot()
            if (snapshot := rows.count_snapshot(after)) is not None:
                seq, blob = snapshot
                self.snapshot_bytes = len(blob)
                old_days, days, blob = _day_parts(blob)
                shingles, words = _parts(blob, row=False)
                self._counts = np.frombuffer(_decompressed(shingles), dtype=np.uint16).copy()
                self._total = int(self._counts.sum(dtype=np.int64))
                self._days = _read_days(self._counts, old_days, days)
                self._words = None if words is None else np.frombuffer(_decompressed(words), dtype=np.uint32).copy()
                self.last_seq, self.since_snapshot, self.snapshot_seq = seq, 0, seq
            for seq, blob in rows.shingle_count_rows(self.last_seq):
                text_days, blob = _row_days(blob)
                shingles, words = _parts(blob)
                self.add(np.frombuffer(shingles, dtype=np.uint32), text_days)
                if words is not None:
                    self.add_words(np.frombuffer(words, dtype=np.uint32))
                self.last_seq = max(self.last_seq, seq)
            # Read before the lock (PostgreSQL), the rows can lose a race with a snapshot written meanwhile,
            # which deletes the rows it covers, some perhaps not read yet: then start again from it.
            if rows.newest_count_snapshot() == newest:
                return
            after = 0

    def snapshot_due(self, rows: CountRows, documents: int = SMALL_BATCH) -> bool:
        """Under the store's write lock: whether the rows since the last snapshot hold the ids that make the next one
        due (``_due``: SNAPSHOT_AFTER, or as many bytes of ids as the last snapshot has; ``snapshot`` then makes it,
        once the batch is stored). A batch of fewer than SMALL_BATCH ``documents`` leaves it to a larger one until the
        rows hold twice as many. A process that holds no counts asks the store (a process that never weighs shingles
        still bounds the rows), whose rows' size counts their texts' word ids too: ``snapshot`` reads them and may
        find it is not due yet."""
        if self._counts is None:  # the snapshot's size asked only when the rows reach the least that may be due
            counted = rows.counted_since_snapshot()
            return counted >= _due(documents, 0) and counted >= _due(documents, rows.newest_count_snapshot_size())
        return self.since_snapshot >= _due(documents, self.snapshot_bytes)

    def snapshot(self, rows: CountRows, documents: int = SMALL_BATCH) -> tuple[int, memoryview] | None:
        """The counts as of the last row counted (read first, from the ``rows`` of the last ``catch_up``, if this
        process has not needed them yet), compressed:
        (that row's seq, the snapshot's bytes), to be saved (``CountRows.save_count_snapshot``); None if they are
        not due one after all. Made outside the write lock: it takes 0.35-0.6 s (one every 5,000-15,000 articles),
        which every worker waited out when it was made under the lock (docs/benchmarks.md). The counts must not
        change till it is saved, and ``since_snapshot`` is set to 0 once it is (or another as new was found)."""
        counts = self._loaded()
        if self.since_snapshot < _due(documents, self.snapshot_bytes):
            return None
        if (newest := rows.newest_count_snapshot()) > self.snapshot_seq:
            # Another process saved one since this one's last (each counts every row, so all fall due together): the
            # rows are bounded already, and another would cost 0.45 s and 41 MB for nothing.
            self.saved(newest, rows.newest_count_snapshot_size())
            return None
        return self.last_seq, _snapshot(counts, self._words, self._days)

    def saved(self, seq: int, size: int | None = None) -> None:
        """A snapshot at ``seq`` (of ``size`` bytes, if known) is stored, this process's or another's as new that it
        found: the count starts again."""
        self.since_snapshot, self.snapshot_seq = 0, max(self.snapshot_seq, seq)
        if size is not None:
            self.snapshot_bytes = size

    def snapshot_if_due(self, rows: CountRows, documents: int = SMALL_BATCH) -> bool:
        """``snapshot_due``, then the snapshot made and saved in the same transaction (where no batch is written: the
        pipeline makes it after its batch's commit, and saves it in a transaction of its own); whether one was
        written."""
        made = self.snapshot(rows, documents) if self.snapshot_due(rows, documents) else None
        if made is None:
            return False
        written = rows.save_count_snapshot(*made)
        self.saved(made[0], len(made[1]))  # written, or another as new was there: the rows are bounded either way
        return written

    def add(self, ids: np.ndarray, days: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Count the ids (a text's ids once each, several texts one after another); ``days``: each text's day and
        number of ids (None: undated)."""
        self._loaded()
        self.since_snapshot += len(ids)
        buckets = (ids >> BUCKET_SHIFT).astype(np.intp)  # numpy would convert uint32 positions at each use
        if days is None or not len(days[0]):
            self._add_of_day(buckets, UNDATED)
            return
        each, sizes = days
        if (each == each[0]).all():  # a batch of one day, as most are: no split
            self._add_of_day(buckets, int(each[0]))
            return
        of_id = np.repeat(each, sizes)
        for day in np.unique(each):
            self._add_of_day(buckets[of_id == day], int(day))

    def _add_of_day(self, buckets: np.ndarray, day: int) -> None:
        """Count ids of one day (UNDATED: undated). Before they are counted, a bucket whose latest day is earlier
        (or none, or unknown) takes the day, every id it holds then of other days; a bucket of a later day counts them
        as of other days, as a dated bucket does undated ids."""
        counts, state = self._loaded(), self._days
        assert state is not None  # made with the counts (_loaded)
        before = state[buckets] >> DAY_BITS
        if day == UNDATED:
            _count_capped(state, buckets[(before != 0) & (before != UNDATED)])
        else:
            # A bucket twice here gets the same value twice.
            started = buckets[(before < day) | (before == UNDATED)]
            state[started] = np.uint32(day << DAY_BITS) | counts[started]
            _count_capped(state, buckets[(before > day) & (before != UNDATED)])
        self._total += len(buckets) - _count_capped(counts, buckets)

    def add_words(self, ids: np.ndarray) -> None:
        """Count word ids (each text's once, several texts one after another)."""
        self._loaded()
        if self._words is None:
            self._words = np.zeros(1 << (32 - WORD_BUCKET_SHIFT), dtype=np.uint32)
        # Not counted towards the next snapshot: they would make one due a third sooner, each compressing the
        # words' counters too (a snapshot took 0.14 s; ten in 15,000 articles).
        np.add.at(self._words, ids >> WORD_BUCKET_SHIFT, np.uint32(1))

    def word_counts(self, ids: np.ndarray) -> np.ndarray:
        """How many counted texts hold each word id (0 for all before any word was counted)."""
        self._loaded()
        if self._words is None:
            return np.zeros(len(ids), dtype=np.uint32)
        return self._words[ids >> WORD_BUCKET_SHIFT]

    def counts(self, ids: np.ndarray) -> np.ndarray:
        return self._loaded()[ids >> BUCKET_SHIFT]

    def weights(self, ids: np.ndarray) -> np.ndarray:
        """1 for a shingle held by at most ``boilerplate_texts`` texts, then ``boilerplate_texts / count`` (its
        bucket's count less the mean, see BUCKET_SHIFT); with ``across_days``, 1 while the texts counted that hold it
        all came out on one day (``of_one_day``)."""
        counts = self._loaded()
        buckets = ids >> BUCKET_SHIFT
        mean = self._total / len(counts)
        own = counts[buckets] - mean  # less what other shingles add on average
        weights = np.minimum(1.0, self.boilerplate_texts / np.maximum(own, 1.0))
        if self.across_days:
            weights[self._of_one_day(buckets, mean)] = 1.0
        return weights

    def of_one_day(self, ids: np.ndarray) -> np.ndarray:
        """Whether the texts counted that hold each shingle all came out on one day: the ids its bucket holds of
        other days than the latest are no more than other shingles put there on average (the mean count of a
        bucket). A store that has counted millions of ids puts a few in every bucket (BUCKET_SHIFT), so a bucket
        holding only one day's texts of its own cannot be told from one holding them and a few others' texts of
        other days; up to a standard deviation of the mean more merged two cables of one template (to two heads of
        state, on different days) in a store grown by 90 days (docs/benchmarks.md)."""
        counts = self._loaded()
        return self._of_one_day(ids >> BUCKET_SHIFT, self._total / len(counts))

    def _of_one_day(self, buckets: np.ndarray, mean: float) -> np.ndarray:
        assert self._days is not None  # made with the counts (_loaded)
        held = self._days[buckets]
        latest = held >> DAY_BITS
        return (latest != 0) & (latest != UNDATED) & ((held & OTHERS) <= mean)


def _due(documents: int, snapshot_bytes: int) -> int:
    """The ids counted since the last snapshot (of ``snapshot_bytes``) that make the next one due, after a batch of
    ``documents``."""
    due = max(SNAPSHOT_AFTER, snapshot_bytes // 4)  # an id is four bytes in a row
    return due if documents >= SMALL_BATCH else 2 * due


def _count_capped(counters: np.ndarray, buckets: np.ndarray) -> int:
    """Add one to the counters at each of ``buckets``, none past MOST; how many ones the cap took. The counters are
    uint16, or a bucket's days (uint32), whose bottom half (OTHERS) is counted."""
    taken = 0
    # numpy's unbuffered add (quicker than sorting the ids into runs, docs/benchmarks.md; its fast path needs the
    # counters' own dtype for the increment), in chunks that cannot wrap a counter: a counter is at
    # most MOST and a chunk adds at most MOST - 1 more, and each chunk's counters are capped again.
    one = counters.dtype.type(1)
    for start in range(0, len(buckets), MOST - 1):
        chunk = buckets[start : start + MOST - 1]
        np.add.at(counters, chunk, one)
        held = counters[chunk] & OTHERS
        if int(held.max(initial=0)) > MOST:
            over = np.unique(chunk[held > MOST])
            counted = counters[over] & OTHERS
            taken += int(counted.sum(dtype=np.int64)) - MOST * len(over)
            counters[over] = counters[over] - counted + MOST  # the top half (a bucket's day) kept
    return taken


def weighted_overlap(a: np.ndarray, b: np.ndarray, weight_a: np.ndarray, weight_b: np.ndarray) -> tuple[float, float]:
    """Jaccard and containment (over the lighter set) of two sorted unique shingle sets, each shingle
    counted by its weight."""
    shared = shared_mask(a, b)
    both = float(weight_a[shared].sum())
    total_a, total_b = float(weight_a.sum()), float(weight_b.sum())
    union = total_a + total_b - both
    smaller = min(total_a, total_b)
    return (both / union if union else 0.0, both / smaller if smaller else 0.0)


def counted_shingles(
    shingle_sets: Sequence[np.ndarray], word_sets: Sequence[np.ndarray] = (), days: Sequence[int] | None = None
) -> bytes:
    """One ``shingle_counts`` row: the ids of the texts a batch adds, each text's ids once; with ``word_sets``
    (the rewrite stage's, each with its text's mark), their word ids after them (``WORD_ROW``); with ``days``
    (``day_of`` each text), the texts' days before them (``DAY_ROW``)."""
    shingles = np.concatenate([np.asarray(s, dtype=np.uint32) for s in shingle_sets]).tobytes() if shingle_sets else b""
    row = shingles
    if word_sets:
        words = np.concatenate([np.asarray(w, dtype=np.uint32) for w in word_sets]).tobytes()
        row = _joined(shingles, words)
    if days is None:
        return row
    sizes = np.array([len(s) for s in shingle_sets], dtype=np.uint32)
    texts = np.uint32(len(sizes)).tobytes()
    return DAY_ROW + texts + np.asarray(days, dtype=np.uint32).tobytes() + sizes.tobytes() + row


def _row_days(blob: bytes) -> tuple[tuple[np.ndarray, np.ndarray] | None, bytes]:
    """A row's texts' days and sizes (None: a row written without them), and the rest of the row. A row without
    them starts with DAY_ROW only if its first id is that very number, and then its sizes give it away."""
    if not blob.startswith(DAY_ROW) or len(blob) < 8:
        return None, blob
    texts = int(np.frombuffer(blob, dtype=np.uint32, count=1, offset=4)[0])
    end = 8 + 8 * texts
    if end > len(blob):
        return None, blob
    days = np.frombuffer(blob, dtype=np.uint32, count=texts, offset=8)
    sizes = np.frombuffer(blob, dtype=np.uint32, count=texts, offset=8 + 4 * texts)
    rest = blob[end:]
    if int(sizes.sum()) * 4 > len(rest):
        return None, blob
    return (days.astype(np.uint16), sizes.astype(np.int64)), rest


def _day_parts(blob: bytes) -> tuple[bytes | None, bytes | None, bytes]:
    """A snapshot's compressed days as schema 0016 kept them (None: not of 0016), its compressed days (None: written
    without them, or by 0016) and the rest of it."""
    if not (blob.startswith(DAY_SNAPSHOT) or blob.startswith(DAY_ROW)) or len(blob) < 8:
        return None, None, blob
    size = int(np.frombuffer(blob, dtype=np.uint32, count=1, offset=4)[0])
    days, rest = blob[8 : 8 + size], blob[8 + size :]
    return (days, None, rest) if blob.startswith(DAY_ROW) else (None, days, rest)


def _read_days(counts: np.ndarray, old_days: bytes | None, days: bytes | None) -> np.ndarray:
    """Each bucket's days (``ShingleCounts._days``), from a snapshot's parts (``_day_parts``). A snapshot of schema
    0016 kept a bucket's day only while all its texts were of it (none of other days), else SPREAD (UNDATED's
    value); one before it, no day at all: those buckets' latest days are unknown, all their ids of other days."""
    if days is not None:
        return np.frombuffer(_decompressed(days), dtype=np.uint32).copy()
    if old_days is not None:
        latest = np.frombuffer(_decompressed(old_days), dtype=np.uint16)
    else:
        latest = np.where(counts > 0, UNDATED, 0).astype(np.uint16)
    others = np.where(latest == UNDATED, counts, 0)
    return (latest.astype(np.uint32) << DAY_BITS) | others.astype(np.uint32)


def _snapshot(counts: np.ndarray, words: np.ndarray | None, days: np.ndarray | None) -> memoryview:
    """A snapshot's bytes (``_day_parts``, ``_parts``): with days, DAY_SNAPSHOT, their compressed size, the days; then,
    with words, ``_joined``'s layout of the counts and the words, else the counts. Each part is compressed from its
    array in place into one buffer, handed over as a view: made part by part and joined, the parts, their joins and
    the whole were alive at once (a 48 MB snapshot of a 1,000,000-record store's counts raised the process's peak by
    136 MB, 105 so; bench/peaks.py snapshot)."""
    out = io.BytesIO()

    def sized(mark: bytes, array: np.ndarray) -> None:  # mark, the compressed size, the compressed array
        out.write(mark + bytes(4))
        start = out.tell()
        _compress_into(out, array)
        end = out.tell()
        out.seek(start - 4)
        out.write(np.uint32(end - start).tobytes())
        out.seek(end)

    if days is not None:
        sized(DAY_SNAPSHOT, days)
    if words is not None:
        sized(WORD_ROW, counts)
        _compress_into(out, words)
    else:
        _compress_into(out, counts)
    return out.getbuffer()


def _compress_into(out: io.BytesIO, array: np.ndarray) -> None:
    """The array's counters compressed with zstd into ``out`` as they are made, their size in the frame's header (as
    ``_decompressed`` needs it). zstd: at a grown store (counters 93% nonzero) 0.10-0.16 s to write and 0.06-0.15 s
    to read, where zlib's fastest level took 0.36-0.42 and 0.17-0.43 s, for an eighth more bytes
    (docs/benchmarks.md); a snapshot is written every 6,000 articles or so, and read by every process that starts.
    With zstd's checksum, as zlib had one: a snapshot damaged in the store is an error when read, not other counts
    (the rows it covers are gone)."""
    compressor = zstandard.ZstdCompressor(level=1, write_checksum=True)
    with compressor.stream_writer(out, size=array.nbytes, closefd=False) as writer:
        writer.write(array.data)


def _decompressed(part: bytes) -> bytes:
    """A snapshot's counters: zstd, or zlib as a worker of schema 0014 writes them (one still running when the store
    was migrated to 0015, which compressed the stored ones again)."""
    if part.startswith(ZSTD_FRAME):
        return zstandard.ZstdDecompressor().decompress(part)
    return zlib.decompress(part)


def _joined(shingles: bytes, words: bytes) -> bytes:
    return WORD_ROW + np.uint32(len(shingles)).tobytes() + shingles + words


def _parts(blob: bytes, row: bool = True) -> tuple[bytes, bytes | None]:
    """A row's (``row``) or snapshot's shingle part and word part (None: it has none). A snapshot of shingles
    alone is a zstd frame (or, written before, a zlib stream), which starts with ZSTD_FRAME (or 0x78), never with
    WORD_ROW; a row of shingles alone starts with it only if its first id is that very number (one in 4 billion),
    and then its length gives it away, or else its ids would be read as a few words."""
    if not blob.startswith(WORD_ROW) or len(blob) < 8:
        return blob, None
    size = int(np.frombuffer(blob, dtype=np.uint32, count=1, offset=4)[0])
    if 8 + size > len(blob) or (row and (size % 4 or (len(blob) - 8 - size) % 4)):
        return blob, None  # shingles alone after all
    return blob[8 : 8 + size], blob[8 + size :]
