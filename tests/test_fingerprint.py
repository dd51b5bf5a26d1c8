import subprocess
import sys

import numpy as np
from datasketch import MinHashLSH

from docsieve.fingerprint import bin_minima, fingerprint_batch, jaccard_and_containment, pair_overlaps
from docsieve.settings import Settings
from tests.conftest import fixture_text

SETTINGS = Settings()


def one(text: str):
    return fingerprint_batch([text], SETTINGS)[0]


def test_content_hash_is_sha256_of_normalized_text() -> None:
    import hashlib

    from docsieve.normalize import normalize

    text = fixture_text("ar_near_a.txt")
    assert one(text).content_hash == hashlib.sha256(normalize(text).encode()).hexdigest()


def test_fingerprint_does_not_depend_on_batch_neighbours() -> None:
    texts = [fixture_text(n) for n in ("ar_near_a.txt", "en_article.txt", "ar_other.txt")] + ["قصير", ""]
    together = fingerprint_batch(texts, SETTINGS)
    for text, fp in zip(texts, together, strict=True):
        alone = one(text)
        assert alone.content_hash == fp.content_hash
        assert np.array_equal(alone.signature, fp.signature)
        assert np.array_equal(alone.shingles, fp.shingles)
        assert np.array_equal(alone.band_keys, fp.band_keys)
        assert np.array_equal(alone.winnow_keys, fp.winnow_keys)


def test_fingerprint_equal_across_processes() -> None:
    text = fixture_text("ar_near_a.txt")
    code = (
        "import sys; from docsieve.fingerprint import fingerprint_batch; from docsieve.settings import Settings;"
        "fp = fingerprint_batch([sys.stdin.read()], Settings())[0];"
        "sys.stdout.write(fp.content_hash + ' ' + fp.signature.tobytes().hex())"
    )
    out = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True, check=True)
    fp = one(text)
    assert out.stdout == fp.content_hash + " " + fp.signature.tobytes().hex()


def test_shingles_are_sorted_unique_and_count_word_windows() -> None:
    fp = one("a b c d e f g h")  # 8 words -> 8 - n + 1 windows of n words
    assert len(fp.shingles) == 8 - SETTINGS.shingle_size + 1
    assert np.all(np.diff(fp.shingles.astype(np.int64)) > 0)
    assert len(one("a b").shingles) == 1  # shorter than a shingle: one shingle of what there is
    n = SETTINGS.shingle_size
    words = " ".join(f"w{i}" for i in range(n))
    assert len(one(f"{words} {words}").shingles) == n  # the repeated windows count once


def test_signature_estimates_jaccard() -> None:
    words = [f"w{i}" for i in range(2000)]
    a = " ".join(words[:1500])
    b = " ".join(words[500:])  # shares 1000 of 2000 distinct words: J of the shingle sets about 0.5
    fa, fb = one(a), one(b)
    exact, _ = jaccard_and_containment(fa.shingles, fb.shingles)
    estimate = fa.minhash().jaccard(fb.minhash())
    assert 0.45 < exact < 0.55
    assert abs(estimate - exact) < 0.12  # 128 bins: standard error about 0.044


def test_signature_values_fit_datasketch_layout_and_lsh() -> None:
    near_a, near_b, other = (one(fixture_text(n)) for n in ("ar_near_a.txt", "ar_near_b.txt", "ar_other.txt"))
    assert near_a.signature.dtype == np.uint64 and near_a.signature.max() < 2**32
    lsh = MinHashLSH(num_perm=SETTINGS.num_perm, params=(SETTINGS.lsh_bands, SETTINGS.lsh_rows))
    lsh.insert("a", near_a.minhash())
    lsh.insert("other", other.minhash())
    assert lsh.query(near_b.minhash()) == ["a"]


def test_containment_of_an_excerpt() -> None:
    long_text = fixture_text("ar_excerpt_long.txt")
    short_text = fixture_text("ar_excerpt_short.txt")
    jaccard, containment = jaccard_and_containment(one(long_text).shingles, one(short_text).shingles)
    assert jaccard < 0.3 and containment > 0.6


def test_winnow_keys_are_consistent_subsets() -> None:
    long_fp = one(" ".join(f"w{i}" for i in range(3000)))
    short_fp = one(" ".join(f"w{i}" for i in range(1000, 1600)))
    assert len(short_fp.winnow_keys) > 10
    assert set(short_fp.winnow_keys.tolist()) <= set(long_fp.winnow_keys.tolist())
    assert not set(long_fp.winnow_keys.tolist()) & set(long_fp.band_keys.tolist())


def test_winnowing_gives_every_shared_run_of_a_window_a_shared_key() -> None:
    from tests.test_stories import text, words  # random words of a large vocabulary

    settings = Settings()
    rng = np.random.default_rng(5)
    for trial in range(30):
        run = words(1000 + trial, settings.winnow_window + settings.shingle_size - 1)
        host = text(words(2000 + trial, int(rng.integers(0, 300))), run, words(3000 + trial, 50))
        short, long = fingerprint_batch([text(run), host], settings)
        assert set(short.winnow_keys.tolist()) & set(long.winnow_keys.tolist())


def test_a_brief_item_is_indexed_by_every_shingle() -> None:
    from docsieve.fingerprint import SAMPLE_TAG, SHORT_TEXT_SHINGLES

    brief = one(" ".join(f"w{i}" for i in range(SHORT_TEXT_SHINGLES)))  # SHORT_TEXT_SHINGLES - 2 shingles
    assert sorted(brief.winnow_keys.tolist()) == sorted((brief.shingles.astype(np.int64) | SAMPLE_TAG).tolist())
    longer = one(" ".join(f"w{i}" for i in range(SHORT_TEXT_SHINGLES + 2)))
    assert len(longer.winnow_keys) < len(longer.shingles) // 4  # a winnowed sample


def test_a_lightly_edited_brief_item_shares_keys_with_the_longer_text_that_carries_it() -> None:
    # A 40-word wire item with every seventh word changed inside a longer text: the runs they share (four
    # shingles) are far shorter than a window, so winnowing alone rarely gave both the same key.
    from tests.test_stories import text, words

    one_key = two_keys = 0  # a candidate needs two shared keys where its phrase is common (index.LONE_PHRASE_RECORDS)
    for trial in range(40):
        item = words(5000 + trial, 40)
        edited = [w if k % 7 != 3 else f"x{trial}{k}" for k, w in enumerate(item)]
        host = text(words(6000 + trial, 200), edited, words(7000 + trial, 200))
        brief, carrier = fingerprint_batch([text(item), host], SETTINGS)
        shared = len(set(brief.winnow_keys.tolist()) & set(carrier.winnow_keys.tolist()))
        one_key, two_keys = one_key + (shared >= 1), two_keys + (shared >= 2)
    assert one_key == 40 and two_keys >= 34  # winnowing alone: 34 and 26


def random_sets(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Sorted unique uint32 sets, overlapping a shared pool so that pairs share anything from none to all."""
    pool = rng.integers(0, 2**32, size=4000, dtype=np.uint64).astype(np.uint32)
    sets = []
    for _ in range(count):
        size = int(rng.choice([0, 1, 5, 40, 300, 2500]))
        own = rng.integers(0, 2**32, size=size, dtype=np.uint64).astype(np.uint32)
        picked = pool[rng.integers(0, len(pool), size=int(rng.integers(0, size + 1)))]
        sets.append(np.unique(np.concatenate((own[: size - len(picked)], picked))))
    return sets


def test_pair_overlaps_equal_set_arithmetic() -> None:
    rng = np.random.default_rng(7)
    queries, others = random_sets(rng, 60), random_sets(rng, 900)
    query_of_pair = rng.integers(0, len(queries), size=len(others))
    jaccard, containment = pair_overlaps(queries, query_of_pair, others)
    for q, other, j, c in zip(query_of_pair, others, jaccard, containment, strict=True):
        a, b = set(queries[q].tolist()), set(other.tolist())
        assert j == len(a & b) / max(len(a | b), 1)
        assert c == len(a & b) / max(min(len(a), len(b)), 1)
    # Many pairs span several of the chunks pair_overlaps works in; one pair alone gives the same, both ways
    # round and with an empty set.
    for p in range(len(others)):
        q = queries[query_of_pair[p]]
        assert jaccard_and_containment(q, others[p]) == (jaccard[p], containment[p])
        assert jaccard_and_containment(others[p], q) == (jaccard[p], containment[p])
    assert jaccard_and_containment(others[0], others[0][:0]) == (0.0, 0.0)


def test_bin_minima_agreement_estimates_jaccard() -> None:
    rng = np.random.default_rng(3)
    base = np.unique(rng.integers(0, 2**32, size=3000, dtype=np.uint64).astype(np.uint32))
    half = np.unique(
        np.concatenate((base[:1500], rng.integers(0, 2**32, size=1500, dtype=np.uint64).astype(np.uint32)))
    )
    minima = bin_minima([base, half, base[:0]])
    assert abs((minima[0] == minima[1]).mean() - 1500 / 4500) < 0.12
    assert not (minima[2] == minima[0]).any()  # empty bins never agree


def test_fingerprints_made_on_several_threads_at_once_equal_sequential_ones(monkeypatch) -> None:
    """The power tables grow while other threads read them (a batch larger than any before)."""
    from concurrent.futures import ThreadPoolExecutor

    from docsieve import fingerprint

    words = fixture_text("ar_near_a.txt").split()
    chunks = [
        [" ".join(words[: 20 + (i * 37 + j * 11) % len(words)]) * (1 + i % 7) for j in range(8)] for i in range(60)
    ]
    expected = [[fp.signature for fp in fingerprint_batch(chunk, SETTINGS)] for chunk in chunks]
    for _ in range(3):
        monkeypatch.setattr(fingerprint, "_powers", fingerprint._PowerTable())  # start small, grow under load
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda chunk: [fp.signature for fp in fingerprint_batch(chunk, SETTINGS)], chunks))
        for want, have in zip(expected, got, strict=True):
            assert all(np.array_equal(a, b) for a, b in zip(want, have, strict=True))


def test_shingle_ids_equal_a_plain_python_reference() -> None:
    """The vectorized hashing must give what its description says, word by word, or stores written
    before a change would no longer match what is ingested after it."""
    from docsieve.fingerprint import BASE, _constants, _mix
    from docsieve.normalize import normalize

    mask = (1 << 64) - 1
    const = _constants(SETTINGS.shingle_size, SETTINGS.num_perm, SETTINGS.lsh_bands, SETTINGS.seed)

    def mixed(x: int) -> int:
        return int(_mix(np.array([x], dtype=np.uint64))[0])

    texts = [fixture_text("ar_near_a.txt"), "one two", "Ünïcode, digits ١٢٣ and 𝔘 astral"]
    for text, fp in zip(texts, fingerprint_batch(texts, SETTINGS), strict=True):
        tokens = []
        for word in normalize(text).split(" "):
            total = sum(ord(ch) * pow(BASE, i, 1 << 64) for i, ch in enumerate(word + " ")) & mask
            tokens.append(mixed(total))
        n = SETTINGS.shingle_size
        windows = [tokens[i : i + n] for i in range(max(len(tokens) - n + 1, 1))]
        expected = set()
        for window in windows:
            window = window + [0] * (n - len(window))
            gram = sum(t * int(w) for t, w in zip(window, const.gram_weights, strict=True)) & mask
            expected.add(mixed(gram ^ int(const.seed)) >> 32)
        assert sorted(expected) == fp.shingles.tolist()


def test_index_keys_pack_into_fewer_bytes_and_read_back_as_they_were_with_older_blobs() -> None:
    from docsieve.fingerprint import SAMPLE_TAG, pack_keys, unpack_keys

    rng = np.random.default_rng(2)
    for bands, winnowed in ((32, 98), (32, 97), (0, 1), (5, 0), (0, 0)):
        band_keys = rng.integers(0, 1 << 62, bands, dtype=np.int64)
        sample = rng.integers(0, 1 << 32, winnowed, dtype=np.int64)
        if winnowed:
            sample[0] = 0  # a shingle id of 0 is a key like any other, not padding
        keys = np.concatenate((band_keys, sample | SAMPLE_TAG))
        blob = pack_keys(keys)
        assert len(blob) % 8 == 4 and len(blob) <= 16 + 8 * bands + 4 * winnowed
        assert np.array_equal(unpack_keys(blob), keys)
        assert np.array_equal(unpack_keys(keys.tobytes()), keys)  # as records stored before kept them
