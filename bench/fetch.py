"""Fetching: 1,000 article pages from a local server that answers each after 200 ms.

    .venv/bin/python bench/fetch.py [--corpus ../shared/corpus] [--pages 1000] [--delay 0.2] [--threads 64]

The pages are SaudiNewsNet articles in the shape of a news site's article page (navigation, article,
footer), served by a threaded local HTTP server that sleeps --delay seconds before every answer. Then:

- deployment: one fetch worker (``docsieve worker --io``, a thread pool of --threads threads) and one
  CPU worker (``docsieve worker``, 2 processes) on Redis and a fresh PostgreSQL database;
  ``docsieve submit URL... --wait`` is timed from its start until the server has answered the last
  page ("all fetched") and until the last record is stored ("all stored");
- embedded: ``docsieve ingest URL...`` (fetching on its own thread pool, then the pipeline), timed the
  same way, into a fresh SQLite file.

Every page comes from one host here (127.0.0.1), so the per-host rate limit is set to 0 for the run
(``DOCSIEVE_HOST_INTERVAL=0``); on the web, pages come from many hosts, each limited on its own.
Services come from REDIS_URL / DATABASE_URL when set and reachable, else private instances.
"""

from __future__ import annotations

import argparse
import html
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import DEFAULT_CORPUS, ROOT, Article, folder_or_exit, load_articles, machine
from pipeline import docsieve_command

sys.path.insert(0, str(ROOT))
from tests.services import deployment_env, postgres_database, postgres_server, redis_server, running_worker


def page(article: Article, number: int) -> bytes:
    paragraphs = "\n".join(f"<p>{html.escape(p)}</p>" for p in article.content.splitlines() if p.strip())
    return f"""<!DOCTYPE html>
<html lang="ar" dir="rtl"><head><meta charset="utf-8"><title>{html.escape(article.title)} | صحيفة المثال</title>
<link rel="canonical" href="/article/{number}.html"></head>
<body><header><nav><a href="/">الرئيسية</a> | <a href="/local">محليات</a> | <a href="/sport">رياضة</a></nav></header>
<main><article><h1>{html.escape(article.title)}</h1>
<div class="meta">الرياض - صحيفة المثال <time datetime="2015-05-01">2015-05-01</time></div>
{paragraphs}
</article></main>
<footer>جميع الحقوق محفوظة لصحيفة المثال © 2015 | <a href="/about">من نحن</a></footer></body></html>
""".encode()


class Site:
    """The local server: every page after ``delay`` seconds; counts the pages served and when."""

    def __init__(self, pages: list[bytes], delay: float) -> None:
        self.pages, self.delay = pages, delay
        self.served = 0
        self.last_served = 0.0
        self.lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(site.delay)
                name = self.path.rsplit("/", 1)[-1].removesuffix(".html")
                if not self.path.startswith("/article/") or not name.isdigit() or int(name) >= len(site.pages):
                    self.send_error(404)
                    return
                body = site.pages[int(name)]
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with site.lock:
                    site.served += 1
                    site.last_served = time.perf_counter()

            def log_message(self, *args) -> None:
                pass

        ThreadingHTTPServer.request_queue_size = 1024  # many fetch threads connect at once
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.served, self.last_served = 0, 0.0


def run_timed(site: Site, argv: list[str], env: dict) -> tuple[float, float, str]:
    """(seconds until the last page was served, seconds until the command ended, its last line)."""
    site.reset()
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    ended = time.perf_counter()
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[:3])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return site.last_served - started, ended - started, done.stdout.strip().splitlines()[-1 if "submit" in argv else 0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds before each answer (default 0.2)")
    parser.add_argument("--threads", type=int, default=64, help="threads of the fetch worker (default 64)")
    args = parser.parse_args()
    articles = load_articles(folder_or_exit(args.corpus), args.pages)
    site = Site([page(a, n) for n, a in enumerate(articles)], args.delay)
    urls = [f"{site.url}/article/{n}.html?utm_source=bench" for n in range(len(articles))]
    docsieve = docsieve_command()
    fetching = {
        "DOCSIEVE_FETCH_ALLOW_HOSTS": site.url.removeprefix("http://"),  # 127.0.0.1 on the site's port
        "DOCSIEVE_HOST_INTERVAL": "0",
        "DOCSIEVE_FETCH_CONCURRENCY": str(args.threads),
    }
    base = {**{k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}, **fetching}
    rows = []
    with tempfile.TemporaryDirectory(prefix="docsieve-fetch-") as work, redis_server() as redis_url:
        with postgres_server() as pg_server, postgres_database(pg_server) as store_url:
            prefix = f"docsieve-bench-{uuid.uuid4().hex[:8]}"
            env = deployment_env(redis_url, store_url, prefix, **fetching, DOCSIEVE_COORDINATION_URL=redis_url)
            subprocess.run([docsieve, "migrate"], env=env, check=True, capture_output=True)
            host, logs = socket.gethostname(), Path(work)
            with (
                running_worker(env, "--io", name=f"io@{host}", loglevel="WARNING", log=logs / "io.log"),
                running_worker(env, concurrency=2, name=f"cpu@{host}", loglevel="WARNING", log=logs / "cpu.log"),
            ):
                fetched, stored, line = run_timed(site, [docsieve, "submit", *urls, "--wait", "--quiet"], env)
                rows.append(
                    (f"deployment: 1 fetch worker ({args.threads} threads) + 1 CPU worker", fetched, stored, line)
                )
        embedded = {**base, "DOCSIEVE_STORE": f"sqlite:///{Path(work) / 'fetch.db'}"}
        fetched, stored, line = run_timed(site, [docsieve, "ingest", *urls, "--quiet"], embedded)
        rows.append((f"embedded `docsieve ingest URL...` ({args.threads} threads)", fetched, stored, line))
    print(f"{len(urls):,} pages, each answered after {args.delay * 1000:.0f} ms; {machine()}")
    print(f"floor with {args.threads} threads: {len(urls) * args.delay / args.threads:.1f} s\n")
    print("| run | all fetched s | all stored s | pages/s (stored) | outcome |")
    print("| --- | ---: | ---: | ---: | --- |")
    for label, fetched, stored, line in rows:
        print(f"| {label} | {fetched:.1f} | {stored:.1f} | {len(urls) / stored:,.0f} | `{line}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
