"""Preparing a batch: extraction and fingerprints, which need neither the store nor its lock (in the
deployment, outside it; in one process, simply first).

Preparing the next batch on a thread of its own while this one was decided, and keeping the cyclic
garbage collector out of the way, were tried and taken out: each gained less than 5% of a 5,000-article
ingest, whose work almost all holds the GIL (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from docsieve.extract import HtmlLimits, extract
from docsieve.fingerprint import fingerprint_batch
from docsieve.index import keys_of
from docsieve.models import Document, Fingerprint, Rejection, record_id
from docsieve.readers import Item
from docsieve.settings import Settings
from docsieve.validate import validate

FINGERPRINT_CHUNK = 64  # the vectorized fingerprint is fastest when a chunk's arrays stay in cache


@dataclass(frozen=True, slots=True)
class Prepared:
    """A document ready to be decided."""

    id: str
    document: Document
    fingerprint: Fingerprint
    keys: np.ndarray


def prepare(batch: list[Item], settings: Settings) -> tuple[list[Rejection], list[Prepared]]:
    """Extraction and fingerprints of a batch; what cannot become a document is rejected. (The language
    is detected in ``Pipeline.store_prepared``, before the lock.)"""
    rejections: list[Rejection] = []
    documents: list[Document] = []
    html_limits = HtmlLimits(settings.max_html_chars, settings.extract_timeout)
    for item in batch:
        result = validate(item if isinstance(item, Rejection) else extract(item, html_limits))
        if isinstance(result, Rejection):
            rejections.append(result)
        else:
            documents.append(result)
    fingerprints = fingerprint_documents(documents, settings)
    prepared = []
    for doc, fp in zip(documents, fingerprints, strict=True):
        if not len(fp.shingles):
            reason = "no words left after normalization (punctuation or symbols only)"
            rejections.append(Rejection.of(doc.source, reason, doc.text))
            continue
        rid = record_id(doc.source, fp.content_hash)
        prepared.append(Prepared(rid, doc, fp, keys_of(fp)))
    return rejections, prepared


def fingerprint_documents(documents: list[Document], settings: Settings) -> list[Fingerprint]:
    texts = [doc.text for doc in documents]
    return [
        fp
        for start in range(0, len(texts), FINGERPRINT_CHUNK)
        for fp in fingerprint_batch(texts[start : start + FINGERPRINT_CHUNK], settings)
    ]
