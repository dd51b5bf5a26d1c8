"""Draw a blind sample of the rewrite stage's links (docsieve/rewrites.py), with copies found by shingles mixed in.

    .venv/bin/python bench/rewrite_sample.py STORE.db CORPUS_DIR OUT.md KEY.json

STORE.db: a SQLite store holding all of saudinewsnet-dev as bench/quality.py ingests it (source = the article's
id, published = its date_extracted, outlet = its source; the rewrite stage on). Draws 40 records placed by the
stage (method ``rewrite``) and 20 found by shingles (``near`` or ``containment``, not the canonical's very
text), each with its story's canonical, shuffled together (seed 20261205). OUT.md gets both texts of each pair
and nothing of how it was drawn, for the person who labels them; KEY.json which sample each pair came from,
kept apart until the labels are in. ``bench/audit.py bench/labels/rewrites.tsv`` reports the labels.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import load_saudinewsnet

PAIRS = """select r.source, c.source from records r join stories s on s.id = r.story_id
join records c on c.id = s.canonical_id where {} order by r.seq"""


def main() -> int:
    store, corpus, out, key = sys.argv[1:5]
    engine = sa.create_engine(f"sqlite:///{store}")
    with engine.connect() as c:
        rewrites = c.execute(sa.text(PAIRS.format("r.method = 'rewrite'"))).all()
        shingles = c.execute(
            sa.text(PAIRS.format("r.method in ('near', 'containment') and r.content_hash != c.content_hash"))
        ).all()
    rng = random.Random(20261205)
    drawn = [(a, b, "rewrite") for a, b in rng.sample(rewrites, 40)]
    drawn += [(a, b, "member") for a, b in rng.sample(shingles, 20)]
    rng.shuffle(drawn)
    docs = {d["id"]: d for d in load_saudinewsnet(Path(corpus))}
    with open(out, "w", encoding="utf-8") as fh:
        for n, (a, b, _) in enumerate(drawn, 1):
            fh.write(f"## pair {n}: {a} / {b}\n\n")
            for side, i in (("A", a), ("B", b)):
                d = docs[i]
                fh.write(f"### {side}: {i} ({d['outlet']}, {d['published']})\n{d['title']}\n\n{d['content']}\n\n")
    Path(key).write_text(json.dumps(drawn), encoding="utf-8")
    print(f"{len(rewrites)} rewrite links, {len(shingles)} copies found by shingles; drew {len(drawn)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
