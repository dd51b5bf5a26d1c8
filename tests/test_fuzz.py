"""Property-based tests (hypothesis) of the readers, the extractor, the normalizer and the fingerprints.

Readers and extraction must never raise, whatever the bytes: every input gives at least one item and
every rejection says why. The normalizer is idempotent, batch-independent and yields words separated by
single spaces. Fingerprints do not depend on the batch, the run or the process.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import string
import subprocess
import sys
import unicodedata
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from docsieve.extract import extract
from docsieve.fingerprint import fingerprint_batch
from docsieve.models import Document, Fingerprint, Format, RawDocument, Rejection, record_id
from docsieve.normalize import INVISIBLE, LOOKALIKES, normalize, normalize_batch
from docsieve.readers import read
from docsieve.settings import Settings

REPO = Path(__file__).parent.parent
SETTINGS = Settings()
LIMIT = 1_000_000
SUFFIXES = [".txt", ".md", ".html", ".json", ".jsonl"]


def fuzz_settings(max_examples: int) -> settings:
    # No example database: nothing is written into the working tree, and a run does not depend on the last.
    return settings(
        max_examples=max_examples,
        deadline=None,  # the first call loads tables (normalizer) or imports trafilatura
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# --- Strategies -------------------------------------------------------------------------------------

ARABIC_LETTERS = "ابتثجحخدذرزسشصضطظعغفقكلمنهويءأإآٱىةؤئ"
ARABIC_EXTRA = "٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹،؛؟\u0640\u064b\u064c\u064d\u064e\u064f\u0650\u0651\u0652\u0670"
# Persian, Urdu and Kurdish forms of Arabic letters (they fold), and letters of those languages (they stay).
ARABIC_SCRIPT_VARIANTS = "یکہۂۀھەۃ"
ARABIC_SCRIPT_OTHERS = "پچژگےڪٹ"
arabic_text = st.text(
    alphabet=st.sampled_from(ARABIC_LETTERS + ARABIC_EXTRA + ARABIC_SCRIPT_VARIANTS + " .\n"), max_size=40
)
# Blank or invisible characters that vanish inside a word, and the format characters that already did.
FILLERS = ["\u3164", "\uffa0", "\u2800", "\u115f", "\u1160", "\u2065", "\ufff0", "\U000e0000", "\U0001d159"]
FORMAT = ["\u200b", "\u200c", "\u200d", "\u00ad", "\u2060", "\ufeff", "\U000e0041"]
# Cyrillic and Greek letters, look-alikes of Latin ones (both cases) and others.
LOOKALIKE_LETTERS = sorted({*LOOKALIKES, *(ch.upper() for ch in LOOKALIKES)})
OTHER_LETTERS = list("жлдпфшщэюяЖЛДПФЯλπωψξδθΩΛΠΨΞΔΘςµ")
english_text = st.text(alphabet=string.ascii_letters + string.digits + " .,!?'\"-\n", max_size=40)

lone_surrogate_bytes = st.integers(0xD800, 0xDFFF).map(lambda cp: chr(cp).encode("utf-8", "surrogatepass"))
json_fragments = st.sampled_from(
    [
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b'"',
        b'"text"',
        b'"id"',
        b'"title"',
        b"null",
        b"true",
        b"0",
        b"-1.5e308",
        b"1e999",
        b"NaN",
        b"Infinity",
        b'{"text": "',
        b'"}',
        b'{"text": 1}',
        b'{"text": null, "id": ""}',
        b'[{"text": "x"}]',
        b'"\\u0000"',
        b'"\\ud800"',
        b'"\\udc00x"',
        b"\\",
        b"\\u",
    ]
)
# Any JSON value (strings without surrogates: hypothesis' default).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=10,
)
json_objects = st.builds(
    lambda base, text, ascii_only: json.dumps(
        {**base, "text": text} if text is not None else base, ensure_ascii=ascii_only
    ),
    st.dictionaries(st.sampled_from(["id", "url", "title", "published", "language", "x"]), json_values, max_size=4),
    st.none() | st.text(max_size=40) | arabic_text | json_values,
    st.booleans(),
).map(str.encode)
markdown_lines = st.one_of(
    st.builds(
        lambda alt, url: f"![{alt}]({url})\n".encode(),
        st.text(alphabet="ab ]()\n", max_size=5),
        st.sampled_from(["http://x/a.jpg", "", "<http://x/b.png>", 'http://x/c.gif "t"', "a b", ")"]),
    ),
    st.sampled_from([b"# ", b"## Title\n", b"[link](http://x/y)", b"](", b"![", b"![]()", b"    # x\n"]),
)
html_fragments = st.sampled_from(
    [
        b"<!DOCTYPE html>",
        b"<html>",
        b"</html>",
        b"<body>",
        b"</body>",
        b"<p>",
        b"</p>",
        b"<article>",
        b"<title>t</title>",
        b'<meta charset="windows-1256">',
        b'<meta charset="utf-16">',
        b'<meta http-equiv="Content-Type" content="text/html; charset=x-unknown">',
        b"<?xml version='1.0' encoding='utf-16'?>",
        b"<script>",
        b"<![CDATA[",
        b"<!--",
        b"&#0;",
        b"&#xD800;",
        b"&amp",
        b"<",
        b">",
    ]
)
special_bytes = st.sampled_from(
    [b"\0", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\r", b"\n", b"\r\n", b"\x1f\x8b\x08", b"\x85", b"\xc0\x80"]
)
# Long runs: deep nesting, huge numbers, many blank lines.
runs = st.builds(
    lambda chunk, n: chunk * n,
    st.sampled_from([b"[", b"{", b'{"a":', b"1", b"\n", b" ", b"a ", "ب ".encode(), b"![](x)\n"]),
    st.integers(1, 5000),
)
chunks = st.one_of(
    st.binary(max_size=30),
    arabic_text.map(str.encode),
    english_text.map(str.encode),
    st.text(max_size=20).map(str.encode),
    lone_surrogate_bytes,
    json_fragments,
    json_objects,
    markdown_lines,
    html_fragments,
    special_bytes,
    runs,
)
raw_inputs = st.one_of(st.binary(max_size=300), st.lists(chunks, max_size=12).map(b"".join))


# --- Readers and extraction -------------------------------------------------------------------------


def assert_readable_reason(rejection: Rejection) -> None:
    reason = rejection.reason
    assert isinstance(reason, str) and reason.strip(), rejection
    assert "\0" not in reason, rejection
    assert re.search(r"[A-Za-z]{3,}", reason), rejection  # words, not just a code


def check_items(items: list, source: str) -> None:
    """What every reader answer must satisfy, and extraction of every document never raising."""
    assert items, f"{source}: no item at all (neither a document nor a rejection)"
    for item in items:
        assert isinstance(item, RawDocument | Rejection), item
        assert item.source.startswith(source), (item.source, source)
        if isinstance(item, Rejection):
            assert_readable_reason(item)
            assert re.fullmatch(r"[0-9a-f]{64}", item.raw_hash)
            continue
        assert isinstance(item.body, str)
        result = extract(item)
        assert isinstance(result, Document | Rejection), result
        if isinstance(result, Rejection):
            assert result.source == item.source
            assert_readable_reason(result)
        else:
            assert result.text.strip(), result
            assert isinstance(result.title, str)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("suffix", SUFFIXES)
@fuzz_settings(200)
@given(data=raw_inputs)
def test_reading_any_file_never_raises_and_always_answers(fuzz_dir: Path, suffix: str, data: bytes) -> None:
    path = fuzz_dir / f"input{suffix}"
    path.write_bytes(data)
    items = list(read([str(path)], LIMIT))
    check_items(items, str(path))
    if suffix in (".txt", ".md", ".html"):
        assert len(items) == 1  # one file, one article (or one rejection)
    for item in items:
        if isinstance(item, RawDocument):
            assert item.format is (Format.HTML if suffix == ".html" else Format.SCRAPED)
    assert list(read([str(path)], LIMIT)) == items  # re-reading gives the same items (same ids)


@fuzz_settings(400)
@given(data=raw_inputs)
def test_reading_any_stdin_never_raises_and_always_answers(data: bytes) -> None:
    items = list(read(["-"], LIMIT, stdin=io.BytesIO(data)))
    check_items(items, "-")
    assert list(read(["-"], LIMIT, stdin=io.BytesIO(data))) == items


@fuzz_settings(100)
@given(
    data=raw_inputs,
    max_bytes=st.integers(0, 64),
    suffix=st.sampled_from([*SUFFIXES, ".txt.gz", ".jsonl.gz", "-"]),
    chunk=st.integers(1, 16),
)
def test_no_document_over_the_limit_gets_through(
    fuzz_dir: Path, data: bytes, max_bytes: int, suffix: str, chunk: int
) -> None:
    """The limit holds for each document: a text or page over it is one rejection; a batch over it goes
    on one document at a time, none of them over it (read in small chunks: items cut across reads)."""
    with mock.patch("docsieve.readers.CHUNK", chunk):
        if suffix == "-":
            source, items = "-", list(read(["-"], max_bytes, stdin=io.BytesIO(data)))
        else:
            path = fuzz_dir / f"limit{suffix}"
            path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
            source = str(path)
            items = list(read([source], max_bytes))
    check_items(items, source)
    for item in items:  # (a page's text in a legacy charset can take more bytes as UTF-8 than it read)
        if isinstance(item, RawDocument) and item.format is Format.SCRAPED:
            assert len(item.body.encode()) <= max_bytes, item
    if len(data) > max_bytes and suffix.startswith((".txt", ".md", ".html")):
        assert len(items) == 1 and isinstance(items[0], Rejection), items
        assert "too large" in items[0].reason


batch_objects = st.lists(
    st.fixed_dictionaries(
        {"text": st.one_of(st.text(max_size=30), arabic_text)},
        optional={"id": st.integers(0, 5) | st.text(max_size=3), "title": st.text(max_size=8), "x": json_values},
    ),
    min_size=2,
    max_size=8,
)


@fuzz_settings(150)
@given(
    objects=batch_objects,
    layout=st.sampled_from(["lines", "array", "pretty array"]),
    ascii_only=st.booleans(),
    chunk=st.integers(1, 16),
    as_stdin=st.booleans(),
)
def test_a_batch_streamed_gives_what_it_gives_read_whole(
    fuzz_dir: Path, objects: list[dict], layout: str, ascii_only: bool, chunk: int, as_stdin: bool
) -> None:
    """A batch over the limit, read a document at a time in chunks of a few bytes, gives the documents it
    gives read whole: the scanner finds every item of an array and every line whatever the escapes,
    brackets and quotes in its strings, and wherever a read cuts them."""
    if layout == "lines":
        encoded = [json.dumps(o, ensure_ascii=ascii_only) for o in objects]
        data = "\n".join(encoded).encode()
    else:
        indent = 2 if layout == "pretty array" else None
        encoded = [json.dumps(o, ensure_ascii=ascii_only, indent=indent) for o in objects]
        data = json.dumps(objects, ensure_ascii=ascii_only, indent=indent).encode()
    # An item of an array also holds the spaces around it (two more a line where pretty-printed).
    limit = max(len(e.encode()) + 2 * e.count("\n") + 4 for e in encoded)
    if as_stdin:
        source = "-"
        whole = list(read(["-"], LIMIT, stdin=io.BytesIO(data)))
    else:
        path = fuzz_dir / "stream.json"
        path.write_bytes(data)
        source = str(path)
        whole = list(read([source], LIMIT))
    assert [type(i) for i in whole] == [RawDocument] * len(objects), whole
    assert [i.body for i in whole] == [o["text"] for o in objects]
    with mock.patch("docsieve.readers.CHUNK", chunk):
        streamed = list(read([source], limit, stdin=io.BytesIO(data)))
    assert streamed == whole


@fuzz_settings(100)
@given(text=st.text(max_size=60), codec=st.sampled_from(["utf-16", "utf-16-be", "utf-32", "utf-32-be"]))
def test_utf16_and_utf32_read_as_utf8(fuzz_dir: Path, text: str, codec: str) -> None:
    """A text with a byte order mark gives what the same text in UTF-8 gives, gzipped or not."""
    # The bare codecs write their own byte order mark (the machine's order).
    encoded = text.encode(codec) if codec in ("utf-16", "utf-32") else ("\ufeff" + text).encode(codec)
    assume(not encoded.startswith(codecs.BOM_UTF16_LE + b"\0\0") or "32" in codec)  # is UTF-32's mark
    utf8, other, gzipped = fuzz_dir / "utf8.txt", fuzz_dir / "other.txt", fuzz_dir / "other.txt.gz"
    utf8.write_bytes(text.encode())
    other.write_bytes(encoded)
    gzipped.write_bytes(gzip.compress(encoded))
    expected = [replace(i, source="") for i in read([str(utf8)], LIMIT)]
    assert [replace(i, source="") for i in read([str(other)], LIMIT)] == expected
    assert [replace(i, source="") for i in read([str(gzipped)], LIMIT)] == expected


# Without backslashes: "\\xff" is how a name's byte 0xff is spelled, so a name holding that text and one
# holding the byte would be one source.
file_names = st.binary(min_size=1, max_size=12).filter(lambda b: not set(b"/\\\0") & set(b) and b not in (b".", b".."))


@fuzz_settings(60)
@given(names=st.lists(file_names, min_size=1, max_size=5, unique=True), suffix=st.sampled_from([".txt", ".pdf", ""]))
def test_any_file_name_gives_a_storable_source(fuzz_dir: Path, names: list[bytes], suffix: str) -> None:
    """Whatever bytes a name holds, each file gives an item whose source is valid text (any store takes
    it) and whose record id can be made; names that differ give sources that differ."""
    folder = os.fsencode(fuzz_dir / "names")
    shutil.rmtree(folder, ignore_errors=True)
    os.mkdir(folder)
    for name in names:
        with open(os.path.join(folder, name + suffix.encode()), "wb") as fh:
            fh.write(b"text of a file")
    items = list(read([os.fsdecode(folder)], LIMIT))
    visible = [n for n in names if not n.startswith(b".") and n.lower() + suffix.encode() not in (b"readme.txt",)]
    assert len(items) == len(visible)
    for item in items:
        item.source.encode("utf-8")  # no lone surrogate
        assert record_id(item.source, "0" * 64)
    assert len({i.source for i in items}) == len(items)


@fuzz_settings(40)
@given(data=raw_inputs)
def test_reading_a_directory_answers_for_every_file(fuzz_dir: Path, data: bytes) -> None:
    folder = fuzz_dir / "folder"
    folder.mkdir(exist_ok=True)
    names = [f"f{suffix}" for suffix in SUFFIXES] + ["g.pdf", "noext"]
    for name in names:
        (folder / name).write_bytes(data)
    items = list(read([str(folder)], LIMIT))
    check_items(items, str(folder))
    for name in names:  # every file gives at least one item
        assert any(item.source.startswith(str(folder / name)) for item in items), name
    for name in ("g.pdf", "noext"):
        (found,) = [item for item in items if item.source == str(folder / name)]
        assert isinstance(found, Rejection) and "unsupported file type" in found.reason


# The smallest inputs found by the properties above (and by hand) that broke the readers; each one alone.
MINIMAL_INPUTS = {
    "empty": b"",
    "blank-lines": b"\n \n",
    "empty-array": b"[]",
    "bom-only": b"\xef\xbb\xbf",
    "nul": b"\0",
    "invalid-utf8": b"\xff",
    "escaped-lone-surrogate": b'{"text": "\\ud800"}',
    "escaped-lone-surrogate-in-array": b'["\\ud800"]',
    "deep-nesting": b"[" * 100_000,
    "huge-integer": b'{"text": "x", "n": ' + b"1" * 5000 + b"}",
    "markdown-image-only": b"![](http://x/a.jpg)\n",
    "headline-only": b"# Title\n",
}


@pytest.mark.parametrize("suffix", [*SUFFIXES, "-"])
@pytest.mark.parametrize("data", MINIMAL_INPUTS.values(), ids=MINIMAL_INPUTS.keys())
def test_minimal_edge_inputs(fuzz_dir: Path, suffix: str, data: bytes) -> None:
    if suffix == "-":
        items = list(read(["-"], LIMIT, stdin=io.BytesIO(data)))
        check_items(items, "-")
        return
    path = fuzz_dir / f"edge{suffix}"
    path.write_bytes(data)
    check_items(list(read([str(path)], LIMIT)), str(path))


batch_texts = st.text(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(list('\n\r\x1c\x1d\x1e\x85\u2028\u2029\t"\\') + list(ARABIC_LETTERS)),
    ),
    max_size=30,
)


@fuzz_settings(150)
@given(
    texts=st.lists(batch_texts, min_size=2, max_size=5),
    ascii_only=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n"]),
    final_newline=st.booleans(),
    as_stdin=st.booleans(),
)
@example(texts=["a\u2028b", "c"], ascii_only=False, newline="\n", final_newline=False, as_stdin=False)
def test_json_lines_round_trip(
    fuzz_dir: Path, texts: list[str], ascii_only: bool, newline: str, final_newline: bool, as_stdin: bool
) -> None:
    """Every object of a JSON Lines batch written by json.dumps comes back as one document with its text."""
    lines = [json.dumps({"text": text}, ensure_ascii=ascii_only) for text in texts]
    data = (newline.join(lines) + (newline if final_newline else "")).encode()  # U+2028 stays raw in JSON
    if as_stdin:
        source, items = "-", list(read(["-"], LIMIT, stdin=io.BytesIO(data)))
    else:
        path = fuzz_dir / "batch.jsonl"
        path.write_bytes(data)
        source, items = str(path), list(read([str(path)], LIMIT))
    assert [type(item) for item in items] == [RawDocument] * len(texts), items
    assert [item.body for item in items] == texts
    # Standard input has no places: its objects are located by their text (the same piped again is stored once).
    assert [item.source for item in items] == [
        f"{source}#L{n}" if not as_stdin else "-" for n in range(1, len(texts) + 1)
    ]


scraped_bodies = st.lists(
    st.one_of(
        arabic_text,
        english_text,
        st.text(max_size=30),
        markdown_lines.map(bytes.decode),
        st.sampled_from(["\n", "\n\n", "  ", "\t", "\u00a0", "\u2028", "\u200f", "#", "###### ", "…", "؟", ".", "**"]),
    ),
    max_size=12,
).map("".join)


@fuzz_settings(300)
@given(body=scraped_bodies, title=st.none() | st.text(max_size=20) | arabic_text)
def test_extracting_any_scraped_body_never_raises(body: str, title: str | None) -> None:
    result = extract(RawDocument(source="s", body=body, title=title))
    if isinstance(result, Rejection):
        assert_readable_reason(result)
        return
    assert isinstance(result, Document)
    lines = result.text.split("\n")
    assert all(line and line == line.strip() and "  " not in line for line in lines), result.text
    assert result.title and isinstance(result.title, str)


# --- Normalizer -------------------------------------------------------------------------------------

special_chars = st.one_of(
    st.sampled_from(
        list(ARABIC_LETTERS + ARABIC_EXTRA)
        + list("\u200c\u200d\u200e\u200f\ufeff\u00a0\u2028\u3000\t\n\r\x00\x85\x1f")
        + list("ßİıſﬁﬀ…‥ÅΩKµǰΐẞ")
        + list("ﻻﷲﷺ")
        + list("abcXYZ019 .,-'")
        + list(ARABIC_SCRIPT_VARIANTS + ARABIC_SCRIPT_OTHERS)
        + FILLERS
        + FORMAT
        + LOOKALIKE_LETTERS
        + OTHER_LETTERS
        + list("\u0bc6\u0bbe\u0bd7\u0bca")  # Tamil vowel signs: the second part composes, as Hangul V and T jamo do
    ),
    st.characters(min_codepoint=0x064B, max_codepoint=0x065F),  # Arabic marks, hamza and maddah included
    st.characters(min_codepoint=0x0300, max_codepoint=0x036F),  # combining accents
    st.characters(min_codepoint=0xFB50, max_codepoint=0xFDFF),  # Arabic presentation forms A
    st.characters(min_codepoint=0xFE70, max_codepoint=0xFEFF),  # Arabic presentation forms B
    st.characters(min_codepoint=0x1100, max_codepoint=0x11FF),  # conjoining Hangul jamo
    st.characters(min_codepoint=0xAC00, max_codepoint=0xAC30),  # Hangul syllables
    st.characters(min_codepoint=0x3131, max_codepoint=0x318E),  # compatibility jamo (NFKC: conjoining jamo)
    st.characters(min_codepoint=0xFFA0, max_codepoint=0xFFDC),  # halfwidth jamo, the filler included
    st.characters(min_codepoint=0x0370, max_codepoint=0x03FF),  # Greek and Coptic
    st.characters(min_codepoint=0x0400, max_codepoint=0x052F),  # Cyrillic
    st.characters(min_codepoint=0xFB8E, max_codepoint=0xFBFF),  # presentation forms of ک گ ہ ھ ی ...
    st.characters(min_codepoint=0x1D15E, max_codepoint=0x1D164),  # musical symbols with decompositions
    st.characters(min_codepoint=0x1D400, max_codepoint=0x1D7FF),  # mathematical alphanumerics (astral)
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1F6FF),  # emoji
    st.characters(min_codepoint=0x2F800, max_codepoint=0x2FA1D),  # CJK compatibility supplement
    st.characters(min_codepoint=0x10400, max_codepoint=0x1044F),  # Deseret: astral case pairs
)
unicode_texts = st.one_of(st.text(max_size=60), st.text(special_chars, max_size=60))

ARABIC_FOLDED_AWAY = set("أإآٱىة\u0640\u0670" + ARABIC_SCRIPT_VARIANTS) | {chr(c) for c in range(0x064B, 0x0660)}
FOREIGN_DIGITS = {chr(0x0660 + i) for i in range(10)} | {chr(0x06F0 + i) for i in range(10)}


@fuzz_settings(400)
@given(text=unicode_texts)
@example("")
@example("ǰ")
@example("ﷺ")
@example("و\u0654")
@example("\U0001d400\u0301")
@example("\u1100\u3164\u1161")
@example("\u3131\u314f")
@example("\u0bc6\u200c\u0bbe")
@example("\u0420resident")
def test_normalize_is_idempotent_and_well_formed(text: str) -> None:
    once = normalize(text)
    assert isinstance(once, str)
    assert normalize(once) == once
    assert once == once.strip(" ") and "  " not in once
    assert all(ch == " " or not ch.isspace() for ch in once), once
    for ch in once:
        assert ch not in ARABIC_FOLDED_AWAY and ch not in FOREIGN_DIGITS and ch not in INVISIBLE, (text, once, ch)
        category = unicodedata.category(ch)
        assert ch == " " or (category[0] not in "PSZC" and category not in ("Mn", "Me")), (text, once, ch)


@fuzz_settings(200)
@given(text=unicode_texts)
@example("\u3131\u314f")  # compatibility jamo: NFKC makes them conjoining, and they compose
def test_normalize_sees_text_as_nfkc_does(text: str) -> None:
    assert normalize(unicodedata.normalize("NFKC", text)) == normalize(text)


def is_latin(ch: str) -> bool:
    return ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN ")


@fuzz_settings(300)
@given(text=unicode_texts)
@example("Рresident Ρжα")
def test_words_with_latin_letters_keep_no_lookalike(text: str) -> None:
    for word in normalize(text).split(" "):
        if any(map(is_latin, word)):
            assert not LOOKALIKES.keys() & set(word), (text, word)


CYRILLIC = "".join(map(chr, range(0x0410, 0x0450)))  # А-я
GREEK = "".join(chr(c) for c in [*range(0x0391, 0x03AA), *range(0x03B1, 0x03CA)] if c != 0x03A2)  # Α-Ω α-ω
one_script_words = st.one_of(
    *(st.text(alphabet=letters, min_size=1, max_size=8) for letters in (CYRILLIC, GREEK, string.ascii_letters))
)


@fuzz_settings(200)
@given(words=st.lists(one_script_words, max_size=10))
def test_words_in_one_script_keep_their_letters(words: list[str]) -> None:
    assert normalize(" ".join(words)) == " ".join(word.casefold() for word in words)


@fuzz_settings(200)
@given(texts=st.lists(unicode_texts, max_size=8))
def test_normalize_batch_equals_one_by_one(texts: list[str]) -> None:
    batch = normalize_batch(texts)
    assert len(batch.bounds) == len(texts) + 1
    for i, text in enumerate(texts):
        assert batch.text(i) == normalize(text), (i, texts)


# --- Fingerprints -----------------------------------------------------------------------------------

ARABIC_WORDS = [
    "قال",
    "الرئيس",
    "مدينة",
    "مستشفى",
    "على",
    "في",
    "عام",
    "الأمم",
    "إبراهيم",
    "آمن",
    "وزير",
    "الخارجية",
    "اجتماع",
    "مؤتمر",
    "الشرطة",
    "ٱلله",
    "الكويت",
    "كتابة",
]
ENGLISH_WORDS = [
    "the",
    "minister",
    "said",
    "on",
    "Tuesday",
    "city",
    "hospital",
    "report",
    "Reuters",
    "news",
    "police",
    "2015",
    "42",
]
words = st.lists(st.sampled_from(ARABIC_WORDS + ENGLISH_WORDS), max_size=25)
fingerprint_texts = st.one_of(words.map(" ".join), unicode_texts)

ALEFS = "اأإآٱ"
# What each letter may be written as: Persian, Urdu and Kurdish forms of Arabic letters; Cyrillic and
# Greek look-alikes of Latin letters (after a word's first letter, which stays Latin).
SPELLINGS = {"ي": "يىی", "ى": "يىی", "ك": "كک", "ه": "هةہۂۀھە", "ة": "هةۃہھە"}
LOOKALIKES_OF = {
    latin: [ch for other, to in LOOKALIKES.items() if to == latin for ch in {other, other.upper()}]
    for latin in set(LOOKALIKES.values())
}
HARAKAT = [chr(c) for c in range(0x064B, 0x0653)] + ["\u0670"]  # not hamza/maddah marks: those compose
SEPARATORS = [" ", "  ", "\n", "\t", "، ", "؛ ", " ؟ ", ", ", ". ", " - ", "\u00a0", "\u200f ", "!\n\n", "…"]


@st.composite
def variants(draw, plain_words: list[str]) -> str:
    """A spelling of the words that differs only in what normalization removes: harakat, tatweel, alef
    forms, ى/ي, ة/ه, Persian, Urdu and Kurdish letter forms, digit scripts, ASCII case, Cyrillic and
    Greek look-alikes inside Latin words, zero-width characters and fillers, punctuation and spacing."""
    out = [draw(st.sampled_from(["", *SEPARATORS]))]
    for n, word in enumerate(plain_words):
        if n:
            out.append(draw(st.sampled_from(SEPARATORS)))
        for i, ch in enumerate(word):
            if ch in ALEFS:
                ch = draw(st.sampled_from(ALEFS))
            elif ch in SPELLINGS:
                ch = draw(st.sampled_from(SPELLINGS[ch]))
            elif ch.isdigit():
                d = int(ch)
                ch = draw(st.sampled_from([str(d), chr(0x0660 + d), chr(0x06F0 + d)]))
            elif ch in string.ascii_letters:
                ch = draw(st.sampled_from([ch.lower(), ch.upper(), *(LOOKALIKES_OF.get(ch.lower(), []) if i else [])]))
            out.append(ch)
            if "\u0600" <= ch <= "\u06ff":
                out.extend(draw(st.lists(st.sampled_from([*HARAKAT, "\u0640", "\u200c"]), max_size=2)))
            if ch.isalpha():
                out.extend(draw(st.lists(st.sampled_from(FILLERS + FORMAT), max_size=1)))
    out.append(draw(st.sampled_from(["", *SEPARATORS])))
    return "".join(out)


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(str(a.dtype).encode() + a.tobytes()).hexdigest()


def summary(fp: Fingerprint) -> list[str]:
    return [fp.content_hash, sha(fp.signature), sha(fp.shingles), sha(fp.band_keys), sha(fp.winnow_keys)]


def assert_same(a: Fingerprint, b: Fingerprint) -> None:
    assert a.content_hash == b.content_hash
    for name in ("signature", "shingles", "band_keys", "winnow_keys"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


@fuzz_settings(150)
@given(
    text=fingerprint_texts,
    before=st.lists(fingerprint_texts, max_size=5),
    after=st.lists(fingerprint_texts, max_size=5),
)
def test_fingerprint_does_not_depend_on_the_batch_or_the_run(text: str, before: list[str], after: list[str]) -> None:
    alone = fingerprint_batch([text], SETTINGS)[0]
    batch = fingerprint_batch([*before, text, *after], SETTINGS)
    assert len(batch) == len(before) + 1 + len(after)
    assert_same(batch[len(before)], alone)
    assert_same(fingerprint_batch([text], SETTINGS)[0], alone)  # again: the same
    assert alone.content_hash == hashlib.sha256(normalize(text).encode()).hexdigest()
    assert np.all(np.diff(alone.shingles.astype(np.int64)) > 0)  # sorted unique
    assert alone.signature.shape == (SETTINGS.num_perm,) and alone.band_keys.shape == (SETTINGS.lsh_bands,)
    if normalize(text):
        assert alone.signature.max() < 2**32  # every bin filled (densified)


@fuzz_settings(200)
@given(data=st.data(), plain=words)
def test_content_hash_equal_iff_normalized_equal(data, plain: list[str]) -> None:
    a = " ".join(plain)
    b = data.draw(
        st.one_of(
            variants(plain),  # the same words, spelled differently
            words.flatmap(variants),  # other words
            unicode_texts,
        ),
        label="b",
    )
    fa, fb = fingerprint_batch([a, b], SETTINGS)
    assert (fa.content_hash == fb.content_hash) == (normalize(a) == normalize(b))
    if fa.content_hash == fb.content_hash:
        assert_same(fa, fb)


@fuzz_settings(150)
@given(data=st.data(), plain=words)
def test_variant_spellings_are_exact_copies(data, plain: list[str]) -> None:
    variant = data.draw(variants(plain), label="variant")
    assert normalize(variant) == normalize(" ".join(plain))
    fa, fb = fingerprint_batch([" ".join(plain), variant], SETTINGS)
    assert_same(fa, fb)


def seeded_texts() -> list[str]:
    """A fixed sample: edge cases, then texts drawn from a seeded generator."""
    texts = [
        "",
        " ",
        "،",
        "word",
        "two words",
        "قال الرئيس",
        "ǰ ﷺ ﻻ ß",
        "\U0001d400\u0301 🙂 \U0002f800",
        "ᄀ\u1161\u11a8",
    ]
    rng = random.Random(20240505)
    pool = ARABIC_WORDS + ENGLISH_WORDS + ["𝐇𝐞𝐥𝐥𝐨", "Straße", "café", "cafe\u0301", "أَهْلاً", "الـمـديـنـة", "٢٠١٥"]
    for _ in range(40):
        texts.append(" ".join(rng.choice(pool) for _ in range(rng.randint(1, 60))))
    chars = [chr(c) for c in range(0x20, 0x7F)] + list(ARABIC_LETTERS + ARABIC_EXTRA) + ["\u0654", "\u0301", "\n"]
    for _ in range(10):
        texts.append("".join(rng.choice(chars) for _ in range(rng.randint(1, 200))))
    return texts


CHILD = """
import hashlib, json, sys
from docsieve.fingerprint import fingerprint_batch
from docsieve.settings import Settings
sha = lambda a: hashlib.sha256(str(a.dtype).encode() + a.tobytes()).hexdigest()
texts = json.loads(sys.stdin.read())
print(json.dumps([[f.content_hash, sha(f.signature), sha(f.shingles), sha(f.band_keys), sha(f.winnow_keys)]
                  for f in fingerprint_batch(texts, Settings())]))
"""


def test_fingerprints_equal_across_processes(tmp_path: Path) -> None:
    texts = seeded_texts()
    here = [summary(fingerprint_batch([text], SETTINGS)[0]) for text in texts]  # one by one here, batched there
    for run, hash_seed in enumerate(("0", "4242")):
        # A fresh cache folder: the first child builds the normalizer tables, the second loads them.
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "XDG_CACHE_HOME": str(tmp_path / "cache")}
        child = subprocess.run(
            [sys.executable, "-c", CHILD],
            input=json.dumps(texts),
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            check=True,
        )
        there = json.loads(child.stdout)
        assert len(there) == len(texts)
        for text, mine, theirs in zip(texts, here, there, strict=True):
            assert mine == theirs, (run, text)
        assert any((tmp_path / "cache" / "docsieve").glob("normalize-*.npz"))
