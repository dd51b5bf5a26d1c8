"""Days that disagree: two texts that put different weekdays in the same words are about different days.

Templated items repeat daily or weekly in the same words: the health ministry's daily case count ("the
ministry recorded today, Saturday, ..."), execution statements ("carried out today, Friday, ..."), weather
forecasts, wedding and obituary notices. Their boilerplate is most of the text, so shingles call them copies,
and the template counts (docsieve/templates.py) learn a template only after a few items of it. What differs
is the day: one says Saturday where the other, in the same words, says Friday. A copy keeps the day its
source named, whatever it does to the rest ("today, Thursday" becomes "yesterday, Thursday" in the next
morning's paper), so two texts that name different weekdays in the same slot are not copies of each other.

A slot is a weekday with the two words before it, or the two words after it (weekdays side by side, "Friday/
Saturday night", are one slot's); two texts disagree when they share a slot and none of the weekdays either
names in it is the other's. The slots are found among the tokens the shingler hashes (docsieve/fingerprint.py),
so a slot is named by the hashes of its words.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from docsieve.normalize import normalize

_ARABIC = ("السبت", "الأحد", "الاثنين", "الثلاثاء", "الأربعاء", "الخميس", "الجمعة")
_ENGLISH = ("saturday", "sunday", "monday", "tuesday", "wednesday", "thursday", "friday")
# Arabic weekdays carry clitics: wa-/fa- (and), bi- (on), li- (for: li- + al- is written ll-).
_CLITICS = ("", "و", "ف", "ب", "وب", "فب")

BEFORE, AFTER = 0, 1

Slots = Mapping[tuple[int, int, int], frozenset[int]]  # (side, word, word) -> weekdays (0 Saturday .. 6 Friday)


def weekday_forms() -> dict[str, int]:
    """Every normalized token that names a weekday, with its day."""
    forms: dict[str, int] = {}
    for day, (arabic, english) in enumerate(zip(_ARABIC, _ENGLISH, strict=True)):
        word = normalize(arabic)
        for clitic in _CLITICS:
            forms[clitic + word] = day
        for clitic in ("", "و", "ف"):
            forms[clitic + "ل" + word[1:]] = day  # li- + al-: للخميس
        forms[english] = day
    return forms


def slots(tokens: np.ndarray, bounds: np.ndarray, weekdays: Mapping[int, int]) -> list[Slots]:
    """The weekday slots of each document of a batch: ``tokens`` their token hashes one after another,
    ``bounds`` where each document's start (len = documents + 1), ``weekdays`` the hashes of weekday forms."""
    docs = len(bounds) - 1
    found: list[defaultdict[tuple[int, int, int], set[int]]] = [defaultdict(set) for _ in range(docs)]
    named = np.flatnonzero(np.isin(tokens, np.fromiter(weekdays, dtype=tokens.dtype, count=len(weekdays))))
    if not len(named):
        return [{} for _ in range(docs)]
    owners = (np.searchsorted(bounds, named, side="right") - 1).tolist()
    hashes, starts, ends = tokens.tolist(), bounds[:-1].tolist(), bounds[1:].tolist()  # few: Python is quick
    run_end = -1
    for i, doc in zip(named.tolist(), owners, strict=True):
        if i < run_end:
            continue  # inside a run of weekdays already taken
        run_end = i
        while run_end < ends[doc] and hashes[run_end] in weekdays:
            run_end += 1
        days = {weekdays[h] for h in hashes[i:run_end]}
        if i - 2 >= starts[doc]:
            found[doc][(BEFORE, hashes[i - 2], hashes[i - 1])] |= days
        if run_end + 2 <= ends[doc]:
            found[doc][(AFTER, hashes[run_end], hashes[run_end + 1])] |= days
    return [{slot: frozenset(days) for slot, days in doc.items()} for doc in found]


def disagree(a: Slots, b: Slots) -> bool:
    """Whether two texts name different weekdays in a slot they share."""
    if len(a) > len(b):
        a, b = b, a
    return any(slot in b and not (days & b[slot]) for slot, days in a.items())
