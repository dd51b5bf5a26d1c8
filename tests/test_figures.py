"""Figures that disagree (docsieve/figures.py): figures and their slots, and the stories of items on one frame with
other figures on real news (SaudiNewsNet, tests/fixtures/ar_figures_items.json: two Tadawul dividend notices of
2015-07-22 in aleqtisadiya, Zamil Industrial's and Northern Region Cement's, on one numbered frame; and alriyadh's
prose of the Northern Cement notice the next day), both stores."""

import random

import pytest

from docsieve.figures import apart, compare, shared
from docsieve.fingerprint import text_figures
from docsieve.models import Method, RawDocument, Record, Status
from docsieve.pipeline import Pipeline
from docsieve.settings import Settings
from docsieve.store import Store
from docsieve.stories import COMMON_FIGURE_TEXTS
from tests.documents import fixture_documents, text_reads
from tests.story_checks import a_take_over_sheds_the_other_item, problems
from tests.test_stories import edit, words

ZAMIL, NORTHERN, NORTHERN_PROSE = "snn-2015-07-22-169", "snn-2015-07-22-170", "snn-2015-07-23-743"

# Reuters' oil report of 2015-07-24 (SaudiNewsNet): its Brent and its WTI sentences are written on one frame.
BRENT = (
    "وتراجع سعر مزيج برنت 35 سنتا إلى 54.92 دولار للبرميل بحلول الساعة 0947 بتوقيت جرينتش بعدما بلغ أدنى مستوى "
    "له في الجلسة عند 54.80 دولار للبرميل مسجلا أقل سعر له منذ أوائل أبريل."
)
WTI = (
    "وارتفع سعر الخام الأمريكي في العقود الآجلة تسليم سبتمبر 12 سنتا إلى 48.57 دولار للبرميل بعد انخفاضه 74 سنتا "
    "عند التسوية أمس الاول الخميس ليصل إلى 48.45 دولار للبرميل وهو أدنى مستوى له منذ 31 مارس."
)
LEAD = (
    "اقتربت أسعار خام برنت من أدنى مستوياتها في أربعة أشهر امس الجمعة بعد صدور بيانات تظهر انكماش قطاع المصانع "
    "في الصين وارتفاع الدولار أمام سلة من العملات. وخسر برنت نحو 13 بالمئة من قيمته في يوليو مسجلا أكبر خسائره "
    "الشهرية منذ هبوطه حوالي 19 بالمئة في يناير."
)


def figures(text: str):
    return text_figures([text])[0]


def differ(a: str, b: str) -> bool:
    return apart(figures(a), figures(b))


def test_a_figure_is_its_digits_whatever_their_punctuation() -> None:
    """Thousands separators, decimals, Arabic-Indic digits and the Arabic press's decimal mark ("935ر6": 6.935,
    as SPA writes it) are one figure each, its digits in order; its slots are the words around it."""
    written = ["إلى 60,000,000 ريال", "إلى ٦٠٬٠٠٠٬٠٠٠ ريال", "إلى 6.935 ريال", "إلى 935ر6 ريال", "إلى 3 ر 31 ريال"]
    found = [figures(f"ارتفعت الصادرات {w} في مايو") for w in written]
    assert [f[0][0] for f in found] == ["60000000", "60000000", "6935", "9356", "331"]
    assert len({f[0][1:] for f in found}) == 1  # the same slots: the words around the figure
    assert figures("لا أرقام هنا") == ()


def test_the_figures_are_those_a_plain_pattern_finds() -> None:
    """The batch's vectorized search finds, in each text, the figures a regular expression over its normalized
    words finds, with a slot where two words stand before (after) the figure."""
    import re

    from docsieve.normalize import normalize

    pattern = re.compile(r"(?<!\S)[0-9]+(?:ر[0-9]+)?(?: (?:[0-9]+(?:ر[0-9]+)?|ر(?= [0-9]+(?!\S))))*(?!\S)")
    texts = [d.body for d in fixture_documents("ar_figures_items.json").values()] + [
        LEAD,
        BRENT,
        f"{LEAD} {BRENT} {WTI}",
        "935ر6 و 3 ر 31 و ب253 2015",
    ]
    texts += ["12", "12 ab", "ab 12", "ab cd 1 2 ef gh", "1 ر ر 2", "ر 1", "1 ر", "٣٫٥ و 7,5", ""]
    for text, found in zip(texts, text_figures(texts), strict=True):
        words = normalize(text)
        expected = []
        for m in pattern.finditer(words):
            before, after = words[: m.start()].split(), words[m.end() :].split()
            expected.append((re.sub(r"\D", "", m.group()).lstrip("0") or "0", len(before) >= 2, len(after) >= 2))
        assert [(d, b != 0, a != 0) for d, b, a in found] == expected, text


def test_two_companies_notices_on_one_frame_differ_in_their_figures() -> None:
    """Zamil's notice (SR60m, SR1.00 a share, 10%) and Northern Cement's (SR108m, SR0.60, 6%): three figures in
    the same words, each different; their shingles overlap 0.41 Jaccard, 0.60 containment."""
    docs = fixture_documents("ar_figures_items.json")
    zamil, northern = docs[ZAMIL].body, docs[NORTHERN].body
    assert compare(figures(zamil), figures(northern))[0] == 3
    assert differ(zamil, northern)


def test_a_notice_and_its_prose_agree() -> None:
    """alriyadh's prose of Northern Cement's notice says "108 million riyals" and "0.60 riyal a share" in other
    words: no figure of one sits in the other's words with other digits."""
    docs = fixture_documents("ar_figures_items.json")
    assert not differ(docs[NORTHERN].body, docs[NORTHERN_PROSE].body)
    assert compare(figures(docs[NORTHERN].body), figures(docs[NORTHERN_PROSE].body))[0] == 0


def test_the_same_figures_written_otherwise_agree() -> None:
    """Decimals typed right to left and SPA's decimal mark (the same digits in another order), a price rounded (the
    same two leading digits): no disagreement."""
    report = f"{LEAD} {BRENT} {WTI}"
    rewritten = (
        report.replace("54.92", "92 54").replace("54.80", "80ر54").replace("48.57", "48.6").replace("48.45", "48 45")
    )
    assert compare(figures(report), figures(rewritten)) == (0, len(figures(rewritten)))
    assert not differ(report, rewritten)


def test_the_report_of_another_moment_differs() -> None:
    """The same sentences with the prices of another moment of the day: four figures in the same words differ."""
    report = f"{LEAD} {BRENT} {WTI}"
    later = report.replace("35 سنتا", "41 سنتا").replace("54.92", "54.86").replace("0947", "1402")
    later = later.replace("12 سنتا", "17 سنتا").replace("48.57", "48.64")
    assert compare(figures(report), figures(later))[0] >= 3
    assert differ(report, later)


def test_a_figure_or_two_updated_is_no_other_item() -> None:
    """A corrected time and price, or a price rounded (54.80 and 54.76 look alike): the same report."""
    report = f"{LEAD} {BRENT} {WTI}"
    corrected = report.replace("0947", "1015").replace("35 سنتا", "41 سنتا").replace("54.80", "54.76")
    assert compare(figures(report), figures(corrected)) == (2, len(figures(report)) - 2)
    assert not differ(report, corrected)


def test_two_cuts_of_one_report_on_one_frame_agree() -> None:
    """One outlet keeps the Brent sentence, another the WTI one: the same frame ("N cents to X dollars a barrel")
    around other figures. Only a figure between the same two words before *and* after counts: of the Brent
    sentence's, one (54.92 where the other has 48.57); by the words before alone, three (35, 54.92 and 54.80)."""
    brent, wti = figures(f"{LEAD} {BRENT}"), figures(f"{LEAD} {WTI}")
    assert compare(brent, wti)[0] == 1 and compare(wti, brent)[0] == 1
    assert not apart(brent, wti)


def test_a_roundup_that_carries_an_item_among_others_agrees() -> None:
    """A roundup puts another item's figures in the same frames too; the item's own are in it, so they agree."""
    docs = fixture_documents("ar_figures_items.json")
    roundup = f"{docs[ZAMIL].body} {docs[NORTHERN].body}"
    assert not differ(docs[ZAMIL].body, roundup) and not differ(docs[NORTHERN].body, roundup)


def test_trailing_zeros_do_not_make_another_figure() -> None:
    """0.5 and 0.50 have neither the same digits nor the same two leading ones: zeros apart, they are alike."""
    report = f"{LEAD} ارتفع المؤشر 0.5 بالمئة عند الافتتاح ثم 0.6 بالمئة ظهرا ثم 0.7 بالمئة عند الاغلاق"
    padded = report.replace("0.5", "0.50").replace("0.6", "0.60").replace("0.7", "0.70")
    assert compare(figures(report), figures(padded))[0] == 0 and not differ(report, padded)
    assert differ(report, report.replace("0.5", "0.8").replace("0.6", "0.9").replace("0.7", "0.4"))


def test_a_few_figures_among_many_that_agree_are_no_other_item() -> None:
    """Three figures of another moment in a long statistics text whose other figures all agree: under a quarter."""
    table = " ".join(f"وبلغ عدد الحالات في المنطقة {k} نحو {k * 37 + 11} حالة" for k in range(1, 13))
    updated = table.replace("نحو 48 ", "نحو 52 ").replace("نحو 85 ", "نحو 90 ").replace("نحو 122 ", "نحو 141 ")
    assert compare(figures(table), figures(updated))[0] == 3
    assert not differ(table, updated)


def test_a_figure_repeated_and_corrected_is_one_figure() -> None:
    """A correction of one count the text says three times ("5 new cases", "the 5 patients", "5 cases in 24
    hours"): one figure that disagrees, not three."""
    original = (
        "أعلنت وزارة الصحة اليوم تسجيل 5 إصابات جديدة بفيروس كورونا في مدينة الرياض ليرتفع إجمالي الإصابات منذ عام "
        "2012 إلى 1050 حالة توفي منها 459 شخصا. وأوضحت الوزارة أن المصابين الـ 5 يخضعون للعلاج وأن فرقها تتابع "
        "المخالطين الذين بلغ عددهم 120 شخصا. وبذلك تكون الوزارة قد سجلت 5 إصابات خلال 24 ساعة."
    )
    corrected = original.replace("5 إصابات", "6 إصابات").replace("الـ 5", "الـ 6")
    assert compare(figures(original), figures(corrected)) == (1, len({d for d, _, _ in figures(original)}) - 1)
    assert not differ(original, corrected)


def test_with_as_many_figures_both_ways_must_differ() -> None:
    """Two texts with as many figures: apart only if each differs from the other. Here one way three figures
    differ and the other way two (the other's 19 is found elsewhere in the first: "about 19 percent")."""
    report = f"{LEAD} {BRENT} {WTI}"
    other = report.replace("35 سنتا", "41 سنتا").replace("54.92", "54.86").replace("0947", "1402")
    other = other.replace("12 سنتا", "19 سنتا").replace("48.57", "48.64")
    one, two = figures(report), figures(other)
    assert len(one) == len(two) and compare(one, two)[0] == 3 and compare(two, one)[0] == 2
    assert not apart(one, two) and not apart(two, one)


def test_an_item_is_weighed_inside_a_longer_text_not_the_other_way() -> None:
    """An item and a roundup carrying it with another item on its frame: the item's figures all agree; the
    roundup's other item's would disagree, but the text with fewer figures is the one weighed."""
    docs = fixture_documents("ar_figures_items.json")
    zamil = figures(docs[ZAMIL].body)
    roundup = figures(f"{docs[ZAMIL].body} {docs[NORTHERN].body} {LEAD}")
    assert compare(zamil, roundup)[0] == 0 and compare(roundup, zamil)[0] >= 3
    assert not apart(zamil, roundup) and not apart(roundup, zamil)


def stored(pipeline: Pipeline) -> dict[str, Record]:
    return {r.source: r for r in pipeline.store.iter_records()}


def test_a_count_or_a_sum_is_shared_an_hour_a_year_or_a_date_is_not() -> None:
    """Two cuts of the Passports release share its count (363,378): a distinctive figure. Hours, temperatures and
    years (four digits or fewer) and the day's date (a figure ending in a year) are every item's of a day."""
    release = "وبلغ عدد المصحح وضعهم من الأشقاء اليمنيين 363378 شخصا حتى الساعة 1300"
    cut = "تصحيح أوضاع 363378 يمنيا في مراكز الجوازات"
    assert shared(figures(release), figures(cut))
    assert not shared(figures(release), figures("وبلغ عدد المصحح وضعهم 354863 شخصا حتى الساعة 1300"))
    hours = "درجة الحرارة 45 عند الساعة 1535 يوم 1436"
    assert not shared(figures(hours), figures(hours))  # nothing five digits long
    dated = "صدر الأمر في 9 / 10 / 1436 الموافق 25 / 7 / 2015"
    assert figures(dated) and not shared(figures(dated), figures(dated))


@pytest.mark.parametrize("check", [True, False])
def test_copies_of_a_templated_release_that_share_its_count_stay_copies(
    store: Store, settings: Settings, check: bool
) -> None:
    """Releases of one series on one template (70 words of boilerplate around 35 of their own and the day's count),
    twelve stored so that the weights count the boilerplate. X2 is X with its own words reordered (neighbours
    swapped): a copy by its shingles, the boilerplate, which the weights refuse; it keeps X's count, so it joins X's
    story. Y, the same template with its own words and its own count, stays apart. Without the figure check the
    weights refuse X2 as well. (X2 holds every word of X: ``template_same_words`` would keep it a copy by those
    words, figures or not; off here, as the figures are what is tested.)"""
    pipeline = Pipeline(store, settings.with_(figure_check=check, template_same_words=0))
    boilerplate = words(400, 70)

    def item(own: list[str], count: int) -> str:
        return " ".join([*boilerplate[:35], *own[:15], str(count), *own[15:], *boilerplate[35:]])

    def ingest(source: str, body: str) -> dict[str, Record]:
        pipeline.ingest([RawDocument(source=source, body=body, title=source)])
        return {r.source: r for r in pipeline.store.iter_records()}

    for i in range(12):  # one at a time: a batch weighs by the counts of what was stored before it
        ingest(f"item{i}", item(words(500 + i, 35), 300000 + 1111 * i))
    own = words(600, 35)
    ingest("X", item(own, 363378))
    ingest("Y", item(words(601, 35), 354863))
    swapped = [w for pair in zip(own[1::2], own[::2], strict=False) for w in pair] + own[len(own) // 2 * 2 :]
    found = ingest("X2", item(swapped, 363378))
    x, y, copy = found["X"], found["Y"], found["X2"]
    assert x.status is Status.CANONICAL and y.status is Status.CANONICAL and y.story_id != x.story_id
    assert copy.containment is not None or copy.status is Status.CANONICAL
    if not check:
        assert copy.status is Status.CANONICAL and copy.story_id != x.story_id
        return
    assert copy.status is Status.DUPLICATE and copy.duplicate_of == x.id
    assert copy.jaccard is not None and copy.jaccard < 0.8  # a copy by its shingles, not near-identical
    assert problems(pipeline.store, settings) == []


def test_a_date_written_year_first_is_not_shared() -> None:
    """The day's date is every item's, however it is written: year first too (a Hijri date in an official notice)."""
    for dated in ("صدر القرار بتاريخ 1436/10/07 الموافق", "نشر في 2015-07-23 على الموقع"):
        assert figures(dated) and not shared(figures(dated), figures(dated)), dated


def test_items_of_a_template_whose_footer_gives_a_number_stay_apart(store: Store, settings: Settings) -> None:
    """The templated releases above, each ending with the same footer, a telephone number ("for enquiries call
    920012345"): X and Y, two items with their own words and counts, share the number but no item; they stay apart,
    as they do without the footer (the weights refuse them). The number is in more stored texts than any one
    release's count (``COMMON_FIGURE_TEXTS``): boilerplate, not the item's."""
    pipeline = Pipeline(store, settings)
    boilerplate = words(400, 70)
    footer = ["للاستفسار", "الاتصال", "على", "الرقم", "920012345"]

    def item(own: list[str], count: int) -> str:
        return " ".join([*boilerplate[:35], *own[:15], str(count), *own[15:], *boilerplate[35:], *footer])

    for i in range(COMMON_FIGURE_TEXTS + 2):  # one at a time: a batch weighs by the counts stored before it
        pipeline.ingest([RawDocument(source=f"item{i}", body=item(words(500 + i, 35), 300000 + 1111 * i))])
    pipeline.ingest([RawDocument(source="X", body=item(words(600, 35), 363378))])
    pipeline.ingest([RawDocument(source="Y", body=item(words(601, 35), 354863))])
    found = stored(pipeline)
    assert found["Y"].status is Status.CANONICAL and found["Y"].story_id != found["X"].story_id


@pytest.mark.parametrize("check", [True, False])
def test_dividend_notices_of_two_companies_are_different_stories(store: Store, settings, check: bool) -> None:
    """Zamil's notice, then Northern Cement's: two stories, and a copy of Zamil's (a dateline added) joins
    Zamil's. Without the check Northern Cement's joins Zamil's story (containment 0.60)."""
    docs = fixture_documents("ar_figures_items.json")
    copy = RawDocument(
        source="zamil-copy",
        body="الرياض - واس: " + docs[ZAMIL].body,
        title="الزامل توزع أرباحا",
        published="2015-07-22 11:00:00",
    )
    pipeline = Pipeline(store, settings.with_(figure_check=check))
    pipeline.ingest([docs[ZAMIL], docs[NORTHERN], copy])
    found = stored(pipeline)
    zamil, northern = found[ZAMIL], found[NORTHERN]
    assert found["zamil-copy"].duplicate_of == zamil.id
    if check:
        assert northern.status is Status.CANONICAL and northern.story_id != zamil.story_id
    else:
        assert northern.duplicate_of == zamil.id and northern.method in (Method.NEAR, Method.CONTAINMENT)
    assert problems(pipeline.store, pipeline.settings) == []


def test_a_new_canonical_keeps_no_member_with_other_figures(pipeline: Pipeline) -> None:
    """X (a report whose prices are left out) and F, a copy of it with the morning's prices, make a story; then T,
    published before both, the same words with other prices, joins X and takes the story over: F, a copy of X but
    not of T's figures, leaves for a story of its own."""
    body = words(81, 200)
    report = f"{LEAD} {BRENT} {WTI}"
    other = report.replace("35 سنتا", "41 سنتا").replace("54.92", "54.86").replace("0947", "1402")
    other = other.replace("12 سنتا", "17 سنتا").replace("48.57", "48.64")
    bare = " ".join(w for w in report.split() if not any(c.isdigit() for c in w))
    text, early = " ".join(body), " ".join(edit(body, 82, 0.02))
    a_take_over_sheds_the_other_item(pipeline, f"{text} {bare}", f"{text} {report}", f"{early} {other}", "2015-07-24")


@pytest.mark.parametrize("raw", ["off", "on"])
def test_the_check_is_a_setting(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCSIEVE_FIGURE_CHECK", raw)
    assert Settings.from_env().figure_check is (raw == "on")


def test_a_take_over_reads_its_members_figures_at_once(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record with figures that takes over a story of many members reads their texts in one query, not one
    each; a later batch reads none of them again."""

    body, report = words(91, 120), f"{LEAD} {BRENT} {WTI}"
    copies = [
        RawDocument(
            source=f"m{i}",
            body=f"{' '.join(edit(body, 100 + i, 0.03))} {report}",
            title="m",
            published=f"2015-07-24T{10 + i // 60:02d}:{i % 60:02d}:00Z",
        )
        for i in range(40)
    ]
    pipeline.ingest(copies)
    calls = text_reads(monkeypatch)
    early = RawDocument(source="early", body=f"{' '.join(body)} {report}", title="e", published="2015-07-24T08:00:00Z")
    pipeline = Pipeline(pipeline.store, pipeline.settings)  # another process: it knows no record's figures yet
    pipeline.ingest([early])
    found = stored(pipeline)
    assert found["early"].status is Status.CANONICAL
    assert all(found[f"m{i}"].duplicate_of == found["early"].id for i in range(40))
    assert len(calls) <= 3, calls
    calls.clear()
    late = f"{' '.join(edit(body, 99, 0.03))} {report}"
    pipeline.ingest([RawDocument(source="late", body=late, title="l", published="2015-07-24T11:00:00Z")])
    assert stored(pipeline)["late"].duplicate_of == found["early"].id
    assert calls == [], calls  # the candidates' and the canonical's figures are known already


def test_a_roundup_split_reads_its_items_figures_at_once(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """A roundup R (items X and Y, each with figures) and ten copies of X in its story; Y arrives and R splits:
    the copies, each checked against the new stories' canonicals, have their texts read in one query, not one
    each."""

    fig_x = "وبلغت المبيعات 120 مليون ريال في الربع الاول وارتفعت الارباح 35 مليون ريال بنسبه 12 في المئه"
    fig_y = "وسجل المؤشر 7 450 نقطه عند الاغلاق وبلغت قيمه التداول 6 مليارات ريال من خلال 140 الف صفقه"
    x, y, z = words(30, 60), words(31, 60), words(32, 300)
    pipeline.ingest(
        [RawDocument(source="R", body=f"{' '.join(x)} {fig_x} {' '.join(z)} {' '.join(y)} {fig_y}", title="R")]
    )
    pipeline.ingest(
        [RawDocument(source=f"x{i}", body=f"{' '.join(edit(x, 100 + i, 0.03))} {fig_x}", title="x") for i in range(10)]
    )
    assert all(stored(pipeline)[f"x{i}"].story_id == stored(pipeline)["R"].story_id for i in range(10))
    calls = text_reads(monkeypatch)
    pipeline = Pipeline(pipeline.store, pipeline.settings)  # another process: nothing known yet
    pipeline.ingest([RawDocument(source="Y", body=f"{' '.join(y)} {fig_y}", title="Y")])
    found = stored(pipeline)
    assert len({found[f"x{i}"].story_id for i in range(10)}) == 1 and found["x0"].story_id != found["R"].story_id
    assert len(calls) <= 3 and max(calls) >= 10, calls


@pytest.mark.parametrize("check", [True, False])
def test_a_text_reworded_with_other_figures_is_no_rewrite(pipeline: Pipeline, check: bool) -> None:
    """Two texts of one opening (a sentence of three figures in it) and then the same 120 words in another order
    each: the later holds nearly every word of the earlier (a word score near 1) and their shingles share the
    opening (the rewrite stage's range, under the thresholds). The three figures differ, in the same words: with
    the check they are other items, two stories; without it a rewrite."""
    from docsieve.fingerprint import fingerprint_batch, jaccard_and_containment
    from tests.test_rewrites import background

    frame = "وبلغت قيمه المخالفات {} الف ريال وعدد الجولات {} جوله وعدد المفتشين {} مفتشا"
    head, tail, pool = words(600, 60), words(601, 10), words(602, 120)
    shuffled = [random.Random(seed).sample(pool, len(pool)) for seed in (603, 604)]
    first = f"{' '.join(head)} {frame.format(120, 45, 18)} {' '.join(tail)} {' '.join(shuffled[0])}"
    second = f"{' '.join(head)} {frame.format(95, 60, 23)} {' '.join(tail)} {' '.join(shuffled[1])}"
    settings = pipeline.settings.with_(figure_check=check)
    a, b = fingerprint_batch([first, second], settings)
    assert settings.rewrite_floor <= jaccard_and_containment(a.shingles, b.shingles)[1] < settings.containment_threshold
    pipeline = Pipeline(pipeline.store, settings)
    background(pipeline)
    pipeline.ingest(
        [RawDocument(source="first", body=first, title="a"), RawDocument(source="second", body=second, title="b")]
    )
    found = stored(pipeline)
    if check:
        assert found["second"].status is Status.CANONICAL and found["second"].story_id != found["first"].story_id
    else:
        assert found["second"].method is Method.REWRITE and found["second"].duplicate_of == found["first"].id


def test_a_batch_reads_its_candidates_figures_at_once(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty stored reports and, in another process, a batch of a copy of each: the stored reports' texts are
    read for their figures in one query, not one for each copy."""
    report = f"{LEAD} {BRENT} {WTI}"
    bodies = [f"{' '.join(words(300 + i, 120))} {report}" for i in range(20)]
    pipeline.ingest([RawDocument(source=f"o{i}", body=body, title="o") for i, body in enumerate(bodies)])
    calls = text_reads(monkeypatch)
    pipeline = Pipeline(pipeline.store, pipeline.settings)  # another process: it knows no record's figures yet
    pipeline.ingest([RawDocument(source=f"c{i}", body=f"عاجل: {body}", title="c") for i, body in enumerate(bodies)])
    found = stored(pipeline)
    assert all(found[f"c{i}"].duplicate_of == found[f"o{i}"].id for i in range(20))
    assert len(calls) <= 2 and max(calls) >= 20, calls
