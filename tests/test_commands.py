"""The deployment's subcommands of ``docsieve`` (worker/commands.py)."""

from __future__ import annotations

import re
import uuid

import pytest
import redis

from docsieve.fingerprint import unpack_keys
from docsieve.store import Store
from worker.redis_index import RedisIndex


@pytest.mark.slow
def test_reindex_command_rebuilds_the_shared_index(redis_url: str, tmp_path) -> None:
    from tests.test_cli import docsieve

    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    shared = {"DOCSIEVE_INDEX_URL": redis_url, "DOCSIEVE_QUEUE_PREFIX": prefix}
    store_url = f"sqlite:///{tmp_path / 's.db'}"

    def run(*args: str):
        return docsieve(*args, store=store_url, env=shared)

    assert run("ingest", "seeds/").returncode == 0
    client = redis.Redis.from_url(redis_url)
    index = RedisIndex(redis_url, prefix)
    buckets = [k for k in index.redis_keys() if b"b" in k.rsplit(b":", 1)[1]]  # the postings' strings
    client.delete(*buckets[: len(buckets) // 2])  # half the index lost
    rebuilt = run("reindex")
    assert rebuilt.returncode == 0, rebuilt.stderr
    store = Store(store_url)
    with store.reading() as txn:
        rows = list(txn.index_rows(0))
    store.close()
    assert len(rows) > 10 and len(buckets) > 1
    for _, record_id, blob, *_ in rows:  # every stored record is found again under each of its keys
        for key in unpack_keys(blob).tolist():
            assert record_id in index.postings(key)
    RedisIndex(redis_url, prefix).clear()


@pytest.mark.slow
def test_reindex_command_rebuilds_the_embedded_index_files(tmp_path) -> None:
    from tests.test_cli import docsieve

    store_url = f"sqlite:///{tmp_path / 's.db'}"
    assert docsieve("ingest", "seeds/", store=store_url).returncode == 0
    files = tmp_path / "s.db.index"
    before = sorted(p.name for p in files.iterdir())
    (files / "index.json").write_text("{not json")
    rebuilt = docsieve("reindex", store=store_url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert re.search(r"rebuilt from .*: 25 records, \d+ keys", rebuilt.stdout), rebuilt.stdout
    after = sorted(p.name for p in files.iterdir())
    assert len(after) == len(before) and after != before  # new segment files, none left over
    similar = docsieve("similar", "seeds/013_rafale_truncated.txt", store=store_url)
    assert "010_rafale_original.txt" in similar.stdout


@pytest.mark.slow
def test_an_index_list_changed_is_refused_in_a_line_until_reindexed(redis_url: str, tmp_path) -> None:
    """The index on two instances, then the same two named in the other order: `ingest` says in one line what to
    do (no traceback) and exits 2; `docsieve reindex` on the new list rebuilds it, after which `ingest` works."""
    from tests.test_cli import docsieve
    from tests.test_redis_index import _databases

    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    first, second = _databases(redis_url, 2)
    store_url = f"sqlite:///{tmp_path / 's.db'}"

    def run(urls: str, *args: str):
        return docsieve(*args, store=store_url, env={"DOCSIEVE_INDEX_URL": urls, "DOCSIEVE_QUEUE_PREFIX": prefix})

    try:
        assert run(f"{first},{second}", "ingest", "seeds/").returncode == 0
        refused = run(f"{second},{first}", "ingest", "seeds/")
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert "DOCSIEVE_INDEX_URL" in refused.stderr and "docsieve reindex" in refused.stderr
        assert run(f"{second},{first}", "reindex").returncode == 0
        again = run(f"{second},{first}", "ingest", "seeds/")
        assert again.returncode == 0, again.stderr
    finally:
        RedisIndex(f"{first},{second}", prefix).clear()
