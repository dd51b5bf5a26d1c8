"""The rewrite stage: the same release or wire item reworded by another outlet, below the shingle thresholds.

Outlets condense a release, reorder its clauses, swap a synonym or rewrite the lead; such copies share
5-50% of their word 3-grams, under the thresholds, while they keep the release's words: names, places,
figures and most of its vocabulary. A document the shingles place in no story is compared, word by word,
with the canonicals of its candidates whose shingle containment reaches ``rewrite_floor``: the score is
the share of the shorter text's distinct words (stems: Arabic clitics taken off the front and pronouns off the
end, ``fingerprint.stem_starts`` and ``stem_ends``)
found in the longer, each word weighted by its inverse document frequency in the store, so that a
shared name counts and a shared "said" does not. At ``rewrite_threshold`` or more, the document joins the
story with method ``rewrite`` and the score as its similarity.

The document frequencies are learned as the store grows, with the template counts (docsieve/templates.py):
each different text's word ids are counted in the same rows as its shingle ids but in counters of their own,
and ``TEXT_MARK`` once, which gives the number of texts counted.

Chosen by measurement (bench/rewrites.py, docs/benchmarks.md): on the hand-labeled pairs below the shingle
thresholds this score separated copies from the same event written apart, and from templated items on
other subjects, better than sentence alignment by character n-grams or a multilingual sentence embedding,
and it held best on pairs held out (the blind audit's near misses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from docsieve.fingerprint import shared_mask
from docsieve.templates import ShingleCounts

# Counted once with every text's word ids: its count is the number of texts the document frequencies are
# taken over. Words are counted apart from shingles, in counters that never stop (templates.WORD_BUCKET_SHIFT):
# with counts that stopped at 32,768 (as the shingles' do), a fixed pair's score drifted with the store's size,
# from 0.83 at 30,000 texts to 0.93 at 1M for one that shares its rare words (a review's measurement).
TEXT_MARK = np.uint32(0)


@dataclass
class RewriteScores:
    """Rewrite scores between records of one batch's decisions (stored or new), their words read once."""

    counts: ShingleCounts
    words_of: Callable[[Iterable[str]], dict[str, np.ndarray]]  # records' word ids, for those not known yet
    words: dict[str, np.ndarray] = field(default_factory=dict)

    def read(self, ids: Iterable[str]) -> None:
        """Read the words of these records at once (a batch's likely scores: one query, one shingling)."""
        wanted = [i for i in dict.fromkeys(ids) if i not in self.words]
        if wanted:
            self.words.update(self.words_of(wanted))

    def score(self, a: str, b: str) -> float:
        """How much of the shorter text's words (by IDF weight) the longer holds: 0 where either has none
        known (a record without a stored text)."""
        self.read((a, b))
        wa, wb = self.words.get(a), self.words.get(b)
        if wa is None or wb is None or not len(wa) or not len(wb):
            return 0.0
        if len(wa) == len(wb):  # either is the shorter: the lower score, whichever way round they come
            return min(word_containment(wa, wb, self.counts), word_containment(wb, wa, self.counts))
        shorter, longer = (wa, wb) if len(wa) < len(wb) else (wb, wa)
        return word_containment(shorter, longer, self.counts)


def word_containment(shorter: np.ndarray, longer: np.ndarray, counts: ShingleCounts) -> float:
    """The IDF-weighted share of ``shorter``'s word ids that ``longer`` holds (both sorted unique)."""
    texts = float(counts.word_counts(np.array([TEXT_MARK]))[0])
    weights = np.log((texts + 1.0) / (counts.word_counts(shorter).astype(np.float64) + 1.0)).clip(min=0.0)
    total = float(weights.sum())
    return float(weights[shared_mask(shorter, longer)].sum()) / total if total else 0.0


def counted_words(words: np.ndarray) -> np.ndarray:
    """What a text adds to the counts besides its shingles: its word ids and the text mark."""
    return np.concatenate([words, np.array([TEXT_MARK], dtype=np.uint32)])
