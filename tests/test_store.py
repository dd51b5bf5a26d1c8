import contextlib
import functools
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from docsieve.models import Method, RawDocument, Record, Status
from docsieve.pipeline import Pipeline
from docsieve.schema import metadata, records
from docsieve.settings import Settings
from docsieve.store import MIGRATIONS, SCHEMA_REVISION, NewRecord, Store, Transaction
from docsieve.templates import ShingleCounts
from tests.conftest import fixture_text


def alembic_config(connection: sa.Connection | None = None):
    """Alembic's configuration for docsieve's migrations, on this connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def test_schema_revision_is_the_migrations_head() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_REVISION


def test_the_migrations_build_what_a_new_store_gets(store_url: str) -> None:
    """A new store is created from the models in one step; an old one is migrated step by step: the
    two must end with the same schema."""
    from alembic import command

    migrated = sa.create_engine(store_url)
    with migrated.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    with migrated.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert conn.scalar(sa.text("select version_num from alembic_version")) == SCHEMA_REVISION
    migrated.dispose()


def test_migrations_reach_head_and_are_idempotent(store_url: str) -> None:
    Store(store_url).close()
    store = Store(store_url)  # second open: already at head, nothing to do
    with store.engine.connect() as conn:
        assert conn.scalar(sa.text("select version_num from alembic_version")) == SCHEMA_REVISION
        # The migrations build exactly the schema the code declares.
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    store.close()


def test_a_store_refuses_settings_that_make_other_fingerprints(store_url: str) -> None:
    from docsieve.pipeline import Pipeline
    from docsieve.store import StoreError

    store = Store(store_url)
    Pipeline(store, Settings(store=store_url))
    Pipeline(store, Settings(store=store_url, jaccard_threshold=0.6))  # thresholds only read fingerprints
    with pytest.raises(StoreError, match=r"fingerprints were made with .*Use the store's settings"):
        Pipeline(store, Settings(store=store_url, shingle_size=5))
    store.close()


def test_a_store_indexed_with_the_shingle_sample_says_what_to_do(store_url: str) -> None:
    from docsieve.pipeline import Pipeline
    from docsieve.schema import meta
    from docsieve.store import StoreError

    store = Store(store_url)
    older = Settings().fingerprint_parameters.replace("window-16 winnowing", "1-in-16 sample")
    with store.engine.begin() as conn:
        conn.execute(meta.insert().values(key="fingerprints", value=older))
    with pytest.raises(StoreError, match=r"winnowing.*ingest into a new store"):
        Pipeline(store, Settings(store=store_url))
    store.close()


def test_a_store_made_with_an_older_normalization_says_what_to_do(store_url: str, monkeypatch) -> None:
    import docsieve.settings
    from docsieve.pipeline import Pipeline
    from docsieve.store import StoreError

    store = Store(store_url)
    monkeypatch.setattr(docsieve.settings, "NORMALIZATION_VERSION", docsieve.settings.NORMALIZATION_VERSION - 1)
    Pipeline(store, Settings(store=store_url))  # the store is made by the older docsieve
    monkeypatch.undo()
    for opened in (store, Store(store_url, readonly=True)):
        with pytest.raises(StoreError, match=r"normalizes text differently.*ingest into a new store"):
            Pipeline(opened, Settings(store=store_url))
        opened.close()


def test_entries_are_claimed_once_per_source(store: Store) -> None:
    long_url = "https://example.com/" + "a" * 5000  # longer than any index entry may be
    assert store.claim_entries("feed", ["https://example.com/1", long_url]) == ["https://example.com/1", long_url]
    assert store.claim_entries("feed", ["https://example.com/1", "https://example.com/2", long_url]) == [
        "https://example.com/2"
    ]
    assert store.claim_entries("other", ["https://example.com/1"]) == ["https://example.com/1"]
    assert store.claim_entries("feed", []) == []


def test_entries_claimed_by_racing_pollers_go_to_one_of_them(store_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    keys = [f"https://example.com/{i}" for i in range(300)]
    stores = [Store(store_url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            claimed = list(pool.map(lambda s: s.claim_entries("feed", keys), stores))
    finally:
        for s in stores:
            s.close()
    everything = [key for part in claimed for key in part]
    assert sorted(everything) == sorted(keys)


def test_fetch_validators_are_kept_per_url(store: Store) -> None:
    assert store.fetch_validators("https://example.com/a") == (None, None)
    store.save_fetch_validators("https://example.com/a", '"v1"', "Tue, 24 Nov 2026 10:00:00 GMT")
    store.save_fetch_validators("https://example.com/b", None, None)
    assert store.fetch_validators("https://example.com/a") == ('"v1"', "Tue, 24 Nov 2026 10:00:00 GMT")
    store.save_fetch_validators("https://example.com/a", '"v2"', None)
    assert store.fetch_validators("https://example.com/a") == ('"v2"', None)
    assert store.fetch_validators("https://example.com/b") == (None, None)


def test_released_entries_can_be_claimed_again(store: Store) -> None:
    assert store.claim_entries("feed", ["a", "b", "c"]) == ["a", "b", "c"]
    store.release_entries("feed", ["b", "c"])
    store.release_entries("other", ["a"])  # another source's claims are its own
    assert store.claim_entries("feed", ["a", "b", "c"]) == ["b", "c"]


def test_a_claim_never_marked_sent_is_given_out_again_later(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A poll killed between claiming entries and queueing them: after a while they are claimed again."""
    import time

    from docsieve import bookkeeping as store_module

    assert store.claim_entries("feed", ["lost", "sent"]) == ["lost", "sent"]
    store.mark_sent("feed", ["sent"])
    assert store.claim_entries("feed", ["lost", "sent"]) == []  # the claim is recent: its poll may be running
    later = time.time() + store_module.CLAIM_STALE_AFTER + 1
    monkeypatch.setattr(store_module.time, "time", lambda: later)
    assert store.claim_entries("feed", ["lost", "sent"]) == ["lost"]
    assert store.claim_entries("feed", ["lost", "sent"]) == []  # and claimed anew


def test_sqlite_log_is_copied_into_the_database_file_while_the_store_is_open(tmp_path) -> None:
    """The checkpoint thread: after a commit, the database file alone (without its -wal log) soon holds
    the new records, long before SQLite's own checkpoint would run; closing leaves no log behind."""
    import shutil
    import sqlite3
    import time

    from docsieve.models import Record, Status
    from docsieve.store import NewRecord

    path = tmp_path / "store.db"
    store = Store(f"sqlite:///{path}")
    for batch in range(3):
        with store.writing() as txn:
            txn.insert(
                [
                    NewRecord(Record(id=f"r{batch}-{i}", source=f"s{i}", status=Status.CANONICAL, content_hash="h"))
                    for i in range(50)
                ]
            )
    copy = tmp_path / "copy.db"
    deadline, seen = time.monotonic() + 10, 0
    while seen < 150 and time.monotonic() < deadline:
        shutil.copyfile(path, copy)  # the file alone: what a crash-free reader without the log would see
        try:
            with sqlite3.connect(copy) as conn:
                seen = conn.execute("select count(*) from records").fetchone()[0]
        except sqlite3.DatabaseError:  # copied while a checkpoint was writing it: a torn copy, look again
            pass
        time.sleep(0.05)
    assert seen == 150
    store.close()
    assert not (tmp_path / "store.db-wal").exists()


def test_bulk_insert_writes_every_column_but_the_database_assigned_ones() -> None:
    from docsieve.schema import records
    from docsieve.store import ROW_COLUMNS

    assert set(ROW_COLUMNS) == {c.name for c in records.columns} - {"seq", "created_at"}


def test_postgres_stores_text_with_lz4_and_hashes_uncompressed(postgres_server_url: str) -> None:
    """The same storage whether the store was created new or migrated from revision 0005."""
    from tests.services import postgres_database

    with postgres_database(postgres_server_url) as store_url:
        _check_storage(store_url)


def _check_storage(store_url: str) -> None:
    from alembic import command

    query = sa.text(
        "SELECT attname, attstorage, attcompression FROM pg_attribute "
        "WHERE attrelid = 'records'::regclass AND attname IN ('text', 'shingles', 'index_keys')"
    )
    new = Store(store_url)
    with new.engine.connect() as conn:
        created = {name: (storage, compression) for name, storage, compression in conn.execute(query)}
    with new.engine.begin() as conn:
        config = alembic_config(conn)
        command.downgrade(config, "0005")
        command.upgrade(config, "head")
    with new.engine.connect() as conn:
        migrated = {name: (storage, compression) for name, storage, compression in conn.execute(query)}
    new.close()
    assert created == migrated
    assert created["shingles"][0] == created["index_keys"][0] == "e"  # external: never compressed
    assert created["text"][1] in ("l", "")  # lz4 where the server has it


def test_a_store_of_the_previous_release_is_read_and_left_to_it(store_url: str, monkeypatch) -> None:
    """A store made by the docsieve before this one (schema 0006, normalization 1): export and show read it as
    it is, and ingest refuses it without migrating it, so the docsieve that made it can still use it."""
    from alembic import command

    import docsieve.settings
    from docsieve.models import RawDocument
    from docsieve.pipeline import Pipeline
    from docsieve.store import StoreError

    monkeypatch.setattr(docsieve.settings, "NORMALIZATION_VERSION", docsieve.settings.NORMALIZATION_VERSION - 1)
    made_with = Settings(store=store_url).fingerprint_parameters
    pipeline = Pipeline(Store(store_url), Settings(store=store_url))
    pipeline.ingest([RawDocument("a.txt", "an article of the older release, long enough to be one")])
    pipeline.close()
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0006")
    monkeypatch.undo()

    reader = Store(store_url, readonly=True)
    (record,) = reader.iter_records()
    assert record.source == "a.txt" and record.outlet is None and reader.get(record.id[:6]) == record
    reader.close()
    new = Settings(store=store_url).fingerprint_parameters
    with pytest.raises(StoreError, match="normalizes text differently"):
        Store(store_url, fingerprints=new)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("select version_num from alembic_version")) == "0006"
        assert "outlet" not in {c["name"] for c in sa.inspect(conn).get_columns("records")}
    Store(store_url, fingerprints=made_with).close()  # the settings it was made with: migrated as usual
    with engine.connect() as conn:
        assert conn.scalar(sa.text("select version_num from alembic_version")) == SCHEMA_REVISION
    engine.dispose()


def test_ids_are_found_by_prefix_through_the_id_index_not_a_scan(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    pipeline = Pipeline(store, Settings(store=store.url))
    pipeline.ingest([RawDocument(source=f"d{i}", body=f"story number {i} " * 20) for i in range(30)])
    ids = sorted(r.id for r in store.iter_records())
    prefix = ids[5][:2]
    assert [r.id for r in store.matching(prefix, 5)] == [i for i in ids if i.startswith(prefix)][:5]
    assert store.matching(ids[7], 2)[0].id == ids[7] and store.get(ids[7][:12]).id == ids[7]
    assert store.matching("zz", 5) == []
    query = store.prefix_query(prefix, 5).compile(store.engine, compile_kwargs={"literal_binds": True})
    with store.engine.connect() as conn:
        plan = " ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
    assert "USING INDEX sqlite_autoindex_records_1 (id>? AND id<?)" in plan, plan
    pipeline.close()


def _near_copy(text: str) -> str:
    return text + "\nأضاف المتحدث أن الاجتماع المقبل سيعقد الشهر القادم."


def _waiting(store: Store, event: str, count: int, failure: str) -> None:
    """Until ``count`` sessions of the store's database wait for a lock of this kind (``transactionid``: a row
    another transaction holds; ``advisory``: the write lock), for up to 60 s (a loaded machine prepares a
    batch slowly)."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = :event"
    )
    with store.engine.connect() as watch:
        for _ in range(1200):
            if watch.execute(query, {"event": event}).scalar() >= count:
                return
            watch.rollback()  # pg_stat_activity holds still within a transaction
            time.sleep(0.05)
    raise AssertionError(failure)


def _staging_spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many records each batch staged before the lock (0: written under it)."""
    staged: list[int] = []
    original = Transaction.stage

    def spy(self: Transaction, drafts) -> None:
        original(self, drafts)
        staged.append(len(self.staged))

    monkeypatch.setattr(Transaction, "stage", spy)
    return staged


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """The order of batches' readings of what is stored, and of their taking the write lock: "lock" (taken, after
    the batch's work before it), "through" (the last seqs), "records" (records stored after a seq: the indexes'
    catch-ups), "counts" (template-count rows). Each with its thread: ``_by_thread``."""
    import threading
    from contextlib import contextmanager

    import docsieve.store

    events: list[tuple[int, str]] = []
    for method, event in (("written_through", "through"), ("index_rows", "records"), ("shingle_count_rows", "counts")):
        original = getattr(Transaction, method)

        def spy(self: Transaction, *args, __f=original, __event=event):
            events.append((threading.get_ident(), __event))
            return __f(self, *args)

        monkeypatch.setattr(Transaction, method, spy)
    locked = docsieve.store.write_locked

    @contextmanager
    def locking(engine, before=None):  # Store.writing's (other users, such as migrations, pass no ``before``)
        def then_the_lock(conn) -> None:
            before(conn)
            events.append((threading.get_ident(), "lock"))

        with locked(engine, then_the_lock if before is not None else None) as conn:
            yield conn

    monkeypatch.setattr(docsieve.store, "write_locked", locking)
    return events


def _by_thread(events: list[tuple[int, str]]) -> list[list[str]]:
    """The readings of each thread, the threads in the order they first read."""
    threads: dict[int, list[str]] = {}
    for thread, event in events:
        threads.setdefault(thread, []).append(event)
    return list(threads.values())


def _under_lock(events: list[str]) -> list[str]:
    """One thread's readings under the lock, for its only batch."""
    assert events.count("lock") == 1, events
    return events[events.index("lock") + 1 :]


def test_on_postgresql_a_batch_is_written_before_the_lock_and_placed_under_it(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text and keys go in before the lock; under it the records get their place and consecutive seqs in
    arrival order, and no record is left with its staging mark."""
    from tests.services import postgres_database

    staged = _staging_spy(monkeypatch)
    text = fixture_text("ar_near_a.txt")
    with postgres_database(postgres_server_url) as url:
        pipeline = Pipeline(Store(url), Settings(store=url, batch_size=8))
        docs = [("a.txt", text), ("b.txt", _near_copy(text)), ("c.txt", fixture_text("en_article.txt"))]
        reads = _reads(monkeypatch)
        pipeline.ingest([RawDocument(source=s, body=b) for s, b in docs])
        with pipeline.store.engine.connect() as conn:
            rows = conn.execute(sa.select(records.c.seq, records.c.source).order_by(records.c.seq)).all()
        got = {r.source: r for r in pipeline.store.iter_records()}
        pipeline.close()
    assert staged == [3]
    assert [source for _, source in rows] == ["a.txt", "b.txt", "c.txt"]
    assert [seq for seq, _ in rows] == list(range(rows[0][0], rows[0][0] + 3)) and rows[0][0] > 0
    assert got["b.txt"].duplicate_of == got["a.txt"].id and got["b.txt"].method is Method.NEAR
    assert got["a.txt"].status is got["c.txt"].status is Status.CANONICAL
    assert got["b.txt"].story_id == got["a.txt"].story_id != got["c.txt"].story_id
    assert (pipeline.batches_stored, pipeline.decided_again) == (1, 0)  # decided before the lock, alone
    # Its decision standing, the catch-ups made before the lock are not made again under it.
    (reads,) = _by_thread(reads)
    assert "records" in reads[: reads.index("lock")] and _under_lock(reads) == ["through"], reads


def _count_rows(url: str) -> list[tuple[int, bytes]]:
    """The template-count rows (seq, ids) in seq order."""
    from docsieve.schema import shingle_counts

    store = Store(url)
    with store.engine.connect() as conn:
        rows = [(int(seq), bytes(blob)) for seq, blob in conn.execute(sa.select(shingle_counts).order_by("seq"))]
    store.close()
    return rows


def _counts_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What became of each batch's template-count row: "placed" (staged before the lock, placed as it was),
    "replaced" (staged, another written under the lock), "dropped" (staged, none written), "written" (written
    under the lock alone), "none"."""
    fates: list[str] = []
    original = Transaction.add_shingle_counts

    def spy(self: Transaction, blob):
        staged = self.staged_counts
        if staged is None:
            fates.append("written" if blob is not None else "none")
        else:
            fates.append("placed" if blob == staged[1] else "replaced" if blob is not None else "dropped")
        return original(self, blob)

    monkeypatch.setattr(Transaction, "add_shingle_counts", spy)
    return fates


@pytest.mark.slow
def test_on_postgresql_a_batchs_template_counts_are_written_before_the_lock_and_placed_under_it(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch's count row is written before the lock from its decision there and placed under the lock (a
    one-row UPDATE: the ids stay where they were written); snapshots taken under the lock meanwhile leave the
    staged row alone. The counts a new process reads are those of the same batches on SQLite, and no row is left
    with its staging mark."""
    import random

    import docsieve.templates as templates
    from tests.services import postgres_database

    monkeypatch.setattr(templates, "SNAPSHOT_AFTER", 2_000)  # ids: a snapshot every few batches, under the lock
    fates = _counts_spy(monkeypatch)
    rng = random.Random(11)
    docs = [RawDocument(source=f"d{i}.txt", body=_words(200, rng)) for i in range(40)]
    settings = {"batch_size": 8}  # a batch of SMALL_BATCH documents: a snapshot is due at SNAPSHOT_AFTER ids
    serial = Pipeline(
        Store(f"sqlite:///{tmp_path / 's.db'}"), Settings(store=f"sqlite:///{tmp_path / 's.db'}", **settings)
    )
    serial.ingest(docs)
    serial.close()
    assert fates == ["written"] * 5  # SQLite: under the lock, which comes with the transaction
    fates.clear()
    probe = np.unique(np.concatenate([serial.templates._counts.nonzero()[0].astype(np.uint32) << 8]))
    with postgres_database(postgres_server_url) as url:
        pipeline = Pipeline(Store(url), Settings(store=url, **settings))
        pipeline.ingest(docs)
        snapshots = pipeline.templates.last_seq
        pipeline.close()
        fresh = Pipeline(Store(url), Settings(store=url, **settings))
        with fresh.store.writing() as txn:
            fresh.templates.catch_up(txn)
            held = fresh.templates.counts(probe)
        fresh.close()
        rows = _count_rows(url)
    assert fates == ["placed"] * 5
    assert snapshots and all(seq > 0 for seq, _ in rows) and len(rows) < 5  # snapshots took the older rows
    assert probe.size > 500 and np.array_equal(held, serial.templates.counts(probe))


def test_a_record_another_transaction_stores_while_a_batch_is_staged_leaves_the_batch_whole(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer holds one of the batch's ids, uncommitted, while the batch is written before the lock:
    the staging waits, meets the other's commit, leaves that record out (stored already) and stages the
    others, which are stored."""
    import threading

    from tests.services import postgres_database

    staged = _staging_spy(monkeypatch)
    text = fixture_text("ar_near_a.txt")
    docs = [
        RawDocument(source="a.txt", body=text),
        RawDocument(source="b.txt", body=fixture_text("en_article.txt")),
        RawDocument(source="c.txt", body=_near_copy(text)),
    ]
    with postgres_database(postgres_server_url) as url:
        pipeline = Pipeline(Store(url), Settings(store=url, batch_size=8))
        _, prepared = pipeline.prepare(docs)
        taken = prepared[1]
        other = pipeline.store.engine.connect()
        other.begin()
        Transaction(other).insert(
            [NewRecord(Record(taken.id, "elsewhere.txt", Status.CANONICAL, taken.fingerprint.content_hash))]
        )
        done: list[list[Record]] = []
        thread = threading.Thread(target=lambda: done.append(pipeline.process(docs)))
        thread.start()
        _waiting(pipeline.store, "transactionid", 1, "the batch's staging never waited for the other writer")
        other.commit()
        other.close()
        thread.join(timeout=60)
        with pipeline.store.engine.connect() as conn:
            seqs = conn.execute(sa.select(records.c.seq, records.c.source).order_by(records.c.seq)).all()
        pipeline.close()
    assert staged == [2]
    assert sorted(r.source for r in done[0]) == ["a.txt", "c.txt"]
    by_source = {r.source: r for r in done[0]}
    assert by_source["c.txt"].duplicate_of == by_source["a.txt"].id
    assert [s for _, s in seqs] == ["elsewhere.txt", "a.txt", "c.txt"] and all(seq > 0 for seq, _ in seqs)


def _queued(
    url: str,
    stored_before: list[RawDocument],
    first: RawDocument | list[RawDocument],
    then: RawDocument | list[RawDocument],
    close: bool = True,
    **settings_of: object,
) -> tuple[Pipeline, Pipeline]:
    """``stored_before`` ingested, then ``first`` and ``then`` processed by two workers that each prepare, look up,
    and decide their batch before the lock while a blocker holds it; released, the lock goes to ``first``'s
    worker, then to ``then``'s, which decided before ``first`` was stored. Returns the two pipelines, closed unless
    ``close`` is false."""
    import threading

    from docsieve.store import WRITE_LOCK

    settings = Settings(store=url, batch_size=8, **settings_of)
    one, two = Pipeline(Store(url), settings), Pipeline(Store(url), settings)
    one.ingest(stored_before)
    blocker = one.store.engine.connect()
    blocker.begin()
    blocker.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITE_LOCK)))

    def queued(count: int) -> None:
        _waiting(one.store, "advisory", count, f"{count} workers never waited for the lock")

    threads = [
        threading.Thread(target=one.process, args=(first if isinstance(first, list) else [first],)),
        threading.Thread(target=two.process, args=(then if isinstance(then, list) else [then],)),
    ]
    threads[0].start()
    queued(1)
    threads[1].start()
    queued(2)
    blocker.commit()
    blocker.close()
    for thread in threads:
        thread.join(timeout=60)
    if close:
        one.close()
        two.close()
    return one, two


def _serial(folder: Path, *batches: list[RawDocument], **settings_of: object) -> dict[str, tuple]:
    """The stories of the batches stored one after another by one process (SQLite)."""
    url = f"sqlite:///{folder}/serial.db"
    serial = Pipeline(Store(url), Settings(store=url, **settings_of))
    for batch in batches:
        serial.ingest(batch)
    stories = _stories(serial.store)
    serial.close()
    return stories


def _serial_tables(folder: Path, *batches: list[RawDocument], **settings_of: object) -> dict[str, object]:
    """The stories table and links of the batches stored one after another by one process (SQLite)."""
    url = f"sqlite:///{folder}/serial-tables.db"
    serial = Pipeline(Store(url), Settings(store=url, **settings_of))
    for batch in batches:
        serial.ingest(batch)
    serial.close()
    return _tables_of(url)


def _tables_of(url: str) -> dict[str, object]:
    """The stories table by each story's canonical (its members' sources), the links (holder, the held story's
    canonical, containment, roundup), by sources; and the stories whose row is missing or names another canonical,
    and the rows of no record that were not merged into another (a story staged before the lock that the decision
    under it did not found)."""
    from docsieve.schema import contains, stories

    store = Store(url)
    with store.engine.connect() as conn:
        source = dict(conn.execute(sa.select(records.c.id, records.c.source)).all())
        members: dict[str, list[str]] = {}
        canonical_of_story: dict[str, str] = {}
        for rid, story, status in conn.execute(
            sa.select(records.c.id, records.c.story_id, records.c.status).where(records.c.story_id.is_not(None))
        ):
            members.setdefault(story, []).append(source[rid])
            if status == str(Status.CANONICAL):
                canonical_of_story[story] = rid
        rows = {
            s: (c, q)
            for s, c, q in conn.execute(sa.select(stories.c.id, stories.c.canonical_id, stories.c.merged_into))
        }
        links = {
            (source[r], source[rows[s][0]] if s in rows else s, round(c, 3), bool(k))
            for r, s, c, k in conn.execute(
                sa.select(contains.c.record_id, contains.c.story_id, contains.c.containment, contains.c.roundup)
            )
        }
    store.close()
    faults = sorted(s for s in members if s not in rows or rows[s][0] != canonical_of_story.get(s))
    faults += sorted(s for s, (_, into) in rows.items() if s not in members and into is None)
    table = {source[rows[s][0]]: sorted(m) for s, m in members.items() if s in rows}
    return {"stories": table, "links": links, "faults": faults}


def _stories_of(url: str) -> dict[str, tuple]:
    store = Store(url)
    stories = _stories(store)
    store.close()
    return stories


def _stories(store: Store) -> dict[str, tuple]:
    """Each record by source: its status, method, its canonical's source and the sources of its story."""
    got = {r.id: r for r in store.iter_records()}
    story = {}
    for r in got.values():
        story.setdefault(r.story_id, set()).add(r.source)
    return {
        r.source: (
            r.status,
            r.method,
            got[r.duplicate_of].source if r.duplicate_of else None,
            sorted(story[r.story_id]),
        )
        for r in got.values()
    }


def test_an_original_stored_while_a_copy_waits_for_the_lock_is_found(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy's worker decides before the lock, without the original, which a worker ahead of it in the
    lock's queue stores meanwhile: under the lock the original is read, the decision made again, and the copy
    links to it. The index of the records stored since the lookup found the original with its sketch: its
    shingle count and bin minima are not read from the store again."""
    from tests.services import postgres_database

    asked = _asked(monkeypatch, "summaries")
    text = fixture_text("ar_near_a.txt")
    reads = _reads(monkeypatch)
    with postgres_database(postgres_server_url) as url:
        first, second = _queued(
            url, [], RawDocument(source="a.txt", body=text), RawDocument(source="b.txt", body=_near_copy(text))
        )
        got = {r.source: r for r in first.store.iter_records()}
        first.store.close()
    a, b = got["a.txt"], got["b.txt"]
    assert a.status is Status.CANONICAL
    assert b.duplicate_of == a.id and b.story_id == a.story_id and b.method is Method.NEAR
    assert (second.batches_stored, second.decided_again) == (1, 1)
    assert not any(a.id in ids for ids in asked)
    # Both batches read before the lock; the one decided again reads what was stored meanwhile under it too.
    # The first in the lock's queue, nothing stored meanwhile; the second, something stored (the first's).
    first_read, second_read = sorted((_under_lock(r) for r in _by_thread(reads)), key=len)
    assert first_read == ["through"] and "records" in second_read, reads
    # The second's own index (in memory: no shared one here) holds the original, stored after its catch-up
    # before the lock and before the second's own records.
    query = second.prepare([RawDocument(source="q.txt", body=_near_copy(text))])[1][0].keys
    assert a.id in second.index.lookup([query], 8)[0][0]


def test_a_batch_decided_again_replaces_the_template_counts_it_wrote_before_the_lock(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the lock the copy was a new story, its text counted with the other document's; decided again
    under the lock (its original stored meanwhile) it is a copy, not counted: the row staged is replaced by one
    of the other text alone. With the copy alone the staged row is dropped and none written. The rows are those
    of the same batches stored one after another (SQLite), none left with its staging mark."""
    from tests.services import postgres_database

    text = fixture_text("ar_near_a.txt")
    original = RawDocument(source="a.txt", body=text)
    copy = RawDocument(source="b.txt", body=_near_copy(text))
    other = RawDocument(source="c.txt", body=fixture_text("en_article.txt"))
    fates = _counts_spy(monkeypatch)
    for then, fate in (([copy, other], "replaced"), ([copy], "dropped")):
        folder = tmp_path / fate
        folder.mkdir()
        _serial(folder, [original], then)
        fates.clear()
        with postgres_database(postgres_server_url) as url:
            _, second = _queued(url, [], original, then)
            rows = _count_rows(url)
        assert (second.batches_stored, second.decided_again) == (1, 1)
        assert sorted(fates) == sorted(["placed", fate]), fates
        assert all(seq > 0 for seq, _ in rows)
        assert [blob for _, blob in rows] == [blob for _, blob in _count_rows(f"sqlite:///{folder}/serial.db")]


def _story_writes(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[set[str]]]:
    """The story rows written by COPY, by when: ``staged`` before the lock (``stage_stories``), ``locked`` under it
    (``save_stories``), each call's ids."""
    writes: dict[str, list[set[str]]] = {"staged": [], "locked": []}
    _spied_within(
        monkeypatch,
        "_copy_stories",
        "save_stories",
        lambda within, founded, *_: writes["locked" if within else "staged"].append(set(founded)),
    )
    return writes


def _spied_within(monkeypatch: pytest.MonkeyPatch, spied: str, within: str, seen: Callable[..., object]) -> None:
    """Each call of ``Transaction.<spied>`` is ``seen(within, *its arguments)`` before it runs, ``within`` whether it
    runs inside ``Transaction.<within>``."""
    calls, outer = getattr(Transaction, spied), getattr(Transaction, within)
    inside = threading.local()

    def spy(self: Transaction, *args: object, **kwargs: object) -> object:
        seen(getattr(inside, "on", False), *args)
        return calls(self, *args, **kwargs)

    def around(self: Transaction, *args: object, **kwargs: object) -> object:
        inside.on = True
        try:
            return outer(self, *args, **kwargs)
        finally:
            inside.on = False

    monkeypatch.setattr(Transaction, spied, spy)
    monkeypatch.setattr(Transaction, within, around)


def test_a_lone_worker_writes_the_stories_its_batch_founds_before_the_lock(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch nobody meets writes the stories it founds on its own records before the lock, with no ``changed_seq``
    (their records' seqs say they are new), and no story row under it. The stories are those of the serial store
    (SQLite), every one told as changed since the batch began, and none is left without a record."""
    from docsieve.schema import stories
    from tests.services import postgres_database
    from tests.test_stories import edit, text, words

    x, y, z = words(60, 120), words(61, 120), words(62, 120)
    doc = lambda source, body: RawDocument(source=source, body=body, title=source)  # noqa: E731
    batches = [
        [doc("x", text(x)), doc("y", text(y)), doc("x2", text(edit(x, 63, 0.03)))],
        [doc("z", text(z)), doc("y2", text(edit(y, 64, 0.03)))],
    ]
    expected = _serial_tables(tmp_path, *batches)
    writes = _story_writes(monkeypatch)
    with postgres_database(postgres_server_url) as url:
        store = Store(url)
        pipeline = Pipeline(store, Settings(store=url))
        told = []
        for batch in batches:
            with store.reading() as txn:
                seq = txn.last_seq()
            pipeline.ingest(batch)
            with store.reading() as txn:
                told.append(txn.stories_changed_since(seq))
        with store.engine.connect() as conn:
            rows = dict(conn.execute(sa.select(stories.c.id, stories.c.changed_seq)).all())
        source = {r.story_id: r.source for r in store.iter_records() if r.status is Status.CANONICAL}
        pipeline.close()
        tables = _tables_of(url)
    assert tables == expected and not tables["faults"]
    assert writes["locked"] == [] and [len(w) for w in writes["staged"]] == [2, 1]
    assert writes["staged"][0] | writes["staged"][1] == rows.keys() and set(rows.values()) == {None}
    assert {source[s] for s in told[0]} == {"x", "y"} and {source[s] for s in told[1]} == {"y", "z"}


def _placings(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each time the placing UPDATE's parameters are made: whether under the lock (in ``insert``)."""
    made: list[bool] = []
    _spied_within(monkeypatch, "_placing_arrays", "insert", lambda within, *_: made.append(within))
    return made


def test_a_lone_worker_places_its_records_by_what_it_made_before_the_lock(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The placing UPDATE's parameters are made before the lock for the decision made there; a lone worker's stands,
    so under the lock none are made. A record's seq is the batch's first plus its place among the batch's records:
    a rejected one (written under the lock, not staged) and the staged ones after it in arrival order, consecutive,
    with the places and links the serial store gives them; decided again under the lock, they are made there."""
    import random

    from tests.services import postgres_database

    made = _placings(monkeypatch)
    rng = random.Random(11)
    texts = [_words(150, rng) for _ in range(3)]
    batch = [
        RawDocument(source="a.txt", body=texts[0]),
        RawDocument(source="bad.txt", body=""),
        RawDocument(source="b.txt", body=texts[1]),
        RawDocument(source="a-copy.txt", body=_near_copy(texts[0])),
        RawDocument(source="c.txt", body=texts[2]),
    ]
    with postgres_database(postgres_server_url) as url:
        pipeline = Pipeline(Store(url), Settings(store=url))
        pipeline.ingest(batch)
        with pipeline.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(records.c.seq, records.c.source, records.c.status, records.c.duplicate_of).order_by(
                    records.c.seq
                )
            ).all()
        ids = {r.source: r.id for r in pipeline.store.iter_records()}
        pipeline.close()
        assert made == [False]  # once, before the lock
        assert [r.source for r in rows] == ["bad.txt", "a.txt", "b.txt", "a-copy.txt", "c.txt"]
        assert [r.seq for r in rows] == list(range(rows[0].seq, rows[0].seq + 5))
        assert rows[0].status == str(Status.REJECTED) and rows[3].duplicate_of == ids["a.txt"]
        made.clear()
        text = fixture_text("ar_near_a.txt")
        _queued(url, [], RawDocument(source="x.txt", body=text), RawDocument(source="y.txt", body=_near_copy(text)))
        store = Store(url)
        stored = {r.source: r for r in store.iter_records()}
        store.close()
    assert True in made and stored["y.txt"].duplicate_of == stored["x.txt"].id  # made again under the lock, placed


def test_the_stories_staged_before_the_lock_are_written_again_where_the_decision_under_it_differs(
    postgres_server_url: str,
) -> None:
    """Staged before the lock: X's story on X and Y's on Y (records staged); not Z's (its record written under the
    lock, as when staging gave up on it), nor E's, named after a record that is not the batch's (a member a take-over
    leaves: another writer may found it too), nor W's while its canonical is Z. Decided under the lock: X's story has
    another canonical (Z), Y's is founded no more, W's is new. One row each for X (canonical Z) and W, both stamped
    with the batch's seq."""
    from docsieve.schema import stories
    from docsieve.stories import Book
    from tests.services import postgres_database

    def draft(record_id: str) -> NewRecord:
        return NewRecord(Record(record_id, f"{record_id}.txt", Status.CANONICAL, record_id * 8))

    def book(founded: dict[str, str]) -> Book:
        made = Book(None, Settings(), lambda ids: {})  # type: ignore[arg-type]  # save_stories reads no store
        made.new_stories, made.canonical_of, made.new_records = set(founded), dict(founded), {"X", "Y", "Z", "W"}
        return made

    drafts = [draft(i) for i in ("X", "Y", "W")]

    def before_lock(txn: Transaction) -> None:
        txn.stage(drafts)
        txn.stage_stories(book({"X": "X", "Y": "Y", "Z": "Z", "E": "W", "W": "Z"}), txn.now())
        assert txn.staged_stories == {"X": "X", "Y": "Y"}

    with postgres_database(postgres_server_url) as url:
        store = Store(url)
        with store.writing(before_lock=before_lock) as txn:
            last = txn.insert([*drafts, draft("Z")])
            txn.save_stories(book({"X": "Z", "W": "W"}), txn.now(), last)
        with store.engine.connect() as conn:
            rows = set(conn.execute(sa.select(stories.c.id, stories.c.canonical_id, stories.c.changed_seq)))
        store.close()
    assert rows == {("X", "Z", last), ("W", "W", last)}


def test_a_story_a_take_over_founds_on_a_stored_record_is_told_changed(
    postgres_server_url: str, tmp_path: Path
) -> None:
    """A stored article holds two excerpts that share nothing; the first excerpt arrives again, published before the
    article, and takes the story over: the other excerpt leaves and founds a story of its own, named after it (a
    stored record), under the lock. That story is among those changed since the batch began, as on SQLite."""
    from tests.services import postgres_database

    article = fixture_text("en_article.txt")
    one_half, other_half = _halves(article)
    before = [
        RawDocument(source="article.txt", body=article, published="2026-12-01T10:00:00Z"),
        RawDocument(source="two.txt", body=other_half, published="2026-12-01T11:00:00Z"),
    ]
    then = [RawDocument(source="one.txt", body=one_half, published="2026-12-01T09:00:00Z")]
    expected = _serial_tables(tmp_path, before, then)
    with postgres_database(postgres_server_url) as url:
        store = Store(url)
        pipeline = Pipeline(store, Settings(store=url))
        pipeline.ingest(before)
        with store.reading() as txn:
            seq = txn.last_seq()
        pipeline.ingest(then)
        with store.reading() as txn:
            told = txn.stories_changed_since(seq)
        two = next(r for r in store.iter_records() if r.source == "two.txt")
        pipeline.close()
        tables = _tables_of(url)
    assert tables == expected and not tables["faults"]
    assert two.story_id == two.id and two.story_id in told


def test_a_transaction_with_stories_staged_and_never_saved_is_not_committed(postgres_server_url: str) -> None:
    """Stories staged before the lock that ``save_stories`` never saw are not committed: the transaction fails,
    and nothing it wrote is stored."""
    from docsieve.schema import stories
    from docsieve.stories import Book
    from tests.services import postgres_database

    draft = NewRecord(Record("X", "X.txt", Status.CANONICAL, "X" * 8))
    founded = Book(None, Settings(), lambda ids: {})  # type: ignore[arg-type]  # stage_stories reads no store
    founded.new_stories, founded.canonical_of = {"X"}, {"X": "X"}

    def before_lock(txn: Transaction) -> None:
        txn.stage([draft])
        txn.stage_stories(founded, txn.now())

    with postgres_database(postgres_server_url) as url:
        store = Store(url)
        refused = pytest.raises(RuntimeError, match="stories staged before the lock were not saved")
        with refused, store.writing(before_lock=before_lock) as txn:
            txn.insert([draft])
        with store.engine.connect() as conn:
            counts = [conn.scalar(sa.select(sa.func.count()).select_from(t)) for t in (stories, records)]
        store.close()
    assert counts == [0, 0]


def test_a_story_staged_before_the_lock_that_the_decision_under_it_does_not_found_is_gone(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy's worker founds its story before the lock; its original, stored meanwhile, takes it in under the lock:
    the staged story goes, and the one story left is the original's."""
    from docsieve.schema import stories
    from tests.services import postgres_database

    text = fixture_text("ar_near_a.txt")
    writes = _story_writes(monkeypatch)
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(
            url, [], RawDocument(source="a.txt", body=text), RawDocument(source="b.txt", body=_near_copy(text))
        )
        store = Store(url)
        got = {r.source: r for r in store.iter_records()}
        with store.engine.connect() as conn:
            rows = list(conn.execute(sa.select(stories.c.id, stories.c.canonical_id)))
        store.close()
        tables = _tables_of(url)
    assert second.decided_again == 1 and got["b.txt"].duplicate_of == got["a.txt"].id
    assert {got["b.txt"].id} in writes["staged"], writes  # b's story, staged by its worker before the lock
    assert rows == [(got["a.txt"].story_id, got["a.txt"].id)] and not tables["faults"]


def test_a_batch_decided_again_after_a_takedown_names_the_stories_it_staged_after_their_records(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a batch's decision before the lock, another process stores an article and takes it down: under the
    lock the batch is decided again whole, its story names read again. The story it staged, named after its
    record, is its own: still named so, and written once."""
    from tests.services import postgres_database

    writes = _story_writes(monkeypatch)
    with postgres_database(postgres_server_url) as url:
        settings = Settings(store=url)
        mine, theirs = Pipeline(Store(url), settings), Pipeline(Store(url), settings)
        decide = Pipeline._decide

        def then_theirs(self: Pipeline, *args: object) -> object:
            result = decide(self, *args)
            if self is mine and not theirs.batches_stored:
                stored = theirs.process([RawDocument(source="w.txt", body=fixture_text("en_article.txt"))])
                assert theirs.store.delete([r.id for r in stored], None, settings)
            return result

        monkeypatch.setattr(Pipeline, "_decide", then_theirs)
        mine.ingest([RawDocument(source="z.txt", body=fixture_text("ar_near_a.txt"))])
        z = next(r for r in mine.store.iter_records() if r.source == "z.txt")
        mine.close()
        theirs.close()
        tables = _tables_of(url)
    assert mine.decided_again == 1 and z.story_id == z.id and not tables["faults"]
    assert {z.id} in writes["staged"] and not any(z.id in w for w in writes["locked"])


def _halves(text: str) -> tuple[str, str]:
    """The article's title and second paragraph, and its third paragraph: two excerpts that share no sentence."""
    title, second, third = text.split("\n\n")
    return f"{title}\n\n{second}", third


def test_a_story_another_worker_changes_while_a_batch_waits_makes_it_decide_again(
    postgres_server_url: str, tmp_path: Path
) -> None:
    """Two excerpts of a stored article that share nothing, decided by two workers at once. The first,
    published before the article, takes its story over. The second's decision before the lock joined the
    article's story, and the first excerpt is no candidate of it; under the lock, something stored meanwhile,
    it is decided again: on its own now, nothing like the new canonical. The stories are those of the
    documents stored one after another (SQLite, one process)."""
    from tests.services import postgres_database

    article = fixture_text("en_article.txt")
    one_half, other_half = _halves(article)
    before = [RawDocument(source="article.txt", body=article, published="2026-12-01T10:00:00Z")]
    first = RawDocument(source="one.txt", body=one_half, published="2026-12-01T09:00:00Z")
    then = [
        RawDocument(source="two.txt", body=other_half, published="2026-12-01T11:00:00Z"),
        RawDocument(source="apart.txt", body=fixture_text("ar_other.txt"), published="2026-12-01T11:30:00Z"),
    ]
    expected = _serial(tmp_path, before, [first], then)
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, before, first, then)
        got = _stories_of(url)
    assert got == expected
    # In the article's story while it was the canonical; on its own once the first excerpt took it over.
    assert expected["two.txt"][3] == ["two.txt"]
    assert (second.batches_stored, second.decided_again) == (1, 1)


def _asked(monkeypatch: pytest.MonkeyPatch, method: str) -> list[set[str]]:
    """The ids each call of a ``Transaction`` method that reads records by id asks for, from now on."""
    asked: list[set[str]] = []
    read = getattr(Transaction, method)

    def counted(txn: Transaction, ids):
        ids = set(ids)
        asked.append(ids)
        return read(txn, ids)

    monkeypatch.setattr(Transaction, method, counted)
    return asked


def test_a_batch_decided_again_takes_its_story_names_from_its_decision_before_the_lock(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which of a batch's ids a stored story is named after is read once, before the lock: decided again under it
    (something stored meanwhile), the batch takes that reading (a story is named after a record only once that
    record is stored), and its new stories are still named after the records that found them."""
    import random

    from tests.services import postgres_database

    asked = _asked(monkeypatch, "taken_story_ids")
    then = [
        RawDocument(source="b.txt", body=fixture_text("ar_other.txt")),
        RawDocument(source="c.txt", body=_words(80, random.Random(7))),
    ]
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, [], RawDocument(source="a.txt", body=fixture_text("en_article.txt")), then)
        got = {r.source: r for r in Store(url).iter_records()}
    assert (second.batches_stored, second.decided_again) == (1, 1)
    for source in ("b.txt", "c.txt"):
        record = got[source]
        assert record.status is Status.CANONICAL and record.story_id == record.id
        assert sum(record.id in ids for ids in asked) == 1, source


def _theirs_after_my_first_decision(
    monkeypatch: pytest.MonkeyPatch, url: str, settings: Settings, theirs_then: Callable[[Pipeline], object]
) -> tuple[Pipeline, Pipeline]:
    """Two pipelines on the store, "mine" and "theirs": nothing is staged before the lock (as when staging gives up),
    and right after mine's first decision before the lock, ``theirs_then(theirs)`` runs (with staging)."""
    mine, theirs = Pipeline(Store(url), settings), Pipeline(Store(url), settings)
    stage = Transaction.stage
    skip = {"on": True}
    monkeypatch.setattr(Transaction, "stage", lambda txn, drafts: None if skip["on"] else stage(txn, drafts))
    decide = Pipeline._decide

    def then_theirs(self, txn, *args):
        result = decide(self, txn, *args)
        if self is mine and not mine.batches_stored and skip["on"] and not theirs.batches_stored:
            skip["on"] = False
            theirs_then(theirs)
            skip["on"] = True
        return result

    monkeypatch.setattr(Pipeline, "_decide", then_theirs)
    return mine, theirs


def test_a_takedown_meanwhile_makes_a_batch_decided_again_read_its_story_names_again(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch holds x.txt, not staged (as when staging gives up). After its decision before the lock another
    process stores x.txt with a copy y.txt and takes x.txt down: story X stays, under y.txt. Under the lock x.txt
    is stored again and founds a story, which cannot be named X: the names read before the lock do not stand
    once something was taken down (the story named after a record outlives it). (A helper's review: without
    that condition, a duplicate key in ``stories``.)"""
    from tests.services import postgres_database

    text_a, text_b = fixture_text("ar_near_a.txt"), fixture_text("ar_near_b.txt")
    with postgres_database(postgres_server_url) as url:
        settings = Settings(store=url)

        def theirs_then(theirs: Pipeline) -> None:
            theirs.ingest(
                [
                    RawDocument(source="x.txt", body=text_a, published="2026-01-01T10:00:00Z"),
                    RawDocument(source="y.txt", body=text_b, published="2026-01-01T10:30:00Z"),
                ]
            )
            stored = {r.source: r for r in theirs.store.iter_records()}
            assert stored["y.txt"].story_id == stored["x.txt"].id
            assert theirs.store.delete([stored["x.txt"].id], None, settings)

        mine, theirs = _theirs_after_my_first_decision(monkeypatch, url, settings, theirs_then)
        # The same id as theirs (the same source and text), published years before: y.txt is no candidate.
        mine.ingest([RawDocument(source="x.txt", body=text_a, published="2020-01-01T10:00:00Z")])
        got = {r.source: r for r in mine.store.iter_records()}
        mine.close()
        theirs.close()
    assert mine.decided_again == 1
    assert got["x.txt"].story_id != got["x.txt"].id and got["y.txt"].story_id == got["x.txt"].id


def test_a_batch_decided_again_knows_the_ids_and_texts_stored_since_its_decision_before_the_lock(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch holds x.txt, not staged (as when staging gives up), and z.txt. After its decision before the lock
    another process stores x.txt (the same id) and w.txt (z.txt's text under another name). Decided again under the
    lock, nothing taken down, it knows what was stored since its first decision: x.txt is stored already (not
    written twice: no duplicate key), z.txt is an exact copy of w.txt. As on SQLite, one batch after the other."""
    from tests.services import postgres_database

    text_x, text_z = fixture_text("ar_near_a.txt"), fixture_text("en_article.txt")
    x = RawDocument(source="x.txt", body=text_x)
    theirs_docs = [x, RawDocument(source="w.txt", body=text_z)]
    mine_docs = [x, RawDocument(source="z.txt", body=text_z)]
    expected = _serial(tmp_path, theirs_docs, mine_docs)
    with postgres_database(postgres_server_url) as url:
        settings = Settings(store=url)
        mine, theirs = _theirs_after_my_first_decision(monkeypatch, url, settings, lambda t: t.ingest(theirs_docs))
        summary = mine.ingest(mine_docs)
        mine.close()
        theirs.close()
        got = _stories_of(url)
    assert mine.decided_again == 1 and summary.unchanged == 1 and summary.exact == 1
    assert got == expected
    assert got["z.txt"][:3] == (Status.DUPLICATE, Method.EXACT, "w.txt")


@functools.cache
def _vocabulary() -> list[str]:
    """3,803 made-up words of two to four syllables."""
    import random

    syllables = ["ba", "ko", "ri", "tem", "lo", "sa", "ne", "vu", "dar", "mi", "pel", "zo", "ga", "hu", "fin", "te"]
    return sorted({"".join(random.Random(i).choices(syllables, k=2 + i % 3)) for i in range(6000)})


def _words(count: int, rng) -> str:
    """Sentences of made-up words, twelve words a sentence."""
    picked = [rng.choice(_vocabulary()) for _ in range(count)]
    return " ".join(" ".join(picked[i : i + 12]).capitalize() + "." for i in range(0, count, 12))


def _one_opening(
    seed: int, opening_words: int, month: str, with_copy: bool = False
) -> tuple[list[RawDocument], list[RawDocument], Callable]:
    """A stored text (c.txt), ten items opening as it does (x0-x9.txt, one a day from the text's; ``with_copy``: and
    another outlet's copy of c.txt), and a maker of documents that share its opening and a part of the rest
    (``sharing("d.txt", "10")``: published at that hour)."""
    rng = random.Random(seed)
    opening, rest = _words(opening_words, rng), _words(60, rng)
    cut = " ".join(rest.split()[:26])

    def doc(source: str, body: str, hour: str, day: int = 1) -> RawDocument:
        return RawDocument(source=source, body=body, published=f"2026-{month}-{day:02d}T{hour}:00:00Z")

    before = [doc("c.txt", f"{opening} {rest}", "08")]
    # The items come out day after day, as a template's do (one day's texts are one release's cuts, to the counts).
    items = [doc(f"x{i}.txt", f"{opening} {_words(60, rng)}", "09", day=i + 1) for i in range(10)]
    if with_copy:
        items.append(doc("c-copy.txt", f"{opening} {rest}", "09"))
    return before, items, lambda source, hour: doc(source, f"{opening} {cut} {_words(34, rng)}", hour)


def test_a_batch_decided_in_part_weighs_boilerplate_by_the_counts_read_before_the_lock(
    postgres_server_url: str, tmp_path: Path
) -> None:
    """A document sharing a stored text's opening and a part of the rest. Decided before the lock, the opening
    is one text's words and counts: the document joins that text's story. Meanwhile another worker stores ten
    items that open the same way, none of them a copy of it: its decision stands under the lock, made with the
    counts it read before the lock, as though stored before the items (SQLite, one process): it joins the text's
    story. Its worker's next batch reads the items' counts: a second such document stays apart, as it does stored
    after them."""
    from tests.services import postgres_database

    before, items, sharing = _one_opening(1, 20, "01")
    then, later = [sharing("d.txt", "10")], [sharing("e.txt", "11")]
    expected = _serial(tmp_path, before, then, items)
    with postgres_database(postgres_server_url) as url:
        one, second = _queued(url, before, items, then, close=False)
        got = _stories_of(url)
        again = second.documents_decided_again
        second.process(later)
        after = _stories_of(url)
        one.close()
        second.close()
    assert got == expected
    assert expected["d.txt"][3] == ["c.txt", "d.txt"]
    assert (second.decided_again, again) == (1, 0)
    assert after["e.txt"][3] == ["e.txt"] and after["d.txt"] == got["d.txt"]


def test_a_batch_meeting_what_others_stored_decides_again_only_the_parts_it_touches(
    postgres_server_url: str, tmp_path: Path
) -> None:
    """While a batch waits for the lock, another worker stores a copy of a stored article published before it: the
    copy takes the article's story over. Of the waiting batch, decided before the lock, only the documents whose
    decision read that story (a copy of the article), or that meet the stored copy (its exact text), are decided
    again under the lock, with every document decided with them (a copy of that copy, in the batch); the others
    (an unrelated article and its near copy, a text of its own) stand as decided. The stories are those of the
    documents stored one after another (SQLite)."""
    from tests.services import postgres_database

    before, first, then, _ = _meeting_docs()
    expected = _serial(tmp_path, before, first, then)
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, before, first, then)
        got = _stories_of(url)
    assert got == expected
    assert expected["copy.txt"][2] == "early.txt" and expected["same.txt"][1] is Method.EXACT
    assert expected["other-copy.txt"][2] == "other.txt" and expected["own.txt"][3] == ["own.txt"]
    assert (second.decided_again, second.documents_decided_again) == (1, 3)


def _stored_while_deciding(
    url: str,
    before: list[RawDocument],
    then: list[RawDocument],
    during: list[list[RawDocument]],
    monkeypatch: pytest.MonkeyPatch,
    last: list[RawDocument] | None = None,
) -> tuple[Pipeline, Pipeline]:
    """``before`` ingested; then a second worker processes ``then`` while the first stores the batches of
    ``during``, one just before each of the second's readings of what is stored after its first (the decision
    before the lock read that first one), as long as it has not taken the lock; ``last``: a batch stored after
    its work before the lock, just before it takes the lock. Returns the two pipelines, closed."""
    settings = Settings(store=url, batch_size=8)
    one, two = Pipeline(Store(url), settings), Pipeline(Store(url), settings)
    one.ingest(before)
    pending, readings, storing, locking = list(during), [0], [False], [False]
    through = Transaction.written_through

    def store_one(batch: list[RawDocument]) -> None:
        storing[0] = True
        try:
            one.process(batch)
        finally:
            storing[0] = False

    def reading(txn: Transaction) -> tuple[int, int]:
        if not storing[0] and not locking[0]:
            readings[0] += 1
            if readings[0] > 1 and pending:
                store_one(pending.pop(0))
        return through(txn)

    writing = two.store.writing

    @contextlib.contextmanager
    def then_lock(before_lock=None):
        def work_then_last(txn: Transaction) -> None:
            before_lock(txn)
            locking[0] = True
            if last:
                store_one(last)

        with writing(before_lock=work_then_last) as txn:
            yield txn

    monkeypatch.setattr(Transaction, "written_through", reading)
    monkeypatch.setattr(two.store, "writing", then_lock)
    two.process(then)
    one.close()
    two.close()
    assert not pending, "batches left: the second worker stopped reading before its lock"
    return one, two


def _meeting_docs() -> tuple[list[RawDocument], list[RawDocument], list[RawDocument], Callable]:
    """A stored article (``before``), a copy of it published earlier (``first``) that takes its story over, and
    a batch (``then``) of which three documents meet that copy (a copy of the article, its exact text, a copy of
    the copy) and three do not (an unrelated article and its near copy, a text of its own)."""
    rng = random.Random(3)
    article, other = fixture_text("en_article.txt"), fixture_text("ar_other.txt")
    doc = lambda source, body, hour: RawDocument(source=source, body=body, published=f"2026-12-01T{hour}:00:00Z")  # noqa: E731
    before = [doc("article.txt", article, "10")]
    first = [doc("early.txt", _near_copy(article), "09")]
    then = [
        doc("other.txt", other, "11"),
        doc("copy.txt", article + "\n\nA line added at the end of the article by its second outlet.", "12"),
        doc("same.txt", _near_copy(article), "13"),
        doc("other-copy.txt", _near_copy(other), "14"),
        doc("own.txt", _words(150, rng), "15"),
        doc(
            "copy-of-copy.txt",
            article + "\n\nA line added at the end of the article by its second outlet. Again.",
            "16",
        ),
    ]
    return before, first, then, doc


def _placed_as_serial(fates: list[str], rows: list[tuple[int, bytes]], folder: Path) -> None:
    """The last batch's staged template-count row was placed as it was staged, none is left with its staging mark,
    and the rows are those of the serial store in ``folder`` (``_serial``)."""
    assert fates[-1] == "placed", fates
    assert all(seq > 0 for seq, _ in rows)
    assert [blob for _, blob in rows] == [blob for _, blob in _count_rows(f"sqlite:///{folder}/serial.db")]


def test_what_others_store_while_a_batch_is_decided_is_met_before_the_lock(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker stores a copy that takes a stored article's story over while a batch is decided before the
    lock, and nothing after: the batch is decided again before the lock, in the three documents that meet the
    copy, and under the lock its decision stands (nothing decided there). The stories and the template-count rows
    are those of the documents stored one after another (SQLite)."""
    from tests.services import postgres_database

    before, first, then, _ = _meeting_docs()
    expected = _serial(tmp_path, before, first, then)
    fates = _counts_spy(monkeypatch)
    with postgres_database(postgres_server_url) as url:
        _, second = _stored_while_deciding(url, before, then, [first], monkeypatch)
        got, rows = _stories_of(url), _count_rows(url)
    assert got == expected
    assert (second.decided_again_before_lock, second.documents_decided_again_before_lock) == (1, 3)
    assert (second.decided_again, second.documents_decided_again) == (0, 0)
    _placed_as_serial(fates, rows, tmp_path)


def test_a_batch_decided_again_before_the_lock_into_a_copy_places_no_count_row(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text decided before the lock as new (its row staged, counted) while another worker stores a near copy of it
    published earlier: decided again before the lock it is a copy, which adds nothing to the counts. Its staged row
    goes before the lock, and under the lock, where that decision stands, none is placed: the rows are those of the
    serial store."""
    from tests.services import postgres_database

    text = fixture_text("ar_other.txt")
    before = [RawDocument(source="article.txt", body=fixture_text("en_article.txt"))]
    first = [RawDocument(source="apart-early.txt", body=_near_copy(text), published="2026-12-01")]
    then = [RawDocument(source="apart.txt", body=text, published="2026-12-01T11:30:00Z")]
    expected = _serial(tmp_path, before, first, then)
    fates = _counts_spy(monkeypatch)
    with postgres_database(postgres_server_url) as url:
        _, second = _stored_while_deciding(url, before, then, [first], monkeypatch)
        got, rows = _stories_of(url), _count_rows(url)
    assert got == expected and expected["apart.txt"][2] == "apart-early.txt"
    assert second.decided_again_before_lock == 1 and second.decided_again == 0
    assert fates[-1] == "none", fates
    assert [blob for _, blob in rows] == [blob for _, blob in _count_rows(f"sqlite:///{tmp_path}/serial.db")]


def _read_counts(store: Store, *counts: ShingleCounts) -> None:
    """Template counts caught up with the store and read whole, as a worker that weighs shingles reads them."""
    for each in counts:
        with each.bound(), store.reading() as txn:
            each.catch_up(txn)
            each.weights(np.zeros(1, dtype=np.uint32))


def test_a_worker_whose_pass_before_the_lock_stands_holds_the_counts_a_new_process_reads(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a batch is decided before the lock, another worker stores a text of its own (a template-count row the
    batch's decision did not read): the batch is made again before the lock and stands under it, where the counts
    are not caught up. Its own row must not be added to the counts it holds then (they would skip the other's row
    for good): the counts and last seq it holds after are those a new process reads."""
    from tests.services import postgres_database

    rng = random.Random(8)
    article = fixture_text("en_article.txt")
    before = [RawDocument(source="article.txt", body=article)]
    then = [
        RawDocument(source="half.txt", body=_halves(article)[0]),  # an excerpt: weighed, so the worker reads the counts
        RawDocument(source="own.txt", body=_words(150, rng)),
    ]
    during = [[RawDocument(source="theirs.txt", body=_words(150, rng))]]  # counted: a row the batch did not read
    with postgres_database(postgres_server_url) as url:
        _, second = _stored_while_deciding(url, before, then, during, monkeypatch)
        assert second.decided_again_before_lock == 1 and second.decided_again == 0  # made again before, stood under
        assert second.templates.read
        store = Store(url)
        fresh, held = ShingleCounts(second.settings.boilerplate_texts), second.templates
        _read_counts(store, fresh, held)  # the worker's caught up as its next batch would
        store.close()
    assert held.last_seq == fresh.last_seq
    assert np.array_equal(held._counts, fresh._counts) and np.array_equal(held._days, fresh._days)


def test_a_batch_decided_again_before_the_lock_stages_its_new_template_counts(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two excerpts of a stored article that share nothing, and a text. While the batch of the second excerpt and
    the text is decided before the lock (the excerpt in the article's story, the text new: counted), another
    worker stores the first excerpt, published before the article, which takes the story over, and a near copy of
    the text published before it: decided again before the lock, the excerpt is on its own, the text a copy (not
    counted). The row staged for the first decision is replaced before the lock by the row of the new one, placed
    as it is under the lock; the rows and stories are those of the documents stored one after another
    (SQLite)."""
    from tests.services import postgres_database

    article = fixture_text("en_article.txt")
    one_half, other_half = _halves(article)
    before = [RawDocument(source="article.txt", body=article, published="2026-12-01T10:00:00Z")]
    first = [
        RawDocument(source="one.txt", body=one_half, published="2026-12-01T09:00:00Z"),
        RawDocument(source="apart-early.txt", body=_near_copy(fixture_text("ar_other.txt")), published="2026-12-01"),
    ]
    then = [
        RawDocument(source="two.txt", body=other_half, published="2026-12-01T11:00:00Z"),
        RawDocument(source="apart.txt", body=fixture_text("ar_other.txt"), published="2026-12-01T11:30:00Z"),
    ]
    expected = _serial(tmp_path, before, first, then)
    fates = _counts_spy(monkeypatch)
    writes, made = _story_writes(monkeypatch), _placings(monkeypatch)
    with postgres_database(postgres_server_url) as url:
        _, second = _stored_while_deciding(url, before, then, [first], monkeypatch)
        got, rows, tables = _stories_of(url), _count_rows(url), _tables_of(url)
        store = Store(url)
        two = next(r for r in store.iter_records() if r.source == "two.txt")
        store.close()
    assert got == expected and expected["two.txt"][3] == ["two.txt"] and expected["apart.txt"][2] == "apart-early.txt"
    assert (second.decided_again_before_lock, second.documents_decided_again_before_lock) == (1, 2)
    assert second.decided_again == 0
    _placed_as_serial(fates, rows, tmp_path)
    # Its stories too: staged again before the lock (the excerpt's own, not the text's), none written under it; and
    # its placing, made for each decision before the lock, not under it.
    assert not tables["faults"] and writes["locked"] == [] and {two.id} in writes["staged"]
    assert True not in made


def test_a_batch_that_finds_the_lock_held_meets_what_its_holder_stores_before_the_lock(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker holds the lock while storing a copy that takes a stored article's story over; another's batch,
    decided before the lock, finds it held: it tries the lock again every few milliseconds rather than wait in
    line, and once the holder has stored, it is decided again before the lock, in the parts the copy touches.
    Under the lock its decision stands. The stories are those of the documents stored one after another
    (SQLite)."""
    import docsieve.pipeline
    from tests.services import postgres_database

    monkeypatch.setattr(docsieve.pipeline, "LOCK_TRIES", 10_000)  # 20 s: this test's threads, not the machine, decide
    before, first, then, _ = _meeting_docs()
    expected = _serial(tmp_path, before, first, then)
    holding, release, refused = threading.Event(), threading.Event(), threading.Event()
    try_lock = Transaction.try_write_lock

    def tried(txn: Transaction) -> bool:
        got = try_lock(txn)
        if not got:
            refused.set()
        return got

    monkeypatch.setattr(Transaction, "try_write_lock", tried)
    with postgres_database(postgres_server_url) as url:
        settings = Settings(store=url, batch_size=8)
        one, two = Pipeline(Store(url), settings), Pipeline(Store(url), settings)
        one.ingest(before)
        writing = one.store.writing

        @contextlib.contextmanager
        def held(before_lock=None):
            with writing(before_lock=before_lock) as txn:
                yield txn
                holding.set()
                assert release.wait(60)

        monkeypatch.setattr(one.store, "writing", held)
        holder = threading.Thread(target=one.process, args=(first,))
        holder.start()
        assert holding.wait(60)
        waiter = threading.Thread(target=two.process, args=(then,))
        waiter.start()
        assert refused.wait(60)
        release.set()
        holder.join(60)
        waiter.join(60)
        got = _stories_of(url)
        one.close()
        two.close()
    assert got == expected
    assert (two.decided_again_before_lock, two.documents_decided_again_before_lock) == (1, 3)
    assert two.decided_again == 0


def test_a_batch_that_cannot_be_made_again_in_part_is_left_to_the_lock_at_once(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker stores a copy that takes a stored article's story over while a batch is decided before the
    lock, and the part decided again reads a part that stands (the safeguard of ``Book.merged``, which real news
    never met): the batch cannot be made again in part, now or as the store moves on, so neither that nor the lock
    is tried again before the lock; it waits its turn and is decided again whole under it. The stories are those of
    one process."""
    from docsieve.stories import Book
    from tests.services import postgres_database

    before, first, then, _ = _meeting_docs()
    expected = _serial(tmp_path, before, first, then)
    calls = {"stored_since": 0, "try_write_lock": 0}
    for name in calls:
        method = getattr(Transaction, name)

        def counted(txn: Transaction, *args, __method=method, __name=name):
            calls[__name] += 1
            return __method(txn, *args)

        monkeypatch.setattr(Transaction, name, counted)
    monkeypatch.setattr(Book, "merged", lambda book, again, redo: None)
    with postgres_database(postgres_server_url) as url:
        _, second = _stored_while_deciding(url, before, then, [first], monkeypatch)
        got = _stories_of(url)
    assert got == expected
    assert _tries(second) == (0, 1, len(then))
    # stored_since: the batch's one pass, and under the lock; try_write_lock: the other worker's two batches alone.
    assert calls == {"stored_since": 2, "try_write_lock": 2}


def test_a_store_that_never_rests_leaves_what_comes_last_to_the_lock(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker stores a batch during each of the batch's decisions before the lock, and one more just before
    it takes the lock: the decision is made again before the lock as many times as allowed (the second time in a
    part the first time left standing), then met under the lock with what came after the last. The stories are
    those of the documents stored one after another (SQLite)."""
    from docsieve.pipeline import AGAIN_BEFORE_LOCK
    from tests.services import postgres_database

    before, first, then, doc = _meeting_docs()
    rng = random.Random(4)
    # The second meets a part the first left standing (the unrelated article): a copy of it published before it.
    second_copy = [doc("other-early.txt", _near_copy(fixture_text("ar_other.txt")), "08")]
    elsewhere = [[doc(f"elsewhere-{i}.txt", _words(120, rng), "08")] for i in range(AGAIN_BEFORE_LOCK - 2)]
    during = [first, second_copy, *elsewhere]
    last = [doc("earlier.txt", fixture_text("en_article.txt") + "\n\nAn earlier outlet's line.", "07")]
    expected = _serial(tmp_path, before, *during, last, then)
    with postgres_database(postgres_server_url) as url:
        _, second = _stored_while_deciding(url, before, then, during, monkeypatch, last)
        got = _stories_of(url)
    assert got == expected
    assert expected["copy.txt"][2] == "earlier.txt"  # the last one stored took the story over again
    assert expected["other.txt"][2] == "other-early.txt"
    assert second.decided_again_before_lock == AGAIN_BEFORE_LOCK
    # Under the lock, from the first decision: the parts of the article's copies and of the unrelated article.
    assert (second.decided_again, second.documents_decided_again) == (1, 5)
    assert second._tries_in_vain  # its next batch goes straight to the lock


def test_after_tries_in_vain_a_batch_goes_straight_to_the_lock(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose last batch was made again before the lock and decided again under it all the same: its next
    batch, meeting a copy another stores while it is decided, is not made again before the lock but under it,
    in the parts the copy touches; the batch after it tries again. The stories are those of one process."""
    from tests.services import postgres_database

    before, first, then, _ = _meeting_docs()
    expected = _serial(tmp_path, before, first, then)
    stage = Transaction.stage_shingle_counts
    with postgres_database(postgres_server_url) as url:
        settings = Settings(store=url, batch_size=8)
        one, two = Pipeline(Store(url), settings), Pipeline(Store(url), settings)
        one.ingest(before)
        pending = [first]

        def staged_then_theirs(txn: Transaction, blob) -> None:  # after the second's decision before the lock
            stage(txn, blob)
            if pending:
                one.process(pending.pop())

        monkeypatch.setattr(two, "_tries_in_vain", True)
        monkeypatch.setattr(Transaction, "stage_shingle_counts", staged_then_theirs)
        two.process(then)
        got = _stories_of(url)
        one.close()
        two.close()
    assert not pending and got == expected
    assert _tries(two) == (0, 1, 3)
    assert not two._tries_in_vain


def _tries(pipeline: Pipeline) -> tuple[int, int, int]:
    """(times made again before the lock, batches decided again under it, documents of them)."""
    return pipeline.decided_again_before_lock, pipeline.decided_again, pipeline.documents_decided_again


def test_every_story_a_batch_changes_is_among_those_changed_since_it_began(postgres_server_url: str) -> None:
    """What deciding again in part relies on (``Transaction.stories_changed_since``): after each batch, every story
    whose canonical, members, links or merge differ from before it is among those changed since the store's last
    seq before it, whether its row was stamped (a new canonical, a merge) or a record tells it (a copy joined it, a
    roundup holds it)."""
    from docsieve.schema import contains, stories
    from tests.services import postgres_database
    from tests.test_stories import edit, text, words

    def state(store: Store) -> dict[str, tuple]:
        with store.engine.connect() as conn:
            members: dict[str, list[str]] = {}
            for rid, story in conn.execute(sa.select(records.c.id, records.c.story_id)):
                members.setdefault(story, []).append(rid)
            holders: dict[str, list[str]] = {}
            for rid, story in conn.execute(sa.select(contains.c.record_id, contains.c.story_id)):
                holders.setdefault(story, []).append(rid)
            return {
                sid: (canonical, into, sorted(members.get(sid, [])), sorted(holders.get(sid, [])))
                for sid, canonical, into in conn.execute(
                    sa.select(stories.c.id, stories.c.canonical_id, stories.c.merged_into)
                )
            }

    x, y, z, w = words(50, 80), words(51, 80), words(52, 300), words(53, 200)
    doc = lambda source, body, hour: RawDocument(  # noqa: E731
        source=source, body=body, title=source, published=f"2026-12-01T{hour}:00:00Z"
    )
    batches = [
        [doc("x", text(x), "10"), doc("y", text(y), "10"), doc("w", text(w), "10")],
        [doc("x2", text(edit(x, 54, 0.03)), "11"), doc("w2", text(edit(w, 55, 0.05)), "11")],
        [doc("roundup", text(z, y, x), "12")],
        [doc("x0", text(x[:60]), "08"), doc("y2", text(edit(y, 56, 0.03)), "12")],
        [doc("w0", text(w), "07")],
    ]
    with postgres_database(postgres_server_url) as url:
        store = Store(url)
        pipeline = Pipeline(store, Settings(store=url))
        before = state(store)
        changes = 0
        for batch in batches:
            with store.writing() as txn:
                seq = txn.last_seq()
            pipeline.ingest(batch)
            after = state(store)
            changed = {s for s in before.keys() | after.keys() if before.get(s) != after.get(s)}
            with store.writing() as txn:
                told = txn.stories_changed_since(seq)
            assert changed <= told, f"{batch[0].source}: {changed - told} changed, not told"
            changes += len(changed & before.keys())  # stories that were there and changed
            before = after
        pipeline.close()
    assert changes >= 5  # joined, held by the roundup, taken over, not only founded


def test_a_take_over_no_story_row_says_is_told_by_its_record(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker stores an excerpt that takes a stored article's story over, its story rows stamped with no seq
    (as a takedown's are), while a batch that read that story waits: the excerpt's record, stored since, tells the
    change, and only that part is decided again (the unrelated document's decision stands). Its stories are those
    of one process."""
    from docsieve.prepare import prepare
    from tests.services import postgres_database

    article = fixture_text("en_article.txt")
    one_half, other_half = _halves(article)
    doc = lambda source, body, hour: RawDocument(source=source, body=body, published=f"2026-12-01T{hour}:00:00Z")  # noqa: E731
    before = [doc("article.txt", article, "10")]
    old = doc("one.txt", one_half, "09")
    then = [doc("two.txt", other_half, "11"), doc("apart.txt", fixture_text("ar_other.txt"), "12")]
    old_ids = {p.id for p in prepare([old], Settings())[1]}
    save = Transaction.save_stories

    def unstamped(txn: Transaction, book, now, seq=None):
        return save(txn, book, now, None if book.new_records & old_ids else seq)

    monkeypatch.setattr(Transaction, "save_stories", unstamped)
    expected = _serial(tmp_path, before, [old], then)
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, before, old, then)
        got = _stories_of(url)
    assert got == expected and expected["two.txt"][3] == ["two.txt"]
    assert (second.decided_again, second.documents_decided_again) == (1, 1)


def test_a_roundup_stored_meanwhile_makes_the_part_that_read_a_story_it_holds_decided_again(
    postgres_server_url: str, tmp_path: Path
) -> None:
    """Another worker stores a roundup of two stored items while a batch that read one of them (a copy of it)
    waits for the lock. The item's story row is not stamped (``save_stories``), yet it changed (what holds it):
    the roundup, stored since, says so (its text meets the copy's, and its link holds the story), and the copy's
    part is decided again; the unrelated document's decision stands."""
    from tests.services import postgres_database
    from tests.test_stories import edit, text, words

    x, y, z = words(40, 60), words(41, 60), words(42, 300)
    doc = lambda source, body: RawDocument(source=source, body=body, title=source)  # noqa: E731
    before = [doc("x", text(x)), doc("y", text(y))]
    theirs = [doc("roundup", text(x, z, y))]
    mine = [doc("x2", text(edit(x, 43, 0.03))), doc("apart.txt", fixture_text("ar_other.txt"))]
    expected = _serial_tables(tmp_path, before, theirs, mine)
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, before, theirs, mine)
        got = _tables_of(url)
    assert got == expected and not got["faults"]
    assert any(holder == "roundup" for holder, *_ in got["links"])
    assert (second.decided_again, second.documents_decided_again) == (1, 1)


@pytest.mark.parametrize("inside", ["by_hash", "stories_of", "roundups"])
def test_a_take_over_committed_inside_a_decision_before_the_lock_is_met_under_it(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inside: str
) -> None:
    """Another worker commits an excerpt of a stored article, published before it (it takes the article's story
    over), between two reads of a batch's decision before the lock: after the catch-ups, so that it is no candidate
    of the batch's other excerpt, which the decision still places in the article's story. The store has moved on
    when the decision ends, and the story is among those changed since it began: that document is decided again,
    still before the lock (on its own, as in one process storing the excerpt first: SQLite), and an unrelated
    document's decision stands; under the lock the decision stands."""
    from tests.services import postgres_database

    article = fixture_text("en_article.txt")
    one_half, other_half = _halves(article)
    doc = lambda source, body, hour: RawDocument(source=source, body=body, published=f"2026-12-01T{hour}:00:00Z")  # noqa: E731
    before = [doc("article.txt", article, "10")]
    theirs = [doc("one.txt", one_half, "09")]
    mine = [doc("two.txt", other_half, "11"), doc("apart.txt", fixture_text("ar_other.txt"), "12")]
    expected = _serial(tmp_path, before, theirs, mine)
    with postgres_database(postgres_server_url) as url:
        settings = Settings(store=url, batch_size=8)
        first, second = Pipeline(Store(url), settings), Pipeline(Store(url), settings)
        first.ingest(before)
        read = getattr(Transaction, inside)
        done: list[bool] = []

        def then_theirs(txn: Transaction, *args):
            if not done and txn.staged:  # the decision before the lock
                done.append(True)
                first.ingest(theirs)
            return read(txn, *args)

        monkeypatch.setattr(Transaction, inside, then_theirs)
        second.ingest(mine)
        got = _stories_of(url)
        first.close()
        second.close()
    assert done and got == expected
    assert expected["two.txt"][3] == ["two.txt"]
    assert (second.decided_again_before_lock, second.documents_decided_again_before_lock) == (1, 1)
    assert second.decided_again == 0


def test_a_part_decided_again_that_reads_a_part_that_stands_makes_the_whole_batch_decided_again(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parts are the first safeguard; the second: were a part decided again to read a story of a part that
    stands, the batch is decided again whole. Here every document is made a part of its own on purpose: a text
    that holds a stored article and one stored meanwhile is decided again (it meets the latter), and reads the
    article's story, which a near copy of the article, standing, read too. The stories are still those of one
    process, and the whole batch was decided again."""
    from docsieve import stories
    from tests.services import postgres_database

    def apart(parts: stories._Parts, a: str, b: str) -> None:
        parts.find(a)
        parts.find(b)

    monkeypatch.setattr(stories._Parts, "join", apart)
    article, other = fixture_text("en_article.txt"), fixture_text("ar_other.txt")
    doc = lambda source, body, hour: RawDocument(source=source, body=body, published=f"2026-12-01T{hour}:00:00Z")  # noqa: E731
    before = [doc("article.txt", article, "10")]
    first = [doc("other.txt", other, "11")]
    then = [doc("both.txt", f"{article}\n\n{other}", "12"), doc("near.txt", _near_copy(article), "13")]
    expected = _serial(tmp_path, before, first, then)
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, before, first, then)
        got = _stories_of(url)
    assert got == expected
    assert (second.decided_again, second.documents_decided_again) == (1, 2)  # the whole batch


@pytest.mark.parametrize("seed", range(24))
def test_batches_decided_in_part_store_the_stories_of_one_process(
    postgres_server_url: str, tmp_path: Path, seed: int
) -> None:
    """Made-up news with every relation the story rules know (near copies, excerpts, roundups of several items,
    exact copies, take-overs by an earlier publication), in two batches decided at once by two workers: the second
    decided before the lock, the first stored meanwhile, the second decided again in part under the lock. With
    template weighting off (the second's counts are a batch behind by design), the stories are those of one process
    storing the batches one after another, whatever parts stood."""
    import random

    from tests.services import postgres_database

    rng = random.Random(seed)
    items = [_words(rng.randrange(60, 200), rng) for _ in range(8)]
    docs: list[RawDocument] = []
    for n in range(24):
        kind = rng.choice(["item", "near", "excerpt", "roundup", "exact", "own"])
        a, b = rng.sample(items, 2)
        body = {
            "item": a,
            "near": _near_copy(a),
            "excerpt": " ".join(a.split()[: len(a.split()) * 2 // 3]),
            "roundup": f"{a}\n\n{b}\n\n{rng.choice(items)}",
            "exact": a,
            "own": _words(100, rng),
        }[kind]
        docs.append(
            RawDocument(source=f"{n}-{kind}.txt", body=body, published=f"2026-12-01T{rng.randrange(24):02}:00:00Z")
        )
    own = [RawDocument(source=f"own-{n}.txt", body=_words(120, rng)) for n in range(2)]  # parts that stand
    before, first, then = docs[:6], docs[6:14], docs[14:] + own
    weights_off = {"boilerplate_texts": 10**9}
    expected = _serial(tmp_path, before, first, then, **weights_off)
    expected_tables = _serial_tables(tmp_path, before, first, then, **weights_off)
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, before, first, then, **weights_off)
        got = _stories_of(url)
        tables = _tables_of(url)
    assert got == expected
    # The parts that stood keep their stories' rows (founded, new canonicals), links and stamps.
    assert tables == expected_tables and not tables["faults"]
    assert second.decided_again == 1
    assert 0 < second.documents_decided_again <= len(then) - len(own)  # some parts decided again, some stood


@pytest.mark.parametrize("when", ["inside", "after"])
def test_a_record_taken_down_while_a_batch_is_decided_before_the_lock(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """Another process takes down a stored text while a batch holding a copy of it is decided before the lock:
    between two of the decision's reads (the record named by its text's hash, gone when its story is read), or
    after the decision. No error either way, and the batch is decided (again) under the lock: the document is
    an exact copy of the text's other record, never linked to the one taken down."""
    from tests.services import postgres_database

    text = fixture_text("ar_near_a.txt")
    with postgres_database(postgres_server_url) as url:
        settings = Settings(store=url)
        mine, theirs = Pipeline(Store(url), settings), Pipeline(Store(url), settings)
        theirs.ingest(
            [
                RawDocument(source="x.txt", body=text, published="2026-01-01T10:00:00Z"),
                RawDocument(source="y.txt", body=text, published="2026-01-01T10:30:00Z"),
            ]
        )
        taken: list[str] = []

        def take_down(txn: Transaction) -> None:
            if not taken and txn.staged:  # the decision before the lock (its batch is staged)
                x = [r.id for r in theirs.store.iter_records() if r.source == "x.txt"]
                taken.extend(theirs.store.delete(x, None, settings))

        if when == "inside":
            by_hash = Transaction.by_hash
            monkeypatch.setattr(Transaction, "by_hash", lambda txn, hashes: (by_hash(txn, hashes), take_down(txn))[0])
        else:
            decide = Pipeline._decide
            monkeypatch.setattr(Pipeline, "_decide", lambda self, txn, *a: (decide(self, txn, *a), take_down(txn))[0])
        mine.ingest([RawDocument(source="d.txt", body=text, published="2026-01-01T11:00:00Z")])
        got = {r.source: r for r in mine.store.iter_records()}
        mine.close()
        theirs.close()
    assert len(taken) == 1 and "x.txt" not in got
    assert got["d.txt"].duplicate_of == got["y.txt"].id and got["d.txt"].method is Method.EXACT
    assert got["d.txt"].story_id == got["y.txt"].story_id and got["y.txt"].status is Status.CANONICAL
    # Inside, the decision failed (a record named by one read was gone at the next) and was made under the lock.
    assert (mine.batches_stored, mine.decided_again) == (1, 1 if when == "after" else 0)


def test_the_placing_arrays_are_read_back_as_they_were(postgres_server_url: str) -> None:
    """The placing's arrays go to PostgreSQL as literals (``_array_literal``): ids, statuses, figures and missing
    values come back as they were, and so would a string with quotes, backslashes, commas or braces."""
    from docsieve.store import _array_literal

    strings = ["3b0ecb07abc01b42aaaa", None, "duplicate", "NULL", "", 'a "quoted", {braced}', "back\\slash\\"]
    figures = [0.5, None, 1e-07, 1 / 3, 0.0, 1.0]
    seqs = [-(1 << 62), -1, 0, 7, (1 << 63) - 1]
    engine = sa.create_engine(postgres_server_url)
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT %s::varchar[], %s::float8[], %s::int8[]", tuple(map(_array_literal, (strings, figures, seqs)))
        ).one()
    engine.dispose()
    assert list(row) == [strings, figures, seqs]


def test_two_writers_staging_the_same_ids_in_opposite_order_do_not_deadlock(postgres_server_url: str) -> None:
    """Writers stage ids in one order: one holding X while waiting for a third writer's W (uncommitted) does
    not hold Y, so the other takes X and Y, commits, and the first stages what is left (W) and stores it."""
    import threading

    from tests.services import postgres_database

    def draft(record_id: str) -> NewRecord:
        return NewRecord(Record(record_id, f"{record_id}.txt", Status.CANONICAL, record_id * 8))

    def store_batch(store: Store, ids: list[str], staged: dict[str, list[str]], name: str) -> None:
        drafts = [draft(i) for i in ids]
        with store.writing(before_lock=lambda txn: txn.stage(drafts)) as txn:
            staged[name] = sorted(txn.staged)
            known = txn.existing_ids(ids)
            txn.insert([d for d in drafts if d.record.id not in known])

    with postgres_database(postgres_server_url) as url:
        store = Store(url)
        third = store.engine.connect()
        third.begin()
        Transaction(third).stage([draft("W")])  # holds W, uncommitted
        staged: dict[str, list[str]] = {}
        errors: list[BaseException] = []

        def run(ids: list[str], name: str) -> None:
            try:
                store_batch(store, ids, staged, name)
            except BaseException as error:  # reported below
                errors.append(error)

        first = threading.Thread(target=run, args=(["Y", "W", "X"], "first"))
        first.start()
        _waiting(store, "transactionid", 1, "the first writer never waited for W")
        second = threading.Thread(target=run, args=(["Y", "X"], "second"))
        second.start()
        second.join(timeout=60)  # it never waits on the first: X and Y are after W in the staging order
        third.rollback()
        third.close()
        first.join(timeout=60)
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(records.c.id, records.c.seq).order_by(records.c.id)).all()
        store.close()
    assert not errors and not first.is_alive()
    assert staged == {"second": ["X", "Y"], "first": ["W"]}
    assert [i for i, _ in rows] == ["W", "X", "Y"] and all(seq > 0 for _, seq in rows)


@pytest.mark.parametrize("deadlocks, staged_after", [(2, 3), (4, 0)])
def test_a_deadlock_while_staging_is_retried_then_left_to_the_lock(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch, deadlocks: int, staged_after: int
) -> None:
    """PostgreSQL breaking a deadlock in the staging COPY (with a writer that stages in another order) costs
    a retry; past STAGING_DEADLOCKS tries the batch is written under the lock, whole, all the same."""
    from contextlib import contextmanager

    from docsieve import store as store_module
    from tests.services import postgres_database

    class Deadlock(Exception):
        sqlstate = store_module.DEADLOCK

    original = Transaction._copy
    broken = {"left": deadlocks}

    @contextmanager
    def copy(self: Transaction, statement: str):
        if statement.startswith("COPY records (seq") and self.staged == {} and broken["left"]:
            with original(self, "COPY records (seq) FROM STDIN"):  # the transaction in error, as a real one
                broken["left"] -= 1
                raise sa.exc.OperationalError(statement, None, Deadlock("deadlock detected"))
        with original(self, statement) as inner:
            yield inner

    monkeypatch.setattr(Transaction, "_copy", copy)
    staged = _staging_spy(monkeypatch)
    text = fixture_text("ar_near_a.txt")
    with postgres_database(postgres_server_url) as url:
        pipeline = Pipeline(Store(url), Settings(store=url, batch_size=8))
        docs = [("a.txt", text), ("b.txt", _near_copy(text)), ("c.txt", fixture_text("en_article.txt"))]
        stored = pipeline.process([RawDocument(source=s, body=b) for s, b in docs])
        pipeline.close()
    assert staged == [staged_after] and broken["left"] == max(0, deadlocks - 4)
    assert sorted(r.source for r in stored) == ["a.txt", "b.txt", "c.txt"]


OPEN_AND_WRITE = """
import sys
from docsieve.models import RawDocument
from docsieve.pipeline import Pipeline
from docsieve.settings import Settings
from docsieve.store import Store
settings = Settings(store=sys.argv[1], batch_size=2)
pipeline = Pipeline(Store(settings.store, fingerprints=settings.fingerprint_parameters), settings)
pipeline.ingest([RawDocument(f"d{sys.argv[2]}-{i}", f"نص رقم {i} من العملية {sys.argv[2]} " * 5) for i in range(6)])
pipeline.close()
"""


@pytest.mark.slow
def test_processes_opening_a_new_store_together_all_write_to_it(tmp_path: Path) -> None:
    """One of them may be writing in the old journal mode while another puts the file in WAL mode, which
    SQLite refuses at once ("database is locked", no busy wait): seen as 1 failed process in 60 before."""
    import subprocess
    import sys

    for trial in range(4):
        url = f"sqlite:///{tmp_path / f'new{trial}.db'}"
        started = [
            subprocess.Popen([sys.executable, "-c", OPEN_AND_WRITE, url, str(k)], stderr=subprocess.PIPE, text=True)
            for k in range(6)
        ]
        for process in started:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
        store = Store(url)
        try:
            assert store.counts() == {"canonical": 36}
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        finally:
            store.close()


def test_migration_0015_compresses_the_snapshots_again_with_zstd_and_back(tmp_path: Path) -> None:
    """A store of 0014 holds zlib snapshots (shingles alone, and with words): migrated, each is zstd and gives
    the same counters; downgraded to 0014, zlib again, what a docsieve of 0014 reads."""
    import zlib

    from alembic import command

    from docsieve.schema import shingle_count_snapshots as snapshots
    from docsieve.templates import ZSTD_FRAME, _decompressed, _joined, _parts

    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).close()
    engine = sa.create_engine(url)
    rng = np.random.default_rng(2)
    counters = rng.integers(0, 40, 1 << 16, dtype=np.uint16).tobytes()
    words = rng.integers(0, 9, 1 << 14, dtype=np.uint32).tobytes()
    made = [counters, words]

    def stored() -> dict[int, list[bytes]]:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(snapshots.c.seq, snapshots.c.counts)).all()
        return {seq: [part for part in _parts(blob, row=False) if part is not None] for seq, blob in rows}

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0014")
        conn.execute(snapshots.insert().values(seq=1, counts=zlib.compress(counters, 1)))
        conn.execute(
            snapshots.insert().values(seq=2, counts=_joined(zlib.compress(counters, 1), zlib.compress(words, 1)))
        )
    Store(url).close()  # opening the store migrates it
    for seq, parts in stored().items():
        assert len(parts) == seq and all(part.startswith(ZSTD_FRAME) for part in parts)
        assert [_decompressed(part) for part in parts] == made[:seq]
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0014")
    for seq, parts in stored().items():
        assert len(parts) == seq and all(part[:1] == b"\x78" for part in parts)
        assert [zlib.decompress(part) for part in parts] == made[:seq]
    engine.dispose()


def test_times_of_an_older_sqlite_store_are_brought_to_one_format(tmp_path: Path) -> None:
    """Stories stamped in whole seconds (SQLite's own clock) or with an offset, as stores before 7224661 hold
    them: after migration 0013 every one is in the one format, so a page of stories goes on from a cursor
    of the same second without skipping any."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).close()
    engine = sa.create_engine(url)
    odd = ["2026-11-30 10:00:00", "2026-11-30 10:00:00+00:00", "2026-11-30 13:00:00.250000+03:00"]
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0012")
        for n in range(5):
            conn.execute(
                sa.text(
                    "INSERT INTO records (id, source, status, content_hash, images, story_id, created_at, changed_at)"
                    " VALUES (:id, :id, 'canonical', 'h', '[]', :id, :at, :at)"
                ),
                {"id": f"s{n}", "at": odd[n % 3]},
            )  # fmt: skip
            conn.execute(
                sa.text("INSERT INTO stories (id, canonical_id, created_at, changed_at) VALUES (:id, :id, :at, :at)"),
                {"id": f"s{n}", "at": odd[n % 3]},
            )
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            stamps = set(conn.scalars(sa.text("SELECT created_at FROM stories")))
            assert stamps == {"2026-11-30 10:00:00.000000", "2026-11-30 10:00:00.250000"}
            assert set(conn.scalars(sa.text("SELECT changed_at FROM records"))) == stamps
        seen, after = [], None
        while page := store.page_stories(limit=2, after=after):
            seen += [s.id for s in page]
            after = (datetime.fromisoformat(page[-1].created_at), page[-1].id)
        assert sorted(seen) == [f"s{n}" for n in range(5)] and len(seen) == 5
    finally:
        store.close()
        engine.dispose()


def test_a_record_stored_just_before_the_first_reading_before_the_lock_is_found(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker commits the original right before the copy's worker first reads ``written_through`` before
    the lock: the catch-ups before the lock must come after that reading (else the decision stands without the
    original, and no catch-up under the lock repairs it)."""
    from tests.services import postgres_database

    text = fixture_text("ar_near_a.txt")
    with postgres_database(postgres_server_url) as url:
        settings = Settings(store=url, batch_size=8)
        one, two = Pipeline(Store(url), settings), Pipeline(Store(url), settings)
        original = Transaction.written_through
        injected: list[bool] = []

        def written_through(self: Transaction):
            if not injected and threading.current_thread().name == "copy":
                injected.append(True)
                one.process([RawDocument(source="a.txt", body=text)])  # its own connection, its own lock
            return original(self)

        monkeypatch.setattr(Transaction, "written_through", written_through)
        copy = [RawDocument(source="b.txt", body=_near_copy(text))]
        worker = threading.Thread(target=two.process, args=(copy,), name="copy")
        worker.start()
        worker.join(60)
        got = {r.source: r for r in two.store.iter_records()}
        one.close()
        two.close()
    assert injected
    assert got["b.txt"].duplicate_of == got["a.txt"].id and got["b.txt"].method is Method.NEAR


def _two_workers_soon_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, count: int
) -> tuple[list[RawDocument], Pipeline, Pipeline]:
    """``count`` texts of 200 words and two workers on one SQLite store, in batches of 8, whose template counts fall
    due for a snapshot every 2,000 shingle ids (a batch of these texts holds some 1,600)."""
    import docsieve.templates as templates

    rng = random.Random(seed)
    docs = [RawDocument(source=f"d{i}.txt", body=_words(200, rng)) for i in range(count)]
    url = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setattr(templates, "SNAPSHOT_AFTER", 2_000)
    settings = Settings(store=url, batch_size=8)
    return docs, Pipeline(Store(url), settings), Pipeline(Store(url), settings)


def _holding_counts(*workers: Pipeline) -> None:
    """The workers read the template counts now, as one that weighs shingles does, and hold them from here on."""
    for worker in workers:
        _read_counts(worker.store, worker.templates)


def test_another_workers_snapshot_in_a_batch_that_adds_no_count_row_does_not_break_the_next_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker B writes a snapshot at the last row in a batch that stores nothing (all its documents known), while A,
    counts held up to the same row, makes its own: A must not write a second snapshot with that seq (primary-key
    clash), nor fail its batches after."""
    docs, a, b = _two_workers_soon_due(tmp_path, monkeypatch, 3, 32)
    a.ingest(docs[:8])
    _holding_counts(a)
    made, b_wrote, a_saved = a.templates.snapshot, [], []

    def b_first(rows: Transaction, documents: int) -> tuple[int, memoryview] | None:
        b.ingest(docs[:8])  # nothing new stored; the snapshot that is due is written at A's last row
        with b.store.reading() as txn:
            b_wrote.append(txn.newest_count_snapshot())
        return made(rows, documents)

    save = Transaction.save_count_snapshot

    def saved(txn: Transaction, seq: int, blob: bytes | memoryview) -> bool:
        a_saved.append(result := save(txn, seq, blob))
        return result

    monkeypatch.setattr(a.templates, "snapshot", b_first)
    monkeypatch.setattr(Transaction, "save_count_snapshot", saved)
    a.ingest(docs[8:16])  # not due at its lock; due at the next batch's
    assert not b_wrote
    a.ingest(docs[16:24])
    assert b_wrote == [a.templates.last_seq] and a_saved == [True, False]  # B's, then A's at the same seq refused
    monkeypatch.setattr(a.templates, "snapshot", made)
    assert a.ingest(docs[24:32]).new == 8  # was: IntegrityError on shingle_count_snapshots.seq, batch after batch
    a.close()
    b.close()


def test_a_worker_that_finds_another_workers_snapshot_since_its_own_makes_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every worker counts every row, so all fall due together. B's snapshot is saved after A has read past the row
    it is at (A's catch-up does not read it then): A, due in turn, makes none (it would compress the counts and write
    41 MB for rows that are bounded already), and the next one falls due a full interval later."""
    import docsieve.templates as templates

    docs, a, b = _two_workers_soon_due(tmp_path, monkeypatch, 4, 40)
    a.process(docs[:8])
    _holding_counts(a, b)
    made, deferred = [], []
    compress = templates._snapshot

    def counted(*args):
        made.append(1)
        return compress(*args)

    a_save, b_save = a._save_count_snapshot, b._save_count_snapshot

    def b_saves_first(documents: int) -> None:
        while deferred:
            b_save(deferred.pop())
        a_save(documents)

    monkeypatch.setattr(templates, "_snapshot", counted)
    monkeypatch.setattr(b, "_save_count_snapshot", deferred.append)
    monkeypatch.setattr(a, "_save_count_snapshot", b_saves_first)
    a.process(docs[8:16])  # not due at its lock
    b.process(docs[16:24])  # due: B's snapshot waits
    a.process(docs[24:32])  # due: A has read B's row; B's snapshot is saved first
    with a.store.reading() as txn:
        assert txn.newest_count_snapshot() == a.templates.last_seq == a.templates.snapshot_seq
    assert len(made) == 1 and a.templates.since_snapshot == 0
    a.process(docs[32:40])
    assert len(made) == 1  # not due again so soon
    a.close()
    b.close()


def test_a_count_row_staged_and_left_pending_is_rolled_back(postgres_server_url: str) -> None:
    """A staged template-count row neither placed nor dropped: the transaction fails and no negative row stays."""
    from docsieve.schema import shingle_counts
    from tests.services import postgres_database

    with postgres_database(postgres_server_url) as url:
        store = Store(url)
        staged = store.writing(before_lock=lambda txn: txn.stage_shingle_counts(b"\x01\x00\x00\x00"))
        with pytest.raises(RuntimeError, match="neither placed nor dropped"), staged:
            pass
        with store.engine.connect() as conn:
            assert conn.scalar(sa.select(sa.func.count()).select_from(shingle_counts)) == 0
        store.close()


def test_a_count_snapshot_is_made_outside_the_write_lock_and_stored_as_the_counts_it_was_made_of(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot falls due in a batch: it is compressed once the batch is stored, while this process holds no write
    transaction (no worker waits while it is made: 0.35-0.6 s each), then saved in a transaction of its own, staged
    before the lock on PostgreSQL. A new process reads the counts the ingesting one holds, and no staged row stays."""
    import docsieve.templates as templates
    from docsieve.schema import shingle_count_snapshots as snapshots

    monkeypatch.setattr(templates, "SNAPSHOT_AFTER", 2_000)
    writing, made = [False], []
    open_writing, make = Store.writing, templates._snapshot

    @contextlib.contextmanager
    def watched(self, *args, **kwargs):
        with open_writing(self, *args, **kwargs) as txn:
            writing[0] = True
            try:
                yield txn
            finally:
                writing[0] = False

    def compressed(*args):
        made.append(writing[0])
        return make(*args)

    monkeypatch.setattr(Store, "writing", watched)
    monkeypatch.setattr(templates, "_snapshot", compressed)
    rng = random.Random(11)
    docs = [RawDocument(source=f"d{i}.txt", body=_words(200, rng)) for i in range(40)]
    docs += [RawDocument(source=f"c{i}.txt", body=_near_copy(docs[i].body)) for i in range(0, 40, 5)]
    pipeline = Pipeline(Store(store_url), Settings(store=store_url, batch_size=8))
    pipeline.ingest(docs)
    assert made and not any(made)  # snapshots were made, none inside a write transaction
    again = templates.ShingleCounts(pipeline.settings.boilerplate_texts)
    with again.bound(), pipeline.store.reading() as txn:
        assert 0 < txn.newest_count_snapshot() <= pipeline.templates.last_seq
        assert txn.conn.scalar(sa.select(sa.func.count()).select_from(snapshots).where(snapshots.c.seq <= 0)) == 0
        again.catch_up(txn)
        again._loaded()
    assert again.last_seq == pipeline.templates.last_seq
    assert again.since_snapshot == pipeline.templates.since_snapshot  # none left due once saved
    assert np.array_equal(again._counts, pipeline.templates._counts)
    assert np.array_equal(again._days, pipeline.templates._days)
    pipeline.close()


def test_a_snapshot_that_fails_after_its_batch_committed_leaves_the_batch_stored_and_is_made_again(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot is saved after the batch's commit: a store error then (a lost connection, a lock timeout) must not
    fail the batch, which is stored (a task would be retried for nothing, a request answered 500, an ingest stopped).
    The snapshot stays due, and is made after the next batch."""
    import docsieve.templates as templates

    monkeypatch.setattr(templates, "SNAPSHOT_AFTER", 2_000)
    save, failures = Transaction.save_count_snapshot, [1]

    def failing(txn: Transaction, seq: int, blob: bytes | memoryview) -> bool:
        if failures:
            failures.pop()
            raise sa.exc.OperationalError("UPDATE shingle_count_snapshots", {}, Exception("connection lost"))
        return save(txn, seq, blob)

    monkeypatch.setattr(Transaction, "save_count_snapshot", failing)
    rng = random.Random(11)
    docs = [RawDocument(source=f"d{i}.txt", body=_words(200, rng)) for i in range(24)]
    pipeline = Pipeline(Store(store_url), Settings(store=store_url, batch_size=8))
    stored = [pipeline.process(docs[i : i + 8]) for i in range(0, 16, 8)]  # the second batch makes one due
    assert not failures and [len(s) for s in stored] == [8, 8]
    assert pipeline.templates.since_snapshot >= 2_000  # still due
    with pipeline.store.reading() as txn:
        assert txn.newest_count_snapshot() == 0
    pipeline.process(docs[16:24])
    with pipeline.store.reading() as txn:
        assert txn.newest_count_snapshot() == pipeline.templates.last_seq
    assert pipeline.templates.since_snapshot == 0
    pipeline.close()


def test_a_snapshot_staged_before_the_lock_is_placed_unless_another_as_new_was_stored_meanwhile(
    postgres_server_url: str,
) -> None:
    """PostgreSQL: a snapshot written before the lock is placed under it by its seq, the older one and the rows it
    covers gone; one at a seq another process stored meanwhile is dropped, and nothing negative stays; one neither
    placed nor dropped fails its transaction."""
    from docsieve.schema import shingle_count_snapshots as snapshots
    from docsieve.schema import shingle_counts
    from tests.services import postgres_database

    with postgres_database(postgres_server_url) as url:
        store = Store(url)
        with store.writing() as txn:
            rows = [txn.add_shingle_counts(np.arange(k, k + 3, dtype=np.uint32).tobytes()) for k in range(4)]
            assert txn.save_count_snapshot(rows[0], b"older")
        with store.writing(before_lock=lambda txn: txn.stage_count_snapshot(b"newer")) as txn:
            assert txn.save_count_snapshot(rows[2], b"newer")
        with store.writing(before_lock=lambda txn: txn.stage_count_snapshot(b"late")) as txn:
            assert not txn.save_count_snapshot(rows[2], b"late")  # another process's, at the same seq
        with store.writing(before_lock=lambda txn: txn.stage_count_snapshot(b"late")) as txn:
            assert not txn.save_count_snapshot(rows[1], b"late")  # older than the one stored
        pending = store.writing(before_lock=lambda txn: txn.stage_count_snapshot(b"pending"))
        with pytest.raises(RuntimeError, match="neither placed nor dropped"), pending:
            pass
        with store.reading() as txn:
            assert txn.conn.execute(sa.select(snapshots.c.seq, snapshots.c.counts)).all() == [(rows[2], b"newer")]
            assert txn.conn.execute(sa.select(shingle_counts.c.seq).order_by(shingle_counts.c.seq)).scalars().all() == [
                rows[2],
                rows[3],
            ]
        store.close()


def test_the_worker_that_placed_its_count_rows_holds_the_counts_a_new_process_reads(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After batches whose rows were staged and placed (with snapshots between them), the worker's own counts and
    last_seq are those a new process reads: no row counted twice (a wrong seq returned by the placement) or
    skipped. And under the lock no count row nor snapshot is INSERTed (the staged ones are placed by UPDATE)."""
    import numpy as np

    import docsieve.templates as templates
    from docsieve.schema import shingle_count_snapshots, shingle_counts
    from tests.services import postgres_database

    monkeypatch.setattr(templates, "SNAPSHOT_AFTER", 2_000)
    rng = random.Random(5)
    base = [RawDocument(source=f"d{i}.txt", body=_words(200, rng)) for i in range(32)]
    # a near copy in each batch: the worker weighs shingles, so it holds the counts from its first batch on
    docs = []
    for k in range(4):
        docs += [*base[8 * k : 8 * k + 7], RawDocument(source=f"c{k}.txt", body=_near_copy(base[8 * k].body))]
    with postgres_database(postgres_server_url) as url:
        settings = Settings(store=url, batch_size=8)
        pipeline = Pipeline(Store(url), settings)
        inserts_under_lock: list[str] = []
        locked = threading.local()

        @sa.event.listens_for(pipeline.store.engine, "before_cursor_execute")
        def watch(conn, cursor, statement, params, context, executemany):
            if "pg_advisory_xact_lock" in statement:
                locked.on = True
            elif getattr(locked, "on", False) and statement.lstrip().upper().startswith("INSERT INTO SHINGLE_COUNT"):
                inserts_under_lock.append(statement)  # a count row's, or a snapshot's

        @sa.event.listens_for(pipeline.store.engine, "commit")
        def done(conn):
            locked.on = False

        pipeline.ingest(docs)
        assert pipeline.templates.read
        with pipeline.store.engine.connect() as conn:
            newest = conn.scalar(sa.select(sa.func.max(shingle_counts.c.seq)))
            assert conn.scalar(sa.select(sa.func.max(shingle_count_snapshots.c.seq))) > 0  # snapshots were placed
        assert pipeline.templates.last_seq == newest
        probe = np.nonzero(pipeline.templates._counts)[0].astype(np.uint32) << 8
        mine = pipeline.templates.counts(probe).copy()
        pipeline.close()
        fresh = Pipeline(Store(url), settings)
        with fresh.store.writing() as txn:
            fresh.templates.catch_up(txn)
            theirs = fresh.templates.counts(probe)
        fresh.close()
    assert probe.size > 500 and np.array_equal(mine, theirs)
    assert inserts_under_lock == []


def test_a_roundup_in_a_part_that_stands_keeps_its_links_in_part(postgres_server_url: str, tmp_path: Path) -> None:
    """While a batch waits, another worker stores an earlier copy of a stored article: the waiting copy of that
    article is decided again under the lock; the batch's roundup of two other stored items stands as decided before
    the lock, and keeps the links to the two stories it holds. Stories, links and stamps as one process's."""
    import random

    from tests.services import postgres_database

    rng = random.Random(7)
    a, b, article = (_words(130, rng) for _ in range(3))
    doc = lambda source, body, hour: RawDocument(source=source, body=body, published=f"2026-12-01T{hour}:00:00Z")  # noqa: E731
    before = [doc("a.txt", a, "08"), doc("b.txt", b, "08"), doc("article.txt", article, "10")]
    first = [doc("early.txt", _near_copy(article), "09")]
    then = [doc("roundup.txt", f"{a}\n\n{b}", "11"), doc("copy.txt", article + " One more sentence here.", "12")]
    weights_off = {"boilerplate_texts": 10**9}
    expected, expected_tables = (
        _serial(tmp_path, before, first, then, **weights_off),
        _serial_tables(tmp_path, before, first, then, **weights_off),
    )
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, before, first, then, **weights_off)
        got, tables = _stories_of(url), _tables_of(url)
    assert got == expected and tables == expected_tables and not tables["faults"]
    assert {(h, s) for h, s, _, roundup in tables["links"] if roundup} == {
        ("roundup.txt", "a.txt"),
        ("roundup.txt", "b.txt"),
    }
    assert (second.decided_again, second.documents_decided_again) == (1, 1)


def test_an_exact_copy_stored_meanwhile_outside_the_window_is_met_by_its_text_in_part(
    postgres_server_url: str, tmp_path: Path
) -> None:
    """Another worker stores a text published months before the waiting batch's copy of it: outside the index's
    window, no lookup names it, but the store's texts do (an exact copy is found by its hash whenever published).
    Under the lock the copy is decided again, and joins it."""
    import random

    from tests.services import postgres_database

    rng = random.Random(8)
    text, other = _words(120, rng), _words(120, rng)
    before = [RawDocument(source="old.txt", body=_words(120, rng), published="2026-01-01T00:00:00Z")]
    first = [RawDocument(source="june.txt", body=text, published="2026-06-01T00:00:00Z")]
    then = [
        RawDocument(source="december.txt", body=text, published="2026-12-01T00:00:00Z"),
        RawDocument(source="other.txt", body=other, published="2026-12-01T01:00:00Z"),
    ]
    expected = _serial(tmp_path, before, first, then)
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, before, first, then)
        got = _stories_of(url)
    assert got == expected
    assert expected["december.txt"][1:3] == (Method.EXACT, "june.txt")
    assert (second.decided_again, second.documents_decided_again) == (1, 1)


def test_a_rewrite_stored_meanwhile_is_met_at_the_rewrite_floor_in_part(
    postgres_server_url: str, tmp_path: Path
) -> None:
    """sabq's cut of a release is stored while almadina's waits (decided before the lock: a story of its own). The two
    share too few shingles to pass verification, but reach the rewrite stage's floor: almadina's is decided again
    under the lock and joins sabq's story as a rewrite, as it does stored after it."""
    import json

    from docsieve.readers import read
    from tests.services import postgres_database

    def release(name: str) -> RawDocument:
        d = json.loads((Path(__file__).parent / "fixtures" / f"ar_rewrite_{name}.json").read_text(encoding="utf-8"))
        return RawDocument(source=d["source"], body=d["body"], title=d["title"], published=d["published"])

    seeds = list(read([str(Path(__file__).parent.parent / "seeds")], 10_000_000))
    first = [release("sweets_sabq")]
    then = [release("sweets_almadina"), RawDocument(source="own.txt", body=_words(120, random.Random(9)))]
    expected = _serial(tmp_path, seeds, first, then)
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, seeds, first, then)
        got = _stories_of(url)
    assert expected["snn-2015-07-22-515"][1:3] == (Method.REWRITE, "snn-2015-07-21-2924")
    assert got["snn-2015-07-22-515"] == expected["snn-2015-07-22-515"]
    assert (second.decided_again, second.documents_decided_again) == (1, 1)


def test_a_part_decided_again_weighs_boilerplate_by_the_counts_read_before_the_lock_in_part(
    postgres_server_url: str, tmp_path: Path
) -> None:
    """As in the test above (a document sharing a stored text's opening, ten items on that opening stored
    meanwhile), another outlet's exact copy of the stored text is stored with the items: the document, which read
    that story, is decided again under the lock, and still by the counts read before the lock (the batch decided in
    part): it joins the text's story, as stored before the items."""
    from tests.services import postgres_database

    before, items, sharing = _one_opening(5, 40, "12", with_copy=True)
    then = [sharing("d.txt", "10")]
    expected = _serial(tmp_path, before, then, items)
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, before, items, then)
        got = _stories_of(url)
    assert got == expected
    assert expected["d.txt"][3] == ["c-copy.txt", "c.txt", "d.txt"]
    assert (second.decided_again, second.documents_decided_again) == (1, 1)


def test_a_rejected_input_another_worker_stores_meanwhile_is_not_stored_twice_in_part(postgres_server_url: str) -> None:
    """Both workers read the same bad input (one rejected record: its id is its source's and bytes'); the first
    stores it while the second waits, with a document of its own. The second's batch is decided again whole (one of
    its ids is stored now), leaves the rejection out and stores its document."""
    import random

    from tests.services import postgres_database

    rng = random.Random(10)
    bad = RawDocument(source="bad.txt", body="")
    first = [bad, RawDocument(source="one.txt", body=_words(120, rng))]
    then = [bad, RawDocument(source="two.txt", body=_words(120, rng))]
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, [], first, then)
        got = _stories_of(url)
    assert sorted(got) == ["bad.txt", "one.txt", "two.txt"] and got["two.txt"][0] is Status.CANONICAL
    assert (second.batches_stored, second.decided_again, second.documents_decided_again) == (1, 1, 1)


def _made_up_news(seed: int) -> tuple[list[RawDocument], list[RawDocument], list[RawDocument]]:
    """Three batches (stored before; stored meanwhile; waiting) of made-up items and real articles (the fixtures:
    dated items, figures, rewrites, excerpts, templates) with their near copies, excerpts, roundups, exact copies
    and texts of their own, some undated; the waiting batch with an id stored before, an id twice, and another
    outlet's copy of one of its texts stored meanwhile, now and then."""
    import json

    fixtures = Path(__file__).parent / "fixtures"
    real = [
        (fixtures / name).read_text(encoding="utf-8")
        for name in (
            "ar_near_a.txt", "ar_near_b.txt", "ar_other.txt", "en_article.txt", "ar_excerpt_long.txt",
            "ar_excerpt_short.txt", "ar_template_a.txt", "ar_template_b.txt", "ar_long_article.txt",
        )
    ]  # fmt: skip
    for name in ("ar_dated_items", "ar_figures_items"):
        real += [d["body"] for d in json.loads((fixtures / f"{name}.json").read_text(encoding="utf-8"))]
    for name in ("passports_almadina", "passports_alriyadh", "sweets_almadina", "sweets_sabq"):
        real.append(json.loads((fixtures / f"ar_rewrite_{name}.json").read_text(encoding="utf-8"))["body"])
    rng = random.Random(seed)
    k = rng.randrange(3, 12)
    items = [_words(rng.randrange(60, 200), rng) for _ in range(k)] + rng.sample(real, k)
    docs = []
    for n in range(rng.randrange(14, 30)):
        kind = rng.choice(["item", "near", "excerpt", "roundup", "exact", "own", "item", "near"])
        a, b = rng.sample(items, 2)
        body = {
            "item": a,
            "near": _near_copy(a),
            "excerpt": " ".join(a.split()[: len(a.split()) * rng.choice([1, 2]) // 3]),
            "roundup": f"{a}\n\n{b}\n\n{rng.choice(items)}",
            "exact": a,
            "own": _words(100, rng),
        }[kind]
        published = None if rng.random() < 0.2 else f"2026-12-01T{rng.randrange(24):02}:00:00Z"
        docs.append(RawDocument(source=f"{n}-{kind}.txt", body=body, published=published))
    cut1 = rng.randrange(0, len(docs) // 3)
    cut2 = rng.randrange(cut1 + 1, len(docs) - 3)
    before, first, then = docs[:cut1], docs[cut1:cut2], docs[cut2:]
    if before and rng.random() < 0.3:
        then.append(rng.choice(before))
    if rng.random() < 0.3:
        then.append(rng.choice(then))
    if rng.random() < 0.4:
        d = rng.choice(then)
        first.append(RawDocument(source="x-" + d.source, body=d.body, published=d.published))
    return before, first, then


@pytest.mark.parametrize("seed", [97, *range(6)])
def test_a_batch_decided_in_part_stores_what_it_decided_whole_under_the_lock_would(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Whatever the story rules did with the batch's parts (take-overs, splits, roundups, rewrites, days and
    figures, exact copies), the parts that stand and those decided again store what the batch decided whole under
    the lock stores (with the same template counts: those read before the lock), stories, links and stamps.
    (Seed 97: a part joined to another only through a near candidate of the rewrite stage.)"""
    from docsieve.stories import Book
    from tests.services import postgres_database

    before, first, then = _made_up_news(seed)
    results = []
    for whole in (False, True):
        with monkeypatch.context() as patch, postgres_database(postgres_server_url) as url:
            if whole:
                patch.setattr(Book, "depending_on", lambda self, stories, records: set(self._relied))
            _, second = _queued(url, before, first, then)
            results.append((_stories_of(url), _tables_of(url)))
        assert second.decided_again == 1
    (got, tables), (expected, expected_tables) = results
    assert got == expected and tables == expected_tables and not tables["faults"]


def test_migration_0016_takes_the_days_off_the_count_rows_and_snapshots_on_the_way_down(tmp_path: Path) -> None:
    """A store of this revision holds count rows and a snapshot with the texts' days: downgraded to 0015, each row
    is the ids (and words) alone and the snapshot its counters alone, what a docsieve of 0015 reads; upgraded
    again, a process reads the same counts from them, every bucket's days unknown."""
    from alembic import command

    from docsieve.schema import shingle_count_snapshots as snapshots
    from docsieve.schema import shingle_counts as rows
    from docsieve.templates import UNDATED, ShingleCounts, counted_shingles
    from tests.test_templates import zstd_frame

    url = f"sqlite:///{tmp_path / 's.db'}"
    Store(url).close()
    engine = sa.create_engine(url)
    rng = np.random.default_rng(3)
    texts = [rng.integers(0, 2**32, 50, dtype=np.uint64).astype(np.uint32) for _ in range(3)]
    words = [np.arange(4, dtype=np.uint32) << 10 for _ in texts]
    plain_row = counted_shingles(texts, words)
    before = np.zeros(1 << 24, dtype=np.uint16)
    before[rng.integers(0, 1 << 24, 1000)] = 2
    counters = zstd_frame(before.tobytes())
    days = zstd_frame(np.where(before > 0, 45_000, 0).astype(np.uint16).tobytes())
    with engine.begin() as conn:
        conn.execute(rows.insert().values(seq=5, counts=counted_shingles(texts, words, [45_000, 45_001, UNDATED])))
        snapshot = b"DSD1" + np.uint32(len(days)).tobytes() + days + counters
        conn.execute(snapshots.insert().values(seq=4, counts=snapshot))
        command.downgrade(alembic_config(conn), "0015")
    with engine.connect() as conn:
        assert conn.execute(sa.select(rows.c.counts)).scalar_one() == plain_row
        assert conn.execute(sa.select(snapshots.c.counts)).scalar_one() == counters
    engine.dispose()
    store = Store(url)  # opening the store migrates it up again
    counts = ShingleCounts(boilerplate_texts=3)
    with counts.bound(), store.reading() as txn:
        counts.catch_up(txn)
        held = counts._loaded()
    ids = np.concatenate(texts)
    truth = before.copy()
    np.add.at(truth, ids >> 8, np.uint16(1))
    assert np.array_equal(held, truth) and counts._days is not None
    latest = counts._days >> 16
    assert (latest[before > 0] == UNDATED).all() and (latest[truth == 0] == 0).all()
    assert not counts.of_one_day(ids).any()  # the row's texts are undated now
    with store.reading() as txn:
        assert txn.conn.scalar(sa.text("select version_num from alembic_version")) == SCHEMA_REVISION
    store.close()


def test_migration_0017_writes_the_snapshots_as_0016_kept_the_days_on_the_way_down(tmp_path: Path) -> None:
    """A snapshot of this revision keeps each bucket's latest day and the count of its ids of that day: downgraded to
    0016, it keeps a bucket's day where all the bucket's ids were of it, else SPREAD, as 0016 wrote them; upgraded
    again, a process weighs from it exactly as from the counts it was written from (a bucket of one day with its
    whole count, the others of days unknown, as of other days)."""
    from alembic import command

    from docsieve.schema import shingle_count_snapshots as snapshots
    from docsieve.templates import DAY_ROW, SNAPSHOT_AFTER, UNDATED, ShingleCounts, _day_parts, _decompressed

    url = f"sqlite:///{tmp_path / 's.db'}"
    Store(url).close()
    engine = sa.create_engine(url)
    one_day, two_days, undated = (np.arange(k << 20, (k << 20) + 40 * 256, 256, dtype=np.uint32) for k in (1, 2, 3))
    counts = ShingleCounts(boilerplate_texts=3)
    counts.add(np.tile(one_day, 4), (np.full(4, 45_000, dtype=np.uint16), np.full(4, 40)))
    counts.add(np.tile(two_days, 3), (np.array([45_000, 45_001, 45_001], dtype=np.uint16), np.full(3, 40)))
    counts.add(np.tile(undated, 2))
    counts.add_words(np.arange(3, dtype=np.uint32) << 10)

    class Saved:
        blob = b""

        def newest_count_snapshot(self) -> int:
            return 0

        def save_count_snapshot(self, seq: int, blob: bytes | memoryview) -> bool:
            self.blob = bytes(blob)  # as the store keeps it
            return True

    saved = Saved()
    counts.since_snapshot, counts.last_seq = SNAPSHOT_AFTER, 4
    assert counts.snapshot_if_due(saved)  # type: ignore[arg-type]
    with engine.begin() as conn:
        conn.execute(snapshots.insert().values(seq=4, counts=saved.blob))
        command.downgrade(alembic_config(conn), "0016")
    with engine.connect() as conn:
        old = bytes(conn.execute(sa.select(snapshots.c.counts)).scalar_one())
    engine.dispose()
    days, latest, rest = _day_parts(old)
    assert old.startswith(DAY_ROW) and days is not None and latest is None and rest == _day_parts(saved.blob)[2]
    kept = np.frombuffer(_decompressed(days), dtype=np.uint16)
    assert (kept[one_day >> 8] == 45_000).all()
    assert (kept[two_days >> 8] == UNDATED).all() and (kept[undated >> 8] == UNDATED).all()
    assert int(np.count_nonzero(kept)) == 3 * 40
    store = Store(url)  # opening the store migrates it up again
    again = ShingleCounts(boilerplate_texts=3)
    with again.bound(), store.reading() as txn:
        again.catch_up(txn)
        every = np.concatenate([one_day, two_days, undated])
        assert np.array_equal(again.weights(every), counts.weights(every))
        assert again.of_one_day(one_day).all() and not again.of_one_day(np.concatenate([two_days, undated])).any()
        assert again.word_counts(np.arange(3, dtype=np.uint32) << 10).tolist() == [1, 1, 1]
    store.close()


def test_migration_0018_takes_merged_stories_out_on_the_way_down(tmp_path: Path) -> None:
    """A store of 0017 has no story without records: downgrading takes the rows of stories merged into others out,
    and the column with them; upgrading again adds it, and the stories read as before."""
    from alembic import command

    from docsieve.schema import stories
    from tests.test_stories import merge

    url = f"sqlite:///{tmp_path / 's.db'}"
    store = Store(url)
    settings = Settings(store=url)
    names = ("ar_other.txt", "en_article.txt")
    Pipeline(store, settings).ingest([RawDocument(source=s, body=fixture_text(s)) for s in names])
    one, two = list(store.iter_records())
    merge(store, settings, one, two)
    assert store.story_count() == 1
    store.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0017")
    with engine.connect() as conn:
        assert "merged_into" not in {c["name"] for c in sa.inspect(conn).get_columns("stories")}
        assert conn.execute(sa.select(stories.c.id)).scalars().all() == [one.story_id]
    engine.dispose()
    store = Store(url)
    assert store.story_count() == 1 and store.story(one.story_id) is not None and store.story(two.story_id) is None
    store.close()


def test_a_count_snapshot_written_from_one_buffer_is_read_back_whole_from_either_store(store_url: str) -> None:
    """The snapshot is handed to the store as a view of the one buffer its parts were compressed into: both stores
    keep it, and a process that reads it weighs and counts exactly as the one that wrote it (days, words and all)."""
    from docsieve.templates import SNAPSHOT_AFTER, ShingleCounts

    rng = np.random.default_rng(4)
    store = Store(store_url)
    counts = ShingleCounts(boilerplate_texts=3)
    ids = [np.unique(rng.integers(0, 1 << 32, size=300, dtype=np.uint32)) for _ in range(40)]
    for n, text in enumerate(ids):
        counts.add(text, (np.array([45_000 + n % 3], dtype=np.uint16), np.array([len(text)])) if n % 4 else None)
    counts.add_words(rng.integers(0, 1 << 20, size=500, dtype=np.uint32))
    counts.since_snapshot = SNAPSHOT_AFTER
    with store.writing() as txn:
        counts.last_seq = txn.last_seq() + 1
        assert counts.snapshot_if_due(txn)
    again = ShingleCounts(boilerplate_texts=3)
    with again.bound(), store.reading() as txn:
        again.catch_up(txn)
        every = np.concatenate(ids)
        assert np.array_equal(again.weights(every), counts.weights(every))  # read when first needed
        assert again.last_seq == counts.last_seq
        assert np.array_equal(again._counts, counts._counts) and np.array_equal(again._days, counts._days)
        assert np.array_equal(again._words, counts._words)
    store.close()


def test_a_count_snapshot_of_several_pieces_is_stored_byte_for_byte_and_replaces_the_older_one(store_url: str) -> None:
    """SQLite's snapshot is written into a zeroblob a piece at a time (BLOB_PIECE): one of more than two pieces, the
    last a part one, reads back exactly as given, no byte more or missing, from a memoryview as from bytes; the
    snapshot before it goes, as on PostgreSQL, and a transaction that fails after writing one leaves none behind."""
    from docsieve.schema import shingle_count_snapshots as snapshots
    from docsieve.store import BLOB_PIECE

    rng = np.random.default_rng(9)
    store = Store(store_url)
    with store.reading() as txn:
        assert txn.newest_count_snapshot_size() == 0
    first = rng.integers(0, 256, BLOB_PIECE + 17, dtype=np.uint8).tobytes()
    second = rng.integers(0, 256, 2 * BLOB_PIECE + 5, dtype=np.uint8).tobytes()
    with store.writing() as txn:
        txn.save_count_snapshot(3, first)
    with store.writing() as txn:
        txn.save_count_snapshot(9, memoryview(second))
    with pytest.raises(RuntimeError), store.writing() as txn:
        txn.save_count_snapshot(12, memoryview(first))
        raise RuntimeError("the batch failed after its snapshot")
    with store.reading() as txn:
        assert txn.count_snapshot(0) == (9, second)
        assert txn.conn.execute(sa.select(snapshots.c.seq)).scalars().all() == [9]
        assert txn.newest_count_snapshot_size() == len(second)  # what the next snapshot's interval is measured by
    store.close()


def test_a_count_snapshot_that_sqlite_fails_to_write_is_a_store_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot's pieces are written through the driver's blob, past SQLAlchemy: a write SQLite refuses there
    (a disk that fills as the pieces spill) is still the store's error as SQLAlchemy raises it (an OperationalError:
    the command's one line, a task's retry), as ``_copy`` raises PostgreSQL's, and the transaction leaves nothing."""
    import sqlite3

    from docsieve.schema import shingle_count_snapshots as snapshots

    class FullBlob:
        def __init__(self, blob: sqlite3.Blob) -> None:
            self.blob = blob

        def __enter__(self) -> "FullBlob":
            return self

        def __exit__(self, *exc: object) -> None:
            self.blob.close()

        def write(self, data: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

    class Connection(sqlite3.Connection):
        def blobopen(self, *args, **kwargs):  # type: ignore[no-untyped-def,override]
            return FullBlob(super().blobopen(*args, **kwargs))

    connect = sqlite3.dbapi2.connect
    monkeypatch.setattr(sqlite3.dbapi2, "connect", lambda *a, **k: connect(*a, **k, factory=Connection))
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(sa.exc.OperationalError), store.writing() as txn:
        txn.save_count_snapshot(4, b"counts" * 1000)
    with store.reading() as txn:
        assert txn.conn.execute(sa.select(snapshots.c.seq)).scalars().all() == []
    store.close()
