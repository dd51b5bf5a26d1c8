"""The documents of a queued task as a payload in the shared Redis (worker/payloads.py): what goes in a
message and what in a payload, and how long and for whom a payload is kept."""

from __future__ import annotations

import pytest

import worker.tasks as tasks
from docsieve.models import RawDocument
from tests.conftest import fixture_text
from worker.messages import to_message


def test_submit_sends_a_small_message_and_the_documents_as_a_payload(with_payloads, task_pipeline) -> None:
    from worker.payloads import send_ingest

    long_text = " ".join([fixture_text("ar_near_a.txt")] * 16)  # 15,000 characters: 45,000 in all
    messages = [to_message(RawDocument(f"{i}.txt", f"{long_text} {i}")) for i in range(3)]
    sent = []
    send_ingest(lambda name, **options: sent.append((name, options)), messages, "q.cpu", with_payloads)
    ((name, options),) = sent
    assert name == tasks.INGEST_TASK and options["queue"] == "q.cpu" and "args" not in options
    kwargs = options["kwargs"]
    assert kwargs["sources"] == ["0.txt", "1.txt", "2.txt"]
    assert len(repr(kwargs)) < 500  # the texts are not in the message
    result = tasks.ingest_batch.run(**kwargs)
    assert result["received"] == 3 and result["stored"] == 3
    assert {r.source for r in task_pipeline.store.iter_records()} == {"0.txt", "1.txt", "2.txt"}


def test_a_little_text_travels_in_the_message(with_payloads) -> None:
    """A fetched page or a one-document task: a payload would only add Redis round trips."""
    from worker.payloads import INLINE_CHARS, send_ingest

    messages = [to_message(RawDocument("page.html", "x" * (INLINE_CHARS - 100)))]
    sent = []
    send_ingest(lambda name, **options: sent.append(options), messages, "q.cpu", with_payloads)
    assert sent == [{"args": [messages], "queue": "q.cpu"}]


def test_taking_a_payload_keeps_it_for_another_ttl(with_payloads) -> None:
    """The TTL runs from the last delivery, not from the submit: a message redelivered after the
    visibility timeout still finds its documents."""
    key = with_payloads.put([to_message(RawDocument("a.txt", "text"))])
    with_payloads._redis.expire(key, 5)
    with_payloads.take(key)
    assert with_payloads._redis.ttl(key) > 5


def test_a_payload_key_of_another_deployment_is_refused(with_payloads) -> None:
    from worker.payloads import PayloadLost

    with pytest.raises(PayloadLost):
        with_payloads.take("other:payload:abc")
