"""Verification: which candidates are copies, on the exact shingle sets.

Every candidate from the index is verified before a document is called a copy of it: Jaccard for
copies of about the same length, containment (shared shingles over the smaller set) for truncated
copies and excerpts, which plain Jaccard misses. The exact sets of all the candidate pairs of a batch
are compared at once; which story a copy joins is docsieve/stories.py's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

from docsieve.fingerprint import EMPTY_MINIMA, MINIMA_BITS, pair_overlaps
from docsieve.settings import Settings

# A candidate is ruled out without comparing the sets when its bin minima say that the chance it passes
# is below this (the exact binomial tail: with Chernoff's bound on it, and no test of containment itself,
# 35% more pairs went on to have their sets compared on reused text; docs/benchmarks.md).
RULE_OUT_BELOW = 1e-6
# The same for reaching the rewrite stage's floor (docsieve/rewrites.py). Held to 1e-6, the floor's pairs had
# their sets made for every candidate sharing a piece of text: on a store of 100,000 synthetic articles that
# reuse paragraphs (bench/scale.py), a third of the ingest went to making stored texts' sets again. At 1%, a
# pair whose containment is truly at the floor is missed once in a hundred, more often the further above.
NEAR_RULE_OUT_BELOW = 1e-2


def verified_pairs(
    queries: Sequence[np.ndarray],
    query_minima: np.ndarray,
    doc_of_pair: Sequence[int],
    candidates: Sequence[np.ndarray],
    candidate_minima: Sequence[np.ndarray],
    settings: Settings,
    near_floor: float | None = None,
) -> dict[int, tuple[float, float]]:
    """The candidate pairs that pass verification, with their (Jaccard, containment): a near copy, or
    (when the smaller set is large enough) an excerpt. Pairs are (``queries[doc]``, ``candidates[p]``) for
    ``doc = doc_of_pair[p]``; the minima are ``fingerprint.bin_minima`` of each. Which story a document
    joins is decided from these in docsieve/stories.py. ``near_floor``: also the pairs below the thresholds
    whose containment reaches it (the rewrite stage's, docsieve/rewrites.py); ``passes`` tells them apart."""
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
            near_floor,
        )
    )
    if not len(kept):
        return {}
    jaccard, containment = pair_overlaps(queries, docs[kept], [candidates[p] for p in kept.tolist()])
    passing = (jaccard >= settings.jaccard_threshold) | (
        (containment >= min(settings.containment_threshold, near_floor or 1.0)) & may_contain[kept]
    )
    return {
        pair: (j, c)
        for pair, j, c in zip(
            kept[passing].tolist(), jaccard[passing].tolist(), containment[passing].tolist(), strict=True
        )
    }


def passes(jaccard: float, containment: float, smaller: int, settings: Settings) -> bool:
    """A pair of ``verified_pairs`` that is a copy by the thresholds (not only at the rewrite stage's floor)."""
    return jaccard >= settings.jaccard_threshold or (
        containment >= settings.containment_threshold and smaller >= settings.min_containment_shingles
    )


def hopeless(
    query_sizes: np.ndarray,
    other_sizes: np.ndarray,
    mine: np.ndarray,
    theirs: np.ndarray,
    settings: Settings,
    near_floor: float | None = None,
) -> np.ndarray:
    """Pairs whose bin minima (rows of ``mine`` and ``theirs``) make passing verification less likely than
    RULE_OUT_BELOW. Most candidates share a stock phrase, a chance LSH band or a paragraph and nothing
    more; this spares making and comparing their sets.

    A pair passes on Jaccard or on containment (shared over the smaller set), so it is ruled out only if
    both are unlikely. In a bin filled on both sides the two minima are equal with chance J; where they
    differ, the smaller set holds the bin's least id with chance |smaller \\ larger| / |union|. So among the
    bins where the smaller set's minimum is not above the larger's, the share of equal ones estimates the
    containment itself: a short text sharing a paragraph with a long one is ruled out on that, where an
    implied Jaccard (a few percent against a few percent) could not tell. With ``near_floor``, containment
    is judged against it when lower than the threshold."""
    both = (mine != EMPTY_MINIMA) & (theirs != EMPTY_MINIMA)  # two empty bins hold the same marker
    equal = ((mine == theirs) & both).sum(axis=1)
    # A bin one side leaves empty holds none of the shared ids, so leaving it out never rules out more.
    unlikely_jaccard = _at_most(settings.jaccard_threshold)[both.sum(axis=1), equal] < RULE_OUT_BELOW
    query_smaller = (query_sizes <= other_sizes)[:, None]
    smaller, larger = np.where(query_smaller, mine, theirs), np.where(query_smaller, theirs, mine)
    below = ((smaller < larger) & both).sum(axis=1)  # the smaller set's least id, not in the larger
    seen = equal + below
    too_small = np.minimum(query_sizes, other_sizes) < settings.min_containment_shingles
    unlikely_containment = (_at_most(settings.containment_threshold)[seen, equal] < RULE_OUT_BELOW) | too_small
    if near_floor is not None and near_floor < settings.containment_threshold:
        # The rewrite stage's pairs: a second net, so a looser cut (see NEAR_RULE_OUT_BELOW).
        unlikely_containment &= (_at_most(near_floor)[seen, equal] < NEAR_RULE_OUT_BELOW) | too_small
    return unlikely_jaccard & unlikely_containment


@cache
def _at_most(p: float) -> np.ndarray:
    """P(at most k successes in n trials of chance p) for every n and k up to the number of bins, as a
    table [n, k]. (scipy.special.bdtr gives the same, but importing it added 0.1 s to every command, and
    scipy.stats 0.6 s: `python -c "import docsieve.pipeline"` took 0.53 s without.)"""
    n = np.arange((1 << MINIMA_BITS) + 1)
    log_factorial = np.concatenate(([0.0], np.cumsum(np.log(n[1:]))))
    k = n[None, :]
    with np.errstate(invalid="ignore"):  # k > n: no such outcome
        log_pmf = (
            log_factorial[n][:, None]
            - log_factorial[k]
            - log_factorial[np.maximum(n[:, None] - k, 0)]
            + k * np.log(p)
            + (n[:, None] - k) * np.log1p(-p)
        )
    pmf = np.where(k <= n[:, None], np.exp(log_pmf), 0.0)
    return np.minimum(np.cumsum(pmf, axis=1), 1.0)
