from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from docsieve.models import RawDocument, Record
from docsieve.pipeline import Pipeline
from docsieve.settings import Settings
from docsieve.store import Store
from tests.services import postgres_database, postgres_server, redis_server, remove_keys

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture(scope="session", autouse=True)
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The user cache (platformdirs': the normalizer's tables) in a folder of the run's own, for the tests and
    every process they start: never the real home's."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("cache")
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture(scope="session", autouse=True)
def deciders_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The decider slots' files (docsieve/deciders.py) in a runtime folder of the run's own, for the tests and every
    process they start: never the machine's temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("runtime")
        folder.chmod(0o700)  # as a user's runtime folder is
        # The default folder's, so that processes started without DOCSIEVE_ variables use it too.
        patch.setenv("XDG_RUNTIME_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def postgres_server_url():
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL when set and reachable, else one private redis-server for the whole run."""
    with redis_server() as url:
        yield url


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key (and queue) prefix of this test's own; only its keys are removed afterwards."""
    name = f"docsieve-test-{uuid.uuid4().hex[:12]}"
    yield name
    remove_keys(redis_url, name)


@pytest.fixture
def redis_index(redis_url: str):
    """The shared candidate index under a prefix of this test's own, cleared afterwards."""
    from worker.redis_index import RedisIndex

    index = RedisIndex(redis_url, f"docsieve-test-{uuid.uuid4().hex[:8]}")
    yield index
    index.clear()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path):
    """Every store and pipeline test runs on both back ends."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with postgres_database(request.getfixturevalue("postgres_server_url")) as url:
        yield url


@pytest.fixture
def settings(store_url: str) -> Settings:
    return Settings(store=store_url)


@pytest.fixture
def store(store_url: str):
    s = Store(store_url)
    yield s
    s.close()


@pytest.fixture
def celery_app():
    """A Celery app of default settings, current for the test, so the tasks run in it (tests set its
    ``docsieve_settings`` and ``send_task``); no broker is reached."""
    from worker.celery_app import create_app

    return create_app(Settings())


@pytest.fixture
def pipeline(store: Store, settings: Settings) -> Pipeline:
    return Pipeline(store, settings)


@pytest.fixture
def task_pipeline(celery_app, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """The tasks of worker/tasks.py run on this test's pipeline and its settings."""
    import worker.tasks as tasks

    monkeypatch.setattr(tasks, "_pipeline", lambda: pipeline)
    monkeypatch.setattr(celery_app, "docsieve_settings", pipeline.settings)
    return pipeline


@pytest.fixture
def with_payloads(celery_app, task_pipeline: Pipeline, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch):
    """The task's settings with a shared Redis, where payloads wait under this test's own prefix."""
    import worker.tasks as tasks
    from worker.payloads import Payloads

    settings = task_pipeline.settings.with_(index_url=redis_url, queue_prefix=prefix)
    monkeypatch.setattr(celery_app, "docsieve_settings", settings)
    payloads = Payloads.of(settings)
    monkeypatch.setattr(tasks, "_payloads_if_any", lambda: payloads)
    yield payloads
    payloads.close()


def ingest_texts(pipeline: Pipeline, *pairs: tuple[str, str]) -> dict[str, Record]:
    """Ingest (source, body) pairs in order; the stored records by source."""
    pipeline.ingest([RawDocument(source=source, body=body) for source, body in pairs])
    return {r.source: r for r in pipeline.store.iter_records()}


# Whole files of slow tests: worker processes, docker-compose's commands, a terminal, many CLI runs, fuzzing.
SLOW_FILES = {
    "test_checks.py",
    "test_compose.py",
    "test_concurrency.py",
    "test_deployment.py",
    "test_fuzz.py",
    "test_store_errors.py",
    "test_terminal.py",
    "test_web.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``slow``: the files above, and every test that needs PostgreSQL (a private server takes seconds to
    start where none is given), besides the tests marked one by one."""
    for item in items:
        params = getattr(item, "callspec", None)
        on_postgres = params is not None and params.params.get("store_url") == "postgresql"
        if item.path.name in SLOW_FILES or on_postgres or "postgres_server_url" in item.fixturenames:
            item.add_marker(pytest.mark.slow)
