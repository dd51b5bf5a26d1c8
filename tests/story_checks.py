"""What must hold of every store's stories, checked from its tables alone: every record in a story with a
canonical row, ``duplicate_of`` the story's canonical, links between existing records and stories, no
member ranked before its canonical (but a rewrite, which never takes a story over), and each member's stored
overlap the one measured against the canonical, close enough to it (a rewrite: by its score)."""

from datetime import UTC

import sqlalchemy as sa

from docsieve.fingerprint import fingerprint_batch, jaccard_and_containment
from docsieve.schema import contains, records, stories


def problems(store, settings, check_rank=True, check_overlap=True):
    out = []
    with store.engine.connect() as conn:
        recs = {
            r.id: r
            for r in conn.execute(
                sa.select(
                    records.c.id,
                    records.c.story_id,
                    records.c.status,
                    records.c.duplicate_of,
                    records.c.jaccard,
                    records.c.containment,
                    records.c.text,
                    records.c.published_at,
                    records.c.created_at,
                    records.c.seq,
                    records.c.method,
                    records.c.similarity,
                    records.c.source,
                )
            )
        }
        rows = conn.execute(sa.select(stories.c.id, stories.c.canonical_id, stories.c.merged_into)).all()
        st = {s: c for s, c, into in rows if into is None}
        merged = {s: into for s, _, into in rows if into is not None}
        links = conn.execute(sa.select(contains.c.record_id, contains.c.story_id)).all()

    def name(i):
        return recs[i].source if i in recs else i

    for s, into in merged.items():  # a story merged into another holds no record, and says a story that is one
        if into not in st:
            out.append(f"story {s}: merged into {into}, which is no story")
    for r in recs.values():
        if r.status == "rejected":
            continue
        if r.story_id in merged:
            out.append(f"{r.source}: in story {r.story_id}, merged into {merged[r.story_id]}")
            continue
        if r.story_id not in st:
            out.append(f"{r.source}: story {r.story_id} has no stories row")
            continue
        can = st[r.story_id]
        if r.status == "canonical" and can != r.id:
            out.append(f"{r.source}: canonical but story canonical is {name(can)}")
        if r.status == "duplicate" and r.duplicate_of != can:
            out.append(f"{r.source}: duplicate_of {name(r.duplicate_of)} != story canonical {name(can)}")
    for s, c in st.items():
        if c not in recs:
            out.append(f"story {s}: canonical {c} missing")
        elif recs[c].story_id != s or recs[c].status != "canonical":
            out.append(f"story {s}: canonical {name(c)} is in story {recs[c].story_id} status {recs[c].status}")
    for rid, sid in links:
        if rid not in recs:
            out.append(f"link from missing record {rid}")
        if sid not in st:
            out.append(f"link {name(rid)} -> missing story {sid}")
        elif rid in recs and recs[rid].story_id == sid:
            out.append(f"link {name(rid)} -> its own story")
    if check_rank:
        for r in recs.values():
            if r.status != "duplicate" or r.story_id not in st or st[r.story_id] not in recs:
                continue
            c = recs[st[r.story_id]]
            if r.method == "rewrite":  # the rewrite stage's members never take a story over
                continue
            if settings.canonical == "earliest-published" and _rank(r) < _rank(c):
                out.append(f"{r.source} ranks before its canonical {c.source}")
    if check_overlap:
        for r in recs.values():
            if r.status != "duplicate" or r.story_id not in st or st[r.story_id] not in recs or r.text is None:
                continue
            c = recs[st[r.story_id]]
            a, b = fingerprint_batch([r.text, c.text], settings)
            j, cont = jaccard_and_containment(a.shingles, b.shingles)
            if r.jaccard is None or abs(j - r.jaccard) > 1e-3 or abs(cont - r.containment) > 1e-3:
                stored = f"{r.jaccard}/{r.containment}"
                out.append(f"{r.source}: stores {stored} with canonical {c.source}, measured {j:.4f}/{cont:.4f}")
            close = j >= settings.jaccard_floor or (
                cont >= settings.containment_floor
                and min(len(a.shingles), len(b.shingles)) >= settings.min_containment_shingles
            )
            if r.method == "rewrite":  # verified by its rewrite score (docsieve/rewrites.py), not by the floors
                # at the threshold, or at the chain floor as a strong copy of another member the stage placed
                floor = min(settings.rewrite_threshold, settings.rewrite_chain_floor)
                close = r.similarity is not None and r.similarity >= floor
            if not close:
                out.append(f"{r.source}: not close to canonical {c.source} ({j:.3f}/{cont:.3f})")
    return out


def _rank(record) -> tuple[float, int]:
    when = record.published_at or record.created_at
    return ((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp(), record.seq)


def a_take_over_sheds_the_other_item(pipeline, bare: str, first: str, other: str, day: str) -> None:
    """X (``bare``: an item with what tells its items apart left out) and F (``first``: a copy of it, one item)
    make a story; then T (``other``: the same words, another item), published before both, joins X and takes the
    story over: F, a copy of X but not of T's item, leaves for a story of its own. ``day``: the items' date."""
    from docsieve.models import RawDocument, Status

    pipeline.ingest(
        [
            RawDocument(source="X", body=bare, title="X", published=f"{day}T12:00:00Z"),
            RawDocument(source="F", body=first, title="F", published=f"{day}T13:00:00Z"),
        ]
    )
    found = {r.source: r for r in pipeline.store.iter_records()}
    assert found["F"].duplicate_of == found["X"].id
    pipeline.ingest([RawDocument(source="T", body=other, title="T", published=f"{day}T09:00:00Z")])
    found = {r.source: r for r in pipeline.store.iter_records()}
    assert found["T"].status is Status.CANONICAL and found["X"].duplicate_of == found["T"].id
    assert found["F"].story_id != found["T"].story_id and found["F"].status is Status.CANONICAL
    assert problems(pipeline.store, pipeline.settings) == []
