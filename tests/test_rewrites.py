"""The rewrite stage (docsieve/rewrites.py): word stems, the IDF-weighted word containment, and the stage in
the pipeline on real reworded releases (SaudiNewsNet, tests/fixtures/ar_rewrite_*.json), both stores."""

import json
from pathlib import Path

import numpy as np
import pytest

from docsieve.fingerprint import fingerprint_batch, jaccard_and_containment, shingle_batch, word_sets
from docsieve.models import Method, RawDocument, Record, Status
from docsieve.pipeline import Pipeline
from docsieve.readers import read
from docsieve.rewrites import TEXT_MARK, counted_words, word_containment
from docsieve.settings import Settings, SettingsError
from docsieve.store import Store
from docsieve.templates import ShingleCounts

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


def test_words_are_the_same_in_a_batch_and_alone() -> None:
    texts = ["قال وزير المالية إن الميزانية", "The minister said the budget", "والمملكة بالمملكة"]
    together = word_sets(shingle_batch(texts, Settings(), words=True))
    for text, found in zip(texts, together, strict=True):
        assert np.array_equal(found, words(text))
    fingerprints = fingerprint_batch(texts, Settings())
    assert all(np.array_equal(f.words, w) for f, w in zip(fingerprints, together, strict=True))
    assert all(f.words is None for f in fingerprint_batch(texts, Settings(rewrites=False)))


def test_the_score_weighs_rare_words_over_common_ones() -> None:
    """Two texts that share their common words but not their rare ones score low, and the other way round."""
    counts = ShingleCounts(3)
    common, rare = words("قال أكد أن في على من إلى"), words("الزياني المالكي مجلس التعاون")
    background = [words(f"قال أكد أن في على من إلى خبر{i} رقم{i}") for i in range(40)]
    for w in [*background, np.union1d(common, rare)]:
        counts.add(counted_words(w))
    assert counts.counts(np.array([TEXT_MARK]))[0] == 41
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
    lightly copy-edited: almadina's arrives first; alriyadh's, published earlier and found by the stage,
    becomes the canonical, and almadina's stays in the story, measured again against it: a rewrite still,
    not a copy at the chain floor."""
    pipeline = Pipeline(store, settings)
    background(pipeline)
    pipeline.ingest([release("passports_almadina")])
    pipeline.ingest([release("passports_alriyadh")])
    found = records(pipeline)
    early, late = found["snn-2015-07-24-1408"], found["snn-2015-07-24-1271"]
    assert early.status is Status.CANONICAL
    assert late.status is Status.DUPLICATE and late.method is Method.REWRITE and late.duplicate_of == early.id
    assert late.story_id == early.story_id and late.similarity >= settings.rewrite_threshold
    shingles = fingerprint_batch([early.text or "", late.text or ""], settings)
    assert jaccard_and_containment(shingles[0].shingles, shingles[1].shingles)[1] < settings.containment_threshold


def test_templated_items_stay_apart_with_the_stage_on(store: Store, settings: Settings) -> None:
    """Cables on one template (120 words of boilerplate, 35 of names and figures) share most of their words:
    the rare ones, which differ, weigh the most, and the stage merges none of them."""
    from tests.test_stories import text
    from tests.test_stories import words as random_words

    boilerplate = random_words(90, 120)

    def item(i: int) -> str:
        return text(boilerplate[:60], random_words(300 + i, 25), boilerplate[60:], random_words(400 + i, 10))

    pipeline = Pipeline(store, settings.with_(batch_size=1))
    background(pipeline)
    pipeline.ingest([RawDocument(source=f"cable{i}", body=item(i)) for i in range(14)])
    found = records(pipeline)
    assert not [r for r in found.values() if r.method is Method.REWRITE]
    late = {found[f"cable{i}"].story_id for i in range(10, 14)}
    assert len(late) == 4


def test_the_stage_settings_are_checked() -> None:
    assert Settings.from_env({"DOCSIEVE_REWRITES": "on"}).rewrites is True
    assert Settings.from_env({"DOCSIEVE_REWRITES": "off"}).rewrites is False
    with pytest.raises(SettingsError, match="REWRITE_FLOOR"):
        Settings(rewrite_floor=0.6)
    with pytest.raises(SettingsError, match="REWRITE_THRESHOLD"):
        Settings(rewrite_threshold=1.5)
