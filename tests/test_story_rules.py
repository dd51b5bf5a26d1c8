"""The story rules of docsieve/stories.py on hand-made shingle sets, with a store of stories in memory: what
a decision weighs, apart from how texts come to be candidates."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from docsieve.models import Status
from docsieve.rewrites import TEXT_MARK, RewriteScores
from docsieve.settings import Settings
from docsieve.stories import Book, Link, Placement
from docsieve.templates import ShingleCounts


def ids(start: int, count: int) -> np.ndarray:
    """Shingle ids spread over the id space (the template counts bucket ids by their top bits)."""
    return (np.arange(start, start + count, dtype=np.uint64) * np.uint64(2_654_435_761) % np.uint64(1 << 32)).astype(
        np.uint32
    )


def shingle_set(*parts: np.ndarray) -> np.ndarray:
    return np.unique(np.concatenate(parts))


class Stories:
    """The stored stories the rules read (``stories.StoredStories``): each canonical alone in its story."""

    def __init__(self, canonicals: Iterable[str]) -> None:
        self.placements = {c: Placement(c, c, Status.CANONICAL, c, (i, i)) for i, c in enumerate(canonicals)}

    def stories_of(self, ids: Iterable[str], policy: str):
        found = [self.placements[i] for i in ids if i in self.placements]
        return {p.story_id: p.id for p in found}, {p.story_id: [p] for p in found}

    def members(self, story_ids: Iterable[str], policy: str):
        return {s: [p for p in self.placements.values() if p.story_id == s] for s in story_ids}

    def roundups(self, ids: Iterable[str]) -> set[str]:
        return set()

    def held_stories(self, ids: Iterable[str]) -> dict[str, set[str]]:
        return {}

    def taken_story_ids(self, ids: Iterable[str]) -> set[str]:
        return {i for i in ids if i in self.placements}


def counted(common: np.ndarray, texts: int) -> ShingleCounts:
    """Template counts where ``texts`` stored texts hold ``common``, and fifty texts' words counted, none of the
    tests' words among them: each word weighs the same."""
    counts = ShingleCounts(boilerplate_texts=3)
    for _ in range(texts):
        counts.add(common)
    for _ in range(50):
        counts.add_words(np.array([TEXT_MARK], dtype=np.uint32))
    return counts


def book_with_words(
    sets: dict[str, np.ndarray],
    canonicals: list[str],
    counts: ShingleCounts,
    words: dict[str, np.ndarray],
    settings: Settings,
) -> tuple[Book, RewriteScores]:
    """A Book whose ``canonicals`` are stored, each alone in its story, with the rewrite stage's words."""
    rewrites = RewriteScores(counts, lambda wanted: {i: words[i] for i in wanted})
    book = Book(Stories(canonicals), settings, lambda wanted: {i: sets[i] for i in wanted}, counts, rewrites)
    book.load(canonicals)
    book.shingles.update(sets)
    return book, rewrites


def test_a_near_copy_joins_the_story_it_is_most_alike_beyond_the_template() -> None:
    """Two cables on one template to two heads of state: the Tunisia cable shares Jaccard 0.56 with the Egypt
    cable by their boilerplate (a near copy by plain Jaccard), 0.35 with the boilerplate weighed; it lies whole
    inside another outlet's Tunisia cable, which also carries the Crown Prince's (plain Jaccard 0.47). It joins
    the Tunisia story (saudinewsnet-dev: 24-1313 used to join 22-1302's, the Egypt story)."""
    boilerplate, egypt_names, tunisia_names = ids(0, 80), ids(1000, 30), ids(2000, 30)
    crown_prince, own = ids(3000, 120), ids(4000, 4)
    sets = {
        "egypt": shingle_set(boilerplate, egypt_names),
        "tunisia-full": shingle_set(boilerplate, tunisia_names, crown_prince),
        "tunisia": shingle_set(boilerplate, tunisia_names, own),
    }
    counts = ShingleCounts(boilerplate_texts=3)
    for _ in range(10):  # ten cables on the template stored before
        counts.add(boilerplate)
    for _ in range(8):  # and the Egypt cable's copies in other outlets
        counts.add(egypt_names)
    counts.add(tunisia_names)
    counts.add(crown_prince)
    book = Book(Stories(["egypt", "tunisia-full"]), Settings(), lambda wanted: {i: sets[i] for i in wanted}, counts)
    book.load(["egypt", "tunisia-full"])
    book.shingles.update(sets)
    assert (
        0.5 <= book.overlap("tunisia", "egypt").jaccard < 0.8 and book.overlap("tunisia", "tunisia-full").jaccard < 0.5
    )
    record = Placement("tunisia", "", Status.CANONICAL, "tunisia", (9, 9))
    book.decide(record, ["egypt", "tunisia-full"])
    assert record.status is Status.DUPLICATE and record.story_id == "tunisia-full"


def test_a_brief_item_the_weights_leave_just_short_joins_the_text_that_holds_its_words() -> None:
    """A 30-shingle item: two thirds of it a region's stock phrases (held by 20 texts), the rest its own. A longer
    text carries it with a few words changed: containment 0.8, weighted 0.54, under the threshold. Its words are
    all in the longer text, so it joins that story; the same item with other names (words the longer text does
    not hold, as a cable inside a roundup of other cables) stays apart."""
    stock, own, rest = ids(0, 20), ids(100, 10), ids(200, 100)
    sets = {
        "long": shingle_set(stock, own[:4], rest),
        "item": shingle_set(stock, own),
        "other-names": shingle_set(stock, own),
    }
    counts = counted(stock, 20)
    item_words, long_words = ids(1000, 12), ids(1000, 40)
    words = {
        "long": np.sort(long_words),
        "item": np.sort(item_words),
        "other-names": np.sort(np.concatenate((item_words[:8], ids(5000, 4)))),
    }
    settings = Settings()
    placed = {}
    for name in ("item", "other-names"):
        book, _ = book_with_words(sets, ["long"], counts, words, settings)
        o = book.overlap(name, "long")
        assert o.containment >= settings.containment_threshold and o.smaller * 2 <= len(sets["long"])
        weighted = book._weighted(name, "long", counts)[1]
        assert settings.containment_floor <= weighted < settings.containment_threshold
        record = Placement(name, "", Status.CANONICAL, name, (9, 9))
        book.decide(record, ["long"])
        placed[name] = record
    assert placed["item"].status is Status.DUPLICATE and placed["item"].story_id == "long"
    assert placed["other-names"].status is Status.CANONICAL


def test_no_second_chance_for_texts_of_one_length_or_below_the_chain_floor() -> None:
    """The brief item's words are all in the other text (score 1.0), yet the brief-item rule leaves it apart when
    the other text is less than twice as long (no excerpt), or when weighed it is under the chain floor. (Strong by
    its containment, ``template_same_words`` would keep it a copy by those words: off here.)"""
    stock, own = ids(0, 20), ids(100, 10)
    settings = Settings(template_same_words=0)
    for case, rest, stock_texts in (("one length", ids(200, 30), 20), ("under the floor", ids(200, 100), 100)):
        sets = {"other": shingle_set(stock, own[:4], rest), "item": shingle_set(stock, own)}
        words = {"other": np.sort(ids(1000, 40)), "item": np.sort(ids(1000, 12))}
        book, rewrites = book_with_words(sets, ["other"], counted(stock, stock_texts), words, settings)
        assert book.overlap("item", "other").containment >= settings.containment_threshold, case
        assert rewrites.score("item", "other") == 1.0, case
        record = Placement("item", "", Status.CANONICAL, "item", (9, 9))
        book.decide(record, ["other"])
        assert record.status is Status.CANONICAL, case


def stored_with_common(
    sets: dict[str, np.ndarray], canonicals: list[str], common: np.ndarray, settings: Settings
) -> tuple[Book, ShingleCounts]:
    """A Book whose ``canonicals`` are stored, each alone in its story, with ``common`` held by twenty other texts."""
    counts = ShingleCounts(boilerplate_texts=3)
    for _ in range(20):
        counts.add(common)
    book = Book(Stories(canonicals), settings, lambda wanted: {i: sets[i] for i in wanted}, counts)
    book.load(canonicals)
    book.shingles.update(sets)
    return book, counts


@pytest.mark.parametrize("share", [0.85, 1.0])
def test_a_copy_the_weights_take_little_of_stays_a_copy_and_a_template_item_does_not(share: float) -> None:
    """A copy shares 57 of its 100 shingles with a story's canonical, 7 of them a stock phrase twenty texts hold:
    weighed, its containment falls from 0.57 to 0.54, under the threshold, with 95% of it left. It joins the story
    (``template_light_share`` 0.85); at 1 it founds its own. An item on a template whose boilerplate is most of
    what it shares with the template's other item (containment 0.6, a third of it left weighed) stays apart."""
    phrase, shared, canonical_own, copy_own = ids(0, 7), ids(100, 50), ids(200, 60), ids(300, 43)
    boilerplate, names_a, names_b = ids(1000, 60), ids(2000, 40), ids(3000, 40)
    sets = {
        "release": shingle_set(phrase, shared, canonical_own),
        "copy": shingle_set(phrase, shared, copy_own),
        "item-a": shingle_set(boilerplate, names_a),
        "item-b": shingle_set(boilerplate, names_b),
    }
    settings = Settings(template_light_share=share)
    book, counts = stored_with_common(sets, ["release", "item-a"], np.concatenate((phrase, boilerplate)), settings)
    o = book.overlap("copy", "release")
    weighted = book._weighted("copy", "release", counts)[1]
    assert settings.containment_threshold <= o.containment and weighted < settings.containment_threshold
    assert weighted >= 0.85 * o.containment
    copy = Placement("copy", "", Status.CANONICAL, "copy", (9, 9))
    book.decide(copy, ["release"])
    assert (copy.story_id == "release") is (share < 1)
    item = Placement("item-b", "", Status.CANONICAL, "item-b", (10, 10))
    assert book.overlap("item-b", "item-a").containment >= settings.containment_threshold
    book.decide(item, ["item-a"])
    assert item.status is Status.CANONICAL and item.story_id != "item-a"


@pytest.mark.parametrize("scale", [1, 2])
def test_a_short_text_strong_by_its_jaccard_alone_is_not_kept_by_the_light_template_rule(scale: int) -> None:
    """``template_light_share`` keeps a copy by containment, and a text of fewer than ``min_containment_shingles``
    shingles has no containment to speak of: two brief items of 9 and 14 shingles sharing 8 (5 of them a stock
    phrase twenty texts hold) are strong by Jaccard alone (0.53), and weighed their Jaccard falls to 0.35. The
    weights leave 89% of their containment, but the short one founds its own story. Twice as long, the same pair is
    a copy by its weighed containment."""
    stock, own_shared = ids(0, 5 * scale), ids(100, 3 * scale)
    short_own, long_own = ids(200, 1 * scale), ids(300, 6 * scale)
    sets = {"first": shingle_set(stock, own_shared, long_own), "brief": shingle_set(stock, own_shared, short_own)}
    settings = Settings()
    book, counts = stored_with_common(sets, ["first"], stock, settings)
    o = book.overlap("brief", "first")
    weighted_jaccard, weighted = book._weighted("brief", "first", counts)
    assert book.strong(o) and o.containment >= settings.containment_threshold
    assert weighted_jaccard < settings.jaccard_threshold and weighted >= settings.template_light_share * o.containment
    short = o.smaller < settings.min_containment_shingles
    assert short is (scale == 1) and o.jaccard >= settings.jaccard_threshold
    record = Placement("brief", "", Status.CANONICAL, "brief", (9, 9))
    book.decide(record, ["first"])
    assert (record.story_id == "first") is not short
    assert (record.status is Status.CANONICAL) is short


def test_the_light_template_rule_makes_no_copy_of_a_pair_under_the_containment_threshold() -> None:
    """``beyond_template(strong=True)`` says whether a pair strong by its shingles stays a copy with the weights; a
    caller that asks it of a pair it has not checked (``_home_by_chain``, a rewrite following a moved rewrite) relies
    on it to say no to a pair under the thresholds. Two texts sharing half of the smaller one's 100 shingles (5 of them
    a stock phrase) lose little to the weights, but containment 0.5 is under the threshold, if above the floor: no
    copy, whatever share of it the weights leave."""
    stock, shared, own_a, own_b = ids(0, 5), ids(100, 45), ids(200, 50), ids(300, 70)
    sets = {"a": shingle_set(stock, shared, own_a), "b": shingle_set(stock, shared, own_b)}
    settings = Settings()
    book, counts = stored_with_common(sets, ["a", "b"], stock, settings)
    o = book.overlap("a", "b")
    weighted = book._weighted("a", "b", counts)[1]
    assert settings.containment_floor <= o.containment < settings.containment_threshold
    assert o.smaller >= settings.min_containment_shingles and not book.strong(o)
    assert weighted >= settings.template_light_share * o.containment
    assert not book.beyond_template("a", "b", strong=True)
    assert not book.beyond_template("b", "a", strong=True)


def test_a_record_joins_the_story_it_copies_beyond_the_weights_and_holds_the_one_only_the_light_rule_accepts() -> None:
    """A record holds 70% of one canonical, untouched by the weights, and 57% of another, 0.54 weighed (a stock
    phrase twenty texts hold), which only ``template_light_share`` keeps a copy: often the same story split in two,
    one copy founding its own. The record joins the first story and holds the second, where two canonicals it holds
    would have made it a roundup of both (saudinewsnet-dev: alweeam's copy of Al-Ahli's statement, 24-1718, left the
    story of four other outlets' copies for a reworded copy's)."""
    x_shared, x_own, y_shared, stock, y_own, r_own = (
        ids(0, 70),
        ids(100, 30),
        ids(200, 50),
        ids(300, 7),
        ids(400, 43),
        ids(500, 50),
    )
    sets = {
        "x": shingle_set(x_shared, x_own),
        "y": shingle_set(y_shared, stock, y_own),
        "record": shingle_set(x_shared, y_shared, stock, r_own),
    }
    settings = Settings()
    book, _ = stored_with_common(sets, ["x", "y"], stock, settings)
    joins_x_and_holds_y(book)


def joins_x_and_holds_y(book: Book) -> None:
    """ "record" is a copy of canonical x beyond the weights, and of y only by a rule ranked after them: it joins x's
    story and holds y's, where two canonicals it holds would make it a roundup of both."""
    assert book.beyond_template("record", "x", strong=True, light=False)
    assert book.beyond_template("record", "y", strong=True)
    assert not book.beyond_template("record", "y", strong=True, light=False)
    record = Placement("record", "", Status.CANONICAL, "record", (9, 9))
    book.decide(record, ["x", "y"])
    assert record.status is Status.DUPLICATE and record.story_id == "x"
    assert [(k.record_id, k.story_id, k.roundup) for k in book.links] == [("record", "y", False)]


@pytest.mark.parametrize("case", ["one day", "day after day", "undated", "days off"])
def test_a_release_cut_by_many_outlets_on_its_day_stays_one_story_and_a_template_of_many_days_does_not(
    case: str,
) -> None:
    """Six outlets' cuts of one release, counted on its day: its wording weighs in full (``template_across_days``),
    and a seventh outlet's copy that shares 0.56 of its shingles with the canonical joins the story. The same six texts
    counted on six days are a template's items: its wording weighs 3/6, the copy's containment falls to 0.39 weighed
    (0.69 of it left, under ``template_light_share``), and it founds its own story. So it does when the texts are
    undated (as every text was before days were kept), or with the setting off."""
    shared, canonical_own, copy_own = ids(0, 56), ids(100, 60), ids(200, 44)
    sets = {"release": shingle_set(shared, canonical_own), "copy": shingle_set(shared, copy_own)}
    settings = Settings(template_across_days=case != "days off")
    counts = ShingleCounts(boilerplate_texts=3, across_days=settings.template_across_days)
    for day in range(6):
        days = (
            None
            if case == "undated"
            else (np.array([40_000 + (day if case == "day after day" else 0)]), np.array([56]))
        )
        counts.add(shared, days)
    book = Book(Stories(["release"]), settings, lambda wanted: {i: sets[i] for i in wanted}, counts)
    book.load(["release"])
    book.shingles.update(sets)
    o = book.overlap("copy", "release")
    weighted = book._weighted("copy", "release", counts)[1]
    assert o.containment == pytest.approx(0.56)
    copy = Placement("copy", "", Status.CANONICAL, "copy", (9, 9))
    book.decide(copy, ["release"])
    if case == "one day":
        assert weighted == pytest.approx(o.containment)
        assert copy.status is Status.DUPLICATE and copy.story_id == "release"
    else:
        assert weighted < settings.template_light_share * o.containment
        assert copy.status is Status.CANONICAL and copy.story_id != "release"


def daily_statement() -> tuple[dict[str, np.ndarray], ShingleCounts, dict[str, np.ndarray]]:
    """A statement of a daily series (40 of its 100 shingles the series' wording, twenty texts of other days hold it)
    and another outlet's cut of it: 65 shingles shared, and all but two of the cut's 30 words (score 28/30)."""
    series, day = ids(0, 40), ids(100, 25)
    sets = {"statement": shingle_set(series, day, ids(200, 35)), "cut": shingle_set(series, day, ids(300, 35))}
    statement_words = ids(1000, 40)
    words = {
        "statement": np.sort(statement_words),
        "cut": np.sort(np.concatenate((statement_words[:28], ids(2000, 2)))),
    }
    return sets, counted(series, 20), words


@pytest.mark.parametrize("same_words", [0.92, 0.0])
def test_a_cut_of_a_daily_series_statement_stays_a_copy_by_its_words_and_another_days_item_does_not(
    same_words: float,
) -> None:
    """A spokesman's statement of a daily series in two outlets' cuts: they share 65 of the copy's 100 shingles, 40 of
    them the series' wording (twenty texts hold it), and the weights leave 0.47 of containment, 72% of it (under
    ``template_light_share``). The copy's words are all but two of them in the canonical (score 28/30 = 0.93), so
    it joins the story (``template_same_words`` 0.92); off, it founds its own. Another day's statement shares the
    series' wording and some of the day's phrases (containment 0.55) but names other casualties and places: 5 of
    its 30 words the canonical lacks (score 0.83), so it stays apart."""
    sets, counts, words = daily_statement()
    series, day, statement_words = ids(0, 40), ids(100, 25), words["statement"]  # as daily_statement makes them
    sets |= {
        "other-day": shingle_set(series, day[:15], ids(400, 45)),
        "below": shingle_set(series, day[:10], ids(500, 50)),
    }
    words |= {
        "other-day": np.sort(np.concatenate((statement_words[:25], ids(3000, 5)))),
        "below": np.sort(statement_words[:30]),
    }
    settings = Settings(template_same_words=same_words)
    placed = {}
    for name in ("cut", "other-day"):
        book, rewrites = book_with_words(sets, ["statement"], counts, words, settings)
        o = book.overlap(name, "statement")
        weighted = book._weighted(name, "statement", counts)[1]
        assert o.containment >= settings.containment_threshold > weighted
        assert weighted < settings.template_light_share * o.containment
        record = Placement(name, "", Status.CANONICAL, name, (9, 9))
        book.decide(record, ["statement"])
        placed[name] = record
    assert rewrites.score("cut", "statement") == pytest.approx(28 / 30)
    assert rewrites.score("other-day", "statement") == pytest.approx(25 / 30)
    assert (placed["cut"].story_id == "statement") is bool(same_words)
    assert placed["cut"].status is (Status.DUPLICATE if same_words else Status.CANONICAL)
    assert placed["other-day"].status is Status.CANONICAL and placed["other-day"].story_id != "statement"
    # A text under the containment threshold is no copy by its shingles, whatever words it holds (the rewrite stage,
    # at its own threshold, weighs it): the rule keeps copies, it makes none.
    assert book.overlap("below", "statement").containment < settings.containment_threshold
    assert rewrites.score("below", "statement") == 1.0
    assert not book.beyond_template("below", "statement", strong=True)


def test_a_record_joins_the_story_it_copies_beyond_the_weights_and_holds_the_one_only_its_words_keep() -> None:
    """A record holds 70% of one canonical, untouched by the weights, and 65% of another, 0.47 weighed (40 of the 65
    a daily series' wording twenty texts hold: under ``template_light_share``), which only ``template_same_words``
    keeps a copy (28 of the other's 30 words). Like a story only the light rule accepts, that story ranks after the
    first: the record joins the first and holds the second, where two canonicals it holds would make it a roundup."""
    x_shared, x_own, series, y_shared, y_own, r_own = (
        ids(0, 70),
        ids(100, 30),
        ids(200, 40),
        ids(300, 25),
        ids(400, 35),
        ids(500, 10),
    )
    sets = {
        "x": shingle_set(x_shared, x_own),
        "y": shingle_set(series, y_shared, y_own),
        "record": shingle_set(x_shared, series, y_shared, r_own),  # under twice y's size: no brief item
    }
    counts = counted(series, 20)
    y_words, x_words = ids(1000, 30), ids(2000, 40)
    words = {
        "x": np.sort(x_words),
        "y": np.sort(y_words),
        "record": np.sort(np.concatenate((x_words, y_words[:28], ids(3000, 5)))),
    }
    settings = Settings()
    book, rewrites = book_with_words(sets, ["x", "y"], counts, words, settings)
    o = book.overlap("record", "y")
    weighted = book._weighted("record", "y", counts)[1]
    assert o.containment >= settings.containment_threshold > weighted
    assert settings.rewrite_template_share * o.containment <= weighted < settings.template_light_share * o.containment
    assert rewrites.score("record", "y") == pytest.approx(28 / 30)
    joins_x_and_holds_y(book)


def test_the_same_words_rule_keeps_no_pair_whose_shared_shingles_are_mostly_a_template() -> None:
    """Two forecasts of one outlet on different days share 60 of their 100 shingles (containment 0.6), all of them
    the forecast's wording a hundred texts hold, and every word: the same regions, winds and seas (score 1.0). The
    weights leave under ``rewrite_template_share`` (0.4) of that containment: the rewrite stage's guard says it is
    a template's wording, so ``template_same_words`` keeps no copy of it. The rule goes through ``_rewrite`` and
    its guards, not the bare score."""
    wording, own_a, own_b = ids(0, 60), ids(100, 40), ids(200, 40)
    sets = {"monday": shingle_set(wording, own_a), "tuesday": shingle_set(wording, own_b)}
    counts = counted(wording, 100)
    regions = ids(1000, 30)
    words = {"monday": np.sort(regions), "tuesday": np.sort(np.concatenate((regions, ids(2000, 2))))}
    settings = Settings()
    book, rewrites = book_with_words(sets, ["monday"], counts, words, settings)
    o = book.overlap("tuesday", "monday")
    assert o.containment >= settings.containment_threshold
    assert book._weighted("tuesday", "monday", counts)[1] < settings.rewrite_template_share * o.containment
    assert rewrites.score("tuesday", "monday") == 1.0
    assert not book.beyond_template("tuesday", "monday", strong=True)
    record = Placement("tuesday", "", Status.CANONICAL, "tuesday", (9, 9))
    book.decide(record, ["monday"])
    assert record.status is Status.CANONICAL and record.story_id != "monday"


def test_the_same_words_threshold_is_inclusive() -> None:
    """``template_same_words`` is the least share kept ("at least"): a score exactly at it keeps the copy."""
    sets, counts, words = daily_statement()
    score = book_with_words(sets, ["statement"], counts, words, Settings())[1].score("cut", "statement")
    for threshold, kept in ((score, True), (np.nextafter(score, 1.0), False)):
        book, _ = book_with_words(sets, ["statement"], counts, words, Settings(template_same_words=float(threshold)))
        assert book.beyond_template("cut", "statement", strong=True) is kept, threshold


class StoriesWithMembers(Stories):
    """Stored stories of several records each: ``placements`` as stored (a story's canonical has its status)."""

    def __init__(self, placements: list[Placement]) -> None:
        self.placements = {p.id: p for p in placements}

    def stories_of(self, ids: Iterable[str], policy: str):
        wanted = {self.placements[i].story_id for i in ids if i in self.placements}
        members = self.members(wanted, policy)
        canonicals = {s: next(p.id for p in ps if p.status is Status.CANONICAL) for s, ps in members.items()}
        return canonicals, members


def split_story(case: str) -> tuple[Book, dict[str, np.ndarray]]:
    """One release in two stored stories: canonical a (ranked first) alone, canonical b with its copy b2. a and b share
    60 of their 100 shingles (containment 0.6), 25 of them a stock phrase twenty texts hold: weighed, 0.49, under the
    threshold and under ``template_light_share`` of it, so b founded a story of its own; at the chain floor (0.45)
    weighed, they are copies. ``case`` changes one thing: b three times as long ("longer"), b2 a text a shares little
    with ("member leaves"), a a roundup ("roundup"), 50 of the 60 shared shingles the stock phrase ("template
    items": under the floor weighed)."""
    core, a_own, b_own = ids(0, 60), ids(100, 40), ids(200, 40)
    sets = {
        "a": shingle_set(core, a_own),
        "b": shingle_set(core, b_own, ids(300, 120)) if case == "longer" else shingle_set(core, b_own),
        "b2": shingle_set(core[:20], b_own, ids(400, 40)) if case == "member leaves" else shingle_set(core, b_own[:35]),
        # a later copy of both: all of the release, most of each one's own text (a near copy of a by the weights: the
        # items' own text is most of what the weights leave)
        "r": shingle_set(core, a_own[:35], b_own[:35])
        if case == "template items"
        else shingle_set(core, a_own[:30], b_own[:30], ids(500, 10)),
    }
    stored = [
        Placement("a", "a", Status.CANONICAL, "a", (0, 0)),
        Placement("b", "b", Status.CANONICAL, "b", (1, 1)),
        Placement("b2", "b", Status.DUPLICATE, "b2", (2, 2)),
    ]
    counts = ShingleCounts(boilerplate_texts=3)
    for _ in range(20):
        counts.add(core[:50] if case == "template items" else core[:25])
    settings = Settings(merge_split_stories=case != "off")
    book = Book(StoriesWithMembers(stored), settings, lambda wanted: {i: sets[i] for i in wanted}, counts)
    book.load(["a", "b", "b2"])
    book.shingles.update(sets)
    if case == "roundup":
        book.roundup.add("a")
    return book, sets


@pytest.mark.parametrize("case", ["merged", "off"])
def test_a_copy_of_both_halves_of_a_story_split_in_two_makes_them_one(case: str) -> None:
    """A later copy of the release is a copy of both canonicals, beyond the weights: it joins a's story, and shows the
    two stories are one split by the order the copies came in. b's records join a's story (a ranks first), each
    measured against a; b's story is merged into a's. Off (``merge_split_stories``), they stay two."""
    book, _ = split_story(case)
    settings = book.settings
    o = book.overlap("b", "a")
    assert o.containment >= settings.containment_threshold and not book.beyond_template("b", "a", strong=True)
    assert book.close(o) and book.beyond_template("b", "a", strong=False)
    book.links.append(Link("earlier", "b", 0.6))  # an earlier record of the batch holds b's story
    r = Placement("r", "", Status.CANONICAL, "r", (9, 9))
    book.decide(r, ["a", "b", "b2"])
    assert r.story_id == "a" and r.status is Status.DUPLICATE
    b, b2 = book.placements["b"], book.placements["b2"]
    if case == "off":
        assert (b.story_id, b2.story_id, b.status) == ("b", "b", Status.CANONICAL)
        assert book.merged_into == {} and book.changed_records == set()
        return
    assert book.merged_into == {"b": "a"}
    for member in (b, b2):
        assert member.story_id == "a" and member.status is Status.DUPLICATE, member.id
        o = book.overlap("a", member.id)
        assert (member.jaccard, member.containment) == (round(o.jaccard, 4), round(o.containment, 4))
    assert book.changed_records == {"b", "b2"} and "a" in book.touched_stories
    assert "b" not in book.changed_stories | book.new_stories
    assert [(k.record_id, k.story_id) for k in book.links] == [("earlier", "a")]  # what held b holds a


@pytest.mark.parametrize("case", ["longer", "member leaves", "roundup"])
def test_two_stories_a_copy_bridges_stay_two_unless_every_rule_of_one_story_holds(case: str) -> None:
    """The same copy of both, with one thing changed: b three times as long as a (an item inside a longer text: held,
    not joined), a member of b's story that a shares too little with (it would have to leave), or a a roundup. The
    stories stay two."""
    book, sets = split_story(case)
    o = book.overlap("b", "a")
    assert book.close(o) and book.beyond_template("b", "a", strong=False)  # the canonicals alone would merge
    if case == "longer":
        assert len(sets["b"]) > 2 * len(sets["a"])
    if case == "member leaves":
        assert not book.close(book.overlap("a", "b2"))
    r = Placement("r", "", Status.CANONICAL, "r", (9, 9))
    book.decide(r, ["a", "b", "b2"])
    assert r.story_id == "a"
    assert book.merged_into == {}
    assert (book.placements["b"].story_id, book.placements["b2"].story_id) == ("b", "b")


def test_two_items_of_one_template_a_copy_bridges_stay_two() -> None:
    """The canonicals are copies at the floor by their shingles, not with the weights (50 of the 60 shingles they share
    a template's wording twenty texts hold): items of one template, which a text carrying both does not make one
    story."""
    book, _ = split_story("template items")
    o = book.overlap("b", "a")
    assert book.close(o) and not book.beyond_template("b", "a", strong=False)
    asked = []
    mergeable = book._mergeable
    book._mergeable = lambda x, y: asked.append((x, y)) or mergeable(x, y)  # type: ignore[method-assign]
    r = Placement("r", "", Status.CANONICAL, "r", (9, 9))
    book.decide(r, ["a", "b", "b2"])
    assert asked == [("a", "b")]  # r bridges the two
    assert book.merged_into == {}
    assert (book.placements["b"].story_id, book.placements["b2"].story_id) == ("b", "b")


class StoriesWithRoundups(Stories):
    """Stored canonicals, each alone in its story; ``holds``: the stories each roundup holds (named by their
    canonical)."""

    def __init__(self, canonicals: Iterable[str], holds: dict[str, set[str]]) -> None:
        super().__init__(canonicals)
        self.holds = holds

    def roundups(self, ids: Iterable[str]) -> set[str]:
        return self.holds.keys() & set(ids)

    def held_stories(self, ids: Iterable[str]) -> dict[str, set[str]]:
        return {i: self.holds[i] for i in ids if i in self.holds}


@pytest.mark.parametrize(
    "case", ["same items", "wrapped", "wrapped, beyond the weights", "an item r does not hold", "another day"]
)
def test_a_roundup_published_again_is_a_copy_of_it_though_the_weights_refuse_it(case: str) -> None:
    """Items x and y, and roundup r of both with the wording of a template (a stock passage twenty texts hold), stored.
    Another outlet's roundup of the same items shares half of r's stock passage: a copy of r by its shingles, not
    once the weights discount the passage. It holds x and y, verified beyond the weights, which r holds too: it joins
    r's story (two roundups of one day's cables, saudinewsnet-dev 23-1137 and 23-1070), and holds the items as a
    roundup. So does a longer text that carries most of r with more of its own ("wrapped"), and one that carries
    enough of r's own text to be its copy beyond the weights too (r is then one of the stories the record holds).
    Where r holds only x, or names another weekday in the same words, the record is a roundup of its own."""
    x, y, stock = ids(0, 40), ids(100, 40), ids(1000, 100)
    sets = {
        "x": shingle_set(x),
        "y": shingle_set(y),
        "r": shingle_set(x, y, stock, ids(2000, 100)),
        "record": shingle_set(x, y, stock, ids(2000, 5 if case == "wrapped" else 20), ids(3000, 300))
        if case.startswith("wrapped")
        else shingle_set(x, y, stock[:60], ids(3000, 100)),
    }
    days = {"r": {(0, 1, 2): frozenset({2})}, "record": {(0, 1, 2): frozenset({3 if case == "another day" else 2})}}
    settings = Settings()
    book = Book(
        StoriesWithRoundups(["x", "y", "r"], {"r": {"x"} if case == "an item r does not hold" else {"x", "y"}}),
        settings,
        lambda wanted: {i: sets[i] for i in wanted},
        counted(stock, 20),
        days_of=lambda wanted: {i: days.get(i, {}) for i in wanted},
    )
    book.load(["x", "y", "r"])
    book.shingles.update(sets)
    o = book.overlap("record", "r")
    assert book.strong(o) and o.jaccard < settings.jaccard_threshold
    assert book.beyond_template("record", "r", strong=True) is (case == "wrapped, beyond the weights")
    record = Placement("record", "", Status.CANONICAL, "record", (9, 9))
    book.decide(record, ["x", "y", "r"])
    assert {(k.record_id, k.story_id) for k in book.links if k.roundup} == {("record", "x"), ("record", "y")}
    assert "record" in book.roundup
    if case in ("same items", "wrapped", "wrapped, beyond the weights"):
        assert record.status is Status.DUPLICATE and record.story_id == "r"
    else:
        assert record.status is Status.CANONICAL and record.story_id == "record"


def test_a_roundup_published_again_holds_an_item_it_is_mostly_made_of_and_joins_the_roundup_it_is_most_inside() -> None:
    """Two stored roundups of items x and y; a record with both items is inside both, more inside r than r2. Item x is
    most of the record (Jaccard 0.57 by the shingles, a near copy but for the stock passage it carries: 0.43 weighed),
    as the royal order is of a cut of the King's leave (saudinewsnet-dev 26-347 and 25-1148). The record joins r's
    story, and holds x as a roundup does, however near a copy of x it is by the shingles."""
    stock = ids(1000, 100)
    x, y = shingle_set(ids(0, 60), stock[:60]), shingle_set(ids(100, 40))
    sets = {
        "x": x,
        "y": y,
        "r": shingle_set(x, y, stock, ids(2000, 200)),
        "r2": shingle_set(x, y, stock, ids(4000, 200)),
        "record": shingle_set(x, y, ids(2000, 20), ids(3000, 30)),
    }
    settings = Settings()
    book = Book(
        StoriesWithRoundups(["x", "y", "r", "r2"], {"r": {"x", "y"}, "r2": {"x", "y"}}),
        settings,
        lambda wanted: {i: sets[i] for i in wanted},
        counted(stock, 20),
    )
    book.load(["x", "y", "r", "r2"])
    book.shingles.update(sets)
    o = book.overlap("record", "x")
    assert o.jaccard >= settings.jaccard_threshold > book._near_jaccard("record", "x", o)
    assert book.overlap("record", "r").containment > book.overlap("record", "r2").containment
    record = Placement("record", "", Status.CANONICAL, "record", (9, 9))
    book.decide(record, ["x", "y", "r2", "r"])
    assert record.status is Status.DUPLICATE and record.story_id == "r"
    assert {(k.record_id, k.story_id) for k in book.links if k.roundup} == {("record", "x"), ("record", "y")}
