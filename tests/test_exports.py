"""`docsieve export` as CSV and Parquet: flat rows of records, or of stories' members, streamed, typed."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from docsieve.cli import main
from tests.conftest import FIXTURES


@pytest.fixture
def filled(tmp_path: Path) -> str:
    batch = tmp_path / "batch.jsonl"
    rows = [
        {
            "id": "a",
            "text": (FIXTURES / "ar_near_a.txt").read_text(),
            "source": "Wire",
            "published": "2026-12-01T08:00:00Z",
        },
        {"id": "b", "text": (FIXTURES / "ar_near_b.txt").read_text(), "source": "Paper"},
        {"id": "c", "text": (FIXTURES / "en_article.txt").read_text(), "source": 'Daily, "quoted"'},
        {"id": "d"},
    ]
    batch.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    store = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["--store", store, "ingest", str(batch), "--quiet"]) == 0
    return store


def test_records_as_csv_hold_every_record_and_survive_commas_quotes_and_lines(filled: str, capsys) -> None:
    capsys.readouterr()
    assert main(["--store", filled, "export", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out, newline="")))
    assert [r["source"].rsplit("#", 1)[1] for r in rows] == ["d", "a", "b", "c"]  # rejections first in a batch
    by_id = {r["source"].rsplit("#", 1)[1]: r for r in rows}
    assert by_id["b"]["status"] == "duplicate" and by_id["b"]["duplicate_of"] == by_id["a"]["id"]
    assert by_id["c"]["outlet"] == 'Daily, "quoted"' and "\n" in by_id["c"]["text"]
    assert by_id["a"]["published_at"] == "2026-12-01T08:00:00+00:00" and by_id["a"]["similarity"] == ""
    assert by_id["d"]["status"] == "rejected" and by_id["d"]["reason"]
    assert json.loads(by_id["a"]["images"]) == ["https://img.example.net/snn-2015-07-22-421.jpg"]


def test_stories_as_parquet_are_typed_rows_of_members(filled: str, tmp_path: Path) -> None:
    out = tmp_path / "stories.parquet"
    assert main(["--store", filled, "export", "--stories", "--format", "parquet", "-o", str(out)]) == 0
    table = pq.read_table(out)
    assert str(table.schema.field("similarity").type) == "double"
    assert str(table.schema.field("published_at").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("is_canonical").type) == "bool"
    rows = table.to_pylist()
    assert len(rows) == 3 and len({r["story_id"] for r in rows}) == 2
    copy = next(r for r in rows if not r["is_canonical"])
    assert copy["method"] == "near" and copy["outlet"] == "Paper" and 0.5 < copy["jaccard"] <= 1
    canonical = next(r for r in rows if r["story_id"] == copy["story_id"] and r["is_canonical"])
    assert canonical["outlet"] == "Wire" and copy["canonical_id"] == canonical["record_id"]


def test_records_as_parquet_keep_images_as_a_list(filled: str, tmp_path: Path) -> None:
    out = tmp_path / "records.parquet"
    assert main(["--store", filled, "export", "--format", "parquet", "--output", str(out)]) == 0
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 4 and all(isinstance(r["images"], list) for r in rows)
    assert {r["status"] for r in rows} == {"canonical", "duplicate", "rejected"}


def test_an_export_of_nothing_is_a_file_with_its_columns(filled: str, tmp_path: Path) -> None:
    out = tmp_path / "none.parquet"
    assert main(["--store", filled, "export", "--format", "parquet", "--since", "2199-01-01", "-o", str(out)]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 0 and "story_id" in table.schema.names
    csv_out = tmp_path / "none.csv"
    assert main(["--store", filled, "export", "--format", "csv", "--since", "2199-01-01", "-o", str(csv_out)]) == 0
    assert csv_out.read_text().startswith("id,source,status,story_id")
