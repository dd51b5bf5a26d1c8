"""Each speed trick of the ingest path switched off alone, against the code as it is: what it buys.

    .venv/bin/python bench/tricks.py [--corpus ../shared/corpus] [--docs 5000] [--rounds 14]

The same ``docsieve ingest`` of the first --docs SaudiNewsNet articles (written as scraped files) into an
empty store made by ``docsieve migrate`` (untimed), variants alternating round by round, wall time from
outside, medians. The variants:

- ``base``: the code as it is;
- ``checkpointer``: no checkpoint thread (SQLite checkpoints on the committing thread and at close);
- ``one-process``: no preparing process (``DOCSIEVE_PREPARE_AHEAD=off``: each batch read, extracted and
  fingerprinted by the process that decides it, in turn);
- ``cold-cache``: the folding tables built again (an empty cache folder every round).

A trick stays for a gain of 5% or more (docs/benchmarks.md, "The speed tricks, weighed").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import DEFAULT_CORPUS, folder_or_exit, load_articles, machine
from pipeline import compile_sources, docsieve_command, write_articles

# Run in the child: switch one trick off, then run the command as the console script does.
VARIANT = """
import sys
variant = sys.argv.pop(1)
import docsieve.cli as cli
if variant == "checkpointer":
    import docsieve.store as store

    class NoCheckpointer:
        def __init__(self, engine): pass
        def request(self): pass
        def close(self): pass

    store._Checkpointer = NoCheckpointer
cli.console()
"""
VARIANTS = ("base", "checkpointer", "one-process", "cold-cache")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="shared corpus folder")
    parser.add_argument("--docs", type=int, default=5000, help="articles (default 5000)")
    parser.add_argument("--rounds", type=int, default=14, help="rounds (default 14)")
    args = parser.parse_args()
    articles = load_articles(folder_or_exit(args.corpus), args.docs)
    compile_sources()
    times: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="docsieve-tricks-") as tmp:
        work = Path(tmp)
        write_articles(articles, work / "articles")
        warm = work / "cache-warm"
        store = f"sqlite:///{work / 'tricks.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
        # The warm cache filled once, untimed, as any earlier run of docsieve on the machine has.
        subprocess.run(
            [docsieve_command(), "similar", "seeds/", "--store", store],
            env={**env, "XDG_CACHE_HOME": str(warm)},
            capture_output=True,
        )
        for r in range(args.rounds):
            for variant in VARIANTS:
                for path in work.glob("tricks.db*"):  # the store and its index's folder
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                subprocess.run(
                    [docsieve_command(), "migrate", "--store", store], env=env, check=True, capture_output=True
                )
                cache = work / f"cache-cold-{r}" if variant == "cold-cache" else warm
                run = "checkpointer" if variant == "checkpointer" else "base"
                ahead = "off" if variant == "one-process" else "on"
                command = [sys.executable, "-c", VARIANT, run, "ingest", str(work / "articles"), "--store", store]
                started = time.perf_counter()
                subprocess.run(
                    [*command, "--quiet"],
                    env={**env, "XDG_CACHE_HOME": str(cache), "DOCSIEVE_PREPARE_AHEAD": ahead},
                    check=True,
                    capture_output=True,
                )
                times[variant].append(time.perf_counter() - started)
            print(f"  round {r + 1}: " + "  ".join(f"{v} {times[v][-1]:.2f} s" for v in VARIANTS), flush=True)
    base = statistics.median(times["base"])
    print(f"\n{len(articles):,} articles, {args.rounds} rounds, medians; {machine()}")
    for variant in VARIANTS:
        median = statistics.median(times[variant])
        print(f"  {variant:<13} {median:6.3f} s  {median / base - 1:+6.1%} against base")
    return 0


if __name__ == "__main__":
    sys.exit(main())
