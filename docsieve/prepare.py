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
    each = prepare_each(batch, settings)
    return [r for r in each if isinstance(r, Rejection)], [p for p in each if isinstance(p, Prepared)]


def prepare_each(batch: list[Item], settings: Settings) -> list[Rejection | Prepared]:
    """``prepare``'s work, one result for each input, in the inputs' order."""
    html_limits = HtmlLimits(settings.max_html_chars, settings.extract_timeout)
    results = [validate(item if isinstance(item, Rejection) else extract(item, html_limits)) for item in batch]
    documents = [d for d in results if isinstance(d, Document)]
    fingerprints = iter(fingerprint_documents(documents, settings))
    each: list[Rejection | Prepared] = []
    for result in results:
        if isinstance(result, Rejection):
            each.append(result)
            continue
        fp = next(fingerprints)
        if not len(fp.shingles):
            reason = "no words left after normalization (punctuation or symbols only)"
            each.append(Rejection.of(result.source, reason, result.text))
        else:
            each.append(Prepared(record_id(result.source, fp.content_hash), result, fp, keys_of(fp)))
    return each


def fingerprint_documents(documents: list[Document], settings: Settings) -> list[Fingerprint]:
    texts = [doc.text for doc in documents]
    return [
        fp
        for start in range(0, len(texts), FINGERPRINT_CHUNK)
        for fp in fingerprint_batch(texts[start : start + FINGERPRINT_CHUNK], settings)
    ]
