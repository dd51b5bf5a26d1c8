"""The candidate index protocol (docsieve/index.py): the embedded index and the shared one agree."""

from __future__ import annotations

import json
import os
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from docsieve.fingerprint import SAMPLE_TAG
from docsieve.index import (
    DAY,
    LONE_PHRASE_RECORDS,
    PARTS,
    SKETCH_WIDTH,
    UNKNOWN_SKETCH,
    MemoryIndex,
    SegmentIndex,
    sketch_row,
)
from worker.redis_index import RedisIndex


def test_memory_and_redis_indexes_find_the_same_candidates(redis_index: RedisIndex) -> None:
    rng = np.random.default_rng(3)
    records = [np.unique(rng.integers(0, 500, size=40, dtype=np.int64)) for _ in range(60)]
    ids = [f"r{i}" for i in range(60)]
    memory = MemoryIndex()
    for start in range(0, 60, 7):  # several batches: several segments in memory
        memory.add(ids[start : start + 7], records[start : start + 7], start + 7, [0] * len(ids[start : start + 7]))
        redis_index.lookup(records[start : start + 7], 0, stage_ids=ids[start : start + 7])
        redis_index.add(ids[start : start + 7], records[start : start + 7], last_seq=start + 7)
    queries = [np.unique(rng.integers(0, 500, size=30, dtype=np.int64)) for _ in range(10)]
    found_memory = memory.candidates([np.unique(q) for q in queries], limit=5)
    found_redis, _ = redis_index.lookup(queries, limit=5)
    for a, b, q in zip(found_memory, found_redis, queries, strict=True):
        shared = {rid: len(set(q.tolist()) & set(records[int(rid[1:])].tolist())) for rid in set(a) | set(b)}
        # The same records, up to ties in the number of shared keys.
        assert sorted(shared[r] for r in a) == sorted(shared[r] for r in b)


class Rows:
    """A store's index rows, as the index reads them (docsieve/index.py's StoredRows), counting what is read."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, bytes, int, int, bytes | None]] = []
        self.read = 0

    def put(self, index: SegmentIndex, keys: list[list[int]], when: int = DAY * 20_000, arrived: int | None = None):
        """Store records with these keys, published ``when`` and stored at ``arrived`` (by default the same), and
        as the pipeline does, hand the batch to the index."""
        index.catch_up(self)  # the batch's turn under the lock: what the last one added is written
        first = len(self.rows) + 1
        ids = [f"{first + i:020x}" for i in range(len(keys))]
        arrived = when if arrived is None else arrived
        arrays = [np.array(k, dtype=np.int64) for k in keys]
        for i, (record_id, array) in enumerate(zip(ids, arrays, strict=True)):
            self.rows.append((first + i, record_id, array.tobytes(), when, arrived, None))
        index.add(ids, arrays, len(self.rows), [when] * len(ids), first_seq=first, arrived=arrived)
        return ids

    def index_rows(self, after_seq: int):
        for row in self.rows[after_seq:]:
            self.read += 1
            yield row

    def id_at(self, seq: int) -> str | None:
        return self.rows[seq - 1][1] if 0 < seq <= len(self.rows) else None

    def last_seq(self) -> int:
        return len(self.rows)


def test_the_index_files_open_in_a_new_process_without_reading_the_store(tmp_path: Path) -> None:
    rows, index = Rows(), SegmentIndex(tmp_path / "index")
    ids = [
        rid
        for start in range(0, 300, 50)
        for rid in rows.put(index, [[k, 10_000 + k] for k in range(start, start + 50)])
    ]
    index.flush(rows)
    files = sorted(p.name for p in (tmp_path / "index").glob("s*"))
    assert len(files) == 2 * len(PARTS)  # six batches merged as a binary counter: 4 + 2    rows.read = 0
    again = SegmentIndex(tmp_path / "index")
    again.catch_up(rows)
    assert rows.read == 0  # nothing read back: the files are complete
    found, complete_to = again.lookup([np.array([7, 10_007]), np.array([299])], limit=5)
    assert found == [[ids[7]], [ids[299]]] and complete_to == 300


def test_a_lookup_hands_over_the_sketches_of_its_candidates_from_the_files(tmp_path: Path) -> None:
    """Records added with their sketches keep them in the files, and so do records caught up from the store's
    rows (another process's, a rebuild): a lookup in another process hands them over with the candidates (no
    read of the store). A record stored without one (before sketches were kept) has none."""
    rows, index = Rows(), SegmentIndex(tmp_path / "index")
    shingles = [np.arange(10 + i, dtype=np.uint32) for i in range(3)]
    minima = [np.full(128, 7 + i, dtype=np.uint32) for i in range(3)]
    sketches = [sketch_row(shingles[i], minima[i]) for i in range(3)]
    index.catch_up(rows)
    ids = [f"{i + 1:020x}" for i in range(4)]
    for i, record_id in enumerate(ids[:2]):
        key = np.array([5, 100 + i], dtype=np.int64).tobytes()
        rows.rows.append((i + 1, record_id, key, DAY, DAY, sketches[i].tobytes()))
    index.add(
        ids[:2], [np.array([5, 100]), np.array([5, 101])], 2, [DAY] * 2, first_seq=1, arrived=DAY, sketches=sketches[:2]
    )
    index.flush(rows)
    # Another process's records, read from the store's rows: one with its sketch, one stored without.
    rows.rows.append((3, ids[2], np.array([5, 102], dtype=np.int64).tobytes(), DAY, DAY, sketches[2].tobytes()))
    rows.rows.append((4, ids[3], np.array([5, 103], dtype=np.int64).tobytes(), DAY, DAY, None))
    for step in ("caught up", "rebuilt"):
        again = SegmentIndex(tmp_path / "index")
        again.catch_up(rows) if step == "caught up" else again.rebuild(rows)
        found, _ = again.lookup([np.array([5])], limit=5)
        assert sorted(found[0]) == sorted(ids), step
        summaries = again.summaries(ids)
        assert sorted(summaries) == ids[:3], step
        for i in range(3):
            size, kept = summaries[ids[i]]
            assert size == len(shingles[i]) and np.array_equal(kept, minima[i]), step


def test_a_small_read_of_sketch_rows_from_the_files_gives_each_row_whole(tmp_path: Path) -> None:
    """Rows of a wide part read from the file, close together (one read) and far apart (one read each)."""
    rows, index = Rows(), SegmentIndex(tmp_path / "index")
    index.catch_up(rows)
    count = 200
    ids = [f"{i + 1:020x}" for i in range(count)]
    for i, record_id in enumerate(ids):
        rows.rows.append((i + 1, record_id, np.array([5, 100 + i], dtype=np.int64).tobytes(), DAY, DAY, None))
    kept = [sketch_row(np.arange(10 + i, dtype=np.uint32), np.full(128, i, dtype=np.uint32)) for i in range(count)]
    keys = [np.array([5, 100 + i]) for i in range(count)]
    index.add(ids, keys, count, [DAY] * count, first_seq=1, arrived=DAY, sketches=kept)
    index.flush(rows)
    again = SegmentIndex(tmp_path / "index")
    again.catch_up(rows)
    (segment,) = again._segments
    for at in (np.array([3, 4]), np.array([0, 150, 199])):
        read = segment.take("sketches", at, SKETCH_WIDTH)
        assert read.shape == (len(at), SKETCH_WIDTH)
        assert all(np.array_equal(read[j], kept[a]) for j, a in enumerate(at.tolist()))


def test_a_batch_lookup_reads_its_candidates_through_the_mappings_and_finds_what_lookups_one_by_one_find(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-document lookup reads the few entries it needs from the files (no large folio mapped for them); a
    batch's goes through the mappings: before, each of its candidates' ids was read by a system call of its own
    (15,000 a batch in a 300,000-record store). Both find the same candidates."""
    rows, index = Rows(), SegmentIndex(tmp_path / "index", window_days=30)
    rng = np.random.default_rng(7)
    pool = rng.integers(1, 1 << 40, size=30_000)
    stored = [rng.choice(pool, size=60, replace=False).tolist() for _ in range(10_000)]  # a segment of 8,000
    for start in range(0, len(stored), 1_000):
        rows.put(index, stored[start : start + 1_000])
    index.flush(rows)
    again = SegmentIndex(tmp_path / "index", window_days=30)
    again.catch_up(rows)
    assert not again.resident and len(again._segments) >= 1
    queries = [rng.choice(pool, size=120, replace=False) for _ in range(40)]  # 4,800 keys: more than FEW
    read_from: list[str] = []  # the part of a segment each read was of (its file's suffix)
    places: list[tuple[str, int]] = []  # and where in which file
    real_pread = os.pread

    def pread(fd: int, size: int, offset: int) -> bytes:
        path = os.readlink(f"/proc/self/fd/{fd}")
        read_from.append(path.rsplit(".", 1)[1])
        places.append((path, offset))
        return real_pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", pread)
    when = [DAY * 20_000] * len(queries)  # as the stored records: the window is checked, their times read
    batch, _ = again.lookup(queries, limit=32, times=when)
    # and a batch of mostly new text: many keys, few hits, few candidates (each part's few entries) all the same
    fresh = [rng.integers(1 << 41, 1 << 42, size=120) for _ in range(39)] + [queries[0]]
    few, _ = again.lookup(fresh, limit=8, times=when)
    assert few[:39] == [[]] * 39 and len(few[39]) == 8 and set(few[39]) <= set(batch[0])
    assert read_from == []
    one_by_one = []
    for q, t in zip(queries, when, strict=True):
        places.clear()
        one_by_one.append(again.lookup([q], limit=32, times=[t])[0][0])
        keys_read = [place for place in places if place[0].endswith(".keys")]
        assert keys_read and len(set(keys_read)) == len(keys_read)  # each block of keys read once, for both ends
    assert {"keys", "owners", "times", "ids", "sketches"} <= set(read_from)  # the small lookups read the files
    assert batch == one_by_one and sum(map(len, batch)) > 40 * 10
    # (The code before read a batch's scattered candidates one entry a call: hundreds of reads here.)


def resident_kb(directory: Path) -> int:
    """KB of this process's memory that are pages of files in ``directory`` (Linux's /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            inside = len(fields) >= 6 and fields[5].startswith(str(directory))
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


@pytest.mark.slow
def test_a_batch_lookup_gives_back_the_pages_of_the_files_it_searched(tmp_path: Path) -> None:
    """The pages a batch's lookup touches stay in the page cache but leave the process: its memory does not
    grow to the size of the index as batches touch it."""
    rows, index = Rows(), SegmentIndex(tmp_path / "index")
    rng = np.random.default_rng(3)
    for _ in range(4):
        rows.put(index, [rng.integers(0, 1 << 40, 60).tolist() for _ in range(5000)])
    index.flush(rows)
    again = SegmentIndex(tmp_path / "index")
    queries = [rng.integers(0, 1 << 40, 60) for _ in range(512)]
    queries[0][:3] = np.frombuffer(rows.rows[7][2], dtype=np.int64)[:3]
    found, _ = again.lookup(queries, limit=5)
    assert found[0] == [rows.rows[7][1]]  # it read the files
    assert resident_kb(tmp_path / "index") < 256, resident_kb(tmp_path / "index")  # of some 18 MB of files


def test_the_files_are_built_again_when_they_disagree_with_the_store(tmp_path: Path) -> None:
    rows, index = Rows(), SegmentIndex(tmp_path / "index")
    rows.put(index, [[1], [2]])
    index.flush(rows)
    other = Rows()  # another store (the file replaced) whose records have other ids at the same places
    ids = ["a" * 20, "b" * 20, "c" * 20]
    other.rows = [(i + 1, rid, np.array([i + 1], dtype=np.int64).tobytes(), 0, 0, None) for i, rid in enumerate(ids)]
    again = SegmentIndex(tmp_path / "index")
    again.catch_up(other)
    assert again.lookup([np.array([1]), np.array([3])], limit=5)[0] == [[ids[0]], [ids[2]]]


def test_every_record_with_a_key_is_a_candidate_however_many_came_before() -> None:
    # The ninth and later records with a key used to be dropped (eight postings a key): an original stored
    # after its keys filled up was never found for its own copy.
    rows, index = Rows(), MemoryIndex()
    ids = rows.put(index, [[5, 100 + i] for i in range(40)])
    found, _ = index.lookup([np.array([5, 139])], limit=50)
    assert found[0][0] == ids[39] and sorted(found[0]) == sorted(ids)


def test_keys_held_by_more_records_than_common_are_skipped_and_records_found_by_their_others() -> None:
    rows, index = Rows(), MemoryIndex(common=10)
    ids = rows.put(index, [[5, 100 + i] for i in range(11)])
    assert index.lookup([np.array([5])], limit=50)[0] == [[]]
    assert index.lookup([np.array([5, 103])], limit=50)[0] == [[ids[3]]]
    below = MemoryIndex(common=11)
    Rows().put(below, [[5, 100 + i] for i in range(11)])
    assert len(below.lookup([np.array([5])], limit=50)[0][0]) == 11


def test_a_phrase_many_records_hold_is_no_candidate_on_its_own() -> None:
    """A winnowed key (a phrase) held by more than LONE_PHRASE_RECORDS records finds a record only beside a
    second shared key; a rare phrase, or an LSH band key however common, finds it alone."""
    phrase, rare, band = int(SAMPLE_TAG) | 7, int(SAMPLE_TAG) | 8, 9
    many = LONE_PHRASE_RECORDS + 1
    rows, index = Rows(), MemoryIndex()
    stock = rows.put(index, [[phrase, 100 + i] for i in range(many)])
    assert index.lookup([np.array([phrase, 1])], limit=50)[0] == [[]]
    assert index.lookup([np.array([phrase, 102])], limit=50)[0] == [[stock[2]]]  # a second key: a candidate
    banded = rows.put(index, [[band, 200 + i] for i in range(many)])
    assert sorted(index.lookup([np.array([band])], limit=50)[0][0]) == sorted(banded)
    held_by_few = rows.put(index, [[rare, 300 + i] for i in range(LONE_PHRASE_RECORDS)])
    assert sorted(index.lookup([np.array([rare])], limit=50)[0][0]) == sorted(held_by_few)


def test_the_window_bounds_candidates_by_time_and_an_undated_document_sees_the_whole_index(tmp_path: Path) -> None:
    rows, index = Rows(), SegmentIndex(tmp_path / "index", window_days=10)
    early = rows.put(index, [[1, 2]], when=100 * DAY)
    late = rows.put(index, [[1, 3]], when=118 * DAY)
    found, _ = index.lookup([np.array([1]), np.array([1]), np.array([1])], 5, times=[101 * DAY, 116 * DAY, None])
    assert found[0] == early and found[1] == late and sorted(found[2]) == sorted(early + late)


def test_a_segment_out_of_a_querys_window_is_not_searched_and_its_records_make_no_key_common(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query's keys are searched only in the segments holding a record within its window, so a key's
    commonness is counted among their records: a stock key that older news holds many times still finds this
    window's record; an undated query meets every segment and finds the key common."""
    from docsieve.index import _Segment

    rows, index = Rows(), SegmentIndex(tmp_path / "index", window_days=10, common=3)
    old = rows.put(index, [[5, 100 + i] for i in range(4)], when=100 * DAY, arrived=120 * DAY)
    index.flush(rows)
    recent = rows.put(index, [[5, 200]], when=115 * DAY, arrived=120 * DAY)
    index.flush(rows)
    assert [s.spans["dated"] for s in index._segments] == [[100 * DAY] * 2, [115 * DAY] * 2]
    searched: list[int] = []
    search = _Segment.search
    monkeypatch.setattr(_Segment, "search", lambda self, keys: searched.append(len(keys)) or search(self, keys))
    assert index.lookup([np.array([5])], 5, times=[116 * DAY])[0] == [recent]
    assert searched == [1]  # the older segment was not searched
    assert index.lookup([np.array([5])], 5, times=[None])[0] == [[]]  # 5 records hold it: common
    # The edge of the window, as the candidates' own times are held to it: the older segment is searched.
    assert index.lookup([np.array([101])], 5, times=[110 * DAY])[0] == [[old[1]]]
    assert index.lookup([np.array([101])], 5, times=[110 * DAY + 1])[0] == [[]]
    # A batch of both: each query's keys are searched where its own window reaches.
    searched.clear()
    assert index.lookup([np.array([5]), np.array([101])], 5, times=[116 * DAY, 105 * DAY])[0] == [recent, [old[1]]]
    assert searched == [1, 2]


def test_records_two_windows_older_than_the_newest_are_forgotten_by_their_own_clock(tmp_path: Path) -> None:
    rows, index = Rows(), SegmentIndex(tmp_path / "index", window_days=1)
    # Dated records go by publication (an archive backfilled today is a year of news, not a day of it)...
    old = rows.put(index, [[1, 2], [3]], when=10 * DAY, arrived=100 * DAY)
    rows.put(index, [[1, 4]], when=11 * DAY, arrived=100 * DAY)  # within two windows: nothing goes
    undated = rows.put(index, [[1, 6]], when=100 * DAY)  # no publication time: its arrival is its time
    index.flush(rows)
    assert index.size()[0] == 4
    new = rows.put(index, [[1, 5]], when=13 * DAY, arrived=101 * DAY)
    index.flush(rows)
    found = index.lookup([np.array([1])], 5)[0][0]
    assert old[0] not in found and new[0] in found and undated[0] in found  # an undated page pushes nothing out
    # ... and records without a publication time by arrival.
    rows.put(index, [[7]], when=103 * DAY)
    index.flush(rows)
    again = SegmentIndex(tmp_path / "index", window_days=1)
    found = again.lookup([np.array([1])], 5)[0][0]
    assert undated[0] not in found and new[0] in found
    assert not list((tmp_path / "index").glob("*.tmp"))


def test_a_lost_file_makes_the_next_catch_up_build_the_files_again(tmp_path: Path) -> None:
    rows, index = Rows(), SegmentIndex(tmp_path / "index")
    ids = rows.put(index, [[1, 2], [3]])
    index.flush(rows)
    next((tmp_path / "index").glob("*.keys")).unlink()
    again = SegmentIndex(tmp_path / "index")
    assert again.lookup([np.array([3])], 5)[0] == [[]]  # nothing it can trust: it says so by its number
    assert again.last_seq == 0
    again.catch_up(rows)
    assert again.lookup([np.array([3])], 5) == ([[ids[1]]], 2)
    assert len(list((tmp_path / "index").glob("s*"))) == len(PARTS)  # the old files went with the rebuild


def test_a_mapped_segment_is_searched_through_its_fence_as_numpy_would() -> None:
    """A few keys (read block by block from the files) and a batch's many (searched through the mapping), keys
    that run over several blocks and keys before the first and after the last included."""
    from docsieve.index import FENCE, FEW, _Segment

    rng = np.random.default_rng(0)
    for n in (0, 1, 5, FENCE - 1, FENCE, FENCE + 1, 5000, 20 * FENCE):
        keys = np.sort(rng.integers(0, 3000, n)).astype(np.int64)
        one = np.array([b"x" * 20])
        segment = _Segment(
            keys, np.zeros(n, np.int32), one, np.zeros(1, np.int64), np.zeros(1, np.int64), UNKNOWN_SKETCH
        )
        segment.fence = keys[::FENCE].copy()
        for many in (500, 2 * FEW):
            asked = np.sort(rng.integers(-5, 3005, many)).astype(np.int64)
            left, right = segment.search(asked)
            assert (left == np.searchsorted(keys, asked, "left")).all()
            assert (right == np.searchsorted(keys, asked, "right")).all()


def test_a_process_reads_segments_another_merged_away_since_it_opened_them(tmp_path: Path) -> None:
    rows, writer = Rows(), SegmentIndex(tmp_path / "index")
    first = rows.put(writer, [[1, 2]])
    writer.flush(rows)
    reader = SegmentIndex(tmp_path / "index")  # opens (maps) the files as they are now
    rows.put(writer, [[3, 4]])
    writer.flush(rows)  # equal segments merge: the reader's files are deleted
    assert not (tmp_path / "index" / f"{reader._segments[0].name}.keys").exists()
    assert reader.candidates([np.array([1])], 5) == [first]  # read through the mapping it still holds


def test_merging_two_segments_is_the_stable_sort_of_both() -> None:
    """The linear merge (places by search, each array written once) gives what concatenating both segments
    and sorting them stably gives: equal keys keep the older segment's postings first, each in its own order;
    keys shared within and across segments, empty segments and one-sided runs included."""
    from docsieve.index import _merged, _segment

    rng = np.random.default_rng(5)
    for trial in range(60):
        made = []
        for start in (0, 1000):
            records = int(rng.integers(0, 30))
            keys = [rng.integers(0, 40 if trial % 2 else 10**6, size=int(rng.integers(0, 12))) for _ in range(records)]
            ids = [f"r{start + i}" for i in range(records)]
            made.append(_segment(ids, [k.astype(np.int64) for k in keys], [1] * records, [1] * records, start))
        older, newer = made
        merged = _merged(older, newer, None)
        keys = np.concatenate((older.keys, newer.keys))
        owners = np.concatenate((older.owners, newer.owners + np.int32(len(older.ids))))
        order = np.argsort(keys, kind="stable")
        assert merged.keys.dtype == np.int64 and merged.owners.dtype == np.int32
        assert np.array_equal(merged.keys, keys[order]) and np.array_equal(merged.owners, owners[order]), trial
        assert list(merged.ids) == [*older.ids, *newer.ids]
        for part in ("times", "arrived", "sketches"):
            assert np.array_equal(getattr(merged, part), np.concatenate((getattr(older, part), getattr(newer, part))))


@pytest.mark.parametrize("window", [False, True], ids=["all kept", "some past the horizon"])
def test_a_merge_into_files_a_run_at_a_time_writes_what_the_merge_in_memory_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: bool
) -> None:
    """The files' merge cuts both segments into runs of a few postings (here 7, so that runs of one key cross
    the cuts, and keys shared by both segments fall on them) and writes each run as it is merged: its files
    hold what the merge of the whole in memory holds, fence included, and with a horizon the same records are
    dropped and the owners numbered the same."""
    import docsieve.index as index_module
    from docsieve.index import FENCE, Horizon, _merged, _segment

    monkeypatch.setattr(index_module, "MERGE_RUN", 7)
    rng = np.random.default_rng(11)
    for trial in range(8):
        made = []
        for start in (0, 1000):
            records = int(rng.integers(1, 60))
            keys = [rng.integers(0, 50 if trial % 2 else 10**6, size=int(rng.integers(0, 40))) for _ in range(records)]
            times = [int(t) for t in rng.integers(0, 100, size=records)]
            ids = [f"r{start + i}" for i in range(records)]
            sketches = [rng.integers(0, 1 << 32, size=SKETCH_WIDTH, dtype=np.uint32) for _ in range(records)]
            made.append(_segment(ids, [k.astype(np.int64) for k in keys], times, times, start + records, sketches))
        index = SegmentIndex(tmp_path / f"index-{trial}")
        index.directory.mkdir()  # type: ignore[union-attr]
        older, newer = (index._written(segment) for segment in made)
        horizon = Horizon(None, 50) if window else None  # undated records stored before 50 go
        expected = _merged(made[0], made[1], horizon)
        assert window == (len(expected.ids) < len(made[0].ids) + len(made[1].ids)), trial  # the horizon cut some
        merged = index._merged_in_files(older, newer, horizon)
        assert _on_file(merged.keys) and len(merged.keys) > 3 * 7, trial
        for part in ("keys", "owners", "ids", "times", "arrived", "sketches"):
            assert np.array_equal(getattr(merged, part), getattr(expected, part)), (trial, part)
        assert np.array_equal(merged.fence, expected.keys[::FENCE]), trial
        assert merged.spans == expected.spans and merged.last_seq == expected.last_seq, trial


def test_a_merge_into_files_keeps_a_fence_entry_every_fence_keys_across_its_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs of a length that is not a multiple of the fence's: the fence read back is every FENCE-th key of the
    merged whole, as a segment written at once has, and a few keys are found through it."""
    import docsieve.index as index_module
    from docsieve.index import FENCE, _segment

    monkeypatch.setattr(index_module, "MERGE_RUN", FENCE // 3 + 1)
    rng = np.random.default_rng(3)
    index = SegmentIndex(tmp_path / "index")
    index.directory.mkdir()  # type: ignore[union-attr]
    made = []
    for start in (0, 500):
        keys = [rng.integers(0, 10**9, size=20).astype(np.int64) for _ in range(500)]
        made.append(index._written(_segment([f"r{start + i}" for i in range(500)], keys, [1] * 500, [1] * 500, start)))
    merged = index._merged_in_files(made[0], made[1], None)
    assert len(merged.fence) == -(-20_000 // FENCE) and np.array_equal(merged.fence, merged.keys[::FENCE])
    probe = np.sort(np.asarray(made[1].keys[::997]))
    assert np.array_equal(merged._fenced(probe)[0], np.searchsorted(merged.keys, probe, "left"))


def test_a_merge_cuts_both_segments_into_runs_of_bounded_length_in_the_merged_order() -> None:
    """``_merge_runs``: the runs cover both key arrays in order, none holds more than ``most`` keys of either
    beyond the postings of its last key, every key of a run is at most every key of the next, and a key on a
    cut has all its older postings before any newer one."""
    from docsieve.index import _merge_runs

    rng = np.random.default_rng(8)
    for trial in range(200):
        older, newer = (np.sort(rng.integers(0, int(rng.integers(1, 60)), size=int(rng.integers(0, 80)))) for _ in "ab")
        most = int(rng.integers(1, 12))
        runs = list(_merge_runs(older, newer, most))
        assert [r[0].start for r in runs[1:]] == [r[0].stop for r in runs[:-1]], trial
        assert [r[1].start for r in runs[1:]] == [r[1].stop for r in runs[:-1]], trial
        assert (runs[-1][0].stop, runs[-1][1].stop) == (len(older), len(newer)) if runs else not len(older) + len(newer)
        for o, n in runs:
            assert o.stop > o.start or n.stop > n.start, trial
            last = max(older[o].max(initial=-1), newer[n].max(initial=-1))
            for part in (older[o], newer[n]):
                assert len(part[part < last]) < most, trial
        for (o, n), (o2, n2) in pairwise(runs):
            assert max(older[o].max(initial=-1), newer[n].max(initial=-1)) <= min(
                older[o2].min(initial=99), newer[n2].min(initial=99)
            )
            assert not set(newer[n].tolist()) & set(older[o2].tolist()), trial  # older postings of a key come first


def test_a_batch_searches_a_mapped_segment_a_part_at_a_time_and_gives_its_pages_back_between_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many sorted keys (a batch's) are searched in a mapped segment SEARCH_PART at a time, the keys' pages given
    back after each part (searched whole, a batch held every page of the largest segments' keys at once: 190 MB
    of a lookup's peak at 1,000,000 records), and each key's start and end are those of a search of the whole,
    keys found, not found, past the ends and repeated on the parts' cuts alike."""
    import docsieve.index as index_module
    from docsieve.index import _segment

    monkeypatch.setattr(index_module, "SEARCH_PART", 7)
    monkeypatch.setattr(index_module, "FEW", 10)
    rng = np.random.default_rng(2)
    index = SegmentIndex(tmp_path / "index")
    index.directory.mkdir()  # type: ignore[union-attr]
    keys = [rng.integers(0, 300, size=8).astype(np.int64) for _ in range(40)]
    segment = index._written(_segment([f"r{i}" for i in range(40)], keys, [1] * 40, [1] * 40, 40))
    released: list[int] = []
    release = index_module._release
    monkeypatch.setattr(index_module, "_release", lambda *a: released.append(len(a)) or release(*a))
    query = np.sort(np.concatenate((rng.integers(-5, 310, size=40), [17, 17, 17, 17, 17, 17, 17, 17]))).astype(np.int64)
    left, right = segment.search(query)
    whole = np.asarray(segment.keys)
    assert np.array_equal(left, np.searchsorted(whole, query, "left"))
    assert np.array_equal(right, np.searchsorted(whole, query, "right"))
    assert len(released) == -(-len(query) // 7)  # once after each part


@pytest.mark.parametrize("files", [False, True], ids=["in memory", "into files"])
def test_a_merge_past_the_horizon_keeps_the_postings_of_the_records_it_keeps_numbered_in_their_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: bool
) -> None:
    """Checked against the stable sort of both segments, not against the other merge (both share the records'
    code): the records past the horizon go with every posting of theirs, the others keep their order, each posting
    points at its own record by its new number, and a record's sketch stays with it; in memory and a run at a
    time into files alike."""
    import docsieve.index as index_module
    from docsieve.index import Horizon, _merged, _segment

    monkeypatch.setattr(index_module, "MERGE_RUN", 5)
    rng = np.random.default_rng(21)
    dropped = 0  # trials where the horizon took some records and left others
    for trial in range(12):
        made = []
        for start in (0, 1000):
            records = int(rng.integers(1, 40))
            keys = [rng.integers(0, 30, size=int(rng.integers(0, 15))).astype(np.int64) for _ in range(records)]
            times = [int(t) for t in rng.integers(0, 100, size=records)]
            sketches = [rng.integers(0, 1 << 32, size=SKETCH_WIDTH, dtype=np.uint32) for _ in range(records)]
            made.append(
                _segment([f"r{start + i}" for i in range(records)], keys, times, times, start + records, sketches)
            )
        older, newer = made
        horizon = Horizon(None, 50)  # undated records stored before 50 go
        live = horizon.live(np.concatenate((older.times, newer.times)), np.concatenate((older.arrived, newer.arrived)))
        keys = np.concatenate((older.keys, newer.keys))
        owners = np.concatenate((older.owners, newer.owners + np.int32(len(older.ids))))
        order = np.argsort(keys, kind="stable")
        keys, owners = keys[order], owners[order]
        kept = live[owners]
        expected_keys, expected_owners = keys[kept], (np.cumsum(live) - 1)[owners[kept]]
        ids = np.concatenate((older.ids, newer.ids))[live]
        sketches = np.concatenate((older.sketches, newer.sketches)).reshape(-1, SKETCH_WIDTH)[live].reshape(-1)
        if files:
            index = SegmentIndex(tmp_path / f"index-{trial}")
            index.directory.mkdir()  # type: ignore[union-attr]
            merged = index._merged_in_files(index._written(older), index._written(newer), horizon)
        else:
            merged = _merged(older, newer, horizon)
        dropped += 0 < live.sum() < len(live)
        assert np.array_equal(merged.keys, expected_keys), trial
        assert np.array_equal(merged.owners, expected_owners), trial
        assert list(merged.ids) == list(ids) and np.array_equal(merged.sketches, sketches), trial
    assert dropped >= 8


def test_a_merge_into_files_holds_a_run_of_each_segment_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The point of merging into files run by run: no run hands more than MERGE_RUN postings of either segment to the
    merge (keys all different here, so no run of one key is longer), and the segments take several runs."""
    import docsieve.index as index_module
    from docsieve.index import _MergedRecords, _segment

    monkeypatch.setattr(index_module, "MERGE_RUN", 64)
    sizes: list[tuple[int, int]] = []
    merge = _MergedRecords.postings

    def spied(self, older_keys, older_owners, newer_keys, newer_owners):  # type: ignore[no-untyped-def]
        sizes.append((len(older_keys), len(newer_keys)))
        return merge(self, older_keys, older_owners, newer_keys, newer_owners)

    monkeypatch.setattr(_MergedRecords, "postings", spied)
    index = SegmentIndex(tmp_path / "index")
    index.directory.mkdir()  # type: ignore[union-attr]
    every = np.random.default_rng(2).permutation(2000).astype(np.int64)
    made = [
        index._written(
            _segment([f"r{start + i}" for i in range(50)], list(part.reshape(50, -1)), [1] * 50, [1] * 50, start)
        )
        for start, part in ((0, every[:1000]), (50, every[1000:]))
    ]
    merged = index._merged_in_files(made[0], made[1], None)
    assert np.array_equal(merged.keys, np.arange(2000))
    assert len(sizes) >= 2000 // (2 * 64) and all(o <= 64 and n <= 64 for o, n in sizes), sizes
    assert sum(o for o, _ in sizes) == 1000 and sum(n for _, n in sizes) == 1000


@pytest.mark.slow
def test_a_merge_into_files_gives_back_the_pages_of_both_segments_it_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge reads every page of both segments' files: the pages stay in the page cache, but leave the process
    as the merge goes (the largest merge would otherwise hold both segments' files in its memory), every part's."""
    import docsieve.index as index_module
    from docsieve.index import _segment

    monkeypatch.setattr(index_module, "MERGE_RUN", 1 << 14)
    rng = np.random.default_rng(6)
    index = SegmentIndex(tmp_path / "index")
    index.directory.mkdir()  # type: ignore[union-attr]
    made = []
    for start in (0, 5000):
        keys = [rng.integers(0, 1 << 40, 60) for _ in range(5000)]
        ids = [f"r{start + i}" for i in range(5000)]
        sketches = [rng.integers(0, 1 << 32, size=SKETCH_WIDTH, dtype=np.uint32) for _ in range(5000)]
        made.append(index._written(_segment(ids, keys, [1] * 5000, [1] * 5000, start + 5000, sketches)))
    merged = index._merged_in_files(made[0], made[1], None)
    assert len(merged.keys) == 600_000 and _on_file(merged.keys)  # it read both segments' 7 MB of keys and owners
    assert resident_kb(tmp_path / "index") < 256, resident_kb(tmp_path / "index")


def test_a_merge_into_files_that_fails_part_way_leaves_no_part_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills (or an interrupt) in the middle of a merge: the error goes to the caller, and the part files
    written so far are gone (the largest merge's are 100 MB, which only a rebuild would have cleared)."""
    import docsieve.index as index_module
    from docsieve.index import _MergedRecords, _segment

    monkeypatch.setattr(index_module, "MERGE_RUN", 5)
    index = SegmentIndex(tmp_path / "index")
    index.directory.mkdir()  # type: ignore[union-attr]
    made = [
        index._written(
            _segment(
                [f"r{start + i}" for i in range(20)],
                [np.arange(i, i + 6) for i in range(20)],
                [1] * 20,
                [1] * 20,
                start + 20,
            )
        )
        for start in (0, 100)
    ]
    before = sorted(path.name for path in (tmp_path / "index").iterdir())
    postings = _MergedRecords.postings
    runs: list[int] = []

    def full_disk(self, *parts):
        runs.append(1)
        if len(runs) == 3:
            raise OSError(28, "No space left on device")
        return postings(self, *parts)

    monkeypatch.setattr(_MergedRecords, "postings", full_disk)
    with pytest.raises(OSError, match="No space"):
        index._merged_in_files(made[0], made[1], None)
    assert sorted(path.name for path in (tmp_path / "index").iterdir()) == before


def _on_file(array: np.ndarray) -> bool:
    """Whether an array reads a mapped file (not the process's own memory)."""
    import mmap

    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def test_segments_written_and_merged_are_read_from_their_files_not_kept_in_memory(tmp_path: Path) -> None:
    """Each segment the process writes, its own batches', a merge's, or the store's rows' on a rebuild, is mapped
    from its files afterwards, as another process would open it: a long ingest's merged segments no longer stay
    in its memory (they held the size of the index), and lookups find the same records."""
    from docsieve.index import HOLD_POSTINGS

    rows, index = Rows(), SegmentIndex(tmp_path / "index")
    per_record = 64
    batches = 7  # a binary counter of 4 + 2 + 1: two merges and one batch written as it was
    batch = HOLD_POSTINGS // per_record  # each batch past the holding size: written at the next batch's turn
    ids = [
        rid
        for b in range(batches)
        for rid in rows.put(
            index, [list(range(i * per_record, (i + 1) * per_record)) for i in range(b * batch, (b + 1) * batch)]
        )
    ]
    probe = 3 * batch + 5
    query = [np.arange(probe * per_record, (probe + 1) * per_record, dtype=np.int64)]
    for step in ("flush", "rebuild"):
        index.flush(rows) if step == "flush" else index.rebuild(rows)
        segments = index._segments
        assert segments and len(segments) < batches, step
        for segment in segments:
            assert all(_on_file(getattr(segment, part)) for part in ("keys", "owners", "ids", "sketches")), step
        found, _ = index.lookup(query, limit=3)
        assert found == [[ids[probe]]], step


def test_keys_of_another_integer_type_are_written_as_the_files_are_read(tmp_path: Path) -> None:
    """Keys handed over as int32 are stored as int64, the files' type: written, opened again and found."""
    rows, index = Rows(), SegmentIndex(tmp_path / "index")
    index.catch_up(rows)
    (rid,) = ["r1"]
    rows.rows.append((1, rid, np.array([5, 9], dtype=np.int64).tobytes(), DAY * 20_000, DAY * 20_000, None))
    index.add([rid], [np.array([5, 9], dtype=np.int32)], 1, [DAY * 20_000], first_seq=1, arrived=DAY * 20_000)
    index.flush(rows)
    again = SegmentIndex(tmp_path / "index")
    again.catch_up(rows)
    found, _ = again.lookup([np.array([5, 9], dtype=np.int64)], limit=3)
    assert found == [[rid]]


def _stored(rows: Rows, keys: list[int], when: int, arrived: int) -> str:
    """One store row (its own arrival), not handed to an index: a later catch-up reads it."""
    seq = len(rows.rows) + 1
    rows.rows.append((seq, f"{seq:020x}", np.array(keys, dtype=np.int64).tobytes(), when, arrived, None))
    return f"{seq:020x}"


def test_a_segment_of_dated_and_undated_records_meets_a_window_by_the_span_of_both(tmp_path: Path) -> None:
    """A segment holding dated records (published 105-118, stored later) and an undated one (stored at 100): a
    query is searched there if its window reaches any of them, the undated one before the dated ones' span or a
    dated one after the undated one's, in memory and from the files' manifest alike."""
    rows = Rows()
    undated = _stored(rows, [1, 11], 100 * DAY, 100 * DAY)
    first = _stored(rows, [2, 12], 105 * DAY, 106 * DAY)
    last = _stored(rows, [3, 13], 118 * DAY, 119 * DAY)
    files = SegmentIndex(tmp_path / "index", window_days=10)
    files.catch_up(rows)
    for index in (MemoryIndex(window_days=10), files, SegmentIndex(tmp_path / "index", window_days=10)):
        index.catch_up(rows)
        (segment,) = index._segments + index._held
        assert segment.spans["dated"] == [105 * DAY, 118 * DAY] and segment.spans["undated"] == [100 * DAY] * 2
        ask = [np.array([1]), np.array([3]), np.array([2])]
        assert index.lookup(ask, 5, times=[90 * DAY, 128 * DAY, 95 * DAY])[0] == [[undated], [last], [first]]
        for keys, when, found in ((1, 90 * DAY, undated), (3, 128 * DAY, last), (2, 95 * DAY, first)):
            assert index.lookup([np.array([keys])], 5, times=[when])[0] == [[found]]
            assert index.lookup([np.array([keys])], 5, times=[when - 1 if keys != 3 else when + 1])[0] == [[]]


def test_a_key_is_counted_common_only_in_segments_within_the_window_to_the_second(tmp_path: Path) -> None:
    """Four older records (100) of a stock key make it common (common=3) for a query whose window reaches
    them, not for one a second later; four later ones (130) for a query whose window reaches them, not for one a
    second earlier. Either way the lone record of the query's window is found only where the key is not common."""

    def stock_then_lone(directory: Path, key: int, stock: int, lone: int) -> tuple[SegmentIndex, list[str]]:
        """Four records of the key published at ``stock``, then one at ``lone``, each batch a segment of its own."""
        rows, index = Rows(), SegmentIndex(directory, window_days=10, common=3)
        rows.put(index, [[key, 100 + i] for i in range(4)], when=stock, arrived=131 * DAY)
        index.flush(rows)
        found = rows.put(index, [[key, 200]], when=lone, arrived=131 * DAY)
        index.flush(rows)
        assert len(index._segments) == 2
        return index, found

    index, recent = stock_then_lone(tmp_path / "before", 5, 100 * DAY, 115 * DAY)
    assert index.lookup([np.array([5])], 5, times=[110 * DAY])[0] == [[]]
    assert index.lookup([np.array([5])], 5, times=[110 * DAY + 1])[0] == [recent]
    index, earlier = stock_then_lone(tmp_path / "after", 6, 130 * DAY, 118 * DAY)
    assert index.lookup([np.array([6])], 5, times=[120 * DAY])[0] == [[]]
    assert index.lookup([np.array([6])], 5, times=[120 * DAY - 1])[0] == [earlier]
    # In a batch, each query's key is counted where its own window reaches, whatever the others' windows.
    assert index.lookup([np.array([6])] * 3, 5, times=[120 * DAY - 1, 125 * DAY, None])[0] == [earlier, [], []]


def test_a_batch_lookup_with_times_finds_for_each_query_what_it_finds_alone_and_every_record_in_its_window(
    tmp_path: Path,
) -> None:
    """Segments of dated and undated batches (some merged, some in the files, the last held in memory), and a
    batch of queries (more than FEW keys: the mapped path; the segments out of some windows searched for a few
    of its keys, through their fences) at times spread over and past them, some undated, some at the very edge
    of a record's window: each query's candidates are those it finds alone, and (no key common) every record
    sharing a key within its window."""
    from docsieve.index import FEW

    rng = np.random.default_rng(11)
    window, universe = 2 * DAY, 3000
    rows, index = Rows(), SegmentIndex(tmp_path / "index", window_days=2, common=4)
    records: dict[str, tuple[set[int], int]] = {}
    for batch in range(14):
        when = int(batch * 0.3 * DAY)
        arrived = when if batch % 3 == 0 else when + 3600  # every third batch undated
        keys = [
            sorted(set(rng.integers(0, universe, 12).tolist()) | ({int(SAMPLE_TAG) | 1} if i % 5 == 0 else set()))
            for i in range(int(rng.integers(1, 9)))
        ]
        for rid, k in zip(rows.put(index, keys, when=when, arrived=arrived), keys, strict=True):
            records[rid] = (set(k), when)
        if batch % 4 == 3:
            index.flush(rows)
    assert index._held and len(index._segments) > 1
    edges = [t + s * window for _, t in records.values() for s in (-1, 1)]
    times: list[int | None] = [None if i % 9 == 0 else int(rng.integers(-3 * DAY, 7 * DAY)) for i in range(50)]
    times += [int(t) for t in rng.choice(edges, 12)]
    queries = [
        np.array(sorted(set(rng.integers(0, universe, 90).tolist()) | {int(SAMPLE_TAG) | 1}), dtype=np.int64)
        for _ in times
    ]
    assert sum(len(q) for q in queries) > FEW
    for common in (4, 1 << 40):
        index.common = common
        together = index.lookup(queries, 1000, times=times)[0]
        alone = [index.lookup([q], 1000, times=[t])[0][0] for q, t in zip(queries, times, strict=True)]
        assert together == alone
    phrase = {int(SAMPLE_TAG) | 1}  # held by many: a record sharing it alone may be no candidate
    for q, t, found in zip(queries, times, together, strict=True):
        near = {r: k & set(q.tolist()) for r, (k, w) in records.items() if t is None or abs(w - t) <= window}
        assert {r for r, shared in near.items() if shared - phrase} <= set(found) <= {r for r in near if near[r]}


def test_memory_and_redis_indexes_count_common_keys_over_the_window_alike(redis_url: str, prefix: str) -> None:
    """Four records of a stock key (common=3) published on a generation's first day and a fifth fifteen days later:
    a query a window past the four counts only the fifth and finds it, in both indexes; one whose window reaches
    the four, or an undated one, finds the key common. (Records put in batches as a feed does: the embedded
    index's segments, the shared one's generations of half a window, hold the same records.)"""
    start = 20_000 * DAY  # a generation of five days starts here
    memory, shared = MemoryIndex(window_days=10, common=3), RedisIndex(redis_url, prefix, common=3, window=10)
    seq = 0
    for ids, when in (([f"o{i}" for i in range(4)], start), (["new"], start + 15 * DAY)):
        keys = [np.array([5, 100 + seq + i], dtype=np.int64) for i in range(len(ids))]
        seq += len(ids)
        memory.add(ids, keys, seq, [when] * len(ids), arrived=start + 20 * DAY)
        shared.lookup(keys, 0, times=[when] * len(ids), stage_ids=ids)
        shared.add(ids, keys, seq, times=[when] * len(ids))
    key = [np.array([5], dtype=np.int64)]
    for when, found in ((start + 16 * DAY, ["new"]), (start + 9 * DAY, []), (start + 5 * DAY, []), (None, [])):
        assert memory.candidates(key, 5, [when]) == shared.lookup(key, 5, times=[when])[0] == [found]
    assert memory.candidates([np.array([101])], 5, [start + 9 * DAY]) == [["o1"]]
    assert shared.lookup([np.array([101], dtype=np.int64)], 5, times=[start + 9 * DAY])[0] == [["o1"]]
    shared.clear()


def test_each_piece_of_rows_is_let_go_before_its_segment_is_handed_on(monkeypatch) -> None:
    """A rebuild's peak held a piece three times (the rows as read, their arrays, its sorted segment): each form is
    let go once the next exists (docs/benchmarks.md, "nineteenth session")."""
    import gc
    import weakref

    from docsieve import index as index_module

    alive: list[list[weakref.ref]] = []
    read_rows = index_module.read_rows

    def tracked(piece):
        read = read_rows(piece)
        alive.append([weakref.ref(k) for k in read.keys])
        return read

    monkeypatch.setattr(index_module, "read_rows", tracked)
    rows = Rows()
    for i in range(11):
        _stored(rows, [1000 * i + j for j in range(6)], 100 * DAY, 100 * DAY)
    made = 0
    for segment in index_module.segments_of(rows.index_rows(0), postings=32):  # pieces of 4, 4 and 3
        gc.collect()
        assert all(ref() is None for ref in alive[made])
        made += 1
        assert len(segment.ids) == (4 if made < 3 else 3)
    assert made == 3


@pytest.mark.parametrize("window", [0.0, 1.0])
def test_a_rebuild_in_pieces_names_the_store_row_it_ends_at_and_is_not_built_again(
    tmp_path: Path, monkeypatch, window: float
) -> None:
    from docsieve import index as index_module

    monkeypatch.setattr(index_module, "MERGE_UP_TO", 16)
    rows = Rows()
    for i in range(20):  # short ids; the last 8 a backfill the horizon drops whole
        when, arrived = (100 * DAY, 100 * DAY + 60) if i < 12 else (10 * DAY, 101 * DAY)
        rows.rows.append((i + 1, f"r{i + 1}", np.array([i, 100 + i], dtype=np.int64).tobytes(), when, arrived, None))
    SegmentIndex(tmp_path / "index", window_days=window).rebuild(rows)
    manifest = json.loads((tmp_path / "index" / "index.json").read_text())
    assert (manifest["last_seq"], manifest["last_id"]) == (20, "r20")
    rows.read = 0
    again = SegmentIndex(tmp_path / "index", window_days=window)
    again.catch_up(rows)
    assert rows.read == 0 and again.last_seq == 20


def test_every_path_reads_the_store_in_pieces_of_a_merged_segment(tmp_path: Path, monkeypatch) -> None:
    """The files' rebuild, the in-memory catch-up and its fallback when the files cannot be written: pieces of
    MERGE_UP_TO postings. (Pieces of a quarter held a rebuild's peak lower but left more, smaller segments after it,
    which every later lookup searches: a review's finding, docs/benchmarks.md.)"""
    from docsieve import index as index_module

    asked: list[int] = []
    chunked = index_module.chunked_rows
    monkeypatch.setattr(index_module, "chunked_rows", lambda r, p: asked.append(p) or chunked(r, p))
    monkeypatch.setattr(index_module, "MERGE_UP_TO", 64)
    rows = Rows()
    for i in range(10):
        _stored(rows, [1000 * i + j for j in range(6)], 100 * DAY, 100 * DAY)
    files = SegmentIndex(tmp_path / "index")
    files.rebuild(rows)
    assert asked == [64] and [len(s.ids) for s in files._segments] == [8, 2]
    asked.clear()
    MemoryIndex().catch_up(rows)
    assert asked == [64]
    asked.clear()

    def unwritable(*args, **kwargs):
        raise PermissionError

    monkeypatch.setattr(SegmentIndex, "_catch_up_files", unwritable)
    SegmentIndex(tmp_path / "other").catch_up(rows)
    assert asked == [64]


@pytest.mark.parametrize("files", [False, True], ids=["memory", "files"])
def test_a_backfill_dropped_whole_still_sets_the_newest_arrival(tmp_path: Path, files: bool) -> None:
    """A batch of old stories stored last goes whole past the horizon (published long before the news the index
    holds), but it arrived last: an undated page stored two windows before it is forgotten, batch by batch, and by
    a process that opens the files afterwards. (The index once took the newest arrival from the segments it still
    held, so the page became a candidate again once the backfill was dropped.)"""
    rows = Rows()
    index = SegmentIndex(tmp_path / "index", window_days=1) if files else MemoryIndex(window_days=1)
    rows.put(index, [[100 + j for j in range(6)]], 100 * DAY, 100 * DAY + 3600)  # dated news
    # Undated (stored when it was read), and merged with the news into one segment, which the horizon keeps.
    page = rows.put(index, [[7, *range(1, 9)]], 101 * DAY)
    assert index.lookup([np.array([7])], 5, times=[None])[0] == [page]
    rows.put(index, [[500 + j for j in range(6)]], 10 * DAY, 104 * DAY)  # the backfill, stored last
    assert index.lookup([np.array([7])], 5, times=[None])[0] == [[]]
    if files:
        index.flush(rows)
        assert SegmentIndex(tmp_path / "index", window_days=1).lookup([np.array([7])], 5, times=[None])[0] == [[]]


def test_what_a_dropped_backfill_puts_past_the_horizon_goes_from_the_segments_too(tmp_path: Path) -> None:
    """The newest arrival a backfill dropped whole leaves behind rules what the segments keep, not only what a
    lookup finds: an undated page merged with news goes at the segment's next merge, and a segment of it alone
    goes at the next catch-up that writes nothing, whose manifest then tells a process opening the files."""
    rows, memory = Rows(), MemoryIndex(window_days=1)
    rows.put(memory, [[100 + j for j in range(6)]], 100 * DAY, 100 * DAY + 3600)  # dated news
    rows.put(memory, [[7, *range(1, 9)]], 101 * DAY)  # an undated page, merged with the news
    rows.put(memory, [[500 + j for j in range(6)]], 10 * DAY, 104 * DAY)  # the backfill, stored last
    assert memory.size()[0] == 2
    rows.put(memory, [[200 + j for j in range(20)]], 100 * DAY, 100 * DAY + 7200)  # news merged with both
    assert memory.size()[0] == 2  # the page went in the merge

    rows, files = Rows(), SegmentIndex(tmp_path / "index", window_days=1)
    rows.put(files, [[100 + j for j in range(6)]], 100 * DAY, 100 * DAY + 3600)
    rows.put(files, [[7, 1]], 101 * DAY)  # fewer keys than the news: a segment of its own
    files.flush(rows)
    rows.put(files, [[200 + j for j in range(6)]], 100 * DAY, 100 * DAY + 7200)  # held
    rows.put(files, [[500 + j for j in range(6)]], 10 * DAY, 104 * DAY)  # the backfill, held and dropped
    files.catch_up(rows)  # nothing written: what is held is too little
    assert files.size()[0] == 2  # the news in the files and the news held
    opened = SegmentIndex(tmp_path / "index", window_days=1)
    assert opened.size()[0] == 1 and opened.lookup([np.array([7])], 5, times=[None])[0] == [[]]


def _other_store(tmp_path: Path) -> tuple[Path, Rows, str]:
    """Files of a store whose newest record arrived at day 200, and another store (other ids at the same places)
    holding only an undated page stored at day 100."""
    old = Rows()
    index = SegmentIndex(tmp_path / "index", window_days=1)
    old.put(index, [[100 + j for j in range(6)]], 200 * DAY)
    index.flush(old)
    other = Rows()
    other.rows.append((1, "b" * 20, np.array([7, 1, 2], dtype=np.int64).tobytes(), 100 * DAY, 100 * DAY, None))
    return tmp_path / "index", other, "b" * 20


@pytest.mark.parametrize("how", ["catch_up", "rebuild"])
def test_files_built_again_for_another_store_forget_the_newest_times_of_the_one_replaced(
    tmp_path: Path, how: str
) -> None:
    """The files of a store replaced are built again from the other's records, and so is the horizon: the
    newest arrival of the store replaced, read from its manifest, is not kept (it would forget the page)."""
    directory, other, page = _other_store(tmp_path)
    index = SegmentIndex(directory, window_days=1)
    getattr(index, how)(other)
    assert index.lookup([np.array([7])], 5, times=[None])[0] == [[page]]
    assert SegmentIndex(directory, window_days=1).lookup([np.array([7])], 5, times=[None])[0] == [[page]]


def test_a_process_that_held_the_files_open_takes_the_newest_times_of_files_built_again(tmp_path: Path) -> None:
    """A long-lived process (the service) opened the files of a store since replaced; another process built them
    again for the other store. Its lookups reckon the horizon from the new manifest, and its next catch-up
    neither drops the other store's records from the files nor writes the old store's newest arrival there."""
    directory, other, page = _other_store(tmp_path)
    long_lived = SegmentIndex(directory, window_days=1)
    assert long_lived.lookup([np.array([7])], 5, times=[None])[0] == [[]]
    SegmentIndex(directory, window_days=1).catch_up(other)
    assert long_lived.lookup([np.array([7])], 5, times=[None])[0] == [[page]]
    long_lived.catch_up(other)
    assert SegmentIndex(directory, window_days=1).lookup([np.array([7])], 5, times=[None])[0] == [[page]]


def test_a_rebuild_forgets_by_the_newest_arrival_whatever_its_pieces(tmp_path: Path, monkeypatch) -> None:
    """An undated page two windows older than the newest arrival is forgotten by a rebuild as by the in-memory
    index, also when the newest arrivals are a backfill of old stories stored last."""
    from docsieve import index as index_module

    monkeypatch.setattr(index_module, "MERGE_UP_TO", 256)
    rows = Rows()
    for i in range(23):
        _stored(rows, [100 + 6 * i + j for j in range(6)], 100 * DAY, 100 * DAY + 3600)
    _stored(rows, [7, 1, 2, 3, 4, 5], 101 * DAY, 101 * DAY)  # an undated page
    for i in range(8):  # a backfill, stored last
        _stored(rows, [500 + 6 * i + j for j in range(6)], 10 * DAY, 104 * DAY)
    memory = MemoryIndex(window_days=1)
    memory.catch_up(rows)
    assert memory.lookup([np.array([7])], 5, times=[None])[0] == [[]]
    files = SegmentIndex(tmp_path / "index", window_days=1)
    files.rebuild(rows)
    assert files.lookup([np.array([7])], 5, times=[None])[0] == [[]]
