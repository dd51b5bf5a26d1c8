"""The library's public face: ``import docsieve``, open a store, ingest, look up, read stories."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import docsieve

FIXTURES = Path(__file__).parent / "fixtures"


def test_open_ingest_and_look_up(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("ar_near_a.txt", "ar_near_b.txt", "ar_other.txt"):
        shutil.copy(FIXTURES / name, folder / name)
    (folder / "empty.txt").write_text("   \n", encoding="utf-8")
    with docsieve.open(str(tmp_path / "news.db")) as sieve:
        summary = sieve.ingest([str(folder)])
        assert (summary.read, summary.new, summary.near, summary.rejected) == (4, 2, 1, 1)
        by_source = {Path(r.source).name: r for r in sieve.records()}
        a, b = by_source["ar_near_a.txt"], by_source["ar_near_b.txt"]
        assert b.status is docsieve.Status.DUPLICATE and b.duplicate_of == a.id
        story = sieve.story(a.story_id)
        assert story is not None and story.canonical.id == a.id and [m.id for m in story.members] == [b.id]
        assert sieve.record(b.id) == b
        assert [r.source for r in sieve.records(docsieve.Status.REJECTED)] == [str(folder / "empty.txt")]
        matches = sieve.similar(str(FIXTURES / "ar_near_b.txt"), limit=2)
        assert [m.record.id for m in matches][:2] == [b.id, a.id] and matches[0].jaccard == 1.0
        again = sieve.ingest_documents([docsieve.RawDocument("wire-1", (FIXTURES / "ar_near_a.txt").read_text())])
        assert again.exact == 1
    assert not sieve.pipeline.store.engine.pool.checkedout()  # closed by the with


def test_settings_are_given_by_name_and_checked(tmp_path: Path) -> None:
    with docsieve.open(str(tmp_path / "s.db"), jaccard_threshold=0.9) as sieve:
        assert sieve.settings.jaccard_threshold == 0.9
    with pytest.raises(docsieve.SettingsError):
        docsieve.open(str(tmp_path / "t.db"), num_perm=100)


def test_a_document_similar_cannot_read_says_why(tmp_path: Path) -> None:
    (tmp_path / "blank.txt").write_text("\n", encoding="utf-8")
    with docsieve.open(str(tmp_path / "s.db")) as sieve, pytest.raises(ValueError, match=r"blank\.txt: no article"):
        sieve.similar(str(tmp_path / "blank.txt"))
