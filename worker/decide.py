"""The decision: canonical, or a duplicate of which record, by which method and how similar.

Every candidate from the index is verified on the exact shingle sets before a document is called a
duplicate: Jaccard for copies of about the same length, containment (shared shingles over the
smaller set) for truncated copies and excerpts, which plain Jaccard misses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from worker.fingerprint import overlaps
from worker.models import Decision, Fingerprint, Method, Sketch, Status
from worker.settings import Settings


def decide(fingerprint: Fingerprint, candidates: Sequence[Sketch], settings: Settings) -> Decision:
    if not candidates:
        return Decision(Status.CANONICAL)
    jaccard, containment = overlaps(fingerprint.shingles, [c.shingles for c in candidates])
    smaller = np.minimum(len(fingerprint.shingles), [len(c.shingles) for c in candidates])
    near = jaccard >= settings.jaccard_threshold
    contained = (containment >= settings.containment_threshold) & (smaller >= settings.min_containment_shingles)
    # A near copy beats an excerpt; among equals, the more similar one.
    if near.any():
        best, method, similarity = int(np.argmax(np.where(near, jaccard, -1))), Method.NEAR, jaccard
    elif contained.any():
        best, method, similarity = int(np.argmax(np.where(contained, containment, -1))), Method.CONTAINMENT, containment
    else:
        return Decision(Status.CANONICAL)
    return Decision(
        Status.DUPLICATE,
        duplicate_of=candidates[best].root_id,
        similarity=round(float(similarity[best]), 4),
        method=method,
    )
