"""docker-compose.yml: valid against the Compose Specification schema, shaped for scaling and safe
start-up, and every service's command runs here against local Redis and PostgreSQL (no Docker engine
on our machines)."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import redis
import yaml
from sqlalchemy.engine import make_url

from tests.conftest import REPO
from tests.services import PrivateRedis, free_port, postgres_binary, postgres_database, redis_binary

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
BIN = Path(sys.executable).parent


def test_valid_against_the_compose_specification() -> None:
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    jsonschema.validate(COMPOSE, schema)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of a value: ``$$`` is ``$``; ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``;
    ``${VAR:?error}`` and ``${VAR?error}`` fail the whole command (``ps``, ``logs``, ``down``...) when unset."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.group("name") or match.group("bare"), match.group("op"), match.group("arg")
        given = env.get(name)
        empty = given is None or (given == "" and operator and operator.startswith(":"))
        if operator in (":?", "?") and empty:
            raise LookupError(f"required variable {name} is missing: {argument}")
        if operator in (":-", "-") and empty:
            return argument
        return given or ""

    return re.sub(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)", one, value)


def strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def environment(service: str, **variables: str) -> dict[str, str]:
    return {k: interpolate(str(v), variables) for k, v in SERVICES[service].get("environment", {}).items()}


def test_shape() -> None:
    assert {"redis", "postgres", "migrate", "worker", "fetcher", "scheduler", "api", "flower"} <= SERVICES.keys()
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
    assert {"redis-data", "postgres-data"} <= COMPOSE["volumes"].keys()


def test_every_compose_command_works_without_any_variable_set() -> None:
    """A required variable (``${FLOWER_PASSWORD:?}``) fails `docker compose ps`, `logs` and `down` too."""
    for value in strings(COMPOSE):
        interpolate(value, {})


def test_every_service_has_a_healthcheck_that_runs_something() -> None:
    for name, service in SERVICES.items():
        if name == "migrate":  # one-shot: its exit status says it
            continue
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name


def test_redis_is_bounded_and_every_url_to_it_carries_its_password() -> None:
    command = [interpolate(part, {}) for part in SERVICES["redis"]["command"]]
    assert command[command.index("--maxmemory") + 1] == "1gb"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--requirepass") + 1] == "docsieve"
    given = [
        interpolate(part, {"REDIS_PASSWORD": "pw", "REDIS_MAXMEMORY": "3gb"}) for part in SERVICES["redis"]["command"]
    ]
    assert given[given.index("--requirepass") + 1] == "pw" and given[given.index("--maxmemory") + 1] == "3gb"
    assert environment("redis", REDIS_PASSWORD="pw")["REDISCLI_AUTH"] == "pw"  # for the healthcheck
    urls = [
        (name, value)
        for name in SERVICES
        for value in environment(name, REDIS_PASSWORD="pw").values()
        if value.startswith("redis://")
    ]
    assert len(urls) >= 10
    for name, url in urls:
        assert make_url(url).password == "pw", (name, url)


def test_the_api_queues_to_the_workers_and_listens_on_this_host_only() -> None:
    assert environment("api")["DOCSIEVE_API_QUEUE"] == "on"
    assert environment("api", API_SECRET="s")["DOCSIEVE_API_SECRET"] == "s"
    assert all(port.startswith("127.0.0.1:") for port in SERVICES["api"]["ports"])
    assert "/readyz" in " ".join(SERVICES["api"]["healthcheck"]["test"])


def test_flower_needs_a_password_and_listens_on_this_host_only() -> None:
    assert environment("flower", FLOWER_PASSWORD="secret")["FLOWER_BASIC_AUTH"] == "admin:secret"
    assert environment("flower", FLOWER_USER="ops", FLOWER_PASSWORD="s")["FLOWER_BASIC_AUTH"] == "ops:s"
    assert not any("basic-auth" in part or "${FLOWER_PASSWORD" in part for part in SERVICES["flower"]["command"])
    for port in SERVICES["flower"]["ports"]:
        assert port.startswith("127.0.0.1:"), port


def test_each_service_gets_what_the_readme_says_it_needs() -> None:
    """The README's table of variables per service is the compose file's, and the fetchers need no sources
    file: the scheduler sends each source in its poll message."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = {}
    for row in re.findall(r"^\| (\w+) \| `[^`]+` \| (.+) \|$", readme, flags=re.MULTILINE):
        table[row[0]] = set(re.findall(r"`([A-Z_]+)`", row[1]))
    assert table.keys() == {"migrate", "worker", "fetcher", "scheduler", "api", "flower"}
    for name, variables in table.items():
        assert set(SERVICES[name]["environment"]) == variables, name
    assert "DOCSIEVE_SOURCES_FILE" not in table["fetcher"]
    assert not any("sources.toml" in volume for volume in SERVICES["fetcher"].get("volumes", []))
    assert "DOCSIEVE_STORE" not in table["flower"]  # nothing Flower does needs the store's password


@pytest.fixture(scope="module")
def redis_of_compose(tmp_path_factory) -> Iterator[tuple[int, str]]:
    """The compose file's own Redis command (password, maxmemory, policy) on a free port here: the port,
    and the password."""
    password = uuid.uuid4().hex
    command = [interpolate(part, {"REDIS_PASSWORD": password}) for part in SERVICES["redis"]["command"]]
    assert command[0] == "redis-server"
    server = PrivateRedis(tmp_path_factory.mktemp("redis"), options=command[1:], password=password)
    try:
        server.start()
        yield server.port, password
    finally:
        server.stop()


def test_redis_runs_with_its_password_and_bound(redis_of_compose) -> None:
    port, password = redis_of_compose
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    client = redis.Redis(port=port, password=password)
    assert client.config_get("maxmemory") == {"maxmemory": str(2**30)}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    # The healthcheck's redis-cli, with the container's environment.
    program, *arguments = SERVICES["redis"]["healthcheck"]["test"][1:]
    redis_cli = redis_binary(program)
    env = {**os.environ, **environment("redis", REDIS_PASSWORD=password)}
    pong = subprocess.run(
        [str(redis_cli), "-h", "127.0.0.1", "-p", str(port), *arguments], env=env, capture_output=True, text=True
    )
    assert pong.stdout.strip() == "PONG"


@pytest.fixture(scope="module")
def services(postgres_server_url: str, redis_of_compose):
    """Each service's environment as compose gives it (the services' host names pointed here)."""
    port, password = redis_of_compose
    with postgres_database(postgres_server_url) as store_url:
        prefix = f"docsieve-compose-{uuid.uuid4().hex[:8]}"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DOCSIEVE_", "FLOWER_"))}
        base["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        base["DOCSIEVE_QUEUE_PREFIX"] = prefix

        def env(service: str, **variables: str) -> dict[str, str]:
            given = environment(service, REDIS_PASSWORD=password, **variables)
            given = {k: v.replace("@redis:6379/", f"@127.0.0.1:{port}/") for k, v in given.items()}
            if "DOCSIEVE_STORE" in given:
                given["DOCSIEVE_STORE"] = store_url
            if "DOCSIEVE_SOURCES_FILE" in given:
                given["DOCSIEVE_SOURCES_FILE"] = str(REPO / "sources.toml")
            return {**base, **given}

        yield env


def command(service: str, **replace: str) -> list[str]:
    parts = []
    for part in SERVICES[service]["command"]:
        part = interpolate(part, {})
        for old, new in replace.items():
            part = part.replace(old, new)
        parts.append(part)
    return parts


def healthcheck(service: str, process: subprocess.Popen, env: dict, **replace: str) -> str:
    """Run the service's healthcheck until it passes (what it printed), while the process stays up."""
    kind, *test = SERVICES[service]["healthcheck"]["test"]
    test = [interpolate(part, {}) for part in test]
    for old, new in replace.items():
        test = [part.replace(old, new) for part in test]
    probe_command = ["sh", "-c", test[0]] if kind == "CMD-SHELL" else test
    deadline = time.monotonic() + 90
    while True:
        probe = subprocess.run(probe_command, env=env, capture_output=True, text=True)
        if probe.returncode == 0:
            return probe.stdout
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, probe.stdout + probe.stderr
        time.sleep(1)


def start(service: str, env: dict, **replace: str) -> subprocess.Popen:
    return subprocess.Popen(
        command(service, **replace), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_service_commands_run_here(services) -> None:
    env = services
    # migrate: the one-shot service ends with success.
    migrated = subprocess.run(command("migrate"), env=env("migrate"), capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr

    # The store's healthcheck, pointed at the local instance.
    pg = make_url(env("migrate")["DOCSIEVE_STORE"])
    pg_isready = postgres_binary("pg_isready")
    check = SERVICES["postgres"]["healthcheck"]["test"][1].split()
    host = pg.query.get("host") or pg.host
    ready = subprocess.run(
        [str(pg_isready), *check[1:3], "-h", host, "-p", str(pg.port or 5432)], capture_output=True, text=True
    )
    assert ready.returncode == 0, ready.stdout + ready.stderr

    port = free_port()
    flower_port = {"5555": str(port)}
    # Flower without a password refuses to start, saying why.
    refused = subprocess.run(command("flower", **flower_port), env=env("flower"), capture_output=True, text=True)
    assert refused.returncode != 0 and "set FLOWER_PASSWORD" in refused.stderr, refused.stdout + refused.stderr

    api_port = {"8000": str(free_port())}
    hostname = {"HOSTNAME": socket.gethostname()}
    processes = {
        "worker": start("worker", env("worker")),
        "fetcher": start("fetcher", env("fetcher")),  # on the same host: a node name of its own
        "scheduler": start("scheduler", env("scheduler")),
        "flower": start("flower", env("flower", FLOWER_PASSWORD="secret"), **flower_port),
        "api": start("api", env("api"), **api_port),
    }
    try:
        # worker and fetcher: each comes up, and its healthcheck (celery inspect ping of itself) passes.
        for name in ("worker", "fetcher"):
            assert "pong" in healthcheck(name, processes[name], {**env(name), **hostname})
        # scheduler: its healthcheck reads the heartbeat it writes every tick.
        said = healthcheck("scheduler", processes["scheduler"], env("scheduler"))
        assert said.startswith("scheduler leading"), said

        # flower: answers its healthcheck, and everything else behind authentication.
        healthcheck("flower", processes["flower"], env("flower"), **flower_port)
        url = f"http://127.0.0.1:{port}/api/workers"
        with pytest.raises(urllib.error.HTTPError) as unauthenticated:
            urllib.request.urlopen(url, timeout=5)
        assert unauthenticated.value.code == 401
        request = urllib.request.Request(
            url, headers={"Authorization": "Basic " + base64.b64encode(b"admin:secret").decode()}
        )
        assert urllib.request.urlopen(request, timeout=5).status == 200

        # api: ready (store, broker, shared index), and every route behind a key.
        healthcheck("api", processes["api"], env("api"), **api_port)
        api = f"http://127.0.0.1:{api_port['8000']}"
        with pytest.raises(urllib.error.HTTPError) as keyless:
            urllib.request.urlopen(f"{api}/v1/records", timeout=5)
        assert keyless.value.code == 401

        # The scheduler stopped: its healthcheck fails.
        processes["scheduler"].terminate()
        processes["scheduler"].wait(timeout=30)
        _, *test = SERVICES["scheduler"]["healthcheck"]["test"]
        stopped = subprocess.run(test, env=env("scheduler"), capture_output=True, text=True)
        assert stopped.returncode == 1 and "no scheduler ticks here" in stopped.stderr
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
