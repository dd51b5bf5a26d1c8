"""How many different texts hold each shingle (docsieve/templates.py): the counts, their cap, the weights."""

import numpy as np
import pytest


def test_template_weights_follow_the_counts_of_every_text() -> None:
    from docsieve.templates import ShingleCounts

    rng = np.random.default_rng(3)
    counts = ShingleCounts(boilerplate_texts=3)
    pool = np.unique(rng.integers(0, 2**32, size=450, dtype=np.uint64).astype(np.uint32))
    texts = [np.unique(rng.choice(pool, size=120)) for _ in range(60)]
    for start in range(0, 60, 7):  # batches of texts, as a pipeline adds them
        counts.add(np.concatenate(texts[start : start + 7]))
    ids = pool
    held = np.array([sum(int(i) in set(t.tolist()) for t in texts) for i in ids])
    assert np.array_equal(counts.counts(ids), held)
    assert np.allclose(counts.weights(ids), np.minimum(1.0, 3 / np.maximum(held, 1)))


def test_template_counts_stop_at_their_cap_and_never_wrap() -> None:
    from docsieve.templates import MOST, ShingleCounts

    counts = ShingleCounts(boilerplate_texts=3)
    common, rare = np.uint32(7 << 24), np.uint32(9 << 24)
    counts.add(np.full(3 * MOST + 5, common, dtype=np.uint32))  # more than a uint16 holds, in one call
    counts.add(np.array([rare, rare, rare], dtype=np.uint32))
    counts.add(np.full(MOST, common, dtype=np.uint32))  # and again at the cap
    assert counts.counts(np.array([common, rare])).tolist() == [MOST, 3]
    assert counts.weights(np.array([common]))[0] == pytest.approx(3 / MOST)
