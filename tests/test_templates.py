"""How many different texts hold each shingle (docsieve/templates.py): the counts, their cap, the weights."""

from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa
import zstandard


def zstd_frame(data: bytes) -> bytes:
    """A compressed part of a count snapshot or row, as docsieve/templates.py writes one."""
    return zstandard.ZstdCompressor(level=1, write_checksum=True).compress(data)


def test_template_weights_follow_the_counts_of_every_text() -> None:
    from docsieve.templates import ShingleCounts

    rng = np.random.default_rng(3)
    counts = ShingleCounts(boilerplate_texts=3)
    pool = np.unique(rng.integers(0, 2**32, size=450, dtype=np.uint64).astype(np.uint32))
    texts = [np.unique(rng.choice(pool, size=120)) for _ in range(60)]
    for start in range(0, 60, 7):  # batches of texts, as a pipeline adds them
        counts.add(np.concatenate(texts[start : start + 7]))
    ids = pool
    held = np.array([sum(int(i) in set(t.tolist()) for t in texts) for i in ids])
    assert np.array_equal(counts.counts(ids), held)
    # less the mean count of a bucket: what other shingles add to one (BUCKET_SHIFT)
    mean = sum(len(t) for t in texts) / 2**24
    assert np.allclose(counts.weights(ids), np.minimum(1.0, 3 / np.maximum(held - mean, 1)))


@pytest.mark.slow  # 140 million ids counted: 4 s
def test_a_rare_shingle_keeps_its_weight_in_a_store_whose_buckets_all_hold_other_shingles() -> None:
    """Half a million articles' worth of shingle ids (140 million, 8 a bucket on average): most shingles that two
    texts hold still weigh 1 (a bucket's count varies about its mean by 3 either way), where their buckets' raw
    counts would make nearly all of them boilerplate; one that thirty texts hold weighs 3/30, as in an empty store."""
    from docsieve.templates import ShingleCounts

    rng = np.random.default_rng(9)
    counts = ShingleCounts(boilerplate_texts=3)
    for _ in range(14):
        counts.add(rng.integers(0, 2**32, 10_000_000, dtype=np.uint64).astype(np.uint32))
    rare = rng.integers(0, 2**32, 2000, dtype=np.uint64).astype(np.uint32)
    common = rng.integers(0, 2**32, 2000, dtype=np.uint64).astype(np.uint32)
    for _ in range(2):
        counts.add(rare)
    for _ in range(30):
        counts.add(common)
    raw = np.minimum(1.0, 3 / counts.counts(rare))
    assert np.mean(raw == 1.0) < 0.05  # the raw counts: boilerplate
    assert np.mean(counts.weights(rare) == 1.0) > 0.6 and np.mean(counts.weights(rare)) > 0.85
    assert np.median(counts.weights(common)) == pytest.approx(3 / 30, rel=0.1)


def test_template_counts_stop_at_their_cap_and_never_wrap() -> None:
    from docsieve.templates import MOST, ShingleCounts

    counts = ShingleCounts(boilerplate_texts=3)
    common, rare = np.uint32(7 << 24), np.uint32(9 << 24)
    counts.add(np.full(3 * MOST + 5, common, dtype=np.uint32))  # more than a uint16 holds, in one call
    counts.add(np.array([rare, rare, rare], dtype=np.uint32))
    counts.add(np.full(MOST, common, dtype=np.uint32))  # and again at the cap
    assert counts.counts(np.array([common, rare])).tolist() == [MOST, 3]
    assert counts.weights(np.array([common]))[0] == pytest.approx(3 / MOST)


@pytest.mark.slow
def test_a_new_process_starts_from_the_newest_count_snapshot_and_the_rows_after_it(tmp_path, monkeypatch) -> None:
    import docsieve.templates as templates
    from docsieve.models import RawDocument
    from docsieve.pipeline import Pipeline
    from docsieve.schema import shingle_counts
    from docsieve.settings import Settings
    from docsieve.store import Store

    monkeypatch.setattr(templates, "SNAPSHOT_AFTER", 2_000)  # ids: a snapshot every few batches
    # Shingles alone (no rewrite stage's words): the rows' sizes below are counted for them.
    settings = Settings(store=f"sqlite:///{tmp_path / 's.db'}", batch_size=4, rewrites=False)
    rng = np.random.default_rng(5)
    vocabulary = [f"w{i}" for i in range(3000)]
    docs = [RawDocument(source=f"d{i}", body=" ".join(rng.choice(vocabulary, 200))) for i in range(40)]
    first = Pipeline(Store(settings.store), settings)
    first.ingest(docs)
    with first.store.reading() as txn:
        snapshot = txn.count_snapshot(0)
        rows_left = txn.conn.scalar(sa.select(sa.func.count()).select_from(shingle_counts))
        oldest_row = txn.conn.scalar(sa.select(sa.func.min(shingle_counts.c.seq)))
    # The rows it covers went (all but its own: new rows are numbered after it).
    assert snapshot is not None and rows_left < 40 / 4 and oldest_row == snapshot[0]
    probe = np.unique(np.concatenate([first.templates._counts.nonzero()[0].astype(np.uint32) << 8]))
    # A new process: one new document, no near copy to weigh, reads no counts; the first need reads them, from
    # the snapshot and the rows after it.
    second = Pipeline(Store(settings.store), settings)
    (new,) = second.process([RawDocument(source="new", body=" ".join(rng.choice(vocabulary, 200)))])
    assert new.status.value == "canonical" and not second.templates.read
    with second.store.writing() as txn:
        second.templates.catch_up(txn)
        held = second.templates.counts(probe)
    assert second.templates.last_seq > first.templates.last_seq  # the row of the new document too
    assert np.array_equal(held, first.templates.counts(probe)) and probe.size > 1000
    first.close()
    second.close()


def test_a_process_that_weighs_no_shingles_still_snapshots_the_counts(tmp_path, monkeypatch) -> None:
    """Documents with no near copies never need the counts: once the rows since the snapshot hold enough ids,
    the process reads them all the same and writes the snapshot, so the rows stay bounded."""
    import docsieve.templates as templates
    from docsieve.models import RawDocument
    from docsieve.pipeline import Pipeline
    from docsieve.schema import shingle_counts
    from docsieve.settings import Settings
    from docsieve.store import Store

    monkeypatch.setattr(templates, "SNAPSHOT_AFTER", 2_000)
    weighed: list[int] = []
    monkeypatch.setattr(templates.ShingleCounts, "weights", lambda self, ids: weighed.append(1))
    # Shingles alone (no rewrite stage's words): the rows' sizes below are counted for them.
    settings = Settings(store=f"sqlite:///{tmp_path / 's.db'}", batch_size=templates.SMALL_BATCH, rewrites=False)
    rng = np.random.default_rng(6)
    vocabulary = [f"w{i}" for i in range(3000)]
    pipeline = Pipeline(Store(settings.store), settings)
    pipeline.ingest([RawDocument(source=f"d{i}", body=" ".join(rng.choice(vocabulary, 200))) for i in range(80)])
    with pipeline.store.reading() as txn:
        snapshot = txn.count_snapshot(0)
        rows_left = txn.conn.scalar(sa.select(sa.func.count()).select_from(shingle_counts))
    pipeline.close()
    assert not weighed and pipeline.templates.read
    # The snapshot's own row and the rows after it, fewer than it takes to make the next one due (1,600 ids each).
    assert snapshot is not None and rows_left <= 3


class _Rows:
    """Count rows that only take snapshots."""

    def __init__(self, since: int) -> None:
        self.since, self.saved = since, 0

    def counted_since_snapshot(self) -> int:
        return self.since

    def newest_count_snapshot_size(self) -> int:
        return 0

    def save_count_snapshot(self, seq: int, blob: bytes | memoryview) -> bool:
        self.saved += 1
        return True

    def newest_count_snapshot(self) -> int:
        return 0


def test_a_small_batch_leaves_a_due_snapshot_to_a_larger_one_until_twice_due() -> None:
    """Writing a snapshot reads and compresses every count: the ingest of one document that found one due took a
    second. A batch of fewer than SMALL_BATCH documents leaves it to a larger batch, until the rows hold twice
    the ids that make one due."""
    from docsieve.templates import SMALL_BATCH, SNAPSHOT_AFTER, ShingleCounts

    for since, documents, written in (
        (SNAPSHOT_AFTER * 3 // 2, 1, False),
        (SNAPSHOT_AFTER * 3 // 2, SMALL_BATCH, True),
        (SNAPSHOT_AFTER * 5 // 2, 1, True),
        (SNAPSHOT_AFTER // 2, SMALL_BATCH, False),
    ):
        counts, rows = ShingleCounts(3), _Rows(since)
        counts.catch_up(rows)  # type: ignore[arg-type]
        counts.since_snapshot, counts.last_seq = since, 5  # rows to 5 counted, none in a snapshot
        if since >= SNAPSHOT_AFTER:  # a process holding the counts already
            counts._counts = np.zeros(1 << (32 - 8), dtype=np.uint16)
        assert counts.snapshot_if_due(rows, documents) is written  # type: ignore[arg-type]
        assert rows.saved == written


def test_a_larger_snapshot_falls_due_after_as_many_bytes_of_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot grows as the counters fill (23.5 MB at 30,000 articles, 43 MB at 300,000), and each costs its
    compression and its write: the next falls due once the rows since hold as many bytes of ids as the last has (four
    bytes an id), never sooner than SNAPSHOT_AFTER ids. A process learns the size from the snapshot it reads or
    makes."""
    from docsieve import templates
    from docsieve.templates import SMALL_BATCH, ShingleCounts

    monkeypatch.setattr(templates, "SNAPSHOT_AFTER", 2_000)
    rng = np.random.default_rng(9)
    truth = ShingleCounts(boilerplate_texts=3)
    truth.add(rng.integers(0, 2**32, 1_000_000, dtype=np.uint64).astype(np.uint32))
    truth.since_snapshot, truth.last_seq, truth.snapshot_seq = 2_000, 3, 3  # a snapshot at 3 is the newest
    rows = _Snapshot(b"")
    assert truth.snapshot_if_due(rows)  # type: ignore[arg-type]
    size = len(rows.saved)
    assert size // 4 > 100 * 2_000 and truth.snapshot_bytes == size
    for counts in (truth, ShingleCounts(boilerplate_texts=3)):  # the process that made it; one that reads it
        rows = _Snapshot(rows.saved)
        counts.catch_up(rows)  # type: ignore[arg-type]
        counts.counts(np.zeros(1, dtype=np.uint32))  # read
        assert counts.snapshot_bytes == size
        counts.since_snapshot = size // 4 - 1
        assert not counts.snapshot_if_due(rows, SMALL_BATCH)  # type: ignore[arg-type]
        counts.since_snapshot = size // 4
        assert not counts.snapshot_if_due(rows, 1)  # type: ignore[arg-type]  # a small batch: twice as many
        assert counts.snapshot_if_due(rows, SMALL_BATCH)  # type: ignore[arg-type]
    # One that finds another's snapshot newer than its last makes none, and takes that one's size.
    other = ShingleCounts(boilerplate_texts=3)
    other.add(np.arange(10, dtype=np.uint32))
    other.last_seq, other.since_snapshot = 5, 2_000
    assert not other.snapshot_if_due(_Snapshot(rows.saved)) and other.snapshot_bytes == size  # type: ignore[arg-type]
    # A process that holds no counts (the ingest of one document) asks the store, reading no counts.
    for since, due in ((size // 4 - 1, False), (size // 4, True)):
        rows = _Rows(since)
        rows.newest_count_snapshot_size = lambda: size  # type: ignore[method-assign]
        idle = ShingleCounts(boilerplate_texts=3)
        idle.catch_up(rows)  # type: ignore[arg-type]
        assert idle.snapshot_due(rows, SMALL_BATCH) is due and not idle.read  # type: ignore[arg-type]


class _SnapshotRace:
    """Count rows 1-6 (one id each). The first read of the rows meets a snapshot at 4, written meanwhile by
    the lock holder, which took rows 1-3 with it; ``breaks``: the read that starts again from it fails once."""

    def __init__(self, breaks: bool = False) -> None:
        import zlib

        from docsieve.templates import BUCKET_SHIFT, ShingleCounts

        self.ids = {seq: np.array([seq << BUCKET_SHIFT], dtype=np.uint32) for seq in range(1, 7)}
        truth = ShingleCounts(boilerplate_texts=3)
        for seq in range(1, 5):
            truth.add(self.ids[seq])
        self.snapshot = (4, zlib.compress(truth._loaded().tobytes(), 1))
        self.written, self.breaks = False, breaks

    def newest_count_snapshot(self) -> int:
        return 4 if self.written else 0

    def count_snapshot(self, after_seq: int):
        if self.written and self.breaks and after_seq == 0:
            self.breaks = False
            raise ConnectionError("the store went away")
        return self.snapshot if self.written and after_seq < 4 else None

    def shingle_count_rows(self, after_seq: int):
        self.written = True  # the snapshot commits before this read: rows 1-3 are gone
        return [(seq, self.ids[seq].tobytes()) for seq in range(max(after_seq + 1, 4), 7)]

    def probe(self) -> np.ndarray:
        return np.concatenate(list(self.ids.values()))


def test_counts_read_while_a_snapshot_is_written_start_again_from_it() -> None:
    """Before the lock, a snapshot (written by the lock holder) can come between reading the snapshots and
    reading the rows, and take rows not read yet with it: the counts start again from that snapshot."""
    from docsieve.templates import ShingleCounts

    rows = _SnapshotRace()
    counts = ShingleCounts(boilerplate_texts=3)
    counts.catch_up(rows)
    assert counts.counts(rows.probe()).tolist() == [1] * 6 and counts.last_seq == 6


def test_counts_whose_read_fails_part_way_are_read_whole_next_time() -> None:
    """A read that fails once it has found a snapshot took rows it had not reached (a dropped connection, a
    time limit) leaves nothing half counted: the next read starts from the newest snapshot."""
    from docsieve.templates import ShingleCounts

    rows = _SnapshotRace(breaks=True)
    counts = ShingleCounts(boilerplate_texts=3)
    counts.catch_up(rows)
    with pytest.raises(ConnectionError):
        counts.counts(rows.probe())
    counts.catch_up(rows)
    assert counts.counts(rows.probe()).tolist() == [1] * 6 and counts.last_seq == 6


class _Snapshot:
    """A store holding one snapshot (at row 3) and no rows."""

    def __init__(self, blob: bytes) -> None:
        self.blob, self.saved = blob, b""

    def newest_count_snapshot(self) -> int:
        return 3

    def count_snapshot(self, after_seq: int):
        return (3, self.blob) if after_seq < 3 else None

    def shingle_count_rows(self, after_seq: int):
        return []

    def counted_since_snapshot(self) -> int:
        return 0

    def newest_count_snapshot_size(self) -> int:
        return len(self.blob)

    def save_count_snapshot(self, seq: int, blob: bytes | memoryview) -> bool:
        self.saved = bytes(blob)  # as the store keeps it
        return True


def test_snapshots_are_written_with_zstd_and_those_written_with_zlib_before_are_still_read() -> None:
    import zlib

    from docsieve.templates import SNAPSHOT_AFTER, WORD_ROW, ZSTD_FRAME, ShingleCounts, _day_parts, _joined, _parts

    rng = np.random.default_rng(8)
    shingles, words = rng.integers(0, 2**32, 5000, dtype=np.uint64).astype(np.uint32), np.arange(7, dtype=np.uint32)
    truth = ShingleCounts(boilerplate_texts=3)
    truth.add(shingles)
    truth.add_words(words << 10)
    old = _joined(zlib.compress(truth._loaded().tobytes(), 1), zlib.compress(truth._words.tobytes(), 1))
    for blob in (old, zlib.compress(truth._loaded().tobytes(), 1)):  # shingles and words; shingles alone
        counts = ShingleCounts(boilerplate_texts=3)
        rows = _Snapshot(blob)
        counts.catch_up(rows)  # type: ignore[arg-type]
        assert np.array_equal(counts.counts(shingles), truth.counts(shingles))
        assert counts.word_counts(words << 10).tolist() == ([1] * 7 if blob is old else [0] * 7)
        # This version's snapshot of the same counts: zstd, read back the same.
        counts.since_snapshot, counts.last_seq = SNAPSHOT_AFTER, 4
        assert counts.snapshot_if_due(rows)  # type: ignore[arg-type]
        old_days, days, rest = _day_parts(rows.saved)
        parts = _parts(rest, row=False)
        assert rest.startswith(WORD_ROW) is (blob is old)
        assert old_days is None and days is not None
        assert all(part.startswith(ZSTD_FRAME) for part in (days, *parts) if part is not None)
        again = ShingleCounts(boilerplate_texts=3)
        again.catch_up(_Snapshot(rows.saved))  # type: ignore[arg-type]
        assert np.array_equal(again.counts(shingles), truth.counts(shingles))
        assert again.word_counts(words << 10).tolist() == counts.word_counts(words << 10).tolist()


def test_a_snapshot_damaged_in_the_store_is_an_error_not_other_counts() -> None:
    """A byte of a zstd snapshot changed (shingles alone, or with words): reading it fails, as zlib's checksum
    made it fail, rather than starting every process from counts nobody counted."""
    import zstandard

    from docsieve.templates import SNAPSHOT_AFTER, ShingleCounts

    rng = np.random.default_rng(5)
    shingles = np.unique(rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32))
    for words in (False, True):
        truth = ShingleCounts(boilerplate_texts=3)
        truth.add(shingles)
        if words:
            truth.add_words(np.arange(5000, dtype=np.uint32) << 10)
        # counted past the store's snapshot at row 3, which it knows of: its own is due
        truth.since_snapshot, truth.last_seq, truth.snapshot_seq = SNAPSHOT_AFTER, 4, 3
        written = _Snapshot(b"")
        assert truth.snapshot_if_due(written)  # type: ignore[arg-type]
        blob = written.saved
        for at in range(16, len(blob), max(1, len(blob) // 40)):
            damaged = bytearray(blob)
            damaged[at] ^= 0x04
            counts = ShingleCounts(boilerplate_texts=3)
            counts.catch_up(_Snapshot(bytes(damaged)))  # type: ignore[arg-type]
            with pytest.raises(zstandard.ZstdError):
                counts.counts(shingles)


def _latest(counts, ids: np.ndarray) -> np.ndarray:
    """The latest day of each id's bucket (``ShingleCounts._days``' top half)."""
    assert counts._days is not None
    return counts._days[ids >> 8] >> 16


def _others(counts, ids: np.ndarray) -> np.ndarray:
    """How many ids of other days than its latest each id's bucket holds (``ShingleCounts._days``' bottom half)."""
    assert counts._days is not None
    return counts._days[ids >> 8] & 0xFFFF


def _one_text_a_day(ids: np.ndarray, *days: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The same ids held by one text of each day, as ``ShingleCounts.add`` takes several texts at once."""
    return np.tile(ids, len(days)), (np.array(days, dtype=np.uint16), np.full(len(days), len(ids)))


def test_wording_held_on_one_day_weighs_in_full_until_a_text_of_another_day_holds_it() -> None:
    """Six cuts of one release on its day: six texts hold its wording, which still weighs 1 (``across_days``); a
    seventh text a day later makes it a template's, weighed 3/7. Two texts of two days in one call, or one undated
    text, count as texts of other days at once; without ``across_days`` the counts alone weigh, as before days were
    kept."""
    from docsieve.templates import UNDATED, ShingleCounts, day_of

    day = day_of(datetime(2015, 7, 24, 6, 25, tzinfo=UTC))
    assert day_of(datetime(2015, 7, 24, 23, 59, tzinfo=UTC)) == day and day_of(None) == UNDATED
    release, two_days, undated = (np.arange(k << 20, (k << 20) + 50 * 256, 256, dtype=np.uint32) for k in (1, 2, 3))
    counts, plain = ShingleCounts(boilerplate_texts=3), ShingleCounts(boilerplate_texts=3, across_days=False)
    for c in (counts, plain):
        c.add(*_one_text_a_day(release, *[day] * 6))
        c.add(*_one_text_a_day(two_days, day, day, day, day + 1))
        c.add(np.tile(undated, 4))  # four undated texts
    assert counts.counts(release).tolist() == [6] * 50
    assert counts.weights(release).tolist() == [1.0] * 50
    assert np.allclose(plain.weights(release), 0.5, rtol=1e-3)  # the mean count a bucket, 0.00004, taken off
    for of_days in (two_days, undated):
        assert np.allclose(counts.weights(of_days), 3 / 4, rtol=1e-3)
        assert np.allclose(plain.weights(of_days), 3 / 4, rtol=1e-3)
    counts.add(*_one_text_a_day(release, day + 1))
    assert np.allclose(counts.weights(release), 3 / 7, rtol=1e-3)


class _CountRows:
    """A store's count rows and its newest snapshot (none: no snapshot)."""

    def __init__(self, rows: list[bytes], snapshot: bytes | None = None) -> None:
        self.rows, self.snapshot, self.saved = rows, snapshot, b""

    def newest_count_snapshot(self) -> int:
        return 0 if self.snapshot is None else 1

    def count_snapshot(self, after_seq: int):
        return (1, self.snapshot) if self.snapshot is not None and after_seq < 1 else None

    def shingle_count_rows(self, after_seq: int):
        return [(seq, row) for seq, row in enumerate(self.rows, start=2) if seq > after_seq]

    def save_count_snapshot(self, seq: int, blob: bytes | memoryview) -> bool:
        self.saved = bytes(blob)  # as the store keeps it
        return True

    def counted_since_snapshot(self) -> int:
        return 0


def test_the_days_persist_in_count_rows_and_snapshots_and_those_without_them_read_as_of_other_days() -> None:
    """Another process reads the days a row or a snapshot keeps, and the same weights; a row or snapshot written
    before days were kept (or by a worker of that version) says nothing of days: its texts count as of other days,
    weighed as they were then."""
    from docsieve.templates import SNAPSHOT_AFTER, UNDATED, ShingleCounts, counted_shingles

    rng = np.random.default_rng(4)
    texts = [np.unique(rng.integers(0, 2**32, 300, dtype=np.uint64).astype(np.uint32)) for _ in range(6)]
    texts[1] = np.union1d(texts[1], texts[0][:100])  # shares a third of the first text, a day later
    days = [40_000, 40_001, 40_001, 40_002, 40_002, 40_002]
    words = [np.arange(5, dtype=np.uint32) << 10 for _ in texts]
    truth = ShingleCounts(boilerplate_texts=3)
    truth.add(np.concatenate(texts), (np.array(days, dtype=np.uint16), np.array([len(t) for t in texts])))
    rows = [counted_shingles(texts[:3], words[:3], days[:3]), counted_shingles(texts[3:], (), days[3:])]
    counts = ShingleCounts(boilerplate_texts=3)
    counts.catch_up(_CountRows(rows))
    every = np.concatenate(texts)
    assert np.array_equal(counts._loaded(), truth._loaded())
    for kept in (counts, truth):
        assert kept._days is not None
    assert np.array_equal(counts._days, truth._days)
    shared = np.intersect1d(texts[0], texts[1])  # the first text's third, of two days
    assert not counts.of_one_day(shared).any() and counts.of_one_day(np.setdiff1d(every, shared)).all()
    assert counts.word_counts(words[0]).tolist() == [3] * 5
    # Its snapshot, read by a third process: the same days.
    saved = _CountRows([])
    counts.since_snapshot, counts.last_seq = SNAPSHOT_AFTER, 3
    assert counts.snapshot_if_due(saved)
    third = ShingleCounts(boilerplate_texts=3)
    third.catch_up(_CountRows([], snapshot=saved.saved))
    assert np.array_equal(third._loaded(), truth._loaded())
    assert third._days is not None and np.array_equal(third._days, truth._days)
    assert np.array_equal(third.weights(every), truth.weights(every))
    # Written without days: an old row (no day: none kept), an old snapshot (days unknown).
    old_row = ShingleCounts(boilerplate_texts=3)
    old_row.catch_up(_CountRows([np.concatenate(texts).tobytes()]))
    old_snapshot = ShingleCounts(boilerplate_texts=3)
    old_snapshot.catch_up(_CountRows([], snapshot=zstd_frame(truth._loaded().tobytes())))
    for old in (old_row, old_snapshot):
        assert np.array_equal(old._loaded(), truth._loaded()) and not old.of_one_day(every).any()
        plain = ShingleCounts(boilerplate_texts=3, across_days=False)
        plain.add(np.concatenate(texts))
        assert np.array_equal(old.weights(every), plain.weights(every))
    assert (_latest(old_snapshot, every) == UNDATED).all()


def test_a_snapshot_of_schema_0016_reads_as_latest_days_holding_all_of_a_buckets_texts() -> None:
    """Schema 0016's snapshots kept a bucket's day while all its texts were of it, else SPREAD: such a bucket's latest
    day is that day with the whole count of it, a spread one's is unknown. The same weights as the counts written so,
    and a text of a later day counted after it takes either bucket to its day, its earlier texts of other days."""
    from docsieve.templates import DAY_ROW, SNAPSHOT_AFTER, UNDATED, ShingleCounts

    release, series = (np.arange(k << 20, (k << 20) + 40 * 256, 256, dtype=np.uint32) for k in (1, 2))
    truth = ShingleCounts(boilerplate_texts=3)
    truth.add(*_one_text_a_day(release, *[40_000] * 6))
    truth.add(*_one_text_a_day(series, *range(40_000, 40_006)))
    assert truth._days is not None
    latest = truth._days >> 16
    old_days = np.where(latest == 40_005, UNDATED, latest).astype(np.uint16)  # as 0016 kept them
    days = zstd_frame(old_days.tobytes())
    counts = ShingleCounts(boilerplate_texts=3)
    snapshot = DAY_ROW + np.uint32(len(days)).tobytes() + days + zstd_frame(truth._loaded().tobytes())
    counts.catch_up(_CountRows([], snapshot=snapshot))
    assert counts.of_one_day(release).all() and not counts.of_one_day(series).any()
    every = np.concatenate([release, series])
    assert np.array_equal(counts.weights(every), truth.weights(every))
    assert (_others(counts, release) == 0).all() and (_others(counts, series) == 6).all()
    assert (_latest(counts, release) == 40_000).all() and (_latest(counts, series) == UNDATED).all()
    counts.add(*_one_text_a_day(np.concatenate([release, series]), 40_009))
    assert (_latest(counts, every) == 40_009).all()
    assert not counts.of_one_day(every).any()
    saved = _CountRows([])
    counts.since_snapshot, counts.last_seq = SNAPSHOT_AFTER, 3
    assert counts.snapshot_if_due(saved) and saved.saved.startswith(b"DSD2")  # written as this version's


def test_a_bucket_keeps_its_latest_day_and_texts_of_earlier_days_count_as_of_other_days() -> None:
    """Texts come in out of publication order (a backfill, a slow feed): a bucket keeps its latest day, with the
    count of other days' ids; a text of an earlier day counted after it adds to them, and one of a later day takes
    the bucket to its day, every id before of other days. A batch of two days counts the earlier first."""
    from docsieve.templates import ShingleCounts

    ids = np.arange(6 << 20, (6 << 20) + 30 * 256, 256, dtype=np.uint32)
    counts = ShingleCounts(boilerplate_texts=3)
    counts.add(*_one_text_a_day(ids, 40_010, 40_010))
    assert counts.of_one_day(ids).all()
    counts.add(*_one_text_a_day(ids, 40_008))  # an earlier day's text, counted later
    assert (_latest(counts, ids) == 40_010).all() and (_others(counts, ids) == 1).all()
    assert not counts.of_one_day(ids).any()
    counts.add(*_one_text_a_day(ids, 40_011, 40_011))  # a later day's: the bucket's day, the three before other days'
    assert (_latest(counts, ids) == 40_011).all() and (_others(counts, ids) == 3).all()
    counts.add(np.tile(ids, 2))  # two undated texts: of other days
    assert (_others(counts, ids) == 5).all() and not counts.of_one_day(ids).any()
    assert np.allclose(counts.weights(ids), 3 / 7, rtol=1e-3)
    counts.add(*_one_text_a_day(ids, 40_020, 40_019))  # one batch, the later day first
    assert (_latest(counts, ids) == 40_020).all() and (_others(counts, ids) == 8).all()


@pytest.mark.slow
def test_a_releases_wording_stays_of_one_day_in_a_store_grown_by_months_of_other_texts() -> None:
    """Buckets are shared: in a store that has counted 45 days of 1,400 articles (63 million ids, 3.75 in a bucket on
    average), nearly every bucket holds ids of many days. Six cuts of a release on one day still weigh their wording in
    full where at most the mean of other days' ids shares their buckets, about half of it (the days kept as 0016
    kept them, any other day's id spreading a bucket for good: none); a template's wording on six days does not."""
    from docsieve.templates import ShingleCounts

    rng = np.random.default_rng(17)
    counts = ShingleCounts(boilerplate_texts=3)
    per_day = 1400 * 1000
    for day in range(40_000, 40_045):
        counts.add(rng.integers(0, 2**32, per_day, dtype=np.uint64).astype(np.uint32), _texts_of(day, 1400, per_day))
    release = np.unique(rng.integers(0, 2**32, 600, dtype=np.uint64).astype(np.uint32))
    template = np.unique(rng.integers(0, 2**32, 600, dtype=np.uint64).astype(np.uint32))
    counts.add(*_one_text_a_day(release, *[40_045] * 6))
    counts.add(*_one_text_a_day(template, *range(40_040, 40_046)))
    assert counts._days is not None and counts._total / len(counts._days) > 3.5
    assert 0.4 < counts.of_one_day(release).mean() < 0.8
    assert counts.of_one_day(template).mean() < 0.02
    assert (counts.weights(release)[counts.of_one_day(release)] == 1.0).all()
    assert counts.weights(release).mean() > counts.weights(template).mean() + 0.1


def _texts_of(day: int, texts: int, ids: int) -> tuple[np.ndarray, np.ndarray]:
    """``texts`` texts of one day sharing ``ids`` ids evenly, as ``ShingleCounts.add`` takes them."""
    sizes = np.full(texts, ids // texts, dtype=np.int64)
    sizes[-1] += ids - int(sizes.sum())
    return np.full(texts, day, dtype=np.uint16), sizes


@pytest.mark.parametrize("snapshots", [False, True])
def test_the_process_that_stores_a_batch_and_one_that_reads_its_row_keep_the_same_days(
    tmp_path, monkeypatch, snapshots: bool
) -> None:
    """A process that holds the counts adds its own batch after the commit; another reads the batch's row (or, with
    ``snapshots``, a snapshot of the first's counts and the rows after it): both keep in each new text's buckets its
    own publication day (a batch of three days, a batch of one text), and nothing of a near copy's (not counted).
    The same counts, days and weights either way."""
    import docsieve.templates as templates
    from docsieve.models import RawDocument
    from docsieve.pipeline import Pipeline
    from docsieve.readers import Item
    from docsieve.settings import Settings
    from docsieve.store import Store
    from docsieve.templates import UNDATED, ShingleCounts, day_of

    if snapshots:
        monkeypatch.setattr(templates, "SNAPSHOT_AFTER", 300)  # ids: one due every batch or two
    settings = Settings(store=f"sqlite:///{tmp_path / 's.db'}", rewrites=False)
    rng = np.random.default_rng(12)
    vocabulary = [f"w{i}" for i in range(3000)]
    bodies = [" ".join(rng.choice(vocabulary, 200)) for _ in range(6)]
    docs = [RawDocument(f"d{i}", bodies[i], published=f"2026-03-{1 + 2 * i:02d}T09:00:00Z") for i in range(6)]
    copy = RawDocument("copy", f"{bodies[0]} w1 w2 w3", published="2026-03-30T09:00:00Z")  # a near copy of d0
    first = Pipeline(Store(settings.store), settings)
    with first.templates.bound(), first.store.writing() as txn:  # it holds the counts: adds its own batches
        first.templates.catch_up(txn)
        first.templates._loaded()
    batches: list[list[Item]] = [[*docs[:3]], [copy, docs[3], docs[4]], [docs[5]]]
    stored = [record for batch in batches for record in first.process(batch)]
    assert [r.status.value for r in stored] == ["canonical"] * 3 + ["duplicate"] + ["canonical"] * 3
    second = ShingleCounts(settings.boilerplate_texts)
    with second.bound(), first.store.writing() as txn:
        assert (txn.count_snapshot(0) is not None) is snapshots
        second.catch_up(txn)
        second._loaded()
        sketches = txn.sketches([r.id for r in stored], settings)
    mine = first.templates
    assert mine._days is not None and second._days is not None
    assert np.array_equal(mine._loaded(), second._loaded()) and np.array_equal(mine._days, second._days)
    every = np.concatenate([s.shingles for s in sketches.values()])
    assert np.array_equal(mine.weights(every), second.weights(every))
    for record in (r for r in stored if r.status.value == "canonical"):
        day = day_of(record.published_at)
        assert day != UNDATED and np.mean(_latest(mine, sketches[record.id].shingles) == day) > 0.9
    first.close()


def test_a_process_that_starts_from_a_snapshot_weighs_as_the_one_that_wrote_it() -> None:
    """The weights take the mean count of a bucket off (``weights``): a process that reads the counts from a
    snapshot takes the same mean off as the one that counted them, and weighs a shingle of six texts (of six days)
    exactly as it does."""
    from docsieve.templates import SNAPSHOT_AFTER, ShingleCounts

    rng = np.random.default_rng(13)
    six = np.arange(5 << 20, (5 << 20) + 40 * 256, 256, dtype=np.uint32)
    counts = ShingleCounts(boilerplate_texts=3)
    counts.add(rng.integers(0, 2**32, 2_000_000, dtype=np.uint64).astype(np.uint32))  # 0.12 a bucket
    counts.add(*_one_text_a_day(six, *range(40_000, 40_006)))
    saved = _CountRows([])
    counts.since_snapshot, counts.last_seq = SNAPSHOT_AFTER, 3
    assert counts.snapshot_if_due(saved)
    again = ShingleCounts(boilerplate_texts=3)
    again.catch_up(_CountRows([], snapshot=saved.saved))
    assert np.array_equal(again.weights(six), counts.weights(six)) and (counts.weights(six) < 0.6).all()


def test_a_process_that_starts_from_a_snapshot_weighs_as_the_one_that_counted_the_rows_past_the_cap() -> None:
    """A bucket counted past the cap (MOST) stops there, and the mean taken off the weights is that of the counters
    as they stand: a process that starts from a snapshot of them weighs a shingle exactly as the process that counted
    the rows (2M ids past the cap made them differ by 2%), so two workers weigh alike whatever they read."""
    from docsieve.templates import MOST, SNAPSHOT_AFTER, ShingleCounts, counted_shingles

    rng = np.random.default_rng(14)
    six = np.arange(5 << 20, (5 << 20) + 40 * 256, 256, dtype=np.uint32)
    boilerplate = np.full(60 * MOST, 7 << 24, dtype=np.uint32)  # one shingle of 60 MOST texts: 2M ids past the cap
    noise = rng.integers(0, 2**32, 1_000_000, dtype=np.uint64).astype(np.uint32)
    rows = [counted_shingles([boilerplate]), counted_shingles([noise]), counted_shingles([six] * 6)]
    counts = ShingleCounts(boilerplate_texts=3)
    counts.catch_up(_CountRows(rows))
    counts._loaded()
    saved = _CountRows([])
    counts.since_snapshot, counts.last_seq = SNAPSHOT_AFTER, 4
    assert counts.snapshot_if_due(saved)
    again = ShingleCounts(boilerplate_texts=3)
    again.catch_up(_CountRows([], snapshot=saved.saved))
    assert np.array_equal(again.weights(six), counts.weights(six))


class _BrokenRows(_CountRows):
    """Count rows (no snapshot) whose first read fails after its first row."""

    def __init__(self, rows: list[bytes]) -> None:
        super().__init__(rows)
        self.breaks = True

    def shingle_count_rows(self, after_seq: int):
        for seq, row in super().shingle_count_rows(after_seq):
            yield seq, row
            if self.breaks:
                self.breaks = False
                raise ConnectionError("the store went away")


def test_counts_whose_read_of_the_rows_fails_weigh_as_a_fresh_process_once_read_again() -> None:
    """With no snapshot to start again from, a read of the rows that fails part-way counts none of them twice, the
    mean a bucket taken off the weights and the words' counts included: the next read weighs as a process that read
    them once."""
    from docsieve.templates import ShingleCounts, counted_shingles

    rng = np.random.default_rng(15)
    six = np.arange(5 << 20, (5 << 20) + 40 * 256, 256, dtype=np.uint32)
    noise = rng.integers(0, 2**32, 1_000_000, dtype=np.uint64).astype(np.uint32)
    words = np.arange(3, dtype=np.uint32) << 10
    rows = [
        counted_shingles([noise], [words], [40_000]),
        counted_shingles([six] * 6, [words] * 6, list(range(40_000, 40_006))),
    ]
    fresh = ShingleCounts(boilerplate_texts=3)
    fresh.catch_up(_CountRows(rows))
    broken = _BrokenRows(rows)
    counts = ShingleCounts(boilerplate_texts=3)
    counts.catch_up(broken)
    with pytest.raises(ConnectionError):
        counts.weights(six)
    counts.catch_up(broken)
    assert np.array_equal(counts.weights(six), fresh.weights(six)) and (fresh.weights(six) < 0.6).all()
    assert counts.word_counts(words).tolist() == fresh.word_counts(words).tolist() == [7, 7, 7]


def test_a_text_of_the_first_day_kept_is_of_a_day_and_one_of_another_day_makes_its_wording_of_two() -> None:
    """Day 0 means no text counted in a bucket, so no text is of it (1900-01-01 is undated): a text of 1900-01-02 (the
    first day kept) is of a day, and with a text of another day its wording is of two days."""
    from docsieve.templates import UNDATED, ShingleCounts, day_of

    ids = np.arange(3 << 20, (3 << 20) + 30 * 256, 256, dtype=np.uint32)
    first, later = day_of(datetime(1900, 1, 2, 12, tzinfo=UTC)), day_of(datetime(2015, 7, 24, tzinfo=UTC))
    assert first == 1 and day_of(datetime(1900, 1, 1, 12, tzinfo=UTC)) == UNDATED
    counts = ShingleCounts(boilerplate_texts=3)
    counts.add(*_one_text_a_day(ids, first))
    assert counts.of_one_day(ids).all()
    counts.add(*_one_text_a_day(ids, later))
    assert (_latest(counts, ids) == later).all() and not counts.of_one_day(ids).any()


def test_texts_dated_outside_the_days_kept_count_as_undated() -> None:
    """Dates the uint16 days cannot hold (before 1900, from mid-2079; parse_published takes 1800-2200) are no day,
    as an undated text's (UNDATED): clamped to the first or the last day kept, texts of many years apart would be
    of one day, and their shared wording would weigh in full however many of them hold it."""
    from docsieve.templates import UNDATED, ShingleCounts, day_of

    assert [day_of(datetime(year, 6, 1, tzinfo=UTC)) for year in (1850, 1899, 2080, 2199)] == [UNDATED] * 4
    ids = np.arange(3 << 20, (3 << 20) + 30 * 256, 256, dtype=np.uint32)
    counts = ShingleCounts(boilerplate_texts=3)
    counts.add(*_one_text_a_day(ids, *(day_of(datetime(year, 1, 1, tzinfo=UTC)) for year in range(1850, 1856))))
    assert np.allclose(counts.weights(ids), 3 / 6, rtol=1e-3)


def test_a_row_written_without_days_whose_first_id_is_the_day_mark_is_read_as_ids() -> None:
    """A row of ids alone (written before days were kept) whose first id is DAY_ROW's very number: its
    sizes do not add up to the ids after them, so it is read as ids, every one counted, of no day."""
    from docsieve.templates import DAY_ROW, ShingleCounts

    rng = np.random.default_rng(16)
    ids = rng.integers(0, 2**32, 300, dtype=np.uint64).astype(np.uint32)
    ids[0], ids[1] = np.frombuffer(DAY_ROW, dtype=np.uint32)[0], 2
    counts = ShingleCounts(boilerplate_texts=3)
    counts.catch_up(_CountRows([ids.tobytes()]))
    truth = ShingleCounts(boilerplate_texts=3)
    truth.add(ids)
    assert np.array_equal(counts._loaded(), truth._loaded())
    assert (_latest(counts, ids) == 0).all() and not counts.of_one_day(ids).any()


def test_a_bucket_of_unknown_days_is_never_of_one_day_and_a_dated_text_makes_all_its_ids_before_of_other_days() -> None:
    """A snapshot written before days were kept, of a grown store (two ids a bucket on average): a bucket's days are
    unknown, not of one day even where it holds fewer ids than the mean. A text of a day counted after it takes the
    bucket to its day with every id counted before of other days, and no more; a bucket holding exactly the mean
    count of a bucket of other days' ids still reads as of one day (at most the mean)."""
    from docsieve.templates import UNDATED, ShingleCounts

    held = np.full(1 << 24, 2, dtype=np.uint16)
    low = np.arange(7 << 20, (7 << 20) + 30 * 256, 256, dtype=np.uint32)
    target = np.arange(8 << 20, (8 << 20) + 30 * 256, 256, dtype=np.uint32)
    held[low >> 8] = 1  # 30 ids fewer than two a bucket: one text of 30 ids makes the mean exactly 2
    counts = ShingleCounts(boilerplate_texts=3)
    counts.catch_up(_CountRows([], snapshot=zstd_frame(held.tobytes())))
    assert not counts.of_one_day(low).any()  # 1 id a bucket, under the mean: still days unknown
    assert counts._total / 2**24 < 2 and (_latest(counts, low) == UNDATED).all()
    counts.add(*_one_text_a_day(target, 40_000))
    assert counts._total == 2 * 2**24
    assert (_latest(counts, target) == 40_000).all() and (_others(counts, target) == 2).all()
    assert counts.of_one_day(target).all() and (counts.weights(target) == 1.0).all()
    assert not counts.of_one_day(low).any()


def test_a_bucket_keeps_its_latest_day_when_its_ids_of_other_days_reach_the_cap() -> None:
    """A bucket's ids of other days stop at MOST as its count does, in the bottom half of its days: its latest day in
    the top half is kept, neither cleared nor carried into, however many are counted in one call."""
    from docsieve.templates import MOST, ShingleCounts

    bucket = np.uint32(11 << 24)
    counts = ShingleCounts(boilerplate_texts=3)
    counts.add(*_one_text_a_day(np.array([bucket]), 40_010))
    counts.add(np.full(3 * MOST + 5, bucket, dtype=np.uint32))  # undated: of other days, past the cap, in one call
    counts.add(np.full(MOST, bucket, dtype=np.uint32))  # and again at the cap
    counts.add(*_one_text_a_day(np.full(MOST, bucket, dtype=np.uint32), 40_009))  # of an earlier day
    one = np.array([bucket])
    assert _latest(counts, one).tolist() == [40_010] and _others(counts, one).tolist() == [MOST]
    counts.add(*_one_text_a_day(one, 40_011))
    assert _latest(counts, one).tolist() == [40_011] and _others(counts, one).tolist() == [MOST]
