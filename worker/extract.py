"""Extraction: a raw document becomes a clean article (text, title, images) or a rejection.

The scraped shape: a markdown image line ``![](url)``, an optional headline line, then paragraphs,
one per line or separated by blank lines. Markdown image and link syntax is not text: image URLs go
to ``images``, link texts stay. HTML goes through trafilatura.
"""

from __future__ import annotations

import re

from worker.models import Document, Format, RawDocument, Rejection

IMAGE = re.compile(r"!\[[^\]\n]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"\n]*\")?\s*\)")
LINK = re.compile(r"\[([^\]\n]*)\]\(\s*[^)\s]*(?:\s+\"[^\"\n]*\")?\s*\)")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
SENTENCE_END = re.compile(r"(?<=[.!?؟…。])[\"'»”)\]]*(?=\s|$)")
HEADLINE_ENDS = (".", "!", "?", "؟", "…", ":", "؛", "،", ",", ";")
MAX_HEADLINE_CHARS = 200
MAX_HEADLINE_WORDS = 30
MAX_TITLE_CHARS = 160
# trafilatura falls back to whatever text a page has; a few words are navigation, not an article.
MIN_HTML_WORDS = 10


def extract(raw: RawDocument) -> Document | Rejection:
    if raw.format is Format.HTML:
        return _extract_html(raw)
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
    first = lines[0]
    if title and " ".join(title.split()) == first:
        lines = lines[1:]  # the headline repeats the given title
    elif not title and len(lines) > 1 and (first_is_heading or _looks_like_headline(first)):
        title, lines = first, lines[1:]
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


def _extract_html(raw: RawDocument) -> Document | Rejection:
    import trafilatura  # imported here: slow to import, and only HTML needs it

    try:
        result = trafilatura.bare_extraction(
            raw.body, url=raw.url, with_metadata=True, include_comments=False, include_tables=False
        )
    except Exception as exc:  # trafilatura raises many lxml types on hostile markup; the batch goes on
        return Rejection.of(raw.source, f"HTML could not be parsed: {type(exc).__name__}: {exc}", raw.body)
    if result is None or len((result.text or "").split()) < MIN_HTML_WORDS:
        return Rejection.of(raw.source, "no article text found in the HTML page", raw.body)
    paragraphs = [" ".join(p.split()) for p in result.text.splitlines()]
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
