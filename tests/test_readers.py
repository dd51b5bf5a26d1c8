import codecs
import contextlib
import gzip
import io
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from docsieve.models import Format, RawDocument, Rejection
from docsieve.readers import FieldMap, read
from tests.conftest import REPO

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


@pytest.mark.parametrize(
    ("declared", "encoding", "text"),
    [
        ("iso-8859-1", "cp1252", "“Naïve” café — déjà vu"),  # the label means windows-1252, as browsers read it
        ("iso-8859-9", "iso-8859-9", "Haberler için ğüşıöç"),
    ],
)
def test_html_file_is_decoded_as_the_fetcher_decodes_pages(
    tmp_path: Path, declared: str, encoding: str, text: str
) -> None:
    # One decoder for files and fetched pages: the page's own declaration first, detection only after it.
    page = f'<html><head><meta charset="{declared}"></head><body><p>{text}</p></body></html>'
    (tmp_path / "p.html").write_bytes(page.encode(encoding))
    (doc,) = items(str(tmp_path / "p.html"))
    assert isinstance(doc, RawDocument) and doc.body == page


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


# --- Files that are not regular files, names that are not UTF-8, deep folders (issue 11: 3, 4, 5) ---


def read_in_thread(*args, **kwargs) -> list:
    """``read`` on a thread of its own, given 30 s: a reader that blocks (on a FIFO, say) fails the test
    rather than hanging the run."""
    found: list = []
    worker = threading.Thread(target=lambda: found.extend(read(*args, **kwargs)), daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the reader is blocked"
    return found


def test_a_fifo_socket_or_device_is_rejected_not_waited_on(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("one", encoding="utf-8")
    os.mkfifo(folder / "b_pipe.txt")
    (folder / "z.txt").write_text("two", encoding="utf-8")
    listening = socket.socket(socket.AF_UNIX)
    try:
        listening.bind(str(folder / "c_socket.jsonl"))
        found = read_in_thread([str(folder), str(folder / "b_pipe.txt"), "/dev/null"], LIMIT)
    finally:
        listening.close()
        with contextlib.suppress(OSError):  # a reader blocked in open() (the defect) is released
            os.close(os.open(folder / "b_pipe.txt", os.O_WRONLY | os.O_NONBLOCK))
    reasons = [(Path(i.source).name, i.reason if isinstance(i, Rejection) else i.body) for i in found]
    assert reasons == [
        ("a.txt", "one"),
        ("b_pipe.txt", "not a regular file: a FIFO"),
        ("c_socket.jsonl", "not a regular file: a socket"),
        ("z.txt", "two"),
        ("b_pipe.txt", "not a regular file: a FIFO"),
        ("null", "not a regular file: a character device"),
    ]


def test_a_fifo_put_in_place_of_a_listed_file_is_refused_once_open(tmp_path: Path) -> None:
    """Between the folder's listing and the read, a file may become a FIFO: the open itself never waits."""
    from docsieve import readers

    os.mkfifo(tmp_path / "swapped.txt")
    found = []
    worker = threading.Thread(
        target=lambda: found.extend(readers._read_file("s", str(tmp_path / "swapped.txt"), ".txt", LIMIT, FieldMap())),
        daemon=True,
    )
    worker.start()
    worker.join(30)
    try:
        assert not worker.is_alive(), "the reader is blocked"
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(tmp_path / "swapped.txt", os.O_WRONLY | os.O_NONBLOCK))
    assert [i.reason for i in found] == ["not a regular file: a FIFO"]


def test_names_that_are_not_utf8_are_read_and_stored(tmp_path: Path, pipeline) -> None:
    """A name's bytes that are not UTF-8 are spelled \\xNN in the source: the record id and both stores take it."""
    folder = os.fsencode(tmp_path / "in")
    os.makedirs(os.path.join(folder, b"caf\xe9"))
    for name, text in (
        (b"\xff.txt", "أول خبر في المجلد للاختبار"),
        (b"caf\xe9/\xfe.md", "a second story, in a folder"),
    ):
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(text.encode())
    open(os.path.join(folder, b"\xfd.pdf"), "wb").close()
    given = os.fsdecode(os.path.join(folder, b"caf\xe9/\xfe.md"))  # also named directly, as a shell passes it
    summary = pipeline.ingest(read([os.fsdecode(folder), given, os.fsdecode(folder + b"/gone\xfc.txt")], LIMIT))
    assert (summary.new, summary.rejected, summary.unchanged) == (2, 2, 1)
    records = {r.source.removeprefix(str(tmp_path)): r for r in pipeline.store.iter_records()}
    assert set(records) == {"/in/\\xff.txt", "/in/caf\\xe9/\\xfe.md", "/in/\\xfd.pdf", "/in/gone\\xfc.txt"}
    assert records["/in/\\xff.txt"].status == "canonical"
    assert "unsupported file type '.pdf'" in records["/in/\\xfd.pdf"].reason
    assert records["/in/gone\\xfc.txt"].reason == "no such file or directory"
    again = pipeline.ingest(read([os.fsdecode(folder)], LIMIT))  # the same ids: nothing new
    assert again.unchanged == 3 and again.new == again.rejected == 0


def test_a_folder_a_thousand_levels_deep_is_read_in_order_with_few_files_open(tmp_path: Path) -> None:
    folders = [tmp_path / "top"]
    for _ in range(1000):
        folders.append(folders[-1] / "d")
    for folder in folders:  # one by one: Path.mkdir(parents=True) recurses
        folder.mkdir()
    for level in range(0, 1000, 250):  # a few files on the way down, beside their subfolder
        (folders[level] / f"f{level}.txt").write_text(f"level {level}", encoding="utf-8")
    (folders[-1] / "bottom.txt").write_text("the bottom", encoding="utf-8")
    (folders[0] / "e").mkdir()
    (folders[0] / "e" / "after.txt").write_text("after the deep folder", encoding="utf-8")
    open_files, bodies = [], []
    try:
        for item in read([str(folders[0])], LIMIT):
            open_files.append(len(os.listdir("/proc/self/fd")))
            bodies.append(item.body)
    finally:  # bottom up: pytest's own clean-up (shutil.rmtree) recurses, and fails this deep
        for folder in reversed(folders[1:]):
            for file in folder.glob("*.txt"):
                file.unlink()
            folder.rmdir()
    assert bodies == ["level 0", "level 250", "level 500", "level 750", "the bottom", "after the deep folder"]
    assert max(open_files) - min(open_files) <= 1


# --- Batches larger than the limit, streamed (issue 11: 6) ---


def test_a_batch_many_times_the_limit_gives_every_document(tmp_path: Path) -> None:
    limit = 2_000
    texts = [f"story {n}: " + "كلمة " * (n % 60) for n in range(400)]
    path = tmp_path / "big.jsonl"
    lines = [json.dumps({"text": t, "title": f"t{n}"}, ensure_ascii=n % 2 == 0) for n, t in enumerate(texts)]
    lines[200] = json.dumps({"id": "huge", "text": "x" * 50_000})  # one line over the limit, not held whole
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert path.stat().st_size > 50 * limit
    found = items(str(path), limit=limit)
    assert len(found) == 400
    assert [i.body for i in found if isinstance(i, RawDocument)] == texts[:200] + texts[201:]
    assert [i.source for i in found[199:202]] == [f"{path}#L200", f"{path}#L201", f"{path}#L202"]
    assert found[200].reason == "line 201 too large: 50,026 bytes, the limit is 2,000 (DOCSIEVE_MAX_DOCUMENT_BYTES)"


def test_a_json_array_many_times_the_limit_gives_every_document(tmp_path: Path, monkeypatch) -> None:
    from docsieve import readers

    monkeypatch.setattr(readers, "CHUNK", 7)  # item ends, strings and escapes cut across reads
    objects = [
        {"text": f'story {n} with "quotes", [brackets], {{braces}} and a \\ backslash\\', "id": n, "x": [1, {"a": "]"}]}
        for n in range(300)
    ]
    objects[100] = {"text": "y" * 5_000}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(objects, indent=2, ensure_ascii=False), encoding="utf-8")
    found = items(str(path), limit=1_000)
    assert len(found) == 300
    assert [i.body for i in found if isinstance(i, RawDocument)] == [o["text"] for o in objects if "id" in o]
    assert found[0].source == f"{path}#0" and found[299].source == f"{path}#299"
    assert found[100].source == f"{path}#101" and found[100].reason.startswith("item 101 too large")


def test_broken_arrays_and_one_object_over_the_limit(tmp_path: Path) -> None:
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps([{"text": "one " * 100}, {"text": "two " * 100}])[:-30], encoding="utf-8")
    first, last, unclosed = items(str(cut), limit=500)
    assert first.body.startswith("one") and "not valid JSON" in last.reason
    assert unclosed.source == str(cut) and "the array is not closed" in unclosed.reason
    trailing = tmp_path / "trailing.json"
    trailing.write_text(json.dumps([{"text": "one " * 100}]) + " and more", encoding="utf-8")
    doc, after = items(str(trailing))
    assert doc.body.startswith("one") and after.reason == "invalid JSON: more after the end of the array"
    pretty = tmp_path / "one.json"
    pretty.write_text(json.dumps({"text": "word " * 500, "title": "t"}, indent=2), encoding="utf-8")
    (found,) = items(str(pretty), limit=1_000)
    assert found.reason == "one JSON object larger than 1,000 bytes (DOCSIEVE_MAX_DOCUMENT_BYTES)"


def test_standard_input_over_the_limit(tmp_path: Path) -> None:
    lines = "".join(json.dumps({"text": f"story number {n}"}) + "\n" for n in range(100))
    assert [i.body for i in items("-", stdin=lines.encode(), limit=200)] == [f"story number {n}" for n in range(100)]
    array = json.dumps([{"text": f"story number {n}"} for n in range(100)]).encode()
    assert len(items("-", stdin=array, limit=200)) == 100
    (text,) = items("-", stdin=b"[Reuters] " + b"word " * 100, limit=200)
    assert text.reason == "input too large: more than 200 bytes (DOCSIEVE_MAX_DOCUMENT_BYTES)"


def test_standard_input_whose_first_line_is_broken_is_still_a_batch() -> None:
    """One cut line first must not turn the rest of a piped batch into one text document."""
    lines = '{"text": "cut sho\n' + "".join(json.dumps({"text": f"story number {n}"}) + "\n" for n in range(3))
    found = items("-", stdin=lines.encode())
    assert [type(i).__name__ for i in found] == ["Rejection", "RawDocument", "RawDocument", "RawDocument"]
    assert found[0].reason.startswith("line 1 is not valid JSON")
    over = items("-", stdin=(lines * 20).encode(), limit=200)  # over the limit: streamed, the same way
    assert sum(isinstance(i, RawDocument) for i in over) == 60
    (text,) = items("-", stdin=b"{not json} an article that opens with a brace.\nSecond line.")
    assert isinstance(text, RawDocument) and text.body.startswith("{not json}")


MEMORY_CHILD = """
import json, resource, sys
from docsieve.readers import read
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
found = [getattr(item, "reason", None) or item.body for item in read([sys.argv[1]], 1_000_000)]
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"found": found, "grown_kib": grown}))
"""


def test_a_line_many_times_the_limit_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "long_line.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "before"}) + "\n")
        fh.write('{"text": "' + "long " * 12_800_000 + '"}\n')  # 64 MB
        fh.write(json.dumps({"text": "after"}) + "\n")
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(path)], cwd=REPO, capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    assert result["found"] == [
        "before",
        "line 2 too large: 64,000,012 bytes, the limit is 1,000,000 (DOCSIEVE_MAX_DOCUMENT_BYTES)",
        "after",
    ]
    assert result["grown_kib"] < 32 * 1024, f"peak memory grew by {result['grown_kib']} KiB reading a 64 MB line"


# --- UTF-16 and UTF-32, gzip (issue 11: 12, 13) ---

ARTICLE = "عنوان الخبر\nنص المقال الأول، وفيه كلمات كثيرة.\nSecond paragraph."


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_files_are_read_by_their_byte_order_mark(tmp_path: Path, codec: str) -> None:
    def write(name: str, text: str) -> str:
        (tmp_path / name).write_bytes("\ufeff".encode(codec) + text.encode(codec))
        return str(tmp_path / name)

    page = f"<html><head><meta charset='{codec}'></head><body><p>{ARTICLE}</p></body></html>"
    lines = "\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in ("أول", "second")) + "\n"
    found = items(write("a.txt", ARTICLE), write("p.html", page), write("b.jsonl", lines))
    assert [type(i) for i in found] == [RawDocument] * 4
    assert found[0].body == ARTICLE and ARTICLE.split("\n")[1] in found[1].body
    assert [i.body for i in found[2:]] == ["أول", "second"]
    assert [i.body for i in items(str(tmp_path / "b.jsonl"), limit=20)] == ["أول", "second"]  # streamed
    (stdin,) = items("-", stdin=(tmp_path / "a.txt").read_bytes())
    assert stdin.body == ARTICLE


def test_broken_utf16_is_rejected_with_the_offset(tmp_path: Path) -> None:
    (tmp_path / "odd.txt").write_bytes(codecs.BOM_UTF16_LE + "abc".encode("utf-16-le") + b"\x00")
    (tmp_path / "lone.txt").write_bytes(codecs.BOM_UTF16_LE + "ab".encode("utf-16-le") + b"\x00\xd8x\x00")
    odd, lone = items(str(tmp_path / "odd.txt"), str(tmp_path / "lone.txt"))
    assert odd.reason == "not valid UTF-16: truncated data at offset 8"
    assert lone.reason.startswith("not valid UTF-16: illegal UTF-16 surrogate at offset 6")


@pytest.mark.parametrize("suffix", [".txt.gz", ".md.gz", ".html.gz", ".jsonl.gz", ".json.gz", ".NDJSON.GZ"])
def test_gzipped_files_are_read(tmp_path: Path, suffix: str) -> None:
    if ".htm" in suffix:
        data, expected = f"<html><body><article><p>{ARTICLE}</p></article></body></html>", [ARTICLE]
    elif "json" in suffix.lower():
        expected = [f"story {n}" for n in range(50)]
        data = "".join(json.dumps({"text": t}) + "\n" for t in expected)
        if suffix == ".json.gz":
            data = json.dumps([{"text": t} for t in expected], indent=2)
    else:
        data, expected = ARTICLE, [ARTICLE]
    path = tmp_path / f"in{suffix}"
    path.write_bytes(gzip.compress(data.encode("utf-16") if suffix == ".md.gz" else data.encode()))
    for limit in (LIMIT, 100):  # whole, or streamed in documents under the limit
        found = items(str(tmp_path), limit=limit)
        if limit == LIMIT or len(expected) > 1:
            assert [type(i) for i in found] == [RawDocument] * len(expected), found
            bodies = [i.body for i in found]
            assert bodies == expected if ".htm" not in suffix else ARTICLE.split("\n")[1] in bodies[0]
        else:
            assert found[0].reason == "file too large: more than 100 bytes decompressed (DOCSIEVE_MAX_DOCUMENT_BYTES)"
    assert found[0].source.startswith(str(path))


def test_gzip_on_standard_input_and_suffixes_that_are_not_gzip(tmp_path: Path) -> None:
    lines = "".join(json.dumps({"text": f"story {n}"}) + "\n" for n in range(30)).encode()
    assert len(items("-", stdin=gzip.compress(lines))) == 30
    assert len(items("-", stdin=gzip.compress(lines), limit=50)) == 30
    (tmp_path / "page.html").write_bytes(gzip.compress(b"<html><body>x</body></html>"))  # named as not gzipped
    (tmp_path / "archive.tar.gz").write_bytes(gzip.compress(b"x"))
    (tmp_path / "bad.txt.gz").write_bytes(b"not gzip at all")
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(lines)[:-40])
    reasons = {Path(i.source).name: i.reason for i in items(str(tmp_path)) if isinstance(i, Rejection)}
    assert reasons["page.html"].startswith("binary data")
    assert reasons["archive.tar.gz"].startswith("unsupported file type '.tar.gz'")
    assert reasons["bad.txt.gz"] == "not valid gzip data: Not a gzipped file (b'no')"
    assert reasons["cut.jsonl.gz"].startswith("gzip data cut short")


@pytest.mark.slow
def test_a_gzip_bomb_is_refused_without_decompressing_it_all(tmp_path: Path, monkeypatch) -> None:
    import docsieve.readers

    monkeypatch.setattr(docsieve.readers, "INFLATE_BUDGET", 2_000_000)  # 1 GiB: seconds, and a 1 MB bomb to write
    decompressed = []
    real_read = gzip.GzipFile.read
    monkeypatch.setattr(
        gzip.GzipFile, "read", lambda self, n=-1: decompressed.append(len(data := real_read(self, n))) or data
    )
    bomb = gzip.compress(b"a" * 200_000_000, compresslevel=9)  # 200 MB in about 200 KB
    (tmp_path / "bomb.txt.gz").write_bytes(bomb)
    (tmp_path / "bomb.jsonl.gz").write_bytes(gzip.compress(b'{"text": "first"}\n') + bomb)
    text_bomb, first, batch_bomb = items(
        str(tmp_path / "bomb.txt.gz"), str(tmp_path / "bomb.jsonl.gz"), limit=1_000_000
    )
    assert text_bomb.reason == "file too large: more than 1,000,000 bytes decompressed (DOCSIEVE_MAX_DOCUMENT_BYTES)"
    assert first.body == "first"
    assert batch_bomb.source == str(tmp_path / "bomb.jsonl.gz")
    assert batch_bomb.reason.startswith("a decompression bomb:") and batch_bomb.reason.endswith(", after 1 item")
    assert sum(decompressed) < 5_000_000


@pytest.mark.slow
def test_a_batch_of_near_identical_records_is_read_whole_however_well_it_compresses(tmp_path: Path) -> None:
    """Templated items compress a thousand times, as a bomb does; under the budget every one is read."""
    from docsieve.readers import MAX_INFLATE_RATIO

    lines = [json.dumps({"id": n, "text": "حالة الطقس: صحو إلى غائم جزئياً " * 20 + str(n)}) for n in range(20_000)]
    packed = gzip.compress("\n".join(lines).encode(), compresslevel=9)
    (tmp_path / "weather.jsonl.gz").write_bytes(packed)
    found = items(str(tmp_path / "weather.jsonl.gz"), limit=1_000_000)
    assert len(packed) * MAX_INFLATE_RATIO < sum(len(line) for line in lines)  # more than a bomb's ratio
    assert len(found) == 20_000 and all(isinstance(i, RawDocument) for i in found)


# --- Field mapping, the kept author and outlet, the types of fields (issue 11: 14) ---

SNN = {  # SaudiNewsNet's layout
    "source": "aawsat",
    "url": "http://aawsat.com/home/article/410826",
    "date_extracted": "2015-07-21 02:51:32",
    "title": "بريطانيا: أربعة محاور لاستراتيجية جديدة",
    "author": "لندن: رنيم حنوش",
    "content": "حدد رئيس الوزراء البريطاني ديفيد كاميرون ملامح استراتيجية للتصدي للتطرف.",
}


def test_a_field_mapping_reads_other_layouts_and_keeps_author_and_outlet(tmp_path: Path) -> None:
    (tmp_path / "day.json").write_text(json.dumps([SNN, {**SNN, "source": {"id": None, "name": "Reuters"}}]))
    fields = FieldMap(text="content", published="date_extracted")
    first, second = read([str(tmp_path / "day.json")], LIMIT, fields=fields)
    assert (first.body, first.title, first.url) == (SNN["content"], SNN["title"], SNN["url"])
    assert (first.published, first.author, first.outlet) == ("2015-07-21 02:51:32", SNN["author"], "aawsat")
    assert second.outlet == "Reuters"  # NewsAPI's {"id", "name"}
    (missing,) = items(str(tmp_path / "day.json"))[:1]
    assert missing.reason == "object has no 'text' field; 'text' is required"


def test_fields_of_other_types_are_rejected_or_converted_by_the_stated_rule(tmp_path: Path) -> None:
    objects = [
        {"id": 7, "text": "an integer id", "published": 2015},
        {"id": 7.5, "text": "a float id"},
        {"id": True, "text": "a boolean id"},
        {"text": "a list title", "title": ["a"]},
        {"text": "a number url", "url": 5},
        {"text": "a float date", "published": 1437436800.5},
        {"id": "x", "text": "an object author", "author": {"name": "A"}},
        {"text": "a number language", "language": 1},
        {"text": "empty and null fields", "title": "", "url": None},
        # The outlet is read from `source`, which means other things in other layouts: what names no outlet
        # is left out, not a reason to lose the document.
        {"text": "an outlet without a name", "source": {"id": "x"}},
        {"text": "a list outlet", "source": ["rss"]},
        {"text": "an integer outlet", "source": 3},
        {"text": "a NewsAPI outlet", "source": {"id": None, "name": "BBC News"}},
        {"text": "authors in a list", "author": ["Noor", "", "Sam"]},
    ]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(o) for o in objects), encoding="utf-8")
    found = items(str(tmp_path / "b.jsonl"))
    assert (found[0].source, found[0].published) == (f"{tmp_path / 'b.jsonl'}#7", "2015")
    assert [i.reason for i in found[1:8]] == [
        "'id' must be a string or an integer, got float",
        "'id' must be a string or an integer, got bool",
        "'title' must be a string, got list",
        "'url' must be a string, got int",
        "'published' must be a string or an integer, got float",
        "'author' must be a string, got dict",
        "'language' must be a string, got int",
    ]
    assert found[6].source.endswith("#x") and found[3].source.endswith("#L4")
    assert (found[8].title, found[8].url) == (None, None)
    assert [i.outlet for i in found[9:13]] == [None, None, "3", "BBC News"]
    assert found[13].author == "Noor, Sam"


# --- One file, one source; stdin twice (issue 11: 16) ---


def test_one_file_is_one_source_however_its_path_is_spelled(tmp_path: Path, pipeline, monkeypatch) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.txt").write_text("أول خبر في المجلد للاختبار", encoding="utf-8")
    (tmp_path / "in" / "sub" / "b.txt").write_text("a second story, in a folder", encoding="utf-8")
    (tmp_path / "link").symlink_to(tmp_path / "in" / "sub", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    first = pipeline.ingest(read([str(tmp_path / "in")], LIMIT))
    assert first.new == 2
    for spelling in ("in", "./in/", "in//sub/..", "link/../a.txt", "in/sub/../a.txt", str(tmp_path / "in" / "a.txt")):
        again = pipeline.ingest(read([spelling], LIMIT))
        assert (again.unchanged, again.new, again.exact) == (again.read, 0, 0), spelling
    sources = sorted(r.source for r in pipeline.store.iter_records())
    assert sources == [str(tmp_path / "in" / "a.txt"), str(tmp_path / "in" / "sub" / "b.txt")]
    linked = pipeline.ingest(read(["link/b.txt"], LIMIT))  # a link is its own source, as before
    assert linked.exact == 1


def test_the_same_objects_piped_twice_are_already_stored(pipeline) -> None:
    objects = [{"text": f"story number {n} about the city council and its budget"} for n in range(5)]
    lines = "".join(json.dumps(o) + "\n" for o in objects).encode()
    assert pipeline.ingest(read(["-"], LIMIT, stdin=io.BytesIO(lines))).new == 5
    again = b"".join(reversed(lines.splitlines(keepends=True))) + lines  # in another order, and twice over
    second = pipeline.ingest(read(["-"], LIMIT, stdin=io.BytesIO(again)))
    assert (second.read, second.unchanged, second.exact) == (10, 10, 0)
    with_ids = "".join(json.dumps({**o, "id": n}) + "\n" for n, o in enumerate(objects)).encode()
    third = pipeline.ingest(read(["-"], LIMIT, stdin=io.BytesIO(with_ids)))
    assert (third.new, third.exact) == (0, 5)  # another source (-#id) with the same text: exact copies
