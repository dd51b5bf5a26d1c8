"""Readers: turn paths, directories, stdin and JSON batches into raw documents or rejections.

A reader never raises for bad input: whatever cannot become a document becomes a ``Rejection`` with
a reason, and reading goes on with the next input.
"""

from __future__ import annotations

import codecs
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from worker.models import Format, RawDocument, Rejection

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
BATCH_SUFFIXES = {".json", ".jsonl", ".ndjson"}
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | BATCH_SUFFIXES
BINARY_SNIFF = 8192

Item = RawDocument | Rejection


def read(
    paths: Iterable[str], max_bytes: int, stdin: BinaryIO | None = None, root: str | None = None
) -> Iterator[Item]:
    """Every document under the given paths, in order; ``-`` reads standard input. With ``root``, only
    files that really are inside that folder are read (a watched folder's files, not where a symlink or
    a ``..`` in their path leads); a folder's own files are always held to that folder."""
    real_root = os.path.realpath(root) if root is not None else None
    for given in paths:
        if given == "-":
            stream = stdin or sys.stdin.buffer
            yield from _read_bytes("-", stream.read(max_bytes + 1), _sniff_format, max_bytes)
            continue
        path = Path(given)
        if real_root is not None and not _inside(given, real_root):
            yield _outside(given, real_root)
        elif path.is_dir():
            yield from _read_directory(path, max_bytes, real_root or os.path.realpath(path))
        elif path.is_file():
            yield from _read_file(given, path, os.path.splitext(given)[1].lower(), max_bytes)
        else:
            yield Rejection.of(given, "no such file or directory", given.encode())


def _inside(path: str, real_root: str) -> bool:
    return os.path.commonpath([os.path.realpath(path), real_root]) == real_root


def _outside(path: str, real_root: str) -> Rejection:
    where = os.path.realpath(path)
    return Rejection.of(path, f"outside the folder being read ({real_root}): the path leads to {where}", path.encode())


def _read_directory(root: Path | str, max_bytes: int, real_root: str) -> Iterator[Item]:
    """A folder's files in name order, then its subfolders in name order. ``os.scandir`` rather than
    ``os.walk`` and a ``Path`` per file: the directory entries already say which are links and folders,
    and for folders of many small articles the extra system calls and objects cost as much as the
    reads. Hidden entries are skipped; symlinked folders are not followed."""
    try:
        with os.scandir(root) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        yield Rejection.of(str(root), f"cannot read folder: {exc.strerror or exc}", str(root).encode())
        return
    folders = []
    for entry in entries:
        name, path = entry.name, entry.path
        if name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            folders.append(path)
            continue
        if name.lower() in ("readme.md", "readme.txt"):
            continue  # a folder's own description is not an article
        suffix = os.path.splitext(name)[1].lower()
        if entry.is_symlink() and os.path.isdir(path):
            reason = "a link to a folder: not followed (give the folder itself to read it)"
            yield Rejection.of(path, reason, path.encode())
        elif entry.is_symlink() and not _inside(path, real_root):
            yield _outside(path, real_root)
        elif suffix in SUPPORTED:
            yield from _read_file(path, path, suffix, max_bytes)
        else:
            yield Rejection.of(
                path,
                f"unsupported file type {suffix or '(no suffix)'!r}; docsieve reads {', '.join(sorted(SUPPORTED))}",
                path.encode(),
            )
    for folder in folders:
        yield from _read_directory(folder, max_bytes, real_root)


def _read_file(source: str, path: str | Path, suffix: str, max_bytes: int) -> Iterator[Item]:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size > max_bytes:
                yield Rejection.of(
                    source,
                    f"file too large: {size:,} bytes, the limit is {max_bytes:,} (DOCSIEVE_MAX_DOCUMENT_BYTES)",
                    f"{source}\0{size}".encode(),
                )
                return
            # One read of the size fstat gave, plus one byte: a file that grew past the limit since is
            # refused by _read_bytes. Plain file descriptors: a buffered file object per small article
            # costs more than its read.
            data = os.read(fd, size + 1)
            while len(data) != size and len(data) <= max_bytes and (more := os.read(fd, max_bytes + 1 - len(data))):
                data += more
        finally:
            os.close(fd)
    except OSError as exc:
        yield Rejection.of(source, f"cannot read file: {exc.strerror or exc}", source.encode())
        return
    yield from _read_bytes(source, data, lambda _: _format_of(suffix), max_bytes)


def _format_of(suffix: str) -> str:
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in BATCH_SUFFIXES:
        return "jsonl"
    return "text"


def _sniff_format(data: bytes) -> str:
    """What standard input holds. Text that merely starts with a bracket ("[Reuters] ...") is text:
    JSON only when the whole input, or its first line, parses."""
    head = data[:512].lstrip().lower()
    if head.startswith((b"{", b"[")):
        first_line = data.lstrip().split(b"\n", 1)[0]
        if _parse(first_line.decode("utf-8", "replace")) is not None or _parse(data.decode("utf-8", "replace")):
            return "jsonl"
        return "text"
    if head.startswith((b"<!doctype html", b"<html")) or b"<body" in data[:4096].lower():
        return "html"
    return "text"


def _read_bytes(source: str, data: bytes, format_of, max_bytes: int) -> Iterator[Item]:
    if len(data) > max_bytes:
        yield Rejection.of(
            source, f"input too large: more than {max_bytes:,} bytes (DOCSIEVE_MAX_DOCUMENT_BYTES)", data
        )
        return
    if data.find(b"\0", 0, BINARY_SNIFF) != -1:
        yield Rejection.of(source, "binary data, not text (NUL bytes in the first 8 KiB)", data)
        return
    kind = format_of(data)
    if kind == "html":
        text = _decode_html(data)
        if text is None:
            yield Rejection.of(source, "HTML in an unknown character encoding", data)
        else:
            yield RawDocument(source=source, body=text, format=Format.HTML)
        return
    try:
        text = _utf8(data)
    except UnicodeDecodeError as exc:
        at = exc.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)  # in the file
        yield Rejection.of(source, f"not valid UTF-8: byte 0x{data[at]:02x} at offset {at}", data)
        return
    if kind == "jsonl":
        yield from _read_batch(source, text, max_bytes)
    else:
        yield RawDocument(source=source, body=text, format=Format.SCRAPED)


def _utf8(data: bytes) -> str:
    """UTF-8 without a leading byte order mark: the "utf-8-sig" codec does the same through a Python
    function per call, a fifth slower for an article."""
    return data.removeprefix(codecs.BOM_UTF8).decode()


def _decode_html(data: bytes) -> str | None:
    """HTML bytes to text: UTF-8 when valid, else the charset the page declares or that detection finds."""
    try:
        return _utf8(data)
    except UnicodeDecodeError:
        pass
    from trafilatura.utils import decode_file  # imported here: trafilatura is slow to import

    text = decode_file(data)
    return text if isinstance(text, str) else None


def _read_batch(source: str, text: str, max_bytes: int) -> Iterator[Item]:
    """A JSON array of objects, one JSON object (however it is laid out), or JSON Lines: one document
    per object. A file that is one object gives the same source whether or not it is on one line. A
    batch without a single object is itself rejected: nothing passes unnoticed."""
    items = 0
    for item in _batch_items(source, text, max_bytes):
        items += 1
        yield item
    if not items:
        yield Rejection.of(source, "an empty batch: no JSON object in it", text.encode())


def _batch_items(source: str, text: str, max_bytes: int) -> Iterator[Item]:
    stripped = text.strip()
    whole = _parse(stripped)
    if isinstance(whole, dict):
        yield _from_object(source, "", whole, max_bytes)
        return
    if stripped.startswith("["):
        if not isinstance(whole, list):
            yield Rejection.of(source, f"invalid JSON: {_json_error(stripped)}", text.encode())
            return
        for number, obj in enumerate(whole, 1):
            yield _from_object(source, f"#{number}", obj, max_bytes)
        return
    # Lines end at \n only: str.splitlines() would also cut at U+2028 and others, which JSON strings hold as they are.
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:  # also a number too long to convert, or nesting too deep
            why = _json_reason(exc)
            yield Rejection.of(f"{source}#L{number}", f"line {number} is not valid JSON: {why}", line.encode())
            continue
        yield _from_object(source, f"#L{number}", obj, max_bytes)


def _parse(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # also an integer past Python's digit limit, or nesting too deep
        return None


def _json_error(text: str) -> str:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except (ValueError, RecursionError) as exc:
        return _json_reason(exc)
    return "not an array of objects"


def _json_reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def _from_object(source: str, locator: str, obj: object, max_bytes: int) -> Item:
    try:
        raw = json.dumps(obj, ensure_ascii=False, sort_keys=True).encode()
    except UnicodeEncodeError as exc:  # JSON may escape a lone surrogate ("\ud800"): no text can hold it
        reason = f"not valid Unicode: a lone surrogate U+{ord(exc.object[exc.start]):04X} in the object"
        return Rejection.of(source + locator, reason, json.dumps(obj, sort_keys=True).encode())
    if not isinstance(obj, dict):
        return Rejection.of(source + locator, f"expected a JSON object, got {type(obj).__name__}", raw)
    if obj.get("id") not in (None, ""):
        locator = f"#{obj['id']}"
    where = source + locator
    text = obj.get("text")
    if not isinstance(text, str):
        missing = "has no 'text' field" if text is None else f"has a 'text' of type {type(text).__name__}"
        return Rejection.of(where, f"object {missing}; 'text' is required", raw)
    if len(text.encode()) > max_bytes:
        return Rejection.of(where, f"text too large: more than {max_bytes:,} bytes (DOCSIEVE_MAX_DOCUMENT_BYTES)", raw)

    def field(name: str) -> str | None:
        value = obj.get(name)
        return str(value) if value not in (None, "") else None

    return RawDocument(
        source=where,
        body=text,
        format=Format.SCRAPED,
        title=field("title"),
        url=field("url"),
        published=field("published"),
        language=field("language"),
    )
