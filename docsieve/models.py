"""The small dataclasses data flows through: source -> document -> fingerprint -> decision -> record."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # numpy is not imported at run time: `docsieve submit` needs these classes, not numpy
    import numpy as np

T = TypeVar("T")

# The columns of these values are bounded (docsieve/store.py); docsieve/validate.py holds documents to them.
LANGUAGE_MAX_CHARS = 16
PUBLISHED_MAX_CHARS = 64


class Status(StrEnum):
    CANONICAL = "canonical"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class Method(StrEnum):
    EXACT = "exact"
    NEAR = "near"
    CONTAINMENT = "containment"
    REWRITE = "rewrite"  # the rewrite stage (docsieve/rewrites.py): the same words, reworded


class Format(StrEnum):
    SCRAPED = "scraped"  # .txt/.md in the scraped shape: image line, optional headline, paragraphs
    HTML = "html"


@dataclass(frozen=True, slots=True)
class RawDocument:
    """One document as a reader found it, before extraction."""

    source: str  # the path or URL as given; "path#id" or "path#L<n>" for one object of a batch
    body: str
    format: Format = Format.SCRAPED
    title: str | None = None
    url: str | None = None
    published: str | None = None
    language: str | None = None
    author: str | None = None
    outlet: str | None = None  # the publisher a batch names (its "source" field), not where it was read


@dataclass(frozen=True, slots=True)
class Rejection:
    """Input that could not become a document, with a reason a person can read."""

    source: str
    reason: str
    raw_hash: str  # SHA-256 of the raw bytes, so re-reading the same bad input adds nothing

    @property
    def id(self) -> str:
        return record_id(self.source, self.raw_hash)

    @classmethod
    def of(cls, source: str, reason: str, raw: bytes | str) -> Rejection:
        """A rejection of the given raw input, identified by its SHA-256."""
        data = raw.encode() if isinstance(raw, str) else raw
        return cls(source=source, reason=reason, raw_hash=hashlib.sha256(data).hexdigest())


@dataclass(frozen=True, slots=True)
class Document:
    """A clean article: text without markup, images apart, title and language known."""

    source: str
    text: str
    title: str
    images: tuple[str, ...] = ()
    language: str | None = None
    url: str | None = None
    published: str | None = None
    author: str | None = None
    outlet: str | None = None


@dataclass(frozen=True, slots=True)
class Fingerprint:
    content_hash: str  # SHA-256 of the normalized text
    shingles: np.ndarray = field(repr=False)  # sorted unique uint32 shingle hashes, for verification
    signature: np.ndarray = field(repr=False)  # uint64 MinHash hash values (< 2**32), datasketch layout
    band_keys: np.ndarray = field(repr=False)  # int64 LSH bucket keys, one per band
    winnow_keys: np.ndarray = field(repr=False)  # int64 keys of the winnowed shingles (containment index)
    minima: np.ndarray = field(repr=False)  # uint32 bin minima of the shingles (fingerprint.bin_minima)
    seed: int = 1
    words: np.ndarray | None = field(default=None, repr=False)  # sorted unique uint32 stem ids (rewrites on)
    days: dict[tuple[int, int, int], frozenset[int]] | None = field(default=None, repr=False)  # docsieve/dates.py
    figures: tuple[tuple[str, int, int], ...] | None = field(default=None, repr=False)  # docsieve/figures.py

    def minhash(self):
        """The signature as datasketch's ``LeanMinHash``. Its storage layout is the one datasketch calls
        "legacy" (uint64 values below 2**32); compare it only with signatures docsieve made."""
        from datasketch import LeanMinHash

        return LeanMinHash(seed=self.seed, hashvalues=self.signature, scheme="legacy")


@dataclass(frozen=True, slots=True)
class Sketch:
    """What verification needs of a stored record."""

    record_id: str
    shingles: np.ndarray
    minima: np.ndarray  # fingerprint.bin_minima of the shingles


@dataclass(frozen=True, slots=True)
class Record:
    id: str
    source: str
    status: Status
    content_hash: str
    duplicate_of: str | None = None
    similarity: float | None = None
    method: Method | None = None
    language: str | None = None
    title: str | None = None
    text: str | None = None
    images: tuple[str, ...] = ()
    reason: str | None = None
    url: str | None = None
    published: str | None = None
    author: str | None = None
    created_at: str | None = None
    outlet: str | None = None
    # The story this record belongs to, and for a copy its overlap with the story's canonical record.
    story_id: str | None = None
    published_at: datetime | None = None  # ``published`` as a UTC instant, when it names one
    jaccard: float | None = None
    containment: float | None = None
    changed_at: str | None = None

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "source": self.source,
            "status": str(self.status),
            "duplicate_of": self.duplicate_of,
            "similarity": self.similarity,
            "method": str(self.method) if self.method else None,
            "content_hash": self.content_hash,
            "language": self.language,
            "title": self.title,
            "text": self.text,
            "images": list(self.images),
            "reason": self.reason,
            "url": self.url,
            "published": self.published,
            "author": self.author,
            "outlet": self.outlet,
            "created_at": self.created_at,
            "story_id": self.story_id,
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "jaccard": self.jaccard,
            "containment": self.containment,
            "changed_at": self.changed_at,
        }


@dataclass(frozen=True, slots=True)
class Story:
    """One story: its canonical record, its copies (each with its overlap with the canonical), the stories its
    records hold (a roundup's items, or another item a copy carries), and the records that hold it."""

    id: str
    canonical: Record
    members: list[Record]
    # (story id, containment of its canonical, the record of this story that holds it): each held story once, by the
    # record that holds most of it (copies of one text often each hold the same other story)
    contains: list[tuple[str, float | None, str]]
    contained_in: list[tuple[str, float | None]]  # (id of a record of another story that holds it, containment)
    created_at: str | None = None
    changed_at: str | None = None

    @property
    def first_published(self) -> datetime | None:
        dated = [r.published_at for r in (self.canonical, *self.members) if r.published_at]
        return min(dated) if dated else None

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "canonical": self.canonical.id,
            "title": self.canonical.title,
            "first_published": self.first_published.isoformat() if self.first_published else None,
            "outlets": sorted({r.outlet for r in (self.canonical, *self.members) if r.outlet}),
            "records": 1 + len(self.members),
            "members": [
                {
                    "id": r.id,
                    "source": r.source,
                    "outlet": r.outlet,
                    "url": r.url,
                    "published": r.published_at.isoformat() if r.published_at else r.published,
                    "method": str(r.method) if r.method else None,
                    "similarity": r.similarity,
                    "jaccard": r.jaccard,
                    "containment": r.containment,
                }
                for r in (self.canonical, *self.members)
            ],
            "contains": [{"story": s, "containment": c, "record": r} for s, c, r in self.contains],
            "contained_in": [{"record": r, "containment": c} for r, c in self.contained_in],
            "created_at": self.created_at,
            "changed_at": self.changed_at,
        }


@dataclass(frozen=True, slots=True)
class MergedStory:
    """A story found to be one with another, which took its records (``export --stories --since`` says so, that a
    consumer drops it)."""

    id: str
    merged_into: str
    changed_at: str | None = None

    def to_json(self) -> dict:
        return {"id": self.id, "merged_into": self.merged_into, "changed_at": self.changed_at}


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` items (the last shorter) from any iterable, read lazily."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def record_id(source: str, content_hash: str) -> str:
    """Deterministic id: the same text from the same source is the same record, however often it comes.

    The same text from another source is another record (an exact copy linked to the canonical one).
    """
    return hashlib.sha256(f"{source}\0{content_hash}".encode()).hexdigest()[:20]
