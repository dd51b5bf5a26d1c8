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

"For this day" (لهذا اليوم) names the day a text was published: the weather service's daily forecast ("the
weather for this day: ...") names no weekday, and forecasts of consecutive days share most of their words (the
weather holds). Such a slot is marked ``TODAY`` where it is found and ``dated`` gives it the weekday of the
text's publication once that is known: the date where it was published (``published_date``, from the
document's own ``published`` text, for new and stored records alike: a Riyadh item of 01:30 is of that day,
though UTC's is the one before); a text without one leaves the slot out. A weekday named in the
same slot ("for this day, Thursday") is taken over the publication's. A day so dated does not part a reprint
(docsieve/stories.py: one text nearly all inside the other): a print paper carries the previous day's forecast
word for word, "for this day" and all, while forecasts of consecutive days differ in a fifth of their words or
more. Only "for this day": in saudinewsnet-dev
39 of its 42 uses are forecasts. Plain "this day" (هذا اليوم) is as often another day than the publication's:
a quote ("we have awaited this day"), a royal order reprinted the next morning ("travelling this day"), an
evening release published after midnight; bare "اليوم" is also "the National Day", "the World Day of ..." or
the newspaper al-Yaum (labeled pairs: bench/labels/this-day.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np

from docsieve.normalize import normalize
from docsieve.published import published_date

_ARABIC = ("السبت", "الأحد", "الاثنين", "الثلاثاء", "الأربعاء", "الخميس", "الجمعة")
_ENGLISH = ("saturday", "sunday", "monday", "tuesday", "wednesday", "thursday", "friday")
# Arabic weekdays carry clitics: wa-/fa- (and), bi- (on), li- (for: li- + al- is written ll-).
_CLITICS = ("", "و", "ف", "ب", "وب", "فب")

_TODAY = "اليوم"
_THIS = ("لهذا", "ولهذا")  # "for this (day)": see the module's note

BEFORE, AFTER = 0, 1
TODAY = 7  # a slot's mark for "this day": the day of publication (see dated)
# A weekday known only from when the text was published ("for this day" dated): this plus the day, so that a
# reprint can leave it out (see disagree).
BY_PUBLICATION = 8

Slots = dict[tuple[int, int, int], frozenset[int]]  # (side, word, word) -> weekdays (0 Saturday .. 6 Friday)


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
    forms[normalize(_TODAY)] = TODAY  # only after a form of "this" (see slots)
    return forms


def this_forms() -> list[str]:
    """The normalized forms of "this" that make the next "اليوم" this day."""
    return [normalize(w) for w in _THIS]


def weekday_of(day: date) -> int:
    """The weekday of a date, 0 Saturday .. 6 Friday."""
    return (day.weekday() + 2) % 7  # date counts from Monday


def dated(found: Slots, published: str | None) -> Slots:
    """The slots of a text with this ``published`` text: "this day" becomes the weekday of publication, unless the
    slot names a weekday too; with no publication time, a slot of "this day" alone is left out. The time is read
    only for a text that says "for this day" (few do)."""
    if not any(TODAY in days for days in found.values()):
        return found
    day = published_date(published)
    resolved: Slots = {}
    for slot, days in found.items():
        if TODAY in days:
            named = days - {TODAY}
            days = named or (frozenset((BY_PUBLICATION + weekday_of(day),)) if day is not None else frozenset())
        if days:
            resolved[slot] = days
    return resolved


@dataclass(frozen=True)
class Weekdays:
    """The token hashes of the weekday forms (sorted) and their days, and a table of the hashes' low bits: a
    batch's tokens are looked up there first (one gather) and only the few that pass are matched (np.isin over
    every token took half the time of finding the slots)."""

    hashes: np.ndarray  # uint64, sorted
    days: np.ndarray  # int64, the day of each hash (TODAY for "اليوم")
    low: np.ndarray  # bool, 1 << LOW_BITS: whether some form's hash ends in these bits
    this: np.ndarray  # uint64, the hashes of the forms of "this" (this_forms)

    @classmethod
    def of(cls, forms: Mapping[int, int], this: Iterable[int] = ()) -> Weekdays:
        hashes = np.array(sorted(forms), dtype=np.uint64)
        low = np.zeros(1 << LOW_BITS, dtype=bool)
        low[(hashes & np.uint64(LOW_MASK)).astype(np.intp)] = True
        days = np.array([forms[h] for h in hashes.tolist()], dtype=np.int64)
        return cls(hashes, days, low, np.array(sorted(this), dtype=np.uint64))


LOW_BITS = 16
LOW_MASK = (1 << LOW_BITS) - 1


def slots(tokens: np.ndarray, bounds: np.ndarray, weekdays: Weekdays) -> list[Slots]:
    """The weekday slots of each document of a batch: ``tokens`` their token hashes one after another,
    ``bounds`` where each document's tokens start (len = documents + 1)."""
    docs = len(bounds) - 1
    found: list[Slots] = [{} for _ in range(docs)]
    maybe = np.flatnonzero(weekdays.low[(tokens & np.uint64(LOW_MASK)).astype(np.intp)])
    at = np.searchsorted(weekdays.hashes, tokens[maybe]).clip(max=len(weekdays.hashes) - 1)
    matched = weekdays.hashes[at] == tokens[maybe]
    named, day = maybe[matched], weekdays.days[at[matched]]
    named, day = _this_day(tokens, bounds, weekdays, named, day)
    if not len(named):
        return found
    owner = np.searchsorted(bounds, named, side="right") - 1
    # Weekdays side by side in one document are one run, one slot's days.
    first = np.ones(len(named), dtype=bool)
    first[1:] = (named[1:] != named[:-1] + 1) | (owner[1:] != owner[:-1])
    run_of = np.cumsum(first) - 1
    start, end = named[first], named[np.r_[first[1:], True]] + 1  # a run's first token, and past its last
    doc, doc_start, doc_end = owner[first], bounds[owner[first]], bounds[owner[first] + 1]
    last = max(len(tokens) - 1, 0)
    before = tokens[np.clip([start - 2, start - 1], 0, last)].tolist()
    after = tokens[np.clip([end, end + 1], 0, last)].tolist()
    has_before, has_after = (start - 2 >= doc_start).tolist(), (end + 2 <= doc_end).tolist()
    days_of_run: list[set[int]] = [set() for _ in range(len(start))]
    for r, d in zip(run_of.tolist(), day.tolist(), strict=True):
        days_of_run[r].add(d)
    for r, (d, days) in enumerate(zip(doc.tolist(), days_of_run, strict=True)):
        mine, named_days = found[d], frozenset(days)
        for slot, present in (
            ((BEFORE, before[0][r], before[1][r]), has_before[r]),
            ((AFTER, after[0][r], after[1][r]), has_after[r]),
        ):
            if present:
                mine[slot] = mine.get(slot, frozenset()) | named_days
    return found


def _this_day(
    tokens: np.ndarray, bounds: np.ndarray, weekdays: Weekdays, named: np.ndarray, day: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The weekdays found, with "اليوم" kept only after a form of "this" in the same text, and that "this" named
    too (one run: its slot's words are those before "this")."""
    today = day == TODAY
    if not today.any():
        return named, day
    at = named[today]
    starts = bounds[np.searchsorted(bounds, at, side="right") - 1]
    this = (at > starts) & np.isin(tokens[np.maximum(at - 1, 0)], weekdays.this)
    keep = ~today
    keep[np.flatnonzero(today)[this]] = True
    named = np.concatenate((named[keep], at[this] - 1))
    day = np.concatenate((day[keep], np.full(int(this.sum()), TODAY, dtype=np.int64)))
    order = np.argsort(named, kind="stable")
    return named[order], day[order]


def disagree(a: Slots, b: Slots, by_publication: bool = True) -> bool:
    """Whether two texts name different weekdays in a slot they share. ``by_publication=False``: only the days
    the texts name, not those of "for this day" dated by publication (a paper's reprint of yesterday's forecast
    keeps its "for this day" a day late)."""
    if len(a) > len(b):
        a, b = b, a
    for slot, days in a.items():
        if (other := b.get(slot)) is None:
            continue
        if not by_publication and (_published_only(days) or _published_only(other)):
            continue
        if not ({d % BY_PUBLICATION for d in days} & {d % BY_PUBLICATION for d in other}):
            return True
    return False


def _published_only(days: frozenset[int]) -> bool:
    return all(d >= BY_PUBLICATION for d in days)
