"""Verification: which candidates are copies, on the exact shingle sets.

Every candidate from the index is verified before a document is called a copy of it: Jaccard for
copies of about the same length, containment (shared shingles over the smaller set) for truncated
copies and excerpts, which plain Jaccard misses. The exact sets of all the candidate pairs of a batch
are compared at once; which story a copy joins is docsieve/stories.py's business.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from docsieve.fingerprint import EMPTY_MINIMA, pair_overlaps
from docsieve.settings import Settings

# A candidate is ruled out without comparing the sets when its bin minima say that the chance it passes
# is below this. Chernoff's bound on the binomial tail: P(at most m of n bins agree | Jaccard >= p) <=
# exp(-n KL(m/n || p)).
RULE_OUT_BELOW = 1e-6


def verified_pairs(
    queries: Sequence[np.ndarray],
    query_minima: np.ndarray,
    doc_of_pair: Sequence[int],
    candidates: Sequence[np.ndarray],
    candidate_minima: Sequence[np.ndarray],
    settings: Settings,
) -> dict[int, tuple[float, float]]:
    """The candidate pairs that pass verification, with their (Jaccard, containment): a near copy, or
    (when the smaller set is large enough) an excerpt. Pairs are (``queries[doc]``, ``candidates[p]``) for
    ``doc = doc_of_pair[p]``; the minima are ``fingerprint.bin_minima`` of each. Which story a document
    joins is decided from these in docsieve/stories.py."""
    if not len(candidates):
        return {}
    docs = np.asarray(doc_of_pair, dtype=np.int64)
    query_sizes = np.fromiter(map(len, queries), dtype=np.int64, count=len(queries))[docs]
    other_sizes = np.fromiter(map(len, candidates), dtype=np.int64, count=len(candidates))
    may_contain = np.minimum(query_sizes, other_sizes) >= settings.min_containment_shingles
    kept = np.flatnonzero(
        ~hopeless(
            query_sizes,
            other_sizes,
            query_minima[docs],
            np.concatenate(candidate_minima).reshape(len(docs), -1),
            settings,
        )
    )
    if not len(kept):
        return {}
    jaccard, containment = pair_overlaps(queries, docs[kept], [candidates[p] for p in kept.tolist()])
    passing = (jaccard >= settings.jaccard_threshold) | (
        (containment >= settings.containment_threshold) & may_contain[kept]
    )
    return {
        pair: (j, c)
        for pair, j, c in zip(
            kept[passing].tolist(), jaccard[passing].tolist(), containment[passing].tolist(), strict=True
        )
    }


def hopeless(
    query_sizes: np.ndarray, other_sizes: np.ndarray, mine: np.ndarray, theirs: np.ndarray, settings: Settings
) -> np.ndarray:
    """Pairs whose bin minima (rows of ``mine`` and ``theirs``) make passing verification less likely than
    RULE_OUT_BELOW. Most candidates share a stock phrase or a chance LSH band and nothing more; this
    spares comparing their sets. The least Jaccard a pair needs to pass: the threshold, or what
    containment at its threshold implies for the two sizes."""
    smaller = np.minimum(query_sizes, other_sizes)
    shared_needed = settings.containment_threshold * smaller
    contained_jaccard = shared_needed / np.maximum(query_sizes + other_sizes - shared_needed, 1)
    least = np.where(
        smaller >= settings.min_containment_shingles,
        np.minimum(settings.jaccard_threshold, contained_jaccard),
        settings.jaccard_threshold,
    )
    # Only bins filled on both sides count (two empty bins hold the same marker). A bin one side leaves
    # empty holds none of the shared shingles, so leaving it out can only raise the rate: never rules
    # out more. (Equal values in a bin are both filled or both empty.)
    bins = ((mine != EMPTY_MINIMA) & (theirs != EMPTY_MINIMA)).sum(axis=1)
    agree = ((mine == theirs) & (mine != EMPTY_MINIMA)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = agree / np.maximum(bins, 1)
        divergence = np.where(rate > 0, rate * np.log(rate / least), 0.0) + (1 - rate) * np.log(
            (1 - rate) / (1 - least)
        )
    return (rate < least) & (bins * divergence > -np.log(RULE_OUT_BELOW))
