"""Fingerprints: SHA-256 of the normalized text, word-shingle sets and MinHash signatures, for a batch.

The signature is a one-permutation MinHash (Li, Owen & Zhang 2012) with optimal densification
(Shrivastava 2017): every shingle is hashed once to 64 bits, its top bits pick one of ``num_perm``
bins and the next 32 bits are its value; a bin keeps its smallest value, and an empty bin borrows
the value of the first non-empty bin in a fixed random order of its own. The probability that two
documents agree in a bin is their Jaccard similarity, as for classic MinHash, but the cost is one
hash per shingle instead of ``num_perm`` (datasketch's ``update_batch`` computes ``num_perm``
permutations of every shingle). That is what makes a numpy implementation faster than rensa's Rust
loop (bench/speed.py); the values are stored in datasketch's layout (uint64 < 2**32) and wrapped in
``LeanMinHash`` so datasketch's ``jaccard`` and ``MinHashLSH`` work on them unchanged. Accuracy
against exact Jaccard is measured in ``bench/speed.py``.

Everything runs over the concatenated code points of the whole batch, so the Python overhead per
document is a handful of slices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from docsieve.dates import Slots, Weekdays, slots, this_forms, weekday_forms
from docsieve.figures import Figures, batch_figures
from docsieve.models import Fingerprint
from docsieve.normalize import SPACE, NormalizedBatch, normalize_batch
from docsieve.settings import WORD_STEMS, Settings

U64 = np.uint64
EMPTY = U64(1 << 32)  # larger than any 32-bit value: marks an empty bin before densification
SAMPLE_TAG = np.int64(1 << 62)  # keeps the containment (winnowed) keys apart from LSH band keys
NO_SHINGLE = np.uint32(0xFFFFFFFF)  # pads windows past a text's end: never a window's minimum


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, in place: spreads every input bit over the 64 output bits."""
    x ^= x >> U64(30)
    x *= U64(0xBF58476D1CE4E5B9)
    x ^= x >> U64(27)
    x *= U64(0x94D049BB133111EB)
    x ^= x >> U64(31)
    return x


KEEP_POWERS = 1 << 22  # code points whose power tables stay cached (64 MiB); larger chunks are rare
BASE = 0x100000001B3  # FNV's 64-bit prime: odd, so it has an inverse modulo 2**64


class _PowerTable:
    """BASE**i and BASE**-i modulo 2**64 for i below the largest batch seen, grown by doubling. Both
    tables are swapped in as one tuple, so threads fingerprinting at once never see a mismatched pair."""

    def __init__(self) -> None:
        self.tables = (np.ones(0, dtype=np.uint64), np.ones(0, dtype=np.uint64))

    def __call__(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        tables = self.tables
        if size <= len(tables[0]):
            return tables
        grown = _power_tables(max(size, 2 * len(tables[0]), 1 << 16))
        if size <= KEEP_POWERS:  # a huge chunk gets tables for it alone, not kept (16 bytes a character)
            self.tables = grown
        return grown


def _power_tables(size: int) -> tuple[np.ndarray, np.ndarray]:
    inverse = pow(BASE, -1, 1 << 64)
    powers = np.cumprod(np.full(size, BASE, dtype=np.uint64)) * U64(inverse)
    inverses = np.cumprod(np.full(size, inverse, dtype=np.uint64)) * U64(BASE)
    return powers, inverses


_powers = _PowerTable()


@dataclass(frozen=True, slots=True)
class _Constants:
    gram_weights: np.ndarray  # uint64[shingle_size]: weights of the tokens in a shingle
    seed: np.uint64
    borrow_order: np.ndarray  # int64[num_perm, num_perm]: where an empty bin looks for a value
    band_weights: np.ndarray  # uint64[bands, rows]
    band_salt: np.ndarray  # uint64[bands]


@cache
def _constants(shingle_size: int, num_perm: int, bands: int, seed: int) -> _Constants:
    rng = np.random.default_rng(seed)

    def odd(n: int) -> np.ndarray:
        return rng.integers(1, 2**63, size=n, dtype=np.uint64) * U64(2) + U64(1)

    borrow_order = np.argsort(rng.random((num_perm, num_perm)), axis=1)
    return _Constants(
        gram_weights=odd(shingle_size),
        seed=U64(rng.integers(0, 2**63)),
        borrow_order=borrow_order,
        band_weights=odd(num_perm).reshape(bands, num_perm // bands),
        band_salt=odd(bands),
    )


@dataclass(frozen=True, slots=True)
class ShingledBatch:
    """Per document: 32-bit shingle ids and the one-permutation MinHash signature."""

    normalized: NormalizedBatch
    shingle_ids: np.ndarray  # uint32, documents one after another, in text order, repeats included
    shingle_bounds: np.ndarray  # int64, len = documents + 1
    signatures: np.ndarray  # uint64[documents, num_perm], values < 2**32
    tokens: np.ndarray  # uint64 token hashes, documents one after another, in text order
    token_bounds: np.ndarray  # int64, len = documents + 1
    word_ids: np.ndarray | None = None  # uint32 ids of the tokens' stems (``words=True``), in text order

    def shingles(self, i: int) -> np.ndarray:
        """Sorted unique shingle ids of document i."""
        ids = np.sort(self.shingle_ids[self.shingle_bounds[i] : self.shingle_bounds[i + 1]])
        fresh = np.ones(len(ids), dtype=bool)
        fresh[1:] = ids[1:] != ids[:-1]
        return ids[fresh]


def shingle_batch(texts: Sequence[str], settings: Settings, words: bool = False) -> ShingledBatch:
    """Normalize, shingle and sign a batch of texts: the hot path, fully vectorized. ``words``: also the
    ids of the tokens' stems (``stem_starts``), for the rewrite stage (docsieve/rewrites.py)."""
    k, n = settings.num_perm, settings.shingle_size
    const = _constants(n, k, settings.lsh_bands, settings.seed)
    norm = normalize_batch(texts)
    docs = len(texts)
    tokens, token_bounds, word_ids = _tokens(norm, words, settings.word_stems)
    token_counts = np.diff(token_bounds)

    # Shingles: n consecutive tokens. Each document gets n-1 zero tokens of padding so that a window
    # never crosses into the next document and a text shorter than n still has one shingle.
    padded = np.zeros(len(tokens) + docs * (n - 1) + n, dtype=np.uint64)
    doc_of_token = np.repeat(np.arange(docs, dtype=np.int64), token_counts)
    padded[np.arange(len(tokens), dtype=np.int64) + doc_of_token * (n - 1)] = tokens
    windows = len(padded) - n + 1
    grams = padded[:windows] * const.gram_weights[0]
    for j in range(1, n):
        grams += padded[j : windows + j] * const.gram_weights[j]
    shingle_counts = np.where(token_counts > 0, np.maximum(token_counts - n + 1, 1), 0)
    first_window = token_bounds[:-1] + np.arange(docs, dtype=np.int64) * (n - 1)
    owner = np.repeat(np.arange(docs, dtype=np.int64), shingle_counts)
    shingles_before = np.cumsum(shingle_counts) - shingle_counts
    offset_in_doc = np.arange(owner.size, dtype=np.int64) - np.repeat(shingles_before, shingle_counts)
    hashes = _mix(grams[first_window[owner] + offset_in_doc] ^ const.seed)

    # Signature: top bits pick the bin, the next 32 bits are the value; each bin keeps its minimum.
    bin_bits = k.bit_length() - 1
    bins = (hashes >> U64(64 - bin_bits)).astype(np.int64)
    values = (hashes >> U64(64 - bin_bits - 32)) & U64(0xFFFFFFFF)
    flat = np.full(docs * k, EMPTY, dtype=np.uint64)
    np.minimum.at(flat, owner * k + bins, values)
    signatures = flat.reshape(docs, k)
    _densify(signatures, const.borrow_order)
    shingle_bounds = np.zeros(docs + 1, dtype=np.int64)
    np.cumsum(shingle_counts, out=shingle_bounds[1:])
    ids = (hashes >> U64(32)).astype(np.uint32)
    return ShingledBatch(norm, ids, shingle_bounds, signatures, tokens, token_bounds, word_ids)


def _tokens(
    norm: NormalizedBatch, words: bool = False, stems_of: str = WORD_STEMS[-1]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The token hashes of a normalized batch, where each document's tokens start (len = documents + 1), and
    with ``words`` the ids of their stems (``stems_of``: Settings.word_stems)."""
    codes = norm.codes
    # Tokens: every space closes one. A token's hash is the polynomial sum(c_i * B**i) over its
    # characters, computed for all tokens at once with weights by position in the batch, then
    # brought back to the token's own start by the inverse power of B (B is odd, so invertible).
    # Each token's sum runs through its closing space (the codes end with one): differences of a running
    # sum at the spaces, wrapping modulo 2**64 like the sums themselves (quicker than np.add.reduceat).
    spaces = np.flatnonzero(codes == SPACE)
    token_starts = np.zeros(len(spaces), dtype=np.int64)
    token_starts[1:] = spaces[:-1] + 1
    word_ids = None
    if len(spaces):
        powers, inverses = _powers(len(codes))
        running = np.cumsum(np.multiply(codes, powers[: len(codes)], dtype=np.uint64))
        sums = np.diff(running[spaces], prepend=U64(0))
        tokens = _mix(sums * inverses[token_starts])
        if words:  # a stem's sum is the token's less the prefix's, brought back to the stem's start
            stems = stem_starts(codes, token_starts, spaces)
            before = np.where(stems > 0, running[np.maximum(stems - 1, 0)], U64(0))
            total = running[spaces] - before
            if stems_of == "affixes":  # the stem's sum to its end, closed by a space, as a word without a suffix
                ends = stem_ends(codes, stems, spaces)
                cut = ends < spaces
                total = np.where(cut, running[ends - 1] - before + U64(SPACE) * powers[ends], total)
                # A feminine noun's ta marbuta is written ta before a suffix ("حالتهم": their state, of "حالة",
                # normalized "حاله"); a plural's -at is not ("قراراتها": its decisions). A stem's own final ta
                # after another letter is taken for one too ("بيوتهم", their houses, is not "بيوت"): rarer.
                marbuta = cut & (codes[ends - 1] == _TA) & (codes[np.maximum(ends - 2, 0)] != _ALEF)
                total = np.where(marbuta, total + U64(_HEH - _TA) * powers[ends - 1], total)
            word_ids = (_mix(total * inverses[stems] ^ WORD_SALT) >> U64(32)).astype(np.uint32)
    else:
        tokens = np.zeros(0, dtype=np.uint64)
        word_ids = np.zeros(0, dtype=np.uint32) if words else None
    # Tokens before each document's start: spaces before it (a running count over every character would
    # cost far more).
    return tokens, np.searchsorted(spaces, norm.bounds), word_ids


@cache
def _weekdays() -> Weekdays:
    """The token hashes of the weekday forms (docsieve/dates.py), with their days."""
    forms, this = weekday_forms(), this_forms()
    tokens, _, _ = _tokens(normalize_batch([" ".join([*forms, *this])]))
    days = dict(zip(tokens[: len(forms)].tolist(), forms.values(), strict=True))
    return Weekdays.of(days, tokens[len(forms) :].tolist())


def day_slots(batch: ShingledBatch) -> list[Slots]:
    """The weekday slots of each document of a batch (docsieve/dates.py)."""
    return slots(batch.tokens, batch.token_bounds, _weekdays())


def text_figures(texts: Sequence[str]) -> list[Figures]:
    """The figures of texts (docsieve/figures.py), as ``fingerprint_batch`` makes them."""
    found: list[Figures] = []
    for start in range(0, len(texts), SETS_AT_ONCE):
        norm = normalize_batch(texts[start : start + SETS_AT_ONCE])
        tokens, bounds, _ = _tokens(norm)
        found += batch_figures(norm.codes, tokens, bounds, norm.codes.tobytes().decode("utf-32-le"))
    return found


def text_day_slots(texts: Sequence[str]) -> list[Slots]:
    """The weekday slots of texts, as ``fingerprint_batch`` makes them: tokens alone, no shingles."""
    found: list[Slots] = []
    for start in range(0, len(texts), SETS_AT_ONCE):
        tokens, bounds, _ = _tokens(normalize_batch(texts[start : start + SETS_AT_ONCE]))
        found += slots(tokens, bounds, _weekdays())
    return found


WORD_SALT = U64(0x5851F42D4C957F2D)  # words' ids apart from the tokens' own hashes inside shingles
# Arabic clitics written onto a word: wa/fa "and", bi/li/ka "with/to/as", al "the" (normalized letters).
_WAW, _FA, _BA, _LAM, _KAF, _ALEF = 0x648, 0x641, 0x628, 0x644, 0x643, 0x627
MIN_STEM = 3  # a shorter rest keeps its prefix: "بل" is no clitic on "ل"


def stem_starts(codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Where each token's stem starts (``ends``: the token's closing space): after a leading wa/fa, then
    bi/li/ka + al, al, or bi/li, as the regex ``^[وف]?(?:[بلك]?ال|[بل])?`` takes them, unless fewer than
    MIN_STEM letters would remain. The rewrite stage compares words, and an Arabic word carries these
    on its front ("والمملكة", "بالمملكة", "المملكة"). Vectorized over every token of a batch, as the
    regex per word cost 0.4 ms a document."""
    # A token's codes end with its closing space, so reading up to three past a token's start never leaves
    # the batch, and a space (or the next token) there matches no letter the patterns need after it.
    last = len(codes) - 1

    def at(p: np.ndarray) -> np.ndarray:
        return codes[np.minimum(p, last)]

    p = starts.copy()
    c0 = at(p)
    p += (c0 == _WAW) | (c0 == _FA)
    c0, c1, c2 = at(p), at(p + 1), at(p + 2)
    preposition = (c0 == _BA) | (c0 == _LAM)
    with_al = (preposition | (c0 == _KAF)) & (c1 == _ALEF) & (c2 == _LAM)
    al = (c0 == _ALEF) & (c1 == _LAM)
    p += np.where(with_al, 3, np.where(al, 2, preposition))
    return np.where(ends - p >= MIN_STEM, p, starts)


_TA, _MIM, _NUN, _HEH = 0x62A, 0x645, 0x646, 0x647


def stem_ends(codes: np.ndarray, stems: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Where each stem ends (``ends``: the token's closing space): before a third-person pronoun written onto it,
    -hum, -hunna, -ha (their, her, its) or -huma (of two), unless fewer than MIN_STEM letters would remain:
    "حكومتهم", "حكومتها" and "الحكومة" are one word for the rewrite stage. (Light stemming, clitics off both ends,
    is the usual way with Arabic in retrieval since Larkey et al. 2002.) The first and second persons are left:
    news reports in the third, and their endings are too often a word's own (-na: "أحيانا", "مليونا"; -kum, -kun:
    "المحاكم", "أماكن", "يتمكن"), which cut would merge with other words ("أماكن" with "أما", "يتمكن" with "يتم")."""
    last = len(codes) - 1

    def at(p: np.ndarray) -> np.ndarray:
        return codes[np.clip(p, 0, last)]

    c1, c2, c3 = at(ends - 1), at(ends - 2), at(ends - 3)
    three = (c1 == _ALEF) & (c2 == _MIM) & (c3 == _HEH)
    two = (c2 == _HEH) & ((c1 == _MIM) | (c1 == _NUN) | (c1 == _ALEF))
    cut = np.where(three, 3, np.where(two, 2, 0))
    return np.where(ends - cut - stems >= MIN_STEM, ends - cut, ends)


def word_sets(batch: ShingledBatch) -> list[np.ndarray]:
    """Sorted unique stem ids of each document of a batch made with ``words=True``."""
    assert batch.word_ids is not None
    return _word_sets(batch.word_ids, batch.token_bounds)


def _word_sets(word_ids: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    """Sorted unique stem ids of each document, its tokens' ``word_ids`` starting at ``bounds``."""
    docs = len(bounds) - 1
    owner = np.repeat(np.arange(docs, dtype=np.uint64), np.diff(bounds))
    keys = np.sort((owner << U64(32)) | word_ids.astype(np.uint64))
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
    ids = (keys & U64(0xFFFFFFFF)).astype(np.uint32)
    bounds = np.searchsorted(keys >> U64(32), np.arange(docs + 1, dtype=np.uint64)).tolist()
    return [ids[bounds[i] : bounds[i + 1]] for i in range(docs)]


def _densify(signatures: np.ndarray, borrow_order: np.ndarray) -> None:
    """Fill each empty bin from the first non-empty bin in its own fixed order (in place)."""
    rows, bins = np.nonzero(signatures == EMPTY)
    if not len(rows):
        return
    filled = signatures != EMPTY
    # Most empty bins find a value among their first few candidates; look further only where needed.
    for width in (8, borrow_order.shape[1]):
        order = borrow_order[bins, :width]
        hit = filled[rows[:, None], order]
        found = hit.any(axis=1)
        choice = order[np.arange(len(rows)), hit.argmax(axis=1)]
        signatures[rows[found], bins[found]] = signatures[rows[found], choice[found]]
        rows, bins = rows[~found], bins[~found]
        if not len(rows):
            break
    # A document without a single shingle keeps EMPTY bins; it has no words and is rejected upstream.


def fingerprint_batch(texts: Sequence[str], settings: Settings) -> list[Fingerprint]:
    batch = shingle_batch(texts, settings, words=settings.rewrites)
    words = word_sets(batch) if settings.rewrites else None
    days = day_slots(batch) if settings.weekday_check else None
    docs = len(texts)
    const = _constants(settings.shingle_size, settings.num_perm, settings.lsh_bands, settings.seed)
    sig = batch.signatures.reshape(docs, settings.lsh_bands, settings.lsh_rows)
    band_keys = _mix((sig * const.band_weights).sum(axis=2, dtype=np.uint64) + const.band_salt).view(np.int64)
    band_keys &= np.int64(~(1 << 62))  # bit 62 belongs to winnowed keys

    # Sorted unique shingle ids of every document with one sort: key = document | shingle id.
    owner = np.repeat(np.arange(docs, dtype=np.uint64), np.diff(batch.shingle_bounds))
    keys = np.sort((owner << U64(32)) | batch.shingle_ids.astype(np.uint64))
    fresh = np.ones(len(keys), dtype=bool)
    fresh[1:] = keys[1:] != keys[:-1]
    keys = keys[fresh]
    ids = (keys & U64(0xFFFFFFFF)).astype(np.uint32)
    bounds = np.searchsorted(keys >> U64(32), np.arange(docs + 1, dtype=np.uint64))
    # The containment index's keys: the winnowed shingles (Schleimer, Wilkerson & Aiken 2003), so every
    # run of ``winnow_window`` shingles two texts share gives both one key, however short the copied item.
    winnow_keys, sample_at = _winnowed(batch, settings.winnow_window)
    short = np.diff(bounds) < SHORT_TEXT_SHINGLES
    minima = _bin_minima(ids, (keys >> U64(32)).astype(np.int64), docs)
    # Python ints for the per-document slices: slicing with numpy scalars costs more.
    shingle_at = bounds.tolist()
    # The normalized texts decoded in one call (less than one per document), each hashed in
    # UTF-8 without its closing space (as NormalizedBatch.text gives it).
    normalized, text_at = batch.normalized.codes.tobytes().decode("utf-32-le"), batch.normalized.bounds.tolist()
    figures = (
        batch_figures(batch.normalized.codes, batch.tokens, batch.token_bounds, normalized)
        if settings.figure_check
        else None
    )
    return [
        Fingerprint(
            content_hash=hashlib.sha256(
                normalized[text_at[i] : max(text_at[i], text_at[i + 1] - 1)].encode()
            ).hexdigest(),
            shingles=ids[shingle_at[i] : shingle_at[i + 1]],
            signature=batch.signatures[i],
            band_keys=band_keys[i],
            winnow_keys=(
                ids[shingle_at[i] : shingle_at[i + 1]].astype(np.int64) | SAMPLE_TAG
                if short[i]
                else winnow_keys[sample_at[i] : sample_at[i + 1]]
            ),
            minima=minima[i],
            seed=settings.seed,
            words=None if words is None else words[i],
            days=None if days is None else days[i],
            figures=None if figures is None else figures[i],
        )
        for i in range(docs)
    ]


def shingle_sets(texts: Sequence[str], settings: Settings) -> list[np.ndarray]:
    """Sorted unique shingle ids of each text, as ``fingerprint_batch`` makes them: how a stored record's
    shingles are made again from its text (the store keeps texts, not shingle sets)."""
    sets: list[np.ndarray] = []
    for start in range(0, len(texts), SETS_AT_ONCE):  # a batch's arrays grow with its characters
        chunk = texts[start : start + SETS_AT_ONCE]
        batch = shingle_batch(chunk, settings)
        owner = np.repeat(np.arange(len(chunk), dtype=np.uint64), np.diff(batch.shingle_bounds))
        keys = np.sort((owner << U64(32)) | batch.shingle_ids.astype(np.uint64))  # sorted, then its repeats
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]  # dropped: quicker than np.unique's hashing
        ids = (keys & U64(0xFFFFFFFF)).astype(np.uint32)
        bounds = np.searchsorted(keys >> U64(32), np.arange(len(chunk) + 1, dtype=np.uint64)).tolist()
        sets += [ids[bounds[i] : bounds[i + 1]] for i in range(len(chunk))]
    return sets


def stored_word_sets(texts: Sequence[str], stems_of: str) -> list[np.ndarray]:
    """Sorted unique stem ids of each text, as ``fingerprint_batch`` makes them with rewrites on and
    ``word_stems=stems_of``: tokens alone, no shingles or signatures."""
    sets: list[np.ndarray] = []
    for start in range(0, len(texts), SETS_AT_ONCE):
        norm = normalize_batch(texts[start : start + SETS_AT_ONCE])
        _, bounds, word_ids = _tokens(norm, words=True, stems_of=stems_of)
        assert word_ids is not None
        sets += _word_sets(word_ids, bounds)
    return sets


# A brief item (under this many shingles: some 80 words) is indexed by every shingle, not by its winnowed
# sample. A longer text that carries it lightly edited shares only runs shorter than a window with it, and
# both texts had to pick the same shingle of such a run (about one time in three); now the longer text's own
# sample need only fall in one of them. Brief items are few, so the index grows little (docs/benchmarks.md).
SHORT_TEXT_SHINGLES = 80
SETS_AT_ONCE = 256  # texts shingled at once when sets are made again (see store.Transaction.sketches)


def _winnowed(batch: ShingledBatch, window: int) -> tuple[np.ndarray, list[int]]:
    """Per document, the distinct minima of every window of ``window`` consecutive shingles (in text
    order; a text shorter than one window gives its smallest), tagged as keys; and where each document's
    keys start. Window minima by the van Herk/Gil-Werman scheme: a prefix and a suffix minimum in blocks
    of ``window``, so the cost does not grow with the window."""
    counts = np.diff(batch.shingle_bounds)
    docs = len(counts)
    # Each text is followed by window - 1 pads, so no window reaches into the next text.
    stride = counts + window - 1
    starts = np.cumsum(stride) - stride
    total = int(stride.sum())
    padded = np.full(-(-max(total, 1) // window) * window + window, NO_SHINGLE, dtype=np.uint32)
    owner = np.repeat(np.arange(docs, dtype=np.int64), counts)
    offset = np.arange(len(owner), dtype=np.int64) - np.repeat(batch.shingle_bounds[:-1], counts)
    padded[np.repeat(starts, counts) + offset] = batch.shingle_ids
    blocks = padded.reshape(-1, window)
    prefix = np.minimum.accumulate(blocks, axis=1).reshape(-1)
    suffix = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].reshape(-1)
    # Window i..i+window-1: the suffix minimum from i in its block and the prefix minimum to its end.
    firsts = np.arange(len(padded) - window + 1, dtype=np.int64)
    minima = np.minimum(suffix[firsts], prefix[firsts + window - 1])
    windows = np.maximum(counts - window + 1, np.minimum(counts, 1))
    window_owner = np.repeat(np.arange(docs, dtype=np.int64), windows)
    at = (
        np.repeat(starts, windows)
        + np.arange(len(window_owner), dtype=np.int64)
        - np.repeat(np.cumsum(windows) - windows, windows)
    )
    # Neighbouring windows mostly share their minimum: only where it changes (or a text starts) is a new one,
    # so the sort below sees a fraction of the windows (docs/benchmarks.md).
    picked = minima[at]
    fresh = np.ones(len(picked), dtype=bool)
    fresh[1:] = (picked[1:] != picked[:-1]) | (window_owner[1:] != window_owner[:-1])
    chosen = np.unique((window_owner[fresh].astype(np.uint64) << U64(32)) | picked[fresh].astype(np.uint64))
    keys = (chosen & U64(0xFFFFFFFF)).astype(np.int64) | SAMPLE_TAG
    bounds = np.searchsorted(chosen >> U64(32), np.arange(docs + 1, dtype=np.uint64))
    return keys, bounds.tolist()


MINIMA_BITS = 7  # 128 bins, by the top bits of a shingle id
MINIMA_SHIFT = 32 - MINIMA_BITS
# An empty bin holds a value outside its own range (the next bin's first id), so it never matches.
EMPTY_MINIMA = (
    (np.arange(1 << MINIMA_BITS, dtype=np.uint64) + U64(1)) % U64(1 << MINIMA_BITS) << U64(MINIMA_SHIFT)
).astype(np.uint32)


def bin_minima(sets: Sequence[np.ndarray]) -> np.ndarray:
    """uint32[len(sets), 128]: for each sorted unique shingle set, the smallest id in each bin of ids
    with the same top 7 bits. Ids are hashes, so this is a one-permutation MinHash of the exact set:
    two sets agree in a bin about as often as their Jaccard similarity, which lets a candidate that
    cannot pass verification be ruled out without comparing the sets (``decide``)."""
    sizes = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
    if not sizes.sum():
        return np.tile(EMPTY_MINIMA, (len(sets), 1))
    return _bin_minima(np.concatenate(sets), np.repeat(np.arange(len(sets), dtype=np.int64), sizes), len(sets))


def _bin_minima(ids: np.ndarray, owner: np.ndarray, sets: int) -> np.ndarray:
    """bin_minima of sets given one after another: ``owner`` ascending, each set's ids sorted."""
    minima = np.tile(EMPTY_MINIMA, (sets, 1))
    bins = (ids >> MINIMA_SHIFT).astype(np.int64)
    first = np.ones(len(ids), dtype=bool)  # in a sorted set, a bin's first id is its smallest
    first[1:] = (bins[1:] != bins[:-1]) | (owner[1:] != owner[:-1])
    minima[owner[first], bins[first]] = ids[first]
    return minima


EMPTY_SLOT = np.int64(-1)  # no query shingle in the slot
SHARED_SLOT = np.int64(-2)  # several: a binary search decides
CHUNK_VALUES = 1 << 16  # elements compared in one go: the chunk's arrays and tables stay in cache


def pair_overlaps(
    queries: Sequence[np.ndarray], query_of_pair: np.ndarray, others: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Jaccard and containment (shared / smaller set) of each pair (``queries[query_of_pair[p]]``,
    ``others[p]``) of sorted unique shingle arrays, with numpy calls for many pairs at once (a call per
    pair would cost more than the counting).

    Each query of a chunk of pairs gets a direct-mapped table of its shingles (slot = low bits of the
    id, itself a hash; at least 4 slots a shingle), so testing an element of another set is one
    gather and one compare; only elements that land on a slot two query shingles share need a
    binary search.
    """
    pairs = len(others)
    query_sizes = np.fromiter(map(len, queries), dtype=np.int64, count=len(queries))
    other_sizes = np.fromiter(map(len, others), dtype=np.int64, count=pairs)
    query_of_pair = np.asarray(query_of_pair, dtype=np.int64)
    shared = np.zeros(pairs, dtype=np.int64)
    ends = np.cumsum(other_sizes)
    marks = np.searchsorted(ends, np.arange(CHUNK_VALUES, ends[-1] if pairs else 0, CHUNK_VALUES))
    # Sorted already, so repeats are dropped by a neighbour test (np.unique would also load numpy.ma).
    cuts = marks[np.r_[True, marks[1:] != marks[:-1]]] if len(marks) else marks
    for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), pairs], strict=True):
        chunk_queries, local = np.unique(query_of_pair[lo:hi], return_inverse=True)
        shared[lo:hi] = _shared_counts([queries[q] for q in chunk_queries.tolist()], local, others[lo:hi])
    sizes = query_sizes[query_of_pair]
    union = sizes + other_sizes - shared
    smaller = np.maximum(np.minimum(sizes, other_sizes), 1)
    return shared / np.maximum(union, 1), shared / smaller


def _shared_counts(
    queries: Sequence[np.ndarray], query_of_pair: np.ndarray, others: Sequence[np.ndarray]
) -> np.ndarray:
    """How many shingles each pair of pair_overlaps shares."""
    pairs = len(others)
    query_sizes = np.fromiter(map(len, queries), dtype=np.int64, count=len(queries))
    other_sizes = np.fromiter(map(len, others), dtype=np.int64, count=pairs)
    if not query_sizes.sum() or not other_sizes.sum():
        return np.zeros(pairs, dtype=np.int64)
    # Sized for the average query: a long one only has more shared slots.
    bits = max(int(4 * query_sizes.mean()).bit_length(), 1)
    mask = np.int64((1 << bits) - 1)
    query_ids = np.concatenate(queries).astype(np.int64)
    query_owner = np.repeat(np.arange(len(queries), dtype=np.int64), query_sizes)
    query_slots = (query_owner << bits) | (query_ids & mask)
    table = np.full(len(queries) << bits, EMPTY_SLOT, dtype=np.int64)
    table[query_slots] = query_ids
    table[query_slots[table[query_slots] != query_ids]] = SHARED_SLOT  # a later id took the slot

    values = np.concatenate(others).astype(np.int64)
    owner = np.repeat(query_of_pair, other_sizes)
    found = table[(owner << bits) | (values & mask)]
    member = found == values
    unsure = np.flatnonzero(found == SHARED_SLOT)
    if len(unsure):
        # query_owner ascends and each query is sorted, so these keys are sorted already.
        keys = (query_owner << 32) | query_ids
        wanted = (owner[unsure] << 32) | values[unsure]
        at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        member[unsure] = keys[at] == wanted
    return np.bincount(np.repeat(np.arange(pairs, dtype=np.int64), other_sizes)[member], minlength=pairs)


def jaccard_and_containment(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Exact Jaccard and containment of two sorted unique shingle arrays."""
    shared = int(np.count_nonzero(shared_mask(a, b)))
    return shared / max(len(a) + len(b) - shared, 1), shared / max(min(len(a), len(b)), 1)


def shared_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Which ids of ``a`` are in ``b`` (both sorted and unique): one binary search each, quicker than
    ``np.isin`` or pair_overlaps for a single pair (docs/benchmarks.md)."""
    if not len(b):
        return np.zeros(len(a), dtype=bool)
    at = np.searchsorted(b, a)
    at[at == len(b)] = 0
    return b[at] == a


# The keys as a record keeps them (``records.index_keys``): a winnowed key is a 32-bit shingle id with
# SAMPLE_TAG, so it is kept in 4 bytes, a band key in 8. A header of 12 bytes (b"DSK1", how many band keys,
# how many winnowed ones) and 4 bytes of padding when needed make every such blob 4 bytes past a multiple of
# 8, where the int64 arrays records kept before are a multiple of 8: both read the same. (653 bytes a record
# in bench/scale.py's 400k store, 32 band keys and ~96 winnowed ones, against 1,024 as int64.)
KEYS_MAGIC = b"DSK1"


def pack_keys(keys: np.ndarray) -> bytes:
    """A record's index keys (``index.keys_of``) as the store keeps them."""
    keys = np.asarray(keys, dtype=np.int64)
    sample = (keys & SAMPLE_TAG) != 0
    bands, winnowed = keys[~sample], (keys[sample] & np.int64(0xFFFFFFFF)).astype("<u4")
    header = KEYS_MAGIC + np.array([len(bands), len(winnowed)], dtype="<u4").tobytes()
    padding = b"\0" * 4 if len(winnowed) % 2 else b""
    return header + bands.astype("<i8").tobytes() + winnowed.tobytes() + padding


def unpack_keys(blob: bytes) -> np.ndarray:
    """The int64 keys of a stored blob, packed (``pack_keys``) or as the int64 array older records kept."""
    if len(blob) % 8 == 0:
        return np.frombuffer(blob, dtype="<i8").astype(np.int64)
    if blob[:4] != KEYS_MAGIC:
        raise ValueError("index keys neither packed nor an int64 array")
    bands, winnowed = np.frombuffer(blob, dtype="<u4", count=2, offset=4).tolist()
    band_keys = np.frombuffer(blob, dtype="<i8", count=bands, offset=12)
    sample = np.frombuffer(blob, dtype="<u4", count=winnowed, offset=12 + 8 * bands).astype(np.int64) | SAMPLE_TAG
    return np.concatenate((band_keys.astype(np.int64), sample))
