"""Duplicate-detection quality on the labeled sets of the shared corpus, against plain datasketch.

    .venv/bin/python bench/quality.py [--corpus ../shared/corpus] [--set jaccard_threshold=0.5 ...]

Each set is ingested in file order into a fresh SQLite store by the real pipeline. Two documents are
predicted duplicates when they end at the same canonical record. Precision, recall and F1 are over the
labeled pairs; recall is also broken down by stratum (natural) or edit kind (derived). The baseline
in the same run is datasketch as documented: whitespace word 5-grams, no normalization,
``MinHashLSH(threshold=0.5, num_perm=128)``, a document is a copy of its first candidate's group.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from datasketch import MinHash, MinHashLSH

from worker.models import RawDocument
from worker.pipeline import Pipeline
from worker.settings import Settings
from worker.store import Store

ROOT = Path(__file__).resolve().parent.parent
SETS = ("natural-ar-dev", "derived-dev-ar", "derived-dev-en")


@dataclass
class LabeledSet:
    name: str
    docs: list[dict]
    pairs: list[tuple[str, str, bool, list[str]]]  # id_a, id_b, duplicate?, groups for recall breakdown


@dataclass
class Scores:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    recall_by: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def load(corpus: Path, name: str) -> LabeledSet:
    folder = corpus / name
    if name == "natural-ar-dev":
        docs = [json.loads(line) for line in (folder / "docs.jsonl").open(encoding="utf-8")]
        pairs = []
        for row in _tsv(folder / "pairs.tsv"):
            pairs.append((row["id_a"], row["id_b"], row["label"] == "dup", [f"stratum {row['stratum']}"]))
        return LabeledSet(name, docs, pairs)
    with gzip.open(folder / "docs.jsonl.gz", "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    ops = {d["id"]: [op.split(":")[0] for op in d.get("ops", [])] for d in docs}
    pairs = []
    for row in _tsv(folder / "pairs.tsv"):
        kinds = sorted(set(ops.get(row["id_a"], []) + ops.get(row["id_b"], []))) or ["exact copy"]
        pairs.append((row["id_a"], row["id_b"], row["label"] == "1", kinds))
    return LabeledSet(name, docs, pairs)


def _tsv(path: Path) -> list[dict[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:] if line.strip()]


def docsieve_groups(labeled: LabeledSet, settings: Settings) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/quality.db")
        pipeline = Pipeline(store, settings.with_(store=store.url))
        raws = [RawDocument(source=d["id"], body=d["text"]) for d in labeled.docs]
        pipeline.ingest(raws)
        groups = {r.source: r.duplicate_of or r.id for r in store.iter_records()}
        store.close()
    return groups


def datasketch_groups(labeled: LabeledSet) -> dict[str, str]:
    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    groups: dict[str, str] = {}
    for doc in labeled.docs:
        tokens = doc["text"].split()
        grams = {" ".join(tokens[i : i + 5]).encode() for i in range(max(1, len(tokens) - 4))}
        m = MinHash(num_perm=128)
        m.update_batch(list(grams))
        found = lsh.query(m)
        groups[doc["id"]] = groups[min(found, key=order_of(labeled))] if found else doc["id"]
        lsh.insert(doc["id"], m)
    return groups


def order_of(labeled: LabeledSet) -> Callable[[str], int]:
    position = {d["id"]: i for i, d in enumerate(labeled.docs)}
    return position.__getitem__


def score(labeled: LabeledSet, groups: dict[str, str]) -> Scores:
    s = Scores()
    for a, b, duplicate, kinds in labeled.pairs:
        predicted = groups[a] == groups[b]
        if duplicate:
            s.tp += predicted
            s.fn += not predicted
            for kind in kinds:
                s.recall_by[kind][0] += predicted
                s.recall_by[kind][1] += 1
        else:
            s.fp += predicted
            s.tn += not predicted
    return s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a setting, e.g. --set containment_threshold=0.45",
    )
    parser.add_argument("--only", choices=SETS, action="append", help="run only these sets")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        print(f"corpus not found at {args.corpus}; pass --corpus", file=sys.stderr)
        return 2
    overrides = {}
    for item in args.set:
        name, value = item.split("=", 1)
        overrides[name] = type(getattr(Settings(), name))(value)
    settings = Settings().with_(**overrides)
    print(
        f"settings: shingle_size={settings.shingle_size} num_perm={settings.num_perm} "
        f"bands={settings.lsh_bands}x{settings.lsh_rows} jaccard>={settings.jaccard_threshold} "
        f"containment>={settings.containment_threshold} winnowing window {settings.winnow_window}"
    )
    report = {}
    rows = []
    for name in args.only or SETS:
        labeled = load(args.corpus, name)
        started = time.perf_counter()
        ours = score(labeled, docsieve_groups(labeled, settings))
        elapsed = time.perf_counter() - started
        base = score(labeled, datasketch_groups(labeled))
        positives = sum(1 for p in labeled.pairs if p[2])
        print(
            f"\n{name}: {len(labeled.docs)} docs, {len(labeled.pairs)} labeled pairs ({positives} duplicate), "
            f"docsieve ingest {elapsed:.1f} s"
        )
        print(f"  {'':<22}{'precision':>10}{'recall':>10}{'F1':>10}{'FP':>6}{'FN':>6}")
        for label, s in (("docsieve", ours), ("datasketch defaults", base)):
            print(f"  {label:<22}{s.precision:>10.4f}{s.recall:>10.4f}{s.f1:>10.4f}{s.fp:>6}{s.fn:>6}")
        print(
            f"  recall by {'stratum' if name.startswith('natural') else 'edit kind'}:"
            f"{'docsieve':>12}{'datasketch':>12}{'pairs':>7}"
        )
        for kind in sorted(ours.recall_by):
            hit, total = ours.recall_by[kind]
            base_hit = base.recall_by[kind][0]
            print(f"    {kind:<28}{hit / total:>10.3f}{base_hit / total:>12.3f}{total:>7}")
        rows.append((name, ours, base))
        report[name] = {
            label: {
                "precision": s.precision,
                "recall": s.recall,
                "f1": s.f1,
                "fp": s.fp,
                "fn": s.fn,
                "recall_by": {k: v[0] / v[1] for k, v in s.recall_by.items()},
            }
            for label, s in (("docsieve", ours), ("datasketch", base))
        }
    print("\n| set | docsieve P | docsieve R | docsieve F1 | datasketch P | datasketch R | datasketch F1 |")
    print("|---|---|---|---|---|---|---|")
    for name, ours, base in rows:
        print(
            f"| {name} | {ours.precision:.4f} | {ours.recall:.4f} | {ours.f1:.4f} | "
            f"{base.precision:.4f} | {base.recall:.4f} | {base.f1:.4f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
