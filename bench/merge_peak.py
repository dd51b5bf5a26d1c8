"""The memory and time of the embedded index's largest merge: two mapped segments of MERGE_UP_TO / 2 postings
each merged into one in its files, as a long ingest does every 150,000 articles or so (docsieve/index.py).

    .venv/bin/python bench/merge_peak.py [--rounds 3] [--against TREE] [--postings N]

Two segments of random keys (--postings in all, default MERGE_UP_TO; 56 keys a record, as bench/scale.py's
articles have, a tenth of them shared between records) are written once. Each round copies their files to a
fresh directory and, in a child process started for it, opens them as a later ``ingest`` would, resets the
process's high-water mark (``/proc/self/clear_refs``) and merges them, reporting the peak over the resident
size before the merge (anonymous and file pages together: what ``ps`` and GNU time count) and the merge's
wall time. With ``--against TREE`` the same merge runs from another checkout's ``docsieve`` in the same
rounds, alternating (``PYTHONPATH``), and the ratios are printed. Linux only (``/proc``).
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

CHILD = r"""
import json, sys, time
from pathlib import Path

from docsieve.index import SegmentIndex

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024  # MB
    raise KeyError(field)

index = SegmentIndex(Path(sys.argv[1]))
assert len(index._segments) == 2, index._segments
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as out:
    out.write("5")  # the high-water mark starts again from the resident size now
started = time.perf_counter()
with index._locked():
    index._segments = index._merged_list(index._segments, persist=True)
    index._publish()
took = time.perf_counter() - started
assert len(index._segments) == 1, index._segments
merged = index._segments[0]
print(json.dumps({
    "before_mb": before, "peak_mb": status("VmHWM"), "after_mb": status("VmRSS"), "s": took,
    "postings": len(merged.keys), "records": len(merged.ids),
    "keys_sorted": bool((merged.keys[1:] >= merged.keys[:-1]).all()),
}))
"""


def build(directory: Path, postings: int, seed: int) -> None:
    """Two segments of postings / 2 each, written and named in a manifest by the checkout's own code."""
    sys.path.insert(0, str(ROOT))
    from docsieve.index import SegmentIndex, _segment

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
        sketches = [np.arange(index_width(), dtype=np.uint32)] * records
        segments.append(index._written(_segment(ids, keys, times, times, first + records, sketches)))
    index._segments = segments
    index._persisted_seq = 2 * records
    index._publish()


def index_width() -> int:
    from docsieve.index import SKETCH_WIDTH

    return SKETCH_WIDTH


def run(tree: Path, source: Path, work: Path) -> dict:
    target = work / "round"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    env = os.environ | {"PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(target)], env=env, cwd=work, check=True, capture_output=True, text=True
    ).stdout  # (run from the work folder: from this checkout's, its docsieve would come before PYTHONPATH's)
    shutil.rmtree(target)
    return json.loads(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postings", type=int, help="postings of both segments (default MERGE_UP_TO)")
    parser.add_argument("--against", type=Path, metavar="TREE", help="another checkout, run alternating")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from docsieve.index import MERGE_UP_TO

    postings = args.postings or MERGE_UP_TO
    trees = {"this": ROOT} | ({"against": args.against.resolve()} if args.against else {})
    with tempfile.TemporaryDirectory(prefix="docsieve-merge-") as tmp:
        work = Path(tmp)
        build(work / "source", postings, args.seed)
        results: dict[str, list[dict]] = {name: [] for name in trees}
        for n in range(args.rounds):
            for name, tree in trees.items() if n % 2 == 0 else reversed(trees.items()):
                result = run(tree, work / "source", work)
                results[name].append(result)
                print(
                    f"round {n + 1} {name:8} peak +{result['peak_mb'] - result['before_mb']} MB "
                    f"(before {result['before_mb']}, after {result['after_mb']}), {result['s']:.2f} s, "
                    f"{result['postings']:,} postings, sorted {result['keys_sorted']}",
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
