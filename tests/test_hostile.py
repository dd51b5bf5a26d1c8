"""Hostile input, in one batch with good articles: each bad input becomes a `rejected` record with a
reason a person can read, and the good ones around it are stored as usual.

The same holds over HTTP (decompression bombs, SSRF addresses, entity-expansion feeds): see
tests/test_fetch.py, tests/test_sources.py and tests/test_web.py; docs/reliability.md lists them all.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, fixture_text

GOOD = {"good_ar.txt": "ar_long_article.txt", "good_en.txt": "en_article.txt"}


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name, fixture in GOOD.items():
        (folder / name).write_text(fixture_text(fixture), encoding="utf-8")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 64)
    (folder / "invalid_utf8.txt").write_bytes("خبر عاجل: ".encode() + b"\xff\xfe broken")
    mixed = fixture_text("ar_other.txt").encode() + "\nوكالة الأنباء".encode("cp1256")
    (folder / "mixed_encodings.txt").write_bytes(mixed)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "whitespace.txt").write_text(" \n\t\n\u00a0\u3000\n", encoding="utf-8")
    with open(folder / "huge.txt", "wb") as fh:  # 100 MB, sparse: refused by its size, never read
        fh.truncate(100 * 1024 * 1024)
    (folder / "long_line.txt").write_text("headline\n" + "كلمة " * 400_000, encoding="utf-8")  # one 4 MB line
    (folder / "nested.html").write_text(
        "<html><body>" + "<div>" * 100_000 + "text" + "</div>" * 100_000 + "</body></html>", encoding="utf-8"
    )
    (folder / "gzip_bomb.html").write_bytes(gzip.compress(bytes(10 * 1024 * 1024)))  # a file is not decoded
    lines = [
        json.dumps({"id": "ok", "text": fixture_text("ar_near_a.txt")}, ensure_ascii=False),
        '{"id": "cut", "text": "no end',
        json.dumps({"id": "number", "text": 42}),
        json.dumps(["not", "an", "object"]),
        "",
    ]
    (folder / "batch.jsonl").write_text("\n".join(lines), encoding="utf-8")
    secret = tmp_path / "secret.txt"
    secret.write_text(fixture_text("en_article.txt").replace("council", "board"), encoding="utf-8")
    os.symlink(secret, folder / "link_outside.txt")  # a symlink leading out of the folder being read
    return folder


@pytest.mark.slow
def test_every_bad_input_is_rejected_with_a_reason_and_the_rest_is_stored(batch: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
    env |= {"DOCSIEVE_STORE": f"sqlite:///{tmp_path / 'hostile.db'}", "DOCSIEVE_MAX_DOCUMENT_BYTES": "10000000"}
    run = subprocess.run(
        [sys.executable, "-m", "docsieve.cli", "ingest", str(batch), "--quiet"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    exported = subprocess.run(
        [sys.executable, "-m", "docsieve.cli", "export"], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    records = {Path(r["source"]).name: r for r in map(json.loads, exported.stdout.splitlines())}
    reasons = {name: r["reason"] for name, r in records.items() if r["status"] == "rejected"}

    expected = {
        "binary.txt": "binary data",
        "invalid_utf8.txt": "not valid UTF-8: byte 0xff",
        "mixed_encodings.txt": "not valid UTF-8",
        "empty.txt": "no article text",
        "whitespace.txt": "no article text",
        "huge.txt": "file too large: 104,857,600 bytes",
        "gzip_bomb.html": "binary data",
        "batch.jsonl#L2": "line 2 is not valid JSON",
        "batch.jsonl#number": "has a 'text' of type int",
        "batch.jsonl#L4": "expected a JSON object, got list",
        "link_outside.txt": "outside the folder being read",
    }
    for name, reason in expected.items():
        assert reason in reasons.get(name, ""), (name, reasons.get(name))
    assert "nested.html" in records  # stored or rejected, never a crash
    if records["nested.html"]["status"] == "rejected":
        assert records["nested.html"]["reason"]
    # The good ones, and the good line of the batch, are stored; a 4 MB line is text like any other.
    for name in (*GOOD, "batch.jsonl#ok", "long_line.txt"):
        assert records[name]["status"] == "canonical", (name, records[name])
    assert len(records) == len(expected) + len(GOOD) + 3
    assert f"rejected {len(reasons)}" in run.stdout and len(reasons) in (len(expected), len(expected) + 1)
