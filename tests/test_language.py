"""The language of documents that do not say it (docsieve/language.py)."""

from tests.conftest import fixture_text


def test_language_of_arabic_script_languages() -> None:
    from docsieve.language import detect_many

    found = detect_many(
        [
            fixture_text("ar_near_a.txt"),
            "این یک متن فارسی است که برای آزمایش زبان نوشته شده و باید فارسی شناخته شود",
            "یہ اردو زبان میں لکھا گیا ایک جملہ ہے جو زبان کی جانچ کے لیے ہے",
            fixture_text("en_article.txt"),
            "Die Bundesregierung hat am Mittwoch neue Regeln für den Wohnungsbau beschlossen.",
            "؟!",
        ]
    )
    assert found == ["ar", "fa", "ur", "en", "de", None]


def test_the_arabic_shortcut_needs_ten_letters() -> None:
    from docsieve.language import TEN_ARABIC_LETTERS

    nine, ten = " ".join("سلامعليكم"), " ".join("سلامعليكمو")
    assert TEN_ARABIC_LETTERS.match("١٢ " + ten + ".") and not TEN_ARABIC_LETTERS.match("١٢ " + nine + ".")
