"""Sources polled on a schedule: the sources file, what a source lists now, and which of it is new.

A source is an RSS/Atom feed, a sitemap (plain, Google News, or an index of sitemaps) or a folder of
article files. ``discover`` lists a source's entries, each with a key that stays the same across
polls; ``poll`` claims the keys (the store remembers every key it ever gave out) and enqueues only the
entries whose key was never claimed, so each entry is ingested once however often its source is polled.

Documents from the web are parsed as untrusted: entity declarations (entity expansion, "billion
laughs", external entities) are refused, and whatever cannot be read is a ``SourcesError`` that says
why, never a parser's traceback.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import tomllib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import feedparser
from defusedxml import DefusedXmlException, EntitiesForbidden

from docsieve.models import batched
from docsieve.readers import SUPPORTED, folder_files, is_readme, suffix_of
from docsieve.urls import url_key

logger = logging.getLogger(__name__)

KINDS = ("feed", "sitemap", "folder")
DEFAULT_INTERVAL = 900.0
MIN_INTERVAL = 10.0
FIELDS = frozenset({"name", "kind", "location", "interval"})
# An index of sitemaps is read to this depth (the top document is level 1) and at most this many child
# sitemaps per poll, the most recently modified first: news sites list years of monthly archives.
MAX_SITEMAP_DEPTH = 3
MAX_CHILD_SITEMAPS = 50
# Keys claimed (and their entries enqueued) per step, so a folder of many files never makes one huge
# claim, and a poll cut short keeps what it already enqueued.
CLAIM_BATCH = 500


class SourcesError(ValueError):
    """A sources file or a source's document that cannot be used; the message says which and why."""


class _NotWellFormed(SourcesError):
    """Not XML at all: fatal for a sitemap, left to feedparser's lenient parser for a feed."""


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    kind: str  # "feed" | "sitemap" | "folder"
    location: str  # URL, or an absolute folder path
    interval: float  # seconds between two polls


@dataclass(frozen=True, slots=True)
class Entry:
    key: str  # what makes it "the same entry" across polls
    location: str  # URL or file path
    title: str | None = None
    published: str | None = None  # ISO 8601


@dataclass(frozen=True, slots=True)
class PollResult:
    found: int
    new: int


GetText = Callable[[str], str]


class Claims(Protocol):
    """Which entries each source has had enqueued already (``docsieve.store.Store`` is one)."""

    def claim_entries(self, source: str, keys: list[str]) -> list[str]:
        """The keys never claimed before for this source, now claimed (atomically)."""

    def mark_sent(self, source: str, keys: list[str]) -> None:
        """The entries are enqueued: never give them out again. (A claim never marked sent, its poll killed
        in between, is given out again after a while.)"""

    def release_entries(self, source: str, keys: list[str]) -> None:
        """Forget claims whose entries could not be enqueued, so the next poll tries them again."""


Enqueue = Callable[[Source, list[Entry]], None]


# The sources file.


def load_sources(path: str | os.PathLike[str]) -> list[Source]:
    """The ``[[source]]`` tables of a TOML file; relative folder paths are relative to the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise SourcesError(f"{path}: sources file not found") from None
    except OSError as exc:
        raise SourcesError(f"{path}: cannot read the sources file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SourcesError(f"{path}: invalid TOML: {exc}") from None
    unknown = sorted(set(data) - {"source"})
    if unknown:
        raise SourcesError(
            f"{path}: unknown top-level key {', '.join(map(repr, unknown))}; sources are [[source]] tables"
        )
    tables = data.get("source", [])
    if not isinstance(tables, list):
        raise SourcesError(f"{path}: 'source' must be an array of tables: write each source as [[source]]")
    sources: list[Source] = []
    names: set[str] = set()
    for number, table in enumerate(tables, 1):
        source = _source(path, number, table)
        if source.name in names:
            raise SourcesError(
                f"{path}: source #{number} ({source.name!r}): the name is already used by another source"
            )
        names.add(source.name)
        sources.append(source)
    return sources


def _source(path: Path, number: int, table: object) -> Source:
    where = f"{path}: source #{number}"
    if not isinstance(table, dict):
        raise SourcesError(f"{where}: must be a table ([[source]])")
    name = table.get("name")
    if isinstance(name, str):
        where += f" ({name!r})"

    def fail(problem: str) -> SourcesError:
        return SourcesError(f"{where}: {problem}")

    unknown = sorted(set(table) - FIELDS)
    if unknown:
        raise fail(f"unknown key {', '.join(map(repr, unknown))}; a source has {', '.join(sorted(FIELDS))}")
    if not isinstance(name, str) or not name.strip():
        raise fail("'name' is required: a non-empty string")
    # The name is part of lock keys and schedule entry names, and claims are remembered under it.
    if name != name.strip() or not name.isprintable():
        raise fail("'name' must not have surrounding spaces or control characters")
    kind = table.get("kind")
    if kind not in KINDS:
        raise fail(f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    location = table.get("location")
    if not isinstance(location, str) or not location.strip():
        raise fail("'location' is required: a URL, or a folder path for a folder")
    location = location.strip()
    if kind == "folder":
        location = os.path.normpath(path.parent.absolute() / Path(location).expanduser())
    elif not _is_web_url(location):
        raise fail(f"'location' of a {kind} must be an http(s) URL, got {location!r}")
    return Source(name, kind, location, _interval(table.get("interval", DEFAULT_INTERVAL), fail))


def _interval(value: Any, fail: Callable[[str], SourcesError]) -> float:
    # bool is an int to Python, not to a reader of the file.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(f"'interval' must be a number of seconds, got {value!r}")
    if value < MIN_INTERVAL:
        raise fail(f"'interval' must be at least {MIN_INTERVAL:g} seconds, got {value:g}")
    return float(value)


def _is_web_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# What a source lists now.


def discover(source: Source, get_text: GetText) -> list[Entry]:
    """The source's entries, in its order, one per key. Errors of get_text (fetching) pass through."""
    return list(_entries(source, get_text))


def _entries(source: Source, get_text: GetText) -> Iterator[Entry]:
    """discover's entries as they are read: a sitemap index's children are fetched only as far as they are
    consumed."""
    if source.kind == "feed":
        entries: Iterator[Entry] = iter(_feed_entries(source, get_text))
    elif source.kind == "sitemap":
        entries = _sitemap_entries(source, get_text)
    elif source.kind == "folder":
        entries = iter(_folder_entries(source))
    else:
        raise SourcesError(f"source {source.name!r}: unknown kind {source.kind!r}")
    seen: set[str] = set()
    for entry in entries:
        if entry.key not in seen:
            seen.add(entry.key)
            yield entry


def poll(source: Source, get_text: GetText, claims: Claims, enqueue: Enqueue, *, limit: int) -> PollResult:
    """Enqueue the source's entries never claimed before, at most `limit` of them, in the source's order. The
    rest wait for the next polls: the entries enqueued now are claimed, so each poll goes on where the last one
    stopped, reading no further (no more child sitemaps) once it has its `limit`. Entries whose sending failed
    (broker down, time limit) are released, so the next poll sends them: none is lost."""
    found = new = 0
    for chunk in batched(_entries(source, get_text), CLAIM_BATCH):
        found += len(chunk)
        fresh = set(claims.claim_entries(source.name, [e.key for e in chunk]))
        todo = [e for e in chunk if e.key in fresh]
        if len(todo) > limit - new:  # claimed by this poll, beyond its limit: given back, for the next poll
            claims.release_entries(source.name, [e.key for e in todo[limit - new :]])
            del todo[limit - new :]
        if todo:
            try:
                enqueue(source, todo)
            except BaseException:
                claims.release_entries(source.name, [e.key for e in todo])
                raise
            claims.mark_sent(source.name, [e.key for e in todo])
            new += len(todo)
        if new >= limit:
            logger.info("source %r: %d new entries enqueued, the most a poll takes; the rest wait", source.name, new)
            break
    return PollResult(found=found, new=new)


def _feed_entries(source: Source, get_text: GetText) -> list[Entry]:
    what = f"source {source.name!r}: feed {source.location}"
    text = get_text(source.location)
    # Parsed here only to refuse entity declarations with a clear reason. Feeds in the wild are often
    # broken XML: feedparser's lenient parser copes with those.
    with contextlib.suppress(_NotWellFormed):
        _parse_xml(text, what)
    # Bytes, never a str: feedparser opens a str that looks like a URL or a path. The text is already
    # decoded, so the charset given here overrides whatever the XML declaration says; the location
    # resolves relative links.
    parsed = feedparser.parse(
        io.BytesIO(text.encode("utf-8", "replace")),
        response_headers={"content-type": "application/xml; charset=utf-8", "content-location": source.location},
        resolve_relative_uris=False,
        sanitize_html=False,
    )
    if not parsed.get("version") and not parsed.entries:
        reason = f" ({parsed.bozo_exception})" if parsed.get("bozo_exception") else ""
        raise SourcesError(f"{what}: not an RSS or Atom feed{reason}")
    entries = []
    for item in parsed.entries:
        link = (item.get("link") or "").strip()
        if not _is_web_url(link):
            continue  # an entry without a page to fetch
        stamp = item.get("published_parsed") or item.get("updated_parsed")
        published = datetime(*stamp[:6]).replace(tzinfo=UTC).isoformat() if stamp else None
        entries.append(
            Entry(
                key=url_key(link), location=link, title=(item.get("title") or "").strip() or None, published=published
            )
        )
    return entries


def _sitemap_entries(source: Source, get_text: GetText) -> Iterator[Entry]:
    """A urlset, or an index read breadth first within the depth and child-count bounds, each child fetched
    when the entries before it have been consumed. A child that cannot be fetched or read is skipped with a
    warning: the others still count, and it is read again at the next poll (its entries were not claimed)."""
    what = f"source {source.name!r}: sitemap {source.location}"
    root = _parse_xml(get_text(source.location), what)
    if _local(root.tag) == "urlset":
        yield from _urlset(root, source.location)
        return
    if _local(root.tag) != "sitemapindex":
        raise SourcesError(f"{what}: not a sitemap (the root element is <{_local(root.tag)}>)")
    pending = deque((url, 2) for url in _children(root, source.location))
    seen = {source.location}
    read = 0
    while pending and read < MAX_CHILD_SITEMAPS:
        url, depth = pending.popleft()
        if url in seen:
            continue
        seen.add(url)
        read += 1
        try:
            child = _parse_xml(get_text(url), f"{what}: child sitemap {url}")
        except Exception as exc:  # a fetch error (its type belongs to the fetcher) or a refused document
            logger.warning("%s: skipped child sitemap %s: %s", what, url, exc)
            continue
        if _local(child.tag) == "urlset":
            yield from _urlset(child, url)
        elif _local(child.tag) == "sitemapindex" and depth < MAX_SITEMAP_DEPTH:
            pending.extend((u, depth + 1) for u in _children(child, url))
        else:
            logger.warning("%s: skipped child sitemap %s: <%s> at depth %d", what, url, _local(child.tag), depth)
    left = {url for url, _ in pending} - seen
    if left:
        logger.warning("%s: %d child sitemaps not read (at most %d a poll)", what, len(left), MAX_CHILD_SITEMAPS)


def _urlset(root: Element, base: str) -> list[Entry]:
    entries = []
    for node in root:
        if _local(node.tag) != "url":
            continue
        url = _loc(node, base)
        if url is None:
            continue
        news = _child(node, "news")  # Google News: <news:news> with its own title and date
        published = (_text(news, "publication_date") if news is not None else None) or _text(node, "lastmod")
        title = _text(news, "title") if news is not None else None
        stamp = _date(published)
        entries.append(
            Entry(key=url_key(url), location=url, title=title, published=stamp.isoformat() if stamp else None)
        )
    return entries


def _children(index: Element, base: str) -> list[str]:
    """The child sitemaps of an index, the most recently modified first (those without a date last)."""
    children = []
    for node in index:
        url = _loc(node, base) if _local(node.tag) == "sitemap" else None
        if url is not None:
            children.append((url, _date(_text(node, "lastmod"))))
    children.sort(key=lambda c: (c[1] is None, -c[1].timestamp() if c[1] else 0.0))
    return [url for url, _ in children]


def _loc(node: Element, base: str) -> str | None:
    """The absolute http(s) URL in a <loc>, if there is one."""
    loc = _text(node, "loc")
    url = urljoin(base, loc) if loc else ""
    return url if _is_web_url(url) else None


def _parse_xml(text: str, what: str) -> Element:
    try:
        # forbid_entities refuses internal entity declarations (entity expansion) and external ones;
        # a plain DOCTYPE (RSS 0.91's) is harmless: nothing is fetched.
        return SafeET.fromstring(text.lstrip("\ufeff \t\r\n"), forbid_dtd=False, forbid_entities=True)
    except EntitiesForbidden as exc:
        external = f" pointing at {exc.sysid}" if exc.sysid else ""
        raise SourcesError(
            f"{what}: refused: the document declares the XML entity {exc.name!r}{external}; entity declarations "
            "(entity expansion, 'billion laughs', external entities) are not accepted"
        ) from None
    except DefusedXmlException as exc:
        raise SourcesError(f"{what}: refused: {type(exc).__name__} ({exc}); the document is not accepted") from None
    except SafeET.ParseError as exc:
        raise _NotWellFormed(f"{what}: not well-formed XML ({exc})") from None


def _local(tag: object) -> str:
    """An element's name without its namespace: sitemaps in the wild get the namespace URI wrong."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(node: Element, name: str) -> Element | None:
    return next((c for c in node if _local(c.tag) == name), None)


def _text(node: Element, name: str) -> str | None:
    child = _child(node, name)
    text = (child.text or "").strip() if child is not None else ""
    return text or None


def _date(text: str | None) -> datetime | None:
    """A W3C datetime (what sitemaps use); a date without a zone is taken as UTC."""
    try:
        stamp = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC) if stamp and stamp.tzinfo is None else stamp


def _folder_entries(source: Source) -> list[Entry]:
    """Every supported article file under the folder (hidden files and READMEs skipped, as the reader
    does). The key holds the file's mtime and size, so an edited file is a new entry."""
    root = os.path.abspath(source.location)
    if not os.path.isdir(root):
        raise SourcesError(f"source {source.name!r}: folder {root} does not exist or is not a folder")
    entries = []
    for _, files in folder_files(root):
        if isinstance(files, OSError):
            continue  # removed, or unreadable, since it was listed
        for entry in files:
            if entry.is_dir() or is_readme(entry.name) or suffix_of(entry.name) not in SUPPORTED:
                continue  # a link to a folder (not followed, as by the reader), a README, not an article
            try:
                stat = os.stat(entry.path)
            except OSError:
                continue  # removed since it was listed
            entries.append(Entry(key=f"{entry.path}@{stat.st_mtime_ns}:{stat.st_size}", location=entry.path))
    return entries
