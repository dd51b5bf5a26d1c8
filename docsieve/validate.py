"""Validation: each document's values are made storable, or the document is rejected, one at a time and
before either store sees them, so both stores keep the same records and one bad value costs only its own
document (PostgreSQL refuses a whole COPY for one NUL character or one value longer than its column).

Rules:
- NUL (U+0000) is no text, and PostgreSQL cannot store it: in any value it becomes U+FFFD, the
  replacement character a decoder puts where input could not be read. Word breaks stay where they were
  (normalization treats both as a break), so fingerprints are as they would have been.
- A lone surrogate cannot be encoded for either store: it becomes U+FFFD too. Readers spell a file name
  that is not UTF-8 with ``\\xNN`` escapes and decode texts strictly, so only a value from elsewhere (a
  program calling the pipeline itself) can hold one. Texts are not checked for them: the check would
  cost a good part of a fingerprint.
- ``language`` must be a language tag (``ar``, ``en-GB``, ``zh_Hant``) of at most 16 characters, and
  ``published`` at most 64 characters (a date): otherwise the document is rejected, saying which value
  is wrong, since a wrong field mapping is better told than stored.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from docsieve.models import LANGUAGE_MAX_CHARS, PUBLISHED_MAX_CHARS, Document, Rejection

REPLACEMENT = "\ufffd"
LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
SHOWN_CHARS = 40  # of a wrong value, in the reason


def validate(item: Document | Rejection) -> Document | Rejection:
    """The item with storable values, or the rejection of a document whose values are wrong."""
    if isinstance(item, Rejection):
        source, reason = storable(item.source), storable(item.reason)
        return item if (source, reason) == (item.source, item.reason) else replace(item, source=source, reason=reason)
    doc = item
    cleaned: dict[str, Any] = {
        name: storable(value)
        for name in ("source", "title", "url", "published", "author", "outlet", "language")
        if (value := getattr(doc, name)) is not None and _UNSTORABLE.search(value)
    }
    if "\0" in doc.text:
        cleaned["text"] = doc.text.replace("\0", REPLACEMENT)
    if any(_UNSTORABLE.search(image) for image in doc.images):
        cleaned["images"] = tuple(storable(image) for image in doc.images)
    if cleaned:
        doc = replace(doc, **cleaned)
    problem = _problem(doc)
    if problem:
        return Rejection.of(doc.source, problem, doc.text)
    return doc


def storable(value: str) -> str:
    """The value with NUL and lone surrogates replaced by U+FFFD."""
    return _UNSTORABLE.sub(REPLACEMENT, value)


def _problem(doc: Document) -> str | None:
    if doc.language is not None and not (
        len(doc.language) <= LANGUAGE_MAX_CHARS and LANGUAGE_TAG.fullmatch(doc.language)
    ):
        return (
            f"'language' must be a language tag such as 'ar' or 'en-GB' of at most {LANGUAGE_MAX_CHARS} "
            f"characters, got {_shown(doc.language)}"
        )
    if doc.published is not None and len(doc.published) > PUBLISHED_MAX_CHARS:
        return f"'published' must be a date of at most {PUBLISHED_MAX_CHARS} characters, got {_shown(doc.published)}"
    return None


def _shown(value: str) -> str:
    return repr(value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "…") + f" ({len(value)} characters)"
