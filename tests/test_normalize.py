import subprocess
import sys

import pytest

from worker.normalize import normalize, normalize_batch


@pytest.mark.parametrize(
    ("variant", "plain"),
    [
        ("أَهْلاً وَسَهْلاً", "اهلا وسهلا"),  # harakat and tanwin
        ("الـمـديـنـة", "المدينه"),  # tatweel, taa marbuta
        ("أحمد إبراهيم آمن ٱلله", "احمد ابراهيم امن الله"),  # alef forms
        ("مستشفى على", "مستشفي علي"),  # alef maqsura
        ("مدرسة", "مدرسه"),
        ("عام ٢٠١٥ و۱۳۹۴", "عام 2015 و1394"),  # Arabic-Indic and Persian digits
        ("قال، ثم سأل؟ نعم؛ لا", "قال ثم سال نعم لا"),  # Arabic punctuation is punctuation
        ("ﻻ يوجد", "لا يوجد"),  # presentation-form ligature (NFKC)
        ("\u0627\u0644\u0639\u0631\u0628\u064a\u0629\u200f", "العربيه"),  # RLM vanishes
        ("مؤتمر", "مو\u0654تمر"),  # composed and decomposed hamza agree
    ],
)
def test_arabic_variants_normalize_alike(variant: str, plain: str) -> None:
    assert normalize(variant) == normalize(plain)


def test_arabic_rules_give_expected_form() -> None:
    assert normalize("أَهْلاً بِكُمْ في الـمـدينة!") == "اهلا بكم في المدينه"
    assert normalize("٣٤٥ ۱۲") == "345 12"


def test_nfkc_and_casefold() -> None:
    assert normalize("Straße ＡＢＣ ﬁle") == "strasse abc file"
    assert normalize("Cafe\u0301 CAFÉ") == "café café"


def test_whitespace_and_punctuation_become_single_spaces() -> None:
    assert normalize("  Hello,\n\n  world!!  (again)\t") == "hello world again"
    assert normalize("") == ""
    assert normalize(" \n\t ") == ""
    assert normalize("...!!!") == ""


def test_idempotent() -> None:
    for text in ["أَهْلاً ﻻ Straße …", "🎉 𝐀BC ٣", "e\u0301 و\u0654"]:
        once = normalize(text)
        assert normalize(once) == once


def test_batch_equals_one_by_one() -> None:
    texts = ["أَهْلاً", "", "Hello, World", "  ", "ﻻ شيء", "x" * 3, "🎉 party"]
    batch = normalize_batch(texts)
    assert [batch.text(i) for i in range(len(texts))] == [normalize(t) for t in texts]


def test_same_in_another_process() -> None:
    text = "وفد من حركة «حماس» يزور طهران في ١٩ يناير"
    code = "import sys; from worker.normalize import normalize; sys.stdout.write(normalize(sys.argv[1]))"
    other = subprocess.run([sys.executable, "-c", code, text], capture_output=True, text=True, check=True)
    assert other.stdout == normalize(text)


def test_cached_tables_equal_freshly_built_ones(tmp_path, monkeypatch) -> None:
    from worker.normalize import _build_tables, _tables

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _tables.cache_clear()
    _tables()  # builds and writes the cache
    assert list((tmp_path / "docsieve").glob("normalize-*.npz"))
    _tables.cache_clear()
    cached, built = _tables(), _build_tables()  # the first from disk
    assert (cached.fold == built.fold).all() and (cached.special == built.special).all()
    assert (cached.needs_unicodedata == built.needs_unicodedata).all() and cached.expansions == built.expansions
