"""Stories end to end through the pipeline and a real store (SQLite and PostgreSQL): verified links, no
drift along copies of copies, roundups, short items, the canonical policy, takedowns."""

import json
import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from docsieve.fingerprint import fingerprint_batch, jaccard_and_containment
from docsieve.models import Method, RawDocument, Record, Status
from docsieve.pipeline import Pipeline
from docsieve.published import parse_published
from docsieve.readers import read
from docsieve.schema import contains
from docsieve.settings import Settings
from docsieve.store import Store
from tests.story_checks import problems

FIXTURES = Path(__file__).parent / "fixtures"
SEEDS = Path(__file__).parent.parent / "seeds"
VOCABULARY = [f"كلمة{i}" for i in range(5000)]


def words(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(VOCABULARY) for _ in range(count)]


def text(*parts: list[str]) -> str:
    return " ".join(w for part in parts for w in part)


def edit(tokens: list[str], seed: int, share: float) -> list[str]:
    """The text with ``share`` of its words replaced, spread evenly (a copy-edit)."""
    rng = random.Random(seed)
    out = list(tokens)
    for i in rng.sample(range(len(out)), int(len(out) * share)):
        out[i] = rng.choice(VOCABULARY)
    return out


def ingest(pipeline: Pipeline, *docs: tuple[str, str] | tuple[str, str, str]) -> dict[str, Record]:
    pipeline.ingest(
        [RawDocument(source=d[0], body=d[1], title=d[0], published=d[2] if len(d) > 2 else None) for d in docs]
    )
    return {r.source: r for r in pipeline.store.iter_records()}


def story_of(store: Store, record: Record):
    assert record.story_id
    story = store.story(record.story_id)
    assert story is not None
    return story


def test_every_record_is_in_a_story_with_its_overlap_with_the_canonical(pipeline: Pipeline) -> None:
    a = words(1, 300)
    records = ingest(
        pipeline, ("a", text(a)), ("b", text(edit(a, 2, 0.05))), ("c", text(a)), ("x", text(words(3, 200)))
    )
    assert records["a"].status is Status.CANONICAL and records["a"].story_id
    assert {records[k].story_id for k in "abc"} == {records["a"].story_id}
    assert records["x"].story_id != records["a"].story_id
    b = records["b"]
    assert b.method is Method.NEAR and b.duplicate_of == records["a"].id
    assert b.jaccard is not None and 0.6 < b.jaccard < 0.95 and b.similarity == b.jaccard
    assert (records["c"].method, records["c"].jaccard) == (Method.EXACT, 1.0)
    story = story_of(pipeline.store, records["b"])
    assert story.canonical.id == records["a"].id and {m.id for m in story.members} == {b.id, records["c"].id}


def test_a_chain_of_copies_does_not_drift_away_from_the_canonical(pipeline: Pipeline) -> None:
    """Each text a copy of the one before (Jaccard above the threshold), but the later ones far from the
    first: a story takes only those still close to its canonical."""
    chain = [words(10, 400)]
    for step in range(1, 6):
        chain.append(edit(chain[-1], 100 + step, 0.06))
    records = ingest(pipeline, *[(f"v{i}", text(t)) for i, t in enumerate(chain)])
    first = records["v0"]
    settings = pipeline.settings
    in_story = [records[f"v{i}"].story_id == first.story_id for i in range(6)]
    assert in_story[:2] == [True, True]  # the first copy is a copy of the canonical itself
    for i in range(1, 6):
        r = records[f"v{i}"]
        if r.story_id == first.story_id:  # what a member says is measured against the canonical, and close
            assert r.jaccard is not None and r.containment is not None
            assert r.jaccard >= settings.jaccard_floor or r.containment >= settings.containment_floor
    assert not all(in_story), "the far end of the chain must not be the first text's story"


def test_a_roundup_holds_stories_and_is_a_copy_of_none(pipeline: Pipeline) -> None:
    x, y, z = words(20, 60), words(21, 60), words(22, 300)
    records = ingest(pipeline, ("x", text(x)), ("y", text(y)), ("roundup", text(x, z, y)))
    roundup = records["roundup"]
    assert roundup.status is Status.CANONICAL
    assert roundup.story_id not in (records["x"].story_id, records["y"].story_id)
    story = story_of(pipeline.store, roundup)
    assert {s for s, _, _ in story.contains} == {records["x"].story_id, records["y"].story_id}
    assert [r for r, _ in story_of(pipeline.store, records["x"]).contained_in] == [roundup.id]
    # A later copy of one item joins that item's story, never the other's through the roundup.
    records = ingest(pipeline, ("y2", text(edit(y, 23, 0.03))))
    assert records["y2"].story_id == records["y"].story_id


@pytest.mark.parametrize("case", ["after", "before", "one batch", "near copy, before"])
def test_a_roundup_published_again_is_a_copy_of_the_roundup(pipeline: Pipeline, case: str) -> None:
    """Two items stored as stories of their own, then a roundup of both; another outlet's cut of the roundup (both
    items, less of the rest: too short for a near copy, inside the roundup) joins the roundup's story and holds the
    items as the roundup does, rather than founding a roundup of its own beside it (saudinewsnet-dev: the Royal
    Court's statement and the royal order of one leave). So it does in the roundup's own batch. Published first, it
    takes the story over and stays a roundup, as a near copy of the roundup does. A text holding an item the roundup
    does not hold is no cut of it: a roundup of its own. The status counts roundups by story."""
    x, y, w, z = words(60, 60), words(61, 60), words(62, 60), words(63, 300)
    first = [
        ("x", text(x), "2015-07-22T10:00:00Z"),
        ("y", text(y), "2015-07-22T10:00:00Z"),
        ("w", text(w), "2015-07-22T10:00:00Z"),
        ("roundup", text(x, z, y), "2015-07-22T12:00:00Z"),
    ]
    when = "2015-07-22T14:00:00Z" if case in ("after", "one batch") else "2015-07-22T11:00:00Z"
    cut_text = text(x, z[:250], y) if case.startswith("near") else text(x, z[:60], y)
    later = [("cut", cut_text, when), ("other", text(x, z[:60], w), when)]
    if case == "one batch":
        records = ingest(pipeline, *first, *later)
    else:
        records = ingest(pipeline, *first)
        assert {s for s, _, _ in story_of(pipeline.store, records["roundup"]).contains} == {
            records["x"].story_id,
            records["y"].story_id,
        }
        records = ingest(pipeline, *later)
    roundup, cut, other = records["roundup"], records["cut"], records["other"]
    stories_xy = {records["x"].story_id, records["y"].story_id}
    fps = fingerprint_batch([cut.text, roundup.text], pipeline.settings)
    jaccard, containment = jaccard_and_containment(fps[0].shingles, fps[1].shingles)
    if case.startswith("near"):
        assert jaccard >= pipeline.settings.jaccard_threshold
    else:
        assert jaccard < pipeline.settings.jaccard_threshold <= containment  # no near copy: a cut inside the roundup
    assert cut.story_id == roundup.story_id
    assert story_of(pipeline.store, cut).canonical.id == (roundup.id if when > "2015-07-22T12" else cut.id)
    with pipeline.store.engine.connect() as conn:
        held = conn.execute(sa.select(contains.c.story_id, contains.c.roundup).where(contains.c.record_id == cut.id))
        assert {s: roundup for s, roundup in held if s in stories_xy} == dict.fromkeys(stories_xy, True)
    assert other.status is Status.CANONICAL and other.story_id != roundup.story_id
    assert {s for s, _, _ in story_of(pipeline.store, other).contains} >= {records["w"].story_id}
    assert pipeline.store.story_counts()[2] == 2  # the roundup's story and other's; the cut is no story of its own


def test_a_text_carrying_an_item_the_roundup_does_not_hold_through_a_member_is_no_cut_of_it(pipeline: Pipeline) -> None:
    """The roundup of x and y stored, and w's story with a member w2 that carries text of its own. A text with both of
    the roundup's items and most of w2 (but too little of w itself to be its copy) holds w's story through w2: it
    carries an item the roundup does not hold, so it is a roundup of its own, not a cut of the first. Another outlet's
    copy of that text is a copy of it, and holds all three items as a roundup does, w's through w2 too."""
    x, y, w, z, n = words(70, 60), words(71, 60), words(72, 60), words(73, 300), words(74, 40)
    records = ingest(
        pipeline,
        ("x", text(x)),
        ("y", text(y)),
        ("w", text(w)),
        ("roundup", text(x, z, y)),
        ("w2", text(w[:40], n)),
    )
    assert records["w2"].story_id == records["w"].story_id
    records = ingest(pipeline, ("record", text(x, z[:60], y, w[10:40], n)))
    record, roundup = records["record"], records["roundup"]
    fps = fingerprint_batch([record.text, records["w"].text], pipeline.settings)
    assert jaccard_and_containment(fps[0].shingles, fps[1].shingles)[1] < pipeline.settings.containment_threshold
    assert record.status is Status.CANONICAL and record.story_id != roundup.story_id
    items = {records["x"].story_id, records["y"].story_id, records["w"].story_id}
    assert items <= {s for s, _, _ in story_of(pipeline.store, record).contains}
    copy = ingest(pipeline, ("copy", text(x, z[:50], y, w[10:40], n)))["copy"]
    assert copy.story_id == record.story_id
    with pipeline.store.engine.connect() as conn:
        held = conn.execute(sa.select(contains.c.story_id, contains.c.roundup).where(contains.c.record_id == copy.id))
        assert dict(held.all()) == dict.fromkeys(items, True)


def test_the_heir_to_a_taken_down_roundup_is_a_roundup(pipeline: Pipeline) -> None:
    """A roundup and another outlet's exact copy of it; the roundup taken down, the copy takes its place and its links
    as a roundup's: the story is still a roundup."""
    x, y, z = words(80, 60), words(81, 60), words(82, 300)
    records = ingest(pipeline, ("x", text(x)), ("y", text(y)), ("roundup", text(x, z, y)), ("again", text(x, z, y)))
    roundup, again = records["roundup"], records["again"]
    assert again.method is Method.EXACT and again.story_id == roundup.story_id
    assert pipeline.store.delete([roundup.id], "test", pipeline.settings) == [roundup.id]
    assert story_of(pipeline.store, again).canonical.id == again.id
    with pipeline.store.engine.connect() as conn:
        held = conn.execute(sa.select(contains.c.story_id, contains.c.roundup).where(contains.c.record_id == again.id))
        assert dict(held.all()) == {records["x"].story_id: True, records["y"].story_id: True}
    assert pipeline.store.story_counts()[2] == 1


def test_a_story_changes_when_a_copy_joins_it_or_a_roundup_holds_it(pipeline: Pipeline) -> None:
    """A copy joining a story and a roundup holding one leave the story's row as it was (no stamp under the lock);
    the story still says it changed then, and a consumer asking what changed since hears of it."""
    from docsieve.schema import stories

    x, y, z = words(30, 60), words(31, 60), words(32, 300)
    first = ingest(pipeline, ("x", text(x)), ("y", text(y)))
    story_x, story_y = story_of(pipeline.store, first["x"]), story_of(pipeline.store, first["y"])
    # Founded when decided (on PostgreSQL before the write lock, where the row is written), stored with its record.
    assert story_x.created_at <= story_x.changed_at == first["x"].changed_at
    records = ingest(pipeline, ("x2", text(edit(x, 33, 0.03))))
    copy = records["x2"]
    assert copy.story_id == story_x.id and copy.changed_at > story_x.changed_at
    with pipeline.store.engine.connect() as conn:  # the row: not stamped
        row = dict(conn.execute(sa.select(stories.c.id, stories.c.changed_at)).all())
    later = {s.id for s in pipeline.store.iter_stories(since=parse_published(copy.changed_at))}
    assert story_of(pipeline.store, copy).changed_at == copy.changed_at and story_x.id in later
    assert story_y.id not in later
    records = ingest(pipeline, ("roundup", text(z, y, x)))
    roundup = records["roundup"]
    assert {s for s, _, _ in story_of(pipeline.store, roundup).contains} == {story_x.id, story_y.id}
    held = story_of(pipeline.store, first["y"])
    assert held.changed_at > copy.changed_at
    assert story_y.id in {s.id for s in pipeline.store.iter_stories(since=parse_published(held.changed_at))}
    with pipeline.store.engine.connect() as conn:
        assert dict(conn.execute(sa.select(stories.c.id, stories.c.changed_at)).all())[story_y.id] == row[story_y.id]
    # Taken down, the roundup holds nothing: the story it held changed then, and says so (its row, now).
    assert pipeline.store.delete([roundup.id], "test", pipeline.settings) == [roundup.id]
    freed = story_of(pipeline.store, first["y"])
    assert not freed.contained_in and freed.changed_at > held.changed_at
    assert story_y.id in {s.id for s in pipeline.store.iter_stories(since=parse_published(freed.changed_at))}


def test_a_story_lists_each_story_its_records_hold_once_with_the_record_that_holds_most_of_it(
    pipeline: Pipeline,
) -> None:
    """A roundup and another outlet's copy of it both hold the two items' stories: the roundup's story lists each
    once (as ``show`` and ``export --stories`` print it), with the record holding most of it and that containment."""
    x, y, z = words(24, 60), words(25, 60), words(26, 300)
    records = ingest(pipeline, ("x", text(x)), ("y", text(y)), ("roundup", text(x, z, y)))
    records |= ingest(pipeline, ("copy", text(edit(x, 27, 0.1), z, y)))
    roundup, copy = records["roundup"], records["copy"]
    assert copy.story_id == roundup.story_id
    story = story_of(pipeline.store, roundup)
    by_story = {s: (c, r) for s, c, r in story.contains}
    assert len(story.contains) == 2 and by_story.keys() == {records["x"].story_id, records["y"].story_id}
    # The copy holds x's story by less (its x is edited): the roundup is named for it, with its own containment.
    assert by_story[records["x"].story_id] == (1.0, roundup.id)
    assert {r for r, _ in story_of(pipeline.store, records["x"]).contained_in} == {roundup.id, copy.id}
    assert [c["story"] for c in story.to_json()["contains"]].count(records["x"].story_id) == 1
    assert story.to_json()["contains"][0].keys() == {"story", "containment", "record"}


def test_a_held_story_is_named_by_one_record_whatever_order_the_links_come_in(pipeline: Pipeline) -> None:
    """Ties go to the story's canonical (the roundup), the winner's own containment is the one listed, a NULL
    containment (an older store's link) ranks below any figure, and ``contains`` comes in story-id order."""
    x, y, z = words(24, 60), words(25, 60), words(26, 300)
    records = ingest(pipeline, ("x", text(x)), ("y", text(y)), ("roundup", text(x, z, y)))
    records |= ingest(pipeline, ("copy", text(edit(x, 27, 0.1), z, y)))
    roundup, copy, xs, ys = (records[k] for k in ("roundup", "copy", "x", "y"))

    def listed() -> dict[str, tuple[float | None, str]]:
        story = story_of(pipeline.store, roundup)
        assert [s for s, _, _ in story.contains] == sorted(s for s, _, _ in story.contains)
        return {s: (c, r) for s, c, r in story.contains}

    first = listed()
    assert first[ys.story_id] == (1.0, roundup.id)  # both hold y whole: the canonical is named
    assert first[xs.story_id] == (1.0, roundup.id)  # not the copy's lesser containment
    engine = pipeline.store.engine
    with engine.begin() as conn:  # a no-op rewrite of the roundup's links moves them in a PostgreSQL heap
        conn.execute(
            contains.update().where(contains.c.record_id == roundup.id).values(containment=contains.c.containment)
        )
    assert listed() == first
    with engine.begin() as conn:
        conn.execute(contains.update().where(contains.c.record_id == roundup.id).values(containment=None))
        conn.execute(contains.update().where(contains.c.record_id == copy.id).values(containment=0.0))
    assert listed() == {ys.story_id: (0.0, copy.id), xs.story_id: (0.0, copy.id)}


def test_a_roundup_stored_first_gives_up_its_items(pipeline: Pipeline) -> None:
    """The roundup arrives before the items it carries: the first item is taken for an excerpt of it, the
    second shows it holds two stories; each item leaves for a story of its own."""
    x, y, z = words(30, 60), words(31, 60), words(32, 300)
    records = ingest(pipeline, ("roundup", text(x, z, y)), ("x", text(x)), ("y", text(y)))
    assert len({records[k].story_id for k in ("roundup", "x", "y")}) == 3
    assert records["x"].status is Status.CANONICAL and records["y"].status is Status.CANONICAL
    story = story_of(pipeline.store, records["roundup"])
    assert {s for s, _, _ in story.contains} == {records["x"].story_id, records["y"].story_id}
    # Another outlet's copy of the first item joins the first item's story.
    records = ingest(pipeline, ("x2", text(x)))
    assert records["x2"].story_id == records["x"].story_id


def test_a_short_item_inside_a_long_statement_is_a_copy_both_ways(pipeline: Pipeline) -> None:
    """A 22-word wire item inside a 900-word statement is found whichever comes first."""
    item, before, after = words(40, 22), words(41, 500), words(42, 400)
    records = ingest(pipeline, ("statement", text(before, item, after)), ("item", text(item)))
    assert records["item"].story_id == records["statement"].story_id
    assert records["item"].method is Method.CONTAINMENT and records["item"].containment == 1.0
    item2, before2, after2 = words(43, 22), words(44, 500), words(45, 400)
    records = ingest(pipeline, ("item2", text(item2)), ("statement2", text(before2, item2, after2)))
    assert records["statement2"].story_id == records["item2"].story_id


def test_the_earliest_published_copy_becomes_the_canonical(pipeline: Pipeline) -> None:
    a = words(50, 300)
    records = ingest(pipeline, ("late", text(a), "2015-07-22T10:00:00+03:00"), ("copy", text(edit(a, 51, 0.04))))
    story_id = records["late"].story_id
    records = ingest(pipeline, ("early", text(edit(a, 52, 0.04)), "Tue, 21 Jul 2015 08:00:00 GMT"))
    early, late, copy = records["early"], records["late"], records["copy"]
    assert early.status is Status.CANONICAL and early.story_id == story_id  # the story keeps its id
    assert late.status is Status.DUPLICATE and late.duplicate_of == early.id
    assert copy.duplicate_of == early.id
    story = story_of(pipeline.store, early)
    assert story.id == story_id and story.canonical.id == early.id
    # Every member's figures are measured against the new canonical.
    from docsieve.fingerprint import jaccard_and_containment

    fps = fingerprint_batch([early.text, late.text], pipeline.settings)
    jaccard, _ = jaccard_and_containment(fps[0].shingles, fps[1].shingles)
    assert late.jaccard == pytest.approx(jaccard, abs=1e-4)
    assert early.published_at == parse_published("2015-07-21T08:00:00Z")


def test_first_seen_keeps_the_first_stored_as_canonical(store: Store, settings: Settings) -> None:
    pipeline = Pipeline(store, settings.with_(canonical="first-seen"))
    a = words(60, 300)
    records = ingest(pipeline, ("late", text(a), "2015-07-22T10:00:00Z"), ("early", text(a), "2015-07-21T10:00:00Z"))
    assert records["late"].status is Status.CANONICAL and records["early"].duplicate_of == records["late"].id


def test_takedown_removes_the_text_and_passes_the_story_on(pipeline: Pipeline, settings: Settings) -> None:
    a = words(70, 300)
    docs = [("a", text(a), "2015-07-21T08:00:00Z"), ("b", text(a), "2015-07-21T09:00:00Z")]
    docs.append(("c", text(edit(a, 71, 0.04)), "2015-07-21T10:00:00Z"))
    records = ingest(pipeline, *docs)
    story_id, gone = records["a"].story_id, records["a"].id
    assert pipeline.store.delete([gone], "court order", settings) == [gone]
    pipeline.close()
    store = Store(settings.store)
    after = {r.source: r for r in store.iter_records()}
    assert "a" not in after
    assert after["b"].status is Status.CANONICAL and after["b"].story_id == story_id
    assert after["c"].duplicate_of == after["b"].id
    # The next copy still finds the story through the heir (an exact copy, given the text's shingles).
    again = Pipeline(store, settings)
    records = ingest(again, ("d", text(edit(a, 72, 0.03))))
    assert records["d"].story_id == story_id
    from docsieve.schema import deletions

    with store.engine.connect() as conn:
        audit = conn.execute(deletions.select()).one()
    assert (audit.id, audit.reason, audit.story_id) == (gone, "court order", story_id)


def test_templated_items_stay_apart_once_the_store_has_learned_the_template(store: Store, settings: Settings) -> None:
    """Cables on one template: 120 words of boilerplate, 35 of names and figures. The first ones look like
    copies (containment 0.7); as items on the template accumulate, the boilerplate counts less, later items
    are stories of their own, and a true copy of one still joins it. The counts live in the store: a
    second process (another Pipeline) shares them."""
    boilerplate = words(90, 120)

    def item(i: int) -> str:
        return text(boilerplate[:60], words(300 + i, 25), boilerplate[60:], words(400 + i, 10))

    first = Pipeline(store, settings.with_(batch_size=1))  # as from a feed: one item at a time
    records = ingest(first, *[(f"cable{i}", item(i)) for i in range(12)])
    first.close()
    second = Pipeline(Store(settings.store), settings)
    records = ingest(second, ("cable12", item(12)), ("cable13", item(13)), ("copy13", item(13) + " تنويه"))
    late = [records[f"cable{i}"].story_id for i in (11, 12, 13)]
    assert len(set(late)) == len(late), "items about different subjects merged"
    assert records["copy13"].story_id == records["cable13"].story_id
    # Without the learned counts the same items would all be one story.
    from docsieve.fingerprint import jaccard_and_containment

    a, b = fingerprint_batch([item(12), item(13)], settings)
    assert jaccard_and_containment(a.shingles, b.shingles)[1] >= settings.containment_threshold


def test_a_copy_that_carries_another_item_holds_that_items_story(pipeline: Pipeline) -> None:
    """A long text that is a copy of one story (it joins it) and also carries a short item of another: the
    item's story is held by it, whichever comes first."""
    story, item = words(95, 300), words(96, 60)
    records = ingest(pipeline, ("story", text(story)), ("long", text(story, item)), ("item", text(item)))
    assert records["long"].story_id == records["story"].story_id
    assert records["item"].story_id != records["story"].story_id
    held = story_of(pipeline.store, records["item"]).contained_in
    assert [r for r, _ in held] == [records["long"].id]
    story2, item2 = words(97, 300), words(98, 60)
    records = ingest(pipeline, ("item2", text(item2)), ("story2", text(story2)), ("long2", text(story2, item2)))
    assert records["long2"].story_id == records["story2"].story_id
    assert [r for r, _ in story_of(pipeline.store, records["item2"]).contained_in] == [records["long2"].id]


def test_a_roundup_holds_a_story_through_the_member_it_carries(pipeline: Pipeline) -> None:
    """The roundup carries only the short cut of a story whose canonical is the full release: it holds
    that story through the cut."""
    release, rest, other = words(110, 400), words(111, 300), words(112, 300)
    cut = release[:60]
    records = ingest(pipeline, ("release", text(release)), ("cut", text(cut)), ("roundup", text(other, cut, rest)))
    assert records["cut"].story_id == records["release"].story_id
    assert records["roundup"].story_id != records["release"].story_id
    holders = [r for r, _ in story_of(pipeline.store, records["release"]).contained_in]
    assert holders == [records["roundup"].id]


def test_an_earlier_copy_takes_over_and_a_member_not_close_to_it_leaves(pipeline: Pipeline) -> None:
    """The full release holds two cuts that share its lead: one keeps the first part, one the second, and
    the first cut was published earliest. It becomes the canonical; the second cut shares only the lead
    with it, is no longer close, and leaves for a story of its own."""
    lead, first, second = words(120, 60), words(121, 160), words(122, 160)
    records = ingest(
        pipeline,
        ("full", text(lead, first, second), "2015-07-21T10:00:00Z"),
        ("second-cut", text(lead, second, words(123, 20)), "2015-07-21T11:00:00Z"),
    )
    assert records["second-cut"].story_id == records["full"].story_id
    records = ingest(pipeline, ("first-cut", text(lead, first, words(124, 20)), "2015-07-21T08:00:00Z"))
    story = records["full"].story_id
    assert records["first-cut"].status is Status.CANONICAL and records["first-cut"].story_id == story
    assert records["full"].duplicate_of == records["first-cut"].id
    assert records["second-cut"].story_id != story and records["second-cut"].status is Status.CANONICAL


@pytest.mark.parametrize("share", [None, 1.0])
def test_a_copy_of_a_much_copied_release_stays_a_copy_when_the_weights_take_little_of_it(
    store: Store, settings: Settings, share: float | None
) -> None:
    """Reuters' "chickens for rent" item in five outlets of saudinewsnet-dev (2015-07-22..24); aleqtisadiya's copy
    arrives after the next day's (a feed late by a day). Each outlet's cut of the item is a different text to the
    template counts, so its own wording climbs as a template's would: 3alyoum's copy shares 0.55 of its shingles with
    aleqtisadiya's, 0.50 once they are weighed, under the threshold with 90% of that containment left. It stays in
    the story (``template_light_share``, 0.85: 85% must be left); with the share at 1 (the weighed containment must
    pass the threshold itself) it founds a story of its own."""
    settings = settings.with_(batch_size=1)  # as from feeds: one document at a time
    pipeline = Pipeline(store, settings if share is None else settings.with_(template_light_share=share))
    pipeline.ingest(list(read([str(SEEDS)], 10_000_000)))  # other news first, as in a store of any age
    docs = json.loads((FIXTURES / "ar_light_template_chickens.json").read_text(encoding="utf-8"))
    for d in docs:
        pipeline.ingest([RawDocument(**d)])
    found = {r.source: r for r in pipeline.store.iter_records()}
    aleqtisadiya, copy = found["snn-2015-07-22-157"], found["snn-2015-07-24-86"]
    a, b = fingerprint_batch([aleqtisadiya.text, copy.text], settings)
    assert jaccard_and_containment(a.shingles, b.shingles)[1] >= settings.containment_threshold
    if share is not None:
        assert copy.status is Status.CANONICAL and copy.story_id != aleqtisadiya.story_id
        return
    assert copy.status is Status.DUPLICATE and copy.story_id == aleqtisadiya.story_id
    assert len({found[d["source"]].story_id for d in docs}) == 1  # the five outlets' copies: one story
    assert problems(pipeline.store, settings) == []


def merge(store: Store, settings: Settings, into: Record, gone: Record) -> int:
    """What ``Book._merge_bridged`` does when a copy shows two stories are one: ``gone``'s story is merged into
    ``into``'s, in one write (the rule itself is tested on shingle sets in tests/test_story_rules.py). Returns the
    seq the write stamps the stories it changes with."""
    from docsieve.stories import Book

    with store.writing() as txn:
        book = Book(txn, settings, lambda ids: {i: s.shingles for i, s in txn.sketches(ids, settings).items()})
        book.load([into.id, gone.id])
        canonical = book.canonical_of[into.story_id]
        moving = book.members(gone.story_id)
        book._merge(into.story_id, gone.story_id, {m: (book.overlap(canonical, m), None) for m in moving})
        seq = txn.last_seq()
        txn.save_stories(book, txn.now(), seq)
    return seq


def test_a_story_merged_into_another_gives_it_its_records_and_says_where_they_went(pipeline: Pipeline) -> None:
    """y's story (y and its copy) merges into x's: its records are x's copies, measured against x; its row stays,
    saying where it went, for a consumer that knew it (``export --stories --since``) and for ``store.story``; what
    held it holds x's story (once), and a record of x's story that held it holds nothing. A later merge of x's story
    into w's takes y's along."""
    from datetime import UTC, datetime

    from docsieve import exports
    from docsieve.models import MergedStory
    from docsieve.schema import stories

    x, y, item, filler = words(60, 300), words(61, 60), words(62, 60), words(63, 300)
    records = ingest(
        pipeline,
        ("w", text(edit(x, 64, 0.3)), "2026-12-01T06:00:00Z"),
        ("item", text(item), "2026-12-01T06:30:00Z"),
        ("x", text(x), "2026-12-01T07:00:00Z"),
        ("y", text(y), "2026-12-01T08:00:00Z"),
        ("y2", text(edit(y, 65, 0.05)), "2026-12-01T09:00:00Z"),
        ("long", text(x, y), "2026-12-01T10:00:00Z"),  # a copy of x that carries y: it holds y's story
        ("roundup", text(item, filler, y), "2026-12-01T11:00:00Z"),  # holds y's story and the item's
        ("digest", text(item, x, filler, y), "2026-12-01T12:00:00Z"),  # holds x's, y's and the item's
    )
    store, settings = pipeline.store, pipeline.settings
    xs, ys = records["x"].story_id, records["y"].story_id
    assert records["w"].story_id != xs and records["y2"].story_id == ys and records["long"].story_id == xs
    with store.engine.connect() as conn:
        held = {(r, s) for r, s in conn.execute(sa.select(contains.c.record_id, contains.c.story_id))}
    assert {(records["long"].id, ys), (records["roundup"].id, ys), (records["digest"].id, ys)} <= held
    assert (records["digest"].id, xs) in held
    stories_before, before = store.story_count(), datetime.now(UTC)

    seq = merge(store, settings, records["x"], records["y"])
    found = {r.source: r for r in store.iter_records()}
    for name in ("y", "y2"):
        assert found[name].story_id == xs and found[name].status is Status.DUPLICATE, name
        assert found[name].duplicate_of == records["x"].id
    assert store.story_count() == stories_before - 1
    assert store.story(ys).id == xs  # the merged story's id leads to where its records are
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(stories).where(stories.c.id == ys)).one()
        held = {(r, s) for r, s in conn.execute(sa.select(contains.c.record_id, contains.c.story_id))}
    assert row.merged_into == xs and row.changed_seq == seq
    assert not any(s == ys for _, s in held)
    assert {(records["roundup"].id, xs), (records["digest"].id, xs)} <= held and (records["long"].id, xs) not in held
    assert problems(store, settings, check_overlap=False) == []  # merged by hand: y is not close to x
    # A consumer asking what changed since hears of the merge; a whole export lists stories only.
    changed = list(store.iter_stories(before))
    tombstones = [s for s in changed if isinstance(s, MergedStory)]
    assert [(t.id, t.merged_into) for t in tombstones] == [(ys, xs)]
    # x's story (its new members), and the stories of the records holding y's: what they hold changed
    assert {xs, records["roundup"].story_id} <= {s.id for s in changed if not isinstance(s, MergedStory)}
    assert not any(isinstance(s, MergedStory) for s in store.iter_stories())
    row = next(exports.member_rows(tombstones[0]))
    assert (row["story_id"], row["merged_into"], row["record_id"]) == (ys, xs, None)
    assert set(row) == set(exports.MEMBER_COLUMNS)

    merge(store, settings, records["w"], found["x"])  # x's story, y's records in it, into w's
    with store.engine.connect() as conn:
        query = sa.select(stories.c.id, stories.c.merged_into).where(stories.c.id.in_([xs, ys]))
        gone = dict(conn.execute(query).all())
    assert gone == {xs: records["w"].story_id, ys: records["w"].story_id}
    assert problems(store, settings, check_overlap=False) == []
