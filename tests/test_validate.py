"""Values a store cannot hold (NUL, lone surrogates, a value longer than its column) cost only their own
document, and both stores keep the same records of the same batch."""

from __future__ import annotations

import json
from pathlib import Path

from docsieve.models import Document, Rejection
from docsieve.pipeline import Pipeline
from docsieve.readers import read
from docsieve.settings import Settings
from docsieve.store import Store
from docsieve.validate import validate
from tests.conftest import fixture_text
from tests.services import postgres_database

ARTICLE = fixture_text("ar_long_article.txt")
OTHER = fixture_text("en_article.txt")


def hostile_batch(folder: Path) -> Path:
    """A JSON Lines batch of good articles with one bad value each, and a file with a NUL past 8 KiB."""
    lines = [
        {"id": "good", "text": fixture_text("ar_near_a.txt"), "title": "خبر", "language": "ar"},
        {"id": "nul-title", "text": OTHER, "title": "Council\u0000vote"},
        {"id": "nul-text", "text": ARTICLE.replace("\n", "\u0000", 1)},
        {"id": "nul\u0000id", "text": fixture_text("ar_other.txt")},
        {"id": "long-language", "text": fixture_text("ar_template_a.txt"), "language": "Modern Standard Arabic"},
        {"id": "language-17", "text": fixture_text("ar_template_b.txt"), "language": "ar-aaaaaaaa-bbbbb"},
        {"id": "long-published", "text": fixture_text("ar_excerpt_long.txt"), "published": "2015-07-21 " * 10},
        {"id": "fine-published", "text": fixture_text("ar_near_b.txt"), "published": "Tue, 21 Jul 2015 10:32:00 +0300"},
    ]
    batch = folder / "batch.jsonl"
    batch.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines), encoding="utf-8")
    late_nul = ("x" * 9000 + "\u0000\n" + OTHER.replace("council", "board")).encode()
    (folder / "late_nul.txt").write_bytes(late_nul)
    return folder


def stored(store_url: str, folder: Path) -> dict[str, dict]:
    store = Store(store_url)
    pipeline = Pipeline(store, Settings(store=store_url))
    try:
        pipeline.ingest(read([str(folder)], 10_000_000))
        return {r.source.rsplit("/", 1)[1]: r.to_json() for r in store.iter_records()}
    finally:
        pipeline.close()


def test_a_bad_value_costs_only_its_document_on_both_stores(tmp_path: Path, postgres_server_url: str) -> None:
    (tmp_path / "in").mkdir()
    folder = hostile_batch(tmp_path / "in")
    sqlite = stored(f"sqlite:///{tmp_path / 'a.db'}", folder)
    with postgres_database(postgres_server_url) as url:
        postgres = stored(url, folder)

    def comparable(records: dict[str, dict]) -> dict[str, dict]:
        return {k: {f: v for f, v in r.items() if f not in ("created_at", "changed_at")} for k, r in records.items()}

    assert comparable(sqlite) == comparable(postgres)
    records = postgres
    assert len(records) == 9
    # "good" is undated; its near copy "fine-published" was published earlier, so it is the canonical.
    assert records["batch.jsonl#good"]["duplicate_of"] == records["batch.jsonl#fine-published"]["id"]
    assert records["batch.jsonl#nul-title"]["title"] == "Council\ufffdvote"
    assert "\ufffd" in records["batch.jsonl#nul-text"]["text"] and "\0" not in records["batch.jsonl#nul-text"]["text"]
    assert records["batch.jsonl#nul\ufffdid"]["status"] == "canonical"
    assert records["late_nul.txt"]["status"] == "duplicate" and "\ufffd" in records["late_nul.txt"]["text"]
    for name, field in (("long-language", "language"), ("language-17", "language"), ("long-published", "published")):
        record = records[f"batch.jsonl#{name}"]
        assert record["status"] == "rejected" and f"'{field}' must be" in record["reason"], record
    assert records["batch.jsonl#fine-published"]["published"] == "Tue, 21 Jul 2015 10:32:00 +0300"


def test_a_nul_keeps_its_word_break() -> None:
    """U+FFFD breaks words where NUL did: the fingerprint is the one of a space there."""
    from docsieve.fingerprint import fingerprint_batch

    with_nul = validate(Document("a", "one\u0000two three four", "t"))
    assert isinstance(with_nul, Document) and with_nul.text == "one\ufffdtwo three four"
    spaced, replaced = fingerprint_batch(["one two three four", with_nul.text], Settings())
    assert spaced.content_hash == replaced.content_hash


def test_rejections_and_fields_get_storable_values() -> None:
    rejection = validate(Rejection.of("bad\udcffname.txt", "binary data\u0000", b"x"))
    assert isinstance(rejection, Rejection)
    assert (rejection.source, rejection.reason) == ("bad\ufffdname.txt", "binary data\ufffd")
    doc = validate(Document("s", "text", "t", images=("http://x/\u0000.jpg",), author="A\u0000B"))
    assert isinstance(doc, Document) and doc.images == ("http://x/\ufffd.jpg",) and doc.author == "A\ufffdB"
    for tag in ("ar", "en-GB", "zh_Hant", "sgn-BE-FR"):
        assert isinstance(validate(Document("s", "text", "t", language=tag)), Document), tag
    for tag in ("", "ar sa", "12", "a" * 17):
        assert isinstance(validate(Document("s", "text", "t", language=tag)), Rejection), tag
