import io
import json
from pathlib import Path

from worker.models import Format, RawDocument, Rejection
from worker.readers import read

LIMIT = 1_000_000


def items(*paths: str, stdin: bytes | None = None, limit: int = LIMIT):
    return list(read(paths, limit, stdin=io.BytesIO(stdin) if stdin is not None else None))


def test_text_markdown_and_html_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("![](http://x/a.jpg)\nعنوان\nنص المقال.", encoding="utf-8")
    (tmp_path / "b.md").write_text("# Title\n\nBody text here.", encoding="utf-8")
    (tmp_path / "c.html").write_text("<html><body><p>Hello</p></body></html>", encoding="utf-8")
    found = items(str(tmp_path / "a.txt"), str(tmp_path / "b.md"), str(tmp_path / "c.html"))
    assert [type(i) for i in found] == [RawDocument] * 3
    assert [i.format for i in found] == [Format.SCRAPED, Format.SCRAPED, Format.HTML]
    assert found[0].source == str(tmp_path / "a.txt")
    assert "نص المقال" in found[0].body


def test_directory_is_recursive_sorted_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "b.txt").write_text("two", encoding="utf-8")
    (tmp_path / "a.txt").write_text("one", encoding="utf-8")
    (tmp_path / "sub" / "deeper" / "c.txt").write_text("three", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("no", encoding="utf-8")
    found = items(str(tmp_path))
    assert [Path(i.source).name for i in found] == ["a.txt", "b.txt", "c.txt"]


def test_unsupported_file_in_directory_is_rejected_not_dropped(tmp_path: Path) -> None:
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4")
    (found,) = items(str(tmp_path))
    assert isinstance(found, Rejection) and "unsupported file type '.pdf'" in found.reason


def test_jsonl_batch_with_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a1", "text": "first article", "title": "T", "url": "http://x/1", "language": "en"}),
        "{not json",
        json.dumps({"title": "no text"}),
        "",
        json.dumps({"text": "third article", "published": "2015-07-21"}),
        json.dumps(["not", "an", "object"]),
    ]
    path = tmp_path / "batch.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    found = items(str(path))
    assert len(found) == 5
    first, bad, missing, third, array = found
    assert isinstance(first, RawDocument) and first.source == f"{path}#a1"
    assert (first.title, first.url, first.language) == ("T", "http://x/1", "en")
    assert isinstance(bad, Rejection) and bad.source == f"{path}#L2" and "not valid JSON" in bad.reason
    assert isinstance(missing, Rejection) and "'text' is required" in missing.reason
    assert isinstance(third, RawDocument) and third.source == f"{path}#L5" and third.published == "2015-07-21"
    assert isinstance(array, Rejection) and "expected a JSON object" in array.reason


def test_json_array_and_single_object(tmp_path: Path) -> None:
    (tmp_path / "arr.json").write_text(json.dumps([{"text": "one"}, {"text": "two", "id": 7}]), encoding="utf-8")
    (tmp_path / "one.json").write_text(json.dumps({"text": "only", "title": "x"}, indent=2), encoding="utf-8")
    found = items(str(tmp_path / "arr.json"), str(tmp_path / "one.json"))
    assert [i.body for i in found] == ["one", "two", "only"]
    assert found[1].source.endswith("arr.json#7")


def test_stdin_text_and_jsonl() -> None:
    (doc,) = items("-", stdin="نص من الدخل القياسي".encode())
    assert doc.source == "-" and doc.body == "نص من الدخل القياسي"
    docs = items("-", stdin=b'{"text": "a"}\n{"text": "b"}\n')
    assert [d.body for d in docs] == ["a", "b"]


def test_bad_files_are_rejected_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0IHDR")
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    (tmp_path / "big.txt").write_bytes(b"x" * 2000)
    (tmp_path / "ok.txt").write_text("fine", encoding="utf-8")
    found = items(str(tmp_path), limit=1000)
    reasons = {Path(i.source).name: getattr(i, "reason", None) for i in found}
    assert "binary" in reasons["binary.txt"]
    assert "not valid UTF-8" in reasons["latin1.txt"]
    assert "too large" in reasons["big.txt"] and "2,000 bytes" in reasons["big.txt"]
    assert reasons["ok.txt"] is None


def test_missing_path_is_rejected(tmp_path: Path) -> None:
    (found,) = items(str(tmp_path / "nope.txt"))
    assert isinstance(found, Rejection) and found.reason == "no such file or directory"


def test_html_in_declared_legacy_charset(tmp_path: Path) -> None:
    page = '<html><head><meta charset="windows-1256"></head><body><p>مرحبا بكم في الموقع</p></body></html>'
    (tmp_path / "p.html").write_bytes(page.encode("windows-1256"))
    (doc,) = items(str(tmp_path / "p.html"))
    assert isinstance(doc, RawDocument) and "مرحبا بكم" in doc.body


def test_single_object_any_layout_and_bracketed_text_on_stdin(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text('\n\n  {"text": "only",\n  "title": "x"}\n', encoding="utf-8")
    (tmp_path / "line.json").write_text('{"text": "only", "title": "x"}', encoding="utf-8")
    pretty, line = items(str(tmp_path / "one.json")), items(str(tmp_path / "line.json"))
    assert [i.source for i in pretty] == [str(tmp_path / "one.json")]
    assert [i.source for i in line] == [str(tmp_path / "line.json")]
    (doc,) = items("-", stdin=b"[Reuters] Oil prices rose on Monday.\nSecond paragraph.")
    assert isinstance(doc, RawDocument) and doc.body.startswith("[Reuters]")


def test_linked_folder_is_rejected_not_followed_and_unreadable_folder_reported(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("two", encoding="utf-8")
    (tmp_path / "a.txt").write_text("one", encoding="utf-8")
    (tmp_path / "z_link").symlink_to(tmp_path / "sub", target_is_directory=True)
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "c.txt").write_text("three", encoding="utf-8")
    (tmp_path / "locked").chmod(0)
    try:
        found = items(str(tmp_path))
    finally:
        (tmp_path / "locked").chmod(0o755)
    by_source = {Path(i.source).name: i for i in found}
    assert by_source["a.txt"].body == "one" and by_source["b.txt"].body == "two"
    assert "not followed" in by_source["z_link"].reason
    if isinstance(by_source.get("locked"), Rejection):  # root reads every folder; others get a reason
        assert "cannot read folder" in by_source["locked"].reason
    else:
        assert by_source["c.txt"].body == "three"
    # Files of a folder first, then its subfolders, each in name order.
    assert [Path(i.source).name for i in found][:2] == ["a.txt", "z_link"]


def test_a_file_that_grows_past_the_limit_while_read_is_refused(tmp_path: Path, monkeypatch) -> None:
    import os

    path = tmp_path / "growing.txt"
    path.write_text("x" * 10, encoding="utf-8")
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result((*real_fstat(fd)[:6], 4, *real_fstat(fd)[7:])))
    (found,) = items(str(path), limit=8)  # fstat says 4 bytes; 10 are there, over the limit of 8
    assert isinstance(found, Rejection) and "too large" in found.reason
    (found,) = items(str(path), limit=100)  # under the limit: read whole although fstat said 4
    assert found.body == "x" * 10


def test_byte_order_mark_is_not_text(tmp_path: Path) -> None:
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + "نص المقال".encode())
    (tmp_path / "inner.txt").write_bytes("نص\ufeffالمقال".encode())  # only a leading mark is dropped
    (tmp_path / "bad.txt").write_bytes(b"\xef\xbb\xbfab\xff")
    first, second, bad = items(*(str(tmp_path / name) for name in ("bom.txt", "inner.txt", "bad.txt")))
    assert first.body == "نص المقال"
    assert second.body == "نص\ufeffالمقال"
    assert bad.reason == "not valid UTF-8: byte 0xff at offset 5"  # counted in the file, mark included
