"""The candidate index protocol (docsieve/index.py): the embedded index and the shared one agree."""

from __future__ import annotations

import numpy as np

from docsieve.index import MemoryIndex
from worker.redis_index import RedisIndex


def test_memory_and_redis_indexes_find_the_same_candidates(redis_index: RedisIndex) -> None:
    rng = np.random.default_rng(3)
    records = [np.unique(rng.integers(0, 500, size=40, dtype=np.int64)) for _ in range(60)]
    ids = [f"r{i}" for i in range(60)]
    memory = MemoryIndex()
    for start in range(0, 60, 7):  # several batches: several segments in memory
        memory.add(ids[start : start + 7], records[start : start + 7], last_seq=start + 7)
        redis_index.lookup(records[start : start + 7], 0, stage_ids=ids[start : start + 7])
        redis_index.add(ids[start : start + 7], records[start : start + 7], last_seq=start + 7)
    queries = [np.unique(rng.integers(0, 500, size=30, dtype=np.int64)) for _ in range(10)]
    found_memory = memory.candidates([np.unique(q) for q in queries], limit=5)
    found_redis, _ = redis_index.lookup(queries, limit=5)
    for a, b, q in zip(found_memory, found_redis, queries, strict=True):
        shared = {rid: len(set(q.tolist()) & set(records[int(rid[1:])].tolist())) for rid in set(a) | set(b)}
        # The same records, up to ties in the number of shared keys.
        assert sorted(shared[r] for r in a) == sorted(shared[r] for r in b)
