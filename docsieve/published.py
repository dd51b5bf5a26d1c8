"""A document's publication time as a UTC timestamp, from the forms it arrives in.

Readers keep ``published`` as the text they found; the canonical policy (docsieve/stories.py) needs an
instant to compare. ISO 8601 (with or without an offset, what JSON batches, sitemaps and trafilatura
give), RFC 2822 (RSS), and Unix epoch seconds are understood. A time without a zone is taken as UTC;
text that is none of these gives None, and the document ranks by its arrival instead.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime

# Arabic-Indic and Persian digits, as some Arabic sites print dates.
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_EPOCH = re.compile(r"\d{9,10}(?:\.\d+)?|\d{12,13}")  # seconds (2001..2286), or milliseconds
# Years outside this are typos or placeholders (0001-01-01), not publication times.
EARLIEST_YEAR, LATEST_YEAR = 1800, 2200


def parse_published(text: str | None) -> datetime | None:
    """The UTC instant ``text`` names, or None when it names none."""
    stamp = _stamp(text)
    if stamp is None:
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def published_date(text: str | None) -> date | None:
    """The calendar date ``text`` names where it was written (its own offset, not UTC's): the publisher's day,
    which "for this day" names (docsieve/dates.py); a Riyadh item of 01:30 is of that day, though UTC's is the
    one before. None when it names no time."""
    stamp = _stamp(text)
    return None if stamp is None else stamp.date()


def _stamp(text: str | None) -> datetime | None:
    if not text:
        return None
    value = text.strip().translate(_DIGITS)
    stamp = _iso(value) or _rfc2822(value) or _epoch(value)
    if stamp is None:
        return None
    if not EARLIEST_YEAR <= stamp.year <= LATEST_YEAR:  # before moving it to UTC: 9999-12-31 -05:00 has no UTC
        return None
    return stamp


def _iso(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    # "2015-07-21 02:51:58 +0300" and "2015/07/21": forms fromisoformat does not take.
    cleaned = value.replace("/", "-")
    cleaned = re.sub(r"\s+([+-]\d{2}):?(\d{2})$", r"\1:\2", cleaned)
    try:
        return datetime.fromisoformat(cleaned)
    except ValueError:
        return None


def _rfc2822(value: str) -> datetime | None:
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


def _epoch(value: str) -> datetime | None:
    if not _EPOCH.fullmatch(value):
        return None
    seconds = float(value)
    if len(value.split(".")[0]) >= 12:
        seconds /= 1000
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
