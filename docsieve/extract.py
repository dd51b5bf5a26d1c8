"""Extraction: a raw document becomes a clean article (text, title, images) or a rejection.

The scraped shape: a markdown image line ``![](url)``, an optional headline line, then paragraphs,
one per line or separated by blank lines. Markdown image and link syntax is not text: image URLs go
to ``images``, link texts stay. HTML goes through trafilatura.
"""

from __future__ import annotations

import ctypes
import html
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from docsieve.models import Document, Format, RawDocument, Rejection

IMAGE = re.compile(r"!\[[^\]\n]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"\n]*\")?\s*\)")
LINK = re.compile(r"\[([^\]\n]*)\]\(\s*[^)\s]*(?:\s+\"[^\"\n]*\")?\s*\)")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
# A run of two or more dots is a pause in Arabic news writing ("وسط التقشف الصارم.. هل"), not a sentence end.
SENTENCE_END = re.compile(r"(?:(?<!\.)\.(?!\.)|[!?؟…。])[\"'»”)\]]*(?=\s|$)")
# A line ending so is a sentence of the body, not a headline. Not "?" and "؟": question headlines are common
# (203 of 16,339 SaudiNewsNet titles), while a body opening on a short question is rare (10 of 9,289 articles).
HEADLINE_ENDS = (".", "!", "…", ":", "؛", "،", ",", ";")
MAX_HEADLINE_CHARS = 200
MAX_HEADLINE_WORDS = 30
MAX_TITLE_CHARS = 160
# trafilatura falls back to whatever text a page has; a few words are navigation, not an article.
MIN_HTML_WORDS = 10
# A label of at most this many words before the title at the very end of a text ("رابط الخبر بصحيفة الوئام:
# <title>", "Read more: <title>") is a link back to the article, not a part of it, when it opens with one of
# LINK_WORDS: "the minister said: <the headline's words>" is text.
MAX_FOOTER_LABEL_WORDS = 6
LINK_WORDS = frozenset(
    {"رابط", "الرابط", "المصدر", "مصدر", "اقرأ", "إقرأ", "اقرا", "للمزيد", "link", "read", "source", "more", "via"}
    | {"continue", "lire", "voir", "fuente", "leer", "quelle", "mehr", "lesen"}
)
# Marks a scrape leaves around a title (directional marks, zero-width characters), which do not make it another.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


@dataclass(frozen=True, slots=True)
class HtmlLimits:
    """Bounds of HTML extraction, whose cost grows with the page's elements: a hostile page of flat
    ``<div>``s takes trafilatura minutes and gigabytes, where a real article page is well under a megabyte
    and quick (figures in docs/benchmarks.md; settings.py has the defaults)."""

    max_chars: int = 5_000_000
    timeout: float = 10.0  # seconds


def extract(raw: RawDocument, html_limits: HtmlLimits = HtmlLimits()) -> Document | Rejection:
    if raw.format is Format.HTML:
        return _extract_html(raw, html_limits)
    return _extract_scraped(raw)


def _extract_scraped(raw: RawDocument) -> Document | Rejection:
    images: list[str] = []

    def keep_image(match: re.Match[str]) -> str:
        if match.group(1):
            images.append(match.group(1))
        return " "

    body = raw.body
    if "![" in body:  # markdown image syntax somewhere: one pass over the whole body
        body = IMAGE.sub(keep_image, body)
    if "](" in body:  # and link syntax
        body = LINK.sub(r"\1", body)
    # Fold runs of whitespace, Unicode spaces included. isprintable() is False for every separator but
    # the ASCII space, so a body without double spaces whose lines are all printable (most articles)
    # needs no folding: plain newline splits and strips, no split and join per line.
    parts = body.split("\n")
    plain = "  " not in body and all(map(str.isprintable, parts))
    if plain and "#" not in body:  # no folding and no headings: the common case, in C-level passes
        lines = [line for line in map(str.strip, parts) if line]
        first_is_heading = False
    else:
        lines, first_is_heading = _lines(body, plain)
    if not lines:
        return Rejection.of(raw.source, "no article text (empty, whitespace or images only)", raw.body)

    title = raw.title.strip() if raw.title else None
    title_words = _words(title) if title else []
    first = lines[0]
    if title and _same_words(title_words, first):
        lines = lines[1:]  # the headline repeats the given title
    elif not title and len(lines) > 1 and (first_is_heading or _looks_like_headline(first)):
        title, lines = first, lines[1:]
        title_words = _words(title)
    if title and lines:
        lines = _without_title_footer(lines, title_words)
        if not lines:
            return Rejection.of(raw.source, "no article text (a headline and a link back to it only)", raw.body)
    text = "\n".join(lines)
    if not text:
        return Rejection.of(raw.source, "no article text (a headline only)", raw.body)
    return Document(
        source=raw.source,
        text=text,
        title=title or _first_sentence(text),
        images=tuple(dict.fromkeys(images)),
        language=raw.language,
        url=raw.url,
        published=raw.published,
        author=raw.author,
        outlet=raw.outlet,
    )


def _without_title_footer(lines: list[str], wanted: list[str]) -> list[str]:
    """The lines without a footer that links back to the article: a label opening with a link word and ending
    with a colon, then the title, at the very end of the text, on a line of its own or after the last sentence.
    One outlet of the sample corpus ends each of its 1,229 articles so ("رابط الخبر بصحيفة الوئام: <title>"); left
    in, the footer's title words are a part of the text no copy elsewhere shares, and count against every copy
    of a short item. ``wanted``: the title's words (``_words``)."""
    last = lines[-1]
    colon = last.rfind(":")
    while colon >= 0 and not _same_words(wanted, tail := last[colon + 1 :]):
        if len(tail.split()) > len(wanted) + 2:
            return lines  # more words after this colon than the title has, and after any colon before it
        colon = last.rfind(":", 0, colon)
    if colon < 0:
        return lines
    before = last[:colon]
    ends = list(SENTENCE_END.finditer(before))
    kept = before[: ends[-1].end()].rstrip() if ends else ""
    label = [w for w in before[len(kept) :].split() if any(c.isalnum() for c in w)]
    if not label or len(label) > MAX_FOOTER_LABEL_WORDS or label[0].strip("-–—|•").lower() not in LINK_WORDS:
        return lines
    return [*lines[:-1], kept] if kept else lines[:-1]


def _same_words(words: list[str], text: str) -> bool:
    """Whether ``text`` holds these words (``_words``), whatever its spacing, HTML entities or invisible marks. A
    text of other length in words is not decoded (a long paragraph's decoding cost 10% of an ingest)."""
    return bool(words) and abs(len(text.split()) - len(words)) <= 2 and words == _words(text)


def _words(text: str) -> list[str]:
    return _INVISIBLE.sub("", html.unescape(text)).split()


def _lines(body: str, plain: bool) -> tuple[list[str], bool]:
    """The non-empty lines of a body, markdown heading marks removed and whitespace folded, and whether
    the first of them was a heading."""
    lines: list[str] = []
    first_is_heading = False
    for line in body.split("\n") if plain else body.splitlines():
        had_heading = line.lstrip(" ").startswith("#") and bool(HEADING.match(line))
        if had_heading:
            line = HEADING.sub("", line)
        line = line.strip() if plain or (line.isprintable() and "  " not in line) else " ".join(line.split())
        if line:
            if not lines:
                first_is_heading = had_heading
            lines.append(line)
    return lines, first_is_heading


def _looks_like_headline(line: str) -> bool:
    return (
        len(line) <= MAX_HEADLINE_CHARS and len(line.split()) <= MAX_HEADLINE_WORDS and not line.endswith(HEADLINE_ENDS)
    )


def _first_sentence(text: str) -> str:
    first_paragraph = text.split("\n", 1)[0]
    match = SENTENCE_END.search(first_paragraph)
    sentence = first_paragraph[: match.end()] if match else first_paragraph
    if len(sentence) <= MAX_TITLE_CHARS:
        return sentence
    cut = sentence.rfind(" ", 0, MAX_TITLE_CHARS)
    return sentence[: cut if cut > 0 else MAX_TITLE_CHARS].rstrip(" ,،؛;:") + "…"


def _extract_html(raw: RawDocument, limits: HtmlLimits) -> Document | Rejection:
    import trafilatura  # imported here: slow to import, and only HTML needs it

    if len(raw.body) > limits.max_chars:
        reason = (
            f"HTML page too large to extract: {len(raw.body):,} characters, the limit is {limits.max_chars:,} "
            "(DOCSIEVE_MAX_HTML_CHARS)"
        )
        return Rejection.of(raw.source, reason, raw.body)
    try:
        with _deadline(limits.timeout):
            result = trafilatura.bare_extraction(
                raw.body, url=raw.url, with_metadata=True, include_comments=False, include_tables=False
            )
    except ExtractionTimeout:
        reason = f"HTML extraction took more than {limits.timeout:g} s (DOCSIEVE_EXTRACT_TIMEOUT)"
        return Rejection.of(raw.source, reason, raw.body)
    except Exception as exc:  # trafilatura raises many lxml types on hostile markup; the batch goes on
        return Rejection.of(raw.source, f"HTML could not be parsed: {type(exc).__name__}: {exc}", raw.body)
    assert not isinstance(result, dict)  # as_dict is False: trafilatura's Document, or None
    if result is None or len((result.text or "").split()) < MIN_HTML_WORDS:
        return Rejection.of(raw.source, "no article text found in the HTML page", raw.body)
    paragraphs = [" ".join(p.split()) for p in (result.text or "").splitlines()]
    text = "\n".join(p for p in paragraphs if p)
    return Document(
        source=raw.source,
        text=text,
        title=(result.title or "").strip() or _first_sentence(text),
        images=(result.image,) if result.image else (),
        language=raw.language,
        url=raw.url or result.url,
        published=raw.published or result.date,
        author=raw.author or (result.author or "").strip() or None,
        outlet=raw.outlet,
    )


class ExtractionTimeout(BaseException):
    """Raised in an extracting thread by ``_deadline``. A BaseException, as KeyboardInterrupt is: the broad
    ``except Exception`` of the libraries it passes through must not swallow it."""


_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise ExtractionTimeout in this thread once ``seconds`` have passed, wherever its Python code is.

    Written here because no other bound fits: SIGALRM reaches only the main thread (a program using the
    library may extract on any of its threads), and a process per page would cost a fork per document,
    where Celery's daemonic pool processes may not even start a process pool. trafilatura is Python over
    lxml, whose calls are short, so an exception set on the thread (CPython's ``PyThreadState_SetAsyncExc``)
    arrives within moments.
    """
    thread = threading.get_ident()
    lock = threading.Lock()
    state = {"active": True, "fired": False}

    def expire() -> None:
        with lock:
            if state["active"]:
                state["fired"] = True
                _set_async_exc(thread, ExtractionTimeout)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["active"] = False
        if state["fired"]:
            # It fired as the block ended: if it is not raised yet, cancel it (the block's work is done), so that
            # it cannot land later in code that does not expect it.
            _set_async_exc(thread, ctypes.py_object())
