"""The shared candidate index in Redis (worker/redis_index.py): it reconciles with the store after a crash,
lists a record once, keeps the earliest records of a key, and clears only its own keys; its generations
keep the window, concurrent workers, takedowns and keys of many records right, in under a kilobyte a
document."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from unittest import mock

import numpy as np
import pytest
import redis

from docsieve.index import SegmentIndex, open_index
from docsieve.models import RawDocument, Record, Status
from docsieve.pipeline import Pipeline
from docsieve.settings import Settings
from docsieve.store import Store
from tests.conftest import fixture_text
from worker.redis_index import RedisIndex


def _one_original(redis_url: str, prefix: str, store_url: str) -> tuple[Pipeline, Record, list[np.ndarray]]:
    """A pipeline on the shared index that stored one article: it, its record, and the keys of a near copy of it."""
    settings = Settings(store=store_url, index_url=redis_url, queue_prefix=prefix)
    pipeline = Pipeline(Store(settings.store), settings, open_index(settings))
    pipeline.ingest([RawDocument("a.txt", fixture_text("ar_near_a.txt"))])
    (a,) = list(pipeline.store.iter_records())
    return pipeline, a, [pipeline.prepare([RawDocument("q.txt", fixture_text("ar_near_b.txt"))])[1][0].keys]


def test_redis_index_catches_up_with_the_store(redis_url: str, tmp_path) -> None:
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    pipeline, a, query = _one_original(redis_url, prefix, f"sqlite:///{tmp_path / 's.db'}")
    try:
        index = RedisIndex(redis_url, prefix)
        assert index.lookup(query, 5) == ([[a.id]], 1)
        index.clear()  # the index lost (a crash, a Redis restarted empty): only the store remembers
        assert index.lookup(query, 5) == ([[]], 0)
        with pipeline.store.reading() as txn:
            index.catch_up(txn)
        assert index.lookup(query, 5) == ([[a.id]], 1)
        # And a worker that staged keys before the index was cleared writes them again when it publishes.
        summary = pipeline.ingest([RawDocument("c.txt", fixture_text("ar_other.txt"))])
        assert summary.new == 1
        other = [pipeline.prepare([RawDocument("o.txt", fixture_text("ar_other.txt"))])[1][0].keys]
        assert len(index.lookup(other, 5)[0][0]) == 1
    finally:
        RedisIndex(redis_url, prefix).clear()
        pipeline.close()
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match=f"{prefix}*"))


def test_staged_keys_survive_a_clear_before_publishing(redis_index: RedisIndex) -> None:
    keys = [np.arange(10, dtype=np.int64)]
    redis_index.lookup(keys, 0, stage_ids=["r1"])
    redis_index.clear()  # between staging (before the lock) and publishing (after the commit)
    redis_index.add(["r1"], keys, last_seq=7)
    # Written again, but complete up to nothing: records 1-6 were lost with the rest, and come from the store.
    assert redis_index.lookup(keys, 5) == ([["r1"]], 0)


def _near_copy_pipeline(redis_url: str, prefix: str, store_url: str) -> tuple[Pipeline, Record]:
    """A pipeline on the shared index and a store that holds one article and four others after it."""
    pipeline, original, _ = _one_original(redis_url, prefix, store_url)
    others = ["ar_other.txt", "ar_template_a.txt", "en_article.txt", "ar_long_article.txt"]
    pipeline.ingest([RawDocument(f"o{i}.txt", fixture_text(name)) for i, name in enumerate(others)])
    return pipeline, original


def _story_of_near_copy(pipeline: Pipeline) -> str | None:
    pipeline.ingest([RawDocument("b.txt", fixture_text("ar_near_b.txt"))])
    (copy,) = [r for r in pipeline.store.iter_records() if r.source.endswith("b.txt")]
    return copy.story_id


def test_an_index_lost_between_a_commit_and_its_publish_still_finds_the_records_before(
    redis_url: str, prefix: str, store_url: str
) -> None:
    pipeline, original = _near_copy_pipeline(redis_url, prefix, store_url)
    try:
        publish = pipeline.index.add

        def lost_then_published(*args, **kwargs):
            pipeline.index.clear()  # Redis restarted empty after this batch's commit, before its publish
            return publish(*args, **kwargs)

        with mock.patch.object(pipeline.index, "add", side_effect=lost_then_published):
            pipeline.ingest([RawDocument("late.txt", fixture_text("ar_template_b.txt"))])
        assert _story_of_near_copy(pipeline) == original.story_id
        with pipeline.store.reading() as txn:  # the next batch caught the index up with the whole store
            assert pipeline.index.lookup([np.zeros(1, dtype=np.int64)], 1)[1] == txn.last_seq()
    finally:
        pipeline.close()


def test_an_index_far_behind_the_store_is_caught_up_before_a_batch_reads_the_gap(
    redis_url: str, prefix: str, store_url: str, monkeypatch
) -> None:
    pipeline, original = _near_copy_pipeline(redis_url, prefix, store_url)
    monkeypatch.setattr("docsieve.pipeline.LAG_CAUGHT_UP_FIRST", 2)
    held: list[int] = []
    catch_up = SegmentIndex.catch_up  # the late index (this pipeline's own index is the shared one)

    def counted(index: SegmentIndex, store) -> None:
        catch_up(index, store)
        held.append(index.size()[0])

    try:
        pipeline.index.clear()  # five records behind: more than two
        with mock.patch.object(SegmentIndex, "catch_up", counted):
            assert _story_of_near_copy(pipeline) == original.story_id
        assert held and max(held) == 0  # the records since the lookup: none, the index caught up first
        monkeypatch.setattr("docsieve.pipeline.LAG_CAUGHT_UP_FIRST", 10)
        pipeline.index.clear()  # six behind, under ten: read into the batch's own index, and found there
        held.clear()
        with mock.patch.object(SegmentIndex, "catch_up", counted):
            pipeline.ingest([RawDocument("b2.txt", fixture_text("ar_near_b.txt") + " ")])
        assert max(held) == 6
    finally:
        pipeline.close()


def test_a_record_is_listed_once_however_often_its_keys_are_written(redis_index: RedisIndex) -> None:
    keys = [np.arange(5, dtype=np.int64)]
    for _ in range(3):
        redis_index.lookup(keys, 0, stage_ids=["r1"])
    redis_index.lookup(keys, 0, stage_ids=["r2"])
    redis_index._instances[0].staged_epoch = b"lost"  # as if cleared meanwhile: the publish writes the keys again
    redis_index.add(["r1", "r2"], keys * 2, last_seq=2, times=[T, T])
    assert redis_index.lookup(keys, 5)[0] == [["r1", "r2"]]
    assert redis_index.postings(3) == ["r1", "r2"]


def test_a_key_counts_until_it_is_common_and_a_document_never_finds_itself(redis_url: str, prefix: str) -> None:
    # Every record of a key is a candidate (eight were kept, once): up to DOCSIEVE_COMMON_KEY_RECORDS of them;
    # past that the key is boilerplate and skipped, and records are found through their other keys.
    index = RedisIndex(redis_url, prefix, common=10)
    shared = np.array([42], dtype=np.int64)
    ids = [f"{i:020x}" for i in range(13)]
    first, second = ids[:10], ids[10:]
    index.lookup([shared] * len(first), 0, stage_ids=first)
    found, _ = index.lookup([np.array([42, 7], dtype=np.int64)] * 3, 50, stage_ids=second)
    assert [sorted(f) for f in found] == [first] * 3  # all ten; the batch's own not there yet: staged after reading
    assert index.lookup([shared], 50)[0] == [[]]  # eleven now: common, skipped
    found, _ = index.lookup([np.array([7], dtype=np.int64)], 50, stage_ids=[second[0]])
    assert found == [second[1:]]  # a document staged again does not find itself
    index.close()


def test_an_id_staged_twice_in_one_batch_takes_one_place(redis_index: RedisIndex) -> None:
    """The same source and text twice in a batch (or a document whose keys repeat) is one posting."""
    key = np.array([5, 5], dtype=np.int64)
    twice, other = "e" * 20, "f" * 20
    redis_index.lookup([key, key, np.array([5], dtype=np.int64)], 0, stage_ids=[twice, twice, other])
    found, _ = redis_index.lookup([np.array([5], dtype=np.int64)], 10)
    assert found == [[twice, other]]
    assert redis_index.postings(5) == [twice, other]


def test_clear_removes_every_layout_and_nothing_else(redis_url: str) -> None:
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    mine = [f"{prefix}:index:postings", f"{prefix}:index2:seq", f"{prefix}:index3:state"]
    others = [f"{prefix}:indexer", f"{prefix}:index-b:seq"]
    for key in mine + others:
        client.set(key, "1")
    try:
        assert RedisIndex(redis_url, prefix).clear() == 3
        assert [client.exists(k) for k in mine + others] == [0, 0, 0, 1, 1]
    finally:
        client.delete(*others)


# -- the layout of generations (index3): the window, concurrent workers, takedowns, keys of many records, size

DAY = 86_400
T = 1_700_000_000  # a publication time (2023): the tests' records are dated, so arrival (now) does not matter


def put(index: RedisIndex, ids: list[str], keys: list[np.ndarray], when: list[int], seq: int) -> None:
    """As a worker does: staged with the lookup before the lock, published after the commit."""
    index.lookup(keys, 0, times=list(when), stage_ids=ids)
    index.add(ids, keys, seq, times=list(when))


def test_the_window_bounds_dated_lookups_and_old_generations_expire(redis_url: str, prefix: str) -> None:
    index = RedisIndex(redis_url, prefix, window=10)  # generations of 5 days; forgotten 20 days behind
    key = [np.array([1, 2, 3], dtype=np.int64)]
    put(index, ["old"], key, [T], 1)
    assert index.lookup(key, 5, times=[T + 9 * DAY])[0] == [["old"]]  # within the window
    assert index.lookup(key, 5, times=[T + 11 * DAY])[0] == [[]]  # a dated query past it: not a candidate
    assert index.lookup(key, 5, times=[None])[0] == [["old"]]  # undated: the whole index
    # Newer records move the horizon (the newest publication less two windows) on their own.
    other = [np.array([7], dtype=np.int64)]
    put(index, ["new1"], other, [T + 15 * DAY], 2)
    assert index.lookup(key, 5)[0] == [["old"]]  # not yet behind the horizon
    births = {k.split(b":")[-1].split(b"b")[0] for k in index.redis_keys() if b"b" in k.split(b":")[-1]}
    put(index, ["new2"], other, [T + 26 * DAY], 3)  # the horizon passes the old record's generation
    assert index.lookup(key, 5)[0] == [[]] and index.postings(1) == []
    put(index, ["new3"], other, [T + 26 * DAY + 60], 4)  # the next write sweeps the expired generation's keys
    left = {k.split(b":")[-1].split(b"b")[0] for k in index.redis_keys() if b"b" in k.split(b":")[-1]}
    assert births - left, "the expired generation's buckets were swept"
    assert index.lookup(other, 5)[0] == [["new1", "new2", "new3"]]
    # A record older than the horizon is not indexed at all.
    put(index, ["late"], [np.array([9], dtype=np.int64)], [T], 5)
    assert index.postings(9) == []


def test_a_worker_with_another_window_follows_the_index(redis_url: str, prefix: str) -> None:
    put(RedisIndex(redis_url, prefix, window=10), ["a"], [np.array([5], dtype=np.int64)], [T], 1)
    other = RedisIndex(redis_url, prefix)  # no window: it learns the index's generations
    assert other.lookup([np.array([5], dtype=np.int64)], 5) == ([["a"]], 1)
    put(other, ["b"], [np.array([5], dtype=np.int64)], [T + DAY], 2)
    assert RedisIndex(redis_url, prefix, window=10).postings(5) == ["a", "b"]


def test_common_keys_are_counted_over_the_generations_read(redis_url: str, prefix: str) -> None:
    """Six records of a key in one generation and six in another: eleven or more is common (common=10) for a
    lookup that reads both, not for a dated one that reads only the newer."""
    index = RedisIndex(redis_url, prefix, common=10, window=10)
    key = np.array([42], dtype=np.int64)
    early, late = [f"e{i}" for i in range(6)], [f"l{i}" for i in range(6)]
    put(index, early, [key] * 6, [T] * 6, 6)
    put(index, late, [key] * 6, [T + 30 * DAY] * 6, 12)  # the early ones are past the horizon now...
    assert index.lookup([key], 50)[0] == [sorted(late)]  # ...so only six are read: not common
    index = RedisIndex(redis_url, prefix + "-b", common=10, window=10)
    put(index, early, [key] * 6, [T] * 6, 6)
    put(index, late, [key] * 6, [T + 12 * DAY] * 6, 12)  # two generations, both live
    assert index.lookup([key], 50)[0] == [[]]  # twelve: common, skipped
    assert index.lookup([key], 50, times=[T + 21 * DAY])[0] == [sorted(late)]  # the window reads only six
    index.clear()


def test_concurrent_workers_never_lose_a_record_nor_share_a_number(redis_url: str, prefix: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import redis as client_library

    workers, batches, size = 6, 30, 20
    shared = np.array([99], dtype=np.int64)  # every record has it: one key's postings from every worker

    def work(worker: int) -> tuple[list[str], int]:
        index = RedisIndex(redis_url, prefix, common=100_000, window=30)
        rng = np.random.default_rng(worker)
        mine, newest = [], 0
        for b in range(batches):
            ids = [f"w{worker}b{b}r{r}" for r in range(size)]
            keys = [np.array([1_000_000 + len(mine) + r + 10_000 * worker, 99], dtype=np.int64) for r in range(size)]
            when = [T + int(rng.integers(0, 20 * DAY)) for _ in ids]  # several generations, in any order
            put(index, ids, keys, when, 0)
            mine += ids
            newest = max(newest, *when)
        index.close()
        return mine, newest

    with ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(work, range(workers)))
    written = [r for rs, _ in done for r in rs]
    index = RedisIndex(redis_url, prefix, common=100_000, window=30)
    assert sorted(index.postings(int(shared[0]))) == sorted(written)  # none lost, none twice
    for worker in range(workers):  # and each under its own key: its number is its own
        for n in (0, 7, batches * size - 1):
            assert index.postings(1_000_000 + n + 10_000 * worker) == [f"w{worker}b{n // size}r{n % size}"]
    redis = client_library.Redis.from_url(redis_url)
    records = 0
    for birth in redis.hvals(f"{prefix}:index3:gens"):
        records += int(redis.hget(f"{prefix}:index3:s{birth.decode()}", "r"))
    assert records == len(written)  # numbers were handed out once each
    # The horizon's clock only moved forward: it is the newest time any worker wrote.
    assert int(redis.hget(f"{prefix}:index3:state", "published")) == max(n for _, n in done)


def test_a_takedown_removes_the_record_from_every_key(redis_index: RedisIndex) -> None:
    keys = [np.array([1, 2, 3], dtype=np.int64), np.array([2, 3, 4], dtype=np.int64)]
    put(redis_index, ["gone", "kept"], keys, [T, T], 2)
    assert redis_index.lookup([np.array([2, 3], dtype=np.int64)], 5)[0] == [["gone", "kept"]]
    assert redis_index.remove("gone", keys[0].tobytes()) == 3
    assert redis_index.lookup([np.array([1, 2, 3], dtype=np.int64)], 5)[0] == [["kept"]]
    assert redis_index.remove("gone", keys[0].tobytes()) == 0
    put(redis_index, ["gone"], keys[:1], [T], 3)  # stored again later: indexed again
    assert redis_index.postings(1) == ["gone"]


def test_a_key_of_many_records_leaves_its_bucket_and_keeps_working(redis_url: str, prefix: str) -> None:
    index = RedisIndex(redis_url, prefix, common=30)
    heavy = 777
    ids = [f"r{i:03d}" for i in range(40)]
    # Each record has the heavy key and one of its own; more records than the overflow's threshold and
    # than the cap, written over several batches (so the key moves to the overflow hash on the way).
    for start in range(0, 40, 5):
        keys = [np.array([heavy, 10_000 + i], dtype=np.int64) for i in range(start, start + 5)]
        put(index, ids[start : start + 5], keys, [T] * 5, start + 5)
    assert index.postings(heavy) == ids[:31]  # the first common + 1 records kept, in order
    assert index.lookup([np.array([heavy], dtype=np.int64)], 50)[0] == [[]]  # common: skipped
    for i in (0, 13, 39):  # every record still found by its own key, whatever shares its bucket
        assert index.lookup([np.array([10_000 + i, heavy], dtype=np.int64)], 5)[0] == [[ids[i]]]
    assert index.remove(ids[3], np.array([heavy, 10_003], dtype=np.int64).tobytes()) == 2
    assert ids[3] not in index.postings(heavy) and len(index.postings(heavy)) == 30
    small = RedisIndex(redis_url, prefix + "-b", common=1000)
    for start in range(0, 40, 5):
        keys = [np.array([heavy, 10_000 + i], dtype=np.int64) for i in range(start, start + 5)]
        put(small, ids[start : start + 5], keys, [T] * 5, start + 5)
    found = small.lookup([np.array([heavy], dtype=np.int64)], 100)[0]
    assert found == [ids]  # not common at 1000: all forty, one shared key each, by id
    small.clear()


@pytest.mark.slow
def test_an_indexed_document_costs_under_a_kilobyte(redis_url: str, prefix: str) -> None:
    """Some 3,000 documents of 60 keys (50 of their own, 10 drawn from 3,000 shared ones: near copies and
    boilerplate), in batches as workers write them: every Redis key of the index, MEMORY USAGE."""
    import redis as client_library

    index = RedisIndex(redis_url, prefix, window=30)
    rng = np.random.default_rng(14)
    shared = rng.integers(-(1 << 62), 1 << 62, size=3000, dtype=np.int64)
    docs, per_batch = 3072, 512
    for start in range(0, docs, per_batch):
        keys = [
            np.concatenate((rng.integers(-(1 << 62), 1 << 62, size=50, dtype=np.int64), rng.choice(shared, 10)))
            for _ in range(per_batch)
        ]
        ids = [f"{start + i:020x}" for i in range(per_batch)]
        put(index, ids, keys, [T + int(t) for t in rng.integers(0, 3 * DAY, per_batch)], start + per_batch)
    redis = client_library.Redis.from_url(redis_url)
    used = sum(int(redis.memory_usage(k, samples=0)) for k in redis.scan_iter(match=f"{prefix}:*", count=10_000))
    assert used / docs < 1024, f"{used / docs:.0f} bytes a document"


def test_the_postings_are_counted_without_reading_them(redis_url: str, prefix: str) -> None:
    index = RedisIndex(redis_url, prefix, window=30)
    assert index.posting_count() == 0
    rng = np.random.default_rng(3)
    keys = [rng.integers(-(1 << 62), 1 << 62, size=40, dtype=np.int64) for _ in range(100)]
    put(index, [f"r{i:019d}" for i in range(100)], keys, [T + i * 60 for i in range(100)], 100)
    assert index.posting_count() == 100 * 40 + 100  # each record's keys, and its id


def test_a_record_staged_before_the_lookup_and_stored_before_the_lock_is_verified(redis_url: str, tmp_path) -> None:
    """Worker A stages an original's keys (before its lock), worker B's lookup finds that id while it is not
    yet stored, then A commits before B takes the lock: B must verify it under the lock and store its copy
    as a copy (verifying only what was stored at B's lookup lost it: 3-4 canonicals a story in the
    four-worker race of test_deployment)."""
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    settings = Settings(store=f"sqlite:///{tmp_path / 's.db'}", index_url=redis_url, queue_prefix=prefix)
    a = Pipeline(Store(settings.store), settings, open_index(settings))
    b = Pipeline(Store(settings.store), settings, open_index(settings))
    try:
        staged = a.prepare([RawDocument("a.txt", fixture_text("ar_near_a.txt"))])
        original = staged[1][0]
        a.index.lookup([original.keys], 32, stage_ids=[original.id])  # A's staging, before its lock
        writing = b.store.writing

        def a_commits_first(before_lock=None):  # B's lookup and early verification are done: A stores the original
            a.store_prepared(*staged)
            return writing(before_lock)

        b.store.writing = a_commits_first  # type: ignore[method-assign]
        (copy,) = b.process([RawDocument("b.txt", fixture_text("ar_near_b.txt"))])
        assert copy.duplicate_of == original.id and copy.status is not Status.CANONICAL
    finally:
        RedisIndex(redis_url, prefix).clear()
        a.close()
        b.close()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_batch_catches_the_index_up_with_records_it_never_heard_of(
    redis_url: str, postgres_server_url: str, tmp_path, store: str
) -> None:
    """The index lost what was stored (a crash, a Redis restarted empty): the next batch a worker stores writes
    it again (on PostgreSQL before the lock, on SQLite under it), so later lookups find it."""
    from tests.services import postgres_database

    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    with postgres_database(postgres_server_url) as pg:
        url = pg if store == "postgresql" else f"sqlite:///{tmp_path / 's.db'}"
        pipeline, a, query = _one_original(redis_url, prefix, url)
        try:
            index = RedisIndex(redis_url, prefix)
            index.clear()
            assert index.lookup(query, 5) == ([[]], 0)
            assert pipeline.ingest([RawDocument("c.txt", fixture_text("ar_other.txt"))]).new == 1
            assert index.lookup(query, 5) == ([[a.id]], 2)
        finally:
            RedisIndex(redis_url, prefix).clear()
            pipeline.close()


def _databases(url: str, count: int) -> list[str]:
    """``count`` URLs of the server's numbered databases after ``url``'s: separate keyspaces, as separate
    instances would be (only this test's prefix is written or removed in them)."""
    from redis.connection import parse_url

    base = int(parse_url(url).get("db", 0))
    root = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return [f"{root}/{(base + i) % 16}" for i in range(count)]


def _synthetic(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Key arrays with a skewed vocabulary: some keys in hundreds of arrays (overflowing buckets, reaching the
    common cap), most in a few."""
    vocabulary = (rng.zipf(1.3, size=count * 60) % 40_000).astype(np.int64) * 7919 + 13
    return [np.unique(vocabulary[i * 60 : (i + 1) * 60]) for i in range(count)]


@pytest.mark.parametrize("instances", [2, 3])
def test_several_instances_find_what_one_finds(redis_url: str, instances: int) -> None:
    """The same records staged, published, taken down and caught up into one instance and into several (each key
    in one of them): every lookup ranks the same candidates, and every key lists the same records."""
    rng = np.random.default_rng(instances)
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    one = RedisIndex(redis_url, f"{prefix}-one", common=40, window=30)
    many = RedisIndex(",".join(_databases(redis_url, instances)), f"{prefix}-many", common=40, window=30)
    day = 86_400
    try:
        stored = _synthetic(rng, 600)
        ids = [f"r{i:05d}" for i in range(len(stored))]
        times = [1_780_000_000 + int(rng.integers(0, 40 * day)) for _ in stored]
        for start in range(0, len(stored), 200):
            part = slice(start, start + 200)
            for index in (one, many):
                index.lookup(stored[part], 8, times=times[part], stage_ids=ids[part])
                index.add(ids[part], stored[part], last_seq=start + 200, times=times[part])
        queries = [*_synthetic(rng, 100), *stored[:50]]
        when: list[int | None] = [1_780_000_000 + int(rng.integers(0, 40 * day)) for _ in queries]
        when[::7] = [None] * len(when[::7])  # undated queries read every generation
        for limit in (3, 32, 1000):
            assert one.lookup(queries, limit, times=when) == many.lookup(queries, limit, times=when)
        found = many.lookup(queries, 32, times=when)[0]
        assert sum(map(len, found)) > 500 and max(map(len, found)) == 32  # not a vacuous comparison
        keys = np.unique(np.concatenate(stored))
        for key in [*rng.choice(keys, 40).tolist(), int(keys[0])]:
            assert one.postings(key) == many.postings(key)
        for i in (3, 17, 250):
            raw = stored[i].astype("<i8").tobytes()
            assert one.remove(ids[i], raw) == many.remove(ids[i], raw) > 0
        assert one.lookup(queries, 32, times=when) == many.lookup(queries, 32, times=when)
        # The index is complete up to where every instance is.
        redis.Redis.from_url(_databases(redis_url, instances)[-1]).set(f"{prefix}-many:index3:seq", 7)
        assert many.lookup(queries[:3], 32, times=when[:3])[1] == 7
        # A lost index caught up from the store's rows (seq, id, keys, time, arrival, sketch) finds the same.
        rows = [(n + 1, ids[n], stored[n].astype("<i8").tobytes(), times[n], times[n], None) for n in range(600)]

        class Rows:
            def index_rows(self, after: int):
                return iter([r for r in rows if r[0] > after])

            def newest_times(self, after: int):
                return max(r[3] for r in rows), max(r[4] for r in rows)

        many.clear()
        many.catch_up(Rows())  # type: ignore[arg-type]
        again = many.lookup(queries, 32, times=when)
        fresh = RedisIndex(redis_url, f"{prefix}-fresh", common=40, window=30)
        try:
            fresh.catch_up(Rows())  # type: ignore[arg-type]
            assert again == fresh.lookup(queries, 32, times=when) and again[1] == 600
        finally:
            fresh.clear()
    finally:
        one.clear()
        many.clear()
        one.close()
        many.close()


def test_an_index_written_on_other_instances_is_refused_until_rebuilt(redis_url: str) -> None:
    """An index written on two instances, read with one of them alone (or in another order), would look for keys
    where they are not: refused with what to do, until the index is cleared (``docsieve reindex``)."""
    from worker.redis_index import IndexShardsChanged

    first, second = _databases(redis_url, 2)
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    keys = [np.arange(10, dtype=np.int64)]
    both = RedisIndex(f"{first},{second}", prefix)
    try:
        both.lookup(keys, 5, stage_ids=["r1"])
        both.add(["r1"], keys, last_seq=1)
        for changed in (first, f"{second},{first}"):
            with pytest.raises(IndexShardsChanged, match="docsieve reindex"):
                RedisIndex(changed, prefix).lookup(keys, 5)
        alone = RedisIndex(first, prefix)
        alone.clear()
        assert alone.lookup(keys, 5) == ([[]], 0)
    finally:
        both.clear()


def test_a_pipeline_on_two_instances_makes_the_stories_one_makes(redis_url: str, tmp_path) -> None:
    """``DOCSIEVE_INDEX_URL`` as a list: a worker ingests, finds copies and publishes across both instances, and
    its payloads go to the first."""
    from worker.payloads import Payloads

    texts = [
        ("a.txt", fixture_text("ar_near_a.txt")),
        ("b.txt", fixture_text("ar_near_b.txt")),
        ("c.txt", fixture_text("ar_other.txt")),
        ("d.txt", fixture_text("en_article.txt")),
        ("e.txt", fixture_text("en_article.txt").replace("\n\n", "\n\nUpdated. ", 1)),
    ]
    got = {}
    urls = _databases(redis_url, 2)
    for name, url in (("one", redis_url), ("two", ",".join(urls))):
        prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
        settings = Settings(store=f"sqlite:///{tmp_path / name}.db", index_url=url, queue_prefix=prefix, batch_size=2)
        pipeline = Pipeline(Store(settings.store), settings, open_index(settings))
        try:
            pipeline.ingest([RawDocument(source, body) for source, body in texts])
            records = {r.id: r for r in pipeline.store.iter_records()}
            got[name] = sorted(
                (r.source, r.status.value, records[r.duplicate_of].source if r.duplicate_of else None)
                for r in records.values()
            )
            if name == "two":
                assert all(RedisIndex(u, prefix).redis_keys() for u in urls)  # both hold keys
                payloads = Payloads.of(settings)
                assert payloads is not None
                key = payloads.put([{"source": "x"}])
                assert redis.Redis.from_url(urls[0]).exists(key)
                payloads.drop(key)
                payloads.close()
        finally:
            RedisIndex(url, prefix).clear()
            pipeline.close()
    assert got["one"] == got["two"]
    assert ("b.txt", "duplicate", "a.txt") in got["two"] and ("e.txt", "duplicate", "d.txt") in got["two"]


T0 = 1_780_000_000


def _wipe(url: str, prefix: str) -> None:
    """One instance restarted empty: this prefix's keys gone from it alone."""
    client = redis.Redis.from_url(url)
    for name in list(client.scan_iter(match=f"{prefix}:*")):
        client.delete(name)


class _Rows:
    """A store's index rows (seq, id, keys, time, arrival, sketch), as the index reads them."""

    def __init__(self, stored, ids, times, arrived=None):
        arrived = times if arrived is None else arrived
        self.rows = [
            (n + 1, ids[n], stored[n].astype("<i8").tobytes(), times[n], arrived[n], None) for n in range(len(ids))
        ]

    def index_rows(self, after: int):
        return iter([r for r in self.rows if r[0] > after])

    def newest_times(self, after: int):
        rows = [r for r in self.rows if r[0] > after]
        return max((r[3] for r in rows if r[3] != r[4]), default=None), max((r[4] for r in rows), default=None)


@contextlib.contextmanager
def writes_counted() -> Iterator[list[int]]:
    """The records each ``RedisIndex._write`` call sends while the block runs."""
    written: list[int] = []
    write = RedisIndex._write

    def counted(index, instance, record_ids, *args, **kwargs):
        written.append(len(record_ids))
        return write(index, instance, record_ids, *args, **kwargs)

    with mock.patch.object(RedisIndex, "_write", counted):
        yield written


def over_days(
    rng: np.random.Generator, count: int, days: int
) -> tuple[list[np.ndarray], list[str], list[int], list[int]]:
    """Records arriving over ``days``: their keys, ids, times and arrivals. Most dated a little before they arrived,
    a fifth undated, some backfilled from long ago."""
    stored = _synthetic(rng, count)
    ids = [f"r{i:05d}" for i in range(count)]
    arrived = sorted(T0 + int(rng.integers(0, days * 86_400)) for _ in stored)
    times = [
        a if k < 0.2 else a - int(rng.integers(0, 300 * 86_400)) if k > 0.9 else a - int(rng.integers(0, 86_400))
        for a, k in zip(arrived, rng.random(count), strict=True)
    ]
    return stored, ids, times, arrived


def test_an_index_caught_up_from_nothing_writes_only_what_a_lookup_can_see(redis_url: str) -> None:
    """A store of 100 days, a window of 10: the rows behind the horizon are left out of a rebuild, and every lookup
    (dated at any time, or undated) answers as the index written whole does, at the same sequence number. (Not
    always so near the common cap: ``RedisIndex._visible_after_loss`` says why.)"""
    rng = np.random.default_rng(5)
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    full = RedisIndex(redis_url, f"{prefix}-full", common=40, window=10)
    rebuilt = RedisIndex(redis_url, f"{prefix}-rebuilt", common=40, window=10)
    try:
        stored, ids, times, arrived = over_days(rng, 2000, 100)
        # The newest arrival, in the middle, is an old article: its arrival still sets the horizon of undated
        # records, though it is not written. The last row is an old article too, which no lookup sees: the sequence
        # number still passes it.
        arrived[1000], times[1000] = arrived[-1] + 3 * 86_400, arrived[-1] - 150 * 86_400
        times[-1] = arrived[-1] - 90 * 86_400
        rows = _Rows(stored, ids, times, arrived)
        with writes_counted() as written:
            with mock.patch.object(RedisIndex, "_visible_after_loss", return_value=None):
                full.catch_up(rows)  # type: ignore[arg-type]
            assert sum(written) == len(stored)
            written.clear()
            rebuilt.catch_up(rows)  # type: ignore[arg-type]
        assert sum(written) < len(stored) * 0.4  # most of 100 days is behind a horizon of 20
        assert rebuilt.posting_count() == full.posting_count()  # the rest was swept as the whole was written
        queries = [*stored, *_synthetic(rng, 50)]
        when = [int(t) for t in rng.choice([*times, *arrived], len(queries))]
        for asked in (when, [None] * len(queries), [*when[:200], *[None] * (len(queries) - 200)]):
            assert rebuilt.lookup(queries, 32, times=asked) == full.lookup(queries, 32, times=asked)
        assert rebuilt.lookup(queries[:1], 1)[1] == len(stored)
        # And a batch after it is staged and swept alike.
        later = [*_synthetic(rng, 20)]
        new_ids = [f"n{i:05d}" for i in range(len(later))]
        for index in (full, rebuilt):
            put(index, new_ids, later, [arrived[-1] + 86_400] * len(later), len(stored) + len(later))
        assert rebuilt.lookup(queries, 32, times=when) == full.lookup(queries, 32, times=when)
    finally:
        full.clear()
        rebuilt.clear()


@pytest.fixture
def pair(redis_url: str):
    rng = np.random.default_rng(11)
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    urls = _databases(redis_url, 2)
    one = RedisIndex(redis_url, f"{prefix}-one", common=40, window=30)
    many = RedisIndex(",".join(urls), prefix, common=40, window=30)
    stored = _synthetic(rng, 300)
    ids = [f"r{i:05d}" for i in range(len(stored))]
    times = [T0 + int(rng.integers(0, 40 * 86_400)) for _ in stored]
    queries = [*_synthetic(rng, 60), *stored[:30]]
    yield one, many, urls, prefix, stored, ids, times, queries
    one.clear()
    many.clear()
    one.close()
    many.close()


def test_a_lost_instance_is_caught_up_alone(pair) -> None:
    one, many, urls, prefix, stored, ids, times, queries = pair
    rows = _Rows(stored, ids, times)
    for index in (one, many):
        index.catch_up(rows)  # type: ignore[arg-type]
    _wipe(urls[1], prefix)
    assert many.lookup(queries[:2], 5)[1] == 0  # complete only up to the lost instance
    many.catch_up(rows)  # type: ignore[arg-type]
    assert many.lookup(queries, 32) == one.lookup(queries, 32)
    assert [many.postings(int(k)) for k in stored[7]] == [one.postings(int(k)) for k in stored[7]]


def test_a_publish_rewrites_the_one_instance_that_was_cleared(pair) -> None:
    one, many, urls, prefix, stored, ids, times, queries = pair
    for index in (one, many):
        index.lookup(stored, 0, times=times, stage_ids=ids)
    _wipe(urls[1], prefix)  # between staging and publishing, on one instance only
    one._instances[0].staged_epoch = b"lost"  # the single instance rewrites the batch too, as the wiped one must
    for index in (one, many):
        index.add(ids, stored, last_seq=300, times=times, arrived=T0 + 50 * 86_400)
    assert many.lookup(queries, 32) == one.lookup(queries, 32)
    assert [many.postings(int(k)) for k in stored[9]] == [one.postings(int(k)) for k in stored[9]]
    assert many.posting_count() == one.posting_count() + len(ids)  # the wiped one took its share only


def test_a_publish_rewrites_nothing_when_no_instance_was_cleared(pair) -> None:
    _one, many, _urls, _prefix, stored, ids, times, _queries = pair
    many.lookup(stored[:50], 0, times=times[:50], stage_ids=ids[:50])
    with mock.patch.object(RedisIndex, "_write", autospec=True) as write:
        many.add(ids[:50], stored[:50], last_seq=50, times=times[:50])
    assert not write.called


def test_keys_are_spread_and_counted_over_the_instances(pair) -> None:
    one, many, urls, prefix, stored, ids, times, _queries = pair
    rows = _Rows(stored, ids, times)
    for index in (one, many):
        index.catch_up(rows)  # type: ignore[arg-type]
    # Each instance holds every record's id and a share of the keys; together, each key once.
    assert many.posting_count() == one.posting_count() + (len(urls) - 1) * len(ids)
    shares = [RedisIndex(u, prefix).posting_count() - len(ids) for u in urls]
    total = one.posting_count() - len(ids)
    assert sum(shares) == total and all(s > total / 4 for s in shares)
    per = [len(RedisIndex(u, prefix).redis_keys()) for u in urls]
    assert len(many.redis_keys()) == sum(per)


def test_clear_writes_each_instance_place_again(pair) -> None:
    _one, many, urls, prefix, _stored, _ids, _times, _queries = pair
    keys = [np.arange(100, dtype=np.int64)]
    many.lookup(keys, 5, stage_ids=["a"])
    many.clear()
    many.lookup(keys, 5, stage_ids=["a"])
    assert [redis.Redis.from_url(u).hget(f"{prefix}:index3:state", "instance") for u in urls] == [b"0/2", b"1/2"]


def test_ping_covers_every_instance_and_a_call_leaves_no_thread(redis_url: str) -> None:
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    down = RedisIndex(f"{redis_url},redis://127.0.0.1:1/0", prefix)
    with pytest.raises(redis.ConnectionError):
        down.ping()
    down.close()
    many = RedisIndex(",".join(_databases(redis_url, 2)), prefix)
    threads = threading.active_count()
    many.lookup([np.arange(5, dtype=np.int64)], 5)
    assert threading.active_count() == threads  # no idle thread left to stop the pipeline forking
    many.clear()
    many.close()


def test_a_password_with_a_comma_still_names_one_instance(redis_url: str) -> None:
    url = redis_url.replace("redis://", "redis://:se,cret@", 1)
    index = RedisIndex(url, f"docsieve-test-{uuid.uuid4().hex[:8]}")
    assert len(index._instances) == 1


def test_instances_keep_one_span_whoever_catches_a_lost_one_up(pair) -> None:
    _one, many, urls, prefix, stored, ids, times, _queries = pair
    rows = _Rows(stored, ids, times)
    many.catch_up(rows)  # type: ignore[arg-type]
    _wipe(urls[1], prefix)
    other = RedisIndex(",".join(urls), prefix, common=40, window=10)  # a worker with another window
    other.catch_up(rows)  # type: ignore[arg-type]
    spans = {redis.Redis.from_url(u).hget(f"{prefix}:index3:state", "span") for u in urls}
    assert len(spans) == 1


def test_an_index_closed_is_usable_again_as_one_instance_is(redis_url: str) -> None:
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    keys = [np.arange(5, dtype=np.int64)]
    for url in (redis_url, ",".join(_databases(redis_url, 2))):
        index = RedisIndex(url, prefix)
        index.lookup(keys, 5)
        index.close()
        try:
            assert index.lookup(keys, 5) == ([[]], 0)  # redis-py reconnects; the pool is shut down for good
        finally:
            index.clear()


def test_a_worker_still_on_the_old_list_is_refused_once_the_index_is_rebuilt_on_another(redis_url: str) -> None:
    """A long-lived worker checks its list on every call, not once: after a ``docsieve reindex`` on the same
    instances in another order, its next lookup is refused instead of looking in the wrong instance."""
    from worker.redis_index import IndexShardsChanged

    first, second = _databases(redis_url, 2)
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    keys = [np.arange(10, dtype=np.int64)]
    worker = RedisIndex(f"{first},{second}", prefix)
    rebuilt = RedisIndex(f"{second},{first}", prefix)
    try:
        worker.lookup(keys, 5, stage_ids=["x1"])
        worker.add(["x1"], keys, last_seq=1)
        rebuilt.clear()
        rebuilt.lookup(keys, 5, stage_ids=["x1"])
        rebuilt.add(["x1"], keys, last_seq=1)
        assert rebuilt.lookup(keys, 5)[0] == [["x1"]]
        with pytest.raises(IndexShardsChanged):
            worker.lookup(keys, 5)
    finally:
        rebuilt.clear()
        worker.close()
        rebuilt.close()


def test_a_catch_up_interrupted_by_a_loss_never_claims_the_records_lost(redis_url: str, prefix: str) -> None:
    rng = np.random.default_rng(5)
    stored = _synthetic(rng, 2500)
    ids = [f"r{i:05d}" for i in range(len(stored))]
    rows = _Rows(stored, ids, [T0] * len(stored))
    index = RedisIndex(redis_url, prefix)
    write = RedisIndex._write_rows
    chunks: list[int] = []

    def lost_after_the_first(self, batch, *more):
        write(self, batch, *more)
        chunks.append(len(batch))
        if len(chunks) == 1:
            _wipe(redis_url, prefix)  # Redis restarted without its data

    try:
        with mock.patch.object(RedisIndex, "_write_rows", lost_after_the_first):
            index.catch_up(rows)  # type: ignore[arg-type]
        found, seq = index.lookup([stored[0]], 10_000)
        assert "r00000" in found[0] or seq == 0, f"seq {seq} claims r00000 ({len(found[0])} candidates held)"
        index.catch_up(rows)  # type: ignore[arg-type]  # the next one writes it all again
        found, seq = index.lookup([stored[0]], 10_000)
        assert "r00000" in found[0] and seq == len(stored)
    finally:
        index.clear()
        index.close()


def test_an_index_exactly_at_the_threshold_is_read_into_the_batch(redis_url, prefix, store_url, monkeypatch) -> None:
    pipeline, _ = _near_copy_pipeline(redis_url, prefix, store_url)
    held: list[int] = []
    catch_up = SegmentIndex.catch_up

    def counted(index, store) -> None:
        catch_up(index, store)
        held.append(index.size()[0])

    try:
        with pipeline.store.reading() as txn:
            behind = txn.last_seq()
        monkeypatch.setattr("docsieve.pipeline.LAG_CAUGHT_UP_FIRST", behind)
        pipeline.index.clear()
        with mock.patch.object(SegmentIndex, "catch_up", counted):
            pipeline.ingest([RawDocument("b.txt", fixture_text("ar_near_b.txt"))])
        assert max(held) == behind
    finally:
        pipeline.close()


def test_an_index_that_is_current_is_not_caught_up_first_however_large_the_store(
    redis_url, prefix, store_url, monkeypatch
) -> None:
    pipeline, _ = _near_copy_pipeline(redis_url, prefix, store_url)
    try:
        monkeypatch.setattr("docsieve.pipeline.LAG_CAUGHT_UP_FIRST", 2)  # the store holds 5 records
        holds = pipeline.store.lock_holds
        pipeline.ingest([RawDocument("b.txt", fixture_text("ar_near_b.txt"))])
        assert pipeline.store.lock_holds == holds + 1
    finally:
        pipeline.close()


def test_the_second_lookup_stages_and_never_names_the_batch_itself(redis_url, prefix, store_url, monkeypatch) -> None:
    pipeline, _ = _near_copy_pipeline(redis_url, prefix, store_url)
    answers: list = []
    lookup = pipeline.index.lookup

    def recorded(*args, **kwargs):
        found, seq = lookup(*args, **kwargs)
        answers.append(found)
        return found, seq

    try:
        monkeypatch.setattr("docsieve.pipeline.LAG_CAUGHT_UP_FIRST", 2)
        pipeline.index.clear()
        own = pipeline.prepare([RawDocument("b.txt", fixture_text("ar_near_b.txt"))])[1][0].id
        with mock.patch.object(pipeline.index, "lookup", side_effect=recorded):
            pipeline.ingest([RawDocument("b.txt", fixture_text("ar_near_b.txt"))])
        assert len(answers) == 2
        assert all(own not in found for answer in answers for found in answer)
    finally:
        pipeline.close()


def test_a_lookup_waits_its_turn_on_a_busy_redis_past_the_clients_default_timeout(tmp_path) -> None:
    """redis-py 8 stops reading after 5 s unless told otherwise; the index's scripts wait their turn behind other
    workers' on Redis's one thread, which took longer than that on a busy machine. A private Redis pauses every
    client for 6 s (as a long queue of scripts does) while a lookup that stages a batch is sent: it waits, and
    answers. The task payloads, kept in the same Redis, wait as well; the readiness check does not, and says so. A
    ``socket_timeout`` in the URL still sets a limit."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.services import EPHEMERAL, PrivateRedis
    from worker.payloads import Payloads

    server = PrivateRedis(tmp_path, EPHEMERAL)
    server.start()
    try:
        keys = [np.arange(10, dtype=np.int64)]
        index = RedisIndex(server.url(), "docsieve-test-busy")
        payloads = Payloads(server.url(), "docsieve-test-busy", ttl=60)
        index.lookup(keys, 0, stage_ids=["r1"])  # the scripts loaded: the next call is a single EVALSHA
        index.ping()
        admin = redis.Redis(port=server.port)
        admin.client_pause(6000)
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            staged, read = pool.submit(index.lookup, keys, 0, stage_ids=["r2"]), pool.submit(payloads._redis.ping)
            with pytest.raises(redis.exceptions.TimeoutError):
                index.ping()
            assert time.monotonic() - started < 5.9  # said while the pause lasted
            staged.result()
            assert read.result()
        assert time.monotonic() - started > 5
        index.add(["r1", "r2"], keys * 2, last_seq=2, times=[T, T])
        assert index.lookup(keys, 5)[0] == [["r1", "r2"]]
        limited = RedisIndex(server.url() + "?socket_timeout=1", "docsieve-test-busy")
        limited.lookup(keys, 5)
        admin.client_pause(2000)
        with pytest.raises(redis.exceptions.TimeoutError):
            limited.lookup(keys, 5)
        for client in (admin, payloads._redis, *(i.redis for i in index._instances)):
            client.close()
    finally:
        server.stop()


def test_a_script_the_client_gave_up_on_is_not_sent_again(tmp_path) -> None:
    """A ``socket_timeout`` in the URL gives up on a script that runs long; Redis runs it all the same, so a client
    that sent it again (a retry policy: ``retry_on_timeout``, a ``Retry`` of redis-py's) would run it twice."""
    from tests.services import EPHEMERAL, PrivateRedis
    from worker.redis_index import connect

    busy = """local t = redis.call('TIME')
local from = t[1] * 1e6 + t[2]
repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - from > tonumber(ARGV[1])
return redis.call('INCR', KEYS[1])"""
    server = PrivateRedis(tmp_path, EPHEMERAL)
    server.start()
    try:
        client = connect(server.url() + "?socket_timeout=0.3")
        sha = client.script_load(busy)
        with pytest.raises(redis.exceptions.TimeoutError):
            client.evalsha(sha, 1, "runs", 600_000)  # 0.6 s
        time.sleep(1.5)  # a script sent again would have run by now
        assert redis.Redis(port=server.port).get("runs") == b"1"
    finally:
        server.stop()
