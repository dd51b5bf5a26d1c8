"""The HTTP API against the command: ``POST /v1/documents`` of N articles in batches against ``docsieve ingest``
of the same articles as one JSON Lines file, each into a fresh SQLite store, alternating for --rounds rounds.

    .venv/bin/python bench/api.py [--corpus ../shared/corpus] [--docs 5000] [--batch 500] [--rounds 3]

- ingest: ``docsieve ingest batch.jsonl --quiet`` as a child process, wall time from outside (start and
  imports included: what a person running it waits for).
- api: ``docsieve serve`` started and ready first (untimed: a service starts once), then the articles sent
  as JSON arrays of --batch documents, one request after another over loopback with ``requests``, timed
  from the first request to the last reply. The ratio is api docs/s over ingest docs/s.

Then, with the API's store holding what was sent (or, with --fill, what those JSON Lines files hold), the latency of
``GET /v1/stories/{id}`` and ``POST /v1/similar`` (a stored article's text) over --probes requests each,
after --warm untimed ones of each (a service's steady state: its first requests map the index's pages):
p50, p99 and the largest. Issue 15's targets: the ratio at least 0.7; both p99 under 50 ms at 100,000
stored documents.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from common import DEFAULT_CORPUS, folder_or_exit, load_articles, machine, settle

ROOT = Path(__file__).resolve().parent.parent
DOCSIEVE = str(Path(sys.executable).parent / "docsieve")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--fill",
        type=Path,
        nargs="*",
        default=[],
        help="JSON Lines files ingested into the probes' store first (e.g. bench/scale.py's corpus parts)",
    )
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--warm", type=int, default=50, help="untimed requests of each kind before the probes")
    parser.add_argument("--workdir", type=Path, help="keep the stores here (default: a temporary folder)")
    args = parser.parse_args()

    articles = load_articles(folder_or_exit(args.corpus), args.docs)
    rows = [{"id": a.id, "title": a.title, "text": a.content} for a in articles]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="docsieve-api-"))
    work.mkdir(parents=True, exist_ok=True)
    batch_file = work / "batch.jsonl"
    batch_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[: args.docs]), "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "docsieve")], check=True)
    print(f"{machine()}; {args.docs} articles, batches of {args.batch}, {args.rounds} rounds")

    ingest_rates, own_rates, api_rates = [], [], []
    for round_ in range(1, args.rounds + 1):
        for kind in ("ingest", "api") if round_ % 2 else ("api", "ingest"):
            store = work / f"{kind}-{round_}.db"
            settle()
            if kind == "ingest":
                started = time.perf_counter()
                done = subprocess.run(
                    [DOCSIEVE, "ingest", str(batch_file), "--store", str(store), "--quiet"],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                ingest_rates.append(args.docs / (time.perf_counter() - started))
                # What the command itself reports: from its first read to its last write, start-up left out.
                own = next(line for line in done.stdout.splitlines() if line.startswith("elapsed"))
                own_rates.append(args.docs / float(own.split()[1]))
            else:
                with Server(store, env) as server:
                    elapsed = server.send(rows[: args.docs], args.batch)
                api_rates.append(args.docs / elapsed)
            print(f"round {round_} {kind}: {(ingest_rates if kind == 'ingest' else api_rates)[-1]:,.0f} docs/s")
    measured = (("the command's wall", ingest_rates), ("the command's own elapsed", own_rates))
    for name, rates in measured if args.rounds else ():
        ratios = [a / i for a, i in zip(api_rates, rates, strict=True)]
        print(
            f"ingest ({name}) {statistics.median(rates):,.0f} docs/s (best {max(rates):,.0f}); api "
            f"{statistics.median(api_rates):,.0f} (best {max(api_rates):,.0f}); api / ingest: median of rounds "
            f"{statistics.median(ratios):.2f}, best over best {max(api_rates) / max(rates):.2f}"
        )

    store = work / "probes.db"
    rng = random.Random(7)
    texts = [r["text"] for r in rows]
    if args.fill and not store.exists():  # a store --workdir kept from an earlier run is probed as it is
        subprocess.run(
            [DOCSIEVE, "ingest", *map(str, args.fill), "--store", str(store), "--quiet"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    if args.fill:
        texts = [json.loads(line)["text"] for line in sample_lines(args.fill, 1000, rng)]
    with Server(store, env) as server:
        if not args.fill:
            server.send(rows, args.batch)
        stories = server.story_ids()
        held = count_records(store)
        for _ in range(args.warm):  # untimed: the first requests map the index's pages and fill the caches
            server.timed("GET", f"/v1/stories/{rng.choice(stories)}")
            server.timed("POST", "/v1/similar", json={"text": rng.choice(texts), "limit": 10})
        story_times = [server.timed("GET", f"/v1/stories/{rng.choice(stories)}") for _ in range(args.probes)]
        similar_times = [
            server.timed("POST", "/v1/similar", json={"text": rng.choice(texts), "limit": 10})
            for _ in range(args.probes)
        ]
    for name, times in (("GET /v1/stories/{id}", story_times), ("POST /v1/similar", similar_times)):
        times.sort()
        p50, p99 = times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]
        print(
            f"{name} at {held:,} stored: p50 {p50 * 1000:.1f} ms  p99 {p99 * 1000:.1f} ms  "
            f"max {times[-1] * 1000:.1f} ms"
        )
    if not args.workdir:
        shutil.rmtree(work)


def sample_lines(paths: list[Path], n: int, rng: random.Random) -> list[str]:
    """``n`` lines drawn evenly from the files (reservoir sampling: the files are not held)."""
    kept: list[str] = []
    seen = 0
    for path in paths:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                seen += 1
                if len(kept) < n:
                    kept.append(line)
                elif (slot := rng.randrange(seen)) < n:
                    kept[slot] = line
    return kept


def count_records(store: Path) -> int:
    import sqlite3

    with sqlite3.connect(store) as database:
        return database.execute("SELECT count(*) FROM records").fetchone()[0]


class Server:
    """``docsieve serve`` on a free port of loopback, with an admin key of its store."""

    def __init__(self, store: Path, env: dict[str, str]) -> None:
        self.env = {**env, "DOCSIEVE_STORE": str(store), "DOCSIEVE_API_RATE": "0"}
        self.store = store

    def __enter__(self) -> Server:
        made = subprocess.run(
            [DOCSIEVE, "keys", "create", "--scope", "admin"], env=self.env, check=True, capture_output=True, text=True
        )
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = made.stdout.strip()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [DOCSIEVE, "serve", "--port", str(port)], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.session.get(self.base + "/readyz", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("docsieve serve did not become ready in 60 s")

    def send(self, rows: list[dict], batch: int) -> float:
        bodies = [json.dumps(rows[i : i + batch], ensure_ascii=False).encode() for i in range(0, len(rows), batch)]
        started = time.perf_counter()
        for body in bodies:
            reply = self.session.post(
                self.base + "/v1/documents", data=body, headers={"Content-Type": "application/json"}, timeout=600
            )
            reply.raise_for_status()
        return time.perf_counter() - started

    def story_ids(self) -> list[str]:
        found, cursor = [], None
        while True:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = self.session.get(self.base + "/v1/stories", params=params, timeout=60).json()
            found += [s["id"] for s in page["stories"]]
            cursor = page["next_cursor"]
            if not page["more"]:
                return found

    def timed(self, method: str, path: str, **kwargs) -> float:
        started = time.perf_counter()
        reply = self.session.request(method, self.base + path, timeout=60, **kwargs)
        elapsed = time.perf_counter() - started
        reply.raise_for_status()
        return elapsed

    def __exit__(self, *exc: object) -> None:
        self.session.close()
        self.process.terminate()
        self.process.wait(30)


if __name__ == "__main__":
    main()
