"""A blind audit of docsieve's links on real news: pairs sampled at random from what docsieve decided on all
of saudinewsnet-dev, labeled by hand without knowing which sample a pair came from.

    .venv/bin/python bench/audit.py [bench/labels/audit.tsv | bench/labels/rewrites.tsv]

The samples (see bench/labels/audit.md for how they were drawn and at which commit):
- ``member``: a copy and its story's canonical (exact copies left out: they need no reading);
- ``holds``: a record and the canonical of a story it holds (``contains``);
- ``near-miss``: canonicals of two different stories whose containment is 0.3-0.55, just under the
  threshold: how many copies docsieve leaves apart.

``bench/labels/rewrites.tsv`` holds another blind sample, of the rewrite stage's links (``rewrite``) with copies
found by shingles (``member``) mixed in (bench/labels/rewrites.md). For each sample: how many pairs a person
calls the same article (``dup``), with a 95% Wilson interval. For
``member`` and ``holds`` that is the precision of docsieve's links; for ``near-miss`` it is the share of real
copies missed among pairs that close.
"""

from __future__ import annotations

import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def wilson(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    if not total:
        return (0.0, 1.0)
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - margin), min(1.0, centre + margin))


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "labels" / "audit.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:] if line.strip()]
    labels: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        labels[row["sample"]][row["label"]] += 1
    print(
        f"{'sample':<11}{'pairs':>6}{'dup':>6}{'related':>9}{'different':>11}{'unsure':>8}   dup share (95% interval)"
    )
    for sample in dict.fromkeys(row["sample"] for row in rows):  # as the file has them, in order
        counts = labels.get(sample, Counter())
        decided = counts["dup"] + counts["related"] + counts["different"]
        low, high = wilson(counts["dup"], decided)
        share = counts["dup"] / decided if decided else 0.0
        print(
            f"{sample:<11}{sum(counts.values()):>6}{counts['dup']:>6}{counts['related']:>9}{counts['different']:>11}"
            f"{counts['unsure']:>8}   {share:.3f} ({low:.3f}-{high:.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
