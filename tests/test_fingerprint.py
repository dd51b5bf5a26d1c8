import subprocess
import sys

import numpy as np
from datasketch import MinHashLSH

from tests.conftest import fixture_text
from worker.fingerprint import fingerprint_batch, jaccard_and_containment
from worker.settings import Settings

SETTINGS = Settings()


def one(text: str):
    return fingerprint_batch([text], SETTINGS)[0]


def test_content_hash_is_sha256_of_normalized_text() -> None:
    import hashlib

    from worker.normalize import normalize

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
        assert np.array_equal(alone.sample_keys, fp.sample_keys)


def test_fingerprint_equal_across_processes() -> None:
    text = fixture_text("ar_near_a.txt")
    code = (
        "import sys; from worker.fingerprint import fingerprint_batch; from worker.settings import Settings;"
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


def test_sample_keys_are_consistent_subsets() -> None:
    long_fp = one(" ".join(f"w{i}" for i in range(3000)))
    short_fp = one(" ".join(f"w{i}" for i in range(1000, 1600)))
    assert len(short_fp.sample_keys) > 10
    assert set(short_fp.sample_keys.tolist()) <= set(long_fp.sample_keys.tolist())
    assert not set(long_fp.sample_keys.tolist()) & set(long_fp.band_keys.tolist())
