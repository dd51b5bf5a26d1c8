"""Stories split in two merged (docsieve/stories.py ``Book._merge_bridged``), end to end through the pipeline: a copy
of both merges them, a takedown of the story that absorbed another, and two workers on PostgreSQL (one deciding
before the write lock while the other stores) give the stories one process gives."""

import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from docsieve.models import RawDocument
from docsieve.pipeline import Pipeline
from docsieve.schema import stories
from docsieve.settings import Settings
from docsieve.store import Store
from tests.story_checks import problems
from tests.test_stories import VOCABULARY, words


def split_texts(seed: int = 1) -> dict[str, str]:
    """a; b a copy of a at the chain floor only (founds a story of its own); r a strong copy of both; b2 a near copy
    of b (a copy of a at the floor only)."""
    a = words(seed, 300)
    made = _variants(random.Random(seed), a)
    texts = {"a": a, "b": made["floor"], "r": made["bridge"], "b2": made["near-floor"]}
    return {k: " ".join(v) for k, v in texts.items()}


def doc(source: str, body: str, hour: int) -> RawDocument:
    return RawDocument(source=source, body=body, title=source, published=f"2026-12-01T{hour:02}:00:00Z")


def tombstones(store: Store) -> dict[str, str]:
    with store.engine.connect() as conn:
        q = sa.select(stories.c.id, stories.c.merged_into).where(stories.c.merged_into.is_not(None))
        return dict(conn.execute(q).all())


def test_a_copy_of_both_merges_two_stories_end_to_end(pipeline: Pipeline) -> None:
    t = split_texts()
    pipeline.ingest([doc("a", t["a"], 6)])
    pipeline.ingest([doc("b", t["b"], 7)])
    found = {r.source: r for r in pipeline.store.iter_records()}
    assert found["a"].story_id != found["b"].story_id
    assert pipeline.ingest([doc("r", t["r"], 8)]).merged == 1
    found = {r.source: r for r in pipeline.store.iter_records()}
    assert len({r.story_id for r in found.values()}) == 1
    assert tombstones(pipeline.store) == {found["b"].id: found["a"].story_id}  # b founded its story, named after it
    assert problems(pipeline.store, pipeline.settings) == []


def test_ingest_says_how_many_stories_it_merged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``docsieve ingest`` counts the stories merged into another beside the records it stored, and says nothing of
    merges where it made none."""
    import json

    from docsieve.cli import main

    t = split_texts()
    store = f"sqlite:///{tmp_path}/s.db"
    said = []
    for name, hour in (("a", 6), ("b", 7), ("r", 8)):
        batch = tmp_path / f"{name}.jsonl"
        row = {"id": name, "text": t[name], "source": name, "published": f"2026-12-01T{hour:02}:00:00Z"}
        batch.write_text(json.dumps(row), encoding="utf-8")
        assert main(["--store", store, "ingest", "--quiet", str(batch)]) == 0
        said.append(capsys.readouterr().out.splitlines()[0])
    assert [line.endswith("stories merged 1") for line in said] == [False, False, True]
    assert all("merged" not in line for line in said[:2])


def test_taking_down_every_record_of_a_story_that_absorbed_another(pipeline: Pipeline) -> None:
    """A story that absorbed another, emptied by takedowns: its row goes (``Store.delete``), and so does the row of the
    story merged into it, which would name no story."""
    t = split_texts()
    pipeline.ingest([doc("a", t["a"], 6)])
    pipeline.ingest([doc("b", t["b"], 7)])
    pipeline.ingest([doc("r", t["r"], 8)])
    found = {r.source: r for r in pipeline.store.iter_records()}
    assert tombstones(pipeline.store)
    pipeline.store.delete([found[s].id for s in ("a", "b", "r")], "test", pipeline.settings)
    assert problems(pipeline.store, pipeline.settings) == []
    assert tombstones(pipeline.store) == {} and pipeline.store.story(found["b"].id) is None


def _merged_state(url: str) -> tuple[dict[str, tuple], list[str], int]:
    from tests.test_store import _stories_of

    store = Store(url)
    found = problems(store, Settings(store=url))
    merged = len(tombstones(store))
    store.close()
    return _stories_of(url), found, merged


WEIGHTS_OFF = {"boilerplate_texts": 10**9, "rewrites": False}  # a batch decided in part weighs by counts a batch behind

CASES = {
    # b2 (a copy of b only) decided before the lock joins b's story, which r, stored meanwhile, merges into a's
    "joins the merged story": (["a", "b"], ["r"], ["b2"]),
    # r decided before the lock merges b's story, which b2, stored meanwhile, joined
    "merges a story joined meanwhile": (["a", "b"], ["b2"], ["r"]),
    # r decided before the lock meets only a; b, stored meanwhile, founded its story
    "meets the second half meanwhile": (["a"], ["b"], ["r", "b2"]),
    # b2 before r in the waiting batch: a part that stands (own) besides
    "both in the waiting batch": (["a"], ["b"], ["b2", "r", "own"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_two_workers_merge_as_one_process_does(postgres_server_url: str, tmp_path: Path, case: str) -> None:
    from tests.services import postgres_database
    from tests.test_store import _queued, _serial

    t = split_texts()
    t["own"] = " ".join(words(99, 200))
    hours = {"a": 6, "b": 7, "r": 8, "b2": 9, "own": 10}
    before, first, then = ([doc(s, t[s], hours[s]) for s in names] for names in CASES[case])
    expected = _serial(tmp_path, before, first, then, **WEIGHTS_OFF)
    serial = Store(f"sqlite:///{tmp_path}/serial.db")
    serial_merges = len(tombstones(serial))
    serial.close()
    assert serial_merges == 1
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, before, first, then, **WEIGHTS_OFF)
        got, faults, merged = _merged_state(url)
    assert got == expected
    assert faults == [] and merged == serial_merges
    assert second.decided_again == 1


def _variants(rng: random.Random, base: list[str]) -> dict[str, list[str]]:
    """A floor copy of base (founds its own story), a copy of both, a near copy of the floor copy."""
    pos = sorted(rng.sample(range(len(base)), int(len(base) * 0.2)))
    floor = list(base)
    for i in pos:
        floor[i] = rng.choice(VOCABULARY)
    bridge = list(base)
    for i in pos[::2]:
        bridge[i] = floor[i]
    near = list(floor)
    for i in rng.sample(range(len(base)), max(1, len(base) // 50)):
        near[i] = rng.choice(VOCABULARY)
    return {"floor": floor, "bridge": bridge, "near-floor": near}


def _random_docs(rng: random.Random, items: list[list[str]]) -> list[RawDocument]:
    """24 documents, each an item, an exact copy, a roundup of two, or one of an item's variants (``_variants``)."""
    variants = [_variants(rng, item) for item in items]
    docs = []
    for n in range(24):
        k = rng.randrange(len(items))
        kind = rng.choice(["item", "floor", "bridge", "near-floor", "roundup", "exact"])
        if kind in ("item", "exact"):
            body = " ".join(items[k])
        elif kind == "roundup":
            body = " ".join(items[k] + items[(k + 1) % len(items)])
        else:
            body = " ".join(variants[k][kind])
        docs.append(doc(f"{n}-{kind}-{k}", body, rng.randrange(24)))
    return docs


@pytest.mark.parametrize("seed", range(8))
def test_random_merges_by_two_workers_are_those_of_one_process(
    postgres_server_url: str, tmp_path: Path, seed: int
) -> None:
    from tests.services import postgres_database
    from tests.test_store import _queued, _serial

    rng = random.Random(seed)
    docs = _random_docs(rng, [words(1000 + seed * 10 + i, rng.randrange(150, 300)) for i in range(5)])
    before, first, then = docs[:6], docs[6:15], docs[15:]
    expected = _serial(tmp_path, before, first, then, **WEIGHTS_OFF)
    serial = Store(f"sqlite:///{tmp_path}/serial.db")
    serial_faults = problems(serial, Settings(), check_overlap=False)
    serial_merges = tombstones(serial)
    serial.close()
    with postgres_database(postgres_server_url) as url:
        _queued(url, before, first, then, **WEIGHTS_OFF)
        got, faults, merged = _merged_state(url)
    assert serial_faults == []
    assert got == expected
    assert faults == [] and merged == len(serial_merges)


@pytest.mark.parametrize("seed", range(8))
def test_random_merges_met_before_the_lock_are_those_of_one_process(
    postgres_server_url: str, tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.services import postgres_database
    from tests.test_store import _serial, _stored_while_deciding

    rng = random.Random(seed + 100)
    docs = _random_docs(rng, [words(2000 + seed * 10 + i, rng.randrange(150, 300)) for i in range(4)])
    before, during, then = docs[:4], [docs[4:8], docs[8:12], docs[12:16]], docs[16:]
    settings = dict(WEIGHTS_OFF, batch_size=8)
    expected = _serial(tmp_path, before, *during, then, **settings)
    serial = Store(f"sqlite:///{tmp_path}/serial.db")
    serial_merges = tombstones(serial)
    serial.close()
    monkeypatch.setattr(Settings, "__init__", _with(Settings.__init__, WEIGHTS_OFF), raising=False)
    with postgres_database(postgres_server_url) as url:
        _stored_while_deciding(url, before, then, during, monkeypatch)
        got, faults, merged = _merged_state(url)

    assert got == expected
    assert faults == [] and merged == len(serial_merges)


def _with(init, extra):
    def init_with(self, *args, **kwargs):
        init(self, *args, **{**extra, **kwargs})

    return init_with


def test_a_merge_of_a_story_the_batch_founded_does_not_spoil_the_next_pass_in_part(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiting batch founds b's story and merges it into a's (r); twice, while it is decided before the lock,
    another worker stores a near copy of a, so the merge's part is decided again twice (nothing else). The first
    ``Book.merged`` asked ``_Parts.find`` of the merged story's key (``_key_of_story`` of a story no longer new),
    which no part held, and so added it as a part of its own, standing: the second pass reads it and gives the
    batch up, to be decided again whole under the lock."""
    from tests.services import postgres_database
    from tests.test_store import _serial, _stored_while_deciding

    t = split_texts()
    a = t["a"].split()
    copies = []
    for n in range(2):
        c = list(a)
        c[10 + 40 * n] = VOCABULARY[n]
        copies.append(" ".join(c))
    before = [doc("a", t["a"], 6)]
    then = [doc("b", t["b"], 7), doc("r", t["r"], 8)]
    during = [[doc("a-copy1", copies[0], 10)], [doc("a-copy2", copies[1], 11)]]
    monkeypatch.setattr(Settings, "__init__", _with(Settings.__init__, WEIGHTS_OFF), raising=False)
    expected = _serial(tmp_path, before, *during, then)
    with postgres_database(postgres_server_url) as url:
        _, two = _stored_while_deciding(url, before, then, during, monkeypatch)
        got, faults, merged = _merged_state(url)
    assert got == expected and faults == [] and merged == 0  # b's story was never stored
    assert got["b"][3] == ["a", "a-copy1", "a-copy2", "b", "r"]
    assert (two.decided_again_before_lock, two.decided_again) == (2, 0)


def test_a_record_decided_before_the_lock_into_a_story_merged_meanwhile_is_decided_again(
    postgres_server_url: str, tmp_path: Path
) -> None:
    """b is a copy of a at the chain floor (its own story); w, the first half of b, joins b's story as an excerpt,
    decided before the lock while another worker stores r, a copy of a and of b, which merges b's story into a's.
    w meets nothing stored meanwhile (r is no copy of it: r is a in w's half), so only the merged story's stamp
    (``changed_seq`` of the row ``_merge_stories`` marks) makes it decided again; else it is stored in the
    tombstone."""
    from tests.services import postgres_database
    from tests.test_store import _queued, _serial

    rng = random.Random(0)
    a = words(7, 300)
    p1, p2 = rng.sample(range(150), 28), sorted(rng.sample(range(150, 300), 34))
    b = list(a)
    for i in p1 + p2:
        b[i] = rng.choice(VOCABULARY)
    r = list(a)
    for i in p2[::2]:
        r[i] = b[i]
    before = [doc("a", " ".join(a), 6), doc("b", " ".join(b), 7)]
    first, then = [doc("r", " ".join(r), 8)], [doc("w", " ".join(b[:150]), 9)]
    expected = _serial(tmp_path, before, first, then, **WEIGHTS_OFF)
    assert expected["w"][3] == ["a", "b", "r", "w"]
    with postgres_database(postgres_server_url) as url:
        _queued(url, before, first, then, **WEIGHTS_OFF)
        got, faults, merged = _merged_state(url)
    assert faults == [] and merged == 1
    assert got == expected


def test_a_merge_in_a_part_that_stands_is_saved_with_the_part_decided_again(
    postgres_server_url: str, tmp_path: Path
) -> None:
    """The waiting batch merges b's stored story into a's (r) and holds a near copy of x; another worker stores a
    near copy of x meanwhile. Only x's part is decided again: the merge stands, and ``Book.merged`` must keep it
    (the tombstone row), or b's row is left with no record, its canonical in a's story."""
    from tests.services import postgres_database
    from tests.test_store import _queued, _serial

    t = split_texts()
    x = words(55, 250)
    x1, x2 = list(x), list(x)
    x1[3], x2[200] = VOCABULARY[7], VOCABULARY[8]
    before = [doc("a", t["a"], 6), doc("b", t["b"], 7), doc("x", " ".join(x), 5)]
    first, then = [doc("x1", " ".join(x1), 9)], [doc("r", t["r"], 8), doc("x2", " ".join(x2), 10)]
    expected = _serial(tmp_path, before, first, then, **WEIGHTS_OFF)
    with postgres_database(postgres_server_url) as url:
        _, second = _queued(url, before, first, then, **WEIGHTS_OFF)
        got, faults, merged = _merged_state(url)
    assert (second.decided_again, second.documents_decided_again) == (1, 1)  # x2 alone
    assert got == expected
    assert faults == [] and merged == 1
    assert second.stories_merged == 1  # counted from the part that stands


def test_what_a_merge_changes_is_listed_since_and_paged_whole(store: Store, store_url: str) -> None:
    """A roundup holding b's story holds a's once b's is merged into a's: its story changed (``export --since``), and
    the tombstone is listed once, by the time of its merge. A page of stories skips tombstones before its limit."""
    from datetime import UTC, datetime

    from docsieve.models import MergedStory

    pipeline = Pipeline(store, Settings(store=store_url, **WEIGHTS_OFF))
    t = split_texts()
    y, z = " ".join(words(56, 250)), " ".join(words(57, 300))
    pipeline.ingest([doc("a", t["a"], 6), doc("y", y, 6)])
    pipeline.ingest([doc("b", t["b"], 7)])
    pipeline.ingest([doc("h", f"{t['b']} {y} {z}", 11)])
    found = {r.source: r for r in store.iter_records()}
    assert len({found[s].story_id for s in ("a", "b", "y", "h")}) == 4
    before = datetime.now(UTC)
    pipeline.ingest([doc("r", t["r"], 8)])
    after = datetime.now(UTC)
    assert tombstones(store) == {found["b"].story_id: found["a"].story_id}
    changed = list(store.iter_stories(before))
    assert found["h"].story_id in {s.id for s in changed if not isinstance(s, MergedStory)}
    assert not [s for s in store.iter_stories(after) if isinstance(s, MergedStory)]
    assert problems(store, pipeline.settings) == []
    newest = store.page_stories(limit=2, newest_first=True)
    assert len(newest) == 2
    oldest = store.page_stories(limit=3)
    assert len(oldest) == 3


def test_each_ingest_counts_only_the_merges_it_made(pipeline: Pipeline) -> None:
    """A pipeline that merged stories before (a long-lived process): an ingest says the merges it made, not the
    pipeline's running total, and a batch already stored merges nothing."""
    t = split_texts()
    pipeline.stories_merged = 5
    pipeline.ingest([doc("a", t["a"], 6)])
    pipeline.ingest([doc("b", t["b"], 7)])
    assert pipeline.ingest([doc("r", t["r"], 8)]).merged == 1
    assert pipeline.ingest([doc("r", t["r"], 8)]).merged == 0
    assert pipeline.stories_merged == 6


def test_a_batch_rolled_back_counts_no_merge(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """The count moves with the commit: a batch whose transaction fails after its stories were saved merged
    nothing, and counts once when it is stored."""
    from docsieve.store import Transaction

    t = split_texts()
    pipeline.ingest([doc("a", t["a"], 6)])
    pipeline.ingest([doc("b", t["b"], 7)])
    save = Transaction.save_stories

    def save_then_fail(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise RuntimeError("the commit fails")

    monkeypatch.setattr(Transaction, "save_stories", save_then_fail)
    with pytest.raises(RuntimeError, match="the commit fails"):
        pipeline.ingest([doc("r", t["r"], 8)])
    assert pipeline.stories_merged == 0 and tombstones(pipeline.store) == {}
    monkeypatch.setattr(Transaction, "save_stories", save)
    assert pipeline.ingest([doc("r", t["r"], 8)]).merged == 1
    assert pipeline.stories_merged == 1


def test_a_story_founded_and_merged_in_one_batch_is_not_counted(pipeline: Pipeline) -> None:
    """a, b and r in one batch: b's story is founded and merged away before anything is stored, so no story row
    says it was merged (``export --since`` lists none) and ingest reports no merge."""
    t = split_texts()
    summary = pipeline.ingest([doc("a", t["a"], 6), doc("b", t["b"], 7), doc("r", t["r"], 8)])
    assert len({r.story_id for r in pipeline.store.iter_records()}) == 1
    assert tombstones(pipeline.store) == {}
    assert summary.merged == len(tombstones(pipeline.store))
