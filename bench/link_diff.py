"""What a setting changes in docsieve's links on all of saudinewsnet-dev (or of bbc-dev, English news that no
rule was written on), checked against blind labels.

    .venv/bin/python bench/link_diff.py --set rewrites=off [--on saudinewsnet-dev | bbc-dev]
        [--labels bench/labels/rewrites.tsv ...] [--unlabeled OUT.tsv] [--list] [--corpus ../shared/corpus]

Builds two stores as bench/quality.py does (the defaults, and the defaults with the --set overrides), and
lists the pairs of records linked in one and not in the other (linked: in one story, or one holds the other's
story; a pair named by a member and its canonical in either store). With --labels (TSV files with id_a, id_b and
label columns, such as the blind samples of bench/labels/), counts the changed pairs by label: what the
defaults gain over the variant (dup gained is recall, a non-dup gained a wrong link) and what they lose.
--unlabeled writes the changed pairs no label file holds, to be labeled blind; --list prints every changed pair.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import ROOT, _tsv, ingest, load, load_saudinewsnet, raws_of, snn_raw

from docsieve.settings import Settings


def linked_pairs(view) -> set[frozenset[str]]:
    """Every pair a store links through a member and its canonical, or a record and a story it holds."""
    canonical = {story: view.by_id[c].source for story, c in view.canonical_of.items() if c in view.by_id}
    found = {frozenset((r.source, canonical[r.story_id])) for r in view.by_source.values()}
    for record_id, held in view.holds.items():
        found |= {frozenset((view.by_id[record_id].source, canonical[s])) for s in held if s in canonical}
    return {p for p in found if len(p) == 2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", required=True)
    parser.add_argument("--on", choices=("saudinewsnet-dev", "bbc-dev"), default="saudinewsnet-dev")
    parser.add_argument("--labels", action="append", type=Path, default=[])
    parser.add_argument("--unlabeled", type=Path)
    parser.add_argument("--list", action="store_true", help="print every changed pair with its label")
    args = parser.parse_args()
    base = Settings()
    overrides = {}
    for item in args.set:
        name, value = item.split("=", 1)
        kind = type(getattr(base, name))
        overrides[name] = value.lower() in ("1", "true", "yes", "on") if kind is bool else kind(value)
    if args.on == "bbc-dev":
        raws = raws_of(load(args.corpus, "bbc-dev").docs)
    else:
        raws = [snn_raw(d) for d in load_saudinewsnet(args.corpus / "saudinewsnet-dev")]
    default, variant = ingest(raws, base), ingest(raws, base.with_(**overrides))
    linked_default, linked_variant = linked_pairs(default), linked_pairs(variant)
    # A pair counts as linked when the two records are linked in that store at all (not only as named above).
    gained = {p for p in linked_default - linked_variant if not variant.linked(*p)}
    lost = {p for p in linked_variant - linked_default if not default.linked(*p)}
    labels = {frozenset((r["id_a"], r["id_b"])): r["label"] for path in args.labels for r in _tsv(path)}
    print(f"the defaults against {' '.join(args.set)}: {len(gained)} pairs linked only by the defaults, ", end="")
    print(f"{len(lost)} only by the variant")
    for name, pairs in (("gained by the defaults", gained), ("lost by the defaults", lost)):
        print(
            f"  {name}: "
            + ", ".join(f"{k} {n}" for k, n in sorted(Counter(labels.get(p, "unlabeled") for p in pairs).items()))
        )
    if args.list:
        for name, pairs in (("gained", gained), ("lost", lost)):
            for a, b in sorted(sorted(p) for p in pairs):
                print(f"    {name}  {a}  {b}  {labels.get(frozenset((a, b)), 'unlabeled')}")
    if args.unlabeled:
        rows = [sorted(p) for p in (gained | lost) if p not in labels]
        args.unlabeled.write_text("id_a\tid_b\n" + "".join(f"{a}\t{b}\n" for a, b in rows), encoding="utf-8")
        print(f"  {len(rows)} unlabeled pairs written to {args.unlabeled}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
