"""The two candidate indexes agree, and the shared one reconciles with the store after a crash."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import redis

from tests.conftest import fixture_text
from tests.services import redis_server
from worker.index import POSTINGS_PER_KEY, MemoryIndex, RedisIndex, keys_of
from worker.models import RawDocument
from worker.pipeline import Pipeline
from worker.settings import Settings
from worker.store import Store


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture
def redis_index(redis_url: str):
    index = RedisIndex(redis_url, f"docsieve-test-{uuid.uuid4().hex[:8]}")
    yield index
    index.clear()


def test_memory_and_redis_indexes_find_the_same_candidates(redis_index: RedisIndex) -> None:
    rng = np.random.default_rng(3)
    records = [np.unique(rng.integers(0, 500, size=40, dtype=np.int64)) for _ in range(60)]
    ids = [f"r{i}" for i in range(60)]
    memory = MemoryIndex()
    for start in range(0, 60, 7):  # several batches: several segments in memory
        memory.add(ids[start : start + 7], records[start : start + 7], last_seq=start + 7)
        redis_index.stage(ids[start : start + 7], records[start : start + 7])
        redis_index.add(ids[start : start + 7], records[start : start + 7], last_seq=start + 7)
    queries = [np.unique(rng.integers(0, 500, size=30, dtype=np.int64)) for _ in range(10)]
    found_memory = memory.candidates([np.unique(q) for q in queries], limit=5)
    found_redis, _ = redis_index.lookup(queries, limit=5)
    for a, b, q in zip(found_memory, found_redis, queries, strict=True):
        shared = {rid: len(set(q.tolist()) & set(records[int(rid[1:])].tolist())) for rid in set(a) | set(b)}
        # The same records, up to ties in the number of shared keys.
        assert sorted(shared[r] for r in a) == sorted(shared[r] for r in b)


def test_redis_index_catches_up_with_the_store(redis_url: str, tmp_path) -> None:
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    settings = Settings(store=f"sqlite:///{tmp_path / 's.db'}", index_url=redis_url, queue_prefix=prefix)
    store = Store(settings.store)
    try:
        Pipeline(store, settings).ingest([RawDocument("a.txt", fixture_text("ar_near_a.txt"))])
        # A crash that lost the index (or a Redis that lost its data): only the store remembers.
        RedisIndex(redis_url, prefix).clear()
        summary = Pipeline(store, settings).ingest([RawDocument("b.txt", fixture_text("ar_near_b.txt"))])
        assert summary.near == 1  # found through the index, rebuilt from the store's rows
        index = RedisIndex(redis_url, prefix)
        fp = Pipeline(store, settings).prepare([RawDocument("q.txt", fixture_text("ar_near_a.txt"))])[1][0]
        assert len(index.lookup([keys_of(fp.fingerprint)], 5)[0][0]) == 2
    finally:
        RedisIndex(redis_url, prefix).clear()
        store.close()
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match=f"{prefix}*"))


def test_reindex_command_rebuilds_the_shared_index(redis_url: str, tmp_path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DOCSIEVE_STORE": f"sqlite:///{tmp_path / 's.db'}",
        "DOCSIEVE_INDEX_URL": redis_url,
        "DOCSIEVE_QUEUE_PREFIX": prefix,
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "worker.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )

    assert run("ingest", "seeds/").returncode == 0
    client = redis.Redis.from_url(redis_url)
    postings = f"{prefix}:index:postings"
    before = client.hgetall(postings)
    client.hdel(postings, *list(before)[: len(before) // 2])  # half the index lost
    rebuilt = run("reindex")
    assert rebuilt.returncode == 0, rebuilt.stderr
    after = {int(np.frombuffer(k, "<i8")[0]): v.decode().split(",") for k, v in client.hgetall(postings).items()}
    store = Store(env["DOCSIEVE_STORE"])
    with store.reading() as txn:
        rows = list(txn.index_rows(0))
    store.close()
    assert len(rows) > 10 and len(before) > 100
    for _, record_id, blob in rows:  # every stored record is found again under each of its keys
        for key in np.frombuffer(blob, dtype=np.int64).tolist():
            assert record_id in after[key] or len(after[key]) == POSTINGS_PER_KEY
    RedisIndex(redis_url, prefix).clear()
