"""The rewrite stage (docsieve/rewrites.py): word stems, the IDF-weighted word containment, and the stage in
the pipeline on real reworded releases (SaudiNewsNet, tests/fixtures/ar_rewrite_*.json), both stores."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

import docsieve.store
from docsieve.fingerprint import (
    fingerprint_batch,
    jaccard_and_containment,
    shingle_batch,
    stored_word_sets,
    word_sets,
)
from docsieve.models import Method, RawDocument, Record, Status
from docsieve.pipeline import Pipeline
from docsieve.readers import read
from docsieve.rewrites import TEXT_MARK, RewriteScores, counted_words, word_containment
from docsieve.settings import Settings, SettingsError
from docsieve.store import Store
from docsieve.templates import MOST, WORD_ROW, ShingleCounts, _day_parts, _parts, counted_shingles, weighted_overlap
from tests.story_checks import problems
from tests.test_stories import VOCABULARY, edit, text
from tests.test_stories import words as random_words

FIXTURES = Path(__file__).parent / "fixtures"
SEEDS = Path(__file__).parent.parent / "seeds"


def words(text: str) -> np.ndarray:
    return word_sets(shingle_batch([text], Settings(), words=True))[0]


def release(name: str) -> RawDocument:
    d = json.loads((FIXTURES / f"ar_rewrite_{name}.json").read_text(encoding="utf-8"))
    return RawDocument(
        source=d["source"], body=d["body"], title=d["title"], published=d["published"], outlet=d["outlet"]
    )


def test_a_word_and_its_clitics_are_one_word() -> None:
    """wa-, bi- + al-, al- come off the front of an Arabic word; a rest shorter than three letters keeps them."""
    forms = ["والمملكة", "بالمملكة", "المملكة", "مملكة", "فالمملكة", "وبالمملكة"]
    assert len({int(words(w)[0]) for w in forms}) == 1
    assert len(words(" ".join(forms))) == 1
    # "ولد" (boy) is no wa- + li- + "د"; "بلد" keeps its bi-; "كتاب" has no clitic to lose
    assert len(words("ولد لد د بلد كتاب")) == 5
    # Latin words are words as they are
    assert len(words("allow al low Allow")) == 3


def test_a_word_and_the_pronoun_on_its_end_are_one_word() -> None:
    """-hum, -hunna, -ha, -huma come off the end (a feminine noun's ta marbuta comes back: "حكومتهم" is
    "الحكومة"), anywhere in a batch; a plural's -at stays; a rest shorter than three letters keeps its suffix;
    first and second persons stay (their endings are often a word's own: "أماكن" is no "أما", "يتمكن" no "يتم").
    With ``prefixes`` stems (the stores made before), only the front comes off."""
    government = int(words("الحكومة")[0])
    assert {int(words(w)[0]) for w in ["حكومتهم", "حكومتها", "وحكومتهن", "بحكومتهما", "حكومة"]} == {government}
    assert {int(words(w)[0]) for w in ["قراراتها", "والقرارات"]} == {int(words("قرارات")[0])}
    assert int(words("قراراتها")[0]) != int(words("قراره")[0])  # her decisions are not his decision
    assert len(words("لهم لها منها")) == 3 and len(words("هم ها")) == 2  # too short to lose them
    for word, other in [("أماكن", "أما"), ("يتمكن", "يتم"), ("أحيانا", "أحيا"), ("حكومتنا", "الحكومة")]:
        assert int(words(word)[0]) != int(words(other)[0]), word
    # in a batch, after other words and documents: the same ids as alone
    texts = ["قال المتحدث إن حكومتهم أعلنت قراراتها", "وأكدت حكومتها ذلك"]
    batch = word_sets(shingle_batch(texts, Settings(), words=True))
    assert all(government in found.tolist() for found in batch)
    assert all(np.array_equal(a, b) for a, b in zip(stored_word_sets(texts, "affixes"), batch, strict=True))
    old = Settings(word_stems="prefixes")
    assert len(word_sets(shingle_batch(["الحكومة حكومتهم حكومتها"], old, words=True))[0]) == 3
    assert government not in stored_word_sets(["حكومتهم حكومتها"], "prefixes")[0].tolist()


def test_words_are_the_same_in_a_batch_and_alone() -> None:
    texts = ["قال وزير المالية إن ميزانيتها", "The minister said the budget", "والمملكة بالمملكة وحكومتهم"]
    together = word_sets(shingle_batch(texts, Settings(), words=True))
    for one, found in zip(texts, together, strict=True):
        assert np.array_equal(found, words(one))
    # a stored text's words, made again from its tokens alone, are the same
    assert all(np.array_equal(a, b) for a, b in zip(stored_word_sets(texts, "affixes"), together, strict=True))
    old = word_sets(shingle_batch(texts, Settings(word_stems="prefixes"), words=True))
    assert all(np.array_equal(a, b) for a, b in zip(stored_word_sets(texts, "prefixes"), old, strict=True))
    fingerprints = fingerprint_batch(texts, Settings())
    assert all(np.array_equal(f.words, w) for f, w in zip(fingerprints, together, strict=True))
    assert all(f.words is None for f in fingerprint_batch(texts, Settings(rewrites=False)))


def test_the_score_weighs_rare_words_over_common_ones() -> None:
    """Two texts that share their common words but not their rare ones score low, and the other way round."""
    counts = ShingleCounts(3)
    common, rare = words("قال أكد أن في على من إلى"), words("الزياني المالكي مجلس التعاون")
    background = [words(f"قال أكد أن في على من إلى خبر{i} رقم{i}") for i in range(40)]
    for w in [*background, np.union1d(common, rare)]:
        counts.add_words(counted_words(w))
    assert counts.word_counts(np.array([TEXT_MARK]))[0] == 41
    mine = np.union1d(common, rare)
    assert word_containment(mine, np.union1d(common, words("شيء آخر")), counts) < 0.2
    assert word_containment(mine, np.union1d(rare, words("شيء آخر")), counts) > 0.8
    assert word_containment(mine, mine, counts) == pytest.approx(1.0)


def background(pipeline: Pipeline) -> None:
    """The seeds: other news, so that the store's word counts say which words are common."""
    pipeline.ingest(list(read([str(SEEDS)], 10_000_000)))


def records(pipeline: Pipeline) -> dict[str, Record]:
    return {r.source: r for r in pipeline.store.iter_records()}


@pytest.mark.parametrize("rewrites", [False, True])
def test_a_condensed_release_joins_its_story_as_a_rewrite(store: Store, settings: Settings, rewrites: bool) -> None:
    """sabq's and almadina's cuts of one municipality release (5 tons of spoiled sweets) share 48% of the
    shorter's word 3-grams, under the thresholds; with the stage on, the later joins the earlier's story as
    a rewrite, its score as its similarity. Off, they are two stories."""
    pipeline = Pipeline(store, settings.with_(rewrites=rewrites))
    background(pipeline)
    pipeline.ingest([release("sweets_sabq"), release("sweets_almadina")])
    found = records(pipeline)
    first, second = found["snn-2015-07-21-2924"], found["snn-2015-07-22-515"]
    assert first.status is Status.CANONICAL
    assert second.containment is None or second.containment < settings.containment_threshold
    if not rewrites:
        assert second.status is Status.CANONICAL and second.story_id != first.story_id
        return
    assert second.status is Status.DUPLICATE and second.method is Method.REWRITE
    assert second.story_id == first.story_id and second.duplicate_of == first.id
    assert settings.rewrite_threshold <= second.similarity <= 1
    assert second.containment is not None and settings.rewrite_floor <= second.containment < 0.55
    story = pipeline.store.story(first.story_id)
    assert story is not None and story.canonical.id == first.id and [m.id for m in story.members] == [second.id]


def test_an_earlier_published_rewrite_takes_over_and_the_old_canonical_stays_a_rewrite(
    store: Store, settings: Settings
) -> None:
    """The Passports directorate's release on 363,000 Yemenis in almadina (08:45) and alriyadh (06:29), each
    lightly copy-edited: almadina's arrives first; alriyadh's, published earlier and found by the stage (its
    containment with almadina's 0.53), takes the story over, as nothing in it would have to leave, and
    almadina's stays, measured again against it: a rewrite still, not a copy at the chain floor."""
    pipeline = Pipeline(store, settings)
    background(pipeline)
    pipeline.ingest([release("passports_almadina")])
    pipeline.ingest([release("passports_alriyadh")])
    found = records(pipeline)
    early, late = found["snn-2015-07-24-1408"], found["snn-2015-07-24-1271"]
    assert early.published_at is not None and late.published_at is not None and early.published_at < late.published_at
    assert early.status is Status.CANONICAL
    assert late.method is Method.REWRITE and late.duplicate_of == early.id and late.story_id == early.story_id
    assert late.similarity >= settings.rewrite_threshold
    assert late.containment is not None and late.containment < settings.containment_threshold
    assert problems(pipeline.store, settings) == []


def test_templated_items_stay_apart_with_the_stage_on(store: Store, settings: Settings, monkeypatch) -> None:
    """Items on one template: 60 words of boilerplate and 70 of their own, so that two of them share 45% of
    the shorter's shingles, in the stage's range. The stage weighs each pair, and the words that differ, rare
    in the store, weigh more than the boilerplate they share: it merges none of them."""
    scored: list[float] = []
    score = RewriteScores.score
    monkeypatch.setattr(RewriteScores, "score", lambda self, a, b: scored.append(score(self, a, b)) or scored[-1])
    boilerplate = random_words(90, 60)

    def item(i: int) -> str:
        return text(boilerplate[:30], random_words(300 + i, 70), boilerplate[30:])

    first, second = fingerprint_batch([item(0), item(1)], settings)
    assert settings.rewrite_floor <= jaccard_and_containment(first.shingles, second.shingles)[1] < 0.55
    pipeline = Pipeline(store, settings.with_(batch_size=1))
    background(pipeline)
    pipeline.ingest([RawDocument(source=f"item{i}", body=item(i)) for i in range(12)])
    found = records(pipeline)
    assert len(scored) >= 11 and max(scored) < settings.rewrite_threshold
    assert len({found[f"item{i}"].story_id for i in range(12)}) == 12


# Synthetic rewrites: the same words in another order, three-word pieces shuffled, so that their shingles are
# mostly new (containment 0.3-0.45 with the original) and every word is the original's.


def rewrite_of(tokens: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    pieces = [tokens[i : i + 3] for i in range(0, len(tokens), 3)]
    rng.shuffle(pieces)
    return [w for piece in pieces for w in piece]


def ingest(pipeline: Pipeline, *docs: tuple[str, list[str]] | tuple[str, list[str], str]) -> dict[str, Record]:
    pipeline.ingest(
        [RawDocument(source=d[0], body=text(d[1]), title=d[0], published=d[2] if len(d) > 2 else None) for d in docs]
    )
    return records(pipeline)


def test_a_rewrite_published_first_does_not_take_over_a_story_it_would_split(pipeline: Pipeline) -> None:
    """A story of C and D (a copy-edit of C, Jaccard 0.56 with it) and R, a rewrite of C published before
    both: R joins as a rewrite and C stays the canonical, D with it (D is no copy of R: were R the canonical,
    D would have to leave). The story checks hold (such a rewrite ranks before its canonical)."""
    background(pipeline)
    c = random_words(50, 200)
    ingest(pipeline, ("C", c, "2024-05-01T10:00:00Z"), ("D", edit(c, 51, 0.10), "2024-05-01T11:00:00Z"))
    found = ingest(pipeline, ("R", rewrite_of(c, 52), "2024-05-01T09:00:00Z"))
    assert found["C"].status is Status.CANONICAL and found["D"].duplicate_of == found["C"].id
    assert found["R"].method is Method.REWRITE and found["R"].duplicate_of == found["C"].id
    assert found["R"].containment is not None and found["R"].containment < 0.45
    assert problems(pipeline.store, pipeline.settings) == []


def test_a_copy_of_a_rewrite_joins_the_story_of_its_original(pipeline: Pipeline) -> None:
    """C, then R (a rewrite of it), then R2 (a copy-edit of R, a strong copy of it): R2 is weighed against
    the story's canonical and joins as a rewrite of C, not founding a story of its own beside R's."""
    background(pipeline)
    c = random_words(80, 200)
    r = rewrite_of(c, 81)
    ingest(pipeline, ("C", c))
    ingest(pipeline, ("R", r))
    found = ingest(pipeline, ("R2", edit(r, 82, 0.03)))
    assert found["R"].method is Method.REWRITE and found["R2"].method is Method.REWRITE
    assert found["R2"].duplicate_of == found["C"].id and found["R2"].story_id == found["C"].story_id
    assert problems(pipeline.store, pipeline.settings) == []


@pytest.mark.parametrize("chain_floor", [None, 0.83])
def test_a_copy_of_a_rewrite_member_joins_at_the_chain_floor(
    store: Store, settings: Settings, chain_floor: float | None
) -> None:
    """KSrelief's call to Yemeni doctors: aljazirah's release (the canonical), aawsat's rewrite of it (a member by
    the stage), and alriyadh's copy of aawsat's text, which keeps less of the release's words (its score against
    the canonical under the threshold). As a strong copy of a rewrite member it is weighed at the chain floor and
    joins the story, its score against the canonical said; with the floor at the threshold it founds its own."""
    pipeline = Pipeline(store, settings if chain_floor is None else settings.with_(rewrite_chain_floor=chain_floor))
    background(pipeline)
    docs = json.loads((FIXTURES / "ar_rewrite_chain_ksrelief.json").read_text(encoding="utf-8"))
    for d in docs:  # in the order they were stored in saudinewsnet-dev
        pipeline.ingest([RawDocument(**d)])
    found = records(pipeline)
    canonical, member, copy = (found[d["source"]] for d in docs)
    assert member.method is Method.REWRITE and member.duplicate_of == canonical.id
    assert member.similarity is not None and member.similarity >= settings.rewrite_threshold
    copied = jaccard_and_containment(*(f.shingles for f in fingerprint_batch([member.text, copy.text], settings)))
    assert copied[1] >= settings.containment_threshold  # a strong copy of the member
    if chain_floor is not None:
        assert copy.status is Status.CANONICAL and copy.story_id != canonical.story_id
        return
    assert copy.method is Method.REWRITE and copy.duplicate_of == canonical.id
    assert copy.similarity is not None
    assert settings.rewrite_chain_floor <= copy.similarity < settings.rewrite_threshold
    assert problems(pipeline.store, settings) == []


def pieces(tokens: list[str], size: int, seed: int) -> list[list[str]]:
    """The text cut into pieces of ``size`` words, shuffled: a rewrite that keeps (size - 2) / size of the
    shingles inside each piece (4: containment about 0.5 with the original, 5: about 0.6)."""
    rng = random.Random(seed)
    out = [tokens[i : i + size] for i in range(0, len(tokens), size)]
    rng.shuffle(out)
    return out


def frame(*figures: str) -> list[str]:
    """A sentence that puts three figures in words of its own (docsieve/figures.py)."""
    a, b, c = figures
    return f"بلغ المجموع {a} ريال اليوم وبلغت الحصة {b} ريال للسهم ونسبة التوزيع {c} في المئة".split()


def chain_cases(case: str) -> list[tuple[str, list[str]]]:
    """K, a member M of its story, and X, a strong copy of M whose score against the canonical it should join is
    between the chain floor and the threshold (X ~ 0.4 inside it, under the shingles' floor).
    ``rewrite``: M a rewrite of K, X a copy of it with its figures. ``figures``: the same, X with other figures in
    the same words (another item: no copy of M). ``shingles``: M a copy of K the shingles placed, no rewrite.
    ``other``: M a rewrite of K with a second text B, K2 a rewrite of B, and X a copy of M's B: M is no member of
    K2's story."""
    k = random_words(1000, 200)
    if case in ("rewrite", "figures"):
        m = [w for p in pieces(k, 4, 1001) for w in p] + frame("4182", "7361", "2954")
        other = ("4182", "7361", "2954") if case == "rewrite" else ("5193", "8472", "3865")
        return [("K", k), ("M", m), ("X", m[:150] + frame(*other) + random_words(1002, 15))]
    if case == "shingles":
        cut = pieces(k, 5, 1003)
        m = [w for p in cut for w in p]
        rng = random.Random(1004)
        kept = [list(p) for p in cut[:24]]
        for p in rng.sample(kept, 7):  # a new middle word: the piece's shingles of K gone, its edges kept
            p[2] = rng.choice(VOCABULARY)
        return [("K", k), ("M", m), ("X", [w for p in kept for w in p] + random_words(1005, 15))]
    b = random_words(1006, 200)
    return [
        ("K", k),
        ("M", rewrite_of(k, 1007) + b),
        ("K2", [w for p in pieces(b, 4, 1008) for w in p]),
        ("X", b[:150] + random_words(1009, 40)),
    ]


@pytest.mark.parametrize("at_floor", [False, True])
@pytest.mark.parametrize("case", ["rewrite", "figures", "shingles", "other"])
def test_only_a_strong_copy_of_a_rewrite_member_of_the_story_joins_at_the_chain_floor(
    store: Store, settings: Settings, case: str, at_floor: bool
) -> None:
    """X is weighed against the canonical at the chain floor only as a strong copy, beyond what tells items apart,
    of a member of that very story that the rewrite stage placed: not of a copy with other figures, not of a member
    the shingles placed, not of another story's rewrite member. With the threshold at the chain floor
    (``at_floor``), X joins each time: its score is in between, and every other check of the stage passes."""
    threshold = settings.rewrite_chain_floor if at_floor else settings.rewrite_threshold
    pipeline = Pipeline(store, settings.with_(rewrite_threshold=threshold))
    background(pipeline)
    for doc in chain_cases(case):
        found = ingest(pipeline, doc)
    x = found["X"]
    assert found["M"].story_id == found["K"].story_id
    assert (found["M"].method is Method.REWRITE) is (case != "shingles")
    if not at_floor and case != "rewrite":
        assert x.status is Status.CANONICAL and x.story_id not in {found[n].story_id for n in found if n != "X"}
        return
    assert x.method is Method.REWRITE and x.duplicate_of == found["K2" if case == "other" else "K"].id
    assert settings.rewrite_chain_floor <= x.similarity < settings.rewrite_threshold
    assert problems(pipeline.store, pipeline.settings) == []


def test_a_copy_of_a_rewrite_member_by_its_template_alone_is_not_weighed_at_the_chain_floor(
    pipeline: Pipeline, settings: Settings
) -> None:
    """K, and M, a rewrite of it that ends in 100 words of a template's boilerplate, which 20 other items of the store
    carry too. X has M's boilerplate and its first 72 words, K's last 44, 40 more of K's words in another order and 40
    of its own: a strong copy of M by its shingles, but with the boilerplate weighed only at the floor, no copy of M
    beyond the template. So it is weighed against K at the threshold, not at the chain floor, and its score (about
    0.75) leaves it a story of its own."""
    boilerplate = random_words(2000, 100)
    ingest(pipeline, *[(f"item{i}", boilerplate + random_words(2100 + i, 100)) for i in range(20)])
    k = random_words(2001, 200)
    cut = pieces(k, 4, 2002)
    m = [w for p in cut for w in p] + boilerplate
    start = m[:72]
    others = [w for w in k[:156] if w not in start]
    x = start + boilerplate + k[156:] + random.Random(2003).sample(others, 40) + random_words(2004, 40)
    ingest(pipeline, ("K", k))
    ingest(pipeline, ("M", m))
    found = ingest(pipeline, ("X", x))
    assert found["M"].method is Method.REWRITE and found["M"].duplicate_of == found["K"].id
    fm, fx = fingerprint_batch([text(m), text(x)], settings)
    assert jaccard_and_containment(fx.shingles, fm.shingles)[1] >= settings.containment_threshold
    weights = pipeline.templates.weights
    weighed = weighted_overlap(fx.shingles, fm.shingles, weights(fx.shingles), weights(fm.shingles))
    assert settings.containment_floor <= weighed[1] < settings.containment_threshold
    assert found["X"].status is Status.CANONICAL and found["X"].story_id != found["K"].story_id
    assert problems(pipeline.store, settings) == []


def test_a_take_over_weighs_the_rewrites_again_at_the_threshold(pipeline: Pipeline, settings: Settings) -> None:
    """K, and R, a rewrite of it (all its words, half its shingles); then T, a copy of K's first three quarters
    published before it, takes the story over. R keeps three quarters of T's words, above the chain floor but
    under the threshold, and is no copy of a rewrite member: it leaves, as it would not have joined T's story."""
    background(pipeline)
    k = random_words(1010, 200)
    ingest(pipeline, ("K", k, "2024-05-01T10:00:00Z"))
    found = ingest(pipeline, ("R", [w for p in pieces(k, 4, 1011) for w in p], "2024-05-01T11:00:00Z"))
    assert found["R"].method is Method.REWRITE and found["R"].duplicate_of == found["K"].id
    found = ingest(pipeline, ("T", k[:150] + random_words(1012, 50), "2024-05-01T09:00:00Z"))
    assert found["T"].status is Status.CANONICAL and found["K"].duplicate_of == found["T"].id
    assert found["R"].status is Status.CANONICAL and found["R"].story_id != found["T"].story_id
    assert problems(pipeline.store, settings) == []


def test_a_take_over_keeps_a_copy_of_a_rewrite_member_at_the_chain_floor(
    pipeline: Pipeline, settings: Settings
) -> None:
    """K; R, a rewrite of it; X, a strong copy of R that joined at the chain floor. T, K's very text published before
    K, takes the story over: R stays a rewrite of it, and X, measured again against T, stays at the chain floor as a
    strong copy of R, as it would join T's story (before, it left: every member was weighed at the threshold)."""
    background(pipeline)
    k = random_words(1020, 200)
    r = [w for p in pieces(k, 4, 1021) for w in p]
    ingest(pipeline, ("K", k, "2024-05-01T10:00:00Z"), ("R", r, "2024-05-01T11:00:00Z"))
    found = ingest(pipeline, ("X", r[:150] + random_words(1022, 40), "2024-05-01T12:00:00Z"))
    assert found["X"].method is Method.REWRITE and found["X"].similarity < settings.rewrite_threshold
    found = ingest(pipeline, ("T", k, "2024-05-01T09:00:00Z"))
    assert found["T"].status is Status.CANONICAL and found["K"].duplicate_of == found["T"].id
    assert found["R"].method is Method.REWRITE and found["R"].duplicate_of == found["T"].id
    assert found["X"].method is Method.REWRITE and found["X"].duplicate_of == found["T"].id
    assert settings.rewrite_chain_floor <= found["X"].similarity < settings.rewrite_threshold
    assert problems(pipeline.store, settings) == []


def test_a_take_over_keeps_a_copy_of_a_chain_copy_placed_after_it(pipeline: Pipeline, settings: Settings) -> None:
    """K; R, a rewrite of it; X, a strong copy of R, and Y, a strong copy of X but not of R, published before X: each
    joined at the chain floor. T, K's very text published first, takes the story over, and X and Y leave its reach.
    Y, weighed first, copies no member placed again yet; X stays as a strong copy of R, and then Y as a strong copy
    of X: the members are weighed again until none more stays, as they would join T's story."""
    background(pipeline)
    k = random_words(1070, 200)
    r = [w for p in pieces(k, 4, 1071) for w in p]
    own = random_words(1072, 40)
    x = r[:150] + own
    part = r[80:150]
    others = [w for w in k if w not in part]  # K's words Y does not have from X
    y = part + own + others[:30] + random.Random(1073).sample(others[30:], 30)
    ingest(pipeline, ("K", k, "2024-05-01T10:00:00Z"), ("R", r, "2024-05-01T11:00:00Z"))
    ingest(pipeline, ("X", x, "2024-05-01T12:00:00Z"))
    found = ingest(pipeline, ("Y", y, "2024-05-01T11:30:00Z"))
    fr, fx, fy = fingerprint_batch([text(r), text(x), text(y)], settings)
    assert jaccard_and_containment(fy.shingles, fx.shingles)[1] >= settings.containment_threshold
    assert jaccard_and_containment(fy.shingles, fr.shingles)[1] < settings.containment_threshold
    for name in ("X", "Y"):
        assert found[name].method is Method.REWRITE and found[name].duplicate_of == found["K"].id
        assert found[name].similarity < settings.rewrite_threshold
    found = ingest(pipeline, ("T", k, "2024-05-01T09:00:00Z"))
    assert found["T"].status is Status.CANONICAL and found["K"].duplicate_of == found["T"].id
    for name in ("R", "X", "Y"):
        assert found[name].method is Method.REWRITE and found[name].duplicate_of == found["T"].id
    assert problems(pipeline.store, settings) == []


@pytest.mark.parametrize("x_at", ["10:30", "11:30"])
def test_members_leaving_a_take_over_do_not_keep_each_other_at_the_chain_floor(
    pipeline: Pipeline, settings: Settings, x_at: str
) -> None:
    """K; R, a rewrite of it; X, a strong copy of R (a chain copy by its shingles), published before R or after it.
    T, a copy of K's first 165 words published before K, takes the story over: R and X are each a rewrite of T at the
    chain floor, under the threshold, and neither is a copy of a member placed again under T. They leave together,
    whichever ranks first, as they would not join T's story (before, X ranking first stayed as a copy of R, which
    still said it was a rewrite of K, and R then stayed as a copy of X)."""
    background(pipeline)
    k = random_words(1030, 200)
    r = [w for p in pieces(k, 4, 1031) for w in p]
    ingest(pipeline, ("K", k, "2024-05-01T10:00:00Z"), ("R", r, "2024-05-01T11:00:00Z"))
    found = ingest(pipeline, ("X", r[:190] + random_words(1032, 10), f"2024-05-01T{x_at}:00Z"))
    assert found["R"].method is Method.REWRITE and found["X"].duplicate_of == found["K"].id
    found = ingest(pipeline, ("T", k[:165] + random_words(1033, 35), "2024-05-01T09:00:00Z"))
    assert found["T"].status is Status.CANONICAL and found["K"].duplicate_of == found["T"].id
    first, second = (found["X"], found["R"]) if x_at == "10:30" else (found["R"], found["X"])
    assert first.status is Status.CANONICAL and first.story_id != found["T"].story_id
    assert second.duplicate_of == first.id
    assert problems(pipeline.store, settings) == []


def test_a_takedown_crowns_the_first_copy_by_its_text(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The KSrelief triple (the canonical K, aawsat's rewrite c, alriyadh's copy x of c at the chain floor) and K2,
    K's very text from another outlet published after c. Taking K down: K2 is the next by the policy among the copies
    verified by their text, but c, measured again against K2, is a copy of it by its shingles at the floor (no
    longer a rewrite) and ranks before it, and x, a strong copy of c, before both. x is crowned, c stays with it, and
    K2, no copy of x, leaves: no copy by text ranks before its canonical (before, K2 was crowned with c before it)."""
    pipeline = Pipeline(store, settings)
    background(pipeline)
    k, c, x = json.loads((FIXTURES / "ar_rewrite_chain_ksrelief.json").read_text(encoding="utf-8"))
    twin = dict(k, source="K2", outlet="another", published="2015-07-31 05:00:00")  # after c (04:28)
    for d in (k, twin, c, x):
        pipeline.ingest([RawDocument(**d)])
    found = records(pipeline)
    assert {found[d["source"]].story_id for d in (k, twin, c, x)} == {found[k["source"]].story_id}
    assert found[c["source"]].method is Method.REWRITE and found[x["source"]].method is Method.REWRITE
    inherited = []  # the record crowned takes the links of the record taken down (store._inherit)
    inherit = docsieve.store._inherit

    def spy(conn, gone: str, heir: str) -> None:
        inherited.append(heir)
        inherit(conn, gone, heir)

    monkeypatch.setattr(docsieve.store, "_inherit", spy)
    pipeline.store.delete([found[k["source"]].id], "test", settings)
    found = records(pipeline)
    first, rewrite, other = found[x["source"]], found[c["source"]], found["K2"]
    assert first.status is Status.CANONICAL and rewrite.duplicate_of == first.id and inherited == [first.id]
    assert rewrite.method is Method.NEAR and other.story_id != first.story_id
    assert problems(pipeline.store, settings) == []


def test_a_takedown_crowns_the_earliest_rewrite_member_that_is_a_copy_by_text_of_the_heir(
    pipeline: Pipeline, settings: Settings
) -> None:
    """K; R1 and R2, two rewrites of it (its first 140 words in pieces of six, shuffled, and the rest one by one), each
    a rewrite of the other, published after K in that order; H, a copy of K's first 140 words and 50 of its own, after
    both. Taking K down, H is the heir, but R1 and R2 rank before it and are copies of it by their text (at the floor,
    their words too few of H's for a rewrite): the first of them by the policy, R1, is crowned, and R2 stays a rewrite
    of it."""
    background(pipeline)
    k = random_words(1060, 200)

    def rewrite(seed: int) -> list[str]:
        return [w for p in pieces(k[:140], 6, seed) for w in p] + random.Random(seed).sample(k[140:], 60)

    ingest(pipeline, ("K", k, "2024-05-01T10:00:00Z"))
    ingest(pipeline, ("R1", rewrite(1061), "2024-05-01T10:10:00Z"))
    ingest(pipeline, ("R2", rewrite(1062), "2024-05-01T10:20:00Z"))
    found = ingest(pipeline, ("H", k[:140] + random_words(1063, 50), "2024-05-01T10:30:00Z"))
    assert found["R1"].method is Method.REWRITE and found["R2"].method is Method.REWRITE
    assert found["H"].method is Method.NEAR and found["H"].duplicate_of == found["K"].id
    story = found["K"].story_id
    pipeline.store.delete([found["K"].id], "test", settings)
    found = records(pipeline)
    assert found["R1"].status is Status.CANONICAL and found["R1"].story_id == story
    assert found["R2"].method is Method.REWRITE and found["R2"].duplicate_of == found["R1"].id
    assert found["H"].duplicate_of == found["R1"].id
    assert problems(pipeline.store, settings) == []


@pytest.mark.parametrize("figures", [False, True])
def test_a_takedown_crowns_no_rewrite_member_that_is_no_copy_by_text_of_the_heir(
    pipeline: Pipeline, settings: Settings, figures: bool
) -> None:
    """K; R, a rewrite of it (all its words, half its shingles: at the chain floor by its shingles), published before
    H, a copy of K. Taking K down, H is the heir and R, ranking before it, stays what it is to H: a rewrite (the heir
    keeps its place), or, with other figures than H's in the same words (``figures``), another item that leaves.
    Neither makes R a copy of H by its text, which alone would crown it."""
    background(pipeline)
    k = random_words(1040, 200)
    h = k + (frame("4182", "7361", "2954") if figures else [])
    r = [w for p in pieces(k, 4, 1041) for w in p] + (frame("5193", "8472", "3865") if figures else [])
    ingest(pipeline, ("K", k, "2024-05-01T10:00:00Z"), ("R", r, "2024-05-01T11:00:00Z"))
    found = ingest(pipeline, ("H", h, "2024-05-01T12:00:00Z"))
    assert found["R"].method is Method.REWRITE and found["H"].duplicate_of == found["K"].id
    story = found["K"].story_id
    pipeline.store.delete([found["K"].id], "test", settings)
    found = records(pipeline)
    assert found["H"].status is Status.CANONICAL and found["H"].story_id == story  # crowned: K's story goes on
    if figures:
        assert found["R"].status is Status.CANONICAL and found["R"].story_id != found["H"].story_id
    else:
        assert found["R"].method is Method.REWRITE and found["R"].duplicate_of == found["H"].id
    assert problems(pipeline.store, settings) == []


def test_a_takedown_keeps_at_the_chain_floor_only_a_strong_copy_of_a_rewrite_member(
    pipeline: Pipeline, settings: Settings
) -> None:
    """K; H, a copy of its first 160 words; R, a rewrite of those words; Y, a rewrite of all of K, no strong copy of R.
    Taking K down, H is the heir: R stays a rewrite of it, and Y, a rewrite of H at the chain floor only, leaves, as
    it would not join H's story (a takedown weighs no template: every pair is beyond it, so only the shingles say
    that Y copies R)."""
    background(pipeline)
    k = random_words(1050, 200)
    r = [w for p in pieces(k[:160], 4, 1051) for w in p]
    y = [w for p in pieces(k, 4, 1052) for w in p]
    ingest(pipeline, ("K", k, "2024-05-01T10:00:00Z"), ("H", k[:160] + random_words(1053, 40), "2024-05-01T10:30:00Z"))
    found = ingest(pipeline, ("R", r, "2024-05-01T11:00:00Z"), ("Y", y, "2024-05-01T12:00:00Z"))
    assert found["R"].method is Method.REWRITE and found["Y"].method is Method.REWRITE
    pipeline.store.delete([found["K"].id], "test", settings)
    found = records(pipeline)
    assert found["H"].status is Status.CANONICAL
    assert found["R"].method is Method.REWRITE and found["R"].duplicate_of == found["H"].id
    assert found["Y"].status is Status.CANONICAL and found["Y"].story_id != found["H"].story_id
    assert problems(pipeline.store, settings) == []


def test_a_rewrite_of_a_roundup_item_follows_the_item_when_the_roundup_splits(pipeline: Pipeline) -> None:
    """A roundup (items x, z, y) stored first; R, a rewrite of x, joins its story. When x and y arrive, the
    roundup turns out to hold them and splits: R goes with x, and a later rewrite of x joins them."""
    background(pipeline)
    x, y, z = random_words(30, 60), random_words(31, 60), random_words(32, 300)
    ingest(pipeline, ("roundup", x + z + y))
    ingest(pipeline, ("R", rewrite_of(x, 33)))
    ingest(pipeline, ("x", x))
    ingest(pipeline, ("y", y))
    found = ingest(pipeline, ("R2", rewrite_of(x, 34)))
    assert found["x"].status is Status.CANONICAL and found["x"].story_id != found["roundup"].story_id
    for name in ("R", "R2"):
        assert found[name].method is Method.REWRITE and found[name].duplicate_of == found["x"].id
    story = pipeline.store.story(found["roundup"].story_id)
    assert story is not None and found["x"].story_id in {s for s, _, _ in story.contains}
    assert problems(pipeline.store, pipeline.settings) == []


def test_a_copy_of_a_rewrite_follows_the_rewrite_when_the_roundup_splits(pipeline: Pipeline) -> None:
    """A roundup (items x, z, y) stored first; R, a rewrite of x, joins its story, and X, a strong copy of R whose
    score against the roundup is under the threshold, joins at the chain floor through R. When x and y arrive the
    roundup splits and R goes with x: X follows R, weighed against x at the chain floor, and does not stay with the
    roundup through a member that has left."""
    background(pipeline)
    x, y, z = random_words(30, 120), random_words(31, 60), random_words(32, 300)
    r = [w for piece in pieces(x, 4, 40) for w in piece]
    ingest(pipeline, ("roundup", x + z + y))
    ingest(pipeline, ("R", r))
    found = ingest(pipeline, ("X", r[:90] + random_words(47, 15)))
    settings = pipeline.settings
    assert found["X"].method is Method.REWRITE and found["X"].story_id == found["roundup"].story_id
    assert found["X"].similarity is not None and found["X"].similarity < settings.rewrite_threshold
    ingest(pipeline, ("x", x))
    found = ingest(pipeline, ("y", y))
    assert found["x"].status is Status.CANONICAL and found["x"].story_id != found["roundup"].story_id
    assert found["R"].duplicate_of == found["x"].id
    assert found["X"].method is Method.REWRITE and found["X"].duplicate_of == found["x"].id
    assert found["X"].similarity is not None and found["X"].similarity >= settings.rewrite_chain_floor
    assert problems(pipeline.store, settings) == []


def test_a_rewrite_of_the_roundup_follows_a_later_rewrite_that_copies_it_when_the_roundup_splits(
    pipeline: Pipeline,
) -> None:
    """A roundup (items x, z, y) stored first; W, a rewrite of three quarters of x and of part of z, joins it at the
    threshold; R, a rewrite of all of x (a strong copy of W), after it. When x and y arrive the roundup splits: R goes
    with x, and then W, weighed before R moved, follows R at the chain floor (as W would join were it to arrive
    now): the members are weighed again until none more moves."""
    background(pipeline)
    x, y, z = random_words(30, 120), random_words(31, 60), random_words(32, 300)
    r = [w for piece in pieces(x, 4, 40) for w in [*piece, piece[0]]]
    ingest(pipeline, ("roundup", x + z + y))
    ingest(pipeline, ("W", r[: len(r) * 3 // 4] + [w for piece in pieces(z[:90], 3, 41) for w in piece]))
    found = ingest(pipeline, ("R", r))
    settings = pipeline.settings
    for name in ("W", "R"):
        assert found[name].method is Method.REWRITE and found[name].duplicate_of == found["roundup"].id
    ingest(pipeline, ("x", x))
    found = ingest(pipeline, ("y", y))
    assert found["x"].status is Status.CANONICAL and found["x"].story_id != found["roundup"].story_id
    assert found["R"].duplicate_of == found["x"].id
    assert found["W"].method is Method.REWRITE and found["W"].duplicate_of == found["x"].id
    assert found["W"].similarity is not None
    assert settings.rewrite_chain_floor <= found["W"].similarity < settings.rewrite_threshold
    assert problems(pipeline.store, settings) == []


def test_a_rewrite_member_copied_by_an_item_that_founds_a_story_takes_it_over_when_the_roundup_splits(
    pipeline: Pipeline,
) -> None:
    """A roundup (items x, z, y) stored first; W, a rewrite of three quarters of x and of part of z, joins it at the
    threshold; R, a rewrite of all of x that keeps more of its shingles (a strong copy of W, and an excerpt of the
    roundup by containment), after it. When x and y arrive the roundup splits: R, ranking before x, founds x's story,
    and W, a strong copy of R that ranks before it (it arrived first), takes that story over, R its copy."""
    background(pipeline)
    x, y, z = random_words(30, 120), random_words(31, 60), random_words(32, 300)
    r = [w for piece in pieces(x, 5, 40) for w in piece]
    ingest(pipeline, ("roundup", x + z + y))
    ingest(pipeline, ("W", r[: len(r) * 3 // 4] + [w for piece in pieces(z[:90], 3, 41) for w in piece]))
    found = ingest(pipeline, ("R", r))
    assert found["W"].method is Method.REWRITE and found["W"].duplicate_of == found["roundup"].id
    assert found["R"].method is Method.CONTAINMENT and found["R"].duplicate_of == found["roundup"].id
    ingest(pipeline, ("x", x))
    found = ingest(pipeline, ("y", y))
    assert found["W"].status is Status.CANONICAL and found["W"].story_id != found["roundup"].story_id
    assert found["R"].status is Status.DUPLICATE and found["R"].duplicate_of == found["W"].id
    assert found["x"].story_id == found["W"].story_id and found["x"].duplicate_of == found["W"].id
    story = pipeline.store.story(found["roundup"].story_id)
    assert story is not None and {found["W"].story_id, found["y"].story_id} <= {s for s, _, _ in story.contains}
    assert problems(pipeline.store, pipeline.settings) == []


def x_and_y_leave_x_with_the_roundup(pipeline: Pipeline, x: list[str], y: list[str]) -> None:
    """x and y arrive: the roundup splits, R goes with x, and X stays with the roundup; the story checks hold."""
    ingest(pipeline, ("x", x))
    found = ingest(pipeline, ("y", y))
    assert found["x"].status is Status.CANONICAL and found["R"].duplicate_of == found["x"].id
    assert found["X"].method is Method.REWRITE and found["X"].duplicate_of == found["roundup"].id
    assert problems(pipeline.store, pipeline.settings) == []


def test_a_copy_of_a_rewrite_on_another_day_stays_with_the_roundup_when_it_splits(pipeline: Pipeline) -> None:
    """As above, but R, the rewrite of x, says "today, Saturday", and X, a strong copy of it by its shingles with
    words of z, "today, Friday": another day's item, no copy of R beyond what tells items apart, it joined the roundup
    at the threshold. When the roundup splits and R goes with x, X (its score against x between the chain floor and
    the threshold) does not follow R: it stays with the roundup."""
    background(pipeline)
    saturday = ["أعلنت", "وزارة", "الصحة", "اليوم", "السبت", "تسجيل", "حالة"]
    friday = ["أعلنت", "وزارة", "الصحة", "اليوم", "الجمعة", "تسجيل", "حالة"]
    x, y, z = random_words(30, 120), random_words(31, 60), random_words(32, 300)
    r = [w for piece in pieces(x, 4, 40) for w in piece] + saturday
    ingest(pipeline, ("roundup", x + z + y))
    ingest(pipeline, ("R", r))
    found = ingest(pipeline, ("X", r[:90] + friday + [w for piece in pieces(z[:90], 3, 41) for w in piece][:30]))
    assert found["X"].method is Method.REWRITE and found["X"].duplicate_of == found["roundup"].id
    x_and_y_leave_x_with_the_roundup(pipeline, x, y)


def test_a_copy_of_a_rewrite_is_weighed_against_the_new_canonical_when_the_roundup_splits(pipeline: Pipeline) -> None:
    """A roundup (items x, z, y) stored first; R, a rewrite of x that quotes part of z too, and X, R with a part of x
    cut (a strong copy of R, all its words R's), join it. When the roundup splits, R goes with x; X keeps too few of
    x's words for the chain floor (though all its words are R's): weighed against x, not against R, it stays with the
    roundup."""
    background(pipeline)
    x, y, z = random_words(30, 120), random_words(31, 60), random_words(32, 300)
    r = [w for piece in pieces(x, 4, 40) for w in [*piece, piece[0]]]
    quoted = [w for piece in pieces(z[:60], 3, 41) for w in piece]
    ingest(pipeline, ("roundup", x + z + y))
    ingest(pipeline, ("R", r + quoted))
    found = ingest(pipeline, ("X", r[:90] + quoted))
    assert found["X"].method is Method.REWRITE and found["X"].duplicate_of == found["roundup"].id
    x_and_y_leave_x_with_the_roundup(pipeline, x, y)


def test_a_takedown_keeps_the_rewrites_of_the_text_that_stays(pipeline: Pipeline, settings: Settings) -> None:
    """C, C2 (C's very text from another outlet) and R (a rewrite of C): taking C down makes C2 the canonical,
    and R, a rewrite of that same text, stays, as it would after a take-over."""
    background(pipeline)
    c = random_words(60, 200)
    found = ingest(pipeline, ("C", c, "2024-05-01T10:00:00Z"))
    found = ingest(pipeline, ("C2", c, "2024-05-01T11:00:00Z"), ("R", rewrite_of(c, 61), "2024-05-01T12:00:00Z"))
    assert found["R"].method is Method.REWRITE
    pipeline.store.delete([found["C"].id], "test", settings)
    found = records(pipeline)
    assert found["C2"].status is Status.CANONICAL
    assert found["R"].method is Method.REWRITE and found["R"].duplicate_of == found["C2"].id
    assert problems(pipeline.store, settings) == []


def test_the_stage_settings_are_checked() -> None:
    assert Settings.from_env({"DOCSIEVE_REWRITES": "on"}).rewrites is True
    assert Settings.from_env({"DOCSIEVE_REWRITES": "off"}).rewrites is False
    with pytest.raises(SettingsError, match="REWRITE_FLOOR"):
        Settings(rewrite_floor=0.6)
    with pytest.raises(SettingsError, match="REWRITE_THRESHOLD"):
        Settings(rewrite_threshold=1.5)
    with pytest.raises(SettingsError, match="REWRITE_CHAIN_FLOOR"):
        Settings(rewrite_chain_floor=0.9)
    with pytest.raises(SettingsError, match="REWRITE_CHAIN_FLOOR"):
        Settings(rewrite_chain_floor=0.0)
    assert Settings.from_env({"DOCSIEVE_REWRITE_CHAIN_FLOOR": "0.7"}).rewrite_chain_floor == 0.7


def test_word_counts_never_stop_and_live_apart_from_the_shingles() -> None:
    """Past the shingles' cap (templates.MOST) a word's count and the count of texts go on, so the weights
    stay those of the store's real frequencies; shingle counts do not see the word ids."""
    counts = ShingleCounts(3)
    word = words("المملكة")
    for _ in range(MOST + 10):
        counts.add_words(counted_words(word))
    assert counts.word_counts(np.array([TEXT_MARK]))[0] == MOST + 10 == counts.word_counts(word)[0]
    assert counts.counts(word).max() == 0 and counts.counts(np.array([TEXT_MARK]))[0] == 0


def test_a_count_row_carries_words_apart_and_old_rows_read_as_before() -> None:
    shingles, word_ids = np.array([5, 7, 9], dtype=np.uint32), np.array([3, 0], dtype=np.uint32)
    row = counted_shingles([shingles], [word_ids])
    assert row.startswith(WORD_ROW)
    assert _parts(row) == (shingles.tobytes(), word_ids.tobytes())
    assert _parts(counted_shingles([shingles])) == (shingles.tobytes(), None)
    # an old row whose first id happens to spell the mark, but whose length says it is no word row
    odd = np.frombuffer(WORD_ROW, dtype=np.uint32).copy()
    old = np.concatenate([odd, np.array([1000], dtype=np.uint32)]).tobytes()
    assert _parts(old) == (old, None)


def test_another_process_reads_the_word_counts_from_the_snapshot_and_the_rows(tmp_path, monkeypatch) -> None:
    """Word counts persist in the store, through count snapshots and the rows after them, as shingle counts do:
    a new process reads the same."""
    import docsieve.templates as templates

    monkeypatch.setattr(templates, "SNAPSHOT_AFTER", 2_000)
    settings = Settings(store=f"sqlite:///{tmp_path / 's.db'}", batch_size=4)
    first = Pipeline(Store(settings.store), settings)
    first.ingest([RawDocument(source=f"d{i}", body=text(random_words(700 + i, 200))) for i in range(40)])
    with first.store.reading() as txn:
        snapshot = txn.count_snapshot(0)
    assert snapshot is not None and _day_parts(snapshot[1])[2].startswith(WORD_ROW)
    second = ShingleCounts(settings.boilerplate_texts)
    with second.bound(), first.store.writing() as txn:
        second.catch_up(txn)
        probe = np.unique(np.concatenate([words(text(random_words(700 + i, 200))) for i in range(40)]))
        probe = np.append(probe, TEXT_MARK)
        assert np.array_equal(second.word_counts(probe), first.templates.word_counts(probe))
        assert second.word_counts(np.array([TEXT_MARK]))[0] == 40
    first.close()


@pytest.mark.parametrize("share", [0.4, 0.0])
def test_forecasts_of_different_days_are_no_rewrites_of_each_other(
    pipeline: Pipeline, settings: Settings, share: float
) -> None:
    """Daily forecasts: the same 40-word opening and then 40 words drawn from the same 30 weather words in another
    order each day. Every word of one is in the next (a word score of 1) and their shingles share the opening (the
    stage's range), but that opening is boilerplate once the store has counted a dozen days of it (each a text of
    its own for the counts): with the template test (``rewrite_template_share`` 0.4) no later forecast joins
    another; without it (0) they all do."""
    pipeline = Pipeline(pipeline.store, settings.with_(rewrite_template_share=share, batch_size=1))
    background(pipeline)
    opening, weather = random_words(500, 40), random_words(501, 30)
    rng = random.Random(502)
    days = [opening + [rng.choice(weather) for _ in range(40)] for _ in range(20)]
    first, second = fingerprint_batch([text(days[0]), text(days[1])], settings)
    assert settings.rewrite_floor <= jaccard_and_containment(first.shingles, second.shingles)[1] < 0.55
    found = ingest(pipeline, *[(f"day{i}", days[i]) for i in range(20)])
    later = [found[f"day{i}"] for i in range(14, 20)]  # the first days teach the counts the opening
    rewrites = [r for r in later if r.method is Method.REWRITE]
    if share:
        assert not rewrites and all(r.status is Status.CANONICAL for r in later)
    else:
        assert len(rewrites) == len(later)


def test_a_store_keeps_the_word_stems_it_counted_with(store: Store, settings: Settings, monkeypatch) -> None:
    """A new store counts its words with the settings' stems and says so; a store written before the setting
    existed (no such entry, records already) keeps ``prefixes``, whatever the settings say, and a batch prepared
    with other stems (the command line prepares before the store is open) has its words made again."""
    from sqlalchemy import delete

    from docsieve.prepare import Preparing
    from docsieve.schema import meta

    pipeline = Pipeline(store, settings)
    assert pipeline.settings.word_stems == "affixes" and store.word_stems("prefixes") == "affixes"
    pipeline.ingest([release("sweets_sabq")])
    with store.engine.begin() as conn:  # as a store of the code before left it
        conn.execute(delete(meta).where(meta.c.key == "word stems"))
    older = Pipeline(store, settings)
    assert older.settings.word_stems == "prefixes" and store.word_stems("affixes") == "prefixes"
    seen: list = []
    stored = Pipeline.store_prepared

    def spy(self, rejections, prepared, within=None):
        seen.extend(prepared)
        return stored(self, rejections, prepared, within)

    monkeypatch.setattr(Pipeline, "store_prepared", spy)
    docs = [release("sweets_almadina"), RawDocument(source="x", body="حكومتهم والحكومة أعلنت قراراتها", title="x")]
    older.ingest(Preparing(docs, settings))
    expected = stored_word_sets([p.document.text for p in seen], "prefixes")
    assert len(seen) == 2 and all(np.array_equal(p.fingerprint.words, w) for p, w in zip(seen, expected, strict=True))


def test_the_word_stems_are_checked(monkeypatch) -> None:
    monkeypatch.setenv("DOCSIEVE_WORD_STEMS", "prefixes")
    assert Settings.from_env().word_stems == "prefixes"
    monkeypatch.setenv("DOCSIEVE_WORD_STEMS", "suffixes")
    with pytest.raises(SettingsError, match="WORD_STEMS"):
        Settings.from_env()


def test_the_word_stems_of_a_store_hold_for_takedowns_and_later_stages(
    store: Store, settings: Settings, monkeypatch
) -> None:
    """A store written before the setting existed counts by ``prefixes``: a takedown on it (no pipeline opened
    first) scores its members' rewrites with them. A store first filled with the stage off says its stems at
    once, so turning the stage on later keeps the settings' stems."""
    from sqlalchemy import delete

    from docsieve.schema import meta
    from docsieve.store import Transaction

    sabq = release("sweets_sabq")
    copy = RawDocument(source="copy", body="جدة - واس: " + sabq.body, title="copy", published=sabq.published)
    pipeline = Pipeline(store, settings)
    background(pipeline)
    pipeline.ingest([sabq, copy, release("sweets_almadina")])
    assert records(pipeline)["snn-2015-07-22-515"].method is Method.REWRITE
    with store.engine.begin() as conn:  # as a store of the code before left it
        conn.execute(delete(meta).where(meta.c.key == "word stems"))
    asked: list[str] = []
    word_sets_of = Transaction.word_sets

    def spy(self, ids, stems_of):
        asked.append(stems_of)
        return word_sets_of(self, ids, stems_of)

    monkeypatch.setattr(Transaction, "word_sets", spy)
    first = records(Pipeline(store, settings.with_(word_stems="prefixes")))["snn-2015-07-21-2924"]
    with store.engine.begin() as conn:
        conn.execute(delete(meta).where(meta.c.key == "word stems"))
    store.delete([first.id], "test", settings)  # the settings say affixes
    assert asked and set(asked) == {"prefixes"}


def test_a_store_filled_with_the_stage_off_keeps_the_settings_stems(tmp_path) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path / 'off.db'}", rewrites=False)
    store = Store(settings.store)
    Pipeline(store, settings).ingest([release("sweets_sabq")])
    assert Pipeline(store, settings.with_(rewrites=True)).settings.word_stems == "affixes"
    store.close()
