"""Documents as task messages (worker/messages.py): what a message carries comes back whole."""

from __future__ import annotations

import json

from docsieve.models import RawDocument, Rejection
from tests.test_readers import SNN
from worker.messages import from_message, to_message


def test_messages_round_trip() -> None:
    doc = RawDocument("a.txt", "نص", title="عنوان", url="http://x/a", language="ar")
    assert from_message(to_message(doc)) == doc
    rejection = Rejection("b.bin", "binary data", "ab" * 32)
    assert from_message(to_message(rejection)) == rejection


def test_the_outlet_and_author_travel_in_task_messages_and_to_the_record(pipeline) -> None:
    raw = RawDocument("day.json#1", SNN["content"], author=SNN["author"], outlet="aawsat")
    assert from_message(json.loads(json.dumps(to_message(raw)))) == raw
    pipeline.ingest([raw])
    (record,) = pipeline.store.iter_records()
    assert (record.author, record.outlet) == (SNN["author"], "aawsat")
    assert record.to_json()["outlet"] == "aawsat"
