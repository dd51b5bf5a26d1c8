import subprocess
import sys
from pathlib import Path

import numpy as np
import platformdirs
import pytest

from docsieve.normalize import normalize, normalize_batch


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
        ("مدرسی کبیر", "مدرسي كبير"),  # Persian yeh and keheh
        ("الدفعۃ الطبیۃ ہذہ", "الدفعة الطبية هذه"),  # Urdu teh marbuta goal and heh goal
        ("ھذە الدولة", "هذه الدولة"),  # Kurdish heh doachashmee and ae
        ("خانۀ خانۂ خانهٔ خانە\u0654", "خانه خانه خانه خانه"),  # heh with hamza above, composed or not
        ("ﯾ ﮐ ﮨ", "ي ك ه"),  # presentation forms of ی ک ہ
    ],
)
def test_arabic_variants_normalize_alike(variant: str, plain: str) -> None:
    assert normalize(variant) == normalize(plain)


def test_letters_of_other_languages_stay() -> None:
    """Only the other keyboards' forms of Arabic letters fold: پ چ ژ گ, Urdu ے and Sindhi ڪ are letters of their own."""
    assert normalize("پ چ ژ گ ے ڪ ٹ") == "پ چ ژ گ ے ڪ ٹ"


def test_arabic_rules_give_expected_form() -> None:
    assert normalize("أَهْلاً بِكُمْ في الـمـدينة!") == "اهلا بكم في المدينه"
    assert normalize("٣٤٥ ۱۲") == "345 12"


def test_nfkc_and_casefold() -> None:
    assert normalize("Straße ＡＢＣ ﬁle") == "strasse abc file"
    assert normalize("Cafe\u0301 CAFÉ") == "café café"


FILLERS = ["\u3164", "\uffa0", "\u2800", "\u115f", "\u1160", "\U0001d159", "\ufff0", "\U000e0000"]


@pytest.mark.parametrize("filler", FILLERS)
def test_invisible_fillers_vanish(filler: str) -> None:
    assert normalize(f"wo{filler}rd {filler} two{filler}") == "word two"
    assert normalize(f"كت{filler}اب") == "كتاب"


def test_what_vanishes_between_hangul_jamo_lets_them_compose() -> None:
    # Normalizing the result again would compose them: it must already be composed.
    for between in ["\u3164", "\u1160", "\u200c", "\u0640", "\u0301"]:
        assert normalize(f"\u1100{between}\u1161") == "\uac00", between
    assert normalize("ㄱㅏ") == "\uac00"  # compatibility jamo compose once NFKC makes them conjoining
    assert normalize("\u0bc6\u200c\u0bbe") == "\u0bca"  # and so do Tamil vowel signs


@pytest.mark.parametrize(
    ("spoof", "plain"),
    [
        ("\u0420resident", "president"),  # Cyrillic Р
        ("Рresіdеnt Ρutіn", "president putin"),  # Cyrillic і е, Greek Ρ
        ("ΗELLO wοrld", "hello world"),  # Greek Η ο
        ("Сafé", "café"),
        ("Р\u200bres\u3164ident", "president"),  # a word is what is left once invisible characters vanish
        ("\U0001d6d2resident", "president"),  # mathematical ρ is Greek after NFKC
    ],
)
def test_lookalikes_inside_latin_words_become_latin(spoof: str, plain: str) -> None:
    assert normalize(spoof) == normalize(plain) == plain


def test_words_in_one_script_keep_their_letters() -> None:
    assert normalize("Москва Сегодня, Αθήνα ΚΑΙ Ελλάδα") == "москва сегодня αθήνα και ελλάδα"
    assert normalize("Москва and Paris") == "москва and paris"
    assert normalize("рор-up рοр") == "рор up рοр"  # look-alikes with no Latin letter stay (Cyrillic, Greek ο)
    assert normalize("5 µm, 3 µg") == "5 μm 3 μg"  # the micro sign is no look-alike
    # Letters without a Latin look-alike stay in a mixed word.
    assert normalize("Pжa") == "pжa"


def test_whitespace_and_punctuation_become_single_spaces() -> None:
    assert normalize("  Hello,\n\n  world!!  (again)\t") == "hello world again"
    assert normalize("") == ""
    assert normalize(" \n\t ") == ""
    assert normalize("...!!!") == ""


def test_idempotent() -> None:
    for text in ["أَهْلاً ﻻ Straße …", "🎉 𝐀BC ٣", "e\u0301 و\u0654", "ᄀ\u3164ᅡ ㄱㅏ", "Рresident Ρжα", "ھذە ۀ"]:
        once = normalize(text)
        assert normalize(once) == once


def test_batch_equals_one_by_one() -> None:
    texts = ["أَهْلاً", "", "Hello, World", "  ", "ﻻ شيء", "x" * 3, "🎉 party", "Рresident", "Москва", "𝛒ie", "wo\u3164rd"]
    batch = normalize_batch(texts)
    assert [batch.text(i) for i in range(len(texts))] == [normalize(t) for t in texts]


def test_same_in_another_process() -> None:
    text = "وفد من حركة «حماس» يزور طهران في ١٩ يناير"
    code = "import sys; from docsieve.normalize import normalize; sys.stdout.write(normalize(sys.argv[1]))"
    other = subprocess.run([sys.executable, "-c", code, text], capture_output=True, text=True, check=True)
    assert other.stdout == normalize(text)


def test_cached_tables_equal_freshly_built_ones(tmp_path, monkeypatch) -> None:
    from docsieve.normalize import ARRAYS, _build_tables, _tables

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _tables.cache_clear()
    _tables()  # builds and writes the cache
    assert list((tmp_path / "docsieve").glob("normalize-*.npz"))
    _tables.cache_clear()
    cached, built = _tables(), _build_tables()  # the first from disk
    for name in ARRAYS:
        assert np.array_equal(getattr(cached, name), getattr(built, name)), name
    assert cached.expansions == built.expansions
    assert cached.vanishing.pattern == built.vanishing.pattern


def test_the_tables_are_cached_in_the_user_cache_of_the_platform(cache_home: Path) -> None:
    from docsieve.normalize import _cache_dir

    assert _cache_dir() == Path(platformdirs.user_cache_dir("docsieve", appauthor=False))
    assert _cache_dir().is_relative_to(cache_home)  # in the tests, never the real home's (tests/conftest.py)
