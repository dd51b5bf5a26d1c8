"""Decisions end to end through the pipeline and a real SQLite store."""

import re

import pytest
import sqlalchemy as sa

from docsieve.models import Method, RawDocument, Status
from docsieve.pipeline import Pipeline
from docsieve.settings import Settings
from docsieve.store import Store, Transaction
from tests.conftest import fixture_text, ingest_texts

ARABIC = fixture_text("ar_near_a.txt")
LONG = fixture_text("ar_long_article.txt")  # image line, no headline, 15 paragraphs
ENGLISH = fixture_text("en_article.txt")


def spelling_variant(text: str) -> str:
    table = str.maketrans({"ا": "أ", "ه": "ة", "ي": "ى", "0": "٠", "1": "١", "2": "٢", "5": "٥"})
    lines = text.splitlines()
    return "\n".join(lines[:2] + [line.translate(table) + " ـ" for line in lines[2:]])


def test_first_is_canonical_and_exact_copy_links_to_it(pipeline: Pipeline) -> None:
    records = ingest_texts(pipeline, ("a.txt", ARABIC), ("b.txt", ARABIC))
    assert records["a.txt"].status is Status.CANONICAL and records["a.txt"].duplicate_of is None
    copy = records["b.txt"]
    assert (copy.status, copy.duplicate_of, copy.method, copy.similarity) == (
        Status.DUPLICATE,
        records["a.txt"].id,
        Method.EXACT,
        1.0,
    )


def test_arabic_spelling_variant_is_an_exact_copy(pipeline: Pipeline) -> None:
    variant = spelling_variant(ARABIC)
    assert variant != ARABIC
    records = ingest_texts(pipeline, ("a.txt", ARABIC), ("variant.txt", variant))
    assert records["variant.txt"].method is Method.EXACT
    assert records["variant.txt"].content_hash == records["a.txt"].content_hash
    assert records["variant.txt"].text != records["a.txt"].text  # the record keeps its own clean text


def typed_on(keyboard: str, text: str) -> str:
    """The Arabic text as typed on a Persian, Urdu or Kurdish keyboard: their yeh, kaf, heh, teh marbuta."""
    common = {"ي": "ی", "ى": "ی", "ك": "ک"}
    if keyboard == "persian":
        return text.translate(str.maketrans(common))
    if keyboard == "urdu":
        return text.translate(str.maketrans({**common, "ه": "ہ", "ة": "ۃ"}))
    # Kurdish: ھ where heh joins the next letter, ە at the end of a word.
    text = re.sub(r"[هة](?!\w)", "ە", text)
    return text.translate(str.maketrans({**common, "ه": "ھ"}))


# Cyrillic and Greek letters for the Latin ones they look like.
LOOKALIKE_OF = str.maketrans("aceopxyijsABEHKMOPCTXNIZ", "асеорхуіјѕАВЕНКМОРСТХΝΙΖ")


def with_lookalikes(text: str) -> str:
    """Every Latin letter that has a Cyrillic or Greek look-alike gets it, but the first of each word."""
    return re.sub(r"\b(\w)(\w+)", lambda m: m[1] + m[2].translate(LOOKALIKE_OF), text)


def with_fillers(text: str) -> str:
    """Invisible fillers between the letters of every word, cycling through the kinds."""
    fillers = iter(["\u3164", "\uffa0", "\u2800", "\u115f", "\u1160"] * len(text))
    return re.sub(r"(?<=\w\w)(?=\w)", lambda _: next(fillers), text)


@pytest.mark.parametrize("keyboard", ["persian", "urdu", "kurdish"])
def test_arabic_typed_on_another_keyboard_is_an_exact_copy(pipeline: Pipeline, keyboard: str) -> None:
    copy = typed_on(keyboard, ARABIC)
    assert copy != ARABIC
    records = ingest_texts(pipeline, ("a.txt", ARABIC), ("copy.txt", copy))
    assert records["copy.txt"].status is Status.DUPLICATE and records["copy.txt"].method is Method.EXACT
    assert records["copy.txt"].duplicate_of == records["a.txt"].id
    assert records["copy.txt"].text != records["a.txt"].text  # the record keeps its own letters


@pytest.mark.parametrize(
    ("original", "disguise"),
    [(ENGLISH, with_lookalikes), (ENGLISH, with_fillers), (ARABIC, with_fillers)],
    ids=["lookalikes", "fillers-en", "fillers-ar"],
)
def test_disguised_copy_is_an_exact_copy(pipeline: Pipeline, original: str, disguise) -> None:
    copy = disguise(original)
    assert copy != original
    records = ingest_texts(pipeline, ("a.txt", original), ("copy.txt", copy))
    assert records["copy.txt"].status is Status.DUPLICATE and records["copy.txt"].method is Method.EXACT
    assert records["copy.txt"].duplicate_of == records["a.txt"].id


def test_republished_wire_copy_is_near(pipeline: Pipeline) -> None:
    records = ingest_texts(pipeline, ("a.txt", ARABIC), ("b.txt", fixture_text("ar_near_b.txt")))
    b = records["b.txt"]
    assert b.status is Status.DUPLICATE and b.duplicate_of == records["a.txt"].id
    assert b.method is Method.NEAR and 0.5 <= b.similarity < 1.0


def test_a_batchs_own_copies_are_verified_by_the_pipelines_settings_not_the_preparings(pipeline: Pipeline) -> None:
    """A caller's ``Preparing`` may be made with other settings: the batch's own pairs it verified by them are
    verified again by the store's pipeline, whose thresholds decide."""
    from docsieve.prepare import Preparing

    strict = pipeline.settings.with_(jaccard_threshold=0.99, containment_threshold=0.99)
    docs = [RawDocument("a.txt", ARABIC), RawDocument("b.txt", fixture_text("ar_near_b.txt"))]
    with Preparing(docs, strict) as peek:
        ((_, _, _, within),) = list(peek)
    assert within.passed == {}  # by the strict thresholds, no copy
    with Preparing(docs, strict) as preparing:
        pipeline.ingest(preparing)
    with pipeline.store.reading() as txn:
        statuses = dict(txn.conn.execute(sa.text("SELECT source, status FROM records")).all())
    assert statuses == {"a.txt": "canonical", "b.txt": "duplicate"}


def test_excerpt_is_caught_by_containment(pipeline: Pipeline) -> None:
    records = ingest_texts(
        pipeline,
        ("long.txt", fixture_text("ar_excerpt_long.txt")),
        ("short.txt", fixture_text("ar_excerpt_short.txt")),
    )
    short = records["short.txt"]
    assert short.status is Status.DUPLICATE and short.method is Method.CONTAINMENT
    assert short.duplicate_of == records["long.txt"].id and short.similarity >= 0.55


def test_truncated_and_reheadlined_copies(pipeline: Pipeline) -> None:
    lines = LONG.splitlines()
    truncated = "\n".join(lines[:-6])
    reheadlined = "\n".join(
        [
            "![](http://other/img.jpg)",
            "عنوان مختلف تماما للخبر نفسه",
            "طهران - (وكالات): " + lines[1],
            *lines[2:],
        ]
    )
    records = ingest_texts(pipeline, ("a.txt", LONG), ("cut.txt", truncated), ("retitled.txt", reheadlined))
    for name in ("cut.txt", "retitled.txt"):
        assert records[name].status is Status.DUPLICATE and records[name].duplicate_of == records["a.txt"].id
    assert records["retitled.txt"].title == "عنوان مختلف تماما للخبر نفسه"


def test_templated_items_and_unrelated_stay_canonical(pipeline: Pipeline) -> None:
    records = ingest_texts(
        pipeline,
        ("t1.txt", fixture_text("ar_template_a.txt")),
        ("t2.txt", fixture_text("ar_template_b.txt")),
        ("o.txt", fixture_text("ar_other.txt")),
        ("en.txt", fixture_text("en_article.txt")),
    )
    assert {r.status for r in records.values()} == {Status.CANONICAL}
    assert records["en.txt"].language == "en" and records["o.txt"].language == "ar"


def test_copy_of_a_copy_points_to_the_canonical_record(pipeline: Pipeline) -> None:
    lines = LONG.splitlines()
    first = "\n".join(lines[:8])
    second = "\n".join(lines[:12])  # contains the first
    third = "\n".join(lines[5:])  # shares nothing with the first beyond a few lines, much with the second
    records = ingest_texts(pipeline, ("1.txt", first), ("2.txt", second), ("3.txt", third))
    assert records["2.txt"].duplicate_of == records["1.txt"].id
    assert records["3.txt"].duplicate_of == records["1.txt"].id


def test_reingest_creates_nothing_and_a_second_run_finds_copies(store: Store, settings) -> None:
    Pipeline(store, settings).ingest([RawDocument("a.txt", ARABIC), RawDocument("-", "نص قصير من الدخل القياسي")])
    again = Pipeline(Store(settings.store), settings).ingest(
        [RawDocument("a.txt", ARABIC), RawDocument("-", "نص قصير من الدخل القياسي")]
    )
    assert (again.read, again.unchanged, again.new) == (2, 2, 0)
    later = Pipeline(Store(settings.store), settings).ingest([RawDocument("b.txt", fixture_text("ar_near_b.txt"))])
    assert later.near == 1
    assert store.counts() == {"canonical": 2, "duplicate": 1}


def test_rejections_are_stored_and_the_batch_goes_on(pipeline: Pipeline) -> None:
    summary = pipeline.ingest(
        [
            RawDocument("empty.txt", "  \n "),
            RawDocument("dots.txt", "... !!! ؟؟"),
            RawDocument("a.txt", ARABIC),
        ]
    )
    assert (summary.rejected, summary.new) == (2, 1)
    rejected = {r.source: r for r in pipeline.store.iter_records(Status.REJECTED)}
    assert "no article text" in rejected["empty.txt"].reason
    assert "no words left" in rejected["dots.txt"].reason
    again = pipeline.ingest([RawDocument("empty.txt", "  \n ")])
    assert again.unchanged == 1 and again.rejected == 0


def test_copies_within_one_batch_and_across_batches(store: Store, settings) -> None:
    small_batches = settings.with_(batch_size=2)
    docs = [RawDocument(f"{i}.txt", ARABIC if i % 2 == 0 else fixture_text("ar_near_b.txt")) for i in range(6)]
    summary = Pipeline(store, small_batches).ingest(docs)
    # 0: canonical; 1: near copy of 0; 2-5: the same texts from other sources, so exact copies.
    assert (summary.new, summary.exact, summary.near) == (1, 4, 1)
    roots = {r.duplicate_of or r.id for r in store.iter_records()}
    assert len(roots) == 1


def test_a_new_process_decides_by_the_index_files_without_loading_the_store(tmp_path, monkeypatch) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path / 'store.db'}")
    first = Pipeline(Store(settings.store), settings)
    originals = [(f"{i}.txt", f"{LONG}\nخبر رقم {i} " * 2) for i in range(3)] + [("en.txt", ENGLISH)]
    ingest_texts(first, *originals)
    first.close()
    read: list[int] = []
    rows = Transaction.index_rows

    def counted(self, after_seq):
        for row in rows(self, after_seq):
            read.append(row[0])
            yield row

    monkeypatch.setattr(Transaction, "index_rows", counted)
    second = Pipeline(Store(settings.store), settings)  # as a new process would
    records = ingest_texts(second, ("copy.txt", ENGLISH.replace("\n\n", "\nRead more at example.com\n\n", 1)))
    second.close()
    assert read == []  # the store's rows were never read: the files held them all
    with Store(settings.store).reading() as txn:  # and the copy was verified on shingles made from the text
        assert txn.conn.execute(sa.text("SELECT count(*) FROM records WHERE shingles IS NOT NULL")).scalar() == 0
    assert records["copy.txt"].status is Status.DUPLICATE
    assert records["copy.txt"].duplicate_of == records["en.txt"].id


def test_what_a_process_keeps_of_stored_records_is_read_once_and_bounded() -> None:
    """Stored texts' words and weekday slots never change: a record read from the store once is answered from
    the process's memory after, the batch's own documents too, and past its size the older half goes."""
    from docsieve.pipeline import _Kept

    reads: list[set[str]] = []

    def read(ids: set[str]) -> dict[str, int]:
        reads.append(set(ids))
        return {i: int(i[1:]) for i in ids if i != "r9"}  # r9: nothing stored (taken down)

    kept: _Kept[int] = _Kept(4)
    of = kept.reader({"own": -1}, read)
    assert of(["own", "r1", "r2", "r9"]) == {"own": -1, "r1": 1, "r2": 2}
    assert of(["r1", "r2", "own"]) == {"own": -1, "r1": 1, "r2": 2} and reads == [{"r1", "r2", "r9"}]
    assert of(["r9"]) == {} and reads[-1] == {"r9"}  # what the store does not have is asked again
    of(["r3", "r4"])
    assert len(kept.items) <= 4 and "r4" in kept.items and "own" not in kept.items


LOST_TEXTS = ["ar_near_a.txt", "ar_other.txt", "ar_template_a.txt", "en_article.txt", "ar_long_article.txt"]


def _index_files_lost(tmp_path, monkeypatch) -> Pipeline:
    """A SQLite store of five articles whose index files were deleted, and a pipeline opened on it that catches an
    index up first when it is more than two records behind."""
    import shutil

    from docsieve.index import index_directory, open_index

    settings = Settings(store=f"sqlite:///{tmp_path / 's.db'}")
    first = Pipeline(Store(settings.store), settings, open_index(settings))
    first.ingest([RawDocument(name, fixture_text(name)) for name in LOST_TEXTS])
    first.close()
    directory = index_directory(settings)
    assert directory is not None and any(directory.iterdir())
    shutil.rmtree(directory)
    monkeypatch.setattr("docsieve.pipeline.LAG_CAUGHT_UP_FIRST", 2)
    return Pipeline(Store(settings.store), settings, open_index(settings))


def test_an_embedded_index_that_lost_its_files_is_rebuilt_before_a_batch_reads_the_gap(tmp_path, monkeypatch) -> None:
    """Index files deleted (or a store copied without them): the next batch rebuilds them from the store in chunks,
    rather than read every stored record into its index of records stored since the lookup, held in memory."""
    from docsieve.index import SegmentIndex

    pipeline = _index_files_lost(tmp_path, monkeypatch)
    held: list[int] = []
    catch_up = SegmentIndex.catch_up

    def counted(index: SegmentIndex, store) -> None:
        catch_up(index, store)
        if index is not pipeline.index:
            held.append(index.size()[0])

    try:
        monkeypatch.setattr(SegmentIndex, "catch_up", counted)
        pipeline.ingest([RawDocument("b.txt", fixture_text("ar_near_b.txt"))])
        records = {r.source: r for r in pipeline.store.iter_records()}
        assert records["b.txt"].story_id == records["ar_near_a.txt"].story_id
        assert held == [0]  # the batch's own index of records stored since its lookup: none
        assert pipeline.index.size()[0] == len(LOST_TEXTS) + 1
    finally:
        pipeline.close()


def test_the_embedded_files_are_rebuilt_under_the_write_lock(tmp_path, monkeypatch) -> None:
    import sqlite3

    from docsieve.index import SegmentIndex

    pipeline = _index_files_lost(tmp_path, monkeypatch)
    path = tmp_path / "s.db"
    locked: list[bool] = []
    files = SegmentIndex._catch_up_files

    def checked(index, store, flush: bool = False) -> None:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            locked.append(False)
        except sqlite3.OperationalError:
            locked.append(True)
        finally:
            other.close()
        files(index, store, flush)

    try:
        monkeypatch.setattr(SegmentIndex, "_catch_up_files", checked)
        pipeline.ingest([RawDocument("b.txt", fixture_text("ar_near_b.txt"))])
        assert locked and all(locked), locked
    finally:
        pipeline.close()


def test_on_postgresql_a_far_behind_index_is_read_with_the_store_lock_free(
    postgres_server_url: str, monkeypatch
) -> None:
    """A process's own index (no shared one) reads the store's gap before taking the write lock, as every batch
    catches up before it: other workers are not held up while a new one reads the store."""
    from docsieve.index import SegmentIndex
    from docsieve.store import WRITE_LOCK
    from tests.services import postgres_database

    with postgres_database(postgres_server_url) as url:
        settings = Settings(store=url)
        first = Pipeline(Store(url), settings)
        first.ingest([RawDocument(name, fixture_text(name)) for name in LOST_TEXTS])
        first.close()
        monkeypatch.setattr("docsieve.pipeline.LAG_CAUGHT_UP_FIRST", 2)
        pipeline = Pipeline(Store(url), settings)  # a new process: its in-memory index holds nothing
        other = sa.create_engine(url)
        free: list[bool] = []
        catch_up = SegmentIndex.catch_up

        def checked(index, store) -> None:
            if index is pipeline.index and store.last_seq() - index.last_seq > 2:
                with other.connect() as conn:
                    free.append(bool(conn.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(WRITE_LOCK)))))
                    conn.rollback()
            catch_up(index, store)

        try:
            monkeypatch.setattr(SegmentIndex, "catch_up", checked)
            pipeline.ingest([RawDocument("b.txt", fixture_text("ar_near_b.txt"))])
            assert free and all(free), free
        finally:
            pipeline.close()
            other.dispose()
