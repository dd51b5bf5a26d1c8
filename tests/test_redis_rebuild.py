"""The shared index rebuilt from the store's rows (worker/redis_index.py ``catch_up`` from nothing): after Redis lost
its data, a ``reindex``'s clear, an instance lost of several, with workers catching up at once; the rows left out
are those no lookup could see, and the index's sequence number never claims a row it does not hold."""

from __future__ import annotations

import uuid
from unittest import mock

import numpy as np
import pytest

from tests.test_redis_index import T0, _databases, _Rows, _synthetic, _wipe, over_days, put, writes_counted
from worker import redis_index as ri
from worker.redis_index import RedisIndex

DAY = 86_400


def test_a_rebuild_uses_the_span_the_index_holds_not_its_own(redis_url: str) -> None:
    """`reindex` run with DOCSIEVE_INDEX_WINDOW=2 while workers still run with 10: a worker's stage after the clear
    fixes the index's span at 5 days, and the rebuild, which learns that span on its first write, had computed its
    horizon with its own 1 day: a record 10 days old (inside the workers' 20-day horizon) is left out for good."""
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    worker = RedisIndex(redis_url, prefix, window=10)
    reindex = RedisIndex(redis_url, prefix, window=2)
    rng = np.random.default_rng(2)
    stored = [np.unique(rng.integers(1, 10**12, size=30)) for _ in range(2)]
    ids = ["old", "new"]
    times = [T0, T0 + 10 * DAY]
    rows = _Rows(stored, ids, times, [t + 3600 for t in times])
    try:
        reindex.clear()
        worker.lookup([np.array([5], dtype=np.int64)], 0, times=[None], stage_ids=["staged"])  # a worker stages
        reindex.catch_up(rows)  # type: ignore[arg-type]
        found, seq = worker.lookup([stored[0]], 10, times=[T0])
        assert seq == 2
        assert found == [["old"]], found
    finally:
        worker.clear()


def test_a_worker_catching_up_during_a_clear_leaves_no_seq_that_claims_removed_rows(redis_url: str) -> None:
    """A reindex's clear deletes keys batch after batch (SCAN). A worker's catch-up outside the lock (PostgreSQL's
    before_lock) that runs after the seq key was deleted but before the epoch was, publishes with the epoch it read:
    the seq key it makes is not returned by the ongoing SCAN, so it outlives the clear, and the rebuild starts
    from it: the rows before it are nowhere."""
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    worker = RedisIndex(redis_url, prefix)
    reindex = RedisIndex(redis_url, prefix)
    rng = np.random.default_rng(3)
    stored = [np.unique(rng.integers(1, 10**12, size=30)) for _ in range(20)]
    ids = [f"r{i:03d}" for i in range(20)]
    rows = _Rows(stored, ids, [T0] * 20)
    try:
        worker.catch_up(rows)  # type: ignore[arg-type]
        assert worker.lookup([stored[0]], 10)[1] == 20
        client = reindex._instances[0].redis
        seq_key = f"{prefix}:index3:seq".encode()
        epoch_key = f"{prefix}:index3:epoch".encode()
        names = list(client.scan_iter(match=f"{prefix}:*"))
        order = [seq_key] + [n for n in names if n not in (seq_key, epoch_key)] + [epoch_key]
        real_delete = client.delete
        raced = []

        def delete(*batch):
            n = real_delete(*batch)
            if seq_key in batch and not raced:
                raced.append(1)
                worker.catch_up(rows)  # type: ignore[arg-type]  # a worker that saw seq 0
            return n

        with (
            mock.patch.object(client, "scan_iter", lambda match, **kw: iter(order if ":index3:" in match else [])),
            mock.patch.object(client, "delete", delete),
            mock.patch.object(ri, "batched", lambda it, n: ([x] for x in it)),
        ):
            reindex.clear()
        reindex.catch_up(rows)  # type: ignore[arg-type]
        found, seq = worker.lookup([stored[0]], 10)
        assert "r000" in found[0] or seq == 0, (found, seq)
    finally:
        worker.clear()


def test_newest_times_are_those_of_the_index_rows(store_url: str) -> None:
    """newest_times(after) agrees with index_rows(after) on both back ends: the newest time among the dated rows
    (time != arrival: a publication in the future is undated), and the newest arrival."""
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from docsieve.models import RawDocument
    from docsieve.pipeline import Pipeline
    from docsieve.schema import records
    from docsieve.settings import Settings
    from docsieve.store import Store
    from tests.conftest import fixture_text

    settings = Settings(store=store_url)
    pipeline = Pipeline(Store(store_url), settings)
    names = ["ar_near_a.txt", "ar_other.txt", "ar_template_a.txt", "en_article.txt", "ar_long_article.txt"]
    try:
        pipeline.ingest([RawDocument(n, fixture_text(n)) for n in names])
        base = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
        plan = [  # seq order: (published, arrived)
            (base - timedelta(days=3), base),  # dated
            (None, base + timedelta(days=1)),  # undated
            (base + timedelta(days=9), base + timedelta(days=2)),  # published after arrival: undated
            (base + timedelta(days=2, seconds=-10), base + timedelta(days=2)),  # dated, the newest dated
            (base - timedelta(days=40), base + timedelta(days=1, hours=1)),  # dated, old; arrival not the newest
        ]
        with pipeline.store.engine.begin() as conn:
            seqs = sorted(conn.scalars(sa.select(records.c.seq).where(records.c.index_keys.is_not(None))))
            assert len(seqs) == len(plan)
            for seq, (published, arrived) in zip(seqs, plan, strict=True):
                conn.execute(
                    records.update().where(records.c.seq == seq).values(published_at=published, created_at=arrived)
                )
            # A record taken down (its keys gone) that arrived last, published just before: no index row.
            conn.execute(
                records.update()
                .where(records.c.seq == seqs[1])
                .values(index_keys=None, published_at=base + timedelta(days=50), created_at=base + timedelta(days=51))
            )
        with pipeline.store.reading() as txn:
            for after in [0, *seqs]:
                rows = list(txn.index_rows(after))
                want = (
                    max((r[3] for r in rows if r[3] != r[4]), default=None),
                    max((r[4] for r in rows), default=None),
                )
                assert txn.newest_times(after) == want, after
            assert txn.newest_times(0) == (
                int((base + timedelta(days=2, seconds=-10)).timestamp()),
                int((base + timedelta(days=2)).timestamp()),
            )
    finally:
        pipeline.close()


@pytest.mark.parametrize("lost", ["both", "one"])
def test_two_instances_rebuilt_answer_as_one_written_whole(redis_url: str, lost: str) -> None:
    rng = np.random.default_rng(5)
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    urls = _databases(redis_url, 2)
    full = RedisIndex(redis_url, f"{prefix}-full", common=40, window=10)
    many = RedisIndex(",".join(urls), prefix, common=40, window=10)
    try:
        stored, ids, times, arrived = over_days(rng, 2000, 100)
        rows = _Rows(stored, ids, times, arrived)
        with mock.patch.object(RedisIndex, "_visible_after_loss", return_value=None):
            full.catch_up(rows)  # type: ignore[arg-type]
            if lost == "one":
                many.catch_up(rows)  # type: ignore[arg-type]
        if lost == "one":
            _wipe(urls[1], prefix)
        many.catch_up(rows)  # type: ignore[arg-type]
        queries = [*stored, *_synthetic(rng, 50)]
        when = [int(t) for t in rng.choice([*times, *arrived], len(queries))]
        for asked in (when, [None] * len(queries)):
            assert many.lookup(queries, 32, times=asked) == full.lookup(queries, 32, times=asked)
        later = _synthetic(rng, 20)
        new_ids = [f"n{i:05d}" for i in range(len(later))]
        for index in (full, many):
            put(index, new_ids, later, [arrived[-1] + 86_400] * len(later), len(stored) + len(later))
        for asked in (when, [None] * len(queries)):
            assert many.lookup(queries, 32, times=asked) == full.lookup(queries, 32, times=asked)
    finally:
        full.clear()
        many.clear()


def test_two_workers_catching_up_from_nothing_at_once(redis_url: str) -> None:
    rng = np.random.default_rng(7)
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    full = RedisIndex(redis_url, f"{prefix}-full", common=40, window=10)
    w1 = RedisIndex(redis_url, prefix, common=40, window=10)
    w2 = RedisIndex(redis_url, prefix, common=40, window=10)
    try:
        stored = _synthetic(rng, 3000)
        ids = [f"r{i:05d}" for i in range(len(stored))]
        arrived = sorted(T0 + int(rng.integers(0, 100 * 86_400)) for _ in stored)
        times = [
            a if k < 0.2 else a - int(rng.integers(0, 86_400))
            for a, k in zip(arrived, rng.random(len(stored)), strict=True)
        ]
        old = _Rows(stored[:1500], ids[:1500], times[:1500], arrived[:1500])  # w1's read of the store, earlier
        rows = _Rows(stored, ids, times, arrived)
        with mock.patch.object(RedisIndex, "_visible_after_loss", return_value=None):
            full.catch_up(rows)  # type: ignore[arg-type]
        write = RedisIndex._write_rows
        calls = []

        def interleaved(self, batch, *more):
            write(self, batch, *more)
            if self is w1:
                calls.append(1)
                if len(calls) == 1:
                    w2.catch_up(rows)  # type: ignore[arg-type]

        with mock.patch.object(RedisIndex, "_write_rows", interleaved):
            w1.catch_up(old)  # type: ignore[arg-type]
        queries = [*stored, *_synthetic(rng, 50)]
        when = [int(t) for t in rng.choice([*times, *arrived], len(queries))]
        for asked in (when, [None] * len(queries)):
            assert w1.lookup(queries, 32, times=asked) == full.lookup(queries, 32, times=asked)
    finally:
        full.clear()
        w1.clear()


def test_rows_exactly_at_the_horizon_are_written(redis_url: str) -> None:
    """Window 10 days: horizons 20 days behind the newest. A dated row exactly 20 days before the newest dated
    time, an undated one exactly 20 days before the newest arrival: a lookup takes both (>=), so a rebuild writes
    both."""
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    index = RedisIndex(redis_url, prefix, window=10)
    rng = np.random.default_rng(9)
    stored = [np.unique(rng.integers(1, 10**12, size=30)) for _ in range(4)]
    ids = ["dated", "undated", "newest-dated", "newest"]
    times = [T0, T0 + 5 * DAY, T0 + 20 * DAY, T0 + 25 * DAY]
    arrived = [T0 + 3600, T0 + 5 * DAY, T0 + 20 * DAY + 3600, T0 + 25 * DAY]
    try:
        index.catch_up(_Rows(stored, ids, times, arrived))  # type: ignore[arg-type]
        assert index.lookup([stored[0]], 5, times=[T0])[0] == [["dated"]]
        assert index.lookup([stored[1]], 5, times=[None])[0] == [["undated"]]
    finally:
        index.clear()


def test_a_catch_up_that_does_not_start_from_nothing_never_reads_the_whole_store(redis_url: str) -> None:
    """newest_times(0) reads every row of the store: only a rebuild from seq 0 may pay it (every batch catches
    up, before the lock and under it)."""
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    index = RedisIndex(redis_url, prefix, window=10)
    rng = np.random.default_rng(9)
    stored = [np.unique(rng.integers(1, 10**12, size=30)) for _ in range(3)]
    rows = _Rows(stored, ["a", "b", "c"], [T0, T0 + DAY, T0 + 2 * DAY])
    try:
        index.catch_up(_Rows(stored[:1], ["a"], [T0]))  # type: ignore[arg-type]
        with mock.patch.object(_Rows, "newest_times", side_effect=AssertionError("read the whole store")):
            index.catch_up(rows)  # type: ignore[arg-type]
        assert index.lookup([stored[2]], 5)[1] == 3
    finally:
        index.clear()


def test_one_lost_instance_of_two_is_rebuilt_with_what_a_lookup_can_see_only(redis_url: str) -> None:
    rng = np.random.default_rng(5)
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    urls = _databases(redis_url, 2)
    many = RedisIndex(",".join(urls), prefix, common=40, window=10)
    try:
        stored = _synthetic(rng, 2000)
        ids = [f"r{i:05d}" for i in range(len(stored))]
        times = sorted(T0 + int(rng.integers(0, 100 * 86_400)) for _ in stored)
        rows = _Rows(stored, ids, times)
        many.catch_up(rows)  # type: ignore[arg-type]
        _wipe(urls[1], prefix)
        with writes_counted() as written:
            many.catch_up(rows)  # type: ignore[arg-type]
        assert sum(written) < len(stored) * 0.4
        assert many.lookup([stored[-1]], 5)[1] == len(stored)
    finally:
        many.clear()


def test_a_loss_just_after_the_seq_and_epoch_are_read_never_lets_the_seq_claim_lost_rows(
    redis_url: str, prefix: str
) -> None:
    rng = np.random.default_rng(5)
    stored = _synthetic(rng, 1500)
    ids = [f"r{i:05d}" for i in range(len(stored))]
    index = RedisIndex(redis_url, prefix)
    try:
        index.catch_up(_Rows(stored[:1000], ids[:1000], [T0] * 1000))  # type: ignore[arg-type]
        rows = _Rows(stored, ids, [T0] * len(stored))
        client = index._instances[0].redis
        make = client.pipeline
        reads: list[int] = []

        def pipeline(*args, **kwargs):
            pipe = make(*args, **kwargs)
            execute = pipe.execute

            def executed(*a, **k):
                out = execute(*a, **k)
                reads.append(1)
                if len(reads) == 1:
                    _wipe(redis_url, prefix)  # Redis restarted empty right after the first read
                return out

            pipe.execute = executed
            return pipe

        with mock.patch.object(client, "pipeline", pipeline):
            index.catch_up(rows)  # type: ignore[arg-type]
        found, seq = index.lookup([stored[0]], 10_000)
        assert "r00000" in found[0] or seq == 0, (seq, len(found[0]))
    finally:
        index.clear()


def test_rows_stored_after_the_newest_times_were_read_are_written(redis_url: str) -> None:
    """PostgreSQL reads newest_times and index_rows in two statements (READ COMMITTED, before the lock): rows
    stored in between come in index_rows alone, dated ones included when none was dated before."""
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    index = RedisIndex(redis_url, prefix, window=10)
    rng = np.random.default_rng(9)
    stored = [np.unique(rng.integers(1, 10**12, size=30)) for _ in range(3)]
    rows = _Rows(stored, ["undated", "dated", "last"], [T0, T0 + 3600, T0 + 7200], [T0, T0 + 7200, T0 + 7200])
    try:
        with mock.patch.object(_Rows, "newest_times", return_value=(None, T0)):  # read before the two were stored
            index.catch_up(rows)  # type: ignore[arg-type]
        assert index.lookup([stored[1]], 5, times=[T0])[0] == [["dated"]]
    finally:
        index.clear()
