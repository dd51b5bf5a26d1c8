"""End to end: ``docsieve ingest`` of a folder of scraped articles against bare rensa signatures of it.

    .venv/bin/python bench/pipeline.py [--corpus ../shared/corpus] [--docs 5000 | --all] [--json FILE]
        [--set NAME=VALUE ...]

Writes the first --docs SaudiNewsNet articles with non-empty content (or all of them) into a temporary
folder in the scraped shape (image line, title line, one paragraph per line). Then, alternating for
--rounds rounds, each as a child process started once the machine is about idle (``common.settle``),
with wall time measured from outside (process start and imports included) and peak RSS from the
child's own rusage, as reported by a small wrapper: ``/usr/bin/time -v`` where it is GNU time, else a
Python one using ``os.wait4`` (its own start, some 20 ms, then counts in the wall time). Why a
wrapper: Linux carries the parent's peak RSS over to a child at exec, so rusage taken here would
report at least this process's size (58 MB for 5000 articles, above bare rensa's own peak).

- docsieve: ``docsieve ingest DIR --store sqlite:///TMP/bench.db --quiet``, into a fresh store every round:
  a new, empty store made by ``docsieve migrate`` before the round, untimed (running the migrations
  imports Alembic, some 0.1 s once in a store's life, which the ingest of an existing store never pays);
- rensa: a minimal script that walks the folder, reads every file, splits on whitespace and signs the
  word n-grams with ``RMinHash(128, 42)``: the floor for "read and sign", with no extraction,
  normalization, decision or storage.

docsieve's modules are compiled to bytecode first, as pip does when it installs a package (an
editable install in an environment with PYTHONDONTWRITEBYTECODE would compile them in every run).
docsieve runs with its own defaults (every DOCSIEVE_ variable is cleared); with ``--set``, a third command
runs in the same rounds: ``docsieve ingest`` with those ``DOCSIEVE_`` variables (a setting's cost). rensa signs
whitespace word
n-grams of --shingle-size words (default 5), as the baseline is specified.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from common import DEFAULT_CORPUS, Article, folder_or_exit, load_articles, machine, settle

RENSA_SCRIPT = '''\
"""Bare rensa: read every file under a folder and sign its whitespace word n-grams."""
import os
import sys

import rensa

root, n = sys.argv[1], int(sys.argv[2])
count = 0
for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(filenames):
        with open(os.path.join(dirpath, name), encoding="utf-8") as fh:
            tokens = fh.read().split()
        grams = [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)] or [" ".join(tokens)]
        sketch = rensa.RMinHash(128, 42)
        sketch.update(grams)
        sketch.digest()
        count += 1
print(f"signed {count}")
'''

WRAPPER_SCRIPT = '''\
"""Run a command and write its peak RSS in GNU time -v's words (for systems without GNU time)."""
import os
import subprocess
import sys

report, cmd = sys.argv[1], sys.argv[2:]
proc = subprocess.Popen(cmd)
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = os.waitstatus_to_exitcode(status)
kib = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss
with open(report, "w") as fh:
    fh.write(f"Maximum resident set size (kbytes): {kib}\\n")
sys.exit(proc.returncode if proc.returncode >= 0 else 128 - proc.returncode)
'''

GNU_TIME = "/usr/bin/time"
MAX_RSS_LINE = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
READ_LINE = re.compile(r"^read (\d+)\b", re.MULTILINE)
ELAPSED_LINE = re.compile(r"^elapsed ([\d.]+) s\s+([\d,.]+) docs/s", re.MULTILINE)
STORE_SUFFIX = re.compile(r"\s+store \S+$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Run:
    wall_s: float
    docs_per_s: float
    peak_rss_mb: float
    output: str

    @property
    def reported_docs_per_s(self) -> float | None:
        """docsieve's own figure: its pipeline alone, without process start, imports and store setup."""
        found = ELAPSED_LINE.search(self.output)
        return float(found.group(2).replace(",", "")) if found else None


@dataclass(frozen=True, slots=True)
class Totals:
    best_docs_per_s: float
    median_docs_per_s: float
    peak_rss_mb: float  # the largest over the rounds
    runs_s: list[float]


def write_articles(articles: Sequence[Article], folder: Path) -> None:
    """The scraped shape; a numbered prefix keeps the corpus order when the folder is walked sorted."""
    folder.mkdir(parents=True)
    for n, article in enumerate(articles):
        lines = [f"![](https://img.example.net/{article.id}.jpg)"]
        if article.title:
            lines.append(article.title)
        lines += [p.strip() for p in article.content.split("\n") if p.strip()]
        (folder / f"{n:05d}_{article.id}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def measuring_prefix(work: Path, report: Path) -> list[str]:
    """The command prefix that runs a child and writes its peak RSS to report."""
    probe = [GNU_TIME, "-v", "-o", os.devnull, "true"]
    if Path(GNU_TIME).exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return [GNU_TIME, "-v", "-o", str(report)]
    wrapper = work / "measure.py"
    wrapper.write_text(WRAPPER_SCRIPT, encoding="utf-8")
    return [sys.executable, str(wrapper), str(report)]


def compile_sources() -> None:
    """Write the bytecode of docsieve's own modules ahead of the runs: the core and the packages beside it that the
    command imports (until the thirty-fifth session only ``worker``'s were, so every run compiled the core's)."""
    import compileall

    import docsieve
    import scheduler
    import worker

    for package in (docsieve, scheduler, worker):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)


def run_child(
    cmd: Sequence[str], prefix: Sequence[str], report: Path, env: dict[str, str], docs: int, log: Path
) -> Run:
    """Run cmd to completion under the measuring prefix; wall time from here, peak RSS from the report."""
    report.unlink(missing_ok=True)
    settle()
    with log.open("wb") as out:
        started = time.perf_counter()
        returncode = subprocess.run([*prefix, *cmd], stdout=out, stderr=subprocess.STDOUT, env=env).returncode
        wall = time.perf_counter() - started
    output = log.read_text(encoding="utf-8", errors="replace")
    if returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with exit code {returncode}:\n{output}")
    found = MAX_RSS_LINE.search(report.read_text(encoding="utf-8"))
    if found is None:
        sys.exit(f"no peak RSS in {report}")
    return Run(wall, docs / wall, int(found.group(1)) / 1024, output)


def totals(runs: Sequence[Run]) -> Totals:
    rates = [r.docs_per_s for r in runs]
    return Totals(max(rates), statistics.median(rates), max(r.peak_rss_mb for r in runs), [r.wall_s for r in runs])


def docsieve_command() -> str:
    beside = Path(sys.executable).with_name("docsieve")
    found = str(beside) if beside.exists() else shutil.which("docsieve")
    if not found:
        sys.exit("docsieve command not found: install the project (pip install -e .) in this Python")
    return found


def markdown(docs: int, rounds: int, ingest: Totals, rensa: Totals, summary: str) -> str:
    summary = STORE_SUFFIX.sub("", summary)  # the temporary path means nothing in a report
    ratio_best = ingest.best_docs_per_s / rensa.best_docs_per_s
    ratio_median = ingest.median_docs_per_s / rensa.median_docs_per_s
    return "\n".join(
        [
            f"{docs:,} SaudiNewsNet articles as scraped files, each command a fresh process (start-up "
            f"included), {rounds} rounds alternating, fresh SQLite store every round. "
            f"{machine()}, Python {platform.python_version()}, rensa {version('rensa')}.",
            "",
            "| command | docs/s best | docs/s median | peak RSS MB |",
            "| --- | ---: | ---: | ---: |",
            f"| `docsieve ingest` (read, extract, fingerprint, decide, store) | {ingest.best_docs_per_s:,.0f} "
            f"| {ingest.median_docs_per_s:,.0f} | {ingest.peak_rss_mb:,.0f} |",
            f"| bare rensa (read, split, sign; nothing stored) | {rensa.best_docs_per_s:,.0f} "
            f"| {rensa.median_docs_per_s:,.0f} | {rensa.peak_rss_mb:,.0f} |",
            f"| ingest ÷ rensa | {ratio_best:.2f}x | {ratio_median:.2f}x | |",
            "",
            f"docsieve's own summary (last round): `{' / '.join(summary.splitlines())}` "
            f"(its docs/s leaves out process start, imports and opening the store).",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="shared corpus folder")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--docs", type=int, default=5000, help="articles to write (default 5000)")
    size.add_argument("--all", action="store_true", help="every article with non-empty content")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both commands (default 3)")
    parser.add_argument("--shingle-size", type=int, default=5, help="word n-gram size for rensa (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="also run docsieve with DOCSIEVE_NAME=VALUE, alternating in the same rounds (e.g. --set rewrites=on)",
    )
    args = parser.parse_args(argv)
    folder = folder_or_exit(args.corpus)
    articles = load_articles(folder, None if args.all else args.docs)
    docs = len(articles)

    work = Path(tempfile.mkdtemp(prefix="docsieve-bench-"))
    try:
        articles_dir = work / "articles"
        write_articles(articles, articles_dir)
        script = work / "rensa_sign.py"
        script.write_text(RENSA_SCRIPT, encoding="utf-8")
        store = work / "bench.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
        # Both commands run from compiled bytecode, as an installed package does (pip compiles at install):
        # an editable install under PYTHONDONTWRITEBYTECODE would compile docsieve's modules every run.
        compile_sources()
        report = work / "rusage.txt"
        prefix = measuring_prefix(work, report)
        ingest_cmd = [docsieve_command(), "ingest", str(articles_dir), "--store", f"sqlite:///{store}", "--quiet"]
        rensa_cmd = [sys.executable, str(script), str(articles_dir), str(args.shingle_size)]
        print(
            f"{docs:,} articles written to {articles_dir}; {args.rounds} rounds; peak RSS via {prefix[0]}",
            flush=True,
        )

        variant_env = env | {f"DOCSIEVE_{item.split('=', 1)[0].upper()}": item.split("=", 1)[1] for item in args.set}
        order = ["ingest", "rensa", *(["variant"] if args.set else [])]
        runs: dict[str, list[Run]] = {which: [] for which in order}
        for r in range(args.rounds):
            # alternate which goes first, against drift in the machine's state
            for which in order[r % len(order) :] + order[: r % len(order)]:
                if which != "rensa":  # a fresh store: the database, any -wal / -journal and the index beside it
                    for path in work.glob("bench.db*"):
                        shutil.rmtree(path) if path.is_dir() else path.unlink()
                    subprocess.run(
                        [docsieve_command(), "migrate", "--store", f"sqlite:///{store}"], env=env, check=True
                    )
                if which == "ingest":
                    run = run_child(ingest_cmd, prefix, report, env, docs, work / "ingest.log")
                elif which == "variant":
                    run = run_child(ingest_cmd, prefix, report, variant_env, docs, work / "variant.log")
                else:
                    run = run_child(rensa_cmd, prefix, report, env, docs, work / "rensa.log")
                runs[which].append(run)
                reported = run.reported_docs_per_s
                print(
                    f"  round {r + 1} {which:<6} {run.wall_s:7.2f} s  {run.docs_per_s:8,.0f} docs/s  "
                    f"peak RSS {run.peak_rss_mb:6,.0f} MB"
                    + (f"  (docsieve's own figure {reported:,.0f} docs/s)" if reported else ""),
                    flush=True,
                )

        ingest_runs, rensa_runs = runs["ingest"], runs["rensa"]
        summary = ingest_runs[-1].output.strip()
        read = READ_LINE.search(summary)
        if read is None or int(read.group(1)) != docs:
            print(f"warning: docsieve read {read.group(1) if read else '?'} documents, expected {docs}")
        signed = rensa_runs[-1].output.strip()
        if signed != f"signed {docs}":
            print(f"warning: rensa script printed {signed!r}, expected 'signed {docs}'")
        ingest, rensa = totals(ingest_runs), totals(rensa_runs)

        print("\ndocsieve ingest summary (last round):")
        print("  " + "\n  ".join(summary.splitlines()))
        for name, t in (("docsieve ingest", ingest), ("bare rensa", rensa)):
            print(
                f"{name:<16} best {t.best_docs_per_s:8,.0f} docs/s  median {t.median_docs_per_s:8,.0f} docs/s  "
                f"peak RSS {t.peak_rss_mb:,.0f} MB"
            )
        print(
            f"ingest / rensa: best {ingest.best_docs_per_s / rensa.best_docs_per_s:.2f}x  "
            f"median {ingest.median_docs_per_s / rensa.median_docs_per_s:.2f}x"
        )
        variant = totals(runs["variant"]) if args.set else None
        if variant is not None:
            print(
                f"with {' '.join(args.set)}: best {variant.best_docs_per_s:8,.0f} docs/s  median "
                f"{variant.median_docs_per_s:8,.0f} docs/s  peak RSS {variant.peak_rss_mb:,.0f} MB; "
                f"÷ rensa best {variant.best_docs_per_s / rensa.best_docs_per_s:.2f}x  "
                f"median {variant.median_docs_per_s / rensa.median_docs_per_s:.2f}x; ÷ default "
                f"median {variant.median_docs_per_s / ingest.median_docs_per_s:.2f}x"
            )
            print("  its summary (last round): " + " / ".join(runs["variant"][-1].output.strip().splitlines()))
        print("\n--- markdown for docs/benchmarks.md ---\n")
        print(markdown(docs, args.rounds, ingest, rensa, summary))

        if args.json:
            figures = {
                "docs": docs,
                "rounds": args.rounds,
                "shingle_size": args.shingle_size,
                "environment": {
                    "machine": machine(),
                    "python": platform.python_version(),
                    "rensa": version("rensa"),
                },
                "ingest": asdict(ingest),
                "rensa": asdict(rensa),
                "ratio_best": ingest.best_docs_per_s / rensa.best_docs_per_s,
                "ratio_median": ingest.median_docs_per_s / rensa.median_docs_per_s,
                "ingest_summary": summary,
                "variant": {"settings": args.set, **asdict(variant)} if variant is not None else None,
                "ingest_reported_docs_per_s": [r.reported_docs_per_s for r in ingest_runs],
            }
            args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
            print(f"\nfigures written to {args.json}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
