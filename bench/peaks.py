"""The memory of the two moments that set a long ingest's peak in a grown store, each measured alone:

- ``merge``: the embedded index's largest merge, two mapped segments of MERGE_UP_TO / 2 postings each merged into
  one in its files, as a long ingest does every 150,000 articles or so (docsieve/index.py);
- ``snapshot``: a template-count snapshot written to a SQLite store (every 6,000 articles or so), of the counts
  read from a store ``bench/scale.py`` grew (``--store``: their compressibility is a grown store's).

    .venv/bin/python bench/peaks.py merge [--rounds 3] [--against TREE] [--postings N]
    .venv/bin/python bench/peaks.py snapshot --store /work/scratch/scale1m/store.db [--rounds 3] [--against TREE]

merge: two segments of random keys (--postings in all, default MERGE_UP_TO; 56 keys a record, as bench/scale.py's
articles have, a tenth of them shared between records) are written once, and each round copies their files to a
fresh directory and opens them as a later ``ingest`` would. snapshot: each round reads the store's counts (it is
only read) and writes their snapshot into a new, empty SQLite store.

Each round runs in a child process started for it, which resets its high-water mark (``/proc/self/clear_refs``)
just before the step and reports the peak over its resident size before it (anonymous and file pages together:
what ``ps`` and GNU time count) and the step's wall time. With ``--against TREE`` the same step runs from another
checkout's ``docsieve`` in the same rounds, alternating (``PYTHONPATH``), and the paired ratios are printed.
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
KEYS_A_RECORD = 56

MEASURE = r"""
import json, sys, time

sys.path.insert(0, sys.argv.pop(1))  # this folder: its common.py
from common import reset_peak, status_mb

def measured(step):
    before = status_mb("VmRSS")
    reset_peak()
    started = time.perf_counter()
    facts = step()
    took = time.perf_counter() - started
    peak, after = status_mb("VmHWM"), status_mb("VmRSS")
    print(json.dumps({"before_mb": before, "peak_mb": peak, "after_mb": after, "s": took} | facts))
"""

MERGE = r"""
from pathlib import Path
from docsieve.index import SegmentIndex

index = SegmentIndex(Path(sys.argv[1]))
assert len(index._segments) == 2, index._segments

def step():
    with index._locked():
        index._segments = index._merged_list(index._segments, persist=True)
        index._publish()
    assert len(index._segments) == 1, index._segments
    return {"what": f"{len(index._segments[0].keys):,} postings"}

measured(step)
merged = index._segments[0].keys  # checked after the peak was read: reading it maps every page of the file
assert bool((merged[1:] >= merged[:-1]).all()), "the merged keys are not sorted"
"""

SNAPSHOT = r"""
from docsieve.store import Store
from docsieve.templates import SNAPSHOT_AFTER, ShingleCounts

grown, into = Store(f"sqlite:///{sys.argv[1]}"), Store(f"sqlite:///{sys.argv[2]}")
counts = ShingleCounts(boilerplate_texts=3)
with counts.bound(), grown.reading() as txn:
    counts.catch_up(txn)
    counts.weights(np.zeros(1, dtype=np.uint32))  # the counts are read when first needed
grown.close()
counts.since_snapshot = max(SNAPSHOT_AFTER, counts.snapshot_bytes // 4)  # due: as many bytes of ids as the last one

def step():
    with into.writing() as txn:
        counts.last_seq = txn.last_seq() + 1
        assert counts.snapshot_if_due(txn)
    return {"what": "a snapshot"}

measured(step)
"""


def build_segments(directory: Path, postings: int, seed: int) -> None:
    """Two segments of postings / 2 each, written and named in a manifest by this checkout's code."""
    sys.path.insert(0, str(ROOT))
    from docsieve.index import SKETCH_WIDTH, SegmentIndex, _segment

    rng = np.random.default_rng(seed)
    shared = rng.integers(0, 1 << 62, size=postings // 50, dtype=np.int64)  # stock phrases many records hold
    index = SegmentIndex(directory)
    directory.mkdir(parents=True)
    records = postings // 2 // KEYS_A_RECORD
    segments = []
    for half in range(2):
        keys = []
        for _ in range(records):
            own = rng.integers(0, 1 << 62, size=KEYS_A_RECORD - KEYS_A_RECORD // 10, dtype=np.int64)
            keys.append(np.concatenate((own, rng.choice(shared, KEYS_A_RECORD // 10))))
        first = half * records
        ids = [f"{i:020x}" for i in range(first, first + records)]
        times = list(range(1_400_000_000 + first * 10, 1_400_000_000 + (first + records) * 10, 10))
        sketches = [np.arange(SKETCH_WIDTH, dtype=np.uint32)] * records
        segments.append(index._written(_segment(ids, keys, times, times, first + records, sketches)))
    index._segments = segments
    index._persisted_seq = 2 * records
    index._publish()


def run(case: str, tree: Path, work: Path, args: argparse.Namespace) -> dict:
    """One round in a child process, from ``tree``'s docsieve (run from the work folder: from this checkout's,
    its docsieve would come before PYTHONPATH's)."""
    target = work / "round"
    shutil.rmtree(target, ignore_errors=True)
    if case == "merge":
        shutil.copytree(work / "segments", target)
        argv = [MEASURE + "import numpy as np\n" + MERGE, str(target)]
    else:
        target.mkdir()
        argv = [MEASURE + "import numpy as np\n" + SNAPSHOT, str(args.store.resolve()), str(target / "into.db")]
    env = os.environ | {"PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", argv[0], str(Path(__file__).resolve().parent), *argv[1:]],
        env=env,
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    shutil.rmtree(target)
    return json.loads(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=("merge", "snapshot"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", type=Path, metavar="TREE", help="another checkout, run alternating")
    parser.add_argument("--postings", type=int, help="merge: postings of both segments (default MERGE_UP_TO)")
    parser.add_argument("--seed", type=int, default=7, help="merge: of the random keys")
    parser.add_argument("--store", type=Path, help="snapshot: a SQLite store grown by bench/scale.py (only read)")
    args = parser.parse_args()
    if args.case == "snapshot" and (args.store is None or not args.store.exists()):
        parser.error("snapshot needs --store, a SQLite store that holds template counts")
    sys.path.insert(0, str(ROOT))
    from docsieve.index import MERGE_UP_TO

    trees = {"this": ROOT} | ({"against": args.against.resolve()} if args.against else {})
    with tempfile.TemporaryDirectory(prefix="docsieve-peaks-") as tmp:
        work = Path(tmp)
        if args.case == "merge":
            build_segments(work / "segments", args.postings or MERGE_UP_TO, args.seed)
        results: dict[str, list[dict]] = {name: [] for name in trees}
        for n in range(args.rounds):
            for name, tree in trees.items() if n % 2 == 0 else reversed(trees.items()):
                result = run(args.case, tree, work, args)
                results[name].append(result)
                print(
                    f"round {n + 1} {name:8} peak +{result['peak_mb'] - result['before_mb']} MB "
                    f"(before {result['before_mb']}, after {result['after_mb']}), {result['s']:.2f} s, "
                    f"{result['what']}",
                    flush=True,
                )
    for name, runs in results.items():
        over = statistics.median(r["peak_mb"] - r["before_mb"] for r in runs)
        secs = statistics.median(r["s"] for r in runs)
        print(f"{name:8} median: peak +{over} MB over the resident size before, {secs:.2f} s")
    if args.against:
        pairs = list(zip(results["this"], results["against"], strict=True))
        peak = statistics.median((a["peak_mb"] - a["before_mb"]) / (b["peak_mb"] - b["before_mb"]) for a, b in pairs)
        secs = statistics.median(a["s"] / b["s"] for a, b in pairs)
        print(f"this / against, paired medians: peak over before {peak:.2f}x, time {secs:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
