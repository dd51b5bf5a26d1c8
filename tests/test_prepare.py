"""Preparing a batch (docsieve/prepare.py): extraction, validation and fingerprints, before any lock."""

from __future__ import annotations

import numpy as np

from docsieve.index import keys_of
from docsieve.models import RawDocument, Rejection, record_id
from docsieve.prepare import prepare
from docsieve.settings import Settings
from tests.conftest import fixture_text


def test_a_batch_is_prepared_in_order_and_what_cannot_be_a_document_says_why() -> None:
    article = fixture_text("ar_near_a.txt")
    batch = [
        RawDocument("a.txt", article),
        Rejection.of("bad.bin", "binary data", b"\x00\x01"),  # as a reader hands one over
        RawDocument("blank.txt", "  \n\n"),
        RawDocument("marks.txt", "!!! ... ؟؟؟ ---"),
        RawDocument("b.txt", fixture_text("ar_other.txt")),
        RawDocument("again.txt", article),
    ]
    rejections, prepared = prepare(batch, Settings())
    assert [p.document.source for p in prepared] == ["a.txt", "b.txt", "again.txt"]
    reasons = {r.source: r.reason for r in rejections}
    assert reasons["bad.bin"] == "binary data"
    assert reasons["blank.txt"].startswith("no article text")
    assert reasons["marks.txt"] == "no words left after normalization (punctuation or symbols only)"
    first, _, again = prepared
    # Ids are the source and the normalized text: the same text from another source is another record.
    assert first.id == record_id("a.txt", first.fingerprint.content_hash)
    assert first.fingerprint.content_hash == again.fingerprint.content_hash and first.id != again.id
    assert np.array_equal(first.keys, keys_of(first.fingerprint)) and len(first.keys) > 0
