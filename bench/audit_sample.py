"""Draw the pairs of the blind audit (bench/audit.py) from a store that holds all of saudinewsnet-dev.

    .venv/bin/python bench/audit_sample.py STORE.db OUT.tsv KEY.json

STORE.db: a SQLite store made by ingesting every article of ../shared/corpus/saudinewsnet-dev in date order
with source = its id (``snn-<date>-<index>``), published = its date_extracted, outlet = its source (as
bench/quality.py does). OUT.tsv gets the pairs only (id_a, id_b), shuffled, for the person who labels them;
KEY.json which sample each pair came from, kept apart until the labels are in. Seed 20261204.
"""

from __future__ import annotations

import json
import random
import sys
from collections import defaultdict

import numpy as np
import sqlalchemy as sa

from docsieve.fingerprint import jaccard_and_containment
from docsieve.schema import contains, records, stories


def main() -> int:
    store, out, key = sys.argv[1:4]
    engine = sa.create_engine(f"sqlite:///{store}")
    rng = random.Random(20261204)
    with engine.connect() as c:
        columns = (records.c.id, records.c.source, records.c.status, records.c.story_id, records.c.duplicate_of)
        recs = {
            r.id: r
            for r in c.execute(
                sa.select(*columns, records.c.method, records.c.shingles).where(records.c.status != "rejected")
            )
        }
        links = c.execute(sa.select(contains.c.record_id, contains.c.story_id)).all()
        canon = dict(c.execute(sa.select(stories.c.id, stories.c.canonical_id)).all())
    # 70 copies with their canonical (exact copies need no reading), 30 records with a story they hold.
    members = [r for r in recs.values() if r.status == "duplicate" and r.method != "exact"]
    pairs = [(recs[r.duplicate_of].source, r.source, "member") for r in rng.sample(members, 70)]
    pairs += [(recs[canon[s]].source, recs[rid].source, "holds") for rid, s in rng.sample(links, 30)]
    # 60 near misses: canonicals of two stories at containment 0.3-0.55, found through shared shingles (a
    # sample of each text's shingles, keys shared by 2-6 canonicals).
    sets = {r.id: np.frombuffer(r.shingles, dtype=np.uint32) for r in recs.values() if r.id in set(canon.values())}
    holders: dict[int, list[str]] = defaultdict(list)
    for rid, shingles in sets.items():
        for x in shingles[(shingles % 8) == 0][:60]:
            holders[int(x)].append(rid)
    candidates = {
        (ids[i], ids[j])
        for ids in holders.values()
        if 2 <= len(ids) <= 6
        for i in range(len(ids))
        for j in range(i + 1, len(ids))
    }
    near = []
    for a, b in sorted(candidates):  # a set's order changes from run to run
        if recs[a].story_id == recs[b].story_id:
            continue
        _, containment = jaccard_and_containment(sets[a], sets[b])
        if 0.3 <= containment < 0.55 and min(len(sets[a]), len(sets[b])) >= 12:
            near.append((recs[a].source, recs[b].source, "near-miss"))
    rng.shuffle(near)
    pairs += near[:60]
    rng.shuffle(pairs)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("id_a\tid_b\n" + "".join(f"{a}\t{b}\n" for a, b, _ in pairs))
    with open(key, "w", encoding="utf-8") as fh:
        json.dump(pairs, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
