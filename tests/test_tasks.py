"""The Celery task's own behaviour, without a broker: bad messages become rejected records, and a task
that fails for good is recorded where `docsieve status` shows it."""

from __future__ import annotations

import json
import logging
import re
import socket
from types import SimpleNamespace

import pytest

import worker.tasks as tasks
from docsieve.models import RawDocument, Rejection
from docsieve.pipeline import Pipeline
from docsieve.settings import Settings
from docsieve.store import Store
from tests.conftest import fixture_text
from tests.services import postgres_database
from tests.test_validate import ARTICLE, OTHER
from worker.messages import from_message, to_message


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
    assert _counts(result) == {"received": 6, "stored": 6, "canonical": 1, "rejected": 5}
    reasons = {r.source: r.reason for r in task_pipeline.store.iter_records() if r.reason}
    assert all(reason.startswith("malformed task message") for reason in reasons.values())
    assert "bad-format.txt" in reasons and "no-body.txt" in reasons
    assert reasons["bad-title.txt"] == "malformed task message: title must be text"


def test_a_task_counts_the_stories_it_merged(task_pipeline: Pipeline) -> None:
    """A task that makes one story of two (a copy of both, tests/test_story_merges.py) says so in its result, which
    ``submit`` adds up; one that merges nothing leaves the count out."""
    from tests.test_story_merges import doc, split_texts

    t = split_texts()
    results = [tasks.ingest_batch.run([to_message(doc(s, t[s], hour))]) for s, hour in (("a", 6), ("b", 7), ("r", 8))]
    assert [r.get("merged") for r in results] == [None, None, 1]


def test_submit_adds_up_the_stories_its_tasks_merged(capsys: pytest.CaptureFixture[str]) -> None:
    from worker.commands import _follow

    def done(*merged: int) -> list[SimpleNamespace]:
        counts = [{"received": 1, "stored": 1, "canonical": 1} | ({"merged": m} if m else {}) for m in merged]
        return [SimpleNamespace(id=str(i), state="SUCCESS", result=c) for i, c in enumerate(counts)]

    assert _follow(done(0, 1, 2), 3, quiet=True) == 0
    assert capsys.readouterr().out.rstrip().endswith("failed tasks 0  stories merged 3")
    assert _follow(done(0, 0), 2, quiet=True) == 0
    assert "merged" not in capsys.readouterr().out


def test_a_task_delivered_again_reports_its_merges(with_payloads, task_pipeline: Pipeline) -> None:
    """In a worker process that merged stories before, a task counts its own merge, not the process's running
    total; its payload delivered again after it was done answers with the first result, the merge included."""
    from tests.test_story_merges import doc, split_texts

    t = split_texts()
    task_pipeline.stories_merged = 5
    for name, hour in (("a", 6), ("b", 7)):
        tasks.ingest_batch.run([to_message(doc(name, t[name], hour))])
    key = with_payloads.put([to_message(doc("r", t["r"], 8))])
    first = tasks.ingest_batch.run(payload=key, sources=["r"])
    assert first["merged"] == 1
    assert tasks.ingest_batch.run(payload=key, sources=["r"]) == first


def test_a_failed_task_is_recorded(task_pipeline: Pipeline) -> None:
    tasks.ingest_batch.on_failure(RuntimeError("disk full"), "task-42", ([{"source": "a.txt"}],), {}, None)
    (failure,) = task_pipeline.store.recent_failures()
    assert (failure["task_id"], failure["error"]) == ("task-42", "RuntimeError: disk full")
    assert failure["sources"] == '["a.txt"]' and failure["payload"] == '[{"source": "a.txt"}]'


@pytest.fixture
def postgres_pipeline(celery_app, postgres_server_url: str, monkeypatch: pytest.MonkeyPatch):
    with postgres_database(postgres_server_url) as url:
        pipeline = Pipeline(Store(url), Settings(store=url))
        monkeypatch.setattr(tasks, "_pipeline", lambda: pipeline)
        monkeypatch.setattr(celery_app, "docsieve_settings", pipeline.settings)
        yield pipeline
        pipeline.close()


def test_the_task_stores_a_batch_with_bad_values_without_a_retry(postgres_pipeline: Pipeline) -> None:
    messages = [
        to_message(RawDocument("good.txt", ARTICLE)),
        to_message(RawDocument("nul.txt", OTHER.replace(" ", "\u0000", 3), title="a\u0000b")),
        to_message(RawDocument("language.txt", fixture_text("ar_other.txt"), language="x" * 40)),
        to_message(RawDocument("published.txt", fixture_text("ar_near_a.txt"), published="2" * 65)),
        to_message(Rejection("nul\u0000source.bin", "binary data", "ab" * 32)),
    ]
    result = tasks.ingest_batch.run(messages)  # raises (and so would be retried) if the COPY failed
    assert _counts(result) == {"received": 5, "stored": 5, "canonical": 2, "rejected": 3}
    records = {r.source: r for r in postgres_pipeline.store.iter_records()}
    assert records["nul.txt"].title == "a\ufffdb" and records["nul\ufffdsource.bin"].reason == "binary data"
    assert "'language' must be" in records["language.txt"].reason
    assert "'published' must be" in records["published.txt"].reason


def test_a_retry_that_cannot_be_queued_gives_the_message_back(celery_app, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault is the broker itself (Redis restarting): the retry message cannot be sent. Celery would
    drop the delivered message (requeue=False); it must go back to the queue instead."""
    from celery.exceptions import Reject
    from redis.exceptions import ConnectionError as RedisDown

    def broker_down(*args, **kwargs):
        raise RedisDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(celery_app, "send_task", broker_down)
    task = tasks.ingest_batch
    task.push_request(id="t-1", args=[[]], kwargs={}, retries=0, called_directly=False, is_eager=False)
    try:
        with pytest.raises(Reject) as caught:
            task.retry(exc=RedisDown("connection refused"), countdown=1)
    finally:
        task.pop_request()
    assert caught.value.requeue is True


def test_a_payload_delivered_again_returns_its_first_result(with_payloads, task_pipeline) -> None:
    """A worker killed after the work and before the acknowledgement: the message comes again, after its
    payload was done. It gets the same answer, and no record is made twice."""
    key = with_payloads.put([to_message(RawDocument("a.txt", fixture_text("ar_near_a.txt")))])
    first = tasks.ingest_batch.run(payload=key, sources=["a.txt"])
    assert _counts(first) == {"received": 1, "stored": 1, "canonical": 1}
    assert tasks.ingest_batch.run(payload=key, sources=["a.txt"]) == first
    assert len(list(task_pipeline.store.iter_records())) == 1


def test_a_lost_payload_makes_rejected_records_of_its_sources(with_payloads, task_pipeline) -> None:
    key = with_payloads.put([to_message(RawDocument("a.txt", "text"))])
    with_payloads._redis.delete(key)  # expired, or a Redis that lost its data
    result = tasks.ingest_batch.run(payload=key, sources=["a.txt", "b.txt"])
    assert _counts(result) == {"received": 2, "stored": 2, "rejected": 2}
    reasons = {r.source: r.reason for r in task_pipeline.store.iter_records()}
    assert set(reasons) == {"a.txt", "b.txt"} and all("submit the source again" in r for r in reasons.values())


def test_a_failed_payload_task_keeps_its_documents_for_a_retry(with_payloads, task_pipeline) -> None:
    message = to_message(RawDocument("a.txt", "text"))
    key = with_payloads.put([message])
    tasks.ingest_batch.on_failure(RuntimeError("disk full"), "t-7", (), {"payload": key, "sources": ["a.txt"]}, None)
    (failure,) = task_pipeline.store.recent_failures()
    assert failure["sources"] == '["a.txt"]'
    assert json.loads(failure["payload"]) == [message]
    with pytest.raises(tasks.PayloadLost):  # kept in the failures table, so no longer in Redis
        with_payloads.take(key)


def test_a_failed_task_whose_payload_cannot_be_read_keeps_its_key(task_pipeline) -> None:
    """No shared Redis in this process (or Redis unreachable): the documents are still in their payload,
    so the failure keeps the key and the sources, which `docsieve retry` sends again as they were."""
    kwargs = {"payload": "docsieve:payload:abc", "sources": ["a.txt", "b.txt"]}
    tasks.ingest_batch.on_failure(RuntimeError("no shared Redis"), "t-8", (), kwargs, None)
    (failure,) = task_pipeline.store.recent_failures()
    assert json.loads(failure["payload"]) == kwargs
    assert json.loads(failure["sources"]) == ["a.txt", "b.txt"]


def test_a_failed_task_whose_payload_is_gone_keeps_rejections(with_payloads, task_pipeline) -> None:
    key = with_payloads.put([to_message(RawDocument("a.txt", "text"))])
    with_payloads.drop(key)
    tasks.ingest_batch.on_failure(RuntimeError("disk full"), "t-9", (), {"payload": key, "sources": ["a.txt"]}, None)
    (failure,) = task_pipeline.store.recent_failures()
    (item,) = [from_message(m) for m in json.loads(failure["payload"])]
    assert isinstance(item, Rejection) and item.source == "a.txt" and "submit the source again" in item.reason


def test_a_fetch_task_rejects_a_name_that_does_not_exist_and_logs_each_url_it_defers(
    celery_app, task_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from docsieve.fetch import Fetcher
    from tests.webserver import Reply, WebServer

    real = socket.getaddrinfo

    def getaddrinfo(host: str, *args, **kwargs):
        if host == "nowhere.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    sent = []

    def send_task(name: str, **options) -> SimpleNamespace:
        sent.append((name, options))
        return SimpleNamespace(id=f"task-{len(sent)}")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(celery_app, "send_task", send_task)
    monkeypatch.setattr(tasks, "_payloads_if_any", lambda: None)
    monkeypatch.setattr(tasks, "shared_store", lambda: task_pipeline.store)
    with WebServer() as web:
        web.route("/down.html", Reply(503))
        down = web.url("/down.html")
        settings = task_pipeline.settings.with_(
            fetch_allow_hosts=f"127.0.0.1:{web.port}", host_interval=0, fetch_retries=0
        )
        monkeypatch.setattr(celery_app, "docsieve_settings", settings)
        with Fetcher(settings) as fetcher, caplog.at_level(logging.WARNING, logger="worker.tasks"):
            monkeypatch.setattr(tasks, "shared_fetcher", lambda: fetcher)
            tasks.fetch_urls.run(["http://nowhere.invalid/news", down])
    (ingest, to_ingest), (fetch, to_fetch) = sent
    assert (ingest, fetch) == (tasks.INGEST_TASK, tasks.FETCH_TASK)
    (rejection,) = [from_message(m) for m in to_ingest["args"][0]]
    assert rejection.source == "http://nowhere.invalid/news"
    assert rejection.reason == "fetch failed: the name nowhere.invalid does not exist"  # at once, not in 4.5 minutes
    assert to_fetch["args"] == [[down], 2]  # only what may come back is tried again
    (logged,) = caplog.records
    assert re.fullmatch(rf"{down}: unreachable, attempt 2 of 5 in \d+ s: HTTP 503 .*", logged.getMessage())


def test_the_retry_policy_is_the_settings_of_the_app_the_task_runs_in() -> None:
    """Nothing is read at import: two apps made with other settings retry their tasks by their own."""
    from docsieve.settings import Settings
    from worker.celery_app import create_app

    patient, hasty = create_app(Settings(max_retries=20, retry_backoff_max=900)), create_app(Settings(max_retries=2))
    for name in (tasks.INGEST_TASK, tasks.FETCH_TASK):
        assert (patient.tasks[name].max_retries, patient.tasks[name].retry_backoff_max) == (20, 900)
        assert (hasty.tasks[name].max_retries, hasty.tasks[name].retry_backoff_max) == (2, 300)
        assert hasty.tasks[name].autoretry_for == tasks.TRANSIENT


def test_the_app_keeps_its_settings_through_pickling() -> None:
    """A pool process started by spawn (macOS's default) gets the app pickled: it must still know its
    settings, its tasks' retry policy and its configuration."""
    import pickle

    from docsieve.settings import Settings
    from worker.celery_app import SERIALIZER, create_app

    settings = Settings(store="sqlite:///elsewhere.db", max_retries=4, queue_prefix="other")
    child = pickle.loads(pickle.dumps(create_app(settings)))
    assert child.docsieve_settings == settings
    assert child.tasks[tasks.INGEST_TASK].max_retries == 4
    assert child.conf.task_serializer == SERIALIZER and child.conf.task_default_queue == "other.cpu"


def _counts(result: dict) -> dict:
    """A task's counts; its record ids, one per message, are checked for their number."""
    assert len(result["records"]) == result["received"]
    return {k: v for k, v in result.items() if k != "records"}
