"""Days that disagree (docsieve/dates.py): weekday slots, and the stories of templated items of different days
on real news (SaudiNewsNet, tests/fixtures/ar_dated_items.json: the health ministry's daily coronavirus count
of a Sunday, a Thursday and a Friday in sabq; two execution statements of 2015-07-31 on one template, one of
them in two alriyadh versions; the weather service's forecasts "for this day" of 07-24 and 07-25 in sabq and
the 07-25 one in alriyadh), both stores."""

from datetime import date
from pathlib import Path

import pytest

from docsieve.dates import BY_PUBLICATION, TODAY, dated, disagree, weekday_of
from docsieve.fingerprint import text_day_slots
from docsieve.models import Method, RawDocument, Record, Status
from docsieve.pipeline import Pipeline
from docsieve.published import published_date
from docsieve.store import Store
from tests.documents import fixture_documents, text_reads
from tests.story_checks import a_take_over_sheds_the_other_item, problems

FIXTURES = Path(__file__).parent / "fixtures"


def items() -> dict[str, RawDocument]:
    return fixture_documents("ar_dated_items.json")


def day_slots(text: str):
    return text_day_slots([text])[0]


def apart(a: str, b: str) -> bool:
    return disagree(day_slots(a), day_slots(b))


def test_the_same_words_around_another_weekday_disagree() -> None:
    assert apart("أعلنت وزارة الصحة اليوم السبت تسجيل حالة", "أعلنت وزارة الصحة اليوم الجمعة تسجيل حالة")
    # the slot after the day is enough: "this evening, Sunday, in the governorate" against "yesterday, Saturday"
    assert apart("مراسم الزواج مساء اليوم الأحد في محافظة تربة", "أقيمت مراسم الزواج مساء أمس السبت في محافظة تربة")
    assert apart("the ministry said on Monday that it had", "the ministry said on Tuesday that it had")


def test_a_copy_keeps_its_day_whatever_it_calls_it() -> None:
    """The next morning's paper says "yesterday, Thursday" where the wire said "today, Thursday"."""
    assert not apart("قالت الشركة اليوم الخميس إن الأرباح ارتفعت", "قالت الشركة أمس الخميس إن الأرباح ارتفعت")
    # clitics: "and on Thursday", "for Thursday"
    assert not apart("وقال إن الاجتماع سيعقد والخميس المقبل", "وقال إن الاجتماع سيعقد الخميس المقبل")
    assert day_slots("توقعات الطقس للخميس المقبل في الرياض") == day_slots("توقعات الطقس الخميس المقبل في الرياض")


def test_weekdays_side_by_side_are_one_slot() -> None:
    """ "Late on Friday/Saturday night" holds Friday: no disagreement with "on Friday"."""
    friday = "صادق مجلس نواب الشعب التونسي الجمعة على مشروع القانون"
    night = "صادق مجلس نواب الشعب التونسي في ساعة متأخرة من ليل الجمعة/السبت على مشروع القانون"
    assert not apart(friday, night)
    assert apart(friday.replace("الجمعة", "الأحد"), night)


def test_every_clitic_form_of_a_weekday_is_that_weekday() -> None:
    """wa- (and), fa-, bi- (on), their pairs, and li- + al- written ll-: each the day it names."""
    for form in ("الخميس", "والخميس", "فالخميس", "بالخميس", "وبالخميس", "فبالخميس", "للخميس", "وللخميس"):
        assert apart(f"وقال إنه {form} المقبل سيعقد", "وقال إنه الجمعة المقبل سيعقد"), form
        assert not apart(f"وقال إنه {form} المقبل سيعقد", "وقال إنه الخميس المقبل سيعقد"), form


def test_slots_stop_at_a_documents_edges_in_a_batch() -> None:
    """A weekday that opens or closes a text has no slot on that side: the words of the text before or after it
    in a batch are no context of it."""
    texts = ["كلمة أولى ثانية", "الجمعة بعدها كلمتان", "كلمتان قبلها الخميس", "ثم نص آخر", "الأحد"]
    together = text_day_slots(texts)
    assert together == [text_day_slots([t])[0] for t in texts]
    assert [len(s) for s in together] == [0, 1, 1, 0, 0]


def test_texts_that_share_no_slot_do_not_disagree() -> None:
    assert day_slots("لا أيام في هذا النص على الإطلاق") == {}
    assert not apart("أعلنت الوزارة اليوم السبت تسجيل حالة", "لا أيام في هذا النص على الإطلاق")
    # different days in different words: a story that names two days, a copy that keeps one of them
    assert not apart("وصل الوفد يوم الأحد وغادر يوم الثلاثاء إلى القاهرة", "وغادر يوم الثلاثاء إلى القاهرة")


def stored(pipeline: Pipeline) -> dict[str, Record]:
    return {r.source: r for r in pipeline.store.iter_records()}


@pytest.mark.parametrize("check", [True, False])
def test_daily_counts_of_different_days_are_different_stories(store: Store, settings, check: bool) -> None:
    """The ministry's count of a Sunday, a Thursday and a Friday, in the same words: three stories. Without
    the check the Friday count (the Sunday one's very words but the day) joins the Sunday count's story."""
    docs = items()
    daily = [docs["snn-2015-07-26-1450"], docs["snn-2015-07-31-2126"], docs["snn-2015-07-31-2201"]]
    pipeline = Pipeline(store, settings.with_(weekday_check=check))
    pipeline.ingest(daily)
    found = stored(pipeline)
    sunday, friday = found["snn-2015-07-26-1450"], found["snn-2015-07-31-2201"]
    if check:
        assert len({found[d.source].story_id for d in daily}) == 3
        assert all(r.status is Status.CANONICAL for r in found.values())
    else:
        assert friday.duplicate_of == sunday.id and friday.method is Method.NEAR


def test_execution_statements_of_two_convicts_stay_apart_and_a_copy_joins(pipeline: Pipeline) -> None:
    """Thursday's statement (a Syrian smuggler) in two alriyadh versions ("today, Thursday" and "yesterday,
    Thursday") is one story; Friday's (a Pakistani smuggler), 0.57 Jaccard with it on the same template, is
    another."""
    docs = items()
    pipeline.ingest([docs["snn-2015-07-31-1024"], docs["snn-2015-07-31-659"], docs["snn-2015-07-31-1227"]])
    found = stored(pipeline)
    thursday, friday, copy = (found[f"snn-2015-07-31-{i}"] for i in (1024, 659, 1227))
    assert copy.story_id == thursday.story_id and copy.method in (Method.NEAR, Method.CONTAINMENT)
    assert friday.story_id != thursday.story_id and friday.status is Status.CANONICAL
    assert problems(pipeline.store, pipeline.settings) == []


def test_a_new_canonical_keeps_no_member_of_another_day(pipeline: Pipeline) -> None:
    """A count that names no day (X) and its copy that says Friday (F) make a story; then T, published before
    both, the same words with Thursday, joins X and takes the story over: F, a copy of X but not of T's day,
    leaves for a story of its own."""
    friday = items()["snn-2015-07-31-2201"].body
    undated = friday.replace("، اليوم الجمعة،", "")
    assert day_slots(undated) == {} and "اليوم الجمعة" in friday
    thursday = friday.replace("الجمعة", "الخميس")
    a_take_over_sheds_the_other_item(pipeline, undated, friday, thursday, "2015-07-31")


@pytest.mark.parametrize("raw", ["off", "on"])
def test_the_check_is_a_setting(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from docsieve.settings import Settings

    monkeypatch.setenv("DOCSIEVE_WEEKDAY_CHECK", raw)
    assert Settings.from_env().weekday_check is (raw == "on")


def test_a_chain_member_is_checked_against_the_canonicals_day_too(pipeline: Pipeline) -> None:
    """C says Friday; M, a copy of C, cut before that sentence, joins; R, a copy of M that says Thursday in C's
    words and only at the chain floor of C, is no member: its day is not the canonical's."""
    from tests.test_stories import edit
    from tests.test_stories import words as random_words

    base = random_words(61, 240)
    friday, thursday = "أعلنت الوزارة اليوم الجمعة تسجيل حالات جديدة", "أعلنت الوزارة اليوم الخميس تسجيل حالات جديدة"
    m = edit(base, 62, 0.10)
    r = edit(m, 63, 0.10)
    pipeline.ingest(
        [
            RawDocument(source="C", body=" ".join(base) + " " + friday, title="C"),
            RawDocument(source="M", body=" ".join(m), title="M"),
        ]
    )
    pipeline.ingest([RawDocument(source="R", body=" ".join(r) + " " + thursday, title="R")])
    found = stored(pipeline)
    assert found["M"].duplicate_of == found["C"].id
    assert found["R"].story_id != found["C"].story_id
    pipeline.ingest([RawDocument(source="R2", body=" ".join(r) + " " + friday, title="R2")])  # the same, on Friday
    assert stored(pipeline)["R2"].story_id == found["C"].story_id
    assert problems(pipeline.store, pipeline.settings) == []


def test_a_take_over_reads_its_members_days_at_once(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dated record that takes over a story of many members reads their texts in one query, not one each; a
    later batch reads none of them again."""
    from tests.test_stories import edit
    from tests.test_stories import words as random_words

    base = random_words(71, 120)
    friday = "أعلنت الوزارة اليوم الجمعة تسجيل حالات جديدة"
    copies = [
        RawDocument(
            source=f"m{i}",
            body=" ".join(edit(base, 100 + i, 0.03)) + " " + friday,
            title="m",
            published=f"2015-07-31T{10 + i // 60:02d}:{i % 60:02d}:00Z",
        )
        for i in range(40)
    ]
    pipeline.ingest(copies)
    calls = text_reads(monkeypatch)
    early = RawDocument(source="early", body=" ".join(base) + " " + friday, title="e", published="2015-07-30T09:00:00Z")
    pipeline = Pipeline(pipeline.store, pipeline.settings)  # another process: it knows no record's days yet
    pipeline.ingest([early])
    found = stored(pipeline)
    assert found["early"].status is Status.CANONICAL and found["m0"].duplicate_of == found["early"].id
    assert len(calls) <= 2, calls
    calls.clear()
    pipeline.ingest([RawDocument(source="late", body=" ".join(edit(base, 99, 0.03)) + " " + friday, title="l")])
    assert stored(pipeline)["late"].duplicate_of == found["early"].id
    assert calls == [], calls  # the candidates' and the canonical's slots are known already


WEDNESDAY, THURSDAY = "2015-07-22T09:00:00Z", "2015-07-23T09:00:00Z"
FORECAST = "توقعت الرئاسة العامة للأرصاد وحماية البيئة في تقريرها عن حالة الطقس لهذا اليوم طقسا شديد الحرارة"


def test_this_day_is_the_day_of_publication() -> None:
    found = day_slots(FORECAST)
    assert found and all(days == frozenset((TODAY,)) for days in found.values())
    assert weekday_of(date(2015, 7, 22)) == 4 and weekday_of(date(2015, 7, 25)) == 0  # 0 is Saturday
    assert set(dated(found, WEDNESDAY).values()) == {frozenset((BY_PUBLICATION + 4,))}  # Wednesday, by its publication
    assert disagree(dated(found, WEDNESDAY), dated(found, THURSDAY))
    assert not disagree(dated(found, WEDNESDAY), dated(found, "2015-07-22 20:00:00"))
    assert dated(found, None) == {}  # no publication time: nothing to say of the day


def test_the_day_of_publication_is_the_publishers_own() -> None:
    """Read from the ``published`` text where it was written: 01:30 in Riyadh is that day, though in UTC it is the
    day before; a time without a zone is that day; epoch seconds are UTC's."""
    assert published_date("2015-07-25T01:30:00+03:00") == date(2015, 7, 25)
    assert published_date("2015-07-25 01:30:00") == date(2015, 7, 25)
    assert published_date("Sat, 25 Jul 2015 01:30:00 +0300") == date(2015, 7, 25)
    assert published_date("1437780600") == date(2015, 7, 24)  # 2015-07-24 23:30 UTC
    assert published_date("not a date") is None and published_date(None) is None


def test_for_this_day_across_documents_of_a_batch_is_no_slot() -> None:
    """ "لهذا" closing one text and "اليوم" opening the next are no "for this day"."""
    texts = ["تقرير عن حالة الطقس لهذا", "اليوم طقسا شديد الحرارة على شرق المملكة", FORECAST]
    together = text_day_slots(texts)
    assert together == [text_day_slots([t])[0] for t in texts]
    assert together[0] == {} and together[1] == {} and together[2]


def test_a_weekday_named_with_this_day_is_taken_over_the_publication() -> None:
    named = day_slots("قال المتحدث في تقريره لهذا اليوم الخميس إن الوزارة")
    assert set(named.values()) == {frozenset((TODAY, 5))}
    assert set(dated(named, WEDNESDAY).values()) == {frozenset((5,))}


def test_only_for_this_day_names_the_day_of_publication() -> None:
    """ "The National Day", "the World Day of ...", "until today", the newspaper al-Yaum; and "this day" in a quote
    or a royal order reprinted the next day: no slot."""
    for text in (
        "وقال الرئيس الكيني قبيل الزيارة إلى أي حد ننتظر هذا اليوم بفارغ الصبر ونأمل",
        "ونظرا لعزمنا على السفر خارج المملكة هذا اليوم التاسع من شهر شوال",
        "تحتفل المملكة اليوم الوطني الخامس والثمانين في أنحاء البلاد",
        "يصادف اليوم العالمي لمكافحة المخدرات في كل عام",
        "وقال لصحيفة اليوم إن العمل مستمر حتى نهاية الشهر",
    ):
        assert day_slots(text) == {}, text


def test_forecasts_of_consecutive_days_are_different_stories(store: Store, settings) -> None:
    """sabq's forecasts of Friday 07-24 and Saturday 07-25 (Jaccard 0.56 on the same template) are two stories;
    alriyadh's Saturday forecast, the same text as sabq's, shares that story (and leads it: published first)."""
    docs = items()
    pipeline = Pipeline(store, settings)
    pipeline.ingest([docs["snn-2015-07-24-2053"], docs["snn-2015-07-25-1514"], docs["snn-2015-07-25-780"]])
    found = stored(pipeline)
    friday, saturday, copy = (found[s] for s in ("snn-2015-07-24-2053", "snn-2015-07-25-1514", "snn-2015-07-25-780"))
    assert friday.status is Status.CANONICAL and saturday.story_id != friday.story_id
    assert copy.story_id == saturday.story_id and saturday.duplicate_of == copy.id
    assert problems(pipeline.store, pipeline.settings) == []


def test_a_forecast_without_a_publication_time_names_no_day(store: Store, settings) -> None:
    """Undated, "for this day" says nothing: Saturday's forecast with no publication time is as alike to Friday's
    (dated) as their words make them, a copy."""
    docs = items()
    friday, saturday = docs["snn-2015-07-24-2053"], docs["snn-2015-07-25-1514"]
    undated = RawDocument(source=saturday.source, body=saturday.body, title=saturday.title, outlet=saturday.outlet)
    pipeline = Pipeline(store, settings)
    pipeline.ingest([friday, undated])
    found = stored(pipeline)
    assert found[saturday.source].duplicate_of == found[friday.source].id


def test_a_forecast_published_after_local_midnight_is_of_that_day(store: Store, settings) -> None:
    """Saturday's forecast published at 01:30 Riyadh time (Friday 22:30 UTC) is Saturday's, apart from Friday's,
    in one process and when the stored Friday forecast is read again by another."""
    docs = items()
    friday, saturday = docs["snn-2015-07-24-2053"], docs["snn-2015-07-25-1514"]
    early = RawDocument(
        source=saturday.source, body=saturday.body, title=saturday.title, published="2015-07-25T01:30:00+03:00"
    )
    late_friday = RawDocument(
        source=friday.source, body=friday.body, title=friday.title, published="2015-07-24T23:30:00+03:00"
    )
    Pipeline(store, settings).ingest([late_friday])
    pipeline = Pipeline(store, settings)  # a fresh process: Friday's slots read from the store
    pipeline.ingest([early])
    found = stored(pipeline)
    assert found[saturday.source].status is Status.CANONICAL
    assert found[saturday.source].story_id != found[friday.source].story_id


def test_a_stored_forecasts_day_comes_from_its_publication(store: Store, settings) -> None:
    """The stored record's slots are made again from its text and its publication time, as the new one's are
    from its fingerprint: the next day's forecast, ingested alone later, stays apart."""
    docs = items()
    Pipeline(store, settings).ingest([docs["snn-2015-07-24-2053"]])
    pipeline = Pipeline(store, settings)  # a fresh process: nothing cached
    pipeline.ingest([docs["snn-2015-07-25-1514"]])
    found = stored(pipeline)
    assert found["snn-2015-07-25-1514"].status is Status.CANONICAL
    friday_id = found["snn-2015-07-24-2053"].id
    with pipeline.store.writing() as txn:
        (slots,) = txn.day_slots([friday_id]).values()
    assert set(slots.values()) == {frozenset((BY_PUBLICATION + 6,))}  # Friday, from 2015-07-24


def test_a_day_named_by_publication_alone_does_not_part_a_reprint() -> None:
    """Compared without the days of publication (``by_publication=False``, a reprint), "for this day" dated says
    nothing, while a weekday the texts name still parts them."""
    forecast = day_slots(FORECAST)
    wednesday, thursday = dated(forecast, WEDNESDAY), dated(forecast, THURSDAY)
    assert disagree(wednesday, thursday) and not disagree(wednesday, thursday, by_publication=False)
    named = day_slots("قال المتحدث في تقريره لهذا اليوم الخميس إن الوزارة")
    other = day_slots("قال المتحدث في تقريره لهذا اليوم الجمعة إن الوزارة")
    assert disagree(dated(named, WEDNESDAY), dated(other, WEDNESDAY), by_publication=False)
    # a day named in the text and the same day by publication agree, in the same slot
    named_thursday = day_slots(FORECAST.replace("لهذا اليوم", "لهذا اليوم الخميس"))
    assert set(named_thursday) == set(forecast)
    assert not disagree(dated(named_thursday, THURSDAY), thursday)
    assert disagree(dated(named_thursday, WEDNESDAY), wednesday)  # Thursday named, Wednesday published


def test_a_print_reprint_of_yesterdays_forecast_joins_it_and_the_next_forecast_stays_apart(
    store: Store, settings
) -> None:
    """A paper reprints Friday's forecast on Saturday, "for this day" and all, cut to its first half or so (as
    alriyadh reprints alweeam's, 0.96 inside it): a copy of Friday's. Saturday's own forecast, on the same template
    with other weather, stays apart from both."""
    docs = items()
    friday, saturday = docs["snn-2015-07-24-2053"], docs["snn-2015-07-25-1514"]
    kept = " ".join(friday.body.split()[:80])  # its first 80 of 141 words
    reprint = RawDocument(source="reprint", body=kept, title=friday.title, published="2015-07-25T06:00:00+03:00")
    pipeline = Pipeline(store, settings)
    pipeline.ingest([friday, reprint, saturday])
    found = stored(pipeline)
    assert found["reprint"].duplicate_of == found[friday.source].id
    assert found[saturday.source].status is Status.CANONICAL
    assert problems(pipeline.store, pipeline.settings) == []


def test_one_line_forecasts_of_two_days_are_no_reprint_however_alike(store: Store, settings) -> None:
    """Containment says nothing of a text under ``min_containment_shingles``: a one-line "for this day" of
    Thursday inside Friday's is another day's item, not a reprint."""
    line = "توقعت الأرصاد لهذا اليوم طقسا حارا على الرياض"
    thursday = RawDocument(source="thursday", body=line, published=THURSDAY)
    friday = RawDocument(source="friday", body=f"{line} والشرقية", published="2015-07-24T09:00:00Z")
    pipeline = Pipeline(store, settings)
    pipeline.ingest([thursday, friday])
    found = stored(pipeline)
    assert found["friday"].status is Status.CANONICAL and found["thursday"].status is Status.CANONICAL
