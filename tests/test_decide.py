"""Verification of a batch's candidate pairs at once (docsieve/decide.py)."""

import numpy as np
import pytest

from docsieve.decide import hopeless, verified_pairs
from docsieve.fingerprint import bin_minima, pair_overlaps
from tests.test_fingerprint import SETTINGS, random_sets


def test_prefilter_never_rules_out_a_passing_candidate() -> None:
    """verified_pairs rules candidates out by their bin minima before comparing sets; every pair that
    passes on the exact sets must still be found, and unrelated long texts are ruled out."""
    rng = np.random.default_rng(11)
    queries = random_sets(rng, 80)
    others, query_of_pair = [], []
    for q, query in enumerate(queries):
        for keep in (1.0, 0.8, 0.6, 0.5, 0.3, 0.0):
            part = query[rng.random(len(query)) < keep]
            extra = rng.integers(0, 2**32, size=int(rng.integers(0, len(query) + 2)), dtype=np.uint64).astype(np.uint32)
            others.append(np.unique(np.concatenate((part, extra))))
            query_of_pair.append(q)
    verified = verified_pairs(queries, bin_minima(queries), query_of_pair, others, list(bin_minima(others)), SETTINGS)
    jaccard, containment = pair_overlaps(queries, np.array(query_of_pair), others)
    smaller = np.minimum([len(queries[q]) for q in query_of_pair], [len(o) for o in others])
    passing = (jaccard >= SETTINGS.jaccard_threshold) | (
        (containment >= SETTINGS.containment_threshold) & (smaller >= SETTINGS.min_containment_shingles)
    )
    assert set(np.flatnonzero(passing).tolist()) == set(verified)
    for pair, (j, c) in verified.items():
        assert (j, c) == pytest.approx((jaccard[pair], containment[pair]))

    sizes = np.array([len(queries[q]) for q in query_of_pair]), np.array([len(o) for o in others])
    ruled_out = hopeless(*sizes, bin_minima(queries)[query_of_pair], bin_minima(others), SETTINGS)
    assert not (ruled_out & passing).any()
    # Unrelated sets of a few hundred ids and more: nothing shared, so the minima rule them out.
    unrelated = (containment == 0) & (smaller >= 300)
    assert unrelated.sum() >= 5 and ruled_out[unrelated].all()


def test_prefilter_rules_out_a_short_text_that_shares_one_paragraph_with_a_long_one() -> None:
    """A short text holding an eighth of its shingles in common with a long one (containment 0.125,
    Jaccard 0.03): its minima show the containment itself, so most such pairs are ruled out without their
    sets (an implied Jaccard, the test before, ruled out 18%); at containment 0.6 none is."""
    rng = np.random.default_rng(5)
    low, high = _paragraph_pairs(rng, 200, 50), _paragraph_pairs(rng, 200, 240)  # 50 or 240 of 400 in the long one
    for pairs, least, most in ((low, 0.6, 1.0), (high, 0.0, 0.0)):
        ruled_out = _ruled_out(pairs)
        assert least <= ruled_out.mean() <= most, ruled_out.mean()


def _paragraph_pairs(rng: np.random.Generator, count: int, shared: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(short, long) sets: 400 ids of which ``shared`` are in the long set of 1,100."""
    pairs = []
    for _ in range(count):
        ids = rng.permutation(np.unique(rng.integers(0, 2**32, size=3000, dtype=np.uint64).astype(np.uint32)))
        long, rest = np.sort(ids[:1100]), ids[1100:]
        pairs.append((np.unique(np.concatenate((long[:shared], rest[: 400 - shared]))), long))
    return pairs


def _ruled_out(pairs: list[tuple[np.ndarray, np.ndarray]], near_floor: float | None = None) -> np.ndarray:
    shorts, longs = [s for s, _ in pairs], [lg for _, lg in pairs]
    sizes = np.array([len(s) for s in shorts]), np.array([len(lg) for lg in longs])
    return hopeless(*sizes, bin_minima(shorts), bin_minima(longs), SETTINGS, near_floor)


def test_the_binomial_tail_table_matches_the_sums_it_stands_for() -> None:
    from math import comb

    from docsieve.decide import _at_most

    for p in (0.5, 0.55):
        table = _at_most(p)
        for n, k in ((0, 0), (1, 0), (20, 3), (64, 40), (128, 10), (128, 127), (128, 128)):
            expected = sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))
            assert table[n, k] == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_with_the_rewrite_floor_pairs_that_may_reach_it_are_kept_and_returned_beside_the_copies() -> None:
    """With the rewrite stage's floor (0.3), verified_pairs also returns the pairs at containment 0.3 to the
    threshold (``passes`` tells them from copies); a pair at containment 0.4 is always kept for its sets, and
    of those at 0.125 a third are still ruled out on their minima (without the floor, two thirds)."""
    from docsieve.decide import passes

    rng = np.random.default_rng(9)
    for share in (0.125, 0.4, 0.7):
        pairs = _paragraph_pairs(rng, 100, int(400 * share))
        shorts, longs = [s for s, _ in pairs], [lg for _, lg in pairs]
        ruled_out = _ruled_out(pairs, near_floor=0.3)
        found = verified_pairs(
            shorts, bin_minima(shorts), list(range(len(shorts))), longs, list(bin_minima(longs)), SETTINGS, 0.3
        )
        copies = [p for p, (j, c) in found.items() if passes(j, c, len(shorts[p]), SETTINGS)]
        if share == 0.125:
            assert ruled_out.mean() >= 0.25 and not found
        elif share == 0.4:
            assert not ruled_out.any() and len(found) == 100 and not copies
        else:
            assert not ruled_out.any() and len(copies) == len(found) == 100
