"""The rate of a grown store against an empty one, on a quiet machine: fresh articles of the scale corpus's
kind (bench/scale.py's ``compose``, no planted copies), N dated at its start into an empty store, N dated
after its last article into a copy of the store a ``bench/scale.py`` run left, alternating.

    .venv/bin/python bench/scale_check.py --workdir /tmp/scale-400k-v [--docs 50000] [--rounds 3] [--against DIR]

Each ingest is ``docsieve ingest --quiet`` in a child process under GNU time (wall seconds, peak RSS). With
``--against DIR`` (a copy of other code, say ``git archive COMMIT | tar -x -C DIR``), each round runs both
codes, this one and DIR's (its ``docsieve`` package first on ``PYTHONPATH``), in alternating order.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import scale
from common import DEFAULT_CORPUS
from pipeline import docsieve_command


def write_fresh(path: Path, start: int, docs: int, pools: dict[str, scale.Pool]) -> None:
    rng = np.random.default_rng(start)
    with path.open("w", encoding="utf-8") as out:
        for position in range(start, start + docs):
            pool = pools["en" if rng.random() < scale.ENGLISH_SHARE else "ar"]
            paragraphs, _ = scale.compose(pool, rng)
            when = scale.arrival(position) + timedelta(seconds=float(rng.uniform(-scale.JITTER_S, scale.JITTER_S)))
            title, outlet = scale.pick(pool.titles, rng), scale.pick(pool.outlets, rng)
            out.write(scale.Article(f"f{position:08d}", pool.language, title, paragraphs, when, outlet).line())


def remove_store(store: Path) -> Path:
    """The store file gone, with its log and index files; returns its path."""
    for path in store.parent.glob(f"{store.name}*"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return store


def ingest(store: Path, source: Path, code: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one ``docsieve ingest`` (of the docsieve in ``code``, if given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}  # the defaults, as scale.py
    env["DOCSIEVE_STORE"] = str(store)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    # Whatever the benchmark wrote before (the 11 GB copy of a 1M store) goes to disk first: otherwise the
    # kernel writes it back during the timed ingest (0.73-0.74 at 1M without this, docs/benchmarks.md).
    os.sync()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", docsieve_command(), "ingest", "--quiet", str(source)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall, peak = done.stderr.strip().splitlines()[-1].split()
    return float(wall), int(peak) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="of a finished bench/scale.py run")
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--against", type=Path, help="other code to run alternately (a directory holding docsieve/)")
    args = parser.parse_args()
    results = json.loads((args.workdir / "results.json").read_text())
    grown = max(r["records_after"] for r in results["rows"])
    pools = scale.load_pools(args.corpus)
    with tempfile.TemporaryDirectory(prefix="docsieve-scale-check-") as tmp:
        work = Path(tmp)
        first, late = work / "first.jsonl", work / "late.jsonl"
        write_fresh(first, 0, args.docs, pools)
        write_fresh(late, grown, args.docs, pools)
        print(f"{args.docs:,} fresh articles into an empty store and into a copy of {grown:,} records", flush=True)
        codes: list[tuple[str, Path | None]] = [("this code", None)]
        if args.against is not None:
            codes.append((str(args.against), args.against.resolve()))
        for round_ in range(1, args.rounds + 1):
            for name, code in codes if round_ % 2 else reversed(codes):
                empty, copy = remove_store(work / "empty.db"), remove_store(work / "grown.db")
                wall_first, peak_first = ingest(empty, first, code)
                for suffix in ("", "-wal"):  # the log too, should the run have left one
                    if (args.workdir / f"store.db{suffix}").exists():
                        shutil.copy(args.workdir / f"store.db{suffix}", f"{copy}{suffix}")
                shutil.copytree(args.workdir / "store.db.index", f"{copy}.index")
                wall_late, peak_late = ingest(copy, late, code)
                print(
                    f"round {round_}{f', {name}' if len(codes) > 1 else ''}: empty {wall_first:.1f} s "
                    f"{peak_first:,.0f} MB; grown {wall_late:.1f} s {peak_late:,.0f} MB; late ÷ first docs/s "
                    f"{wall_first / wall_late:.2f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
