"""Readers: turn paths, directories, stdin and JSON batches into raw documents or rejections.

A reader never raises for bad input: whatever cannot become a document becomes a ``Rejection`` with
a reason, and reading goes on with the next input. The size limit (``max_bytes``) holds for each
document: batch files (JSON Lines, JSON arrays) and gzipped input of any size are read as streams,
one document at a time, in bounded memory.
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import re
import stat
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from docsieve.models import Format, RawDocument, Rejection

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
BATCH_SUFFIXES = {".json", ".jsonl", ".ndjson"}
GZIP_SUFFIX = ".gz"
PLAIN_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | BATCH_SUFFIXES
SUPPORTED = PLAIN_SUFFIXES | {suffix + GZIP_SUFFIX for suffix in PLAIN_SUFFIXES}
BINARY_SNIFF = 8192
CHUNK = 1 << 20  # bytes read at a time from a stream
GZIP_MAGIC = b"\x1f\x8b"
# Text compresses 3 to 20 times; deflate at most about 1,000 times. Past INFLATE_BUDGET bytes decompressed,
# gzip input that decompresses to more than this many times what was read of it is taken for a decompression
# bomb (Apache POI refuses zip entries at the same ratio). Memory is bounded whatever the input (documents
# are streamed); the budget bounds the time a bomb takes (1 GiB: seconds), while a batch of many near
# identical records, which compresses a thousand times, is read whole up to it.
MAX_INFLATE_RATIO = 100
INFLATE_BUDGET = 1 << 30
# UTF-32's marks first: UTF-32 LE's begins with UTF-16 LE's.
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
LIMIT_SETTING = "DOCSIEVE_MAX_DOCUMENT_BYTES"

Item = RawDocument | Rejection


@dataclass(frozen=True, slots=True)
class FieldMap:
    """Which field of a batch's JSON objects holds each part of a document (``--text-field content``...).
    ``outlet`` is the publisher, e.g. SaudiNewsNet's ``source``; the record's own ``source`` is where the
    document was read."""

    text: str = "text"
    id: str = "id"
    title: str = "title"
    url: str = "url"
    published: str = "published"
    author: str = "author"
    language: str = "language"
    outlet: str = "source"


DEFAULT_FIELDS = FieldMap()


def suffix_of(name: str) -> str:
    """The suffix the readers go by, in lower case: ".jsonl.gz" for a gzipped batch, else the last one."""
    base, suffix = os.path.splitext(name.lower())
    if suffix == GZIP_SUFFIX and (inner := os.path.splitext(base)[1]):
        return inner + suffix
    return suffix


def read(
    paths: Iterable[str],
    max_bytes: int,
    stdin: BinaryIO | None = None,
    root: str | None = None,
    fields: FieldMap = DEFAULT_FIELDS,
) -> Iterator[Item]:
    """Every document under the given paths, in order; ``-`` reads standard input. With ``root``, only
    files that really are inside that folder are read (a watched folder's files, not where a symlink or
    a ``..`` in their path leads); a folder's own files are always held to that folder. ``fields`` names
    the fields of JSON objects."""
    real_root = os.path.realpath(root) if root is not None else None
    for given in paths:
        if given == "-":
            stream = stdin or sys.stdin.buffer
            # read1: what one read of the terminal or pipe gives. read(n) would wait for n bytes past an
            # end of input typed at a terminal (Ctrl-D), so that a person had to type it twice.
            read = getattr(stream, "read1", stream.read)
            yield from _read_stream("-", _Stream(read), None, max_bytes, fields)
            continue
        path = _absolute(given)
        source = _spelled(path)
        if real_root is not None and not _inside(given, real_root):
            yield _outside(source, given, real_root)
            continue
        try:
            mode = os.stat(given).st_mode
        except (FileNotFoundError, NotADirectoryError):
            yield Rejection.of(source, "no such file or directory", source)
            continue
        except OSError as exc:
            yield Rejection.of(source, f"cannot read: {_why(exc)}", source)
            continue
        if stat.S_ISDIR(mode):
            yield from _read_directory(path, max_bytes, real_root or os.path.realpath(path), fields)
        elif not stat.S_ISREG(mode):
            yield _not_regular(source, mode)
        else:
            yield from _read_file(source, given, suffix_of(given), max_bytes, fields)


def read_body(source: str, data: bytes, max_bytes: int, fields: FieldMap = DEFAULT_FIELDS) -> Iterator[Item]:
    """The documents of a JSON batch in hand (an HTTP request's body): a JSON array, one object, or JSON
    Lines, as a batch file's. An object is located by its id, else by its text alone, so the same object
    sent again is the same record wherever it stands in the batch."""
    return _read_batch(source, data, None, max_bytes, fields, positional=False)


def oversized(rejection: Rejection) -> bool:
    """Whether the input was rejected for its size alone (past ``max_bytes``)."""
    return LIMIT_SETTING in rejection.reason


def _absolute(path: str) -> str:
    """The path as a source: absolute and normalized ("./a//b/" is "/cwd/a/b"), so one file is one
    source however it is spelled. Not the real path: a symlink keeps its own name, and a watched
    folder's files their path under the folder. Only where a ".." follows a symlink would the normalized
    path name another file: the real path then."""
    absolute = os.path.abspath(path)
    if ".." in path.split(os.sep) and os.path.realpath(absolute) != os.path.realpath(path):
        return os.path.realpath(path)
    return absolute


def _spelled(path: str) -> str:
    """A path as text that every store can hold: a name's bytes that are not UTF-8 (which Python holds as
    lone surrogates) written as ``\\xff``."""
    if path.isascii():
        return path
    try:
        path.encode()
        return path
    except UnicodeEncodeError:
        try:
            raw = os.fsencode(path)
        except UnicodeEncodeError:  # a surrogate that no file name decodes to
            raw = path.encode("utf-8", "surrogatepass")
        return raw.decode("utf-8", "backslashreplace")


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _inside(path: str, real_root: str) -> bool:
    return os.path.commonpath([os.path.realpath(path), real_root]) == real_root


def _outside(source: str, path: str, real_root: str) -> Rejection:
    where = _spelled(os.path.realpath(path))
    reason = f"outside the folder being read ({_spelled(real_root)}): the path leads to {where}"
    return Rejection.of(source, reason, source)


def _not_regular(source: str, mode: int) -> Rejection:
    """Reading a FIFO waits for a writer, a device can be endless: neither is opened."""
    if stat.S_ISFIFO(mode):
        kind = "a FIFO"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    elif stat.S_ISCHR(mode):
        kind = "a character device"
    elif stat.S_ISBLK(mode):
        kind = "a block device"
    else:
        kind = "a special file"
    return Rejection.of(source, f"not a regular file: {kind}", f"{source}\0{kind}")


def _not_a_file(source: str, path: str) -> Rejection:
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:  # a link to nothing, say
        return Rejection.of(source, f"cannot read file: {_why(exc)}", source)
    return _not_regular(source, mode)


def folder_files(top: str) -> Iterator[tuple[str, list[os.DirEntry[str]] | OSError]]:
    """Each folder under ``top`` (itself first) with its entries that are not folders, in name order, or
    the error that kept it from being listed: a folder's files, then its subfolders in name order, depth
    first. A stack of the folders still to read rather than recursion (``os.walk`` recurses on Python
    3.11): any depth, and one folder open at a time (each is listed and closed before its files are
    given). ``os.scandir``: the directory entries already say which are links and folders, and for
    folders of many small articles the extra system calls and objects would cost as much as the reads.
    Hidden entries are left out; symlinked folders are not followed (they are given as entries)."""
    pending = [top]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted((e for e in listing if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as exc:
            yield folder, exc
            continue
        yield folder, [e for e in entries if not e.is_dir(follow_symlinks=False)]
        pending.extend(reversed([e.path for e in entries if e.is_dir(follow_symlinks=False)]))


def is_readme(name: str) -> bool:
    """A folder's own description, not an article."""
    return name.lower() in ("readme.md", "readme.txt")


def _read_directory(top: str, max_bytes: int, real_root: str, fields: FieldMap) -> Iterator[Item]:
    """Every file under a folder (``folder_files``), read or rejected with the reason."""
    for folder, files in folder_files(top):
        if isinstance(files, OSError):
            shown = _spelled(folder)
            yield Rejection.of(shown, f"cannot read folder: {_why(files)}", shown)
            continue
        for entry in files:
            name, path = entry.name, entry.path
            if is_readme(name):
                continue
            source = _spelled(path)
            suffix = suffix_of(name)
            if entry.is_symlink() and os.path.isdir(path):
                reason = "a link to a folder: not followed (give the folder itself to read it)"
                yield Rejection.of(source, reason, source)
            elif entry.is_symlink() and not _inside(path, real_root):
                yield _outside(source, path, real_root)
            elif not entry.is_file():  # from the listing: no system call for most entries
                yield _not_a_file(source, path)
            elif suffix not in SUPPORTED:
                kinds = ", ".join(sorted(PLAIN_SUFFIXES))
                reason = f"unsupported file type {suffix or '(no suffix)'!r}; docsieve reads {kinds} (each also .gz)"
                yield Rejection.of(source, reason, source)
            else:
                yield from _read_file(source, path, suffix, max_bytes, fields)


def _read_file(source: str, path: str, suffix: str, max_bytes: int, fields: FieldMap) -> Iterator[Item]:
    # Opened without blocking and checked on the open file: a FIFO put in place of a file after it was
    # listed is refused here, not waited on.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        yield Rejection.of(source, f"cannot read file: {_why(exc)}", source)
        return
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            yield _not_regular(source, status.st_mode)
            return
        size, kind = status.st_size, _format_of(suffix)
        if size > max_bytes and kind != "jsonl" and not suffix.endswith(GZIP_SUFFIX):
            yield Rejection.of(
                source,
                f"file too large: {size:,} bytes, the limit is {max_bytes:,} ({LIMIT_SETTING})",
                f"{source}\0{size}",
            )
            return
        if size > max_bytes or suffix.endswith(GZIP_SUFFIX):
            yield from _read_stream(source, _Stream(lambda n: os.read(fd, n)), suffix, max_bytes, fields)
            return
        # One read of the size fstat gave, plus one byte: a file that grew past the limit since is
        # refused by _read_bytes. Plain file descriptors: a buffered file object per small article
        # costs more than its read.
        data = os.read(fd, size + 1)
        while len(data) != size and len(data) <= max_bytes and (more := os.read(fd, max_bytes + 1 - len(data))):
            data += more
    except OSError as exc:
        yield Rejection.of(source, f"cannot read file: {_why(exc)}", source)
        return
    finally:
        os.close(fd)
    yield from _read_bytes(source, data, kind, max_bytes, fields)


def _format_of(suffix: str) -> str:
    suffix = suffix.removesuffix(GZIP_SUFFIX)
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in BATCH_SUFFIXES:
        return "jsonl"
    return "text"


SNIFFED_LINES = 5  # of standard input, to tell JSON Lines from text
_ARRAY_OF_OBJECTS = re.compile(rb"\s*\[\s*\{")


def _sniff_format(data: bytes, complete: bool = True) -> str:
    """What standard input holds. Text that merely starts with a bracket ("[Reuters] ...") is text:
    JSON only when the whole input, or one of its first lines, parses (one broken line does not make a
    batch text), or, for input over the limit, of which only the start was read, when it starts as an
    array of objects."""
    data = data.removeprefix(codecs.BOM_UTF8)
    head = data[:512].lstrip().lower()
    if head.startswith((b"{", b"[")):
        first_lines = data.lstrip().split(b"\n", SNIFFED_LINES)[:SNIFFED_LINES]  # not the rest after them
        if any(isinstance(_parse(line.decode("utf-8", "replace")), dict | list) for line in first_lines):
            return "jsonl"
        if complete and _parse(data.decode("utf-8", "replace")):
            return "jsonl"
        if not complete and _ARRAY_OF_OBJECTS.match(data):
            return "jsonl"
        return "text"
    if head.startswith((b"<!doctype html", b"<html")) or b"<body" in data[:4096].lower():
        return "html"
    return "text"


class _Unreadable(Exception):
    """Input that stops making sense part way (corrupt gzip data, a bad UTF-16 sequence): the message says why."""


class _Stream:
    """The bytes of an input in order, from a function that reads up to n of them (b"" at the end); what
    ``peek`` looked at is read again."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._ahead = b""
        self._ended = False  # once the input said so: a terminal asked again would wait for more

    def read(self, n: int) -> bytes:
        """Up to n bytes; b"" only at the end."""
        data = self._ahead or self._pull(n)
        data, self._ahead = data[:n], data[n:]
        return data

    def peek(self, n: int) -> bytes:
        while len(self._ahead) < n and (more := self._pull(n - len(self._ahead))):
            self._ahead += more
        return self._ahead[:n]

    def _pull(self, n: int) -> bytes:
        if self._ended:
            return b""
        try:
            data = self._read(n)
        except OSError as exc:  # the disk or pipe failed (gzip's errors are said by _Inflating)
            raise _Unreadable(f"cannot read: {_why(exc)}") from exc
        self._ended = not data
        return data

    def read_up_to(self, n: int) -> bytes:
        """n bytes, fewer only at the end."""
        parts = []
        while n > 0 and (part := self.read(n)):
            parts.append(part)
            n -= len(part)
        return b"".join(parts)


class _Inflating:
    """Gzip input decompressed as it is read (gzip.GzipFile: every member, CRC checked), refusing a
    decompression bomb once past ``floor`` bytes (see MAX_INFLATE_RATIO)."""

    def __init__(self, compressed: _Stream, floor: int) -> None:
        self._compressed = compressed
        self._floor = floor
        self.consumed = 0
        self.produced = 0
        self._gzip = gzip.GzipFile(fileobj=self, mode="rb")  # type: ignore[call-overload]  # it only reads

    def read(self, n: int) -> bytes:
        """The compressed bytes, for GzipFile (this is its file object), counted."""
        data = self._compressed.read(n)
        self.consumed += len(data)
        return data

    def inflate(self, n: int) -> bytes:
        try:
            data = self._gzip.read(n)
        except EOFError as exc:
            raise _Unreadable(f"gzip data cut short: {exc}") from exc
        except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise _Unreadable(f"not valid gzip data: {exc}") from exc
        self.produced += len(data)
        if self.produced > self._floor and self.produced > MAX_INFLATE_RATIO * self.consumed:
            raise _Unreadable(
                f"a decompression bomb: {self.consumed:,} bytes of gzip data decompress to more than "
                f"{self.produced:,} (over {MAX_INFLATE_RATIO} times)"
            )
        return data


class _Transcoding:
    """UTF-16 or UTF-32 input (by its byte order mark) as UTF-8, decoded as it is read."""

    def __init__(self, encoded: _Stream, codec: str) -> None:
        self._encoded = encoded
        self._codec = codec
        self._decoder = codecs.getincrementaldecoder(codec)()
        self._consumed = 0
        self._done = False

    def read(self, n: int) -> bytes:
        while not self._done:
            data = self._encoded.read(n)
            pending = len(self._decoder.getstate()[0])  # bytes of a character the last read cut
            try:
                text = self._decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                at = self._consumed - pending + exc.start
                raise _Unreadable(f"not valid {self._codec.upper()}: {exc.reason} at offset {at}") from exc
            self._consumed += len(data)
            self._done = not data
            if text:
                return text.encode()  # the decoders refuse lone surrogates: always encodable
        return b""


def _byte_order(data: bytes) -> str | None:
    """The codec of a UTF-16 or UTF-32 byte order mark at the start, if any (UTF-8's is dropped later)."""
    return next((codec for mark, codec in BYTE_ORDER_MARKS if data.startswith(mark)), None)


def _read_stream(source: str, stream: _Stream, suffix: str | None, max_bytes: int, fields: FieldMap) -> Iterator[Item]:
    """An input read as a stream: standard input (``suffix`` None: its format is sniffed), a gzipped
    file, or a batch file over the limit. Input up to the limit is read whole; a batch over it goes on
    one document at a time."""
    gzipped = suffix.endswith(GZIP_SUFFIX) if suffix is not None else stream.peek(2) == GZIP_MAGIC
    try:
        if gzipped:
            stream = _Stream(_Inflating(stream, max(max_bytes + 1, INFLATE_BUDGET)).inflate)
        if codec := _byte_order(stream.peek(4)):
            stream = _Stream(_Transcoding(stream, codec).read)
        head = stream.read_up_to(max_bytes + 1)
    except _Unreadable as exc:
        yield Rejection.of(source, str(exc), f"{source}\0{exc}")
        return
    if len(head) <= max_bytes:
        yield from _read_bytes(source, head, _format_of(suffix) if suffix is not None else None, max_bytes, fields)
        return
    kind = _format_of(suffix) if suffix is not None else _sniff_format(head, complete=False)
    if kind != "jsonl":
        what = "file" if suffix is not None else "input"
        how = " decompressed" if gzipped else ""
        reason = f"{what} too large: more than {max_bytes:,} bytes{how} ({LIMIT_SETTING})"
        yield Rejection.of(source, reason, head)
    elif head.find(b"\0", 0, BINARY_SNIFF) != -1:
        yield Rejection.of(source, "binary data, not text (NUL bytes in the first 8 KiB)", head)
    else:
        yield from _read_batch(source, head, stream, max_bytes, fields, positional=suffix is not None)


def _read_bytes(source: str, data: bytes, kind: str | None, max_bytes: int, fields: FieldMap) -> Iterator[Item]:
    """A whole input; ``kind`` None sniffs it (standard input)."""
    positional = kind is not None
    if len(data) > max_bytes:
        yield Rejection.of(source, f"input too large: more than {max_bytes:,} bytes ({LIMIT_SETTING})", data)
        return
    if codec := _byte_order(data):
        try:
            data = data.decode(codec).encode()
        except UnicodeDecodeError as exc:
            yield Rejection.of(source, f"not valid {codec.upper()}: {exc.reason} at offset {exc.start}", data)
            return
    if data.find(b"\0", 0, BINARY_SNIFF) != -1:
        yield Rejection.of(source, "binary data, not text (NUL bytes in the first 8 KiB)", data)
        return
    kind = kind or _sniff_format(data)
    if kind == "html":
        yield RawDocument(source=source, body=_decode_html(data), format=Format.HTML)
        return
    if kind == "jsonl":
        yield from _read_batch(source, data, None, max_bytes, fields, positional)
        return
    try:
        text = _utf8(data)
    except UnicodeDecodeError as exc:
        yield _not_utf8(source, data, exc)
        return
    yield RawDocument(source=source, body=text, format=Format.SCRAPED)


def _not_utf8(source: str, data: bytes, exc: UnicodeDecodeError) -> Rejection:
    at = exc.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)  # in the file
    return Rejection.of(source, f"not valid UTF-8: byte 0x{data[at]:02x} at offset {at}", data)


def _utf8(data: bytes) -> str:
    """UTF-8 without a leading byte order mark: the "utf-8-sig" codec does the same through a Python
    function per call, a fifth slower for an article."""
    return data.removeprefix(codecs.BOM_UTF8).decode()


def _decode_html(data: bytes) -> str:
    """HTML bytes to text, decoded as a fetched page without a charset in its header would be."""
    from docsieve.fetch import decode_text  # imported here: the fetcher brings requests, slow to import

    return decode_text(data, None)


def _read_batch(
    source: str, head: bytes, rest: _Stream | None, max_bytes: int, fields: FieldMap, positional: bool
) -> Iterator[Item]:
    """A JSON array of objects, one JSON object (however it is laid out), or JSON Lines: one document
    per object. ``head`` is the whole input, or with ``rest`` its start. A file that is one object gives
    the same source whether or not it is on one line. A batch without a single object is itself
    rejected: nothing passes unnoticed. ``positional`` False (standard input, where a line's place says
    nothing of the document): an object without an id is located by its text alone, so the same
    objects piped again are the same records."""
    items = 0
    try:
        for item in _batch_items(source, head, rest, max_bytes, fields, positional):
            items += 1
            yield item
    except _Unreadable as exc:
        after = f", after {items} item{'s' if items > 1 else ''}" if items else ""
        yield Rejection.of(source, f"{exc}{after}", f"{source}\0{exc}")
        return
    if not items:
        yield Rejection.of(source, "an empty batch: no JSON object in it", head)


_FIRST_CHARACTER = re.compile(rb"(?:\xef\xbb\xbf)?\s*(\S)")


def _batch_items(
    source: str, head: bytes, rest: _Stream | None, max_bytes: int, fields: FieldMap, positional: bool
) -> Iterator[Item]:
    first = _FIRST_CHARACTER.match(head)
    opening = first.group(1) if first else b""
    at = first.start(1) if first else 0
    if opening == b"[":
        for number, item in _array_items(head, at + 1, rest, max_bytes):
            where = f"{source}#{number}"
            if isinstance(item, str):
                yield Rejection.of(source, f"invalid JSON: {item}", f"{source}\0{item}")
            elif isinstance(item, int):
                yield _too_large(where, f"item {number}", item, max_bytes)
            else:
                yield _from_json(source, f"#{number}", item, f"item {number}", max_bytes, fields, positional)
        return
    if opening == b"{":
        if rest is None:
            try:
                whole = _parse(_utf8(head))
            except UnicodeDecodeError:
                whole = None  # not one object; lines, each decoded alone
            if isinstance(whole, dict):
                yield _from_object(source, "", whole, max_bytes, fields, positional)
                return
        elif head[at : head.find(b"\n", at)].strip() == b"{":  # one object over lines
            reason = f"one JSON object larger than {max_bytes:,} bytes ({LIMIT_SETTING})"
            yield Rejection.of(source, reason, f"{source}\0{reason}")
            return
    for number, line in _lines(head, rest, max_bytes):
        where = f"{source}#L{number}"
        if isinstance(line, int):
            yield _too_large(where, f"line {number}", line, max_bytes)
            continue
        if number == 1:
            line = line.removeprefix(codecs.BOM_UTF8)
        yield from _from_line(source, number, line.removesuffix(b"\r"), max_bytes, fields, positional)


def _too_large(where: str, what: str, size: int, max_bytes: int) -> Rejection:
    reason = f"{what} too large: {size:,} bytes, the limit is {max_bytes:,} ({LIMIT_SETTING})"
    return Rejection.of(where, reason, f"{where}\0{size}")


def _from_line(
    source: str, number: int, line: bytes, max_bytes: int, fields: FieldMap, positional: bool
) -> Iterator[Item]:
    where = f"{source}#L{number}"
    try:
        text = line.decode()
    except UnicodeDecodeError as exc:
        reason = f"line {number} is not valid UTF-8: byte 0x{line[exc.start]:02x} at column {exc.start + 1}"
        yield Rejection.of(where, reason, line)
        return
    if text.strip():
        yield _from_json(source, f"#L{number}", line, f"line {number}", max_bytes, fields, positional, text)


def _from_json(
    source: str,
    locator: str,
    raw: bytes,
    what: str,
    max_bytes: int,
    fields: FieldMap,
    positional: bool,
    text: str | None = None,
) -> Item:
    """One object of a batch from its JSON text (``text``, else ``raw`` decoded)."""
    where = source + locator
    try:
        obj = json.loads(text if text is not None else raw.decode())
    except UnicodeDecodeError as exc:
        return Rejection.of(where, f"{what} is not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}", raw)
    except (ValueError, RecursionError) as exc:  # also a number too long to convert, or nesting too deep
        return Rejection.of(where, f"{what} is not valid JSON: {_json_reason(exc)}", raw)
    return _from_object(source, locator, obj, max_bytes, fields, positional)


# What the array scanner stops at outside strings: the structure, and a string's start.
_STRUCTURE = re.compile(rb'["\[\]{},]')


def _array_items(
    data: bytes, start: int, rest: _Stream | None, max_bytes: int
) -> Iterator[tuple[int, bytes | int | str]]:
    """The items of a JSON array whose opening bracket ends at ``start`` of ``data`` (the input, or its
    start followed by ``rest``), numbered from 1: each item's JSON text, or its size for an item over
    ``max_bytes`` (skipped without being held), or a message where the array is broken (not closed, or
    followed by more than whitespace). Items are found by their commas and brackets at the array's top
    level, never parsed here: a streaming JSON parser (ijson) would hand over each item whole, however
    large; this holds at most ``max_bytes`` of one."""
    depth, in_string, carried = 1, False, 0  # carried: backslashes ending the last chunk, inside a string
    number, size, closed = 0, 0, False
    parts: list[bytes] = []
    item_start = pos = start
    while True:
        while not closed and pos < len(data):
            if in_string:
                end = data.find(b'"', pos)
                if end == -1:
                    carried = _backslashes_before(data, pos, len(data), carried)
                    pos = len(data)
                else:  # a quote after an odd run of backslashes is escaped
                    in_string = _backslashes_before(data, pos, end, carried) % 2 == 1
                    carried, pos = 0, end + 1
                continue
            match = _STRUCTURE.search(data, pos)
            if match is None:
                pos = len(data)
                continue
            mark, pos = match.group(), match.end()
            if mark == b'"':
                in_string = True
            elif mark in (b"[", b"{"):
                depth += 1
            elif depth > 1:
                if mark != b",":
                    depth -= 1
            else:  # a comma or the closing bracket of the array itself
                size += match.start() - item_start
                item = size if size > max_bytes else b"".join([*parts, data[item_start : match.start()]])
                if mark == b"," or number or isinstance(item, int) or item.strip():  # "[]" has no item
                    number += 1
                    yield number, item
                parts, size, item_start, closed = [], 0, pos, mark != b","
        if closed:
            if data[pos:].strip():
                yield number, "more after the end of the array"
                return
        else:
            size += len(data) - item_start
            parts = [*parts, data[item_start:]] if size <= max_bytes else []
        data = rest.read(CHUNK) if rest is not None else b""
        pos = item_start = 0
        if not data:
            if not closed:
                item = size if size > max_bytes else b"".join(parts)
                if isinstance(item, int) or item.strip():
                    yield number + 1, item
                yield number + 1, "the array is not closed (the input ends before its closing bracket)"
            return


def _backslashes_before(data: bytes, start: int, end: int, carried: int) -> int:
    """How many backslashes end ``data[start:end]``, with ``carried`` more where the run fills it."""
    i = end
    while i > start and data[i - 1] == 0x5C:
        i -= 1
    return end - i + (carried if i == start else 0)


def _lines(head: bytes, rest: _Stream | None, max_bytes: int) -> Iterator[tuple[int, bytes | int]]:
    """The lines of the input (``head``, then ``rest``), numbered from 1, without their "\\n": each
    line's bytes, or its size for a line over ``max_bytes`` (skipped to the next newline without being
    held). Lines end at \\n only: str.splitlines() would also cut at U+2028 and others, which JSON
    strings hold as they are."""
    number, size = 0, 0
    parts: list[bytes] = []  # the start of a line that goes on in the next chunk
    data = head
    while True:
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            number += 1
            size += end - start
            yield number, size if size > max_bytes else b"".join([*parts, data[start:end]])
            parts, size, start = [], 0, end + 1
        size += len(data) - start
        if size > max_bytes:
            parts = []
        elif start < len(data):
            parts.append(data[start:])
        data = rest.read(CHUNK) if rest is not None else b""
        if not data:
            if size:
                yield number + 1, size if size > max_bytes else b"".join(parts)
            return


def _parse(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # also an integer past Python's digit limit, or nesting too deep
        return None


def _json_reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}" + (f" of line {exc.lineno}" if exc.lineno > 1 else "")
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


# Besides text: the fields kept as text, and those of them also taken as an integer (in decimal digits).
OPTIONAL_FIELDS = ("title", "url", "published", "author", "language", "outlet")
INTEGER_FIELDS = ("id", "published")


def _from_object(source: str, locator: str, obj: object, max_bytes: int, fields: FieldMap, positional: bool) -> Item:
    """A document from one JSON object. Text fields are strings; ``id`` and ``published`` may also be
    integers (taken as their decimal digits); ``author`` may be a list of strings (joined with ", ").
    Any other value is rejected with the field's name, never kept as Python's spelling of it. The
    outlet is a string, an integer, or an object with a string ``name`` (NewsAPI's ``source``); a value
    of another kind is no outlet and is left out, since ``source``, the field it is read from unless
    said otherwise, means other things in other layouts. The source is ``source`` and the id (``#id``),
    else the object's place (``locator``), which ``positional`` False leaves out."""
    try:
        raw = json.dumps(obj, ensure_ascii=False, sort_keys=True).encode()
    except UnicodeEncodeError as exc:  # JSON may escape a lone surrogate ("\ud800"): no text can hold it
        reason = f"not valid Unicode: a lone surrogate U+{ord(exc.object[exc.start]):04X} in the object"
        return Rejection.of(source + locator, reason, json.dumps(obj, sort_keys=True).encode())
    if not isinstance(obj, dict):
        return Rejection.of(source + locator, f"expected a JSON object, got {type(obj).__name__}", raw)
    values: dict[str, str] = {}
    for name in ("id", *OPTIONAL_FIELDS):
        key = getattr(fields, name)
        value = obj.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, str):
            values[name] = value
        elif name in (*INTEGER_FIELDS, "outlet") and isinstance(value, int) and not isinstance(value, bool):
            values[name] = str(value)
        elif name == "author" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            if joined := ", ".join(v for v in value if v):
                values[name] = joined
        elif name == "outlet":
            if isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"]:
                values[name] = value["name"]
        else:
            allowed = "a string or an integer" if name in INTEGER_FIELDS else "a string"
            where = source + (f"#{values['id']}" if "id" in values else locator)
            return Rejection.of(where, f"'{key}' must be {allowed}, got {type(value).__name__}", raw)
    if "id" in values:
        locator = f"#{values['id']}"
    where = source + locator
    text = obj.get(fields.text)
    if not isinstance(text, str):
        key = fields.text
        missing = f"has no '{key}' field" if text is None else f"has a '{key}' of type {type(text).__name__}"
        return Rejection.of(where, f"object {missing}; '{key}' is required", raw)
    if len(text.encode()) > max_bytes:
        return Rejection.of(where, f"text too large: more than {max_bytes:,} bytes ({LIMIT_SETTING})", raw)
    return RawDocument(
        source=where if positional or "id" in values else source,
        body=text,
        format=Format.SCRAPED,
        title=values.get("title"),
        url=values.get("url"),
        published=values.get("published"),
        language=values.get("language"),
        author=values.get("author"),
        outlet=values.get("outlet"),
    )
