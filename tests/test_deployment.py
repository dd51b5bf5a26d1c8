"""The deployment with real services: `docsieve worker` processes (Celery prefork, not eager mode) on
Redis, a PostgreSQL store, `docsieve submit` from another process."""

from __future__ import annotations

import json
import random
import re
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from docsieve.models import RawDocument
from docsieve.pipeline import Pipeline
from docsieve.readers import read
from docsieve.settings import Settings
from docsieve.store import Store
from tests.conftest import REPO, fixture_text
from tests.services import deployment_env, postgres_database, remove_keys, running_worker
from worker.celery_app import create_app


@pytest.fixture
def deployment(redis_url: str, postgres_server_url: str, tmp_path: Path) -> Iterator[dict]:
    """Environment of one deployment: its own database and queue names on the shared services."""
    prefix = f"docsieve-test-{uuid.uuid4().hex[:8]}"
    with postgres_database(postgres_server_url) as store_url:
        yield deployment_env(redis_url, store_url, prefix)
        remove_keys(redis_url, prefix)  # only the keys this deployment made


def settings_of(env: dict) -> Settings:
    return Settings.from_env(env)


@contextmanager
def workers(
    env: dict, concurrency: int, *options: str, named: bool = True, loglevel: str = "WARNING"
) -> Iterator[subprocess.Popen]:
    """`docsieve worker` with these options, up (it answers a ping); a name of its own unless not ``named``
    (then the default: its queue's name at this host)."""
    name = f"w{uuid.uuid4().hex[:6]}@{socket.gethostname()}" if named else None
    with running_worker(env, *options, concurrency=concurrency, name=name, loglevel=loglevel, timeout=60) as worker:
        yield worker.process


def submit(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "docsieve.cli", "submit", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def outcome(records) -> dict[str, tuple]:
    ids = {r.id: r.source for r in records}
    return {r.source: (r.status, r.method, ids.get(r.duplicate_of)) for r in records}


def test_workers_store_what_submit_queued_as_embedded_would(deployment: dict, tmp_path: Path) -> None:
    with workers(deployment, concurrency=2):
        first = submit(deployment, "seeds/", "--wait")
        again = submit(deployment, "seeds/", "--wait")
        status = subprocess.run(
            [sys.executable, "-m", "docsieve.cli", "status"],
            cwd=REPO,
            env=deployment,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert first.returncode == 0, first.stderr
    assert "workers online: 1" in status.stdout and "records: canonical 13  duplicate 12  rejected 0" in status.stdout
    assert "stories: 13  with copies 7  roundups 0" in status.stdout
    assert f"queue {deployment['DOCSIEVE_QUEUE_PREFIX']}.cpu: 0 waiting" in status.stdout
    assert "queued 25 documents" in first.stdout
    assert "already stored 25" in again.stdout and "new 0" in again.stdout

    deployed = Store(deployment["DOCSIEVE_STORE"])
    embedded = Store(f"sqlite:///{tmp_path / 'embedded.db'}")
    Pipeline(embedded, Settings(store=embedded.url)).ingest(read(["seeds/"], 10_000_000))
    assert outcome(deployed.iter_records()) == outcome(embedded.iter_records())


def test_copies_racing_on_four_worker_processes_get_one_canonical(deployment: dict, tmp_path: Path) -> None:
    vocabulary = sorted(set(" ".join(fixture_text(n) for n in ("ar_long_article.txt", "en_article.txt")).split()))
    rng = random.Random(7)
    groups, copies = 24, 4
    folder = tmp_path / "in"
    folder.mkdir()
    for g in range(groups):
        # Distinct stories: 150 words drawn at random share next to no 3-gram with each other.
        base = "\n".join(" ".join(rng.choices(vocabulary, k=30)) for _ in range(5))
        for c in range(copies):
            # Copies of one story side by side, one task each: four processes take them at the same moment.
            (folder / f"{g:03d}_{c}.txt").write_text(f"{base}\nنسخة {c}", encoding="utf-8")
    env = {**deployment, "DOCSIEVE_SUBMIT_BATCH": "1"}
    with workers(env, concurrency=4):
        result = submit(env, str(folder), "--wait")
    assert result.returncode == 0, result.stderr
    records = list(Store(deployment["DOCSIEVE_STORE"]).iter_records())
    assert len(records) == groups * copies
    by_id = {r.id: r for r in records}
    canonical = defaultdict(set)
    for r in records:
        root = r.duplicate_of or r.id
        assert by_id[root].status.value == "canonical"
        canonical[Path(r.source).name.split("_")[0]].add(root)
    assert all(len(roots) == 1 for roots in canonical.values()), {g: len(r) for g, r in canonical.items()}


def test_submit_wait_gives_up_after_its_timeout(deployment: dict) -> None:
    # No worker runs: the tasks wait in the queue, and --wait must not wait forever.
    result = submit(deployment, "seeds/", "--wait", "--timeout", "1")
    assert result.returncode == 3 and "1 tasks still queued" in result.stderr


@pytest.mark.parametrize("form", ["inline", "payload"])
def test_a_task_delivered_twice_creates_no_second_record(deployment: dict, form: str) -> None:
    """The same message twice, at once, to two worker processes: the documents in the message, or their
    payload key (worker/payloads.py), as `docsieve submit` sends them."""
    from worker.messages import to_message
    from worker.payloads import Payloads

    settings = settings_of(deployment)
    app = create_app(settings)
    message = [to_message(RawDocument("twice.txt", fixture_text("ar_near_a.txt")))]
    if form == "inline":
        task = {"args": [message]}
    else:
        payloads = Payloads.of(settings)
        task = {"kwargs": {"payload": payloads.put(message), "sources": ["twice.txt"]}}
        payloads.close()
    with workers(deployment, concurrency=2):
        results = [
            app.send_task("docsieve.ingest_batch", queue=f"{settings.queue_prefix}.cpu", **task) for _ in range(2)
        ]
        outcomes = [r.get(timeout=60) for r in results]
    # A payload delivered after the other delivery was done answers with that delivery's result.
    assert sorted(o["stored"] for o in outcomes) in ([0, 1], [1, 1] if form == "payload" else [0, 1])
    assert Store(deployment["DOCSIEVE_STORE"]).counts() == {"canonical": 1}


def test_urls_are_fetched_by_the_io_worker_and_ingested_by_the_cpu_worker(deployment: dict) -> None:
    from tests.webserver import Reply, Request, WebServer

    page = (Path(__file__).parent / "fixtures" / "pages" / "ar_article.html").read_bytes()

    def conditional(request: Request) -> Reply:
        if request.headers.get("If-None-Match") == '"v1"':
            return Reply(304, {"ETag": '"v1"'})
        return Reply(200, {"Content-Type": "text/html; charset=utf-8", "ETag": '"v1"'}, page)

    with WebServer() as web:
        env = {
            **deployment,
            "DOCSIEVE_FETCH_ALLOW_HOSTS": f"127.0.0.1:{web.port}",
            "DOCSIEVE_HOST_INTERVAL": "0",
            "DOCSIEVE_COORDINATION_URL": deployment["DOCSIEVE_INDEX_URL"],
            "DOCSIEVE_FETCH_RETRIES": "0",
            "DOCSIEVE_RETRY_BACKOFF_MAX": "1",  # an unreachable page is tried again within a second
        }
        web.route("/ar/story.html", conditional)
        web.route("/down.html", Reply(503))
        with workers(env, 2), workers(env, 4, "--io"):
            first = submit(env, web.url("/ar/story.html?utm_source=x"), web.url("/down.html"), "--wait")
            again = submit(env, web.url("/ar/story.html"), "--wait")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "queued 2 documents in 1 tasks" in first.stdout
        assert "new 1" in first.stdout and "rejected 1" in first.stdout
        assert "not modified 1" in again.stdout and "new 0" in again.stdout
        assert len(web.hits("/down.html")) == 5  # FETCH_ATTEMPTS, each a task of its own
    records = {r.source: r for r in Store(env["DOCSIEVE_STORE"], migrate=False).iter_records()}
    assert records[web.url("/ar/story.html")].language == "ar"
    assert "unreachable after 5 attempts" in records[web.url("/down.html")].reason


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "docsieve.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_failed_tasks_are_dead_letters_a_person_can_see_and_retry(deployment: dict) -> None:
    from worker.messages import INGEST_TASK, to_message

    store = Store(deployment["DOCSIEVE_STORE"])
    # A task that fails for good, as a worker records it: say its store stayed down past every retry.
    document = RawDocument(source="wire/flood.txt", body=fixture_text("en_article.txt"))
    error = "OperationalError: the database was unreachable"
    store.record_failure("lost-task", INGEST_TASK, error, [to_message(document)])
    app = create_app(settings_of(deployment))
    with workers(deployment, 1):
        # And one that fails for good in a worker now: a message no task can read.
        broken = app.send_task(INGEST_TASK, args=[5], queue=f"{deployment['DOCSIEVE_QUEUE_PREFIX']}.cpu")
        with pytest.raises(TypeError):
            broken.get(timeout=60)
        listed = cli(deployment, "failures")
        assert "2 failures not retried yet" in listed.stdout, listed.stdout + listed.stderr
        assert error in listed.stdout
        assert "wire/flood.txt" in listed.stdout
        assert "TypeError" in listed.stdout  # the worker's own failure, with its error

        failure_id = next(f["id"] for f in store.recent_failures() if f["task_id"] == "lost-task")
        retried = cli(deployment, "retry", str(failure_id))
        assert retried.returncode == 0, retried.stderr
        retry_task = retried.stdout.split("as task ")[1].strip()
        assert app.AsyncResult(retry_task).get(timeout=60)["stored"] == 1
    assert [r.source for r in store.iter_records()] == ["wire/flood.txt"]
    again = cli(deployment, "retry", str(failure_id))
    assert again.returncode == 1 and f"no failure {failure_id} waiting" in again.stderr
    assert "1 failures not retried yet" in cli(deployment, "failures").stdout
    assert "retried" in cli(deployment, "failures", "--all").stdout


def test_a_failure_that_kept_its_payload_key_is_retried_from_it(deployment: dict) -> None:
    """A payload task that failed while its documents could not be read (Redis unreachable): the failure
    keeps the key, and `docsieve retry` sends the task again with it."""
    from worker.messages import INGEST_TASK, to_message
    from worker.payloads import Payloads

    settings = settings_of(deployment)
    payloads = Payloads.of(settings)
    document = RawDocument(source="wire/kept.txt", body=fixture_text("en_article.txt"))
    key = payloads.put([to_message(document)])
    payloads.close()
    store = Store(deployment["DOCSIEVE_STORE"])
    kept = {"payload": key, "sources": ["wire/kept.txt"]}
    store.record_failure("kept-key", INGEST_TASK, "ConnectionError: Redis", kept)
    (failure,) = store.recent_failures()
    app = create_app(settings)
    with workers(deployment, 1):
        retried = cli(deployment, "retry", str(failure["id"]))
        assert retried.returncode == 0, retried.stderr
        retry_task = retried.stdout.split("as task ")[1].strip()
        assert app.AsyncResult(retry_task).get(timeout=60)["stored"] == 1
    assert [r.source for r in store.iter_records()] == ["wire/kept.txt"]


def test_a_cpu_worker_and_a_fetcher_on_one_host_are_two_nodes(deployment: dict) -> None:
    prefix, host = deployment["DOCSIEVE_QUEUE_PREFIX"], socket.gethostname()
    with workers(deployment, 1, named=False), workers(deployment, 2, "--io", named=False):
        status = cli(deployment, "status")
        assert status.returncode == 0, status.stderr
        assert f"workers online: 1 ({prefix}.cpu@{host})" in status.stdout, status.stdout
        assert f"fetchers online: 1 ({prefix}.io@{host})" in status.stdout, status.stdout
        assert status.stderr == ""

        # Two workers given one name by mistake: said in one line.
        with workers(deployment, 1, named=False):
            deadline = time.monotonic() + 60
            while "docsieve: " not in (twice := cli(deployment, "status")).stderr:
                assert time.monotonic() < deadline, twice.stdout + twice.stderr
    (said,) = twice.stderr.splitlines()
    assert said == f"docsieve: 2 workers answer as {prefix}.cpu@{host}, counted as one: give each its own --hostname"


def test_nothing_a_worker_publishes_or_logs_holds_a_password(deployment: dict) -> None:
    """What Flower shows of a worker (`celery inspect conf`, `stats`) and what a worker logs, with a
    store and a Redis that both take a password."""
    from sqlalchemy.engine import make_url

    from tests.services import redis_server
    from worker.messages import INGEST_TASK, to_message

    store_password, redis_password = f"pg-{uuid.uuid4().hex}", f"redis-{uuid.uuid4().hex}"
    store = make_url(deployment["DOCSIEVE_STORE"]).set(password=store_password)  # the test server trusts
    with redis_server(password=redis_password) as redis_url:
        env = {
            **deployment,
            "DOCSIEVE_STORE": store.render_as_string(hide_password=False),
            "DOCSIEVE_BROKER_URL": redis_url,
            "DOCSIEVE_RESULT_BACKEND": redis_url,
            "DOCSIEVE_INDEX_URL": redis_url,
            "DOCSIEVE_COORDINATION_URL": redis_url,
        }
        app = create_app(settings_of(env))
        with workers(env, 1, loglevel="DEBUG") as process:
            document = to_message(RawDocument("flower.txt", fixture_text("en_article.txt")))
            queue = f"{env['DOCSIEVE_QUEUE_PREFIX']}.cpu"
            assert app.send_task(INGEST_TASK, args=[[document]], queue=queue).get(timeout=60)["stored"] == 1
            inspect = app.control.inspect(timeout=2)
            published = {
                "conf": inspect.conf(),
                "conf with defaults": inspect.conf(with_defaults=True),
                "stats": inspect.stats(),
                "registered": inspect.registered(),
                "active queues": inspect.active_queues(),
            }
        log = process.stdout.read()
    assert all(published.values()), published  # each of them answered
    shown = json.dumps(published, default=str)
    assert "docsieve_settings" not in shown
    for secret in (store_password, redis_password):
        assert secret not in shown
        assert secret not in log
    assert "Connected to redis://:**@127.0.0.1" in log  # what it connected to, without the password


def test_status_lists_the_failures_not_retried_by_the_ids_retry_takes(deployment: dict) -> None:
    from worker.messages import INGEST_TASK, to_message

    store = Store(deployment["DOCSIEVE_STORE"])
    for n in range(2):
        message = to_message(RawDocument(f"wire/{n}.txt", fixture_text("en_article.txt")))
        store.record_failure(f"task-uuid-{n}", INGEST_TASK, f"OperationalError: down {n}\nsecond line", [message])
    ids = sorted(f["id"] for f in store.recent_failures())
    before = cli(deployment, "status")
    assert before.returncode == 0, before.stderr
    assert "failures: 2 not retried yet, 0 retried" in before.stdout
    for failure_id, n in zip(ids, range(2), strict=True):
        assert re.search(rf"^  {failure_id}  \S+ \S+  {INGEST_TASK}  OperationalError: down {n}$", before.stdout, re.M)
    assert "task-uuid" not in before.stdout and "second line" not in before.stdout

    retried = cli(deployment, "retry", "--all")
    assert retried.returncode == 0, retried.stderr
    after = cli(deployment, "status")
    assert "failures: 0 not retried yet, 2 retried" in after.stdout, after.stdout
    assert "OperationalError" not in after.stdout


def test_status_says_in_one_line_what_it_cannot_read_and_shows_the_rest(deployment: dict, tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    prefix = deployment["DOCSIEVE_QUEUE_PREFIX"]
    garbage = tmp_path / "not-a-store.db"
    garbage.write_bytes(b"not a database " * 1000)
    unreachable = "postgresql+psycopg://docsieve:hunter2@127.0.0.1:1/docsieve"
    for store, reason in ((f"sqlite:///{garbage}", "is not a SQLite database"), (unreachable, "Connection refused")):
        status = cli({**deployment, "DOCSIEVE_STORE": store}, "status")
        assert status.returncode == 1
        assert f"queue {prefix}.cpu: 0 waiting" in status.stdout and "workers online: 0" in status.stdout
        assert "records:" not in status.stdout
        (said,) = status.stderr.strip().splitlines()  # one line, no traceback
        assert said.startswith("docsieve: the store ") and reason in said, said
        assert "hunter2" not in said

    no_store = make_url(deployment["DOCSIEVE_STORE"]).set(password="hunter2").render_as_string(hide_password=False)
    status = cli({**deployment, "DOCSIEVE_STORE": no_store}, "status")  # a database without docsieve's tables
    (said,) = status.stderr.strip().splitlines()
    assert status.returncode == 1 and said.startswith("docsieve: no docsieve store at ") and "hunter2" not in said

    Store(deployment["DOCSIEVE_STORE"]).close()
    status = cli({**deployment, "DOCSIEVE_BROKER_URL": "redis://127.0.0.1:1/0"}, "status")
    assert status.returncode == 1
    (said,) = status.stderr.strip().splitlines()
    assert said.startswith("docsieve: cannot reach the broker at redis://127.0.0.1:1/0"), said
    assert "records: canonical 0" in status.stdout and "queue" not in status.stdout


def test_status_shows_the_sources_whose_polls_fail(deployment: dict) -> None:
    from docsieve.sources import Source
    from scheduler.polls import PollLog

    env = {**deployment, "DOCSIEVE_COORDINATION_URL": deployment["DOCSIEVE_INDEX_URL"]}
    Store(env["DOCSIEVE_STORE"]).close()
    log = PollLog.of(settings_of(env))
    wire, akhbar = (Source(n, "feed", f"https://{n}.example/rss.xml", 600) for n in ("wire", "akhbar"))
    log.record(wire, error="SourcesError: sources file not found")
    log.record(wire, error="SourcesError: sources file not found")
    log.record(akhbar, {"source": "akhbar", "found": 20, "new": 3})
    log.close()
    status = cli(env, "status")
    assert status.returncode == 0, status.stderr
    assert "sources: 2 polled, 1 failing, 0 overdue" in status.stdout
    failing = r"^  wire: failing since .+ UTC \(2 failed polls in a row, last .+ UTC\): SourcesError: sources file"
    assert re.search(failing + " not found$", status.stdout, re.M), status.stdout
    assert "akhbar" not in status.stdout


def test_submit_wait_says_each_retry_as_it_happens(deployment: dict) -> None:
    """A worker whose store is down retries its task: `submit --wait` says so, with the reason, while it
    waits (until its --timeout)."""
    env = {
        **deployment,
        "DOCSIEVE_STORE": "postgresql+psycopg://docsieve@127.0.0.1:1/docsieve",  # nothing listens there
        "DOCSIEVE_RETRY_BACKOFF_MAX": "2",
        # Jittered waits of up to 2 s: 12 retries could all fail within the 8 s --timeout (CI saw it);
        # with 100 the wait always ends first.
        "DOCSIEVE_MAX_RETRIES": "100",
    }
    with workers(env, 1):
        result = submit(env, "seeds/010_rafale_original.txt", "--wait", "--timeout", "8")
    assert result.returncode == 3, result.stdout + result.stderr
    said = re.findall(r"^retrying task [0-9a-f-]{36}: attempt (\d+) of 101 failed: (.+)$", result.stderr, re.M)
    attempts = [int(attempt) for attempt, _ in said]
    assert len(attempts) >= 2 and attempts == sorted(set(attempts)), result.stderr  # one line per attempt
    assert all(reason.startswith("OperationalError: ") and "Connection refused" in reason for _, reason in said)


def test_submit_wait_says_each_unreachable_url_above_its_bar(deployment: dict) -> None:
    from tests.terminal import run_in_terminal
    from tests.webserver import Reply, WebServer

    with WebServer() as web:
        env = {
            **deployment,
            "DOCSIEVE_FETCH_ALLOW_HOSTS": f"127.0.0.1:{web.port}",
            "DOCSIEVE_HOST_INTERVAL": "0",
            "DOCSIEVE_FETCH_RETRIES": "0",
            "DOCSIEVE_RETRY_BACKOFF_MAX": "1",  # the next attempt within a second
        }
        web.route("/down.html", Reply(503))
        with workers(env, 1), workers(env, 2, "--io"):
            shown = run_in_terminal("submit", web.url("/down.html"), "--wait", env=env)
    assert shown.returncode == 0, shown.output
    lines = [line for line in shown.output.splitlines() if "trying again later" in line]
    assert len(lines) == 4, shown.output  # attempts 1 to 4 of FETCH_ATTEMPTS; the fifth is rejected
    for line in lines:  # each on a line of its own, above the bar (drawn again below it), not after it
        shown_line = line.rsplit("\r", 1)[-1]
        assert shown_line.startswith(f"unreachable for now, trying again later: {web.url('/down.html')}: HTTP 503"), (
            repr(line)
        )
    assert re.search(r"rejected 1", shown.output), shown.output


def test_submit_of_a_batch_larger_than_a_document_queues_every_document(deployment: dict, tmp_path: Path) -> None:
    """The document limit is per document: a batch file over it is streamed, not rejected whole."""
    batch = tmp_path / "day.jsonl"
    text = "كلمة " * 200
    lines = [json.dumps({"id": f"a{n}", "text": f"story {n}: {text}"}, ensure_ascii=False) for n in range(300)]
    batch.write_text("\n".join(lines), encoding="utf-8")
    env = {**deployment, "DOCSIEVE_MAX_DOCUMENT_BYTES": "50000"}  # the file is 0.55 MB
    assert batch.stat().st_size > 10 * 50_000
    queued = submit(env, str(batch))
    assert queued.returncode == 0, queued.stderr
    assert queued.stdout.startswith("queued 300 documents in "), queued.stdout
