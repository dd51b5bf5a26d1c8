"""The Celery task's own behaviour, without a broker: bad messages become rejected records, and a task
that fails for good is recorded where `docsieve status` shows it."""

from __future__ import annotations

import pytest

import worker.tasks as tasks
from tests.conftest import fixture_text
from worker.messages import from_message, to_message
from worker.models import RawDocument, Rejection
from worker.pipeline import Pipeline


@pytest.fixture
def task_pipeline(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    monkeypatch.setattr(tasks, "_pipeline", lambda: pipeline)
    monkeypatch.setitem(tasks.app.conf, "docsieve_settings", pipeline.settings)
    return pipeline


def test_messages_round_trip() -> None:
    doc = RawDocument("a.txt", "نص", title="عنوان", url="http://x/a", language="ar")
    assert from_message(to_message(doc)) == doc
    rejection = Rejection("b.bin", "binary data", "ab" * 32)
    assert from_message(to_message(rejection)) == rejection


def test_malformed_messages_are_rejected_records(task_pipeline: Pipeline) -> None:
    good = to_message(RawDocument("good.txt", fixture_text("ar_near_a.txt")))
    result = tasks.ingest_batch.run(
        [
            good,
            {"source": "no-body.txt"},
            "not an object",
            {"body": "no source"},
            {"source": "bad-format.txt", "body": "x", "format": "pdf"},
            {"source": "bad-title.txt", "body": "x", "title": 5},
        ]
    )
    assert result == {"received": 6, "stored": 6, "canonical": 1, "rejected": 5}
    reasons = {r.source: r.reason for r in task_pipeline.store.iter_records() if r.reason}
    assert all(reason.startswith("malformed task message") for reason in reasons.values())
    assert "bad-format.txt" in reasons and "no-body.txt" in reasons
    assert reasons["bad-title.txt"] == "malformed task message: title must be text"


def test_a_failed_task_is_recorded(task_pipeline: Pipeline) -> None:
    tasks.ingest_batch.on_failure(RuntimeError("disk full"), "task-42", ([{"source": "a.txt"}],), {}, None)
    (failure,) = task_pipeline.store.recent_failures()
    assert (failure["task_id"], failure["error"]) == ("task-42", "RuntimeError: disk full")
    assert failure["sources"] == '["a.txt"]' and failure["payload"] == '[{"source": "a.txt"}]'


def test_a_retry_that_cannot_be_queued_gives_the_message_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault is the broker itself (Redis restarting): the retry message cannot be sent. Celery would
    drop the delivered message (requeue=False); it must go back to the queue instead."""
    from celery.exceptions import Reject
    from redis.exceptions import ConnectionError as RedisDown

    def broker_down(*args, **kwargs):
        raise RedisDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.app, "send_task", broker_down)
    task = tasks.ingest_batch
    task.push_request(id="t-1", args=[[]], kwargs={}, retries=0, called_directly=False, is_eager=False)
    try:
        with pytest.raises(Reject) as caught:
            task.retry(exc=RedisDown("connection refused"), countdown=1)
    finally:
        task.pop_request()
    assert caught.value.requeue is True
