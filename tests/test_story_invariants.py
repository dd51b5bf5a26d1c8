"""Invariants of the story rules under hard sequences (review of issue 12): splits, take-overs and takedowns
that move records, exact copies, ``export --since``, and what a long-running worker still finds."""

import pytest
import sqlalchemy as sa

from docsieve.fingerprint import unpack_keys
from docsieve.index import open_index
from docsieve.models import Method, Status
from docsieve.pipeline import Pipeline
from docsieve.store import Store
from tests.story_checks import problems
from tests.test_stories import edit, ingest, story_of, text, words


def test_a_split_ranks_exact_copies_like_the_others(pipeline, settings):
    x, y, z = words(30, 60), words(31, 60), words(32, 300)
    ingest(pipeline, ("roundup", text(x, z, y), "2015-07-20T00:00:00Z"))
    ingest(pipeline, ("x-late", text(x), "2015-07-23T00:00:00Z"))
    ingest(pipeline, ("x-early", text(x), "2015-07-22T00:00:00Z"))
    ingest(pipeline, ("y", text(y), "2015-07-24T00:00:00Z"))
    assert problems(pipeline.store, settings) == []


def test_take_over_then_split_in_one_batch(pipeline, settings):
    x, y, z = words(30, 60), words(31, 60), words(32, 300)
    ingest(pipeline, ("roundup", text(x, z, y), "2015-07-20T00:00:00Z"), ("x", text(x), "2015-07-23T00:00:00Z"))
    ingest(
        pipeline, ("roundup2", text(x, z, y) + " تنويه", "2015-07-19T00:00:00Z"), ("y", text(y), "2015-07-24T00:00:00Z")
    )
    assert problems(pipeline.store, settings) == []


def test_an_exact_copy_taking_over_is_not_counted_as_a_new_text(pipeline, settings):
    a = words(5, 200)
    ingest(pipeline, ("late", text(a), "2015-07-22T00:00:00Z"))
    recs = ingest(pipeline, ("early", text(a), "2015-07-21T00:00:00Z"))
    assert recs["early"].status is Status.CANONICAL  # the exact copy took over
    from docsieve.fingerprint import fingerprint_batch

    shingles = fingerprint_batch([text(a)], settings)[0].shingles
    fresh = __import__("docsieve.templates", fromlist=["x"]).ShingleCounts(settings.boilerplate_texts)
    with pipeline.store.writing() as txn:
        fresh.catch_up(txn)
        assert int(fresh.counts(shingles).max()) == 1, "one text, counted twice"


def _since_now(store):
    import time

    time.sleep(1.1)  # SQLite's CURRENT_TIMESTAMP has whole seconds
    with store.engine.connect() as c:
        now = c.scalar(sa.select(sa.func.now()))
    from docsieve.store import _utc

    time.sleep(1.1)
    return _utc(now)


@pytest.mark.slow
def test_since_sees_the_roundup_story_a_split_changed(pipeline, settings):
    x, y, z = words(30, 60), words(31, 60), words(32, 300)
    recs = ingest(pipeline, ("roundup", text(x, z, y)), ("x", text(x)))
    assert recs["x"].story_id == recs["roundup"].story_id
    since = _since_now(pipeline.store)
    recs = ingest(pipeline, ("y", text(y)))
    roundup_story = recs["roundup"].story_id
    now = pipeline.store.story(roundup_story)
    assert not now.members and len(now.contains) == 2  # x left, links added
    assert roundup_story in {s.id for s in pipeline.store.iter_stories(since)}


@pytest.mark.slow
def test_since_sees_the_story_of_a_record_that_gains_a_link(pipeline, settings):
    story, item = words(95, 300), words(96, 60)
    recs = ingest(pipeline, ("story", text(story)), ("long", text(story, item)))
    since = _since_now(pipeline.store)
    recs = ingest(pipeline, ("item", text(item)))
    long_story = recs["long"].story_id
    assert pipeline.store.story(long_story).contains  # long now holds item's story
    assert long_story in {s.id for s in pipeline.store.iter_stories(since)}


@pytest.mark.slow
def test_since_sees_a_story_that_lost_a_member_to_delete(pipeline, settings):
    a = words(70, 300)
    recs = ingest(pipeline, ("a", text(a)), ("b", text(edit(a, 71, 0.04))))
    since = _since_now(pipeline.store)
    pipeline.store.delete([recs["b"].id], "court", settings)
    assert recs["a"].story_id in {s.id for s in pipeline.store.iter_stories(since)}


def test_a_running_worker_finds_the_story_after_its_canonical_is_taken_down(pipeline, settings):
    a = words(70, 300)
    recs = ingest(pipeline, ("a", text(a), "2015-07-21T08:00:00Z"), ("b", text(a), "2015-07-21T09:00:00Z"))
    story_id = recs["a"].story_id
    other = Store(settings.store)  # the `docsieve delete` process
    other.delete([recs["a"].id], "court order", settings)
    other.close()
    recs = ingest(pipeline, ("d", text(edit(a, 72, 0.03))))  # the long-running worker
    assert recs["d"].story_id == story_id


def test_the_redis_index_finds_the_story_after_a_takedown(store, settings, redis_url, prefix):
    s = settings.with_(index_url=redis_url, queue_prefix=prefix)
    p = Pipeline(store, s, open_index(s))
    a = words(70, 300)
    recs = ingest(p, ("a", text(a), "2015-07-21T08:00:00Z"), ("b", text(a), "2015-07-21T09:00:00Z"))
    store.delete([recs["a"].id], "court order", s)
    p.close()
    fresh = Pipeline(Store(s.store), s, open_index(s))  # even a new process
    recs = ingest(fresh, ("d", text(edit(a, 72, 0.03))))
    assert recs["d"].story_id == recs["b"].story_id


def test_takedowns_keep_every_members_figures_true(pipeline, settings):
    a = words(7, 300)
    m_text = text(edit(a, 8, 0.05))
    recs = ingest(
        pipeline,
        ("c", text(a), "2015-07-01T00:00:00Z"),
        ("m", m_text, "2015-07-05T00:00:00Z"),
        ("n", text(edit(a, 9, 0.05)), "2015-07-02T00:00:00Z"),
    )
    recs = ingest(pipeline, ("e", m_text, "2015-07-06T00:00:00Z"))
    assert recs["e"].method is Method.EXACT and recs["e"].story_id == recs["c"].story_id
    pipeline.store.delete([recs["m"].id], None, settings)
    pipeline.store.delete([recs["c"].id], None, settings)
    assert problems(pipeline.store, settings, check_rank=False) == []


@pytest.mark.slow
def test_stories_with_more_records_than_a_statement_has_parameters(store: Store) -> None:
    """PostgreSQL takes at most 65,535 parameters a statement: a story's links are read by subquery."""
    from docsieve.schema import records, stories

    rows, heads = [], []
    for s in range(2):
        sid = f"s{s:05d}"
        heads.append({"id": sid, "canonical_id": f"{sid}m00000"})
        for m in range(33_000):
            rid = f"{sid}m{m:05d}"
            rows.append(
                {
                    "id": rid,
                    "source": rid,
                    "status": "canonical" if m == 0 else "duplicate",
                    "duplicate_of": None if m == 0 else f"{sid}m00000",
                    "content_hash": rid,
                    "story_id": sid,
                }
            )
    with store.engine.begin() as c:
        c.execute(records.insert(), rows)
        c.execute(stories.insert(), heads)
    assert [len(s.members) for s in store.iter_stories()] == [32_999, 32_999]


def test_since_is_exact_below_the_second(tmp_path) -> None:
    """A change made a moment after the time an export asks from is in it, one made before is not, however
    close in time (SQLite's CURRENT_TIMESTAMP has whole seconds)."""
    from datetime import UTC, datetime

    from docsieve.settings import Settings

    settings = Settings(store=f"sqlite:///{tmp_path}/s.db")
    store = Store(settings.store)
    p = Pipeline(store, settings)
    ingest(p, ("before", text(words(1, 50))))
    since = datetime.now(UTC)
    ingest(p, ("after", text(words(2, 50))))
    assert [r.source for r in store.iter_records(since=since)] == ["after"]


def test_since_sees_a_change_stamped_on_the_whole_second(tmp_path, monkeypatch) -> None:
    """A batch stamped at a whole second (no microseconds) is in an export from that very time, records
    and stories alike: every time is written in one format, so they compare as stored."""
    from datetime import UTC, datetime

    from docsieve.settings import Settings
    from docsieve.store import Transaction

    settings = Settings(store=f"sqlite:///{tmp_path}/s.db")
    store = Store(settings.store)
    p = Pipeline(store, settings)
    ingest(p, ("before", text(words(1, 50))))
    stamp = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    monkeypatch.setattr(Transaction, "now", staticmethod(lambda: stamp))
    recs = ingest(p, ("after", text(words(2, 50)), "2015-07-21T10:00:00Z"))
    assert [r.source for r in store.iter_records(since=stamp)] == ["after"]
    assert [s.id for s in store.iter_stories(since=stamp)] == [recs["after"].story_id]
    assert store.get(recs["after"].id).published_at == datetime(2015, 7, 21, 10, tzinfo=UTC)


def test_a_cut_leaving_after_a_take_over_keeps_its_copies(pipeline, settings):
    lead, first, second = words(120, 60), words(121, 160), words(122, 160)
    s_tokens = lead + second + words(123, 20)
    ingest(
        pipeline,
        ("full", text(lead, first, second), "2015-07-21T10:00:00Z"),
        ("second-cut", text(s_tokens), "2015-07-21T11:00:00Z"),
    )
    ingest(pipeline, ("second-cut-copy", text(s_tokens), "2015-07-21T10:30:00Z"))  # exact: stored without shingles
    recs = ingest(pipeline, ("first-cut", text(lead, first, words(124, 20)), "2015-07-21T08:00:00Z"))
    assert recs["second-cut-copy"].status is Status.CANONICAL  # founded the story the cut left for
    assert recs["second-cut"].story_id == recs["second-cut-copy"].story_id
    recs = ingest(pipeline, ("second-cut-edit", text(edit(s_tokens, 125, 0.03)), "2015-07-21T12:00:00Z"))
    assert recs["second-cut-edit"].story_id == recs["second-cut"].story_id


def test_a_record_taken_down_and_ingested_again_can_be_taken_down_again(pipeline, settings):
    a = words(70, 100)
    recs = ingest(pipeline, ("a", text(a)))
    first = recs["a"].id
    assert pipeline.store.delete([first], "takedown", settings) == [first]
    recs = ingest(pipeline, ("a", text(a)))
    assert recs["a"].id == first  # the same source and text: the same id, stored again
    assert pipeline.store.delete([first], "takedown again", settings) == [first]


def test_a_canonical_that_holds_a_story_is_no_roundup(pipeline, settings):
    X, Y, Z = words(201, 300), words(202, 100), words(203, 100)
    recs = ingest(pipeline, ("c", text(X, Y)))
    recs = ingest(pipeline, ("b", text(Y, Z)))
    recs = ingest(pipeline, ("r", text(Y, Z[:40])))
    assert recs["r"].story_id == recs["b"].story_id != recs["c"].story_id
    assert [s for s, _, _ in story_of(pipeline.store, recs["c"]).contains] == [recs["b"].story_id]  # c holds B
    # c is no roundup: a short excerpt of it joins its story, as it would have before the link.
    recs = ingest(pipeline, ("e", text(X[:80])))
    assert recs["e"].story_id == recs["c"].story_id


def test_a_takedown_leaves_no_posting_in_the_shared_index(store, settings, redis_url, prefix, monkeypatch):

    from docsieve.cli import main
    from worker.redis_index import RedisIndex

    shared = settings.with_(index_url=redis_url, queue_prefix=prefix)
    p = Pipeline(store, shared, open_index(shared))
    a = words(130, 200)
    recs = ingest(p, ("a", text(a)), ("b", text(edit(a, 131, 0.05))))
    with p.store.reading() as txn:
        keys = {record_id: unpack_keys(blob) for _, record_id, blob, *_ in txn.index_rows(0)}
    p.close()
    index = RedisIndex(redis_url, prefix)

    def holding(record_id: str) -> int:
        return sum(record_id in index.postings(k) for k in keys[record_id].tolist())

    gone, kept = recs["a"].id, recs["b"].id
    assert holding(gone) and holding(kept)
    monkeypatch.setenv("DOCSIEVE_INDEX_URL", redis_url)
    monkeypatch.setenv("DOCSIEVE_QUEUE_PREFIX", prefix)
    assert main(["--store", settings.store, "delete", gone, "--reason", "court order"]) == 0
    assert holding(gone) == 0 and holding(kept)
