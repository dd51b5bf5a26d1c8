"""The decision: canonical, or a duplicate of which record, by which method and how similar.

Every candidate from the index is verified on the exact shingle sets before a document is called a
duplicate: Jaccard for copies of about the same length, containment (shared shingles over the
smaller set) for truncated copies and excerpts, which plain Jaccard misses.
"""

from __future__ import annotations

from collections.abc import Iterable

from worker.fingerprint import jaccard_and_containment
from worker.models import Decision, Fingerprint, Method, Status
from worker.settings import Settings
from worker.store import Sketch


def decide(fingerprint: Fingerprint, candidates: Iterable[Sketch], settings: Settings) -> Decision:
    best: tuple[float, Method, Sketch] | None = None
    for candidate in candidates:
        jaccard, containment = jaccard_and_containment(fingerprint.shingles, candidate.shingles)
        smaller = min(len(fingerprint.shingles), len(candidate.shingles))
        if jaccard >= settings.jaccard_threshold:
            found = (jaccard, Method.NEAR, candidate)
        elif containment >= settings.containment_threshold and smaller >= settings.min_containment_shingles:
            found = (containment, Method.CONTAINMENT, candidate)
        else:
            continue
        # A near copy beats an excerpt; among equals, the more similar one.
        if best is None or (found[1] is Method.NEAR, found[0]) > (best[1] is Method.NEAR, best[0]):
            best = found
    if best is None:
        return Decision(Status.CANONICAL)
    similarity, method, match = best
    return Decision(
        Status.DUPLICATE, duplicate_of=match.root_id, similarity=round(similarity, 4), method=method
    )
