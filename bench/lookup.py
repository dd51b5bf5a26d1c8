"""One-document lookups (``similar``) in a store's embedded index, read from the files (a command's way) against
through the mappings (``resident``: the HTTP service's way), alternating in one run.

    .venv/bin/python bench/lookup.py --store /tmp/api-bench/probes.db --texts part-001.jsonl [--queries 200]

Each way is a fresh process's pipeline on the same store, asked ``similar`` for --queries texts drawn from
the JSON Lines file (after --warm untimed ones), for --rounds rounds; it prints ms a query (median, p99) and
the process's peak RSS growth. bench/api.py measures the same over HTTP.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, random, resource, sys, time
from docsieve.index import open_index
from docsieve.models import RawDocument
from docsieve.pipeline import Pipeline
from docsieve.settings import Settings
from docsieve.store import Store

store, texts_path, resident = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
queries, warm = int(sys.argv[4]), int(sys.argv[5])
texts = json.loads(open(texts_path, encoding="utf-8").read())
settings = Settings(store=f"sqlite:///{store}")
pipeline = Pipeline(Store(settings.store, readonly=True), settings, open_index(settings, resident=resident))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for n, text in enumerate(texts[: warm + queries]):
    started = time.perf_counter()
    for _ in pipeline.similar([RawDocument("q", text)], 10):
        pass
    if n >= warm:
        times.append(time.perf_counter() - started)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"times": times, "rss_growth_kb": grown}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--texts", type=Path, required=True, help="JSON Lines with a `text` field")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(5)
    with args.texts.open(encoding="utf-8") as lines:
        pool = [json.loads(line)["text"] for _, line in zip(range(20_000), lines, strict=False)]
    chosen = Path(tempfile.mkdtemp(prefix="docsieve-lookup-")) / "texts.json"
    chosen.write_text(json.dumps(rng.sample(pool, args.warm + args.queries), ensure_ascii=False), encoding="utf-8")
    results: dict[str, list[float]] = {"files": [], "resident": []}
    growth: dict[str, list[int]] = {"files": [], "resident": []}
    for round_ in range(args.rounds):
        for way in ("files", "resident") if round_ % 2 == 0 else ("resident", "files"):
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(args.store), str(chosen), "1" if way == "resident" else "0",
                 str(args.queries), str(args.warm)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            found = json.loads(done.stdout)
            times = sorted(found["times"])
            results[way].append(statistics.median(times))
            growth[way].append(found["rss_growth_kb"])
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(
                f"round {round_ + 1} {way}: median {statistics.median(times) * 1000:.1f} ms  p99 {p99 * 1000:.1f} ms  "
                f"peak RSS growth {found['rss_growth_kb'] / 1024:.0f} MB"
            )
    files, resident = statistics.median(results["files"]), statistics.median(results["resident"])
    print(f"median of rounds: files {files * 1000:.1f} ms, resident {resident * 1000:.1f} ms: {files / resident:.2f}x")


if __name__ == "__main__":
    main()
