"""The scheduler: a beat schedule from the sources file, one leader among schedulers, polls that never
overlap, and what a poll sends. Locks are taken in a real Redis, under a key prefix of each test's own."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
import redis

from docsieve.models import RawDocument, Rejection
from docsieve.settings import Settings
from docsieve.sources import Entry, Source
from scheduler import health, tasks
from scheduler.beat import LEADER_TTL, POLL_TASK, TICK, SourcesScheduler, heartbeat_path
from scheduler.locks import LocalLocks, RedisLocks, holding
from scheduler.polls import PollLog
from tests.conftest import REPO
from worker.celery_app import create_app
from worker.messages import FETCH_TASK, INGEST_TASK, URLS_PER_TASK, from_message

FEED = 'name = "{name}"\nkind = "feed"\nlocation = "https://{name}.example/rss.xml"\ninterval = {interval}\n'


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, prefix: str) -> Settings:
    return Settings(
        broker_url=redis_url,
        result_backend=redis_url,
        coordination_url=redis_url,
        queue_prefix=prefix,
        sources_file=str(tmp_path / "sources.toml"),
    )


def write_sources(settings: Settings, *sources: tuple[str, float]) -> None:
    """Write the sources file, its mtime always later than before (as an edit a second later would)."""
    path = Path(settings.sources_file)
    before = path.stat().st_mtime_ns if path.exists() else time.time_ns()
    path.write_text("\n".join("[[source]]\n" + FEED.format(name=n, interval=i) for n, i in sources), encoding="utf-8")
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


class Beat:
    """A scheduler on its own app whose sends are recorded instead of published."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.sent: list[tuple[str, list, dict]] = []
        self.app.send_task = lambda name, args=None, kwargs=None, **options: self.sent.append((name, args, options))
        self.scheduler = SourcesScheduler(app=self.app)

    def run_due(self) -> list[str]:
        """Tick until nothing is due; the sources polled meanwhile."""
        before = len(self.sent)
        for _ in range(100):
            if self.scheduler.tick() > 0:
                return [args[0]["name"] for _, args, _ in self.sent[before:]]
        raise AssertionError("the scheduler kept sending")


@pytest.fixture
def beats(settings: Settings) -> Iterator[list[Beat]]:
    """Schedulers made by a test, closed (lock released) at its end."""
    made: list[Beat] = []
    yield made
    for beat in made:
        beat.scheduler.close()


def start(beats: list[Beat], settings: Settings) -> Beat:
    beats.append(Beat(settings))
    return beats[-1]


# The schedule.


def test_one_entry_per_source_routed_to_the_io_queue(beats: list[Beat], settings: Settings, prefix: str) -> None:
    write_sources(settings, ("wire", 600), ("akhbar", 30.5))
    beat = start(beats, settings)
    entries = {name: e for name, e in beat.scheduler.schedule.items() if name.startswith("poll-source:")}
    assert sorted(entries) == ["poll-source:akhbar", "poll-source:wire"]
    wire = entries["poll-source:wire"]
    # The message carries the whole source: a fetcher needs no sources file.
    source = {"name": "wire", "kind": "feed", "location": "https://wire.example/rss.xml", "interval": 600.0}
    assert (wire.task, wire.args) == (POLL_TASK, [source])
    assert wire.schedule.run_every.total_seconds() == 600
    assert wire.options == {"queue": f"{prefix}.io", "expires": 600.0}
    assert entries["poll-source:akhbar"].schedule.run_every.total_seconds() == 30.5

    assert sorted(beat.run_due()) == ["akhbar", "wire"]  # every source at once when the scheduler starts
    name, _, options = beat.sent[0]
    assert name == POLL_TASK and options["queue"] == f"{prefix}.io"
    assert beat.run_due() == []  # then each after its interval
    assert 0 < beat.scheduler.tick() <= TICK


def test_a_source_added_to_the_file_is_scheduled_without_a_restart(beats: list[Beat], settings: Settings) -> None:
    write_sources(settings, ("wire", 600))
    beat = start(beats, settings)
    assert beat.run_due() == ["wire"]

    write_sources(settings, ("wire", 600), ("akhbar", 600))
    assert beat.run_due() == ["akhbar"]  # the new one at once; the other keeps its time

    write_sources(settings, ("akhbar", 900))  # wire removed, akhbar re-timed
    assert beat.run_due() == []
    assert [n for n in beat.scheduler.schedule if n.startswith("poll-source:")] == ["poll-source:akhbar"]
    assert beat.scheduler.schedule["poll-source:akhbar"].schedule.run_every.total_seconds() == 900


def test_a_broken_file_keeps_the_last_good_schedule(
    beats: list[Beat], settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    write_sources(settings, ("wire", 600), ("akhbar", 600))
    beat = start(beats, settings)
    assert sorted(beat.run_due()) == ["akhbar", "wire"]

    path = Path(settings.sources_file)
    path.write_text(path.read_text() + "\n[[source]\nname = 'third'\n", encoding="utf-8")  # a typo
    with caplog.at_level(logging.ERROR, logger="scheduler.beat"):
        assert beat.run_due() == []
        beat.run_due()  # the same broken file: said once
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"scheduler: {path}: invalid TOML: ")
    assert message.endswith("; keeping the schedule of 2 sources")
    assert sorted(n for n in beat.scheduler.schedule if n.startswith("poll-source:")) == [
        "poll-source:akhbar",
        "poll-source:wire",
    ]

    write_sources(settings, ("wire", 600), ("akhbar", 600), ("third", 600))  # fixed
    assert beat.run_due() == ["third"]


def test_no_file_at_start_then_one(beats: list[Beat], settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="scheduler.beat"):
        beat = start(beats, settings)
        assert beat.run_due() == []
    assert "sources file not found; keeping the schedule of 0 sources" in caplog.text
    write_sources(settings, ("wire", 600))
    assert beat.run_due() == ["wire"]


# One leader.


def test_of_two_schedulers_only_the_leader_sends(
    beats: list[Beat], settings: Settings, redis_url: str, prefix: str
) -> None:
    write_sources(settings, ("wire", 600), ("akhbar", 600))
    first, second = start(beats, settings), start(beats, settings)
    assert sorted(first.run_due()) == ["akhbar", "wire"]
    assert second.run_due() == []
    assert second.scheduler.tick() == TICK  # a standby asks again every tick
    assert second.sent == []

    client = redis.Redis.from_url(redis_url)
    key = f"{prefix}:scheduler:leader"
    assert client.get(key).decode() == first.scheduler.leadership.token
    assert 0 < client.pttl(key) <= LEADER_TTL * 1000
    client.pexpire(key, 5000)
    first.scheduler.tick()
    assert client.pttl(key) > 5000  # the leader refreshes its lock every tick

    first.scheduler.close()  # shutdown releases the lock: the standby takes over at its next tick
    assert client.get(key) is None
    assert sorted(second.run_due()) == ["akhbar", "wire"]  # what was due, at once
    assert len(first.sent) == 2


def test_a_leader_whose_lock_was_taken_stops_sending(
    beats: list[Beat], settings: Settings, redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    write_sources(settings, ("wire", 600))
    beat = start(beats, settings)
    assert beat.run_due() == ["wire"]
    # Its lock expired while it was paused, and another scheduler took it.
    redis.Redis.from_url(redis_url).set(f"{prefix}:scheduler:leader", "another-scheduler")
    write_sources(settings, ("wire", 600), ("akhbar", 600))  # akhbar is due at once
    with caplog.at_level(logging.WARNING, logger="scheduler.beat"):
        assert beat.run_due() == []
    assert f"another scheduler holds the lock {prefix}:scheduler:leader; standing by" in caplog.text
    assert redis.Redis.from_url(redis_url).get(f"{prefix}:scheduler:leader") == b"another-scheduler"


def test_without_redis_for_locks_a_scheduler_leads_alone(beats: list[Beat], settings: Settings) -> None:
    settings = settings.with_(coordination_url="")
    write_sources(settings, ("wire", 600))
    assert isinstance(start(beats, settings).scheduler.leadership.locks, LocalLocks)
    assert beats[0].run_due() == ["wire"]


def test_while_the_lock_cannot_be_reached_nothing_is_sent(
    beats: list[Beat], settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings.with_(coordination_url="redis://127.0.0.1:1/0")  # nothing listens there
    write_sources(settings, ("wire", 600))
    beat = start(beats, settings)
    with caplog.at_level(logging.WARNING, logger="scheduler.beat"):
        assert beat.scheduler.tick() == TICK
    assert beat.sent == []
    assert "cannot reach the lock" in caplog.text


def test_locks_are_refreshed_and_released_only_by_their_holder(redis_url: str, prefix: str) -> None:
    for locks in (RedisLocks(redis_url), LocalLocks()):
        key = f"{prefix}:lock"
        token = locks.acquire(key, 10)
        assert token is not None and locks.acquire(key, 10) is None
        assert not locks.refresh(key, "not-the-token", 10)
        assert not locks.release(key, "not-the-token")
        assert locks.refresh(key, token, 20)
        assert locks.release(key, token)
        assert not locks.release(key, token)  # released once
        assert locks.acquire(key, 10) is not None


# Polls.


class FakeStore:
    def __init__(self) -> None:
        self.claimed: set[str] = set()

    def claim_entries(self, source_name: str, keys: list[str]) -> list[str]:
        new = [k for k in dict.fromkeys(keys) if (source_name, k) not in self.claimed]
        self.claimed.update((source_name, k) for k in new)
        return new

    def release_entries(self, source_name: str, keys: list[str]) -> None:
        self.claimed.difference_update((source_name, k) for k in keys)

    def mark_sent(self, source_name: str, keys: list[str]) -> None:
        pass


def feed(name: str, interval: float = 600) -> Source:
    """A source as the scheduler reads it from a file that FEED wrote."""
    return Source(name, "feed", f"https://{name}.example/rss.xml", interval)


RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>
<item><title>One</title><link>https://wire.example/1</link></item>
<item><title>Two</title><link>https://wire.example/2</link></item>
</channel></rss>"""


def test_a_poll_of_a_source_never_overlaps_the_next(settings: Settings, redis_url: str, prefix: str) -> None:
    write_sources(settings, ("wire", 600))
    locks, store, queued = RedisLocks(redis_url), FakeStore(), []
    client = redis.Redis.from_url(redis_url)
    key = f"{prefix}:poll:wire"
    ttls = []

    def get_text(url: str) -> str:
        ttls.append(client.pttl(key))  # held while the poll runs
        return RSS

    def poll(name: str) -> dict:
        enqueue = lambda source, entries: queued.extend(e.location for e in entries)  # noqa: E731
        return tasks.poll_once(settings, feed(name), locks, get_text, store, enqueue)

    with holding(locks, key, 60) as held:  # a poll of wire still running
        assert held
        assert poll("wire") == {"skipped": "a poll of this source is still running"}
        assert ttls == [] and queued == []
    assert poll("wire") == {"source": "wire", "found": 2, "new": 2}
    assert (settings.task_time_limit - 5) * 1000 < ttls[0] <= settings.task_time_limit * 1000
    assert client.get(key) is None  # released at the end
    assert poll("wire") == {"source": "wire", "found": 2, "new": 0}
    assert queued == ["https://wire.example/1", "https://wire.example/2"]


def test_a_poll_enqueues_at_most_max_entries_per_poll_and_the_next_one_the_rest(settings: Settings) -> None:
    write_sources(settings, ("wire", 600))
    settings = settings.with_(max_entries_per_poll=1)
    locks, store, queued = LocalLocks(), FakeStore(), []
    enqueue = lambda source, entries: queued.extend(e.location for e in entries)  # noqa: E731
    results = [tasks.poll_once(settings, feed("wire"), locks, lambda url: RSS, store, enqueue) for _ in range(3)]
    assert [r["new"] for r in results] == [1, 1, 0]
    assert queued == ["https://wire.example/1", "https://wire.example/2"]


def test_a_failed_poll_releases_its_lock(settings: Settings, redis_url: str, prefix: str) -> None:
    write_sources(settings, ("wire", 600))

    def get_text(url: str) -> str:
        raise ConnectionError("connection refused")

    with pytest.raises(ConnectionError):
        tasks.poll_once(settings, feed("wire"), RedisLocks(redis_url), get_text, FakeStore(), print)
    assert redis.Redis.from_url(redis_url).get(f"{prefix}:poll:wire") is None


def test_pages_are_sent_to_be_fetched_in_batches(settings: Settings, prefix: str) -> None:
    sent: list[tuple[str, list, dict]] = []
    entries = [Entry(f"https://wire.example/{n}", f"https://wire.example/{n}") for n in range(2 * URLS_PER_TASK + 2)]
    send_task = lambda name, args, **options: sent.append((name, args, options))  # noqa: E731
    tasks.enqueue_entries(send_task, settings, Source("wire", "feed", "https://wire.example/rss", 600), entries)
    assert [(name, len(args[0]), options) for name, args, options in sent] == [
        (FETCH_TASK, URLS_PER_TASK, {"queue": f"{prefix}.io"}),
        (FETCH_TASK, URLS_PER_TASK, {"queue": f"{prefix}.io"}),
        (FETCH_TASK, 2, {"queue": f"{prefix}.io"}),
    ]
    assert [url for _, args, _ in sent for url in args[0]] == [e.location for e in entries]


def test_files_of_a_folder_are_read_and_sent_to_be_ingested(settings: Settings, prefix: str, tmp_path: Path) -> None:
    settings = settings.with_(submit_batch=2)
    paths = []
    for n, text in enumerate(["الخبر الأول\n", "second story\n", "third story\n"]):
        paths.append(tmp_path / f"{n}.txt")
        paths[-1].write_text(text, encoding="utf-8")
    sent: list[tuple[str, list, dict]] = []
    send_task = lambda name, args, **options: sent.append((name, args, options))  # noqa: E731
    entries = [Entry(f"{p}@1:1", str(p)) for p in paths]
    tasks.enqueue_entries(send_task, settings, Source("inbox", "folder", str(tmp_path), 60), entries)
    assert [(name, len(args[0]), options) for name, args, options in sent] == [
        (INGEST_TASK, 2, {"queue": f"{prefix}.cpu"}),
        (INGEST_TASK, 1, {"queue": f"{prefix}.cpu"}),
    ]
    items = [from_message(m) for _, args, _ in sent for m in args[0]]
    assert all(isinstance(i, RawDocument) for i in items)
    assert [(i.source, i.body) for i in items] == [
        (str(paths[0]), "الخبر الأول\n"),
        (str(paths[1]), "second story\n"),
        (str(paths[2]), "third story\n"),
    ]


def test_message_batches_hold_a_count_and_a_size() -> None:
    messages = [{"source": str(n), "body": "x" * size} for n, size in enumerate([3, 3, 3, 20, 1])]
    batches = list(tasks.message_batches(messages, max_count=10, max_chars=10))
    # A message larger than the limit alone travels alone.
    assert [[m["source"] for m in b] for b in batches] == [["0", "1"], ["2"], ["3"], ["4"]]
    assert [len(b) for b in tasks.message_batches(messages, max_count=2, max_chars=1000)] == [2, 2, 1]


def test_a_fetcher_polls_what_the_scheduler_sent_without_the_sources_file(
    celery_app, beats: list[Beat], settings: Settings, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the scheduler is told where the sources file is: the poll message carries the source."""
    write_sources(settings, ("wire", 600))
    beat = start(beats, settings)
    assert beat.run_due() == ["wire"]
    ((name, args, _),) = beat.sent
    store, sent = FakeStore(), []

    class Fetcher:
        def get_text(self, url: str) -> str:
            assert url == "https://wire.example/rss.xml"
            return RSS

    fetcher_settings = settings.with_(sources_file=str(tmp_path / "no-such-file.toml"))
    monkeypatch.setattr(tasks, "_settings", lambda: fetcher_settings)
    monkeypatch.setattr(tasks, "_locks", lambda: RedisLocks(redis_url))
    monkeypatch.setattr(tasks, "_poll_log", lambda: PollLog.of(settings))
    monkeypatch.setattr(tasks, "shared_fetcher", Fetcher)
    monkeypatch.setattr(tasks, "shared_store", lambda: store)
    celery_app.set_current()  # the task's app (a scheduler started in this test made its own current)
    monkeypatch.setattr(celery_app, "send_task", lambda name, args, **options: sent.append((name, args, options)))
    assert name == POLL_TASK
    assert tasks.poll_source(*args) == {"source": "wire", "found": 2, "new": 2}
    assert sent == [
        (FETCH_TASK, [["https://wire.example/1", "https://wire.example/2"]], {"queue": f"{settings.queue_prefix}.io"})
    ]
    assert tasks.poll_source(*args) == {"source": "wire", "found": 2, "new": 0}
    assert len(sent) == 1


def test_how_each_poll_went_is_kept_for_status(
    celery_app, settings: Settings, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile = (Path(__file__).parent / "fixtures" / "feeds" / "billion_laughs.xml").read_text(encoding="utf-8")
    replies: list[str | Exception] = [
        ConnectionError("connection refused"),
        TimeoutError("read timed out"),
        RSS,
        hostile,
    ]

    class Fetcher:
        def get_text(self, url: str) -> str:
            reply = replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply

    log = PollLog.of(settings)
    monkeypatch.setattr(tasks, "_settings", lambda: settings)
    monkeypatch.setattr(tasks, "_locks", lambda: RedisLocks(redis_url))
    monkeypatch.setattr(tasks, "_poll_log", lambda: log)
    monkeypatch.setattr(tasks, "shared_fetcher", Fetcher)
    monkeypatch.setattr(tasks, "shared_store", FakeStore)
    celery_app.set_current()  # the task's app (a scheduler started in this test made its own current)
    monkeypatch.setattr(celery_app, "send_task", lambda name, args, **options: None)
    wire = asdict(feed("wire", 600))
    assert log.all() == []

    with pytest.raises(ConnectionError):
        tasks.poll_source(wire)
    first = log.get("wire")
    assert (first.error, first.failures, first.failing_since) == ("ConnectionError: connection refused", 1, first.at)
    with pytest.raises(TimeoutError):
        tasks.poll_source(wire)
    second = log.get("wire")
    assert (second.error, second.failures) == ("TimeoutError: read timed out", 2)
    assert second.failing_since == first.failing_since < second.at  # failing since the first of the run

    tasks.poll_source(wire)
    worked = log.get("wire")
    assert (worked.error, worked.failures, worked.found, worked.new) == (None, 0, 2, 2)
    assert not worked.overdue(worked.at + 2 * 600) and worked.overdue(worked.at + 2 * 600 + 61)

    assert "rejected" in tasks.poll_source(wire)  # a feed that can never be read: failing too
    rejected = log.get("wire")
    assert "entity" in rejected.error and rejected.failures == 1
    assert [p.source for p in log.all()] == ["wire"]
    ttl = redis.Redis.from_url(redis_url).ttl(f"{settings.queue_prefix}:polled:wire")
    assert 7 * 24 * 3600 < ttl <= 7 * 24 * 3600 + 2 * 600  # a source no longer polled goes in a week


def test_the_healthcheck_passes_while_the_scheduler_ticks(
    beats: list[Beat], settings: Settings, redis_url: str
) -> None:
    write_sources(settings, ("wire", 600))
    assert health.check(settings) == (False, f"no scheduler ticks here (no heartbeat {heartbeat_path(settings)})")
    beat = start(beats, settings)
    beat.run_due()
    healthy, said = health.check(settings)
    assert healthy and said.startswith("scheduler leading, last tick"), said
    assert not health.check(settings, now=time.time() + health.STALE_AFTER + 1)[0]  # it stopped ticking

    second = start(beats, settings)  # a standby is healthy too (its heartbeat is the same file here)
    second.scheduler.tick()
    assert health.check(settings)[1].startswith("scheduler standing by")
    beat.scheduler.close()
    second.scheduler.close()
    assert not health.check(settings)[0]  # stopped: no heartbeat

    cut_off = start(beats, settings.with_(coordination_url="redis://127.0.0.1:1/0"))  # its lock unreachable
    cut_off.scheduler.tick()
    assert health.check(settings) == (
        False,
        "the scheduler cannot reach the Redis of its lock (DOCSIEVE_COORDINATION_URL)",
    )


# The command.


@pytest.mark.slow
def test_run_scheduler_sends_polls_and_releases_its_lock_on_sigterm(
    settings: Settings, redis_url: str, prefix: str
) -> None:
    write_sources(settings, ("wire", 600))
    code = (
        "import sys; from docsieve.settings import Settings; from scheduler.beat import run_scheduler; "
        "run_scheduler(Settings(broker_url=sys.argv[1], result_backend=sys.argv[1], coordination_url=sys.argv[1], "
        "queue_prefix=sys.argv[2], sources_file=sys.argv[3]))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, redis_url, prefix, settings.sources_file],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 60
        while not client.llen(f"{prefix}.io"):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "no poll was sent"
            time.sleep(0.05)
        assert client.get(f"{prefix}:scheduler:leader") is not None
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    message = json.loads(client.lindex(f"{prefix}.io", 0))
    assert message["headers"]["task"] == POLL_TASK
    assert json.loads(base64.b64decode(message["body"]))[0] == [asdict(feed("wire", 600))]
    assert client.get(f"{prefix}:scheduler:leader") is None  # released on shutdown


def test_a_watched_folder_never_reads_past_itself(settings: Settings, tmp_path: Path) -> None:
    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    elsewhere.mkdir()
    (inbox / "story.txt").write_text("a story\n", encoding="utf-8")
    (elsewhere / "secret.txt").write_text("not for the inbox\n", encoding="utf-8")
    os.symlink(elsewhere / "secret.txt", inbox / "link.txt")
    sent: list[tuple[str, list, dict]] = []
    send_task = lambda name, args, **options: sent.append((name, args, options))  # noqa: E731
    source = Source("inbox", "folder", str(inbox), 60)
    entries = [
        Entry(p, p) for p in (str(inbox / "story.txt"), str(inbox / "link.txt"), str(inbox / "../elsewhere/secret.txt"))
    ]
    tasks.enqueue_entries(send_task, settings, source, entries)
    items = [from_message(m) for _, args, _ in sent for m in args[0]]
    assert [type(i).__name__ for i in items] == ["RawDocument", "Rejection", "Rejection"]
    assert all("outside the folder being read" in i.reason for i in items[1:])


def test_a_source_that_cannot_be_read_is_a_rejected_record(
    celery_app, settings: Settings, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_sources(settings, ("wire", 600))
    sent: list[tuple[str, list, dict]] = []
    hostile = (Path(__file__).parent / "fixtures" / "feeds" / "billion_laughs.xml").read_text(encoding="utf-8")

    class Fetcher:
        def get_text(self, url: str) -> str:
            return hostile

    monkeypatch.setattr(tasks, "_settings", lambda: settings)
    monkeypatch.setattr(tasks, "_locks", lambda: RedisLocks(redis_url))
    monkeypatch.setattr(tasks, "shared_fetcher", Fetcher)
    monkeypatch.setattr(tasks, "shared_store", FakeStore)
    celery_app.set_current()  # the task's app (a scheduler started in this test made its own current)
    monkeypatch.setattr(celery_app, "send_task", lambda name, args, **options: sent.append((name, args, options)))
    monkeypatch.setattr(tasks, "_poll_log", lambda: None)
    first, second = tasks.poll_source(asdict(feed("wire"))), tasks.poll_source(asdict(feed("wire")))
    assert "entity" in first["rejected"] and first == second
    (rejection,) = {from_message(m) for _, args, _ in sent for m in args[0]}  # the same record both times
    assert isinstance(rejection, Rejection) and rejection.source == "https://wire.example/rss.xml"
    assert "entity" in rejection.reason
    assert {(name, options["queue"]) for name, _, options in sent} == {(INGEST_TASK, f"{settings.queue_prefix}.cpu")}
