"""The shared candidate index in Redis (worker/redis_index.py): it reconciles with the store after a crash,
lists a record once, keeps the earliest records of a key, and clears only its own keys."""

from __future__ import annotations

import uuid

import numpy as np
import redis

from docsieve.index import open_index
from docsieve.models import RawDocument
from docsieve.pipeline import Pipeline
from docsieve.settings import Settings
from docsieve.store import Store
from tests.conftest import fixture_text
from worker.redis_index import RedisIndex


def test_redis_index_catches_up_with_the_store(redis_url: str, tmp_path) -> None:
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    settings = Settings(store=f"sqlite:///{tmp_path / 's.db'}", index_url=redis_url, queue_prefix=prefix)
    pipeline = Pipeline(Store(settings.store), settings, open_index(settings))
    try:
        pipeline.ingest([RawDocument("a.txt", fixture_text("ar_near_a.txt"))])
        (a,) = list(pipeline.store.iter_records())
        query = [pipeline.prepare([RawDocument("q.txt", fixture_text("ar_near_b.txt"))])[1][0].keys]
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
    assert redis_index.lookup(keys, 5) == ([["r1"]], 7)


def test_a_record_is_listed_once_however_often_its_keys_are_written(redis_index: RedisIndex) -> None:
    keys = [np.arange(5, dtype=np.int64)]
    for _ in range(3):
        redis_index.lookup(keys, 0, stage_ids=["r1"])
    redis_index.lookup(keys, 0, stage_ids=["r2"])
    assert redis_index.lookup(keys, 5)[0] == [["r1", "r2"]]


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
    raw = redis_index._redis.hget(f"{redis_index._prefix}postings", np.array([5], dtype="<i8").tobytes())
    assert raw == (twice + other).encode()


def test_clear_removes_both_layouts_and_nothing_else(redis_url: str) -> None:
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    mine = [f"{prefix}:index:postings", f"{prefix}:index2:seq"]
    others = [f"{prefix}:indexer", f"{prefix}:index-b:seq"]
    for key in mine + others:
        client.set(key, "1")
    try:
        assert RedisIndex(redis_url, prefix).clear() == 2
        assert [client.exists(k) for k in mine + others] == [0, 0, 1, 1]
    finally:
        client.delete(*others)
